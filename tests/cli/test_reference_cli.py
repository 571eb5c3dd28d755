"""``mlqm reference`` and ``mlqm demo`` as a user runs them: a fresh AiiDA folder, real PySCF jobs, a printed table."""
from __future__ import annotations

import subprocess
import sys

from ase.io import read


def mlqm(tmp_path, *args):
    env = {'AIIDA_PATH': str(tmp_path / 'aiida'), 'MLQM_HOME': str(tmp_path / 'mlqm'), 'PATH': '/usr/bin:/bin'}
    return subprocess.run([sys.executable, '-m', 'aiida_mlqm.cli', *args], env=env, capture_output=True, text=True)


def test_reference_from_smiles_with_export(tmp_path):
    library = tmp_path / 'library.smi'
    library.write_text('O water\n[OH] hydroxyl\nC methane\nCC water\n[Na+].[Cl-] salt\n')
    export = tmp_path / 'labels.extxyz'
    result = mlqm(tmp_path, 'reference', '--smiles', str(library), '--level', 'hf/sto-3g', '--forces', '--export', str(export))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ('water', 'hydroxyl', 'methane'):
        assert name in result.stdout
    assert 'DatasetData<' in result.stdout
    images = read(export, index=':')
    assert len(images) == 4
    assert all(atoms.info['source_uuid'] for atoms in images)
    assert sorted(atoms.info['multiplicity'] for atoms in images) == [1, 1, 1, 2]
    # the table shows the stored energies (eV), not a conversion back to Hartree
    assert 'E total / eV' in result.stdout
    for atoms in images:
        assert f'{atoms.get_potential_energy():.6f}' in result.stdout
    # the second `water` is renamed, and the rename is listed
    assert "renamed 'water' -> water_2 (id used by an earlier entry: made unique)" in result.stdout
    assert 'water -> water_2' in result.stdout
    # a salt is rejected with a fix that exists: mlqm reference has no --allow-fragments
    assert 'rejected salt' in result.stdout and 'mlqm build --allow-fragments' in result.stdout
    assert '(--allow-fragments' not in result.stdout


def test_bad_level_or_library_fails_before_anything_is_stored(tmp_path):
    result = mlqm(tmp_path, 'reference', '--g2', 'H2O', '--level', 'b3lyx/6-31g*')
    assert result.returncode == 2
    assert "'b3lyx'" in result.stderr and 'b3lyp' in result.stderr
    assert not (tmp_path / 'mlqm' / 'storage').exists()

    result = mlqm(tmp_path, 'demo', '--molecules', 'H2O,XYZ')
    assert result.returncode == 2
    assert "'XYZ' is not a G2 molecule name" in result.stderr

    result = mlqm(tmp_path, 'reference', '--level', 'hf/sto-3g')
    assert result.returncode == 2
    assert 'no library given' in result.stderr


def test_a_run_above_the_cost_ceiling_is_refused_before_anything_is_stored(tmp_path):
    library = tmp_path / 'alkane.smi'
    library.write_text('C' * 166 + ' alkane_c166\nO water\n')
    result = mlqm(tmp_path, 'reference', '--smiles', str(library), '--level', 'ccsd(t)/cc-pvdz')
    assert result.returncode == 2, result.stdout + result.stderr
    message = ' '.join(result.stderr.replace('│', ' ').split())
    assert "'alkane_c166' (500 atoms) is estimated at 1.35e+08 core-hours" in message, message
    assert '48 h per structure' in message and '(--max-hours)' in message
    result = mlqm(tmp_path, 'reference', '--smiles', str(library), '--level', 'ccsd(t)/cc-pvdz', '--max-hours', '1e9')
    assert result.returncode == 2 and 'h per run' in result.stderr and '--max-run-hours' in result.stderr
    assert not (tmp_path / 'mlqm' / 'storage').exists()
