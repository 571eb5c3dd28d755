"""The level of theory: every allow-list rejects what it must, with a message naming the key and the fix."""

from __future__ import annotations

import pytest
from aiida_mlqm.chemistry.level import DEFAULT_CC, DEFAULT_SCF, LevelOfTheory, ParameterError


def validate_parameters(parameters, elements=None) -> dict:
    return LevelOfTheory.parse(parameters, elements).as_parameters()


def check_molecule_compatibility(parameters: dict, multiplicity: int) -> str:
    return LevelOfTheory.parse(parameters).check_molecule(multiplicity)


BASE = {'method': 'hf', 'basis': 'sto-3g'}


def with_(**changes):
    return {**BASE, **changes}


def test_defaults_are_filled_in():
    result = validate_parameters({'method': 'CCSD(T)', 'basis': '6-31G*'}, {'O', 'H'})
    assert result['method'] == 'ccsd(t)'
    assert result['reference'] == 'auto'
    assert result['scf'] == DEFAULT_SCF
    assert result['cc'] == DEFAULT_CC
    assert result['forces'] is False and result['frozen_core'] is False and result['diagnostics'] is True
    assert result['charge'] is None and result['multiplicity'] is None


@pytest.mark.parametrize(
    ('method', 'normalised', 'reference'),
    [
        ('RHF', 'hf', 'restricted'),
        ('uhf', 'hf', 'unrestricted'),
        ('ROHF', 'hf', 'restricted-open'),
        ('uks', 'dft', 'unrestricted'),
        ('mp2', 'mp2', 'auto'),
    ],
)
def test_method_aliases_fix_the_reference(method, normalised, reference):
    parameters = with_(method=method, xc='pbe0') if method in ('uks',) else with_(method=method)
    result = validate_parameters(parameters, {'H'})
    assert (result['method'], result['reference']) == (normalised, reference)


def test_spin_becomes_multiplicity_and_settings_are_kept():
    result = validate_parameters(
        with_(
            spin=2,
            charge=-1,
            scf={'level_shift': 0.2, 'second_order': True, 'init_guess': 'ATOM', 'conv_tol': 1e-10},
            method='ccsd',
            cc={'max_cycle': 200},
            max_memory=2000,
            frozen_core=True,
        ),
        {'O'},
    )
    assert result['multiplicity'] == 3 and result['charge'] == -1
    assert result['scf']['level_shift'] == 0.2 and result['scf']['second_order'] is True
    assert result['scf']['init_guess'] == 'atom' and result['scf']['conv_tol'] == 1e-10
    assert result['cc']['max_cycle'] == 200 and result['max_memory'] == 2000


@pytest.mark.parametrize(
    ('parameters', 'fragments'),
    [
        # Python code in a string value, a path as basis, dunder keys: rejected and named.
        (with_(basis="sto-3g'); import os; os.system('rm -rf ~') #"), ['basis', 'not a basis set name']),
        (with_(basis='/etc/passwd'), ['basis', "'/etc/passwd'", 'not a path']),
        (with_(basis='input.json'), ['basis', 'input.json', "not in PySCF's basis library"]),
        (with_(basis='sto-3g@2s1p'), ['basis', 'sto-3g@2s1p']),
        (with_(method='dft', xc="__import__('os').system('ls')"), ['xc', '__import__']),
        (with_(method='dft', xc='b3lyp; import os'), ['xc', 'b3lyp; import os']),
        (with_(method="__import__('os')"), ['method', '__import__', 'ccsd(t)']),
        (with_(__class__='x'), ["'__class__'", 'valid keys are', 'basis', 'method']),
        (with_(scf={'__init__': 1}), ["'__init__'", '`scf`', 'conv_tol']),
        (with_(cc={'callback': 'print'}), ["'callback'", '`cc`', 'conv_tol_normt']),
        (with_(scf={'init_guess': 'chkfile'}), ['scf.init_guess', 'chkfile', 'checkpoint']),
        (with_(checkpoint='restart.chk'), ["'checkpoint'", 'set by the plugin']),
        (with_(reference="restricted'"), ['reference', 'restricted-open']),
    ],
)
def test_malicious_or_unknown_values_are_rejected_by_name(parameters, fragments):
    with pytest.raises(ParameterError) as excinfo:
        validate_parameters(parameters, {'O', 'H'})
    for fragment in fragments:
        assert fragment in str(excinfo.value)


