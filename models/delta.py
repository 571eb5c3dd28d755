"""Δ-learning: a committee learns (expensive - cheap) where both levels exist, on top of a cheap level.

Two kinds:

- ``delta`` (:class:`DeltaModel`, the default, Δ-learning as Ramakrishnan et al. 2015 mean it): the cheap level is
  quantum chemistry computed for every structure to predict (e.g. B3LYP), and only the correction is learned; a
  prediction is the cheap QM energy + the learned correction, with the correction committee's spread (the cheap QM
  value has no model error). Structures to predict must carry a label at the base level.
- ``ml_base_delta`` (:class:`MLBaseDeltaModel`): the cheap level is itself learned by a second committee, so no QM
  is needed at prediction time; the spreads of the two committees add in quadrature and are recalibrated against
  expensive labels held out from both. Its error is that of the base model plus the correction's.

Frames of one structure at two levels are paired by their ``keys`` (the structure's node uuid), else by geometry.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing as t

import numpy as np

from . import serialization
from .backends import load_committee
from .config import correction_config
from .data import Structures, keep_every_element, split_indices
from .errors import InvalidInputError
from .prediction import CommitteeModel, Prediction, structure_max
from .uncertainty import Calibration, calibrate, combine_spreads


def _geometry_key(numbers: np.ndarray, positions: np.ndarray) -> str:
    # rounded to 1e-6 Å so that the same geometry written by two jobs compares equal
    return numbers.tobytes().hex() + ':' + np.round(positions, 6).tobytes().hex()


def _frame_key(data: Structures, index: int) -> str:
    if data.keys is not None and data.keys[index]:
        return data.keys[index]
    return _geometry_key(*data.frame(index))


def base_labels(data: Structures, base_level: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``base_level`` energy (and, where every structure has them, forces) of each frame's structure.

    A frame at another level takes the base label of the frame with the same key (structure uuid).

    :raises InvalidInputError: naming how many frames have no base-level label and how to get one.
    """
    if data.energy is None:
        raise InvalidInputError(
            f'Δ prediction adds the correction to {base_level} energies, and the structures carry none: '
            f'label them at {base_level} first (mlqm reference --level {base_level})'
        )
    levels = data.levels if data.levels is not None else [base_level] * len(data)
    base_of = {_frame_key(data, i): i for i, level in enumerate(levels) if level == base_level}
    rows = [base_of.get(_frame_key(data, i)) for i in range(len(data))]
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        raise InvalidInputError(
            f'{len(missing)} of {len(data)} structures (first: frame {missing[0]}) have no {base_level} energy, which '
            f'Δ prediction adds the correction to: label them at {base_level} first (mlqm reference --level {base_level})'
        )
    energy = data.energy[rows]
    forces = None
    if data.forces is not None and all(data.force_rows[row] for row in rows):
        forces = np.concatenate([data.forces[data.offsets[row] : data.offsets[row + 1]] for row in rows])
    return energy, forces


def pair_levels(data: Structures, base_level: str, target_level: str) -> tuple[Structures, Structures, Structures]:
    """Split ``data`` into (all frames at ``base_level``, the ``target_level`` frames that also have a base label,
    their differences as labels: energy and forces of target - base).

    Frames are paired by ``keys`` (structure uuid) when present, else by identical geometry.
    """
    if data.levels is None:
        raise InvalidInputError('Δ-learning needs a level per frame; the dataset has none')
    found = sorted(set(data.levels))
    for level in (base_level, target_level):
        if level not in found:
            raise InvalidInputError(
                f'level {level!r} is not in the dataset (levels: {found}); set base_level/target_level'
            )

    def key(index: int) -> str:
        return _frame_key(data, index)

    base_index = [i for i, level in enumerate(data.levels) if level == base_level]
    base_of = {key(i): i for i in base_index}
    pairs = [(base_of[key(i)], i) for i, level in enumerate(data.levels) if level == target_level and key(i) in base_of]
    if len(pairs) < 2:
        raise InvalidInputError(
            f'only {len(pairs)} structures have both {base_level!r} and {target_level!r} labels; Δ-learning needs more'
        )
    base = data.subset(base_index)
    cheap = data.subset([b for b, _ in pairs])
    expensive = data.subset([e for _, e in pairs])
    difference = data.subset([e for _, e in pairs])
    difference.energy = expensive.energy - cheap.energy
    if expensive.forces is not None and cheap.forces is not None:
        difference.forces = expensive.forces - cheap.forces
        difference.forces_present = expensive.force_rows & cheap.force_rows
        if not difference.forces_present.any():
            difference.forces = difference.forces_present = None
    else:
        difference.forces = difference.forces_present = None
    return base, expensive, difference


