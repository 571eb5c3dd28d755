"""``mlqm.rabbitmq``: AiiDA's RabbitMQ broker, with a communicator that waits through a broker outage.

With aiida-core 2.9's ``core.rabbitmq`` broker, every call a process makes on the broker while RabbitMQ is away raises
at once (``aiormq.exceptions.ChannelInvalidStateError: ... closed``, or a bare ``RuntimeError: <Connection ...>
closed``): a work chain that submits a child in that moment (the child's task is sent), starts waiting for one (a
broadcast subscriber is added) or changes state (a broadcast is sent) is marked *excepted*, for good
(aiidateam/aiida-core#5899). Seen in ``python -m benchmarks scale``: one chain of 100 structures lost at the RabbitMQ
restart, its batch jobs never submitted.

:class:`OutageTolerantCommunicator` retries such a call every :data:`RETRY_S` seconds until the broker's robust
connection is back (it reconnects by itself, in the communicator's own thread), for up to :data:`OUTAGE_S` seconds
(``MLQM_BROKER_OUTAGE_S``), and only then raises. A worker whose broker is away thus stops where it is instead of
marking its processes excepted; ``mlqm supervise`` stops the daemon during the outage, and every process continues
from its last checkpoint afterwards. A state-change broadcast that cannot be sent in that time is dropped with a
warning (a waiting caller also polls its children).

Profiles made by ``mlqm setup`` use this broker (``process_control.backend: mlqm.rabbitmq``); it is AiiDA's own in
every other respect, so ``verdi`` works with it unchanged.
"""

from __future__ import annotations

import functools
import os
import time

import kiwipy
from aiida.brokers.rabbitmq.broker import RabbitmqBroker
from aiida.common.log import AIIDA_LOGGER
from kiwipy.rmq import RmqThreadCommunicator

# under AiiDA's logger, so that a worker's waits are in the daemon log (`verdi daemon logshow`)
LOGGER = AIIDA_LOGGER.getChild('mlqm.broker')
RETRY_S = 0.5
OUTAGE_S = float(os.environ.get('MLQM_BROKER_OUTAGE_S', 900))


def broker_is_away(exception: BaseException) -> bool:
    """Whether ``exception`` says the connection to RabbitMQ is gone (as opposed to a refused or timed-out call)."""
    import aiormq.exceptions

    if isinstance(exception, (aiormq.exceptions.AMQPConnectionError, aiormq.exceptions.ChannelInvalidStateError)):
        return True
    if isinstance(exception, ConnectionError):
        return True
    # While the robust connection reconnects, aiormq and aio_pika also raise bare RuntimeErrors: "<Connection: ...>
    # closed", "<RobustConnection ...> connection closed", "Connection was not opened"
    text = str(exception).strip()
    return type(exception) is RuntimeError and (text.endswith('closed') or text.endswith('was not opened'))


def _through_outages(method, *, drop: bool = False):
    """Wrap a communicator ``method``: retry while :func:`broker_is_away`, for up to :data:`OUTAGE_S` seconds.

    :param drop: after the deadline log and return ``None`` instead of raising (for broadcasts nobody must receive).
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        deadline = None
        while True:
            try:
                result = method(self, *args, **kwargs)
            except Exception as exception:
                # Right after the broker is back, its durable queues are still being recovered: a task sent then is
                # returned as unroutable. Within an outage that is part of the outage; outside one it is an error.
                restoring = deadline is not None and isinstance(exception, kiwipy.UnroutableError)
                if not (broker_is_away(exception) or restoring) or self.is_closed():
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.outage_s
                    LOGGER.warning('RabbitMQ is away (%s: %s): %s waits up to %.0f s for it to come back',
                                   type(exception).__name__, exception, method.__name__, self.outage_s)
                if now > deadline:
                    if drop:
                        LOGGER.warning('RabbitMQ stayed away for %.0f s: %s dropped', self.outage_s, method.__name__)
                        return None
                    raise
                time.sleep(RETRY_S)
                continue
            if deadline is not None:
                LOGGER.warning('RabbitMQ is back: %s went through', method.__name__)
            return result

    return wrapper


class OutageTolerantCommunicator(RmqThreadCommunicator):
    """A thread communicator whose sends and subscriptions wait for a broker that went away, see the module text."""

    outage_s = OUTAGE_S

    task_send = _through_outages(RmqThreadCommunicator.task_send)
    rpc_send = _through_outages(RmqThreadCommunicator.rpc_send)
    broadcast_send = _through_outages(RmqThreadCommunicator.broadcast_send, drop=True)
    add_rpc_subscriber = _through_outages(RmqThreadCommunicator.add_rpc_subscriber)
    add_task_subscriber = _through_outages(RmqThreadCommunicator.add_task_subscriber)
    add_broadcast_subscriber = _through_outages(RmqThreadCommunicator.add_broadcast_subscriber)


class OutageTolerantRabbitmqBroker(RabbitmqBroker):
    """AiiDA's RabbitMQ broker, connecting with :class:`OutageTolerantCommunicator`."""

    def _create_communicator(self) -> RmqThreadCommunicator:
        """The communicator AiiDA's own broker makes (same queues, exchanges and options), of the tolerant class."""
        from aiida.brokers.rabbitmq.utils import get_launch_queue_name, get_message_exchange_name, get_task_exchange_name
        from aiida.manage.configuration import get_config_option
        from aiida.orm.utils import serialize

        return OutageTolerantCommunicator.connect(
            connection_params={'url': self.get_url()},
            message_exchange=get_message_exchange_name(self._prefix),
            encoder=functools.partial(serialize.serialize, encoding='utf-8'),
            decoder=serialize.deserialize_unsafe,
            task_exchange=get_task_exchange_name(self._prefix),
            task_queue=get_launch_queue_name(self._prefix),
            task_prefetch_count=get_config_option('daemon.worker_process_slots'),
            async_task_timeout=get_config_option('broker.task_timeout'),
            testing_mode=self._profile.is_test_profile,
        )
