"""Labelled files into the graph: one calcfunction whose input is the file itself.

``import_labelled_file`` takes the ``SinglefileData`` of the file (its sha256 kept as an attribute), the label
specifications and the file's energy unit, and creates one ``StructureData`` per frame and the ``DatasetData`` of
all labels, so that every row, and every model trained on it, traces back to the file. Rows of one frame at several
levels share that frame's structure node, which is what pairs them for Δ-learning.
"""

from __future__ import annotations

import hashlib
import pathlib
import typing as t

from aiida import orm
from aiida.engine import calcfunction

from ..provenance.dataset import DatasetData, Frame
from ..provenance.labelled import (
    UNIT_NAMES,
    LabelledFrame,
    LabelSpec,
    file_format,
    parse_labels,
    read_geometries,
    read_labelled_frames,
)

__all__ = ('import_labelled_file', 'import_structures_file', 'source_file_node', 'structure_key')


def sha256_of(path: str | pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def source_file_node(path: str | pathlib.Path) -> orm.SinglefileData:
    """An unstored ``SinglefileData`` of the file with its ``sha256`` as attribute."""
    path = pathlib.Path(path)
    node = orm.SinglefileData(path.resolve(), filename=path.name)
    node.base.attributes.set('sha256', sha256_of(path))
    return node


def structure_key(index: int) -> str:
    return f'frame_{index:06d}'


def _structure(frame: LabelledFrame, source: orm.SinglefileData) -> orm.StructureData:
    from ase.data import chemical_symbols

    from .build_functions import make_structure

    symbols = [chemical_symbols[int(z)] for z in frame.numbers]
    return make_structure(
        symbols,
        frame.positions,
        {
            'charge': frame.charge,
            'multiplicity': frame.multiplicity,
            'source': f'{source.filename}:{frame.index}',
            'frame_index': frame.index,
        },
    )


def _check_sha256(source: orm.SinglefileData) -> str:
    with source.as_path() as path:
        digest = sha256_of(path)
    kept = source.base.attributes.get('sha256', None)
    if kept is not None and kept != digest:
        raise ValueError(f'{source.filename}: content sha256 {digest} differs from the kept {kept}')
    return digest


@calcfunction
def import_labelled_file(
    source: orm.SinglefileData, labels: orm.List, energy_unit: orm.Str, file_format: orm.Str
) -> dict[str, t.Any]:
    """Read the labels of every frame of ``source``; output ``dataset`` and ``structures.frame_NNNNNN`` per frame.

    :param labels: label specifications ``METHOD/BASIS=ENERGY_KEY[,FORCES_KEY]``.
    :param energy_unit: the file's energy unit (eV, hartree or kcal/mol; forces in that unit per Å).
    """
    specs = parse_labels(labels.get_list())
    digest = _check_sha256(source)
    with source.as_path() as path:
        frames = read_labelled_frames(path, specs, energy_unit.value, file_format.value)
    structures = {structure_key(frame.index): _structure(frame, source) for frame in frames}
    rows = []
    for spec in specs:  # rows level by level, frames in file order within a level
        for frame in frames:
            if spec.level not in frame.labels:
                continue
            energy, forces = frame.labels[spec.level]
            rows.append(
                Frame(
                    numbers=frame.numbers,
                    positions=frame.positions,
                    energy=energy,
                    forces=forces,
                    charge=frame.charge,
                    multiplicity=frame.multiplicity,
                    level=spec.level,
                    source_uuid=source.uuid,
                    structure_uuid=structures[structure_key(frame.index)].uuid,
                    frame_index=frame.index,
                )
            )
    dataset = DatasetData.from_frames(rows, description=f'imported from {source.filename}')
    dataset.base.attributes.set(
        'label_keys', {spec.level: {'energy': spec.energy_key, 'forces': spec.forces_key} for spec in specs}
    )
    dataset.base.attributes.set(
        'source_file',
        {'uuid': source.uuid, 'filename': source.filename, 'sha256': digest, 'format': file_format.value},
    )
    dataset.base.attributes.set('file_energy_unit', UNIT_NAMES[energy_unit.value.strip().lower()])
    return {'dataset': dataset, 'structures': structures}


@calcfunction
def import_structures_file(source: orm.SinglefileData, file_format: orm.Str) -> dict[str, t.Any]:
    """One ``StructureData`` per frame of ``source`` (geometries to predict on), as ``structures.frame_NNNNNN``."""
    _check_sha256(source)
    with source.as_path() as path:
        frames = read_geometries(path, file_format.value)
    return {'structures': {structure_key(frame.index): _structure(frame, source) for frame in frames}}


def import_file(
    path: str | pathlib.Path,
    labels: t.Sequence[str | LabelSpec] | None,
    *,
    energy_unit: str = 'eV',
    fmt: str | None = None,
) -> dict[str, t.Any]:
    """Check the whole file, then store it and run the importing calcfunction (nothing is stored when a check fails).

    :param labels: label specifications; ``None`` or empty imports the geometries only.
    :return: the calcfunction's outputs (``dataset`` when labelled, ``structures``).
    """
    fmt = file_format(path, fmt)
    if labels:
        specs = parse_labels(labels)
        read_labelled_frames(path, specs, energy_unit, fmt)  # raises before anything is stored
        source = source_file_node(path).store()
        return import_labelled_file(
            source,
            orm.List([spec.as_text() for spec in specs]),
            orm.Str(energy_unit.strip().lower()),
            orm.Str(fmt),
            metadata={'call_link_label': 'import_labelled_file'},
        )
    read_geometries(path, fmt)
    source = source_file_node(path).store()
    return import_structures_file(source, orm.Str(fmt), metadata={'call_link_label': 'import_structures_file'})
