"""Keys in any armature's actions: which keys are the animator's, and writing generated keys.

Keys the add-on writes have keyframe type 'GENERATED' (Blender 4.2+; compat.generated_key_type
falls back to 'JITTER' before it). Every other key in a dancer's CURRENT action is the
animator's and a constraint at the next Generate: the keys of their own action, the keys a
dance carried over from it (written as 'KEYFRAME'), and the keys they set on a generated dance.
Blender keeps a key's type when a key is inserted over it (bpy 4.5: even with
keytype='KEYFRAME'), so a re-keyed generated key is found by its value: the action stores, per
bone, channel group and frame, the sum of the values written (STAMP_KEY), and a generated key
whose values no longer add up to it was changed by the animator.

Rotations are written in each bone's OWN rotation mode (quaternion, any Euler order,
axis-angle), which is never changed. Nothing here knows SMPL: scene_io (the SMPL dancer) and
rig_io (the user's own characters) both write through write_bone_rotations.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from contextlib import contextmanager

import bpy
import numpy as np

from . import blender_compat as compat
from . import takes

_PATH_RE = re.compile(r'^pose\.bones\["((?:[^"\\]|\\.)*)"\]\.(\w+)$')
STAMP_KEY = "dance_stamp"               # action: {"r|bone" / "l|bone": [frame, sum, frame, sum, ...]}
_STAMP_TOL = 1e-6


_MODE_PATHS = {'QUATERNION': "rotation_quaternion", 'AXIS_ANGLE': "rotation_axis_angle"}  # else Euler


def rotation_path(pb) -> tuple[str, int]:
    """(data path property, channel count) that animates `pb`'s rotation in its own rotation mode."""
    prop = _MODE_PATHS.get(pb.rotation_mode, "rotation_euler")
    return prop, 3 if prop == "rotation_euler" else 4


def _bone_path(name: str, prop: str) -> str:
    return f'pose.bones["{bpy.utils.escape_identifier(name)}"].{prop}'


def bone_property_path(name: str, prop: str) -> str:
    """The data path of a bone's custom property (a rig's IK/FK switch: ["IK_FK"])."""
    return f'pose.bones["{bpy.utils.escape_identifier(name)}"]["{prop}"]'


def _bone_channel(data_path: str) -> tuple[str, str] | None:
    """'pose.bones["name"].prop' -> (name, prop); None for any other path."""
    m = _PATH_RE.match(data_path)
    if m is None:
        return None
    return m.group(1).replace('\\"', '"').replace("\\\\", "\\"), m.group(2)


def animated_channels(obj, action) -> set[tuple[str, str]]:
    """{(bone, property)} of the pose channels `action` animates on `obj` (muted curves too)."""
    if action is None:
        return set()
    return {channel for fc in compat.action_fcurves(action, compat.object_slot(obj, action))
            if (channel := _bone_channel(fc.data_path)) is not None}


def _stamp_name(bone: str, prop: str) -> str:
    return (("l|" if prop == "location" else "r|") + bone)[:63]


def _channel_keys(obj, action, modes=None):
    """{(bone, prop): {channel index: (frames float32, values float32, types int32)}} for the
    channels that drive `obj`'s pose: each bone's rotation in its current mode (or the one
    `modes` {bone: rotation mode} gives), and location."""
    out: dict = {}
    for fc in compat.action_fcurves(action, compat.object_slot(obj, action)):
        channel = _bone_channel(fc.data_path)
        if fc.mute or channel is None:
            continue
        bone, prop = channel
        pb = obj.pose.bones.get(bone)
        mode = (modes or {}).get(bone, pb.rotation_mode if pb is not None else None)
        if pb is None or prop not in (_MODE_PATHS.get(mode, "rotation_euler"), "location"):
            continue
        n = len(fc.keyframe_points)
        if n == 0:
            continue
        co = np.empty(2 * n, np.float32)
        types = np.empty(n, np.int32)
        fc.keyframe_points.foreach_get("co", co)
        fc.keyframe_points.foreach_get("type", types)
        out.setdefault((bone, prop), {})[fc.array_index] = (co[0::2], co[1::2], types)
    return out


def _stamp_lookup(action, name: str):
    stamps = action.get(STAMP_KEY)
    flat = stamps.get(name) if stamps is not None else None
    if flat is None:
        return np.zeros(0), np.zeros(0)
    flat = np.asarray(flat, np.float64)
    return flat[0::2], flat[1::2]


# An imported character's file may bring a take that holds only its bind pose: a Mixamo
# download "with skin" keys every bone at rest on frames 1 and 2. Those keys are the file's, not
# the animator's, and as constraints they would hold the dancer in a T-pose where the dance starts.
# A key within these bounds of the rest pose holds it: a bind pose is the rest pose up to the
# file's rounding. Within 2 degrees and 1e-3 of the armature's size, as before, an imported
# clip's own frames near rest (an arm 0.2-0.7 degrees off it, the hips 1-2 mm) were taken for a
# bind pose and dropped (QA, an FBX round trip: the take left the clip by 5-12 cm there).
REST_ANGLE = math.radians(0.1)
REST_OFFSET = 3e-4          # a location's share of the armature's size


def _at_rest(prop: str, index: int, values: np.ndarray, size: float) -> np.ndarray:
    """Which key values of one channel hold the bone's rest pose."""
    if prop == "location":
        return np.abs(values) <= REST_OFFSET * size
    if prop == "rotation_quaternion":   # w is free: an unnormalised identity is still at rest
        return np.abs(values) <= math.sin(REST_ANGLE / 2) if index else np.ones(len(values), bool)
    if prop == "rotation_axis_angle" and index:   # the axis of a zero angle is free
        return np.ones(len(values), bool)
    return np.abs(np.remainder(values + math.pi, 2 * math.pi) - math.pi) <= REST_ANGLE   # Euler, angle


def keys_digest(obj, action) -> str:
    """A fingerprint of `action`'s keys on `obj` (channels, frames, values, key types, muted
    curves; "" for no action). runner.apply compares the one taken when Generate was pressed
    with the one found when the dance is written: the UI stays live while the engine runs."""
    if action is None:
        return ""
    digest = hashlib.sha1()
    curves = sorted(compat.action_fcurves(action, compat.object_slot(obj, action)),
                    key=lambda fc: (fc.data_path, fc.array_index))
    for fc in curves:
        points = fc.keyframe_points
        co, types = np.empty(2 * len(points), np.float32), np.empty(len(points), np.int32)
        points.foreach_get("co", co)
        points.foreach_get("type", types)
        digest.update(f"{fc.data_path}[{fc.array_index}] {fc.mute}".encode())
        digest.update(co.tobytes() + types.tobytes())
    return digest.hexdigest()


def bind_pose_frames(obj, action, posed_bones, modes=None) -> list[int]:
    """Whole frames of `action` holding an imported bind pose, not a pose to dance from: runs of
    consecutive frames on which every key (rotation or location, any bone) holds the rest pose
    and within which every bone of `posed_bones` has a rotation key, with no whole-body keys
    (_body_keyed_frames) on the frames just before and after them. A few bones keyed at rest, a
    rest pose beside any other key on its frame, and a clip that starts from the rest pose stay
    keys."""
    return _bind_pose_frames(obj, _channel_keys(obj, action, modes), posed_bones)


