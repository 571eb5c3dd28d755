"""``mlqm campaign report ID -o report.html``: the self-contained HTML report of a campaign (or a workchain, a model).

The ``campaign`` group is shared with the commands that run campaigns; whichever module is imported first makes it.
"""

from __future__ import annotations

import click

from . import main
from .query import load_query_profile


def campaign_group() -> click.Group:
    """The ``mlqm campaign`` group of ``cli/campaign.py`` when there is one (imported first, so that its group is not
    defined again after this command joined it), else made here."""
    try:
        from . import campaign as _campaign  # noqa: F401
    except ImportError:
        pass
    group = main.commands.get('campaign')
    if group is None:

        @main.group('campaign')
        def group():
            """Campaigns: active learning and screening from one config, and their report."""

    return group


@campaign_group().command('report')
@click.argument('node_id', metavar='ID')
@click.option('-o', '--output', type=click.Path(dir_okay=False), default='report.html', show_default=True,
              help='The HTML file to write (one file: plots are inline SVG, nothing is loaded from elsewhere).')  # fmt: skip
@click.option('--profile', 'profile_name', help='AiiDA profile (default: the default profile).')
def cmd_campaign_report(node_id, output, profile_name):
    """Learning curve, parity, calibration, selection, cost, routing and screening, drawn from the graph alone.

    ID is a campaign (or any workchain: what it called and created) or a model (the jobs behind it and the
    predictions made with it).
    """
    from aiida.common.exceptions import NotExistent

    from ..provenance.report import write_report

    load_query_profile(profile_name)
    try:
        path = write_report(node_id, output)
    except NotExistent as exception:
        raise click.BadParameter(f'no node {node_id!r} in this profile ({exception})', param_hint='ID') from exception
    click.echo(f'wrote {path}')
