"""``mlqm.build`` (BuildWorkChain): rejections, provenance, real molecules (G2, drugs, radicals, ions).

Every test runs against the ``aiida_profile`` fixture and nothing here is specific to SQLite, so the same tests run on
PostgreSQL when ``aiida_profile`` is configured for ``core.psql_dos``.
"""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from aiida_mlqm.chemistry.molecule import REJECTION_KINDS
from aiida_mlqm.chemistry.readers import geometry_record, read_g2, smiles_record
from aiida_mlqm.workflows.build import BuildWorkChain


def build(records, protocol='fast', **overrides):
    """Run a build; the results carry ``structures`` whether or not the protocol returns them as outputs."""
    builder = BuildWorkChain.get_builder_from_protocol(records, protocol=protocol, overrides={'parameters': overrides})
    results, node = run_get_node(builder)
    results = dict(results)
    results['structures'] = BuildWorkChain.built_structures(node)
    return results, node


def rejected_by_id(results) -> dict:
    return {entry['id']: entry for entry in results['rejected'].get_dict()['entries']}


WATER = (['O', 'H', 'H'], [[0.0, 0.0, 0.119], [0.0, 0.763, -0.477], [0.0, -0.763, -0.477]])

# One entry per rejection kind, each next to a valid entry so that the build as a whole succeeds.
REJECTION_CASES = {
    'invalid_record': {'id': 'no_kind', 'smiles': 'CCO'},
    'invalid_smiles': smiles_record('C1CC(', 'bad_smiles', 'test'),
    'unsupported_element': smiles_record('[I-]', 'iodide', 'test'),  # 6-31G has no iodine
    'charge_mismatch': smiles_record('CC(=O)[O-]', 'acetate_wrong_charge', 'test', charge=0),
    'impossible_multiplicity': smiles_record('CCO', 'ethanol_doublet', 'test', multiplicity=2),
    'non_finite_coordinates': geometry_record(
        WATER[0], [[0, 0, 0], [0, 0.76, float('nan')], [0, -0.76, -0.48]], 'nan_water', 'test'
    ),
    'atoms_too_close': geometry_record(WATER[0], [[0, 0, 0], [0, 0.3, 0], [0, -0.76, -0.48]], 'squeezed_water', 'test'),
    'disconnected_fragments': smiles_record('[Na+].[Cl-]', 'salt', 'test'),
    'duplicate': smiles_record('OCC', 'ethanol_again', 'test'),  # same InChIKey as CCO below
    'embedding_failed': smiles_record('[C@H]12C[C@@H]1C2', 'impossible_bicyclobutane', 'test'),  # trans-fused: no 3D
}


def test_every_rejection_kind_has_a_case():
    assert set(REJECTION_CASES) == set(REJECTION_KINDS)


@pytest.mark.parametrize('kind', sorted(REJECTION_CASES))
def test_rejection(aiida_profile, kind):
    """The bad entry is rejected with its kind and a reason; the good entry is built; nothing of the bad one is stored."""
    record = REJECTION_CASES[kind]
    results, node = build([smiles_record('CCO', 'ethanol', 'test'), record], basis='6-31g')
    assert node.is_finished_ok, node.exit_message
    assert list(results['structures']) == ['ethanol']
    rejected = rejected_by_id(results)
    assert list(rejected) == [record['id']]
    assert rejected[record['id']]['kind'] == kind
    assert len(rejected[record['id']]['reason']) > 20
    # nothing half-stored: no calculation this build called created a structure for the rejected entry
    query = (
        orm.QueryBuilder()
        .append(orm.WorkChainNode, filters={'id': node.pk}, tag='build')
        .append(orm.CalculationNode, with_incoming='build', tag='calculation')
        .append(orm.StructureData, with_incoming='calculation', project='attributes.name')
    )
    assert query.all(flat=True) == ['ethanol']


