"""``python -m aiida_mlqm.models.jobs.train --input train.json``: train a model from ``.npz`` data, as a job does.

``train.json`` (unknown keys are an error)::

    {"kind": "potential" | "property" | "delta" | "ml_base_delta" | "classifier",
     "dataset": "dataset.npz", "validation_dataset": null,
     "hyperparameters": {...},                       # models.training.TrainingConfig, or the classifier's options
     "target_key": "target",                         # property models: which per-frame array is the property
     "base_level": null, "target_level": null,       # Δ-learning; potential/property: target_level is the level
                                                     # to train on (needed when the dataset holds several)
     "correction_hyperparameters": {},               # ml_base_delta: the correction's (delta: hyperparameters)
     "output": "model", "metrics": "metrics.json", "status": "status.json"}

Writes the model directory (``metadata.json`` + weights, no pickle), ``metrics.json``, and ``status.json``
(``{"status": "ok"}`` or ``{"status": "failed", "error": "nan_loss" | "invalid_input" | ..., "message": ...}``).
Progress is printed per epoch on stdout.
"""

from __future__ import annotations

import json
import pathlib
import sys
import typing as t

import numpy as np

from ..config import ClassifierConfig, TrainParameters
from ..errors import InvalidInputError
from .common import STATUS_FILE, read_input, run_main


class TrainJob(TrainParameters):
    """The user's parameters plus the file names, which the job plugin sets."""

    dataset: str
    validation_dataset: str | None = None
    output: str = 'model'
    metrics: str = 'metrics.json'
    status: str = STATUS_FILE


def _load(path: pathlib.Path, job: TrainJob):
    from ..data import Structures

    if not path.is_file():
        raise InvalidInputError(f'dataset file {path} does not exist')
    structures = Structures.load_npz(path)
    if job.kind == 'property' and job.target_key != 'target':
        with np.load(path, allow_pickle=False) as archive:
            if job.target_key not in archive.files:
                raise InvalidInputError(f'target_key {job.target_key!r} is not an array of {path} ({archive.files})')
            structures.target = np.asarray(archive[job.target_key], dtype=float)
    return structures


def train(job: TrainJob, folder: pathlib.Path) -> dict[str, t.Any]:
    """Train what ``job`` describes, save it under ``folder / job.output``; return a summary for the status file."""
    if job.kind == 'classifier':
        from ..classifier import train_classifier

        with np.load(folder / job.dataset, allow_pickle=False) as archive:
            if not {'features', 'labels'} <= set(archive.files):
                raise InvalidInputError(
                    f'{job.dataset} must hold arrays features (n, d) and labels (n,) for a classifier'
                )
            names = [str(n) for n in archive['feature_names']] if 'feature_names' in archive.files else None
            options = ClassifierConfig(**job.hyperparameters).model_dump()
            model = train_classifier(archive['features'], archive['labels'], feature_names=names, **options)
    elif job.kind == 'delta':
        from ..delta import train_delta

        if not job.base_level or not job.target_level:
            raise InvalidInputError('a delta model needs base_level and target_level')
        model = train_delta(
            _load(folder / job.dataset, job),
            base_level=job.base_level,
            target_level=job.target_level,
            hyperparameters=job.hyperparameters,
            log=_print,
        )
    elif job.kind == 'ml_base_delta':
        from ..delta import train_ml_base_delta

        if not job.base_level or not job.target_level:
            raise InvalidInputError('an ml_base_delta model needs base_level and target_level')
        model = train_ml_base_delta(
            _load(folder / job.dataset, job),
            base_level=job.base_level,
            target_level=job.target_level,
            base_hyperparameters=job.hyperparameters,
            correction_hyperparameters=job.correction_hyperparameters,
            log=_print,
        )
    else:
        from ..training import train_committee

        validation = _load(folder / job.validation_dataset, job) if job.validation_dataset else None
        try:
            data = _load(folder / job.dataset, job).at_level(job.target_level)
            validation = validation.at_level(job.target_level) if validation is not None else None
        except ValueError as exception:
            raise InvalidInputError(f'{exception} (set target_level)') from None
        model = train_committee(data, job.hyperparameters, kind=job.kind, validation=validation, log=_print)
    model.save(folder / job.output)
    (folder / job.metrics).write_text(json.dumps(model.metrics, indent=2, default=float))
    return {'kind': job.kind}


def _print(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    def body(context: dict[str, t.Any]) -> dict[str, t.Any]:
        job, folder = read_input(__doc__.splitlines()[0], TrainJob, argv, context)
        context['status'] = folder / job.status
        return train(job, folder)

    return run_main(body)


if __name__ == '__main__':
    sys.exit(main())
