"""Exit codes: one band table (aiida_mlqm.exit_codes), each status meaning one thing in every job and chain, and
every status a process of the package can return declared in that process's spec."""

from __future__ import annotations

import ast
import pathlib
from importlib.metadata import entry_points

import pytest
from aiida_mlqm.exit_codes import BANDS, EXIT_CODES

PACKAGE = pathlib.Path(__file__).resolve().parents[1]
# Modules whose ``exit_codes.NAME`` references a process can return, beside the module that defines it.
PARSER_MODULES = {
    'mlqm.pyscf': ['parsers/pyscf.py'],
    'mlqm.pyscf.batch': ['parsers/pyscf.py', 'parsers/batch.py'],
    'mlqm.features.batch': ['parsers/pyscf.py', 'parsers/batch.py'],
    'mlqm.casscf.batch': ['parsers/pyscf.py', 'parsers/batch.py'],
    'mlqm.train': ['parsers/train.py'],
    'mlqm.predict': ['parsers/predict.py'],
}


def processes() -> dict[str, type]:
    found = {}
    for group in ('aiida.calculations', 'aiida.workflows'):
        for entry_point in entry_points(group=group):
            if entry_point.name.startswith('mlqm.'):
                found[entry_point.name] = entry_point.load()
    return found


def package_sources() -> list[pathlib.Path]:
    skip = {'.venv', 'tests', '.git', 'benchmarks'}
    return [p for p in PACKAGE.rglob('*.py') if not skip & set(p.relative_to(PACKAGE).parts)]


def returned_exit_codes(path: pathlib.Path) -> set[str]:
    """``NAME`` of every ``self.exit_codes.NAME`` / ``parser.exit_codes.NAME`` in a module: the codes its process returns
    (``OtherProcess.exit_codes.NAME`` names another process's code, e.g. a handler's trigger, and is left out)."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == 'exit_codes'
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id in {'self', 'parser', 'cls'}
    }


def test_the_table_gives_each_status_one_label_in_its_band():
    statuses = [status for status, _ in EXIT_CODES.values()]
    assert len(statuses) == len(set(statuses)), 'two labels share a status'
    for label, (status, message) in EXIT_CODES.items():
        assert status // 100 in BANDS, label
        assert label.startswith('WARNING_') == (status // 100 == 7), label
        assert message


@pytest.mark.parametrize('name', sorted(processes()))
def test_every_declared_code_is_the_table_entry(name):
    spec_codes = processes()[name].spec().exit_codes
    own = {label: code for label, code in spec_codes.items() if code.status >= 200}  # < 200: aiida-core's own
    assert own, f'{name} declares none of the table'
    for label, code in own.items():
        assert label in EXIT_CODES, f'{name} declares {label} ({code.status}), which the table lacks'
        assert code.status == EXIT_CODES[label][0], f'{name}: {label} is {code.status}, the table says otherwise'


@pytest.mark.parametrize('name', sorted(processes()))
def test_every_code_a_process_can_return_is_declared(name):
    process = processes()[name]
    spec_codes = process.spec().exit_codes
    module = pathlib.Path(__import__(process.__module__, fromlist=['_']).__file__)
    paths = [module, *(PACKAGE / path for path in PARSER_MODULES.get(name, []))]
    returned = set().union(*(returned_exit_codes(path) for path in paths))
    if name == 'mlqm.pyscf':
        # calcjobs/pyscf.py and parsers/pyscf.py hold the base classes of the batch job too; these are the batch's
        returned -= {'ERROR_ALL_STRUCTURES_FAILED', 'WARNING_SOME_STRUCTURES_FAILED'}
    assert returned, f'no returned exit codes found for {name}: the scan is broken'
    missing = returned - set(spec_codes)
    assert not missing, f'{name} can return {sorted(missing)}, which its spec does not declare'


def test_runner_statuses_map_to_declared_codes():
    from aiida_mlqm.calcjobs.pyscf import PyscfCalculation
    from aiida_mlqm.parsers.pyscf import STATUS_EXIT_CODES

    assert set(STATUS_EXIT_CODES.values()) <= set(PyscfCalculation.spec().exit_codes)


def test_no_process_returns_a_bare_status():
    """``ExitCode(<number>)`` would bypass every spec: only ``ExitCode(0)`` (success) may be written by hand."""
    for path in package_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Call) and getattr(node.func, 'id', getattr(node.func, 'attr', None)) == 'ExitCode':
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and first.value == 0:
                    continue
                if first is not None and not isinstance(first, ast.Constant):
                    continue  # a status taken from a node (a parser letting the scheduler's code stand)
                pytest.fail(f'{path.relative_to(PACKAGE)}:{node.lineno} returns a bare ExitCode')
