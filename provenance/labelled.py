"""Labelled files in and out: which key of a frame holds which level's energy and forces, and in which unit.

A label specification reads ``METHOD/BASIS=ENERGY_KEY[,FORCES_KEY]``, e.g. ``b3lyp/6-31g*=e_dft,f_dft``: the frames'
``ENERGY_KEY`` (``atoms.info``, or the single-point calculator for ``energy``) is the energy at that level, and the
optional ``FORCES_KEY`` (``atoms.arrays``, or the calculator for ``forces``) its forces. Energies are read in the
file's unit (eV, hartree or kcal/mol) and forces in that unit per Å; both are stored in eV and eV/Å.

Reading is separate from storing: :func:`read_labelled_frames` checks a whole file and raises ``ValueError`` naming
the problem and its fix before anything is stored. Nothing here imports AiiDA.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing as t

import numpy as np

from ..chemistry.level import LevelOfTheory, ParameterError
from ..units import EV_TO_KCAL_PER_MOL, HARTREE_TO_EV

#: Multiply a value in this unit by the factor to get eV (forces: the unit per Å to eV/Å).
ENERGY_UNITS = {'ev': 1.0, 'hartree': HARTREE_TO_EV, 'kcal/mol': 1.0 / EV_TO_KCAL_PER_MOL}
UNIT_NAMES = {'ev': 'eV', 'hartree': 'hartree', 'kcal/mol': 'kcal/mol'}
FORMATS = ('extxyz', 'ase-db')
_SUFFIX_FORMATS = {'.extxyz': 'extxyz', '.xyz': 'extxyz', '.db': 'ase-db'}
LABEL_SYNTAX = "METHOD/BASIS=ENERGY_KEY[,FORCES_KEY], e.g. 'b3lyp/6-31g*=e_dft,f_dft'"


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """One level of theory in a file: its label and the keys holding its energy and, optionally, forces."""

    level: str
    energy_key: str
    forces_key: str | None = None

    def as_text(self) -> str:
        keys = self.energy_key + (f',{self.forces_key}' if self.forces_key else '')
        return f'{self.level}={keys}'


def parse_label(text: str) -> LabelSpec:
    """Parse ``METHOD/BASIS=ENERGY_KEY[,FORCES_KEY]``."""
    level, equals, keys = str(text).partition('=')
    if not equals or not keys.strip():
        raise ValueError(f'label {text!r} must look like {LABEL_SYNTAX}')
    names = [name.strip() for name in keys.split(',')]
    if len(names) > 2 or not all(names):
        raise ValueError(f'label {text!r}: give one energy key and at most one forces key, as {LABEL_SYNTAX}')
    try:
        level = LevelOfTheory.canonical(level)
    except ParameterError as exception:
        raise ValueError(f'label {text!r}: {exception}') from None
    return LabelSpec(level, names[0], names[1] if len(names) == 2 else None)


def parse_labels(texts: t.Sequence[str | LabelSpec]) -> list[LabelSpec]:
    """Parse several label specifications; a level or a key given twice is an error."""
    specs = [text if isinstance(text, LabelSpec) else parse_label(text) for text in texts]
    if not specs:
        raise ValueError(f'give at least one label, as {LABEL_SYNTAX}')
    levels = [spec.level for spec in specs]
    for level in set(levels):
        if levels.count(level) > 1:
            raise ValueError(f'level {level} is labelled twice: give one --label per level')
    keys = [key for spec in specs for key in (spec.energy_key, spec.forces_key) if key]
    for key in set(keys):
        if keys.count(key) > 1:
            raise ValueError(f'key {key!r} is used by two labels: each level needs its own energy and forces keys')
    return specs


def energy_factor(unit: str) -> float:
    """Factor from ``unit`` to eV; ``ValueError`` listing the known units otherwise."""
    key = str(unit).strip().lower()
    if key not in ENERGY_UNITS:
        raise ValueError(f'unknown energy unit {unit!r}; choose one of eV, hartree, kcal/mol')
    return ENERGY_UNITS[key]


def file_format(path: str | pathlib.Path, given: str | None = None) -> str:
    """``extxyz`` or ``ase-db``, given or from the file name."""
    if given:
        if given not in FORMATS:
            raise ValueError(f'unknown format {given!r}; choose one of {", ".join(FORMATS)}')
        return given
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise ValueError(
            f'cannot tell the format of {pathlib.Path(path).name} from its suffix: name it .extxyz/.xyz or .db, '
            f'or give the format ({", ".join(FORMATS)})'
        )
    return _SUFFIX_FORMATS[suffix]


@dataclasses.dataclass
class LabelledFrame:
    """One frame of a file: geometry, charge and multiplicity, and its labels per level (eV, eV/Å)."""

    index: int
    numbers: np.ndarray
    positions: np.ndarray
    charge: int
    multiplicity: int
    labels: dict[str, tuple[float, np.ndarray | None]]


class _Record(t.NamedTuple):
    numbers: np.ndarray
    positions: np.ndarray
    scalars: dict[str, t.Any]
    arrays: dict[str, np.ndarray]


def _records(path: pathlib.Path, fmt: str) -> t.Iterator[_Record]:
    """Frames of the file with every scalar (info, key-value pairs, calculator energy) and per-atom array by name."""
    if fmt == 'extxyz':
        from ase.io import read

        try:
            images = read(path, index=':', format='extxyz')
        except Exception as exception:  # noqa: BLE001 - any parse failure is the user's file
            raise ValueError(f'{path.name} is not readable as extended XYZ: {exception}') from None
        for atoms in images:
            scalars = dict(atoms.info)
            arrays = {key: value for key, value in atoms.arrays.items() if key not in ('numbers', 'positions')}
            if atoms.calc is not None:  # ASE moves 'energy' and 'forces' of an extxyz into a single-point calculator
                for key, value in atoms.calc.results.items():
                    (arrays if np.ndim(value) == 2 else scalars).setdefault(key, value)
            yield _Record(atoms.get_atomic_numbers(), atoms.get_positions(), scalars, arrays)
    else:
        import ase.db

        try:
            database = ase.db.connect(str(path), type='db')
            rows = list(database.select())
        except Exception as exception:  # noqa: BLE001
            raise ValueError(f'{path.name} is not readable as an ASE database: {exception}') from None
        for row in rows:
            scalars = dict(row.key_value_pairs)
            arrays = {}
            for key, value in dict(row.data).items():
                (arrays if np.ndim(value) == 2 else scalars).setdefault(key, value)
            for key in ('energy', 'forces', 'charge'):
                if row.get(key) is not None:
                    (arrays if key == 'forces' else scalars).setdefault(key, row.get(key))
            yield _Record(row.numbers, row.positions, scalars, arrays)


def _state(record: _Record, index: int) -> tuple[int, int]:
    electrons = int(np.sum(record.numbers))
    try:
        charge = int(record.scalars.get('charge', 0))
        given = record.scalars.get('multiplicity')
        multiplicity = int(given) if given is not None else (1 if (electrons - charge) % 2 == 0 else 2)
    except (TypeError, ValueError):
        raise ValueError(f'frame {index}: charge and multiplicity must be integers') from None
    if multiplicity < 1 or (electrons - charge + multiplicity - 1) % 2:
        raise ValueError(
            f'frame {index}: multiplicity {multiplicity} is impossible with {electrons - charge} electrons '
            f'(charge {charge}); fix the frame info'
        )
    return charge, multiplicity


def read_labelled_frames(
    path: str | pathlib.Path, specs: t.Sequence[LabelSpec], energy_unit: str = 'eV', fmt: str | None = None
) -> list[LabelledFrame]:
    """Every frame of the file with its labels converted to eV and eV/Å.

    A frame may lack the keys of some levels (it then has no row at that level) and a level's forces key may be
    missing on some of its frames (those rows are energy-only); a key found in no frame, a frame with no label at all,
    a non-finite value or forces of the wrong shape are errors.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f'{path} does not exist or is not a file')
    factor = energy_factor(energy_unit)
    fmt = file_format(path, fmt)
    records = list(_records(path, fmt))
    if not records:
        raise ValueError(f'{path.name} holds no frames')
    for spec in specs:
        for key, where in ((spec.energy_key, 'scalars'), (spec.forces_key, 'arrays')):
            if key and not any(key in getattr(record, where) for record in records):
                found = sorted({name for record in records for name in getattr(record, where)})
                kind = 'energy' if where == 'scalars' else 'forces (per-atom)'
                raise ValueError(
                    f'{kind} key {key!r} of level {spec.level} is in no frame of {path.name}; '
                    f'the frames have these {kind} keys: {found or "none"}'
                )
    frames = []
    for index, record in enumerate(records):
        labels: dict[str, tuple[float, np.ndarray | None]] = {}
        for spec in specs:
            if spec.energy_key not in record.scalars:
                continue
            try:
                energy = float(record.scalars[spec.energy_key]) * factor
            except (TypeError, ValueError):
                raise ValueError(f'frame {index}: {spec.energy_key!r} is not a number') from None
            if not np.isfinite(energy):
                raise ValueError(f'frame {index}: energy {spec.energy_key!r} is not finite')
            forces = None
            if spec.forces_key and spec.forces_key in record.arrays:
                forces = np.asarray(record.arrays[spec.forces_key], dtype=float) * factor
                if forces.shape != (len(record.numbers), 3):
                    raise ValueError(
                        f'frame {index}: forces {spec.forces_key!r} have shape {forces.shape}, '
                        f'expected ({len(record.numbers)}, 3)'
                    )
                if not np.all(np.isfinite(forces)):
                    raise ValueError(f'frame {index}: forces {spec.forces_key!r} are not finite')
            labels[spec.level] = (energy, forces)
        if not labels:
            wanted = ', '.join(spec.energy_key for spec in specs)
            raise ValueError(f'frame {index} has none of the energy keys ({wanted}): remove it or label it')
        charge, multiplicity = _state(record, index)
        frames.append(
            LabelledFrame(
                index, np.asarray(record.numbers), np.asarray(record.positions, float), charge, multiplicity, labels
            )
        )
    return frames


def read_geometries(path: str | pathlib.Path, fmt: str | None = None) -> list[LabelledFrame]:
    """Every frame of the file without labels (geometries to predict on), with charge and multiplicity."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f'{path} does not exist or is not a file')
    records = list(_records(path, file_format(path, fmt)))
    if not records:
        raise ValueError(f'{path.name} holds no frames')
    return [
        LabelledFrame(i, np.asarray(r.numbers), np.asarray(r.positions, float), *_state(r, i), labels={})
        for i, r in enumerate(records)
    ]
