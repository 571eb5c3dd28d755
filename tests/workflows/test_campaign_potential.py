"""``mlqm.campaign`` with ``target: potential`` on the embedded back end: normal-mode candidates of water, ML-MD
exploration on the committee in every iteration (stopped at the adaptive lower trust level), real HF/STO-3G labels
with forces, CCSD(T)/STO-3G energies on the structures that help the Δ model most and a Δ model trained from them, and
every iteration's model, dataset, predictions and selection in the graph, labelled iteration_NN."""

from __future__ import annotations

import json

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from aiida_mlqm.chemistry.readers import read_g2


def potential_config() -> dict:
    return {
        'name': 'test-water-potential',
        'target': 'potential',
        'library': {'g2': ['H2O']},
        'levels': {'cheap': {'level': 'hf/sto-3g', 'forces': True, 'max_labels': 16},
                   'expensive': {'level': 'ccsd(t)/sto-3g', 'max_labels': 6}},
        'configurations': {'number': 6, 'temperatures': [300.0, 1000.0], 'hessian': 'forcefield', 'seed': 1},
        'model': {'backend': 'torchani', 'members': 2, 'hidden': [16], 'epochs': 15, 'patience': 15, 'batch_size': 8,
                  'validation_fraction': 0.0, 'calibration_fraction': 0.0},
        'active_learning': {
            'initial_size': 4, 'batch_size': 3, 'validation_size': 3, 'diversity': 0.5, 'expensive_fraction': 1.0,
            'explore': {'starts': 2, 'temperature': 1500.0, 'steps': 60, 'check_interval': 2, 'timestep': 1.0},
        },
        'stop': {'max_iterations': 2, 'plateau_window': None},
        'submission': {'max_jobs_in_flight': 1, 'structures_per_job': 10},
    }  # fmt: skip


@pytest.fixture(scope='module')
def campaign(mlqm_code):
    CampaignWorkChain = WorkflowFactory('mlqm.campaign')
    return run_get_node(
        CampaignWorkChain, config=orm.Dict(potential_config()), library=orm.List(read_g2('H2O')), code=mlqm_code,
        options={'resources': {'num_machines': 1}, 'max_wallclock_seconds': 600},
    )  # fmt: skip


def _called(node, label):
    found = [link.node for link in node.base.links.get_outgoing().all() if link.link_label == label]
    assert len(found) == 1, f'{label}: {len(found)} processes'
    return found[0]


def test_potential_campaign_explores_selects_and_labels_every_iteration(campaign):
    results, node = campaign
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    report = results['report'].get_dict()
    iterations = [row for row in report['iterations'] if row['iteration'] != 0]
    assert [row['iteration'] for row in iterations] == [1, 2], report
    dataset = results['dataset']
    assert len(dataset) == 4 + sum(row['selected'] for row in iterations)
    assert dataset.get_array('forces').shape == (3 * len(dataset), 3)  # energies and forces on every row
    for row in iterations:
        number = f'iteration_{row["iteration"]:02d}'
        # ML-MD on this iteration's committee: stopped at its lower trust level, from the validation set
        settings = _called(node, f'{number}_explore_parameters').outputs
        parameters, trust = settings.parameters, settings.trust
        assert parameters['explore']['signal'] == 'force_spread'
        assert parameters['explore']['threshold'] == pytest.approx(trust['lower'])
        assert 'of 3 held-out frames' in trust['source']
        explore = _called(node, f'{number}_explore')
        assert explore.is_finished_ok and explore.inputs.parameters.uuid == parameters.uuid
        trajectories = explore.outputs.explore['trajectories']
        assert len(trajectories) == 2
        found = dict(explore.outputs.candidates) if 'candidates' in explore.outputs else {}
        assert len(found) == sum(t['reason'] == 'threshold' for t in trajectories)
        # each iteration leaves model, predictions, selection and merged dataset, all labelled with it
        model = _called(node, f'{number}_train').outputs.model
        predict = _called(node, f'{number}_predict')
        predicted = set(predict.inputs.structures.keys())
        assert {f'{number}_md_{label.rsplit("_", 1)[-1]}' for label in found} <= predicted
        selection = _called(node, f'{number}_select')
        inputs = {link.link_label: link.node for link in selection.base.links.get_incoming().all()}
        assert inputs['validation'].uuid == results['validation_dataset'].uuid
        assert inputs['predictions'].uuid == predict.outputs.predictions.uuid
        chosen = selection.outputs.result['chosen']
        assert len(chosen) == row['selected'] and chosen
        assert all(entry['signal'] == 'max_force_spread' and entry['rule'] == 'query-by-committee' for entry in chosen)
        merged = _called(node, f'{number}_merge').outputs.result
        assert {entry['uuid'] for entry in chosen} <= set(merged.base.attributes.get('structure_uuids'))
        assert model.uuid != results['model'].uuid or row is iterations[-1]
    # the final model was trained on the final dataset
    assert _called(node, 'iteration_02_train').outputs.model.uuid == results['model'].uuid


