"""Walking the provenance graph in bulk: every ancestor or descendant of some nodes along chosen link types.

AiiDA's ``Node.base.links`` loads one node at a time; a campaign's model has thousands of ancestors, so the walks here
ask the storage one question per generation (a ``QueryBuilder`` over the frontier, chunked), or, on PostgreSQL, one
recursive SQL query over AiiDA's own ``db_dblink`` table (:func:`walk_sql`), which the ``provenance_scale`` benchmark
measures against the generation-by-generation walk. Both return the same :class:`Subgraph`: the nodes reached (with
type strings, never loaded as ORM objects) and the links between them.
"""

from __future__ import annotations

import dataclasses
import gc
import re
import typing as t

from aiida import orm
from aiida.common.links import LinkType

# The links that say where a piece of data came from: a process CREATEs its outputs, a calculation has INPUT_CALC
# inputs. Workflow links (CALL, RETURN, INPUT_WORK) only say who orchestrated what and are not data provenance.
DATA_PROVENANCE = (LinkType.CREATE.value, LinkType.INPUT_CALC.value)
CALLS = (LinkType.CALL_CALC.value, LinkType.CALL_WORK.value)
CHUNK = 5000  # ids per IN (...) clause: SQLite accepts 32766 bound parameters


class NodeRow(t.NamedTuple):
    id: int
    uuid: str
    node_type: str
    process_type: str | None
    attributes: dict | None = None  # the attributes asked of walk_sql (None: not fetched)


class LinkRow(t.NamedTuple):
    source: int
    target: int
    type: str
    label: str


@dataclasses.dataclass
class Subgraph:
    """Nodes reached by a walk (the start nodes included) and the links followed."""

    nodes: dict[int, NodeRow]
    links: list[LinkRow]
    _by_source: dict[int, list[LinkRow]] | None = dataclasses.field(default=None, repr=False)
    _by_target: dict[int, list[LinkRow]] | None = dataclasses.field(default=None, repr=False)

    def of_class(self, cls: type[orm.Node]) -> list[NodeRow]:
        """Nodes whose class is exactly ``cls`` (AiiDA's ``node_type``), sorted by id."""
        node_type = cls.class_node_type  # a class property that AiiDA computes on every access: once here
        return sorted((row for row in self.nodes.values() if row.node_type == node_type), key=lambda r: r.id)

    def with_process_type(self, *process_types: str) -> list[NodeRow]:
        return sorted((row for row in self.nodes.values() if row.process_type in process_types), key=lambda r: r.id)

    def _index(self) -> None:
        self._by_source, self._by_target = {}, {}
        for link in set(self.links):
            self._by_source.setdefault(link.source, []).append(link)
            self._by_target.setdefault(link.target, []).append(link)

    def incoming(self, target: int) -> list[LinkRow]:
        if self._by_target is None:
            self._index()
        return self._by_target.get(target, [])

    def outgoing(self, source: int) -> list[LinkRow]:
        if self._by_source is None:
            self._index()
        return self._by_source.get(source, [])


def _rows(ids: t.Iterable[int]) -> dict[int, NodeRow]:
    ids = list(ids)
    rows = {}
    for start in range(0, len(ids), CHUNK):
        query = orm.QueryBuilder().append(
            orm.Node,
            filters={'id': {'in': ids[start : start + CHUNK]}},
            project=['id', 'uuid', 'node_type', 'process_type'],
        )
        for pk, uuid, node_type, process_type in query.all():
            rows[pk] = NodeRow(pk, str(uuid), node_type, process_type)
    return rows


