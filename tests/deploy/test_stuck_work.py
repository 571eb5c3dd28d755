"""``mlqm status`` finds stuck work and ``mlqm repair`` names and does the repair (PostgreSQL + RabbitMQ, no daemon)."""

from __future__ import annotations

import textwrap

import pytest
from service_fixtures import ProfileEnv, drop_profile, parse_status, require_services, unique_profile_name

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture(scope='module')
def quiet_profile(tmp_path_factory):
    """A production profile of its own whose daemon never runs: nothing moves unless the test moves it."""
    require_services()
    profile = ProfileEnv(unique_profile_name('mlqm-stuck'), tmp_path_factory.mktemp('aiida-stuck'))
    try:
        profile.mlqm('setup', '--detect', '--profile', profile.name)
        yield profile
    finally:
        drop_profile(profile)


def test_status_finds_orphans_and_duplicates_and_repair_revives(quiet_profile):
    made = quiet_profile.run_json(
        """
        import datetime
        from aiida.common.links import LinkType
        from aiida.engine import ProcessState
        from aiida.manage import get_manager
        from aiida_mlqm.services.processes import find_stuck_work

        # A chain the database says is waiting, with no task in the queue (what a dropped task leaves behind).
        orphan = orm.WorkChainNode()
        orphan.set_process_type('aiida.workflows:core.arithmetic.add_multiply')
        orphan.set_process_state(ProcessState.WAITING)
        orphan.store()
        # A chain that ran twice at once and returned two `dataset` outputs.
        twice = orm.WorkflowNode()
        twice.set_process_type('aiida.workflows:mlqm.reference')
        twice.set_process_state(ProcessState.FINISHED)
        twice.set_exit_status(0)
        twice.store()
        # The ORM refuses the second link; two workers that check at the same moment both pass that check, which is
        # what the backend call below reproduces.
        for value in (1, 2):
            output = Int(value).store()
            output.backend_entity.add_incoming(twice.backend_entity, LinkType.RETURN, 'dataset')
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=600)
        found = find_stuck_work(get_manager().get_profile(), now=later)
        emit(orphan=orphan.pk, twice=twice.pk, without_task=found.without_task, duplicates=found.duplicates)
        """
    )
    assert [pk for pk, _ in made['without_task']] == [made['orphan']]
    assert [pk for pk, _ in made['duplicates']] == [made['twice']]
    assert "2 return links labelled 'dataset'" in made['duplicates'][0][1]

    status = quiet_profile.mlqm('status', '--profile', quiet_profile.name, check=False)
    rows = parse_status(status.stdout)
    assert status.returncode == 1
    assert rows['duplicate outputs'][0] == 'error' and str(made['twice']) in rows['duplicate outputs'][1]

    repaired = quiet_profile.mlqm('repair', '--profile', quiet_profile.name)
    assert str(made['orphan']) in repaired.stdout  # aiida-core's repair names the process whose task it recreated
    queued = quiet_profile.run_json(
        """
        from aiida.manage import get_manager
        from aiida_mlqm.services.processes import queued_process_pks
        emit(queued=queued_process_pks(get_manager().get_profile()))
        """
    )
    assert made['orphan'] in queued['queued']


# What a daemon worker killed while it launches a child leaves (aiida-core's ``Process``: the node is stored with
# process state None, then set Created, then checkpointed, then a task is sent), made by hand; ``backdate`` makes the
# node look unchanged for 10 minutes (the grace period of ``find_never_started`` is 60 s of unchanged ``mtime``).
NEVER_STARTED_PRELUDE = """
from aiida.common.links import LinkType
from aiida.engine import ProcessState
from aiida.manage import get_manager
from sqlalchemy import text


def never_started(caller, label, *, checkpoint=None, state=None):
    node = orm.CalcJobNode()
    node.set_process_type('aiida.calculations:mlqm.pyscf.batch')
    node.set_process_label('PyscfBatchCalculation')
    node.set_process_state(state)
    if checkpoint is not None:
        node.set_checkpoint(checkpoint)
    node.base.links.add_incoming(caller, LinkType.CALL_CALC, label)
    return node.store()


def backdate(*nodes):
    session = get_manager().get_profile_storage().get_session()
    session.execute(text("UPDATE db_dbnode SET mtime = mtime - interval '10 minutes' WHERE id = ANY(:pks)"),
                    {'pks': [node.pk for node in nodes]})
    session.commit()
"""


