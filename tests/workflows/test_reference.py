"""``mlqm.reference`` on the embedded back end: real PySCF jobs, batching, retries, provenance of every row."""
from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory

ReferenceWorkChain = WorkflowFactory('mlqm.reference')
from aiida_mlqm.units import HARTREE_TO_EV as HARTREE


def pyscf_energy(structure: orm.StructureData, basis: str) -> float:
    """HF energy (Ha) from PySCF run in this process, restricted or unrestricted by the multiplicity."""
    from pyscf import gto, scf

    atoms = structure.get_ase()
    spin = structure.base.attributes.get('multiplicity') - 1
    mol = gto.M(atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)], basis=basis,
                spin=spin, unit='Angstrom', verbose=0)
    mf = (scf.RHF if spin == 0 else scf.UHF)(mol)
    mf.conv_tol = 1e-10
    return mf.kernel()


def run_reference(code, structures, parameters, **kwargs):
    return run_get_node(ReferenceWorkChain, structures=structures, parameters=orm.Dict(parameters), code=code, **kwargs)


def test_batches_label_everything_with_provenance(mlqm_code, make_structure, tmp_path):
    structures = {f'mol_{i}': make_structure(name) for i, name in enumerate(['H2O', 'NH3', 'OH', 'CH4', 'HF'])}
    results, node = run_reference(
        mlqm_code, structures, {'method': 'hf', 'basis': 'sto-3g', 'forces': True}, batch={'max_structures': 2}
    )
    assert node.is_finished_ok, node.exit_message
    batches = [child for child in node.called if child.process_type == 'aiida.calculations:mlqm.pyscf.batch']
    assert len(batches) == 3
    assert all(batch.is_finished_ok for batch in batches)

    dataset = results['dataset']
    assert len(dataset) == 5
    assert dataset.has_forces
    by_structure = {frame.structure_uuid: frame for frame in dataset.frames()}
    for structure in structures.values():
        frame = by_structure[structure.uuid]
        assert frame.energy / HARTREE == pytest.approx(pyscf_energy(structure, 'sto-3g'), abs=1e-6)
        # Every row names the batch job that labelled it, and that job has this structure as an input.
        source = orm.load_node(frame.source_uuid)
        assert source.process_type == 'aiida.calculations:mlqm.pyscf.batch'
        assert structure.uuid in {n.uuid for n in source.base.links.get_incoming().all_nodes()}
    # Each batch job returned its good structures as rows (its `dataset` output, made by its parser from its own
    # inputs and results); the chain merged those parts, so the merge's inputs are exactly the batches' datasets.
    merge = dataset.creator
    assert merge.process_label == 'merge_datasets'
    parts = merge.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all_nodes()
    assert {part.creator.uuid for part in parts} == {batch.uuid for batch in batches}
    for part in parts:
        batch = part.creator
        inputs = {link.link_label: link.node for link in batch.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()}
        results = batch.outputs.parameters
        for frame in part.frames():
            key = next(key for key, structure in batch.inputs.structures.items() if structure.uuid == frame.structure_uuid)
            assert f'structures__{key}' in inputs
            assert frame.result_uuid == results[key].uuid and frame.source_uuid == batch.uuid
    assert sorted(frame.result_uuid for frame in dataset.frames()) == sorted(
        node.uuid for batch in batches for node in batch.outputs.parameters.values()
    )

    # What `verdi node graph generate <dataset>` draws: the dataset's ancestors include every batch job.
    from aiida.tools.visualization import Graph

    graph = Graph()
    graph.recurse_ancestors(dataset, annotate_links='both')
    source = graph.graphviz.source
    for batch in batches:
        assert f'N{batch.pk} [label="PyscfBatchCalculation ({batch.pk})' in source

    filename = tmp_path / 'labels.extxyz'
    dataset.export_extxyz(filename)
    from ase.io import read

    images = read(filename, index=':')
    assert sorted(a.info['source_uuid'] for a in images) == sorted(f.source_uuid for f in dataset.frames())


