"""Training on real PySCF labels: accuracy against a constant predictor, determinism, failures, calibration."""

from __future__ import annotations

import numpy as np
import pytest
from aiida_mlqm.models.training import evaluate, train_committee

TINY = {'backend': 'torchani', 'members': 2, 'aev': 'compact', 'hidden': [8], 'epochs': 3, 'batch_size': 16, 'seed': 11}


def test_committee_beats_constant_predictor(water_committee, water_train, water_test):
    metrics = evaluate(water_committee, water_test)
    constant_energy_mae = np.abs(water_test.energy - water_train.energy.mean()).mean()
    zero_force_mae = np.abs(water_test.forces).mean()
    assert metrics['energy_mae'] < 0.3 * constant_energy_mae, (metrics, constant_energy_mae)
    assert metrics['force_mae'] < 0.35 * zero_force_mae, (metrics, zero_force_mae)
    assert water_committee.metrics['validation']['energy_mae'] < water_committee.metrics['baseline_composition']['mae']


def test_training_metadata_records_what_happened(water_committee):
    metrics = water_committee.metrics
    assert metrics['num_train'] + metrics['num_validation'] + metrics['num_calibration'] == 56
    assert 1 <= metrics['best_epoch'] <= metrics['epochs_run']
    assert water_committee.hyperparameters['force_weight'] == 1.0  # chosen because the data have forces
    calibration = metrics['calibration']
    assert calibration['size'] == metrics['num_calibration'] and calibration['scale'] > 0
    assert calibration['calibration_error_after'] <= calibration['calibration_error_before'] + 1e-12


def test_deterministic_for_a_seed(water_train, capsys):
    first = train_committee(water_train, TINY, log=print)
    second = train_committee(water_train, TINY, log=None)
    other = train_committee(water_train, {**TINY, 'seed': 12}, log=None)
    structures = water_train.subset(range(5))
    np.testing.assert_array_equal(first.predict(structures).members, second.predict(structures).members)
    assert not np.allclose(first.predict(structures).members, other.predict(structures).members)
    printed = capsys.readouterr().out
    assert 'epoch    3/3' in printed and 'validation_loss' in printed


def test_members_differ_by_seed_and_bootstrap(water_train):
    committee = train_committee(water_train, TINY, log=None)
    members = committee.predict(water_train.subset(range(5))).members
    assert np.all(members.std(0) > 0)


def test_nan_loss_raises_specific_error(water_train):
    from aiida_mlqm.models.errors import NaNLossError

    broken = water_train.subset(range(len(water_train)))
    broken.energy = broken.energy.copy()
    broken.energy[[0, 7, 20, 33, 40, 50]] = np.nan  # labels that a failed reference calculation could leave behind
    with pytest.raises(NaNLossError, match='epoch 1'):
        train_committee(
            broken, {**TINY, 'calibration_fraction': 0, 'validation_fraction': 0.1, 'bootstrap': False}, log=None
        )


@pytest.mark.parametrize(
    'hyperparameters,message',
    [({'epoch': 3}, 'epoch: Extra inputs'), ({'aev': 'ani3x'}, 'unknown aev preset'), ({'members': 0}, 'members')],
)
def test_wrong_hyperparameters_are_named(water_train, hyperparameters, message):
    from aiida_mlqm.models.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=message):
        train_committee(water_train, hyperparameters, log=None)


def test_force_weight_without_forces_is_refused(water_train):
    from aiida_mlqm.models.errors import InvalidInputError

    no_forces = water_train.subset(range(20))
    no_forces.forces = None
    with pytest.raises(InvalidInputError, match='no forces'):
        train_committee(no_forces, {**TINY, 'force_weight': 1.0}, log=None)
    trained = train_committee(no_forces, TINY, log=None)  # default: energies only
    assert trained.hyperparameters['force_weight'] == 0.0


def test_calibration_is_held_out_and_intervals_cover(water_committee, water_test):
    """Conformal intervals fitted on held-out data cover new structures at about the stated rate."""
    prediction = water_committee.predict(water_test)
    assert prediction.coverage == 0.9 and prediction.interval is not None
    covered = np.mean(np.abs(prediction.value - water_test.energy) <= prediction.interval)
    # 32 test structures and an 11-point calibration set: allow sampling noise below the nominal 90 %
    assert covered >= 0.7, covered


def test_property_models_extensive_and_intensive(water_train, water_test):
    """A property committee learns a scalar per molecule: here the dipole-free stand-in 'energy per atom'."""
    data = water_train.subset(range(len(water_train)))
    data.target = data.energy / 3.0
    data.forces = None
    committee = train_committee(
        data,
        {**TINY, 'epochs': 200, 'patience': 50, 'extensive': False, 'hidden': [16], 'learning_rate': 3e-3},
        kind='property',
        log=None,
    )
    assert committee.kind == 'property'
    prediction = committee.predict(water_test)
    constant = np.abs(water_test.energy / 3.0 - data.target.mean()).mean()
    assert np.abs(prediction.value - water_test.energy / 3.0).mean() < 0.7 * constant
    with pytest.raises(ValueError, match='forces are only defined'):
        committee.predict(water_test, forces=True)


def test_split_keeps_every_element_in_training():
    """Three structures, the only one with N drawn into the validation block: it moves to training (a model that never
    saw N cannot validate on it), the held-out blocks keep what they can."""
    import numpy as np
    from aiida_mlqm.models.data import Structures
    from aiida_mlqm.models.data import keep_every_element

    numbers = [[8, 1, 1], [6, 1, 1, 1, 1], [7, 1, 1, 1], [8, 1, 1]]
    offsets = np.cumsum([0] + [len(n) for n in numbers])
    data = Structures(np.concatenate(numbers), np.zeros((offsets[-1], 3)), offsets)
    train, validation = keep_every_element(data, np.array([0, 1]), np.array([2, 3]))
    assert train.tolist() == [0, 1, 2] and validation.tolist() == [3]
    # nothing missing: nothing moves
    train, calibration, validation = keep_every_element(data, np.array([0, 1, 2]), np.array([3]), np.array([], dtype=int))
    assert train.tolist() == [0, 1, 2] and calibration.tolist() == [3] and validation.tolist() == []


def test_cover_elements_takes_the_rarest_element_first_and_stops_at_its_limit():
    """N (one atom) before C (one atom, higher Z is later) before O; a pick that brings two missing elements covers
    both; ``covered`` elements need no pick; the seeded draw is among the structures that have the element."""
    import numpy as np
    from aiida_mlqm.models.data import Structures, cover_elements

    numbers = [[8, 1, 1], [6, 1, 1, 1, 1], [7, 8], [8, 1, 1], [6, 8]]
    offsets = np.cumsum([0] + [len(n) for n in numbers])
    data = Structures(np.concatenate(numbers), np.zeros((offsets[-1], 3)), offsets)
    assert cover_elements(data, range(5)) == [2, 1]  # N (with O), then C; H came with the methane
    assert cover_elements(data, range(5), covered={7, 8}) == [1]
    assert cover_elements(data, range(5), limit=1) == [2]
    assert cover_elements(data, [0, 1, 3, 4]) == [1, 0]  # no N among the candidates: C, then H and O
    drawn = {cover_elements(data, range(5), rng=np.random.default_rng(seed))[1] for seed in range(20)}
    assert drawn <= {1, 4} and len(drawn) == 2  # C from the methane or from CO, both drawn over the seeds
