"""A small real chain for the provenance queries, identical on every back end, and the checks of their answers.

``build_chain(code)``: ``mlqm.reference`` (HF/STO-3G with forces, real PySCF, two batch jobs, one molecule that fails
in its batch and again alone) -> ``mlqm.train`` (a 2-member committee, a few epochs) -> ``mlqm.predict`` on the
dataset -> a selection and a routing record made by calcfunctions as the campaign writes them (records.py). Imported
by the tests in this process (embedded back end) and by scripts run in a PostgreSQL profile.
"""

from __future__ import annotations

import collections

import pytest
from aiida import orm
from aiida.engine import calcfunction, run_get_node
from aiida.plugins import CalculationFactory, WorkflowFactory

MOLECULES = ['H2O', 'NH3', 'CH4', 'HF', 'OH']
HYPER = {'backend': 'torchani', 'members': 2, 'aev': 'compact', 'hidden': [8], 'epochs': 3, 'batch_size': 4, 'seed': 1}
OPTIONS = {'resources': {'num_machines': 1}, 'max_wallclock_seconds': 600}


@calcfunction
def select_structures(model, **structures):
    """Selection as a campaign records it: the chosen structures with their scores and the rule."""
    from aiida_mlqm.provenance.records import make_record

    selected = [
        {'structure_uuid': node.uuid, 'key': key, 'score': 0.1 * (index + 1), 'rule': 'top force spread',
         'level': 'hf/sto-3g'}
        for index, (key, node) in enumerate(sorted(structures.items()))
    ]  # fmt: skip
    return make_record('selection', {'iteration': 1, 'rule': 'query by committee', 'score_name': 'force_spread',
                                     'score_units': 'eV/Å', 'model_uuid': model.uuid, 'selected': selected})  # fmt: skip


@calcfunction
def route_structures(**structures):
    """Routing as method selection records it: one route per molecule."""
    from aiida_mlqm.provenance.records import make_record

    routes = [
        {'structure_uuid': node.uuid, 'key': key, 'route': 'multireference' if key == 'mol_4' else 'single_reference',
         'level': 'ccsd(t)/cc-pvdz', 'score': 0.9 if key == 'mol_4' else 0.1, 'reason': 'classifier probability'}
        for key, node in sorted(structures.items())
    ]  # fmt: skip
    return make_record('routing', {'routes': routes})


@calcfunction
def screen_structures(model, predictions, **structures):
    """Screening as a campaign records it: a ranking with uncertainty, the top two verified."""
    from aiida_mlqm.provenance.records import make_record

    energies = predictions.get_array('energy')
    ranking = [
        {'structure_uuid': node.uuid, 'key': key, 'rank': rank + 1, 'predicted': float(energies[rank]),
         'uncertainty': 0.05, 'score': float(energies[rank]) + 0.05,
         'verified': float(energies[rank]) + 0.01 if rank < 2 else None, 'hit': (rank == 0) if rank < 2 else None}
        for rank, (key, node) in enumerate(sorted(structures.items()))
    ]  # fmt: skip
    return make_record('screening', {'objective': 'energy', 'units': 'eV', 'k': 2, 'hit_rate': 0.5,
                                     'random_hit_rate': 0.2, 'ranking': ranking})  # fmt: skip


@calcfunction
def record_iteration(model, metrics):
    """The iteration record a campaign writes after training: labels, validation error, target."""
    from aiida_mlqm.provenance.records import make_record

    values = metrics.get_dict()
    return make_record('iteration', {'iteration': 1, 'labels': {'hf/sto-3g': values['num_train']},
                                     'validation': {'energy_mae': values['validation']['energy_mae']},
                                     'validation_units': {'energy_mae': 'eV'}, 'target': {'energy_mae': 0.043},
                                     'model_uuid': model.uuid})  # fmt: skip


