"""The level of theory: one type that owns method, basis, functional and options, their validation, the canonical
label, the per-element basis check and the cost estimate.

Parameters never become code: the runner reads them from JSON, and before that every key and value is checked here
(type, allowed set or strict pattern, and for basis and functional PySCF's own libraries), so that a job can only fail
on chemistry, never on a typo or an injected string. The runner repeats the key checks (defence in depth) with its
own standard-library code, since it cannot import this package on a compute node.

A level enters once, where the user gives it (``mlqm reference --level``: :meth:`LevelOfTheory.from_label`; a
``parameters`` Dict given to a job or chain: :meth:`LevelOfTheory.parse` in the process's input validator), and is
passed on as its normalised form (:meth:`LevelOfTheory.as_parameters`, what the runner receives)::

    {'method': 'hf' | 'dft' | 'mp2' | 'ccsd' | 'ccsd(t)', 'xc': str | None, 'basis': str,
     'reference': 'auto' | 'restricted' | 'unrestricted' | 'restricted-open',
     'charge': int | None, 'multiplicity': int | None, 'frozen_core': bool, 'forces': bool, 'diagnostics': bool,
     'max_memory': int (MB), 'scf': {...}, 'cc': {...}}

``charge``/``multiplicity`` ``None`` means "from the structure" (:mod:`.molecule` owns those rules).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import typing as t

from pydantic import BaseModel, ConfigDict, Field

from .basis import BasisError, basis_functions_of_element, check_basis_name, coverage_message, missing_elements

__all__ = (
    'CcSettings',
    'CostError',
    'LevelOfTheory',
    'ParameterError',
    'ScfSettings',
    'canonical_label',
    'check_basis',
)


class ParameterError(ValueError):
    """A parameter that is unknown, of the wrong type or not allowed; the message names it and says the fix."""


class CostError(ParameterError):
    """Work estimated above a cost ceiling; the message names the structure or run, the estimate and the fix."""


Method = t.Literal['hf', 'dft', 'mp2', 'ccsd', 'ccsd(t)']
Reference = t.Literal['auto', 'restricted', 'unrestricted', 'restricted-open']
InitGuess = t.Literal['minao', 'atom', 'huckel', 'hcore', '1e']

# ``rhf``/``uhf``/... are accepted as methods and become ``hf`` with a fixed reference.
METHOD_ALIASES: dict[str, tuple[str, str | None]] = {
    'hf': ('hf', None),
    'rhf': ('hf', 'restricted'),
    'uhf': ('hf', 'unrestricted'),
    'rohf': ('hf', 'restricted-open'),
    'dft': ('dft', None),
    'rks': ('dft', 'restricted'),
    'uks': ('dft', 'unrestricted'),
    'mp2': ('mp2', None),
    'ccsd': ('ccsd', None),
    'ccsd(t)': ('ccsd(t)', None),
}
CORRELATED = ('mp2', 'ccsd', 'ccsd(t)')
FROZEN_CORE_SUFFIX = '-fc'  # in labels: a correlated method with frozen core
REFERENCES: tuple[str, ...] = t.get_args(Reference)
INIT_GUESSES: tuple[str, ...] = t.get_args(InitGuess)
# Keys the plugin sets itself: a user value would be silently replaced, so it is refused with its own message.
PLUGIN_KEYS = {'checkpoint', 'chkfile', 'soft_walltime', 'structures', 'write_checkpoint', 'verbose', 'output'}
XC_PATTERN = re.compile(r'[A-Za-z0-9][A-Za-z0-9_,+*.\- ]{0,99}')


class ScfSettings(BaseModel):
    """Mean-field convergence settings, passed to PySCF's SCF object."""

    model_config = ConfigDict(extra='forbid', frozen=True, strict=True)

    conv_tol: float = Field(1e-9, ge=1e-16, description='Hartree')
    conv_tol_grad: float | None = Field(None, ge=1e-16, description='None: PySCF derives it from conv_tol')
    max_cycle: int = Field(100, ge=1)
    level_shift: float = Field(0.0, ge=0.0, description='Hartree')
    damp: float = Field(0.0, ge=0.0, lt=1.0)
    diis_space: int = Field(8, ge=1)
    second_order: bool = False
    init_guess: InitGuess = 'minao'


