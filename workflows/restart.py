"""``PyscfBaseWorkChain`` (``mlqm.pyscf.base``): runs one ``mlqm.pyscf`` job and recovers from known failures.

Each failure family has one handler, with an explicit priority, whose docstring states its strategy. The tuning values
live in :attr:`PyscfBaseWorkChain.defaults`. Changed parameters are made by the :func:`update_parameters`
calcfunction, so the graph records which strategy produced the input of every restart.
"""
from __future__ import annotations

import copy
import typing as t

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, calcfunction, process_handler, while_
from aiida.plugins import CalculationFactory

from ..chemistry.level import LevelOfTheory
from ..exit_codes import declare
from .protocol import ProtocolMixin, protocol_level

PyscfCalculation = CalculationFactory('mlqm.pyscf')


@calcfunction
def update_parameters(parameters: orm.Dict, changes: orm.Dict) -> orm.Dict:
    """Return ``parameters`` with ``changes`` merged in one level deep (sub-dicts such as ``scf`` are updated)."""
    merged = copy.deepcopy(parameters.get_dict())
    for key, value in changes.get_dict().items():
        if isinstance(value, dict):
            merged.setdefault(key, {}).update(value)
        else:
            merged[key] = value
    return orm.Dict(merged)


class PyscfBaseWorkChain(ProtocolMixin, BaseRestartWorkChain):
    """Run a ``mlqm.pyscf`` calculation, restarting it with stronger settings when it fails in a recoverable way."""

    _process_class = PyscfCalculation
    _protocol_name = 'pyscf_base'
    _open_override_keys = ('pyscf.parameters',)

    defaults = AttributeDict(
        {
            # SCF not converged: first a level shift with damping and more cycles, then the second-order solver.
            'scf_level_shift': 0.3,
            'scf_damp': 0.5,
            'scf_max_cycle': 200,
            'scf_strategies': ('level_shift', 'second_order'),
            # CC amplitudes not converged: more iterations and a larger DIIS space, up to these caps.
            'cc_max_cycle_factor': 2,
            'cc_max_cycle_cap': 400,
            'cc_diis_space_step': 4,
            'cc_diis_space_cap': 24,
            # Walltime: restart from the checkpoint with more time.
            'walltime_factor': 1.5,
            'default_walltime': 3600,
            # Memory: double PySCF's max_memory (MB) and the scheduler's request (kB) when one was set.
            'memory_factor': 2,
            'max_memory_cap_mb': 512_000,
            # Node failure: the job did nothing wrong; resubmit it unchanged this many times.
            'node_failure_retries': 2,
        }
    )

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(PyscfCalculation, namespace='pyscf')
        spec.inputs['max_iterations'].default = lambda: orm.Int(cls.get_default_input('max_iterations'))
        spec.inputs['clean_workdir'].default = lambda: orm.Bool(cls.get_default_input('clean_workdir'))
        spec.expose_outputs(PyscfCalculation)
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        declare(
            spec,
            'ERROR_UNRECOVERABLE_FAILURE',
            'ERROR_JOB_CANCELLED',
            'ERROR_NODE_FAILURES',
            'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED',
            'ERROR_CC_CONVERGENCE_NOT_REACHED',
            'ERROR_OUT_OF_MEMORY_AT_CAP',
            ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED='The SCF did not converge even with level shift, damping and the '
            'second-order solver.',
            ERROR_CC_CONVERGENCE_NOT_REACHED='The coupled-cluster equations did not converge with the maximum '
            'iterations and DIIS space.',
        )

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structure: orm.StructureData,
        protocol: str | None = None,
        overrides: t.Mapping[str, t.Any] | None = None,
        options: t.Mapping[str, t.Any] | None = None,
    ):
        """A builder with the protocol's inputs and ``overrides`` merged in, the level validated for ``structure``.

        :param overrides: nested as the ports, e.g. ``{'pyscf': {'parameters': {'method': 'ccsd', 'basis':
            'cc-pvdz'}}, 'max_iterations': 3}``; a ``method`` replaces the protocol's method and functional; unknown
            keys raise :class:`~aiida_mlqm.workflows.protocol.ProtocolError`.
        :param options: ``metadata.options`` of the jobs.
        """
        overrides = copy.deepcopy(dict(overrides or {}))
        level_overrides = overrides.get('pyscf', {}).pop('parameters', {}) if 'pyscf' in overrides else {}
        inputs = cls.get_protocol_inputs(protocol, overrides)
        level = protocol_level(inputs['pyscf']['parameters'], level_overrides, structure.get_symbols_set())
        builder = cls.get_builder()
        builder.pyscf.code = code
        builder.pyscf.structure = structure
        builder.pyscf.parameters = orm.Dict(level.as_parameters())
        if options:
            builder.pyscf.metadata.options = dict(options)
        builder.max_iterations = orm.Int(inputs['max_iterations'])
        builder.clean_workdir = orm.Bool(inputs['clean_workdir'])
        return builder

    def setup(self):
        """Copy the ``pyscf`` inputs into the context; restarts change them there."""
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(PyscfCalculation, 'pyscf'))
        self.ctx.scf_strategies_used = []

    # -- helpers -------------------------------------------------------------------------------------------------

    def report_error_handled(self, node, action: str) -> None:
        """Report, in one format for all handlers, which failure was seen and what the next iteration does."""
        self.report(f'{node.process_label}<{node.pk}> failed with exit status {node.exit_status}: {node.exit_message}')
        self.report(f'action taken: {action}')

    def _level(self) -> LevelOfTheory:
        """The level of the next job, defaults filled in (the current values of every setting a handler changes)."""
        return LevelOfTheory.parse(self.ctx.inputs.parameters.get_dict())

    def _update_parameters(self, changes: dict, strategy: str) -> None:
        """Replace the context's parameters by ``update_parameters(parameters, changes)``; keep the strategy name."""
        self.ctx.inputs.parameters = update_parameters(
            self.ctx.inputs.parameters, orm.Dict(changes), metadata={'call_link_label': f'restart_{strategy}'}
        )

    def _restart_from_checkpoint(self, node) -> bool:
        """Use the failed job's checkpoint as the next initial guess; return whether there was one."""
        if 'checkpoint' not in node.outputs:
            return False
        self.ctx.inputs.checkpoint = node.outputs.checkpoint
        return True

    # -- handlers, highest priority first ------------------------------------------------------------------------

    @process_handler(
        priority=600,
        exit_codes=[
            PyscfCalculation.exit_codes.ERROR_OUT_OF_MEMORY,
            PyscfCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_MEMORY,
        ],
    )
    def handle_out_of_memory(self, node):
        """PySCF or the scheduler ran out of memory: double ``max_memory`` and the scheduler's request, if one was set.

        Gives up with ``ERROR_OUT_OF_MEMORY_AT_CAP`` once ``max_memory_cap_mb`` is reached.
        """
        current = self._level().max_memory
        if current >= self.defaults.max_memory_cap_mb:
            return ProcessHandlerReport(True, self.exit_codes.ERROR_OUT_OF_MEMORY_AT_CAP.format(max_memory=current))
        new = min(current * self.defaults.memory_factor, self.defaults.max_memory_cap_mb)
        self._update_parameters({'max_memory': int(new)}, 'out_of_memory')
        options = self.ctx.inputs.setdefault('metadata', {}).setdefault('options', {})
        if options.get('max_memory_kb'):
            options['max_memory_kb'] = int(options['max_memory_kb'] * self.defaults.memory_factor)
        self.report_error_handled(node, f'restarting with max_memory {current} -> {int(new)} MB')
        return ProcessHandlerReport(True)

    @process_handler(
        priority=500,
        exit_codes=[
            PyscfCalculation.exit_codes.ERROR_OUT_OF_WALLTIME,
            PyscfCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME,
        ],
    )
    def handle_out_of_walltime(self, node):
        """The job ran out of time: restart from its checkpoint with ``walltime_factor`` times the wall time."""
        options = self.ctx.inputs.setdefault('metadata', {}).setdefault('options', {})
        walltime = options.get('max_wallclock_seconds') or self.defaults.default_walltime
        options['max_wallclock_seconds'] = int(walltime * self.defaults.walltime_factor)
        had_checkpoint = self._restart_from_checkpoint(node)
        self.report_error_handled(
            node,
            f'restarting {"from the checkpoint " if had_checkpoint else ""}with max_wallclock_seconds '
            f'{walltime} -> {options["max_wallclock_seconds"]}',
        )
        return ProcessHandlerReport(True)

    @process_handler(priority=410, exit_codes=[PyscfCalculation.exit_codes.ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED])
    def handle_scf_not_converged(self, node):
        """The SCF did not converge: restart from the checkpoint, escalating one strategy per restart.

        1. ``level_shift``: level shift ``scf_level_shift`` Ha, damping ``scf_damp``, ``scf_max_cycle`` cycles;
        2. ``second_order``: the second-order (Newton) solver on top of that.
        When both were tried, the chain ends with ``ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED``.
        """
        remaining = [s for s in self.defaults.scf_strategies if s not in self.ctx.scf_strategies_used]
        if not remaining:
            return ProcessHandlerReport(True, self.exit_codes.ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED)
        strategy = remaining[0]
        self.ctx.scf_strategies_used.append(strategy)
        scf = self._level().scf
        changes = {'max_cycle': max(scf.max_cycle, self.defaults.scf_max_cycle)}
        if strategy == 'level_shift':
            changes['level_shift'] = max(scf.level_shift, self.defaults.scf_level_shift)
            changes['damp'] = max(scf.damp, self.defaults.scf_damp)
        else:
            changes['second_order'] = True
        self._update_parameters({'scf': changes}, f'scf_{strategy}')
        had_checkpoint = self._restart_from_checkpoint(node)
        self.report_error_handled(
            node, f'SCF strategy `{strategy}` ({changes}){" from the checkpoint" if had_checkpoint else ""}'
        )
        return ProcessHandlerReport(True)

    @process_handler(priority=400, exit_codes=[PyscfCalculation.exit_codes.ERROR_CC_CONVERGENCE_NOT_REACHED])
    def handle_cc_not_converged(self, node):
        """The CC amplitudes did not converge: multiply ``max_cycle`` and widen the DIIS space, up to the caps.

        The SCF itself converged, so the restart reads the SCF solution from the checkpoint.
        """
        cc = self._level().cc
        max_cycle, diis_space = cc.max_cycle, cc.diis_space
        if max_cycle >= self.defaults.cc_max_cycle_cap and diis_space >= self.defaults.cc_diis_space_cap:
            return ProcessHandlerReport(True, self.exit_codes.ERROR_CC_CONVERGENCE_NOT_REACHED)
        changes = {
            'max_cycle': min(max_cycle * self.defaults.cc_max_cycle_factor, self.defaults.cc_max_cycle_cap),
            'diis_space': min(diis_space + self.defaults.cc_diis_space_step, self.defaults.cc_diis_space_cap),
        }
        self._update_parameters({'cc': changes}, 'cc_iterations')
        self._restart_from_checkpoint(node)
        self.report_error_handled(node, f'restarting CC with {changes}')
        return ProcessHandlerReport(True)

    @process_handler(priority=700, exit_codes=[PyscfCalculation.exit_codes.ERROR_SCHEDULER_JOB_CANCELLED])
    def handle_cancelled(self, node):
        """A cancelled scheduler job: stop with 320, never resubmit what a person (or the scheduler) cancelled."""
        self.report_error_handled(node, 'not resubmitting a cancelled job')
        return ProcessHandlerReport(True, self.exit_codes.ERROR_JOB_CANCELLED.format(state=node.exit_message))

    @process_handler(priority=650, exit_codes=[PyscfCalculation.exit_codes.ERROR_SCHEDULER_NODE_FAILURE])
    def handle_node_failure(self, node):
        """The node running the job failed: resubmit unchanged (from the checkpoint when there is one), at most
        ``defaults.node_failure_retries`` times, then stop with 321."""
        self.ctx.node_failures = self.ctx.get('node_failures', 0) + 1
        if self.ctx.node_failures > self.defaults.node_failure_retries:
            return ProcessHandlerReport(True, self.exit_codes.ERROR_NODE_FAILURES.format(count=self.ctx.node_failures))
        self._restart_from_checkpoint(node)
        self.report_error_handled(node, f'resubmitting after node failure {self.ctx.node_failures}')
        return ProcessHandlerReport(True)

    @process_handler(priority=0)
    def handle_unrecoverable(self, node):
        """Any other failure (input the runner rejected, a PySCF exception, missing outputs): stop with 310.

        The exit status and message of the failed job are carried in the chain's exit message.
        """
        if node.is_finished_ok:
            return None
        self.report(f'{node.process_label}<{node.pk}> failed with exit status {node.exit_status}, no handler applies')
        return ProcessHandlerReport(
            True,
            self.exit_codes.ERROR_UNRECOVERABLE_FAILURE.format(
                exit_status=node.exit_status, exit_message=node.exit_message or 'no message'
            ),
        )
