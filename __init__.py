"""aiida-mlqm: high-throughput ML/QM campaigns on AiiDA.

The repository root is this package (see ``pyproject.toml``): ``calcjobs``, ``parsers``, ``workflows``, ``models``,
``provenance`` and ``cli`` are its subpackages.
"""
from __future__ import annotations

__version__ = '0.1.0'