class CcSettings(BaseModel):
    """Coupled-cluster convergence settings (CCSD and CCSD(T) only)."""

    model_config = ConfigDict(extra='forbid', frozen=True, strict=True)

    conv_tol: float = Field(1e-7, ge=1e-16, description='Hartree')
    conv_tol_normt: float = Field(1e-5, ge=1e-16)
    max_cycle: int = Field(100, ge=1)
    diis_space: int = Field(6, ge=1)


DEFAULT_SCF: dict[str, t.Any] = ScfSettings().model_dump()
DEFAULT_CC: dict[str, t.Any] = CcSettings().model_dump()

# Cost model: only has to rank structures, size batches and guard against absurd runs, not predict seconds exactly.
# A job grows as ``n_basis ** p`` with ``p`` set by the method, scaled by a prefactor that puts water at HF/6-31G*
# (19 functions) near 0.05 s and at CCSD(T)/cc-pVDZ (24 functions) well under a second on one core.
SCALING = {'hf': 3.0, 'dft': 3.0, 'mp2': 4.0, 'ccsd': 5.5, 'ccsd(t)': 6.0}
PREFACTOR = {'mean_field': 4.0, 'mp2': 8.0, 'ccsd': 60.0, 'ccsd(t)': 120.0}
FORCES_FACTOR = 3.0
UNKNOWN_ELEMENT_FUNCTIONS = 30