def _bind_pose_frames(obj, channels: dict, posed_bones) -> list[int]:
    """bind_pose_frames on channels read by _channel_keys (a long action has millions of keys)."""
    wanted = set(posed_bones)
    if not channels or not wanted <= {bone for bone, prop in channels if prop != "location"}:
        return []
    heads = np.array([b.head_local[:] for b in obj.data.bones] + [b.tail_local[:] for b in obj.data.bones])
    size = float(np.ptp(heads, axis=0).max())
    frames = {key: {i: np.round(f).astype(np.int64) for i, (f, _, _) in chans.items()} for key, chans in channels.items()}
    lo = min(int(f.min()) for chans in frames.values() for f in chans.values())
    hi = max(int(f.max()) for chans in frames.values() for f in chans.values())
    keyed, off_rest = np.zeros(hi - lo + 1, bool), np.zeros(hi - lo + 1, bool)
    rotated = {bone: np.zeros(hi - lo + 1, bool) for bone in wanted}
    for (bone, prop), chans in channels.items():
        for i, (_, v, _) in chans.items():
            f = frames[bone, prop][i] - lo
            keyed[f] = True
            off_rest[f[~_at_rest(prop, i, v.astype(np.float64), size)]] = True
            if prop != "location" and bone in rotated:
                rotated[bone][f] = True
    rest = np.flatnonzero(keyed & ~off_rest)
    if not len(rest):
        return []
    # Consecutive frames at rest count together: an import may key the rotations on frame 1
    # and the hips' location on frames 1 and 2.
    run_of = np.concatenate([[0], np.cumsum(np.diff(rest) != 1)])
    complete = np.ones(run_of[-1] + 1, bool)
    for mask in rotated.values():
        complete &= np.bincount(run_of, weights=mask[rest], minlength=len(complete)) > 0
    # A run of rest frames with the whole body keyed on the frame right before or after it is a
    # clip passing through the rest pose (one that starts from it), not a bind pose; a few bones
    # keyed there are the animator's first pose after the file's bind pose (QA: kept as a T-pose).
    body = np.zeros(len(keyed), bool)
    body_frames = _body_keyed_frames(obj, {key: np.concatenate(list(ch.values())) for key, ch in frames.items()}, wanted)
    body[np.array(sorted(body_frames), int) - lo] = True
    first, last = np.full(len(complete), len(keyed)), np.full(len(complete), -1)
    np.minimum.at(first, run_of, rest)
    np.maximum.at(last, run_of, rest)
    body_beside = body[np.maximum(first - 1, 0)] & (first > 0) | body[np.minimum(last + 1, len(keyed) - 1)] \
        & (last < len(keyed) - 1)
    complete &= ~body_beside
    return (rest[complete[run_of]] + lo).tolist()


def bind_pose_span(obj, posed_bones, frame_start: int, frame_end: int, action=None, modes=None) -> str | None:
    """The frames in [frame_start, frame_end] holding an imported bind pose ("1-2"), or None."""
    ad = obj.animation_data
    action = action if action is not None else (ad.action if ad else None)
    if action is None:
        return None
    frames = [f for f in bind_pose_frames(obj, action, posed_bones, modes) if frame_start <= f <= frame_end]
    if not frames:
        return None
    return f"{frames[0]}-{frames[-1]}" if frames[-1] - frames[0] == len(frames) - 1 else ", ".join(map(str, frames))


def bind_pose_note(span: str) -> str:
    """The generation's note on the bind-pose keys it left out (bind_pose_span)."""
    return (f"the keys on frame(s) {span} hold the rest pose on every bone (an imported bind pose): "
            "not kept, so the dance does not start from it")


def animator_keys(obj, frame_start: float, frame_end: float, action=None, modes=None, posed_bones=None) -> dict:
    """{(bone, prop): sorted frames within [frame_start, frame_end]} of the animator's keys in
    `obj`'s current action (or `action`): keys not of the generated type, and generated keys
    whose value the animator changed. prop is "location" or the bone's rotation path (in its
    current rotation mode, or the one `modes` {bone: mode} gives). With `posed_bones` (the
    bones a pose is read from), frames holding an imported bind pose are left out
    (bind_pose_frames)."""
    ad = obj.animation_data
    action = action if action is not None else (ad.action if ad else None)
    if action is None:
        return {}
    generated = compat.generated_key_type()[1]
    all_channels = _channel_keys(obj, action, modes)
    bind = set(_bind_pose_frames(obj, all_channels, posed_bones)) if posed_bones else set()
    found = {}
    # Over the whole action: a baked passage's still channels are keyed at its ends only.
    whole = (-np.inf, np.inf) if posed_bones else (frame_start, frame_end)
    for (bone, prop), channels in all_channels.items():
        f = np.concatenate([c[0] for c in channels.values()]).astype(np.float64)
        v = np.concatenate([c[1] for c in channels.values()]).astype(np.float64)
        t = np.concatenate([c[2] for c in channels.values()])
        inside = (f > whole[0] - 0.5) & (f < whole[1] + 0.5)
        mine = set(np.round(f[inside & (t != generated)]).astype(int).tolist())
        gen = inside & (t == generated)
        if gen.any():  # generated keys: changed if the sum of their values differs from the one written
            at, where = np.unique(f[gen], return_inverse=True)
            sums = np.bincount(where, weights=v[gen])
            sf, ss = _stamp_lookup(action, _stamp_name(bone, prop))
            i = np.clip(np.searchsorted(sf, at - 1e-3), 0, max(len(sf) - 1, 0))
            if len(sf):
                same = (np.abs(sf[i] - at) <= 1e-3) & (np.abs(ss[i] - sums) <= _STAMP_TOL * np.maximum(1.0, np.abs(sums)))
            else:
                same = np.zeros(len(at), bool)
            mine.update(np.round(at[~same]).astype(int).tolist())
        mine -= bind
        if mine:
            found[(bone, prop)] = sorted(mine)
    if posed_bones:
        found = _through_baked_passages(obj, found, posed_bones)
    out = {}
    for channel, frames in found.items():
        frames = [f for f in frames if frame_start - 0.5 < f < frame_end + 0.5]
        if frames:
            out[channel] = frames
    return out


def moved_by_modifiers(obj, frame_start: int, frame_end: int) -> dict:
    """{(bone, prop): [frame_start]} for the bone channels of `obj`'s current action that
    F-curve modifiers (a Cycles loop, a Noise) move within [frame_start, frame_end]: animation
    there as much as a key is (QA: an outro made by a Cycles loop on the hips was not led into,
    and the take teleported them 1.28 m after the song). prop as animator_keys gives it."""
    ad = obj.animation_data
    action = ad.action if ad is not None else None
    if action is None:
        return {}
    frames = np.arange(frame_start, frame_end + 1, dtype=np.float64)
    found = {}
    for fc in compat.action_fcurves(action, compat.object_slot(obj, action)):
        channel = _bone_channel(fc.data_path)
        if channel is None or fc.mute or not len(fc.modifiers) or channel[0] not in obj.pose.bones:
            continue
        bone, prop = channel
        if prop not in (rotation_path(obj.pose.bones[bone])[0], "location"):
            continue
        if np.ptp([fc.evaluate(float(f)) for f in frames]) > STILL_TOLERANCE:
            found[channel] = [int(frame_start)]
    return found


def _keep_keys(fc, generated: int, theirs, rest) -> None:
    """Drop `fc`'s keys of type `generated` but on the frames `theirs`, all at once (removing a
    3-minute take's keys one by one is quadratic); a curve left empty holds its channel's `rest`
    value. Automatic handles are recalculated for the keys' new neighbours."""
    points = fc.keyframe_points
    n = len(points)
    if n == 0:
        return
    values = {}
    for name, width, dtype in _KEY_ATTRS:
        values[name] = np.empty(n * width, dtype)
        points.foreach_get(name, values[name])
    frames = np.round(values["co"][0::2]).astype(int)
    keep = (values["type"] != generated) | np.isin(frames, list(theirs))
    if keep.all():
        return
    points.clear()
    if keep.any():
        points.add(int(keep.sum()))
        for name, width, _ in _KEY_ATTRS:
            points.foreach_set(name, values[name].reshape(n, width)[keep].ravel())
    else:
        points.insert(0.0, rest[fc.array_index] if rest is not None and fc.array_index < len(rest) else 0.0)
    fc.update()


def own_pose_frames(lead, partial, frame_start: int, frame_end: int) -> list[int]:
    """The scene frames within [frame_start, frame_end] whose pose is read from the animator's own
    keys (animator_only): the `lead` frames and a partial lead-out's frame (`partial`: (frame,
    bones, root) or None), as scene_io.read_constraints and rig_io.read_character_constraints take them."""
    frames = set(int(f) for f in lead) | ({int(partial[0])} if partial is not None else set())
    return sorted(f for f in frames if frame_start <= f <= frame_end)


