"""``mlqm reference``: build a molecule library and label it with PySCF at one level of theory, printing a table.

:func:`build_and_label` is shared with ``mlqm demo``: library records -> ``mlqm.build`` -> ``mlqm.reference`` ->
``DatasetData``, with the level of theory checked before anything is stored.
"""
from __future__ import annotations

import contextlib
import sys
import time

import click

from . import main


def check_cost(records: list[dict], level, max_hours: float | None, max_run_hours: float | None) -> dict:
    """Refuse a library whose estimate at ``level`` is above a ceiling, before anything is stored.

    :returns: the ceilings, as the reference chain's ``max_hours`` inputs (which check them again on the structures).
    :raises click.UsageError: naming the structure or the run, the estimate and the options that raise the ceilings.
    """
    from ..chemistry.entries import record_symbols
    from ..chemistry.level import CostError
    from ..workflows.protocol import default_inputs

    defaults = default_inputs('reference')['max_hours']
    ceilings = {
        'per_structure': defaults['per_structure'] if max_hours is None else max_hours,
        'per_run': defaults['per_run'] if max_run_hours is None else max_run_hours,
    }
    molecules = {}
    for index, record in enumerate(records):
        symbols = record_symbols(record)
        if symbols:
            name = str(record.get('id'))
            molecules[name if name not in molecules else f'{name} (entry {index + 1})'] = symbols
    try:
        level.check_cost(
            molecules,
            max_hours_per_structure=ceilings['per_structure'],
            max_hours_per_run=ceilings['per_run'],
            options=('--max-hours', '--max-run-hours'),
        )
    except CostError as exception:
        raise click.UsageError(str(exception)) from None
    return ceilings


def level_option(level: str, forces: bool):
    """The ``--level`` option as a validated :class:`~aiida_mlqm.chemistry.level.LevelOfTheory`.

    Raises ``click.BadParameter`` naming the problem, before the library is read or anything is stored.
    """
    from ..chemistry.level import LevelOfTheory, ParameterError

    try:
        return LevelOfTheory.from_label(level, forces=forces)
    except ParameterError as exception:
        raise click.BadParameter(str(exception), param_hint='--level') from exception


@contextlib.contextmanager
def interrupt_exit():
    """Turn an interrupted in-process run into a message and the shell's exit code (130 Ctrl-C, 143 SIGTERM)."""
    from ..services.processes import Interrupted

    try:
        yield
    except Interrupted as interrupted:
        click.echo(
            f'interrupted: killed the jobs and marked processes {interrupted.killed} killed', err=True
        )
        raise SystemExit(128 + interrupted.signum) from None


def make_console():
    from rich.console import Console

    # Rich falls back to 80 columns when the output is not a terminal (CI logs, pipes); the table needs more.
    return Console(width=None if sys.stdout.isatty() else 120)


def load_code(profile_name: str | None, *, computer: str | None = None, code: str | None = None):
    """The PySCF code to run on: ``code`` by label, else ``mlqm-python`` on ``computer`` (default ``localhost``).

    Loads ``profile_name`` (default: the embedded profile, made if missing). ``mlqm-python@localhost`` is made when
    missing; a code on another computer must exist (``mlqm setup --slurm`` makes ``mlqm-python@localhost-slurm``).
    """
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    from ..services.profiles import DEFAULT_CODE, DEFAULT_COMPUTER, ensure_localhost_computer, ensure_python_code
    from ..services.profiles import setup_embedded

    if profile_name:
        from aiida import load_profile

        load_profile(profile_name, allow_switch=True)
    else:
        setup_embedded()
    if code:
        try:
            return orm.load_code(code)
        except (NotExistent, MultipleObjectsError) as exception:
            raise click.BadParameter(f'{exception}; `verdi code list -A` lists them', param_hint='--code') from None
    if computer in (None, DEFAULT_COMPUTER):
        return ensure_python_code(ensure_localhost_computer())
    try:
        return orm.load_code(f'{DEFAULT_CODE}@{computer}')
    except (NotExistent, MultipleObjectsError):
        raise click.BadParameter(
            f'no code {DEFAULT_CODE}@{computer}: make it with `mlqm setup --detect --slurm` (for localhost-slurm) or '
            '`verdi code create core.code.installed`, or pass --code',
            param_hint='--computer',
        ) from None


