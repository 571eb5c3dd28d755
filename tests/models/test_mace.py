"""The MACE backend: the committee contract (gradients, invariances, spreads, save/load, float32/float64), training
through the shared loop and the job entry points, and the ASE calculator. Tiny models, few epochs."""

from __future__ import annotations

import json
import typing as t

import numpy as np
import pytest
import torch
from committee_contract import CommitteeContract

TINY = {'num_channels': 8, 'max_L': 1, 'correlation': 2, 'num_interactions': 2, 'radial_mlp': [8], 'r_max': 4.0}


class TestMace(CommitteeContract):
    built: t.ClassVar[dict] = {}

    def make_committee(self, dtype: str, target: str = 'energy', extensive: bool = True):
        """One committee per dtype, built once (building MACE members takes seconds); the tests do not change it."""
        from aiida_mlqm.models.mace import MaceCommittee, MaceCommitteeNetwork, MaceNetworkConfig

        if target != 'energy':
            pytest.skip('the MACE backend trains potentials only')
        if dtype not in self.built:
            config = MaceNetworkConfig(species=[1, 6, 8], members=3, options=TINY, avg_num_neighbors=5.0, dtype=dtype)
            network = MaceCommitteeNetwork(config, seed=7)
            network.set_normalisation(np.array([-13.6, -1029.0, -2040.0]), 0.7)
            self.built[dtype] = MaceCommittee(network)
        return self.built[dtype]


def test_members_start_different_and_global_random_state_is_untouched():
    from aiida_mlqm.models.mace import MaceCommitteeNetwork, MaceNetworkConfig

    state = torch.random.get_rng_state()
    config = MaceNetworkConfig(species=[1, 8], members=2, options=TINY)
    first, second = MaceCommitteeNetwork(config, seed=1), MaceCommitteeNetwork(config, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name  # the same seed gives the same committee
    weights = [p for n, p in first.named_parameters() if n.startswith('members_list.0.')]
    others = [p for n, p in first.named_parameters() if n.startswith('members_list.1.')]
    assert any(not torch.equal(a, b) for a, b in zip(weights, others))


HYPER = {
    'backend': 'mace',
    'members': 2,
    'mace': TINY,
    'epochs': 12,
    'batch_size': 8,
    'learning_rate': 1e-2,
    'patience': 25,
    'seed': 0,
}


@pytest.fixture(scope='module')
def mace_committee(water_train):
    from aiida_mlqm.models.training import train_committee

    return train_committee(water_train.subset(range(32)), HYPER, log=None)


def test_training_learns_beyond_composition(mace_committee, water_test):
    from aiida_mlqm.models.mace import MaceCommittee
    from aiida_mlqm.models.training import evaluate

    assert isinstance(mace_committee, MaceCommittee)
    metrics = mace_committee.metrics
    tested = evaluate(mace_committee, water_test)
    # after 12 epochs on 26 frames the tiny model predicts held-out energies far better than composition alone
    assert tested['energy_mae'] < 0.5 * metrics['baseline_composition']['mae'], (tested, metrics)
    assert tested['force_mae'] < 1.0
    prediction = mace_committee.predict(water_test, forces=True)
    assert prediction.force_spread.shape == (len(water_test),) and np.all(prediction.force_spread > 0)
    assert metrics['calibration']['size'] == metrics['num_calibration'] > 0


def test_property_models_are_refused_with_the_fix(water_train):
    from aiida_mlqm.models.errors import InvalidInputError
    from aiida_mlqm.models.training import train_committee

    data = water_train.subset(range(20))
    data.target = np.arange(20.0)
    with pytest.raises(InvalidInputError, match="backend 'torchani'"):
        train_committee(data, HYPER, kind='property', log=None)


def test_unknown_mace_option_is_rejected():
    from aiida_mlqm.models.config import parse_config
    from aiida_mlqm.models.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match='num_chanels'):
        parse_config({'backend': 'mace', 'mace': {'num_chanels': 8}})


def test_job_entry_points_train_and_predict_mace(tmp_path, water_train, water_test):
    from aiida_mlqm.models.jobs import predict, train
    from aiida_mlqm.models.registry import load_model

    water_train.subset(range(20)).save_npz(tmp_path / 'dataset.npz')
    job = {'kind': 'potential', 'dataset': 'dataset.npz', 'hyperparameters': {**HYPER, 'epochs': 2}}
    (tmp_path / 'train.json').write_text(json.dumps(job))
    assert train.main(['--input', str(tmp_path / 'train.json')]) == 0, (tmp_path / 'status.json').read_text()
    saved = {p.name for p in (tmp_path / 'model').iterdir()}
    assert saved == {'metadata.json', 'weights.safetensors'}  # no pickle, no torch.save file
    metadata = json.loads((tmp_path / 'model' / 'metadata.json').read_text())
    assert metadata['backend'] == 'mace' and metadata['architecture']['options']['num_channels'] == 8
    assert 'mace-torch' in metadata['library_versions']

    water_test.save_npz(tmp_path / 'structures.npz')
    (tmp_path / 'predict.json').write_text(json.dumps({'model': 'model', 'structures': 'structures.npz'}))
    assert predict.main(['--input', str(tmp_path / 'predict.json')]) == 0
    direct = load_model(tmp_path / 'model').predict(water_test, forces=True)
    # A float32 model: the job and the direct call may sum in another order (batching, threads), so agreement is to
    # float32 precision, not bit for bit.
    with np.load(tmp_path / 'predictions.npz') as arrays:
        np.testing.assert_allclose(arrays['energy'], direct.value, rtol=1e-6)
        np.testing.assert_allclose(arrays['forces'], direct.forces, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(arrays['force_spread'], direct.force_spread, rtol=1e-5, atol=1e-5)


def test_ase_calculator_and_float64_copy(mace_committee, water_test):
    from aiida_mlqm.models.calculator import CommitteeCalculator

    atoms = water_test.to_ase()[0]
    atoms.calc = CommitteeCalculator(mace_committee)
    prediction = mace_committee.predict(water_test.subset([0]), forces=True)
    assert atoms.get_potential_energy() == pytest.approx(prediction.value[0], rel=1e-6)
    np.testing.assert_allclose(atoms.get_forces(), prediction.forces, rtol=1e-5, atol=1e-5)
    assert atoms.calc.results['force_spread'] == pytest.approx(prediction.force_spread[0], rel=1e-5)
    double = mace_committee.to_dtype('float64')
    np.testing.assert_allclose(double.predict(water_test.subset([0])).value, prediction.value, rtol=1e-6)
