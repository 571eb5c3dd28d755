"""Uncertainty from a committee: spread recalibrated on held-out data, calibration error, conformal intervals.

A committee's raw spread (standard deviation over members) is a ranking of how unsure the model is, rarely an error
bar: members trained on overlapping data agree too much. Two corrections are fitted on held-out data that took no part
in training:

- a scale factor ``s`` such that Gaussian intervals ``± z_p * s * spread`` cover a fraction ``p`` of the errors at
  every level ``p`` (the miscalibration area is minimised); the calibration error is reported before and after;
- a split-conformal quantile ``q`` of ``|error| / spread`` such that ``prediction ± q * spread`` covers the true value
  with probability at least ``coverage`` (Vovk; Angelopoulos & Bates 2021), whatever the error distribution,
  provided the new structures are exchangeable with the held-out ones.
"""

from __future__ import annotations

import dataclasses
import math
import typing as t

import numpy as np

_FLOOR = 1e-12


@dataclasses.dataclass
class Calibration:
    """Fitted corrections of a committee spread (stored in the model's metadata).

    :param coverage: the coverage that was asked for. With ``size`` held-out structures a split-conformal interval can
        guarantee at most ``size / (size + 1)``; when that is less, the largest score is used and
        ``guaranteed_coverage`` says what the intervals hold at (``note()`` says why), never a silent None.
    """

    scale: float = 1.0
    conformal_quantile: float | None = None
    coverage: float = 0.9
    calibration_error_before: float | None = None
    calibration_error_after: float | None = None
    empirical_coverage: float | None = None
    size: int = 0

    def apply(self, spread: np.ndarray) -> np.ndarray:
        return np.asarray(spread) * self.scale

    def interval_halfwidth(self, spread: np.ndarray) -> np.ndarray | None:
        """Half-width of the conformal interval at ``guaranteed_coverage``, or ``None`` without a calibration set."""
        if self.conformal_quantile is None:
            return None
        return np.asarray(spread) * self.conformal_quantile

    @property
    def guaranteed_coverage(self) -> float | None:
        """The coverage the intervals hold at: the requested one, or ``size / (size + 1)`` when that is smaller."""
        if self.conformal_quantile is None or self.size < 1:
            return None
        return min(self.coverage, reachable_coverage(self.size))

    def note(self) -> str | None:
        """``None`` when the intervals hold at the requested coverage; otherwise one sentence saying why not."""
        if self.size < 1 or self.conformal_quantile is None:
            return (
                'no conformal interval: the model has no held-out calibration set; train with '
                'calibration_fraction > 0 (or a validation set)'
            )
        if reachable_coverage(self.size) < self.coverage:
            return (
                f'the calibration set of {self.size} structures is too small for coverage {self.coverage:g} '
                f'(it needs at least {minimum_calibration_size(self.coverage)}); intervals hold at the reachable '
                f'coverage {reachable_coverage(self.size):.3f}'
            )
        return None

    def as_dict(self) -> dict[str, t.Any]:
        return {**dataclasses.asdict(self), 'guaranteed_coverage': self.guaranteed_coverage, 'note': self.note()}

    @classmethod
    def from_dict(cls, values: dict[str, t.Any] | None) -> Calibration:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in (values or {}).items() if key in names})


def reachable_coverage(size: int) -> float:
    """The largest coverage a split-conformal interval from ``size`` held-out points guarantees: ``size/(size+1)``."""
    return size / (size + 1)


def minimum_calibration_size(coverage: float) -> int:
    """Fewest held-out points for which ``ceil((n + 1) * coverage) <= n``, i.e. ``n >= coverage / (1 - coverage)``."""
    return math.ceil(coverage / (1 - coverage) - 1e-9)


