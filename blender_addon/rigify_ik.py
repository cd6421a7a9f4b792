"""Poses an animator shows on a Rigify rig's IK limbs, read as the FK controls' values.

The add-on dances a Rigify rig through its FK controls (the rigify bone map) and reads the
animator's keys from their F-curves. A freshly generated Rigify rig has every limb on IK
(IK_FK 0), so an animator's poses are often keyed on hand_ik.L, foot_ik.R and their poles, where
the FK controls' F-curves say nothing of them (QA: the hand 105 cm off its keyed pose). Here a
limb on IK is read as it shows: the limb's ORG bones are what the rig displays, and the FK
values that show the same are found the way Rigify's own IK->FK snap finds them (each FK control
placed on its ORG bone, parent first). Only Rigify's names are known here: the bone carrying
the switch and the IK controls' prefixes (RIGIFY_LIMBS); the FK controls are the bone map's.
"""
from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix

from . import blender_compat as compat
from . import keys as key_io
from engine.body.skeleton import JOINT_NAMES

SWITCH = "IK_FK"                     # Rigify's IK/FK blend on a limb's parent bone: 0 IK, 1 FK
ON_FK = 1.0 - 1e-6                   # a limb whose switch is at least this shows its FK controls
# The bone carrying a limb's switch (by name prefix; the side suffix, ".L", follows) and the
# prefixes of the IK controls that pose that limb (with the same suffix).
RIGIFY_LIMBS = {"upper_arm_parent": ("upper_arm_ik", "upper_arm_ik_target", "hand_ik"),
                "thigh_parent": ("thigh_ik", "thigh_ik_target", "foot_ik", "foot_heel_ik", "foot_spin_ik", "toe_ik")}
ORG_PREFIX = "ORG-"                  # Rigify's original bones: the limb as the rig shows it


@dataclass
class Limb:
    switch: str                      # the bone carrying IK_FK (upper_arm_parent.L)
    ik_controls: list[str]           # the IK controls that pose it (hand_ik.L, upper_arm_ik_target.L, ...)
    fk_controls: list[str]           # the mapped FK controls it moves, parents first
    shown_by: list[str]              # the ORG bone that shows each FK control


def _shown_by(obj, fk: str) -> str | None:
    """The ORG bone an FK control stands for (upper_arm_fk.L -> ORG-upper_arm.L), if the rig has it."""
    name = ORG_PREFIX + fk.replace("_fk", "")
    return name if name in obj.data.bones else None


def limbs(obj, bone_map: dict[str, str]) -> list[Limb]:
    """The rig's Rigify limbs whose FK controls the bone map drives ([] for any other rig)."""
    bones = obj.data.bones
    found = []
    for pb in obj.pose.bones:
        if SWITCH not in pb.keys():
            continue
        for prefix, ik_prefixes in RIGIFY_LIMBS.items():
            if not pb.name.startswith(prefix):
                continue
            suffix = pb.name[len(prefix):]
            top = bones.get(ORG_PREFIX + prefix.replace("_parent", "") + suffix)
            if top is None:
                continue
            fk, shown = [], []
            for joint in JOINT_NAMES:                    # SMPL's order: parents first
                bone = bone_map.get(joint)
                org = _shown_by(obj, bone) if bone else None
                if org is not None and bone in obj.pose.bones and (org == top.name or top in bones[org].parent_recursive):
                    fk.append(bone)
                    shown.append(org)
            ik = [p + suffix for p in ik_prefixes if p + suffix in obj.pose.bones]
            if fk and ik:
                found.append(Limb(pb.name, ik, fk, shown))
    return found


def switch_values(obj, switch: str, frames, action) -> np.ndarray:
    """The IK_FK of the bone `switch` on each of `frames` as `action` animates it (else as it stands)."""
    path = key_io.bone_property_path(switch, SWITCH)
    fc = next((fc for fc in compat.action_fcurves(action, compat.object_slot(obj, action))
               if fc.data_path == path and not fc.mute), None) if action is not None else None
    if fc is None:
        return np.full(len(frames), float(obj.pose.bones[switch][SWITCH]))
    return np.array([fc.evaluate(float(f)) for f in frames])


