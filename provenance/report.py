"""The campaign report: one self-contained HTML file (inline SVG plots, no scripts, no external files), from the graph.

:func:`gather` collects plain numbers from the graph as README.md of this folder lays down (the data contract); the
``plot_*`` functions draw them with matplotlib as SVG; :func:`write_report` writes the page. A plot whose data is not
in the graph is still drawn, as a panel that names the record or job that would provide it, so that the page always
has the same sections.
"""

from __future__ import annotations

import datetime
import html
import io
import pathlib
import typing as t

import numpy as np
from aiida import orm

from .dataset import DatasetData
from .graph import CALLS, DATA_PROVENANCE, walk
from .model import ModelData
from .queries import PREDICT_JOB, TRAIN_JOB, _describe, _project, load
from .records import find_records

SECTIONS = (
    ('learning_curve', 'Learning curve'),
    ('parity', 'Parity: predicted against reference'),
    ('calibration', 'Uncertainty calibration'),
    ('selection', 'Selection history'),
    ('cost', 'Cost by stage and level'),
    ('routing', 'Routing'),
    ('screening', 'Screening ranking and verification'),
)


# ---------------------------------------------------------------------------------------------------- gathering
def _scope(node: orm.Node) -> tuple[list[int], list[int]]:
    """(process pks, pks of the data they created) that the report covers."""
    if isinstance(node, orm.ProcessNode):
        processes = sorted(walk([node.pk], direction='down', link_types=CALLS, method='querybuilder').nodes)
    else:
        up = walk([node.pk], direction='up', link_types=DATA_PROVENANCE)
        down = walk([node.pk], direction='down', link_types=DATA_PROVENANCE)
        processes = {
            pk for graph in (up, down) for pk, row in graph.nodes.items() if row.node_type.startswith('process.')
        }
        # decisions about the structures behind the node (e.g. their routing) were made by calcfunctions that read
        # the structures, not the node: they are neither its ancestors nor its descendants
        structures = [row.id for row in up.of_class(orm.StructureData)]
        if structures:
            query = orm.QueryBuilder()
            query.append(orm.StructureData, filters={'id': {'in': structures}}, tag='structure')
            query.append(orm.CalcFunctionNode, with_incoming='structure', project='id')
            processes.update(query.all(flat=True))
        processes = sorted(processes)
    created = walk(processes, direction='down', link_types=('create',), method='querybuilder')
    return processes, sorted(set(created.nodes) - set(processes))


def gather(node: orm.Node | int | str) -> dict:
    """The numbers of every section of the report of ``node`` (a campaign or any workchain, or a model)."""
    from .cost import cost

    node = load(node)
    processes, created = _scope(node)
    kinds = _project(created, node_type='node_type')
    model_type = ModelData.class_node_type
    models = [pk for pk, row in kinds.items() if row['node_type'] == model_type]
    if isinstance(node, ModelData) and node.pk not in models:
        models.append(node.pk)
    return {
        'node': _describe(node),
        'generated': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
        'learning_curve': _learning_curve(models, processes),
        'predictions': _predictions(processes) + _verified(find_records('screening', processes)),
        'selection': [r['values'] for r in find_records('selection', processes)],
        'cost': cost(node)['by_stage_and_level'],
        'routing': [route for r in find_records('routing', processes) for route in r['values'].get('routes', [])],
        'screening': [r['values'] for r in find_records('screening', processes)],
    }


def _learning_curve(models: list[int], processes: list[int]) -> dict:
    records = [r['values'] for r in find_records('iteration', processes)]
    if records:
        points = [
            {'iteration': r['iteration'], 'labels': sum((r.get('labels') or {}).values()), 'validation': r['validation'],
             'units': r.get('validation_units', {}), 'target': r.get('target', {})}
            for r in sorted(records, key=lambda r: r['iteration'])
        ]  # fmt: skip
        return {'source': 'iteration records', 'points': points}
    # Without iteration records: each model's held-out metrics against the size of its training set.
    query = orm.QueryBuilder()
    query.append(ModelData, filters={'id': {'in': models or [-1]}}, tag='model', project=['id', 'attributes.metrics'])
    query.append(orm.CalcJobNode, with_outgoing='model', tag='train', filters={'process_type': TRAIN_JOB})
    query.append(DatasetData, with_outgoing='train', edge_filters={'label': 'dataset'}, project='attributes.num_frames')
    points = []
    for index, (pk, metrics, frames) in enumerate(sorted(query.all(), key=lambda row: row[0])):
        validation = {k: v for k, v in ((metrics or {}).get('validation') or {}).items() if isinstance(v, (int, float))}
        points.append({'iteration': index, 'labels': frames, 'validation': validation, 'units': {}, 'target': {},
                       'model_pk': pk})  # fmt: skip
    return {'source': 'model metrics', 'points': points}


