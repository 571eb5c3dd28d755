"""Chemistry behind ``mlqm.build``, free of AiiDA: SMILES to 3D, electron counting and the per-entry checks.

Every check raises :class:`Rejection` with a ``kind`` (a stable machine-readable word used in the ``rejected`` output
and in tests) and a message that names the problem and the fix. The calcfunctions in :mod:`.build` call these
functions; keeping them here lets tests and the benchmark time RDKit on its own.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

#: Rejection kinds, in the order the checks run.
REJECTION_KINDS = (
    'invalid_record',
    'invalid_smiles',
    'unsupported_element',
    'charge_mismatch',
    'impossible_multiplicity',
    'non_finite_coordinates',
    'atoms_too_close',
    'disconnected_fragments',
    'duplicate',
    'embedding_failed',
)

KCAL_PER_MOL_TO_EV = 0.0433641043


class Rejection(ValueError):
    """An entry that cannot be built; ``kind`` is one of :data:`REJECTION_KINDS`."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclasses.dataclass
class Prepared:
    """An entry that passed the checks that do not need 3D coordinates from RDKit."""

    symbols: list[str] | None
    positions: np.ndarray | None
    charge: int
    multiplicity: int
    smiles: str | None
    canonical_smiles: str | None
    inchikey: str | None


@dataclasses.dataclass
class Conformer:
    positions: np.ndarray
    energy_ev: float | None
    converged: bool | None


# -- electrons, elements --------------------------------------------------------------------------------------------


def atomic_number(symbol: str) -> int:
    from ase.data import atomic_numbers

    if symbol not in atomic_numbers or symbol == 'X':
        raise Rejection('invalid_record', f'unknown element symbol {symbol!r}: use a symbol of the periodic table')
    return atomic_numbers[symbol]


def default_multiplicity(symbols: list[str], charge: int) -> int:
    """Lowest multiplicity allowed by electron parity: 1 for an even electron count, 2 for an odd one."""
    electrons = sum(atomic_number(s) for s in symbols) - charge
    return 1 + electrons % 2


def check_charge_multiplicity(symbols: list[str], charge: int, multiplicity: int) -> None:
    """Reject a charge/multiplicity pair that no electron configuration of these atoms can have."""
    electrons = sum(atomic_number(s) for s in symbols) - charge
    if electrons < 0:
        raise Rejection('impossible_multiplicity', f'charge {charge} leaves {electrons} electrons: lower the charge')
    if multiplicity < 1:
        raise Rejection('impossible_multiplicity', f'multiplicity {multiplicity} is below 1: use 2S+1 >= 1')
    unpaired = multiplicity - 1
    if unpaired > electrons or (electrons - unpaired) % 2:
        allowed = 'an even multiplicity (2, 4, ...)' if electrons % 2 else 'an odd multiplicity (1, 3, ...)'
        raise Rejection(
            'impossible_multiplicity',
            f'{electrons} electrons (charge {charge}) cannot have multiplicity {multiplicity}: they need {allowed} '
            f'of at most {electrons + 1}; check the charge or the multiplicity',
        )


@functools.lru_cache(maxsize=4096)
def basis_supports(basis: str, symbol: str) -> bool:
    """Whether PySCF has basis ``basis`` for element ``symbol`` (``pyscf.gto.basis.load``, cached)."""
    from pyscf.gto import basis as pyscf_basis

    try:
        return bool(pyscf_basis.load(basis, symbol))
    except Exception:  # noqa: BLE001  PySCF raises BasisNotFoundError, KeyError or RuntimeError by basis family
        return False


def check_basis(symbols: list[str], basis: str) -> None:
    missing = sorted({s for s in symbols if not basis_supports(basis, s)})
    if missing:
        raise Rejection(
            'unsupported_element',
            f'basis {basis!r} has no functions for {", ".join(missing)}: choose a basis that covers them '
            f'(for example def2-svp) or remove the entry',
        )


# -- geometry -------------------------------------------------------------------------------------------------------


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


# -- SMILES ---------------------------------------------------------------------------------------------------------


