"""Walking the provenance graph in bulk: every ancestor or descendant of some nodes along chosen link types.

AiiDA's ``Node.base.links`` loads one node at a time; a campaign's model has thousands of ancestors, so the walks here
ask the storage one question per generation (a ``QueryBuilder`` over the frontier, chunked), or, on PostgreSQL, one
recursive SQL query over AiiDA's own ``db_dblink`` table (:func:`walk_sql`), which the ``provenance_scale`` benchmark
measures against the generation-by-generation walk. Both return the same :class:`Subgraph`: the nodes reached (with
type strings, never loaded as ORM objects) and the links between them.
"""

from __future__ import annotations

import dataclasses
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
        return sorted((row for row in self.nodes.values() if row.node_type == cls.class_node_type), key=lambda r: r.id)

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
) -> Subgraph:
    """All nodes reachable from ``start`` (pks) along ``link_types``.

    :param direction: ``'up'`` to ancestors (against the links), ``'down'`` to descendants.
    :param method: ``'querybuilder'`` (one query per generation, any back end), ``'sql'`` (one recursive query, see
        :func:`walk_sql`) or ``'auto'``: SQL on PostgreSQL, where it is measured faster, the QueryBuilder elsewhere.
    """
    if direction not in ('up', 'down'):
        raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")
    if method == 'auto':
        method = 'sql' if is_postgres() else 'querybuilder'
    if method == 'sql':
        return walk_sql(start, direction=direction, link_types=link_types)
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


def is_postgres() -> bool:
    from aiida.manage import get_manager

    storage = get_manager().get_profile_storage()
    return storage.__class__.__name__ == 'PsqlDosBackend'


def walk_sql(start: t.Iterable[int], *, direction: str = 'up', link_types: t.Sequence[str] = DATA_PROVENANCE) -> Subgraph:
    """:func:`walk` as one recursive query (``WITH RECURSIVE``) over AiiDA's ``db_dblink`` and ``db_dbnode`` tables.

    Read-only; the tables are AiiDA's own (both ``core.psql_dos`` and ``core.sqlite_dos`` use them), so the answer is
    the QueryBuilder walk's, which the tests check on both back ends.
    """
    from aiida.manage import get_manager
    from sqlalchemy import bindparam, text

    near, far = ('output_id', 'input_id') if direction == 'up' else ('input_id', 'output_id')
    cte = (
        'WITH RECURSIVE reached(id) AS ('
        ' SELECT id FROM db_dbnode WHERE id IN :start'
        ' UNION'
        f' SELECT l.{far} FROM db_dblink l JOIN reached r ON l.{near} = r.id WHERE l.type IN :types'
        ') '
    )
    session = get_manager().get_profile_storage().get_session()
    params = {'start': list(start), 'types': list(link_types)}

    def run(sql: str):
        statement = text(cte + sql).bindparams(bindparam('start', expanding=True), bindparam('types', expanding=True))
        return session.execute(statement, params).fetchall()

    node_rows = run('SELECT n.id, n.uuid, n.node_type, n.process_type FROM db_dbnode n JOIN reached r ON n.id = r.id')
    link_rows = run(
        f'SELECT l.input_id, l.output_id, l.type, l.label FROM db_dblink l JOIN reached r ON l.{near} = r.id'
        ' WHERE l.type IN :types'
    )
    nodes = {row[0]: NodeRow(row[0], str(row[1]), row[2], row[3]) for row in node_rows}
    return Subgraph(nodes, [LinkRow(*row) for row in link_rows])