def _predictions(processes: list[int]) -> list[dict]:
    """Predictions of ``mlqm.predict`` jobs run on a dataset, beside the dataset's reference energies (eV)."""
    query = orm.QueryBuilder()
    query.append(orm.CalcJobNode, filters={'id': {'in': processes or [-1]}, 'process_type': PREDICT_JOB}, tag='job',
                 project='id')  # fmt: skip
    query.append(DatasetData, with_outgoing='job', edge_filters={'label': 'dataset'}, project='*')
    query.append(orm.ArrayData, with_incoming='job', edge_filters={'label': 'predictions'}, project='*')
    found = []
    for pk, dataset, predictions in query.all():
        names = predictions.get_arraynames()
        if 'energy' not in names:
            continue
        entry = {
            'job_pk': pk,
            'reference': dataset.get_array('energy').tolist(),
            'predicted': predictions.get_array('energy').tolist(),
            'atoms': np.diff(dataset.get_array('offsets')).tolist(),
            'units': 'eV',
        }
        for name in ('energy_spread', 'energy_interval'):
            if name in names:
                entry[name] = predictions.get_array(name).tolist()
        found.append(entry)
    return found


def _verified(records: list[dict]) -> list[dict]:
    """Screening hits verified by reference QM, as predictions beside references (one value per molecule)."""
    found = []
    for record in records:
        rows = [row for row in record['values'].get('ranking', []) if row.get('verified') is not None]
        if not rows:
            continue
        entry = {
            'job_pk': f'screening {record["pk"]}',
            'reference': [float(row['verified']) for row in rows],
            'predicted': [float(row['predicted']) for row in rows],
            'atoms': None,
            'units': record['values'].get('units', ''),
        }
        if all(row.get('uncertainty') is not None for row in rows):
            entry['energy_spread'] = [float(row['uncertainty']) for row in rows]
        found.append(entry)
    return found


# ------------------------------------------------------------------------------------------------------ drawing
def _figure(width: float = 6.4, height: float = 4.0):
    import matplotlib

    matplotlib.use('Agg', force=False)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(width, height))
    return figure, axes


