"""The submitting side of ``python -m benchmarks scale``: runs in its own process with the drill profile loaded.

``python -m benchmarks._scale_driver SETTINGS.json`` stores the molecules, submits ``mlqm.reference`` chains through
:class:`~aiida_mlqm.workflows.submission.SubmissionController` until all are done, writes its progress to
``progress.json`` (the fault script reads it) and finally a census of the graph to ``census.json``. Every database or
broker call is retried through an outage: the driver is a user's script, and it must not need a person either.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time


def retrying(function, *, what: str, deadline_s: float = 900):
    """Call ``function`` until it works; after a failure roll this process's session back (a restarted server leaves
    it in ``PendingRollbackError``; the engine's ``pool_pre_ping`` then hands out a fresh connection).

    The storage itself stays open. ``function`` should load the nodes it uses by pk: a node object kept from before
    the outage can be detached from the session (``DetachedInstanceError`` on every later try).
    """
    from aiida.manage import get_manager

    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return function()
        except Exception as exception:  # noqa: BLE001 - an outage shows up as many different exception types
            if time.monotonic() > deadline:
                raise
            print(f'{time.strftime("%H:%M:%S")} {what}: {type(exception).__name__}: {str(exception)[:160]}; retrying',
                  flush=True)
            try:
                get_manager().get_profile_storage().get_session().rollback()
            except Exception:  # noqa: BLE001 - the server may still be down: try again after the pause
                pass
            time.sleep(1.0)


def store_structures(settings: dict) -> dict[str, int]:
    """Store the molecules (G2 and seeded variants) once; return key -> pk (reuses a group filled before)."""
    from aiida import orm
    from aiida.manage import get_manager

    from benchmarks.scale import molecule_structures

    group, created = orm.Group.collection.get_or_create(f'{settings["group"]}-structures')
    if not created and group.count() == settings['count']:
        return {node.base.extras.get('key'): node.pk for node in group.nodes}
    group.clear()  # a run interrupted while storing starts its structures again
    storage = get_manager().get_profile_storage()
    pks = {}
    chunk = []

    def store_chunk():
        # one transaction per chunk: one commit instead of one per node (a fifth of the time on PostgreSQL)
        with storage.transaction():
            for structure in chunk:
                structure.store()
        group.add_nodes(chunk)
        pks.update({structure.base.extras.get('key'): structure.pk for structure in chunk})
        chunk.clear()

    for key, structure in molecule_structures(settings['count']):
        structure.base.extras.set('key', key)
        chunk.append(structure)
        if len(chunk) == 250:
            store_chunk()
    if chunk:
        store_chunk()
    return pks


def main(path: str) -> None:
    from aiida import load_profile, orm

    settings = json.loads(pathlib.Path(path).read_text())
    load_profile(settings['profile'])
    from aiida.plugins import WorkflowFactory

    from aiida_mlqm.workflows.submission import SubmissionController

    workdir = pathlib.Path(settings['workdir'])
    start = time.monotonic()
    pks = retrying(lambda: store_structures(settings), what='storing structures')
    keys = sorted(pks)
    size = settings['structures_per_chain']
    chunks = {f'chain_{i // size:05d}': keys[i : i + size] for i in range(0, len(keys), size)}
    # Only pks cross a retried call: after a database restart the session's objects may be expired or detached (a
    # DetachedInstanceError on the next attribute refresh), so every call loads what it uses afresh.
    code_pk = retrying(lambda: orm.load_code(settings['code']).pk, what='loading the code')
    parameters_pk = retrying(lambda: orm.Dict({'method': 'hf', 'basis': 'sto-3g'}).store().pk, what='storing')
    options_pk = retrying(lambda: orm.Dict(settings['options']).store().pk, what='storing')
    reference = WorkflowFactory('mlqm.reference')

    def builder_for(chunk):
        def build():
            builder = reference.get_builder()
            builder.structures = {key: orm.load_node(pks[key]) for key in chunk}
            builder.parameters = orm.load_node(parameters_pk)
            builder.code = orm.load_node(code_pk)
            builder.options = orm.load_node(options_pk)
            builder.batch.max_structures = orm.Int(settings['batch_size'])
            return builder

        return build

    builders = {key: builder_for(chunk) for key, chunk in chunks.items()}

    def controller():
        return SubmissionController(settings['group'], builders, max_concurrent=settings['max_chains'])

    def submit_and_count() -> tuple[dict[str, int], int]:
        current = controller()
        current.submit_new_batch()
        submitted = current.submitted()
        done = (
            orm.QueryBuilder()
            .append(orm.ProcessNode, filters={'id': {'in': list(submitted.values()) or [-1]},
                                              'attributes.process_state': {'in': ['finished', 'excepted', 'killed']}})
            .count()
        )
        return submitted, done

    stored_s = time.monotonic() - start
    print(f'{len(keys)} structures stored in {stored_s:.1f} s; {len(chunks)} chains', flush=True)
    deadline = time.monotonic() + settings['deadline_s']
    while time.monotonic() < deadline:
        _, done = retrying(submit_and_count, what='submitting')
        (workdir / 'progress.json').write_text(json.dumps({'chains': len(chunks), 'done': done}))
        if done == len(chunks):
            break
        time.sleep(1.0)
    elapsed = time.monotonic() - start
    census = retrying(lambda: take_census(settings, pks, controller().submitted()), what='census')
    census.update({'seconds': elapsed, 'store_seconds': stored_s, 'chains': len(chunks)})
    (workdir / 'census.json').write_text(json.dumps(census))


def take_census(settings: dict, pks: dict[str, int], chains: dict[str, int]) -> dict:
    """Per structure, its dataset rows and the calculations that had it as input, counted in the graph."""
    from aiida import orm
    from aiida.cmdline.utils.common import get_node_info

    rows: dict[str, int] = {}
    unfinished, show_failed = [], []
    for key, pk in chains.items():
        chain = orm.load_node(pk)
        if not chain.is_finished_ok:
            # the last line of an excepted chain's traceback says what happened (the profile is removed after the run)
            why = (chain.exception or chain.exit_message or '').strip().splitlines()[-1:] or ['']
            unfinished.append((pk, chain.process_state.value if chain.process_state else None, chain.exit_status,
                               why[0][:500]))
        try:
            get_node_info(chain)  # what `verdi process show` prints; fails on duplicate output labels
        except Exception as exception:  # noqa: BLE001 - counted and reported
            show_failed.append((pk, f'{type(exception).__name__}: {exception}'))
        if 'dataset' in chain.outputs:
            for uuid in chain.outputs.dataset.base.attributes.get('structure_uuids'):
                rows[uuid] = rows.get(uuid, 0) + 1
    uuids = dict(
        orm.QueryBuilder().append(orm.StructureData, filters={'id': {'in': list(pks.values())}},
                                  project=['id', 'uuid']).all()
    )
    calculations: dict[int, int] = {}
    query = orm.QueryBuilder().append(orm.StructureData, filters={'id': {'in': list(pks.values())}}, project=['id'],
                                      tag='structure')
    query.append(orm.CalcJobNode, with_incoming='structure', project=['id'],
                 filters={'attributes.exit_status': 0})
    for structure_pk, _ in query.iterall():
        calculations[structure_pk] = calculations.get(structure_pk, 0) + 1
    lost = [pk for pk in pks.values() if rows.get(uuids[pk], 0) == 0]
    duplicated_rows = [pk for pk in pks.values() if rows.get(uuids[pk], 0) > 1]
    duplicated_calcs = [pk for pk in pks.values() if calculations.get(pk, 0) > 1]
    return {
        'structures': len(pks),
        'lost': len(lost),
        'duplicated': len(set(duplicated_rows) | set(duplicated_calcs)),
        'duplicated_rows': len(duplicated_rows),
        'duplicated_calculations': len(duplicated_calcs),
        'unfinished_chains': unfinished,
        'show_failed': show_failed,
        'example_lost': lost[:5],
    }


if __name__ == '__main__':
    main(sys.argv[1])
