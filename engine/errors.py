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


class Terminated(BaseException):
    """SIGTERM (kill, a timeout, a batch scheduler) as an exception: the default action ends the
    process at once, skipping the finally blocks that remove temporary files (the preview's hidden
    temporary video stayed in the output folder)."""


def ended_by_signal(call) -> int:
    """`call()`'s exit code, with SIGTERM raised inside it as Terminated so that cleanup runs, and
    the process's status the signal's once SIGTERM or Ctrl-C arrived: 143 "terminated", 130
    "interrupted", whatever `call` then returned or raised. Raised inside a library's C++ call,
    Terminated or KeyboardInterrupt can come out as another exception: pybind11 reports a failed
    argument conversion as "incompatible function arguments" (CI: SIGTERM while matplotlib drew
    the preview gave a TypeError's traceback and exit status 1). The command line and batch.py."""
    import os
    import signal
    import sys
    import threading
    if threading.current_thread() is not threading.main_thread():     # only the main thread may set them
        return call()
    pid = os.getpid()
    received = []

    def terminated(signum, frame):
        if os.getpid() != pid:      # a forked child (engine.music.background) ends as SIGTERM ended it
            os._exit(128 + signum)
        received.append(signum)
        raise Terminated()

    def interrupted(signum, frame):
        received.append(signum)
        signal.default_int_handler(signum, frame)     # KeyboardInterrupt, as without this handler

    previous = signal.signal(signal.SIGTERM, terminated)
    # Ctrl-C is noted only where Python's own handler is in place (not one a caller set).
    previous_int = (signal.signal(signal.SIGINT, interrupted)
                    if signal.getsignal(signal.SIGINT) is signal.default_int_handler else None)
    try:
        code = call()
    except (Terminated, KeyboardInterrupt, Exception):     # SystemExit passes
        if not received:
            raise
        code = None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
    if not received or code == 128 + received[-1]:      # nothing arrived, or `call` said so itself
        return code
    if received[-1] == signal.SIGINT:
        print("interrupted", file=sys.stderr)
        return 130
    print("terminated", file=sys.stderr)
    return 128 + signal.SIGTERM        # what a shell reports for a process SIGTERM ended


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
