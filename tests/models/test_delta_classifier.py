"""Δ-learning on two real levels of theory, and calibrated classifiers saved with skops."""

from __future__ import annotations

import numpy as np
import pytest
from aiida_mlqm.models.data import Structures
from aiida_mlqm.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV


@pytest.fixture(scope='module')
def two_levels(water_train):
    """HF/STO-3G for all 56 geometries, HF/6-31G for 16 of them (same geometries, paired by key)."""
    from pyscf import gto, lib, scf

    expensive = water_train.subset(range(16))
    energies, forces = [], []
    for index in range(len(expensive)):
        _numbers, positions = expensive.frame(index)
        molecule = gto.M(atom=list(zip('OHH', positions)), basis='6-31g', unit='Angstrom', verbose=0)
        with lib.with_omp_threads(1):
            mean_field = scf.RHF(molecule)
            energies.append(mean_field.kernel() * HARTREE_TO_EV)
            forces.append(-mean_field.nuc_grad_method().kernel() * HARTREE_TO_EV / BOHR_TO_ANGSTROM)
    keys = [f'geometry-{i}' for i in range(len(water_train))]
    cheap = water_train.subset(range(len(water_train)))
    cheap.levels, cheap.keys = ['hf/sto-3g'] * len(cheap), keys
    expensive.energy, expensive.forces = np.array(energies), np.concatenate(forces)
    expensive.levels, expensive.keys = ['hf/6-31g'] * len(expensive), keys[:16]
    merged = cheap
    combined = Structures(
        np.concatenate([merged.numbers, expensive.numbers]),
        np.concatenate([merged.positions, expensive.positions]),
        np.concatenate([merged.offsets, merged.offsets[-1] + expensive.offsets[1:]]),
        energy=np.concatenate([merged.energy, expensive.energy]),
        forces=np.concatenate([merged.forces, expensive.forces]),
        levels=merged.levels + expensive.levels,
        keys=merged.keys + expensive.keys,
    )
    return combined


def test_pairing_by_key(two_levels):
    from aiida_mlqm.models.delta import pair_levels

    base, expensive, difference = pair_levels(two_levels, 'hf/sto-3g', 'hf/6-31g')
    assert len(base) == 56 and len(expensive) == len(difference) == 16
    np.testing.assert_allclose(difference.energy, expensive.energy - base.energy[:16])


HYPER = {'backend': 'torchani', 'aev': 'compact', 'hidden': [32, 16], 'epochs': 80, 'batch_size': 8, 'learning_rate': 3e-3, 'seed': 1}


def test_delta_on_cheap_qm_beats_cheap_qm_alone_and_round_trips(two_levels, tmp_path):
    """The default Δ model adds a learned correction to the base-level QM energy of each structure."""
    from aiida_mlqm.models.delta import DeltaModel, train_delta
    from aiida_mlqm.models.registry import load_model

    model = train_delta(
        two_levels,
        base_level='hf/sto-3g',
        target_level='hf/6-31g',
        hyperparameters={**HYPER, 'hidden': [8]},
        holdout_fraction=0.25,
        log=None,
    )
    assert isinstance(model, DeltaModel) and model.kind == 'delta'
    holdout = model.metrics['holdout']
    # the 6-31G - STO-3G difference is hundreds of eV; the cheap level alone misses it entirely
    assert holdout['energy_mae'] < 0.05 * holdout['base_only_energy_mae']
    # base-level rows 20..22 have no 6-31G label: their prediction is their own STO-3G energy + the correction
    structures = two_levels.subset([20, 21, 22])
    prediction = model.predict(structures, forces=True)
    correction = model.correction.predict(structures, forces=True)
    np.testing.assert_allclose(prediction.value, structures.energy + correction.value)
    np.testing.assert_allclose(prediction.spread, correction.spread)
    np.testing.assert_allclose(prediction.forces, structures.forces + correction.forces)
    # a 6-31G row takes the STO-3G energy of its structure (paired by key), not its own label
    paired = model.predict(two_levels.subset([0, 56]))
    np.testing.assert_allclose(paired.value[1], paired.value[0])
    np.testing.assert_allclose(paired.value[0], two_levels.energy[0] + model.correction.predict(two_levels.subset([0])).value[0])
    model.save(tmp_path / 'delta')
    loaded = load_model(tmp_path / 'delta')
    assert isinstance(loaded, DeltaModel)
    np.testing.assert_array_equal(loaded.predict(structures, forces=True).value, prediction.value)


