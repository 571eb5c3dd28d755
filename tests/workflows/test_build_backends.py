"""``mlqm.build`` on PostgreSQL (``core.psql_dos``): the G2 round trip and charge/multiplicity from SMILES.

The builds run in a subprocess on the production profile (as a user would, with ``engine.run``); the checks are the
same as the embedded ones in test_build.py, whose cases this module reuses.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_build import CHARGE_MULTIPLICITY_CASES

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]

BUILD_ON_PROFILE = """
from aiida.engine import run_get_node
from aiida_mlqm.chemistry.readers import read_g2, smiles_record
from aiida_mlqm.workflows.build import BuildWorkChain

cases = json.loads({cases!r})
records = read_g2('all') + [{{**smiles_record(s, i, 'test'), **extra}} for s, i, _, _, extra in cases]
builder = BuildWorkChain.get_builder_from_protocol(records, protocol='fast', overrides={{'parameters': {{'num_conformers': 1, 'deduplicate': False}}}})
_, node = run_get_node(builder)
built = BuildWorkChain.built_structures(node)
emit(
    ok=node.is_finished_ok, exit_message=node.exit_message, storage=node.backend.__class__.__name__,
    rejected=node.outputs.rejected.get_dict()['entries'],
    structures={{s.base.attributes.get('name'): {{
        'symbols': s.get_ase().get_chemical_symbols(), 'positions': s.get_ase().positions.tolist(),
        'charge': s.base.attributes.get('charge'), 'multiplicity': s.base.attributes.get('multiplicity'),
    }} for s in built.values()}},
)
"""


def test_g2_round_trip_and_charge_multiplicity_on_postgres(psql_daemon_profile):
    from ase.collections import g2

    result = psql_daemon_profile.run_json(BUILD_ON_PROFILE.format(cases=json.dumps(CHARGE_MULTIPLICITY_CASES)), timeout=600)
    assert result['ok'], result['exit_message']
    assert result['storage'] == 'PsqlDosBackend'
    assert result['rejected'] == []
    structures = result['structures']
    for name in g2.names:
        atoms = g2[name]
        built = structures[name]
        assert built['symbols'] == atoms.get_chemical_symbols()
        np.testing.assert_allclose(built['positions'], atoms.positions, atol=1e-10)
        assert built['multiplicity'] == round(abs(float(atoms.get_initial_magnetic_moments().sum()))) + 1, name
        assert built['charge'] == 0
    for _, entry_id, charge, multiplicity, _ in CHARGE_MULTIPLICITY_CASES:
        assert (structures[entry_id]['charge'], structures[entry_id]['multiplicity']) == (charge, multiplicity), entry_id
