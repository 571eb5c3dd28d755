"""A throw-away embedded AiiDA profile for benchmarks, so they never touch the user's own profiles."""
from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


@contextlib.contextmanager
def temporary_embedded_profile(name: str = 'benchmark'):
    """Create a ``core.sqlite_dos`` profile with a ``localhost`` computer and the PySCF code in a temporary folder.

    Yields ``(profile, code)``; everything is deleted afterwards.
    """
    with tempfile.TemporaryDirectory(prefix='mlqm-benchmark-') as tmp:
        os.environ['MLQM_HOME'] = str(pathlib.Path(tmp) / 'mlqm')
        from aiida.manage.configuration import reset_config, settings

        reset_config()
        config_dir = pathlib.Path(tmp) / settings.DEFAULT_CONFIG_DIR_NAME
        os.environ[settings.DEFAULT_AIIDA_PATH_VARIABLE] = str(config_dir)
        settings.AiiDAConfigDir.set(config_dir)

        from aiida_mlqm.services.profiles import setup_embedded

        profile, _, code = setup_embedded(name)
        try:
            yield profile, code
        finally:
            from aiida.manage import get_manager

            get_manager().reset_profile()
            reset_config()
