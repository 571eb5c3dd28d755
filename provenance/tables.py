"""The answers of :mod:`.queries` as tables: a title, column names and rows of plain values (for rich and CSV)."""

from __future__ import annotations

import csv
import pathlib
import re
import typing as t


class Table(t.NamedTuple):
    title: str
    columns: tuple[str, ...]
    rows: list[tuple]


def _seconds(value) -> str | float | None:
    return None if value is None else round(float(value), 3)


def _join(values, limit: int = 8) -> str:
    values = [str(v) for v in values]
    return ' '.join(values[:limit]) + (f' ... (+{len(values) - limit})' if len(values) > limit else '')


def lineage_tables(answer: dict) -> list[Table]:
    node = answer['node']
    return [
        Table(f'Lineage of {node["type"]} {node["pk"]}', ('what', 'count'), list(answer['counts'].items())),
        Table('Levels of theory', ('level', 'calculations', 'frames'),
              [(level, v['calculations'], v['frames']) for level, v in answer['levels'].items()]),
        Table('Training jobs', ('pk', 'uuid', 'exit status'),
              [(r['pk'], r['uuid'], r['exit_status']) for r in answer['training_jobs']]),
        Table('Datasets', ('pk', 'uuid', 'frames', 'levels', 'trained on'),
              [(r['pk'], r['uuid'], r['frames'], _levels(r['level_counts']), r['trained_on']) for r in answer['datasets']]),
        Table('Reference calculations', ('pk', 'uuid', 'job', 'level', 'exit status'),
              [(r['pk'], r['uuid'], r['process_type'], r['level'], r['exit_status'])
               for r in answer['reference_calculations']]),
        Table('Structures', ('pk', 'uuid', 'label', 'smiles'),
              [(r['pk'], r['uuid'], r['label'], r['smiles']) for r in answer['structures']]),
    ]  # fmt: skip


def _levels(counts: dict | None) -> str:
    return ', '.join(f'{level}: {n}' for level, n in sorted((counts or {}).items()))


def failures_tables(answer: dict) -> list[Table]:
    return [
        Table(f'Failed processes ({answer["processes_examined"]} examined)',
              ('process', 'exit status', 'state', 'count', 'message', 'pks'),
              [(g['process_label'], g['exit_status'], g['process_state'], g['count'], g['exit_message'], _join(g['pks']))
               for g in answer['processes']]),
        Table('Structures that failed inside batch jobs', ('exit code', 'exit label', 'count', 'example'),
              [(g['exit_code'], g['exit_label'], g['count'],
                f'{g["examples"][0]["key"]} (job {g["examples"][0]["job_pk"]}): {g["examples"][0]["message"]}')
               for g in answer['structures']]),
        Table('Not labelled after retries', ('key', 'status', 'message', 'reference chain'),
              [(u['key'], u['status'], u['message'], u['process_pk']) for u in answer['unlabelled']]),
    ]  # fmt: skip


def cost_tables(answer: dict) -> list[Table]:
    return [
        Table(f'CPU seconds by stage and level (total {answer["total_cpu_seconds"]:.1f} s)',
              ('stage', 'level', 'jobs', 'structures', 'cpu s', 'wall s', 'scheduler core s'),
              [(g['stage'], g['level'], g['jobs'], g['structures'], _seconds(g['cpu_seconds']),
                _seconds(g['wall_seconds']), _seconds(g['scheduler_core_seconds']))
               for g in answer['by_stage_and_level']]),
        Table('Jobs', ('pk', 'job', 'stage', 'iteration', 'level', 'structures', 'cores', 'cpu s', 'wall s',
                       'estimated', 'exit status'),
              [(r['pk'], r['job'], r['stage'], r['iteration'], r['level'], r['structures'], r['cores'],
                _seconds(r['cpu_seconds']), _seconds(r['wall_seconds']), r['estimated'], r['exit_status'])
               for r in answer['jobs']]),
    ]  # fmt: skip


def invalidate_tables(answer: dict) -> list[Table]:
    node = answer['node']
    records = [(kind, r['pk'], r['uuid']) for kind, found in answer['records'].items() for r in found]
    return [
        Table(f'Depends on {node["type"]} {node["pk"]}', ('what', 'count'), list(answer['counts'].items())),
        Table('Datasets', ('pk', 'uuid'), [(r['pk'], r['uuid']) for r in answer['datasets']]),
        Table('Models', ('pk', 'uuid', 'kind'), [(r['pk'], r['uuid'], r['kind']) for r in answer['models']]),
        Table('Predictions', ('pk', 'uuid'), [(r['pk'], r['uuid']) for r in answer['predictions']]),
        Table('Decision records', ('kind', 'pk', 'uuid'), records),
    ]


