"""``mlqm repair`` and ``mlqm supervise``: put stuck work back on track, and keep it there through service restarts.

The work is done by :mod:`aiida_mlqm.services.processes` and :mod:`aiida_mlqm.services.supervisor`.
"""

from __future__ import annotations

import click

from ..services.rabbitmq import RABBITMQ_BACKENDS
from . import main


def _load(profile_name):
    from aiida import load_profile
    from aiida.manage.configuration import get_config

    config = get_config(create=True)
    name = profile_name or config.default_profile_name
    if not name or name not in config.profile_names:
        known = ', '.join(config.profile_names) or 'none'
        raise click.ClickException(f'no profile {name!r} (profiles: {known}). Fix: `mlqm setup --detect`.')
    return load_profile(name, allow_switch=True)


@main.command('repair')
@click.option('--profile', 'profile_name', default=None, help='Profile to repair [default: the default profile].')
@click.option(
    '--restart-daemon',
    is_flag=True,
    help='Stop a running daemon first and start it again afterwards (aiida-core repairs only a stopped daemon).',
)
def cmd_repair(profile_name, restart_daemon):
    """Recreate the broker task of every active process that has none (`verdi process repair`).

    `mlqm status` says when this is needed: processes Created/Waiting that no worker holds, calculations whose
    scheduler job ended long ago, processes that never started (a worker died while launching them: they are
    marked excepted first, so that the chains waiting for them take their failure path).
    """
    from ..services.processes import repair

    profile = _load(profile_name)
    if profile.process_control_backend not in RABBITMQ_BACKENDS:
        raise click.ClickException(
            f'profile {profile.name} has no broker: its processes run inside the command that started them. '
            'Fix: nothing to repair; run the command again.'
        )
    try:
        for line in repair(profile, restart_daemon=restart_daemon):
            click.echo(line)
    except RuntimeError as exception:
        raise click.ClickException(str(exception)) from None


@main.command('supervise')
@click.option('--profile', 'profile_name', default=None, help='Profile to watch [default: the default profile].')
@click.option(
    '--interval', default=1.0, show_default=True, type=click.FloatRange(min=0.1), help='Seconds between polls.'
)
@click.option(
    '--check-every',
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help='Seconds between looks for stuck work.',
)
def cmd_supervise(profile_name, interval, check_every):
    """Watch PostgreSQL and RabbitMQ beside the daemon; stop it during an outage, repair and restart it after.

    Runs until interrupted; start it next to `verdi daemon start` (deploy/README.md).
    """
    import logging
    import signal

    from ..services.supervisor import Supervisor

    profile = _load(profile_name)
    if profile.process_control_backend not in RABBITMQ_BACKENDS or profile.storage_backend != 'core.psql_dos':
        raise click.ClickException(f'profile {profile.name} is not a PostgreSQL + RabbitMQ profile: nothing to watch')
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    logging.getLogger('pika').setLevel(logging.WARNING)  # every connection attempt is logged at INFO otherwise
    supervisor = Supervisor(profile, interval=interval, check_every=check_every)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stop.set())
    click.echo(f'supervising {profile.name} (poll every {interval} s); stop with Ctrl-C', err=True)
    supervisor.run()
