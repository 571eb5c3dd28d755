"""``mlqm setup``: create or reuse a profile, the ``localhost`` computer and the Python code that runs PySCF jobs.

Two kinds of profile:

* embedded (no service options): ``core.sqlite_dos`` storage, no broker; processes run in-process.
* production (``--detect`` or any ``--db-*``/``--broker-*`` option): ``core.psql_dos`` on PostgreSQL plus the
  ``core.rabbitmq`` broker, for ``verdi daemon`` workers. The database and its role are created here through psycopg
  (``verdi presto --use-postgres`` wants sudo and an en_US locale).

``--slurm`` adds the ``localhost-slurm`` computer (``core.slurm`` over ``core.local``) of the one-node cluster that
``deploy/slurm/start.sh`` starts, with the same code on it. Every step reuses what exists, so the command is
idempotent. The functions are importable so that ``mlqm demo``, tests and notebooks reach the same set-up.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

import click

from . import main
from .services import (
    CONSUMER_TIMEOUT_FIX,
    PostgresSettings,
    RabbitmqSettings,
    ServiceError,
    consumer_timeout,
    ensure_database,
    rabbitmq_connection,
    sql_name,
    timeout_disabled,
)

DEFAULT_PROFILE = 'mlqm'
DEFAULT_SERVICES_PROFILE = 'mlqm-psql'
DEFAULT_COMPUTER = 'localhost'
DEFAULT_SLURM_COMPUTER = 'localhost-slurm'
DEFAULT_CODE = 'mlqm-python'
DAEMON_WORKERS = 2  # one per core on the reference machine (SERVICES.md)


def mlqm_home() -> pathlib.Path:
    """Return the folder that holds embedded storage and job folders (``$MLQM_HOME`` or ``~/.mlqm``)."""
    return pathlib.Path(os.environ.get('MLQM_HOME', pathlib.Path.home() / '.mlqm')).expanduser().resolve()


def _set_default_if_none(config, name: str) -> None:
    if not config.default_profile_name:
        config.set_default_profile(name)
        config.store()


def ensure_embedded_profile(name: str = DEFAULT_PROFILE, *, email: str = 'mlqm@localhost'):
    """Create (or reuse) a ``core.sqlite_dos`` profile without a broker, load it and return it.

    An existing profile of that name is reused as it is, whatever its storage, so that running the command twice
    changes nothing. The profile becomes the default one when there is no default yet.
    """
    from aiida import load_profile
    from aiida.manage.configuration import create_profile, get_config

    config = get_config(create=True)
    if name not in config.profile_names:
        filepath = mlqm_home() / 'storage' / name
        filepath.mkdir(parents=True, exist_ok=True)
        create_profile(
            config,
            storage_backend='core.sqlite_dos',
            storage_config={'filepath': str(filepath)},
            broker_backend=None,
            name=name,
            email=email,
        )
        # Without a broker a parent process learns that its child finished by polling; the default of 60 s would
        # add up to a minute to every step of a chain.
        config.set_option('runner.poll.interval', 1, scope=name)
        config.store()
    _set_default_if_none(config, name)
    return load_profile(name, allow_switch=True)


def ensure_services_profile(
    name: str = DEFAULT_SERVICES_PROFILE,
    *,
    postgres: PostgresSettings,
    rabbitmq: RabbitmqSettings,
    email: str = 'mlqm@localhost',
    reset_role_password: bool = False,
):
    """Create (or reuse) a ``core.psql_dos`` + ``core.rabbitmq`` profile, load it and return it.

    For a new profile the broker is probed first (a profile whose broker is wrong only fails later, in the daemon),
    then the database and role are created when missing (see :func:`~aiida_mlqm.cli.services.ensure_database` for
    ``reset_role_password``). ``daemon.default_workers`` is set to 2 for the profile.

    :raises click.ClickException: when a service is unreachable, or the name belongs to a profile of another kind.
    """
    from aiida import load_profile
    from aiida.manage.configuration import create_profile, get_config

    config = get_config(create=True)
    if name in config.profile_names:
        existing = config.get_profile(name)
        if existing.storage_backend != 'core.psql_dos':
            raise click.ClickException(
                f'profile {name!r} exists with storage {existing.storage_backend}, not core.psql_dos. Fix: pass '
                f'another --profile name, or delete it first with `verdi profile delete {name}`.'
            )
        return load_profile(name, allow_switch=True)

    try:
        rabbitmq_connection(rabbitmq).close()
        postgres = ensure_database(postgres, reset_role_password=reset_role_password)
    except ServiceError as exception:
        raise click.ClickException(str(exception)) from None

    repository = mlqm_home() / 'repository' / name
    repository.mkdir(parents=True, exist_ok=True)
    storage_config = {
        'database_engine': 'postgresql_psycopg',
        'database_hostname': postgres.host,
        'database_port': postgres.port,
        'database_username': postgres.user,
        'database_password': postgres.password,
        'database_name': postgres.name,
        'repository_uri': repository.as_uri(),
    }
    create_profile(
        config,
        storage_backend='core.psql_dos',
        storage_config=storage_config,
        broker_backend='core.rabbitmq',
        broker_config=rabbitmq.profile_config(),
        name=name,
        email=email,
    )
    config.set_option('daemon.default_workers', DAEMON_WORKERS, scope=name)
    # AiiDA warns about every RabbitMQ >= 3.8.15 because of consumer_timeout; once it is known to be off the warning
    # is noise. Unknown (remote broker) keeps the warning.
    if timeout_disabled(consumer_timeout(rabbitmq.host)):
        config.set_option('warnings.rabbitmq_version', False, scope=name)
    config.store()
    _set_default_if_none(config, name)
    return load_profile(name, allow_switch=True)


# Not zero: every poll runs the scheduler's status command and commits a timestamp to the storage. At zero, the
# parent process polled ~9 times a second and took CPU from the job it waited for on a 2-core machine (measured with
# the overhead benchmark: the runner itself took 17.7 s at 0 s and 12.9 s at 1 s, side by side).
LOCAL_POLL_INTERVAL = 0.5


def ensure_localhost_computer(
    label: str = DEFAULT_COMPUTER, *, workdir: str | None = None, mpiprocs: int | None = None
):
    """Create (or reuse) a ``core.direct`` computer with the ``core.local`` transport and return it.

    The transport's safe interval is zero and the job poll interval :data:`LOCAL_POLL_INTERVAL`: on localhost the
    defaults (10 s) only add latency.
    """
    return _ensure_local_computer(label, 'core.direct', 'This machine (aiida-mlqm embedded default)', workdir, mpiprocs)


def ensure_slurm_computer(
    label: str = DEFAULT_SLURM_COMPUTER, *, workdir: str | None = None, mpiprocs: int | None = None
):
    """Create (or reuse) a ``core.slurm`` computer over ``core.local`` for the one-node cluster of deploy/slurm.

    Poll and safe intervals as for ``localhost``: the scheduler is on this machine, so polling it costs little,
    whereas a real cluster keeps the defaults (deploy/hpc/).
    """
    workdir = workdir or str(mlqm_home() / 'work-slurm')
    return _ensure_local_computer(label, 'core.slurm', 'One-node SLURM cluster (deploy/slurm)', workdir, mpiprocs)


def _ensure_local_computer(label: str, scheduler: str, description: str, workdir: str | None, mpiprocs: int | None):
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(label)
    except NotExistent:
        workdir = workdir or str(mlqm_home() / 'work')
        pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
        computer = orm.Computer(
            label=label,
            hostname='localhost',
            description=description,
            transport_type='core.local',
            scheduler_type=scheduler,
            workdir=workdir,
        ).store()
        computer.set_default_mpiprocs_per_machine(mpiprocs or os.cpu_count() or 1)
        computer.set_minimum_job_poll_interval(LOCAL_POLL_INTERVAL)
    user = orm.User.collection.get_default()
    if not computer.is_user_configured(user):
        computer.configure(user=user, safe_interval=0.0, use_login_shell=False)
    return computer


def ensure_python_code(computer, label: str = DEFAULT_CODE, *, python: str | None = None):
    """Create (or reuse) an ``InstalledCode`` for a Python interpreter that has PySCF (this one by default)."""
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        return orm.load_code(f'{label}@{computer.label}')
    except (NotExistent, MultipleObjectsError):
        pass
    return orm.InstalledCode(
        label=label,
        computer=computer,
        filepath_executable=python or sys.executable,
        default_calc_job_plugin='mlqm.pyscf',
        description='Python with PySCF (and aiida-mlqm for training and prediction jobs)',
    ).store()


def setup_embedded(profile: str = DEFAULT_PROFILE):
    """Create or reuse everything the embedded default needs; return ``(profile, computer, code)``."""
    loaded = ensure_embedded_profile(profile)
    computer = ensure_localhost_computer()
    code = ensure_python_code(computer)
    return loaded, computer, code


def _echo_profile(profile) -> None:
    """Print where the profile's storage and broker are, never their passwords."""
    storage = profile.storage_config
    if profile.storage_backend == 'core.psql_dos':
        where = (
            f'{storage["database_username"]}@{storage["database_hostname"]}:{storage["database_port"]}'
            f'/{storage["database_name"]}'
        )
    else:
        where = storage.get('filepath', '')
    click.echo(
        f'profile   {profile.name} (storage {profile.storage_backend}, broker {profile.process_control_backend})'
    )
    click.echo(f'storage   {where}')
    if profile.process_control_backend == 'core.rabbitmq':
        broker = RabbitmqSettings.from_profile_config(profile.process_control_config)
        click.echo(f'broker    {broker.where()}')


