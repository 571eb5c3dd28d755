"""What the node-creating ``mlqm`` commands share: the current profile, running a process with a progress view, JSON.

A process runs on the daemon when the profile has a broker and daemon workers are up (``verdi daemon start``), and
in this Python process otherwise (the embedded default has no broker). Either way the command waits and shows the
process state and, for a job on this machine, the last line of its log (training prints one line per epoch).
"""

from __future__ import annotations

import getpass
import json
import pathlib
import sys
import threading
import time
import typing as t

import click

PROFILE_OPTION = click.option(
    '--profile',
    'profile_name',
    help='AiiDA profile (default: the current one, i.e. $AIIDA_PROFILE or the default profile; the embedded `mlqm` '
    'profile is made when there is none).',
)
JSON_OPTION = click.option(
    '--json', 'as_json', is_flag=True, help='Print one JSON object (pk and uuid of what was created) instead of tables.'
)


def load_current_profile(profile_name: str | None = None):
    """Load ``profile_name``, else the current profile, else make and load the embedded default."""
    import os

    from aiida import load_profile
    from aiida.manage.configuration import get_config

    if profile_name:
        return load_profile(profile_name, allow_switch=True)
    config = get_config(create=True)
    if os.environ.get('AIIDA_PROFILE') or config.default_profile_name:
        return load_profile(allow_switch=True)
    from ..services.profiles import ensure_embedded_profile

    return ensure_embedded_profile()


def python_code():
    """The ``mlqm-python`` code on ``localhost`` of the loaded profile (made when missing)."""
    from ..services.profiles import ensure_localhost_computer, ensure_python_code

    return ensure_python_code(ensure_localhost_computer())


def make_console(as_json: bool):
    """A console for tables and progress; with ``--json`` it writes to stderr so that stdout is the JSON alone."""
    from rich.console import Console

    return Console(stderr=as_json, width=None if sys.stdout.isatty() else 120)


def print_json(values: dict[str, t.Any]) -> None:
    click.echo(json.dumps(values, indent=1, default=_json_default))


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def node_ref(node) -> dict[str, t.Any]:
    return {'pk': node.pk, 'uuid': node.uuid}


def load_node_of(identifier: str, cls, what: str):
    """Load a node by pk, uuid (prefix) or label and check its type; ``click.BadParameter`` naming the fix otherwise."""
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        node = orm.load_node(identifier)
    except NotExistent:
        try:
            node = orm.QueryBuilder().append(cls, filters={'label': identifier}).one()[0]
        except (NotExistent, MultipleObjectsError):
            raise click.BadParameter(
                f'no {what} with pk, uuid or label {identifier!r} in this profile; list them with `verdi data '
                f'{cls.__name__ == "DatasetData" and "mlqm.dataset" or "mlqm.model"} list`'
            ) from None
    except MultipleObjectsError:
        raise click.BadParameter(f'{identifier!r} matches several nodes: give more of the uuid') from None
    if not isinstance(node, cls):
        raise click.BadParameter(f'node {node.pk} is a {type(node).__name__}, not a {what}')
    return node


def _remote_log(node, filename: str) -> pathlib.Path | None:
    """Where the job writes ``filename`` on this machine (local transports only), or ``None``."""
    computer = node.computer
    if computer is None or computer.transport_type != 'core.local':
        return None
    workdir = computer.get_workdir().format(username=getpass.getuser())
    uuid = node.uuid
    return pathlib.Path(workdir) / uuid[:2] / uuid[2:4] / uuid[4:] / filename


def _last_line(path: pathlib.Path | None) -> str:
    if path is None or not path.is_file():
        return ''
    try:
        with open(path, 'rb') as handle:
            handle.seek(max(0, path.stat().st_size - 2048))
            lines = [line for line in handle.read().decode(errors='replace').splitlines() if line.strip()]
    except OSError:
        return ''
    return lines[-1][:110] if lines else ''


def daemon_running() -> bool:
    from aiida.manage import get_manager

    profile = get_manager().get_profile()
    if profile is None or profile.process_control_backend is None:
        return False
    try:
        from aiida.engine.daemon.client import get_daemon_client

        return get_daemon_client().is_daemon_running
    except Exception:  # noqa: BLE001 - a daemon we cannot ask about is one we do not use
        return False


def run_process(
    process_class, inputs: dict[str, t.Any], *, console, log_file: str | None = None, timeout: float | None = None
):
    """Run ``process_class`` with ``inputs`` (on the daemon when it runs) showing its state and log; return the node.

    :param log_file: the job's stdout file name, whose last line is shown while it runs.
    :raises click.ClickException: when the process does not finish successfully, with how to see why.
    """
    from aiida.engine import submit

    if daemon_running():
        node = submit(process_class, **inputs)
        where = 'daemon'
        with console.status(f'{process_class.__name__}<{node.pk}> submitted to the daemon') as status:
            deadline = None if timeout is None else time.time() + timeout
            while not node.is_terminated:
                if deadline is not None and time.time() > deadline:
                    raise click.ClickException(f'{process_class.__name__}<{node.pk}> did not finish in {timeout} s')
                status.update(_progress_text(process_class, node, log_file))
                time.sleep(0.5)
    else:
        node = _run_here(process_class, inputs, console=console, log_file=log_file)
        where = 'this process'
    if not node.is_finished_ok:
        raise click.ClickException(
            f'{process_class.__name__}<{node.pk}> failed with exit status {node.exit_status}: {node.exit_message}. '
            f'See why with `verdi process report {node.pk}`.'
        )
    console.print(f'{process_class.__name__}<{node.pk}> finished ({where})')
    return node


def _progress_text(process_class, node, log_file: str | None) -> str:
    line = _last_line(_remote_log(node, log_file)) if log_file and node.computer is not None else ''
    state = node.process_state.value if node.process_state else 'created'
    job = node.get_scheduler_state() if hasattr(node, 'get_scheduler_state') else None
    text = f'{process_class.__name__}<{node.pk}> {state}' + (f' ({job.value})' if job else '')
    return text + (f'  {line}' if line else '')


def _run_here(process_class, inputs: dict[str, t.Any], *, console, log_file: str | None):
    """Run in this Python process; a thread shows the job's log meanwhile (it reads files only, never the storage)."""
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    runner = get_manager().get_runner()
    process = instantiate_process(runner, process_class, **inputs)
    node = process.node
    log = _remote_log(node, log_file) if log_file and getattr(node, 'computer', None) is not None else None
    name = f'{process_class.__name__}<{node.pk}>'
    done = threading.Event()
    with console.status(f'{name} running here') as status:

        def watch() -> None:
            while not done.wait(0.5):
                line = _last_line(log)
                status.update(f'{name} running here' + (f'  {line}' if line else ''))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            process.execute()
        finally:
            done.set()
            watcher.join(timeout=2)
    return node
