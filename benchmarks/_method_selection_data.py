"""Training data for method selection: features and CCSD(T) diagnostics of small molecules, computed here.

``python -m benchmarks._method_selection_data --out FILE [--max-heavy 4] [--limit N] [--seed 0]``

Molecules are enumerated with RDKit: substituent pairs ``R1-R2`` and ``R1-X-R2`` over small cores and substituents of
C, H, N, O, F, S, Cl and B (closed shell), the same substituents on radical centres (doublets) and on carbene/nitrene
centres (triplets), deduplicated by canonical SMILES and kept up to ``--max-heavy`` heavy atoms. Geometries: RDKit
ETKDGv3 + MMFF94 (the equilibrium stand-in), plus for some molecules one bond stretched to 1.5x and 2x, a double bond
twisted by 90 degrees, or all atoms displaced at random (0.1 Å). Textbook multireference cases (O3, C2, stretched N2,
singlet CH2, Be2, ...) come with literature geometries.

For every geometry the same process runs the features job (``calcjobs/runners/features_runner.py``) and the
frozen-core CCSD(T) diagnostic job (``calcjobs/runners/pyscf_runner.py``, the runner the batch jobs use), each timed;
the diagnostic at cc-pVDZ, the features at :data:`FEATURES_BASIS`. Atom energies (CCSD(T), same settings) give %TAE[(T)]. Results are checkpointed to ``--out`` after every
geometry (write then rename), and a rerun continues where it stopped, so a partial file is a usable training set.
Run it beside other work with ``OMP_NUM_THREADS=1 nice -n 10``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / 'calcjobs' / 'runners'))

import features_runner  # noqa: E402 -- the job runners are plain modules, loaded as the job would load them
import pyscf_runner  # noqa: E402

BASIS = 'cc-pvdz'
SUBSTITUENTS = [
    '[H]', 'C', 'N', 'O', 'F', 'Cl', 'S', 'B', 'C=O', 'C#N', 'C=C', 'C#C', 'N=O', 'OO', 'NN', 'C=N', 'OC', 'NC',
    'N=C', 'C(F)(F)F', 'B(O)O', 'C(=O)O', 'N=N', 'OF', 'SC', 'OCl', 'N(=O)=O', 'C(N)=O', 'C=S', 'N=[N+]=[N-]',
]  # fmt: skip
CORES = ['*C*', '*N*', '*O*', '*S*', '*C(=O)*', '*C=C*', '*N=N*', '*C=N*', '*B(*)', '*C#C*', '*C(=S)*', '*N=C*']
RADICAL_CENTRES = ['[CH2]*', '[NH]*', '[O]*', '[S]*', 'O=[C]*', '[CH]=C*', '[BH]*', 'N#C[CH]*']
TRIPLET_CENTRES = ['[CH]*', '[N]*']
CCSD_T_PARAMETERS = {
    'method': 'ccsd(t)',
    'basis': BASIS,
    'frozen_core': True,
    'diagnostics': True,
    'reference': 'auto',
    'max_memory': 3000,
    'scf': {'conv_tol': 1e-9, 'max_cycle': 150},
    'cc': {'conv_tol': 1e-7, 'conv_tol_normt': 1e-5, 'max_cycle': 150},
}
# The features job as a batch job with default FeatureJobParameters runs it. Its basis is smaller than the
# diagnostic's: at 6-31G it costs a fraction of the CCSD(T)/cc-pVDZ run and the grouped-CV AUC did not drop
# (``benchmarks/_method_selection_cost.py`` measures the cost side by side).
FEATURES_BASIS = '6-31g'
FEATURES_PARAMETERS = {
    'method': 'features', 'basis': FEATURES_BASIS, 'features': dict(features_runner.DEFAULT_OPTIONS), 'scf': {},
    'max_memory': 3000,
}  # fmt: skip
ATOM_MULTIPLICITIES = {'H': 2, 'Be': 1, 'B': 2, 'C': 3, 'N': 4, 'O': 3, 'F': 2, 'S': 3, 'Cl': 2}
# Textbook multireference (and reference single-reference) cases: name, symbols, positions (Å), multiplicity.
TEXTBOOK = [
    ('O3', ['O', 'O', 'O'], [[0, 0, 0], [1.272, 0, 0], [1.272 - 1.272 * np.cos(np.radians(116.8)), 1.272 * np.sin(np.radians(116.8)), 0]], 1),
    ('C2', ['C', 'C'], [[0, 0, 0], [1.243, 0, 0]], 1),
    ('N2_eq', ['N', 'N'], [[0, 0, 0], [1.098, 0, 0]], 1),
    ('N2_1p4', ['N', 'N'], [[0, 0, 0], [1.4, 0, 0]], 1),
    ('N2_1p7', ['N', 'N'], [[0, 0, 0], [1.7, 0, 0]], 1),
    ('N2_2p0', ['N', 'N'], [[0, 0, 0], [2.0, 0, 0]], 1),
    ('CH2_singlet', ['C', 'H', 'H'], [[0, 0, 0], [1.107, 0, 0], [1.107 * np.cos(np.radians(102.4)), 1.107 * np.sin(np.radians(102.4)), 0]], 1),
    ('CH2_triplet', ['C', 'H', 'H'], [[0, 0, 0], [1.077, 0, 0], [1.077 * np.cos(np.radians(133.9)), 1.077 * np.sin(np.radians(133.9)), 0]], 3),
    ('Be2', ['Be', 'Be'], [[0, 0, 0], [2.45, 0, 0]], 1),
    ('F2', ['F', 'F'], [[0, 0, 0], [1.412, 0, 0]], 1),
    ('F2_stretched', ['F', 'F'], [[0, 0, 0], [2.0, 0, 0]], 1),
    ('HF_stretched', ['H', 'F'], [[0, 0, 0], [1.8, 0, 0]], 1),
    ('H2O_stretched', ['O', 'H', 'H'], [[0, 0, 0], [1.9, 0, 0], [1.9 * np.cos(np.radians(104.5)), 1.9 * np.sin(np.radians(104.5)), 0]], 1),
    ('NO', ['N', 'O'], [[0, 0, 0], [1.151, 0, 0]], 2),
    ('CN', ['C', 'N'], [[0, 0, 0], [1.172, 0, 0]], 2),
    ('N2O', ['N', 'N', 'O'], [[0, 0, 0], [1.128, 0, 0], [1.128 + 1.184, 0, 0]], 1),
    ('FOOF', ['F', 'O', 'O', 'F'], [[-0.87, 1.25, 0.35], [0, 0.61, -0.24], [0, -0.61, -0.24], [0.87, -1.25, 0.35]], 1),
    ('S3', ['S', 'S', 'S'], [[0, 0, 0], [1.917, 0, 0], [1.917 - 1.917 * np.cos(np.radians(117.4)), 1.917 * np.sin(np.radians(117.4)), 0]], 1),
    ('C2H4_twisted', ['C', 'C', 'H', 'H', 'H', 'H'], [[0, 0, 0], [1.40, 0, 0], [-0.55, 0.93, 0], [-0.55, -0.93, 0], [1.95, 0, 0.93], [1.95, 0, -0.93]], 1),
    ('BN', ['B', 'N'], [[0, 0, 0], [1.28, 0, 0]], 1),
    ('ClO', ['Cl', 'O'], [[0, 0, 0], [1.57, 0, 0]], 2),
    ('OClO', ['Cl', 'O', 'O'], [[0, 0, 0], [1.47, 0, 0], [1.47 * np.cos(np.radians(117.6)), 1.47 * np.sin(np.radians(117.6)), 0]], 2),
]  # fmt: skip


def enumerate_smiles(max_heavy: int) -> list[tuple[str, str]]:
    """Return ``(canonical SMILES, family)`` of the enumerated molecules, deduplicated, sorted by SMILES."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog('rdApp.*')
    found: dict[str, str] = {}

    def add(smiles: str, family: str) -> None:
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            return
        heavy = mol.GetNumHeavyAtoms()
        if heavy == 0 or heavy > max_heavy or Chem.GetFormalCharge(mol) != 0:
            return
        canonical = Chem.MolToSmiles(mol)
        found.setdefault(canonical, family)

    def joined(template: str, *groups: str) -> str:
        for group in groups:
            template = template.replace('*', f'({group})' if group != '[H]' else '[H]', 1)
        return template

    for i, first in enumerate(SUBSTITUENTS):
        for second in SUBSTITUENTS[i:]:
            add(f'{first}{second}' if first != '[H]' else f'{second}', 'pair')
            for core in CORES:
                slots = core.count('*')
                groups = [first, second, '[H]'][:slots]
                add(joined(core, *groups), 'core')
    for centre in RADICAL_CENTRES:
        for group in SUBSTITUENTS:
            add(joined(centre, group), 'radical')
    for centre in TRIPLET_CENTRES:
        for group in SUBSTITUENTS:
            add(joined(centre, group), 'triplet')
    return sorted(found.items())


