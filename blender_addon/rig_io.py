"""Dancing on the animator's own character: any humanoid armature (Mixamo, Rigify, VRM, ...).

The maths (bone mapping, rest alignment, chains, leg scaling, the inverse) lives in
engine.outputs.retarget and needs no bpy; this module only moves data between Blender and it:
- read_rig(obj, bone_map, frame): the armature's rest pose as an engine Rig, placed in the world
  as on scene frame `frame` (world_matrix).
- character_bone_map(obj, path): which bone plays which SMPL joint (a JSON file, else the map
  the Dance panel stored on the armature, else the automatic one).
- read_character_constraints(...): the animator's keys on THEIR bones -> SMPL Constraints
  (Retargeter.from_rig), plus the exact values to carry over (CharacterKeys).
- write_character_dance(...): the SMPL dance -> keys on their bones (Retargeter.to_rig), written
  with keys.write_bone_rotations into a COPY of their current action, so bones that no joint
  drives (fingers, face, tail, props) keep their animation, keys outside the danced frames
  stay, rotation modes never change, and the previous action is kept untouched. Animated
  bones that would bend the dance from above (Rigify's hips and chest controls) rest while it
  plays, and IK/FK switches (Rigify's, Auto-Rig Pro's) are keyed to FK in the take.
The SMPL dancer (scene_io.is_smpl_armature) keeps its own, direct path in scene_io.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import bpy
import numpy as np

from . import _engine_path  # noqa: F401  (puts `engine` on sys.path)
from . import blender_compat as compat
from . import keys as key_io
from . import ik_fk_switches, rigify_ik, scene_io, takes
from .rig_ui import MAP_PROPERTY   # the armature's collection property holding the panel's mapping
# ROOT_KEY: the map's entry for the bone that carries the travel
from engine.outputs.bone_mapping import ROOT_KEY, root_bone_name, with_movable_root
from engine.errors import EngineError
from engine.body.motion import Constraints, Motion
from engine.outputs.retarget import (Retargeter, Rig, auto_map, check_bone_map, join_to_context, list_presets, load_bone_map,
                             load_preset, onto_given_poses)
from engine.body.skeleton import JOINT_NAMES, joint_indices
# --- Reading the character ------------------------------------------------------------------

def is_character(obj) -> bool:
    """An armature the add-on dances through retargeting (every armature but its SMPL dancer)."""
    return obj is not None and obj.type == 'ARMATURE' and not scene_io.is_smpl_armature(obj)


def world_matrix(obj, frame: float | None = None) -> np.ndarray:
    """`obj`'s world matrix (4,4) on scene frame `frame` (None: as it stands now).

    A dance is retargeted with one placement for all its frames (its up axis, floor, facing and
    size), so that placement is read on a frame the dance names, not on the playhead: under a
    parent keyed to tilt, Generate pressed on frame 1 and on frame 150 wrote dances up to 0.26 m
    apart (QA). Another frame is evaluated with frame_set, and the playhead put back, only where
    something may move the object (world_placement_may_move)."""
    with _evaluated_on(frame, world_placement_may_move(obj)):
        return np.array(obj.matrix_world, np.float64)


@contextmanager
def _evaluated_on(frame: float | None, needed: bool):
    """The scene evaluated on frame `frame` inside the block (frame_set), the playhead put back
    after it; nothing is done where `needed` is false, `frame` is None or already the playhead."""
    scene = bpy.context.scene
    saved = scene.frame_current, scene.frame_subframe
    if frame is None or not needed or (int(round(frame)) == saved[0] and saved[1] == 0.0):
        yield
        return
    try:
        scene.frame_set(int(round(frame)))
        yield
    finally:
        scene.frame_set(saved[0], subframe=saved[1])


def world_placement_may_move(obj) -> bool:
    """Whether `obj`'s world matrix may differ from frame to frame: it or a parent has
    constraints, a parent is animated or hangs from a bone or vertex (which its armature may
    move), or `obj` animates its own transform (F-curves or drivers not on its bones, or NLA
    strips). Its bones' own keys do not move it."""
    ad = obj.animation_data
    if len(obj.constraints) or (ad is not None and (len(ad.nla_tracks) or any(
            not fc.data_path.startswith("pose.") for fc in (*ad.drivers, *compat.action_fcurves(
                ad.action, compat.object_slot(obj, ad.action)))))):
        return True
    parent = obj.parent
    return parent is not None and (obj.parent_type != 'OBJECT' or parent.animation_data is not None
                                   or world_placement_may_move(parent))


# The object's own transform channels: keyed to move while the song plays, they carry the
# dancer under its dance.
_OBJECT_TRANSFORMS = ("location", "rotation_euler", "rotation_quaternion", "rotation_axis_angle", "scale",
                      "delta_location", "delta_rotation_euler", "delta_rotation_quaternion", "delta_scale")


def moving_object_note(obj, first: int, last: int) -> str | None:
    """A note when `obj` itself (not its bones), or an object it is parented to, is keyed to move
    on frames first..last: the dance plays on top of that motion, so its planted feet slide with
    it (QA: a walk-in keyed on the object carried on at 1 m/s under the dance, the feet sliding
    for a second, unsaid; the same with a parent Empty keyed to move 2.2 m)."""
    frames = np.linspace(first, last, min(last - first + 1, 240))
    carrier = obj
    while carrier is not None:
        ad = carrier.animation_data
        action = ad.action if ad is not None else None
        moving = sorted({fc.data_path for fc in compat.action_fcurves(action, compat.object_slot(carrier, action))
                         if fc.data_path in _OBJECT_TRANSFORMS and not fc.mute
                         and np.ptp([fc.evaluate(f) for f in frames]) > 1e-4}) if action is not None else []
        if moving:
            who = "itself is" if carrier is obj else f"is carried by '{carrier.name}', which is"
            return (f"'{obj.name}' {who} keyed to move while the song plays (its object {', '.join(moving)}): the "
                    "dance plays on top of that motion, so its feet slide with it; key the travel on the hips "
                    "instead, or remove those keys within the song")
        carrier = carrier.parent
    return None


