"""``mlqm.train``: train a committee potential, a property model, a Δ model or a classifier as a job.

The job runs ``python -m aiida_mlqm.models.jobs.train --input train.json`` with the code (a Python that has aiida-mlqm
installed, e.g. ``mlqm setup``'s ``mlqm-python``). The dataset travels as ``dataset.npz`` (plain arrays, no pickle);
``parameters`` are validated against the allow-list of ``aiida_mlqm.models.config`` before submission, so a misspelt
hyperparameter fails here rather than after a queue wait.
"""

from __future__ import annotations

import io
import json
import typing as t

import numpy as np
from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJob, CalcJobProcessSpec
from aiida_mlqm.exit_codes import declare
from aiida_mlqm.models.config import TrainParameters, validation_message
from aiida_mlqm.provenance.dataset import DatasetData
from aiida_mlqm.provenance.model import ModelData

__all__ = ('TrainCalculation', 'dataset_to_npz')

MODULE = 'aiida_mlqm.models.jobs.train'


def dataset_to_npz(dataset: DatasetData) -> bytes:
    """All arrays of ``dataset`` plus per-frame ``levels`` and ``keys`` (structure uuids, for pairing levels)."""
    arrays = {name: dataset.get_array(name) for name in dataset.get_arraynames()}
    arrays['levels'] = np.asarray(dataset.levels, dtype=str)
    arrays['keys'] = np.asarray([uuid or '' for uuid in dataset.base.attributes.get('structure_uuids')], dtype=str)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class TrainCalculation(CalcJob):
    """Train a model from a ``DatasetData`` (or, for classifiers, a features/labels ``ArrayData``)."""

    FILENAME_INPUT = 'train.json'
    FILENAME_DATASET = 'dataset.npz'
    FILENAME_VALIDATION = 'validation.npz'
    FILENAME_STDOUT = 'train.log'
    FILENAME_METRICS = 'metrics.json'
    FILENAME_STATUS = 'status.json'
    FOLDER_MODEL = 'model'

    @classmethod
    def define(cls, spec: CalcJobProcessSpec):  # type: ignore[override]
        super().define(spec)
        spec.input(
            'dataset', valid_type=DatasetData, required=False, help='Labelled structures to train on (eV, eV/Å).'
        )
        spec.input(
            'validation_dataset',
            valid_type=DatasetData,
            required=False,
            help='Structures for early stopping; without it a fraction of `dataset` is held out.',
        )
        spec.input(
            'features',
            valid_type=orm.ArrayData,
            required=False,
            help="Classifiers only: arrays 'features' (n, d) and 'labels' (n,), optionally 'feature_names'.",
        )
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            required=False,
            help="{'kind': 'potential' | 'property' | 'delta' | 'ml_base_delta' | 'classifier', 'hyperparameters': {...}, 'target_key', "
            "'base_level', 'target_level', 'correction_hyperparameters'} (aiida_mlqm.models.config.TrainParameters).",
        )
        spec.inputs.validator = _validate_inputs
        spec.inputs['code'].required = True
        options = spec.inputs['metadata']['options']
        options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        options['withmpi'].default = False
        options['parser_name'].default = 'mlqm.train'

        spec.output('model', valid_type=ModelData, help='The trained model (weights + metadata, no pickle).')
        spec.output('metrics', valid_type=orm.Dict, help='Training, validation and calibration metrics (eV, eV/Å).')

        declare(
            spec,
            'ERROR_OUTPUT_STATUS_MISSING',
            'ERROR_OUTPUT_MODEL_MISSING',
            'ERROR_OUTPUT_METRICS_MISSING',
            'ERROR_OUTPUT_UNREADABLE',
            'ERROR_UNEXPECTED_PARSER_EXCEPTION',
            'ERROR_NAN_LOSS',
            'ERROR_INVALID_TRAINING_INPUT',
            'ERROR_UNSUPPORTED_SPECIES',
            'ERROR_TRAINING_FAILED',
            ERROR_INVALID_TRAINING_INPUT='The training job refused its inputs: {message}',
            ERROR_UNSUPPORTED_SPECIES='Elements outside the model: {message}',
        )

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        parameters = (
            TrainParameters(**self.inputs.parameters.get_dict()) if 'parameters' in self.inputs else TrainParameters()
        )
        job: dict[str, t.Any] = {
            **parameters.model_dump(),
            'dataset': self.FILENAME_DATASET,
            'output': self.FOLDER_MODEL,
            'metrics': self.FILENAME_METRICS,
            'status': self.FILENAME_STATUS,
        }
        if parameters.kind == 'classifier':
            features = self.inputs.features
            arrays = {name: features.get_array(name) for name in features.get_arraynames()}
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            folder.create_file_from_filelike(io.BytesIO(buffer.getvalue()), self.FILENAME_DATASET, mode='wb')
        else:
            folder.create_file_from_filelike(
                io.BytesIO(dataset_to_npz(self.inputs.dataset)), self.FILENAME_DATASET, mode='wb'
            )
        if 'validation_dataset' in self.inputs:
            folder.create_file_from_filelike(
                io.BytesIO(dataset_to_npz(self.inputs.validation_dataset)), self.FILENAME_VALIDATION, mode='wb'
            )
            job['validation_dataset'] = self.FILENAME_VALIDATION
        with folder.open(self.FILENAME_INPUT, 'w', encoding='utf-8') as handle:
            json.dump(job, handle, indent=1)

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ['-m', MODULE, '--input', self.FILENAME_INPUT]
        codeinfo.stdout_name = self.FILENAME_STDOUT
        codeinfo.withmpi = False

        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = [self.FILENAME_STDOUT, self.FILENAME_STATUS, self.FILENAME_METRICS, self.FOLDER_MODEL]
        # the arrays are already in the graph as the input nodes: no second copy in the job's repository
        calcinfo.provenance_exclude_list = [self.FILENAME_DATASET, self.FILENAME_VALIDATION]
        if 'OMP_NUM_THREADS' not in (self.node.get_option('environment_variables') or {}):
            cores = int((self.node.get_option('resources') or {}).get('num_cores_per_mpiproc') or 1)
            calcinfo.prepend_text = f'export OMP_NUM_THREADS={cores}'
        return calcinfo


