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


ALKANE = ['C'] * 166 + ['H'] * 334  # C166H334: 500 atoms, ~4e3 cc-pVDZ functions


def test_cost_ceilings_per_structure_and_per_run():
    from aiida_mlqm.chemistry.level import CostError

    level = LevelOfTheory.from_label('ccsd(t)/cc-pvdz')
    with pytest.raises(CostError) as excinfo:
        level.check_cost({'alkane': ALKANE, 'water': ['O', 'H', 'H']}, max_hours_per_structure=48, max_hours_per_run=1e4)
    message = str(excinfo.value)
    assert "'alkane' (500 atoms) is estimated at 1.35e+08 core-hours at ccsd(t)/cc-pvdz" in message
    assert 'above the ceiling of 48 h per structure' in message and 'raise the ceiling (max_hours_per_structure)' in message
    waters = {f'w{index}': ['O', 'H', 'H'] for index in range(1000)}
    seconds = level.check_cost(waters, max_hours_per_structure=1, max_hours_per_run=1)
    assert 0 < seconds < 3600
    with pytest.raises(CostError, match=r'1000 structures are estimated at .* above the ceiling of 0.01 h per run'):
        level.check_cost(waters, max_hours_per_structure=1, max_hours_per_run=0.01, options=('--max-hours', '--mrh'))


def test_reference_chain_refuses_a_run_above_its_cost_ceiling(aiida_profile, mlqm_code):
    import numpy as np
    from aiida import orm
    from aiida.engine import run
    from aiida_mlqm.workflows.reference import ReferenceWorkChain

    alkane = orm.StructureData(cell=np.eye(3) * 100, pbc=(False, False, False))
    for index, symbol in enumerate(ALKANE):
        alkane.append_atom(symbols=symbol, position=(1.5 * (index % 10), 1.5 * (index // 10 % 10), 1.5 * (index // 100)))
    alkane.base.attributes.set_many({'charge': 0, 'multiplicity': 1})
    parameters = {'method': 'ccsd(t)', 'basis': 'cc-pvdz'}
    before = orm.QueryBuilder().append(orm.Node).count()
    with pytest.raises(ValueError, match='above the ceiling of 48 h per structure.*input max_hours.per_structure'):
        run(ReferenceWorkChain, structures={'alkane': alkane}, parameters=orm.Dict(parameters), code=mlqm_code)
    assert orm.QueryBuilder().append(orm.Node).count() == before
    assert ReferenceWorkChain.get_builder_from_protocol(mlqm_code, {}, overrides={'max_hours': {'per_run': 5.0}})[
        'max_hours'
    ]['per_run'].value == 5.0
