"""Configuration sets for potentials: seeded normal-mode sampling and random displacements, free of AiiDA.

Normal-mode sampling draws each mass-weighted normal coordinate from its classical Boltzmann distribution at the
temperature ``T`` (standard deviation ``sqrt(kT) / omega``), the harmonic analogue of an MD snapshot. Soft and
imaginary modes are floored at ``min_frequency`` so that the geometry at hand need not be an exact minimum.
"""

from __future__ import annotations

import numpy as np

from ..chemistry.geometry import check_coordinates, mol_from_geometry
from ..chemistry.molecule import Rejection
from ..chemistry.smiles import KCAL_PER_MOL_TO_EV

BOLTZMANN_EV_PER_K = 8.617333262e-5
from ..units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

#: (eV / Å^2 / amu) per (cm^-1)^2: omega^2 of a mode of wavenumber 1 cm^-1 in the units of the mass-weighted Hessian.
WAVENUMBER2_TO_EIGENVALUE = 1.0 / 521.47091**2


class HessianError(RuntimeError):
    """No Hessian could be computed for a structure with the method asked for."""


def _parsed_or_none(smiles: str | None):
    """The molecule of ``smiles`` (:func:`..chemistry.smiles.parse_smiles`, the one SMILES parser), ``None`` if there
    is none or it does not parse: bonds are then perceived from the geometry."""
    from ..chemistry.molecule import Rejection
    from ..chemistry.smiles import parse_smiles

    if not smiles:
        return None
    try:
        return parse_smiles(smiles)
    except Rejection:
        return None


