"""``mlqm.method_selection`` on PostgreSQL + RabbitMQ + daemon workers; its decisions found by query afterwards."""
from __future__ import annotations

import pathlib

import pytest

HELPERS = pathlib.Path(__file__).parent

SUBMIT = """
import sys
sys.path.insert(0, {helpers!r})
from method_selection_helpers import synthetic_classifier_node

def molecule(atoms):
    structure = orm.StructureData(cell=[[20.0, 0, 0], [0, 20.0, 0], [0, 0, 20.0]], pbc=(False, False, False))
    for symbol, position in atoms:
        structure.append_atom(symbols=symbol, position=position)
    structure.base.attributes.set('charge', 0)
    structure.base.attributes.set('multiplicity', 1)
    return structure

classifier = synthetic_classifier_node().store()
node = submit(
    WorkflowFactory('mlqm.method_selection'),
    structures={{'h2': molecule([('H', (0, 0, 0)), ('H', (0.74, 0, 0))]),
                 'h2_far': molecule([('H', (0, 0, 0)), ('H', (2.6, 0, 0))])}},
    code=load_code('mlqm-python@localhost'),
    classifier=classifier,
    features_parameters=Dict({{'basis': 'sto-3g', 'features': {{'excited_states': 1}}}}),
    routing=Dict({{'mr_threshold': 0.5, 'multireference_action': 'exclude'}}),
    batch_size=1,
    options=Dict({{'max_wallclock_seconds': 600, 'resources': {{'num_machines': 1, 'num_mpiprocs_per_machine': 1}}}}),
)
wait(node, timeout=500)
query = orm.QueryBuilder()
query.append(orm.CalcFunctionNode, filters={{'attributes.function_name': 'route_molecule'}}, tag='route')
query.append(orm.WorkChainNode, with_outgoing='route', filters={{'id': node.pk}})
query.append(orm.Dict, with_incoming='route', project=['attributes.p_mr', 'attributes.route', 'attributes.action'])
emit(pk=node.pk, ok=node.is_finished_ok, exit_message=node.exit_message, storage=node.backend.__class__.__name__,
     decisions={{k: v.get_dict() for k, v in node.outputs.decisions.items()}} if 'decisions' in node.outputs else {{}},
     queried=query.all())
"""


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_method_selection_on_postgres_and_daemon(psql_daemon_profile):
    result = psql_daemon_profile.run_json(SUBMIT.format(helpers=str(HELPERS)), timeout=600)
    assert result['ok'], result
    assert result['storage'] == 'PsqlDosBackend'
    decisions = result['decisions']
    assert set(decisions) == {'h2', 'h2_far'}
    assert decisions['h2_far']['p_mr'] > decisions['h2']['p_mr']
    assert sorted(p for p, _, _ in result['queried']) == sorted(d['p_mr'] for d in decisions.values())
    for decision in decisions.values():
        expected = 'multireference' if decision['p_mr'] >= 0.5 else 'single_reference'
        assert decision['route'] == expected
    listing = psql_daemon_profile.verdi('process', 'list', '-a', '-p', '1').stdout
    assert 'MethodSelectionWorkChain' in listing and 'FeaturesBatchCalculation' in listing
