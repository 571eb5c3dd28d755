"""The real chain the provenance query, export and report tests ask about (built once per session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope='session')
def chain(mlqm_code):
    from provenance_chain import build_chain

    return build_chain(mlqm_code)
