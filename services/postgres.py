"""PostgreSQL: the database and role of a production profile, made with aiida-core's own administration class.

:class:`aiida.manage.external.postgres.Postgres` (what ``verdi presto --use-postgres`` uses) checks and creates roles
and databases. Two things it cannot do here are done with psycopg: ``CREATE DATABASE`` (its command hard-codes the
``en_US.UTF-8`` locale, which a host with only ``C.UTF-8`` lacks) and a role whose password holds characters that its
string-formatted SQL would not quote. Names reaching its SQL are checked to be plain identifiers first.

Nothing here prints a password: :class:`PostgresSettings` keeps them out of ``repr`` and every message names host,
port and user only.
"""

from __future__ import annotations

import dataclasses
import re
import secrets

from .common import ServiceError, check_sql_name

SAFE_PASSWORD = re.compile(r'[A-Za-z0-9_.~-]+')


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

    def storage_config(self, repository_uri: str) -> dict:
        """The ``core.psql_dos`` storage configuration of a profile on this database."""
        return {
            'database_engine': 'postgresql_psycopg',
            'database_hostname': self.host,
            'database_port': self.port,
            'database_username': self.user,
            'database_password': self.password,
            'database_name': self.name,
            'repository_uri': repository_uri,
        }


def pg_connect(host: str, port: int, user: str, password: str | None, dbname: str, timeout: int = 5):
    """Open a psycopg connection in autocommit mode (``CREATE DATABASE`` refuses to run inside a transaction)."""
    import psycopg

    kwargs = {'host': host, 'port': port, 'user': user, 'dbname': dbname, 'connect_timeout': timeout}
    if password is not None:
        kwargs['password'] = password
    return psycopg.connect(autocommit=True, **kwargs)


def admin_client(settings: PostgresSettings):
    """aiida-core's :class:`~aiida.manage.external.postgres.Postgres` logged in as the admin role, over TCP.

    Never falls back to ``sudo`` (no prompt from a daemon or a test).

    :raises ServiceError: when the admin cannot log in.
    """
    from aiida.manage.external.postgres import Postgres

    dbinfo = {
        'host': settings.host,
        'port': settings.port,
        'user': settings.admin_user,
        'password': settings.admin_password,
        'dbname': 'postgres',
        'connect_timeout': 5,
    }
    client = Postgres(dbinfo=dbinfo, interactive=False, quiet=True, try_sudo=False)
    if not client.is_connected or client.dsn.get('user') != settings.admin_user:
        raise ServiceError(
            f'cannot create database {settings.name!r} and role {settings.user!r} on {settings.host}:{settings.port}: '
            f'the admin role {settings.admin_user!r} cannot log in',
            f'start PostgreSQL (sudo deploy/services.sh), give the admin password with MLQM_DB_ADMIN_PASSWORD, or '
            f'create both yourself with `sudo deploy/services.sh --create-db {settings.name} --db-user '
            f'{settings.user}` and pass the password with MLQM_DB_PASSWORD',
        )
    return client


