"""Fixed PySCF job runner of aiida-mlqm (``mlqm.pyscf`` and ``mlqm.pyscf.batch``), copied verbatim into job folders.

Usage, in the job folder: ``python pyscf_runner.py`` (reads ``input.json``, writes ``results.json``).

It imports only the standard library, numpy and PySCF, so it runs on any compute node that has PySCF. Nothing from
the input is ever evaluated: every key is checked again against the allow-lists below (the plugin validated the
values already) and values are only passed to PySCF as data.

``input.json``: ``{'parameters': {...}, 'structures': {key: {'symbols', 'positions' (Å), 'charge', 'multiplicity'}},
'checkpoint': restart chk file name or null, 'soft_walltime': seconds or null, 'write_checkpoint': bool}``.

``results.json``: ``{'versions': {...}, 'structures': {key: result}}`` in atomic units (Hartree, Hartree/Bohr), rewritten
atomically after every structure so that a killed job leaves the results of the structures it finished. Each structure
runs in isolation: a failure is recorded in its ``status`` (``ok``, ``scf_not_converged``, ``cc_not_converged``,
``out_of_memory``, ``walltime``, ``error``) and ``error`` (``type``, ``message``, ``stage``), and the next one starts.

Open-shell T1 diagnostic (UCCSD, which PySCF 2.3 does not provide): ``sqrt((|t1a|^2 + |t1b|^2) / (2 N))`` with N the
number of correlated electrons; for a closed shell (t1a = t1b) it equals PySCF's RCCSD value ``|t1| / sqrt(2 nocc)``.
The D1 diagnostic is defined for closed shells only and is reported for restricted references only.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
import time
import traceback

import numpy

RUNNER_VERSION = '1'
INPUT_KEYS = {'parameters', 'structures', 'checkpoint', 'soft_walltime', 'write_checkpoint'}
PARAMETER_KEYS = {
    'method',
    'basis',
    'xc',
    'charge',
    'multiplicity',
    'reference',
    'frozen_core',
    'forces',
    'diagnostics',
    'max_memory',
    'scf',
    'cc',
    'features',
    'casscf',
}
SCF_KEYS = {'conv_tol', 'conv_tol_grad', 'max_cycle', 'level_shift', 'damp', 'diis_space', 'second_order', 'init_guess'}
CC_KEYS = {'conv_tol', 'conv_tol_normt', 'max_cycle', 'diis_space'}
METHODS = {'hf', 'dft', 'mp2', 'ccsd', 'ccsd(t)', 'features', 'casscf'}
REFERENCES = {'auto', 'restricted', 'unrestricted', 'restricted-open'}
INIT_GUESSES = {'minao', 'atom', 'huckel', 'hcore', '1e'}
NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]{0,79}')
FILENAME = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}')
BASIS = re.compile(r'[A-Za-z0-9][A-Za-z0-9+*(),._\-]{0,63}')
XC = re.compile(r'[A-Za-z0-9][A-Za-z0-9_,+*.\- ]{0,99}')
SYMBOL = re.compile(r'[A-Z][a-z]?')


class Walltime(Exception):
    """The soft walltime passed: stop before the scheduler kills the job."""


def apply_numpy2_compatibility() -> None:
    """Let PySCF 2.3 (written for numpy 1.x) run on numpy 2.

    Two numpy 2 changes break it: ``numpy.array(x, copy=False)`` now raises where a copy is needed (numpy 1 meant
    "copy if needed", which is ``copy=None`` now), and ``einsum_path`` returns contraction tuples without the unused
    ``idx_rm`` and ``blas`` fields that ``pyscf.lib.einsum`` unpacks. Both are restored to their numpy 1 meaning.
    """
    if int(numpy.__version__.split('.')[0]) < 2 or getattr(numpy.array, '_mlqm_compat', False):
        return
    original_array = numpy.array

    def array(obj, *args, copy=True, **kwargs):
        return original_array(obj, *args, copy=None if copy is False else copy, **kwargs)

    array._mlqm_compat = True
    numpy.array = array
    from pyscf.lib import numpy_helper

    def einsum_path(*args, **kwargs):
        path, contractions = numpy.einsum_path(*args, **kwargs)
        if kwargs.get('einsum_call') and contractions and len(contractions[0]) == 3:
            contractions = [(indices, None, subscripts, rest, None) for indices, subscripts, rest in contractions]
        return path, contractions

    numpy_helper._einsum_path = einsum_path


def check_input(data: dict) -> None:
    """Raise ``ValueError`` for any key or value outside the allow-lists (the plugin checked them already)."""

    def keys(where, given, allowed):
        if not isinstance(given, dict):
            raise ValueError(f'{where} must be an object')  # noqa: TRY004 -- one exception type for bad input
        unknown = sorted(str(key) for key in given if key not in allowed)
        if unknown:
            raise ValueError(f'unknown keys in {where}: {unknown}; valid: {sorted(allowed)}')

    keys('input.json', data, INPUT_KEYS)
    parameters = data.get('parameters')
    keys('parameters', parameters, PARAMETER_KEYS)
    keys('parameters.scf', parameters.get('scf', {}), SCF_KEYS)
    keys('parameters.cc', parameters.get('cc', {}), CC_KEYS)
    if parameters.get('method') not in METHODS or parameters.get('reference', 'auto') not in REFERENCES:
        raise ValueError(f'method/reference not allowed: {parameters.get("method")!r}/{parameters.get("reference")!r}')
    if not isinstance(parameters.get('basis'), str) or not BASIS.fullmatch(parameters['basis']):
        raise ValueError('basis is not a basis set name')
    if parameters.get('xc') is not None and not (isinstance(parameters['xc'], str) and XC.fullmatch(parameters['xc'])):
        raise ValueError('xc is not a functional name')
    if parameters.get('method') == 'features':
        _features_module().check_options(parameters.get('features', {}))
    elif 'features' in parameters:
        raise ValueError('parameters.features is only allowed with method features')
    if parameters.get('method') == 'casscf':
        _features_module().check_casscf_options(parameters.get('casscf', {}))
    elif 'casscf' in parameters:
        raise ValueError('parameters.casscf is only allowed with method casscf')
    if parameters.get('scf', {}).get('init_guess', 'minao') not in INIT_GUESSES:
        raise ValueError('scf.init_guess not allowed')
    checkpoint = data.get('checkpoint')
    if checkpoint is not None and not (isinstance(checkpoint, str) and FILENAME.fullmatch(checkpoint)):
        raise ValueError('checkpoint must be a plain file name in the job folder')
    structures = data.get('structures')
    keys('structures', structures, {key for key in structures if isinstance(key, str) and NAME.fullmatch(key)})
    for key, entry in structures.items():
        keys(f'structures.{key}', entry, {'symbols', 'positions', 'charge', 'multiplicity'})
        symbols, positions = entry['symbols'], entry['positions']
        if not all(isinstance(s, str) and SYMBOL.fullmatch(s) for s in symbols) or len(positions) != len(symbols):
            raise ValueError(f'structures.{key}: symbols and positions do not describe a molecule')
        if not all(len(p) == 3 and all(isinstance(x, (int, float)) and math.isfinite(x) for x in p) for p in positions):
            raise ValueError(f'structures.{key}: positions must be finite [x, y, z] triples')


def make_molecule(entry: dict, parameters: dict):
    from pyscf import gto
    from pyscf.gto import basis as pyscf_basis

    name = pyscf_basis._format_basis_name(parameters['basis'])
    if not (name in pyscf_basis.ALIAS or pyscf_basis._is_pople_basis(name)):
        raise ValueError(f"basis {parameters['basis']!r} is not in PySCF's basis library")
    return gto.M(
        atom=[[symbol, tuple(position)] for symbol, position in zip(entry['symbols'], entry['positions'])],
        unit='Angstrom',
        basis=parameters['basis'],
        ecp=basis_ecp(parameters['basis'], entry['symbols']) or None,
        charge=int(entry['charge']),
        spin=int(entry['multiplicity']) - 1,
        max_memory=parameters.get('max_memory', 4000),
        verbose=3,
    )


def basis_ecp(basis: str, symbols) -> dict:
    """The effective core potentials that belong to ``basis`` (def2 beyond Kr, ...), per element that has one.

    A def2 basis for Rb-Rn is made for its ECP: without it the core electrons are treated with valence functions and
    the energy is wrong by hundreds of Hartree, silently.
    """
    from pyscf.gto import basis as pyscf_basis

    ecp = {}
    for symbol in sorted(set(symbols)):
        try:
            if pyscf_basis.load_ecp(basis, symbol):
                ecp[symbol] = basis
        except Exception:  # noqa: BLE001, S112 -- PySCF raises BasisNotFoundError or KeyError: the basis has no ECP
            continue
    return ecp


def resolve_reference(parameters: dict, multiplicity: int) -> str:
    reference = parameters.get('reference', 'auto')
    if reference == 'auto':
        return 'restricted' if multiplicity == 1 else 'unrestricted'
    return reference


def run_scf(mol, parameters, reference, result, deadline, restart_from, chkfile):
    from pyscf import dft, scf

    classes = {
        'restricted': (scf.RHF, dft.RKS),
        'unrestricted': (scf.UHF, dft.UKS),
        'restricted-open': (scf.ROHF, dft.ROKS),
    }[reference]
    if parameters['method'] == 'dft':
        mf = classes[1](mol)
        mf.xc = parameters['xc']
    else:
        mf = classes[0](mol)
    settings = parameters.get('scf', {})
    mf.conv_tol = settings.get('conv_tol', 1e-9)
    if settings.get('conv_tol_grad') is not None:
        mf.conv_tol_grad = settings['conv_tol_grad']
    mf.max_cycle = settings.get('max_cycle', 100)
    mf.level_shift = settings.get('level_shift', 0.0)
    mf.damp = settings.get('damp', 0.0)
    mf.diis_space = settings.get('diis_space', 8)
    mf.init_guess = settings.get('init_guess', 'minao')
    mf.chkfile = chkfile  # None keeps PySCF from writing a temporary chkfile per structure
    cycles = []

    def callback(envs):
        cycles.append(envs.get('cycle', len(cycles)))
        if deadline is not None and time.time() > deadline:
            raise Walltime('soft walltime reached during the SCF')

    mf.callback = callback
    if settings.get('second_order', False):
        mf = mf.newton()
    dm0 = mf.from_chk(restart_from) if restart_from else None
    mf.kernel(dm0=dm0)
    result['scf_energy'] = float(mf.e_tot)
    result['scf_converged'] = bool(mf.converged)
    result['scf_cycles'] = len(cycles)
    result['total_energy'] = float(mf.e_tot)
    occupations, energies = numpy.ravel(mf.mo_occ), numpy.ravel(mf.mo_energy)
    occupied, virtual = energies[occupations > 0], energies[occupations == 0]
    if occupied.size:
        result['homo'] = float(occupied.max())
    if virtual.size:
        result['lumo'] = float(virtual.min())
    if occupied.size and virtual.size:
        result['homo_lumo_gap'] = result['lumo'] - result['homo']
    if reference != 'restricted':
        result['s2'] = float(mf.spin_square()[0])
    return mf


def t1_diagnostic_unrestricted(t1) -> float:
    t1a, t1b = t1
    correlated_electrons = t1a.shape[0] + t1b.shape[0]
    return float(numpy.sqrt((numpy.linalg.norm(t1a) ** 2 + numpy.linalg.norm(t1b) ** 2) / (2 * correlated_electrons)))


def run_correlated(mf, parameters, reference, result, timings, check_time):
    from pyscf import cc, mp
    from pyscf.data.elements import chemcore

    method = parameters['method']
    ncore = chemcore(mf.mol) if parameters.get('frozen_core') else 0
    # PySCF's gradient code tests ``len(frozen)`` for any non-zero integer, so frozen orbitals go in as a list.
    frozen = list(range(ncore)) if ncore else None
    result['frozen_orbitals'] = int(ncore)
    if method == 'mp2':
        start = time.perf_counter()
        solver = mp.MP2(mf, frozen=frozen)
        solver.kernel()
        timings['mp2'] = time.perf_counter() - start
        result['mp2_correlation_energy'] = float(solver.e_corr)
        result['total_energy'] = float(mf.e_tot + solver.e_corr)
        return solver
    settings = parameters.get('cc', {})
    start = time.perf_counter()
    solver = cc.CCSD(mf, frozen=frozen)
    solver.conv_tol = settings.get('conv_tol', 1e-7)
    solver.conv_tol_normt = settings.get('conv_tol_normt', 1e-5)
    solver.max_cycle = settings.get('max_cycle', 100)
    solver.diis_space = settings.get('diis_space', 6)
    solver.callback = lambda envs: check_time('ccsd')  # called every CC iteration: a long CCSD obeys the walltime
    solver.kernel()
    timings['ccsd'] = time.perf_counter() - start
    if reference != 'restricted-open' and solver.emp2 is not None:
        # The CCSD starting amplitudes are the MP2 ones: the MP2 energy comes for free (canonical orbitals only).
        result['mp2_correlation_energy'] = float(solver.emp2)
    result['ccsd_correlation_energy'] = float(solver.e_corr)
    result['ccsd_converged'] = bool(solver.converged)
    result['total_energy'] = float(mf.e_tot + solver.e_corr)
    if parameters.get('diagnostics', True):
        if reference == 'restricted':
            result['t1_diagnostic'] = float(solver.get_t1_diagnostic())
            result['d1_diagnostic'] = float(solver.get_d1_diagnostic())
        else:
            result['t1_diagnostic'] = t1_diagnostic_unrestricted(solver.t1)
    if not solver.converged:
        return solver
    if method == 'ccsd(t)':
        check_time('ccsd_t')
        start = time.perf_counter()
        correction = solver.ccsd_t()
        timings['ccsd_t'] = time.perf_counter() - start
        result['ccsd_t_correction'] = float(correction)
        result['total_energy'] = float(mf.e_tot + solver.e_corr + correction)
    return solver


def compute_gradient(mf, solver, parameters, reference):
    if solver is None:
        return mf.nuc_grad_method().kernel()
    if parameters['method'] == 'ccsd(t)':
        if reference != 'restricted':
            raise ValueError('CCSD(T) forces are only available for a restricted closed-shell reference')
        from pyscf.cc import ccsd_t_lambda_slow
        from pyscf.grad import ccsd_t as ccsd_t_grad

        eris = solver.ao2mo()
        converged, l1, l2 = ccsd_t_lambda_slow.kernel(solver, eris, solver.t1, solver.t2)
        if not converged:
            raise RuntimeError('the CCSD(T) lambda equations did not converge')
        return ccsd_t_grad.Gradients(solver).kernel(solver.t1, solver.t2, l1, l2, eris=eris)
    return solver.nuc_grad_method().kernel()


def run_structure(key, entry, parameters, restart_from, write_checkpoint, deadline):
    """Return the result of one structure; never raises: a failure becomes the result's ``status`` and ``error``."""
    result = {
        'status': 'ok',
        'method': parameters['method'],
        'basis': parameters['basis'],
        'xc': parameters.get('xc'),
        'charge': int(entry['charge']),
        'multiplicity': int(entry['multiplicity']),
        'timings': {},
    }
    stage = ['setup']
    start_total = time.perf_counter()
    start_cpu = time.process_time()  # all threads of this process: the CPU seconds a cost report needs

    def check_time(next_stage):
        stage[0] = next_stage
        if deadline is not None and time.time() > deadline:
            raise Walltime(f'soft walltime reached before stage {next_stage}')

    if parameters['method'] in ('features', 'casscf'):
        return run_features_structure(entry, parameters, result, result['timings'], check_time, start_total)
    try:
        compute_structure(key, entry, parameters, result, check_time, restart_from, write_checkpoint, deadline)
    except Walltime as exception:
        set_failure(result, 'walltime', 'Walltime', str(exception), stage[0])
    except MemoryError as exception:
        set_failure(result, 'out_of_memory', type(exception).__name__, str(exception) or 'out of memory', stage[0])
    except Exception as exception:  # noqa: BLE001 -- one structure's failure must not stop the others
        set_failure(result, 'error', type(exception).__name__, str(exception), stage[0])
        result['error']['traceback'] = traceback.format_exc(limit=5)
    finally:
        result['timings']['total'] = time.perf_counter() - start_total
        result['timings']['cpu_total'] = time.process_time() - start_cpu
    return result


