"""Calibration of a spread and conformal intervals, on errors whose distribution is known."""

from __future__ import annotations

import numpy as np
import pytest
from aiida_mlqm.models.uncertainty import calibrate, calibration_error, combine_spreads, conformal_quantile


def synthetic(seed: int, count: int, factor: float):
    """Errors drawn with standard deviation ``factor * spread``: a committee over- or under-confident by ``factor``."""
    rng = np.random.default_rng(seed)
    spread = rng.lognormal(-3.0, 0.6, count)
    return spread, rng.normal(0.0, factor * spread)


@pytest.mark.parametrize('factor', [0.3, 3.0])
def test_calibration_lowers_calibration_error_on_held_out_data(factor):
    spread, error = synthetic(0, 400, factor)
    calibration = calibrate(spread, error, coverage=0.9)
    assert calibration.scale == pytest.approx(factor, rel=0.2)
    held_spread, held_error = synthetic(1, 400, factor)
    before = calibration_error(held_spread, held_error)
    after = calibration_error(calibration.apply(held_spread), held_error)
    assert before > 0.15 and after < 0.05, (before, after)
    assert calibration.calibration_error_after < calibration.calibration_error_before


def test_conformal_interval_reaches_stated_coverage():
    spread, error = synthetic(2, 300, 2.0)
    calibration = calibrate(spread, error, coverage=0.8)
    held_spread, held_error = synthetic(3, 2000, 2.0)
    covered = np.mean(np.abs(held_error) <= calibration.interval_halfwidth(held_spread))
    assert 0.76 <= covered <= 0.86


def test_conformal_quantile_is_infinite_with_too_few_points():
    assert conformal_quantile(np.ones(5), np.ones(5), coverage=0.9) == np.inf
    with pytest.raises(ValueError, match='coverage'):
        conformal_quantile(np.ones(5), np.ones(5), coverage=1.5)


def test_combined_spread_adds_in_quadrature():
    np.testing.assert_allclose(combine_spreads(np.array([3.0]), np.array([4.0])), [5.0])
