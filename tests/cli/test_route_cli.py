"""``mlqm route`` as a user runs it: a fresh AiiDA folder, the shipped classifier imported, real features jobs."""
from __future__ import annotations

import json
import subprocess
import sys

from ase import Atoms
from ase.io import write


def mlqm(tmp_path, *args):
    env = {'AIIDA_PATH': str(tmp_path / 'aiida'), 'MLQM_HOME': str(tmp_path / 'mlqm'), 'PATH': '/usr/bin:/bin',
           'OMP_NUM_THREADS': '1'}  # fmt: skip
    return subprocess.run([sys.executable, '-m', 'aiida_mlqm.cli', *args], env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip


def test_route_extxyz_json_uses_the_given_geometry(tmp_path):
    stretched = Atoms('HH', positions=[(0, 0, 0), (2.4, 0, 0)], info={'name': 'h2_stretched', 'charge': 0})
    water = Atoms('OH2', positions=[(0, 0, 0.1173), (0, 0.7572, -0.4692), (0, -0.7572, -0.4692)],
                  info={'name': 'water'})  # no charge in the frame: neutral  # fmt: skip
    library = tmp_path / 'library.extxyz'
    write(library, [stretched, water], format='extxyz')
    result = mlqm(tmp_path, 'route', '--extxyz', str(library), '--json')
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {row['name']: row for row in json.loads(result.stdout)}
    assert set(rows) == {'h2_stretched', 'water'}
    for row in rows.values():
        assert 0 <= row['p_mr'] <= 1 and row['route'] in ('multireference', 'single_reference')
        assert 'diagnostics' in row
    assert rows['h2_stretched']['p_mr'] > rows['water']['p_mr']

    result = mlqm(tmp_path, 'route', '--extxyz', str(library), '--routing', str(tmp_path / 'missing.yaml'))
    assert result.returncode == 2
    bad = tmp_path / 'rule.yaml'
    bad.write_text('multireference_action: ignore\n')
    result = mlqm(tmp_path, 'route', '--extxyz', str(library), '--routing', str(bad))
    assert result.returncode == 2 and 'multireference_action' in result.stderr
