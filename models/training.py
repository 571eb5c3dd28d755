"""Training a committee: reference energies, normalisation, bootstrap members, energy + force loss, early stopping.

All members train at once: one padded batch, one AEV computation, one batched network; each member sees the batch
with its own bootstrap weights (how often its resample drew each structure), which is the same as training it on its
resample. Randomness comes from generators seeded by ``seed`` (never torch's global state), so a run is repeatable.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
import typing as t

import numpy as np
import torch

from .committee import Committee
from .config import TrainingConfig, parse_config
from .data import Structures, fit_reference_energies, keep_every_element, padded, split_indices
from .errors import InvalidInputError, NaNLossError
from .networks import CommitteeNetwork, NetworkConfig, member_forces
from .uncertainty import calibrate


def evaluate(committee: Committee, structures: Structures) -> dict[str, float]:
    """MAE / RMSE of the committee mean against the labels of ``structures`` (energy or property, and forces)."""
    with_forces = committee.kind == 'potential' and structures.num_force_frames > 0
    prediction = committee.predict(structures, forces=with_forces)
    truth = structures.energy if committee.kind == 'potential' else structures.target
    error = prediction.value - truth
    name = 'energy' if committee.kind == 'potential' else 'property'
    metrics = {f'{name}_mae': float(np.abs(error).mean()), f'{name}_rmse': float(np.sqrt((error**2).mean()))}
    if with_forces:
        atoms = np.repeat(structures.force_rows, structures.sizes)  # frames without force labels are left out
        force_error = (prediction.forces - structures.forces)[atoms]
        metrics['force_mae'] = float(np.abs(force_error).mean())
        metrics['force_rmse'] = float(np.sqrt((force_error**2).mean()))
    return metrics


def _labels(structures: Structures, kind: str) -> np.ndarray:
    values = structures.energy if kind == 'potential' else structures.target
    if values is None:
        what = 'energies' if kind == 'potential' else "a 'target' property"
        raise InvalidInputError(f'the training structures carry no {what}; label them before training a {kind} model')
    return values


def _fit_normalisation(network: CommitteeNetwork, data: Structures, values: np.ndarray, kind: str, extensive: bool):
    """Fill the normalisation buffers from the training data (reference per element, scale, feature statistics)."""
    species = network.config.species
    if extensive:
        reference = fit_reference_energies(data, values, species)
        residual = (values - data.composition(species) @ reference) / data.sizes
    else:
        reference = np.full(len(species), values.mean())
        residual = values - values.mean()
    scale = float(np.std(residual)) if len(residual) > 1 else 1.0
    features = []
    with torch.no_grad():
        for start in range(0, len(data), 256):
            batch = padded(data, np.arange(start, min(start + 256, len(data))))
            elements, aev = network.features(torch.from_numpy(batch['numbers']), torch.tensor(batch['positions']))
            features.append(aev[elements >= 0].double())
    features = torch.cat(features)
    shift, spread = features.mean(0), features.std(0) if len(features) > 1 else torch.ones(features.shape[1])
    # Features that never vary (element pairs absent from the data) stay unscaled instead of dividing by zero; features
    # that barely vary in a small training set are floored at a tenth of the median varying feature's spread: divided
    # by ~1e-5, molecules outside a set of 6-9 G2 molecules got gap predictions off by hundreds of eV (floored: < 12).
    varying = spread[spread > 1e-6]
    floor = 0.1 * float(varying.median()) if len(varying) else 1.0
    spread = torch.where(spread > 1e-6, spread, torch.ones_like(spread)).clamp(min=floor)
    dtype = network.reference.dtype
    network.reference.copy_(torch.as_tensor(reference, dtype=dtype))
    network.scale.fill_(max(scale, 1e-3))
    network.feature_shift.copy_(shift.to(dtype))
    network.feature_scale.copy_(spread.to(dtype))
    return reference


def _batch_loss(network, batch, weights, config, use_forces, scale, training: bool) -> torch.Tensor:
    """Per-member loss ``(members,)``: bootstrap-weighted mean of squared errors in normalised units."""
    dtype = network.reference.dtype
    numbers = torch.from_numpy(batch['numbers'])
    positions = torch.tensor(batch['positions'], dtype=dtype, requires_grad=use_forces)
    atoms = torch.from_numpy(batch['mask'].sum(1)).to(dtype)
    members = network(numbers, positions)
    truth = torch.as_tensor(batch['energy' if network.config.target == 'energy' else 'target'], dtype=dtype)
    if network.config.extensive:
        energy_term = ((members - truth) / (scale * atoms.sqrt())) ** 2
    else:
        energy_term = ((members - truth) / scale) ** 2
    weights = torch.as_tensor(weights, dtype=dtype)
    norm = weights.sum(1).clamp(min=1.0)
    loss = config.energy_weight * (weights * energy_term).sum(1) / norm
    if use_forces and 'forces' in batch:
        forces = member_forces(members, positions, create_graph=training)
        mask = torch.from_numpy(batch['mask']).to(dtype).unsqueeze(-1)
        difference = ((forces - torch.as_tensor(batch['forces'], dtype=dtype)) / scale) ** 2 * mask
        per_structure = difference.sum((2, 3)) / (3 * atoms)
        # energy-only frames (no force labels) contribute to the energy term only
        present = torch.from_numpy(batch['forces_present']).to(dtype)
        force_weights = weights * present
        loss = loss + config.force_weight * (force_weights * per_structure).sum(1) / force_weights.sum(1).clamp(min=1.0)
    return loss


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Set torch's intra-op thread count for a block and restore it after.

    Measured on 2 shared cores: a 4-member committee of [32, 16] networks trained 15x slower with 2 threads than with
    1 while other jobs were running, because the threads of tiny matrix products wait for each other.
    """
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_committee(
    data: Structures,
    hyperparameters: dict[str, t.Any] | TrainingConfig | None = None,
    *,
    kind: str = 'potential',
    validation: Structures | None = None,
    log: t.Callable[[str], None] | None = print,
) -> Committee:
    """Train a committee on ``data`` and calibrate its spread on held-out structures.

    :param kind: ``'potential'`` (labels ``energy`` and optionally ``forces``) or ``'property'`` (label ``target``).
    :param validation: structures for early stopping; without them ``validation_fraction`` of ``data`` is held out.
        ``calibration_fraction`` of ``data`` is always held out for calibration (spread scale, conformal quantile);
        with a fraction of 0 the validation set calibrates instead.
    :param log: called with one line per epoch; ``None`` is silent.
    :raises NaNLossError: when the loss stops being finite.
    """
    config = hyperparameters if isinstance(hyperparameters, TrainingConfig) else parse_config(hyperparameters)
    with torch_threads(config.num_threads):
        return _train_committee(data, config, kind, validation, log)


