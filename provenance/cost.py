"""What a campaign, a workchain or a model cost: CPU seconds of the jobs, by stage and level of theory.

Where the numbers come from (all stored by the parsers or by AiiDA):

- ``mlqm.pyscf`` / ``mlqm.pyscf.batch`` / ``mlqm.features.batch``: each per-structure result ``Dict`` has ``timings`` in s (``timings_units``):
  ``cpu_total`` is the CPU time of the runner process over that structure (all threads), ``total`` the wall time.
  Results written before ``cpu_total`` existed count ``total`` x the cores the job was given, flagged ``estimated``.
  Structures that failed inside a batch left no result and their time is not counted (their job's scheduler time is).
- ``mlqm.train``: ``metrics.training_seconds`` (wall) x cores; ``mlqm.predict``: ``predictions.seconds`` x cores.
- The scheduler: ``last_job_info.wallclock_time_seconds`` of the job (SLURM reports it; ``core.direct`` only saw the
  job at its last poll, so its value is left out) x
  the cores asked for, shown beside the jobs' own numbers as ``scheduler_core_seconds``.
"""

from __future__ import annotations

import typing as t

from aiida import orm

from .graph import CALLS, DATA_PROVENANCE, walk

__all__ = ('cost',)

UNACCOUNTED_SCHEDULERS = ('core.direct',)
# Restart chains label their sub-runs iteration_NN too; those are attempts, not campaign iterations.
RESTART_CHAINS = ('aiida.workflows:mlqm.pyscf.base',)


def _cores(resources: t.Mapping | None) -> int:
    resources = resources or {}
    machines = int(resources.get('num_machines') or 1)
    procs = int(resources.get('num_mpiprocs_per_machine') or resources.get('tot_num_mpiprocs') or 1)
    threads = int(resources.get('num_cores_per_mpiproc') or 1)
    return max(1, machines * procs * threads)


def _stages(calc_ids: t.Sequence[int], stage_of_workflow: t.Mapping[str, str]) -> dict[int, tuple[str | None, str | None]]:
    """``{calc pk: (stage, iteration label)}`` from the CALL links above each job.

    The stage is named by the outermost workflow type in ``stage_of_workflow`` or call link label pattern in
    ``STAGE_OF_CALL_LABEL`` above the job; the iteration is the nearest ``iteration_NN...`` call link label that is not a
    restart chain's attempt.
    """
    from .queries import STAGE_OF_CALL_LABEL

    graph = walk(calc_ids, direction='up', link_types=CALLS, method='querybuilder')
    caller = {link.target: link for link in graph.links}
    answer = {}
    for pk in calc_ids:
        stage, iteration, current = None, None, pk
        while current in caller:
            link = caller[current]
            workflow = graph.nodes[link.source]
            if iteration is None and link.label.startswith('iteration_') and workflow.process_type not in RESTART_CHAINS:
                iteration = link.label
            stage = stage_of_workflow.get(workflow.process_type, stage)
            for pattern, name in STAGE_OF_CALL_LABEL:
                if pattern.match(link.label):
                    stage = name
            current = link.source
        answer[pk] = (stage, iteration)
    return answer