def family_of(smiles: str, kind: str) -> str:
    """The family a molecule is held out with: its open-shell kind, else the heaviest 'unusual' element it has."""
    from rdkit import Chem

    symbols = {atom.GetSymbol() for atom in Chem.MolFromSmiles(smiles).GetAtoms()}
    if kind in ('radical', 'triplet'):
        return kind
    for element in ('B', 'S', 'Cl', 'F'):
        if element in symbols:
            return f'contains_{element}'
    return 'CHNO'


def embed(smiles: str, multiplicity: int | None = None):
    """Symbols, positions (Å), charge, multiplicity and the RDKit molecule, via the build layer's own functions."""
    from aiida_mlqm.chemistry.entries import prepare_smiles
    from aiida_mlqm.chemistry.smiles import embed_conformers

    prepared, mol_h = prepare_smiles({'smiles': smiles, 'multiplicity': multiplicity}, basis=BASIS, allow_fragments=False)
    conformers, _ = embed_conformers(
        mol_h, num_conformers=1, seed=42, force_field='mmff', max_iterations=2000, rms_threshold=0.5
    )
    return prepared.symbols, np.asarray(conformers[0].positions), prepared.charge, prepared.multiplicity, mol_h


def _side(mol_h, bond) -> list[int]:
    """Atoms on the end-atom side of ``bond`` (breadth-first without crossing it)."""
    begin, end = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
    seen, frontier = {end}, [end]
    while frontier:
        atom = frontier.pop()
        for neighbour in mol_h.GetAtomWithIdx(atom).GetNeighbors():
            index = neighbour.GetIdx()
            if index not in seen and not (atom == end and index == begin):
                seen.add(index)
                frontier.append(index)
    return sorted(seen)


