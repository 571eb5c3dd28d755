from __future__ import annotations
import pytest
HYPER = {'members': 3, 'aev': 'compact', 'hidden': [16], 'epochs': 20, 'batch_size': 8, 'seed': 1}
SUBMIT_TRAIN_PREDICT = """
import numpy as np
from pyscf import gto, scf
from aiida_mlqm.provenance.dataset import DatasetData, Frame
rng = np.random.default_rng(0)
water = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
frames = []
for _ in range(12):
    positions = water + rng.normal(0.0, 0.05, water.shape)
    mean_field = scf.RHF(gto.M(atom=list(zip('OHH', positions)), basis='sto-3g', verbose=0))
    energy = mean_field.kernel() * 27.211386245988
    forces = -mean_field.nuc_grad_method().kernel() * 27.211386245988 / 0.529177210903
    frames.append(Frame(np.array([8, 1, 1]), positions, energy, forces, 0, 1, 'HF/sto-3g', None, None))
dataset = DatasetData.from_frames(frames).store()
code = load_code('mlqm-python@localhost')
options = {{'resources': {{'num_machines': 1}}}}
train = submit(CalculationFactory('mlqm.train'), code=code, dataset=dataset,
               parameters=Dict({{'hyperparameters': {hyper!r}}}), metadata={{'options': options}})
wait(train, timeout=300)
model = train.outputs.model
structure = StructureData = DataFactory('core.structure')(cell=[[20, 0, 0], [0, 20, 0], [0, 0, 20]], pbc=(False, False, False))
for symbol, position in zip('OHH', water):
    structure.append_atom(symbols=symbol, position=position)
predict = submit(CalculationFactory('mlqm.predict'), code=code, model=model, structures={{'water': structure}},
                 metadata={{'options': options}})
wait(predict, timeout=300)
emit(train_ok=train.is_finished_ok, predict_ok=predict.is_finished_ok, kind=model.kind,
     dataset_linked=model.creator.inputs.dataset.uuid == dataset.uuid,
     energy=predict.outputs.predictions.get_array('energy').tolist(), storage=type(model.backend).__name__)
"""


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_train_and_predict_on_postgres_and_daemon(psql_daemon_profile):
    result = psql_daemon_profile.run_json(SUBMIT_TRAIN_PREDICT.format(hyper={**HYPER, 'epochs': 5}), timeout=600)
    assert result['train_ok'] and result['predict_ok'] and result['kind'] == 'potential' and result['dataset_linked']
    assert result['storage'] == 'PsqlDosBackend'
    assert -2100 < result['energy'][0] < -2000  # water at HF/STO-3G is about -2039 eV
