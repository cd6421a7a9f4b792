"""Retargeting between the engine's SMPL motion and any humanoid armature (pure numpy, no bpy).

Public API (blender_addon/rig_io.py codes against it)
-----------------------------------------------------
from engine.outputs.retarget import (Rig, RigPose, Retargeter, RetargetError, BoneMap, auto_map, detect_preset,
                             check_bone_map, load_bone_map, save_bone_map, list_presets, load_preset,
                             bone_key)   # bone_key: the tolerant name key ("mixamorig:LeftArm" -> "L|arm")

@dataclass class Rig:
    names: list[str]            bone names
    parents: list[int]          parent index, -1 for a root
    rest: np.ndarray            (B,4,4) bone.matrix_local (armature space; head = translation,
                                the bone's +Y along head->tail; no scale)
    lengths: np.ndarray         (B,) bone lengths (armature units)
    deform: list[bool]          bone.use_deform
    object_matrix: np.ndarray   (4,4) the armature object's matrix_world (default identity)
    follows: dict[int, int]     bone -> bone whose armature-space pose it copies (a Copy Transforms
                                constraint on the armature itself, world/pose space, influence 1,
                                not muted; Rigify's ORG-shoulder.L follows shoulder.L). Default {}.
    copies_rotation: dict[int, tuple[int, float]]   bone -> (bone, influence): a Copy Rotation
                                constraint (world/pose space, Replace, every axis, not muted) that
                                turns the bone that far (slerp) towards the other's armature-space
                                rotation after its parent carries it; Rigify's MCH-ROT-neck and
                                MCH-ROT-head copy the torso by 1 - neck_follow and 1 - head_follow.
                                Bones the dance does not drive only (a driven bone's rotation is the
                                dance's: its constraint is left out of the maths). Default {}.
    stands_at_rest: bool        whether the rest pose stands where the character stands in the
                                scene (an armature that deforms a body: its body was modelled
                                standing there). Default False: a bare skeleton, whose rest pose
                                can hang from its root (a BVH import: root at the origin, feet
                                below it).
    keeps_rotation: list[bool]  per bone, Inherit Rotation off: it keeps its rest orientation while
                                its head moves with its parent. Default: all False.
    local_location: list[bool]  per bone, Blender's Local Location: which axes its pose location
                                moves it along (location_axes). Default: all True (Blender's).

BoneMap = dict[str, str]        SMPL joint name -> bone name, each bone at most once. Optional extra
                                key "root": the bone that carries the location (default: the bone of
                                "pelvis"; Rigify: "torso"). Joints left out are not driven.

auto_map(rig) -> BoneMap                  best shipped preset by names (an arm it lacks from the hierarchy),
                                          else the hierarchy; RetargetError
detect_preset(rig) -> str | None          name of the shipped preset that fits (None: none fits)
list_presets() -> list[str]               shipped preset names (engine/outputs/bone_maps/<name>.json)
load_preset(name, rig=None) -> BoneMap    a shipped preset; with rig, resolved to that rig's bone names
load_bone_map(path) -> BoneMap ; save_bone_map(bone_map, path)   JSON {"bones": {joint: bone}, ...}
check_bone_map(rig, bone_map) -> None     RetargetError (one line): unknown joint, missing bone, a bone
                                          used twice, no legs, mapped bones under several roots

class Retargeter(rig, bone_map):
    .root_bone: int             index of the bone whose basis location to_rig writes
    .driven: list[int]          bones to_rig writes (mapped ones and the unmapped ones between two
                                mapped ones on a chain, e.g. spine_02/spine_04 of a 5-bone spine)
    .scale: float               world units per SMPL metre (character's hip-knee-ankle length / SMPL's)
    .frame: np.ndarray          (4,4) world matrix of the dance's floor frame (Z up): an SMPL Y-up
                                point p lands at frame @ [C p, 1] with C = (x,y,z)->(x,-z,y) and p
                                scaled by .scale. Origin: the object's origin in the world, at
                                the floor's height: for a rig that stands_at_rest, the rest
                                pose's lowest deforming joint's (the floor the character stands
                                on at rest), else the origin's own; turned about Z to where the
                                character faces at rest (facing -Y: identity). From the rest
                                pose: the scale (leg length) and the pelvis height above that
                                joint (so the rest stance stands on the floor as at rest).
    to_rig(poses (T,72), trans (T,3) Y-up metres, *, contacts=None, fps=None, plant_feet=True) -> RigPose
        contacts (T,2) per leg or Motion.contacts (T,4): planted runs pin the character's feet
        (two-bone leg IK on its own thigh and shin, engine.outputs.character_feet; with toe bones the
        ball of the foot holds still, and no ball or toe tip sinks under the floor); fps without
        contacts: the runs are found from the character's own ankles; neither: the plain retarget.
    from_rig(rotations (T,B,4) wxyz, root_location (T,3), bone_keyed (T,B) bool, location_keyed (T,) = None)
        -> (poses (T,72), trans (T,3), joint_mask (T,24) bool, trans_mask (T,) bool)
        rotations: every bone's basis as evaluated (unkeyed bones as they stand); a joint is masked
        in where its bone (or a bone sharing its chain) is keyed; trans_mask = location_keyed
        (default: bone_keyed of root_bone)
    smpl_limb_directions(poses) -> (T,24,3)   world (Blender) unit direction of each SMPL joint's
                                limb as the rig must show it (for tests/diagnostics)

@dataclass class RigPose:
    rotations: np.ndarray       (T,B,4) wxyz pose-space (matrix_basis) rotation of every bone;
                                identity for bones not driven
    root_location: np.ndarray   (T,3) basis location of bones[root_bone], along the axes Blender
                                moves that bone along (location_axes: its Local Location setting)
    root_bone: int
    driven: list[int]

Other skeletons' BVH files (the same maths, the other way):
bvh_rig(engine.outputs.bvh.read_bvh_skeleton(path), up_axis="Y") -> Rig ; bvh_pose(skeleton, rig, root_bone)
    -> (rotations (T,J,4), root_location (T,3)) ; bvh_to_smpl(path, bone_map=None) -> (poses, trans, frame_time)
location_axes(local, rest, parent_rest=None, parent_posed=None) -> (...,3,3)   the armature-space axes a
    bone's pose location moves it along (Blender's Local Location on or off)

Notes for the add-on:
- Frames: RigPose is in armature space; the dance happens in the world (Z up, on the floor: a
  character with a body on the floor it stands on at rest, whether its object's origin is at its
  feet or at its hips; a bare skeleton level with its object's origin; either way z = 0 for one
  standing at the origin, a stage's height for one placed on it),
  facing where the character faces at rest, so a Mixamo FBX (object turned 90 degrees about X,
  scale 0.01) and a character turned about Z both dance upright. Compare world limb directions
  with Retargeter.smpl_limb_directions(poses) (already in the world).
- Floor: the lowest deforming bone head keeps its rest height above it, so a body's soles that
  stand on the floor at rest stand on it while dancing; a rig without toe bones mapped takes its
  soles, guessed below the ankles (Retargeter._sole_below_ankles), as that joint.
- Limbs (hips, knees, collars, shoulders, elbows, wrists) are aligned to SMPL's rest limbs; the
  pelvis, spine, neck, head, feet and toes take the rest pose as SMPL's (upright, feet flat).
- Rigify preset ("rigify"): drives torso (rotation and location), spine_fk.002/.003, neck,
  head and the FK limb controls. The arm hangs under ORG-shoulder.L, which copies shoulder.L by
  a constraint: the Rig must say so, either with Rig.follows (the proxy copies the whole pose,
  exact whatever its rest) or by re-parenting the mapped bone under the copied one (what
  rig_io does; the same when the proxy's rest equals the copied bone's). Without either,
  check_bone_map refuses the map ("does not hang under"). Checked in bpy 4.5 on a rig generated
  from the human metarig, with follows filled and IK_FK = 1: every DEF thigh, shin, upper arm and
  forearm points along smpl_limb_directions (cosine 1.0000, 3 random poses).
  For the numpy FK to equal Blender's the rig needs
  thigh_parent.L/R and upper_arm_parent.L/R ["IK_FK"] = 1.0 (FK) and ["FK_limb_follow"] = 0.0; the
  Copy Rotation on MCH-ROT-neck / MCH-ROT-head (torso's neck_follow and head_follow, whatever
  their values) is modelled by Rig.copies_rotation; hips and chest stay at rest (their MCH
  copies then do nothing).
- Checked against Blender 4.5: for the armature Blender's BVH importer builds from the engine's
  own BVH ("smpl" preset), to_rig reproduces the importer's own pose matrices to 1e-6.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..body.skeleton import (JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, REST_OFFSETS, REST_PELVIS_HEIGHT,
                             REST_POSITIONS, bend_axis)
from .bone_mapping import (MECHANISM, NOT_UPRIGHT, BoneMap, RetargetError, auto_map, bone_key, check_bone_map,
                           detect_preset, is_ancestor, list_presets, load_bone_map, load_preset, root_bone_name,
                           save_bone_map, thighs_point_down)

__all__ = ["BoneMap", "Retargeter", "RetargetError", "Rig", "RigPose", "Y_TO_Z", "auto_map", "bone_key", "bvh_pose",
           "bvh_rig", "bvh_to_smpl", "check_bone_map", "detect_preset", "list_presets", "load_bone_map",
           "load_preset", "location_axes", "save_bone_map"]

Y_TO_Z = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])   # SMPL Y up -> Blender Z up
# Limb joints: their bone is turned at rest so that the limb points along SMPL's (T-pose or
# A-pose, any roll). The others (pelvis, spine, neck, head, feet, toes, hands) are upright, flat
# on the floor or short in every rest pose, and aligning them with SMPL's own joint placement
# (its curved spine, a head joint forward of the neck, a toe joint 6 cm below the ankle) would
# bend, tilt or tiptoe the character: they take the rest pose as SMPL's.
ALIGNED = tuple(f"{side}_{j}" for side in ("left", "right")
                for j in ("hip", "knee", "collar", "shoulder", "elbow", "wrist"))
# A knee bent in the rig's rest pose shows the rig's hinge (Rigify's metarig bends it): its bones
# are twisted onto SMPL's hinge in full from REST_BEND_SHOWS_HINGE, not at all below
# REST_BEND_TOO_SMALL (straight legs keep their rolls), eased between. A twist larger than
# KNEE_TWIST's first figure is eased out to none at its second: such a rest bend goes backwards
# or sideways (a modelling slip, not the hinge; QA27: a rig bent 3.5 degrees backwards had shins
# turned half a turn against feet). Rigify's knees need 20-25 degrees. Elbows are not twisted: a
# real elbow's bend spreads wide about any one axis (the dance's own left elbow bent 54 degrees off
# skeleton.bend_axis on average in one song), and twisted, Rigify's elbows bent further from the
# rig's forward (25 -> 63 degrees on average, QA29), its twist bones flipping the upper arm's
# deforming bone 100 degrees in a frame, the whole twist landing at the wrist.
REST_BEND_TOO_SMALL, REST_BEND_SHOWS_HINGE = np.radians(2.0), np.radians(6.0)
# SMPL's own rest pose bends its knees 10 degrees, but not about their hinges: that bend lies 35
# (left) and 47 (right) degrees off the dancers' knee axes (the knees stand in). A rig whose rest
# hinge lies within the first figure of SMPL's rest bend is built on SMPL's joints (the dance's own
# skeleton, a Mixamo character fitted to SMPL) and bends where SMPL does: it is not twisted (QA30:
# twisted, its knees bent 45 degrees off the rig's own rest bend on 660 frames against 129);
# twisted in full from the second.
REST_HINGE_LIKE_SMPLS = (np.radians(8.0), np.radians(16.0))
KNEE_TWIST = (np.radians(30.0), np.radians(60.0))
# Unmapped bones between two mapped bones of these joints share the rotation (longer spines, 2-bone necks).
CHAIN_JOINTS = ("pelvis", "spine1", "spine2", "spine3", "neck", "head")
_NEXT_OF_BRANCH = {"pelvis": "spine1", "spine3": "neck"}   # the child that continues a joint with several
# SMPL's leg (hip -> knee -> ankle, mean of both sides): the character's root path is scaled by
# its own leg length against this.
SMPL_LEG_LENGTH = float(np.mean([np.linalg.norm(REST_OFFSETS[JOINT_INDEX[f"{s}_knee"]])
                                 + np.linalg.norm(REST_OFFSETS[JOINT_INDEX[f"{s}_ankle"]]) for s in ("left", "right")]))
# SMPL's rest ankles above its floor (the toe joints): where a toe-less rig's soles are guessed to be.
SMPL_ANKLE_HEIGHT = float(np.mean([REST_POSITIONS[JOINT_INDEX[f"{s}_ankle"], 1] for s in ("left", "right")])
                          + REST_PELVIS_HEIGHT)
# SMPL's rest toe joints above its floor (they are the floor: 0 up to rounding).
SMPL_TOE_HEIGHT = float(np.mean([REST_POSITIONS[JOINT_INDEX[f"{s}_foot"], 1] for s in ("left", "right")])
                        + REST_PELVIS_HEIGHT)
SOLE_FRONT_SPAN = 0.02    # SMPL metres: a toe-less foot's tails this close to its lowest are on its sole


def _eased(x: float, low: float, high: float) -> float:
    """0 up to `low`, 1 from `high`, a smoothstep between."""
    t = min(1.0, max(0.0, (x - low) / (high - low)))
    return t * t * (3.0 - 2.0 * t)


def _turn_about(direction: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """The angle (rad, signed) that turns vector a onto vector b about the unit `direction`, both
    seen across it."""
    a, b = (v - np.dot(v, direction) * direction for v in (a, b))
    return float(np.arctan2(np.dot(np.cross(a, b), direction), np.dot(a, b)))


def _next_joint(j: int) -> int | None:
    kids = [k for k, p in enumerate(PARENTS) if p == j]
    if len(kids) == 1:
        return kids[0]
    name = _NEXT_OF_BRANCH.get(JOINT_NAMES[j])
    return JOINT_INDEX[name] if name else None


# ----------------------------------------------------------------------------- numpy rotations
# numpy twins of engine/body/rotations.py (torch) and engine.body.skeleton.forward_kinematics: the add-on
# imports this module for its rig panel before torch is installed (blender_addon/rig_io.py, rig_ui.py),
# so it must stay numpy-only at import. Same conventions: wxyz, Shepperd, w >= 0.

def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    m = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                  2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                  2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Shepperd's method (the largest of four denominators), w >= 0."""
    m = np.asarray(m, np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    cand = np.stack([
        np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1)], -2)
    best = np.argmax(np.stack([cand[..., k, k] for k in range(4)], -1), axis=-1)
    q = np.take_along_axis(cand, best[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    aa = np.asarray(aa, np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    half = 0.5 * angle
    scale = np.where(angle < 1e-8, 0.5 - angle ** 2 / 48.0, np.sin(half) / np.maximum(angle, 1e-8))
    return quat_to_matrix(np.concatenate([np.cos(half), aa * scale], -1))


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    q = np.where(q[..., :1] < 0, -q, q)
    sin_half = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, q[..., :1])
    scale = np.where(sin_half < 1e-8, 2.0 + angle ** 2 / 12.0, angle / np.maximum(sin_half, 1e-8))
    return q[..., 1:] * scale


def matrix_to_axis_angle(m: np.ndarray) -> np.ndarray:
    return quat_to_axis_angle(matrix_to_quat(m))


def rotation_power(m: np.ndarray, f: float) -> np.ndarray:
    """m^f: the same axis, f times the angle (shortest arc)."""
    return axis_angle_to_matrix(matrix_to_axis_angle(m) * f)


def align(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The smallest rotation taking direction u onto direction v."""
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    axis, c = np.cross(u, v), float(np.dot(u, v))
    s = float(np.linalg.norm(axis))
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        perp = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
        return axis_angle_to_matrix(perp / np.linalg.norm(perp) * np.pi)
    return axis_angle_to_matrix(axis / s * np.arctan2(s, c))


def _polar_rotation(m: np.ndarray) -> np.ndarray:
    """The rotation part of a rotation-and-scale matrix."""
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:
        raise RetargetError("the armature object is mirrored (negative scale); apply its scale first")
    return r


def smpl_global_rotations(poses: np.ndarray) -> np.ndarray:
    """(T,72) axis-angle local rotations -> (T,24,3,3) rotations relative to the world (Y up)."""
    local = axis_angle_to_matrix(np.asarray(poses, np.float64).reshape(len(poses), NUM_JOINTS, 3))
    glob = np.empty_like(local)
    glob[:, 0] = local[:, 0]
    for j in range(1, NUM_JOINTS):
        glob[:, j] = glob[:, PARENTS[j]] @ local[:, j]
    return glob


def _continuous(q: np.ndarray) -> np.ndarray:
    """(T,...,4) quaternions with signs flipped so consecutive frames agree (keys interpolate short)."""
    q = q.copy()
    if len(q) > 1:
        dots = np.sum(q[1:] * q[:-1], axis=-1)
        q[1:] *= np.cumprod(np.where(dots < 0, -1.0, 1.0), axis=0)[..., None]   # a flip carries on
    return q


# ----------------------------------------------------------------------------- the rig

@dataclass
class Rig:
    """An armature as the retargeting sees it (see the module docstring)."""
    names: list
    parents: list
    rest: np.ndarray
    lengths: np.ndarray
    deform: list
    object_matrix: np.ndarray = field(default_factory=lambda: np.eye(4))
    follows: dict = field(default_factory=dict)
    stands_at_rest: bool = False
    copies_rotation: dict = field(default_factory=dict)
    # Bones that keep their own rest orientation instead of turning with their parent (Blender's
    # Inherit Rotation off, a hinge head); they still move with it. None: every bone inherits.
    keeps_rotation: list | None = None
    # Blender's Local Location per bone (location_axes). None: on for every bone, Blender's default.
    local_location: list | None = None
    # Blender's Connected per bone: its head sits on its parent's tail, and its location is
    # ignored, so it cannot carry the dance's travel. None: no bone is connected.
    connected: list | None = None

    def __post_init__(self):
        self.names = [str(n) for n in self.names]
        self.parents = [int(p) for p in self.parents]
        self.rest = np.asarray(self.rest, np.float64)
        self.lengths = np.asarray(self.lengths, np.float64)
        self.deform = [bool(d) for d in self.deform]
        self.object_matrix = np.asarray(self.object_matrix, np.float64)
        n = len(self.names)
        if (len(self.parents) != n or self.rest.shape != (n, 4, 4) or self.lengths.shape != (n,)
                or len(self.deform) != n or self.object_matrix.shape != (4, 4)):
            raise RetargetError(f"rig: {n} names but {len(self.parents)} parents, rest {self.rest.shape}, "
                                f"lengths {self.lengths.shape}, {len(self.deform)} deform flags, object matrix "
                                f"{self.object_matrix.shape}")
        if n == 0:
            raise RetargetError("the armature has no bones")
        if len(set(self.names)) != n:
            raise RetargetError("rig: two bones share a name")
        if any(not -1 <= p < n or p == i for i, p in enumerate(self.parents)):
            raise RetargetError("rig: a parent index is out of range")
        if not (np.isfinite(self.rest).all() and np.isfinite(self.object_matrix).all()):
            raise RetargetError("rig: rest or object matrices hold NaN or infinite values")
        self.keeps_rotation = [False] * n if self.keeps_rotation is None else [bool(k) for k in self.keeps_rotation]
        if len(self.keeps_rotation) != n:
            raise RetargetError(f"rig: {n} names but {len(self.keeps_rotation)} keeps_rotation flags")
        self.local_location = [True] * n if self.local_location is None else [bool(k) for k in self.local_location]
        if len(self.local_location) != n:
            raise RetargetError(f"rig: {n} names but {len(self.local_location)} local_location flags")
        self.connected = [False] * n if self.connected is None else [bool(c) for c in self.connected]
        if len(self.connected) != n:
            raise RetargetError(f"rig: {n} names but {len(self.connected)} connected flags")
        self.follows = {int(b): int(c) for b, c in dict(self.follows).items()}
        if any(not (0 <= b < n and 0 <= c < n) or b == c for b, c in self.follows.items()):
            raise RetargetError("rig: a 'follows' index is out of range")
        self.copies_rotation = {int(b): (int(c), float(w)) for b, (c, w) in dict(self.copies_rotation).items()}
        if any(not (0 <= b < n and 0 <= c < n) or b == c or not 0.0 <= w <= 1.0
               for b, (c, w) in self.copies_rotation.items()):
            raise RetargetError("rig: a 'copies_rotation' index or influence is out of range")

    def effective_parents(self) -> list[int]:
        """Each bone's parent, or the bone it copies (follows): whose pose it moves with."""
        return [self.follows.get(b, p) for b, p in enumerate(self.parents)]

    def order(self) -> list[int]:
        """Bones with every parent (and every bone followed or copied) before them; RetargetError on a cycle."""
        deps = [{p} - {-1} | ({self.follows[b]} if b in self.follows else set())
                | ({self.copies_rotation[b][0]} if b in self.copies_rotation else set()) for b, p in enumerate(self.parents)]
        users: list[list[int]] = [[] for _ in self.names]
        for b, ds in enumerate(deps):
            for d in ds:
                users[d].append(b)
        waiting = [len(ds) for ds in deps]
        out, ready = [], [b for b, w in enumerate(waiting) if w == 0]
        while ready:
            b = ready.pop()
            out.append(b)
            for u in users[b]:
                waiting[u] -= 1
                if waiting[u] == 0:
                    ready.append(u)
        if len(out) != len(self.names):
            raise RetargetError("rig: the bone hierarchy (with the bones it follows) has a cycle")
        return out

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """Armature-space points (...,3) -> the world, through the object's matrix."""
        O = self.object_matrix
        return points @ O[:3, :3].T + O[:3, 3]

    def world_heads(self) -> np.ndarray:
        return self.to_world(self.rest[:, :3, 3])

    def tails(self) -> np.ndarray:
        """(B,3) rest tails in armature space: each head along the bone's Y axis by its length."""
        return self.rest[:, :3, 3] + self.lengths[:, None] * self.rest[:, :3, 1]

    def world_tails(self) -> np.ndarray:
        return self.to_world(self.tails())


def location_axes(local: bool, rest: np.ndarray, parent_rest: np.ndarray | None = None,
                  parent_posed: np.ndarray | None = None) -> np.ndarray:
    """The armature-space axes (3,3), or (T,3,3) for posed parents (T,3,3), that a bone's pose
    location moves its head along, as Blender applies it: with Local Location on (`local`), the
    bone's rest axes `rest` as its parent carries them (parent_posed parent_rest^T rest, whether
    or not the bone inherits rotation); off, its parent's posed axes. A root bone (no parent):
    its rest axes, or off, the armature's own. Checked in bpy 4.5 against the posed head of root
    and parented bones with either setting of Local Location and Inherit Rotation under a posed
    parent (to 1e-7)."""
    if parent_rest is None:
        return rest if local else np.eye(3)
    return parent_posed @ (parent_rest.T @ rest) if local else parent_posed


@dataclass
class RigPose:
    rotations: np.ndarray      # (T,B,4) wxyz basis rotations
    root_location: np.ndarray  # (T,3) basis location of bones[root_bone] (along location_axes)
    root_bone: int
    driven: list


# ----------------------------------------------------------------------------- retargeting

class Retargeter:
    """SMPL motion <-> one rig's pose-space keys, for one bone map (see the module docstring).

    For a mapped bone b of SMPL joint j, with Q_b its rest orientation in the world turned (limbs
    only) so that its limb lies along SMPL's rest limb, the posed world orientation is
    D G_j D^T Q_b (G_j: the joint's rotation relative to the world, D: SMPL axes -> the dance
    frame). Each bone's basis follows from its parent's pose and the rest matrices:
    basis = (M_p A_p^T A_b)^T M_b for armature-space rotations M and rest rotations A.
    """

    def __init__(self, rig: Rig, bone_map: BoneMap):
        check_bone_map(rig, bone_map)
        self.rig, self.bone_map = rig, dict(bone_map)
        index = {n: i for i, n in enumerate(rig.names)}
        self.bone_of = [index[bone_map[n]] if n in bone_map else -1 for n in JOINT_NAMES]
        self.joint_of = {b: j for j, b in enumerate(self.bone_of) if b >= 0}
        self.root_bone = index[root_bone_name(bone_map)]
        self._order = rig.order()
        self._A = rig.rest[:, :3, :3]
        self._heads = rig.rest[:, :3, 3]
        O = rig.object_matrix
        self._Ro = _polar_rotation(O[:3, :3])
        self._O_inv = np.linalg.inv(O)
        heads_w = rig.world_heads()

        deform = np.array(rig.deform) if any(rig.deform) else np.ones(len(rig.names), bool)
        floor = float(heads_w[deform, 2].min())
        lh, rh, pel = self.bone_of[JOINT_INDEX["left_hip"]], self.bone_of[JOINT_INDEX["right_hip"]], self.bone_of[0]
        # Where the character faces at rest: the turn about Z that brings SMPL's line from the
        # right to the left hip and shoulder (its left is +x, facing -y) onto the rig's. SMPL's
        # own line is a degree off the x axis, so an SMPL-shaped rig turns by exactly 0.
        pairs = [("left_hip", "right_hip")]
        ls, rs = self.bone_of[JOINT_INDEX["left_shoulder"]], self.bone_of[JOINT_INDEX["right_shoulder"]]
        if ls >= 0 and rs >= 0:
            pairs.append(("left_shoulder", "right_shoulder"))
        across = sum(heads_w[self.bone_of[JOINT_INDEX[l]]] - heads_w[self.bone_of[JOINT_INDEX[r]]] for l, r in pairs)
        smpl_across = Y_TO_Z @ sum(REST_POSITIONS[JOINT_INDEX[l]] - REST_POSITIONS[JOINT_INDEX[r]] for l, r in pairs)
        if np.hypot(across[0], across[1]) < 1e-6 * max(1.0, np.abs(heads_w).max()):
            raise RetargetError(f"the hip bones {rig.names[lh]!r} and {rig.names[rh]!r} sit at the same place; "
                                "cannot tell the character's left from its right")
        yaw = float(np.arctan2(across[1], across[0]) - np.arctan2(smpl_across[1], smpl_across[0]))
        F = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        self.frame = np.eye(4)
        self.frame[:3, :3] = F
        self.frame[:3, 3] = O[:3, 3]
        self._D = F @ Y_TO_Z
        knees = [self.bone_of[JOINT_INDEX[f"{side}_knee"]] for side in ("left", "right")]
        # A standing rest pose's thighs point down (T-pose, A-pose, a wide stance: well within
        # 60 degrees of vertical); a character lying on its side passes the height test alone.
        if float(heads_w[[lh, rh], 2].mean()) <= floor or not thighs_point_down(heads_w[[lh, rh]], heads_w[knees]).all():
            raise RetargetError(NOT_UPRIGHT)
        self._check_toes_point_front(heads_w, F @ np.array([0.0, -1.0, 0.0]))
        self.scale = self._leg_length(heads_w) / SMPL_LEG_LENGTH
        if all(self.bone_of[JOINT_INDEX[f"{side}_foot"]] < 0 for side in ("left", "right")):
            floor = min(floor, self._sole_below_ankles(heads_w))   # no toes: the soles stand on the floor
        # A character with a body dances on the level it stands on at rest, wherever its object's
        # origin is (at the hips): standing, it keeps its rest height, so soles a few centimetres
        # under the toe joints stay on the floor instead of sinking. A bare skeleton's rest pose
        # may hang from its root (a BVH import), so its lowest joint dances on the origin's level.
        if rig.stands_at_rest:
            self.frame[2, 3] = floor
        # Each leg's thigh, shin and foot bones, the ankle's rest height above the floor, its toe
        # bone (-1: none) and the toe's rest height, for planting feet.
        self._legs = {}
        self._toe_tips = {}          # per leg with a toe bone: its tail's rest height above the floor
        self._sole_fronts = {}       # per leg without: (the sole's front in the foot bone's frame, its rest height)
        for side in ("left", "right"):
            hip, knee, ankle = (self.bone_of[JOINT_INDEX[f"{side}_{j}"]] for j in ("hip", "knee", "ankle"))
            toe = self.bone_of[JOINT_INDEX[f"{side}_foot"]]
            if min(hip, knee, ankle) >= 0:
                self._legs[side] = (hip, knee, ankle, float(heads_w[ankle, 2] - floor),
                                    toe, float(heads_w[toe, 2] - floor) if toe >= 0 else 0.0)
                if toe >= 0:
                    self._toe_tips[side] = float(rig.world_tails()[toe, 2] - floor)
                else:
                    front, height = self._sole_front(ankle)
                    self._sole_fronts[side] = (front, height - floor)
        # The rig's pelvis bone sits this far above SMPL's pelvis (SMPL metres, in the pelvis's frame).
        self._delta = np.array([0.0, (heads_w[pel, 2] - floor) / self.scale - REST_PELVIS_HEIGHT, 0.0])

        self._Q = {}
        for j, b in enumerate(self.bone_of):
            if b < 0:
                continue
            rest_world = self._Ro @ self._A[b]
            if JOINT_NAMES[j] in ALIGNED:
                rig_dir, smpl_dir = self._limb(j, b, heads_w)
                rest_world = align(rig_dir, self._D @ smpl_dir) @ rest_world
            self._Q[b] = rest_world
        self._twist_onto_smpls_hinges(heads_w)
        self._share = self._chains()
        self.driven = sorted(set(self.joint_of) | set(self._share))
        # A driven bone's rotation is the dance's: a Copy Rotation on it is not modelled.
        self._copies = {b: v for b, v in rig.copies_rotation.items() if b not in self.driven}

    # -- set-up helpers

    def _check_toes_point_front(self, heads_w: np.ndarray, front: np.ndarray) -> None:
        """RetargetError where the toes point back from the front that the left and right bones
        give: the bones named left sit on the character's right (named from the viewer's side).
        Danced so, it faced away from its toes and its knees bent backwards (QA)."""
        toes = np.zeros(3)
        for side in ("left", "right"):
            ankle, toe = (self.bone_of[JOINT_INDEX[f"{side}_{j}"]] for j in ("ankle", "foot"))
            if ankle >= 0 and toe >= 0:
                toes += heads_w[toe] - heads_w[ankle]
        flat = toes * np.array([1.0, 1.0, 0.0])
        if np.linalg.norm(flat) > 0.25 * np.linalg.norm(toes) and float(flat @ front) < 0:
            left = self.rig.names[self.bone_of[JOINT_INDEX["left_hip"]]]
            raise RetargetError(f"the bones named left ({left!r} and the rest) sit on the character's right, seen from "
                                "where its toes point: rename them, or map the bones by hand with left on its own left")

    def _leg_length(self, heads_w: np.ndarray) -> float:
        """Mean of both legs' hip-knee-ankle length in the world (a knee bent at rest, feet with
        or without toes and any pelvis placement give the same figure)."""
        total = []
        for side in ("left", "right"):
            hip, knee, ankle = (self.bone_of[JOINT_INDEX[f"{side}_{j}"]] for j in ("hip", "knee", "ankle"))
            shin = (np.linalg.norm(heads_w[ankle] - heads_w[knee]) if ankle >= 0
                    else self.rig.lengths[knee] * np.linalg.norm(self.rig.object_matrix[:3, :3], 2))
            total.append(np.linalg.norm(heads_w[knee] - heads_w[hip]) + shin)
        length = float(np.mean(total))
        if not length > 0:
            raise RetargetError("the leg bones have no length in the rest pose")
        return length

    def _sole_front(self, ankle: int) -> tuple[np.ndarray, float]:
        """For a leg that maps no toe bone: the front of its sole, of the tails of the foot bone
        and of the unmapped bones under it, which turn with it (a Second Life foot bone reaches
        the toe's tip; MakeHuman's map leaves its toe bones out), the furthest from the ankle of
        those within 2 cm (scaled) of the lowest at rest: a foot pitched down lowers the toe's tip
        most. Returns (its offset from the foot bone's head in that bone's frame, its rest height
        in the world)."""
        mapped = set(int(b) for b in self.bone_of if b >= 0)

        def under_foot(b: int) -> bool:
            while b >= 0 and b != ankle:
                if b in mapped:
                    return False
                b = self.rig.parents[b]
            return b == ankle

        rest, tails = self.rig.rest, self.rig.tails()
        bones = [b for b in range(len(self.rig.names)) if under_foot(b)]
        world = self.rig.to_world(tails[bones])
        reach = np.linalg.norm(world - self.rig.to_world(rest[ankle][:3, 3]), axis=-1)
        low = world[:, 2] <= world[:, 2].min() + SOLE_FRONT_SPAN * self.scale
        k = int(np.argmax(np.where(low, reach, -np.inf)))
        return rest[ankle][:3, :3].T @ (tails[bones[k]] - rest[ankle][:3, 3]), float(world[k, 2])

    def _sole_below_ankles(self, heads_w: np.ndarray) -> float:
        """Where the soles of a rig without toe bones are: the foot bone's tail where it lies a
        quarter to twice SMPL's ankle height (scaled) below the ankle (a foot bone reaching for
        the toes), else SMPL's ankle height (scaled) below the ankle (a foot bone pointing level,
        up, or on down the shin). The lower of both feet, in the world."""
        drop = self.scale * SMPL_ANKLE_HEIGHT
        tails_w = self.rig.world_tails()
        soles = []
        for side in ("left", "right"):
            b = self.bone_of[JOINT_INDEX[f"{side}_ankle"]]
            if b < 0:
                continue
            tail = tails_w[b]
            down = heads_w[b, 2] - tail[2]
            soles.append(tail[2] if 0.25 * drop <= down <= 2.0 * drop else heads_w[b, 2] - drop)
        return min(soles) if soles else float("inf")

    def _twist_onto_smpls_hinges(self, heads_w: np.ndarray) -> None:
        """Twist the thigh and shin of a knee the rig bends at rest about their own directions until
        the rig's hinge (that bend's axis) lies on SMPL's (skeleton.bend_axis). The shortest turn
        that lines a limb up with SMPL's leaves each bone's roll as the rig has it, and the dance's
        knees, which bend about SMPL's hinges, bent a Rigify rig's 17-29 degrees off its forward on
        average (QA29: 5-12 twisted). Eased by how clearly the rest pose shows a hinge, whether it
        is SMPL's own rest bend and how plausible the twist is (REST_BEND_*, REST_HINGE_LIKE_SMPLS,
        KNEE_TWIST)."""
        for side in ("left", "right"):
            ju, jm = JOINT_INDEX[f"{side}_hip"], JOINT_INDEX[f"{side}_knee"]
            bu, bm = self.bone_of[ju], self.bone_of[jm]
            if bu < 0 or bm < 0:
                continue
            rig_upper = heads_w[bm] - heads_w[bu]
            rig_lower, smpls_lower = self._limb(jm, bm, heads_w)
            normal = np.cross(rig_upper, rig_lower)
            sine = np.linalg.norm(normal) / (np.linalg.norm(rig_upper) * np.linalg.norm(rig_lower))
            if np.dot(rig_upper, rig_lower) <= 0:
                continue
            smpls_hinge = self._D @ bend_axis(JOINT_NAMES[jm])
            smpls_rest_bend = self._D @ np.cross(REST_POSITIONS[jm] - REST_POSITIONS[ju], smpls_lower)
            twists, like_smpls = [], 0.0
            for j, b in ((ju, bu), (jm, bm)):
                rig_dir, smpl_dir = self._limb(j, b, heads_w)
                direction = self._D @ smpl_dir / np.linalg.norm(smpl_dir)
                hinge = align(rig_dir, self._D @ smpl_dir) @ normal
                twists.append((b, direction, _turn_about(direction, hinge, smpls_hinge)))
                like_smpls = max(like_smpls, abs(_turn_about(direction, hinge, smpls_rest_bend)))
            share = (_eased(np.arcsin(min(1.0, sine)), REST_BEND_TOO_SMALL, REST_BEND_SHOWS_HINGE)
                     * _eased(like_smpls, *REST_HINGE_LIKE_SMPLS)
                     * _eased(-max(abs(a) for _, _, a in twists), -KNEE_TWIST[1], -KNEE_TWIST[0]))
            for b, direction, angle in twists:
                self._Q[b] = axis_angle_to_matrix(direction * angle * share) @ self._Q[b]

    def _limb(self, j: int, b: int, heads_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the rig's rest limb direction in the world, SMPL's in SMPL axes) for mapped joint j."""
        k = _next_joint(j)
        while k is not None and self.bone_of[k] < 0:
            k = _next_joint(k)
        if k is not None:
            return heads_w[self.bone_of[k]] - heads_w[b], REST_POSITIONS[k] - REST_POSITIONS[j]
        nxt = _next_joint(j)
        smpl = REST_POSITIONS[nxt] - REST_POSITIONS[j] if nxt is not None else REST_OFFSETS[j]
        scale = max(1e-9, float(np.ptp(heads_w[:, 2])))
        kids = [c for c, p in enumerate(self.rig.parents) if p == b
                and np.linalg.norm(heads_w[c] - heads_w[b]) > 1e-3 * scale]
        if kids:
            return heads_w[kids].mean(axis=0) - heads_w[b], smpl
        return self._Ro @ self._A[b][:, 1], smpl

    def _chains(self) -> dict[int, tuple[int, int, int, int]]:
        """Unmapped bones that share a rotation: bone -> (mapped ancestor a, mapped bone c, i, m):
        the i-th of the m bones from a (exclusive) to c (inclusive)."""
        parents = self.rig.effective_parents()
        paths = {}
        through: dict[int, int] = {}
        for c, j in self.joint_of.items():
            path, a = [], parents[c]
            while a >= 0 and a not in self.joint_of:
                path.append(a)
                a = parents[a]
            for k in path:
                through[k] = through.get(k, 0) + 1
            if a >= 0 and path and JOINT_NAMES[j] in CHAIN_JOINTS and JOINT_NAMES[self.joint_of[a]] in CHAIN_JOINTS:
                paths[c] = (a, path[::-1])
        share = {}
        for c, (a, path) in paths.items():
            if any(through[k] > 1 or MECHANISM.search(self.rig.names[k]) for k in path):
                continue
            for i, k in enumerate(path, start=1):
                share[k] = (a, c, i, len(path) + 1)
        return share

    # -- SMPL -> rig

    def smpl_limb_directions(self, poses: np.ndarray) -> np.ndarray:
        """(T,24,3) unit world directions of SMPL's limbs (joint -> next joint; a leaf: its own
        offset) as the dance shows them in this rig's dance frame."""
        G = smpl_global_rotations(poses)
        d = np.array([REST_POSITIONS[k] - REST_POSITIONS[j] if (k := _next_joint(j)) is not None else REST_OFFSETS[j]
                      for j in range(NUM_JOINTS)])
        v = np.einsum("ab,tjbc,jc->tja", self._D, G, d)
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    def _targets(self, G: np.ndarray) -> dict[int, np.ndarray]:
        """Armature-space rotation (T,3,3) of every mapped bone."""
        world = self._D @ G @ self._D.T
        return {b: self._Ro.T @ world[:, j] @ self._Q[b] for b, j in self.joint_of.items()}

    def _pose(self, target: dict[int, np.ndarray]):
        """FK of the rig with the mapped bones' armature-space rotations `target`: (M (T,B,3,3)
        armature-space rotations, pos (T,B,3) heads before the root's location, basis (T,B,3,3),
        the axes the root bone's location moves it along (T,3,3), _location_axes)."""
        T, B = len(next(iter(target.values()))), len(self.rig.names)
        A = self._A
        M = np.empty((T, B, 3, 3))
        pos = np.empty((T, B, 3))
        basis = np.broadcast_to(np.eye(3), (T, B, 3, 3)).copy()
        root_axes = None
        steps = {}
        follows = self.rig.follows
        for b in self._order:
            carried = self._carried(M, pos, b)
            if b == self.root_bone:
                root_axes = self._location_axes(M, b)
            if b in follows:                       # its constraint overrides whatever it inherits
                M[:, b], pos[:, b] = M[:, follows[b]], pos[:, follows[b]]
                continue
            if b in target:
                M[:, b] = target[b]
            elif b in self._share:
                a, c, i, m = self._share[b]
                if c not in steps:
                    frame_a = M[:, a] @ A[a].T
                    steps[c] = (rotation_power(target[c] @ A[c].T @ np.swapaxes(frame_a, -1, -2), 1.0 / m), frame_a)
                step, frame_a = steps[c]
                M[:, b] = np.linalg.matrix_power(step, i) @ frame_a @ A[b]
            else:
                M[:, b] = self._copied_rotation(M, carried, b)
                continue
            basis[:, b] = np.swapaxes(carried, -1, -2) @ M[:, b]
        return M, pos, basis, root_axes

    def _copied_rotation(self, M: np.ndarray, rotation: np.ndarray, b: int) -> np.ndarray:
        """Bone b's armature-space rotation (T,3,3) after its Copy Rotation (Rig.copies_rotation),
        `rotation` the one it has before: turned by the influence towards the copied bone's
        (Blender blends a constraint's result by slerp)."""
        if b not in self._copies:
            return rotation
        c, w = self._copies[b]
        return rotation @ rotation_power(np.swapaxes(rotation, -1, -2) @ M[:, c], w)

    def _carried(self, M: np.ndarray, pos: np.ndarray, b: int) -> np.ndarray:
        """Bone b's armature-space rotation (T,3,3) as its parent carries it (its own rest one
        where it keeps its rotation, or is a root), with its head put in `pos` (T,B,3); M holds
        the parents' posed rotations (T,B,3,3). The forward kinematics both directions share."""
        A, heads, p = self._A, self._heads, self.rig.parents[b]
        if p < 0:
            pos[:, b] = heads[b]
            return np.broadcast_to(A[b], (len(M), 3, 3))
        pos[:, b] = pos[:, p] + M[:, p] @ (A[p].T @ (heads[b] - heads[p]))
        if self.rig.keeps_rotation[b]:
            return np.broadcast_to(A[b], (len(M), 3, 3))
        return M[:, p] @ (A[p].T @ A[b])

    def _location_axes(self, M: np.ndarray, b: int) -> np.ndarray:
        """(T,3,3) the armature-space axes bone b's pose location moves it along (location_axes),
        M holding its parent's posed rotations (T,B,3,3). Not its carried rotation: a bone with
        Local Location off moves along its parent's axes (a root bone: the armature's), and one
        with Inherit Rotation off along its rest axes as its parent carries them (QA: a tilted
        hips bone with Local Location off strayed 0.55 m from the dance's path, 0.34 m up)."""
        p = self.rig.parents[b]
        axes = location_axes(self.rig.local_location[b], self._A[b], *((self._A[p], M[:, p]) if p >= 0 else ()))
        return np.broadcast_to(axes, (len(M), 3, 3))

    def to_rig(self, poses: np.ndarray, trans: np.ndarray, *, contacts: np.ndarray | None = None,
               fps: float | None = None, plant_feet: bool = True, given_feet: np.ndarray | None = None) -> RigPose:
        """SMPL motion -> the rig's pose-space keys.

        Planted feet (engine.outputs.character_feet): with `contacts` ((T,2) per leg, or the engine's (T,4)
        Motion.contacts) the foot of each leg is pinned through each contact run (with a toe bone
        its ball, else its ankle), and feet are pitched up where a ball or a toe tip would sink
        (_soles_above_floor); with `fps` but no contacts, the runs are found from the character's
        own ankles (low and slow). With neither (or plant_feet=False) the legs and feet follow the
        plain retarget. `given_feet` (T,2,2,3;
        foot_points, NaN on other frames): where the character's feet stand in poses written
        as they are (the dance around a regenerated range, full-pose keys); a stance through
        them keeps their spot (character_feet.given_stances)."""
        poses, trans = _check_motion(poses, trans)
        B = len(self.rig.names)
        G = smpl_global_rotations(poses)
        target = self._targets(G)
        M, pos, basis, root_axes = self._pose(target)
        pel = self.bone_of[0]
        want = self.frame[:3, 3] + (self.scale * (trans + G[:, 0] @ self._delta)) @ self._D.T   # world
        want = want @ self._O_inv[:3, :3].T + self._O_inv[:3, 3]                                 # armature
        shift = want - pos[:, pel]
        if plant_feet and self._legs and (contacts is not None or fps is not None):
            smpl = smpl_positions(G, trans)
            if self._plant_feet(G, smpl, target, pos, shift, contacts, fps, given_feet):
                if fps is not None:
                    self._guard_leg_speeds(target, float(fps))
                M, pos, basis, root_axes = self._pose(target)
            if self._soles_above_floor(smpl, target, M, pos, shift, fps):
                M, pos, basis, root_axes = self._pose(target)
        location = np.einsum("tba,tb->ta", root_axes, shift)      # along the axes Blender moves the root bone
        q = matrix_to_quat(basis)
        undriven = np.setdiff1d(np.arange(B), self.driven)
        q[:, undriven] = (1.0, 0.0, 0.0, 0.0)
        return RigPose(_continuous(q), location, self.root_bone, list(self.driven))

    def _floor_heads(self, pos, shift) -> np.ndarray:
        """(T,B,3) world heads above a floor at z = 0 (character_feet works there: a translation
        of the world, which leaves rotations as they are) from FK heads `pos` and the root's shift."""
        moved = np.array(self._moved_by_root())
        floor = np.array([0.0, 0.0, self.frame[2, 3]])
        return self.rig.to_world(pos + np.where(moved[None, :, None], shift[:, None, :], 0.0)) - floor

    def _plant_feet(self, G, smpl, target, pos, shift, contacts, fps, given_feet=None) -> bool:
        """Re-solve each leg's thigh and shin (edits `target` in place) so that planted feet hold
        still at the character's ankle height (with a toe bone: the ball of the foot holds still,
        the ankle behind it as the dance turns the foot, also while the heel rises about the
        ball next to a stance); True where anything changed."""
        from . import character_feet as cf
        T = len(G)
        heads_w = self._floor_heads(pos, shift)
        floor = np.array([0.0, 0.0, self.frame[2, 3]])
        smpl_to_world = lambda p: self.frame[:3, 3] - floor + self.scale * p @ self._D.T   # noqa: E731  SMPL -> world
        contact_runs = None if contacts is None else cf.contact_columns(contacts, T)
        if fps is None:
            from ..defaults import DEFAULT_FPS
            rate = DEFAULT_FPS
        else:
            rate = float(fps)
            if not (np.isfinite(rate) and rate > 0):
                raise RetargetError(f"fps must be a positive number, got {fps!r}")
        from ..finishing.feet import FADE_SECONDS, MAX_REACH   # torch-backed module: import late
        fade = max(1, int(round(FADE_SECONDS * rate)))
        changed = False
        for col, side in enumerate(("left", "right")):
            if side not in self._legs:
                continue
            hip, knee, ankle, rest_height, toe, toe_height = self._legs[side]
            jh, jk, ja = (JOINT_INDEX[f"{side}_{j}"] for j in ("hip", "knee", "ankle"))
            free = heads_w[:, ankle]
            planted = (contact_runs[:, col] if contact_runs is not None else cf.derive_contacts(
                free, rest_height, self.scale, rate, heads_w[:, toe] if toe >= 0 else None, toe_height))
            fixed = None
            if given_feet is not None:
                ankle_g, toe_g = (np.asarray(given_feet[:, col, k], np.float64) - floor for k in (0, 1))
                stood = cf.given_stances(ankle_g, toe_g if toe >= 0 else None, planted, rest_height, toe_height,
                                         self.scale, rate)
                planted = (planted & ~np.isfinite(ankle_g).all(axis=1)) | stood
                fixed = np.where(stood[:, None], ankle_g, np.nan)
            if not planted.any():
                continue
            # The spot follows SMPL's ankle, moved by where the character's hip sits against SMPL's.
            smpl_ankle = smpl_to_world(smpl[:, ja]) + (heads_w[:, hip] - smpl_to_world(smpl[:, jh])) * [1.0, 1.0, 0.0]
            smpl_rest = self.scale * SMPL_ANKLE_HEIGHT
            ball = rolled = None
            if toe >= 0:      # the foot as turned on each frame: its ankle's height above its toe
                ball = heads_w[:, toe] - free                                    # ankle -> ball
                smpl_toe = smpl_to_world(smpl[:, JOINT_INDEX[f"{side}_foot"]])
                smpl_toe_z = smpl_toe[:, 2] - self.scale * SMPL_TOE_HEIGHT
                height = cf.stance_heights(smpl_ankle[:, 2], smpl_rest, rest_height, smpl_toe_z, -ball[:, 2], toe_height)
                rolled = cf.rolling(planted, smpl_toe, self.scale, rate)
                if fixed is not None:      # given poses stand as given, on their own ball
                    rolled &= ~np.isfinite(ankle_g).all(axis=1)
                    ball = np.where(stood[:, None], toe_g - ankle_g, ball)
            else:
                height = cf.stance_heights(smpl_ankle[:, 2], smpl_rest, rest_height)
            goal, weight = cf.stance_targets(planted, smpl_ankle, free, height, fade, fixed, ball, rolled)
            f = np.flatnonzero(weight > 0)
            hinge = -(self._D @ G[f, jk])[:, :, 0]            # SMPL's knee bends about its -x
            # As in engine.finishing.feet: IK straightens a leg no further than MAX_REACH, or than the plain
            # retarget holds it (near straight, a centimetre more reach is a knee snapping by 15
            # degrees in a frame), so a spot out of that reach lifts the foot a little.
            H, K = heads_w[f, hip], heads_w[f, knee]
            length = np.linalg.norm(K - H, axis=-1) + np.linalg.norm(free[f] - K, axis=-1)
            reach = np.maximum(MAX_REACH * length, np.linalg.norm(free[f] - H, axis=-1))
            swing, bend = cf.two_bone_ik(H, K, free[f], cf.within_reach(goal[f], H, reach), hinge)
            Ro = self._Ro
            target[hip] = target[hip].copy()
            target[knee] = target[knee].copy()
            target[hip][f] = Ro.T @ swing @ Ro @ target[hip][f]
            target[knee][f] = Ro.T @ swing @ bend @ Ro @ target[knee][f]
            changed = True
        return changed

    def _soles_above_floor(self, smpl, target, M, pos, shift, fps: float | None = None) -> bool:
        """Pitch each foot up about its ankle where the ball of the foot (its toe bone's head)
        would be lower than at rest plus SMPL's toe lift (as far as SMPL's toe is off its floor,
        scaled, up to the swing's TOE_CLEARANCE), and bend the toe up about the ball where its
        tip would go under the floor (or lower than at rest). Edits `target` in place; True where
        anything changed. The feet take the dance's orientation, which on a long foot with a
        high ankle (QA: ankle 25 cm up, ball 42 cm ahead) pointed the ball 6 cm and the toe's
        tip 11 cm under the floor, and swept them along it, where SMPL's short foot clears it.
        A toe pointing nearly straight down bends the way its foot faces, and with `fps` the bend
        is eased in and out over TOE_BEND_EASE_SECONDS (character_feet.eased_in_time; QA30: a
        toe under a foot on tiptoe flicked 40-79 degrees a frame)."""
        from . import character_feet as cf
        from ..finishing.feet import TOE_CLEARANCE   # torch-backed module: import late
        heads_w = self._floor_heads(pos, shift)
        O = self.rig.object_matrix[:3, :3]
        changed = False
        for side, (_, _, ankle, _, toe, toe_height) in self._legs.items():
            lift = self.scale * np.clip(smpl[:, JOINT_INDEX[f"{side}_foot"], 1] - SMPL_TOE_HEIGHT, 0.0, TOE_CLEARANCE)
            if toe < 0:
                # The sole's front is pitched up where it would go lower than at rest (QA: the toe
                # tips of Second Life and MakeHuman feet went 1.8 cm under their rest height).
                front, height = self._sole_fronts[side]
                tip = (M[:, ankle] @ front) @ O.T
                turn = cf.pitched_above(tip, heads_w[:, ankle, 2], height + lift)
                f = np.flatnonzero(np.abs(turn - np.eye(3)).max(axis=(1, 2)) > 1e-12)
                if len(f):
                    self._turn_foot(target, side, f, turn[f], None)
                    changed = True
                continue
            # The ball clears the floor as far as SMPL's toe does (scaled), up to a swing's
            # TOE_CLEARANCE: above that the dance's foot pitch stands (uncapped, QA's long foot
            # turned off the dance on 30% of frames, not 26%, for the same ball figures).
            A, B = heads_w[:, ankle], heads_w[:, toe]
            tip = (self.rig.lengths[toe] * M[:, toe, :, 1]) @ O.T             # ball -> toe's tip, world
            turn = cf.pitched_above(B - A, A[:, 2], toe_height + lift)
            B = A + np.einsum("tab,tb->ta", turn, B - A)
            tip = np.einsum("tab,tb->ta", turn, tip)
            # The tip only keeps off the floor: held up by SMPL's toe lift too, a foot of SMPL's
            # size bent its toes on 32% of frames (11% so), for no change to its ball.
            lowest = np.full(len(B), min(0.0, self._toe_tips[side]))
            bend = cf.pitched_above(tip, B[:, 2], lowest, steady=B - A)
            if fps is not None:
                bend = cf.eased_in_time(bend, int(round(cf.TOE_BEND_EASE_SECONDS * float(fps))))
                # The eased axis may leave a tip a little low where the bend was needed: lifted.
                bend = cf.pitched_above(np.einsum("tab,tb->ta", bend, tip), B[:, 2], lowest) @ bend
            f = np.flatnonzero(np.abs(bend @ turn - np.eye(3)).max(axis=(1, 2)) > 1e-12)
            if len(f):
                self._turn_foot(target, side, f, turn[f], bend[f])
                changed = True
        return changed

    def _turn_foot(self, target, side: str, frames: np.ndarray, turn: np.ndarray, toe_turn: np.ndarray) -> None:
        """Turn a leg's foot and toe by world rotations `turn` (N,3,3) about its ankle on `frames`
        (N,), the toe (if the leg has one) further by `toe_turn` (N,3,3) about its own head; edits
        `target` (armature-space rotations, the toe's not carried by the foot's) in place."""
        _, _, ankle, _, toe, _ = self._legs[side]
        Ro = self._Ro
        for b, t in ((ankle, turn),) + (((toe, toe_turn @ turn),) if toe >= 0 else ()):
            target[b] = target[b].copy()
            target[b][frames] = Ro.T @ t @ Ro @ target[b][frames]

    def _guard_leg_speeds(self, target, fps: float) -> None:
        """The engine's joint-speed guard (engine.finishing.turns.limit_joint_speeds, the SMPL
        joints' bounds from the training dancers) on the legs the planting re-solved: a landing
        foot's IK turned a character's shin 48 degrees in a frame where SMPL's knee turned 23
        (QA, a 3-minute song). Thigh and shin are eased together, in the frame of the pelvis
        bone; edits `target` in place."""
        from ..finishing.turns import limit_joint_speeds   # torch-backed module: import late
        pelvis = target[self.bone_of[0]]
        T = len(pelvis)
        poses = np.zeros((T, NUM_JOINTS, 3))
        sides = [side for side in ("left", "right") if side in self._legs]
        for side in sides:
            hip, knee = self._legs[side][:2]
            poses[:, JOINT_INDEX[f"{side}_hip"]] = matrix_to_axis_angle(np.swapaxes(pelvis, -1, -2) @ target[hip])
            poses[:, JOINT_INDEX[f"{side}_knee"]] = matrix_to_axis_angle(np.swapaxes(target[hip], -1, -2) @ target[knee])
        guarded, rebuilt = limit_joint_speeds(poses.reshape(T, -1), fps)
        if not rebuilt:
            return
        local = axis_angle_to_matrix(guarded.reshape(T, NUM_JOINTS, 3))
        for side in sides:
            hip, knee = self._legs[side][:2]
            target[hip] = pelvis @ local[:, JOINT_INDEX[f"{side}_hip"]]
            target[knee] = target[hip] @ local[:, JOINT_INDEX[f"{side}_knee"]]

    def _moved_by_root(self) -> list[bool]:
        """Per bone, whether the root bone's location carries it (it hangs under the root bone)."""
        parents = self.rig.effective_parents()
        return [is_ancestor(parents, self.root_bone, b) for b in range(len(parents))]

    def _posed(self, basis: np.ndarray, root_location: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """FK of the rig from every bone's basis rotation (T,B,3,3) and the root bone's basis
        location (T,3): (armature-space rotations M (T,B,3,3), heads pos (T,B,3))."""
        T, B = basis.shape[:2]
        M = np.empty((T, B, 3, 3))
        pos = np.empty((T, B, 3))
        for b in self._order:
            carried = self._carried(M, pos, b)
            if b == self.root_bone:
                pos[:, b] += np.einsum("tab,tb->ta", self._location_axes(M, b), root_location)
            M[:, b] = self._copied_rotation(M, carried @ basis[:, b], b)
            if b in self.rig.follows:
                M[:, b], pos[:, b] = M[:, self.rig.follows[b]], pos[:, self.rig.follows[b]]
        return M, pos

    def foot_points(self, rotations: np.ndarray, root_location: np.ndarray) -> np.ndarray:
        """(T,2,2,3) world positions of each leg's (left, right) ankle and toe bone heads, for the
        rig posed by basis rotations (T,B,4) of every bone and the root bone's basis location
        (T,3); NaN for a leg or a toe the map lacks."""
        rotations = np.asarray(rotations, np.float64)
        _, pos = self._posed(quat_to_matrix(rotations), np.asarray(root_location, np.float64))
        out = np.full((len(rotations), 2, 2, 3), np.nan)
        for col, side in enumerate(("left", "right")):
            for k, joint in enumerate(("ankle", "foot")):
                b = self.bone_of[JOINT_INDEX[f"{side}_{joint}"]]
                if b >= 0:
                    out[:, col, k] = self.rig.to_world(pos[:, b])
        return out

    # -- rig -> SMPL

    def from_rig(self, rotations: np.ndarray, root_location: np.ndarray, bone_keyed: np.ndarray,
                 location_keyed: np.ndarray | None = None):
        """The animator's pose-space keys -> (poses (T,72), trans (T,3), joint_mask (T,24), trans_mask (T,)).

        rotations (T,B,4) wxyz basis rotations of every bone (as evaluated: unkeyed bones as they
        stand), root_location (T,3) the root bone's basis location, bone_keyed (T,B) which bones
        carry a rotation key on each frame, location_keyed (T,) the root bone's location keys
        (default: bone_keyed of the root bone). Joints whose bone (or a bone sharing its chain)
        is keyed are masked in; the unmapped joints get the identity, masked in on a key's frame
        where they lie between its joint and the nearest mapped ancestor, else masked out.
        """
        B = len(self.rig.names)
        rotations = np.asarray(rotations, np.float64)
        T = rotations.shape[0]
        root_location = np.asarray(root_location, np.float64)
        bone_keyed = np.asarray(bone_keyed, bool)
        if rotations.shape != (T, B, 4) or root_location.shape != (T, 3) or bone_keyed.shape != (T, B):
            raise RetargetError(f"from_rig needs rotations (T,{B},4), root_location (T,3) and bone_keyed (T,{B}); got "
                                f"{rotations.shape}, {root_location.shape}, {bone_keyed.shape}")
        M, pos = self._posed(quat_to_matrix(rotations), root_location)
        G = np.broadcast_to(np.eye(3), (T, NUM_JOINTS, 3, 3)).copy()
        for b, j in self.joint_of.items():
            G[:, j] = self._D.T @ self._Ro @ M[:, b] @ self._Q[b].T @ self._D
        local = np.broadcast_to(np.eye(3), (T, NUM_JOINTS, 3, 3)).copy()
        for j, b in enumerate(self.bone_of):
            if b < 0:
                continue
            a = PARENTS[j]
            while a >= 0 and self.bone_of[a] < 0:
                a = PARENTS[a]
            local[:, j] = G[:, j] if a < 0 else np.swapaxes(G[:, a], -1, -2) @ G[:, j]
        poses = matrix_to_axis_angle(local).reshape(T, NUM_JOINTS * 3)
        world = self.rig.to_world(pos[:, self.bone_of[0]])
        trans = (world - self.frame[:3, 3]) @ self._D / self.scale - G[:, 0] @ self._delta
        joint_mask = np.zeros((T, NUM_JOINTS), bool)
        for j, b in enumerate(self.bone_of):
            if b >= 0:
                joint_mask[:, j] = bone_keyed[:, b]
        for k, (_, c, _, _) in self._share.items():
            joint_mask[:, self.joint_of[c]] |= bone_keyed[:, k]
        # A key also fixes the joints the character has no bone for between its joint and the
        # nearest mapped ancestor (SMPL's spine1 under Rigify's spine_fk.002): its rotation was read
        # with them at the identity, so the dance must hold them there on the key's frame, or the
        # retarget back puts the dance's own bend on the keyed bone everywhere but on the key
        # (QA: Rigify's spine snapped 12 degrees for one frame at every full-pose key).
        for j, b in enumerate(self.bone_of):
            if b < 0:
                continue
            a = PARENTS[j]
            while a >= 0 and self.bone_of[a] < 0:
                joint_mask[:, a] |= joint_mask[:, j]
                a = PARENTS[a]
        trans_mask = bone_keyed[:, self.root_bone] if location_keyed is None else np.asarray(location_keyed, bool)
        return poses, trans, joint_mask, trans_mask.copy()


def join_to_context(quats: np.ndarray, loc: np.ndarray, rows: np.ndarray, context_quats: np.ndarray,
                    context_loc: np.ndarray, rotations_held: np.ndarray, location_held: np.ndarray,
                    fade: int) -> tuple[np.ndarray, np.ndarray]:
    """A regenerated range of a rig pose bent to meet the dance around it: (quats (R,B,4), loc (R,3))
    for the frames `rows` (consecutive) of the retargeted quats (T,B,4) and root loc (T,3).

    The frames just outside the range where `rotations_held` (T,) (and `location_held` (T,)) are
    the old dance's (`context_quats`, `context_loc`) give the offsets: the rotation taking the new
    value to the old one, and the location difference. Inside the range the offsets are
    interpolated from edge to edge, each fading to nothing `fade` frames in where the range is
    longer than two fades, as the engine's key offsets are (engine.finishing.editing). Needed
    because the retarget plants a range's feet on spots of its own, which can lie centimetres
    (30 cm measured) from where the old dance has them at a join."""
    from ..body.curves import dip_knots, offset_curve   # scipy: imported late (the rig panel runs without it)
    T, B = quats.shape[:2]
    fade = max(1, int(fade))
    edges, values = [], []
    for edge in (rows[0] - 1, rows[-1] + 1):
        if not (0 <= edge < min(T, len(rotations_held)) and rotations_held[edge]):
            continue
        turn = quat_to_matrix(context_quats[edge]) @ np.swapaxes(quat_to_matrix(quats[edge]), -1, -2)
        shift = context_loc[edge] - loc[edge] if location_held[edge] else np.zeros(3)
        edges.append(edge)
        values.append(np.concatenate([matrix_to_axis_angle(turn).ravel(), shift]))
    if not edges:
        return quats[rows], loc[rows]
    # As the engine's root height keys: each offset fades to nothing `fade` frames in, unless the
    # other edge is nearer than two fades (then the two are interpolated edge to edge).
    curve = offset_curve(*dip_knots(edges, np.asarray(values), fade), T, fade)[rows]
    turns = axis_angle_to_matrix(curve[:, :3 * B].reshape(len(rows), B, 3))
    return matrix_to_quat(turns @ quat_to_matrix(quats[rows])), loc[rows] + curve[:, 3 * B:]


def onto_given_poses(quats: np.ndarray, loc: np.ndarray, bones, held: np.ndarray, root_held: np.ndarray,
                     given_quats: np.ndarray, given_loc: np.ndarray, fade: int) -> tuple[np.ndarray, np.ndarray]:
    """A rig pose (quats (T,B,4), root loc (T,3)) bent to meet the values written as they are
    (the animator's keys, a held start pose): each of `bones` gets, on every frame where `held`
    (T,B) marks it, the rotation taking its retargeted value to `given_quats` (T,B,4), and the root
    the shift to `given_loc` (T,3) where `root_held` (T,); between and around them the offsets
    fade to nothing over `fade` frames (as the engine's root height keys, dip_knots). The round
    trip through SMPL and the character's own feet is not exact: written over the retargeted
    dance at its frame alone, a Rigify start pose held before the song had its thigh turn 11
    degrees and its toe move 16 cm in the dance's next frame (QA)."""
    from ..body.curves import dip_knots, offset_curve, unwrapped_rotation_vectors   # scipy: imported late
    quats, loc = np.array(quats, np.float64), np.array(loc, np.float64)
    T = len(quats)
    fade = max(1, int(fade))
    for b in bones:
        k = np.flatnonzero(held[:, b])
        if not len(k) or len(k) == T:
            continue
        turn = quat_to_matrix(given_quats[k, b]) @ np.swapaxes(quat_to_matrix(quats[k, b]), -1, -2)
        curve = offset_curve(*dip_knots(k, unwrapped_rotation_vectors(matrix_to_axis_angle(turn)), fade), T, fade)
        quats[:, b] = matrix_to_quat(axis_angle_to_matrix(curve) @ quat_to_matrix(quats[:, b]))
    k = np.flatnonzero(root_held)
    if 0 < len(k) < T:
        loc += offset_curve(*dip_knots(k, given_loc[k] - loc[k], fade), T, fade)
    return quats, loc


def smpl_positions(G: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(T,24,3) SMPL joint positions (Y up, metres) from global rotations (T,24,3,3) and the root path."""
    pos = np.empty(G.shape[:2] + (3,))
    pos[:, 0] = trans
    for j in range(1, NUM_JOINTS):
        pos[:, j] = pos[:, PARENTS[j]] + G[:, PARENTS[j]] @ REST_OFFSETS[j]
    return pos


def _check_motion(poses, trans) -> tuple[np.ndarray, np.ndarray]:
    poses, trans = np.asarray(poses, np.float64), np.asarray(trans, np.float64)
    T = len(poses)
    if poses.shape != (T, NUM_JOINTS * 3) or trans.shape != (T, 3):
        raise RetargetError(f"retargeting needs poses (T,{NUM_JOINTS * 3}) and trans (T,3), "
                            f"got {poses.shape} and {trans.shape}")
    if not (np.isfinite(poses).all() and np.isfinite(trans).all()):
        raise RetargetError("retargeting: the motion holds NaN or infinite values")
    return poses, trans


# ----------------------------------------------------------------------------- other skeletons' BVH

def bvh_rig(skeleton, up_axis: str = "Y") -> Rig:
    """A Rig standing for a BVH skeleton (engine.outputs.bvh.read_bvh_skeleton): one bone per joint, its
    head on the joint, +Y towards its first child (a leaf: its End Site), the file's axes turned
    to Blender's Z up by the object matrix."""
    offsets = np.asarray(skeleton.offsets, np.float64)
    J = len(offsets)
    heads = offsets.copy()
    for j, p in enumerate(skeleton.parents):
        if p >= 0:
            heads[j] = heads[p] + offsets[j]
    rest = np.broadcast_to(np.eye(4), (J, 4, 4)).copy()
    lengths = np.zeros(J)
    for j in range(J):
        kids = [k for k, p in enumerate(skeleton.parents) if p == j and np.linalg.norm(offsets[k]) > 0]
        tip = offsets[kids[0]] if kids else skeleton.end_sites[j]
        if not np.all(np.isfinite(tip)) or np.linalg.norm(tip) == 0:
            tip = np.array([0.0, 1e-3, 0.0])
        rest[j, :3, :3] = align(np.array([0.0, 1.0, 0.0]), tip)
        rest[j, :3, 3] = heads[j]
        lengths[j] = np.linalg.norm(tip)
    obj = np.eye(4)
    up = str(up_axis).upper()
    if up not in ("Y", "Z"):
        raise RetargetError(f"BVH up axis must be 'Y' or 'Z', got {up_axis!r}")
    obj[:3, :3] = Y_TO_Z if up == "Y" else np.eye(3)
    return Rig(list(skeleton.names), list(skeleton.parents), rest, lengths, [True] * J, obj)


def bvh_pose(skeleton, rig: Rig, root_bone: int) -> tuple[np.ndarray, np.ndarray]:
    """The BVH's frames as the rig's basis rotations (T,J,4) and root_bone's basis location (T,3).

    A BVH joint's local rotation r acts in the file's axes, the bone's rest rotation is A, so its
    basis is A^T r A; the root's position p becomes the location A^T (p - head)."""
    A = rig.rest[:, :3, :3]
    basis = np.swapaxes(A, -1, -2)[None] @ skeleton.rotations @ A[None]
    if rig.parents[root_bone] >= 0:
        raise RetargetError(f"the BVH's root joint is {rig.names[rig.parents.index(-1)]!r}, "
                            f"not the pelvis's {rig.names[root_bone]!r}")
    axes = location_axes(rig.local_location[root_bone], A[root_bone])
    location = (np.asarray(skeleton.root_position) - rig.rest[root_bone, :3, 3]) @ axes
    return matrix_to_quat(basis), location


def bvh_to_smpl(path, bone_map: BoneMap | None = None, up_axis: str = "Y"):
    """Any humanoid BVH -> (poses (T,72), trans (T,3) Y-up metres, frame_time): SMPL's limbs
    point where the file's limbs point, the root path scaled by leg length. bone_map: SMPL joint
    -> BVH joint name (default: found as for an armature)."""
    from .bvh import read_bvh_skeleton      # torch-backed reader; this module stays numpy-only
    skeleton = read_bvh_skeleton(path)
    rig = bvh_rig(skeleton, up_axis)
    bone_map = auto_map(rig) if bone_map is None else bone_map
    ret = Retargeter(rig, bone_map)
    rotations, location = bvh_pose(skeleton, rig, ret.root_bone)
    poses, trans, _, _ = ret.from_rig(rotations, location, np.ones(rotations.shape[:2], bool))
    return poses, trans, skeleton.frame_time
