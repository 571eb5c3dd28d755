"""``DatasetData`` (``mlqm.dataset``): labelled structures as arrays, the training data of every model.

A dataset holds ``n`` frames (one per labelled structure) of possibly different sizes, stored flat:

- ``numbers`` (int, total atoms): atomic numbers of all frames, concatenated;
- ``positions`` (float, total atoms x 3, Å);
- ``offsets`` (int, n + 1): frame ``i`` spans ``offsets[i]:offsets[i + 1]`` of the atom arrays;
- ``energy`` (float, n, eV);
- ``forces`` (float, total atoms x 3, eV/Å), only when every frame has forces;
- ``charge`` and ``multiplicity`` (int, n).

Per-frame text (``level``, ``source_uuid`` of the calculation that produced the label, ``structure_uuid`` and
``result_uuid`` of the node holding the full result) is kept
in attributes, as are ``units`` and the level of theory. The arrays live in the node's repository as ``.npy`` files
(AiiDA's ``ArrayData`` storage); nothing is pickled.
"""
from __future__ import annotations

import typing as t

import numpy as np
from aiida import orm

ENERGY_UNIT = 'eV'
FORCES_UNIT = 'eV/Å'
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


class DatasetData(orm.ArrayData):
    """Labelled structures (energies, optionally forces) at one or more levels of theory."""

    @classmethod
    def from_frames(cls, frames: t.Sequence[Frame], *, description: str = '') -> 'DatasetData':
        """Build an unstored dataset from frames; raise ``ValueError`` naming the first inconsistent frame."""
        if not frames:
            raise ValueError('a dataset needs at least one labelled frame')
        has_forces = [frame.forces is not None for frame in frames]
        if any(has_forces) and not all(has_forces):
            missing = [i for i, flag in enumerate(has_forces) if not flag]
            raise ValueError(f'frames {missing[:5]} have no forces while others do: label all frames with forces or none')
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
        if all(has_forces):
            node.set_array('forces', np.concatenate([np.asarray(f.forces, dtype=float) for f in frames]))
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
        node.base.attributes.set('species', sorted({int(z) for f in frames for z in np.asarray(f.numbers)}))
        node.base.attributes.set('level_counts', {lvl: sum(1 for f in frames if f.level == lvl) for lvl in {f.level for f in frames}})
        if description:
            node.description = description
        return node

    # -- reading ---------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.base.attributes.get('num_frames'))

    @property
    def has_forces(self) -> bool:
        return bool(self.base.attributes.get('has_forces'))

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
        forces = self.get_array('forces')[start:stop] if self.has_forces else None
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

    def export_extxyz(self, filename) -> None:
        """Write all frames to an extended XYZ file (energies in eV, forces in eV/Å, source uuid per frame)."""
        from ase.io import write

        write(filename, self.to_ase(), format='extxyz')

    def __str__(self) -> str:
        counts = ', '.join(f'{n} at {lvl}' for lvl, n in sorted(self.base.attributes.get('level_counts', {}).items()))
        return f'DatasetData: {len(self)} frames ({counts}), forces: {self.has_forces}'