def test_unconverged_scf_in_batch_is_retried_one_by_one(mlqm_code, make_structure):
    """Two SCF cycles cannot converge: every structure fails in the batch and the restart chain fixes each."""
    structures = {'water': make_structure('H2O'), 'ammonia': make_structure('NH3')}
    results, node = run_reference(mlqm_code, structures, {'method': 'hf', 'basis': 'sto-3g', 'scf': {'max_cycle': 2}})
    assert node.is_finished_ok, node.exit_message
    retries = [child for child in node.called if child.process_type == 'aiida.workflows:mlqm.pyscf.base']
    assert len(retries) == 2
    assert all(retry.is_finished_ok for retry in retries)
    dataset = results['dataset']
    for frame in dataset.frames():
        structure = orm.load_node(frame.structure_uuid)
        assert frame.energy / HARTREE == pytest.approx(pyscf_energy(structure, 'sto-3g'), abs=1e-6)
        assert orm.load_node(frame.source_uuid).process_type == 'aiida.calculations:mlqm.pyscf'


def test_a_molecule_that_fails_for_good_does_not_sink_the_rest(mlqm_code, make_structure):
    """Two atoms on top of each other: PySCF fails in the batch and again alone; the others are labelled."""
    from ase import Atoms

    broken = orm.StructureData(ase=Atoms('H2', positions=[[0, 0, 0], [0, 0, 1e-6]]))
    broken.base.attributes.set('multiplicity', 1)
    # A doublet water cannot exist (10 electrons): it is set aside before batching instead of failing its batch.
    impossible = make_structure('H2O')
    impossible.base.attributes.set('multiplicity', 2)
    structures = {'water': make_structure('H2O'), 'broken': broken, 'impossible': impossible}
    results, node = run_reference(mlqm_code, structures, {'method': 'hf', 'basis': 'sto-3g'})
    assert node.exit_status == ReferenceWorkChain.exit_codes.WARNING_SOME_STRUCTURES_FAILED.status
    assert len(results['dataset']) == 1
    failed = results['failed'].get_dict()
    assert sorted(failed) == ['broken', 'impossible']
    assert failed['broken']['message']
    assert failed['impossible']['status'] == 'invalid_molecule'
    assert 'multiplicity' in failed['impossible']['message']


def test_invalid_parameters_are_rejected_before_anything_runs(mlqm_code, make_structure):
    structures = {'water': make_structure('H2O')}
    with pytest.raises(ValueError, match='basis'):
        run_reference(mlqm_code, structures, {'method': 'hf', 'basis': 'no-such-basis'})
    with pytest.raises(ValueError, match='no structures'):
        run_get_node(ReferenceWorkChain, structures={}, parameters=orm.Dict({'method': 'hf', 'basis': 'sto-3g'}),
                     code=mlqm_code)


def test_one_batch_returns_its_own_rows_and_chunks_merge_like_one_piece(mlqm_code, make_structure, monkeypatch):
    """One batch and no retry: the chain's dataset is the batch job's own `dataset` output (no assembling step).
    Assembling rows from per-structure results (what retried structures need) above the chunk size merges partial
    datasets into the same rows as one piece."""
    from aiida_mlqm.workflows import dataset as dataset_module

    structures = {f'mol_{i}': make_structure(name) for i, name in enumerate(['H2O', 'NH3', 'CH4'])}
    results, node = run_reference(mlqm_code, structures, {'method': 'hf', 'basis': 'sto-3g'})
    assert node.is_finished_ok, node.exit_message
    dataset = results['dataset']
    batch = dataset.creator
    assert batch.process_type == 'aiida.calculations:mlqm.pyscf.batch' and batch.caller.pk == node.pk
    assert not [child for child in node.called if child.process_type.startswith('aiida.calculations:core')]
    assert [f.structure_uuid for f in dataset.frames()] == [structures[key].uuid for key in sorted(structures)]

    monkeypatch.setattr(dataset_module, 'ASSEMBLE_CHUNK', 2)
    labelled = {
        key: {'structure': structures[key], 'parameters': batch.outputs.parameters[key], 'forces': None}
        for key in structures
    }
    merged = dataset_module.assemble_in_chunks(labelled)
    assert merged.creator.process_label == 'merge_datasets'
    parts = merged.creator.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all_nodes()
    assert sorted(len(part) for part in parts) == [1, 2]
    assert {part.creator.process_label for part in parts} == {'assemble_dataset'}
    assert [f.structure_uuid for f in merged.frames()] == [f.structure_uuid for f in dataset.frames()]
    assert np.allclose(merged.get_array('energy'), dataset.get_array('energy'))
    assert merged.base.attributes.get('result_uuids') == dataset.base.attributes.get('result_uuids')


