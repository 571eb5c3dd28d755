"""RabbitMQ: the broker connection of a profile, ``consumer_timeout`` and the depth of a profile's process queue.

Probed with pika directly, so that ``mlqm status`` can tell an unreachable broker from a daemon that does not answer.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

from .common import ServiceError, is_local

# The broker backend of profiles made by ``mlqm setup`` (services/broker.py), and every RabbitMQ backend mlqm reads.
BROKER_BACKEND = 'mlqm.rabbitmq'
RABBITMQ_BACKENDS = ('core.rabbitmq', BROKER_BACKEND)

CONSUMER_TIMEOUT_FIX = (
    "rabbitmqctl eval 'application:set_env(rabbit, consumer_timeout, undefined).' (now) and "
    '[{rabbit, [{consumer_timeout, undefined}]}]. in /etc/rabbitmq/advanced.config (for restarts); '
    'sudo deploy/services.sh does both'
)


@dataclasses.dataclass
class RabbitmqSettings:
    """RabbitMQ connection as AiiDA's ``core.rabbitmq`` broker stores it (``vhost`` '' is the default ``/``)."""

    host: str = '127.0.0.1'
    port: int = 5672
    user: str = 'guest'
    password: str = dataclasses.field(default='guest', repr=False)
    vhost: str = ''

    @classmethod
    def from_profile_config(cls, config: dict) -> RabbitmqSettings:
        return cls(
            host=config.get('broker_host', '127.0.0.1'),
            port=int(config.get('broker_port', 5672)),
            user=config.get('broker_username', 'guest'),
            password=config.get('broker_password', 'guest'),
            vhost=config.get('broker_virtual_host', '') or '',
        )

    def profile_config(self) -> dict:
        return {
            'broker_protocol': 'amqp',
            'broker_username': self.user,
            'broker_password': self.password,
            'broker_host': self.host,
            'broker_port': self.port,
            'broker_virtual_host': self.vhost,
        }

    def where(self) -> str:
        return f'{self.user}@{self.host}:{self.port}/{self.vhost}'


def rabbitmq_connection(settings: RabbitmqSettings, timeout: float = 5.0):
    """Open a blocking pika connection; raises :class:`ServiceError` naming where it tried and a fix."""
    import pika
    import pika.exceptions

    parameters = pika.ConnectionParameters(
        host=settings.host,
        port=settings.port,
        virtual_host=settings.vhost or '/',
        credentials=pika.PlainCredentials(settings.user, settings.password),
        connection_attempts=1,
        socket_timeout=timeout,
        blocked_connection_timeout=timeout,
        stack_timeout=timeout,
    )
    try:
        return pika.BlockingConnection(parameters)
    except pika.exceptions.ProbableAuthenticationError:
        raise ServiceError(
            f'RabbitMQ at {settings.host}:{settings.port} refused user {settings.user!r} (wrong password or vhost?)',
            "pass --broker-user/--broker-password; guest/guest only works from the broker's own host",
        ) from None
    except pika.exceptions.AMQPError as exception:
        raise ServiceError(
            f'RabbitMQ not reachable at {settings.host}:{settings.port} ({type(exception).__name__})',
            'start it (sudo deploy/services.sh) or pass --broker-host/--broker-port',
        ) from None


def process_queue_depth(settings: RabbitmqSettings, profile_uuid: str) -> tuple[int, int] | None:
    """Return ``(messages, consumers)`` of a profile's process queue, ``None`` when the queue was never declared.

    A passive declare only looks: it never creates the queue.
    """
    import pika.exceptions

    connection = rabbitmq_connection(settings)
    try:
        channel = connection.channel()
        try:
            frame = channel.queue_declare(f'aiida-{profile_uuid}.process.queue', passive=True)
        except pika.exceptions.ChannelClosedByBroker as exception:
            if exception.reply_code == 404:
                return None
            raise
        return frame.method.message_count, frame.method.consumer_count
    finally:
        connection.close()


def consumer_timeout(host: str) -> str | None:
    """Return the broker's ``consumer_timeout`` as ``rabbitmqctl`` prints it, or ``None`` when it cannot be asked.

    ``rabbitmqctl`` only reaches a broker on this host (and needs its Erlang cookie, so usually root).
    ``'undefined'`` and ``'{ok,undefined}'`` both mean disabled.
    """
    rabbitmqctl = shutil.which('rabbitmqctl') or next(
        (p for p in ('/usr/sbin/rabbitmqctl', '/usr/lib/rabbitmq/bin/rabbitmqctl') if os.path.exists(p)), None
    )
    if not is_local(host) or rabbitmqctl is None:
        return None
    try:
        result = subprocess.run(
            [rabbitmqctl, 'eval', 'application:get_env(rabbit, consumer_timeout).'],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip()


def timeout_disabled(value: str | None) -> bool | None:
    """``True``/``False`` from :func:`consumer_timeout`'s answer, ``None`` when unknown."""
    if value is None:
        return None
    return value in {'undefined', '{ok,undefined}'}