def test_geometry_rejections_also_for_multiplicity_and_fragments(aiida_profile):
    records = [
        geometry_record(*WATER, 'water_triplet_even', 'test', multiplicity=2),
        geometry_record(
            ['O', 'H', 'H', 'O', 'H', 'H'],
            WATER[1] + [[5.0, 0, 0.119], [5.0, 0.763, -0.477], [5.0, -0.763, -0.477]],
            'dimer',
            'test',
        ),
        geometry_record(*WATER, 'water', 'test'),
    ]
    results, node = build(records)
    assert node.is_finished_ok
    kinds = {key: value['kind'] for key, value in rejected_by_id(results).items()}
    assert kinds == {'water_triplet_even': 'impossible_multiplicity', 'dimer': 'disconnected_fragments'}
    results, _ = build(records[1:2], allow_fragments=True)
    assert 'dimer' in results['structures']


def test_all_rejected_is_an_error_with_the_reasons(aiida_profile):
    results, node = build(
        [smiles_record('C1CC(', 'bad', 'test'), smiles_record('[I-]', 'iodide', 'test')], basis='6-31g'
    )
    assert node.exit_status == BuildWorkChain.exit_codes.ERROR_NO_VALID_ENTRIES.status
    assert 'None of the 2 entries' in node.exit_message and 'bad' in node.exit_message
    assert results['rejected'].get_dict()['count'] == 2


def test_empty_library_is_an_error(aiida_profile):
    _, node = build([])
    assert node.exit_status == BuildWorkChain.exit_codes.ERROR_EMPTY_LIBRARY.status


def test_provenance_from_library_to_structure(aiida_profile):
    results, node = build([smiles_record('CCO', 'ethanol', 'test'), smiles_record('C', 'methane', 'test')])
    library = node.inputs.library
    structure = results['structures']['ethanol']
    creator = structure.creator
    assert creator.process_label == 'build_structures'
    chunk = creator.inputs.entries
    assert chunk.creator.process_label == 'validate_library'
    assert chunk.creator.inputs.library.uuid == library.uuid
    labels = {link.link_label for link in node.base.links.get_outgoing(link_type=LinkType.CALL_CALC).all()}
    assert {'validate_library', 'build_0000'} <= labels
    attributes = structure.base.attributes.all
    assert attributes['smiles'] == 'CCO' and attributes['canonical_smiles'] == 'CCO'
    assert attributes['inchikey'] == 'LFQSCWFLJHTTHZ-UHFFFAOYSA-N'
    assert (attributes['charge'], attributes['multiplicity'], attributes['name'], attributes['source']) == (
        0,
        1,
        'ethanol',
        'test',
    )
    assert attributes['force_field'] == 'MMFF94'


@pytest.mark.parametrize('return_structures', [True, False])
def test_structures_as_outputs_or_through_the_calcfunctions(aiida_profile, return_structures):
    """``return_structures: false`` (protocol fast) leaves the RETURN links out; the same structures are found."""
    records = [smiles_record('CCO', 'ethanol', 'test'), smiles_record('C', 'methane', 'test')]
    builder = BuildWorkChain.get_builder_from_protocol(records, overrides={'parameters': {'return_structures': return_structures}})
    results, node = run_get_node(builder)
    found = BuildWorkChain.built_structures(node)
    assert sorted(found) == ['ethanol', 'methane']
    if return_structures:
        assert {key: s.uuid for key, s in results['structures'].items()} == {key: s.uuid for key, s in found.items()}
    else:
        assert 'structures' not in results
    assert BuildWorkChain.get_builder_from_protocol(records, protocol='fast').parameters['return_structures'] is False


def test_one_calcfunction_per_molecule_on_request(aiida_profile):
    records = [smiles_record(s, s, 'test') for s in ('C', 'CC', 'CCC')]
    results, _ = build(records, molecules_per_calculation=1)
    creators = {results['structures'][key].creator.uuid for key in ('C', 'CC', 'CCC')}
    assert len(creators) == 3


def test_conformers_lowest_and_all(aiida_profile):
    record = smiles_record('CCCCCCO', 'hexanol', 'test')
    every, _ = build([record], num_conformers=6, conformers='all', rms_threshold=0.1)
    energies = [s.base.attributes.get('force_field_energy') for _, s in sorted(every['structures'].items())]
    assert len(energies) > 1 and energies == sorted(energies)
    lowest, _ = build([record], num_conformers=6, rms_threshold=0.1)
    assert list(lowest['structures']) == ['hexanol']
    assert lowest['structures']['hexanol'].base.attributes.get('force_field_energy') == pytest.approx(energies[0])


