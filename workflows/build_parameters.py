"""Tunables of ``mlqm.build`` (typed, unknown keys fail) and its protocols from ``protocols/build.yaml``."""

from __future__ import annotations

import copy
import functools
import pathlib
import typing as t

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROTOCOL_FILE = pathlib.Path(__file__).parent / 'protocols' / 'build.yaml'


class ConfigurationParameters(BaseModel):
    """Distorted geometries per built structure, for training potentials (``number: 0`` switches them off)."""

    model_config = ConfigDict(extra='forbid')

    number: int = Field(0, ge=0, le=10000, description='distorted geometries per structure')
    method: t.Literal['normal_modes', 'random'] = 'normal_modes'
    temperature: float = Field(300.0, gt=0, description='K, for normal-mode sampling')
    hessian: t.Literal['forcefield', 'pyscf'] = 'forcefield'
    pyscf_basis: str = Field('sto-3g', description='basis of the in-process Hartree-Fock Hessian')
    pyscf_max_atoms: int = Field(6, ge=1, le=20, description='largest molecule for the PySCF Hessian')
    min_frequency: float = Field(100.0, gt=0, description='cm^-1; softer or imaginary modes are floored to this')
    displacement: float = Field(0.05, gt=0, le=0.5, description='Å, standard deviation of random displacements')
    seed: int = 42


class BuildParameters(BaseModel):
    """Everything ``mlqm.build`` can be told; defaults equal ``default_inputs`` of the protocol file."""

    model_config = ConfigDict(extra='forbid')

    basis: str = Field('def2-svp', description='entries with elements outside this PySCF basis are rejected')
    num_conformers: int = Field(1, ge=1, le=1000)
    conformers: t.Literal['lowest', 'all'] = 'lowest'
    force_field: t.Literal['mmff', 'uff', 'none'] = Field('mmff', description='mmff falls back to UFF')
    max_iterations: int = Field(500, ge=0)
    rms_threshold: float = Field(0.5, ge=0, description='Å, conformers closer than this are pruned')
    seed: int = Field(42, description='ETKDG random seed, the same for every molecule')
    min_distance: float = Field(0.5, gt=0, description='Å, closest allowed pair of atoms')
    allow_fragments: bool = False
    deduplicate: bool = Field(True, description='reject repeats of InChIKey + charge + multiplicity')
    point_group_max_atoms: int = Field(24, ge=0, description='point group (pymatgen) up to this size; 0: never')
    molecules_per_calculation: int = Field(
        20, ge=1, description='entries per build calcfunction; 1 gives one calcfunction node per molecule'
    )
    return_structures: bool = Field(
        True,
        description='link every structure as an output of the workchain; false leaves them reachable through the '
        'build calcfunctions only (see BuildWorkChain.built_structures), which halves the storage time of large libraries',
    )
    configurations: ConfigurationParameters = ConfigurationParameters()


def parse_parameters(mapping: t.Mapping[str, t.Any]) -> BuildParameters:
    """Validate a parameter mapping; raise ``ValueError`` that names each wrong or unknown key."""
    try:
        return BuildParameters.model_validate(dict(mapping))
    except ValidationError as exception:
        problems = []
        for error in exception.errors():
            where = '.'.join(str(part) for part in error['loc'])
            if error['type'] == 'extra_forbidden':
                problems.append(f'unknown key {where!r} (allowed: {", ".join(_allowed(error["loc"]))})')
            else:
                problems.append(f'{where}: {error["msg"]}')
        raise ValueError('invalid build parameters: ' + '; '.join(problems)) from None


def _allowed(location) -> list[str]:
    model = ConfigurationParameters if len(location) > 1 and location[0] == 'configurations' else BuildParameters
    return sorted(model.model_fields)


@functools.lru_cache(maxsize=1)
def _protocol_file() -> dict:
    return yaml.safe_load(PROTOCOL_FILE.read_text())


def protocol_names() -> list[str]:
    return sorted(_protocol_file()['protocols'])


def get_protocol_parameters(protocol: str | None = None, overrides: t.Mapping | None = None) -> dict:
    """Parameters of a protocol (default: ``default_protocol``) with ``overrides`` merged in; unknown keys fail.

    :param overrides: parameter keys to change, e.g. ``{'num_conformers': 5, 'configurations': {'number': 10}}``.
    """
    data = _protocol_file()
    name = protocol or data['default_protocol']
    if name not in data['protocols']:
        raise ValueError(f'unknown build protocol {name!r}; choose one of {", ".join(protocol_names())}')
    parameters = copy.deepcopy(data['default_inputs']['parameters'])
    _merge(parameters, data['protocols'][name].get('parameters', {}))
    _merge(parameters, dict(overrides or {}))
    return parse_parameters(parameters).model_dump()


def _merge(target: dict, update: t.Mapping) -> None:
    for key, value in update.items():
        if isinstance(value, t.Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
