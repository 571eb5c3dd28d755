"""Active learning without AiiDA: which structures to label next, how far to trust the committee, when to stop.

Everything here works on arrays (numpy only), so the same code runs inside a selection calcfunction, in a benchmark
that replays strategies on a labelled pool, and on a laptop.

- ``farthest_point_sampling``: a diverse initial set (greedy max-min distance on descriptors, seeded start).
- ``max_force_spread``: DP-GEN's model deviation, the largest over atoms of the members' force standard deviation;
  for potentials the signal that tracks the error (the committee's energy spread barely does).
- ``TrustLevels`` / ``adaptive_trust_levels``: the lower and upper spread thresholds, derived from the current
  committee's spread and error on held-out frames (labelled, never fitted) instead of being tuned by hand;
  ``max_force_error`` is the error the max force spread stands for.
- ``select_batch``: query by committee on that signal inside the trust window, with a diversity term so that a batch
  is not N copies of one region, within a label or CPU budget priced per structure.
- ``lower_confidence_bound`` / ``probability_of_hit``: ranking a library for verification, optimistic or (with a
  hit threshold) by the chance of a hit.
- ``check_stop``: label or CPU budget spent, target error reached on a fixed validation set, uncertainty plateau.
"""

from __future__ import annotations

import dataclasses
import math
import typing as t

import numpy as np

#: Selection rules recorded with each chosen structure (the "why was this labelled" answer).
RULE_FPS = 'farthest-point'
RULE_QBC = 'query-by-committee'
RULE_RANDOM = 'random'


def _standardised(descriptors: np.ndarray) -> np.ndarray:
    descriptors = np.asarray(descriptors, dtype=float)
    if descriptors.ndim != 2:
        raise ValueError(f'descriptors must be a (structures, features) array, got shape {descriptors.shape}')
    scale = descriptors.std(axis=0)
    return (descriptors - descriptors.mean(axis=0)) / np.where(scale > 1e-12, scale, 1.0)


