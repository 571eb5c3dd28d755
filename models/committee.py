"""``Committee``: a trained committee network with its calibration, batched prediction, and saving/loading.

Potentials (``kind='potential'``) predict energies (eV) and forces (eV/Å, the negative gradient of the committee mean
energy); property models (``kind='property'``) predict one scalar per molecule. Both report the committee spread, the
spread after calibration, and the conformal half-width.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing as t

import numpy as np
import torch

from . import serialization
from .data import Structures, padded
from .errors import UnsupportedSpeciesError
from .networks import CommitteeNetwork, NetworkConfig
from .uncertainty import Calibration


@dataclasses.dataclass
class Prediction:
    """Predictions for ``n`` structures; arrays are numpy, units those of the training labels (eV, eV/Å).

    :param value: committee mean per structure (energy or property).
    :param spread: raw committee standard deviation per structure.
    :param calibrated_spread: ``spread`` times the calibration scale: an estimate of the error's standard deviation.
    :param interval: conformal half-width at the model's stated coverage, or ``None`` without held-out data.
    :param members: per-member values, shape (members, n).
    :param forces: flat (total atoms, 3) forces of the committee mean, for potentials when asked.
    """

    value: np.ndarray
    spread: np.ndarray
    calibrated_spread: np.ndarray
    interval: np.ndarray | None
    members: np.ndarray
    forces: np.ndarray | None = None
    coverage: float | None = None


class Committee:
    """A committee of networks and what is needed to use it: normalisation (inside the network), calibration, metadata."""

    def __init__(
        self,
        network: CommitteeNetwork,
        *,
        calibration: Calibration | None = None,
        hyperparameters: dict[str, t.Any] | None = None,
        metrics: dict[str, t.Any] | None = None,
    ) -> None:
        self.network = network.eval()
        self.calibration = calibration or Calibration()
        self.hyperparameters = dict(hyperparameters or {})
        self.metrics = dict(metrics or {})

    @property
    def config(self) -> NetworkConfig:
        return self.network.config

    @property
    def kind(self) -> str:
        return 'potential' if self.config.target == 'energy' else 'property'

    @property
    def species(self) -> list[int]:
        return list(self.config.species)

    def check_species(self, structures: Structures) -> None:
        unknown = sorted(set(structures.species) - set(self.species))
        if unknown:
            from ase.data import chemical_symbols

            names = ', '.join(chemical_symbols[z] for z in unknown)
            known = ', '.join(chemical_symbols[z] for z in self.species)
            raise UnsupportedSpeciesError(
                f'structures contain {names}, which the model was not trained on (it knows {known}); '
                'add labelled structures with these elements to the dataset and retrain'
            )

    def members_values(
        self, structures: Structures, *, forces: bool = False, batch_size: int = 512
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-member values ``(members, n)`` and, with ``forces``, the committee-mean forces (total atoms, 3).

        Structures are grouped by size before padding, so that a batch pads little; outputs come back in input order.
        """
        self.check_species(structures)
        if forces and self.kind != 'potential':
            raise ValueError('forces are only defined for potentials (target energy), not for property models')
        dtype = self.network.reference.dtype
        values = np.zeros((self.network.members, len(structures)))
        force_out = np.zeros((len(structures.numbers), 3)) if forces else None
        order = np.argsort(structures.sizes, kind='stable')
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = padded(structures, chunk)
            numbers = torch.from_numpy(batch['numbers'])
            positions = torch.tensor(batch['positions'], dtype=dtype)
            if forces:
                positions.requires_grad_(True)
                members = self.network(numbers, positions)
                (gradient,) = torch.autograd.grad(members.mean(0).sum(), positions)
                gradient = -gradient.detach().numpy()
                for row, index in enumerate(chunk):
                    lo, hi = structures.offsets[index], structures.offsets[index + 1]
                    force_out[lo:hi] = gradient[row, : hi - lo]
            else:
                with torch.inference_mode():
                    members = self.network(numbers, positions)
            values[:, chunk] = members.detach().numpy()
        return values, force_out

    def predict(self, structures: Structures, *, forces: bool = False, batch_size: int = 512) -> Prediction:
        members, force_out = self.members_values(structures, forces=forces, batch_size=batch_size)
        spread = members.std(axis=0, ddof=1) if members.shape[0] > 1 else np.zeros(members.shape[1])
        return Prediction(
            value=members.mean(axis=0),
            spread=spread,
            calibrated_spread=self.calibration.apply(spread),
            interval=self.calibration.interval_halfwidth(spread),
            members=members,
            forces=force_out,
            coverage=self.calibration.coverage if self.calibration.conformal_quantile is not None else None,
        )

    # -- saving ----------------------------------------------------------------------------------------------------

    def metadata(self) -> dict[str, t.Any]:
        network = self.network
        return {
            'kind': self.kind,
            'backend': 'torchani',
            'architecture': dataclasses.asdict(self.config),
            'hyperparameters': self.hyperparameters,
            'species': self.species,
            'normalisation': {
                'reference_per_element': dict(zip(map(str, self.species), network.reference.tolist())),
                'scale': float(network.scale),
                'units': self.hyperparameters.get('units', {}),
            },
            'calibration': self.calibration.as_dict(),
            'metrics': self.metrics,
        }

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        directory = pathlib.Path(directory)
        serialization.write_metadata(directory, self.metadata())
        # species_index is derived from the species list: stored anyway so load_state_dict is strict
        serialization.save_tensors(directory, self.network.state_dict())
        return directory

    @classmethod
    def load(cls, directory: str | pathlib.Path, *, dtype: str | None = None) -> Committee:
        """Load a saved committee; ``dtype`` converts it (e.g. a float64 copy of a float32 model for MD)."""
        metadata = serialization.read_metadata(directory)
        if metadata['kind'] not in ('potential', 'property'):
            raise ValueError(f'{directory} holds a {metadata["kind"]} model, not a committee')
        config = NetworkConfig(**metadata['architecture'])
        network = CommitteeNetwork(config)
        network.load_state_dict(serialization.load_tensors(directory), strict=True)
        committee = cls(
            network,
            calibration=Calibration.from_dict(metadata.get('calibration')),
            hyperparameters=metadata.get('hyperparameters'),
            metrics=metadata.get('metrics'),
        )
        if dtype is not None and dtype != config.dtype:
            committee = committee.to_dtype(dtype)
        return committee

    def to_dtype(self, dtype: str) -> Committee:
        config = dataclasses.replace(self.config, dtype=dtype)
        network = CommitteeNetwork(config)
        network.load_state_dict(
            {k: v.to(config.torch_dtype) if v.is_floating_point() else v for k, v in self.network.state_dict().items()}
        )
        return Committee(
            network, calibration=self.calibration, hyperparameters=self.hyperparameters, metrics=self.metrics
        )
