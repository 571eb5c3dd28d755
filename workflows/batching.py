"""Packing of structures into batch jobs by estimated cost (the estimate is
:meth:`aiida_mlqm.chemistry.level.LevelOfTheory.estimate_seconds`), and how many jobs a computer runs side by side."""
from __future__ import annotations

import math

# A batch job costs about this much beyond its PySCF time (Python and PySCF start, upload, retrieve, parse), so a
# set of structures is split over more jobs than its cost needs only while each extra job brings this much work.
MIN_SPLIT_SECONDS = 2.0


def jobs_side_by_side(computer, options: dict) -> int:
    """How many batch jobs ``computer`` runs at once: on a ``core.direct`` computer (jobs start at once on the machine
    itself) its CPUs over the cores one job takes; 1 for a queueing scheduler, whose queue decides, and for a code
    without a computer of its own (a ``PortableCode``: the job's computer is chosen at launch).

    Measured (``python -m benchmarks overhead``): on small molecules PySCF gains nothing from a second thread, while
    two single-thread jobs side by side take half the time, so the cores are filled with jobs rather than threads.
    """
    if computer is None or computer.scheduler_type != 'core.direct':
        return 1
    resources = options.get('resources', {})
    per_job = int(resources.get('num_mpiprocs_per_machine') or 1) * int(resources.get('num_cores_per_mpiproc') or 1)
    cpus = computer.get_default_mpiprocs_per_machine() or 1
    return max(1, cpus // max(per_job, 1))


def fill_slots(estimate_seconds: float, slots: int) -> int:
    """The least number of batches for ``estimate_seconds`` of work on ``slots`` job slots (see
    :data:`MIN_SPLIT_SECONDS`)."""
    return max(1, min(slots, int(estimate_seconds // MIN_SPLIT_SECONDS)))


def plan_batches(
    costs: dict[str, float], *, target_seconds: float, max_structures: int, min_batches: int = 1
) -> list[list[str]]:
    """Pack structures into batches of similar estimated cost.

    First-fit decreasing: the most expensive structures are placed first, each into the first batch that stays under
    ``target_seconds`` and ``max_structures``; a structure costlier than the target gets a batch of its own. At least
    ``ceil(n / max_structures)`` batches are made, and at least ``min_batches`` (at most one a structure): then the
    structures are dealt, most expensive first, to the batch with the least estimated load (jobs that run side by
    side end together).

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
    wanted = min(min_batches, len(costs))
    if len(batches) < wanted:
        batches, loads = [[] for _ in range(wanted)], [0.0] * wanted
        for key in sorted(costs, key=lambda k: (-costs[k], order[k])):
            index = min((i for i in range(wanted) if len(batches[i]) < max_structures), key=loads.__getitem__)
            batches[index].append(key)
            loads[index] += costs[key]
    return [sorted(batch, key=order.__getitem__) for batch in batches]
