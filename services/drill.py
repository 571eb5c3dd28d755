"""A private PostgreSQL server and RabbitMQ node for fault drills: restart them at will, harm nobody else.

The scale benchmark and the fault tests restart the database and the broker while work runs. On a machine (or CI
runner) that shares 127.0.0.1:5432 and :5672 with other users, restarting those would break everyone else's work, so
a drill gets its own: an ``initdb`` cluster in a temporary folder on a free port, run as the ``postgres`` user, and a
RabbitMQ node with its own name, ports and database, run as the ``rabbitmq`` user (both as Debian installs them;
this needs root to switch users). :meth:`DrillServices.stop` removes both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

from .common import ServiceError
from .postgres import PostgresSettings
from .rabbitmq import RabbitmqSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f'/usr/lib/postgresql/*/bin/{name}'))
    if not found:
        raise ServiceError(f'PostgreSQL server binaries ({name}) not found', 'apt-get install postgresql')
    return found[-1]


def _as_user(user: str, *command: str, env: dict | None = None, timeout: float = 120, check: bool = True):
    full = ['runuser', '-u', user, '--', 'env', *(f'{k}={v}' for k, v in (env or {}).items()), *command]
    result = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise ServiceError(f'{" ".join(command[:2])} failed ({result.returncode}): {result.stderr.strip()[-800:]}')
    return result


@dataclasses.dataclass
class DrillServices:
    """A private PostgreSQL + RabbitMQ pair; use as a context manager."""

    root: pathlib.Path = dataclasses.field(default_factory=lambda: pathlib.Path(tempfile.mkdtemp(prefix='mlqm-drill-')))
    pg_port: int = dataclasses.field(default_factory=_free_port)
    amqp_port: int = dataclasses.field(default_factory=_free_port)
    node: str = dataclasses.field(default_factory=lambda: f'mlqm-drill-{secrets.token_hex(3)}@localhost')

    @property
    def postgres(self) -> PostgresSettings:
        return PostgresSettings(host='127.0.0.1', port=self.pg_port, admin_user='postgres')

    @property
    def rabbitmq(self) -> RabbitmqSettings:
        return RabbitmqSettings(host='127.0.0.1', port=self.amqp_port, user='guest', password='guest')

    # --------------------------------------------------------------------------------------------- PostgreSQL
    @property
    def _pgdata(self) -> pathlib.Path:
        return self.root / 'pgdata'

    def _pg_ctl(self, *args: str, timeout: float = 120):
        options = f'-p {self.pg_port} -k {self.root / "pgsock"} -c listen_addresses=127.0.0.1'
        return _as_user(
            'postgres', _postgres_bin('pg_ctl'), '-D', str(self._pgdata), '-o', options, '-w', '-t', '60',
            '-l', str(self.root / 'pglog' / 'postgres.log'), *args, timeout=timeout,
        )

    def start_postgres(self) -> None:
        if not self._pgdata.exists():
            self.root.chmod(0o755)
            for folder in ('pgdata', 'pgsock', 'pglog'):
                (self.root / folder).mkdir(exist_ok=True)
                shutil.chown(self.root / folder, 'postgres', 'postgres')
            _as_user('postgres', _postgres_bin('initdb'), '-D', str(self._pgdata), '-A', 'trust', '-U', 'postgres',
                     '--locale', 'C.UTF-8', '-E', 'UTF8')
        self._pg_ctl('start')

    def restart_postgres(self) -> float:
        """``pg_ctl restart -m fast`` (what a package upgrade or an operator does); return the seconds it took."""
        start = time.monotonic()
        self._pg_ctl('restart', '-m', 'fast')
        return time.monotonic() - start

    # ----------------------------------------------------------------------------------------------- RabbitMQ
    def _rabbit_env(self) -> dict:
        base = self.root / 'rabbitmq'
        return {
            'RABBITMQ_NODENAME': self.node,
            'RABBITMQ_NODE_IP_ADDRESS': '127.0.0.1',
            'RABBITMQ_NODE_PORT': str(self.amqp_port),
            'RABBITMQ_DIST_PORT': str(_free_port()),
            'RABBITMQ_MNESIA_BASE': str(base / 'mnesia'),
            'RABBITMQ_LOG_BASE': str(base / 'log'),
            'RABBITMQ_PID_FILE': str(base / 'rabbitmq.pid'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': str(base / 'enabled_plugins'),
            'RABBITMQ_ADVANCED_CONFIG_FILE': str(base / 'advanced.config'),
            'RABBITMQ_CONFIG_FILE': str(base / 'rabbitmq'),
            'HOME': '/var/lib/rabbitmq',
        }

    def _rabbitmqctl(self, *args: str, timeout: float = 120, check: bool = True):
        return _as_user('rabbitmq', '/usr/lib/rabbitmq/bin/rabbitmqctl', '-n', self.node, *args,
                        env={'HOME': '/var/lib/rabbitmq'}, timeout=timeout, check=check)

    def start_rabbitmq(self) -> None:
        base = self.root / 'rabbitmq'
        if not base.exists():
            self.root.chmod(0o755)  # the rabbitmq user reaches its folder through the root (mkdtemp makes it 0700)
            for folder in (base, base / 'mnesia', base / 'log'):
                folder.mkdir(parents=True, exist_ok=True)
            (base / 'enabled_plugins').write_text('[].\n')
            (base / 'advanced.config').write_text('[{rabbit, [{consumer_timeout, undefined}]}].\n')
            (base / 'rabbitmq.conf').write_text('loopback_users = none\n')
            subprocess.run(['chown', '-R', 'rabbitmq:rabbitmq', str(base)], check=True)
        env = self._rabbit_env()
        _as_user('rabbitmq', '/usr/lib/rabbitmq/bin/rabbitmq-server', '-detached', env=env)
        self._rabbitmqctl('wait', env['RABBITMQ_PID_FILE'], '--timeout', '90', timeout=120)

    def stop_rabbitmq_app(self) -> None:
        """Stop the broker application (every connection closes); the node stays up, so it can start again fast."""
        self._rabbitmqctl('stop_app')

    def start_rabbitmq_app(self, attempts: int = 5) -> None:
        """Start the broker application and wait until it accepts connections (``start_app`` can fail while the node
        is still busy stopping on a loaded machine: tried again)."""
        for attempt in range(attempts):
            result = self._rabbitmqctl('start_app', check=attempt == attempts - 1)
            if result.returncode == 0:
                break
            time.sleep(2.0)
        self._rabbitmqctl('await_startup', '--timeout', '90', timeout=120)

    def restart_rabbitmq(self, down_seconds: float = 5.0) -> float:
        """Stop the broker application (every connection closes), wait, start it again; return the seconds."""
        start = time.monotonic()
        self.stop_rabbitmq_app()
        time.sleep(down_seconds)
        self.start_rabbitmq_app()
        return time.monotonic() - start

    # -------------------------------------------------------------------------------------------------- both
    def start(self) -> DrillServices:
        if os.geteuid() != 0:
            raise ServiceError('fault drills start their own PostgreSQL and RabbitMQ as their users', 'run as root')
        self.start_postgres()
        self.start_rabbitmq()
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._rabbitmqctl('stop', timeout=60)
        with contextlib.suppress(Exception):
            self._pg_ctl('stop', '-m', 'immediate', timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DrillServices:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
