"""Make the animator's constraints hold exactly, with the motion flowing into and out of them.

The sampler already steers the dance towards the constraints (in-painting), but its result only
approximates them. Here each constrained joint gets a correction: at a keyed frame, the rotation
that turns the generated pose into the keyed one; between keys of the same joint the corrections
are interpolated, and away from keys they fade out smoothly (smoothstep, zero slope at both ends).
Keyed frames then receive the keyed values verbatim, so the error there is exactly zero.
An isolated key (a joint keyed on a frame but not on its neighbours) is also eased: nearby
frames are pulled towards the keyed pose, so the motion slows into the key and out of it
instead of passing through it at full speed (as an animator's ease-in/ease-out would).
"""
from __future__ import annotations

import numpy as np
import torch

from . import rotations as R
from .motion import Constraints
from .skeleton import NUM_JOINTS

FADE_SECONDS = 0.5
EASE_SECONDS = 0.25   # an isolated key is eased into and out of over this long


def _smoothstep_fade(distance: np.ndarray, span: float) -> np.ndarray:
    """1 at distance 0, 0 from `span` on, with zero slope at both ends."""
    x = np.clip(distance / span, 0.0, 1.0)
    return 1.0 - x * x * (3.0 - 2.0 * x)


def correction_weights(keyed: np.ndarray, span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every frame: the previous and next keyed frame (-1 if none) and their weights."""
    T = len(keyed)
    idx = np.arange(T)
    prev = np.where(keyed, idx, -1)
    prev = np.maximum.accumulate(prev)
    nxt = np.where(keyed, idx, T)
    nxt = np.minimum.accumulate(nxt[::-1])[::-1]
    w_prev = np.where(prev >= 0, _smoothstep_fade(idx - prev, span), 0.0)
    w_next = np.where(nxt < T, _smoothstep_fade(nxt - idx, span), 0.0)
    gap = nxt - prev
    close = (prev >= 0) & (nxt < T) & (gap <= 2 * span)
    # Keys close together: interpolate between their corrections instead of fading to zero.
    s = np.where(close, (idx - prev) / np.maximum(gap, 1), 0.0)
    w_prev = np.where(close, 1 - s, w_prev)
    w_next = np.where(close, s, w_next)
    return prev, np.where(nxt < T, nxt, -1), w_prev, w_next


def apply_constraints(poses: np.ndarray, trans: np.ndarray, constraints: Constraints, fps: float,
                      fade_seconds: float = FADE_SECONDS) -> tuple[np.ndarray, np.ndarray]:
    """Return copies of (poses (T,72), trans (T,3)) that satisfy `constraints` exactly."""
    poses, trans = poses.astype(np.float64).copy(), trans.astype(np.float64).copy()
    n = constraints.num_frames
    span = max(1.0, fade_seconds * fps)
    given = torch.from_numpy(constraints.poses).reshape(n, NUM_JOINTS, 3)
    generated = torch.from_numpy(poses[:n]).reshape(n, NUM_JOINTS, 3)
    q_all = R.axis_angle_to_quat(torch.from_numpy(poses).reshape(-1, NUM_JOINTS, 3))
    for j in range(NUM_JOINTS):
        keyed = np.zeros(len(poses), bool)
        keyed[:n] = constraints.joint_mask[:, j]
        if not keyed.any():
            continue
        # Correction rotation at each key, as a rotation vector: given = delta * generated.
        delta = torch.zeros(len(poses), 3, dtype=torch.float64)
        k = np.flatnonzero(keyed)
        dq = R.quat_mul(R.axis_angle_to_quat(given[k, j]), R.quat_conjugate(R.axis_angle_to_quat(generated[k, j])))
        delta[k] = R.quat_to_axis_angle(dq)
        prev, nxt, w_prev, w_next = correction_weights(keyed, span)
        blend = delta[np.maximum(prev, 0)] * torch.from_numpy(w_prev)[:, None] \
            + delta[np.maximum(nxt, 0)] * torch.from_numpy(w_next)[:, None]
        q_all[:, j] = R.quat_mul(R.axis_angle_to_quat(blend), q_all[:, j])
        _ease_isolated_keys(q_all, j, keyed, R.axis_angle_to_quat(given[:, j]), max(1.0, EASE_SECONDS * fps))
    out = R.quat_to_axis_angle(q_all).reshape(len(poses), -1).numpy()
    mask = np.zeros(out.shape, bool)
    mask[:n] = np.repeat(constraints.joint_mask, 3, axis=1)
    out[mask] = constraints.poses[mask[:n]]                 # keyed values verbatim

    keyed = np.zeros(len(trans), bool)
    keyed[:n] = constraints.trans_mask
    if keyed.any():
        offsets = np.zeros_like(trans)
        offsets[:n][constraints.trans_mask] = constraints.trans[constraints.trans_mask] - trans[:n][constraints.trans_mask]
        prev, nxt, w_prev, w_next = correction_weights(keyed, span)
        # Away from root keys the offset holds (not fades): a dancer moved by a key stays moved.
        hold_prev = np.where(prev >= 0, 1.0, 0.0)
        hold_next = np.where((prev < 0) & (nxt >= 0), 1.0, 0.0)
        between = (prev >= 0) & (nxt >= 0)
        s = np.where(between, (np.arange(len(trans)) - prev) / np.maximum(nxt - prev, 1), 0.0)
        s = s * s * (3 - 2 * s)
        w_p = np.where(between, 1 - s, hold_prev)
        w_n = np.where(between, s, hold_next)
        trans = trans + offsets[np.maximum(prev, 0)] * w_p[:, None] + offsets[np.maximum(nxt, 0)] * w_n[:, None]
        trans[:n][constraints.trans_mask] = constraints.trans[constraints.trans_mask]
    return out, trans


def _ease_isolated_keys(q_all: torch.Tensor, j: int, keyed: np.ndarray, q_given: torch.Tensor, span: float) -> None:
    """Slerp joint j towards its isolated keys' poses, weight 1 at the key fading to 0 at `span`."""
    neighbour = np.zeros_like(keyed)
    neighbour[1:] |= keyed[:-1]
    neighbour[:-1] |= keyed[1:]
    isolated = keyed & ~neighbour
    if not isolated.any():
        return
    prev, nxt, _, _ = correction_weights(isolated, span)
    idx = np.arange(len(keyed))
    d_prev = np.where(prev >= 0, idx - prev, np.inf)
    d_next = np.where(nxt >= 0, nxt - idx, np.inf)
    nearest = np.where(d_prev <= d_next, prev, nxt)
    weight = _smoothstep_fade(np.minimum(d_prev, d_next), span)
    frames = np.flatnonzero((weight > 0) & ~(keyed & ~isolated))
    if len(frames) == 0:
        return
    target = q_given[nearest[frames]]
    w = torch.from_numpy(weight[frames])[:, None]
    q_all[frames, j] = R.quat_slerp(q_all[frames, j], target, w)


def anchor_times(constraints: Constraints | None, fps: float) -> np.ndarray:
    """Frames the beat warp must leave in place: keys of at least half the body, or of the root."""
    if constraints is None:
        return np.zeros(0)
    strong = (constraints.joint_mask.sum(axis=1) >= NUM_JOINTS // 2) | constraints.trans_mask
    return np.flatnonzero(strong) / fps
