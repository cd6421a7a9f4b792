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

The keyed facing is met earlier, while sampling (facing_alignment). The network barely reads a
keyed facing from its key input (at the keys it faced 1.46 rad away, median, against 1.72 with
no keys), but a dance turned about the vertical is as likely as the dance itself (training turns
every window to a random heading). So while the dance's shape is being decided, the sampler's
estimate is turned to face where the keys face, and the later steps shape the body and its steps
around that facing; the correction offsets above take up what is left (0.07 rad, median).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy.interpolate import CubicHermiteSpline

from ..body import layout as L
from ..body import rotations as R
from ..body.motion import Constraints
from ..body.skeleton import NUM_JOINTS
from .feet import true_runs

# Beyond the first and last key of a joint its correction fades out over this long: slowly
# enough that the fade's rate of turn stays small next to the dance's own (a 1 rad correction
# fades at at most 1.5 rad/s).
FADE_SECONDS = 1.0
# Two keys of a joint count as the same pose (a hold) when they differ by less than this (rad).
HOLD_TOLERANCE = 1e-6


def offset_curve(key_frames: np.ndarray, key_values: np.ndarray, length: int, fade: float | None) -> np.ndarray:
    """(K,) increasing frames and (K, D) values -> (length, D): a C1 cubic (Hermite) through the
    keys over the gaps between them. At a key inside or at the edge of a run of consecutive keys
    its slope is the distance-weighted mean of the neighbouring secants (np.gradient), i.e. the
    run's own rate of change, so the motion flows into the run without a kink; at an isolated
    key it is 0. Outside the keys it fades to zero over `fade` frames, landing with zero slope,
    or holds the end values (slope 0 at the end keys) when `fade` is None."""
    frames = np.arange(length, dtype=np.float64)
    key_frames = np.asarray(key_frames, dtype=np.float64)
    values = np.asarray(key_values, dtype=np.float64)
    if fade is not None:
        fade = max(1.0, fade)
        key_frames = np.concatenate([[key_frames[0] - fade], key_frames, [key_frames[-1] + fade]])
        values = np.concatenate([np.zeros((1, values.shape[1])), values, np.zeros((1, values.shape[1]))])
    if len(key_frames) == 1:
        return np.repeat(values, length, axis=0)
    slopes = np.gradient(values, key_frames, axis=0) if len(key_frames) > 2 else np.zeros_like(values)
    # An isolated key (no key on the frame before or after it) gets slope 0: the correction
    # stands still there, so the body passes through the key with exactly its own velocity, and
    # the correction changes mid-gap where nothing is asked of the pose.
    gaps = np.diff(key_frames)
    isolated = np.ones(len(key_frames), bool)
    isolated[1:] &= gaps > 1
    isolated[:-1] &= gaps > 1
    slopes[isolated] = 0.0
    slopes[[0, -1]] = 0.0                 # land on zero (or on the held value) with zero slope
    out = CubicHermiteSpline(key_frames, values, slopes, axis=0, extrapolate=False)(frames)
    out[frames < key_frames[0]] = values[0]
    out[frames > key_frames[-1]] = values[-1]
    return out


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


# ------------------------------------------------------------------ facing, while sampling

_ROOT_6D = L.joint_channels([0])
# The estimate is turned while its signal level (alpha-bar) is under this: the first half of the
# many-step schedule, two of the student's four steps. Turned at every step, the network fought
# the turn near the end and the hands whipped more near keys (python -m engine
# evaluate-inbetween, 3 seeds: whip median 1.26 against 1.09 unturned); turned only early, whip
# median 1.06 and each seed's worst clip 1.55 on average (unturned 2.71), and the LAFAN1 gap
# errors fall at every gap (weights/TRAINING.md, "The keyed facing, while sampling").
FACING_SIGNAL_LEVEL = 0.5


def turn_about_vertical(root_6d: torch.Tensor, root_vel: torch.Tensor, angle: torch.Tensor):
    """Turn (T, 6) pelvis columns and (T, 2) horizontal root velocities (x, z) by (T,) angles
    about the vertical, frame by frame (training's windows.rotate_packed, per frame)."""
    turn = R.about_vertical(angle)                                      # (T, 3, 3)
    cols = root_6d.reshape(-1, 2, 3)                                    # the two stored columns
    turned = (cols @ turn.transpose(1, 2)).reshape(-1, 6)
    vel = torch.stack([root_vel[:, 0], torch.zeros_like(root_vel[:, 0]), root_vel[:, 1]], dim=1)
    vel = (turn @ vel[:, :, None])[:, [0, 2], 0]
    return turned, vel


def pelvis_heading(root_6d: torch.Tensor) -> torch.Tensor:
    """(..., 6) pelvis rotations (engine.body.layout's 6D columns) -> (...,) heading (rotations.heading)."""
    return R.heading(R.sixd_to_matrix(root_6d))


def facing_alignment(constraints: Constraints | None, length: int, fps: float, normalizer: L.Normalizer,
                     until: float = FACING_SIGNAL_LEVEL) -> Callable[[torch.Tensor, float], torch.Tensor] | None:
    """A projection for the sampler (engine.sampler.diffusion.sample's `project`): normalised
    (length, C) motion at the model's rate and its step's signal level -> while that is under
    `until`, the motion turned about the vertical, frame by frame, so that it faces as keyed on
    every frame with a keyed pelvis (between those frames the turn is offset_curve's C1 cubic,
    beyond them it holds); afterwards the motion as it is. None when no frame keys the pelvis."""
    if constraints is None or not constraints.joint_mask[:, 0].any():
        return None
    rows = np.flatnonzero(constraints.joint_mask[:, 0])
    model_frames = L.model_frames(rows, fps, length)
    model_frames, first = np.unique(model_frames, return_index=True)      # one key per model frame
    keyed = R.axis_angle_to_6d(torch.from_numpy(constraints.poses[rows[first], :3]))
    wanted = pelvis_heading(keyed).numpy()
    frames = torch.from_numpy(model_frames)

    def align(x0: torch.Tensor, signal_level: float) -> torch.Tensor:
        if signal_level >= until:
            return x0
        raw = normalizer.denormalize(x0).double()                               # (length, C)
        have = pelvis_heading(raw[frames][:, _ROOT_6D]).cpu().numpy()
        miss = np.unwrap(np.angle(np.exp(1j * (wanted - have))))      # each the short way, no jumps
        turn = offset_curve(model_frames, miss[:, None], len(raw), None)[:, 0]
        root_6d, root_vel = turn_about_vertical(raw[:, _ROOT_6D], raw[:, L.ROOT_VEL], torch.from_numpy(turn).to(raw))
        raw[:, _ROOT_6D], raw[:, L.ROOT_VEL] = root_6d, root_vel
        out = x0.clone()
        changed = _ROOT_6D + list(range(L.ROOT_VEL.start, L.ROOT_VEL.stop))
        out[:, changed] = normalizer.normalize(raw.to(x0.dtype))[:, changed]
        return out
    return align
