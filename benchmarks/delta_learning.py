"""Δ-learning on cheap QM: B3LYP/6-31G* + a learned correction against CCSD(T)/cc-pVDZ, cross-validated.

Data (computed here, cached): ``FRAMES`` normal-mode samples of formaldehyde at 500 K (MMFF94 Hessian around the G2
geometry, seeded), B3LYP/6-31G* energies on every frame and CCSD(T)/cc-pVDZ (frozen core) energies on the first
``EXPENSIVE`` frames, with PySCF in this process on one thread (minutes on an idle core; on 2 cores shared by
several test runs it took an hour). The labels are written as a labelled extxyz to ``benchmarks/cache/`` (ignored
by git) with the keys ``e_b3lyp`` and ``e_ccsdt`` (eV), the format ``mlqm data import --label
'b3lyp/6-31g*=e_b3lyp' --label 'ccsd(t)/cc-pvdz=e_ccsdt'`` reads, and reused on the next run.

Cross-validation: the CCSD(T) frames are cut into ``FOLDS`` folds; for each fold a model is trained on the others
and tested on it, and three predictions of the held-out CCSD(T) energies are compared side by side:

- ``delta``: B3LYP energy + a committee trained on (CCSD(T) - B3LYP) of the training frames (``train_delta``, the
  default Δ kind of the platform);
- ``shift``: B3LYP energy + the mean (CCSD(T) - B3LYP) of the training frames (the best constant correction);
- ``direct``: a committee trained on the same CCSD(T) energies alone (energy-only rows, no forces).

Errors are mean absolute errors over all held-out frames, in kcal/mol. ``expensive_label_fraction`` is the share of
frames that needed the expensive level.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

import numpy as np

DESCRIPTION = 'B3LYP + learned Δ vs CCSD(T) (cross-validated), against a constant shift and a direct model'
CACHE = pathlib.Path(__file__).parent / 'cache'
MOLECULE = 'H2CO'
TEMPERATURE = 500.0
FRAMES = 64
EXPENSIVE = 32
FOLDS = 5
SEED = 7
CHEAP_LEVEL = 'b3lyp/6-31g*'
EXPENSIVE_LEVEL = 'ccsd(t)/cc-pvdz'


def cache_file() -> pathlib.Path:
    return CACHE / f'delta_learning_{MOLECULE}_{FRAMES}_{EXPENSIVE}_{SEED}.extxyz'


def sample_geometries():
    """``FRAMES`` seeded normal-mode samples of the molecule (MMFF94 Hessian around ASE's G2 geometry)."""
    from aiida_mlqm.workflows.build_sampling import forcefield_hessian, sample_normal_modes
    from ase.build import molecule

    atoms = molecule(MOLECULE)
    symbols = atoms.get_chemical_symbols()
    hessian = forcefield_hessian(symbols, atoms.get_positions(), smiles=None, charge=0)
    rng = np.random.default_rng(SEED)
    geometries = sample_normal_modes(
        symbols,
        atoms.get_positions(),
        hessian,
        number=FRAMES,
        temperature=TEMPERATURE,
        rng=rng,
        min_frequency=200.0,
        min_distance=0.6,
    )
    return symbols, geometries


def _b3lyp(symbols, positions):
    from aiida_mlqm.units import HARTREE_TO_EV
    from pyscf import dft, gto

    mol = gto.M(atom=list(zip(symbols, positions)), basis='6-31g*', unit='Angstrom', verbose=0)
    mf = dft.RKS(mol)
    mf.xc = 'b3lyp'
    mf.conv_tol = 1e-10
    energy = mf.kernel()
    if not mf.converged:
        raise RuntimeError('B3LYP did not converge')
    return energy * HARTREE_TO_EV


def _ccsd_t(symbols, positions):
    from aiida_mlqm.units import HARTREE_TO_EV
    from pyscf import cc, gto, scf
    from pyscf.data.elements import chemcore

    mol = gto.M(atom=list(zip(symbols, positions)), basis='cc-pvdz', unit='Angstrom', verbose=0)
    mf = scf.RHF(mol)
    mf.conv_tol = 1e-10
    mf.kernel()
    ncore = chemcore(mol)
    solver = cc.CCSD(mf, frozen=list(range(ncore)) if ncore else None)
    solver.conv_tol = 1e-8
    solver.kernel()
    if not (mf.converged and solver.converged):
        raise RuntimeError('HF or CCSD did not converge')
    return (solver.e_tot + solver.ccsd_t()) * HARTREE_TO_EV


def compute_labels(log=print) -> list:
    """Label the samples with PySCF (one thread) and write the cache; frames already in a partial cache are kept."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator  # noqa: F401  (extxyz reads back calculators)
    from ase.io import read, write
    from pyscf import lib

    CACHE.mkdir(exist_ok=True)
    partial = cache_file().with_suffix('.partial.extxyz')
    symbols, geometries = sample_geometries()
    done = read(partial, index=':') if partial.exists() else []
    images = list(done)
    started = time.perf_counter()
    with lib.with_omp_threads(1):
        for index in range(len(images), FRAMES):
            atoms = Atoms(symbols=symbols, positions=geometries[index])
            atoms.info['frame'] = index
            atoms.info['e_b3lyp'] = _b3lyp(symbols, geometries[index])
            if index < EXPENSIVE:
                atoms.info['e_ccsdt'] = _ccsd_t(symbols, geometries[index])
            atoms.info['charge'] = 0
            atoms.info['multiplicity'] = 1
            images.append(atoms)
            write(partial, images, format='extxyz')
            log(f'labelled frame {index + 1}/{FRAMES} ({time.perf_counter() - started:.0f} s)')
    os.replace(partial, cache_file())
    return images


def load_labels(log=print) -> list:
    from ase.io import read

    if cache_file().exists():
        return read(cache_file(), index=':')
    return compute_labels(log=log)


def structures_of(images):
    """B3LYP rows for every frame, CCSD(T) rows for the labelled ones, keyed by frame (what an import would pair)."""
    from aiida_mlqm.models.data import Structures

    rows = [(atoms, CHEAP_LEVEL, atoms.info['e_b3lyp']) for atoms in images]
    rows += [(atoms, EXPENSIVE_LEVEL, atoms.info['e_ccsdt']) for atoms in images if 'e_ccsdt' in atoms.info]
    return Structures(
        numbers=np.concatenate([atoms.numbers for atoms, _, _ in rows]),
        positions=np.concatenate([atoms.positions for atoms, _, _ in rows]),
        offsets=np.concatenate([[0], np.cumsum([len(atoms) for atoms, _, _ in rows])]),
        energy=np.array([energy for _, _, energy in rows]),
        levels=[level for _, level, _ in rows],
        keys=[str(atoms.info['frame']) for atoms, _, _ in rows],
    )


DELTA_HYPER = {
    'backend': 'torchani',
    'members': 4,
    'aev': 'compact',
    'hidden': [16],
    'epochs': 400,
    'patience': 60,
    'batch_size': 8,
    'learning_rate': 3e-3,
    'validation_fraction': 0.15,
}
DIRECT_HYPER = {**DELTA_HYPER, 'hidden': [64, 32], 'calibration_fraction': 0.0}


def run(quick: bool) -> dict:
    from aiida_mlqm.models.delta import train_delta
    from aiida_mlqm.models.training import train_committee
    from aiida_mlqm.units import EV_TO_KCAL_PER_MOL

    started = time.perf_counter()
    images = load_labels(log=lambda line: print(line, flush=True))
    labelling = time.perf_counter() - started
    data = structures_of(images)
    expensive = [i for i, level in enumerate(data.levels) if level == EXPENSIVE_LEVEL]
    cheap_of = {data.keys[i]: i for i, level in enumerate(data.levels) if level == CHEAP_LEVEL}
    epochs = 150 if quick else DELTA_HYPER['epochs']
    folds = np.array_split(np.random.default_rng(SEED).permutation(expensive), FOLDS)

    errors = {'delta': [], 'shift': [], 'direct': [], 'cheap': []}
    table = []
    for fold, test_rows in enumerate(folds):
        test_keys = {data.keys[i] for i in test_rows}
        # every B3LYP row stays (cheap QM is computed for every structure); the test frames' CCSD(T) rows go
        train_rows = [i for i in range(len(data)) if data.levels[i] == CHEAP_LEVEL or data.keys[i] not in test_keys]
        test = data.subset(test_rows)
        cheap = data.energy[[cheap_of[data.keys[i]] for i in test_rows]]
        train_pairs = [i for i in expensive if data.keys[i] not in test_keys]
        difference = data.energy[train_pairs] - data.energy[[cheap_of[data.keys[i]] for i in train_pairs]]

        model = train_delta(
            data.subset(train_rows),
            base_level=CHEAP_LEVEL,
            target_level=EXPENSIVE_LEVEL,
            hyperparameters={**DELTA_HYPER, 'epochs': epochs, 'seed': fold},
            seed=fold,
            log=None,
        )
        delta = model.predict(test, base_energy=cheap).value
        shift = cheap + difference.mean()
        direct_model = train_committee(
            data.subset(train_pairs), {**DIRECT_HYPER, 'epochs': epochs, 'seed': fold}, log=None
        )
        direct = direct_model.predict(test).value
        fold_errors = {
            'delta': delta - test.energy,
            'shift': shift - test.energy,
            'direct': direct - test.energy,
            'cheap': cheap - test.energy,
        }
        for name, error in fold_errors.items():
            errors[name].append(error)
        table.append(
            {
                'fold': fold,
                'train pairs': len(train_pairs),
                'test': len(test_rows),
                'Δ MAE kcal/mol': float(np.abs(fold_errors['delta']).mean() * EV_TO_KCAL_PER_MOL),
                'shift MAE': float(np.abs(fold_errors['shift']).mean() * EV_TO_KCAL_PER_MOL),
                'direct MAE': float(np.abs(fold_errors['direct']).mean() * EV_TO_KCAL_PER_MOL),
            }
        )
        print(table[-1], flush=True)

    def mae(name: str) -> float:
        return float(np.abs(np.concatenate(errors[name])).mean() * EV_TO_KCAL_PER_MOL)

    delta_error, shift_error = mae('delta'), mae('shift')
    result = {
        '_table': table,
        'delta_error_kcal_mol': {'value': delta_error, 'unit': 'kcal/mol', 'target': '< 0.5'},
        'shift_error_kcal_mol': {'value': shift_error, 'unit': 'kcal/mol'},
        'direct_error_kcal_mol': {'value': mae('direct'), 'unit': 'kcal/mol'},
        'shift_over_delta_error': {'value': shift_error / delta_error, 'unit': 'x', 'target': '>= 2'},
        'expensive_label_fraction': {'value': len(expensive) / FRAMES, 'unit': ''},
        'b3lyp_alone_error_kcal_mol': {'value': mae('cheap'), 'unit': 'kcal/mol'},
        'labelling_seconds': {'value': labelling, 'unit': 's (reading the cache, or computing the labels)'},
    }
    return result


if __name__ == '__main__':
    images = load_labels()
    print(json.dumps({'frames': len(images), 'cache': str(cache_file())}))
