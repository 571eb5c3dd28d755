"""Classifiers with calibrated probabilities (scikit-learn ``CalibratedClassifierCV``), saved with skops.

Used by method selection: features of a cheap calculation in, a level of theory (or single- vs multireference) out,
with probabilities that mean what they say. Calibration is checked on a held-out split: expected calibration error
of the uncalibrated and the calibrated classifier are both reported.
"""

from __future__ import annotations

import itertools
import pathlib
import typing as t

import numpy as np

from . import serialization
from .errors import InvalidInputError, UntrustedModelError

MODEL_FILE = 'model.skops'
ESTIMATORS = ('random_forest', 'gradient_boosting', 'logistic_regression')
# The exact type names, beyond those skops trusts by default, that the classifiers trained here contain (every
# estimator with both calibration methods, and method_selection's; tests/models/test_skops_security.py checks the
# list is complete). A name outside it is refused: a .skops file may name any callable, and loading it would call it
# (``builtins.eval``).
TRUSTED_TYPES = frozenset(
    {
        'sklearn.calibration._CalibratedClassifier',
        'sklearn.calibration._SigmoidCalibration',
        'sklearn.tree._tree.Tree',
        'sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor',  # method_selection's classifier
    }
)


def audit_skops(path: str | pathlib.Path) -> list[str]:
    """The type names in a ``.skops`` file that are neither skops' defaults nor in ``TRUSTED_TYPES`` (none to load).

    Reads the file's schema only; nothing in it is constructed or called.
    """
    import skops.io

    return sorted(set(skops.io.get_untrusted_types(file=path)) - TRUSTED_TYPES)


def check_skops(path: str | pathlib.Path) -> list[str]:
    """Raise ``UntrustedModelError`` naming the untrusted types of ``path``; return the trusted extra types."""
    import skops.io

    refused = audit_skops(path)
    if refused:
        raise UntrustedModelError(
            f'{path} names types outside the trusted list: {", ".join(refused)}; refusing to load it (a .skops file '
            'can name any callable, and loading would call it). Retrain the classifier with aiida_mlqm.'
        )
    return sorted(set(skops.io.get_untrusted_types(file=path)))


def _estimator(name: str, seed: int):
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == 'random_forest':
        return RandomForestClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed)
    if name == 'gradient_boosting':
        return GradientBoostingClassifier(random_state=seed)
    if name == 'logistic_regression':
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    raise InvalidInputError(f'unknown estimator {name!r}; choose one of {ESTIMATORS}')


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, classes: np.ndarray, bins: int = 10
) -> float:
    """ECE of the top-class probability: mean |accuracy - confidence| over equal-width confidence bins."""
    confidence = probabilities.max(1)
    correct = classes[probabilities.argmax(1)] == labels
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


class CalibratedClassifier:
    """A fitted ``CalibratedClassifierCV`` plus feature names, classes and metrics."""

    kind = 'classifier'

    def __init__(
        self, model, *, feature_names: list[str], hyperparameters: dict[str, t.Any], metrics: dict[str, t.Any]
    ):
        self.model = model
        self.feature_names = list(feature_names)
        self.hyperparameters = dict(hyperparameters)
        self.metrics = dict(metrics)

    @property
    def classes(self) -> list:
        return [c.item() if hasattr(c, 'item') else c for c in self.model.classes_]

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=float)
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise InvalidInputError(
                f'expected features of shape (n, {len(self.feature_names)}) in the order {self.feature_names}'
            )
        return self.model.predict_proba(features)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.classes_)[self.predict_proba(features).argmax(1)]

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        import skops.io

        directory = pathlib.Path(directory)
        serialization.write_metadata(
            directory,
            {
                'kind': 'classifier',
                'backend': 'scikit-learn',
                'architecture': {
                    'estimator': self.hyperparameters.get('estimator'),
                    'calibration': self.hyperparameters.get('method'),
                },
                'hyperparameters': self.hyperparameters,
                'species': [],
                'feature_names': self.feature_names,
                'classes': self.classes,
                'normalisation': {},
                'metrics': self.metrics,
            },
        )
        skops.io.dump(self.model, directory / MODEL_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | pathlib.Path) -> CalibratedClassifier:
        import skops.io

        directory = pathlib.Path(directory)
        metadata = serialization.read_metadata(directory)
        path = directory / MODEL_FILE
        model = skops.io.load(path, trusted=check_skops(path))
        return cls(
            model,
            feature_names=metadata['feature_names'],
            hyperparameters=metadata['hyperparameters'],
            metrics=metadata['metrics'],
        )


def train_classifier(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    feature_names: t.Sequence[str] | None = None,
    estimator: str = 'random_forest',
    method: str = 'sigmoid',
    cv: int = 3,
    test_fraction: float = 0.25,
    seed: int = 0,
    log: t.Callable[[str], None] | None = print,
) -> CalibratedClassifier:
    """Fit ``estimator`` inside ``CalibratedClassifierCV`` and report accuracy, log loss and ECE on a held-out split.

    :param method: ``'isotonic'`` (needs a few hundred samples) or ``'sigmoid'`` (Platt; better for small data).
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import train_test_split

    log = log or (lambda line: None)
    features = np.asarray(features, dtype=float)
    labels = np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise InvalidInputError(
            f'features must be (n, d) with one label per row; got {features.shape} and {labels.shape}'
        )
    if method not in ('isotonic', 'sigmoid'):
        raise InvalidInputError(f"method must be 'isotonic' or 'sigmoid', got {method!r}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.min() < cv:
        raise InvalidInputError(
            f'every class needs at least cv={cv} examples and there must be two classes; counts {dict(zip(classes.tolist(), counts.tolist()))}'
        )
    names = list(feature_names) if feature_names is not None else [f'feature_{i}' for i in range(features.shape[1])]
    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )

    raw = _estimator(estimator, seed).fit(train_x, train_y)
    calibrated = CalibratedClassifierCV(_estimator(estimator, seed), method=method, cv=cv).fit(train_x, train_y)
    metrics: dict[str, t.Any] = {'num_train': len(train_y), 'num_test': len(test_y)}
    for name, model in (('uncalibrated', raw), ('calibrated', calibrated)):
        probabilities = model.predict_proba(test_x)
        metrics[name] = {
            'accuracy': float(accuracy_score(test_y, model.classes_[probabilities.argmax(1)])),
            'log_loss': float(log_loss(test_y, probabilities, labels=model.classes_)),
            'expected_calibration_error': expected_calibration_error(probabilities, test_y, model.classes_),
        }
    log(
        f'classifier {estimator} ({method}): held-out accuracy {metrics["calibrated"]["accuracy"]:.3f}, ECE '
        f'{metrics["uncalibrated"]["expected_calibration_error"]:.3f} -> {metrics["calibrated"]["expected_calibration_error"]:.3f}'
    )
    # refit on all data for use; the metrics above describe the held-out behaviour of the same recipe
    final = CalibratedClassifierCV(_estimator(estimator, seed), method=method, cv=cv).fit(features, labels)
    hyper = {'estimator': estimator, 'method': method, 'cv': cv, 'test_fraction': test_fraction, 'seed': seed}
    return CalibratedClassifier(final, feature_names=names, hyperparameters=hyper, metrics=metrics)
