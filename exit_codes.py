"""The exit codes of every aiida-mlqm process, in one band table: a status means one thing in every job and chain.

Bands (as aiida-quantumespresso): 2xx input validation, 3xx missing or unreadable outputs, 4xx electronic failures
(SCF, CC, memory, time), 5xx geometry, 6xx ML, 7xx finished but suspect. Statuses are never renumbered; a retired one
stays here marked deprecated. Processes declare theirs with :func:`declare`, which takes the status and label from
this table and only lets a process word the message for its own context. Imports nothing, so it can be read anywhere.

aiida-core's ``BaseRestartWorkChain`` declares 301, 302, 401 and 402 itself; they are listed here (:data:`AIIDA_CORE`)
so that no job of this package gives those numbers another meaning. Version 0.1 settled the numbers: the jobs'
stdout, status and memory codes moved off aiida-core's (302 -> 312, 301 -> 309, 401 -> 403).
"""

from __future__ import annotations

import typing as t

__all__ = ('AIIDA_CORE', 'BANDS', 'EXIT_CODES', 'declare')

BANDS = {
    2: 'input validation',
    3: 'missing or unreadable outputs',
    4: 'electronic structure: convergence, memory, time',
    5: 'geometry',
    6: 'machine learning',
    7: 'finished, but suspect or incomplete',
}

#: label -> (status, default message)
EXIT_CODES: dict[str, tuple[int, str]] = {
    # 2xx: the inputs
    'ERROR_EMPTY_LIBRARY': (210, 'The library has no entries: check the input files.'),
    'ERROR_NO_VALID_ENTRIES': (
        211,
        'None of the {total} entries could be built; the `rejected` output names the reason of each (first: {first}).',
    ),
    'ERROR_TOO_FEW_CANDIDATES': (213, '{count} candidates are too few for a campaign.'),
    # 3xx: outputs
    'ERROR_SUB_PROCESS_EXCEPTED': (301, 'The sub process excepted (aiida-core BaseRestartWorkChain).'),
    'ERROR_SUB_PROCESS_KILLED': (302, 'The sub process was killed (aiida-core BaseRestartWorkChain).'),
    'ERROR_OUTPUT_RESULTS_MISSING': (303, 'The results file was not retrieved.'),
    'ERROR_OUTPUT_UNREADABLE': (304, 'An output file could not be read: {exception}'),
    'ERROR_STRUCTURE_MISSING_FROM_RESULTS': (
        305,
        'The results file has no result for the structure(s) {keys}: the job stopped before them.',
    ),
    'ERROR_OUTPUT_MODEL_MISSING': (306, 'The model directory was not retrieved.'),
    'ERROR_OUTPUT_METRICS_MISSING': (307, 'The metrics file was not retrieved.'),
    'ERROR_OUTPUT_PREDICTIONS_MISSING': (308, 'The predictions file was not retrieved.'),
    'ERROR_OUTPUT_STATUS_MISSING': (309, 'The status file was not retrieved: the job died early.'),
    'ERROR_UNRECOVERABLE_FAILURE': (
        310,
        'The calculation failed with exit status {exit_status} ({exit_message}), which no handler can fix.',
    ),
    'ERROR_OUTPUT_STDOUT_MISSING': (312, 'The stdout output file was not retrieved.'),
    'ERROR_JOB_CANCELLED': (320, 'The scheduler job was cancelled ({state}); not resubmitted.'),
    'ERROR_NODE_FAILURES': (321, 'The job hit {count} node failures in a row.'),
    'ERROR_BUILD_FAILED': (330, 'mlqm.build made no structure: {message}'),
    'ERROR_REFERENCE_FAILED': (331, 'The reference calculations of {what} failed: {message}'),
    'ERROR_METHOD_SELECTION_FAILED': (332, 'Method selection gave no usable routing: {message}'),
    'ERROR_UNEXPECTED_PARSER_EXCEPTION': (350, 'The parser raised an exception: {exception}'),
    # 4xx: electronic structure
    'ERROR_OUT_OF_WALLTIME': (400, 'The runner stopped at its soft walltime ({message}); restart from the checkpoint.'),
    'ERROR_MAXIMUM_ITERATIONS_EXCEEDED': (401, 'The restart chain ran out of iterations (aiida-core).'),
    'ERROR_UNHANDLED_FAILURE': (402, 'The sub process failed twice without a handler (aiida-core).'),
    'ERROR_OUT_OF_MEMORY': (403, 'PySCF ran out of memory: {message}'),
    'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED': (
        410,
        'The electronic minimization cycle did not reach self-consistency.',
    ),
    'ERROR_CC_CONVERGENCE_NOT_REACHED': (411, 'The coupled-cluster equations did not converge.'),
    'ERROR_OUT_OF_MEMORY_AT_CAP': (
        412,
        'The calculation ran out of memory with the largest memory setting allowed ({max_memory} MB).',
    ),
    'ERROR_CASSCF_FAILED': (
        413,
        'The CASSCF of the multireference path failed for {count} molecule(s): {summary}',
    ),
    'ERROR_PYSCF_EXCEPTION': (420, 'PySCF raised an exception: {message}'),
    'ERROR_ALL_STRUCTURES_FAILED': (430, 'No structure could be labelled: {summary}'),
    # 5xx: geometry
    'ERROR_IONIC_CONVERGENCE_NOT_REACHED': (
        500,
        'The ionic minimization cycle did not converge (declared for aiida-pyscf compatibility; '
        'mlqm.pyscf does not optimise geometries).',
    ),
    # 6xx: machine learning
    'ERROR_NAN_LOSS': (600, 'The training loss became NaN or infinite: {message}'),
    'ERROR_INVALID_TRAINING_INPUT': (601, 'The job refused its inputs: {message}'),
    'ERROR_UNSUPPORTED_SPECIES': (602, 'Structures contain elements the model does not know: {message}'),
    'ERROR_TRAINING_FAILED': (610, 'The training script failed unexpectedly: {message}'),
    'ERROR_PREDICTION_FAILED': (611, 'The prediction script failed unexpectedly: {message}'),
    'ERROR_UNTRUSTED_MODEL': (612, 'The model file names types outside the trusted list and was not loaded: {message}'),
    # 7xx: finished, but
    'WARNING_SAMPLING_INCOMPLETE': (701, 'Configurations could not be sampled for {count} structure(s): {names}.'),
    'WARNING_SOME_STRUCTURES_FAILED': (
        710,
        '{failed} of {total} structures could not be labelled; they are listed in the `failures`/`failed` output.',
    ),
}


#: Codes that aiida-core's process classes declare themselves; :func:`declare` refuses them.
AIIDA_CORE = frozenset(
    {
        'ERROR_SUB_PROCESS_EXCEPTED',
        'ERROR_SUB_PROCESS_KILLED',
        'ERROR_MAXIMUM_ITERATIONS_EXCEEDED',
        'ERROR_UNHANDLED_FAILURE',
    }
)


def declare(spec: t.Any, *labels: str, **messages: str) -> None:
    """Declare the exit codes ``labels`` on a process ``spec`` with the status of :data:`EXIT_CODES`.

    :param messages: label -> a message worded for this process (same meaning, same placeholders or fewer).
    """
    unknown = set(messages) - set(labels)
    if unknown:
        raise ValueError(f'messages for exit codes that are not declared: {sorted(unknown)}')
    for label in labels:
        if label in AIIDA_CORE:
            raise ValueError(f'{label} is declared by aiida-core')
        status, message = EXIT_CODES[label]
        spec.exit_code(status, label, message=messages.get(label, message))