def on_ik(obj, limb: Limb, frames, action) -> list:
    """Those of `frames` on which `limb` shows its IK chain, wholly or in part (IK_FK below ON_FK)."""
    frames = list(frames)
    return [f for f, v in zip(frames, switch_values(obj, limb.switch, frames, action)) if v < ON_FK]


def ik_keyed(obj, bone_map: dict[str, str] | None, frame_start: float, frame_end: float,
             action=None, placed=()) -> dict[str, list[int]]:
    """{FK control: frames} within the range where the animator keyed one of its limb's IK
    controls while the limb is on IK: poses the dance is to meet there as the rig shows them
    ({} for the SMPL dancer, `bone_map` None). `placed`: frames where a limb on IK counts as
    keyed whatever its IK controls (the body placed there: its IK feet stay where they stood)."""
    ad = obj.animation_data
    action = action if action is not None else (ad.action if ad is not None else None)
    if action is None or bone_map is None:
        return {}
    found = limbs(obj, bone_map)
    if not found:
        return {}
    keyed = key_io.animator_keys(obj, frame_start, frame_end, action)
    out: dict[str, list[int]] = {}
    for limb in found:
        frames = sorted({f for (bone, _), fs in keyed.items() if bone in limb.ik_controls for f in fs} | set(placed))
        shown = on_ik(obj, limb, frames, action) if frames else []
        for bone in limb.fk_controls if shown else ():
            out[bone] = sorted(set(out.get(bone, [])) | set(shown))
    return out


def shown_as_fk(obj, bone_map: dict[str, str], wanted: dict[str, list[int]], scene=None,
                theirs: dict[str, float] | None = None, as_theirs=()) -> dict[tuple[str, int], np.ndarray]:
    """{(FK control, frame): basis quaternion (w,x,y,z)} that shows on FK what the rig shows on
    that frame, for the FK controls and frames `wanted` whose limb is on IK there (evaluated:
    frame_set, the playhead put back). On the frames `as_theirs` the switches are first set as
    the animator had them (`theirs`: {switch bone: IK_FK}): a take keys them FK on its dance's
    frames, where a dance again on it reads the animator's own pose (QA: led from an IK intro,
    a second take started from the FK controls' rest, 16 cm off). The controls' own values, and
    the switches, are put back as they were."""
    scene = scene or bpy.context.scene
    by_frame: dict[int, set[str]] = {}
    for bone, frames in wanted.items():
        for f in frames:
            by_frame.setdefault(int(f), set()).add(bone)
    found = limbs(obj, bone_map)
    if not by_frame or not found:
        return {}
    pbs = obj.pose.bones
    saved_frame = scene.frame_current, scene.frame_subframe
    out = {}
    computed = None                  # whether _fk_computed agrees with _fk_placed on this rig
    switches = {limb.switch: pbs[limb.switch][SWITCH] for limb in found}
    try:
        for f in sorted(by_frame):
            scene.frame_set(f)
            if f in as_theirs and theirs:
                for bone, value in theirs.items():
                    if bone in switches:
                        pbs[bone][SWITCH] = value
                bpy.context.view_layer.update()
            shown = [limb for limb in found
                     if float(pbs[limb.switch][SWITCH]) < ON_FK and by_frame[f] & set(limb.fk_controls)]
            if not shown:
                continue
            targets = {fk: Matrix(_place_on(obj, fk, org))
                       for limb in shown for fk, org in zip(limb.fk_controls, limb.shown_by)}
            # Placing the controls costs the rig's evaluations (Keep arms and legs on a rig on IK:
            # 151 s for a 30-s song); computed, none. Computed once the two agree on this rig.
            if computed is None:
                turns = _fk_placed(obj, shown, targets)
                computed = _same_turns(turns, _fk_computed(obj, shown, targets))
            else:
                turns = (_fk_computed if computed else _fk_placed)(obj, shown, targets)
            out.update({(fk, f): q for fk, q in turns.items() if fk in by_frame[f]})
    finally:
        for bone, value in switches.items():       # (an animated switch is evaluated again below)
            pbs[bone][SWITCH] = value
        scene.frame_set(saved_frame[0], subframe=saved_frame[1])
    return out


