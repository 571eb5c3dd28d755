"""The ``mlqm`` command.

Each sub-command lives in its own module and registers itself on :data:`main`; the list at the bottom imports them.
"""
from __future__ import annotations

import click


@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(package_name='aiida-mlqm')
def main():
    """aiida-mlqm: high-throughput ML/QM campaigns on AiiDA."""


# Sub-command modules: importing one registers its commands on ``main``.
from . import setup as _setup  # noqa: E402,F401
from . import demo as _demo  # noqa: E402,F401
from . import status as _status  # noqa: E402,F401
from . import build as _build  # noqa: E402,F401
from . import reference as _reference  # noqa: E402,F401
from . import route as _route  # noqa: E402,F401
from . import query as _query  # noqa: E402,F401
from . import export as _export  # noqa: E402,F401
from . import operate as _operate  # noqa: E402,F401
from . import campaign as _campaign  # noqa: E402,F401
from . import data as _data  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401
from . import report as _report  # noqa: E402,F401  (last: adds `report` to the campaign group)
