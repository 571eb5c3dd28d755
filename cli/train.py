"""``mlqm train`` and ``mlqm predict``: the ``mlqm.train`` / ``mlqm.predict`` jobs on the current profile.

``mlqm predict`` with a ``delta`` model needs the base-level QM energy of every structure: a dataset holding it, or,
for new frames (``--extxyz``), ``mlqm.reference`` computes it first, so the prediction's provenance runs through the
base-level calculations to the imported file.
"""

from __future__ import annotations

import json
import pathlib

import click
import numpy as np

from . import main
from .jobs import (
    JSON_OPTION,
    PROFILE_OPTION,
    load_current_profile,
    load_node_of,
    make_console,
    node_ref,
    print_json,
    python_code,
    run_process,
)

KINDS = ('potential', 'property', 'delta', 'ml_base_delta')


def check_level(ctx, param, value):
    from ..chemistry.level import LevelOfTheory

    if value is None:
        return None
    try:
        return LevelOfTheory.canonical(value)
    except ValueError as exception:
        raise click.BadParameter(str(exception)) from None


def check_hyperparameters(ctx, param, value):
    from ..models.config import parse_config
    from ..models.errors import InvalidInputError

    if value is None:
        return {}
    try:
        values = json.loads(pathlib.Path(value).read_text() if pathlib.Path(value).is_file() else value)
    except (ValueError, OSError) as exception:
        raise click.BadParameter(f'not a JSON object or a JSON file: {exception}') from None
    if not isinstance(values, dict):
        raise click.BadParameter('give a JSON object, e.g. \'{"epochs": 200, "members": 4}\'')
    try:
        parse_config(values)
    except InvalidInputError as exception:
        raise click.BadParameter(str(exception)) from None
    return values


def choose_levels(
    dataset, kind: str, base_level: str | None, target_level: str | None
) -> tuple[str | None, str | None]:
    """The levels a ``kind`` model of ``dataset`` uses, checked against the dataset; ``click.UsageError`` naming them."""
    found = dataset.base.attributes.get('level_counts')
    for option, level in (('--base-level', base_level), ('--target-level', target_level)):
        if level is not None and level not in found:
            raise click.UsageError(
                f'{option} {level} is not a level of dataset {dataset.pk}, which has {sorted(found)}'
            )
    if kind in ('delta', 'ml_base_delta'):
        if base_level is None or target_level is None:
            if len(found) != 2:
                raise click.UsageError(
                    f'dataset {dataset.pk} has levels {sorted(found)}: give --base-level (the cheap one) and --target-level'
                )
            # the cheap level is the one labelled on more structures
            cheap, expensive = sorted(found, key=lambda level: -found[level])
            base_level, target_level = base_level or cheap, target_level or expensive
        if base_level == target_level:
            raise click.UsageError('--base-level and --target-level must differ')
        pairs = dataset.pairs(base_level, target_level)
        if len(pairs) < 3:
            raise click.UsageError(
                f'only {len(pairs)} structures of dataset {dataset.pk} are labelled at both {base_level} and '
                f'{target_level}; a Δ model needs at least 3'
            )
        return base_level, target_level
    if base_level is not None:
        raise click.UsageError(f'--base-level is for delta models; a {kind} model learns one level (--target-level)')
    if target_level is None and len(found) > 1:
        raise click.UsageError(
            f'dataset {dataset.pk} holds several levels {sorted(found)}: choose the one to learn with --target-level'
        )
    return None, target_level


def with_backend(hyperparameters: dict, backend: str | None) -> dict:
    """``hyperparameters`` with ``--backend`` in them; ``click.UsageError`` when the two name different backends."""
    if backend is None:
        return hyperparameters
    if hyperparameters.get('backend', backend) != backend:
        raise click.UsageError(
            f"--backend {backend} and --hyperparameters' backend {hyperparameters['backend']!r} differ: give one"
        )
    return {**hyperparameters, 'backend': backend}


