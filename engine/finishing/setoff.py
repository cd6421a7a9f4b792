"""Setting off from a start pose held before the dance.

An animator's pose keyed before the song (the character stands in it until the music starts) is
the dance's first frame, and the dancer was still there. The network draws its first frames
moving, as from the middle of a dance; met by the key's correction alone, the body left the
held pose at full speed in one frame (fastest joint 1.3 m/s on average, up to 3.3). Here every
joint and the root get one more correction: a rotation (for the root, a shift) that cancels the
motion's own rate on the first frame and fades out, so the body accelerates from stillness over
the first fraction of a second and is back on the drawn dance by SETOFF_SECONDS (or by that
joint's next key, which it leaves exact). finish_motion applies it after the keys are put on,
at the model's rate before the feet step and at the output rate after the beat warp.
"""
from __future__ import annotations

import numpy as np
import torch

from ..body import rotations as R
from ..body.skeleton import NUM_JOINTS

# How long the cancelling correction lasts. Its shape, t (1 - t/F)^2, gives the body full speed
# again at F/3 (0.17 s: a dancer's first step from standing), then catches up what it lagged
# by moving up to about 1.4x as fast until F.
SETOFF_SECONDS = 0.5


def setoff_curve(frames: int, span: float) -> np.ndarray:
    """(frames,) h(t) = t (1 - t/span)^2 / (1 - 1/span)^2 on t < span (span > 1), else 0: 0 at
    t = 0 and 1 at t = 1, back to 0 with slope 0 at `span`. Times a rate per frame, the offset
    that cancels that rate over the first frame step (scaled so that step is still exactly)."""
    t = np.arange(frames, dtype=np.float64)
    return np.where(t < span, t * (1.0 - t / span) ** 2 / (1.0 - 1.0 / span) ** 2, 0.0)


def set_off_from_stillness(poses: np.ndarray, trans: np.ndarray, fps: float, joint_keys: np.ndarray | None = None,
                           root_keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(poses (T,72), trans (T,3)) with every joint's rate and the root's on frame 0 cancelled and
    faded in. Each correction ends by that joint's next key after frame 0 (`joint_keys` (T', 24)
    bool, the frames keyed; `root_keys` (T',) bool, the root's), where it is zero with zero slope:
    the key stays exact and is passed at the drawn rate. A joint keyed on frame 1 as well (seed
    motion) has a rate given to set off with, and is left as it is; so is a hold, which has none."""
    poses, trans = poses.astype(np.float64).copy(), trans.astype(np.float64).copy()
    T = len(poses)
    if T < 3:
        return poses, trans
    longest = SETOFF_SECONDS * fps

    def span(keyed: np.ndarray | None) -> float:
        later = np.flatnonzero(keyed[1:]) + 1 if keyed is not None else np.zeros(0, int)
        return min(longest, float(later[0])) if len(later) else longest

    q = R.axis_angle_to_quat(torch.from_numpy(poses).reshape(T, NUM_JOINTS, 3))
    for j in range(NUM_JOINTS):
        s = span(joint_keys[:, j] if joint_keys is not None else None)
        if s <= 1.0:
            continue
        rate = R.quat_to_axis_angle(R.quat_mul(q[1, j], R.quat_conjugate(q[0, j])))     # per frame, parent's axes
        cancel = R.axis_angle_to_quat(-rate[None] * torch.from_numpy(setoff_curve(T, s))[:, None])
        q[:, j] = R.quat_mul(cancel, q[:, j])
    poses = R.quat_to_axis_angle(q).reshape(T, -1).numpy()
    s = span(root_keys)
    if s > 1.0:
        trans -= (trans[1] - trans[0])[None] * setoff_curve(T, s)[:, None]
    return poses, trans
