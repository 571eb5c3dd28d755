"""Geometry sanity and what a geometry says about the molecule: distances, fragments, point group, bonds.

No AiiDA here; positions are in Å.
"""

from __future__ import annotations

import numpy as np

from .molecule import Rejection, atomic_number

__all__ = ('check_coordinates', 'count_fragments', 'mol_from_geometry', 'perceive_identity', 'point_group')


def check_coordinates(symbols: list[str], positions, *, min_distance: float) -> np.ndarray:
    """Return positions as an ``(n, 3)`` float array; reject NaN/inf and atoms closer than ``min_distance`` Å."""
    try:
        array = np.asarray(positions, dtype=float)
    except (TypeError, ValueError) as exception:
        raise Rejection('invalid_record', f'positions are not numbers: {exception}') from exception
    if array.shape != (len(symbols), 3):
        raise Rejection('invalid_record', f'positions have shape {array.shape}, expected ({len(symbols)}, 3)')
    if not np.all(np.isfinite(array)):
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(array))[:, 0]})
        raise Rejection(
            'non_finite_coordinates', f'atoms {bad[:10]} have NaN or infinite coordinates: fix the geometry'
        )
    if len(array) > 1:
        distances = np.linalg.norm(array[:, None, :] - array[None, :, :], axis=-1)
        distances[np.diag_indices(len(array))] = np.inf
        i, j = np.unravel_index(np.argmin(distances), distances.shape)
        if distances[i, j] < min_distance:
            raise Rejection(
                'atoms_too_close',
                f'atoms {min(i, j)} ({symbols[min(i, j)]}) and {max(i, j)} ({symbols[max(i, j)]}) are '
                f'{distances[i, j]:.3f} Å apart, closer than {min_distance} Å: fix the geometry (units must be Å)',
            )
    return array


def count_fragments(symbols: list[str], positions: np.ndarray, scale: float = 1.25) -> int:
    """Number of covalently connected fragments, bonds from covalent radii times ``scale``."""
    if len(symbols) < 2:
        return 1
    from ase.data import covalent_radii
    from scipy.sparse.csgraph import connected_components

    radii = np.array([covalent_radii[atomic_number(s)] for s in symbols])
    distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    bonded = distances <= scale * (radii[:, None] + radii[None, :])
    return int(connected_components(bonded, directed=False)[0])


def point_group(symbols: list[str], positions: np.ndarray) -> str | None:
    """Schoenflies symbol from pymatgen's ``PointGroupAnalyzer`` (None for a single atom)."""
    if len(symbols) < 2:
        return None
    from pymatgen.core import Molecule
    from pymatgen.symmetry.analyzer import PointGroupAnalyzer

    return str(PointGroupAnalyzer(Molecule(symbols, positions), tolerance=0.1).sch_symbol)


def mol_from_geometry(numbers: list[int], positions: np.ndarray, charge: int):
    """An RDKit molecule with every hydrogen explicit, bonds perceived from the geometry; ``None`` when that fails.

    Bond orders first (xyz2mol as in ``rdDetermineBonds``, up to 40 atoms since it gets slow beyond); connectivity
    alone where bond orders cannot be assigned (radicals, unusual valences), with the atoms short of their valence
    made radicals, since the geometry lists every hydrogen.
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdDetermineBonds
    from rdkit.Geometry import Point3D

    RDLogger.DisableLog('rdApp.*')
    for with_orders in (True, False):
        editable = Chem.RWMol()
        for number in numbers:
            editable.AddAtom(Chem.Atom(int(number)))
        mol = editable.GetMol()
        conformer = Chem.Conformer(len(numbers))
        for index, (x, y, z) in enumerate(positions):
            conformer.SetAtomPosition(index, Point3D(float(x), float(y), float(z)))
        mol.AddConformer(conformer, assignId=True)
        try:
            if with_orders and len(numbers) <= 40:
                rdDetermineBonds.DetermineBonds(mol, charge=charge)
            else:
                rdDetermineBonds.DetermineConnectivity(mol)
            for atom in mol.GetAtoms():
                atom.SetNoImplicit(True)
            Chem.SanitizeMol(mol)  # assigns radical electrons to atoms short of their valence
            return mol
        except Exception:  # noqa: BLE001, S112  bond perception fails on unusual valences: connectivity, then give up
            continue
    return None


def perceive_identity(numbers: list[int], positions: np.ndarray, charge: int) -> tuple[str | None, str | None]:
    """Canonical SMILES and InChIKey of a geometry by RDKit bond perception; ``(None, None)`` when that fails."""
    from rdkit import Chem

    mol = mol_from_geometry(numbers, positions, charge)
    if mol is None:
        return None, None
    try:
        mol = Chem.RemoveHs(mol)
        return Chem.MolToSmiles(mol), Chem.MolToInchiKey(mol) or None
    except Exception:  # noqa: BLE001  InChI has no answer for some exotic valences; the entry is not deduplicated
        return None, None
