"""Committee backends: which class loads a saved committee (``potential`` or ``property`` kind) of each backend.

``torchani`` (``committee.Committee``): ANI networks on atomic environment vectors, fast. ``mace``
(``mace.MaceCommittee``): equivariant message passing (mace-torch), more accurate per training label. Both share
prediction, spreads and calibration (``prediction.CommitteeModel``) and the training loop (``training``).
"""

from __future__ import annotations

import pathlib

from . import serialization
from .prediction import CommitteeModel

BACKENDS = ('torchani', 'mace')


def load_committee(directory: str | pathlib.Path, *, dtype: str | None = None) -> CommitteeModel:
    """Load a saved committee of any backend; ``dtype`` converts it (e.g. a float64 copy for MD)."""
    metadata = serialization.read_metadata(directory)
    if metadata['kind'] not in ('potential', 'property'):
        raise ValueError(f'{directory} holds a {metadata["kind"]} model, not a committee')
    backend = metadata.get('backend', 'torchani')
    if backend == 'torchani':
        from .committee import Committee

        return Committee.load(directory, dtype=dtype)
    if backend == 'mace':
        from .mace import MaceCommittee

        return MaceCommittee.load(directory, dtype=dtype)
    raise ValueError(f'{directory}: unknown committee backend {backend!r}; known: {BACKENDS}')
