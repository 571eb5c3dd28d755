"""Active learning against random selection, replayed on pools labelled once (``benchmarks/_al_pool.py``).

Every strategy gets the same model (hyperparameters and seed; training budgets in epochs, never seconds, so machine
load cannot change a result), the same initial set (element coverage then seeded random draws: the comparison is of
selection only), batch size and label budget, and the same fixed test frames; only the choice of which pool
structures to label differs. A model is trained from scratch at every point of a learning curve, so the curves compare
data, not training histories. ``MLQM_AL_SEEDS=0,1,2`` repeats everything per seed (initial set, random batches,
committee initialisation, tie breaks); the table prints each curve point as mean ± spread (standard deviation) over
seeds, the figures their per-seed values.

What is measured: the error over the whole explored region. The pools are built as MD-generated pools are: most
frames near equilibrium (300 K normal modes), fewer hot ones (600-1000 K) and, for the potential, a few ML-MD
excursions (the rare high-energy configurations exploration produces). Test frames are drawn per molecule and regime
(``stratified_test``), and the headline error (``explored``) is the mean over regimes of each regime's MAE: a model is
as good as its worst-covered region, since ML-MD goes there. The ``pool`` error weights the regimes by their share of
the pool instead (what random test frames of the pool would show) and is reported beside it, with its own ratio.

- ``labels_ratio_random_vs_al``: potential pool (HF/STO-3G energies and forces). Active learning: batches by query
  by committee on the max force spread with a diversity term, inside adaptive trust levels set on 40 held-out
  frames (the campaign's validation set, disjoint from the test frames and from the candidates). The target is the
  explored force MAE random selection reaches with the whole budget; the figure is the labels random needs for it
  over the labels AL needs (a curve that never reaches it counts one batch beyond the budget), mean over seeds.
- ``cc_labels_ratio_random_vs_al``: multi-fidelity pool (HF and CCSD(T)/6-31G* on every frame). Prediction = HF +
  a committee trained on CCSD(T) - HF of the frames given CCSD(T) labels; the figure is the CCSD(T) labels random
  selection needs to reach an explored MAE of 1 kcal/mol over those the loop needs (the Δ committee's spread with
  diversity, as ``select_expensive`` chooses), means over seeds.
- ``screening_enrichment``: an enumerated library of C, H, N, O molecules with the HF/STO-3G HOMO-LUMO gap; hits are
  the 10 % smallest gaps. The campaign's loop labels a farthest-point initial set and batches by calibrated spread,
  then ranks the unlabelled molecules (``rank_library`` with the hit threshold: probability of a hit) and verifies
  the top k; the figure is their hit rate over that of the unlabelled molecules (k random draws), pooled over seeds.

Measured (``MLQM_AL_SEEDS=0,1,2 OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks active_learning --quick``,
2 shared cores, deterministic run to run):

- ``labels_ratio_random_vs_al`` 1.44 ± 0.24 (seeds 1.17, 1.40, 1.75), target 2 not met. Explored force MAE (eV/Å)
  random / AL at 12-84 labels: 1.40/1.40, 1.35/1.34, 0.98/1.28, 0.95/0.66, 0.82/0.71, 0.72/0.65, 0.63/0.54; on the
  ML-MD frames 2.43/2.43 ... 1.21/0.92. AL labels 18-20 of its 84 frames from ML-MD (random 5-8) and pays near
  equilibrium (0.28 against 0.24 at 84): the pool-weighted ratio is 0.96.
- ``cc_labels_ratio_random_vs_al`` 0.92 (labels to 1 kcal/mol 8/12, 16/12, 24/28), target 2 not met: 1 kcal/mol is
  reached as soon as each molecule has a label or two, before the choice of frames matters. Below it the loop leads
  (explored MAE at 40 labels 0.79 ± 0.03 random, 0.64 ± 0.05 loop; ratio at random's final error 1.36).
- ``screening_enrichment`` 3.69 (seeds 5.20, 2.60, 3.30), target met; ranked by the lower confidence bound instead
  (what ``rank_library`` did with a threshold before) 1.99, by the predicted value alone 3.13; Spearman of predicted
  and computed gaps on the unlabelled molecules 0.58.

Before this design (farthest-point start for AL only, random test frames, the 61-molecule G2 set, LCB ranking) the
same command gave 0.79, 0.60 and 0.85.
"""

