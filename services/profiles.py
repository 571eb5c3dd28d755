"""AiiDA profiles, computers and codes as ``mlqm setup`` makes them; every function reuses what exists (idempotent).

Two kinds of profile:

* embedded: ``core.sqlite_dos`` storage, no broker; processes run in-process.
* production: ``core.psql_dos`` on PostgreSQL plus the ``mlqm.rabbitmq`` broker (AiiDA's RabbitMQ broker, whose
  communicator waits through a broker outage: :mod:`.broker`), for ``verdi daemon`` workers.

Profiles are made with aiida-core's ``create_profile``, as ``verdi presto`` does (presto itself wants sudo and the
en_US locale for PostgreSQL: :mod:`.postgres` makes the database instead).
"""

from __future__ import annotations

import os
import pathlib
import sys

from .common import ServiceError, check_profile_name
from .postgres import PostgresSettings, ensure_database
from .rabbitmq import (
    BROKER_BACKEND,
    RABBITMQ_BACKENDS,
    RabbitmqSettings,
    consumer_timeout,
    rabbitmq_connection,
    timeout_disabled,
)

DEFAULT_PROFILE = 'mlqm'
DEFAULT_SERVICES_PROFILE = 'mlqm-psql'
DEFAULT_COMPUTER = 'localhost'
DEFAULT_SLURM_COMPUTER = 'localhost-slurm'
DEFAULT_CODE = 'mlqm-python'
DAEMON_WORKERS = 2  # one per core on the reference machine (SERVICES.md)

# How often a parent process looks at a child it waits for, besides the broker's broadcast. aiida-core's default of
# 60 s made every step of an in-process chain on a production profile wait up to a minute; a check is one indexed
# query, so 1 s (what ``verdi presto`` sets) costs nothing noticeable even with thousands of waiting processes.
RUNNER_POLL_INTERVAL = 1

# How often a CalcJob asks its scheduler about its job, per computer. On this machine polling costs little; at zero
# the parent polled ~9 times a second and took CPU from the job it waited for on a 2-core machine (the runner took
# 17.7 s at 0 s and 12.9 s at 1 s, side by side). A real cluster keeps AiiDA's default (deploy/hpc/).
LOCAL_POLL_INTERVAL = 0.5


def mlqm_home() -> pathlib.Path:
    """Return the folder that holds embedded storage and job folders (``$MLQM_HOME`` or ``~/.mlqm``)."""
    return pathlib.Path(os.environ.get('MLQM_HOME', pathlib.Path.home() / '.mlqm')).expanduser().resolve()


def _set_default_if_none(config, name: str) -> None:
    if not config.default_profile_name:
        config.set_default_profile(name)
        config.store()


def _set_runner_options(config, name: str) -> None:
    """Poll interval of waiting parents (see :data:`RUNNER_POLL_INTERVAL`), written only when it differs."""
    if config.get_option('runner.poll.interval', scope=name) != RUNNER_POLL_INTERVAL:
        config.set_option('runner.poll.interval', RUNNER_POLL_INTERVAL, scope=name)
        config.store()


# The embedded storage is one SQLite file. In SQLite's default rollback-journal mode every commit creates, syncs twice and
# deletes a journal file; AiiDA commits on every node store and process-state change, so a chain of 20 structures paid
# ~7 s of its ~37 s in commits (cProfile under load). In write-ahead-log mode a commit appends to the log and syncs it
# once (``synchronous`` stays at SQLite's FULL: a finished commit survives a crash or power cut as before), and
# readers no longer block the writer. The mode is a property of the database file: set once, it holds for every
# process that opens it.
JOURNAL_MODE = 'wal'


def use_write_ahead_log(profile) -> str | None:
    """Put a ``core.sqlite_dos`` profile's database in write-ahead-log mode (see :data:`JOURNAL_MODE`).

    Idempotent; call it before the profile's storage is opened in this process. Returns the journal mode now in
    effect, or ``None`` for a profile of another storage backend. A file system that cannot hold SQLite's shared
    memory (some network mounts) keeps its old mode, which is returned as it is.
    """
    import sqlite3

    if profile.storage_backend != 'core.sqlite_dos':
        return None
    database = pathlib.Path(profile.storage_config['filepath']) / 'database.sqlite'
    if not database.exists():
        return None
    connection = sqlite3.connect(database, timeout=10)
    try:
        return connection.execute(f'PRAGMA journal_mode={JOURNAL_MODE}').fetchone()[0]
    except sqlite3.OperationalError:  # another process holds a transaction open: the next call switches
        return connection.execute('PRAGMA journal_mode').fetchone()[0]
    finally:
        connection.close()


# SQLAlchemy engine options of production profiles (aiida-core passes ``engine_kwargs`` of the storage configuration
# to ``create_engine``): test a pooled connection before handing it out, so that a connection PostgreSQL closed while
# it restarted is replaced instead of failing the next query of an idle process.
ENGINE_OPTIONS = {'pool_pre_ping': True}


