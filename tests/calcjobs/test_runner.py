"""The fixed runner on its own, as a compute node runs it: isolation, walltime, checkpoints, defence in depth."""

from __future__ import annotations

import ast
import json
import pathlib
import shutil
import subprocess
import sys

import pytest

RUNNER = pathlib.Path(__file__).parents[2] / 'calcjobs' / 'runners' / 'pyscf_runner.py'
WATER = {
    'symbols': ['O', 'H', 'H'],
    'positions': [[0, 0, 0], [0, 0.757, 0.587], [0, -0.757, 0.587]],
    'charge': 0,
    'multiplicity': 1,
}
H2 = {'symbols': ['H', 'H'], 'positions': [[0, 0, 0], [0, 0, 0.74]], 'charge': 0, 'multiplicity': 1}
# Nine electrons cannot be a singlet: PySCF raises while building the molecule.
OH_WRONG_PARITY = {'symbols': ['O', 'H'], 'positions': [[0, 0, 0], [0, 0, 0.97]], 'charge': 0, 'multiplicity': 1}
HF_STO3G = {'method': 'hf', 'basis': 'sto-3g', 'reference': 'auto', 'scf': {}, 'cc': {}}


def run_runner(folder: pathlib.Path, data: dict) -> tuple[int, dict]:
    shutil.copy(RUNNER, folder / 'pyscf_runner.py')
    (folder / 'input.json').write_text(json.dumps(data))
    process = subprocess.run(
        [sys.executable, 'pyscf_runner.py'],
        check=False,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'},
    )
    return process.returncode, json.loads((folder / 'results.json').read_text())


