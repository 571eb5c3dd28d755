"""Fixtures of the parser tests: a finished ``CalcJobNode`` whose ``retrieved`` folder is a fixture folder."""

from __future__ import annotations

import pathlib

import pytest

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'


@pytest.fixture
def generate_calc_job_node(mlqm_localhost):
    """Return a factory of stored ``CalcJobNode`` s with inputs and ``retrieved`` from ``fixtures/<entry point>/<case>``.

    :param inputs: link label -> node; nested namespaces as ``{'structures': {'h2': node}}``.
    :param scheduler_exit_status: an exit status the scheduler set before parsing (e.g. 120 for walltime).
    """
    from aiida import orm
    from aiida.common.links import LinkType

    def flatten(inputs, prefix=''):
        for label, value in inputs.items():
            if isinstance(value, dict):
                yield from flatten(value, f'{prefix}{label}__')
            else:
                yield f'{prefix}{label}', value

    def factory(entry_point: str, case: str, inputs: dict, scheduler_exit_status: int | None = None):
        node = orm.CalcJobNode(computer=mlqm_localhost, process_type=f'aiida.calculations:{entry_point}')
        node.set_option('resources', {'num_machines': 1, 'num_mpiprocs_per_machine': 1})
        node.set_option('max_wallclock_seconds', 1800)
        for label, input_node in flatten(inputs):
            input_node.store()
            node.base.links.add_incoming(input_node, link_type=LinkType.INPUT_CALC, link_label=label)
        if scheduler_exit_status is not None:
            node.set_exit_status(scheduler_exit_status)
        node.store()
        retrieved = orm.FolderData()
        retrieved.base.repository.put_object_from_tree(str(FIXTURES / entry_point / case))
        retrieved.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label='retrieved')
        retrieved.store()
        return node

    return factory


@pytest.fixture
def structure_node():
    """Return a factory of a small unstored molecule."""
    from aiida import orm

    def factory(symbols=('O', 'H', 'H')):
        structure = orm.StructureData(cell=[[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]], pbc=(False, False, False))
        for index, symbol in enumerate(symbols):
            structure.append_atom(symbols=symbol, position=(0.0, 0.0, 0.8 * index))
        return structure

    return factory
