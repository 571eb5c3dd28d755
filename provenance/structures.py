"""``StructureData`` to and from pymatgen, ASE and the G2 set, with charge, multiplicity and identity kept."""

from __future__ import annotations


def structure_to_pymatgen(structure):
    """A pymatgen ``Molecule`` from a ``StructureData`` made by ``mlqm.build`` (charge and multiplicity kept)."""
    from pymatgen.core import Molecule

    attributes = structure.base.attributes
    symbols = [site.kind_name and structure.get_kind(site.kind_name).symbol for site in structure.sites]
    positions = [site.position for site in structure.sites]
    return Molecule(
        symbols,
        positions,
        charge=int(attributes.get('charge', 0)),
        spin_multiplicity=attributes.get('multiplicity'),
    )


def structure_to_atoms(structure):
    """ASE ``Atoms`` without cell or periodicity, with ``charge``/``multiplicity``/``smiles``/``name`` in ``info``."""
    atoms = structure.get_ase()
    atoms.set_pbc(False)
    atoms.set_cell(None)
    for key in ('charge', 'multiplicity', 'smiles', 'canonical_smiles', 'inchikey', 'name', 'source'):
        value = structure.base.attributes.get(key, None)
        if value is not None:
            atoms.info[key] = value
    return atoms


def g2_structure(name: str):
    """An unstored ``StructureData`` of the G2 molecule ``name`` with ``charge``/``multiplicity``/``source``
    attributes and the name as label, as ``mlqm.build`` would give it (without its force-field step).

    The multiplicity comes from the initial magnetic moments that ``ase.collections.g2`` gives open-shell molecules.
    """
    from aiida import orm
    from ase.collections import g2

    if name not in g2.names:
        raise ValueError(f'{name!r} is not in the G2 set; names look like H2O, CH3, C2H2 (see ase.collections.g2)')
    atoms = g2[name]
    unpaired = int(round(abs(sum(atoms.get_initial_magnetic_moments()))))
    structure = orm.StructureData(ase=atoms)
    structure.base.attributes.set('charge', 0)
    structure.base.attributes.set('multiplicity', unpaired + 1)
    structure.base.attributes.set('source', f'g2:{name}')
    structure.label = name
    return structure
