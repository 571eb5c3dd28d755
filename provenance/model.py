"""``ModelData`` (``mlqm.model``): a trained model, its weights in the node's repository, what it is in attributes.

The repository holds the directory that ``aiida_mlqm.models`` saves (``metadata.json`` plus ``weights.safetensors``,
``model.skops`` or one sub-directory per part of a Δ model): nothing is pickled. The attributes repeat what a query or
``verdi node attributes`` needs without opening files: ``kind`` (potential / property / delta / ml_base_delta / classifier), ``backend``,
``architecture``, ``hyperparameters``, ``species`` (and ``symbols``), ``normalisation``, ``calibration``, ``metrics``,
``library_versions``. The dataset a model was trained on is the ``dataset`` input of the ``mlqm.train`` job that
created it (``model.creator.inputs.dataset``).
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import typing as t

from aiida import orm

METADATA_FILE = 'metadata.json'  # the same name as models.serialization.METADATA_FILE, without importing torch
KINDS = ('potential', 'property', 'delta', 'ml_base_delta', 'classifier')
ATTRIBUTE_KEYS = (
    'kind', 'backend', 'architecture', 'hyperparameters', 'species', 'normalisation', 'calibration', 'metrics',
    'library_versions', 'levels', 'classes', 'feature_names', 'format_version',
)  # fmt: skip


class ModelData(orm.Data):
    """A trained model (committee potential, property model, Δ model or classifier), stored without pickle."""

    @classmethod
    def from_directory(cls, directory: str | pathlib.Path, *, description: str | None = None) -> ModelData:
        """Build an unstored node from a directory written by a model's ``save``.

        :param description: defaults to the one-line summary (``str(node)``), so that ``verdi node show`` says what
            the model is.
        :raises ValueError: when the directory has no valid ``metadata.json``.
        """
        directory = pathlib.Path(directory)
        path = directory / METADATA_FILE
        if not path.is_file():
            raise ValueError(f'{directory} has no {METADATA_FILE}: save the model with its save() method first')
        metadata = json.loads(path.read_text())
        if metadata.get('kind') not in KINDS:
            raise ValueError(f'{path}: kind {metadata.get("kind")!r} is not one of {KINDS}')
        if any(p.suffix in {'.pkl', '.pickle', '.pt', '.pth', '.joblib'} for p in directory.rglob('*')):
            raise ValueError(
                f'{directory} contains pickle-based files; models are stored as safetensors/skops/JSON only'
            )
        _audit_skops_files(directory)
        node = cls()
        node.base.repository.put_object_from_tree(str(directory))
        for key in ATTRIBUTE_KEYS:
            if key in metadata:
                node.base.attributes.set(key, json_safe(metadata[key]))
        node.base.attributes.set('symbols', _symbols(metadata.get('species', [])))
        node.base.attributes.set(
            'files', sorted(str(p.relative_to(directory)) for p in directory.rglob('*') if p.is_file())
        )
        node.description = description if description is not None else node.summary()
        return node

    @property
    def kind(self) -> str:
        return self.base.attributes.get('kind')

    @property
    def species(self) -> list[int]:
        return list(self.base.attributes.get('species', []))

    @property
    def metrics(self) -> dict[str, t.Any]:
        return dict(self.base.attributes.get('metrics', {}))

    def export(self, directory: str | pathlib.Path) -> pathlib.Path:
        """Copy the saved model directory out of the repository (for jobs, or to use it outside AiiDA)."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.base.repository.copy_tree(directory)
        return directory

    def load_model(self):
        """Return the model object (``Committee``, ``DeltaModel`` or ``CalibratedClassifier``) from the repository."""
        from aiida_mlqm.models.registry import load_model

        with tempfile.TemporaryDirectory(prefix='mlqm-model-') as folder:
            # everything is read into memory by load_model, so the temporary copy can go right after
            return load_model(self.export(folder))

    def summary(self) -> str:
        attributes = self.base.attributes
        kind = attributes.get('kind', '?')
        symbols = ', '.join(attributes.get('symbols', [])) or '-'
        architecture = attributes.get('architecture', {}) or {}
        metrics = attributes.get('metrics', {}) or {}
        if kind in ('potential', 'property'):
            what = (
                f'{kind} committee ({attributes.get("backend")}, {architecture.get("members")} members, AEV '
                f'{architecture.get("aev")}, hidden {architecture.get("hidden")}, {architecture.get("dtype")}) for {symbols}'
            )
            scores = metrics.get('validation') or metrics.get('train') or {}
        elif kind == 'delta':
            levels = attributes.get('levels', {})
            what = f'Δ model: {levels.get("base")} QM + learned correction to {levels.get("target")} for {symbols}'
            scores = metrics.get('holdout', {})
        elif kind == 'ml_base_delta':
            levels = attributes.get('levels', {})
            what = f'ML-base Δ model: {levels.get("base")} committee + correction to {levels.get("target")} for {symbols}'
            scores = metrics.get('holdout', {})
        else:
            what = f'{architecture.get("estimator")} classifier ({architecture.get("calibration")} calibration), classes {attributes.get("classes")}'
            scores = metrics.get('calibrated', {})
        shown = ', '.join(f'{key} {value:.4g}' for key, value in scores.items() if isinstance(value, (int, float)))
        return f'{what}' + (f'; held-out {shown}' if shown else '')

    def __str__(self) -> str:
        return f'ModelData<{self.pk}>: {self.summary()}' if self.is_stored else f'ModelData: {self.summary()}'


def _audit_skops_files(directory: pathlib.Path) -> None:
    """Refuse a directory whose ``.skops`` files name types outside the trusted list (they could run code on load)."""
    from aiida_mlqm.models.classifier import audit_skops

    for path in sorted(directory.rglob('*.skops')):
        try:
            refused = audit_skops(path)
        except Exception as exception:  # noqa: BLE001 - an unreadable file is refused as well, with the reason
            raise ValueError(f'{path} is not a readable .skops file: {exception}') from None
        if refused:
            raise ValueError(
                f'{path} names types outside the trusted list: {", ".join(refused)}; refusing to store it (loading '
                'it could run code). Save classifiers with aiida_mlqm.models.classifier.'
            )


def json_safe(value):
    """Replace inf/NaN (valid in Python's JSON, refused by AiiDA attributes) with None, recursively."""
    import math

    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _symbols(species: t.Sequence[int]) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in species]
