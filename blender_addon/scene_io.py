"""The only code that converts between Blender data and the engine's Motion / Constraints.

Conventions (DESIGN.md section 6):
- SMPL is Y up, Blender Z up: positions map (x, y, z) -> (x, -z, y), the matrix `C` below.
- Every bone of the dancer has its head on its SMPL joint and its tail straight up (+Z, roll 0),
  so each bone's local axes ARE SMPL's axes (the bone rest matrix is exactly `C`). An SMPL
  axis-angle is directly the bone's pose rotation (written in each bone's own rotation mode,
  never changed: keys.write_bone_rotations), and the pelvis bone's `location`
  is the SMPL root translation minus the rest pelvis position, both in SMPL axes (along the
  armature's axes where the animator turned the pelvis's Local Location off).
- The armature's origin is on the floor: the lowest rest joint sits at z = 0.
Reading goes through the EVALUATED pose (pose_bone.matrix after frame_set), so Euler or
axis-angle bones, drivers and constraints all read back as what the viewport shows.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import tempfile
from typing import NamedTuple

import bpy
import numpy as np

from . import _engine_path  # noqa: F401  (puts `engine` on sys.path)
from . import blender_compat as compat
from . import keys, takes
from engine.errors import EngineError
from engine.music.audio import audio_seconds
from engine.outputs.retarget import location_axes
from engine.body.motion import Constraints, Motion
from engine.body.skeleton import (JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS,
                             REST_POSITIONS, joint_indices)

# SMPL (Y up) -> Blender (Z up); also the rest rotation of every dancer bone.
C = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
FLOOR_OFFSET = float(-REST_POSITIONS[:, 1].min())       # pelvis height above the floor at rest
REST_HEADS = (REST_POSITIONS + [0.0, FLOOR_OFFSET, 0.0]) @ C.T   # (24,3) armature space, Z up
REST_PELVIS_SMPL = REST_HEADS[0] @ C                     # (3,) rest pelvis, SMPL axes
BONE_LENGTH = 0.06

# Display mesh: radius (m) of the limb segment ending at each joint, and of each joint's ball.
_SEGMENT_RADIUS = {
    "left_hip": 0.08, "right_hip": 0.08, "spine1": 0.11, "left_knee": 0.07, "right_knee": 0.07,
    "spine2": 0.12, "left_ankle": 0.05, "right_ankle": 0.05, "spine3": 0.13, "left_foot": 0.04,
    "right_foot": 0.04, "neck": 0.05, "left_collar": 0.06, "right_collar": 0.06, "head": 0.05,
    "left_shoulder": 0.06, "right_shoulder": 0.06, "left_elbow": 0.045, "right_elbow": 0.045,
    "left_wrist": 0.038, "right_wrist": 0.038, "left_hand": 0.035, "right_hand": 0.035,
}


def frame_span(first: int, last: int) -> str:
    """'1-250', '-24 to 119' where a hyphen would read as a minus, or '7' for one frame."""
    if first == last:
        return str(first)
    return f"{first}-{last}" if first >= 0 else f"{first} to {last}"


def to_zup(v: np.ndarray) -> np.ndarray:
    """SMPL positions (..., 3) -> Blender armature space."""
    return np.asarray(v) @ C.T


def to_yup(v: np.ndarray) -> np.ndarray:
    return np.asarray(v) @ C


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


# --- The dancer -----------------------------------------------------------------------------

def create_smpl_armature(context, name: str = "SMPL", location=None, with_mesh: bool = True,
                         smpl_model_path: str | None = None):
    """Add an SMPL armature (24 bones, SMPL names and axes) standing on the floor at `location`
    (default: the 3D cursor), with an optional rigidly skinned body mesh. Returns the object.
    Its bones are in metres; the object is scaled to the scene's unit scale, so the dancer is
    as tall in a centimetre scene (Unit Scale 0.01) as in a metre one."""
    if context.object is not None and context.object.mode != 'OBJECT':
        bpy.ops.object.mode_set(mode='OBJECT')
    scene = context.scene
    collection = context.collection or scene.collection
    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    collection.objects.link(obj)
    obj.location = scene.cursor.location if location is None else location
    unit = scene.unit_settings.scale_length
    if unit > 0 and unit != 1.0:
        obj.scale = (1.0 / unit,) * 3
    for other in context.view_layer.objects:
        other.select_set(False)
    context.view_layer.objects.active = obj
    obj.select_set(True)
    bpy.ops.object.mode_set(mode='EDIT')
    edit_bones = []
    for j, joint in enumerate(JOINT_NAMES):
        eb = arm.edit_bones.new(joint)
        eb.head = REST_HEADS[j]
        eb.tail = REST_HEADS[j] + (0.0, 0.0, BONE_LENGTH * (1.5 if j == 0 else 1.0))
        eb.roll = 0.0
        if PARENTS[j] >= 0:
            eb.parent = edit_bones[PARENTS[j]]
            eb.use_connect = False
        edit_bones.append(eb)
    bpy.ops.object.mode_set(mode='OBJECT')
    for pb in obj.pose.bones:
        pb.rotation_mode = 'QUATERNION'
    obj.show_in_front = True
    if with_mesh:
        mesh_obj = (_smpl_model_mesh(context, obj, smpl_model_path) if smpl_model_path
                    else _capsule_mesh(context, obj))
        mesh_obj.parent = obj
        mod = mesh_obj.modifiers.new("Armature", 'ARMATURE')
        mod.object = obj
    return obj


def _capsule_mesh(context, arm_obj):
    """A simple body: a cylinder per limb and a ball per joint, each on one vertex group."""
    import bmesh
    from mathutils import Matrix, Vector
    bm = bmesh.new()
    deform = bm.verts.layers.deform.verify()

    def add(verts, joint: int):
        for v in verts:
            v[deform][joint] = 1.0

    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        a, b = Vector(REST_HEADS[p]), Vector(REST_HEADS[j])
        r = _SEGMENT_RADIUS[JOINT_NAMES[j]]
        axis = b - a
        rot = axis.to_track_quat('Z', 'Y').to_matrix().to_4x4()
        mat = Matrix.Translation((a + b) / 2) @ rot
        out = bmesh.ops.create_cone(bm, cap_ends=True, segments=12, radius1=r, radius2=r * 0.85,
                                    depth=axis.length, matrix=mat)
        add(out["verts"], p)
    for j in range(NUM_JOINTS):
        name = JOINT_NAMES[j]
        r = 0.1 if name == "head" else _SEGMENT_RADIUS.get(name, 0.1)
        centre = Vector(REST_HEADS[j]) + (Vector((0, 0, 0.09)) if name == "head" else Vector())
        out = bmesh.ops.create_uvsphere(bm, u_segments=12, v_segments=8, radius=r,
                                        matrix=Matrix.Translation(centre))
        add(out["verts"], j)
    # The dance's floor holds the lowest joints (the toes): flat soles at their height, so the
    # body stands on the floor instead of sinking the toe balls' radius (4 cm) into it.
    for v in bm.verts:
        v.co.z = max(v.co.z, 0.0)
    mesh = bpy.data.meshes.new(arm_obj.name + "_body")
    bm.to_mesh(mesh)
    bm.free()
    mesh.polygons.foreach_set("use_smooth", [True] * len(mesh.polygons))
    mesh_obj = bpy.data.objects.new(arm_obj.name + "_body", mesh)
    for joint in JOINT_NAMES:   # group index == joint index, as used above
        mesh_obj.vertex_groups.new(name=joint)
    (context.collection or context.scene.collection).objects.link(mesh_obj)
    return mesh_obj


def _smpl_model_mesh(context, arm_obj, model_path: str):
    """The user's own SMPL body (never shipped) via `smplx`, skinned with its own weights."""
    try:
        import smplx
        import torch
    except ImportError as e:
        raise EngineError(f"the SMPL body mesh needs the 'smplx' package ({e}); "
                          "use Install dependencies in the add-on preferences or clear the SMPL model path") from None
    path = bpy.path.abspath(model_path)
    if not os.path.isfile(path):
        raise EngineError(f"SMPL model file not found: {path}")
    try:
        if path.endswith(".npz"):  # smplx's SMPL class reads only pickles: hand it the arrays
            from smplx.utils import Struct
            with np.load(path, allow_pickle=True) as data:
                model = smplx.SMPL(model_path=path, data_struct=Struct(**{k: data[k] for k in data.files}))
        else:
            model = smplx.SMPL(model_path=path)
    except ModuleNotFoundError as e:  # the official .pkl files hold chumpy arrays
        raise EngineError(f"cannot load the SMPL model {path}: it needs the '{e.name}' package "
                          "(or convert the model to .npz)") from None
    except Exception as e:  # licensed files come in several formats; say which one failed
        raise EngineError(f"cannot load the SMPL model {path}: {_model_file_problem(e)}") from None
    with torch.no_grad():
        verts = model.v_template.double().numpy()                                # (6890,3) Y up
        joints = (model.J_regressor.double() @ model.v_template.double()).numpy()  # (24,3)
        weights = model.lbs_weights.double().numpy()                             # (6890,24)
    faces = np.asarray(model.faces, dtype=np.int64)
    # Sit the body on our skeleton: its pelvis joint on our pelvis bone's head.
    verts_z = to_zup(verts - joints[0]) + REST_HEADS[0]
    mesh = bpy.data.meshes.new(arm_obj.name + "_smpl")
    mesh.from_pydata(verts_z.tolist(), [], faces.tolist())
    mesh.polygons.foreach_set("use_smooth", [True] * len(mesh.polygons))
    mesh_obj = bpy.data.objects.new(arm_obj.name + "_smpl", mesh)
    for j, joint in enumerate(JOINT_NAMES):
        group = mesh_obj.vertex_groups.new(name=joint)
        for v in np.flatnonzero(weights[:, j] > 1e-4):
            group.add([int(v)], float(weights[v, j]), 'REPLACE')
    (context.collection or context.scene.collection).objects.link(mesh_obj)
    return mesh_obj


