"""``verdi data mlqm.dataset`` and ``verdi data mlqm.model``: list, show and export, on verdi's profile.

Registered through AiiDA's ``aiida.cmdline.data`` entry points, so they run on the profile ``verdi -p`` chose.
"""

from __future__ import annotations

import click
from aiida.cmdline.groups import VerdiCommandGroup
from aiida.cmdline.params import arguments
from aiida.cmdline.utils import decorators, echo


def _ctime(node) -> str:
    return node.ctime.strftime('%Y-%m-%d %H:%M')


@click.group('mlqm.dataset', cls=VerdiCommandGroup)
def dataset():
    """Labelled datasets (DatasetData): several levels per structure, forces optional per row."""


@dataset.command('list')
@click.option('--limit', type=int, default=50, show_default=True, help='Newest first, at most this many.')
@decorators.with_dbenv()
def dataset_list(limit):
    """List datasets: pk, rows, levels, rows with forces, source file."""
    from aiida.orm import QueryBuilder
    from tabulate import tabulate

    from ..provenance.dataset import DatasetData

    query = QueryBuilder().append(DatasetData, project='*').order_by({DatasetData: {'ctime': 'desc'}}).limit(limit)
    rows = []
    for (node,) in query.iterall():
        attributes = node.base.attributes
        counts = attributes.get('level_counts', {})
        rows.append(
            [
                node.pk,
                _ctime(node),
                len(node),
                ', '.join(f'{level}: {n}' for level, n in sorted(counts.items())),
                attributes.get('num_rows_with_forces', len(node) if node.has_forces else 0),
                (attributes.get('source_file', None) or {}).get('filename', ''),
            ]
        )
    echo.echo(tabulate(rows, headers=['pk', 'created', 'rows', 'levels', 'with forces', 'source file']))


@dataset.command('show')
@arguments.DATUM()
@decorators.with_dbenv()
def dataset_show(datum):
    """Show a dataset: levels, pairs of levels per structure, units, source file."""
    from ..provenance.dataset import DatasetData

    if not isinstance(datum, DatasetData):
        echo.echo_critical(f'node {datum.pk} is a {type(datum).__name__}, not a DatasetData')
    attributes = datum.base.attributes
    echo.echo(str(datum))
    echo.echo(f'uuid: {datum.uuid}')
    echo.echo(f'structures: {attributes.get("num_structures", "?")}, species Z: {datum.species}')
    echo.echo(f'units: {attributes.get("units", None)}')
    levels = sorted(attributes.get('level_counts', {}))
    for index, base in enumerate(levels):
        for target in levels[index + 1 :]:
            echo.echo(f'structures labelled at both {base} and {target}: {len(datum.pairs(base, target))}')
    source = attributes.get('source_file', None)
    if source:
        echo.echo(f'source file: {source["filename"]} (SinglefileData {source["uuid"]}, sha256 {source["sha256"]})')
        echo.echo(f'file keys: {attributes.get("label_keys", None)}, energy unit {attributes.get("file_energy_unit", None)}')
    if datum.creator is not None:
        echo.echo(f'created by: {datum.creator.process_label}<{datum.creator.pk}>')


@dataset.command('export')
@arguments.DATUM()
@click.argument('filename', type=click.Path(dir_okay=False, writable=True))
@click.option('--energy-unit', help='eV, hartree or kcal/mol (default: the imported unit, else eV).')
@decorators.with_dbenv()
def dataset_export(datum, filename, energy_unit):
    """Write a dataset to extended XYZ (imported datasets with the keys they were imported with)."""
    from ..provenance.dataset import DatasetData

    if not isinstance(datum, DatasetData):
        echo.echo_critical(f'node {datum.pk} is a {type(datum).__name__}, not a DatasetData')
    try:
        datum.export_extxyz(filename, energy_unit=energy_unit)
    except ValueError as exception:
        echo.echo_critical(str(exception))
    echo.echo_success(f'wrote {len(datum)} rows to {filename}')


@click.group('mlqm.model', cls=VerdiCommandGroup)
def model():
    """Trained models (ModelData): committees, Δ models, classifiers."""


@model.command('list')
@click.option('--limit', type=int, default=50, show_default=True, help='Newest first, at most this many.')
@decorators.with_dbenv()
def model_list(limit):
    """List models: pk, kind, backend, elements, levels."""
    from aiida.orm import QueryBuilder
    from tabulate import tabulate

    from ..provenance.model import ModelData

    query = QueryBuilder().append(ModelData, project='*').order_by({ModelData: {'ctime': 'desc'}}).limit(limit)
    rows = []
    for (node,) in query.iterall():
        attributes = node.base.attributes
        levels = attributes.get('levels', None) or {}
        rows.append(
            [
                node.pk,
                _ctime(node),
                attributes.get('kind', None),
                attributes.get('backend', ''),
                ' '.join(attributes.get('symbols', [])),
                ' -> '.join(v for v in (levels.get('base'), levels.get('target')) if v),
            ]
        )
    echo.echo(tabulate(rows, headers=['pk', 'created', 'kind', 'backend', 'elements', 'levels']))


@model.command('show')
@arguments.DATUM()
@decorators.with_dbenv()
def model_show(datum):
    """Show a model: what it is, its held-out errors and calibration, the job that trained it."""
    from ..provenance.model import ModelData

    if not isinstance(datum, ModelData):
        echo.echo_critical(f'node {datum.pk} is a {type(datum).__name__}, not a ModelData')
    echo.echo(str(datum))
    echo.echo(f'uuid: {datum.uuid}')
    echo.echo(f'calibration: {datum.base.attributes.get("calibration", None)}')
    echo.echo(f'files: {", ".join(datum.base.attributes.get("files", []))}')
    if datum.creator is not None:
        echo.echo(f'trained by: {datum.creator.process_label}<{datum.creator.pk}>')


@model.command('export')
@arguments.DATUM()
@click.argument('directory', type=click.Path(file_okay=False))
@decorators.with_dbenv()
def model_export(datum, directory):
    """Copy the saved model (metadata.json + weights, no pickle) to DIRECTORY, loadable with models.serialization."""
    from ..provenance.model import ModelData

    if not isinstance(datum, ModelData):
        echo.echo_critical(f'node {datum.pk} is a {type(datum).__name__}, not a ModelData')
    datum.export(directory)
    echo.echo_success(f'wrote ModelData<{datum.pk}> to {directory}')
