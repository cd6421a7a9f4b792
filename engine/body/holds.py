"""A hold: the same pose keyed twice. One rule for the engine's constraints
(engine.finishing.editing) and the add-on's keys (blender_addon.rig_io), numpy only."""
from __future__ import annotations

import numpy as np

from ..defaults import HOLD_PLACE_TOLERANCE, HOLD_TOLERANCE


def alike(q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """(...,4) unit quaternions -> (...) bool: the same rotation within HOLD_TOLERANCE (q and -q
    are one rotation). The angle is taken as 4 atan2(|q0 - q1|, |q0 + q1|), which stays exact
    where acos of the dot product rounds tiny angles to zero."""
    q1 = q1 * np.where(np.sum(q0 * q1, axis=-1) < 0, -1.0, 1.0)[..., None]
    angle = 4.0 * np.arctan2(np.linalg.norm(q0 - q1, axis=-1), np.linalg.norm(q0 + q1, axis=-1))
    return angle < HOLD_TOLERANCE


def same_pose_keyed(keyed: np.ndarray, ends: np.ndarray, root_keyed: np.ndarray | None = None,
                    root_ends: np.ndarray | None = None) -> bool:
    """Whether two keys are the same pose keyed twice. keyed (n,J) bool: the joints keyed on each
    frame from the first key to the second, both included; ends (2,J,4): the quaternions on the
    two keys. Every joint keyed on both and on none between must be alike: keyed whole
    (Blender's Whole Character keying set) on two different poses, a joint alike on both is no
    hold (QA25: the ankles froze for five seconds and the feet skated), and a baked clip's
    channels keyed on every frame do not count, so its still channels at the clip's ends hold.
    root_keyed (n,) bool and root_ends (2,3) metres: the root's place, where it is keyed; the
    same pose keyed at two places is a move (QA27: held, the statue slid 1.09 m)."""
    if root_keyed is not None and root_keyed[0] and root_keyed[-1] and not root_keyed[1:-1].any() \
            and np.abs(root_ends[0] - root_ends[1]).max() > HOLD_PLACE_TOLERANCE:
        return False
    both = np.flatnonzero(keyed[0] & keyed[-1] & ~keyed[1:-1].any(axis=0))
    return bool(alike(ends[0, both], ends[1, both]).all())