def test_cost_planner_packs_by_cost_and_cap():
    from aiida_mlqm.chemistry.level import LevelOfTheory
    from aiida_mlqm.workflows.batching import plan_batches

    small = LevelOfTheory.parse({'method': 'hf', 'basis': '6-31g*'}).estimate_seconds(['O', 'H', 'H'])
    large = LevelOfTheory.parse({'method': 'ccsd(t)', 'basis': 'cc-pvdz'}).estimate_seconds(['C'] * 6 + ['H'] * 6)
    assert large > 100 * small
    costs = {'a': 1.0, 'b': 1.0, 'c': 10.0, 'd': 1.0}
    batches = plan_batches(costs, target_seconds=5.0, max_structures=2)
    assert sorted(key for batch in batches for key in batch) == ['a', 'b', 'c', 'd']
    assert ['c'] in batches
    assert all(len(batch) <= 2 for batch in batches)
    assert np.isclose(sum(costs[k] for b in batches for k in b), 13.0)


def test_planner_fills_the_job_slots_of_a_direct_computer(aiida_profile):
    """Work worth several jobs on a machine with free cores is dealt over single-core jobs side by side, most
    expensive first to the least loaded batch; a queueing scheduler or little work keeps one job."""
    import types

    from aiida_mlqm.workflows.batching import MIN_SPLIT_SECONDS, fill_slots, jobs_side_by_side, plan_batches

    costs = {'a': 4.0, 'b': 1.0, 'c': 3.0, 'd': 2.0, 'e': 2.0}
    assert plan_batches(costs, target_seconds=1800.0, max_structures=50) == [['a', 'b', 'c', 'd', 'e']]
    batches = plan_batches(costs, target_seconds=1800.0, max_structures=50, min_batches=2)
    assert batches == [['a', 'e'], ['b', 'c', 'd']]  # a, c, d, e, b dealt to the lighter batch; input order kept
    assert sorted(sum((costs[key] for key in batch), 0.0) for batch in batches) == [6.0, 6.0]
    assert len(plan_batches({'a': 1.0, 'b': 1.0}, target_seconds=1800.0, max_structures=50, min_batches=4)) == 2

    def computer(scheduler, cpus):
        return types.SimpleNamespace(scheduler_type=scheduler, get_default_mpiprocs_per_machine=lambda: cpus)

    single = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}
    assert jobs_side_by_side(computer('core.direct', 8), single) == 8
    assert jobs_side_by_side(computer('core.direct', 8), {'resources': {'num_cores_per_mpiproc': 2}}) == 4
    assert jobs_side_by_side(computer('core.slurm', 8), single) == 1
    assert jobs_side_by_side(None, single) == 1  # a PortableCode has no computer of its own
    assert fill_slots(MIN_SPLIT_SECONDS * 3.5, 8) == 3 and fill_slots(MIN_SPLIT_SECONDS * 20, 8) == 8
    assert fill_slots(MIN_SPLIT_SECONDS / 2, 8) == 1


