"""The MACE backend: committees of small MACE potentials (mace-torch's ``ScaleShiftMACE``), trained from scratch.

Each member is its own MACE model (equivariant message passing, Batatia et al., NeurIPS 2022) with its own initial
weights (``seed + member``) and bootstrap resample; all members train in the same loop as the torchani committee
(``training.fit``) and predict through the same ``prediction.CommitteeModel`` (spreads, calibration, intervals).
Molecules only (no periodic cell): the graph joins every pair of atoms closer than ``r_max``.

Normalisation, fitted on the training split: per-element reference energies (the same linear fit on composition as
torchani's, as MACE's ``E0s``), and the interaction energies scaled by the RMS of the training forces (MACE's
``rms_forces_scaling``), or by the spread of the residual energy per atom without forces.

Saved as ``weights.safetensors`` (the state dict of all members) and ``metadata.json`` (architecture: the MACE options,
species, members, dtype and the average number of neighbours, which MACE keeps outside its state dict): no pickle, and
nothing of mace-torch's own ``torch.save`` model files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import typing as t
import warnings

import numpy as np
import torch

from . import serialization
from .config import MaceOptions, TrainingConfig
from .data import Structures, fit_reference_energies
from .errors import InvalidInputError
from .prediction import CommitteeModel
from .uncertainty import Calibration

DTYPES = {'float32': torch.float32, 'float64': torch.float64}


@dataclasses.dataclass
class MaceNetworkConfig:
    """Everything that fixes the shapes of a MACE committee (stored in the model's metadata).

    :param avg_num_neighbors: mean neighbours per atom of the training data; MACE divides its messages by it.
    """

    species: list[int]
    members: int = 4
    options: dict[str, t.Any] = dataclasses.field(default_factory=dict)
    avg_num_neighbors: float = 1.0
    dtype: str = 'float32'

    def __post_init__(self) -> None:
        self.species = sorted(int(z) for z in self.species)
        if not self.species or len(set(self.species)) != len(self.species):
            raise ValueError(f'species must be distinct atomic numbers, got {self.species}')
        if self.dtype not in DTYPES:
            raise ValueError(f'dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}')
        self.options = MaceOptions(**self.options).model_dump()

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    """mace-torch and e3nn create parameters in torch's default dtype: set it while building, then restore it."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _mace_modules():
    """Import e3nn and mace-torch. e3nn 0.4.4 reads its packaged Wigner constants with ``torch.load``, whose
    weights-only unpickler (torch >= 2.6) refuses the ``slice`` objects in them: only ``slice`` is allowed, for
    that load, instead of turning weights-only loading off."""
    with torch.serialization.safe_globals([slice]), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        from e3nn import o3
        from mace import modules
    return o3, modules


@contextlib.contextmanager
def _plain_e3nn():
    """Build e3nn modules without their TorchScript compilation and einsum path search, and restore e3nn's settings.

    Both only pay off for large models on accelerators; for committees of small models on CPUs they made building a
    member four times slower (measured: 9.5 s instead of 2.5 s per member on a loaded 2-core machine).
    """
    import e3nn

    previous = e3nn.get_optimization_defaults()
    e3nn.set_optimization_defaults(jit_script_fx=False, optimize_einsums=False)
    try:
        yield
    finally:
        e3nn.set_optimization_defaults(**previous)


def _build_member(config: MaceNetworkConfig, seed: int) -> torch.nn.Module:
    o3, modules = _mace_modules()
    options = config.options
    channels = options['num_channels']
    hidden = ' + '.join(f'{channels}x{ell}{"e" if ell % 2 == 0 else "o"}' for ell in range(options['max_L'] + 1))
    with torch.random.fork_rng(devices=[]), _default_dtype(config.torch_dtype), _plain_e3nn():
        torch.manual_seed(seed)  # inside fork_rng: torch's global random state is restored afterwards
        return modules.ScaleShiftMACE(
            r_max=options['r_max'],
            num_bessel=options['num_radial_basis'],
            num_polynomial_cutoff=options['num_cutoff_basis'],
            max_ell=options['max_ell'],
            interaction_cls=modules.interaction_classes['RealAgnosticResidualInteractionBlock'],
            interaction_cls_first=modules.interaction_classes['RealAgnosticResidualInteractionBlock'],
            num_interactions=options['num_interactions'],
            num_elements=len(config.species),
            hidden_irreps=o3.Irreps(hidden),
            MLP_irreps=o3.Irreps('16x0e'),
            atomic_energies=np.zeros(len(config.species)),
            avg_num_neighbors=config.avg_num_neighbors,
            atomic_numbers=config.species,
            correlation=options['correlation'],
            gate=modules.gate_dict['silu'],
            radial_MLP=list(options['radial_mlp']),
            atomic_inter_scale=1.0,
            atomic_inter_shift=0.0,
        )


class MaceCommitteeNetwork(torch.nn.Module):
    """All members: ``forward(graph, forces) -> (energies (members, B), forces (members, atoms, 3) or None)``."""

    def __init__(self, config: MaceNetworkConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.members_list = torch.nn.ModuleList(
            [_build_member(config, int(seed) * 1009 + member) for member in range(config.members)]
        )
        lookup = torch.full((119,), -1, dtype=torch.long)
        lookup[torch.tensor(config.species)] = torch.arange(len(config.species))
        self.register_buffer('species_index', lookup)

    @property
    def members(self) -> int:
        return self.config.members

    def set_normalisation(self, reference: np.ndarray, scale: float) -> None:
        """Per-element reference energies (eV) and the scale of the interaction energy, for every member."""
        with torch.no_grad():
            for member in self.members_list:
                energies = member.atomic_energies_fn.atomic_energies
                energies.copy_(torch.as_tensor(reference, dtype=energies.dtype).view_as(energies))
                member.scale_shift.scale.fill_(scale)
                member.scale_shift.shift.fill_(0.0)

    def reference(self) -> np.ndarray:
        return self.members_list[0].atomic_energies_fn.atomic_energies.detach().double().numpy().reshape(-1)

    def scale(self) -> float:
        return float(self.members_list[0].scale_shift.scale.detach().reshape(-1)[0])

    def graph(self, structures: Structures, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch of frames ``indices`` as the dict mace-torch's models read (no periodic cell)."""
        dtype = self.config.torch_dtype
        r_max = self.config.options['r_max']
        numbers, positions, edges, batch, start = [], [], [], [], 0
        for row, index in enumerate(indices):
            frame_numbers, frame_positions = structures.frame(int(index))
            distances = np.linalg.norm(frame_positions[:, None] - frame_positions[None], axis=-1)
            sender, receiver = np.nonzero((distances < r_max) & ~np.eye(len(frame_numbers), dtype=bool))
            edges.append(np.stack([sender, receiver]) + start)
            numbers.append(frame_numbers)
            positions.append(frame_positions)
            batch.append(np.full(len(frame_numbers), row))
            start += len(frame_numbers)
        elements = self.species_index[torch.from_numpy(np.concatenate(numbers))]
        edge_index = torch.from_numpy(np.concatenate(edges, axis=1)).long()
        sizes = torch.tensor([len(n) for n in numbers])
        return {
            'positions': torch.tensor(np.concatenate(positions), dtype=dtype),
            'node_attrs': torch.nn.functional.one_hot(elements, len(self.config.species)).to(dtype),
            'edge_index': edge_index,
            'shifts': torch.zeros((edge_index.shape[1], 3), dtype=dtype),
            'unit_shifts': torch.zeros((edge_index.shape[1], 3), dtype=dtype),
            'cell': torch.zeros((len(indices) * 3, 3), dtype=dtype),
            'batch': torch.from_numpy(np.concatenate(batch)).long(),
            'ptr': torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)]),
            'head': torch.zeros(len(indices), dtype=torch.long),
        }

    def forward(
        self, graph: dict[str, torch.Tensor], *, forces: bool, training: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        energies, member_forces = [], []
        for member in self.members_list:
            data = dict(graph)
            data['positions'] = graph['positions'].detach().clone()  # one leaf per member: separate gradients
            output = member(data, training=training, compute_force=forces)
            energies.append(output['energy'])
            if forces:
                member_forces.append(output['forces'])
        return torch.stack(energies), torch.stack(member_forces) if forces else None


class MaceCommittee(CommitteeModel):
    """A committee of MACE potentials with its calibration and metadata (``kind`` is always ``'potential'``)."""

    backend = 'mace'

    def __init__(
        self,
        network: MaceCommitteeNetwork,
        *,
        calibration: Calibration | None = None,
        hyperparameters: dict[str, t.Any] | None = None,
        metrics: dict[str, t.Any] | None = None,
    ) -> None:
        super().__init__(calibration=calibration, hyperparameters=hyperparameters, metrics=metrics)
        self.network = network.eval()

    @property
    def config(self) -> MaceNetworkConfig:
        return self.network.config

    @property
    def kind(self) -> str:
        return 'potential'

    @property
    def species(self) -> list[int]:
        return list(self.config.species)

    @property
    def dtype(self) -> str:
        return self.config.dtype

    def members_values(
        self, structures: Structures, *, forces: bool = False, batch_size: int = 512
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-member energies ``(members, n)`` and, with ``forces``, per-member forces ``(members, atoms, 3)``."""
        self.check_species(structures)
        values = np.zeros((self.network.members, len(structures)))
        force_out = np.zeros((self.network.members, len(structures.numbers), 3)) if forces else None
        for start in range(0, len(structures), batch_size):
            chunk = np.arange(start, min(start + batch_size, len(structures)))
            graph = self.network.graph(structures, chunk)
            with contextlib.nullcontext() if forces else torch.no_grad():
                energies, member_forces = self.network(graph, forces=forces)
            values[:, chunk] = energies.detach().double().numpy()
            if forces:
                lo, hi = structures.offsets[chunk[0]], structures.offsets[chunk[-1] + 1]
                force_out[:, lo:hi] = member_forces.detach().double().numpy()
        return values, force_out

    def metadata(self) -> dict[str, t.Any]:
        return {
            'kind': 'potential',
            'backend': self.backend,
            'architecture': dataclasses.asdict(self.config),
            'hyperparameters': self.hyperparameters,
            'species': self.species,
            'normalisation': {
                'reference_per_element': dict(zip(map(str, self.species), self.network.reference().tolist())),
                'scale': self.network.scale(),
                'units': self.hyperparameters.get('units', {}),
            },
            'calibration': self.calibration.as_dict(),
            'metrics': self.metrics,
        }

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        directory = pathlib.Path(directory)
        serialization.write_metadata(directory, self.metadata())
        serialization.save_tensors(directory, self.network.state_dict())
        return directory

    @classmethod
    def load(cls, directory: str | pathlib.Path, *, dtype: str | None = None) -> MaceCommittee:
        """Rebuild the members from the JSON architecture, then load the safetensors state dict (strict)."""
        metadata = serialization.read_metadata(directory)
        if metadata.get('backend') != 'mace':
            raise ValueError(f'{directory} holds a {metadata.get("backend")} model, not a MACE committee')
        config = MaceNetworkConfig(**metadata['architecture'])
        network = MaceCommitteeNetwork(config)
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

    def to_dtype(self, dtype: str) -> MaceCommittee:
        config = dataclasses.replace(self.config, dtype=dtype)
        network = MaceCommitteeNetwork(config)
        network.load_state_dict(
            {k: v.to(config.torch_dtype) if v.is_floating_point() else v for k, v in self.network.state_dict().items()}
        )
        return MaceCommittee(
            network, calibration=self.calibration, hyperparameters=self.hyperparameters, metrics=self.metrics
        )


# -- training ------------------------------------------------------------------------------------------------------


class _MaceTrainable:
    """The MACE committee as the epoch loop (``training.fit``) sees it: per-member bootstrap-weighted loss."""

    def __init__(self, network: MaceCommitteeNetwork, config: TrainingConfig, scale: float) -> None:
        self.network, self.config, self.scale = network, config, scale
        self.members = network.members

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
        """Per-member loss ``(members,)`` in normalised units, the same terms as the torchani backend's."""
        dtype = self.config.dtype
        torch_dtype = DTYPES[dtype]
        use_forces = bool(self.config.force_weight)
        graph = self.network.graph(structures, indices)
        with contextlib.nullcontext() if (training or use_forces) else torch.no_grad():
            energies, member_forces = self.network(graph, forces=use_forces, training=training)
        sizes = torch.as_tensor(structures.sizes[indices], dtype=torch_dtype)
        truth = torch.as_tensor(structures.energy[indices], dtype=torch_dtype)
        weights = torch.as_tensor(weights, dtype=torch_dtype)
        norm = weights.sum(1).clamp(min=1.0)
        energy_term = ((energies - truth) / (self.scale * sizes.sqrt())) ** 2
        loss = self.config.energy_weight * (weights * energy_term).sum(1) / norm
        if use_forces and structures.forces is not None:
            atoms = np.concatenate([np.arange(structures.offsets[i], structures.offsets[i + 1]) for i in indices])
            reference = torch.as_tensor(structures.forces[atoms], dtype=torch_dtype)
            squared = (((member_forces - reference) / self.scale) ** 2).sum(-1)  # (members, atoms)
            per_structure = torch.zeros((self.members, len(indices)), dtype=torch_dtype).index_add(
                1, graph['batch'], squared
            ) / (3 * sizes)
            # energy-only frames (no force labels) contribute to the energy term only
            present = torch.as_tensor(structures.force_rows[indices], dtype=torch_dtype)
            force_weights = weights * present
            loss = loss + self.config.force_weight * (force_weights * per_structure).sum(1) / force_weights.sum(
                1
            ).clamp(min=1.0)
        return loss


def build_trainable(splits, config: TrainingConfig, kind: str):
    """A MACE committee with its normalisation fitted on the training split (see ``training.build_torchani``)."""
    if kind != 'potential':
        raise InvalidInputError(
            f"the MACE backend trains potentials (energies and forces), not {kind} models; use backend 'torchani'"
        )
    train, validation = splits.train, splits.validation
    species = train.species if validation is None else sorted(set(train.species) | set(validation.species))
    reference = fit_reference_energies(train, train.energy, species)
    residual = (train.energy - train.composition(species) @ reference) / train.sizes
    if train.num_force_frames and config.force_weight:
        scale = float(np.sqrt(np.mean(train.forces[np.repeat(train.force_rows, train.sizes)] ** 2)))
    else:
        scale = float(np.std(residual)) if len(residual) > 1 else 1.0
    scale = max(scale, 1e-3)
    network_config = MaceNetworkConfig(
        species=species,
        members=config.members,
        options=config.mace.model_dump(),
        avg_num_neighbors=_average_neighbours(train, config.mace.r_max),
        dtype=config.dtype,
    )
    network = MaceCommitteeNetwork(network_config, seed=config.seed)
    network.set_normalisation(reference, scale)
    target = validation if validation is not None else train
    baseline = {'mae': float(np.abs(target.composition(species) @ reference - target.energy).mean())}
    trainable = _MaceTrainable(network, config, scale)
    return trainable, lambda hyper: MaceCommittee(network.eval(), hyperparameters=hyper), baseline


def _average_neighbours(structures: Structures, r_max: float) -> float:
    counts = []
    for index in range(len(structures)):
        _, positions = structures.frame(index)
        distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
        counts.append(((distances < r_max).sum(1) - 1).mean())
    return float(max(np.mean(counts), 1.0))
