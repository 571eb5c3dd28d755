"""Training a committee: reference energies, normalisation, bootstrap members, energy + force loss, early stopping.

All members train at once: one padded batch, one AEV computation, one batched network; each member sees the batch
with its own bootstrap weights (how often its resample drew each structure), which is the same as training it on its
resample. Randomness comes from generators seeded by ``seed`` (never torch's global state), so a run is repeatable.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import typing as t

import numpy as np
import torch

from .committee import Committee
from .config import TrainingConfig, parse_config
from .data import Structures, fit_reference_energies, padded, split_indices
from .errors import InvalidInputError, NaNLossError
from .networks import CommitteeNetwork, NetworkConfig
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


def _member_forces(members: torch.Tensor, positions: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """Forces of every member ``(members, B, N, 3)`` in one batched backward pass through the shared AEV."""
    count = members.shape[0]
    selector = torch.eye(count, dtype=members.dtype).unsqueeze(-1).expand(count, count, members.shape[1])
    (gradient,) = torch.autograd.grad(
        members, positions, grad_outputs=selector, is_grads_batched=True, create_graph=create_graph
    )
    return -gradient


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
        forces = _member_forces(members, positions, create_graph=training)
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


def _train_committee(
    data: Structures, config: TrainingConfig, kind: str, validation: Structures | None, log
) -> Committee:
    log = log or (lambda line: None)
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
    config = config.model_copy(update={'force_weight': force_weight})

    fractions = [config.calibration_fraction, 0.0 if validation is not None else config.validation_fraction]
    train_index, calibration_index, validation_index = split_indices(len(data), fractions, config.seed)
    train = data.subset(train_index)
    validation = (
        validation if validation is not None else (data.subset(validation_index) if len(validation_index) else None)
    )
    calibration = data.subset(calibration_index) if len(calibration_index) else validation

    network_config = NetworkConfig(
        species=data.species if validation is None else sorted(set(data.species) | set(validation.species)),
        aev=config.aev,
        hidden=config.hidden,
        activation=config.activation,
        members=config.members,
        target='energy' if kind == 'potential' else 'property',
        extensive=config.extensive,
        dtype=config.dtype,
    )
    network = CommitteeNetwork(network_config, seed=config.seed)
    train_values = _labels(train, kind)
    _fit_normalisation(network, train, train_values, kind, config.extensive)
    scale = float(network.scale)
    baseline = _composition_baseline(network, train, validation, kind)

    rng = np.random.default_rng(config.seed)
    if config.bootstrap and config.members > 1:
        weights = np.stack(
            [np.bincount(rng.integers(0, len(train), len(train)), minlength=len(train)) for _ in range(config.members)]
        )
    else:
        weights = np.ones((config.members, len(train)))
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, config.patience // 3))
    best = (math.inf, 0, copy.deepcopy(network.state_dict()))
    started = time.perf_counter()
    epoch = 0
    history = []
    log(
        f'training {config.members} members on {len(train)} structures ({f"energies, forces on {train.num_force_frames}" if use_forces else "values"}), '
        f'{0 if validation is None else len(validation)} validation, {0 if calibration is None else len(calibration)} calibration'
    )
    for epoch in range(1, config.epochs + 1):
        network.train()
        order = rng.permutation(len(train))
        total, batches = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            chunk = order[start : start + config.batch_size]
            loss = _batch_loss(network, padded(train, chunk), weights[:, chunk], config, use_forces, scale, True).sum()
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
        network.eval()
        monitored = _monitor_loss(network, validation or train, config, use_forces, scale)
        if not math.isfinite(monitored):
            raise NaNLossError(f'validation loss became {monitored} at epoch {epoch}; lower learning_rate')
        scheduler.step(monitored)
        improved = monitored < best[0]
        if improved:
            best = (monitored, epoch, copy.deepcopy(network.state_dict()))
        history.append({'epoch': epoch, 'train_loss': total / batches, 'validation_loss': monitored})
        log(
            f'epoch {epoch:4d}/{config.epochs}  train_loss {total / batches:.4g}  validation_loss {monitored:.4g}'
            f'  lr {optimizer.param_groups[0]["lr"]:.2g}  {time.perf_counter() - started:.1f} s{"  *" if improved else ""}'
        )
        if epoch - best[1] >= config.patience:
            log(f'early stop: no improvement for {config.patience} epochs, best epoch {best[1]}')
            break
        if config.max_seconds and time.perf_counter() - started > config.max_seconds:
            log(f'stopped after max_seconds={config.max_seconds}, best epoch {best[1]}')
            break
    seconds = time.perf_counter() - started
    network.load_state_dict(best[2])
    network.eval()

    hyper = config.model_dump()
    hyper['units'] = {'energy': 'eV', 'forces': 'eV/Å', 'positions': 'Å'} if kind == 'potential' else {}
    committee = Committee(network, hyperparameters=hyper)
    metrics: dict[str, t.Any] = {
        'num_train': len(train),
        'num_validation': 0 if validation is None else len(validation),
        'num_calibration': 0 if calibration is None else len(calibration),
        'epochs_run': epoch,
        'best_epoch': best[1],
        'training_seconds': seconds,
        'train': evaluate(committee, train),
        'baseline_composition': baseline,
    }
    if validation is not None:
        metrics['validation'] = evaluate(committee, validation)
    if calibration is not None:
        prediction = committee.predict(calibration)
        committee.calibration = calibrate(
            prediction.spread, prediction.value - _labels(calibration, kind), config.coverage
        )
        metrics['calibration'] = committee.calibration.as_dict()
    committee.metrics = metrics
    summary = metrics.get('validation', metrics['train'])
    log('final ' + '  '.join(f'{key} {value:.4g}' for key, value in summary.items()))
    return committee


def _monitor_loss(network, structures: Structures, config, use_forces: bool, scale: float) -> float:
    """Mean member loss on ``structures`` (unweighted), the early-stopping criterion."""
    total, count = 0.0, 0
    for start in range(0, len(structures), 256):
        chunk = np.arange(start, min(start + 256, len(structures)))
        ones = np.ones((network.members, len(chunk)))
        loss = _batch_loss(network, padded(structures, chunk), ones, config, use_forces, scale, False)
        total += float(loss.mean().detach()) * len(chunk)
        count += len(chunk)
    return total / count


def _composition_baseline(network, train: Structures, validation: Structures | None, kind: str) -> dict[str, float]:
    """MAE of predicting from composition alone (the fitted reference energies): what the networks must beat."""
    target = validation if validation is not None else train
    values = _labels(target, kind)
    if network.config.extensive:
        predicted = target.composition(network.config.species) @ network.reference.double().numpy()
    else:
        predicted = np.full(len(target), float(network.reference[0]))
    return {'mae': float(np.abs(predicted - values).mean())}
