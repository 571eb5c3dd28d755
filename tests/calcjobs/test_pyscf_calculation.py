"""``mlqm.pyscf`` and ``mlqm.pyscf.batch``: job folder contents, input validation, failures and restarts."""

from __future__ import annotations

import json
import pathlib

import pytest
from aiida import orm
from aiida.common.folders import SandboxFolder
from aiida.engine import run_get_node
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager
from aiida_mlqm.calcjobs.batch import PyscfBatchCalculation
from aiida_mlqm.calcjobs.pyscf import PyscfCalculation
from jobs_test_molecules import H2, O2, OH, WATER

RUNNER = pathlib.Path(__file__).parents[2] / 'calcjobs' / 'runners' / 'pyscf_runner.py'


def prepare(process_class, inputs):
    process = instantiate_process(get_manager().get_runner(), process_class, **inputs)
    folder = SandboxFolder()
    return process.prepare_for_submission(folder), pathlib.Path(folder.abspath)


def test_job_folder_has_the_fixed_runner_and_json_input(mlqm_code, make_structure):
    checkpoint = orm.SinglefileData.from_string('not really a chkfile', filename='old.chk')
    inputs = {
        'code': mlqm_code,
        'structure': make_structure(OH),
        'parameters': orm.Dict({'method': 'UHF', 'basis': 'sto-3g', 'charge': -1}),
        'checkpoint': checkpoint,
        'metadata': {
            'options': {
                'max_wallclock_seconds': 1000,
                'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1, 'num_cores_per_mpiproc': 2},
            }
        },
    }
    calcinfo, folder = prepare(PyscfCalculation, inputs)
    assert (folder / 'pyscf_runner.py').read_bytes() == RUNNER.read_bytes()
    data = json.loads((folder / 'input.json').read_text())
    assert data['parameters']['method'] == 'hf' and data['parameters']['reference'] == 'unrestricted'
    assert data['parameters']['scf']['max_cycle'] == 100  # defaults filled in
    assert data['structures'] == {
        'structure': {'symbols': ['O', 'H'], 'positions': [list(p) for _, p in OH], 'charge': -1, 'multiplicity': 1}
    }
    assert data['soft_walltime'] == pytest.approx(1000 * PyscfCalculation.SOFT_WALLTIME_MARGIN)
    assert data['checkpoint'] == 'restart.chk' and data['write_checkpoint'] is True
    assert (folder / 'restart.chk').read_text() == 'not really a chkfile'
    assert calcinfo.provenance_exclude_list == ['restart.chk']
    assert calcinfo.prepend_text == 'export OMP_NUM_THREADS=2'
    assert calcinfo.codes_info[0].cmdline_params == ['pyscf_runner.py']
    assert calcinfo.codes_info[0].stdout_name == 'aiida.out'
    assert set(calcinfo.retrieve_list) == {'aiida.out', 'results.json'}
    assert calcinfo.retrieve_temporary_list == ['structure.chk']


@pytest.mark.parametrize(
    ('parameters', 'fragment'),
    [
        ({'method': 'hf', 'basis': "sto-3g'; __import__('os').system('id'); '"}, 'basis'),
        ({'method': 'hf', 'basis': '/etc/passwd'}, "'/etc/passwd'"),
        ({'method': 'hf', 'basis': 'sto-3g', '__class__': 'x'}, "'__class__'"),
        ({'method': 'hf', 'basis': 'sto-3g', 'multiplicity': 1}, 'multiplicity 1 is impossible with 9 electrons'),
        ({'method': 'ccsd(t)', 'basis': 'sto-3g', 'forces': True}, 'UCCSD(T)'),
    ],
)
def test_builder_validation_rejects_bad_parameters(mlqm_code, make_structure, parameters, fragment):
    builder = PyscfCalculation.get_builder()
    builder.code = mlqm_code
    builder.structure = make_structure(OH)
    builder.parameters = orm.Dict(parameters)
    with pytest.raises(ValueError, match='invalid `parameters`') as excinfo:
        run_get_node(builder)
    assert fragment in str(excinfo.value)


def test_scf_not_converged_gives_410_and_a_checkpoint_to_restart_from(mlqm_code, make_structure):
    structure = make_structure(WATER)
    builder = PyscfCalculation.get_builder()
    builder.code = mlqm_code
    builder.structure = structure
    builder.parameters = orm.Dict({'method': 'hf', 'basis': '6-31g', 'scf': {'max_cycle': 4, 'conv_tol': 1e-12}})
    results, node = run_get_node(builder)
    assert node.exit_status == PyscfCalculation.exit_codes.ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED.status
    assert results['parameters']['status'] == 'scf_not_converged'
    assert results['parameters']['scf_converged'] is False
    assert 'checkpoint' in results

    builder.checkpoint = results['checkpoint']
    builder.parameters = orm.Dict({'method': 'hf', 'basis': '6-31g', 'scf': {'conv_tol': 1e-12}})
    restarted, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    assert restarted['parameters']['status'] == 'ok'
    assert 'checkpoint' not in restarted  # attached only when a restart may be needed


def test_batch_isolates_a_failing_structure(mlqm_code, make_structure):
    builder = PyscfBatchCalculation.get_builder()
    builder.code = mlqm_code
    builder.structures = {'h2': make_structure(H2), 'o2': make_structure(O2)}
    # Triplet O2 from molecular_states; three SCF cycles are enough for H2 in a minimal basis, not for O2.
    builder.molecular_states = orm.Dict({'o2': {'multiplicity': 3}})
    builder.parameters = orm.Dict({'method': 'hf', 'basis': 'sto-3g', 'scf': {'max_cycle': 3}, 'forces': True})
    results, node = run_get_node(builder)
    assert node.exit_status == PyscfBatchCalculation.exit_codes.WARNING_SOME_STRUCTURES_FAILED.status
    failures = results['failures'].get_dict()
    assert set(failures) == {'o2'}
    assert failures['o2']['message'] == 'SCFNotConverged in stage scf: SCF not converged in 3 cycles'
    assert failures['o2']['status'] == 'scf_not_converged'
    assert failures['o2']['exit_code'] == PyscfCalculation.exit_codes.ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED.status
    assert 'h2' in results['parameters'] and 'o2' not in results['parameters']
    assert results['parameters']['h2']['status'] == 'ok'
    assert 'forces' not in results  # the good structure's forces are in its dataset row
    (row,) = results['dataset'].frames()
    assert row.structure_uuid == builder.structures['h2'].uuid and row.forces.shape == (2, 3)


@pytest.mark.parametrize(
    ('states', 'fragment'),
    [
        ({'o3': {'charge': 0}}, "keys ['o3'] that are not in `structures`"),
        ({'oh': {'multiplicity': 1}}, "structure 'oh': multiplicity 1 is impossible"),
        ({'oh': {'spin': 1}}, '`molecular_states.oh` must be a dictionary with keys'),
    ],
)
def test_batch_validation_names_the_structure(mlqm_code, make_structure, states, fragment):
    builder = PyscfBatchCalculation.get_builder()
    builder.code = mlqm_code
    builder.structures = {'h2': make_structure(H2), 'oh': make_structure(OH)}
    builder.molecular_states = orm.Dict(states)
    builder.parameters = orm.Dict({'method': 'hf', 'basis': 'sto-3g'})
    with pytest.raises(ValueError) as excinfo:
        run_get_node(builder)
    assert fragment in str(excinfo.value)
