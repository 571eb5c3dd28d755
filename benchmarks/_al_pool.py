"""Labelled pools for the active-learning benchmark, computed once and cached in ``benchmarks/cache/`` (ignored by git).

Strategies are compared by replaying them on the same labels: every configuration of a pool is labelled once, a
strategy only decides which labels it may look at. Three pools:

- ``potential``: H2O, NH3, CH4, H2CO and CH3OH, normal-mode samples (HF/STO-3G Hessian), most of them at 300 K (the
  near-equilibrium bulk of an MD-generated pool) and fewer at 600 and 1000 K, plus snapshots of Langevin ML-MD at
  600-1000 K on a committee trained on a few normal-mode samples (which wanders off into regions the harmonic picture
  never visits, as exploration does); HF/STO-3G energies and forces on every frame. ``groups`` names molecule and
  regime (``H2O/300K``, ``H2O/ml-md``).
- ``multifidelity``: H2O, NH3, CH4, H2CO and C2H4 normal-mode samples, most at 300 K and fewer at 600 and 1000 K, with
  HF/6-31G* energies and CCSD(T)/6-31G* energies (frozen core) on every frame.
- ``screening``: closed-shell G2 molecules of H, C, N, O (ASE's geometries) with the HF/STO-3G HOMO-LUMO gap.
- ``screening_library``: an enumerated ``R1-core-R2`` library of C, H, N, O molecules (RDKit, at most 6 heavy atoms;
  ETKDG + MMFF94 geometries) with the HF/STO-3G HOMO-LUMO gap.

Run ``python -m benchmarks._al_pool [--quick]`` to compute them ahead of time (``nice -n 10``, ``OMP_NUM_THREADS=1``);
``python -m benchmarks active_learning`` computes what is missing.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

import numpy as np
from aiida_mlqm.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

CACHE = pathlib.Path(__file__).parent / 'cache'
POTENTIAL_MOLECULES = ('H2O', 'NH3', 'CH4', 'H2CO', 'CH3OH')
MULTIFIDELITY_MOLECULES = ('H2O', 'NH3', 'CH4', 'H2CO', 'C2H4')
#: Normal-mode samples per temperature. Most frames are near equilibrium (300 K), as in a pool that MD generates: the
#: hot frames (and the ML-MD excursions of the potential pool) are the rare part of the explored region.
POTENTIAL_COUNTS = {300.0: 150, 600.0: 40, 1000.0: 40}
POTENTIAL_COUNTS_QUICK = {300.0: 60, 600.0: 15, 1000.0: 15}
MULTIFIDELITY_COUNTS = {300.0: 80, 600.0: 20, 1000.0: 20}
MULTIFIDELITY_COUNTS_QUICK = {300.0: 40, 600.0: 10, 1000.0: 10}
CHEAP_BASIS = '6-31g*'
#: The potential and screening pools are the largest: the minimal basis keeps them to minutes on 2 shared cores.
POTENTIAL_BASIS = 'sto-3g'
SCREENING_BASIS = 'sto-3g'


def _mol(numbers, positions, basis):
    from pyscf import gto

    return gto.M(atom=[(int(z), tuple(p)) for z, p in zip(numbers, positions)], basis=basis, unit='Angstrom', verbose=0)


def hf_label(numbers, positions, *, forces: bool = True, basis: str = CHEAP_BASIS):
    """Hartree-Fock energy (eV) and forces (eV/Å) of one closed-shell configuration."""
    from pyscf import scf

    mean_field = scf.RHF(_mol(numbers, positions, basis))
    energy = mean_field.kernel()
    if not mean_field.converged:
        return None
    gradient = mean_field.nuc_grad_method().kernel() if forces else None
    return energy * HARTREE_TO_EV, (None if gradient is None else -gradient * HARTREE_TO_EV / BOHR_TO_ANGSTROM)


def ccsd_t_energy(numbers, positions) -> float | None:
    """CCSD(T)/6-31G* energy (eV), frozen core."""
    from pyscf import cc, scf

    mean_field = scf.RHF(_mol(numbers, positions, CHEAP_BASIS)).run()
    if not mean_field.converged:
        return None
    coupled = cc.CCSD(mean_field).set(frozen=sum(1 for z in numbers if z > 2)).run()
    if not coupled.converged:
        return None
    return float((coupled.e_tot + coupled.ccsd_t()) * HARTREE_TO_EV)


def normal_mode_configurations(name: str, counts: dict[float, int], seed: int):
    """Normal-mode samples (HF/STO-3G Hessian) of ASE's ``name``: ``counts[T]`` geometries at each temperature ``T``.

    :return: atomic numbers per geometry, the geometries, and the temperature of each.
    """
    from aiida_mlqm.workflows.build_sampling import pyscf_hessian, sample_normal_modes
    from ase.build import molecule

    atoms = molecule(name)
    symbols = atoms.get_chemical_symbols()
    hessian = pyscf_hessian(symbols, atoms.positions, charge=0, multiplicity=1, basis='sto-3g')
    rng = np.random.default_rng(seed)
    geometries, temperatures = [], []
    for temperature, count in counts.items():
        geometries += sample_normal_modes(
            symbols, atoms.positions, hessian, number=count, temperature=temperature, rng=rng,
            min_frequency=100.0, min_distance=0.6,
        )  # fmt: skip
        temperatures += [temperature] * (len(geometries) - len(temperatures))
    return [atoms.numbers.copy()] * len(geometries), geometries, temperatures


def _save(path: pathlib.Path, **arrays) -> None:
    tmp = path.with_suffix('.tmp.npz')
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _flat(numbers_list, positions_list):
    offsets = np.concatenate([[0], np.cumsum([len(n) for n in numbers_list])])
    return np.concatenate(numbers_list), np.concatenate(positions_list), offsets


def potential_pool(quick: bool = False, log=print) -> pathlib.Path:
    """Normal-mode samples and ML-MD snapshots with HF/6-31G* energies and forces; returns the cached ``.npz``."""
    path = CACHE / f'potential_v2{"_quick" if quick else ""}.npz'
    if path.exists():
        return path
    from aiida_mlqm.models.data import Structures
    from aiida_mlqm.models.training import train_committee

    counts = POTENTIAL_COUNTS_QUICK if quick else POTENTIAL_COUNTS
    numbers, positions, groups = [], [], []
    for index, name in enumerate(POTENTIAL_MOLECULES):
        z, geometries, temperatures = normal_mode_configurations(name, counts, seed=index)
        numbers += z
        positions += geometries
        groups += [f'{name}/{temperature:.0f}K' for temperature in temperatures]
    log(f'potential pool: {len(numbers)} normal-mode configurations, labelling with HF/{POTENTIAL_BASIS}')
    energies, forces, keep = [], [], []
    for i, (z, r) in enumerate(zip(numbers, positions)):
        label = hf_label(z, r, basis=POTENTIAL_BASIS)
        if label is None:
            continue
        keep.append(i)
        energies.append(label[0])
        forces.append(label[1])
    numbers = [numbers[i] for i in keep]
    positions = [positions[i] for i in keep]
    groups = [groups[i] for i in keep]

    # ML-MD snapshots: a small committee trained on 10 % of the normal-mode frames drives hot Langevin dynamics
    from aiida_mlqm.models.calculator import CommitteeCalculator
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    seed_rng = np.random.default_rng(7)
    seed_index = seed_rng.choice(len(numbers), size=max(20, len(numbers) // 10), replace=False)
    z_flat, r_flat, offsets = _flat([numbers[i] for i in seed_index], [positions[i] for i in seed_index])
    seed_data = Structures(
        z_flat, r_flat, offsets, np.array([energies[i] for i in seed_index]),
        np.concatenate([forces[i] for i in seed_index]),
    )
    committee = train_committee(
        seed_data, {'backend': 'torchani', 'members': 4, 'epochs': 60, 'patience': 60, 'hidden': [32, 16], 'seed': 3}, log=None
    )
    from ase.build import molecule

    md_per_molecule = 20 if quick else 60
    md_frames = []
    for index, name in enumerate(POTENTIAL_MOLECULES):
        atoms = molecule(name)
        atoms.calc = CommitteeCalculator(committee)
        rng = np.random.RandomState(100 + index)
        temperature = 600.0 + 400.0 * (index % 2)
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        dynamics = Langevin(atoms, 0.5 * units.fs, temperature_K=temperature, friction=0.02 / units.fs, rng=rng)
        for _ in range(md_per_molecule):
            dynamics.run(10)
            distances = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
            if distances.min() < 0.6 or distances.max() > 4.0:
                break  # the committee has driven the molecule apart: further frames are not chemistry
            md_frames.append((name, atoms.numbers.copy(), atoms.positions.copy()))
    log(f'potential pool: {len(md_frames)} ML-MD snapshots, labelling with HF/{POTENTIAL_BASIS}')
    for name, z, r in md_frames:
        label = hf_label(z, r, basis=POTENTIAL_BASIS)
        if label is None:
            continue
        numbers.append(z)
        positions.append(r)
        energies.append(label[0])
        forces.append(label[1])
        groups.append(f'{name}/ml-md')
    z_flat, r_flat, offsets = _flat(numbers, positions)
    CACHE.mkdir(exist_ok=True)
    _save(
        path, numbers=z_flat, positions=r_flat, offsets=offsets, energy=np.array(energies),
        forces=np.concatenate(forces), groups=np.array(groups, dtype=str),
        levels=np.array([f'hf/{POTENTIAL_BASIS}'], dtype=str),
    )
    return path


def multifidelity_pool(quick: bool = False, log=print) -> pathlib.Path:
    """Normal-mode samples with HF/6-31G* and CCSD(T)/6-31G* energies on every frame."""
    path = CACHE / f'multifidelity_v3{"_quick" if quick else ""}.npz'
    if path.exists():
        return path
    counts = MULTIFIDELITY_COUNTS_QUICK if quick else MULTIFIDELITY_COUNTS
    numbers, positions, groups, cheap, expensive = [], [], [], [], []
    for index, name in enumerate(MULTIFIDELITY_MOLECULES):
        z, geometries, temperatures = normal_mode_configurations(name, counts, seed=50 + index)
        log(f'multi-fidelity pool: {name}, {len(geometries)} configurations at HF and CCSD(T)/{CHEAP_BASIS}')
        for numbers_i, r, temperature in zip(z, geometries, temperatures):
            label = hf_label(numbers_i, r, forces=False)
            target = ccsd_t_energy(numbers_i, r)
            if label is None or target is None:
                continue
            numbers.append(numbers_i)
            positions.append(r)
            groups.append(f'{name}/{temperature:.0f}K')
            cheap.append(label[0])
            expensive.append(target)
    z_flat, r_flat, offsets = _flat(numbers, positions)
    CACHE.mkdir(exist_ok=True)
    _save(
        path, numbers=z_flat, positions=r_flat, offsets=offsets, cheap=np.array(cheap), expensive=np.array(expensive),
        groups=np.array(groups, dtype=str), levels=np.array([f'hf/{CHEAP_BASIS}', f'ccsd(t)/{CHEAP_BASIS}'], dtype=str),
    )
    return path


def screening_pool(quick: bool = False, log=print) -> pathlib.Path:
    """Closed-shell neutral G2 molecules made of H, C, N, O with their HF/STO-3G HOMO-LUMO gap (eV)."""
    path = CACHE / 'screening.npz'
    if path.exists():
        return path
    from ase.collections import g2
    from pyscf import scf

    numbers, positions, names, gaps = [], [], [], []
    for name in g2.names:
        atoms = g2[name]
        if len(atoms) < 2 or set(atoms.numbers) - {1, 6, 7, 8}:
            continue
        if sum(atoms.numbers) % 2 or np.any(atoms.get_initial_magnetic_moments()):
            continue
        mean_field = scf.RHF(_mol(atoms.numbers, atoms.positions, SCREENING_BASIS))
        mean_field.kernel()
        if not mean_field.converged:
            continue
        occupied = mean_field.mo_occ > 0
        gap = (mean_field.mo_energy[~occupied].min() - mean_field.mo_energy[occupied].max()) * HARTREE_TO_EV
        numbers.append(atoms.numbers.copy())
        positions.append(atoms.positions.copy())
        names.append(name)
        gaps.append(gap)
    log(f'screening pool: {len(names)} G2 molecules with HF/{SCREENING_BASIS} gaps')
    z_flat, r_flat, offsets = _flat(numbers, positions)
    CACHE.mkdir(exist_ok=True)
    _save(path, numbers=z_flat, positions=r_flat, offsets=offsets, gap=np.array(gaps), names=np.array(names, dtype=str))
    return path


#: Substituents and cores of the enumerated screening library (C, H, N, O, closed shell): ``R1-core-R2``.
LIBRARY_SUBSTITUENTS = (
    '[H]', 'C', 'N', 'O', 'C=O', 'C#N', 'C=C', 'C#C', 'N=O', 'OC', 'NC', 'C(N)=O', 'C(=O)O', 'N=N', 'CC', 'C=N', 'OO',
    'NN', 'N(=O)=O', 'C=CC=C', 'C(C)C', 'CO', 'CN',
)  # fmt: skip
LIBRARY_CORES = ('*C*', '*N*', '*O*', '*C(=O)*', '*C=C*', '*N=N*', '*C=N*', '*C#C*', '*C=CC=C*', '*c1ccc(*)cc1', '*C1CC1*')
LIBRARY_MAX_HEAVY = 6


def library_smiles(size: int, seed: int = 0) -> list[str]:
    """A seeded draw of ``size`` canonical SMILES from the ``R1-core-R2`` enumeration (at most
    ``LIBRARY_MAX_HEAVY`` heavy atoms): saturated, conjugated, aromatic, nitro, azo, carbonyl and nitrile chemistry."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog('rdApp.*')
    found = set()
    for core in LIBRARY_CORES:
        for i, first in enumerate(LIBRARY_SUBSTITUENTS):
            for second in LIBRARY_SUBSTITUENTS[i:]:
                mol = Chem.MolFromSmiles(core.replace('*', first, 1).replace('*', second, 1))
                if mol is not None and mol.GetNumHeavyAtoms() <= LIBRARY_MAX_HEAVY:
                    found.add(Chem.MolToSmiles(mol))
    ordered = sorted(found)
    pick = np.random.default_rng(seed).permutation(len(ordered))[:size]
    return [ordered[i] for i in sorted(pick)]


