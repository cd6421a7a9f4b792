"""Dancing on the animator's own character (blender_addon/rig_io.py), in the real bpy module.

The characters are built here: a Rigify rig generated from Blender's own human metarig (in a
child process, saved as a .blend: a process that ran rigify_generate can hang at exit), a
Mixamo-named T-pose skeleton with random bone rolls and Euler bones, an Unreal-named A-pose
skeleton with a five-bone spine, a Mixamo rig in centimetres inside a rotated, scaled object (as
an FBX import leaves it), and the armature Blender builds when it imports the engine's BVH.
Generation uses the session's tiny untrained checkpoint and 2 steps: the retargeting's job is
to follow whatever dance the engine makes. Checks are on the EVALUATED pose (after frame_set)."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from mathutils import Euler, Vector  # noqa: E402  (after bpy)

from blender_addon import keys, operators, rig_io, runner, scene_io, takes  # noqa: E402
from blender_addon.rig_ui import MAP_PROPERTY  # noqa: E402
from engine.errors import EngineError, RootHeightNote  # noqa: E402
from engine.body.motion import Motion  # noqa: E402
from engine.body.skeleton import JOINT_INDEX, REST_POSITIONS, joint_positions  # noqa: E402
from addon_helpers import enabled_addon, make_rigify_blend  # noqa: E402
from test_addon_scene_io import add_wav  # noqa: E402

C = scene_io.C   # SMPL Y up -> Blender Z up
FLOOR = float(-REST_POSITIONS[:, 1].min())
J = {name: REST_POSITIONS[i] + (0.0, FLOOR, 0.0) for name, i in JOINT_INDEX.items()}  # Y up, feet on 0

# SMPL limbs whose direction the tests compare (joint -> child joint).
LIMBS = (("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
         ("right_knee", "right_ankle"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
         ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"))


@pytest.fixture
def addon(tiny_weights):
    with enabled_addon(tiny_weights) as scene:
        scene.render.fps, scene.render.fps_base = 30, 1.0
        yield scene


# --- Building characters ----------------------------------------------------------------------

def _zup(p) -> np.ndarray:
    return C @ np.asarray(p, np.float64)


def build_armature(name, bones, rolls=None, euler=(), y_up_cm=False, deform_all=True):
    """An armature object from `bones`: [(name, parent, head, tail)], positions in SMPL's Y-up
    metres (feet on the floor). Z up in Blender unless `y_up_cm` (then Y up, centimetres: the
    object is rotated and scaled as an FBX import leaves a Mixamo character)."""
    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode='EDIT')
    made = {}
    conv = (lambda p: 100.0 * np.asarray(p)) if y_up_cm else _zup
    for bone, parent, head, tail in bones:
        eb = arm.edit_bones.new(bone)
        eb.head, eb.tail = conv(head), conv(tail)
        eb.roll = (rolls or {}).get(bone, 0.0)
        eb.use_deform = deform_all
        if parent:
            eb.parent = made[parent]
        made[bone] = eb
    bpy.ops.object.mode_set(mode='OBJECT')
    for pb in obj.pose.bones:
        pb.rotation_mode = 'XZY' if pb.name in euler else 'QUATERNION'
    return obj


def _up(p, d=0.12):
    return np.asarray(p) + (0.0, d, 0.0)


def _side(p, d):
    return np.asarray(p) + (d, 0.0, 0.0)


def _fwd(p, d=0.06):
    return np.asarray(p) + (0.0, 0.0, d)   # SMPL faces +Z


def mixamo_bones(prefix="mixamorig:", arm_down=0.0, joints=None):
    """A Mixamo-named skeleton on SMPL's joints (or `joints`; T-pose; arms lowered by `arm_down`
    radians), with fingers and a tail bone that no SMPL joint maps to."""
    j = dict(joints or J)
    for side, sign in (("left", 1.0), ("right", -1.0)):   # lower the arms about the shoulder
        s = j[f"{side}_shoulder"]
        c, si = math.cos(arm_down), math.sin(arm_down)
        for n in (f"{side}_elbow", f"{side}_wrist", f"{side}_hand"):
            d = j[n] - s
            j[n] = s + np.array([c * d[0] + sign * si * d[1], -sign * si * d[0] + c * d[1], d[2]])
    P = prefix
    out = [(P + "Hips", None, j["pelvis"], j["spine1"]), (P + "Spine", P + "Hips", j["spine1"], j["spine2"]),
           (P + "Spine1", P + "Spine", j["spine2"], j["spine3"]), (P + "Spine2", P + "Spine1", j["spine3"], j["neck"]),
           (P + "Neck", P + "Spine2", j["neck"], j["head"]), (P + "Head", P + "Neck", j["head"], _up(j["head"], 0.2)),
           ("Tail", P + "Hips", j["pelvis"], j["pelvis"] + (0.0, -0.1, -0.3))]
    for side, S in (("left", "Left"), ("right", "Right")):
        hand = j[f"{side}_hand"]
        out += [(P + f"{S}Shoulder", P + "Spine2", j[f"{side}_collar"], j[f"{side}_shoulder"]),
                (P + f"{S}Arm", P + f"{S}Shoulder", j[f"{side}_shoulder"], j[f"{side}_elbow"]),
                (P + f"{S}ForeArm", P + f"{S}Arm", j[f"{side}_elbow"], j[f"{side}_wrist"]),
                (P + f"{S}Hand", P + f"{S}ForeArm", j[f"{side}_wrist"], hand),
                (P + f"{S}HandIndex1", P + f"{S}Hand", hand, hand + (hand - j[f"{side}_wrist"]) * 0.5),
                (P + f"{S}UpLeg", P + "Hips", j[f"{side}_hip"], j[f"{side}_knee"]),
                (P + f"{S}Leg", P + f"{S}UpLeg", j[f"{side}_knee"], j[f"{side}_ankle"]),
                (P + f"{S}Foot", P + f"{S}Leg", j[f"{side}_ankle"], j[f"{side}_foot"]),
                (P + f"{S}ToeBase", P + f"{S}Foot", j[f"{side}_foot"], _fwd(j[f"{side}_foot"]) + (0, -0.02, 0))]
    return out


def unreal_bones(arm_down=math.radians(45)):
    """A UE5-mannequin-named A-pose skeleton: a root bone on the floor, five spine bones, two
    neck bones."""
    base = {n: (h, t) for n, _, h, t in mixamo_bones("", arm_down)}
    j = {n: base[m][0] for n, m in (("pelvis", "Hips"), ("s1", "Spine"), ("s2", "Spine1"), ("s3", "Spine2"),
                                     ("neck", "Neck"), ("head", "Head"))}
    mid = lambda a, b: (np.asarray(a) + np.asarray(b)) / 2  # noqa: E731
    spine = [j["s1"], mid(j["s1"], j["s2"]), j["s2"], mid(j["s2"], j["s3"]), j["s3"], j["neck"]]
    out = [("root", None, np.zeros(3), (0.0, 0.0, -0.2)), ("pelvis", "root", j["pelvis"], j["s1"])]
    for i in range(5):
        out.append((f"spine_0{i + 1}", "pelvis" if i == 0 else f"spine_0{i}", spine[i], spine[i + 1]))
    out += [("neck_01", "spine_05", j["neck"], mid(j["neck"], j["head"])),
            ("neck_02", "neck_01", mid(j["neck"], j["head"]), j["head"]),
            ("head", "neck_02", j["head"], _up(j["head"], 0.2))]
    for S, s in (("Left", "l"), ("Right", "r")):
        for ue, mx, parent in (("clavicle", "Shoulder", "spine_05"), ("upperarm", "Arm", "clavicle"),
                               ("lowerarm", "ForeArm", "upperarm"), ("hand", "Hand", "lowerarm"),
                               ("thigh", "UpLeg", "pelvis"), ("calf", "Leg", "thigh"), ("foot", "Foot", "calf"),
                               ("ball", "ToeBase", "foot")):
            h, t = base[S + mx]
            out.append((f"{ue}_{s}", parent if parent in ("spine_05", "pelvis") else f"{parent}_{s}", h, t))
    return out


def long_shin_bones(prefix="mixamorig:"):
    """mixamo_bones on other legs: thighs 0.8x and shins 1.35x SMPL's, hips raised to stand."""
    j = {k: v.copy() for k, v in J.items()}
    for side in ("left", "right"):
        hip, knee, ankle, foot = (j[f"{side}_{n}"].copy() for n in ("hip", "knee", "ankle", "foot"))
        j[f"{side}_knee"] = hip + 0.8 * (knee - hip)
        j[f"{side}_ankle"] = j[f"{side}_knee"] + 1.35 * (ankle - knee)
        j[f"{side}_foot"] = j[f"{side}_ankle"] + (foot - ankle)
    low = min(v[1] for v in j.values())
    return mixamo_bones(prefix, joints={k: v - (0.0, low, 0.0) for k, v in j.items()})


def rest_roll(rng, bones):
    return {b[0]: float(rng.uniform(-math.pi, math.pi)) for b in bones}


@pytest.fixture(scope="module")
def rigify_blend(tmp_path_factory):
    """A .blend holding a Rigify rig generated from Blender's human metarig (made once)."""
    path = tmp_path_factory.mktemp("rigify") / "rigify.blend"
    make_rigify_blend(path)
    return path


def load_rigify(path):
    """Append the Rigify rig object into the current (add-on enabled) scene."""
    with bpy.data.libraries.load(str(path), link=False) as (src, dst):
        dst.objects = [n for n in src.objects if n == "rig"]
    obj = dst.objects[0]
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    return obj


# --- Checks -----------------------------------------------------------------------------------

def evaluated_points(obj, frames, bones) -> np.ndarray:
    """(F,len(bones),2,3) world head and tail of `bones` on each frame, as evaluated."""
    scene = bpy.context.scene
    out = np.empty((len(frames), len(bones), 2, 3))
    for k, f in enumerate(frames):
        scene.frame_set(int(f))
        mw = np.array(obj.matrix_world)
        for i, b in enumerate(bones):
            pb = obj.pose.bones[b]
            for e, p in enumerate((pb.head, pb.tail)):
                out[k, i, e] = mw[:3, :3] @ np.array(p) + mw[:3, 3]
    return out


def limb_cosines(obj, motion, frames, limb_bones, yaw=0.0) -> np.ndarray:
    """(F,8) cosine between each character limb (world, from the evaluated bones: limb_bones[i]
    = (bone whose head starts it, bone whose tail ends it)) and the SMPL dance's limb (from
    engine.body.skeleton.joint_positions, turned to Blender's Z up and the character's facing)."""
    pos = joint_positions(motion.poses, motion.trans) @ C.T                # (T,24,3) Z up
    R = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
    want = np.stack([pos[:, JOINT_INDEX[b]] - pos[:, JOINT_INDEX[a]] for a, b in LIMBS], 1) @ R.T
    starts = [s for s, _ in limb_bones]
    ends = [e for _, e in limb_bones]
    got_s = evaluated_points(obj, frames, starts)[:, :, 0]
    got_e = evaluated_points(obj, frames, ends)[:, :, 1]
    got = got_e - got_s
    rows = np.asarray(frames) - frames[0]
    w = want[rows]
    return np.sum(got * w, -1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(w, axis=-1))


