"""Method selection without AiiDA: labels from diagnostics, %TAE[(T)], thresholds, grouped evaluation, routing."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from aiida_mlqm.models.method_selection import (
    FEATURE_NAMES,
    ClassifierSettings,
    MultireferenceCriteria,
    RoutingRule,
    ccsd_t_diagnostics,
    mr_probability,
    policy_figures,
    route,
    threshold_for_recall,
    train_mr_classifier,
    training_rows,
)


def test_criteria_use_any_available_diagnostic_and_are_configurable():
    criteria = MultireferenceCriteria()
    assert not criteria.is_multireference({'t1_diagnostic': 0.01, 'd1_diagnostic': 0.03, 'pct_tae_t': 4.0})
    assert criteria.is_multireference({'t1_diagnostic': 0.01, 'd1_diagnostic': 0.06, 'pct_tae_t': None})
    assert criteria.is_multireference({'t1_diagnostic': 0.03, 'd1_diagnostic': None})
    assert criteria.reasons({'pct_tae_t': 12.0}) == ['%TAE[(T)] 12 > 10']
    assert not MultireferenceCriteria(d1=0.1).is_multireference({'d1_diagnostic': 0.06})
    with pytest.raises(ValidationError):
        MultireferenceCriteria(t2=0.1)


def test_pct_tae_t_from_atom_energies():
    # a made-up diatomic: atoms -1.0 and -2.0 Ha with (T) -0.001 each; molecule -3.2 Ha with (T) -0.022
    atoms = {'A': {'total_energy': -1.0, 'ccsd_t_correction': -0.001},
             'B': {'total_energy': -2.0, 'ccsd_t_correction': -0.001}}  # fmt: skip
    result = {'total_energy': -3.2, 'ccsd_correlation_energy': -0.3, 'ccsd_t_correction': -0.022,
              't1_diagnostic': 0.01, 'd1_diagnostic': 0.02}  # fmt: skip
    diagnostics = ccsd_t_diagnostics(result, ['A', 'B'], atoms)
    assert diagnostics['pct_tae_t'] == pytest.approx(100 * 0.020 / 0.2)
    assert diagnostics['ccsd_t_share'] == pytest.approx(0.022 / 0.322)
    # an unbound geometry has no %TAE[(T)]; without atoms neither
    assert ccsd_t_diagnostics({**result, 'total_energy': -2.9}, ['A', 'B'], atoms)['pct_tae_t'] is None
    assert ccsd_t_diagnostics(result, ['A', 'B'], None)['pct_tae_t'] is None


def test_threshold_keeps_the_recall_target_and_policy_counts_cc_runs():
    p = np.array([0.9, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05])
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    assert threshold_for_recall(p, y, 1.0) == 0.4
    assert threshold_for_recall(p, y, 0.6) == 0.8
    figures = policy_figures(p, y, low=0.4, high=0.7)  # 0.6 and 0.4 get a CCSD(T) check
    assert figures['policy_mr_recall'] == 1.0 and figures['cc_runs_saved_ratio'] == 4.0


def synthetic(n_molecules=40, seed=0):
    """Rows whose MR label follows d1_second_order, two geometries per molecule, NaN where open shell."""
    rng = np.random.default_rng(seed)
    rows, labels, groups, families = [], [], [], []
    for molecule in range(n_molecules):
        for geometry in range(2):
            row = {name: rng.normal() for name in FEATURE_NAMES}
            row['d1_second_order'] = rng.uniform(0, 0.1)
            if molecule % 5 == 0:
                row['d1_second_order'] = None
                row['t1_second_order'] = rng.uniform(0, 0.04)
                mr = row['t1_second_order'] > 0.02
            else:
                mr = row['d1_second_order'] > 0.05
            rows.append(row)
            labels.append(int(mr))
            groups.append(f'm{molecule}')
            families.append('odd' if molecule % 3 == 0 else 'even')
    return rows, labels, groups, families


def test_grouped_training_reports_cv_family_and_bootstrap_and_routes():
    rows, labels, groups, families = synthetic()
    settings = ClassifierSettings(folds=3, bootstrap=20, max_iter=20)
    classifier = train_mr_classifier(rows, labels, groups, families=families, held_out_family='odd',
                                     settings=settings, log=None)  # fmt: skip
    cv = classifier.metrics['cross_validation']
    assert cv['roc_auc'] > 0.8 and cv['roc_auc_ci95'][0] <= cv['roc_auc'] <= cv['roc_auc_ci95'][1]
    assert cv['mr_recall'] >= 0.95
    assert classifier.metrics['held_out_family']['family'] == 'odd'
    assert classifier.metrics['confident_threshold'] >= classifier.metrics['operating_threshold']
    p = mr_probability(classifier, [{**rows[0], 'd1_second_order': 0.09}, {**rows[0], 'd1_second_order': 0.001}])
    assert p[0] > p[1]

    decision = route(0.99, {'mp2_no_fractional_count': 4, 'unpaired_electrons': 0}, RoutingRule(), classifier.metrics)
    assert decision['route'] == 'multireference' and decision['active_space'] == {'electrons': 4, 'orbitals': 4}
    decision = route(0.0, {}, RoutingRule(target_accuracy_kcal_mol=1.0), classifier.metrics)
    assert decision['route'] == 'single_reference' and decision['action'] == 'dft+delta'
    decision = route(0.0, {}, RoutingRule(target_accuracy_kcal_mol=0.1), classifier.metrics)
    assert decision['action'] == 'ccsd(t)'  # nothing meets 0.1 kcal/mol: the most accurate level
    assert route(0.3, {}, RoutingRule(mr_threshold=0.2, multireference_action='exclude'), {})['action'] == 'exclude'
    with pytest.raises(ValidationError):
        RoutingRule(multireference_action='ignore')
    with pytest.raises(ValidationError):
        RoutingRule(target_accuracy=1.0)


def test_training_rows_leave_out_a_feature_the_job_did_not_compute_and_name_the_features_job():
    base = {name: 0.1 for name in FEATURE_NAMES}
    records = [
        {'key': f'm{i}|eq', 'molecule': f'm{i}', 'family': 'CHNO', 'symbols': ['H', 'H'], 'features_status': 'ok',
         'features': {**base, 'tdhf_singlet_lowest': None, 'd1_second_order': 0.01 * i},
         'ccsd_t': {'status': 'ok', 't1_diagnostic': 0.005 * i, 'd1_diagnostic': 0.01}}
        for i in range(6)
    ]  # fmt: skip
    parameters = {'basis': '6-31g', 'features': {'tdhf': False}}
    rows = training_rows({'basis': 'cc-pvdz', 'features_basis': '6-31g', 'features_parameters': parameters,
                          'records': records})  # fmt: skip
    assert 'tdhf_singlet_lowest' not in rows['feature_names'] and len(rows['features'][0]) == len(FEATURE_NAMES) - 1
    assert rows['features'][3][rows['feature_names'].index('d1_second_order')] == pytest.approx(0.03)
    assert rows['labels'] == [0, 0, 0, 0, 0, 1] and rows['basis'] == '6-31g'
    assert rows['features_parameters'] == parameters


def test_routing_levels_carry_the_level_types_labels():
    from aiida_mlqm.chemistry.level import LevelOfTheory
    from aiida_mlqm.models.method_selection import DEFAULT_LEVELS

    assert all(LevelOfTheory.canonical(option.level) == option.level for option in DEFAULT_LEVELS)
    option = {'name': 'dft', 'level': 'B3LYP / def2-SVP', 'expected_error_kcal_mol': 3.0, 'relative_cost': 1.0}
    assert RoutingRule(levels=[option]).levels[0].level == 'b3lyp/def2-svp'
    with pytest.raises(ValueError, match="METHOD 'dlpno' is not supported"):
        RoutingRule(levels=[{**option, 'level': 'dlpno/def2-svp'}])
