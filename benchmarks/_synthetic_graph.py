"""A synthetic provenance graph shaped like real campaigns, written through AiiDA's storage API.

Rows go in through ``StorageBackend.bulk_insert`` (what ``verdi archive import`` uses), so ``db_dbnode`` and
``db_dblink`` hold exactly what AiiDA writes: the node types, process types, attributes and link labels/types of the
real jobs (``mlqm.pyscf.batch`` with ``structures__<key>`` inputs, ``parameters__<key>`` outputs and its rows as a
``dataset`` output, ``merge_datasets`` calcfunctions, ``mlqm.train``, ``mlqm.predict``, a selection record, reference
chains called as ``iteration_NN`` by a campaign work chain). No file is written to the repository: the queries read
the database only.

One campaign iteration: a build calcfunction makes ``structures`` new StructureData; batch jobs of ``batch_size``
label them (one structure in twenty fails and is listed in the job's ``failures``) and each returns its good
structures as a dataset; a merge of those with the previous iteration's dataset makes the iteration's dataset; a
train job makes a model; a predict job scores the next structures; a selection calcfunction records the choice.
"""

from __future__ import annotations

import datetime
import uuid as uuid_module

from aiida import orm
from aiida.common.links import LinkType
from aiida.orm.entities import EntityTypes

STRUCTURE = 'data.core.structure.StructureData.'
DICT = 'data.core.dict.Dict.'
LIST = 'data.core.list.List.'
ARRAY = 'data.core.array.ArrayData.'
FOLDER = 'data.core.folder.FolderData.'
REMOTE = 'data.core.remote.RemoteData.'
DATASET = 'data.mlqm.dataset.DatasetData.'
MODEL = 'data.mlqm.model.ModelData.'
CALCJOB = 'process.calculation.calcjob.CalcJobNode.'
CALCFUNCTION = 'process.calculation.calcfunction.CalcFunctionNode.'
WORKCHAIN = 'process.workflow.workchain.WorkChainNode.'
LEVEL = 'b3lyp/def2-svp'


class GraphWriter:
    """Collect node and link rows with local indices, then insert them in two bulk statements."""

    def __init__(self, user_id: int, computer_id: int):
        self.user_id, self.computer_id = user_id, computer_id
        self.nodes: list[dict] = []
        self.links: list[tuple[int, int, str, str]] = []
        self.now = datetime.datetime.now(datetime.UTC)

    def node(self, node_type: str, attributes: dict | None = None, process_type: str | None = None,
             label: str = '') -> int:  # fmt: skip
        is_process = node_type.startswith('process.')
        self.nodes.append(
            {
                'uuid': str(uuid_module.uuid4()),
                'node_type': node_type,
                'process_type': process_type,
                'label': label,
                'description': '',
                'ctime': self.now,
                'mtime': self.now,
                'user_id': self.user_id,
                'dbcomputer_id': self.computer_id if node_type == CALCJOB or node_type == REMOTE else None,
                'attributes': {**(attributes or {}), **({'sealed': True} if is_process else {})},
                'extras': {},
                'repository_metadata': {},
            }
        )
        return len(self.nodes) - 1

    def uuid(self, index: int) -> str:
        return self.nodes[index]['uuid']

    def link(self, source: int, target: int, link_type: LinkType, label: str) -> None:
        self.links.append((source, target, link_type.value, label))

    def flush(self) -> list[int]:
        """Insert everything collected; return the pks of the nodes in the order they were added.

        A link end given as ``('pk', pk)`` is a node stored before (the code).
        """
        from aiida.manage import get_manager

        storage = get_manager().get_profile_storage()
        with storage.transaction():
            returned = storage.bulk_insert(EntityTypes.NODE, self.nodes)
            # RETURNING rows of a multi-row insert need not come back in the order given: map through the uuids
            uuid_of = {str(uuid): pk for uuid, pk in (
                orm.QueryBuilder()
                .append(orm.Node, filters={'id': {'in': returned}}, project=['uuid', 'id'])
                .all()
            )}
            pks = [uuid_of[row['uuid']] for row in self.nodes]

            def pk(end):
                return end[1] if isinstance(end, tuple) else pks[end]

            storage.bulk_insert(
                EntityTypes.LINK,
                [{'input_id': pk(s), 'output_id': pk(t), 'type': kind, 'label': label} for s, t, kind, label in self.links],
            )
        self.nodes, self.links = [], []
        return pks


def process(writer: GraphWriter, node_type: str, process_type: str, label: str, exit_status: int = 0,
            extra: dict | None = None) -> int:  # fmt: skip
    attributes = {'process_state': 'finished', 'exit_status': exit_status, 'process_label': label, **(extra or {})}
    return writer.node(node_type, attributes, process_type)