def walk(
    start: t.Iterable[int],
    *,
    direction: str = 'up',
    link_types: t.Sequence[str] = DATA_PROVENANCE,
    method: str = 'auto',
    attributes: t.Sequence[str] = (),
) -> Subgraph:
    """All nodes reachable from ``start`` (pks) along ``link_types``.

    ``attributes``: keys fetched with the nodes by the SQL walk (the QueryBuilder walk leaves ``NodeRow.attributes``
    None; :func:`node_attributes` reads them either way).

    :param direction: ``'up'`` to ancestors (against the links), ``'down'`` to descendants.
    :param method: ``'querybuilder'`` (one query per generation, any back end), ``'sql'`` (one recursive query, see
        :func:`walk_sql`) or ``'auto'``: SQL on PostgreSQL, where it is measured faster, the QueryBuilder elsewhere.
    """
    if direction not in ('up', 'down'):
        raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")
    if method == 'auto':
        method = 'sql' if is_postgres() else 'querybuilder'
    if method == 'sql':
        return walk_sql(start, direction=direction, link_types=link_types, attributes=attributes)
    if method != 'querybuilder':
        raise ValueError(f"method must be 'auto', 'sql' or 'querybuilder', not {method!r}")

    nodes = _rows(start)
    links: list[LinkRow] = []
    frontier = list(nodes)
    near = 'with_outgoing' if direction == 'up' else 'with_incoming'
    while frontier:
        found: set[int] = set()
        for offset in range(0, len(frontier), CHUNK):
            query = orm.QueryBuilder()
            query.append(orm.Node, filters={'id': {'in': frontier[offset : offset + CHUNK]}}, tag='near', project='id')
            query.append(
                orm.Node,
                tag='far',
                edge_tag='edge',
                edge_filters={'type': {'in': list(link_types)}},
                edge_project=['type', 'label'],
                project=['id', 'uuid', 'node_type', 'process_type'],
                **{near: 'near'},
            )
            for row in query.dict():
                near_id = row['near']['id']
                far_row = row['far']
                edge = row['edge']
                pk = far_row['id']
                source, target = (pk, near_id) if direction == 'up' else (near_id, pk)
                links.append(LinkRow(source, target, edge['type'], edge['label']))
                if pk not in nodes:
                    nodes[pk] = NodeRow(pk, str(far_row['uuid']), far_row['node_type'], far_row['process_type'])
                    found.add(pk)
        frontier = sorted(found)
    return Subgraph(nodes, links)


def node_attributes(graph: Subgraph, ids: t.Iterable[int], keys: t.Sequence[str]) -> dict[int, dict]:
    """``{pk: {key: value}}`` of the given nodes of ``graph``: from the walk when it fetched them, else one query."""
    ids = sorted(set(ids))
    if all(graph.nodes[pk].attributes is not None and set(keys) <= set(graph.nodes[pk].attributes) for pk in ids):
        return {pk: {key: graph.nodes[pk].attributes[key] for key in keys} for pk in ids}
    values: dict[int, dict] = {}
    for offset in range(0, len(ids), CHUNK):
        query = orm.QueryBuilder().append(
            orm.Node, filters={'id': {'in': ids[offset : offset + CHUNK]}}, project=['id', *(f'attributes.{k}' for k in keys)]
        )
        for pk, *row in query.all():
            values[pk] = dict(zip(keys, row))
    return values


def is_postgres() -> bool:
    from aiida.manage import get_manager

    storage = get_manager().get_profile_storage()
    return storage.__class__.__name__ == 'PsqlDosBackend'


