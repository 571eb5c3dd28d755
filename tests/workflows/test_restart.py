"""Handlers of the ``mlqm.pyscf.base`` restart chain, each fed a faked failed child (no PySCF runs here)."""
from __future__ import annotations

import io

import pytest
from aiida import orm
from aiida.common import LinkType
from aiida.common.datastructures import CalcJobState
from aiida.engine import ProcessState
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager
from aiida.plugins import CalculationFactory, WorkflowFactory

PyscfBaseWorkChain = WorkflowFactory('mlqm.pyscf.base')
PyscfCalculation = CalculationFactory('mlqm.pyscf')


@pytest.fixture
def water(make_structure):
    return make_structure('H2O')


@pytest.fixture
def make_chain(mlqm_code, water):
    """Instantiate the chain (without running it) with given pyscf parameters and options."""

    def factory(parameters=None, options=None, max_iterations=10):
        inputs = {
            'max_iterations': orm.Int(max_iterations),
            'pyscf': {
                'code': mlqm_code,
                'structure': water,
                'parameters': orm.Dict(parameters or {'method': 'ccsd', 'basis': 'sto-3g'}),
                'metadata': {'options': options or {}},
            }
        }
        chain = instantiate_process(get_manager().get_runner(), PyscfBaseWorkChain, **inputs)
        chain.setup()
        return chain

    return factory


def fail_child(chain, exit_code_name: str, *, checkpoint: bool = True) -> orm.CalcJobNode:
    """Append a finished ``mlqm.pyscf`` node with the given exit code (and a checkpoint output) to the chain."""
    exit_code = PyscfCalculation.exit_codes[exit_code_name]
    node = orm.CalcJobNode(computer=chain.ctx.inputs.code.computer, process_type='aiida.calculations:mlqm.pyscf')
    node.set_process_label('PyscfCalculation')
    node.set_process_state(ProcessState.FINISHED)
    node.set_exit_status(exit_code.status)
    node.set_exit_message(exit_code.message)
    node.set_state(CalcJobState.PARSING)
    node.store()
    if checkpoint:
        chk = orm.SinglefileData(io.BytesIO(b'not a real checkpoint'), filename='checkpoint.chk')
        chk.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label='checkpoint')
        chk.store()
    chain.ctx.iteration += 1
    chain.ctx.children = [*chain.ctx.get('children', []), node]
    return node


def restarts(result) -> bool:
    """``inspect_process`` asks for another iteration by returning nothing or a zero exit code."""
    return result is None or result.status == 0


def test_scf_not_converged_escalates_then_gives_up(make_chain):
    chain = make_chain()
    child = fail_child(chain, 'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED')
    assert restarts(chain.inspect_process())
    scf = chain.ctx.inputs.parameters.get_dict()['scf']
    assert scf['level_shift'] == PyscfBaseWorkChain.defaults.scf_level_shift
    assert scf['damp'] == PyscfBaseWorkChain.defaults.scf_damp
    assert 'second_order' not in scf
    assert chain.ctx.inputs.checkpoint.uuid == child.outputs.checkpoint.uuid
    # The changed parameters were made by a calcfunction whose inputs include the old parameters.
    assert chain.ctx.inputs.parameters.creator.process_label == 'update_parameters'

    fail_child(chain, 'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED')
    assert restarts(chain.inspect_process())
    assert chain.ctx.inputs.parameters.get_dict()['scf']['second_order'] is True
    assert chain.ctx.inputs.parameters.get_dict()['scf']['level_shift'] == PyscfBaseWorkChain.defaults.scf_level_shift

    fail_child(chain, 'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED')
    result = chain.inspect_process()
    assert result == PyscfBaseWorkChain.exit_codes.ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED


def test_cc_not_converged_raises_iterations_and_diis_up_to_cap(make_chain):
    chain = make_chain({'method': 'ccsd', 'basis': 'sto-3g', 'cc': {'max_cycle': 50, 'diis_space': 6}}, max_iterations=20)
    fail_child(chain, 'ERROR_CC_CONVERGENCE_NOT_REACHED')
    assert restarts(chain.inspect_process())
    assert chain.ctx.inputs.parameters.get_dict()['cc'] == {'max_cycle': 100, 'diis_space': 10}
    # Keep failing: the caps end the chain with its own exit code rather than looping.
    for _ in range(10):
        fail_child(chain, 'ERROR_CC_CONVERGENCE_NOT_REACHED')
        result = chain.inspect_process()
        if not restarts(result):
            break
    assert result == PyscfBaseWorkChain.exit_codes.ERROR_CC_CONVERGENCE_NOT_REACHED
    cc = chain.ctx.inputs.parameters.get_dict()['cc']
    assert cc['max_cycle'] == PyscfBaseWorkChain.defaults.cc_max_cycle_cap
    assert cc['diis_space'] == PyscfBaseWorkChain.defaults.cc_diis_space_cap


