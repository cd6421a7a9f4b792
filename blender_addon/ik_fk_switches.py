"""A rig's IK/FK switches in the takes: FK over the dance, the animator's beside it, and put back.

A take dances a rig's FK controls, so it keys the rig's switches (IK_FK_SWITCHES) to FK over its
dance. The animator's own switches are remembered on the object (SWITCHES_KEY) when a dance first
replaces their action, and restore_switches puts them back (the Takes list). Beside the dance a
limb keeps the animator's switch where their animation plays and the dance leads from it or ends
in it (key_switches); elsewhere it stays on FK, and the poses keyed on its IK controls there are
keyed on the FK controls as the rig shows them (ik_poses_after).
"""
from __future__ import annotations

import json
import math

import numpy as np

from . import blender_compat as compat
from . import keys as key_io
from . import rigify_ik, takes

# IK/FK switches the add-on keys to FK in each take it writes, so the deforming bones follow the
# FK controls it animates: custom properties that Rigify's generated rig puts on thigh_parent.L,
# upper_arm_parent.L, ... (IK_FK) and Auto-Rig Pro's on c_foot_ik.l, c_hand_ik.l, ...
# (ik_fk_switch), both 1 on FK. Rigify's torso's neck_follow and head_follow stay the animator's:
# the Copy Rotations they drive are part of the maths (rig_io.read_rig, Rig.copies_rotation).
IK_FK_SWITCHES = {rigify_ik.SWITCH: 1.0, "ik_fk_switch": 1.0}
SWITCHES_KEY = "dance_rig_switches_json"   # object: JSON {"bone|property": value} as the animator had them
LEGACY_SWITCHES_KEY = "dance_rig_switches"  # the same as a custom property dict (older files)


def switches_now(obj) -> dict[str, float]:
    """{"bone|property": value} of the rig's IK/FK switches (IK_FK_SWITCHES) as they stand."""
    return {f"{pb.name}|{prop}": float(pb[prop]) for pb in obj.pose.bones for prop in IK_FK_SWITCHES
            if prop in pb.keys()}


def remember_switches(obj) -> None:
    """Record the rig's IK/FK switches as the animator has them now (restore_switches puts them back)."""
    found = switches_now(obj)
    if found:
        takes.keep_state(obj, SWITCHES_KEY, json.dumps(found))    # registered: an override saves it


def remembered_switches(obj) -> dict[str, float]:
    """The switches remember_switches recorded on `obj` ({} if none)."""
    text = takes.read_state(obj, SWITCHES_KEY)
    if isinstance(text, str) and text:
        try:
            return {str(k): float(v) for k, v in json.loads(text).items()}
        except (ValueError, AttributeError):
            return {}
    legacy = obj.get(LEGACY_SWITCHES_KEY)
    return {str(k): float(v) for k, v in legacy.items()} if hasattr(legacy, "items") else {}


def restore_switches(obj) -> None:
    """Back on the animator's own action: the rig's IK/FK switches as they had them before the first
    dance (an animated property keeps its last evaluated value when no action animates it)."""
    for key, value in remembered_switches(obj).items():
        bone, _, prop = key.partition("|")
        pb = obj.pose.bones.get(bone)
        if pb is not None and prop in pb.keys():
            pb[prop] = value


def animators_rigify_switches(obj) -> dict[str, float]:
    """{switch bone: IK_FK} as the animator had them (remembered_switches), where the current
    action is a take (which keys them FK over its dance); {} on the animator's own action."""
    ad = obj.animation_data
    if ad is None or not takes.is_take(ad.action):
        return {}
    return {key.partition("|")[0]: value for key, value in remembered_switches(obj).items()
            if key.partition("|")[2] == rigify_ik.SWITCH}