@contextmanager
def animator_only(obj):
    """The current action as the animator's own keys alone play it, for reading the pose their
    animation leaves where a dance starts or ends: the action itself when it holds no generated
    key, else a temporary copy of it without the generated keys (those the animator changed
    stay, and the handles a take cut put back: CUT_HANDLES_KEY), removed on exit; None without
    an action. A channel keyed only by the add-on rests
    there (the rest value), as on the animator's own action, where it has no F-curve. On a take
    danced again after its song moved, the generated keys at the new dance's first frame are the
    old dance's, and read with them the new dance started from the old one's pose, 75 degrees
    off the animator's key before it (QA)."""
    ad = obj.animation_data
    action = ad.action if ad is not None else None
    generated = compat.generated_key_type()
    if action is None or not any(
            (c[2] == generated[1]).any() for channels in _channel_keys(obj, action).values() for c in channels.values()):
        yield action
        return
    mine = animator_keys(obj, -np.inf, np.inf)
    copy = action.copy()
    cut = _cut_handles(action)
    try:
        for fc in compat.action_fcurves(copy, compat.object_slot(obj, copy)):
            channel = _bone_channel(fc.data_path)
            if channel is None:
                continue
            _keep_keys(fc, generated[1], mine.get(channel, ()), takes.REST_CHANNEL_VALUES.get(channel[1]))
            if cut:
                _restore_cut_handles(fc, cut)
                fc.update()
        yield copy
    finally:
        bpy.data.actions.remove(copy)


# How much a channel may change in a frame and still count as standing still (radians, metres,
# quaternion components): a float's rounding, not a move.
STILL_TOLERANCE = 1e-6


def holds_still_into(obj, frame: int) -> bool:
    """Whether the animator's own animation (animator_only) stands still from `frame` - 1 into
    `frame`: every bone channel it animates plays the same value on both (a pose keyed before
    the dance and held until it starts). False without an action."""
    with animator_only(obj) as action:
        if action is None:
            return False
        for fc in compat.action_fcurves(action, compat.object_slot(obj, action)):
            if not fc.mute and _bone_channel(fc.data_path) is not None \
                    and abs(fc.evaluate(frame) - fc.evaluate(frame - 1)) > STILL_TOLERANCE:
                return False
    return True


# A baked clip (an FBX or BVH import, a mocap take) keys its moving channels on every frame, and
# the exporter leaves a channel that stays still with a key at each end of the clip only. Through
# such a passage, the frames on which the hips (the topmost posed bone) and at least BAKED_SHARE
# of the posed bones are keyed, for BAKED_FRAMES frames or more in a row, every posed bone's
# channel keyed on both sides of it is as keyed on every frame (what Blender plays there): read
# channel by channel, the still bones were free, and the dance moved a hand 0.5 m off the clip it
# was asked to keep (QA). Arms keyed on every frame without the hips are no body clip: the legs
# keyed around them still dance.
BAKED_SHARE = 0.25
BAKED_FRAMES = 3


def _body_keyed_frames(obj, keys: dict, posed_bones) -> set[int]:
    """Frames on which the hips (the topmost posed bone) and at least BAKED_SHARE of the posed
    bones are keyed, from `keys` ({(bone, prop): frames}): a frame of a clip of the whole body."""
    posed = {b for b in posed_bones if b in obj.data.bones}
    tops = {b for b in posed if not any(a.name in posed for a in obj.data.bones[b].parent_recursive)}
    bones_on: dict[int, set] = {}
    for (bone, _), frames in keys.items():
        if bone in posed:
            for f in frames:
                bones_on.setdefault(int(f), set()).add(bone)
    return {f for f, bones in bones_on.items() if len(bones) >= BAKED_SHARE * len(posed) and bones & tops}


def _through_baked_passages(obj, keys: dict, posed_bones) -> dict:
    """`keys` ({(bone, prop): sorted frames}) with the frames of baked passages (see BAKED_SHARE)
    added to the posed bones' channels that are keyed before and after them."""
    posed = {b for b in posed_bones if b in obj.data.bones}
    dense = sorted(_body_keyed_frames(obj, keys, posed))
    runs = [(int(r[0]), int(r[-1])) for r in np.split(np.asarray(dense, int), np.flatnonzero(np.diff(dense) != 1) + 1)
            if len(r) >= BAKED_FRAMES] if dense else []
    if not runs:
        return keys
    out = dict(keys)
    for (bone, prop), frames in keys.items():
        if bone not in posed:
            continue
        filled = list(frames)
        # Keyed only at the passage's ends (or beyond them), as an exporter leaves a still channel:
        # a limb blocked inside it (a key mid-way) is the animator's pose to dance through (QA: a
        # torso sway keyed on every frame froze limbs blocked every 2 s).
        for a, b in zip(frames[:-1], frames[1:]):
            for r0, r1 in runs:
                if a <= r0 and r1 <= b:
                    filled.extend(range(max(a + 1, r0), min(b, r1 + 1)))
        if len(filled) > len(frames):
            out[(bone, prop)] = sorted(filled)
    return out


def off_frame_note(obj, frame_start: float, frame_end: float) -> str | None:
    """A note for the animator's keys between whole frames (retimed or scaled keys, keys from a
    scene of another frame rate) within the danced frames: the dance is keyed on whole frames, so
    each counts on its nearest one (animator_keys) and the pose between is the dance's."""
    ad = obj.animation_data
    action = ad.action if ad else None
    if action is None:
        return None
    generated = compat.generated_key_type()[1]
    found = {}
    for (bone, _), channels in _channel_keys(obj, action).items():
        for f, _, t in channels.values():
            f = f.astype(np.float64)
            off = (f > frame_start - 0.5) & (f < frame_end + 0.5) & (t != generated) & (np.abs(f - np.round(f)) > 1e-3)
            for x in f[off]:
                found.setdefault(round(float(x), 2), bone)
    if not found:
        return None
    shown = ", ".join(f"{x:g} ('{bone}')" for x, bone in sorted(found.items())[:3]) + (" ..." if len(found) > 3 else "")
    return (f"keys between whole frames ({shown}) count on the nearest whole frame: the dance is keyed on whole "
            "frames; snap them (Key > Snap > Selection to Nearest Frame) to see them exactly")


def long_turn_note(obj, frame_start: float, frame_end: float, bones=None) -> str | None:
    """A note for two neighbouring keys of a bone (of `bones`, if given) more than half a turn
    apart along the F-curves: an Euler angle that changes by more than 180 degrees, or
    quaternions in opposite hemispheres. Blender turns the long way between them (a keyed spin);
    the dance meets each key's pose, which is the same orientation either way, and turns the short
    way between keys (engine.finishing.editing; weights/TRAINING.md, "Keyed spins"). Leave the
    pelvis and the bones above it out of `bones`: their spins are danced (turns_between_keys)."""
    from engine.body.rotations import wrap_angle
    ad = obj.animation_data
    action = ad.action if ad else None
    if action is None:
        return None
    generated = compat.generated_key_type()[1]
    curves = {(fc.data_path, fc.array_index): fc for fc in compat.action_fcurves(action, compat.object_slot(obj, action))}
    found = []                      # (frame a, frame b, bone, degrees keyed, degrees danced)
    for (bone, prop), channels in _channel_keys(obj, action).items():
        if prop not in ("rotation_euler", "rotation_quaternion") or (bones is not None and bone not in bones):
            continue
        mine = {i: (t != generated) & (f > frame_start - 0.5) & (f < frame_end + 0.5) for i, (f, _, t) in channels.items()}
        keyed = {i: (f[mine[i]], v[mine[i]]) for i, (f, v, _) in channels.items()}
        if prop == "rotation_euler":
            for f, v in keyed.values():
                order = np.argsort(f)
                f, v = f[order], v[order].astype(np.float64)
                for k in np.flatnonzero(np.abs(np.diff(v)) > np.pi + 1e-4):
                    turn = v[k + 1] - v[k]
                    found.append((float(f[k]), float(f[k + 1]), bone, np.degrees(abs(turn)),
                                  np.degrees(abs(wrap_angle(turn)))))
        elif len(keyed) == 4:       # the key frames of the quaternion, each read from all four curves
            frames = np.unique(np.concatenate([f for f, _ in keyed.values()]))
            if len(frames) < 2:
                continue
            path = _bone_path(bone, prop)
            q = np.array([[curves[path, i].evaluate(float(x)) for i in range(4)] for x in frames], np.float64)
            q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            dots = np.sum(q[1:] * q[:-1], axis=1)
            for k in np.flatnonzero(dots < -1e-4):
                short = np.degrees(2 * np.arccos(min(1.0, abs(dots[k]))))
                found.append((float(frames[k]), float(frames[k + 1]), bone, 360.0 - short, short))
    if not found:
        return None
    found.sort()
    shown = ", ".join(f"'{bone}' {keyed:.0f} degrees between frames {a:g} and {b:g}"
                      for a, b, bone, keyed, _ in found[:3]) + (" ..." if len(found) > 3 else "")
    return (f"keys turn more than half a turn ({shown}): the dance meets each key's pose and turns the short way "
            f"between keys ({found[0][4]:.0f} degrees for the first), so this spin will not spin: key a spin at "
            "least every half turn (the hips' spins are danced)")


