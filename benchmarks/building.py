"""Cost of building molecules through AiiDA (``mlqm.build``) compared with RDKit's own embedding of the same SMILES.

The SMILES are made reproducibly without downloads: the real drugs of ``examples/molecules/drugs.smi`` with at most
30 heavy atoms, then single substitutions (F, Cl, CH3, OH, NH2 on every carbon that carries a hydrogen) enumerated
with RDKit, taken round-robin over the parents so that the set stays diverse.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import time

DESCRIPTION = '1,000 drug-like SMILES, one conformer each: mlqm.build (calcfunctions + storage) vs plain RDKit'
DRUGS = pathlib.Path(__file__).resolve().parent.parent / 'examples' / 'molecules' / 'drugs.smi'
MAX_HEAVY_ATOMS = 30
SUBSTITUENTS = ('F', 'Cl', 'C', 'O', 'N')
TARGET = '<= 1.5'


def drug_like_smiles(count: int, max_heavy_atoms: int = MAX_HEAVY_ATOMS) -> list[str]:
    """``count`` distinct canonical SMILES: the parent drugs first, then their substituted variants round-robin."""
    from aiida_mlqm.chemistry.readers import read_smiles_file
    from rdkit import Chem

    parents = []
    for record in read_smiles_file(DRUGS):
        mol = Chem.MolFromSmiles(record['smiles'])
        if mol is not None and mol.GetNumHeavyAtoms() <= max_heavy_atoms and len(Chem.GetMolFrags(mol)) == 1:
            parents.append(mol)
    seen = {Chem.MolToSmiles(mol) for mol in parents}
    result = sorted(seen, key=lambda s: [Chem.MolToSmiles(m) for m in parents].index(s))
    variants = [_variants(mol, max_heavy_atoms) for mol in parents]
    position = 0
    while len(result) < count and any(position < len(v) for v in variants):
        for per_parent in variants:
            if position < len(per_parent) and per_parent[position] not in seen:
                seen.add(per_parent[position])
                result.append(per_parent[position])
        position += 1
    if len(result) < count:
        raise RuntimeError(f'only {len(result)} distinct SMILES could be enumerated, {count} were asked for')
    return result[:count]


def _variants(mol, max_heavy_atoms: int) -> list[str]:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog('rdApp.*')  # the valence errors of skipped substitutions are expected

    if mol.GetNumHeavyAtoms() >= max_heavy_atoms:
        return []
    out = []
    for atom in mol.GetAtoms():
        if atom.GetSymbol() != 'C' or atom.GetTotalNumHs() == 0:
            continue
        for substituent in SUBSTITUENTS:
            editable = Chem.RWMol(mol)
            new = editable.AddAtom(Chem.Atom(substituent))
            editable.AddBond(atom.GetIdx(), new, Chem.BondType.SINGLE)
            try:
                Chem.SanitizeMol(editable)
            except Exception:  # noqa: BLE001, S112  a substitution that breaks valence or aromaticity is skipped
                continue
            out.append(Chem.MolToSmiles(editable))
    return out


def rdkit_only(smiles: list[str], parameters: dict) -> float:
    """Seconds RDKit alone takes: parse, add hydrogens, ETKDG, MMFF with the builder's settings."""
    from aiida_mlqm.chemistry.smiles import embed_conformers
    from rdkit import Chem

    start = time.perf_counter()
    for entry in smiles:
        mol_h = Chem.AddHs(Chem.MolFromSmiles(entry))
        embed_conformers(
            mol_h,
            num_conformers=1,
            seed=parameters['seed'],
            force_field=parameters['force_field'],
            max_iterations=parameters['max_iterations'],
            rms_threshold=parameters['rms_threshold'],
        )
    return time.perf_counter() - start


def through_aiida(smiles: list[str], overrides: dict) -> tuple[float, int, object]:
    """Seconds ``mlqm.build`` takes for the same SMILES (validation, embedding, storing, links); structures built."""
    from aiida import engine
    from aiida_mlqm.chemistry.readers import smiles_record
    from aiida_mlqm.workflows.build import BuildWorkChain

    records = [smiles_record(entry, f'mol{index:04d}', 'benchmark') for index, entry in enumerate(smiles)]
    builder = BuildWorkChain.get_builder_from_protocol(records, protocol='fast', overrides={'parameters': overrides})
    start = time.perf_counter()
    _, node = engine.run_get_node(builder)
    elapsed = time.perf_counter() - start
    if not node.is_finished_ok:
        raise RuntimeError(f'mlqm.build failed: {node.exit_status} {node.exit_message}')
    return elapsed, len(BuildWorkChain.built_structures(node)), node