class LevelOfTheory(BaseModel):
    """A validated level of theory with its options; build it with :meth:`parse` or :meth:`from_label`."""

    model_config = ConfigDict(extra='forbid', frozen=True, strict=True)

    method: Method
    basis: str
    xc: str | None = None
    reference: Reference = 'auto'
    charge: int | None = None
    multiplicity: int | None = Field(None, ge=1)
    frozen_core: bool = False
    forces: bool = False
    diagnostics: bool = True
    max_memory: int = Field(4000, ge=100, description='MB')
    scf: ScfSettings = ScfSettings()
    cc: CcSettings = CcSettings()

    # -- entering ---------------------------------------------------------------------------------------------------

    @classmethod
    def parse(cls, parameters: t.Any, elements: t.Iterable[str] | None = None) -> LevelOfTheory:
        """Validate user parameters (defaults filled in) or raise :class:`ParameterError` naming the key and the fix.

        :param elements: the elements of every structure the level will be used with; the basis is checked for each.
        """
        _check_type('parameters', parameters, (dict,), 'a dictionary')
        try:
            text = json.dumps(parameters, sort_keys=True, allow_nan=True)
        except (TypeError, ValueError):
            level = _parse(parameters)
        else:
            level = _parse_json(text)
        if elements is not None:
            level.check_elements(elements)
        return level

    @classmethod
    def from_label(cls, label: str, **options: t.Any) -> LevelOfTheory:
        """``'ccsd(t)/cc-pvdz'`` or ``'b3lyp/def2-svp'`` (a functional name implies DFT) with more ``options``.

        Every label this type writes reads back to the same level: a correlated method with the ``-fc`` suffix
        (``ccsd(t)-fc/cc-pvdz``) is that method with ``frozen_core``. Case and spaces do not matter.
        """
        name, basis = _split_label(label)
        name, frozen_core = _frozen_core(name, label)
        if frozen_core:
            options = {'frozen_core': True, **options}
        if name in METHOD_ALIASES:
            parameters = {'method': name, 'basis': basis}
        elif XC_PATTERN.fullmatch(name) and _libxc_error(name) is None:
            parameters = {'method': 'dft', 'xc': name, 'basis': basis}
        else:
            # Neither a method nor a functional: say METHOD (what the user wrote), with the close method names.
            raise ParameterError(
                f'{unknown_method_message(name)}, or a functional PySCF knows (e.g. b3lyp, pbe0, wb97x)'.replace(
                    '`method`', 'METHOD', 1
                )
            )
        return cls.parse({**parameters, **options})

    @classmethod
    def canonical(cls, label: str) -> str:
        """The canonical label of a ``METHOD/BASIS`` text (``'CCSD(T) / cc-pVDZ'`` -> ``'ccsd(t)/cc-pvdz'``).

        For labels that name stored data (``mlqm data import --label``, ``mlqm train --target-level``): the level
        must be one this type knows, so that imported and computed rows of one level carry one label.
        """
        return cls.from_label(label).label

    # -- what it says -----------------------------------------------------------------------------------------------

    def as_parameters(self) -> dict[str, t.Any]:
        """The normalised parameters: what is stored in a ``parameters`` Dict and what the runner reads."""
        return self.model_dump()

    @property
    def label(self) -> str:
        """The canonical label, the same in a job's result Dict and in dataset rows: ``ccsd(t)-fc/cc-pvdz``."""
        return canonical_label(self.method, self.basis, self.xc, self.frozen_core)

    def check_elements(self, elements: t.Iterable[str]) -> None:
        """Raise :class:`ParameterError` when the basis has no functions for one of ``elements``."""
        missing = missing_elements(self.basis, elements)
        if missing:
            raise ParameterError(coverage_message(self.basis, missing))

    def check_molecule(self, multiplicity: int) -> str:
        """Check this level against one molecule's multiplicity and return the reference it will use."""
        reference = resolve_reference(self.reference, multiplicity)
        check_method_reference(self.method, reference, self.forces)
        return reference

    def basis_functions(self, symbols: t.Iterable[str]) -> int:
        """Number of basis functions of a molecule; an element the basis lacks counts as 30 (estimates never fail)."""
        total = 0
        for symbol in symbols:
            try:
                total += basis_functions_of_element(self.basis, symbol)
            except Exception:  # noqa: BLE001 - validation reports bad bases; an estimate must not fail on them
                total += UNKNOWN_ELEMENT_FUNCTIONS
        return total

    def estimate_seconds(self, symbols: t.Sequence[str]) -> float:
        """Rough wall time on one core of one molecule at this level (seconds, at least 0.01)."""
        n_basis = self.basis_functions(symbols)
        family = self.method if self.method in PREFACTOR else 'mean_field'
        seconds = PREFACTOR[family] * (n_basis / 100.0) ** SCALING[self.method]
        if family != 'mean_field':  # correlated methods run the mean-field step first
            seconds += PREFACTOR['mean_field'] * (n_basis / 100.0) ** 3.0
        if self.forces:
            seconds *= FORCES_FACTOR
        return max(seconds, 0.01)

    def check_cost(
        self,
        molecules: t.Mapping[str, t.Sequence[str]],
        *,
        max_hours_per_structure: float,
        max_hours_per_run: float,
        options: tuple[str, str] = ('max_hours_per_structure', 'max_hours_per_run'),
    ) -> float:
        """Estimated core-seconds of ``{name: symbols}`` at this level; :class:`CostError` above either ceiling.

        :param options: how the caller's user raises the two ceilings (CLI options or input names), for the message.
        """
        seconds = {name: self.estimate_seconds(symbols) for name, symbols in molecules.items()}
        if not seconds:
            return 0.0
        worst = max(seconds, key=seconds.__getitem__)
        cheaper = 'or choose a cheaper method or a smaller basis'
        if seconds[worst] > max_hours_per_structure * 3600.0:
            raise CostError(
                f'{worst!r} ({len(molecules[worst])} atoms) is estimated at {seconds[worst] / 3600.0:.3g} core-hours '
                f'at {self.label}, above the ceiling of {max_hours_per_structure:g} h per structure: remove it, raise '
                f'the ceiling ({options[0]}), {cheaper}'
            )
        total = sum(seconds.values())
        if total > max_hours_per_run * 3600.0:
            raise CostError(
                f'{len(seconds)} structures are estimated at {total / 3600.0:.3g} core-hours at {self.label}, above '
                f'the ceiling of {max_hours_per_run:g} h per run: label fewer at once, raise the ceiling '
                f'({options[1]}), {cheaper}'
            )
        return total


def check_basis(basis: t.Any, elements: t.Iterable[str] = ()) -> str:
    """Return ``basis`` if PySCF's library has it with functions for every one of ``elements``; raise otherwise."""
    try:
        check_basis_name(basis)
    except BasisError as exception:
        raise ParameterError(str(exception)) from None
    missing = missing_elements(basis, elements)
    if missing:
        raise ParameterError(coverage_message(basis, missing))
    return basis


