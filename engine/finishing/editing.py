"""Make the animator's constraints hold exactly while the body keeps its own momentum through them.

The sampler steers the dance towards the constraints (in-painting), but its result only
approximates them. Here each constrained joint gets a correction OFFSET, never a pull onto the
pose: at a keyed frame, the rotation that turns the generated pose into the keyed one; between
two keys of the same joint, the corrections are interpolated with a C1 cubic (offset_curve)
across the whole gap; before the first key and after the last one, the correction fades to zero
over FADE_SECONDS with zero slope at its end. The generated motion is left-multiplied by the
correction, so its velocity passes through every key (plus the slow change of the correction):
the dancer flows through a key instead of stopping dead on it or whipping into it.
Keyed frames then receive the keyed values verbatim, so the error there is exactly zero.

A hold is where the animator asks for one: a joint keyed with the same rotation on two keys in
a row keeps that rotation in between. A fully keyed run (seed motion at the start, or a run at
the end that a regenerated section must join) is a stretch of consecutive keys, and the same
interpolant joins the free motion to it with a continuous velocity.

Root keys work alike on the position, except that beyond the first and last root key the offset
holds rather than fades: a dancer moved by a key stays moved.

The keyed facing is met earlier, while sampling (engine.sampler.facing); the offsets here take
up what is left of it.
"""
from __future__ import annotations

import numpy as np
import torch

from ..body import rotations as R
from ..body.curves import offset_curve
from ..body.motion import Constraints
from ..body.skeleton import NUM_JOINTS
from .feet import true_runs

# Beyond the first and last key of a joint its correction fades out over this long: slowly
# enough that the fade's rate of turn stays small next to the dance's own (a 1 rad correction
# fades at at most 1.5 rad/s).
FADE_SECONDS = 1.0
# Two keys of a joint count as the same pose (a hold) when they differ by less than this (rad).
HOLD_TOLERANCE = 1e-6


def _with_holds(keyed: np.ndarray, given: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """A joint keyed with the same rotation on two keys in a row is held in between: those frames
    become keys of that rotation. keyed (T,) bool, given (T,4) quaternions."""
    k = np.flatnonzero(keyed)
    if len(k) < 2:
        return keyed, given
    keyed, given = keyed.copy(), given.clone()
    q0, q1 = given[k[:-1]], given[k[1:]]
    angle = R.quat_angle(q0, q1)
    for a, b, same in zip(k[:-1], k[1:], (angle < HOLD_TOLERANCE).tolist()):
        if same and b > a + 1:
            keyed[a + 1:b] = True
            given[a + 1:b] = given[a]
    return keyed, given


def _unwrapped(delta: np.ndarray) -> np.ndarray:
    """(K,3) rotation vectors, each the short way round (angle <= pi) -> the same rotations with
    each one taken the long way round (angle - 2 pi) where that is closer to the previous one, so
    that corrections of nearly half a turn on consecutive keys do not swing through zero (a
    whole turn) between them."""
    out = delta.copy()
    angle = np.linalg.norm(out, axis=1)
    for i in np.flatnonzero((angle[1:] + angle[:-1]) > np.pi) + 1:   # only there can it help
        a = np.linalg.norm(out[i])
        alt = out[i] * (1.0 - 2.0 * np.pi / a)
        if np.linalg.norm(alt - out[i - 1]) < np.linalg.norm(out[i] - out[i - 1]):
            out[i] = alt
    return out


def apply_constraints(poses: np.ndarray, trans: np.ndarray, constraints: Constraints, fps: float,
                      fade_seconds: float = FADE_SECONDS) -> tuple[np.ndarray, np.ndarray]:
    """Return copies of (poses (T,72), trans (T,3)) that satisfy `constraints` exactly."""
    poses, trans = poses.astype(np.float64).copy(), trans.astype(np.float64).copy()
    T, n = len(poses), constraints.num_frames
    fade = fade_seconds * fps
    q_all = R.axis_angle_to_quat(torch.from_numpy(poses).reshape(T, NUM_JOINTS, 3))
    q_given = R.axis_angle_to_quat(torch.from_numpy(constraints.poses).reshape(n, NUM_JOINTS, 3))
    out_mask = np.zeros((T, NUM_JOINTS), bool)
    out_values = torch.zeros(T, NUM_JOINTS, 4, dtype=torch.float64)
    for j in range(NUM_JOINTS):
        keyed = np.zeros(T, bool)
        keyed[:n] = constraints.joint_mask[:, j]
        if not keyed.any():
            continue
        given = torch.zeros(T, 4, dtype=torch.float64)
        given[:n] = q_given[:, j]
        keyed, given = _with_holds(keyed, given)
        k = np.flatnonzero(keyed)
        # Correction at each key, as a rotation vector (the short way round): given = delta * generated.
        dq = R.quat_mul(given[k], R.quat_conjugate(q_all[k, j]))
        delta = _unwrapped(R.quat_to_axis_angle(dq).numpy())
        blend = torch.from_numpy(offset_curve(k, delta, T, fade))
        q_all[:, j] = R.quat_mul(R.axis_angle_to_quat(blend), q_all[:, j])
        out_mask[:, j] = keyed
        out_values[keyed, j] = given[keyed]
    q_all[out_mask] = out_values[out_mask]                    # keyed values verbatim
    out = R.quat_to_axis_angle(q_all).reshape(T, -1).numpy()
    mask = np.zeros(out.shape, bool)
    mask[:n] = np.repeat(constraints.joint_mask, 3, axis=1)
    out[mask] = constraints.poses[mask[:n]]                   # exactly the numbers given

    keyed = np.zeros(T, bool)
    keyed[:n] = constraints.trans_mask
    if keyed.any():
        k = np.flatnonzero(keyed)
        offsets = constraints.trans[k] - trans[k]
        trans = trans + offset_curve(k, offsets, T, None)
        trans[k] = constraints.trans[k]
    return out, trans


def keyed_runs(mask: np.ndarray, min_frames: int) -> np.ndarray:
    """(T, J) key mask -> the same with only runs of at least `min_frames` consecutive keyed
    frames of each joint kept."""
    out = np.zeros_like(mask, dtype=bool)
    for j in np.flatnonzero(mask.any(axis=0)):
        for a, b in true_runs(mask[:, j], min_frames):
            out[a:b, j] = True
    return out


def anchor_times(constraints: Constraints | None, fps: float) -> np.ndarray:
    """Frames the beat warp must leave in place: keys of at least half the body, or of the root."""
    if constraints is None:
        return np.zeros(0)
    strong = (constraints.joint_mask.sum(axis=1) >= NUM_JOINTS // 2) | constraints.trans_mask
    return np.flatnonzero(strong) / fps
