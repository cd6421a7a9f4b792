"""Beat phase: where each frame sits between two beats, as network input (issue 15).

EDGE's features mark a beat only on its own frame (a one-hot flag), so the network cannot tell
how far the next beat is, and this project's training data gives the tempo but not the phase
(the dancers' kinematic beats are not aligned with the music's). A network given the phase can
learn to put its kinematic beats where the phase says a beat is (Beat-It, 2024, conditions on
beat distance). Here the phase of frame f between beats b_i <= f < b_(i+1) is
(f - b_i) / (b_(i+1) - b_i), outside the beats extended with the nearest interval, and it is
given as (sin, cos) of 2 pi phase so that a beat is one point, not a jump from 1 to 0. Without
a usable beat grid (fewer than two beats) both channels are 0: "phase unknown".

At generation the beats are the music's (engine.music.audio); in training they are the
window's own kinematic beats snapped to the music's tempo (engine.training.rephase).
"""
from __future__ import annotations

import numpy as np

BEAT_PHASE_CHANNELS = 2          # sin and cos of 2 pi phase, appended after the music features
# The normaliser of the two channels: a uniform phase has mean 0 and standard deviation 1/sqrt(2).
BEAT_PHASE_MEAN, BEAT_PHASE_STD = 0.0, float(np.sqrt(0.5))


def beat_phase(beat_frames: np.ndarray, num_frames: int) -> np.ndarray | None:
    """Phase in [0, 1) of each of `num_frames` frames, 0 on a beat; None with fewer than two beats.
    `beat_frames` may be fractional and may lie outside the frames."""
    beats = np.unique(np.asarray(beat_frames, dtype=np.float64))
    if len(beats) < 2:
        return None
    frames = np.arange(num_frames, dtype=np.float64)
    # Beats extended by one interval at either end so every frame has a beat before and after it.
    first_gap, last_gap = beats[1] - beats[0], beats[-1] - beats[-2]
    before = beats[0] - first_gap * np.arange(int(np.ceil(max(0.0, beats[0]) / first_gap)) + 1, 0, -1)
    after = beats[-1] + last_gap * np.arange(1, int(np.ceil(max(0.0, num_frames - beats[-1]) / last_gap)) + 2)
    grid = np.concatenate([before, beats, after])
    i = np.clip(np.searchsorted(grid, frames, side="right") - 1, 0, len(grid) - 2)
    return (frames - grid[i]) / (grid[i + 1] - grid[i]) % 1.0


def beat_phase_features(beat_frames: np.ndarray, num_frames: int) -> np.ndarray:
    """(num_frames, BEAT_PHASE_CHANNELS) float32: sin and cos of 2 pi phase; zeros when unknown."""
    phase = beat_phase(beat_frames, num_frames)
    if phase is None:
        return np.zeros((num_frames, BEAT_PHASE_CHANNELS), np.float32)
    angle = 2.0 * np.pi * phase
    return np.stack([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)


def with_beat_phase(features: np.ndarray) -> np.ndarray:
    """Music features (N, 35) with the phase of their own beats (the beat channel) appended:
    (N, 35 + BEAT_PHASE_CHANNELS), the input of a network trained with beat phase."""
    from .audio import FEATURE_CHANNELS
    beats = np.flatnonzero(features[:, FEATURE_CHANNELS["beat"]][:, 0] > 0.5)
    return np.concatenate([features, beat_phase_features(beats, len(features))], axis=1)


def with_beat_phase_normalizer(music_normalizer):
    """A music Normalizer extended by the beat-phase channels' fixed statistics."""
    import torch
    from ..body.layout import Normalizer
    mean = torch.full((BEAT_PHASE_CHANNELS,), BEAT_PHASE_MEAN, dtype=music_normalizer.mean.dtype)
    std = torch.full((BEAT_PHASE_CHANNELS,), BEAT_PHASE_STD, dtype=music_normalizer.std.dtype)
    return Normalizer(torch.cat([music_normalizer.mean, mean]), torch.cat([music_normalizer.std, std]))