def read_rig(obj, bone_map: dict[str, str] | None = None, frame: float | None = None) -> Rig:
    """The armature's rest pose: bone names, parents, rest matrices (armature space), lengths,
    deform flags, Local Location flags and the object's world matrix on scene frame `frame`
    (world_matrix; None: as it stands now, enough for the mapping).

    With `bone_map`: the rig the maths needs for that map. Parents are the EFFECTIVE ones
    (_follows: control rigs such as Rigify's move a control through a proxy bone that copies
    another control rather than through parenting), and only the bones that matter are kept:
    the mapped ones, their ancestors and children, and the lowest deforming bone (the floor).
    A Rigify rig has 700 bones and about 60 of them matter; the maths costs per bone."""
    bones = obj.data.bones
    names = [b.name for b in bones]
    index = {n: i for i, n in enumerate(names)}
    rest = np.empty(len(bones) * 16, np.float32)
    bones.foreach_get("matrix_local", rest)
    rest = rest.reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)   # column-major -> rows
    parents = [index[b.parent.name] if b.parent else -1 for b in bones]
    lengths = np.array([b.length for b in bones], np.float64)
    deform = [bool(b.use_deform) for b in bones]
    keeps = [not b.use_inherit_rotation for b in bones]
    local = [bool(b.use_local_location) for b in bones]    # the axes a location key moves the bone along
    connected = [bool(b.use_connect) for b in bones]       # a connected bone's location does nothing
    O = world_matrix(obj, frame)
    body = deforms_a_body(obj)
    if not bone_map or any(v not in index for v in bone_map.values()):   # a bad map: check_bone_map says so
        return Rig(names=names, parents=parents, rest=rest, lengths=lengths, deform=deform, object_matrix=O,
                   stands_at_rest=body, keeps_rotation=keeps, local_location=local, connected=connected)
    for b, p in _follows(obj, bone_map).items():
        parents[index[b]] = index[p]
    mapped = {index[v] for v in bone_map.values()}
    height = rest[:, :3, 3] @ O[2, :3] + O[2, 3]
    pool = [i for i, d in enumerate(deform) if d] or list(range(len(names)))
    keep = set(mapped) | {i for i, p in enumerate(parents) if p in mapped} | {min(pool, key=lambda i: height[i])}
    _with_ancestors(keep, parents)
    copies = {index[b]: (index[c], w) for b, (c, w) in _copied_rotations(obj, frame).items()
              if index[b] in keep}
    keep |= {c for c, _ in copies.values()}
    _with_ancestors(keep, parents)
    sub = sorted(keep)
    new = {old: k for k, old in enumerate(sub)}
    return Rig(names=[names[i] for i in sub], parents=[new.get(parents[i], -1) for i in sub], rest=rest[sub],
               lengths=lengths[sub], deform=[deform[i] for i in sub], object_matrix=O, stands_at_rest=body,
               keeps_rotation=[keeps[i] for i in sub], local_location=[local[i] for i in sub],
               connected=[connected[i] for i in sub],
               copies_rotation={new[b]: (new[c], w) for b, (c, w) in copies.items()})


def _with_ancestors(keep: set[int], parents: list[int]) -> None:
    for b in list(keep):
        p = parents[b]
        while p >= 0 and p not in keep:
            keep.add(p)
            p = parents[p]


def _copied_rotations(obj, frame: float | None = None) -> dict[str, tuple[str, float]]:
    """{bone: (bone it copies, influence)}: the armature's Copy Rotation constraints on its own
    bones that engine.outputs.retarget models (Rig.copies_rotation: world or pose space both
    ways, Replace, every axis, none inverted, not muted), with the influence as evaluated on
    scene frame `frame` (a driver's result: Rigify's MCH-ROT-neck copies the torso by
    1 - neck_follow). Another frame is evaluated with frame_set, the playhead put back, only
    where the action animates a custom property that such a driver may read."""
    found = []
    for pb in obj.pose.bones:
        for c in pb.constraints:
            if (c.type == 'COPY_ROTATION' and not c.mute and getattr(c, "target", None) == obj and c.subtarget
                    and c.subtarget in obj.pose.bones and c.subtarget != pb.name
                    and c.owner_space == c.target_space and c.owner_space in ('WORLD', 'POSE')
                    and c.mix_mode == 'REPLACE' and c.use_x and c.use_y and c.use_z
                    and not (c.invert_x or c.invert_y or c.invert_z)):
                found.append((pb.name, c.name, c.subtarget))
    if not found:
        return {}
    ad = obj.animation_data
    animated = ad is not None and any('"][' in fc.data_path for fc in compat.action_fcurves(
        ad.action, compat.object_slot(obj, ad.action)))
    out = {}
    with _evaluated_on(frame, animated):
        for bone, name, target in found:      # a driver's result is written back to the original too
            w = float(obj.pose.bones[bone].constraints[name].influence)
            if w > 1e-6:
                out[bone] = (target, min(w, 1.0))
    return out


def uneven_scale_note(obj) -> str | None:
    """A note when the armature is scaled unevenly in the world (its own scale or a parent's):
    a turned bone then shears, so no rotation points its limb exactly along the dance's, and a
    bent leg is shorter or longer in the world than the dance's (QA: a character stretched 1.5x
    upwards danced with its feet 4.4 cm above the floor, 2.3 cm at 1.2x)."""
    stretch = np.linalg.svd(np.array(obj.matrix_world, np.float64)[:3, :3], compute_uv=False)
    if stretch.max() <= 1.01 * stretch.min():
        return None
    return (f"'{obj.name}' is scaled unevenly in the world (stretched {stretch.max() / stretch.min():.2f}x more "
            "one way): its limbs can point a few degrees off the dance's, and its feet miss the floor by a few cm "
            "(4 cm stretched 1.5x upwards); apply the scale (Ctrl A) for an exact fit")


# Constraints that set a bone's rotation or place from elsewhere, or clamp it: on a bone the dance
# keys, or an IK chain through one, they show something else than the dance (Rigify's own IK
# chains run on its MCH bones, which the dance does not key, and its switches are keyed to FK).
OVERRIDING_CONSTRAINTS = {'IK', 'SPLINE_IK', 'COPY_ROTATION', 'COPY_TRANSFORMS', 'COPY_LOCATION', 'CHILD_OF',
                          'DAMPED_TRACK', 'TRACK_TO', 'LOCKED_TRACK', 'STRETCH_TO', 'TRANSFORM', 'ARMATURE',
                          'ACTION', 'LIMIT_ROTATION', 'LIMIT_LOCATION', 'FLOOR'}


def overriding_constraints_note(obj, keyed: set[str]) -> str | None:
    """A note naming the active constraints that override or clamp the bones the dance keys
    (`keyed`, danced_bones): the dance is written, but the viewport shows the constraints' result
    (a leg IK keeps the feet on its targets). The animator's rig is theirs to change, so the
    add-on only says so."""
    found = []
    for pb in obj.pose.bones:
        for c in pb.constraints:
            if c.mute or c.influence <= 0 or c.type not in OVERRIDING_CONSTRAINTS:
                continue
            chain = [pb]
            if c.type in ('IK', 'SPLINE_IK'):          # the chain it turns: chain_count bones (0: to the root)
                while chain[-1].parent is not None and (c.chain_count == 0 or len(chain) < c.chain_count):
                    chain.append(chain[-1].parent)
            if any(b.name in keyed for b in chain):
                found.append(f"{c.type.replace('_', ' ').title().replace('Ik', 'IK')} on '{pb.name}'")
    if not found:
        return None
    return (f"constraints on '{obj.name}' override bones the dance moves ({_listed(found)}): the viewport shows their "
            "result, not the dance; mute them (or key their targets) to see it")


def _listed(items: list[str]) -> str:
    return ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")


def danced_bones(obj, bone_map: dict[str, str] | None) -> set[str]:
    """The bones a dance keys: a character's mapped bones, or the SMPL dancer's joints."""
    return set(bone_map.values()) if bone_map is not None else set(scene_io.posed_bones(obj))


def _danced_channel_bones(fcurves, danced: set[str], counts, props=("rotation_", "location")) -> list[str]:
    """The danced bones, in order and once each, with an F-curve of a channel starting with one
    of `props` among `fcurves` for which counts(fcurve) holds."""
    found = []
    for fc in fcurves:
        channel = key_io._bone_channel(fc.data_path)
        if (channel and channel[0] in danced and channel[0] not in found
                and channel[1].startswith(props) and counts(fc)):
            found.append(channel[0])
    return found


