"""Δ-learning: a committee of the cheap level plus a committee of (expensive - cheap), trained where both exist.

The prediction is the sum of the two; the spreads of the two independent committees add in quadrature, and the
combined spread is then recalibrated (scale and conformal quantile) against expensive labels held out from both.
"""

from __future__ import annotations

import pathlib
import typing as t

import numpy as np

from . import serialization
from .committee import Committee, Prediction
from .data import Structures, split_indices
from .errors import InvalidInputError
from .uncertainty import Calibration, calibrate, combine_spreads


def _geometry_key(numbers: np.ndarray, positions: np.ndarray) -> str:
    # rounded to 1e-6 Å so that the same geometry written by two jobs compares equal
    return numbers.tobytes().hex() + ':' + np.round(positions, 6).tobytes().hex()


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
        if data.keys is not None and data.keys[index]:
            return data.keys[index]
        return _geometry_key(*data.frame(index))

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
    else:
        difference.forces = None
    return base, expensive, difference


class DeltaModel:
    """``base`` (cheap level) + ``correction`` (expensive - cheap), with a calibration of the summed spread."""

    def __init__(
        self,
        base: Committee,
        correction: Committee,
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

    kind = 'delta'

    @property
    def species(self) -> list[int]:
        return sorted(set(self.base.species) & set(self.correction.species))

    def predict(self, structures: Structures, *, forces: bool = False, batch_size: int = 512) -> Prediction:
        base = self.base.predict(structures, forces=forces, batch_size=batch_size)
        correction = self.correction.predict(structures, forces=forces, batch_size=batch_size)
        spread = combine_spreads(base.spread, correction.spread)
        members = base.members.mean(0, keepdims=True) + correction.members  # a correction member on the mean base
        return Prediction(
            value=base.value + correction.value,
            spread=spread,
            calibrated_spread=self.calibration.apply(spread),
            interval=self.calibration.interval_halfwidth(spread),
            members=members,
            forces=None if not forces else base.forces + correction.forces,
            coverage=self.calibration.coverage if self.calibration.conformal_quantile is not None else None,
        )

    def metadata(self) -> dict[str, t.Any]:
        return {
            'kind': 'delta',
            'backend': 'torchani',
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
    def load(cls, directory: str | pathlib.Path) -> DeltaModel:
        directory = pathlib.Path(directory)
        metadata = serialization.read_metadata(directory)
        return cls(
            Committee.load(directory / 'base'),
            Committee.load(directory / 'correction'),
            levels=(metadata['levels']['base'], metadata['levels']['target']),
            calibration=Calibration.from_dict(metadata.get('calibration')),
            metrics=metadata.get('metrics'),
        )


def train_delta(
    data: Structures,
    *,
    base_level: str,
    target_level: str,
    base_hyperparameters: dict[str, t.Any] | None = None,
    correction_hyperparameters: dict[str, t.Any] | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    log: t.Callable[[str], None] | None = print,
) -> DeltaModel:
    """Train the base committee on every ``base_level`` frame and the correction on the paired frames.

    :param holdout_fraction: share of the pairs kept from the correction's training to calibrate the summed spread
        against ``target_level`` labels.
    """
    log = log or (lambda line: None)
    base_data, expensive, difference = pair_levels(data, base_level, target_level)
    train_index, holdout_index = split_indices(len(difference), [holdout_fraction], seed)
    log(
        f'Δ-learning: base on {len(base_data)} {base_level} frames, correction on {len(train_index)} pairs, '
        f'{len(holdout_index)} pairs held out for calibration'
    )
    base = train_committee_logged(base_data, base_hyperparameters, log, 'base')
    correction_hyper = {'calibration_fraction': 0.0, **(correction_hyperparameters or {})}
    correction = train_committee_logged(difference.subset(train_index), correction_hyper, log, 'correction')
    model = DeltaModel(base, correction, levels=(base_level, target_level))
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


def train_committee_logged(data: Structures, hyperparameters, log, name: str) -> Committee:
    from .training import train_committee

    return train_committee(data, hyperparameters, kind='potential', log=lambda line: log(f'[{name}] {line}'))
