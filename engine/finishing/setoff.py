"""Setting off from a start pose held before the dance.

An animator's pose keyed before the song (the character stands in it until the music starts) is
the dance's first frame, and the dancer was still there. The network draws its first frames
moving, as from the middle of a dance; met by the key's correction alone, the body left the
held pose at full speed in one frame (fastest joint 1.3 m/s on average, up to 3.3). Here each
joint that the first frame keys, and the root, get one more correction: a rotation (for the
root, a shift) that cancels the motion's own rate on the first frame and fades out, so the body
accelerates from stillness over the first fraction of a second and is back on the drawn dance
by SETOFF_SECONDS (or by that joint's next key, which it leaves exact).
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


def set_off_from_stillness(poses: np.ndarray, trans: np.ndarray, keyed: np.ndarray, fps: float,
                           root_keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(poses (T,72), trans (T,3)) with the rate on frame 0 cancelled and faded in: for every
    joint keyed on frame 0 (`keyed` (T', 24) the joints keyed on each frame, holds included) and
    for the root. A joint's (and the root's, `root_keys` (T',) bool) correction ends by its next
    key, where it is zero with zero slope (the key stays exact, passed through at the drawn
    rate); one keyed on frame 1 as well (seed motion) already has a rate to set off with."""
    poses, trans = poses.astype(np.float64).copy(), trans.astype(np.float64).copy()
    T = len(poses)
    if T < 3:
        return poses, trans
    span_max = SETOFF_SECONDS * fps

    def span(mask: np.ndarray) -> float:
        later = np.flatnonzero(mask[1:]) + 1 if mask is not None else np.zeros(0, int)
        return min(span_max, float(later[0])) if len(later) else span_max

    q = R.axis_angle_to_quat(torch.from_numpy(poses).reshape(T, NUM_JOINTS, 3))
    for j in np.flatnonzero(keyed[0]):
        s = span(keyed[:, j])
        if s <= 1.0:
            continue
        rate = R.quat_to_axis_angle(R.quat_mul(q[1, j], R.quat_conjugate(q[0, j])))     # per frame, parent's axes
        cancel = R.axis_angle_to_quat(-rate[None] * torch.from_numpy(setoff_curve(T, s))[:, None])
        q[:, j] = R.quat_mul(cancel, q[:, j])
    poses = R.quat_to_axis_angle(q).reshape(T, -1).numpy()
    s = span(root_keys) if root_keys is not None else span_max
    if s > 1.0:
        trans -= (trans[1] - trans[0])[None] * setoff_curve(T, s)[:, None]
    return poses, trans
