"""SMILES: parsing (the one place RDKit reads a SMILES), charge and multiplicity it implies, and 3D embedding.

Embedding is RDKit's ETKDGv3 with a fixed seed, then MMFF94 (UFF where MMFF lacks parameters).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..units import EV_TO_KCAL_PER_MOL
from .molecule import Rejection

__all__ = (
    'Conformer',
    'embed_conformers',
    'molecule_from_json',
    'molecule_to_json',
    'parse_smiles',
    'smiles_charge_multiplicity',
    'with_hydrogens',
)

KCAL_PER_MOL_TO_EV = 1.0 / EV_TO_KCAL_PER_MOL


@dataclasses.dataclass
class Conformer:
    positions: np.ndarray
    energy_ev: float | None
    converged: bool | None


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


def with_hydrogens(smiles: str):
    """Return ``(molecule, molecule with explicit hydrogens)`` of a SMILES; reject dummy atoms and isotope labels.

    The atom order of the second is the atom order of every structure built from this SMILES. Isotopes (``[2H]``)
    are refused rather than dropped: a structure stores elements, and sampling and frequencies would silently use the
    standard masses.
    """
    from rdkit import Chem

    mol = parse_smiles(smiles)
    mol_h = Chem.AddHs(mol)
    if any(atom.GetAtomicNum() == 0 for atom in mol_h.GetAtoms()):
        raise Rejection('invalid_smiles', f'SMILES {smiles!r} has dummy atoms (*): replace them by elements')
    isotopes = sorted({f'[{atom.GetIsotope()}{atom.GetSymbol()}]' for atom in mol.GetAtoms() if atom.GetIsotope()})
    if isotopes:
        raise Rejection(
            'invalid_smiles',
            f'SMILES {smiles!r} has isotope labels {", ".join(isotopes)}: structures store elements with standard '
            'masses, so write the SMILES without isotope numbers (the electronic energy does not depend on them)',
        )
    return mol, mol_h


def molecule_to_json(mol) -> str:
    """A parsed molecule as RDKit's JSON (atoms in order, bonds, charges, radicals, stereo), to pass it on between
    steps that cannot share Python objects (calcfunctions) without parsing its SMILES again."""
    from rdkit import Chem

    return Chem.MolToJSON(mol)


def molecule_from_json(text: str):
    """The molecule :func:`molecule_to_json` wrote, sanitised as a parsed SMILES is (ring information, aromaticity
    and hybridisation, which embedding and force fields need): the same atom order and the same conformers."""
    from rdkit import Chem

    mol = Chem.JSONToMols(text)[0]
    Chem.SanitizeMol(mol)
    return mol


def smiles_charge_multiplicity(mol) -> tuple[int, int]:
    """Formal charge and the multiplicity implied by radical electrons (all unpaired spins parallel)."""
    from rdkit import Chem

    radicals = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
    return Chem.GetFormalCharge(mol), radicals + 1


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
