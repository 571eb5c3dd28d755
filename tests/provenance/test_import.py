"""Importing labelled files: two levels per structure, energy-only rows, provenance to the file, export, training."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from aiida import orm
from aiida_mlqm.provenance.dataset import DatasetData
from aiida_mlqm.units import HARTREE_TO_EV
from labelled_files import LABELS, in_ev, labelled_water, write_ase_db, write_extxyz


@pytest.fixture(scope='module')
def water_images():
    return labelled_water(12, seed=3, expensive=6, energy_only=(1, 4))


@pytest.fixture
def water_file(tmp_path, water_images):
    path = tmp_path / 'water.extxyz'
    write_extxyz(path, water_images)
    return path


def check_dataset(dataset: DatasetData, images, path) -> None:
    expected = in_ev(images)
    assert dataset.base.attributes.get('level_counts') == {'hf/sto-3g': 12, 'hf/6-31g': 6}
    assert dataset.base.attributes.get('num_rows_with_forces') == 10
    present = dataset.forces_present
    for level, labels in expected.items():
        rows = dataset.rows_at(level)
        assert [int(dataset.frame_indices[row]) for row in rows] == [index for index, _, _ in labels]
        for row, (index, energy, forces) in zip(rows, labels):
            frame = dataset.frame(row)
            assert frame.energy == pytest.approx(energy, abs=1e-9)
            assert frame.frame_index == index and frame.charge == 0 and frame.multiplicity == 1
            # extxyz keeps 8 decimals of per-atom columns
            np.testing.assert_allclose(frame.positions, images[index].positions, atol=1e-7)
            if forces is None:
                assert frame.forces is None and not present[row]
            else:
                np.testing.assert_allclose(frame.forces, forces, atol=1e-6)
    # the two levels of a frame share its structure node, which is what pairs them
    pairs = dataset.pairs('hf/sto-3g', 'hf/6-31g')
    assert len(pairs) == 6
    for base, target in pairs:
        assert dataset.frame_indices[base] == dataset.frame_indices[target]
        assert dataset.structure_uuids[base] == dataset.structure_uuids[target]
    # provenance: the creating calcfunction has the file among its inputs, with its sha256
    creator = dataset.creator
    source = creator.inputs.source
    assert isinstance(source, orm.SinglefileData)
    assert source.base.attributes.get('sha256') == hashlib.sha256(path.read_bytes()).hexdigest()
    structures = {
        link.node.uuid: link.node for link in creator.base.links.get_outgoing(node_class=orm.StructureData).all()
    }
    assert set(dataset.structure_uuids) == set(structures)
    assert all(row.source_uuid == source.uuid for row in dataset.frames())


def test_extxyz_with_two_levels_and_energy_only_rows_round_trips(water_file, water_images, tmp_path):
    dataset = DatasetData.from_file(water_file, LABELS, energy_unit='hartree')
    assert dataset.is_stored
    check_dataset(dataset, water_images, water_file)

    # export writes one frame per structure with the same keys and unit, and imports back to the same rows
    exported = tmp_path / 'exported.extxyz'
    dataset.export_extxyz(exported)
    from ase.io import read

    back = read(exported, index=':')
    assert len(back) == 12
    for original, atoms in zip(water_images, back):
        assert atoms.info['e_lo'] == pytest.approx(original.info['e_lo'], abs=1e-10)
        assert ('e_hi' in atoms.info) == ('e_hi' in original.info)
        assert ('f_lo' in atoms.arrays) == ('f_lo' in original.arrays)
    again = DatasetData.from_file(exported, LABELS, energy_unit='hartree')
    for name in ('energy', 'positions', 'forces', 'forces_present', 'frame_index', 'numbers'):
        np.testing.assert_allclose(again.get_array(name), dataset.get_array(name), atol=1e-9)
    assert again.levels == dataset.levels
    # and in eV on request
    in_ev_file = tmp_path / 'ev.extxyz'
    dataset.export_extxyz(in_ev_file, energy_unit='eV')
    assert read(in_ev_file, index=0).info['e_lo'] == pytest.approx(water_images[0].info['e_lo'] * HARTREE_TO_EV)


def test_ase_database_import(tmp_path, water_images):
    path = tmp_path / 'water.db'
    write_ase_db(path, water_images)
    dataset = DatasetData.from_file(path, LABELS, energy_unit='hartree')
    check_dataset(dataset, water_images, path)


def test_kcal_per_mol_and_default_energy_key(tmp_path, water_images):
    from ase.calculators.singlepoint import SinglePointCalculator

    images = [atoms.copy() for atoms in water_images[:3]]
    for atoms, original in zip(images, water_images):
        atoms.calc = SinglePointCalculator(atoms, energy=original.info['e_lo'] * 627.509474)
    path = tmp_path / 'plain.extxyz'
    write_extxyz(path, images)
    dataset = DatasetData.from_file(path, ['RHF / STO-3G=energy'], energy_unit='kcal/mol')
    assert dataset.levels == ['hf/sto-3g'] * 3  # the label computed rows of this level carry
    assert dataset.frame(0).energy == pytest.approx(water_images[0].info['e_lo'] * HARTREE_TO_EV, rel=1e-6)


@pytest.mark.parametrize(
    ('labels', 'unit', 'message'),
    [
        (['hf/sto-3g=e_missing'], 'eV', "key 'e_missing' of level hf/sto-3g is in no frame.*e_hi"),
        (['hf/sto-3g=e_lo,f_missing'], 'eV', "forces .*key 'f_missing'.*f_lo"),
        (['hf-sto-3g=e_lo'], 'eV', 'must be METHOD/BASIS'),
        (['hf/sto-3g'], 'eV', 'must look like METHOD/BASIS=ENERGY_KEY'),
        (['mp3/sto-3g=e_lo'], 'eV', "label 'mp3/sto-3g=e_lo': METHOD 'mp3' is not supported; did you mean mp2"),
        (['hf/sto-3g=e_lo', 'HF/STO-3G=e_hi'], 'eV', 'labelled twice'),
        (['hf/sto-3g=e_lo'], 'kJ/mol', "unknown energy unit 'kJ/mol'; choose one of eV, hartree, kcal/mol"),
    ],
)
def test_bad_labels_and_units_store_nothing(water_file, labels, unit, message):
    before = orm.QueryBuilder().append(orm.Node).count()
    with pytest.raises(ValueError, match=message):
        DatasetData.from_file(water_file, labels, energy_unit=unit)
    assert orm.QueryBuilder().append(orm.Node).count() == before


def test_impossible_multiplicity_is_named(tmp_path, water_images):
    images = [atoms.copy() for atoms in water_images[:2]]
    images[1].info['multiplicity'] = 2
    path = tmp_path / 'bad.extxyz'
    write_extxyz(path, images)
    with pytest.raises(ValueError, match='frame 1: multiplicity 2 is impossible with 10 electrons'):
        DatasetData.from_file(path, LABELS, energy_unit='hartree')


def test_two_rows_of_one_structure_at_one_level_are_refused():
    from aiida_mlqm.provenance.dataset import Frame

    row = Frame(np.array([1, 1]), np.array([[0, 0, 0], [0, 0, 0.74]]), -1.0, None, 0, 1, 'hf/sto-3g', None, 'same')
    with pytest.raises(ValueError, match='twice at hf/sto-3g'):
        DatasetData.from_frames([row, row])


def test_imported_mixed_dataset_trains_a_potential_and_a_delta_model(tmp_path):
    """The arrays a training job receives: a potential on the cheap level (forces masked on energy-only rows) and
    a Δ model on the pairs."""
    import io

    from aiida_mlqm.calcjobs.train import dataset_to_npz
    from aiida_mlqm.models.data import Structures
    from aiida_mlqm.models.delta import train_delta
    from aiida_mlqm.models.training import train_committee

    images = labelled_water(30, seed=4, expensive=12, energy_only=(0, 5, 9, 17))
    path = tmp_path / 'train.extxyz'
    write_extxyz(path, images)
    dataset = DatasetData.from_file(path, LABELS, energy_unit='hartree')
    structures = Structures.load_npz(io.BytesIO(dataset_to_npz(dataset)))
    assert structures.num_force_frames == 26 and len(structures) == 42

    hyper = {'backend': 'torchani', 'members': 2, 'hidden': [16], 'epochs': 40, 'batch_size': 8, 'learning_rate': 3e-3, 'seed': 2}
    cheap = structures.at_level('hf/sto-3g')
    potential = train_committee(cheap, hyper, log=None)
    # trained on energies and forces: better energies than the composition baseline, forces compared where present
    assert potential.metrics['train']['energy_mae'] < potential.metrics['baseline_composition']['mae']
    assert np.isfinite(potential.metrics['train']['force_mae'])

    model = train_delta(structures, base_level='hf/sto-3g', target_level='hf/6-31g', hyperparameters=hyper, log=None)
    held = model.metrics['holdout']
    assert model.metrics['num_pairs'] == 12
    # 6-31G - STO-3G of water is ~ -0.4 hartree; its variation over the frames is what the correction learns
    assert held['energy_mae'] < 0.1 * held['base_only_energy_mae']
    # every cheap row gets base + Δ, the expensive rows take the cheap energy of their structure
    prediction = model.predict(structures)
    assert len(prediction.value) == 42 and np.all(np.isfinite(prediction.value))
