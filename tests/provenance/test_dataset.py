"""``DatasetData``: construction checks, reading back, extxyz export that ASE reads."""
from __future__ import annotations

import numpy as np
import pytest
from aiida_mlqm.provenance.dataset import DatasetData, Frame
from ase.io import read


def frame(numbers, energy, forces=True, level='rhf/sto-3g', source='abc'):
    rng = np.random.default_rng(len(numbers))
    positions = rng.normal(size=(len(numbers), 3))
    return Frame(
        numbers=np.array(numbers),
        positions=positions,
        energy=energy,
        forces=rng.normal(size=(len(numbers), 3)) if forces else None,
        charge=0,
        multiplicity=1,
        level=level,
        source_uuid=source,
        structure_uuid=f'structure-{len(numbers)}',
    )


def test_frames_round_trip_through_storage():
    frames = [frame([8, 1, 1], -2000.5), frame([6, 1, 1, 1, 1], -1090.25, source='def')]
    dataset = DatasetData.from_frames(frames).store()
    loaded = DatasetData.collection.get(pk=dataset.pk)
    assert len(loaded) == 2
    assert loaded.has_forces
    assert loaded.species == [1, 6, 8]
    for original, back in zip(frames, loaded.frames()):
        np.testing.assert_array_equal(original.numbers, back.numbers)
        np.testing.assert_allclose(original.positions, back.positions)
        np.testing.assert_allclose(original.forces, back.forces)
        assert original.energy == back.energy
        assert original.source_uuid == back.source_uuid
    assert 'rhf/sto-3g' in str(loaded)


def test_extxyz_export_reads_back_with_ase(tmp_path):
    frames = [frame([8, 1, 1], -2000.5), frame([7, 1, 1, 1], -1500.0, source='xyz')]
    dataset = DatasetData.from_frames(frames)
    filename = tmp_path / 'data.extxyz'
    dataset.export_extxyz(filename)
    images = read(filename, index=':')
    assert len(images) == 2
    for original, atoms in zip(frames, images):
        assert atoms.get_potential_energy() == pytest.approx(original.energy)
        np.testing.assert_allclose(atoms.get_forces(), original.forces)
        np.testing.assert_allclose(atoms.positions, original.positions, atol=1e-7)
        assert atoms.info['source_uuid'] == original.source_uuid


@pytest.mark.parametrize(
    ('frames', 'message'),
    [
        ([], 'at least one'),
        ([frame([8, 1, 1], -1.0), frame([8, 1, 1], -1.0, forces=False)], 'twice at rhf/sto-3g'),
        ([frame([8, 1, 1], float('nan'))], 'not finite'),
    ],
)
def test_inconsistent_frames_are_rejected(frames, message):
    with pytest.raises(ValueError, match=message):
        DatasetData.from_frames(frames)


def test_rows_with_and_without_forces_and_two_levels_round_trip():
    """A structure at two levels (paired by its uuid), forces on the cheap row only."""
    cheap = frame([8, 1, 1], -2000.5, level='b3lyp/6-31g*')
    expensive = frame([8, 1, 1], -2001.0, forces=False, level='ccsd(t)/cc-pvdz')
    other = frame([6, 1, 1, 1, 1], -1090.25, level='b3lyp/6-31g*')
    dataset = DatasetData.from_frames([cheap, other, expensive]).store()
    loaded = DatasetData.collection.get(pk=dataset.pk)
    assert not loaded.has_forces and loaded.base.attributes.get('num_rows_with_forces') == 2
    np.testing.assert_array_equal(loaded.forces_present, [True, True, False])
    assert loaded.frame(2).forces is None
    np.testing.assert_allclose(loaded.frame(0).forces, cheap.forces)
    assert loaded.pairs('b3lyp/6-31g*', 'ccsd(t)/cc-pvdz') == [(0, 2)]
    assert loaded.rows_at('b3lyp/6-31g*') == [0, 1]
