"""Regenerating is a loop and nothing of the animator's is lost (issue 13), in the real bpy module.

Generation uses the session's tiny untrained checkpoint and 2 steps: what is tested here is
what the add-on does with the scene (keys, actions, rotation modes, takes, frame ranges), which
does not depend on what the model learned. Every check reads the EVALUATED pose (frame_set).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

bpy = pytest.importorskip("bpy")
from mathutils import Quaternion  # noqa: E402

from blender_addon import keys, operators, rig_io, runner, scene_io  # noqa: E402
from blender_addon import blender_compat as compat  # noqa: E402
from blender_addon import takes as T  # noqa: E402
from engine.body import rotations as R  # noqa: E402
from engine.errors import EngineError  # noqa: E402
from engine.body.skeleton import JOINT_INDEX, JOINT_NAMES  # noqa: E402
from rotation_checks import rotation_error  # noqa: E402
from test_addon_operators import addon  # noqa: E402,F401  (fixture)
from test_addon_scene_io import add_wav, random_motion, world_heads  # noqa: E402


def _aa_to_quat(aa) -> np.ndarray:
    return R.axis_angle_to_quat(torch.as_tensor(np.asarray(aa, np.float64))).numpy()


def _set_rotation(pb, q) -> str:
    """Pose `pb` to quaternion `q` in its own rotation mode; returns the data path to key."""
    if pb.rotation_mode == 'QUATERNION':
        pb.rotation_quaternion = q
        return "rotation_quaternion"
    if pb.rotation_mode == 'AXIS_ANGLE':
        axis, angle = Quaternion(q).to_axis_angle()
        pb.rotation_axis_angle = (angle, *axis)
        return "rotation_axis_angle"
    pb.rotation_euler = Quaternion(q).to_euler(pb.rotation_mode)
    return "rotation_euler"


def _key(obj, frame, joints: dict) -> None:
    """Key {joint name: axis-angle} on `frame`, each bone in its own rotation mode."""
    for name, aa in joints.items():
        pb = obj.pose.bones[name]
        pb.keyframe_insert(_set_rotation(pb, _aa_to_quat(aa)), frame=frame)


def _song_stage(scene, tmp_path, seconds=3.0, strip_frame=5):
    scene.render.fps, scene.render.fps_base = 24, 1
    scene_io.add_sound_strip(scene, str(add_wav(tmp_path, seconds)), frame_start=strip_frame)
    assert bpy.ops.dance.create_dancer(with_mesh=False) == {'FINISHED'}
    scene.dance.steps, scene.dance.quality = 2, 'BEST'   # the teacher path at 2 steps (the tiny network is no student)
    strip = scene_io.find_sound_strip(scene)
    first, end = scene_io.compat.strip_range(strip)
    return scene.dance.armature, first, end - 1


def _heads(obj, frames) -> np.ndarray:
    out = []
    for f in frames:
        bpy.context.scene.frame_set(f)
        out.append(world_heads(obj))
    return np.array(out)


def _pose(obj, frame) -> np.ndarray:
    return scene_io.evaluate_frames(obj, [frame])[0][0]


# --- Writing in each bone's own rotation mode ------------------------------------------------

def test_rotations_are_written_in_each_bones_own_mode_continuously():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps = 30
    obj = scene_io.create_smpl_armature(bpy.context, with_mesh=False)
    modes = {"left_elbow": 'XYZ', "right_elbow": 'ZXY', "neck": 'YZX', "left_knee": 'AXIS_ANGLE',
             "right_knee": 'XZY', "head": 'ZYX', "spine1": 'YXZ'}
    for name, mode in modes.items():
        obj.pose.bones[name].rotation_mode = mode
    # Each bone spins about a tilted axis through three full turns: Euler angles must wind on
    # (no 360-degree flips between frames) and the evaluated pose must be the rotation asked for.
    T = 120
    t = np.arange(T) / 30.0
    axis = np.array([0.3, 0.8, -0.5]) / np.linalg.norm([0.3, 0.8, -0.5])
    poses = np.zeros((T, 72))
    for j in range(24):
        poses[:, 3 * j:3 * j + 3] = axis[None] * ((6 * np.pi * t / t[-1]) + 0.1 * j)[:, None]
    motion = random_motion(T)
    motion.poses = poses
    action = scene_io.write_motion(obj, motion, 1, "Spin")
    for name, mode in modes.items():
        assert obj.pose.bones[name].rotation_mode == mode                 # never changed
    fcurves = scene_io.compat.action_fcurves(action, scene_io.compat.object_slot(obj))
    paths = {fc.data_path for fc in fcurves}
    for name in JOINT_NAMES:
        prop = keys.rotation_path(obj.pose.bones[name])[0]
        assert f'pose.bones["{name}"].{prop}' in paths
        assert not {f'pose.bones["{name}"].{p}' for p in ("rotation_quaternion", "rotation_euler",
                                                          "rotation_axis_angle") if p != prop} & paths
    for fc in fcurves:
        if fc.data_path.endswith("rotation_euler"):
            values = np.array([k.co[1] for k in fc.keyframe_points])
            # 3 turns in 4 s is ~0.16 rad/frame (Euler channels up to a few times that near
            # gimbal poses); a flip to the other Euler solution or by 360 degrees is >= pi.
            assert np.abs(np.diff(values)).max() < 1.0, fc.data_path
    back = scene_io.read_motion(obj, 1, T)
    assert rotation_error(back.poses, poses) < 1e-4
    # Every key is marked as generated: none of them is a constraint next time.
    assert {k.type for fc in fcurves for k in fc.keyframe_points} == {scene_io.compat.generated_key_type()[0]}
    assert scene_io.count_kept(obj, 1, T) == (0, 0)


def test_write_bone_rotations_splices_a_range_and_keeps_other_keys():
    """The reusable writer (helper E's retargeting calls it for any rig): replaces keys within the
    frames it writes and leaves every other key, its handles and type, exactly as it was."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = scene_io.create_smpl_armature(bpy.context, with_mesh=False)
    pb = obj.pose.bones["left_elbow"]
    pb.rotation_mode = 'XYZ'
    for f, z in ((1, 0.1), (10, 3.0), (20, 6.0), (30, 9.0)):               # winds past 2 pi
        pb.rotation_euler = (0.2, -0.1, z)
        pb.keyframe_insert("rotation_euler", frame=f)
    action = obj.animation_data.action
    fcs = [fc for fc in scene_io.compat.action_fcurves(action, scene_io.compat.object_slot(obj))]
    fcs[0].keyframe_points[0].handle_left_type = 'FREE'
    # (Auto handles follow their new neighbours, as in Blender; a free handle stays where it was.)
    before = {(fc.array_index, k.co[0]): (k.co[1], k.type, k.handle_left_type,
                                          tuple(k.handle_left) if k.handle_left_type == 'FREE' else None)
              for fc in fcs for k in fc.keyframe_points if not 12 <= k.co[0] <= 18}
    frames = np.arange(12, 19)
    target = Quaternion((0, 0, 1), 6.0 + 0.5)                               # the same rotation as z = 6.5
    quats = np.tile(np.array(target)[None, None], (len(frames), 1, 1))
    keys.write_bone_rotations(obj, action, ["left_elbow"], frames, quats)
    assert pb.rotation_mode == 'XYZ'
    after = {}
    for fc in fcs:
        for k in fc.keyframe_points:
            if 12 <= k.co[0] <= 18:
                assert k.type == 'GENERATED' or k.type == scene_io.compat.generated_key_type()[0]
            else:
                after[(fc.array_index, k.co[0])] = (k.co[1], k.type, k.handle_left_type, tuple(k.handle_left)
                                                    if k.handle_left_type == 'FREE' else None)
    assert after == before
    z = [k.co[1] for k in fcs[2].keyframe_points if 12 <= k.co[0] <= 18]
    assert z == pytest.approx([6.5] * 7, abs=1e-4)   # continuous with z = 3.0 at frame 10: not 6.5 - 2 pi


# --- The loop: generate, tweak, generate again ---------------------------------------------

def test_a_tweak_on_the_generated_dance_is_honoured_next_time(addon, tmp_path):
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path)
    rng = np.random.default_rng(1)
    seed_keys = {name: rng.normal(0, 0.4, 3) for name in ("left_shoulder", "right_hip")}
    _key(obj, first + 10, seed_keys)
    assert scene_io.count_kept(obj, first, last) == (2, 1)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert scene.dance.progress == 1.0
    dance = obj.animation_data.action
    assert scene_io.count_kept(obj, first, last) == (2, 1)                 # carried over, still the animator's

    # The animator keys a changed elbow pose on one frame of the generated dance (over a generated key).
    tweak_frame, tweak = first + 30, np.array([0.2, -1.1, 0.4])
    _key(obj, tweak_frame, {"left_elbow": tweak})
    assert obj.animation_data.action == dance
    assert scene_io.count_kept(obj, first, last) == (3, 2)                 # the panel counts it
    scene.dance.seed = 5
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert obj.animation_data.action != dance
    got = _pose(obj, tweak_frame)
    assert rotation_error(got[3 * JOINT_INDEX["left_elbow"]:][:3], tweak) < 1e-4
    got = _pose(obj, first + 10)
    for name, aa in seed_keys.items():
        assert rotation_error(got[3 * JOINT_INDEX[name]:][:3], aa) < 1e-4
    assert scene_io.count_kept(obj, first, last) == (3, 2)


