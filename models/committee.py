"""``Committee``: a trained committee network with its calibration, batched prediction, and saving/loading.

Potentials (``kind='potential'``) predict energies (eV) and forces (eV/Å, the negative gradient of each member's
energy); property models (``kind='property'``) predict one scalar per molecule. Spreads, calibration and intervals
are those of every backend (``prediction.CommitteeModel``).
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing as t

import numpy as np
import torch

from . import serialization
from .data import Structures, padded
from .networks import CommitteeNetwork, NetworkConfig, member_forces
from .prediction import CommitteeModel, Prediction
from .uncertainty import Calibration

__all__ = ('Committee', 'Prediction')


class Committee(CommitteeModel):
    """A torchani committee and what is needed to use it: normalisation (inside the network), calibration, metadata."""

    backend = 'torchani'

    def __init__(
        self,
        network: CommitteeNetwork,
        *,
        calibration: Calibration | None = None,
        hyperparameters: dict[str, t.Any] | None = None,
        metrics: dict[str, t.Any] | None = None,
    ) -> None:
        super().__init__(calibration=calibration, hyperparameters=hyperparameters, metrics=metrics)
        self.network = network.eval()

    @property
    def config(self) -> NetworkConfig:
        return self.network.config

    @property
    def kind(self) -> str:
        return 'potential' if self.config.target == 'energy' else 'property'

    @property
    def species(self) -> list[int]:
        return list(self.config.species)

    @property
    def dtype(self) -> str:
        return self.config.dtype

    def members_values(
        self, structures: Structures, *, forces: bool = False, batch_size: int = 512
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-member values ``(members, n)`` and, with ``forces``, per-member forces ``(members, total atoms, 3)``.

        Structures are grouped by size before padding, so that a batch pads little; outputs come back in input order.
        The members' forces come from one batched backward pass through the shared AEV.
        """
        self.check_species(structures)
        self.check_forces(forces)
        dtype = self.network.reference.dtype
        count = self.network.members
        values = np.zeros((count, len(structures)))
        force_out = np.zeros((count, len(structures.numbers), 3)) if forces else None
        order = np.argsort(structures.sizes, kind='stable')
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = padded(structures, chunk)
            numbers = torch.from_numpy(batch['numbers'])
            positions = torch.tensor(batch['positions'], dtype=dtype)
            if forces:
                positions.requires_grad_(True)
                members = self.network(numbers, positions)
                chunk_forces = member_forces(members, positions, create_graph=False).detach().numpy()
                for row, index in enumerate(chunk):
                    lo, hi = structures.offsets[index], structures.offsets[index + 1]
                    force_out[:, lo:hi] = chunk_forces[:, row, : hi - lo]
            else:
                with torch.inference_mode():
                    members = self.network(numbers, positions)
            values[:, chunk] = members.detach().numpy()
        return values, force_out

    # -- saving ----------------------------------------------------------------------------------------------------

    def metadata(self) -> dict[str, t.Any]:
        network = self.network
        return {
            'kind': self.kind,
            'backend': self.backend,
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
