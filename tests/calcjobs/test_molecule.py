"""Charge and multiplicity of a StructureData, and the runner's plain-JSON form of it."""

from __future__ import annotations

import pytest
from aiida_mlqm.calcjobs.molecule import get_charge_multiplicity, structure_to_runner_entry
from aiida_mlqm.chemistry.molecule import Rejection

WATER = [('O', (0.0, 0.0, 0.0)), ('H', (0.0, 0.757, 0.587)), ('H', (0.0, -0.757, 0.587))]
OH = [('O', (0.0, 0.0, 0.0)), ('H', (0.0, 0.0, 0.97))]


def test_defaults_follow_electron_parity(make_structure):
    assert get_charge_multiplicity(make_structure(WATER)) == (0, 1)
    assert get_charge_multiplicity(make_structure(OH)) == (0, 2)
    assert get_charge_multiplicity(make_structure(OH, charge=-1)) == (-1, 1)
    assert get_charge_multiplicity(make_structure(WATER, multiplicity=3)) == (0, 3)


def test_runner_entry_and_overrides(make_structure):
    entry = structure_to_runner_entry(make_structure(OH))
    assert entry == {
        'symbols': ['O', 'H'],
        'positions': [[0.0, 0.0, 0.0], [0.0, 0.0, 0.97]],
        'charge': 0,
        'multiplicity': 2,
    }
    # A charge override picks the lowest multiplicity for the new electron count unless the structure has one.
    assert structure_to_runner_entry(make_structure(OH), charge=-1)['multiplicity'] == 1
    assert structure_to_runner_entry(make_structure(OH), charge=1, multiplicity=3)['multiplicity'] == 3


@pytest.mark.parametrize(
    ('atoms', 'attributes', 'charge', 'multiplicity', 'fragment'),
    [
        (WATER, {}, None, 2, 'multiplicity 2 is impossible with 10 electrons'),
        (OH, {}, None, 1, 'multiplicity 1 is impossible with 9 electrons'),
        (OH, {'multiplicity': 1}, None, None, 'an odd electron count needs multiplicity 2, 4'),
        ([('H', (0, 0, 0))], {}, 1, None, 'leaves 0 electrons'),
        (WATER, {}, None, 13, 'multiplicity 13 is impossible'),
    ],
)
def test_impossible_states_fail_clearly(make_structure, atoms, attributes, charge, multiplicity, fragment):
    with pytest.raises(Rejection, match='fix the charge or the multiplicity|lower the charge') as excinfo:
        structure_to_runner_entry(make_structure(atoms, **attributes), charge, multiplicity)
    assert fragment in str(excinfo.value)