def test_euler_keyed_bones_keep_their_mode_and_their_action_stays_playable(addon, tmp_path):
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path)
    modes = {"left_elbow": 'XYZ', "right_shoulder": 'ZXY', "neck": 'AXIS_ANGLE'}
    for name, mode in modes.items():
        obj.pose.bones[name].rotation_mode = mode
    keys = {first + 4: {"left_elbow": [0.1, 0.9, 0.2], "right_shoulder": [0.3, 0.0, -0.6], "neck": [0.2, 0.1, 0]},
            first + 40: {"left_elbow": [-0.4, 0.2, 1.2], "right_shoulder": [0.0, 0.7, 0.1], "neck": [0, -0.3, 0.2]}}
    for f, joints in keys.items():
        _key(obj, f, {n: np.array(aa) for n, aa in joints.items()})
    mine = obj.animation_data.action
    middle = first + 22
    mine_middle = _pose(obj, middle)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    for name, mode in modes.items():
        assert obj.pose.bones[name].rotation_mode == mode
    for f, joints in keys.items():                                         # keys met in the dance
        got = _pose(obj, f)
        for name, aa in joints.items():
            assert rotation_error(got[3 * JOINT_INDEX[name]:][:3], np.array(aa)) < 1e-4, (f, name)
    # Switching back to the animator's own action plays it as before: the arm moves between keys.
    assert T.original_action(obj) == mine
    assert bpy.ops.dance.use_take(action=mine.name) == {'FINISHED'}
    assert obj.animation_data.action == mine
    for f, joints in keys.items():
        got = _pose(obj, f)
        for name, aa in joints.items():
            assert rotation_error(got[3 * JOINT_INDEX[name]:][:3], np.array(aa)) < 1e-4, (f, name)
    assert np.abs(_pose(obj, middle) - mine_middle).max() < 1e-5           # interpolated, not frozen
    j = 3 * JOINT_INDEX["left_elbow"]
    assert rotation_error(_pose(obj, middle)[j:j + 3], np.array(keys[first + 4]["left_elbow"])) > 0.05


def test_regenerating_a_range_keeps_the_rest_and_joins_smoothly(addon, tmp_path):
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=4.0)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    dance = obj.animation_data.action
    frames = list(range(first, last + 1))
    before = _heads(obj, frames)
    a, b = first + 30, first + 60
    scene.dance.use_strip_range = False
    scene.dance.frame_start, scene.dance.frame_end = a, b
    scene.dance.seed = 3
    assert bpy.ops.dance.generate() == {'FINISHED'}
    take = obj.animation_data.action
    assert take != dance and dance.name in bpy.data.actions                 # a copy; the old take is kept
    after = _heads(obj, frames)
    outside = [i for i, f in enumerate(frames) if not a <= f <= b]
    inside = [i for i, f in enumerate(frames) if a <= f <= b]
    assert np.abs(after[outside] - before[outside]).max() < 1e-5           # untouched outside the range
    assert np.abs(after[inside] - before[inside]).max() > 1e-3              # regenerated inside it
    # At both joins the joints move about as fast as they do just around them: no jump.
    speed = np.linalg.norm(np.diff(after, axis=0), axis=2).max(axis=1)     # (F-1,) fastest joint per frame step
    for join in (a - first - 1, b - first):                                 # steps a-1 -> a and b -> b+1
        around = np.r_[speed[join - 6:join - 1], speed[join + 2:join + 7]]
        print(f"join step {join}: {speed[join]:.4f} m/frame, around: max {around.max():.4f} median {np.median(around):.4f}")
        assert speed[join] <= 2.0 * around.max() + 1e-3



def test_a_quaternion_key_keeps_its_own_sign_in_every_take(addon, tmp_path):
    # QA25: a range regenerated around the animator's quaternion key wrote it negated (W 0.82 ->
    # -0.82): the same rotation, but not their value. Keyed here with W > 0 and W < 0 on purpose.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=3.0)
    pb = obj.pose.bones["left_knee"]
    pb.rotation_mode = 'QUATERNION'
    theirs = {first + 20: np.array(_aa_to_quat(np.array([0.5, 0.0, 0.1]))),
              first + 50: -np.array(_aa_to_quat(np.array([0.9, 0.1, 0.0])))}
    for frame, value in theirs.items():
        pb.rotation_quaternion = value
        pb.keyframe_insert("rotation_quaternion", frame=frame)

    def written(frame) -> np.ndarray:
        curves = {fc.array_index: fc for fc in compat.action_fcurves(obj.animation_data.action, compat.object_slot(obj))
                  if fc.data_path == 'pose.bones["left_knee"].rotation_quaternion'}
        return np.array([curves[i].evaluate(frame) for i in range(4)])

    def as_keyed_without_a_swing_beside_them() -> bool:
        # Between whole frames the channels interpolate one by one: a sign change there passes
        # through a near-zero quaternion, a 180-degree swing inside a frame (QA27).
        return all(np.abs(written(k) - v).max() < 1e-6 and
                   all(np.linalg.norm(written(f)) > 0.9 for f in np.arange(k - 6, k + 6.01, 0.1))
                   for k, v in theirs.items())
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert as_keyed_without_a_swing_beside_them()
    scene.dance.use_strip_range = False
    # Ranges around the keys, between them, and ending or starting beside one (QA28: a range
    # ending beside a key of the other sign swung there).
    a, b = theirs
    for seed, (start, end) in enumerate(((a - 10, b + 10), (a + 1, b - 1), (a - 10, b - 1), (a + 1, b + 10)), start=1):
        scene.dance.seed = seed
        scene.dance.frame_start, scene.dance.frame_end = start, end
        assert bpy.ops.dance.generate() == {'FINISHED'}
        assert as_keyed_without_a_swing_beside_them(), (start, end)


def test_a_quaternion_key_after_the_song_is_reached_through_unit_quaternions(addon, tmp_path):
    # QA: a hips key 1.5 s after the song, of the other sign than the dance's last frame (q and
    # -q are one rotation): the take's curve ran from -q to q through (0,0,0,0) halfway, and the
    # body collapsed for that frame (48 m/s). Keyed with W > 0 and W < 0, led out into (within
    # 2 s) and beyond, so that one of each differs from the dance's sign whatever it draws.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=2.0)
    pb = obj.pose.bones["left_knee"]
    pb.rotation_mode = 'QUATERNION'
    q = np.array(_aa_to_quat(np.array([0.5, 0.0, 0.1])))
    for gap in (12, 72):
        for sign in (1.0, -1.0):
            if obj.animation_data is not None:
                obj.animation_data.action = None          # a new action of the animator's for each
            pb.rotation_quaternion = sign * q
            pb.keyframe_insert("rotation_quaternion", frame=last + gap)
            assert bpy.ops.dance.generate() == {'FINISHED'}
            curves = {fc.array_index: fc for fc in compat.action_fcurves(obj.animation_data.action, compat.object_slot(obj))
                      if fc.data_path == 'pose.bones["left_knee"].rotation_quaternion'}
            norms = [np.linalg.norm([curves[i].evaluate(f) for i in range(4)])
                     for f in np.arange(last - 2, last + gap + 0.01, 0.25)]
            print(f"a key {gap} frames after the song, W {sign * q[0]:+.2f}: smallest norm {min(norms):.3f}")
            assert min(norms) > 0.9, (gap, sign)
            assert np.abs([curves[i].evaluate(last + gap) for i in range(4)] - sign * q).max() < 1e-6


def test_a_range_regenerated_beyond_the_takes_end_extends_it_without_a_snap(addon, tmp_path):
    # QA: a take of frames a..b, then the range b+1..c: the old take held its last pose after b,
    # and that pose was kept as a key on c+1, snapping back to it (0.5 m in one frame).
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=4.0)
    a, b, c = first + 30, first + 55, first + 80
    scene.dance.use_strip_range = False
    for frame_start, frame_end, seed in ((a, b, 0), (b + 1, c, 3), (first, a - 1, 4)):
        scene.dance.frame_start, scene.dance.frame_end, scene.dance.seed = frame_start, frame_end, seed
        assert bpy.ops.dance.generate() == {'FINISHED'}
        assert compat.keyed_range(obj) == (min(first if seed == 4 else a, frame_start), c if seed else b)
    frames = list(range(first, c + 3))
    speed = np.linalg.norm(np.diff(_heads(obj, frames), axis=0), axis=2).max(axis=1)   # fastest joint per step
    print("steps at the joins and past the end:", speed[[a - first - 1, b - first, c - first, c - first + 1]])
    assert speed[c - first:].max() < 1e-6                 # after the take's end it holds its last pose
    for join in (a - first - 1, b - first):               # the new ranges join the dance beside them
        assert speed[join] <= 2.0 * np.r_[speed[join - 6:join - 1], speed[join + 2:join + 7]].max() + 1e-3


def test_regenerating_a_range_of_sparse_keys_leaves_the_rest_playing_as_before(addon, tmp_path):
    # The animator's blocking (a pose every 30 frames, Bezier in between) with a range regenerated
    # between two of its keys: the frames outside still play exactly as before.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=4.0)
    rng = np.random.default_rng(5)
    for f in range(first, last + 1, 30):
        _key(obj, f, {n: rng.normal(0, 0.3, 3) for n in JOINT_NAMES})
    frames = list(range(first, last + 1))
    before = _heads(obj, frames)
    a, b = first + 40, first + 50
    scene.dance.use_strip_range = False
    scene.dance.frame_start, scene.dance.frame_end = a, b
    assert bpy.ops.dance.generate() == {'FINISHED'}
    after = _heads(obj, frames)
    outside = [i for i, f in enumerate(frames) if not a <= f <= b]
    assert np.abs(after[outside] - before[outside]).max() < 1e-4
    assert np.abs(after[[frames.index(a + 5)]] - before[[frames.index(a + 5)]]).max() > 1e-3


def test_takes_are_named_listed_switchable_and_cleaned_up(addon, tmp_path):
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.5)
    _key(obj, first, {"left_elbow": np.array([0.3, 0.2, 0.1])})
    obj.pose.bones["head"].scale = (1.2, 1.2, 1.2)                           # posed, never keyed
    mine = obj.animation_data.action
    shown = []
    for seed in (0, 0, 1):
        scene.dance.seed = seed
        assert bpy.ops.dance.generate() == {'FINISHED'}
        shown.append(_heads(obj, [first + 3]))
    takes = T.takes(obj)
    assert [t.name for t in takes] == ["Dance song any s0 take 1", "Dance song any s0 take 2",
                                       "Dance song any s1 take 1"]
    assert [t["dance_seed"] for t in takes] == [0, 0, 1] and takes[-1] == obj.animation_data.action
    obj.name = "My Dancer"                                                   # renamed: the takes are still its own
    assert T.takes(obj) == takes
    assert bpy.ops.dance.use_take(action=takes[0].name) == {'FINISHED'}
    assert obj.animation_data.action == takes[0]
    assert np.abs(_heads(obj, [first + 3]) - shown[0]).max() < 1e-6
    assert np.abs(shown[2] - shown[0]).max() > 1e-3                         # another seed, another dance
    # Clean up: the takes nothing plays go; the one in use and the animator's own action stay.
    assert T.unused_takes(obj) == takes[1:]
    assert bpy.ops.dance.clean_takes() == {'FINISHED'}
    assert T.takes(obj) == [takes[0]] and mine.name in bpy.data.actions
    assert obj.animation_data.action == takes[0]
    assert bpy.ops.dance.use_take(action=mine.name) == {'FINISHED'}
    # Back on their action: what the takes danced and it does not animate stands at rest, and
    # what the animator posed without keys stays so (QA: a finger and a tail put back to rest).
    assert tuple(obj.pose.bones["right_knee"].rotation_quaternion) == (1.0, 0.0, 0.0, 0.0)
    assert tuple(obj.pose.bones["head"].scale) == pytest.approx((1.2, 1.2, 1.2))
    assert bpy.ops.dance.clean_takes() == {'FINISHED'}
    assert T.takes(obj) == [] and bpy.data.actions.get(mine.name) == mine


