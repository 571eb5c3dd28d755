"""A potential-energy-surface set the benchmarks compute themselves: normal-mode samples of ethanol, labelled by PySCF.

Recipe (the ANI-1 normal-mode sampling, Smith et al. 2017): RDKit geometry from SMILES, optimised at the labelling
level with ASE's BFGS on PySCF forces, harmonic analysis of PySCF's analytic Hessian at that level, then frames with
every normal coordinate drawn from its classical Boltzmann distribution at a temperature drawn per frame between
``temperatures`` (K), so that the set holds both near-equilibrium and strongly distorted geometries. Every frame gets
the energy (eV) and forces (eV/Å) at the level.

Frames are cached in ``benchmarks/data/<name>.npz`` (ignored by git) and appended to in chunks, so an interrupted
run keeps what it computed and a later run only labels what is missing. The sampling is seeded: frame ``i`` is the
same geometry in every run.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
from aiida_mlqm.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV

DATA = pathlib.Path(__file__).parent / 'data'
KELVIN_TO_HARTREE = 3.166811563e-6


def _mole(symbols, positions, basis: str):
    from pyscf import gto

    return gto.M(atom=list(zip(symbols, positions)), basis=basis, unit='Angstrom', verbose=0)


def _mean_field(symbols, positions, method: str, basis: str):
    from pyscf import dft, scf

    mol = _mole(symbols, positions, basis)
    if method.lower() in ('hf', 'rhf'):
        mean_field = scf.RHF(mol)
    else:
        mean_field = dft.RKS(mol)
        mean_field.xc = method
    mean_field.chkfile = None  # no checkpoint files in the working directory
    return mean_field


def label(symbols, positions, method: str, basis: str) -> tuple[float, np.ndarray]:
    """Energy (eV) and forces (eV/Å) of one geometry (Å)."""
    from pyscf import lib

    with lib.with_omp_threads(1):
        mean_field = _mean_field(symbols, positions, method, basis)
        energy = mean_field.kernel()
        if not mean_field.converged:
            raise RuntimeError('SCF did not converge')
        gradient = mean_field.nuc_grad_method().kernel()
    return energy * HARTREE_TO_EV, -gradient * HARTREE_TO_EV / BOHR_TO_ANGSTROM


def equilibrium(smiles: str, method: str, basis: str, log=print):
    """Optimised geometry (Å) and the harmonic modes at the level: ``symbols, positions, frequencies, modes``."""
    from ase import Atoms
    from ase.calculators.calculator import Calculator, all_changes
    from ase.optimize import BFGS
    from rdkit import Chem
    from rdkit.Chem import AllChem

    molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(molecule, randomSeed=7)
    AllChem.MMFFOptimizeMolecule(molecule)
    symbols = [atom.GetSymbol() for atom in molecule.GetAtoms()]
    positions = molecule.GetConformer().GetPositions()

    class Level(Calculator):
        implemented_properties = ['energy', 'forces']  # noqa: RUF012 - ASE's API

        def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            energy, forces = label(symbols, self.atoms.get_positions(), method, basis)
            self.results = {'energy': energy, 'forces': forces}

    atoms = Atoms(symbols, positions=positions, calculator=Level())
    BFGS(atoms, logfile=None).run(fmax=0.01, steps=100)
    positions = atoms.get_positions()
    log(f'optimised {smiles} at {method}/{basis}: max force {np.abs(atoms.get_forces()).max():.3g} eV/Å')

    from pyscf import lib
    from pyscf.hessian import thermo

    with lib.with_omp_threads(1):
        mean_field = _mean_field(symbols, positions, method, basis)
        mean_field.kernel()
        hessian = mean_field.Hessian().kernel()
    analysis = thermo.harmonic_analysis(mean_field.mol, hessian, exclude_trans=True, exclude_rot=True)
    frequencies = np.asarray(analysis['freq_au'])  # hartree (atomic units of angular frequency)
    modes = np.asarray(analysis['norm_mode'])  # (modes, atoms, 3), mass-weighted normal modes in Cartesian form
    log(f'harmonic analysis: {len(frequencies)} modes, lowest {analysis["freq_wavenumber"][0]:.0f} cm-1')
    return symbols, positions, frequencies, modes


def sample(positions, frequencies, modes, count: int, temperatures: tuple[float, float], seed: int):
    """``count`` geometries (Å) with normal coordinates from the harmonic Boltzmann distribution.

    PySCF's harmonic analysis works with masses in amu: ``frequencies`` (``freq_au``) are in
    sqrt(hartree / (bohr^2 amu)) and ``modes`` (``norm_mode``) in 1/sqrt(amu), so a normal coordinate of variance
    ``kT / frequency^2`` (bohr^2 amu) times a mode is a Cartesian displacement in bohr (0.1 Å RMS at 500 K here).
    """
    rng = np.random.default_rng(seed)
    frequencies = np.abs(np.real(frequencies))
    geometries = []
    for _ in range(count):
        temperature = rng.uniform(*temperatures)
        q = rng.normal(0.0, np.sqrt(temperature * KELVIN_TO_HARTREE) / frequencies)
        displacement = np.einsum('k,kai->ai', q, np.real(modes)) * BOHR_TO_ANGSTROM
        geometries.append(positions + displacement)
    return geometries


def frames(
    count: int,
    *,
    smiles: str = 'CCO',
    method: str = 'b3lyp',
    basis: str = '6-31g*',
    temperatures: tuple[float, float] = (100.0, 1200.0),
    seed: int = 0,
    log=print,
    chunk: int = 10,
):
    """The first ``count`` frames of the set as ``Structures`` (cached; computes only what the cache lacks)."""
    from aiida_mlqm.models.data import Structures
    from ase.data import atomic_numbers

    name = f'{smiles}_{method}_{basis}_{int(temperatures[0])}-{int(temperatures[1])}K_seed{seed}_v2'
    name = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)
    DATA.mkdir(exist_ok=True)
    cache = DATA / f'{name}.npz'
    header = DATA / f'{name}.modes.npz'
    if header.is_file():
        with np.load(header, allow_pickle=False) as archive:
            symbols = [str(s) for s in archive['symbols']]
            positions, frequencies, modes = archive['positions'], archive['frequencies'], archive['modes']
    else:
        symbols, positions, frequencies, modes = equilibrium(smiles, method, basis, log=log)
        np.savez(header, symbols=np.asarray(symbols), positions=positions, frequencies=frequencies, modes=modes)
    numbers = np.array([atomic_numbers[s] for s in symbols])
    energies, forces = [], []
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as archive:
            energies, forces = list(archive['energy']), list(archive['forces'])
    geometries = sample(positions, frequencies, modes, count, temperatures, seed)
    started = time.perf_counter()
    for index in range(len(energies), count):
        energy, force = label(symbols, geometries[index], method, basis)
        energies.append(energy)
        forces.append(force)
        if (index + 1) % chunk == 0 or index + 1 == count:
            np.savez(cache, energy=np.array(energies), forces=np.array(forces))
            log(f'{name}: {index + 1}/{count} frames labelled ({time.perf_counter() - started:.0f} s this run)')
    count = min(count, len(energies))
    return Structures(
        numbers=np.tile(numbers, count),
        positions=np.concatenate(geometries[:count]),
        offsets=np.arange(count + 1) * len(numbers),
        energy=np.array(energies[:count]),
        forces=np.concatenate(forces[:count]),
    )


if __name__ == '__main__':
    import sys

    frames(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
