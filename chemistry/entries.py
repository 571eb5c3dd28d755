"""The per-entry checks of ``mlqm.build`` that need no 3D embedding: one library record in, one prepared entry out.

A SMILES entry is parsed here once; its charge and multiplicity come from the SMILES (formal charges, radical
electrons) unless the record says otherwise, and are checked by :mod:`.molecule`; a geometry entry is checked for
sanity by :mod:`.geometry`. The basis coverage check is :mod:`.basis`'s.
"""

from __future__ import annotations

import dataclasses
import typing as t

import numpy as np

from .basis import coverage_message, missing_elements
from .geometry import check_coordinates, count_fragments, perceive_identity
from .molecule import Rejection, atomic_number, check_charge_multiplicity, resolve_charge_multiplicity
from .smiles import smiles_charge_multiplicity, with_hydrogens

__all__ = ('Prepared', 'check_basis', 'prepare_geometry', 'prepare_smiles', 'record_symbols')

# Where fragments can be allowed: the mlqm.build parameter, and `mlqm build`, the one command with the option.
ALLOW_FRAGMENTS = (
    'build it with fragments allowed (`mlqm build --allow-fragments`; in Python the mlqm.build parameter '
    'allow_fragments: true)'
)


@dataclasses.dataclass
class Prepared:
    """An entry that passed the checks that do not need 3D coordinates from RDKit."""

    symbols: list[str] | None
    positions: np.ndarray | None
    charge: int
    multiplicity: int
    smiles: str | None
    canonical_smiles: str | None
    inchikey: str | None


def check_basis(symbols: list[str], basis: str) -> None:
    """Reject an entry with elements that ``basis`` has no functions for."""
    missing = missing_elements(basis, symbols)
    if missing:
        raise Rejection('unsupported_element', coverage_message(basis, missing) + ', or remove the entry')


def record_symbols(record: t.Any) -> list[str] | None:
    """The atoms (hydrogens included) of a library record, for a cost estimate before anything is built; ``None``
    for a record the build will reject anyway (it says why)."""
    if not isinstance(record, dict):
        return None
    if record.get('kind') == 'geometry':
        return list(record.get('symbols') or []) or None
    try:
        _, mol_h = with_hydrogens(record.get('smiles'))
    except Rejection:
        return None
    return [atom.GetSymbol() for atom in mol_h.GetAtoms()]


def prepare_smiles(record: dict, *, basis: str, allow_fragments: bool) -> tuple[Prepared, object]:
    """Checks for a SMILES entry before embedding; return the prepared entry and the RDKit molecule with hydrogens."""
    from rdkit import Chem

    mol, mol_h = with_hydrogens(record['smiles'])
    symbols = [atom.GetSymbol() for atom in mol_h.GetAtoms()]
    check_basis(symbols, basis)
    charge, multiplicity = smiles_charge_multiplicity(mol)
    given_charge = record.get('charge')
    if given_charge is not None and given_charge != charge:
        raise Rejection(
            'charge_mismatch',
            f'charge {given_charge} was given but the SMILES has a total formal charge of {charge}: '
            f'write the charges into the SMILES (e.g. [NH4+]) or correct the charge',
        )
    if record.get('multiplicity') is not None:
        multiplicity = record['multiplicity']  # e.g. singlet carbene or triplet O2 written as O=O
    check_charge_multiplicity(symbols, charge, multiplicity)
    if not allow_fragments and len(Chem.GetMolFrags(mol)) > 1:
        raise Rejection(
            'disconnected_fragments',
            f'SMILES {record["smiles"]!r} has {len(Chem.GetMolFrags(mol))} disconnected fragments: '
            f'split it into separate entries, or {ALLOW_FRAGMENTS}',
        )
    prepared = Prepared(
        symbols=symbols,
        positions=None,
        charge=charge,
        multiplicity=multiplicity,
        smiles=record['smiles'],
        canonical_smiles=Chem.MolToSmiles(mol),
        inchikey=Chem.MolToInchiKey(mol) or None,
    )
    return prepared, mol_h


def prepare_geometry(record: dict, *, basis: str, allow_fragments: bool, min_distance: float) -> Prepared:
    """Checks for an entry that comes with a geometry (xyz, extxyz, ASE db, pymatgen, G2)."""
    symbols = record.get('symbols')
    if not isinstance(symbols, list) or not symbols:
        raise Rejection('invalid_record', 'a geometry entry needs a non-empty list of element symbols')
    numbers = [atomic_number(s) for s in symbols]
    check_basis(symbols, basis)
    charge, multiplicity = resolve_charge_multiplicity(symbols, record.get('charge'), record.get('multiplicity'))
    positions = check_coordinates(symbols, record.get('positions'), min_distance=min_distance)
    fragments = count_fragments(symbols, positions)
    if not allow_fragments and fragments > 1:
        raise Rejection(
            'disconnected_fragments',
            f'the geometry has {fragments} fragments that are not bonded by covalent radii: '
            f'split it into separate entries, or {ALLOW_FRAGMENTS}',
        )
    canonical, inchikey = perceive_identity(numbers, positions, charge)
    return Prepared(
        symbols=list(symbols),
        positions=positions,
        charge=charge,
        multiplicity=multiplicity,
        smiles=record.get('smiles'),
        canonical_smiles=canonical,
        inchikey=inchikey,
    )