def fit_scale(spread: np.ndarray, error: np.ndarray) -> float:
    """Factor ``s`` that minimises the calibration error of ``s * spread`` on held-out data.

    Starts from the Gaussian maximum-likelihood value ``sqrt(mean((error / spread)^2))``, which a few outliers
    (common for extrapolating networks) inflate, then searches a log grid around it for the factor whose Gaussian
    intervals cover the errors best at every level; among equally good factors the one closest to the ML value wins.
    """
    spread = np.maximum(np.asarray(spread, dtype=float), _FLOOR)
    error = np.asarray(error, dtype=float)
    likelihood = float(np.sqrt(np.mean((error / spread) ** 2)))
    if not np.isfinite(likelihood) or likelihood <= 0:
        return 1.0
    grid = likelihood * np.exp(np.linspace(-np.log(30.0), np.log(3.0), 121))
    grid = np.append(grid, 1.0)  # the raw spread is a candidate: recalibration never makes the fitted data worse
    scores = np.array([calibration_error(factor * spread, error) for factor in grid])
    best = np.flatnonzero(scores <= scores.min() + 1e-12)
    return float(grid[best[np.argmin(np.abs(np.log(grid[best] / likelihood)))]])


def calibration_error(sigma: np.ndarray, error: np.ndarray, levels: int = 19) -> float:
    """Miscalibration area: mean |observed - expected| coverage of Gaussian intervals ``± z_p sigma``, p = 5..95 %.

    0 is perfect; 0.5 is the worst. Over- and under-confident spreads both increase it.
    """
    from scipy.special import ndtri

    sigma = np.maximum(np.asarray(sigma, dtype=float), _FLOOR)
    ratio = np.abs(np.asarray(error, dtype=float)) / sigma
    expected = np.linspace(0.05, 0.95, levels)
    observed = np.mean(ratio[:, None] <= ndtri(0.5 + expected / 2)[None, :], axis=0)
    return float(np.mean(np.abs(observed - expected)))


def conformal_quantile(spread: np.ndarray, error: np.ndarray, coverage: float) -> float:
    """Split-conformal quantile of the normalised scores ``|error| / spread`` for the requested ``coverage``.

    Uses the finite-sample rank ``ceil((n + 1) * coverage)``; with too few held-out points for that rank the
    quantile is infinite, which is the honest answer (the interval cannot be guaranteed).
    """
    if not 0 < coverage < 1:
        raise ValueError(f'coverage must be between 0 and 1, got {coverage}')
    scores = np.sort(np.abs(np.asarray(error, dtype=float)) / np.maximum(np.asarray(spread, dtype=float), _FLOOR))
    rank = math.ceil((len(scores) + 1) * coverage)
    if rank > len(scores):
        return math.inf
    return float(scores[rank - 1])


def calibrate(spread: np.ndarray, error: np.ndarray, coverage: float = 0.9) -> Calibration:
    """Fit the scale and the conformal quantile on held-out ``spread`` and signed ``error`` (prediction - truth)."""
    spread = np.asarray(spread, dtype=float)
    error = np.asarray(error, dtype=float)
    if len(spread) == 0:
        return Calibration(coverage=coverage)
    scale = fit_scale(spread, error)
    quantile = conformal_quantile(spread, error, coverage)
    if not math.isfinite(quantile):
        # too few points for the requested coverage: the largest score guarantees size / (size + 1) instead
        quantile = float(np.max(np.abs(error) / np.maximum(spread, _FLOOR)))
    return Calibration(
        scale=scale,
        conformal_quantile=quantile,
        coverage=coverage,
        calibration_error_before=calibration_error(spread, error),
        calibration_error_after=calibration_error(scale * spread, error),
        empirical_coverage=float(np.mean(np.abs(error) <= quantile * spread)),
        size=len(spread),
    )


def combine_spreads(*spreads: np.ndarray) -> np.ndarray:
    """Spreads of independent models whose predictions are added (Δ-learning): root of the sum of squares."""
    return np.sqrt(sum(np.asarray(s, dtype=float) ** 2 for s in spreads))
