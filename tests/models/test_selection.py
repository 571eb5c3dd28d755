"""Active-learning core: farthest-point sampling, force model deviation, trust levels, batch selection, stop rules."""

from __future__ import annotations

import numpy as np
import pytest
from aiida_mlqm.models.selection import (
    RULE_QBC,
    IterationRecord,
    StopRules,
    TrustLevels,
    adaptive_trust_levels,
    max_force_error,
    check_stop,
    farthest_point_sampling,
    lower_confidence_bound,
    max_force_spread,
    probability_of_hit,
    select_batch,
    select_random,
)


def clusters(seed: int = 0, per_cluster: int = 40, centres=((0, 0), (10, 0), (0, 10), (10, 10))):
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(centre, 0.3, (per_cluster, 2)) for centre in centres])
    labels = np.repeat(np.arange(len(centres)), per_cluster)
    return points, labels


def test_fps_covers_every_cluster_and_is_seeded():
    points, labels = clusters()
    chosen = farthest_point_sampling(points, 4, seed=1)
    assert sorted(labels[chosen]) == [0, 1, 2, 3]
    assert np.array_equal(chosen, farthest_point_sampling(points, 4, seed=1))
    assert not np.array_equal(farthest_point_sampling(points, 4, seed=1), farthest_point_sampling(points, 4, seed=2))
    # random draws of 4 miss a cluster most of the time; FPS never does
    rng = np.random.default_rng(0)
    misses = sum(len(set(labels[rng.choice(len(points), 4, replace=False)])) < 4 for _ in range(200))
    assert misses > 100


def test_fps_keeps_away_from_already_selected_and_never_repeats():
    points, labels = clusters()
    selected = list(np.flatnonzero(labels < 3)[:3])  # clusters 0, 1, 2 are represented
    selected = [int(np.flatnonzero(labels == c)[0]) for c in range(3)]
    chosen = farthest_point_sampling(points, 1, selected=selected)
    assert labels[chosen[0]] == 3
    everything = farthest_point_sampling(points, 1000, seed=0)
    assert len(everything) == len(points) and len(set(everything.tolist())) == len(points)


def test_max_force_spread_is_the_largest_atomic_deviation():
    forces = np.zeros((3, 5, 3))  # 3 members, structures of 2 and 3 atoms
    forces[:, 1, 0] = [-1.0, 0.0, 1.0]  # atom 1 of structure 0: deviation sqrt(2/3)
    forces[:, 4, 2] = [0.0, 0.0, 3.0]  # atom 4 of structure 1: deviation sqrt(2)
    forces[:, 3, 1] = [0.5, 0.5, 0.5]  # agreement: no deviation
    spread = max_force_spread(forces, np.array([0, 2, 5]))
    assert spread == pytest.approx([np.sqrt(2 / 3), np.sqrt(2.0)])
    with pytest.raises(ValueError, match='members, atoms, 3'):
        max_force_spread(np.zeros((3, 5)), np.array([0, 5]))


def test_trust_levels_come_from_held_out_errors_where_the_spread_tracks_them():
    rng = np.random.default_rng(0)
    spread = rng.uniform(0.01, 0.5, 400)
    error = 2.0 * spread * rng.uniform(0.8, 1.2, 400)  # the error tracks the spread on held-out frames
    levels = adaptive_trust_levels(spread, error, tolerance=0.3)
    below = spread <= levels.lower
    # at most 10 % of the frames waved through miss the tolerance; one more frame would break that
    assert np.mean(error[below] > 0.3) <= 0.1
    next_frame = spread <= np.min(spread[~below])
    assert np.mean(error[next_frame] > 0.3) > 0.1
    # error 2 x spread x U(0.8, 1.2) stays within 0.3 up to spread 0.125, and always misses above 0.1875
    assert 0.125 < levels.lower < 0.1875
    assert levels.upper == pytest.approx(3 * spread.max())
    assert '400 held-out frames' in levels.source
    # without a tolerance: the median held-out error; the level passes about the more accurate half of the frames
    median = adaptive_trust_levels(spread, error)
    assert np.mean(error[spread <= median.lower] > np.median(error)) <= 0.1
    assert 0.45 < np.mean(spread <= median.lower) < 0.65


def test_trust_levels_wave_nothing_through_when_the_spread_does_not_track_the_error():
    rng = np.random.default_rng(1)
    spread = rng.uniform(0.01, 0.5, 400)
    error = rng.lognormal(np.log(0.2), 0.8, 400)  # independent of the spread
    levels = adaptive_trust_levels(spread, error)
    assert np.mean(spread < levels.lower) < 0.15
    # at one tolerance, a committee whose held-out errors are small passes more of its frames than a young one
    young = adaptive_trust_levels(10 * spread, 20 * spread, tolerance=1.0)
    mature = adaptive_trust_levels(spread, 2 * spread, tolerance=1.0)
    assert np.mean(spread <= mature.lower) == 1.0 and np.mean(10 * spread <= young.lower) < 0.15


