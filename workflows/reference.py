"""``ReferenceWorkChain`` (``mlqm.reference``): label a set of structures at one level of theory.

1. The structures are packed into ``mlqm.pyscf.batch`` jobs by estimated cost (:mod:`.batching`), capped by
   ``batch.max_structures``; all batches run at once. On a ``core.direct`` computer the work is spread over as many
   single-core jobs as the machine has cores (:func:`.batching.jobs_side_by_side`) when it is worth a job each.
2. Structures that failed inside a batch (or whose whole batch failed) are retried one by one through the
   ``mlqm.pyscf.base`` restart chain, which changes settings by failure type.
3. The dataset: each batch job returns its good structures as rows (its ``dataset`` output, made by its parser);
   the rows of structures a restart chain labelled are assembled by :func:`.dataset.assemble_dataset` from their
   results, and the parts are merged by :func:`.dataset.merge_datasets`. One batch and no retry: the batch's own
   dataset is the chain's. Every row names the calculation and the result node behind it.

Structures that fail for good are listed in the ``failed`` output with their reason; the chain then finishes with
exit status 710 instead of failing, so one bad molecule never sinks a campaign.
"""
from __future__ import annotations

import typing as t

from aiida import orm
from aiida.common import AttributeDict
from aiida.common.links import LinkType
from aiida.engine import ToContext, WorkChain, calcfunction, while_
from aiida.plugins import CalculationFactory, WorkflowFactory

from ..calcjobs.batch import is_structure_key
from ..calcjobs.molecule import structure_to_runner_entry
from ..chemistry.level import CostError, LevelOfTheory, ParameterError
from ..chemistry.molecule import Rejection
from ..exit_codes import declare
from ..services.processes import never_started
from .batching import fill_slots, jobs_side_by_side, plan_batches
from .dataset import assemble_in_chunks, merge_datasets
from .protocol import ProtocolMixin, protocol_level

PyscfBatchCalculation = CalculationFactory('mlqm.pyscf.batch')
MAX_RELAUNCHES = 2  # new launches of a batch job or restart chain that never started (its worker died launching it)
PyscfBaseWorkChain = WorkflowFactory('mlqm.pyscf.base')


def _ending(node) -> str:
    """How a child process ended, in words: its exit status and message, or the first line of its exception."""
    if node.is_excepted:
        return f'an exception: {(node.exception or "").strip().splitlines()[0] if node.exception else "unknown"}'
    return f'exit status {node.exit_status}: {node.exit_message}'


