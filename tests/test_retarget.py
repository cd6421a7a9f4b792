"""Retargeting maths and bone mapping (engine/outputs/retarget.py, engine/outputs/bone_mapping.py), numpy only.

The rigs are built here: an SMPL-proportioned Mixamo-named T-pose with random bone rolls, an
A-pose with other proportions, a 5-bone spine with a 2-bone neck (Unreal names), and an FBX-like
armature (Y-up centimetres under a rotated, scaled object). Their poses are checked with a
forward kinematics written here, Blender's formula, independently of the module's own.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp
import pytest
import torch

from engine.body import rotations as R
from engine.outputs.bone_mapping import ROOT_KEY, bone_key, map_by_hierarchy
from engine.outputs.retarget import (Retargeter, RetargetError, Rig, Y_TO_Z, auto_map, check_bone_map, detect_preset,
                             list_presets, load_bone_map, load_preset, save_bone_map)
from engine.body.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, REST_PELVIS_HEIGHT, REST_POSITIONS

LIMBS = ("left_hip", "right_hip", "left_knee", "right_knee", "left_shoulder", "right_shoulder",
         "left_elbow", "right_elbow")
MIXAMO = load_preset("mixamo")
UE5 = load_preset("unreal_ue5")


# ----------------------------------------------------------------------------- rig building

def rest_matrix(head, tail, roll) -> np.ndarray:
    y = np.asarray(tail, float) - head
    y /= np.linalg.norm(y)
    x = np.cross(y, [0.0, 0.0, 1.0] if abs(y[2]) < 0.9 else [1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    z = np.cross(x, y)
    c, s = np.cos(roll), np.sin(roll)
    x, z = c * x - s * z, s * x + c * z
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, head
    return m


def make_rig(bones, object_matrix=None) -> Rig:
    """bones: (name, parent name or None, head, tail, roll, deform) in armature space."""
    names = [b[0] for b in bones]
    return Rig(names=names, parents=[names.index(b[1]) if b[1] else -1 for b in bones],
               rest=np.stack([rest_matrix(np.asarray(b[2], float), b[3], b[4]) for b in bones]),
               lengths=np.array([np.linalg.norm(np.subtract(b[3], b[2])) for b in bones]),
               deform=[b[5] for b in bones], object_matrix=np.eye(4) if object_matrix is None else object_matrix)


def smpl_heads(size=1.0) -> np.ndarray:
    """SMPL's rest joints in Blender axes (Z up, facing -Y, toes on z = 0), times size."""
    return (REST_POSITIONS + [0.0, REST_PELVIS_HEIGHT, 0.0]) @ Y_TO_Z.T * size


def humanoid(names: dict, heads: np.ndarray, rng, extra=()) -> list:
    """Bones for the SMPL joints named in `names` (joint -> bone), heads (24,3), random rolls;
    each bone points at its SMPL child (a leaf along its own offset)."""
    bones = []
    for j, joint in enumerate(JOINT_NAMES):
        if joint not in names:
            continue
        kids = [k for k, p in enumerate(PARENTS) if p == j and JOINT_NAMES[k] in names]
        k = JOINT_INDEX.get({"pelvis": "spine1", "spine3": "neck"}.get(joint, ""), kids[0] if kids else None)
        tail = heads[k] if k is not None else heads[j] + 0.5 * (heads[j] - heads[PARENTS[j]])
        a = PARENTS[j]
        while a >= 0 and JOINT_NAMES[a] not in names:
            a = PARENTS[a]
        bones.append((names[joint], names[JOINT_NAMES[a]] if a >= 0 else None, heads[j], tail,
                      rng.uniform(-np.pi, np.pi), True))
    return bones + list(extra)


def mixamo_rig(prefix="mixamorig:", seed=0) -> Rig:
    rng = np.random.default_rng(seed)
    heads = smpl_heads(1.3)
    names = {j: prefix + n for j, n in MIXAMO.items()}
    extra = [(prefix + "HeadTop_End", prefix + "Head", heads[15] + [0, 0, 0.2], heads[15] + [0, 0, 0.25], 0.0, True),
             (prefix + "LeftHandMiddle1", prefix + "LeftHand", heads[22], heads[22] + [0.05, 0, 0], 0.3, True),
             (prefix + "RightHandMiddle1", prefix + "RightHand", heads[23], heads[23] - [0.05, 0, 0], 0.3, True)]
    return make_rig(humanoid(names, heads, rng, extra))


def a_pose_heads() -> np.ndarray:
    """Other proportions (long legs, short arms) and the arms 45 degrees down: an A-pose."""
    heads = smpl_heads(1.0)
    out = heads.copy()
    for j in range(1, NUM_JOINTS):
        off = heads[j] - heads[PARENTS[j]]
        if "knee" in JOINT_NAMES[j] or "ankle" in JOINT_NAMES[j]:
            off = off * 1.15
        if any(s in JOINT_NAMES[j] for s in ("elbow", "wrist", "hand")):
            off = off * 0.9
        out[j] = out[PARENTS[j]] + off
    for side, sign in (("left", 1), ("right", -1)):
        s = JOINT_INDEX[f"{side}_shoulder"]
        turn = R.axis_angle_to_matrix(torch.tensor([0.0, sign * np.pi / 4, 0.0], dtype=torch.float64)).numpy()
        for j in (JOINT_INDEX[f"{side}_elbow"], JOINT_INDEX[f"{side}_wrist"], JOINT_INDEX[f"{side}_hand"]):
            out[j] = out[s] + turn @ (out[j] - out[s])
    return out - [0.0, 0.0, out[:, 2].min()]


def ue5_rig(seed=2) -> Rig:
    """Unreal names, SMPL proportions, 5 spine bones and a 2-bone neck (spine_02, spine_04 and
    neck_02 halfway between the bones that SMPL's joints map to)."""
    rng = np.random.default_rng(seed)
    h = smpl_heads(1.0)
    J = JOINT_INDEX
    mid = lambda a, b: 0.5 * (h[J[a]] + h[J[b]])  # noqa: E731
    chain = [("pelvis", h[0]), ("spine_01", h[J["spine1"]]), ("spine_02", mid("spine1", "spine2")),
             ("spine_03", h[J["spine2"]]), ("spine_04", mid("spine2", "spine3")), ("spine_05", h[J["spine3"]]),
             ("neck_01", h[J["neck"]]), ("neck_02", mid("neck", "head")), ("head", h[J["head"]])]
    tails = [head for _, head in chain[1:]] + [h[J["head"]] + [0, 0, 0.15]]
    bones = [(name, chain[i - 1][0] if i else None, head, tail, rng.uniform(-np.pi, np.pi), True)
             for i, ((name, head), tail) in enumerate(zip(chain, tails))]
    names = {n for n, _ in chain}
    return make_rig(bones + [b for b in humanoid(UE5, h, rng) if b[0] not in names])


