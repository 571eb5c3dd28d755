"""The campaign config: examples validate, misspelt keys fail naming the key, the allowed names and the closest one."""

from __future__ import annotations

import pathlib

import pytest
import yaml
from aiida_mlqm.chemistry.level import LevelOfTheory
from aiida_mlqm.workflows.campaign_config import (
    CampaignConfigError,
    load_config,
    parse_config,
)

EXAMPLES = pathlib.Path(__file__).parents[2] / 'examples' / 'campaigns'


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


@pytest.mark.parametrize('name', ['potential.yaml', 'property.yaml'])
def test_examples_validate_and_read_their_library(name):
    config = load_config(EXAMPLES / name)
    records = config.library.read(EXAMPLES)
    assert records
    if config.library.max_molecules:
        assert len(records) <= config.library.max_molecules


def test_potential_example_has_two_levels_with_budgets():
    config = load_config(EXAMPLES / 'potential.yaml')
    assert config.levels.expensive.relative_cost > 10 * config.levels.cheap.relative_cost
    assert config.label_budgets == {'hf/6-31g*': 120, 'ccsd(t)/6-31g*': 30}
    assert config.levels.cheap.parameters() == LevelOfTheory.from_label('hf/6-31g*', forces=True).as_parameters()


@pytest.mark.parametrize(
    ('section', 'key', 'suggestion'),
    [
        (None, 'stopp', 'stop'),
        ('active_learning', 'batch_sise', 'batch_size'),
        ('model', 'epoch', 'epochs'),
        ('stop', 'target_eror', 'target_error'),
    ],
)
def test_misspelt_key_names_key_allowed_names_and_closest(section, key, suggestion):
    values = example('potential.yaml')
    (values if section is None else values.setdefault(section, {}))[key] = 1
    with pytest.raises(CampaignConfigError) as info:
        parse_config(values)
    message = str(info.value)
    assert f"unknown key {key!r}; did you mean {suggestion!r}?" in message
    assert 'allowed:' in message and suggestion in message.split('allowed:')[1]
    if section:
        assert message.splitlines()[1].startswith(section)


def test_misspelt_key_in_a_file_names_the_file(tmp_path):
    values = example('property.yaml')
    values['screening']['top_kk'] = 3
    path = tmp_path / 'campaign.yaml'
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(CampaignConfigError, match=r"campaign.yaml.*\n.*screening.*unknown key 'top_kk'; did you mean 'top_k'"):
        load_config(path)


def test_inconsistent_configs_say_what_to_change():
    values = example('potential.yaml')
    values['levels']['cheap']['forces'] = False
    with pytest.raises(CampaignConfigError, match='levels.cheap.forces must be true'):
        parse_config(values)
    values = example('property.yaml')
    del values['objective']
    with pytest.raises(CampaignConfigError, match='needs objective'):
        parse_config(values)
    values = example('property.yaml')
    values['library']['g2'] = ['H2O']
    with pytest.raises(CampaignConfigError, match='exactly one of'):
        parse_config(values)
    values = example('property.yaml')
    values['levels']['cheap']['level'] = 'hf'
    with pytest.raises(CampaignConfigError, match='not METHOD/BASIS'):
        parse_config(values)
    values = example('property.yaml')
    values['levels']['cheap']['level'] = 'hf/no-such-basis'
    with pytest.raises(CampaignConfigError, match='levels.cheap.level'):
        parse_config(values)


def test_missing_required_section_and_unreadable_file(tmp_path):
    values = example('property.yaml')
    del values['levels']
    with pytest.raises(CampaignConfigError, match='levels: required key is missing'):
        parse_config(values)
    with pytest.raises(CampaignConfigError, match='cannot read'):
        load_config(tmp_path / 'nope.yaml')
    (tmp_path / 'bad.yaml').write_text('name: [unclosed')
    with pytest.raises(CampaignConfigError, match='not valid YAML'):
        load_config(tmp_path / 'bad.yaml')


