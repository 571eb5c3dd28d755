"""The questions users ask the graph: lineage, failures, cost, invalidation, why a structure was labelled, routing.

Every function takes a node (an ORM node, a pk or a uuid) and returns plain JSON (``dict``/``list``) that names nodes
by ``pk`` and ``uuid``; :mod:`.tables` turns the answers into tables (CLI, CSV). Nothing is loaded node by node: walks
go through :func:`.graph.walk` and node details come from one projected ``QueryBuilder`` per kind. The answers follow
public links and attributes only (link labels of the jobs, ``DatasetData``/``ModelData`` attributes, the result
``Dict`` keys the parsers write, and the records of :mod:`.records`).
"""

from __future__ import annotations

import collections
import re
import typing as t

from aiida import orm

from .cost import RESTART_CHAINS, cost
from .dataset import DatasetData
from .graph import CALLS, DATA_PROVENANCE, Subgraph, is_postgres, node_attributes, walk
from .model import ModelData
from .records import RECORD_KINDS, find_records

REFERENCE_JOBS = (
    'aiida.calculations:mlqm.pyscf',
    'aiida.calculations:mlqm.pyscf.batch',
    'aiida.calculations:pyscf.base',  # aiida-pyscf calculations imported with dataset_from_pyscf_calculations
)
FEATURES_JOB = 'aiida.calculations:mlqm.features.batch'  # method selection: mean-field features per molecule
TRAIN_JOB = 'aiida.calculations:mlqm.train'
PREDICT_JOB = 'aiida.calculations:mlqm.predict'
# Stage of a job by its own type, unless a workflow above it names a stage (STAGE_OF_WORKFLOW, outermost wins).
STAGE_OF_JOB = {
    'aiida.calculations:mlqm.pyscf': 'reference',
    'aiida.calculations:mlqm.pyscf.batch': 'reference',
    'aiida.calculations:pyscf.base': 'reference',
    FEATURES_JOB: 'method selection',
    TRAIN_JOB: 'training',
    PREDICT_JOB: 'prediction',
}
STAGE_OF_WORKFLOW: dict[str, str] = {
    'aiida.workflows:mlqm.build': 'build',
    'aiida.workflows:mlqm.method_selection': 'method selection',
}
# Call link labels that name a stage (``screening_reference`` runs reference jobs for screening, not for training).
STAGE_OF_CALL_LABEL: list[tuple[re.Pattern, str]] = [(re.compile(r'screening'), 'screening')]
# Attributes the lineage reads, fetched with the walk on PostgreSQL.
LINEAGE_ATTRIBUTES = ('num_frames', 'level_counts', 'levels', 'source_uuids', 'structure_uuids', 'exit_status',
                      'canonical_smiles', 'inchikey')  # fmt: skip
ITERATION_LABEL = re.compile(r'iteration_(\d+)')  # campaigns label sub-processes iteration_NN or iteration_NN_<step>


def load(node: orm.Node | int | str) -> orm.Node:
    """A node from itself, its pk, or its uuid (or a unique uuid prefix)."""
    if isinstance(node, orm.Node):
        return node
    if isinstance(node, int) or (isinstance(node, str) and node.isdigit()):
        return orm.load_node(pk=int(node))
    return orm.load_node(uuid=str(node))


def _describe(node: orm.Node) -> dict:
    return {'pk': node.pk, 'uuid': node.uuid, 'type': node.__class__.__name__, 'label': node.label}


def _project(ids: t.Iterable[int], **projections: str) -> dict[int, dict]:
    """``{pk: {name: value}}`` for the given nodes, ``projections`` mapping names to QueryBuilder projections."""
    ids = sorted(set(ids))
    names, fields = list(projections), list(projections.values())
    values: dict[int, dict] = {}
    for offset in range(0, len(ids), 5000):
        query = orm.QueryBuilder().append(
            orm.Node, filters={'id': {'in': ids[offset : offset + 5000]}}, project=['id', *fields]
        )
        for pk, *row in query.all():
            values[pk] = dict(zip(names, row))
    return values


