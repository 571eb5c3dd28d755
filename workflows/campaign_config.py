"""The campaign config (``mlqm campaign run CONFIG``): one YAML file, validated before anything is stored.

Every section rejects unknown keys with the key, the names it allows and the closest match, so a misspelt option
never runs the default silently::

    active_learning.batch_sise: unknown key 'batch_sise'; did you mean 'batch_size'? (allowed: batch_size, ...)

Nothing here imports AiiDA: the CLI validates a file before loading a profile, and the work chain validates the same
mapping again in its input validator (the config travels as a ``Dict``).
"""

from __future__ import annotations

import difflib
import pathlib
import typing as t

import pydantic
import yaml

from ..models.config import ExploreConfig, TrainingConfig

#: Relative cost of one label by method family when a level gives no ``cost``: formal scaling with the basis size
#: N is N^4 (HF, DFT), N^5 (MP2), N^6 (CCSD), N^7 (CCSD(T)); at the ~50 basis functions of the small molecules that
#: campaigns label, measured PySCF wall times are about 1 : 3 : 30 : 60.
RELATIVE_COST = {'hf': 1.0, 'dft': 1.0, 'mp2': 3.0, 'ccsd': 30.0, 'ccsd(t)': 60.0}


class CampaignConfigError(ValueError):
    """A campaign config that cannot run; the message names every problem and where it is."""


def _reject_unknown_keys(model: type[pydantic.BaseModel], values: t.Any) -> t.Any:
    """Fail on keys ``model`` does not know, naming each, the closest allowed name and all allowed names."""
    if isinstance(values, dict):
        allowed = sorted(model.model_fields)
        unknown = [key for key in values if key not in model.model_fields]
        if unknown:
            problems = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                hint = f'; did you mean {close[0]!r}?' if close else ''
                problems.append(f'unknown key {key!r}{hint}')
            raise ValueError(f'{"; ".join(problems)} (allowed: {", ".join(allowed)})')
    return values


class _Section(pydantic.BaseModel):
    """A config section: unknown keys fail with the allowed names and the closest one."""

    model_config = pydantic.ConfigDict(extra='forbid')

    @pydantic.model_validator(mode='before')
    @classmethod
    def _unknown_keys(cls, values: t.Any) -> t.Any:
        return _reject_unknown_keys(cls, values)


class ModelConfig(TrainingConfig):
    """Committee hyperparameters (``models.config.TrainingConfig``), with the campaign's unknown-key message."""

    @pydantic.model_validator(mode='before')
    @classmethod
    def _unknown_keys(cls, values: t.Any) -> t.Any:
        return _reject_unknown_keys(cls, values)


class ExploreSection(ExploreConfig):
    """ML-MD exploration in each iteration (``models.config.ExploreConfig``): Langevin trajectories on the committee
    from ``starts`` labelled structures, each stopped where the max force spread passes the committee's adaptive lower
    trust level (``threshold`` and ``signal`` are set by the campaign, not by hand)."""

    starts: int = pydantic.Field(4, ge=1, le=1000, description='labelled structures trajectories start from, per iteration')

    @pydantic.model_validator(mode='before')
    @classmethod
    def _unknown_keys(cls, values: t.Any) -> t.Any:
        values = _reject_unknown_keys(cls, values)
        if isinstance(values, dict):
            fixed = sorted(set(values) & {'threshold', 'signal'})
            if fixed:
                raise ValueError(
                    f'{", ".join(fixed)}: set by the campaign (the max force spread at the committee\'s adaptive lower '
                    'trust level, active_learning.trust); remove it'
                )
        return values

    def job_settings(self) -> dict[str, t.Any]:
        """The ``mlqm.predict`` explore settings (without ``threshold``, which each iteration sets)."""
        return self.model_dump(exclude={'starts', 'threshold', 'signal', 'seed'})


def method_selection_available() -> bool:
    """Whether the ``mlqm.method_selection`` work chain is installed (entry point and module importable)."""
    import importlib
    from importlib.metadata import entry_points

    for entry in entry_points(group='aiida.workflows'):
        if entry.name == 'mlqm.method_selection':
            try:
                importlib.import_module(entry.value.partition(':')[0])
            except ImportError:
                return False
            return True
    return False


