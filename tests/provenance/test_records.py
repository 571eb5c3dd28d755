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
