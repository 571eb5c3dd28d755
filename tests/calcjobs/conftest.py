"""Fixtures of the job tests: a PySCF that works in the test process (molecules: ``make_structure``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def pyscf_direct(monkeypatch):
    """PySCF in the test process, with the runner's numpy-2 compatibility (undone after the test).

    PySCF 2.3 needs it on numpy 2 for the coupled-cluster lambda equations (gradients); the reference values are
    otherwise computed by PySCF alone. One thread, as in the jobs: PySCF 2.3's UKS results move by up to ~2e-7 Ha
    with the thread count here (OH/STO-3G), so equal settings include equal threads.
    """
    import numpy
    from pyscf import lib
    from pyscf.lib import numpy_helper

    threads = lib.num_threads()
    lib.num_threads(1)

    from aiida_mlqm.calcjobs.runners.pyscf_runner import apply_numpy2_compatibility

    monkeypatch.setattr(numpy, 'array', numpy.array)
    monkeypatch.setattr(numpy_helper, '_einsum_path', numpy_helper._einsum_path)
    apply_numpy2_compatibility()
    import pyscf

    yield pyscf
    lib.num_threads(threads)