class LevelConfig(_Section):
    """One level of theory, ``METHOD/BASIS`` as ``mlqm reference --level`` takes it (a functional name means DFT)."""

    # ``forces`` comes first: the ``level`` validator reads it.
    forces: bool = pydantic.Field(False, description='analytic forces with every label (potentials need them)')
    level: str = pydantic.Field(description='METHOD/BASIS, e.g. hf/6-31g*, b3lyp/def2-svp, ccsd(t)/cc-pvdz')
    max_labels: int | None = pydantic.Field(None, ge=1, description='label budget at this level')
    cost: float | None = pydantic.Field(
        None, gt=0, description='relative cost of one label; default: by method family (RELATIVE_COST)'
    )

    @pydantic.field_validator('level')
    @classmethod
    def _level_of_theory(cls, value: str, info: pydantic.ValidationInfo) -> str:
        """Read ``level`` with :meth:`LevelOfTheory.from_label` (method, functional and basis checked); keep its
        canonical label, the one the campaign's dataset rows carry."""
        from ..chemistry.level import LevelOfTheory

        return LevelOfTheory.from_label(value, forces=info.data.get('forces', False)).label

    @property
    def theory(self):
        """The validated :class:`~aiida_mlqm.chemistry.level.LevelOfTheory` (parsed once per process: cached)."""
        from ..chemistry.level import LevelOfTheory

        return LevelOfTheory.from_label(self.level, forces=self.forces)

    @property
    def basis(self) -> str:
        return self.theory.basis

    def parameters(self) -> dict[str, t.Any]:
        """The normalised ``mlqm.reference`` parameters of this level (``LevelOfTheory.as_parameters``)."""
        return self.theory.as_parameters()

    @property
    def relative_cost(self) -> float:
        return self.cost if self.cost is not None else RELATIVE_COST[self.theory.method]


#: Post-Hartree-Fock methods: their results carry the orbital energies of the HF reference only, so no gap of their own.
CORRELATED_METHODS = ('mp2', 'ccsd', 'ccsd(t)')


class MultireferenceLevelConfig(_Section):
    """The level of the molecules method selection routes multireference (``method_selection.multireference:
    casscf``): CASSCF on an active space chosen automatically from the UHF natural-orbital occupations, as the
    multireference path of ``mlqm.method_selection`` does (``mlqm.casscf.batch``). Their results are recorded, never
    mixed into the single-reference training set."""

    method: t.Literal['casscf'] = 'casscf'
    basis: str | None = pydantic.Field(None, description="None: the basis of levels.cheap")
    casscf: dict[str, t.Any] = pydantic.Field(
        default_factory=dict,
        description='active space and CASSCF options (window_low, window_high, min_orbitals, max_orbitals, max_cycle, '
        'conv_tol); default: occupations 0.02-1.98, 2-12 orbitals',
    )
    max_memory: int | None = pydantic.Field(None, ge=100, description='MB; None: the job default')

    def parameters(self, cheap_basis: str) -> dict[str, t.Any]:
        """``mlqm.casscf.batch`` parameters (validated by ``calcjobs.features.validate_casscf_parameters``)."""
        values: dict[str, t.Any] = {'basis': self.basis or cheap_basis, 'casscf': dict(self.casscf)}
        if self.max_memory is not None:
            values['max_memory'] = self.max_memory
        return values

    def label(self, cheap_basis: str) -> str:
        return f'{self.method}/{self.basis or cheap_basis}'


class Levels(_Section):
    """``cheap`` labels every selected structure; ``expensive`` (optional) the subset that helps the Δ model most,
    whose predictions are then cheap QM + learned (expensive - cheap); ``multireference`` the molecules method
    selection routes away from single-reference methods (with ``method_selection.multireference: casscf``)."""

    cheap: LevelConfig
    expensive: LevelConfig | None = None
    multireference: MultireferenceLevelConfig = MultireferenceLevelConfig()


