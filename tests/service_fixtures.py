"""Fixtures for the production back ends: PostgreSQL + RabbitMQ + ``verdi daemon``, and the one-node SLURM cluster.

Registered from ``tests/conftest.py``. Tests on these back ends drive the path a user takes, in subprocesses with their
own ``AIIDA_PATH`` (``mlqm setup --detect``, ``verdi daemon start``, a Python script that submits and waits), so the
test process's own embedded profile is never touched:

.. code-block:: python

    @pytest.mark.postgres
    @pytest.mark.rabbitmq
    def test_something(psql_daemon_profile):
        result = psql_daemon_profile.run_json('''
            node = submit(WorkflowFactory('core.arithmetic.add_multiply'), x=Int(1), y=Int(2), z=Int(3))
            wait(node)
            emit(ok=node.is_finished_ok)
        ''')
        assert result['ok']

``run``/``run_json`` scripts start with the profile loaded and ``orm``, ``submit``, ``load_node``, the ``aiida.orm``
data classes and the factories imported, plus ``wait(node, timeout)`` (raises with the process report when the node
does not finish in time) and ``emit(**values)`` (prints one JSON line that ``run_json`` returns).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
VENV_BIN = pathlib.Path(sys.executable).parent
SLURM_START = REPO / 'deploy' / 'slurm' / 'start.sh'
SERVICES_HINT = 'sudo deploy/services.sh (or deploy/ci-services.sh)'
SLURM_HINT = 'sudo deploy/slurm/start.sh'

PRELUDE = '''\
import json, sys, time
from aiida import load_profile
load_profile({profile!r})
from aiida import orm
from aiida.engine import submit, run
from aiida.orm import load_node, load_code, load_computer, Int, Float, Str, Dict, List
from aiida.plugins import CalculationFactory, DataFactory, WorkflowFactory


def wait(node, timeout=120):
    """Wait for a submitted process to terminate; fail with its report (and the daemon's view) when it does not."""
    deadline = time.time() + timeout
    while not node.is_terminated:
        if time.time() > deadline:
            from aiida.cmdline.utils.common import get_workchain_report, get_calcjob_report
            report = get_calcjob_report(node) if isinstance(node, orm.CalcJobNode) else get_workchain_report(node, 'REPORT')
            raise TimeoutError(f'process {{node.pk}} still {{node.process_state}} after {{timeout}} s\\n{{report}}')
        time.sleep(0.2)
    return node


def emit(**values):
    print(json.dumps(values, default=str), flush=True)

'''


def run_in_profile(
    aiida_path: str | os.PathLike,
    profile_name: str,
    python_source: str,
    *,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python_source`` in a fresh interpreter with ``profile_name`` of ``aiida_path`` loaded (see module doc).

    :param env: the environment (default: :func:`profile_environment` for ``aiida_path``).
    """
    source = PRELUDE.format(profile=profile_name) + textwrap.dedent(python_source)
    return subprocess.run(
        [sys.executable, '-c', source],
        check=False,
        env=env or profile_environment(aiida_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def profile_environment(aiida_path: str | os.PathLike, mlqm_home: str | os.PathLike | None = None) -> dict[str, str]:
    """The environment of a user whose AiiDA config lives in ``aiida_path``, with this venv's commands on ``PATH``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith('AIIDA_')}
    env['AIIDA_PATH'] = str(aiida_path)
    env['MLQM_HOME'] = str(mlqm_home or pathlib.Path(aiida_path) / 'mlqm')
    env['PATH'] = f'{VENV_BIN}{os.pathsep}{env.get("PATH", "/usr/bin:/bin")}'
    env['PYTHONUNBUFFERED'] = '1'
    return env


@dataclasses.dataclass
class ProfileEnv:
    """A profile in its own ``AIIDA_PATH``, driven through subprocesses as a user would."""

    name: str
    aiida_path: pathlib.Path

    @property
    def env(self) -> dict[str, str]:
        return profile_environment(self.aiida_path)

    def command(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command (``verdi``, ``mlqm``, ...) in this profile's environment."""
        result = subprocess.run(list(args), check=False, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f'{" ".join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}')
        return result

    def verdi(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.command(str(VENV_BIN / 'verdi'), '-p', self.name, *args, **kwargs)

    def mlqm(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.command(sys.executable, '-m', 'aiida_mlqm.cli', *args, **kwargs)

    def run(self, python_source: str, *, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_in_profile(self.aiida_path, self.name, python_source, timeout=timeout, env=self.env)

    def run_json(self, python_source: str, *, timeout: float = 300) -> dict:
        """Run a script that ends with ``emit(...)``; return what it emitted, or fail with its output and the log."""
        result = self.run(python_source, timeout=timeout)
        lines = [line for line in result.stdout.splitlines() if line.startswith('{')]
        if result.returncode != 0 or not lines:
            raise AssertionError(
                f'script exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}\n'
                f'daemon log:\n{self.daemon_log()}'
            )
        return json.loads(lines[-1])

    def wait_for_workers(self, count: int = 2, timeout: float = 180) -> list[int]:
        """Wait (with a deadline) until ``count`` daemon workers run; return their pids."""
        return self.run_json(
            f"""
            from aiida.manage import get_manager
            from aiida_mlqm.services.processes import wait_for_workers
            emit(pids=wait_for_workers(get_manager().get_profile(), {count}, timeout={timeout}))
            """,
            timeout=timeout + 60,
        )['pids']

    def config(self) -> dict:
        return json.loads((self.aiida_path / '.aiida' / 'config.json').read_text())

    def profile_config(self) -> dict:
        return self.config()['profiles'][self.name]

    def daemon_log(self, lines: int = 60) -> str:
        log = self.aiida_path / '.aiida' / 'daemon' / 'log' / f'aiida-{self.name}.log'
        return '\n'.join(log.read_text(errors='replace').splitlines()[-lines:]) if log.exists() else '(no daemon log)'


def unique_profile_name(prefix: str = 'mlqm-test') -> str:
    """A profile (and so database) name no concurrent test session uses."""
    return f'{prefix}-{os.getpid()}-{secrets.token_hex(3)}'


IN_CI = os.environ.get('CI', '').lower() in {'1', 'true', 'yes'}


def require_service(available: bool, what: str, how: str) -> None:
    """Fail in CI, skip elsewhere, when a service a test needs is not there."""
    if available:
        return
    message = f'{what} is not available; start it with: {how}'
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# ------------------------------------------------------------------------------------------------ availability
def postgres_available() -> bool:
    from aiida_mlqm.services.postgres import pg_connect

    try:
        pg_connect('127.0.0.1', 5432, 'postgres', None, 'postgres', timeout=3).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means 'not available'; require_service reports it
        return False


def rabbitmq_available() -> bool:
    from aiida_mlqm.services.rabbitmq import RabbitmqSettings, rabbitmq_connection

    try:
        rabbitmq_connection(RabbitmqSettings(), timeout=3).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means 'not available'; require_service reports it
        return False


def slurm_node_ready() -> bool:
    if shutil.which('sinfo') is None:
        return False
    result = subprocess.run(['sinfo', '-h', '-N', '-o', '%T'], check=False, capture_output=True, text=True, timeout=30)
    return result.returncode == 0 and any(
        state.strip() in {'idle', 'mixed', 'allocated', 'completing'} for state in result.stdout.splitlines()
    )


def require_services() -> None:

    require_service(postgres_available(), 'PostgreSQL on 127.0.0.1:5432 (admin role postgres)', SERVICES_HINT)
    require_service(rabbitmq_available(), 'RabbitMQ on 127.0.0.1:5672 (guest)', SERVICES_HINT)


def create_services_profile(aiida_path: pathlib.Path, name: str, *extra: str) -> ProfileEnv:
    """``mlqm setup --detect`` for a new profile in ``aiida_path``; the caller drops it with :func:`drop_profile`."""
    profile = ProfileEnv(name, aiida_path)
    profile.mlqm('setup', '--detect', '--profile', name, *extra)
    return profile


def drop_profile(profile: ProfileEnv) -> None:
    """Stop the profile's daemon, drop its database and role, and delete its RabbitMQ queue and exchanges."""
    import pika.exceptions
    from aiida_mlqm.services.common import ServiceError
    from aiida_mlqm.services.postgres import PostgresSettings, drop_database
    from aiida_mlqm.services.rabbitmq import RabbitmqSettings, rabbitmq_connection

    try:
        config = profile.profile_config()
    except (FileNotFoundError, KeyError):
        return
    profile.verdi('daemon', 'stop', check=False, timeout=60)
    storage = config['storage']['config']
    drop_database(PostgresSettings(name=storage['database_name'], user=storage['database_username']))
    prefix = f'aiida-{config["PROFILE_UUID"]}'
    try:
        connection = rabbitmq_connection(RabbitmqSettings.from_profile_config(config['process_control']['config']))
    except ServiceError:
        return
    try:
        channel = connection.channel()
        channel.queue_delete(f'{prefix}.process.queue')
        for exchange in (f'{prefix}.messages', f'{prefix}.tasks'):
            channel.exchange_delete(exchange)
    except pika.exceptions.AMQPError:
        pass  # leftovers of a test broker are harmless; failing teardown over them would hide the real result
    finally:
        if connection.is_open:
            connection.close()


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope='session')
def psql_daemon_profile(tmp_path_factory):
    """A ``core.psql_dos`` + RabbitMQ profile made by ``mlqm setup --detect`` on a fresh database, with 2 daemon workers.

    The database, role and broker queues are removed at the end of the session.
    """
    require_services()
    profile = create_services_profile(tmp_path_factory.mktemp('aiida-psql'), unique_profile_name())
    try:
        profile.verdi('daemon', 'start', '2', timeout=120)
        profile.wait_for_workers(2)
        yield profile
    finally:
        drop_profile(profile)


@pytest.fixture(scope='session')
def slurm_profile(psql_daemon_profile):
    """:func:`psql_daemon_profile` plus the ``localhost-slurm`` computer (core.slurm) and its code, on a running cluster.

    The cluster is started with ``deploy/slurm/start.sh`` when it is not running and this process may (root).
    """

    if not slurm_node_ready() and os.geteuid() == 0:
        result = subprocess.run(['bash', str(SLURM_START)], check=False, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.fail(f'deploy/slurm/start.sh failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')
    require_service(slurm_node_ready(), 'the one-node SLURM cluster', SLURM_HINT)
    psql_daemon_profile.mlqm('setup', '--detect', '--slurm', '--profile', psql_daemon_profile.name)
    return psql_daemon_profile


def parse_status(output: str) -> dict[str, tuple[str, str]]:
    """Rows of ``mlqm status``'s table as ``{check: (verdict, detail + hint)}``; wrapped cells are joined."""
    rows: dict[str, tuple[str, str]] = {}
    current = None
    for line in output.splitlines():
        if not line.startswith('│'):
            continue
        cells = [cell.strip() for cell in line.strip('│').split('│')]
        if len(cells) < 4:
            continue
        check, verdict, text = cells[0], cells[1], ' '.join(cells[2:])
        if check:
            current = check
            rows[check] = (verdict, text)
        elif current is not None:
            rows[current] = (rows[current][0], f'{rows[current][1]} {text}')
    return rows
