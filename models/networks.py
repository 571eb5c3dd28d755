"""The committee network: torchani's AEV featurizer, computed once, feeding all members as one batched network.

Every member has one small network per element (the ANI architecture). Instead of looping over members, the weights
of layer ``l`` for element ``s`` are stacked as a ``(members, in, out)`` tensor, so a single batched matrix product
evaluates all members on the shared atomic environment vectors (torchani's ``BmmEnsemble`` does the same for
inference only; this version also trains, and keeps per-member outputs for the committee spread).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing as t
import warnings

import torch

from .config import ACTIVATION_NAMES, AEV_PRESET_NAMES

with warnings.catch_warnings():
    # torchani warns at import that its CUDA extensions are missing; they are optional and irrelevant on CPU
    warnings.simplefilter('ignore')
    from torchani.aev import AEVComputer

DTYPES = {'float32': torch.float32, 'float64': torch.float64}
ACTIVATIONS = {
    'celu': lambda x: torch.nn.functional.celu(x, alpha=0.1),  # ANI's "TightCELU"
    'gelu': torch.nn.functional.gelu,
    'silu': torch.nn.functional.silu,
    'tanh': torch.tanh,
}
# Presets of torchani's AEV constructors; 'compact' halves the radial shifts and angular sections of ANI-1x, a
# quarter of its feature length, for small molecules and fast screening.
AEV_PRESETS: dict[str, dict[str, t.Any]] = {
    'ani1x': {'constructor': 'like_1x'},
    'ani2x': {'constructor': 'like_2x'},
    'compact': {
        'constructor': 'like_1x',
        'radial_num_shifts': 8,
        'radial_eta': 8.0,
        'angular_num_shifts': 2,
        'angular_num_sections': 4,
        'angular_eta': 4.0,
        'angular_zeta': 16.0,
    },
}


assert set(AEV_PRESETS) == set(AEV_PRESET_NAMES) and set(ACTIVATIONS) == set(ACTIVATION_NAMES), (
    'update models/config.py'
)


@dataclasses.dataclass
class NetworkConfig:
    """Everything that fixes the shapes of a committee network (stored in the model's metadata).

    :param species: atomic numbers the model accepts, sorted.
    :param aev: an ``AEV_PRESETS`` name; cutoffs and shifts come from torchani's constructors.
    :param hidden: hidden layer widths of each element's network, e.g. ``[160, 128, 96]`` for ANI-1x size.
    :param target: ``'energy'`` (a potential: forces are the negative gradient) or ``'property'``.
    :param extensive: sum atomic contributions (energies, atomization energies) or average them (gaps, ...).
    """

    species: list[int]
    aev: str = 'compact'
    hidden: list[int] = dataclasses.field(default_factory=lambda: [64, 32])
    activation: str = 'celu'
    members: int = 4
    target: str = 'energy'
    extensive: bool = True
    dtype: str = 'float32'

    def __post_init__(self) -> None:
        self.species = sorted(int(z) for z in self.species)
        if not self.species or len(set(self.species)) != len(self.species):
            raise ValueError(f'species must be distinct atomic numbers, got {self.species}')
        if self.aev not in AEV_PRESETS:
            raise ValueError(f'unknown aev preset {self.aev!r}; choose one of {sorted(AEV_PRESETS)}')
        if self.activation not in ACTIVATIONS:
            raise ValueError(f'unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}')
        if self.dtype not in DTYPES:
            raise ValueError(f'dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}')
        if self.members < 1 or any(int(w) < 1 for w in self.hidden):
            raise ValueError('members and hidden layer widths must be positive integers')
        if self.target not in {'energy', 'property'}:
            raise ValueError(f"target must be 'energy' or 'property', got {self.target!r}")
        self.hidden = [int(w) for w in self.hidden]

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def build_aev_computer(preset: str, num_species: int) -> AEVComputer:
    options = dict(AEV_PRESETS[preset])
    constructor = getattr(AEVComputer, options.pop('constructor'))
    return constructor(num_species=num_species, **options)


class CommitteeNetwork(torch.nn.Module):
    """All members of a committee as one module: ``forward(numbers, positions) -> (members, batch)`` values.

    Buffers hold the normalisation fitted on the training data, so that a saved ``state_dict`` is the whole model:
    ``reference`` (per-element shift, from a linear fit on composition), ``scale`` (of the residual per atom), and
    ``feature_shift`` / ``feature_scale`` (standardisation of the AEV features).
    """

    def __init__(self, config: NetworkConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        dtype = config.torch_dtype
        num_species = len(config.species)
        self.aev = build_aev_computer(config.aev, num_species).to(dtype)
        lookup = torch.full((119,), -1, dtype=torch.long)
        lookup[torch.tensor(config.species)] = torch.arange(num_species)
        self.register_buffer('species_index', lookup)
        width = self.aev.out_dim
        self.register_buffer('reference', torch.zeros(num_species, dtype=dtype))
        self.register_buffer('scale', torch.ones((), dtype=dtype))
        self.register_buffer('feature_shift', torch.zeros(width, dtype=dtype))
        self.register_buffer('feature_scale', torch.ones(width, dtype=dtype))

        dims = [width, *config.hidden, 1]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(dims):
            self.weights.append(
                torch.nn.Parameter(torch.empty(num_species, config.members, fan_in, fan_out, dtype=dtype))
            )
            self.biases.append(torch.nn.Parameter(torch.zeros(num_species, config.members, 1, fan_out, dtype=dtype)))
        self.reset_parameters(seed)
        self._activation = ACTIVATIONS[config.activation]

    def reset_parameters(self, seed: int) -> None:
        """Draw every member's weights from its own generator (seed + member), so a member does not change when the
        committee grows, and a run is reproducible without touching torch's global random state."""
        with torch.no_grad():
            for member in range(self.config.members):
                generator = torch.Generator().manual_seed(int(seed) * 1009 + member)
                for weight, bias in zip(self.weights, self.biases):
                    fan_in = weight.shape[2]
                    sample = torch.randn(weight[:, member].shape, generator=generator, dtype=torch.float64)
                    weight[:, member] = (sample / math.sqrt(fan_in)).to(weight.dtype)
                    bias[:, member] = 0.0

    @property
    def members(self) -> int:
        return self.config.members

    def element_indices(self, numbers: torch.Tensor) -> torch.Tensor:
        """Atomic numbers (0 = padding) -> element indices (-1 = padding), torchani's convention."""
        return self.species_index[numbers]

    def features(self, numbers: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """AEVs of a padded batch, standardised: returns ``(element indices (B, N), features (B, N, D))``."""
        elements = self.element_indices(numbers)
        aev = self.aev(elements, positions.to(self.reference.dtype))
        return elements, (aev - self.feature_shift) / self.feature_scale

    def atomic(self, elements: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Per-member atomic contributions ``(members, B, N)`` in target units; padding atoms give 0."""
        flat_elements = elements.reshape(-1)
        flat = features.reshape(-1, features.shape[-1])
        out = flat.new_zeros((self.members, flat.shape[0]))
        for index in range(len(self.config.species)):
            atoms = (flat_elements == index).nonzero().view(-1)
            if atoms.numel() == 0:
                continue
            inputs = flat.index_select(0, atoms)  # (K, D), shared by all members
            first, first_bias = self.weights[0][index], self.biases[0][index]  # (M, D, H), (M, 1, H)
            members, width, size = first.shape
            # The first layer is the largest (D = AEV length); as one (K, D) x (D, M * H) product it runs as a single
            # large GEMM instead of M small ones over a copied input (measured: the committee's main cost).
            hidden = (
                (inputs @ first.permute(1, 0, 2).reshape(width, members * size)).view(-1, members, size).transpose(0, 1)
            )
            hidden = hidden + first_bias
            last = len(self.weights) - 1
            if last > 0:
                hidden = self._activation(hidden)
            for layer in range(1, last + 1):
                hidden = torch.baddbmm(self.biases[layer][index], hidden, self.weights[layer][index])  # (M, K, out)
                if layer < last:
                    hidden = self._activation(hidden)
            values = hidden.squeeze(-1) * self.scale + self.reference[index]
            out[:, atoms] = values
        return out.view(self.members, *elements.shape)

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Per-member values ``(members, B)``: energies in eV for potentials, the property for property models."""
        elements, features = self.features(numbers, positions)
        atomic = self.atomic(elements, features)
        total = atomic.sum(-1)
        if not self.config.extensive:
            total = total / (elements >= 0).sum(-1).to(total.dtype)
        return total


def member_forces(members: torch.Tensor, positions: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """Forces of every member ``(members, B, N, 3)`` from its values ``(members, B)`` in one batched backward pass.

    ``create_graph`` keeps the graph for a force loss during training.
    """
    count = members.shape[0]
    selector = torch.eye(count, dtype=members.dtype).unsqueeze(-1).expand(count, count, members.shape[1])
    (gradient,) = torch.autograd.grad(
        members, positions, grad_outputs=selector, is_grads_batched=True, create_graph=create_graph
    )
    return -gradient
