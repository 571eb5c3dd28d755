"""Basis sets from PySCF's library: which names exist, which elements each covers, how many functions an atom gets.

Only names from PySCF's library (aliases and Pople names) are accepted: a file name or inline basis text would make
PySCF read a file on the compute node. Coverage is looked up per element and cached, since a library of thousands of
molecules asks the same few questions again and again.
"""

from __future__ import annotations

import functools
import re
import typing as t

__all__ = (
    'BASIS_PATTERN',
    'BasisError',
    'basis_functions_of_element',
    'basis_supports',
    'check_basis_name',
    'covering_bases',
    'missing_elements',
)

BASIS_PATTERN = re.compile(r'[A-Za-z0-9][A-Za-z0-9+*(),._\-]{0,63}')
#: Bases suggested, in this order, when the chosen one lacks an element.
SUGGESTED_BASES = ('def2-svp', 'def2-tzvp', 'cc-pvdz', '6-31g*', 'sto-3g')


class BasisError(ValueError):
    """A basis name PySCF does not have, or a basis without functions for an element; the message says the fix."""


def check_basis_name(basis: t.Any) -> str:
    """Return ``basis`` if it names a basis of PySCF's library; raise :class:`BasisError` otherwise."""
    if not isinstance(basis, str):
        raise BasisError(
            f'`basis` must be a basis set name such as "sto-3g" or "def2-svp", got {basis!r} ({type(basis).__name__})'
        )
    if not BASIS_PATTERN.fullmatch(basis):
        shown = repr(basis) if len(basis) <= 80 else repr(basis[:77] + '...')
        raise BasisError(
            f"`basis` {shown} is not a basis set name: use a name from PySCF's basis library (letters, "
            'digits and + * ( ) , . _ -), not a path, a file or inline basis text'
        )
    if not _in_library(basis):
        raise BasisError(
            f"`basis` {basis!r} is not in PySCF's basis library; use e.g. sto-3g, 6-31g*, cc-pvdz, def2-svp"
        )
    return basis


@functools.lru_cache(maxsize=256)
def _in_library(basis: str) -> bool:
    from pyscf.gto import basis as pyscf_basis

    name = pyscf_basis._format_basis_name(basis)
    return name in pyscf_basis.ALIAS or bool(pyscf_basis._is_pople_basis(name))


@functools.lru_cache(maxsize=4096)
def basis_supports(basis: str, element: str) -> bool:
    """Whether PySCF's basis ``basis`` has functions for ``element``."""
    from pyscf.gto import basis as pyscf_basis

    try:
        return bool(pyscf_basis.load(basis, element))
    except Exception:  # noqa: BLE001  PySCF raises BasisNotFoundError, KeyError or RuntimeError by basis family
        return False


def missing_elements(basis: str, elements: t.Iterable[str]) -> list[str]:
    """The elements of ``elements`` (sorted) that ``basis`` has no functions for."""
    return sorted({element for element in elements if not basis_supports(basis, element)})


def covering_bases(elements: t.Iterable[str]) -> list[str]:
    """The bases of :data:`SUGGESTED_BASES` that cover every one of ``elements``."""
    elements = set(elements)
    return [basis for basis in SUGGESTED_BASES if not missing_elements(basis, elements)]


def coverage_message(basis: str, missing: t.Sequence[str]) -> str:
    """What to tell a user whose basis lacks ``missing``: the elements, and a basis that does cover them."""
    noun = 'element' if len(missing) == 1 else 'elements'
    covering = covering_bases(missing)
    hint = f'e.g. {covering[0]}' if covering else 'none of def2-svp, cc-pvdz, 6-31g*, sto-3g does'
    return (
        f'basis {basis!r} has no functions for {noun} {", ".join(missing)}: choose a basis that covers '
        f'{", ".join(missing)} ({hint})'
    )


@functools.lru_cache(maxsize=4096)
def basis_functions_of_element(basis: str, element: str) -> int:
    """Number of spherical contracted basis functions of one atom of ``element`` in ``basis``."""
    from pyscf.gto import basis as pyscf_basis

    count = 0
    for shell in pyscf_basis.load(basis, element):
        angular = shell[0]
        # A shell is [l, (kappa,)?, [exp, c1, c2, ...], ...]; the number of contractions is the row length minus one.
        rows = [row for row in shell[1:] if isinstance(row, (list, tuple))]
        contractions = len(rows[0]) - 1 if rows else 1
        count += (2 * angular + 1) * contractions
    return count