def dance(T=24, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A random, smooth SMPL motion: every joint turning by up to ~50 degrees, travelling."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, T)[:, None]
    a, b = rng.normal(0, 0.5, (1, NUM_JOINTS * 3)), rng.normal(0, 0.5, (1, NUM_JOINTS * 3))
    poses = a * np.sin(2 * np.pi * t) + b * np.cos(3 * np.pi * t)
    trans = np.concatenate([np.sin(3 * t), REST_PELVIS_HEIGHT - 0.1 + 0.1 * np.cos(5 * t), 0.7 * t], axis=1)
    return poses, trans


# ----------------------------------------------------------------------------- an independent FK

def fk_world(rig: Rig, quats: np.ndarray, root_bone: int, root_location: np.ndarray, matrices=False) -> np.ndarray:
    """(T,B,3) world heads: pose = parent_pose @ rest_p^-1 @ rest_b @ basis_b (Blender), then the
    object; with `matrices`, the (T,B,4,4) world matrices (a bone's tail: its Y axis times its length)."""
    rot = R.quat_to_matrix(torch.as_tensor(quats)).numpy()
    T, B = quats.shape[:2]
    basis = np.broadcast_to(np.eye(4), (T, B, 4, 4)).copy()
    basis[:, :, :3, :3] = rot
    basis[:, root_bone, :3, 3] = root_location
    pose = np.empty((T, B, 4, 4))
    for b in rig.order():
        p = rig.parents[b]
        local = rig.rest[b] if p < 0 else np.linalg.inv(rig.rest[p]) @ rig.rest[b]
        pose[:, b] = (local if p < 0 else pose[:, p] @ local) @ basis[:, b]
        if b in rig.copies_rotation:             # a Copy Rotation constraint, blended by its influence
            c, w = rig.copies_rotation[b]
            for t in range(T):
                own, other = Rotation.from_matrix(pose[t, b, :3, :3]), Rotation.from_matrix(pose[t, c, :3, :3])
                pose[t, b, :3, :3] = Slerp([0.0, 1.0], Rotation.concatenate([own, other]))(w).as_matrix()
        if b in rig.follows:                     # a Copy Transforms constraint: the whole pose copied
            pose[:, b] = pose[:, rig.follows[b]]
    world = rig.object_matrix @ pose
    return world if matrices else world[..., :3, 3]


def limb_cosines(rig, ret, poses, trans, joints=LIMBS) -> np.ndarray:
    out = ret.to_rig(poses, trans)
    heads = fk_world(rig, out.rotations, out.root_bone, out.root_location)
    want = ret.smpl_limb_directions(poses)
    cos = []
    for joint in joints:
        j = JOINT_INDEX[joint]
        child = [k for k, p in enumerate(PARENTS) if p == j][0]
        v = heads[:, ret.bone_of[child]] - heads[:, ret.bone_of[j]]
        cos.append(np.sum(v / np.linalg.norm(v, axis=-1, keepdims=True) * want[:, j], axis=-1))
    return np.array(cos)


def angle_between(aa1, aa2) -> np.ndarray:
    m1 = R.axis_angle_to_matrix(torch.as_tensor(aa1)).numpy()
    m2 = R.axis_angle_to_matrix(torch.as_tensor(aa2)).numpy()
    rel = np.swapaxes(m1, -1, -2) @ m2
    return np.arccos(np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1) / 2, -1, 1))


# ----------------------------------------------------------------------------- tests

def test_smpl_proportioned_t_pose_follows_the_dance_exactly():
    rig = mixamo_rig()
    ret = Retargeter(rig, auto_map(rig))
    poses, trans = dance()
    assert limb_cosines(rig, ret, poses, trans).min() > 0.9999
    # Same proportions as SMPL (times 1.3): every mapped joint sits where SMPL's joint does, scaled.
    out = ret.to_rig(poses, trans)
    heads = fk_world(rig, out.rotations, out.root_bone, out.root_location)
    from engine.body.skeleton import joint_positions
    smpl = joint_positions(poses, trans) @ Y_TO_Z.T @ ret.frame[:3, :3].T * 1.3
    mapped = [j for j, b in enumerate(ret.bone_of) if b >= 0]
    err = np.abs(heads[:, [ret.bone_of[j] for j in mapped]] - smpl[:, mapped]).max()
    assert ret.scale == pytest.approx(1.3)
    assert err < 1e-6
    # Consecutive keys take the short way round (no quaternion sign flips between frames).
    assert (np.sum(out.rotations[1:] * out.rotations[:-1], axis=-1) > 0).all()


def test_a_pose_rig_with_odd_rolls_points_its_limbs_like_smpl():
    rng = np.random.default_rng(5)
    rig = make_rig(humanoid(MIXAMO, a_pose_heads(), rng))
    ret = Retargeter(rig, auto_map(rig))
    poses, trans = dance(seed=1)
    assert limb_cosines(rig, ret, poses, trans).min() > 0.9999
    # The rest motion (SMPL's T-pose) lifts the A-pose arms to horizontal.
    rest = ret.to_rig(np.zeros((1, 72)), np.array([[0.0, REST_PELVIS_HEIGHT, 0.0]]))
    heads = fk_world(rig, rest.rotations, rest.root_bone, rest.root_location)[0]
    arm = heads[ret.bone_of[JOINT_INDEX["left_elbow"]]] - heads[ret.bone_of[JOINT_INDEX["left_shoulder"]]]
    assert abs(arm[2]) / np.linalg.norm(arm) < 0.07


def bent_limbs_heads() -> np.ndarray:
    """SMPL's rest joints with the knees 4 cm forward and the elbows 4 cm back: legs and arms bent
    at rest the way they bend (as Rigify's metarig is), so the rig shows its hinges."""
    heads = smpl_heads(1.0)
    for side in ("left", "right"):
        heads[JOINT_INDEX[f"{side}_knee"], 1] -= 0.04        # the character faces -Y
        heads[JOINT_INDEX[f"{side}_elbow"], 1] += 0.04
    return heads