@pytest.mark.parametrize(
    ('parameters', 'fragments'),
    [
        ({'basis': 'sto-3g'}, ['`method` is required']),
        ({'method': 'hf'}, ['`basis` is required']),
        (with_(method='ccsd(t)-f12'), ['ccsd(t)-f12', 'not supported']),
        (with_(method='dft'), ['`xc` is required']),
        (with_(method='dft', xc='nonsense_functional'), ['nonsense_functional', 'not a functional PySCF knows']),
        (with_(xc='b3lyp'), ['`xc` is only used with method "dft"']),
        (with_(basis='no-such-basis'), ['no-such-basis', "not in PySCF's basis library"]),
        (with_(charge=True), ['`charge` must be an integer', 'boolean']),
        (with_(charge=1.0), ['`charge` must be an integer']),
        (with_(multiplicity=0), ['`multiplicity` must be >= 1']),
        (with_(multiplicity=2, spin=1), ['either `multiplicity` or `spin`']),
        (with_(forces=1), ['`forces` must be true or false']),
        (with_(frozen_core='yes'), ['`frozen_core` must be true or false']),
        (with_(max_memory=10), ['`max_memory` must be >= 100']),
        (with_(scf={'max_cycle': 10.5}), ['`scf.max_cycle` must be an integer']),
        (with_(scf={'conv_tol': float('nan')}), ['`scf.conv_tol` must be a finite number']),
        (with_(scf={'damp': 1.5}), ['`scf.damp` must be in [0, 1)']),
        (with_(scf='tight'), ['`scf` must be a dictionary']),
        (with_(cc={'max_cycle': 10}), ['`cc` settings only apply to methods ccsd and ccsd(t)']),
        (with_(method='rhf', reference='unrestricted'), ['implies reference', 'drop one of them']),
        (with_(method='ccsd(t)', reference='restricted-open'), ['CCSD(T) on a restricted-open', 'unrestricted']),
        (with_(method='mp2', reference='restricted-open'), ['MP2 on a restricted-open']),
        (with_(method='ccsd', reference='restricted-open', forces=True), ['CCSD forces need canonical orbitals']),
        (with_(method='ccsd(t)', forces=True, multiplicity=2), ['UCCSD(T) analytic gradients']),
        (with_(multiplicity=3, reference='restricted'), ['cannot describe multiplicity 3']),
    ],
)
def test_invalid_parameters_name_the_problem_and_the_fix(parameters, fragments):
    with pytest.raises(ParameterError) as excinfo:
        validate_parameters(parameters, {'O', 'H'})
    for fragment in fragments:
        assert fragment in str(excinfo.value)


def test_basis_is_checked_for_every_element():
    validate_parameters(with_(basis='6-31g'), {'C', 'H', 'O'})
    with pytest.raises(ParameterError, match=r"basis '6-31g' has no functions for element I\b"):
        validate_parameters(with_(basis='6-31g'), {'C', 'H', 'I'})


def test_checks_that_depend_on_the_molecule():
    parameters = validate_parameters(with_(method='ccsd(t)', forces=True), {'O', 'H'})
    assert check_molecule_compatibility(parameters, 1) == 'restricted'
    with pytest.raises(ParameterError, match='UCCSD'):
        check_molecule_compatibility(parameters, 2)
    assert check_molecule_compatibility(validate_parameters(with_(method='ccsd')), 2) == 'unrestricted'


def test_the_normalised_form_parses_to_the_same_level():
    level = LevelOfTheory.parse({'method': 'uks', 'xc': 'pbe0', 'basis': 'def2-svp', 'scf': {'damp': 0.2}}, {'O', 'H'})
    assert LevelOfTheory.parse(level.as_parameters()) == level
    assert level.label == 'pbe0/def2-svp'
    assert LevelOfTheory.from_label('CCSD(T)/cc-pVDZ', frozen_core=True).label == 'ccsd(t)-fc/cc-pvdz'


def test_level_from_label_says_method_for_what_is_neither_method_nor_functional():
    assert LevelOfTheory.from_label('b3lyp/def2-svp').xc == 'b3lyp'
    for label, close in (('CCSD[T]/cc-pvdz', 'ccsd(t)'), ('mp3/cc-pvdz', 'mp2')):
        with pytest.raises(ParameterError) as excinfo:
            LevelOfTheory.from_label(label)
        message = str(excinfo.value)
        assert message.startswith('METHOD') and 'not supported' in message and close in message, message
        assert 'functional PySCF knows' in message


def test_cost_estimate_grows_with_method_and_size():
    water = ['O', 'H', 'H']
    hf = LevelOfTheory.parse({'method': 'hf', 'basis': '6-31g*'})
    cc = LevelOfTheory.parse({'method': 'ccsd(t)', 'basis': 'cc-pvdz'})
    from pyscf import gto

    for level in (hf, cc):  # the count is PySCF's own (spherical functions)
        mol = gto.M(atom='O 0 0 0; H 0 0.76 0.59; H 0 -0.76 0.59', basis=level.basis)
        assert level.basis_functions(water) == mol.nao_nr()
    assert hf.estimate_seconds(water) < cc.estimate_seconds(water) < cc.estimate_seconds(water * 4)


def test_every_label_reads_back_to_its_level():
    levels = [
        LevelOfTheory.from_label('CCSD(T) / cc-pVDZ', frozen_core=True),
        LevelOfTheory.from_label('mp2/6-31g*', frozen_core=True),
        LevelOfTheory.from_label('rhf/sto-3g'),
        LevelOfTheory.from_label('B3LYP/def2-SVP'),
    ]
    assert [level.label for level in levels] == ['ccsd(t)-fc/cc-pvdz', 'mp2-fc/6-31g*', 'hf/sto-3g', 'b3lyp/def2-svp']
    for level in levels:  # the label names method, functional, basis and frozen core (not the reference)
        assert LevelOfTheory.from_label(level.label).model_copy(update={'reference': level.reference}) == level
        assert LevelOfTheory.canonical(level.label) == level.label
    with pytest.raises(ParameterError, match="frozen-core suffix '-fc' only applies to mp2, ccsd, ccsd"):
        LevelOfTheory.from_label('hf-fc/sto-3g')
    with pytest.raises(ParameterError, match='must be METHOD/BASIS'):
        LevelOfTheory.canonical('hf/sto-3g/extra')
