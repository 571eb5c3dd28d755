"""Overhead of running reference QM through AiiDA: mlqm.reference (batched) and aiida-pyscf vs plain PySCF."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import textwrap
import time

DESCRIPTION = 'RHF/6-31G* energy+forces of 20 small G2 molecules: mlqm.reference and aiida-pyscf vs plain PySCF'
BASIS = '6-31g*'


def molecules(count: int) -> list[str]:
    """The ``count`` smallest (fewest electrons) closed-shell G2 molecules with at most 6 atoms."""
    from ase.collections import g2

    closed_shell = [
        name
        for name in g2.names
        if len(g2[name]) <= 6 and not any(g2[name].get_initial_magnetic_moments()) and len(g2[name]) > 1
    ]
    return sorted(closed_shell, key=lambda name: (sum(g2[name].numbers), name))[:count]


PLAIN_SCRIPT = textwrap.dedent(
    '''
    import json, sys, time
    from ase.collections import g2
    from pyscf import gto, scf
    energies = {}
    for name in json.loads(sys.argv[1]):
        atoms = g2[name]
        mol = gto.M(atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
                    basis=sys.argv[2], unit='Angstrom', verbose=0)
        mf = scf.RHF(mol).run(conv_tol=1e-9)
        mf.nuc_grad_method().kernel()
        energies[name] = mf.e_tot
    print(json.dumps(energies))
    '''
)


def run_plain(names: list[str]) -> tuple[float, dict]:
    """One plain PySCF process (interpreter start and imports included), as a user's script would run."""
    start = time.perf_counter()
    output = subprocess.run(
        [sys.executable, '-c', PLAIN_SCRIPT, json.dumps(names), BASIS], capture_output=True, text=True, check=True
    )
    return time.perf_counter() - start, json.loads(output.stdout)


