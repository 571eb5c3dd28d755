"""An ASE calculator backed by a committee (or a Δ model): energy, forces and the committee spreads, for ML-MD.

``results`` holds, beside ``energy`` and ``forces``: ``energy_spread`` (calibrated), ``energy_spread_raw``,
``energy_spread_per_atom`` (raw, eV/atom), ``force_spread`` (the maximum over atoms of the members' force deviation,
eV/Å; DP-GEN's model deviation) and ``atom_force_spread`` (per atom).
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .data import Structures


class CommitteeCalculator(Calculator):
    """``atoms.calc = CommitteeCalculator(model)``; ``atoms.calc.results['energy_spread']`` is the calibrated spread.

    :param model: a potential ``Committee`` or a ``DeltaModel`` (anything with ``predict(structures, forces=True)``).
    """

    implemented_properties = [  # noqa: RUF012 - ASE's API
        'energy', 'free_energy', 'forces', 'energy_spread', 'energy_spread_per_atom', 'force_spread',
    ]  # fmt: skip

    def __init__(self, model, **kwargs) -> None:
        if getattr(model, 'kind', None) not in ('potential', 'ml_base_delta'):
            raise ValueError(
                f'an ASE calculator needs a potential or an ml_base_delta model (a delta model needs QM), not a {getattr(model, "kind", type(model).__name__)} model'
            )
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        structures = Structures(
            self.atoms.get_atomic_numbers(), self.atoms.get_positions(), np.array([0, len(self.atoms)])
        )
        prediction = self.model.predict(structures, forces=True)
        energy = float(prediction.value[0])
        self.results = {
            'energy': energy,
            'free_energy': energy,
            'forces': prediction.forces.copy(),
            'energy_spread': float(prediction.calibrated_spread[0]),
            'energy_spread_raw': float(prediction.spread[0]),
            'energy_spread_per_atom': float(prediction.spread_per_atom[0]),
            'force_spread': float(prediction.force_spread[0]),
            'atom_force_spread': prediction.atom_force_spread.copy(),
        }
