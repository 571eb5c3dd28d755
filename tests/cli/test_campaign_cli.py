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


def test_a_molecule_above_the_cost_ceiling_is_refused_before_anything_is_stored(tmp_path):
    (tmp_path / 'library.smi').write_text('O water\n' + 'C' * 166 + ' alkane_c166\n')
    values = yaml.safe_load((EXAMPLES / 'potential.yaml').read_text())
    values['library'] = {'smiles': 'library.smi'}
    values['levels']['expensive']['level'] = 'ccsd(t)/cc-pvdz'
    config = tmp_path / 'campaign.yaml'
    config.write_text(yaml.safe_dump(values))
    result = mlqm(tmp_path, 'campaign', 'run', str(config), '--max-hours', '100')
    assert result.returncode == 2, result.stdout + result.stderr
    message = ' '.join(result.stderr.replace('│', ' ').split())
    assert "'alkane_c166' (500 atoms) is estimated at 1.35e+08 core-hours at ccsd(t)/cc-pvdz" in message, message
    assert 'above the ceiling of 100 h per structure' in message and '(--max-hours)' in message
    assert not (tmp_path / 'mlqm' / 'storage').exists()


def test_the_ceilings_of_a_config_reach_the_reference_chains():
    from aiida_mlqm.workflows.campaign_config import parse_config

    values = yaml.safe_load((EXAMPLES / 'potential.yaml').read_text())
    assert parse_config(values).submission.max_hours() == {}  # the reference protocol's defaults apply
    values['submission'] = {'max_hours_per_structure': 200.0}
    assert parse_config(values).submission.max_hours() == {'per_structure': 200.0}