def _model_file_problem(e: Exception) -> str:
    """One plain clause for why a file is not a usable SMPL model: unpickling or reading a file
    that is not one fails deep inside pickle/numpy/smplx with messages such as "invalid literal
    for int() with base 10", which say nothing to a user."""
    import pickle
    import zipfile
    if isinstance(e, (pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile, UnicodeDecodeError,
                      KeyError, AttributeError, IndexError, TypeError)):
        return ("it is not an SMPL model file (expected SMPL's .pkl, e.g. SMPL_NEUTRAL.pkl, or an .npz "
                "with v_template, f, weights and J_regressor); pick another file in the add-on preferences")
    return f"{type(e).__name__}: {e}".splitlines()[0]


def is_smpl_armature(obj) -> bool:
    try:
        check_smpl_armature(obj)
        return True
    except EngineError:
        return False


def check_smpl_armature(obj) -> None:
    """Raise EngineError unless `obj` is an armature built like `create_smpl_armature`'s."""
    if obj is None:
        raise EngineError("no dancer armature: pick one in the Dance panel or press 'Create SMPL Dancer'")
    label = f"'{obj.name}'"
    if obj.type != 'ARMATURE':
        raise EngineError(f"{label} is not an armature: press 'Create SMPL Dancer' to add one")
    bones = obj.data.bones
    missing = [n for n in JOINT_NAMES if n not in bones]
    if missing:
        raise EngineError(f"armature {label} lacks the SMPL bones {', '.join(missing[:4])}"
                          f"{' ...' if len(missing) > 4 else ''}: press 'Create SMPL Dancer' to add an SMPL armature")
    for j, name in enumerate(JOINT_NAMES):
        bone = bones[name]
        rest = np.array(bone.matrix_local)
        if np.abs(rest[:3, :3] - C).max() > 1e-3:
            raise EngineError(f"bone '{name}' of {label} does not point straight up with roll 0 as the add-on's "
                              "SMPL dancer does: press 'Create SMPL Dancer' for one")
        if np.abs(rest[:3, 3] - REST_HEADS[j]).max() > 0.02:
            raise EngineError(f"bone '{name}' of {label} is not where SMPL's neutral skeleton has it: "
                              "press 'Create SMPL Dancer' for a matching armature")
    if obj.mode == 'EDIT':
        raise EngineError(f"armature {label} is in Edit Mode: switch to Object or Pose Mode first")