def turn_errors(obj, motion, frames, joints, yaw=0.0) -> np.ndarray:
    """(F,len(joints)) degrees between how each joint's mapped bone turned in the world since the
    first of `frames` and how the SMPL joint turned (engine.outputs.retarget.smpl_global_rotations):
    the whole rotation, twist about the limb included, whatever the rest pose and rolls."""
    from engine.outputs.retarget import smpl_global_rotations
    bone_map = rig_io.check_character(obj)
    G = smpl_global_rotations(motion.poses)[np.asarray(frames) - frames[0]][:, [JOINT_INDEX[j] for j in joints]]
    R = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]) @ C
    want = R @ G @ np.swapaxes(G[:1], -1, -2) @ R.T
    got = np.empty_like(want)
    for k, f in enumerate(frames):
        bpy.context.scene.frame_set(int(f))
        mw = np.array(obj.matrix_world)[:3, :3]
        for i, j in enumerate(joints):
            m = mw @ np.array(obj.pose.bones[bone_map[j]].matrix)[:3, :3]
            got[k, i] = m / np.linalg.norm(m, axis=0)
    got = got @ np.swapaxes(got[:1], -1, -2)
    cos = (np.einsum("fjab,fjab->fj", got, want) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def lowest_deforming_z(obj, frames) -> np.ndarray:
    """(F,) world height of the lowest deforming joint (bone head) on each frame."""
    names = [b.name for b in obj.data.bones if b.use_deform]
    return evaluated_points(obj, frames, names)[:, :, 0, 2].min(axis=1)


def snapshot(action) -> dict:
    """Every F-curve's keys of `action`: {(path, index): [(frame, value, type), ...]}."""
    slot = next(iter(action.slots)) if getattr(action, "slots", None) else None
    return {(fc.data_path, fc.array_index): [(k.co[0], k.co[1], k.type) for k in fc.keyframe_points]
            for fc in scene_io.compat.action_fcurves(action, slot)}


def fcurves_of(action, obj):
    return {(fc.data_path, fc.array_index): fc for fc in
            scene_io.compat.action_fcurves(action, scene_io.compat.object_slot(obj, action))}


def stage_song(scene, tmp_path, seconds=2.0, strip_frame=1):
    strip = scene_io.add_sound_strip(scene, str(add_wav(tmp_path, seconds)), frame_start=strip_frame)
    first, end = scene_io.compat.strip_range(strip)
    return strip, first, end - 1


def dance(obj, scene, first, last, keep_parts=(), keep_root=False):
    """Generate on `obj` as the Generate operator does, in its two halves (runner.run_sync), to
    keep the SMPL dance for the checks: (motion, action)."""
    settings = scene.dance
    settings.armature, settings.steps, settings.device = obj, 2, 'CPU'
    settings.quality = 'BEST'                 # the tiny test network is no student: its teacher path, 2 steps
    settings.audio_source, settings.use_strip_range = 'STRIP', True
    for part in ("left_arm", "right_arm", "legs", "torso", "head"):
        setattr(settings, "keep_" + part, part in keep_parts)
    settings.keep_root = keep_root
    request = operators.build_request(bpy.context)
    assert request.bone_map is not None and (request.frame_start, request.num_frames) == (first, last - first + 1)
    motion = runner.generate(request)
    action = runner.apply(request, motion)
    return motion, action


def rest_floor_z(obj) -> float:
    """World height of the lowest deforming joint in the rest pose."""
    mw = obj.matrix_world
    return min((mw @ b.head_local).z for b in obj.data.bones if b.use_deform)


def dance_floor_z(obj) -> float:
    """Where the lowest deforming joint dances: a character with a body on the level it stands
    on at rest; a bare skeleton on its object's origin's."""
    return rest_floor_z(obj) if rig_io.deforms_a_body(obj) else obj.matrix_world.translation.z


def give_a_body(obj):
    """A mesh the armature deforms (a box, bound to the pelvis' bone by an Armature modifier)."""
    mesh = bpy.data.meshes.new(obj.name + "_body")
    mesh.from_pydata([(x, y, z) for x in (-0.1, 0.1) for y in (-0.1, 0.1) for z in (0.0, 0.2)], [], [])
    body = bpy.data.objects.new(obj.name + "_body", mesh)
    bpy.context.scene.collection.objects.link(body)
    body.modifiers.new("Armature", 'ARMATURE').object = obj
    return body


def assert_dances(obj, motion, first, limb_bones, yaw=0.0, every=3):
    frames = list(range(first, first + motion.num_frames, every))
    cos = limb_cosines(obj, motion, frames, limb_bones, yaw)
    assert cos.mean() >= 0.95, f"mean limb cosine {cos.mean():.3f}, worst limb means {cos.mean(0).round(3)}"
    # The mapped arm bones turn as SMPL's joints turn, twist about the limb included (legs: the
    # same but where planted feet are pinned on the character's own legs, a few degrees off).
    arms = turn_errors(obj, motion, frames, ["left_shoulder", "left_elbow", "right_shoulder", "right_elbow"], yaw)
    legs = turn_errors(obj, motion, frames, ["left_hip", "left_knee", "right_hip", "right_knee"], yaw)
    print(f"  turn error: arms max {arms.max():.3f} deg; legs mean {legs.mean():.3f}, max {legs.max():.3f} deg")
    assert arms.max() < 1.0 and legs.mean() < 2.0
    # The lowest deforming joint is on the floor, as the SMPL dance's lowest joint is (scaled).
    z = lowest_deforming_z(obj, frames) - dance_floor_z(obj)
    smpl_low = joint_positions(motion.poses, motion.trans)[:, :, 1].min(axis=1)[np.asarray(frames) - first]
    scale = rig_io.retargeter(obj, rig_io.check_character(obj)).scale
    height = scale * 1.7
    print(f"{obj.name}: mean cos {cos.mean():.4f}, lowest z {z.min():.4f} (SMPL's x scale {scale * smpl_low.min():.4f}), "
          f"per-frame floor gap max {np.abs(z - scale * smpl_low).max():.4f}, height ~{height:.2f}")
    assert abs(z.min()) < 0.02 * height
    # The root travels with the dance, scaled by the character's size, turned to where it faces.
    pelvis = rig_io.check_character(obj)["pelvis"]
    got = evaluated_points(obj, frames, [pelvis])[:, 0, 0, :2]
    R = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    want = (motion.trans[np.asarray(frames) - first] @ C.T)[:, :2] @ R.T * scale
    travel = np.abs((got - got[0]) - (want - want[0])).max()
    print(f"  root travel {np.linalg.norm(want - want[0], axis=1).max():.3f}, off by at most {travel:.4f}")
    assert travel < 0.03 * height
    assert np.abs(z - scale * smpl_low).max() < 0.01 * height
    return cos


def mixamo_limbs(P="mixamorig:"):
    return [(P + n, P + n) for n in ("LeftUpLeg", "LeftLeg", "RightUpLeg", "RightLeg", "LeftArm", "LeftForeArm",
                                     "RightArm", "RightForeArm")]


# --- Tests ------------------------------------------------------------------------------------

def test_mixamo_t_pose_with_rolls_and_euler_bones_dances_and_keeps_keys(addon, tmp_path):
    scene = addon
    rng = np.random.default_rng(3)
    bones = mixamo_bones()
    euler = {"mixamorig:LeftForeArm", "mixamorig:Spine1", "mixamorig:RightUpLeg", "mixamorig:LeftHandIndex1"}
    obj = build_armature("Character", bones, rest_roll(rng, bones), euler=euler)
    _, first, last = stage_song(scene, tmp_path)
    # The animator's keys: an Euler forearm on two frames, a full arm on one, a finger and a
    # tail animated on their own (no SMPL joint maps to them).
    pbs = obj.pose.bones
    pbs["mixamorig:LeftForeArm"].rotation_euler = (0.3, -0.5, 0.8)
    pbs["mixamorig:LeftForeArm"].keyframe_insert("rotation_euler", frame=first + 10)
    pbs["mixamorig:LeftForeArm"].rotation_euler = (-0.2, 0.1, 0.4)
    pbs["mixamorig:LeftForeArm"].keyframe_insert("rotation_euler", frame=first + 30)
    pbs["mixamorig:RightArm"].rotation_quaternion = (0.9, 0.1, -0.3, 0.2)
    pbs["mixamorig:RightArm"].keyframe_insert("rotation_quaternion", frame=first + 20)
    for f, angle in ((first, 0.0), (first + 25, 0.7), (last, -0.4)):
        pbs["mixamorig:LeftHandIndex1"].rotation_euler = (angle, 0.0, 0.0)
        pbs["mixamorig:LeftHandIndex1"].keyframe_insert("rotation_euler", frame=f)
        pbs["Tail"].rotation_quaternion = (1.0, angle, 0.0, 0.0)
        pbs["Tail"].keyframe_insert("rotation_quaternion", frame=f)
        pbs["Tail"].location = (0.0, angle, 0.0)
        pbs["Tail"].keyframe_insert("location", frame=f)
    mine = obj.animation_data.action
    before = snapshot(mine)
    modes = {pb.name: pb.rotation_mode for pb in pbs}

    motion, action = dance(obj, scene, first, last)
    assert action != mine and obj.animation_data.action == action
    assert_dances(obj, motion, first, mixamo_limbs())
    assert snapshot(mine) == before                                     # the previous action is kept
    assert {pb.name: pb.rotation_mode for pb in pbs} == modes           # rotation modes unchanged
    new = fcurves_of(action, obj)
    for (path, i), old_keys in before.items():
        if "HandIndex1" in path or "Tail" in path:                      # unmapped bones: untouched
            assert [(k.co[0], k.co[1], k.type) for k in new[(path, i)].keyframe_points] == old_keys
        else:                                                           # the animator's keys, exactly
            for frame, value, _ in old_keys:
                assert abs(new[(path, i)].evaluate(frame) - value) < 1e-5, (path, i, frame)
    # ... and still the animator's (ordinary keys), so the next Generate keeps them again.
    assert rig_io.count_character_keys(obj, rig_io.check_character(obj), first, last) == (3, 3)   # mapped bones only


def test_unreal_a_pose_with_long_spine(addon, tmp_path):
    scene = addon
    obj = build_armature("Mannequin", unreal_bones(), rest_roll(np.random.default_rng(5), unreal_bones()))
    obj.data.bones["root"].use_deform = False   # the floor-level root moves nothing
    _, first, last = stage_song(scene, tmp_path)
    motion, _ = dance(obj, scene, first, last)
    limbs = [(a, a) for a in ("thigh_l", "calf_l", "thigh_r", "calf_r", "upperarm_l", "lowerarm_l",
                              "upperarm_r", "lowerarm_r")]
    assert_dances(obj, motion, first, limbs)
    # The five spine bones share the spine's bend: none stands still while the others turn.
    q = np.array([[obj.pose.bones[f"spine_0{i}"].rotation_quaternion[0] for i in range(1, 6)]])
    assert (q < 1.0 - 1e-9).all()


def test_rotated_scaled_object_in_centimetres(addon, tmp_path):
    scene = addon
    P = "mixamorig1:"
    obj = build_armature("FBX", mixamo_bones(P), rest_roll(np.random.default_rng(9), mixamo_bones(P)), y_up_cm=True)
    yaw = math.radians(30)
    obj.rotation_euler = (math.radians(90), 0.0, yaw)
    obj.scale = (0.01, 0.01, 0.01)
    obj.location = (2.0, -1.0, 0.0)
    bpy.context.view_layer.update()
    _, first, last = stage_song(scene, tmp_path)
    motion, _ = dance(obj, scene, first, last)
    assert_dances(obj, motion, first, mixamo_limbs(P), yaw=yaw)
    # The panel's Radius is a distance in the scene: the same character at twice the size gets
    # half the dance's metres for it.
    scene.dance.stage, scene.dance.stage_radius = 'RADIUS', 1.0
    radius = operators.build_request(bpy.context).stage_radius
    assert radius == pytest.approx(1.0, rel=0.05)       # SMPL-sized: about one metre
    obj.scale = (0.02, 0.02, 0.02)
    bpy.context.view_layer.update()
    assert operators.build_request(bpy.context).stage_radius == pytest.approx(radius / 2, rel=1e-6)
    # A character of a few centimetres keeps to a stage of a few: the field took no less than 5 cm (QA).
    scene.dance.stage_radius = 0.02
    assert operators.build_request(bpy.context).stage_radius == pytest.approx(radius / 2 * 0.02, rel=1e-6)


def test_a_character_on_a_lifted_turned_parent_dances_on_its_own_level(addon, tmp_path):
    # A character placed on a stage: parented to an empty lifted 0.5, turned and scaled. It
    # dances on the level it stands on (its origin's), not sunk to the world's z = 0.
    scene = addon
    stage = bpy.data.objects.new("Stage", None)
    scene.collection.objects.link(stage)
    yaw = math.radians(45)
    stage.location, stage.rotation_euler, stage.scale = (3.0, 0.0, 0.5), (0.0, 0.0, yaw), (2.0, 2.0, 2.0)
    obj = build_armature("OnStage", mixamo_bones())
    obj.parent = stage
    bpy.context.view_layer.update()
    assert rest_floor_z(obj) == pytest.approx(0.5, abs=1e-6)
    _, first, last = stage_song(scene, tmp_path)
    motion, _ = dance(obj, scene, first, last)
    assert_dances(obj, motion, first, mixamo_limbs(), yaw=yaw)


def test_a_character_with_its_origin_at_the_hips_dances_on_the_floor(addon, tmp_path):
    # QA: rigged with its object's origin at the hips (bones below it, its body standing on
    # z = 0 at rest), a character danced 95 cm in the air: the floor was the origin's level.
    scene = addon
    obj = build_armature("HipsOrigin", mixamo_bones(joints={k: v - [0.0, 0.95, 0.0] for k, v in J.items()}))
    obj.location.z = 0.95
    give_a_body(obj)
    bpy.context.view_layer.update()
    assert rest_floor_z(obj) == pytest.approx(0.0, abs=1e-6) and dance_floor_z(obj) == rest_floor_z(obj)
    _, first, last = stage_song(scene, tmp_path)
    motion, _ = dance(obj, scene, first, last)
    assert_dances(obj, motion, first, mixamo_limbs())
    assert abs(lowest_deforming_z(obj, range(first, last + 1)).min()) < 0.03


def test_an_unevenly_scaled_character_gets_a_note(addon, tmp_path):
    # QA: under a parent scaled (1, 1, 1.3) the limbs pointed 4.5 degrees off on average (8.8 at
    # worst) with nothing said; no rotation can undo a shear. Even scale says nothing.
    scene = addon
    stage = bpy.data.objects.new("Squash", None)
    scene.collection.objects.link(stage)
    obj = build_armature("Stretched", mixamo_bones())
    obj.parent = stage
    stage_song(scene, tmp_path)
    scene.dance.armature, scene.dance.use_strip_range = obj, True
    for scale, noted in (((2.0, 2.0, 2.0), False), ((1.0, 1.0, 1.3), True)):
        stage.scale = scale
        bpy.context.view_layer.update()
        notes = operators.build_request(bpy.context).notes
        assert any("scaled unevenly" in n for n in notes) == noted, notes


def test_constraints_that_override_the_danced_bones_get_a_note(addon, tmp_path):
    # QA: a hand-made leg IK (targets on the feet, chain 2 on the shins) kept the feet where they
    # were while the hips danced 1 m away, and the status said only "done". The rig is the
    # animator's: the add-on says so, names them, and changes nothing.
    scene = addon
    obj = build_armature("LegIK", mixamo_bones())
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode='EDIT')
    target = obj.data.edit_bones.new("IK_Left")
    target.head = obj.data.edit_bones["mixamorig:LeftFoot"].head
    target.tail = target.head + Vector((0, 0.1, 0))
    target.use_deform = False
    bpy.ops.object.mode_set(mode='OBJECT')
    stage_song(scene, tmp_path)
    scene.dance.armature, scene.dance.use_strip_range = obj, True

    def constraint_notes():
        return [n for n in operators.build_request(bpy.context).notes if "override bones the dance moves" in n]
    assert constraint_notes() == []
    helper_ik = obj.pose.bones["IK_Left"].constraints.new('DAMPED_TRACK')       # on a bone the dance does not key
    helper_ik.target = obj
    assert constraint_notes() == []
    ik = obj.pose.bones["mixamorig:LeftLeg"].constraints.new('IK')
    ik.target, ik.subtarget, ik.chain_count = obj, "IK_Left", 2
    (note,) = constraint_notes()
    assert "IK on 'mixamorig:LeftLeg'" in note and "'LegIK'" in note, note
    ik.mute = True                                        # muted, it overrides nothing
    assert constraint_notes() == []


def test_the_active_body_mesh_picks_its_armature(addon, tmp_path):
    # Animators click the body, not the bones: with no dancer picked in the panel, the active
    # mesh's Armature modifier names the dancer.
    scene = addon
    obj = build_armature("Skinned", mixamo_bones())
    body = bpy.data.objects.new("Body", bpy.data.meshes.new("Body"))
    scene.collection.objects.link(body)
    body.modifiers.new("Armature", 'ARMATURE').object = obj
    bpy.context.view_layer.objects.active = body
    assert operators.dancer(bpy.context) is obj
    body.modifiers.clear()
    assert operators.dancer(bpy.context) is None          # a plain mesh names no dancer
    body.parent = obj
    assert operators.dancer(bpy.context) is obj           # and so does its armature parent
    stage_song(scene, tmp_path)
    scene.dance.steps, scene.dance.quality, scene.dance.device = 2, 'BEST', 'CPU'
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert obj.animation_data.action is not None and body.animation_data is None


def test_rigify_rig_dances_through_its_fk_controls(addon, tmp_path, rigify_blend):
    scene = addon
    obj = load_rigify(rigify_blend)
    _, first, last = stage_song(scene, tmp_path)
    pbs = obj.pose.bones
    pbs["f_index.01.L"].rotation_quaternion = (0.9, 0.3, 0.0, 0.0)   # a finger the animator posed
    pbs["f_index.01.L"].keyframe_insert("rotation_quaternion", frame=first + 5)
    for name in ("hips", "chest"):   # controls the FK chains follow through constraints
        pbs[name].rotation_quaternion = (0.95, 0.2, 0.1, -0.2)
        pbs[name].keyframe_insert("rotation_quaternion", frame=first + 8)
    mine = obj.animation_data.action
    before = snapshot(mine)
    ik_before = pbs["thigh_parent.L"]["IK_FK"]   # Rigify's default: IK
    motion, action = dance(obj, scene, first, last)
    limbs = [(f"DEF-{a}", f"DEF-{a}.001") for a in ("thigh.L", "shin.L", "thigh.R", "shin.R", "upper_arm.L",
                                                     "forearm.L", "upper_arm.R", "forearm.R")]
    assert_dances(obj, motion, first, limbs)
    assert snapshot(mine) == before
    new = fcurves_of(action, obj)
    assert [tuple(k.co) for k in new[('pose.bones["f_index.01.L"].rotation_quaternion', 1)].keyframe_points] == \
        [(first + 5, pytest.approx(0.3))]
    # FK is keyed in the take only: back on the animator's own action, the switches are as they were.
    switch = new[('pose.bones["thigh_parent.L"]["IK_FK"]', 0)]
    assert switch.evaluate(first + 10) == 1.0
    # Held over the whole dance by a generated key at each end (Blender 4.2.0's keyframe insert
    # dropped the second one, a key that left the flat curve unchanged), and beyond it: with no
    # animation of the animator's beside the dance, the take holds the dance's ends there, on FK
    # (back on IK, a dance that travelled left the limbs stretching to their targets: 47 m/s).
    assert [(k.co[0], k.co[1], k.type, k.interpolation) for k in switch.keyframe_points] == \
        [(first, 1.0, 'GENERATED', 'CONSTANT'), (last, 1.0, 'GENERATED', 'CONSTANT')]
    takes.use_action(obj, mine)
    scene.frame_set(first)
    assert ('pose.bones["thigh_parent.L"]["IK_FK"]', 0) not in fcurves_of(mine, obj)
    assert pbs["thigh_parent.L"]["IK_FK"] == ik_before and pbs["torso"]["neck_follow"] == 0.5


