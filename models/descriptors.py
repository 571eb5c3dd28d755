"""Per-structure descriptors and the committee signals that active learning selects on (torch; no AiiDA).

- ``aev_descriptors``: torchani atomic environment vectors averaged per element and concatenated, one row per
  structure; distances between rows compare local environments, which is what a potential must cover. The same
  preset as the models' (``compact`` by default), so the diversity seen by selection is the one the model sees.
- ``committee_signals``: one pass of a potential committee giving, per structure, the energy spread, the energy spread
  per atom and the max force spread (DP-GEN's model deviation, ``selection.max_force_spread``).
"""

from __future__ import annotations

import typing as t
import warnings

import numpy as np
import torch

from .data import Structures, padded
from .selection import max_force_spread


def aev_descriptors(
    structures: Structures, *, species: t.Sequence[int] | None = None, preset: str = 'compact', batch_size: int = 256
) -> np.ndarray:
    """(structures, len(species) * AEV length): the mean AEV of each element's atoms (zeros where absent)."""
    from .networks import build_aev_computer

    species = sorted(int(z) for z in (species if species is not None else structures.species))
    unknown = set(structures.species) - set(species)
    if unknown:
        raise ValueError(f'structures contain elements {sorted(unknown)} outside the descriptor species {species}')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        computer = build_aev_computer(preset, len(species)).to(torch.float64)
    lookup = torch.full((119,), -1, dtype=torch.long)
    lookup[torch.tensor(species)] = torch.arange(len(species))
    width = computer.out_dim
    out = np.zeros((len(structures), len(species) * width))
    with torch.inference_mode():
        for start in range(0, len(structures), batch_size):
            index = np.arange(start, min(start + batch_size, len(structures)))
            batch = padded(structures, index)
            elements = lookup[torch.from_numpy(batch['numbers'])]
            aev = computer(elements, torch.tensor(batch['positions'], dtype=torch.float64)).numpy()
            elements = elements.numpy()
            for slot in range(len(species)):
                mask = (elements == slot)[..., None]
                count = mask.sum(1)
                total = (aev * mask).sum(1)
                out[index, slot * width : (slot + 1) * width] = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return out


def committee_signals(committee, structures: Structures, *, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Per structure: ``energy`` (mean, eV), ``energy_spread`` (raw, eV), ``energy_spread_per_atom`` (eV/atom),
    ``max_force_spread`` (eV/Å), and ``forces`` (flat committee-mean forces, eV/Å).

    :param committee: a potential ``Committee``; every member's forces come from one batched backward pass.
    """
    from .training import _member_forces

    if committee.kind != 'potential':
        raise ValueError(f'force spreads need a potential committee, not a {committee.kind} model')
    committee.check_species(structures)
    network = committee.network
    dtype = network.reference.dtype
    members_total = np.zeros((network.members, len(structures)))
    member_forces = np.zeros((network.members, len(structures.numbers), 3))
    for start in range(0, len(structures), batch_size):
        chunk = np.arange(start, min(start + batch_size, len(structures)))
        batch = padded(structures, chunk)
        positions = torch.tensor(batch['positions'], dtype=dtype, requires_grad=True)
        members = network(torch.from_numpy(batch['numbers']), positions)
        forces = _member_forces(members, positions, create_graph=False).detach().numpy()
        members_total[:, chunk] = members.detach().numpy()
        for row, index in enumerate(chunk):
            lo, hi = structures.offsets[index], structures.offsets[index + 1]
            member_forces[:, lo:hi] = forces[:, row, : hi - lo]
    spread = members_total.std(axis=0, ddof=1) if network.members > 1 else np.zeros(len(structures))
    return {
        'energy': members_total.mean(axis=0),
        'energy_spread': spread,
        'energy_spread_per_atom': spread / structures.sizes,
        'max_force_spread': max_force_spread(member_forces, structures.offsets),
        'forces': member_forces.mean(axis=0),
    }