# --- Reading the scene ----------------------------------------------------------------------

def pose_matrices(obj) -> np.ndarray:
    """(24,4,4) armature-space pose matrices of the SMPL bones (in JOINT_NAMES order), as evaluated now."""
    pbs = obj.pose.bones
    order = [pbs.find(n) for n in JOINT_NAMES]   # Blender keeps bones in hierarchy order, not ours
    buf = np.empty(len(pbs) * 16, np.float32)
    pbs.foreach_get("matrix", buf)
    mats = buf.reshape(len(pbs), 4, 4).transpose(0, 2, 1)   # foreach_get gives column-major
    return mats[order].astype(np.float64)


def matrices_to_smpl(mats: np.ndarray, rest: np.ndarray | None = None):
    """Armature-space pose matrices (F,24,4,4) -> (local rotation matrices (F,24,3,3), trans (F,3)).

    World rotation from rest, in SMPL axes: W_j = C^T (M_j R_j^T) C with R_j the bone's rest
    rotation (C for our dancer); local: L_j = W_parent^T W_j. trans = the pelvis head in SMPL axes.
    """
    rest = np.broadcast_to(C, (NUM_JOINTS, 3, 3)) if rest is None else rest
    world = C.T @ mats[..., :3, :3] @ np.swapaxes(rest, -1, -2) @ C          # (F,24,3,3)
    local = world.copy()
    parents = np.array(PARENTS[1:])
    local[:, 1:] = np.swapaxes(world[:, parents], -1, -2) @ world[:, 1:]
    return local, to_yup(mats[:, 0, :3, 3])


def _matrices_to_axis_angle(local: np.ndarray) -> np.ndarray:
    import torch
    from engine.body.rotations import matrix_to_axis_angle
    aa = matrix_to_axis_angle(torch.as_tensor(local, dtype=torch.float64))
    return aa.numpy().reshape(local.shape[0], NUM_JOINTS * 3)


def evaluate_frames(obj, frames, scene=None) -> tuple[np.ndarray, np.ndarray]:
    """SMPL (poses (F,72), trans (F,3)) of `obj`'s evaluated pose on each of `frames`."""
    scene = scene or bpy.context.scene
    frames = list(frames)
    if not frames:
        return np.zeros((0, NUM_JOINTS * 3)), np.zeros((0, 3))
    saved = scene.frame_current
    mats = np.empty((len(frames), NUM_JOINTS, 4, 4))
    # Meshes deformed by this armature need not deform on every frame we visit: pause them.
    paused = [m for o in scene.objects if o.type == 'MESH' for m in o.modifiers
              if m.type == 'ARMATURE' and m.object == obj and m.show_viewport] if len(frames) > 8 else []
    try:
        for m in paused:
            m.show_viewport = False
        for k, f in enumerate(frames):
            scene.frame_set(int(f))
            mats[k] = pose_matrices(obj)
    finally:
        for m in paused:
            m.show_viewport = True
        scene.frame_set(saved)
    local, trans = matrices_to_smpl(mats)
    return _matrices_to_axis_angle(local), trans


def keyed_values(obj, frames, action=None) -> tuple[np.ndarray, np.ndarray]:
    """SMPL (poses (F,72), trans (F,3)) of `obj` on each of `frames` as its current action's
    F-curves (or `action`'s) give them: the values the animator keyed, without the bone constraints or drivers
    that act on top of them (a key read through a Limit Rotation or an IK would be written
    back as the constraint's result, and the constraint would then act on it twice)."""
    from engine.outputs.retarget import quat_to_matrix
    from .rig_io import evaluate_basis
    frames = list(frames)
    rotations, locations = evaluate_basis(obj, frames, JOINT_NAMES, action)   # (F,24,4), (F,24,3)
    rest = np.array([np.array(obj.data.bones[n].matrix_local, np.float64) for n in JOINT_NAMES])
    basis = np.tile(np.eye(4), (len(frames), NUM_JOINTS, 1, 1))
    basis[..., :3, :3] = quat_to_matrix(rotations)
    basis[..., :3, 3] = locations
    mats = np.empty_like(basis)
    mats[:, 0] = rest[0] @ basis[:, 0]
    for j in range(1, NUM_JOINTS):   # Blender's pose: parent's pose @ rest offset from the parent @ basis
        p = PARENTS[j]
        mats[:, j] = mats[:, p] @ (np.linalg.inv(rest[p]) @ rest[j]) @ basis[:, j]
    local, trans = matrices_to_smpl(mats)
    return _matrices_to_axis_angle(local), trans


