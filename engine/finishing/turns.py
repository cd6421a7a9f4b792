"""Pelvis snaps rebuilt as turns.

Now and then the network flips the dancer's facing by about half a turn between two frames (a
window where two facings compete; the frames in between tilt the body sideways for a moment).
Real dancers' pelvis turns stay under MAX_TURN_RATE. Where the pelvis turns faster, the
stretch around the snap is replaced by a turn at a dancer's pace (REBUILT_TURN_PACE). The
stretch grows until the pace fits; the yaw is unwrapped, so a fast full spin stays a spin and
does not reverse. Only the pelvis's own rotation changes; the rest of the body rides along, as it
does in a real turn. A snap that the dance's first or last frame cuts in half has no far side to
turn to: there the pelvis holds its settled side's rotation.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation, Slerp

from ..body import layout as L
from ..body.layout import MAX_TURN_RATE   # the real dancers' fastest pelvis turn, rad/s
from ..body import rotations as R
from ..body.curves import SMOOTHSTEP_PEAK_OVER_MEAN, smoothstep
from ..body.skeleton import JOINT_INDEX, MIRROR_INDICES
from .feet import true_runs

# rad/s, the mean rate of a rebuilt turn (its peak is 1.5x). A snap is no real turn, so it is
# rebuilt as a brisk one of the dancers': their turns of 2.5-3.8 rad (tang2018's training split)
# peak at 5.0-8.5 rad/s (90th percentile per style) and take 1.0-1.8 s (median), so a rebuilt
# half turn peaks at 7.5 rad/s over 0.63 s. Before, it peaked at MAX_TURN_RATE, faster than any
# dancer's half turn: on the validation songs FID_k 29.7 against 32.4, Div_k 8.17 against 8.72
# (weights/TRAINING.md, "Rebuilt turns at a dancer's pace").
REBUILT_TURN_PACE = 5.0


def yaw_of(rot: Rotation) -> np.ndarray:
    """Heading about the vertical (Y) axis (rotations.heading) of scipy rotations."""
    return R.heading(torch.from_numpy(rot.as_matrix())).numpy()


def about_y(angle) -> Rotation:
    """Rotations about the vertical (Y) by `angle` (a number or an array), scipy's."""
    return Rotation.from_rotvec(np.outer(np.atleast_1d(angle), [0.0, 1.0, 0.0]))


def limit_turn_rate(root: Rotation, fps: float, max_rate: float = MAX_TURN_RATE,
                    pace: float = REBUILT_TURN_PACE) -> tuple[Rotation, int]:
    """(T,) pelvis rotations in world space at `fps` -> the same with every snap faster than
    `max_rate` rad/s rebuilt as an eased turn at a mean rate of `pace` (at most max_rate / 1.5,
    so that its peak stays under max_rate), or, where the first or last frame cuts the snap, as a
    hold of the rotation on its settled side; also returns how many snaps were rebuilt."""
    T = len(root)
    if T < 3:
        return root, 0
    mean_rate = min(pace, max_rate / SMOOTHSTEP_PEAK_OVER_MEAN)
    step = (root[1:] * root[:-1].inv()).magnitude() * fps
    spans = true_runs(step > max_rate, 1)      # step i joins frames i and i+1: (first, last frame)
    if not spans:
        return root, 0
    yaw = yaw_of(root)
    yaw_steps = R.wrap_angle(np.diff(yaw))                  # per-step heading change, the short way round
    tilt = about_y(-yaw) * root                     # what is left once the heading is taken out
    quats = root.as_quat()
    done_to = 0          # frames before this are settled: a stretch never reaches back into them
    rebuilt = 0
    k = 0
    while k < len(spans):
        a, b = spans[k]
        k += 1
        a = max(a, done_to)
        cut = held_at_an_end(step > mean_rate, a, b, done_to)
        if cut is not None:
            # The facing on the snap's far side is not in the dance: a turn onto the cut frame's
            # half-flipped, sideways pelvis ended a dance in a fall (a genre-set song's last 0.2 s:
            # hips tilted 64 degrees, the feet at 15 m/s).
            frames, settled = cut
            quats[frames] = quats[settled]
            done_to = max(frames.stop - 1, settled)          # the last frame the hold touched
            rebuilt += 1
            continue
        while True:
            while k < len(spans) and spans[k][0] <= b:    # a stretch that reaches a later snap takes it in
                b = max(b, spans[k][1])
                k += 1
            turn = abs(yaw_steps[a:b].sum())
            lean = (tilt[a].inv() * tilt[b]).magnitude()
            need = max(turn, lean) / mean_rate * fps
            if b - a >= need or (a == done_to and b == T - 1):
                break
            a, b = max(done_to, a - 1), min(T - 1, b + 1)
        u = np.linspace(0.0, 1.0, b - a + 1)
        ease = smoothstep(u)
        heading = yaw[a] + yaw_steps[a:b].sum() * ease
        lean_path = Slerp([0.0, 1.0], Rotation.concatenate([tilt[a], tilt[b]]))(ease)
        quats[a:b + 1] = (about_y(heading) * lean_path).as_quat()
        done_to = b
        rebuilt += 1
    return Rotation.from_quat(quats), rebuilt


