"""Entry point: ``python -m benchmarks --list`` or ``python -m benchmarks NAME [--quick]``."""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import operator
import pathlib
import platform
import pkgutil
import sys

HERE = pathlib.Path(__file__).parent
RESULTS = HERE / 'results'
_COMPARE = {'<=': operator.le, '>=': operator.ge, '<': operator.lt, '>': operator.gt}


def available() -> dict[str, str]:
    names = {}
    for info in pkgutil.iter_modules([str(HERE)]):
        if info.name.startswith('_'):
            continue
        module = importlib.import_module(f'benchmarks.{info.name}')
        if hasattr(module, 'run'):
            names[info.name] = getattr(module, 'DESCRIPTION', '')
    return names


def target_met(value: float, target: str | None) -> bool | None:
    """Evaluate a target such as ``'<= 1.3'`` against ``value``; ``None`` when there is no target."""
    if not target:
        return None
    op, _, number = target.strip().partition(' ')
    return bool(_COMPARE[op](value, float(number)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks', description=__doc__)
    parser.add_argument('name', nargs='?', help='benchmark to run')
    parser.add_argument('--quick', action='store_true', help='smaller run that finishes in a few minutes on 2 cores')
    parser.add_argument('--list', action='store_true', help='list the benchmarks')
    args = parser.parse_args(argv)

    names = available()
    if args.list or not args.name:
        for name, description in sorted(names.items()):
            print(f'{name:12s} {description}')
        return 0
    if args.name not in names:
        print(f'unknown benchmark {args.name!r}; choose one of: {", ".join(sorted(names))}', file=sys.stderr)
        return 2

    module = importlib.import_module(f'benchmarks.{args.name}')
    raw = module.run(quick=args.quick)
    table = raw.pop('_table', None)
    if table:
        columns = list(table[0])
        widths = [max(len(str(c)), *(len(_fmt(row.get(c))) for row in table)) for c in columns]
        print('  '.join(str(c).ljust(w) for c, w in zip(columns, widths)))
        for row in table:
            print('  '.join(_fmt(row.get(c)).ljust(w) for c, w in zip(columns, widths)))
        print()

    figures = {}
    for figure, entry in raw.items():
        met = target_met(entry['value'], entry.get('target'))
        figures[figure] = {'value': entry['value'], 'unit': entry.get('unit', ''), 'target': entry.get('target'), 'met': met}
        verdict = '' if met is None else ('  target ' + entry['target'] + (' met' if met else ' NOT met'))
        print(f'{figure:32s} {_fmt(entry["value"]):>12s} {entry.get("unit", "")}{verdict}')

    RESULTS.mkdir(exist_ok=True)
    record = {
        'figures': figures,
        'machine': f'{platform.node()} {platform.machine()} {platform.processor() or ""}'.strip(),
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'quick': args.quick,
    }
    (RESULTS / f'{args.name}.json').write_text(json.dumps(record, indent=2))
    return 0


def _fmt(value) -> str:
    if isinstance(value, float):
        return f'{value:.4g}'
    return '' if value is None else str(value)


if __name__ == '__main__':
    sys.exit(main())
