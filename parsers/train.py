"""Parser of ``mlqm.train``: the retrieved model directory becomes a ``ModelData``, the metrics a ``Dict``.

The training script writes ``status.json``; its ``error`` code (``nan_loss``, ``invalid_input``, ...) selects the exit
code, so nothing is scraped from the log.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import typing as t

from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers.parser import Parser

__all__ = ('STATUS_EXIT_CODES', 'TrainParser', 'read_status')

# error code in status.json -> exit code label, shared with the mlqm.predict parser
STATUS_EXIT_CODES = {
    'nan_loss': 'ERROR_NAN_LOSS',
    'invalid_input': 'ERROR_INVALID_TRAINING_INPUT',
    'unsupported_species': 'ERROR_UNSUPPORTED_SPECIES',
    'untrusted_model': 'ERROR_UNTRUSTED_MODEL',
}


def read_status(parser: Parser, failure_label: str) -> tuple[dict[str, t.Any] | None, ExitCode | None]:
    """Read ``status.json`` from the retrieved folder; return ``(status, exit code or None)``."""
    retrieved = parser.retrieved
    if 'status.json' not in retrieved.base.repository.list_object_names():
        return None, parser.exit_codes.ERROR_OUTPUT_STATUS_MISSING
    try:
        status = json.loads(retrieved.base.repository.get_object_content('status.json'))
    except (OSError, ValueError) as exception:
        return None, parser.exit_codes.ERROR_OUTPUT_UNREADABLE.format(exception=exception)
    if status.get('status') == 'ok':
        return status, None
    label = STATUS_EXIT_CODES.get(status.get('error'), failure_label)
    return status, getattr(parser.exit_codes, label).format(message=status.get('message', ''))


class TrainParser(Parser):
    """Attach ``model`` and ``metrics``; map the status file's error code to 600 (NaN loss), 601, 602 or 610."""

    def parse(self, **kwargs) -> ExitCode | None:
        try:
            return self._parse()
        except Exception as exception:  # noqa: BLE001 - any surprise becomes the documented exit code
            return self.exit_codes.ERROR_UNEXPECTED_PARSER_EXCEPTION.format(
                exception=f'{type(exception).__name__}: {exception}'
            )

    def _parse(self) -> ExitCode | None:
        from aiida_mlqm.provenance.model import ModelData

        _status, exit_code = read_status(self, 'ERROR_TRAINING_FAILED')
        if exit_code is not None:
            return exit_code
        names = self.retrieved.base.repository.list_object_names()
        if 'metrics.json' not in names:
            return self.exit_codes.ERROR_OUTPUT_METRICS_MISSING
        if 'model' not in names:
            return self.exit_codes.ERROR_OUTPUT_MODEL_MISSING
        try:
            metrics = json.loads(self.retrieved.base.repository.get_object_content('metrics.json'))
        except ValueError as exception:
            return self.exit_codes.ERROR_OUTPUT_UNREADABLE.format(exception=exception)
        self.out('metrics', orm.Dict(_finite(metrics)))
        with tempfile.TemporaryDirectory(prefix='mlqm-model-') as folder:
            self.retrieved.base.repository.copy_tree(folder, path='model')
            try:
                model = ModelData.from_directory(pathlib.Path(folder))
            except ValueError as exception:
                return self.exit_codes.ERROR_OUTPUT_UNREADABLE.format(exception=exception)
        self.out('model', model)
        return None


def _finite(value):
    """JSON from Python may hold inf/NaN, which AiiDA attributes refuse: store them as None."""
    from aiida_mlqm.provenance.model import json_safe

    return json_safe(value)
