"""``mlqm demo``: a real reference computation of a few G2 molecules on the embedded default, with a table."""
from __future__ import annotations

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


@main.command('demo')
@click.option('--profile', 'profile_name', default=None, help='Profile to use (default: the embedded `mlqm` profile).')
@click.option(
    '--molecules', default=','.join(DEFAULT_MOLECULES), show_default=True, help='Comma-separated G2 names.'
)
@click.option('--level', default='ccsd(t)/cc-pvdz', show_default=True, help='METHOD/BASIS of the reference.')
@click.option('--forces/--no-forces', default=False, show_default=True, help='Also compute analytic forces.')
@click.option('--computer', help='Run the jobs there, with its mlqm-python code (default: localhost).')
@click.option('--code', 'code_label', help='PySCF code to run the jobs with, e.g. mlqm-python@localhost-slurm.')
@click.option('--submit', is_flag=True, help='Hand the chain to the daemon, print its pk and return (needs a broker).')
def cmd_demo(profile_name, molecules, level, forces, computer, code_label, submit):
    """Build a few G2 molecules, label them with PySCF through ReferenceWorkChain and print what was computed.

    Runs on the embedded default (SQLite storage, no broker, jobs on this machine) unless --profile names another.
    The same as ``mlqm reference --g2 ...`` with a default set of small molecules, one of them open-shell.
    """
    from ..provenance.readers import LibraryError, read_g2
    from .reference import build_and_label, interrupt_exit, load_code, make_console, reference_parameters

    reference_parameters(level, forces)  # a typo in the level fails before anything is stored
    try:
        records = read_g2(molecules)
    except LibraryError as exception:
        raise click.BadParameter(str(exception), param_hint='--molecules') from exception
    code = load_code(profile_name, computer=computer, code=code_label)
    with interrupt_exit():
        build_and_label(records, level, forces, code, make_console(), submit=submit)
