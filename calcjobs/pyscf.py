"""``mlqm.pyscf``: one molecule with PySCF (HF, DFT, MP2, CCSD, CCSD(T); forces, diagnostics, checkpoints).

Input, output names and exit codes follow aiida-pyscf's ``pyscf.base`` (``structure``, ``parameters``, ``checkpoint``;
303, 410, 500; a missing stdout is 312, since 302 is aiida-core's killed sub-process), but the job script is the fixed runner :mod:`aiida_mlqm.calcjobs.runners.pyscf_runner`, copied
verbatim, which reads the validated parameters from ``input.json``: nothing the user gives becomes code.
"""

from __future__ import annotations

import importlib.resources
import json
import typing as t

from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJob, CalcJobProcessSpec

from ..chemistry.level import LevelOfTheory, ParameterError
from ..chemistry.molecule import Rejection
from ..exit_codes import declare
from .molecule import structure_to_runner_entry

__all__ = ('BasePyscfCalculation', 'PyscfCalculation', 'structure_elements')


def structure_elements(structure: orm.StructureData) -> set[str]:
    """Return the chemical symbols present in ``structure``."""
    return {symbol for kind in structure.kinds for symbol in kind.symbols}


def scheduler_state(detailed_job_info: dict | None) -> str:
    """The ``State`` column of the job's own line in ``sacct -P`` output (what AiiDA stores as detailed job info)."""
    if not detailed_job_info or detailed_job_info.get('retval', 1) != 0:
        return ''
    lines = [line for line in (detailed_job_info.get('stdout') or '').splitlines() if line.strip()]
    if len(lines) < 2:
        return ''
    header = lines[0].split('|')
    if 'State' not in header:
        return ''
    return lines[1].split('|')[header.index('State')].strip()