def test_fixed_seed_reproduces_geometry(aiida_profile):
    first, _ = build([smiles_record('CC(=O)Oc1ccccc1C(=O)O', 'aspirin', 'test')])
    second, _ = build([smiles_record('CC(=O)Oc1ccccc1C(=O)O', 'aspirin', 'test')])
    a, b = (np.array([site.position for site in r['structures']['aspirin'].sites]) for r in (first, second))
    np.testing.assert_allclose(a, b, atol=1e-8)
    assert first['structures']['aspirin'].uuid != second['structures']['aspirin'].uuid


def test_whole_g2_set_round_trips(aiida_profile):
    """Every G2 molecule is accepted and comes out with the geometry, charge and multiplicity it went in with."""
    from ase.collections import g2

    records = read_g2('all')
    results, node = build(records)
    assert node.is_finished_ok, node.exit_message
    assert results['rejected'].get_dict()['entries'] == []
    structures = results['structures']
    assert len(structures) == len(g2.names) == 162
    by_name = {s.base.attributes.get('name'): s for s in structures.values()}
    for record in records:
        structure = by_name[record['id']]
        atoms = structure.get_ase()
        assert atoms.get_chemical_symbols() == record['symbols']
        np.testing.assert_allclose(atoms.positions, record['positions'], atol=1e-10)
        expected_multiplicity = round(abs(float(g2[record['id']].get_initial_magnetic_moments().sum()))) + 1
        assert structure.base.attributes.get('multiplicity') == expected_multiplicity, record['id']
        assert structure.base.attributes.get('charge') == 0
        assert structure.base.attributes.get('source') == f'g2:{record["id"]}'
    assert by_name['O2'].base.attributes.get('multiplicity') == 3
    assert by_name['CH2_s1A1d'].base.attributes.get('multiplicity') == 1
    assert by_name['CH2_s3B1d'].base.attributes.get('multiplicity') == 3
    assert by_name['H2O'].base.attributes.get('point_group') == 'C2v'
    assert by_name['CH4'].base.attributes.get('point_group') == 'Td'


# (SMILES, id, charge, multiplicity, extra record keys): real drugs and textbook radicals, carbenes and ions.
CHARGE_MULTIPLICITY_CASES = [
    ('CC(=O)Oc1ccccc1C(=O)O', 'aspirin', 0, 1, {}),
    ('CN1C=NC2=C1C(=O)N(C(=O)N2C)C', 'caffeine', 0, 1, {}),
    ('CC(C)Cc1ccc(cc1)C(C)C(=O)O', 'ibuprofen', 0, 1, {}),
    ('CC(=O)Nc1ccc(O)cc1', 'paracetamol', 0, 1, {}),
    ('[CH3]', 'methyl_radical', 0, 2, {}),
    ('[OH]', 'hydroxyl_radical', 0, 2, {}),
    ('CC1(C)CCCC(C)(C)N1[O]', 'tempo', 0, 2, {}),
    ('[CH2]', 'triplet_methylene', 0, 3, {}),
    ('[CH2]', 'singlet_methylene', 0, 1, {'multiplicity': 1}),
    ('Cl[C]Cl', 'dichlorocarbene', 0, 1, {'multiplicity': 1}),
    ('[O][O]', 'triplet_oxygen', 0, 3, {}),
    ('[CH2]C=C', 'allyl_radical', 0, 2, {}),
    ('CC(=O)[O-]', 'acetate', -1, 1, {}),
    ('[NH4+]', 'ammonium', 1, 1, {'charge': 1}),
    ('C[N+](C)(C)C', 'tetramethylammonium', 1, 1, {}),
    ('c1cc[cH-]c1', 'cyclopentadienide', -1, 1, {}),
    ('[O-][N+](=O)c1ccccc1', 'nitrobenzene', 0, 1, {}),
]


@pytest.fixture(scope='module')
def charge_multiplicity_build(aiida_profile):
    records = [
        {**smiles_record(smiles, entry_id, 'test'), **extra}
        for smiles, entry_id, _, _, extra in CHARGE_MULTIPLICITY_CASES
    ]
    results, node = build(records, num_conformers=1)
    assert node.is_finished_ok, node.exit_message
    return results


