"""``mlqm build``: read a molecule library, run ``mlqm.build`` and print what was built and what was rejected (and why)."""

from __future__ import annotations

import click

from . import main


@main.command('build')
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
@click.option(
    '--conformers', type=click.IntRange(min=1), help='Conformers to embed per SMILES (lowest energy is kept).'
)
@click.option('--all-conformers', is_flag=True, help='Keep every conformer, not only the lowest in energy.')
@click.option(
    '--configurations', type=click.IntRange(min=0), help='Distorted geometries per structure (for potentials).'
)
@click.option('--basis', help='Basis set whose elements every entry must be covered by (default: protocol, def2-svp).')
@click.option('--allow-fragments', is_flag=True, help='Accept entries with several disconnected fragments.')
@click.option(
    '--protocol', type=click.Choice(['fast', 'balanced', 'stringent']), help='Build protocol (default: balanced).'
)
@click.option('--profile', 'profile_name', help='AiiDA profile to store into (default: the embedded `mlqm` profile).')
def cmd_build(
    smiles_file,
    xyz_dir,
    extxyz,
    ase_db,
    g2_names,
    conformers,
    all_conformers,
    configurations,
    basis,
    allow_fragments,
    protocol,
    profile_name,
):
    """Build validated 3D structures from SMILES, xyz, extxyz, an ASE database or G2 names."""
    from aiida_mlqm.chemistry.readers import LibraryError, read_library

    try:
        records = read_library(smiles=smiles_file, xyz_dir=xyz_dir, extxyz=extxyz, ase_db=ase_db, g2=g2_names)
    except LibraryError as exception:
        raise click.UsageError(str(exception)) from exception

    overrides: dict = {}
    if conformers:
        overrides['num_conformers'] = conformers
    if all_conformers:
        overrides['conformers'] = 'all'
    if basis:
        overrides['basis'] = basis
    if allow_fragments:
        overrides['allow_fragments'] = True
    if configurations is not None:
        overrides['configurations'] = {'number': configurations}

    _load_profile(profile_name)
    from aiida.engine import run_get_node
    from aiida_mlqm.workflows.build import BuildWorkChain

    try:
        builder = BuildWorkChain.get_builder_from_protocol(
            records, protocol=protocol, overrides={'parameters': overrides}
        )
    except ValueError as exception:
        raise click.UsageError(str(exception)) from exception
    results, node = run_get_node(builder)
    print_results(node, results)
    if node.exit_status and 700 <= node.exit_status < 800:  # finished, with a warning: the structures are usable
        click.echo(f'Warning: mlqm.build<{node.pk}> exit status {node.exit_status}: {node.exit_message}', err=True)
    elif not node.is_finished_ok:
        raise click.ClickException(
            f'mlqm.build<{node.pk}> finished with exit status {node.exit_status}: {node.exit_message}'
        )


def _load_profile(name: str | None):
    if name:
        from aiida import load_profile

        return load_profile(name, allow_switch=True)
    from .setup import ensure_embedded_profile

    return ensure_embedded_profile()


def print_results(node, results: dict) -> None:
    """Rich tables of the built structures and of the rejected entries with their reasons."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped into a file or a log: wide enough that ids and reasons stay on one line
        console = Console(width=220)
    from aiida_mlqm.workflows.build import BuildWorkChain

    structures = BuildWorkChain.built_structures(node)
    built = Table(title=f'Built structures (mlqm.build<{node.pk}>)')
    for column in (
        'key',
        'formula',
        'charge',
        'mult.',
        'point group',
        'force field',
        'canonical SMILES',
        'source',
        'pk',
    ):
        built.add_column(column, overflow='fold')
    for key, structure in sorted(structures.items()):
        attributes = structure.base.attributes.all
        built.add_row(
            *map(escape, _built_row(key, structure, attributes)),
        )
    console.print(built)
    renamed = BuildWorkChain.renamed_ids(node)
    if renamed:
        table = Table(title=f'Renamed ids ({len(renamed)}): link labels are unique identifiers')
        for column in ('id', 'key', 'why'):
            table.add_column(column, overflow='fold')
        for entry in renamed:
            table.add_row(*map(escape, (entry['id'], entry['key'], entry['why'])))
        console.print(table)

    rejected = results['rejected'].get_dict() if 'rejected' in results else {'entries': [], 'count': 0, 'total': 0}
    if rejected['entries']:
        table = Table(title=f'Rejected entries ({rejected["count"]} of {rejected["total"]})')
        for column in ('id', 'kind', 'reason', 'source'):
            table.add_column(column, overflow='fold')
        for entry in rejected['entries']:
            table.add_row(*map(escape, (entry['id'], entry['kind'], entry['reason'], str(entry.get('source') or ''))))
        console.print(table)
    configurations = BuildWorkChain.sampled_configurations(node)
    console.print(
        f'{len(structures)} structures built, {rejected["count"]} entries rejected'
        + (f', {len(configurations)} configurations sampled' if configurations else '')
    )


def _built_row(key: str, structure, attributes: dict) -> list[str]:
    return [
        key,
        structure.get_formula(mode='hill'),
        str(attributes.get('charge', '')),
        str(attributes.get('multiplicity', '')),
        str(attributes.get('point_group') or ''),
        str(attributes.get('force_field') or ''),
        str(attributes.get('canonical_smiles') or ''),
        str(attributes.get('source') or ''),
        str(structure.pk),
    ]