def read_motion(obj, frame_start: int, frame_end: int, fps: float | None = None, scene=None) -> Motion:
    """The armature's evaluated animation on frames frame_start..frame_end as a Motion."""
    scene = scene or bpy.context.scene
    check_smpl_armature(obj)
    poses, trans = evaluate_frames(obj, range(frame_start, frame_end + 1), scene)
    return Motion(poses=poses, trans=trans, fps=fps or scene_fps(scene))


# A dance written before keys were marked as generated (add-on 0.1) has only ordinary keys:
# there, the animator's keys are those of the action it was made from, keyed in the rotation
# modes recorded beside it (that version switched the bones to quaternions).
_LEGACY_MODES_KEY = "dance_source_rotation_modes"


def _key_action(obj):
    """(action holding the animator's keys, rotation modes they were keyed in or None)."""
    action = obj.animation_data.action if obj.animation_data is not None else None
    if action is None or takes.LEGACY_SOURCE_KEY not in action or takes.is_take(action):
        return action, None
    source = bpy.data.actions.get(action[takes.LEGACY_SOURCE_KEY]) if action[takes.LEGACY_SOURCE_KEY] else None
    return source, dict(action.get(_LEGACY_MODES_KEY, {}))


def posed_bones(obj) -> list[str]:
    """The SMPL dancer's joint bones (a pose is read from them; for keys.bind_pose_frames)."""
    return [name for name in JOINT_NAMES if name in obj.pose.bones]


def bind_pose_span(obj, frame_start: int, frame_end: int) -> str | None:
    """Frames in the range whose keys hold an imported bind pose (keys.bind_pose_frames), or None."""
    action, modes = _key_action(obj)
    return keys.bind_pose_span(obj, posed_bones(obj), frame_start, frame_end, action, modes)


def keyed_frames(obj, frame_start: int, frame_end: int):
    """The animator's keys on the SMPL joints: ({joint index: sorted frames with a rotation key},
    sorted frames with a pelvis location key), frames within [frame_start, frame_end]."""
    joints: dict[int, list[int]] = {}
    root: list[int] = []
    action, modes = _key_action(obj)
    if action is None:
        return joints, root
    for (bone, prop), frames in keys.animator_keys(obj, frame_start, frame_end, action, modes,
                                                   posed_bones(obj)).items():
        j = JOINT_INDEX.get(bone)
        if j is None:
            continue
        if prop == "location":
            if j == 0:
                root = frames
        else:
            joints[j] = frames
    return joints, root


def count_kept(obj, frame_start: int, frame_end: int) -> tuple[int, int]:
    """(joint keys, frames with any key) the next generation will keep, for the panel."""
    joints, root = keyed_frames(obj, frame_start, frame_end)
    frames = set(root).union(*joints.values()) if joints else set(root)
    return sum(len(v) for v in joints.values()), len(frames)


def key_masks(obj, frame_start: int, frame_end: int) -> tuple[np.ndarray, np.ndarray]:
    """(joint mask (F,24), root mask (F,)) of the animator's keys, frame 0 = frame_start: which
    keys the dance carries over as the animator's (type 'KEYFRAME')."""
    n = frame_end - frame_start + 1
    joint_mask, root_mask = np.zeros((n, NUM_JOINTS), bool), np.zeros(n, bool)
    joints, root = keyed_frames(obj, frame_start, frame_end)
    for j, fs in joints.items():
        joint_mask[np.asarray(fs) - frame_start, j] = True
    root_mask[np.asarray(root, int) - frame_start] = True
    return joint_mask, root_mask