def drivers_note(obj, danced: set[str]) -> str | None:
    """A note naming drivers on the rotation or location of the danced bones: Blender shows the
    driver's value, not the keyed dance."""
    ad = obj.animation_data
    found = _danced_channel_bones(ad.drivers if ad is not None else (), danced, lambda fc: not fc.mute)
    if not found:
        return None
    return (f"drivers on '{obj.name}' set bones the dance moves ({_listed(found)}): the viewport shows the "
            "drivers' values, not the dance; disable them to see it")


def locked_rotation_note(obj, danced: set[str]) -> str | None:
    """A note naming danced bones with locked rotation axes: locks bind only the rotate tool, so
    the keyed dance turns those axes anyway (a hinge knee gets some twist)."""
    found = [pb.name for pb in obj.pose.bones if pb.name in danced
             and (any(pb.lock_rotation) or (pb.lock_rotations_4d and pb.lock_rotation_w))]
    if not found:
        return None
    return (f"'{obj.name}' locks rotation axes of {_listed(found)}: the dance turns those axes too "
            "(locks only bind the rotate tool)")


def modifiers_note(obj, danced: set[str]) -> str | None:
    """A note naming F-curve modifiers on the danced channels of the current action: the take
    holds the dance (the animator's keys as they showed them) without them, and what they played
    beside the dance baked on whole frames (keys.write_bone_rotations)."""
    ad = obj.animation_data
    action = ad.action if ad is not None else None
    found = _danced_channel_bones(compat.action_fcurves(action, compat.object_slot(obj, action)), danced,
                                  lambda fc: len(fc.modifiers) > 0)
    if not found:
        return None
    return (f"F-curve modifiers on {_listed(found)} are left out of the take: it shows the dance and your keys as "
            f"they looked, and what they played before and after the dance keyed on every frame of the scene "
            f"('{action.name}' keeps them)")


def switches_note(obj) -> str | None:
    """A note for a rig the animator has on IK (Rigify, Auto-Rig Pro): the takes key its
    switches to FK (ik_fk_switches), and Blender keeps an animated property's last value when an
    action that does not key it is assigned, so an IK action assigned outside the Takes list
    (which restores them) plays with its limbs on FK (QA: bones up to 1.46 m off).
    Said when a dance replaces the animator's own animation, not again from take to take."""
    ad = obj.animation_data
    if ad is not None and takes.is_take(ad.action):
        return None
    had = ik_fk_switches.remembered_switches(obj) or ik_fk_switches.switches_now(obj)
    differ = sorted({key.partition("|")[0] for key, value in had.items()    # (earlier versions remembered follows too)
                     if key.partition("|")[2] in ik_fk_switches.IK_FK_SWITCHES
                     and abs(float(value) - ik_fk_switches.IK_FK_SWITCHES[key.partition("|")[2]]) > 1e-6})
    if not differ:
        return None
    return (f"the take switches {_listed(differ)} to FK (their IK/FK switches) while it dances: switch actions with "
            "the Takes list, which puts them back; an action assigned elsewhere plays on FK until you set them back")


def ik_keys_note(obj, bone_map: dict[str, str] | None) -> str | None:
    """A note naming a rig's keyed IK controls (hand_ik.L, foot_ik.R, their poles; any bone named
    "_ik"): the dance moves the FK controls with the limbs switched to FK (switches_note). On a
    Rigify rig the poses those keys show are read as FK (rigify_ik) and keyed on the FK controls
    in the take, an IK limb stretched or shortened there met in direction at its own length;
    other rigs' IK keys (Auto-Rig Pro's) are neither kept nor played in the take (QA: dropped
    without a word). Said when a dance replaces the animator's own animation, as switches_note is."""
    ad = obj.animation_data
    if ad is None or ad.action is None or takes.is_take(ad.action) or not ik_fk_switches.switches_now(obj):
        return None
    found = key_io.animator_keys(obj, -1e9, 1e9, ad.action)
    keyed = {bone for bone, _ in found if "_ik" in bone.lower()}
    limbs = rigify_ik.limbs(obj, bone_map or {})
    read = {bone for limb in limbs for bone in limb.ik_controls}
    # Keys on a limb's IK controls while it is on FK show nothing: not named as met (QA).
    shown = set()
    for limb in limbs:
        for bone in set(limb.ik_controls) & keyed:
            frames = sorted({f for (b, _), fs in found.items() if b == bone for f in fs})
            if rigify_ik.on_ik(obj, limb, frames, ad.action):
                shown.add(bone)
    said = []
    if shown:
        said.append(f"the poses your keys on the IK controls {_listed(sorted(shown))} show are met on the FK "
                    "controls, which the take keys with the limbs on FK (a limb IK stretches is met in direction, "
                    "at its own length)")
    if keyed - read:
        said.append(f"keys on the IK controls {_listed(sorted(keyed - read))} are not read, and the take dances the FK "
                    "controls with the limbs on FK: key the poses to keep on the FK controls (or your rig's IK->FK "
                    "snap, then key)")
    return "; ".join(said) or None


def nla_only_note(obj, bone_map: dict[str, str] | None) -> str | None:
    """A note for a dancer whose animation plays from NLA strips with no active action: its keys
    there are not kept exactly; a character's kept body parts cannot follow it either."""
    ad = obj.animation_data
    if ad is None or ad.action is not None:
        return None
    if not any(not t.mute and len(t.strips) for t in ad.nla_tracks):
        return None
    what = ("its kept body parts hold the current pose and its keys there are not kept" if bone_map is not None
            else "its keys there are not kept exactly (kept body parts follow it)")
    return (f"'{obj.name}' plays its animation from NLA strips: {what}; make the strip's action the active one "
            "to use it")


def nla_under_note(obj, bone_map: dict[str, str] | None) -> str | None:
    """A note for a dancer whose NLA strips animate danced bones that its active action does not:
    the take keys every danced bone and holds the dance's first and last poses before and after
    it, so those strips no longer show there (QA: an idle under the animator's action replaced
    outside the song, 88 cm before it and 2.75 m after, unsaid). Said when a dance replaces the
    animator's own action, not from take to take."""
    ad = obj.animation_data
    if ad is None or ad.action is None or takes.is_take(ad.action):
        return None
    danced = danced_bones(obj, bone_map)
    theirs = {bone for bone, _ in key_io.animated_channels(obj, ad.action)}
    under = [track.name for track in ad.nla_tracks if not track.mute and any(
        strip.action is not None and not strip.mute
        and {bone for bone, _ in key_io.animated_channels(obj, strip.action)} & (danced - theirs)
        for strip in track.strips)]
    if not under:
        return None
    return (f"the NLA track{'s' if len(under) > 1 else ''} {_listed(under)} animate{'' if len(under) > 1 else 's'} "
            f"danced bones that '{ad.action.name}' does not key: the take keys them, holding the dance's first and "
            "last poses before and after it over the NLA (switch back to your action with the Takes list to see "
            "them again)")


