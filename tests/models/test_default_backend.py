"""Which backend a committee gets when its hyperparameters name none, and the mistakes that choice must not hide."""

from __future__ import annotations

import click
import pytest
from aiida_mlqm.models.config import (
    DEFAULT_BACKEND,
    TrainingConfig,
    TrainParameters,
    correction_config,
    parse_config,
    validation_message,
)
from aiida_mlqm.models.errors import InvalidInputError

LEVELS = {'base_level': 'hf/sto-3g', 'target_level': 'ccsd(t)-fc/sto-3g'}


def test_potentials_default_to_mace_and_the_rest_to_torchani():
    assert DEFAULT_BACKEND == {'potential': 'mace', 'property': 'torchani', 'delta': 'torchani'}
    potential = TrainingConfig().for_kind('potential')
    assert (potential.backend, potential.learning_rate) == ('mace', 1e-2)
    prop = TrainingConfig().for_kind('property')
    assert (prop.backend, prop.learning_rate) == ('torchani', 1e-3)
    assert correction_config({}).backend == 'torchani'
    # what the user set wins
    chosen = parse_config({'backend': 'torchani', 'learning_rate': 5e-3}).for_kind('potential')
    assert (chosen.backend, chosen.learning_rate) == ('torchani', 5e-3)
    assert correction_config({'backend': 'mace'}).backend == 'mace'


@pytest.mark.parametrize(
    ('values', 'kind', 'named'),
    [
        ({'hidden': [8]}, 'potential', "['hidden']"),  # torchani options under the MACE default
        ({'aev': 'ani1x', 'activation': 'gelu'}, 'potential', "['activation', 'aev']"),
        ({'mace': {'num_channels': 8}}, 'property', "['mace']"),
        ({'backend': 'torchani', 'mace': {'num_channels': 8}}, 'potential', "['mace']"),
    ],
)
def test_options_of_the_other_backend_are_refused_by_name(values, kind, named):
    with pytest.raises(InvalidInputError, match=r'belong to the other backend') as caught:
        parse_config(values).for_kind(kind)
    assert named in str(caught.value) and "set 'backend'" in str(caught.value)


def test_a_full_dump_of_hyperparameters_reads_back():
    config = parse_config({'members': 2})
    assert parse_config(config.model_dump()).for_kind('potential').backend == 'mace'
    assert parse_config(config.model_dump()).for_kind('property').backend == 'torchani'


def test_job_parameters_check_the_backend_of_each_committee():
    assert validation_message(TrainParameters, {'kind': 'potential', 'hyperparameters': {'hidden': [8]}})
    assert validation_message(TrainParameters, {'kind': 'property', 'hyperparameters': {'hidden': [8]}}) is None
    # a delta model's hyperparameters are its correction's, which defaults to torchani
    assert validation_message(TrainParameters, {'kind': 'delta', 'hyperparameters': {'hidden': [8]}, **LEVELS}) is None
    ml_base = {'kind': 'ml_base_delta', 'hyperparameters': {'hidden': [8]}, **LEVELS}
    assert 'hidden' in validation_message(TrainParameters, ml_base)  # its base is a potential: MACE by default
    assert validation_message(TrainParameters, {**ml_base, 'hyperparameters': {}}) is None


def test_cli_backend_option_and_hyperparameters_must_agree():
    from aiida_mlqm.cli.train import with_backend

    assert with_backend({'epochs': 2}, 'mace') == {'epochs': 2, 'backend': 'mace'}
    assert with_backend({'backend': 'mace'}, None) == {'backend': 'mace'}
    with pytest.raises(click.UsageError, match='differ'):
        with_backend({'backend': 'torchani'}, 'mace')


def test_a_potential_trained_with_default_hyperparameters_is_a_mace_committee(water_train):
    from aiida_mlqm.models.mace import MaceCommittee
    from aiida_mlqm.models.training import train_committee

    committee = train_committee(water_train.subset(range(12)), {'members': 2, 'epochs': 1, 'seed': 1}, log=None)
    assert isinstance(committee, MaceCommittee)
    assert committee.hyperparameters['backend'] == 'mace' and committee.hyperparameters['learning_rate'] == 1e-2
