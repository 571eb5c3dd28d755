"""A hostile .skops classifier (builtins.eval) is refused by ModelData.from_directory, ModelData.load_model() and an
mlqm.predict job on localhost; the code in it never runs (its marker file is never written)."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest
from aiida import engine, orm

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'models'))
from test_skops_security import write_hostile_classifier


@pytest.fixture
def hostile_node(tmp_path):
    """The hostile directory stored as a ModelData the way an attacker could: files put in the repository directly."""
    from aiida_mlqm.provenance.model import ModelData

    marker = tmp_path / 'code-ran'
    directory = write_hostile_classifier(tmp_path / 'model', marker)
    node = ModelData()
    node.base.repository.put_object_from_tree(str(directory))
    node.base.attributes.set('kind', 'classifier')
    return node.store(), directory, marker


def test_from_directory_refuses_naming_the_types(hostile_node):
    from aiida_mlqm.provenance.model import ModelData

    _, directory, marker = hostile_node
    with pytest.raises(ValueError, match=r'builtins\.eval'):
        ModelData.from_directory(directory)
    assert not marker.exists()


def test_load_model_refuses(hostile_node):
    from aiida_mlqm.models.errors import UntrustedModelError

    node, _, marker = hostile_node
    with pytest.raises(UntrustedModelError, match=r'builtins\.eval'):
        node.load_model()
    assert not marker.exists()


def test_predict_job_refuses_with_612(hostile_node, mlqm_code):
    from aiida_mlqm.calcjobs.predict import PredictCalculation

    node, _, marker = hostile_node
    _, process = engine.run_get_node(
        PredictCalculation,
        code=mlqm_code,
        model=node,
        features=orm.ArrayData({'features': np.zeros((3, 2))}),
        metadata={'options': {'resources': {'num_machines': 1}}},
    )
    assert process.exit_status == 612 and 'builtins.eval' in process.exit_message
    assert not marker.exists()