def _svg(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format='svg', metadata={'Date': None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index('<svg') :]


def _missing(message: str) -> str:
    figure, axes = _figure(6.4, 1.6)
    axes.axis('off')
    axes.text(0.5, 0.5, message, ha='center', va='center', wrap=True, fontsize=10, color='#555555')
    return _svg(figure)


def _integer_ticks(axes) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_learning_curve(data: dict) -> tuple[str, bool]:
    points = data['learning_curve']['points']
    if not points:
        return _missing('no models or iteration records in this graph'), False
    metric = next((m for m in ('energy_mae', 'forces_mae', 'mae') if m in points[-1]['validation']),
                  next(iter(points[-1]['validation']), None))  # fmt: skip
    if metric is None:
        return _missing('the models carry no validation metrics'), False
    figure, axes = _figure()
    x = [p['iteration'] for p in points]
    y = [p['validation'].get(metric, np.nan) for p in points]
    axes.plot(x, y, 'o-', label=f'validation {metric}')
    target = next((p['target'][metric] for p in points if metric in (p.get('target') or {})), None)
    if target is not None:
        axes.axhline(target, color='C3', linestyle='--', label=f'target {target:g}')
    for p in points:
        axes.annotate(f'{p["labels"]} labels', (p['iteration'], p['validation'].get(metric, np.nan)), fontsize=8,
                      textcoords='offset points', xytext=(4, 4))  # fmt: skip
    unit = points[-1].get('units', {}).get(metric) or ('eV/Å' if 'forces' in metric else 'eV')
    values = [v for v in [*y, target] if v is not None and np.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        axes.set_yscale('log')
    _integer_ticks(axes)
    axes.set_xlabel('iteration')
    axes.set_ylabel(f'{metric} ({unit})')
    axes.set_title(f'from {data["learning_curve"]["source"]}', fontsize=9)
    axes.legend()
    return _svg(figure), True


def plot_parity(data: dict) -> tuple[str, bool]:
    if not data['predictions']:
        return _missing('no mlqm.predict job on a dataset in this graph'), False
    figure, axes = _figure(5.0, 4.6)
    for index, entry in enumerate(data['predictions']):
        reference, predicted = np.array(entry['reference']), np.array(entry['predicted'])
        if entry['atoms'] is not None:
            error = np.abs(predicted - reference) / np.array(entry['atoms'])
            label = f'job {entry["job_pk"]}: MAE {1000 * error.mean():.1f} meV/atom'
        else:
            label = f'{entry["job_pk"]}: MAE {np.abs(predicted - reference).mean():.3g} {entry["units"]}'
        axes.scatter(reference, predicted, s=14, label=label)
    low = min(min(e['reference'] + e['predicted']) for e in data['predictions'])
    high = max(max(e['reference'] + e['predicted']) for e in data['predictions'])
    axes.plot([low, high], [low, high], color='0.4', linewidth=0.8)
    axes.set_xlabel('reference (eV)')
    axes.set_ylabel('predicted (eV)')
    axes.legend(fontsize=8)
    return _svg(figure), True


def plot_calibration(data: dict) -> tuple[str, bool]:
    entries = [e for e in data['predictions'] if 'energy_spread' in e]
    if not entries:
        return _missing('no predictions with a committee spread in this graph'), False
    figure, axes = _figure()
    notes = []
    for entry in entries:
        error = np.abs(np.array(entry['predicted']) - np.array(entry['reference']))
        spread = np.array(entry['energy_spread'])
        axes.scatter(spread, error, s=14, alpha=0.7, label=f'job {entry["job_pk"]}')
        if 'energy_interval' in entry:
            coverage = float(np.mean(error <= np.array(entry['energy_interval'])))
            notes.append(f'interval coverage {coverage:.0%}')
    top = max(max(np.abs(np.array(e['predicted']) - np.array(e['reference'])).max(), max(e['energy_spread']))
              for e in entries)  # fmt: skip
    axes.plot([0, top], [0, top], color='0.4', linewidth=0.8, label='|error| = spread')
    axes.set_xlabel('calibrated committee spread (eV)')
    axes.set_ylabel('|predicted - reference| (eV)')
    axes.set_title('; '.join(notes), fontsize=9)
    axes.legend(fontsize=8)
    return _svg(figure), True


def plot_selection(data: dict) -> tuple[str, bool]:
    records = data['selection']
    if not records:
        return _missing('no selection records (campaign active learning) in this graph'), False
    figure, axes = _figure()
    for record in records:
        scores = [entry.get('score') for entry in record.get('selected', []) if entry.get('score') is not None]
        axes.scatter([record['iteration']] * len(scores), scores, s=16)
        axes.annotate(f'{len(record.get("selected", []))} chosen', (record['iteration'], max(scores, default=0)),
                      fontsize=8, textcoords='offset points', xytext=(4, 4))  # fmt: skip
    last = records[-1]
    _integer_ticks(axes)
    axes.set_xlabel('iteration')
    axes.set_ylabel(f'{last.get("score_name", "score")} ({last.get("score_units", "")})')
    axes.set_title(f'rule: {last.get("rule", "?")}', fontsize=9)
    return _svg(figure), True


def plot_cost(data: dict) -> tuple[str, bool]:
    groups = [g for g in data['cost'] if g['cpu_seconds'] > 0]
    if not groups:
        return _missing('no jobs with recorded timings in this graph'), False
    figure, axes = _figure(6.4, 0.5 + 0.45 * len(groups))
    labels = [f'{g["stage"]} {g["level"] or ""}'.strip() for g in groups]
    axes.barh(labels, [g['cpu_seconds'] for g in groups], color='C0')
    for index, group in enumerate(groups):
        axes.annotate(f'{group["jobs"]} jobs, {group["structures"]} structures', (group['cpu_seconds'], index),
                      fontsize=8, textcoords='offset points', xytext=(4, -3))  # fmt: skip
    axes.set_xlabel('CPU seconds')
    return _svg(figure), True


def plot_routing(data: dict) -> tuple[str, bool]:
    routes = data['routing']
    if not routes:
        return _missing('no routing records (method selection) in this graph'), False
    import collections

    counts = collections.Counter((r.get('route'), r.get('level')) for r in routes)
    figure, axes = _figure(6.4, 0.5 + 0.45 * len(counts))
    labels = [f'{route} -> {level}' for route, level in counts]
    axes.barh(labels, list(counts.values()), color=['C3' if route == 'multireference' else 'C0' for route, _ in counts])
    axes.set_xlabel('molecules')
    return _svg(figure), True


def plot_screening(data: dict) -> tuple[str, bool]:
    if not data['screening']:
        return _missing('no screening records in this graph'), False
    record = data['screening'][-1]
    ranking = sorted(record['ranking'], key=lambda r: r['rank'])[:30]
    figure, axes = _figure()
    ranks = [r['rank'] for r in ranking]
    axes.errorbar(ranks, [r['predicted'] for r in ranking], yerr=[r.get('uncertainty') or 0 for r in ranking],
                  fmt='o', label='predicted ± uncertainty')  # fmt: skip
    verified = [r for r in ranking if r.get('verified') is not None]
    if verified:
        axes.scatter([r['rank'] for r in verified], [r['verified'] for r in verified], marker='*', s=80,
                     c=['C2' if r.get('hit') else 'C3' for r in verified], zorder=3, label='verified (green: hit)')  # fmt: skip
    title = f'{record["objective"]}'
    if record.get('hit_rate') is not None:
        title += f'; hit rate {record["hit_rate"]:.0%} in the top {record.get("k", len(verified))}'
        if record.get('random_hit_rate') is not None:
            title += f' (random {record["random_hit_rate"]:.0%})'
    axes.set_title(title, fontsize=9)
    axes.set_xlabel('rank')
    axes.set_ylabel(f'{record["objective"]} ({record.get("units", "")})')
    axes.legend(fontsize=8)
    return _svg(figure), True


PLOTS: dict[str, t.Callable[[dict], tuple[str, bool]]] = {
    'learning_curve': plot_learning_curve,
    'parity': plot_parity,
    'calibration': plot_calibration,
    'selection': plot_selection,
    'cost': plot_cost,
    'routing': plot_routing,
    'screening': plot_screening,
}

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; border-bottom: 1px solid #ccc; }
figure { margin: 0.5em 0; } figure svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; }
.missing { color: #777; }
"""


def render(data: dict) -> str:
    """The HTML page of the gathered ``data``."""
    node = data['node']
    parts = [
        '<!DOCTYPE html>',
        '<html lang="en"><head><meta charset="utf-8">',
        f'<title>aiida-mlqm report: {html.escape(node["type"])} {node["pk"]}</title>',
        f'<style>{STYLE}</style></head><body>',
        f'<h1>aiida-mlqm report: {html.escape(node["type"])} {node["pk"]}</h1>',
        f'<p>uuid {html.escape(node["uuid"])}; generated {html.escape(data["generated"])} from the provenance graph.</p>',
    ]
    if data['cost']:
        parts.append('<table><tr><th>stage</th><th>level</th><th>jobs</th><th>structures</th><th>CPU s</th></tr>')
        for group in data['cost']:
            parts.append(
                f'<tr><td>{html.escape(str(group["stage"]))}</td><td>{html.escape(str(group["level"] or ""))}</td>'
                f'<td>{group["jobs"]}</td><td>{group["structures"]}</td><td>{group["cpu_seconds"]:.1f}</td></tr>'
            )
        parts.append('</table>')
    for name, title in SECTIONS:
        svg, present = PLOTS[name](data)
        status = 'data' if present else 'missing'
        parts.append(f'<section id="section-{name}"><h2>{html.escape(title)}</h2>')
        parts.append(f'<figure class="plot {status}" id="plot-{name}" data-status="{status}">{svg}</figure></section>')
    parts.append('</body></html>')
    return '\n'.join(parts)


def write_report(node: orm.Node | int | str, output: str | pathlib.Path) -> pathlib.Path:
    """Gather, draw and write the report of ``node`` to ``output`` (one HTML file); return its path."""
    output = pathlib.Path(output)
    output.write_text(render(gather(node)), encoding='utf-8')
    return output
