"""``DatasetData`` (``mlqm.dataset``): labelled structures as arrays, the training data of every model.

A dataset holds ``n`` frames (one per labelled structure) of possibly different sizes, stored flat:

- ``numbers`` (int, total atoms): atomic numbers of all frames, concatenated;
- ``positions`` (float, total atoms x 3, Å);
- ``offsets`` (int, n + 1): frame ``i`` spans ``offsets[i]:offsets[i + 1]`` of the atom arrays;
- ``energy`` (float, n, eV);
- ``forces`` (float, total atoms x 3, eV/Å), when any frame has forces, with ``forces_present`` (bool, n) saying
  which rows have them (rows without forces hold zeros there and train the energy term only);
- ``charge`` and ``multiplicity`` (int, n);
- ``frame_index`` (int, n): the frame of the source file a row was read from, -1 for rows not read from a file.

A row is one label of one structure at one level of theory: a structure labelled at two levels has two rows with
the same ``structure_uuid`` (the node of the geometry), and that uuid, never the row position, is what pairs levels.
Per-row text (``level``, ``source_uuid`` of the calculation that produced the label, ``structure_uuid`` and
``result_uuid`` of the node holding the full result) is kept in attributes, as are ``units``, and for imported
datasets the file keys each level was read from (``label_keys``), so that an export writes the same keys back.
The arrays live in the node's repository as ``.npy`` files (AiiDA's ``ArrayData`` storage); nothing is pickled.
"""
from __future__ import annotations

import typing as t

import numpy as np
from aiida import orm

from ..units import ENERGY_UNIT, FORCES_UNIT

POSITIONS_UNIT = 'Å'


class Frame(t.NamedTuple):
    """One labelled structure of a dataset, as plain arrays."""

    numbers: np.ndarray
    positions: np.ndarray
    energy: float
    forces: np.ndarray | None
    charge: int
    multiplicity: int
    level: str
    source_uuid: str | None
    structure_uuid: str | None
    result_uuid: str | None = None
    frame_index: int | None = None