def screening_library_pool(quick: bool = False, log=print) -> pathlib.Path:
    """An enumerated library (``library_smiles``) of RDKit ETKDG + MMFF94 geometries with the HF/STO-3G HOMO-LUMO gap
    (eV): large enough that the top k and the hit rate of k random molecules are not a handful of molecules."""
    size = 240 if quick else 480
    path = CACHE / f'screening_library_{size}.npz'
    if path.exists():
        return path
    from aiida_mlqm.chemistry.smiles import embed_conformers, with_hydrogens
    from pyscf import scf

    numbers, positions, names, gaps = [], [], [], []
    for smiles in library_smiles(size):
        try:
            _, mol_h = with_hydrogens(smiles)
            conformers, _ = embed_conformers(
                mol_h, num_conformers=1, seed=0, force_field='mmff', max_iterations=500, rms_threshold=0.5
            )
        except Exception as error:  # noqa: BLE001  a molecule RDKit cannot embed is left out, and said so
            log(f'screening library: {smiles} left out ({error})')
            continue
        z = np.array([atom.GetAtomicNum() for atom in mol_h.GetAtoms()])
        if z.sum() % 2:
            continue
        mean_field = scf.RHF(_mol(z, conformers[0].positions, SCREENING_BASIS))
        mean_field.kernel()
        if not mean_field.converged:
            continue
        occupied = mean_field.mo_occ > 0
        numbers.append(z)
        positions.append(np.asarray(conformers[0].positions, dtype=float))
        names.append(smiles)
        gaps.append((mean_field.mo_energy[~occupied].min() - mean_field.mo_energy[occupied].max()) * HARTREE_TO_EV)
    log(f'screening library: {len(names)} molecules with HF/{SCREENING_BASIS} gaps')
    z_flat, r_flat, offsets = _flat(numbers, positions)
    CACHE.mkdir(exist_ok=True)
    _save(path, numbers=z_flat, positions=r_flat, offsets=offsets, gap=np.array(gaps), names=np.array(names, dtype=str))
    return path


def load(path: pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def main(argv: list[str]) -> int:
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ.setdefault('PYSCF_TMPDIR', tempfile.gettempdir())  # PySCF's default is the working directory
    quick = '--quick' in argv
    for build in (screening_pool, screening_library_pool, multifidelity_pool, potential_pool):
        started = time.perf_counter()
        path = build(quick)
        print(f'{path} ready ({time.perf_counter() - started:.0f} s, {time.process_time():.0f} s CPU so far)', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
