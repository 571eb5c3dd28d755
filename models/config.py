"""Hyperparameters of training, validated without importing torch (job plugins check them before submission).

``TrainingConfig`` rejects unknown keys, so a misspelt hyperparameter fails before a job runs instead of training with
the default silently. ``models.networks`` checks that its presets are the names listed here.
"""

from __future__ import annotations

import typing as t

import pydantic

from .errors import InvalidInputError

AEV_PRESET_NAMES = ('ani1x', 'ani2x', 'compact')
ACTIVATION_NAMES = ('celu', 'gelu', 'silu', 'tanh')


BACKEND_NAMES = ('torchani', 'mace')
# The backend a committee gets when its hyperparameters name none, per kind. ``python -m benchmarks backends`` (ethanol,
# HF/3-21G, one split, 4 members each): MACE trained on 50 frames reaches a lower force error than torchani on 100
# (ratio 0.81), at about 1/30 of torchani's prediction speed. Labels cost more than predictions, so potentials default
# to MACE; property models (one value per molecule) stay torchani, which MACE does not train here. A Δ correction stays
# torchani too: ``python -m benchmarks delta_learning`` measured it so (the difference of two levels is smooth and small).
DEFAULT_BACKEND = {'potential': 'mace', 'property': 'torchani', 'delta': 'torchani'}
DEFAULT_LEARNING_RATE = {'torchani': 1e-3, 'mace': 1e-2}
# Options that belong to one backend only: naming them with the other backend is a mistake, not a no-op.
BACKEND_OPTIONS = {'torchani': ('aev', 'hidden', 'activation'), 'mace': ('mace',)}


class MaceOptions(pydantic.BaseModel):
    """Architecture of each MACE member (mace-torch's ``ScaleShiftMACE``); the defaults are a small model for molecules.

    :param r_max: cutoff radius in Å. ``num_channels``: features per irrep. ``max_L``: highest irrep of the hidden
        features (0 invariant, 1 adds vectors). ``correlation``: body order of the product basis minus one.
    """

    model_config = pydantic.ConfigDict(extra='forbid')

    r_max: float = pydantic.Field(5.0, gt=0)
    num_channels: int = pydantic.Field(16, ge=1)
    max_L: int = pydantic.Field(1, ge=0, le=3)
    max_ell: int = pydantic.Field(3, ge=1, le=4)
    correlation: int = pydantic.Field(3, ge=1, le=4)
    num_interactions: int = pydantic.Field(2, ge=1, le=4)
    num_radial_basis: int = pydantic.Field(8, ge=1)
    num_cutoff_basis: int = pydantic.Field(5, ge=1)
    radial_mlp: list[int] = pydantic.Field(default_factory=lambda: [32, 32])


class TrainingConfig(pydantic.BaseModel):
    """Hyperparameters of a committee (unknown keys are rejected, so a typo never trains the defaults silently).

    ``backend`` picks the member architecture: ``torchani`` (``aev``, ``hidden``, ``activation``) or ``mace``
    (``mace``); everything else (members, bootstrap, loss, early stopping, calibration) is shared. ``backend`` and
    ``learning_rate`` left at ``None`` are decided by :meth:`for_kind` (``DEFAULT_BACKEND``, ``DEFAULT_LEARNING_RATE``).
    """

    model_config = pydantic.ConfigDict(extra='forbid')

    backend: t.Literal['torchani', 'mace'] | None = pydantic.Field(
        None, description="None: the kind's default (MACE for potentials, torchani for properties)"
    )
    members: int = pydantic.Field(4, ge=1, le=64)
    seed: int = 0
    aev: str = 'compact'
    hidden: list[int] = pydantic.Field(default_factory=lambda: [64, 32])
    activation: str = 'celu'
    mace: MaceOptions = pydantic.Field(default_factory=MaceOptions)
    dtype: t.Literal['float32', 'float64'] = 'float32'
    extensive: bool = True
    epochs: int = pydantic.Field(300, ge=1)
    batch_size: int = pydantic.Field(32, ge=1)
    learning_rate: float | None = pydantic.Field(None, gt=0, description="None: the backend's default")
    weight_decay: float = pydantic.Field(0.0, ge=0)
    energy_weight: float = pydantic.Field(1.0, ge=0)
    force_weight: float | None = pydantic.Field(None, ge=0, description='None: 1.0 when the data have forces, else 0')
    validation_fraction: float = pydantic.Field(0.1, ge=0, lt=1)
    calibration_fraction: float = pydantic.Field(0.1, ge=0, lt=1)
    patience: int = pydantic.Field(30, ge=1)
    bootstrap: bool = True
    coverage: float = pydantic.Field(0.9, gt=0, lt=1)
    max_seconds: float | None = pydantic.Field(None, gt=0)
    num_threads: int | None = pydantic.Field(
        1,
        ge=1,
        description='torch intra-op threads while training; small networks run fastest on one (None: leave as is)',
    )

    @pydantic.field_validator('aev')
    @classmethod
    def _known_aev(cls, value: str) -> str:
        if value not in AEV_PRESET_NAMES:
            raise ValueError(f'unknown aev preset {value!r}; choose one of {sorted(AEV_PRESET_NAMES)}')
        return value

    @pydantic.field_validator('activation')
    @classmethod
    def _known_activation(cls, value: str) -> str:
        if value not in ACTIVATION_NAMES:
            raise ValueError(f'unknown activation {value!r}; choose one of {sorted(ACTIVATION_NAMES)}')
        return value


    def for_kind(self, kind: str, default_backend: str | None = None) -> TrainingConfig:
        """These hyperparameters with ``backend`` and ``learning_rate`` decided for a ``kind`` committee
        (``default_backend``, else ``DEFAULT_BACKEND[kind]``, when they name none).

        :raises InvalidInputError: when options of the other backend are set (``hidden`` for a MACE potential), which
            would otherwise be ignored without a word.
        """
        backend = self.backend or default_backend or DEFAULT_BACKEND.get(kind, 'torchani')
        misplaced = sorted(
            key
            for other, keys in BACKEND_OPTIONS.items()
            if other != backend
            for key in keys
            if getattr(self, key) != type(self).model_fields[key].get_default(call_default_factory=True)
        )  # set away from their defaults (a full dump of these hyperparameters names every option at its default)
        if misplaced:
            chosen = f'backend {backend!r}' + ('' if self.backend else f' (the default for {kind} models)')
            raise InvalidInputError(
                f'hyperparameters {misplaced} belong to the other backend, not to {chosen}: remove them, or set '
                f"'backend' to {'torchani' if backend == 'mace' else 'mace'!r}"
            )
        learning_rate = self.learning_rate or DEFAULT_LEARNING_RATE[backend]
        return self.model_copy(update={'backend': backend, 'learning_rate': learning_rate})


