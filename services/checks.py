"""The rows of ``mlqm status``: is everything a profile needs there and working? One row per check, with a verdict.

Checks: storage (reachable, backend, node count), broker (reached directly with pika, ``consumer_timeout``, depth of
the profile's process queue), daemon workers, every computer (transport opens, scheduler answers, as
``verdi computer test`` does) and every code (the executable exists on its computer, as ``verdi code test`` does),
graphviz's ``dot`` (``verdi node graph generate``), and stuck work (:mod:`.processes`). A check that crashes becomes an
``error`` row, never a traceback. Passwords are never shown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import threading

from .common import ServiceError, first_line, is_local
from .rabbitmq import (
    BROKER_BACKEND,
    CONSUMER_TIMEOUT_FIX,
    RABBITMQ_BACKENDS,
    RabbitmqSettings,
    consumer_timeout,
    process_queue_depth,
    rabbitmq_connection,
    timeout_disabled,
)

OK, WARNING, ERROR = 'ok', 'warning', 'error'
COMPUTER_TIMEOUT_S = 30


@dataclasses.dataclass
class Check:
    """One line of the report."""

    what: str
    verdict: str
    detail: str
    hint: str = ''


@contextlib.contextmanager
def _time_limit(seconds: int):
    """Raise ``TimeoutError`` in the main thread after ``seconds`` (an unreachable host must not hang the report)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise TimeoutError(f'no answer within {seconds} s')

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_storage(profile) -> list[Check]:
    from aiida import orm
    from aiida.manage import get_manager

    config = profile.storage_config
    if profile.storage_backend == 'core.psql_dos':
        where = (
            f'{config.get("database_username")}@{config.get("database_hostname")}:{config.get("database_port")}'
            f'/{config.get("database_name")}'
        )
        hint = (
            'start PostgreSQL (sudo deploy/services.sh); if it moved, correct storage.config of the profile in '
            '$AIIDA_PATH/.aiida/config.json'
        )
    else:
        where = str(config.get('filepath', ''))
        hint = f'check that {where} exists and is readable, or create a profile with `mlqm setup`'
    try:
        get_manager().get_profile_storage()
        count = orm.QueryBuilder().append(orm.Node).count()
    except Exception as exception:  # noqa: BLE001 - any failure is a verdict, never a traceback
        if 'migrat' in str(exception).lower():
            hint = f'`verdi -p {profile.name} storage migrate` (back up first)'
        return [
            Check('storage', ERROR, f'{profile.storage_backend} at {where} unreachable: {first_line(exception)}', hint)
        ]
    return [Check('storage', OK, f'{profile.storage_backend} at {where}, {count} nodes')]


def check_broker(profile) -> list[Check]:
    backend = profile.process_control_backend
    if backend is None:
        return [
            Check(
                'broker',
                OK,
                'none: processes run in-process with engine.run (embedded profile)',
                'for verdi daemon workers make a profile with `mlqm setup --detect`',
            )
        ]
    if backend not in RABBITMQ_BACKENDS:
        return [Check('broker', WARNING, f'{backend}: not checked by mlqm status')]
    settings = RabbitmqSettings.from_profile_config(profile.process_control_config)
    try:
        connection = rabbitmq_connection(settings)
    except ServiceError as exception:
        return [
            Check(
                'broker',
                ERROR,
                exception.problem,
                'start RabbitMQ (sudo deploy/services.sh) or fix the profile with '
                f'`verdi profile configure-broker core.rabbitmq {profile.name}`',
            )
        ]
    version = connection._impl.server_properties.get('version', b'?')
    connection.close()
    version = version.decode() if isinstance(version, bytes) else str(version)
    checks = [Check('broker', OK, f'RabbitMQ {version} at {settings.where()}')]
    if backend == BROKER_BACKEND:
        checks.append(Check('broker outages', OK, f'{backend}: processes wait for a broker that went away'))
    else:
        checks.append(
            Check(
                'broker outages',
                WARNING,
                f'{backend}: a RabbitMQ restart marks the processes that call the broker in that moment excepted',
                f'mlqm setup --detect --profile {profile.name} (moves the profile to {BROKER_BACKEND})',
            )
        )

    disabled = timeout_disabled(consumer_timeout(settings.host))
    if disabled is True:
        checks.append(Check('broker consumer_timeout', OK, 'disabled (tasks may run longer than 30 min)'))
    elif disabled is False:
        checks.append(
            Check(
                'broker consumer_timeout',
                WARNING,
                'on: a process running longer than the timeout (30 min by default) is requeued',
                CONSUMER_TIMEOUT_FIX,
            )
        )
    else:
        why = 'broker is not on this host' if not is_local(settings.host) else 'rabbitmqctl not usable here (root?)'
        checks.append(
            Check(
                'broker consumer_timeout',
                WARNING,
                f'unknown ({why})',
                'make sure the broker host has [{rabbit, [{consumer_timeout, undefined}]}]. in '
                '/etc/rabbitmq/advanced.config (deploy/rabbitmq/advanced.config)',
            )
        )

    try:
        depth = process_queue_depth(settings, str(profile.uuid))
    except Exception as exception:  # noqa: BLE001 - any failure is a verdict, never a traceback
        checks.append(Check('broker queue', WARNING, f'could not inspect the process queue: {first_line(exception)}'))
    else:
        if depth is None:
            checks.append(Check('broker queue', OK, 'process queue not declared yet (nothing submitted)'))
        else:
            messages, consumers = depth
            checks.append(Check('broker queue', OK, f'{messages} waiting task(s), {consumers} consumer(s)'))
    return checks


