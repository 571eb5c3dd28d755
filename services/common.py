"""What every service module shares: the error type, host helpers and the rules for names that become paths or SQL."""

from __future__ import annotations

import re
import socket

LOCAL_HOSTS = {'127.0.0.1', 'localhost', '::1'}
PROFILE_NAME_PATTERN = re.compile(r'[A-Za-z0-9_-]{1,64}')
SQL_NAME_PATTERN = re.compile(r'[A-Za-z_][A-Za-z0-9_]{0,62}')


class ServiceError(Exception):
    """A service is unreachable or refuses what set-up needs; the message names the problem and the fix."""

    def __init__(self, problem: str, fix: str = ''):
        super().__init__(f'{problem}. Fix: {fix}' if fix else problem)
        self.problem = problem
        self.fix = fix


def check_profile_name(name: str) -> str:
    """Return ``name`` if it is letters, digits, ``_`` and ``-`` only (1-64 characters); raise ``ValueError`` if not.

    The name becomes a folder under ``~/.mlqm`` and a database name: ``../x`` or ``a/b`` would put storage elsewhere.
    """
    if not isinstance(name, str) or not PROFILE_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f'profile name {name!r} may only hold letters, digits, `_` and `-` (at most 64 characters), '
            'e.g. mlqm-psql'
        )
    return name


def check_sql_name(name: str, what: str) -> str:
    """Return ``name`` if it is a plain PostgreSQL identifier (``[A-Za-z_][A-Za-z0-9_]*``); raise ``ValueError`` if not.

    aiida-core's :class:`~aiida.manage.external.postgres.Postgres` formats names into its SQL: nothing else may go in.
    """
    if not isinstance(name, str) or not SQL_NAME_PATTERN.fullmatch(name):
        raise ValueError(f'{what} {name!r} must be letters, digits and `_`, starting with a letter or `_`')
    return name


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
    """Whether ``host`` names this machine (so local admin tools such as ``rabbitmqctl`` can reach the service)."""
    return host in LOCAL_HOSTS or host in {socket.gethostname(), socket.getfqdn()}


def first_line(exception: BaseException) -> str:
    """``Type: first line of the message``: what a table cell can hold."""
    text = str(exception).strip()
    return f'{type(exception).__name__}: {text.splitlines()[0] if text else ""}'.rstrip(': ')
