"""Parser of ``mlqm.pyscf`` and the code it shares with the ``mlqm.pyscf.batch`` parser.

The runner writes atomic units; here, once, they become eV and eV/Å (CODATA 2018, the values aiida-pyscf uses through
pint), each stored next to a ``*_units`` key.
"""

from __future__ import annotations

import json
import pathlib
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers.parser import Parser

__all__ = (
    'BOHR_TO_ANGSTROM',
    'HARTREE_TO_EV',
    'STATUS_EXIT_CODES',
    'PyscfParser',
    'PyscfParserBase',
    'convert_result',
    'forces_node',
)

from ..units import BOHR_TO_ANGSTROM, ENERGY_UNIT, FORCES_UNIT, HARTREE_TO_EV

ENERGY_KEYS = (
    'scf_energy', 'mp2_correlation_energy', 'ccsd_correlation_energy', 'ccsd_t_correction', 'total_energy',
    'homo', 'lumo', 'homo_lumo_gap', 'uhf_energy', 'casscf_energy',
)  # fmt: skip
PLAIN_KEYS = (
    'status', 'method', 'basis', 'xc', 'reference', 'charge', 'multiplicity', 'nelectron', 'nao', 'frozen_orbitals',
    'scf_converged', 'scf_cycles', 's2', 'ccsd_converged', 't1_diagnostic', 'd1_diagnostic', 'error',
    'casscf_converged', 'casscf_start', 'active_space', 'active_occupations', 'leading_configuration_weight',
)  # fmt: skip
FEATURES_UNITS = 'Hartree (energies, gaps, excitation energies, stability eigenvalues); others dimensionless'
# Runner status -> exit code label of mlqm.pyscf ('missing': the job ended before the structure's turn).
STATUS_EXIT_CODES = {
    'scf_not_converged': 'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED',
    'cc_not_converged': 'ERROR_CC_CONVERGENCE_NOT_REACHED',
    'out_of_memory': 'ERROR_OUT_OF_MEMORY',
    'walltime': 'ERROR_OUT_OF_WALLTIME',
    'error': 'ERROR_PYSCF_EXCEPTION',
    'missing': 'ERROR_STRUCTURE_MISSING_FROM_RESULTS',
}


def convert_result(
    result: t.Mapping[str, t.Any], versions: t.Mapping[str, t.Any], level_label: str
) -> tuple[dict[str, t.Any], np.ndarray | None]:
    """Return ``(parameters, forces)`` of one structure's runner result: energies in eV, forces in eV/Å or ``None``.

    :param level_label: the canonical label of the level the job ran (:attr:`LevelOfTheory.label`).
    """
    parameters: dict[str, t.Any] = {key: result[key] for key in PLAIN_KEYS if result.get(key) is not None}
    for key in ENERGY_KEYS:
        if result.get(key) is not None:
            parameters[key] = float(result[key]) * HARTREE_TO_EV
            parameters[f'{key}_units'] = ENERGY_UNIT
    if result.get('features') is not None:  # the features mode of method selection (mlqm.features.batch)
        parameters['features'] = dict(result['features'])
        parameters['features_units'] = FEATURES_UNITS
    parameters['level_of_theory'] = level_label
    parameters['timings'] = dict(result.get('timings', {}))
    parameters['timings_units'] = 's'
    parameters['versions'] = dict(versions)
    forces = None
    if result.get('forces') is not None:
        forces = np.asarray(result['forces'], dtype=float) * (HARTREE_TO_EV / BOHR_TO_ANGSTROM)
    return parameters, forces


def forces_node(forces: np.ndarray) -> orm.ArrayData:
    """Return an ``ArrayData`` with the array ``forces`` (eV/Å) and the attribute ``units``."""
    node = orm.ArrayData()
    node.set_array('forces', forces)
    node.base.attributes.set('units', FORCES_UNIT)
    return node


def failure_message(result: t.Mapping[str, t.Any]) -> str:
    """Return a one-line description of a failed structure's result."""
    error = result.get('error') or {}
    return f'{error.get("type", result.get("status"))} in stage {error.get("stage", "?")}: {error.get("message", "")}'


