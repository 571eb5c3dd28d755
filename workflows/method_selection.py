"""``MethodSelectionWorkChain`` (``mlqm.method_selection``): route each molecule to the level of theory it needs.

1. Features: one cheap ``mlqm.features.batch`` job per batch of molecules (mean-field stability, UHF natural
   orbitals, FOD, MP2 amplitudes and natural orbitals, second-order singles, CIS/TDHF) on the geometries as given.
2. Routing: one :func:`route_molecule` calcfunction per molecule, whose inputs are the classifier (``ModelData``), the
   features Dict it read and the routing rule; its output Dict records P(MR), the threshold, the route and the reason.
3. Calibration (optional): frozen-core CCSD(T) diagnostics (``mlqm.pyscf.batch``) for the molecules the classifier is
   least sure about, labelled by :func:`label_from_diagnostics`, then :func:`retrain_classifier` on the training set
   plus the new rows, and routing again; repeated until the cross-validated MR recall reaches its target or the
   CCSD(T) budget is spent.

Decisions are queryable: every ``route_molecule`` node has the molecule's features job result as input, e.g.
``QueryBuilder().append(CalcFunctionNode, filters={'attributes.function_name': 'route_molecule'})``.
"""

from __future__ import annotations

import json
import math
import typing as t

from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_
from aiida.plugins import CalculationFactory, DataFactory

from ..exit_codes import declare
from .protocol import ProtocolMixin

FeaturesBatchCalculation = CalculationFactory('mlqm.features.batch')
PyscfBatchCalculation = CalculationFactory('mlqm.pyscf.batch')
CasscfBatchCalculation = CalculationFactory('mlqm.casscf.batch')
ModelData = DataFactory('mlqm.model')

ATOM_MULTIPLICITIES = {'H': 2, 'He': 1, 'Li': 2, 'Be': 1, 'B': 2, 'C': 3, 'N': 4, 'O': 3, 'F': 2, 'Ne': 1,
                       'Na': 2, 'Mg': 1, 'Al': 2, 'Si': 3, 'P': 4, 'S': 3, 'Cl': 2, 'Ar': 1}  # fmt: skip
DIAGNOSTIC_PARAMETERS = {
    'method': 'ccsd(t)',
    'basis': 'cc-pvdz',
    'frozen_core': True,
    'diagnostics': True,
}


def classifier_features_parameters(classifier) -> dict:
    """The features-job parameters a classifier was trained with (basis and options), for its features jobs."""
    hyperparameters = classifier.base.attributes.get('hyperparameters', {})
    trained = hyperparameters.get('features_parameters') or {}
    parameters = {}
    basis = trained.get('basis') or hyperparameters.get('feature_basis')
    if basis:
        parameters['basis'] = basis
    if trained.get('features'):
        parameters['features'] = dict(trained['features'])
    return parameters


def _rule(node: orm.Dict):
    from ..models.method_selection import RoutingRule

    return RoutingRule.model_validate(node.get_dict())


def validate_inputs(inputs, _):
    """Structures present, feature parameters and routing rule valid, classifier a method-selection classifier."""
    from pydantic import ValidationError

    from ..calcjobs.features import validate_feature_parameters
    from ..chemistry.level import ParameterError

    structures = inputs.get('structures', {})
    if not structures:
        return 'no structures given: pass at least one StructureData in the `structures` namespace'
    elements = {symbol for structure in structures.values() for symbol in structure.get_symbols_set()}
    try:
        features = validate_feature_parameters(inputs['features_parameters'].get_dict(), elements)
    except ParameterError as exception:
        return f'invalid `features_parameters`: {exception}'
    try:
        rule = _rule(inputs['routing'])
    except ValidationError as exception:
        return f'invalid `routing`: {exception}'
    if rule.run_casscf:
        from ..calcjobs.features import validate_casscf_parameters

        try:
            validate_casscf_parameters(rule.casscf_parameters(), elements)
        except ParameterError as exception:
            return f'invalid `routing` CASSCF settings (casscf_basis, casscf_options): {exception}'
    classifier = inputs['classifier']
    if classifier.kind != 'classifier' or 'operating_threshold' not in classifier.metrics:
        return '`classifier` must be a method-selection classifier (ModelData of kind classifier with an operating_threshold)'
    basis = classifier.base.attributes.get('hyperparameters', {}).get('feature_basis')
    if basis is not None and basis.lower() != features.basis.lower():
        return f'the classifier was trained on features at {basis}; set features_parameters.basis to {basis!r}'
    calibration = inputs.get('calibration', {})
    if calibration.get('enabled') and calibration['enabled'].value and 'training_set' not in calibration:
        return 'calibration needs `calibration.training_set` (the Dict the classifier was trained on)'
    return None


