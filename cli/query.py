"""``mlqm query``: ask the provenance graph (lineage, why, failures, cost, invalidate, routing, summary).

Each sub-command prints rich tables, or with ``--json`` the answer of :mod:`aiida_mlqm.provenance.queries` as JSON
for scripts, and with ``--csv DIR`` writes the tables as CSV files.
"""

from __future__ import annotations

import json

import click

from . import main


def load_query_profile(name: str | None):
    """Load ``name`` or the default AiiDA profile; a query never creates one."""
    from aiida import load_profile
    from aiida.common.exceptions import ConfigurationError, ProfileConfigurationError
    from aiida.manage import get_manager

    loaded = get_manager().get_profile()
    if loaded is not None and name in (None, loaded.name):
        return loaded
    try:
        return load_profile(name, allow_switch=True)
    except (ConfigurationError, ProfileConfigurationError) as exception:
        hint = 'run `mlqm setup` (or `mlqm setup --detect`) first, or pass --profile NAME'
        raise click.UsageError(f'no AiiDA profile to query ({exception}); {hint}') from exception


def _options(function):
    function = click.option('--profile', 'profile_name', help='AiiDA profile (default: the default profile).')(function)
    function = click.option('--json', 'as_json', is_flag=True, help='Print the answer as JSON.')(function)
    function = click.option(
        '--csv', 'csv_dir', type=click.Path(file_okay=False), help='Also write every table as CSV into this folder.'
    )(function)
    return function


def _answer(name: str, node_id: str | None, profile_name, as_json: bool, csv_dir: str | None, **kwargs) -> None:
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    from ..provenance import queries
    from ..provenance.tables import tables, write_csv

    load_query_profile(profile_name)
    try:
        answer = getattr(queries, name)(node_id, **kwargs) if node_id is not None else getattr(queries, name)(**kwargs)
    except NotExistent as exception:
        raise click.BadParameter(f'no node {node_id!r} in this profile ({exception})', param_hint='ID') from exception
    except MultipleObjectsError as exception:
        raise click.BadParameter(f'{node_id!r} matches several nodes: give more of the uuid', param_hint='ID') from exception
    except ValueError as exception:
        raise click.BadParameter(str(exception), param_hint='ID') from exception
    if csv_dir:
        for path in write_csv(answer, csv_dir):
            click.echo(f'wrote {path}', err=True)
    if as_json:
        click.echo(json.dumps(answer, indent=1, default=str))
        return
    from rich.table import Table as RichTable

    from .reference import make_console

    console = make_console()
    for table in tables(answer):
        rich = RichTable(title=table.title, title_justify='left')
        for column in table.columns:
            rich.add_column(column)
        for row in table.rows:
            rich.add_row(*('' if value is None else str(value) for value in row))
        if table.rows:
            console.print(rich)
        else:
            console.print(f'{table.title}: none')


@main.group('query')
def cmd_query():
    """Ask the provenance graph: what a model rests on, why a structure was labelled, failures, cost, dependants.

    ID is a pk, a uuid or a unique uuid prefix.
    """


@cmd_query.command('lineage')
@click.argument('node_id', metavar='ID')
@click.option('--method', type=click.Choice(['auto', 'sql', 'querybuilder']), default='auto', show_default=True,
              help='How to walk the graph (auto: one recursive SQL query on PostgreSQL, QueryBuilder otherwise).')  # fmt: skip
@_options
def cmd_lineage(node_id, method, profile_name, as_json, csv_dir):
    """Every reference calculation, structure, dataset and level behind a model (or any node)."""
    _answer('lineage', node_id, profile_name, as_json, csv_dir, method=method)


@cmd_query.command('why')
@click.argument('node_id', metavar='ID')
@_options
def cmd_why(node_id, profile_name, as_json, csv_dir):
    """Why a structure was labelled: its origin, the selection that chose it (iteration, model, score, rule), the jobs."""
    _answer('why', node_id, profile_name, as_json, csv_dir)


@cmd_query.command('failures')
@click.argument('node_id', metavar='[ID]', required=False)
@_options
def cmd_failures(node_id, profile_name, as_json, csv_dir):
    """Failed processes under a workchain (all processes without ID) by exit code, and failed structures in batches."""
    _answer('failures', node_id, profile_name, as_json, csv_dir)


@cmd_query.command('cost')
@click.argument('node_id', metavar='ID')
@_options
def cmd_cost(node_id, profile_name, as_json, csv_dir):
    """CPU seconds by stage and level of a workchain's jobs, or of the jobs behind a model or dataset."""
    _answer('cost', node_id, profile_name, as_json, csv_dir)


@cmd_query.command('invalidate')
@click.argument('node_id', metavar='ID')
@_options
def cmd_invalidate(node_id, profile_name, as_json, csv_dir):
    """Every dataset, model, prediction and decision record that depends on a node (e.g. a wrong calculation)."""
    _answer('invalidate', node_id, profile_name, as_json, csv_dir)


@cmd_query.command('routing')
@click.argument('node_id', metavar='[ID]', required=False)
@_options
def cmd_routing(node_id, profile_name, as_json, csv_dir):
    """Routing decisions (single-reference or multireference, level) under a campaign, or all of them."""
    _answer('routing', node_id, profile_name, as_json, csv_dir)


@cmd_query.command('summary')
@click.argument('node_id', metavar='ID')
@_options
def cmd_summary(node_id, profile_name, as_json, csv_dir):
    """What a campaign (or any workchain) did: processes, datasets, models, decision records, cost, failures."""
    _answer('summary', node_id, profile_name, as_json, csv_dir)
