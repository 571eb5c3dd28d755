"""``mlqm.train`` and ``mlqm.predict`` run as real jobs on localhost (embedded back end, ``engine.run``)."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import engine, orm
from aiida_mlqm.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

HYPER = {'backend': 'torchani', 'members': 3, 'aev': 'compact', 'hidden': [16], 'epochs': 20, 'batch_size': 8, 'seed': 1}
WATER = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])


def water_frames(count: int, seed: int):
    """HF/STO-3G labels (eV, eV/Å) of distorted water, computed here with PySCF."""
    from aiida_mlqm.provenance.dataset import Frame
    from pyscf import gto, lib, scf

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        positions = WATER + rng.normal(0.0, 0.05, WATER.shape)
        molecule = gto.M(atom=list(zip('OHH', positions)), basis='sto-3g', unit='Angstrom', verbose=0)
        with lib.with_omp_threads(1):
            mean_field = scf.RHF(molecule)
            energy = mean_field.kernel() * HARTREE_TO_EV
            forces = -mean_field.nuc_grad_method().kernel() * HARTREE_TO_EV / BOHR_TO_ANGSTROM
        frames.append(Frame(np.array([8, 1, 1]), positions, energy, forces, 0, 1, 'HF/sto-3g', None, None))
    return frames


@pytest.fixture(scope='module')
def water_dataset():
    from aiida_mlqm.provenance.dataset import DatasetData

    return DatasetData.from_frames(water_frames(24, seed=0)).store()


@pytest.fixture(scope='module')
def trained(water_dataset, mlqm_code):
    from aiida_mlqm.calcjobs.train import TrainCalculation

    results, node = engine.run_get_node(
        TrainCalculation,
        code=mlqm_code,
        dataset=water_dataset,
        parameters=orm.Dict({'kind': 'potential', 'hyperparameters': HYPER}),
        metadata={'options': {'resources': {'num_machines': 1}, 'max_wallclock_seconds': 600}},
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message, _log(node))
    return results, node


def _log(node) -> str:
    try:
        return node.outputs.retrieved.base.repository.get_object_content('train.log')[-2000:]
    except Exception:  # noqa: BLE001 - only for the failure message
        return ''


def test_train_job_outputs_and_provenance(trained, water_dataset):
    from aiida_mlqm.provenance.model import ModelData

    results, node = trained
    model = results['model']
    assert isinstance(model, ModelData) and model.is_stored
    assert model.kind == 'potential' and model.species == [1, 8]
    assert model.base.attributes.get('symbols') == ['H', 'O']
    assert model.base.attributes.get('architecture')['members'] == 3
    assert 'torch' in model.base.attributes.get('library_versions')
    assert model.creator.pk == node.pk and model.creator.inputs.dataset.uuid == water_dataset.uuid
    assert 'potential committee' in str(model) and 'H, O' in model.description
    assert not any(name.endswith(('.pkl', '.pt')) for name in model.base.attributes.get('files'))
    metrics = results['metrics'].get_dict()
    assert metrics['num_train'] > 0 and metrics['validation']['energy_mae'] > 0
    assert 'epoch' in node.outputs.retrieved.base.repository.get_object_content('train.log')


def test_predict_job_matches_model(trained, water_dataset, mlqm_code, make_structure):
    from aiida_mlqm.calcjobs.predict import PredictCalculation
    from aiida_mlqm.models.data import Structures

    model = trained[0]['model']
    frames = water_frames(3, seed=5)
    structures = {
        f'water_{i}': make_structure(list(zip('OHH', f.positions.tolist())), charge=0, multiplicity=1)
        for i, f in enumerate(frames)
    }
    results, node = engine.run_get_node(
        PredictCalculation,
        code=mlqm_code,
        model=model,
        structures=structures,
        parameters=orm.Dict({'mode': 'predict', 'forces': True}),
        metadata={'options': {'resources': {'num_machines': 1}}},
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    predictions = results['predictions']
    assert predictions.base.attributes.get('keys') == ['water_0', 'water_1', 'water_2']
    units = predictions.base.attributes.get('units')
    assert units['energy'] == 'eV' and units['forces'] == 'eV/Å' and units['force_spread'] == 'eV/Å'
    direct = model.load_model().predict(
        Structures(np.tile([8, 1, 1], 3), np.concatenate([f.positions for f in frames]), np.array([0, 3, 6, 9])),
        forces=True,
    )
    np.testing.assert_allclose(predictions.get_array('energy'), direct.value, rtol=1e-6)
    np.testing.assert_allclose(predictions.get_array('forces'), direct.forces, atol=1e-4)
    assert predictions.get_array('energy_spread').shape == (3,)
    np.testing.assert_allclose(predictions.get_array('force_spread'), direct.force_spread, rtol=1e-4)
    assert predictions.get_array('atom_force_spread').shape == (9,)
    # 24 frames, 10 % calibration: too few for 90 % coverage, and the output says so instead of a silent NaN
    assert predictions.base.attributes.get('requested_coverage') == 0.9
    assert predictions.base.attributes.get('coverage') == pytest.approx(2 / 3)
    assert 'too small' in predictions.base.attributes.get('interval_note')
    # the model predicts the held-out PySCF energies far better than composition would guess
    errors = np.abs(predictions.get_array('energy') - np.array([f.energy for f in frames]))
    assert errors.max() < 0.5, errors


def test_explore_job_returns_candidate_structures(trained, mlqm_code, make_structure):
    from aiida_mlqm.calcjobs.predict import PredictCalculation

    start = make_structure(list(zip('OHH', WATER.tolist())), charge=0, multiplicity=1)
    explore = {'temperature': 600, 'steps': 20, 'threshold': 1e-5, 'check_interval': 2, 'seed': 3}
    results, node = engine.run_get_node(
        PredictCalculation,
        code=mlqm_code,
        model=trained[0]['model'],
        structures={'water': start},
        parameters=orm.Dict({'mode': 'explore', 'explore': explore}),
        metadata={'options': {'resources': {'num_machines': 1}}},
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    candidates = results['candidates']
    assert list(candidates) == ['candidate_000']
    candidate = candidates['candidate_000']
    assert candidate.get_formula() == 'H2O' and candidate.base.attributes.get('charge') == 0
    assert candidate.base.attributes.get('source').startswith('mlqm.predict:explore:water:')
    assert results['explore']['trajectories'][0]['reason'] == 'threshold'


def test_nan_loss_ends_with_exit_code_600(water_dataset, mlqm_code):
    from aiida_mlqm.calcjobs.train import TrainCalculation

    _, node = engine.run_get_node(
        TrainCalculation,
        code=mlqm_code,
        dataset=water_dataset,
        parameters=orm.Dict({'hyperparameters': {**HYPER, 'epochs': 3, 'learning_rate': 1e10}}),
        metadata={'options': {'resources': {'num_machines': 1}}},
    )
    assert node.exit_status == 600 and 'loss became' in node.exit_message


@pytest.mark.parametrize(
    'parameters,message',
    [
        ({'hyperparameters': {'epochz': 3}}, 'epochz'),
        ({'kind': 'delta', 'base_level': 'HF/sto-3g'}, 'base_level and target_level'),
        ({'kind': 'delta', 'base_level': 'HF/sto-3g', 'target_level': 'CCSD/cc-pvdz'}, 'not in the dataset'),
        ({'output': 'elsewhere'}, 'output'),
    ],
)
def test_train_parameters_validated_before_submission(water_dataset, mlqm_code, parameters, message):
    from aiida_mlqm.calcjobs.train import TrainCalculation

    with pytest.raises(ValueError, match=message):
        engine.run(TrainCalculation, code=mlqm_code, dataset=water_dataset, parameters=orm.Dict(parameters))


def test_predict_refuses_unknown_elements(trained, mlqm_code, make_structure):
    from aiida_mlqm.calcjobs.predict import PredictCalculation

    hcl = make_structure([('H', (0, 0, 0)), ('Cl', (0, 0, 1.27))])
    with pytest.raises(ValueError, match='not among the model species'):
        engine.run(PredictCalculation, code=mlqm_code, model=trained[0]['model'], structures={'hcl': hcl})


def test_verdi_node_show_says_what_the_model_is(trained):
    from aiida.cmdline.commands.cmd_node import node_show
    from click.testing import CliRunner

    model = trained[0]['model']
    output = CliRunner().invoke(node_show, [str(model.pk)]).output
    assert 'ModelData' in output and 'potential committee' in output and 'H, O' in output, output


SUBMIT_TRAIN_PREDICT = """
import numpy as np
from pyscf import gto, scf
from aiida_mlqm.provenance.dataset import DatasetData, Frame
from aiida_mlqm.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV
rng = np.random.default_rng(0)
water = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
frames = []
for _ in range(12):
    positions = water + rng.normal(0.0, 0.05, water.shape)
    mean_field = scf.RHF(gto.M(atom=list(zip('OHH', positions)), basis='sto-3g', verbose=0))
    energy = mean_field.kernel() * HARTREE_TO_EV
    forces = -mean_field.nuc_grad_method().kernel() * HARTREE_TO_EV / BOHR_TO_ANGSTROM
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
