"""``mlqm campaign run|submit|status|list``: campaigns from a YAML config (``mlqm.campaign``)."""

from __future__ import annotations

import math
import pathlib
import time

import click

from . import main

PROCESS_TYPE = 'aiida.workflows:mlqm.campaign'


@main.group('campaign')
def campaign():
    """Active-learning campaigns: build, label, learn, screen, from one config (see examples/campaigns/)."""


def load_campaign_config(path: str, max_hours: float | None = None):
    """The validated config and the library records it names; ``click.UsageError`` naming every problem.

    :param max_hours: ``--max-hours``: the per-structure cost ceiling (``submission.max_hours_per_structure``). Every
        library molecule is checked against it at each level before anything is stored.
    """
    from ..chemistry.readers import LibraryError
    from ..workflows.campaign_config import CampaignConfigError, load_config, parse_config
    from .reference import check_cost

    try:
        config = load_config(path)  # the levels are checked here (method, functional, basis)
        if max_hours is not None:
            values = config_values(config)
            values.setdefault('submission', {})['max_hours_per_structure'] = max_hours
            config = parse_config(values)
        records = config.library.read(pathlib.Path(path).resolve().parent)
    except (CampaignConfigError, LibraryError) as exception:
        raise click.UsageError(str(exception)) from exception
    for level in (config.levels.cheap, config.levels.expensive):
        if level is not None:  # a campaign labels part of the library, so only the per-structure ceiling applies here
            check_cost(records, level.theory, config.submission.max_hours_per_structure, math.inf)
    return config, records


def config_values(config) -> dict:
    """The config as the user gave it (defaults left out, so that they are applied once, by the work chain)."""
    return config.model_dump(mode='json', exclude_unset=True)


def campaign_builder(config, records, code, options: dict | None = None):
    from aiida import orm
    from aiida.plugins import WorkflowFactory

    builder = WorkflowFactory('mlqm.campaign').get_builder()
    builder.config = orm.Dict(config_values(config))
    builder.library = orm.List(records)
    builder.code = code
    if config.method_selection.enabled:
        from ..workflows.method_selection_training import import_default

        builder.classifier = import_default()  # the shipped classifier, imported into the profile on first use
    if options:
        builder.options = orm.Dict(options)
    return builder


MAX_HOURS = click.option(
    '--max-hours',
    type=click.FloatRange(min=0, min_open=True),
    help='Refuse a molecule estimated above this many core-hours at a level [default: reference protocol].',
)


@campaign.command('run')
@click.argument('config_file', type=click.Path(exists=True, dir_okay=False))
@click.option('--profile', 'profile_name', help='AiiDA profile (default: the embedded `mlqm` profile).')
@MAX_HOURS
def cmd_run(config_file, profile_name, max_hours):
    """Run the campaign of CONFIG_FILE in this process (embedded default: no broker needed) and print the result."""
    from .reference import load_code, make_console

    config, records = load_campaign_config(config_file, max_hours)
    code = load_code(profile_name)
    console = make_console()
    console.print(f'Campaign {config.name!r}: {config.target}, {len(records)} molecules, levels '
                  f'{", ".join(sorted(config.label_budgets or {config.levels.cheap.level: None}))}')  # fmt: skip
    run_or_submit(config, records, code, console)


def run_or_submit(config, records, code, console, *, submit: bool = False) -> None:
    """Run the campaign in this process (an interrupt kills its jobs), or hand it to the daemon with ``submit``."""
    from ..services.processes import run_in_process
    from .reference import interrupt_exit

    builder = campaign_builder(config, records, code)
    if submit:
        from aiida.engine import submit as submit_process

        node = submit_process(builder)
        console.print(f'submitted {node.process_label}<{node.pk}>; follow it with `mlqm campaign status {node.pk} --watch`')
        return
    with interrupt_exit():
        _, node = run_in_process(builder, {})
    print_summary(node, console)
    if not node.is_finished_ok:
        raise SystemExit(1)