@dataclasses.dataclass
class Splits:
    """The training structures and the held-out ones: validation (early stopping) and calibration (spread, intervals)."""

    train: Structures
    validation: Structures | None
    calibration: Structures | None

    def describe(self) -> str:
        size = lambda part: 0 if part is None else len(part)
        return f'{len(self.train)} training, {size(self.validation)} validation, {size(self.calibration)} calibration'


@dataclasses.dataclass
class FitResult:
    """What the epoch loop did: how many epochs, which was best (its weights are loaded), how long, the losses."""

    epochs_run: int
    best_epoch: int
    seconds: float
    history: list[dict[str, float]]


class Trainable(t.Protocol):
    """What a backend hands the epoch loop: a module whose members train together under bootstrap weights."""

    members: int

    def parameters(self): ...
    def state_dict(self): ...
    def load_state_dict(self, state): ...
    def train(self, mode: bool = True): ...
    def eval(self): ...
    def batch_loss(self, structures: Structures, indices: np.ndarray, weights: np.ndarray, training: bool): ...


def _train_committee(data: Structures, config: TrainingConfig, kind: str, validation: Structures | None, log):
    """The steps of ``train_committee``: check the labels, split, build the backend, fit, calibrate."""
    log = log or (lambda line: None)
    config = resolve_force_weight(data, config.for_kind(kind), kind)
    splits = split(data, config, validation)
    if config.backend == 'mace':
        from .mace import build_trainable
    else:
        build_trainable = build_torchani
    trainable, make_committee, baseline = build_trainable(splits, config, kind)
    rng = np.random.default_rng(config.seed)
    weights = bootstrap_weights(config, len(splits.train), rng)
    log(
        f'training {config.members} {config.backend} members on {splits.describe()} structures '
        f'({f"energies, forces on {splits.train.num_force_frames}" if config.force_weight else "values"})'
    )
    result = fit(trainable, splits, config, weights, rng, log)
    hyper = config.model_dump()
    hyper['units'] = {'energy': 'eV', 'forces': 'eV/Å', 'positions': 'Å'} if kind == 'potential' else {}
    committee = make_committee(hyper)
    return finish(committee, splits, config, kind, result, baseline, log)


