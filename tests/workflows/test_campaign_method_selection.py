"""Method selection as a campaign stage (build -> method selection -> reference -> loop -> screening): the campaign
calls ``mlqm.method_selection`` with the shipped classifier, and the molecules it routes to the multireference path
are excluded from labelling and screening, with the decision and the exclusion in the graph."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from aiida_mlqm.chemistry.readers import read_g2

MOLECULES = 'H2O,NH3,CH4,CO,HCN,C2H2,C2H4,C2H6,CH3OH,H2CO,N2,O3'


def routed_config() -> dict:
    return {
        'name': 'test-routed-gaps',
        'target': 'property',
        'objective': 'homo_lumo_gap',
        'library': {'g2': MOLECULES.split(',')},
        'levels': {'cheap': {'level': 'hf/sto-3g'}},
        'method_selection': {'enabled': True, 'multireference': 'exclude'},
        'model': {'members': 2, 'hidden': [16], 'epochs': 20, 'patience': 20, 'extensive': False,
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
        CampaignWorkChain, config=orm.Dict(routed_config()), library=orm.List(read_g2(MOLECULES)), code=mlqm_code,
        classifier=import_default(), options={'resources': {'num_machines': 1}, 'max_wallclock_seconds': 600},
    )  # fmt: skip


def _called(node, label):
    found = [link.node for link in node.base.links.get_outgoing().all() if link.link_label == label]
    assert len(found) == 1, f'{label}: {len(found)} processes'
    return found[0]


def test_multireference_molecules_are_excluded_and_the_exclusion_is_recorded(campaign):
    from aiida_mlqm.workflows.method_selection_training import import_default

    results, node = campaign
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    routing = _called(node, 'method_selection')
    assert routing.process_label == 'MethodSelectionWorkChain' and routing.is_finished_ok
    assert routing.inputs.classifier.uuid == import_default().uuid
    decisions = routing.outputs.summary.get_dict()
    multireference = {key for key, decision in decisions.items() if decision['route'] == 'multireference'}
    assert 'O3' in multireference and 'CH4' not in multireference  # a textbook MR case and a harmless one
    # the exclusion is a calcfunction over the decisions: "why was O3 not labelled" is a graph query too
    applied = _called(node, 'routing')
    inputs = {link.link_label: link.node for link in applied.base.links.get_incoming().all()}
    assert inputs['summary'].uuid == routing.outputs.summary.uuid
    record = applied.outputs.result.get_dict()
    assert set(record['excluded']) == multireference and record['flagged'] == [] and record['unrouted'] == []
    assert 'P(MR)' in record['reasons']['O3']
    # nothing excluded is labelled, validated or screened; every other molecule stays in the campaign
    excluded_uuids = {
        link.node.uuid for link in routing.base.links.get_incoming().all()
        if link.link_label.startswith('structures__') and link.link_label.split('__', 1)[1] in multireference
    }  # fmt: skip
    assert len(excluded_uuids) == len(multireference)
    labelled = set(results['dataset'].base.attributes.get('structure_uuids'))
    labelled |= set(results['validation_dataset'].base.attributes.get('structure_uuids'))
    assert labelled and not labelled & excluded_uuids
    ranked = {row['uuid'] for row in _called(node, 'ranking').outputs.result['ranking']}
    assert ranked and not ranked & excluded_uuids
    report = results['report'].get_dict()
    assert set(report['method_selection']['excluded']) == multireference
