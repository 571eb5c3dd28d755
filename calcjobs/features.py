"""``mlqm.features.batch``: multireference features of many molecules in one job (method selection).

The same job as ``mlqm.pyscf.batch`` (one scheduler job, each structure isolated, per-structure ``parameters``
outputs, ``failures``, exit codes 430/710), with the fixed runner in its ``features`` mode: it copies
``features_runner.py`` beside ``pyscf_runner.py``, and ``parameters`` are a :class:`FeatureJobParameters` instead of a
level of theory. The features come back in each structure's ``parameters`` Dict under ``features`` (Hartree for
energies, gaps, excitation energies and stability eigenvalues, with ``features_units``), on the geometry given.
"""

from __future__ import annotations

import importlib.resources
import typing as t

from aiida.common.folders import Folder
from aiida.engine import CalcJobProcessSpec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .batch import PyscfBatchCalculation, _entries, _molecular_states
from ..chemistry.level import ParameterError, check_basis
from ..chemistry.molecule import Rejection
from .pyscf import structure_elements
from .runners import features_runner

__all__ = ('FeatureJobParameters', 'FeaturesBatchCalculation', 'validate_feature_parameters')

class FeatureOptions(BaseModel):
    """What the features job computes beyond its fixed set (see ``calcjobs/runners/features_runner.py``)."""

    model_config = ConfigDict(extra='forbid', frozen=True, strict=True)

    fod_xc: t.Literal['tpss', 'pbe', 'b3lyp', 'pbe0'] = 'pbe'
    fod_temperature: float = Field(5000.0, ge=100.0, le=50000.0, description='K')
    fod_grid_level: int = Field(0, ge=0, le=9)
    excited_states: int = Field(1, ge=1, le=20)
    second_order_singles: bool = True
    stability_cycles: int = Field(3, ge=0, le=10)
    fractional_threshold: float = Field(0.02, ge=1e-4, le=0.5)
    density_fit: bool = Field(False, description='density-fitted SCF steps (slower than exact integrals below ~40 AOs)')
    tdhf: bool = Field(False, description='also the lowest TDHF (RPA) root; the CIS roots are always computed')


class FeatureScf(BaseModel):
    model_config = ConfigDict(extra='forbid', frozen=True, strict=True)

    conv_tol: float = Field(1e-8, ge=1e-14, le=1e-4, description='Hartree')
    max_cycle: int = Field(100, ge=1, le=1000)
    level_shift: float = Field(0.0, ge=0.0)
    damp: float = Field(0.0, ge=0.0, lt=1.0)
    init_guess: t.Literal['minao', 'atom', 'huckel', 'hcore', '1e'] = 'minao'


class RunnerModeParameters(BaseModel):
    """What the features and CASSCF jobs share: a runner mode (``METHOD``) on a basis, asked of the batch job as a
    ``LevelOfTheory`` would be; charge and multiplicity come from the structures."""

    model_config = ConfigDict(extra='forbid', frozen=True, strict=True)

    METHOD: t.ClassVar[str]
    charge: t.ClassVar[None] = None
    multiplicity: t.ClassVar[None] = None
    basis: str

    def as_parameters(self) -> dict[str, t.Any]:
        """What the fixed runner reads (its ``METHOD`` mode; charge and multiplicity from the structures)."""
        return {**self.model_dump(), 'method': self.METHOD, 'charge': None, 'multiplicity': None, 'reference': 'auto'}

    @property
    def label(self) -> str:
        return f'{self.METHOD}/{self.basis.lower()}'


class FeatureJobParameters(RunnerModeParameters):
    """``parameters`` of ``mlqm.features.batch``: basis, feature options, SCF settings, memory."""

    METHOD: t.ClassVar[str] = 'features'

    basis: str = Field('6-31g', description="the classifier's feature basis (the shipped one: 6-31G)")
    features: FeatureOptions = FeatureOptions()
    scf: FeatureScf = FeatureScf()
    max_memory: int = Field(4000, ge=100, description='MB')

    def check_molecule(self, multiplicity: int) -> str:
        """Any multiplicity is fine: the features runner picks RHF or ROHF/UHF itself."""
        return 'restricted' if multiplicity == 1 else 'unrestricted'


def _validated(model: type[RunnerModeParameters], parameters: t.Any, elements: t.Iterable[str], what: str, check):
    """``parameters`` validated as ``model`` (then its basis against ``elements``, then ``check`` of the runner, so that
    the plugin and the compute node agree), or ``ParameterError`` naming the key and the fix."""
    if not isinstance(parameters, dict):
        raise ParameterError(f'parameters must be a dictionary, got {type(parameters).__name__}')
    try:
        validated = model.model_validate(parameters)
    except ValidationError as exception:
        problems = '; '.join(
            f'`{".".join(str(p) for p in error["loc"])}`: {error["msg"]}' for error in exception.errors()
        )
        allowed = ', '.join(model.model_fields)
        raise ParameterError(f'invalid {what} parameters: {problems} (allowed keys: {allowed})') from None
    check_basis(validated.basis, elements)
    try:
        check(validated)
    except ParameterError:
        raise
    except ValueError as exception:
        raise ParameterError(str(exception)) from None
    return validated