class LibraryConfig(_Section):
    """The molecules, as ``mlqm build`` reads them; exactly one source. Paths are relative to the config file."""

    g2: list[str] | None = pydantic.Field(None, description='G2 names, e.g. [H2O, NH3, CH4]')
    smiles: str | None = pydantic.Field(None, description='SMILES file (`SMILES [id] [charge=N] [multiplicity=M]`)')
    xyz_dir: str | None = None
    extxyz: str | None = None
    ase_db: str | None = None
    max_molecules: int | None = pydantic.Field(None, ge=1, description='take the first N entries only')

    @pydantic.model_validator(mode='after')
    def _one_source(self) -> LibraryConfig:
        given = [name for name in ('g2', 'smiles', 'xyz_dir', 'extxyz', 'ase_db') if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(f'give exactly one of g2, smiles, xyz_dir, extxyz, ase_db (got {given or "none"})')
        return self

    def read(self, root: pathlib.Path) -> list[dict[str, t.Any]]:
        """Library records for ``mlqm.build`` (raises ``chemistry.readers.LibraryError`` on an unreadable file)."""
        from ..chemistry.readers import read_library

        paths = {
            name: str((root / value).resolve()) if value else None
            for name, value in (('smiles', self.smiles), ('xyz_dir', self.xyz_dir), ('extxyz', self.extxyz),
                                ('ase_db', self.ase_db))
        }  # fmt: skip
        records = read_library(g2=','.join(self.g2) if self.g2 else None, **paths)
        return records[: self.max_molecules] if self.max_molecules else records


class ConfigurationsConfig(_Section):
    """Potentials: the candidate pool of configurations per molecule before exploration adds more."""

    number: int = pydantic.Field(30, ge=1, le=10000, description='normal-mode samples per molecule and temperature')
    temperatures: list[float] = pydantic.Field(default_factory=lambda: [300.0, 600.0, 1000.0], description='K')
    hessian: t.Literal['forcefield', 'pyscf'] = 'forcefield'
    seed: int = 42


class TrustConfig(_Section):
    """Adaptive trust levels (``models.selection.adaptive_trust_levels``), set each iteration from the committee's
    spread and error on the fixed validation set (labelled, never fitted), not on the labels it trained on."""

    quantile: float = pydantic.Field(
        0.5, gt=0, lt=1, description='without a tolerance: the accepted error is this quantile of the validation errors'
    )
    tolerance: float | None = pydantic.Field(
        None, gt=0, description='accepted error (eV/Å of max force error for potentials, property units for properties)'
    )
    miss_rate: float = pydantic.Field(
        0.1, ge=0, lt=1, description='share of validation frames below the lower level allowed above the accepted error'
    )
    min_support: int = pydantic.Field(
        10, ge=1, description='validation frames needed below the lower level; fewer: nothing counts as accurate'
    )
    upper_ratio: float = pydantic.Field(3.0, gt=1, description='upper level = ratio x largest validation spread')
    maximum: float | None = pydantic.Field(
        None, gt=0, description='cap of the upper level (eV/Å for potentials, property units for properties)'
    )


class ActiveLearningConfig(_Section):
    """The loop: initial set, batches, selection, validation set, exploration (potentials)."""

    initial_size: int = pydantic.Field(16, ge=2, description='structures of the diverse initial set (farthest-point)')
    batch_size: int = pydantic.Field(8, ge=1, description='structures labelled per iteration')
    diversity: float = pydantic.Field(0.5, ge=0, le=1, description='0: pure query by committee, 1: farthest-point')
    expensive_fraction: float = pydantic.Field(
        0.25, ge=0, le=1, description='share of each batch also labelled at the expensive level (needs levels.expensive)'
    )
    validation_size: int = pydantic.Field(16, ge=2, description='fixed validation set, labelled once at the start')
    trust: TrustConfig = TrustConfig()
    explore: ExploreSection | None = pydantic.Field(
        None, description='potentials: ML-MD from labelled structures adds candidates each iteration (threshold adaptive)'
    )
    seed: int = 0


class StopConfig(_Section):
    """Stop rules; the first that holds ends the loop. Label budgets are per level (``levels.*.max_labels``)."""

    target_error: float | None = pydantic.Field(
        None, gt=0, description='validation MAE: eV per structure for potentials, property units for properties'
    )
    max_cpu_seconds: float | None = pydantic.Field(None, gt=0, description='CPU time of reference calculations')
    max_iterations: int = pydantic.Field(10, ge=1)
    plateau_window: int | None = pydantic.Field(3, ge=1, description='iterations over which uncertainty must fall')
    plateau_tolerance: float = pydantic.Field(0.05, ge=0, lt=1, description='relative fall counted as progress')


class ScreeningConfig(_Section):
    """Properties: rank the library by the objective and verify the best with reference QM."""

    maximise: bool = pydantic.Field(False, description='false: smallest values are hits (e.g. a small gap)')
    kappa: float = pydantic.Field(1.0, ge=0, description='confidence bound: value -/+ kappa x calibrated spread')
    top_k: int = pydantic.Field(5, ge=1, description='molecules verified by reference QM')
    hit_threshold: float | None = pydantic.Field(None, description='a verified value beyond this counts as a hit')


class MethodSelectionConfig(_Section):
    """Routing each molecule by a classifier before labelling (``mlqm.method_selection``, the shipped classifier unless
    the work chain is given another): molecules with P(MR) at or above the threshold are multireference, which
    single-reference labels (HF, DFT, CCSD(T)) describe badly. They are labelled at ``levels.multireference``
    (CASSCF) and kept out of the single-reference training set and the screening, excluded, or kept and flagged."""

    enabled: bool = pydantic.Field(False, description='route molecules with mlqm.method_selection before labelling')
    multireference: t.Literal['casscf', 'exclude', 'flag'] = pydantic.Field(
        'casscf',
        description='casscf: labelled at levels.multireference only (a failed CASSCF is recorded, the campaign goes '
        'on); exclude: never labelled or screened; flag: labelled at levels.cheap and listed as MR',
    )
    mr_threshold: float | None = pydantic.Field(
        None, ge=0, le=1, description="P(MR) at or above which a molecule is multireference; None: the classifier's"
    )
    batch_size: int = pydantic.Field(30, ge=1, description='molecules per features job')

    def routing(self) -> dict[str, t.Any]:
        """The ``mlqm.method_selection`` routing rule (``RoutingRule``) of this section."""
        rule: dict[str, t.Any] = {'multireference_action': self.multireference}
        if self.mr_threshold is not None:
            rule['mr_threshold'] = self.mr_threshold
        return rule


class SubmissionConfig(_Section):
    """Submission control: a campaign of thousands of molecules never floods the daemon or the scheduler."""

    max_jobs_in_flight: int = pydantic.Field(4, ge=1, description='reference/training jobs running at once')
    structures_per_job: int = pydantic.Field(10, ge=1, description='structures per batched reference job')
    max_hours_per_structure: float | None = pydantic.Field(
        None, gt=0, description="refuse a structure estimated above this (core-hours); None: the reference protocol's"
    )
    max_hours_per_run: float | None = pydantic.Field(
        None, gt=0, description="refuse one labelling step estimated above this (core-hours); None: idem"
    )

    def max_hours(self) -> dict[str, float]:
        """The ceilings given, as ``mlqm.reference``'s ``max_hours`` inputs (the others keep the chain's default)."""
        given = {'per_structure': self.max_hours_per_structure, 'per_run': self.max_hours_per_run}
        return {key: value for key, value in given.items() if value is not None}


class CampaignConfig(_Section):
    """A whole campaign. ``target: potential`` learns energies and forces over configurations; ``target: property``
    learns one value per molecule over the library and screens it."""

    name: str = pydantic.Field(description='a label for the campaign (shown by mlqm campaign list)')
    target: t.Literal['potential', 'property']
    objective: t.Literal['homo_lumo_gap', 'energy'] | None = pydantic.Field(
        None, description='target: property: which computed value per molecule to learn and screen (eV)'
    )
    library: LibraryConfig
    levels: Levels
    configurations: ConfigurationsConfig | None = None
    method_selection: MethodSelectionConfig = MethodSelectionConfig()
    model: ModelConfig = ModelConfig(members=4, epochs=150, patience=30)
    active_learning: ActiveLearningConfig = ActiveLearningConfig()
    stop: StopConfig = StopConfig()
    screening: ScreeningConfig | None = None
    submission: SubmissionConfig = SubmissionConfig()

    @pydantic.model_validator(mode='after')
    def _consistent(self) -> CampaignConfig:
        problems = []
        if self.target == 'potential':
            if not self.levels.cheap.forces:
                problems.append('levels.cheap.forces must be true for a potential (it learns forces)')
            if self.objective is not None:
                problems.append('objective is for target: property; remove it')
            if self.screening is not None:
                problems.append('screening ranks molecules by their objective; it needs target: property')
        else:
            if self.objective is None:
                problems.append('target: property needs objective: homo_lumo_gap or energy')
            expensive = self.levels.expensive
            if self.objective == 'homo_lumo_gap' and expensive is not None and (
                expensive.theory.method in CORRELATED_METHODS
            ):
                problems.append(
                    f'levels.expensive: {expensive.level} has no HOMO-LUMO gap of its own (its result holds the gap of '
                    'its Hartree-Fock reference), so a Δ model of the gap would learn a basis-set change, not the '
                    'correlation: choose hf or a functional as the expensive level of a gap, or objective: energy'
                )
            if self.configurations is not None or self.active_learning.explore is not None:
                problems.append('configurations and active_learning.explore are for target: potential')
        try:
            self.model.for_kind(self.target)
        except ValueError as exception:
            problems.append(f'model: {exception}')
        if self.active_learning.expensive_fraction > 0 and self.levels.expensive is None and 'expensive_fraction' in (
            self.active_learning.model_fields_set
        ):
            problems.append('active_learning.expensive_fraction needs levels.expensive')
        if self.method_selection.enabled and self.method_selection.multireference == 'casscf':
            from ..calcjobs.features import validate_casscf_parameters

            try:
                validate_casscf_parameters(self.levels.multireference.parameters(self.levels.cheap.basis))
            except ValueError as exception:  # ParameterError: names the key and the fix
                problems.append(f'levels.multireference: {exception}')
        if self.method_selection.enabled and not method_selection_available():
            problems.append(
                'method_selection.enabled: the mlqm.method_selection work chain is not installed; set it to false '
                '(molecules are then labelled at levels.cheap as given, and the campaign records the stage as skipped)'
            )
        if problems:
            raise ValueError('; '.join(problems))
        return self

    @property
    def label_budgets(self) -> dict[str, int]:
        levels = {'cheap': self.levels.cheap, 'expensive': self.levels.expensive}
        return {lvl.level: lvl.max_labels for lvl in levels.values() if lvl is not None and lvl.max_labels}


def _format(exception: pydantic.ValidationError) -> str:
    lines = []
    for error in exception.errors():
        where = '.'.join(str(part) for part in error['loc']) or 'config'
        message = error['msg'].removeprefix('Value error, ')
        if error['type'] == 'missing':
            message = 'required key is missing'
        lines.append(f'{where}: {message}')
    return '\n'.join(lines)


def parse_config(values: t.Mapping[str, t.Any]) -> CampaignConfig:
    """Validate a mapping; raise ``CampaignConfigError`` with one line per problem (``section.key: what is wrong``)."""
    if not isinstance(values, t.Mapping):
        raise CampaignConfigError(f'a campaign config is a mapping of sections, got {type(values).__name__}')
    try:
        return CampaignConfig.model_validate(dict(values))
    except pydantic.ValidationError as exception:
        raise CampaignConfigError(f'invalid campaign config:\n{_format(exception)}') from None


def load_config(path: str | pathlib.Path) -> CampaignConfig:
    """Read and validate a YAML campaign config; the error names the file and each problem."""
    path = pathlib.Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except OSError as exception:
        raise CampaignConfigError(f'cannot read {path}: {exception.strerror}') from None
    except yaml.YAMLError as exception:
        raise CampaignConfigError(f'{path} is not valid YAML: {exception}') from None
    try:
        return parse_config(values or {})
    except CampaignConfigError as exception:
        raise CampaignConfigError(f'{path}: {exception}') from None
