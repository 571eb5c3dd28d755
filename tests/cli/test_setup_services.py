"""``mlqm setup --detect`` and ``mlqm status`` against the live PostgreSQL and RabbitMQ on 127.0.0.1."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys

import pytest
from service_fixtures import (
    ProfileEnv,
    drop_profile,
    parse_status,
    require_services,
    unique_profile_name,
)

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture(scope='module')
def detected(tmp_path_factory):
    """A profile made by ``mlqm setup --detect`` (no daemon) and the output of that first run."""
    require_services()
    aiida_path = tmp_path_factory.mktemp('aiida-detect')
    profile = ProfileEnv(unique_profile_name('mlqm-setup'), aiida_path)
    try:
        first = profile.mlqm('setup', '--detect', '--profile', profile.name)
        yield profile, first
    finally:
        drop_profile(profile)


def test_detect_creates_psql_profile_and_is_idempotent(detected):
    profile, first = detected
    second = profile.mlqm('setup', '--detect', '--profile', profile.name)
    assert first.stdout == second.stdout
    assert 'core.psql_dos' in first.stdout and 'mlqm.rabbitmq' in first.stdout

    config = profile.config()
    assert config['default_profile'] == profile.name  # the first profile in a fresh AIIDA_PATH becomes the default
    options = config['profiles'][profile.name]['options']
    assert options['daemon.default_workers'] == 2
    storage = config['profiles'][profile.name]['storage']['config']
    assert storage['database_name'] == storage['database_username'] == profile.name.replace('-', '_')

    codes = profile.verdi('code', 'list', '-A').stdout
    assert codes.count('mlqm-python@localhost') == 1


def test_detect_never_prints_the_database_password(detected):
    profile, first = detected
    password = profile.profile_config()['storage']['config']['database_password']
    assert len(password) >= 20  # generated, not empty: otherwise the check below proves nothing
    status = profile.mlqm('status', '--profile', profile.name, check=False)
    for output in (first.stdout, first.stderr, status.stdout, status.stderr):
        assert password not in output


def test_given_password_is_used_and_not_printed(tmp_path):
    """A password from MLQM_DB_PASSWORD goes into the profile and into no output, also on a second run."""
    require_services()
    password = f'pw-{secrets.token_hex(12)}'
    profile = ProfileEnv(unique_profile_name('mlqm-setup'), tmp_path)
    env = {**profile.env, 'MLQM_DB_PASSWORD': password}
    command = [sys.executable, '-m', 'aiida_mlqm.cli', 'setup', '--detect', '--profile', profile.name]
    try:
        runs = [
            subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=120) for _ in range(2)
        ]
        for run in runs:
            assert run.returncode == 0, run.stderr
            assert password not in run.stdout + run.stderr
        assert profile.profile_config()['storage']['config']['database_password'] == password
    finally:
        drop_profile(profile)


def test_status_ok_on_live_services(detected):
    profile, _ = detected
    result = profile.mlqm('status', '--profile', profile.name, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = parse_status(result.stdout)
    for check in ('storage', 'broker', 'broker outages', 'broker queue', 'computer localhost',
                  'code mlqm-python@localhost'):
        assert rows[check][0] == 'ok', (check, rows[check])
    assert 'core.psql_dos' in rows['storage'][1]
    if os.geteuid() == 0:  # rabbitmqctl needs the Erlang cookie, which root has
        assert rows['broker consumer_timeout'][0] == 'ok', rows['broker consumer_timeout']
    # No worker runs for this profile: a warning with the command that starts them, not an error.
    assert rows['daemon'][0] == 'warning'
    assert 'daemon start' in rows['daemon'][1]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_status_error_with_hint_on_closed_ports(detected, tmp_path):
    """The same profile pointed at ports where nothing listens: error verdicts with hints, exit code 1."""
    profile, _ = detected
    config = profile.config()
    entry = config['profiles'][profile.name]
    entry['storage']['config']['database_port'] = _closed_port()
    entry['process_control']['config']['broker_port'] = _closed_port()
    (tmp_path / '.aiida').mkdir()
    (tmp_path / '.aiida' / 'config.json').write_text(json.dumps(config))
    broken = ProfileEnv(profile.name, tmp_path)

    result = broken.mlqm('status', '--profile', profile.name, check=False)
    assert result.returncode == 1
    rows = parse_status(result.stdout)
    assert rows['storage'][0] == 'error'
    assert 'deploy/services.sh' in rows['storage'][1]
    assert rows['broker'][0] == 'error'
    assert 'not reachable' in rows['broker'][1] and 'configure-broker' in rows['broker'][1]


def test_a_profile_on_aiidas_own_broker_is_warned_about_and_moved(detected, tmp_path):
    """A copy of the profile on ``core.rabbitmq`` (as ``verdi presto`` or an older mlqm makes it): ``mlqm status`` warns
    that a broker restart excepts processes and names the fix; ``mlqm setup --detect`` moves it to ``mlqm.rabbitmq``."""
    profile, _ = detected
    config = profile.config()
    config['profiles'][profile.name]['process_control']['backend'] = 'core.rabbitmq'
    (tmp_path / '.aiida').mkdir()
    (tmp_path / '.aiida' / 'config.json').write_text(json.dumps(config))
    copy = ProfileEnv(profile.name, tmp_path)

    rows = parse_status(copy.mlqm('status', '--profile', profile.name, check=False).stdout)
    assert rows['broker'][0] == 'ok'
    assert rows['broker outages'][0] == 'warning' and 'excepted' in rows['broker outages'][1]
    assert f'mlqm setup --detect --profile {profile.name}' in rows['broker outages'][1]
    copy.mlqm('setup', '--detect', '--profile', profile.name)
    assert copy.config()['profiles'][profile.name]['process_control']['backend'] == 'mlqm.rabbitmq'
    assert copy.config()['profiles'][profile.name]['process_control']['config'] == (
        config['profiles'][profile.name]['process_control']['config']
    )


def test_services_options_refuse_an_embedded_profile(tmp_path):
    """Asking for PostgreSQL on a name that is an SQLite profile fails with the fix, instead of reusing it silently."""
    profile = ProfileEnv('embedded', tmp_path)
    profile.mlqm('setup', '--profile', 'embedded')
    result = profile.mlqm('setup', '--detect', '--profile', 'embedded', check=False)
    assert result.returncode != 0
    assert 'core.sqlite_dos' in result.stderr and '--profile' in result.stderr


def test_detect_reports_a_missing_broker(tmp_path):
    require_services()
    profile = ProfileEnv(unique_profile_name('mlqm-setup'), tmp_path)
    result = profile.mlqm(
        'setup', '--detect', '--broker-port', str(_closed_port()), '--profile', profile.name, check=False
    )
    assert result.returncode != 0
    assert 'RabbitMQ not reachable' in result.stderr and 'deploy/services.sh' in result.stderr
    assert not (tmp_path / '.aiida' / 'config.json').exists() or profile.name not in profile.config()['profiles']