def resting_bones_note(obj, bone_map: dict[str, str] | None) -> str | None:
    """A note naming the animated bones the dance is computed through at rest (a root above the
    hips, a twist bone between thigh and shin, Rigify's hips and chest): the take holds them at
    rest while the dance plays (write_character_dance), so their animation does not play there
    (QA: a root's walk and a thigh twist's keys were replaced without a word)."""
    ad = obj.animation_data
    if bone_map is None or ad is None or ad.action is None:
        return None
    movers = _animated_influencers(obj, ad.action, danced_bones(obj, bone_map))
    # A root above the hips (VRM's Root, Rigify's torso) carries the travel: its place is danced,
    # its turn held at rest like the others' (QA: a rotation key on it was dropped unsaid).
    root = root_bone_name(bone_map)
    if root != bone_map.get("pelvis") and any(bone == root and prop.startswith("rotation")
                                              for bone, prop in key_io.animator_keys(obj, -1e9, 1e9, ad.action)):
        movers = sorted(set(movers) | {f"{root}'s turn"})
    if not movers:
        return None
    return (f"{_listed(movers)} of '{obj.name}' {'is' if len(movers) == 1 else 'are'} animated above or between the "
            "bones the dance moves: the take holds them at rest while the dance plays (your action keeps their keys)")


def stretched_bones_note(obj, bone_map: dict[str, str] | None) -> str | None:
    """A note naming mapped bones keyed away from their rest length (scale, or a location on a
    bone that does not carry the dance's travel): their keys stay in the take, but the dance is
    computed at rest length, so such legs missed the floor by up to 19 cm without a word (QA)."""
    ad = obj.animation_data
    if bone_map is None or ad is None or ad.action is None:
        return None
    root = root_bone_name(bone_map)

    def away_from_rest(fc) -> bool:
        bone, prop = key_io._bone_channel(fc.data_path)
        if fc.mute or (prop == "location" and bone == root):      # the root's location is the travel
            return False
        co = np.empty(2 * len(fc.keyframe_points))
        fc.keyframe_points.foreach_get("co", co)
        return bool(np.abs(co[1::2] - (1.0 if prop == "scale" else 0.0)).max(initial=0.0) > 1e-3)
    found = _danced_channel_bones(compat.action_fcurves(ad.action, compat.object_slot(obj, ad.action)),
                                  danced_bones(obj, bone_map), away_from_rest, props=("scale", "location"))
    if not found:
        return None
    return (f"{_listed(found)} of '{obj.name}' {'is' if len(found) == 1 else 'are'} keyed scaled or moved from "
            "rest: the take keeps those keys, but the dance is computed at rest lengths (a stretched leg's foot "
            "misses the floor)")


def dancer_notes(obj, bone_map: dict[str, str] | None) -> list[str]:
    """What the animator should know about the dancer's own rig before a dance is written on it."""
    danced = danced_bones(obj, bone_map)
    notes = [uneven_scale_note(obj), overriding_constraints_note(obj, danced), drivers_note(obj, danced),
             locked_rotation_note(obj, danced), modifiers_note(obj, danced), nla_only_note(obj, bone_map),
             nla_under_note(obj, bone_map),
             switches_note(obj), ik_keys_note(obj, bone_map), resting_bones_note(obj, bone_map),
             stretched_bones_note(obj, bone_map)]
    return [n for n in notes if n]


def deforms_a_body(obj) -> bool:
    """Whether a mesh is deformed by `obj` (an Armature modifier on it): its rest pose then stands
    where the body was modelled standing, which is the floor it dances on (Rig.stands_at_rest)."""
    return any(m.type == 'ARMATURE' and m.object == obj
               for o in bpy.data.objects if o.type == 'MESH' for m in o.modifiers)


def _follows(obj, bone_map: dict[str, str]) -> dict[str, str]:
    """{mapped bone: the mapped bone it effectively hangs under} where the armature's own
    parenting does not say so: the bone of the joint's SMPL parent is not among its ancestors,
    but an ancestor copies that bone's transforms (Rigify: upper_arm_fk.L hangs under
    ORG-shoulder.L, which copies shoulder.L). The engine's maths then sees the real motion."""
    from engine.body.skeleton import JOINT_INDEX, PARENTS
    pbs = obj.pose.bones
    out = {}
    for joint, bone in bone_map.items():
        if joint not in JOINT_INDEX or bone not in pbs:
            continue
        a = PARENTS[JOINT_INDEX[joint]]
        while a >= 0 and JOINT_NAMES[a] not in bone_map:
            a = PARENTS[a]
        target = bone_map.get(JOINT_NAMES[a]) if a >= 0 else None
        if target is None or target not in pbs:
            continue
        up = pbs[bone].parent
        while up is not None and up.name != target:
            if any(c.type == 'COPY_TRANSFORMS' and getattr(c, "target", None) == obj and c.subtarget == target
                   and c.influence == 1.0 and not c.mute for c in up.constraints):
                out[bone] = target
                break
            up = up.parent
    return out


def stored_bone_map(obj) -> dict[str, str]:
    """The mapping the Dance panel keeps on the armature (empty: none set yet)."""
    items = getattr(obj, MAP_PROPERTY, None)
    return {it.joint: it.bone for it in items if it.bone} if items is not None else {}


def store_bone_map(obj, bone_map: dict[str, str]) -> None:
    """Keep `bone_map` on the armature (what the panel shows and edits). Refused (EngineError, one
    line, nothing changed) on a library override: Blender adds no item to an add-on's collection
    there, and saves none it lets in (QA: a traceback; allowed, 2 of 25 items came back)."""
    if obj.override_library is not None:
        reference = obj.override_library.reference
        home = bpy.path.basename(reference.library.filepath) if reference is not None and reference.library else "its library"
        raise EngineError(f"'{obj.name}' is a library override: its bone map cannot be stored in this file; map its "
                          f"bones in {home}, which the override reads it from (the automatic map is used meanwhile)")
    items = getattr(obj, MAP_PROPERTY)
    items.clear()
    for joint in (*JOINT_NAMES, ROOT_KEY):
        it = items.add()
        it.joint, it.bone = joint, bone_map.get(joint, "")


def automatic_bone_map(obj) -> dict[str, str]:
    """engine.outputs.retarget.auto_map for `obj`; a control rig whose controls follow each other through
    copying proxies (_follows) gets the shipped preset that fits it once those are seen."""
    rig = read_rig(obj)
    try:
        return auto_map(rig)
    except EngineError as error:
        best = {}
        for name in list_presets():
            m = load_preset(name, rig)
            try:
                check_bone_map(read_rig(obj, m), m)
            except EngineError:
                continue
            if len(m) > len(best):
                best = m
        if not best:
            raise error
        return best


def character_bone_map(obj, path: str | None = None) -> dict[str, str]:
    """The bone map to dance `obj` with: the JSON file `path`, else the map stored on the
    armature, else the automatic one. Checked against the rig (EngineError, one line)."""
    if path:
        bone_map = load_bone_map(bpy.path.abspath(path))
    else:
        bone_map = stored_bone_map(obj) or automatic_bone_map(obj)
    if ROOT_KEY not in bone_map:   # the travel falls to the pelvis's bone, which may not take it
        bone_map = with_movable_root(read_rig(obj), bone_map)
    check_bone_map(read_rig(obj, bone_map), bone_map)
    return bone_map