class DeltaModel:
    """Cheap QM + ``correction`` (a committee of expensive - cheap): the default Δ model.

    The prediction is the base-level QM energy of each structure plus the learned correction; its spread, calibrated
    spread and interval are the correction committee's, recalibrated against expensive labels held out from training
    (the QM base carries no model error).
    """

    kind = 'delta'

    def __init__(
        self,
        correction: CommitteeModel,
        *,
        levels: tuple[str, str],
        calibration: Calibration | None = None,
        metrics: dict[str, t.Any] | None = None,
    ) -> None:
        self.correction = correction
        self.levels = tuple(levels)
        self.calibration = calibration or Calibration()
        self.metrics = dict(metrics or {})

    @property
    def base_level(self) -> str:
        return self.levels[0]

    @property
    def species(self) -> list[int]:
        return list(self.correction.species)

    def predict(
        self,
        structures: Structures,
        *,
        forces: bool = False,
        batch_size: int = 512,
        base_energy: np.ndarray | None = None,
        base_forces: np.ndarray | None = None,
    ) -> Prediction:
        """Base-level energy + correction for every frame.

        :param base_energy: eV per frame; by default the ``base_level`` label of each frame's structure (a frame at
            another level takes the base label of its structure, paired by key).
        :param forces: total forces need base-level forces of every frame; without them ``forces`` stays ``None``.
        :raises InvalidInputError: when a frame has no base-level energy.
        """
        if base_energy is None:
            base_energy, found_forces = base_labels(structures, self.base_level)
            base_forces = found_forces if base_forces is None else base_forces
        base_energy = np.asarray(base_energy, dtype=float).reshape(-1)
        if len(base_energy) != len(structures):
            raise InvalidInputError(f'{len(base_energy)} base energies for {len(structures)} structures')
        with_forces = forces and base_forces is not None
        correction = self.correction.predict(structures, forces=with_forces, batch_size=batch_size)
        return dataclasses.replace(
            correction,
            value=base_energy + correction.value,
            calibrated_spread=self.calibration.apply(correction.spread),
            interval=self.calibration.interval_halfwidth(correction.spread),
            members=base_energy[None, :] + correction.members,
            forces=np.asarray(base_forces) + correction.forces if with_forces else None,
            coverage=self.calibration.guaranteed_coverage,
            interval_note=self.calibration.note(),
        )

    def metadata(self) -> dict[str, t.Any]:
        correction = self.correction.metadata()
        return {
            'kind': 'delta',
            'backend': correction.get('backend', 'torchani'),
            'levels': {'base': self.levels[0], 'target': self.levels[1]},
            'base': 'quantum chemistry at the base level, supplied with every structure to predict',
            'species': self.species,
            'architecture': {'correction': correction['architecture']},
            'hyperparameters': {'correction': self.correction.hyperparameters},
            'normalisation': {'correction': correction['normalisation']},
            'calibration': self.calibration.as_dict(),
            'metrics': self.metrics,
        }

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        directory = pathlib.Path(directory)
        serialization.write_metadata(directory, self.metadata())
        self.correction.save(directory / 'correction')
        return directory

    @classmethod
    def load(cls, directory: str | pathlib.Path) -> DeltaModel:
        directory = pathlib.Path(directory)
        metadata = serialization.read_metadata(directory)
        return cls(
            load_committee(directory / 'correction'),
            levels=(metadata['levels']['base'], metadata['levels']['target']),
            calibration=Calibration.from_dict(metadata.get('calibration')),
            metrics=metadata.get('metrics'),
        )