def _features_module():
    """``features_runner.py``: copied beside this file in a job folder, a sibling module inside the package."""
    try:
        import features_runner
    except ImportError:  # imported as part of the package (tests)
        from . import features_runner
    return features_runner


def run_features_structure(entry, parameters, result, timings, check_time, start_total):
    """The ``features`` method (multireference features of one molecule on its given geometry) and the ``casscf``
    method (the multireference path: CASSCF on an active space chosen from UHF natural orbitals)."""
    features_runner = _features_module()
    stage = ['setup']

    def checked(next_stage):
        stage[0] = next_stage
        check_time(next_stage)

    try:
        mol = make_molecule(entry, parameters)
        mol.verbose = 0
        result['nelectron'], result['nao'] = int(mol.nelectron), int(mol.nao_nr())
        result['reference'] = 'RHF' if mol.spin == 0 else 'ROHF/UHF'
        if parameters['method'] == 'casscf':
            features_runner.run_casscf(
                mol, parameters.get('casscf', {}), parameters.get('scf', {}), result, timings, checked
            )
            return result
        features_runner.run_features(
            mol,
            entry['symbols'],
            entry['positions'],
            parameters.get('features', {}),
            parameters.get('scf', {}),
            result,
            timings,
            checked,
        )
    except Walltime as exception:
        result['status'] = 'walltime'
        result['error'] = {'type': 'Walltime', 'message': str(exception), 'stage': stage[0]}
    except MemoryError as exception:
        result['status'] = 'out_of_memory'
        result['error'] = {'type': 'MemoryError', 'message': str(exception) or 'out of memory', 'stage': stage[0]}
    except Exception as exception:  # noqa: BLE001 -- one structure's failure must not stop the others
        message = str(exception)
        result['status'] = 'scf_not_converged' if 'SCF did not converge' in message else 'error'
        result['error'] = {
            'type': type(exception).__name__,
            'message': str(exception),
            'stage': stage[0],
            'traceback': traceback.format_exc(limit=5),
        }
    finally:
        timings['total'] = time.perf_counter() - start_total
    return result


