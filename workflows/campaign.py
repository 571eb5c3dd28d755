"""``CampaignWorkChain`` (``mlqm.campaign``): build -> method selection -> reference -> active learning -> screening
-> report, from one validated config.

Each loop iteration runs ``mlqm.train`` on the labelled set, ``mlqm.predict`` on the unlabelled candidates, the
``select_next_batch`` calcfunction (inputs: the model and the candidates; output: each chosen structure with its
scores and the rule), ``mlqm.reference`` on the chosen structures at the cheap level (and the expensive level for a
share of them), and ``merge_labelled``; every sub-process is labelled ``iteration_NN_<step>``, so "why was this
structure labelled" is a graph query from its dataset row back to the selection.

Submission control: reference chains are given at most ``submission.max_jobs_in_flight`` batch jobs (the batch size
grows instead), and training and prediction run one job at a time, so a campaign over thousands of molecules never
has more than that many scheduler jobs queued at once.
"""

from __future__ import annotations

import math
import typing as t

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_, while_

from ..calcjobs.features import CasscfBatchCalculation
from ..calcjobs.predict import PredictCalculation
from ..calcjobs.train import TrainCalculation
from ..exit_codes import declare
from ..provenance.dataset import DatasetData
from .build import BuildWorkChain
from .campaign_config import CampaignConfigError, parse_config
from .campaign_functions import (
    campaign_parameters,
    apply_routing,
    campaign_report,
    choose_initial_set,
    delta_corrections,
    objective_pairs,
    exploration_parameters,
    select_expensive,
    merge_labelled,
    multireference_outcome,
    rank_library,
    screening_summary,
    select_next_batch,
    with_objective,
)
from .protocol import ProtocolMixin
from .reference import ReferenceWorkChain

STAGES = ('build', 'method_selection', 'reference', 'active_learning', 'screening', 'report', 'finished')


def hit_line(screening: t.Mapping[str, t.Any]) -> str:
    """``hits 2 of 3 verified (homo_lumo_gap <= 11 eV): hit rate 0.67``, or why there is no hit rate."""
    threshold = screening.get('hit_threshold')
    if threshold is None:
        return 'no hit rate: the config sets no screening.hit_threshold'
    verified = [row for row in screening['verified'] if row.get('hit') is not None]
    if not verified:
        return 'no hit rate: no top-k molecule could be verified'
    sign = '>=' if screening.get('maximise') else '<='
    return (
        f'hits {sum(bool(row["hit"]) for row in verified)} of {len(verified)} verified '
        f'({screening.get("objective", "value")} {sign} {threshold:g} {screening.get("unit", "eV")}): '
        f'hit rate {screening["hit_rate"]:.2f}'
    )


def validate_config(value, _ctx=None) -> str | None:
    try:
        parse_config(value.get_dict())
    except CampaignConfigError as exception:
        return str(exception)
    return None


def validate_inputs(inputs, _ctx=None) -> str | None:
    """Method selection needs its classifier before anything runs."""
    try:
        config = parse_config(inputs['config'].get_dict())
    except (CampaignConfigError, KeyError):
        return None  # the config port's own validator names the problem
    if config.method_selection.enabled and 'classifier' not in inputs:
        return (
            'method_selection.enabled needs the `classifier` input (a method-selection ModelData): pass the shipped one '
            'from aiida_mlqm.workflows.method_selection_training.import_default(), as `mlqm campaign run` does'
        )
    return None


