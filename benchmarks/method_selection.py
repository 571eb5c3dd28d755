"""Method selection: how well the shipped classifier finds multireference molecules it was not trained on, how many
CCSD(T) diagnostic runs it saves, and what the features job costs next to the CCSD(T) run it replaces.

Everything is re-derived from the provenance archive shipped with the package (records -> training set), so the
figures belong to the classifier users get:

- ``roc_auc``, ``mr_recall``: grouped cross-validation (no molecule has geometries on both sides), the operating
  threshold chosen on the training folds' out-of-fold predictions; ``roc_auc_ci_low/high`` by bootstrap over molecules;
- ``held_out_family_roc_auc`` / ``held_out_family_mr_recall``: trained without one family, tested on it;
- ``cc_runs_saved_ratio``: molecules / CCSD(T) diagnostic runs of the three-way policy (P(MR) below the operating
  threshold: single reference; above the confident threshold: MR; in between: run CCSD(T)), against running
  CCSD(T) diagnostics for every molecule; ``policy_mr_recall`` is the recall of that policy;
- ``features_cost_ratio``: summed wall time of the frozen-core CCSD(T)/cc-pVDZ diagnostic runs over that of the
  features jobs (at the classifier's feature basis), both measured one after the other in the same process on the
  same geometries by the data generator (geometries whose features were recomputed later are left out).

``--quick`` skips the bootstrap and uses three folds.
"""

from __future__ import annotations

import json

DESCRIPTION = 'MR classifier on unseen molecules: ROC-AUC, MR recall, CCSD(T) runs saved, features cost ratio'


def shipped_training_data() -> tuple[dict, dict, dict]:
    """(records, training set, manifest) read from the shipped archive without an AiiDA profile."""
    from aiida import orm
    from aiida.tools.archive.abstract import get_format

    from aiida_mlqm.workflows.method_selection_training import ARCHIVE_NAME, DEFAULT_DIRECTORY, shipped_manifest

    manifest = shipped_manifest()
    with get_format().open(DEFAULT_DIRECTORY / ARCHIVE_NAME, 'r') as reader:
        records = reader.get(orm.SinglefileData, uuid=manifest['records_uuid'])
        training = reader.get(orm.Dict, uuid=manifest['training_set_uuid'])
        return json.loads(records.get_content()), training.get_dict(), manifest


def run(quick: bool = False) -> dict:
    import numpy as np

    from aiida_mlqm.models.method_selection import ClassifierSettings, train_mr_classifier

    records, training, manifest = shipped_training_data()
    held_out = manifest['metrics'].get('held_out_family', {}).get('family')
    settings = ClassifierSettings(folds=3 if quick else 5, bootstrap=0 if quick else 1000)
    classifier = train_mr_classifier(
        training['features'], training['labels'], training['groups'], families=training['families'],
        held_out_family=held_out, settings=settings, feature_names=training['feature_names'],
    )  # fmt: skip
    cv = classifier.metrics['cross_validation']
    family = classifier.metrics.get('held_out_family', {})
    good = [r for r in records['records'] if r['features_status'] == 'ok' and r['ccsd_t'].get('status') == 'ok']
    # the cost ratio only from geometries whose two jobs ran one after the other in the same process (the machine's
    # load then weighs on both alike); features recomputed in a later run are left out of it
    timed = [r for r in good if r.get('features_timed_with_ccsd_t')] or good
    features_seconds = float(sum(r['features_seconds'] for r in timed))
    cc_seconds = float(sum(r['ccsd_t_seconds'] for r in timed))
    sizes = sorted({r['features']['basis_functions'] for r in good})
    table = []
    for low, high in ((0, 20), (20, 30), (30, 1000)):
        chosen = [r for r in timed if low <= r['features']['basis_functions'] < high]
        if chosen:
            table.append({
                'basis functions': f'{low}-{high if high < 1000 else ""}',
                'geometries': len(chosen),
                'features s': round(sum(r['features_seconds'] for r in chosen), 1),
                'CCSD(T) s': round(sum(r['ccsd_t_seconds'] for r in chosen), 1),
                'ratio': round(sum(r['ccsd_t_seconds'] for r in chosen) / sum(r['features_seconds'] for r in chosen), 2),
            })  # fmt: skip
    print(
        f'{len(training["labels"])} geometries of {len(set(training["groups"]))} molecules '
        f'({int(np.sum(training["labels"]))} MR); basis functions {sizes[0]}-{sizes[-1]}'
    )
    figures = {
        'roc_auc': {'value': cv['roc_auc'], 'unit': '', 'target': '>= 0.9'},
        'mr_recall': {'value': cv['mr_recall'], 'unit': '', 'target': '>= 0.95'},
        'mr_precision': {'value': cv['mr_precision'], 'unit': ''},
        'cc_runs_saved_ratio': {'value': cv['cc_runs_saved_ratio'], 'unit': 'x', 'target': '>= 3'},
        'policy_mr_recall': {'value': cv['policy_mr_recall'], 'unit': ''},
        'features_cost_ratio': {'value': cc_seconds / features_seconds, 'unit': f'x ({len(timed)} geometries)',
                                'target': '>= 3'},
    }
    if not quick:
        figures['roc_auc_ci_low'] = {'value': cv['roc_auc_ci95'][0], 'unit': ''}
        figures['roc_auc_ci_high'] = {'value': cv['roc_auc_ci95'][1], 'unit': ''}
    if family:
        figures['held_out_family_roc_auc'] = {'value': family['roc_auc'], 'unit': f'({family["family"]})'}
        figures['held_out_family_mr_recall'] = {'value': family['mr_recall'], 'unit': f'({family["family"]})'}
    figures = {key: value for key, value in figures.items() if value['value'] == value['value']}  # drop NaN
    return {**figures, '_table': table}