def test_rigify_head_keyed_with_the_rigs_own_follows_comes_out_as_keyed(addon, tmp_path, rigify_blend):
    # Rigify's torso has neck_follow 0.5 and head_follow 0: the neck and head controls then hang
    # partly from the torso, not only from the spine. Takes used to switch both to 1, which showed
    # the keyed channel values as another pose (QA: the head 30-102 degrees off the key); the
    # maths now models the Copy Rotations the follows drive, and the take leaves them alone.
    scene = addon
    obj = load_rigify(rigify_blend)
    _, first, last = stage_song(scene, tmp_path)
    pbs = obj.pose.bones
    assert (pbs["torso"]["neck_follow"], pbs["torso"]["head_follow"]) == (0.5, 0.0)
    key = first + 10
    pbs["torso"].keyframe_insert("location", frame=key)          # the pelvis placed: the chain is the keys'
    for name, q in (("torso", (0.98, 0.0, 0.0, 0.2)), ("spine_fk.002", (0.95, 0.25, 0.1, 0.0)),
                    ("spine_fk.003", (0.95, 0.1, 0.0, 0.25)), ("neck", (0.97, 0.1, 0.2, 0.0)), ("head", (0.95, -0.2, 0.1, 0.2))):
        pbs[name].rotation_mode = 'QUATERNION'
        pbs[name].rotation_quaternion = q
        pbs[name].keyframe_insert("rotation_quaternion", frame=key)
    mine = obj.animation_data.action
    before = snapshot(mine)
    scene.frame_set(key)
    keyed = {n: np.array(pbs[n].matrix) for n in ("neck", "head", "DEF-spine.004", "DEF-spine.005", "DEF-spine.006")}
    motion, _ = dance(obj, scene, first, last)
    # Between the keys the neck and head turn as the dance's do: the maths is Blender's here too.
    assert turn_errors(obj, motion, list(range(first, last + 1, 3)), ["neck", "head"]).max() < 1.0
    scene.frame_set(key)
    for name, m in keyed.items():
        got = np.array(pbs[name].matrix)      # in the armature's space: rotation and place
        assert np.abs(got - m).max() < 1e-4, (name, got, m)
    assert (pbs["torso"]["neck_follow"], pbs["torso"]["head_follow"]) == (0.5, 0.0)   # the animator's
    assert snapshot(mine) == before                     # the animator's action as it was


def test_a_rigify_start_pose_held_before_the_song_is_left_as_from_standing(addon, tmp_path, rigify_blend):
    # QA: a Rigify rig in FK keyed on frame 1 (arms, a thigh, a shin, the neck, the torso moved),
    # the song from frame 30: the first step out of the held pose moved the right toe 31 cm (16
    # cm with the set-off alone, the thigh turning 11 degrees and the toe 44 in one frame): the
    # retarget's round trip and the feet fitted to the rig are not exact, and the animator's
    # values were written over the dance on their frame alone. The dance is now eased onto them.
    scene = addon
    obj = load_rigify(rigify_blend)
    scene.render.fps, scene.render.fps_base = 24, 1
    _, first, last = stage_song(scene, tmp_path, seconds=3.0, strip_frame=30)
    pbs = obj.pose.bones
    for name in ("thigh_parent.L", "thigh_parent.R", "upper_arm_parent.L", "upper_arm_parent.R"):
        pbs[name]["IK_FK"] = 1.0
    for name, q in (("upper_arm_fk.L", (0.92, 0.39, 0.0, 0.0)), ("forearm_fk.R", (0.88, 0.48, 0.0, 0.0)),
                    ("thigh_fk.L", (0.98, -0.2, 0.0, 0.0)), ("shin_fk.R", (0.97, 0.25, 0.0, 0.0)),
                    ("neck", (0.99, 0.1, 0.0, 0.0))):
        pbs[name].rotation_mode = 'QUATERNION'
        pbs[name].rotation_quaternion = q
        pbs[name].keyframe_insert("rotation_quaternion", frame=1)
    pbs["torso"].location = (0.05, -0.03, -0.04)
    pbs["torso"].keyframe_insert("location", frame=1)
    mine = obj.animation_data.action
    before = snapshot(mine)
    scene.dance.armature = obj
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "sets off from it as from standing" in scene.dance.status
    deforming = [b.name for b in obj.pose.bones if obj.data.bones[b.name].use_deform]

    def heads(frame):
        scene.frame_set(frame)
        return np.array([obj.matrix_world @ pbs[n].head for n in deforming])
    h = [heads(f) for f in range(first - 1, first + 24)]
    step = [np.linalg.norm(b - a, axis=1).max() for a, b in zip(h, h[1:])]
    print(f"into the dance {1000 * step[0]:.2f} mm, out of the held pose {1000 * step[1]:.2f} mm, "
          f"then {1000 * np.median(step[2:]):.1f} mm a frame (median)")
    # Held, then set off from: 55 mm before the easing (the test network's jittery dance).
    assert step[0] < 1e-4 and step[1] < 0.02 and step[1] < 0.25 * np.median(step[2:])
    assert snapshot(mine) == before


RIGIFY_LIMB_BONES = ("DEF-upper_arm.L", "DEF-forearm.L", "DEF-hand.L", "DEF-upper_arm.R", "DEF-forearm.R",
                     "DEF-hand.R", "DEF-thigh.L", "DEF-shin.L", "DEF-foot.L", "DEF-thigh.R", "DEF-shin.R", "DEF-foot.R")


def rigify_limbs_shown(obj, frame) -> np.ndarray:
    """(len(RIGIFY_LIMB_BONES),2,3) world head and tail of the deforming limb bones on `frame`."""
    return evaluated_points(obj, [frame], RIGIFY_LIMB_BONES)[0]


def test_a_pose_keyed_on_a_rigify_rigs_ik_controls_is_met_on_its_fk_controls(addon, tmp_path, rigify_blend):
    # QA: a new Rigify rig has its limbs on IK, so an animator's poses are keyed on hand_ik.L and
    # foot_ik.R; the take dances the FK controls on FK, and those poses were dropped (the hand
    # 105 cm off the keyed pose). They are now read as the rig shows them and met on FK.
    scene = addon
    obj = load_rigify(rigify_blend)
    _, first, last = stage_song(scene, tmp_path)
    pbs = obj.pose.bones
    assert pbs["upper_arm_parent.L"]["IK_FK"] == 0.0                   # Rigify's default: IK
    key = first + 20
    moved = {"hand_ik.L": (0.05, -0.1, 0.12), "upper_arm_ik_target.L": (0.0, 0.2, 0.0),
             "foot_ik.R": (0.0, 0.1, 0.2), "hand_ik.R": (0.0, 0.0, 0.0), "foot_ik.L": (0.0, 0.0, 0.0)}
    for name, place in moved.items():                                   # every limb keyed on IK
        pbs[name].location = place
        pbs[name].keyframe_insert("location", frame=key)
    pbs["torso"].location = (0.0, 0.0, -0.03)
    pbs["torso"].keyframe_insert("location", frame=key)
    for name in ("torso", "spine_fk.002", "spine_fk.003", "neck", "head", "shoulder.L", "shoulder.R"):
        pbs[name].keyframe_insert(keys.rotation_path(pbs[name])[0], frame=key)
    mine = obj.animation_data.action
    before = snapshot(mine)
    assert rig_io.count_character_keys(obj, rig_io.character_bone_map(obj), first, last)[1] == 1
    scene.frame_set(key)
    shown = rigify_limbs_shown(obj, key)
    dance(obj, scene, first, last)
    got = rigify_limbs_shown(obj, key)
    direction = lambda p: (p[:, 1] - p[:, 0]) / np.linalg.norm(p[:, 1] - p[:, 0], axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip(np.sum(direction(got) * direction(shown), axis=1), -1, 1)))
    ends = np.linalg.norm(got[:, 1] - shown[:, 1], axis=1)
    print(f"IK pose met on FK: worst bone {angles.max():.3f} degrees off, limb ends {100 * ends.max():.2f} cm off")
    # Met in direction; the IK's bent limbs are a little short (Rigify's IK_Stretch), FK's are not.
    assert angles.max() < 0.1 and ends.max() < 0.03
    assert snapshot(mine) == before


def test_an_intro_and_outro_keyed_on_rigify_ik_play_on_ik_beside_the_dance(addon, tmp_path, rigify_blend):
    # QA: an intro keyed on the IK controls played on FK in the take (the switches were FK over
    # the whole take: a hand 73 cm off before the song), and the dance started from the FK
    # controls' rest (a 0.6 m jump into the song); played on IK, an outro's hands and feet
    # reached from where the dance had travelled to the animator's targets (25 m/s after the song).
    scene = addon
    obj = load_rigify(rigify_blend)
    scene.render.fps, scene.render.fps_base = 24, 1
    _, first, last = stage_song(scene, tmp_path, seconds=2.0, strip_frame=30)
    pbs = obj.pose.bones
    for frame, u in ((1, 0.0), (first + 2, 0.4), (last + 3, 0.0), (last + 30, 0.3)):
        pbs["hand_ik.L"].location = (-0.5 * u, -0.1 * u, 0.3 * u)
        pbs["hand_ik.L"].keyframe_insert("location", frame=frame)
        pbs["foot_ik.R"].location = (0.0, 0.5 * u, 0.1)
        pbs["foot_ik.R"].keyframe_insert("location", frame=frame)
    mine = obj.animation_data.action
    before = snapshot(mine)
    intro = [rigify_limbs_shown(obj, f) for f in range(first - 3, first + 1)]
    outro = [rigify_limbs_shown(obj, f) for f in range(last + 1, last + 4)]
    scene.dance.armature = obj
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "the poses your keys on the IK controls foot_ik.R, hand_ik.L show are met on the FK controls" \
        in scene.dance.status
    take = obj.animation_data.action
    assert take is not mine
    played = [rigify_limbs_shown(obj, f) for f in range(first - 3, first + 2)]
    assert max(np.abs(a - b).max() for a, b in zip(intro[:3], played[:3])) < 1e-5   # the intro, on IK
    switch = fcurves_of(take, obj)[('pose.bones["upper_arm_parent.L"]["IK_FK"]', 0)]
    assert (switch.evaluate(first - 1), switch.evaluate(first), switch.evaluate(last)) == (0.0, 1.0, 1.0)
    into = np.linalg.norm(played[3] - played[2], axis=-1).max()
    arriving = np.linalg.norm(intro[2] - intro[1], axis=-1).max()
    print(f"into the dance {100 * into:.2f} cm, the intro's own step {100 * arriving:.2f} cm")
    # The dance's first frame is the intro's pose there, but for the IK legs' length (1.5%).
    assert np.linalg.norm(played[3] - intro[3], axis=-1).max() < 0.03
    after = [rigify_limbs_shown(obj, f) for f in range(last, last + 4)]
    assert max(np.abs(a - b).max() for a, b in zip(outro, after[1:])) < 1e-5     # the outro, on IK
    assert switch.evaluate(last + 1) == 0.0
    out_of = np.linalg.norm(after[1] - after[0], axis=-1).max()
    print(f"out of the dance {100 * out_of:.2f} cm")
    assert out_of < 0.03                                                   # ended in the outro's pose
    # Danced again on the take, whose switches are FK on the dance's ends: the intro and outro
    # are read as the animator had them (QA: the limbs from the FK controls' rest, 16 cm off).
    assert bpy.ops.dance.generate() == {'FINISHED'}
    again = [rigify_limbs_shown(obj, f) for f in (first, last)]
    assert np.linalg.norm(again[0] - intro[3], axis=-1).max() < 0.03
    assert np.linalg.norm(again[1] - after[0], axis=-1).max() < 0.03
    assert snapshot(mine) == before


def limbs_on_the_body(obj, frame) -> np.ndarray:
    """(len(RIGIFY_LIMB_BONES),3) the limb bones' tails where each limb's top bone's parent (the
    shoulder, the hips) has them: the limbs' pose, wherever the body stands."""
    bpy.context.scene.frame_set(frame)
    pbs = obj.pose.bones
    out = []
    for name in RIGIFY_LIMB_BONES:
        top = pbs[("DEF-upper_arm" if "arm" in name or "hand" in name else "DEF-thigh") + name[-2:]]
        out.append(np.array(top.parent.matrix.inverted() @ pbs[name].tail))
    return np.array(out)


def test_an_outro_keyed_on_rigify_ik_seconds_after_the_song_is_shown_on_fk(addon, tmp_path, rigify_blend):
    # QA: keyed 3 s after the song (past the lead-out, so the dance does not end in it), a pose on
    # the IK controls was not played: the take held the dance's end on FK there (the hand 33 cm
    # off the keyed pose, on the body), and the animator's switch key there put the limbs on IK,
    # stretched from where the dance travelled to targets placed from the rig's root.
    scene = addon
    obj = load_rigify(rigify_blend)
    scene.render.fps, scene.render.fps_base = 24, 1
    _, first, last = stage_song(scene, tmp_path, seconds=1.5, strip_frame=1)
    pbs = obj.pose.bones
    outro = last + 72
    for frame, u in ((1, 0.0), (outro, 0.4)):
        pbs["hand_ik.L"].location = (-0.5 * u, -0.1 * u, 0.3 * u)
        pbs["hand_ik.L"].keyframe_insert("location", frame=frame)
        pbs["foot_ik.R"].location = (0.0, 0.5 * u, 0.1)
        pbs["foot_ik.R"].keyframe_insert("location", frame=frame)
    pbs["upper_arm_parent.L"].keyframe_insert('["IK_FK"]', frame=outro)     # 0: on IK, as keyed
    pbs["upper_arm_parent.R"]["IK_FK"] = 1.0                                 # on FK: its IK key shows nothing
    pbs["upper_arm_parent.R"].keyframe_insert('["IK_FK"]', frame=outro)
    pbs["hand_ik.R"].keyframe_insert("location", frame=outro)
    note = rig_io.ik_keys_note(obj, rig_io.character_bone_map(obj))
    assert "hand_ik.L" in note and "hand_ik.R" not in note                  # (QA: named as met)
    mine = obj.animation_data.action
    before = snapshot(mine)
    shown = limbs_on_the_body(obj, outro)
    scene.dance.armature = obj
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert obj.animation_data.action is not mine
    got = limbs_on_the_body(obj, outro)
    held = limbs_on_the_body(obj, last)
    keyed = [i for i, name in enumerate(RIGIFY_LIMB_BONES) if name[-2:] == (".L" if "arm" in name or "hand" in name else ".R")]
    off = np.linalg.norm(got - shown, axis=1)[keyed]
    print(f"outro 3 s after the song: {100 * off.max():.2f} cm off its pose on the body "
          f"(the dance's end {100 * np.linalg.norm(held - shown, axis=1)[keyed].max():.1f} cm)")
    assert off.max() < 0.03                          # but for the IK legs' length (1.5%)
    switch = fcurves_of(obj.animation_data.action, obj)[('pose.bones["upper_arm_parent.L"]["IK_FK"]', 0)]
    assert switch.evaluate(outro) == 1.0             # on FK: the limbs follow the body
    assert bpy.ops.dance.generate() == {'FINISHED'}  # danced again on the take: still met
    assert np.linalg.norm(limbs_on_the_body(obj, outro) - shown, axis=1)[keyed].max() < 0.03
    assert snapshot(mine) == before


