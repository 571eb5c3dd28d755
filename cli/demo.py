"""``mlqm demo``: a real reference computation of a few G2 molecules on the embedded default, with a table."""
from __future__ import annotations

import time

import click

from . import main

DEFAULT_MOLECULES = ('H2O', 'NH3', 'CH4', 'HF', 'CO', 'N2', 'C2H2', 'OH', 'CH3')


def g2_structure(name: str):
    """An unstored ``StructureData`` of the G2 molecule ``name`` with ``charge``/``multiplicity`` attributes.

    The multiplicity comes from the initial magnetic moments that ``ase.collections.g2`` gives open-shell molecules.
    """
    from aiida import orm
    from ase.collections import g2

    if name not in g2.names:
        raise click.BadParameter(f'{name!r} is not in the G2 set; names look like H2O, CH3, C2H2 (see ase.collections.g2)')
    atoms = g2[name]
    unpaired = int(round(abs(sum(atoms.get_initial_magnetic_moments()))))
    structure = orm.StructureData(ase=atoms)
    structure.base.attributes.set('charge', 0)
    structure.base.attributes.set('multiplicity', unpaired + 1)
    structure.base.attributes.set('source', f'g2:{name}')
    structure.label = name
    return structure


def parse_level(level: str) -> dict:
    """``'ccsd(t)/cc-pvdz'`` or ``'b3lyp/6-31g*'`` -> mlqm.pyscf parameters (a functional name implies DFT)."""
    method, sep, basis = level.partition('/')
    if not sep or not method or not basis:
        raise click.BadParameter(f'{level!r} is not METHOD/BASIS, e.g. ccsd(t)/cc-pvdz or b3lyp/6-31g*')
    method = method.lower()
    known = {'hf', 'rhf', 'uhf', 'rohf', 'mp2', 'ccsd', 'ccsd(t)'}
    if method in known:
        return {'method': method, 'basis': basis}
    return {'method': 'dft', 'xc': method, 'basis': basis}


@main.command('demo')
@click.option('--profile', 'profile_name', default=None, help='Profile to use (default: the embedded `mlqm` profile).')
@click.option(
    '--molecules', default=','.join(DEFAULT_MOLECULES), show_default=True, help='Comma-separated G2 names.'
)
@click.option('--level', default='ccsd(t)/cc-pvdz', show_default=True, help='METHOD/BASIS of the reference.')
@click.option('--forces/--no-forces', default=False, show_default=True, help='Also compute analytic forces.')
def cmd_demo(profile_name, molecules, level, forces):
    """Build a few G2 molecules, label them with PySCF through ReferenceWorkChain and print what was computed.

    Runs on the embedded default (SQLite storage, no broker, jobs on this machine) unless --profile names another.
    """
    from rich.console import Console
    from rich.table import Table

    from ..units import HARTREE_TO_EV
    from .setup import ensure_localhost_computer, ensure_python_code, setup_embedded

    import sys

    # Rich falls back to 80 columns when the output is not a terminal (CI logs, pipes); the table needs more.
    console = Console(width=None if sys.stdout.isatty() else 120)
    if profile_name:
        from aiida import load_profile

        load_profile(profile_name, allow_switch=True)
        code = ensure_python_code(ensure_localhost_computer())
    else:
        _, _, code = setup_embedded()

    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    from ..provenance.readers import LibraryError, read_g2
    from ..workflows.build import BuildWorkChain

    try:
        records = read_g2(molecules)
    except LibraryError as exception:
        raise click.BadParameter(str(exception), param_hint='--molecules') from exception
    parameters = {**parse_level(level), 'forces': forces}
    if parameters['method'] in {'ccsd', 'ccsd(t)'}:
        parameters['diagnostics'] = True
    # Check the level of theory before anything is stored: a typo must not leave a build behind.
    from ..calcjobs.parameters import ParameterError, validate_parameters

    try:
        validate_parameters(parameters)
    except ParameterError as exception:
        raise click.BadParameter(str(exception), param_hint='--level') from exception

    # 1. Build: G2 geometries -> validated StructureData (geometry kept, charge and multiplicity attached).
    console.print(f'Building {len(records)} G2 molecules with mlqm.build ...')
    builder = BuildWorkChain.get_builder_from_protocol(records, 'fast', overrides={'basis': parameters['basis']})
    _, build = run_get_node(builder)
    built = BuildWorkChain.built_structures(build)
    if 'rejected' in build.outputs:
        for entry in build.outputs.rejected.get_dict().get('entries', []):
            console.print(f'[yellow]rejected {entry["id"]} ({entry["kind"]}): {entry["reason"]}')
    if not built:
        raise click.ClickException(f'no structure could be built (BuildWorkChain<{build.pk}>: {build.exit_message})')
    structures = {f'mol_{index:02d}': structure for index, (_, structure) in enumerate(sorted(built.items()))}

    # 2. Reference: PySCF at the requested level, batched, with retries and a DatasetData at the end.
    console.print(f'Labelling {len(structures)} molecules at {level} with PySCF on {code.computer.label} ...')
    start = time.perf_counter()
    results, node = run_get_node(
        WorkflowFactory('mlqm.reference'),
        structures=structures,
        parameters=orm.Dict(parameters),
        code=code,
    )
    elapsed = time.perf_counter() - start

    table = Table(title=f'{level} reference energies (ReferenceWorkChain<{node.pk}>, {elapsed:.1f} s)')
    columns = ['molecule', 'mult.', 'E total / Ha', 'E corr / Ha', 'gap / eV', 'T1', 'D1']
    columns += ['max |F| / eV/Å'] if forces else []
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
        if key not in labelled:
            reason = failed.get(key, {}).get('message', 'not labelled')
            blanks = [''] * (len(columns) - 2)
            table.add_row(_name(structure), str(structure.base.attributes.get('multiplicity')), f'[red]{reason}', *blanks)
            continue
        values = labelled[key]['parameters'].get_dict()
        scf = values.get('scf_energy')
        correlation = values['total_energy'] - scf if scf is not None and scf != values['total_energy'] else None
        row = [
            _name(structure),
            str(values.get('multiplicity')),
            f'{values["total_energy"] / HARTREE_TO_EV:.8f}',
            _fmt(None if correlation is None else correlation / HARTREE_TO_EV, '.8f'),
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
    status = node.exit_status
    if status not in (0, None):
        console.print(f'[yellow]ReferenceWorkChain finished with exit status {status}: {node.exit_message}')
    if dataset is None:
        raise SystemExit(1)


def _name(structure) -> str:
    return structure.base.attributes.get('name', None) or structure.label or structure.get_formula()


def _fmt(value, spec: str) -> str:
    return '' if value is None else format(value, spec)