def test_a_rig_bent_at_rest_bends_its_knees_about_their_own_hinges_and_keeps_its_arms_rolls(monkeypatch):
    """A knee the dance bends about SMPL's hinge (skeleton.bend_axis) bends the rig's about the
    hinge its rest pose shows, whatever its bones' rolls; elbows are not twisted (QA29: twisted,
    Rigify's bent further from the rig's forward and flipped its twist bones); the limbs still
    point as SMPL's do and the keys read back as the dance."""
    from engine.body.skeleton import bend_axis
    rig = make_rig(humanoid(MIXAMO, bent_limbs_heads(), np.random.default_rng(11)))
    ret = Retargeter(rig, auto_map(rig))
    T = 6
    rng = np.random.default_rng(2)
    poses = np.zeros((T, 72))
    for joint in ("left_hip", "right_hip", "left_shoulder", "right_shoulder"):
        poses[:, 3 * JOINT_INDEX[joint]:3 * JOINT_INDEX[joint] + 3] = rng.normal(0, 0.3, 3)
    for joint, most in (("left_knee", 1.4), ("right_knee", 1.0), ("left_elbow", 1.6), ("right_elbow", 1.2)):
        poses[:, 3 * JOINT_INDEX[joint]:3 * JOINT_INDEX[joint] + 3] = np.outer(np.linspace(0.5, most, T), bend_axis(joint))
    trans = np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (T, 1))
    out = ret.to_rig(poses, trans)
    world = fk_world(rig, out.rotations, out.root_bone, out.root_location, matrices=True)
    still = ret.to_rig(np.zeros((1, 72)), trans[:1])                  # SMPL's rest pose on the rig
    at_rest = fk_world(rig, still.rotations, still.root_bone, still.root_location, matrices=True)[0]
    heads = rig.rest[:, :3, 3]
    for upper, middle, lower in (("hip", "knee", "ankle"),):
        for side in ("left", "right"):
            bu, bm, bl = (ret.bone_of[JOINT_INDEX[f"{side}_{j}"]] for j in (upper, middle, lower))
            hinge = np.cross(heads[bm] - heads[bu], heads[bl] - heads[bm])        # the rig's, at rest
            in_upper_bone = rig.rest[bu, :3, :3].T @ (hinge / np.linalg.norm(hinge))
            # The lower bone's turn in the upper bone's frame since SMPL's rest pose: about the hinge.
            turn = (np.swapaxes(world[:, bu, :3, :3], -1, -2) @ world[:, bm, :3, :3]
                    @ (at_rest[bu, :3, :3].T @ at_rest[bm, :3, :3]).T)
            axis = R.matrix_to_axis_angle(torch.from_numpy(turn)).numpy()
            cos = (axis / np.linalg.norm(axis, axis=-1, keepdims=True)) @ in_upper_bone
            assert np.degrees(np.arccos(cos.min())) < 1.5, (side, middle)       # 5-12 degrees untwisted
    assert limb_cosines(rig, ret, poses, trans).min() > 0.9999
    back, *_ = ret.from_rig(out.rotations, out.root_location, np.ones((T, len(rig.names)), bool))
    mapped = [j for j, b in enumerate(ret.bone_of) if b >= 0]
    assert angle_between(back.reshape(T, -1, 3)[:, mapped], poses.reshape(T, -1, 3)[:, mapped]).max() < 1e-6
    monkeypatch.setattr(Retargeter, "_twist_onto_smpls_hinges", lambda self, heads_w: None)
    untwisted = Retargeter(rig, auto_map(rig)).to_rig(poses, trans).rotations
    arms = [ret.bone_of[JOINT_INDEX[f"{side}_{j}"]] for side in ("left", "right") for j in ("shoulder", "elbow", "wrist")]
    assert np.abs(untwisted[:, arms] - out.rotations[:, arms]).max() < 1e-9
    legs = [ret.bone_of[JOINT_INDEX[f"{side}_{j}"]] for side in ("left", "right") for j in ("hip", "knee")]
    assert np.abs(untwisted[:, legs] - out.rotations[:, legs]).max() > 0.01       # the knees were twisted


