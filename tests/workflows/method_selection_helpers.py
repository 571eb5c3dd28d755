"""A small method-selection classifier for workchain tests (trained here on synthetic rows) and test molecules."""
from __future__ import annotations

import tempfile

import numpy as np


def synthetic_classifier_node(seed: int = 0):
    """An unstored ModelData whose P(MR) follows E(RHF) - E(UHF), with an operating threshold."""
    from aiida_mlqm.models.method_selection import FEATURE_NAMES, ClassifierSettings, train_mr_classifier
    from aiida_mlqm.provenance.model import ModelData

    rng = np.random.default_rng(seed)
    rows, labels, groups = [], [], []
    for molecule in range(120):
        t1 = rng.uniform(0, 0.1)
        row = {name: float(rng.normal()) for name in FEATURE_NAMES}
        row['e_restricted_minus_uhf'] = t1
        rows.append(row)
        labels.append(int(t1 > 0.02))
        groups.append(f'm{molecule}')
    classifier = train_mr_classifier(rows, labels, groups, settings=ClassifierSettings(folds=3, bootstrap=0, max_iter=20),
                                     log=None)  # fmt: skip
    classifier.hyperparameters['feature_basis'] = 'sto-3g'
    with tempfile.TemporaryDirectory() as folder:
        classifier.save(folder)
        return ModelData.from_directory(folder)


def training_set_of(node) -> dict:
    """A training-set dictionary in the shape retrain_classifier grows (synthetic rows of the same kind)."""
    from aiida_mlqm.models.method_selection import FEATURE_NAMES

    rng = np.random.default_rng(1)
    features, labels, groups = [], [], []
    for molecule in range(30):
        t1 = rng.uniform(0, 0.1)
        row = [float(rng.normal()) for _ in FEATURE_NAMES]
        row[FEATURE_NAMES.index('e_restricted_minus_uhf')] = t1
        features.append(row)
        labels.append(int(t1 > 0.02))
        groups.append(f'm{molecule}')
    return {'feature_names': list(FEATURE_NAMES), 'features': features, 'labels': labels, 'groups': groups,
            'families': ['synthetic'] * len(labels), 'basis': 'sto-3g'}  # fmt: skip
