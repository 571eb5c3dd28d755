"""Performance harness: ``python -m benchmarks NAME [--quick]``.

Each benchmark is a module ``benchmarks/<name>.py`` with a ``DESCRIPTION`` string and a function
``run(quick: bool) -> dict`` that returns ``{figure: {'value': float, 'unit': str, 'target': str | None}}`` plus,
optionally, ``'_table'``: a list of rows (dicts) printed before the figures. Figures are ratios measured side by side in
one run wherever a comparison exists, because this machine is shared and absolute times drift.
"""
