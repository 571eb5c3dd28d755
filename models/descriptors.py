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

    :param committee: a potential committee of any backend (``prediction.CommitteeModel``); its prediction carries
        the per-member force spreads (``selection.max_force_spread`` is the same definition).
    """
    if committee.kind != 'potential':
        raise ValueError(f'force spreads need a potential committee, not a {committee.kind} model')
    prediction = committee.predict(structures, forces=True, batch_size=batch_size)
    return {
        'energy': prediction.value,
        'energy_spread': prediction.spread,
        'energy_spread_per_atom': prediction.spread_per_atom,
        'max_force_spread': prediction.force_spread,
        'forces': prediction.forces,
    }
