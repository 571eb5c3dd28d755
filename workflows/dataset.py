"""Calcfunctions that assemble ``DatasetData`` nodes from labelled structures.

The inputs of each calcfunction are the per-structure result nodes and the structures themselves, so the provenance
graph links every row of a dataset to its geometry and to the calculation that produced its label
(``structure -> assemble -> dataset`` and ``calculation -> parameters -> assemble``), and the calcfunction reads only
what it was given.
"""
from __future__ import annotations

import re

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from ..chemistry.level import canonical_label
from ..provenance.dataset import DatasetData, Frame, frame_from_result, site_arrays

ROLES = ('parameters', 'forces', 'structure')
# Inputs of one assembling calcfunction. AiiDA checks each new input link of an unstored process node against all
# earlier ones, comparing ``Dict`` nodes by content, so the cost of one call grows with the square of its inputs:
# larger sets are assembled in chunks and merged.
ASSEMBLE_CHUNK = 25


def check_key(key: str) -> str:
    if not re.fullmatch(r'[A-Za-z0-9]+(_[A-Za-z0-9]+)*', key):
        raise ValueError(f'structure key {key!r} must be letters and digits joined by single underscores')
    return key


def label_inputs(
    key: str, structure: orm.StructureData, parameters: orm.Dict, forces: orm.ArrayData | None
) -> dict:
    """The :func:`assemble_dataset` inputs for one labelled structure, under link labels derived from ``key``."""
    inputs = {f'structure_{check_key(key)}': structure, f'parameters_{key}': parameters}
    if forces is not None:
        inputs[f'forces_{key}'] = forces
    return inputs


def _group_by_key(nodes: dict) -> dict[str, dict]:
    grouped: dict[str, dict] = {}
    for label, node in nodes.items():
        role, _, key = label.partition('_')
        if role not in ROLES or not key:
            raise ValueError(f'input {label!r} is not named <role>_<key> with role one of {ROLES}')
        grouped.setdefault(key, {})[role] = node
    return grouped


@calcfunction
def assemble_dataset(**nodes) -> DatasetData:
    """Collect labelled structures into one ``DatasetData``.

    Inputs come in pairs named ``parameters_<key>`` (the ``mlqm.pyscf`` result Dict, energies in eV) and optionally
    ``forces_<key>`` (ArrayData ``forces`` in eV/Å); rows follow the sorted keys. The geometry of each row is the input
    structure of the calculation that created its result, whose uuid the row records.
    """
    frames = []
    for key, group in sorted(_group_by_key(nodes).items()):
        structure, result = group['structure'], group['parameters']
        forces = group['forces'].get_array('forces') if 'forces' in group else None
        try:
            frames.append(
                frame_from_result(
                    structure, result.get_dict(), forces, source_uuid=result.creator.uuid, result_uuid=result.uuid
                )
            )
        except ValueError as exception:
            raise ValueError(f'{key}: {exception}') from exception
    return DatasetData.from_frames(frames)


@calcfunction
def merge_datasets(**parts) -> DatasetData:
    """Concatenate datasets (in the order of their sorted input labels) into one."""
    return DatasetData.from_frames([frame for _, part in sorted(parts.items()) for frame in part.frames()])


def assemble_in_chunks(
    labelled: dict[str, dict], *, label: str = 'assemble_dataset', merge_label: str = 'merge_datasets'
) -> DatasetData:
    """Assemble ``{key: {'structure': StructureData, 'parameters': Dict, 'forces': ArrayData | None}}``, one
    calcfunction per chunk.

    :returns: the dataset; with more than :data:`ASSEMBLE_CHUNK` structures, the output of :func:`merge_datasets`.
    """
    keys = sorted(labelled)
    chunks = [keys[i : i + ASSEMBLE_CHUNK] for i in range(0, len(keys), ASSEMBLE_CHUNK)]
    parts = []
    for index, chunk in enumerate(chunks):
        inputs = {}
        for key in chunk:
            row = labelled[key]
            inputs.update(label_inputs(key, row['structure'], row['parameters'], row.get('forces')))
        call_label = label if len(chunks) == 1 else f'{label}_{index:03d}'
        parts.append(assemble_dataset(**inputs, metadata={'call_link_label': call_label}))
    if len(parts) == 1:
        return parts[0]
    return merge_datasets(**{f'part_{i:03d}': part for i, part in enumerate(parts)}, metadata={'call_link_label': merge_label})


@calcfunction
def dataset_from_aiida_pyscf(**nodes) -> DatasetData:
    """Assemble a ``DatasetData`` from the outputs of existing aiida-pyscf ``pyscf.base`` calculations.

    Inputs come in pairs ``structure_<key>`` (the calculation's input structure) and ``parameters_<key>`` (its
    ``parameters`` output, where aiida-pyscf stores ``mean_field.total_energy`` in eV and ``mean_field.forces`` in
    eV/Å). Use :func:`dataset_from_pyscf_calculations` to build the inputs from calculation nodes.
    """
    frames = []
    for key, group in sorted(_group_by_key(nodes).items()):
        structure, result = group['structure'], group['parameters']
        calculation = result.creator
        mean_field = result.get_dict().get('mean_field', {})
        if 'total_energy' not in mean_field:
            raise ValueError(f'{key}: the pyscf.base result has no mean_field.total_energy')
        inputs = calculation.inputs.parameters.get_dict() if 'parameters' in calculation.inputs else {}
        mf_inputs = inputs.get('mean_field', {})
        structure_inputs = inputs.get('structure', {})
        method = str(mf_inputs.get('method', 'RHF')).lower()
        basis = structure_inputs.get('basis', 'sto-3g')
        level = canonical_label('dft' if 'ks' in method else method, basis, mf_inputs.get('xc'))
        charge = int(structure_inputs.get('charge', 0))
        spin = int(structure_inputs.get('spin', 0))
        forces = mean_field.get('forces')
        numbers, positions = site_arrays(structure)
        frames.append(
            Frame(
                numbers=numbers,
                positions=positions,
                energy=float(mean_field['total_energy']),
                forces=np.asarray(forces, dtype=float) if forces is not None else None,
                charge=charge,
                multiplicity=spin + 1,
                level=level,
                source_uuid=calculation.uuid,
                structure_uuid=structure.uuid,
                result_uuid=result.uuid,
            )
        )
    return DatasetData.from_frames(frames)


def dataset_from_pyscf_calculations(calculations, *, label: str | None = None) -> DatasetData:
    """Run :func:`dataset_from_aiida_pyscf` over finished ``pyscf.base`` calculation nodes (or their pks/uuids).

    :raises ValueError: naming the first calculation that is not a finished ``pyscf.base`` job.
    """
    inputs = {}
    for index, entry in enumerate(calculations):
        node = entry if isinstance(entry, orm.Node) else orm.load_node(entry)
        if node.process_type != 'aiida.calculations:pyscf.base':
            raise ValueError(f'node {node.pk} is a {node.process_type}, not an aiida-pyscf pyscf.base calculation')
        if not node.is_finished_ok:
            raise ValueError(f'calculation {node.pk} did not finish successfully (exit status {node.exit_status})')
        key = check_key(f'calc{index:05d}')
        inputs[f'structure_{key}'] = node.inputs.structure
        inputs[f'parameters_{key}'] = node.outputs.parameters
    if not inputs:
        raise ValueError('no calculations given')
    metadata = {'call_link_label': label} if label else {}
    return dataset_from_aiida_pyscf(**inputs, metadata=metadata)
