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

from .molecule import MoleculeError, structure_to_runner_entry
from .parameters import ParameterError, check_molecule_compatibility, validate_parameters
from .pyscf import BasePyscfCalculation, structure_elements

__all__ = ('PyscfBatchCalculation',)

# The key names the runner's files (``<key>.chk``) and the output links, so it must be a plain identifier.
KEY_PATTERN = re.compile(r'^[A-Za-z_][A-Za-z0-9_]{0,79}$')
STATE_KEYS = ('charge', 'multiplicity')


def _molecular_states(inputs: t.Mapping[str, t.Any]) -> dict[str, dict[str, int]]:
    states = inputs.get('molecular_states')
    return states.get_dict() if states is not None else {}


def _entries(
    structures: t.Mapping[str, orm.StructureData], states: dict[str, t.Any], parameters: dict[str, t.Any]
) -> dict[str, dict[str, t.Any]]:
    """Return the runner entries; raise ``MoleculeError`` or ``ParameterError`` naming the structure key."""
    unknown = sorted(set(states) - set(structures))
    if unknown:
        raise MoleculeError(f'`molecular_states` has keys {unknown} that are not in `structures`: remove them')
    entries = {}
    for key, structure in structures.items():
        if not KEY_PATTERN.match(key) or '__' in key:  # '__' separates namespaces in AiiDA link labels
            raise MoleculeError(
                f'structure key {key!r} must be an identifier of letters, digits and single _ (<= 80 characters)'
            )
        state = states.get(key, {})
        if not isinstance(state, dict) or set(state) - set(STATE_KEYS):
            raise MoleculeError(f'`molecular_states.{key}` must be a dictionary with keys {STATE_KEYS}, got {state!r}')
        charge = state.get('charge', parameters['charge'])
        multiplicity = state.get('multiplicity', parameters['multiplicity'])
        try:
            entries[key] = structure_to_runner_entry(structure, charge, multiplicity)
            check_molecule_compatibility(parameters, entries[key]['multiplicity'])
        except (MoleculeError, ParameterError) as exception:
            raise type(exception)(f'structure {key!r}: {exception}') from exception
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
        normalised = validate_parameters(parameters.get_dict(), elements)
        _entries(structures, _molecular_states(inputs), normalised)
    except (ParameterError, MoleculeError) as exception:
        return f'invalid inputs: {exception}'
    return None


class PyscfBatchCalculation(BasePyscfCalculation):
    """Many molecules with the same PySCF parameters in one job; each structure isolated."""

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
            help="Per structure that succeeded, when forces were asked for: array 'forces' (eV/Å).",
        )
        spec.output(
            'failures',
            valid_type=orm.Dict,
            required=False,
            help="{key: {'status', 'message', 'exit_code'}} for each structure that failed; exit_code is the "
            'mlqm.pyscf exit status that failure corresponds to.',
        )
        spec.exit_code(430, 'ERROR_ALL_STRUCTURES_FAILED', message='Every structure failed: {summary}')
        spec.exit_code(
            710, 'WARNING_SOME_STRUCTURES_FAILED', message='{failed} of {total} structures failed: {summary}'
        )

    def get_structure_nodes(self) -> dict[str, orm.StructureData]:
        """Return the ``structures`` namespace as a plain dictionary."""
        return dict(self.inputs.structures)

    def get_runner_structures(self, parameters: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
        """Return the runner entries; ``molecular_states`` wins over the parameters, which win over the structures."""
        return _entries(self.get_structure_nodes(), _molecular_states(self.inputs), parameters)
