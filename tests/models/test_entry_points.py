"""The command-line entry points that jobs run, the ASE calculator, and exploration by ML-MD."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aiida_mlqm.models.data import Structures

HYPER = {'backend': 'torchani', 'members': 3, 'aev': 'compact', 'hidden': [16], 'epochs': 15, 'batch_size': 16, 'seed': 2}


def write_job(folder, name, values):
    path = folder / name
    path.write_text(json.dumps(values))
    return str(path)


@pytest.fixture(scope='module')
def trained_folder(tmp_path_factory, water_train):
    from aiida_mlqm.models.jobs import train

    folder = tmp_path_factory.mktemp('train')
    water_train.save_npz(folder / 'dataset.npz')
    argv = [
        '--input',
        write_job(folder, 'train.json', {'kind': 'potential', 'dataset': 'dataset.npz', 'hyperparameters': HYPER}),
    ]
    assert train.main(argv) == 0
    return folder


def test_train_entry_point_writes_model_metrics_status(trained_folder, capsys):
    assert json.loads((trained_folder / 'status.json').read_text())['status'] == 'ok'
    metrics = json.loads((trained_folder / 'metrics.json').read_text())
    assert metrics['num_train'] > 0 and 'validation' in metrics
    assert {p.name for p in (trained_folder / 'model').iterdir()} == {'metadata.json', 'weights.safetensors'}


def test_predict_entry_point(trained_folder, water_test):
    from aiida_mlqm.models.committee import Committee
    from aiida_mlqm.models.jobs import predict

    water_test.save_npz(trained_folder / 'structures.npz')
    argv = ['--input', write_job(trained_folder, 'predict.json', {'model': 'model', 'structures': 'structures.npz'})]
    assert predict.main(argv) == 0
    with np.load(trained_folder / 'predictions.npz') as arrays:
        energy, forces, spread = arrays['energy'], arrays['forces'], arrays['energy_spread']
        force_spread, atom_force_spread = arrays['force_spread'], arrays['atom_force_spread']
        per_atom = arrays['energy_spread_per_atom']
    direct = Committee.load(trained_folder / 'model').predict(water_test, forces=True)
    np.testing.assert_allclose(energy, direct.value)
    np.testing.assert_allclose(forces, direct.forces)
    np.testing.assert_allclose(force_spread, direct.force_spread)
    np.testing.assert_allclose(atom_force_spread, direct.atom_force_spread)
    np.testing.assert_allclose(per_atom, direct.spread / 3)
    assert force_spread.shape == (len(water_test),) and np.all(force_spread > 0)
    assert spread.shape == (len(water_test),) and np.all(spread > 0)
    results = json.loads((trained_folder / 'results.json').read_text())
    assert results['units']['energy'] == 'eV' and results['units']['force_spread'] == 'eV/Å'
    assert results['count'] == len(water_test)
    # 56 frames, 10 % calibration: 6 held-out frames cannot guarantee 90 %; the job says what they guarantee
    assert results['requested_coverage'] == 0.9 and results['coverage'] == pytest.approx(6 / 7)
    assert 'too small for coverage 0.9' in results['interval_note']


def test_explore_entry_point_returns_candidates(trained_folder, water_test):
    from aiida_mlqm.models.jobs import predict

    water_test.subset(range(3)).save_npz(trained_folder / 'starts.npz')
    settings = {'temperature': 800, 'steps': 40, 'threshold': 1e-4, 'check_interval': 2, 'seed': 4}
    job = {
        'model': 'model',
        'structures': 'starts.npz',
        'mode': 'explore',
        'explore': settings,
        'results': 'explore.json',
    }
    assert predict.main(['--input', write_job(trained_folder, 'explore_job.json', job)]) == 0
    results = json.loads((trained_folder / 'explore.json').read_text())
    # the threshold is below any committee spread: every trajectory stops at its first check with a candidate
    assert [t['reason'] for t in results['trajectories']] == ['threshold'] * 3
    candidates = Structures.load_npz(trained_folder / 'candidates.npz')
    assert len(candidates) == 3 and candidates.numbers.tolist() == [8, 1, 1] * 3
    assert not np.allclose(candidates.positions, water_test.subset(range(3)).positions)  # the atoms moved


def test_explore_is_reproducible_and_stops_at_threshold(trained_folder, water_test):
    from aiida_mlqm.models.committee import Committee
    from aiida_mlqm.models.explore import explore

    committee = Committee.load(trained_folder / 'model')
    starts = water_test.subset([0])
    settings = {'temperature': 300, 'steps': 30, 'threshold': 50.0, 'check_interval': 5, 'seed': 1}
    first, second = explore(committee, starts, settings), explore(committee, starts, settings)
    assert first['trajectories'] == second['trajectories']
    assert first['candidates'] is None and first['trajectories'][0]['reason'] == 'steps'


def test_ase_calculator_matches_committee(trained_folder, water_test):
    from aiida_mlqm.models.calculator import CommitteeCalculator
    from aiida_mlqm.models.committee import Committee

    committee = Committee.load(trained_folder / 'model')
    atoms = water_test.to_ase()[0]
    atoms.calc = CommitteeCalculator(committee)
    prediction = committee.predict(water_test.subset([0]), forces=True)
    assert atoms.get_potential_energy() == pytest.approx(prediction.value[0])
    np.testing.assert_allclose(atoms.get_forces(), prediction.forces)
    assert atoms.calc.results['energy_spread'] == pytest.approx(prediction.calibrated_spread[0])
    assert atoms.calc.results['force_spread'] == pytest.approx(prediction.force_spread[0])
    assert atoms.calc.results['energy_spread_per_atom'] == pytest.approx(prediction.spread[0] / 3)
    np.testing.assert_allclose(atoms.calc.results['atom_force_spread'], prediction.atom_force_spread)


@pytest.mark.parametrize(
    'job,error',
    [
        ({'kind': 'potential', 'dataset': 'dataset.npz', 'hyperparameters': {'epochz': 1}}, 'invalid_input'),
        ({'kind': 'potential', 'dataset': 'missing.npz'}, 'invalid_input'),
        ({'kind': 'potential', 'dataset': 'dataset.npz', 'learning_rate': 1}, 'invalid_input'),
    ],
)
def test_train_entry_point_failures_are_coded(tmp_path, water_train, job, error):
    from aiida_mlqm.models.jobs import train

    water_train.subset(range(10)).save_npz(tmp_path / 'dataset.npz')
    assert train.main(['--input', write_job(tmp_path, 'bad.json', job)]) == 1
    status = json.loads((tmp_path / 'status.json').read_text())
    assert status['status'] == 'failed' and status['error'] == error and status['message']


def test_nan_loss_is_coded(tmp_path, water_train):
    from aiida_mlqm.models.jobs import train

    broken = water_train.subset(range(20))
    broken.energy = np.where(np.arange(20) % 3 == 0, np.nan, broken.energy)
    broken.save_npz(tmp_path / 'dataset.npz')
    job = {'kind': 'potential', 'dataset': 'dataset.npz', 'hyperparameters': {**HYPER, 'bootstrap': False}}
    assert train.main(['--input', write_job(tmp_path, 'train.json', job)]) == 1
    assert json.loads((tmp_path / 'status.json').read_text())['error'] == 'nan_loss'