def parse_config(values: dict[str, t.Any] | None) -> TrainingConfig:
    """Validate hyperparameters; raise ``InvalidInputError`` listing every wrong key and why."""
    try:
        return TrainingConfig(**(values or {}))
    except pydantic.ValidationError as exception:
        problems = '; '.join(f'{".".join(map(str, e["loc"]))}: {e["msg"]}' for e in exception.errors())
        raise InvalidInputError(f'invalid hyperparameters: {problems}') from None


class ClassifierConfig(pydantic.BaseModel):
    """Options of ``models.classifier.train_classifier``."""

    model_config = pydantic.ConfigDict(extra='forbid')

    estimator: t.Literal['random_forest', 'gradient_boosting', 'logistic_regression'] = 'random_forest'
    method: t.Literal['isotonic', 'sigmoid'] = 'sigmoid'
    cv: int = pydantic.Field(3, ge=2)
    test_fraction: float = pydantic.Field(0.25, gt=0, lt=1)
    seed: int = 0


class ExploreConfig(pydantic.BaseModel):
    """Langevin ML-MD settings of ``explore`` mode.

    :param threshold: the committee spread that ends a trajectory with a candidate, in the unit of ``signal``.
    :param signal: ``energy_spread`` (calibrated energy spread, eV) or ``force_spread`` (DP-GEN's model deviation: the
        largest over atoms of the members' force deviation, eV/Å; the signal that tracks the error of a potential).
    :param timestep: fs. ``friction``: 1/fs. ``min_distance``: Å; a closer pair ends the trajectory as unphysical.
    """

    model_config = pydantic.ConfigDict(extra='forbid')

    temperature: float = pydantic.Field(300.0, gt=0)
    timestep: float = pydantic.Field(0.5, gt=0)
    steps: int = pydantic.Field(200, ge=1)
    friction: float = pydantic.Field(0.01, gt=0)
    threshold: float = pydantic.Field(0.1, gt=0)
    signal: t.Literal['energy_spread', 'force_spread'] = 'energy_spread'
    check_interval: int = pydantic.Field(5, ge=1)
    seed: int = 0
    min_distance: float = pydantic.Field(0.5, ge=0)


class TrainParameters(pydantic.BaseModel):
    """What a user may set for a training job (file names are the job's business, not the user's)."""

    model_config = pydantic.ConfigDict(extra='forbid')

    kind: t.Literal['potential', 'property', 'delta', 'ml_base_delta', 'classifier'] = 'potential'
    hyperparameters: dict[str, t.Any] = {}
    target_key: str = 'target'
    base_level: str | None = None
    target_level: str | None = None
    correction_hyperparameters: dict[str, t.Any] = {}

    @pydantic.model_validator(mode='after')
    def _check(self) -> TrainParameters:
        if self.kind == 'classifier':
            ClassifierConfig(**self.hyperparameters)
        elif self.kind == 'delta':  # the hyperparameters are the correction's
            correction_config(TrainingConfig(**self.hyperparameters))
        else:
            TrainingConfig(**self.hyperparameters).for_kind('property' if self.kind == 'property' else 'potential')
        if self.kind in ('delta', 'ml_base_delta'):
            if not self.base_level or not self.target_level:
                raise ValueError('a delta model needs base_level and target_level (the two levels of theory)')
            correction_config(TrainingConfig(**self.correction_hyperparameters))
        return self


class PredictParameters(pydantic.BaseModel):
    """What a user may set for a prediction job."""

    model_config = pydantic.ConfigDict(extra='forbid')

    mode: t.Literal['predict', 'explore'] = 'predict'
    forces: bool = True
    batch_size: int = pydantic.Field(256, ge=1)
    num_threads: int | None = pydantic.Field(1, ge=1, description='torch threads; one is fastest for small networks')
    explore: ExploreConfig = ExploreConfig()


def validation_message(schema: type[pydantic.BaseModel], values: dict[str, t.Any]) -> str | None:
    """Validate ``values`` against ``schema``; return ``None`` or one line naming every problem (for port validators)."""
    try:
        schema(**values)
    except pydantic.ValidationError as exception:
        return '; '.join(f'{".".join(map(str, e["loc"])) or "parameters"}: {e["msg"]}' for e in exception.errors())
    return None


def correction_config(values: dict[str, t.Any] | TrainingConfig | None) -> TrainingConfig:
    """Hyperparameters of a Δ correction committee (a potential of the difference of two levels), decided."""
    config = values if isinstance(values, TrainingConfig) else parse_config(values)
    return config.for_kind('potential', default_backend=DEFAULT_BACKEND['delta'])