class BasePyscfCalculation(CalcJob):
    """What ``mlqm.pyscf`` and ``mlqm.pyscf.batch`` share: the runner, its files and the exit codes."""

    FILENAME_RUNNER = 'pyscf_runner.py'
    FILENAME_INPUT = 'input.json'
    FILENAME_STDOUT = 'aiida.out'
    FILENAME_RESULTS = 'results.json'
    FILENAME_RESTART = 'restart.chk'
    # The runner stops this fraction into ``max_wallclock_seconds``, so it can still write its results and checkpoint.
    SOFT_WALLTIME_MARGIN = 0.9

    @classmethod
    def define(cls, spec: CalcJobProcessSpec):  # type: ignore[override]
        """Define the shared inputs, options and exit codes."""
        super().define(spec)
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            help='Method, basis, functional, reference, convergence settings (aiida_mlqm.chemistry.level.LevelOfTheory).',
        )
        spec.inputs['code'].required = True
        options = spec.inputs['metadata']['options']
        options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        options['withmpi'].default = False

        spec.exit_code(
            170,
            'ERROR_SCHEDULER_JOB_CANCELLED',
            invalidates_cache=True,
            message='The scheduler job was cancelled ({state}), by a person or by the scheduler (e.g. a preemption).',
        )
        declare(
            spec,
            'ERROR_OUTPUT_STDOUT_MISSING',
            'ERROR_OUTPUT_RESULTS_MISSING',
            'ERROR_OUTPUT_UNREADABLE',
            'ERROR_STRUCTURE_MISSING_FROM_RESULTS',
            'ERROR_UNEXPECTED_PARSER_EXCEPTION',
            'ERROR_OUT_OF_WALLTIME',
            'ERROR_OUT_OF_MEMORY',
            'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED',
            'ERROR_CC_CONVERGENCE_NOT_REACHED',
            'ERROR_PYSCF_EXCEPTION',
            'ERROR_IONIC_CONVERGENCE_NOT_REACHED',
            ERROR_OUTPUT_RESULTS_MISSING='The results JSON file was not retrieved.',
            ERROR_OUTPUT_UNREADABLE='The results JSON file could not be read: {exception}',
        )

    def get_runner_structures(self, level: LevelOfTheory) -> dict[str, dict[str, t.Any]]:
        """Return ``{key: runner entry}`` for the structures of this job.

        :param level: the validated level (its ``charge``/``multiplicity`` override the structures').
        """
        raise NotImplementedError

    @classmethod
    def get_level(cls, parameters: dict[str, t.Any]) -> LevelOfTheory:
        """The level of theory of ``parameters``: the object the input validator made (validation runs once per
        input); its ``as_parameters()`` is what the runner reads, its ``label`` what the parser stores."""
        return LevelOfTheory.parse(parameters)

    def get_structure_nodes(self) -> dict[str, orm.StructureData]:
        """Return ``{key: StructureData}`` of this job."""
        raise NotImplementedError

    def write_checkpoint_files(self) -> bool:
        """Whether the runner writes a mean-field checkpoint ``<key>.chk`` per structure."""
        return False

    def get_num_threads(self) -> int:
        """Return the OpenMP threads for PySCF: ``num_cores_per_mpiproc`` of the resources, 1 if not given."""
        resources = self.node.get_option('resources') or {}
        return int(resources.get('num_cores_per_mpiproc') or 1)

    def parse_scheduler_output(self, retrieved: orm.Node):
        """The scheduler's own exit code (110 memory, 120 walltime, 140 node failure), or 170 for a cancelled job.

        aiida-core's SLURM plugin reads ``sacct`` (accounting on, deploy/slurm/start.sh) but has no code for
        ``CANCELLED``; without one a cancelled job would surface as 303 (no results) and be retried as a failure.
        """
        exit_code = super().parse_scheduler_output(retrieved)
        if exit_code is not None and exit_code.status:
            return exit_code
        state = scheduler_state(self.node.get_detailed_job_info())
        if state.startswith('CANCELLED'):
            return self.exit_codes.ERROR_SCHEDULER_JOB_CANCELLED.format(state=state)
        return exit_code

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Write ``input.json`` and the fixed runner into the job folder.

        :param folder: the temporary folder that becomes the job folder.
        """
        level = self.get_level(self.inputs.parameters.get_dict())
        walltime = self.node.get_option('max_wallclock_seconds')
        checkpoint = self.inputs.get('checkpoint', None)
        data = {
            'parameters': level.as_parameters(),
            'structures': self.get_runner_structures(level),
            'checkpoint': self.FILENAME_RESTART if checkpoint is not None else None,
            'soft_walltime': walltime * self.SOFT_WALLTIME_MARGIN if walltime else None,
            'write_checkpoint': self.write_checkpoint_files(),
        }
        with folder.open(self.FILENAME_INPUT, 'w', encoding='utf-8') as handle:
            json.dump(data, handle, indent=1)
        runner = importlib.resources.files('aiida_mlqm.calcjobs.runners').joinpath(self.FILENAME_RUNNER)
        with folder.open(self.FILENAME_RUNNER, 'w', encoding='utf-8') as handle:
            handle.write(runner.read_text(encoding='utf-8'))

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [self.FILENAME_RUNNER]
        codeinfo.stdout_name = self.FILENAME_STDOUT

        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = [self.FILENAME_STDOUT, self.FILENAME_RESULTS]
        calcinfo.retrieve_temporary_list = []
        calcinfo.provenance_exclude_list = []
        if checkpoint is not None:
            with checkpoint.open(mode='rb') as handle:
                folder.create_file_from_filelike(handle, self.FILENAME_RESTART, mode='wb')
            # The checkpoint is already in the graph as an input node: no second copy in the repository.
            calcinfo.provenance_exclude_list.append(self.FILENAME_RESTART)
        if self.write_checkpoint_files():
            calcinfo.retrieve_temporary_list.extend(f'{key}.chk' for key in data['structures'])
        # One thread per granted core: two jobs on two cores must not fight over four threads. A user value in
        # ``environment_variables`` wins.
        if 'OMP_NUM_THREADS' not in (self.node.get_option('environment_variables') or {}):
            calcinfo.prepend_text = f'export OMP_NUM_THREADS={self.get_num_threads()}'
        return calcinfo


def _validate_inputs(inputs: dict[str, t.Any], ctx) -> str | None:
    """Check parameters against the structure (basis for its elements, charge, multiplicity, method) before submitting."""
    if ctx is not None and any(port not in ctx for port in ('structure', 'parameters')):
        return None  # ports excluded when exposed in a workchain: the workchain validates
    structure, parameters = inputs.get('structure'), inputs.get('parameters')
    if structure is None or parameters is None:
        return None
    try:
        level = LevelOfTheory.parse(parameters.get_dict(), structure_elements(structure))
        entry = structure_to_runner_entry(structure, level.charge, level.multiplicity)
        level.check_molecule(entry['multiplicity'])
    except (ParameterError, Rejection) as exception:
        return f'invalid `parameters` for this structure: {exception}'
    return None


class PyscfCalculation(BasePyscfCalculation):
    """One molecule with PySCF through the fixed runner."""

    STRUCTURE_KEY = 'structure'
    FILENAME_CHECKPOINT = f'{STRUCTURE_KEY}.chk'

    @classmethod
    def define(cls, spec: CalcJobProcessSpec):  # type: ignore[override]
        """Define the process specification."""
        super().define(spec)
        spec.input(
            'structure',
            valid_type=orm.StructureData,
            help='The molecule; its `charge` and `multiplicity` attributes are used unless the parameters set them.',
        )
        spec.input(
            'checkpoint',
            valid_type=orm.SinglefileData,
            required=False,
            help='Mean-field checkpoint (PySCF chkfile) of an earlier run: the SCF starts from its orbitals.',
        )
        spec.inputs.validator = _validate_inputs
        spec.inputs['metadata']['options']['parser_name'].default = 'mlqm.pyscf'

        spec.output(
            'parameters',
            valid_type=orm.Dict,
            required=False,
            help='Energies (eV, with `*_units`), orbital gap, diagnostics, convergence, timings, versions, status.',
        )
        spec.output('forces', valid_type=orm.ArrayData, required=False, help="Array 'forces' (eV/Å), when asked for.")
        spec.output(
            'checkpoint',
            valid_type=orm.SinglefileData,
            required=False,
            help='Mean-field checkpoint when the calculation failed, to restart from (input `checkpoint`).',
        )
        spec.default_output_node = 'parameters'

    def get_structure_nodes(self) -> dict[str, orm.StructureData]:
        """Return the single structure under the key ``structure``."""
        return {self.STRUCTURE_KEY: self.inputs.structure}

    def get_runner_structures(self, level: LevelOfTheory) -> dict[str, dict[str, t.Any]]:
        """Return the structure as the runner reads it; charge and multiplicity from the parameters win."""
        entry = structure_to_runner_entry(self.inputs.structure, level.charge, level.multiplicity)
        return {self.STRUCTURE_KEY: entry}

    def write_checkpoint_files(self) -> bool:
        """Always write the checkpoint: the parser attaches it when the run fails, for the restart."""
        return True