def _validate_inputs(inputs: dict[str, t.Any], ctx) -> str | None:
    values = inputs['parameters'].get_dict() if 'parameters' in inputs else {}
    message = validation_message(TrainParameters, values)
    if message:
        return f'invalid `parameters`: {message}'
    kind = values.get('kind', 'potential')
    if kind == 'classifier':
        if 'features' not in inputs:
            return (
                "a classifier is trained from `features` (ArrayData with arrays 'features' and 'labels'), not a dataset"
            )
        names = set(inputs['features'].get_arraynames())
        if not {'features', 'labels'} <= names:
            return f"`features` must hold arrays 'features' and 'labels'; it has {sorted(names)}"
        return None
    dataset = inputs.get('dataset')
    if dataset is None:
        return f'a {kind} model needs a `dataset` (DatasetData)'
    if kind in ('delta', 'ml_base_delta'):
        levels = set(dataset.levels)
        missing = [level for level in (values.get('base_level'), values.get('target_level')) if level not in levels]
        if missing:
            return f'levels {missing} are not in the dataset, which has {sorted(levels)}'
    if kind == 'property' and values.get('target_key', 'target') not in dataset.get_arraynames():
        return f'target_key {values.get("target_key", "target")!r} is not an array of the dataset ({dataset.get_arraynames()})'
    hyper = values.get('hyperparameters', {})
    if kind == 'potential' and hyper.get('force_weight') and not dataset.forces_present.any():
        return 'force_weight > 0 but no row of the dataset has forces: label with forces or set force_weight to 0'
    if kind in ('potential', 'property'):
        levels = sorted(set(dataset.levels))
        target = values.get('target_level')
        if target is not None and target not in levels:
            return f'target_level {target!r} is not a level of the dataset, which has {levels}'
        if target is None and len(levels) > 1:
            return f'the dataset holds several levels {levels}: set target_level to the one to learn'
    return None