def variants(mol_h, positions: np.ndarray, rng: random.Random, probability: float) -> list[tuple[str, np.ndarray]]:
    """Stretched, twisted and distorted geometries derived from ``positions`` (acyclic bonds only)."""
    out = []
    bonds = [b for b in mol_h.GetBonds() if not b.IsInRing()]
    heavy = [b for b in bonds if b.GetBeginAtom().GetAtomicNum() > 1 and b.GetEndAtom().GetAtomicNum() > 1]
    candidates = heavy or bonds
    if candidates and rng.random() < probability:
        bond = candidates[rng.randrange(len(candidates))]
        side = _side(mol_h, bond)
        vector = positions[bond.GetEndAtomIdx()] - positions[bond.GetBeginAtomIdx()]
        for factor in (1.5, 2.0):
            moved = positions.copy()
            moved[side] += (factor - 1.0) * vector
            out.append((f'stretch{factor:g}_b{bond.GetIdx()}', moved))
    doubles = [b for b in bonds if b.GetBondTypeAsDouble() == 2.0]
    if doubles and rng.random() < probability:
        bond = doubles[0]
        side = _side(mol_h, bond)
        origin = positions[bond.GetBeginAtomIdx()]
        axis = positions[bond.GetEndAtomIdx()] - origin
        axis /= np.linalg.norm(axis)
        angle = np.pi / 2
        relative = positions[side] - origin
        rotated = (
            relative * np.cos(angle)
            + np.cross(axis, relative) * np.sin(angle)
            + np.outer(relative @ axis, axis) * (1 - np.cos(angle))
        )
        moved = positions.copy()
        moved[side] = rotated + origin
        out.append((f'twist90_b{bond.GetIdx()}', moved))
    if rng.random() < probability / 2:
        noise = np.array([[rng.gauss(0, 0.1) for _ in range(3)] for _ in range(len(positions))])
        out.append(('distorted', positions + noise))
    return out