def validate_inputs(inputs, _):
    """Check what the ports alone cannot: there are structures, and the parameters fit all their elements."""
    structures = inputs.get('structures', {})
    if not structures:
        return 'no structures given: pass at least one StructureData in the `structures` namespace'
    bad_keys = [key for key in structures if not is_structure_key(key)]
    if bad_keys:
        shown = ', '.join(repr(key if len(key) <= 40 else key[:37] + '...') for key in bad_keys[:3])
        return (
            f'structure keys {shown} are not identifiers of letters, digits and single underscores of at most 80 '
            'characters: rename them (aiida_mlqm.workflows.build_functions.link_key makes such keys from any id)'
        )
    for key, structure in structures.items():
        for name in ('charge', 'multiplicity'):
            value = structure.base.attributes.get(name, None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                return f'structure {key!r}: the `{name}` attribute is {value!r} ({type(value).__name__}), not an integer'
    elements = {symbol for structure in structures.values() for symbol in structure.get_symbols_set()}
    try:
        level = LevelOfTheory.parse(inputs['parameters'].get_dict(), elements)
    except ParameterError as exception:
        return f'invalid `parameters`: {exception}'
    problem = _cost_problem(inputs, level)
    if problem:
        return problem
    batch = inputs.get('batch', {})
    if 'max_structures' in batch and batch['max_structures'].value < 1:
        return '`batch.max_structures` must be at least 1'
    return None


def _cost_problem(inputs, level: LevelOfTheory) -> str | None:
    """Why the structures cost more than the ``max_hours`` ceilings allow at ``level`` (estimated), or ``None``."""
    ceilings = {
        name: node.value if node is not None else ReferenceWorkChain.get_default_input(f'max_hours.{name}')
        for name in ('per_structure', 'per_run')
        for node in [inputs.get('max_hours', {}).get(name)]
    }
    structures = inputs['structures']
    try:
        level.check_cost(
            {key: structure.get_ase().get_chemical_symbols() for key, structure in structures.items()},
            max_hours_per_structure=ceilings['per_structure'],
            max_hours_per_run=ceilings['per_run'],
            options=('input max_hours.per_structure', 'input max_hours.per_run'),
        )
    except CostError as exception:
        return str(exception)
    return None


@calcfunction
def collect_failures(outcomes: orm.Dict, **batch_failures: orm.Dict) -> orm.Dict:
    """The ``failed`` output: one entry per structure that could not be labelled.

    :param outcomes: ``{key: {'status', 'message', ...}}``: what the chain concluded for each structure (set aside
        before batching, failed in a batch and not retried, or failed again in its retry).
    :param batch_failures: the ``failures`` output of each batch job, by batch label; a structure that failed in a batch
        gets ``batch`` (the label) and ``batch_failure`` (that job's status, message and exit code) from them.
    """
    first = {key: (label, failure) for label, node in batch_failures.items() for key, failure in node.get_dict().items()}
    failed = {}
    for key, outcome in outcomes.get_dict().items():
        failed[key] = dict(outcome)
        if key in first:
            failed[key]['batch'], failed[key]['batch_failure'] = first[key]
    return orm.Dict(failed)


@calcfunction
def parameters_for_structure(parameters: orm.Dict, molecular_states: orm.Dict, key: orm.Str) -> orm.Dict:
    """``parameters`` with the charge and multiplicity that ``molecular_states`` gives for structure ``key``."""
    return orm.Dict({**parameters.get_dict(), **molecular_states.get_dict()[key.value]})


class ReferenceWorkChain(ProtocolMixin, WorkChain):
    """Compute reference energies (and forces) of many structures at one level of theory, in batches."""

    _protocol_name = 'reference'
    _open_override_keys = ('parameters',)

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            help='The structures to label, keyed by a name that becomes a link label (letters, digits, underscores).',
        )
        spec.input('parameters', valid_type=orm.Dict, help='Level of theory and settings, as for `mlqm.pyscf`.')
        spec.input('code', valid_type=orm.AbstractCode, help='Python with PySCF on the computer that runs the jobs.')
        spec.input(
            'molecular_states',
            valid_type=orm.Dict,
            required=False,
            help='Optional {key: {"charge": int, "multiplicity": int}} overriding the structures\' own attributes.',
        )
        spec.input(
            'options',
            valid_type=orm.Dict,
            required=False,
            serializer=orm.to_aiida_type,
            help='`metadata.options` for every job: resources, max_wallclock_seconds, queue_name, account, ...',
        )
        spec.input(
            'batch.max_structures',
            valid_type=orm.Int,
            default=lambda: orm.Int(cls.get_default_input('batch.max_structures')),
            serializer=orm.to_aiida_type,
            help='Most structures in one batch job.',
        )
        spec.input(
            'batch.target_seconds',
            valid_type=orm.Float,
            default=lambda: orm.Float(cls.get_default_input('batch.target_seconds')),
            serializer=orm.to_aiida_type,
            help='Estimated run time to aim for per batch job; expensive structures get smaller batches.',
        )
        spec.input(
            'max_hours.per_structure',
            valid_type=orm.Float,
            default=lambda: orm.Float(cls.get_default_input('max_hours.per_structure')),
            serializer=orm.to_aiida_type,
            help='Refuse the chain when one structure is estimated above this many core-hours.',
        )
        spec.input(
            'max_hours.per_run',
            valid_type=orm.Float,
            default=lambda: orm.Float(cls.get_default_input('max_hours.per_run')),
            serializer=orm.to_aiida_type,
            help='Refuse the chain when all structures together are estimated above this many core-hours.',
        )
        spec.input(
            'retry_failed',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(cls.get_default_input('retry_failed')),
            serializer=orm.to_aiida_type,
            help='Retry structures that failed in a batch one by one through the `mlqm.pyscf.base` restart chain.',
        )
        spec.input(
            'max_restarts',
            valid_type=orm.Int,
            default=lambda: orm.Int(cls.get_default_input('max_restarts')),
            serializer=orm.to_aiida_type,
            help='`max_iterations` of each restart chain.',
        )
        spec.input(
            'clean_workdir',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(cls.get_default_input('clean_workdir')),
            serializer=orm.to_aiida_type,
            help='Clean the remote folders of all jobs when the chain terminates.',
        )
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            while_(cls.should_run_batches)(
                cls.run_batches,
                cls.inspect_batches,
            ),
            while_(cls.should_retry)(
                cls.run_retries,
                cls.inspect_retries,
            ),
            cls.assemble,
        )
        spec.output('dataset', valid_type=orm.Data, required=False, help='DatasetData of all labelled structures.')
        spec.output('failed', valid_type=orm.Dict, required=False, help='Structures that could not be labelled, why.')
        declare(
            spec,
            'ERROR_ALL_STRUCTURES_FAILED',
            'WARNING_SOME_STRUCTURES_FAILED',
            ERROR_ALL_STRUCTURES_FAILED='No structure could be labelled; see the `failed` output and '
            '`verdi process report`.',
            WARNING_SOME_STRUCTURES_FAILED='{failed} of {total} structures could not be labelled; they are listed in '
            'the `failed` output.',
        )

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structures: t.Mapping[str, orm.StructureData],
        protocol: str | None = None,
        overrides: t.Mapping[str, t.Any] | None = None,
        options: t.Mapping[str, t.Any] | None = None,
    ):
        """A builder with the protocol's inputs, ``overrides`` merged in and the level validated for ``structures``.

        :param overrides: inputs to change, nested as the ports, e.g. ``{'parameters': {'method': 'ccsd(t)', 'basis':
            'cc-pvdz'}, 'batch': {'max_structures': 10}}``; a ``method`` replaces the protocol's method and
            functional. Unknown keys raise :class:`~aiida_mlqm.workflows.protocol.ProtocolError`; a wrong level
            raises :class:`~aiida_mlqm.chemistry.level.ParameterError`.
        :param options: ``metadata.options`` of every job (resources, max_wallclock_seconds, queue_name, ...).
        """
        overrides = dict(overrides or {})
        inputs = cls.get_protocol_inputs(protocol, {k: v for k, v in overrides.items() if k != 'parameters'})
        elements = {symbol for structure in structures.values() for symbol in structure.get_symbols_set()}
        level = protocol_level(inputs['parameters'], overrides.get('parameters', {}), elements)
        builder = cls.get_builder()
        builder.code = code
        builder.structures = dict(structures)
        builder.parameters = orm.Dict(level.as_parameters())
        builder.batch = {
            'max_structures': orm.Int(inputs['batch']['max_structures']),
            'target_seconds': orm.Float(inputs['batch']['target_seconds']),
        }
        builder.max_hours = {key: orm.Float(value) for key, value in inputs['max_hours'].items()}
        builder.retry_failed = orm.Bool(inputs['retry_failed'])
        builder.max_restarts = orm.Int(inputs['max_restarts'])
        builder.clean_workdir = orm.Bool(inputs['clean_workdir'])
        if options:
            builder.options = orm.Dict(dict(options))
        return builder

    def setup(self):
        """Estimate costs and plan the batches; keep only JSON and stored nodes in the context."""
        level = LevelOfTheory.parse(self.inputs.parameters.get_dict())  # the object the validator made
        self.ctx.labelled = {}  # key -> {'parameters': pk, 'forces': pk | None}
        self.ctx.batch_rows = []  # pks of the batch jobs' `dataset` outputs (their good structures, as rows)
        self.ctx.to_retry = {}  # key -> reason of the batch failure
        self.ctx.failed = {}  # key -> {'status', 'message', ...} for structures that failed for good
        costs = {}
        for key, structure in self.inputs.structures.items():
            problem = self._molecule_problem(key, structure, level)
            if problem:
                # One impossible molecule would fail the validation of its whole batch: set it aside here.
                self.ctx.failed[key] = {'status': 'invalid_molecule', 'message': problem}
                self.report(f'`{key}` is not computed: {problem}')
                continue
            costs[key] = level.estimate_seconds(structure.get_ase().get_chemical_symbols())
        self.ctx.batch_attempts = {}  # str(batch index) -> launches after the first (of a batch that never started)
        estimate = sum(costs.values())
        self.ctx.batches = plan_batches(
            costs,
            target_seconds=self.inputs.batch.target_seconds.value,
            max_structures=self.inputs.batch.max_structures.value,
            min_batches=fill_slots(estimate, jobs_side_by_side(self.inputs.code.computer, self._options())),
        )
        self.ctx.to_launch = list(range(len(self.ctx.batches)))
        self.report(
            f'{len(costs)} structures in {len(self.ctx.batches)} batch job(s), estimated {estimate:.0f} s of compute'
        )

    def _molecule_problem(self, key: str, structure: orm.StructureData, level: LevelOfTheory) -> str | None:
        """Why this molecule cannot be computed at ``level`` (charge, multiplicity, method), or ``None``."""
        state = self._states().get(key, {})
        try:
            entry = structure_to_runner_entry(
                structure, state.get('charge', level.charge), state.get('multiplicity', level.multiplicity)
            )
            level.check_molecule(entry['multiplicity'])
        except (Rejection, ParameterError) as exception:
            return str(exception)
        return None

    def _options(self) -> dict:
        return self.inputs.options.get_dict() if 'options' in self.inputs else {}

    def _states(self) -> dict:
        return self.inputs.molecular_states.get_dict() if 'molecular_states' in self.inputs else {}

    def should_run_batches(self):
        return bool(self.ctx.to_launch)

    def _batch_label(self, index: int) -> str:
        attempt = self.ctx.get('batch_attempts', {}).get(str(index), 0)
        return f'batch_{index:02d}' if attempt == 0 else f'batch_{index:02d}_{attempt:02d}'

    def run_batches(self):
        """Submit one ``mlqm.pyscf.batch`` job per planned batch (and again for a batch that never started)."""
        states = self._states()
        jobs = {}
        for index in self.ctx.to_launch:
            keys = self.ctx.batches[index]
            label = self._batch_label(index)
            inputs = AttributeDict(
                {
                    'code': self.inputs.code,
                    'parameters': self.inputs.parameters,
                    'structures': {key: self.inputs.structures[key] for key in keys},
                    'metadata': {'options': self._options(), 'call_link_label': label},
                }
            )
            batch_states = {key: states[key] for key in keys if key in states}
            if batch_states:
                inputs.molecular_states = orm.Dict(batch_states)
            node = self._earlier(LinkType.CALL_CALC, label)
            if node is None:
                node = self.submit(PyscfBatchCalculation, **inputs)
                self.report(f'submitted {node.process_label}<{node.pk}> with {len(keys)} structures')
            jobs[label] = node
        return ToContext(**jobs)

    def inspect_batches(self):
        """Record the structures each batch labelled; queue the rest for one-by-one retries.

        A batch job that never started (its worker died while launching it, and the supervisor or ``mlqm repair``
        closed it: it computed nothing) is launched again whole, up to :data:`MAX_RELAUNCHES` times, instead of
        sending each of its structures to a job of its own.
        """
        relaunch = []
        for index in self.ctx.to_launch:
            keys = self.ctx.batches[index]
            node = self.ctx[self._batch_label(index)]
            attempts = self.ctx.batch_attempts.get(str(index), 0)
            if never_started(node) and attempts < MAX_RELAUNCHES:
                self.ctx.batch_attempts[str(index)] = attempts + 1
                self.report(f'{node.process_label}<{node.pk}> never started (its worker died): launching it again')
                relaunch.append(index)
                continue
            results = node.outputs.parameters if 'parameters' in node.outputs else {}
            failures = node.outputs.failures.get_dict() if 'failures' in node.outputs else {}
            if 'dataset' in node.outputs:
                self.ctx.batch_rows.append(node.outputs.dataset.pk)
            for key in keys:
                if key in results:
                    # its row (forces included) is in the batch's `dataset` output
                    self.ctx.labelled[key] = {'parameters': results[key].pk, 'forces': None}
                    continue
                failure = failures.get(key) or {
                    'status': 'batch_failed',
                    'message': f'batch job {node.pk} ended with {_ending(node)}',
                }
                self.ctx.to_retry[key] = failure
            if not node.is_finished_ok:
                self.report(f'{node.process_label}<{node.pk}> ended with {_ending(node)}')
        self.ctx.to_launch = relaunch
        if self.ctx.to_retry and not relaunch:
            self.report(f'{len(self.ctx.to_retry)} structure(s) failed in their batch: {sorted(self.ctx.to_retry)}')

    def should_retry(self):
        if self.ctx.to_retry and not self.inputs.retry_failed.value:
            self.ctx.failed.update(self.ctx.to_retry)
            self.ctx.to_retry = {}
            return False
        return bool(self.ctx.to_retry)

    def _retry_label(self, key: str) -> str:
        attempt = self.ctx.get('relaunched', {}).get(key, 0)
        return f'retry_{key}' if attempt == 0 else f'retry_{key}_{attempt:02d}'

    def run_retries(self):
        """Run each failed structure alone through the ``mlqm.pyscf.base`` restart chain."""
        states = self._states()
        jobs = {}
        for key in sorted(self.ctx.to_retry):
            inputs = AttributeDict(
                {
                    'pyscf': {
                        'code': self.inputs.code,
                        'structure': self.inputs.structures[key],
                        'parameters': self.inputs.parameters,
                        'metadata': {'options': self._options()},
                    },
                    'max_iterations': self.inputs.max_restarts,
                    'clean_workdir': self.inputs.clean_workdir,
                    'metadata': {'call_link_label': self._retry_label(key)},
                }
            )
            if key in states:
                inputs.pyscf['parameters'] = parameters_for_structure(
                    self.inputs.parameters, self.inputs.molecular_states, orm.Str(key),
                    metadata={'call_link_label': f'parameters_{key}'},
                )
            label = self._retry_label(key)
            node = self._earlier(LinkType.CALL_WORK, label)
            if node is None:
                node = self.submit(PyscfBaseWorkChain, **inputs)
                self.report(f'retrying `{key}` alone in {node.process_label}<{node.pk}>')
            jobs[label] = node
        return ToContext(**jobs)

    def _earlier(self, link_type, label: str):
        """The node this chain already linked with ``label``, or ``None``.

        A step can run a second time: after a worker died between the step and its checkpoint, or when a broker restart
        handed the same process to two workers. The second run then finds the first one's jobs and outputs instead of
        submitting or assembling again (and a process never gets two outputs of one label).
        """
        found = self.node.base.links.get_outgoing(link_type=link_type, link_label_filter=label).all_nodes()
        return found[0] if found else None

    def inspect_retries(self):
        """Record what the restart chains labelled. A chain that never started (its worker died while launching it and
        the supervisor or ``mlqm repair`` closed it: it ran nothing) is launched again, up to
        :data:`MAX_RELAUNCHES` times; any other failure is final."""
        relaunch = {}
        self.ctx.setdefault('relaunched', {})
        for key, first_failure in sorted(self.ctx.to_retry.items()):
            node = self.ctx[self._retry_label(key)]
            if node.is_finished_ok:
                self.ctx.labelled[key] = {
                    'parameters': node.outputs.parameters.pk,
                    'forces': node.outputs.forces.pk if 'forces' in node.outputs else None,
                }
                continue
            if never_started(node) and self.ctx.relaunched.get(key, 0) < MAX_RELAUNCHES:
                self.ctx.relaunched[key] = self.ctx.relaunched.get(key, 0) + 1
                self.report(f'restart chain {node.pk} of `{key}` never started (its worker died): launching it again')
                relaunch[key] = first_failure
                continue
            self.ctx.failed[key] = {
                'status': first_failure.get('status', 'failed'),
                'message': f'{first_failure.get("message", "")}; retry {node.pk} ended with {_ending(node)}',
                'retry_pk': node.pk,
            }
        self.ctx.to_retry = relaunch

    def assemble(self):
        """Assemble the dataset from the labelled structures; list the failures; pick the exit status."""
        total = len(self.inputs.structures)
        if self.ctx.failed:
            batch_failures = {}
            for index in range(len(self.ctx.batches)):
                node = self.ctx[self._batch_label(index)]
                if 'failures' in node.outputs:
                    batch_failures[f'batch_{index:02d}'] = node.outputs.failures
            if self._earlier(LinkType.RETURN, 'failed') is None:
                failed = self._earlier(LinkType.CALL_CALC, 'collect_failures')
                failed = failed.outputs.result if failed is not None and failed.is_finished_ok else collect_failures(
                    orm.Dict(self.ctx.failed), **batch_failures, metadata={'call_link_label': 'collect_failures'}
                )
                self.out('failed', failed)
            for key, failure in sorted(self.ctx.failed.items()):
                self.report(f'`{key}` could not be labelled: {failure["status"]}: {failure["message"]}')
        if not self.ctx.labelled:
            return self.exit_codes.ERROR_ALL_STRUCTURES_FAILED

        dataset = self._earlier(LinkType.RETURN, 'dataset')
        if dataset is None:
            dataset = self._rows()
            self.out('dataset', dataset)
        else:
            self.report(f'the dataset was already attached by an earlier run of this step: {dataset.pk} kept')
        self.report(f'labelled {len(self.ctx.labelled)} of {total} structures: {dataset}')
        if self.ctx.failed:
            return self.exit_codes.WARNING_SOME_STRUCTURES_FAILED.format(failed=len(self.ctx.failed), total=total)
        return None

    def _rows(self):
        """The chain's dataset: the batch jobs' own ``dataset`` outputs, plus rows assembled for the structures the
        restart chains labelled, merged when there is more than one part (rows batch by batch, retries last).

        A part made by an earlier run of this step (see :meth:`_earlier`) is reused, never made twice.
        """
        parts = [orm.load_node(pk) for pk in self.ctx.get('batch_rows', [])]
        in_batches = {uuid for part in parts for uuid in part.base.attributes.get('structure_uuids')}
        retried = {
            key: {
                'structure': self.inputs.structures[key],
                'parameters': orm.load_node(pks['parameters']),
                'forces': orm.load_node(pks['forces']) if pks['forces'] is not None else None,
            }
            for key, pks in self.ctx.labelled.items()
            if self.inputs.structures[key].uuid not in in_batches
        }
        if retried:
            earlier = self._earlier(LinkType.CALL_CALC, 'merge_datasets_retried') or self._earlier(
                LinkType.CALL_CALC, 'assemble_dataset'
            )
            usable = earlier is not None and earlier.is_finished_ok
            parts.append(earlier.outputs.result if usable else assemble_in_chunks(retried, merge_label='merge_datasets_retried'))
        if len(parts) == 1:
            return parts[0]
        earlier = self._earlier(LinkType.CALL_CALC, 'merge_datasets')
        if earlier is not None and earlier.is_finished_ok:
            return earlier.outputs.result
        return merge_datasets(
            **{f'part_{index:03d}': part for index, part in enumerate(parts)},
            metadata={'call_link_label': 'merge_datasets'},
        )

    def on_terminated(self):
        """Clean the remote folders of all jobs this chain ran, when asked to."""
        super().on_terminated()
        if not self.inputs.clean_workdir.value:
            return
        cleaned = []
        for descendant in self.node.called_descendants:
            if isinstance(descendant, orm.CalcJobNode) and 'remote_folder' in descendant.outputs:
                try:
                    descendant.outputs.remote_folder._clean()
                    cleaned.append(str(descendant.pk))
                except (OSError, KeyError):
                    pass
        if cleaned:
            self.report(f'cleaned remote folders of calculations: {" ".join(cleaned)}')
