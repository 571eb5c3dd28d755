"""``mlqm.build``: a molecule library (SMILES, xyz, extxyz, ASE db, pymatgen, G2) into validated 3D structures.

Usage::

    from aiida_mlqm.chemistry.readers import read_smiles_file
    from aiida_mlqm.workflows.build import BuildWorkChain
    builder = BuildWorkChain.get_builder_from_protocol(read_smiles_file('drugs.smi'), overrides={'parameters': {'num_conformers': 5}})
    results, node = aiida.engine.run_get_node(builder)   # results['structures'][key], results['rejected']
    structures = BuildWorkChain.built_structures(node)   # the same, also with return_structures: false (protocol fast)

Design: entries are checked first (``validate_library``, one calcfunction: duplicates need the whole library), then
built in chunks of ``molecules_per_calculation`` per calcfunction, each chunk in one database transaction. Measured
costs (``python -m benchmarks building``, SQLite): ~0.2 s per calcfunction (process node, input links, checkpoints),
so one calcfunction per molecule (``molecules_per_calculation: 1``) gives the finest provenance but costs ~10x RDKit's
own time; per structure, AiiDA's validation of its CREATE link (two queries, ~18 ms) and the node store (~9 ms inside a
transaction) remain, against ~25 ms of RDKit embedding for a drug-like molecule.

The chemistry lives in :mod:`aiida_mlqm.chemistry` and :mod:`.build_sampling`, the calcfunctions that make every node in
:mod:`.build_functions`, the tunables in :mod:`.build_parameters` and ``protocols/build.yaml``.
"""

from __future__ import annotations

import typing as t

from aiida import orm
from aiida.engine import ExitCode, WorkChain, if_, while_
from aiida.manage import get_manager

from ..chemistry.readers import Record, jsonable_positions
from ..exit_codes import declare
from .build_functions import (
    build_structures,
    collect_rejections,
    rename_reason,
    sample_configurations,
    validate_library,
)
from .build_parameters import parse_parameters
from .protocol import ProtocolMixin


def to_library(records: t.Iterable[Record]):
    """A ``List`` node of records (the input of ``mlqm.build``), with non-finite positions made storable."""
    cleaned = []
    for record in records:
        if isinstance(record, dict) and 'positions' in record:
            record = {**record, 'positions': jsonable_positions(record['positions'])}
        cleaned.append(record)
    return orm.List(cleaned)


def validate_parameters_port(value, _ctx=None) -> str | None:
    if value is None:
        return None
    try:
        parse_parameters(value.get_dict())
    except ValueError as exception:
        return str(exception)
    return None


def validate_library_port(value, _ctx=None) -> str | None:
    if value is not None and not all(isinstance(item, dict) for item in value.get_list()):
        return 'every library entry must be a record (dict); build the list with aiida_mlqm.chemistry.readers'
    return None


