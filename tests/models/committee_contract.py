"""Tests every committee backend passes: gradients, invariances, uncertainty outputs, save/load, float32 and float64.

A backend's test module subclasses ``CommitteeContract`` and implements ``make_committee``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from aiida_mlqm.models.data import Structures

# methanol-like: two elements repeated, so that permutations of like atoms are non-trivial
NUMBERS = np.array([6, 8, 1, 1, 1, 1])
POSITIONS = np.array(
    [
        [0.0, 0.0, 0.0],
        [1.43, 0.0, 0.0],
        [-0.36, 1.03, 0.0],
        [-0.36, -0.51, 0.89],
        [-0.36, -0.51, -0.89],
        [1.75, 0.9, 0.1],
    ]
)


def structures_of(*geometries, numbers=NUMBERS) -> Structures:
    return Structures(
        np.tile(numbers, len(geometries)), np.concatenate(geometries), np.arange(len(geometries) + 1) * len(numbers)
    )


def random_rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


class CommitteeContract:
    """Subclasses implement ``make_committee(dtype, target='energy', extensive=True)``: an untrained committee with
    non-trivial normalisation, three members, species H, C, O."""

    def make_committee(self, dtype: str, target: str = 'energy', extensive: bool = True):
        raise NotImplementedError

    @pytest.fixture(params=['float32', 'float64'])
    def dtype(self, request):
        return request.param

    def test_global_dtype_untouched(self, dtype):
        before = torch.get_default_dtype()
        committee = self.make_committee(dtype)
        committee.predict(structures_of(POSITIONS), forces=True)
        assert torch.get_default_dtype() == before
        assert committee.dtype == dtype

    def test_forces_are_negative_numerical_gradient(self, dtype):
        committee = self.make_committee(dtype)
        prediction = committee.predict(structures_of(POSITIONS), forces=True)
        step = 1e-4 if dtype == 'float64' else 1e-2
        displaced = []  # +step and -step along each coordinate, all in one prediction (one call, not 18)
        for atom in range(len(POSITIONS)):
            for axis in range(3):
                plus, minus = POSITIONS.copy(), POSITIONS.copy()
                plus[atom, axis] += step
                minus[atom, axis] -= step
                displaced += [plus, minus]
        energies = committee.predict(structures_of(*displaced)).value.reshape(len(POSITIONS), 3, 2)
        numerical = -(energies[..., 0] - energies[..., 1]) / (2 * step)
        tolerance = 1e-6 if dtype == 'float64' else 5e-2
        assert np.abs(prediction.forces - numerical).max() < tolerance * max(1.0, np.abs(numerical).max())
        assert np.abs(numerical).max() > 1e-3  # the check above is not comparing zeros

    def test_member_forces_and_spreads(self):
        """Each member's forces are the negative gradient of its own energy; the spreads follow from them."""
        committee = self.make_committee('float64')
        structures = structures_of(POSITIONS, POSITIONS + 0.03)
        members, member_forces = committee.members_values(structures, forces=True)
        assert member_forces.shape == (members.shape[0], 12, 3)
        step, atom, axis = 1e-4, 2, 1
        plus, minus = POSITIONS.copy(), POSITIONS.copy()
        plus[atom, axis] += step
        minus[atom, axis] -= step
        shifted, _ = committee.members_values(structures_of(plus, minus))
        numerical = -(shifted[:, 0] - shifted[:, 1]) / (2 * step)
        np.testing.assert_allclose(member_forces[:, atom, axis], numerical, rtol=1e-5, atol=1e-7)
        prediction = committee.predict(structures, forces=True)
        deviation = member_forces - member_forces.mean(0)
        per_atom = np.sqrt((deviation**2).sum(-1).mean(0))
        np.testing.assert_allclose(prediction.atom_force_spread, per_atom)
        np.testing.assert_allclose(prediction.force_spread, [per_atom[:6].max(), per_atom[6:].max()])
        np.testing.assert_allclose(prediction.spread_per_atom, prediction.spread / 6)
        assert prediction.force_spread.min() > 0

    def test_energy_invariances(self, dtype):
        committee = self.make_committee(dtype)
        rotated = (POSITIONS - POSITIONS.mean(0)) @ random_rotation(3).T
        translated = POSITIONS + np.array([3.0, -2.0, 7.5])
        order = np.array([0, 1, 4, 2, 5, 3])  # permutes the hydrogens among themselves
        structures = Structures(
            np.concatenate([NUMBERS, NUMBERS, NUMBERS, NUMBERS[order]]),
            np.concatenate([POSITIONS, rotated, translated, POSITIONS[order]]),
            np.arange(5) * len(NUMBERS),
        )
        prediction = committee.predict(structures)
        tolerance = 1e-9 if dtype == 'float64' else 2e-3
        assert np.ptp(prediction.value) < tolerance * abs(prediction.value[0])
        assert np.abs(prediction.members - prediction.members[:, :1]).max() < tolerance * abs(prediction.value[0])
        assert prediction.spread[0] > 0  # members differ: the committee is not one network three times

    def test_forces_rotate_with_the_molecule(self):
        committee = self.make_committee('float64')
        rotation = random_rotation(5)
        original = committee.predict(structures_of(POSITIONS), forces=True).forces
        rotated = committee.predict(structures_of(POSITIONS @ rotation.T), forces=True).forces
        np.testing.assert_allclose(rotated, original @ rotation.T, atol=1e-8)

    def test_batching_and_padding_do_not_change_results(self):
        committee = self.make_committee('float64')
        water = Structures(np.array([8, 1, 1]), POSITIONS[:3], np.array([0, 3]))
        alone = committee.predict(water, forces=True)
        mixed = Structures(
            np.concatenate([NUMBERS, [8, 1, 1], NUMBERS]),
            np.concatenate([POSITIONS, POSITIONS[:3], POSITIONS]),
            np.array([0, 6, 9, 15]),
        )
        together = committee.predict(mixed, forces=True, batch_size=2)
        np.testing.assert_allclose(together.value[1], alone.value[0], rtol=1e-12)
        np.testing.assert_allclose(together.forces[6:9], alone.forces, atol=1e-10)

    @pytest.mark.parametrize('target,extensive', [('energy', True), ('property', False)])
    def test_save_load_identical_predictions(self, tmp_path, dtype, target, extensive):
        from aiida_mlqm.models.registry import load_model
        from aiida_mlqm.models.serialization import read_metadata

        committee = self.make_committee(dtype, target, extensive)
        structures = structures_of(POSITIONS, POSITIONS + 0.05)
        before = committee.predict(structures, forces=target == 'energy')
        committee.save(tmp_path / 'model')
        assert not list(tmp_path.glob('**/*.pt')) and not list(tmp_path.glob('**/*.pkl'))
        metadata = read_metadata(tmp_path / 'model')
        assert metadata['kind'] == ('potential' if target == 'energy' else 'property')
        assert metadata['species'] == [1, 6, 8] and 'torch' in metadata['library_versions']
        after = load_model(tmp_path / 'model').predict(structures, forces=target == 'energy')
        np.testing.assert_array_equal(after.members, before.members)
        if target == 'energy':
            np.testing.assert_array_equal(after.forces, before.forces)

    def test_unknown_element_is_a_clear_error(self):
        from aiida_mlqm.models.errors import UnsupportedSpeciesError

        committee = self.make_committee('float32')
        with pytest.raises(UnsupportedSpeciesError, match='Cl'):
            committee.predict(Structures(np.array([17, 1]), np.array([[0, 0, 0], [1.3, 0, 0.0]]), np.array([0, 2])))

    def test_intensive_property_does_not_grow_with_size(self):
        committee = self.make_committee('float64', target='property', extensive=False)
        one = committee.predict(structures_of(POSITIONS)).value[0]
        # two far-apart copies: same atomic environments, so the per-atom average is the same
        two = Structures(np.tile(NUMBERS, 2), np.concatenate([POSITIONS, POSITIONS + 50.0]), np.array([0, 12]))
        np.testing.assert_allclose(committee.predict(two).value[0], one, rtol=1e-10)
