"""Decision records: the ``Dict`` nodes through which a campaign explains itself, and how queries find them.

A campaign's decisions (which level a molecule needs, which structures an iteration labels, how an iteration went,
which screening hits were verified) are ``Dict`` outputs of calcfunctions whose inputs are what the decision read.
Each carries a top-level ``record`` key naming its kind, so that queries and the report find them with one attribute
filter, whichever workchain or calcfunction made them. The keys below are the data contract between the campaign
stages (writers) and :mod:`.queries` and :mod:`.report` (readers); README.md of this folder shows full examples.

``record: 'routing'`` (method selection)
    ``routes``: list of ``{structure_uuid, key, route ('single_reference' | 'multireference'), level, score,
    reason}``; optional ``model_uuid`` (the classifier), ``threshold``.
``record: 'selection'`` (one per active-learning iteration)
    ``iteration`` (int), ``rule`` (text: what chose), ``score_name``, ``score_units``, ``selected``: list of
    ``{structure_uuid, key, score, rule, level}``; optional ``model_uuid``, ``candidates`` (how many were scored),
    ``threshold``, ``budget``.
``record: 'iteration'`` (one per iteration, after training)
    ``iteration``, ``labels`` ({level: count in the training set}), ``validation`` ({metric: value}),
    ``validation_units`` ({metric: unit}), ``target`` ({metric: value}, the stop rule's target), ``model_uuid``.
``record: 'screening'``
    ``objective``, ``units``, ``ranking``: list of ``{structure_uuid, key, rank, predicted, uncertainty, score,
    verified (value or null), hit (bool or null)}``; optional ``k``, ``hit_rate``, ``random_hit_rate``.
"""

from __future__ import annotations

import typing as t

from aiida import orm

RECORD_KEY = 'record'
RECORD_KINDS = ('routing', 'selection', 'iteration', 'screening')
REQUIRED_KEYS = {
    'routing': ('routes',),
    'selection': ('iteration', 'rule', 'selected'),
    'iteration': ('iteration', 'validation'),
    'screening': ('objective', 'ranking'),
}


def check_record(kind: str, values: t.Mapping) -> None:
    """Raise ``ValueError`` naming what a record of ``kind`` lacks (writers call this before returning the Dict)."""
    if kind not in RECORD_KINDS:
        raise ValueError(f'record kind {kind!r} is not one of {RECORD_KINDS}')
    missing = [key for key in REQUIRED_KEYS[kind] if key not in values]
    if missing:
        raise ValueError(f'a {kind} record needs the keys {missing}')


def make_record(kind: str, values: t.Mapping) -> orm.Dict:
    """An unstored ``Dict`` record of ``kind``: return it from the calcfunction that made the decision."""
    check_record(kind, values)
    return orm.Dict({RECORD_KEY: kind, **values})


def find_records(kind: str, scope: t.Iterable[int] | None = None) -> list[dict]:
    """Records of ``kind``, oldest first: ``{pk, uuid, ctime, creator_pk, values}``.

    :param scope: pks of processes; only records created by one of them count. ``None``: the whole profile.
    """
    if kind not in RECORD_KINDS:
        raise ValueError(f'record kind {kind!r} is not one of {RECORD_KINDS}')
    query = orm.QueryBuilder()
    query.append(orm.ProcessNode, tag='creator', project='id')
    query.append(
        orm.Dict,
        with_incoming='creator',
        edge_filters={'type': 'create'},
        filters={f'attributes.{RECORD_KEY}': kind},
        project=['id', 'uuid', 'ctime', 'attributes'],
    )
    allowed = set(scope) if scope is not None else None
    found = []
    for creator, pk, uuid, ctime, attributes in query.all():
        if allowed is not None and creator not in allowed:
            continue
        found.append({'pk': pk, 'uuid': str(uuid), 'ctime': ctime.isoformat(), 'creator_pk': creator,
                      'values': attributes})  # fmt: skip
    return sorted(found, key=lambda record: (record['ctime'], record['pk']))