# ------------------------------------------------------------------------------------------------------- lineage
def lineage(node: orm.Node | int | str, *, method: str = 'auto') -> dict:
    """Everything behind ``node`` (a model, a dataset, predictions...): the jobs, datasets and structures it rests on.

    The chain of a model: ``ModelData <- mlqm.train <- DatasetData <- merge_datasets <- the batch jobs' own
    ``dataset`` outputs <- mlqm.pyscf.batch jobs <- StructureData`` (and, for structures labelled one by one,
    ``DatasetData <- assemble_dataset <- per-structure results <- mlqm.pyscf jobs``). The structures listed are the ones
    whose labels reached ``node``: for a job that made a dataset of the lineage, its input structures that are rows of
    that dataset (a structure that failed in the batch is not behind the model); for a job whose result
    ``parameters__<key>`` is in the lineage, the input ``structures__<key>``; plus structures fed to an assembling
    calcfunction directly. Levels come from the datasets' per-frame ``levels`` and ``source_uuids``.

    :param method: the walk of :func:`.graph.walk` (``auto``, ``sql`` or ``querybuilder``).
    """
    node = load(node)
    graph = walk([node.pk], direction='up', link_types=DATA_PROVENANCE, method=method, attributes=LINEAGE_ATTRIBUTES)
    calcjobs = graph.of_class(orm.CalcJobNode)
    reference = [row for row in calcjobs if row.process_type in REFERENCE_JOBS]
    training = [row for row in calcjobs if row.process_type == TRAIN_JOB]
    datasets = graph.of_class(DatasetData)
    dataset_ids = {row.id for row in datasets}
    assembling = [
        row
        for row in graph.of_class(orm.CalcFunctionNode)
        if any(link.type == 'create' and link.target in dataset_ids for link in graph.outgoing(row.id))
    ]

    structures: set[int] = set()
    results = 0
    reference_ids = {row.id for row in reference}
    structure_type = orm.StructureData.class_node_type
    rows_of = {
        pk: set(values['structure_uuids'] or [])
        for pk, values in node_attributes(graph, dataset_ids, ('structure_uuids',)).items()
    }
    for calc in reference:
        inputs = {link.label: link.source for link in graph.incoming(calc.id) if link.type == 'input_calc'}
        for link in graph.outgoing(calc.id):
            if link.type == 'create' and link.target in dataset_ids:  # the job's own rows
                results += len(rows_of[link.target])
                structures.update(pk for pk in inputs.values() if graph.nodes[pk].uuid in rows_of[link.target])
            if link.type != 'create' or not link.label.startswith('parameters'):
                continue
            results += 1
            _, _, key = link.label.partition('__')
            structure = inputs.get(f'structures__{key}' if key else 'structure')
            if structure is not None:
                structures.add(structure)
    for row in assembling:
        for link in graph.incoming(row.id):
            if graph.nodes[link.source].node_type == structure_type and link.source not in reference_ids:
                structures.add(link.source)

    dataset_details = {
        pk: {'frames': values['num_frames'], 'level_counts': values['level_counts'], 'levels': values['levels'],
             'sources': values['source_uuids']}
        for pk, values in node_attributes(graph, dataset_ids, ('num_frames', 'level_counts', 'levels', 'source_uuids')).items()
    }  # fmt: skip
    level_of_source: dict[str, str] = {}
    for details in dataset_details.values():
        level_of_source.update(zip(details['sources'] or [], details['levels'] or []))
    calc_details = node_attributes(graph, reference_ids | {row.id for row in training}, ('exit_status',))

    reference_rows = [
        {
            'pk': row.id,
            'uuid': row.uuid,
            'process_type': row.process_type.partition(':')[2],
            'level': level_of_source.get(row.uuid),
            'exit_status': calc_details[row.id]['exit_status'],
        }
        for row in reference
    ]
    levels: dict[str, dict] = {}
    for row in reference_rows:
        levels.setdefault(row['level'] or 'unknown', {'calculations': 0, 'frames': 0})['calculations'] += 1
    # frames per level in the datasets fed to the training jobs (the model's own training data)
    trained_on = {link.source for row in training for link in graph.incoming(row.id) if link.source in dataset_ids}
    for pk in trained_on or dataset_ids:
        for level, count in (dataset_details[pk]['level_counts'] or {}).items():
            levels.setdefault(level, {'calculations': 0, 'frames': 0})['frames'] += count

    labels = {pk: row['label'] for pk, row in _project(structures, label='label').items()}
    return {
        'query': 'lineage',
        'node': _describe(node),
        'method': (method if method != 'auto' else ('sql' if is_postgres() else 'querybuilder')),
        'counts': {
            'nodes': len(graph.nodes),
            'training_jobs': len(training),
            'datasets': len(datasets),
            'assembling_calcfunctions': len(assembling),
            'results': results,
            'reference_calculations': len(reference),
            'structures': len(structures),
        },
        'levels': dict(sorted(levels.items())),
        'training_jobs': [
            {'pk': row.id, 'uuid': row.uuid, 'exit_status': calc_details[row.id]['exit_status']} for row in training
        ],
        'datasets': [
            {
                'pk': row.id,
                'uuid': row.uuid,
                'frames': dataset_details[row.id]['frames'],
                'level_counts': dataset_details[row.id]['level_counts'],
                'trained_on': row.id in trained_on,
            }
            for row in datasets
        ],
        'assembling_calcfunctions': [{'pk': row.id, 'uuid': row.uuid} for row in assembling],
        'reference_calculations': reference_rows,
        'structures': [
            {'pk': pk, 'uuid': graph.nodes[pk].uuid, 'label': label, 'smiles': values['canonical_smiles'],
             'inchikey': values['inchikey']}
            for pk, values in node_attributes(graph, structures, ('canonical_smiles', 'inchikey')).items()
            for label in [labels.get(pk, '')]
        ],
    }


