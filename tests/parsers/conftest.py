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
def serialize_outputs():
    """Return a function that turns a parser's outputs and exit code into plain data for ``data_regression``.

    Dicts become their content, arrays lists (per array name), single files their content size; namespaces nest.
    """

    def serialize(node):
        from aiida import orm

        if isinstance(node, dict) or hasattr(node, 'items') and not isinstance(node, orm.Data):
            return {label: serialize(value) for label, value in sorted(node.items())}
        if isinstance(node, orm.Dict):
            return node.get_dict()
        if isinstance(node, orm.ArrayData):
            return {
                'arrays': {name: node.get_array(name).tolist() for name in sorted(node.get_arraynames())},
                # uuids differ from run to run: kept as how many there are (a dataset's rows name their nodes)
                'attributes': {
                    k: (len(v) if k.endswith('_uuids') else v)
                    for k, v in node.base.attributes.all.items()
                    if not k.startswith('array|')
                },
            }
        if isinstance(node, orm.SinglefileData):
            return {'filename': node.filename, 'bytes': len(node.get_content(mode='rb'))}
        raise TypeError(f'no serialisation for {type(node).__name__}')

    def outputs_and_exit(results, calcfunction) -> dict:
        return {
            'exit_status': calcfunction.exit_status,
            'exit_message': calcfunction.exit_message,
            'outputs': serialize(dict(results)),
        }

    return outputs_and_exit