def campaign(writer: GraphWriter, code: tuple[str, int], iterations: int, structures: int, batch_size: int, tag: str) -> int:
    """Add one campaign; return the local index of its last model."""
    root = process(writer, WORKCHAIN, 'aiida.workflows:mlqm.campaign', 'CampaignWorkChain')
    parameters = writer.node(DICT, {'method': 'dft', 'xc': 'b3lyp', 'basis': 'def2-svp', 'forces': True})
    train_parameters = writer.node(DICT, {'kind': 'potential'})
    previous_dataset, model, frames = None, None, 0
    pending = _build(writer, structures, f'{tag}_it00')
    for iteration in range(iterations):
        chain = process(writer, WORKCHAIN, 'aiida.workflows:mlqm.reference', 'ReferenceWorkChain')
        writer.link(root, chain, LinkType.CALL_WORK, f'iteration_{iteration:02d}')
        results, parts = [], []  # (key, parameters index, None, job index); (batch dataset, its rows)
        keys = sorted(pending)
        for number, start in enumerate(range(0, len(keys), batch_size)):
            batch_keys = keys[start : start + batch_size]
            failed = [key for position, key in enumerate(batch_keys) if position % 20 == 19]
            job = process(writer, CALCJOB, 'aiida.calculations:mlqm.pyscf.batch', 'PyscfBatchCalculation',
                          710 if failed else 0,
                          {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1, 'num_cores_per_mpiproc': 4},
                           'last_job_info': {'wallclock_time_seconds': 600.0}})  # fmt: skip
            writer.link(chain, job, LinkType.CALL_CALC, f'batch_{number:02d}')
            writer.link(code, job, LinkType.INPUT_CALC, 'code')
            writer.link(parameters, job, LinkType.INPUT_CALC, 'parameters')
            for key in batch_keys:
                writer.link(pending[key], job, LinkType.INPUT_CALC, f'structures__{key}')
            for output, node_type in (('retrieved', FOLDER), ('remote_folder', REMOTE)):
                writer.link(job, writer.node(node_type), LinkType.CREATE, output)
            good = []
            for key in batch_keys:
                if key in failed:
                    continue
                result = writer.node(DICT, {'total_energy': -2000.0, 'total_energy_units': 'eV', 'level_of_theory': 'b3lyp/def2-svp',
                                            'timings': {'total': 30.0, 'cpu_total': 110.0}, 'timings_units': 's'})  # fmt: skip
                writer.link(job, result, LinkType.CREATE, f'parameters__{key}')
                good.append((key, result, None, job))
            if good:
                part = writer.node(DATASET, _dataset_attributes(writer, good, pending, {}))
                writer.link(job, part, LinkType.CREATE, 'dataset')
                parts.append((part, good))
            results.extend(good)
            if failed:
                failures = writer.node(DICT, {key: {'status': 'scf_not_converged', 'message': 'SCF not converged',
                                                    'exit_code': 410, 'exit_label': 'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED'}
                                              for key in failed})  # fmt: skip
                writer.link(job, failures, LinkType.CREATE, 'failures')
        merge = process(writer, CALCFUNCTION, 'aiida_mlqm.workflows.dataset.merge_datasets', 'merge_datasets')
        writer.link(chain, merge, LinkType.CALL_CALC, 'merge_datasets')
        for number, (part, _) in enumerate(parts):
            writer.link(part, merge, LinkType.INPUT_CALC, f'part_{number:03d}')
        previous_frames = {}
        if previous_dataset is not None:
            writer.link(previous_dataset, merge, LinkType.INPUT_CALC, 'part_prev')
            previous_frames = writer.nodes[previous_dataset]['attributes']
        frames += len(results)
        dataset = writer.node(DATASET, _dataset_attributes(writer, results, pending, previous_frames))
        writer.link(merge, dataset, LinkType.CREATE, 'result')
        writer.link(chain, dataset, LinkType.RETURN, 'dataset')
        previous_dataset = dataset

        train = process(writer, CALCJOB, 'aiida.calculations:mlqm.train', 'TrainCalculation', 0,
                        {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}})  # fmt: skip
        writer.link(root, train, LinkType.CALL_CALC, f'train_{iteration:02d}')
        writer.link(dataset, train, LinkType.INPUT_CALC, 'dataset')
        writer.link(train_parameters, train, LinkType.INPUT_CALC, 'parameters')
        writer.link(code, train, LinkType.INPUT_CALC, 'code')
        model = writer.node(MODEL, {'kind': 'potential', 'metrics': {'validation': {'energy_mae': 0.1 / (iteration + 1)}}})
        metrics = writer.node(DICT, {'training_seconds': 120.0, 'validation': {'energy_mae': 0.1 / (iteration + 1)}})
        writer.link(train, model, LinkType.CREATE, 'model')
        writer.link(train, metrics, LinkType.CREATE, 'metrics')
        writer.link(train, writer.node(FOLDER), LinkType.CREATE, 'retrieved')

        pending = _build(writer, structures, f'{tag}_it{iteration + 1:02d}')
        predict = process(writer, CALCJOB, 'aiida.calculations:mlqm.predict', 'PredictCalculation', 0,
                          {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}})  # fmt: skip
        writer.link(root, predict, LinkType.CALL_CALC, f'predict_{iteration:02d}')
        writer.link(model, predict, LinkType.INPUT_CALC, 'model')
        writer.link(code, predict, LinkType.INPUT_CALC, 'code')
        for key, structure in pending.items():
            writer.link(structure, predict, LinkType.INPUT_CALC, f'structures__{key}')
        predictions = writer.node(ARRAY, {'array|energy': [structures], 'seconds': 3.0})
        writer.link(predict, predictions, LinkType.CREATE, 'predictions')
        select = process(writer, CALCFUNCTION, 'aiida_mlqm.workflows.campaign.select_next_batch', 'select_next_batch')
        writer.link(root, select, LinkType.CALL_CALC, f'select_{iteration:02d}')
        writer.link(model, select, LinkType.INPUT_CALC, 'model')
        writer.link(predictions, select, LinkType.INPUT_CALC, 'predictions')
        record = writer.node(DICT, {'record': 'selection', 'iteration': iteration + 1, 'rule': 'query by committee',
                                    'selected': [{'structure_uuid': writer.uuid(s), 'key': k, 'score': 0.1}
                                                 for k, s in sorted(pending.items())]})  # fmt: skip
        writer.link(select, record, LinkType.CREATE, 'result')
    return model