def _holds_aiida_storage(connection) -> bool:
    row = connection.execute("SELECT to_regclass('public.db_dbnode') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _role_can_use_database(settings: PostgresSettings) -> bool:
    """Whether the role logs in to its database with the given password (refusing one that holds a storage)."""
    import psycopg

    try:
        with pg_connect(settings.host, settings.port, settings.user, settings.password, settings.name) as conn:
            if _holds_aiida_storage(conn):
                raise _taken(settings)
    except psycopg.OperationalError:
        return False
    return True


def ensure_database(settings: PostgresSettings, *, reset_role_password: bool = False) -> PostgresSettings:
    """Create the role and the (empty) database of ``settings`` unless they exist; return settings with a password.

    The role's own login is tried first, so that a database made beforehand (``deploy/services.sh --create-db``,
    docker-compose) is used without admin rights. Otherwise the admin role creates what is missing; a role created
    or reset here gets a random password unless one was given. A database that already holds an AiiDA storage is
    refused: two profiles on one database corrupt each other.

    :param reset_role_password: when the role exists and no password was given, set a new random one (only for a
        role whose name was derived from the profile: someone else's role is never changed).
    :raises ServiceError: when neither login works, a name is not a plain identifier, or the database is taken.
    """
    try:
        check_sql_name(settings.name, 'database name')
        check_sql_name(settings.user, 'database role')
    except ValueError as exception:
        raise ServiceError(str(exception), 'pass --db-name/--db-user with such a name') from None
    if settings.password is not None and _role_can_use_database(settings):
        return settings

    admin = admin_client(settings)
    password = settings.password or secrets.token_urlsafe(24)
    if admin.db_exists(settings.name):
        with pg_connect(settings.host, settings.port, settings.admin_user, settings.admin_password, settings.name) as c:
            if _holds_aiida_storage(c):
                raise _taken(settings)
    if not admin.dbuser_exists(settings.user):
        _create_role(admin, settings, password)
    elif settings.password is None:
        if not reset_role_password:
            raise ServiceError(
                f'role {settings.user!r} exists and no password was given',
                'pass its password with MLQM_DB_PASSWORD (or --db-password), or choose a new --db-user',
            )
        # A role named after this profile but no password known: set a fresh one rather than guess.
        _admin_sql(settings, 'ALTER ROLE {} PASSWORD {}', settings.user, password=password)
    if not admin.db_exists(settings.name):
        # Postgres.create_db would ask for the en_US.UTF-8 locale, which hosts with only C.UTF-8 lack.
        _admin_sql(
            settings,
            "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0",
            settings.name,
            settings.user,
        )
    _admin_sql(settings, 'GRANT ALL PRIVILEGES ON DATABASE {} TO {}', settings.name, settings.user)
    result = dataclasses.replace(settings, password=password)
    if not _role_can_use_database(result):
        raise ServiceError(
            f'role {settings.user!r} cannot log in to {settings.where()} after set-up',
            'check pg_hba.conf: the role needs password (scram-sha-256/md5) or trust access from this host',
        )
    return result


def _create_role(admin, settings: PostgresSettings, password: str) -> None:
    if SAFE_PASSWORD.fullmatch(password):
        admin.create_dbuser(settings.user, password, 'LOGIN')
    else:
        # aiida-core formats the password into its SQL unquoted; a quote in a user's password must not reach it.
        _admin_sql(settings, 'CREATE ROLE {} LOGIN PASSWORD {}', settings.user, password=password)


def _admin_sql(settings: PostgresSettings, template: str, *identifiers: str, password: str | None = None) -> None:
    """Run one statement as the admin role, identifiers and the password quoted by psycopg."""
    from psycopg import sql

    parts = [sql.Identifier(name) for name in identifiers]
    if password is not None:
        parts.append(sql.Literal(password))
    with pg_connect(settings.host, settings.port, settings.admin_user, settings.admin_password, 'postgres') as conn:
        conn.execute(sql.SQL(template).format(*parts))


def _taken(settings: PostgresSettings) -> ServiceError:
    return ServiceError(
        f'database {settings.where()} already holds an AiiDA storage (of another profile?)',
        'choose a new one with --db-name, or drop it if it is no longer used',
    )


def drop_database(settings: PostgresSettings, *, drop_role: bool = True) -> None:
    """Drop the database (closing its connections first) and, by default, its role; used by test teardown."""
    check_sql_name(settings.name, 'database name')
    check_sql_name(settings.user, 'database role')
    admin = admin_client(settings)
    admin.execute(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{settings.name}' "
        'AND pid <> pg_backend_pid()'
    )
    if admin.db_exists(settings.name):
        admin.drop_db(settings.name)
    if drop_role and admin.dbuser_exists(settings.user):
        admin.drop_dbuser(settings.user)


def server_start_time(settings: PostgresSettings) -> str:
    """``pg_postmaster_start_time()`` as text: it changes when the server restarts (used by the supervisor)."""
    with pg_connect(settings.host, settings.port, settings.user, settings.password, settings.name, timeout=3) as conn:
        return str(conn.execute('SELECT pg_postmaster_start_time()').fetchone()[0])
