"""Lineage of one model in a PostgreSQL graph of 10,000 and 100,000 nodes shaped like campaigns.

The graph comes from benchmarks/_synthetic_graph.py through AiiDA's storage API (``bulk_insert``, as archive import
uses) into a throw-away ``core.psql_dos`` profile. At each size the lineage of the last model of the first campaign
(everything behind it: about 3,000 nodes over ten iterations) is asked four ways, side by side:

- ``lineage_sql``: :func:`aiida_mlqm.provenance.queries.lineage` with one recursive SQL query (the default on
  PostgreSQL), including the details it reports (levels, structures, jobs);
- ``lineage_sql_stale_stats``: the same before the tables are analysed (just after the insert, as after an archive
  import on a server whose autovacuum has not run yet);
- ``lineage_querybuilder``: the same answer walked one generation per QueryBuilder query;
- ``querybuilder_ancestors``: a plain ``QueryBuilder`` ``with_descendants`` query (AiiDA's own recursive ancestor
  query over all links), node ids only;
- ``graph_generate``: ``aiida.tools.visualization.Graph.recurse_ancestors`` over create/input links, what
  ``verdi node graph generate`` runs before drawing (node by node).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import statistics
import tempfile
import time

DESCRIPTION = 'lineage of a model in a 10k and a 100k node PostgreSQL graph, against QueryBuilder and graph generate'


@contextlib.contextmanager
def temporary_postgres_profile():
    """A ``core.psql_dos`` profile without a broker on a new database of the local PostgreSQL, dropped afterwards."""
    from aiida_mlqm.services.postgres import PostgresSettings, drop_database, ensure_database

    name = f'mlqm_bench_{os.getpid()}_{secrets.token_hex(3)}'
    settings = ensure_database(PostgresSettings(name=name, user=name))
    with tempfile.TemporaryDirectory(prefix='mlqm-benchmark-') as tmp:
        from aiida import load_profile
        from aiida.manage import get_manager
        from aiida.manage.configuration import create_profile, get_config, reset_config
        from aiida.manage.configuration import settings as aiida_settings

        reset_config()
        config_dir = pathlib.Path(tmp) / aiida_settings.DEFAULT_CONFIG_DIR_NAME
        os.environ[aiida_settings.DEFAULT_AIIDA_PATH_VARIABLE] = str(config_dir)
        aiida_settings.AiiDAConfigDir.set(config_dir)
        repository = pathlib.Path(tmp) / 'repository'
        repository.mkdir()
        config = get_config(create=True)
        storage = {
            'database_engine': 'postgresql_psycopg',
            'database_hostname': settings.host,
            'database_port': settings.port,
            'database_username': settings.user,
            'database_password': settings.password,
            'database_name': settings.name,
            'repository_uri': repository.as_uri(),
        }
        create_profile(config, storage_backend='core.psql_dos', storage_config=storage, broker_backend=None,
                       name=name, email='bench@localhost')  # fmt: skip
        config.store()
        try:
            yield load_profile(name, allow_switch=True)
        finally:
            get_manager().reset_profile()
            reset_config()
            drop_database(settings)


def _best(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times) if repeat < 3 else statistics.median(times)


def measure(model_pk: int, *, graph_generate: bool) -> dict:
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.tools.visualization import Graph
    from aiida_mlqm.provenance.queries import lineage

    lineage(model_pk, method='sql')  # warm the connection and caches for everyone alike
    answer = lineage(model_pk, method='sql')
    same = lineage(model_pk, method='querybuilder')
    assert answer['counts'] == same['counts'], (answer['counts'], same['counts'])

    def plain_querybuilder():
        query = orm.QueryBuilder().append(orm.Node, filters={'id': model_pk}, tag='model')
        query.append(orm.Node, with_descendants='model', project='id')
        return query.all(flat=True)

    row = {
        'lineage_nodes': answer['counts']['nodes'],
        'structures': answer['counts']['structures'],
        'lineage_sql_s': _best(lambda: lineage(model_pk, method='sql'), 5),
        'lineage_querybuilder_s': _best(lambda: lineage(model_pk, method='querybuilder'), 3),
        'querybuilder_ancestors_s': _best(plain_querybuilder, 3),
        'querybuilder_ancestors_nodes': len(set(plain_querybuilder())),
    }
    if graph_generate:

        def recurse():
            graph = Graph()
            graph.recurse_ancestors(orm.load_node(model_pk), link_types=(LinkType.CREATE, LinkType.INPUT_CALC))
            return graph

        row['graph_generate_s'] = _best(recurse, 1)
        row['graph_generate_nodes'] = len(recurse().nodes)
    return row


def _analyze() -> None:
    from aiida.manage import get_manager
    from sqlalchemy import text

    session = get_manager().get_profile_storage().get_session()
    session.commit()
    session.execute(text('ANALYZE db_dbnode'))
    session.execute(text('ANALYZE db_dblink'))
    session.commit()


def run(quick: bool = False) -> dict:
    from aiida import orm

    from aiida_mlqm.provenance.queries import lineage

    from ._synthetic_graph import populate

    table = []
    with temporary_postgres_profile():
        first_model = None
        results = {}
        for target, minimum in (('10k', 10_000), ('100k', 100_000)):
            start = time.perf_counter()
            existing = orm.QueryBuilder().append(orm.Node).count()
            count = existing
            while count < minimum:  # whole campaigns (about 3,400 nodes each) until the graph has at least `minimum`
                models = populate(1)
                first_model = first_model or models[0]
                count = orm.QueryBuilder().append(orm.Node).count()
            insert_seconds = time.perf_counter() - start
            nodes = orm.QueryBuilder().append(orm.Node).count()
            links = orm.QueryBuilder().append(orm.Node, tag='a').append(orm.Node, with_incoming='a').count()
            print(f'{target}: {nodes} nodes, {links} links, inserted in {insert_seconds:.1f} s', flush=True)
            # Right after a bulk insert the planner has no statistics (autovacuum's ANALYZE has not run; it is off on
            # some servers): the state just after an archive import. Then as a live database has them.
            stale = _best(lambda: lineage(first_model, method='sql'), 3)
            _analyze()
            row = {'lineage_sql_stale_stats_s': stale, **measure(first_model, graph_generate=not (quick and target == '100k'))}
            print(f'{target}: {row}', flush=True)
            results[target] = row
            table.append({'graph': target, 'nodes': nodes, 'links': links, 'insert_s': round(insert_seconds, 1),
                          'added': nodes - existing, **{k: (round(v, 4) if isinstance(v, float) else v)
                                                         for k, v in row.items()}})  # fmt: skip
    figures = {
        'lineage_seconds_100k_stale_statistics': {'value': results['100k']['lineage_sql_stale_stats_s'], 'unit': 's',
                                                  'target': '<= 1'},
        'lineage_seconds_10k': {'value': results['10k']['lineage_sql_s'], 'unit': 's', 'target': '<= 1'},
        'lineage_seconds_100k': {'value': results['100k']['lineage_sql_s'], 'unit': 's', 'target': '<= 1'},
        'querybuilder_walk_over_sql_100k': {
            'value': results['100k']['lineage_querybuilder_s'] / results['100k']['lineage_sql_s'], 'unit': 'x'},
        'plain_querybuilder_over_lineage_100k': {
            'value': results['100k']['querybuilder_ancestors_s'] / results['100k']['lineage_sql_s'], 'unit': 'x'},
    }  # fmt: skip
    if 'graph_generate_s' in results['100k']:
        figures['graph_generate_over_lineage_100k'] = {
            'value': results['100k']['graph_generate_s'] / results['100k']['lineage_sql_s'], 'unit': 'x'}  # fmt: skip
    figures['graph_generate_over_lineage_10k'] = {
        'value': results['10k']['graph_generate_s'] / results['10k']['lineage_sql_s'], 'unit': 'x'}  # fmt: skip
    return {'_table': table, **figures}