def set_failure(result, status, kind, message, stage):
    """Record a failed stage in ``result``: the runner status and ``error`` with its type, message and stage."""
    result['status'] = status
    result['error'] = {'type': kind, 'message': message, 'stage': stage}


def compute_structure(key, entry, parameters, result, check_time, restart_from, write_checkpoint, deadline):
    """Mean field, then correlation, then forces, filling ``result``; a stage that does not converge stops there."""
    timings = result['timings']
    check_time('setup')
    mol = make_molecule(entry, parameters)
    result['nelectron'], result['nao'] = int(mol.nelectron), int(mol.nao_nr())
    reference = resolve_reference(parameters, int(entry['multiplicity']))
    labels = {'restricted': 'R', 'unrestricted': 'U', 'restricted-open': 'RO'}
    result['reference'] = labels[reference] + ('KS' if parameters['method'] == 'dft' else 'HF')
    check_time('scf')
    start = time.perf_counter()
    chkfile = f'{key}.chk' if write_checkpoint else None
    mf = run_scf(mol, parameters, reference, result, deadline, restart_from, chkfile)
    timings['scf'] = time.perf_counter() - start
    if not mf.converged:
        set_failure(
            result, 'scf_not_converged', 'SCFNotConverged', f'SCF not converged in {result["scf_cycles"]} cycles', 'scf'
        )
        return
    solver = None
    if parameters['method'] in ('mp2', 'ccsd', 'ccsd(t)'):
        check_time(parameters['method'])
        solver = run_correlated(mf, parameters, reference, result, timings, check_time)
        if result.get('ccsd_converged') is False:
            message = f'CCSD not converged in {solver.max_cycle} cycles'
            set_failure(result, 'cc_not_converged', 'CCNotConverged', message, 'ccsd')
            return
    if parameters.get('forces'):
        check_time('forces')
        start = time.perf_counter()
        result['forces'] = (-numpy.asarray(compute_gradient(mf, solver, parameters, reference))).tolist()
        timings['forces'] = time.perf_counter() - start