def test_the_scene_range_grows_to_cover_the_dance(addon, tmp_path):
    scene = addon
    scene.frame_start, scene.frame_end = 1, 250
    obj, first, last = _song_stage(scene, tmp_path, seconds=2.0, strip_frame=230)
    assert last > 250
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert (scene.frame_start, scene.frame_end) == (1, last)               # grown, never shrunk
    assert f"the scene's frame range is now 1-{last} (it was 1-250)" in scene.dance.status     # and said so
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "frame range" not in scene.dance.status                           # unchanged: nothing to say


def test_in_place_dance_keeps_the_root_on_the_spot(addon, tmp_path):
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=3.0)
    scene.dance.stage = 'IN_PLACE'
    assert bpy.ops.dance.generate() == {'FINISHED'}
    pelvis = _heads(obj, range(first, last + 1))[:, 0, :2]
    # The engine keeps only the sway of the weight from foot to foot, within IN_PLACE_SWAY of
    # the spot (engine.finishing.rootpath): the pelvis never leaves a disc of that radius.
    from engine.finishing.rootpath import IN_PLACE_SWAY
    spread = np.linalg.norm(pelvis[:, None] - pelvis[None], axis=2).max()
    print(f"in place: the pelvis covers a {spread * 100:.1f} cm wide spot over {last - first + 1} frames")
    assert spread <= 2 * IN_PLACE_SWAY + 0.01
    scene.dance.stage, scene.dance.stage_radius = 'RADIUS', 0.3
    from blender_addon import operators
    assert operators.build_request(bpy.context).stage_radius == pytest.approx(0.3)


def test_a_centimetre_scene_gets_a_full_size_dancer_and_radius_in_its_units(addon, tmp_path):
    """Unit Scale 0.01 (1 Blender unit shows as 1 cm, as game studios set it): the new dancer is
    as tall as in a metre scene, and the panel's Radius, a distance in the scene, is that
    distance: 40 units are 40 cm, 0.4 of the dance's metres."""
    scene = addon
    scene.unit_settings.scale_length = 0.01
    obj, first, last = _song_stage(scene, tmp_path, seconds=3.0)
    rest = np.array([obj.matrix_world @ b.head_local for b in obj.data.bones])
    assert np.ptp(rest[:, 2]) == pytest.approx(100 * np.ptp(scene_io.REST_HEADS[:, 2]), rel=1e-4)   # ~1.5 m of joints
    scene.dance.stage, scene.dance.stage_radius = 'RADIUS', 40.0
    from blender_addon import operators
    assert operators.build_request(bpy.context).stage_radius == pytest.approx(0.4)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    heads = _heads(obj, range(first, last + 1))
    travel = np.linalg.norm(heads[:, 0, :2] - heads[0, 0, :2], axis=1).max()
    print(f"centimetre scene: the pelvis travels at most {travel:.1f} units from its start (radius 40)")
    assert travel <= 41.0                 # the root stays in the disc of the radius about its start
    assert heads[..., 2].min() > -5.0     # on the floor, in centimetres


