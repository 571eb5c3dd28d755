"""Failures a training or prediction job can end with; each has a stable ``code`` that the parser maps to an exit code.

The command-line entry points write ``{"status": "failed", "error": <code>, "message": ...}`` to their status file,
so the parser never has to scrape text (see ``parsers/train.py``).
"""

from __future__ import annotations


class ModelError(Exception):
    """Base class; ``code`` names the failure family in the job's status file."""

    code = 'model_error'


class NaNLossError(ModelError):
    """The training loss became NaN or infinite (diverging optimiser, broken labels)."""

    code = 'nan_loss'


class InvalidInputError(ModelError, ValueError):
    """Inputs that cannot train or run a model (unknown hyperparameter, no forces for a force loss, ...)."""

    code = 'invalid_input'


class UnsupportedSpeciesError(ModelError, ValueError):
    """A structure contains elements the model was not trained on: out of its domain."""

    code = 'unsupported_species'


class UntrustedModelError(ModelError, ValueError):
    """A saved model file names types outside the trusted list (code could run on load): refused, nothing loaded."""

    code = 'untrusted_model'