def check_daemon(profile) -> list[Check]:
    if profile.process_control_backend is None:
        return [Check('daemon', OK, 'not used: no broker')]
    from aiida.engine.daemon.client import get_daemon_client

    client = get_daemon_client(profile.name)
    hint = f'verdi -p {profile.name} daemon start'
    if not client.is_daemon_running:
        return [Check('daemon', WARNING, 'not running: submitted processes wait in the queue', hint)]
    try:
        workers = int(client.get_numprocesses(timeout=10)['numprocesses'])
    except Exception as exception:  # noqa: BLE001 - any failure is a verdict, never a traceback
        return [
            Check(
                'daemon',
                ERROR,
                f'pid file present but circus does not answer: {first_line(exception)}',
                f'verdi -p {profile.name} daemon restart',
            )
        ]
    if workers == 0:
        return [Check('daemon', WARNING, 'running with 0 workers', f'verdi -p {profile.name} daemon incr 2')]
    return [Check('daemon', OK, f'running, {workers} worker(s)')]


def check_computers_and_codes(profile) -> list[Check]:
    """Open each computer's transport once, ask its scheduler for jobs, and look for each code's executable there."""
    from aiida import orm

    user = orm.User.collection.get_default()
    computers = orm.Computer.collection.all()
    # Filtering by node type: in aiida-core 2.9 ``append(orm.AbstractCode)`` also matches every other Data node.
    codes = [
        node
        for node in orm.QueryBuilder()
        .append(orm.Data, filters={'node_type': {'like': 'data.core.code.%'}})
        .all(flat=True)
        if isinstance(node, orm.AbstractCode)
    ]
    if not computers:
        return [Check('computers', WARNING, 'none', 'mlqm setup (creates localhost; --slurm adds localhost-slurm)')]
    checks = []
    for computer in sorted(computers, key=lambda c: c.label):
        own_codes = [code for code in codes if getattr(code, 'computer', None) and code.computer.pk == computer.pk]
        checks.extend(_check_computer(computer, user, own_codes))
    for code in codes:
        if getattr(code, 'computer', None) is None:
            checks.append(Check(f'code {code.full_label}', OK, f'{code.__class__.__name__} (no computer)'))
    return checks


# The checks of `verdi computer test` (aiida-core), in its order; each returns (success, message).
COMPUTER_TESTS = (
    ('scheduler', '_computer_test_get_jobs'),
    ('login shell output', '_computer_test_no_unexpected_output'),
    ('work directory', '_computer_create_temp_file'),
)


def _check_computer(computer, user, codes) -> list[Check]:
    """``verdi computer test`` for the computer, then ``verdi code test`` for each of its codes."""
    from aiida.cmdline.commands import cmd_computer
    from aiida.common.exceptions import ValidationError
    from aiida.orm import InstalledCode

    what = f'computer {computer.label}'
    kinds = f'{computer.scheduler_type} over {computer.transport_type}'
    if not computer.is_user_configured(user):
        hint = f'verdi computer configure {computer.transport_type} {computer.label}'
        return [Check(what, ERROR, f'{kinds}: not configured for {user.email}', hint)] + [
            Check(f'code {code.full_label}', WARNING, 'computer not configured', hint) for code in codes
        ]
    stage = 'transport'
    messages = []
    try:
        authinfo = computer.get_authinfo(user)
        transport = authinfo.get_transport()
        with _time_limit(COMPUTER_TIMEOUT_S), transport:
            scheduler = computer.get_scheduler()
            scheduler.set_transport(transport)
            for stage, name in COMPUTER_TESTS:
                success, message = getattr(cmd_computer, name)(transport, scheduler, authinfo, computer)
                if not success:
                    raise RuntimeError(' '.join(str(message).split())[:300])
                messages.append(message)
    except Exception as exception:  # noqa: BLE001 - any failure is a verdict, never a traceback
        if stage == 'scheduler' and computer.scheduler_type == 'core.slurm':
            hint = 'is SLURM up? `sinfo`; for the test cluster: sudo deploy/slurm/start.sh'
        else:
            hint = f'verdi computer test {computer.label}'
        return [Check(what, ERROR, f'{kinds}: {stage} failed: {first_line(exception)}', hint)] + [
            Check(f'code {code.full_label}', WARNING, 'not checked: computer unusable') for code in codes
        ]
    checks = [Check(what, OK, f'{kinds}: transport opens, scheduler answers ({messages[0]}), work directory writable')]
    for code in codes:
        label = f'code {code.full_label}'
        if not isinstance(code, InstalledCode):
            checks.append(Check(label, OK, code.__class__.__name__))
            continue
        try:
            with _time_limit(COMPUTER_TIMEOUT_S):
                code.validate_filepath_executable()
        except (ValidationError, TimeoutError) as exception:
            checks.append(
                Check(
                    label,
                    ERROR,
                    f'{code.filepath_executable} on {computer.label}: {first_line(exception)}',
                    'install it there, or create the code again (`mlqm setup` for mlqm-python)',
                )
            )
        else:
            checks.append(Check(label, OK, f'{code.filepath_executable} exists and is executable'))
    return checks


