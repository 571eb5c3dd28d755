"""Labelled files as users bring them: distorted water with PySCF labels at two levels, written as extxyz or ASE db.

Level ``hf/sto-3g`` (cheap): energy on every frame (key ``e_lo``) and forces (``f_lo``) on all frames but those in
``energy_only``; level ``hf/6-31g`` (expensive): energy only (``e_hi``) on the first ``expensive`` frames. Values in
hartree (forces in hartree/Å) unless ``unit`` says otherwise.
"""

from __future__ import annotations

import numpy as np
from aiida_mlqm.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

WATER = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
LABELS = ('hf/sto-3g=e_lo,f_lo', 'hf/6-31g=e_hi')


def hf(positions, basis: str) -> tuple[float, np.ndarray]:
    """RHF energy (hartree) and forces (hartree/Å) of water at ``positions`` (Å)."""
    from pyscf import gto, lib, scf

    molecule = gto.M(atom=list(zip('OHH', positions)), basis=basis, unit='Angstrom', verbose=0)
    with lib.with_omp_threads(1):
        mean_field = scf.RHF(molecule)
        mean_field.conv_tol = 1e-10
        energy = mean_field.kernel()
        forces = -mean_field.nuc_grad_method().kernel() / BOHR_TO_ANGSTROM
    return energy, forces


def labelled_water(count: int, *, seed: int = 0, expensive: int = 6, energy_only=(1, 4), amplitude: float = 0.05):
    """``ase.Atoms`` frames with the labels described in the module docstring (hartree, hartree/Å)."""
    from ase import Atoms

    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        positions = WATER + rng.normal(0.0, amplitude, WATER.shape)
        atoms = Atoms('OHH', positions=positions)
        energy, forces = hf(positions, 'sto-3g')
        atoms.info['e_lo'] = energy
        if index not in energy_only:
            atoms.arrays['f_lo'] = forces
        if index < expensive:
            atoms.info['e_hi'] = hf(positions, '6-31g')[0]
        atoms.info['charge'] = 0
        atoms.info['multiplicity'] = 1
        images.append(atoms)
    return images


def write_extxyz(path, images) -> None:
    """Write frames whose per-atom arrays differ between frames (ASE's writer wants the same columns everywhere)."""
    from ase.io import write

    with open(path, 'w') as handle:
        for atoms in images:
            write(handle, atoms, format='extxyz')


def write_ase_db(path, images) -> None:
    import ase.db

    with ase.db.connect(str(path)) as database:
        for atoms in images:
            # 'charge' is a reserved column of ASE databases (the sum of initial charges), not a key-value pair
            key_values = {k: v for k, v in atoms.info.items() if np.isscalar(v) and k != 'charge'}
            data = {'f_lo': atoms.arrays['f_lo']} if 'f_lo' in atoms.arrays else {}
            database.write(atoms, key_value_pairs=key_values, data=data)


def in_ev(images) -> dict:
    """The labels of ``images`` in eV (eV/Å) per level, as the imported dataset should hold them."""
    out = {'hf/sto-3g': [], 'hf/6-31g': []}
    for index, atoms in enumerate(images):
        forces = atoms.arrays.get('f_lo')
        out['hf/sto-3g'].append(
            (index, atoms.info['e_lo'] * HARTREE_TO_EV, None if forces is None else forces * HARTREE_TO_EV)
        )
        if 'e_hi' in atoms.info:
            out['hf/6-31g'].append((index, atoms.info['e_hi'] * HARTREE_TO_EV, None))
    return out
