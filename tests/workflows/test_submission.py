"""Submission control: an item whose marking fails half-way (the database goes away after the node is stored) is
found again by its label and adopted, not submitted a second time."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import WorkChain
from aiida.manage import get_manager
from aiida_mlqm.workflows.submission import KEY_EXTRA, SubmissionController


class Item(WorkChain):
    """A work item with one input; the controller only stores it and asks the broker to continue it."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('x', valid_type=orm.Int)
        spec.outline(cls.done)

    def done(self):
        pass


class Broker:
    """Stands in for the broker's process controller: records the processes it is asked to continue."""

    def __init__(self):
        self.continued = []

    def continue_process(self, pid, nowait=False, no_reply=True):
        self.continued.append(pid)


def builders(keys):
    def build(value):
        def make():
            builder = Item.get_builder()
            builder.x = orm.Int(value)
            return builder

        return make

    return {key: build(index) for index, key in enumerate(keys)}


def test_a_node_stored_but_not_marked_is_adopted_not_submitted_again(aiida_profile, monkeypatch):
    broker = Broker()
    monkeypatch.setattr(get_manager().get_runner(), '_controller', broker)
    group_label = 'submission-test-half-marked'
    items = builders(['a', 'b'])

    # the database goes away after the node of 'a' is stored and its extra set, before the group membership
    add_nodes = orm.Group.add_nodes
    calls = {'n': 0}

    def failing_add_nodes(self, nodes):
        calls['n'] += 1
        if calls['n'] == 1:
            raise RuntimeError('terminating connection due to administrator command')
        return add_nodes(self, nodes)

    monkeypatch.setattr(orm.Group, 'add_nodes', failing_add_nodes)
    with pytest.raises(RuntimeError, match='administrator command'):
        SubmissionController(group_label, items, max_concurrent=1).submit_new_batch()
    stored = orm.QueryBuilder().append(orm.ProcessNode, filters={'label': f'{group_label}/a'}).all(flat=True)
    assert len(stored) == 1 and broker.continued == []

    # the driver tries again with a fresh controller: 'a' is found by its label and adopted; nothing is stored twice
    controller = SubmissionController(group_label, items, max_concurrent=1)
    assert controller.submitted() == {'a': stored[0].pk}
    assert controller.submit_new_batch() == []  # 'a' takes the one slot (still created: repair revives it)
    assert orm.QueryBuilder().append(orm.ProcessNode, filters={'label': f'{group_label}/a'}).count() == 1
    assert stored[0].base.extras.get(KEY_EXTRA) == 'a'
    assert stored[0].pk in [node.pk for node in controller.group.nodes]
    assert controller.pending() == ['b']

    # with room, the next item goes through the whole path: stored under its label, marked, continued
    controller = SubmissionController(group_label, items, max_concurrent=2)
    (pk,) = controller.submit_new_batch()
    node = orm.load_node(pk)
    assert node.label == f'{group_label}/b' and node.base.extras.get(KEY_EXTRA) == 'b'
    assert broker.continued == [pk] and controller.pending() == []