def _arm_bends(obj, frames) -> np.ndarray:
    """(F,3,3,3) each left-arm ORG bone's rotation in its parent's (the arm as the rig shows it,
    on IK or FK, whatever the body does)."""
    chain = ("ORG-shoulder.L", "ORG-upper_arm.L", "ORG-forearm.L", "ORG-hand.L")
    out = []
    for f in frames:
        bpy.context.scene.frame_set(f)
        m = [np.array(obj.pose.bones[b].matrix.to_3x3().normalized()) for b in chain]
        out.append([a.T @ b for a, b in zip(m, m[1:])])
    return np.array(out)


def test_a_rigify_arm_animated_on_ik_is_kept_as_it_shows(addon, tmp_path, rigify_blend):
    # Keep arm on a limb on IK: every frame of the song read as the rig shows it (each FK control
    # computed from its ORG bone, checked against placing it as Rigify's snap does) and kept on FK.
    scene = addon
    obj = load_rigify(rigify_blend)
    _, first, last = stage_song(scene, tmp_path)
    pbs = obj.pose.bones
    for frame, u in ((first, 0.0), (first + 20, 1.0), (last, -0.5)):
        pbs["hand_ik.L"].location = (0.2 * u, -0.15 * u, 0.25 * u)
        pbs["hand_ik.L"].keyframe_insert("location", frame=frame)
        pbs["upper_arm_ik_target.L"].location = (0.0, 0.1 * u, -0.1 * u)
        pbs["upper_arm_ik_target.L"].keyframe_insert("location", frame=frame)
    frames = list(range(first, last + 1, 3))
    shown = _arm_bends(obj, frames)
    mine = obj.animation_data.action
    before = snapshot(mine)
    dance(obj, scene, first, last, keep_parts=["left_arm"])
    got = _arm_bends(obj, frames)
    off = np.degrees(np.linalg.norm(got - shown, axis=(-2, -1)) / math.sqrt(2))    # the angle, for small ones
    print(f"the kept arm on IK: worst bend {off.max():.4f} degrees off what the rig showed")
    assert off.max() < 0.01
    assert np.ptp(shown[:, 1], axis=0).max() > 0.3                         # the arm did move on IK
    assert snapshot(mine) == before


def test_a_rigify_body_placed_seconds_after_the_song_stands_on_its_ik_feet(addon, tmp_path, rigify_blend):
    # QA: the torso keyed alone 3 s after the song (moved and turned), the legs on IK: the
    # animator's feet stay where they stood and the legs bend to them, but the take held the
    # dance's last leg pose on FK on the moved body (the feet 27-50 cm off, a toe under the floor).
    scene = addon
    obj = load_rigify(rigify_blend)
    scene.render.fps, scene.render.fps_base = 24, 1
    _, first, last = stage_song(scene, tmp_path, seconds=1.5, strip_frame=1)
    torso = obj.pose.bones["torso"]
    outro = last + 72
    torso.location = (0.3, -0.2, -0.05)
    torso.keyframe_insert("location", frame=outro)
    torso.rotation_quaternion = (0.966, 0.0, 0.0, 0.259)
    torso.keyframe_insert("rotation_quaternion", frame=outro)
    mine = obj.animation_data.action
    before = snapshot(mine)
    feet = ["DEF-foot.L", "DEF-foot.R", "DEF-toe.L", "DEF-toe.R"]
    theirs = evaluated_points(obj, [outro], feet)[0, :, 1]
    scene.dance.armature = obj
    assert bpy.ops.dance.generate() == {'FINISHED'}
    got = evaluated_points(obj, [outro], feet)[0, :, 1]
    off = np.linalg.norm(got - theirs, axis=1)
    print(f"feet on the body placed 3 s after the song: {100 * off.max():.1f} cm off the animator's, "
          f"lowest toe {100 * got[:, 2].min():.1f} cm (theirs {100 * theirs[:, 2].min():.1f})")
    # The legs as the rig showed them, hung from the take's hips (the dance's last tilt, not theirs).
    assert off.max() < 0.05 and got[:, 2].min() > theirs[:, 2].min() - 0.01
    assert snapshot(mine) == before


def test_a_rigify_rig_played_by_nla_alone_goes_back_to_it_from_the_takes_list(addon, tmp_path, rigify_blend):
    # QA: a dancer with no action, its idle on an NLA track: after Generate the Takes list had no
    # entry to go back to (no original action), and unassigning the take by hand left Rigify's
    # switches on FK, the feet 43 cm off the idle.
    scene = addon
    obj = load_rigify(rigify_blend)
    _, first, last = stage_song(scene, tmp_path, seconds=1.5, strip_frame=1)
    pbs = obj.pose.bones
    for frame, u in ((1, 0.0), (30, 1.0)):
        pbs["foot_ik.L"].location = (0.0, 0.2 * u, 0.1 * u)
        pbs["foot_ik.L"].keyframe_insert("location", frame=frame)
    ad = obj.animation_data
    idle = ad.action
    ad.nla_tracks.new().strips.new("Idle", 1, idle)
    ad.action = None
    frames = [1, 15, 30]
    shown = [rigify_limbs_shown(obj, f) for f in frames]
    scene.dance.armature = obj
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert takes.original_action(obj) is None and obj.animation_data.action is not None
    assert bpy.ops.dance.use_take(no_action=True) == {'FINISHED'}
    assert obj.animation_data.action is None
    back = [rigify_limbs_shown(obj, f) for f in frames]
    print(f"back on the NLA: {100 * max(np.abs(a - b).max() for a, b in zip(shown, back)):.4f} cm off the idle")
    assert max(np.abs(a - b).max() for a, b in zip(shown, back)) < 1e-5
    assert bpy.ops.dance.use_take(action=takes.takes(obj)[0].name) == {"FINISHED"}   # and to the take again
    assert obj.animation_data.action == takes.takes(obj)[0]


def test_an_intro_on_a_rigify_limb_partly_on_ik_plays_as_the_animators(addon, tmp_path, rigify_blend):
    # QA: a limb at IK_FK 0.5 shows a blend of its IK and FK chains; before the song the take's
    # FK controls held the dance's first pose, not the animator's (4-16 degrees off the intro).
    scene = addon
    obj = load_rigify(rigify_blend)
    _, first, last = stage_song(scene, tmp_path, seconds=1.5, strip_frame=30)
    pbs = obj.pose.bones
    pbs["upper_arm_parent.L"]["IK_FK"] = 0.5
    pbs["forearm_fk.L"].rotation_quaternion = (0.9, 0.0, 0.0, 0.44)           # posed, never keyed
    for frame, u in ((1, 0.0), (first - 2, 1.0)):
        pbs["hand_ik.L"].location = (-0.1 * u, -0.05 * u, 0.1 * u)
        pbs["hand_ik.L"].keyframe_insert("location", frame=frame)
    intro = [rigify_limbs_shown(obj, f) for f in range(first - 3, first)]
    scene.dance.armature = obj
    assert bpy.ops.dance.generate() == {'FINISHED'}
    played = [rigify_limbs_shown(obj, f) for f in range(first - 3, first)]
    print(f"the intro at IK_FK 0.5: {100 * max(np.abs(a - b).max() for a, b in zip(intro, played)):.3f} cm off")
    assert max(np.abs(a - b).max() for a, b in zip(intro, played)) < 1e-5


# Auto-Rig Pro's FK controls for Mixamo's names (engine/outputs/bone_maps/auto_rig_pro.json).
ARP_NAMES = {"Hips": "c_root.x", "Spine": "c_spine_01.x", "Spine1": "c_spine_02.x", "Spine2": "c_spine_03.x",
             "Neck": "c_neck.x", "Head": "c_head.x"} | {
    f"{S}{m}": f"c_{a}.{s}" for S, s in (("Left", "l"), ("Right", "r")) for m, a in (
        ("Shoulder", "shoulder"), ("Arm", "arm_fk"), ("ForeArm", "forearm_fk"), ("Hand", "hand_fk"),
        ("UpLeg", "thigh_fk"), ("Leg", "leg_fk"), ("Foot", "foot_fk"), ("ToeBase", "toes_fk"))}


def test_an_auto_rig_pro_rig_on_ik_dances_its_fk_controls_on_fk(addon, tmp_path):
    # Auto-Rig Pro's deforming legs follow the FK controls as far as the foot's ik_fk_switch says
    # (1: FK); on IK, the danced FK controls moved nothing. The take keys the switch to FK over
    # the dance.
    scene = addon
    bones = [(ARP_NAMES[n], ARP_NAMES.get(p) if p else "c_root_master.x", h, t)
             for n, p, h, t in mixamo_bones("") if n in ARP_NAMES]
    bones = [("c_root_master.x", None, (0.0, 0.0, 0.0), (0.0, 0.0, -0.2))] + bones
    head, tail = next((h, t) for n, _, h, t in bones if n == "c_thigh_fk.l")
    ankle = next(h for n, _, h, _ in bones if n == "c_foot_fk.l")
    bones += [("thigh.l", "c_root.x", head, tail), ("c_foot_ik.l", "c_root_master.x", ankle, _fwd(ankle, 0.15))]
    obj = build_armature("ARP", bones)
    for name in ("c_root_master.x", "c_foot_ik.l"):
        obj.data.bones[name].use_deform = False
    switch_bone = obj.pose.bones["c_foot_ik.l"]
    switch_bone["ik_fk_switch"] = 0.0                                        # the leg on IK
    follow = obj.pose.bones["thigh.l"].constraints.new('COPY_ROTATION')
    follow.target, follow.subtarget = obj, "c_thigh_fk.l"
    driver = follow.driver_add("influence").driver
    driver.type = 'SCRIPTED'
    var = driver.variables.new()
    var.targets[0].id, var.targets[0].data_path = obj, 'pose.bones["c_foot_ik.l"]["ik_fk_switch"]'
    driver.expression = var.name
    assert rig_io.character_bone_map(obj)["left_hip"] == "c_thigh_fk.l"
    _, first, last = stage_song(scene, tmp_path, strip_frame=10)
    motion, action = dance(obj, scene, first, last)
    pbs = obj.pose.bones
    for f in range(first, last + 1, 7):                                     # the deforming thigh follows
        scene.frame_set(f)
        got, danced = (np.array(pbs[n].matrix.to_3x3()) for n in ("thigh.l", "c_thigh_fk.l"))
        assert np.abs(got - danced).max() < 1e-4, f
    path = 'pose.bones["c_foot_ik.l"]["ik_fk_switch"]'
    switch = fcurves_of(action, obj)[(path, 0)]
    # FK over the dance; no animation of the animator's beside it: its ends are held there on FK.
    assert [switch.evaluate(f) for f in (first - 1, first, last, last + 1)] == [1.0, 1.0, 1.0, 1.0]
    assert switch_bone["ik_fk_switch"] == 1.0 and [k.co[0] for k in switch.keyframe_points] == [first, last]
    assert rig_io.switches_note(obj) is None                                # said by the dance, not again


def test_a_mixamo_start_pose_with_its_feet_keyed_sets_off_without_a_step(addon, tmp_path):
    # QA (5.0 and 4.5): a Mixamo-named character keyed whole (every bone, the hips' place) on
    # frames 5 and 20, the song from 20: the knee moved 7 cm in the first frame (1.7 m/s). The
    # keyed ankle stood 1.8 cm lower than the dance's stance height on the next frame, and the
    # stance jumped to it; the given ankle's height now fades into the stance's.
    import mathutils
    scene = addon
    scene.render.fps, scene.render.fps_base = 24, 1
    obj = build_armature("Hero", mixamo_bones())
    _, first, _ = stage_song(scene, tmp_path, seconds=3.0, strip_frame=20)
    bones = [b for b in obj.pose.bones if b.name != "Tail"]
    rng = np.random.default_rng(1)
    start = {b.name: rng.normal(0, 0.15, 3) for b in bones}
    for frame in (5, first):
        for b in bones:
            b.rotation_mode = 'QUATERNION'
            b.rotation_quaternion = mathutils.Euler(start[b.name]).to_quaternion()
            b.keyframe_insert("rotation_quaternion", frame=frame)
        obj.pose.bones["mixamorig:Hips"].location = (0.0, 0.0, 0.0)
        obj.pose.bones["mixamorig:Hips"].keyframe_insert("location", frame=frame)
    scene.dance.armature = obj
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "sets off from it as from standing" in scene.dance.status
    deforming = [b.name for b in obj.data.bones if b.use_deform]

    def heads(frame):
        scene.frame_set(frame)
        return np.array([obj.matrix_world @ obj.pose.bones[n].head for n in deforming])
    h = [heads(f) for f in range(first - 1, first + 6)]
    step = [np.linalg.norm(b - a, axis=1).max() for a, b in zip(h, h[1:])]
    print("mm a frame out of the start pose:", np.round(1000 * np.array(step), 1))
    assert step[0] < 1e-4 and max(step[1:4]) < 0.025         # was 70 mm (the knee) in the first


