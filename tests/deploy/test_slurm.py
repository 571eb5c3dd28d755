"""The SLURM back end: a CalcJob submitted to the daemon really goes through ``sbatch`` on the one-node cluster."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]


def test_setup_slurm_computer(slurm_profile):
    shown = slurm_profile.verdi('computer', 'show', 'localhost-slurm').stdout
    assert 'core.slurm' in shown and 'core.local' in shown
    assert 'mlqm-python@localhost-slurm' in slurm_profile.verdi('code', 'list', '-A').stdout


def test_calcjob_runs_through_sbatch(slurm_profile):
    result = slurm_profile.run_json(
        """
        computer = load_computer('localhost-slurm')
        try:
            code = load_code('bash-add@localhost-slurm')
        except Exception:
            code = orm.InstalledCode(label='bash-add', computer=computer, filepath_executable='/bin/bash',
                                     default_calc_job_plugin='core.arithmetic.add').store()
        builder = code.get_builder()
        builder.x, builder.y = Int(4), Int(5)
        builder.metadata.options.resources = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        builder.metadata.options.max_wallclock_seconds = 120
        start = time.time()
        node = submit(builder)
        wait(node, timeout=180)
        emit(ok=node.is_finished_ok, exit_status=node.exit_status, sum=node.outputs.sum.value if node.is_finished_ok else None,
             job_id=node.get_job_id(), workdir=node.get_remote_workdir(), seconds=time.time() - start,
             scheduler=node.computer.scheduler_type)
        """,
        timeout=300,
    )
    assert result['ok'], (result, slurm_profile.daemon_log())
    assert result['sum'] == 9
    assert result['scheduler'] == 'core.slurm'

    workdir = pathlib.Path(result['workdir'])
    script = (workdir / '_aiidasubmit.sh').read_text()
    assert '#SBATCH' in script
    # SLURM wrote the scheduler's own output file and knows the job (MinJobAge keeps it listed for 5 min).
    assert (workdir / '_scheduler-stdout.txt').exists()
    job = subprocess.run(
        ['scontrol', 'show', 'job', str(result['job_id'])], check=False, capture_output=True, text=True, timeout=30
    )
    assert job.returncode == 0, job.stderr
    assert 'JobState=COMPLETED' in job.stdout
    assert f'WorkDir={workdir}' in job.stdout
