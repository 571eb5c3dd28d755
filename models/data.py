"""Structures and labels as flat arrays, padded batches for torch, reference energies and data splits.

The flat layout is the one ``DatasetData`` stores (``numbers``, ``positions``, ``offsets``, ``energy``, ``forces``),
so a dataset written to ``.npz`` by a CalcJob is read here without conversion. Nothing here imports AiiDA.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing as t

import numpy as np

ARRAY_KEYS = (
    'numbers', 'positions', 'offsets', 'energy', 'forces', 'forces_present', 'charge', 'multiplicity', 'target'
)


@dataclasses.dataclass
class Structures:
    """``n`` structures (frames) of possibly different sizes, stored flat; labels optional.

    :param numbers: atomic numbers of all frames concatenated, shape (total atoms,).
    :param positions: Å, shape (total atoms, 3).
    :param offsets: frame ``i`` spans ``offsets[i]:offsets[i + 1]``, shape (n + 1,).
    :param energy: eV per frame, or ``None``.
    :param forces: eV/Å, shape (total atoms, 3), or ``None``.
    :param forces_present: bool per frame, whether the frame's forces are labels (frames without hold zeros in
        ``forces`` and train the energy term only); ``None`` with ``forces`` means every frame has them.
    :param target: a scalar property per frame (property models), or ``None``.
    :param levels: level of theory per frame (Δ-learning pairs frames of two levels).
    :param keys: an identifier per frame (structure uuid); frames with the same key are the same geometry.
    """

    numbers: np.ndarray
    positions: np.ndarray
    offsets: np.ndarray
    energy: np.ndarray | None = None
    forces: np.ndarray | None = None
    target: np.ndarray | None = None
    charge: np.ndarray | None = None
    multiplicity: np.ndarray | None = None
    levels: list[str] | None = None
    keys: list[str] | None = None
    forces_present: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.numbers = np.asarray(self.numbers, dtype=np.int64)
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        if self.offsets.ndim != 1 or self.offsets[0] != 0 or self.offsets[-1] != len(self.numbers):
            raise ValueError('offsets must start at 0 and end at the number of atoms; check the structures file')
        if len(self.positions) != len(self.numbers):
            raise ValueError(f'{len(self.positions)} positions for {len(self.numbers)} atoms')
        if np.any(np.diff(self.offsets) <= 0):
            raise ValueError('every structure needs at least one atom (offsets must increase)')
        for name in ('energy', 'target'):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64).reshape(-1)
                if len(value) != len(self):
                    raise ValueError(f'{name} has {len(value)} values for {len(self)} structures')
                setattr(self, name, value)
        if self.forces is not None:
            self.forces = np.asarray(self.forces, dtype=np.float64).reshape(-1, 3)
            if len(self.forces) != len(self.numbers):
                raise ValueError(f'forces for {len(self.forces)} atoms, structures have {len(self.numbers)}')
            if self.forces_present is None:
                self.forces_present = np.ones(len(self), dtype=bool)
        if self.forces_present is not None:
            self.forces_present = np.asarray(self.forces_present, dtype=bool).reshape(-1)
            if self.forces is None:
                raise ValueError('forces_present is given without forces')
            if len(self.forces_present) != len(self):
                raise ValueError(f'forces_present has {len(self.forces_present)} values for {len(self)} structures')

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def species(self) -> list[int]:
        return sorted({int(z) for z in np.unique(self.numbers)})

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = self.offsets[index], self.offsets[index + 1]
        return self.numbers[start:stop], self.positions[start:stop]

    def subset(self, indices: t.Sequence[int] | np.ndarray) -> Structures:
        """Return the frames ``indices`` (in that order, repeats allowed) as new ``Structures``."""
        indices = np.asarray(indices, dtype=np.int64)
        atom_index = (
            np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in indices])
            if len(indices)
            else np.zeros(0, dtype=np.int64)
        )
        offsets = np.concatenate([[0], np.cumsum(self.sizes[indices])])
        pick = lambda array: None if array is None else np.asarray(array)[indices]
        return Structures(
            numbers=self.numbers[atom_index],
            positions=self.positions[atom_index],
            offsets=offsets,
            energy=pick(self.energy),
            forces=None if self.forces is None else self.forces[atom_index],
            target=pick(self.target),
            charge=pick(self.charge),
            multiplicity=pick(self.multiplicity),
            levels=None if self.levels is None else [self.levels[i] for i in indices],
            keys=None if self.keys is None else [self.keys[i] for i in indices],
            forces_present=None if self.forces is None else self.force_rows[indices],
        )

    def at_level(self, level: str | None) -> Structures:
        """The frames labelled at ``level``; with ``None``, all frames, which must then share one level.

        :raises ValueError: when ``level`` is not among the frames' levels, or ``None`` is given for several levels.
        """
        found = sorted(set(self.levels or []))
        if level is None:
            if len(found) > 1:
                raise ValueError(f'the frames hold several levels {found}: choose the level to train on')
            return self
        if level not in found:
            raise ValueError(f'level {level!r} is not among the levels of the frames: {found}')
        return self.subset([i for i, value in enumerate(self.levels) if value == level])

    @property
    def force_rows(self) -> np.ndarray:
        """Bool per frame: whether it has force labels (all ``False`` without forces, all ``True`` when forces were
        assigned after construction without ``forces_present``)."""
        if self.forces is None:
            return np.zeros(len(self), dtype=bool)
        if self.forces_present is None or len(self.forces_present) != len(self):
            return np.ones(len(self), dtype=bool)
        return np.asarray(self.forces_present, dtype=bool)

    @property
    def num_force_frames(self) -> int:
        """How many frames have force labels."""
        return int(np.sum(self.force_rows))

    def composition(self, species: t.Sequence[int]) -> np.ndarray:
        """Count matrix (n frames x len(species)): how many atoms of each element every frame has."""
        column = {z: i for i, z in enumerate(species)}
        counts = np.zeros((len(self), len(species)))
        frame_of_atom = np.repeat(np.arange(len(self)), self.sizes)
        for z in np.unique(self.numbers):
            if int(z) not in column:
                raise ValueError(f'element Z={int(z)} is not among the model species {list(species)}')
            mask = self.numbers == z
            np.add.at(counts[:, column[int(z)]], frame_of_atom[mask], 1)
        return counts

    # -- files -----------------------------------------------------------------------------------------------------

    def save_npz(self, path: str | pathlib.Path) -> None:
        """Write plain arrays (strings as unicode arrays), readable with ``np.load(allow_pickle=False)``."""
        arrays = {key: getattr(self, key) for key in ARRAY_KEYS if getattr(self, key, None) is not None}
        if self.forces is None:
            arrays.pop('forces_present', None)
        else:
            arrays['forces_present'] = self.force_rows
        if self.levels is not None:
            arrays['levels'] = np.asarray(self.levels, dtype=str)
        if self.keys is not None:
            arrays['keys'] = np.asarray(self.keys, dtype=str)
        np.savez(path, **arrays)

    @classmethod
    def load_npz(cls, path: str | pathlib.Path) -> Structures:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        missing = {'numbers', 'positions', 'offsets'} - set(arrays)
        if missing:
            raise ValueError(f'{path}: missing arrays {sorted(missing)}; write it with Structures.save_npz')
        kwargs: dict[str, t.Any] = {key: arrays[key] for key in ARRAY_KEYS if key in arrays}
        if 'levels' in arrays:
            kwargs['levels'] = [str(v) for v in arrays['levels']]
        if 'keys' in arrays:
            kwargs['keys'] = [str(v) for v in arrays['keys']]
        return cls(**kwargs)

    @classmethod
    def from_ase(cls, images: t.Sequence, *, with_labels: bool = False) -> Structures:
        """Build from ``ase.Atoms``; with ``with_labels`` read energy and forces from their calculators."""
        numbers = [np.asarray(a.get_atomic_numbers()) for a in images]
        offsets = np.concatenate([[0], np.cumsum([len(n) for n in numbers])])
        energy = forces = None
        if with_labels:
            energy = np.array([a.get_potential_energy() for a in images])
            forces = np.concatenate([a.get_forces() for a in images])
        return cls(
            np.concatenate(numbers), np.concatenate([a.get_positions() for a in images]), offsets, energy, forces
        )

    def to_ase(self) -> list:
        from ase import Atoms

        return [Atoms(numbers=n, positions=p) for n, p in (self.frame(i) for i in range(len(self)))]


def padded(structures: Structures, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Pad frames to the largest of them: numbers with 0 (no atom), positions and forces with 0.

    :return: ``numbers`` (B, N), ``positions`` (B, N, 3), ``mask`` (B, N) and, where labelled, ``energy`` (B,),
        ``forces`` (B, N, 3) with ``forces_present`` (B,), ``target`` (B,).
    """
    indices = np.arange(len(structures)) if indices is None else np.asarray(indices)
    sizes = structures.sizes[indices]
    width = int(sizes.max())
    batch = len(indices)
    numbers = np.zeros((batch, width), dtype=np.int64)
    positions = np.zeros((batch, width, 3))
    forces = np.zeros((batch, width, 3)) if structures.forces is not None else None
    present = structures.force_rows
    for row, index in enumerate(indices):
        start, stop = structures.offsets[index], structures.offsets[index + 1]
        numbers[row, : stop - start] = structures.numbers[start:stop]
        positions[row, : stop - start] = structures.positions[start:stop]
        if forces is not None and present[index]:
            forces[row, : stop - start] = structures.forces[start:stop]
    out = {'numbers': numbers, 'positions': positions, 'mask': numbers > 0}
    if forces is not None:
        out['forces'] = forces
        out['forces_present'] = structures.force_rows[indices]
    if structures.energy is not None:
        out['energy'] = structures.energy[indices]
    if structures.target is not None:
        out['target'] = structures.target[indices]
    return out


