"""Energy-only frames beside energy + force frames: the force loss is masked per frame."""

from __future__ import annotations

import numpy as np
import pytest
from aiida_mlqm.models.data import Structures, padded

HYPER = {
    'backend': 'torchani',
    'members': 2,
    'aev': 'compact',
    'hidden': [16],
    'epochs': 30,
    'batch_size': 8,
    'learning_rate': 3e-3,
    'validation_fraction': 0.15,
    'calibration_fraction': 0.15,
    'seed': 5,
}


def with_forces_on(data: Structures, present: np.ndarray, fill: float) -> Structures:
    """A copy of ``data`` whose frames without ``present`` carry ``fill`` in place of their forces."""
    mixed = data.subset(range(len(data)))
    atoms = np.repeat(present, mixed.sizes)
    mixed.forces = np.where(atoms[:, None], mixed.forces, fill)
    mixed.forces_present = present
    return mixed


def test_padded_batch_zeroes_forces_of_energy_only_frames(water_train):
    present = np.arange(len(water_train)) % 2 == 0
    batch = padded(with_forces_on(water_train, present, 1e6), np.arange(4))
    np.testing.assert_array_equal(batch['forces_present'], [True, False, True, False])
    assert np.all(batch['forces'][1] == 0) and np.all(np.abs(batch['forces'][0]) < 1e3)


def test_energy_only_frames_train_the_energy_term_only(water_train, water_test):
    """Forces of energy-only frames never reach the loss: any value there trains the very same model."""
    from aiida_mlqm.models.training import evaluate, train_committee

    present = np.arange(len(water_train)) % 3 != 0  # a third of the frames energy-only
    a = train_committee(with_forces_on(water_train, present, 0.0), HYPER, log=None)
    b = train_committee(with_forces_on(water_train, present, 1e4), HYPER, log=None)
    structures = water_test.subset(range(8))
    np.testing.assert_allclose(a.predict(structures).value, b.predict(structures).value, rtol=0, atol=1e-9)
    # force metrics count only frames with force labels: the 1e4 placeholders are not compared against
    train_metrics = evaluate(b, with_forces_on(water_train, present, 1e4))
    assert train_metrics['force_mae'] < 5.0
    # and the mixed model learns forces from the frames that have them: better forces than energies alone give
    energy_only = train_committee(
        Structures(water_train.numbers, water_train.positions, water_train.offsets, water_train.energy), HYPER, log=None
    )
    assert evaluate(a, water_test)['force_mae'] < evaluate(energy_only, water_test)['force_mae']


def test_training_on_several_levels_at_once_is_refused(water_train):
    from aiida_mlqm.models.errors import InvalidInputError
    from aiida_mlqm.models.training import train_committee

    data = water_train.subset(range(10))
    data.levels = ['hf/sto-3g'] * 5 + ['hf/6-31g'] * 5
    with pytest.raises(InvalidInputError, match='several levels'):
        train_committee(data, {**HYPER, 'epochs': 1}, log=None)
    assert len(data.at_level('hf/6-31g')) == 5
    with pytest.raises(ValueError, match='choose the level'):
        data.at_level(None)