def held_at_an_end(quick: np.ndarray, a: int, b: int, done_to: int = 0,
                   pinned: np.ndarray | None = None) -> tuple[slice, int] | None:
    """Where the dance's first or last frame (not both) cuts a run of too-fast steps joining
    frames a..b: (the frames to hold, the settled frame they take their rotation from), or None.
    Such a snap or pop has no far side in the dance to turn or ease to, so the rotation holds the
    settled side's instead, from where the steps turn `quick` (T-1,) bool (faster than a rebuilt
    turn's or an eased stretch's mean pace: the run's onset). Frames before `done_to` are settled already; frames `pinned`
    (T,) bool (keys) are never held, and a key on the cut side leaves the run to the easing."""
    T = len(quick) + 1
    pinned = np.zeros(T, bool) if pinned is None else pinned
    if a == 0 and b < T - 1 and not pinned[:b].any():
        while b < T - 1 and quick[b] and not pinned[b]:
            b += 1
        return slice(0, b), b
    if b == T - 1 and a > 0 and not pinned[a + 1:].any():
        while a > done_to and quick[a - 1] and not pinned[a]:
            a -= 1
        return slice(a + 1, T), a
    return None


def limit_pelvis_turns(channels: torch.Tensor, fps: float, max_rate: float = MAX_TURN_RATE) -> torch.Tensor:
    """(T, NUM_CHANNELS) motion channels (engine.body.layout) -> the same with the pelvis's snaps
    rebuilt as turns (limit_turn_rate); the other channels are untouched."""
    matrices = R.sixd_to_matrix(channels[:, L.PELVIS_6D].double()).numpy()
    limited, rebuilt = limit_turn_rate(Rotation.from_matrix(matrices), fps, max_rate)
    if not rebuilt:
        return channels
    out = channels.clone()
    out[:, L.PELVIS_6D] = R.matrix_to_6d(torch.from_numpy(limited.as_matrix())).to(channels.dtype)
    return out


# ------------------------------------------------------------------ every joint's speed bound

# rad/s, per joint, the bound on how fast a joint's local rotation may turn in the finished dance.
# Derived from the training dancers: the 99.99th percentile of each joint's frame-to-frame turn
# over the 152,215 frames at 30 fps of tang2018 and JustLMD's training split (engine.training.data's
# split; measured with engine.evaluation.evaluate_inbetween.angular_speed), the smaller of the joint and its
# mirror twin (a dancer's left and right turn alike; training mirrors the dancers, so the network
# learns either side's glitches), times SPEED_HEADROOM = 1.6: the beat warp may replay
# a move faster (up to beatsync.MAX_RATE, 1.6 when these bounds were set, 1.25 now; the bounds were
# kept, so the speed guard acts as it was measured); at least 1.6 x 10.6 = 17 (10.6 rad/s: the
# 99.99th percentile over all joints; the leg IK must turn ankles and knees faster than the data's
# barely moving ankles ever do to hold a planted sole) and at most 40, the hard ceiling. The
# result: 17 for every joint but the pelvis, 25.8 there. The right elbow's 33.9 rad/s (the left's
# 10.5) is capture glitches: a twist out and back in two frames, 46 frames over 17 rad/s against the
# left's 5, among them the same 18.3 and 34.0 rad/s pair every 2550 frames in 8 tango takes. Taken
# as the bound (40 for both elbows, before), it let the network's own such flips through: an elbow
# turned 36 rad/s (2.5 rad in 3 frames) into a regenerated range on a genre-set song.
SPEED_HEADROOM = 1.6
MAX_JOINT_SPEED_CEILING = 40.0
_TRAINING_P9999_ALL_JOINTS = 10.6
_TRAINING_P9999 = (16.14, 6.79, 6.27, 3.16, 9.78, 9.46, 4.69, 3.82, 3.24, 5.54, 3.41, 4.71,
                   5.73, 8.93, 10.58, 4.57, 8.69, 9.51, 10.45, 33.94, 9.39, 8.37, 3.81, 3.19)
