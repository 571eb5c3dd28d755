"""``mlqm.pyscf.batch``: many molecules in one scheduler job, each isolated, same result schema as ``mlqm.pyscf``.

One job amortises the interpreter start, the PySCF import and the scheduler latency over all its structures. The
runner records a failure (SCF or CC not converged, an exception, out of memory) in that structure's result and goes
on, so the parser returns the good results and a ``failures`` Dict, with exit code 710 when some failed.
"""

from __future__ import annotations

import re
import typing as t

from aiida import orm
from aiida.engine import CalcJobProcessSpec

from ..chemistry.level import LevelOfTheory, ParameterError
from ..chemistry.molecule import Rejection
from ..exit_codes import declare
from ..provenance.dataset import DatasetData
from .molecule import structure_to_runner_entry
from .pyscf import BasePyscfCalculation, structure_elements

__all__ = ('PyscfBatchCalculation',)

# The key names the runner's files (``<key>.chk``) and the output links, so it must be a plain identifier.
KEY_PATTERN = re.compile(r'[A-Za-z_][A-Za-z0-9_]{0,79}')
STATE_KEYS = ('charge', 'multiplicity')


def is_structure_key(key: str) -> bool:
    """Whether ``key`` can name a structure of a batch: an identifier of at most 80 characters, without ``__``."""
    return isinstance(key, str) and bool(KEY_PATTERN.fullmatch(key)) and '__' not in key  # '__': AiiDA namespaces


def _molecular_states(inputs: t.Mapping[str, t.Any]) -> dict[str, dict[str, int]]:
    states = inputs.get('molecular_states')
    return states.get_dict() if states is not None else {}


def _entries(
    structures: t.Mapping[str, orm.StructureData], states: dict[str, t.Any], level: LevelOfTheory
) -> dict[str, dict[str, t.Any]]:
    """Return the runner entries; raise ``Rejection`` or ``ParameterError`` naming the structure key."""
    unknown = sorted(set(states) - set(structures))
    if unknown:
        raise Rejection(
            'invalid_record', f'`molecular_states` has keys {unknown} that are not in `structures`: remove them'
        )
    entries = {}
    for key, structure in structures.items():
        if not is_structure_key(key):  # '__' separates namespaces in AiiDA link labels
            raise Rejection(
                'invalid_record',
                f'structure key {key!r} must be an identifier of letters, digits and single _ (<= 80 characters)',
            )
        state = states.get(key, {})
        if not isinstance(state, dict) or set(state) - set(STATE_KEYS):
            raise Rejection(
                'invalid_record', f'`molecular_states.{key}` must be a dictionary with keys {STATE_KEYS}, got {state!r}'
            )
        charge = state.get('charge', level.charge)
        multiplicity = state.get('multiplicity', level.multiplicity)
        try:
            entries[key] = structure_to_runner_entry(structure, charge, multiplicity)
            level.check_molecule(entries[key]['multiplicity'])
        except Rejection as exception:
            raise Rejection(exception.kind, f'structure {key!r}: {exception}') from exception
        except ParameterError as exception:
            raise ParameterError(f'structure {key!r}: {exception}') from exception
    return entries


def _validate_inputs(inputs: dict[str, t.Any], ctx) -> str | None:
    """Check the shared parameters against every structure before submitting."""
    if ctx is not None and any(port not in ctx for port in ('structures', 'parameters')):
        return None
    structures, parameters = inputs.get('structures'), inputs.get('parameters')
    if not structures or parameters is None:
        return None if parameters is None else 'the `structures` namespace is empty: give at least one structure'
    elements = set().union(*(structure_elements(structure) for structure in structures.values()))
    try:
        level = LevelOfTheory.parse(parameters.get_dict(), elements)
        _entries(structures, _molecular_states(inputs), level)
    except (ParameterError, Rejection) as exception:
        return f'invalid inputs: {exception}'
    return None


class PyscfBatchCalculation(BasePyscfCalculation):
    """Many molecules with the same PySCF parameters in one job; each structure isolated."""

    # The parser also returns the structures that succeeded as one ``DatasetData`` (``dataset``): the rows a chain
    # hands on, one output node instead of a calcfunction with three input links a structure. Jobs whose results
    # are not energies of a level of theory (features, CASSCF diagnostics) set this to False.
    DATASET_ROWS = True

    @classmethod
    def define(cls, spec: CalcJobProcessSpec):  # type: ignore[override]
        """Define the process specification."""
        super().define(spec)
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            required=True,
            help='The molecules, keyed by identifiers such as `mol_0003` (they name the outputs).',
        )
        spec.input(
            'molecular_states',
            valid_type=orm.Dict,
            required=False,
            help="Per-structure {'charge': int, 'multiplicity': int} overriding the structures' attributes.",
        )
        spec.inputs.validator = _validate_inputs
        spec.inputs['metadata']['options']['parser_name'].default = 'mlqm.pyscf.batch'

        spec.output_namespace(
            'parameters',
            valid_type=orm.Dict,
            dynamic=True,
            required=False,
            help='Per structure that succeeded: the same Dict as the `parameters` output of mlqm.pyscf.',
        )
        spec.output_namespace(
            'forces',
            valid_type=orm.ArrayData,
            dynamic=True,
            required=False,
            help="Per structure that succeeded, when forces were asked for, for jobs without a `dataset` output: array "
            "'forces' (eV/Å). Jobs with a `dataset` output keep forces in its rows only.",
        )
        spec.output(
            'dataset',
            valid_type=DatasetData,
            required=False,
            help='The structures that succeeded as dataset rows (energy, forces, level), in the order of their keys; '
            'each row names the `parameters` output that holds its full result (`result_uuids`).',
        )
        spec.output(
            'failures',
            valid_type=orm.Dict,
            required=False,
            help="{key: {'status', 'message', 'exit_code'}} for each structure that failed; exit_code is the "
            'mlqm.pyscf exit status that failure corresponds to.',
        )
        declare(
            spec,
            'ERROR_ALL_STRUCTURES_FAILED',
            'WARNING_SOME_STRUCTURES_FAILED',
            ERROR_ALL_STRUCTURES_FAILED='Every structure failed: {summary}',
            WARNING_SOME_STRUCTURES_FAILED='{failed} of {total} structures failed: {summary}',
        )

    def get_structure_nodes(self) -> dict[str, orm.StructureData]:
        """Return the ``structures`` namespace as a plain dictionary."""
        return dict(self.inputs.structures)

    def get_runner_structures(self, level: LevelOfTheory) -> dict[str, dict[str, t.Any]]:
        """Return the runner entries; ``molecular_states`` wins over the parameters, which win over the structures."""
        return _entries(self.get_structure_nodes(), _molecular_states(self.inputs), level)
