"""Output files written whole: an interrupted write (Ctrl-C, kill, a full disk) leaves each file
as it was, or absent, never cut off under its real name."""
from __future__ import annotations

import os
import signal
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
        masked = hasattr(signal, "pthread_sigmask")
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if masked else None
        moved = 0
        try:
            for tmp, path in zip(temps, paths):
                os.replace(tmp, path)
                moved += 1
        except BaseException:       # where signals cannot wait (Windows): finish the set, all new
            for tmp, path in list(zip(temps, paths))[moved:]:
                if tmp.exists():
                    os.replace(tmp, path)
            raise
        finally:
            if masked:
                signal.pthread_sigmask(signal.SIG_SETMASK, before)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()