def why_tables(answer: dict) -> list[Table]:
    node, origin = answer['node'], answer['origin'] or {}
    return [
        Table(f'Structure {node["pk"]} ({answer["formula"]})', ('what', 'value'),
              [('uuid', node['uuid']), ('smiles', answer['smiles']),
               ('made by', f'{origin.get("process_label")} {origin.get("pk")}' if origin else 'stored directly'),
               ('source', origin.get('source'))]),
        Table('Selected by', ('iteration', 'rule', 'score', 'score name', 'units', 'model', 'record'),
              [(s.get('iteration'), s.get('rule'), s.get('score'), s.get('score_name'), s.get('score_units'),
                s.get('model_uuid'), s['record_pk']) for s in answer['selected_by']]),
        Table('Routed by', ('route', 'level', 'score', 'reason', 'record'),
              [(r.get('route'), r.get('level'), r.get('score'), r.get('reason'), r['record_pk'])
               for r in answer['routed_by']]),
        Table('Labelled by', ('job pk', 'job', 'key', 'level', 'energy eV', 'exit status', 'iteration', 'called by'),
              [(r['pk'], r['job'], r['key'], r['level'], r['total_energy_eV'], r['exit_status'], r['iteration'],
                ' <- '.join(f'{c["call_link_label"]}:{c["pk"]}' for c in r['callers'])) for r in answer['labelled_by']]),
    ]  # fmt: skip


def routing_tables(answer: dict) -> list[Table]:
    return [
        Table('Routes', ('route', 'molecules'), list(answer['counts'].items())),
        Table('Routing decisions', ('key', 'structure uuid', 'route', 'level', 'score', 'reason'),
              [(r.get('key'), r.get('structure_uuid'), r.get('route'), r.get('level'), r.get('score'), r.get('reason'))
               for r in answer['routes']]),
    ]  # fmt: skip


def summary_tables(answer: dict) -> list[Table]:
    node = answer['node']
    return [
        Table(f'{node["type"]} {node["pk"]}: {answer["process_state"]} (exit status {answer["exit_status"]})',
              ('what', 'value'),
              [('CPU seconds', round(answer['total_cpu_seconds'], 1)), ('failed processes', answer['failed_processes']),
               ('failed structures in batches', answer['failed_structures']), ('not labelled', answer['unlabelled']),
               *((f'{kind} records', n) for kind, n in answer['records'].items())]),
        Table('Processes', ('process', 'state', 'exit status', 'count'),
              [(p['process'], p['state'], p['exit_status'], p['count']) for p in answer['processes']]),
        Table('Datasets', ('pk', 'frames', 'levels'),
              [(d['pk'], d['frames'], _levels(d['level_counts'])) for d in answer['datasets']]),
        Table('Models', ('pk', 'kind', 'validation'),
              [(m['pk'], m['kind'], _metrics(m['validation'])) for m in answer['models']]),
    ]  # fmt: skip


def _metrics(values: dict | None) -> str:
    return ', '.join(f'{k} {v:.4g}' for k, v in (values or {}).items() if isinstance(v, (int, float)))


TABLES: dict[str, t.Callable[[dict], list[Table]]] = {
    'lineage': lineage_tables,
    'failures': failures_tables,
    'cost': cost_tables,
    'invalidate': invalidate_tables,
    'why': why_tables,
    'routing': routing_tables,
    'summary': summary_tables,
}


def tables(answer: dict) -> list[Table]:
    """The tables of any answer of :mod:`.queries` (its ``query`` key says which)."""
    return TABLES[answer['query']](answer)


def write_csv(answer: dict, directory: str | pathlib.Path) -> list[pathlib.Path]:
    """One CSV file per table of ``answer`` in ``directory`` (created), named ``<query>_<table>.csv``."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for index, table in enumerate(tables(answer)):
        slug = re.sub(r'[^a-z0-9]+', '_', table.title.lower().split('(')[0]).strip('_') or f'table{index}'
        path = directory / f'{answer["query"]}_{index}_{slug}.csv'
        with path.open('w', newline='', encoding='utf-8') as handle:
            writer = csv.writer(handle)
            writer.writerow(table.columns)
            writer.writerows(table.rows)
        written.append(path)
    return written
