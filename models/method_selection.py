"""Method selection: multireference labels from CCSD(T) diagnostics, the feature vector, the MR classifier and the
routing rule. No AiiDA import: the workchain (``workflows/method_selection.py``) and the benchmark call these.

Labels. A geometry counts as multireference (MR) when any frozen-core CCSD(T) diagnostic passes its threshold:

- T1 > 0.02: Lee & Taylor, Int. J. Quantum Chem. Symp. 23, 199 (1989);
- D1 > 0.05: Janssen & Nielsen, Chem. Phys. Lett. 290, 423 (1998) (closed shells; PySCF's D1 needs an RHF reference);
- %TAE[(T)] > 10: Karton, Rabinovich & Martin, J. Chem. Phys. 125, 144108 (2006) (W4: < 5 % mild, 5-10 % moderate,
  > 10 % severe non-dynamical correlation). %TAE[(T)] = 100 TAE[(T)] / TAE[CCSD(T)], with TAE[(T)] the (T) part of the
  atomisation energy; it needs the CCSD(T) energies of the free atoms at the same level and is undefined (None) when
  the geometry is not bound (TAE <= 0), e.g. far along a dissociation curve.

The thresholds are a :class:`MultireferenceCriteria` (pydantic, unknown keys fail).

Classifier. A histogram gradient-boosting classifier (missing features, e.g. D1 of an open shell, handled natively)
inside ``CalibratedClassifierCV`` (Platt scaling), evaluated by cross-validation grouped by molecule (no molecule has
geometries on both sides), with bootstrap confidence intervals over molecules, and on a family left out of training.
The operating threshold is the highest P(MR) that keeps the out-of-fold MR recall at its target; a second, higher
threshold marks the P(MR) above which a geometry is called MR without a CCSD(T) check. Between the two the
classifier is unsure, and that band is what calibration mode sends to CCSD(T).
"""

from __future__ import annotations

import math
import typing as t

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .classifier import CalibratedClassifier
from .errors import InvalidInputError

HARTREE_TO_KCAL_MOL = 627.509474
# The order of the classifier's inputs; a feature job gives each one (None where it does not apply).
FEATURE_NAMES: tuple[str, ...] = (
    'heavy_atoms', 'electrons', 'unpaired_electrons', 'charge', 'basis_functions',
    'count_H', 'count_B', 'count_C', 'count_N', 'count_O', 'count_F', 'count_S', 'count_Cl', 'count_other',
    'nearest_neighbour_ratio_max',
    'gap_restricted', 'gap_uhf', 'stability_rhf_internal', 'stability_rhf_to_uhf', 'stability_uhf_internal',
    'e_restricted_minus_uhf', 's2_uhf', 's2_excess',
    'uno_hono', 'uno_luno', 'uno_fractional_count', 'uno_virtual_sum', 'uno_nonidempotency',
    'n_fod',
    'mp2_correlation_energy', 'mp2_correlation_per_electron', 'mp2_t2_max', 'mp2_t2_second', 'mp2_t2_norm', 'mp2_d2',
    'mp2_no_hono', 'mp2_no_luno', 'mp2_no_fractional_count', 'mp2_no_virtual_sum', 'mp2_no_nonidempotency',
    't1_second_order', 'd1_second_order', 'd2_first_update', 't1_second_order_max',
    'cis_singlet_lowest', 'cis_triplet_lowest', 'tdhf_singlet_lowest',
)  # fmt: skip
# Mean-field-only subset (what the issue measured as not enough), for comparisons.
MEAN_FIELD_FEATURES: tuple[str, ...] = tuple(
    name for name in FEATURE_NAMES if not name.startswith(('mp2_', 't1_', 'd1_', 'd2_', 'cis_', 'tdhf_'))
)


