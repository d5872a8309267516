"""Errors a user can act on. The CLI turns each into one line and exit code 2 (no traceback)."""


class IterateError(Exception):
    """A known, user-facing problem: bad input, missing state, a busy workspace."""

    exit_code = 2


class ManifestError(IterateError):
    """The manifest is missing, unreadable or invalid; the message names the field."""


class BusyError(IterateError):
    """Another `iterate` command holds the workspace write lock."""

    exit_code = 3