def test_garbage_smpl_model_file_is_one_clear_line(tmp_path):
    pytest.importorskip("smplx")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    for name, data in (("SMPL_NEUTRAL.pkl", b"1234 this is not a model\n"), ("model.npz", b"garbage")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(EngineError) as err:
            scene_io.create_smpl_armature(bpy.context, smpl_model_path=str(path))
        msg = str(err.value)
        assert "not an SMPL model file" in msg and "invalid literal" not in msg and "\n" not in msg


# --- batch.py ---------------------------------------------------------------------------------

def test_batch_with_an_unwritable_output_exits_at_once(tmp_path, tiny_weights):
    from conftest import REPO
    song = add_wav(tmp_path, 1.0)
    cases = [["--out-blend", str(tmp_path / "no" / "such" / "dir" / "out.blend")],
             ["--out-npz", str(tmp_path)],                                   # a folder, not a file
             ["--out-bvh", str(tmp_path / "missing" / "x.bvh"), "--out-blend", str(tmp_path / "ok.blend")]]
    (tmp_path / "bad.blend").write_bytes(b"not a blend file")               # fails after the checks
    cases.append(["--blend", str(tmp_path / "bad.blend"), "--out-blend", str(tmp_path / "ok.blend")])
    if os.geteuid() != 0:                                                    # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        cases.append(["--out-blend", str(locked / "out.blend")])
    for outputs in cases:
        t = time.perf_counter()
        run = subprocess.run([sys.executable, str(REPO / "blender_addon" / "batch.py"), "--", "--audio", str(song),
                              "--weights", str(tiny_weights), "--steps", "2", *outputs],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
        seconds = time.perf_counter() - t
        errors = [line for line in run.stderr.splitlines() if line.strip()]
        print(f"{outputs[0]}: exit {run.returncode} after {seconds:.1f} s: {errors}")
        assert run.returncode == 1, run.stderr[-2000:]
        assert len(errors) == 1 and errors[0].startswith("error: "), errors
        assert any(word in errors[0] for word in ("cannot be written", "does not exist", "is a folder",
                                                  "cannot open")), errors
        assert "dance:" not in run.stdout                                    # failed before generating
        assert not (tmp_path / "ok.blend").exists()


def test_batch_refuses_to_save_over_a_library_the_shot_links_before_dancing(tmp_path, tiny_weights):
    """QA: --out-blend naming the character's library file (with --force) danced first, then
    Blender refused to save over a library in use, with its own error line beside ours."""
    import hashlib
    from conftest import REPO
    bpy.ops.wm.read_factory_settings(use_empty=True)
    character = bpy.data.collections.new("CHAR")
    bpy.context.scene.collection.children.link(character)
    character.objects.link(bpy.data.objects.new("Prop", None))
    library = tmp_path / "library.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(library))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    with bpy.data.libraries.load(str(library), link=True) as (_, linked):
        linked.collections = ["CHAR"]
    bpy.context.scene.collection.children.link(linked.collections[0])
    shot = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(shot))
    before = hashlib.sha1(library.read_bytes()).hexdigest()
    run = subprocess.run([sys.executable, str(REPO / "blender_addon" / "batch.py"), "--", "--blend", str(shot),
                          "--audio", str(add_wav(tmp_path, 1.0)), "--weights", str(tiny_weights), "--steps", "2",
                          "--out-blend", str(library), "--force"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    print(run.returncode, errors)
    assert run.returncode == 1 and len(errors) == 1 and "is a library this scene links" in errors[0], errors
    assert "dance:" not in run.stdout                                        # refused before dancing
    assert hashlib.sha1(library.read_bytes()).hexdigest() == before


def test_keys_the_animator_changed_count_as_theirs():
    """A generated key counts as the animator's once its type or its value changes (Blender keeps
    the type when a key is inserted over it, so a re-key shows only in the value)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps = 30
    obj = scene_io.create_smpl_armature(bpy.context, with_mesh=False)
    obj.pose.bones["right_wrist"].rotation_mode = 'YXZ'
    action = scene_io.write_motion(obj, random_motion(40), 1, "Dance")
    assert scene_io.count_kept(obj, 1, 40) == (0, 0)
    fcurves = scene_io.compat.action_fcurves(action, scene_io.compat.object_slot(obj))
    by_path = {(fc.data_path, fc.array_index): fc for fc in fcurves}
    by_path[('pose.bones["right_wrist"].rotation_euler', 1)].keyframe_points[9].co[1] += 0.3   # moved in the graph
    assert scene_io.count_kept(obj, 1, 40) == (1, 1)
    assert scene_io.keyed_frames(obj, 1, 40) == ({JOINT_INDEX["right_wrist"]: [10]}, [])
    by_path[('pose.bones["left_knee"].rotation_quaternion', 0)].keyframe_points[19].type = 'KEYFRAME'
    by_path[('pose.bones["pelvis"].location', 2)].keyframe_points[29].co[1] += 0.01
    assert scene_io.keyed_frames(obj, 1, 40) == ({JOINT_INDEX["right_wrist"]: [10], JOINT_INDEX["left_knee"]: [20]},
                                                 [30])
    assert scene_io.count_kept(obj, 1, 40) == (2, 3)


def test_a_dance_from_before_generated_keys_still_knows_the_animators_keys():
    """Dances written by add-on 0.1 have only ordinary keys and bones switched to quaternions;
    the animator's keys are in the action named by `dance_source_action`, in the recorded modes."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps = 30
    obj = scene_io.create_smpl_armature(bpy.context, with_mesh=False)
    obj.pose.bones["left_elbow"].rotation_mode = 'XYZ'
    _key(obj, 12, {"left_elbow": np.array([0.2, 0.5, -0.3]), "neck": np.array([0.1, 0.0, 0.2])})
    mine = obj.animation_data.action
    modes = {pb.name: pb.rotation_mode for pb in obj.pose.bones}
    old = scene_io.write_motion(obj, random_motion(40), 1, "Dance song any s0")   # then made "old":
    for fc in scene_io.compat.action_fcurves(old, scene_io.compat.object_slot(obj)):
        fc.keyframe_points.foreach_set("type", np.zeros(len(fc.keyframe_points), np.int32))
    for key in list(old.keys()):
        del old[key]
    old["dance_source_action"], old["dance_source_rotation_modes"] = mine.name, modes
    obj.pose.bones["left_elbow"].rotation_mode = 'QUATERNION'                       # as 0.1 left it
    assert scene_io.count_kept(obj, 1, 40) == (2, 1)
    assert scene_io.keyed_frames(obj, 1, 40) == ({JOINT_INDEX["left_elbow"]: [12], JOINT_INDEX["neck"]: [12]}, [])


def test_the_take_keeps_what_the_dance_does_not_write(addon, tmp_path):
    # The object's own transform keys, a bone's scale keys and keys outside the song's frames
    # are the animator's too: the take starts as a copy of their action, not an empty one.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path)
    obj.location = (0.0, 0.0, 0.0)
    obj.keyframe_insert("location", frame=first)
    obj.location = (4.0, 0.0, 0.0)
    obj.keyframe_insert("location", frame=last)
    head = obj.pose.bones["head"]
    head.scale = (1.5, 1.5, 1.5)
    head.keyframe_insert("scale", frame=first + 10)
    outside = last + 30
    _key(obj, outside, {"left_hip": np.array([0.9, 0.0, 0.0])})
    middle = (first + last) // 2
    scene.frame_set(middle)
    x_before = obj.matrix_world.translation.x
    assert bpy.ops.dance.generate() == {'FINISHED'}
    take = obj.animation_data.action
    assert T.is_take(take)
    scene.frame_set(middle)
    assert abs(obj.matrix_world.translation.x - x_before) < 1e-6 and 1.0 < x_before < 3.0
    assert tuple(obj.pose.bones["head"].scale) == pytest.approx((1.5, 1.5, 1.5))
    j = 3 * JOINT_INDEX["left_hip"]
    assert rotation_error(_pose(obj, outside)[j:j + 3], np.array([0.9, 0.0, 0.0])) < 1e-4
    # A second take carries them over again.
    assert bpy.ops.dance.generate() == {'FINISHED'}
    j = 3 * JOINT_INDEX["left_hip"]
    assert rotation_error(_pose(obj, outside)[j:j + 3], np.array([0.9, 0.0, 0.0])) < 1e-4
    scene.frame_set(middle)
    assert abs(obj.matrix_world.translation.x - x_before) < 1e-6


def test_a_take_plays_in_full_over_an_add_blend_and_says_so(addon, tmp_path):
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.5)
    _key(obj, first, {"left_elbow": np.array([0.3, 0.2, 0.1])})
    obj.animation_data.action_blend_type, obj.animation_data.action_influence = 'ADD', 0.5
    assert bpy.ops.dance.generate() == {'FINISHED'}
    ad = obj.animation_data
    assert (ad.action_blend_type, ad.action_influence) == ('REPLACE', 1.0)
    assert "blended 'Add' at influence 0.5" in scene.dance.status
    assert bpy.ops.dance.generate() == {'FINISHED'}                      # said once, when it changed
    assert "blended" not in scene.dance.status
    # Back on their own action it blends as they had it; a take again plays in full (QA).
    own = T.original_action(obj).name
    assert bpy.ops.dance.use_take(action=own) == {'FINISHED'}
    assert (ad.action_blend_type, round(ad.action_influence, 6)) == ('ADD', 0.5)
    assert bpy.ops.dance.use_take(action=T.takes(obj)[0].name) == {'FINISHED'}
    assert (ad.action_blend_type, ad.action_influence) == ('REPLACE', 1.0)
    # Changed on their action before the next take: that is what comes back (QA: the first kept).
    assert bpy.ops.dance.use_take(action=own) == {'FINISHED'}
    ad.action_blend_type, ad.action_influence = 'COMBINE', 0.7
    assert bpy.ops.dance.generate() == {'FINISHED'}
    ad.action_blend_type, ad.action_influence = 'ADD', 0.3          # set on a take: not theirs
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert bpy.ops.dance.use_take(action=own) == {'FINISHED'}
    assert (ad.action_blend_type, round(ad.action_influence, 6)) == ('COMBINE', 0.7)


def test_a_dancer_with_an_empty_action_dances(addon, tmp_path):
    # An action made in a script (bpy.data.actions.new) has no keys and, on 4.4+, no slot: the
    # take copied from it must still animate the dancer.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.5)
    obj.animation_data_create()
    obj.animation_data.action = bpy.data.actions.new("Empty")
    assert bpy.ops.dance.generate() == {'FINISHED'}
    heads = _heads(obj, [first, (first + last) // 2, last])
    assert np.abs(np.diff(heads, axis=0)).max() > 1e-3                     # it moves


def test_a_copied_dancer_has_its_own_takes(addon, tmp_path):
    # Shift+D copies the dancer with its take id: cleaning up the copy's takes must not delete the
    # original's, and the copy's first dance takes along the take it was playing.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.5)
    for seed in (0, 1):
        scene.dance.seed = seed
        assert bpy.ops.dance.generate() == {'FINISHED'}
    originals = T.takes(obj)
    assert len(originals) == 2
    copy = obj.copy()
    copy.animation_data.action = obj.animation_data.action.copy()     # what Shift+D does with "Duplicate Action"
    scene.collection.objects.link(copy)
    scene.dance.armature = copy
    assert T.takes(copy) == [copy.animation_data.action] and T.takes(obj) == originals
    assert bpy.ops.dance.clean_takes.poll() is False or bpy.ops.dance.clean_takes() == {'FINISHED'}
    assert T.takes(obj) == originals and all(a.name in bpy.data.actions for a in originals)
    played = copy.animation_data.action
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert T.takes(copy)[0] == played and len(T.takes(copy)) == 2
    assert T.takes(obj) == originals


def test_each_dancer_counts_its_own_takes(addon, tmp_path):
    scene = addon
    first_dancer, first, last = _song_stage(scene, tmp_path, seconds=1.5)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert bpy.ops.dance.create_dancer(with_mesh=False) == {'FINISHED'}
    second = scene.dance.armature
    assert second != first_dancer
    for _ in range(2):
        assert bpy.ops.dance.generate() == {'FINISHED'}
    assert [t.name for t in T.takes(first_dancer)] == ["Dance song any s0 take 1"]
    # Action names are global in Blender: the second dancer's first take says whose it is.
    assert [t.name for t in T.takes(second)] == [f"Dance song any s0 take 1 ({second.name})",
                                                 "Dance song any s0 take 2"]


def test_a_take_spans_the_dance_whatever_manual_frame_range_the_animator_set(addon, tmp_path):
    # Review (bpy 5.0): a take copied the Manual Frame Range of the animator's action (a cycle's
    # 11 frames): the exports wrote those 11 frames of a 72-frame dance, and regenerating a range
    # past them read no dance after it to join.
    from blender_addon import operators
    from engine.body.motion import Motion
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path)
    for f in (first + 5, first + 15):
        _key(obj, f, {"left_elbow": np.array([0.3, 0.2, 0.1]) * (f - first) / 10})
    mine = obj.animation_data.action
    mine.use_frame_range, mine.use_cyclic = True, True
    mine.frame_start, mine.frame_end = first + 5, first + 15
    assert bpy.ops.dance.generate() == {'FINISHED'}
    take = obj.animation_data.action
    assert not take.use_frame_range and tuple(take.frame_range) == (first, last)
    assert mine.use_frame_range and tuple(mine.frame_range) == (first + 5, first + 15)   # theirs, untouched
    out = tmp_path / "dance.npz"
    assert bpy.ops.dance.export_npz(filepath=str(out)) == {'FINISHED'}
    assert Motion.load_npz(out).num_frames == last - first + 1
    take.use_frame_range = True                   # set on the take itself: still the keys that count
    take.frame_start, take.frame_end = first + 5, first + 15
    scene.dance.use_strip_range = False
    scene.dance.frame_start, scene.dance.frame_end = first + 30, first + 40
    request = operators.build_request(bpy.context)
    assert request.write_range == (first + 30, first + 40)
    assert request.frame_start < first + 30 and request.frame_start + request.num_frames - 1 > first + 40


def test_the_animators_action_stays_the_original_when_renamed(addon, tmp_path):
    # Review (bpy 5.0): the original was remembered by name: renamed ("Blocking v2"), it left the
    # panel's list and could not be switched back to.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.5)
    _key(obj, first + 5, {"left_elbow": np.array([0.3, 0.2, 0.1])})
    mine = obj.animation_data.action
    assert bpy.ops.dance.generate() == {'FINISHED'}
    mine.name = "Blocking v2"
    assert T.original_action(obj) == mine
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert T.original_action(obj) == mine and mine not in T.takes(obj)
    # Review: the muted track that keeps it still said 'Original: <the old name>'.
    kept = [t.name for t in obj.animation_data.nla_tracks if any(s.action == mine for s in t.strips)]
    assert kept == ["Original: Blocking v2"], kept
    assert bpy.ops.dance.use_take(action="Blocking v2") == {'FINISHED'} and obj.animation_data.action == mine
    if T.ORIGINAL_KEY in obj.keys():               # Blender 4.x: the registered pointer's storage
        del obj[T.ORIGINAL_KEY]
    obj[T.ORIGINAL_KEY] = mine.name                # as files saved before kept it
    assert T.original_action(obj) == mine
    # Review: with the take deleted the dancer plays nothing, and the next dance silently left the
    # animator's keys out; it is said, naming the way back.
    assert not any("are not used" in n for n in operators.build_request(bpy.context).notes)
    bpy.data.actions.remove(T.takes(obj)[-1])       # the take it played, deleted; then nothing assigned
    obj.animation_data.action = None
    notes = [n for n in operators.build_request(bpy.context).notes if "are not used" in n]
    assert notes == [f"'{obj.name}' plays no action, so the keys of your action 'Blocking v2' are not used: "
                     "click 'Original: Blocking v2' under Takes to dance from them"], notes


def test_the_animators_keys_keep_their_keyframe_type_in_the_take(addon, tmp_path):
    # Review (bpy 5.0): a Breakdown or Extreme key came out of the take as a plain Keyframe.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.5)
    _key(obj, first + 5, {"left_elbow": np.array([0.3, 0.2, 0.1])})
    _key(obj, first + 20, {"left_elbow": np.array([-0.2, 0.4, 0.1])})
    path = 'pose.bones["left_elbow"].rotation_quaternion'

    def types(action):
        fcs = [fc for fc in scene_io.compat.action_fcurves(action, scene_io.compat.object_slot(obj, action))
               if fc.data_path == path]
        return {round(k.co[0]): k.type for fc in fcs for k in fc.keyframe_points if round(k.co[0]) in (first + 5, first + 20)}
    for fc in scene_io.compat.action_fcurves(obj.animation_data.action, scene_io.compat.object_slot(obj)):
        if fc.data_path == path:
            fc.keyframe_points[0].type, fc.keyframe_points[1].type = 'BREAKDOWN', 'EXTREME'
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert types(obj.animation_data.action) == {first + 5: 'BREAKDOWN', first + 20: 'EXTREME'}
    assert scene_io.count_kept(obj, first, last) == (2, 2)                # still the animator's
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert types(obj.animation_data.action) == {first + 5: 'BREAKDOWN', first + 20: 'EXTREME'}
    assert rotation_error(_pose(obj, first + 20)[3 * JOINT_INDEX["left_elbow"]:][:3], np.array([-0.2, 0.4, 0.1])) < 1e-4


@pytest.mark.skipif(not hasattr(bpy.types, "ActionSlot"), reason="slotted actions: Blender 4.4+")
def test_an_action_shared_through_slots_stays_the_animators(addon, tmp_path):
    # One action animates the dancer and another object, each through its own slot (4.4+): the
    # take is the dancer's alone, the other object plays on, and the dance spans the dancer's keys.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.5)
    prop = bpy.data.objects.new("Prop", None)
    scene.collection.objects.link(prop)
    shared = bpy.data.actions.new("Scene Action")
    for o in (prop, obj):
        o.animation_data_create().action = shared
    prop.keyframe_insert("location", frame=first)
    prop.location.x = 3.0
    prop.keyframe_insert("location", frame=last + 200)
    _key(obj, first + 5, {"left_elbow": np.array([0.3, 0.2, 0.1])})
    slot = obj.animation_data.action_slot
    assert len(shared.slots) == 2 and slot != prop.animation_data.action_slot
    snapshot = {(s.identifier, fc.data_path, fc.array_index): [tuple(k.co) for k in fc.keyframe_points]
                for s in shared.slots for fc in scene_io.compat.action_fcurves(shared, s)}
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert obj.animation_data.action != shared and prop.animation_data.action == shared
    assert [s.identifier for s in obj.animation_data.action.slots] == [slot.identifier]   # the take: the dancer's alone
    assert snapshot == {(s.identifier, fc.data_path, fc.array_index): [tuple(k.co) for k in fc.keyframe_points]
                        for s in shared.slots for fc in scene_io.compat.action_fcurves(shared, s)}
    assert rotation_error(_pose(obj, first + 5)[3 * JOINT_INDEX["left_elbow"]:][:3], np.array([0.3, 0.2, 0.1])) < 1e-4
    out = tmp_path / "dance.npz"                                          # the dancer's frames, not the prop's
    assert bpy.ops.dance.export_npz(filepath=str(out)) == {'FINISHED'}
    from engine.body.motion import Motion
    assert Motion.load_npz(out).num_frames == last - first + 1
    assert bpy.ops.dance.use_take(action=shared.name) == {'FINISHED'}
    assert obj.animation_data.action_slot == slot and prop.animation_data.action_slot != slot


def test_a_dance_starts_from_the_pose_an_intro_before_the_song_leaves(addon, tmp_path):
    # QA: an intro keyed up to the frame before the song, then the dance's own first pose: the
    # hand jumped 0.8 m in one frame. The dance now starts from the pose the intro leaves.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=2.0, strip_frame=40)
    intro = {"left_shoulder": np.array([0.0, 0.0, -1.2]), "right_shoulder": np.array([0.0, 0.0, 1.2]),
             "spine1": np.array([0.5, 0.0, 0.0]), "left_knee": np.array([1.0, 0.0, 0.0])}
    pelvis = obj.pose.bones["pelvis"]
    for f, scale in ((first - 30, 0.0), (first - 1, 1.0)):
        _key(obj, f, {n: scale * aa for n, aa in intro.items()})
        pelvis.location = (scale * 0.4, 0.0, scale * -0.2)
        pelvis.keyframe_insert("location", frame=f)
    held = _heads(obj, [first - 1])[0]
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert f"starts from the pose '{obj.name}' holds on frame {first}" in scene.dance.status
    heads = _heads(obj, list(range(first - 1, first + 12)))
    assert np.abs(heads[0] - held).max() < 1e-5                            # the intro is as it was
    step = np.linalg.norm(np.diff(heads, axis=0), axis=2).max(axis=1)      # fastest joint per frame step
    print(f"step into the dance {step[0]:.4f} m, the next ones: max {step[1:].max():.4f}")
    assert step[0] < 1e-4                                                  # frame `first` is the intro's pose
    assert bpy.ops.dance.use_take(action=T.original_action(obj).name) == {'FINISHED'}
    assert np.abs(_heads(obj, [first - 1])[0] - held).max() < 1e-6         # the animator's intro, untouched


def test_a_start_pose_held_before_the_song_is_left_as_from_standing(addon, tmp_path):
    # QA: a start pose keyed on frame 1, the song from frame 30: the character stood in it for a
    # second, and the dance left it at full speed in one frame (0.6-2.3 m/s). Held before the song,
    # the pose is now set off from (engine.finishing.setoff); an intro moving into the song is not.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=3.0, strip_frame=30)
    _key(obj, 1, {"left_shoulder": np.array([0.0, 0.0, -1.0]), "right_elbow": np.array([0.0, 1.2, 0.0]),
                  "spine2": np.array([0.3, 0.0, 0.0])})
    assert keys.holds_still_into(obj, first) and operators.lead_in(obj, None, first) == 1
    assert bpy.ops.dance.generate() == {'FINISHED'}
    heads = _heads(obj, list(range(first - 1, first + 24)))
    step = np.linalg.norm(np.diff(heads, axis=0), axis=2).max(axis=1)      # fastest joint per frame step
    print(f"into the dance {step[0]:.5f} m, out of the held pose {step[1]:.5f} m, then up to {step[2:].max():.4f} m")
    assert step[0] < 1e-4 and step[1] < 1e-3 < 0.01 < step[2:].max()      # held, set off from, then dancing
    # An animation moving on into the song's first frame (extrapolated past its last key): no
    # hold there, so none is asked of the dance.
    assert bpy.ops.dance.use_take(action=T.original_action(obj).name) == {'FINISHED'}
    action = obj.animation_data.action
    _key(obj, first - 10, {"left_shoulder": np.array([0.0, 0.0, -0.2])})
    assert keys.holds_still_into(obj, first)
    for fc in scene_io.compat.action_fcurves(action, scene_io.compat.object_slot(obj, action)):
        fc.extrapolation = 'LINEAR'
    assert not keys.holds_still_into(obj, first)


# The arms and spine swept by linear keys, two frames given: an intro into the song or an outro out of it.
_SWING = {"left_shoulder": np.array([0.0, 0.0, -1.2]), "right_shoulder": np.array([0.0, 0.0, 1.2]),
          "spine1": np.array([0.4, 0.0, 0.0])}


def _sweep_linear(obj, frame_from, frame_to) -> dict:
    for f, scale in ((frame_from, -1.0), (frame_to, 1.0)):
        _key(obj, f, {n: scale * aa for n, aa in _SWING.items()})
    action = obj.animation_data.action
    for fc in scene_io.compat.action_fcurves(action, scene_io.compat.object_slot(obj, action)):
        for kp in fc.keyframe_points:
            kp.interpolation = 'LINEAR'
    return _SWING


def test_an_intro_moving_into_the_song_is_carried_on_out_of_its_first_frame(addon, tmp_path):
    # QA: an intro whose animation still moves on the song's first frame (keys before and in the
    # song, linear here): the dance left that frame at its own drawn speed in any direction (a
    # hand at 0.08 m/s went on at 0.90). It now leaves at the speed the animation arrives with.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=2.0, strip_frame=30)
    swing = _sweep_linear(obj, first - 24, first + 24)                # through the song's start
    assert operators.lead_in(obj, None, first) == first - 24 and not keys.holds_still_into(obj, first)
    came = _heads(obj, [first - 1, first])
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "at the speed your animation arrives with" in scene.dance.status
    heads = _heads(obj, [first, first + 1])
    assert np.abs(heads[0] - came[1]).max() < 1e-4                          # the intro's pose on the first frame
    arrived, left = came[1] - came[0], heads[1] - heads[0]                   # (joints, 3) per frame
    hands = [JOINT_NAMES.index(n) for n in ("left_wrist", "right_wrist")]
    off = np.linalg.norm(left[hands] - arrived[hands], axis=1).max()
    print(f"hands arrive at {np.linalg.norm(arrived[hands], axis=1).max() * 24:.2f} m/s and leave "
          f"{off * 24:.2f} m/s off that")
    assert off < 0.25 * np.linalg.norm(arrived[hands], axis=1).max()        # on as they came
    # A range regenerated from the song's first frame on the take has no kept dance before it:
    # it is led into from the intro as the whole dance was (QA: it jumped 44 cm from the intro).
    scene.dance.use_strip_range = False
    scene.dance.frame_start, scene.dance.frame_end = first, first + 12
    scene.dance.seed = 7
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "at the speed your animation arrives with" in scene.dance.status
    heads = _heads(obj, [first, first + 1])
    off = np.linalg.norm((heads[1] - heads[0])[hands] - arrived[hands], axis=1).max()
    print(f"a range from the song's first frame: {np.abs(heads[0] - came[1]).max() * 1000:.3f} mm off the intro's pose, "
          f"leaving {off * 24:.2f} m/s off its speed")
    assert np.abs(heads[0] - came[1]).max() < 1e-4 and off < 0.25 * np.linalg.norm(arrived[hands], axis=1).max()
    scene.dance.use_strip_range = True
    # Stepped keys (a blocking pass) jump into the song's first frame: a cut, not a motion to carry
    # on (QA: a 30 degree step carried on flung the hand 0.69 m past its key). Left from standing.
    assert bpy.ops.dance.use_take(action=T.original_action(obj).name) == {'FINISHED'}
    _key(obj, first - 1, {n: -aa for n, aa in swing.items()})
    _key(obj, first, {n: 0.5 * aa for n, aa in swing.items()})
    action = obj.animation_data.action
    for fc in scene_io.compat.action_fcurves(action, scene_io.compat.object_slot(obj, action)):
        for kp in fc.keyframe_points:
            kp.interpolation = 'CONSTANT'
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "sets off from it as from standing" in scene.dance.status
    heads = _heads(obj, [first, first + 1])
    print(f"out of a stepped cut: {np.linalg.norm(heads[1] - heads[0], axis=1).max() * 24:.3f} m/s")
    assert np.linalg.norm(heads[1] - heads[0], axis=1).max() * 24 < 0.05


def test_the_takes_curves_before_and_after_the_song_are_the_animators_own(addon, tmp_path):
    # QA: with keys before and in the song (and in and after it), the take keys the dance's first
    # and last frames inside the animator's curve segments; re-drawn, those segments bent the
    # intro before the song (36 mm at a hand with automatic handles, 20 mm with linear keys on
    # quaternion bones, the unit quaternion written where the curve played a scaled one). The
    # segments are now cut, not re-drawn: before and after the song the take plays their curve.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=3.0, strip_frame=30)
    swing = {"left_shoulder": np.array([0.0, 0.0, -1.2]), "right_shoulder": np.array([0.0, 0.0, 1.2]),
             "spine1": np.array([0.4, 0.0, 0.0]), "left_elbow": np.array([0.0, -0.9, 0.0])}
    for f, scale in ((first - 24, -1.0), (first + 20, 1.0), (last - 20, -0.5), (last + 12, 0.8)):
        _key(obj, f, {n: scale * aa for n, aa in swing.items()})       # default handles: automatic Bezier
    # Whole frames and half frames (a motion blur's): the curves between keys count too.
    outside = [f + half for f in (*range(first - 24, first), *range(last, last + 13)) for half in (0.0, 0.5)] + [first]

    def played(action):          # the keyed bones' rotation channels as the action plays them
        slot = scene_io.compat.object_slot(obj, action)
        return np.array([[fc.evaluate(f) for f in outside] for fc in sorted(
            scene_io.compat.action_fcurves(action, slot), key=lambda fc: (fc.data_path, fc.array_index))
            if any(f'"{n}"' in fc.data_path for n in swing) and "rotation" in fc.data_path])
    mine = obj.animation_data.action
    for interpolation in ('BEZIER', 'LINEAR'):
        for fc in scene_io.compat.action_fcurves(mine, scene_io.compat.object_slot(obj, mine)):
            for kp in fc.keyframe_points:
                kp.interpolation = interpolation
        theirs = played(mine)
        assert bpy.ops.dance.generate() == {'FINISHED'}
        take = obj.animation_data.action
        assert take != mine and played(take).shape == theirs.shape
        print(f"{interpolation}: the take's curves off the animator's before and after the song: "
              f"{np.abs(played(take) - theirs).max():.2e}")
        assert np.abs(played(take) - theirs).max() < 1e-5
        if interpolation == 'BEZIER':
            # Danced again on the take (QA: the next take read the cut curves as the animator's:
            # 0.14 off before the song, 0.19 after), then a range to the song's end (QA: the hips
            # snapped back 38 cm a frame after it, to the old dance's hold).
            scene.dance.seed = 7
            assert bpy.ops.dance.generate() == {'FINISHED'}
            again = obj.animation_data.action
            print(f"danced again on the take: {np.abs(played(again) - theirs).max():.2e}")
            assert again != take and np.abs(played(again) - theirs).max() < 1e-5
            scene.dance.use_strip_range = False
            scene.dance.frame_start, scene.dance.frame_end = last - 20, last
            assert bpy.ops.dance.generate() == {'FINISHED'}
            assert np.abs(played(obj.animation_data.action) - theirs).max() < 1e-5
            hips = _heads(obj, list(range(last - 6, last + 4)))[:, 0]
            steps = np.linalg.norm(np.diff(hips, axis=0), axis=1)
            print(f"the hips' steps around the song's end (mm): {np.round(steps * 1000, 1)}")
            assert steps[6] < 3 * max(np.median(steps[:6]), 1e-3)      # last -> last + 1
            scene.dance.use_strip_range = True
        assert bpy.ops.dance.use_take(action=mine.name) == {'FINISHED'}


def test_the_takes_curves_beside_the_song_keep_easings_and_long_handles_on_whole_frames(addon, tmp_path):
    # QA: segments across the song's edges that no cut plays the same were re-drawn from the
    # dance's end: an easing (Sine, Elastic: 0.3 off) and Bezier handles reaching past their
    # segment in time, which Blender shortens (0.55 off). Their whole frames beside the song are
    # now keyed as they play.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=3.0, strip_frame=30)
    swing = {"left_shoulder": np.array([0.0, 0.0, -1.2]), "left_elbow": np.array([0.0, -0.9, 0.0])}
    for f, scale in ((first - 24, -1.0), (first + 20, 1.0), (last - 20, -0.5), (last + 12, 0.8)):
        _key(obj, f, {n: scale * aa for n, aa in swing.items()})
    outside = [*range(first - 24, first), *range(last + 1, last + 13)]
    mine = obj.animation_data.action

    def played(action):
        slot = scene_io.compat.object_slot(obj, action)
        return np.array([[fc.evaluate(f) for f in outside] for fc in sorted(
            scene_io.compat.action_fcurves(action, slot), key=lambda fc: (fc.data_path, fc.array_index))
            if any(f'"{n}"' in fc.data_path for n in swing) and "rotation" in fc.data_path])
    for shape in ('SINE', 'ELASTIC', 'LONG HANDLES'):
        for fc in scene_io.compat.action_fcurves(mine, scene_io.compat.object_slot(obj, mine)):
            for kp in fc.keyframe_points:
                kp.interpolation = 'BEZIER' if shape == 'LONG HANDLES' else shape
                if shape == 'LONG HANDLES':                           # 40 frames on 24- and 44-frame segments
                    kp.handle_left_type = kp.handle_right_type = 'FREE'
                    kp.handle_left, kp.handle_right = (kp.co[0] - 40, kp.co[1]), (kp.co[0] + 40, kp.co[1])
        theirs = played(mine)
        assert bpy.ops.dance.generate() == {'FINISHED'}
        take = obj.animation_data.action
        print(f"{shape}: the take's curves off the animator's beside the song: {np.abs(played(take) - theirs).max():.2e}")
        assert take != mine and np.abs(played(take) - theirs).max() < 1e-5
        assert bpy.ops.dance.use_take(action=mine.name) == {'FINISHED'}


def test_an_outro_moving_on_out_of_the_song_is_reached_at_its_speed(addon, tmp_path):
    # QA: keys in the song and after it: the dance ended in the pose the animation passes on the
    # song's last frame but reached it at its own speed (a wrist at 0.20 m/s where the animation
    # leaves at 0.85). It now arrives at the speed the animation leaves with.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=2.0, strip_frame=30)
    swing = _sweep_linear(obj, last - 24, last + 24)                  # through the song's end
    from engine.body import rotations as R

    def steps(frames):            # each keyed joint's turn from one frame to the next, as quaternions
        q = R.axis_angle_to_quat(torch.from_numpy(np.stack([_pose(obj, f) for f in frames])).reshape(len(frames), 24, 3))
        return R.quat_mul(q[1:], R.quat_conjugate(q[:-1]))[0]
    joints = [JOINT_NAMES.index(n) for n in swing]
    leaves = steps([last, last + 1])[joints]
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "at the speed your animation leaves it" in scene.dance.status
    came = steps([last - 1, last])[joints]
    off = float(R.quat_angle(came, leaves).max()) * 24
    print(f"the keyed joints leave at up to {float(R.quat_angle(leaves, torch.tensor([1.0, 0, 0, 0]).double()).max()) * 24:.2f}"
          f" rad/s and are reached {off:.2f} rad/s off that")
    assert off < 0.25 * float(R.quat_angle(leaves, torch.tensor([1.0, 0, 0, 0]).double()).max()) * 24


def test_an_object_keyed_to_move_under_the_dance_is_said(addon, tmp_path):
    # QA: a walk-in keyed on the armature object (not its hips) went on at 1 m/s under the dance,
    # its feet sliding for a second, and nothing said so.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.5, strip_frame=20)
    for f, y in ((first - 20, -1.0), (first - 1, 0.0)):           # walks in, stands before the song
        obj.location = (0.0, y, 0.0)
        obj.keyframe_insert("location", frame=f)
    assert rig_io.moving_object_note(obj, first, last) is None
    obj.location = (0.0, 1.0, 0.0)
    obj.keyframe_insert("location", frame=first + 20)               # and walks on into the song
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert f"'{obj.name}' itself is keyed to move while the song plays (its object location)" in scene.dance.status
    # ... and carried by a parent keyed to move (QA: an Empty moving 2.2 m over the song, unsaid).
    obj.animation_data.action = None
    carrier = bpy.data.objects.new("Cart", None)
    scene.collection.objects.link(carrier)
    obj.parent = carrier
    assert rig_io.moving_object_note(obj, first, last) is None
    for f, x in ((first, 0.0), (last, 2.2)):
        carrier.location = (x, 0.0, 0.0)
        carrier.keyframe_insert("location", frame=f)
    assert rig_io.moving_object_note(obj, first, last).startswith(
        f"'{obj.name}' is carried by 'Cart', which is keyed to move while the song plays (its object location)")


def test_an_imported_bind_pose_before_the_song_is_no_intro(addon, tmp_path):
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.5, strip_frame=10)
    for pb in obj.pose.bones:                                              # every bone keyed at rest on frame 1
        pb.keyframe_insert(_set_rotation(pb, np.array([1.0, 0.0, 0.0, 0.0])), frame=1)
    assert operators.lead_in(obj, None, first) is None
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "starts from the pose" not in scene.dance.status


def test_an_earlier_takes_dance_before_the_song_is_no_intro(addon, tmp_path):
    # QA: the sound strip moved later after a take was danced: the take's generated keys before
    # the song counted as an intro, and the new dance started from the old take's pose.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=2.0, strip_frame=5)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    strip = scene_io.find_sound_strip(scene)
    strip.frame_start += 30
    assert operators.lead_in(obj, None, first + 30) is None
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "starts from the pose" not in scene.dance.status
    _key(obj, first + 10, {"left_shoulder": np.array([0.0, 0.0, -1.2])})      # the animator's key there is one
    assert operators.lead_in(obj, None, first + 30) == first + 10


def test_a_take_danced_again_after_its_song_was_trimmed_leads_from_and_into_the_animators_keys(addon, tmp_path):
    # QA: Generate on take 1 after the song was trimmed: the new dance's first frame was pinned to
    # take 1's generated pose there (the elbow 75 degrees off the animator's key before the song,
    # and every frame before the song frozen in the old dance), and its last frame likewise (130
    # degrees off the key after it). The pose led from and into is the animator's animation's.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=3.0, strip_frame=5)
    intro, outro = np.array([0.3, 0.8, -0.2]), np.array([-0.4, 0.5, 0.6])
    _key(obj, first + 5, {"left_elbow": intro})
    _key(obj, last - 5, {"right_elbow": outro})
    assert bpy.ops.dance.generate() == {'FINISHED'}                      # take 1, the whole song
    strip = scene_io.find_sound_strip(scene)
    strip.frame_offset_start, strip.frame_offset_end = 20, 10            # now frames first+20 .. last-10
    before = len(bpy.data.actions)
    assert bpy.ops.dance.generate() == {'FINISHED'}                      # take 2, danced on take 1
    assert "starts from the pose" in scene.dance.status and "ends in the pose" in scene.dance.status
    assert len(bpy.data.actions) == before + 1                           # the new take, no leftover copy
    poses = scene_io.read_motion(obj, first + 20, last - 10).poses
    left, right = 3 * JOINT_INDEX["left_elbow"], 3 * JOINT_INDEX["right_elbow"]
    assert rotation_error(poses[0, left:left + 3], intro) < 1e-4
    assert rotation_error(poses[-1, right:right + 3], outro) < 1e-4
    # Every other bone as the animator's keys leave it there: at rest (the right elbow's one key
    # holds it all along), not in take 1's dance.
    elbows = [JOINT_INDEX["left_elbow"], JOINT_INDEX["right_elbow"]]
    assert rotation_error(poses[0, right:right + 3], outro) < 1e-4
    assert np.abs(np.delete(poses[0].reshape(24, 3), elbows, axis=0)).max() < 1e-4


def test_an_action_playing_through_no_slot_is_said_when_its_keys_are_used(addon, tmp_path):
    # QA: an action keyed on another rig and assigned to the dancer in the Action editor plays
    # through no slot (Blender 4.4+), so nothing of it shows, yet its keys were danced, unsaid.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=2.0, strip_frame=5)
    other = scene_io.create_smpl_armature(bpy.context, name="Other", with_mesh=False)
    _key(other, first + 10, {"left_elbow": np.array([0.1, 1.2, 0.3])})
    action = other.animation_data.action
    if not compat.is_slotted(action):
        pytest.skip("actions have slots from Blender 4.4")
    other.animation_data.action = None
    obj.animation_data_create().action = action
    assert obj.animation_data.action_slot is None                        # Blender plays nothing of it
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert f"plays action '{action.name}' through no slot" in scene.dance.status
    assert operators.unslotted_action_note(obj) is None                  # the take plays through its slot


def test_keys_on_a_take_are_said_to_meet_other_music_when_the_song_moved(addon, tmp_path):
    # QA: the strip moved, or the scene's frame rate changed, after keys were set on a take: the
    # keys keep their frames and now meet other moments of the music, and nothing said so.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=3.0, strip_frame=5)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    _key(obj, first + 40, {"left_shoulder": np.array([0.0, 0.0, -1.2])})
    assert bpy.ops.dance.generate() == {'FINISHED'}                      # nothing moved: no note
    assert "meet the music" not in scene.dance.status
    _key(obj, first + 40, {"left_shoulder": np.array([0.0, 0.0, -1.0])})
    scene_io.find_sound_strip(scene).frame_start += 12
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "the song moved on the timeline" in scene.dance.status and "0.50 s earlier" in scene.dance.status
    scene.render.fps = 30
    assert bpy.ops.dance.generate() == {'FINISHED'}
    # The key on frame 45 played 28/24 s into the song and now plays 28/30 s in (QA: said at the
    # range's end instead, 0.74 s).
    assert "frame rate went from 24 to 30 fps" in scene.dance.status and "0.23 s earlier" in scene.dance.status


def test_the_take_holds_its_last_pose_after_the_song(addon, tmp_path):
    # QA: the animator's Linear extrapolation stayed on the take's curves, and the dancer slid
    # and an elbow kept turning after the song ended.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.5)
    pelvis = obj.pose.bones["pelvis"]
    for f, x in ((first + 2, 0.0), (first + 20, 0.3)):
        pelvis.location = (x, 0.0, 0.0)
        pelvis.keyframe_insert("location", frame=f)
    _key(obj, first + 5, {"left_elbow": np.array([0.0, 0.5, 0.0])})
    _key(obj, first + 25, {"left_elbow": np.array([0.0, 1.0, 0.0])})
    mine = obj.animation_data.action
    for fc in compat.action_fcurves(mine, compat.object_slot(obj)):
        fc.extrapolation = 'LINEAR'
    assert bpy.ops.dance.generate() == {'FINISHED'}
    end = _heads(obj, [last])[0]
    assert np.abs(_heads(obj, [last + 40])[0] - end).max() < 1e-6          # held, not carried on
    assert all(fc.extrapolation == 'LINEAR' for fc in compat.action_fcurves(mine, compat.object_slot(obj, mine)))


def test_a_long_song_name_keeps_style_seed_and_take_number_in_the_take_name():
    # QA: names were cut at 55 characters (style and seed lost), then by Blender 4.x at 63 bytes
    # (the take number lost).
    bpy.ops.wm.read_factory_settings(use_empty=True)
    song = "夜に駆ける YOASOBI Official Music Video 2020 remaster extended"
    base = operators.action_name(f"/music/{song}.wav", "chacha", 12)
    names = []
    for take in range(1, 4):
        name, n = T.take_name(base)
        assert n == take and len(name.encode("utf-8")) <= T.NAME_BYTES
        assert name.startswith("Dance 夜に駆ける") and name.endswith(f" chacha s12 take {take}")
        action = bpy.data.actions.new(name)
        assert action.name == name                                         # Blender kept it whole
        action[T.GENERATED_KEY], action[T.TAKE_KEY], action[T.TAKE_BASE_KEY] = True, n, base
        names.append(name)
    assert len(set(names)) == 3
    assert T.take_name(operators.action_name("/music/song.wav", "any", 0)) == ("Dance song any s0 take 1", 1)


def test_a_rig_on_ik_is_told_the_take_switches_it_to_fk():
    # Auto-Rig Pro's names: its switches (ik_fk_switch, 1 on FK) sit on the IK controls.
    bpy.ops.wm.read_factory_settings(use_empty=True)
    arm = bpy.data.armatures.new("rig")
    obj = bpy.data.objects.new("rig", arm)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode='EDIT')
    for name in ("c_foot_ik.l", "c_root.x", "c_hand_ik.l", "c_hand_fk.l"):
        bone = arm.edit_bones.new(name)
        bone.head, bone.tail = (0, 0, 0), (0, 0, 0.3)
    bpy.ops.object.mode_set(mode='OBJECT')
    obj.pose.bones["c_foot_ik.l"]["ik_fk_switch"] = 1.0
    obj.pose.bones["c_root.x"]["neck_follow"] = 1.0
    assert rig_io.switches_note(obj) is None                               # on FK already: nothing to say
    obj.pose.bones["c_foot_ik.l"]["ik_fk_switch"] = 0.0
    note = rig_io.switches_note(obj)
    assert note is not None and "c_foot_ik.l" in note and "c_root.x" not in note and "Takes list" in note
    # Keys on IK controls other than a Rigify limb's are not read, and a take dances the FK
    # controls on FK: said (a Rigify rig's are read: test_addon_characters).
    obj.pose.bones["c_hand_fk.l"].keyframe_insert("location", frame=1)
    assert rig_io.ik_keys_note(obj, None) is None                          # FK keys play: nothing to say
    obj.pose.bones["c_hand_ik.l"].keyframe_insert("location", frame=5)
    note = rig_io.ik_keys_note(obj, None)
    assert note is not None and "c_hand_ik.l" in note and "c_hand_fk.l" not in note and "are not read" in note
    take = bpy.data.actions.new("Dance song any s0 take 1")               # from take to take: said already
    take[T.GENERATED_KEY] = True
    obj.animation_data_create().action = take
    assert rig_io.switches_note(obj) is None and rig_io.ik_keys_note(obj, None) is None


def test_a_key_after_the_song_is_danced_into(addon, tmp_path):
    # QA: a pose keyed on the frame after the song (a 24 fps scene keyed every 2 s) turned the
    # shoulder 115 degrees in that one frame; the dance now ends in the pose the animation
    # passes on its last frame on the way to the key.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.5)
    pose = {n: np.zeros(3) for n in JOINT_NAMES} | {
        "left_shoulder": np.array([0.0, 0.0, -1.2]), "right_shoulder": np.array([0.0, 0.0, 1.2]),
        "spine1": np.array([0.5, 0.0, 0.0]), "left_knee": np.array([1.0, 0.0, 0.0])}
    # A pose further than 2 s on is left to the curves (QA: 500 frames on, the body stood still).
    _key(obj, last + 60, pose)
    assert operators.lead_out(obj, None, last, 24.0) is None
    # One arm keyed just after the song leads out that arm alone (QA: fixing the whole last frame
    # pinned every other bone at rest and the root at the origin; not led out, it jumped 0.35 m).
    _key(obj, last + 1, {"left_shoulder": pose["left_shoulder"]})
    out = operators.lead_out(obj, None, last, 24.0)
    assert (out.frame, out.bones, out.root, out.whole) == (last + 1, {"left_shoulder"}, False, False)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "ends in the pose of the bones you keyed" in scene.dance.status
    shoulder = JOINT_INDEX["left_shoulder"]
    at_end = scene_io.read_motion(obj, last, last + 1).poses
    assert rotation_error(at_end[0, 3 * shoulder:3 * shoulder + 3], at_end[1, 3 * shoulder:3 * shoulder + 3]) < 1e-4
    assert np.abs(np.delete(at_end[0].reshape(24, 3), shoulder, axis=0)).max() > 0.05   # the rest still dances
    bpy.ops.dance.use_take(action=T.original_action(obj).name)
    _key(obj, last + 1, pose)                                              # a whole pose: the whole last frame
    keyed = _heads(obj, [last + 1])[0]
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert f"ends in the pose '{obj.name}' passes on frame {last} on its way to the key on frame {last + 1}" \
        in scene.dance.status
    heads = _heads(obj, list(range(last - 10, last + 2)))
    assert np.abs(heads[-1] - keyed).max() < 1e-5                          # the key is as it was
    step = np.linalg.norm(np.diff(heads, axis=0), axis=2).max(axis=1)      # fastest joint per frame step
    print(f"steps into the key: {np.round(step, 4)}")
    assert step[-1] < 1e-4                                                 # frame `last` is already the key's pose
    assert operators.lead_out(obj, None, last + 1, 24.0) is None           # nothing keyed after the key


def test_a_range_regenerated_in_style_any_keeps_the_takes_style(addon, tmp_path):
    # QA: style any picks a style by song and seed; a range regenerated with another seed (the
    # way to get a variation) came out in another style than the dance around it.
    from engine import api
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=3.0)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    drawn = obj.animation_data.action["dance_drawn_style"]
    styles = api.available_styles(weights=operators.weights_choice(bpy.context))
    song = scene_io.find_sound_strip(scene).sound.filepath
    seed = next(s for s in range(1, 200) if api.dance_style("any", styles, s, song) != drawn)
    scene.dance.use_strip_range = False
    scene.dance.frame_start, scene.dance.frame_end = first + 20, first + 40
    scene.dance.seed = seed
    assert bpy.ops.dance.generate() == {'FINISHED'}
    take = obj.animation_data.action
    assert take["dance_drawn_style"] == drawn and take["dance_style"] == "any"
    assert take.name.startswith(f"Dance {os.path.splitext(os.path.basename(song))[0]} any s{seed}")
    # A take in a named style, copied from that one, carries no drawn style (QA: a range in style
    # any over it then danced the older take's).
    scene.dance.use_strip_range = True
    scene.dance.style = next(s for s in styles if s not in (drawn, "any"))
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "dance_drawn_style" not in obj.animation_data.action
    scene.dance.style, scene.dance.use_strip_range = "any", False
    assert bpy.ops.dance.use_take(action=take.name) == {'FINISHED'}
    # A range over every frame of the take is still a range: it keeps the style too (QA).
    scene.dance.frame_start, scene.dance.frame_end = first, last
    scene.dance.seed = seed + 1 if api.dance_style("any", styles, seed + 1, song) != drawn else seed
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert obj.animation_data.action["dance_drawn_style"] == drawn