from __future__ import annotations

import os
import time

import numpy as np
from aiida_mlqm.units import EV_TO_KCAL_PER_MOL

from . import _al_pool

DESCRIPTION = 'labels random selection needs / labels active learning needs (potential, Δ on CCSD(T)); screening enrichment'
SPECIES = [1, 6, 7, 8]


def _structures(pool, index=None, *, energy_key='energy', forces=True):
    from aiida_mlqm.models.data import Structures

    offsets = pool['offsets']
    full = Structures(
        pool['numbers'], pool['positions'], offsets,
        energy=pool.get(energy_key), forces=pool.get('forces') if forces else None,
    )  # fmt: skip
    return full if index is None else full.subset(index)


def _hyper(quick: bool, seed: int, **extra) -> dict:
    epochs = 60 if quick else 150
    return {
        'backend': 'torchani', 'members': 4, 'aev': 'compact', 'hidden': [32, 16], 'epochs': epochs, 'patience': epochs, 'batch_size': 16,
        'learning_rate': 3e-3, 'validation_fraction': 0.1, 'calibration_fraction': 0.15, 'seed': seed, **extra,
    }  # fmt: skip


def _covering(structures, seed: int) -> list[int]:
    """One structure per element (rarest first, seeded), as the campaign's initial set starts: a committee never
    trained on an element cannot predict any structure that has it."""
    from aiida_mlqm.models.data import cover_elements

    return cover_elements(structures, range(len(structures)), rng=np.random.default_rng(seed))


def initial_set(structures, count: int, seed: int) -> list[int]:
    """The initial set every strategy starts from: element coverage, then seeded random draws."""
    from aiida_mlqm.models.selection import select_random

    covering = _covering(structures, seed)
    rest = max(count - len(covering), 0)
    extra = select_random(len(structures), rest, seed=seed, exclude=covering).indices
    return covering + [int(i) for i in extra]


def regime(group: str) -> str:
    """The region of the explored space a pool frame comes from: ``near-equilibrium`` (300 K normal modes), ``hot``
    (600-1000 K normal modes) or ``ml-md`` (excursions of ML-driven dynamics)."""
    kind = str(group).split('/')[-1]
    if kind == 'ml-md':
        return 'ml-md'
    return 'near-equilibrium' if float(kind.rstrip('K')) < 450 else 'hot'


#: Frames more than this above their molecule's lowest energy in the pool are left out (eV, about 70 kcal/mol):
#: unreachable at <= 1000 K (Boltzmann factor below 1e-15), they are artefacts (harmonic extrapolation along a
#: torsion, ML-MD running away), which the campaign's upper trust level keeps out as well.
PHYSICAL_LIMIT_EV = 3.0


def physical(energy, groups, limit: float = PHYSICAL_LIMIT_EV) -> np.ndarray:
    """Mask of the frames within ``limit`` of the lowest energy of their molecule (``groups``: ``molecule/regime``)."""
    energy = np.asarray(energy, dtype=float)
    molecules = np.array([str(g).split('/')[0] for g in groups])
    lowest = {name: energy[molecules == name].min() for name in set(molecules)}
    return energy - np.array([lowest[name] for name in molecules]) <= limit


def _select(pool: dict, keep: np.ndarray) -> dict:
    """The frames ``keep`` (mask) of a flat pool: per-frame arrays, atoms and offsets."""
    offsets = pool['offsets']
    index = np.flatnonzero(keep)
    atoms = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in index])
    frames = len(offsets) - 1
    out = {}
    for key, value in pool.items():
        if key == 'offsets':
            out[key] = np.concatenate([[0], np.cumsum(np.diff(offsets)[index])])
        elif key in ('numbers', 'positions', 'forces'):
            out[key] = value[atoms]
        elif len(value) == frames:
            out[key] = value[index]
        else:
            out[key] = value
    return out