def walk_sql(
    start: t.Iterable[int],
    *,
    direction: str = 'up',
    link_types: t.Sequence[str] = DATA_PROVENANCE,
    attributes: t.Sequence[str] = (),
) -> Subgraph:
    """:func:`walk` as one recursive query (``WITH RECURSIVE``) over AiiDA's ``db_dblink`` and ``db_dbnode`` tables.

    Read-only; the tables are AiiDA's own (both ``core.psql_dos`` and ``core.sqlite_dos`` use them), so the answer is
    the QueryBuilder walk's, which the tests check on both back ends.

    :param attributes: attribute keys to fetch for every node in the same query (``NodeRow.attributes``), which
        saves the caller a QueryBuilder round trip and its per-value conversion.

    On PostgreSQL each step looks the links up by node through a ``LATERAL ... OFFSET 0`` subquery, which pins the plan
    to the index on ``output_id`` (``input_id`` downwards). Without it, a database whose statistics are stale (just
    after a bulk insert or an archive import, before autovacuum's ANALYZE) intersects the output index with the index
    on ``type``, which matches nearly every link: 96 s instead of 0.05 s for a 3,000-node lineage in a 100,000-node
    graph, measured here.
    """
    from aiida.manage import get_manager
    from sqlalchemy import bindparam, text

    import json

    near, far = ('output_id', 'input_id') if direction == 'up' else ('input_id', 'output_id')
    session = get_manager().get_profile_storage().get_session()
    postgres = session.get_bind().dialect.name == 'postgresql'
    for key in attributes:
        if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', key):
            raise ValueError(f'attribute key {key!r} is not a plain name')
    if postgres:
        extract = [f"n.attributes -> '{key}'" for key in attributes]
        step = f'SELECT l.{far} FROM reached r CROSS JOIN LATERAL (SELECT {far}, type FROM db_dblink WHERE {near} = r.id OFFSET 0) l'
        links = f'SELECT l.* FROM reached r CROSS JOIN LATERAL (SELECT input_id, output_id, type, label FROM db_dblink WHERE {near} = r.id OFFSET 0) l'
        columns = ''.join(f', {expression} AS a{index}' for index, expression in enumerate(extract))
        nodes = f'SELECT n.* FROM reached r CROSS JOIN LATERAL (SELECT id, uuid, node_type, process_type{columns} FROM db_dbnode n WHERE id = r.id OFFSET 0) n'
    else:
        extract = [f"n.attributes -> '$.{key}'" for key in attributes]
        step = f'SELECT l.{far} FROM db_dblink l JOIN reached r ON l.{near} = r.id'
        links = f'SELECT l.input_id, l.output_id, l.type, l.label FROM db_dblink l JOIN reached r ON l.{near} = r.id'
        columns = ''.join(f', {expression} AS a{index}' for index, expression in enumerate(extract))
        nodes = f'SELECT n.id, n.uuid, n.node_type, n.process_type{columns} FROM db_dbnode n JOIN reached r ON n.id = r.id'
    node_extra = ''.join(f', a{index}' for index in range(len(attributes)))
    link_extra = ', NULL' * len(attributes)
    sql = (
        'WITH RECURSIVE reached(id) AS ('
        f' SELECT id FROM db_dbnode WHERE id IN :start UNION {step} WHERE l.type IN :types'
        f'), links AS ({links} WHERE l.type IN :types), nodes AS ({nodes}) '
        f"SELECT 'n', id, NULL, CAST(uuid AS TEXT), node_type, process_type{node_extra} FROM nodes "
        f"UNION ALL SELECT 'l', input_id, output_id, type, label, NULL{link_extra} FROM links"
    )
    statement = text(sql).bindparams(bindparam('start', expanding=True), bindparam('types', expanding=True))

    def decode(value):  # PostgreSQL hands JSONB over decoded; SQLite's -> gives JSON text
        return json.loads(value) if isinstance(value, str) and not postgres else value

    # Tens of thousands of small tuples at once set off the cyclic garbage collector again and again, each pass over
    # every object of the session; none of these can form a cycle, so it waits until they are built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        rows = session.execute(statement, {'start': list(start), 'types': list(link_types)}).fetchall()
        nodes_found = {
            row[1]: NodeRow(
                row[1], str(row[3]), row[4], row[5],
                {key: decode(value) for key, value in zip(attributes, row[6:])} if attributes else None,
            )  # fmt: skip
            for row in rows
            if row[0] == 'n'
        }
        return Subgraph(nodes_found, [LinkRow(row[1], row[2], row[3], row[4]) for row in rows if row[0] == 'l'])
    finally:
        if collecting:
            gc.enable()
