"""Exports: a dataset as extended XYZ, query answers as CSV, a campaign as an AiiDA archive.

- extxyz: :meth:`DatasetData.export_extxyz` (energies in eV, forces in eV/Å, each frame's ``source_uuid`` and
  ``structure_uuid`` in its info line), reached here by :func:`export_dataset`.
- CSV: :func:`.tables.write_csv`, one file per table of an answer of :mod:`.queries`.
- archive: :func:`export_archive` is ``verdi archive create`` with its default traversal rules, so the archive holds
  the given nodes, everything their provenance needs and the processes they called; imported into a fresh profile
  (``verdi archive import``) every query of :mod:`.queries` gives the same answer (tests/provenance).
"""

from __future__ import annotations

import pathlib
import typing as t

from aiida import orm

from .dataset import DatasetData
from .tables import write_csv

__all__ = ('export_archive', 'export_dataset', 'write_csv')


def export_dataset(node: orm.Node | int | str, filename: str | pathlib.Path) -> pathlib.Path:
    """Write the ``DatasetData`` ``node`` (or the ``dataset`` output of a reference chain) to an extxyz file."""
    from .queries import load

    node = load(node)
    if isinstance(node, orm.WorkflowNode) and 'dataset' in node.outputs:
        node = node.outputs.dataset
    if not isinstance(node, DatasetData):
        raise ValueError(f'node {node.pk} is a {node.__class__.__name__}, not a DatasetData (nor a chain with one)')
    filename = pathlib.Path(filename)
    node.export_extxyz(filename)
    return filename


def export_archive(
    nodes: t.Iterable[orm.Node | int | str], filename: str | pathlib.Path, *, overwrite: bool = False
) -> pathlib.Path:
    """``verdi archive create -N <nodes> filename`` through the same API, with ``verdi``'s default traversal rules.

    Give the campaign (or reference chain) and any training/prediction jobs or decision records made outside it.
    """
    from aiida.tools.archive import create_archive

    from .queries import load

    entities = [load(node) for node in nodes]
    filename = pathlib.Path(filename)
    create_archive(entities, filename=filename, overwrite=overwrite)
    return filename
