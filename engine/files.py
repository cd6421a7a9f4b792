"""Output files written whole: an interrupted write (Ctrl-C, kill, a full disk) leaves each file
as it was, or absent, never cut off under its real name."""
from __future__ import annotations

import os
import signal
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_whole(*paths):
    """Yield a hidden temporary path beside each of `paths` (in their order) to write. Once the
    block ends without an error, each is moved onto its path (os.replace); on any error, Ctrl-C
    or kill they are removed, and every path keeps what it held. (QA: Ctrl-C while a long dance's
    BVH was written left a file saying 18000 frames and holding 7199 under the real name, and a
    rerun refused to overwrite it.)"""
    paths = [Path(p) for p in paths]
    temps = [p.parent / f".{p.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.part" for p in paths]
    try:
        yield temps
        # Ctrl-C and kill wait until the set is renamed (QA27: between two renames they left the
        # new .npz beside the old .bvh; QA28: a second Ctrl-C while the set was being finished).
        with _interrupts_deferred():
            moved = 0
            try:
                for tmp, path in zip(temps, paths):
                    os.replace(tmp, path)
                    moved += 1
            except BaseException:       # where signals cannot wait: finish the set, all new
                for tmp, path in list(zip(temps, paths))[moved:]:
                    if tmp.exists():
                        os.replace(tmp, path)
                raise
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()


_INTERRUPTS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))


@contextmanager
def _interrupts_deferred():
    """Ctrl-C and kill (SIGINT, SIGTERM) received inside the block take effect as it ends, through
    the handlers they would have met. On the main thread the handlers are swapped for ones that
    note the signal: blocking the signal there is not enough, since the kernel hands a process's
    signal to any thread that does not block it (torch's, Blender's), and Python then raises it in
    the main thread all the same (a full test run: the third of three renames was cut off).
    Elsewhere (Python sets handlers on its main thread only) the signals are blocked for the
    calling thread where the platform can."""
    on_main = threading.current_thread() is threading.main_thread()
    # A handler set outside Python (an embedding program's) cannot be put back: those are blocked.
    swapped = [sig for sig in _INTERRUPTS if on_main and signal.getsignal(sig) is not None]
    blocked = set(_INTERRUPTS) - set(swapped) if hasattr(signal, "pthread_sigmask") else set()
    caught = []
    previous = {sig: signal.signal(sig, lambda number, frame: caught.append((number, frame))) for sig in swapped}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked) if blocked else None
    try:
        yield
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            number, frame = caught[0]
            handler = previous[number]
            if callable(handler):
                handler(number, frame)          # Python's own Ctrl-C raises KeyboardInterrupt here
            elif handler != signal.SIG_IGN:     # the default action (kill ends the process), or unknown
                os.kill(os.getpid(), number)
