"""Configuration sets of ``mlqm.build``: normal-mode sampling (force-field and PySCF Hessians) and random displacements."""

from __future__ import annotations

import numpy as np
import pytest
from aiida.engine import run_get_node
from aiida_mlqm.chemistry.readers import read_g2, smiles_record
from aiida_mlqm.workflows import build_sampling as sampling
from aiida_mlqm.workflows.build import BuildWorkChain
from aiida_mlqm.workflows.build_functions import structure_arrays


def build(records, **overrides):
    """Run a fast build; the results carry ``structures`` and ``configurations`` found through the calcfunctions."""
    results, node = run_get_node(
        BuildWorkChain.get_builder_from_protocol(records, protocol='fast', overrides={'parameters': overrides})
    )
    results = dict(results)
    results['structures'] = BuildWorkChain.built_structures(node)
    results['configurations'] = BuildWorkChain.sampled_configurations(node)
    return results, node


def masses(symbols):
    from ase.data import atomic_masses, atomic_numbers

    return np.array([atomic_masses[atomic_numbers[s]] for s in symbols])


def water():
    record = read_g2('H2O')[0]
    return record['symbols'], np.array(record['positions'])


def wavenumbers(hessian, symbols, positions):
    values, _ = sampling.normal_modes(hessian, masses(symbols), positions, min_frequency=1.0)
    return np.sqrt(values) / np.sqrt(sampling.WAVENUMBER2_TO_EIGENVALUE)


def test_forcefield_hessian_gives_water_vibrations():
    """MMFF94 water: a bend near 1600 cm^-1 and two O-H stretches near 3700 cm^-1 (experiment 1595, 3657, 3756)."""
    symbols, positions = water()
    frequencies = wavenumbers(sampling.forcefield_hessian(symbols, positions, smiles='O', charge=0), symbols, positions)
    assert len(frequencies) == 3
    assert 1400 < frequencies[0] < 1800
    assert 3400 < frequencies[1] < frequencies[2] < 4100


def test_pyscf_hessian_gives_water_vibrations():
    """RHF/STO-3G water at the G2 geometry: three real modes in the HF range (bend ~2000-2200, stretches > 4000)."""
    symbols, positions = water()
    hessian = sampling.pyscf_hessian(symbols, positions, charge=0, multiplicity=1, basis='sto-3g')
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-6)
    frequencies = wavenumbers(hessian, symbols, positions)
    assert 1800 < frequencies[0] < 2400
    assert 3800 < frequencies[1] < frequencies[2] < 5000


def test_normal_mode_samples_have_equipartition_energy():
    """Classical sampling: the mean harmonic energy of the draws is (number of modes) * kT / 2."""
    symbols, positions = water()
    hessian = sampling.forcefield_hessian(symbols, positions, smiles='O', charge=0)
    temperature = 500.0
    draws = sampling.sample_normal_modes(
        symbols,
        positions,
        hessian,
        number=4000,
        temperature=temperature,
        rng=np.random.default_rng(0),
        min_frequency=50.0,
        min_distance=0.5,
    )
    displacements = np.array([(d - positions).ravel() for d in draws])
    energies = 0.5 * np.einsum('ni,ij,nj->n', displacements, hessian, displacements)
    expected = 3 * sampling.BOLTZMANN_EV_PER_K * temperature / 2
    assert energies.mean() == pytest.approx(expected, rel=0.08)
    # translations and rotations are not sampled: the centre of mass stays put
    centres = np.array([(masses(symbols)[:, None] * d).sum(0) / masses(symbols).sum() for d in draws])
    centre = (masses(symbols)[:, None] * positions).sum(0) / masses(symbols).sum()
    np.testing.assert_allclose(centres - centre, 0.0, atol=1e-8)


def test_random_displacements_have_the_requested_spread():
    symbols, positions = water()
    draws = sampling.sample_random(
        symbols, positions, number=500, sigma=0.05, rng=np.random.default_rng(1), min_distance=0.5
    )
    assert np.std(np.array(draws) - positions) == pytest.approx(0.05, rel=0.05)


def test_configurations_link_to_their_parent(aiida_profile):
    results, node = build([smiles_record('CCO', 'ethanol', 'test')], configurations={'number': 3, 'temperature': 300.0})
    assert node.is_finished_ok, node.exit_message
    parent = results['structures']['ethanol']
    configurations = results['configurations']
    assert sorted(configurations) == ['ethanol_000', 'ethanol_001', 'ethanol_002']
    _, parent_positions = structure_arrays(parent)
    for configuration in configurations.values():
        creator = configuration.creator
        assert creator.process_label == 'sample_configurations'
        assert creator.inputs.structure.uuid == parent.uuid
        attributes = configuration.base.attributes
        assert (attributes.get('charge'), attributes.get('multiplicity'), attributes.get('smiles')) == (0, 1, 'CCO')
        _, positions = structure_arrays(configuration)
        rms = np.sqrt(np.mean(np.sum((positions - parent_positions) ** 2, axis=1)))
        assert 0.005 < rms < 0.3

    again, _ = build([smiles_record('CCO', 'ethanol', 'test')], configurations={'number': 3, 'temperature': 300.0})
    np.testing.assert_allclose(
        structure_arrays(again['configurations']['ethanol_001'])[1], structure_arrays(configurations['ethanol_001'])[1]
    )


def test_pyscf_hessian_limit_gives_a_warning_exit_code(aiida_profile):
    records = read_g2('H2O') + [smiles_record('CCO', 'ethanol', 'test')]
    results, node = build(records, configurations={'number': 2, 'hessian': 'pyscf', 'pyscf_max_atoms': 3})
    assert node.exit_status == BuildWorkChain.exit_codes.WARNING_SAMPLING_INCOMPLETE.status
    assert 'ethanol' in node.exit_message
    assert sorted(results['configurations']) == ['H2O_000', 'H2O_001']
    assert sorted(results['structures']) == ['H2O', 'ethanol']
