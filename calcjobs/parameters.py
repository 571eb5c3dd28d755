"""Validation of the ``parameters`` of ``mlqm.pyscf`` and ``mlqm.pyscf.batch`` against allow-lists.

Parameters never become code: the runner reads them from JSON, and before that every key and value is checked here
(type, allowed set or strict pattern, and for basis and functional PySCF's own libraries), so that a job can only fail
on chemistry, never on a typo or an injected string. The runner repeats the key checks (defence in depth).

Normalised form (what :func:`validate_parameters` returns and the runner receives)::

    {'method': 'hf' | 'dft' | 'mp2' | 'ccsd' | 'ccsd(t)', 'xc': str | None, 'basis': str,
     'reference': 'auto' | 'restricted' | 'unrestricted' | 'restricted-open',
     'charge': int | None, 'multiplicity': int | None, 'frozen_core': bool, 'forces': bool, 'diagnostics': bool,
     'max_memory': int (MB), 'scf': {...}, 'cc': {...}}

``charge``/``multiplicity`` ``None`` means "from the structure" (see :mod:`aiida_mlqm.calcjobs.molecule`).
"""

from __future__ import annotations

import copy
import math
import re
import typing as t

__all__ = (
    'DEFAULT_CC',
    'DEFAULT_SCF',
    'ParameterError',
    'check_molecule_compatibility',
    'resolve_reference',
    'validate_parameters',
)


class ParameterError(ValueError):
    """A parameter that is unknown, of the wrong type or not allowed; the message names it and says the fix."""


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
REFERENCES = ('auto', 'restricted', 'unrestricted', 'restricted-open')
INIT_GUESSES = ('minao', 'atom', 'huckel', 'hcore', '1e')

DEFAULT_SCF: dict[str, t.Any] = {
    'conv_tol': 1e-9,
    'conv_tol_grad': None,
    'max_cycle': 100,
    'level_shift': 0.0,
    'damp': 0.0,
    'diis_space': 8,
    'second_order': False,
    'init_guess': 'minao',
}
DEFAULT_CC: dict[str, t.Any] = {'conv_tol': 1e-7, 'conv_tol_normt': 1e-5, 'max_cycle': 100, 'diis_space': 6}
DEFAULTS: dict[str, t.Any] = {
    'method': None,
    'basis': None,
    'xc': None,
    'charge': None,
    'multiplicity': None,
    'reference': 'auto',
    'frozen_core': False,
    'forces': False,
    'diagnostics': True,
    'max_memory': 4000,
}
TOP_LEVEL_KEYS = (*DEFAULTS, 'spin', 'scf', 'cc')
# Keys the plugin sets itself: a user value would be silently replaced, so it is refused with its own message.
PLUGIN_KEYS = {'checkpoint', 'chkfile', 'soft_walltime', 'structures', 'write_checkpoint', 'verbose', 'output'}

BASIS_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9+*(),._\-]{0,63}$')
XC_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_,+*.\- ]{0,99}$')


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


def _validate_scf(value: t.Any) -> dict[str, t.Any]:
    _check_type('scf', value, (dict,), 'a dictionary')
    _check_keys('scf', value, DEFAULT_SCF)
    result = dict(DEFAULT_SCF)
    for key, item in value.items():
        path = f'scf.{key}'
        if key in ('conv_tol', 'conv_tol_grad'):
            if item is None and key == 'conv_tol_grad':
                result[key] = None
                continue
            result[key] = _number(path, item, minimum=1e-16)
        elif key in ('max_cycle', 'diis_space'):
            result[key] = _number(path, item, minimum=1, integer=True)
        elif key in ('level_shift',):
            result[key] = _number(path, item, minimum=0.0)
        elif key == 'damp':
            result[key] = _number(path, item, minimum=0.0)
            if result[key] >= 1.0:
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


