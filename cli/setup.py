"""``mlqm setup``: create or reuse a profile, the ``localhost`` computer and the Python code that runs PySCF jobs.

Without service options: the embedded profile (``core.sqlite_dos``, no broker). With ``--detect`` or any
``--db-*``/``--broker-*`` option: a ``core.psql_dos`` + ``mlqm.rabbitmq`` (AiiDA's RabbitMQ broker, waiting through outages) profile for ``verdi daemon`` workers.
``--slurm`` adds the ``localhost-slurm`` computer of ``deploy/slurm/start.sh``. The work is done by
:mod:`aiida_mlqm.services.profiles`; this module parses options and prints.
"""

from __future__ import annotations

import shutil

import click

from ..services.common import ServiceError, check_profile_name, sql_name
from ..services.postgres import PostgresSettings
from ..services.profiles import (  # noqa: F401 - re-exported: notebooks and older scripts import them from here
    DAEMON_WORKERS,
    DEFAULT_CODE,
    DEFAULT_COMPUTER,
    DEFAULT_PROFILE,
    DEFAULT_SERVICES_PROFILE,
    DEFAULT_SLURM_COMPUTER,
    ensure_embedded_profile,
    ensure_localhost_computer,
    ensure_python_code,
    ensure_services_profile,
    ensure_slurm_computer,
    mlqm_home,
    profile_summary,
    setup_embedded,
)
from ..services.rabbitmq import (
    CONSUMER_TIMEOUT_FIX,
    RABBITMQ_BACKENDS,
    RabbitmqSettings,
    consumer_timeout,
    timeout_disabled,
)
from . import main


def _profile_name(ctx, param, value):
    if value is None:
        return value
    try:
        return check_profile_name(value)
    except ValueError as exception:
        raise click.BadParameter(str(exception)) from None


@main.command('setup')
@click.option(
    '--profile',
    'profile_name',
    default=None,
    callback=_profile_name,
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
    try:
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
    except ServiceError as exception:
        raise click.ClickException(str(exception)) from None

    computers = [ensure_localhost_computer()]
    if slurm:
        computers.append(ensure_slurm_computer())
    for what, where in profile_summary(profile):
        click.echo(f'{what:<9} {where}')
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
    if profile.process_control_backend in RABBITMQ_BACKENDS:
        broker = RabbitmqSettings.from_profile_config(profile.process_control_config)
        if timeout_disabled(consumer_timeout(broker.host)) is False:
            click.echo(f'warning   RabbitMQ consumer_timeout is on; fix: {CONSUMER_TIMEOUT_FIX}', err=True)
        click.echo(
            f'next      verdi -p {profile.name} daemon start {DAEMON_WORKERS}; mlqm status --profile {profile.name}'
        )
