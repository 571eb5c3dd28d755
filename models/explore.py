"""Exploration by ML molecular dynamics: Langevin trajectories on the committee, stopped where it becomes unsure.

Each starting structure runs its own trajectory (its own seed, derived from ``seed``). Every ``check_interval`` steps
the committee spread named by ``signal`` is read (the calibrated energy spread, or the max force spread as DP-GEN's
model deviation); the first geometry whose spread exceeds ``threshold`` ends the trajectory and
becomes a candidate for reference labelling. A trajectory that never crosses the threshold returns no candidate: the
model is confident over the region it sampled.
"""

from __future__ import annotations

import typing as t

import numpy as np

from .calculator import CommitteeCalculator
from .config import ExploreConfig
from .data import Structures


def explore(model, starts: Structures, settings: ExploreConfig | dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    """Run one Langevin trajectory per structure of ``starts``.

    :return: ``{'candidates': Structures, 'candidate_info': [{'start', 'step', 'spread'}], 'trajectories': [...]}``,
        where each trajectory summary has ``start``, ``steps``, ``max_spread``, ``reason`` ('threshold', 'steps',
        'unphysical').
    """
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

    if not isinstance(settings, ExploreConfig):
        settings = ExploreConfig(**(settings or {}))
    candidates, info, summaries = [], [], []
    for start, atoms in enumerate(starts.to_ase()):
        rng = np.random.RandomState(settings.seed * 100003 + start)
        atoms.calc = CommitteeCalculator(model)
        MaxwellBoltzmannDistribution(atoms, temperature_K=settings.temperature, rng=rng)
        Stationary(atoms)
        ZeroRotation(atoms)
        dynamics = Langevin(
            atoms,
            settings.timestep * units.fs,
            temperature_K=settings.temperature,
            friction=settings.friction / units.fs,
            fixcm=True,
            rng=rng,
        )
        max_spread, reason, step = 0.0, 'steps', 0
        while step < settings.steps:
            dynamics.run(settings.check_interval)
            step += settings.check_interval
            atoms.get_potential_energy()
            spread = float(atoms.calc.results[settings.signal])
            max_spread = max(max_spread, spread)
            if len(atoms) > 1:
                distances = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
                if distances.min() < settings.min_distance:
                    reason = 'unphysical'
                    break
            if spread > settings.threshold:
                reason = 'threshold'
                candidates.append(atoms.copy())
                info.append({'start': start, 'step': step, 'spread': spread})
                break
        summaries.append({'start': start, 'steps': step, 'max_spread': max_spread, 'reason': reason})
    result = Structures.from_ase(candidates) if candidates else None
    return {'candidates': result, 'candidate_info': info, 'trajectories': summaries}