def test_delta_prediction_needs_base_level_energies(two_levels):
    from aiida_mlqm.models.delta import DeltaModel, train_delta
    from aiida_mlqm.models.errors import InvalidInputError

    model = train_delta(
        two_levels, base_level='hf/sto-3g', target_level='hf/6-31g', hyperparameters={**HYPER, 'epochs': 2}, log=None
    )
    unlabelled = two_levels.subset([56, 57])
    unlabelled.keys = ['other-1', 'other-2']
    with pytest.raises(InvalidInputError, match='no hf/sto-3g energy.*mlqm reference --level hf/sto-3g'):
        model.predict(unlabelled)
    assert isinstance(model, DeltaModel)


def test_ml_base_delta_model_beats_base_alone_and_round_trips(two_levels, tmp_path):
    from aiida_mlqm.models.delta import MLBaseDeltaModel, train_ml_base_delta
    from aiida_mlqm.models.registry import load_model

    model = train_ml_base_delta(
        two_levels,
        base_level='hf/sto-3g',
        target_level='hf/6-31g',
        base_hyperparameters=HYPER,
        correction_hyperparameters={**HYPER, 'hidden': [8], 'epochs': 80},
        holdout_fraction=0.25,
        log=None,
    )
    holdout = model.metrics['holdout']
    assert holdout['energy_mae'] < 0.05 * holdout['base_only_energy_mae']
    structures = two_levels.subset(range(3))
    prediction = model.predict(structures, forces=True)
    base, correction = model.base.predict(structures), model.correction.predict(structures)
    np.testing.assert_allclose(prediction.value, base.value + correction.value)
    np.testing.assert_allclose(prediction.spread, np.hypot(base.spread, correction.spread))
    model.save(tmp_path / 'delta')
    loaded = load_model(tmp_path / 'delta')
    assert isinstance(loaded, MLBaseDeltaModel) and loaded.kind == 'ml_base_delta'
    np.testing.assert_array_equal(loaded.predict(structures, forces=True).forces, prediction.forces)


def test_delta_needs_both_levels(two_levels):
    from aiida_mlqm.models.delta import pair_levels
    from aiida_mlqm.models.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match='ccsd'):
        pair_levels(two_levels, 'hf/sto-3g', 'ccsd')


def classification_data(seed: int = 0, count: int = 400):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(count, 3))
    probability = 1 / (1 + np.exp(-(4.0 * features[:, 0] - 2.0 * features[:, 1])))
    labels = np.where(rng.random(count) < probability, 'multireference', 'single-reference')
    return features, labels


def test_classifier_calibrated_and_skops_round_trip(tmp_path):
    from aiida_mlqm.models.classifier import train_classifier
    from aiida_mlqm.models.registry import load_model
    from aiida_mlqm.models.serialization import read_metadata

    features, labels = classification_data()
    classifier = train_classifier(
        features, labels, feature_names=['t1', 'd1', 'gap'], estimator='random_forest', method='sigmoid', log=None
    )
    metrics = classifier.metrics
    assert metrics['calibrated']['accuracy'] > 0.75
    # random forests are over-/under-confident near 0 and 1; calibration repairs most of that
    assert metrics['calibrated']['log_loss'] < metrics['uncalibrated']['log_loss']
    classifier.save(tmp_path / 'clf')
    assert (tmp_path / 'clf' / 'model.skops').is_file()
    assert read_metadata(tmp_path / 'clf')['classes'] == ['multireference', 'single-reference']
    loaded = load_model(tmp_path / 'clf')
    test_features, _ = classification_data(seed=1, count=50)
    np.testing.assert_array_equal(loaded.predict_proba(test_features), classifier.predict_proba(test_features))
    with pytest.raises(ValueError, match=r'\(n, 3\)'):
        loaded.predict_proba(test_features[:, :2])


def test_classifier_refuses_too_few_examples():
    from aiida_mlqm.models.classifier import train_classifier
    from aiida_mlqm.models.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match='at least cv=3'):
        train_classifier(np.zeros((5, 2)), np.array(['a', 'a', 'a', 'a', 'b']), log=None)
