"""PostgreSQL and RabbitMQ: connection settings, probes and the database set-up shared by ``mlqm setup`` and ``status``.

Nothing here prints a password: settings classes keep them out of ``repr`` and every message names host, port and
user only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
import socket
import subprocess

LOCAL_HOSTS = {'127.0.0.1', 'localhost', '::1'}
CONSUMER_TIMEOUT_FIX = (
    "rabbitmqctl eval 'application:set_env(rabbit, consumer_timeout, undefined).' (now) and "
    '[{rabbit, [{consumer_timeout, undefined}]}]. in /etc/rabbitmq/advanced.config (for restarts); '
    'sudo deploy/services.sh does both'
)


class ServiceError(Exception):
    """A service is unreachable or refuses what set-up needs; the message names the problem and the fix."""

    def __init__(self, problem: str, fix: str = ''):
        super().__init__(f'{problem}. Fix: {fix}' if fix else problem)
        self.problem = problem
        self.fix = fix


@dataclasses.dataclass
class PostgresSettings:
    """Where the AiiDA database lives and who owns it; ``admin_*`` is the role that may create both."""

    host: str = '127.0.0.1'
    port: int = 5432
    name: str = 'mlqm'
    user: str = 'mlqm'
    password: str | None = dataclasses.field(default=None, repr=False)
    admin_user: str = 'postgres'
    admin_password: str | None = dataclasses.field(default=None, repr=False)

    def where(self) -> str:
        return f'{self.user}@{self.host}:{self.port}/{self.name}'


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


def sql_name(text: str) -> str:
    """Turn a profile name into a PostgreSQL database/role name (lower case, ``[a-z0-9_]``, starting with ``mlqm``)."""
    name = re.sub(r'[^a-z0-9_]', '_', text.lower())
    # The prefix keeps a profile called e.g. 'postgres' away from roles that exist for other reasons.
    return name if name.startswith('mlqm') else f'mlqm_{name}'


def port_open(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS or host in {socket.gethostname(), socket.getfqdn()}


# ---------------------------------------------------------------------------------------------------- PostgreSQL
def pg_connect(host: str, port: int, user: str, password: str | None, dbname: str, timeout: int = 5):
    """Open a psycopg connection in autocommit mode (``CREATE DATABASE`` refuses to run inside a transaction)."""
    import psycopg

    kwargs = {'host': host, 'port': port, 'user': user, 'dbname': dbname, 'connect_timeout': timeout}
    if password is not None:
        kwargs['password'] = password
    return psycopg.connect(autocommit=True, **kwargs)


def _holds_aiida_storage(connection) -> bool:
    row = connection.execute("SELECT to_regclass('public.db_dbnode') IS NOT NULL").fetchone()
    return bool(row and row[0])


def ensure_database(settings: PostgresSettings, *, reset_role_password: bool = False) -> PostgresSettings:
    """Create the role and the (empty) database of ``settings`` unless they exist; return settings with a password.

    The role's own login is tried first, so that a database made beforehand (``deploy/services.sh --create-db``,
    docker-compose) is used without admin rights. Otherwise the admin role creates what is missing; a role created or
    reset here gets a random password unless one was given. A database that already holds an AiiDA storage is refused:
    two profiles on one database corrupt each other.

    :param reset_role_password: when the role exists and no password was given, set a new random one (only for a
        role whose name was derived from the profile: someone else's role is never changed).

    :raises ServiceError: when neither login works, or the database is taken.
    """
    import psycopg
    from psycopg import sql

    if settings.password is not None:
        try:
            with pg_connect(settings.host, settings.port, settings.user, settings.password, settings.name) as conn:
                if _holds_aiida_storage(conn):
                    raise _taken(settings)
            return settings
        except psycopg.OperationalError:
            pass  # the role or the database does not exist yet: the admin role creates them below

    try:
        admin = pg_connect(settings.host, settings.port, settings.admin_user, settings.admin_password, 'postgres')
    except psycopg.OperationalError as exception:
        first_line = ' '.join(str(exception).split()) or type(exception).__name__
        raise ServiceError(
            f'cannot create database {settings.name!r} and role {settings.user!r} on {settings.host}:{settings.port}: '
            f'the admin role {settings.admin_user!r} cannot log in ({first_line})',
            f'start PostgreSQL (sudo deploy/services.sh), or create both yourself with `sudo deploy/services.sh '
            f'--create-db {settings.name} --db-user {settings.user}` and pass the password with MLQM_DB_PASSWORD',
        ) from None

    password = settings.password or secrets.token_urlsafe(24)
    with admin:
        db_exists = admin.execute('SELECT 1 FROM pg_database WHERE datname = %s', (settings.name,)).fetchone()
        if db_exists:
            with pg_connect(
                settings.host, settings.port, settings.admin_user, settings.admin_password, settings.name
            ) as conn:
                if _holds_aiida_storage(conn):
                    raise _taken(settings)
        role_exists = admin.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (settings.user,)).fetchone()
        # The password is sent as a client-side literal: PostgreSQL does not accept bound parameters in CREATE ROLE.
        if not role_exists:
            admin.execute(
                sql.SQL('CREATE ROLE {} LOGIN PASSWORD {}').format(sql.Identifier(settings.user), sql.Literal(password))
            )
        elif settings.password is None:
            if not reset_role_password:
                raise ServiceError(
                    f'role {settings.user!r} exists and no password was given',
                    'pass its password with MLQM_DB_PASSWORD (or --db-password), or choose a new --db-user',
                )
            # A role named after this profile but no password known: set a fresh one rather than guess.
            admin.execute(
                sql.SQL('ALTER ROLE {} PASSWORD {}').format(sql.Identifier(settings.user), sql.Literal(password))
            )
        if not db_exists:
            admin.execute(
                sql.SQL(
                    "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' "
                    'TEMPLATE template0'
                ).format(sql.Identifier(settings.name), sql.Identifier(settings.user))
            )
        admin.execute(
            sql.SQL('GRANT ALL PRIVILEGES ON DATABASE {} TO {}').format(
                sql.Identifier(settings.name), sql.Identifier(settings.user)
            )
        )
    result = dataclasses.replace(settings, password=password)
    try:
        pg_connect(result.host, result.port, result.user, result.password, result.name).close()
    except psycopg.OperationalError as exception:
        raise ServiceError(
            f'role {settings.user!r} cannot log in to {settings.where()} after set-up ({exception})',
            'check pg_hba.conf: the role needs password (scram-sha-256/md5) or trust access from this host',
        ) from None
    return result


def _taken(settings: PostgresSettings) -> ServiceError:
    return ServiceError(
        f'database {settings.where()} already holds an AiiDA storage (of another profile?)',
        'choose a new one with --db-name, or drop it if it is no longer used',
    )


def drop_database(settings: PostgresSettings, *, drop_role: bool = True) -> None:
    """Drop the database (closing its connections first) and, by default, its role; used by test teardown."""
    from psycopg import sql

    with pg_connect(settings.host, settings.port, settings.admin_user, settings.admin_password, 'postgres') as admin:
        admin.execute(
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()',
            (settings.name,),
        )
        admin.execute(sql.SQL('DROP DATABASE IF EXISTS {}').format(sql.Identifier(settings.name)))
        if drop_role:
            admin.execute(sql.SQL('DROP ROLE IF EXISTS {}').format(sql.Identifier(settings.user)))


# ------------------------------------------------------------------------------------------------------ RabbitMQ
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
