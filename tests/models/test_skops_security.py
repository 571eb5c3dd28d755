"""A .skops classifier that names builtins.eval is refused on every path that loads or imports a model; nothing runs.

The hostile file is written with skops' own API: an object whose type claims to be ``builtins.eval`` and whose state
is the argument, saved through skops' reduce-based loader, which calls the type with the argument on load. Before the
exact trusted list, every ``builtins.*`` name was trusted and loading the file ran the code.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest


def write_hostile_classifier(directory: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    """A classifier directory whose ``model.skops`` holds, beside a real classifier, a call of ``builtins.eval``."""
    import skops.io
    from aiida_mlqm.models.classifier import MODEL_FILE, train_classifier
    from skops.io._sklearn import loss_get_state
    from skops.io._utils import _get_state

    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 2))
    classifier = train_classifier(
        features, np.where(features[:, 0] > 0, 'a', 'b'), estimator='logistic_regression', log=None
    )
    classifier.save(directory)

    code = f'__import__("pathlib").Path({str(marker)!r}).write_text("ran")'
    hostile = type('eval', (), {'__module__': 'builtins'})
    hostile.__reduce__ = lambda self: (hostile, (code,), {})
    _get_state.register(hostile)(loss_get_state)  # skops writes it as a reduce node: type called with the args
    classifier.model.hostile = hostile()
    skops.io.dump(classifier.model, directory / MODEL_FILE)
    assert 'builtins.eval' in skops.io.get_untrusted_types(file=directory / MODEL_FILE)
    return directory


@pytest.fixture
def hostile(tmp_path):
    marker = tmp_path / 'code-ran'
    return write_hostile_classifier(tmp_path / 'model', marker), marker


def test_the_hostile_file_would_run_code_if_trusted(hostile):
    """The file is a real attack: with ``builtins.eval`` trusted, loading it runs the code."""
    import skops.io

    directory, marker = hostile
    path = directory / 'model.skops'
    skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    assert marker.read_text() == 'ran'


def test_load_model_refuses_and_nothing_runs(hostile):
    from aiida_mlqm.models.classifier import CalibratedClassifier
    from aiida_mlqm.models.errors import UntrustedModelError
    from aiida_mlqm.models.registry import load_model

    directory, marker = hostile
    with pytest.raises(UntrustedModelError, match=r'builtins\.eval'):
        load_model(directory)
    with pytest.raises(UntrustedModelError, match=r'builtins\.eval'):
        CalibratedClassifier.load(directory)
    assert not marker.exists()


@pytest.mark.parametrize('estimator', ['random_forest', 'gradient_boosting', 'logistic_regression'])
@pytest.mark.parametrize('method', ['sigmoid', 'isotonic'])
def test_trusted_list_covers_every_classifier_trained_here(tmp_path, monkeypatch, estimator, method):
    from aiida_mlqm.models import classifier as module
    from aiida_mlqm.models.classifier import audit_skops, train_classifier
    from aiida_mlqm.models.registry import load_model

    build = module._estimator

    def small(name, seed):  # the same types with few trees, so that the test is fast
        model = build(name, seed)
        return model.set_params(n_estimators=5) if name != 'logistic_regression' else model

    monkeypatch.setattr(module, '_estimator', small)

    rng = np.random.default_rng(1)
    features = rng.normal(size=(45, 2))
    labels = np.array(['x', 'y', 'z'])[np.argmax(np.c_[features, -features.sum(1)], axis=1)]
    classifier = train_classifier(features, labels, estimator=estimator, method=method, cv=2, log=None)
    classifier.save(tmp_path / 'model')
    assert audit_skops(tmp_path / 'model' / 'model.skops') == []
    np.testing.assert_array_equal(
        load_model(tmp_path / 'model').predict_proba(features), classifier.predict_proba(features)
    )


def test_trusted_list_covers_the_method_selection_classifier(tmp_path):
    from aiida_mlqm.models.classifier import CalibratedClassifier, audit_skops
    from aiida_mlqm.models.method_selection import ClassifierSettings, _estimator

    rng = np.random.default_rng(2)
    features = rng.normal(size=(40, 2))
    labels = np.where(features[:, 0] > 0, 'multireference', 'single-reference')
    model = _estimator(ClassifierSettings()).fit(features, labels)
    CalibratedClassifier(model, feature_names=['a', 'b'], hyperparameters={}, metrics={}).save(tmp_path / 'model')
    assert audit_skops(tmp_path / 'model' / 'model.skops') == []
