"""Protocols of mlqm.method_selection and mlqm.campaign: fast/balanced/stringent, defaults written once, overrides."""

from __future__ import annotations

import pathlib

import pytest
import yaml
from aiida_mlqm.workflows.campaign import CampaignWorkChain
from aiida_mlqm.workflows.campaign_config import CampaignConfigError, parse_config
from aiida_mlqm.workflows.method_selection import MethodSelectionWorkChain
from aiida_mlqm.workflows.protocol import ProtocolError

EXAMPLES = pathlib.Path(__file__).parents[2] / 'examples' / 'campaigns'


@pytest.mark.parametrize('chain', [MethodSelectionWorkChain, CampaignWorkChain])
def test_three_protocols_with_descriptions(chain):
    protocols = chain.get_available_protocols()
    assert set(protocols) == {'fast', 'balanced', 'stringent'}
    assert all(protocol['description'] for protocol in protocols.values())
    assert chain.get_default_protocol() == 'balanced'
    with pytest.raises(ProtocolError, match="unknown protocol 'quick'.*balanced, fast, stringent"):
        chain.get_protocol_inputs('quick')


def test_method_selection_port_defaults_are_the_protocol_defaults():
    """Each default is written once, in method_selection.yaml: the ports read it, pydantic owns the open mappings."""
    inputs = MethodSelectionWorkChain.spec().inputs
    defaults = MethodSelectionWorkChain.get_default_inputs()
    assert inputs['batch_size'].default().value == defaults['batch_size']
    for name in ('enabled', 'budget', 'per_round'):
        assert inputs['calibration'][name].default().value == defaults['calibration'][name]
    assert defaults['routing'] == {} and defaults['features_parameters'] == {}
    stringent = MethodSelectionWorkChain.get_protocol_inputs('stringent', {'routing': {'mr_threshold': 0.3}})
    assert stringent['routing'] == {'target_accuracy_kcal_mol': 1.0, 'mr_threshold': 0.3}
    assert stringent['calibration']['enabled'] is True and stringent['batch_size'] == defaults['batch_size']
    with pytest.raises(ProtocolError, match="unknown override 'batch_sise'"):
        MethodSelectionWorkChain.get_protocol_inputs('fast', {'batch_sise': 3})


@pytest.mark.parametrize('protocol', ['fast', 'balanced', 'stringent'])
def test_every_campaign_protocol_validates_with_a_users_config(protocol):
    config = yaml.safe_load((EXAMPLES / 'property.yaml').read_text())
    config.pop('stop', None)
    merged = CampaignWorkChain.get_protocol_inputs(protocol, {'config': config})['config']
    parsed = parse_config(merged)
    expected = {'fast': 3, 'balanced': 10, 'stringent': 30}[protocol]
    assert parsed.stop.max_iterations == expected


def test_campaign_builder_user_overrides_win_and_bad_configs_fail_before_storing(aiida_profile, mlqm_code):
    from aiida import orm

    config = yaml.safe_load((EXAMPLES / 'property.yaml').read_text())
    config['stop'] = {'max_iterations': 2}
    config['model'].pop('members')
    records = [{'id': 'water', 'kind': 'smiles', 'smiles': 'O'}]
    builder = CampaignWorkChain.get_builder_from_protocol(mlqm_code, records, 'fast', {'config': config})
    given = builder.config.get_dict()
    assert given['stop']['max_iterations'] == 2  # the user's value
    assert given['model']['members'] == 3 and given['model']['epochs'] == 200  # the protocol's, the user's
    assert builder.library.get_list() == records and not builder.config.is_stored

    before = orm.QueryBuilder().append(orm.Node).count()
    config['active_learning'] = {'batch_sise': 4}
    with pytest.raises(CampaignConfigError, match="unknown key 'batch_sise'; did you mean 'batch_size'"):
        CampaignWorkChain.get_builder_from_protocol(mlqm_code, records, 'fast', {'config': config})
    with pytest.raises(ProtocolError, match="unknown override 'confg'"):
        CampaignWorkChain.get_builder_from_protocol(mlqm_code, records, 'fast', {'confg': {}})
    assert orm.QueryBuilder().append(orm.Node).count() == before


def test_method_selection_builder_from_protocol(aiida_profile, mlqm_code):
    from method_selection_helpers import synthetic_classifier_node

    classifier = synthetic_classifier_node().store()
    builder = MethodSelectionWorkChain.get_builder_from_protocol(
        mlqm_code, {}, 'fast', {'features_parameters': {'basis': 'sto-3g'}}, classifier=classifier
    )
    assert builder.batch_size.value == 60 and builder.features_parameters.get_dict() == {'basis': 'sto-3g'}
    assert builder.calibration['enabled'].value is False and builder.classifier.uuid == classifier.uuid
