"""Acceptance: energies, T1 and forces of the jobs agree with PySCF run directly (same geometry, basis, method).

Water (closed shell, restricted) and the OH radical (open shell, UHF-based); energies to 1e-6 Ha, forces to
1e-6 Ha/Bohr. One ``mlqm.pyscf`` CCSD(T)/6-31G job per molecule reports the HF, MP2, CCSD and CCSD(T) energies (water with
the frozen core and CCSD(T) forces); STO-3G batch jobs over both molecules check B3LYP energies and the forces at
every other level (same runner, same parser conversion), which keeps the test time small.
"""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida_mlqm.calcjobs.batch import PyscfBatchCalculation
from aiida_mlqm.calcjobs.pyscf import PyscfCalculation
from aiida_mlqm.parsers.pyscf import BOHR_TO_ANGSTROM, HARTREE_TO_EV
from jobs_test_molecules import OH, WATER

MOLECULES = {'water': (WATER, 0), 'oh': (OH, 1)}
BASIS = '6-31g'
SCF = {'conv_tol': 1e-10}
CC = {'conv_tol': 1e-9, 'conv_tol_normt': 1e-7}


def direct_pyscf(pyscf, atoms, spin, level, forces, frozen_core, basis=BASIS):
    """Return reference values (Hartree, Hartree/Bohr) from PySCF alone."""
    from pyscf import cc, dft, gto, mp, scf

    mol = gto.M(atom=[[s, p] for s, p in atoms], basis=basis, spin=spin, unit='Angstrom', verbose=0)
    restricted = spin == 0
    if level == 'b3lyp':
        mf = (dft.RKS if restricted else dft.UKS)(mol)
        mf.xc = 'b3lyp'
    else:
        mf = (scf.RHF if restricted else scf.UHF)(mol)
    mf.conv_tol = SCF['conv_tol']
    mf.kernel()
    reference = {'scf_energy': mf.e_tot, 'total_energy': mf.e_tot}
    gradient = None
    frozen = [0] if frozen_core else None  # the oxygen 1s
    if level in ('hf', 'b3lyp') and forces:
        gradient = mf.nuc_grad_method().kernel()
    elif level == 'mp2':
        solver = mp.MP2(mf, frozen=frozen)
        solver.kernel()
        reference.update(mp2_correlation_energy=solver.e_corr, total_energy=mf.e_tot + solver.e_corr)
        gradient = solver.nuc_grad_method().kernel() if forces else None
    elif level in ('ccsd', 'ccsd(t)'):
        solver = cc.CCSD(mf, frozen=frozen)
        solver.conv_tol, solver.conv_tol_normt = CC['conv_tol'], CC['conv_tol_normt']
        solver.kernel()
        assert solver.converged
        reference.update(ccsd_correlation_energy=solver.e_corr, total_energy=mf.e_tot + solver.e_corr)
        if restricted:
            reference['t1_diagnostic'] = solver.get_t1_diagnostic()
        else:  # PySCF 2.3 has no UCCSD T1; the usual open-shell definition over both spins
            t1a, t1b = solver.t1
            electrons = t1a.shape[0] + t1b.shape[0]
            reference['t1_diagnostic'] = np.sqrt((np.sum(t1a**2) + np.sum(t1b**2)) / (2 * electrons))
        if level == 'ccsd(t)':
            correction = solver.ccsd_t()
            reference.update(ccsd_t_correction=correction, total_energy=mf.e_tot + solver.e_corr + correction)
            if forces:
                from pyscf.cc import ccsd_t_lambda_slow
                from pyscf.grad import ccsd_t as ccsd_t_grad

                eris = solver.ao2mo()
                _, l1, l2 = ccsd_t_lambda_slow.kernel(solver, eris, solver.t1, solver.t2)
                gradient = ccsd_t_grad.Gradients(solver).kernel(solver.t1, solver.t2, l1, l2, eris=eris)
        elif forces:
            gradient = solver.nuc_grad_method().kernel()
    return reference, gradient


