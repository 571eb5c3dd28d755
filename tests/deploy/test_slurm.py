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


def test_reference_submitted_from_the_cli_runs_through_sbatch(slurm_profile, tmp_path):
    """``mlqm reference --submit --computer localhost-slurm`` returns at once with the chain's pk; the daemon runs the
    chain through sbatch, and ``verdi node graph generate`` draws its dataset (graphviz installed by deploy)."""
    smiles = tmp_path / 'small.smi'
    smiles.write_text('O water\nC methane\n')
    submitted = slurm_profile.mlqm(
        'reference', '--profile', slurm_profile.name, '--smiles', str(smiles), '--level', 'hf/sto-3g',
        '--computer', 'localhost-slurm', '--submit',
    )
    pk = int(submitted.stdout.strip().splitlines()[-1])
    result = slurm_profile.run_json(
        f"""
        node = wait(load_node({pk}), timeout=300)
        jobs = [d for d in node.called_descendants if isinstance(d, orm.CalcJobNode)]
        emit(ok=node.is_finished_ok, exit_status=node.exit_status, dataset=node.outputs.dataset.pk if node.is_finished_ok else None,
             schedulers=sorted({{job.computer.scheduler_type for job in jobs}}), job_ids=[job.get_job_id() for job in jobs])
        """,
        timeout=360,
    )
    assert result['ok'], (result, slurm_profile.daemon_log())
    assert result['schedulers'] == ['core.slurm'] and all(result['job_ids'])
    picture = tmp_path / 'dataset.png'
    slurm_profile.verdi('node', 'graph', 'generate', str(result['dataset']), '-O', str(picture), '-f', 'png', timeout=300)
    assert picture.stat().st_size > 1000 and picture.read_bytes()[:4] == b'\x89PNG'


def test_cancelled_job_gets_its_own_exit_code(slurm_profile):
    """With accounting on, ``scancel`` of a running job ends the CalcJob with 170, and the restart chain stops (320)
    instead of resubmitting it."""
    result = slurm_profile.run_json(
        """
        import subprocess
        from ase.build import molecule
        code = load_code('mlqm-python@localhost-slurm')
        chain = submit(WorkflowFactory('mlqm.pyscf.base'), pyscf={
            'code': code, 'structure': orm.StructureData(ase=molecule('C6H6')),
            'parameters': Dict({'method': 'ccsd(t)', 'basis': 'cc-pvtz'})})
        deadline = time.time() + 240
        jobs = []
        while time.time() < deadline and not (jobs and jobs[0].get_job_id()):
            jobs = [d for d in chain.called_descendants if isinstance(d, orm.CalcJobNode)]
            time.sleep(0.3)
        job = jobs[0]
        while time.time() < deadline and 'RUNNING' not in subprocess.run(
                ['squeue', '-h', '-j', job.get_job_id(), '-o', '%T'], capture_output=True, text=True).stdout:
            time.sleep(0.3)
        subprocess.run(['scancel', job.get_job_id()], check=True)
        wait(chain, timeout=240)
        emit(job_status=job.exit_status, job_message=job.exit_message, chain_status=chain.exit_status,
             calls=len([d for d in chain.called if isinstance(d, orm.CalcJobNode)]))
        """,
        timeout=600,
    )
    assert result['job_status'] == 170, (result, slurm_profile.daemon_log())
    assert 'CANCELLED' in result['job_message']
    assert result['chain_status'] == 320 and result['calls'] == 1
