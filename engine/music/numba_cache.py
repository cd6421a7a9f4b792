"""librosa's beat tracker without its per-process compile.

librosa 0.11 declares the beat tracker's local-score kernel (`librosa.beat.__beat_local_score`)
with numba's `cache=False`, so every fresh process compiles it when `librosa.beat` is imported:
about 1-1.5 s on a 2-core CPU, a third of a whole 30 s command. Importing the module with the
`cache` flag turned on stores the compiled kernel beside librosa's other cached ones, and later
processes load it. The kernel and its results are unchanged; where nothing can be cached (a
read-only install with no user cache folder) the plain import is used.
"""
from __future__ import annotations

import sys


def librosa_beat():
    """The `librosa.beat` module, its numba kernels cached on disk."""
    if "librosa.beat" in sys.modules:
        return sys.modules["librosa.beat"]
    import numba
    plain = numba.guvectorize

    def cached(*args, **kwargs):
        kwargs["cache"] = True
        return plain(*args, **kwargs)
    numba.guvectorize = cached
    try:
        import librosa.beat
        return librosa.beat
    except RuntimeError:                 # numba: "cannot cache function ...: no locator available"
        sys.modules.pop("librosa.beat", None)
    finally:
        numba.guvectorize = plain
    import librosa.beat
    return librosa.beat