def canonical_label(method: str, basis: str, xc: str | None = None, frozen_core: bool = False) -> str:
    """The label of a level from its parts (also for levels computed elsewhere, e.g. aiida-pyscf results)."""
    method = str(method).lower()
    if method in METHOD_ALIASES:
        method = METHOD_ALIASES[method][0]
    name = str(xc or 'dft').lower() if method == 'dft' else method
    if frozen_core and method in CORRELATED:
        name = f'{name}{FROZEN_CORE_SUFFIX}'
    return f'{name}/{str(basis).lower()}'


def _split_label(label: t.Any) -> tuple[str, str]:
    """``(method or functional, basis)`` of a ``METHOD/BASIS`` label, lower case, spaces removed."""
    text = ''.join(str(label).split()).lower()
    name, sep, basis = text.partition('/')
    if not sep or not name or not basis or '/' in basis:
        raise ParameterError(
            f'{label!r} is not METHOD/BASIS: a level must be METHOD/BASIS, e.g. ccsd(t)/cc-pvdz or b3lyp/6-31g*'
        )
    return name, basis


def _frozen_core(name: str, label: t.Any) -> tuple[str, bool]:
    """``(method name, frozen core)`` of a label's method part: ``ccsd(t)-fc`` is ``ccsd(t)`` with frozen core."""
    method = name.removesuffix(FROZEN_CORE_SUFFIX)
    if method == name or method not in METHOD_ALIASES:
        return name, False
    if METHOD_ALIASES[method][0] not in CORRELATED:
        raise ParameterError(
            f'{label!r}: the frozen-core suffix {FROZEN_CORE_SUFFIX!r} only applies to {", ".join(CORRELATED)}; '
            'remove it'
        )
    return method, True


# -- validation, step by step (each step takes what it reads from ``given`` and fills ``result``) ----------------------


@functools.lru_cache(maxsize=256)
def _parse_json(text: str) -> LevelOfTheory:
    # A chain and each of its jobs see the same parameters: the checks (PySCF's libraries included) run once per
    # distinct input in a process, and every caller gets the same frozen object.
    return _parse(json.loads(text))


def _parse(parameters: t.Mapping[str, t.Any]) -> LevelOfTheory:
    _check_keys('', parameters, (*LevelOfTheory.model_fields, 'spin'))
    given = dict(parameters)
    result: dict[str, t.Any] = {}
    _parse_method_and_reference(given, result)
    _parse_basis_and_functional(given, result)
    _parse_state(given, result)
    _parse_switches(given, result)
    level = LevelOfTheory.model_validate(result)
    if level.multiplicity is not None:
        level.check_molecule(level.multiplicity)
    elif level.reference != 'auto':
        # The multiplicity comes from each structure; checks that depend on it run again per structure.
        check_method_reference(level.method, level.reference, level.forces)
    return level


def _parse_method_and_reference(given: dict, result: dict) -> None:
    method = given.pop('method', None)
    if method is None:
        raise ParameterError(f'`method` is required; choose one of {", ".join(METHOD_ALIASES)}')
    _check_type('method', method, (str,), 'a string')
    if method.lower() not in METHOD_ALIASES:
        raise ParameterError(unknown_method_message(method))
    result['method'], implied = METHOD_ALIASES[method.lower()]
    reference = given.pop('reference', 'auto')
    _check_type('reference', reference, (str,), 'a string')
    if reference.lower() not in REFERENCES:
        raise ParameterError(
            f'`reference` {_describe(reference)} is not allowed; choose one of {", ".join(REFERENCES)}'
        )
    reference = reference.lower()
    if implied and reference not in ('auto', implied):
        raise ParameterError(
            f'`method` {method!r} implies reference {implied!r} but `reference` is {reference!r}: drop one of them'
        )
    result['reference'] = implied or reference


def unknown_method_message(method: str) -> str:
    """Say that ``method`` is not a method this package runs, with the closest names."""
    spelled = method.lower().replace('[', '(').replace(']', ')').replace(' ', '')
    close = difflib.get_close_matches(spelled, METHOD_ALIASES, n=3, cutoff=0.5)
    hint = f'did you mean {" or ".join(close)}? ' if close else ''
    return f'`method` {_describe(method)} is not supported; {hint}choose one of {", ".join(METHOD_ALIASES)}'