def _validate_cc(value: t.Any) -> dict[str, t.Any]:
    _check_type('cc', value, (dict,), 'a dictionary')
    _check_keys('cc', value, DEFAULT_CC)
    result = dict(DEFAULT_CC)
    for key, item in value.items():
        if key in ('conv_tol', 'conv_tol_normt'):
            result[key] = _number(f'cc.{key}', item, minimum=1e-16)
        else:
            result[key] = _number(f'cc.{key}', item, minimum=1, integer=True)
    return result


def check_basis(basis: t.Any, elements: t.Iterable[str] | None = None) -> str:
    """Return the basis name if PySCF's library has it (for every element in ``elements``); raise otherwise.

    Only names from PySCF's basis library (aliases and Pople names) are accepted: a file name or inline basis text
    would make PySCF read a file on the compute node.
    """
    _check_type('basis', basis, (str,), 'a basis set name such as "sto-3g" or "def2-svp"')
    if not BASIS_PATTERN.match(basis):
        raise ParameterError(
            f"`basis` {_describe(basis)} is not a basis set name: use a name from PySCF's basis library (letters, "
            'digits and + * ( ) , . _ -), not a path, a file or inline basis text'
        )
    from pyscf.gto import basis as pyscf_basis

    name = pyscf_basis._format_basis_name(basis)
    if not (name in pyscf_basis.ALIAS or pyscf_basis._is_pople_basis(name)):
        raise ParameterError(
            f"`basis` {basis!r} is not in PySCF's basis library; use e.g. sto-3g, 6-31g*, cc-pvdz, def2-svp"
        )
    for element in sorted(elements or ()):
        try:
            data = pyscf_basis.load(basis, element)
        except Exception:  # noqa: BLE001 -- PySCF raises BasisNotFoundError, KeyError or RuntimeError by family
            data = None
        if not data:
            raise ParameterError(
                f'basis {basis!r} has no functions for element {element}: choose a basis that covers {element} '
                '(e.g. def2-svp covers H-Rn)'
            )
    return basis


def check_xc(xc: t.Any) -> str:
    """Return the functional if PySCF's libxc interface parses it; raise otherwise."""
    _check_type('xc', xc, (str,), 'a functional name such as "b3lyp" or "pbe0"')
    if not XC_PATTERN.match(xc):
        raise ParameterError(
            f'`xc` {_describe(xc)} is not a functional name: use a name PySCF accepts (letters, digits and , + * . - _)'
        )
    import warnings

    with warnings.catch_warnings():
        # PySCF 2.3 warns on import that B3LYP now uses VWN-RPA (as Gaussian does): information, not a problem here.
        warnings.simplefilter('ignore', UserWarning)
        from pyscf.dft import libxc

    try:
        libxc.parse_xc(xc)
    except Exception as exception:  # noqa: BLE001 -- KeyError for unknown names, others for malformed expressions
        raise ParameterError(f'`xc` {xc!r} is not a functional PySCF knows ({exception}); use e.g. b3lyp, pbe0, wb97x')
    return xc


