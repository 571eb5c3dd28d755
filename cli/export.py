"""``mlqm export``: a dataset as extended XYZ, a campaign as an AiiDA archive (query tables: ``mlqm query ... --csv``)."""

from __future__ import annotations

import click

from . import main
from .query import load_query_profile


@main.group('export')
def cmd_export():
    """Write what the graph holds to files others can read."""


@cmd_export.command('dataset')
@click.argument('node_id', metavar='ID')
@click.option('-o', '--output', type=click.Path(dir_okay=False), required=True, help='The .extxyz file to write.')
@click.option('--profile', 'profile_name', help='AiiDA profile (default: the default profile).')
def cmd_export_dataset(node_id, output, profile_name):
    """A DatasetData (or a reference chain's dataset) as extxyz: eV, eV/Å, each frame's source and structure uuid."""
    from aiida.common.exceptions import NotExistent

    from ..provenance.exports import export_dataset

    load_query_profile(profile_name)
    try:
        path = export_dataset(node_id, output)
    except (NotExistent, ValueError) as exception:
        raise click.BadParameter(str(exception), param_hint='ID') from exception
    click.echo(f'wrote {path}')


@cmd_export.command('archive')
@click.argument('node_ids', metavar='ID...', nargs=-1, required=True)
@click.option('-o', '--output', type=click.Path(dir_okay=False), required=True, help='The .aiida file to write.')
@click.option('--overwrite', is_flag=True, help='Replace an existing file.')
@click.option('--profile', 'profile_name', help='AiiDA profile (default: the default profile).')
def cmd_export_archive(node_ids, output, overwrite, profile_name):
    """The nodes with their provenance and called processes, as `verdi archive create` writes them."""
    import pathlib

    from aiida.common.exceptions import NotExistent

    from ..provenance.exports import export_archive

    if pathlib.Path(output).exists() and not overwrite:
        raise click.BadParameter(f'{output} exists: pass --overwrite to replace it', param_hint='--output')
    load_query_profile(profile_name)
    try:
        path = export_archive(node_ids, output, overwrite=overwrite)
    except NotExistent as exception:
        raise click.BadParameter(str(exception), param_hint='ID') from exception
    click.echo(f'wrote {path}; import it with: verdi archive import {path}')