def build_and_label(
    records: list[dict],
    level,
    code,
    console,
    *,
    max_structures: int | None = None,
    submit: bool = False,
    max_hours: dict | None = None,
):
    """Build ``records`` with ``mlqm.build`` (fast protocol), label them with ``mlqm.reference`` and print a table.

    Both run in this process (interrupting it kills their jobs: :func:`..services.processes.run_in_process`), unless
    ``submit``: then the reference chain goes to the daemon and its pk is printed.

    :param level: the validated :class:`~aiida_mlqm.chemistry.level.LevelOfTheory` (from :func:`level_option`).
    Structures keep the link labels the build made from the user's ids (sanitised, unique; the id itself is the
    structure's ``name`` attribute), so the chain's outputs, reports and the table name the user's molecules.

    :returns: the ``ReferenceWorkChain`` node; ``SystemExit(1)`` when nothing could be labelled.
    """
    from aiida import orm
    from aiida.plugins import WorkflowFactory

    from ..services.processes import run_in_process

    from ..workflows.build import BuildWorkChain

    console.print(f'Building {len(records)} molecules with mlqm.build ...')
    builder = BuildWorkChain.get_builder_from_protocol(records, 'fast', overrides={'parameters': {'basis': level.basis}})
    _, build = run_in_process(builder, {})
    built = BuildWorkChain.built_structures(build)
    if 'rejected' in build.outputs:
        for entry in build.outputs.rejected.get_dict().get('entries', []):
            console.print(f'[yellow]rejected {entry["id"]} ({entry["kind"]}): {entry["reason"]}')
    for entry in BuildWorkChain.renamed_ids(build):
        console.print(f'renamed {entry["id"]!r} -> {entry["key"]} ({entry["why"]})')
    if not built:
        raise click.ClickException(f'no structure could be built (BuildWorkChain<{build.pk}>: {build.exit_message})')
    structures = dict(sorted(built.items()))

    console.print(f'Labelling {len(structures)} molecules at {level.label} with PySCF on {code.computer.label} ...')
    inputs = {'structures': structures, 'parameters': orm.Dict(level.as_parameters()), 'code': code}
    if max_hours:
        inputs['max_hours'] = {key: orm.Float(value) for key, value in max_hours.items()}
    if max_structures:
        inputs['batch'] = {'max_structures': orm.Int(max_structures)}
    if submit:
        return submit_chain(WorkflowFactory('mlqm.reference'), inputs, console)
    start = time.perf_counter()
    results, node = run_in_process(WorkflowFactory('mlqm.reference'), inputs)
    print_table(console, level, node, time.perf_counter() - start, structures, results)
    if 'dataset' not in results:
        raise SystemExit(1)
    return node


def submit_chain(process_class, inputs: dict, console):
    """Hand the chain to the daemon and print how to follow it; refuse a profile without a broker."""
    from aiida.engine import submit
    from aiida.manage import get_manager

    profile = get_manager().get_profile()
    if profile.process_control_backend is None:
        raise click.UsageError(
            f'--submit needs a profile with a broker and a daemon; {profile.name} has none. Fix: '
            '`mlqm setup --detect`, `verdi -p mlqm-psql daemon start`, then pass --profile mlqm-psql'
        )
    node = submit(process_class, **inputs)
    console.print(f'submitted {node.process_label}<{node.pk}> to the daemon of {profile.name}')
    follow = f'verdi -p {profile.name} process'
    console.print(f'  {follow} status {node.pk}      {follow} report {node.pk}')
    click.echo(node.pk)
    return node


def print_table(console, level, node, elapsed, structures, results) -> None:
    """One row per structure: energies, correlation energy, gap, T1/D1, largest force, or why it failed.

    Values are shown in the unit they are stored in (``units.ENERGY_UNIT``, converted once from Hartree by the parser).
    """
    from aiida import orm
    from rich.table import Table

    from ..units import ENERGY_UNIT, FORCES_UNIT

    forces = level.forces
    table = Table(title=f'{level.label} reference energies (ReferenceWorkChain<{node.pk}>, {elapsed:.1f} s)')
    columns = ['molecule', 'mult.', f'E total / {ENERGY_UNIT}', f'E corr / {ENERGY_UNIT}', f'gap / {ENERGY_UNIT}']
    columns += ['T1', 'D1'] + ([f'max |F| / {FORCES_UNIT}'] if forces else [])
    for column in [*columns, 'job']:
        table.add_column(column, justify='left' if column == 'molecule' else 'right')

    # Each row of the dataset names its structure and the result node behind it.
    labelled = {}
    dataset = results.get('dataset')
    if dataset is not None:
        by_uuid = {structure.uuid: key for key, structure in structures.items()}
        for frame in dataset.frames():
            labelled[by_uuid[frame.structure_uuid]] = {'parameters': orm.load_node(frame.result_uuid), 'frame': frame}
    failed = results['failed'].get_dict() if 'failed' in results else {}

    for key, structure in structures.items():
        multiplicity = str(structure.base.attributes.get('multiplicity', ''))
        if key not in labelled:
            reason = failed.get(key, {}).get('message', 'not labelled')
            table.add_row(display_name(key, structure), multiplicity, f'[red]{reason}', *[''] * (len(columns) - 2))
            continue
        values = labelled[key]['parameters'].get_dict()
        scf = values.get('scf_energy')
        correlation = values['total_energy'] - scf if scf is not None and scf != values['total_energy'] else None
        row = [
            display_name(key, structure),
            multiplicity,
            f'{values["total_energy"]:.6f}',
            _fmt(correlation, '.6f'),
            _fmt(values.get('homo_lumo_gap'), '.3f'),
            _fmt(values.get('t1_diagnostic'), '.4f'),
            _fmt(values.get('d1_diagnostic'), '.4f'),
        ]
        if forces:
            import numpy as np

            array = labelled[key]['frame'].forces
            row.append('' if array is None else f'{np.abs(array).max():.4f}')
        table.add_row(*row, str(labelled[key]['parameters'].creator.pk))
    console.print(table)
    if dataset is not None:
        console.print(f'DatasetData<{dataset.pk}>: {dataset}')
        console.print('Explore the provenance:')
        console.print(f'  verdi process show {node.pk}      verdi process report {node.pk}')
        console.print(f'  verdi node graph generate {dataset.pk}')
    if node.exit_status not in (0, None):
        console.print(f'[yellow]ReferenceWorkChain finished with exit status {node.exit_status}: {node.exit_message}')


