"""``mlqm build``: reads each input kind, prints built and rejected entries with reasons, fails clearly."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

from aiida_mlqm.cli import main
from click.testing import CliRunner

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / 'examples' / 'molecules'


def invoke(aiida_profile, *args):
    result = CliRunner().invoke(main, ['build', '--protocol', 'fast', '--profile', aiida_profile.name, *args])
    return result


def test_smiles_file_prints_built_and_rejected(aiida_profile, tmp_path):
    library = tmp_path / 'lib.smi'
    library.write_text('CCO ethanol\n[CH3] methyl\nC1CC( broken\nOCC ethanol_again\n[I-] iodide\nc1cc[cH-]c1 cp\n')
    result = invoke(aiida_profile, '--smiles', str(library), '--basis', '6-31g')
    assert result.exit_code == 0, result.output
    output = result.output
    assert 'Built structures' in output and 'Rejected entries (3 of 6)' in output
    for text in ('ethanol', 'methyl', 'invalid_smiles', 'duplicate', 'unsupported_element'):
        assert text in output
    flat = re.sub(r'[\s│┃]+', '', output)  # reasons wrap inside the table cells
    assert "basis'6-31g'hasnofunctionsforelementI" in flat and 'e.g.def2-svp' in flat  # a basis that covers I
    assert 'c1cc[cH-]c1' in output  # SMILES brackets are printed, not taken for rich markup
    assert '3 structures built, 3 entries rejected' in output


def test_other_input_kinds(aiida_profile, tmp_path):
    import ase
    import ase.db
    import ase.io

    extxyz = tmp_path / 'set.extxyz'
    ase.io.write(
        extxyz, [ase.Atoms('H2', positions=[[0, 0, 0], [0, 0, 0.74]], info={'id': 'hydrogen'})], format='extxyz'
    )
    database = tmp_path / 'mols.db'
    with ase.db.connect(database) as db:
        db.write(ase.Atoms('HF', positions=[[0, 0, 0], [0, 0, 0.92]]), name='hydrogen_fluoride')
    result = invoke(
        aiida_profile,
        '--xyz-dir',
        str(EXAMPLES / 'xyz'),
        '--extxyz',
        str(extxyz),
        '--ase-db',
        str(database),
        '--g2',
        'CH4,O2',
        '--configurations',
        '1',
    )
    assert result.exit_code == 0, result.output
    for key in ('water', 'ammonium', 'hydroxyl', 'hydrogen', 'hydrogen_fluoride', 'CH4', 'O2'):
        assert key in result.output
    assert '9 structures built, 0 entries rejected, 9 configurations sampled' in result.output


def test_usage_errors_are_clear(aiida_profile, tmp_path):
    result = invoke(aiida_profile, '--g2', 'H2Oo')
    assert result.exit_code == 2 and 'did you mean H2O' in result.output
    result = invoke(aiida_profile)
    assert result.exit_code == 2 and 'no library given' in result.output
    bad = tmp_path / 'bad.smi'
    bad.write_text('CCO ethanol spin=1\n')
    result = invoke(aiida_profile, '--smiles', str(bad))
    assert result.exit_code == 2 and "bad.smi:1: unknown key 'spin'" in result.output


def test_all_rejected_exits_non_zero_with_reasons(aiida_profile, tmp_path):
    library = tmp_path / 'bad.smi'
    library.write_text('C1CC( broken\n[Na+].[Cl-] salt\n')
    result = invoke(aiida_profile, '--smiles', str(library))
    assert result.exit_code == 1
    assert 'disconnected_fragments' in result.output and 'exit status 211' in result.output
    result = invoke(aiida_profile, '--smiles', str(library), '--allow-fragments')
    assert result.exit_code == 0 and 'salt' in result.output


def test_renamed_ids_are_listed(aiida_profile, tmp_path):
    library = tmp_path / 'ids.smi'
    library.write_text('O water\nC water\nN mol-1\n')
    result = invoke(aiida_profile, '--smiles', str(library))
    assert result.exit_code == 0, result.output
    assert 'Renamed ids (2)' in result.output
    lines = [' '.join(line.replace('│', ' ').split()) for line in result.output.splitlines()]
    assert 'water water_2 id used by an earlier entry: made unique' in lines
    assert 'mol-1 mol_1 not an identifier: sanitised' in lines


def test_command_line_uses_the_embedded_profile_by_default(tmp_path):
    """Without --profile the command creates the embedded profile in a fresh AIIDA_PATH, as a new user would see it."""
    env = {'AIIDA_PATH': str(tmp_path), 'MLQM_HOME': str(tmp_path / 'mlqm'), 'PATH': '/usr/bin:/bin'}
    command = [sys.executable, '-m', 'aiida_mlqm.cli', 'build', '--protocol', 'fast', '--g2', 'H2O']
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr
    assert 'H2O' in completed.stdout and '1 structures built' in completed.stdout
    assert (tmp_path / 'mlqm' / 'storage' / 'mlqm').is_dir()


def test_unknown_basis_is_a_usage_error_before_anything_is_stored(aiida_profile):
    from aiida import orm

    before = orm.QueryBuilder().append(orm.Node).count()
    result = invoke(aiida_profile, '--g2', 'H2O', '--basis', 'not-a-basis')
    assert result.exit_code == 2, result.output
    assert "'not-a-basis' is not in PySCF's basis library" in result.output
    assert orm.QueryBuilder().append(orm.Node).count() == before