def test_a_baked_clip_under_the_song_is_kept_whole(addon, tmp_path):
    # QA, an FBX round trip: the exporter keys a baked clip's moving channels on every frame and
    # a channel that stays still at the clip's ends only; read channel by channel, the still
    # bones were danced between, a hand 0.5 m off the clip. And the clip's first frame, at rest
    # on every bone, was taken for an imported bind pose.
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=2.0)
    rng = np.random.default_rng(5)
    moving = ("pelvis", "spine1", "spine2", "spine3", "left_shoulder", "right_shoulder", "left_elbow")
    clip = range(first, first + 21)
    for f in clip:
        if f == first:                                           # the clip starts from the rest pose
            _key(obj, f, {n: np.zeros(3) for n in JOINT_NAMES})
        else:
            _key(obj, f, {n: rng.normal(0, 0.2, 3) for n in moving})
        obj.pose.bones["pelvis"].location = (0.01 * (f - first), 0.0, 0.0)
        obj.pose.bones["pelvis"].keyframe_insert("location", frame=f)
    still = {"left_hip": np.array([-0.4, 0.0, 0.1]), "left_knee": np.array([0.9, 0.0, 0.0]),
             "right_hip": np.array([-0.5, 0.0, 0.2]), "right_knee": np.array([0.3, 0.0, 0.0]),
             "left_ankle": np.zeros(3), "right_ankle": np.zeros(3)}
    for f in (first + 1, first + 20):                            # still channels: keys at the ends only
        _key(obj, f, still)
    assert operators.bind_pose_span(obj, None, first, first) is None      # a clip starting at rest
    legs = [JOINT_INDEX[n] for n in ("left_knee", "left_ankle", "right_knee", "right_ankle")]
    played = _heads(obj, list(clip))[:, legs]
    assert bpy.ops.dance.generate() == {'FINISHED'}
    danced = _heads(obj, list(clip))[:, legs]
    print(f"legs off the clip: {np.abs(danced - played).max():.2e} m")
    assert np.abs(danced - played).max() < 1e-4                           # held as the clip plays them
    after = _heads(obj, list(range(first + 30, last)))[:, legs]
    assert np.ptp(after, axis=0).max() > 1e-3                             # and danced after it
    # Arms keyed on every frame without the hips are no body clip: the legs between their keys dance.
    from blender_addon import keys as key_io
    arms = scene_io.create_smpl_armature(bpy.context, "Arms", with_mesh=False)
    for f in clip:
        _key(arms, f, {n: rng.normal(0, 0.2, 3) for n in moving if n != "pelvis"})
    for f in (first + 1, first + 20):
        _key(arms, f, still)
    keyed = key_io.animator_keys(arms, first, last, posed_bones=scene_io.posed_bones(arms))
    assert keyed[("left_knee", "rotation_quaternion")] == [first + 1, first + 20]
    # A torso sway keyed on every frame over limbs blocked inside it is no clip either: a limb
    # keyed mid-way is a pose to dance through (QA: the limbs froze on their curves).
    sway = scene_io.create_smpl_armature(bpy.context, "Sway", with_mesh=False)
    for f in clip:
        _key(sway, f, {n: rng.normal(0, 0.1, 3) for n in ("pelvis", "spine1", "spine2", "spine3", "neck", "head")})
    for f in (first, first + 10, first + 20):
        _key(sway, f, still)
    keyed = key_io.animator_keys(sway, first, last, posed_bones=scene_io.posed_bones(sway))
    assert keyed[("left_knee", "rotation_quaternion")] == [first, first + 10, first + 20]