def build_chain(code) -> dict:
    """Run the chain with ``code`` (Python with PySCF on localhost); return the pks and uuids the tests ask about."""
    from aiida_mlqm.provenance.structures import g2_structure
    from ase import Atoms

    structures = {f'mol_{i}': g2_structure(name) for i, name in enumerate(MOLECULES)}
    broken = orm.StructureData(ase=Atoms('H2', positions=[[0, 0, 0], [0, 0, 1e-6]]))
    broken.base.attributes.set('multiplicity', 1)
    structures['broken'] = broken
    results, reference = run_get_node(
        WorkflowFactory('mlqm.reference'),
        structures=structures,
        parameters=orm.Dict({'method': 'hf', 'basis': 'sto-3g', 'forces': True}),
        code=code,
        batch={'max_structures': 3},
        max_restarts=orm.Int(1),
    )
    dataset = results['dataset']
    trained, train = run_get_node(
        CalculationFactory('mlqm.train'),
        code=code,
        dataset=dataset,
        parameters=orm.Dict({'kind': 'potential', 'hyperparameters': HYPER}),
        metadata={'options': OPTIONS},
    )
    assert train.is_finished_ok, (train.exit_status, train.exit_message)
    model = trained['model']
    predicted, predict = run_get_node(
        CalculationFactory('mlqm.predict'),
        code=code,
        model=model,
        dataset=dataset,
        parameters=orm.Dict({'mode': 'predict'}),
        metadata={'options': OPTIONS},
    )
    assert predict.is_finished_ok, (predict.exit_status, predict.exit_message)
    chosen = {key: structures[key] for key in ('mol_0', 'mol_1')}
    selection = select_structures(model, **chosen)
    routing = route_structures(**{key: node for key, node in structures.items() if key != 'broken'})
    screening = screen_structures(model, predicted['predictions'], **labelled_structures(structures))
    iteration = record_iteration(model, trained['metrics'])
    batches = sorted(
        (c for c in reference.called if c.process_type == 'aiida.calculations:mlqm.pyscf.batch'), key=lambda n: n.pk
    )
    water_batch = next(b for b in batches if 'mol_0' in b.inputs.structures)
    other_batch = next(b for b in batches if b.pk != water_batch.pk)
    return {
        'reference': reference.uuid,
        'dataset': dataset.uuid,
        'model': model.uuid,
        'train': train.uuid,
        'predict': predict.uuid,
        'predictions': predicted['predictions'].uuid,
        'selection': selection.uuid,
        'routing': routing.uuid,
        'records': {'selection': selection.uuid, 'routing': routing.uuid, 'screening': screening.uuid,
                    'iteration': iteration.uuid},
        'batches': [b.uuid for b in batches],
        'water_batch': water_batch.uuid,
        'other_batch': other_batch.uuid,
        'structures': {key: node.uuid for key, node in structures.items()},
        'frames': {frame.structure_uuid: frame.source_uuid for frame in dataset.frames()},
    }


def labelled_structures(structures: dict) -> dict:
    return {key: node for key, node in structures.items() if key != 'broken'}


def ask_all(ids: dict) -> dict:
    """Every query about the chain, each walk both ways (``querybuilder`` and ``sql``), as JSON-ready answers."""
    from aiida_mlqm.provenance import queries

    return {
        'lineage': queries.lineage(ids['model'], method='querybuilder'),
        'lineage_sql': queries.lineage(ids['model'], method='sql'),
        'failures': queries.failures(ids['reference']),
        'cost': queries.cost(ids['reference']),
        'model_cost': queries.cost(ids['model']),
        'invalidate': queries.invalidate(ids['water_batch'], method='querybuilder'),
        'invalidate_sql': queries.invalidate(ids['water_batch'], method='sql'),
        'why': queries.why(ids['structures']['mol_0']),
        'why_unselected': queries.why(ids['structures']['mol_2']),
        'routing': routing_of_chain(ids['routing']),
        'summary': queries.summary(ids['reference']),
    }


def routing_of_chain(record_uuid: str) -> dict:
    """``queries.routing()`` (every routing record of the profile) narrowed to this chain's record: other tests of the
    session may have left records of their own in the same profile."""
    from aiida_mlqm.provenance import queries

    answer = queries.routing()
    pk = orm.load_node(record_uuid).pk
    routes = [entry for entry in answer['routes'] if entry['record_pk'] == pk]
    assert len(routes) <= len(answer['routes']) == sum(answer['counts'].values())
    return {
        **answer,
        'routes': routes,
        'counts': dict(sorted(collections.Counter(entry['route'] for entry in routes).items())),
        'multireference': [entry for entry in routes if entry['route'] == 'multireference'],
    }


