"""One dance as every loader hands it over, and the clean-up steps the loaders share.

All sequences leave their loader at layout.MODEL_FPS, Y up, metres, with axis-angle wrapped to
norm <= pi and the feet on the floor (the lowest foot joint at y = 0), so that the cache and
the window sampler never need to know where a dance came from.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d, minimum_filter1d

from ...body import rotations as R
from ...body.layout import MODEL_FPS
from ...body.skeleton import FOOT_INDICES, NUM_JOINTS, joint_positions


@dataclass
class DanceSequence:
    """A cleaned dance at `fps` (always MODEL_FPS out of the loaders).

    poses (N,72) float32 axis-angle (norm <= pi), trans (N,3) float32 root (pelvis) position,
    metres, Y up. audio_offset: seconds into `audio_path` of motion frame 0. audio_rate: the
    factor by which the motion was stretched in time to meet its music (1.0 normally); the
    audio itself is always used as-is.
    """
    name: str
    style: str
    poses: np.ndarray
    trans: np.ndarray
    fps: float = MODEL_FPS
    audio_path: str | None = None
    audio_offset: float = 0.0
    audio_rate: float = 1.0

    def __post_init__(self):
        self.poses = wrap_axis_angle(np.asarray(self.poses, dtype=np.float64)).astype(np.float32)
        self.trans = np.asarray(self.trans, dtype=np.float32)
        n = self.poses.shape[0]
        if self.poses.shape != (n, 3 * NUM_JOINTS) or self.trans.shape != (n, 3):
            raise ValueError(f"{self.name}: poses {self.poses.shape} / trans {self.trans.shape}, expected (N,72) / (N,3)")

    @property
    def num_frames(self) -> int:
        return int(self.poses.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def wrap_axis_angle(poses: np.ndarray) -> np.ndarray:
    """(..., 72) axis-angle -> the same rotations with angles in [0, pi] (via quaternions)."""
    aa = torch.as_tensor(poses, dtype=torch.float64).reshape(poses.shape[:-1] + (NUM_JOINTS, 3))
    return R.quat_to_axis_angle(R.axis_angle_to_quat(aa)).reshape(poses.shape).numpy()


def resample(poses: np.ndarray, trans: np.ndarray, src_fps: float, dst_fps: float = MODEL_FPS,
             time_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Resample a motion in time: slerp for rotations, linear for the root.

    Source frame i sits at time i / src_fps * time_scale (time_scale > 1 slows the motion
    down); output frames at k / dst_fps cover the source's time span. A pure decimation
    (60 -> 30 fps) lands exactly on source frames.
    """
    n = len(poses)
    src_t = torch.arange(n, dtype=torch.float64) * (time_scale / src_fps)
    count = int(np.floor(float(src_t[-1]) * dst_fps + 1e-6)) + 1
    dst_t = torch.arange(count, dtype=torch.float64) / dst_fps
    aa = torch.as_tensor(poses, dtype=torch.float64).reshape(n, NUM_JOINTS, 3)
    out_poses = R.resample_axis_angle(aa, src_t, dst_t).reshape(count, -1)
    out_trans = R.resample_linear(torch.as_tensor(trans, dtype=torch.float64), src_t, dst_t)
    return out_poses.numpy(), out_trans.numpy()


def _aligned_quats(poses: np.ndarray) -> np.ndarray:
    """(T,72) -> (T,24,4) quaternions with signs chosen so consecutive frames agree (q ~ -q)."""
    q = R.axis_angle_to_quat(torch.as_tensor(poses, dtype=torch.float64).reshape(len(poses), NUM_JOINTS, 3)).numpy()
    dots = np.sum(q[1:] * q[:-1], axis=-1)                       # (T-1, 24)
    flips = np.cumprod(np.where(dots < 0, -1.0, 1.0), axis=0)    # a flip carries to every later frame
    q[1:] *= flips[..., None]
    return q


def smooth(poses: np.ndarray, trans: np.ndarray, sigma_frames: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian smoothing in time: on sign-aligned quaternions (renormalised) and on the root.

    For small per-frame rotations this is a close approximation of a rotation-space filter and,
    unlike smoothing axis-angle, it never wraps.
    """
    if sigma_frames <= 0 or len(poses) < 3:
        return poses, trans
    q = gaussian_filter1d(_aligned_quats(poses), sigma_frames, axis=0, mode="nearest")
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    out_poses = R.quat_to_axis_angle(torch.as_tensor(q)).reshape(len(poses), -1).numpy()
    return out_poses, gaussian_filter1d(np.asarray(trans, np.float64), sigma_frames, axis=0, mode="nearest")


def lowest_foot(poses: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(T,) height of the lowest foot joint (ankles, toes) per frame, metres."""
    return joint_positions(poses, trans)[:, list(FOOT_INDICES), 1].min(axis=1)


def put_on_floor(poses: np.ndarray, trans: np.ndarray, fps: float, track_drift: bool,
                 window_s: float = 1.0, sigma_s: float = 0.25) -> np.ndarray:
    """Shift the root vertically so the feet stand on y = 0; returns the new (T,3) trans.

    track_drift=False: one constant shift, the lowest foot of the whole sequence at 0 (for
    calibrated capture, e.g. AIST++). track_drift=True: the fitted root of tang2018 and of
    video reconstructions creeps up or down by up to 0.6 m over a dance while the legs stay the
    same length, so the floor is estimated per frame as the lowest foot over a window_s window
    (some foot touches the floor within any second of these dances), smoothed with a Gaussian
    of sigma_s, and subtracted; then the lowest foot of the sequence is put at exactly 0.
    Vertical motion faster than ~1 s (rises, bounces, short jumps) is kept.
    """
    low = lowest_foot(poses, trans)
    if track_drift and len(low) > 2:
        floor = minimum_filter1d(low, max(1, int(round(window_s * fps))), mode="nearest")
        floor = gaussian_filter1d(floor, sigma_s * fps, mode="nearest")
    else:
        floor = np.zeros_like(low)
    out = np.array(trans, dtype=np.float64)
    out[:, 1] -= floor
    out[:, 1] -= (low - floor).min()
    return out


def longest_finite_run(*arrays: np.ndarray) -> slice:
    """The longest run of frames where every given (T, ...) array is finite."""
    ok = np.ones(len(arrays[0]), bool)
    for a in arrays:
        ok &= np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    best, start = slice(0, 0), None
    for i, good in enumerate(np.append(ok, False)):
        if good and start is None:
            start = i
        elif not good and start is not None:
            if i - start > best.stop - best.start:
                best = slice(start, i)
            start = None
    return best
