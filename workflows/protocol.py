"""Protocols, as aiida-quantumespresso has them: one YAML file per work chain in ``protocols/``.

A file holds ``default_protocol``, ``default_inputs`` (every tunable input with its default, written only here) and
``protocols`` (``fast``, ``balanced``, ``stringent``), each with a ``description`` and the inputs it changes. The
inputs of a builder are the defaults, updated by the protocol, updated by the caller's ``overrides``; an override
key that the defaults do not have fails loudly (naming the allowed keys) instead of being dropped.
"""

from __future__ import annotations

import copy
import functools
import pathlib
import typing as t

import yaml

from ..chemistry.level import LevelOfTheory

__all__ = ('ProtocolError', 'ProtocolMixin', 'default_inputs', 'protocol_level', 'recursive_merge')

PROTOCOL_DIRECTORY = pathlib.Path(__file__).parent / 'protocols'


class ProtocolError(ValueError):
    """An unknown protocol name or override key; the message names the allowed ones."""


@functools.lru_cache(maxsize=16)
def _load(name: str) -> dict:
    return yaml.safe_load((PROTOCOL_DIRECTORY / f'{name}.yaml').read_text(encoding='utf-8'))


def default_inputs(name: str) -> dict:
    """``default_inputs`` of protocol file ``name`` (a fresh copy)."""
    return copy.deepcopy(_load(name)['default_inputs'])


def recursive_merge(
    target: dict, update: t.Mapping, *, strict: bool, open_keys: t.Collection[str] = (), path=()
) -> dict:
    """Merge ``update`` into a copy of ``target``, nested mappings key by key.

    :param strict: refuse a key of ``update`` that ``target`` lacks (except below one of ``open_keys``).
    :param open_keys: dotted paths of mappings whose keys are free (e.g. ``options``).
    """
    merged = copy.deepcopy(target)
    for key, value in update.items():
        where = '.'.join((*path, str(key)))
        here = '.'.join(path)
        is_open = any(here == open_key or here.startswith(f'{open_key}.') for open_key in open_keys)
        if strict and key not in merged and not is_open:
            allowed = ', '.join(sorted(map(str, merged))) or 'none'
            raise ProtocolError(f'unknown override {where!r}; allowed here: {allowed}')
        if isinstance(value, t.Mapping) and isinstance(merged.get(key), dict):
            merged[key] = recursive_merge(
                merged[key], value, strict=strict, open_keys=open_keys, path=(*path, str(key))
            )
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class ProtocolMixin:
    """Protocol files for a work chain; the class names its file in ``_protocol_name``."""

    _protocol_name: t.ClassVar[str]
    #: Dotted paths of input mappings whose keys a protocol or overrides may add: their owner checks them (the
    #: level's keys are LevelOfTheory's, with its own messages).
    _open_override_keys: t.ClassVar[tuple[str, ...]] = ()

    @classmethod
    def get_protocol_filepath(cls) -> pathlib.Path:
        return PROTOCOL_DIRECTORY / f'{cls._protocol_name}.yaml'

    @classmethod
    def get_default_protocol(cls) -> str:
        return _load(cls._protocol_name)['default_protocol']

    @classmethod
    def get_available_protocols(cls) -> dict[str, dict[str, str]]:
        """``{name: {'description': ...}}`` of every protocol of this work chain."""
        protocols = _load(cls._protocol_name)['protocols']
        return {name: {'description': data['description']} for name, data in protocols.items()}

    @classmethod
    def get_default_inputs(cls) -> dict:
        """The defaults of every tunable input (a fresh copy)."""
        return copy.deepcopy(_load(cls._protocol_name)['default_inputs'])

    @classmethod
    def get_default_input(cls, dotted: str) -> t.Any:
        """One default, e.g. ``'batch.max_structures'``: what a port default reads, so the value is written once."""
        value: t.Any = _load(cls._protocol_name)['default_inputs']
        for part in dotted.split('.'):
            value = value[part]
        return copy.deepcopy(value)

    @classmethod
    def get_protocol_inputs(cls, protocol: str | None = None, overrides: t.Mapping | None = None) -> dict:
        """The defaults, updated by ``protocol`` (default: ``default_protocol``), then by ``overrides``.

        :raises ProtocolError: for an unknown protocol or an override key the defaults do not have.
        """
        data = _load(cls._protocol_name)
        name = protocol or data['default_protocol']
        if name not in data['protocols']:
            raise ProtocolError(
                f'unknown protocol {name!r} of {cls.__name__}; choose one of {", ".join(sorted(data["protocols"]))}'
            )
        changes = {key: value for key, value in data['protocols'][name].items() if key != 'description'}
        inputs = recursive_merge(data['default_inputs'], changes, strict=True, open_keys=cls._open_override_keys)
        return recursive_merge(inputs, dict(overrides or {}), strict=True, open_keys=cls._open_override_keys)


def protocol_level(
    protocol_parameters: t.Mapping[str, t.Any], overrides: t.Mapping[str, t.Any], elements: t.Iterable[str] = ()
) -> LevelOfTheory:
    """The level of a protocol with the caller's ``overrides``: naming a ``method`` replaces method and functional."""
    base = dict(protocol_parameters)
    if 'method' in overrides:
        base.pop('method', None)
        base.pop('xc', None)
    return LevelOfTheory.parse(recursive_merge(base, overrides, strict=False), elements)
