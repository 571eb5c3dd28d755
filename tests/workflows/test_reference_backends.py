"""``mlqm.reference`` on the production back ends: PostgreSQL + RabbitMQ + daemon workers, and SLURM via sbatch."""
from __future__ import annotations

import subprocess

import pytest

from aiida_mlqm.units import HARTREE_TO_EV as HARTREE

SUBMIT_REFERENCE = """
from aiida_mlqm.provenance.structures import g2_structure
structures = {{f'mol_{{i}}': g2_structure(name) for i, name in enumerate(['H2O', 'NH3', 'OH'])}}
node = submit(
    WorkflowFactory('mlqm.reference'),
    structures=structures,
    parameters=Dict({{'method': 'hf', 'basis': 'sto-3g', 'forces': True}}),
    code=load_code('{code}'),
    batch={{'max_structures': 2}},
    options=Dict({{'max_wallclock_seconds': 600, 'resources': {{'num_machines': 1, 'num_mpiprocs_per_machine': 1}}}}),
)
wait(node, timeout=400)
dataset = node.outputs.dataset if 'dataset' in node.outputs else None
batches = [c for c in node.called if c.process_type == 'aiida.calculations:mlqm.pyscf.batch']
emit(
    pk=node.pk, ok=node.is_finished_ok, exit_status=node.exit_status, exit_message=node.exit_message,
    frames=[] if dataset is None else [
        {{'energy': f.energy, 'source': f.source_uuid, 'structure': f.structure_uuid}} for f in dataset.frames()
    ],
    structures={{s.uuid: [s.get_ase().get_chemical_symbols(), s.get_ase().positions.tolist(),
                          s.base.attributes.get('multiplicity')] for s in structures.values()}},
    batches=[{{'uuid': b.uuid, 'ok': b.is_finished_ok, 'job_id': b.get_job_id(), 'scheduler': b.computer.scheduler_type}}
             for b in batches],
    storage=node.backend.__class__.__name__,
)
"""


def pyscf_hf_energy(symbols, positions, multiplicity) -> float:
    from pyscf import gto, scf

    mol = gto.M(atom=list(zip(symbols, positions)), basis='sto-3g', spin=multiplicity - 1, unit='Angstrom', verbose=0)
    mf = (scf.RHF if multiplicity == 1 else scf.UHF)(mol)
    mf.conv_tol = 1e-10
    return mf.kernel()


def check_result(result):
    assert result['ok'], result
    assert len(result['frames']) == 3
    for frame in result['frames']:
        symbols, positions, multiplicity = result['structures'][frame['structure']]
        assert frame['energy'] / HARTREE == pytest.approx(pyscf_hf_energy(symbols, positions, multiplicity), abs=1e-6)
    assert {frame['source'] for frame in result['frames']} == {batch['uuid'] for batch in result['batches']}
    assert len(result['batches']) == 2


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_reference_chain_on_postgres_and_daemon(psql_daemon_profile):
    result = psql_daemon_profile.run_json(SUBMIT_REFERENCE.format(code='mlqm-python@localhost'), timeout=500)
    check_result(result)
    assert result['storage'] == 'PsqlDosBackend'

    listing = psql_daemon_profile.verdi('process', 'list', '-a', '-p', '1').stdout
    assert 'ReferenceWorkChain' in listing and 'PyscfBatchCalculation' in listing and 'merge_datasets' in listing
    report = psql_daemon_profile.verdi('process', 'report', str(result['pk'])).stdout
    assert 'batch job(s)' in report and 'labelled 3 of 3 structures' in report


@pytest.mark.slurm
@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_reference_chain_through_sbatch(slurm_profile):
    result = slurm_profile.run_json(SUBMIT_REFERENCE.format(code='mlqm-python@localhost-slurm'), timeout=500)
    check_result(result)
    for batch in result['batches']:
        assert batch['scheduler'] == 'core.slurm'
        job = subprocess.run(['scontrol', 'show', 'job', str(batch['job_id'])], capture_output=True, text=True, timeout=30)
        assert job.returncode == 0, job.stderr
        assert 'JobState=COMPLETED' in job.stdout