def retargeter(obj, bone_map: dict[str, str], frame: float | None = None) -> Retargeter:
    """engine.outputs.retarget's maths for `obj` and `bone_map`, placed as on scene frame `frame`
    (read_rig; a dance passes its first frame) (EngineError, one line, if it cannot)."""
    try:
        return Retargeter(read_rig(obj, bone_map, frame), bone_map)
    except EngineError as e:   # say which armature (a rig lying down, a mirrored object)
        raise EngineError(f"armature '{obj.name}': {e}") from None


def check_character(obj, bone_map: dict[str, str] | None = None, path: str | None = None) -> dict[str, str]:
    """Raise EngineError (one line) unless `obj` can dance as a character; returns its bone map."""
    if obj is None:
        raise EngineError("no dancer armature: pick one in the Dance panel or press 'Create SMPL Dancer'")
    if obj.type != 'ARMATURE':
        raise EngineError(f"'{obj.name}' is not an armature: pick your character's armature or press "
                          "'Create SMPL Dancer'")
    if obj.mode == 'EDIT':
        raise EngineError(f"armature '{obj.name}' is in Edit Mode: switch to Object or Pose Mode first")
    if not len(obj.data.bones):
        raise EngineError(f"armature '{obj.name}' has no bones: pick your character's armature or press "
                          "'Create SMPL Dancer'")
    try:
        if bone_map is None:
            return character_bone_map(obj, path)
        check_bone_map(read_rig(obj, bone_map), bone_map)
    except EngineError as e:   # say which armature, and where the map is fixed
        raise EngineError(f"armature '{obj.name}': {e} (Dance panel > Character Bones; batch.py: --bone-map "
                          "FILE.json)") from None
    return bone_map


def check_dancer(obj) -> dict[str, str] | None:
    """Raise EngineError (one line) unless `obj` can dance: its bone map when it is the animator's
    own character, None when it is the add-on's SMPL dancer."""
    if obj is None or obj.type != 'ARMATURE':
        scene_io.check_smpl_armature(obj)          # says what to pick
    check_writable(obj)
    _check_evaluated(obj)
    if obj.data.pose_position == 'REST':
        # Blender then evaluates every frame in the rest pose, so the keys would read as the rest pose.
        raise EngineError(f"'{obj.name}' shows its Rest Position: set Pose Position to Pose "
                          "(Armature properties) to generate")
    if is_character(obj):
        return check_character(obj)
    scene_io.check_smpl_armature(obj)
    return None


def check_writable(obj) -> None:
    """Raise EngineError (one line) where a take cannot be put on the armature `obj` now. Checked
    again before a dance made in the background is written (runner.apply): the UI stays live
    meanwhile, and an animator can tweak an NLA strip or enter Edit Mode."""
    if obj.library is not None:
        # Linked data is read-only on disk: the take would be assigned for this session only, and
        # the dancer plays its library animation again when the file is reopened.
        raise EngineError(f"'{obj.name}' is linked from {bpy.path.basename(obj.library.filepath)}: make a library "
                          "override (Object > Library Override > Make) to dance it")
    ad = obj.animation_data
    if ad is not None and getattr(ad, "use_tweak_mode", False):
        # Blender makes the action read-only while an NLA strip is being tweaked.
        raise EngineError(f"'{obj.name}' is in NLA tweak mode: leave it (Tab in the NLA editor) to generate")
    if obj.mode == 'EDIT':
        raise EngineError(f"armature '{obj.name}' is in Edit Mode: switch to Object or Pose Mode first")


def _check_evaluated(obj) -> None:
    """Blender does not evaluate an object disabled in viewports (the monitor icon) or in an
    excluded or disabled collection, so its keyed pose cannot be read (it would silently read the
    current frame's pose for every key): say so instead."""
    if not any(o == obj for o in bpy.context.scene.objects):   # (by name: a linked one can share it)
        raise EngineError(f"'{obj.name}' is not in this scene: link it here or pick a dancer of this scene")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    if not any(i.original == obj for i in depsgraph.ids):   # (is_evaluated can be a stale copy's)
        raise EngineError(f"'{obj.name}' is disabled in viewports (the monitor icon) or in an excluded collection: "
                          "enable it so its keys and pose can be read")


def _axis_quats(axis: int, angles: np.ndarray) -> np.ndarray:
    q = np.zeros(angles.shape + (4,))
    q[..., 0] = np.cos(angles / 2)
    q[..., 1 + axis] = np.sin(angles / 2)
    return q


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def rotation_quats(modes: list[str], quat: np.ndarray, euler: np.ndarray, axis_angle: np.ndarray) -> np.ndarray:
    """Each bone's rotation channels (as stored, in its own mode) -> (...,B,4) w,x,y,z. A
    quaternion bone's values pass through as they are (not normalised), so writing them back
    gives the animator's numbers exactly."""
    out = np.array(quat, np.float64)
    for b, mode in enumerate(modes):
        if mode == 'QUATERNION':
            continue
        if mode == 'AXIS_ANGLE':
            angle, axis = axis_angle[..., b, 0], axis_angle[..., b, 1:]
            norm = np.linalg.norm(axis, axis=-1, keepdims=True)
            unit = np.where(norm > 1e-12, axis / np.maximum(norm, 1e-12), (0.0, 1.0, 0.0))
            out[..., b, :] = np.concatenate([np.cos(angle / 2)[..., None], unit * np.sin(angle / 2)[..., None]], -1)
            continue
        q = None   # Euler 'XYZ': X applied first, so q = qZ qY qX
        for letter in mode:
            step = _axis_quats("XYZ".index(letter), euler[..., b, "XYZ".index(letter)])
            q = step if q is None else _quat_mul(step, q)
        out[..., b, :] = q
    return out


def evaluate_basis(obj, frames, names=None, action=None) -> tuple[np.ndarray, np.ndarray]:
    """(rotations (F,B,4) w,x,y,z, locations (F,B,3)): the animation channels (any rotation
    mode) of the bones `names` (default: all, in the armature's order) on each of `frames`, as
    the current action's F-curves (or `action`'s) give them (a channel without one: its current
    value). No scene evaluation: reading 3 minutes of a Rigify rig takes a second, not a minute."""
    names = list(names) if names is not None else [b.name for b in obj.data.bones]
    got = _channel_values(obj, frames, names, action)
    return _rotations(obj, names, got), got["location"]


def rotations_between(obj, names, starts, ends, u, action=None) -> np.ndarray:
    """(G,N,B,4) w,x,y,z: the rotations of the bones `names` at fractions `u` (N,) of the way from
    each frame of `starts` (G,) to the same row of `ends`, along the straight path of their
    channel values (what Blender shows between two keys with nothing keyed between: an Euler
    angle keyed 0 then 360 degrees turns a whole turn), from `action`'s F-curves (default: the
    current one)."""
    names, u = list(names), np.asarray(u, np.float64)
    at = _channel_values(obj, list(starts) + list(ends), names, action)
    G = len(starts)
    between = {prop: v[:G, None] + (v[G:] - v[:G])[:, None] * u[None, :, None, None] for prop, v in at.items()}
    return _rotations(obj, names, between)


