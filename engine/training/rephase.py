"""Re-phasing: the beat grid a training window's dance actually follows (issue 15).

The data gives each song's tempo but not its phase: the dancers' kinematic beats sit at some
offset from the music's beats (measured: BAS of the real held-out dancers 0.18, barely above a
music-agnostic stretch of dance at 0.16). Training on the music's own beat phase would teach the
network that phase means nothing. Instead each window's grid keeps the music's beat period
(the tempo, which the data gets right) and takes its offset from the window's kinematic beats:
the circular mean of their positions modulo the period. Dancers who mark every second beat, or
every beat, give the same offset. Where the kinematic beats agree on no offset (their resultant
length under MIN_AGREEMENT) the window gets no grid and its phase channels say "unknown".

Generation then gives the music's beats as the grid (engine.music.beat_phase), and the network
puts its kinematic beats on them.
"""
from __future__ import annotations

import numpy as np

from ..body import layout as L
from ..body.skeleton import joint_positions
from ..finishing.beatsync import motion_beats
from ..music.beat_phase import beat_phase_features

MIN_AGREEMENT = 0.3      # resultant length of the kinematic beats' phases below which none is trusted
MIN_KINEMATIC_BEATS = 3


def beat_period(music_beat_frames: np.ndarray) -> float | None:
    """The music's beat period in frames (median interval), None with fewer than two beats."""
    beats = np.sort(np.asarray(music_beat_frames, dtype=np.float64))
    return float(np.median(np.diff(beats))) if len(beats) >= 2 else None


def rephased_beats(kinematic_beat_frames: np.ndarray, period: float | None, num_frames: int) -> np.ndarray:
    """Beat frames every `period` frames, offset to where the kinematic beats fall; empty when the
    kinematic beats are too few or agree on no offset."""
    kin = np.asarray(kinematic_beat_frames, dtype=np.float64)
    if period is None or period <= 1.0 or len(kin) < MIN_KINEMATIC_BEATS:
        return np.zeros(0)
    angle = 2.0 * np.pi * (kin % period) / period
    mean = np.exp(1j * angle).mean()
    if abs(mean) < MIN_AGREEMENT:
        return np.zeros(0)
    offset = (np.angle(mean) % (2.0 * np.pi)) / (2.0 * np.pi) * period
    return offset + period * np.arange(-1, int(np.ceil(num_frames / period)) + 1)


def window_beat_phase(motion: np.ndarray, music_beat_flags: np.ndarray) -> np.ndarray:
    """Beat-phase channels (W, 2) of one training window: packed motion (W, NUM_CHANNELS), not
    normalised, and the window's music beat flags (W,) (the features' beat channel)."""
    import torch
    poses, trans, _ = L.unpack(torch.as_tensor(motion, dtype=torch.float64))
    kin = motion_beats(joint_positions(poses.numpy(), trans.numpy()), L.MODEL_FPS) * L.MODEL_FPS
    period = beat_period(np.flatnonzero(np.asarray(music_beat_flags) > 0.5))
    return beat_phase_features(rephased_beats(kin, period, len(motion)), len(motion))
