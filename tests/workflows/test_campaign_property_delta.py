"""A multi-fidelity property campaign on the embedded back end: HF/STO-3G labels for every selected molecule,
CCSD(T)/STO-3G for the subset ``select_expensive`` chooses, a Δ model of the objective (expensive - cheap) trained on
the molecules with both levels, and a screening that ranks and verifies on the cheap model + Δ."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from aiida_mlqm.chemistry.readers import read_g2

MOLECULES = 'H2O,NH3,CH4,CO,HCN,C2H2,C2H4,C2H6,CH3OH,H2CO,N2,HCOOH,CH3CHO,H3CNH2'


def delta_config() -> dict:
    return {
        'name': 'test-energy-delta',
        'target': 'property',
        'objective': 'energy',
        'library': {'g2': MOLECULES.split(',')},
        'levels': {'cheap': {'level': 'hf/sto-3g'}, 'expensive': {'level': 'ccsd(t)/sto-3g', 'max_labels': 6}},
        'model': {'members': 2, 'hidden': [16], 'epochs': 30, 'patience': 30, 'validation_fraction': 0.0,
                  'calibration_fraction': 0.0},
        'active_learning': {'initial_size': 4, 'batch_size': 3, 'validation_size': 2, 'expensive_fraction': 1.0},
        'stop': {'max_iterations': 2, 'plateau_window': None},
        'screening': {'top_k': 2},
        'submission': {'max_jobs_in_flight': 1, 'structures_per_job': 20},
    }  # fmt: skip


@pytest.fixture(scope='module')
def campaign(mlqm_code):
    CampaignWorkChain = WorkflowFactory('mlqm.campaign')
    return run_get_node(
        CampaignWorkChain, config=orm.Dict(delta_config()), library=orm.List(read_g2(MOLECULES)), code=mlqm_code,
        options={'resources': {'num_machines': 1}, 'max_wallclock_seconds': 600},
    )  # fmt: skip


def _called(node, label):
    found = [link.node for link in node.base.links.get_outgoing().all() if link.link_label == label]
    assert len(found) == 1, f'{label}: {len(found)} processes'
    return found[0]


def test_property_campaign_trains_the_delta_of_its_objective_on_the_expensive_subset(campaign):
    results, node = campaign
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    expensive = results['expensive_dataset']
    assert len(expensive) == 6 and set(expensive.base.attributes.get('levels')) == {'ccsd(t)/sto-3g'}
    assert 'energy' in expensive.get_arraynames()  # the objective, read at the expensive level
    assert set(expensive.base.attributes.get('structure_uuids')) <= set(results['dataset'].base.attributes.get('structure_uuids'))
    for number, pairs in ((1, 3), (2, 6)):
        summary = _called(node, f'iteration_{number:02d}_delta_pairs').outputs.summary.get_dict()
        assert summary['pairs'] == pairs and summary['holdout'] >= 1 and summary['objective'] == 'energy'
        job = _called(node, f'iteration_{number:02d}_train_delta')
        assert job.is_finished_ok and job.inputs.parameters['target_key'] == 'delta_energy'
        training = job.inputs.dataset
        assert len(training) + len(job.inputs.validation_dataset) == pairs
        # the correction learned is CCSD(T) - HF of these rows: the (negative) correlation energy, eV
        difference = training.get_array('delta_energy')
        assert (difference < 0).all() and difference == pytest.approx(training.get_array('energy') - training.get_array('energy_cheap'))
    # the second expensive batch was chosen by the first Δ model's spread
    second = _called(node, 'iteration_02_select_expensive')
    inputs = {link.link_label: link.node for link in second.base.links.get_incoming().all()}
    assert inputs['model'].uuid == _called(node, 'iteration_01_train_delta').outputs.model.uuid
    assert second.outputs.result['signal'] == 'delta_correction_spread'
    assert results['delta_model'].uuid == _called(node, 'iteration_02_train_delta').outputs.model.uuid
    report = results['report'].get_dict()
    records = [row['delta'] for row in report['iterations'] if row.get('delta')]
    assert [row['pairs'] for row in records] == [3, 6]
    assert all(row['holdout_mae'] is not None and row['base_only_mae'] > 0 for row in records)


def test_screening_ranks_and_verifies_on_cheap_plus_delta(campaign):
    results, node = campaign
    corrections = _called(node, 'screening_corrections').outputs.result.get_dict()
    delta_job = _called(node, 'screening_predict_delta')
    assert delta_job.inputs.model.uuid == results['delta_model'].uuid
    ranking = _called(node, 'ranking')
    rows = ranking.outputs.result['ranking']
    assert rows and all(row['correction'] == pytest.approx(corrections[row['uuid']]['value']) for row in rows)
    cheap = ranking.inputs.predictions.get_array('property')
    by_key = dict(zip([key for key, _ in ranking.inputs.keys.get_list()], cheap))
    assert all(row['predicted'] == pytest.approx(by_key[row['key']] + row['correction']) for row in rows)
    screening = results['screening'].get_dict()
    assert len(screening['verified']) == 2
    for row in screening['verified']:
        assert row['computed_level'] == 'cheap + Δ'
        assert row['computed'] == pytest.approx(row['computed_cheap'] + row['correction'])
        assert row['error'] == pytest.approx(row['predicted'] - row['computed'])
