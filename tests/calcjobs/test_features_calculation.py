"""``mlqm.features.batch``: job folder, validation before submission, features per structure through AiiDA."""
from __future__ import annotations

import json
import pathlib

import pytest
from aiida import orm
from aiida.common.folders import SandboxFolder
from aiida.engine import run_get_node
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager
from aiida_mlqm.calcjobs.features import FeaturesBatchCalculation
from jobs_test_molecules import H2, OH, WATER


def test_job_folder_has_both_runner_modules_and_validated_parameters(mlqm_code, make_structure):
    inputs = {
        'code': mlqm_code,
        'structures': {'water': make_structure(WATER), 'oh': make_structure(OH, multiplicity=2)},
        'parameters': orm.Dict({'basis': 'sto-3g', 'features': {'excited_states': 1}}),
    }
    process = instantiate_process(get_manager().get_runner(), FeaturesBatchCalculation, **inputs)
    folder = SandboxFolder()
    process.prepare_for_submission(folder)
    path = pathlib.Path(folder.abspath)
    assert {'pyscf_runner.py', 'features_runner.py', 'input.json'} <= {p.name for p in path.iterdir()}
    data = json.loads((path / 'input.json').read_text())
    assert data['parameters']['method'] == 'features'
    assert data['parameters']['features']['excited_states'] == 1 and data['parameters']['features']['fod_xc'] == 'pbe'
    assert data['structures']['oh']['multiplicity'] == 2


@pytest.mark.parametrize(
    ('parameters', 'message'),
    [
        ({'basis': 'sto-3g', 'method': 'ccsd'}, 'method'),
        ({'basis': 'sto-3g', 'features': {'fod_xc': 'exec'}}, 'fod_xc'),
        ({'basis': 'nope'}, 'basis'),
    ],
)
def test_bad_parameters_fail_before_submission(mlqm_code, make_structure, parameters, message):
    with pytest.raises(ValueError, match=message):
        run_get_node(
            FeaturesBatchCalculation,
            code=mlqm_code,
            structures={'h2': make_structure(H2)},
            parameters=orm.Dict(parameters),
        )


def test_features_come_back_per_structure_with_units(mlqm_code, make_structure):
    results, node = run_get_node(
        FeaturesBatchCalculation,
        code=mlqm_code,
        structures={'water': make_structure(WATER), 'h2': make_structure(H2)},
        parameters=orm.Dict({'basis': 'sto-3g', 'features': {'excited_states': 1}}),
    )
    assert node.is_finished_ok, node.exit_message
    for key in ('water', 'h2'):
        output = results['parameters'][key].get_dict()
        assert output['features']['electrons'] == (10 if key == 'water' else 2)
        assert output['features_units'].startswith('Hartree')
        assert output['timings']['fod'] > 0