def parse_smiles(smiles: str):
    """Return the RDKit molecule (without explicit hydrogens) or raise ``Rejection('invalid_smiles')``."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog('rdApp.*')
    mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles.strip() else None
    if mol is None:
        raise Rejection(
            'invalid_smiles', f'RDKit cannot parse SMILES {smiles!r}: check brackets, ring closures and valences'
        )
    return mol


def smiles_charge_multiplicity(mol) -> tuple[int, int]:
    """Formal charge and the multiplicity implied by radical electrons (all unpaired spins parallel)."""
    from rdkit import Chem

    radicals = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
    return Chem.GetFormalCharge(mol), radicals + 1


def prepare_smiles(record: dict, *, basis: str, allow_fragments: bool) -> tuple[Prepared, object]:
    """Checks for a SMILES entry before embedding; return the prepared entry and the RDKit molecule with hydrogens."""
    from rdkit import Chem

    mol = parse_smiles(record['smiles'])
    mol_h = Chem.AddHs(mol)
    symbols = [atom.GetSymbol() for atom in mol_h.GetAtoms()]
    if any(atom.GetAtomicNum() == 0 for atom in mol_h.GetAtoms()):
        raise Rejection('invalid_smiles', f'SMILES {record["smiles"]!r} has dummy atoms (*): replace them by elements')
    check_basis(symbols, basis)
    charge, multiplicity = smiles_charge_multiplicity(mol)
    given_charge = record.get('charge')
    if given_charge is not None and int(given_charge) != charge:
        raise Rejection(
            'charge_mismatch',
            f'charge {given_charge} was given but the SMILES has a total formal charge of {charge}: '
            f'write the charges into the SMILES (e.g. [NH4+]) or correct the charge',
        )
    if record.get('multiplicity') is not None:
        multiplicity = int(record['multiplicity'])  # e.g. singlet carbene or triplet O2 written as O=O
    check_charge_multiplicity(symbols, charge, multiplicity)
    if not allow_fragments and len(Chem.GetMolFrags(mol)) > 1:
        raise Rejection(
            'disconnected_fragments',
            f'SMILES {record["smiles"]!r} has {len(Chem.GetMolFrags(mol))} disconnected fragments: '
            f'split it into separate entries or allow fragments (--allow-fragments / allow_fragments: true)',
        )
    prepared = Prepared(
        symbols=symbols,
        positions=None,
        charge=charge,
        multiplicity=multiplicity,
        smiles=record['smiles'],
        canonical_smiles=Chem.MolToSmiles(mol),
        inchikey=Chem.MolToInchiKey(mol) or None,
    )
    return prepared, mol_h


def prepare_geometry(record: dict, *, basis: str, allow_fragments: bool, min_distance: float) -> Prepared:
    """Checks for an entry that comes with a geometry (xyz, extxyz, ASE db, pymatgen, G2)."""
    symbols = record.get('symbols')
    if not isinstance(symbols, list) or not symbols:
        raise Rejection('invalid_record', 'a geometry entry needs a non-empty list of element symbols')
    numbers = [atomic_number(s) for s in symbols]
    check_basis(symbols, basis)
    charge = int(record.get('charge') or 0)
    multiplicity = record.get('multiplicity')
    multiplicity = default_multiplicity(symbols, charge) if multiplicity is None else int(multiplicity)
    check_charge_multiplicity(symbols, charge, multiplicity)
    positions = check_coordinates(symbols, record.get('positions'), min_distance=min_distance)
    fragments = count_fragments(symbols, positions)
    if not allow_fragments and fragments > 1:
        raise Rejection(
            'disconnected_fragments',
            f'the geometry has {fragments} fragments that are not bonded by covalent radii: '
            f'split it or allow fragments (--allow-fragments / allow_fragments: true)',
        )
    canonical, inchikey = perceive_identity(numbers, positions, charge)
    return Prepared(
        symbols=list(symbols),
        positions=positions,
        charge=charge,
        multiplicity=multiplicity,
        smiles=record.get('smiles'),
        canonical_smiles=canonical,
        inchikey=inchikey,
    )


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


def embed_conformers(
    mol_h,
    *,
    num_conformers: int,
    seed: int,
    force_field: str,
    max_iterations: int,
    rms_threshold: float,
) -> tuple[list[Conformer], str | None]:
    """ETKDGv3 embedding with a fixed seed, then MMFF94 (UFF where MMFF lacks parameters) optimisation.

    :return: conformers sorted by force-field energy (eV; ``None`` without a force field) and the force field used.
    :raises Rejection: ``embedding_failed`` when RDKit finds no 3D coordinates even from random starting points.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    fragments = Chem.GetMolFrags(mol_h)
    if len(fragments) > 1:
        return _embed_fragments(
            mol_h,
            fragments,
            num_conformers=num_conformers,
            seed=seed,
            force_field=force_field,
            max_iterations=max_iterations,
            rms_threshold=rms_threshold,
        )

    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    params.numThreads = 1
    if num_conformers > 1:
        params.pruneRmsThresh = float(rms_threshold)
    ids = list(AllChem.EmbedMultipleConfs(mol_h, int(num_conformers), params))
    if not ids:
        params.useRandomCoords = True  # the documented remedy for large or strained molecules
        ids = list(AllChem.EmbedMultipleConfs(mol_h, int(num_conformers), params))
    if not ids:
        raise Rejection('embedding_failed', 'RDKit ETKDG found no 3D embedding: check stereochemistry and ring strain')

    used = None
    results: list[tuple[int, float]] | None = None
    if force_field == 'mmff' and AllChem.MMFFHasAllMoleculeParams(mol_h):
        results, used = AllChem.MMFFOptimizeMoleculeConfs(mol_h, numThreads=1, maxIters=int(max_iterations)), 'MMFF94'
    elif force_field in {'mmff', 'uff'} and AllChem.UFFHasAllMoleculeParams(mol_h):
        results, used = AllChem.UFFOptimizeMoleculeConfs(mol_h, numThreads=1, maxIters=int(max_iterations)), 'UFF'

    conformers = []
    for index, conf_id in enumerate(ids):
        positions = mol_h.GetConformer(conf_id).GetPositions()
        if results is None:
            conformers.append(Conformer(positions, None, None))
        else:
            not_converged, energy = results[index]
            conformers.append(Conformer(positions, float(energy) * KCAL_PER_MOL_TO_EV, not_converged == 0))
    conformers.sort(key=lambda c: (c.energy_ev is None, c.energy_ev or 0.0))
    return conformers, used


