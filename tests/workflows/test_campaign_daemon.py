"""A campaign on PostgreSQL + RabbitMQ + daemon survives `verdi daemon stop`/`start` and `kill -9` of every worker
mid-run, and finishes with no lost and no duplicated reference calculation (counted in the graph)."""

from __future__ import annotations

import pytest
from test_campaign import MOLECULES, property_config

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]


def test_campaign_survives_daemon_restart_and_killed_workers(psql_daemon_profile):
    profile = psql_daemon_profile
    # circus answers slowly on a loaded machine: the default 2 s of verdi's daemon client made `daemon stop` fail
    profile.verdi('config', 'set', 'daemon.timeout', '60')
    config = property_config()
    submitted = profile.run_json(
        f"""
        from aiida_mlqm.cli.setup import ensure_localhost_computer, ensure_python_code
        from aiida_mlqm.chemistry.readers import read_g2
        code = ensure_python_code(ensure_localhost_computer())
        builder = WorkflowFactory('mlqm.campaign').get_builder()
        builder.config = Dict({config!r})
        builder.library = List(read_g2({MOLECULES!r}))
        builder.code = code
        builder.options = Dict({{'resources': {{'num_machines': 1}}, 'max_wallclock_seconds': 900}})
        node = submit(builder)
        # wait until the campaign has a reference batch job running: the interruption then hits a job in flight
        deadline = time.time() + 400
        def running_batch():
            return [n for n in node.called_descendants
                    if n.process_type == 'aiida.calculations:mlqm.pyscf.batch' and n.get_job_id() and not n.is_terminated]
        while not running_batch() and not node.is_terminated and time.time() < deadline:
            time.sleep(0.5)
        emit(pk=node.pk, running=[n.pk for n in running_batch()], terminated=node.is_terminated)
        """,
        timeout=500,
    )
    assert submitted['running'] and not submitted['terminated'], submitted

    profile.verdi('daemon', 'stop', timeout=120)
    profile.verdi('daemon', 'start', '2', timeout=120)

    result = profile.run_json(
        f"""
        import os, signal
        from aiida.engine.daemon.client import get_daemon_client
        node = load_node({submitted['pk']})
        # kill -9 every worker once the campaign has moved on to a training or prediction job
        deadline = time.time() + 600
        def running_ml():
            return [n for n in node.called_descendants if n.process_type in
                    ('aiida.calculations:mlqm.train', 'aiida.calculations:mlqm.predict') and not n.is_terminated]
        while not running_ml() and not node.is_terminated and time.time() < deadline:
            time.sleep(0.5)
        client = get_daemon_client()
        killed = sorted(int(pid) for pid in client.get_worker_info()['info'])
        interrupted = [n.pk for n in running_ml()]
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        wait(node, timeout=1500)

        batches = [n for n in node.called_descendants if n.process_type == 'aiida.calculations:mlqm.pyscf.batch']
        labelled = {{}}
        for batch in batches:
            if not batch.is_finished_ok:
                continue
            for link in batch.base.links.get_incoming().all():
                if isinstance(link.node, orm.StructureData):
                    labelled.setdefault(link.node.uuid, []).append(batch.pk)
        chosen = set()
        for child in node.called_descendants:
            if child.process_label == 'select_next_batch':
                chosen |= {{row['uuid'] for row in child.outputs.result['chosen']}}
        dataset = node.outputs.dataset if node.is_finished_ok else None
        rows = dataset.base.attributes.get('structure_uuids') if dataset else []
        emit(ok=node.is_finished_ok, status=node.exit_status, interrupted=interrupted, killed=killed,
             batches=len(batches), failed_batches=[b.pk for b in batches if not b.is_finished_ok],
             duplicated={{u: pks for u, pks in labelled.items() if len(pks) > 1}},
             lost=sorted(chosen - set(labelled)), rows=len(rows), distinct_rows=len(set(rows)),
             missing_rows=sorted(chosen - set(rows)))
        """,
        timeout=1700,
    )
    assert result['ok'], (result, profile.daemon_log())
    assert result['killed'] and result['interrupted'], result
    assert not result['failed_batches'], result
    assert result['duplicated'] == {}, result
    assert result['lost'] == [] and result['missing_rows'] == [], result
    assert result['rows'] == result['distinct_rows'], result