@main.command('train')
@click.option('--dataset', 'dataset_id', required=True, help='DatasetData to train on (pk, uuid or label).')
@click.option('--kind', type=click.Choice(KINDS), default='potential', show_default=True, help='What to learn.')
@click.option(
    '--backend',
    type=click.Choice(['torchani', 'mace']),
    help='Committee architecture (default: mace for potentials, torchani for property models and Δ corrections; '
    'models/README.md says which to pick when). Same as "backend" in --hyperparameters.',
)
@click.option('--base-level', callback=check_level, help='Δ models: the cheap level (METHOD/BASIS).')
@click.option('--target-level', callback=check_level, help='The level to learn (Δ: the expensive one).')
@click.option(
    '--hyperparameters',
    callback=check_hyperparameters,
    help='JSON object or file of training hyperparameters (e.g. \'{"epochs": 200}\'); unknown keys are an error.',
)
@PROFILE_OPTION
@JSON_OPTION
def cmd_train(dataset_id, kind, backend, base_level, target_level, hyperparameters, profile_name, as_json):
    """Train a model on a dataset with the mlqm.train job and store it as a ModelData."""
    from aiida import orm

    from ..calcjobs.train import TrainCalculation
    from ..models.config import TrainParameters, validation_message
    from ..provenance.dataset import DatasetData

    load_current_profile(profile_name)
    console = make_console(as_json)
    dataset = load_node_of(dataset_id, DatasetData, 'dataset')
    base_level, target_level = choose_levels(dataset, kind, base_level, target_level)
    parameters = {'kind': kind, 'hyperparameters': with_backend(hyperparameters, backend)}
    if base_level:
        parameters['base_level'] = base_level
    if target_level:
        parameters['target_level'] = target_level
    problem = validation_message(TrainParameters, parameters)
    if problem:  # e.g. torchani options for a MACE potential: refused before anything is stored
        raise click.UsageError(problem)
    console.print(
        f'Training a {kind} model on DatasetData<{dataset.pk}> ({len(dataset)} rows'
        + (f', {base_level} -> {target_level}' if base_level else (f', {target_level}' if target_level else ''))
        + ')'
    )
    node = run_process(
        TrainCalculation,
        {'dataset': dataset, 'parameters': orm.Dict(parameters), 'code': python_code()},
        console=console,
        log_file=TrainCalculation.FILENAME_STDOUT,
    )
    model = node.outputs.model
    if as_json:
        print_json(
            {
                **node_ref(model),
                'kind': model.kind,
                'calculation': node_ref(node),
                'metrics': node.outputs.metrics.get_dict(),
            }
        )
        return
    console.print(f'ModelData<{model.pk}>: {model.summary()}')
    console.print(f'Predict with it: mlqm predict --model {model.pk} --dataset ID | --extxyz FILE')


@main.command('predict')
@click.option('--model', 'model_id', required=True, help='ModelData to apply (pk, uuid or label).')
@click.option('--dataset', 'dataset_id', help='Predict every row of this DatasetData, in row order.')
@click.option('--extxyz', type=click.Path(exists=True, dir_okay=False), help='Predict every frame of this file.')
@click.option(
    '--export', type=click.Path(dir_okay=False, writable=True), help='Write the predictions to this extxyz file.'
)
@click.option('--no-forces', is_flag=True, help='Energies only (faster).')
@PROFILE_OPTION
@JSON_OPTION
def cmd_predict(model_id, dataset_id, extxyz, export, no_forces, profile_name, as_json):
    """Apply a model with the mlqm.predict job: energies (eV) with spread and interval per structure."""
    from aiida import orm

    from ..calcjobs.predict import PredictCalculation
    from ..provenance.dataset import DatasetData
    from ..provenance.labelled import read_geometries
    from ..provenance.model import ModelData

    if bool(dataset_id) == bool(extxyz):
        raise click.UsageError('give one of --dataset or --extxyz')
    if extxyz:
        try:
            read_geometries(extxyz)
        except ValueError as exception:
            raise click.UsageError(str(exception)) from None
    load_current_profile(profile_name)
    console = make_console(as_json)
    model = load_node_of(model_id, ModelData, 'model')
    if model.kind == 'classifier':
        raise click.UsageError('a classifier predicts from features; use the mlqm.predict job with `features`')
    code = python_code()
    inputs = {'model': model, 'code': code, 'parameters': orm.Dict({'forces': not no_forces})}
    if dataset_id:
        dataset = load_node_of(dataset_id, DatasetData, 'dataset')
        inputs['dataset'] = dataset
        rows = _dataset_rows(dataset)
    else:
        from ..workflows.importing import import_file

        structures = import_file(extxyz, None)['structures']
        if model.kind == 'delta':
            dataset = _base_level_dataset(model, structures, code, console)
            inputs['dataset'] = dataset
            rows = _dataset_rows(dataset)
        else:
            inputs['structures'] = dict(structures)
            rows = [
                {'index': i, 'structure_uuid': s.uuid, 'frame_index': s.base.attributes.get('frame_index', i)}
                for i, (_, s) in enumerate(sorted(structures.items()))
            ]
    node = run_process(PredictCalculation, inputs, console=console, log_file=PredictCalculation.FILENAME_STDOUT)
    predictions = node.outputs.predictions
    table = prediction_rows(predictions, rows)
    if export:
        export_predictions(export, predictions, inputs, table, model)
    if as_json:
        print_json(
            {
                **node_ref(predictions),
                'calculation': node_ref(node),
                'model': node_ref(model),
                'units': predictions.base.attributes.get('units'),
                'coverage': predictions.base.attributes.get('coverage'),
                'rows': table,
            }
        )
        return
    print_predictions(console, table, node, predictions)
    if export:
        console.print(f'wrote {len(table)} frames to {export}')