class BuildWorkChain(ProtocolMixin, WorkChain):
    """Turn each library entry into a ``StructureData`` (or reject it with a reason), then optionally sample it."""

    _protocol_name = 'build'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            'library',
            valid_type=orm.List,
            validator=validate_library_port,
            help='Molecule records from aiida_mlqm.chemistry.readers (one dict per entry).',
        )
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            default=lambda: orm.Dict(cls.get_protocol_inputs()['parameters']),
            validator=validate_parameters_port,
            help='Build parameters (see workflows/protocols/build.yaml); unknown keys are rejected.',
        )
        spec.outline(
            cls.validate,
            while_(cls.has_next_chunk)(cls.build_next_chunk),
            cls.collect,
            if_(cls.should_sample)(cls.sample),
            cls.finalize,
        )
        spec.output_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            help='One structure per accepted entry (per conformer with conformers: all), by key.',
        )
        spec.output_namespace(
            'configurations',
            valid_type=orm.StructureData,
            dynamic=True,
            help='Distorted geometries, `<key>_NNN`, each made from its parent by a calcfunction.',
        )
        spec.output(
            'rejected',
            valid_type=orm.Dict,
            help='Rejected entries: {"entries": [{"id", "kind", "reason", "source"}], "count", "total"}.',
        )
        declare(spec, 'ERROR_EMPTY_LIBRARY', 'ERROR_NO_VALID_ENTRIES', 'WARNING_SAMPLING_INCOMPLETE')

    @classmethod
    def get_builder_from_protocol(
        cls,
        library: orm.List | t.Sequence[dict],
        protocol: str | None = None,
        overrides: t.Mapping[str, t.Any] | None = None,
    ):
        """A builder with the protocol's parameters and ``overrides`` merged in; unknown override keys raise.

        :param library: records (see :mod:`aiida_mlqm.chemistry.readers`) or a ``List`` of them.
        :param overrides: nested as the ports, e.g. ``{'parameters': {'num_conformers': 5, 'configurations':
            {'number': 10}}}``.
        :raises ValueError: an unknown protocol or override key, or a value the parameter model refuses.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.library = library if isinstance(library, orm.List) else to_library(library)
        builder.parameters = orm.Dict(parse_parameters(inputs['parameters']).model_dump())
        return builder

    @staticmethod
    def built_structures(node) -> dict[str, orm.StructureData]:
        """The structures a build made, by key, whether or not they were returned as outputs (``return_structures``).

        :param node: the ``WorkChainNode`` of a ``BuildWorkChain``.
        """
        return _created_by(node, 'build_%')

    @staticmethod
    def renamed_ids(node) -> list[dict[str, str]]:
        """Entries whose link label is not their id: ``[{'id', 'key', 'why'}]`` in library order.

        An id that is not an identifier is sanitised (``mol-1`` -> ``mol_1``); an id used again gets a suffix
        (``water`` -> ``water_2``). Read from the chunks ``validate_library`` made.
        """
        validation = node.base.links.get_outgoing(link_label_filter='validate_library').all_nodes()
        if not validation:
            return []
        chunks = validation[0].base.links.get_outgoing(link_label_filter='chunk_%').all()
        entries = [entry for link in sorted(chunks, key=lambda link: link.link_label) for entry in link.node.get_list()]
        return [
            {'id': entry['id'], 'key': entry['key'], 'why': rename_reason(entry['id'], entry['key'])}
            for entry in entries
            if entry['key'] != entry['id']
        ]

    @staticmethod
    def sampled_configurations(node) -> dict[str, orm.StructureData]:
        """The distorted geometries a build made, by ``<key>_NNN``, whether or not they were returned as outputs."""
        configurations = {}
        for (calculation_label, label), structure in _created_by(node, 'sample_%', with_calculation=True).items():
            configurations[f'{calculation_label[len("sample_") :]}_{label.rsplit("_", 1)[-1]}'] = structure
        return configurations

    def validate(self):
        if not self.inputs.library.get_list():
            return self.exit_codes.ERROR_EMPTY_LIBRARY
        with get_manager().get_profile_storage().transaction():  # the rejections and every chunk, all or nothing
            outputs = validate_library(
                self.inputs.library, self.inputs.parameters, metadata={'call_link_label': 'validate_library'}
            )
        self.ctx.validation = outputs['rejected'].uuid
        self.ctx.chunks = [outputs[label].uuid for label in sorted(outputs) if label.startswith('chunk_')]
        self.ctx.index = 0
        self.ctx.late_rejections = {}
        self.ctx.built = 0
        self.ctx.return_structures = parse_parameters(self.inputs.parameters.get_dict()).return_structures
        rejected = outputs['rejected'].get_dict()
        self.report(f'{rejected["total"] - rejected["count"]} of {rejected["total"]} entries passed validation')
        return None

    def has_next_chunk(self) -> bool:
        return self.ctx.index < len(self.ctx.chunks)

    def build_next_chunk(self):
        """One calcfunction per chunk (``molecules_per_calculation`` entries); its structures become outputs at once."""
        chunk = orm.load_node(self.ctx.chunks[self.ctx.index])
        label = f'build_{self.ctx.index:04d}'
        # One database transaction per chunk: SQLite then syncs to disk once per chunk instead of several times per
        # node and link, which dominated the time of the calcfunction; the chunk is also stored all or nothing.
        with get_manager().get_profile_storage().transaction():
            outputs = build_structures(chunk, self.inputs.parameters, metadata={'call_link_label': label})
        for key, node in outputs.items():
            if key == 'rejected':
                self.ctx.late_rejections[label] = node.uuid
            else:
                self.ctx.built += 1
                if self.ctx.return_structures:
                    self.out(f'structures.{key}', node)
        self.ctx.index += 1

    def collect(self):
        validation = orm.load_node(self.ctx.validation)
        if self.ctx.late_rejections:
            late = {label: orm.load_node(uuid) for label, uuid in self.ctx.late_rejections.items()}
            rejected = collect_rejections(
                validation=validation, **late, metadata={'call_link_label': 'collect_rejections'}
            )
        else:
            rejected = validation
        self.out('rejected', rejected)
        entries = rejected.get_dict()['entries']
        if not self.ctx.built:
            first = f'{entries[0]["id"]}: {entries[0]["reason"]}' if entries else 'none recorded'
            return self.exit_codes.ERROR_NO_VALID_ENTRIES.format(total=rejected.get_dict()['total'], first=first)
        if entries:
            self.report(
                f'{len(entries)} entries rejected: ' + '; '.join(f'{e["id"]} ({e["kind"]})' for e in entries[:5])
            )
        return None

    def should_sample(self) -> bool:
        return parse_parameters(self.inputs.parameters.get_dict()).configurations.number > 0

    def sample(self):
        """One calcfunction per structure, so that every distorted geometry links to its own parent."""
        failed = []
        for key, structure in sorted(self.built_structures(self.node).items()):
            with get_manager().get_profile_storage().transaction():  # one disk sync per structure, as for the build
                outputs = sample_configurations(
                    structure, self.inputs.parameters, metadata={'call_link_label': f'sample_{key}'}
                )
            if 'failure' in outputs:
                failed.append(key)
                self.report(f'sample_{key}: {outputs["failure"]["reason"]}')
                continue
            if self.ctx.return_structures:
                for label, node in outputs.items():
                    self.out(f'configurations.{key}_{label.rsplit("_", 1)[-1]}', node)
        self.ctx.sampling_failed = failed

    def finalize(self):
        failed = self.ctx.get('sampling_failed', [])
        if failed:
            return self.exit_codes.WARNING_SAMPLING_INCOMPLETE.format(count=len(failed), names=', '.join(failed[:10]))
        return ExitCode(0)


def _created_by(node, calculation_label: str, *, with_calculation: bool = False) -> dict:
    """Structures created by the calcfunctions ``node`` called under link labels like ``calculation_label`` (SQL LIKE)."""
    query = orm.QueryBuilder()
    query.append(orm.WorkflowNode, filters={'id': node.pk}, tag='build')
    query.append(
        orm.CalculationNode,
        with_incoming='build',
        edge_filters={'label': {'like': calculation_label}},
        edge_project='label',
        edge_tag='call',
        tag='calculation',
    )
    query.append(
        orm.StructureData, with_incoming='calculation', edge_project='label', edge_tag='create', project='*', tag='made'
    )
    found = {}
    for row in query.iterdict():
        call, label, structure = row['call']['label'], row['create']['label'], row['made']['*']
        found[(call, label) if with_calculation else label] = structure
    return found