def test_a_clip_over_the_whole_song_is_said_to_leave_nothing_to_dance(addon, tmp_path):
    # QA: a character imported with its mocap still assigned got its mocap back as the take, and
    # the panel said only "done".
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=1.0)
    rng = np.random.default_rng(2)
    for f in range(first - 5, last + 6):
        _key(obj, f, {n: rng.normal(0, 0.2, 3) for n in JOINT_NAMES})
        obj.pose.bones["pelvis"].keyframe_insert("location", frame=f)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "keys its whole body on every frame danced" in scene.dance.status
    scene.dance.use_strip_range = False                 # a range past the clip: something to dance
    scene.dance.frame_start, scene.dance.frame_end = first, last
    obj.animation_data.action = T.original_action(obj)
    for fc in scene_io.compat.action_fcurves(obj.animation_data.action, scene_io.compat.object_slot(obj)):
        for point in [p for p in fc.keyframe_points if p.co[0] > first + 10][::-1]:
            fc.keyframe_points.remove(point)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "keys its whole body" not in scene.dance.status
    # Only the hips and legs baked on every frame: the arms dance, so there is something to dance (QA).
    legs = scene_io.create_smpl_armature(bpy.context, "Legs", with_mesh=False)
    for f in range(first, last + 1):
        _key(legs, f, {n: rng.normal(0, 0.2, 3) for n in ("pelvis", "left_hip", "right_hip", "left_knee",
                                                           "right_knee", "left_ankle", "right_ankle")})
        legs.pose.bones["pelvis"].keyframe_insert("location", frame=f)
    scene.dance.armature, scene.dance.use_strip_range = legs, True
    assert bpy.ops.dance.generate() == {'FINISHED'}
    assert "keys its whole body" not in scene.dance.status