# ------------------------------------------------------------------------------------------------------ failures
def _scope_processes(root: orm.Node | None) -> list[int]:
    """The pks of ``root`` and every process it called, directly or not; all processes when ``root`` is None."""
    if root is None:
        return [pk for (pk,) in orm.QueryBuilder().append(orm.ProcessNode, project='id').all()]
    graph = walk([root.pk], direction='down', link_types=CALLS, method='querybuilder')
    return sorted(graph.nodes)


def failures(root: orm.Node | int | str | None = None) -> dict:
    """Failed processes under ``root`` grouped by process and exit status, and failed structures inside batch jobs.

    A batch job that labels some of its structures finishes with 710 and lists the others in its ``failures`` output
    (``{key: {status, message, exit_code, exit_label}}``); those are grouped by exit code in ``structures``. The
    ``unlabelled`` entries are the reference chains' final ``failed`` outputs (after retries).
    """
    root = load(root) if root is not None else None
    ids = _scope_processes(root)
    details = _project(
        ids,
        uuid='uuid',
        process_type='process_type',
        label='attributes.process_label',
        state='attributes.process_state',
        exit_status='attributes.exit_status',
        exit_message='attributes.exit_message',
    )
    groups: dict[tuple, dict] = {}
    for pk, row in sorted(details.items()):
        failed = (row['exit_status'] or 0) != 0 or row['state'] in ('excepted', 'killed')
        if not failed:
            continue
        key = (row['label'], row['exit_status'], row['state'])
        group = groups.setdefault(
            key,
            {
                'process_label': row['label'],
                'exit_status': row['exit_status'],
                'process_state': row['state'],
                'count': 0,
                'exit_message': row['exit_message'],
                'pks': [],
                'uuids': [],
            },
        )
        group['count'] += 1
        group['pks'].append(pk)
        group['uuids'].append(str(row['uuid']))

    structures: dict[int, dict] = {}
    unlabelled: list[dict] = []
    for output in _outputs(ids, ('failures', 'failed')):
        for key, entry in sorted(output['attributes'].items()):
            if not isinstance(entry, dict):
                continue
            if output['link_label'] == 'failed':
                unlabelled.append({'key': key, 'status': entry.get('status'), 'message': entry.get('message'),
                                   'process_pk': output['process']})  # fmt: skip
                continue
            code = entry.get('exit_code')
            group = structures.setdefault(
                code, {'exit_code': code, 'exit_label': entry.get('exit_label'), 'count': 0, 'examples': []}
            )
            group['count'] += 1
            if len(group['examples']) < 5:
                group['examples'].append({'key': key, 'job_pk': output['process'], 'message': entry.get('message')})
    return {
        'query': 'failures',
        'root': _describe(root) if root is not None else None,
        'processes_examined': len(ids),
        'processes': sorted(groups.values(), key=lambda g: (-g['count'], str(g['process_label']))),
        'structures': [structures[code] for code in sorted(structures, key=lambda c: (c is None, c or 0))],
        'unlabelled': unlabelled,
    }