@main.command('setup')
@click.option(
    '--profile',
    'profile_name',
    default=None,
    help=f'Profile to create or reuse [default: {DEFAULT_PROFILE}, or {DEFAULT_SERVICES_PROFILE} with '
    'PostgreSQL/RabbitMQ].',
)
@click.option(
    '--detect',
    is_flag=True,
    help='Use PostgreSQL and RabbitMQ on 127.0.0.1 with default ports and credentials (postgres admin '
    'role, guest broker user); explicit --db-*/--broker-* options override single values.',
)
@click.option('--db-host', default='127.0.0.1', show_default=True, help='PostgreSQL host.')
@click.option('--db-port', default=5432, show_default=True, type=int, help='PostgreSQL port.')
@click.option('--db-name', default=None, help='Database [default: from the profile name]; created if missing.')
@click.option(
    '--db-user', default=None, help='Role owning the database [default: the database name]; created if missing.'
)
@click.option(
    '--db-password',
    default=None,
    envvar='MLQM_DB_PASSWORD',
    show_envvar=True,
    help="The role's password [default: random for a new role]. Prefer the environment variable: "
    'a command line is visible to every user of the host.',
)
@click.option(
    '--db-admin-user',
    default='postgres',
    show_default=True,
    help='Role that may create databases and roles; only used when something is missing.',
)
@click.option(
    '--db-admin-password',
    default=None,
    envvar='MLQM_DB_ADMIN_PASSWORD',
    show_envvar=True,
    help='Password of the admin role (none needed with trust or peer authentication).',
)
@click.option('--broker-host', default='127.0.0.1', show_default=True, help='RabbitMQ host.')
@click.option('--broker-port', default=5672, show_default=True, type=int, help='RabbitMQ AMQP port.')
@click.option('--broker-user', default='guest', show_default=True, help='RabbitMQ user.')
@click.option(
    '--broker-password',
    default='guest',
    envvar='MLQM_BROKER_PASSWORD',
    show_envvar=True,
    show_default=False,
    help='RabbitMQ password [default: guest].',
)
@click.option('--broker-vhost', default='', help='RabbitMQ virtual host [default: the default vhost /].')
@click.option(
    '--slurm',
    is_flag=True,
    help=f'Also create the {DEFAULT_SLURM_COMPUTER} computer (core.slurm) of deploy/slurm/start.sh and the code on it.',
)
@click.option(
    '--method-selection',
    is_flag=True,
    help='Also import the shipped method-selection classifier and the archive of its training provenance.',
)
@click.pass_context
def cmd_setup(ctx, profile_name, detect, slurm, method_selection, **options):
    """Create or reuse a profile, the localhost computer and the PySCF code (idempotent).

    Without options: an embedded profile (SQLite, no broker). With --detect or --db-*/--broker-* options: a
    PostgreSQL + RabbitMQ profile for `verdi daemon` workers (start them with `verdi -p PROFILE daemon start`).
    """
    from click.core import ParameterSource

    # Only options on the command line choose the kind of profile: an exported MLQM_DB_PASSWORD alone must not turn
    # a plain `mlqm setup` into a PostgreSQL set-up.
    services = detect or any(ctx.get_parameter_source(key) == ParameterSource.COMMANDLINE for key in options)
    if services:
        profile_name = profile_name or DEFAULT_SERVICES_PROFILE
        db_name = options['db_name'] or sql_name(profile_name)
        postgres = PostgresSettings(
            host=options['db_host'],
            port=options['db_port'],
            name=db_name,
            user=options['db_user'] or db_name,
            password=options['db_password'],
            admin_user=options['db_admin_user'],
            admin_password=options['db_admin_password'],
        )
        rabbitmq = RabbitmqSettings(
            host=options['broker_host'],
            port=options['broker_port'],
            user=options['broker_user'],
            password=options['broker_password'],
            vhost=options['broker_vhost'],
        )
        profile = ensure_services_profile(
            profile_name, postgres=postgres, rabbitmq=rabbitmq, reset_role_password=options['db_user'] is None
        )
    else:
        profile = ensure_embedded_profile(profile_name or DEFAULT_PROFILE)

    computers = [ensure_localhost_computer()]
    if slurm:
        computers.append(ensure_slurm_computer())
    _echo_profile(profile)
    for computer in computers:
        code = ensure_python_code(computer)
        click.echo(f'computer  {computer.label} ({computer.scheduler_type}, {computer.transport_type})')
        click.echo(f'code      {code.full_label} -> {code.filepath_executable}')
    if method_selection:
        from ..workflows.method_selection_training import import_default

        classifier = import_default()
        click.echo(f'classifier {classifier.pk} ({classifier.uuid}): {classifier.summary()}')
    if slurm and shutil.which('sbatch') is None:
        click.echo('warning   sbatch not found: start the one-node cluster with `sudo deploy/slurm/start.sh`', err=True)
    if profile.process_control_backend == 'core.rabbitmq':
        broker = RabbitmqSettings.from_profile_config(profile.process_control_config)
        if timeout_disabled(consumer_timeout(broker.host)) is False:
            click.echo(f'warning   RabbitMQ consumer_timeout is on; fix: {CONSUMER_TIMEOUT_FIX}', err=True)
        click.echo(
            f'next      verdi -p {profile.name} daemon start {DAEMON_WORKERS}; mlqm status --profile {profile.name}'
        )