def read_constraints(obj, frame_start: int, frame_end: int, fps: float,
                     keep_parts=(), keep_root: bool = False, scene=None, context=(), partial=None,
                     lead=()) -> Constraints:
    """The animator's wishes as engine Constraints at `fps`, frame 0 = `frame_start`.

    - A bone rotation keyed on frame f (any key not generated by the add-on, see above) fixes
      that joint at f; a pelvis location key fixes the root at f. Values: the keyed ones
      (keyed_values: constraints and drivers act on top of them, in the take as before).
    - Joints of `keep_parts` (body-part names, engine.body.skeleton.BODY_PARTS) follow the current
      animation on every frame, and the root too if `keep_root`.
    - Frames in `context` (scene frames) are fixed entirely: the existing dance around a
      regenerated range, which the new part must flow out of and into.
    - `partial` (frame, bones, root): on that frame only those bones (and the root if `root`)
      are fixed, as the animation plays them there (a lead-out into a partial pose).
    - Frames in `lead` are fixed entirely at the pose the animator's own animation leaves there
      (keys.animator_only: a take's generated keys are the old dance's), and so is `partial`'s:
      a dance led into from an intro, or out into a pose after it.
    Opening frames with every bone keyed thus become a seed motion with no extra step.
    `scene` is unused (the values come from the F-curves); it mirrors rig_io.read_character_constraints.
    """
    check_smpl_armature(obj)
    n = frame_end - frame_start + 1
    if n <= 0:
        raise EngineError(f"empty frame range {frame_start}-{frame_end}")
    cons = Constraints.empty(n, fps)
    keep = joint_indices(list(keep_parts)) if keep_parts else []
    if keep or keep_root:
        poses, trans = keyed_values(obj, range(frame_start, frame_end + 1))
        for j in keep:
            cons.poses[:, 3 * j:3 * j + 3] = poses[:, 3 * j:3 * j + 3]
            cons.joint_mask[:, j] = True
        if keep_root:
            cons.trans[:] = trans
            cons.trans_mask[:] = True
    joints, root = keyed_frames(obj, frame_start, frame_end)
    if partial is not None and frame_start <= partial[0] <= frame_end:
        f, bones, with_root = partial
        joints = {j: list(fs) for j, fs in joints.items()}
        for j in (JOINT_INDEX[b] for b in bones if b in JOINT_INDEX):
            joints[j] = sorted(set(joints.get(j, [])) | {f})
        root = sorted(set(root) | {f}) if with_root else root
    context = sorted(int(f) for f in context if frame_start <= f <= frame_end)
    lead = sorted(int(f) for f in lead if frame_start <= f <= frame_end)
    own = keys.own_pose_frames(lead, partial, frame_start, frame_end)
    frames = sorted(set(root).union(*joints.values(), context, lead))
    if frames:
        poses, trans = keyed_values(obj, frames)
        row = {f: k for k, f in enumerate(frames)}
        if own:
            with keys.animator_only(obj) as action:
                own_poses, own_trans = keyed_values(obj, own, action)
            for k, f in enumerate(own):
                poses[row[f]], trans[row[f]] = own_poses[k], own_trans[k]
        for j, fs in joints.items():
            for f in fs:
                cons.poses[f - frame_start, 3 * j:3 * j + 3] = poses[row[f], 3 * j:3 * j + 3]
                cons.joint_mask[f - frame_start, j] = True
        for f in root:
            cons.trans[f - frame_start] = trans[row[f]]
            cons.trans_mask[f - frame_start] = True
        for f in context + lead:
            cons.poses[f - frame_start] = poses[row[f]]
            cons.trans[f - frame_start] = trans[row[f]]
            cons.joint_mask[f - frame_start] = True
            cons.trans_mask[f - frame_start] = True
    pelvis_keys = np.flatnonzero(cons.joint_mask[:, 0])
    cons.pelvis_turns[pelvis_keys] = keys.turns_between_keys(pelvis_keys + frame_start, _pelvis_heading(obj))
    return cons


def _pelvis_heading(obj):
    """heading_between for keys.turns_between_keys: the SMPL pelvis's heading between two keys
    of the action holding the animator's keys (matrices_to_smpl's world rotation of the root
    bone: C^T rest basis, C the dancer's rest)."""
    import torch
    from engine.body.rotations import heading
    from engine.outputs.retarget import quat_to_matrix
    from .rig_io import rotations_between
    rest = np.array(obj.data.bones["pelvis"].matrix_local, np.float64)[:3, :3]
    action = _key_action(obj)[0]

    def heading_between(starts, ends, u):
        basis = rotations_between(obj, ["pelvis"], starts, ends, u, action)[:, :, 0]         # (G,N,4)
        return heading(torch.from_numpy(C.T @ rest @ quat_to_matrix(basis))).numpy()
    return heading_between


# --- Writing the dance ----------------------------------------------------------------------

def _quats_continuous(poses: np.ndarray) -> np.ndarray:
    """(T,72) axis-angle -> (T,24,4) quaternions (w,x,y,z), sign-flipped to stay on one
    hemisphere over time so per-channel interpolation between keys never swings the long way."""
    import torch
    from engine.body.rotations import axis_angle_to_quat
    q = axis_angle_to_quat(torch.as_tensor(poses, dtype=torch.float64).reshape(-1, NUM_JOINTS, 3)).numpy()
    return keys.hemisphere(q)


def write_motion(obj, motion: Motion, frame_start: float, action_name: str, fps: float | None = None,
                 metadata: dict | None = None, kept=None, only=None):
    """Animate `obj` with `motion` from `frame_start` as a new take named `action_name`.

    `kept`: (joint mask (T,24), root mask (T,)) of the animator's keys the motion honours; they
    are written as ordinary keys (type 'KEYFRAME') so the next Generate keeps them, every other
    key is 'GENERATED'. The take starts as a copy of the current action, so that channels the
    dance does not write (the object's transform, bone scales, custom properties) and keys outside
    the danced frames stay as they were; with no current action it is a new one. `only`: (first,
    last) scene frames: write just those (regenerating a range; the dance outside it stays as it
    was); None: the whole motion. The previous action is never changed and stays in bpy.data
    (takes.keep_previous). Bones keep their rotation modes. Keys land on
    frame_start + i * fps / motion.fps. Returns the new action.
    """
    check_smpl_armature(obj)
    fps = fps or scene_fps(bpy.context.scene)
    ad = obj.animation_data or obj.animation_data_create()
    old, old_slot = ad.action, compat.object_slot(obj)
    takes.keep_previous(obj)

    T = motion.num_frames
    frames = frame_start + np.arange(T) * (fps / motion.fps)
    rows = np.arange(T)
    if only is not None:
        if old is None:
            raise EngineError("nothing to regenerate a range of: the dancer has no animation")
        rows = rows[(frames > only[0] - 1e-3) & (frames < only[1] + 1e-3)]
    if old is not None:
        action = takes.use_copy_of(obj, old, old_slot, action_name)
        if only is None:    # a whole new dance: none of the previous take's beyond its frames
            keys.drop_generated_keys(obj, action, JOINT_NAMES)
    else:
        takes.reset_pose(obj)
        action, _, _ = compat.assign_new_action(obj, action_name)
    takes.mark_take(obj, action, metadata)

    quats = _quats_continuous(motion.poses)[rows]                       # (R,24,4)
    loc = np.asarray(motion.trans, np.float64)[rows] - REST_PELVIS_SMPL  # pelvis bone space = SMPL axes
    # ... where its Local Location is on (the add-on's); off, Blender moves it along the armature's axes.
    loc = loc @ C.T @ location_axes(obj.data.bones["pelvis"].use_local_location, C)
    joint_kept, root_kept = (None, None) if kept is None else (np.asarray(kept[0])[rows], np.asarray(kept[1])[rows])
    keys.write_bone_rotations(obj, action, JOINT_NAMES, frames[rows], quats, locations={"pelvis": loc},
                              kept=joint_kept, kept_locations=None if root_kept is None else {"pelvis": root_kept},
                              hold_outside=only is not None)
    obj.update_tag()
    return action


