"""Exports: a dataset as extxyz with each frame's uuids, from the command line."""

from __future__ import annotations


def test_export_dataset_as_extxyz_with_each_frames_uuids(chain, tmp_path):
    from ase.io import read
    from click.testing import CliRunner

    from aiida_mlqm.cli import main

    output = tmp_path / 'labels.extxyz'
    # the reference chain stands for its dataset
    result = CliRunner().invoke(main, ['export', 'dataset', chain['reference'], '-o', str(output)])
    assert result.exit_code == 0, result.output
    images = read(output, index=':')
    assert {atoms.info['structure_uuid']: atoms.info['source_uuid'] for atoms in images} == chain['frames']
    result = CliRunner().invoke(main, ['export', 'dataset', chain['model'], '-o', str(tmp_path / 'x.extxyz')])
    assert result.exit_code == 2 and 'not a DatasetData' in result.output
    result = CliRunner().invoke(main, ['export', 'archive', chain['model'], '-o', str(output)])
    assert result.exit_code == 2 and '--overwrite' in result.output