def fit_reference_energies(structures: Structures, values: np.ndarray, species: t.Sequence[int]) -> np.ndarray:
    """Per-element reference values by least squares on composition: ``values ≈ counts @ reference``.

    Fitted before training so that the networks learn only what composition does not explain (atomization-like
    energies of order eV instead of total energies of order 10^3 eV). With too few distinct compositions the system
    is underdetermined; ``lstsq`` then returns the minimum-norm solution, which still removes the mean.
    """
    counts = structures.composition(species)
    reference, *_ = np.linalg.lstsq(counts, np.asarray(values, dtype=np.float64), rcond=None)
    return reference


def split_indices(count: int, fractions: t.Sequence[float], seed: int, *, minimum: int = 1) -> list[np.ndarray]:
    """Shuffle ``range(count)`` with ``seed`` and cut off one block per fraction; the rest is the first block.

    :return: ``[rest, block_1, block_2, ...]``; every block with a positive fraction gets at least ``minimum`` frames.
    """
    order = np.random.default_rng(seed).permutation(count)
    blocks, start = [], 0
    for fraction in fractions:
        size = 0 if fraction <= 0 else max(minimum, round(fraction * count))
        blocks.append(np.sort(order[start : start + size]))
        start += size
    rest = np.sort(order[start:])
    if len(rest) == 0:
        raise ValueError(f'{count} structures are too few for the requested held-out fractions {list(fractions)}')
    return [rest, *blocks]