def test_trust_level_edge_cases_and_bad_input():
    # ties: frames of one spread are accurate or not together
    spread, error = np.array([0.1, 0.1, 0.2, 0.3, 0.4]), np.array([0.0, 0.5, 0.1, 0.1, 0.1])
    options = {'tolerance': 0.26, 'min_support': 1}
    assert adaptive_trust_levels(spread, error, miss_rate=0.25, **options).lower == pytest.approx(0.4)
    assert adaptive_trust_levels(spread, error, miss_rate=0.2, **options).lower == pytest.approx(0.4)
    assert adaptive_trust_levels(spread, error, miss_rate=0.0, **options).lower == pytest.approx(1e-12)
    # a miss rate cannot be measured on a handful of frames: below min_support nothing counts as accurate
    few = adaptive_trust_levels(spread, np.zeros(5), tolerance=0.26)
    assert few.lower == pytest.approx(1e-12) and 'at least 10 needed' in few.source
    assert adaptive_trust_levels(spread, np.zeros(5), tolerance=0.26, min_support=5).lower == pytest.approx(0.4)
    levels = adaptive_trust_levels(np.array([0.1, 0.1, 0.2]), np.array([0.0, 0.5, 0.6]), tolerance=0.2)
    assert levels.lower == pytest.approx(1e-12) and 'tolerance 0.2' in levels.source  # no frame within it
    assert levels.upper == pytest.approx(0.6)
    assert adaptive_trust_levels(np.full(10, 0.1), np.full(10, 0.01), maximum=0.2).upper == pytest.approx(0.2)
    with pytest.raises(ValueError, match='raise the maximum'):
        adaptive_trust_levels(np.full(10, 0.5), np.full(10, 0.01), maximum=0.2)
    with pytest.raises(ValueError, match='at least one held-out frame'):
        adaptive_trust_levels(np.array([np.nan]), np.array([0.1]))
    with pytest.raises(ValueError, match='one spread and one error'):
        adaptive_trust_levels(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match='tolerance'):
        adaptive_trust_levels(np.ones(3), np.ones(3), tolerance=0)
    with pytest.raises(ValueError, match='min_support'):
        adaptive_trust_levels(np.ones(3), np.ones(3), min_support=0)
    levels = TrustLevels(0.1, 0.3)
    assert list(levels.classify([0.05, 0.2, 0.5, np.nan])) == ['accurate', 'candidate', 'failed', 'failed']
    with pytest.raises(ValueError, match='lower < upper'):
        TrustLevels(0.3, 0.1)


def test_max_force_error_is_the_largest_atomic_error():
    reference = np.zeros((5, 3))
    predicted = np.zeros((5, 3))
    predicted[1] = [0.3, 0.4, 0.0]
    predicted[3] = [0.0, 0.0, 2.0]
    predicted[4] = [1.0, 0.0, 0.0]
    assert max_force_error(predicted, reference, np.array([0, 2, 5])) == pytest.approx([0.5, 2.0])
    with pytest.raises(ValueError, match='atoms, 3'):
        max_force_error(np.zeros((5, 3)), np.zeros((4, 3)), np.array([0, 5]))


def test_pure_query_by_committee_takes_the_most_uncertain():
    points, _ = clusters()
    uncertainty = np.random.default_rng(1).random(len(points))
    selection = select_batch(uncertainty, points, 5, diversity=0.0)
    assert set(selection.indices) == set(np.argsort(-uncertainty)[:5])
    assert all(r['rule'] == RULE_QBC for r in selection.records)
    assert [r['uncertainty'] for r in selection.records] == sorted(uncertainty[selection.indices], reverse=True)


def test_diversity_spreads_a_batch_over_uncertain_regions():
    points, labels = clusters()
    # cluster 0 is the most uncertain everywhere; clusters 1 and 2 are a bit less so; 3 is known
    uncertainty = np.choose(labels, [1.0, 0.8, 0.8, 0.1]) + np.random.default_rng(2).random(len(points)) * 0.01
    greedy = select_batch(uncertainty, points, 3, diversity=0.0)
    diverse = select_batch(uncertainty, points, 3, diversity=0.5)
    assert set(labels[greedy.indices]) == {0}
    assert set(labels[diverse.indices]) == {0, 1, 2}


def test_trust_window_and_labelled_structures_shape_the_batch():
    points, labels = clusters()
    uncertainty = np.choose(labels, [0.05, 0.2, 0.25, 5.0])
    selection = select_batch(uncertainty, points, 10, trust=TrustLevels(0.1, 1.0), diversity=0.3)
    assert set(labels[selection.indices]) <= {1, 2}
    assert selection.counts['accurate'] == 40 and selection.counts['failed'] == 40
    # cluster 1 already labelled: the batch starts in cluster 2
    labelled = points[labels == 1][:5]
    selection = select_batch(uncertainty, points, 1, trust=TrustLevels(0.1, 1.0), labelled_descriptors=labelled)
    assert labels[selection.indices[0]] == 2
    assert selection.records[0]['distance'] > 0