def resolve_force_weight(data: Structures, config: TrainingConfig, kind: str) -> TrainingConfig:
    """Check the labels ``kind`` needs; return ``config`` with ``force_weight`` decided (0 when no force loss)."""
    if kind not in ('potential', 'property'):
        raise InvalidInputError(f"kind must be 'potential' or 'property' for a committee, got {kind!r}")
    _labels(data, kind)
    if data.levels is not None and len(set(data.levels)) > 1:
        raise InvalidInputError(
            f'the training structures hold several levels of theory {sorted(set(data.levels))}: a {kind} model '
            'learns one; choose it (target_level) or train a delta model'
        )
    use_forces = kind == 'potential' and (config.force_weight is None or config.force_weight > 0)
    if use_forces and data.num_force_frames == 0:
        if config.force_weight:
            raise InvalidInputError(
                'force_weight > 0 but the dataset has no forces: label with forces or set force_weight 0'
            )
        use_forces = False
    force_weight = (1.0 if config.force_weight is None else config.force_weight) if use_forces else 0.0
    return config.model_copy(update={'force_weight': force_weight})


def split(data: Structures, config: TrainingConfig, validation: Structures | None) -> Splits:
    """Hold out ``calibration_fraction`` (and ``validation_fraction`` unless ``validation`` is given) of ``data``.

    Without a calibration block the validation structures calibrate.
    """
    fractions = [config.calibration_fraction, 0.0 if validation is not None else config.validation_fraction]
    train_index, calibration_index, validation_index = split_indices(len(data), fractions, config.seed)
    train_index, calibration_index, validation_index = keep_every_element(data, train_index, calibration_index,
                                                                          validation_index)
    if validation is None and len(validation_index):
        validation = data.subset(validation_index)
    calibration = data.subset(calibration_index) if len(calibration_index) else validation
    return Splits(data.subset(train_index), validation, calibration)


def bootstrap_weights(config: TrainingConfig, count: int, rng: np.random.Generator) -> np.ndarray:
    """``(members, count)``: how often each member's bootstrap resample drew each training structure (all ones
    without bootstrapping or with one member)."""
    if config.bootstrap and config.members > 1:
        return np.stack([np.bincount(rng.integers(0, count, count), minlength=count) for _ in range(config.members)])
    return np.ones((config.members, count))