def forcefield_hessian(
    symbols: list[str], positions: np.ndarray, *, smiles: str | None, charge: int, step: float = 1e-3
):
    """Cartesian Hessian (eV/Å^2) by central differences of RDKit MMFF94 gradients (UFF where MMFF lacks parameters).

    :param smiles: the SMILES the geometry was embedded from (its atom order is RDKit's ``AddHs`` order); without it,
        bonds are perceived from the geometry.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem
    from rdkit.Geometry import Point3D

    mol = None
    parsed = _parsed_or_none(smiles)
    if parsed is not None:
        candidate = Chem.AddHs(parsed)
        if [a.GetSymbol() for a in candidate.GetAtoms()] == list(symbols):
            mol = candidate
    if mol is None:
        from ase.data import atomic_numbers

        mol = mol_from_geometry([atomic_numbers[s] for s in symbols], np.asarray(positions, dtype=float), charge)
        if mol is None:
            raise HessianError('RDKit cannot assign bonds to this geometry: use hessian: pyscf or method: random')
    mol.RemoveAllConformers()
    mol.AddConformer(Chem.Conformer(len(symbols)), assignId=True)
    conformer = mol.GetConformer()
    if AllChem.MMFFHasAllMoleculeParams(mol):
        properties = AllChem.MMFFGetMoleculeProperties(mol)

        def make_field():
            return AllChem.MMFFGetMoleculeForceField(mol, properties)
    elif AllChem.UFFHasAllMoleculeParams(mol):

        def make_field():
            return AllChem.UFFGetMoleculeForceField(mol)
    else:
        raise HessianError(
            'neither MMFF94 nor UFF has parameters for this molecule: use hessian: pyscf or method: random'
        )

    def gradient(coordinates: np.ndarray) -> np.ndarray:
        # A fresh force field per point: reusing one with CalcGrad(positions) returned stale gradients in RDKit
        # 2024/2025 (checked against finite differences of the energy); setting one up costs ~50 µs.
        for index, (x, y, z) in enumerate(coordinates.reshape(-1, 3)):
            conformer.SetAtomPosition(index, Point3D(float(x), float(y), float(z)))
        return np.asarray(make_field().CalcGrad())

    x0 = np.asarray(positions, dtype=float).ravel()
    hessian = np.zeros((x0.size, x0.size))
    for i in range(x0.size):
        shifted = x0.copy()
        shifted[i] += step
        plus = gradient(shifted)
        shifted[i] -= 2 * step
        hessian[i] = (plus - gradient(shifted)) / (2 * step)
    return 0.5 * (hessian + hessian.T) * KCAL_PER_MOL_TO_EV


def pyscf_hessian(
    symbols: list[str], positions: np.ndarray, *, charge: int, multiplicity: int, basis: str
) -> np.ndarray:
    """Cartesian Hessian (eV/Å^2) of restricted (open-shell: unrestricted) Hartree-Fock, in-process. Tiny molecules only."""
    from pyscf import gto, scf
    from pyscf import hessian as _hessian  # noqa: F401  (importing pyscf.hessian adds mf.Hessian)

    mol = gto.M(
        atom=[(s, tuple(p)) for s, p in zip(symbols, positions)],
        unit='Angstrom',
        basis=basis,
        charge=charge,
        spin=multiplicity - 1,
        verbose=0,
    )
    mf = (scf.RHF(mol) if multiplicity == 1 else scf.UHF(mol)).run()
    if not mf.converged:
        raise HessianError('the Hartree-Fock calculation for the Hessian did not converge: use hessian: forcefield')
    n = len(symbols)
    raw = mf.Hessian().kernel()  # (n, n, 3, 3) in Hartree / Bohr^2
    return raw.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n) * HARTREE_TO_EV / BOHR_TO_ANGSTROM**2


def normal_modes(hessian: np.ndarray, masses: np.ndarray, positions: np.ndarray, *, min_frequency: float):
    """Vibrational modes: eigenvalues (floored) and mass-weighted eigenvectors with translations/rotations projected out."""
    n = len(masses)
    sqrt_m = np.sqrt(np.repeat(masses, 3))
    weighted = hessian / np.outer(sqrt_m, sqrt_m)

    # Project out rigid-body motions so that they are not sampled (Eckart conditions in mass-weighted coordinates).
    centre = (masses[:, None] * positions).sum(0) / masses.sum()
    r = positions - centre
    rigid = []
    for axis in range(3):
        vector = np.zeros((n, 3))
        vector[:, axis] = 1.0
        rigid.append((vector * np.sqrt(masses)[:, None]).ravel())
        rotation = np.cross(np.eye(3)[axis], r) * np.sqrt(masses)[:, None]
        rigid.append(rotation.ravel())
    # An orthonormal basis of the vibrational subspace: the complement of the rigid-body span (5 vectors if linear).
    full, singular, _ = np.linalg.svd(np.array(rigid).T, full_matrices=True)
    rank = int(np.sum(singular > 1e-6 * singular.max()))
    vibrational = full[:, rank:]
    values, rotation = np.linalg.eigh(vibrational.T @ weighted @ vibrational)
    vectors = vibrational @ rotation
    floor = (min_frequency**2) * WAVENUMBER2_TO_EIGENVALUE
    return np.maximum(values, floor), vectors


def sample_normal_modes(
    symbols: list[str],
    positions: np.ndarray,
    hessian: np.ndarray,
    *,
    number: int,
    temperature: float,
    rng: np.random.Generator,
    min_frequency: float,
    min_distance: float,
    max_tries: int = 20,
) -> list[np.ndarray]:
    """``number`` geometries displaced along normal modes with classical Boltzmann amplitudes at ``temperature`` K."""
    from ase.data import atomic_masses, atomic_numbers

    positions = np.asarray(positions, dtype=float)
    if len(symbols) == 1:
        raise HessianError('a single atom has no vibrations: normal-mode sampling needs at least two atoms')
    masses = np.array([atomic_masses[atomic_numbers[s]] for s in symbols])
    values, vectors = normal_modes(hessian, masses, positions, min_frequency=min_frequency)
    sigma = np.sqrt(BOLTZMANN_EV_PER_K * temperature / values)  # Å sqrt(amu)
    inverse_sqrt_m = 1.0 / np.sqrt(np.repeat(masses, 3))
    return _draw(
        lambda: positions + (inverse_sqrt_m * (vectors @ (rng.standard_normal(len(values)) * sigma))).reshape(-1, 3),
        symbols,
        number,
        min_distance,
        max_tries,
    )


def sample_random(
    symbols: list[str],
    positions: np.ndarray,
    *,
    number: int,
    sigma: float,
    rng: np.random.Generator,
    min_distance: float,
    max_tries: int = 20,
) -> list[np.ndarray]:
    """``number`` geometries with independent Gaussian displacements of standard deviation ``sigma`` Å per coordinate."""
    positions = np.asarray(positions, dtype=float)
    return _draw(
        lambda: positions + rng.normal(0.0, sigma, size=positions.shape), symbols, number, min_distance, max_tries
    )


def _draw(draw, symbols, number, min_distance, max_tries) -> list[np.ndarray]:
    geometries = []
    for _ in range(number):
        for _attempt in range(max_tries):
            candidate = draw()
            try:
                geometries.append(check_coordinates(symbols, candidate, min_distance=min_distance))
                break
            except Rejection:
                continue  # a draw that squeezes two atoms together is redrawn, not stored
        else:
            raise HessianError(
                f'{max_tries} draws in a row put atoms closer than {min_distance} Å: lower the temperature or the displacement'
            )
    return geometries
