"""Readers that turn what a user has into molecule records, and writers back to pymatgen and ASE.

A record is plain JSON, so that a whole library fits in one ``List`` node, the input of ``mlqm.build``::

    {'id': 'aspirin', 'kind': 'smiles', 'smiles': 'CC(=O)Oc1ccccc1C(=O)O', 'charge': None, 'multiplicity': None,
     'source': 'smiles:drugs.smi:3'}
    {'id': 'H2O', 'kind': 'geometry', 'symbols': ['O', 'H', 'H'], 'positions': [[x, y, z], ...], 'charge': 0,
     'multiplicity': 1, 'source': 'g2:H2O'}

``charge`` and ``multiplicity`` are ``None`` where the input does not say; the builder then takes them from the SMILES
(formal charges, radical electrons) or, for geometries, charge 0 and the lowest multiplicity the electron count allows.
A geometry record may carry ``smiles`` as a label. Readers raise :class:`LibraryError` naming the file, the line and
the fix; chemistry (valences, distances, ...) is checked later, per entry, by :mod:`.entries`. No AiiDA here: the
``List`` node a build takes is made by :func:`aiida_mlqm.workflows.build.to_library`.
"""

from __future__ import annotations

import csv
import difflib
import io
import pathlib
import typing as t

import numpy as np

Record = dict[str, t.Any]

CSV_COLUMNS = ('smiles', 'id', 'charge', 'multiplicity')


class LibraryError(ValueError):
    """A library file or argument that cannot be read; the message names the place and the fix."""


def smiles_record(
    smiles: str, id: str, source: str, charge: int | None = None, multiplicity: int | None = None
) -> Record:
    return {
        'id': str(id),
        'kind': 'smiles',
        'smiles': smiles,
        'charge': charge,
        'multiplicity': multiplicity,
        'source': source,
    }


def geometry_record(
    symbols: t.Sequence[str],
    positions,
    id: str,
    source: str,
    charge: int | None = None,
    multiplicity: int | None = None,
    smiles: str | None = None,
) -> Record:
    record = {
        'id': str(id),
        'kind': 'geometry',
        'symbols': [str(s) for s in symbols],
        'positions': jsonable_positions(positions),
        'charge': None if charge is None else int(charge),
        'multiplicity': None if multiplicity is None else int(multiplicity),
        'source': source,
    }
    if smiles:
        record['smiles'] = str(smiles)
    return record


def jsonable_positions(positions) -> list:
    """Positions as nested lists of floats; NaN and infinities become the strings 'nan', 'inf', '-inf'.

    JSON and AiiDA's database cannot hold non-finite floats, yet such an entry must reach the builder so that it is
    rejected with a reason (``non_finite_coordinates``) instead of failing the whole library.
    """
    try:
        array = np.asarray(positions, dtype=float)
    except (TypeError, ValueError):
        return positions  # left for the builder to reject as an invalid record
    return [[float(v) if np.isfinite(v) else str(float(v)) for v in row] for row in np.atleast_2d(array)]


def _int_or_fail(value: t.Any, what: str, where: str) -> int:
    """``value`` (text from a file, or a number ASE parsed from a comment line) as an integer; ``1.9`` or ``abc`` is
    a :class:`LibraryError` naming the place, never a truncation or a traceback."""
    shown = value.item() if isinstance(value, np.generic) else value
    problem = LibraryError(f'{where}: {what} {shown!r} is not an integer; write e.g. {what}=-1')
    if isinstance(shown, bool):
        raise problem
    try:
        number = float(shown)
    except (TypeError, ValueError):
        raise problem from None
    if not np.isfinite(number) or number != int(number):
        raise problem
    return int(number)


# -- SMILES ---------------------------------------------------------------------------------------------------------


