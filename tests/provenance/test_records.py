"""Decision records: the contract's checks, and decisions stored in another shape read through adapters."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import calcfunction


def test_make_record_names_missing_keys():
    from aiida_mlqm.provenance.records import make_record

    with pytest.raises(ValueError, match=r"\['selected'\]"):
        make_record('selection', {'iteration': 1, 'rule': 'top spread'})
    with pytest.raises(ValueError, match='not one of'):
        make_record('choice', {})
    assert make_record('routing', {'routes': []}).get_dict() == {'record': 'routing', 'routes': []}


@calcfunction
def route_molecule(features: orm.Dict, routing: orm.Dict) -> orm.Dict:
    """Shaped as method selection's decision: route, P(MR), level, reason; no `record` key."""
    return orm.Dict({'p_mr': 0.83, 'mr_threshold': 0.5, 'route': 'multireference', 'action': 'casscf',
                     'reason': 'P(MR) 0.830 >= 0.500: casscf', 'classifier_uuid': 'c0ffee'})  # fmt: skip


def test_routing_decisions_in_their_own_shape_are_read_through_the_adapter(chain):
    """The features input is a batch job's per-structure result: the route is traced back to its structure."""
    from aiida_mlqm.provenance import queries

    batch = orm.load_node(chain['water_batch'])
    decision = route_molecule(batch.outputs.parameters.mol_0, orm.Dict({'mr_threshold': 0.5}))
    answer = queries.routing()
    entry = next(route for route in answer['routes'] if route['record_pk'] == decision.pk)
    assert entry['structure_uuid'] == chain['structures']['mol_0']
    assert entry['route'] == 'multireference' and entry['score'] == 0.83 and entry['level'] == 'casscf'
    why = queries.why(chain['structures']['mol_0'])
    assert 'multireference' in {route['route'] for route in why['routed_by']}


class FakeSource:
    """What an adapter reads from the graph, given directly."""

    def __init__(self, label, inputs):
        self.label, self.inputs, self.creator_pk = label, inputs, None

    def call_link_label(self):
        return self.label

    def creator_inputs(self):
        return self.inputs


class FakeNode:
    def __init__(self, uuid, values=None):
        self.uuid, self.values = uuid, values

    def get_dict(self):
        return self.values

    @property
    def value(self):
        return self.values


def test_campaign_decisions_read_as_records():
    from aiida_mlqm.provenance import campaign_records as adapt

    chosen = [{'key': 'c1', 'uuid': 'u1', 'rule': 'query-by-committee', 'score': 0.4, 'uncertainty': 0.3, 'index': 1}]
    selection = adapt.select_next_batch(
        {'chosen': chosen, 'signal': 'max_force_spread', 'trust': {'unit': 'eV/Å'}, 'counts': {}},
        FakeSource('iteration_03_select', {'model': FakeNode('m'), 'dataset': FakeNode('d'), 'c1': FakeNode('u1'),
                                           'c2': FakeNode('u2')}),
    )  # fmt: skip
    assert selection['iteration'] == 3 and selection['model_uuid'] == 'm' and selection['candidates'] == 2
    assert selection['selected'] == [{'structure_uuid': 'u1', 'key': 'c1', 'rule': 'query-by-committee', 'score': 0.4,
                                      'uncertainty': 0.3}]  # fmt: skip
    initial = adapt.choose_initial_set(
        {'records': [{'key': 'c2', 'rule': 'farthest-point', 'order': 0}]}, FakeSource('initial_selection', {'c2': FakeNode('u2')})
    )
    assert initial['iteration'] == 0 and initial['selected'][0]['structure_uuid'] == 'u2'
    ranking = {'ranking': [{'key': 'a', 'uuid': 'ua', 'predicted': 5.0, 'spread': 0.2, 'bound': 4.8, 'rank': 0},
                           {'key': 'b', 'uuid': 'ub', 'predicted': 4.0, 'spread': 0.1, 'bound': 3.9, 'rank': 1}], 'top_k': 1}
    screening = adapt.screening_summary(
        {'verified': [{'key': 'a', 'uuid': 'ua', 'computed': 5.1, 'hit': True}], 'hit_rate': 1.0, 'unit': 'eV'},
        FakeSource('screening_summary', {'ranking': FakeNode('r', ranking), 'objective': FakeNode('o', 'homo_lumo_gap')}),
    )  # fmt: skip
    assert screening['objective'] == 'homo_lumo_gap' and screening['k'] == 1
    assert [(r['rank'], r['verified'], r['hit']) for r in screening['ranking']] == [(1, 5.1, True), (2, None, None)]
