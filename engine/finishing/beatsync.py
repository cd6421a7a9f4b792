"""Beat sync by design: warp the generated motion in time so its kinematic beats land on the
music's beats.

The training data gives tempo but not beat phase (DESIGN.md: its dancers' beats are no closer to
the music's than shifted ones), so the model alone cannot be trusted with phase. After sampling
we match each music beat to the nearest kinematic beat (a local minimum of joint speed) within
`max_shift`, keep a monotone set of matches whose local time-scale stays within bounds, and
resample the motion along a smooth monotone map through them. Frames the animator keyed are
fixed points of the map, so constraints stay on their frames.

The map is a monotone cubic (PCHIP), not piecewise-linear: a linear map changes playback speed
in a jump at every matched beat, which jolts the whole body there (a root-acceleration spike)
and shifts the speed dip that was meant to land on the beat. With PCHIP the playback rate is
continuous (weights/TRAINING.md, "Beat warp and feet, revisited").
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import gaussian_filter1d
from scipy.signal import argrelextrema

from ..body.layout import MODEL_FPS
from ..body.rotations import resample_linear

# A beat is moved by at most MAX_SHIFT seconds, and playback between matched beats runs between
# MIN_RATE and MAX_RATE of real time. A light touch: the network, told the beat phase, dances near
# the beat by itself, and these bounds scored the same beat alignment as the earlier 0.35 s and
# 0.6-1.6x, with the moves less re-timed (weights/TRAINING.md, "A lighter beat warp").
MAX_SHIFT = 0.2
MIN_RATE = 0.8
MAX_RATE = 1.25

SPEED_SMOOTH_FRAMES = 5.0          # Bailando: Gaussian sigma on the joint-speed curve, 30 fps frames


# ----------------------------------------------------------------------------- kinematic beats
# (also the evaluation's: engine.evaluation.metrics scores beat alignment with these)

def resample_positions(positions: np.ndarray, fps: float, target_fps: float = MODEL_FPS) -> np.ndarray:
    """(T, J, 3) at fps -> (T', J, 3) at target_fps, frame 0 kept, linear in time."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must be (T, J, 3), got {positions.shape}")
    if abs(fps - target_fps) < 1e-9 or len(positions) < 2:
        return positions
    duration = (len(positions) - 1) / fps
    n_out = int(np.floor(duration * target_fps + 1e-9)) + 1
    src = torch.arange(len(positions), dtype=torch.float64) / fps
    dst = torch.arange(n_out, dtype=torch.float64) / target_fps
    return resample_linear(torch.from_numpy(positions), src, dst).numpy()


def motion_speed(positions: np.ndarray, fps: float, smooth: bool = True) -> np.ndarray:
    """Mean joint speed per 30 fps frame (m/s), Gaussian-smoothed (sigma 5 frames) as Bailando.

    Bailando uses forward differences placed at frame k, which puts beats half a frame early;
    central differences (np.gradient) put speed sample k exactly at frame k.
    """
    p = resample_positions(positions, fps)
    if len(p) < 2:
        return np.zeros(len(p))
    speed = np.linalg.norm(np.gradient(p, 1.0 / MODEL_FPS, axis=0), axis=-1).mean(axis=-1)   # (T,)
    return gaussian_filter1d(speed, SPEED_SMOOTH_FRAMES) if smooth else speed


def motion_beats(positions: np.ndarray, fps: float) -> np.ndarray:
    """Kinematic beats (Bailando, Siyao et al., CVPR 2022; after FACT/AIST++, Li et al. 2021):
    times (seconds) of the strict local minima of the smoothed mean joint speed."""
    speed = motion_speed(positions, fps)
    (idx,) = argrelextrema(speed, np.less)
    return idx.astype(np.float64) / MODEL_FPS


# ----------------------------------------------------------------------------- the warp

def warp_knots(motion_beats: np.ndarray, music_beats: np.ndarray, duration: float,
               anchors: np.ndarray = np.zeros(0), max_shift: float = MAX_SHIFT,
               min_rate: float = MIN_RATE, max_rate: float = MAX_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Knots (output_times, source_times) of a monotone time map, both starting at 0 and ending at
    `duration`. Output time b plays the source at the matched kinematic beat m (so m lands on b).

    rate = d(source)/d(output) between consecutive knots stays in [min_rate, max_rate].
    """
    motion_beats = np.sort(np.asarray(motion_beats, dtype=np.float64))
    events = [(0.0, 0.0, True), (float(duration), float(duration), True)]
    events += [(float(a), float(a), True) for a in np.asarray(anchors, dtype=np.float64) if 0 < a < duration]
    for b in np.asarray(music_beats, dtype=np.float64):
        if 0 < b < duration and len(motion_beats):
            m = motion_beats[np.argmin(np.abs(motion_beats - b))]
            if abs(m - b) <= max_shift:
                events.append((float(b), float(m), False))
    events.sort(key=lambda e: (e[0], not e[2]))

    def rate_ok(a, b):
        dt = b[0] - a[0]
        return dt > 1e-6 and min_rate <= (b[1] - a[1]) / dt <= max_rate

    knots: list[tuple[float, float, bool]] = []
    for ev in events:
        if knots and ev[0] - knots[-1][0] <= 1e-6:
            if ev[2] and not knots[-1][2]:
                knots.pop()          # a fixed point wins over a beat at the same time
            else:
                continue
        if ev[2]:
            # Fixed points are kept; drop earlier beat matches that would make the rate illegal.
            while knots and not knots[-1][2] and not rate_ok(knots[-1], ev):
                knots.pop()
            knots.append(ev)
        elif not knots or rate_ok(knots[-1], ev):
            knots.append(ev)
    out = np.array([k[0] for k in knots])
    src = np.array([k[1] for k in knots])
    return out, src


def warp_times(times: np.ndarray, knots: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Source time to sample for each output time: the monotone cubic through the knots, whose
    slope (the playback rate) is continuous; at the knots it lies between the neighbouring
    spans' rates, and inside a span it stays below 1.5x that span's rate."""
    out, src = knots
    times = np.clip(np.asarray(times, dtype=np.float64), out[0], out[-1])
    if len(out) < 3:
        return np.interp(times, out, src)
    return PchipInterpolator(out, src)(times)


def output_times(source_times: np.ndarray, knots: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Inverse of warp_times: the output time at which each source time is played."""
    out, _ = knots
    grid = np.linspace(out[0], out[-1], max(2, int(np.ceil((out[-1] - out[0]) * 1000)) + 1))   # 1 ms
    return np.interp(source_times, warp_times(grid, knots), grid)
