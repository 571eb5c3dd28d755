"""The ``mlqm.rabbitmq`` broker's communicator waits through a RabbitMQ outage where AiiDA's own raises.

On a private RabbitMQ node (:class:`aiida_mlqm.services.drill.DrillServices`): stopping the shared broker would break
every other test. With the node stopped, AiiDA's communicator raises at once on a task send, a subscription and a
broadcast, which marks the calling process excepted (what lost a chain of 100 structures in the 10,000-molecule scale
run); the tolerant one returns once the node is back, and the task it sent is delivered.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
from service_fixtures import require_service

pytestmark = [pytest.mark.rabbitmq]


def test_what_counts_as_the_broker_being_away():
    """Each message aiormq and aio_pika raised in these tests while the broker restarted; not a refused or slow call."""
    import aiormq.exceptions
    import kiwipy

    from aiida_mlqm.services.broker import broker_is_away

    assert broker_is_away(aiormq.exceptions.ChannelInvalidStateError('<RobustChannel ...> closed'))
    assert broker_is_away(RuntimeError('<Connection: "amqp://guest:******@127.0.0.1:5672/" at 0x7f87> closed'))
    assert broker_is_away(RuntimeError('Connection was not opened'))
    assert broker_is_away(ConnectionRefusedError(111, 'Connect call failed'))
    assert not broker_is_away(RuntimeError('a bug'))
    assert not broker_is_away(kiwipy.UnroutableError('NO_ROUTE'))  # retried only within an outage
    assert not broker_is_away(kiwipy.TimeoutError())


@pytest.fixture(scope='module')
def private_rabbitmq():
    require_service(os.geteuid() == 0, 'root (the test runs its own RabbitMQ node as the rabbitmq user)', 'sudo')
    require_service(os.path.exists('/usr/lib/rabbitmq/bin/rabbitmq-server'), 'rabbitmq-server',
                    'apt-get install rabbitmq-server')
    from aiida_mlqm.services.drill import DrillServices

    services = DrillServices()
    try:
        services.start_rabbitmq()
        yield services
    finally:
        services.stop()


def connect(services, cls, queue):
    return cls.connect(connection_params={'url': f'amqp://guest:guest@127.0.0.1:{services.amqp_port}/'},
                       task_queue=queue, testing_mode=False)


class restart_later(threading.Thread):  # noqa: N801 - used as a function
    """Stop the node's broker application now and start it again ``seconds`` later, in a thread; :meth:`join` raises
    what the start raised."""

    def __init__(self, services, seconds: float):
        super().__init__()
        self.services, self.seconds, self.error = services, seconds, None
        services.stop_rabbitmq_app()
        self.start()

    def run(self):
        time.sleep(self.seconds)
        try:
            self.services.start_rabbitmq_app()
        except Exception as exception:  # noqa: BLE001 - handed to the test in join()
            self.error = exception

    def join(self, timeout=None):
        super().join(timeout)
        if self.error is not None:
            raise self.error


def test_aiida_communicator_raises_while_the_broker_is_away(private_rabbitmq):
    from kiwipy.rmq import RmqThreadCommunicator

    from aiida_mlqm.services.broker import broker_is_away

    communicator = connect(private_rabbitmq, RmqThreadCommunicator, f'plain-{uuid.uuid4().hex[:6]}')
    try:
        back = restart_later(private_rabbitmq, 2.0)
        with pytest.raises(Exception) as raised:
            communicator.task_send({'continue': 1}, no_reply=True)
        assert broker_is_away(raised.value), repr(raised.value)
        back.join()
    finally:
        communicator.close()


def test_tolerant_communicator_waits_and_the_task_arrives(private_rabbitmq):
    from kiwipy.rmq import RmqThreadCommunicator

    from aiida_mlqm.services.broker import OutageTolerantCommunicator

    queue = f'tolerant-{uuid.uuid4().hex[:6]}'
    communicator = connect(private_rabbitmq, OutageTolerantCommunicator, queue)
    communicator.outage_s = 120.0  # a failure here should not wait the production 900 s
    try:
        communicator.task_send({'warm': 0}, no_reply=True)  # declares the (durable) queue before the outage
        back = restart_later(private_rabbitmq, 3.0)
        start = time.monotonic()
        communicator.task_send({'continue': 42}, no_reply=True)
        waited = time.monotonic() - start
        communicator.broadcast_send(None, sender=42, subject='state_changed.created.waiting')
        communicator.add_broadcast_subscriber(lambda *args, **kwargs: None, 'outage-subscriber')
        back.join()
        assert waited > 1.5, f'task_send returned after {waited:.1f} s, before the broker was back'
    finally:
        communicator.close()

    received = []
    consumer = connect(private_rabbitmq, RmqThreadCommunicator, queue)
    try:
        consumer.add_task_subscriber(lambda _, task: received.append(task))
        deadline = time.monotonic() + 60
        while {'continue': 42} not in received and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        consumer.close()
    assert {'continue': 42} in received, received


def test_tolerant_communicator_gives_up_after_its_deadline(private_rabbitmq):
    from aiida_mlqm.services.broker import OutageTolerantCommunicator, broker_is_away

    communicator = connect(private_rabbitmq, OutageTolerantCommunicator, f'deadline-{uuid.uuid4().hex[:6]}')
    communicator.outage_s = 1.0
    try:
        back = restart_later(private_rabbitmq, 4.0)
        start = time.monotonic()
        with pytest.raises(Exception) as raised:
            communicator.task_send({'continue': 7}, no_reply=True)
        assert broker_is_away(raised.value) and 0.9 < time.monotonic() - start < 3.5
        assert communicator.broadcast_send(None, sender=7, subject='x') is None  # dropped, never raised
        back.join()
    finally:
        communicator.close()
