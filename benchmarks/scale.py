"""Scale and faults: tiny molecules at HF/STO-3G through the daemon on PostgreSQL and SLURM, restarts included.

The run, all on this machine:

1. a private PostgreSQL and RabbitMQ (:class:`~aiida_mlqm.services.drill.DrillServices`: restarting the shared ones
   would break every other user), a profile on them made by ``mlqm setup --detect --slurm``, 2 daemon workers and
   ``mlqm supervise`` beside them;
2. the molecules (the small closed-shell G2 molecules and seeded rattled copies of them) in chains of
   ``MLQM_SCALE_BATCHES_PER_CHAIN`` (default 2) batch jobs of ``MLQM_SCALE_BATCH`` (default 50) structures, at most
   ``MLQM_SCALE_MAX_JOBS`` (default 4) SLURM jobs in flight (``MLQM_SCALE_COUNT`` overrides the number of molecules),
   submitted by
   :class:`~aiida_mlqm.workflows.submission.SubmissionController`;
3. meanwhile the fault script: ``kill -9`` of a daemon worker at 20 % of the chains, RabbitMQ stopped for 5 s at 40 %,
   PostgreSQL restarted at 60 %. Nobody intervenes;
4. the same molecules in plain PySCF loops (one per SLURM CPU, the same threads), side by side;
5. the census, from the graph: dataset rows and calculations per structure (``lost``: none; ``duplicated``: more than
   one), ``verdi process show`` on every chain, and ``manual_steps``: chains that did not finish by themselves.

Steps 1-3 and 5 are :func:`drill`, which ``tests/deploy/test_fault_drill.py`` runs at 1,000 molecules.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
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

    def __init__(self, drill, profile: str, progress: pathlib.Path, log=print):
        super().__init__(daemon=True)
        self.drill, self.profile, self.progress, self.log = drill, profile, progress, log
        self.done: list[str] = []
        self.errors: list[str] = []
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

    def _kill_a_worker(self) -> None:
        """``kill -9`` of one daemon worker, waiting (with a deadline) for circus to have one running."""
        deadline = time.monotonic() + 120
        while not (pids := self._worker_pids()):
            if time.monotonic() > deadline or self.stop.is_set():
                raise RuntimeError('no daemon worker of the drill profile was running to be killed')
            time.sleep(0.5)
        os.kill(pids[0], signal.SIGKILL)

    def run(self) -> None:
        faults = [
            (0.2, 'kill -9 a daemon worker', self._kill_a_worker),
            (0.4, 'RabbitMQ stopped 5 s and started', lambda: self.drill.restart_rabbitmq(5.0)),
            (0.6, 'PostgreSQL restarted', self.drill.restart_postgres),
        ]
        for threshold, what, action in faults:
            while self._fraction() < threshold and not self.stop.is_set():
                time.sleep(0.5)
            if self.stop.is_set():
                return
            start = time.monotonic()
            try:
                action()
            except Exception as exception:  # noqa: BLE001 - a fault that could not be injected is reported
                self.errors.append(f'{what}: {type(exception).__name__}: {exception}')
                self.log(f'{time.strftime("%H:%M:%S")} fault NOT injected: {self.errors[-1]}')
                continue
            self.done.append(f'{what} at {self._fraction():.0%} ({time.monotonic() - start:.1f} s)')
            self.log(f'{time.strftime("%H:%M:%S")} fault: {self.done[-1]}')


def drill(count: int, *, batch: int = BATCH, batches_per_chain: int = 2, max_jobs: int = 4,
          deadline_s: float = 3 * 3600, log=print) -> dict:
    """Label ``count`` molecules through the daemon on a private PostgreSQL + RabbitMQ and the SLURM cluster while the
    fault script runs; return the census of the graph (see :func:`benchmarks._scale_driver.take_census`), the faults
    injected, the supervisor's log and the seconds of each stage.

    ``batch`` structures per SLURM job, ``batches_per_chain`` jobs per ``mlqm.reference`` chain, at most ``max_jobs``
    jobs (``max_jobs // batches_per_chain`` chains) in flight. Everything the run started is stopped and removed.
    """
    from aiida_mlqm.services.drill import DrillServices

    chains_in_flight = max(max_jobs // batches_per_chain, 1)
    stages: dict[str, float] = {}
    clock = time.monotonic()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        stages[name] = round(now - clock, 1)
        clock = now
        log(f'{time.strftime("%H:%M:%S")} {name}: {stages[name]:.1f} s')

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

    try:
        with DrillServices() as drill:
            stage('private PostgreSQL and RabbitMQ started')
            call([*mlqm, 'setup', '--detect', '--slurm', '--profile', profile, '--db-port', str(drill.pg_port),
                  '--broker-port', str(drill.amqp_port)])
            call([*verdi, 'daemon', 'start', '2'])
            stage('profile set up, daemon started')
            supervisor_log = open(workdir / 'supervise.log', 'w')  # noqa: SIM115 - closed below
            supervisor = subprocess.Popen([*mlqm, 'supervise', '--profile', profile, '--interval', '0.5',
                                           '--check-every', '30'], env=env, stdout=supervisor_log,
                                          stderr=subprocess.STDOUT)
            settings = {
                'profile': profile, 'workdir': str(workdir), 'count': count, 'group': 'scale-chains',
                'structures_per_chain': batches_per_chain * batch, 'batch_size': batch,
                'max_chains': chains_in_flight, 'code': 'mlqm-python@localhost-slurm', 'deadline_s': deadline_s,
                'options': {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1},
                            'max_wallclock_seconds': 3600},
            }
            (workdir / 'settings.json').write_text(json.dumps(settings))
            faults = FaultScript(drill, profile, workdir / 'progress.json', log=log)
            faults.start()
            try:
                with open(workdir / 'driver.log', 'w') as driver_log:
                    driver = subprocess.run(
                        [sys.executable, '-m', 'benchmarks._scale_driver', str(workdir / 'settings.json')],
                        env={**env, 'PYTHONPATH': str(pathlib.Path(__file__).parents[1])},
                        stdout=driver_log, stderr=subprocess.STDOUT, check=False, timeout=deadline_s + 900,
                    )
            finally:  # whatever happened, nothing of the drill keeps running
                faults.stop.set()
                faults.join(timeout=120)
                supervisor.send_signal(signal.SIGTERM)
                try:
                    supervisor.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    supervisor.kill()
                supervisor_log.close()
                subprocess.run([*verdi, 'daemon', 'stop'], env=env, capture_output=True, timeout=120, check=False)
            driven = (workdir / 'driver.log').read_text()
            if driver.returncode != 0:
                raise RuntimeError(f'driver failed ({driver.returncode}):\n{driven[-6000:]}')
            census = json.loads((workdir / 'census.json').read_text())
            supervised = (workdir / 'supervise.log').read_text()
            stage('labelled, census taken, daemon stopped')
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {'census': census, 'faults': faults.done, 'fault_errors': faults.errors, 'supervisor': supervised,
            'driver': driven, 'stages': stages, 'max_jobs': max_jobs, 'chains_in_flight': chains_in_flight}


def run(quick: bool = False) -> dict:
    count = int(os.environ.get('MLQM_SCALE_COUNT', 1000 if quick else 10000))
    max_jobs = int(os.environ.get('MLQM_SCALE_MAX_JOBS', '4'))
    batch = int(os.environ.get('MLQM_SCALE_BATCH', BATCH))
    per_chain = int(os.environ.get('MLQM_SCALE_BATCHES_PER_CHAIN', '2'))
    result = drill(count, batch=batch, batches_per_chain=per_chain, max_jobs=max_jobs,
                   deadline_s=3 * 3600 if not quick else 1800)
    census = result['census']
    plain = run_plain(count, processes=min(max_jobs, os.cpu_count() or 1))
    print(result['driver'][-3000:])
    print('faults:', '; '.join(result['faults']) or 'none')
    print('supervisor:', '\n  '.join(line for line in result['supervisor'].splitlines() if line.strip())[-3000:])
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
        'faults_injected': {'value': len(result['faults']), 'unit': 'faults', 'target': '>= 3'},
    }