# --- The song -------------------------------------------------------------------------------

class NoSoundStrip(EngineError):
    """The scene has no sound strip to dance to (batch.py names its --audio option instead)."""


class SeveralSoundStrips(EngineError):
    """The scene has several sound strips and none is picked (batch.py names its --audio option instead)."""

    def __init__(self, count: int):
        super().__init__(f"{count} sound strips: select one in the sequencer or pick it in the Dance panel")
        self.count = count


class AudioSpan(NamedTuple):
    """The part of a sound file the scene plays: file, where in it, how long, and from which frame."""
    path: str
    start: float        # seconds into the file of the first heard frame
    duration: float     # seconds heard (scene seconds: num_frames / fps)
    first_frame: int    # scene frame of the first heard sample
    num_frames: int     # scene frames the strip covers
    speed: float = 1.0  # file seconds played per scene second (a retimed strip; 1: as recorded)
    volumes: np.ndarray | None = None   # (num_frames,) the strip's volume on each frame; None: 1 throughout


def find_sound_strip(scene, name: str = ""):
    """The strip named `name`, else the active strip if it is a sound, else the only sound strip,
    the only selected one, or the only one heard (not muted, nor at volume 0 throughout, its file
    there: QA31, a strip whose file was gone made the song beside it 'one of 2 sound strips')."""
    strips = compat.all_strips(scene)
    if name:
        for s in strips:
            if s.name == name:
                return s
        raise EngineError(f"no sequencer strip named '{name}': pick a sound strip in the Dance panel")
    active = compat.active_strip(scene)
    if active is not None and active.type == 'SOUND':
        return active
    sounds = [s for s in strips if s.type == 'SOUND']
    heard = heard_sound_strips(scene)
    through = heard_scene_strips(scene)
    if through and not heard:   # QA: "no sound strip" (or a muted one blamed), the song right there
        raise NoSoundStrip(f"the sound plays through the scene strip '{through[0].name}' (scene "
                           f"'{through[0].scene.name}'), and only sound strips are read: add the song to this "
                           "scene's sequencer (Add > Sound), or dance in that scene")
    for pick in (sounds, [s for s in sounds if s.select], heard):
        if len(pick) == 1:
            return pick[0]
    if not sounds:
        raise NoSoundStrip("no sound strip: add the song in the Video Sequencer (Add > Sound) or pick an audio file")
    raise SeveralSoundStrips(len(sounds))


def heard_sound_strips(scene) -> list:
    """The sound strips of `scene`'s sequencer that play something: not muted, not at volume 0
    throughout, their file there (or packed)."""
    return [s for s in compat.all_strips(scene)
            if s.type == 'SOUND' and not _inaudible(scene, s) and not _file_missing(s)]


def heard_scene_strips(scene) -> list:
    """The scene strips of `scene`'s sequencer that play another scene's sound strips, heard (the
    strip, the other scene's audio and one of its sound strips neither muted nor at volume 0):
    the add-on reads sound strips only."""
    out = []
    for s in compat.all_strips(scene):
        if s.type != 'SCENE' or s.scene is None or s.scene == scene or compat.strip_muted(scene, s):
            continue
        inner = s.scene
        if getattr(s, "volume", 1.0) > 0 and getattr(inner, "audio_volume", 1.0) > 0 and heard_sound_strips(inner):
            out.append(s)
    return out


def also_heard_note(scene, danced, first: int, last: int) -> str | None:
    """A note naming the other sounds heard on frames first..last beside the strip danced (the
    song's other half after a cut, a sound effect, a scene strip): the dance follows one strip,
    and with another one picked it followed that one alone without a word (QA: a sound effect
    danced while the song played under it)."""
    others = [s for s in heard_sound_strips(scene) if s != danced]
    listed, pieces = [], []
    for s in others + heard_scene_strips(scene):
        a, end = compat.strip_range(s)
        if a <= last and end - 1 >= first:
            kind = "the scene strip " if s.type == 'SCENE' else ""
            listed.append(f"{kind}'{s.name}' (frames {frame_span(max(a, first), min(end - 1, last))})")
        elif s.type == 'SOUND' and s.sound is not None and s.sound == danced.sound:   # the song cut in pieces
            pieces.append(f"'{s.name}' (frames {frame_span(a, end - 1)})")
    if not listed and not pieces:
        return None
    said = []
    if listed:
        said.append(f"also heard while it dances: {', '.join(listed[:3])}{', ...' if len(listed) > 3 else ''}")
    if pieces:
        said.append(f"the same sound also plays in {', '.join(pieces[:3])}{', ...' if len(pieces) > 3 else ''}")
    return (f"{'; '.join(said)}; the dance follows '{danced.name}' alone: to dance to all of it, render the "
            "mixdown (Render > Render Audio) and pick that file")