def test_budget_limits_the_batch_by_cost():
    points, _ = clusters()
    uncertainty = np.linspace(1.0, 2.0, len(points))
    costs = np.where(np.arange(len(points)) % 2 == 0, 10.0, 1.0)
    selection = select_batch(uncertainty, points, 50, costs=costs, budget=25.0, diversity=0.0)
    spent = costs[selection.indices].sum()
    assert spent <= 25.0 and selection.budget_left == pytest.approx(25.0 - spent)
    # cheap structures are worth more per unit of cost: the batch is mostly cheap ones
    assert np.sum(costs[selection.indices] == 1.0) >= 15
    with pytest.raises(ValueError, match='positive'):
        select_batch(uncertainty, points, 5, costs=np.zeros(len(points)))


def test_random_baseline_excludes_and_is_seeded():
    selection = select_random(100, 10, seed=3, exclude=range(50))
    assert len(selection.indices) == 10 and selection.indices.min() >= 50
    assert np.array_equal(selection.indices, select_random(100, 10, seed=3, exclude=range(50)).indices)


def test_lower_confidence_bound_prefers_uncertain_near_misses():
    value = np.array([1.0, 1.2, 3.0])
    spread = np.array([0.01, 0.5, 0.01])
    bound, order = lower_confidence_bound(value, spread, kappa=1.0)
    assert list(order) == [1, 0, 2] and bound[1] == pytest.approx(0.7)
    _, order = lower_confidence_bound(value, spread, maximise=True)
    assert order[0] == 2


def test_probability_of_hit_does_not_rank_the_least_certain_first():
    """Minimising with hits at <= 1.0: a confident prediction just inside the threshold beats a far miss with a huge
    spread, which the confidence bound would put first; a near miss with some spread beats a confident far miss."""
    value = np.array([0.9, 5.0, 1.2, 3.0])
    spread = np.array([0.1, 6.0, 0.5, 0.01])
    bound, lcb_order = lower_confidence_bound(value, spread, kappa=1.0)
    assert lcb_order[0] == 1  # the bound's choice: the least certain molecule
    probability, order = probability_of_hit(value, spread, 1.0)
    assert list(order) == [0, 2, 1, 3]
    assert probability[0] == pytest.approx(0.841, abs=1e-3) and probability[3] < 1e-6
    # maximising mirrors it; equal probabilities fall back on the predicted value
    probability, order = probability_of_hit(-value, spread, -1.0, maximise=True)
    assert list(order) == [0, 2, 1, 3]
    _, order = probability_of_hit(np.array([2.0, 3.0, 0.0]), np.zeros(3), 1.0)
    assert list(order) == [2, 0, 1]
    with pytest.raises(ValueError, match='one spread per value'):
        probability_of_hit(value, spread[:2], 1.0)
    with pytest.raises(ValueError, match='finite'):
        probability_of_hit(value, spread, float('nan'))


def test_stop_rules():
    rules = StopRules(max_labels={'hf/sto-3g': 100}, max_cpu_seconds=1000, target_error=0.05, plateau_window=2)
    history = [IterationRecord(labels={'hf/sto-3g': 20}, cpu_seconds=10, validation_error=0.3, uncertainty=1.0, selected=5)]
    assert check_stop(history, rules) is None
    assert 'target error' in check_stop([IterationRecord({'hf/sto-3g': 20}, 10, 0.04, 1.0, 5)], rules)
    assert 'label budget' in check_stop([IterationRecord({'hf/sto-3g': 100}, 10, 0.3, 1.0, 5)], rules)
    assert 'CPU budget' in check_stop([IterationRecord({'hf/sto-3g': 20}, 2000, 0.3, 1.0, 5)], rules)
    falling = [IterationRecord({'x': 1}, 0, 0.3, u, 5) for u in (1.0, 0.7, 0.5)]
    assert check_stop(falling, rules) is None
    flat = [IterationRecord({'x': 1}, 0, 0.3, u, 5) for u in (1.0, 0.99, 0.98)]
    assert 'plateau' in check_stop(flat, rules) and 'fell by only 2.0 %' in check_stop(flat, rules)
    rising = [IterationRecord({'x': 1}, 0, 0.3, u, 5) for u in (1.0, 1.2, 1.1)]
    assert 'uncertainty rose by 10.0 %' in check_stop(rising, rules)  # the lowest of the window against the first
    empty = [IterationRecord({'x': 1}, 0, 0.3, 1.0, 5), IterationRecord({'x': 1}, 0, 0.3, 0.5, 0)]
    assert 'trust window' in check_stop(empty, rules)