@campaign.command('submit')
@click.argument('config_file', type=click.Path(exists=True, dir_okay=False))
@click.option('--profile', 'profile_name', required=True, help='A profile with a broker and a running daemon.')
@MAX_HOURS
def cmd_submit(config_file, profile_name, max_hours):
    """Submit the campaign of CONFIG_FILE to the daemon and print its pk (follow it with `mlqm campaign status`)."""
    from aiida import load_profile
    from aiida.engine import submit

    from ..services.profiles import ensure_localhost_computer, ensure_python_code

    config, records = load_campaign_config(config_file, max_hours)
    profile = load_profile(profile_name, allow_switch=True)
    if profile.process_control_backend is None:
        raise click.UsageError(
            f'profile {profile_name!r} has no broker, so no daemon can run the campaign: use `mlqm campaign run`, '
            'or a profile made by `mlqm setup --detect`'
        )
    code = ensure_python_code(ensure_localhost_computer())
    node = submit(campaign_builder(config, records, code))
    click.echo(f'submitted campaign {config.name!r}: {node.process_label}<{node.pk}>; follow it with '
               f'`mlqm campaign status {node.pk} --profile {profile_name}`')  # fmt: skip


def _running_jobs(node) -> list:
    from aiida import orm

    return [
        child for child in node.called_descendants
        if isinstance(child, orm.CalcJobNode) and not child.is_terminated
    ]  # fmt: skip


def status_table(node):
    from rich.table import Table

    extras = node.base.extras
    table = Table(title=f'{extras.get("campaign_name", "campaign")} ({node.process_label}<{node.pk}>)')
    table.add_column('state')
    table.add_column('stage')
    table.add_column('iteration')
    table.add_column('labels per level')
    table.add_column('validation MAE')
    table.add_column('jobs running')
    error = extras.get('campaign_validation_error', None)
    labels = extras.get('campaign_labels', {}) or {}
    running = _running_jobs(node)
    table.add_row(
        node.process_state.value if node.process_state else 'created',
        str(extras.get('campaign_stage', 'created')),
        str(extras.get('campaign_iteration', 0)),
        ', '.join(f'{level}: {count}' for level, count in sorted(labels.items())) or '-',
        '-' if error is None else f'{error:.4g}',
        ', '.join(f'{job.process_label}<{job.pk}>' for job in running) or '-',
    )
    return table


@campaign.command('status')
@click.argument('identifier')
@click.option('--profile', 'profile_name', help='AiiDA profile (default: the embedded `mlqm` profile).')
@click.option('--watch', is_flag=True, help='Refresh every few seconds until the campaign terminates.')
@click.option('--interval', default=5.0, show_default=True, help='Seconds between refreshes with --watch.')
def cmd_status(identifier, profile_name, watch, interval):
    """Stage, iteration, labels per level, validation error and running jobs of campaign IDENTIFIER (pk or uuid)."""
    from aiida import orm

    from .reference import make_console

    _load(profile_name)
    node = _campaign_node(identifier)
    console = make_console()
    if not watch:
        console.print(status_table(node))
        return
    from rich.live import Live

    with Live(status_table(node), console=console, refresh_per_second=1) as live:
        while not node.is_terminated:
            time.sleep(interval)
            node = orm.load_node(node.pk)
            live.update(status_table(node))
    print_summary(node, console)


@campaign.command('list')
@click.option('--profile', 'profile_name', help='AiiDA profile (default: the embedded `mlqm` profile).')
def cmd_list(profile_name):
    """Every campaign of the profile, newest last."""
    from aiida import orm
    from rich.table import Table

    from .reference import make_console

    _load(profile_name)
    query = orm.QueryBuilder().append(
        orm.WorkflowNode, filters={'process_type': PROCESS_TYPE}, project='*', tag='campaign'
    )
    query.order_by({'campaign': {'ctime': 'asc'}})
    table = Table()
    for column in ('pk', 'name', 'state', 'stage', 'iteration', 'labels', 'created'):
        table.add_column(column)
    for (node,) in query.iterall():
        extras = node.base.extras
        labels = extras.get('campaign_labels', {}) or {}
        state = node.process_state.value if node.process_state else 'created'
        if node.is_finished:
            state = f'finished [{node.exit_status}]'
        table.add_row(
            str(node.pk), str(extras.get('campaign_name', '')), state, str(extras.get('campaign_stage', '')),
            str(extras.get('campaign_iteration', 0)), str(sum(labels.values())), node.ctime.strftime('%Y-%m-%d %H:%M'),
        )  # fmt: skip
    make_console().print(table)