def ccsd_t(symbols, positions, charge, multiplicity) -> dict:
    entry = {'symbols': list(symbols), 'positions': np.asarray(positions).tolist(), 'charge': charge, 'multiplicity': multiplicity}
    return pyscf_runner.run_structure('mol', entry, CCSD_T_PARAMETERS, None, False, None)


def features(symbols, positions, charge, multiplicity) -> dict:
    """Features of one geometry through the runner's features mode (exactly what a batch job runs)."""
    entry = {'symbols': list(symbols), 'positions': np.asarray(positions).tolist(), 'charge': charge, 'multiplicity': multiplicity}
    return pyscf_runner.run_structure('mol', entry, dict(FEATURES_PARAMETERS), None, False, None)


def refeaturize(path: pathlib.Path, data: dict) -> None:
    """Compute the features of every record whose features are missing, failed or used other settings."""
    stale = [r for r in data['records'] if r['features_status'] != 'ok' or r.get('features_parameters') != FEATURES_PARAMETERS]
    for number, record in enumerate(stale, 1):
        start = time.perf_counter()
        result = features(record['symbols'], record['positions'], record['charge'], record['multiplicity'])
        record.update({
            'features_status': result['status'],
            'features': result.get('features'),
            'features_error': result.get('error', {}).get('message'),
            'features_seconds': time.perf_counter() - start,
            'features_timings': result.get('timings'),
            'features_parameters': FEATURES_PARAMETERS,
            'features_timed_with_ccsd_t': False,  # the CCSD(T) seconds were measured in another run
        })  # fmt: skip
        write(path, data)
        print(f'features [{number}/{len(stale)}] {record["key"]}: {result["status"]} {record["features_seconds"]:.1f} s', flush=True)


def atom_energies(elements: set[str]) -> dict:
    out = {}
    for element in sorted(elements):
        if element == 'H':
            from pyscf import gto, scf

            mol = gto.M(atom=[['H', (0, 0, 0)]], basis=BASIS, spin=1, verbose=0)
            energy = float(scf.UHF(mol).kernel())
            out[element] = {'total_energy': energy, 'ccsd_t_correction': 0.0, 'status': 'ok'}
            continue
        result = ccsd_t([element], [[0.0, 0.0, 0.0]], 0, ATOM_MULTIPLICITIES[element])
        out[element] = {key: result.get(key) for key in ('total_energy', 'ccsd_t_correction', 'status', 't1_diagnostic')}
    return out