def check_graphviz(profile) -> list[Check]:
    """``verdi node graph generate`` needs graphviz's ``dot`` on this machine."""
    dot = shutil.which('dot')
    if dot is None:
        return [
            Check(
                'graphviz',
                WARNING,
                '`dot` not found: `verdi node graph generate` cannot draw provenance graphs',
                'sudo deploy/services.sh (installs graphviz), or apt-get install graphviz',
            )
        ]
    return [Check('graphviz', OK, f'{dot} (verdi node graph generate)')]


def check_stuck_work(profile) -> list[Check]:
    """Rows for what :func:`.processes.find_stuck_work` found, each naming the repair."""
    from .processes import find_stuck_work

    found = find_stuck_work(profile)
    repair = f'mlqm repair --profile {profile.name} --restart-daemon'
    checks = []
    for title, items, hint, verdict in (
        (
            'stuck processes',
            found.without_task,
            f'a worker busy in a long step does not answer either: if this row stays, {repair}',
            WARNING,
        ),
        (
            'never-started processes',
            found.never_started,
            f'{repair} (or let `mlqm supervise` do it): marks them excepted so that their callers take their failure '
            'path (a batch job\'s structures are retried alone)',
            ERROR,
        ),
        ('stuck calculations', found.job_ended, repair, ERROR),
        (
            'duplicate outputs',
            found.duplicates,
            'a process ran twice at once (broker restart with live workers); check these outputs by hand with '
            '`verdi process show PK`; run `mlqm supervise` beside the daemon so it does not happen again',
            ERROR,
        ),
    ):
        if items:
            listed = '; '.join(f'{pk}: {why}' for pk, why in items[:5]) + (' ...' if len(items) > 5 else '')
            checks.append(Check(title, verdict, f'{len(items)}: {listed}', hint))
    if not checks:
        checks.append(Check('processes', OK, f'{found.active} active, none stuck, no duplicate outputs'))
    return checks


def collect(profile) -> list[Check]:
    """Run every check for a loaded profile; a check that crashes becomes an ``error`` row rather than a traceback."""
    checks = [
        Check(
            'profile',
            OK,
            f'{profile.name} (storage {profile.storage_backend}, broker {profile.process_control_backend})',
        )
    ]
    storage = check_storage(profile)
    checks += storage
    checks += _guarded('broker', check_broker, profile)
    checks += _guarded('daemon', check_daemon, profile)
    if storage[0].verdict != ERROR:
        checks += _guarded('computers', check_computers_and_codes, profile)
        checks += _guarded('processes', check_stuck_work, profile)
    else:
        checks.append(Check('computers', WARNING, 'not checked: storage unreachable'))
    checks += _guarded('graphviz', check_graphviz, profile)
    # Belt and braces: no library message may carry a password into the report (short ones such as the default
    # 'guest' also name the user, so only real secrets are masked).
    secrets = [
        value
        for value in (
            profile.storage_config.get('database_password'),
            (profile.process_control_config or {}).get('broker_password'),
        )
        if isinstance(value, str) and len(value) >= 8
    ]
    for check in checks:
        for secret in secrets:
            check.detail = check.detail.replace(secret, '***')
            check.hint = check.hint.replace(secret, '***')
    return checks


def _guarded(what, function, profile) -> list[Check]:
    try:
        return function(profile)
    except Exception as exception:  # noqa: BLE001 - any failure is a verdict, never a traceback
        return [Check(what, ERROR, f'check crashed: {first_line(exception)}')]