def read_smiles_file(path: str | pathlib.Path) -> list[Record]:
    """Read a SMILES library: CSV with a header (``smiles,id,charge,multiplicity``) or one entry per line.

    Line format: ``SMILES [id] [charge=N] [multiplicity=M]``. A line starting with ``#`` is a comment, and so is
    ``#`` after whitespace (``#`` inside a SMILES is a triple bond and stays). Entries without an id get
    ``<file stem>_<line>``.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise LibraryError(f'SMILES file {str(path)!r} does not exist: give the path of a .smi/.txt/.csv file')
    text = path.read_text(encoding='utf-8-sig')  # spreadsheets save CSV with a byte-order mark
    first = next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith('#')), '')
    if path.suffix.lower() == '.csv' or first.replace(' ', '').lower().startswith('smiles,'):
        return _read_smiles_csv(path, text)

    records = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(' #', 1)[0].split('\t#', 1)[0].strip()
        if not line or line.startswith('#'):
            continue
        where = f'{path.name}:{lineno}'
        tokens = line.split()
        smiles, rest = tokens[0], tokens[1:]
        entry_id, charge, multiplicity = None, None, None
        for token in rest:
            key, sep, value = token.partition('=')
            if sep:
                key = key.lower()
                if key == 'charge':
                    charge = _int_or_fail(value, 'charge', where)
                elif key in {'multiplicity', 'mult'}:
                    multiplicity = _int_or_fail(value, 'multiplicity', where)
                else:
                    raise LibraryError(f'{where}: unknown key {key!r}; only charge= and multiplicity= are understood')
            elif entry_id is None:
                entry_id = token
            else:
                raise LibraryError(
                    f'{where}: more than one id ({entry_id!r}, {token!r}); write `SMILES id [charge=N] [multiplicity=M]`'
                    f' with an id without spaces'
                )
        records.append(
            smiles_record(
                smiles, entry_id or f'{path.stem}_{lineno}', f'smiles:{path.name}:{lineno}', charge, multiplicity
            )
        )
    return records


def _read_smiles_csv(path: pathlib.Path, text: str) -> list[Record]:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith('#')]
    reader = csv.DictReader(io.StringIO('\n'.join(lines)))
    columns = {name.strip().lower(): name for name in reader.fieldnames or []}
    if 'smiles' not in columns:
        raise LibraryError(f'{path.name}: the CSV header has no `smiles` column; expected {",".join(CSV_COLUMNS)}')
    unknown = sorted(set(columns) - set(CSV_COLUMNS))
    if unknown:
        raise LibraryError(f'{path.name}: unknown CSV columns {unknown}; allowed are {", ".join(CSV_COLUMNS)}')
    records = []
    for row_number, row in enumerate(reader, start=2):
        where = f'{path.name}: row {row_number}'
        value = {key: (row.get(name) or '').strip() for key, name in columns.items()}
        if not value['smiles']:
            continue
        charge = _int_or_fail(value['charge'], 'charge', where) if value.get('charge') else None
        mult = _int_or_fail(value['multiplicity'], 'multiplicity', where) if value.get('multiplicity') else None
        records.append(
            smiles_record(
                value['smiles'],
                value.get('id') or f'{path.stem}_{row_number}',
                f'smiles:{path.name}:{row_number}',
                charge,
                mult,
            )
        )
    return records


# -- geometries -----------------------------------------------------------------------------------------------------


def record_from_atoms(atoms, id: str, source: str, info: t.Mapping | None = None) -> Record:
    """A geometry record from ASE ``Atoms``; charge/multiplicity from ``info`` keys or initial charges/magmoms."""
    info = dict(atoms.info if info is None else info)
    charge = info.get('charge')
    if charge is None and np.any(atoms.get_initial_charges()):
        charge = round(float(atoms.get_initial_charges().sum()))
    multiplicity = info.get('multiplicity', info.get('mult'))
    if multiplicity is None and np.any(atoms.get_initial_magnetic_moments()):
        # ASE stores unpaired electrons as initial magnetic moments (the G2 set does): 2S + 1 = sum + 1
        multiplicity = round(abs(float(np.sum(atoms.get_initial_magnetic_moments())))) + 1
    return geometry_record(
        atoms.get_chemical_symbols(),
        atoms.get_positions(),
        str(info.get('id') or info.get('name') or id),
        source,
        None if charge is None else _int_or_fail(charge, 'charge', source),
        None if multiplicity is None else _int_or_fail(multiplicity, 'multiplicity', source),
        info.get('smiles'),
    )


def _read_frames(path: pathlib.Path):
    import ase.io

    try:
        return ase.io.read(str(path), index=':', format='extxyz')
    except Exception:  # noqa: BLE001, S110  a free-text comment line that is not key=value: read it as plain xyz
        pass
    try:
        return ase.io.read(str(path), index=':', format='xyz')
    except Exception as exception:
        raise LibraryError(
            f'{path}: not a readable (ext)xyz file ({exception}); check the atom count line'
        ) from exception


def read_xyz_dir(path: str | pathlib.Path) -> list[Record]:
    """Every ``*.xyz`` file of a folder (sorted by name); ``charge=``/``multiplicity=`` on the comment line are read.

    A file with several frames gives one entry per frame (``<stem>_<i>``).
    """
    folder = pathlib.Path(path)
    if not folder.is_dir():
        raise LibraryError(f'{str(folder)!r} is not a folder: give a folder that holds .xyz files')
    files = sorted(folder.glob('*.xyz'))
    if not files:
        raise LibraryError(f'{folder} holds no .xyz files')
    records = []
    for file in files:
        frames = _read_frames(file)
        for index, atoms in enumerate(frames):
            name = file.stem if len(frames) == 1 else f'{file.stem}_{index}'
            records.append(
                record_from_atoms(atoms, name, f'xyz:{file.name}' + (f':{index}' if len(frames) > 1 else ''))
            )
    return records


def read_extxyz(path: str | pathlib.Path) -> list[Record]:
    """Every frame of an extended XYZ file; ids from ``id``/``name`` in the frame info, else ``<stem>_<index>``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise LibraryError(f'extxyz file {str(path)!r} does not exist')
    return [
        record_from_atoms(atoms, f'{path.stem}_{i}', f'extxyz:{path.name}:{i}')
        for i, atoms in enumerate(_read_frames(path))
    ]