# A keyed spin is counted on this many samples along the straight path from one key's channel
# values to the next's: under half a turn from one sample to the next for up to 30 turns.
SPIN_SAMPLES = 64


def turns_between_keys(key_frames, heading_between) -> np.ndarray:
    """(K,) the whole turns about the vertical that the body makes from each of the sorted
    scene frames `key_frames` (K,) to the next, beyond the short way from one key's facing to
    the next; the first 0 (engine Constraints.pelvis_turns: a spin keyed as Euler Z 0, 360, 720
    degrees is the same pose three times). `heading_between(starts (G,), ends (G,), u (N,))` ->
    (G, N) the body's heading in radians at fractions u of the way between the two keys' channel
    values, as Blender shows two keys with nothing keyed between them: the keys' own turn, not
    that of a generated dance keyed on the frames between. Keys a frame apart (seed motion, a
    locked body part, a dance around a regenerated range) are not read: half a turn in one frame
    is no dance."""
    from engine.body.rotations import wrap_angle
    frames = np.asarray(key_frames)
    out = np.zeros(len(frames))
    gaps = np.flatnonzero(np.diff(frames) > 1)
    if not len(gaps):
        return out
    heading = np.unwrap(np.asarray(heading_between(frames[gaps], frames[gaps + 1], np.linspace(0.0, 1.0, SPIN_SAMPLES))),
                        axis=1)
    turned = heading[:, -1] - heading[:, 0]
    out[gaps + 1] = np.round((turned - wrap_angle(turned)) / (2 * np.pi))
    return out


def spin_note(pelvis_turns: np.ndarray, pelvis_keyed: np.ndarray, frame_start: int) -> str | None:
    """A note naming the spins read from the hips' keys (turns_between_keys), so the animator
    sees that a keyed spin is danced, or None. pelvis_turns and pelvis_keyed (F,), frame 0 =
    scene frame `frame_start`."""
    spins = np.flatnonzero(pelvis_turns)
    if not len(spins):
        return None
    keyed = np.flatnonzero(pelvis_keyed)
    said = []
    for b in spins[:3]:
        a = keyed[np.searchsorted(keyed, b) - 1]
        turns = int(pelvis_turns[b])
        way = "counter-clockwise" if turns > 0 else "clockwise"
        said.append(f"{abs(turns)} whole turn{'s' if abs(turns) > 1 else ''} {way} between frames "
                    f"{a + frame_start} and {b + frame_start}")
    return ("the hips' keys spin, seen from above: " + ", ".join(said) + (" ..." if len(spins) > 3 else "")
            + " (danced as keyed)")


