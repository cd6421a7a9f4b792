"""Grounding (engine.finishing.feet.ground): the root's height puts a still foot on the floor,
carries the body through a jump, and never keeps it in the air longer than a jump lasts.
Hand-made motion with known answers."""
from __future__ import annotations

import numpy as np
import torch

from engine.body.skeleton import JOINT_INDEX, REST_PELVIS_HEIGHT, joint_positions
from engine.finishing.feet import FOOT_JOINTS, MAX_AIRTIME_SECONDS, ground

FPS = 30.0


def _standing_then(kind: str, first: int, last: int, frames: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """A dancer standing on the floor who, on frames [first, last), either folds both legs up
    under a root that stays where it is ("tuck"), or leaps, root and feet rising together
    ("leap"); either way its feet travel sideways there, so no foot is still."""
    poses = np.zeros((frames, 72))
    trans = np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (frames, 1))
    trans[:, 1] -= joint_positions(poses[:1], trans[:1])[0, FOOT_JOINTS, 1].min()
    u = np.sin(np.pi * np.linspace(0, 1, last - first))            # in and out of it
    if kind == "tuck":
        for side in ("left", "right"):
            hip, knee = 3 * JOINT_INDEX[f"{side}_hip"], 3 * JOINT_INDEX[f"{side}_knee"]
            poses[first:last, hip:hip + 3] = np.outer(-1.3 * u, [1.0, 0.0, 0.0])
            poses[first:last, knee:knee + 3] = np.outer(2.2 * u, [1.0, 0.0, 0.0])
    else:
        trans[first:last, 1] += 0.3 * u
    trans[first:last, 0] += np.linspace(0.0, 1.0, last - first)   # 1 m sideways
    trans[last:, 0] += 1.0
    return poses, trans


def test_legs_folded_up_for_longer_than_a_jump_come_down_to_the_floor():
    first, last = 30, 100                                           # 2.3 s
    assert (last - first) / FPS > 2 * MAX_AIRTIME_SECONDS
    poses, trans = _standing_then("tuck", first, last)
    lowest = joint_positions(poses, trans)[:, FOOT_JOINTS, 1].min(axis=1)
    assert lowest[50:80].min() > 0.2                                # drawn: feet 20-38 cm up
    grounded = joint_positions(poses, ground(poses, trans, FPS))[:, FOOT_JOINTS, 1].min(axis=1)
    assert np.abs(grounded[45:85]).max() < 0.03
    assert np.abs(grounded[:first]).max() < 1e-6 and np.abs(grounded[last + 10:]).max() < 1e-6


def test_a_leap_keeps_its_flight():
    first, last = 60, 72                                            # 0.4 s in the air
    poses, trans = _standing_then("leap", first, last)
    grounded = joint_positions(poses, ground(poses, trans, FPS))[:, FOOT_JOINTS, 1].min(axis=1)
    assert grounded[66] > 0.2
    assert np.abs(grounded[:first - 5]).max() < 1e-6


def test_the_feet_steps_leg_ik_leaves_no_ankle_under_the_floor():
    # QA: with full-pose keys from another dance, the feet step's one IK pass fell short of a
    # stance's spot on the floor (the knee bent about its hinge) and left the ankle 5 cm under it.
    # Nearly straight legs reaching for spots on the floor: frames that one pass leaves under it
    # take more passes, eased in by depth; the others are left as one pass puts them.
    from engine.body import rotations as R
    from engine.finishing import feet as F
    rng = np.random.default_rng(0)
    T = 2000
    leg = F.LEGS["right"]
    hip, knee, ankle, _ = leg
    poses = np.zeros((T, 24, 3))
    poses[:, hip] = rng.normal(0, 0.5, (T, 3))
    poses[:, knee, 0] = rng.uniform(0.0, 0.3, T)
    trans = np.zeros((T, 3))
    trans[:, 1] = 0.85
    local, pos = F._positions(poses.reshape(T, -1), trans)
    glob = F._global_rotations(local)
    target = pos[:, ankle].clone()
    target[:, 1] = 0.0
    target[:, [0, 2]] = pos[:, hip][:, [0, 2]] + torch.from_numpy(rng.normal(0, 0.15, (T, 2)))
    ankles = {}
    for above_floor in (False, True):
        out = local.clone()
        F._two_bone_ik(out, glob, pos, leg, target, torch.arange(T), passes=1, above_floor=above_floor)
        turned = poses.copy()
        turned[:, [hip, knee, ankle]] = R.matrix_to_axis_angle(out[:, [hip, knee, ankle]]).numpy()
        ankles[above_floor] = F._positions(turned.reshape(T, -1), trans)[1][:, ankle].numpy()
    assert (ankles[False][:, 1] < -0.005).sum() > 50                         # one pass: under the floor
    assert ankles[True][:, 1].min() > -0.005
    above = ankles[False][:, 1] >= 0
    assert np.allclose(ankles[True][above], ankles[False][above], atol=1e-9)
