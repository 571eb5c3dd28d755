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


def test_small_calibration_set_states_the_reachable_coverage():
    from aiida_mlqm.models.uncertainty import Calibration

    spread, error = synthetic(4, 5, 1.0)
    calibration = calibrate(spread, error, coverage=0.9)
    # five held-out points guarantee at most 5/6 coverage: the interval is the largest score, and it says so
    assert calibration.guaranteed_coverage == pytest.approx(5 / 6)
    note = calibration.note()
    assert '5 structures' in note and 'at least 9' in note and '0.833' in note
    assert np.all(np.abs(error) <= calibration.interval_halfwidth(spread) * (1 + 1e-12))
    assert Calibration.from_dict(calibration.as_dict()) == calibration
    assert calibration.as_dict()['note'] == note


def test_enough_points_hold_the_requested_coverage_without_a_note():
    from aiida_mlqm.models.uncertainty import Calibration, minimum_calibration_size

    spread, error = synthetic(5, 9, 1.0)
    assert minimum_calibration_size(0.9) == 9 and minimum_calibration_size(0.8) == 4
    calibration = calibrate(spread, error, coverage=0.9)
    assert calibration.guaranteed_coverage == 0.9 and calibration.note() is None
    assert 'no held-out calibration set' in Calibration().note() and Calibration().guaranteed_coverage is None