def _outputs(process_ids: t.Sequence[int], labels: t.Sequence[str]) -> list[dict]:
    """Dict outputs (CREATE or RETURN links) with the given link labels of the given processes."""
    found = []
    for offset in range(0, len(process_ids), 5000):
        query = orm.QueryBuilder()
        query.append(orm.ProcessNode, filters={'id': {'in': list(process_ids[offset : offset + 5000])}}, tag='p',
                     project='id')  # fmt: skip
        query.append(
            orm.Dict,
            with_incoming='p',
            edge_filters={'label': {'in': list(labels)}, 'type': {'in': ['create', 'return']}},
            edge_project='label',
            project=['id', 'attributes'],
        )
        for process, pk, attributes, label in query.all():
            found.append({'process': process, 'pk': pk, 'attributes': attributes, 'link_label': label})
    return found


# ---------------------------------------------------------------------------------------------------- invalidation
def invalidate(node: orm.Node | int | str, *, method: str = 'auto') -> dict:
    """Everything that depends on ``node``, e.g. a reference calculation found to be wrong.

    Follows the data provenance forward (a process CREATEs its outputs, outputs are INPUT_CALC of later processes):
    the datasets that contain its labels (and the datasets merged from them), the models trained on those, the
    predictions those models made, and the decision records (selection, screening, routing) that read any of them.
    Pass a single result ``Dict`` of a batch job instead of the job to follow only that structure's label.
    """
    node = load(node)
    graph = walk([node.pk], direction='down', link_types=DATA_PROVENANCE, method=method)
    graph.nodes.pop(node.pk, None)
    predict_ids = {row.id for row in graph.with_process_type(PREDICT_JOB)}
    predictions = [
        graph.nodes[link.target]
        for pk in predict_ids
        for link in graph.outgoing(pk)
        if link.type == 'create' and link.label == 'predictions'
    ]
    candidates = [
        graph.nodes[link.target]
        for pk in predict_ids
        for link in graph.outgoing(pk)
        if link.type == 'create' and link.label.startswith('candidates')
    ]
    dicts = [row.id for row in graph.of_class(orm.Dict)]
    record_kinds = {pk: row['kind'] for pk, row in _project(dicts, kind='attributes.record').items() if row['kind']}
    records = {kind: [] for kind in RECORD_KINDS}
    for pk, kind in sorted(record_kinds.items()):
        if kind in records:
            records[kind].append({'pk': pk, 'uuid': graph.nodes[pk].uuid})
    processes = [row for row in graph.nodes.values() if row.node_type.startswith('process.')]
    models = graph.of_class(ModelData)
    model_kinds = _project([row.id for row in models], kind='attributes.kind')

    def rows(nodes):
        return [{'pk': row.id, 'uuid': row.uuid} for row in sorted(nodes, key=lambda r: r.id)]

    return {
        'query': 'invalidate',
        'node': _describe(node),
        'counts': {
            'datasets': len(graph.of_class(DatasetData)),
            'models': len(models),
            'predictions': len(predictions),
            'candidates': len(candidates),
            **{f'{kind}_records': len(found) for kind, found in records.items()},
            'processes': len(processes),
        },
        'datasets': rows(graph.of_class(DatasetData)),
        'models': [{**row, 'kind': model_kinds[row['pk']]['kind']} for row in rows(models)],
        'predictions': rows(predictions),
        'candidates': rows(candidates),
        'records': records,
        'processes': [
            {'pk': row.id, 'uuid': row.uuid, 'process_type': row.process_type}
            for row in sorted(processes, key=lambda r: r.id)
        ],
    }