def cost(node: orm.Node | int | str) -> dict:
    """CPU seconds behind ``node``, by stage and level, with one row per job.

    ``node`` a process (a campaign, a reference chain): its jobs, called directly or not. ``node`` data (a model, a
    dataset): the jobs in its lineage, i.e. what it took to make it.
    """
    from .queries import FEATURES_JOB, PREDICT_JOB, REFERENCE_JOBS, STAGE_OF_JOB, STAGE_OF_WORKFLOW, TRAIN_JOB, _describe, load

    node = load(node)
    if isinstance(node, orm.ProcessNode):
        graph = walk([node.pk], direction='down', link_types=CALLS, method='querybuilder')
    else:
        graph = walk([node.pk], direction='up', link_types=DATA_PROVENANCE)
    jobs = [row for row in graph.of_class(orm.CalcJobNode) if row.process_type in STAGE_OF_JOB]
    job_ids = [row.id for row in jobs]

    details: dict[int, dict] = {}
    outputs: dict[int, list[tuple[str, dict]]] = {}
    for offset in range(0, len(job_ids), 5000):
        chunk = job_ids[offset : offset + 5000]
        query = orm.QueryBuilder().append(
            orm.CalcJobNode,
            filters={'id': {'in': chunk}},
            tag='job',
            project=['id', 'uuid', 'process_type', 'attributes.resources', 'attributes.last_job_info',
                     'attributes.exit_status'],
        )  # fmt: skip
        query.append(orm.Computer, with_node='job', project='scheduler_type')
        for pk, uuid, process_type, resources, job_info, exit_status, scheduler in query.all():
            # core.direct reads `ps` at the last poll, before the job ends: not an account of the job's time
            accounted = scheduler not in UNACCOUNTED_SCHEDULERS
            details[pk] = {'uuid': str(uuid), 'process_type': process_type, 'cores': _cores(resources),
                           'job_info': (job_info or {}) if accounted else {}, 'exit_status': exit_status}  # fmt: skip
        query = orm.QueryBuilder()
        query.append(orm.CalcJobNode, filters={'id': {'in': chunk}}, tag='job', project='id')
        query.append(
            orm.Data,
            with_incoming='job',
            edge_filters={'type': 'create', 'label': {'or': [{'like': 'parameters%'}, {'in': ['metrics', 'predictions']}]}},
            edge_project='label',
            tag='out',
            edge_tag='edge',
            project=['attributes.timings', 'attributes.level_of_theory', 'attributes.training_seconds',
                     'attributes.seconds'],
        )  # fmt: skip
        for row in query.dict():
            outputs.setdefault(row['job']['id'], []).append((row['edge']['label'], row['out']))

    stages = _stages(job_ids, STAGE_OF_WORKFLOW)
    rows = []
    for pk in job_ids:
        job = details[pk]
        cores = job['cores']
        cpu, wall, structures, estimated, level = 0.0, 0.0, 0, False, None
        for label, values in sorted(outputs.get(pk, []), key=lambda item: item[0]):  # same order in any profile
            if label.startswith('parameters') and job['process_type'] in (*REFERENCE_JOBS, FEATURES_JOB):
                timings = values.get('attributes.timings') or {}
                structures += 1
                level = level or values.get('attributes.level_of_theory')
                wall += float(timings.get('total', 0.0))
                if 'cpu_total' in timings:
                    cpu += float(timings['cpu_total'])
                else:
                    cpu += float(timings.get('total', 0.0)) * cores
                    estimated = True
            elif label == 'metrics' and job['process_type'] == TRAIN_JOB:
                seconds = float(values.get('attributes.training_seconds') or 0.0)
                wall, cpu, estimated = seconds, seconds * cores, True
            elif label == 'predictions' and job['process_type'] == PREDICT_JOB:
                seconds = float(values.get('attributes.seconds') or 0.0)
                wall, cpu, estimated = seconds, seconds * cores, True
        scheduler = job['job_info'].get('wallclock_time_seconds')
        stage, iteration = stages[pk]
        rows.append(
            {
                'pk': pk,
                'uuid': job['uuid'],
                'job': job['process_type'].partition(':')[2],
                'stage': stage or STAGE_OF_JOB[job['process_type']],
                'iteration': iteration,
                'level': level,
                'structures': structures,
                'cores': cores,
                'cpu_seconds': round(cpu, 6),
                'wall_seconds': round(wall, 6),
                'estimated': estimated,
                'scheduler_core_seconds': float(scheduler) * cores if scheduler is not None else None,
                'exit_status': job['exit_status'],
            }
        )

    groups: dict[tuple, dict] = {}
    for row in rows:
        group = groups.setdefault(
            (row['stage'], row['level'] or ''),
            {'stage': row['stage'], 'level': row['level'], 'jobs': 0, 'structures': 0, 'cpu_seconds': 0.0,
             'wall_seconds': 0.0, 'scheduler_core_seconds': None},
        )  # fmt: skip
        group['jobs'] += 1
        group['structures'] += row['structures']
        group['cpu_seconds'] += row['cpu_seconds']
        group['wall_seconds'] += row['wall_seconds']
        if row['scheduler_core_seconds'] is not None:
            group['scheduler_core_seconds'] = (group['scheduler_core_seconds'] or 0.0) + row['scheduler_core_seconds']
    # sums rounded to the microsecond, so that the same jobs summed in another order (another profile, after an
    # archive import) give the same figures
    for group in groups.values():
        group['cpu_seconds'] = round(group['cpu_seconds'], 6)
        group['wall_seconds'] = round(group['wall_seconds'], 6)
    return {
        'query': 'cost',
        'node': _describe(node),
        'units': {'cpu_seconds': 's', 'wall_seconds': 's', 'scheduler_core_seconds': 's'},
        'total_cpu_seconds': round(sum(row['cpu_seconds'] for row in rows), 6),
        'by_stage_and_level': [groups[key] for key in sorted(groups)],
        'jobs': rows,
    }