@pytest.mark.parametrize(
    'smiles,entry_id,charge,multiplicity,extra',
    CHARGE_MULTIPLICITY_CASES,
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_charge_and_multiplicity_from_smiles(charge_multiplicity_build, smiles, entry_id, charge, multiplicity, extra):
    assert charge_multiplicity_build['rejected'].get_dict()['entries'] == []
    structure = charge_multiplicity_build['structures'][entry_id]
    attributes = structure.base.attributes
    assert (attributes.get('charge'), attributes.get('multiplicity')) == (charge, multiplicity)
    electrons = sum(atom.number for atom in structure.get_ase()) - charge
    assert (electrons - (multiplicity - 1)) % 2 == 0
    from rdkit import Chem

    assert attributes.get('inchikey') == Chem.MolToInchiKey(Chem.MolFromSmiles(smiles))
    positions = structure.get_ase().positions
    if len(positions) > 1:
        distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1) + np.eye(len(positions)) * 10
        assert distances.min() > 0.8  # embedded and force-field optimised: no squeezed atoms


def test_protocol_overrides_fail_loudly():
    with pytest.raises(ValueError, match="unknown override 'parameters.num_conformer'"):
        BuildWorkChain.get_builder_from_protocol([], overrides={'parameters': {'num_conformer': 3}})
    with pytest.raises(ValueError, match="unknown override 'parameters.configurations.temp'"):
        BuildWorkChain.get_builder_from_protocol([], overrides={'parameters': {'configurations': {'temp': 300}}})
    with pytest.raises(ValueError, match='unknown protocol'):
        BuildWorkChain.get_builder_from_protocol([], protocol='quick')


def test_protocols_are_complete_parameter_sets():
    """Each default is written once (build.yaml): the model has none of its own, and every protocol validates."""
    from aiida_mlqm.workflows.build_parameters import BuildParameters, ConfigurationParameters

    for model in (BuildParameters, ConfigurationParameters):
        assert all(field.is_required() for field in model.model_fields.values()), model
    for name, protocol in BuildWorkChain.get_available_protocols().items():
        assert protocol['description']
        assert BuildWorkChain.get_protocol_inputs(name)['parameters']['num_conformers'] >= 1


def test_parameters_port_rejects_unknown_keys(aiida_profile):
    builder = BuildWorkChain.get_builder()
    builder.library = orm.List([smiles_record('C', 'methane', 'test')])
    with pytest.raises(ValueError, match="unknown key 'num_conformerz'"):
        builder.parameters = orm.Dict({'num_conformerz': 2})


def test_each_smiles_is_parsed_once_and_embeds_as_parsed(aiida_profile, monkeypatch):
    """Validation parses a SMILES; the build step embeds that parsed molecule (no second parse, same geometry)."""
    from aiida_mlqm.chemistry import smiles as chem_smiles
    from aiida_mlqm.workflows.build_parameters import parse_parameters

    calls, parse = [], chem_smiles.parse_smiles
    monkeypatch.setattr(chem_smiles, 'parse_smiles', lambda text: calls.append(text) or parse(text))
    given = {'aspirin': 'CC(=O)Oc1ccccc1C(=O)O', 'butenyl': '[CH2]/C=C/C', 'alaninate': 'C[C@H](N)C(=O)[O-]'}
    results, node = build([smiles_record(smiles, name, 'test') for name, smiles in given.items()])
    assert sorted(calls) == sorted(given.values())
    monkeypatch.undo()

    params = parse_parameters(node.inputs.parameters.get_dict())
    for name, smiles in given.items():
        _, mol_h = chem_smiles.with_hydrogens(smiles)
        conformers, _ = chem_smiles.embed_conformers(
            mol_h, num_conformers=params.num_conformers, seed=params.seed, force_field=params.force_field,
            max_iterations=params.max_iterations, rms_threshold=params.rms_threshold,
        )  # fmt: skip
        built = np.array([site.position for site in results['structures'][name].sites])
        np.testing.assert_allclose(built, conformers[0].positions, atol=1e-8)