def stratified_test(groups, per_group: int, seed: int) -> np.ndarray:
    """``per_group`` frames of every group (molecule and regime; at most half of a group), drawn at random."""
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    chosen = []
    for name in sorted(set(groups)):
        members = np.flatnonzero(groups == name)
        chosen += list(rng.choice(members, size=min(per_group, len(members) // 2), replace=False))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def regime_errors(frame_errors, frame_regimes, pool_regimes) -> dict[str, float]:
    """Per regime, the mean of ``frame_errors`` over its test frames; ``explored`` their plain mean (every region of
    the explored space counts the same), ``pool`` their mean weighted by each regime's share of the pool (what a
    random test frame of the pool would show)."""
    frame_errors, frame_regimes = np.asarray(frame_errors, dtype=float), np.asarray(frame_regimes)
    pool_regimes = np.asarray(pool_regimes)
    names = sorted(set(frame_regimes))
    out = {name: float(frame_errors[frame_regimes == name].mean()) for name in names}
    out['explored'] = float(np.mean([out[name] for name in names]))
    shares = np.array([np.mean(pool_regimes == name) for name in names])
    out['pool'] = float(np.dot(shares / shares.sum(), [out[name] for name in names]))
    return out


def first_reaching(curve: list[tuple[int, float]], target: float) -> int | None:
    """The fewest labels at which ``curve`` (labels, error) is at or below ``target``; ``None`` if never."""
    for labels, error in curve:
        if error <= target:
            return labels
    return None


def labels_ratio(random_curve, active_curve, target: float | None = None) -> tuple[float, int, int]:
    """Labels random needs / labels AL needs to reach ``target`` (default: random's error with its whole budget).

    A curve that never reaches it counts one batch beyond its budget (a bound in the other strategy's favour)."""
    target = random_curve[-1][1] if target is None else target

    def needed(curve):
        reached = first_reaching(curve, target)
        return reached if reached is not None else curve[-1][0] + (curve[-1][0] - curve[-2][0])

    labels_random, labels_active = needed(random_curve), needed(active_curve)
    return labels_random / labels_active, labels_random, labels_active


def _mean_spread(values) -> str:
    values = np.asarray(values, dtype=float)
    return f'{values.mean():.3g} ± {values.std():.2g}' if len(values) > 1 else f'{values.mean():.3g}'


# -- potential ------------------------------------------------------------------------------------------------------


def potential_curves(quick: bool, seed: int = 0, log=print) -> dict:
    """Learning curves of random selection and of the campaign's query by committee from one random initial set.

    Test frames: ``stratified_test`` per molecule and regime (fixed, seed 0); the errors are those of
    ``regime_errors``. The campaign's validation set (trust levels) is 40 other random frames; the candidates are
    the rest."""
    from aiida_mlqm.models.descriptors import aev_descriptors, committee_signals
    from aiida_mlqm.models.selection import (
        adaptive_trust_levels,
        max_force_error,
        select_batch,
        select_random,
    )
    from aiida_mlqm.models.training import train_committee

    pool = _al_pool.load(_al_pool.potential_pool(quick, log=log))
    keep = physical(pool['energy'], pool['groups'])
    log(f'  potential pool: {np.sum(~keep)} of {len(keep)} frames more than {PHYSICAL_LIMIT_EV} eV above their molecule\'s '
        f'lowest left out ({", ".join(sorted(set(pool["groups"][~keep])))})')
    pool = _select(pool, keep)
    everything = _structures(pool)
    regimes = np.array([regime(g) for g in pool['groups']])
    test_index = stratified_test(pool['groups'], 6 if quick else 12, seed=0)
    rest = np.setdiff1d(np.arange(len(everything)), test_index)
    rest = rest[np.random.default_rng(0).permutation(len(rest))]
    # the campaign's own validation set (a random draw, as choose_initial_set makes it), disjoint from the test frames
    held_out_index, candidates_index = rest[:40], rest[40:]
    test = everything.subset(test_index)
    held_out = everything.subset(held_out_index)
    candidates = everything.subset(candidates_index)
    descriptors = aev_descriptors(candidates, species=SPECIES)
    initial, batch = (12, 12) if quick else (16, 16)
    steps = 6 if quick else 9
    hyper = _hyper(quick, seed=5 + seed)

    def evaluate(chosen):
        committee = train_committee(candidates.subset(chosen), hyper, log=None)
        signals = committee_signals(committee, test)
        frame_force = np.array([
            np.abs(signals['forces'][a:b] - test.forces[a:b]).mean() for a, b in zip(test.offsets[:-1], test.offsets[1:])
        ])  # fmt: skip
        frame_energy = np.abs(signals['energy'] - test.energy) / test.sizes
        forces = regime_errors(frame_force, regimes[test_index], regimes)
        energy = regime_errors(frame_energy, regimes[test_index], regimes)
        return committee, forces, energy

    curves, trust_log = {}, []
    for strategy in ('random', 'active'):
        started = time.perf_counter()
        chosen = initial_set(candidates, initial, 11 + seed)
        curve = []
        for step in range(steps + 1):
            committee, forces, energy = evaluate(chosen)
            picked = regimes[candidates_index[chosen]]
            curve.append({'labels': len(chosen), 'forces': forces, 'energy': energy,
                          'picked': {name: int(np.sum(picked == name)) for name in ('near-equilibrium', 'hot', 'ml-md')}})  # fmt: skip
            log(f'  potential seed {seed} {strategy:6s} {len(chosen):4d} labels: force MAE explored {forces["explored"]:.4f}, '
                f'pool {forces["pool"]:.4f}, ML-MD {forces["ml-md"]:.4f} eV/Å; labelled {curve[-1]["picked"]}')  # fmt: skip
            if step == steps:
                break
            if strategy == 'random':
                new = select_random(len(candidates), batch, seed=100 + step + 1000 * seed, exclude=chosen).indices
            else:
                # the trust window from held-out frames (spread against true force error), as the campaign's selection
                # does with its validation set; never from the frames the committee was trained on
                signals = committee_signals(committee, held_out)
                trust = adaptive_trust_levels(
                    signals['max_force_spread'], max_force_error(signals['forces'], held_out.forces, held_out.offsets)
                )
                left = np.setdiff1d(np.arange(len(candidates)), chosen)
                spread = committee_signals(committee, candidates.subset(left))['max_force_spread']
                selection = select_batch(
                    spread, descriptors[left], batch, labelled_descriptors=descriptors[chosen], trust=trust,
                    diversity=0.5, seed=step + 1000 * seed,
                )  # fmt: skip
                new = left[selection.indices]
                trust_log.append({'strategy': strategy, 'labels': len(chosen), 'lower': trust.lower, 'upper': trust.upper, **selection.counts})
                if len(new) < batch:  # the window holds too few: the rest of the batch by spread alone, recorded
                    extra = select_batch(
                        spread, descriptors[left], batch, labelled_descriptors=descriptors[chosen], diversity=0.5,
                        seed=step + 1000 * seed,
                    ).indices  # fmt: skip
                    new = np.concatenate([new, [left[i] for i in extra if left[i] not in set(new)]])[:batch]
            chosen += [int(i) for i in new]
        curves[strategy] = curve
        log(f'  potential {strategy}: {time.perf_counter() - started:.0f} s')
    shares = {name: float(np.mean(regimes[candidates_index] == name)) for name in ('near-equilibrium', 'hot', 'ml-md')}
    return {'curves': curves, 'trust': trust_log, 'pool': len(everything), 'test': len(test_index), 'shares': shares}


# -- multi-fidelity -------------------------------------------------------------------------------------------------


def delta_curves(quick: bool, seed: int = 0, log=print) -> dict:
    """HF + Δ learning curves (CCSD(T) labels) of random selection and of the loop's choice (``select_expensive``:
    the Δ committee's spread with diversity) from one random initial set. Test frames: ``stratified_test`` per
    molecule and regime (fixed); the error is ``regime_errors``' ``explored`` mean."""
    from aiida_mlqm.models.descriptors import aev_descriptors
    from aiida_mlqm.models.selection import select_batch, select_random
    from aiida_mlqm.models.training import train_committee

    pool = _al_pool.load(_al_pool.multifidelity_pool(quick, log=log))
    pool = _select(pool, physical(pool['cheap'], pool['groups']))
    pool = {**pool, 'energy': pool['expensive'] - pool['cheap']}
    everything = _structures(pool, forces=False)
    regimes = np.array([regime(g) for g in pool['groups']])
    test_index = stratified_test(pool['groups'], 8 if quick else 12, seed=1)
    candidates_index = np.setdiff1d(np.arange(len(everything)), test_index)
    test = everything.subset(test_index)
    candidates = everything.subset(candidates_index)
    descriptors = aev_descriptors(candidates, species=SPECIES)
    initial, batch, budget = 4, 4, 40 if quick else 60
    # as campaign_parameters trains the Δ model: no validation or calibration split (every CCSD(T) label is fitted)
    hyper = _hyper(quick, seed=7 + seed, hidden=[16], calibration_fraction=0.0, validation_fraction=0.0)

    curves = {}
    for strategy in ('random', 'active'):
        chosen = initial_set(candidates, initial, 3 + seed)
        curve = []
        while True:
            committee = train_committee(candidates.subset(chosen), hyper, log=None)
            frame_error = np.abs(committee.predict(test).value - test.energy) * EV_TO_KCAL_PER_MOL
            errors = regime_errors(frame_error, regimes[test_index], regimes)
            curve.append({'labels': len(chosen), 'errors': errors})
            log(f'  Δ seed {seed} {strategy:6s} {len(chosen):3d} CCSD(T) labels: HF + Δ MAE explored {errors["explored"]:.3f}, '
                f'pool {errors["pool"]:.3f}, hot {errors["hot"]:.3f} kcal/mol')  # fmt: skip
            if len(chosen) >= budget:
                break
            if strategy == 'random':
                new = select_random(len(candidates), batch, seed=200 + len(chosen) + 1000 * seed, exclude=chosen).indices
            else:
                rest = np.setdiff1d(np.arange(len(candidates)), chosen)
                spread = committee.predict(candidates.subset(rest)).spread
                selection = select_batch(
                    spread, descriptors[rest], batch, labelled_descriptors=descriptors[chosen], diversity=0.5,
                    seed=len(chosen) + 1000 * seed,
                )
                new = rest[selection.indices]
            chosen += [int(i) for i in new]
        curves[strategy] = curve
    return {'curves': curves, 'target_kcal_mol': 1.0, 'pool': len(everything), 'test': len(test_index)}


# -- screening ------------------------------------------------------------------------------------------------------


def screening(quick: bool, seeds: list[int], log=print) -> dict:
    """The campaign's screening loop on the enumerated library (``_al_pool.screening_library_pool``), per seed: a
    farthest-point initial set, batches by calibrated spread with diversity (``select_next_batch``), then the
    unlabelled molecules ranked as ``rank_library`` ranks them with a hit threshold (the probability of a hit under the
    calibrated spread, ``probability_of_hit``) and the top k verified. Hits: the 10 % smallest gaps of the library
    (the threshold the campaign is given). Random: the hit rate of the molecules the loop left unlabelled, i.e. what k
    molecules drawn from them at random find on average. The lower confidence bound (kappa 1, the ranking without a
    threshold) and the predicted value alone are reported beside it.
    """
    from aiida_mlqm.models.descriptors import aev_descriptors
    from aiida_mlqm.models.selection import (
        farthest_point_sampling,
        lower_confidence_bound,
        probability_of_hit,
        select_batch,
    )
    from aiida_mlqm.models.training import train_committee

    pool = _al_pool.load(_al_pool.screening_library_pool(quick, log=log))
    library = _structures({**pool, 'energy': None}, forces=False)
    library.target = pool['gap']
    descriptors = aev_descriptors(library, species=SPECIES)
    threshold = float(np.quantile(pool['gap'], 0.1))
    hits = pool['gap'] <= threshold
    initial, batch, iterations, top_k = (16, 8, 2, 12) if quick else (24, 12, 3, 24)
    rates, random_rates, greedy_rates, bound_rates, found, spent, correlations = [], [], [], [], [], [], []
    for seed in seeds:
        hyper = _hyper(quick, seed=seed, extensive=False, calibration_fraction=0.2)
        chosen = list(farthest_point_sampling(descriptors, initial, seed=seed))
        for _ in range(iterations):
            committee = train_committee(library.subset(chosen), hyper, kind='property', log=None)
            rest = np.setdiff1d(np.arange(len(library)), chosen)
            prediction = committee.predict(library.subset(rest))
            selection = select_batch(
                prediction.calibrated_spread, descriptors[rest], batch, labelled_descriptors=descriptors[chosen],
                diversity=0.5, seed=seed,
            )  # fmt: skip
            chosen += [int(rest[i]) for i in selection.indices]
        committee = train_committee(library.subset(chosen), hyper, kind='property', log=None)
        rest = np.setdiff1d(np.arange(len(library)), chosen)
        prediction = committee.predict(library.subset(rest))
        _, order = probability_of_hit(prediction.value, prediction.calibrated_spread, threshold)
        _, bound = lower_confidence_bound(prediction.value, prediction.calibrated_spread, kappa=1.0)
        _, greedy = lower_confidence_bound(prediction.value, prediction.calibrated_spread, kappa=0.0)
        verified = rest[order[:top_k]]
        rates.append(float(hits[verified].mean()))
        bound_rates.append(float(hits[rest[bound[:top_k]]].mean()))
        greedy_rates.append(float(hits[rest[greedy[:top_k]]].mean()))
        random_rates.append(float(hits[rest].mean()))
        correlations.append(float(_spearman(prediction.value, pool['gap'][rest])))
        # every QM calculation of the campaign (loop labels + verified top k) against as many random molecules
        found.append(int(hits[chosen].sum() + hits[verified].sum()))
        spent.append(len(chosen) + top_k)
        log(f'  screening seed {seed}: {int(hits[verified].sum())}/{top_k} hits in the top {top_k} by probability of a hit '
            f'(LCB: {int(hits[rest[bound[:top_k]]].sum())}, predicted value alone: {int(hits[rest[greedy[:top_k]]].sum())}); random {random_rates[-1]:.3f} per molecule; '
            f'Spearman(predicted, gap) on the unlabelled {correlations[-1]:.2f}')  # fmt: skip
    return {
        'hit_rates': rates,
        'greedy_hit_rates': greedy_rates,
        'bound_hit_rates': bound_rates,
        'random_hit_rates': random_rates,
        'spearman': correlations,
        'hits_per_calculation': float(np.sum(found) / np.sum(spent)),
        'library_hit_rate': float(hits.mean()),
        'labels': len(chosen),
        'library': len(library),
        'threshold_ev': threshold,
        'top_k': top_k,
    }


def _spearman(a, b) -> float:
    rank = lambda x: np.argsort(np.argsort(x))
    return float(np.corrcoef(rank(np.asarray(a)), rank(np.asarray(b)))[0, 1])


def _seeds() -> list[int]:
    """Seeds of the potential and Δ curves: ``MLQM_AL_SEEDS=0,1,2`` (default ``0``). Each seed draws its own initial
    set, random batches, committee initialisation and tie breaks; pools and test frames stay the same."""
    value = os.environ.get('MLQM_AL_SEEDS', '0')
    try:
        return [int(part) for part in value.split(',') if part.strip()]
    except ValueError:
        raise SystemExit(f'MLQM_AL_SEEDS={value!r}: give comma-separated integers, e.g. 0,1,2') from None


def _curve_rows(name: str, per_seed: list[dict], extract) -> list[dict]:
    """Table rows: per label count, the mean ± spread over seeds of each strategy's error."""
    rows = []
    for point in range(len(per_seed[0]['curves']['random'])):
        row = {'curve': name, 'labels': per_seed[0]['curves']['random'][point]['labels']}
        for strategy in ('random', 'active'):
            row[strategy] = _mean_spread([extract(seed['curves'][strategy][point]) for seed in per_seed])
        rows.append(row)
    return rows


def run(quick: bool) -> dict:
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    table, figures = [], {}
    seeds = _seeds()

    potential = [potential_curves(quick, seed) for seed in seeds]
    for which in ('explored', 'pool', 'ml-md', 'near-equilibrium'):
        table += _curve_rows(f'potential force MAE {which} eV/Å', potential, lambda p, w=which: p['forces'][w])
    for seed, result in zip(seeds, potential):
        for strategy, curve in result['curves'].items():
            print(f'  seed {seed} {strategy}: labelled (near-equilibrium, hot, ml-md) per point: '
                  + ', '.join(f'{p["labels"]}: {tuple(p["picked"].values())}' for p in curve))  # fmt: skip
    for which, name in (('explored', 'labels_ratio_random_vs_al'), ('pool', 'labels_ratio_random_vs_al_pool_weighted')):
        ratios = [labels_ratio([(p['labels'], p['forces'][which]) for p in r['curves']['random']],
                               [(p['labels'], p['forces'][which]) for p in r['curves']['active']]) for r in potential]  # fmt: skip
        shares = potential[0]['shares']
        figures[name] = {
            'value': float(np.mean([r[0] for r in ratios])),
            'unit': f'labels random needs / labels AL needs to reach the {which} force MAE random reaches with its '
            f'whole budget; per seed {seeds}: {", ".join(f"{r[0]:.2f} ({r[1]}/{r[2]})" for r in ratios)}, mean ± spread '
            f'{_mean_spread([r[0] for r in ratios])} (pool {potential[0]["pool"]}, {potential[0]["test"]} test frames; '
            f'candidates near-equilibrium {shares["near-equilibrium"]:.0%}, hot {shares["hot"]:.0%}, ML-MD {shares["ml-md"]:.0%})',
            'target': '>= 2' if which == 'explored' else None,
        }

    delta = [delta_curves(quick, seed) for seed in seeds]
    for which in ('explored', 'pool', 'hot'):
        table += _curve_rows(f'HF + Δ MAE {which} kcal/mol', delta, lambda p, w=which: p['errors'][w])
    for which, name, target, level in (
        ('explored', 'cc_labels_ratio_random_vs_al', '>= 2', 1.0),
        ('pool', 'cc_labels_ratio_random_vs_al_pool_weighted', None, 1.0),
        ('explored', 'cc_labels_ratio_random_vs_al_at_random_final', None, None),
    ):
        ratios = [labels_ratio([(p['labels'], p['errors'][which]) for p in r['curves']['random']],
                               [(p['labels'], p['errors'][which]) for p in r['curves']['active']], level) for r in delta]  # fmt: skip
        what = '1 kcal/mol' if level else 'the MAE random reaches with its whole budget'
        figures[name] = {
            'value': float(np.mean([r[1] for r in ratios]) / np.mean([r[2] for r in ratios])),
            'unit': f'mean CCSD(T) labels to a {which} HF + Δ MAE of {what}, random / loop; per seed {seeds}: '
            f'{", ".join(f"{r[1]}/{r[2]}" for r in ratios)} (a count one batch above the budget '
            f'{delta[0]["curves"]["random"][-1]["labels"]} means not reached; {delta[0]["test"]} test frames)',
            'target': target,
        }

    screen = screening(quick, seeds)
    enrichment = [rate / base if base else 0.0 for rate, base in zip(screen['hit_rates'], screen['random_hit_rates'])]
    base = np.mean(screen['random_hit_rates'])
    figures['screening_enrichment'] = {
        'value': float(np.mean(screen['hit_rates']) / base),
        'unit': f'hit rate of the top {screen["top_k"]} by probability of a hit / that of random unlabelled molecules; '
        f'per seed {seeds}: {", ".join(f"{e:.2f}" for e in enrichment)} (lower confidence bound: '
        f'{np.mean(screen["bound_hit_rates"]) / base:.2f}, predicted value alone: {np.mean(screen["greedy_hit_rates"]) / base:.2f}); '
        f'hits: gap <= {screen["threshold_ev"]:.2f} eV (10 %) of {screen["library"]} enumerated molecules, '
        f'{screen["labels"]} labels; Spearman(predicted, gap) {_mean_spread(screen["spearman"])}',
        'target': '> 1',
    }
    figures['screening_hits_per_qm_vs_random'] = {
        'value': screen['hits_per_calculation'] / screen['library_hit_rate'],
        'unit': f'hits among all QM calculations of the campaign (loop + top {screen["top_k"]}) / library hit rate '
        f'{screen["library_hit_rate"]:.3f}',
        'target': None,
    }
    for seed, result in zip(seeds, potential):
        for record in result['trust']:
            print(f'  seed {seed} {record["strategy"]}: trust window at {record["labels"]} labels: [{record["lower"]:.3f}, '
                  f'{record["upper"]:.3f}] eV/Å; accurate {record["accurate"]}, candidates {record["candidate"]}, '
                  f'beyond {record["failed"]}')  # fmt: skip
    return {'_table': table, **figures}
