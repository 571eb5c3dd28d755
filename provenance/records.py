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

Decisions that a stage stores in its own shape are read through an adapter (:func:`register_adapter`) keyed by the
process label of the calcfunction that made them, so the readers see one shape either way.
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


# Decisions stored in another shape: {kind: {process label of the creating calcfunction: adapter}}. An adapter
# takes the Dict's attributes and a RecordSource and returns the values of a record of ``kind`` (a list of them when
# one Dict holds several, e.g. one per iteration), or None to skip it.
ADAPTERS: dict[str, dict[str, t.Callable[[dict, RecordSource], dict | None]]] = {kind: {} for kind in RECORD_KINDS}


class RecordSource(t.NamedTuple):
    """Where a record came from, for adapters that need the graph (e.g. structure uuids by input link label)."""

    pk: int
    creator_pk: int

    def creator_inputs(self) -> dict[str, orm.Node]:
        """The creating calcfunction's inputs by link label."""
        creator = orm.load_node(self.creator_pk)
        return {link.link_label: link.node for link in creator.base.links.get_incoming().all()}

    def call_link_label(self) -> str | None:
        """The label under which the creating calcfunction was called (e.g. ``iteration_03``, ``select_03``)."""
        from aiida.common.links import LinkType

        creator = orm.load_node(self.creator_pk)
        links = creator.base.links.get_incoming(link_type=LinkType.CALL_CALC).all()
        return links[0].link_label if links else None


def register_adapter(kind: str, process_label: str, adapter: t.Callable[[dict, RecordSource], dict | None]) -> None:
    """Read the ``Dict`` outputs of calcfunction ``process_label`` as records of ``kind`` through ``adapter``."""
    if kind not in RECORD_KINDS:
        raise ValueError(f'record kind {kind!r} is not one of {RECORD_KINDS}')
    ADAPTERS[kind][process_label] = adapter


def find_records(kind: str, scope: t.Iterable[int] | None = None) -> list[dict]:
    """Records of ``kind``, oldest first: ``{pk, uuid, ctime, creator_pk, values}``.

    Dicts with ``record == kind`` and, through :data:`ADAPTERS`, outputs of the calcfunctions registered for ``kind``.

    :param scope: pks of processes; only records created by one of them count. ``None``: the whole profile.
    """
    if kind not in RECORD_KINDS:
        raise ValueError(f'record kind {kind!r} is not one of {RECORD_KINDS}')
    allowed = set(scope) if scope is not None else None
    found, seen = [], set()
    sources = [({f'attributes.{RECORD_KEY}': kind}, {}, None)]
    sources += [({}, {'attributes.process_label': label}, adapter) for label, adapter in ADAPTERS[kind].items()]
    for filters, creator_filters, adapter in sources:
        query = orm.QueryBuilder()
        query.append(orm.ProcessNode, tag='creator', filters=creator_filters, project='id')
        query.append(
            orm.Dict,
            with_incoming='creator',
            edge_filters={'type': 'create'},
            filters=filters,
            project=['id', 'uuid', 'ctime', 'attributes'],
        )
        for creator, pk, uuid, ctime, attributes in query.all():
            if (allowed is not None and creator not in allowed) or pk in seen:
                continue
            seen.add(pk)
            values = [attributes] if adapter is None else adapter(attributes, RecordSource(pk, creator))
            if values is None:
                continue
            for entry in values if isinstance(values, list) else [values]:
                found.append({'pk': pk, 'uuid': str(uuid), 'ctime': ctime.isoformat(), 'creator_pk': creator,
                              'values': entry})  # fmt: skip
    return sorted(found, key=lambda record: (record['ctime'], record['pk']))


def structure_behind_result(result: orm.Node) -> orm.StructureData | None:
    """The input structure of the job whose per-structure output is ``result`` (``parameters__<key>`` of a batch job
    pairs with its input ``structures__<key>``, ``parameters`` of a one-structure job with ``structure``)."""
    from aiida.common.links import LinkType

    creator = result.creator
    if creator is None:
        return None
    label = result.base.links.get_incoming(link_type=LinkType.CREATE).one().link_label
    _, _, key = label.partition('__')
    wanted = f'structures__{key}' if key else 'structure'
    links = creator.base.links.get_incoming(link_label_filter=wanted).all()
    return links[0].node if links else None


def _route_molecule(values: dict, source: RecordSource) -> dict:
    """Method selection's ``route_molecule`` decision (``route``, ``p_mr``, ``level`` or ``action``, ``reason``)."""
    features = source.creator_inputs().get('features')
    structure = structure_behind_result(features) if features is not None else None
    label = source.call_link_label() or ''
    route = {
        'structure_uuid': structure.uuid if structure is not None else None,
        'key': label[len('route_') :] if label.startswith('route_') else (structure.label if structure else None),
        'route': values.get('route'),
        'level': values.get('level') or values.get('action'),
        'score': values.get('p_mr'),
        'reason': values.get('reason'),
    }
    return {'routes': [route], 'model_uuid': values.get('classifier_uuid'), 'threshold': values.get('mr_threshold')}


register_adapter('routing', 'route_molecule', _route_molecule)
from .campaign_records import register as _register_campaign  # noqa: E402

_register_campaign()