# ------------------------------------------------------------------------------------------------------------ why
def why(structure: orm.Node | int | str) -> dict:
    """Why ``structure`` was labelled: where it came from, who chose it (iteration, model, score, rule), the jobs.

    ``labelled_by``: every reference job that has the structure as input, its level (the result's
    ``level_of_theory``), exit status, and the chain of callers with their link labels (``iteration_03``, ...).
    ``selected_by``: selection records (:mod:`.records`) that list the structure; ``routed_by``: routing records.
    ``origin``: the process that created the structure (``mlqm.build`` calcfunction, an ``mlqm.predict`` exploration).
    """
    structure = load(structure)
    if not isinstance(structure, orm.StructureData):
        raise ValueError(f'node {structure.pk} is a {structure.__class__.__name__}; `why` explains a StructureData')
    query = orm.QueryBuilder()
    query.append(orm.StructureData, filters={'id': structure.pk}, tag='structure')
    query.append(
        orm.CalcJobNode,
        with_incoming='structure',
        filters={'process_type': {'in': list(REFERENCE_JOBS)}},
        edge_project='label',
        project=['id', 'uuid', 'process_type', 'attributes.exit_status'],
        tag='job',
        edge_tag='edge',
    )
    jobs = {row['job']['id']: {**row['job'], 'input_label': row['edge']['label']} for row in query.dict()}
    callers = walk(list(jobs), direction='up', link_types=CALLS, method='querybuilder') if jobs else Subgraph({}, [])
    caller_of = {link.target: link for link in callers.links}
    labelled_by = []
    for pk, job in sorted(jobs.items()):
        _, _, key = job['input_label'].partition('__')
        result_label = f'parameters__{key}' if key else 'parameters'
        result = (
            orm.QueryBuilder()
            .append(orm.CalcJobNode, filters={'id': pk}, tag='job')
            .append(orm.Dict, with_incoming='job', edge_filters={'label': result_label, 'type': 'create'},
                    project=['uuid', 'attributes.level_of_theory', 'attributes.total_energy'])
            .first()
        )
        chain, current = [], pk
        while current in caller_of:
            link = caller_of[current]
            chain.append({'pk': link.source, 'process_type': callers.nodes[link.source].process_type,
                          'call_link_label': link.label})  # fmt: skip
            current = link.source
        iteration = next(
            (c['call_link_label'] for c in chain if ITERATION_LABEL.match(c['call_link_label'])
             and c['process_type'] not in RESTART_CHAINS),
            None,
        )  # fmt: skip
        labelled_by.append(
            {
                'pk': pk,
                'uuid': str(job['uuid']),
                'job': job['process_type'].partition(':')[2],
                'key': key or None,
                'exit_status': job['attributes.exit_status'],
                'result_uuid': str(result[0]) if result else None,
                'level': result[1] if result else None,
                'total_energy_eV': result[2] if result else None,
                'iteration': iteration,
                'callers': chain,
            }
        )
    selected_by = [
        {'record_pk': record['pk'], 'iteration': record['values'].get('iteration'), 'rule': record['values'].get('rule'),
         'model_uuid': record['values'].get('model_uuid'), 'score_name': record['values'].get('score_name'),
         'score_units': record['values'].get('score_units'), **entry}
        for record in find_records('selection')
        for entry in record['values'].get('selected', [])
        if entry.get('structure_uuid') == structure.uuid
    ]  # fmt: skip
    routed_by = [
        {'record_pk': record['pk'], **entry}
        for record in find_records('routing')
        for entry in record['values'].get('routes', [])
        if entry.get('structure_uuid') == structure.uuid
    ]
    creator = structure.creator
    return {
        'query': 'why',
        'node': _describe(structure),
        'formula': structure.get_formula(),
        'smiles': structure.base.attributes.get('canonical_smiles', None),
        'origin': None if creator is None else {'pk': creator.pk, 'uuid': creator.uuid, 'process_label': creator.process_label,
                                                'source': structure.base.attributes.get('source', None)},
        'selected_by': selected_by,
        'routed_by': routed_by,
        'labelled_by': labelled_by,
    }


