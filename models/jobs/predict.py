"""``python -m aiida_mlqm.models.jobs.predict --input predict.json``: apply a saved model to structures, as a job does.

``predict.json`` (unknown keys are an error)::

    {"model": "model", "structures": "structures.npz", "mode": "predict" | "explore",
     "forces": true, "batch_size": 256, "num_threads": 1,
     "explore": {"temperature": 300, "timestep": 0.5, "steps": 200, "friction": 0.01, "threshold": 0.1,
                 "check_interval": 5, "seed": 0},
     "output": "predictions.npz", "candidates": "candidates.npz", "results": "results.json", "status": "status.json"}

``predictions.npz`` holds ``energy`` (or ``property``), ``energy_spread`` (calibrated), ``energy_spread_raw``,
``energy_spread_per_atom``, ``energy_interval`` (conformal half-width, NaN without calibration: ``results.json``'s
``interval_note`` then says why), ``members`` and, with forces, flat ``forces``, ``atom_force_spread`` (per atom) and
``force_spread`` (its maximum per structure, the model deviation) with the structures' ``offsets``. A classifier reads
``features`` from the structures file and writes ``probabilities``. ``results.json`` names units, the guaranteed and
requested coverage and timings; in explore mode ``candidates.npz`` holds the candidate geometries.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
import typing as t

import numpy as np

from ..config import PredictParameters
from ..errors import InvalidInputError
from .common import STATUS_FILE, read_input, run_main


class PredictJob(PredictParameters):
    """The user's parameters plus the file names, which the job plugin sets."""

    model: str = 'model'
    structures: str = 'structures.npz'
    output: str = 'predictions.npz'
    candidates: str = 'candidates.npz'
    results: str = 'results.json'
    status: str = STATUS_FILE


def predict(job: PredictJob, folder: pathlib.Path) -> dict[str, t.Any]:
    from ..training import torch_threads

    with torch_threads(job.num_threads):
        return _predict(job, folder)


def _predict(job: PredictJob, folder: pathlib.Path) -> dict[str, t.Any]:
    from ..data import Structures
    from ..registry import load_model

    model = load_model(folder / job.model)
    path = folder / job.structures
    if not path.is_file():
        raise InvalidInputError(f'structures file {path} does not exist')
    results: dict[str, t.Any] = {'model_kind': model.kind, 'mode': job.mode}
    started = time.perf_counter()
    if model.kind == 'classifier':
        with np.load(path, allow_pickle=False) as archive:
            if 'features' not in archive.files:
                raise InvalidInputError(f'{path} has no features array, which a classifier needs')
            probabilities = model.predict_proba(archive['features'])
        np.savez(folder / job.output, probabilities=probabilities, classes=np.asarray(model.classes, dtype=str))
        results.update(count=len(probabilities), classes=model.classes)
    elif job.mode == 'predict':
        structures = Structures.load_npz(path)
        with_forces = job.forces and model.kind in ('potential', 'delta', 'ml_base_delta')
        prediction = model.predict(structures, forces=with_forces, batch_size=job.batch_size)
        name = 'property' if model.kind == 'property' else 'energy'
        arrays = {
            name: prediction.value,
            f'{name}_spread': prediction.calibrated_spread,
            f'{name}_spread_raw': prediction.spread,
            f'{name}_spread_per_atom': prediction.spread_per_atom,
            f'{name}_interval': prediction.interval
            if prediction.interval is not None
            else np.full(len(structures), np.nan),
            'members': prediction.members,
            'offsets': structures.offsets,
        }
        if prediction.forces is not None:
            arrays['forces'] = prediction.forces
            arrays['force_spread'] = prediction.force_spread
            arrays['atom_force_spread'] = prediction.atom_force_spread
        np.savez(folder / job.output, **arrays)
        results.update(
            count=len(structures),
            coverage=prediction.coverage,
            requested_coverage=model.calibration.coverage,
            interval_note=prediction.interval_note,
            forces=prediction.forces is not None,
        )
        results['units'] = (
            {'energy': 'eV', 'forces': 'eV/Å', 'energy_spread_per_atom': 'eV/atom', 'force_spread': 'eV/Å'}
            if name == 'energy'
            else {}
        )
    else:
        from ..explore import explore

        if model.kind not in ('potential', 'ml_base_delta'):
            raise InvalidInputError(
                f'explore mode runs molecular dynamics and needs a potential or ml_base_delta model, not a {model.kind} '
                'model (a delta model needs base-level QM at every step)'
            )
        structures = Structures.load_npz(path)
        outcome = explore(model, structures, job.explore)
        if outcome['candidates'] is not None:
            outcome['candidates'].save_npz(folder / job.candidates)
        results.update(
            count=len(structures), candidates=outcome['candidate_info'], trajectories=outcome['trajectories']
        )
        signal = job.explore.signal
        results['units'] = {'spread': 'eV/Å' if signal == 'force_spread' else 'eV', 'positions': 'Å', 'signal': signal}
    results['seconds'] = time.perf_counter() - started
    (folder / job.results).write_text(json.dumps(results, indent=2, default=float))
    return {'mode': job.mode}


def main(argv: list[str] | None = None) -> int:
    def body(context: dict[str, t.Any]) -> dict[str, t.Any]:
        job, folder = read_input(__doc__.splitlines()[0], PredictJob, argv, context)
        context['status'] = folder / job.status
        return predict(job, folder)

    return run_main(body)


if __name__ == '__main__':
    sys.exit(main())
