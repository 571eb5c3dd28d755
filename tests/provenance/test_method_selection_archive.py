"""The shipped method-selection classifier: its training set re-derived from the archive, its metrics re-measured."""
from __future__ import annotations

import json

import numpy as np
import pytest
from aiida import orm
from aiida.tools.archive.abstract import get_format

from aiida_mlqm.models.method_selection import (
    ClassifierSettings,
    MultireferenceCriteria,
    feature_matrix,
    mr_probability,
    train_mr_classifier,
    training_rows,
)
from aiida_mlqm.workflows.method_selection_training import (
    ARCHIVE_NAME,
    DEFAULT_DIRECTORY,
    import_default,
    shipped_manifest,
)


@pytest.fixture(scope='module')
def shipped():
    manifest = shipped_manifest()
    with get_format().open(DEFAULT_DIRECTORY / ARCHIVE_NAME, 'r') as reader:
        records = json.loads(reader.get(orm.SinglefileData, uuid=manifest['records_uuid']).get_content())
        training = reader.get(orm.Dict, uuid=manifest['training_set_uuid']).get_dict()
        model = reader.get(orm.Data, uuid=manifest['model_uuid'])
        attributes = dict(model.base.attributes.all)
        # the archive holds the chain records -> training set -> classifier, made by calcfunctions
        processes = {node.base.attributes.get('function_name') for node in reader.querybuilder()
                     .append(orm.CalcFunctionNode).all(flat=True)}  # fmt: skip
    return manifest, records, training, attributes, processes


def test_training_set_is_re_derived_from_the_archived_records(shipped):
    manifest, records, training, attributes, processes = shipped
    assert {'training_set_from_records', 'train_method_selection_classifier'} <= processes
    derived = training_rows(records, MultireferenceCriteria.model_validate(training['criteria']))
    for key in ('feature_names', 'labels', 'groups', 'families', 'keys'):
        assert derived[key] == training[key], key
    # AiiDA stores floats to 14 significant digits
    derived_matrix = feature_matrix(derived['features'], derived['feature_names'])
    stored_matrix = feature_matrix(training['features'], training['feature_names'])
    np.testing.assert_allclose(derived_matrix, stored_matrix, rtol=1e-12, atol=1e-14, equal_nan=True)
    assert manifest['num_rows'] == len(training['labels']) == attributes['metrics']['num_rows']
    assert manifest['num_mr'] == sum(training['labels']) == attributes['metrics']['cross_validation']['num_mr']
    # nothing heavy in the archive: geometries, features and energies only
    assert (DEFAULT_DIRECTORY / ARCHIVE_NAME).stat().st_size < 5_000_000


def test_stored_metrics_are_reproduced_by_retraining(shipped):
    _, _, training, attributes, _ = shipped
    settings = ClassifierSettings.model_validate({**attributes['hyperparameters']['settings'], 'bootstrap': 0})
    classifier = train_mr_classifier(training['features'], training['labels'], training['groups'], settings=settings,
                                     feature_names=training['feature_names'], log=None)  # fmt: skip
    stored = attributes['metrics']
    for key in ('roc_auc', 'mr_recall', 'mr_precision', 'cc_runs_saved_ratio', 'policy_mr_recall'):
        assert classifier.metrics['cross_validation'][key] == pytest.approx(stored['cross_validation'][key], abs=1e-9)
    assert classifier.metrics['operating_threshold'] == pytest.approx(stored['operating_threshold'], abs=1e-9)


def test_setup_imports_the_classifier_once_and_it_predicts(aiida_profile, shipped):
    manifest, _, training, _, _ = shipped
    first = import_default()
    assert first.uuid == manifest['model_uuid'] and import_default().pk == first.pk
    assert first.creator.inputs.training_set.uuid == manifest['training_set_uuid']
    classifier = first.load_model()
    rows = training['features'][:5]
    p = mr_probability(classifier, rows)
    assert ((p >= 0) & (p <= 1)).all()
