"""Shared plumbing of the ``train`` and ``predict`` entry points: JSON input, status file, failure codes."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import traceback
import typing as t

import pydantic

from ..errors import InvalidInputError, ModelError

STATUS_FILE = 'status.json'


def read_input(description: str, schema: type[pydantic.BaseModel], argv: list[str] | None, context: dict[str, t.Any]):
    """Parse ``--input``, validate the JSON against ``schema``; return ``(job, folder of the input file)``.

    The status file goes next to the input file from here on, also when the input itself is invalid.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--input', required=True, help='JSON file with the job description')
    args = parser.parse_args(argv)
    path = pathlib.Path(args.input)
    context['status'] = path.parent / STATUS_FILE
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exception:
        raise InvalidInputError(f'cannot read {path}: {exception}') from None
    try:
        return schema(**values), path.parent
    except pydantic.ValidationError as exception:
        problems = '; '.join(f'{".".join(map(str, e["loc"]))}: {e["msg"]}' for e in exception.errors())
        raise InvalidInputError(f'{path}: {problems}') from None


def run_main(body: t.Callable[[dict[str, t.Any]], dict[str, t.Any]]) -> int:
    """Run ``body``; write ``{'status': 'ok' | 'failed', 'error': code, 'message': ...}`` and return the exit status.

    ``body`` receives a context dict and may set ``context['status']`` (the status file, default ``status.json`` in the
    working directory) as soon as it knows it. Known failures exit with 1 and their code in the status file; anything
    unexpected exits with 2 after printing its traceback, and its status says 'unexpected'.
    """
    status: dict[str, t.Any]
    context: dict[str, t.Any] = {'status': STATUS_FILE}
    try:
        extra = body(context) or {}
        status, code = {'status': 'ok', **extra}, 0
    except ModelError as exception:
        print(f'ERROR ({exception.code}): {exception}', file=sys.stderr)
        status, code = {'status': 'failed', 'error': exception.code, 'message': str(exception)}, 1
    except pydantic.ValidationError as exception:
        print(f'ERROR (invalid_input): {exception}', file=sys.stderr)
        status, code = {'status': 'failed', 'error': 'invalid_input', 'message': str(exception)}, 1
    except Exception as exception:  # noqa: BLE001 - the status file must be written whatever happened
        traceback.print_exc()
        status, code = (
            {'status': 'failed', 'error': 'unexpected', 'message': f'{type(exception).__name__}: {exception}'},
            2,
        )
    pathlib.Path(context['status']).write_text(json.dumps(status, indent=2))
    return code
