"""Where a song is silent: the stretches the dancer waits in (engine.sampler.hold) rather than dances.

Measured on the waveform at the model's frame grid, so it needs neither librosa nor torch. A frame
is silent when its RMS level is SILENT_BELOW_DB under the song's level (the median over its
sounding frames) or under ABSOLUTE_SILENCE_DBFS; a stretch counts from MIN_SILENCE_SECONDS. On the
28 songs of the open genre set (as the evaluation loads them) no frame is that quiet; tang2018's
songs have such stretches only where a recording starts or ends (0.5-8 s) and once mid-song
(1.0 s, DANCE_R_2).

A gain envelope (seconds -> linear gain: a fader, a fade-out keyed on a sequencer strip's volume)
is heard by this check alone (heard_levels_db): a stretch faded to nothing is a silence as if the
file were silent there, while the music's features and beats stay those of the file.
"""
from __future__ import annotations

import numpy as np

from ..defaults import MODEL_FPS
from ..errors import EngineError

SILENT_BELOW_DB = 40.0          # under the song's level: a fade's tail, a stop, digital silence
ABSOLUTE_SILENCE_DBFS = -70.0   # silent whatever the song's level (a song that is mostly silence)
MIN_SILENCE_SECONDS = 1.0       # shorter gaps (a rest, a breath, a stop on one beat) are danced through
SOUNDING_DB = 40.0              # frames this far under a clip's loudest (fades, silence) do not set its level


def frame_levels_db(wave: np.ndarray, sr: float, frames: int, fps: float = MODEL_FPS) -> np.ndarray:
    """(frames,) RMS level in dBFS of the samples around each frame's time (one frame's span),
    about their own mean: a DC offset is no sound (QA: an inaudible offset of 0.002, -54 dBFS,
    made a silent intro count as music)."""
    wave = np.asarray(wave).reshape(-1)
    hop = sr / fps
    # Frame k spans [edges[k], edges[k + 1]): the spans tile the song, so one pass of sums per span
    # (np.add.reduceat) measures every frame; running sums over a 10-minute song took 14x longer.
    edges = np.clip(np.round((np.arange(frames + 1) - 0.5) * hop).astype(np.int64), 0, len(wave))
    lo, hi = edges[:-1], edges[1:]
    count = np.maximum(hi - lo, 1)
    offset = float(wave.mean(dtype=np.float64)) if len(wave) else 0.0   # taken out first: the sums stay exact
    centred = wave.astype(np.float64) - offset
    total, power = np.zeros(frames), np.zeros(frames)
    sounding = hi > lo                                  # frames past the song's end have no samples
    starts = lo[sounding]
    if starts.size:
        end = int(hi[sounding][-1])
        bounds = np.append(starts, end) if end < len(centred) else starts   # the last span stops at `end`
        total[sounding] = np.add.reduceat(centred, bounds)[:starts.size]
        power[sounding] = np.add.reduceat(centred * centred, bounds)[:starts.size]
    mean = total / count
    variance = power / count - mean ** 2
    return 10.0 * np.log10(np.maximum(variance, 1e-12))


def gain_envelope(gain) -> tuple[np.ndarray, np.ndarray]:
    """`gain` as (times, gains) float arrays, checked: (times in seconds, increasing; linear gains,
    0 or more), the gain taken linearly between the times and held beyond them."""
    try:
        times, gains = (np.asarray(x, np.float64) for x in gain)
    except (TypeError, ValueError):
        raise EngineError("gain must be a pair (times in seconds, linear gains) of equal-length lists") from None
    if times.ndim != 1 or times.shape != gains.shape or not times.size:
        raise EngineError(f"gain must be a pair (times in seconds, linear gains) of equal-length lists, got shapes "
                          f"{times.shape} and {gains.shape}")
    if not (np.isfinite(times).all() and np.isfinite(gains).all()) or (gains < 0).any() or (np.diff(times) <= 0).any():
        raise EngineError("gain times must increase and gains must be finite numbers of 0 or more")
    return times, gains


def heard_levels_db(levels_db: np.ndarray, gain, fps: float = MODEL_FPS) -> np.ndarray:
    """frame_levels_db as heard through `gain` (gain_envelope; frame k at k / fps seconds): a frame's
    power times its gain squared, with the same floor (-120 dB) as a silent frame's."""
    times, gains = gain_envelope(gain)
    g = np.interp(np.arange(len(levels_db)) / fps, times, gains)
    power = np.power(10.0, np.asarray(levels_db, np.float64) / 10.0) * g * g
    return 10.0 * np.log10(np.maximum(power, 1e-12))


def silent_stretches(wave: np.ndarray, sr: float, frames: int, fps: float = MODEL_FPS,
                     gain=None) -> list[tuple[int, int]]:
    """[(first, last)] frames (inclusive) of every silent stretch of at least MIN_SILENCE_SECONDS,
    heard through `gain` when given (heard_levels_db). A slice of a song (a regenerated range) is
    measured against its own level."""
    db = frame_levels_db(wave, sr, frames, fps)
    return silent_stretches_of(db if gain is None else heard_levels_db(db, gain, fps), fps)


def silent_stretches_of(db: np.ndarray, fps: float = MODEL_FPS) -> list[tuple[int, int]]:
    """silent_stretches from the frames' levels (frame_levels_db), for a caller that has them."""
    sounding = db >= max(db.max() - SOUNDING_DB, ABSOLUTE_SILENCE_DBFS)
    if sounding.any():
        level_db = float(np.median(db[sounding]))
        silent = (db < level_db - SILENT_BELOW_DB) | (db < ABSOLUTE_SILENCE_DBFS)
    else:       # nothing sounds (digital silence, a muted export; a slice of a song's silent tail)
        silent = np.ones(len(db), bool)
    edges = np.flatnonzero(np.diff(np.r_[0, silent.astype(np.int8), 0]))
    shortest = int(round(MIN_SILENCE_SECONDS * fps))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2]) if b - a >= shortest]
