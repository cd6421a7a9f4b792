"""librosa's constant-Q filter bank, built once per process instead of once per call.

The chroma features (engine.music.audio) come from librosa's CQT, which builds its filters
(wavelets, their FFTs, then a sparse matrix per octave) on every call: about 0.1 s a call on a
2-core CPU, a third of the CQT of a 30 s song, and paid again for every chunk of a long song and
every regeneration in Blender. The bank depends only on the call's settings (rate, frequencies,
window, ...), never on the audio, so it is kept, keyed by those settings, and each caller gets a
copy (librosa rescales the matrix in place). The results are the same to the bit.

librosa 0.11's filter builder is a private function, `librosa.core.constantq.__vqt_filter_fft`;
where it is missing (another librosa) nothing is changed.
"""
from __future__ import annotations

import threading

import numpy as np

_BUILDER = "__vqt_filter_fft"
_MAX_BANKS = 64            # one per octave per (rate, settings): a few dozen cover every frame rate
_lock = threading.Lock()


def _key(sr, freqs, filter_scale, norm, sparsity, hop_length, window, gamma, dtype, alpha):
    """The settings as a hashable key, or None where one cannot be made (an array window)."""
    key = (float(sr), np.asarray(freqs, np.float64).tobytes(), filter_scale, norm, sparsity, hop_length,
           window, gamma, None if dtype is None else np.dtype(dtype).str,
           None if alpha is None else np.asarray(alpha, np.float64).tobytes())
    try:
        hash(key)
    except TypeError:
        return None
    return key


def install(constantq) -> None:
    """Replace `constantq`'s filter builder by a memoised one (once; a no-op without the builder)."""
    build = getattr(constantq, _BUILDER, None)
    if build is None or getattr(build, "memoised", False):
        return
    banks: dict = {}

    def memoised(sr, freqs, filter_scale, norm, sparsity, hop_length=None, window="hann", gamma=0.0,
                 dtype=np.complex64, alpha=None):
        args = (sr, freqs, filter_scale, norm, sparsity)
        kwargs = dict(hop_length=hop_length, window=window, gamma=gamma, dtype=dtype, alpha=alpha)
        key = _key(*args, **kwargs)
        if key is None:
            return build(*args, **kwargs)
        with _lock:
            bank = banks.get(key)
        if bank is None:
            bank = build(*args, **kwargs)
            with _lock:
                if len(banks) >= _MAX_BANKS:
                    banks.clear()
                banks[key] = bank
        basis, n_fft, lengths = bank
        return basis.copy(), n_fft, np.array(lengths, copy=True)

    memoised.memoised = True
    memoised.build = build           # the builder itself, for comparison
    setattr(constantq, _BUILDER, memoised)
