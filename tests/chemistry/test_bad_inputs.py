"""Bad inputs a careless user makes: each gets a message naming the problem and the fix, never a silent change."""

from __future__ import annotations

import pytest
from aiida_mlqm.chemistry import readers
from aiida_mlqm.chemistry.basis import coverage_message, missing_elements
from aiida_mlqm.chemistry.entries import prepare_geometry, prepare_smiles
from aiida_mlqm.chemistry.level import LevelOfTheory, ParameterError
from aiida_mlqm.chemistry.molecule import Rejection

WATER = [[0.0, 0.0, 0.0], [0.0, 0.757, 0.587], [0.0, -0.757, 0.587]]


@pytest.mark.parametrize(
    ('comment', 'fragment'), [('charge=1.9', 'charge 1.9'), ('multiplicity=abc', "multiplicity 'abc'")]
)
def test_non_integer_charge_or_multiplicity_in_xyz_is_a_per_line_error(tmp_path, comment, fragment):
    path = tmp_path / 'bad.extxyz'
    path.write_text(f'3\n{comment}\nO 0 0 0\nH 0 0.757 0.587\nH 0 -0.757 0.587\n')
    with pytest.raises(readers.LibraryError) as excinfo:
        readers.read_extxyz(path)
    assert (
        fragment in str(excinfo.value) and 'bad.extxyz' in str(excinfo.value) and 'not an integer' in str(excinfo.value)
    )


def test_csv_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / 'sheet.csv'
    path.write_bytes('smiles,id\nCCO,ethanol\n'.encode('utf-8-sig'))
    assert [record['id'] for record in readers.read_smiles_file(path)] == ['ethanol']


def test_isotopes_are_refused_not_dropped():
    with pytest.raises(Rejection, match=r'isotope labels \[2H\]') as excinfo:
        prepare_smiles({'id': 'heavy_water', 'smiles': '[2H]O[2H]'}, basis='def2-svp', allow_fragments=False)
    assert excinfo.value.kind == 'invalid_smiles'


def test_a_structure_without_electrons_is_refused_at_build():
    record = {'id': 'naked', 'symbols': ['O', 'H', 'H'], 'positions': WATER, 'charge': 10, 'multiplicity': None}
    with pytest.raises(Rejection, match='leaves 0 electrons') as excinfo:
        prepare_geometry(record, basis='def2-svp', allow_fragments=False, min_distance=0.5)
    assert excinfo.value.kind == 'impossible_multiplicity'


@pytest.mark.parametrize('element', ['I', 'U', 'Rn'])
def test_a_rejection_hint_names_a_basis_that_covers_the_element(element):
    message = coverage_message('6-31g', [element])
    if 'e.g. ' in message:
        suggested = message.split('e.g. ')[1].rstrip(')')
        assert not missing_elements(suggested, [element]), message
        assert suggested != '6-31g'
    else:
        assert 'none of' in message


@pytest.mark.parametrize(
    'parameters',
    [
        {'method': 'dft', 'xc': 'b3lyp\n', 'basis': 'sto-3g'},
        {'method': 'hf', 'basis': 'sto-3g\n'},
    ],
)
def test_names_match_whole_strings(parameters):
    with pytest.raises(ParameterError):
        LevelOfTheory.parse(parameters)


def test_structure_keys_match_whole_strings():
    from aiida_mlqm.calcjobs.batch import is_structure_key

    assert is_structure_key('water_2') and not is_structure_key('water\n') and not is_structure_key('x' * 81)


def test_reference_validator_catches_long_keys_and_string_charges(aiida_profile, make_structure):
    from aiida import orm
    from aiida_mlqm.workflows.reference import validate_inputs

    parameters = orm.Dict({'method': 'hf', 'basis': 'sto-3g'})
    message = validate_inputs({'structures': {'w' * 10_000: make_structure('H2O')}, 'parameters': parameters}, None)
    assert message and 'not identifiers' in message
    wrong = make_structure('H2O', charge='1')
    message = validate_inputs({'structures': {'water': wrong}, 'parameters': parameters}, None)
    assert message and "the `charge` attribute is '1'" in message
