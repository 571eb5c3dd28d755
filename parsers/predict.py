"""Parser of ``mlqm.predict``: arrays of predictions (with units), and in explore mode the candidate structures."""

from __future__ import annotations

import io
import json
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers.parser import Parser

from .train import _finite, read_status

__all__ = ('PredictParser',)


class PredictParser(Parser):
    """Attach ``predictions`` (predict mode) or ``candidates`` + ``explore`` (explore mode)."""

    def parse(self, **kwargs) -> ExitCode | None:
        try:
            return self._parse()
        except Exception as exception:  # noqa: BLE001 - any surprise becomes the documented exit code
            return self.exit_codes.ERROR_UNEXPECTED_PARSER_EXCEPTION.format(
                exception=f'{type(exception).__name__}: {exception}'
            )

    def _read(self, name: str) -> bytes:
        return self.retrieved.base.repository.get_object_content(name, mode='rb')

    def _parse(self) -> ExitCode | None:
        _status, exit_code = read_status(self, 'ERROR_PREDICTION_FAILED')
        if exit_code is not None:
            return exit_code
        names = self.retrieved.base.repository.list_object_names()
        if 'results.json' not in names:
            return self.exit_codes.ERROR_OUTPUT_RESULTS_MISSING
        results = json.loads(self._read('results.json'))
        keys = self._keys()
        if results.get('mode') == 'explore' and results.get('model_kind') != 'classifier':
            return self._parse_explore(results, keys, names)
        if 'predictions.npz' not in names:
            return self.exit_codes.ERROR_OUTPUT_PREDICTIONS_MISSING
        node = orm.ArrayData()
        with np.load(io.BytesIO(self._read('predictions.npz')), allow_pickle=False) as arrays:
            for name in arrays.files:
                node.set_array(name, arrays[name])
        node.base.attributes.set('keys', keys)
        node.base.attributes.set('units', results.get('units', {}))
        node.base.attributes.set('coverage', results.get('coverage'))
        node.base.attributes.set('requested_coverage', results.get('requested_coverage'))
        node.base.attributes.set('interval_note', results.get('interval_note'))
        node.base.attributes.set('model_kind', results.get('model_kind'))
        node.base.attributes.set('seconds', results.get('seconds'))
        self.out('predictions', node)
        return None

    def _keys(self) -> list[str]:
        inputs = self.node.inputs
        if 'structures' in inputs and inputs.structures:
            return sorted(inputs.structures.keys())
        if 'dataset' in inputs:
            return [str(i) for i in range(len(inputs.dataset))]
        return [str(i) for i in range(len(inputs.features.get_array('features')))]

    def _parse_explore(self, results: dict[str, t.Any], keys: list[str], names: list[str]) -> ExitCode | None:
        from aiida_mlqm.models.data import Structures

        self.out(
            'explore',
            orm.Dict(
                _finite(
                    {
                        'trajectories': results['trajectories'],
                        'candidates': results['candidates'],
                        'keys': keys,
                        'units': results.get('units', {}),
                    }
                )
            ),
        )
        if 'candidates.npz' not in names:
            return None  # no trajectory crossed the threshold: a valid, informative outcome
        candidates = Structures.load_npz(io.BytesIO(self._read('candidates.npz')))
        starts = dict(self.node.inputs.structures) if 'structures' in self.node.inputs else {}
        for index, info in enumerate(results['candidates']):
            numbers, positions = candidates.frame(index)
            from ase import Atoms

            structure = orm.StructureData(
                ase=Atoms(numbers=numbers, positions=positions, cell=np.eye(3) * 20.0, pbc=False)
            )
            start_key = keys[info['start']]
            start = starts.get(start_key)
            if start is not None:
                for attribute in ('charge', 'multiplicity', 'smiles', 'canonical_smiles', 'inchikey'):
                    if start.base.attributes.get(attribute, None) is not None:
                        structure.base.attributes.set(attribute, start.base.attributes.get(attribute))
            structure.base.attributes.set('source', f'mlqm.predict:explore:{start_key}:step{info["step"]}')
            structure.base.attributes.set('committee_spread', float(info['spread']))
            self.out(f'candidates.candidate_{index:03d}', structure)
        return None
