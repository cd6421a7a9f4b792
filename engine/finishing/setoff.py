"""Setting off from stillness: from a start pose held before the dance, and out of a wait.

An animator's pose keyed before the song (the character stands in it until the music starts) is
the dance's first frame, and the dancer was still there. The network draws its first frames
moving, as from the middle of a dance; met by the key's correction alone, the body left the
held pose at full speed in one frame (fastest joint 1.3 m/s on average, up to 3.3). At the end
of a hold the animator keyed (the same pose keyed twice, or a start pose kept through a silent
intro) the dance went on as abruptly (QA: 0.9 m/s in the frame after a silent intro).

Here every joint and the root ease out of the still pose into the drawn dance: each frame takes
a share w(t) of the way from the still pose to the dance's (a slerp; for the root, a lerp), w
rising as a smoothstep from 0 to 1 over SETOFF_SECONDS, or by that joint's next key (which it
leaves exact, passed at the drawn rate). The body accelerates from stillness whatever the drawn
motion does next, lags the dance a little and catches up by the end (about 1.25x its speed for a
steady motion, 1.5x measured where the dance speeds up meanwhile). finish_motion applies it
after the keys are put on, at the model's rate before the feet step and at the output rate
after the beat warp. A joint turned more than half a turn from the still pose within
SETOFF_SECONDS would be eased the short way round (the training dancers' half turns take 1.0-1.8 s).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..body import rotations as R
from ..body.curves import smoothstep
from ..body.motion import Constraints
from ..body.skeleton import NUM_JOINTS
from .turns import MAX_JOINT_SPEED, SPEED_HEADROOM

# How long the ease out of a still pose lasts: the body is at half the dance's speed about a
# tenth of a second in, and on the drawn dance again by the end.
SETOFF_SECONDS = 0.5
# How long a motion the dance arrives with carries on by itself: its speed fades as
# exp(-t / CARRY_SECONDS), while the ease blends into the drawn dance by SETOFF_SECONDS, so the
# carried drift stays under about CARRY_SECONDS times the arriving speed, and half a frame
# (carried_seconds; a hand at 1 m/s: 14 cm at 30 fps).
CARRY_SECONDS = SETOFF_SECONDS / 4
# An arrival faster than a dancer moves is a cut in the animation (a pose or a place changed in
# one frame), not a motion to carry on: that joint, or the root, arrives still. Joints: the speed
# guard's bounds (turns.MAX_JOINT_SPEED); the root: SPEED_HEADROOM x the training dancers' fastest
# pelvis travel (99.99th percentile 2.3 m/s over tang2018 and JustLMD, 2.4 at most).
FASTEST_ARRIVING_ROOT = SPEED_HEADROOM * 2.3
# An animation's last step into the dance counts as motion when it is at most CUT_RATIO times
# the step before it, plus a floor (rad/s for a joint's turn, m/s for the root): a larger one is
# the animation jumping (a stepped key, a pose changed within a frame: QA, a 30 degree stepped
# cut at 24 fps carried on flung the hand 0.69 m past its key), which is left from standing.
# An ease out of a key, and a steady motion, pass; a linear motion starting from a hold one
# frame before the song at more than the floor counts as a jump.
CUT_RATIO = 2.0
CUT_FLOOR_TURN, CUT_FLOOR_SHIFT = 2.0, 0.5
# Standing still from one frame to the next: a float's rounding, not a move (rad, m).
STILL_TURN, STILL_SHIFT = 1e-6, 1e-7


@dataclass(frozen=True)
class Arrival:
    """How the animation before the dance arrives at its first frame: each joint's turn
    (`turn_rates` (24, 3), rad/s, axis-angle about the parent's axes: the pose turns by
    exp(rate * dt) from one frame to the next) and the root's velocity (`root_velocity` (3,), m/s).
    Zero: it stood still there."""
    turn_rates: np.ndarray
    root_velocity: np.ndarray

    @classmethod
    def still(cls) -> "Arrival":
        return cls(np.zeros((NUM_JOINTS, 3)), np.zeros(3))

    @classmethod
    def between(cls, before: tuple[np.ndarray, np.ndarray], first: tuple[np.ndarray, np.ndarray], fps: float,
                joints: np.ndarray | None = None, root: bool = True) -> "Arrival":
        """From the pose and root place one frame before (`before` = (poses (72,), trans (3,)))
        to the dance's first frame (`first`, the same) at `fps`. Only `joints` ((24,) bool; None:
        all) and the root if `root` arrive moving: the others stand still (the dance's own first
        pose is no place the animation before it reached), and so does whatever arrives faster
        than a dancer moves (a cut: FASTEST_ARRIVING_ROOT, turns.MAX_JOINT_SPEED)."""
        q = R.axis_angle_to_quat(torch.from_numpy(np.stack([np.asarray(before[0], np.float64),
                                                            np.asarray(first[0], np.float64)])).reshape(2, NUM_JOINTS, 3))
        rates = R.quat_to_axis_angle(R.quat_mul(q[1], R.quat_conjugate(q[0]))).numpy() * fps
        rates[np.linalg.norm(rates, axis=1) > np.asarray(MAX_JOINT_SPEED)] = 0.0         # cuts
        if joints is not None:
            rates[~np.asarray(joints, bool)] = 0.0
        velocity = (np.asarray(first[1], np.float64) - np.asarray(before[1], np.float64)) * fps
        if not root or np.linalg.norm(velocity) > FASTEST_ARRIVING_ROOT:
            velocity = np.zeros(3)
        return cls(rates, velocity)

    @property
    def is_still(self) -> bool:
        """Standing still but for a float's rounding: under STILL_TURN (STILL_SHIFT) a frame at 30 fps."""
        return bool(np.abs(self.turn_rates).max() < 30 * STILL_TURN and np.abs(self.root_velocity).max() < 30 * STILL_SHIFT)


