"""``mlqm status`` on the embedded back end (no service needed) and on broken set-ups."""

from __future__ import annotations

import pytest
from service_fixtures import ProfileEnv, parse_status


@pytest.fixture(scope='module')
def embedded(tmp_path_factory):
    """An embedded profile as ``mlqm setup`` makes it, in its own AIIDA_PATH (read-only for the tests below)."""
    profile = ProfileEnv('embedded', tmp_path_factory.mktemp('aiida-status'))
    profile.mlqm('setup', '--profile', 'embedded')
    return profile


def test_status_of_embedded_profile_is_ok(embedded):
    result = embedded.mlqm('status', check=False)  # no --profile: the default one, which setup made
    assert result.returncode == 0, result.stdout + result.stderr
    rows = parse_status(result.stdout)
    assert rows['storage'][0] == 'ok' and 'core.sqlite_dos' in rows['storage'][1]
    assert rows['broker'][0] == 'ok' and 'none' in rows['broker'][1]
    assert rows['computer localhost'][0] == 'ok'
    assert 'scheduler answers' in rows['computer localhost'][1]
    assert rows['code mlqm-python@localhost'][0] == 'ok'


def test_status_names_an_unknown_profile(embedded):
    result = embedded.mlqm('status', '--profile', 'nope', check=False)
    assert result.returncode != 0
    assert "no profile 'nope'" in result.stderr and 'embedded' in result.stderr


def test_status_flags_missing_executable_and_unconfigured_computer(tmp_path):
    """A code whose executable is gone and a computer nobody configured: errors with hints, exit code 1."""
    profile = ProfileEnv('embedded', tmp_path)
    profile.mlqm('setup', '--profile', 'embedded')
    profile.verdi(
        'code',
        'create',
        'core.code.installed',
        '-n',
        '--label',
        'gone',
        '--computer',
        'localhost',
        '--filepath-executable',
        str(tmp_path / 'no-such-binary'),
    )
    profile.verdi(
        'computer',
        'setup',
        '-n',
        '--label',
        'bare',
        '--hostname',
        'localhost',
        '--transport',
        'core.local',
        '--scheduler',
        'core.direct',
        '--work-dir',
        str(tmp_path / 'work'),
    )
    result = profile.mlqm('status', '--profile', 'embedded', check=False)
    assert result.returncode == 1
    rows = parse_status(result.stdout)
    verdict, text = rows['code gone@localhost']
    assert verdict == 'error'
    assert 'missing' in text and 'create the code again' in text
    verdict, text = rows['computer bare']
    assert verdict == 'error' and 'verdi computer configure core.local bare' in text
    assert rows['code mlqm-python@localhost'][0] == 'ok'  # one broken code does not taint the others
