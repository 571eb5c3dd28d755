"""Shared fixtures.

The embedded back end (``core.sqlite_dos``, no broker) comes from ``aiida.tools.pytest_fixtures``; the PostgreSQL,
RabbitMQ and SLURM back ends have their own fixtures below. In CI (``CI=true``) a test whose service is missing fails;
outside CI it is skipped with the command that starts the service.
"""
from __future__ import annotations

import os
import tempfile

import pytest

# PySCF writes its scratch files (SCF checkpoints, HDF5) to $TMPDIR or else the working directory, which for tests run
# in-process is the checkout: keep them in the system's temporary folder (set before any test imports PySCF).
os.environ.setdefault('PYSCF_TMPDIR', tempfile.gettempdir())

pytest_plugins = ['aiida.tools.pytest_fixtures']

# ``require_service`` (fail in CI, skip elsewhere) lives in service_fixtures, importable from any test module:
# ``conftest`` is not, since pytest imports several files of that name.
from service_fixtures import IN_CI, require_service  # noqa: E402,F401


@pytest.fixture(scope='session')
def aiida_profile(aiida_profile):
    """aiida-core's test profile, with its SQLite database in write-ahead-log mode as ``mlqm setup`` makes it."""
    from aiida_mlqm.services.profiles import use_write_ahead_log

    use_write_ahead_log(aiida_profile)
    return aiida_profile


@pytest.fixture(scope='session')
def make_structure():
    """The one factory of test molecules: an unstored non-periodic ``StructureData`` with attributes.

    ``atoms`` is a G2 name (``'H2O'``: :func:`aiida_mlqm.provenance.structures.g2_structure`, charge 0 and the G2
    multiplicity) or ``[(symbol, (x, y, z)), ...]`` in Å. Keyword arguments become attributes (``charge=-1``, ``multiplicity=3``, ``name='water'``) and override the
    G2 ones.
    """
    from aiida import orm
    from aiida_mlqm.provenance.structures import g2_structure

    def factory(atoms, **attributes):
        if isinstance(atoms, str):
            structure, atoms = g2_structure(atoms), ()
        else:
            structure = orm.StructureData(cell=[[20.0, 0, 0], [0, 20.0, 0], [0, 0, 20.0]], pbc=(False, False, False))
        for symbol, position in atoms:
            structure.append_atom(symbols=symbol, position=position)
        for key, value in attributes.items():
            structure.base.attributes.set(key, value)
        return structure

    return factory


@pytest.fixture(scope='session')
def mlqm_localhost(aiida_profile):
    """The ``localhost`` computer as ``mlqm setup`` makes it (core.direct, core.local, zero poll interval)."""
    import tempfile

    from aiida_mlqm.services.profiles import ensure_localhost_computer

    return ensure_localhost_computer('localhost-mlqm', workdir=tempfile.mkdtemp(prefix='mlqm-work-'))


@pytest.fixture(scope='session')
def mlqm_code(mlqm_localhost):
    """The Python code with PySCF on ``localhost``, as ``mlqm setup`` makes it."""
    from aiida_mlqm.services.profiles import ensure_python_code

    return ensure_python_code(mlqm_localhost)


# Production back ends (PostgreSQL + RabbitMQ + daemon, SLURM): fixtures psql_daemon_profile, slurm_profile and the
# helper run_in_profile live in tests/service_fixtures.py.
pytest_plugins = [*pytest_plugins, 'service_fixtures']
