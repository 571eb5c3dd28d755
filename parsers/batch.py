"""Parser of ``mlqm.pyscf.batch``: per-structure outputs for the structures that succeeded, ``failures`` for the rest."""

from __future__ import annotations

from aiida import orm
from aiida.engine import ExitCode

from ..provenance.dataset import DatasetData, frame_from_result
from .pyscf import STATUS_EXIT_CODES, PyscfParserBase, convert_result, failure_message, forces_node

__all__ = ('PyscfBatchParser',)


class PyscfBatchParser(PyscfParserBase):
    """Attach ``parameters.<key>`` of each good structure, their rows (energies and forces) as one ``dataset`` (jobs
    whose class sets ``DATASET_ROWS``; the others get ``forces.<key>``) and a ``failures`` Dict.

    Forces go into the dataset's rows only, not into an ``ArrayData`` a structure as well: each output node costs a
    store and a validated link (see ``python -m benchmarks overhead``), and the rows are what every consumer reads.

    Exit status 0 when all succeeded, 710 when some failed, 430 when none did; 3xx (or the scheduler's code) when no
    results came back at all.
    """

    def parse_results(self, **kwargs) -> ExitCode | None:
        """Attach the outputs that could be built and return the most specific exit code."""
        from aiida_mlqm.calcjobs.pyscf import PyscfCalculation

        results = self.read_results()
        if isinstance(results, ExitCode):
            return results
        if 'error' in results:  # the runner refused its input: nothing ran
            return self.exit_codes.ERROR_PYSCF_EXCEPTION.format(message=failure_message(results))

        level_label = self.level_label()
        versions = results.get('versions', {})
        failures: dict[str, dict] = {}
        structures = self.node.inputs.structures
        keys = list(structures.keys())
        dataset_rows = getattr(self.node.process_class, 'DATASET_ROWS', False)
        rows = []
        for key in keys:
            result = results['structures'].get(key)
            if result is None:
                result = {
                    'status': 'missing',
                    'error': {
                        'type': 'Missing',
                        'stage': 'not_started',
                        'message': 'no result: the job ended before this structure',
                    },
                }
            status = result.get('status', 'error')
            if status == 'ok':
                parameters, forces = convert_result(result, versions, level_label)
                node = orm.Dict(parameters)
                self.out(f'parameters.{key}', node)
                if forces is not None and not dataset_rows:
                    self.out(f'forces.{key}', forces_node(forces))
                rows.append((key, node, forces))
                continue
            label = STATUS_EXIT_CODES.get(status, 'ERROR_PYSCF_EXCEPTION')
            failures[key] = {
                'status': status,
                'message': failure_message(result),
                'exit_code': PyscfCalculation.exit_codes[label].status,
                'exit_label': label,
            }
            if status == 'missing' and self.node.exit_status is not None:
                # The scheduler says why the job ended early (e.g. 120 walltime, 110 out of memory): more specific.
                failures[key]['exit_code'] = self.node.exit_status
        if rows and dataset_rows:
            frames = [
                frame_from_result(structures[key], node.get_dict(), forces, source_uuid=self.node.uuid,
                                  result_uuid=node.uuid)
                for key, node, forces in sorted(rows, key=lambda row: row[0])
            ]  # fmt: skip
            self.out('dataset', DatasetData.from_frames(frames))
        if not failures:
            return ExitCode(0)
        self.out('failures', orm.Dict(failures))
        summary = '; '.join(f'{key}: {value["status"]}' for key, value in list(failures.items())[:10])
        if len(failures) > 10:
            summary += f'; ... ({len(failures) - 10} more)'
        if len(failures) == len(keys):
            if all(value['status'] == 'missing' for value in failures.values()):
                return self.scheduler_or(self.exit_codes.ERROR_ALL_STRUCTURES_FAILED.format(summary=summary))
            return self.exit_codes.ERROR_ALL_STRUCTURES_FAILED.format(summary=summary)
        return self.exit_codes.WARNING_SOME_STRUCTURES_FAILED.format(
            failed=len(failures), total=len(keys), summary=summary
        )