@calcfunction
def route_molecule(classifier, features: orm.Dict, routing: orm.Dict) -> orm.Dict:
    """P(MR) of one molecule from its features job result, and the route the rule gives it."""
    from ..models.method_selection import mr_probability, route

    model = classifier.load_model()
    values = features.get_dict()['features']
    p_mr = float(mr_probability(model, [values])[0])
    decision = route(p_mr, values, _rule(routing), classifier.metrics)
    decision['classifier_uuid'] = classifier.uuid
    decision['features_used'] = list(model.feature_names)
    return orm.Dict(decision)


@calcfunction
def label_from_diagnostics(result: orm.Dict, atoms: orm.Dict, symbols: orm.List, criteria: orm.Dict) -> orm.Dict:
    """T1, D1, (T) share, %TAE[(T)] and the MR label of one CCSD(T) diagnostic result (energies in eV in, as stored)."""
    from ..models.method_selection import MultireferenceCriteria, ccsd_t_diagnostics
    from ..units import HARTREE_TO_EV

    def hartree(data: dict) -> dict:
        out = dict(data)
        for key in ('total_energy', 'ccsd_correlation_energy', 'ccsd_t_correction'):
            if data.get(key) is not None:
                out[key] = data[key] / HARTREE_TO_EV
        return out

    atom_energies = {element: hartree(value) for element, value in atoms.get_dict().items()}
    diagnostics = ccsd_t_diagnostics(hartree(result.get_dict()), symbols.get_list(), atom_energies)
    rule = MultireferenceCriteria.model_validate(criteria.get_dict())
    diagnostics['multireference'] = rule.is_multireference(diagnostics)
    diagnostics['reasons'] = rule.reasons(diagnostics)
    return orm.Dict(diagnostics)


@calcfunction
def retrain_classifier(training_set: orm.Dict, settings: orm.Dict, **new_rows: orm.Dict) -> dict:
    """The classifier retrained on ``training_set`` plus ``new_rows`` (each ``{'features', 'label', 'group'}``).

    Returns ``classifier`` (ModelData) and ``training_set`` (the enlarged Dict), so the next round can grow it again.
    """
    rows = dict(training_set.get_dict())
    for key in sorted(new_rows):
        row = new_rows[key].get_dict()
        rows['features'] = [*rows['features'], row['features']]
        rows['labels'] = [*rows['labels'], int(row['label'])]
        rows['groups'] = [*rows['groups'], row['group']]
        rows['families'] = [*rows.get('families', []), row.get('family', 'calibration')]
    model = train_from_training_set(rows, settings.get_dict())
    return {'classifier': model, 'training_set': orm.Dict(rows)}


def train_from_training_set(rows: dict, settings: dict):
    """Train the MR classifier from a training-set dictionary and return an unstored ``ModelData``."""
    import tempfile

    from ..models.method_selection import ClassifierSettings, train_mr_classifier

    held_out = settings.pop('held_out_family', None) if settings else None
    classifier = train_mr_classifier(
        rows['features'],
        rows['labels'],
        rows['groups'],
        families=rows.get('families'),
        held_out_family=held_out,
        settings=ClassifierSettings.model_validate(settings or {}),
        feature_names=rows['feature_names'],
        log=None,
    )
    classifier.hyperparameters['feature_basis'] = rows.get('basis', 'cc-pvdz')
    classifier.hyperparameters['features_parameters'] = rows.get('features_parameters') or {'basis': rows.get('basis')}
    with tempfile.TemporaryDirectory(prefix='mlqm-classifier-') as folder:
        classifier.save(folder)
        return ModelData.from_directory(folder)


