"""Submission control: keep at most a set number of processes of a group active, as aiida-submission-controller does.

A campaign of thousands of molecules is split into work items (here: chains of a few batch jobs each); the
controller submits the next items as earlier ones finish, so that the daemon, the scheduler queue and the database
never hold more than ``max_concurrent`` of them at once. Items are marked by a key (an extra of the submitted node, and
the node is a member of the controller's group), so a controller that is stopped and started again submits nothing
twice.

Each item is stored and marked before its task goes to the broker: if the broker is away at that moment, the node
waits as ``Created`` without a task, which ``verdi process repair`` (or ``mlqm supervise``) revives, instead of
being submitted a second time under the same key. The node is stored with its key in its label (one commit with the
node itself); the key extra and the group membership follow in later commits, so a database that goes away between
them leaves a node the controller still finds by its label, and adopts, instead of submitting the key again.
"""

from __future__ import annotations

import collections.abc
import typing as t

from aiida import orm

KEY_EXTRA = 'submission_key'
ACTIVE_STATES = ('created', 'waiting', 'running')


class SubmissionController:
    """Submit ``builders[key]()`` for each key, at most ``max_concurrent`` active at once, members of ``group_label``.

    :param builders: key -> a callable returning a ``ProcessBuilder`` (called only when the item is submitted).
    """

    def __init__(
        self,
        group_label: str,
        builders: collections.abc.Mapping[str, t.Callable[[], t.Any]],
        *,
        max_concurrent: int,
    ):
        if max_concurrent < 1:
            raise ValueError('max_concurrent must be at least 1')
        self.group, _ = orm.Group.collection.get_or_create(group_label)
        self.builders = builders
        self.max_concurrent = max_concurrent

    def _members(self, filters: dict | None = None) -> list:
        query = orm.QueryBuilder().append(orm.Group, filters={'id': self.group.pk}, tag='group')
        query.append(
            orm.ProcessNode, with_group='group', filters=filters or {}, project=[f'extras.{KEY_EXTRA}', 'id']
        )
        return query.all()

    def label_of(self, key: str) -> str:
        """The label an item's node is stored with (so it is found even when the marking after the store failed)."""
        return f'{self.group.label}/{key}'

    def _unmarked(self, marked: dict[str, int]) -> dict[str, int]:
        """Key -> pk of nodes stored under an item's label that are not marked (key extra and group) yet."""
        labels = {self.label_of(key): key for key in self.builders if key not in marked}
        if not labels:
            return {}
        query = orm.QueryBuilder().append(
            orm.ProcessNode, filters={'label': {'in': list(labels)}}, project=['label', 'id']
        )
        return {labels[label]: pk for label, pk in query.all()}

    def submitted(self) -> dict[str, int]:
        """Key -> pk of every item submitted so far (marked, or stored under its label only)."""
        marked = {key: pk for key, pk in self._members() if key is not None}
        return {**self._unmarked(marked), **marked}

    def adopt(self) -> list[int]:
        """Mark nodes whose marking failed half-way (stored under their label, the extra or group missing)."""
        marked = {key: pk for key, pk in self._members() if key is not None}
        adopted = []
        for key, pk in self._unmarked(marked).items():
            node = orm.load_node(pk)
            node.base.extras.set(KEY_EXTRA, key)
            self.group.add_nodes([node])
            adopted.append(pk)
        return adopted

    def active(self) -> int:
        return len(self._members({'attributes.process_state': {'in': list(ACTIVE_STATES)}}))

    def pending(self) -> list[str]:
        done = self.submitted()
        return [key for key in self.builders if key not in done]

    def submit_new_batch(self) -> list[int]:
        """Submit as many pending items as the limit allows; return their pks."""
        self.adopt()
        free = self.max_concurrent - self.active()
        submitted = []
        for key in self.pending()[: max(free, 0)]:
            submitted.append(self._submit(key, self.builders[key]()))
        return submitted

    def _submit(self, key: str, builder) -> int:
        """aiida-core's ``submit``, with the key and group set between storing the node and sending its task."""
        from aiida.engine.utils import instantiate_process
        from aiida.manage import get_manager

        runner = get_manager().get_runner()
        builder.metadata.label = self.label_of(key)  # stored with the node: found again whatever fails below
        process = instantiate_process(runner, builder)
        runner.persister.save_checkpoint(process)
        process.close()
        process.node.base.extras.set(KEY_EXTRA, key)
        self.group.add_nodes([process.node])
        runner.controller.continue_process(process.pid, nowait=False, no_reply=True)
        return process.node.pk

    @property
    def finished(self) -> bool:
        return not self.pending() and self.active() == 0
