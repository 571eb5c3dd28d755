"""Model kinds and the class that loads each: ``load_model`` opens any saved model directory.

The model modules import ``serialization`` (the file format) and never this module, so there is no import circle:
``registry`` -> (``backends``, ``delta``, ``classifier``) -> ``serialization``.
"""

from __future__ import annotations

import pathlib
import typing as t

from . import serialization
from .backends import load_committee
from .classifier import CalibratedClassifier
from .delta import DeltaModel, MLBaseDeltaModel

LOADERS: dict[str, t.Callable[[pathlib.Path], t.Any]] = {
    'potential': load_committee,
    'property': load_committee,
    'delta': DeltaModel.load,
    'ml_base_delta': MLBaseDeltaModel.load,
    'classifier': CalibratedClassifier.load,
}
assert set(LOADERS) == set(serialization.KINDS), 'every kind serialization accepts needs a loader here'


def load_model(directory: str | pathlib.Path):
    """Load any saved model: a committee (torchani or MACE), a ``DeltaModel``, an ``MLBaseDeltaModel`` or a
    ``CalibratedClassifier``.

    :raises ValueError: for an unknown kind, or a classifier file holding types outside the trusted list.
    """
    directory = pathlib.Path(directory)
    kind = serialization.read_metadata(directory).get('kind')
    if kind not in LOADERS:
        raise ValueError(f'{directory}: unknown model kind {kind!r}; known: {sorted(LOADERS)}')
    if kind == 'delta' and (directory / 'base').is_dir():
        kind = 'ml_base_delta'  # saved with an ML base committee before the two Δ kinds were split
    return LOADERS[kind](directory)