def test_a_restart_chain_that_never_started_is_launched_again_and_other_failures_are_final(aiida_profile):
    """``inspect_retries`` fed faked children: a restart chain its dying worker never started (closed by the supervisor
    or ``mlqm repair``: it ran nothing) is launched again under a new label, at most ``MAX_RELAUNCHES`` times; a chain
    that ran and failed is final, and its failure names how it ended."""
    import types

    from aiida.common import AttributeDict
    from aiida.engine import ProcessState
    from aiida_mlqm.services.processes import NEVER_STARTED_MESSAGE
    from aiida_mlqm.workflows.reference import MAX_RELAUNCHES, ReferenceWorkChain

    def child(exception=None, exit_status=None):
        node = orm.WorkflowNode()
        node.set_process_type('aiida.workflows:mlqm.pyscf.base')
        if exception is not None:
            node.set_process_state(ProcessState.EXCEPTED)
            node.set_exception(exception)
        else:
            node.set_process_state(ProcessState.FINISHED)
            node.set_exit_status(exit_status)
            node.set_exit_message('ERROR_MAXIMUM_ITERATIONS_EXCEEDED')
        return node.store()

    reports = []
    chain = types.SimpleNamespace(
        ctx=AttributeDict({'to_retry': {'a': {'status': 'batch_failed', 'message': 'batch 1'},
                                        'b': {'status': 'scf_not_converged', 'message': 'SCF'}},
                           'labelled': {}, 'failed': {}}),
        report=reports.append,
    )  # fmt: skip
    chain._retry_label = types.MethodType(ReferenceWorkChain._retry_label, chain)
    never = NEVER_STARTED_MESSAGE.format(by='the supervisor')
    chain.ctx['retry_a'] = child(exception=never)
    chain.ctx['retry_b'] = child(exit_status=401)
    ReferenceWorkChain.inspect_retries(chain)
    assert chain.ctx.to_retry == {'a': {'status': 'batch_failed', 'message': 'batch 1'}}
    assert chain._retry_label('a') == 'retry_a_01'
    assert chain.ctx.failed['b']['message'] == 'SCF; retry {} ended with exit status 401: ERROR_MAXIMUM_ITERATIONS_EXCEEDED'.format(
        chain.ctx['retry_b'].pk
    )
    assert 'never started' in reports[0]

    for attempt in range(1, MAX_RELAUNCHES + 1):  # it keeps never starting: relaunched until the limit, then final
        chain.ctx[chain._retry_label('a')] = child(exception=never)
        ReferenceWorkChain.inspect_retries(chain)
        assert ('a' in chain.ctx.to_retry) == (attempt < MAX_RELAUNCHES)
    assert chain.ctx.failed['a']['message'].startswith('batch 1; retry ')
    assert 'an exception: Never started' in chain.ctx.failed['a']['message']


def test_a_batch_that_never_started_is_launched_again_whole(aiida_profile):
    """``inspect_batches`` fed faked batch jobs: one its dying worker never started is launched again whole (under
    ``batch_00_01``), not split into a job per structure; a batch that ran and failed sends its structures to the
    one-by-one retries, with how it ended."""
    import types

    from aiida.common import AttributeDict
    from aiida.engine import ProcessState
    from aiida_mlqm.services.processes import NEVER_STARTED_MESSAGE
    from aiida_mlqm.workflows.reference import ReferenceWorkChain

    def batch(exception=None):
        node = orm.CalcJobNode()
        node.set_process_type('aiida.calculations:mlqm.pyscf.batch')
        if exception is not None:
            node.set_process_state(ProcessState.EXCEPTED)
            node.set_exception(exception)
        else:
            node.set_process_state(ProcessState.FINISHED)
            node.set_exit_status(430)
            node.set_exit_message('Every structure failed')
        return node.store()

    reports = []
    chain = types.SimpleNamespace(
        ctx=AttributeDict({'batches': [['a', 'b'], ['c']], 'to_launch': [0, 1], 'batch_attempts': {}, 'batch_rows': [],
                           'labelled': {}, 'to_retry': {}}),
        report=reports.append,
    )  # fmt: skip
    chain._batch_label = types.MethodType(ReferenceWorkChain._batch_label, chain)
    chain.ctx['batch_00'] = batch(NEVER_STARTED_MESSAGE.format(by='the supervisor'))
    chain.ctx['batch_01'] = batch()
    ReferenceWorkChain.inspect_batches(chain)
    assert chain.ctx.to_launch == [0] and chain._batch_label(0) == 'batch_00_01'
    assert sorted(chain.ctx.to_retry) == ['c']
    assert 'exit status 430' in chain.ctx.to_retry['c']['message']
    assert 'never started' in reports[0]

    chain.ctx['batch_00_01'] = batch()  # the new launch ran (and failed): its structures go to the retries
    ReferenceWorkChain.inspect_batches(chain)
    assert chain.ctx.to_launch == [] and sorted(chain.ctx.to_retry) == ['a', 'b', 'c']
