"""torchani and MACE committees side by side: learning curves (25, 50, 100 training frames) and prediction speed.

Data: normal-mode samples of ethanol labelled by PySCF (``benchmarks/_pes.py``: HF/3-21G energies and forces,
temperatures 50-1000 K, cached in ``benchmarks/data``). One fixed split for every model: frames 0-19 test, 20-39
validation (early stopping and calibration), the first N of frames 40-139 training. Each backend trains a committee
of the same number of members with its default architecture for the same wall-clock budget per model, so the learning
curves answer "which backend to pick when labels are scarce" and the throughput column what that costs at prediction.
``--quick`` uses 100 frames (training sizes 25 and 50).
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

MODELS = pathlib.Path(__file__).parent / 'data' / 'models'
DESCRIPTION = 'torchani vs MACE committees: energy/force MAE at 25/50/100 training frames, energies per second'

COMMON = {
    'members': 4,
    'batch_size': 8,
    'validation_fraction': 0.0,
    'calibration_fraction': 0.0,
    'patience': 60,
    'seed': 0,
}
BACKENDS = {
    'torchani': {'backend': 'torchani', 'aev': 'compact', 'hidden': [64, 32], 'learning_rate': 2e-3, 'epochs': 600},
    'mace': {
        'backend': 'mace',
        'mace': {'num_channels': 16, 'max_L': 1, 'correlation': 3, 'num_interactions': 2, 'radial_mlp': [32, 32]},
        'learning_rate': 1e-2,
        'epochs': 300,
    },
}


def split(quick: bool):
    """``(test, validation, training pool, training sizes)``: frames 0-19 test, 20-39 validation, the rest training."""
    from ._pes import frames

    data = frames(100 if quick else 140, method='hf', basis='3-21g', temperatures=(50.0, 1000.0), log=print)
    pool = data.subset(range(40, len(data)))
    return data.subset(range(20)), data.subset(range(20, 40)), pool, (25, 50) if quick else (25, 50, 100)


def throughput(committee, structures, repeats: int = 3) -> float:
    """Structures per second, energies and forces, one torch thread, best of ``repeats``."""
    from aiida_mlqm.models.training import torch_threads

    best = np.inf
    with torch_threads(1):
        committee.predict(structures.subset(range(4)), forces=True)  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            committee.predict(structures, forces=True, batch_size=64)
            best = min(best, time.perf_counter() - started)
    return len(structures) / best


def train(backend: str, data, validation, seconds: float, *, keep: str | None = None):
    """Train a committee of ``backend`` with the shared settings; with ``keep``, save it under
    ``benchmarks/data/models/<keep>`` (the ``uncertainty`` benchmark reuses the models trained on the most frames)."""
    from aiida_mlqm.models.training import train_committee

    hyper = {**COMMON, **BACKENDS[backend], 'max_seconds': seconds}
    committee = train_committee(data, hyper, validation=validation, log=None)
    if keep:
        committee.save(MODELS / keep)
    return committee


def run(quick: bool) -> dict:
    from aiida_mlqm.models.training import evaluate

    test, validation, pool, sizes = split(quick)
    budget = 90.0 if quick else 240.0
    table, results = [], {}
    for backend in BACKENDS:
        for size in sizes:
            keep = f'{backend}-{size}{"-quick" if quick else ""}' if size == sizes[-1] else None
            committee = train(backend, pool.subset(range(size)), validation, budget, keep=keep)
            tested = evaluate(committee, test)
            rate = throughput(committee, test)
            results[backend, size] = tested
            table.append(
                {
                    'backend': backend,
                    'train frames': size,
                    'E MAE meV': 1000 * tested['energy_mae'],
                    'F MAE meV/Å': 1000 * tested['force_mae'],
                    'epochs': committee.metrics['epochs_run'],
                    'train s': committee.metrics['training_seconds'],
                    'structures/s (E+F)': rate,
                }
            )
            results[backend, 'rate'] = rate
            print(table[-1], flush=True)
    middle, largest = sizes[1], sizes[-1]
    figures = {
        f'mace_force_mae_{middle}_over_torchani_{largest}': {
            'value': results['mace', middle]['force_mae'] / results['torchani', largest]['force_mae'],
            'unit': 'ratio',
            'target': '<= 1.0',
        },
        'torchani_over_mace_speed': {
            'value': results['torchani', 'rate'] / results['mace', 'rate'],
            'unit': 'ratio',
        },
    }
    for backend in BACKENDS:
        for size in sizes:
            figures[f'{backend}_force_mae_{size}'] = {
                'value': 1000 * results[backend, size]['force_mae'],
                'unit': 'meV/Å',
            }
            figures[f'{backend}_energy_mae_{size}'] = {
                'value': 1000 * results[backend, size]['energy_mae'],
                'unit': 'meV',
            }
    return {'_table': table, **figures}
