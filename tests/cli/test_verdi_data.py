"""``verdi data mlqm.dataset`` and ``verdi data mlqm.model``: list, show, export through AiiDA's entry points."""

from __future__ import annotations

import json

import numpy as np
from aiida.cmdline.commands.cmd_data import verdi_data
from click.testing import CliRunner
from labelled_files import LABELS, labelled_water, write_extxyz

from aiida_mlqm.provenance.dataset import DatasetData
from aiida_mlqm.units import HARTREE_TO_EV


def invoke(*args):
    result = CliRunner().invoke(verdi_data, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_dataset_list_show_export(tmp_path):
    path = tmp_path / 'water.extxyz'
    write_extxyz(path, labelled_water(5, seed=21, expensive=3, energy_only=(1,)))
    dataset = DatasetData.from_file(path, LABELS, energy_unit='hartree')

    listing = invoke('mlqm.dataset', 'list')
    assert str(dataset.pk) in listing and 'hf/6-31g: 3, hf/sto-3g: 5' in listing and 'water.extxyz' in listing
    shown = invoke('mlqm.dataset', 'show', dataset.pk)
    assert 'structures labelled at both hf/6-31g and hf/sto-3g: 3' in shown
    assert dataset.creator.inputs.source.base.attributes.get('sha256') in shown
    exported = tmp_path / 'back.extxyz'
    invoke('mlqm.dataset', 'export', dataset.pk, exported)
    again = DatasetData.from_file(exported, LABELS, energy_unit='hartree')
    assert again.levels == dataset.levels


def test_model_list_show_export(tmp_path):
    from aiida_mlqm.models.data import Structures
    from aiida_mlqm.models.registry import load_model
    from aiida_mlqm.models.training import train_committee
    from aiida_mlqm.provenance.model import ModelData

    images = labelled_water(6, seed=22, expensive=0, energy_only=())
    structures = Structures.from_ase(images)
    structures.energy = np.array([atoms.info['e_lo'] for atoms in images]) * HARTREE_TO_EV
    committee = train_committee(structures, {'backend': 'torchani', 'members': 2, 'hidden': [8], 'epochs': 2}, log=None)
    committee.save(tmp_path / 'saved')
    model = ModelData.from_directory(tmp_path / 'saved').store()

    assert 'potential' in invoke('mlqm.model', 'list')
    assert 'potential committee' in invoke('mlqm.model', 'show', model.pk)
    invoke('mlqm.model', 'export', model.pk, tmp_path / 'out')
    assert json.loads((tmp_path / 'out' / 'metadata.json').read_text())['kind'] == 'potential'
    assert load_model(tmp_path / 'out').kind == 'potential'
