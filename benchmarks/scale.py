"""Scale and faults: tiny molecules at HF/STO-3G through the daemon on PostgreSQL and SLURM, restarts included.

The run, all on this machine:

1. a private PostgreSQL and RabbitMQ (:class:`~aiida_mlqm.services.drill.DrillServices`: restarting the shared ones
   would break every other user), a profile on them made by ``mlqm setup --detect --slurm``, 2 daemon workers and
   ``mlqm supervise`` beside them;
2. the molecules (the small closed-shell G2 molecules and seeded rattled copies of them) in chains of ``2 x batch``
   structures, at most ``MLQM_SCALE_MAX_JOBS`` (default 4) SLURM jobs in flight (``MLQM_SCALE_COUNT`` overrides the
   number of molecules), submitted by
   :class:`~aiida_mlqm.workflows.submission.SubmissionController`;
3. meanwhile the fault script: ``kill -9`` of a daemon worker at 20 % of the chains, RabbitMQ stopped for 5 s at 40 %,
   PostgreSQL restarted at 60 %. Nobody intervenes;
4. the same molecules in plain PySCF loops (one per SLURM CPU, the same threads), side by side;
5. the census, from the graph: dataset rows and calculations per structure (``lost``: none; ``duplicated``: more than
   one), ``verdi process show`` on every chain, and ``manual_steps``: chains that did not finish by themselves.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

DESCRIPTION = 'HF/STO-3G of 10,000 tiny molecules via daemon + PostgreSQL + SLURM with worker, broker and DB restarts'
BATCH = 50
MAX_ATOMS = 6
RATTLE_ANGSTROM = 0.03


def molecule_names() -> list[str]:
    """Closed-shell G2 molecules of 2 to 6 atoms (rattled radicals at STO-3G often need SCF restarts: not tiny)."""
    from ase.collections import g2

    return sorted(
        name
        for name in g2.names
        if 1 < len(g2[name]) <= MAX_ATOMS and not any(g2[name].get_initial_magnetic_moments())
    )


def molecule_structures(count: int):
    """``(key, StructureData)`` for ``count`` molecules: the G2 molecules, then seeded rattled copies (unstored)."""
    import numpy as np

    from aiida_mlqm.provenance.structures import g2_structure

    names = molecule_names()
    for index in range(count):
        name = names[index % len(names)]
        structure = g2_structure(name)
        if index >= len(names):
            atoms = structure.get_ase()
            rng = np.random.default_rng(index)
            atoms.positions += rng.normal(scale=RATTLE_ANGSTROM, size=atoms.positions.shape)
            rattled = type(structure)(ase=atoms)
            for attribute in ('charge', 'multiplicity', 'source'):
                rattled.base.attributes.set(attribute, structure.base.attributes.get(attribute))
            rattled.label = f'{name}~{index}'
            structure = rattled
        yield f'm{index:05d}', structure


PLAIN_SCRIPT = textwrap.dedent(
    '''
    import json, sys
    import numpy as np
    from ase.collections import g2
    from pyscf import gto, scf
    names, start, stop, step, rattle = json.loads(sys.argv[1])
    for index in range(start, stop, step):
        atoms = g2[names[index % len(names)]]
        positions = atoms.positions.copy()
        if index >= len(names):
            positions += np.random.default_rng(index).normal(scale=rattle, size=positions.shape)
        spin = int(round(abs(sum(atoms.get_initial_magnetic_moments()))))
        mol = gto.M(atom=list(zip(atoms.get_chemical_symbols(), positions)), basis='sto-3g', spin=spin, verbose=0)
        (scf.RHF(mol) if spin == 0 else scf.UHF(mol)).run()
    '''
)


def run_plain(count: int, processes: int) -> float:
    """The same molecules in ``processes`` plain PySCF loops at once, one thread each; return the wall seconds."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    names = molecule_names()
    start = time.perf_counter()
    running = [
        subprocess.Popen(
            [sys.executable, '-c', PLAIN_SCRIPT, json.dumps([names, first, count, processes, RATTLE_ANGSTROM])], env=env
        )
        for first in range(processes)
    ]
    for process in running:
        if process.wait() != 0:
            raise RuntimeError('plain PySCF loop failed')
    return time.perf_counter() - start


class FaultScript(threading.Thread):
    """Kill a worker, restart RabbitMQ, restart PostgreSQL at 20, 40 and 60 % of the chains done."""

    def __init__(self, drill, profile: str, progress: pathlib.Path):
        super().__init__(daemon=True)
        self.drill, self.profile, self.progress = drill, profile, progress
        self.done: list[str] = []
        self.stop = threading.Event()

    def _fraction(self) -> float:
        try:
            data = json.loads(self.progress.read_text())
        except (OSError, ValueError):
            return 0.0
        return data['done'] / max(data['chains'], 1)

    def _worker_pids(self) -> list[int]:
        import psutil

        return [
            process.pid
            for process in psutil.process_iter(['cmdline'])
            if process.info['cmdline'] and self.profile in process.info['cmdline']
            and 'worker' in process.info['cmdline'] and 'daemon' in process.info['cmdline']
        ]

    def run(self) -> None:
        faults = [
            (0.2, 'kill -9 a daemon worker', lambda: os.kill(self._worker_pids()[0], signal.SIGKILL)),
            (0.4, 'RabbitMQ stopped 5 s and started', lambda: self.drill.restart_rabbitmq(5.0)),
            (0.6, 'PostgreSQL restarted', self.drill.restart_postgres),
        ]
        for threshold, what, action in faults:
            while self._fraction() < threshold and not self.stop.is_set():
                time.sleep(0.5)
            if self.stop.is_set():
                return
            start = time.monotonic()
            action()
            self.done.append(f'{what} at {self._fraction():.0%} ({time.monotonic() - start:.1f} s)')
            print(f'fault: {self.done[-1]}', flush=True)