@calcfunction
def calibration_row(features: orm.Dict, label: orm.Dict, group: orm.Str) -> orm.Dict:
    """One training row: the features job's values and the CCSD(T) label of the same molecule."""
    return orm.Dict({'features': features.get_dict()['features'], 'label': int(label['multireference']),
                     'group': group.value, 'family': 'calibration'})  # fmt: skip


@calcfunction
def collect_decisions(**decisions: orm.Dict) -> orm.Dict:
    """All decisions in one Dict keyed by molecule (what ``mlqm route --json`` prints)."""
    return orm.Dict({key: node.get_dict() for key, node in decisions.items()})


class MethodSelectionWorkChain(ProtocolMixin, WorkChain):
    """Features job per batch -> P(MR) per molecule -> route; optional calibration with CCSD(T) diagnostics."""

    _protocol_name = 'method_selection'
    _open_override_keys = ('features_parameters', 'routing', 'calibration.criteria', 'calibration.settings')

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            help='The molecules on their given geometries (used as they are), keyed by link-label-safe names.',
        )
        spec.input('code', valid_type=orm.AbstractCode, help='Python with PySCF on the computer that runs the jobs.')
        spec.input('classifier', valid_type=ModelData, help='The MR classifier (`mlqm setup --method-selection`).')
        spec.input(
            'features_parameters',
            valid_type=orm.Dict,
            default=lambda: orm.Dict(cls.get_default_input('features_parameters')),
            help='Parameters of the features jobs (FeatureJobParameters); the basis must be the classifier\'s.',
        )
        spec.input(
            'routing',
            valid_type=orm.Dict,
            default=lambda: orm.Dict(cls.get_default_input('routing')),
            help='RoutingRule: mr_threshold, multireference_action (casscf/flag/exclude), target_accuracy_kcal_mol, levels.',
        )
        spec.input(
            'batch_size',
            valid_type=orm.Int,
            default=lambda: orm.Int(cls.get_default_input('batch_size')),
            serializer=orm.to_aiida_type,
            help='Most molecules in one features job.',
        )
        spec.input(
            'options',
            valid_type=orm.Dict,
            required=False,
            serializer=orm.to_aiida_type,
            help='`metadata.options` for every job.',
        )
        spec.input('calibration.enabled', valid_type=orm.Bool, default=lambda: orm.Bool(cls.get_default_input('calibration.enabled')), serializer=orm.to_aiida_type,
                   help='Run CCSD(T) diagnostics for the least certain molecules and retrain.')  # fmt: skip
        spec.input('calibration.training_set', valid_type=orm.Dict, required=False,
                   help='The training-set Dict of the classifier (its creator\'s input), grown by calibration.')  # fmt: skip
        spec.input('calibration.budget', valid_type=orm.Int, default=lambda: orm.Int(cls.get_default_input('calibration.budget')), serializer=orm.to_aiida_type,
                   help='Most CCSD(T) diagnostic runs in all rounds together.')  # fmt: skip
        spec.input('calibration.per_round', valid_type=orm.Int, default=lambda: orm.Int(cls.get_default_input('calibration.per_round')), serializer=orm.to_aiida_type,
                   help='CCSD(T) diagnostic runs per round.')  # fmt: skip
        spec.input('calibration.band', valid_type=orm.List, required=False,
                   help="[low, high] P(MR) band counted as uncertain [default: the classifier's operating and "
                   'confident thresholds].')  # fmt: skip
        spec.input('calibration.criteria', valid_type=orm.Dict,
                   default=lambda: orm.Dict(cls.get_default_input('calibration.criteria')),
                   help='MultireferenceCriteria thresholds (t1, d1, pct_tae_t).')  # fmt: skip
        spec.input('calibration.settings', valid_type=orm.Dict,
                   default=lambda: orm.Dict(cls.get_default_input('calibration.settings')),
                   help='ClassifierSettings for retraining (recall_target, folds, ...).')  # fmt: skip
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            cls.run_features,
            cls.inspect_features,
            cls.route,
            while_(cls.should_calibrate)(
                cls.run_diagnostics,
                cls.retrain,
                cls.route,
            ),
            if_(cls.should_run_casscf)(
                cls.run_casscf,
                cls.inspect_casscf,
            ),
            cls.finalize,
        )
        spec.output_namespace('decisions', valid_type=orm.Dict, dynamic=True, help='Routing decision per molecule.')
        spec.output('summary', valid_type=orm.Dict, help='All decisions keyed by molecule.')
        spec.output('failed', valid_type=orm.Dict, required=False, help='Molecules whose features job failed, why.')
        spec.output('classifier', valid_type=ModelData, required=False, help='The classifier after calibration.')
        spec.output_namespace('diagnostics', valid_type=orm.Dict, dynamic=True, required=False,
                              help='CCSD(T) diagnostics and MR label of the molecules calibration computed.')  # fmt: skip
        spec.output_namespace('casscf', valid_type=orm.Dict, dynamic=True, required=False,
                              help='CASSCF result (energy, active space, occupations) of each molecule routed to '
                              'casscf, with routing.run_casscf.')  # fmt: skip
        declare(
            spec,
            'ERROR_ALL_STRUCTURES_FAILED',
            'WARNING_SOME_STRUCTURES_FAILED',
            'ERROR_CASSCF_FAILED',
            ERROR_ALL_STRUCTURES_FAILED='The features job failed for every molecule: {summary}',
            WARNING_SOME_STRUCTURES_FAILED='{failed} of {total} molecules have no features.',
        )

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structures: t.Mapping[str, orm.StructureData],
        protocol: str | None = None,
        overrides: t.Mapping[str, t.Any] | None = None,
        options: t.Mapping[str, t.Any] | None = None,
        classifier: ModelData | None = None,
    ):
        """A builder with the protocol's inputs and ``overrides`` merged in (unknown keys raise ``ProtocolError``).

        :param overrides: nested as the ports, e.g. ``{'routing': {'mr_threshold': 0.3}, 'batch_size': 10}``.
        :param classifier: the MR classifier; default: the shipped one (imported into the profile on first use).
        """
        from .method_selection_training import import_default

        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.code = code
        builder.structures = dict(structures)
        builder.classifier = classifier if classifier is not None else import_default()
        # the features job as the classifier was trained on it, under what the protocol or the caller changes
        given = dict(inputs['features_parameters'])
        trained = classifier_features_parameters(builder.classifier)
        if 'features' in trained and 'features' in given:
            given['features'] = {**trained['features'], **given['features']}
        builder.features_parameters = orm.Dict({**trained, **given})
        builder.routing = orm.Dict(inputs['routing'])
        builder.batch_size = orm.Int(inputs['batch_size'])
        calibration = inputs['calibration']
        builder.calibration = {
            'enabled': orm.Bool(calibration['enabled']),
            'budget': orm.Int(calibration['budget']),
            'per_round': orm.Int(calibration['per_round']),
            'criteria': orm.Dict(calibration['criteria']),
            'settings': orm.Dict(calibration['settings']),
        }
        if options:
            builder.options = orm.Dict(dict(options))
        return builder

    def setup(self):
        keys = sorted(self.inputs.structures)
        size = self.inputs.batch_size.value
        self.ctx.batches = [keys[i : i + size] for i in range(0, len(keys), size)]
        self.ctx.features = {}  # key -> pk of its features Dict
        self.ctx.failed = {}
        self.ctx.decisions = {}  # key -> pk of the latest decision
        self.ctx.diagnostics = {}  # key -> pk of label Dict
        self.ctx.classifier = self.inputs.classifier.pk
        self.ctx.training_set = self.inputs.calibration.training_set.pk if 'training_set' in self.inputs.calibration else None
        self.ctx.cc_runs = 0
        self.ctx.round = 0

    def _options(self) -> dict:
        return self.inputs.options.get_dict() if 'options' in self.inputs else {}

    def run_features(self):
        jobs = {}
        for index, keys in enumerate(self.ctx.batches):
            inputs = {
                'code': self.inputs.code,
                'parameters': self.inputs.features_parameters,
                'structures': {key: self.inputs.structures[key] for key in keys},
                'metadata': {'options': self._options(), 'call_link_label': f'features_{index:02d}'},
            }
            node = self.submit(FeaturesBatchCalculation, **inputs)
            self.report(f'submitted {node.process_label}<{node.pk}> with {len(keys)} molecules')
            jobs[f'features_{index:02d}'] = node
        return ToContext(**jobs)

    def inspect_features(self):
        for index, keys in enumerate(self.ctx.batches):
            node = self.ctx[f'features_{index:02d}']
            outputs = node.outputs.parameters if 'parameters' in node.outputs else {}
            failures = node.outputs.failures.get_dict() if 'failures' in node.outputs else {}
            for key in keys:
                if key in outputs:
                    self.ctx.features[key] = outputs[key].pk
                else:
                    failure = failures.get(key, {'status': 'job_failed', 'message': node.exit_message or 'no result'})
                    self.ctx.failed[key] = {'status': failure['status'], 'message': failure['message']}
        if not self.ctx.features:
            summary = '; '.join(f'{k}: {v["message"]}' for k, v in list(self.ctx.failed.items())[:5])
            return self.exit_codes.ERROR_ALL_STRUCTURES_FAILED.format(summary=summary)
        return None

    def route(self):
        classifier = orm.load_node(self.ctx.classifier)
        for key, pk in sorted(self.ctx.features.items()):
            decision = route_molecule(
                classifier,
                orm.load_node(pk),
                self.inputs.routing,
                metadata={'call_link_label': f'route_{key}'},
            )
            self.ctx.decisions[key] = decision.pk
        routed = [orm.load_node(pk).get_dict() for pk in self.ctx.decisions.values()]
        mr = sum(1 for d in routed if d['route'] == 'multireference')
        self.report(f'round {self.ctx.round}: {mr} of {len(routed)} molecules routed to the multireference path')

    # -- calibration ---------------------------------------------------------------------------------------------

    def _uncertain(self) -> list[str]:
        """Molecules without diagnostics whose P(MR) lies between the operating and the confident threshold, the
        ones nearest the operating threshold first."""
        classifier = orm.load_node(self.ctx.classifier)
        if 'band' in self.inputs.calibration:
            low, high = self.inputs.calibration.band.get_list()
        else:
            low = classifier.metrics['operating_threshold']
            high = classifier.metrics.get('confident_threshold', 1.0)
        candidates = []
        for key, pk in self.ctx.decisions.items():
            p = orm.load_node(pk)['p_mr']
            if key not in self.ctx.diagnostics and low <= p <= high:
                candidates.append((abs(math.log((p + 1e-6) / (low + 1e-6))), key))
        return [key for _, key in sorted(candidates)]

    def should_calibrate(self):
        calibration = self.inputs.calibration
        if not calibration.enabled.value:
            return False
        classifier = orm.load_node(self.ctx.classifier)
        from ..models.method_selection import ClassifierSettings

        target = ClassifierSettings.model_validate(calibration.settings.get_dict()).recall_target
        recall = classifier.metrics.get('cross_validation', {}).get('policy_mr_recall', 0.0)
        if self.ctx.round > 0 and recall >= target:
            self.report(f'calibration stops: cross-validated MR recall {recall:.3f} >= {target}')
            return False
        remaining = calibration.budget.value - self.ctx.cc_runs
        if remaining <= 0:
            self.report(f'calibration stops: CCSD(T) budget of {calibration.budget.value} runs spent')
            return False
        self.ctx.chosen = self._uncertain()[: min(remaining, calibration.per_round.value)]
        if not self.ctx.chosen:
            self.report('calibration stops: no molecule is uncertain')
            return False
        return True

    def run_diagnostics(self):
        self.ctx.round += 1
        structures = {key: self.inputs.structures[key] for key in self.ctx.chosen}
        elements = sorted({symbol for s in structures.values() for symbol in s.get_symbols_set()})
        atoms = {}
        for element in elements:
            atom = orm.StructureData(cell=[[20, 0, 0], [0, 20, 0], [0, 0, 20]], pbc=(False, False, False))
            atom.append_atom(position=(0.0, 0.0, 0.0), symbols=element)
            atom.base.attributes.set('charge', 0)
            atom.base.attributes.set('multiplicity', ATOM_MULTIPLICITIES[element])
            atoms[f'atom_{element}'] = atom
        inputs = {
            'code': self.inputs.code,
            'parameters': orm.Dict(DIAGNOSTIC_PARAMETERS),
            'structures': {**structures, **atoms},
            'metadata': {'options': self._options(), 'call_link_label': f'diagnostics_{self.ctx.round:02d}'},
        }
        self.ctx.cc_runs += len(structures)
        node = self.submit(PyscfBatchCalculation, **inputs)
        self.report(f'round {self.ctx.round}: CCSD(T) diagnostics for {sorted(structures)} in {node.process_label}<{node.pk}>')
        return ToContext(diagnostics_job=node)

    def retrain(self):
        node = self.ctx.diagnostics_job
        outputs = node.outputs.parameters if 'parameters' in node.outputs else {}
        atoms = _atoms_dict(outputs)
        new_rows = {}
        for key in self.ctx.chosen:
            if key not in outputs:
                self.report(f'no CCSD(T) diagnostics for {key}: {node.exit_message}')
                continue
            label = label_from_diagnostics(
                outputs[key],
                atoms,
                orm.List(list(self.inputs.structures[key].get_ase().get_chemical_symbols())),
                self.inputs.calibration.criteria,
                metadata={'call_link_label': f'label_{key}'},
            )
            self.ctx.diagnostics[key] = label.pk
            new_rows[key] = calibration_row(
                orm.load_node(self.ctx.features[key]), label, orm.Str(f'calibration:{key}'),
                metadata={'call_link_label': f'row_{key}'},
            )  # fmt: skip
        if not new_rows:
            return
        results = retrain_classifier(
            orm.load_node(self.ctx.training_set),
            self.inputs.calibration.settings,
            **new_rows,
            metadata={'call_link_label': f'retrain_{self.ctx.round:02d}'},
        )
        self.ctx.classifier = results['classifier'].pk
        self.ctx.training_set = results['training_set'].pk
        metrics = results['classifier'].metrics.get('cross_validation', {})
        self.report(
            f'retrained on {len(results["training_set"]["labels"])} rows: CV AUC {metrics.get("roc_auc", float("nan")):.3f}, '
            f'policy MR recall {metrics.get("policy_mr_recall", float("nan")):.3f}'
        )

    # -- the multireference path ----------------------------------------------------------------------------------

    def _casscf_keys(self) -> list[str]:
        return sorted(
            key for key, pk in self.ctx.decisions.items()
            if orm.load_node(pk)['route'] == 'multireference' and orm.load_node(pk)['action'] == 'casscf'
        )  # fmt: skip

    def should_run_casscf(self):
        return _rule(self.inputs.routing).run_casscf and bool(self._casscf_keys())

    def run_casscf(self):
        keys = self._casscf_keys()
        inputs = {
            'code': self.inputs.code,
            'parameters': orm.Dict(_rule(self.inputs.routing).casscf_parameters()),
            'structures': {key: self.inputs.structures[key] for key in keys},
            'metadata': {'options': self._options(), 'call_link_label': 'casscf'},
        }
        node = self.submit(CasscfBatchCalculation, **inputs)
        self.report(f'CASSCF for the {len(keys)} molecules routed multireference in {node.process_label}<{node.pk}>')
        return ToContext(casscf_job=node)

    def inspect_casscf(self):
        node = self.ctx.casscf_job
        outputs = node.outputs.parameters if 'parameters' in node.outputs else {}
        failures = node.outputs.failures.get_dict() if 'failures' in node.outputs else {}
        self.ctx.casscf = {}
        self.ctx.casscf_failed = {}
        for key in self._casscf_keys():
            if key in outputs:
                self.ctx.casscf[key] = outputs[key].pk
            else:
                failure = failures.get(key, {'status': 'job_failed', 'message': node.exit_message or 'no result'})
                self.ctx.casscf_failed[key] = failure.get('message', failure.get('status'))

    def finalize(self):
        decisions = {key: orm.load_node(pk) for key, pk in self.ctx.decisions.items()}
        for key, node in decisions.items():
            self.out(f'decisions.{key}', node)
        for key, pk in self.ctx.diagnostics.items():
            self.out(f'diagnostics.{key}', orm.load_node(pk))
        self.out('summary', collect_decisions(**decisions, metadata={'call_link_label': 'collect_decisions'}))
        if self.ctx.classifier != self.inputs.classifier.pk:
            self.out('classifier', orm.load_node(self.ctx.classifier))
        for key, pk in self.ctx.get('casscf', {}).items():
            self.out(f'casscf.{key}', orm.load_node(pk))
        if self.ctx.failed:
            self.out('failed', _failed_dict(orm.Dict(self.ctx.failed)))
        if self.ctx.get('casscf_failed'):
            failed = self.ctx.casscf_failed
            summary = '; '.join(f'{key}: {message}' for key, message in sorted(failed.items())[:5])
            return self.exit_codes.ERROR_CASSCF_FAILED.format(count=len(failed), summary=summary)
        if self.ctx.failed:
            return self.exit_codes.WARNING_SOME_STRUCTURES_FAILED.format(
                failed=len(self.ctx.failed), total=len(self.inputs.structures)
            )
        return None