@pytest.mark.parametrize('exit_code_name', ['ERROR_OUT_OF_WALLTIME', 'ERROR_SCHEDULER_OUT_OF_WALLTIME'])
def test_walltime_restarts_from_checkpoint_with_more_time(make_chain, exit_code_name):
    chain = make_chain(options={'max_wallclock_seconds': 600})
    child = fail_child(chain, exit_code_name)
    assert restarts(chain.inspect_process())
    assert chain.ctx.inputs.metadata['options']['max_wallclock_seconds'] == 900
    assert chain.ctx.inputs.checkpoint.uuid == child.outputs.checkpoint.uuid


@pytest.mark.parametrize('exit_code_name', ['ERROR_OUT_OF_MEMORY', 'ERROR_SCHEDULER_OUT_OF_MEMORY'])
def test_out_of_memory_doubles_memory_until_cap(make_chain, exit_code_name):
    chain = make_chain({'method': 'ccsd', 'basis': 'sto-3g', 'max_memory': 1000}, options={'max_memory_kb': 2_000_000})
    fail_child(chain, exit_code_name, checkpoint=False)
    assert restarts(chain.inspect_process())
    assert chain.ctx.inputs.parameters.get_dict()['max_memory'] == 2000
    assert chain.ctx.inputs.metadata['options']['max_memory_kb'] == 4_000_000

    capped = make_chain({'method': 'ccsd', 'basis': 'sto-3g', 'max_memory': PyscfBaseWorkChain.defaults.max_memory_cap_mb})
    fail_child(capped, exit_code_name, checkpoint=False)
    assert capped.inspect_process().status == PyscfBaseWorkChain.exit_codes.ERROR_OUT_OF_MEMORY_AT_CAP.status


@pytest.mark.parametrize('exit_code_name', ['ERROR_PYSCF_EXCEPTION', 'ERROR_OUTPUT_RESULTS_MISSING'])
def test_other_failures_end_with_specific_exit_code(make_chain, exit_code_name):
    chain = make_chain()
    child = fail_child(chain, exit_code_name)
    result = chain.inspect_process()
    assert result.status == PyscfBaseWorkChain.exit_codes.ERROR_UNRECOVERABLE_FAILURE.status
    assert str(child.exit_status) in result.message
    assert 'checkpoint' not in chain.ctx.inputs


def test_every_handler_states_its_strategy():
    for handler in PyscfBaseWorkChain.get_process_handlers():
        assert handler.__doc__ and len(handler.__doc__.split()) > 8, handler.__name__


def test_cancelled_job_is_not_resubmitted(make_chain):
    chain = make_chain()
    fail_child(chain, 'ERROR_SCHEDULER_JOB_CANCELLED')
    result = chain.inspect_process()
    assert result.status == PyscfBaseWorkChain.exit_codes.ERROR_JOB_CANCELLED.status


def test_node_failure_resubmits_unchanged_then_gives_up(make_chain):
    chain = make_chain(options={'max_wallclock_seconds': 600})
    parameters = chain.ctx.inputs.parameters.get_dict()
    for _ in range(PyscfBaseWorkChain.defaults.node_failure_retries):
        child = fail_child(chain, 'ERROR_SCHEDULER_NODE_FAILURE')
        assert restarts(chain.inspect_process())
        assert chain.ctx.inputs.parameters.get_dict() == parameters
        assert chain.ctx.inputs.metadata['options']['max_wallclock_seconds'] == 600
        assert chain.ctx.inputs.checkpoint.uuid == child.outputs.checkpoint.uuid
    fail_child(chain, 'ERROR_SCHEDULER_NODE_FAILURE')
    assert chain.inspect_process().status == PyscfBaseWorkChain.exit_codes.ERROR_NODE_FAILURES.status


@pytest.mark.parametrize(
    ('stdout', 'state'),
    [
        ('AllocCPUS|Account|State|ExitCode\n1|root|CANCELLED by 0|0:15\n1|root|CANCELLED|0:15\n', 'CANCELLED by 0'),
        ('AllocCPUS|Account|State|ExitCode\n1|root|TIMEOUT|0:0\n', 'TIMEOUT'),
        ('', ''),
    ],
)
def test_scheduler_state_from_sacct(stdout, state):
    from aiida_mlqm.calcjobs.pyscf import scheduler_state

    assert scheduler_state({'retval': 0, 'stdout': stdout, 'stderr': ''}) == state
    assert scheduler_state({'retval': 1, 'stdout': stdout, 'stderr': 'accounting disabled'}) == ''
