"""``mlqm.predict``: apply a ``ModelData`` to many structures in one job, or explore with ML molecular dynamics.

``predict`` mode returns energies (or the property) with committee spread, calibrated spread, conformal half-width and
forces for every structure, batched. ``explore`` mode runs a Langevin trajectory from each structure with the committee
as ASE calculator and returns the geometries where the committee spread crossed the threshold, as ``StructureData``.
The job runs ``python -m aiida_mlqm.models.jobs.predict --input predict.json`` with the code.
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
from aiida_mlqm.models.config import PredictParameters, validation_message
from aiida_mlqm.provenance.dataset import DatasetData
from aiida_mlqm.provenance.model import ModelData

__all__ = ('PredictCalculation', 'structures_to_npz')

MODULE = 'aiida_mlqm.models.jobs.predict'


def structures_to_npz(structures: t.Sequence[orm.StructureData]) -> bytes:
    """Flat ``numbers`` / ``positions`` / ``offsets`` arrays of the structures, in the given order (no pickle)."""
    numbers, positions = [], []
    for structure in structures:
        atoms = structure.get_ase()
        numbers.append(atoms.get_atomic_numbers())
        positions.append(atoms.get_positions())
    offsets = np.concatenate([[0], np.cumsum([len(n) for n in numbers])])
    buffer = io.BytesIO()
    np.savez(buffer, numbers=np.concatenate(numbers), positions=np.concatenate(positions), offsets=offsets)
    return buffer.getvalue()


class PredictCalculation(CalcJob):
    """Predictions with uncertainty for many structures, or candidate geometries from ML-MD exploration."""

    FILENAME_INPUT = 'predict.json'
    FILENAME_STRUCTURES = 'structures.npz'
    FILENAME_PREDICTIONS = 'predictions.npz'
    FILENAME_CANDIDATES = 'candidates.npz'
    FILENAME_RESULTS = 'results.json'
    FILENAME_STATUS = 'status.json'
    FILENAME_STDOUT = 'predict.log'
    FOLDER_MODEL = 'model'

    @classmethod
    def define(cls, spec: CalcJobProcessSpec):  # type: ignore[override]
        super().define(spec)
        spec.input('model', valid_type=ModelData, help='The trained model to apply.')
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help='Structures to predict or to start trajectories from, by key; outputs keep the sorted key order.',
        )
        spec.input('dataset', valid_type=DatasetData, required=False, help='Alternatively: the frames of a dataset.')
        spec.input('features', valid_type=orm.ArrayData, required=False, help="Classifiers: array 'features' (n, d).")
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            required=False,
            help="{'mode': 'predict' | 'explore', 'forces': bool, 'batch_size': int, 'explore': {temperature (K), "
            'timestep (fs), steps, friction (1/fs), threshold (eV), check_interval, seed}}',
        )
        spec.inputs.validator = _validate_inputs
        spec.inputs['code'].required = True
        options = spec.inputs['metadata']['options']
        options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        options['withmpi'].default = False
        options['parser_name'].default = 'mlqm.predict'

        spec.output(
            'predictions',
            valid_type=orm.ArrayData,
            required=False,
            help="Arrays 'energy' (eV) or 'property', '*_spread' (calibrated), '*_spread_raw', '*_interval' "
            "(conformal half-width), 'members', flat 'forces' (eV/Å) with 'offsets'; classifiers: 'probabilities'.",
        )
        spec.output_namespace(
            'candidates', valid_type=orm.StructureData, dynamic=True, help='Explore mode: candidate geometries.'
        )
        spec.output('explore', valid_type=orm.Dict, required=False, help='Explore mode: per-trajectory summary.')

        declare(
            spec,
            'ERROR_OUTPUT_STATUS_MISSING',
            'ERROR_OUTPUT_PREDICTIONS_MISSING',
            'ERROR_OUTPUT_RESULTS_MISSING',
            'ERROR_OUTPUT_UNREADABLE',
            'ERROR_UNEXPECTED_PARSER_EXCEPTION',
            'ERROR_INVALID_TRAINING_INPUT',
            'ERROR_UNSUPPORTED_SPECIES',
            'ERROR_PREDICTION_FAILED',
            'ERROR_UNTRUSTED_MODEL',
            ERROR_INVALID_TRAINING_INPUT='The prediction job refused its inputs: {message}',
        )

    def ordered_structures(self) -> list[tuple[str, orm.StructureData]]:
        return sorted(self.inputs.structures.items()) if 'structures' in self.inputs else []

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        parameters = PredictParameters(**(self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}))
        job = {
            **parameters.model_dump(),
            'model': self.FOLDER_MODEL,
            'structures': self.FILENAME_STRUCTURES,
            'output': self.FILENAME_PREDICTIONS,
            'candidates': self.FILENAME_CANDIDATES,
            'results': self.FILENAME_RESULTS,
            'status': self.FILENAME_STATUS,
        }
        if 'structures' in self.inputs and self.inputs.structures:
            content = structures_to_npz([structure for _, structure in self.ordered_structures()])
        elif 'dataset' in self.inputs:
            from .train import dataset_to_npz

            content = dataset_to_npz(self.inputs.dataset)
        else:
            features = self.inputs.features
            buffer = io.BytesIO()
            np.savez(buffer, **{name: features.get_array(name) for name in features.get_arraynames()})
            content = buffer.getvalue()
        folder.create_file_from_filelike(io.BytesIO(content), self.FILENAME_STRUCTURES, mode='wb')
        self.inputs.model.export(folder.get_subfolder(self.FOLDER_MODEL, create=True).abspath)
        with folder.open(self.FILENAME_INPUT, 'w', encoding='utf-8') as handle:
            json.dump(job, handle, indent=1)

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ['-m', MODULE, '--input', self.FILENAME_INPUT]
        codeinfo.stdout_name = self.FILENAME_STDOUT
        codeinfo.withmpi = False

        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = [
            self.FILENAME_STDOUT,
            self.FILENAME_STATUS,
            self.FILENAME_RESULTS,
            self.FILENAME_PREDICTIONS,
            self.FILENAME_CANDIDATES,
        ]
        # model and structures are input nodes already: not copied again into the job's repository
        calcinfo.provenance_exclude_list = [self.FILENAME_STRUCTURES, self.FOLDER_MODEL]
        if 'OMP_NUM_THREADS' not in (self.node.get_option('environment_variables') or {}):
            cores = int((self.node.get_option('resources') or {}).get('num_cores_per_mpiproc') or 1)
            calcinfo.prepend_text = f'export OMP_NUM_THREADS={cores}'
        return calcinfo


def _validate_inputs(inputs: dict[str, t.Any], ctx) -> str | None:
    values = inputs['parameters'].get_dict() if 'parameters' in inputs else {}
    message = validation_message(PredictParameters, values)
    if message:
        return f'invalid `parameters`: {message}'
    model = inputs.get('model')
    sources = [name for name in ('structures', 'dataset', 'features') if inputs.get(name)]
    if len(sources) != 1:
        return f'give exactly one of `structures`, `dataset` or `features`; got {sources or "none"}'
    if model is None:
        return None
    kind = model.kind
    if kind == 'classifier' and sources != ['features']:
        return 'a classifier predicts from `features`, not from structures'
    if kind != 'classifier' and sources == ['features']:
        return f'a {kind} model predicts from `structures` or a `dataset`, not from `features`'
    if values.get('mode') == 'explore' and kind not in ('potential', 'ml_base_delta'):
        return (
            f'explore mode runs molecular dynamics and needs a potential or ml_base_delta model, not a {kind} model'
        )
    if kind != 'classifier':
        from ase.data import atomic_numbers

        known = set(model.species)
        if sources == ['structures']:
            elements = {
                atomic_numbers[s]
                for structure in inputs['structures'].values()
                for kind_ in structure.kinds
                for s in kind_.symbols
            }
        else:
            elements = set(inputs['dataset'].species)
        unknown = sorted(elements - known)
        if unknown:
            return f'elements {unknown} (atomic numbers) are not among the model species {sorted(known)}'
    return None