def test_a_mixamo_intro_moving_into_the_song_is_carried_on_out_of_its_first_frame(addon, tmp_path):
    # The character's keys, linear, sweep the arms through the song's first frame (keys before
    # and in the song): the dance leaves that frame at the speed the animation arrives with,
    # read through the bone map (operators.pose_beside), not at its own drawn speed.
    import mathutils
    scene = addon
    scene.render.fps, scene.render.fps_base = 24, 1
    obj = build_armature("Hero", mixamo_bones(), rest_roll(np.random.default_rng(3), mixamo_bones()))
    _, first, _ = stage_song(scene, tmp_path, seconds=2.0, strip_frame=30)
    arms = {"mixamorig:LeftArm": (0.0, 0.0, 0.9), "mixamorig:RightArm": (0.0, 0.0, -0.9),
            "mixamorig:Spine1": (0.3, 0.0, 0.0)}
    for frame, sign in ((first - 24, -1.0), (first + 24, 1.0)):
        for name, euler in arms.items():
            b = obj.pose.bones[name]
            b.rotation_mode = 'QUATERNION'
            b.rotation_quaternion = mathutils.Euler([sign * a for a in euler]).to_quaternion()
            b.keyframe_insert("rotation_quaternion", frame=frame)
    action = obj.animation_data.action
    for fc in rig_io.compat.action_fcurves(action, rig_io.compat.object_slot(obj, action)):
        for kp in fc.keyframe_points:
            kp.interpolation = 'LINEAR'
    scene.dance.armature = obj
    hands = ["mixamorig:LeftHand", "mixamorig:RightHand"]

    def heads(frame):
        scene.frame_set(frame)
        return np.array([obj.matrix_world @ obj.pose.bones[n].head for n in hands])
    came = [heads(first - 1), heads(first)]
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "at the speed your animation arrives with" in scene.dance.status
    left = [heads(first), heads(first + 1)]
    assert np.abs(left[0] - came[1]).max() < 1e-3
    arrived, step = came[1] - came[0], left[1] - left[0]
    off = np.linalg.norm(step - arrived, axis=1).max()
    print(f"hands arrive at {np.linalg.norm(arrived, axis=1).max() * 24:.2f} m/s and leave {off * 24:.2f} m/s off that")
    assert off < 0.25 * np.linalg.norm(arrived, axis=1).max()


def test_imported_engine_bvh_armature_dances(addon, tmp_path):
    scene = addon
    from engine.outputs.bvh import write_bvh
    from test_addon_scene_io import random_motion
    path = tmp_path / "engine.bvh"
    write_bvh(random_motion(10), path, up_axis="Z")
    bpy.ops.import_anim.bvh(filepath=str(path), axis_forward='Y', axis_up='Z')
    obj = bpy.context.object
    assert obj.type == 'ARMATURE' and not scene_io.is_smpl_armature(obj)
    _, first, last = stage_song(scene, tmp_path)
    motion, _ = dance(obj, scene, first, last)
    # Blender's BVH import names each bone after its joint and runs it to the child joint.
    assert_dances(obj, motion, first, [(a, a) for a, _ in LIMBS])


def test_animator_keys_read_back_as_constraints(addon, tmp_path):
    scene = addon
    obj = build_armature("Character", mixamo_bones(), rest_roll(np.random.default_rng(4), mixamo_bones()),
                         euler={"mixamorig:LeftArm"})
    _, first, last = stage_song(scene, tmp_path)
    rng = np.random.default_rng(0)
    pbs = obj.pose.bones
    # A full pose on the first frame (with the root moved), the left arm alone later on.
    for pb in pbs:
        if pb.rotation_mode == 'QUATERNION':
            q = np.r_[1.0, rng.normal(0, 0.25, 3)]
            pb.rotation_quaternion = q / np.linalg.norm(q)
        else:
            pb.rotation_euler = rng.normal(0, 0.3, 3)
        pb.keyframe_insert(keys.rotation_path(pb)[0], frame=first)
    pbs["mixamorig:Hips"].location = (0.1, 0.05, -0.2)
    pbs["mixamorig:Hips"].keyframe_insert("location", frame=first)
    for n in ("mixamorig:LeftArm", "mixamorig:LeftForeArm"):
        pb = pbs[n]
        pb.keyframe_insert(keys.rotation_path(pb)[0], frame=first + 20)
    bone_map = rig_io.check_character(obj)
    cons, _ = rig_io.read_character_constraints(obj, bone_map, first, last, 30.0)
    mapped = [JOINT_INDEX[j] for j in bone_map if j in JOINT_INDEX]
    assert cons.joint_mask[0, mapped].all() and cons.trans_mask[0] and cons.trans_mask.sum() == 1
    assert sorted(np.flatnonzero(cons.joint_mask[20])) == sorted([JOINT_INDEX["left_shoulder"], JOINT_INDEX["left_elbow"]])
    assert cons.joint_mask.sum() == len(mapped) + 2
    # The constraint pose puts SMPL's limbs where the animator's pose has the character's.
    motion = Motion(cons.poses[[0]], cons.trans[[0]], 30.0)
    cos = limb_cosines(obj, motion, [first], mixamo_limbs())
    assert cos.min() > 0.99, cos
    # ... and its root where the character's hips are (the character is SMPL-sized here).
    hips = evaluated_points(obj, [first], ["mixamorig:Hips"])[0, 0, 0]
    assert np.allclose(C @ cons.trans[0], hips, atol=0.02), (C @ cons.trans[0], hips)


def test_a_spin_keyed_on_the_hips_is_read_as_whole_turns(addon, tmp_path):
    # Euler keys of the hips about their up axis, 0 then 360 then -340 degrees: a turn one way,
    # two the other way round (and 20 degrees). The dance meets poses, so the turns travel apart.
    scene = addon
    obj = build_armature("Character", mixamo_bones(), rest_roll(np.random.default_rng(4), mixamo_bones()),
                         euler={"mixamorig:Hips"})
    _, first, last = stage_song(scene, tmp_path)
    hips = obj.pose.bones["mixamorig:Hips"]
    for frame, turn in ((first, 0.0), (first + 20, 2 * np.pi), (first + 40, -2 * np.pi + np.radians(20))):
        hips.rotation_euler = (0.0, turn, 0.0)              # XZY order, Y along the bone: up
        hips.keyframe_insert("rotation_euler", frame=frame)
    bone_map = rig_io.check_character(obj)
    cons, _ = rig_io.read_character_constraints(obj, bone_map, first, last, 30.0)
    assert np.flatnonzero(cons.joint_mask[:, 0]).tolist() == [0, 20, 40]
    assert cons.pelvis_turns[[0, 20, 40]].tolist() == [0, 1, -2]
    assert rig_io.spinning_bones(obj, bone_map) == {"mixamorig:Hips"}
    note = keys.spin_note(cons.pelvis_turns, cons.joint_mask[:, 0], first)
    assert (f"1 whole turn counter-clockwise between frames {first} and {first + 20}, "
            f"2 whole turns clockwise between frames {first + 20} and {first + 40}") in note, note


def key_bind_pose(obj, frame, noise=1e-4, seed=0):
    """Key every bone at (nearly) its rest pose as a Mixamo FBX import does: rotations on
    `frame`, the hips' location on `frame` and the next one."""
    rng = np.random.default_rng(seed)
    for pb in obj.pose.bones:
        if pb.rotation_mode == 'QUATERNION':
            pb.rotation_quaternion = np.r_[1.0, rng.normal(0, noise, 3)]
        else:
            pb.rotation_euler = rng.normal(0, noise, 3)
        pb.keyframe_insert(keys.rotation_path(pb)[0], frame=frame)
    hips = next(pb for pb in obj.pose.bones if pb.parent is None)
    for f in (frame, frame + 1):
        hips.location = rng.normal(0, noise, 3)
        hips.keyframe_insert("location", frame=f)


def test_an_imported_bind_pose_is_not_a_pose_to_dance_from(addon, tmp_path):
    """A Mixamo download keys every bone at rest (frames 1-2): as keys it would hold the dancer
    in a T-pose where the dance starts. Not kept, and said; one bone keyed off rest beside it
    makes the whole pose the animator's again."""
    scene = addon
    obj, first, last = _mixamo_stage(scene, tmp_path)
    key_bind_pose(obj, first)
    bone_map = rig_io.check_character(obj)
    cons, kept = rig_io.read_character_constraints(obj, bone_map, first, last, 30.0)
    assert not cons.joint_mask.any() and not cons.trans_mask.any() and not kept.keyed.any()
    assert rig_io.count_character_keys(obj, bone_map, first, last) == (0, 0)
    notes = operators.build_request(bpy.context).notes
    assert any(f"frame(s) {first}-{first + 1}" in n and "bind pose" in n for n in notes), notes

    arm = obj.pose.bones["mixamorig:LeftArm"]   # the animator poses the arm on that frame
    arm.rotation_quaternion = (math.cos(0.3), 0.0, 0.0, math.sin(0.3))
    arm.keyframe_insert("rotation_quaternion", frame=first)
    cons, _ = rig_io.read_character_constraints(obj, bone_map, first, last, 30.0)
    mapped = [JOINT_INDEX[j] for j in bone_map if j in JOINT_INDEX]
    assert cons.joint_mask[0, mapped].all() and cons.trans_mask[[0, 1]].all()
    assert not any("bind pose" in n for n in operators.build_request(bpy.context).notes)
    count = rig_io.count_character_keys(obj, bone_map, first, last)
    assert count == (len(set(bone_map.values())), 2)
    # A location key on a bone that is not the root constrains nothing, and the panel says so.
    spine = obj.pose.bones["mixamorig:Spine"]
    spine.keyframe_insert("location", frame=first + 10)
    assert rig_io.count_character_keys(obj, bone_map, first, last) == count
    # An imported clip's own frame near rest is no bind pose: one bone 0.3 degrees off rest makes
    # it the animator's (within 2 degrees such frames were dropped: QA, an FBX round trip).
    key_bind_pose(obj, first + 20, seed=1)
    arm.rotation_quaternion = (math.cos(math.radians(0.15)), 0.0, 0.0, math.sin(math.radians(0.15)))
    arm.keyframe_insert("rotation_quaternion", frame=first + 20)
    assert operators.bind_pose_span(obj, bone_map, first + 20, first + 21) is None
    # The animator's first key right after the file's bind pose leaves it a bind pose (QA: a key
    # on the next frame kept the T-pose, and the hand flew 0.5 m a frame out of it).
    key_bind_pose(obj, first + 40, seed=2)
    arm.keyframe_insert("rotation_quaternion", frame=first + 42)
    assert operators.bind_pose_span(obj, bone_map, first + 40, first + 41) == f"{first + 40}-{first + 41}"

    # The SMPL dancer's rest-pose keys on every joint are no pose to dance from either.
    smpl = scene_io.create_smpl_armature(bpy.context, with_mesh=False)
    key_bind_pose(smpl, first, noise=0.0)
    assert scene_io.count_kept(smpl, first, last) == (0, 0)
    assert scene_io.bind_pose_span(smpl, first, last) == f"{first}-{first + 1}"


def test_a_root_key_far_above_standing_height_is_said(addon, tmp_path):
    """A root key a metre above standing height lifts the feet off the floor around it (the keys
    are met exactly): one note says so, in the scene's units; a 10 cm rise says nothing."""
    scene = addon
    obj, first, last = _mixamo_stage(scene, tmp_path)
    hips = obj.pose.bones["mixamorig:Hips"]
    hips.location = (0.0, 0.1, 0.0)              # the bone points up: its Y is the world's up
    hips.keyframe_insert("location", frame=first)
    assert not any("feet leave the floor" in n for n in operators.build_request(bpy.context).notes)
    hips.location = (0.0, 1.0, 0.0)
    hips.keyframe_insert("location", frame=first)
    notes = [n for n in operators.build_request(bpy.context).notes if "feet leave the floor" in n]
    assert len(notes) == 1 and f"frame(s) {first} " in notes[0] and "'Character'" in notes[0], notes
    value, unit = re.search(r"up to ([\d.]+) (cm|m) above", notes[0]).groups()
    assert 0.9 <= float(value) * (0.01 if unit == "cm" else 1.0) <= 1.05, notes   # about the metre keyed
    # Hips keyed 20 cm under the floor: said once, in the scene's units too (the engine's own note
    # gave SMPL metres, which for a character's scale are not the scene's).
    rest_height = (obj.matrix_world @ hips.bone.head_local).z
    hips.location = (0.0, -rest_height - 0.2, 0.0)
    hips.keyframe_insert("location", frame=first)
    request = operators.build_request(bpy.context)
    notes = [n for n in request.notes if "hips" in n and "floor" in n]
    assert len(notes) == 1 and "feet go under it" in notes[0], notes
    value, unit = re.search(r"frame\(s\) \d+ ([\d.]+) (cm|m) under the floor", notes[0]).groups()
    assert 0.1 <= float(value) * (0.01 if unit == "cm" else 1.0) <= 0.3, notes
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        runner.generate(request)
    assert not any("root keys" in n for n in request.notes), request.notes   # not said twice
    # Nor printed on the console in the engine's metres (batch.py printed it three times: QA).
    assert not [w for w in shown if issubclass(w.category, RootHeightNote)], [str(w.message) for w in shown]


def test_an_fbx_with_its_rest_pose_as_its_take_dances_from_the_first_frame(addon, tmp_path):
    """Through Blender's own FBX exporter and importer: a Mixamo-named character in centimetres
    whose only take is its rest pose, as Mixamo's downloads come. The imported take is not kept,
    so the dance does not open on the T-pose."""
    scene = addon
    obj = build_armature("Armature", mixamo_bones(), y_up_cm=True)
    obj.rotation_euler, obj.scale = (math.radians(90), 0.0, 0.0), (0.01,) * 3
    give_a_body(obj)
    for pb in obj.pose.bones:
        pb.keyframe_insert("rotation_quaternion", frame=1)
        pb.keyframe_insert("location", frame=1)
    bpy.ops.object.select_all(action='SELECT')
    path = str(tmp_path / "character.fbx")
    assert bpy.ops.export_scene.fbx(filepath=path, bake_anim=True, add_leaf_bones=False) == {'FINISHED'}
    bpy.ops.object.delete()
    assert bpy.ops.import_scene.fbx(filepath=path) == {'FINISHED'}
    obj = next(o for o in scene.objects if o.type == 'ARMATURE')
    assert obj.animation_data.action is not None            # the importer made the take an action
    _, first, last = stage_song(scene, tmp_path)
    bone_map = rig_io.check_character(obj)
    assert rig_io.count_character_keys(obj, bone_map, first, last) == (0, 0)
    assert any("bind pose" in n for n in operators.build_request(bpy.context).notes)
    rt = rig_io.retargeter(obj, bone_map)   # the take's pose on the first frame, as SMPL
    rot, loc = rig_io.evaluate_basis(obj, [first], rt.rig.names)
    take, _, _, _ = rt.from_rig(rot, loc[:, rt.root_bone], np.ones(rot.shape[:2], bool))
    motion, _ = dance(obj, scene, first, last)
    # Kept, the take would be met exactly on the mapped joints (within 1e-4 rad): the first frame
    # is not the take's pose.
    mapped = [JOINT_INDEX[j] for j in bone_map if j in JOINT_INDEX]
    print("first frame off the take by", np.abs((motion.poses[0] - take[0]).reshape(-1, 3)[mapped]).max())
    assert np.abs((motion.poses[0] - take[0]).reshape(-1, 3)[mapped]).max() > 1e-2


VROID = {"Hips": "J_Bip_C_Hips", "Spine": "J_Bip_C_Spine", "Spine1": "J_Bip_C_Chest", "Spine2": "J_Bip_C_UpperChest",
         "Neck": "J_Bip_C_Neck", "Head": "J_Bip_C_Head", "Shoulder": "Shoulder", "Arm": "UpperArm",
         "ForeArm": "LowerArm", "Hand": "Hand", "HandIndex1": "Index1", "UpLeg": "UpperLeg", "Leg": "LowerLeg",
         "Foot": "Foot", "ToeBase": "ToeBase"}


