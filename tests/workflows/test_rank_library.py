"""``rank_library``: the campaign's screening ranking, by the probability of a hit when a hit threshold is set and by
the lower confidence bound otherwise."""

from __future__ import annotations

import numpy as np
from aiida import orm


def _predictions(value, spread) -> orm.ArrayData:
    node = orm.ArrayData()
    node.set_array('property', np.asarray(value, dtype=float))
    node.set_array('property_spread', np.asarray(spread, dtype=float))
    return node


def test_rank_library_uses_the_probability_of_a_hit_with_a_threshold(aiida_profile):
    from aiida_mlqm.workflows.campaign_functions import rank_library

    keys = orm.List([['sure', 'u0'], ['wild', 'u1'], ['near', 'u2'], ['far', 'u3']])
    predictions = _predictions([0.9, 5.0, 1.2, 3.0], [0.1, 6.0, 0.5, 0.01])
    settings = {'kappa': 1.0, 'maximise': False, 'top_k': 2}
    bound = rank_library(predictions, orm.Dict({**settings, 'hit_threshold': None}), keys)
    assert bound['rule'] == 'lower confidence bound' and bound['top'] == ['wild', 'near']
    ranked = rank_library(predictions, orm.Dict({**settings, 'hit_threshold': 1.0}), keys)
    assert ranked['rule'] == 'probability of a hit' and ranked['top'] == ['sure', 'near']
    assert [row['rank'] for row in ranked['ranking']] == [0, 1, 2, 3]
    assert ranked['ranking'][0]['probability_of_hit'] > ranked['ranking'][1]['probability_of_hit'] > 0.3
def test_first_expensive_picks_cover_every_element(aiida_profile, make_structure):
    """Before the first Δ model, the expensive picks include a structure of every element of the candidates (a Δ model
    trained on H, C, O cannot correct a structure with N), in place of the last farthest-point picks."""
    from aiida import orm
    from aiida_mlqm.workflows.campaign_functions import select_expensive

    candidates = {f'w{i}': make_structure('H2O') for i in range(6)}
    candidates.update({f'm{i}': make_structure('CH4') for i in range(3)})
    candidates['n0'] = make_structure('NH3')
    for structure in candidates.values():
        structure.store()
    result = select_expensive(orm.Dict({'count': 3, 'diversity': 0.5, 'seed': 0}), **candidates).get_dict()
    keys = [row['key'] for row in result['chosen']]
    assert len(keys) == 3 and len(set(keys)) == 3
    assert set().union(*(candidates[key].get_symbols_set() for key in keys)) == {'H', 'C', 'N', 'O'}
    # one pick only: the rarest missing element decides it
    one = select_expensive(orm.Dict({'count': 1, 'diversity': 0.5, 'seed': 0}), **candidates).get_dict()['chosen']
    assert [row['key'] for row in one] == ['n0']