def key_switches(obj, action, frames: np.ndarray, beside=(False, False), whole: bool = True) -> None:
    """Key the rig's IK/FK switches (IK_FK_SWITCHES) to FK over the danced frames, in
    the take only: the animator's own action keeps whatever they had. On a side of the dance
    where their animation plays (`beside`: before, after) the take keeps the switch as they had
    it (_switch_beside), switching on the frame next to the dance (QA: an intro keyed on IK played
    on FK, the hand 73 cm off); elsewhere the dance's first (last) pose is held there on FK, as it
    is on every rig (on IK, a dance that travelled left the limbs stretching back to their
    targets: 2.9x, 47 m/s), and for a `whole` dance their switch keys on that side are dropped
    (poses they keyed on IK there are keyed on FK: ik_poses_after). A switch curve muted in their
    action never played: the take drops it (kept muted, the FK keys would not play either: QA, an
    arm left on IK, 134 degrees off)."""
    if not len(frames):
        return
    fcurves, _ = compat.ensure_channels(obj, action)
    generated = compat.generated_key_type()[0]
    theirs = remembered_switches(obj)
    first, last = float(frames[0]), float(frames[-1])
    for pb in obj.pose.bones:
        for prop, value in IK_FK_SWITCHES.items():
            if prop not in pb.keys():
                continue
            path = key_io.bone_property_path(pb.name, prop)
            fc = fcurves.find(path)
            if fc is not None and fc.mute:
                fcurves.remove(fc)
                fc = None
            fc = fc or fcurves.new(path)
            own = theirs.get(f"{pb.name}|{prop}", float(pb[prop]))
            keys = [(first, value, 'CONSTANT'), (last, value, 'CONSTANT')]
            for edge, step, shown in ((first - 1.0, -1.0, beside[0]), (last + 1.0, 1.0, beside[1])):
                at, played = _switch_beside(fc, edge, step, own)
                if shown and np.abs(played - value).max() > 1e-6:
                    keys += [(f, v, 'CONSTANT' if f == first - 1.0 else 'LINEAR') for f, v in zip(at, played)]
            keyed_at = [f for f, _, _ in keys]

            def ours(x: float) -> bool:
                unshown = whole and ((x < first and not beside[0]) or (x > last and not beside[1]))
                return unshown or first - 1e-3 <= x <= last + 1e-3 or any(abs(x - f) < 1e-3 for f in keyed_at)
            for k in reversed(list(fc.keyframe_points)):   # their keys stay but where ours go
                if ours(k.co[0]):
                    fc.keyframe_points.remove(k)
            # keyframe_points.add, not insert: Blender 4.2.0's insert skips (and returns None for)
            # a key that leaves a flat curve unchanged, and the span needs both ends keyed.
            points = fc.keyframe_points
            points.add(len(keys))
            for k, (f, v, interpolation) in zip(list(points)[-len(keys):], keys):
                k.co = k.handle_left = k.handle_right = (f, v)
                k.type, k.interpolation = generated, interpolation
            fc.update()


def _switch_beside(fc, edge: float, step: float, own: float) -> tuple[np.ndarray, np.ndarray]:
    """(frames, values): the animator's switch beside the dance, from the frame next to it
    (`edge`) on to their nearest key on that side (`step` -1: before the dance, +1: after), on
    every whole frame as their curve plays it, so that their switch's move there stays theirs
    whatever its interpolation (QA: an Elastic key re-drawn 0.17 off, the arm 12 degrees; a
    linear ramp held constant, 0.3 off); just `edge` where it is flat there or not animated
    (`own`: their value)."""
    x = np.array([k.co[0] for k in fc.keyframe_points])
    if not len(x):
        return np.array([edge]), np.array([own])
    beyond = x[x <= edge + 1e-3] if step < 0 else x[x >= edge - 1e-3]
    stop = (beyond.max() if step < 0 else beyond.min()) if len(beyond) else edge
    at = np.arange(edge, stop, step) if abs(stop - edge) > 1e-3 else np.array([edge])
    played = np.array([fc.evaluate(float(f)) for f in at])
    if np.ptp(played) < 1e-6:
        return at[:1], played[:1]
    return (at[::-1], played[::-1]) if step < 0 else (at, played)