def _set_broker_backend(config, name: str) -> None:
    """Move a profile on AiiDA's ``core.rabbitmq`` to :data:`.rabbitmq.BROKER_BACKEND` (same broker, same settings; its
    communicator waits through a broker outage instead of excepting the processes that call it)."""
    profile = config.get_profile(name)
    if profile.process_control_backend == 'core.rabbitmq':
        profile.set_process_controller(BROKER_BACKEND, dict(profile.process_control_config))
        config.update_profile(profile)
        config.store()


def _set_engine_options(config, name: str) -> None:
    profile = config.get_profile(name)
    storage = dict(profile.storage_config)
    if storage.get('engine_kwargs') != {**storage.get('engine_kwargs', {}), **ENGINE_OPTIONS}:
        storage['engine_kwargs'] = {**storage.get('engine_kwargs', {}), **ENGINE_OPTIONS}
        profile.set_storage(profile.storage_backend, storage)
        config.update_profile(profile)
        config.store()


def ensure_embedded_profile(name: str = DEFAULT_PROFILE, *, email: str = 'mlqm@localhost'):
    """Create (or reuse) a ``core.sqlite_dos`` profile without a broker, load it and return it.

    An existing profile of that name is reused as it is, whatever its storage, so that running the command twice
    changes nothing. The profile becomes the default one when there is no default yet.

    :raises ValueError: for a name that is not letters, digits, ``_`` and ``-``.
    """
    from aiida import load_profile
    from aiida.manage.configuration import create_profile, get_config

    check_profile_name(name)
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
        _set_runner_options(config, name)
    _set_default_if_none(config, name)
    use_write_ahead_log(config.get_profile(name))
    return load_profile(name, allow_switch=True)


def ensure_services_profile(
    name: str = DEFAULT_SERVICES_PROFILE,
    *,
    postgres: PostgresSettings,
    rabbitmq: RabbitmqSettings,
    email: str = 'mlqm@localhost',
    reset_role_password: bool = False,
):
    """Create (or reuse) a ``core.psql_dos`` + ``mlqm.rabbitmq`` profile, load it and return it.

    For a new profile the broker is probed first (a profile whose broker is wrong only fails later, in the daemon),
    then the database and role are created when missing (see :func:`.postgres.ensure_database` for
    ``reset_role_password``). ``daemon.default_workers`` is set to 2; the runner poll interval
    (:data:`RUNNER_POLL_INTERVAL`) and the engine options (:data:`ENGINE_OPTIONS`) also on an existing profile.

    :raises ServiceError: when a service is unreachable, or the name belongs to a profile of another kind.
    :raises ValueError: for a name that is not letters, digits, ``_`` and ``-``.
    """
    from aiida import load_profile
    from aiida.manage.configuration import create_profile, get_config

    check_profile_name(name)
    config = get_config(create=True)
    if name in config.profile_names:
        existing = config.get_profile(name)
        if existing.storage_backend != 'core.psql_dos':
            raise ServiceError(
                f'profile {name!r} exists with storage {existing.storage_backend}, not core.psql_dos',
                f'pass another --profile name, or delete it first with `verdi profile delete {name}`',
            )
        _set_runner_options(config, name)
        _set_engine_options(config, name)
        _set_broker_backend(config, name)
        return load_profile(name, allow_switch=True)

    rabbitmq_connection(rabbitmq).close()
    postgres = ensure_database(postgres, reset_role_password=reset_role_password)
    repository = mlqm_home() / 'repository' / name
    repository.mkdir(parents=True, exist_ok=True)
    create_profile(
        config,
        storage_backend='core.psql_dos',
        storage_config=postgres.storage_config(repository.as_uri()),
        broker_backend=BROKER_BACKEND,
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
    _set_runner_options(config, name)
    _set_engine_options(config, name)
    _set_default_if_none(config, name)
    return load_profile(name, allow_switch=True)


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


def profile_summary(profile) -> list[tuple[str, str]]:
    """``(what, where)`` rows naming a profile's storage and broker, never their passwords."""
    storage = profile.storage_config
    if profile.storage_backend == 'core.psql_dos':
        where = (
            f'{storage["database_username"]}@{storage["database_hostname"]}:{storage["database_port"]}'
            f'/{storage["database_name"]}'
        )
    else:
        where = storage.get('filepath', '')
    rows = [
        ('profile', f'{profile.name} (storage {profile.storage_backend}, broker {profile.process_control_backend})'),
        ('storage', where),
    ]
    if profile.process_control_backend in RABBITMQ_BACKENDS:
        rows.append(('broker', RabbitmqSettings.from_profile_config(profile.process_control_config).where()))
    return rows