class MultireferenceCriteria(BaseModel):
    """Diagnostic thresholds above which a geometry counts as multireference (defaults: see the module docstring)."""

    model_config = ConfigDict(extra='forbid', frozen=True)

    t1: float = Field(0.02, gt=0, description='T1 diagnostic threshold (Lee & Taylor 1989)')
    d1: float = Field(0.05, gt=0, description='D1 diagnostic threshold (Janssen & Nielsen 1998)')
    pct_tae_t: float = Field(10.0, gt=0, description='%TAE[(T)] threshold in percent (Karton et al. 2006)')

    def is_multireference(self, diagnostics: t.Mapping[str, t.Any]) -> bool:
        """True when any available diagnostic passes its threshold; missing ones (None) do not count."""
        checks = (('t1_diagnostic', self.t1), ('d1_diagnostic', self.d1), ('pct_tae_t', self.pct_tae_t))
        return any(diagnostics.get(key) is not None and diagnostics[key] > limit for key, limit in checks)

    def reasons(self, diagnostics: t.Mapping[str, t.Any]) -> list[str]:
        """The diagnostics that pass their threshold, e.g. ``['D1 0.061 > 0.05']``."""
        out = []
        for key, label, limit in (('t1_diagnostic', 'T1', self.t1), ('d1_diagnostic', 'D1', self.d1),
                                  ('pct_tae_t', '%TAE[(T)]', self.pct_tae_t)):  # fmt: skip
            value = diagnostics.get(key)
            if value is not None and value > limit:
                out.append(f'{label} {value:.3g} > {limit:g}')
        return out


def ccsd_t_diagnostics(
    result: t.Mapping[str, t.Any], symbols: t.Sequence[str], atoms: t.Mapping[str, t.Mapping[str, float]] | None
) -> dict[str, float | None]:
    """T1, D1, (T) share of the correlation energy, TAE and %TAE[(T)] of one CCSD(T) result (atomic units in).

    :param result: a runner result (``total_energy``, ``ccsd_correlation_energy``, ``ccsd_t_correction``,
        ``t1_diagnostic``, ``d1_diagnostic``; Hartree).
    :param atoms: ``{element: {'total_energy', 'ccsd_t_correction'}}`` of the free atoms at the same level (Hartree);
        without it (or with an element missing) TAE and %TAE[(T)] are None.
    """
    correction = result.get('ccsd_t_correction')
    correlation = result.get('ccsd_correlation_energy')
    out: dict[str, float | None] = {
        't1_diagnostic': result.get('t1_diagnostic'),
        'd1_diagnostic': result.get('d1_diagnostic'),
        'ccsd_t_share': None,
        'tae_kcal_mol': None,
        'pct_tae_t': None,
    }
    if correction is not None and correlation is not None and correlation + correction != 0:
        out['ccsd_t_share'] = float(correction / (correlation + correction))
    if atoms and correction is not None and result.get('total_energy') is not None and all(s in atoms for s in symbols):
        atom_total = sum(atoms[s]['total_energy'] for s in symbols)
        atom_t = sum(atoms[s]['ccsd_t_correction'] for s in symbols)
        tae = atom_total - result['total_energy']
        out['tae_kcal_mol'] = float(tae * HARTREE_TO_KCAL_MOL)
        if tae > 1e-3:  # ~0.6 kcal/mol: below that the ratio is noise (or the geometry is not bound)
            out['pct_tae_t'] = float(100.0 * (atom_t - correction) / tae)
    return out