@calcfunction
def _failed_dict(failed: orm.Dict) -> orm.Dict:
    return orm.Dict(failed.get_dict())


def _atoms_dict(outputs) -> orm.Dict:
    """The free-atom CCSD(T) results of a diagnostics job as one stored Dict made from them (a calcfunction)."""
    return atom_energies(
        **{key: outputs[key] for key in outputs if key.startswith('atom_')},
        metadata={'call_link_label': 'atom_energies'},
    )


@calcfunction
def atom_energies(**atoms: orm.Dict) -> orm.Dict:
    """``{element: {'total_energy', 'ccsd_t_correction'}}`` (eV) from the free-atom results."""
    return orm.Dict({key[5:]: {k: node.get(k) for k in ('total_energy', 'ccsd_t_correction')} for key, node in atoms.items()})


def decisions_table(node) -> list[dict]:
    """``[{name, p_mr, route, action, level, diagnostics}]`` of a finished chain, sorted by key (for the CLI)."""
    summary = node.outputs.summary.get_dict()
    diagnostics = {key: value.get_dict() for key, value in node.outputs.diagnostics.items()} if 'diagnostics' in node.outputs else {}
    rows = []
    for key, structure in sorted(node.inputs.structures.items()):
        decision = summary.get(key)
        name = structure.base.attributes.get('name', None) or structure.label or structure.get_formula()
        if decision is None:
            failed = node.outputs.failed.get_dict().get(key, {}) if 'failed' in node.outputs else {}
            rows.append({'name': name, 'key': key, 'p_mr': None, 'route': 'failed', 'reason': failed.get('message'),
                         'diagnostics': diagnostics.get(key)})  # fmt: skip
            continue
        rows.append({'name': name, 'key': key, 'p_mr': decision['p_mr'], 'route': decision['route'],
                     'action': decision.get('action'), 'level': decision.get('level'),
                     'active_space': decision.get('active_space'), 'reason': decision['reason'],
                     'diagnostics': diagnostics.get(key)})  # fmt: skip
    return json.loads(json.dumps(rows))
