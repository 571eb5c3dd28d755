"""``mlqm.pyscf.batch`` parser on fixture folders (``fixtures/mlqm.pyscf.batch/<case>``)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida_mlqm.calcjobs.batch import PyscfBatchCalculation
from aiida_mlqm.calcjobs.pyscf import PyscfCalculation
from aiida_mlqm.parsers.batch import PyscfBatchParser
from aiida_mlqm.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

WATER = [('O', (0.0, 0.0, 0.0)), ('H', (0.0, 0.757, 0.587)), ('H', (0.0, -0.757, 0.587))]
H2 = [('H', (0.0, 0.0, 0.0)), ('H', (0.0, 0.0, 0.74))]
EXIT = PyscfBatchCalculation.exit_codes
FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'mlqm.pyscf.batch'


def parse(generate_calc_job_node, make_structure, case, keys, scheduler_exit_status=None):
    inputs = {
        'structures': {key: make_structure(WATER if key == 'water' else H2) for key in keys},
        'parameters': orm.Dict({'method': 'hf', 'basis': 'sto-3g', 'forces': True}),
    }
    node = generate_calc_job_node('mlqm.pyscf.batch', case, inputs, scheduler_exit_status)
    return PyscfBatchParser.parse_from_node(node, store_provenance=False)


def test_all_ok(generate_calc_job_node, make_structure):
    results, calcfunction = parse(generate_calc_job_node, make_structure, 'all_ok', ['h2', 'water'])
    assert calcfunction.exit_status == 0
    assert set(results['parameters']) == {'h2', 'water'}
    assert 'forces' not in results  # the forces are in the dataset's rows, not in a node a structure as well
    assert results['parameters']['water']['total_energy_units'] == 'eV'
    assert 'failures' not in results
    # The good structures as dataset rows, in key order, each naming its result node and the job.
    dataset = results['dataset']
    assert dataset.base.attributes.get('result_uuids') == [results['parameters'][key].uuid for key in ('h2', 'water')]
    assert dataset.get_array('energy')[1] == results['parameters']['water']['total_energy']
    raw = json.loads((FIXTURES / 'all_ok' / 'results.json').read_text())['structures']['water']['forces']
    np.testing.assert_allclose(dataset.get_array('forces')[2:], np.array(raw) * HARTREE_TO_EV / BOHR_TO_ANGSTROM)
    assert dataset.get_array('forces_present').tolist() == [True, True]


def test_partial_failure_keeps_the_good_results(generate_calc_job_node, make_structure):
    results, calcfunction = parse(generate_calc_job_node, make_structure, 'partial', ['h2', 'o2'])
    assert calcfunction.exit_status == EXIT.WARNING_SOME_STRUCTURES_FAILED.status
    assert '1 of 2 structures failed: o2: scf_not_converged' in calcfunction.exit_message
    assert set(results['parameters']) == {'h2'} and 'forces' not in results
    assert len(results['dataset']) == 1
    failure = results['failures'].get_dict()['o2']
    assert failure['status'] == 'scf_not_converged'
    assert failure['exit_code'] == PyscfCalculation.exit_codes.ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED.status
    assert 'SCF not converged' in failure['message']


def test_all_failed(generate_calc_job_node, make_structure):
    results, calcfunction = parse(generate_calc_job_node, make_structure, 'all_failed', ['h2', 'o2'])
    assert calcfunction.exit_status == EXIT.ERROR_ALL_STRUCTURES_FAILED.status
    failures = results['failures'].get_dict()
    assert failures['h2']['exit_code'] == PyscfCalculation.exit_codes.ERROR_PYSCF_EXCEPTION.status
    assert failures['h2']['message'] == 'RuntimeError in stage forces: boom'
    assert 'parameters' not in results


@pytest.mark.parametrize(
    ('scheduler_exit_status', 'expected'),
    [
        (None, PyscfCalculation.exit_codes.ERROR_STRUCTURE_MISSING_FROM_RESULTS.status),
        (PyscfCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status, 120),
    ],
)
def test_structures_the_job_never_reached(generate_calc_job_node, make_structure, scheduler_exit_status, expected):
    results, calcfunction = parse(
        generate_calc_job_node, make_structure, 'killed', ['h2', 'water'], scheduler_exit_status
    )
    assert calcfunction.exit_status == EXIT.WARNING_SOME_STRUCTURES_FAILED.status
    assert set(results['parameters']) == {'h2'}
    assert results['failures'].get_dict()['water']['status'] == 'missing'
    assert results['failures'].get_dict()['water']['exit_code'] == expected


def test_no_results_lets_the_scheduler_code_stand(generate_calc_job_node, make_structure):
    memory = PyscfCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_MEMORY.status
    _, calcfunction = parse(generate_calc_job_node, make_structure, 'missing_results', ['h2'], memory)
    assert calcfunction.exit_status == memory
    _, calcfunction = parse(generate_calc_job_node, make_structure, 'missing_results', ['h2'])
    assert calcfunction.exit_status == EXIT.ERROR_OUTPUT_RESULTS_MISSING.status


@pytest.mark.parametrize(
    ('case', 'keys'),
    [('all_ok', ['h2', 'water']), ('partial', ['h2', 'o2']), ('all_failed', ['h2', 'o2']), ('killed', ['h2', 'water'])],
)
def test_outputs_match_the_stored_expectation(
    generate_calc_job_node, make_structure, serialize_outputs, data_regression, case, keys
):
    """Each fixture folder's outputs and exit code against ``test_batch_parser/`` (regenerate: --force-regen)."""
    results, calcfunction = parse(generate_calc_job_node, make_structure, case, keys)
    data_regression.check(serialize_outputs(results, calcfunction))