def run_plain_per_core(names: list[str], processes: int) -> float:
    """The same molecules dealt over ``processes`` single-thread plain PySCF loops side by side: the best a user's own
    script does on this machine (PySCF's threads gain little on molecules this small)."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    start = time.perf_counter()
    running = [
        subprocess.Popen([sys.executable, '-c', PLAIN_SCRIPT, json.dumps(names[first::processes]), BASIS],
                         stdout=subprocess.DEVNULL, env=env)
        for first in range(processes)
    ]
    if any(process.wait() != 0 for process in running):
        raise RuntimeError('plain PySCF loop failed')
    return time.perf_counter() - start


def where_the_seconds_go(chain, started_at, ended_at) -> dict[str, float]:
    """Split the chain's wall time by the creation times of its nodes and the runner's own timings."""
    from aiida import orm

    batches = [child for child in chain.called if isinstance(child, orm.CalcJobNode)]
    results = [node for batch in batches for node in batch.outputs.parameters.values()]
    first_batch = min(batch.ctime for batch in batches)
    last_result = max(result.ctime for result in results)
    dataset = chain.outputs.dataset
    # Batch jobs run side by side: the longest one's PySCF time is what the wall clock sees.
    compute = max(
        sum(result.get_dict()['timings'].get('total', 0.0) for result in batch.outputs.parameters.values())
        for batch in batches
    )
    job = (last_result - first_batch).total_seconds()
    return {
        'process creation (input validation, input links)': (chain.ctime - started_at).total_seconds(),
        'chain setup (cost estimate, molecule checks), batch job creation': (first_batch - chain.ctime).total_seconds(),
        'PySCF inside the batch job (runner timings, all structures)': compute,
        'batch job around PySCF (upload, submit, start, poll, retrieve, parse)': job - compute,
        'dataset assembly': (dataset.ctime - last_result).total_seconds(),
        'chain end (outputs, seal) and the caller noticing': (ended_at - dataset.ctime).total_seconds(),
    }


def run(quick: bool = False) -> dict:
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory, WorkflowFactory

    from aiida_mlqm.provenance.structures import g2_structure
    from aiida_mlqm.services.processes import run_in_process

    from ._profile import temporary_embedded_profile

    names = molecules(8 if quick else 20)
    cores = os.cpu_count() or 1
    plain_seconds, plain_energies = run_plain(names)
    per_core_seconds = run_plain_per_core(names, cores)

    with temporary_embedded_profile() as (_, code):
        structures = {f'mol_{i:02d}': g2_structure(name) for i, name in enumerate(names)}
        # The default resources of `mlqm reference`: one core a job; the chain runs one job per core on this machine.
        options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}
        start = time.perf_counter()
        started_at = datetime.datetime.now(datetime.timezone.utc)
        # As `mlqm reference` runs it: in this process, polling the batch job every 0.1 s (services.processes).
        results, node = run_in_process(
            WorkflowFactory('mlqm.reference'),
            {
                'structures': structures,
                'parameters': orm.Dict({'method': 'rhf', 'basis': BASIS, 'forces': True}),
                'code': code,
                'options': orm.Dict(options),
            },
        )
        mlqm_seconds = time.perf_counter() - start
        phases = where_the_seconds_go(node, started_at, datetime.datetime.now(datetime.timezone.utc))
        if not node.is_finished_ok:
            raise RuntimeError(f'ReferenceWorkChain<{node.pk}> failed: {node.exit_status} {node.exit_message}')
        mlqm_energies = {frame.structure_uuid: frame.energy for frame in results['dataset'].frames()}
        mlqm_jobs = len([child for child in node.called if child.process_type.startswith('aiida.calculations')])

        aiida_pyscf = CalculationFactory('pyscf.base')
        start = time.perf_counter()
        pyscf_energies = {}
        for name in names:
            outputs, calc = run_get_node(
                aiida_pyscf,
                code=code,
                structure=g2_structure(name),
                parameters=orm.Dict({'mean_field': {'method': 'RHF', 'conv_tol': 1e-9}, 'structure': {'basis': BASIS}}),
                metadata={'options': {'resources': {'num_machines': 1}}},
            )
            if not calc.is_finished_ok:
                raise RuntimeError(f'pyscf.base<{calc.pk}> failed: {calc.exit_status} {calc.exit_message}')
            pyscf_energies[name] = outputs['parameters']['mean_field']['total_energy']
        aiida_pyscf_seconds = time.perf_counter() - start

    from aiida_mlqm.units import HARTREE_TO_EV as hartree

    deviation = max(
        abs(pyscf_energies[name] / hartree - plain_energies[name]) for name in names
    )
    assert len(mlqm_energies) == len(names)
    table = [
        {'route': 'plain PySCF, one process', 'seconds': plain_seconds, 'jobs': 1},
        {'route': f'plain PySCF, {cores} single-thread loops side by side', 'seconds': per_core_seconds, 'jobs': cores},
        {'route': 'mlqm.reference (batched, embedded)', 'seconds': mlqm_seconds, 'jobs': mlqm_jobs},
        {'route': 'aiida-pyscf, one CalcJob per molecule', 'seconds': aiida_pyscf_seconds, 'jobs': len(names)},
    ]
    print(f'{len(names)} molecules: {", ".join(names)}')
    print('mlqm.reference, where the seconds go (from the nodes\' timestamps):')
    for phase, seconds in phases.items():
        print(f'  {phase:62s} {seconds:6.2f} s')
    print(f'largest |E(aiida-pyscf) - E(plain)| = {deviation:.2e} Ha')
    return {
        '_table': table,
        'plain_pyscf_seconds': {'value': plain_seconds, 'unit': 's', 'target': None},
        'mlqm_seconds': {'value': mlqm_seconds, 'unit': 's', 'target': None},
        'aiida_pyscf_seconds': {'value': aiida_pyscf_seconds, 'unit': 's', 'target': None},
        'mlqm_vs_plain_pyscf': {'value': mlqm_seconds / plain_seconds, 'unit': 'ratio', 'target': '<= 1.3'},
        'mlqm_vs_plain_per_core_loops': {'value': mlqm_seconds / per_core_seconds, 'unit': 'ratio', 'target': None},
        'aiida_pyscf_vs_plain_pyscf': {'value': aiida_pyscf_seconds / plain_seconds, 'unit': 'ratio', 'target': None},
    }
