"""Tunables of ``mlqm.build``: typed, unknown keys fail; their defaults and protocols are in ``protocols/build.yaml``."""

from __future__ import annotations

import typing as t

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigurationParameters(BaseModel):
    """Distorted geometries per built structure, for training potentials (``number: 0`` switches them off)."""

    model_config = ConfigDict(extra='forbid')

    number: int = Field(ge=0, le=10000, description='distorted geometries per structure')
    method: t.Literal['normal_modes', 'random']
    temperature: float = Field(gt=0, description='K, for normal-mode sampling')
    hessian: t.Literal['forcefield', 'pyscf']
    pyscf_basis: str = Field(description='basis of the in-process Hartree-Fock Hessian')
    pyscf_max_atoms: int = Field(ge=1, le=20, description='largest molecule for the PySCF Hessian')
    min_frequency: float = Field(gt=0, description='cm^-1; softer or imaginary modes are floored to this')
    displacement: float = Field(gt=0, le=0.5, description='Å, standard deviation of random displacements')
    seed: int


class BuildParameters(BaseModel):
    """Everything ``mlqm.build`` can be told; the defaults are written once, in ``default_inputs`` of ``build.yaml``."""

    model_config = ConfigDict(extra='forbid')

    basis: str = Field(description='entries with elements outside this PySCF basis are rejected')
    num_conformers: int = Field(ge=1, le=1000)
    conformers: t.Literal['lowest', 'all']
    force_field: t.Literal['mmff', 'uff', 'none'] = Field(description='mmff falls back to UFF')
    max_iterations: int = Field(ge=0)
    rms_threshold: float = Field(ge=0, description='Å, conformers closer than this are pruned')
    seed: int = Field(description='ETKDG random seed, the same for every molecule')
    min_distance: float = Field(gt=0, description='Å, closest allowed pair of atoms')
    allow_fragments: bool
    deduplicate: bool = Field(description='reject repeats of InChIKey + charge + multiplicity')
    point_group_max_atoms: int = Field(ge=0, description='point group (pymatgen) up to this size; 0: never')
    molecules_per_calculation: int = Field(
        ge=1, description='entries per build calcfunction; 1 gives one calcfunction node per molecule'
    )
    return_structures: bool = Field(
        description='link every structure as an output of the workchain; false leaves them reachable through the '
        'build calcfunctions only (see BuildWorkChain.built_structures), which halves the storage time of large libraries',
    )
    configurations: ConfigurationParameters

    @field_validator('basis')
    @classmethod
    def _basis_in_library(cls, value: str) -> str:
        # A typo must not reject every entry with a wrong reason ("no functions for H, O") after storing them.
        from ..chemistry.basis import BasisError, check_basis_name

        try:
            return check_basis_name(value)
        except BasisError as exception:
            raise ValueError(str(exception)) from None


def parse_parameters(mapping: t.Mapping[str, t.Any]) -> BuildParameters:
    """Validate a parameter mapping (missing keys take the protocol file's defaults); raise ``ValueError`` naming
    each wrong or unknown key."""
    from .protocol import default_inputs, recursive_merge

    try:
        return BuildParameters.model_validate(recursive_merge(default_inputs('build')['parameters'], mapping, strict=False))
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
