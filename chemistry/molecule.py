"""Electrons, charge and multiplicity: the one owner of these rules for the builder, the jobs and the chains.

Every check raises :class:`Rejection` with a ``kind`` (a stable word from :data:`REJECTION_KINDS`, used in the
``rejected`` output of ``mlqm.build`` and in tests) and a message that names the problem and the fix.
"""

from __future__ import annotations

import typing as t

__all__ = (
    'REJECTION_KINDS',
    'Rejection',
    'atomic_number',
    'check_charge_multiplicity',
    'count_electrons',
    'default_multiplicity',
    'resolve_charge_multiplicity',
)

#: Rejection kinds, in the order the checks of ``mlqm.build`` run.
REJECTION_KINDS = (
    'invalid_record',
    'invalid_smiles',
    'unsupported_element',
    'charge_mismatch',
    'impossible_multiplicity',
    'non_finite_coordinates',
    'atoms_too_close',
    'disconnected_fragments',
    'duplicate',
    'embedding_failed',
)


class Rejection(ValueError):
    """A molecule (or library entry) that cannot be computed as given; ``kind`` is one of :data:`REJECTION_KINDS`."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def atomic_number(symbol: str) -> int:
    """Atomic number of a chemical symbol; ``X`` (ASE's dummy) and unknown symbols are rejected."""
    from ase.data import atomic_numbers

    if not isinstance(symbol, str) or symbol not in atomic_numbers or atomic_numbers[symbol] == 0:
        raise Rejection(
            'invalid_record', f'unknown element symbol {symbol!r}: use a chemical symbol such as "C" or "Cl"'
        )
    return atomic_numbers[symbol]


def count_electrons(symbols: t.Iterable[str], charge: int) -> int:
    """Electrons of the neutral atoms minus ``charge`` (an integer: a float or a string is rejected, not rounded)."""
    return sum(atomic_number(symbol) for symbol in symbols) - _check_integer('charge', charge)


def default_multiplicity(symbols: t.Iterable[str], charge: int) -> int:
    """The lowest multiplicity the electron count allows: 1 for an even count, 2 for an odd one."""
    return 1 + count_electrons(symbols, charge) % 2


def _check_integer(name: str, value: t.Any) -> int:
    # bool is an int subclass and a float such as 1.9 must not silently become 1: both are mistakes, not numbers.
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejection(
            'invalid_record', f'{name} must be an integer, got {value!r} ({type(value).__name__}): write e.g. {name}=1'
        )
    return value


def check_charge_multiplicity(symbols: t.Sequence[str], charge: int, multiplicity: int) -> None:
    """Reject a charge/multiplicity pair that no electron configuration of these atoms can have.

    A molecule needs at least one electron; the unpaired electrons (multiplicity - 1) must have the parity of the
    electron count and cannot outnumber it.
    """
    _check_integer('charge', charge)
    _check_integer('multiplicity', multiplicity)
    if multiplicity < 1:
        raise Rejection('impossible_multiplicity', f'multiplicity must be >= 1, got {multiplicity}: use 2S+1 >= 1')
    nelectron = count_electrons(symbols, charge)
    if nelectron < 1:
        raise Rejection('impossible_multiplicity', f'charge {charge} leaves {nelectron} electrons: lower the charge')
    unpaired = multiplicity - 1
    if unpaired > nelectron or (nelectron - unpaired) % 2:
        parity = 'odd' if nelectron % 2 else 'even'
        allowed = '2, 4, ...' if nelectron % 2 else '1, 3, ...'
        raise Rejection(
            'impossible_multiplicity',
            f'multiplicity {multiplicity} is impossible with {nelectron} electrons (charge {charge}): an {parity} '
            f'electron count needs multiplicity {allowed} (at most {nelectron + 1}); fix the charge or the multiplicity',
        )


def resolve_charge_multiplicity(
    symbols: t.Sequence[str], charge: int | None, multiplicity: int | None
) -> tuple[int, int]:
    """Return a checked ``(charge, multiplicity)``: charge 0 and the lowest multiplicity where not given.

    :raises Rejection: when the pair is impossible for these atoms.
    """
    charge = 0 if charge is None else _check_integer('charge', charge)
    if multiplicity is None:
        multiplicity = default_multiplicity(symbols, charge)
    check_charge_multiplicity(symbols, charge, multiplicity)
    return charge, multiplicity