def _file_missing(strip) -> bool:
    """Whether a sound strip's song is neither packed in the .blend nor a file on disk."""
    sound = getattr(strip, "sound", None)
    if sound is None:
        return True
    if getattr(sound, "packed_file", None) is not None:
        return False
    try:
        return not os.path.isfile(absolute_path(sound.filepath, sound.library))
    except EngineError:     # relative to an unsaved .blend: reading the strip says so, in one line
        return False


def _inaudible(scene, strip) -> bool:
    """Whether `strip` is muted (strip_muted) or at volume 0 on every frame of it."""
    if compat.strip_muted(scene, strip):
        return True
    first, end = compat.strip_range(strip)
    return not strip_volumes(scene, strip, range(first, end)).any()


# Packed sounds already unpacked in this session: (sound's session id, name, path, size) -> file,
# so that panel redraws do not hash the song again.
_UNPACKED: dict = {}


def _sound_file(sound) -> str:
    """Absolute path of a sound's file. A packed sound is unpacked to a temporary folder named by
    its content's hash (two projects' packed "track.wav" of the same size are different songs),
    under its own file name: the take's name and style "any"'s pick (engine.api.dance_style) go
    by the song's file name, so packing a song changes neither (it made another dance and
    restarted the takes' numbering)."""
    packed = getattr(sound, "packed_file", None)
    if packed is not None:
        key = (getattr(sound, "session_uid", id(sound)), sound.name, sound.filepath, packed.size)
        path = _UNPACKED.get(key)
        if path is None or not os.path.isfile(path):
            data = packed.data
            name = re.sub(r'[\\/:*?"<>|\x00]', "_", bpy.path.basename(sound.filepath) or sound.name) or "song"
            if not os.path.splitext(name)[1]:
                name += os.path.splitext(sound.filepath)[1] or ".wav"
            folder = os.path.join(tempfile.gettempdir(), f"dance_packed_{hashlib.sha256(data).hexdigest()[:16]}")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, name)
            if not os.path.isfile(path) or os.path.getsize(path) != len(data):
                with open(path, "wb") as f:
                    f.write(data)
            _UNPACKED[key] = path
        return path
    return absolute_path(sound.filepath, sound.library)


def absolute_path(path: str, library=None) -> str:
    """A file path as Blender resolves it. A path relative to the .blend file ('//song.wav') in
    a file never saved has nothing to be relative to (Blender resolves it against the folder it
    was started from): EngineError, one line."""
    if path.startswith("//") and library is None and not bpy.data.filepath:
        raise EngineError(f"'{path}' is relative to the .blend file, which is not saved yet: save the .blend "
                          "file or choose the song again with its full path")
    return os.path.normpath(bpy.path.abspath(path, library=library))


def _audio_length(path: str) -> float:
    """Seconds of audio in a file: its header's, else decoded (formats libsndfile lacks), which is
    remembered while the file is unchanged (the panel asks on every redraw)."""
    length = audio_seconds(path)
    if length is None:
        stat = os.stat(path)
        length = _decoded_length(path, stat.st_size, stat.st_mtime_ns)
    return length


@functools.lru_cache(maxsize=8)
def _decoded_length(path: str, size: int, mtime_ns: int) -> float:
    from engine.music.audio import load_audio
    wave, sr = load_audio(path)
    return len(wave) / sr


# Blender 4.2/4.3: how far a sound strip's length may lie from its file's and not be a retiming.
UNRETIMED_SLACK_SECONDS = 0.1


def strip_speed(scene, strip, path: str) -> float:
    """File seconds a retimed strip plays per scene second (Strip > Retiming, 4.2+); 1 when it is not
    retimed. The API shows only the keys' timeline frames, so only a strip retimed as one segment
    (two keys) has a speed to read; one of several segments is refused.
    Blender's own rule (measured against its mixdown, 0.5x to 2x, in 4.3 and 4.5): a segment's speed
    is the strip's content frames less one over the frames between its keys, the content being the
    sound's length in scene frames, rounded. Blender 4.2 and 4.3 retime sound strips but keep the
    keys out of the API: there the strip's length tells the speed by the same rule (its keys are
    its first and last frames), so a strip retimed in several segments, which cannot be told from
    one, is danced at their mean speed, and a retiming that moves its end by under
    UNRETIMED_SLACK_SECONDS is not seen."""
    keys = compat.retiming_frames(strip)
    if keys is None:
        try:
            content = _content_frames(scene, path)
        except ImportError:      # the engine's packages not installed yet: nothing dances, the span shows
            return 1.0
        frames = int(strip.frame_duration)
        # A frame is the rounding of the sound's length; an MP3's decoder padding, which Blender
        # plays and the header's length leaves out, is some more (QA35: 2-4 frames, 50-83 ms).
        if abs(frames - content) <= 1 + UNRETIMED_SLACK_SECONDS * scene_fps(scene):
            return 1.0
        return max(1, content - 1) / max(1, frames - 1)
    if len(keys) > 2:
        raise EngineError(f"sound strip '{strip.name}' is retimed in {len(keys) - 1} segments, which can play at "
                          "different speeds: the dance can follow one speed only, so reset its retiming (Strip > "
                          "Retiming > Reset) and set one speed for the whole strip, or render the mixdown to a file "
                          "(Render > Render Audio) and dance to that file")
    if len(keys) < 2 or keys[1] <= keys[0]:
        return 1.0
    return max(1, _content_frames(scene, path) - 1) / (keys[1] - keys[0])


