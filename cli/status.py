"""``mlqm status``: one row per check of a profile (:mod:`aiida_mlqm.services.checks`), each with a verdict and a hint.

The exit code is 1 when any verdict is ``error``, so scripts and CI can gate on it.
"""

from __future__ import annotations

import click

from ..services.checks import ERROR, OK, WARNING, Check, collect
from . import main


def render(checks: list[Check]) -> None:
    """Print the checks as a table (wide and without colour when the output is not a terminal)."""
    import sys

    from rich.console import Console
    from rich.table import Table

    colours = {OK: 'green', WARNING: 'yellow', ERROR: 'bold red'}
    table = Table(show_lines=False, header_style='bold')
    for column in ('check', 'verdict', 'detail', 'hint'):
        table.add_column(column, overflow='fold')
    for check in checks:
        table.add_row(check.what, f'[{colours[check.verdict]}]{check.verdict}[/]', check.detail, check.hint)
    # Without a terminal (CI logs, pipes) rich would wrap at 80 columns; a wide table stays greppable.
    console = Console() if sys.stdout.isatty() else Console(width=220, no_color=True)
    console.print(table)


@main.command('status')
@click.option('--profile', 'profile_name', default=None, help='Profile to check [default: the default profile].')
def cmd_status(profile_name):
    """Check storage, broker, daemon, computers and codes of a profile; exit code 1 if any check is an error."""
    from aiida import load_profile
    from aiida.manage.configuration import get_config

    config = get_config(create=True)
    name = profile_name or config.default_profile_name
    if not name:
        raise click.ClickException('no AiiDA profile yet. Fix: `mlqm setup` (embedded) or `mlqm setup --detect`.')
    if name not in config.profile_names:
        known = ', '.join(config.profile_names) or 'none'
        raise click.ClickException(f'no profile {name!r} (profiles: {known}). Fix: `mlqm setup --profile {name}`.')
    profile = load_profile(name, allow_switch=True)
    checks = collect(profile)
    render(checks)
    errors = [check for check in checks if check.verdict == ERROR]
    if errors:
        raise SystemExit(1)