def read_ase_db(path: str | pathlib.Path) -> list[Record]:
    """Every row of an ASE database; ``id``/``name``/``multiplicity``/``smiles`` key-value pairs are read.

    The charge is ASE's own: the sum of the row's initial charges (ASE overwrites a ``charge`` key-value pair with it).
    """
    import ase.db

    path = pathlib.Path(path)
    if not path.is_file():
        raise LibraryError(f'ASE database {str(path)!r} does not exist')
    try:
        rows = list(ase.db.connect(str(path)).select())
    except Exception as exception:
        raise LibraryError(f'{path}: not a readable ASE database ({exception})') from exception
    records = []
    for row in rows:
        info = dict(row.key_value_pairs)
        records.append(record_from_atoms(row.toatoms(), f'{path.stem}_{row.id}', f'ase-db:{path.name}:{row.id}', info))
    return records


def from_pymatgen(molecules: t.Sequence, ids: t.Sequence[str] | None = None) -> list[Record]:
    """Records from pymatgen ``Molecule`` objects (their ``charge`` and ``spin_multiplicity`` are kept)."""
    records = []
    for index, molecule in enumerate(molecules):
        entry_id = ids[index] if ids else f'{molecule.formula.replace(" ", "")}_{index}'
        symbols = [site.specie.symbol for site in molecule]
        records.append(
            geometry_record(
                symbols,
                molecule.cart_coords,
                entry_id,
                'pymatgen',
                int(molecule.charge),
                int(molecule.spin_multiplicity),
            )
        )
    return records


def g2_names() -> list[str]:
    from ase.collections import g2

    return list(g2.names)


def read_g2(names: str | t.Sequence[str]) -> list[Record]:
    """Molecules of the G2 set (``ase.collections.g2``) by name; ``'all'`` or a comma-separated string works too."""
    from ase.collections import g2

    if isinstance(names, str):
        names = g2_names() if names.strip().lower() == 'all' else [n.strip() for n in names.split(',') if n.strip()]
    known = set(g2.names)
    records = []
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f'; did you mean {", ".join(close)}?' if close else '; `all` takes the whole set'
            raise LibraryError(f'{name!r} is not a G2 molecule name{hint}')
        records.append(record_from_atoms(g2[name], name, f'g2:{name}', info={}))
    return records


def read_library(
    *,
    smiles: str | pathlib.Path | None = None,
    xyz_dir: str | pathlib.Path | None = None,
    extxyz: str | pathlib.Path | None = None,
    ase_db: str | pathlib.Path | None = None,
    g2: str | t.Sequence[str] | None = None,
) -> list[Record]:
    """All records of the inputs given, in this order: SMILES, xyz folder, extxyz, ASE database, G2."""
    records: list[Record] = []
    if smiles:
        records += read_smiles_file(smiles)
    if xyz_dir:
        records += read_xyz_dir(xyz_dir)
    if extxyz:
        records += read_extxyz(extxyz)
    if ase_db:
        records += read_ase_db(ase_db)
    if g2:
        records += read_g2(g2)
    if not (smiles or xyz_dir or extxyz or ase_db or g2):
        raise LibraryError(
            'no library given: pass a SMILES file, an xyz folder, an extxyz file, an ASE database or G2 names'
        )
    return records