def _parse_basis_and_functional(given: dict, result: dict) -> None:
    if 'basis' not in given:
        raise ParameterError('`basis` is required, e.g. "sto-3g", "6-31g*", "def2-svp" or "cc-pvdz"')
    try:
        result['basis'] = check_basis_name(given.pop('basis'))
    except BasisError as exception:
        raise ParameterError(str(exception)) from None
    xc = given.pop('xc', None)
    if result['method'] == 'dft':
        if xc is None:
            raise ParameterError('`xc` is required for DFT: name a functional, e.g. "b3lyp" or "pbe0"')
        result['xc'] = check_xc(xc)
    elif xc is not None:
        raise ParameterError(
            f'`xc` is only used with method "dft"; remove it or set method to "dft" (method is {result["method"]!r})'
        )


def _parse_state(given: dict, result: dict) -> None:
    # ``None`` means "from each structure", as in the normalised form: parsing that form again gives the same level.
    given = {key: value for key, value in given.items() if not (key in ('charge', 'multiplicity') and value is None)}
    if 'charge' in given:
        result['charge'] = _number('charge', given.pop('charge'), integer=True)
    if 'multiplicity' in given and 'spin' in given:
        raise ParameterError('give either `multiplicity` or `spin` (2S = multiplicity - 1), not both')
    if 'spin' in given:
        result['multiplicity'] = _number('spin', given.pop('spin'), minimum=0, integer=True) + 1
    if 'multiplicity' in given:
        result['multiplicity'] = _number('multiplicity', given.pop('multiplicity'), minimum=1, integer=True)


def _parse_switches(given: dict, result: dict) -> None:
    for key in ('frozen_core', 'forces', 'diagnostics'):
        if key in given:
            value = given.pop(key)
            _check_type(key, value, (bool,), 'true or false')
            result[key] = value
    if 'max_memory' in given:
        result['max_memory'] = _number('max_memory', given.pop('max_memory'), minimum=100, integer=True)
    result['scf'] = _parse_scf(given.pop('scf', {}))
    result['cc'] = _parse_cc(given.pop('cc', {}))
    if result['cc'] != DEFAULT_CC and result['method'] not in ('ccsd', 'ccsd(t)'):
        raise ParameterError(
            f'`cc` settings only apply to methods ccsd and ccsd(t), not {result["method"]!r}: remove them'
        )


def _parse_scf(value: t.Any) -> dict[str, t.Any]:
    _check_type('scf', value, (dict,), 'a dictionary')
    _check_keys('scf', value, DEFAULT_SCF)
    result = dict(DEFAULT_SCF)
    for key, item in value.items():
        path = f'scf.{key}'
        if key == 'conv_tol_grad' and item is None:
            result[key] = None
        elif key in ('conv_tol', 'conv_tol_grad'):
            result[key] = _number(path, item, minimum=1e-16)
        elif key in ('max_cycle', 'diis_space'):
            result[key] = _number(path, item, minimum=1, integer=True)
        elif key in ('level_shift', 'damp'):
            result[key] = _number(path, item, minimum=0.0)
            if key == 'damp' and result[key] >= 1.0:
                raise ParameterError(f'`scf.damp` must be in [0, 1), got {item!r}')
        elif key == 'second_order':
            _check_type(path, item, (bool,), 'true or false')
            result[key] = item
        elif key == 'init_guess':
            _check_type(path, item, (str,), 'a string')
            if item.lower() not in INIT_GUESSES:
                raise ParameterError(
                    f'`scf.init_guess` {_describe(item)} is not allowed; choose one of {", ".join(INIT_GUESSES)} '
                    '(to start from a checkpoint, pass the `checkpoint` input instead)'
                )
            result[key] = item.lower()
    return result


def _parse_cc(value: t.Any) -> dict[str, t.Any]:
    _check_type('cc', value, (dict,), 'a dictionary')
    _check_keys('cc', value, DEFAULT_CC)
    result = dict(DEFAULT_CC)
    for key, item in value.items():
        if key in ('conv_tol', 'conv_tol_normt'):
            result[key] = _number(f'cc.{key}', item, minimum=1e-16)
        else:
            result[key] = _number(f'cc.{key}', item, minimum=1, integer=True)
    return result


def _check_functional_name(xc: str) -> None:
    if not XC_PATTERN.fullmatch(xc):
        raise ParameterError(
            f'`xc` {_describe(xc)} is not a functional name: use a name PySCF accepts (letters, digits and , + * . - _)'
        )