def hemisphere(q: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Flip quaternions (T,...,4) so each is on the same hemisphere as the one before it
    (the first as `previous`, when given)."""
    q = np.array(q, np.float64)
    if previous is not None and len(q):
        q[0] *= np.where(np.sum(q[0] * previous, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    if len(q) > 1:
        flips = np.sign(np.sum(q[1:] * q[:-1], axis=-1))
        flips[flips == 0] = 1
        q[1:] *= np.cumprod(flips, axis=0)[..., None]
    return q


def rotation_values(quats: np.ndarray, mode: str, previous=None) -> np.ndarray:
    """Quaternions (T,4) w,x,y,z -> the channel values of rotation `mode` (T,4 or T,3),
    continuous over time: quaternions on one hemisphere, Euler angles without 360-degree flips
    (mathutils' compatible Euler, Blender's own conversion), axis-angle with a steady axis.
    `previous`: the values just before the first frame (for joining existing keys)."""
    from mathutils import Euler, Quaternion
    if mode == 'QUATERNION':
        return hemisphere(quats, None if previous is None else np.asarray(previous, np.float64))
    if mode == 'AXIS_ANGLE':
        prev_q = None
        if previous is not None:
            prev_q = np.array(Quaternion(np.asarray(previous[1:], float), float(previous[0])))
        q = hemisphere(quats, prev_q)
        v = q[:, 1:]
        norm = np.linalg.norm(v, axis=1)
        angle = 2.0 * np.arctan2(norm, q[:, 0])
        axis = np.empty_like(v)
        last = np.array([0.0, 1.0, 0.0]) if previous is None else np.asarray(previous[1:], float)
        for t in range(len(q)):   # an undefined axis (no rotation) keeps the previous one
            if norm[t] > 1e-9:
                last = v[t] / norm[t]
            axis[t] = last
        return np.c_[angle, axis]
    out = np.empty((len(quats), 3))
    compat_euler = Euler(previous, mode) if previous is not None else None
    for t, q in enumerate(quats):
        e = Quaternion(q).to_euler(mode, compat_euler) if compat_euler is not None else Quaternion(q).to_euler(mode)
        out[t] = e
        compat_euler = e
    return out


_LINEAR = 1  # Keyframe.interpolation enum value of 'LINEAR' (CONSTANT 0, LINEAR 1, BEZIER 2)
# Per-key attributes carried over when keys are spliced into an existing F-curve.
_KEY_ATTRS = (("co", 2, np.float32), ("handle_left", 2, np.float32), ("handle_right", 2, np.float32),
              ("interpolation", 1, np.int32), ("type", 1, np.int32), ("handle_left_type", 1, np.int32),
              ("handle_right_type", 1, np.int32), ("easing", 1, np.int32), ("back", 1, np.float32),
              ("amplitude", 1, np.float32), ("period", 1, np.float32))


_BEZIER = 2


def _cut_bezier(p0, h0, h1, p1, x: float):
    """The Bezier segment from key p0 (right handle h0) to key p1 (left handle h1), (2,) points
    (frame, value), cut at frame x: (h0', cut's left handle, the cut point, its right handle, h1'),
    each half the same curve as the whole (de Casteljau). The handles are first shortened as
    Blender shortens them when it plays the segment (each no longer than the segment in frames),
    so that the frame is monotonic along it and the halves match what it plays."""
    p0, h0, h1, p1 = (np.asarray(v, np.float64) for v in (p0, h0, h1, p1))
    span = p1[0] - p0[0]

    def as_played(key, handle):          # no longer than the segment (checked against 4.5's evaluate)
        reach = key - handle
        return key - reach * span / abs(reach[0]) if abs(reach[0]) > span > 0 else handle
    h0, h1 = as_played(p0, h0), as_played(p1, h1)
    lo, hi = 0.0, 1.0
    for _ in range(60):                      # the curve's parameter at frame x, by bisection
        t = 0.5 * (lo + hi)
        frame = (1 - t) ** 3 * p0[0] + 3 * (1 - t) ** 2 * t * h0[0] + 3 * (1 - t) * t ** 2 * h1[0] + t ** 3 * p1[0]
        lo, hi = (t, hi) if frame < x else (lo, t)
    t = 0.5 * (lo + hi)
    a, b, c = p0 + t * (h0 - p0), h0 + t * (h1 - h0), h1 + t * (p1 - h1)
    d, e = a + t * (b - a), b + t * (c - b)
    return a, d, d + t * (e - d), e, c


# How near a span's end value must lie to the animator's curve there to be on it (the dance led
# into or out of their animation), in the channel's units: keys are float32.
ON_THEIR_CURVE = 1e-4


def _fill_fcurve(fc, frames: np.ndarray, values: np.ndarray, types: np.ndarray | None = None) -> None:
    """Put keys (frames, values, keyframe types) on `fc`, replacing its keys within
    [frames[0], frames[-1]] and keeping every key outside that span exactly as it was.
    Bulk: one add() and a few foreach_set() calls instead of a keyframe_insert per frame."""
    kp = fc.keyframe_points
    types = np.zeros(len(frames), np.int32) if types is None else np.asarray(types, np.int32)
    frames, values, types = _with_uncut_segments_baked(fc, np.asarray(frames), np.asarray(values), types)
    n_new, n_old = len(frames), len(kp)
    if n_old == 0:
        kp.add(n_new)
        co = np.empty(2 * n_new, np.float32)
        co[0::2], co[1::2] = frames, values
        kp.foreach_set("co", co)
        kp.foreach_set("interpolation", np.full(n_new, _LINEAR, np.int32))
        kp.foreach_set("type", types)
        fc.update()
        return
    old = {}
    for name, width, dtype in _KEY_ATTRS:
        buf = np.empty(n_old * width, dtype)
        kp.foreach_get(name, buf)
        old[name] = buf.reshape(n_old, width)
    x = old["co"][:, 0]
    keep = (x < frames[0] - 1e-3) | (x > frames[-1] + 1e-3)
    new = {name: np.repeat(old[name][:1], n_new, axis=0) for name, _, _ in _KEY_ATTRS}  # defaults...
    new["co"] = np.c_[frames, values].astype(np.float32)                               # ...then ours
    new["handle_left"], new["handle_right"] = new["co"].copy(), new["co"].copy()
    new["interpolation"][:] = _LINEAR
    new["type"][:, 0] = types
    # An animator's key carried over keeps its own type (Breakdown, Extreme, ... as they marked it);
    # one re-keyed over a generated key is marked 'KEYFRAME' so that it stays theirs.
    at = np.clip(np.searchsorted(x, frames), 0, n_old - 1)
    theirs = ((types == compat.key_type_value('KEYFRAME')) & (np.abs(x[at] - frames) < 1e-3)
              & (old["type"][at, 0] != compat.generated_key_type()[1]))
    new["type"][theirs, 0] = old["type"][at[theirs], 0]
    handle_types = bpy.types.Keyframe.bl_rna.properties["handle_left_type"].enum_items
    auto, free = handle_types["AUTO_CLAMPED"].value, handle_types["FREE"].value
    new["handle_left_type"][:], new["handle_right_type"][:] = auto, auto
    # An animator's key carried over keeps its interpolation and handles as they set them: between
    # the take's frames they shape a frame's step only, and once the dance is gone (the next take's
    # copy, animator_only) the curve on to their next key is theirs again (QA: rewritten linear,
    # a second take's curve after the song was 0.19 off the animator's).
    for name in ("interpolation", "easing", "back", "amplitude", "period", "handle_left_type", "handle_right_type"):
        new[name][theirs] = old[name][at[theirs]]
    for name in ("handle_left", "handle_right"):
        new[name][theirs] = old[name][at[theirs]] + (new["co"][theirs] - old["co"][at[theirs]])
    # The curve into the span and out of it stays the animator's where the span's first (last)
    # frame rewrites a key of theirs with its own value: that key keeps its handle on the outer
    # side, and the last one its interpolation into the next key (QA: a start pose's free handles
    # became automatic, bending the curve before the song by 5 degrees). Set free, at the spot
    # where Blender had put it: an automatic one would be recomputed from the dance's frames.
    for end, side, outside in ((0, "left", x < frames[0] - 1e-3), (n_new - 1, "right", x > frames[-1] + 1e-3)):
        k = at[end]
        if abs(x[k] - frames[end]) < 1e-3 and abs(old["co"][k, 1] - values[end]) < ON_THEIR_CURVE \
                and (keep & outside).any():
            new[f"handle_{side}"][end] = old[f"handle_{side}"][k]
            new[f"handle_{side}_type"][end] = free
            if side == "right":
                for name in ("interpolation", "easing", "back", "amplitude", "period"):
                    new[name][end] = old[name][k]
    changed = _join_inside_their_segments(old, new, x, frames, values, keep, free)
    if changed:
        _remember_cut_handles(fc, changed)
    merged = {name: np.concatenate([old[name][keep], new[name]]) for name, _, _ in _KEY_ATTRS}
    order = np.argsort(merged["co"][:, 0], kind="stable")
    total = len(order)
    if total > n_old:
        kp.add(total - n_old)
    for i in range(n_old - 1, total - 1, -1):
        kp.remove(kp[i], fast=True)
    for name, _, _ in _KEY_ATTRS:
        kp.foreach_set(name, merged[name][order].ravel())
    fc.update()


def _bake_beside(fc, first: float, last: float, scene) -> None:
    """Key a take's curve, with F-curve modifiers (a Cycles idle loop, a Noise), on every whole
    frame of the scene's range outside [first, last] as it plays there, then drop the modifiers
    (the dance inside is keyed as it shows): the take's intro and outro play as the animator's
    did (QA: a Cycles intro 81 cm off), linear between frames. The baked keys replace theirs
    there and are of their kind (KEYFRAME), so the next take keeps them as its intro."""
    sides = (np.arange(int(scene.frame_start), int(np.ceil(first - 1e-3))),
             np.arange(int(np.floor(last + 1e-3)) + 1, int(scene.frame_end) + 1))
    baked = [(at.astype(np.float64), np.array([fc.evaluate(float(f)) for f in at])) for at in sides if len(at)]
    for modifier in list(fc.modifiers):
        fc.modifiers.remove(modifier)
    keyframe = compat.key_type_value('KEYFRAME')
    for at, values in baked:
        _fill_fcurve(fc, at, values, np.full(len(at), keyframe, np.int32))


def _with_uncut_segments_baked(fc, frames: np.ndarray, values: np.ndarray, types: np.ndarray):
    """(frames, values, types) to key on `fc`: the span's, and before (after) it the whole frames
    of an animator's segment that the span's first (last) frame falls in and meets, where no cut
    of that segment plays the same (_join_inside_their_segments cuts the rest): an easing
    interpolation (Sine, Bounce, Elastic...: drawn again from its cut end, QA: 0.3 off) or a
    Bezier whose handles are longer together than the segment in time (Blender shortens them,
    and the cut halves again: QA, 0.55 off). Those frames are keyed as their curve plays them, as the animator's
    (KEYFRAME), so the curve beside the dance is theirs on every whole frame."""
    points = fc.keyframe_points
    if not len(points) or not len(frames):
        return frames, values, types
    co = np.empty(2 * len(points), np.float32)
    points.foreach_get("co", co)      # (a 3-minute take's curve: thousands of keys)
    x = co[0::2].astype(np.float64)
    baked = []
    for end, step in ((0, -1), (len(frames) - 1, 1)):
        at = float(frames[end])
        before, after = np.flatnonzero(x < at - 1e-3), np.flatnonzero(x > at + 1e-3)
        if not len(before) or not len(after) or abs(fc.evaluate(at) - float(values[end])) > ON_THEIR_CURVE:
            continue
        k0, k1 = points[int(before[-1])], points[int(after[0])]
        # Handles longer together than their segment in time: Blender shortens them to fit.
        overlong = k0.interpolation == 'BEZIER' and \
            (k0.handle_right[0] - k0.co[0]) + (k1.co[0] - k1.handle_left[0]) > k1.co[0] - k0.co[0] + 1e-6
        if k0.interpolation in ('CONSTANT', 'LINEAR') or (k0.interpolation == 'BEZIER' and not overlong):
            continue
        beside = np.arange(at + step, k0.co[0] if step < 0 else k1.co[0], step, dtype=np.float64)
        beside = beside[(beside > k0.co[0] + 1e-3) & (beside < k1.co[0] - 1e-3)]
        baked.append((beside, np.array([fc.evaluate(float(f)) for f in beside])))
    if not baked:
        return frames, values, types
    keyframe = compat.key_type_value('KEYFRAME')
    frames = np.concatenate([frames] + [b for b, _ in baked])
    order = np.argsort(frames, kind="stable")
    values = np.concatenate([values] + [v for _, v in baked])[order]
    types = np.concatenate([types] + [np.full(len(b), keyframe, np.int32) for b, _ in baked])[order]
    return frames[order], values, types


def _join_inside_their_segments(old: dict, new: dict, x: np.ndarray, frames: np.ndarray, values: np.ndarray,
                                keep: np.ndarray, free: int) -> list:
    """Where the span's first (last) frame falls inside one of the animator's Bezier segments and
    takes the value that segment plays there (a dance led into from an intro, or out into a key
    after it), the segment is cut there (_cut_bezier) rather than re-drawn: the kept key keeps its
    half exactly, through free handles (QA: an intro with automatic handles into the song was bent
    36 mm at a hand by the take). `old`, `new`: _fill_fcurve's key attributes, changed in place.
    Returns the kept keys whose handles it changed, with their handles as they were."""
    changed = []
    # Both ends may cut the same segment (a span inside one): each from the segment as it was.
    right_handles, left_handles = old["handle_right"].copy(), old["handle_left"].copy()
    for end in (0, len(frames) - 1):
        before = np.flatnonzero(x < frames[end] - 1e-3)
        after = np.flatnonzero(x > frames[end] + 1e-3)
        if not len(before) or not len(after) or np.any(np.abs(x - frames[end]) < 1e-3):
            continue                                # (a key on that frame: _fill_fcurve keeps its outer handle)
        k0, k1 = before[-1], after[0]
        if old["interpolation"][k0, 0] != _BEZIER or not (keep[k0] if end == 0 else keep[k1]):
            continue
        h0, left, point, right, h1 = _cut_bezier(old["co"][k0], right_handles[k0], left_handles[k1],
                                                 old["co"][k1], float(frames[end]))
        if abs(point[1] - float(values[end])) > ON_THEIR_CURVE:
            continue                                # the dance does not pass the animator's curve there
        kept = k0 if end == 0 else k1
        changed.append((float(old["co"][kept, 0]), left_handles[kept].tolist(), right_handles[kept].tolist(),
                        int(old["handle_left_type"][kept, 0]), int(old["handle_right_type"][kept, 0])))
        if end == 0:                               # the kept key before, and the span's first key
            old["handle_right"][k0] = h0
            old["handle_left_type"][k0], old["handle_right_type"][k0] = free, free
            new["handle_left"][0] = left
            new["handle_left_type"][0], new["handle_right_type"][0] = free, free
        else:                                      # the span's last key, and the kept key after
            new["handle_right"][end] = right
            new["handle_left_type"][end], new["handle_right_type"][end] = free, free
            new["interpolation"][end] = _BEZIER
            old["handle_left"][k1] = h1
            old["handle_left_type"][k1], old["handle_right_type"][k1] = free, free
    return changed


# An action custom property (JSON): {"data path|index|frame": [handle_left, handle_right, their
# types]} of the animator's keys whose handles a take changed to cut their segment at the dance's
# ends (_join_inside_their_segments), as the animator had them: animator_only puts them back, so
# that the next dance reads the animator's own curve (QA: read with the cut handles, a second
# take's first frame was another pose, and the intro before the song bent 76 mm).
CUT_HANDLES_KEY = "dance_cut_handles_json"


def _cut_handles(action) -> dict:
    """`action`'s CUT_HANDLES_KEY record ({} if none or unreadable)."""
    try:
        record = json.loads(action.get(CUT_HANDLES_KEY, "{}"))
    except (TypeError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _remember_cut_handles(fc, changed: list) -> None:
    """Record `changed` (from _join_inside_their_segments) on `fc`'s action, the first record of a
    key kept (an earlier take's is the animator's own)."""
    action = fc.id_data
    record = _cut_handles(action)
    for frame, left, right, left_type, right_type in changed:
        record.setdefault(f"{fc.data_path}|{fc.array_index}|{frame:.3f}", [left, right, left_type, right_type])
    action[CUT_HANDLES_KEY] = json.dumps(record)


def _restore_cut_handles(fc, record: dict) -> None:
    """Put back the handles of `fc`'s keys that a take cut (CUT_HANDLES_KEY's `record`)."""
    prefix = f"{fc.data_path}|{fc.array_index}|"
    handle_types = bpy.types.Keyframe.bl_rna.properties["handle_left_type"].enum_items
    names = {item.value: item.identifier for item in handle_types}
    for point in fc.keyframe_points:
        was = record.get(f"{prefix}{point.co[0]:.3f}")
        if was is not None:
            point.handle_left_type, point.handle_right_type = names[was[2]], names[was[3]]
            point.handle_left, point.handle_right = was[0], was[1]


def _meets_their_curve(channels, keyed: dict, types: dict, values: np.ndarray, frame: float, beyond: float) -> bool:
    """Whether every keyed channel plays `values` on `frame` (a span's end), its nearest key
    `beyond` it is the animator's (not generated), and what joins them is a key on `frame` or a
    linear or Bezier segment: keys written on the span then keep that curve as it is."""
    generated = compat.generated_key_type()[1]
    for i, x in keyed.items():
        points = channels[i].keyframe_points
        far = np.flatnonzero(np.abs(x - beyond) < 1e-3)
        if abs(channels[i].evaluate(frame) - float(values[i])) > ON_THEIR_CURVE or not len(far) \
                or types[i][far[0]] == generated:
            return False
        if not np.any(np.abs(x - frame) < 1e-3):
            nearer = np.flatnonzero(x < frame)       # the segment's first key
            if not len(nearer) or points[int(nearer[-1])].interpolation not in ('LINEAR', 'BEZIER'):
                return False
    return True


def _held_outside(obj, fcurves, bone: str, prop: str, count: int, frames: np.ndarray, sides=(True, True),
                  new_values: np.ndarray | None = None):
    """(whole frames (H,), values (H, count)) that keep what `bone`'s `prop` channels play outside
    [frames[0], frames[-1]] once keys are written on `frames` (see write_bone_rotations).
    `sides` (before, after): whether the action animates anything on that side of the span; where
    it does not, the new keys extend the take there and nothing is held (holding the old pose on
    the next frame snapped back to it: QA, a range regenerated past the take's end). Nor where
    the new keys' first (last) values, `new_values` (T, count), meet the animator's own curve on
    that side (_meets_their_curve)."""
    channels = [fcurves.find(_bone_path(bone, prop), index=i) for i in range(count)]
    keyed, types = {}, {}                        # channel index -> its key frames, their keyframe types
    for i, fc in enumerate(channels):
        if fc is not None and len(fc.keyframe_points):
            co = np.empty(2 * len(fc.keyframe_points), np.float32)
            fc.keyframe_points.foreach_get("co", co)
            keyed[i] = co[0::2].astype(np.float64)
            types[i] = np.empty(len(fc.keyframe_points), np.int32)
            fc.keyframe_points.foreach_get("type", types[i])
    lo, hi = frames[0] - 1e-3, frames[-1] + 1e-3
    before = max((x[x < lo].max() for x in keyed.values() if (x < lo).any()), default=None)
    after = min((x[x > hi].min() for x in keyed.values() if (x > hi).any()), default=None)
    # Where these channels' outermost keys on a side lie in the span and are an earlier dance's
    # (generated), what they play beyond it is that dance's hold past its end, not animation to
    # keep: the span's own end extends the take there (QA: a range regenerated up to the song's
    # end snapped back to the old dance's last pose a frame later, the hips 38 cm).
    generated = compat.generated_key_type()[1]
    if keyed and sides[0] and before is None and all(
            lo <= x[0] <= hi and types[i][0] == generated for i, x in keyed.items()):
        sides = (False, sides[1])
    if keyed and sides[1] and after is None and all(
            lo <= x[-1] <= hi and types[i][-1] == generated for i, x in keyed.items()):
        sides = (sides[0], False)
    # Where the span's end meets the animator's own curve (the dance led in or out there), that
    # curve is kept by _fill_fcurve (its segment cut, or its key there keeping its outer handle):
    # nothing is held on that side (held on whole frames, the curve between them was lost: QA).
    if new_values is not None:
        if before is not None and _meets_their_curve(channels, keyed, types, new_values[0], frames[0], before):
            before, sides = None, (False, sides[1])
        if after is not None and _meets_their_curve(channels, keyed, types, new_values[-1], frames[-1], after):
            after, sides = None, (sides[0], False)
    # The whole frames strictly between the nearest key and the span (just the one next to the
    # span where there is no key on that side).
    start = math.floor(before) + 1 if before is not None else math.ceil(lo) - (1 if sides[0] else 0)
    stop = math.ceil(after) - 1 if after is not None else math.floor(hi) + (1 if sides[1] else 0)
    held = np.array([f for f in range(start, stop + 1) if not lo <= f <= hi
                     and (before is None or f > before + 1e-3) and (after is None or f < after - 1e-3)], np.float64)
    # The keys on either side keep their handles: automatic ones would be recomputed from the new
    # neighbours, bending the curve between those keys and the ones before or after them.
    for i, x in keyed.items():
        for side in (before, after):
            for k in np.flatnonzero(np.abs(x - side) < 1e-3) if side is not None else ():
                point = channels[i].keyframe_points[int(k)]
                left, right = tuple(point.handle_left), tuple(point.handle_right)
                point.handle_left_type = point.handle_right_type = 'FREE'
                point.handle_left, point.handle_right = left, right
    current = np.asarray(getattr(obj.pose.bones[bone], prop), np.float64)
    values = np.array([[channels[i].evaluate(f) if i in keyed else current[i] for i in range(count)]
                       for f in held]).reshape(len(held), count)
    return held, values


def drop_generated_keys(obj, action, bone_names) -> None:
    """Remove the add-on's own keys (generated, and not changed by the animator) from the rotation
    and location channels of `bone_names` in `action`: a new take that starts as a copy of the
    previous one must not keep that take's dance beyond its own frames. The animator's keys stay."""
    mine = {channel: set(frames) for channel, frames in animator_keys(obj, -1e9, 1e9, action=action).items()}
    generated = compat.generated_key_type()[1]
    wanted = set(bone_names)
    cut = _cut_handles(action)
    for fc in compat.action_fcurves(action, compat.object_slot(obj, action)):
        channel = _bone_channel(fc.data_path)
        if channel is None:
            continue
        bone, prop = channel
        pb = obj.pose.bones.get(bone)
        if bone not in wanted or pb is None or prop not in (rotation_path(pb)[0], "location"):
            continue
        kp = fc.keyframe_points
        n = len(kp)
        if n == 0:
            continue
        co, types = np.empty(2 * n, np.float32), np.empty(n, np.int32)
        kp.foreach_get("co", co)
        kp.foreach_get("type", types)
        animator = mine.get((bone, prop), set())
        keep = (types != generated) | np.isin(np.round(co[0::2]).astype(int), list(animator))
        if not keep.all():
            _keep_only(fc, keep)
            if cut:                 # the earlier take's dance gone, the animator's curve is whole again
                _restore_cut_handles(fc, cut)
                fc.update()


def _keep_only(fc, keep: np.ndarray) -> None:
    """Remove the keys of `fc` where `keep` is False, every other key exactly as it was."""
    kp = fc.keyframe_points
    n = len(kp)
    old = {}
    for name, width, dtype in _KEY_ATTRS:
        buf = np.empty(n * width, dtype)
        kp.foreach_get(name, buf)
        old[name] = buf.reshape(n, width)[keep]
    for i in range(n - 1, int(keep.sum()) - 1, -1):
        kp.remove(kp[i], fast=True)
    for name, _, _ in _KEY_ATTRS:
        kp.foreach_set(name, old[name].ravel())
    fc.update()


def _fcurve(fcurves, groups, bone: str, prop: str, index: int):
    path = _bone_path(bone, prop)
    fc = fcurves.find(path, index=index)
    if fc is None:
        fc = fcurves.new(path, index=index)
        fc.group = groups.get(bone) or groups.new(bone)
    return fc


def _stamp(action, name: str, frames: np.ndarray, sums: np.ndarray) -> None:
    """Record the sums written on `frames` (see above), replacing any earlier record in their span."""
    sf, ss = _stamp_lookup(action, name)
    keep = (sf < frames[0] - 1e-3) | (sf > frames[-1] + 1e-3)
    f = np.concatenate([sf[keep], frames])
    s = np.concatenate([ss[keep], sums])
    order = np.argsort(f, kind="stable")
    flat = np.empty(2 * len(f))
    flat[0::2], flat[1::2] = f[order], s[order]
    if STAMP_KEY not in action:
        action[STAMP_KEY] = {}
    action[STAMP_KEY][name] = flat.tolist()


def _animators_signs(values: np.ndarray, kept: np.ndarray, frames: np.ndarray, fcurves,
                     joined: bool, following: np.ndarray | None = None) -> np.ndarray:
    """Quaternion channel values (T,4), continuous over time, whose keys on the `kept` frames carry
    the animator's own signs (q and -q are one rotation, but the key's value is theirs: QA25 found
    a regenerated range's continuity pass writing a user's key negated). Each stretch takes the
    sign of its nearest anchor: a kept key, where `joined` the key before the span the values
    continue, and the curve's value just after the span (`following`, where it goes on). A sign
    change (a sub-frame swing through a near-zero quaternion) falls only midway between two
    anchors that disagree, never beside a key (QA27: flipped from the key on, the bone swung 180
    degrees inside the frame before the key; QA28: a range ending beside a key of the other sign)."""
    values = np.array(values, np.float64)
    anchors = [(-1, 1.0)] if joined else []
    for k in np.flatnonzero(kept):
        theirs = np.array([fc.evaluate(frames[k]) for fc in fcurves])
        anchors.append((int(k), 1.0 if np.dot(values[k], theirs) >= 0 else -1.0))
    if following is not None:
        anchors.append((len(values), 1.0 if np.dot(values[-1], following) >= 0 else -1.0))
    if not any(sign < 0 for _, sign in anchors):
        return values
    return values * _nearest_anchors(anchors, len(values))[:, None]


def _nearest_anchors(anchors: list, frames: int) -> np.ndarray:
    """(frames, ...) each frame's value from its nearest anchor ((frame, value) pairs in frame
    order), changing midway between two anchors (never beside one)."""
    out = np.empty((frames,) + np.shape(anchors[0][1]))
    for i, (k, value) in enumerate(anchors):
        start = 0 if i == 0 else (anchors[i - 1][0] + k) // 2 + 1
        out[start:] = value
    return out


def _channel_rotation(values: np.ndarray, mode: str) -> np.ndarray:
    """One channel value (4 or 3,) of rotation `mode` -> its unit quaternion (w,x,y,z)."""
    from mathutils import Euler, Quaternion
    if mode == 'QUATERNION':
        q = Quaternion(values).normalized()
    elif mode == 'AXIS_ANGLE':
        axis = np.asarray(values[1:], float)
        norm = np.linalg.norm(axis)
        q = Quaternion(axis / norm, float(values[0])) if norm > 1e-12 else Quaternion()
    else:
        q = Euler(values, mode).to_quaternion()
    return np.array(q)


def _animators_values(values: np.ndarray, mode: str, kept: np.ndarray, frames: np.ndarray, fcurves,
                      joined: bool) -> np.ndarray:
    """Channel values (T, 4 or 3), continuous over time, whose kept keys (the animator's, on the
    `kept` frames) are written with the animator's own numbers wherever those turn the bone the
    same way (QA: Euler 7.0 came back as 0.7168, a quaternion (2, 0.4, 0, 0) as its unit one, an
    axis (0, 3, 0) as (0, 1, 0)). Euler channels whole turns apart carry that offset over the
    stretch nearest the key (as _animators_signs carries a quaternion's sign), so the curve does
    not spin a turn between a key and the dance beside it; a key whose Euler angles are
    another solution of the same turn keeps the dance's (continuous) numbers."""
    values = np.array(values, np.float64)
    turn = 2.0 * np.pi
    anchors = [(-1, np.zeros(values.shape[1]))] if joined else []
    for k in np.flatnonzero(kept):
        theirs = np.array([fc.evaluate(frames[k]) for fc in fcurves], np.float64)
        # (mathutils works in single precision: a turn of a few thousandths of a degree apart is one)
        if mode in ('QUATERNION', 'AXIS_ANGLE'):
            if _writes_as_theirs(theirs, values[k], mode):
                values[k] = theirs      # a scaled quaternion or axis: Blender normalises both
            continue
        same = abs(float(np.dot(_channel_rotation(theirs, mode), _channel_rotation(values[k], mode)))) > 1.0 - 1e-6
        if not same:
            continue
        whole = np.round((theirs - values[k]) / turn)
        if np.abs(theirs - values[k] - whole * turn).max() < 1e-4:
            anchors.append((int(k), whole * turn))
    if mode in ('QUATERNION', 'AXIS_ANGLE') or not any(np.any(o) for _, o in anchors):
        return values
    values += _nearest_anchors(anchors, len(values))
    for k, _ in anchors:    # exactly theirs
        if k >= 0:
            values[k] = [fc.evaluate(frames[k]) for fc in fcurves]
    return values


def _their_numbers_at_the_joins(values: np.ndarray, mode: str, frames: np.ndarray, fcurves, before: bool,
                                after: bool) -> np.ndarray:
    """Quaternion or axis-angle channel values (T, 4) whose first frame (where the animator's curve
    goes on `before` the span) and last (`after` it) take the numbers the animator's curve plays
    there when those turn the bone the same way, sign included: a curve interpolated between
    keys plays a scaled quaternion or axis there (a Linear intro into the song: w 0.825), and a
    unit one keyed in its place bent the animator's curve before the song (QA: 20 mm at a hand)."""
    for k, joins in ((0, before), (len(values) - 1, after)):
        if not joins:
            continue
        theirs = np.array([fc.evaluate(frames[k]) for fc in fcurves], np.float64)
        if _writes_as_theirs(theirs, values[k], mode):
            values[k] = theirs
    return values


def _writes_as_theirs(theirs: np.ndarray, ours: np.ndarray, mode: str) -> bool:
    """Whether the animator's numbers `theirs` for a quaternion or axis-angle channel turn the
    bone as `ours` do, the same sign (quaternion) and angle (axis-angle: not the same turn the
    other way round the axis), so that theirs can be written in place of ours."""
    if float(np.dot(_channel_rotation(theirs, mode), _channel_rotation(ours, mode))) <= 1.0 - 1e-6:
        return False
    return mode == 'QUATERNION' or bool(np.allclose(theirs[0], ours[0], atol=1e-5))


def write_bone_rotations(obj, action, bone_names, frames, quats, locations=None, key_type: str = 'GENERATED',
                         kept=None, kept_locations=None, hold_outside: bool = False) -> None:
    """Key the rotations (and optional locations) of `obj`'s bones `bone_names` on `frames` in
    `action`, each bone in its OWN rotation mode (never changed): quaternion, any Euler order or
    axis-angle, continuous from frame to frame and from the key just before `frames[0]`.

    quats: (T,B,4) w,x,y,z, each bone's rotation in its pose basis (what `rotation_quaternion`
    would hold). locations: {bone name: (T,3)} pose-basis locations. Keys get `key_type`
    ('GENERATED': the add-on's own, regenerated next time), except where `kept` (T,B) bool or
    `kept_locations` {bone: (T,) bool} is True: the animator's keys carried over, type 'KEYFRAME'.
    Existing keys of these channels within [frames[0], frames[-1]] are replaced; keys outside
    stay untouched, so a frame range can be rewritten inside an existing action. With
    `hold_outside`, what the channels played outside the span stays as it was too: between the
    span and the nearest key on each side, the old curve is keyed on whole frames (generated
    keys), since new keys at the span's edges would otherwise bend the interpolation there; a
    channel with no keys yet holds its current value on the frame before and after. Beyond the
    action's last key (or before its first), nothing is held: the span extends the take. The keys on
    either side keep their handles where they are (set free), so their curves do not bend.
    F-curve modifiers on the written channels are baked beside the dance and removed (_bake_beside), and a
    written curve that the dance begins or ends extrapolates constant: `action` is always a take,
    never the animator's own action."""
    frames = np.asarray(frames, np.float64)
    quats = np.asarray(quats, np.float64)
    T = len(frames)
    if T == 0:
        return
    fcurves, groups = compat.ensure_channels(obj, action)
    generated = compat.generated_key_type()[1] if key_type == 'GENERATED' else compat.key_type_value(key_type)
    keyframe = compat.key_type_value('KEYFRAME')

    def types_for(mask):
        return np.where(mask, keyframe, generated).astype(np.int32) if mask is not None \
            else np.full(T, generated, np.int32)

    span = compat.keyed_range(obj, action) if hold_outside else None
    sides = (span is not None and span[0] < frames[0] - 0.5, span is not None and span[1] > frames[-1] + 0.5)

    def write(bone, prop, values, mask):
        values = np.asarray(values, np.float32)
        at, types = frames, types_for(mask)
        if hold_outside:
            held_at, held = _held_outside(obj, fcurves, bone, prop, values.shape[1], frames, sides, values)
            order = np.argsort(np.concatenate([held_at, frames]), kind="stable")
            at = np.concatenate([held_at, frames])[order]
            values = np.concatenate([held.astype(np.float32), values])[order]
            types = np.concatenate([np.full(len(held_at), generated, np.int32), types])[order]
        for i in range(values.shape[1]):
            fc = _fcurve(fcurves, groups, bone, prop, i)
            # The take's keys are the values the dance shows (the animator's keys as they showed,
            # modifiers included): a modifier copied from the earlier action would apply twice,
            # and a Cycles one would loop the dance. What it played beside the dance is baked.
            if len(fc.modifiers):
                _bake_beside(fc, at[0], at[-1], bpy.context.scene)
            _fill_fcurve(fc, at, values[:, i], types)
            # Where the dance is the curve's first or last key, the take holds that pose beyond
            # it: the animator's Linear extrapolation, meant for their sparse keys, would carry
            # the dance's last frame-to-frame step on for ever (a dancer skating off after the song).
            first, last = fc.keyframe_points[0].co[0], fc.keyframe_points[-1].co[0]
            if first >= frames[0] - 0.5 or last <= frames[-1] + 0.5:
                fc.extrapolation = 'CONSTANT'
        _stamp(action, _stamp_name(bone, prop), at, values.astype(np.float64).sum(axis=1))

    for b, name in enumerate(bone_names):
        pb = obj.pose.bones[name]
        prop, n = rotation_path(pb)
        previous = following = None
        existing = [fcurves.find(_bone_path(name, prop), index=i) for i in range(n)]
        if all(fc is not None and len(fc.keyframe_points) for fc in existing):
            first_key = min(fc.keyframe_points[0].co[0] for fc in existing)
            if first_key < frames[0] - 0.5:
                previous = [fc.evaluate(frames[0] - 1) for fc in existing]
            # The curve goes on after the span (a range regenerated, a key after the dance): the
            # span ends in its sign, or the curve between them ran through a zero quaternion
            # (QA: a hips key 1.5 s after the song, the body collapsed for a frame, 48 m/s).
            if max(fc.keyframe_points[-1].co[0] for fc in existing) > frames[-1] + 0.5:
                following = np.array([fc.evaluate(frames[-1] + 1) for fc in existing])
        mask = None if kept is None else np.asarray(kept)[:, b]
        values = rotation_values(quats[:, b], pb.rotation_mode, previous)
        if pb.rotation_mode == 'QUATERNION' and all(fc is not None for fc in existing) and \
                (mask is not None or following is not None):
            values = _animators_signs(values, np.zeros(len(values), bool) if mask is None else mask, frames,
                                      existing, joined=previous is not None, following=following)
        if mask is not None and mask.any() and all(fc is not None for fc in existing):
            values = _animators_values(values, pb.rotation_mode, mask, frames, existing, joined=previous is not None)
        if pb.rotation_mode in ('QUATERNION', 'AXIS_ANGLE') and all(fc is not None and len(fc.keyframe_points)
                                                                    for fc in existing):
            values = _their_numbers_at_the_joins(
                values, pb.rotation_mode, frames, existing, before=previous is not None,
                after=max(fc.keyframe_points[-1].co[0] for fc in existing) > frames[-1] + 0.5)
        write(name, prop, values, mask)
    for name, loc in (locations or {}).items():
        write(name, "location", np.asarray(loc, np.float64),
              None if kept_locations is None or name not in kept_locations else np.asarray(kept_locations[name]))