def test_method_selection_section_gives_the_routing_rule():
    values = example('property.yaml')
    values['method_selection'] = {'enabled': True, 'multireference': 'flag', 'mr_threshold': 0.4}
    section = parse_config(values).method_selection
    assert section.routing() == {'multireference_action': 'flag', 'mr_threshold': 0.4}
    # the default: multireference molecules go to CASSCF at the cheap level's basis, automatic active space
    values['method_selection'] = {'enabled': True}
    config = parse_config(values)
    assert config.method_selection.routing() == {'multireference_action': 'casscf'}
    assert config.levels.multireference.label(config.levels.cheap.basis) == 'casscf/sto-3g'
    assert config.levels.multireference.parameters(config.levels.cheap.basis) == {'basis': 'sto-3g', 'casscf': {}}
    values['levels']['multireference'] = {'basis': 'cc-pvdz', 'casscf': {'max_orbitals': 6, 'max_cyle': 20}}
    with pytest.raises(CampaignConfigError, match=r'levels.multireference: .*max_cyle'):
        parse_config(values)
    values['levels']['multireference'] = {'method': 'caspt2'}
    with pytest.raises(CampaignConfigError, match=r'levels.multireference.method'):
        parse_config(values)
    del values['levels']['multireference']
    values['method_selection'] = {'enabled': False}
    assert parse_config(values).method_selection.enabled is False


@pytest.mark.parametrize('name', ['potential.yaml', 'property.yaml'])
def test_config_round_trips_through_the_work_chain_input(name):
    from aiida_mlqm.cli.campaign import config_values

    config = load_config(EXAMPLES / name)
    assert parse_config(config_values(config)) == config
    demo = yaml.safe_load((pathlib.Path(__file__).parents[2] / 'workflows' / 'protocols' / 'demo_campaign.yaml').read_text())
    assert parse_config(config_values(parse_config(demo))) == parse_config(demo)


def test_exploration_settings_leave_the_threshold_to_the_trust_levels():
    values = example('potential.yaml')
    values['active_learning']['explore'] = {'temperature': 800, 'starts': 2}
    explore = parse_config(values).active_learning.explore
    assert explore.job_settings()['temperature'] == 800 and 'threshold' not in explore.job_settings()
    values['active_learning']['explore'] = {'temperature': 800, 'threshold': 0.1}
    with pytest.raises(CampaignConfigError, match='threshold: set by the campaign'):
        parse_config(values)
    values['active_learning']['explore'] = {'temprature': 800}
    with pytest.raises(CampaignConfigError, match="did you mean 'temperature'"):
        parse_config(values)
    property_values = example('property.yaml')
    property_values['active_learning']['explore'] = {'temperature': 800}
    with pytest.raises(CampaignConfigError, match='are for target: potential'):
        parse_config(property_values)


def test_levels_carry_the_label_of_the_level_type():
    values = example('potential.yaml')
    values['levels']['cheap']['level'] = 'RHF / 6-31G*'
    values['levels']['expensive']['level'] = 'CCSD(T)-FC/6-31G*'
    config = parse_config(values)
    assert config.label_budgets == {'hf/6-31g*': 120, 'ccsd(t)-fc/6-31g*': 30}
    assert config.levels.expensive.parameters()['frozen_core'] is True
    assert config.levels.cheap.relative_cost == 1.0


def test_a_gap_has_no_delta_to_a_correlated_level():
    values = example('property.yaml')
    values['levels']['expensive'] = {'level': 'ccsd(t)/sto-3g'}
    with pytest.raises(CampaignConfigError, match=r'ccsd\(t\)/sto-3g has no HOMO-LUMO gap of its own'):
        parse_config(values)
    values['levels']['expensive'] = {'level': 'b3lyp/sto-3g'}
    assert parse_config(values).levels.expensive.level == 'b3lyp/sto-3g'
    values['objective'] = 'energy'
    values['levels']['expensive'] = {'level': 'ccsd(t)/sto-3g'}
    values['model']['extensive'] = True
    assert parse_config(values).levels.expensive.level == 'ccsd(t)/sto-3g'


def test_the_demo_and_the_property_example_define_a_hit():
    demo = yaml.safe_load((pathlib.Path(__file__).parents[2] / 'workflows' / 'protocols' / 'demo_campaign.yaml').read_text())
    assert parse_config(demo).screening.hit_threshold == 13.5
    assert parse_config(example('property.yaml')).screening.hit_threshold is not None
