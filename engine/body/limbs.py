"""The legs as solid limbs: where one leg passes through the other.

Each leg's thigh, shank and foot are capsules around the segments between its joints, as thick
as the SMPL neutral body's limbs through their middle (LIMB_RADII). Two limbs of different legs
closer than their radii less CONTACT_SLACK (soft tissue gives) are one inside the other: an
animator sees a shin go through a shin. The held-out dancers' legs do so on 0.16% of frames,
random stretches of the training dancers' on 0.96% (weights/TRAINING.md, "Legs through each other").
"""
from __future__ import annotations

import numpy as np

from .skeleton import JOINT_INDEX

LIMB_RADII = {"thigh": 0.065, "shank": 0.045, "foot": 0.035}     # m
CONTACT_SLACK = 0.03                                              # m two limbs may press into each other
LEG_LIMBS = {side: ((JOINT_INDEX[f"{side}_hip"], JOINT_INDEX[f"{side}_knee"], LIMB_RADII["thigh"]),
                    (JOINT_INDEX[f"{side}_knee"], JOINT_INDEX[f"{side}_ankle"], LIMB_RADII["shank"]),
                    (JOINT_INDEX[f"{side}_ankle"], JOINT_INDEX[f"{side}_foot"], LIMB_RADII["foot"]))
             for side in ("left", "right")}


def closest_points(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The closest points of the segments p0-p1 and q0-q1, per row ((N,3) each)."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a, e = (d1 * d1).sum(-1), (d2 * d2).sum(-1)
    b, c, f = (d1 * d2).sum(-1), (d1 * r).sum(-1), (d2 * r).sum(-1)
    denom = a * e - b * b
    s = np.where(denom > 1e-12, np.clip((b * f - c * e) / np.maximum(denom, 1e-12), 0.0, 1.0), 0.0)
    t = (b * s + f) / np.maximum(e, 1e-12)
    t_clipped = np.clip(t, 0.0, 1.0)
    s = np.where(t != t_clipped, np.clip((b * t_clipped - c) / np.maximum(a, 1e-12), 0.0, 1.0), s)
    return p0 + s[:, None] * d1, q0 + t_clipped[:, None] * d2


def deepest_meeting(left: list[tuple[np.ndarray, np.ndarray, float]],
                    right: list[tuple[np.ndarray, np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where two legs' limbs, given as (start (N,3), end (N,3), radius) capsules, meet deepest, per
    row: (depth (N,) beyond CONTACT_SLACK, negative where apart; the point on the left limb and the
    point on the right one, (N,3) each, whose distance that is)."""
    depth = np.full(len(left[0][0]), -np.inf)
    p_best, q_best = np.zeros((len(depth), 3)), np.zeros((len(depth), 3))
    for a0, a1, ra in left:
        for b0, b1, rb in right:
            p, q = closest_points(a0, a1, b0, b1)
            d = ra + rb - CONTACT_SLACK - np.linalg.norm(p - q, axis=-1)
            deeper = d > depth
            depth = np.where(deeper, d, depth)
            p_best[deeper], q_best[deeper] = p[deeper], q[deeper]
    return depth, p_best, q_best


def leg_capsules(positions: np.ndarray, side: str) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The thigh, shank and foot of one leg (`side` "left" or "right") as capsules, from joint
    positions (T,24,3)."""
    return [(positions[:, a], positions[:, b], r) for a, b, r in LEG_LIMBS[side]]


def legs_overlap(positions: np.ndarray) -> np.ndarray:
    """(T,) how far (m) the legs' deepest-meeting limbs reach into each other beyond
    CONTACT_SLACK, from joint positions (T,24,3); 0 where the legs are apart."""
    depth, _, _ = deepest_meeting(leg_capsules(positions, "left"), leg_capsules(positions, "right"))
    return np.maximum(depth, 0.0)