def vroid_name(mixamo: str) -> str:
    """VRoid's name for a bone of mixamo_bones() ("mixamorig:LeftForeArm" -> "J_Bip_L_LowerArm")."""
    name = mixamo.replace("mixamorig:", "")
    for side, S in (("Left", "L"), ("Right", "R")):
        if name.startswith(side):
            return f"J_Bip_{S}_{VROID[name[len(side):]]}"
    return VROID.get(name, name)


def test_a_vroid_character_through_gltf_dances(addon, tmp_path):
    """VRM files are glTF: a VRoid-named, skinned character through Blender's own glTF exporter
    and importer (which guesses bone tails and rolls) is found as VRM and dances."""
    scene = addon
    bones = [(vroid_name(n), parent and vroid_name(parent), h, t) for n, parent, h, t in mixamo_bones()]
    obj = build_armature("Armature", bones)
    mesh = bpy.data.meshes.new("body")   # glTF keeps a skin only with faces and weights
    mesh.from_pydata([(x, y, z) for x in (-0.1, 0.1) for y in (-0.1, 0.1) for z in (0.0, 0.2)], [],
                     [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)])
    body = bpy.data.objects.new("body", mesh)
    scene.collection.objects.link(body)
    body.parent = obj
    body.modifiers.new("Armature", 'ARMATURE').object = obj
    for bone in obj.data.bones:
        body.vertex_groups.new(name=bone.name).add(list(range(8)), 1.0, 'REPLACE')
    bpy.ops.object.select_all(action='SELECT')
    path = str(tmp_path / "character.glb")
    assert bpy.ops.export_scene.gltf(filepath=path, export_format='GLB', export_animations=False) == {'FINISHED'}
    bpy.ops.object.delete()
    assert bpy.ops.import_scene.gltf(filepath=path) == {'FINISHED'}
    obj = next(o for o in scene.objects if o.type == 'ARMATURE')
    assert rig_io.check_character(obj)["left_elbow"] == "J_Bip_L_LowerArm"
    _, first, last = stage_song(scene, tmp_path)
    motion, _ = dance(obj, scene, first, last)
    assert_dances(obj, motion, first, [(vroid_name(a), vroid_name(b)) for a, b in mixamo_limbs()])


@pytest.mark.parametrize("case", ["no_legs", "two_roots", "missing_bone", "bone_twice"])
def test_bad_characters_and_maps_are_one_line_and_change_nothing(addon, tmp_path, case):
    scene = addon
    bones = mixamo_bones()
    if case == "no_legs":
        bones = [b for b in bones if "Leg" not in b[0] and "Foot" not in b[0] and "Toe" not in b[0]]
    if case == "two_roots":
        bones = [(n, None if n == "mixamorig:LeftUpLeg" else p, h, t) for n, p, h, t in bones]
    obj = build_armature("Character", bones)
    pb = obj.pose.bones["mixamorig:Spine"]
    pb.keyframe_insert("rotation_quaternion", frame=5)
    if case in ("missing_bone", "bone_twice"):
        bone_map = rig_io.auto_map(rig_io.read_rig(obj))
        if case == "missing_bone":
            bone_map["left_knee"] = "mixamorig:LeftKnee"
        else:
            bone_map["right_knee"] = bone_map["left_knee"]
        rig_io.store_bone_map(obj, bone_map)
    _, first, last = stage_song(scene, tmp_path)
    actions = set(bpy.data.actions)
    before = snapshot(obj.animation_data.action)
    with pytest.raises(EngineError) as e:
        rig_io.check_character(obj)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 300, msg
    assert set(bpy.data.actions) == actions and snapshot(obj.animation_data.action) == before


def test_mapping_panel_operators_auto_map_save_and_load_presets(addon, tmp_path, monkeypatch):
    from blender_addon import rig_ui
    from engine.outputs.retarget import load_bone_map
    monkeypatch.setattr(rig_ui, "user_preset_dir", lambda: str(tmp_path))   # not the real user folder
    scene = addon
    obj = build_armature("Character", unreal_bones(), rest_roll(np.random.default_rng(1), unreal_bones()))
    scene.dance.armature = obj
    assert rig_io.stored_bone_map(obj) == {}                       # automatic until edited
    assert bpy.ops.dance.auto_map() == {'FINISHED'}
    stored = rig_io.stored_bone_map(obj)
    assert stored["left_knee"] == "calf_l" and stored["spine3"] == "spine_05"
    # The animator fixes a bone in the panel, saves the map as their preset, and loads it again
    # after a mistake.
    getattr(obj, rig_ui.MAP_PROPERTY)[JOINT_INDEX["spine2"]].bone = "spine_04"
    assert bpy.ops.dance.save_bone_map(name="my mannequin") == {'FINISHED'}
    saved = load_bone_map(tmp_path / "my_mannequin.json")
    assert saved["spine2"] == "spine_04" and saved["left_knee"] == "calf_l"
    getattr(obj, rig_ui.MAP_PROPERTY)[JOINT_INDEX["left_knee"]].bone = "calf_r"   # mapped twice now
    with pytest.raises(RuntimeError, match="mapped twice"):
        bpy.ops.dance.save_bone_map(name="broken")
    assert not (tmp_path / "broken.json").exists()
    assert bpy.ops.dance.load_bone_map(preset="user:my_mannequin") == {'FINISHED'}
    assert rig_io.stored_bone_map(obj) == saved
    # A shipped preset that does not fit this armature is refused and changes nothing.
    with pytest.raises(RuntimeError, match="does not fit"):
        bpy.ops.dance.load_bone_map(preset="shipped:mixamo")
    assert rig_io.stored_bone_map(obj) == saved
    assert bpy.ops.dance.load_bone_map(preset="shipped:unreal_ue5") == {'FINISHED'}
    assert rig_io.stored_bone_map(obj)["spine2"] == "spine_03"


def test_body_part_locks_follow_the_characters_own_animation(addon, tmp_path):
    scene = addon
    obj = build_armature("Character", mixamo_bones(), rest_roll(np.random.default_rng(2), mixamo_bones()),
                         euler={"mixamorig:LeftArm"})
    _, first, last = stage_song(scene, tmp_path)
    pbs = obj.pose.bones
    arm = ["mixamorig:LeftShoulder", "mixamorig:LeftArm", "mixamorig:LeftForeArm", "mixamorig:LeftHand"]
    for f, a in ((first, 0.2), (first + 30, -0.6), (last, 0.5)):     # the animator's left-arm animation
        pbs["mixamorig:LeftArm"].rotation_euler = (a, 0.3, -a)
        pbs["mixamorig:LeftArm"].keyframe_insert("rotation_euler", frame=f)
        pbs["mixamorig:LeftForeArm"].rotation_quaternion = (1.0, 0.0, 0.0, a)
        pbs["mixamorig:LeftForeArm"].keyframe_insert("rotation_quaternion", frame=f)
    frames = list(range(first, last + 1, 4))
    before = rig_io.evaluate_basis(obj, frames, arm)[0]
    motion, _ = dance(obj, scene, first, last, keep_parts=["left_arm"])
    after = rig_io.evaluate_basis(obj, frames, arm)[0]
    # The arm keeps its own animation on every frame (relative to the dancing body)...
    dots = np.abs(np.sum(before * after, -1)) / (np.linalg.norm(before, axis=-1) * np.linalg.norm(after, axis=-1))
    assert dots.min() > 1 - 1e-6
    # ... while the rest of the body dances.
    legs = ["mixamorig:LeftUpLeg", "mixamorig:RightLeg", "mixamorig:Spine1"]
    assert np.abs(rig_io.evaluate_basis(obj, frames, legs)[0][..., 0]).min() < 0.999
    # The SMPL dance's left arm follows the same animation (what --out-npz writes).
    cons, _ = rig_io.read_character_constraints(obj, rig_io.check_character(obj), first, last, 30.0,
                                               keep_parts=["left_arm"])
    j = [JOINT_INDEX[n] for n in ("left_shoulder", "left_elbow")]
    from rotation_checks import rotation_error
    assert rotation_error(motion.poses[:, [3 * k + c for k in j for c in range(3)]],
                          cons.poses[:, [3 * k + c for k in j for c in range(3)]]) < 1e-6


# --- Through the add-on's front doors: the Generate operator, exports, regenerating, batch.py ----

def _mixamo_stage(scene, tmp_path, seconds=2.0):
    obj = build_armature("Character", mixamo_bones(), rest_roll(np.random.default_rng(8), mixamo_bones()),
                         euler={"mixamorig:LeftForeArm"})
    _, first, last = stage_song(scene, tmp_path, seconds)
    scene.dance.armature = obj
    scene.dance.steps, scene.dance.quality = 2, 'BEST'   # the teacher path at 2 steps (the tiny network is no student)
    return obj, first, last


def test_a_characters_take_danced_again_after_its_song_was_trimmed_starts_from_the_animators_key(addon, tmp_path):
    # QA: on a Mixamo-named character, Generate on take 1 after the song's start was trimmed pinned
    # the new dance's first frame to take 1's generated forearm, 54 degrees off the animator's key
    # before the song (scene_io's twin: test_addon_regenerate.py).
    scene = addon
    obj, first, last = _mixamo_stage(scene, tmp_path, seconds=3.0)
    forearm = obj.pose.bones["mixamorig:LeftForeArm"]                   # an Euler bone (XYZ)
    keyed = Euler((0.3, 0.8, -0.2), forearm.rotation_mode)
    forearm.rotation_euler = keyed
    forearm.keyframe_insert("rotation_euler", frame=first + 5)
    assert bpy.ops.dance.generate() == {'FINISHED'}                      # take 1, the whole song
    scene_io.find_sound_strip(scene).frame_offset_start = 20
    assert bpy.ops.dance.generate() == {'FINISHED'}                      # take 2, danced on take 1
    assert "starts from the pose" in scene.dance.status
    scene.frame_set(first + 20)
    assert forearm.matrix_basis.to_quaternion().rotation_difference(keyed.to_quaternion()).angle < 1e-4
    # The key is held from first + 5 into the dance: the character sets off from it as from standing.
    assert "sets off from it as from standing" in scene.dance.status

    def heads(frame):
        scene.frame_set(frame)
        ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        return np.array([ev.matrix_world @ b.head for b in ev.pose.bones])
    step = [np.linalg.norm(heads(f + 1) - heads(f), axis=1).max() for f in range(first + 19, first + 40)]
    print(f"out of the held pose {step[1]:.5f} m, then up to {max(step[2:]):.4f} m a frame")
    assert step[0] < 1e-4 and step[1] < 1e-3 < 0.005 < max(step[2:])      # the feet fitted to the rig: under 1 mm


def test_generate_operator_and_exports_on_a_character(addon, tmp_path):
    scene = addon
    obj, first, last = _mixamo_stage(scene, tmp_path)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    action = obj.animation_data.action
    assert takes.is_take(action) and action.name.endswith("take 1")
    animated = {fc.data_path.split('"')[1] for fc in fcurves_of(action, obj).values()}
    assert {"mixamorig:LeftUpLeg", "mixamorig:RightForeArm", "mixamorig:Spine2", "mixamorig:Hips"} <= animated
    # The SMPL export of the character's dance puts SMPL's limbs where the character's are.
    npz = tmp_path / "dance.npz"
    assert bpy.ops.dance.export_npz(filepath=str(npz)) == {'FINISHED'}
    motion = Motion.load_npz(npz)
    assert motion.num_frames == last - first + 1
    assert limb_cosines(obj, motion, list(range(first, last + 1, 5)), mixamo_limbs()).min() > 0.99
    # A broken map: one line, nothing generated.
    bone_map = rig_io.check_character(obj)
    bone_map["right_knee"] = bone_map["left_knee"]
    rig_io.store_bone_map(obj, bone_map)
    actions = set(bpy.data.actions)
    with pytest.raises(RuntimeError) as e:
        bpy.ops.dance.generate()
    line = str(e.value).strip().splitlines()[-1]
    assert "mapped twice" in line and "'Character'" in line
    assert set(bpy.data.actions) == actions and obj.animation_data.action == action


def test_regenerating_a_range_on_a_character_keeps_the_rest(addon, tmp_path):
    scene = addon
    obj, first, last = _mixamo_stage(scene, tmp_path, seconds=3.0)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    frames = list(range(first, last + 1))
    bones = [b for b, _ in mixamo_limbs()]
    before = evaluated_points(obj, frames, bones)
    a, b = first + 30, first + 50
    scene.dance.use_strip_range = False
    scene.dance.frame_start, scene.dance.frame_end = a, b
    scene.dance.seed = 5
    assert bpy.ops.dance.generate() == {'FINISHED'}
    after = evaluated_points(obj, frames, bones)
    outside = [i for i, f in enumerate(frames) if not a <= f <= b]
    inside = [i for i, f in enumerate(frames) if a <= f <= b]
    assert np.abs(after[outside] - before[outside]).max() < 1e-4
    assert np.abs(after[inside] - before[inside]).max() > 1e-3
    # At both joins the limbs move about as fast as they do just around them: no jump (the new
    # section's planted feet can sit elsewhere than the old dance's; the joins take that up).
    speed = np.linalg.norm(np.diff(after, axis=0), axis=-1).reshape(len(frames) - 1, -1).max(axis=1)
    for join in (a - first - 1, b - first):
        around = np.r_[speed[join - 6:join - 1], speed[join + 2:join + 7]]
        print(f"join step {join}: {speed[join]:.4f} m/frame, around: max {around.max():.4f}")
        assert speed[join] <= 1.5 * around.max() + 1e-3


