"""What every committee backend predicts, and the part of prediction they share (spreads, calibration, species check).

A backend (``committee.Committee`` for torchani, ``mace.MaceCommittee`` for MACE) only says how its members evaluate
a batch (``members_values``); the committee mean, the spreads that track the error and the calibrated intervals are
computed here, identically for all backends.

Uncertainty signals (all in the labels' units, eV and eV/Å):

- ``spread``: standard deviation of the members' energies per structure; ``spread_per_atom`` the same divided by the
  number of atoms, comparable across molecule sizes;
- ``atom_force_spread``: per atom, ``sqrt(mean over members of |F_m - mean F|^2)``, and ``force_spread`` its maximum
  over the atoms of each structure: DP-GEN's model deviation (Zhang et al., Comput. Phys. Commun. 253, 107206, 2020).
  The force spread tracks the force error far better than the energy spread tracks the energy error (measured in
  ``python -m benchmarks uncertainty``), and it is the signal to select new structures with.
"""

from __future__ import annotations

import dataclasses
import typing as t

import numpy as np

from .data import Structures
from .errors import UnsupportedSpeciesError
from .uncertainty import Calibration


@dataclasses.dataclass
class Prediction:
    """Predictions for ``n`` structures; arrays are numpy, units those of the training labels (eV, eV/Å).

    :param value: committee mean per structure (energy or property).
    :param spread: raw committee standard deviation per structure.
    :param calibrated_spread: ``spread`` times the calibration scale: an estimate of the error's standard deviation.
    :param interval: conformal half-width at ``coverage``, or ``None`` when the model has no calibration set
        (``interval_note`` then says so).
    :param members: per-member values, shape (members, n).
    :param forces: flat (total atoms, 3) forces of the committee mean, for potentials when asked.
    :param coverage: the coverage the intervals guarantee (the requested one, or less when the calibration set was too
        small for it; ``interval_note`` explains).
    :param spread_per_atom: ``spread`` divided by the number of atoms of each structure.
    :param atom_force_spread: per atom (total atoms,), the root mean square deviation of the members' forces from
        their mean, when forces were asked.
    :param force_spread: per structure, the maximum of ``atom_force_spread`` over its atoms (the model deviation).
    :param interval_note: ``None`` when the intervals hold at the requested coverage, else why not.
    """

    value: np.ndarray
    spread: np.ndarray
    calibrated_spread: np.ndarray
    interval: np.ndarray | None
    members: np.ndarray
    forces: np.ndarray | None = None
    coverage: float | None = None
    spread_per_atom: np.ndarray | None = None
    atom_force_spread: np.ndarray | None = None
    force_spread: np.ndarray | None = None
    interval_note: str | None = None


def force_spreads(member_forces: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom force spread (total atoms,) and its maximum per structure (n,) from ``(members, total atoms, 3)``."""
    member_forces = np.asarray(member_forces, dtype=float)
    if member_forces.shape[0] > 1:
        deviation = member_forces - member_forces.mean(axis=0, keepdims=True)
        per_atom = np.sqrt((deviation**2).sum(-1).mean(0))
    else:
        per_atom = np.zeros(member_forces.shape[1])
    return per_atom, np.maximum.reduceat(per_atom, np.asarray(offsets)[:-1]) if len(per_atom) else np.zeros(0)


def structure_max(per_atom: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Maximum of a per-atom array over each structure's atoms."""
    return np.maximum.reduceat(np.asarray(per_atom), np.asarray(offsets)[:-1])


class CommitteeModel:
    """Behaviour shared by committees of every backend: prediction with spreads and calibration, species check.

    Subclasses set ``backend`` and implement ``members_values``, ``species``, ``kind``, ``metadata``, ``save`` and
    ``load``.
    """

    backend: str = ''

    def __init__(
        self,
        *,
        calibration: Calibration | None = None,
        hyperparameters: dict[str, t.Any] | None = None,
        metrics: dict[str, t.Any] | None = None,
    ) -> None:
        self.calibration = calibration or Calibration()
        self.hyperparameters = dict(hyperparameters or {})
        self.metrics = dict(metrics or {})

    @property
    def species(self) -> list[int]:
        raise NotImplementedError

    @property
    def kind(self) -> str:
        raise NotImplementedError

    def members_values(
        self, structures: Structures, *, forces: bool = False, batch_size: int = 512
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-member values ``(members, n)`` and, with ``forces``, per-member forces ``(members, total atoms, 3)``."""
        raise NotImplementedError

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

    def check_forces(self, forces: bool) -> None:
        if forces and self.kind != 'potential':
            raise ValueError('forces are only defined for potentials (target energy), not for property models')

    def predict(self, structures: Structures, *, forces: bool = False, batch_size: int = 512) -> Prediction:
        members, member_forces = self.members_values(structures, forces=forces, batch_size=batch_size)
        return assemble(members, member_forces, structures, self.calibration)


def assemble(
    members: np.ndarray, member_forces: np.ndarray | None, structures: Structures, calibration: Calibration
) -> Prediction:
    """A ``Prediction`` from per-member values (and forces): mean, spreads, calibrated spread, conformal interval."""
    spread = members.std(axis=0, ddof=1) if members.shape[0] > 1 else np.zeros(members.shape[1])
    prediction = Prediction(
        value=members.mean(axis=0),
        spread=spread,
        calibrated_spread=calibration.apply(spread),
        interval=calibration.interval_halfwidth(spread),
        members=members,
        coverage=calibration.guaranteed_coverage,
        spread_per_atom=spread / structures.sizes,
        interval_note=calibration.note(),
    )
    if member_forces is not None:
        prediction.forces = member_forces.mean(axis=0)
        prediction.atom_force_spread, prediction.force_spread = force_spreads(member_forces, structures.offsets)
    return prediction