def _validate_job_inputs(inputs: dict[str, t.Any], ctx, validate) -> str | None:
    """The input validator of both jobs: ``validate(parameters, elements)``, then every structure's state."""
    if ctx is not None and any(port not in ctx for port in ('structures', 'parameters')):
        return None
    structures, parameters = inputs.get('structures'), inputs.get('parameters')
    if not structures or parameters is None:
        return None if parameters is None else 'the `structures` namespace is empty: give at least one structure'
    elements = set().union(*(structure_elements(structure) for structure in structures.values()))
    try:
        _entries(structures, _molecular_states(inputs), validate(parameters.get_dict(), elements))
    except (ParameterError, Rejection) as exception:
        return f'invalid inputs: {exception}'
    return None


def validate_feature_parameters(parameters: t.Any, elements: t.Iterable[str] = ()) -> FeatureJobParameters:
    """Return the validated parameters or raise ``ParameterError`` naming the key and the fix."""
    check = lambda validated: features_runner.check_options(validated.features.model_dump())  # noqa: E731
    return _validated(FeatureJobParameters, parameters, elements, 'features', check)


def _validate_inputs(inputs: dict[str, t.Any], ctx) -> str | None:
    return _validate_job_inputs(inputs, ctx, validate_feature_parameters)


class FeaturesBatchCalculation(PyscfBatchCalculation):
    """Features for method selection of many molecules in one job; each structure isolated."""

    FILENAME_FEATURES_RUNNER = 'features_runner.py'
    DATASET_ROWS = False  # features are not a level's energies

    @classmethod
    def define(cls, spec: CalcJobProcessSpec):  # type: ignore[override]
        """Define the process specification: that of ``mlqm.pyscf.batch`` with feature parameters."""
        super().define(spec)
        spec.inputs['parameters'].help = (
            'Feature job parameters: basis, features (fod_xc, fod_temperature, excited_states, ...), scf, max_memory '
            '(aiida_mlqm.calcjobs.features.FeatureJobParameters).'
        )
        spec.inputs.validator = _validate_inputs

    @classmethod
    def get_level(cls, parameters: dict[str, t.Any]) -> FeatureJobParameters:
        """The validated feature parameters (what the runner reads: ``as_parameters()``; the label: ``label``)."""
        return validate_feature_parameters(parameters)

    def prepare_for_submission(self, folder: Folder):
        """The batch job's files plus the features module the runner imports."""
        calcinfo = super().prepare_for_submission(folder)
        module = importlib.resources.files('aiida_mlqm.calcjobs.runners').joinpath(self.FILENAME_FEATURES_RUNNER)
        with folder.open(self.FILENAME_FEATURES_RUNNER, 'w', encoding='utf-8') as handle:
            handle.write(module.read_text(encoding='utf-8'))
        return calcinfo


class CasscfOptions(BaseModel):
    """How the multireference path chooses its active space and runs CASSCF (``features_runner.run_casscf``)."""

    model_config = ConfigDict(extra='forbid', frozen=True, strict=True)

    window_low: float = Field(0.02, ge=1e-4, le=1.0, description='UHF natural occupations above this are active')
    window_high: float = Field(1.98, ge=1.0, le=2.0 - 1e-4, description='... and below this')
    min_orbitals: int = Field(2, ge=1, le=18)
    max_orbitals: int = Field(12, ge=1, le=18)
    max_cycle: int = Field(50, ge=1, le=500, description='CASSCF macro iterations')
    conv_tol: float = Field(1e-7, ge=1e-12, le=1e-3, description='Hartree')


class CasscfJobParameters(RunnerModeParameters):
    """``parameters`` of ``mlqm.casscf.batch``: basis, active-space and CASSCF options, SCF settings, memory."""

    METHOD: t.ClassVar[str] = 'casscf'

    basis: str = 'cc-pvdz'
    casscf: CasscfOptions = CasscfOptions()
    scf: FeatureScf = FeatureScf()
    max_memory: int = Field(4000, ge=100, description='MB')

    def check_molecule(self, multiplicity: int) -> str:
        return 'restricted' if multiplicity == 1 else 'restricted-open'


def validate_casscf_parameters(parameters: t.Any, elements: t.Iterable[str] = ()) -> CasscfJobParameters:
    """Return the validated CASSCF job parameters or raise ``ParameterError`` naming the key and the fix."""
    check = lambda validated: features_runner.check_casscf_options(validated.casscf.model_dump())  # noqa: E731
    return _validated(CasscfJobParameters, parameters, elements, 'CASSCF', check)


def _validate_casscf_inputs(inputs: dict[str, t.Any], ctx) -> str | None:
    return _validate_job_inputs(inputs, ctx, validate_casscf_parameters)


class CasscfBatchCalculation(FeaturesBatchCalculation):
    """The multireference path of method selection: CASSCF on an automatically chosen active space (UHF natural
    orbitals inside an occupation window) for many molecules in one job; each structure isolated."""

    @classmethod
    def define(cls, spec: CalcJobProcessSpec):  # type: ignore[override]
        super().define(spec)
        spec.inputs['parameters'].help = (
            'CASSCF job parameters: basis, casscf (window_low, window_high, min_orbitals, max_orbitals, max_cycle, '
            'conv_tol), scf, max_memory (aiida_mlqm.calcjobs.features.CasscfJobParameters).'
        )
        spec.inputs.validator = _validate_casscf_inputs

    @classmethod
    def get_level(cls, parameters: dict[str, t.Any]) -> CasscfJobParameters:  # type: ignore[override]
        return validate_casscf_parameters(parameters)
