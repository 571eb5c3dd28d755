"""``mlqm setup``: create or reuse a profile, the ``localhost`` computer and the Python code that runs PySCF jobs.

The functions are importable so that ``mlqm demo``, tests and notebooks reach the same set-up as the command.
"""
from __future__ import annotations

import os
import pathlib
import sys

import click

from . import main

DEFAULT_PROFILE = 'mlqm'
DEFAULT_COMPUTER = 'localhost'
DEFAULT_CODE = 'mlqm-python'


def mlqm_home() -> pathlib.Path:
    """Return the folder that holds embedded storage and job folders (``$MLQM_HOME`` or ``~/.mlqm``)."""
    return pathlib.Path(os.environ.get('MLQM_HOME', pathlib.Path.home() / '.mlqm')).expanduser().resolve()


def ensure_embedded_profile(name: str = DEFAULT_PROFILE, *, email: str = 'mlqm@localhost'):
    """Create (or reuse) a ``core.sqlite_dos`` profile without a broker, load it and return it.

    An existing profile of that name is reused as it is, whatever its storage, so that running the command twice
    changes nothing.
    """
    from aiida import load_profile
    from aiida.manage.configuration import create_profile, get_config

    config = get_config(create=True)
    if name not in config.profile_names:
        filepath = mlqm_home() / 'storage' / name
        filepath.mkdir(parents=True, exist_ok=True)
        create_profile(
            config,
            storage_backend='core.sqlite_dos',
            storage_config={'filepath': str(filepath)},
            broker_backend=None,
            name=name,
            email=email,
        )
        config.store()
    return load_profile(name, allow_switch=True)


def ensure_localhost_computer(label: str = DEFAULT_COMPUTER, *, workdir: str | None = None, mpiprocs: int | None = None):
    """Create (or reuse) a ``core.direct`` computer with the ``core.local`` transport and return it.

    The job poll interval and the transport's safe interval are set to zero: on localhost they only add latency.
    """
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(label)
    except NotExistent:
        workdir = workdir or str(mlqm_home() / 'work')
        pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
        computer = orm.Computer(
            label=label,
            hostname='localhost',
            description='This machine (aiida-mlqm embedded default)',
            transport_type='core.local',
            scheduler_type='core.direct',
            workdir=workdir,
        ).store()
        computer.set_default_mpiprocs_per_machine(mpiprocs or os.cpu_count() or 1)
        computer.set_minimum_job_poll_interval(0.0)
    user = orm.User.collection.get_default()
    if not computer.is_user_configured(user):
        computer.configure(user=user, safe_interval=0.0, use_login_shell=False)
    return computer


def ensure_python_code(computer, label: str = DEFAULT_CODE, *, python: str | None = None):
    """Create (or reuse) an ``InstalledCode`` for a Python interpreter that has PySCF (this one by default)."""
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        return orm.load_code(f'{label}@{computer.label}')
    except (NotExistent, MultipleObjectsError):
        pass
    return orm.InstalledCode(
        label=label,
        computer=computer,
        filepath_executable=python or sys.executable,
        default_calc_job_plugin='mlqm.pyscf',
        description='Python with PySCF (and aiida-mlqm for training and prediction jobs)',
    ).store()


def setup_embedded(profile: str = DEFAULT_PROFILE):
    """Create or reuse everything the embedded default needs; return ``(profile, computer, code)``."""
    loaded = ensure_embedded_profile(profile)
    computer = ensure_localhost_computer()
    code = ensure_python_code(computer)
    return loaded, computer, code


@main.command('setup')
@click.option('--profile', 'profile_name', default=DEFAULT_PROFILE, show_default=True, help='Profile to create or reuse.')
def cmd_setup(profile_name):
    """Create or reuse a profile, the localhost computer and the PySCF code (idempotent)."""
    profile, computer, code = setup_embedded(profile_name)
    click.echo(f'profile   {profile.name} (storage {profile.storage_backend}, broker {profile.process_control_backend})')
    click.echo(f'computer  {computer.label} ({computer.scheduler_type}, {computer.transport_type})')
    click.echo(f'code      {code.full_label} -> {code.filepath_executable}')
