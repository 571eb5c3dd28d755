"""Adapters: the decisions of ``mlqm.campaign`` read as the records of :mod:`.records`.

The campaign stores its decisions in its own shapes (``select_next_batch``'s ``chosen``, ``choose_initial_set``'s
``records``, ``campaign_report``'s ``iterations``, ``screening_summary``'s ``verified``); these functions turn them into
the record contract, so that ``mlqm query why`` and the report read one shape. Registered on import of
:mod:`.records`.
"""

from __future__ import annotations

import re
import typing as t

if t.TYPE_CHECKING:
    from .records import RecordSource

ITERATION = re.compile(r'iteration_(\d+)')


def _iteration(source: RecordSource, default: int = 0) -> int:
    match = ITERATION.match(source.call_link_label() or '')
    return int(match.group(1)) if match else default


def _uuid_of(inputs: dict, name: str) -> str | None:
    node = inputs.get(name)
    return node.uuid if node is not None else None


def select_next_batch(values: dict, source: RecordSource) -> dict:
    """``{chosen: [{key, uuid, rule, score, uncertainty, ...}], signal, trust: {..., unit}, counts}``."""
    chosen = values.get('chosen') or []
    inputs = source.creator_inputs()
    rules = sorted({str(entry.get('rule')) for entry in chosen if entry.get('rule')})
    return {
        'iteration': _iteration(source),
        'rule': ', '.join(rules) or 'nothing chosen',
        'score_name': values.get('signal'),
        'score_units': (values.get('trust') or {}).get('unit'),
        'model_uuid': _uuid_of(inputs, 'model'),
        'candidates': sum(1 for label in inputs if label not in {'model', 'dataset', 'parameters', 'predictions'}),
        'selected': [
            {'structure_uuid': entry.get('uuid'), 'key': entry.get('key'), 'rule': entry.get('rule'),
             'score': entry.get('score', entry.get('uncertainty')), 'uncertainty': entry.get('uncertainty')}
            for entry in chosen
        ],  # fmt: skip
    }


def choose_initial_set(values: dict, source: RecordSource) -> dict:
    """``{records: [{key, rule, order}]}`` over candidate structures passed as inputs named by their keys."""
    inputs = source.creator_inputs()
    entries = values.get('records') or []
    return {
        'iteration': 0,
        'rule': ', '.join(sorted({str(entry.get('rule')) for entry in entries})) or 'nothing chosen',
        'score_name': 'order',
        'score_units': '',
        'selected': [
            {'structure_uuid': _uuid_of(inputs, entry['key']), 'key': entry['key'], 'rule': entry.get('rule'),
             'score': entry.get('order')}
            for entry in entries if 'key' in entry
        ],  # fmt: skip
    }


def campaign_report(values: dict, source: RecordSource) -> list[dict]:
    """``{iterations: [{iteration, labels, validation_error, model_uuid, ...}]}``: one iteration record each; the
    target is the campaign's ``stop.target_error`` (its ``config`` input)."""
    from aiida import orm

    target = None
    caller = orm.load_node(source.creator_pk).caller
    if caller is not None and 'config' in caller.inputs:
        config = caller.inputs.config
        if isinstance(config, orm.Dict):
            target = (config.get_dict().get('stop') or {}).get('target_error')
    records = []
    for entry in values.get('iterations') or []:
        error = entry.get('validation_error')
        records.append(
            {
                'iteration': entry.get('iteration', len(records)),
                'labels': entry.get('labels') or {},
                'validation': {'mae': error} if error is not None else {},
                'validation_units': {'mae': 'eV'},  # the campaign's validation MAE: eV (energies, eV-valued objectives)
                'target': {'mae': target} if target is not None else {},
                'model_uuid': entry.get('model_uuid'),
            }
        )
    return records


def screening_summary(values: dict, source: RecordSource) -> dict:
    """``{verified: [{key, uuid, rank, predicted, spread, bound, computed, hit}], hit_rate, unit}`` with the full
    ranking from its ``ranking`` input (``rank_library``)."""
    inputs = source.creator_inputs()
    ranking = inputs['ranking'].get_dict() if 'ranking' in inputs else {'ranking': values.get('verified') or []}
    verified = {row.get('uuid'): row for row in values.get('verified') or []}
    objective = inputs['objective'].value if 'objective' in inputs else 'objective'
    rows = []
    for row in ranking.get('ranking') or []:
        check = verified.get(row.get('uuid'))
        rows.append(
            {'structure_uuid': row.get('uuid'), 'key': row.get('key'), 'rank': int(row.get('rank', 0)) + 1,
             'predicted': row.get('predicted'), 'uncertainty': row.get('spread'), 'score': row.get('bound'),
             'verified': check.get('computed') if check else None, 'hit': check.get('hit') if check else None}
        )  # fmt: skip
    return {
        'objective': objective,
        'units': values.get('unit', ''),
        'k': ranking.get('top_k', len(verified)),
        'hit_rate': values.get('hit_rate'),
        'ranking': rows,
    }


def register() -> None:
    from .records import register_adapter

    register_adapter('selection', 'select_next_batch', select_next_batch)
    register_adapter('selection', 'choose_initial_set', choose_initial_set)
    register_adapter('iteration', 'campaign_report', campaign_report)
    register_adapter('screening', 'screening_summary', screening_summary)
