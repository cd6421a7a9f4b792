"""The legs as solid limbs (engine.body.limbs) and the metric that counts legs going through
each other (engine.evaluation.metrics.legs_through): hand-made poses with known geometry, the
segment maths against brute force."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from engine.body.limbs import closest_points, legs_overlap
from engine.body.skeleton import REST_PELVIS_HEIGHT, joint_positions
from engine.evaluation.metrics import legs_through

FPS = 30.0


def _left_leg_swung_in(turn: float, frames: int = 30) -> np.ndarray:
    """Joint positions of a dancer standing still, its left hip turned `turn` rad about the
    forward axis towards the right leg."""
    poses = np.zeros((frames, 72))
    poses[:, 3:6] = Rotation.from_euler("z", -turn).as_rotvec()
    return joint_positions(poses, np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (frames, 1)))


def test_closest_points_of_segments_match_brute_force():
    rng = np.random.default_rng(3)
    p0, p1, q0, q1 = (rng.normal(0, 0.3, (200, 3)) for _ in range(4))
    p1[:5] = p0[:5]                                  # a segment that is a point
    q1[5:10] = q0[5:10] + (p1[5:10] - p0[5:10])      # parallel segments
    p, q = closest_points(p0, p1, q0, q1)
    u = np.linspace(0, 1, 401)
    a = p0[:, None] + (p1 - p0)[:, None] * u[None, :, None]
    b = q0[:, None] + (q1 - q0)[:, None] * u[None, :, None]
    brute = np.linalg.norm(a[:, :, None] - b[:, None], axis=-1).min(axis=(1, 2))
    assert np.linalg.norm(p - q, axis=-1) == pytest.approx(brute, abs=2e-3)
    assert np.all(np.linalg.norm(p - q, axis=-1) <= brute + 1e-9)


def test_a_leg_swung_through_the_other_is_counted_and_legs_apart_are_not():
    assert legs_overlap(_left_leg_swung_in(0.0)).max() == 0.0           # standing: ankles 17 cm apart
    assert legs_overlap(_left_leg_swung_in(0.1)).max() == 0.0           # the ankles 9 cm apart, shins not in
    assert legs_overlap(_left_leg_swung_in(0.3)).min() > 0.03           # the left shin through the right
    through = np.concatenate([_left_leg_swung_in(0.0, 20), _left_leg_swung_in(0.3, 10)])
    assert legs_through(through, FPS) == pytest.approx(10 / 30)
    assert legs_through(np.concatenate([through, through])[::2], FPS / 2) == pytest.approx(10 / 30, abs=0.04)


def _knock_kneed(frames: int = 40, inward: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A dancer standing still on bent legs, both thighs turned in until the knees go through
    each other (ankles 21 cm apart), its lowest foot on the floor: (T,72) poses, (T,3) root path."""
    from engine.body.skeleton import JOINT_INDEX
    poses = np.zeros((frames, 72))
    for side, sign in (("left", 1), ("right", -1)):
        hip, knee = 3 * JOINT_INDEX[f"{side}_hip"], 3 * JOINT_INDEX[f"{side}_knee"]
        poses[:, hip:hip + 3] = (Rotation.from_euler("y", -sign * inward) * Rotation.from_euler("x", -0.5)).as_rotvec()
        poses[:, knee:knee + 3] = Rotation.from_euler("x", 1.0).as_rotvec()
    trans = np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (frames, 1))
    trans[:, 1] -= joint_positions(poses[:1], trans[:1])[0, :, 1].min()
    return poses, trans


def test_the_feet_step_turns_knees_that_meet_apart_and_keeps_the_feet():
    """The feet step's leg IK chooses each knee's swivel with the other leg in view: a planted
    dancer whose knees go through each other comes out with the legs apart, its feet and soles
    where they stood, and a leg's keyed frame as keyed."""
    from engine.body.skeleton import JOINT_INDEX
    from engine.finishing.feet import FOOT_JOINTS, LEGS, lock_feet
    poses, trans = _knock_kneed()
    assert (legs_overlap(joint_positions(poses, trans)) > 0.05).all()
    pinned = np.zeros((len(poses), 2), bool)
    pinned[20, 0] = True                                   # the left leg keyed on frame 20
    out, contacts = lock_feet(poses, trans, FPS, pinned_legs=pinned)
    before, after = joint_positions(poses, trans), joint_positions(out, trans)
    assert contacts.all()                                  # both feet planted throughout
    free = np.r_[0:10, 30:40]                              # away from the key's ease
    assert legs_overlap(after)[free].max() == 0.0
    assert np.abs(after[:, FOOT_JOINTS] - before[:, FOOT_JOINTS]).max() < 1e-3
    keyed = [3 * j + k for j in LEGS["left"][:3] for k in range(3)]
    assert np.abs(out[20, keyed] - poses[20, keyed]).max() < 1e-9
    knees = [JOINT_INDEX["left_knee"], JOINT_INDEX["right_knee"]]
    assert np.linalg.norm(np.diff(after[:, knees], axis=0), axis=-1).max() < 0.05   # eased, no pop


def test_a_leg_the_feet_step_leaves_is_not_turned():
    """A leg the feet step does not move (given: a locked or regenerated-around leg) keeps its
    pose; the free leg turns alone, as far as its swivel allows."""
    import torch
    from engine.body import rotations as R
    from engine.finishing.feet import LEGS, _turn_knees_apart
    poses, trans = _knock_kneed(10, inward=0.3)
    local = R.axis_angle_to_matrix(torch.from_numpy(poses).reshape(len(poses), -1, 3))
    weight = np.zeros((len(poses), 2))
    weight[:, 0] = 1.0
    _turn_knees_apart(local, trans, weight, FPS)
    out = R.matrix_to_axis_angle(local).reshape(len(poses), -1).numpy()
    right = [3 * j + k for j in LEGS["right"] for k in range(3)]
    assert np.abs(out[:, right] - poses[:, right]).max() < 1e-9
    assert legs_overlap(joint_positions(out, trans)).max() < 0.5 * legs_overlap(joint_positions(poses, trans)).min()
