"""The torchani committee passes the backend contract (gradients, invariances, save/load, float32 and float64)."""

from __future__ import annotations

import torch
from aiida_mlqm.models.committee import Committee
from aiida_mlqm.models.networks import CommitteeNetwork, NetworkConfig
from committee_contract import CommitteeContract


class TestTorchani(CommitteeContract):
    def make_committee(self, dtype: str, target: str = 'energy', extensive: bool = True) -> Committee:
        config = NetworkConfig(
            species=[1, 6, 8], aev='compact', hidden=[16, 8], members=3, target=target, extensive=extensive, dtype=dtype
        )
        network = CommitteeNetwork(config, seed=7)
        with torch.no_grad():  # non-trivial normalisation, so that it is exercised by the tests below
            network.reference.copy_(torch.tensor([-13.6, -1029.0, -2040.0]))
            network.scale.fill_(0.7)
            network.feature_shift.normal_(0.0, 0.01, generator=torch.Generator().manual_seed(1))
        return Committee(network)
