"""Fixtures of the model tests: real PySCF labels of distorted water, and one committee trained on them."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_mlqm.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV
WATER = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])


def label_water(count: int, seed: int, amplitude: float = 0.06):
    """HF/STO-3G energies (eV) and forces (eV/Å) of water with random Gaussian displacements (Å)."""
    from aiida_mlqm.models.data import Structures
    from pyscf import gto, lib, scf

    rng = np.random.default_rng(seed)
    positions, energies, forces = [], [], []
    for _ in range(count):
        geometry = WATER + rng.normal(0.0, amplitude, WATER.shape)
        molecule = gto.M(atom=list(zip('OHH', geometry)), basis='sto-3g', unit='Angstrom', verbose=0)
        mean_field = scf.RHF(molecule)
        # one thread: threads only add overhead for a 7-orbital molecule on a machine shared by test runs
        with lib.with_omp_threads(1):
            energies.append(mean_field.kernel() * HARTREE_TO_EV)
            forces.append(-mean_field.nuc_grad_method().kernel() * HARTREE_TO_EV / BOHR_TO_ANGSTROM)
        positions.append(geometry)
    return Structures(
        numbers=np.tile([8, 1, 1], count),
        positions=np.concatenate(positions),
        offsets=np.arange(0, 3 * count + 1, 3),
        energy=np.array(energies),
        forces=np.concatenate(forces),
    )


@pytest.fixture(scope='session')
def water_train():
    return label_water(56, seed=1)


@pytest.fixture(scope='session')
def water_test():
    return label_water(32, seed=2)


FAST_HYPERPARAMETERS = {
    'backend': 'torchani',
    'members': 4,
    'aev': 'compact',
    'hidden': [32, 16],
    'epochs': 250,
    'batch_size': 8,
    'learning_rate': 3e-3,
    'patience': 40,
    'validation_fraction': 0.15,
    'calibration_fraction': 0.2,
    'seed': 3,
}


@pytest.fixture(scope='session')
def water_committee(water_train):
    from aiida_mlqm.models.training import train_committee

    return train_committee(water_train, FAST_HYPERPARAMETERS, log=None)