def print_summary(node, console) -> None:
    """What the campaign found, the error reached, the labels spent, and how to look at the graph."""
    if not node.is_finished_ok:
        console.print(f'[red]{node.process_label}<{node.pk}> ended with exit status {node.exit_status}: '
                      f'{node.exit_message}[/red]; see `verdi process report {node.pk}`')  # fmt: skip
        return
    report = node.outputs.report.get_dict()
    console.print(status_table(node))
    for row in report['iterations']:
        error = row.get('validation_error')
        console.print(
            f'  iteration {row["iteration"]}: labels {row["labels"]}, validation MAE '
            f'{"-" if error is None else f"{error:.4g}"}'
            + (f', selected {row["selected"]} (mean uncertainty {row["mean_uncertainty"]:.3g})' if 'selected' in row else '')
        )
    console.print(f'Stopped: {report.get("stop_reason")}')
    deltas = [row['delta'] for row in report['iterations'] if row.get('delta')]
    if deltas and deltas[-1].get('objective'):
        delta = deltas[-1]
        console.print(
            f'Δ model of {delta["objective"]} (expensive - cheap) on {delta["pairs"]} molecules with both levels: '
            f'held-out MAE of cheap + Δ {delta["holdout_mae"]:.3g} eV on {delta["holdout"]} (cheap alone '
            f'{delta["base_only_mae"]:.3g}, cheap + mean shift {delta["shift_mae"]:.3g})'
        )
    multireference = (report.get('method_selection') or {}).get('multireference')
    if multireference:
        console.print(f'Multireference molecules at {multireference["level"]} (out of training and screening):')
        for key, row in sorted(multireference['labelled'].items()):
            space = row.get('active_space') or {}
            console.print(f'  {key:20s} E {row["casscf_energy"]:.4f} eV, CAS({space.get("electrons")},{space.get("orbitals")})')
        for key, row in sorted(multireference['failed'].items()):
            console.print(f'  {key:20s} failed ({row["status"]}): {row["message"]}')
    if 'screening' in report:
        from ..workflows.campaign import hit_line

        screening = report['screening']
        console.print('Screening, top candidates verified by reference QM (eV):')
        for row in screening['verified']:
            console.print(f'  {row["key"]:20s} predicted {row["predicted"]:8.3f} ± {row["spread"]:.3f}   '
                          f'computed {row["computed"]:8.3f}   error {row["error"]:+7.3f}'
                          + (f'   ({row["computed_level"]}: cheap QM {row["computed_cheap"]:.3f})' if 'computed_level' in row else '')
                          + ('' if row['hit'] is None else f'   hit: {"yes" if row["hit"] else "no"}'))  # fmt: skip
        if screening['mae'] is not None:
            console.print(f'  MAE of the verified (predicted vs computed): {screening["mae"]:.3f} eV')
        console.print(f'  {hit_line(screening)}')
        if screening.get('labelled_hits') is not None:
            console.print(
                f'  for comparison: {screening["labelled_hits"]} of the {screening["labelled_count"]} molecules labelled '
                'before screening are hits (active learning labels the uncertain ones first)'
            )
        if screening.get('best_found'):
            console.print(f'Best found, of {screening["computed_count"]} molecules computed (labelled or verified):')
            for row in screening['best_found']:
                console.print(f'  {row["key"]:20s} {row["computed"]:8.3f}   ({row["source"]})'
                              + ('   hit' if row.get('hit') else ''))  # fmt: skip
    console.print(
        f'Look at it: verdi process report {node.pk}; verdi process list -a; '
        f'verdi node graph generate {node.outputs.dataset.pk} (the labelled dataset and everything behind it)'
    )


def _load(profile_name):
    from aiida import load_profile

    if profile_name:
        load_profile(profile_name, allow_switch=True)
    else:
        from ..services.profiles import ensure_embedded_profile

        ensure_embedded_profile()


def _campaign_node(identifier: str):
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        node = orm.load_node(int(identifier) if identifier.isdigit() else identifier)
    except (NotExistent, MultipleObjectsError) as exception:
        raise click.BadParameter(f'no unique node {identifier!r}: {exception}', param_hint='IDENTIFIER') from None
    if node.process_type != PROCESS_TYPE:
        raise click.BadParameter(
            f'node {identifier} is a {node.__class__.__name__} ({node.process_type}), not a campaign; '
            '`mlqm campaign list` shows the campaigns', param_hint='IDENTIFIER',
        )  # fmt: skip
    return node
