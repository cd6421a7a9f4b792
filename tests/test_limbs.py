"""The legs as solid limbs (engine.evaluation.limbs) and the metric that counts legs going through
each other (engine.evaluation.metrics.legs_through): hand-made poses with known geometry, the
segment maths against brute force."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from engine.evaluation.limbs import closest_points, legs_overlap
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
