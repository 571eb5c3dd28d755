"""Cost estimates and packing of structures into batch jobs.

The estimate only has to rank structures and size batches, not predict seconds exactly: the cost of a job grows as
``n_basis ** p`` with ``p`` set by the method (mean-field ~3, MP2 ~5, CCSD ~6, CCSD(T) ~7), scaled by a prefactor that
puts a small molecule at HF/6-31G* near a tenth of a second on one core of this kind of machine.
"""
from __future__ import annotations

import functools
import math
import typing as t

SCALING = {
    'hf': 3.0,
    'rhf': 3.0,
    'uhf': 3.0,
    'rohf': 3.0,
    'dft': 3.0,
    'rks': 3.0,
    'uks': 3.0,
    'mp2': 4.0,
    'ccsd': 5.5,
    'ccsd(t)': 6.0,
}
# Seconds for one unit of (n_basis / 100) ** p: calibrated so that water at HF/6-31G* (19 functions) is ~0.05 s and
# at CCSD(T)/cc-pVDZ (24 functions) well under a second.
PREFACTOR = {'mean_field': 4.0, 'mp2': 8.0, 'ccsd': 60.0, 'ccsd(t)': 120.0}
FORCES_FACTOR = 3.0
JOB_START_SECONDS = 2.0


@functools.lru_cache(maxsize=4096)
def basis_functions_of_element(basis: str, element: str) -> int:
    """Number of spherical contracted basis functions of one atom of ``element`` in ``basis`` (PySCF's library)."""
    from pyscf.gto import basis as pyscf_basis

    shells = pyscf_basis.load(basis, element)
    count = 0
    for shell in shells:
        angular = shell[0]
        # A shell is [l, (kappa,)?, [exp, c1, c2, ...], ...]; the number of contractions is the row length minus one.
        rows = [row for row in shell[1:] if isinstance(row, (list, tuple))]
        contractions = len(rows[0]) - 1 if rows else 1
        count += (2 * angular + 1) * contractions
    return count


def estimate_basis_functions(symbols: t.Iterable[str], basis: str) -> int:
    """Number of basis functions of a molecule; unknown basis/element pairs count as 30 functions an atom."""
    total = 0
    for symbol in symbols:
        try:
            total += basis_functions_of_element(basis, symbol)
        except Exception:  # noqa: BLE001 - the estimate must never fail; validation reports bad bases elsewhere
            total += 30
    return total


def estimate_cost_seconds(symbols: t.Sequence[str], parameters: dict) -> float:
    """Rough wall time of one structure at the level in ``parameters`` (keys ``method``, ``basis``, ``forces``)."""
    method = str(parameters.get('method', 'hf')).lower()
    n_basis = estimate_basis_functions(symbols, str(parameters.get('basis', 'sto-3g')))
    family = method if method in PREFACTOR else 'mean_field'
    seconds = PREFACTOR[family] * (n_basis / 100.0) ** SCALING.get(method, 3.0)
    if family != 'mean_field':
        # Correlated methods run the mean-field step first.
        seconds += PREFACTOR['mean_field'] * (n_basis / 100.0) ** 3.0
    if parameters.get('forces'):
        seconds *= FORCES_FACTOR
    return max(seconds, 0.01)


def plan_batches(costs: dict[str, float], *, target_seconds: float, max_structures: int) -> list[list[str]]:
    """Pack structures into batches of similar estimated cost.

    First-fit decreasing: the most expensive structures are placed first, each into the first batch that stays under
    ``target_seconds`` and ``max_structures``; a structure costlier than the target gets a batch of its own. At least
    ``ceil(n / max_structures)`` batches are made.

    :param costs: estimated seconds per structure key.
    :returns: lists of keys; keys keep their input order inside a batch.
    """
    if max_structures < 1:
        raise ValueError('max_structures must be at least 1')
    order = {key: index for index, key in enumerate(costs)}
    batches: list[list[str]] = []
    loads: list[float] = []
    for key in sorted(costs, key=lambda k: (-costs[k], order[k])):
        for index, load in enumerate(loads):
            if len(batches[index]) < max_structures and load + costs[key] <= target_seconds:
                batches[index].append(key)
                loads[index] += costs[key]
                break
        else:
            batches.append([key])
            loads.append(costs[key])
    minimum = math.ceil(len(costs) / max_structures) if costs else 0
    assert len(batches) >= minimum
    return [sorted(batch, key=order.__getitem__) for batch in batches]
