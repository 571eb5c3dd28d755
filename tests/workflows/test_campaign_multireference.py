"""Multireference molecules inside a campaign (``method_selection.multireference: casscf``, the default): the
molecules the shipped classifier routes multireference are labelled by CASSCF at ``levels.multireference`` (automatic
active space), kept out of the single-reference training set and the screening, with the reason in the routing record;
a CASSCF that fails is recorded and the campaign goes on."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from aiida_mlqm.chemistry.readers import read_g2

MOLECULES = 'H2O,NH3,CH4,CO,HCN,C2H2,C2H4,C2H6,O3'


def casscf_config() -> dict:
    return {
        'name': 'test-multireference',
        'target': 'property',
        'objective': 'homo_lumo_gap',
        'library': {'g2': MOLECULES.split(',')},
        'levels': {'cheap': {'level': 'hf/sto-3g'}},
        'method_selection': {'enabled': True},
        'model': {'members': 2, 'hidden': [16], 'epochs': 15, 'patience': 15, 'extensive': False,
                  'validation_fraction': 0.0, 'calibration_fraction': 0.0},
        'active_learning': {'initial_size': 3, 'batch_size': 1, 'validation_size': 2},
        'stop': {'max_iterations': 1},
        'screening': {'top_k': 1},
        'submission': {'max_jobs_in_flight': 1, 'structures_per_job': 20},
    }  # fmt: skip


@pytest.fixture(scope='module')
def campaign(mlqm_code):
    from aiida_mlqm.workflows.method_selection_training import import_default

    CampaignWorkChain = WorkflowFactory('mlqm.campaign')
    return run_get_node(
        CampaignWorkChain, config=orm.Dict(casscf_config()), library=orm.List(read_g2(MOLECULES)), code=mlqm_code,
        classifier=import_default(), options={'resources': {'num_machines': 1}, 'max_wallclock_seconds': 600},
    )  # fmt: skip


def _called(node, label):
    found = [link.node for link in node.base.links.get_outgoing().all() if link.link_label == label]
    assert len(found) == 1, f'{label}: {len(found)} processes'
    return found[0]


def test_multireference_molecules_go_to_casscf_and_out_of_the_training_set(campaign):
    results, node = campaign
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    decisions = _called(node, 'method_selection').outputs.summary.get_dict()
    multireference = sorted(key for key, decision in decisions.items() if decision['route'] == 'multireference')
    assert 'O3' in multireference and 'CH4' not in multireference
    # why: the routing record (a calcfunction over the decisions) says where each went and why
    record = _called(node, 'routing').outputs.result.get_dict()
    assert record['multireference_action'] == 'casscf' and record['casscf'] == multireference
    assert record['multireference_level'] == 'casscf/sto-3g' and record['excluded'] == []
    assert 'P(MR)' in record['reasons']['O3'] and 'labelled at casscf/sto-3g' in record['reasons']['O3']
    assert set(record['kept']) == set(MOLECULES.split(',')) - set(multireference)
    # the CASSCF job: every routed molecule, automatic active space at the cheap level's basis
    job = _called(node, 'multireference_reference')
    assert job.process_type == 'aiida.calculations:mlqm.casscf.batch'
    assert sorted(job.inputs.structures) == multireference and job.inputs.parameters['basis'] == 'sto-3g'
    outcome = _called(node, 'multireference_outcome').outputs.result.get_dict()
    assert sorted([*outcome['labelled'], *outcome['failed']]) == multireference
    assert 'O3' in outcome['labelled'], outcome['failed']
    ozone = outcome['labelled']['O3']
    assert ozone['casscf_converged'] and ozone['active_space']['orbitals'] >= 2
    assert results['multireference']['O3'].uuid == ozone['uuid']
    assert results['multireference']['O3']['casscf_energy'] < results['multireference']['O3']['scf_energy']
    # nothing routed multireference is in the single-reference labels or the screening
    routed = {link.node.uuid for link in job.base.links.get_incoming().all() if link.link_label.startswith('structures__')}
    labelled = set(results['dataset'].base.attributes.get('structure_uuids'))
    labelled |= set(results['validation_dataset'].base.attributes.get('structure_uuids'))
    assert labelled and not labelled & routed
    ranked = {row['uuid'] for row in _called(node, 'ranking').outputs.result['ranking']}
    assert ranked and not ranked & routed
    report = results['report'].get_dict()['method_selection']
    assert report['casscf'] == multireference and set(report['multireference']['labelled']) == set(outcome['labelled'])


def test_a_failed_casscf_is_recorded_not_fatal(aiida_profile):
    """``multireference_outcome`` over a CASSCF job's outputs: a molecule in ``failures`` keeps its status and
    message, one the job returned nothing for gets the job's exit message."""
    from aiida_mlqm.workflows.campaign_functions import multireference_outcome

    routing = orm.Dict({'casscf': ['O3', 'twisted', 'lost'], 'multireference_level': 'casscf/sto-3g'})
    result = orm.Dict({'casscf_energy': -5.0, 'active_space': {'electrons': 4, 'orbitals': 4}, 'casscf_converged': True})
    failures = orm.Dict({'twisted': {'status': 'error', 'message': 'CASSCF(4,4) did not converge in 1 macro iterations'}})
    outcome = multireference_outcome(routing, orm.Dict({'message': 'job killed'}), failures=failures, casscf_O3=result)
    assert set(outcome['labelled']) == {'O3'} and outcome['labelled']['O3']['uuid'] == result.uuid
    assert outcome['failed'] == {
        'twisted': {'status': 'error', 'message': 'CASSCF(4,4) did not converge in 1 macro iterations'},
        'lost': {'status': 'job_failed', 'message': 'job killed'},
    }
