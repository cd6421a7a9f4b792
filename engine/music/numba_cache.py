"""librosa without its per-process compiles.

librosa 0.11 declares some numba kernels with explicit signatures and `cache=False`
(`guvectorize`/`vectorize` in librosa.beat, librosa.core.audio, librosa.core.pitch and
librosa.util.utils), so numba compiles them eagerly every time a fresh process imports those
modules: about 1-1.5 s for the beat tracker alone on a 2-core CPU, a third of a whole 30 s
command. Importing librosa with the `cache` flag turned on stores the compiled kernels beside
librosa's other cached ones, and later processes load them. The kernels and their results are
unchanged; where nothing can be cached (a read-only install with no user cache folder) the
plain import is used.
"""
from __future__ import annotations

import sys

# The librosa modules the music analysis uses (engine.music.audio). librosa loads its submodules
# lazily, so each is imported here, while the cache flag is on.
_MODULES = ("librosa", "librosa.util.utils", "librosa.core.audio", "librosa.core.pitch", "librosa.core.spectrum",
            "librosa.core.constantq", "librosa.feature", "librosa.onset", "librosa.beat")


def librosa():
    """The `librosa` package with the submodules the analysis uses, their numba kernels cached on
    disk and the CQT's filter bank built once per process (engine.music.cqt_memo)."""
    if "librosa.beat" not in sys.modules:
        _import()
    from .cqt_memo import install
    install(sys.modules["librosa.core.constantq"])
    return sys.modules["librosa"]


def _import() -> None:
    import importlib

    import numba
    plain = numba.guvectorize, numba.vectorize

    def cached(decorator):
        def with_cache(*args, **kwargs):
            kwargs["cache"] = True
            return decorator(*args, **kwargs)
        return with_cache
    numba.guvectorize, numba.vectorize = cached(plain[0]), cached(plain[1])
    try:
        for name in _MODULES:
            importlib.import_module(name)
        return
    except RuntimeError:                 # numba: "cannot cache function ...: no locator available"
        for name in [m for m in sys.modules if m == "librosa" or m.startswith("librosa.")]:
            sys.modules.pop(name)
    finally:
        numba.guvectorize, numba.vectorize = plain
    for name in _MODULES:
        importlib.import_module(name)
