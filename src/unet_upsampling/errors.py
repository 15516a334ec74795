"""Errors a user causes and can fix: Hydra prints their message alone, without a traceback, and exits 1.

They derive from Hydra's ``CompactHydraException`` for that; ``HYDRA_FULL_ERROR=1`` shows the
traceback as for any error. Errors from bugs are not ``UserError`` and keep their traceback.
"""

from __future__ import annotations

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """Bad input: the message names the thing (key, file) and the fix."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work."""


class DataError(UserError, ValueError):
    """Data files that cannot be used as configured."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, corrupt, or holds more than this project's own weights and config."""


class TrainingDiverged(UserError, FloatingPointError):
    """A non-finite loss: the settings (learning rate, clipping) or the data need a change."""


class ReportError(UserError, ValueError):
    """A study's files that a report cannot read (a results.csv of another kind)."""


class OutputError(UserError, OSError):
    """A run or output directory that cannot be written."""