@functools.lru_cache(maxsize=256)
def _libxc_error(xc: str) -> str | None:
    import warnings

    with warnings.catch_warnings():
        # PySCF 2.3 warns on import that B3LYP now uses VWN-RPA (as Gaussian does): information, not a problem here.
        warnings.simplefilter('ignore', UserWarning)
        from pyscf.dft import libxc

    try:
        libxc.parse_xc(xc)
    except Exception as exception:  # noqa: BLE001 -- KeyError for unknown names, others for malformed expressions
        return str(exception)
    return None


def check_xc(xc: t.Any) -> str:
    """Return the functional if PySCF's libxc interface parses it; raise otherwise."""
    _check_type('xc', xc, (str,), 'a functional name such as "b3lyp" or "pbe0"')
    _check_functional_name(xc)
    problem = _libxc_error(xc)
    if problem is not None:
        raise ParameterError(f'`xc` {xc!r} is not a functional PySCF knows ({problem}); use e.g. b3lyp, pbe0, wb97x')
    return xc


def resolve_reference(reference: str, multiplicity: int) -> str:
    """The reference actually used for a molecule: ``auto`` is restricted for singlets, unrestricted otherwise."""
    if reference == 'auto':
        return 'restricted' if multiplicity == 1 else 'unrestricted'
    if reference == 'restricted' and multiplicity != 1:
        raise ParameterError(
            f'a restricted closed-shell reference cannot describe multiplicity {multiplicity}: use reference '
            '"unrestricted" or "restricted-open" (or "auto")'
        )
    return reference


def check_method_reference(method: str, reference: str, forces: bool) -> None:
    """Raise :class:`ParameterError` for combinations PySCF 2.3 cannot compute correctly."""
    if reference == 'restricted-open' and method in ('mp2', 'ccsd(t)'):
        raise ParameterError(
            f'{method.upper()} on a restricted-open (ROHF) reference is not available in PySCF (it would run on '
            'non-canonical orbitals): use reference "unrestricted"'
        )
    if reference == 'restricted-open' and method == 'ccsd' and forces:
        raise ParameterError(
            'CCSD forces need canonical orbitals, which a restricted-open reference does not give: use reference '
            '"unrestricted" or set forces to false'
        )
    if reference == 'unrestricted' and method == 'ccsd(t)' and forces:
        raise ParameterError(
            'UCCSD(T) analytic gradients of PySCF 2.3 disagree with finite differences (by ~3e-4 Ha/Bohr for triplet '
            'water): use forces at the CCSD level (method "ccsd"), or a closed-shell molecule with a restricted reference'
        )


# -- small checks with messages that name the key -----------------------------------------------------------------------


def _describe(value: t.Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + '...'


def _check_type(path: str, value: t.Any, types: tuple[type, ...], what: str) -> None:
    # bool is a subclass of int: a ``True`` where a count is expected is a mistake, not 1.
    if isinstance(value, bool) and bool not in types:
        raise ParameterError(f'`{path}` must be {what}, got the boolean {value!r}')
    if not isinstance(value, types):
        raise ParameterError(f'`{path}` must be {what}, got {_describe(value)} ({type(value).__name__})')


def _check_keys(path: str, given: t.Mapping[str, t.Any], allowed: t.Iterable[str]) -> None:
    allowed = list(allowed)
    for key in given:
        if not isinstance(key, str) or key not in allowed:
            hint = ' (set by the plugin itself: remove it)' if key in PLUGIN_KEYS else ''
            where = f'`{path}`' if path else 'parameters'
            raise ParameterError(
                f'unknown key {_describe(key)} in {where}{hint}; valid keys are: {", ".join(sorted(allowed))}'
            )


def _number(path: str, value: t.Any, *, minimum: float | None = None, integer: bool = False) -> float | int:
    if integer:
        _check_type(path, value, (int,), 'an integer')
    else:
        _check_type(path, value, (int, float), 'a number')
        value = float(value)
        if not math.isfinite(value):
            raise ParameterError(f'`{path}` must be a finite number, got {value!r}')
    if minimum is not None and value < minimum:
        raise ParameterError(f'`{path}` must be >= {minimum}, got {value!r}')
    return value
