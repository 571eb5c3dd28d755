"""``mlqm campaign`` as a user runs it: a bad config fails before anything is stored, naming the key to fix."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import yaml

EXAMPLES = pathlib.Path(__file__).parents[2] / 'examples' / 'campaigns'


def mlqm(tmp_path, *args):
    env = {'AIIDA_PATH': str(tmp_path / 'aiida'), 'MLQM_HOME': str(tmp_path / 'mlqm'), 'PATH': '/usr/bin:/bin'}
    return subprocess.run([sys.executable, '-m', 'aiida_mlqm.cli', *args], env=env, capture_output=True, text=True, check=False)


def test_misspelt_key_fails_before_anything_is_stored(tmp_path):
    values = yaml.safe_load((EXAMPLES / 'property.yaml').read_text())
    values['active_learning']['batch_sise'] = 4
    values['library']['smiles'] = str(EXAMPLES.parent / 'molecules' / 'drugs.smi')
    config = tmp_path / 'campaign.yaml'
    config.write_text(yaml.safe_dump(values))
    result = mlqm(tmp_path, 'campaign', 'run', str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unknown key 'batch_sise'; did you mean 'batch_size'?" in result.stderr
    assert 'allowed:' in result.stderr
    assert not (tmp_path / 'mlqm' / 'storage').exists()


def test_bad_level_and_unknown_campaign(tmp_path):
    values = yaml.safe_load((EXAMPLES / 'potential.yaml').read_text())
    values['levels']['expensive']['level'] = 'ccsd(t)/cc-pvqq'
    config = tmp_path / 'campaign.yaml'
    config.write_text(yaml.safe_dump(values))
    result = mlqm(tmp_path, 'campaign', 'run', str(config))
    assert result.returncode == 2 and 'levels.expensive.level' in result.stderr, result.stderr
    assert not (tmp_path / 'mlqm' / 'storage').exists()

    result = mlqm(tmp_path, 'campaign', 'list')
    assert result.returncode == 0, result.stderr
    result = mlqm(tmp_path, 'campaign', 'status', '999999')
    assert result.returncode == 2 and 'no unique node' in result.stderr
