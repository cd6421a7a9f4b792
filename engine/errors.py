"""User-facing errors: the command line prints their message on one line and exits non-zero."""


class EngineError(Exception):
    """A problem with the user's input or environment, described in one plain sentence."""


class Cancelled(EngineError):
    """Generation was stopped by the progress callback."""