def test_never_started_child_is_reported_and_closed_by_repair(quiet_profile):
    made = quiet_profile.run_json(
        NEVER_STARTED_PRELUDE
        + textwrap.dedent(
            """
        from aiida_mlqm.services.processes import find_stuck_work

        caller = orm.WorkChainNode()
        caller.set_process_type('aiida.workflows:mlqm.reference')
        caller.set_process_state(ProcessState.WAITING)
        caller.store()
        dead = never_started(caller, 'batch_00')
        created = never_started(caller, 'batch_01', state='created')  # killed between the state and the checkpoint
        resumable = never_started(caller, 'batch_02', checkpoint='saved state')
        young = never_started(caller, 'batch_03')  # its worker may still be at it: left alone
        backdate(dead, created, resumable)
        found = find_stuck_work(get_manager().get_profile())
        emit(caller=caller.pk, dead=dead.pk, created=created.pk, resumable=resumable.pk, young=young.pk,
             never_started=found.never_started)
            """
        )
    )
    reported = dict(made['never_started'])
    assert sorted(reported) == sorted([made['dead'], made['created'], made['resumable']])
    assert f"its caller {made['caller']} (waiting) waits for it" in reported[made['dead']]
    assert 'state Created but no checkpoint' in reported[made['created']]

    status = quiet_profile.mlqm('status', '--profile', quiet_profile.name, check=False)
    rows = parse_status(status.stdout)
    assert status.returncode == 1
    verdict, text = rows['never-started processes']
    assert verdict == 'error' and 'mlqm repair' in text
    assert text.startswith('3: ')  # the young one is not counted

    repaired = quiet_profile.mlqm('repair', '--profile', quiet_profile.name)
    assert f"never-started processes [{made['dead']}, {made['created']}] excepted" in repaired.stdout
    pks = [made[key] for key in ('caller', 'dead', 'created', 'resumable', 'young')]
    after = quiet_profile.run_json(
        f"""
        from aiida.manage import get_manager
        from aiida_mlqm.services.processes import queued_process_pks

        nodes = {{pk: load_node(pk) for pk in {pks}}}
        emit(states={{pk: node.process_state.value if node.process_state else None for pk, node in nodes.items()}},
             sealed={{pk: node.is_sealed for pk, node in nodes.items()}},
             exception=nodes[{made['dead']}].exception, queued=queued_process_pks(get_manager().get_profile()))
        """
    )
    states = {int(pk): state for pk, state in after['states'].items()}
    assert states[made['dead']] == states[made['created']] == 'excepted'
    assert after['sealed'][str(made['dead'])] and after['sealed'][str(made['created'])]
    assert 'Never started' in after['exception'] and 'mlqm repair' in after['exception']
    assert states[made['resumable']] == 'created'  # it has a checkpoint: queued to run from it
    assert states[made['young']] is None
    # The waiting caller and the resumable child got tasks: a daemon worker loads the caller, which finds its
    # children terminated and goes on.
    assert made['caller'] in after['queued'] and made['resumable'] in after['queued']
    assert made['dead'] not in after['queued']



def test_supervisor_closes_never_started_children_without_stopping_anything(quiet_profile):
    """The supervisor's look does what ``mlqm repair`` does for never-started processes, with no daemon restart:
    the one with a checkpoint gets its task straight away (``verdi process repair`` would need the daemon stopped)."""
    result = quiet_profile.run_json(
        NEVER_STARTED_PRELUDE
        + textwrap.dedent(
            """
            from aiida_mlqm.services.processes import queued_process_pks
            from aiida_mlqm.services.supervisor import Supervisor

            caller = orm.WorkChainNode()
            caller.set_process_type('aiida.workflows:mlqm.reference')
            caller.set_process_state(ProcessState.WAITING)
            caller.store()
            dead = never_started(caller, 'batch_00')
            resumable = never_started(caller, 'batch_01', checkpoint='saved state')
            backdate(dead, resumable)
            profile = get_manager().get_profile()
            supervisor = Supervisor(profile)
            supervisor.check()
            emit(dead=dead.pk, resumable=resumable.pk, dead_state=load_node(dead.pk).process_state.value,
                 resumable_state=load_node(resumable.pk).process_state.value, queued=queued_process_pks(profile),
                 events=supervisor.state.events)
            """
        )
    )
    assert result['dead_state'] == 'excepted'
    assert result['resumable_state'] == 'created' and result['resumable'] in result['queued']
    events = ' | '.join(result['events'])
    assert f"never-started processes [{result['dead']}] excepted" in events
    assert f"queued never-started processes [{result['resumable']}] again" in events