def parameters_for(level: str, forces: bool, frozen_core: bool = False, basis: str = BASIS) -> dict:
    parameters = {'method': 'dft', 'xc': 'b3lyp'} if level == 'b3lyp' else {'method': level}
    parameters.update(basis=basis, forces=forces, frozen_core=frozen_core, scf=SCF)
    if level.startswith('ccsd'):
        parameters['cc'] = CC
    return parameters


def assert_agrees(output: dict, forces, reference: dict, gradient, spin: int, level: str) -> None:
    """``forces``: the job's forces in eV/Å (a ``forces`` ArrayData output, or a dataset row's array), or ``None``."""
    assert output['reference'] == ('R' if spin == 0 else 'U') + ('KS' if level == 'b3lyp' else 'HF')
    assert output['multiplicity'] == spin + 1
    for key, expected in reference.items():
        if key.endswith('_diagnostic'):
            assert output[key] == pytest.approx(expected, abs=1e-6), key
            continue
        assert output[f'{key}_units'] == 'eV'
        assert output[key] / HARTREE_TO_EV == pytest.approx(expected, abs=1e-6), key
    if gradient is None:
        assert forces is None
        return
    if isinstance(forces, orm.ArrayData):
        assert forces.base.attributes.get('units') == 'eV/Å'
        forces = forces.get_array('forces')
    computed = forces * BOHR_TO_ANGSTROM / HARTREE_TO_EV
    np.testing.assert_allclose(computed, -gradient, atol=1e-6)


@pytest.mark.parametrize(('molecule', 'forces', 'frozen_core'), [('water', True, True), ('oh', False, False)])
def test_single_job_hf_mp2_ccsd_ccsd_t_agree(mlqm_code, make_structure, pyscf_direct, molecule, forces, frozen_core):
    atoms, spin = MOLECULES[molecule]
    builder = PyscfCalculation.get_builder()
    builder.code = mlqm_code
    builder.structure = make_structure(atoms)
    builder.parameters = orm.Dict(parameters_for('ccsd(t)', forces, frozen_core))
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    reference, gradient = direct_pyscf(pyscf_direct, atoms, spin, 'ccsd(t)', forces, frozen_core)
    mp2, _ = direct_pyscf(pyscf_direct, atoms, spin, 'mp2', False, frozen_core)
    reference['mp2_correlation_energy'] = mp2['mp2_correlation_energy']
    output = results['parameters'].get_dict()
    assert set(reference) >= {'scf_energy', 'ccsd_correlation_energy', 'ccsd_t_correction', 't1_diagnostic'}
    assert_agrees(output, results.get('forces'), reference, gradient, spin, 'ccsd(t)')
    assert output['level_of_theory'] == ('ccsd(t)-fc/6-31g' if frozen_core else 'ccsd(t)/6-31g')
    assert output['frozen_orbitals'] == (1 if frozen_core else 0)
    if spin == 0:
        assert 'd1_diagnostic' in output and 's2' not in output
    else:
        assert output['s2'] == pytest.approx(0.75, abs=0.01)


@pytest.mark.parametrize('level', ['hf', 'b3lyp', 'mp2', 'ccsd'])
def test_batch_job_energies_and_forces_agree(mlqm_code, make_structure, pyscf_direct, level):
    builder = PyscfBatchCalculation.get_builder()
    builder.code = mlqm_code
    builder.structures = {key: make_structure(atoms) for key, (atoms, _) in MOLECULES.items()}
    builder.parameters = orm.Dict(parameters_for(level, forces=True, basis='sto-3g'))
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert 'failures' not in results

    # A batch job's forces are in its dataset's rows (one a structure, in key order), not in outputs of their own.
    assert 'forces' not in results
    rows = {frame.structure_uuid: frame for frame in results['dataset'].frames()}
    for key, (atoms, spin) in MOLECULES.items():
        reference, gradient = direct_pyscf(pyscf_direct, atoms, spin, level, True, False, basis='sto-3g')
        row = rows[builder.structures[key].uuid]
        assert row.energy == pytest.approx(results['parameters'][key]['total_energy'], abs=1e-8)
        assert_agrees(results['parameters'][key].get_dict(), row.forces, reference, gradient, spin, level)