def _dataset_rows(dataset) -> list[dict]:
    """Per row: level, structure uuid and the frame of the source file (from the row, else from its structure)."""
    from aiida import orm

    uuids, frames, levels = dataset.structure_uuids, dataset.frame_indices, dataset.levels
    rows = []
    for i in range(len(dataset)):
        frame = None if frames[i] < 0 else int(frames[i])
        if frame is None and uuids[i]:
            query = orm.QueryBuilder().append(
                orm.StructureData, filters={'uuid': uuids[i]}, project='attributes.frame_index'
            )
            found = query.first()
            frame = None if not found or found[0] is None else int(found[0])
        rows.append({'index': i, 'level': levels[i], 'structure_uuid': uuids[i], 'frame_index': frame})
    return rows


def _base_level_dataset(model, structures, code, console):
    """Label ``structures`` at the Δ model's base level with ``mlqm.reference`` and return the dataset."""
    from aiida import orm
    from aiida.plugins import WorkflowFactory

    from .reference import level_option

    level = model.base.attributes.get('levels', {}).get('base')
    try:
        parameters = level_option(level, forces=False).as_parameters()
    except click.BadParameter as exception:
        raise click.UsageError(
            f'the Δ model adds its correction to {level} energies, which mlqm.reference cannot compute ({exception}); '
            'import the frames with their base-level energies (mlqm data import --label) and use --dataset'
        ) from None
    console.print(f'Computing the {level} base energies of {len(structures)} frames with mlqm.reference ...')
    node = run_process(
        WorkflowFactory('mlqm.reference'),
        {'structures': dict(structures), 'parameters': orm.Dict(parameters), 'code': code},
        console=console,
    )
    return node.outputs.dataset


def prediction_rows(predictions, rows: list[dict]) -> list[dict]:
    """One dict per predicted structure, in input order: energy (eV), spreads and interval, and what it was."""
    arrays = set(predictions.get_arraynames())

    def column(name):
        return predictions.get_array(name) if name in arrays else None

    energy, spread, raw = column('energy'), column('energy_spread'), column('energy_spread_raw')
    interval = column('energy_interval')
    force_spread = column('max_force_spread')
    table = []
    for row, index in zip(rows, range(len(energy))):
        entry = {
            **row,
            'energy': float(energy[index]),
            'energy_spread': float(spread[index]),
            'energy_spread_raw': float(raw[index]) if raw is not None else None,
            'energy_interval': None if interval is None or not np.isfinite(interval[index]) else float(interval[index]),
        }
        if force_spread is not None:
            entry['max_force_spread'] = float(force_spread[index])
        table.append(entry)
    return table


def print_predictions(console, table: list[dict], node, predictions) -> None:
    from rich.table import Table

    coverage = predictions.base.attributes.get('coverage')
    shown = Table(title=f'PredictCalculation<{node.pk}> -> ArrayData<{predictions.pk}> (eV)')
    columns = ['row', 'frame', 'level', 'energy', 'spread', f'± ({coverage:.0%})' if coverage else '± interval']
    if any('max_force_spread' in row for row in table):
        columns.append('max force spread / eV/Å')
    for column in columns:
        shown.add_column(column, justify='right')
    for row in table:
        cells = [
            str(row['index']),
            '' if row.get('frame_index') is None else str(row['frame_index']),
            row.get('level', ''),
            f'{row["energy"]:.5f}',
            f'{row["energy_spread"]:.4f}',
            '' if row['energy_interval'] is None else f'{row["energy_interval"]:.4f}',
        ]
        if 'max_force_spread' in row:
            cells.append(f'{row["max_force_spread"]:.4f}')
        shown.add_row(*cells)
    console.print(shown)


def export_predictions(filename, predictions, inputs: dict, table: list[dict], model) -> None:
    """Write each predicted structure with its predicted energy and forces (ASE single-point results) to extxyz."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    if 'dataset' in inputs:
        geometries = [(frame.numbers, frame.positions) for frame in inputs['dataset'].frames()]
    else:
        geometries = [
            (s.get_ase().get_atomic_numbers(), s.get_ase().get_positions())
            for _, s in sorted(inputs['structures'].items())
        ]
    arrays = set(predictions.get_arraynames())
    forces = predictions.get_array('forces') if 'forces' in arrays else None
    offsets = predictions.get_array('offsets') if 'offsets' in arrays else None
    images = []
    for row, (numbers, positions) in zip(table, geometries):
        atoms = Atoms(numbers=numbers, positions=positions)
        index = row['index']
        row_forces = None if forces is None else forces[offsets[index] : offsets[index + 1]]
        atoms.calc = SinglePointCalculator(atoms, energy=row['energy'], forces=row_forces)
        info = {key: value for key, value in row.items() if key not in ('energy', 'index') and value is not None}
        atoms.info.update({**info, 'model_uuid': model.uuid, 'prediction_uuid': predictions.uuid, 'row': index})
        images.append(atoms)
    write(filename, images, format='extxyz')
