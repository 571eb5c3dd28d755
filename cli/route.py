"""``mlqm route``: decide per molecule whether it needs a multireference method, and which level otherwise.

Takes the same inputs as ``mlqm build`` (SMILES file, xyz folder, extxyz with ``name``/``charge`` in each frame's info,
ASE db, G2 names); geometries from xyz/extxyz are used as given, never re-optimised. Runs ``mlqm.build`` and then
``mlqm.method_selection`` with the shipped classifier (imported on first use) or a given ``ModelData``.
"""

from __future__ import annotations

import json
import time

import click

from . import main
from .reference import load_code, make_console


def _routing(path: str | None) -> dict:
    """The routing rule from a YAML/JSON file, validated (unknown keys fail) before anything is stored."""
    if not path:
        return {}
    import yaml
    from pydantic import ValidationError

    from ..models.method_selection import RoutingRule

    with open(path, encoding='utf-8') as handle:
        data = yaml.safe_load(handle) or {}
    try:
        RoutingRule.model_validate(data)
    except ValidationError as exception:
        raise click.BadParameter(f'{path}: {exception}', param_hint='--routing') from exception
    return data


@main.command('route')
@click.option('--smiles', 'smiles_file', type=click.Path(exists=True, dir_okay=False),
              help='SMILES file: `SMILES [id] [charge=N] [multiplicity=M]` per line, or CSV.')  # fmt: skip
@click.option('--xyz-dir', type=click.Path(exists=True, file_okay=False), help='Folder of .xyz files (used as given).')
@click.option('--extxyz', type=click.Path(exists=True, dir_okay=False),
              help='Extended XYZ file; `name` and `charge` from each frame\'s info (no charge: neutral).')  # fmt: skip
@click.option('--ase-db', type=click.Path(exists=True, dir_okay=False), help='ASE database, one entry per row.')
@click.option('--g2', 'g2_names', metavar='NAME,NAME|all', help='Molecules of the G2 set by name, or `all`.')
@click.option('--classifier', 'classifier_id', help='PK or UUID of a ModelData classifier [default: the shipped one].')
@click.option('--routing', type=click.Path(exists=True, dir_okay=False),
              help='YAML/JSON RoutingRule: mr_threshold, multireference_action (casscf/flag/exclude), '
              'target_accuracy_kcal_mol, levels.')  # fmt: skip
@click.option('--batch-size', type=click.IntRange(min=1), default=30, show_default=True,
              help='Most molecules in one features job.')  # fmt: skip
@click.option('--json', 'as_json', is_flag=True, help='Print a JSON list of {name, p_mr, route, diagnostics, ...}.')
@click.option('--profile', 'profile_name', help='AiiDA profile to use (default: the embedded `mlqm` profile).')
def cmd_route(smiles_file, xyz_dir, extxyz, ase_db, g2_names, classifier_id, routing, batch_size, as_json, profile_name):
    """Route each molecule: P(MR) from cheap features, then multireference path or the cheapest adequate level."""
    from ..chemistry.readers import LibraryError, read_library

    rule = _routing(routing)
    try:
        records = read_library(smiles=smiles_file, xyz_dir=xyz_dir, extxyz=extxyz, ase_db=ase_db, g2=g2_names)
    except LibraryError as exception:
        raise click.UsageError(str(exception)) from exception
    code = load_code(profile_name)
    console = make_console()
    log = (lambda *a, **k: None) if as_json else console.print  # --json: stdout carries the JSON only

    from aiida import orm
    from aiida.engine import run_get_node

    from ..workflows.build import BuildWorkChain
    from ..workflows.method_selection import MethodSelectionWorkChain, classifier_features_parameters, decisions_table
    from ..workflows.method_selection_training import import_default

    classifier = orm.load_node(classifier_id) if classifier_id else import_default()
    # the features job as the classifier was trained on it (basis and options)
    features_parameters = classifier_features_parameters(classifier)
    basis = features_parameters.get('basis', 'cc-pvdz')
    log(f'Building {len(records)} molecules with mlqm.build ...')
    # Geometries are routed as given: a stretched bond may look like two fragments, and two geometries of one
    # molecule (same InChIKey) are two routing questions, so neither is rejected here.
    builder = BuildWorkChain.get_builder_from_protocol(
        records, 'fast', overrides={'parameters': {'basis': basis, 'allow_fragments': True, 'deduplicate': False}}
    )
    _, build = run_get_node(builder)
    built = BuildWorkChain.built_structures(build)
    rejected = build.outputs.rejected.get_dict().get('entries', []) if 'rejected' in build.outputs else []
    for entry in rejected:
        log(f'[yellow]rejected {entry["id"]} ({entry["kind"]}): {entry["reason"]}')
    if not built:
        raise click.ClickException(f'no structure could be built (BuildWorkChain<{build.pk}>: {build.exit_message})')
    structures = dict(sorted(built.items()))  # link labels made from the user's ids by the build
    log(f'Features and routing for {len(structures)} molecules on {code.computer.label} ...')
    start = time.perf_counter()
    _, node = run_get_node(
        MethodSelectionWorkChain,
        structures=structures,
        code=code,
        classifier=classifier,
        routing=orm.Dict(rule),
        features_parameters=orm.Dict(features_parameters),
        batch_size=orm.Int(batch_size),
    )
    elapsed = time.perf_counter() - start
    if 'summary' not in node.outputs:
        raise click.ClickException(f'MethodSelectionWorkChain<{node.pk}> failed: {node.exit_message}')
    rows = decisions_table(node) + [
        {'name': entry['id'], 'p_mr': None, 'route': 'rejected', 'reason': entry['reason'], 'diagnostics': None}
        for entry in rejected
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    from rich.table import Table

    table = Table(title=f'Method selection (MethodSelectionWorkChain<{node.pk}>, {elapsed:.0f} s)')
    for column in ('molecule', 'P(MR)', 'route', 'level / action', 'reason'):
        table.add_column(column)
    for row in rows:
        p = '' if row['p_mr'] is None else f'{row["p_mr"]:.3f}'
        what = row.get('level') or row.get('action') or ''
        if row.get('active_space'):
            what += f' CAS({row["active_space"]["electrons"]},{row["active_space"]["orbitals"]})'
        name = row['name'] if row.get('key') in (None, row['name']) else f'{row["name"]} -> {row["key"]}'
        table.add_row(name, p, row['route'], what, row.get('reason') or '')
    console.print(table)
