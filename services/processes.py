"""Processes as an operator sees them: run in-process with a clean interrupt, find stuck work, repair it.

* :func:`run_in_process` runs a process in this Python process (embedded profile, or ``mlqm reference`` without
  ``--submit``) with a poll interval that never waits a minute between steps; on Ctrl-C or SIGTERM it kills the
  scheduler jobs the run started and leaves every process it started marked killed (aiida-core's own handler only
  kills the top process when there is no broker, and ``core.direct``'s ``kill`` reaches the job script, not the
  Python process inside it).
* :func:`find_stuck_work` lists what will not progress on its own: active processes that no worker holds and that
  have no task in the broker's queue, processes that never started (:func:`find_never_started`), CalcJobs whose
  scheduler job ended long ago, and processes with two outputs (or two calls) of one label. :func:`repair` is
  ``verdi process repair`` with the daemon stopped first, after closing never-started processes
  (:func:`close_never_started`).

A process that never started is what a daemon worker killed while it launches a child leaves behind. aiida-core's
``Process`` stores the child's node (with its inputs and the CALL link from its caller) with process state ``None``,
then sets the state ``Created``, saves the first checkpoint, and only then sends the task to the broker; a worker that
dies between the first two leaves a node with no process state, no checkpoint and no task. ``verdi process repair``
looks only at Created/Waiting/Running processes and so never sees it, while the caller, reloaded from its checkpoint
by another worker, finds that child by its link label (the reference chain's steps are idempotent) and waits for it
for good. Marking it excepted lets the caller go on: a waiting caller checks each awaited child's ``is_terminated``
when it is loaded and polls it every ``runner.poll.interval`` while it runs, then takes its failure path (for a batch
job of ``mlqm.reference``: each of its structures is retried alone through the restart chain, once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import re
import signal
import subprocess
import sys
import time

from .rabbitmq import RABBITMQ_BACKENDS

ACTIVE_STATES = ('created', 'waiting', 'running')
CALCJOB_TYPE = 'process.calculation.calcjob.'
RESUMABLE_TYPES = (CALCJOB_TYPE, 'process.workflow.workchain.')
# A CalcJob polls its scheduler at least this often; one whose job left the scheduler longer ago than this (plus its
# computer's poll interval) without the process noticing is stuck.
CALCJOB_GRACE_S = 120
# A process younger than this may simply not have been picked up yet; a node unchanged for longer than this with no
# process state (or Created without a checkpoint) was left by a worker that died while launching it.
PROCESS_GRACE_S = 60
NEVER_STARTED_MESSAGE = (
    'Never started: the daemon worker that launched this process died (killed, or its services went away) after '
    'storing its node and before its first checkpoint, so no worker could ever run it. Marked excepted by {by} so that '
    'its caller goes on along its failure path (the reference chain retries the structures of a failed batch alone).'
)


class Interrupted(Exception):
    """The in-process run got SIGINT or SIGTERM; its jobs were killed and its processes marked killed."""

    def __init__(self, signum: int, killed: list[int]):
        super().__init__(f'interrupted by {signal.Signals(signum).name}: killed processes {killed}')
        self.signum = signum
        self.killed = killed


# How often an in-process parent looks whether its child finished (one indexed query of a few processes): a parent
# learns of a finished child only this way when there is no broker, so this is latency added to every step.
IN_PROCESS_POLL_INTERVAL = 0.1


def run_in_process(process_class, inputs: dict, *, poll_interval: float = IN_PROCESS_POLL_INTERVAL):
    """Run ``process_class`` (or a builder, with ``inputs`` empty) in this Python process; return ``(outputs, node)``.

    The runner polls children every ``poll_interval`` seconds whatever the profile's ``runner.poll.interval`` says.

    :raises Interrupted: on SIGINT/SIGTERM, after killing the jobs and marking the processes killed.
    """
    from aiida.engine.utils import loop_scope
    from aiida.manage import get_manager

    manager = get_manager()
    configured = manager.get_option('runner.poll.interval')
    runner = manager.create_runner(poll_interval=min(float(configured), poll_interval), broker_submit=False)
    interrupted: list[int] = []

    def _interrupt(signum, _frame):
        # Stop the event loop between two callbacks instead of raising here: an exception raised by a signal handler
        # lands wherever the main thread is, e.g. inside a storage commit, and leaves the session unusable for the
        # kill below. ``execute`` then ends with 'Event loop stopped before Future completed'.
        interrupted.append(signum)
        runner.loop.call_soon_threadsafe(runner.loop.stop)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    process = None
    try:
        with loop_scope(runner.loop):
            process = runner.instantiate_process(process_class, **inputs)
            for sig in previous:
                signal.signal(sig, _interrupt)
            process.execute()
        if interrupted:
            raise KeyboardInterrupt
        return process.outputs, process.node
    except (KeyboardInterrupt, RuntimeError) as exception:
        if isinstance(exception, RuntimeError) and not interrupted:
            raise
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        killed = kill_started_work(process.node, reason='the command running it was interrupted') if process else []
        raise Interrupted(interrupted[0] if interrupted else signal.SIGINT, killed) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        runner.close()


def kill_started_work(root, *, reason: str) -> list[int]:
    """Kill the scheduler jobs of ``root`` and its active descendants and mark those processes killed.

    :returns: the pks of the processes marked killed.
    """
    from aiida import orm
    from aiida.engine import ProcessState

    nodes = [root, *root.called_descendants]
    active = [node for node in nodes if not node.is_terminated]
    for node in active:
        if isinstance(node, orm.CalcJobNode) and node.get_job_id():
            with contextlib.suppress(Exception):  # a job that is already gone needs no kill
                kill_scheduler_job(node)
    for node in sorted(active, key=lambda n: n.pk, reverse=True):
        node.set_process_state(ProcessState.KILLED)
        node.set_process_status(f'Killed: {reason}')
        if not node.is_sealed:
            node.seal()
    return sorted(node.pk for node in active)


def kill_scheduler_job(node) -> None:
    """Kill the scheduler job of a CalcJob; on a local ``core.direct`` job also every process the job script started.

    ``core.direct`` kills the job script's shell only, which leaves the Python process inside it running.
    """
    import psutil

    computer = node.computer
    job_id = node.get_job_id()
    if computer.scheduler_type == 'core.direct' and computer.transport_type == 'core.local':
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(int(job_id))
            for child in parent.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            parent.kill()
        return
    with computer.get_transport() as transport:
        scheduler = computer.get_scheduler()
        scheduler.set_transport(transport)
        scheduler.kill_job(job_id)


@dataclasses.dataclass
class StuckWork:
    """What :func:`find_stuck_work` found; each list holds ``(pk, why)``."""

    without_task: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    never_started: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    job_ended: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    duplicates: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    active: int = 0

    @property
    def repairable(self) -> list[int]:
        return sorted({pk for pk, _ in self.without_task + self.never_started + self.job_ended})


def find_stuck_work(profile, *, now: datetime.datetime | None = None) -> StuckWork:
    """Look for work that will not progress by itself (see the module doc); reads only, changes nothing.

    An active process counts as without a task when it is older than :data:`PROCESS_GRACE_S`, no daemon worker
    answers for it, and no task of the profile's queue names it. Without a broker (embedded profile) only duplicates
    and ended jobs are looked for: there, processes run inside the command that started them. Never-started processes
    (:func:`find_never_started`) are listed apart, with the caller that waits for them.
    """
    from aiida import orm

    now = now or datetime.datetime.now(datetime.timezone.utc)
    found = StuckWork()
    rows = (
        orm.QueryBuilder()
        .append(
            orm.ProcessNode,
            filters={'attributes.process_state': {'in': list(ACTIVE_STATES)}},
            project=['id', 'ctime', 'mtime', 'node_type'],
        )
        .all()
    )
    found.active = len(rows)
    # Process functions run inside their caller's step and never resume: one left active by a stopped worker is an
    # orphan (its caller runs the step again), handled by :func:`repair`, not a missing task.
    old = [
        pk
        for pk, ctime, _, node_type in rows
        if (now - ctime).total_seconds() > PROCESS_GRACE_S and node_type.startswith(RESUMABLE_TYPES)
    ]
    if old and profile.process_control_backend in RABBITMQ_BACKENDS:
        queued = set(queued_process_pks(profile))
        unreachable = [pk for pk in old if pk not in queued and not _answers(pk)]
        found.without_task = [(pk, 'no daemon worker holds it and no task in the queue names it') for pk in unreachable]
    if profile.process_control_backend in RABBITMQ_BACKENDS:
        found.never_started = [(item.pk, item.why) for item in find_never_started(now=now)]
    calcjobs = [pk for pk, _, _, node_type in rows if node_type.startswith(CALCJOB_TYPE)]
    found.job_ended = _calcjobs_whose_job_ended(calcjobs, now)
    found.duplicates = duplicate_links()
    return found


@dataclasses.dataclass
class NeverStarted:
    """A process node that a worker stored and never brought to its first checkpoint (see the module doc)."""

    pk: int
    state: str | None  # None, or 'created' without a checkpoint
    has_checkpoint: bool
    resumable: bool  # a CalcJob or WorkChain (a process function never resumes: its calling step runs it again)
    caller: int | None
    caller_state: str | None
    age: float

    @property
    def why(self) -> str:
        what = 'no process state' if self.state is None else 'state Created but no checkpoint'
        if self.caller is None:
            waits = 'no caller'
        elif self.caller_state in ACTIVE_STATES and self.resumable:
            waits = f'its caller {self.caller} ({self.caller_state}) waits for it for good'
        else:
            waits = f'caller {self.caller} ({self.caller_state})'
        return f'never started: {what}, unchanged for {self.age:.0f} s (its worker died while launching it); {waits}'


def never_started(node) -> bool:
    """Whether ``node`` was closed by :func:`close_never_started`: it ran nothing, so running its inputs again (for
    example a retry chain under a new link label) computes nothing twice."""
    return bool(node.is_excepted and (node.exception or '').startswith(NEVER_STARTED_MESSAGE.split(':')[0] + ':'))


def find_never_started(*, now: datetime.datetime | None = None, grace: float = PROCESS_GRACE_S) -> list[NeverStarted]:
    """Process nodes with no process state, or ``Created`` without a checkpoint, unchanged for ``grace`` seconds.

    A live worker takes both steps within milliseconds of storing the node; ``mtime`` moves with every change of the
    node, so an unchanged node older than ``grace`` is one whose worker died. Reads only.
    """
    from aiida import orm

    now = now or datetime.datetime.now(datetime.timezone.utc)
    filters = {
        'or': [
            {'attributes.process_state': {'of_type': 'null'}},
            {
                'and': [
                    {'attributes.process_state': {'==': 'created'}},
                    {'attributes.checkpoints': {'of_type': 'null'}},
                ]
            },
        ],
        'mtime': {'<': now - datetime.timedelta(seconds=grace)},
    }
    rows = orm.QueryBuilder().append(orm.ProcessNode, filters=filters, project=['id']).all(flat=True)
    found = []
    for pk in sorted(rows):
        node = orm.load_node(pk)
        caller = node.caller
        found.append(
            NeverStarted(
                pk=pk,
                state=node.process_state.value if node.process_state else None,
                has_checkpoint=node.checkpoint is not None,
                resumable=node.node_type.startswith(RESUMABLE_TYPES),
                caller=caller.pk if caller is not None else None,
                caller_state=caller.process_state.value if caller is not None and caller.process_state else None,
                age=(now - node.mtime).total_seconds(),
            )
        )
    return found


def close_never_started(
    *, by: str, now: datetime.datetime | None = None, grace: float = PROCESS_GRACE_S
) -> tuple[list[int], list[int]]:
    """Put every never-started process (:func:`find_never_started`) on a path that ends.

    One with a checkpoint (a CalcJob or WorkChain whose worker died after saving it) is set ``Created``: it can run
    from that checkpoint once a task names it (``verdi process repair`` sends one; so does :func:`send_tasks`).
    Every other one is marked excepted with :data:`NEVER_STARTED_MESSAGE` and sealed, so that its caller, which
    checks whether its children terminated when it is loaded and polls them while it runs, takes its failure path.
    Safe while workers run: no worker holds such a process (it never had a task).

    :param by: who closes them, for the exception message (``mlqm repair``, ``mlqm supervise``).
    :returns: ``(excepted, set_created)`` pks.
    """
    from aiida import orm
    from aiida.engine import ProcessState

    excepted, created = [], []
    for item in find_never_started(now=now, grace=grace):
        node = orm.load_node(item.pk)
        if item.has_checkpoint and item.resumable:
            node.set_process_state(ProcessState.CREATED)
            node.set_process_status('Created again: its worker died while launching it; continued from its checkpoint')
            created.append(item.pk)
            continue
        node.set_exception(NEVER_STARTED_MESSAGE.format(by=by))
        node.set_process_state(ProcessState.EXCEPTED)
        node.set_process_status(None)
        if not node.is_sealed:
            node.seal()
        excepted.append(item.pk)
    return excepted, created


def send_tasks(pks: list[int]) -> None:
    """Send a continue task for each process (``verdi process repair`` does this for all active ones without a task,
    but only with the daemon stopped); for processes that no worker can hold because they never had a task."""
    from aiida.manage import get_manager

    controller = get_manager().get_process_controller()
    for pk in pks:
        controller.continue_process(pk, nowait=True, no_reply=True)


def queued_process_pks(profile) -> list[int]:
    """Pks named by the tasks waiting in the profile's process queue (browsed: each message goes back unacked)."""
    import pika.exceptions

    from .rabbitmq import RabbitmqSettings, rabbitmq_connection

    settings = RabbitmqSettings.from_profile_config(profile.process_control_config)
    connection = rabbitmq_connection(settings)
    pks = []
    try:
        channel = connection.channel()
        queue = f'aiida-{profile.uuid}.process.queue'
        try:
            count = channel.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            return []
        for _ in range(count):
            method, _, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            # Task bodies are YAML written by aiida-core; only the pid is read, without loading the YAML.
            match = re.search(rb'pid: (\d+)', body)
            if match:
                pks.append(int(match.group(1)))
        # Closing the channel without acknowledging returns every message to the queue.
    finally:
        if connection.is_open:
            connection.close()
    return pks