def _channel_values(obj, frames, names, action) -> dict[str, np.ndarray]:
    """{channel: (F,B,n)} the animation channels of the bones `names` on each of `frames`, from
    `action`'s F-curves (None: the current action's; see evaluate_basis)."""
    frames = [float(f) for f in frames]
    pbs = obj.pose.bones
    if action is None:
        ad = obj.animation_data
        action = ad.action if ad is not None else None
    curves = {(fc.data_path, fc.array_index): fc
              for fc in compat.action_fcurves(action, compat.object_slot(obj, action)) if not fc.mute}
    chans = {"rotation_quaternion": 4, "rotation_euler": 3, "rotation_axis_angle": 4, "location": 3}
    got = {k: np.empty((len(frames), len(names), n)) for k, n in chans.items()}
    for b, name in enumerate(names):
        pb = pbs[name]
        base = f'pose.bones["{bpy.utils.escape_identifier(name)}"].'
        for prop, n in chans.items():
            got[prop][:, b] = np.array(getattr(pb, prop), np.float64)
            for i in range(n):
                fc = curves.get((base + prop, i))
                if fc is not None:
                    got[prop][:, b, i] = [fc.evaluate(f) for f in frames]
    return got


def _rotations(obj, names, got: dict[str, np.ndarray]) -> np.ndarray:
    modes = [obj.pose.bones[n].rotation_mode for n in names]
    return rotation_quats(modes, got["rotation_quaternion"], got["rotation_euler"], got["rotation_axis_angle"])


@dataclass
class CharacterKeys:
    """What a character dance carries over, frame 0 = the first danced frame: the values of
    the driven bones wherever the animator fixed them (keys, locked body parts, the context
    around a regenerated range), and which of them are the animator's keys (written as keys of
    type 'KEYFRAME' so the next Generate keeps them again; the rest is 'GENERATED')."""
    rotations: np.ndarray      # (F,B,4) basis quaternions (identity where not held)
    held: np.ndarray           # (F,B) bool: rotation written verbatim
    keyed: np.ndarray          # (F,B) bool: an animator's rotation key
    root_location: np.ndarray  # (F,3) basis location of the root bone
    root_held: np.ndarray      # (F,)
    root_keyed: np.ndarray     # (F,)


def read_character_constraints(obj, bone_map: dict[str, str], frame_start: int, frame_end: int, fps: float,
                               keep_parts=(), keep_root: bool = False, scene=None, context=(), partial=None,
                               lead=()):
    """The animator's wishes on their character as SMPL engine Constraints at `fps` (frame 0 =
    `frame_start`), and the CharacterKeys to write back verbatim.

    - A rotation key on a mapped bone at frame f fixes its SMPL joint at f; a location key on
      the root bone fixes the root. Full poses become keyframes, an opening passage seed motion.
    - Body parts in `keep_parts` (and the root if `keep_root`) follow the current animation.
    - Frames in `context` are fixed entirely (the dance around a regenerated range).
    - `partial` (frame, bones, root): on that frame only those bones (and the root bone's place
      if `root`) are fixed, as the animation plays them (a lead-out into a partial pose).
    - Frames in `lead` are fixed entirely at the pose the animator's own animation leaves there
      (key_io.animator_only: a take's generated keys are the old dance's), and so is `partial`'s.
    The character is placed as on `frame_start` (world_matrix), as write_character_dance places it.
    `scene` is unused (values come from the F-curves, evaluate_basis); it mirrors
    scene_io.read_constraints' signature."""
    rt = retargeter(obj, bone_map, frame_start)
    rig = rt.rig
    n = frame_end - frame_start + 1
    if n <= 0:
        raise EngineError(f"empty frame range {frame_start}-{frame_end}")
    B = len(rig.names)
    index = {name: i for i, name in enumerate(rig.names)}
    keyed = np.zeros((n, B), bool)
    root_keyed = np.zeros(n, bool)
    for (bone, prop), frames in key_io.animator_keys(obj, frame_start, frame_end, posed_bones=posed_bones(bone_map)).items():
        b = index.get(bone)
        rows = np.asarray(frames, int) - frame_start
        if b is None:
            continue
        if prop == "location":
            if b == rt.root_bone:
                root_keyed[rows] = True
        elif b in rt.driven:
            keyed[rows, b] = True
    for bone, frames in rigify_ik.ik_keyed(obj, bone_map, frame_start, frame_end).items():   # poses keyed on IK
        if index.get(bone) in rt.driven:
            keyed[np.asarray(frames, int) - frame_start, index[bone]] = True
    held, root_held = keyed.copy(), root_keyed.copy()
    if keep_parts:
        for j in joint_indices(list(keep_parts)):
            bone = bone_map.get(JOINT_NAMES[j])
            if bone in index:
                held[:, index[bone]] = True
    if keep_root:
        root_held[:] = True
    if partial is not None and frame_start <= partial[0] <= frame_end:
        f, bones, with_root = partial
        for b in (index[name] for name in bones if name in index):
            if b in rt.driven:
                held[f - frame_start, b] = True
        root_held[f - frame_start] |= with_root
    ctx = np.asarray(sorted(int(f) - frame_start for f in (*context, *lead) if frame_start <= f <= frame_end), int)
    held[np.ix_(ctx, rt.driven)] = True
    root_held[ctx] = True
    own = np.asarray(key_io.own_pose_frames(lead, partial, frame_start, frame_end), int) - frame_start
    # A Rigify limb on IK is held as it shows there, not as its FK controls' curves say.
    on_ik = [index[b] for limb in rigify_ik.limbs(obj, bone_map) for b in limb.fk_controls if b in index]
    # On the frames the animator's own animation leads (a take danced again), as they had them.
    shown = rigify_ik.shown_as_fk(obj, bone_map, {rig.names[b]: (frame_start + np.flatnonzero(held[:, b])).tolist()
                                                   for b in on_ik},
                                  theirs=ik_fk_switches.animators_rigify_switches(obj),
                                  as_theirs=set((frame_start + own).tolist()))

    cons = Constraints.empty(n, fps)
    rotations = np.zeros((n, B, 4))
    rotations[..., 0] = 1.0
    root_location = np.zeros((n, 3))
    rows = np.flatnonzero(held.any(axis=1) | root_held)
    if len(rows):
        rot, loc = evaluate_basis(obj, frame_start + rows, rig.names)
        led = np.isin(rows, own)
        if led.any():
            with key_io.animator_only(obj) as action:
                rot[led], loc[led] = evaluate_basis(obj, frame_start + rows[led], rig.names, action)
        _as_shown(rot, frame_start + rows, rig.names, shown)
        rotations[rows], root_location[rows] = rot, loc[:, rt.root_bone]
        poses, trans, joint_mask, _ = rt.from_rig(rot, loc[:, rt.root_bone], held[rows], root_held[rows])
        joint_mask = np.asarray(joint_mask, bool)
        cons.poses[rows] = np.where(np.repeat(joint_mask, 3, axis=1), poses, 0.0)
        cons.joint_mask[rows] = joint_mask
        cons.trans[rows] = np.where(root_held[rows, None], trans, 0.0)
        cons.trans_mask[rows] = root_held[rows]
    pelvis_keys = np.flatnonzero(cons.joint_mask[:, 0])
    cons.pelvis_turns[pelvis_keys] = key_io.turns_between_keys(pelvis_keys + frame_start, _pelvis_heading(obj, rt))
    # The engine finds the holds in the constraints itself; the take writes them verbatim. Keys of
    # the spinning bones a whole turn apart are a keyed spin, no hold (QA: a 360 spin stood still).
    holds, hold_rotations = _holds(obj, keyed, frame_start, rig.names, (rt.root_bone, root_keyed), shown)
    spinning = [index[name] for name in spinning_bones(obj, bone_map) if name in index]
    for turned in np.flatnonzero(cons.pelvis_turns):
        before = np.flatnonzero(cons.joint_mask[:turned, 0])
        holds[(before[-1] + 1 if len(before) else 0):turned, spinning] = False
    holds &= ~held
    rotations[holds], held = hold_rotations[holds], held | holds
    return cons, CharacterKeys(rotations, held, keyed, root_location, root_held, root_keyed)


