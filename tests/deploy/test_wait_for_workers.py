"""Waiting for daemon workers: circus answers without ``info`` while workers start; the wait asks again until a
deadline instead of indexing the first answer (``KeyError: 'info'`` on a loaded machine)."""

from __future__ import annotations

import os
import types

import pytest
from aiida_mlqm.services.processes import wait_for_workers

PROFILE = types.SimpleNamespace(name='starting')


class StartingDaemon:
    """A daemon client whose first answers come before the workers are up."""

    def __init__(self, answers):
        self.answers = list(answers)

    def get_worker_info(self, timeout=None):
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def use(monkeypatch, client):
    import aiida.engine.daemon.client as daemon_client

    monkeypatch.setattr(daemon_client, 'get_daemon_client', lambda name: client)


def test_waits_through_answers_without_info(monkeypatch):
    me = os.getpid()
    use(monkeypatch, StartingDaemon([{}, ConnectionError('circus restarting'), {'info': {str(me): {}}}]))
    assert wait_for_workers(PROFILE, 1, timeout=10) == [me]


def test_times_out_naming_the_last_answer(monkeypatch):
    use(monkeypatch, StartingDaemon([{'status': 'ok'}]))
    expected = r"1 daemon worker\(s\) of starting not up within 1 s \(last answer: \{'status': 'ok'\}\)"
    with pytest.raises(TimeoutError, match=expected):
        wait_for_workers(PROFILE, 1, timeout=1)
