from __future__ import annotations

import pathlib
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