def _as_shown(rot: np.ndarray, frames: np.ndarray, names: list[str], shown: dict) -> None:
    """Put the rotations rigify_ik.shown_as_fk read ({(bone, frame): quaternion}) into `rot`
    (F,B,4), read from the F-curves on `frames`."""
    row = {int(f): k for k, f in enumerate(frames)}
    column = {name: b for b, name in enumerate(names)}
    for (bone, f), q in shown.items():
        if f in row and bone in column:
            rot[row[f], column[bone]] = q


def _holds(obj, keyed: np.ndarray, frame_start: int, names: list[str],
           root: tuple[int, np.ndarray] | None = None, shown: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """((F,B) bool, (F,B,4) quaternions): the frames strictly between two keys of a bone in a row
    that give it the same rotation, where the two keys are the same pose keyed twice (a hold,
    engine.body.holds.same_pose_keyed, the engine's rule; the root bone's location keys count
    too: `root`, (its index, (F,) bool where its location is keyed)), and that rotation. The
    engine holds the joint there; the take writes the bone so too, verbatim: retargeted, the
    planted legs' IK turned a held knee 0.4 degrees and slid the foot 1.2 mm inside a whole-body
    hold (QA)."""
    from engine.body.holds import alike, same_pose_keyed
    holds = np.zeros(keyed.shape, bool)
    values = np.zeros(keyed.shape + (4,))
    rows = np.flatnonzero(keyed.any(axis=1))
    if len(rows) < 2:
        return holds, values
    rot, loc = evaluate_basis(obj, frame_start + rows, names)
    _as_shown(rot, frame_start + rows, names, shown or {})

    def same_pose(i: int, j: int) -> bool:
        span = slice(rows[i], rows[j] + 1)
        if root is None:
            return same_pose_keyed(keyed[span], rot[[i, j]])
        b, placed = root
        return same_pose_keyed(keyed[span], rot[[i, j]], placed[span], loc[[i, j], b] * obj.matrix_world.to_scale()[0])
    for b in np.flatnonzero(keyed.sum(axis=0) >= 2):
        k = np.flatnonzero(keyed[rows, b])
        for i in np.flatnonzero(alike(rot[k[:-1], b], rot[k[1:], b])):
            if not same_pose(k[i], k[i + 1]):
                continue
            a, z = rows[k[i]], rows[k[i + 1]]
            holds[a + 1:z, b] = True
            values[a + 1:z, b] = rot[k[i], b]
    return holds, values


def spinning_bones(obj, bone_map: dict[str, str] | None) -> set[str]:
    """The bones whose keyed spins are danced: the pelvis's (the SMPL dancer's "pelvis", a
    character's bone mapped to it) and those above it."""
    bones = obj.data.bones
    bone = bones.get(bone_map["pelvis"] if bone_map else "pelvis")
    out = set()
    while bone is not None:
        out.add(bone.name)
        bone = bone.parent
    return out


def _pelvis_heading(obj, rt: Retargeter):
    """heading_between for keys.turns_between_keys: the SMPL pelvis's heading between two keys,
    from the channels of the pelvis's bone and the bones above it (the rest at rest: they alone
    turn the hips)."""
    import torch
    from engine.body.rotations import heading
    from engine.outputs.retarget import axis_angle_to_matrix
    chain = [rt.rig.names.index(name) for name in spinning_bones(obj, rt.bone_map)]

    def heading_between(starts, ends, u):
        turns = rotations_between(obj, [rt.rig.names[b] for b in chain], starts, ends, u)      # (G,N,C,4)
        rot = np.zeros((turns.shape[0] * turns.shape[1], len(rt.rig.names), 4))
        rot[..., 0] = 1.0
        rot[:, chain] = turns.reshape(-1, len(chain), 4)
        poses = rt.from_rig(rot, np.zeros((len(rot), 3)), np.ones(rot.shape[:2], bool))[0]
        return heading(torch.from_numpy(axis_angle_to_matrix(poses[:, :3]))).numpy().reshape(turns.shape[:2])
    return heading_between


def read_character_motion(obj, bone_map: dict[str, str], frame_start: int, frame_end: int,
                          fps: float | None = None, scene=None) -> Motion:
    """The character's animation on frames frame_start..frame_end as an SMPL Motion (for the
    exports): every mapped bone's animation channels, through Retargeter.from_rig, the character
    placed as on frame_start (world_matrix)."""
    scene = scene or bpy.context.scene
    rt = retargeter(obj, bone_map, frame_start)
    rot, loc = evaluate_basis(obj, range(frame_start, frame_end + 1), rt.rig.names)
    poses, trans, _, _ = rt.from_rig(rot, loc[:, rt.root_bone], np.ones(rot.shape[:2], bool))
    return Motion(poses=poses, trans=trans, fps=fps or scene_io.scene_fps(scene))


def posed_bones(bone_map: dict[str, str]) -> set[str]:
    """The bones a pose of the character is read from (for keys.bind_pose_frames)."""
    return set(bone_map.values())


def bind_pose_span(obj, bone_map: dict[str, str], frame_start: int, frame_end: int) -> str | None:
    """Frames in the range whose keys hold an imported bind pose (keys.bind_pose_frames), or None."""
    return key_io.bind_pose_span(obj, posed_bones(bone_map), frame_start, frame_end)


def count_character_keys(obj, bone_map: dict[str, str], frame_start: int, frame_end: int) -> tuple[int, int]:
    """(rotation keys on the mapped bones, frames with a key the next dance keeps), for the panel:
    the keys read_character_constraints takes (a location key only on the root bone)."""
    mapped, root = posed_bones(bone_map), root_bone_name(bone_map)
    keys = {(bone, prop): f for (bone, prop), f in key_io.animator_keys(obj, frame_start, frame_end,
                                                                         posed_bones=mapped).items()
            if (bone == root if prop == "location" else bone in mapped)}
    for bone, f in rigify_ik.ik_keyed(obj, bone_map, frame_start, frame_end).items():   # poses keyed on IK
        channel = (bone, key_io.rotation_path(obj.pose.bones[bone])[0])
        keys[channel] = sorted(set(keys.get(channel, [])) | set(f))
    frames = set().union(*keys.values()) if keys else set()
    return sum(len(f) for (_, prop), f in keys.items() if prop != "location"), len(frames)


# --- Writing the dance ----------------------------------------------------------------------

# A regenerated range on a character meets the dance around it through offsets that fade over
# this long inside the range (engine.outputs.retarget.join_to_context).
JOIN_SECONDS = 0.5
# What the round trip through SMPL leaves between the animator's keys and the retargeted dance
# beside them fades out over this long (engine.outputs.retarget.onto_given_poses).
GIVEN_POSE_FADE_SECONDS = 0.5


def write_character_dance(obj, motion: Motion, frame_start: float, action_name: str, bone_map: dict[str, str],
                          fps: float | None = None, metadata: dict | None = None,
                          keys: CharacterKeys | None = None, only=None, beside=(False, False)):
    """Put the SMPL `motion` on the character `obj` from `frame_start` as a new take named
    `action_name`: a copy of the current action with the driven bones' rotations (and the root
    bone's location) keyed on the danced frames (only (first, last) scene frames when `only`),
    `keys` written verbatim. The character is placed as on `frame_start` (world_matrix), whatever
    frame the playhead is on. `beside` (before, after): the animator's animation plays on that
    side of the dance (runner.Request.animation_beside). Returns the new action."""
    rt = retargeter(obj, bone_map, frame_start)
    rig = rt.rig
    T = motion.num_frames
    # Planted feet stay planted on the character's own legs (the engine's contacts, else found
    # from the character's ankles), standing where the poses written as they are stand.
    pose = rt.to_rig(np.asarray(motion.poses, np.float64), np.asarray(motion.trans, np.float64),
                     contacts=motion.contacts, fps=motion.fps, given_feet=_given_feet(rt, keys, T))
    fps = fps or scene_io.scene_fps(bpy.context.scene)
    frames = frame_start + np.arange(T) * (fps / motion.fps)
    rows = np.arange(T)
    if only is not None:
        rows = rows[(frames > only[0] - 1e-3) & (frames < only[1] + 1e-3)]
    driven = list(pose.driven)
    root = pose.root_bone
    quats = np.array(pose.rotations, np.float64)
    loc = np.array(pose.root_location, np.float64)
    keyed = np.zeros((T, len(rig.names)), bool)
    root_keyed = np.zeros(T, bool)
    if keys is not None:   # the animator's values, exactly (not a round trip through SMPL)
        m = min(T, len(keys.held))
        if only is not None and len(rows):
            context = keys.held[:, driven].all(axis=1)     # the old dance's frames around the range
            quats[rows[:, None], driven], loc[rows] = join_to_context(
                quats[:, driven], loc, rows, keys.rotations[:, driven], keys.root_location,
                context, context & keys.root_held, round(JOIN_SECONDS * motion.fps))
        else:     # the dance beside the keys eased onto them, so that it flows into their exact values
            quats[:m], loc[:m] = onto_given_poses(quats[:m], loc[:m], driven, keys.held[:m], keys.root_held[:m],
                                                  keys.rotations[:m], keys.root_location[:m],
                                                  round(GIVEN_POSE_FADE_SECONDS * motion.fps))
        quats[:m][keys.held[:m]] = keys.rotations[:m][keys.held[:m]]
        loc[:m][keys.root_held[:m]] = keys.root_location[:m][keys.root_held[:m]]
        keyed[:m], root_keyed[:m] = keys.keyed[:m], keys.root_keyed[:m]

    ad = obj.animation_data or obj.animation_data_create()
    old, old_slot = ad.action, compat.object_slot(obj)
    if old is None and only is not None:
        raise EngineError("nothing to regenerate a range of: the character has no animation")
    # What the FK controls of a Rigify limb partly on IK hold beside the dance: the animator's own.
    unkeyed = ik_fk_switches.unkeyed_fk_values(obj, bone_map) if old is None or not takes.is_take(old) else {}
    # Poses a Rigify limb on IK shows after a dance that ends in nothing of the animator's (keys
    # beyond LEAD_OUT_SECONDS), read before the take replaces their action.
    after_on_fk = ik_fk_switches.ik_poses_after(obj, bone_map, float(frames[-1]), rig.names[root]) \
        if only is None and T and not beside[1] else {}
    if old is None or not takes.is_take(old) or not ik_fk_switches.remembered_switches(obj):
        ik_fk_switches.remember_switches(obj)
    takes.keep_previous(obj)
    if old is not None:   # a copy: unmapped bones and keys outside the dance stay as they were
        action = takes.use_copy_of(obj, old, old_slot, action_name)
        if only is None:    # a whole new dance: none of the previous take's beyond its frames
            key_io.drop_generated_keys(obj, action, [rig.names[b] for b in driven])
    else:
        action, _, _ = compat.assign_new_action(obj, action_name)
    takes.mark_take(obj, action, metadata)

    names = [rig.names[b] for b in driven]
    root_name = rig.names[root]
    key_io.write_bone_rotations(obj, action, names, frames[rows], quats[rows][:, driven],
                                locations={root_name: loc[rows]}, kept=keyed[rows][:, driven],
                                kept_locations={root_name: root_keyed[rows]}, hold_outside=only is not None)
    movers = _animated_influencers(obj, action, set(names))
    if movers and len(rows):   # at rest while the dance plays, or they would bend it
        rest_q = np.zeros((len(rows), len(movers), 4))
        rest_q[..., 0] = 1.0
        # A root above connected hips (VRM's Root, Rigify's torso) carries the travel just
        # written: only its turn is held at rest (QA: one location key on it zeroed the travel).
        key_io.write_bone_rotations(obj, action, movers, frames[rows], rest_q,
                                    locations={m: np.zeros((len(rows), 3)) for m in movers if m != root_name},
                                    hold_outside=only is not None)
    ik_fk_switches.key_switches(obj, action, frames[rows], beside, whole=only is None)
    ik_fk_switches.hold_unkeyed_fk_beside(obj, action, frames[rows], beside, unkeyed)
    ik_fk_switches.key_as_theirs(obj, action, after_on_fk)
    obj.update_tag()
    return action


def _given_feet(rt: Retargeter, keys: CharacterKeys | None, frames: int) -> np.ndarray | None:
    """(frames,2,2,3) world ankles and toes of the poses `keys` write whole (every driven bone
    and the root's location), NaN elsewhere (Retargeter.foot_points); None when there are none."""
    if keys is None:
        return None
    whole = np.flatnonzero((keys.held[:, rt.driven].all(axis=1) & keys.root_held)[:frames])
    if not len(whole):
        return None
    feet = np.full((frames, 2, 2, 3), np.nan)
    feet[whole] = rt.foot_points(keys.rotations[whole], keys.root_location[whole])
    return feet


def _animated_influencers(obj, action, driven: set[str]) -> list[str]:
    """Animated bones that the maths assumes at rest but that move driven bones: their
    ancestors, and the bones that constraints on those ancestors copy (Rigify's hips and chest
    controls, which its MCH spine bones follow)."""
    pbs = obj.pose.bones
    seen: set[str] = set()
    todo = [pbs[n].parent for n in driven if pbs[n].parent is not None]
    while todo:
        pb = todo.pop()
        if pb is None or pb.name in seen:
            continue
        seen.add(pb.name)
        todo.append(pb.parent)
        for c in pb.constraints:
            sub = getattr(c, "subtarget", "")
            if getattr(c, "target", None) == obj and sub in pbs and not c.mute and c.influence > 0:
                todo.append(pbs[sub])
    animated = {bone for bone, _ in key_io.animator_keys(obj, -1e9, 1e9, action)}
    return sorted((seen - driven) & animated)

