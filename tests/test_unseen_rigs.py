"""Rigs of conventions no name preset knows (engine/outputs/bone_mapping.py), numpy only: the
hierarchy mapping facing any way, Blender's un-generated human metarig, MakeHuman's default
skeleton, a preset that names the legs but not the arms, a character lying down."""
from __future__ import annotations

import numpy as np
import pytest

from engine.body.skeleton import JOINT_INDEX, REST_PELVIS_HEIGHT
from engine.outputs.bone_mapping import load_preset, map_by_hierarchy
from engine.outputs.retarget import Retargeter, RetargetError, Rig, auto_map, detect_preset
from test_retarget import MIXAMO, a_pose_heads, dance, fk_world, humanoid, limb_cosines, make_rig, smpl_heads


def turned(rig: Rig, degrees: float) -> Rig:
    """The same rig inside an object turned about Z (facing +y at 180 degrees)."""
    a = np.radians(degrees)
    obj = np.eye(4)
    obj[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return Rig(rig.names, rig.parents, rig.rest, rig.lengths, rig.deform, obj)


def with_feet(names: dict, heads: np.ndarray, seed: int, toes: bool = True) -> list:
    """humanoid() bones with a heel under each foot (a leaf lower than the toe joint, behind the
    ankle, as Blender's metarig has it) and a toe tip; without toes the foot bone points down."""
    bones = humanoid({j: b for j, b in names.items() if toes or not j.endswith("_foot")}, heads,
                     np.random.default_rng(seed))
    out = []
    for name, parent, head, tail, roll, deform in bones:
        joint = next(j for j, b in names.items() if b == name)
        if joint.endswith("_ankle") and not toes:
            tail = np.asarray(head) - [0.0, 0.0, 0.06]            # pointing at the floor: no front to read
        out.append((name, parent, head, tail, roll, deform))
        if joint.endswith("_ankle"):
            heel = np.asarray(head) * [1.0, 1.0, 0.0] + [0.0, 0.05, -0.01]
            out.append((name + "_heel", name, heel, heel + [0.0, 0.04, 0.0], 0.0, True))
        if joint.endswith("_foot"):
            out.append((name + "_end", name, tail, np.asarray(tail) + [0.0, -0.04, 0.0], 0.0, True))
    return out


@pytest.mark.parametrize("degrees", [180.0, 90.0, -60.0])
def test_hierarchy_mapping_finds_left_and_right_facing_any_way(degrees):
    # QA: an unnamed rig facing +y had every left joint mapped to its right bone: the limbs
    # still pointed along the dance (cosine 1.0) but it danced mirrored, facing backwards; facing
    # +x it was refused ("no low bones on both sides"). Its toes say where it faces.
    source = make_rig(with_feet(MIXAMO, a_pose_heads(), 3))
    names = [f"bone.{i:03d}" for i in range(len(source.names))]
    rig = turned(Rig(names, source.parents, source.rest, source.lengths, source.deform), degrees)
    want = {j: names[source.names.index(b)] for j, b in MIXAMO.items()}
    assert detect_preset(rig) is None
    assert auto_map(rig) == want
    ret = Retargeter(rig, want)
    facing = np.degrees(np.arctan2(ret.frame[1, 0], ret.frame[0, 0]))
    assert (facing - degrees + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=2.0)   # -180 is 180


def test_side_names_decide_where_the_feet_do_not():
    # Feet that point at the floor (no toes) say nothing of the facing: names such as thigh_l,
    # Left Thigh or upLeg.L say which side is which.
    names = {j: b.replace("Left", "l_").replace("Right", "r_") for j, b in MIXAMO.items()}
    rig = turned(make_rig(with_feet(names, smpl_heads(), 4, toes=False)), 180.0)
    m = map_by_hierarchy(rig)
    for joint in ("left_hip", "left_knee", "left_ankle", "left_shoulder", "left_elbow", "left_wrist"):
        assert m[joint] == names[joint], (joint, m[joint])
        assert m[joint.replace("left", "right")] == names[joint.replace("left", "right")]


def metarig_bones(heads: np.ndarray) -> tuple[list, dict]:
    """Blender's human metarig, un-generated: spine .. spine.006, a "face" bone starting on the
    head's own head with the face bones above it, heels below the feet, pelvis and breast bones
    with no children."""
    J = JOINT_INDEX
    names = {"pelvis": "spine", "spine1": "spine.001", "spine2": "spine.002", "spine3": "spine.003", "neck": "spine.004",
             "head": "spine.006"}
    for side, s in (("left", "L"), ("right", "R")):
        names.update({f"{side}_hip": f"thigh.{s}", f"{side}_knee": f"shin.{s}", f"{side}_ankle": f"foot.{s}",
                      f"{side}_foot": f"toe.{s}", f"{side}_collar": f"shoulder.{s}", f"{side}_shoulder": f"upper_arm.{s}",
                      f"{side}_elbow": f"forearm.{s}", f"{side}_wrist": f"hand.{s}"})
    bones = [b for b in with_feet(names, heads, 6) if not b[0].startswith("toe") or not b[0].endswith("_end")]
    bones = [(n.replace("foot.L_heel", "heel.02.L").replace("foot.R_heel", "heel.02.R"),
              p, h, t, r, d) for n, p, h, t, r, d in bones]
    neck, head = heads[J["neck"]], heads[J["head"]]
    i = next(k for k, b in enumerate(bones) if b[0] == "spine.006")
    bones[i] = ("spine.005", "spine.004", (neck + head) / 2, head, 0.0, True)
    bones[[b[0] for b in bones].index("spine.004")] = ("spine.004", "spine.003", neck, (neck + head) / 2, 0.0, True)
    bones += [("spine.006", "spine.005", head, head + [0, 0, 0.2], 0.0, True),
              ("face", "spine.006", head, head + [0, -0.09, 0.0], 0.0, True),
              ("forehead.L", "face", head + [0.02, -0.13, 0.19], head + [0.05, -0.12, 0.2], 0.0, True),
              ("forehead.L.001", "forehead.L", head + [0.05, -0.12, 0.2], head + [0.07, -0.1, 0.19], 0.0, True),
              ("nose", "face", head + [0, -0.13, 0.12], head + [0, -0.16, 0.08], 0.0, True)]
    for s, x in (("L", 1.0), ("R", -1.0)):
        bones += [(f"pelvis.{s}", "spine", heads[0], heads[0] + [0.1 * x, -0.05, 0.1], 0.0, True),
                  (f"breast.{s}", "spine.003", heads[J["spine3"]] + [0.1 * x, 0, -0.05],
                   heads[J["spine3"]] + [0.1 * x, -0.15, -0.05], 0.0, True)]
    return bones, names


def test_the_metarigs_heel_and_face_bones_are_not_toes_and_head():
    # QA: on Blender's human metarig the heel (a leaf below the toe joint) was mapped as the toe,
    # and the "face" bone (on the head's own head, the face bones above it) as the head: the
    # neck bent where the skull should.
    bones, names = metarig_bones(smpl_heads())
    rig = make_rig(bones)
    assert detect_preset(rig) is None
    m = auto_map(rig)
    assert m == names
    poses, trans = dance(T=8, seed=4)
    assert limb_cosines(rig, Retargeter(rig, m), poses, trans).min() > 0.9999


def makehuman_bones() -> tuple[list, dict]:
    """MakeHuman's default skeleton (MPFB): a root at the pelvis, every limb segment split in two
    bones with no "twist" in their names (upperleg01/02, lowerleg01/02, upperarm01/02,
    lowerarm01/02, the first thigh bone short), pelvis.L between the root and the thigh, shoulder01
    between the clavicle and the upper arm, five toe bones on each foot."""
    h = smpl_heads()
    J = JOINT_INDEX
    at = lambda a, b, t: h[J[a]] + t * (h[J[b]] - h[J[a]])  # noqa: E731
    bones = [("root", None, h[0], h[0] + [0, 0.08, 0])]
    spine = [h[0], at("pelvis", "spine1", 1.0), at("spine1", "spine2", 0.5), h[J["spine2"]], h[J["spine3"]], h[J["neck"]]]
    parent = "root"
    for k, name in enumerate(("spine05", "spine04", "spine03", "spine02", "spine01")):
        bones.append((name, parent, spine[k], spine[k + 1]))
        parent = name
    bones += [("neck01", "spine01", h[J["neck"]], at("neck", "head", 0.5)),
              ("neck02", "neck01", at("neck", "head", 0.5), h[J["head"]]),
              ("head", "neck02", h[J["head"]], h[J["head"]] + [0, 0, 0.2])]
    for side, s in (("left", "L"), ("right", "R")):
        j = lambda n: f"{side}_{n}"  # noqa: E731
        bones += [(f"pelvis.{s}", "root", h[0], h[J[j("hip")]]),
                  (f"upperleg01.{s}", f"pelvis.{s}", h[J[j("hip")]], at(j("hip"), j("knee"), 0.2)),
                  (f"upperleg02.{s}", f"upperleg01.{s}", at(j("hip"), j("knee"), 0.2), h[J[j("knee")]]),
                  (f"lowerleg01.{s}", f"upperleg02.{s}", h[J[j("knee")]], at(j("knee"), j("ankle"), 0.5)),
                  (f"lowerleg02.{s}", f"lowerleg01.{s}", at(j("knee"), j("ankle"), 0.5), h[J[j("ankle")]]),
                  (f"foot.{s}", f"lowerleg02.{s}", h[J[j("ankle")]], at(j("ankle"), j("foot"), 0.5))]
        for toe in range(1, 6):
            base = h[J[j("foot")]] + [(toe - 3) * 0.015 * (1 if side == "left" else -1), 0, 0]
            bones.append((f"toe{toe}-1.{s}", f"foot.{s}", base, base + [0, -0.04, 0]))
        bones += [(f"clavicle.{s}", "spine01", h[J[j("collar")]], at(j("collar"), j("shoulder"), 0.6)),
                  (f"shoulder01.{s}", f"clavicle.{s}", at(j("collar"), j("shoulder"), 0.6), h[J[j("shoulder")]]),
                  (f"upperarm01.{s}", f"shoulder01.{s}", h[J[j("shoulder")]], at(j("shoulder"), j("elbow"), 0.3)),
                  (f"upperarm02.{s}", f"upperarm01.{s}", at(j("shoulder"), j("elbow"), 0.3), h[J[j("elbow")]]),
                  (f"lowerarm01.{s}", f"upperarm02.{s}", h[J[j("elbow")]], at(j("elbow"), j("wrist"), 0.5)),
                  (f"lowerarm02.{s}", f"lowerarm01.{s}", at(j("elbow"), j("wrist"), 0.5), h[J[j("wrist")]]),
                  (f"wrist.{s}", f"lowerarm02.{s}", h[J[j("wrist")]], h[J[j("hand")]])]
    rng = np.random.default_rng(8)
    return [(n, p, hd, tl, rng.uniform(-np.pi, np.pi), True) for n, p, hd, tl in bones], {}


def test_makehuman_default_skeleton_maps_its_whole_limbs():
    # QA: MPFB's default skeleton went to the hierarchy mapping, which took the longest pair of
    # bones in each limb: the hip on upperleg02 (the thigh bent in its middle), the ankle on
    # lowerleg02 (mid-shin), the collar on upperarm01. Its names are a preset now.
    rig = make_rig(makehuman_bones()[0])
    assert detect_preset(rig) == "makehuman"
    m = auto_map(rig)
    for side, s in (("left", "L"), ("right", "R")):
        assert (m[f"{side}_hip"], m[f"{side}_knee"], m[f"{side}_ankle"]) == (f"upperleg01.{s}", f"lowerleg01.{s}", f"foot.{s}")
        assert (m[f"{side}_collar"], m[f"{side}_shoulder"], m[f"{side}_elbow"], m[f"{side}_wrist"]) == \
            (f"clavicle.{s}", f"upperarm01.{s}", f"lowerarm01.{s}", f"wrist.{s}")
        assert f"{side}_foot" not in m            # one of its five toes is no ball of the foot
    ret = Retargeter(rig, m)
    poses, trans = dance(T=8, seed=5)
    assert limb_cosines(rig, ret, poses, trans).min() > 0.9999
    # Standing at rest, its toes stay on the floor (no toe joint is mapped: the floor is the toes').
    rig.stands_at_rest = True
    ret = Retargeter(rig, m)
    out = ret.to_rig(np.zeros((1, 72)), np.array([[0.0, REST_PELVIS_HEIGHT, 0.0]]))
    assert abs(fk_world(rig, out.rotations, out.root_bone, out.root_location)[0, :, 2].min()) < 1e-9


def test_a_preset_that_names_the_legs_but_not_the_arms_gets_them_from_the_hierarchy():
    # QA: a SecondLife-style rig whose arms are lUpArm / lLoArm (the preset says lShldr /
    # lForeArm) matched the preset for its legs and spine: its arms hung still all dance.
    sl = {"pelvis": "hip", "spine1": "abdomen", "spine3": "chest", "neck": "neck", "head": "head"}
    for side, s in (("left", "l"), ("right", "r")):
        sl.update({f"{side}_hip": f"{s}Thigh", f"{side}_knee": f"{s}Shin", f"{side}_ankle": f"{s}Foot",
                   f"{side}_foot": f"{s}Toe", f"{side}_collar": f"{s}Collar", f"{side}_shoulder": f"{s}UpArm",
                   f"{side}_elbow": f"{s}LoArm", f"{side}_wrist": f"{s}Hand"})
    rig = make_rig(humanoid(sl, smpl_heads(), np.random.default_rng(2)))
    assert detect_preset(rig) == "secondlife"
    assert auto_map(rig) == sl


@pytest.mark.parametrize("turn", [
    [[1, 0, 0], [0, 0, -1], [0, 1, 0]],     # lying on its back (Y up exported, read as Z up)
    [[1, 0, 0], [0, 0, 1], [0, -1, 0]],     # lying face down
])
def test_an_unnamed_character_lying_down_is_refused_as_not_upright(turn):
    # QA: mapped from its hierarchy, a character lying down was refused with "bone 'bone.025' is
    # mapped twice (left_hip and spine1)", which says nothing of what is wrong.
    source = make_rig(humanoid(MIXAMO, smpl_heads(), np.random.default_rng(0)))
    obj = np.eye(4)
    obj[:3, :3] = np.array(turn, float)
    rig = Rig([f"b{i}" for i in range(len(source.names))], source.parents, source.rest, source.lengths,
              source.deform, obj)
    with pytest.raises(RetargetError, match="upright") as e:
        auto_map(rig)
    assert "\n" not in str(e.value)


def test_joints_a_preset_leaves_out_are_read_from_the_hierarchy():
    # QA: a rig named like Unreal's but with forearm_l, toes_l and neck (Unreal: lowerarm_l, ball_l,
    # neck_01) matched the preset for 17 joints: its elbows stayed straight all dance (the dance's
    # bent up to 174 degrees), its toes and neck still, without a word.
    ue = {j: b.replace("lowerarm", "forearm").replace("ball", "toes").replace("neck_01", "neck")
          for j, b in load_preset("unreal_ue4").items()}
    rig = make_rig(humanoid(ue, smpl_heads(), np.random.default_rng(7)))
    assert detect_preset(rig) == "unreal_ue4"
    assert auto_map(rig) == ue


def split_in_halves(bones: list, split: set) -> list:
    """`bones` with each bone named in `split` cut in two at its middle (name, name + "_b"),
    its children hung from the second half: a limb segment with a twist bone in line."""
    out = []
    for name, parent, head, tail, roll, deform in bones:
        parent = parent + "_b" if parent in split else parent
        if name in split:
            mid = (np.asarray(head, float) + tail) / 2
            out += [(name, parent, head, mid, roll, deform), (name + "_b", name, mid, tail, roll, deform)]
        else:
            out.append((name, parent, head, tail, roll, deform))
    return out


@pytest.mark.parametrize("heads", [smpl_heads(), a_pose_heads()], ids=["T-pose", "A-pose"])
def test_limb_segments_split_in_two_without_a_name_saying_so_bend_at_their_joints(heads):
    # QA: upper arm, forearm and thigh each split in two (Bone, Bone.001, ...): the hip was mapped
    # to the thigh's lower half, the elbow to the upper arm's, the wrist to the forearm; the
    # character bent in the middle of its upper arm (up to 174 degrees) and thigh.
    split = {MIXAMO[j] for j in ("left_shoulder", "left_elbow", "left_hip", "right_shoulder", "right_elbow", "right_hip")}
    source = make_rig(split_in_halves(humanoid(MIXAMO, heads, np.random.default_rng(5)), split))
    names = [f"Bone.{i:03d}" for i in range(len(source.names))]
    rig = Rig(names, source.parents, source.rest, source.lengths, source.deform)
    want = {j: names[source.names.index(b)] for j, b in MIXAMO.items()}
    assert detect_preset(rig) is None
    assert auto_map(rig) == want
    ret = Retargeter(rig, want)
    poses, trans = dance(T=8, seed=3)
    assert limb_cosines(rig, ret, poses, trans).min() > 0.999


def test_a_straight_arm_is_not_taken_for_a_split_one():
    # The halves' rule (two bones alike in length, in line) must not merge a T-pose's straight
    # upper arm and forearm, nor a collar in line with the upper arm, into one segment.
    rig = make_rig(humanoid(MIXAMO, smpl_heads(), np.random.default_rng(1)))
    names = [f"b{i}" for i in range(len(rig.names))]
    unnamed = Rig(names, rig.parents, rig.rest, rig.lengths, rig.deform)
    assert auto_map(unnamed) == {j: names[rig.names.index(b)] for j, b in MIXAMO.items()}