# -------------------------------------------------------------------------------------------- routing and summary
def routing(root: orm.Node | int | str | None = None) -> dict:
    """Every routing decision under ``root`` (all in the profile when None); ``multireference`` lists those routed so."""
    root = load(root) if root is not None else None
    scope = _scope_processes(root) if root is not None else None
    routes = [
        {'record_pk': record['pk'], **entry}
        for record in find_records('routing', scope)
        for entry in record['values'].get('routes', [])
    ]
    counts = collections.Counter(entry.get('route') for entry in routes)
    return {
        'query': 'routing',
        'root': _describe(root) if root is not None else None,
        'counts': dict(sorted((str(k), v) for k, v in counts.items())),
        'multireference': [entry for entry in routes if entry.get('route') == 'multireference'],
        'routes': routes,
    }


def summary(root: orm.Node | int | str) -> dict:
    """What a campaign (or any workchain) did: processes by type and state, datasets, models, records, cost, failures."""
    root = load(root)
    ids = _scope_processes(root)
    details = _project(ids, process_type='process_type', state='attributes.process_state',
                       exit_status='attributes.exit_status')  # fmt: skip
    processes = collections.Counter(
        (str(row['process_type']).partition(':')[2] or str(row['process_type']), row['state'], row['exit_status'])
        for row in details.values()
    )
    created = walk(ids, direction='down', link_types=('create',), method='querybuilder')
    models = created.of_class(ModelData)
    datasets = created.of_class(DatasetData)
    model_details = _project([row.id for row in models], kind='attributes.kind', metrics='attributes.metrics')
    dataset_details = _project([row.id for row in datasets], frames='attributes.num_frames',
                               level_counts='attributes.level_counts')  # fmt: skip
    spent = cost(root)
    failed = failures(root)
    return {
        'query': 'summary',
        'node': _describe(root),
        'process_state': root.process_state.value if root.process_state else None,
        'exit_status': root.exit_status,
        'processes': [
            {'process': name, 'state': state, 'exit_status': status, 'count': count}
            for (name, state, status), count in sorted(processes.items(), key=lambda item: str(item[0]))
        ],
        'datasets': [{'pk': row.id, 'uuid': row.uuid, **dataset_details[row.id]} for row in datasets],
        'models': [
            {'pk': row.id, 'uuid': row.uuid, 'kind': model_details[row.id]['kind'],
             'validation': (model_details[row.id]['metrics'] or {}).get('validation')}
            for row in models
        ],
        'records': {kind: len(find_records(kind, ids)) for kind in RECORD_KINDS},
        'total_cpu_seconds': spent['total_cpu_seconds'],
        'cost_by_stage_and_level': spent['by_stage_and_level'],
        'failed_processes': sum(group['count'] for group in failed['processes']),
        'failed_structures': sum(group['count'] for group in failed['structures']),
        'unlabelled': len(failed['unlabelled']),
    }


__all__ = ('cost', 'failures', 'invalidate', 'lineage', 'load', 'routing', 'summary', 'why')
