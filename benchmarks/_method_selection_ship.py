"""Train the shipped method-selection classifier from records files and write it, with its provenance archive, to
``provenance/data/method_selection/``.

``python -m benchmarks._method_selection_ship RECORDS.json [RECORDS.json ...] [--held-out-family F]``

Several records files (shards of ``benchmarks/_method_selection_data.py``) are merged first. The graph is built in a
throw-away in-memory profile, so nothing lands in the user's profiles; the archive is what carries it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile


def _same_features(used: dict, expected: dict) -> bool:
    """Whether a record's features job (its full parameters) ran with the file's features basis and options."""
    return used.get('basis') == expected.get('basis') and used.get('features') == expected.get('features')


def merge_records(paths: list[pathlib.Path]) -> dict:
    merged = {'basis': None, 'atoms': {}, 'records': []}
    seen = set()
    for path in paths:
        data = json.loads(path.read_text())
        merged['basis'] = merged['basis'] or data['basis']
        if data['basis'] != merged['basis']:
            raise SystemExit(f'{path}: basis {data["basis"]} differs from {merged["basis"]}')
        # the features job's basis and options: every file must have computed its features the same way
        for key in ('features_basis', 'features_parameters'):
            if key in data:
                merged.setdefault(key, data[key])
                if data[key] != merged[key]:
                    raise SystemExit(f'{path}: {key} {data[key]} differs from {merged[key]}: recompute the features')
        expected = {**(data.get('features_parameters') or {}), 'method': 'features'}
        stale = [
            r['key'] for r in data['records']
            if r['features_status'] == 'pending'
            or (r.get('features_parameters') is not None and not _same_features(r['features_parameters'], expected))
        ]  # fmt: skip
        if stale:
            raise SystemExit(f'{path}: {len(stale)} records have other or no features (e.g. {stale[0]}): run the data '
                             'generator on the file without --labels-only first')
        merged['atoms'].update(data['atoms'])
        for record in data['records']:
            if record['key'] not in seen:
                seen.add(record['key'])
                merged['records'].append(record)
    merged['records'].sort(key=lambda record: record['key'])
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('records', nargs='+', type=pathlib.Path)
    parser.add_argument('--held-out-family', default='contains_S')
    parser.add_argument('--out', type=pathlib.Path, default=None)
    args = parser.parse_args(argv)

    from aiida import load_profile
    from aiida.storage.sqlite_temp import SqliteTempBackend

    load_profile(SqliteTempBackend.create_profile('mlqm-ship', options={'warnings.development_version': False}),
                 allow_switch=True)  # fmt: skip
    from aiida_mlqm.workflows.method_selection_training import DEFAULT_DIRECTORY, export_default, train_default

    merged = merge_records(args.records)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / 'method_selection_records.json'
        path.write_text(json.dumps(merged, separators=(',', ':')))
        model = train_default(path, {'held_out_family': args.held_out_family})
    directory = export_default(model, args.out or DEFAULT_DIRECTORY)
    print(json.dumps(model.metrics, indent=1, default=float))
    print(f'wrote {directory}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