def run(quick: bool = False) -> dict:
    from aiida_mlqm.services.drill import DrillServices

    count = int(os.environ.get('MLQM_SCALE_COUNT', 1000 if quick else 10000))
    max_jobs = int(os.environ.get('MLQM_SCALE_MAX_JOBS', '4'))
    chains_in_flight = max(max_jobs // 2, 1)  # each chain holds 2 batch jobs
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='mlqm-scale-'))
    profile = f'mlqm-scale-{os.getpid()}'
    env = {key: value for key, value in os.environ.items() if not key.startswith('AIIDA_')}
    env.update({'AIIDA_PATH': str(workdir), 'MLQM_HOME': str(workdir / 'mlqm'), 'PYTHONUNBUFFERED': '1',
                'PATH': f'{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get("PATH", "")}'})
    verdi = [str(pathlib.Path(sys.executable).parent / 'verdi'), '-p', profile]
    mlqm = [sys.executable, '-m', 'aiida_mlqm.cli']

    def call(command, timeout=300):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f'{" ".join(command)} failed:\n{result.stdout}\n{result.stderr}')
        return result.stdout

    with DrillServices() as drill:
        call([*mlqm, 'setup', '--detect', '--slurm', '--profile', profile, '--db-port', str(drill.pg_port),
              '--broker-port', str(drill.amqp_port)])
        call([*verdi, 'daemon', 'start', '2'])
        supervisor_log = open(workdir / 'supervise.log', 'w')  # noqa: SIM115 - closed below
        supervisor = subprocess.Popen([*mlqm, 'supervise', '--profile', profile, '--interval', '0.5',
                                       '--check-every', '30'], env=env, stdout=supervisor_log, stderr=subprocess.STDOUT)
        settings = {
            'profile': profile, 'workdir': str(workdir), 'count': count, 'group': 'scale-chains',
            'structures_per_chain': 2 * BATCH, 'batch_size': BATCH, 'max_chains': chains_in_flight,
            'code': 'mlqm-python@localhost-slurm', 'deadline_s': 3 * 3600 if not quick else 1800,
            'options': {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'max_wallclock_seconds': 3600},
        }
        (workdir / 'settings.json').write_text(json.dumps(settings))
        faults = FaultScript(drill, profile, workdir / 'progress.json')
        faults.start()
        driver = subprocess.run([sys.executable, '-m', 'benchmarks._scale_driver', str(workdir / 'settings.json')],
                                env={**env, 'PYTHONPATH': str(pathlib.Path(__file__).parents[1])},
                                capture_output=True, text=True, check=False)
        faults.stop.set()
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=60)
        supervisor_log.close()
        subprocess.run([*verdi, 'daemon', 'stop'], env=env, capture_output=True, timeout=120, check=False)
        if driver.returncode != 0:
            raise RuntimeError(f'driver failed:\n{driver.stdout[-4000:]}\n{driver.stderr[-4000:]}')
        census = json.loads((workdir / 'census.json').read_text())
        supervised = (workdir / 'supervise.log').read_text()

    plain = run_plain(count, processes=min(max_jobs, os.cpu_count() or 1))
    print(driver.stdout[-3000:])
    print('faults:', '; '.join(faults.done) or 'none')
    print('supervisor:', '\n  '.join(line for line in supervised.splitlines() if line.strip())[-3000:])
    print(f'census: {json.dumps({k: v for k, v in census.items() if k not in ("seconds",)})}')
    manual = len(census['unfinished_chains'])
    return {
        '_table': [
            {
                'route': f'mlqm.reference, daemon + SLURM, <= {max_jobs} jobs in flight, faults',
                'seconds': census['seconds'],
                'structures': count,
            },
            {'route': f'plain PySCF, {min(max_jobs, os.cpu_count() or 1)} loops side by side', 'seconds': plain,
             'structures': count},
        ],
        'structures_per_hour': {'value': count / census['seconds'] * 3600, 'unit': '1/h', 'target': None},
        'overhead_vs_plain_pyscf': {'value': census['seconds'] / plain, 'unit': 'ratio', 'target': None},
        'lost': {'value': census['lost'], 'unit': 'structures', 'target': '<= 0'},
        'duplicated': {'value': census['duplicated'], 'unit': 'structures', 'target': '<= 0'},
        'manual_steps': {'value': manual, 'unit': 'steps', 'target': '<= 0'},
        'process_show_failures': {'value': len(census['show_failed']), 'unit': 'chains', 'target': '<= 0'},
        'faults_injected': {'value': len(faults.done), 'unit': 'faults', 'target': '>= 3'},
    }