def _fk_placed(obj, shown: list[Limb], targets: dict[str, Matrix]) -> dict[str, np.ndarray]:
    """{FK control: basis quaternion} that puts each FK control of the limbs `shown` on its
    target (armature space), found as Rigify's snap does: each placed, parents first, the rig
    evaluated in between (one evaluation per depth: the limbs side by side), the controls' own
    values put back afterwards."""
    pbs = obj.pose.bones
    channels = ("location", "rotation_quaternion", "rotation_euler", "rotation_axis_angle", "scale")
    saved = {fk: {c: tuple(getattr(pbs[fk], c)) for c in channels} for fk in targets}
    out = {}
    try:
        depth = max(len(limb.fk_controls) for limb in shown)
        for level in range(depth):
            placed = [limb.fk_controls[level] for limb in shown if level < len(limb.fk_controls)]
            for fk in placed:
                pbs[fk].matrix = targets[fk]       # its parent (an FK control above it) is placed already
                out[fk] = _rotation_of(pbs[fk].matrix_basis)
            if level < depth - 1:
                bpy.context.view_layer.update()    # the next depth's parents where they were just placed
    finally:
        for fk, values in saved.items():
            for c, v in values.items():
                setattr(pbs[fk], c, v)
    return out


def _fk_computed(obj, shown: list[Limb], targets: dict[str, Matrix]) -> dict[str, np.ndarray]:
    """_fk_placed without evaluating the rig: each FK control's parent where placing the FK
    control above it would put it (carried rigidly, as the rig holds it now, from that control;
    Rigify's MCH bones between them) and Blender's own pose -> local conversion (inherit scale
    and all). The same to 2e-7 on a Rigify rig; shown_as_fk checks that on each rig it reads."""
    pbs = obj.pose.bones
    out = {}
    for limb in shown:
        for i, fk in enumerate(limb.fk_controls):
            pb, parent = pbs[fk], pbs[fk].parent
            above = next((a for a in reversed(limb.fk_controls[:i]) if pbs[a] in pb.parent_recursive), None)
            if parent is None:
                basis = pb.bone.convert_local_to_pose(targets[fk], pb.bone.matrix_local, invert=True)
            else:
                parent_pose = parent.matrix if above is None else \
                    targets[above] @ (pbs[above].matrix.inverted() @ parent.matrix)
                basis = pb.bone.convert_local_to_pose(targets[fk], pb.bone.matrix_local, parent_matrix=parent_pose,
                                                      parent_matrix_local=parent.bone.matrix_local, invert=True)
            out[fk] = _rotation_of(basis)
    return out


def _rotation_of(basis: Matrix) -> np.ndarray:
    """A basis matrix's rotation as a quaternion (w,x,y,z), its scale taken out."""
    return np.array(basis.to_3x3().normalized().to_quaternion(), np.float64)


def _same_turns(a: dict[str, np.ndarray], b: dict[str, np.ndarray], tolerance: float = 1e-5) -> bool:
    return a.keys() == b.keys() and all(min(np.abs(a[k] - b[k]).max(), np.abs(a[k] + b[k]).max()) < tolerance
                                        for k in a)


def _place_on(obj, fk: str, org: str) -> np.ndarray:
    """The FK control's pose matrix (armature space) that puts it where the ORG bone shows now,
    as the two stand to each other at rest."""
    bones = obj.data.bones
    shown = np.array(obj.pose.bones[org].matrix, np.float64)
    return shown @ np.linalg.inv(np.array(bones[org].matrix_local, np.float64)) @ np.array(bones[fk].matrix_local, np.float64)
