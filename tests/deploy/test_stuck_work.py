"""``mlqm status`` finds stuck work and ``mlqm repair`` names and does the repair (PostgreSQL + RabbitMQ, no daemon)."""

from __future__ import annotations

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