def cover_elements(data: Structures, candidates, *, covered=(), rng=None, limit: int | None = None) -> list[int]:
    """Structures that bring in every element of ``data`` not in ``covered``: the one owner of "every element, rarest
    first", which the initial set, the first expensive labels, training splits and the active-learning benchmark use.

    Elements are taken rarest first (fewest atoms in ``data``); for each one still missing after the earlier picks, one
    structure that has it is drawn from ``candidates`` (indices into ``data``) by ``rng``, or the first such candidate
    without one. A model never trained on an element predicts nonsense for every structure that has it.

    :param limit: at most this many picks.
    :returns: the picks, in the order they were made.
    """
    known = {int(z) for z in covered}
    pool = list(candidates)
    picks: list[int] = []
    for element in sorted(data.species, key=lambda z: (int(np.sum(data.numbers == z)), int(z))):
        if int(element) in known:
            continue
        if limit is not None and len(picks) >= limit:
            break
        having = [int(i) for i in pool if element in data.frame(i)[0] and i not in picks]
        if not having:
            continue
        pick = int(rng.choice(having)) if rng is not None else having[0]
        picks.append(pick)
        known |= {int(z) for z in data.frame(pick)[0]}
    return picks


def keep_every_element(data: Structures, train, *held_out) -> list[np.ndarray]:
    """Move held-out structures into the training block until it has every element of ``data`` (rarest first, the
    first held-out structure that has one: :func:`cover_elements`).

    A model never trained on an element cannot predict a structure that has it, so a random split of a few structures
    (three Δ pairs, one of them the only one with N) would fail at its own validation; the held-out blocks keep the rest.
    """
    train, held_out = list(train), [list(block) for block in held_out]
    known = {int(z) for i in train for z in data.frame(i)[0]}
    for pick in cover_elements(data, [i for block in held_out for i in block], covered=known):
        next(block for block in held_out if pick in block).remove(pick)
        train.append(pick)
    return [np.sort(np.asarray(train, dtype=int)), *(np.sort(np.asarray(block, dtype=int)) for block in held_out)]