def train_delta(
    data: Structures,
    *,
    base_level: str,
    target_level: str,
    hyperparameters: dict[str, t.Any] | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    log: t.Callable[[str], None] | None = print,
) -> DeltaModel:
    """Learn ``target_level - base_level`` on the structures labelled at both; the base stays quantum chemistry.

    :param hyperparameters: of the correction committee (``models.config.TrainingConfig``); forces enter the loss on
        pairs where both levels have them, the energy term everywhere.
    :param holdout_fraction: share of the pairs kept out of training to calibrate the spread against
        ``target_level`` labels and to report the errors of cheap QM alone, of cheap QM + a constant shift (the mean
        difference of the training pairs) and of cheap QM + the learned correction.
    """
    log = log or (lambda line: None)
    _, expensive, difference = pair_levels(data, base_level, target_level)
    if len(difference) < 3:
        raise InvalidInputError(
            f'only {len(difference)} structures have both {base_level} and {target_level} labels; Δ-learning needs '
            'at least 3 (training and held-out calibration)'
        )
    train_index, holdout_index = _pair_split(difference, holdout_fraction, seed)
    cheap_energy = expensive.energy - difference.energy
    log(
        f'Δ-learning on {base_level}: correction to {target_level} trained on {len(train_index)} pairs, '
        f'{len(holdout_index)} pairs held out for calibration'
    )
    hyper = correction_config({'calibration_fraction': 0.0, **(hyperparameters or {})})
    correction = train_committee_logged(difference.subset(train_index), hyper, log, 'correction')
    model = DeltaModel(correction, levels=(base_level, target_level))
    holdout = expensive.subset(holdout_index)
    prediction = model.predict(holdout, base_energy=cheap_energy[holdout_index])
    error = prediction.value - holdout.energy
    shift = float(np.mean(difference.energy[train_index]))
    coverage = float((hyperparameters or {}).get('coverage', 0.9))
    model.calibration = calibrate(prediction.spread, error, coverage)
    model.metrics = {
        'correction': correction.metrics,
        'num_pairs': len(difference),
        'holdout': {
            'count': len(holdout_index),
            'energy_mae': float(np.abs(error).mean()),
            'energy_rmse': float(np.sqrt((error**2).mean())),
            'base_only_energy_mae': float(np.abs(cheap_energy[holdout_index] - holdout.energy).mean()),
            'shift_energy_mae': float(np.abs(cheap_energy[holdout_index] + shift - holdout.energy).mean()),
        },
        'shift': shift,
        'units': {'energy': 'eV'},
        'calibration': model.calibration.as_dict(),
    }
    held = model.metrics['holdout']
    log(
        f'Δ model on held-out {target_level}: energy MAE {held["energy_mae"]:.4g} eV '
        f'({base_level} alone {held["base_only_energy_mae"]:.4g} eV, + constant shift {held["shift_energy_mae"]:.4g} eV)'
    )
    return model


class MLBaseDeltaModel:
    """``base`` (a committee of the cheap level) + ``correction`` (expensive - cheap), with a calibration of the summed
    spread: no QM at prediction time, at the price of the base model's error."""

    def __init__(
        self,
        base: CommitteeModel,
        correction: CommitteeModel,
        *,
        levels: tuple[str, str],
        calibration: Calibration | None = None,
        metrics: dict[str, t.Any] | None = None,
    ) -> None:
        self.base = base
        self.correction = correction
        self.levels = tuple(levels)
        self.calibration = calibration or Calibration()
        self.metrics = dict(metrics or {})

    kind = 'ml_base_delta'

    @property
    def species(self) -> list[int]:
        return sorted(set(self.base.species) & set(self.correction.species))

    def predict(self, structures: Structures, *, forces: bool = False, batch_size: int = 512) -> Prediction:
        base = self.base.predict(structures, forces=forces, batch_size=batch_size)
        correction = self.correction.predict(structures, forces=forces, batch_size=batch_size)
        spread = combine_spreads(base.spread, correction.spread)
        members = base.members.mean(0, keepdims=True) + correction.members  # a correction member on the mean base
        prediction = Prediction(
            value=base.value + correction.value,
            spread=spread,
            calibrated_spread=self.calibration.apply(spread),
            interval=self.calibration.interval_halfwidth(spread),
            members=members,
            forces=None if not forces else base.forces + correction.forces,
            coverage=self.calibration.guaranteed_coverage,
            spread_per_atom=spread / structures.sizes,
            interval_note=self.calibration.note(),
        )
        if forces:
            prediction.atom_force_spread = combine_spreads(base.atom_force_spread, correction.atom_force_spread)
            prediction.force_spread = structure_max(prediction.atom_force_spread, structures.offsets)
        return prediction

    def metadata(self) -> dict[str, t.Any]:
        return {
            'kind': 'ml_base_delta',
            'backend': self.base.backend,
            'levels': {'base': self.levels[0], 'target': self.levels[1]},
            'species': self.species,
            'architecture': {
                'base': self.base.metadata()['architecture'],
                'correction': self.correction.metadata()['architecture'],
            },
            'hyperparameters': {'base': self.base.hyperparameters, 'correction': self.correction.hyperparameters},
            'normalisation': {
                'base': self.base.metadata()['normalisation'],
                'correction': self.correction.metadata()['normalisation'],
            },
            'calibration': self.calibration.as_dict(),
            'metrics': self.metrics,
        }

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        directory = pathlib.Path(directory)
        serialization.write_metadata(directory, self.metadata())
        self.base.save(directory / 'base')
        self.correction.save(directory / 'correction')
        return directory

    @classmethod
    def load(cls, directory: str | pathlib.Path) -> MLBaseDeltaModel:
        directory = pathlib.Path(directory)
        metadata = serialization.read_metadata(directory)
        return cls(
            load_committee(directory / 'base'),
            load_committee(directory / 'correction'),
            levels=(metadata['levels']['base'], metadata['levels']['target']),
            calibration=Calibration.from_dict(metadata.get('calibration')),
            metrics=metadata.get('metrics'),
        )