def test_a_regenerated_range_says_nothing_of_the_heights_of_the_dance_kept_around_it(addon, tmp_path):
    """QA: a range regenerated after a keyed jump listed the take's own landing frames, kept
    around the range, as root keys holding the hips high. Only keys in the range are the note's."""
    from mathutils import Vector
    scene = addon
    obj, first, last = _song_stage(scene, tmp_path, seconds=4.0)
    assert bpy.ops.dance.generate() == {'FINISHED'}
    pelvis = obj.pose.bones["pelvis"]
    up = obj.data.bones["pelvis"].matrix_local.to_3x3().inverted() @ Vector((0.0, 0.0, 1.0))
    a, b = first + 30, first + 60
    for f in range(a - 8, a):                   # the take a metre up just before the range
        scene.frame_set(f)
        pelvis.location = pelvis.location + up
        pelvis.keyframe_insert("location", frame=f)
    scene.dance.use_strip_range = False
    scene.dance.frame_start, scene.dance.frame_end = a, b
    notes = operators.build_request(bpy.context).notes
    assert not any("feet leave the floor" in n for n in notes), notes
    scene.frame_set(a + 10)
    pelvis.location = pelvis.location + up
    pelvis.keyframe_insert("location", frame=a + 10)
    notes = [n for n in operators.build_request(bpy.context).notes if "feet leave the floor" in n]
    assert len(notes) == 1 and f"frame(s) {a + 10} " in notes[0], notes


