"""Training time for 1,000 configurations (energies + forces) and the validation errors reached, per network size.

Data: HF/STO-3G energies and forces (PySCF) of CH4, NH3, H2O, H2CO and CH3OH with random Gaussian displacements
(0.06 Å), labelled at the start of the run (not timed). Each network size trains a 4-member committee for the same
number of epochs on the same split; its prediction throughput on G2 molecules (8-14 atoms) is measured beside it, so
that size is chosen with accuracy next to speed. ``--quick`` labels 300 configurations and scales the time to 1,000.
"""

from __future__ import annotations

import time

import numpy as np

DESCRIPTION = 'committee training time per 1000 configurations (E+F) and validation MAE, per network size'
MOLECULES = ('CH4', 'NH3', 'H2O', 'H2CO', 'CH3OH')
from aiida_mlqm.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV


def label(count: int, seed: int = 0):
    from aiida_mlqm.models.data import Structures
    from ase.build import molecule
    from pyscf import gto, lib, scf

    rng = np.random.default_rng(seed)
    numbers, positions, energies, forces = [], [], [], []
    with lib.with_omp_threads(1):
        for index in range(count):
            atoms = molecule(MOLECULES[index % len(MOLECULES)])
            atoms.positions += rng.normal(0.0, 0.06, atoms.positions.shape)
            mol = gto.M(atom=list(zip(atoms.get_chemical_symbols(), atoms.get_positions())), basis='sto-3g', verbose=0)
            mean_field = scf.RHF(mol)
            energies.append(mean_field.kernel() * HARTREE_TO_EV)
            forces.append(-mean_field.nuc_grad_method().kernel() * HARTREE_TO_EV / BOHR_TO_ANGSTROM)
            numbers.append(atoms.get_atomic_numbers())
            positions.append(atoms.get_positions())
    offsets = np.concatenate([[0], np.cumsum([len(n) for n in numbers])])
    return Structures(
        np.concatenate(numbers), np.concatenate(positions), offsets, np.array(energies), np.concatenate(forces)
    )


def run(quick: bool) -> dict:
    from aiida_mlqm.models.data import Structures
    from aiida_mlqm.models.training import evaluate, torch_threads, train_committee

    from .predict import DEFAULT, SIZES, g2_molecules, time_committee

    count = 300 if quick else 1000
    epochs = 40 if quick else 150
    started = time.perf_counter()
    data = label(count)
    labelling = time.perf_counter() - started
    test = label(100 if quick else 200, seed=1)
    g2 = Structures.from_ase(g2_molecules() * 20)

    table, figures = [], {}
    for aev, hidden in SIZES:
        hyper = {
            'backend': 'torchani',
            'members': 4,
            'aev': aev,
            'hidden': hidden,
            'epochs': epochs,
            'patience': epochs,
            'batch_size': 32,
            'learning_rate': 2e-3,
            'validation_fraction': 0.1,
            'calibration_fraction': 0.1,
            'seed': 0,
        }
        committee = train_committee(data, hyper, log=None)
        seconds = committee.metrics['training_seconds']
        validation = committee.metrics['validation']
        tested = evaluate(committee, test)
        with torch_threads(1):
            rate = time_committee(committee, g2, forces=False, batch_size=256, repeats=2)
        row = {
            'size': f'{aev} {hidden}',
            's/1000 conf': seconds * 1000 / count,
            'val E MAE eV': validation['energy_mae'],
            'val F MAE eV/Å': validation['force_mae'],
            'test E MAE eV': tested['energy_mae'],
            'test F MAE eV/Å': tested['force_mae'],
            'G2 energies/s': rate,
            'cal. err before/after': f'{committee.calibration.calibration_error_before:.3f}/{committee.calibration.calibration_error_after:.3f}',
        }
        table.append(row)
        if (aev, hidden) == DEFAULT:
            figures = {
                'seconds_per_1000_configurations': {
                    'value': row['s/1000 conf'],
                    'unit': f's ({epochs} epochs, 4 members, 1 thread)',
                    'target': None,
                },
                'validation_energy_mae': {'value': validation['energy_mae'], 'unit': 'eV', 'target': None},
                'validation_force_mae': {'value': validation['force_mae'], 'unit': 'eV/Å', 'target': None},
            }
    constant = float(
        np.abs(
            test.energy
            - test.composition([1, 6, 7, 8])
            @ np.linalg.lstsq(data.composition([1, 6, 7, 8]), data.energy, rcond=None)[0]
        ).mean()
    )
    table.append(
        {
            'size': 'composition only (reference energies)',
            'test E MAE eV': constant,
            'test F MAE eV/Å': float(np.abs(test.forces).mean()),
        }
    )
    print(f'labelled {count} configurations with PySCF in {labelling:.0f} s (not part of the figures)')
    return {'_table': table, **figures}