def _answers(pk: int, timeout: float = 10.0) -> bool:
    """Whether a daemon worker holds process ``pk`` (it answers a status request over the broker)."""
    from aiida.manage import get_manager

    try:
        controller = get_manager().get_process_controller()
        future = controller.get_status(pk)
        future.result(timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - unroutable, timed out or broker gone: nobody answers for it
        return False


def _calcjobs_whose_job_ended(pks: list[int], now: datetime.datetime) -> list[tuple[int, str]]:
    """Active CalcJobs with a job id that their scheduler no longer lists, last checked long ago."""
    from aiida import orm

    by_computer: dict[int, list] = {}
    for pk in pks:
        node = orm.load_node(pk)
        if node.get_job_id() and node.computer is not None:
            by_computer.setdefault(node.computer.pk, []).append(node)
    stuck = []
    for nodes in by_computer.values():
        computer = nodes[0].computer
        grace = CALCJOB_GRACE_S + computer.get_minimum_job_poll_interval()
        try:
            with computer.get_transport() as transport:
                scheduler = computer.get_scheduler()
                scheduler.set_transport(transport)
                listed = scheduler.get_jobs(jobs=[node.get_job_id() for node in nodes], as_dict=True)
        except Exception:  # noqa: BLE001 - an unreachable scheduler is the computer row's business
            continue
        for node in nodes:
            checked = node.get_scheduler_lastchecktime() or node.mtime
            if node.get_job_id() not in listed and (now - checked).total_seconds() > grace:
                stuck.append((node.pk, f'job {node.get_job_id()} left {computer.label} but the process still waits'))
    return stuck


def duplicate_links() -> list[tuple[int, str]]:
    """Processes with two outputs of one label (RETURN or CREATE links: a process that ran twice at once).

    Two calls of one label are not counted: a step that a stopped worker left half-done runs again and calls again,
    which aiida-core allows and ``verdi process show`` displays.
    """
    from aiida import orm
    from aiida.common.links import LinkType

    counts: dict[tuple[int, str, str], int] = {}
    types = [LinkType.RETURN.value, LinkType.CREATE.value]
    query = orm.QueryBuilder().append(orm.WorkflowNode, tag='process', project=['id'])
    query.append(
        orm.Node, with_incoming='process', edge_filters={'type': {'in': types}}, edge_project=['label', 'type']
    )
    for pk, label, link_type in query.iterall():
        counts[(pk, label, link_type)] = counts.get((pk, label, link_type), 0) + 1
    return [
        (pk, f'{number} {link_type} links labelled {label!r}')
        for (pk, label, link_type), number in sorted(counts.items())
        if number > 1
    ]


def daemon_running(profile) -> bool:
    from aiida.engine.daemon.client import get_daemon_client

    return get_daemon_client(profile.name).is_daemon_running


def repair(profile, *, restart_daemon: bool = False, timeout: float = 600) -> list[str]:
    """``verdi process repair`` for ``profile``: recreate the tasks of active processes that have none.

    aiida-core needs the daemon stopped for that (workers hold their tasks unacknowledged, invisible in the queue).
    Process functions left active by a stopped worker are marked killed first (:func:`close_orphaned_functions`),
    and processes that never started are marked excepted or, with a checkpoint, set Created so that the repair queues
    them (:func:`close_never_started`).

    :param restart_daemon: stop the daemon first and start it again afterwards; otherwise a running daemon is an error.
    :returns: the lines of what was done.
    :raises RuntimeError: when the daemon runs and ``restart_daemon`` is false, or a step fails.
    """
    from aiida.engine.daemon.client import get_daemon_client

    client = get_daemon_client(profile.name)
    done = []
    was_running = client.is_daemon_running
    if was_running and not restart_daemon:
        raise RuntimeError(f'the daemon of {profile.name} runs; stop it first (`verdi -p {profile.name} daemon stop`) '
                           'or pass --restart-daemon')
    workers = None
    if was_running:
        workers = int(client.get_numprocesses(timeout=10)['numprocesses'])
        client.stop_daemon(wait=True, timeout=int(timeout))
        done.append('stopped the daemon')
    orphans = close_orphaned_functions()
    if orphans:
        done.append(f'marked process functions {orphans} killed: their worker stopped mid-run; the caller reruns them')
    excepted, created = close_never_started(by='mlqm repair')
    if excepted:
        done.append(f'marked never-started processes {excepted} excepted: their worker died while launching them; '
                    'their callers take their failure path when the daemon runs them')
    if created:
        done.append(f'set never-started processes {created} Created: they have a checkpoint; the repair queues them')
    result = subprocess.run(
        [sys.executable, '-m', 'aiida', '-p', profile.name, 'process', 'repair', '--force'],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    done.extend(line.strip() for line in result.stdout.splitlines() if line.strip())
    if result.returncode != 0:
        raise RuntimeError(f'verdi process repair failed ({result.returncode}): {result.stderr.strip()[-2000:]}')
    if was_running:
        client.start_daemon(number_workers=workers or 1, timeout=int(timeout))
        done.append(f'started the daemon with {workers} worker(s)')
    return done


def close_orphaned_functions() -> list[int]:
    """Mark active calcfunctions/workfunctions killed; call only while no daemon worker runs (they never resume).

    Left as they are, they would stay ``Running`` for good and ``verdi process repair`` would queue them in vain.
    """
    from aiida import orm
    from aiida.engine import ProcessState

    query = orm.QueryBuilder().append(
        orm.ProcessNode,
        filters={
            'attributes.process_state': {'in': list(ACTIVE_STATES)},
            'node_type': {'like': 'process.%function.%'},
        },
    )
    closed = []
    for node in query.all(flat=True):
        node.set_process_state(ProcessState.KILLED)
        node.set_process_status('Killed: its daemon worker stopped mid-run; the calling step runs it again')
        if not node.is_sealed:
            node.seal()
        closed.append(node.pk)
    return closed


def wait_for_workers(profile, count: int, *, exclude: tuple[int, ...] = (), timeout: float = 120) -> list[int]:
    """Wait until ``count`` daemon workers run and report their pids; return the pids.

    Circus answers ``get_worker_info`` without an ``info`` entry while workers are still starting.

    :param exclude: pids that do not count (workers killed before: circus may still list them for a moment).

    :raises TimeoutError: naming what was last seen.
    """
    from aiida.engine.daemon.client import get_daemon_client

    client = get_daemon_client(profile.name)
    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        try:
            seen = client.get_worker_info(timeout=5)
            pids = sorted(int(pid) for pid in (seen.get('info') or {}) if int(pid) not in exclude)
            if len(pids) >= count and all(_alive(pid) for pid in pids):
                return pids
        except Exception as exception:  # noqa: BLE001 - circus restarting or not yet answering: ask again
            seen = exception
        time.sleep(0.5)
    raise TimeoutError(f'{count} daemon worker(s) of {profile.name} not up within {timeout} s (last answer: {seen})')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