def _min_distances(points: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Distance of every row of ``points`` to its nearest row of ``anchors`` (inf without anchors)."""
    if len(anchors) == 0:
        return np.full(len(points), np.inf)
    best = np.full(len(points), np.inf)
    for start in range(0, len(anchors), 256):  # blocks keep memory at (points x 256)
        block = anchors[start : start + 256]
        squared = ((points[:, None, :] - block[None, :, :]) ** 2).sum(-1)
        best = np.minimum(best, squared.min(axis=1))
    return np.sqrt(best)


def farthest_point_sampling(
    descriptors: np.ndarray,
    count: int,
    *,
    seed: int = 0,
    selected: t.Sequence[int] = (),
    standardise: bool = True,
) -> np.ndarray:
    """Greedy farthest-point sampling: each new point maximises its distance to those already chosen.

    :param descriptors: (structures, features); each feature is scaled to unit variance first with ``standardise``,
        so that no block of features dominates the distance by its units.
    :param count: how many new indices to return (fewer if the pool runs out).
    :param seed: picks the first point when ``selected`` is empty (FPS is otherwise deterministic).
    :param selected: indices already in the training set; new points keep away from them too.
    :return: the chosen indices in the order they were picked.
    """
    points = _standardised(descriptors) if standardise else np.asarray(descriptors, dtype=float)
    available = len(points) - len(set(selected))
    count = min(int(count), available)
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    distance = _min_distances(points, points[list(selected)])
    chosen: list[int] = []
    if not len(selected):
        first = int(np.random.default_rng(seed).integers(len(points)))
        chosen.append(first)
        distance = np.linalg.norm(points - points[first], axis=1)
    distance[list(selected)] = -np.inf
    while len(chosen) < count:
        distance[chosen] = -np.inf
        index = int(np.argmax(distance))
        chosen.append(index)
        distance = np.minimum(distance, np.linalg.norm(points - points[index], axis=1))
    return np.asarray(chosen, dtype=np.int64)


def max_force_spread(member_forces: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """DP-GEN's force model deviation per structure: ``max_i sqrt(<|F_i - <F_i>|^2>)`` over its atoms ``i``.

    :param member_forces: (members, total atoms, 3) forces of each member (eV/Å), structures stored flat.
    :param offsets: structure ``k`` spans atoms ``offsets[k]:offsets[k + 1]``.
    :return: (structures,) in eV/Å.
    """
    member_forces = np.asarray(member_forces, dtype=float)
    if member_forces.ndim != 3 or member_forces.shape[2] != 3:
        raise ValueError(f'member forces must have shape (members, atoms, 3), got {member_forces.shape}')
    deviation = member_forces - member_forces.mean(axis=0, keepdims=True)
    per_atom = np.sqrt((deviation**2).sum(-1).mean(0))
    offsets = np.asarray(offsets, dtype=np.int64)
    return np.maximum.reduceat(per_atom, offsets[:-1]) if len(offsets) > 1 else np.zeros(0)


@dataclasses.dataclass(frozen=True)
class TrustLevels:
    """Spread window of the committee: below ``lower`` it is as sure as on data it was validated on (nothing to learn),
    above ``upper`` a structure is more likely unphysical than informative (DP-GEN's trust levels)."""

    lower: float
    upper: float
    source: str = 'fixed'

    def __post_init__(self) -> None:
        if not (0 <= self.lower < self.upper):
            raise ValueError(f'trust levels need 0 <= lower < upper, got lower={self.lower}, upper={self.upper}')

    def classify(self, spread: np.ndarray) -> np.ndarray:
        """``'accurate'``, ``'candidate'`` or ``'failed'`` per value."""
        spread = np.asarray(spread, dtype=float)
        out = np.full(spread.shape, 'candidate', dtype=object)
        out[spread < self.lower] = 'accurate'
        out[~(spread < self.upper)] = 'failed'  # NaN spreads count as failed too
        return out

    def as_dict(self) -> dict[str, t.Any]:
        """JSON-ready (an infinite upper level, i.e. none, is ``None``)."""
        return {'lower': self.lower, 'upper': self.upper if math.isfinite(self.upper) else None, 'source': self.source}


def max_force_error(predicted_forces: np.ndarray, reference_forces: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per structure, the largest over its atoms of ``|F_predicted - F_reference|`` (eV/Å): the error that DP-GEN's
    model deviation (``max_force_spread``) stands for, measured on labelled frames.

    :param predicted_forces: (total atoms, 3) committee-mean forces, structures stored flat.
    :param reference_forces: (total atoms, 3) labels in the same order.
    """
    predicted = np.asarray(predicted_forces, dtype=float)
    reference = np.asarray(reference_forces, dtype=float)
    if predicted.shape != reference.shape or predicted.ndim != 2 or predicted.shape[1] != 3:
        raise ValueError(f'forces must be two (atoms, 3) arrays of one shape, got {predicted.shape} and {reference.shape}')
    per_atom = np.linalg.norm(predicted - reference, axis=1)
    offsets = np.asarray(offsets, dtype=np.int64)
    return np.maximum.reduceat(per_atom, offsets[:-1]) if len(offsets) > 1 else np.zeros(0)


def adaptive_trust_levels(
    validation_spread: np.ndarray,
    validation_error: np.ndarray,
    *,
    quantile: float = 0.5,
    tolerance: float | None = None,
    miss_rate: float = 0.1,
    min_support: int = 10,
    upper_ratio: float = 3.0,
    minimum: float = 0.0,
    maximum: float | None = None,
) -> TrustLevels:
    """Trust levels from the current committee on held-out frames: labelled, but never fitted by it (the campaign's
    fixed validation set).

    The spread on the committee's own training frames says nothing about its error elsewhere (it is small there by
    construction), so both levels come from frames it did not fit, where the error is known:

    - ``lower``: the largest spread ``s`` such that, of the held-out frames with spread at or below ``s``, at most
      ``miss_rate`` have an error above the accepted one: a structure waved through as accurate is within the accepted
      error with ``1 - miss_rate`` precision, as measured on frames the committee never fitted. The accepted error is
      ``tolerance`` (the signal's unit: eV/Å for the max force spread) or, without one, the ``quantile`` of the
      held-out errors (the median by default: "as good as the committee typically is on new frames"). A spread that
      does not track the error gives a low ``lower`` (the least uncertain frames miss as often as any), so a committee
      whose spread cannot be trusted gets no structure waved through as accurate. The level needs at least
      ``min_support`` held-out frames below it (a 10 % miss rate cannot be measured on 2 frames): with fewer, nothing
      counts as accurate and every structure below the upper level is a candidate.
    - ``upper``: ``upper_ratio`` times the largest spread on the held-out frames (at least ``upper_ratio`` times
      ``lower``, DP-GEN's usual 0.05 / 0.15 eV/Å is a ratio of 3), capped at ``maximum`` (a physical bound a user may
      set, e.g. 1 eV/Å): a candidate that many times less certain than on any real held-out frame is more likely
      unphysical than informative.

    Both levels move with the committee, instead of staying where hand-tuned thresholds put them for the first model.

    :param validation_spread: the signal per held-out frame (e.g. ``max_force_spread``).
    :param validation_error: the true error per held-out frame in the same unit (e.g. ``max_force_error``).
    :param minimum: floor of ``lower``.
    """
    spread = np.asarray(validation_spread, dtype=float)
    error = np.asarray(validation_error, dtype=float)
    if spread.shape != error.shape or spread.ndim != 1:
        raise ValueError(f'one spread and one error per held-out frame, got shapes {spread.shape} and {error.shape}')
    finite = np.isfinite(spread) & np.isfinite(error)
    spread, error = spread[finite], np.abs(error[finite])
    if len(spread) == 0:
        raise ValueError('adaptive trust levels need the committee spread and error on at least one held-out frame')
    if not 0 < quantile < 1:
        raise ValueError(f'quantile must be between 0 and 1, got {quantile}')
    if upper_ratio <= 1:
        raise ValueError(f'upper_ratio must be above 1, got {upper_ratio}')
    if not 0 <= miss_rate < 1:
        raise ValueError(f'miss_rate must be between 0 and 1, got {miss_rate}')
    if min_support < 1:
        raise ValueError(f'min_support must be at least 1 frame, got {min_support}')
    if tolerance is not None and not tolerance > 0:
        raise ValueError(f'tolerance must be a positive error, got {tolerance}')
    accepted = float(np.quantile(error, quantile)) if tolerance is None else float(tolerance)
    order = np.argsort(spread, kind='stable')
    sorted_spread = spread[order]
    missed = np.cumsum(error[order] > accepted) / np.arange(1, len(order) + 1)
    # frames with equal spreads go together: only the last of a run of ties may set the level
    last_of_tie = np.append(sorted_spread[1:] > sorted_spread[:-1], True)
    within = np.flatnonzero((missed <= miss_rate) & last_of_tie)
    count = int(within[-1]) + 1 if len(within) else 0
    if count < min_support:
        count = 0  # too few held-out frames to show the committee is accurate anywhere
    lower = max(float(sorted_spread[count - 1]) if count else 0.0, minimum, 1e-12)
    upper = upper_ratio * max(lower, float(sorted_spread[-1]))
    if maximum is not None:
        if maximum <= lower:
            raise ValueError(
                f'the maximum trust level {maximum} is below the lower level {lower:.4g} the committee earns on its '
                'held-out frames; raise the maximum or retrain the committee'
            )
        upper = min(upper, maximum)
    what = f'tolerance {accepted:.4g}' if tolerance is not None else f'q{quantile:g} of their errors, {accepted:.4g}'
    return TrustLevels(
        lower=lower,
        upper=upper,
        source=f'adaptive: {count} of {len(spread)} held-out frames below lower, at most {miss_rate:.0%} of them above '
        f'{what} (at least {min_support} needed)',
    )


@dataclasses.dataclass
class Selection:
    """Structures chosen for labelling, with the reason for each.

    :param indices: positions in the candidate arrays, in the order chosen.
    :param records: per chosen structure: ``index``, ``rule``, ``uncertainty``, ``distance`` (to the nearest labelled
        or already chosen structure, standardised descriptor units), ``score``, ``cost``.
    :param counts: how many candidates were ``accurate`` (below the lower trust level), ``failed`` (above the upper
        one), ``candidate``, and how many eligible ones did not fit the budget (``over_budget``).
    """

    indices: np.ndarray
    records: list[dict[str, t.Any]]
    counts: dict[str, int]
    trust: TrustLevels | None = None
    budget_left: float | None = None

    def as_dict(self) -> dict[str, t.Any]:
        return {
            'indices': [int(i) for i in self.indices],
            'records': self.records,
            'counts': self.counts,
            'trust': None if self.trust is None else self.trust.as_dict(),
            'budget_left': self.budget_left,
        }


def _reference_distance(distance: np.ndarray, eligible: np.ndarray) -> float | None:
    """Scale of the diversity term: the largest finite distance of an eligible candidate (``None``: none yet)."""
    finite = distance[np.isfinite(distance) & eligible]
    if not len(finite):
        return None
    return float(finite.max()) if finite.max() > 0 else 1.0


def select_batch(
    uncertainty: np.ndarray,
    descriptors: np.ndarray,
    count: int,
    *,
    labelled_descriptors: np.ndarray | None = None,
    trust: TrustLevels | None = None,
    diversity: float = 0.5,
    costs: np.ndarray | None = None,
    budget: float | None = None,
    seed: int = 0,
) -> Selection:
    """Query by committee with a diversity term, inside the trust window and a budget.

    Greedy: each pick maximises ``(1 - diversity) * u / u_max + diversity * d / d_ref``, divided by the structure's
    relative cost when ``costs`` are given, where ``u`` is the uncertainty (the error-tracking signal: max force
    spread for potentials, calibrated spread for properties), ``d`` the distance to the nearest labelled or already
    picked structure and ``d_ref`` the largest such distance among eligible candidates before the first pick (after
    it, when nothing is labelled yet). After each pick the distances are
    updated, so the next pick is pushed away from it: a batch spreads over several uncertain regions.

    :param count: largest batch size; fewer are returned when the window or the budget allows fewer.
    :param diversity: 0 is pure query by committee (top-``count`` spreads), 1 is farthest-point sampling among the
        eligible candidates.
    :param costs: per candidate (e.g. CPU seconds of its reference calculation at the level it will be labelled at).
    :param budget: the most the batch may cost in the units of ``costs`` (or in labels, without ``costs``).
    :param seed: breaks exact ties reproducibly.
    """
    uncertainty = np.asarray(uncertainty, dtype=float)
    size = len(uncertainty)
    if not 0 <= diversity <= 1:
        raise ValueError(f'diversity must be between 0 and 1, got {diversity}')
    points = np.asarray(descriptors, dtype=float)
    if len(points) != size:
        raise ValueError(f'{len(points)} descriptors for {size} candidates')
    costs = np.ones(size) if costs is None else np.asarray(costs, dtype=float)
    if len(costs) != size or np.any(~np.isfinite(costs)) or np.any(costs <= 0):
        raise ValueError('costs must be one positive finite value per candidate')

    # standardise candidates and labelled structures together, so distances between the two sets are comparable
    labelled = np.zeros((0, points.shape[1])) if labelled_descriptors is None else np.asarray(labelled_descriptors)
    both = _standardised(np.concatenate([points, labelled])) if len(points) + len(labelled) > 1 else points
    points, labelled = both[:size], both[size:]

    status = trust.classify(uncertainty) if trust is not None else np.full(size, 'candidate', dtype=object)
    status[~np.isfinite(uncertainty)] = 'failed'
    counts = {name: int(np.sum(status == name)) for name in ('accurate', 'candidate', 'failed')}
    eligible = status == 'candidate'
    remaining = math.inf if budget is None else float(budget)

    distance = _min_distances(points, labelled)
    reference_distance = _reference_distance(distance, eligible)
    top = float(uncertainty[eligible].max()) if eligible.any() else 1.0
    top = top if top > 0 else 1.0
    relative_cost = costs / np.median(costs[eligible]) if eligible.any() else costs
    tie_break = np.random.default_rng(seed).random(size) * 1e-9

    records: list[dict[str, t.Any]] = []
    chosen: list[int] = []
    over_budget = 0
    while len(chosen) < count and eligible.any():
        spread_term = uncertainty / top
        distance_term = distance / reference_distance if reference_distance else np.ones(size)
        score = ((1 - diversity) * spread_term + diversity * distance_term) / relative_cost + tie_break
        score[~eligible] = -np.inf
        index = int(np.argmax(score))
        if costs[index] > remaining:
            eligible[index] = False  # too expensive for what is left; a cheaper one may still fit
            over_budget += 1
            continue
        chosen.append(index)
        eligible[index] = False
        remaining -= costs[index]
        records.append(
            {
                'index': index,
                'rule': RULE_QBC,
                'uncertainty': float(uncertainty[index]),
                'distance': float(distance[index]) if np.isfinite(distance[index]) else None,
                'score': float(score[index]),
                'cost': float(costs[index]),
                'diversity': float(diversity),
            }
        )
        distance = np.minimum(distance, np.linalg.norm(points - points[index], axis=1))
        if reference_distance is None:  # nothing was labelled: distances are measured from the first pick on
            reference_distance = _reference_distance(distance, eligible)
    counts['over_budget'] = over_budget
    return Selection(
        indices=np.asarray(chosen, dtype=np.int64),
        records=records,
        counts=counts,
        trust=trust,
        budget_left=None if budget is None else remaining,
    )


def select_random(size: int, count: int, *, seed: int, exclude: t.Sequence[int] = ()) -> Selection:
    """The baseline: ``count`` indices drawn uniformly without replacement (records say so)."""
    pool = np.setdiff1d(np.arange(size), np.asarray(exclude, dtype=np.int64))
    chosen = np.random.default_rng(seed).permutation(pool)[:count]
    records = [{'index': int(i), 'rule': RULE_RANDOM} for i in chosen]
    return Selection(indices=chosen.astype(np.int64), records=records, counts={'candidate': len(pool)})


def lower_confidence_bound(value: np.ndarray, spread: np.ndarray, *, kappa: float = 1.0, maximise: bool = False):
    """Optimistic ranking key for screening: ``value - kappa * spread`` when minimising the objective (``+`` when
    maximising), so a molecule whose calibrated uncertainty could take it into the top is verified rather than missed.

    :return: the bound and the ranking (best first).
    """
    value = np.asarray(value, dtype=float)
    spread = np.asarray(spread, dtype=float)
    bound = value + kappa * spread if maximise else value - kappa * spread
    order = np.argsort(-bound if maximise else bound, kind='stable')
    return bound, order


def probability_of_hit(
    value: np.ndarray, spread: np.ndarray, threshold: float, *, maximise: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Ranking key for verifying the top k when a hit is defined by ``threshold``: the probability that the true value
    is a hit, ``Phi((threshold - value) / spread)`` when minimising (``Phi((value - threshold) / spread)`` when
    maximising), with ``spread`` the calibrated standard deviation of the error.

    Sorting by it maximises the expected number of hits among the top k. Unlike the confidence bound, a large spread
    helps only a molecule predicted on the wrong side of the threshold, and only by the chance it gives of crossing
    it: a committee whose spread tracks its error weakly (small calibration sets, heavy-tailed spreads) no longer ranks
    the least certain molecules first. Measured in ``python -m benchmarks active_learning``.

    :return: the probabilities and the ranking (most probable hit first; equal probabilities by the predicted value).
    """
    from scipy.special import ndtr

    value = np.asarray(value, dtype=float)
    spread = np.maximum(np.asarray(spread, dtype=float), 1e-12)
    if value.shape != spread.shape:
        raise ValueError(f'one spread per value, got shapes {value.shape} and {spread.shape}')
    if not math.isfinite(threshold):
        raise ValueError(f'the hit threshold must be a finite value, got {threshold}')
    margin = value - threshold if maximise else threshold - value
    probability = ndtr(margin / spread)
    probability[~np.isfinite(value)] = 0.0
    order = np.lexsort((-value if maximise else value, -probability))
    return probability, order


@dataclasses.dataclass
class IterationRecord:
    """What one iteration of the loop measured, for the stop rules.

    :param labels: cumulative labels per level of theory.
    :param cpu_seconds: cumulative CPU time of the reference calculations.
    :param validation_error: error of the current model on the fixed validation set (its unit is the target's).
    :param uncertainty: a summary of the candidates' uncertainty (e.g. the mean max force spread).
    :param selected: structures chosen in this iteration.
    """

    labels: dict[str, int]
    cpu_seconds: float = 0.0
    validation_error: float | None = None
    uncertainty: float | None = None
    selected: int = 0


@dataclasses.dataclass(frozen=True)
class StopRules:
    """Stop rules of the loop; ``None`` switches a rule off.

    :param max_labels: per level of theory, the most labels the campaign may spend.
    :param max_cpu_seconds: CPU time of reference calculations.
    :param target_error: stop once the validation error is at or below this.
    :param plateau_window: iterations over which the candidates' uncertainty is compared.
    :param plateau_tolerance: relative decrease below which the uncertainty counts as plateaued.
    :param max_iterations: a hard cap.
    """

    max_labels: dict[str, int] | None = None
    max_cpu_seconds: float | None = None
    target_error: float | None = None
    plateau_window: int | None = 3
    plateau_tolerance: float = 0.05
    max_iterations: int | None = None


def check_stop(history: t.Sequence[IterationRecord], rules: StopRules) -> str | None:
    """The first stop rule that holds after the last iteration of ``history``, as a sentence, or ``None``."""
    if not history:
        return None
    last = history[-1]
    error = last.validation_error
    if rules.target_error is not None and error is not None and error <= rules.target_error:
        return f'target error reached: validation error {error:.4g} <= {rules.target_error:.4g}'
    for level, limit in (rules.max_labels or {}).items():
        if last.labels.get(level, 0) >= limit:
            return f'label budget spent: {last.labels.get(level, 0)} {level} labels (budget {limit})'
    if rules.max_cpu_seconds is not None and last.cpu_seconds >= rules.max_cpu_seconds:
        return f'CPU budget spent: {last.cpu_seconds:.0f} s of reference calculations (budget {rules.max_cpu_seconds:.0f} s)'
    if rules.max_iterations is not None and len(history) >= rules.max_iterations:
        return f'iteration cap reached: {len(history)} iterations'
    if last.selected == 0:
        return 'no candidate left inside the trust window: the committee is confident over the explored region'
    window = rules.plateau_window
    if window:
        values = [r.uncertainty for r in history[-(window + 1) :] if r.uncertainty is not None]
        if len(values) == window + 1 and values[0] > 0:
            decrease = (values[0] - min(values[1:])) / values[0]
            if decrease < rules.plateau_tolerance:
                change = f'rose by {-100 * decrease:.1f} %' if decrease < 0 else f'fell by only {100 * decrease:.1f} %'
                return (
                    f'uncertainty plateau: candidates\' uncertainty {change} over the last {window} iterations '
                    f'(a fall of at least {100 * rules.plateau_tolerance:.0f} % keeps the campaign going)'
                )
    return None
