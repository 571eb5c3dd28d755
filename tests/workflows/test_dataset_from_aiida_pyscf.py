"""Work already done with aiida-pyscf counts: a DatasetData assembled from real ``pyscf.base`` calculations."""
from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory
from aiida_mlqm.workflows.dataset import dataset_from_pyscf_calculations


@pytest.fixture(scope='module')
def pyscf_base_calculations(mlqm_code, make_structure):
    calculations = []
    for name in ('H2O', 'NH3'):
        _, node = run_get_node(
            CalculationFactory('pyscf.base'),
            code=mlqm_code,
            structure=make_structure(name),
            parameters=orm.Dict({'mean_field': {'method': 'RHF'}, 'structure': {'basis': 'sto-3g'}}),
            metadata={'options': {'resources': {'num_machines': 1}, 'parser_name': 'pyscf.base'}},
        )
        assert node.is_finished_ok, node.exit_message
        calculations.append(node)
    return calculations


def test_dataset_from_pyscf_base_calculations(pyscf_base_calculations):
    dataset = dataset_from_pyscf_calculations(pyscf_base_calculations)
    assert len(dataset) == 2
    assert dataset.levels == ['hf/sto-3g', 'hf/sto-3g']
    for calculation, frame in zip(pyscf_base_calculations, dataset.frames()):
        assert frame.source_uuid == calculation.uuid
        mean_field = calculation.outputs.parameters['mean_field']
        assert frame.energy == pytest.approx(mean_field['total_energy'])
        np.testing.assert_allclose(frame.forces, mean_field['forces'])
        # The calcfunction's inputs are the calculations' own nodes.
        inputs = {n.uuid for n in dataset.creator.base.links.get_incoming().all_nodes()}
        assert calculation.outputs.parameters.uuid in inputs
        assert calculation.inputs.structure.uuid in inputs


def test_only_finished_pyscf_base_calculations_are_accepted(pyscf_base_calculations):
    dataset = dataset_from_pyscf_calculations(pyscf_base_calculations)
    with pytest.raises(ValueError, match='not an aiida-pyscf'):
        dataset_from_pyscf_calculations([dataset.creator])
    with pytest.raises(ValueError, match='no calculations'):
        dataset_from_pyscf_calculations([])
