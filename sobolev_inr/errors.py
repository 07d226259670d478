"""Errors that mean "the user's config or data is wrong", shown as one line without a traceback."""


class UserError(Exception):
    """Base class: the entry points print the message and exit with status 2."""


class ConfigError(UserError, ValueError):
    """A config key, value or combination that cannot work (a ValueError too, for library callers)."""


class DataError(UserError):
    """A data file that is missing, unreadable or unsuitable."""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, say); the last good checkpoint is kept."""