@pytest.fixture(scope='module')
def launch_profile(tmp_path_factory):
    """A production profile of its own whose daemon the test starts: the one test that uses it runs a real chain."""
    require_services()
    profile = ProfileEnv(unique_profile_name('mlqm-launch'), tmp_path_factory.mktemp('aiida-launch'))
    try:
        profile.mlqm('setup', '--detect', '--profile', profile.name)
        yield profile
    finally:
        drop_profile(profile)


@pytest.mark.slow
def test_worker_killed_while_launching_a_batch_then_supervisor_lets_the_chain_finish(launch_profile):
    """A real ``mlqm.reference`` chain on H2 (HF/STO-3G) whose worker dies the moment it launches the batch job,
    exactly where aiida-core left the child's node stored with no state: the worker that takes the chain over waits
    for that batch for good, until the supervisor's look closes it; the chain then retries H2 alone and finishes,
    with exactly one successful calculation of H2."""
    submitted = launch_profile.run_json(
        """
        from aiida_mlqm.provenance.structures import g2_structure

        node = submit(WorkflowFactory('mlqm.reference'), structures={'h2': g2_structure('H2')},
                      parameters=Dict({'method': 'hf', 'basis': 'sto-3g'}), code=load_code('mlqm-python@localhost'))
        emit(pk=node.pk)
        """
    )
    chain = submitted['pk']
    # A worker (the daemon's own code, in the foreground) that dies the moment the batch job's node is stored.
    doomed = launch_profile.run(
        f"""
        import os
        from aiida.engine.daemon.worker import start_daemon_worker

        def die(self, from_state):
            os._exit(9)

        CalculationFactory('mlqm.pyscf.batch').on_entered = die
        start_daemon_worker(foreground=True, profile_name={launch_profile.name!r})
        """,
        timeout=240,
    )
    assert doomed.returncode == 9, f'{doomed.stdout[-3000:]}\n{doomed.stderr[-3000:]}'
    launch_profile.verdi('daemon', 'start', '1', timeout=120)
    result = launch_profile.run_json(
        NEVER_STARTED_PRELUDE
        + textwrap.dedent(
            f"""
            from aiida_mlqm.services.processes import never_started as closed_as_never_started
            from aiida_mlqm.services.supervisor import Supervisor

            chain = load_node({chain})
            batch = chain.base.links.get_outgoing(link_label_filter='batch_00').one().node
            left = dict(state=batch.process_state, checkpoint=batch.checkpoint, sealed=batch.is_sealed)
            # The daemon's worker reloads the chain, which finds its batch by its link label and waits for it.
            deadline = time.time() + 180
            while f'Waiting for child processes: {{batch.pk}}' not in (chain.process_status or ''):
                assert time.time() < deadline, f'chain {{chain.pk}}: {{chain.process_state}} {{chain.process_status}}'
                time.sleep(0.5)
            backdate(batch)  # as if the supervisor looked after the 60 s grace period
            supervisor = Supervisor(get_manager().get_profile())
            supervisor.check()
            wait(chain, timeout=240)
            calculations = [
                node for node in chain.called_descendants
                if isinstance(node, orm.CalcJobNode) and node.is_finished_ok
            ]
            emit(left=left, batch=batch.pk, batch_state=batch.process_state.value, exception=batch.exception,
                 closed=closed_as_never_started(batch),
                 events=supervisor.state.events, ok=chain.is_finished_ok, exit_status=chain.exit_status,
                 frames=len(chain.outputs.dataset) if 'dataset' in chain.outputs else None,
                 calculations=[(node.process_label, node.pk) for node in calculations])
            """
        ),
        timeout=540,
    )
    assert result['left'] == {'state': None, 'checkpoint': None, 'sealed': False}
    assert result['batch_state'] == 'excepted' and 'Never started' in result['exception'] and result['closed']
    assert any(f"never-started processes [{result['batch']}] excepted" in event for event in result['events'])
    assert result['ok'], (result, launch_profile.daemon_log())
    assert result['frames'] == 1
    assert len(result['calculations']) == 1, result['calculations']  # H2 computed once, by its retry
