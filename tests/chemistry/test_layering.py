"""chemistry/ holds the chemistry rules without AiiDA: it imports neither aiida nor the package's AiiDA layers."""

from __future__ import annotations

import ast
import pathlib

CHEMISTRY = pathlib.Path(__file__).resolve().parents[2] / 'chemistry'
AIIDA_LAYERS = {'calcjobs', 'parsers', 'workflows', 'provenance', 'services', 'cli'}


def imported_modules(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add('.' * node.level + (node.module or ''))
    return names


def test_chemistry_imports_no_aiida():
    files = sorted(CHEMISTRY.glob('*.py'))
    assert len(files) >= 8
    for path in files:
        for name in imported_modules(path):
            assert not name.split('.')[0] == 'aiida', f'{path.name} imports {name}'
            relative_top = name.lstrip('.').split('.')[0]
            assert not (name.startswith('..') and relative_top in AIIDA_LAYERS), f'{path.name} imports {name}'


def test_one_owner_parses_smiles_and_level_labels():
    """RDKit reads a SMILES only in chemistry/smiles.py; ``METHOD/BASIS`` is split only in chemistry/level.py."""
    root = CHEMISTRY.parent
    owners = {'MolFromSmiles': 'chemistry/smiles.py', ".partition('/')": 'chemistry/level.py'}
    skipped = {'.venv', 'tests', 'benchmarks'}
    for path in sorted(root.rglob('*.py')):
        relative = path.relative_to(root).as_posix()
        if relative.split('/')[0] in skipped:
            continue
        text = path.read_text(encoding='utf-8')
        for call, owner in owners.items():
            assert call not in text or relative == owner, f'{relative} uses {call}; call {owner} instead'