def _build(writer: GraphWriter, count: int, tag: str) -> dict[str, int]:
    build = process(writer, CALCFUNCTION, 'aiida_mlqm.workflows.build_functions.build_structures', 'build_structures')
    records = writer.node(LIST, {'list': [{'id': f'{tag}_{i:04d}'} for i in range(count)]})
    writer.link(records, build, LinkType.INPUT_CALC, 'records')
    built = {}
    for index in range(count):
        key = f'{tag}_{index:04d}'
        structure = writer.node(STRUCTURE, {'kinds': [{'name': 'C', 'symbols': ['C'], 'weights': [1.0], 'mass': 12.011}],
                                            'sites': [{'kind_name': 'C', 'position': [0.0, 0.0, float(index)]}],
                                            'cell': [[20.0, 0, 0], [0, 20.0, 0], [0, 0, 20.0]], 'pbc1': False,
                                            'pbc2': False, 'pbc3': False, 'canonical_smiles': 'C'})  # fmt: skip
        writer.link(build, structure, LinkType.CREATE, f'structure_{index:04d}')
        built[key] = structure
    return built


def _dataset_attributes(writer: GraphWriter, results, structures: dict[str, int], previous: dict) -> dict:
    sources = [writer.uuid(job) for _, _, _, job in results]
    levels = [LEVEL] * len(results)
    all_levels = list(previous.get('levels', [])) + levels
    return {
        'levels': all_levels,
        'source_uuids': list(previous.get('source_uuids', [])) + sources,
        'structure_uuids': list(previous.get('structure_uuids', [])) + [writer.uuid(structures[k]) for k, *_ in results],
        'num_frames': len(all_levels),
        'level_counts': {LEVEL: len(all_levels)},
        'has_forces': True,
    }


def populate(campaigns: int, iterations: int = 10, structures: int = 100, batch_size: int = 20) -> list[int]:
    """Add ``campaigns`` campaigns to the loaded profile, one transaction each; return the pks of their last models."""
    user = orm.User.collection.get_default()
    computers = orm.QueryBuilder().append(orm.Computer, filters={'label': 'synthetic'}).all(flat=True)
    computer = computers[0] if computers else orm.Computer(
        label='synthetic', hostname='localhost', transport_type='core.local', scheduler_type='core.slurm'
    ).store()
    codes = orm.QueryBuilder().append(orm.InstalledCode, filters={'label': 'synthetic-python'}).all(flat=True)
    code = codes[0] if codes else orm.InstalledCode(
        computer=computer, filepath_executable='/usr/bin/python3', label='synthetic-python'
    ).store()
    writer = GraphWriter(user.pk, computer.pk)
    models = []
    for number in range(campaigns):
        model = campaign(writer, ('pk', code.pk), iterations, structures, batch_size, f'c{number:03d}')
        models.append(writer.flush()[model])
    return models
