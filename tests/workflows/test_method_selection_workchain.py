"""``mlqm.method_selection`` on the embedded back end: features jobs, one routing calcfunction per molecule,
decisions found by query, calibration with CCSD(T) diagnostics and retraining."""
from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from method_selection_helpers import synthetic_classifier_node, training_set_of

MethodSelectionWorkChain = WorkflowFactory('mlqm.method_selection')


def molecule(atoms, multiplicity=1, name=None):
    structure = orm.StructureData(cell=[[20.0, 0, 0], [0, 20.0, 0], [0, 0, 20.0]], pbc=(False, False, False))
    for symbol, position in atoms:
        structure.append_atom(symbols=symbol, position=position)
    structure.base.attributes.set('charge', 0)
    structure.base.attributes.set('multiplicity', multiplicity)
    structure.base.attributes.set('name', name)
    return structure


H2_NEAR = [('H', (0, 0, 0)), ('H', (0.74, 0, 0))]
H2_FAR = [('H', (0, 0, 0)), ('H', (2.6, 0, 0))]
WATER = [('O', (0, 0, 0.1173)), ('H', (0, 0.7572, -0.4692)), ('H', (0, -0.7572, -0.4692))]


@pytest.fixture(scope='module')
def classifier(aiida_profile):
    return synthetic_classifier_node().store()


def test_routes_every_molecule_with_queryable_decisions(mlqm_code, classifier):
    structures = {'h2': molecule(H2_NEAR), 'h2_far': molecule(H2_FAR), 'water': molecule(WATER, name='water')}
    results, node = run_get_node(
        MethodSelectionWorkChain,
        structures=structures,
        code=mlqm_code,
        classifier=classifier,
        features_parameters=orm.Dict({'basis': 'sto-3g', 'features': {'excited_states': 1}}),
        routing=orm.Dict({'mr_threshold': 0.5, 'multireference_action': 'flag'}),
        batch_size=orm.Int(2),
    )
    assert node.is_finished_ok, node.exit_message
    jobs = [c for c in node.called if c.process_type == 'aiida.calculations:mlqm.features.batch']
    assert len(jobs) == 2
    decisions = results['decisions']
    assert set(decisions) == set(structures)
    assert decisions['h2_far']['p_mr'] > decisions['h2']['p_mr']
    for key, decision in decisions.items():
        assert decision['route'] in ('multireference', 'single_reference')
        assert decision['mr_threshold'] == 0.5 and decision['reason']
    assert results['summary'].get_dict()['water']['route'] == decisions['water']['route']

    # each decision is made by route_molecule from the classifier and the features job's output for that molecule
    query = orm.QueryBuilder()
    query.append(orm.CalcFunctionNode, filters={'attributes.function_name': 'route_molecule'}, tag='route')
    query.append(orm.Dict, with_outgoing='route', edge_filters={'label': 'features'}, tag='features')
    query.append(orm.CalcJobNode, with_outgoing='features', project=['uuid'])
    query.append(orm.Dict, with_incoming='route', project=['attributes.p_mr', 'uuid'])
    found = {uuid: job for job, p, uuid in query.all()}
    for decision in decisions.values():
        assert found[decision.uuid] in {job.uuid for job in jobs}
        route = decision.creator
        assert route.inputs.classifier.uuid == classifier.uuid


def test_calibration_runs_ccsd_t_for_uncertain_molecules_and_retrains(mlqm_code, classifier):
    training_set = orm.Dict(training_set_of(classifier))
    results, node = run_get_node(
        MethodSelectionWorkChain,
        structures={'h2_far': molecule(H2_FAR), 'water': molecule(WATER)},
        code=mlqm_code,
        classifier=classifier,
        features_parameters=orm.Dict({'basis': 'sto-3g', 'features': {'excited_states': 1}}),
        routing=orm.Dict({'mr_threshold': 0.5}),
        calibration={
            'enabled': orm.Bool(True),
            'training_set': training_set,
            'budget': orm.Int(1),
            'per_round': orm.Int(1),
            'band': orm.List([0.0, 1.0]),  # every molecule counts as uncertain here
            'settings': orm.Dict({'folds': 3, 'bootstrap': 0, 'max_iter': 20}),
        },
    )
    assert node.is_finished_ok, node.exit_message
    diagnostics = results['diagnostics']
    assert len(diagnostics) == 1  # the budget allowed one CCSD(T) run
    (key, label), = diagnostics.items()
    assert label['t1_diagnostic'] is not None and isinstance(label['multireference'], bool)
    retrained = results['classifier']
    assert retrained.uuid != classifier.uuid
    assert len(retrained.creator.outputs.training_set['labels']) == len(training_set['labels']) + 1
    cc_jobs = [c for c in node.called if c.process_type == 'aiida.calculations:mlqm.pyscf.batch']
    assert len(cc_jobs) == 1 and key in cc_jobs[0].inputs.structures


TWISTED_ETHYLENE = [('C', (0, 0, 0)), ('C', (1.40, 0, 0)), ('H', (-0.55, 0.93, 0)), ('H', (-0.55, -0.93, 0)),
                    ('H', (1.95, 0, 0.93)), ('H', (1.95, 0, -0.93))]  # fmt: skip


def test_multireference_molecules_get_casscf_and_a_failed_casscf_has_its_exit_code(mlqm_code, classifier):
    """Stretched H2 converges (CAS(2,2) in a minimal basis needs no orbital step); twisted ethylene, allowed one
    macro iteration, does not: its CASSCF fails, the chain ends with ERROR_CASSCF_FAILED, and the H2 result is kept."""
    results, node = run_get_node(
        MethodSelectionWorkChain,
        structures={'h2_far': molecule(H2_FAR), 'twisted': molecule(TWISTED_ETHYLENE), 'h2': molecule(H2_NEAR)},
        code=mlqm_code,
        classifier=classifier,
        features_parameters=orm.Dict({'basis': 'sto-3g', 'features': {'excited_states': 1}}),
        routing=orm.Dict({'mr_threshold': 0.5, 'run_casscf': True, 'casscf_basis': 'sto-3g',
                          'casscf_options': {'max_cycle': 1, 'conv_tol': 1e-12}}),  # fmt: skip
    )
    decisions = results['decisions']
    assert decisions['h2_far']['route'] == decisions['twisted']['route'] == 'multireference'
    assert decisions['h2']['route'] == 'single_reference'
    assert node.exit_status == node.process_class.exit_codes.ERROR_CASSCF_FAILED.status
    assert 'twisted' in node.exit_message and 'did not converge' in node.exit_message
    casscf = results['casscf']
    assert set(casscf) == {'h2_far'}
    assert casscf['h2_far']['active_space']['orbitals'] == 2 and casscf['h2_far']['casscf_energy_units'] == 'eV'
    assert casscf['h2_far']['casscf_energy'] < casscf['h2_far']['scf_energy']
    job = casscf['h2_far'].creator
    assert job.process_type == 'aiida.calculations:mlqm.casscf.batch' and set(job.inputs.structures) == {'h2_far', 'twisted'}
