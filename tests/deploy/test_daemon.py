"""The PostgreSQL + RabbitMQ back end: processes submitted to ``verdi daemon`` workers finish, and survive a worker
that dies mid-run."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]


def test_submitted_workchain_finishes(psql_daemon_profile):
    result = psql_daemon_profile.run_json(
        """
        node = submit(WorkflowFactory('core.arithmetic.add_multiply'), x=Int(2), y=Int(3), z=Int(4))
        wait(node, timeout=120)
        emit(pk=node.pk, ok=node.is_finished_ok, result=node.outputs.result.value if node.is_finished_ok else None,
             children=[child.process_label for child in node.called])
        """
    )
    assert result['ok'], psql_daemon_profile.daemon_log()
    assert result['result'] == (2 + 3) * 4
    assert result['children'] == ['add', 'multiply']

    listing = psql_daemon_profile.verdi('process', 'list', '-a', '-p', '1').stdout
    line = next(line for line in listing.splitlines() if line.strip().startswith(str(result['pk'])))
    assert 'Finished [0]' in line


def test_worker_killed_mid_run_loses_nothing(psql_daemon_profile):
    """kill -9 every worker while a CalcJob's scheduler job runs: circus starts new workers, the task returns to the
    queue, and the process continues from its checkpoint (the same scheduler job, not a second submission)."""
    result = psql_daemon_profile.run_json(
        """
        import os, signal
        from aiida.manage import get_manager
        from aiida_mlqm.services.processes import wait_for_workers

        profile = get_manager().get_profile()
        wait_for_workers(profile, 2, timeout=120)  # workers may still be starting on a loaded machine

        computer = load_computer('localhost')
        try:
            code = load_code('bash-add@localhost')
        except Exception:
            code = orm.InstalledCode(label='bash-add', computer=computer, filepath_executable='/bin/bash',
                                     default_calc_job_plugin='core.arithmetic.add').store()
        builder = code.get_builder()
        builder.x, builder.y = Int(20), Int(22)
        builder.metadata.options.sleep = 8  # the job script sleeps: long enough to kill the workers meanwhile
        node = submit(builder)

        deadline = time.time() + 120
        while node.get_job_id() is None and not node.is_terminated and time.time() < deadline:
            time.sleep(0.2)
        job_id = node.get_job_id()
        killed = wait_for_workers(profile, 2, timeout=60)
        for pid in killed:
            os.kill(pid, signal.SIGKILL)

        wait(node, timeout=180)
        workers = wait_for_workers(profile, 2, exclude=tuple(killed), timeout=120)
        emit(ok=node.is_finished_ok, sum=node.outputs.sum.value if node.is_finished_ok else None,
             job_id_before=job_id, job_id_after=node.get_job_id(), killed=killed, workers=workers)
        """,
        timeout=420,
    )
    assert result['job_id_before'] is not None, 'the scheduler job was not submitted within 120 s'
    assert result['killed'] and not set(result['killed']) & set(result['workers'])
    assert result['ok'], psql_daemon_profile.daemon_log()
    assert result['sum'] == 42
    assert result['job_id_after'] == result['job_id_before']
