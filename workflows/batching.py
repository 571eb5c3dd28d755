"""Packing of structures into batch jobs by estimated cost (the estimate is
:meth:`aiida_mlqm.chemistry.level.LevelOfTheory.estimate_seconds`)."""
from __future__ import annotations

import math


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
