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

import numpy as np
import torch

from ..body import rotations as R
from ..body.curves import smoothstep
from ..body.motion import Constraints
from ..body.skeleton import NUM_JOINTS

# How long the ease out of a still pose lasts: the body is at half the dance's speed about a
# tenth of a second in, and on the drawn dance again by the end.
SETOFF_SECONDS = 0.5
# Standing still from one frame to the next: a float's rounding, not a move (rad, m).
STILL_TURN, STILL_SHIFT = 1e-6, 1e-7


def set_off_from_stillness(poses: np.ndarray, trans: np.ndarray, fps: float, joint_keys: np.ndarray | None = None,
                           root_keys: np.ndarray | None = None, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(poses (T,72), trans (T,3)) eased out of their pose on frame `start` (the last still one)
    over SETOFF_SECONDS; the frames up to it as they are. Each joint's ease ends by its next key
    after `start` (`joint_keys` (T', 24) bool, the frames keyed; `root_keys` (T',) bool, the
    root's), where the share is 1 with zero slope: the key stays exact and is passed at the drawn
    rate. A joint keyed on the frame after as well (seed motion) has a rate given to set off
    with, and is left as it is."""
    poses, trans = poses.astype(np.float64).copy(), trans.astype(np.float64).copy()
    T = len(poses)
    if not 0 <= start < T - 2:
        return poses, trans
    longest = SETOFF_SECONDS * fps

    def share(keyed: np.ndarray | None) -> np.ndarray | None:
        """(T,) the way from the still pose to the dance's each frame takes (None: all of it)."""
        later = np.flatnonzero(keyed[start + 1:]) + 1 if keyed is not None else np.zeros(0, int)
        span = min(longest, float(later[0])) if len(later) else longest
        if span <= 1.0:
            return None
        w = np.ones(T)
        w[start:] = smoothstep(np.clip(np.arange(T - start) / span, 0.0, 1.0))
        return w

    q = R.axis_angle_to_quat(torch.from_numpy(poses).reshape(T, NUM_JOINTS, 3))
    for j in range(NUM_JOINTS):
        w = share(joint_keys[:, j] if joint_keys is not None else None)
        if w is None:
            continue
        still = q[start, j].expand(T, 4)
        away = R.quat_to_axis_angle(R.quat_mul(q[:, j], R.quat_conjugate(still)))    # from the still pose
        q[:, j] = R.quat_mul(R.axis_angle_to_quat(away * torch.from_numpy(w)[:, None]), still)
    poses = R.quat_to_axis_angle(q).reshape(T, -1).numpy()
    w = share(root_keys)
    if w is not None:
        trans = trans[start] + w[:, None] * (trans - trans[start])
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
                        still_before: bool) -> tuple[np.ndarray, np.ndarray]:
    """The dance (poses (T,72), trans (T,3)) with its keys put on, set off from stillness from its
    first frame (`still_before`) and at the end of each stillness `constraints` key there
    (held_key_ends)."""
    joint_keys, root_keys = (None, None) if constraints is None else (constraints.joint_mask, constraints.trans_mask)
    for start in ([0] if still_before else []) + held_key_ends(poses, trans, joint_keys, root_keys):
        poses, trans = set_off_from_stillness(poses, trans, fps, joint_keys, root_keys, start=start)
    return poses, trans
