"""Do the committee's uncertainty signals track the error on held-out frames, and do the intervals cover?

The same ethanol set and split as ``backends`` (``benchmarks/_pes.py``): the committees trained on the 100 training
frames (validation frames calibrate; those the ``backends`` benchmark saved, when present), then on the 20 test frames, per frame: the Spearman rank correlation of the
force spread (maximum over atoms of the members' force deviation, DP-GEN's model deviation) with the largest atomic
force error, of the energy spread with the absolute energy error, and the fraction of test energies inside the
conformal interval at the stated coverage (0.9). Both backends are measured; the figures without a backend prefix
are those of the default backend for potentials (``models.config.DEFAULT_BACKEND``).
"""

from __future__ import annotations

import numpy as np

DESCRIPTION = 'Spearman of force/energy spread with the error on held-out frames, conformal coverage at 0.9'


def signals(committee, test) -> dict[str, float]:
    from scipy.stats import spearmanr

    prediction = committee.predict(test, forces=True)
    energy_error = np.abs(prediction.value - test.energy)
    atom_error = np.linalg.norm(prediction.forces - test.forces, axis=1)
    force_error = np.maximum.reduceat(atom_error, test.offsets[:-1])
    inside = energy_error <= prediction.interval
    return {
        'spearman_force_spread': float(spearmanr(prediction.force_spread, force_error).statistic),
        'spearman_energy_spread': float(spearmanr(prediction.spread, energy_error).statistic),
        'conformal_coverage': float(inside.mean()),
        'stated_coverage': float(prediction.coverage),
    }


def run(quick: bool) -> dict:
    from aiida_mlqm.models.config import DEFAULT_BACKEND
    from aiida_mlqm.models.registry import load_model

    from .backends import MODELS, train
    from .backends import split as backends_split

    test, validation, pool, sizes = backends_split(quick)
    default = DEFAULT_BACKEND['potential']
    figures, table = {}, []
    for backend in ('torchani', 'mace'):
        saved = MODELS / f'{backend}-{sizes[-1]}{"-quick" if quick else ""}'
        if (saved / 'metadata.json').is_file():  # trained by the backends benchmark on the same split
            committee = load_model(saved)
        else:
            committee = train(
                backend, pool.subset(range(sizes[-1])), validation, 90.0 if quick else 240.0, keep=saved.name
            )
        measured = signals(committee, test)
        table.append({'backend': backend, 'train frames': sizes[-1], **measured})
        print(table[-1], flush=True)
        for name, value in measured.items():
            figures[f'{backend}_{name}'] = {'value': value, 'unit': ''}
            if backend == default and name != 'stated_coverage':
                target = {'conformal_coverage': '>= 0.8', 'spearman_force_spread': '>= 0.3'}.get(name)
                figures[name] = {'value': value, 'unit': '', 'target': target}
    return {'_table': table, **figures}
