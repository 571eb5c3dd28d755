"""The features mode of the fixed runner: values checked against PySCF run here, failures isolated, inputs refused."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from aiida_mlqm.calcjobs.features import validate_feature_parameters
from aiida_mlqm.chemistry.level import ParameterError
from aiida_mlqm.calcjobs.runners import features_runner, pyscf_runner

PARAMETERS = {'method': 'features', 'basis': 'cc-pvdz', 'features': {}, 'scf': {}}


def features_of(symbols, positions, multiplicity=1, **options):
    pyscf_runner.apply_numpy2_compatibility()
    entry = {'symbols': symbols, 'positions': positions, 'charge': 0, 'multiplicity': multiplicity}
    result = pyscf_runner.run_structure('m', entry, {**PARAMETERS, 'features': options}, None, False, None)
    assert result['status'] == 'ok', result.get('error')
    return result


def test_stretched_h2_breaks_spin_symmetry_and_equilibrium_does_not():
    from pyscf import gto, mp, scf

    near = features_of(['H', 'H'], [[0, 0, 0], [0.74, 0, 0]])['features']
    far = features_of(['H', 'H'], [[0, 0, 0], [2.5, 0, 0]])['features']
    assert near['stability_rhf_to_uhf'] > 0.1 and near['e_restricted_minus_uhf'] == pytest.approx(0, abs=1e-7)
    assert far['stability_rhf_to_uhf'] < 0 and far['e_restricted_minus_uhf'] > 0.05
    assert far['s2_uhf'] > 0.5 and far['uno_fractional_count'] >= 2 > near['uno_fractional_count']
    assert far['mp2_t2_max'] > 3 * near['mp2_t2_max']
    assert far['cis_triplet_lowest'] < 0 < near['cis_triplet_lowest']
    assert far['nearest_neighbour_ratio_max'] == pytest.approx(2.5 / 0.62)

    mol = gto.M(atom='H 0 0 0; H 2.5 0 0', basis='cc-pvdz', verbose=0)
    rhf = scf.RHF(mol).run(conv_tol=1e-10)
    assert far['e_restricted'] == pytest.approx(rhf.e_tot, abs=1e-7)
    assert far['mp2_correlation_energy'] == pytest.approx(mp.MP2(rhf).kernel()[0], abs=1e-7)


def test_water_features_match_pyscf_and_timings_cover_the_stages():
    from pyscf import cc, gto, scf, tdscf

    positions = [[0, 0, 0], [0.9572, 0, 0], [-0.24, 0.9266, 0]]
    result = features_of(['O', 'H', 'H'], positions)
    features = result['features']
    mol = gto.M(atom=list(zip(['O', 'H', 'H'], positions)), basis='cc-pvdz', verbose=0)
    rhf = scf.RHF(mol).run(conv_tol=1e-10)
    solver = cc.CCSD(rhf, frozen=[0])
    eris = solver.ao2mo()
    _, t1, t2 = solver.init_amps(eris)
    t1_new, _ = solver.update_amps(t1, t2, eris)
    assert features['d1_second_order'] == pytest.approx(solver.get_d1_diagnostic(t1_new), rel=1e-4)
    cis = tdscf.TDA(rhf)
    cis.nstates = 2
    assert features['cis_singlet_lowest'] == pytest.approx(cis.kernel()[0][0], abs=1e-4)
    assert features['count_O'] == 1 and features['count_H'] == 2 and features['heavy_atoms'] == 1
    assert 0 <= features['n_fod'] < 0.1  # a closed-shell molecule with a large gap: almost no fractional density
    assert features['d1_second_order'] < 0.05 and features['stability_rhf_internal'] > 0
    assert {'scf', 'stability', 'uhf', 'fod', 'mp2', 'second_order_singles', 'excitations'} <= set(result['timings'])


def test_open_shell_uses_uhf_and_leaves_closed_shell_features_empty():
    features = features_of(['O', 'H'], [[0, 0, 0], [0.97, 0, 0]], multiplicity=2)['features']
    assert features['unpaired_electrons'] == 1
    assert features['stability_rhf_to_uhf'] is None and features['d1_second_order'] is None
    assert features['s2_excess'] == pytest.approx(0.0, abs=0.02)
    assert features['t1_second_order'] > 0


@pytest.mark.parametrize('options', [{}, {'tdhf': True}])
def test_one_electron_systems_have_features_without_excitations(options):
    # mlqm route on G2's H atom ended in 'cannot reshape array of size 0' from PySCF's UHF TDA (no beta electron)
    features = features_of(['H'], [[0, 0, 0]], multiplicity=2, **options)['features']
    assert features['unpaired_electrons'] == 1 and features['electrons'] == 1
    assert features['cis_singlet_lowest'] is None and features['tdhf_singlet_lowest'] is None


def test_bad_options_are_refused_by_the_plugin_and_the_runner(tmp_path):
    with pytest.raises(ParameterError, match='fod_xcc'):
        validate_feature_parameters({'features': {'fod_xcc': 'pbe'}})
    with pytest.raises(ParameterError, match='fod_xc'):
        validate_feature_parameters({'features': {'fod_xc': '__import__("os")'}})
    with pytest.raises(ParameterError, match='not in PySCF'):
        validate_feature_parameters({'basis': 'no-such-basis'})
    with pytest.raises(ValueError, match='excited_states'):
        features_runner.check_options({'excited_states': 1000})
    # the runner refuses a features block outside the features method, and unknown option keys
    (tmp_path / 'input.json').write_text(json.dumps({
        'parameters': {'method': 'hf', 'basis': 'sto-3g', 'features': {}},
        'structures': {'m': {'symbols': ['H', 'H'], 'positions': [[0, 0, 0], [0.74, 0, 0]], 'charge': 0,
                             'multiplicity': 1}},
    }))  # fmt: skip
    runner = pyscf_runner.__file__
    done = subprocess.run([sys.executable, runner], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert 'only allowed with method features' in json.loads((tmp_path / 'results.json').read_text())['error']['message']


def test_failure_of_one_structure_is_recorded_not_raised():
    pyscf_runner.apply_numpy2_compatibility()
    entry = {'symbols': ['H', 'H'], 'positions': [[0, 0, 0], [0.74, 0, 0]], 'charge': 0, 'multiplicity': 1}
    result = pyscf_runner.run_structure('m', entry, {**PARAMETERS, 'features': {'excited_states': 0}}, None, False, None)
    assert result['status'] == 'error' and 'excited_states' in result['error']['message']
    assert np.isfinite(result['timings']['total'])


def test_density_fitting_keeps_the_features_and_tdhf_is_optional():
    positions = [[0, 0, 0], [0.9572, 0, 0], [-0.24, 0.9266, 0]]
    exact = features_of(['O', 'H', 'H'], positions, tdhf=True)['features']
    fitted = features_of(['O', 'H', 'H'], positions, density_fit=True)['features']
    # density fitting moves total energies by ~1e-5 Hartree; the features the classifier reads move far less than
    # the spread between molecules
    assert fitted['e_restricted'] == pytest.approx(exact['e_restricted'], abs=1e-4)
    for name in ('mp2_t2_max', 'd1_second_order', 'cis_triplet_lowest', 'stability_rhf_to_uhf', 'n_fod'):
        assert fitted[name] == pytest.approx(exact[name], rel=2e-3, abs=1e-4), name
    assert fitted['tdhf_singlet_lowest'] is None and exact['tdhf_singlet_lowest'] > 0
    with pytest.raises(ValueError, match='density_fit'):
        features_runner.check_options({'density_fit': 'yes'})
    with pytest.raises(ParameterError, match='tdhf'):
        validate_feature_parameters({'features': {'tdhf': 1}})


def casscf_of(symbols, positions, multiplicity=1, **options):
    pyscf_runner.apply_numpy2_compatibility()
    entry = {'symbols': symbols, 'positions': positions, 'charge': 0, 'multiplicity': multiplicity}
    parameters = {'method': 'casscf', 'basis': 'sto-3g', 'casscf': options, 'scf': {}}
    return pyscf_runner.run_structure('m', entry, parameters, None, False, None)


def test_casscf_takes_the_fractionally_occupied_uhf_natural_orbitals_as_its_active_space():
    from pyscf import fci, gto, scf

    far = casscf_of(['H', 'H'], [[0, 0, 0], [2.5, 0, 0]])
    assert far['status'] == 'ok', far.get('error')
    assert far['active_space']['electrons'] == 2 and far['active_space']['orbitals'] == 2
    assert 0.3 < far['active_space']['uno_occupations'][1] < 1.0  # broken-symmetry UHF: both orbitals fractional
    mol = gto.M(atom='H 0 0 0; H 2.5 0 0', basis='sto-3g', verbose=0)
    exact = fci.FCI(scf.RHF(mol).run()).kernel()[0]  # CAS(2,2) in a minimal basis is the full CI
    assert far['casscf_energy'] == pytest.approx(exact, abs=1e-6)
    assert 0.4 < far['leading_configuration_weight'] < 0.7 and far['casscf_converged']
    # twisted ethylene: the pi/pi* pair of a diradical, CAS(2,2) with both natural occupations near 1
    twisted = casscf_of(['C', 'C', 'H', 'H', 'H', 'H'], [[0, 0, 0], [1.40, 0, 0], [-0.55, 0.93, 0], [-0.55, -0.93, 0],
                                                         [1.95, 0, 0.93], [1.95, 0, -0.93]])  # fmt: skip
    assert twisted['status'] == 'ok' and twisted['active_space']['orbitals'] == 2
    assert twisted['active_occupations'] == pytest.approx([1.0, 1.0], abs=0.05)
    assert twisted['casscf_energy'] < twisted['scf_energy'] - 0.1


def test_casscf_failure_and_bad_options_are_named():
    stuck = casscf_of(['C', 'C', 'H', 'H', 'H', 'H'], [[0, 0, 0], [1.40, 0, 0], [-0.55, 0.93, 0], [-0.55, -0.93, 0],
                                                       [1.95, 0, 0.93], [1.95, 0, -0.93]], max_cycle=1, conv_tol=1e-12)  # fmt: skip
    assert stuck['status'] == 'error' and 'did not converge in 1 macro iterations' in stuck['error']['message']
    with pytest.raises(ValueError, match='window_lo'):
        features_runner.check_casscf_options({'window_lo': 0.1})
    with pytest.raises(ValueError, match='min_orbitals'):
        features_runner.check_casscf_options({'min_orbitals': 8, 'max_orbitals': 4})
    from aiida_mlqm.calcjobs.features import validate_casscf_parameters

    with pytest.raises(ParameterError, match='max_cycle'):
        validate_casscf_parameters({'casscf': {'max_cycle': 0}})