@pytest.mark.parametrize('runner', [RUNNER, RUNNER.parent / 'features_runner.py'], ids=['pyscf_runner', 'features_runner'])
def test_runner_imports_only_stdlib_numpy_and_pyscf(runner):
    tree = ast.parse(runner.read_text())
    modules = {
        alias.name.split('.')[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    modules |= {
        node.module.split('.')[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    # the features module is copied beside the runner into the job folder (a sibling, not a package import)
    assert not modules - set(sys.stdlib_module_names) - {'numpy', 'pyscf', 'features_runner'}


def test_one_failing_structure_does_not_stop_the_others(tmp_path):
    data = {
        'parameters': HF_STO3G,
        'structures': {'water': WATER, 'odd': OH_WRONG_PARITY, 'h2': H2},
        'checkpoint': None,
        'soft_walltime': None,
    }
    returncode, results = run_runner(tmp_path, data)
    assert returncode == 0
    structures = results['structures']
    assert list(structures) == ['water', 'odd', 'h2']
    assert structures['odd']['status'] == 'error'
    assert structures['odd']['error']['stage'] == 'setup'
    assert 'not consistent' in structures['odd']['error']['message']
    for key in ('water', 'h2'):
        assert structures[key]['status'] == 'ok'
        assert structures[key]['scf_converged'] is True
        assert structures[key]['total_energy'] == structures[key]['scf_energy'] < -1.0
    assert results['versions']['pyscf'].startswith('2.')


def test_scf_not_converged_is_recorded_per_structure(tmp_path):
    parameters = {**HF_STO3G, 'reference': 'unrestricted', 'scf': {'max_cycle': 2, 'conv_tol': 1e-12}}
    o2 = {'symbols': ['O', 'O'], 'positions': [[0, 0, 0], [0, 0, 1.21]], 'charge': 0, 'multiplicity': 3}
    returncode, results = run_runner(tmp_path, {'parameters': parameters, 'structures': {'o2': o2}})
    assert returncode == 0
    result = results['structures']['o2']
    assert result['status'] == 'scf_not_converged'
    assert result['scf_converged'] is False and result['scf_cycles'] <= 3
    assert result['error']['stage'] == 'scf'


def test_soft_walltime_stops_cleanly(tmp_path):
    data = {'parameters': HF_STO3G, 'structures': {'water': WATER, 'h2': H2}, 'soft_walltime': 1e-6}
    returncode, results = run_runner(tmp_path, data)
    assert returncode == 0
    assert results['structures']['water']['status'] == 'walltime'
    assert results['structures']['h2']['status'] == 'walltime'
    assert results['structures']['h2']['error']['stage'] == 'not_started'


def test_checkpoint_out_and_restart_in(tmp_path):
    first, second = tmp_path / 'first', tmp_path / 'second'
    first.mkdir(), second.mkdir()
    parameters = {**HF_STO3G, 'scf': {'conv_tol': 1e-10}}
    _, results = run_runner(first, {'parameters': parameters, 'structures': {'water': WATER}, 'write_checkpoint': True})
    assert (first / 'water.chk').is_file()
    shutil.copy(first / 'water.chk', second / 'restart.chk')
    _, restarted = run_runner(
        second, {'parameters': parameters, 'structures': {'water': WATER}, 'checkpoint': 'restart.chk'}
    )
    before, after = results['structures']['water'], restarted['structures']['water']
    assert after['status'] == 'ok'
    assert after['total_energy'] == pytest.approx(before['total_energy'], abs=1e-9)
    assert after['scf_cycles'] < before['scf_cycles']
    assert not (second / 'water.chk').exists()  # no checkpoint unless asked


def test_runner_refuses_bad_input_in_results_json(tmp_path):
    data = {'parameters': {**HF_STO3G, '__class__': 'x'}, 'structures': {'water': WATER}}
    returncode, results = run_runner(tmp_path, data)
    assert returncode == 2
    assert results['structures'] == {}
    assert results['error']['stage'] == 'input'
    assert "'__class__'" in results['error']['message']


@pytest.mark.parametrize(
    ('change', 'fragment'),
    [
        ({'parameters': {**HF_STO3G, 'scf': {'callback': 'print'}}}, "'callback'"),
        ({'parameters': {**HF_STO3G, 'basis': '../basis.nw'}}, 'basis'),
        ({'parameters': {**HF_STO3G, 'method': 'mrci'}}, 'mrci'),  # casscf runs since the multireference path
        ({'parameters': {**HF_STO3G, 'casscf': {'ncas': 2}}}, 'only allowed with method casscf'),
        ({'checkpoint': '/etc/passwd'}, 'checkpoint'),
        ({'structures': {'a/b': WATER}}, "'a/b'"),
        ({'structures': {'w': {**WATER, 'symbols': ['O', 'H', 'import os']}}}, 'symbols'),
        ({'exec': 'print(1)'}, "'exec'"),
    ],
)
def test_runner_rechecks_its_input(change, fragment):
    from aiida_mlqm.calcjobs.runners.pyscf_runner import check_input

    with pytest.raises(ValueError) as excinfo:
        check_input({'parameters': HF_STO3G, 'structures': {'water': WATER}, **change})
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize(('symbol', 'charge'), [('I', -1), ('Cs', 1)])
def test_def2_bases_beyond_kr_come_with_their_ecp(tmp_path, symbol, charge):
    """I- and Cs+ at HF/def2-SVP equal PySCF run directly with the def2 ECP (all-electron I- would be ~-1993 Ha)."""
    from pyscf import gto, scf

    ion = {'symbols': [symbol], 'positions': [[0.0, 0.0, 0.0]], 'charge': charge, 'multiplicity': 1}
    parameters = {**HF_STO3G, 'basis': 'def2-svp'}
    code, results = run_runner(tmp_path, {'parameters': parameters, 'structures': {'ion': ion}})
    assert code == 0, results
    result = results['structures']['ion']
    assert result['status'] == 'ok', result.get('error')

    mol = gto.M(atom=f'{symbol} 0 0 0', basis='def2-svp', ecp='def2-svp', charge=charge, verbose=0)
    reference = scf.RHF(mol)
    reference.conv_tol = 1e-9
    assert result['total_energy'] == pytest.approx(reference.kernel(), abs=1e-6)
    assert result['nelectron'] == mol.nelectron < 50  # the core electrons are in the ECP