def display_name(key: str, structure) -> str:
    """The user's id of a structure, with the link label it got when that differs (``water -> water_2``)."""
    name = structure.base.attributes.get('name', None) or structure.label or structure.get_formula()
    return name if name == key else f'{name} -> {key}'


def _fmt(value, spec: str) -> str:
    return '' if value is None else format(value, spec)


@main.command('reference')
@click.option(
    '--smiles',
    'smiles_file',
    type=click.Path(exists=True, dir_okay=False),
    help='SMILES file: `SMILES [id] [charge=N] [multiplicity=M]` per line, or CSV smiles,id,charge,multiplicity.',
)
@click.option('--xyz-dir', type=click.Path(exists=True, file_okay=False), help='Folder of .xyz files.')
@click.option('--extxyz', type=click.Path(exists=True, dir_okay=False), help='Extended XYZ file, one entry per frame.')
@click.option('--ase-db', type=click.Path(exists=True, dir_okay=False), help='ASE database, one entry per row.')
@click.option('--g2', 'g2_names', metavar='NAME,NAME|all', help='Molecules of the G2 set by name, or `all`.')
@click.option('--level', required=True, help='METHOD/BASIS, e.g. ccsd(t)/cc-pvdz, b3lyp/6-31g*, hf/sto-3g.')
@click.option('--forces/--no-forces', default=False, show_default=True, help='Also compute analytic forces.')
@click.option('--batch-size', type=click.IntRange(min=1), help='Most molecules in one batch job (default 50).')
@click.option('--export', type=click.Path(dir_okay=False, writable=True), help='Write the dataset to this extxyz file.')
@click.option('--max-hours', type=click.FloatRange(min=0, min_open=True),
              help='Refuse a molecule estimated above this many core-hours [default: reference protocol].')  # fmt: skip
@click.option('--max-run-hours', type=click.FloatRange(min=0, min_open=True),
              help='Refuse the run when its molecules are estimated above this many core-hours in all.')  # fmt: skip
@click.option('--profile', 'profile_name', help='AiiDA profile to use (default: the embedded `mlqm` profile).')
@click.option('--computer', help='Run the jobs there, with its mlqm-python code (default: localhost).')
@click.option('--code', 'code_label', help='PySCF code to run the jobs with, e.g. mlqm-python@localhost-slurm.')
@click.option('--submit', is_flag=True, help='Hand the chain to the daemon, print its pk and return (needs a broker).')
def cmd_reference(
    smiles_file, xyz_dir, extxyz, ase_db, g2_names, level, forces, batch_size, export, max_hours, max_run_hours,
    profile_name, computer, code_label, submit,
):
    """Build a molecule library and compute PySCF references for it at one level of theory."""
    from ..chemistry.readers import LibraryError, read_library

    level = level_option(level, forces)  # a typo in the level fails before the library is read or stored
    try:
        records = read_library(smiles=smiles_file, xyz_dir=xyz_dir, extxyz=extxyz, ase_db=ase_db, g2=g2_names)
    except LibraryError as exception:
        raise click.UsageError(str(exception)) from exception
    if submit and export:
        raise click.UsageError('--export needs the finished dataset: drop --submit, or export later from the pk')
    ceilings = check_cost(records, level, max_hours, max_run_hours)  # before anything is stored
    console = make_console()
    code = load_code(profile_name, computer=computer, code=code_label)
    with interrupt_exit():
        node = build_and_label(
            records, level, code, console, max_structures=batch_size, submit=submit, max_hours=ceilings
        )
    if export:
        node.outputs.dataset.export_extxyz(export)
        console.print(f'wrote {len(node.outputs.dataset)} frames to {export}')