@pytest.mark.parametrize("bend", ["backwards", "slight", "as SMPL's"])
def test_a_rest_bend_that_shows_no_hinge_leaves_the_rolls(monkeypatch, bend):
    """Knees and elbows bent backwards at rest (a modelling slip), by 2 degrees or less, or as
    SMPL's own rest pose bends them (10 and 7 degrees, but not about SMPL's hinges: a rig built on
    SMPL's joints bends where SMPL does) are no hinge to twist onto: the bones keep their rolls
    (QA27: a rig bent 3.5 degrees backwards had forearms and shins turned half a turn against
    hands and feet; QA30: a rig on SMPL's joints bent its knees 45 degrees off its rest bend on
    five times as many frames, twisted)."""
    heads = smpl_heads(1.0)
    # Straight limbs (SMPL's own bend a little at rest), then the knees and elbows moved off the line:
    # a knee forward (-Y) and an elbow back (+Y) is the way they bend.
    knee, elbow = {"backwards": ((0, 0.04, 0), (0, -0.04, 0)), "slight": ((0, -0.004, 0), (0, 0.004, 0)),
                   "as SMPL's": (None, None)}[bend]
    for side in ("left", "right"):
        J = {j: JOINT_INDEX[f"{side}_{j}"] for j in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")}
        if knee is not None:
            heads[J["knee"]] = 0.5 * (heads[J["hip"]] + heads[J["ankle"]]) + knee
            heads[J["elbow"]] = 0.5 * (heads[J["shoulder"]] + heads[J["wrist"]]) + elbow
    rig = make_rig(humanoid(MIXAMO, heads, np.random.default_rng(4)))
    poses, trans = dance(seed=6)
    twisted = Retargeter(rig, auto_map(rig)).to_rig(poses, trans).rotations
    monkeypatch.setattr(Retargeter, "_twist_onto_smpls_hinges", lambda self, heads_w: None)
    assert np.abs(Retargeter(rig, auto_map(rig)).to_rig(poses, trans).rotations - twisted).max() < 1e-9


@pytest.mark.parametrize("make", [mixamo_rig,
                                  lambda: make_rig(humanoid(MIXAMO, a_pose_heads(), np.random.default_rng(7)))])
def test_round_trip_gives_back_the_smpl_rotations(make):
    rig = make()
    ret = Retargeter(rig, auto_map(rig))
    poses, trans = dance(seed=3)
    out = ret.to_rig(poses, trans)
    keyed = np.ones((len(poses), len(rig.names)), bool)
    back, back_trans, joint_mask, trans_mask = ret.from_rig(out.rotations, out.root_location, keyed)
    mapped = [j for j, b in enumerate(ret.bone_of) if b >= 0]
    err = angle_between(poses.reshape(-1, 24, 3)[:, mapped], back.reshape(-1, 24, 3)[:, mapped])
    assert err.max() < 1e-4
    assert np.abs(back_trans - trans).max() < 1e-6
    assert joint_mask[:, mapped].all() and not joint_mask[:, [JOINT_INDEX["left_hand"]]].any() and trans_mask.all()


def test_partial_keys_mask_only_their_joints():
    rig = mixamo_rig()
    ret = Retargeter(rig, auto_map(rig))
    poses, trans = dance(T=6)
    out = ret.to_rig(poses, trans)
    keyed = np.zeros((6, len(rig.names)), bool)
    keyed[2, rig.names.index("mixamorig:LeftForeArm")] = True
    _, _, joint_mask, trans_mask = ret.from_rig(out.rotations, out.root_location, keyed)
    assert joint_mask.sum() == 1 and joint_mask[2, JOINT_INDEX["left_elbow"]] and not trans_mask.any()


def test_rest_pose_stands_on_the_floor_and_the_root_travels_scaled():
    rig = make_rig(humanoid(MIXAMO, a_pose_heads(), np.random.default_rng(1)))
    ret = Retargeter(rig, auto_map(rig))
    trans = np.array([[0.0, REST_PELVIS_HEIGHT, 0.0], [1.0, REST_PELVIS_HEIGHT, -2.0]])
    out = ret.to_rig(np.zeros((2, 72)), trans)
    heads = fk_world(rig, out.rotations, out.root_bone, out.root_location)
    assert np.abs(heads[:, :, 2].min(axis=1)).max() < 1e-9          # lowest joint on z = 0
    step = heads[1, ret.bone_of[0]] - heads[0, ret.bone_of[0]]
    # SMPL +x -> Blender +x, SMPL -z (2 m away from the camera) -> Blender +y, scaled by the legs.
    assert ret.scale == pytest.approx(1.15)
    np.testing.assert_allclose(step, [ret.scale, 2 * ret.scale, 0.0], atol=1e-9)


@pytest.mark.parametrize("bones_at, object_at, stands_at_rest", [
    (0.03, 0.0, True),     # a body's toe joints 3 cm above its soles, which stand at the origin (QA)
    (-0.95, 0.95, True),   # a body whose object's origin is at the hips, standing on z = 0
    (1.0, 0.5, True),      # a body standing on a 1.5 m stage, its object at half that height
    (0.03, 0.0, False),    # a bare skeleton: its lowest joint on the origin's level ...
    (-0.9, 0.0, False),    # ... also where its rest pose hangs from the root (a BVH import)
])
def test_the_dance_stands_on_the_floor_the_character_stands_on(bones_at, object_at, stands_at_rest):
    """Standing as SMPL stands at rest, a character with a body stands as in its rest pose,
    wherever its object's origin is: the floor is the level it stands on at rest. (It was the
    origin's level: a character rigged with its origin at the hips danced 95 cm in the air, and
    one whose toe joints sit a few cm above its soles sank its feet into the floor by that
    much.) A bare skeleton's lowest joint stands on its origin's level."""
    rig = make_rig(humanoid(MIXAMO, smpl_heads(1.1) + [0.0, 0.0, bones_at], np.random.default_rng(3)),
                   np.array([[1, 0, 0, 0.4], [0, 1, 0, -0.2], [0, 0, 1, object_at], [0, 0, 0, 1.0]]))
    rig.stands_at_rest = stands_at_rest
    ret = Retargeter(rig, auto_map(rig))
    out = ret.to_rig(np.zeros((1, 72)), np.array([[0.0, REST_PELVIS_HEIGHT, 0.0]]))
    standing = fk_world(rig, out.rotations, out.root_bone, out.root_location)[0]
    lift = 0.0 if stands_at_rest else -bones_at
    np.testing.assert_allclose(standing, rig.world_heads() + [0.0, 0.0, lift], atol=1e-9)


def test_five_bone_spine_and_two_bone_neck_share_the_rotation():
    rig = ue5_rig()
    assert detect_preset(rig) == "unreal_ue5"
    ret = Retargeter(rig, auto_map(rig))
    for name in ("spine_02", "spine_04", "neck_02"):
        assert rig.names.index(name) in ret.driven
    poses, trans = dance(seed=4)
    assert limb_cosines(rig, ret, poses, trans).min() > 0.9999
    out = ret.to_rig(poses, trans)
    angle = lambda name: 2 * np.arccos(np.clip(np.abs(out.rotations[:, rig.names.index(name), 0]), 0, 1))  # noqa: E731
    # spine_02 and spine_03 split SMPL's spine2 rotation evenly; so do neck_02 and head.
    np.testing.assert_allclose(angle("spine_02"), angle("spine_03"), atol=1e-6)
    np.testing.assert_allclose(angle("neck_02"), angle("head"), atol=1e-6)
    assert angle("spine_02").max() > 0.1
    back = ret.from_rig(out.rotations, out.root_location, np.ones((len(poses), len(rig.names)), bool))[0]
    err = angle_between(poses.reshape(-1, 24, 3), back.reshape(-1, 24, 3))
    mapped = [j for j, b in enumerate(ret.bone_of) if b >= 0]
    assert err[:, mapped].max() < 1e-4


def test_rotated_scaled_object_fbx_like_armature():
    """Armature space Y up in centimetres (as Mixamo's FBX imports), the object turned and
    scaled back to Z up metres, then turned 30 degrees about Z and moved: the dance happens in
    the world, facing where the character faces, on the floor, at the character's size."""
    heads = smpl_heads(1.0)
    rng = np.random.default_rng(9)
    to_yup_cm = np.eye(4)
    to_yup_cm[:3, :3] = Y_TO_Z.T * 100.0
    bones = humanoid({j: "mixamorig1:" + n for j, n in MIXAMO.items()}, heads, rng)
    bones = [(n, p, to_yup_cm[:3, :3] @ h, to_yup_cm[:3, :3] @ t, r, d) for n, p, h, t, r, d in bones]
    yaw = np.radians(30)
    turn = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    obj = np.eye(4)
    obj[:3, :3] = turn @ Y_TO_Z * 0.01
    obj[:3, 3] = (2.0, -1.0, 0.0)
    rig = make_rig(bones, obj)
    ret = Retargeter(rig, auto_map(rig))
    facing = np.degrees(np.arctan2(ret.frame[1, 0], ret.frame[0, 0]))
    assert abs(facing - 30) < 1.5         # SMPL's own skeleton is a degree or so asymmetric
    np.testing.assert_allclose(ret.frame[:3, 3], [2.0, -1.0, 0.0], atol=1e-9)
    poses, trans = dance(seed=6)
    assert limb_cosines(rig, ret, poses, trans).min() > 0.9999
    out = ret.to_rig(poses, trans)
    world = fk_world(rig, out.rotations, out.root_bone, out.root_location)
    from engine.body.skeleton import joint_positions
    smpl = joint_positions(poses, trans) @ Y_TO_Z.T @ ret.frame[:3, :3].T + [2.0, -1.0, 0.0]
    mapped = [j for j, b in enumerate(ret.bone_of) if b >= 0]
    assert np.abs(world[:, [ret.bone_of[j] for j in mapped]] - smpl[:, mapped]).max() < 1e-6
    back, back_trans, _, _ = ret.from_rig(out.rotations, out.root_location, np.ones(out.rotations.shape[:2], bool))
    assert angle_between(poses.reshape(-1, 24, 3)[:, mapped], back.reshape(-1, 24, 3)[:, mapped]).max() < 1e-4
    assert np.abs(back_trans - trans).max() < 1e-6


def test_arm_under_a_bone_that_copies_the_collar():
    """Rigify's arms hang under ORG-shoulder, which copies the shoulder control by a constraint:
    with Rig.follows the FK sees it; without, the map is refused in one line."""
    rig = mixamo_rig()
    bone_map = auto_map(rig)
    names = list(rig.names)
    collar, arm = names.index("mixamorig:LeftShoulder"), names.index("mixamorig:LeftArm")
    names.append("ORG-LeftShoulder")
    parents = list(rig.parents) + [rig.parents[collar]]
    parents[arm] = len(names) - 1
    rest = np.concatenate([rig.rest, rig.rest[collar:collar + 1]])
    args = (names, parents, rest, np.append(rig.lengths, rig.lengths[collar]), rig.deform + [False])
    one_line_error(Rig(*args), bone_map, "does not hang under")
    follower = Rig(*args, follows={len(names) - 1: collar})
    ret = Retargeter(follower, bone_map)
    poses, trans = dance(seed=8)
    assert limb_cosines(follower, ret, poses, trans).min() > 0.9999
    out = ret.to_rig(poses, trans)
    back = ret.from_rig(out.rotations, out.root_location, np.ones(out.rotations.shape[:2], bool))[0]
    mapped = [j for j, b in enumerate(ret.bone_of) if b >= 0]
    assert angle_between(poses.reshape(-1, 24, 3)[:, mapped], back.reshape(-1, 24, 3)[:, mapped]).max() < 1e-4


def test_a_neck_that_copies_the_hips_rotation_in_part():
    """Rigify's neck hangs under MCH-ROT-neck, which a Copy Rotation turns towards the torso by
    1 - neck_follow: with Rig.copies_rotation the neck dances as on a rig without it and reads back."""
    rig = mixamo_rig()
    bone_map = auto_map(rig)
    names = list(rig.names)
    spine, neck, hips = (names.index("mixamorig:" + n) for n in ("Spine2", "Neck", "Hips"))
    names.append("MCH-ROT-neck")
    parents = list(rig.parents) + [spine]
    parents[neck] = len(names) - 1
    turned = rig.rest[neck].copy()
    turned[:3, :3] = turned[:3, :3] @ Rotation.from_rotvec([0.3, 0.5, -0.2]).as_matrix()   # any rest of its own
    rest = np.concatenate([rig.rest, turned[None]])
    args = (names, parents, rest, np.append(rig.lengths, rig.lengths[neck]), rig.deform + [False])
    plain, copying = Rig(*args), Rig(*args, copies_rotation={len(names) - 1: (hips, 0.5)})
    poses, trans = dance(seed=9)
    outs = [Retargeter(r, bone_map).to_rig(poses, trans) for r in (plain, copying)]
    worlds = [fk_world(r, o.rotations, o.root_bone, o.root_location, matrices=True) for r, o in zip((plain, copying), outs)]
    head = names.index("mixamorig:Head")
    assert np.abs(worlds[0][:, [neck, head]] - worlds[1][:, [neck, head]]).max() < 1e-6    # the same dance shown
    assert angle_between(np.zeros(3), Rotation.from_quat(outs[1].rotations[:, neck][:, [1, 2, 3, 0]]).as_rotvec()).max() > 0.1
    back = Retargeter(copying, bone_map).from_rig(outs[1].rotations, outs[1].root_location,
                                                  np.ones(outs[1].rotations.shape[:2], bool))[0]
    mapped = [j for j, b in enumerate(Retargeter(copying, bone_map).bone_of) if b >= 0]
    assert angle_between(poses.reshape(-1, 24, 3)[:, mapped], back.reshape(-1, 24, 3)[:, mapped]).max() < 1e-4


def test_unmapped_bones_are_not_driven():
    rig = mixamo_rig()
    ret = Retargeter(rig, auto_map(rig))
    out = ret.to_rig(*dance(T=5))
    finger = rig.names.index("mixamorig:LeftHandMiddle1")
    assert finger not in out.driven
    np.testing.assert_array_equal(out.rotations[:, finger], np.tile([1.0, 0, 0, 0], (5, 1)))


# ----------------------------------------------------------------------------- mapping

def test_bone_key_is_tolerant():
    assert bone_key("mixamorig1:LeftUpLeg") == bone_key("LeftUpLeg") == bone_key("Left_UpLeg") == bone_key("upLeg.L")
    assert bone_key("thigh_l") == bone_key("Thigh.L") == bone_key("L_Thigh") == bone_key("lThigh") == "L|thigh"
    assert bone_key("spine_01") == bone_key("Spine1")
    assert bone_key("thigh.L") != bone_key("thigh.R") and bone_key("DEF-thigh.L") != bone_key("thigh.L")


@pytest.mark.parametrize("prefix", ["mixamorig:", "mixamorig1:", ""])
def test_mixamo_preset_is_found_with_any_prefix(prefix):
    rig = mixamo_rig(prefix)
    assert detect_preset(rig) == "mixamo"
    m = auto_map(rig)
    assert m["left_hip"] == prefix + "LeftUpLeg" and m["spine3"] == prefix + "Spine2" and "left_hand" not in m


def test_every_shipped_preset_maps_a_rig_named_after_it():
    heads = smpl_heads()
    for name in list_presets():
        preset = load_preset(name)
        joints = {j: b for j, b in preset.items() if j != "root"}
        bones = humanoid(joints, heads, np.random.default_rng(0))
        if "root" in preset and preset["root"] not in joints.values():
            bones = [(preset["root"], None, heads[0] - [0, 0, 0.9], heads[0] - [0, 0.2, 0.9], 0.0, False)] + [
                (n, p or preset["root"], h, t, r, d) for n, p, h, t, r, d in bones]
        rig = make_rig(bones)
        assert detect_preset(rig) == name, name
        assert auto_map(rig) == preset, name


def test_hierarchy_mapping_without_known_names():
    """Bones named bone_000...: the body is found from the hierarchy and the rest positions."""
    source = make_rig(humanoid(MIXAMO, a_pose_heads(), np.random.default_rng(3)))
    anonymous = {n: f"bone_{i:03d}" for i, n in enumerate(source.names)}
    rig = Rig([anonymous[n] for n in source.names], source.parents, source.rest, source.lengths, source.deform)
    assert detect_preset(rig) is None
    assert auto_map(rig) == {j: anonymous[b] for j, b in MIXAMO.items()}


def test_hierarchy_mapping_of_a_deep_a_pose():
    """Arms 60 degrees down: the hands hang below the pelvis and are still found as arms."""
    heads = smpl_heads()
    for side, sign in (("left", 1), ("right", -1)):
        s = JOINT_INDEX[f"{side}_shoulder"]
        turn = R.axis_angle_to_matrix(torch.tensor([0.0, sign * np.radians(70), 0.0], dtype=torch.float64)).numpy()
        for j in (JOINT_INDEX[f"{side}_elbow"], JOINT_INDEX[f"{side}_wrist"], JOINT_INDEX[f"{side}_hand"]):
            heads[j] = heads[s] + turn @ (heads[j] - heads[s])
    assert heads[JOINT_INDEX["left_hand"], 2] < heads[0, 2]
    source = make_rig(humanoid(MIXAMO, heads, np.random.default_rng(4)))
    rig = Rig([f"b{i}" for i in range(len(source.names))], source.parents, source.rest, source.lengths, source.deform)
    want = {j: f"b{source.names.index(b)}" for j, b in MIXAMO.items()}
    assert auto_map(rig) == want


def test_hierarchy_mapping_with_extra_bones_and_a_five_bone_spine():
    rig = ue5_rig()
    renamed = Rig([f"b{i}" for i in range(len(rig.names))], rig.parents, rig.rest, rig.lengths, rig.deform)
    m = map_by_hierarchy(renamed)
    check_bone_map(renamed, m)
    want = {j: f"b{rig.names.index(b)}" for j, b in UE5.items()}
    for joint in ("pelvis", "left_hip", "left_knee", "left_ankle", "right_knee", "left_shoulder", "left_elbow",
                  "right_wrist", "left_collar", "spine1", "spine3", "head"):
        assert m[joint] == want[joint], joint


def test_hierarchy_mapping_steps_over_twist_bones_inside_the_limbs():
    # QA: a rig whose thighs, upper arms and shins are split by twist bones (thigh -> thighTwist ->
    # shin) had its hip mapped to the twist bone and its collar to the upper arm: the thighs bent
    # 15 degrees in their middle and the upper arms 30. The first half takes the joint.
    heads = smpl_heads()
    names = {j: f"q_{n}" for j, n in MIXAMO.items()}
    bones = humanoid(names, heads, np.random.default_rng(5))
    split = {"left_hip", "right_hip", "left_knee", "right_knee", "left_shoulder", "right_shoulder"}
    out = []
    for name, parent, head, tail, roll, deform in bones:
        joint = next(j for j, n in names.items() if n == name)
        parent_joint = next((j for j, n in names.items() if n == parent), None)
        if parent_joint in split:
            parent = parent + "Twist"
        if joint in split:
            middle = (np.asarray(head) + np.asarray(tail)) / 2
            out += [(name, parent, head, middle, roll, deform), (name + "Twist", name, middle, tail, roll, deform)]
        else:
            out.append((name, parent, head, tail, roll, deform))
    rig = make_rig(out)
    m = map_by_hierarchy(rig)
    for joint, bone in names.items():
        if joint in m:
            assert m[joint] == bone, (joint, m[joint])
    assert {"left_hip", "left_knee", "left_ankle", "left_collar", "left_shoulder", "left_elbow", "left_wrist"} <= set(m)
    # The twist bones follow their segment: the limbs point where SMPL's point.
    poses = np.random.default_rng(1).normal(scale=0.3, size=(3, 72))
    target = Retargeter(rig, m)
    trans = np.zeros((3, 3)) + [0, REST_PELVIS_HEIGHT, 0]
    assert limb_cosines(rig, target, poses, trans).min() > 0.9999
    out = target.to_rig(poses, trans)
    heads_w = fk_world(rig, out.rotations, out.root_bone, out.root_location)
    for side in ("left", "right"):
        for upper, lower in (("hip", "knee"), ("shoulder", "elbow")):
            a, b = (rig.names.index(m[f"{side}_{j}"]) for j in (upper, lower))
            twist = rig.names.index(m[f"{side}_{upper}"] + "Twist")
            to_twist, to_next = heads_w[:, twist] - heads_w[:, a], heads_w[:, b] - heads_w[:, twist]
            cos = (to_twist * to_next).sum(-1) / np.linalg.norm(to_twist, axis=-1) / np.linalg.norm(to_next, axis=-1)
            assert cos.min() > 0.9999, (side, upper, cos)


def test_a_deforming_bone_above_the_legs_pelvis_travels_with_the_dance():
    # QA: a 3ds Max Biped (the thighs under Bip01 Spine, itself under Bip01 Pelvis) was mapped with
    # its spine as the pelvis, and Bip01 Pelvis, which skins the hips, stayed behind while the
    # body danced 1.4 m away. It now takes the travel.
    heads = smpl_heads()
    names = {j: f"Bip01 {n}" for j, n in MIXAMO.items()}
    names["pelvis"], names["spine1"] = "Bip01 Pelvis", "Bip01 Spine"
    bones = []
    for name, parent, head, tail, roll, deform in humanoid(names, heads, np.random.default_rng(6)):
        if name in (names["left_hip"], names["right_hip"]):
            parent = names["spine1"]                      # Biped's thighs hang from the spine
        bones.append((name, parent, head, tail, roll, deform))
    rig = make_rig(bones)
    m = map_by_hierarchy(rig)
    assert m["pelvis"] == "Bip01 Spine" and m[ROOT_KEY] == "Bip01 Pelvis", m
    check_bone_map(rig, m)
    target = Retargeter(rig, m)
    frames = 20
    trans = np.zeros((frames, 3)) + [0.0, REST_PELVIS_HEIGHT, 0.0]
    trans[:, 2] = np.linspace(0.0, 1.0, frames)           # one metre forward
    out = target.to_rig(np.zeros((frames, 72)), trans)
    world = fk_world(rig, out.rotations, out.root_bone, out.root_location)
    pelvis_bone, spine_bone = rig.names.index("Bip01 Pelvis"), rig.names.index("Bip01 Spine")
    travelled = np.linalg.norm(world[-1, pelvis_bone] - world[0, pelvis_bone])
    assert travelled > 0.9 * target.scale, travelled
    np.testing.assert_allclose(world[:, pelvis_bone] - world[:, spine_bone],
                               np.broadcast_to(world[0, pelvis_bone] - world[0, spine_bone], (frames, 3)), atol=1e-9)


def one_line_error(rig, bone_map, needle):
    with pytest.raises(RetargetError) as e:
        Retargeter(rig, bone_map)
    assert "\n" not in str(e.value) and needle in str(e.value), str(e.value)


def test_bad_maps_raise_one_clear_line():
    rig = mixamo_rig()
    good = auto_map(rig)
    one_line_error(rig, {**good, "left_knee": "mixamorig:Nope"}, "'mixamorig:Nope'")
    one_line_error(rig, {**good, "spine1": good["pelvis"]}, "mapped twice")
    one_line_error(rig, {k: v for k, v in good.items() if k != "right_knee"}, "no legs")
    one_line_error(rig, {**good, "left_elbow": "x"} | {"lefty": "y"}, "not an SMPL joint")
    one_line_error(rig, {**good, "left_hip": good["left_knee"], "left_knee": good["left_hip"]}, "does not hang under")
    # Two hierarchies: the legs under a second root.
    parents = list(rig.parents)
    parents[rig.names.index(good["left_hip"])] = -1
    split = Rig(rig.names, parents, rig.rest, rig.lengths, rig.deform)
    one_line_error(split, good, "several root bones")
    with pytest.raises(RetargetError, match="root bones"):
        map_by_hierarchy(split)


def test_a_rig_without_legs_is_refused():
    arms_only = {j: b for j, b in MIXAMO.items() if "hip" not in j and "knee" not in j and "ankle" not in j
                 and "foot" not in j}
    for heads in (smpl_heads(), a_pose_heads()):
        # A tail and index fingers: in an A-pose the arms are then the lowest chains on both
        # sides, which were mapped as legs (QA: the fingers keyed as hips and knees).
        extra = [("Tail", MIXAMO["pelvis"], heads[0], heads[0] + [0.0, -0.1, -0.3], 0.0, True),
                 ("LeftIndex", MIXAMO["left_wrist"], heads[22], heads[22] + [0.05, 0.0, -0.03], 0.3, True),
                 ("RightIndex", MIXAMO["right_wrist"], heads[23], heads[23] - [0.05, 0.0, 0.03], 0.3, True)]
        for bones in (humanoid(arms_only, heads, np.random.default_rng(0)),
                      humanoid(arms_only, heads, np.random.default_rng(0), extra)):
            with pytest.raises(RetargetError) as e:
                auto_map(make_rig(bones))
            assert "\n" not in str(e.value)


@pytest.mark.parametrize("turn", [
    [[1, 0, 0], [0, 0, -1], [0, 1, 0]],     # lying on its back (Y up exported, read as Z up)
    [[0, 0, 1], [0, 1, 0], [-1, 0, 0]],     # lying on its side
    [[1, 0, 0], [0, -1, 0], [0, 0, -1]],    # upside down
])
def test_a_character_that_does_not_stand_upright_is_refused(turn):
    """QA: a character lying down (an FBX read with the wrong up axis) passed the old check
    (thighs above the lowest joint) and danced with its knees bent backwards."""
    obj = np.eye(4)
    obj[:3, :3] = np.array(turn, float)
    rig = make_rig(humanoid(MIXAMO, smpl_heads(), np.random.default_rng(0)), obj)
    with pytest.raises(RetargetError, match="upright") as e:
        Retargeter(rig, auto_map(rig))
    assert "\n" not in str(e.value)
    Retargeter(make_rig(humanoid(MIXAMO, a_pose_heads(), np.random.default_rng(0))), MIXAMO)   # an A-pose stands


def test_bone_map_json_round_trip(tmp_path):
    m = {**MIXAMO, "root": "Hips"}
    path = save_bone_map(m, tmp_path / "mine.json", title="my character")
    assert load_bone_map(path) == m
    assert json.loads(path.read_text())["title"] == "my character"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RetargetError, match="not valid JSON"):
        load_bone_map(tmp_path / "bad.json")


