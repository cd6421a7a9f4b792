"""User-facing errors: the command line prints their message on one line and exits non-zero."""
import argparse


class EngineError(Exception):
    """A problem with the user's input or environment, described in one plain sentence."""


class Cancelled(EngineError):
    """Generation was stopped by the progress callback."""


def in_one_line(call) -> int:
    """`call()`'s exit code, or a user's mistake, a cancel or Ctrl-C said in one line (the command
    line and every tool)."""
    import sys
    try:
        return call()
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 130
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


class EngineNote(UserWarning):
    """Something the engine changed on its own that the user should know (the CPU instead of a
    missing GPU, the many-step model for a 'fast' request): the CLI prints it as 'note: ...', the
    add-on shows it in the panel."""


class RootHeightNote(EngineNote):
    """Root keys at a height no dancer's hips reach, far above a standing dancer's or near the floor
    (engine.finishing.editing.raised_root_frames, sunk_root_frames): the add-on says the same in
    the scene's units, so it shows its own instead."""


class OneLineParser(argparse.ArgumentParser):
    """An option mistake is one line, as every other mistake is, not argparse's usage block
    (the command line and its tools)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")
