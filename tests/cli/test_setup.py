from __future__ import annotations

import pathlib
import sqlite3
import subprocess
import sys


def test_setup_embedded_is_idempotent(tmp_path):
    """``mlqm setup`` twice in a fresh AiiDA folder makes one profile, one computer and one code."""
    env = {'AIIDA_PATH': str(tmp_path), 'MLQM_HOME': str(tmp_path / 'mlqm'), 'PATH': '/usr/bin:/bin'}
    command = [sys.executable, '-m', 'aiida_mlqm.cli', 'setup', '--profile', 'embedded-test']
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert 'core.sqlite_dos' in first.stdout
    assert first.stdout == second.stdout

    verdi = str(pathlib.Path(sys.executable).parent / 'verdi')
    codes = subprocess.run([verdi, '-p', 'embedded-test', 'code', 'list', '-A'], env=env, capture_output=True, text=True)
    assert codes.returncode == 0, codes.stderr
    assert codes.stdout.count('mlqm-python@localhost') == 1
    computers = subprocess.run([verdi, '-p', 'embedded-test', 'computer', 'list', '-a'], env=env, capture_output=True, text=True)
    assert computers.stdout.count('localhost') == 1
    # The SQLite file commits through a write-ahead log (one sync a commit instead of a journal file made and deleted).
    database = tmp_path / 'mlqm' / 'storage' / 'embedded-test' / 'database.sqlite'
    assert sqlite3.connect(database).execute('PRAGMA journal_mode').fetchone() == ('wal',)


def test_setup_refuses_a_profile_name_that_is_a_path(tmp_path):
    """``--profile ../../nope`` would put the storage outside MLQM_HOME: refused before anything is made."""
    home = tmp_path / 'home' / 'mlqm'
    env = {'AIIDA_PATH': str(tmp_path / 'aiida'), 'MLQM_HOME': str(home), 'PATH': '/usr/bin:/bin'}
    for name in ('../../nope', 'a/b', 'bad name', 'x\n'):
        result = subprocess.run(
            [sys.executable, '-m', 'aiida_mlqm.cli', 'setup', '--profile', name],
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert 'letters, digits' in result.stderr
    assert not (tmp_path / 'nope').exists() and not home.exists()
    assert not any('nope' in config.read_text() for config in tmp_path.rglob('config.json'))
