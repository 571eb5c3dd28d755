"""``mlqm supervise``: keep the daemon's work going through PostgreSQL and RabbitMQ restarts, without a person.

What goes wrong without it (aiida-core 2.9, seen on this project's deployment):

* PostgreSQL restarts: each worker's next database call fails (``AdminShutdown``, then ``PendingRollbackError`` on
  the same session); the task it was handling is dropped, so the process stays ``Created``/``Waiting`` for good.
* RabbitMQ restarts: the workers reconnect by themselves, but the broker hands every unacknowledged task out again
  while the worker that held it still runs the process, so one process runs in two workers at once.

What the supervisor does, polling both services every ``interval`` seconds (one ``SELECT`` and one heartbeat on a
connection of its own):

1. a service goes away (or PostgreSQL's start time changed, i.e. it restarted between two polls): stop the daemon at
   once, so that no worker runs a process while its connections are broken or while the broker re-delivers tasks;
2. both answer again: ``verdi process repair`` (recreates the task of every active process that has none) and start
   the daemon with the number of workers it had. Every process then continues once, from its last checkpoint;
3. every ``check_every`` seconds in between (:meth:`Supervisor.check`): close the processes that never started
   (:func:`.processes.close_never_started`: a worker killed while launching a child leaves its node with no state, no
   checkpoint and no task, and the caller waits for it for good): each is marked excepted, and the caller, which its
   worker polls, takes its failure path; no daemon restart is needed. Then look for other stuck work
   (:func:`.processes.find_stuck_work`) and log a process found stuck twice in a row, unchanged in between (only
   logged: a worker busy in a long step does not answer status requests either, so stopping every worker on that
   evidence would do more harm than good).

Stopping workers is safe: a process continues from its last checkpoint (the daemon tests kill workers with -9).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

LOGGER = logging.getLogger('aiida_mlqm.supervisor')


@dataclasses.dataclass
class SupervisorState:
    """What the supervisor saw last and did so far (exposed for tests and the ``--once`` report)."""

    postgres_start: str | None = None
    outage: bool = False
    daemon_workers: int | None = None
    repairs: int = 0
    events: list[str] = dataclasses.field(default_factory=list)


class Supervisor:
    """Watches the services of one loaded production profile; :meth:`run` loops until ``stop`` is set."""

    def __init__(self, profile, *, interval: float = 1.0, check_every: float = 60.0):
        from .postgres import PostgresSettings
        from .rabbitmq import RabbitmqSettings

        storage = profile.storage_config
        self.profile = profile
        self.postgres = PostgresSettings(
            host=storage['database_hostname'],
            port=int(storage['database_port']),
            name=storage['database_name'],
            user=storage['database_username'],
            password=storage['database_password'],
        )
        self.rabbitmq = RabbitmqSettings.from_profile_config(profile.process_control_config)
        self.interval = interval
        self.check_every = check_every
        self.state = SupervisorState()
        self.stop = threading.Event()
        self._broker = None
        self._suspects: dict[int, object] = {}

    # ------------------------------------------------------------------------------------------------ probes
    def _postgres_start(self) -> str | None:
        from .postgres import server_start_time

        try:
            return server_start_time(self.postgres)
        except Exception:  # noqa: BLE001 - any failure means PostgreSQL does not answer now
            return None

    def _broker_alive(self) -> bool:
        """Keep one connection open: a broker restart closes it, even when the restart is shorter than a poll."""
        from .rabbitmq import rabbitmq_connection

        if self._broker is not None:
            try:
                self._broker.process_data_events(time_limit=0)
                if self._broker.is_open:
                    return True
            except Exception:  # noqa: BLE001 - connection lost: the broker went away since the last poll
                pass
            self._broker = None
            self._note('RabbitMQ connection lost')
            return False
        try:
            self._broker = rabbitmq_connection(self.rabbitmq, timeout=3)
        except Exception:  # noqa: BLE001 - not reachable yet
            return False
        return True

    # ----------------------------------------------------------------------------------------------- actions
    def _note(self, event: str) -> None:
        LOGGER.warning(event)
        self.state.events.append(f'{time.strftime("%H:%M:%S")} {event}')

    def _daemon_client(self):
        from aiida.engine.daemon.client import get_daemon_client

        return get_daemon_client(self.profile.name)

    def _stop_daemon(self) -> None:
        client = self._daemon_client()
        if not client.is_daemon_running:
            if self.state.daemon_workers is None:
                self.state.daemon_workers = 0  # an operator stopped it: do not start it afterwards
            return
        try:
            workers = int(client.get_numprocesses(timeout=5)['numprocesses'])
        except Exception:  # noqa: BLE001 - circus busy: keep the default
            workers = None
        self.state.daemon_workers = workers or self.state.daemon_workers or 1
        client.stop_daemon(wait=True, timeout=60)
        self._note(f'stopped the daemon ({self.state.daemon_workers} worker(s))')

    def _repair_and_start(self) -> None:
        from .processes import repair

        done = repair(self.profile, restart_daemon=False)
        self.state.repairs += 1
        revived = [line for line in done if 'without process task' in line or 'Revived' in line]
        self._note('ran verdi process repair' + (f': {"; ".join(revived)}' if revived else ''))
        workers = self.state.daemon_workers
        if workers:
            self._daemon_client().start_daemon(number_workers=workers, timeout=60)
            self._note(f'started the daemon with {workers} worker(s)')
        self.state.daemon_workers = None

    def _close_never_started(self) -> None:
        """Mark never-started processes excepted (or, with a checkpoint, Created and queued): no worker holds them,
        so this is safe while the daemon runs, and a caller held by a worker notices at its next poll."""
        from aiida.manage import get_manager

        from .processes import close_never_started, send_tasks

        try:
            excepted, created = close_never_started(by='mlqm supervise')
        except Exception:  # noqa: BLE001 - this process's own session may have died with the server: reopen it
            get_manager().reset_profile_storage()
            return
        if excepted:
            self._note(f'marked never-started processes {excepted} excepted (their worker died while launching them): '
                       'their callers take their failure path')
        if created:
            send_tasks(created)
            self._note(f'queued never-started processes {created} again from their checkpoint')

    def check(self) -> list[int]:
        """One look for stuck work: close never-started processes, return those found stuck twice in a row."""
        self._close_never_started()
        return self._stuck_work()

    def _stuck_work(self) -> list[int]:
        """Processes found stuck in two looks in a row, unchanged in between (a busy worker may miss one answer)."""
        from aiida import orm
        from aiida.manage import get_manager

        from .processes import find_stuck_work

        try:
            candidates = find_stuck_work(self.profile).repairable
            mtimes = dict(
                orm.QueryBuilder()
                .append(orm.ProcessNode, filters={'id': {'in': candidates or [-1]}}, project=['id', 'mtime'])
                .all()
            )
        except Exception:  # noqa: BLE001 - this process's own session may have died with the server: reopen it
            get_manager().reset_profile_storage()
            return []
        confirmed = [pk for pk, mtime in mtimes.items() if self._suspects.get(pk) == mtime]
        self._suspects = {pk: mtime for pk, mtime in mtimes.items() if pk not in confirmed}
        return sorted(confirmed)

    # -------------------------------------------------------------------------------------------------- loop
    def step(self) -> None:
        """One poll: probe both services and act on what changed."""
        start = self._postgres_start()
        broker = self._broker_alive()
        restarted = start is not None and self.state.postgres_start not in (None, start)
        if start is None or not broker or restarted:
            if not self.state.outage:
                what = 'PostgreSQL restarted' if restarted else (
                    'PostgreSQL does not answer' if start is None else 'RabbitMQ does not answer')
                self._note(f'{what}: stopping the daemon until both services answer')
                self.state.outage = True
                self._stop_daemon()
            if not restarted:
                return
        if self.state.outage:
            self.state.postgres_start = start
            self._note('PostgreSQL and RabbitMQ answer again')
            self._repair_and_start()
            self.state.outage = False
        self.state.postgres_start = start

    def run(self) -> None:
        """Poll until :attr:`stop` is set. A failed action is logged and tried again at the next poll: the supervisor
        itself must never need a person either."""
        last_check = time.monotonic()
        while not self.stop.is_set():
            try:
                self.step()
                if not self.state.outage and time.monotonic() - last_check > self.check_every:
                    last_check = time.monotonic()
                    stuck = self.check()
                    if stuck:
                        # Reported, not acted on: a worker busy in a long step answers no status request either,
                        # so "no answer" alone is not proof enough to stop every worker.
                        self._note(f'processes {stuck} look stuck (no worker answers for them, no task queued): '
                                   f'if `mlqm status` still says so, run `mlqm repair --restart-daemon`')
            except Exception as exception:  # noqa: BLE001 - logged; the next poll tries again
                self._note(f'{type(exception).__name__}: {str(exception)[:300]} (trying again)')
            self.stop.wait(self.interval)
        if self._broker is not None and self._broker.is_open:
            self._broker.close()
