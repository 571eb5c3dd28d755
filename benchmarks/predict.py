"""Prediction throughput of a 4-member committee against HF/6-31G* in PySCF, measured side by side.

Structures: the closed-shell G2 molecules (ase.collections.g2) with 8 to 14 atoms made of H, C, N, O, replicated with small random
displacements to a batch. The committee predicts energies with spread (and energies + forces), batched, on one torch
thread (faster than two on this shared 2-core machine, see models/README.md); PySCF runs RHF/6-31G* (energy, and energy
+ gradient) on the same molecules in the same run. Weights are freshly initialised: the arithmetic of a prediction
does not depend on their values, and the accuracy of each size is in ``python -m benchmarks training``.
"""

from __future__ import annotations

import time

import numpy as np

DESCRIPTION = 'ML committee energies (+ forces) per second vs HF/6-31G* on G2 molecules of 8-14 atoms'
SPECIES = [1, 6, 7, 8]
# (AEV preset, hidden layers): the package default first, then the ANI-1x size the issue measured
SIZES = [('compact', [64, 32]), ('ani1x', [64, 32]), ('ani1x', [160, 128, 96])]
DEFAULT = SIZES[0]


def g2_molecules():
    from ase.collections import g2

    molecules = []
    for name in sorted(g2.names):
        atoms = g2[name]
        closed_shell = atoms.get_atomic_numbers().sum() % 2 == 0 and not atoms.get_initial_magnetic_moments().any()
        if 8 <= len(atoms) <= 14 and set(atoms.get_atomic_numbers()) <= set(SPECIES) and closed_shell:
            molecules.append(atoms)
    return molecules


def time_hf(molecules, gradient: bool) -> float:
    """Seconds per molecule of RHF/6-31G* (with the nuclear gradient when asked), PySCF defaults, 2 threads."""
    from pyscf import gto, lib, scf

    total = 0.0
    with lib.with_omp_threads(2):
        for atoms in molecules:
            started = time.perf_counter()
            molecule = gto.M(
                atom=list(zip(atoms.get_chemical_symbols(), atoms.get_positions())), basis='6-31g*', verbose=0
            )
            mean_field = scf.RHF(molecule)
            mean_field.kernel()
            if gradient:
                mean_field.nuc_grad_method().kernel()
            total += time.perf_counter() - started
    return total / len(molecules)


def time_committee(committee, structures, *, forces: bool, batch_size: int, repeats: int) -> float:
    """Best of ``repeats`` (the machine is shared: the minimum is the least disturbed run), structures per second."""
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        committee.predict(structures, forces=forces, batch_size=batch_size)
        best = min(best, time.perf_counter() - started)
    return len(structures) / best


def run(quick: bool) -> dict:
    from aiida_mlqm.models.committee import Committee
    from aiida_mlqm.models.data import Structures
    from aiida_mlqm.models.networks import CommitteeNetwork, NetworkConfig
    from aiida_mlqm.models.training import torch_threads

    molecules = g2_molecules()
    rng = np.random.default_rng(0)
    count = 1000 if quick else 4000
    images = []
    for index in range(count):
        atoms = molecules[index % len(molecules)].copy()
        atoms.positions += rng.normal(0.0, 0.02, atoms.positions.shape)
        images.append(atoms)
    structures = Structures.from_ase(images)
    hf_molecules = molecules[:: max(1, len(molecules) // (5 if quick else len(molecules)))]

    table, rates = [], {}
    # HF first and last around the ML timings would be fairer still; one HF pass keeps --quick within minutes
    hf_energy = time_hf(hf_molecules, gradient=False)
    hf_energy_forces = time_hf(hf_molecules, gradient=True)
    table.append(
        {
            'model': 'RHF/6-31G* (PySCF, 2 threads)',
            'threads': 2,
            'energies/s': 1 / hf_energy,
            'energies+forces/s': 1 / hf_energy_forces,
            'molecules': len(hf_molecules),
        }
    )
    for aev, hidden in SIZES:
        config = NetworkConfig(species=SPECIES, aev=aev, hidden=hidden, members=4)
        committee = Committee(CommitteeNetwork(config, seed=0))
        for threads in (1, 2):
            with torch_threads(threads):
                committee.predict(structures.subset(range(64)), forces=True)  # warm-up
                energy = time_committee(committee, structures, forces=False, batch_size=256, repeats=3)
                energy_forces = time_committee(committee, structures, forces=True, batch_size=256, repeats=3)
            rates[(aev, tuple(hidden), threads)] = (energy, energy_forces)
            table.append(
                {
                    'model': f'committee x4 {aev} AEV({committee.network.aev.out_dim}) {hidden}',
                    'threads': threads,
                    'energies/s': energy,
                    'energies+forces/s': energy_forces,
                    'molecules': len(structures),
                }
            )
    energy, energy_forces = max(rates[(DEFAULT[0], tuple(DEFAULT[1]), t)] for t in (1, 2))
    return {
        '_table': table,
        'energies_per_second': {'value': energy, 'unit': '1/s (4-member committee, default size)', 'target': '>= 5000'},
        'energies_forces_per_second': {'value': energy_forces, 'unit': '1/s', 'target': '>= 1000'},
        'speedup_vs_hf_energy': {'value': energy * hf_energy, 'unit': 'x HF/6-31G* energy', 'target': '>= 2000'},
        'speedup_vs_hf_energy_forces': {
            'value': energy_forces * hf_energy_forces,
            'unit': 'x HF/6-31G* energy+gradient',
            'target': None,
        },
    }