def fit(
    trainable: Trainable, splits: Splits, config: TrainingConfig, weights: np.ndarray, rng: np.random.Generator, log
) -> FitResult:
    """Adam with learning-rate reduction on plateau; early stopping on the validation loss; best weights restored."""
    optimizer = torch.optim.Adam(trainable.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, config.patience // 3))
    best = (math.inf, 0, copy.deepcopy(trainable.state_dict()))
    started = time.perf_counter()
    epoch, history = 0, []
    for epoch in range(1, config.epochs + 1):
        train_loss = _train_epoch(trainable, splits.train, weights, optimizer, config, rng, epoch)
        monitored = _monitor_loss(trainable, splits.validation or splits.train)
        if not math.isfinite(monitored):
            raise NaNLossError(f'validation loss became {monitored} at epoch {epoch}; lower learning_rate')
        scheduler.step(monitored)
        improved = monitored < best[0]
        if improved:
            best = (monitored, epoch, copy.deepcopy(trainable.state_dict()))
        history.append({'epoch': epoch, 'train_loss': train_loss, 'validation_loss': monitored})
        log(
            f'epoch {epoch:4d}/{config.epochs}  train_loss {train_loss:.4g}  validation_loss {monitored:.4g}'
            f'  lr {optimizer.param_groups[0]["lr"]:.2g}  {time.perf_counter() - started:.1f} s{"  *" if improved else ""}'
        )
        if epoch - best[1] >= config.patience:
            log(f'early stop: no improvement for {config.patience} epochs, best epoch {best[1]}')
            break
        if config.max_seconds and time.perf_counter() - started > config.max_seconds:
            log(f'stopped after max_seconds={config.max_seconds}, best epoch {best[1]}')
            break
    trainable.load_state_dict(best[2])
    trainable.eval()
    return FitResult(epoch, best[1], time.perf_counter() - started, history)


def _train_epoch(trainable, train: Structures, weights, optimizer, config: TrainingConfig, rng, epoch: int) -> float:
    """One pass over shuffled mini-batches; returns the mean member loss. A non-finite loss raises ``NaNLossError``."""
    trainable.train()
    order = rng.permutation(len(train))
    total, batches = 0.0, 0
    for start in range(0, len(order), config.batch_size):
        chunk = order[start : start + config.batch_size]
        loss = trainable.batch_loss(train, chunk, weights[:, chunk], True).sum()
        if not torch.isfinite(loss):
            raise NaNLossError(
                f'loss became {loss.item()} at epoch {epoch}; lower learning_rate (now {config.learning_rate}) '
                'or check the labels for outliers'
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() / config.members
        batches += 1
    trainable.eval()
    return total / batches


def _monitor_loss(trainable, structures: Structures) -> float:
    """Mean member loss on ``structures`` (unweighted), the early-stopping criterion."""
    total, count = 0.0, 0
    for start in range(0, len(structures), 256):
        chunk = np.arange(start, min(start + 256, len(structures)))
        ones = np.ones((trainable.members, len(chunk)))
        loss = trainable.batch_loss(structures, chunk, ones, False)
        total += float(loss.mean().detach()) * len(chunk)
        count += len(chunk)
    return total / count


def finish(committee, splits: Splits, config: TrainingConfig, kind: str, result: FitResult, baseline, log):
    """Metrics on every split, and the calibration (spread scale, conformal quantile) on the calibration split."""
    metrics: dict[str, t.Any] = {
        'num_train': len(splits.train),
        'num_validation': 0 if splits.validation is None else len(splits.validation),
        'num_calibration': 0 if splits.calibration is None else len(splits.calibration),
        'epochs_run': result.epochs_run,
        'best_epoch': result.best_epoch,
        'training_seconds': result.seconds,
        'train': evaluate(committee, splits.train),
        'baseline_composition': baseline,
    }
    if splits.validation is not None:
        metrics['validation'] = evaluate(committee, splits.validation)
    if splits.calibration is not None:
        prediction = committee.predict(splits.calibration)
        committee.calibration = calibrate(
            prediction.spread, prediction.value - _labels(splits.calibration, kind), config.coverage
        )
        metrics['calibration'] = committee.calibration.as_dict()
    note = committee.calibration.note()
    if note:
        log(note)
    committee.metrics = metrics
    summary = metrics.get('validation', metrics['train'])
    log('final ' + '  '.join(f'{key} {value:.4g}' for key, value in summary.items()))
    return committee


# -- the torchani backend ----------------------------------------------------------------------------------------------


class _AniTrainable:
    """The torchani ``CommitteeNetwork`` as the epoch loop sees it."""

    def __init__(self, network: CommitteeNetwork, config: TrainingConfig) -> None:
        self.network, self.config = network, config
        self.members = network.members
        self.scale = float(network.scale)

    def parameters(self):
        return self.network.parameters()

    def state_dict(self):
        return self.network.state_dict()

    def load_state_dict(self, state) -> None:
        self.network.load_state_dict(state)

    def train(self, mode: bool = True):
        return self.network.train(mode)

    def eval(self):
        return self.network.eval()

    def batch_loss(self, structures: Structures, indices: np.ndarray, weights: np.ndarray, training: bool):
        use_forces = bool(self.config.force_weight)
        return _batch_loss(
            self.network, padded(structures, indices), weights, self.config, use_forces, self.scale, training
        )


def build_torchani(splits: Splits, config: TrainingConfig, kind: str):
    """A torchani committee network with its normalisation fitted on the training split.

    :return: ``(trainable, make_committee(hyperparameters) -> Committee, composition baseline metrics)``.
    """
    validation = splits.validation
    network_config = NetworkConfig(
        species=splits.train.species
        if validation is None
        else sorted(set(splits.train.species) | set(validation.species)),
        aev=config.aev,
        hidden=config.hidden,
        activation=config.activation,
        members=config.members,
        target='energy' if kind == 'potential' else 'property',
        extensive=config.extensive,
        dtype=config.dtype,
    )
    network = CommitteeNetwork(network_config, seed=config.seed)
    _fit_normalisation(network, splits.train, _labels(splits.train, kind), kind, config.extensive)
    baseline = _composition_baseline(network, splits.train, validation, kind)
    return _AniTrainable(network, config), lambda hyper: Committee(network.eval(), hyperparameters=hyper), baseline


def _composition_baseline(network, train: Structures, validation: Structures | None, kind: str) -> dict[str, float]:
    """MAE of predicting from composition alone (the fitted reference energies): what the networks must beat."""
    target = validation if validation is not None else train
    values = _labels(target, kind)
    if network.config.extensive:
        predicted = target.composition(network.config.species) @ network.reference.double().numpy()
    else:
        predicted = np.full(len(target), float(network.reference[0]))
    return {'mae': float(np.abs(predicted - values).mean())}