def test_expensive_labels_go_where_the_delta_model_is_least_sure_and_train_it(campaign):
    results, node = campaign
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    from aiida_mlqm.workflows.campaign_config import parse_config

    levels = parse_config(potential_config()).levels
    expensive = results['expensive_dataset']
    assert len(expensive) == 6 and set(expensive.base.attributes.get('levels')) == {levels.expensive.level}
    cheap_uuids = set(results['dataset'].base.attributes.get('structure_uuids'))
    assert set(expensive.base.attributes.get('structure_uuids')) <= cheap_uuids  # every one has its cheap label
    first = _called(node, 'iteration_01_select_expensive').outputs.result
    assert first['signal'] is None and {row['rule'] for row in first['chosen']} == {'farthest-point'}
    second = _called(node, 'iteration_02_select_expensive')
    inputs = {link.link_label: link.node for link in second.base.links.get_incoming().all()}
    delta_1 = _called(node, 'iteration_01_train_delta').outputs.model
    assert inputs['model'].uuid == delta_1.uuid  # chosen by the Δ model of the previous iteration
    assert {row['rule'] for row in second.outputs.result['chosen']} == {'query-by-committee'}
    assert second.outputs.result['signal'] == 'delta_correction_spread'
    assert not {row['uuid'] for row in second.outputs.result['chosen']} & {row['uuid'] for row in first['chosen']}
    # the campaign's Δ model: trained on all 6 pairs, kind delta from the cheap to the expensive level
    delta = results['delta_model']
    assert delta.uuid == _called(node, 'iteration_02_train_delta').outputs.model.uuid
    metrics = _called(node, 'iteration_02_train_delta').outputs.metrics.get_dict()
    assert metrics['num_pairs'] == 6
    assert delta.base.attributes.get('kind') == 'delta'
    assert metrics['holdout']['count'] >= 1 and metrics['holdout']['energy_mae'] >= 0
    report = results['report'].get_dict()
    assert report['labels'][levels.expensive.level] == 6
    assert [row['delta']['pairs'] for row in report['iterations'] if row['iteration']] == [3, 6]


def test_why_a_structure_was_labelled_is_a_graph_query(campaign):
    from aiida_mlqm.cli import main
    from click.testing import CliRunner

    results, node = campaign
    selection = _called(node, 'iteration_01_select')
    entry = selection.outputs.result['chosen'][0]
    result = CliRunner().invoke(main, ['query', 'why', entry['uuid'], '--json'])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    selected = answer['selected_by']
    assert [row['iteration'] for row in selected] == [1]
    assert selected[0]['rule'] == 'query-by-committee'
    assert selected[0]['model_uuid'] == _called(node, 'initial_train').outputs.model.uuid
    assert any(row['level'] == 'hf/sto-3g' for row in answer['labelled_by'])