def test_retargeting_imports_no_torch():
    # The add-on's rig panel imports these before torch is installed (blender_addon/rig_ui.py):
    # the reason engine/outputs/retarget.py keeps its own numpy rotations.
    import subprocess
    import sys
    code = ("import sys, engine.outputs.retarget, engine.outputs.bone_mapping, engine.outputs.character_feet; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "False"


def test_a_regenerated_range_meets_the_dance_around_it_without_a_jump():
    # The retarget plants the new section's feet on spots of its own: where they differ from the
    # old dance's, the legs' rotations (and the root) differ at the join. The range's rotations
    # are bent by offsets, full at each edge and fading inwards, so that it meets its context.
    from engine.outputs.retarget import join_to_context, matrix_to_quat, quat_to_matrix
    T, B, fade = 90, 2, 15
    t = np.arange(T, dtype=np.float64)
    new = np.zeros((T, B, 4))
    new[..., 0], new[..., 3] = np.cos(0.01 * t)[:, None], np.sin(0.01 * t)[:, None]     # slow turn about z
    tilt = np.array([np.cos(0.25), np.sin(0.25), 0.0, 0.0])                                # 0.5 rad about x
    held = np.zeros((T, B), bool)
    rows = np.arange(20, 70)
    held[:20], held[70:] = True, True
    old = new.copy()
    old[held] = matrix_to_quat(quat_to_matrix(tilt) @ quat_to_matrix(new[held]))
    loc = np.zeros((T, 3))
    quats = new.copy()
    quats[rows], loc[rows] = join_to_context(new, loc, rows, old, np.full((T, 3), 0.1), held.all(axis=1),
                                             held[:, 0], fade)

    def angle(a, b):
        return 2 * np.arccos(np.clip(np.abs((a * b).sum(-1)), 0, 1))
    assert angle(quats[20], old[19]).max() < 0.06 and angle(quats[69], old[70]).max() < 0.06   # joined
    assert angle(quats[45], new[45]).max() < 1e-9 and np.abs(loc[45]).max() < 1e-12            # faded out
    step = angle(quats[1:], quats[:-1])[rows[0]:rows[-1]].max()
    assert step < 0.5 / fade * 2 and np.abs(loc[20] - 0.1).max() < 0.01


def test_a_key_holds_the_joints_the_rig_has_no_bone_for_above_it():
    """QA: on Rigify (no bone for SMPL's spine1) a full-pose key met spine_fk.002 on its frame
    only: the dance's own spine1 bend went onto that bone on every other frame. A key read from
    the rig, met by a dance, must give the keyed rotations back when retargeted."""
    rng = np.random.default_rng(0)
    names = {j: "mixamorig:" + n for j, n in MIXAMO.items() if j != "spine1"}
    rig = make_rig(humanoid(names, smpl_heads(1.3), rng))
    ret = Retargeter(rig, auto_map(rig))
    assert ret.bone_of[JOINT_INDEX["spine1"]] < 0
    keyed_dance, trans = dance(T=4, seed=1)
    keyed_rig = ret.to_rig(keyed_dance, trans, plant_feet=False)
    keyed = np.zeros((4, len(rig.names)), bool)
    keyed[2] = True                                                         # a full-pose key on frame 2
    poses, _, joint_mask, _ = ret.from_rig(keyed_rig.rotations, keyed_rig.root_location, keyed)
    assert joint_mask[2, JOINT_INDEX["spine1"]] and not joint_mask[[0, 1, 3]].any()
    assert not joint_mask[2, JOINT_INDEX["left_hand"]]                     # a leaf with no bone stays free
    # Another dance, the key met on its masked joints (as the engine meets keys): the keyed bones come back.
    other, other_trans = dance(T=4, seed=7)
    met = other.reshape(4, NUM_JOINTS, 3).copy()
    met[joint_mask] = poses.reshape(4, NUM_JOINTS, 3)[joint_mask]
    back = ret.to_rig(met.reshape(4, -1), other_trans, plant_feet=False).rotations[2]
    spine = rig.names.index("mixamorig:Spine1")
    assert angle_between(R.quat_to_axis_angle(torch.from_numpy(back[spine])).numpy()[None],
                         R.quat_to_axis_angle(torch.from_numpy(keyed_rig.rotations[2, spine])).numpy()[None]).max() < 1e-4


def test_hierarchy_mapping_keeps_the_head_on_the_spine_beside_raised_wings():
    # QA: an unnamed rig with a wing on each side of the upper spine had its neck and head
    # mapped onto a wing (its tip was the highest leaf); the real neck and head went undriven.
    heads = smpl_heads(1.0)
    source = humanoid(MIXAMO, heads, np.random.default_rng(5))
    chest = heads[JOINT_INDEX["spine3"]]
    for side, x in (("L", 1.0), ("R", -1.0)):
        a, b = chest + [0.1 * x, 0.1, 0.1], chest + [0.5 * x, 0.2, 0.5]
        c = chest + [0.9 * x, 0.3, 0.9]                                    # above the head, far to the side
        source += [(f"wing1.{side}", MIXAMO["spine3"], a, b, 0.0, True), (f"wing2.{side}", f"wing1.{side}", b, c, 0.0, True)]
    rig = make_rig(source)
    assert rig.world_heads()[:, 2].max() < max(b[3][2] for b in source)    # a wing tip is the highest point
    anonymous = Rig([f"b{i}" for i in range(len(rig.names))], rig.parents, rig.rest, rig.lengths, rig.deform)
    m = map_by_hierarchy(anonymous)
    for joint in ("neck", "head", "spine3", "left_shoulder", "right_wrist"):
        assert m[joint] == f"b{rig.names.index(MIXAMO[joint])}", joint


def test_left_and_right_names_on_the_wrong_sides_are_refused():
    """QA: a rig named from the viewer's side (its Left* bones on its right) danced facing away
    from its toes, its knees bending backwards, without a word."""
    rig = mixamo_rig()
    swapped = {joint: rig_bone for joint, rig_bone in
               ((j, "mixamorig:" + MIXAMO[j.replace("left", "@").replace("right", "left").replace("@", "right")])
                for j in MIXAMO)}
    with pytest.raises(RetargetError, match="bones named left .* sit on the character's right") as e:
        Retargeter(rig, swapped)
    assert "\n" not in str(e.value)
    Retargeter(rig, {j: "mixamorig:" + n for j, n in MIXAMO.items()})      # named right: danced


def test_a_rig_pose_is_eased_onto_the_values_written_over_it():
    """onto_given_poses: where a bone's value is given (an animator's key written as it is), the
    retargeted dance beside it carries the difference and lets it fade, so the written value is
    met without a jump in the frame next to it; far from it the dance is as retargeted."""
    from engine.outputs.retarget import axis_angle_to_matrix, matrix_to_quat, onto_given_poses, quat_to_matrix
    T, B, key, fade = 60, 3, 20, 12
    t = np.arange(T)[:, None]
    aa = np.stack([np.concatenate([0.5 * np.sin(0.1 * t + b), 0.2 * np.cos(0.07 * t), 0.0 * t], 1) for b in range(B)], 1)
    quats = matrix_to_quat(axis_angle_to_matrix(aa))
    loc = np.concatenate([0.01 * t, 0.0 * t, 0.0 * t], 1)
    held = np.zeros((T, B), bool)
    held[key, 1] = True                                    # one bone keyed on one frame
    given = quats.copy()
    given[key, 1] = matrix_to_quat(axis_angle_to_matrix(np.array([0.3, -0.4, 0.5])) @ quat_to_matrix(quats[key, 1]))
    root_held = np.zeros(T, bool)
    root_held[key] = True
    given_loc = loc.copy()
    given_loc[key] += [0.0, 0.05, 0.02]
    out, out_loc = onto_given_poses(quats, loc, [0, 1, 2], held, root_held, given, given_loc, fade)

    def angle(a, b):
        return np.degrees(2 * np.arccos(np.clip(np.abs((a * b).sum(-1)), 0, 1)))
    assert angle(out[key, 1], given[key, 1]) < 1e-4 and np.abs(out_loc[key] - given_loc[key]).max() < 1e-12
    step = angle(out[key + 1, 1], out[key, 1])
    drawn = angle(quats[key + 1, 1], quats[key, 1])
    print(f"step after the key {step:.3f} deg (the dance's own {drawn:.3f}; pasted alone: "
          f"{angle(quats[key + 1, 1], given[key, 1]):.1f})")
    assert step < 2 * drawn + 0.5
    assert np.abs(out_loc[key + 1] - out_loc[key] - (loc[key + 1] - loc[key])).max() < 0.002
    far = np.r_[0:key - fade, key + fade + 1:T]
    assert angle(out[far, 1], quats[far, 1]).max() < 1e-4 and np.abs(out_loc[far] - loc[far]).max() < 1e-12
    assert np.abs(out[:, [0, 2]] - quats[:, [0, 2]]).max() < 1e-12          # unkeyed bones as they were