def site_arrays(structure: orm.StructureData) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers and positions (Å) of the sites of ``structure``, whose kinds must each be a single element.

    Reads the kinds and sites once: ``StructureData.get_kind`` and ``.sites`` rebuild them from the attributes on every
    call, which made this the largest cost of parsing a batch job (13 ms a structure).
    """
    from ase.data import atomic_numbers

    numbers = {}
    for kind in structure.kinds:
        if len(kind.symbols) != 1:
            raise ValueError(f'site kind {kind.name} is an alloy or has vacancies; molecules need one element a site')
        numbers[kind.name] = atomic_numbers[kind.symbols[0]]
    sites = structure.sites
    return np.array([numbers[site.kind_name] for site in sites]), np.array([site.position for site in sites])


def frame_from_result(
    structure: orm.StructureData,
    result: t.Mapping[str, t.Any],
    forces: np.ndarray | None,
    *,
    source_uuid: str,
    result_uuid: str,
) -> Frame:
    """The dataset row of one ``mlqm.pyscf`` result (the ``parameters`` Dict's content, energies in eV).

    The geometry is that of ``structure``, the input structure of the calculation that produced the result.

    :raises ValueError: for a result whose energy is not in the dataset's unit.
    """
    if result.get('total_energy_units', ENERGY_UNIT) != ENERGY_UNIT:
        raise ValueError(f'total energy in {result["total_energy_units"]}, expected {ENERGY_UNIT}')
    numbers, positions = site_arrays(structure)
    return Frame(
        numbers=numbers,
        positions=positions,
        energy=float(result['total_energy']),
        forces=forces,
        charge=int(result.get('charge', 0)),
        multiplicity=int(result.get('multiplicity', 1)),
        level=result['level_of_theory'],
        source_uuid=source_uuid,
        structure_uuid=structure.uuid,
        result_uuid=result_uuid,
    )


class DatasetData(orm.ArrayData):
    """Labelled structures (energies, optionally forces) at one or more levels of theory."""

    @classmethod
    def from_frames(cls, frames: t.Sequence[Frame], *, description: str = '') -> DatasetData:
        """Build an unstored dataset from frames; raise ``ValueError`` naming the first inconsistent frame.

        Frames may mix rows with and without forces, and hold several levels; rows of one structure at several levels
        share its ``structure_uuid``, and one structure may have at most one row per level.
        """
        if not frames:
            raise ValueError('a dataset needs at least one labelled frame')
        has_forces = [frame.forces is not None for frame in frames]
        seen: dict[tuple[str, str], int] = {}
        for index, frame in enumerate(frames):
            if frame.structure_uuid:
                first = seen.setdefault((frame.structure_uuid, frame.level), index)
                if first != index:
                    raise ValueError(
                        f'frames {first} and {index} label structure {frame.structure_uuid} twice at {frame.level}: '
                        'keep one row per structure and level'
                    )
        offsets = np.zeros(len(frames) + 1, dtype=np.int64)
        for index, frame in enumerate(frames):
            numbers = np.asarray(frame.numbers)
            positions = np.asarray(frame.positions, dtype=float)
            if positions.shape != (len(numbers), 3):
                raise ValueError(f'frame {index}: positions have shape {positions.shape}, expected ({len(numbers)}, 3)')
            if not np.isfinite(frame.energy) or not np.all(np.isfinite(positions)):
                raise ValueError(f'frame {index}: energy or positions are not finite')
            if frame.forces is not None and np.asarray(frame.forces).shape != positions.shape:
                raise ValueError(f'frame {index}: forces do not match the positions in shape')
            offsets[index + 1] = offsets[index] + len(numbers)

        node = cls()
        node.set_array('numbers', np.concatenate([np.asarray(f.numbers, dtype=np.int64) for f in frames]))
        node.set_array('positions', np.concatenate([np.asarray(f.positions, dtype=float) for f in frames]))
        node.set_array('offsets', offsets)
        node.set_array('energy', np.array([float(f.energy) for f in frames]))
        if any(has_forces):
            node.set_array(
                'forces',
                np.concatenate(
                    [
                        np.asarray(f.forces, dtype=float) if f.forces is not None else np.zeros((len(f.numbers), 3))
                        for f in frames
                    ]
                ),
            )
            node.set_array('forces_present', np.array(has_forces, dtype=bool))
        node.set_array(
            'frame_index', np.array([-1 if f.frame_index is None else int(f.frame_index) for f in frames], dtype=np.int64)
        )
        node.set_array('charge', np.array([int(f.charge) for f in frames], dtype=np.int64))
        node.set_array('multiplicity', np.array([int(f.multiplicity) for f in frames], dtype=np.int64))
        node.base.attributes.set('levels', [f.level for f in frames])
        node.base.attributes.set('source_uuids', [f.source_uuid for f in frames])
        node.base.attributes.set('structure_uuids', [f.structure_uuid for f in frames])
        node.base.attributes.set('result_uuids', [f.result_uuid for f in frames])
        node.base.attributes.set('units', {'energy': ENERGY_UNIT, 'forces': FORCES_UNIT, 'positions': POSITIONS_UNIT})
        node.base.attributes.set('num_frames', len(frames))
        node.base.attributes.set('num_atoms_total', int(offsets[-1]))
        node.base.attributes.set('has_forces', all(has_forces))
        node.base.attributes.set('num_rows_with_forces', int(sum(has_forces)))
        node.base.attributes.set('species', sorted({int(z) for f in frames for z in np.asarray(f.numbers)}))
        node.base.attributes.set('level_counts', {lvl: sum(1 for f in frames if f.level == lvl) for lvl in {f.level for f in frames}})
        node.base.attributes.set(
            'num_structures', len({f.structure_uuid or f'row-{i}' for i, f in enumerate(frames)})
        )
        if description:
            node.description = description
        return node

    # -- reading ---------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.base.attributes.get('num_frames'))

    @property
    def has_forces(self) -> bool:
        """Whether every row has forces (see :attr:`forces_present` for rows with and without)."""
        return bool(self.base.attributes.get('has_forces'))

    @property
    def forces_present(self) -> np.ndarray:
        """Bool per row: whether the row has forces."""
        if 'forces' not in self.get_arraynames():
            return np.zeros(len(self), dtype=bool)
        if 'forces_present' in self.get_arraynames():
            return self.get_array('forces_present').astype(bool)
        return np.ones(len(self), dtype=bool)  # datasets stored before rows could lack forces

    @property
    def structure_uuids(self) -> list[str | None]:
        return list(self.base.attributes.get('structure_uuids'))

    @property
    def frame_indices(self) -> np.ndarray:
        """Frame of the source file per row (-1: not read from a file)."""
        if 'frame_index' in self.get_arraynames():
            return self.get_array('frame_index')
        return np.full(len(self), -1, dtype=np.int64)

    def rows_at(self, level: str) -> list[int]:
        """Indices of the rows labelled at ``level``."""
        return [index for index, row_level in enumerate(self.levels) if row_level == level]

    def pairs(self, base_level: str, target_level: str) -> list[tuple[int, int]]:
        """``(base row, target row)`` of every structure labelled at both levels, paired by structure uuid."""
        uuids = self.structure_uuids
        base_of = {uuids[i]: i for i in self.rows_at(base_level) if uuids[i]}
        return [(base_of[uuids[i]], i) for i in self.rows_at(target_level) if uuids[i] in base_of]

    @property
    def levels(self) -> list[str]:
        return list(self.base.attributes.get('levels'))

    @property
    def source_uuids(self) -> list[str | None]:
        return list(self.base.attributes.get('source_uuids'))

    @property
    def species(self) -> list[int]:
        return list(self.base.attributes.get('species'))

    def frame(self, index: int) -> Frame:
        offsets = self.get_array('offsets')
        start, stop = int(offsets[index]), int(offsets[index + 1])
        forces = self.get_array('forces')[start:stop] if self.forces_present[index] else None
        return Frame(
            numbers=self.get_array('numbers')[start:stop],
            positions=self.get_array('positions')[start:stop],
            energy=float(self.get_array('energy')[index]),
            forces=forces,
            charge=int(self.get_array('charge')[index]),
            multiplicity=int(self.get_array('multiplicity')[index]),
            level=self.levels[index],
            source_uuid=self.source_uuids[index],
            structure_uuid=self.base.attributes.get('structure_uuids')[index],
            result_uuid=self.base.attributes.get('result_uuids', [None] * len(self))[index],
            frame_index=None if self.frame_indices[index] < 0 else int(self.frame_indices[index]),
        )

    def frames(self) -> t.Iterator[Frame]:
        for index in range(len(self)):
            yield self.frame(index)

    def to_ase(self) -> list:
        """Return the frames as ``ase.Atoms`` with a single-point calculator holding energy and forces."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        images = []
        for index, frame in enumerate(self.frames()):
            atoms = Atoms(numbers=frame.numbers, positions=frame.positions)
            atoms.calc = SinglePointCalculator(atoms, energy=frame.energy, forces=frame.forces)
            atoms.info.update(
                {
                    'index': index,
                    'level': frame.level,
                    'source_uuid': frame.source_uuid or '',
                    'structure_uuid': frame.structure_uuid or '',
                    'charge': frame.charge,
                    'multiplicity': frame.multiplicity,
                }
            )
            images.append(atoms)
        return images

    def export_extxyz(self, filename, *, energy_unit: str | None = None) -> None:
        """Write the dataset as extended XYZ.

        An imported dataset (one that knows the file keys of its levels) is written back as it came: one frame per
        structure, in frame order, each level's energy and forces under the keys it was read from, in ``energy_unit``
        (default: the unit of the imported file; forces in that unit per Å), so that ``mlqm data import`` with the
        same ``--label`` options reads it back. Other datasets are written one frame per row with the energy and
        forces (eV, eV/Å) as ASE's single-point results and the row's level and source uuid in the frame info.
        """
        from ase.io import write

        if self.base.attributes.get('label_keys', None):
            images = self.to_ase_by_structure(energy_unit=energy_unit)
        else:
            images = self.to_ase()
        write(filename, images, format='extxyz')

    def to_ase_by_structure(self, *, energy_unit: str | None = None) -> list:
        """One ``ase.Atoms`` per structure with every level under its file keys (see :meth:`export_extxyz`)."""
        from ase import Atoms

        from .labelled import UNIT_NAMES, energy_factor

        keys = self.base.attributes.get('label_keys')
        unit = energy_unit or self.base.attributes.get('file_energy_unit', 'eV')
        factor = 1.0 / energy_factor(unit)
        groups: dict[str, list[int]] = {}
        for index, uuid in enumerate(self.structure_uuids):
            groups.setdefault(uuid or f'row-{index}', []).append(index)
        ordered = sorted(groups.values(), key=lambda rows: (int(min(self.frame_indices[r] for r in rows)), rows[0]))
        images = []
        for rows in ordered:
            first = self.frame(rows[0])
            atoms = Atoms(numbers=first.numbers, positions=first.positions)
            atoms.info.update({'charge': first.charge, 'multiplicity': first.multiplicity})
            if first.frame_index is not None:
                atoms.info['frame_index'] = first.frame_index
            atoms.info['structure_uuid'] = first.structure_uuid or ''
            atoms.info['energy_unit'] = UNIT_NAMES[unit.strip().lower()]
            for row in rows:
                frame = self.frame(row)
                level_keys = keys.get(frame.level) or {'energy': f'energy_{frame.level}', 'forces': None}
                atoms.info[level_keys['energy']] = frame.energy * factor
                if frame.forces is not None:
                    atoms.arrays[level_keys['forces'] or f'forces_{frame.level}'] = frame.forces * factor
            images.append(atoms)
        return images

    @classmethod
    def from_file(
        cls,
        path,
        labels: t.Sequence[str],
        *,
        energy_unit: str = 'eV',
        file_format: str | None = None,
    ) -> DatasetData:
        """Import a labelled extxyz or ASE database with provenance; return the stored dataset.

        The file is checked completely first (``ValueError`` naming the problem and its fix; nothing is stored), then
        stored as ``SinglefileData`` (sha256 kept) and read by the ``import_labelled_file`` calcfunction, which also
        creates one ``StructureData`` per frame: rows of a frame at several levels share that node.

        :param labels: ``'METHOD/BASIS=ENERGY_KEY[,FORCES_KEY]'`` per level in the file.
        :param energy_unit: eV, hartree or kcal/mol (forces in that unit per Å).
        :param file_format: ``extxyz`` or ``ase-db``; by default from the suffix (.extxyz/.xyz, .db).
        """
        from ..workflows.importing import import_file

        return import_file(path, list(labels), energy_unit=energy_unit, fmt=file_format)['dataset']

    def __str__(self) -> str:
        counts = ', '.join(f'{n} at {lvl}' for lvl, n in sorted(self.base.attributes.get('level_counts', {}).items()))
        with_forces = self.base.attributes.get('num_rows_with_forces', len(self) if self.has_forces else 0)
        return f'DatasetData: {len(self)} frames ({counts}), forces on {with_forces} of them'