def feature_matrix(rows: t.Sequence[t.Any], names: t.Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """``(n, len(names))`` floats from rows that are mappings (by name) or sequences (already in ``names`` order);
    a missing or None feature becomes NaN (the classifier handles NaN)."""
    matrix = np.full((len(rows), len(names)), np.nan)
    for i, row in enumerate(rows):
        values = [row.get(name) for name in names] if isinstance(row, t.Mapping) else list(row)
        if len(values) != len(names):
            raise InvalidInputError(f'row {i} has {len(values)} features, expected {len(names)} ({list(names)})')
        for j, value in enumerate(values):
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                matrix[i, j] = float(value)
    return matrix


def training_rows(data: t.Mapping[str, t.Any], criteria: MultireferenceCriteria | None = None) -> dict[str, t.Any]:
    """The training set of a records file (``benchmarks/_method_selection_data.py``): one row per geometry whose
    features job and CCSD(T) run both succeeded, with its label, molecule (group), family and diagnostics.

    A geometry whose CCSD(T) did not converge has no diagnostics and is left out (counted in ``skipped``).
    """
    criteria = criteria or MultireferenceCriteria()
    rows: dict[str, t.Any] = {
        'feature_names': list(FEATURE_NAMES), 'features': [], 'labels': [], 'groups': [], 'families': [], 'keys': [],
        'diagnostics': [], 'basis': data.get('features_basis', data.get('basis', 'cc-pvdz')), 'criteria': criteria.model_dump(), 'skipped': {},
    }  # fmt: skip
    for record in data['records']:
        status = record['ccsd_t'].get('status')
        if record['features_status'] != 'ok' or status != 'ok':
            reason = f'features {record["features_status"]}' if record['features_status'] != 'ok' else f'ccsd(t) {status}'
            rows['skipped'][record['key']] = reason
            continue
        diagnostics = ccsd_t_diagnostics(record['ccsd_t'], record['symbols'], data.get('atoms'))
        rows['features'].append([record['features'].get(name) for name in FEATURE_NAMES])
        rows['labels'].append(int(criteria.is_multireference(diagnostics)))
        rows['groups'].append(record['molecule'])
        rows['families'].append(record['family'])
        rows['keys'].append(record['key'])
        rows['diagnostics'].append(diagnostics)
    # how the features were computed (basis and options): the classifier asks its features jobs for the same
    rows['features_parameters'] = data.get('features_parameters') or {'basis': rows['basis']}
    # a feature the job was told not to compute (e.g. ``tdhf: false``) is missing in every row: leave its column out,
    # so that the classifier's feature names are the ones its features job gives
    present = [any(row[i] is not None for row in rows['features']) for i in range(len(FEATURE_NAMES))]
    if rows['features'] and not all(present):
        rows['feature_names'] = [name for name, keep in zip(FEATURE_NAMES, present) if keep]
        rows['features'] = [[value for value, keep in zip(row, present) if keep] for row in rows['features']]
    return rows


class ClassifierSettings(BaseModel):
    """How the MR classifier is trained and evaluated."""

    model_config = ConfigDict(extra='forbid', frozen=True)

    recall_target: float = Field(0.95, gt=0, le=1, description='MR recall the operating threshold must keep (CV)')
    confident_precision: float = Field(
        0.95, gt=0, le=1, description='precision above which P(MR) is trusted without a CCSD(T) check'
    )
    folds: int = Field(5, ge=2, description='grouped cross-validation folds')
    bootstrap: int = Field(1000, ge=0, description='bootstrap resamples (over molecules) for confidence intervals')
    calibration_folds: int = Field(3, ge=2)
    learning_rate: float = Field(0.05, gt=0)
    max_iter: int = Field(300, ge=10)
    max_depth: int | None = Field(3, ge=1)
    min_samples_leaf: int = Field(10, ge=1)
    seed: int = 0
    threads: int = Field(1, ge=1, description='OpenMP threads of scikit-learn (more oversubscribe a shared machine)')


def _estimator(settings: ClassifierSettings):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier

    base = HistGradientBoostingClassifier(
        learning_rate=settings.learning_rate,
        max_iter=settings.max_iter,
        max_depth=settings.max_depth,
        min_samples_leaf=settings.min_samples_leaf,
        l2_regularization=1.0,
        random_state=settings.seed,
    )
    return CalibratedClassifierCV(base, method='sigmoid', cv=settings.calibration_folds)


def threshold_for_recall(probabilities: np.ndarray, labels: np.ndarray, recall: float) -> float:
    """The highest threshold ``p`` such that ``P(MR) >= p`` still finds at least ``recall`` of the MR cases."""
    positives = np.sort(probabilities[labels == 1])[::-1]
    if positives.size == 0:
        return 0.5
    needed = max(int(math.ceil(recall * positives.size)), 1)
    return float(positives[needed - 1])


def threshold_for_precision(probabilities: np.ndarray, labels: np.ndarray, precision: float) -> float:
    """The lowest threshold above which the out-of-fold precision is at least ``precision`` (1.0 when none is)."""
    order = np.argsort(-probabilities)
    hits = np.cumsum(labels[order] == 1)
    precisions = hits / np.arange(1, len(order) + 1)
    good = np.nonzero(precisions >= precision)[0]
    # the largest prefix that keeps the precision: every threshold down to there qualifies
    if good.size == 0:
        return 1.0
    return float(probabilities[order][good.max()])


def policy_figures(probabilities, labels, low: float, high: float) -> dict[str, float]:
    """Recall and CCSD(T) runs of the three-way policy: p < low single reference, p >= high MR, else run CCSD(T)."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    checked = (probabilities >= low) & (probabilities < high)
    called_mr = (probabilities >= high) | (checked & (labels == 1))  # a CCSD(T) check finds the truth
    positives = max(int((labels == 1).sum()), 1)
    return {
        'policy_mr_recall': float((called_mr & (labels == 1)).sum() / positives),
        'policy_cc_fraction': float(checked.mean()),
        'cc_runs_saved_ratio': float(len(labels) / max(int(checked.sum()), 1)),
    }


def classification_figures(probabilities, labels, threshold: float) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    predicted = probabilities >= threshold
    positives = int((labels == 1).sum())
    return {
        'roc_auc': float(roc_auc_score(labels, probabilities)) if 0 < positives < len(labels) else float('nan'),
        'mr_recall': float((predicted & (labels == 1)).sum() / max(positives, 1)),
        'mr_precision': float((predicted & (labels == 1)).sum() / max(int(predicted.sum()), 1)),
        'num': len(labels),
        'num_mr': positives,
    }


def bootstrap_auc(probabilities, labels, groups, resamples: int, seed: int) -> tuple[float, float]:
    """95 % interval of the ROC-AUC, resampling whole molecules (``groups``) with replacement."""
    from sklearn.metrics import roc_auc_score

    if resamples == 0:
        return float('nan'), float('nan')
    rng = np.random.default_rng(seed)
    probabilities, labels, groups = np.asarray(probabilities), np.asarray(labels), np.asarray(groups)
    unique = np.unique(groups)
    members = {g: np.nonzero(groups == g)[0] for g in unique}
    values = []
    for _ in range(resamples):
        chosen = np.concatenate([members[g] for g in rng.choice(unique, size=unique.size, replace=True)])
        if 0 < labels[chosen].sum() < len(chosen):
            values.append(roc_auc_score(labels[chosen], probabilities[chosen]))
    if not values:
        return float('nan'), float('nan')
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def grouped_out_of_fold(features, labels, groups, settings: ClassifierSettings) -> np.ndarray:
    """Out-of-fold P(MR), folds grouped by molecule (``StratifiedGroupKFold``)."""
    from sklearn.model_selection import StratifiedGroupKFold

    probabilities = np.full(len(labels), np.nan)
    splitter = StratifiedGroupKFold(n_splits=settings.folds, shuffle=True, random_state=settings.seed)
    for train, test in splitter.split(features, labels, groups):
        if len(np.unique(labels[train])) < 2:
            raise InvalidInputError('a cross-validation fold has a single class: add MR (or SR) molecules')
        model = _estimator(settings).fit(features[train], labels[train])
        probabilities[test] = model.predict_proba(features[test])[:, 1]
    return probabilities


def train_mr_classifier(*args, **kwargs) -> CalibratedClassifier:
    """:func:`_train_mr_classifier` with scikit-learn's OpenMP threads capped at ``settings.threads``.

    Histogram gradient boosting on a hundred rows is ~30x slower with one thread per core on a loaded 2-core machine
    than with one thread in all (measured here: 6.5 s vs 0.2 s per fit).
    """
    import sklearn.calibration  # noqa: F401 -- load scikit-learn's OpenMP runtime first, so that the limit reaches it
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits

    settings = kwargs.get('settings') or ClassifierSettings()
    with threadpool_limits(limits=settings.threads):
        return _train_mr_classifier(*args, **kwargs)


def _train_mr_classifier(
    feature_rows: t.Sequence[t.Mapping[str, t.Any]],
    labels: t.Sequence[int],
    groups: t.Sequence[str],
    *,
    families: t.Sequence[str] | None = None,
    held_out_family: str | None = None,
    settings: ClassifierSettings | None = None,
    feature_names: t.Sequence[str] = FEATURE_NAMES,
    criteria: MultireferenceCriteria | None = None,
    log: t.Callable[[str], None] | None = print,
) -> CalibratedClassifier:
    """Evaluate (grouped CV, held-out family, bootstrap) and fit the MR classifier on all rows.

    :param labels: 1 for MR, 0 for single reference, one per row.
    :param groups: the molecule each row belongs to (its geometries stay together in cross-validation).
    :param held_out_family: a value of ``families``; the classifier is also trained without those molecules and
        tested on them (``metrics['held_out_family']``).
    :return: the classifier fitted on every row; ``metrics`` hold the cross-validation figures, both thresholds and
        the policy figures, and ``hyperparameters`` the settings and criteria.
    """
    settings = settings or ClassifierSettings()
    criteria = criteria or MultireferenceCriteria()
    log = log or (lambda line: None)
    features = feature_matrix(feature_rows, feature_names)
    labels = np.asarray(labels, dtype=int)
    groups = np.asarray(groups)
    if len(labels) != len(features) or len(groups) != len(features):
        raise InvalidInputError('one label and one group per feature row are needed')
    if labels.sum() < settings.folds or (labels == 0).sum() < settings.folds:
        raise InvalidInputError(
            f'need at least {settings.folds} MR and {settings.folds} single-reference rows, got '
            f'{int(labels.sum())} and {int((labels == 0).sum())}'
        )
    oof = grouped_out_of_fold(features, labels, groups, settings)
    low = threshold_for_recall(oof, labels, settings.recall_target)
    high = max(threshold_for_precision(oof, labels, settings.confident_precision), low)
    metrics: dict[str, t.Any] = {'cross_validation': classification_figures(oof, labels, low)}
    metrics['cross_validation']['roc_auc_ci95'] = bootstrap_auc(oof, labels, groups, settings.bootstrap, settings.seed)
    metrics['cross_validation'].update(policy_figures(oof, labels, low, high))
    metrics['operating_threshold'] = low
    metrics['confident_threshold'] = high
    metrics['num_rows'], metrics['num_molecules'] = len(labels), len(np.unique(groups))
    cv = metrics['cross_validation']
    log(
        f'grouped {settings.folds}-fold CV over {metrics["num_molecules"]} molecules / {len(labels)} geometries '
        f'({int(labels.sum())} MR): AUC {cv["roc_auc"]:.3f} [{cv["roc_auc_ci95"][0]:.3f}, {cv["roc_auc_ci95"][1]:.3f}], '
        f'recall {cv["mr_recall"]:.3f} / precision {cv["mr_precision"]:.3f} at P(MR) >= {low:.3f}'
    )
    if held_out_family is not None:
        families = np.asarray(families)
        inside = families == held_out_family
        if not inside.any() or inside.all():
            raise InvalidInputError(f'family {held_out_family!r} must hold some but not all rows')
        model = _estimator(settings).fit(features[~inside], labels[~inside])
        probabilities = model.predict_proba(features[inside])[:, 1]
        # the threshold is chosen without the family too: out-of-fold over the other families
        train_oof = grouped_out_of_fold(features[~inside], labels[~inside], groups[~inside], settings)
        threshold = threshold_for_recall(train_oof, labels[~inside], settings.recall_target)
        figures = classification_figures(probabilities, labels[inside], threshold)
        figures['roc_auc_ci95'] = bootstrap_auc(
            probabilities, labels[inside], groups[inside], settings.bootstrap, settings.seed
        )
        figures['family'] = held_out_family
        figures['threshold'] = threshold
        metrics['held_out_family'] = figures
        log(
            f'held-out family {held_out_family}: AUC {figures["roc_auc"]:.3f} [{figures["roc_auc_ci95"][0]:.3f}, '
            f'{figures["roc_auc_ci95"][1]:.3f}], recall {figures["mr_recall"]:.3f} ({figures["num_mr"]} MR of {figures["num"]})'
        )
    final = _estimator(settings).fit(features, labels)
    hyperparameters = {
        'estimator': 'hist_gradient_boosting',
        'method': 'sigmoid',
        'settings': settings.model_dump(),
        'criteria': criteria.model_dump(),
    }
    return CalibratedClassifier(final, feature_names=list(feature_names), hyperparameters=hyperparameters, metrics=metrics)


def mr_probability(classifier: CalibratedClassifier, feature_rows: t.Sequence[t.Mapping[str, t.Any]]) -> np.ndarray:
    """P(MR) per row, with the features in the classifier's own order."""
    from threadpoolctl import threadpool_limits

    features = feature_matrix(feature_rows, classifier.feature_names)
    index = classifier.classes.index(1)
    with threadpool_limits(limits=1):
        return classifier.predict_proba(features)[:, index]


class LevelOption(BaseModel):
    """One single-reference level the router may choose, with the accuracy it is trusted to reach."""

    model_config = ConfigDict(extra='forbid', frozen=True)

    name: t.Literal['dft', 'dft+delta', 'ccsd(t)']
    level: str = Field(description='METHOD/BASIS the reference layer runs, e.g. b3lyp/def2-svp')
    expected_error_kcal_mol: float = Field(gt=0, description='typical error for single-reference molecules')
    relative_cost: float = Field(gt=0, description='cost relative to the cheapest option; only the order matters')

    @field_validator('level')
    @classmethod
    def _canonical(cls, value: str) -> str:
        """The level type's label (``B3LYP/def2-SVP`` -> ``b3lyp/def2-svp``): routed molecules are labelled with it."""
        from ..chemistry.level import LevelOfTheory

        return LevelOfTheory.canonical(value)


# Built without validation: validating a label imports PySCF (~2 s), which importing this module must not cost.
# tests/models/test_mr_classifier.py checks that these labels are canonical.
DEFAULT_LEVELS = (
    # Mean absolute errors of hybrid DFT vs. CCSD(T) on single-reference thermochemistry (GMTKN55, Goerigk et al.
    # 2017) are ~2-4 kcal/mol; a Δ-model trained on a few CCSD(T) points brings that near 1; CCSD(T)/cc-pVTZ near 0.5.
    LevelOption.model_construct(
        name='dft', level='b3lyp/def2-svp', expected_error_kcal_mol=3.0, relative_cost=1.0
    ),
    LevelOption.model_construct(
        name='dft+delta', level='b3lyp/def2-svp', expected_error_kcal_mol=1.0, relative_cost=1.5
    ),
    LevelOption.model_construct(
        name='ccsd(t)', level='ccsd(t)/cc-pvtz', expected_error_kcal_mol=0.5, relative_cost=100.0
    ),
)


class RoutingRule(BaseModel):
    """How P(MR) becomes a route. Unknown keys fail.

    A molecule with ``P(MR) >= mr_threshold`` (default: the classifier's operating threshold, the highest one that kept
    the MR recall target in grouped cross-validation) takes the multireference path: ``casscf`` (the decision records
    an active space estimated from the MP2 natural-orbital occupations of its features job; with ``run_casscf`` the
    workchain also runs CASSCF on an active space chosen from UHF natural-orbital occupations inside
    ``active_space_window``), ``flag`` (kept, marked) or ``exclude``. Every other molecule gets the cheapest level whose expected error meets ``target_accuracy_kcal_mol``.
    """

    model_config = ConfigDict(extra='forbid', frozen=True)

    mr_threshold: float | None = Field(None, ge=0, le=1, description="None: the classifier's operating threshold")
    multireference_action: t.Literal['casscf', 'flag', 'exclude'] = 'casscf'
    target_accuracy_kcal_mol: float = Field(2.0, gt=0)
    levels: tuple[LevelOption, ...] = DEFAULT_LEVELS
    active_space_window: tuple[float, float] = Field(
        (0.02, 1.98), description='MP2 natural-orbital occupations counted as active (Jensen et al. 1988)'
    )
    max_active_orbitals: int = Field(12, ge=2, le=18)
    min_active_orbitals: int = Field(2, ge=2, le=18)
    run_casscf: bool = Field(
        False,
        description='run CASSCF (mlqm.casscf.batch) for the molecules routed to casscf; otherwise the decision only '
        'records the estimated active space',
    )
    casscf_basis: str = Field('cc-pvdz', description='basis of those CASSCF runs')
    casscf_options: dict[str, t.Any] = Field(
        default_factory=dict,
        description='CasscfOptions of the CASSCF job (window_low/high on UHF natural occupations, min/max_orbitals, '
        'max_cycle, conv_tol); the window and the orbital bounds default to this rule\'s',
    )

    def casscf_parameters(self) -> dict[str, t.Any]:
        """``parameters`` of the CASSCF job: this rule's window and orbital bounds unless ``casscf_options`` says."""
        low, high = self.active_space_window
        options = {'window_low': float(low), 'window_high': float(high),
                   'min_orbitals': self.min_active_orbitals, 'max_orbitals': self.max_active_orbitals}  # fmt: skip
        return {'basis': self.casscf_basis, 'casscf': {**options, **self.casscf_options}}

    def threshold(self, classifier_metrics: t.Mapping[str, t.Any]) -> float:
        if self.mr_threshold is not None:
            return float(self.mr_threshold)
        threshold = classifier_metrics.get('operating_threshold')
        if threshold is None:
            raise InvalidInputError('the classifier has no operating_threshold in its metrics: give mr_threshold')
        return float(threshold)

    def single_reference_level(self) -> LevelOption:
        """The cheapest level meeting the target accuracy (the most accurate one when none does)."""
        meeting = [option for option in self.levels if option.expected_error_kcal_mol <= self.target_accuracy_kcal_mol]
        if not meeting:
            return min(self.levels, key=lambda option: option.expected_error_kcal_mol)
        return min(meeting, key=lambda option: option.relative_cost)


def active_space(features: t.Mapping[str, t.Any], rule: RoutingRule) -> dict[str, int]:
    """CAS(n electrons, m orbitals) from the MP2 natural orbitals: those with occupations inside the window.

    The count is widened symmetrically to at least ``min_active_orbitals`` and capped at ``max_active_orbitals``;
    electrons are two per doubly occupied active orbital plus the unpaired ones, which keeps the CAS neutral.
    """
    fractional = int(features.get('mp2_no_fractional_count') or 0)
    unpaired = int(features.get('unpaired_electrons') or 0)
    orbitals = min(max(fractional, rule.min_active_orbitals, unpaired + 2), rule.max_active_orbitals)
    # half of the non-singly-occupied active orbitals below the Fermi level, as many above
    paired = (orbitals - unpaired) // 2
    return {'electrons': 2 * paired + unpaired, 'orbitals': 2 * paired + unpaired + (orbitals - unpaired) % 2}


def route(
    p_mr: float, features: t.Mapping[str, t.Any], rule: RoutingRule, classifier_metrics: t.Mapping[str, t.Any]
) -> dict[str, t.Any]:
    """The routing decision for one molecule: route, level or action, the threshold and why."""
    threshold = rule.threshold(classifier_metrics)
    decision: dict[str, t.Any] = {'p_mr': float(p_mr), 'mr_threshold': threshold}
    if p_mr >= threshold:
        decision.update(route='multireference', action=rule.multireference_action)
        decision['reason'] = f'P(MR) {p_mr:.3f} >= {threshold:.3f}: {rule.multireference_action}'
        if rule.multireference_action == 'casscf':
            decision['active_space'] = active_space(features, rule)
        return decision
    option = rule.single_reference_level()
    decision.update(route='single_reference', action=option.name, level=option.level)
    decision['reason'] = (
        f'P(MR) {p_mr:.3f} < {threshold:.3f}; cheapest level with expected error <= '
        f'{rule.target_accuracy_kcal_mol:g} kcal/mol: {option.name} ({option.level}, ~{option.expected_error_kcal_mol:g})'
    )
    return decision
