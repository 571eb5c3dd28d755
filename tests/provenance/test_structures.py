"""``StructureData`` made by ``mlqm.build`` back to pymatgen and ASE, and back again to a library record."""

from __future__ import annotations

import numpy as np
from aiida_mlqm.chemistry import readers
from aiida_mlqm.provenance import structures


def test_writers_round_trip(aiida_profile):
    from aiida_mlqm.workflows.build_functions import make_structure

    positions = [[0, 0, 0], [0, 0, 0.97]]
    structure = make_structure(
        ['O', 'H'], positions, {'charge': -1, 'multiplicity': 1, 'name': 'hydroxide', 'smiles': '[OH-]'}
    )
    molecule = structures.structure_to_pymatgen(structure)
    assert (molecule.charge, molecule.spin_multiplicity, molecule.formula) == (-1, 1, 'H1 O1')
    np.testing.assert_allclose(molecule.cart_coords, positions)
    atoms = structures.structure_to_atoms(structure)
    assert atoms.info['name'] == 'hydroxide' and atoms.info['charge'] == -1 and not atoms.pbc.any()
    again = readers.record_from_atoms(atoms, 'x', 'test')
    assert (again['id'], again['charge'], again['multiplicity'], again['smiles']) == ('hydroxide', -1, 1, '[OH-]')
