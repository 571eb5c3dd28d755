"""The README's layout table matches the tree: every file it names exists, every module of a package folder is named."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ('chemistry', 'calcjobs', 'parsers', 'workflows', 'models', 'provenance', 'services', 'cli')


def layout_rows() -> dict[str, str]:
    """``{folder: files cell}`` of the README's layout table."""
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    table = text[text.index('| folder | holds |') :].split('\n\n', 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip('|').split('|')]
        for folder in re.findall(r'`([^`]+)`', cells[0]):
            rows[folder] = cells[2] if len(cells) > 2 else ''
    return rows


def test_every_folder_and_named_file_exists():
    for folder, files in layout_rows().items():
        assert (ROOT / folder).exists(), folder
        for name in re.findall(r'`([\w./*-]+\.(?:py|yaml|sh|yml)|[\w-]+/)`', files):
            matches = list((ROOT / folder).glob(name)) if '*' in name else [ROOT / folder / name]
            assert matches and all(path.exists() for path in matches), f'{folder}{name} is named but missing'


def test_every_module_of_a_package_folder_is_named():
    rows = layout_rows()
    for package in PACKAGES:
        named = rows[f'{package}/']
        for path in sorted((ROOT / package).rglob('*.py')):
            if path.name in ('__init__.py', '__main__.py') or path.parent.name == 'jobs' and package == 'models':
                continue
            relative = path.relative_to(ROOT / package).as_posix()
            assert f'`{relative}`' in named, f'{package}/{relative} is not in the README layout table'