FRAGMENT_GAP = 3.0  # Å between the closest atoms of neighbouring fragments


def _embed_fragments(mol_h, fragments, **options) -> tuple[list[Conformer], str | None]:
    """Embed each fragment on its own and line them up along x with a gap: RDKit puts fragments on top of each other.

    Conformer ``i`` combines conformer ``i`` of every fragment (the last one where a fragment has fewer); energies are
    summed, since no force acts between fragments here.
    """
    from rdkit import Chem

    parts = [embed_conformers(fragment, **options) for fragment in Chem.GetMolFrags(mol_h, asMols=True)]
    used = {name for _, name in parts}
    combined = []
    for index in range(max(len(conformers) for conformers, _ in parts)):
        positions = np.zeros((mol_h.GetNumAtoms(), 3))
        offset, energy, converged = 0.0, 0.0, True
        for atom_indices, (conformers, _) in zip(fragments, parts):
            conformer = conformers[min(index, len(conformers) - 1)]
            local = conformer.positions - conformer.positions.mean(0)
            local[:, 0] += offset - local[:, 0].min()
            offset = local[:, 0].max() + FRAGMENT_GAP
            positions[list(atom_indices)] = local
            energy = None if energy is None or conformer.energy_ev is None else energy + conformer.energy_ev
            converged = converged and bool(conformer.converged)
        combined.append(Conformer(positions, energy, converged if energy is not None else None))
    combined.sort(key=lambda c: (c.energy_ev is None, c.energy_ev or 0.0))
    return combined, '+'.join(sorted(n for n in used if n)) or None
