"""The plain-JSON form of a ``StructureData`` that the PySCF runner reads, with its charge and multiplicity.

The runner needs only symbols, positions (Å), charge and multiplicity; everything else about the structure stays in
the provenance graph. The rules for charge and multiplicity are :mod:`aiida_mlqm.chemistry.molecule`'s.
"""

from __future__ import annotations

import math
import typing as t

from ..chemistry.molecule import Rejection, check_charge_multiplicity, default_multiplicity

if t.TYPE_CHECKING:
    from aiida import orm

__all__ = ('get_charge_multiplicity', 'structure_symbols', 'structure_to_runner_entry')


def structure_symbols(structure: orm.StructureData) -> list[str]:
    """The element of every site, in site order; alloys and vacancies are rejected."""
    symbols = []
    for site in structure.sites:
        kind = structure.get_kind(site.kind_name)
        if len(kind.symbols) != 1 or kind.has_vacancies:
            raise Rejection(
                'invalid_record',
                f'site of kind {kind.name!r} is an alloy or has vacancies: a molecule needs one element per site',
            )
        symbols.append(kind.symbols[0])
    return symbols


def _attribute(structure: orm.StructureData, name: str) -> t.Any:
    return structure.base.attributes.get(name, None)


def get_charge_multiplicity(structure: orm.StructureData) -> tuple[int, int]:
    """Return ``(charge, multiplicity)`` of a molecule.

    Taken from the structure's ``charge`` and ``multiplicity`` attributes where set; otherwise the charge is 0 and the
    multiplicity the lowest one the electron count allows (1 for even, 2 for odd).
    """
    charge = _attribute(structure, 'charge')
    charge = 0 if charge is None else charge
    multiplicity = _attribute(structure, 'multiplicity')
    if multiplicity is None:
        multiplicity = default_multiplicity(structure_symbols(structure), charge)
    return charge, multiplicity


def structure_to_runner_entry(
    structure: orm.StructureData, charge: int | None = None, multiplicity: int | None = None
) -> dict[str, t.Any]:
    """Return ``{'symbols', 'positions' (Å), 'charge', 'multiplicity'}`` for the runner's ``input.json``.

    :param charge: overrides the structure's charge (e.g. from the parameters or a batch's ``molecular_states``).
    :param multiplicity: overrides the structure's multiplicity; when only ``charge`` is given, the lowest
        multiplicity compatible with that charge is used unless the structure carries its own.
    :raises Rejection: when the electron count and the multiplicity do not fit or a position is not finite.
    """
    symbols = structure_symbols(structure)
    if not symbols:
        raise Rejection('invalid_record', 'the structure has no atoms')
    if charge is None:
        charge = _attribute(structure, 'charge')
        charge = 0 if charge is None else charge
    if multiplicity is None:
        multiplicity = _attribute(structure, 'multiplicity')
    if multiplicity is None:
        multiplicity = default_multiplicity(symbols, charge)
    check_charge_multiplicity(symbols, charge, multiplicity)
    positions = [[float(x) for x in site.position] for site in structure.sites]
    if not all(math.isfinite(x) for row in positions for x in row):
        raise Rejection('non_finite_coordinates', 'the structure has a position that is not a finite number')
    return {'symbols': symbols, 'positions': positions, 'charge': charge, 'multiplicity': multiplicity}