def _to_json(value):
    # numpy scalars and arrays (PySCF returns numpy.int32 and float64 in places) become plain numbers and lists.
    if isinstance(value, (numpy.generic, numpy.ndarray)):
        return value.tolist()
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def write_results(results: dict, filename: str = 'results.json') -> None:
    # Write then rename, so that a job killed mid-write still leaves the previous, complete file.
    with open(filename + '.tmp', 'w', encoding='utf-8') as handle:
        json.dump(results, handle, default=_to_json)
    os.replace(filename + '.tmp', filename)


def main() -> int:
    start = time.time()
    apply_numpy2_compatibility()
    import pyscf
    from pyscf import lib

    threads = int(os.environ.get('OMP_NUM_THREADS', '1') or 1)
    lib.num_threads(threads)
    results = {
        'versions': {
            'runner': RUNNER_VERSION,
            'pyscf': pyscf.__version__,
            'numpy': numpy.__version__,
            'python': platform.python_version(),
        },
        'threads': threads,
        'structures': {},
    }
    try:
        with open('input.json', encoding='utf-8') as handle:
            data = json.load(handle)
        check_input(data)
    except Exception as exception:  # noqa: BLE001 -- a bad input is reported in results.json, not only in stderr
        results['error'] = {'type': type(exception).__name__, 'message': str(exception), 'stage': 'input'}
        write_results(results)
        print(f'mlqm-runner: invalid input: {exception}', flush=True)
        return 2
    parameters = data['parameters']
    soft_walltime = data.get('soft_walltime')
    deadline = start + float(soft_walltime) if soft_walltime else None
    structures = data['structures']
    print(
        f'mlqm-runner {RUNNER_VERSION}: {len(structures)} structure(s), {parameters["method"]}/'
        f'{parameters["basis"]}, {threads} thread(s)',
        flush=True,
    )
    stopped = False
    for index, (key, entry) in enumerate(structures.items()):
        if stopped:
            results['structures'][key] = {
                'status': 'walltime',
                'error': {'type': 'Walltime', 'message': 'not started: soft walltime reached', 'stage': 'not_started'},
            }
            continue
        print(f'mlqm-runner: [{index + 1}/{len(structures)}] {key} started', flush=True)
        result = run_structure(
            key, entry, parameters, data.get('checkpoint'), data.get('write_checkpoint', False), deadline
        )
        results['structures'][key] = result
        write_results(results)
        energy = result.get('total_energy')
        print(
            f'mlqm-runner: [{index + 1}/{len(structures)}] {key} {result["status"]} total_energy={energy} '
            f'({result["timings"]["total"]:.2f} s)',
            flush=True,
        )
        if result['status'] == 'walltime':
            print('mlqm-runner: soft walltime reached, the remaining structures are not started', flush=True)
            stopped = True
    write_results(results)
    print(f'mlqm-runner: done in {time.time() - start:.2f} s', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
