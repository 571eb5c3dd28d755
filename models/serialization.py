"""Saving and loading models without pickle: safetensors for tensors, skops for scikit-learn, JSON for the rest.

A saved model is a directory with ``metadata.json`` (``kind``, architecture, hyperparameters, species,
normalisation, metrics, library versions) and the weights beside it: ``weights.safetensors`` (committees),
``model.skops`` (classifiers) or one sub-directory per part (Δ-learning). ``registry.load_model`` dispatches on
``kind``; this module imports no model class, so every model module can import it.
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import platform
import typing as t

METADATA_FILE = 'metadata.json'
WEIGHTS_FILE = 'weights.safetensors'
FORMAT_VERSION = 1
KINDS = ('potential', 'property', 'delta', 'ml_base_delta', 'classifier')


def library_versions() -> dict[str, str]:
    """Versions of the libraries a saved model depends on, recorded so that a load on another machine can be judged."""
    versions = {'python': platform.python_version()}
    for package in ('torch', 'torchani', 'mace-torch', 'e3nn', 'numpy', 'scikit-learn', 'skops', 'safetensors', 'ase'):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def write_metadata(directory: str | pathlib.Path, metadata: dict[str, t.Any]) -> None:
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if metadata.get('kind') not in KINDS:
        raise ValueError(f'metadata kind must be one of {KINDS}, got {metadata.get("kind")!r}')
    record = {'format_version': FORMAT_VERSION, 'library_versions': library_versions(), **metadata}
    (directory / METADATA_FILE).write_text(json.dumps(record, indent=2, sort_keys=True, default=_json_default))


def read_metadata(directory: str | pathlib.Path) -> dict[str, t.Any]:
    path = pathlib.Path(directory) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f'{path} does not exist: a saved model directory needs {METADATA_FILE}')
    metadata = json.loads(path.read_text())
    if metadata.get('format_version') != FORMAT_VERSION:
        raise ValueError(f'{path}: format_version {metadata.get("format_version")} is not {FORMAT_VERSION}')
    return metadata


def save_tensors(directory: str | pathlib.Path, tensors: dict[str, t.Any]) -> None:
    from safetensors.torch import save_file

    # safetensors refuses shared or non-contiguous storage; state_dict views are cloned into plain tensors
    save_file(
        {key: value.detach().clone().contiguous() for key, value in tensors.items()},
        str(pathlib.Path(directory) / WEIGHTS_FILE),
    )


def load_tensors(directory: str | pathlib.Path) -> dict[str, t.Any]:
    from safetensors.torch import load_file

    return load_file(str(pathlib.Path(directory) / WEIGHTS_FILE))


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')