def validate_parameters(parameters: t.Mapping[str, t.Any], elements: set[str] | None = None) -> dict[str, t.Any]:
    """Return the normalised parameters (defaults filled in) or raise :class:`ParameterError`.

    :param elements: the elements of every structure the parameters will be used with; the basis is checked for each.
    """
    _check_type('parameters', parameters, (dict,), 'a dictionary')
    _check_keys('', parameters, TOP_LEVEL_KEYS)
    given = copy.deepcopy(dict(parameters))
    result = dict(DEFAULTS)

    method = given.pop('method', None)
    if method is None:
        raise ParameterError(f'`method` is required; choose one of {", ".join(METHOD_ALIASES)}')
    _check_type('method', method, (str,), 'a string')
    if method.lower() not in METHOD_ALIASES:
        raise ParameterError(
            f'`method` {_describe(method)} is not supported; choose one of {", ".join(METHOD_ALIASES)}'
        )
    result['method'], implied_reference = METHOD_ALIASES[method.lower()]

    reference = given.pop('reference', 'auto')
    _check_type('reference', reference, (str,), 'a string')
    if reference.lower() not in REFERENCES:
        raise ParameterError(
            f'`reference` {_describe(reference)} is not allowed; choose one of {", ".join(REFERENCES)}'
        )
    reference = reference.lower()
    if implied_reference and reference not in ('auto', implied_reference):
        raise ParameterError(
            f'`method` {method!r} implies reference {implied_reference!r} but `reference` is {reference!r}: '
            'drop one of them'
        )
    result['reference'] = implied_reference or reference

    if 'basis' not in given:
        raise ParameterError('`basis` is required, e.g. "sto-3g", "6-31g*", "def2-svp" or "cc-pvdz"')
    result['basis'] = check_basis(given.pop('basis'), elements)

    xc = given.pop('xc', None)
    if result['method'] == 'dft':
        if xc is None:
            raise ParameterError('`xc` is required for DFT: name a functional, e.g. "b3lyp" or "pbe0"')
        result['xc'] = check_xc(xc)
    elif xc is not None:
        raise ParameterError(
            f'`xc` is only used with method "dft"; remove it or set method to "dft" (method is {method!r})'
        )

    if 'charge' in given:
        result['charge'] = _number('charge', given.pop('charge'), integer=True)
    if 'multiplicity' in given and 'spin' in given:
        raise ParameterError('give either `multiplicity` or `spin` (2S = multiplicity - 1), not both')
    if 'spin' in given:
        result['multiplicity'] = _number('spin', given.pop('spin'), minimum=0, integer=True) + 1
    if 'multiplicity' in given:
        result['multiplicity'] = _number('multiplicity', given.pop('multiplicity'), minimum=1, integer=True)

    for key in ('frozen_core', 'forces', 'diagnostics'):
        if key in given:
            value = given.pop(key)
            _check_type(key, value, (bool,), 'true or false')
            result[key] = value
    if 'max_memory' in given:
        result['max_memory'] = _number('max_memory', given.pop('max_memory'), minimum=100, integer=True)
    result['scf'] = _validate_scf(given.pop('scf', {}))
    result['cc'] = _validate_cc(given.pop('cc', {}))
    if result['cc'] != DEFAULT_CC and result['method'] not in ('ccsd', 'ccsd(t)'):
        raise ParameterError(
            f'`cc` settings only apply to methods ccsd and ccsd(t), not {result["method"]!r}: remove them'
        )

    if result['multiplicity'] is not None:
        check_method_reference(result, resolve_reference(result, result['multiplicity']))
    else:
        # The multiplicity comes from each structure; checks that depend on it run again per structure.
        if result['reference'] != 'auto':
            check_method_reference(result, result['reference'])
    return result


def resolve_reference(parameters: t.Mapping[str, t.Any], multiplicity: int) -> str:
    """Return the reference actually used for a molecule: ``auto`` is restricted for singlets, unrestricted otherwise."""
    reference = parameters.get('reference', 'auto')
    if reference == 'auto':
        return 'restricted' if multiplicity == 1 else 'unrestricted'
    if reference == 'restricted' and multiplicity != 1:
        raise ParameterError(
            f'a restricted closed-shell reference cannot describe multiplicity {multiplicity}: use reference '
            '"unrestricted" or "restricted-open" (or "auto")'
        )
    return reference


def check_method_reference(parameters: t.Mapping[str, t.Any], reference: str) -> None:
    """Raise :class:`ParameterError` for combinations PySCF 2.3 cannot compute correctly."""
    method, forces = parameters['method'], parameters.get('forces', False)
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


def check_molecule_compatibility(parameters: t.Mapping[str, t.Any], multiplicity: int) -> str:
    """Check the parameters against one molecule's multiplicity and return the reference it will use."""
    reference = resolve_reference(parameters, multiplicity)
    check_method_reference(parameters, reference)
    return reference
