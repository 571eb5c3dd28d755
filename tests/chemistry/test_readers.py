"""Readers of molecule libraries: SMILES, CSV, xyz folder, extxyz, ASE db, pymatgen, G2."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
from aiida_mlqm.chemistry import readers

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / 'examples' / 'molecules'


def test_smiles_lines_ids_keys_and_comments(tmp_path):
    path = tmp_path / 'lib.smi'
    path.write_text(
        '# a comment line\n'
        'CC#N acetonitrile  # the # inside the SMILES is a triple bond, this one a comment\n'
        '\n'
        'CC(=O)[O-] acetate charge=-1\n'
        '[CH2] carbene multiplicity=1\n'
        'c1ccccc1\n'
    )
    records = readers.read_smiles_file(path)
    assert [r['id'] for r in records] == ['acetonitrile', 'acetate', 'carbene', 'lib_6']
    assert records[0]['smiles'] == 'CC#N'
    assert (records[1]['charge'], records[1]['multiplicity']) == (-1, None)
    assert (records[2]['charge'], records[2]['multiplicity']) == (None, 1)
    assert records[3]['source'] == 'smiles:lib.smi:6'
    assert all(r['kind'] == 'smiles' for r in records)
    json.dumps(records)


@pytest.mark.parametrize(
    'line,message',
    [
        ('CCO ethanol spin=1', "unknown key 'spin'"),
        ('CCO ethanol charge=one', "charge 'one' is not an integer"),
        ('CCO ethanol alcohol', 'more than one id'),
        ('CCO ethanol charge=0.5', "charge '0.5' is not an integer"),
    ],
)
def test_smiles_line_errors_name_the_line(tmp_path, line, message):
    path = tmp_path / 'bad.smi'
    path.write_text(f'C methane\n{line}\n')
    with pytest.raises(readers.LibraryError, match=message) as info:
        readers.read_smiles_file(path)
    assert 'bad.smi:2' in str(info.value)


def test_smiles_csv(tmp_path):
    path = tmp_path / 'lib.csv'
    path.write_text('smiles,id,charge,multiplicity\nCCO,ethanol,,\n[NH4+],ammonium,1,\n[O][O],o2,0,3\n')
    records = readers.read_smiles_file(path)
    assert [(r['id'], r['charge'], r['multiplicity']) for r in records] == [
        ('ethanol', None, None),
        ('ammonium', 1, None),
        ('o2', 0, 3),
    ]
    (tmp_path / 'header.txt').write_text('SMILES,id\nC,methane\n')  # a CSV header is recognised without the suffix
    assert readers.read_smiles_file(tmp_path / 'header.txt')[0]['id'] == 'methane'


def test_smiles_csv_errors(tmp_path):
    (tmp_path / 'a.csv').write_text('smile,id\nC,methane\n')
    with pytest.raises(readers.LibraryError, match='no `smiles` column'):
        readers.read_smiles_file(tmp_path / 'a.csv')
    (tmp_path / 'b.csv').write_text('smiles,id,spin\nC,methane,0\n')
    with pytest.raises(readers.LibraryError, match=r"unknown CSV columns \['spin'\]"):
        readers.read_smiles_file(tmp_path / 'b.csv')
    with pytest.raises(readers.LibraryError, match='does not exist'):
        readers.read_smiles_file(tmp_path / 'missing.smi')


def test_xyz_folder_reads_comment_keys(tmp_path):
    (tmp_path / 'b_water.xyz').write_text(
        '3\ncharge=0 multiplicity=1\nO 0 0 0.119\nH 0 0.763 -0.477\nH 0 -0.763 -0.477\n'
    )
    (tmp_path / 'a_oh.xyz').write_text('2\nhydroxyl radical, free text comment\nO 0 0 0\nH 0 0 0.97\n')
    (tmp_path / 'ignored.txt').write_text('not xyz')
    records = readers.read_xyz_dir(tmp_path)
    assert [r['id'] for r in records] == ['a_oh', 'b_water']
    assert records[0]['symbols'] == ['O', 'H'] and records[0]['multiplicity'] is None
    assert (records[1]['charge'], records[1]['multiplicity'], records[1]['source']) == (0, 1, 'xyz:b_water.xyz')
    np.testing.assert_allclose(records[1]['positions'][1], [0, 0.763, -0.477])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(readers.LibraryError, match='holds no .xyz files'):
        readers.read_xyz_dir(tmp_path / 'empty')


def test_extxyz_frames(tmp_path):
    import ase
    import ase.io

    frames = [
        ase.Atoms('OH', positions=[[0, 0, 0], [0, 0, 0.97]], info={'id': 'hydroxyl', 'multiplicity': 2}),
        ase.Atoms(
            'NH4',
            positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [0.63, -0.63, -0.63], [-0.63, 0.63, -0.63]],
            info={'charge': 1, 'smiles': '[NH4+]'},
        ),
    ]
    path = tmp_path / 'set.extxyz'
    ase.io.write(path, frames, format='extxyz')
    records = readers.read_extxyz(path)
    assert [r['id'] for r in records] == ['hydroxyl', 'set_1']
    assert records[0]['multiplicity'] == 2 and records[0]['charge'] is None
    assert records[1]['charge'] == 1 and records[1]['smiles'] == '[NH4+]'
    assert records[1]['source'] == 'extxyz:set.extxyz:1'


def test_ase_database(tmp_path):
    import ase
    import ase.db

    path = tmp_path / 'mols.db'
    with ase.db.connect(path) as db:
        db.write(ase.Atoms('H2', positions=[[0, 0, 0], [0, 0, 0.74]]), name='hydrogen')
        atoms = ase.Atoms('CH3', positions=[[0, 0, 0], [1.08, 0, 0], [-0.54, 0.94, 0], [-0.54, -0.94, 0]])
        atoms.set_initial_magnetic_moments([1, 0, 0, 0])
        db.write(atoms)
        hydroxide = ase.Atoms('OH', positions=[[0, 0, 0], [0, 0, 0.97]])
        hydroxide.set_initial_charges([-1, 0])  # ASE keeps a row's charge as the sum of the initial charges
        db.write(hydroxide, multiplicity=1)
    records = readers.read_ase_db(path)
    assert [r['id'] for r in records] == ['hydrogen', 'mols_2', 'mols_3']
    assert records[1]['multiplicity'] == 2  # from the initial magnetic moments
    assert (records[2]['charge'], records[2]['multiplicity']) == (-1, 1)
    assert records[2]['source'] == 'ase-db:mols.db:3'


def test_pymatgen_molecules():
    from pymatgen.core import Molecule

    molecule = Molecule(['O', 'H'], [[0, 0, 0], [0, 0, 0.97]], charge=-1, spin_multiplicity=1)
    record = readers.from_pymatgen([molecule], ids=['hydroxide'])[0]
    assert (record['id'], record['charge'], record['multiplicity'], record['source']) == (
        'hydroxide',
        -1,
        1,
        'pymatgen',
    )
    assert readers.from_pymatgen([molecule])[0]['id'] == 'H1O1_0'


def test_g2_names_all_and_multiplicity():
    from ase.collections import g2

    assert len(readers.read_g2('all')) == len(g2.names) == 162
    records = {r['id']: r for r in readers.read_g2('H2O, O2,CH3')}
    assert records['H2O']['multiplicity'] is None  # closed shell: the builder takes the lowest, 1
    assert records['O2']['multiplicity'] == 3
    assert records['CH3']['multiplicity'] == 2
    assert records['H2O']['source'] == 'g2:H2O'
    with pytest.raises(readers.LibraryError, match='did you mean H2O'):
        readers.read_g2(['H2Oo'])


def test_non_finite_positions_stay_storable():
    record = readers.geometry_record(['H', 'H'], [[0, 0, 0], [0, 0, math.nan]], 'h2', 'test')
    assert record['positions'][1][2] == 'nan'
    json.dumps(record, allow_nan=False)
    assert np.isnan(np.asarray(record['positions'], dtype=float)[1, 2])


def test_read_library_combines_and_requires_an_input(tmp_path):
    records = readers.read_library(smiles=EXAMPLES / 'library.csv', xyz_dir=EXAMPLES / 'xyz', g2='H2O')
    assert [r['source'].split(':')[0] for r in records] == ['smiles'] * 4 + ['xyz'] * 5 + ['g2']
    with pytest.raises(readers.LibraryError, match='no library given'):
        readers.read_library()


def test_shipped_examples_are_readable():
    drugs = readers.read_smiles_file(EXAMPLES / 'drugs.smi')
    assert len(drugs) == 100 and len({r['id'] for r in drugs}) == 100
    radicals = {r['id']: r for r in readers.read_smiles_file(EXAMPLES / 'radicals_ions.smi')}
    assert radicals['methylene_singlet']['multiplicity'] == 1
    assert {r['id'] for r in readers.read_xyz_dir(EXAMPLES / 'xyz')} == {
        'ammonium',
        'benzene',
        'hydroxyl',
        'methanol',
        'water',
    }