def storage_costs(smiles: list[str], parameters: dict) -> dict[str, float]:
    """Milliseconds per structure of each AiiDA step the build does for a structure, measured apart from the engine.

    The same calls the engine makes for a calcfunction output, inside one transaction as in the build: the CREATE link
    (``add_incoming``, whose validation runs two queries) and ``store``, plus making the unstored ``StructureData``.
    Only run in the throw-away profile: it stores a bare ``CalcFunctionNode`` as the source of the links.
    """
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.manage import get_manager
    from aiida_mlqm.chemistry.smiles import embed_conformers
    from aiida_mlqm.workflows.build_functions import make_structure
    from rdkit import Chem

    geometries = []
    for entry in smiles:
        mol_h = Chem.AddHs(Chem.MolFromSmiles(entry))
        conformers, _ = embed_conformers(
            mol_h,
            num_conformers=1,
            seed=parameters['seed'],
            force_field=parameters['force_field'],
            max_iterations=parameters['max_iterations'],
            rms_threshold=parameters['rms_threshold'],
        )
        geometries.append(([atom.GetSymbol() for atom in mol_h.GetAtoms()], conformers[0].positions))
    source = orm.CalcFunctionNode().store()
    made = linked = stored = 0.0
    with get_manager().get_profile_storage().transaction():
        for index, (symbols, positions) in enumerate(geometries):
            start = time.perf_counter()
            node = make_structure(symbols, positions, {'charge': 0, 'multiplicity': 1})
            made += time.perf_counter() - start
            start = time.perf_counter()
            node.base.links.add_incoming(source, LinkType.CREATE, f'm{index:05d}')
            linked += time.perf_counter() - start
            start = time.perf_counter()
            node.store()
            stored += time.perf_counter() - start
    count = len(geometries)
    return {'make': 1e3 * made / count, 'link': 1e3 * linked / count, 'store': 1e3 * stored / count}


@contextlib.contextmanager
def _profile():
    """The throw-away embedded profile, or ``$MLQM_BENCHMARK_PROFILE`` (e.g. a PostgreSQL one; nodes stay in it)."""
    name = os.environ.get('MLQM_BENCHMARK_PROFILE')
    if not name:
        from ._profile import temporary_embedded_profile

        with temporary_embedded_profile('benchmark-building') as (profile, _):
            yield profile
        return
    from aiida import load_profile

    yield load_profile(name, allow_switch=True)


def run(quick: bool = False) -> dict:
    count = 100 if quick else 1000
    subset_count = 20 if quick else 100
    smiles = drug_like_smiles(count)
    with _profile() as profile:
        backend = profile.storage_backend
        from aiida_mlqm.workflows.build import BuildWorkChain

        overrides = {'num_conformers': 1}
        parameters = BuildWorkChain.get_protocol_inputs('fast', {'parameters': overrides})['parameters']
        rdkit_only(smiles[:5], parameters)  # warm-up: imports and RDKit's parameter tables
        rdkit_seconds = rdkit_only(smiles, parameters)
        aiida_seconds, built, _ = through_aiida(smiles, overrides)
        # Two variants with more nodes/links, on a subset side by side with RDKit: every structure also returned as a
        # workchain output (protocols balanced/stringent), and one calcfunction per molecule (finest provenance).
        subset = smiles[:subset_count]
        subset_rdkit = rdkit_only(subset, parameters)
        returned_seconds, _, _ = through_aiida(subset, {**overrides, 'return_structures': True})
        per_molecule_seconds, _, _ = through_aiida(subset, {**overrides, 'molecules_per_calculation': 1})
        costs = None if os.environ.get('MLQM_BENCHMARK_PROFILE') else storage_costs(subset, parameters)

    chunk = parameters['molecules_per_calculation']
    rows = [
        ('plain RDKit (ETKDG + MMFF94)', count, rdkit_seconds, rdkit_seconds),
        (f'mlqm.build fast: {chunk} per calcfunction ({backend})', built, aiida_seconds, rdkit_seconds),
        ('plain RDKit (subset)', subset_count, subset_rdkit, subset_rdkit),
        ('mlqm.build, structures returned as outputs', subset_count, returned_seconds, subset_rdkit),
        ('mlqm.build, 1 molecule per calcfunction', subset_count, per_molecule_seconds, subset_rdkit),
    ]
    table = [
        {
            'run': name,
            'molecules': number,
            'seconds': seconds,
            'per_molecule_ms': 1e3 * seconds / number,
            'rdkit_share': reference / seconds,
        }
        for name, number, seconds, reference in rows
    ]
    result = {
        '_table': table,
        'structures_per_second': {'value': built / aiida_seconds, 'unit': 'structures/s', 'target': None},
        'storage_overhead_vs_rdkit': {
            'value': aiida_seconds / rdkit_seconds,
            'unit': 'x (mlqm.build fast / RDKit time)',
            'target': TARGET,
        },
        'storage_overhead_returned_outputs': {
            'value': returned_seconds / subset_rdkit,
            'unit': 'x (return_structures: true)',
            'target': None,
        },
        'storage_overhead_per_molecule_calcfunction': {
            'value': per_molecule_seconds / subset_rdkit,
            'unit': 'x (molecules_per_calculation: 1)',
            'target': None,
        },
        'rdkit_share_of_build_time': {'value': rdkit_seconds / aiida_seconds, 'unit': 'fraction', 'target': None},
    }
    if costs is not None:  # where the time per structure goes, next to RDKit's own time per molecule
        result['rdkit_ms_per_molecule'] = {'value': 1e3 * rdkit_seconds / count, 'unit': 'ms', 'target': None}
        for step, what in (('make', 'StructureData made'), ('link', 'CREATE link validated'), ('store', 'node stored')):
            result[f'aiida_ms_per_structure_{step}'] = {'value': costs[step], 'unit': f'ms ({what})', 'target': None}
    return result