def write(path: pathlib.Path, data: dict) -> None:
    path.with_suffix('.tmp').write_text(json.dumps(data, default=float))
    os.replace(path.with_suffix('.tmp'), path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, type=pathlib.Path)
    parser.add_argument('--max-heavy', type=int, default=4)
    parser.add_argument('--limit', type=int, default=None, help='at most this many enumerated molecules')
    parser.add_argument('--variant-probability', type=float, default=0.35)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--shard', default='0/1', help='k/n: this process takes every n-th molecule from k')
    parser.add_argument('--reverse', action='store_true', help='work from the end of the list (a second process)')
    parser.add_argument(
        '--labels-only', action='store_true',
        help='run only the CCSD(T) diagnostics of new geometries; their features are computed by a later run without it',
    )  # fmt: skip
    parser.add_argument('--features', default=None, help='JSON merged over FEATURES_PARAMETERS (cost/accuracy trials)')
    parser.add_argument('--features-only', action='store_true', help='compute the missing/stale features, then stop')
    args = parser.parse_args(argv)
    if args.features:
        override = json.loads(args.features)
        FEATURES_PARAMETERS.update({**override, 'features': {**FEATURES_PARAMETERS['features'], **override.get('features', {})}})
    pyscf_runner.apply_numpy2_compatibility()
    from pyscf import lib

    lib.num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    lib.param.TMPDIR = tempfile.gettempdir()  # PySCF's scratch files (CCSD integrals) default to the working directory
    data = json.loads(args.out.read_text()) if args.out.exists() else {'basis': BASIS, 'atoms': {}, 'records': []}
    # a CCSD(T) result is kept; features that failed, are missing (--labels-only) or were computed with other
    # settings than FEATURES_PARAMETERS are computed again on a run without --labels-only
    done = {record['key'] for record in data['records']}
    data['atoms'].update(atom_energies(set(ATOM_MULTIPLICITIES) - set(data['atoms'])))
    write(args.out, data)
    if not args.labels_only:
        data['features_basis'] = FEATURES_PARAMETERS['basis']
        data['features_parameters'] = {'basis': FEATURES_PARAMETERS['basis'], 'features': FEATURES_PARAMETERS['features']}
        refeaturize(args.out, data)
    if args.features_only:
        return 0

    rng = random.Random(args.seed)
    jobs = [(name, 'textbook', None, symbols, positions, multiplicity) for name, symbols, positions, multiplicity in TEXTBOOK]
    enumerated = enumerate_smiles(args.max_heavy)
    rng.shuffle(enumerated)
    if args.limit:
        enumerated = enumerated[: args.limit]
    print(f'{len(TEXTBOOK)} textbook cases, {len(enumerated)} enumerated molecules', flush=True)
    shard, shards = (int(x) for x in args.shard.split('/'))
    for smiles, kind in enumerated:
        jobs.append((smiles, kind, smiles, None, None, None))
    order = list(enumerate(jobs))
    for index, (name, kind, smiles, symbols, positions, multiplicity) in reversed(order) if args.reverse else order:
        if index % shards != shard:
            continue
        geometries = []
        try:
            if smiles is None:
                geometries = [('given', symbols, np.asarray(positions, dtype=float), 0, multiplicity)]
                family = 'textbook'
            else:
                symbols, positions, charge, multiplicity, mol_h = embed(smiles)
                family = family_of(smiles, kind)
                geometries = [('equilibrium', symbols, positions, charge, multiplicity)]
                for label, moved in variants(mol_h, positions, random.Random(f'{args.seed}-{smiles}'), args.variant_probability):
                    geometries.append((label, symbols, moved, charge, multiplicity))
        except Exception as exception:  # noqa: BLE001 -- a molecule RDKit cannot embed is skipped and named
            print(f'skip {name}: {exception}', flush=True)
            continue
        for label, symbols_, positions_, charge, multiplicity_ in geometries:
            key = f'{name}|{label}'
            if key in done:
                continue
            start = time.perf_counter()
            if args.labels_only:
                feature_result = {'status': 'pending'}
            else:
                feature_result = features(symbols_, positions_, charge, multiplicity_)
            feature_seconds = time.perf_counter() - start
            start = time.perf_counter()
            cc_result = ccsd_t(symbols_, positions_, charge, multiplicity_)
            cc_seconds = time.perf_counter() - start
            record = {
                'key': key,
                'molecule': name,
                'smiles': smiles,
                'family': family,
                'kind': kind,
                'variant': label,
                'symbols': list(symbols_),
                'positions': np.asarray(positions_).round(6).tolist(),
                'charge': charge,
                'multiplicity': multiplicity_,
                'features_status': feature_result['status'],
                'features': feature_result.get('features'),
                'features_error': feature_result.get('error', {}).get('message'),
                'features_seconds': feature_seconds,
                'features_timings': feature_result.get('timings'),
                'features_parameters': None if args.labels_only else FEATURES_PARAMETERS,
                # both jobs timed one after the other in this process: their ratio is the features job's cost ratio
                'features_timed_with_ccsd_t': not args.labels_only,
                'ccsd_t': {k: v for k, v in cc_result.items() if k not in ('traceback',)},
                'ccsd_t_seconds': cc_seconds,
            }
            data['records'].append(record)
            done.add(key)
            write(args.out, data)
            print(
                f'[{len(data["records"])}] {key}: features {feature_result["status"]} {feature_seconds:.1f} s, '
                f'CCSD(T) {cc_result["status"]} {cc_seconds:.1f} s T1={cc_result.get("t1_diagnostic")} '
                f'D1={cc_result.get("d1_diagnostic")}',
                flush=True,
            )
    return 0


if __name__ == '__main__':
    sys.exit(main())
