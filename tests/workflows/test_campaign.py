"""``mlqm.campaign`` on the embedded back end: a real small property campaign (PySCF, training, selection,
screening), with every selection and label traceable in the graph."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory
from aiida_mlqm.chemistry.readers import read_g2

MOLECULES = 'H2O,NH3,CH4,CO,HCN,C2H2,C2H4,C2H6,CH3OH,H2CO,HCOOH,CH3CHO,N2,H3CNH2,H2CCO,CH2NHCH2'
HIT_THRESHOLD = 16.0  # eV of HF/STO-3G gap: about half of these molecules are below


def property_config() -> dict:
    return {
        'name': 'test-gaps',
        'target': 'property',
        'objective': 'homo_lumo_gap',
        'library': {'g2': MOLECULES.split(',')},
        'levels': {'cheap': {'level': 'hf/sto-3g', 'max_labels': 13}},
        'model': {'members': 3, 'hidden': [16], 'epochs': 40, 'patience': 40, 'extensive': False,
                  'validation_fraction': 0.2, 'calibration_fraction': 0.2},
        'active_learning': {'initial_size': 6, 'batch_size': 3, 'validation_size': 4},
        'stop': {'max_iterations': 2},
        'screening': {'top_k': 2, 'kappa': 1.0, 'hit_threshold': HIT_THRESHOLD},
        'submission': {'max_jobs_in_flight': 1, 'structures_per_job': 10},
    }  # fmt: skip


@pytest.fixture(scope='module')
def campaign(mlqm_code):
    CampaignWorkChain = WorkflowFactory('mlqm.campaign')
    config = property_config()
    return run_get_node(
        CampaignWorkChain, config=orm.Dict(config), library=orm.List(read_g2(MOLECULES)), code=mlqm_code,
        options={'resources': {'num_machines': 1}, 'max_wallclock_seconds': 600},
    )  # fmt: skip


def test_property_campaign_runs_every_stage(campaign):
    results, node = campaign
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    report = results['report'].get_dict()
    iterations = [row for row in report['iterations'] if row['iteration'] != 0]
    assert 1 <= len(iterations) <= 2
    assert report['stop_reason']
    # labels: validation + initial + batches + verified top k, never more than the budget before screening
    assert len(results['dataset']) == 6 + sum(row['selected'] for row in iterations)
    assert len(results['dataset']) + len(results['validation_dataset']) <= 13
    screening = results['screening'].get_dict()
    assert len(screening['verified']) == 2
    errors = [row['predicted'] - row['computed'] for row in screening['verified']]
    assert screening['mae'] == pytest.approx(sum(abs(e) for e in errors) / 2)
    assert all(8.0 < row['computed'] < 40.0 for row in screening['verified'])  # HF/STO-3G gaps of these, eV
    # an order-of-magnitude guard (a unit slip, Hartree for eV or a gap of the wrong orbitals, fails it): the gaps
    # span 8-40 eV and the committee has seen 9 molecules, so its error is several eV and varies with the batch
    assert report['validation_error'] is not None and report['validation_error'] < 20.0
    assert node.base.extras.get('campaign_stage') == 'finished'


def test_screening_records_hits_and_what_the_campaign_found(campaign):
    results, node = campaign
    screening = results['screening'].get_dict()
    assert screening['hit_threshold'] == HIT_THRESHOLD and screening['objective'] == 'homo_lumo_gap'
    verified = screening['verified']
    assert [row['hit'] for row in verified] == [row['computed'] <= HIT_THRESHOLD for row in verified]
    assert screening['hits'] == sum(row['hit'] for row in verified)
    assert screening['hit_rate'] == pytest.approx(screening['hits'] / len(verified))
    # the base rate: hits among every molecule labelled before screening (training and validation rows)
    labelled = [*results['dataset'].get_array('homo_lumo_gap'), *results['validation_dataset'].get_array('homo_lumo_gap')]
    assert screening['labelled_count'] == len(labelled)
    assert screening['labelled_hits'] == sum(value <= HIT_THRESHOLD for value in labelled)
    # the best computed anywhere in the campaign, smallest gap first, with where each came from
    best = screening['best_found']
    assert screening['computed_count'] == len(labelled) + len(verified)
    assert [row['computed'] for row in best] == sorted(row['computed'] for row in best)
    assert best[0]['computed'] == pytest.approx(min([*labelled, *(row['computed'] for row in verified)]))
    assert len(best) == max(2, sum(row['hit'] for row in best)) and {row['source'] for row in best} <= {'labelled', 'screening'}
    assert set(MOLECULES.split(',')) >= {row['key'] for row in best}
    from aiida_mlqm.workflows.campaign import hit_line

    assert hit_line(screening).startswith(f'hits {screening["hits"]} of 2 verified (homo_lumo_gap <= 16 eV)')


def test_each_iteration_leaves_labelled_sub_runs_and_a_selection_with_reasons(campaign):
    results, node = campaign
    labels = {link.link_label for link in node.base.links.get_outgoing().all()}
    assert results['report']['iterations'][1]['selected'] > 0, results['report'].get_dict()
    assert {'build', 'initial_selection', 'validation_reference', 'initial_reference', 'initial_train'} <= labels
    assert {'iteration_01_predict', 'iteration_01_select', 'iteration_01_reference', 'iteration_01_train'} <= labels
    selection = next(l.node for l in node.base.links.get_outgoing().all() if l.link_label == 'iteration_01_select')
    inputs = {link.link_label for link in selection.base.links.get_incoming().all()}
    assert {'model', 'dataset', 'parameters', 'predictions', 'validation'} <= inputs
    # the trust window comes from the fixed validation set (held out), not from the labels the committee fitted
    validation = next(l.node for l in selection.base.links.get_incoming().all() if l.link_label == 'validation')
    assert validation.uuid == results['validation_dataset'].uuid
    assert f'of {len(validation)} held-out frames' in selection.outputs.result['trust']['source']
    chosen = selection.outputs.result['chosen']
    assert chosen and all(row['rule'] == 'query-by-committee' and row['uncertainty'] >= 0 for row in chosen)
    # why was this structure labelled: its dataset row -> its structure -> the selection that chose it
    dataset = results['dataset']
    uuids = set(dataset.base.attributes.get('structure_uuids'))
    assert {row['uuid'] for row in chosen} <= uuids


def test_validation_draw_never_takes_the_last_structure_of_an_element(aiida_profile, make_structure):
    """An element left in the validation set only would fail the campaign's first training (its committee cannot
    predict it); the seeded draw skips such a structure and takes the next one."""
    from aiida_mlqm.workflows.campaign_functions import choose_initial_set

    names = ['H2O', 'CH4', 'C2H6', 'C2H4', 'C2H2', 'CH3OH', 'H2CO', 'CO', 'NH3']  # N only in NH3, O in four
    candidates = {name: make_structure(name) for name in names}
    for seed in range(12):
        parameters = orm.Dict({'initial_size': 3, 'validation_size': 3, 'seed': seed})
        chosen = choose_initial_set(parameters, **candidates)
        assert len(chosen['validation']) == 3 and 'NH3' not in chosen['validation']
        assert 'NH3' in chosen['initial']  # element coverage puts it in the initial set
