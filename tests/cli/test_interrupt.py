"""An in-process ``mlqm reference`` (the path ``mlqm demo`` and ``mlqm campaign run`` share) interrupted with SIGTERM or Ctrl-C kills the jobs it started and marks them killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest
from service_fixtures import profile_environment, run_in_profile


def _runner_processes(workdir_root: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(['cmdline', 'cwd']):
        cmdline = process.info['cmdline'] or []
        if any(part.endswith('pyscf_runner.py') for part in cmdline) and (process.info['cwd'] or '').startswith(
            workdir_root
        ):
            found.append(process)
    return found


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_interrupted_reference_kills_its_jobs(tmp_path, signum):
    env = profile_environment(tmp_path)
    # CCSD(T)/cc-pVDZ of benzene runs for minutes: long enough to be interrupted mid-job on any machine.
    command = [sys.executable, '-m', 'aiida_mlqm.cli', 'reference', '--g2', 'C6H6', '--level', 'ccsd(t)/cc-pvdz']
    demo = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        runners = []
        while not runners and demo.poll() is None and time.monotonic() < deadline:
            runners = _runner_processes(env['MLQM_HOME'])
            time.sleep(0.3)
        assert runners, f'no PySCF job started within 240 s: {demo.poll()} {demo.stderr.read() if demo.poll() else ""}'
        demo.send_signal(signum)
        _, stderr = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 128 + signum, stderr
    assert 'interrupted: killed the jobs' in stderr
    _, alive = psutil.wait_procs(runners, timeout=30)
    assert not alive, f'PySCF job processes still running after the interrupt: {[p.pid for p in alive]}'

    result = run_in_profile(
        tmp_path,
        'mlqm',
        """
        project = ['id', 'attributes.process_state', 'process_type']
        nodes = orm.QueryBuilder().append(orm.ProcessNode, project=project).all()
        emit(nodes=nodes)
        """,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    nodes = __import__('json').loads(result.stdout.strip().splitlines()[-1])['nodes']
    states = {process_type.rsplit(':', 1)[-1]: state for _, state, process_type in nodes if state != 'finished'}
    assert states.get('mlqm.reference') == 'killed', nodes
    assert states.get('mlqm.pyscf.batch') == 'killed', nodes
    assert not [node for node in nodes if node[1] in ('created', 'waiting', 'running')], nodes