def train_ml_base_delta(
    data: Structures,
    *,
    base_level: str,
    target_level: str,
    base_hyperparameters: dict[str, t.Any] | None = None,
    correction_hyperparameters: dict[str, t.Any] | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    log: t.Callable[[str], None] | None = print,
) -> MLBaseDeltaModel:
    """Train the base committee on every ``base_level`` frame and the correction on the paired frames.

    :param holdout_fraction: share of the pairs kept from the correction's training to calibrate the summed spread
        against ``target_level`` labels.
    """
    log = log or (lambda line: None)
    base_data, expensive, difference = pair_levels(data, base_level, target_level)
    train_index, holdout_index = _pair_split(difference, holdout_fraction, seed)
    log(
        f'Δ-learning: base on {len(base_data)} {base_level} frames, correction on {len(train_index)} pairs, '
        f'{len(holdout_index)} pairs held out for calibration'
    )
    base = train_committee_logged(base_data, base_hyperparameters, log, 'base')
    correction_hyper = correction_config({'calibration_fraction': 0.0, **(correction_hyperparameters or {})})
    correction = train_committee_logged(difference.subset(train_index), correction_hyper, log, 'correction')
    model = MLBaseDeltaModel(base, correction, levels=(base_level, target_level))
    holdout = expensive.subset(holdout_index)
    prediction = model.predict(holdout)
    error = prediction.value - holdout.energy
    coverage = float((correction_hyperparameters or {}).get('coverage', 0.9))
    model.calibration = calibrate(prediction.spread, error, coverage)
    model.metrics = {
        'base': base.metrics,
        'correction': correction.metrics,
        'holdout': {
            'energy_mae': float(np.abs(error).mean()),
            'energy_rmse': float(np.sqrt((error**2).mean())),
            'base_only_energy_mae': float(np.abs(base.predict(holdout).value - holdout.energy).mean()),
        },
        'calibration': model.calibration.as_dict(),
    }
    log(
        f'Δ model on held-out {target_level}: energy MAE {model.metrics["holdout"]["energy_mae"]:.4g} eV '
        f'(base alone {model.metrics["holdout"]["base_only_energy_mae"]:.4g} eV)'
    )
    return model


def _pair_split(difference: Structures, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out pairs; the training pairs hold every element (the correction must know each one).

    :raises InvalidInputError: when no pair can be held out without taking an element out of training.
    """
    train_index, holdout_index = keep_every_element(difference, *split_indices(len(difference), [holdout_fraction], seed))
    if len(holdout_index) == 0:
        raise InvalidInputError(
            f'each of the {len(difference)} pairs is the only one with one of its elements, so none can be held out '
            'to calibrate the correction: label more structures at both levels'
        )
    return train_index, holdout_index


def train_committee_logged(data: Structures, hyperparameters, log, name: str) -> CommitteeModel:
    from .training import train_committee

    return train_committee(data, hyperparameters, kind='potential', log=lambda line: log(f'[{name}] {line}'))