class CampaignWorkChain(ProtocolMixin, WorkChain):
    """An ML/QM campaign: labelled data chosen by active learning, a trained model, a screened library."""

    _protocol_name = 'campaign'
    _open_override_keys = ('config',)

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        library: t.Sequence[dict] | orm.List,
        protocol: str | None = None,
        overrides: t.Mapping[str, t.Any] | None = None,
        options: t.Mapping[str, t.Any] | None = None,
    ):
        """A builder with the protocol's config changes under the caller's ``overrides['config']``.

        :param library: records as ``mlqm.build`` takes them (``chemistry.readers``), or a stored ``List`` of them.
        :param overrides: ``{'config': {...}}`` with at least name, target, library and levels (see
            examples/campaigns/); unknown keys raise ``ProtocolError``, an invalid config ``CampaignConfigError``.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        parse_config(inputs['config'])  # refuse a bad config before anything is stored
        builder = cls.get_builder()
        builder.config = orm.Dict(inputs['config'])
        builder.library = library if isinstance(library, orm.List) else orm.List(list(library))
        builder.code = code
        if options:
            builder.options = orm.Dict(dict(options))
        return builder

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('config', valid_type=orm.Dict, validator=validate_config, help='The campaign config (mlqm campaign).')
        spec.input(
            'library', valid_type=orm.List, help='Library records as `mlqm.build` takes them (read from the config).'
        )
        spec.input('code', valid_type=orm.AbstractCode, help='Python with PySCF and torch: reference, train, predict.')
        spec.input(
            'classifier', valid_type=orm.Data, required=False,
            help='Method selection (method_selection.enabled): the MR classifier (ModelData); `mlqm campaign run` passes '
            'the shipped one (workflows.method_selection_training.import_default).',
        )  # fmt: skip
        spec.input(
            'options',
            valid_type=orm.Dict,
            required=False,
            serializer=orm.to_aiida_type,
            help='`metadata.options` for every job (resources, max_wallclock_seconds, queue_name, ...).',
        )
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            cls.build,
            cls.inspect_build,
            cls.method_selection,
            cls.inspect_method_selection,
            if_(cls.should_run_multireference)(cls.run_multireference, cls.inspect_multireference),
            if_(cls.is_potential)(cls.sample),
            cls.choose_initial,
            cls.label_validation,
            cls.label_initial,
            cls.inspect_initial,
            cls.train,
            cls.inspect_train,
            while_(cls.should_iterate)(
                if_(cls.should_explore)(cls.explore, cls.inspect_explore),
                cls.predict,
                cls.select,
                cls.label,
                cls.label_expensive,
                cls.merge,
                cls.train,
                cls.inspect_train,
                if_(cls.should_train_delta)(cls.train_delta, cls.inspect_train_delta),
            ),
            if_(cls.should_screen)(
                cls.screen_predict,
                if_(cls.has_property_delta)(cls.screen_predict_delta),
                cls.screen_verify,
                cls.screen_summarise,
            ),
            cls.make_report,
        )
        spec.output('dataset', valid_type=DatasetData, help='Every label the campaign computed at the cheap level.')
        spec.output('validation_dataset', valid_type=DatasetData, help='The fixed validation set.')
        spec.output('model', valid_type=orm.Data, help='The final model (ModelData), trained on `dataset`.')
        spec.output(
            'expensive_dataset', valid_type=DatasetData, required=False, help='Labels at the expensive level.'
        )
        spec.output(
            'delta_model', valid_type=orm.Data, required=False,
            help='Δ model: cheap QM + a correction learned from `expensive_dataset` paired with `dataset` (kind delta '
            "for potentials; for properties a property committee of the objective's expensive - cheap).",
        )  # fmt: skip
        spec.output('screening', valid_type=orm.Dict, required=False, help='Verified top k: predicted vs computed.')
        spec.output_namespace(
            'multireference', valid_type=orm.Dict, dynamic=True, required=False,
            help='CASSCF result (energy, active space) of each molecule method selection routed multireference '
            '(method_selection.multireference: casscf), by molecule key; the failed ones are in the report.',
        )  # fmt: skip
        spec.output('report', valid_type=orm.Dict, help='Per iteration: labels, validation error, uncertainty; stop.')
        declare(
            spec,
            'ERROR_TOO_FEW_CANDIDATES',
            'ERROR_BUILD_FAILED',
            'ERROR_REFERENCE_FAILED',
            'ERROR_METHOD_SELECTION_FAILED',
            'ERROR_TRAINING_FAILED',
            'ERROR_PREDICTION_FAILED',
            ERROR_TRAINING_FAILED='Training failed in iteration {iteration}: {message}',
            ERROR_PREDICTION_FAILED='Prediction failed in iteration {iteration}: {message}',
        )

    # -- helpers ---------------------------------------------------------------------------------------------------

    @property
    def config(self):
        return parse_config(self.inputs.config.get_dict())

    def _options(self) -> dict:
        return self.inputs.options.get_dict() if 'options' in self.inputs else {'resources': {'num_machines': 1}}

    def _stage(self, stage: str) -> None:
        self.ctx.stage = stage
        self._progress()

    def _progress(self) -> None:
        """Progress for ``mlqm campaign status`` as extras (mutable; the graph holds the record itself)."""
        self.node.base.extras.set_many(
            {
                'campaign_stage': self.ctx.stage,
                'campaign_iteration': self.ctx.get('iteration', 0),
                'campaign_labels': dict(self.ctx.get('labels', {})),
                'campaign_validation_error': self.ctx.get('current_error'),
                'campaign_name': self.config.name,
            }
        )

    def _reference(self, keys: list[str], level: str, label: str):
        """A ``mlqm.reference`` chain over ``keys`` at ``level`` ('cheap'/'expensive'), with at most
        ``max_jobs_in_flight`` batch jobs (larger batches instead of more jobs)."""
        submission = self.config.submission
        per_job = max(submission.structures_per_job, math.ceil(len(keys) / submission.max_jobs_in_flight))
        inputs = AttributeDict(
            {
                'structures': {key: orm.load_node(self.ctx.candidates[key]) for key in keys},
                'parameters': self.ctx.parameters[f'reference_{level}'],
                'code': self.inputs.code,
                'options': orm.Dict(self._options()),
                'batch': {'max_structures': orm.Int(per_job), 'target_seconds': orm.Float(1e9)},
                'metadata': {'call_link_label': label},
            }
        )
        if submission.max_hours():
            inputs.max_hours = {key: orm.Float(value) for key, value in submission.max_hours().items()}
        node = self.submit(ReferenceWorkChain, **inputs)
        self.report(f'{label}: {len(keys)} structures at {level} in {node.process_label}<{node.pk}>')
        return node

    def _labelled_dataset(self, node, what: str):
        if 'dataset' not in node.outputs:
            return None, self.exit_codes.ERROR_REFERENCE_FAILED.format(what=what, message=node.exit_message or '')
        dataset = node.outputs.dataset
        if self.config.target == 'property':
            results = {}
            for index, uuid in enumerate(dataset.base.attributes.get('result_uuids')):
                results[f'row_{index:05d}'] = orm.load_node(uuid)
            dataset = with_objective(
                dataset, orm.Str(self.config.objective), **results, metadata={'call_link_label': f'{what}_objective'}
            )
        return dataset, None

    # -- outline ---------------------------------------------------------------------------------------------------

    def setup(self):
        config = self.config
        self.ctx.parameters = campaign_parameters(self.inputs.config, metadata={'call_link_label': 'parameters'})
        self.ctx.iteration = 0
        self.ctx.history = []
        self.ctx.labels = {config.levels.cheap.level: 0}
        if config.levels.expensive is not None:
            self.ctx.labels[config.levels.expensive.level] = 0
        self.ctx.stop_reason = None
        self._stage('build')

    def build(self):
        inputs = {
            'library': self.inputs.library,
            'parameters': self.ctx.parameters['build'],
            'metadata': {'call_link_label': 'build'},
        }
        return ToContext(build=self.submit(BuildWorkChain, **inputs))

    def inspect_build(self):
        node = self.ctx.build
        structures = BuildWorkChain.built_structures(node)
        if not structures:
            return self.exit_codes.ERROR_BUILD_FAILED.format(message=node.exit_message or 'no valid entry')
        self.ctx.molecules = {key: structure.pk for key, structure in sorted(structures.items())}
        self.ctx.candidates = dict(self.ctx.molecules) if self.config.target == 'property' else {}
        self.report(f'built {len(structures)} molecules')
        return None

    def is_potential(self):
        return self.config.target == 'potential'

    def sample(self):
        """Normal-mode configurations of every built molecule at each temperature: the build's own sampling
        calcfunction, called on the molecule the campaign built, so every configuration links to its parent."""
        from aiida.manage import get_manager

        from .build_functions import sample_configurations

        for name, parameters in sorted(self.ctx.parameters.items()):
            if not name.startswith('sampling_'):
                continue
            for key, pk in sorted(self.ctx.molecules.items()):
                with get_manager().get_profile_storage().transaction():  # one disk sync per call
                    outputs = sample_configurations(
                        orm.load_node(pk), parameters, metadata={'call_link_label': f'{name}_{key}'}
                    )
                if not outputs:
                    self.report(f'{name}_{key}: no configurations (see the calcfunction\'s exit message)')
                for label, structure in sorted(outputs.items()):
                    self.ctx.candidates[f'{key}_t{name[-2:]}_{label.rsplit("_", 1)[-1]}'] = structure.pk
        self.report(f'{len(self.ctx.candidates)} candidate configurations from normal-mode sampling')

    def method_selection(self):
        """Routing by ``mlqm.method_selection`` (features job + classifier per molecule) where the config asks for it;
        otherwise recorded as skipped."""
        self._stage('method_selection')
        section = self.config.method_selection
        if not section.enabled:
            self.report('method selection skipped (method_selection.enabled: false): every molecule at levels.cheap')
            return None
        from .method_selection import MethodSelectionWorkChain, classifier_features_parameters

        classifier = self.inputs.classifier
        inputs = {
            'structures': {key: orm.load_node(pk) for key, pk in self.ctx.molecules.items()},
            'code': self.inputs.code,
            'classifier': classifier,
            'routing': orm.Dict(section.routing()),
            'features_parameters': orm.Dict(classifier_features_parameters(classifier)),  # as it was trained
            'batch_size': orm.Int(max(section.batch_size, math.ceil(len(self.ctx.molecules) / self.config.submission.max_jobs_in_flight))),
            'options': orm.Dict(self._options()),
            'metadata': {'call_link_label': 'method_selection'},
        }
        node = self.submit(MethodSelectionWorkChain, **inputs)
        self.report(f'method selection: routing {len(self.ctx.molecules)} molecules in {node.process_label}<{node.pk}>')
        return ToContext(routing=node)

    def inspect_method_selection(self):
        """Apply the routes as the config says (``apply_routing``: which molecules are excluded or flagged, and why)."""
        section = self.config.method_selection
        if section.enabled:
            node = self.ctx.routing
            if 'summary' not in node.outputs:
                return self.exit_codes.ERROR_METHOD_SELECTION_FAILED.format(message=node.exit_message or '')
            keys = orm.List(sorted(self.ctx.molecules))
            levels = self.config.levels
            parameters = {
                'multireference': section.multireference,
                'multireference_level': levels.multireference.label(levels.cheap.basis),
            }
            applied = apply_routing(
                node.outputs.summary, orm.Dict(parameters), keys, metadata={'call_link_label': 'routing'}
            )  # fmt: skip
            self.ctx.routing_record = applied.pk
            removed = set(applied['excluded']) | set(applied.get('casscf') or [])
            self.ctx.multireference_molecules = {key: self.ctx.molecules[key] for key in applied.get('casscf') or []}
            self.ctx.molecules = {key: pk for key, pk in self.ctx.molecules.items() if key not in removed}
            if self.config.target == 'property':
                self.ctx.candidates = dict(self.ctx.molecules)
            self.report(
                f'method selection: {len(applied["excluded"])} multireference molecules excluded '
                f'{applied["excluded"]}, {len(applied["casscf"])} to {parameters["multireference_level"]} '
                f'{applied["casscf"]}, {len(applied["flagged"])} flagged {applied["flagged"]}, '
                f'{len(applied["unrouted"])} not routed (features failed) {applied["unrouted"]}'
            )
            if not self.ctx.molecules:
                return self.exit_codes.ERROR_METHOD_SELECTION_FAILED.format(
                    message=f'every molecule was routed multireference ({applied.pk}), none is left for the '
                    'single-reference levels; set method_selection.multireference: flag to label them at levels.cheap'
                )
        self._stage('reference')
        return None

    def should_run_multireference(self):
        return bool(self.ctx.get('multireference_molecules'))

    def run_multireference(self):
        """CASSCF (``mlqm.casscf.batch``, one job) for the molecules routed multireference, at
        ``levels.multireference``: automatic active space from UHF natural-orbital occupations."""
        keys = sorted(self.ctx.multireference_molecules)
        inputs = {
            'code': self.inputs.code,
            'parameters': self.ctx.parameters['reference_multireference'],
            'structures': {key: orm.load_node(self.ctx.multireference_molecules[key]) for key in keys},
            'metadata': {'options': self._options(), 'call_link_label': 'multireference_reference'},
        }
        node = self.submit(CasscfBatchCalculation, **inputs)
        self.report(f'multireference_reference: CASSCF for {len(keys)} molecules {keys} in {node.process_label}<{node.pk}>')
        return ToContext(multireference_job=node)

    def inspect_multireference(self):
        """Record each routed molecule's CASSCF result or failure (``multireference_outcome``); a failure is reported
        and recorded, and the single-reference campaign goes on."""
        node = self.ctx.multireference_job
        results = dict(node.outputs.parameters) if 'parameters' in node.outputs else {}
        found = {key: value for key, value in results.items() if key in self.ctx.multireference_molecules}
        inputs = {f'casscf_{key}': value for key, value in found.items()}
        if 'failures' in node.outputs:
            inputs['failures'] = node.outputs.failures
        outcome = multireference_outcome(
            orm.load_node(self.ctx.routing_record), orm.Dict({'message': node.exit_message or ''}), **inputs,
            metadata={'call_link_label': 'multireference_outcome'},
        )  # fmt: skip
        self.ctx.multireference_record = outcome.pk
        self.ctx.multireference_results = {key: value.pk for key, value in found.items()}
        failed = outcome['failed']
        why = '; '.join(f'{key}: {value["message"]}' for key, value in sorted(failed.items()))
        self.report(
            f'multireference_reference: {len(outcome["labelled"])} molecules labelled at {outcome["level"]}'
            + (f', {len(failed)} failed ({why}): recorded, the campaign goes on' if failed else '')
        )
        return None

    def choose_initial(self):
        config = self.config
        if len(self.ctx.candidates) < 4:
            return self.exit_codes.ERROR_TOO_FEW_CANDIDATES.format(count=len(self.ctx.candidates))
        parameters = orm.Dict(
            {
                'initial_size': config.active_learning.initial_size,
                'validation_size': config.active_learning.validation_size,
                'seed': config.active_learning.seed,
            }
        )
        candidates = {key: orm.load_node(pk) for key, pk in self.ctx.candidates.items()}
        chosen = choose_initial_set(parameters, **candidates, metadata={'call_link_label': 'initial_selection'})
        self.ctx.initial_selection = chosen.pk
        self.ctx.validation_keys = chosen['validation']
        self.ctx.labelled_keys = list(chosen['initial'])
        return None

    def label_validation(self):
        # one reference chain at a time: each is given the whole allowance of jobs in flight
        return ToContext(validation_reference=self._reference(self.ctx.validation_keys, 'cheap', 'validation_reference'))

    def label_initial(self):
        return ToContext(initial_reference=self._reference(self.ctx.labelled_keys, 'cheap', 'initial_reference'))

    def inspect_initial(self):
        validation, failure = self._labelled_dataset(self.ctx.validation_reference, 'validation')
        if failure:
            return failure
        dataset, failure = self._labelled_dataset(self.ctx.initial_reference, 'initial')
        if failure:
            return failure
        self.ctx.validation_dataset = validation.pk
        self.ctx.dataset = dataset.pk
        level = self.config.levels.cheap.level
        self.ctx.labels[level] = len(dataset) + len(validation)
        self.out('validation_dataset', validation)
        self._stage('active_learning')
        return None

    def should_iterate(self):
        from ..models.selection import IterationRecord, StopRules, check_stop

        config = self.config
        if self.ctx.stop_reason:
            return False
        records = [
            IterationRecord(
                labels=h['labels'], validation_error=h.get('validation_error'), uncertainty=h.get('mean_uncertainty'),
                selected=h.get('selected', 0),
            )
            for h in self.ctx.history
        ]
        # the cheap budget ends the loop; the expensive one only ends expensive labelling (label_expensive)
        cheap = config.levels.cheap
        rules = StopRules(
            max_labels={cheap.level: cheap.max_labels} if cheap.max_labels else None, target_error=config.stop.target_error,
            plateau_window=config.stop.plateau_window, plateau_tolerance=config.stop.plateau_tolerance,
            max_iterations=config.stop.max_iterations,
        )  # fmt: skip
        reason = check_stop(records, rules)
        unlabelled = set(self.ctx.candidates) - set(self.ctx.labelled_keys) - set(self.ctx.validation_keys)
        if reason is None and not unlabelled:
            reason = 'every candidate is labelled'
        if reason:
            self.ctx.stop_reason = reason
            if self.ctx.history:
                self.ctx.history[-1]['stop_reason'] = reason
            self.report(f'active learning stops: {reason}')
            return False
        self.ctx.iteration += 1
        return True

    def _label(self, step: str) -> str:
        return f'iteration_{self.ctx.iteration:02d}_{step}' if self.ctx.iteration else f'initial_{step}'

    def _nothing_new(self) -> bool:
        return bool(self.ctx.iteration) and not self.ctx.get('selected_keys')

    def train(self):
        if self._nothing_new():
            return None  # no new labels: the current model stands, and the stop rules end the loop
        inputs = {
            'code': self.inputs.code,
            'dataset': orm.load_node(self.ctx.dataset),
            'validation_dataset': orm.load_node(self.ctx.validation_dataset),
            'parameters': self.ctx.parameters['train'],
            'metadata': {'options': self._options(), 'call_link_label': self._label('train')},
        }
        return ToContext(training=self.submit(TrainCalculation, **inputs))

    def inspect_train(self):
        if self._nothing_new():
            return None
        node = self.ctx.training
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_TRAINING_FAILED.format(iteration=self.ctx.iteration, message=node.exit_message)
        self.ctx.model = node.outputs.model.pk
        metrics = node.outputs.metrics.get_dict()
        validation = metrics.get('validation') or {}
        error = validation.get('energy_mae', validation.get('property_mae'))
        self.ctx.current_error = error
        if self.ctx.history:  # the model trained on this iteration's labels: its error belongs to the iteration
            self.ctx.history[-1]['validation_error'] = error
        if not self.ctx.history:
            self.ctx.initial_error = error
            self.ctx.initial_labels = dict(self.ctx.labels)
        self._progress()
        self.report(f'{self._label("train")}: validation MAE {error} on {len(orm.load_node(self.ctx.dataset))} labels')
        return None

    def should_train_delta(self):
        """A Δ model once the expensive labels of this iteration are in and at least 3 structures have both levels."""
        config = self.config
        if config.levels.expensive is None or not self.ctx.get('expensive_dataset'):
            return False
        if self._nothing_new():
            return False
        if self.ctx.get('delta_trained_on') == self.ctx.expensive_dataset:
            return False
        if config.target == 'property':  # pairs: molecules with both labels (a failed cheap label leaves none)
            cheap = set(orm.load_node(self.ctx.dataset).base.attributes.get('structure_uuids'))
            expensive = orm.load_node(self.ctx.expensive_dataset).base.attributes.get('structure_uuids')
            return sum(uuid in cheap for uuid in expensive) >= 3
        if len(self.ctx.get('expensive_labelled_keys', [])) < 3:
            return False
        # a pair can be held out to calibrate the correction only when no element sits in a single pair
        expensive = orm.load_node(self.ctx.expensive_dataset)
        numbers, offsets = expensive.get_array('numbers'), expensive.get_array('offsets')
        counts: dict[int, int] = {}
        for row in range(len(offsets) - 1):
            for element in set(numbers[offsets[row] : offsets[row + 1]].tolist()):
                counts[element] = counts.get(element, 0) + 1
        if min(counts.values()) < 2:
            self.report('no Δ model yet: an element has its expensive label on one structure only')
            return False
        return True

    def train_delta(self):
        """``mlqm.train`` kind ``delta``: the correction (expensive - cheap) learned on the structures that have both
        levels, from the cheap and expensive datasets merged (rows paired by structure). A property campaign learns
        its objective's correction instead (``_train_property_delta``)."""
        config = self.config
        if config.target == 'property':
            return self._train_property_delta()
        both = merge_labelled(
            part_0=orm.load_node(self.ctx.dataset), part_1=orm.load_node(self.ctx.expensive_dataset),
            metadata={'call_link_label': self._label('merge_levels')},
        )  # fmt: skip
        inputs = {
            'code': self.inputs.code,
            'dataset': both,
            'parameters': self.ctx.parameters['train_delta'],
            'metadata': {'options': self._options(), 'call_link_label': self._label('train_delta')},
        }
        self.ctx.delta_trained_on = self.ctx.expensive_dataset
        self.report(f'{self._label("train_delta")}: Δ {config.levels.expensive.level} - {config.levels.cheap.level}')
        return ToContext(delta_training=self.submit(TrainCalculation, **inputs))

    def _train_property_delta(self):
        """``mlqm.train`` kind ``property`` on ``delta_<objective>`` (expensive - cheap) of the molecules labelled at
        both levels (``objective_pairs``), a seeded fifth of the pairs held out as its validation and calibration set:
        the screening then ranks by the cheap model + this correction."""
        config = self.config
        pairs = objective_pairs(
            orm.load_node(self.ctx.dataset), orm.load_node(self.ctx.expensive_dataset),
            orm.Dict({'objective': config.objective, 'holdout_fraction': 0.2,
                      'seed': config.active_learning.seed + self.ctx.iteration}),
            metadata={'call_link_label': self._label('delta_pairs')},
        )  # fmt: skip
        self.ctx.delta_pairs = pairs['summary'].pk
        inputs = {
            'code': self.inputs.code,
            'dataset': pairs['training'],
            'validation_dataset': pairs['holdout'],
            'parameters': self.ctx.parameters['train_delta'],
            'metadata': {'options': self._options(), 'call_link_label': self._label('train_delta')},
        }
        self.ctx.delta_trained_on = self.ctx.expensive_dataset
        self.report(
            f'{self._label("train_delta")}: Δ {config.objective} {config.levels.expensive.level} - '
            f'{config.levels.cheap.level} on {pairs["summary"]["training"]} pairs ({pairs["summary"]["holdout"]} held out)'
        )
        return ToContext(delta_training=self.submit(TrainCalculation, **inputs))

    def inspect_train_delta(self):
        node = self.ctx.delta_training
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_TRAINING_FAILED.format(iteration=self.ctx.iteration, message=node.exit_message)
        self.ctx.delta_model = node.outputs.model.pk
        if self.config.target == 'property':
            pairs = orm.load_node(self.ctx.delta_pairs).get_dict()
            validation = node.outputs.metrics.get_dict().get('validation') or {}
            record = {
                'model_uuid': node.outputs.model.uuid, 'pairs': pairs['pairs'], 'objective': pairs['objective'],
                'holdout': pairs['holdout'], 'holdout_mae': validation.get('property_mae'),
                'base_only_mae': pairs['base_only_mae'], 'shift_mae': pairs['shift_mae'], 'unit': 'eV',
            }  # fmt: skip
            if self.ctx.history:
                self.ctx.history[-1]['delta'] = record
            self.report(
                f'{self._label("train_delta")}: held-out MAE of cheap + Δ {record["holdout_mae"]} eV (cheap alone '
                f'{record["base_only_mae"]:.4g}, + mean shift {record["shift_mae"]:.4g}) on {record["holdout"]} pairs'
            )
            return None
        holdout = node.outputs.metrics.get_dict().get('holdout') or {}
        if self.ctx.history:
            self.ctx.history[-1]['delta'] = {
                'model_uuid': node.outputs.model.uuid, 'pairs': node.outputs.metrics.get_dict().get('num_pairs'),
                'holdout_energy_mae': holdout.get('energy_mae'), 'base_only_energy_mae': holdout.get('base_only_energy_mae'),
                'shift_energy_mae': holdout.get('shift_energy_mae'), 'unit': 'eV',
            }  # fmt: skip
        self.report(f'{self._label("train_delta")}: held-out Δ energy MAE {holdout.get("energy_mae")} eV')
        return None

    def should_explore(self):
        return self.config.target == 'potential' and self.config.active_learning.explore is not None

    def explore(self):
        """ML-MD on the current committee from ``explore.starts`` labelled structures (seeded draw), each trajectory
        stopped at the committee's adaptive lower trust level; the stops become candidates of this iteration."""
        import numpy as np

        config = self.config
        seed = config.active_learning.seed + self.ctx.iteration
        labelled = sorted(self.ctx.labelled_keys)
        count = min(config.active_learning.explore.starts, len(labelled))
        starts = sorted(labelled[i] for i in np.random.default_rng(seed).choice(len(labelled), count, replace=False))
        outputs = exploration_parameters(
            orm.load_node(self.ctx.model), orm.load_node(self.ctx.validation_dataset),
            orm.Dict({'explore': config.active_learning.explore.job_settings(), 'trust': config.active_learning.trust.model_dump(),
                      'target': config.target, 'seed': seed}),
            metadata={'call_link_label': self._label('explore_parameters')},
        )  # fmt: skip
        parameters = outputs['parameters']
        inputs = {
            'code': self.inputs.code,
            'model': orm.load_node(self.ctx.model),
            'structures': {key: orm.load_node(self.ctx.candidates[key]) for key in starts},
            'parameters': parameters,
            'metadata': {'options': self._options(), 'call_link_label': self._label('explore')},
        }
        self.report(
            f'{self._label("explore")}: ML-MD from {count} labelled structures, stop at max force spread '
            f'{parameters["explore"]["threshold"]:.4g} eV/Å'
        )
        return ToContext(exploration=self.submit(PredictCalculation, **inputs))

    def inspect_explore(self):
        node = self.ctx.exploration
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_PREDICTION_FAILED.format(iteration=self.ctx.iteration, message=node.exit_message)
        found = dict(node.outputs.candidates) if 'candidates' in node.outputs else {}
        for label, structure in sorted(found.items()):
            self.ctx.candidates[f'{self._label("md")}_{label.rsplit("_", 1)[-1]}'] = structure.pk
        reasons = [row['reason'] for row in node.outputs.explore['trajectories']]
        self.report(
            f'{self._label("explore")}: {len(found)} candidates from {len(reasons)} trajectories '
            f'({", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons)))})'
        )
        return None

    def _unlabelled(self) -> list[str]:
        taken = set(self.ctx.labelled_keys) | set(self.ctx.validation_keys)
        return sorted(key for key in self.ctx.candidates if key not in taken)

    def predict(self):
        keys = self._unlabelled()
        inputs = {
            'code': self.inputs.code,
            'model': orm.load_node(self.ctx.model),
            'structures': {key: orm.load_node(self.ctx.candidates[key]) for key in keys},
            'parameters': self.ctx.parameters['predict'],
            'metadata': {'options': self._options(), 'call_link_label': self._label('predict')},
        }
        return ToContext(prediction=self.submit(PredictCalculation, **inputs))

    def select(self):
        node = self.ctx.prediction
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_PREDICTION_FAILED.format(iteration=self.ctx.iteration, message=node.exit_message)
        config = self.config
        cheap = config.levels.cheap
        budget = None
        if cheap.max_labels:
            budget = max(cheap.max_labels - self.ctx.labels[cheap.level], 0)
        parameters = orm.Dict(
            {
                'target': config.target,
                'batch_size': config.active_learning.batch_size,
                'diversity': config.active_learning.diversity,
                'trust': config.active_learning.trust.model_dump(),
                'objective': config.objective,
                'budget': budget,
                'seed': config.active_learning.seed + self.ctx.iteration,
            }
        )
        keys = self._unlabelled()
        candidates = {key: orm.load_node(self.ctx.candidates[key]) for key in keys}
        selection = select_next_batch(
            orm.load_node(self.ctx.model), orm.load_node(self.ctx.dataset), parameters,
            validation=orm.load_node(self.ctx.validation_dataset), predictions=node.outputs.predictions, **candidates, metadata={'call_link_label': self._label('select')},
        )  # fmt: skip
        chosen = [row['key'] for row in selection['chosen']]
        self.ctx.selected_keys = chosen
        self.ctx.history.append(
            {
                'iteration': self.ctx.iteration,
                'selection_uuid': selection.uuid,
                'model_uuid': orm.load_node(self.ctx.model).uuid,
                'selected': len(chosen),
                'mean_uncertainty': selection['mean_uncertainty'],
                'trust': selection['trust'],
                'counts': selection['counts'],
                'labels': dict(self.ctx.labels),
                'validation_error': self.ctx.current_error,  # replaced by the retrained model's, if there are labels
            }
        )
        self.report(
            f'{self._label("select")}: {len(chosen)} chosen of {len(keys)} candidates ({selection["counts"]}), '
            f'trust window {selection["trust"]}'
        )
        return None

    def label(self):
        chosen = self.ctx.selected_keys
        if not chosen:
            return None
        return ToContext(labelling=self._reference(chosen, 'cheap', self._label('reference')))

    def label_expensive(self):
        """The expensive level for ``ceil(expensive_fraction x batch_size)`` cheap-labelled structures (this batch's
        or earlier ones) chosen by ``select_expensive``: the Δ model's correction spread with diversity, farthest-point
        sampling before the first Δ model; within ``levels.expensive.max_labels`` (after the cheap chain: one chain at
        a time)."""
        self.ctx.expensive_keys = []
        expensive = self.config.levels.expensive
        chosen = self.ctx.selected_keys
        if expensive is None or not chosen:
            return None
        left = (expensive.max_labels or 10**9) - self.ctx.labels[expensive.level]
        per_iteration = math.ceil(self.config.active_learning.expensive_fraction * self.config.active_learning.batch_size)
        count = min(per_iteration, max(left, 0))
        done = set(self.ctx.get('expensive_labelled_keys', []))
        keys = sorted(key for key in [*self.ctx.labelled_keys, *chosen] if key not in done)
        if not count or not keys:
            return None
        inputs = {key: orm.load_node(self.ctx.candidates[key]) for key in keys}
        if self.ctx.get('expensive_dataset'):
            inputs['expensive'] = orm.load_node(self.ctx.expensive_dataset)
        if self.ctx.get('delta_model'):
            inputs['model'] = orm.load_node(self.ctx.delta_model)
        parameters = orm.Dict(
            {'count': count, 'diversity': self.config.active_learning.diversity,
             'seed': self.config.active_learning.seed + self.ctx.iteration}
        )  # fmt: skip
        selection = select_expensive(parameters, **inputs, metadata={'call_link_label': self._label('select_expensive')})
        picked = [row['key'] for row in selection['chosen']]
        if not picked:
            return None
        self.ctx.expensive_keys = picked
        self.report(
            f'{self._label("select_expensive")}: {len(picked)} of {len(keys)} cheap-labelled structures for '
            f'{expensive.level} (signal: {selection["signal"] or "farthest-point, no Δ model yet"})'
        )
        return ToContext(expensive_labelling=self._reference(picked, 'expensive', self._label('expensive')))

    def merge(self):
        if not self.ctx.selected_keys:
            return None
        new, failure = self._labelled_dataset(self.ctx.labelling, self._label('labels'))
        if failure:
            return failure
        merged = merge_labelled(
            part_0=orm.load_node(self.ctx.dataset), part_1=new, metadata={'call_link_label': self._label('merge')}
        )
        self.ctx.dataset = merged.pk
        self.ctx.labelled_keys = list(self.ctx.labelled_keys) + list(self.ctx.selected_keys)
        self.ctx.labels[self.config.levels.cheap.level] += len(new)
        if self.ctx.get('expensive_keys'):
            node = self.ctx.expensive_labelling
            if 'dataset' in node.outputs:
                level = self.config.levels.expensive.level
                self.ctx.labels[level] += len(node.outputs.dataset)
                labelled, _ = self._labelled_dataset(node, self._label('expensive_labels'))  # + the objective
                if self.ctx.get('expensive_dataset'):
                    node_out = merge_labelled(
                        part_0=orm.load_node(self.ctx.expensive_dataset), part_1=labelled,
                        metadata={'call_link_label': self._label('merge_expensive')},
                    )  # fmt: skip
                else:
                    node_out = labelled
                self.ctx.expensive_dataset = node_out.pk
                labelled = set(node.outputs.dataset.base.attributes.get('structure_uuids'))
                done = [key for key in self.ctx.expensive_keys if orm.load_node(self.ctx.candidates[key]).uuid in labelled]
                self.ctx.expensive_labelled_keys = list(self.ctx.get('expensive_labelled_keys', [])) + done
            self.ctx.expensive_keys = []
        self.ctx.history[-1]['labels'] = dict(self.ctx.labels)
        return None

    def _screening_keys(self) -> list[str]:
        taken = set(self.ctx.labelled_keys) | set(self.ctx.validation_keys)
        return sorted(key for key in self.ctx.molecules if key not in taken)

    def should_screen(self):
        if self.config.screening is None:
            return False
        if not self._screening_keys():
            self.report('screening skipped: active learning labelled every molecule of the library, none is left to rank')
            return False
        return True

    def screen_predict(self):
        self._stage('screening')
        keys = self._screening_keys()
        self.ctx.screen_keys = keys
        inputs = {
            'code': self.inputs.code,
            'model': orm.load_node(self.ctx.model),
            'structures': {key: orm.load_node(self.ctx.molecules[key]) for key in keys},
            'parameters': self.ctx.parameters['predict'],
            'metadata': {'options': self._options(), 'call_link_label': 'screening_predict'},
        }
        return ToContext(screen_prediction=self.submit(PredictCalculation, **inputs))

    def has_property_delta(self):
        return self.config.target == 'property' and bool(self.ctx.get('delta_model'))

    def screen_predict_delta(self):
        """The Δ model's correction for every molecule of the campaign (screened and labelled): screening ranks and
        verifies on cheap + Δ where a Δ model exists."""
        keys = sorted(self.ctx.molecules)
        self.ctx.delta_keys = keys
        inputs = {
            'code': self.inputs.code,
            'model': orm.load_node(self.ctx.delta_model),
            'structures': {key: orm.load_node(self.ctx.molecules[key]) for key in keys},
            'parameters': self.ctx.parameters['predict'],
            'metadata': {'options': self._options(), 'call_link_label': 'screening_predict_delta'},
        }
        return ToContext(screen_delta_prediction=self.submit(PredictCalculation, **inputs))

    def screen_verify(self):
        node = self.ctx.screen_prediction
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_PREDICTION_FAILED.format(iteration='screening', message=node.exit_message)
        screening = self.config.screening
        keys = orm.List([[key, orm.load_node(self.ctx.molecules[key]).uuid] for key in self.ctx.screen_keys])
        extra = {}
        if self.has_property_delta():
            delta = self.ctx.screen_delta_prediction
            if not delta.is_finished_ok:
                return self.exit_codes.ERROR_PREDICTION_FAILED.format(iteration='screening', message=delta.exit_message)
            names = orm.List([[key, orm.load_node(self.ctx.molecules[key]).uuid] for key in self.ctx.delta_keys])
            correction = delta_corrections(
                delta.outputs.predictions, names, metadata={'call_link_label': 'screening_corrections'}
            )
            self.ctx.screen_correction = correction.pk
            extra['correction'] = correction
        ranking = rank_library(
            node.outputs.predictions, orm.Dict(screening.model_dump()), keys, **extra,
            metadata={'call_link_label': 'ranking'},
        )  # fmt: skip
        self.ctx.ranking = ranking.pk
        return ToContext(verification=self._reference(ranking['top'], 'cheap', 'screening_reference'))

    def screen_summarise(self):
        verified, failure = self._labelled_dataset(self.ctx.verification, 'screening')
        if failure:
            return failure
        labelled = merge_labelled(
            part_0=orm.load_node(self.ctx.dataset), part_1=orm.load_node(self.ctx.validation_dataset),
            metadata={'call_link_label': 'screening_labelled'},
        )  # fmt: skip
        names = orm.List([[key, orm.load_node(pk).uuid] for key, pk in sorted(self.ctx.molecules.items())])
        extra = {}
        if self.ctx.get('screen_correction'):
            extra['correction'] = orm.load_node(self.ctx.screen_correction)
        if self.ctx.get('expensive_dataset') and self.config.target == 'property':
            extra['expensive'] = orm.load_node(self.ctx.expensive_dataset)
        summary = screening_summary(
            orm.load_node(self.ctx.ranking), verified, orm.Str(self.config.objective),
            orm.Dict(self.config.screening.model_dump()), labelled=labelled, names=names, **extra,
            metadata={'call_link_label': 'screening_summary'},
        )  # fmt: skip
        self.ctx.labels[self.config.levels.cheap.level] += len(verified)
        self.ctx.screening = summary.pk
        self.out('screening', summary)
        self.report(f'screening: verified {len(summary["verified"])}, MAE {summary["mae"]} eV, {hit_line(summary)}')
        return None

    def make_report(self):
        self._stage('report')
        nodes = {'model': orm.load_node(self.ctx.model), 'dataset': orm.load_node(self.ctx.dataset)}
        if self.ctx.get('screening'):
            nodes['screening'] = orm.load_node(self.ctx.screening)
        if self.ctx.get('routing_record'):
            nodes['routing'] = orm.load_node(self.ctx.routing_record)
        if self.ctx.get('multireference_record'):
            nodes['multireference'] = orm.load_node(self.ctx.multireference_record)
        for key, pk in sorted(self.ctx.get('multireference_results', {}).items()):
            self.out(f'multireference.{key}', orm.load_node(pk))
        history = [{'iteration': 0, 'labels': self.ctx.initial_labels, 'validation_error': self.ctx.initial_error}]
        history += list(self.ctx.history)
        history[-1]['stop_reason'] = self.ctx.stop_reason
        history[-1]['labels_total'] = dict(self.ctx.labels)
        report = campaign_report(orm.List(history), **nodes, metadata={'call_link_label': 'campaign_report'})
        self.out('dataset', nodes['dataset'])
        self.out('model', nodes['model'])
        if self.ctx.get('expensive_dataset'):
            self.out('expensive_dataset', orm.load_node(self.ctx.expensive_dataset))
        if self.ctx.get('delta_model'):
            self.out('delta_model', orm.load_node(self.ctx.delta_model))
        self.out('report', report)
        self._stage('finished')
