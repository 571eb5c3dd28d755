"""Descriptors for diversity and the committee signals selection uses, on a committee trained on real HF labels."""

from __future__ import annotations

import numpy as np
import pytest
from aiida_mlqm.models.data import Structures
from aiida_mlqm.models.descriptors import aev_descriptors, committee_signals
from conftest import label_water


def rotated(structures: Structures, seed: int) -> Structures:
    from scipy.spatial.transform import Rotation

    matrix = Rotation.random(random_state=seed).as_matrix()
    return Structures(structures.numbers, structures.positions @ matrix.T + 1.5, structures.offsets)


def test_aev_descriptors_are_invariant_and_tell_geometries_apart(water_train):
    frames = water_train.subset(range(6))
    reference = aev_descriptors(frames, species=[1, 6, 8])
    assert reference.shape[0] == 6 and np.all(reference[:, reference.shape[1] // 3 : 2 * reference.shape[1] // 3] == 0)
    np.testing.assert_allclose(aev_descriptors(rotated(frames, 0), species=[1, 6, 8]), reference, atol=1e-8)
    swapped = Structures(frames.numbers, frames.positions.reshape(-1, 3, 3)[:, [0, 2, 1]].reshape(-1, 3), frames.offsets)
    np.testing.assert_allclose(aev_descriptors(swapped, species=[1, 6, 8]), reference, atol=1e-8)
    distances = np.linalg.norm(reference[:, None] - reference[None], axis=-1)
    assert distances[np.triu_indices(6, 1)].min() > 0
    with pytest.raises(ValueError, match='outside the descriptor species'):
        aev_descriptors(frames, species=[1, 6])


def test_committee_signals_agree_with_predict_and_grow_away_from_the_data(water_committee, water_test):
    # the session's committee (conftest): the signals need members that disagree off the data
    signals = committee_signals(water_committee, water_test)
    prediction = water_committee.predict(water_test, forces=True)
    np.testing.assert_allclose(signals['energy'], prediction.value, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(signals['forces'], prediction.forces, atol=1e-4)
    np.testing.assert_allclose(signals['energy_spread'], prediction.spread, rtol=1e-5, atol=1e-7)
    assert np.all(signals['max_force_spread'] > 0)
    far = label_water(16, seed=9, amplitude=0.25)
    far_spread = committee_signals(water_committee, far)['max_force_spread']
    assert np.median(far_spread) > 2 * np.median(signals['max_force_spread'])
    # the force spread tracks the force error across near and far frames (the reason selection uses it)
    from scipy.stats import spearmanr

    both = Structures(
        np.concatenate([water_test.numbers, far.numbers]), np.concatenate([water_test.positions, far.positions]),
        np.concatenate([water_test.offsets, far.offsets[1:] + water_test.offsets[-1]]),
        forces=np.concatenate([water_test.forces, far.forces]),
    )  # fmt: skip
    signals = committee_signals(water_committee, both)
    error = np.abs(signals['forces'] - both.forces).reshape(-1, 3, 3).max(axis=(1, 2))
    assert spearmanr(signals['max_force_spread'], error).statistic > 0.5
