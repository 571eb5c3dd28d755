"""``mlqm data import`` / ``mlqm data export``: labelled files in and out of the current profile, with provenance."""

from __future__ import annotations

import click

from . import main
from .jobs import JSON_OPTION, PROFILE_OPTION, load_current_profile, load_node_of, make_console, node_ref, print_json


@main.group('data')
def data():
    """Labelled data: import files with their levels of theory, export datasets."""


def check_labels(ctx, param, values):
    """Parse every ``--label`` before anything else happens; a bad one is a usage error naming the syntax."""
    from ..provenance.labelled import parse_labels

    try:
        return parse_labels(values)
    except ValueError as exception:
        raise click.BadParameter(str(exception)) from None


def check_unit(ctx, param, value):
    from ..provenance.labelled import energy_factor

    try:
        energy_factor(value)
    except ValueError as exception:
        raise click.BadParameter(str(exception)) from None
    return value


@data.command('import')
@click.argument('filename', type=click.Path(exists=True, dir_okay=False))
@click.option(
    '--label',
    'labels',
    multiple=True,
    required=True,
    callback=check_labels,
    metavar="'METHOD/BASIS=ENERGY_KEY[,FORCES_KEY]'",
    help="Which frame keys hold which level's energy (and forces); repeat for several levels, e.g. "
    "--label 'b3lyp/6-31g*=e_dft,f_dft' --label 'ccsd(t)/cc-pvdz=e_cc'.",
)
@click.option(
    '--energy-unit',
    default='eV',
    show_default=True,
    callback=check_unit,
    help='Unit of the energies in the file: eV, hartree or kcal/mol (forces in that unit per Å).',
)
@click.option(
    '--format',
    'file_format',
    type=click.Choice(['extxyz', 'ase-db']),
    help='Default: from the suffix (.extxyz/.xyz, .db).',
)
@PROFILE_OPTION
@JSON_OPTION
def cmd_import(filename, labels, energy_unit, file_format, profile_name, as_json):
    """Import a labelled extxyz file or ASE database as a DatasetData, linked to the file it came from."""
    from ..provenance.labelled import read_labelled_frames
    from ..workflows.importing import import_file

    try:  # the whole file is checked before a profile is even loaded: nothing is stored when it fails
        read_labelled_frames(filename, labels, energy_unit, file_format)
    except ValueError as exception:
        raise click.UsageError(str(exception)) from None
    load_current_profile(profile_name)
    console = make_console(as_json)
    outputs = import_file(filename, labels, energy_unit=energy_unit, fmt=file_format)
    dataset = outputs['dataset']
    source = dataset.creator.inputs.source
    summary = {
        **node_ref(dataset),
        'rows': len(dataset),
        'structures': len(outputs['structures']),
        'levels': dataset.base.attributes.get('level_counts'),
        'rows_with_forces': dataset.base.attributes.get('num_rows_with_forces'),
        'source_file': {
            **node_ref(source),
            'filename': source.filename,
            'sha256': source.base.attributes.get('sha256'),
        },
        'calculation': node_ref(dataset.creator),
    }
    if as_json:
        print_json(summary)
        return
    from rich.table import Table

    table = Table(title=f'DatasetData<{dataset.pk}> from {source.filename} (SinglefileData<{source.pk}>)')
    for column in ('level', 'rows', 'with forces', 'energy key', 'forces key'):
        table.add_column(column)
    present = dataset.forces_present
    for spec in labels:
        rows = dataset.rows_at(spec.level)
        table.add_row(
            spec.level,
            str(len(rows)),
            str(int(present[rows].sum())) if rows else '0',
            spec.energy_key,
            spec.forces_key or '',
        )
    console.print(table)
    console.print(f'{summary["structures"]} structures; sha256 {summary["source_file"]["sha256"]}')
    console.print(f'Train on it: mlqm train --dataset {dataset.pk} --kind potential --target-level LEVEL')


@data.command('export')
@click.argument('dataset')
@click.argument('filename', type=click.Path(dir_okay=False, writable=True))
@click.option(
    '--energy-unit',
    callback=lambda c, p, v: v if v is None else check_unit(c, p, v),
    help='Default: the imported unit, else eV.',
)
@PROFILE_OPTION
def cmd_export(dataset, filename, energy_unit, profile_name):
    """Write DATASET (pk, uuid or label) to an extended XYZ FILENAME, with the keys it was imported with."""
    from ..provenance.dataset import DatasetData

    load_current_profile(profile_name)
    node = load_node_of(dataset, DatasetData, 'dataset')
    node.export_extxyz(filename, energy_unit=energy_unit)
    click.echo(f'wrote DatasetData<{node.pk}> ({len(node)} rows) to {filename}')