def unkeyed_fk_values(obj, bone_map: dict[str, str]) -> dict[str, dict[str, np.ndarray]]:
    """{switch bone: {FK control: basis quaternion (w,x,y,z)}} as they stand, for the FK controls
    of Rigify limbs that the current action does not animate (read before a take replaces it)."""
    ad = obj.animation_data
    animated = {bone for bone, _ in key_io.animator_keys(obj, -np.inf, np.inf, ad.action)} \
        if ad is not None and ad.action is not None else set()
    out = {}
    for limb in rigify_ik.limbs(obj, bone_map):
        values = {bone: np.array(obj.pose.bones[bone].matrix_basis.to_quaternion(), np.float64)
                  for bone in limb.fk_controls if bone not in animated}
        if values:
            out[limb.switch] = values
    return out


def hold_unkeyed_fk_beside(obj, action, frames: np.ndarray, beside, unkeyed: dict) -> None:
    """Beside the dance where the animator's animation plays (`beside`) and a Rigify limb is
    partly on IK there (0 < IK_FK < 1: it shows a blend of its IK and FK chains), key its FK
    controls that the animator never animated (`unkeyed`, unkeyed_fk_values) on the frame next
    to the dance as they stood, as the animator's keys: the take's FK curves, the dance's, held
    its end there instead (QA: 4-16 degrees off an intro at IK_FK 0.5)."""
    if not len(frames) or not unkeyed:
        return
    for edge, shown in ((float(frames[0]) - 1.0, beside[0]), (float(frames[-1]) + 1.0, beside[1])):
        if not shown:
            continue
        for switch, values in unkeyed.items():
            blend = rigify_ik.switch_values(obj, switch, [edge], action)[0]
            if 1e-6 < blend < rigify_ik.ON_FK:
                key_as_theirs(obj, action, {(bone, edge): q for bone, q in values.items()})


def ik_poses_after(obj, bone_map: dict[str, str], last: float, root: str) -> dict[tuple[str, int], np.ndarray]:
    """{(FK control, frame): basis quaternion}: the poses a Rigify limb on IK shows after the
    dance's `last` frame where the animator keyed its IK controls, or placed the body (keyed the
    `root` bone: the IK feet stay where they stood, the legs bend to them), as the rig shows
    them, for a take that holds its limbs on FK there (key_switches). Played on IK, they would be
    reached for from where the dance travelled, by limbs stretched to targets placed from the
    rig's root; not played, the take held the dance's end instead (QA: the hand 33 cm off an
    outro keyed 3 s after the song, on the body, and their switch key there put it on IK, 2.3 m
    off; a torso keyed alone left the feet 27-50 cm off their planted places, under the floor)."""
    start = math.floor(last) + 1
    placed = {f for (bone, _), frames in key_io.animator_keys(obj, start, np.inf).items()
              if bone == root for f in frames}
    wanted = rigify_ik.ik_keyed(obj, bone_map, start, np.inf, placed=placed)
    return rigify_ik.shown_as_fk(obj, bone_map, wanted) if wanted else {}


def key_as_theirs(obj, action, poses: dict[tuple[str, float], np.ndarray]) -> None:
    """Key `poses` ({(bone, frame): basis quaternion}) in the take as the animator's own keys."""
    by_frame: dict[float, dict[str, np.ndarray]] = {}
    for (bone, frame), q in poses.items():
        by_frame.setdefault(frame, {})[bone] = q
    for frame, values in sorted(by_frame.items()):
        names = list(values)
        key_io.write_bone_rotations(obj, action, names, np.array([float(frame)]),
                                    np.array([[values[n] for n in names]]), kept=np.ones((1, len(names)), bool))