def check_answers(ids: dict, answers: dict) -> None:
    """What the answers must say about the chain of :func:`build_chain`."""
    labelled = {key: uuid for key, uuid in ids['structures'].items() if key != 'broken'}

    lineage = answers['lineage']
    assert lineage['counts']['training_jobs'] == 1
    assert {row['uuid'] for row in lineage['structures']} == set(labelled.values())
    assert {row['uuid'] for row in lineage['reference_calculations']} == set(ids['frames'].values())
    assert lineage['levels'] == {'hf/sto-3g': {'calculations': len(set(ids['frames'].values())), 'frames': 5}}
    assert ids['dataset'] in {row['uuid'] for row in lineage['datasets'] if row['trained_on']}
    assert lineage['counts']['results'] == 5
    assert strip_pks(answers['lineage_sql'], drop=('method',)) == strip_pks(lineage, drop=('method',))

    failures = answers['failures']
    by_label = {group['process_label']: group for group in failures['processes']}
    assert by_label['ReferenceWorkChain']['exit_status'] == 710
    assert by_label['PyscfBatchCalculation']['count'] == 1 and by_label['PyscfBatchCalculation']['exit_status'] == 710
    assert 'PyscfCalculation' in by_label and by_label['PyscfCalculation']['exit_status'] >= 300
    assert [group['count'] for group in failures['structures']] == [1]
    assert failures['structures'][0]['examples'][0]['key'] == 'broken'
    assert [entry['key'] for entry in failures['unlabelled']] == ['broken']

    cost = answers['cost']
    reference_jobs = [row for row in cost['jobs'] if row['stage'] == 'reference']
    assert {row['uuid'] for row in reference_jobs} >= set(ids['batches'])
    # five labelled in batches, 'broken' once in its batch (no result) and once alone (a result with the error)
    assert sum(row['structures'] for row in reference_jobs) == 6
    assert all(row['iteration'] is None for row in reference_jobs)  # restart attempts are not campaign iterations
    assert all(row['cpu_seconds'] > 0 and not row['estimated'] for row in reference_jobs if row['structures'])
    assert cost['total_cpu_seconds'] == pytest.approx(sum(group['cpu_seconds'] for group in cost['by_stage_and_level']))
    model_cost = answers['model_cost']
    assert {row['stage'] for row in model_cost['jobs']} == {'reference', 'training'}
    # the model rests on the successful batch jobs only: the failed retry is not behind it
    assert {row['uuid'] for row in model_cost['jobs'] if row['stage'] == 'reference'} == set(ids['frames'].values())

    invalid = answers['invalidate']
    assert ids['dataset'] in {row['uuid'] for row in invalid['datasets']}
    assert [row['uuid'] for row in invalid['models']] == [ids['model']]
    assert [row['uuid'] for row in invalid['predictions']] == [ids['predictions']]
    assert [row['uuid'] for row in invalid['records']['selection']] == [ids['selection']]
    assert invalid['records']['routing'] == []  # routing read the structures, not the calculation's labels
    assert [row['uuid'] for row in invalid['records']['screening']] == [ids['records']['screening']]
    assert [row['uuid'] for row in invalid['records']['iteration']] == [ids['records']['iteration']]
    assert strip_pks(answers['invalidate_sql']) == strip_pks(invalid)

    why = answers['why']
    assert [entry['structure_uuid'] for entry in why['selected_by']] == [ids['structures']['mol_0']]
    assert why['selected_by'][0]['rule'] == 'top force spread' and why['selected_by'][0]['iteration'] == 1
    assert why['selected_by'][0]['model_uuid'] == ids['model']
    assert [entry['uuid'] for entry in why['labelled_by']] == [ids['water_batch']]
    assert why['labelled_by'][0]['key'] == 'mol_0' and why['labelled_by'][0]['level'] == 'hf/sto-3g'
    assert why['routed_by'][0]['route'] == 'single_reference'
    assert answers['why_unselected']['selected_by'] == []

    routing = answers['routing']
    assert routing['counts'] == {'multireference': 1, 'single_reference': 4}
    assert [entry['structure_uuid'] for entry in routing['multireference']] == [ids['structures']['mol_4']]

    summary = answers['summary']
    assert summary['exit_status'] == 710 and summary['unlabelled'] == 1
    assert [row['uuid'] for row in summary['datasets']] == [ids['dataset']] or ids['dataset'] in {
        row['uuid'] for row in summary['datasets']
    }


def strip_pks(value, drop=()):
    """``value`` without pks (which differ between profiles), lists of dicts sorted, for comparing answers."""
    if isinstance(value, dict):
        return {
            key: strip_pks(item, drop)
            for key, item in value.items()
            if key not in drop and not key.endswith(('pk', 'pks'))
        }
    if isinstance(value, list):
        items = [strip_pks(item, drop) for item in value]
        return sorted(items, key=repr)
    return value