def pose_beside_without_cuts(poses: np.ndarray, trans: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """The pose and root place on the frame before the dance's first, for Arrival.between, from
    an animation's last three frames (`poses` (3, 72), `trans` (3, 3): two frames before the
    first, one before, the first itself) at `fps`: each joint, and the root, whose last step jumps
    (over CUT_RATIO times the step before it plus CUT_FLOOR_TURN or CUT_FLOOR_SHIFT) takes the
    first frame's value instead, so that it arrives still. In reversed time (the two frames after
    the dance's last, then the last) the same for the frame after it."""
    poses, trans = np.asarray(poses, np.float64), np.asarray(trans, np.float64)
    q = R.axis_angle_to_quat(torch.from_numpy(poses).reshape(3, NUM_JOINTS, 3))
    turns = R.quat_angle(q[1:], q[:-1]).numpy() * fps                    # (2, 24) rad/s: the two steps
    before, place = poses[1].copy(), trans[1].copy()
    for j in np.flatnonzero(turns[1] > CUT_RATIO * turns[0] + CUT_FLOOR_TURN):
        before[3 * j:3 * j + 3] = poses[2, 3 * j:3 * j + 3]
    shifts = np.linalg.norm(np.diff(trans, axis=0), axis=1) * fps
    if shifts[1] > CUT_RATIO * shifts[0] + CUT_FLOOR_SHIFT:
        place = trans[2].copy()
    return before, place


def carried_seconds(T: int, start: int, fps: float) -> np.ndarray:
    """(T,) how far (in seconds at the arriving speed) a motion carries on from frame `start`:
    its frame steps fade geometrically, the first one whole (the step the animation before it
    made) and each next exp(-1 / (fps * CARRY_SECONDS)) of the one before, in all about
    CARRY_SECONDS; 0 up to `start`."""
    k = np.clip(np.arange(T) - start, 0, None).astype(np.float64)
    fade = np.exp(-1.0 / (fps * CARRY_SECONDS))
    return (1.0 - fade ** k) / (1.0 - fade) / fps


def set_off_from_stillness(poses: np.ndarray, trans: np.ndarray, fps: float, joint_keys: np.ndarray | None = None,
                           root_keys: np.ndarray | None = None, start: int = 0,
                           arrival: Arrival | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(poses (T,72), trans (T,3)) eased out of their pose on frame `start` (the last still one)
    over SETOFF_SECONDS; the frames up to it as they are. Each joint's ease ends by its next key
    after `start` (`joint_keys` (T', 24) bool, the frames keyed; `root_keys` (T',) bool, the
    root's), where the share is 1 with zero slope: the key stays exact and is passed at the drawn
    rate. A joint keyed on the frame after as well (seed motion) has a rate given to set off
    with, and is left as it is. With an `arrival` the pose eased out of moves on from frame
    `start` at the arriving speed, fading (carried_seconds): the dance leaves that frame as the
    animation before it arrived."""
    poses, trans = poses.astype(np.float64).copy(), trans.astype(np.float64).copy()
    T = len(poses)
    if not 0 <= start < T - 2:
        return poses, trans
    longest = SETOFF_SECONDS * fps
    carried = None if arrival is None or arrival.is_still else torch.from_numpy(carried_seconds(T, start, fps))
    q = R.axis_angle_to_quat(torch.from_numpy(poses).reshape(T, NUM_JOINTS, 3))

    def next_key(keyed: np.ndarray | None) -> int | None:
        """The frame of the next key after `start` (None: none)."""
        later = np.flatnonzero(keyed[start + 1:]) + start + 1 if keyed is not None else np.zeros(0, int)
        return int(later[0]) if len(later) else None

    def share(keyed: np.ndarray | None) -> np.ndarray | None:
        """(T,) the way from the still pose to the dance's each frame takes (None: all of it)."""
        later = next_key(keyed)
        span = min(longest, float(later - start)) if later is not None else longest
        if span <= 1.0:
            return None
        w = np.ones(T)
        w[start:] = smoothstep(np.clip(np.arange(T - start) / span, 0.0, 1.0))
        return w

    def carries(joint: int | None) -> bool:
        """Whether this joint (None: the root) moves on as it arrived: it arrives moving and the
        animator does not hold it (the same keyed again next: a hold stays a hold)."""
        if carried is None:
            return False
        keyed = root_keys if joint is None else (joint_keys[:, joint] if joint_keys is not None else None)
        later = next_key(keyed)
        if joint is None:
            return bool(np.any(arrival.root_velocity)) and not (
                later is not None and later < T and np.linalg.norm(trans[later] - trans[start]) < STILL_SHIFT)
        return bool(np.any(arrival.turn_rates[joint])) and not (
            later is not None and later < T and float(R.quat_angle(q[later, joint], q[start, joint])) < STILL_TURN)

    for j in range(NUM_JOINTS):
        w = share(joint_keys[:, j] if joint_keys is not None else None)
        if w is None:
            continue
        still = q[start, j].expand(T, 4)
        if carries(j):                                  # the pose eased out of moves on as it arrived
            still = R.quat_mul(R.axis_angle_to_quat(carried[:, None] * torch.from_numpy(arrival.turn_rates[j])), still)
        away = R.quat_to_axis_angle(R.quat_mul(q[:, j], R.quat_conjugate(still)))    # from the still pose
        q[:, j] = R.quat_mul(R.axis_angle_to_quat(away * torch.from_numpy(w)[:, None]), still)
    poses = R.quat_to_axis_angle(q).reshape(T, -1).numpy()
    w = share(root_keys)
    if w is not None:
        still = trans[start] + (carried.numpy()[:, None] * arrival.root_velocity if carries(None) else 0.0)
        trans = still + w[:, None] * (trans - still)
    return poses, trans


def held_key_ends(poses: np.ndarray, trans: np.ndarray, joint_keys: np.ndarray | None,
                  root_keys: np.ndarray | None) -> list[int]:
    """The keyed frames that end a stillness the dance goes on from: keyed (`joint_keys` (T', 24),
    `root_keys` (T',)), the frame after them not, and the whole body and the root unmoved from
    the frame before (a pose keyed twice and held, a start pose held through a silent intro)."""
    if joint_keys is None:
        return []
    T, n = len(poses), len(joint_keys)
    keyed = np.zeros(T, bool)
    keyed[:n] = joint_keys.any(axis=1) | (root_keys if root_keys is not None else False)
    ends = np.flatnonzero(keyed[1:-2] & ~keyed[2:-1]) + 1
    if not len(ends):
        return []
    q = R.axis_angle_to_quat(torch.from_numpy(np.asarray(poses[np.r_[ends - 1, ends]], np.float64))
                             .reshape(2 * len(ends), NUM_JOINTS, 3))
    turned = R.quat_angle(q[len(ends):], q[:len(ends)]).amax(dim=1).numpy()
    moved = np.linalg.norm(trans[ends] - trans[ends - 1], axis=1)
    return ends[(turned < STILL_TURN) & (moved < STILL_SHIFT)].tolist()


def set_off_where_still(poses: np.ndarray, trans: np.ndarray, fps: float, constraints: Constraints | None,
                        arrival: Arrival | None, departure: Arrival | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The dance (poses (T,72), trans (T,3)) with its keys put on, set off from its first frame as
    the animation before it arrives there (`arrival`; None: no animation before it, the dance
    starts as drawn), from stillness at the end of each stillness `constraints` key there
    (held_key_ends), and into its last frame as the animation after it leaves (`departure`, an
    arrival in reversed time: Arrival.between the pose after and the last frame's; None: the
    dance ends as drawn)."""
    joint_keys, root_keys = (None, None) if constraints is None else (constraints.joint_mask, constraints.trans_mask)
    ends = held_key_ends(poses, trans, joint_keys, root_keys)
    if arrival is not None:
        poses, trans = set_off_from_stillness(poses, trans, fps, joint_keys, root_keys, start=0, arrival=arrival)
    for start in ends:
        poses, trans = set_off_from_stillness(poses, trans, fps, joint_keys, root_keys, start=start)
    if departure is not None and not departure.is_still:
        T = len(poses)

        def backwards(keys):            # the masks over all T frames, in reversed time
            if keys is None:
                return None
            whole = np.zeros((T,) + keys.shape[1:], bool)
            whole[:min(T, len(keys))] = keys[:T]
            return whole[::-1].copy()
        poses, trans = set_off_from_stillness(poses[::-1], trans[::-1], fps, backwards(joint_keys), backwards(root_keys),
                                              start=0, arrival=departure)
        poses, trans = poses[::-1].copy(), trans[::-1].copy()
    return poses, trans
