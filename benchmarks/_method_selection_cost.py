"""Cost of the method-selection features job next to the frozen-core CCSD(T)/cc-pVDZ diagnostic run it replaces,
measured side by side in one process on the same geometries, with the features job's time per stage.

``python -m benchmarks._method_selection_cost RECORDS.json [--count 10] [--features '{"basis": "6-31g"}'] [--old]``

The geometries are ``--count`` good records of a records file (``benchmarks/_method_selection_data.py``), every
``--every``-th in key order. For every geometry the runner's ``features`` mode (with the
given parameters over :data:`FEATURES_PARAMETERS` of the data generator) and the CCSD(T) diagnostic run follow each
other in the same process, each timed, so the load of a shared machine hits both alike. ``--old`` also times the
features job at the diagnostic's basis with every option at the previous defaults. Run it with
``OMP_NUM_THREADS=1 nice -n 10``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import sys
import tempfile
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('records', type=pathlib.Path)
    parser.add_argument('--count', type=int, default=10)
    parser.add_argument('--every', type=int, default=1, help='take every n-th good record (sorted by key)')
    parser.add_argument('--features', default='{}', help='JSON merged over the generator\'s features parameters')
    parser.add_argument('--old', action='store_true', help='also time the previous features job (cc-pVDZ, old options)')
    parser.add_argument('--skip-cc', action='store_true', help='take the CCSD(T) seconds stored in the records')
    args = parser.parse_args(argv)

    from benchmarks import _method_selection_data as generator

    generator.pyscf_runner.apply_numpy2_compatibility()
    from pyscf import lib

    lib.num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    lib.param.TMPDIR = tempfile.gettempdir()  # PySCF's scratch files (CCSD integrals) default to the working directory
    data = json.loads(args.records.read_text())
    good = [r for r in data['records'] if r['ccsd_t'].get('status') == 'ok']
    good.sort(key=lambda r: r['key'])
    chosen = good[:: args.every][: args.count]
    parameters = {**generator.FEATURES_PARAMETERS, **json.loads(args.features)}
    old = {'method': 'features', 'basis': generator.BASIS, 'features': generator.features_runner.PREVIOUS_OPTIONS,
           'scf': {}, 'max_memory': 3000}  # fmt: skip
    totals = collections.Counter()
    stages = collections.Counter()
    for record in chosen:
        entry = {key: record[key] for key in ('symbols', 'positions', 'charge', 'multiplicity')}
        line = {'key': record['key']}
        start = time.perf_counter()
        result = generator.pyscf_runner.run_structure('mol', entry, dict(parameters), None, False, None)
        line['features_s'] = time.perf_counter() - start
        line['status'] = result['status']
        line['nao'] = (result.get('features') or {}).get('basis_functions')
        line["stages"] = {k: round(v, 2) for k, v in (result.get("timings") or {}).items()}
        for stage, seconds in (result.get('timings') or {}).items():
            stages[stage] += seconds
        if args.old:
            start = time.perf_counter()
            generator.pyscf_runner.run_structure('mol', entry, dict(old), None, False, None)
            line['old_features_s'] = time.perf_counter() - start
            totals['old_features_s'] += line['old_features_s']
        if args.skip_cc:
            line['ccsd_t_s'] = record['ccsd_t_seconds']
        else:
            start = time.perf_counter()
            cc = generator.ccsd_t(record['symbols'], record['positions'], record['charge'], record['multiplicity'])
            line['ccsd_t_s'] = time.perf_counter() - start
            line['ccsd_t_status'] = cc['status']
        totals['features_s'] += line['features_s']
        totals['ccsd_t_s'] += line['ccsd_t_s']
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in line.items()}), flush=True)
    summary = {
        'geometries': len(chosen),
        'features_parameters': parameters,
        **{key: round(value, 1) for key, value in totals.items()},
        'ccsd_t_over_features': round(totals['ccsd_t_s'] / totals['features_s'], 2),
        'stages_s': {key: round(value, 1) for key, value in stages.most_common()},
    }
    if args.old:
        summary['ccsd_t_over_old_features'] = round(totals['ccsd_t_s'] / totals['old_features_s'], 2)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
