"""The calcfunctions of ``mlqm.build``: every node the build creates is made by one of these.

Provenance: ``library`` (List) -> ``validate_library`` -> ``rejected`` (Dict) and ``chunk_NNNN`` (List of accepted,
normalised records) -> ``build_structures`` -> one ``StructureData`` per molecule (or conformer) ->
``sample_configurations`` -> distorted geometries. An entry that fails a check never gets a structure: the checks
run before any node of that entry exists, and a failure after embedding becomes a rejection, not an output.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from ..chemistry import entries as chem
from ..chemistry.geometry import check_coordinates, point_group
from ..chemistry.molecule import Rejection, default_multiplicity
from ..chemistry.smiles import embed_conformers, molecule_from_json, molecule_to_json
from . import build_sampling as sampling
from .build_parameters import parse_parameters

#: Attributes ``mlqm.build`` sets on every structure (``None`` values are left out).
STRUCTURE_ATTRIBUTES = ('charge', 'multiplicity', 'smiles', 'canonical_smiles', 'inchikey', 'source', 'name')
VACUUM = 10.0  # Å around the molecule in the (non-periodic) cell, so that tools that want a cell get a sane one


def link_key(entry_id: str, taken: set[str]) -> str:
    """A link label from an entry id: letters, digits and single underscores, unique within ``taken``."""
    key = re.sub(r'_+', '_', re.sub(r'[^A-Za-z0-9_]', '_', str(entry_id))).strip('_')[:60] or 'entry'
    if not key[0].isalpha():
        key = f'm_{key}'
    candidate, suffix = key, 1
    while candidate in taken:
        suffix += 1
        candidate = f'{key}_{suffix}'
    taken.add(candidate)
    return candidate


def rename_reason(entry_id: str, key: str) -> str:
    """Why :func:`link_key` gave ``entry_id`` the label ``key``."""
    if link_key(entry_id, set()) == key:
        return 'not an identifier: sanitised'
    return 'id used by an earlier entry: made unique'


def make_structure(symbols, positions, attributes: dict) -> orm.StructureData:
    """An unstored non-periodic ``StructureData`` with the given attributes set (stored by the engine afterwards)."""
    from aiida.orm.nodes.data.structure import Kind

    positions = np.asarray(positions, dtype=float)
    extent = positions.max(0) - positions.min(0) if len(positions) else np.zeros(3)
    structure = orm.StructureData(cell=np.diag(extent + VACUUM).tolist(), pbc=(False, False, False))
    for symbol in dict.fromkeys(symbols):  # one kind per element, named by its symbol, as get_ase() expects
        structure.append_kind(Kind(symbols=symbol, name=symbol))
    # All sites in one attribute write, in the format ``append_site`` writes (``Site.get_raw``): append_site copies and
    # re-validates the whole kind list per atom, which cost ~5 ms per drug-like molecule. ``StructureData._validate``
    # still checks sites against kinds when the node is stored.
    structure.base.attributes.set(
        'sites', [{'kind_name': symbol, 'position': position} for symbol, position in zip(symbols, positions.tolist())]
    )
    for key, value in attributes.items():
        if value is not None:
            structure.base.attributes.set(key, value)
    return structure


def _rejection(record, kind: str, reason: str) -> dict:
    record = record if isinstance(record, dict) else {}
    return {'id': str(record.get('id', '?')), 'kind': kind, 'reason': reason, 'source': record.get('source')}


def _rejected_dict(entries: list[dict], total: int) -> orm.Dict:
    return orm.Dict({'entries': entries, 'count': len(entries), 'total': total})


def check_entry(record, parameters) -> dict:
    """Run every check that needs no RDKit embedding and return the normalised record for the build step.

    :raises Rejection: with the kind and reason of the first failed check.
    """
    if not isinstance(record, dict) or record.get('kind') not in {'smiles', 'geometry'} or not record.get('id'):
        raise Rejection(
            'invalid_record', 'an entry needs `id` and `kind` (smiles or geometry); use aiida_mlqm.chemistry.readers'
        )
    if record['kind'] == 'smiles':
        prepared, mol_h = chem.prepare_smiles(
            record, basis=parameters.basis, allow_fragments=parameters.allow_fragments
        )
    else:
        prepared = chem.prepare_geometry(
            record,
            basis=parameters.basis,
            allow_fragments=parameters.allow_fragments,
            min_distance=parameters.min_distance,
        )
    normalised = {
        'id': str(record['id']),
        'kind': record['kind'],
        'source': record.get('source'),
        'charge': prepared.charge,
        'multiplicity': prepared.multiplicity,
        'smiles': prepared.smiles,
        'canonical_smiles': prepared.canonical_smiles,
        'inchikey': prepared.inchikey,
    }
    if record['kind'] == 'geometry':
        normalised['symbols'] = prepared.symbols
        normalised['positions'] = prepared.positions.tolist()
    else:  # the parsed molecule goes on to the build step: its SMILES is parsed once
        normalised['molecule'] = molecule_to_json(mol_h)
    return normalised


@calcfunction
def validate_library(library: orm.List, parameters: orm.Dict) -> dict:
    """Check every entry; return ``rejected`` (Dict) and the accepted entries as ``chunk_NNNN`` Lists."""
    params = parse_parameters(parameters.get_dict())
    records = library.get_list()
    accepted, rejected, seen = [], [], {}
    keys = {'rejected'}  # the build step's own output name
    for record in records:
        try:
            entry = check_entry(record, params)
        except Rejection as rejection:
            rejected.append(_rejection(record, rejection.kind, rejection.message))
            continue
        identity = (entry['inchikey'], entry['charge'], entry['multiplicity'])
        if params.deduplicate and entry['inchikey'] and identity in seen:
            reason = f'same InChIKey {entry["inchikey"]}, charge and multiplicity as entry {seen[identity]!r}'
            rejected.append(_rejection(record, 'duplicate', reason + ': remove one, or set deduplicate: false'))
            continue
        seen.setdefault(identity, entry['id'])
        entry['key'] = link_key(entry['id'], keys)
        accepted.append(entry)

    size = params.molecules_per_calculation
    outputs = {'rejected': _rejected_dict(rejected, len(records))}
    for index, start in enumerate(range(0, len(accepted), size)):
        outputs[f'chunk_{index:04d}'] = orm.List(accepted[start : start + size])
    return outputs


@calcfunction
def build_structures(entries: orm.List, parameters: orm.Dict) -> dict:
    """3D structures for a chunk of accepted entries: RDKit ETKDG + force field for SMILES, the given geometry otherwise.

    Outputs one ``StructureData`` per entry under its ``key`` (``<key>_cNN`` per conformer with ``conformers: all``),
    and ``rejected`` (Dict) for entries that failed after embedding.
    """
    params = parse_parameters(parameters.get_dict())
    outputs, rejected = {}, []
    for entry in entries.get_list():
        try:
            outputs.update(_build_entry(entry, params))
        except Rejection as rejection:
            rejected.append(_rejection(entry, rejection.kind, rejection.message))
    if rejected:
        outputs['rejected'] = _rejected_dict(rejected, len(entries))
    return outputs


def _build_entry(entry: dict, params) -> dict:
    attributes = {
        key: entry.get(key) for key in ('charge', 'multiplicity', 'smiles', 'canonical_smiles', 'inchikey', 'source')
    }
    attributes['name'] = entry['id']
    if entry['kind'] == 'geometry':
        symbols = entry['symbols']
        geometries = [
            (check_coordinates(symbols, entry['positions'], min_distance=params.min_distance), None, None)
        ]
        force_field = None
    else:
        mol_h = molecule_from_json(entry['molecule'])
        symbols = [atom.GetSymbol() for atom in mol_h.GetAtoms()]
        conformers, force_field = embed_conformers(
            mol_h,
            num_conformers=params.num_conformers,
            seed=params.seed,
            force_field=params.force_field,
            max_iterations=params.max_iterations,
            rms_threshold=params.rms_threshold,
        )
        if params.conformers == 'lowest':
            conformers = conformers[:1]
        geometries = []
        for conformer in conformers:  # a force field can pull atoms together; such a conformer must not be stored
            positions = check_coordinates(symbols, conformer.positions, min_distance=params.min_distance)
            geometries.append((positions, conformer.energy_ev, conformer.converged))

    outputs = {}
    for index, (positions, energy, converged) in enumerate(geometries):
        extra = {'force_field': force_field, 'force_field_energy': energy, 'force_field_converged': converged}
        if energy is not None:
            extra['force_field_energy_units'] = 'eV'
        if entry['kind'] == 'smiles':
            extra['conformer_index'] = index
        if 0 < len(symbols) <= params.point_group_max_atoms:
            extra['point_group'] = point_group(symbols, positions)
        label = entry['key'] if params.conformers == 'lowest' else f'{entry["key"]}_c{index:02d}'
        outputs[label] = make_structure(symbols, positions, {**attributes, **extra})
    return outputs


@calcfunction
def collect_rejections(**rejected: orm.Dict) -> orm.Dict:
    """One ``rejected`` Dict from the validation's and the build steps' rejections (inputs in link-label order)."""
    labels = (['validation'] if 'validation' in rejected else []) + sorted(set(rejected) - {'validation'})
    entries = [entry for label in labels for entry in rejected[label].get_dict()['entries']]
    total = rejected['validation'].get_dict()['total'] if 'validation' in rejected else len(entries)
    return _rejected_dict(entries, total)


def structure_arrays(structure: orm.StructureData) -> tuple[list[str], np.ndarray]:
    symbols = [structure.get_kind(site.kind_name).symbol for site in structure.sites]
    return symbols, np.array([site.position for site in structure.sites], dtype=float)


def sampling_seed(seed: int, structure: orm.StructureData) -> list[int]:
    """A seed per structure from the user's seed and the structure's name, so that reruns draw the same geometries."""
    name = (
        structure.base.attributes.get('inchikey', None) or structure.base.attributes.get('name', None) or structure.uuid
    )
    return [int(seed), zlib.crc32(str(name).encode())]


@calcfunction
def sample_configurations(structure: orm.StructureData, parameters: orm.Dict) -> dict:
    """Distorted geometries of ``structure`` (``configuration_NNN``), each with the parent's charge and multiplicity.

    When no Hessian or no acceptable draw can be made, the only output is ``failure`` (Dict ``{'reason': ...}``):
    the calcfunction still finishes, and the chain reports the structure in ``WARNING_SAMPLING_INCOMPLETE``.
    """
    params = parse_parameters(parameters.get_dict())
    config, min_distance = params.configurations, params.min_distance
    symbols, positions = structure_arrays(structure)
    attributes = structure.base.attributes
    charge = int(attributes.get('charge', 0))
    multiplicity = int(attributes.get('multiplicity', default_multiplicity(symbols, charge)))
    rng = np.random.default_rng(sampling_seed(config.seed, structure))

    method = config.method
    try:
        if method == 'normal_modes':
            if config.hessian == 'pyscf':
                if len(symbols) > config.pyscf_max_atoms:
                    raise sampling.HessianError(
                        f'{len(symbols)} atoms exceed pyscf_max_atoms={config.pyscf_max_atoms}: use hessian: forcefield'
                    )
                hessian = sampling.pyscf_hessian(
                    symbols, positions, charge=charge, multiplicity=multiplicity, basis=config.pyscf_basis
                )
            else:
                # only an embedded structure has RDKit's atom order; a given geometry with a SMILES label may not
                embedded_from = (
                    attributes.get('smiles', None) if attributes.get('conformer_index', None) is not None else None
                )
                hessian = sampling.forcefield_hessian(symbols, positions, smiles=embedded_from, charge=charge)
            geometries = sampling.sample_normal_modes(
                symbols,
                positions,
                hessian,
                number=config.number,
                temperature=config.temperature,
                rng=rng,
                min_frequency=config.min_frequency,
                min_distance=min_distance,
            )
        else:
            geometries = sampling.sample_random(
                symbols, positions, number=config.number, sigma=config.displacement, rng=rng, min_distance=min_distance
            )
    except sampling.HessianError as exception:
        return {'failure': orm.Dict({'reason': f'no configurations for {attributes.get("name", structure.uuid)}: {exception}'})}

    inherited = {key: attributes.get(key, None) for key in STRUCTURE_ATTRIBUTES}
    inherited.update(charge=charge, multiplicity=multiplicity)
    outputs = {}
    for index, geometry in enumerate(geometries):
        extra = {'sampling_method': method, 'configuration_index': index, 'parent_uuid': structure.uuid}
        if method == 'normal_modes':
            extra.update(sampling_temperature=config.temperature, sampling_hessian=config.hessian)
        else:
            extra.update(sampling_displacement=config.displacement)
        outputs[f'configuration_{index:03d}'] = make_structure(symbols, geometry, {**inherited, **extra})
    return outputs