def test_batch_dances_a_character_with_a_bone_map_file(addon, tmp_path, tiny_weights):
    from engine.outputs.retarget import save_bone_map
    obj = build_armature("Hero", unreal_bones(), rest_roll(np.random.default_rng(6), unreal_bones()))
    pb = obj.pose.bones["lowerarm_l"]
    pb.rotation_quaternion = (0.8, 0.5, 0.2, 0.1)
    pb.keyframe_insert("rotation_quaternion", frame=10)
    bone_map = rig_io.check_character(obj)
    bone_map["spine2"] = "spine_02"   # the animator's own choice, in a file
    save_bone_map(bone_map, tmp_path / "hero.json")
    song = add_wav(tmp_path, 2.0)
    # The click track ends on 1.5 s of silence after its last click: --dance-silence dances it.
    import soundfile as sf
    sf.write(song, np.concatenate([sf.read(song)[0], np.zeros(22050)]), 22050)
    scene_blend, out_blend, out_npz = tmp_path / "scene.blend", tmp_path / "out.blend", tmp_path / "out.npz"
    bpy.ops.wm.save_as_mainfile(filepath=str(scene_blend))
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    env.pop("PYTHONPATH", None)
    batch = [sys.executable, str(operators.__file__).replace("operators.py", "batch.py"), "--",
             "--blend", str(scene_blend), "--audio", str(song), "--weights", str(tiny_weights), "--steps", "2"]
    run = subprocess.run(batch + ["--armature", "Hero", "--bone-map", str(tmp_path / "hero.json"),
                                  "--out-blend", str(out_blend), "--out-npz", str(out_npz), "--dance-silence"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "silent" not in run.stderr
    motion = Motion.load_npz(out_npz)
    pos = joint_positions(motion.poses, motion.trans)
    assert np.linalg.norm(np.diff(pos[-30:], axis=0), axis=-1).mean() * motion.fps > 0.1   # the silence danced
    bpy.ops.wm.open_mainfile(filepath=str(out_blend))
    obj = bpy.data.objects["Hero"]
    assert rig_io.stored_bone_map(obj)["spine2"] == "spine_02"          # the file's map was used
    first = int(obj.animation_data.action.frame_range[0])
    limbs = [(a, a) for a in ("thigh_l", "calf_l", "thigh_r", "calf_r", "upperarm_l", "lowerarm_l",
                              "upperarm_r", "lowerarm_r")]
    assert limb_cosines(obj, motion, list(range(first, first + motion.num_frames, 5)), limbs).mean() > 0.95
    bpy.context.scene.frame_set(10)
    assert np.allclose(obj.pose.bones["lowerarm_l"].rotation_quaternion, (0.8, 0.5, 0.2, 0.1), atol=1e-6)
    # A map naming a bone the armature lacks: one line, exit status 1, nothing written.
    bone_map["left_knee"] = "knee_l"
    save_bone_map(bone_map, tmp_path / "bad.json")
    bad = subprocess.run(batch + ["--armature", "Hero", "--bone-map", str(tmp_path / "bad.json"),
                                  "--out-blend", str(tmp_path / "bad.blend")],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert bad.stderr.startswith("error: armature 'Hero': the armature has no bone 'knee_l'")
    assert not (tmp_path / "bad.blend").exists()


def test_a_tweak_on_the_characters_dance_is_kept_next_time(addon, tmp_path):
    scene = addon
    obj, first, last = _mixamo_stage(scene, tmp_path)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    # The animator re-poses the Euler forearm on the generated take and keys it...
    pb = obj.pose.bones["mixamorig:LeftForeArm"]
    scene.frame_set(first + 15)
    pb.rotation_euler = (0.4, -0.3, 1.1)
    pb.keyframe_insert("rotation_euler", frame=first + 15)
    assert rig_io.count_character_keys(obj, rig_io.check_character(obj), first, last) == (1, 1)
    # ... and the next take keeps it exactly, as their key.
    tweaked = obj.animation_data.action
    scene.dance.seed = 9
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert obj.animation_data.action not in (tweaked, None) and takes.is_take(obj.animation_data.action)
    scene.frame_set(first + 15)
    assert np.allclose(pb.rotation_euler, (0.4, -0.3, 1.1), atol=1e-6)
    assert rig_io.count_character_keys(obj, rig_io.check_character(obj), first, last) == (1, 1)


def test_a_whole_turn_keyed_on_the_hips_is_no_hold(addon, tmp_path):
    # QA: hips keyed 0 and 360 degrees about their up axis are the same rotation, so they were
    # written as a hold: the note said one whole turn, the take stood still for the whole gap.
    scene = addon
    obj, first, last = _mixamo_stage(scene, tmp_path, seconds=3.0)
    hips = obj.pose.bones["mixamorig:Hips"]
    hips.rotation_mode = 'XYZ'
    a, b = first + 10, first + 50
    for frame, turn in ((a, 0.0), (b, 2 * math.pi)):
        hips.rotation_euler = (0.0, turn, 0.0)
        hips.keyframe_insert("rotation_euler", frame=frame)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "1 whole turn" in scene.dance.status
    facing = []
    for frame in range(a, b + 1):
        scene.frame_set(frame)
        forward = (obj.matrix_world @ hips.matrix).to_3x3() @ Vector((0.0, 0.0, 1.0))
        facing.append(math.atan2(forward.y, forward.x))
    turned = np.abs(np.diff(np.unwrap(facing))).sum()
    print(f"the hips turn {math.degrees(turned):.0f} degrees between the keys")
    assert turned > math.radians(270)


def test_hips_connected_to_a_root_bone_travel_through_the_root(addon, tmp_path):
    # QA: a VRM import connects the hips to the root bone (VRoid's Root -> Hips), and Blender
    # ignores a connected bone's location: the take's travel keys on the hips did nothing, the
    # dancer stood on its spot with its feet sliding, and nothing said so.
    scene = addon
    bones = [(n, "Root" if n == "mixamorig:Hips" else p, h, t) for n, p, h, t in mixamo_bones()]
    hips = next(h for n, _, h, _ in bones if n == "mixamorig:Hips")
    obj = build_armature("VRoid", [("Root", None, np.zeros(3), hips)] + bones)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode='EDIT')
    obj.data.edit_bones["mixamorig:Hips"].use_connect = True
    bpy.ops.object.mode_set(mode='OBJECT')
    _, first, last = stage_song(scene, tmp_path, 3.0)
    scene.dance.armature = obj
    scene.dance.steps, scene.dance.quality = 2, 'BEST'
    bone_map = rig_io.check_character(obj)
    assert rig_io.root_bone_name(bone_map) == "Root"
    assert bpy.ops.dance.generate() == {'FINISHED'}
    places = []
    for frame in range(first, last + 1, 6):
        scene.frame_set(frame)
        places.append(obj.matrix_world @ obj.pose.bones["mixamorig:Hips"].head)
    travel = np.linalg.norm(np.array(places)[:, :2] - np.array(places)[0, :2], axis=1).max()
    print(f"the hips travel up to {travel:.2f} m from where they start")
    assert travel > 0.2
    # The animator keys the root's place once on the take: the dance travels through it (QA: the
    # root, animated above the danced bones, was held at rest: no travel, the key missed).
    root = obj.pose.bones["Root"]
    key_frame = (first + last) // 2
    scene.frame_set(key_frame)
    keyed = Vector(root.location) + Vector((0.3, 0.0, 0.2))
    root.location = keyed
    root.keyframe_insert("location", frame=key_frame)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    scene.frame_set(key_frame)
    assert (Vector(root.location) - keyed).length < 1e-3
    places = []
    for frame in range(first, last + 1, 6):
        scene.frame_set(frame)
        places.append(np.array(root.location))
    assert np.linalg.norm(np.array(places) - places[0], axis=1).max() > 0.2
    # A turn keyed on the root is held at rest like any bone above the danced ones, and said.
    root.rotation_quaternion = (0.7071, 0.0, 0.7071, 0.0)
    root.keyframe_insert("rotation_quaternion", frame=key_frame)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "Root's turn" in scene.dance.status
    # A map that puts the travel on the connected hips explicitly is refused, naming the bone to use.
    rig_io.store_bone_map(obj, {**bone_map, "root": "mixamorig:Hips"})
    with pytest.raises(EngineError, match="connected to its parent.*map the root to 'Root'"):
        rig_io.check_character(obj)


def test_a_whole_pose_keyed_twice_on_a_character_holds_still(addon, tmp_path):
    # QA: the hold's keys were met, but between them the planted legs' IK turned a knee 0.4
    # degrees and slid a foot 1.2 mm; the take now writes a hold as its key.
    scene = addon
    obj, first, last = _mixamo_stage(scene, tmp_path, seconds=3.0)
    bone_map = rig_io.check_character(obj)
    a, b = first + 20, first + 50
    pose = {"LeftArm": (0.3, 0.0, 0.9), "RightForeArm": (0.0, 0.8, 0.0), "LeftLeg": (0.5, 0.0, 0.0), "Spine1": (0.2, 0.1, 0.0)}
    for name in rig_io.posed_bones(bone_map):
        pb = obj.pose.bones[name]
        turn = pose.get(name.split(":")[-1])
        if turn is not None:
            value = Euler(turn).to_quaternion()
            if pb.rotation_mode == 'QUATERNION':
                pb.rotation_quaternion = value
            else:
                pb.rotation_euler = value.to_euler(pb.rotation_mode)
        for frame in (a, b):
            pb.keyframe_insert(keys.rotation_path(pb)[0], frame=frame)
            if name == rig_io.root_bone_name(bone_map):
                pb.keyframe_insert("location", frame=frame)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    names = [bone.name for bone in obj.pose.bones]
    heads, tails = [], []
    for frame in range(a, b + 1):
        scene.frame_set(frame)
        heads.append([obj.matrix_world @ obj.pose.bones[n].head for n in names])
        tails.append([obj.matrix_world @ obj.pose.bones[n].tail for n in names])
    drift = max(np.abs(np.array(p) - np.array(p)[:1]).max() for p in (heads, tails))
    print(f"largest move of a bone inside the hold: {drift * 1000:.4f} mm")
    assert drift < 1e-5


def _key_whole_pose(obj, bone_map, frame: int, pose: dict) -> None:
    """Key every mapped bone on `frame`, as Whole Character keying does: the bones named in `pose`
    (without their prefix) turned by its Euler angles, the others at rest, each in its own mode."""
    for name in rig_io.posed_bones(bone_map):
        pb = obj.pose.bones[name]
        value = Euler(pose.get(name.split(":")[-1], (0.0, 0.0, 0.0))).to_quaternion()
        if pb.rotation_mode == 'QUATERNION':
            pb.rotation_quaternion = value
        else:
            pb.rotation_euler = value.to_euler(pb.rotation_mode)
        pb.keyframe_insert(keys.rotation_path(pb)[0], frame=frame)


def _largest_turn_degrees(scene, pb, frames) -> float:
    """How far pose bone `pb` turns, at most, from its pose on the first of `frames`."""
    turns = []
    for frame in frames:
        scene.frame_set(frame)
        turns.append(np.array(pb.matrix_basis.to_quaternion()))
    turns = np.array(turns)
    return float(np.degrees(2 * np.arccos(np.clip(np.abs(turns @ turns[0]), 0, 1)).max()))


def test_a_whole_pose_keyed_twice_at_two_places_is_no_hold(addon, tmp_path):
    # QA27: the same rotations keyed twice with the root keyed 1 m apart held every bone while
    # the root travelled: a statue sliding, its feet skating. The same pose elsewhere is a move.
    scene = addon
    obj, first, last = _mixamo_stage(scene, tmp_path, seconds=3.0)
    bone_map = rig_io.check_character(obj)
    root = obj.pose.bones[rig_io.root_bone_name(bone_map)]
    a, b = first + 15, first + 60
    pose = {"LeftArm": (0.3, 0.0, 0.9), "RightForeArm": (0.0, 0.8, 0.0), "LeftLeg": (0.5, 0.0, 0.0)}
    for frame, place in ((a, (0.0, 0.0, 0.0)), (b, (0.0, 1.0, 0.0))):
        _key_whole_pose(obj, bone_map, frame, pose)
        root.location = place
        root.keyframe_insert("location", frame=frame)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    arm = obj.pose.bones[bone_map["left_shoulder"]]
    assert _largest_turn_degrees(scene, arm, range(a, b + 1)) > 1.0    # it dances there: no hold (held: 0)


def test_two_different_whole_poses_on_a_character_hold_no_bone(addon, tmp_path):
    # QA25: every bone keyed on two different poses (Whole Character keying): the bones alike on
    # both (the feet, at rest) were written held between the keys, the legs given, and the feet
    # skated for the five seconds between.
    scene = addon
    obj, first, last = _mixamo_stage(scene, tmp_path, seconds=3.0)
    bone_map = rig_io.check_character(obj)
    a, b = first + 15, first + 60
    _key_whole_pose(obj, bone_map, a, {"LeftArm": (0.3, 0.0, 0.9), "LeftLeg": (0.5, 0.0, 0.0)})
    _key_whole_pose(obj, bone_map, b, {"RightForeArm": (0.0, 0.8, 0.0), "RightUpLeg": (-0.4, 0.0, 0.0),
                                       "Spine1": (0.2, 0.1, 0.0)})
    assert bpy.ops.dance.generate() == {'FINISHED'}
    turn = _largest_turn_degrees(scene, obj.pose.bones[bone_map["left_ankle"]], range(a, b + 1))
    print(f"left foot's largest turn between the keys: {turn:.1f} degrees")
    assert turn > 5.0                                                  # it dances: no hold

def test_planted_feet_stay_planted_on_other_leg_proportions(addon, tmp_path):
    scene = addon
    obj = build_armature("LongShins", long_shin_bones(), rest_roll(np.random.default_rng(2), long_shin_bones()))
    _, first, last = stage_song(scene, tmp_path, seconds=4.0)
    motion, _ = dance(obj, scene, first, last)
    scale = rig_io.retargeter(obj, rig_io.check_character(obj)).scale
    frames = list(range(first, last + 1))
    ankles = evaluated_points(obj, frames, ["mixamorig:LeftFoot", "mixamorig:RightFoot"])[:, :, 0]
    smpl = joint_positions(motion.poses, motion.trans)[:, [JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"]]] @ C.T
    for leg in (0, 1):
        planted = motion.contacts[:, leg] > 0.5
        steady = planted[1:] & planted[:-1]
        if steady.sum() < 5:
            continue
        got = np.linalg.norm(np.diff(ankles[:, leg], axis=0), axis=1)[steady] * motion.fps
        want = scale * np.linalg.norm(np.diff(smpl[:, leg], axis=0), axis=1)[steady] * motion.fps
        print(f"leg {leg}: {steady.sum()} planted steps, ankle speed median {np.median(got):.3f} m/s "
              f"(SMPL's, scaled: {np.median(want):.3f})")
        assert np.median(got) <= np.median(want) + 0.02
    assert (motion.contacts[:, :2] > 0.5).sum() >= 10   # the check above ran on planted feet


def test_a_bone_that_does_not_inherit_rotation_points_along_the_dance(addon, tmp_path):
    # Review: a forearm with Inherit Rotation off (a hinge) pointed up to 65 degrees off the
    # dance's (mean limb cosine 0.85): the retarget turned it as if it inherited.
    scene = addon
    obj = build_armature("Hinges", mixamo_bones())
    for name in ("mixamorig:LeftForeArm", "mixamorig:RightLeg"):
        obj.data.bones[name].use_inherit_rotation = False
    _, first, last = stage_song(scene, tmp_path)
    motion, _ = dance(obj, scene, first, last)
    cos = limb_cosines(obj, motion, list(range(first, last + 1, 3)), mixamo_limbs())
    assert cos.min() > 0.99, cos.min(axis=0)


def test_animation_on_nla_strips_only_is_said_as_it_is(addon, tmp_path):
    # Review: a character playing a clip from an NLA strip got "has no animation" with Keep Legs on.
    scene = addon
    obj = build_armature("Clip", mixamo_bones())
    pb = obj.pose.bones["mixamorig:LeftUpLeg"]
    for frame, w in ((1, 1.0), (30, 0.9)):
        pb.rotation_quaternion = (w, (1 - w * w) ** 0.5, 0.0, 0.0)
        pb.keyframe_insert("rotation_quaternion", frame=frame)
    ad = obj.animation_data
    ad.nla_tracks.new().strips.new("Clip", 1, ad.action)
    ad.action = None
    stage_song(scene, tmp_path)
    scene.dance.armature, scene.dance.use_strip_range, scene.dance.keep_legs = obj, True, True
    notes = operators.build_request(bpy.context).notes
    assert any("'Clip' plays its animation from NLA strips: its kept body parts hold the current pose" in n
               for n in notes), notes
    assert not any("has no animation" in n for n in notes)


def test_an_unnamed_character_facing_plus_y_dances_facing_its_own_front(addon, tmp_path):
    # QA: a rig no preset knows (bones bone.000 ...), modelled facing +y, was mapped from its
    # hierarchy with left and right swapped: it danced mirrored, its back to where it faces.
    scene = addon
    bones = mixamo_bones("")
    anonymous = {b[0]: f"bone.{i:03d}" for i, b in enumerate(bones)}
    obj = build_armature("Unnamed", [(anonymous[n], anonymous.get(p), h, t) for n, p, h, t in bones],
                         rest_roll(np.random.default_rng(4), bones))
    obj.rotation_euler.z = math.pi
    give_a_body(obj)
    bpy.context.view_layer.update()
    _, first, last = stage_song(scene, tmp_path)
    motion, _ = dance(obj, scene, first, last)
    assert rig_io.check_character(obj)["left_hip"] == anonymous["LeftUpLeg"]
    assert_dances(obj, motion, first, [(anonymous[a], anonymous[b]) for a, b in mixamo_limbs("")], yaw=math.pi)


def tilted_hips(rig: str):
    """(armature, the bone carrying the location, its limbs for assert_dances): QA's Mixamo rig
    whose hips bone (a root) points forward, up and sideways and is rolled; or the Unreal one
    whose pelvis is tilted too, under a tilted, rolled root bone (a location along the parent's axes)."""
    tilt = np.array([0.08, 0.05, 0.1])                  # SMPL Y up: forward-up-sideways in Blender
    if rig == "mixamo":
        bones = [(n, p, h, np.asarray(h) + tilt if n == "mixamorig:Hips" else t) for n, p, h, t in mixamo_bones()]
        return build_armature("Tilted", bones, {"mixamorig:Hips": 1.0}), "mixamorig:Hips", mixamo_limbs()
    bones = [(n, p, h, np.asarray(h) + tilt if n == "pelvis" else (0.1, 0.12, -0.15) if n == "root" else t)
             for n, p, h, t in unreal_bones()]
    obj = build_armature("Tilted", bones, {"pelvis": 1.0, "root": 0.6})
    obj.data.bones["root"].use_deform = False   # the floor-level root moves nothing
    limbs = [(a, a) for a in ("thigh_l", "calf_l", "thigh_r", "calf_r", "upperarm_l", "lowerarm_l", "upperarm_r",
                              "lowerarm_r")]
    return obj, "pelvis", limbs


@pytest.mark.parametrize("rig", ["mixamo", "unreal"])
def test_a_hips_bone_without_local_location_travels_with_the_dance(addon, tmp_path, rig):
    """QA: a Mixamo rig whose hips bone is tilted off the armature's axes, with its Local
    Location off (Bone > Relations), danced with its pelvis up to 0.554 m off the dance's path and
    its lowest joint floating (median 0.339 m; 0.002 m with the option on), with no note: the
    root's location was written along the bone's own rest axes, where Blender moves such a bone
    along the armature's axes (a root bone) or its parent's (the Unreal pelvis under its root
    bone). Here, on a 2.1 m path of the tiny test network, the pelvis strayed 3.8 m (Mixamo) and
    2.6 m (Unreal) and the lowest joint up to 0.9 and 1.3 m off the dance's; now 0.000 m off the
    path and within 0.009 m of the dance's lowest joint, as with the option on. The option is
    read, never changed."""
    scene = addon
    obj, hips, limbs = tilted_hips(rig)
    give_a_body(obj)
    obj.data.bones[hips].use_local_location = False
    _, first, last = stage_song(scene, tmp_path)
    motion, _ = dance(obj, scene, first, last)
    assert_dances(obj, motion, first, limbs)        # the root's travel within 3% of the height, feet on the floor
    assert not obj.data.bones[hips].use_local_location


@pytest.mark.parametrize("local,inherit", [(False, True), (False, False), (True, False), (True, True)])
def test_the_hips_location_keys_are_read_where_blender_puts_the_hips(addon, tmp_path, local, inherit):
    """The animator's location keys on the root bone are constraints: read along the axes Blender
    moves that bone along, which its Local Location and Inherit Rotation say (the Unreal pelvis,
    tilted under a tilted root bone the animator also turned). Read along the bone's carried rest
    axes, as before, two keys 32 cm apart were read 30 cm off with Local Location off (13 cm with
    Inherit Rotation off too), and 19 cm off with it on but Inherit Rotation off (Blender still
    moves that bone along its rest axes as its turned parent carries them); now to 1e-4 m. Both
    options on (Blender's default) read right before too."""
    scene = addon
    obj, hips, _ = tilted_hips("unreal")
    obj.data.bones[hips].use_local_location = local
    obj.data.bones[hips].use_inherit_rotation = inherit
    _, first, last = stage_song(scene, tmp_path)
    root = obj.pose.bones["root"]
    root.rotation_quaternion = (math.cos(0.3), math.sin(0.3) * 0.6, 0.0, math.sin(0.3) * 0.8)
    root.keyframe_insert("rotation_quaternion", frame=first)
    pelvis = obj.pose.bones[hips]
    for frame, where in ((first, (0.1, 0.05, -0.2)), (first + 10, (-0.1, 0.2, 0.0))):
        pelvis.location = where
        pelvis.keyframe_insert("location", frame=frame)
    bone_map = rig_io.check_character(obj)
    cons, _ = rig_io.read_character_constraints(obj, bone_map, first, last, 30.0)
    assert np.flatnonzero(cons.trans_mask).tolist() == [0, 10]
    # The pelvis keeps its rest rotation on both keys, so its root path is its head's path, scaled.
    got = rig_io.retargeter(obj, bone_map).scale * (C @ (cons.trans[10] - cons.trans[0]))
    heads = evaluated_points(obj, [first, first + 10], [hips])[:, 0, 0]
    print(f"read {np.linalg.norm(got):.3f} m apart, off by {np.linalg.norm(got - (heads[1] - heads[0])):.3f} m")
    assert np.abs(got - (heads[1] - heads[0])).max() < 1e-4, (got, heads[1] - heads[0])
    assert obj.data.bones[hips].use_local_location == local


def test_the_smpl_dancers_pelvis_travels_without_local_location(addon):
    """The add-on's own dancer writes its pelvis location in SMPL's axes (its bones' rest axes):
    with the animator's Local Location off on the pelvis, Blender moves it along the armature's
    axes, so the root's height and depth traded places (a root 0.95 m high and 0.3 m back read
    back 0.66 m high, 0.31 m off). Now it reads back as the dance's root."""
    obj = scene_io.create_smpl_armature(bpy.context, with_mesh=False)
    obj.data.bones["pelvis"].use_local_location = False
    trans = np.array([[0.0, 0.9, 0.0], [0.3, 0.95, -0.3], [-0.2, 0.7, 0.4]])
    scene_io.write_motion(obj, Motion(np.zeros((3, 72)), trans, 30.0), 1, "Dance")
    _, got = scene_io.evaluate_frames(obj, [1, 2, 3])
    assert np.abs(got - trans).max() < 1e-5, got
    assert not obj.data.bones["pelvis"].use_local_location


def test_a_character_under_a_tilting_parent_dances_the_same_whatever_the_playhead(addon, tmp_path):
    """QA: a character whose parent empty is upright on the first frame and keyed to tilt 0.3 rad
    about X by frame 180 danced differently (relative to its parent) with the playhead on frame 1
    and on frame 150 (up to 0.264 m; the lowest foot 0.063 against 0.025 m): the character's up
    axis and floor were read on the playhead (here 0.66 m apart, the parent tilted 0.3 rad over
    2 s). Now they are read on the dance's first frame, and the playhead stays where it was; a
    parent keyed to move and turn about the vertical, left upright, gives the same dance as a
    still one (as it did before)."""
    scene = addon
    _, first, last = stage_song(scene, tmp_path)

    def danced(playhead, tilt):
        stage = bpy.data.objects.new("Stage", None)
        scene.collection.objects.link(stage)
        obj = build_armature("OnStage", mixamo_bones())
        obj.parent = stage
        if tilt is not None:
            stage.keyframe_insert("rotation_euler", frame=first)
            stage.keyframe_insert("location", frame=first)
            stage.rotation_euler, stage.location = tilt, (1.0, 0.5, 0.3)
            stage.keyframe_insert("rotation_euler", frame=first + 60)
            stage.keyframe_insert("location", frame=first + 60)
        scene.frame_set(playhead)
        dance(obj, scene, first, last)
        assert scene.frame_current == playhead
        local = []                                     # the bones' heads relative to the parent
        for f in range(first, last + 1, 4):
            scene.frame_set(f)
            local.append([np.array(obj.matrix_basis @ pb.head) for pb in obj.pose.bones])
        bpy.data.objects.remove(obj)
        bpy.data.objects.remove(stage)
        return np.array(local)

    still = danced(first, None)
    assert np.abs(danced(first + 40, (0.3, 0.0, 0.0)) - danced(first, (0.3, 0.0, 0.0))).max() < 1e-5
    assert np.abs(danced(first + 40, (0.0, 0.0, math.radians(90))) - still).max() < 1e-5


def test_animated_bones_the_dance_holds_at_rest_are_named(addon, tmp_path):
    # QA: a root above the hips walking 2 m, and twist keys on a bone between thigh and shin, were
    # replaced by the rest pose in the take (the dance is computed through them at rest) without
    # a word; the README said such bones keep the animator's animation.
    scene = addon
    bones = mixamo_bones()
    root = ("root", None, np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, 0.2]))
    bones = [root] + [(n, "root" if p is None else p, h, t) for n, p, h, t in bones]
    obj = build_armature("Character", bones)
    stage_song(scene, tmp_path, 1.0)
    scene.dance.armature = obj
    assert not any("held at rest" in n or "at rest while the dance plays" in n
                   for n in operators.build_request(bpy.context).notes)
    pb = obj.pose.bones["root"]
    for frame, x in ((1, 0.0), (30, 2.0)):
        pb.location = (x, 0.0, 0.0)
        pb.keyframe_insert("location", frame=frame)
    (note,) = [n for n in operators.build_request(bpy.context).notes if "at rest while the dance plays" in n]
    assert note.startswith("root of 'Character' is animated above or between the bones the dance moves")
    # A thigh keyed at 1.2x its length: kept in the take, but the dance is computed at rest length.
    assert not any("scaled or moved from rest" in n for n in operators.build_request(bpy.context).notes)
    thigh = obj.pose.bones["mixamorig:LeftUpLeg"]
    thigh.scale = (1.0, 1.2, 1.0)
    thigh.keyframe_insert("scale", frame=1)
    (note,) = [n for n in operators.build_request(bpy.context).notes if "scaled or moved from rest" in n]
    assert note.startswith("mixamorig:LeftUpLeg of 'Character' is keyed scaled or moved")


def test_batch_without_armature_dances_the_scenes_only_character_and_asks_among_several(addon, tmp_path, tiny_weights):
    # QA: with no --armature, batch.py added a new SMPL dancer and danced it, leaving the scene's
    # own character as it was, without a word.
    build_armature("Hero", unreal_bones())
    song = add_wav(tmp_path, 1.0)
    scene_blend, out_blend = tmp_path / "scene.blend", tmp_path / "out.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(scene_blend))
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    env.pop("PYTHONPATH", None)
    batch = [sys.executable, str(operators.__file__).replace("operators.py", "batch.py"), "--",
             "--blend", str(scene_blend), "--audio", str(song), "--weights", str(tiny_weights), "--steps", "2",
             "--out-blend", str(out_blend)]
    run = subprocess.run(batch, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "note: dancing 'Hero', the scene's only armature" in run.stderr
    bpy.ops.wm.open_mainfile(filepath=str(out_blend))
    assert takes.is_take(bpy.data.objects["Hero"].animation_data.action)
    assert not any(o.type == 'ARMATURE' and o.name != "Hero" for o in bpy.data.objects)
    build_armature("Villain", unreal_bones())
    bpy.ops.wm.save_as_mainfile(filepath=str(scene_blend))
    out_blend.unlink()
    two = subprocess.run(batch, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert two.returncode == 1 and two.stderr.strip().splitlines()[-1] == (
        "error: 2 armatures in the scene ('Hero', 'Villain') and none is an SMPL dancer: pick one with --armature")
    assert not out_blend.exists()


def test_a_library_override_keeps_its_takes_and_original_action_when_the_shot_is_reopened(addon, tmp_path):
    # QA: a studio's character is linked from its library file and overridden in the shot. Blender
    # saves no plain custom property added to an override: on reopening, the panel listed no
    # takes and no original action, the next take was numbered 1 again, and Auto-Map raised a
    # traceback. The add-on's state on the dancer is registered and overridable now; a bone map
    # cannot be stored on an override, and saying so changes nothing.
    shot_blank, library, shot = tmp_path / "blank.blend", tmp_path / "character.blend", tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(shot_blank))
    obj = build_armature("Hero", mixamo_bones())
    collection = bpy.data.collections.new("CHAR")
    collection.objects.link(obj)
    bpy.context.scene.collection.objects.unlink(obj)
    bpy.context.scene.collection.children.link(collection)
    bpy.ops.wm.save_as_mainfile(filepath=str(library))

    bpy.ops.wm.open_mainfile(filepath=str(shot_blank))
    scene = bpy.context.scene
    with bpy.data.libraries.load(str(library), link=True) as (_, linked):
        linked.collections = ["CHAR"]
    override = linked.collections[0].override_hierarchy_create(scene, bpy.context.view_layer)
    obj = next(o for o in override.objects if o.type == 'ARMATURE')
    obj.override_library.is_system_override = False          # editable, as the animator makes it
    arm = obj.pose.bones["mixamorig:LeftArm"]
    arm.rotation_quaternion = (0.9, 0.3, 0.2, 0.1)
    arm.keyframe_insert("rotation_quaternion", frame=1)       # the animator's own (local) action
    own = obj.animation_data.action
    _, first, last = stage_song(scene, tmp_path, 2.0)
    scene.dance.armature = obj
    scene.dance.steps, scene.dance.quality = 2, 'BEST'
    assert bpy.ops.dance.generate() == {'FINISHED'}
    take, own = obj.animation_data.action.name, own.name
    with pytest.raises(RuntimeError, match="library override: its bone map cannot be stored"):
        bpy.ops.dance.auto_map()
    assert len(getattr(obj, MAP_PROPERTY)) == 0
    bpy.ops.wm.save_as_mainfile(filepath=str(shot))

    bpy.ops.wm.open_mainfile(filepath=str(shot))
    obj = next(o for o in bpy.data.objects if o.type == 'ARMATURE' and o.override_library is not None)
    assert [a.name for a in takes.takes(obj)] == [take]
    assert takes.original_action(obj) is not None and takes.original_action(obj).name == own
    scene = bpy.context.scene
    scene.dance.armature = obj
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert [a.get(takes.TAKE_KEY) for a in takes.takes(obj)] == [1, 2]
