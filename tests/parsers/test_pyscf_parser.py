"""``mlqm.pyscf`` parser on fixture folders (``fixtures/mlqm.pyscf/<case>``): outputs, units and exit codes."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida_mlqm.calcjobs.pyscf import PyscfCalculation
from aiida_mlqm.parsers.pyscf import BOHR_TO_ANGSTROM, HARTREE_TO_EV, PyscfParser

WATER = [('O', (0.0, 0.0, 0.0)), ('H', (0.0, 0.757, 0.587)), ('H', (0.0, -0.757, 0.587))]
H2 = [('H', (0.0, 0.0, 0.0)), ('H', (0.0, 0.0, 0.74))]
EXIT = PyscfCalculation.exit_codes
FIXTURES = pathlib.Path(__file__).parent / 'fixtures'


def parse(generate_calc_job_node, make_structure, case, parameters=None, scheduler_exit_status=None, temporary=None):
    inputs = {
        'structure': make_structure(WATER),
        'parameters': orm.Dict(parameters or {'method': 'hf', 'basis': 'sto-3g'}),
    }
    node = generate_calc_job_node('mlqm.pyscf', case, inputs, scheduler_exit_status)
    kwargs = {'retrieved_temporary_folder': str(temporary)} if temporary else {}
    results, calcfunction = PyscfParser.parse_from_node(node, store_provenance=False, **kwargs)
    return results, calcfunction


def test_ok_converts_units_once(generate_calc_job_node, make_structure):
    raw = json.loads((FIXTURES / 'mlqm.pyscf' / 'ok' / 'results.json').read_text())['structures']['structure']
    results, calcfunction = parse(generate_calc_job_node, make_structure, 'ok', {'method': 'ccsd', 'basis': 'sto-3g'})
    assert calcfunction.exit_status == 0
    parameters = results['parameters'].get_dict()
    for key in ('scf_energy', 'ccsd_correlation_energy', 'total_energy', 'homo', 'lumo', 'homo_lumo_gap'):
        assert parameters[key] == pytest.approx(raw[key] * HARTREE_TO_EV, rel=1e-12)
        assert parameters[f'{key}_units'] == 'eV'
    assert parameters['t1_diagnostic'] == raw['t1_diagnostic']  # dimensionless: unchanged
    assert parameters['level_of_theory'] == 'ccsd/sto-3g'
    assert parameters['status'] == 'ok' and parameters['timings_units'] == 's'
    assert parameters['versions']['runner'] == '1' and parameters['versions']['pyscf'].startswith('2.')
    forces = results['forces'].get_array('forces')
    np.testing.assert_allclose(forces, np.array(raw['forces']) * HARTREE_TO_EV / BOHR_TO_ANGSTROM)
    assert results['forces'].base.attributes.get('units') == 'eV/Å'
    assert 'checkpoint' not in results


def test_scf_not_converged_attaches_parameters_and_checkpoint(generate_calc_job_node, make_structure, tmp_path):
    (tmp_path / 'structure.chk').write_bytes(b'HDF5 stand-in')
    results, calcfunction = parse(generate_calc_job_node, make_structure, 'scf_not_converged', temporary=tmp_path)
    assert calcfunction.exit_status == EXIT.ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED.status
    assert results['parameters']['status'] == 'scf_not_converged'
    assert results['parameters']['scf_converged'] is False
    assert results['checkpoint'].get_content(mode='rb') == b'HDF5 stand-in'
    assert 'forces' not in results


@pytest.mark.parametrize(
    ('case', 'exit_code', 'fragment'),
    [
        ('missing_stdout', EXIT.ERROR_OUTPUT_STDOUT_MISSING, None),
        ('missing_results', EXIT.ERROR_OUTPUT_RESULTS_MISSING, None),
        ('unreadable_json', EXIT.ERROR_OUTPUT_UNREADABLE, 'could not be read'),
        ('killed', EXIT.ERROR_STRUCTURE_MISSING_FROM_RESULTS, 'structure'),
        ('walltime', EXIT.ERROR_OUT_OF_WALLTIME, 'soft walltime reached before stage forces'),
        ('out_of_memory', EXIT.ERROR_OUT_OF_MEMORY, 'Unable to allocate 512. GiB'),
        ('exception', EXIT.ERROR_PYSCF_EXCEPTION, 'LinAlgError in stage ccsd: Singular matrix'),
        ('input_refused', EXIT.ERROR_PYSCF_EXCEPTION, "unknown keys in parameters: ['__class__']"),
    ],
)
def test_failures_map_to_specific_exit_codes(generate_calc_job_node, make_structure, case, exit_code, fragment):
    _, calcfunction = parse(generate_calc_job_node, make_structure, case)
    assert calcfunction.exit_status == exit_code.status
    if fragment:
        assert fragment in calcfunction.exit_message


@pytest.mark.parametrize('case', ['missing_results', 'killed'])
def test_scheduler_diagnosis_stands_when_no_result_came_back(generate_calc_job_node, make_structure, case):
    walltime = PyscfCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status
    _, calcfunction = parse(generate_calc_job_node, make_structure, case, scheduler_exit_status=walltime)
    assert calcfunction.exit_status == walltime


def test_runner_result_wins_over_the_scheduler(generate_calc_job_node, make_structure):
    memory = PyscfCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_MEMORY.status
    _, calcfunction = parse(generate_calc_job_node, make_structure, 'scf_not_converged', scheduler_exit_status=memory)
    assert calcfunction.exit_status == EXIT.ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED.status


def test_unexpected_exception_becomes_exit_code_350(generate_calc_job_node, make_structure, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError('simulated bug')

    monkeypatch.setattr('aiida_mlqm.parsers.pyscf.convert_result', broken)
    _, calcfunction = parse(generate_calc_job_node, make_structure, 'ok')
    assert calcfunction.exit_status == EXIT.ERROR_UNEXPECTED_PARSER_EXCEPTION.status
    assert 'simulated bug' in calcfunction.exit_message


@pytest.mark.parametrize('case', sorted(path.name for path in (FIXTURES / 'mlqm.pyscf').iterdir()))
def test_outputs_match_the_stored_expectation(
    generate_calc_job_node, make_structure, serialize_outputs, data_regression, tmp_path, case
):
    """Every fixture folder's outputs and exit code against ``test_pyscf_parser/`` (regenerate: --force-regen)."""
    (tmp_path / 'structure.chk').write_bytes(b'HDF5 stand-in')
    parameters = {'method': 'ccsd', 'basis': 'sto-3g'} if case == 'ok' else None
    results, calcfunction = parse(generate_calc_job_node, make_structure, case, parameters, temporary=tmp_path)
    data_regression.check(serialize_outputs(results, calcfunction))