def _content_frames(scene, path: str) -> int:
    """The sound's length in scene frames, rounded, as Blender counts a strip's content."""
    return max(1, int(round(_audio_length(path) * scene_fps(scene))))


def strip_volumes(scene, strip, frames) -> np.ndarray:
    """The strip's volume on each of `frames` (scene frames) as Blender plays it: its keyed volume
    (a fade), else its constant Volume."""
    fc = compat.strip_fcurve(scene, strip, "volume")
    if fc is None:
        return np.full(len(frames), max(0.0, float(strip.volume)))
    return np.maximum(0.0, np.array([fc.evaluate(f) for f in frames], np.float64))


def sound_strip_audio(scene, strip) -> AudioSpan:
    """Where the audio heard from `strip` comes from (DESIGN.md section 6: the heard part starts
    (frame_final_start - frame_start) / fps seconds into the file, plus the strip's offsets; a
    retimed strip plays the file at its speed), and at what volume on each frame."""
    if strip is None:
        raise NoSoundStrip("no sound strip: add the song in the Video Sequencer (Add > Sound) and select it")
    if strip.type != 'SOUND':
        raise EngineError(f"strip '{strip.name}' is a {strip.type.lower()} strip, not a sound strip")
    if compat.strip_muted(scene, strip):
        raise EngineError(f"sound strip '{strip.name}' is muted (or its channel is): unmute it or pick another strip")
    if strip.sound is None:
        raise EngineError(f"sound strip '{strip.name}' has no sound data")
    path = _sound_file(strip.sound)
    if not os.path.isfile(path):
        raise EngineError(f"the file of sound strip '{strip.name}' is missing: {path}")
    fps = scene_fps(scene)
    speed = strip_speed(scene, strip, path)
    first, end = compat.strip_range(strip)
    # Frames trimmed off the left (the handle) are skipped in the file at the strip's speed (a
    # content offset, frames cut off the sound itself, as recorded); `sound_offset` (seconds, 3.x+)
    # delays the sound inside the strip in scene seconds: a positive offset plays silence first
    # (as Blender's own mixdown does; tests/test_addon_scene_io.py checks both there).
    into = (first - strip.frame_start) / fps - float(getattr(strip, "sound_offset", 0.0))
    start = into * speed + getattr(strip, "animation_offset_start", 0) / fps
    # A Sound Offset (or handles dragged past the sound) can make the strip play silence before
    # or after its audio: the dance covers the frames that play audio.
    if start < 0:
        lead = int(math.ceil(-start / speed * fps - 1e-6))
        first, start = first + lead, max(0.0, start + lead / fps * speed)
    length = audio_seconds(path)
    frames = end - first
    if length is not None and (start + frames / fps * speed - length) / speed > 1.5 / fps:
        frames = int(math.floor((length - start) / speed * fps + 1e-6))
    if frames <= 0:
        meta = strip.parent_meta() if hasattr(strip, "parent_meta") else None
        around = f", or the handles of the meta strip '{meta.name}' around it cut it away" if meta is not None else ""
        raise EngineError(f"sound strip '{strip.name}' plays none of its audio (its Sound Offset or handles are "
                          f"past the end of the sound{around})")
    volumes = strip_volumes(scene, strip, range(first, first + frames))
    if not volumes.any():        # as good as muted: nothing to hear, no silence to wait in
        keyed = compat.strip_fcurve(scene, strip, "volume") is not None
        raise EngineError(f"sound strip '{strip.name}' plays at volume 0 on all its frames (its Volume"
                          f"{' is keyed to 0 there' if keyed else ' is 0'}): raise its Volume or pick another strip")
    return AudioSpan(path, start, frames / fps, first, frames, speed,
                     None if (volumes == 1.0).all() else volumes)


def file_audio(scene, path: str, frame_start: int | None = None, duration: float | None = None) -> AudioSpan:
    """An audio file played from its beginning at `frame_start` (default: the scene start)."""
    full = absolute_path(path) if path else ""
    if not full or not os.path.isfile(full):
        raise EngineError(f"audio file not found: {full or '(none chosen)'}")
    fps = scene_fps(scene)
    if duration is None:
        duration = _audio_length(full)      # decoded where libsndfile lacks the format (e.g. old mp3 builds)
    first = scene.frame_start if frame_start is None else frame_start
    return AudioSpan(full, 0.0, float(duration), int(first), int(math.floor(duration * fps)))


def add_sound_strip(scene, path: str, frame_start: int | None = None, channel: int = 1):
    """Add `path` to the sequencer (creating the editor if needed) and return the strip."""
    if not os.path.isfile(path):
        raise EngineError(f"audio file not found: {path}")
    ed = scene.sequence_editor or scene.sequence_editor_create()
    first = scene.frame_start if frame_start is None else frame_start
    strip = compat.top_strips(ed).new_sound(os.path.basename(path)[:63], path, channel, first)
    return strip