class PyscfParserBase(Parser):
    """Reads ``aiida.out`` and ``results.json``; turns an unexpected exception into exit code 350."""

    def parse(self, **kwargs) -> ExitCode | None:
        """Parse the retrieved files; never raise."""
        try:
            return self.parse_results(**kwargs)
        except Exception as exception:
            self.logger.exception('unexpected exception while parsing')
            return self.exit_codes.ERROR_UNEXPECTED_PARSER_EXCEPTION.format(
                exception=f'{type(exception).__name__}: {exception}'
            )

    def parse_results(self, **kwargs) -> ExitCode | None:
        """Parse the retrieved files (subclasses)."""
        raise NotImplementedError

    def scheduler_or(self, exit_code: ExitCode) -> ExitCode:
        """Return the scheduler's exit code (e.g. 110 out of memory, 120 walltime) if it set one, else ``exit_code``.

        Used when no results came back: the scheduler's diagnosis is then the more specific one.
        """
        if self.node.exit_status is not None:
            return ExitCode(self.node.exit_status, self.node.exit_message)
        return exit_code

    def read_results(self) -> dict[str, t.Any] | ExitCode:
        """Return the parsed ``results.json`` or the exit code saying why it is not there."""
        from aiida_mlqm.calcjobs.pyscf import BasePyscfCalculation as Calc

        names = self.retrieved.base.repository.list_object_names()
        if Calc.FILENAME_STDOUT not in names:
            return self.scheduler_or(self.exit_codes.ERROR_OUTPUT_STDOUT_MISSING)
        if Calc.FILENAME_RESULTS not in names:
            return self.scheduler_or(self.exit_codes.ERROR_OUTPUT_RESULTS_MISSING)
        try:
            with self.retrieved.base.repository.open(Calc.FILENAME_RESULTS, 'r') as handle:
                results = json.load(handle)
            if not isinstance(results, dict) or not isinstance(results.get('structures'), dict):
                raise ValueError('no `structures` object at the top level')  # noqa: TRY004
        except ValueError as exception:  # json.JSONDecodeError is a ValueError
            return self.scheduler_or(self.exit_codes.ERROR_OUTPUT_UNREADABLE.format(exception=str(exception)))
        return results

    def level_label(self) -> str:
        """The canonical label of what the job computed, as its CalcJob class names it."""
        return self.node.process_class.get_level(self.node.inputs.parameters.get_dict()).label

    def exit_code_for(self, status: str, result: t.Mapping[str, t.Any]) -> ExitCode:
        """Return the ``mlqm.pyscf`` exit code for a failed structure's status."""
        exit_code = getattr(self.exit_codes, STATUS_EXIT_CODES.get(status, 'ERROR_PYSCF_EXCEPTION'))
        message = failure_message(result)
        if status == 'missing':
            return exit_code.format(keys=message)
        if status in ('walltime', 'out_of_memory', 'error'):
            return exit_code.format(message=message)
        return exit_code


class PyscfParser(PyscfParserBase):
    """Parser of ``mlqm.pyscf``: ``parameters`` (and ``forces``) from ``results.json``; checkpoint on failure."""

    def parse_results(self, retrieved_temporary_folder: str | None = None, **kwargs) -> ExitCode | None:
        """Attach the outputs that could be built and return the most specific exit code."""
        from aiida_mlqm.calcjobs.pyscf import PyscfCalculation

        results = self.read_results()
        if isinstance(results, ExitCode):
            self.attach_checkpoint(retrieved_temporary_folder)
            return results
        if 'error' in results:  # the runner refused its input: nothing ran
            return self.exit_codes.ERROR_PYSCF_EXCEPTION.format(message=failure_message(results))
        result = results['structures'].get(PyscfCalculation.STRUCTURE_KEY)
        if result is None:
            self.attach_checkpoint(retrieved_temporary_folder)
            return self.scheduler_or(
                self.exit_codes.ERROR_STRUCTURE_MISSING_FROM_RESULTS.format(keys=PyscfCalculation.STRUCTURE_KEY)
            )
        parameters, forces = convert_result(result, results.get('versions', {}), self.level_label())
        self.out('parameters', orm.Dict(parameters))
        status = result.get('status', 'error')
        if status == 'ok':
            if forces is not None:
                self.out('forces', forces_node(forces))
            return ExitCode(0)
        self.attach_checkpoint(retrieved_temporary_folder)
        return self.exit_code_for(status, result)

    def attach_checkpoint(self, retrieved_temporary_folder: str | None) -> None:
        """Attach the mean-field checkpoint, if it came back, for a restart."""
        from aiida_mlqm.calcjobs.pyscf import PyscfCalculation

        if retrieved_temporary_folder is None:
            return
        filepath = pathlib.Path(retrieved_temporary_folder) / PyscfCalculation.FILENAME_CHECKPOINT
        if filepath.is_file() and filepath.stat().st_size > 0:
            self.out('checkpoint', orm.SinglefileData(filepath))