MAX_JOINT_SPEED = tuple(
    float(min(MAX_JOINT_SPEED_CEILING,
              SPEED_HEADROOM * max(_TRAINING_P9999_ALL_JOINTS, min(_TRAINING_P9999[j], _TRAINING_P9999[MIRROR_INDICES[j]]))))
    for j in range(len(_TRAINING_P9999)))


# Joints rebuilt together: a limb's joints turn against each other to place its end (the leg IK
# turns hip and knee together to keep a planted foot still), so a fast knee rebuilt alone, its
# hip left as it was, threw the foot 34 cm in a frame (QA pass, a 15 s song). The whole chain
# is eased across the same stretch instead.
LIMB_CHAINS = tuple(tuple(JOINT_INDEX[f"{side}_{part}"] for part in parts) for side in ("left", "right")
                    for parts in (("hip", "knee", "ankle", "foot"),
                                  ("collar", "shoulder", "elbow", "wrist", "hand")))


def _chain_of(joint: int) -> tuple[int, ...]:
    return next((chain for chain in LIMB_CHAINS if joint in chain), (joint,))


def limit_joint_speeds(poses: np.ndarray, fps: float, bounds=MAX_JOINT_SPEED,
                       fixed: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(T,72) axis-angle -> the same with every stretch where a joint's local rotation turns
    faster than its bound rebuilt as an eased slerp across a stretch long enough for the bound
    (as limit_turn_rate does for the pelvis's heading), together with the other joints of its
    limb (LIMB_CHAINS), or where the first or last frame cuts it, held at its settled side's
    rotations; also returns how many stretches were rebuilt. Frames in `fixed` (T,24)
    bool (the animator's keys) are never changed: a stretch stops at them. A last guard for pops
    whose causes are upstream (the leg IK's quick swings)."""
    T = len(poses)
    if T < 3:
        return poses, 0
    q = R.axis_angle_to_quat(torch.as_tensor(poses, dtype=torch.float64).reshape(T, -1, 3)).clone()
    step = R.quat_angle(q[1:], q[:-1]).numpy() * fps                               # (T-1, J)
    rebuilt = 0
    for j in np.flatnonzero((step > np.asarray(bounds)[None]).any(axis=0)):
        chain = list(_chain_of(int(j)))
        pinned = np.zeros(T, bool) if fixed is None else fixed[:, chain].any(axis=1)
        done_to = 0
        for a, b in true_runs(step[:, j] > bounds[j], 1):   # steps a..b-1 join frames a..b
            a, b = max(a, done_to), b
            if a >= b:
                continue
            cut = held_at_an_end(step[:, j] > bounds[j] / SMOOTHSTEP_PEAK_OVER_MEAN, a, b, done_to, pinned)
            if cut is not None:           # no far side to ease to: the limb holds its settled side
                frames, settled = cut
                q[frames, chain] = q[settled, chain]
                done_to, rebuilt = max(frames.stop - 1, settled), rebuilt + 1
                continue
            while True:
                angle = float(R.quat_angle(q[a, j], q[b, j]))
                if SMOOTHSTEP_PEAK_OVER_MEAN * angle / (b - a) * fps <= bounds[j]:
                    break
                grow_a = a > done_to and not pinned[a - 1] and not pinned[a]
                grow_b = b < T - 1 and not pinned[b + 1] and not pinned[b]
                if not (grow_a or grow_b):
                    break
                a, b = a - grow_a, b + grow_b
            if pinned[a + 1:b].any():
                continue
            u = torch.linspace(0.0, 1.0, b - a + 1, dtype=torch.float64)[:, None]
            ease = smoothstep(u)
            for k in chain:
                q[a:b + 1, k] = R.quat_slerp(q[a, k].expand(len(u), 4), q[b, k].expand(len(u), 4), ease)
            done_to = b
            rebuilt += 1
    if not rebuilt:
        return poses, 0
    return R.quat_to_axis_angle(q).reshape(T, -1).numpy(), rebuilt