def test_a_regenerated_section_dances_to_the_beats_of_the_dance_around_it(addon, tmp_path):
    # QA: a section tracked alone found other beats than its song in 15-28% of 5-s sections (half
    # a beat off on this song at every cut): it danced the same bars to the off-beats, unlike the
    # take around it. The add-on dances every strip and section to its whole song's beats.
    import soundfile as sf
    from engine.evaluation.genre_set import genre_songs
    from engine.music.audio import load_audio, music_for_dance
    scene = addon
    wave, sr = load_audio(next(s.path for s in genre_songs() if s.name == "happy_electronic_s411"))
    song = tmp_path / "offbeats.wav"
    sf.write(song, wave, sr)
    whole = music_for_dance(song).beats
    scene.render.fps, scene.render.fps_base = 30, 1
    scene_io.add_sound_strip(scene, str(song), frame_start=1)
    assert bpy.ops.dance.create_dancer(with_mesh=False) == {'FINISHED'}
    scene.dance.steps, scene.dance.quality = 2, 'BEST'
    assert bpy.ops.dance.generate() == {'FINISHED'}
    scene.dance.use_strip_range = False
    scene.dance.frame_start, scene.dance.frame_end = 61, 150           # 2-5 s of the song, analysed from 1.5 s
    request = operators.build_request(bpy.context)
    assert request.write_range == (61, 150) and request.start > 1.0
    got = runner.generate(request).beat_times + request.start
    assert len(got) >= 8
    assert np.abs(got[:, None] - whole[None]).min(axis=1).max() < 1e-6          # the song's own beats
    alone = music_for_dance(song, start=request.start, duration=request.duration).beats + request.start
    assert np.median(np.abs(alone[:, None] - whole[None]).min(axis=1)) > 0.3 * np.median(np.diff(whole))
