"""Charge, multiplicity and the plain-JSON form of a ``StructureData`` that the PySCF runner reads.

The runner needs only symbols, positions (Å), charge and multiplicity; everything else about the structure stays in
the provenance graph.
"""

from __future__ import annotations

import math
import typing as t

if t.TYPE_CHECKING:
    from aiida import orm

__all__ = ('MoleculeError', 'count_electrons', 'get_charge_multiplicity', 'structure_to_runner_entry')


class MoleculeError(ValueError):
    """A structure whose charge, multiplicity or geometry cannot describe a molecule."""


def _atomic_numbers(symbols: t.Sequence[str]) -> list[int]:
    from ase.data import atomic_numbers

    numbers = []
    for symbol in symbols:
        if symbol not in atomic_numbers or atomic_numbers[symbol] == 0:
            raise MoleculeError(f'unknown element symbol {symbol!r}: use a chemical symbol such as "C" or "Cl"')
        numbers.append(atomic_numbers[symbol])
    return numbers


def _symbols(structure: orm.StructureData) -> list[str]:
    symbols = []
    for site in structure.sites:
        kind = structure.get_kind(site.kind_name)
        if len(kind.symbols) != 1 or kind.has_vacancies:
            raise MoleculeError(
                f'site of kind {kind.name!r} is an alloy or has vacancies: a molecule needs one element per site'
            )
        symbols.append(kind.symbols[0])
    return symbols


def count_electrons(symbols: t.Sequence[str], charge: int) -> int:
    """Return the number of electrons of the neutral atoms minus ``charge``."""
    return sum(_atomic_numbers(symbols)) - int(charge)


def check_charge_multiplicity(symbols: t.Sequence[str], charge: int, multiplicity: int) -> None:
    """Raise :class:`MoleculeError` if ``multiplicity`` cannot belong to a molecule with these atoms and ``charge``.

    The number of unpaired electrons (multiplicity - 1) must have the parity of the electron count and cannot exceed it.
    """
    for name, value in (('charge', charge), ('multiplicity', multiplicity)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise MoleculeError(f'{name} must be an integer, got {value!r} ({type(value).__name__})')
    if multiplicity < 1:
        raise MoleculeError(f'multiplicity must be >= 1, got {multiplicity}')
    nelectron = count_electrons(symbols, charge)
    if nelectron < 1:
        raise MoleculeError(f'charge {charge} leaves {nelectron} electrons: lower the charge')
    unpaired = multiplicity - 1
    if unpaired > nelectron or (nelectron - unpaired) % 2:
        parity = 'odd' if nelectron % 2 else 'even'
        allowed = '2, 4, ...' if nelectron % 2 else '1, 3, ...'
        raise MoleculeError(
            f'multiplicity {multiplicity} is impossible with {nelectron} electrons (charge {charge}): an {parity} '
            f'electron count needs multiplicity {allowed}; fix the charge or the multiplicity'
        )


def get_charge_multiplicity(structure: orm.StructureData) -> tuple[int, int]:
    """Return ``(charge, multiplicity)`` of a molecule.

    Taken from the structure's ``charge`` and ``multiplicity`` attributes where set; otherwise the charge is 0 and the
    multiplicity the lowest one the electron count allows (1 for even, 2 for odd).
    """
    attributes = structure.base.attributes
    charge = attributes.get('charge', None)
    multiplicity = attributes.get('multiplicity', None)
    charge = 0 if charge is None else charge
    if multiplicity is None:
        multiplicity = 1 + count_electrons(_symbols(structure), int(charge)) % 2
    return int(charge), int(multiplicity)


def structure_to_runner_entry(
    structure: orm.StructureData, charge: int | None = None, multiplicity: int | None = None
) -> dict[str, t.Any]:
    """Return ``{'symbols', 'positions' (Å), 'charge', 'multiplicity'}`` for the runner's ``input.json``.

    :param charge: overrides the structure's charge (e.g. from the parameters or a batch's ``molecular_states``).
    :param multiplicity: overrides the structure's multiplicity; when only ``charge`` is given, the lowest
        multiplicity compatible with that charge is used unless the structure carries its own.
    :raises MoleculeError: when the electron count and the multiplicity do not fit or a position is not finite.
    """
    symbols = _symbols(structure)
    if not symbols:
        raise MoleculeError('the structure has no atoms')
    own_charge, own_multiplicity = get_charge_multiplicity(structure)
    charge = own_charge if charge is None else charge
    if multiplicity is None:
        if structure.base.attributes.get('multiplicity', None) is not None:
            multiplicity = own_multiplicity
        else:
            multiplicity = 1 + count_electrons(symbols, int(charge)) % 2
    check_charge_multiplicity(symbols, charge, multiplicity)
    positions = [[float(x) for x in site.position] for site in structure.sites]
    if not all(math.isfinite(x) for row in positions for x in row):
        raise MoleculeError('the structure has a position that is not a finite number')
    return {'symbols': symbols, 'positions': positions, 'charge': int(charge), 'multiplicity': int(multiplicity)}
