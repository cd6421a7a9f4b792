"""Operators: read the Dance settings, call scene_io / runner, report. No generation logic here.

Every user mistake surfaces as `self.report({'ERROR'}, one_line)` and {'CANCELLED'}, never a
traceback. Generate is modal when invoked from the UI (a worker thread plus a window-manager
timer; Esc or the Cancel button stops it) and synchronous when executed (scripts, background
mode, the bpy module), since timers never fire headless.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from . import _engine_path  # noqa: F401
from engine.defaults import DEFAULT_STEPS
from . import blender_compat as compat, preferences

_TIMER_STEP = 0.1  # seconds between progress polls


def _engine_error_types():
    from engine.errors import Cancelled, EngineError
    return EngineError, Cancelled


def dependency_error() -> str | None:
    missing = preferences.missing_dependencies()
    if missing:
        return (f"missing Python packages: {', '.join(missing)}: open Preferences > Add-ons > Dance Generator "
                "and press 'Install Dependencies'")
    return None


@dataclass
class Plan:
    """What Generate would do now: the song's span and the frames to fill."""
    span: object          # scene_io.AudioSpan
    first: int
    last: int
    fps: float
    strip: object = None  # the sound strip danced (None: a file)
    song_scene: object = None  # song_scene.SongScene: the scene whose sequencer holds the strip

    @property
    def start_seconds(self) -> float:
        """Seconds into the file of the first frame."""
        return self.file_seconds(self.first)

    def file_seconds(self, frame: int) -> float:
        """Seconds into the file that scene frame `frame` plays (a retimed strip plays span.speed
        of them a second)."""
        return self.span.start + (frame - self.span.first_frame) / self.fps * self.span.speed

    def gain(self, first: int, last: int):
        """The strip's volume over frames first..last as engine.api.generate's `gain` (seconds from
        `first`, linear gains); None where it is 1 throughout (a file, an untouched strip)."""
        volumes = self.span.volumes
        if volumes is None:
            return None
        frames = np.arange(first, last + 1)
        return (frames - first) / self.fps, volumes[frames - self.span.first_frame]

    @property
    def duration(self) -> float:
        return (self.last - self.first + 1) / self.fps


# A song heard for less than this in the scene is danced, with a note saying how short it is.
SHORT_SONG_SECONDS = 1.0


def plan(scene, settings, sequencer_scene=None) -> Plan:
    """Resolve the song and frame range from the settings; raises EngineError on a user mistake.
    `sequencer_scene`: the scene the Video Sequencer shows (blender_compat.sequencer_scene), where
    the song may lie when it is not in `scene` itself (song_scene)."""
    from . import scene_io, song_scene
    from engine.errors import EngineError
    if scene.render.frame_map_old != scene.render.frame_map_new:
        # Blender then shows the animation of frame f*old/new on frame f, and the sound as it is.
        raise EngineError(f"Time Stretching is {scene.render.frame_map_old}:{scene.render.frame_map_new} (Output "
                          "Properties > Frame Range): the dance would play at another speed than the song; set Old "
                          "and New alike to generate")
    fps = scene_io.scene_fps(scene)
    strip = where = None
    if settings.audio_source == 'STRIP':
        where = song_scene.where_the_song_plays(scene, sequencer_scene, settings.strip_name)
        strip = scene_io.find_sound_strip(where.scene, settings.strip_name)
        span = where.onto_dancer_frames(scene_io.sound_strip_audio(where.scene, strip))
    else:
        span = scene_io.file_audio(scene, settings.audio_file, scene.frame_start)
    song_first, song_last = span.first_frame, span.first_frame + span.num_frames - 1
    if settings.use_strip_range:
        first, last = song_first, song_last
    else:
        first, last = settings.frame_start, settings.frame_end
        if last < first:
            raise EngineError(f"the frame range {first}-{last} is empty: End must not be before Start")
        if first < song_first or last > song_last:
            # (QA: "lie outside" for a range mostly inside, one frame past the end)
            where = "lie outside" if last < song_first or first > song_last else "reach outside"
            raise EngineError(f"frames {scene_io.frame_span(first, last)} {where} the song, which plays on frames "
                              f"{scene_io.frame_span(song_first, song_last)}")
    if last < first:
        raise EngineError("the song is shorter than one frame")
    return Plan(span, first, last, fps, strip, where)


def dancer(context):
    """The armature to animate: the panel's choice, else the active object if it is an armature,
    else the armature that deforms the active mesh (animators click the body, not the bones)."""
    settings = context.scene.dance
    if settings.armature is not None:
        return settings.armature
    return armature_of(context.object)


def armature_of(obj):
    """`obj` if it is an armature; for a mesh, the armature of its first Armature modifier, else
    its armature parent; None otherwise."""
    if obj is None or obj.type == 'ARMATURE':
        return obj
    for mod in getattr(obj, "modifiers", ()):
        if mod.type == 'ARMATURE' and mod.object is not None and mod.object.type == 'ARMATURE':
            return mod.object
    parent = obj.parent
    return parent if parent is not None and parent.type == 'ARMATURE' else None


def device_choice(context) -> str:
    choice = context.scene.dance.device
    if choice == 'PREFS':
        prefs = preferences.get(context)
        choice = prefs.default_device if prefs is not None else 'AUTO'
    return choice.lower()


def weights_choice(context) -> str | None:
    """The preferences' weights file, or None for the engine's default (the shipped weights)."""
    prefs = preferences.get(context)
    return bpy.path.abspath(prefs.weights_path) if prefs is not None and prefs.weights_path else None


def checked_weights(context) -> str | None:
    """weights_choice, refused in one line that says where it is set when the file is not there
    (the engine's own message speaks of the command line's --weights)."""
    from engine.errors import EngineError
    weights = weights_choice(context)
    if weights is not None and not os.path.isfile(weights):
        raise EngineError(f"the Weights File set in the add-on's preferences is not there: {weights} (choose "
                          "another, or clear it to use the shipped weights)")
    return weights


# Regenerating a frame range: this much of the existing dance on each side is given to the
# engine as fully keyed context, so that the new part flows out of and into it.
CONTEXT_SECONDS = 0.5


def range_style(action, asked_range, style: str) -> str | None:
    """The style a range `asked_range` (first, last) regenerated in `style` "any" keeps: the one
    its take was danced in (style "any" records the one it drew), whatever the seed (drawn again
    from the new seed, a rumba's section came out a waltz), also where the range covers the whole
    take. None for a whole dance (no range asked), another style, or no known style."""
    if action is None or asked_range is None or style != "any":
        return None
    taken = action.get("dance_drawn_style") or action.get("dance_style")
    return taken if isinstance(taken, str) and taken != "any" else None


def action_name(song_path: str, style: str, seed: int) -> str:
    """The name takes of this song, style and seed share (each adds ' take N'; takes.take_name
    fits the whole within Blender's limit)."""
    song = os.path.splitext(os.path.basename(song_path))[0]
    return f"Dance {song} {style} s{seed}"


def name_take(request) -> None:
    """Give `request` the next take's name for its song, style and seed (and record it)."""
    from . import takes
    base = action_name(request.audio_path, request.style, request.seed)
    request.action_name, number = takes.take_name(base, bpy.data.objects.get(request.armature_name))
    request.metadata.update(take=number, take_base=base, style=request.style, seed=request.seed)


def stage_radius(settings, obj, bone_map, frame: int) -> float | None:
    """The panel's stage choice as engine.api.generate's `stage_radius`, in the dance's metres:
    the panel's Radius is a distance in the scene (Blender units, shown in the scene's units),
    measured by the dancer's size on the dance's first frame `frame`."""
    if settings.stage == 'RADIUS':
        return settings.stage_radius / dancer_units_per_metre(obj, bone_map, frame)
    return {'DEFAULT': None, 'IN_PLACE': 0.0}[settings.stage]


def bind_pose_span(obj, bone_map, first: int, last: int) -> str | None:
    """Frames in first..last whose keys hold an imported bind pose (keys.bind_pose_frames), for
    the SMPL dancer (bone_map None) or a character."""
    from . import rig_io, scene_io
    return (rig_io.bind_pose_span(obj, bone_map, first, last) if bone_map is not None
            else scene_io.bind_pose_span(obj, first, last))


def root_height_notes(cons, first: int, obj, bone_map, scene, danced: tuple[int, int] | None = None) -> list[str]:
    """Notes, in the scene's units, when the constraints hold the hips far above a standing
    dancer's or near the floor (engine.finishing.editing.raised_root_frames, sunk_root_frames).
    `danced` (first, last frame): only keys there count; the rest is the dance kept around a
    regenerated range, the take's own (QA: its landing from a keyed jump was listed as keys)."""
    from engine.finishing.editing import raised_root_frames, sunk_root_frames
    per_metre = dancer_units_per_metre(obj, bone_map, first)

    def length(metres: float) -> str:
        return bpy.utils.units.to_string(scene.unit_settings.system, 'LENGTH',
                                         metres * per_metre * scene.unit_settings.scale_length, precision=3)

    def note(frames, says: str) -> list[str]:
        listed = ", ".join(str(first + k) for k in frames[:4]) + (", ..." if len(frames) > 4 else "")
        return [f"the keys hold the hips on frame(s) {listed} {says}"] if len(frames) else []
    among = None
    if danced is not None:
        among = np.zeros(cons.num_frames, bool)
        among[max(0, danced[0] - first):max(0, danced[1] - first + 1)] = True
    high, above = raised_root_frames(cons, among)
    low, lowest = sunk_root_frames(cons, among)
    depth = f"{length(-lowest)} under" if lowest < 0 else f"only {length(lowest)} above"
    return (note(high, f"up to {length(above)} above where '{obj.name}' stands: its feet leave the floor around them")
            + note(low, f"{depth} the floor '{obj.name}' stands on: its feet go under it around them"))


def nothing_to_dance_note(obj, cons, a: int, b: int, bone_map) -> str | None:
    """A note when the animation fixes the whole body on every frame a..b (rows of `cons`) to be
    danced: a baked clip over the whole song (a character imported with its mocap still
    assigned), kept whole, so the take plays that clip and nothing new is danced (QA: "done" and
    nothing else was said)."""
    from engine.body.skeleton import JOINT_NAMES, NUM_JOINTS
    rows = slice(max(a, 0), b + 1)
    # Every joint the dancer has (a character's mapped ones), keyed or not: arms left free dance.
    driven = np.ones(NUM_JOINTS, bool) if bone_map is None else np.isin(JOINT_NAMES, list(bone_map))
    if not (cons.trans_mask[rows].all() and cons.joint_mask[rows][:, driven].all()):
        return None
    return (f"the animation of '{obj.name}' keys its whole body on every frame danced, and keys are kept, so the "
            "take plays it as it is: for a new dance, unassign its action in the Action Editor, or choose "
            "frames it does not key")


def unplayed_original_note(obj) -> str | None:
    """A note when the dancer plays no action but the add-on keeps the animator's own (its take was
    deleted or unassigned): the new dance is made without those keys, which the animator may not
    expect, and the Takes list brings them back."""
    from . import takes
    ad = obj.animation_data
    original = takes.original_action(obj)
    if original is None or (ad is not None and ad.action is not None):
        return None
    return (f"'{obj.name}' plays no action, so the keys of your action '{original.name}' are not used: "
            f"click '{takes.ORIGINAL_PREFIX}{original.name}' under Takes to dance from them")


def unslotted_action_note(obj) -> str | None:
    """A note when the dancer's action plays through no slot (Blender 4.4+: an action made on
    another object and assigned in the Action editor plays nothing there) and its keys are still
    read, from the slot compat.object_slot falls back to: the animator sees no animation, yet
    the dance keeps those keys (QA)."""
    from . import blender_compat as compat
    ad = obj.animation_data
    action = ad.action if ad is not None else None
    if action is None or not compat.is_slotted(action) or getattr(ad, "action_slot", None) is not None:
        return None
    slot = compat.object_slot(obj, action)
    if slot is None:
        return None
    return (f"'{obj.name}' plays action '{action.name}' through no slot, so none of it shows; the keys of its "
            f"slot '{slot.identifier}' were used: pick that slot in the Action editor to see them, "
            "or unassign the action")


def dancer_units_per_metre(obj, bone_map, frame: int | None = None) -> float:
    """Blender units in the world per metre of the dance: the SMPL dancer's object scale (its
    bones are in metres), a character's leg length over SMPL's (rig_io.retargeter), as on the
    dance's first frame `frame` (rig_io.world_matrix; None: as it stands now)."""
    from . import rig_io
    if bone_map is not None:
        return rig_io.retargeter(obj, bone_map, frame).scale
    return abs(float(np.linalg.det(rig_io.world_matrix(obj, frame)[:3, :3]))) ** (1.0 / 3.0)


def regeneration_context(obj, p: Plan) -> tuple[int, int] | None:
    """(first, last) frames to generate when only p.first..p.last is to be rewritten inside the
    dancer's current action, which animates frames outside it: the range plus up to
    CONTEXT_SECONDS of the existing dance on each side (within the song and the action).
    None when the current action has nothing outside the range (a plain generation)."""
    keyed = compat.keyed_range(obj)
    if keyed is None:
        return None
    a_first, a_last = keyed
    if a_first >= p.first and a_last <= p.last:
        return None
    k = max(2, int(round(CONTEXT_SECONDS * p.fps)))
    song_first, song_last = p.span.first_frame, p.span.first_frame + p.span.num_frames - 1
    return (max(p.first - k, song_first, min(a_first, p.first)),
            min(p.last + k, song_last, max(a_last, p.last)))


def song_moved_note(obj, action, p: Plan, first: int, last: int) -> str | None:
    """A note when the animator's keys on the current take were set against the song played
    otherwise: the strip moved, or the scene's frame rate or the strip's speed changed since the
    take was danced (its dance_frame_start, dance_fps, dance_audio_start, dance_audio_speed).
    Their keys keep their frame numbers, so each now meets another moment of the music, and
    nothing said so (QA: 24 -> 30 fps, 4 of 5 keys off the beat; a strip moved 48 frames)."""
    from . import keys, takes
    if not takes.is_take(action) or action.get("dance_song") != p.span.path:
        return None
    try:
        was = {k: float(action["dance_" + k]) for k in ("frame_start", "fps", "audio_start", "audio_speed")}
    except (KeyError, TypeError, ValueError):
        return None       # a take from before these were recorded

    def then(frame):      # seconds into the file the frame played when the take was danced
        return was["audio_start"] + (frame - was["frame_start"]) / was["fps"] * was["audio_speed"]
    # Measured on their keys' frames (QA: at the range's ends, 0.74 s where the keys moved 0.33).
    keyed = sorted({f for frames in keys.animator_keys(obj, first, last).values() for f in frames})
    if not keyed:
        return None
    worst = max((p.file_seconds(f) - then(f) for f in keyed), key=abs)
    if abs(worst) < 0.5 / p.fps * p.span.speed:
        return None
    changes = []
    if abs(was["fps"] - p.fps) > 1e-6:
        changes.append(f"the scene's frame rate went from {was['fps']:g} to {p.fps:g} fps")
    if abs(was["audio_speed"] - p.span.speed) > 1e-6:
        changes.append(f"the strip's speed went from {was['audio_speed']:g} to {p.span.speed:g}")
    if not changes:
        changes.append("the song moved on the timeline")
    return (f"since take '{action.name}' was danced, {' and '.join(changes)}: your keys on it keep their frames, "
            f"so they now meet the music up to {abs(worst):.2f} s {'later' if worst > 0 else 'earlier'} in the song")


def pose_beside(obj, bone_map, frame: int, step: int, fps: float, scene, cons, row: int) -> tuple | None:
    """(poses (72,), trans (3,)) SMPL: the pose the animator's own animation plays on the frame
    beside the dance's `frame` (`step` -1: the one before its first frame, +1: the one after its
    last), read as the constraints `cons` read `frame` (their row `row`), where that animation
    moves into the dance's first frame or on out of its last: the dance leaves (reaches) it at the
    animation's own speed (engine.finishing.setoff.Arrival) rather than at its drawn speed in any
    direction (QA: a hand arriving at 0.08 m/s left at 0.90 in one frame; one leaving at 0.85 was
    reached at 0.20). A joint or root that jumps there (a stepped key:
    setoff.pose_beside_without_cuts) counts as still; None when all of them are still or jump."""
    from engine.finishing.setoff import Arrival, pose_beside_without_cuts
    from . import rig_io, scene_io
    frames = sorted({frame + 2 * step, frame + step, frame})
    if bone_map is not None:
        three, _ = rig_io.read_character_constraints(obj, bone_map, frames[0], frames[-1], fps, scene=scene, lead=frames)
    else:
        three = scene_io.read_constraints(obj, frames[0], frames[-1], fps, scene=scene, lead=frames)
    # Read from another first frame, a character is placed as there (an animated object): the
    # steps count, and `frame` itself is the constraints' own.
    here = frames.index(frame)
    poses, trans = three.poses.copy(), three.trans + (cons.trans[row] - three.trans[here])
    poses[here], trans[here] = cons.poses[row], cons.trans[row]
    away = [frames.index(f) for f in (frame + 2 * step, frame + step, frame)]     # furthest first
    poses, trans = pose_beside_without_cuts(poses[away], trans[away], fps)
    if Arrival.between((poses, trans), (cons.poses[row], cons.trans[row]), fps).is_still:
        return None
    return poses, trans


def lead_in(obj, bone_map, first: int) -> int | None:
    """The frame the animator's own animation before the dance last keys (an intro they keyed),
    when the dance should start from the pose it leaves there rather than jump to its own (QA:
    0.8 m in one frame at the song's start); None when nothing of theirs is keyed before `first`,
    or when that key is an imported bind pose, which is no pose to dance from. A take's generated
    keys are not theirs: the new take drops them, and counted, a generated key left beside the
    song pinned the next dance's first frame to an old take's pose (QA: 119 degrees off)."""
    from . import keys, rig_io, rigify_ik
    if obj.animation_data is None or obj.animation_data.action is None:
        return None
    posed = rig_io.danced_bones(obj, bone_map)
    found = keys.animator_keys(obj, -np.inf, first - 1, posed_bones=posed)
    frames = [frames[-1] for (bone, _), frames in found.items() if bone in posed]
    frames += [f[-1] for f in rigify_ik.ik_keyed(obj, bone_map, -np.inf, first - 1).values()]   # a Rigify limb on IK
    if not frames:
        return None
    before = max(frames)
    if bind_pose_span(obj, bone_map, before, before) is not None:
        return None
    return before


# How far after the dance an animator's pose may lie and still be led into: further on, the
# take's curves ease over the gap (pinned there, the body stood still for the whole gap, and the
# dance rushed into the pose: QA, a key 500 frames on).
LEAD_OUT_SECONDS = 2.0
# The share of the dancer's posed bones keyed on that frame for it to be a whole pose to end in;
# a partial one leads out only the bones it keys (fixing the whole last frame to it pinned every
# other bone at rest and the root at the origin: QA).
LEAD_OUT_POSE_SHARE = 0.9


class LeadOut(NamedTuple):
    frame: int              # the animator's key after the dance
    bones: frozenset        # the posed bones it keys (rotation)
    root: bool              # whether it keys the root's place
    whole: bool             # a whole-body pose: the dance's last frame is fixed entirely


def lead_out(obj, bone_map, last: int, fps: float) -> LeadOut | None:
    """The animator's own pose after the dance (keys within LEAD_OUT_SECONDS of its last frame;
    not a take's generated keys, which the new take drops), when the dance should end in the
    pose the animation passes on its last frame on the way there: from a dance ending in a pose
    of its own the curves turned the shoulder 115 degrees in the one frame to a key just after
    the song (QA, a key on frame 241 of a 24 fps scene whose song ends on 240). None otherwise,
    or when that key is an imported bind pose."""
    from . import keys, rig_io, rigify_ik
    if obj.animation_data is None or obj.animation_data.action is None:
        return None
    posed = rig_io.danced_bones(obj, bone_map)
    root_bone = rig_io.root_bone_name(bone_map) if bone_map is not None else "pelvis"
    span = (last + 1, last + max(1, round(LEAD_OUT_SECONDS * fps)))
    found = keys.animator_keys(obj, *span, posed_bones=posed) | keys.moved_by_modifiers(obj, *span)
    on_ik = rigify_ik.ik_keyed(obj, bone_map, *span)   # a Rigify limb on IK: its FK controls, as it shows
    if not found:
        return None
    after = min(frames[0] for frames in found.values())
    if bind_pose_span(obj, bone_map, after, after) is not None:
        return None
    bones = frozenset({bone for (bone, prop), frames in found.items()
                       if after in frames and bone in posed and prop != "location"}
                      | {bone for bone, frames in on_ik.items() if after in frames})
    root = any(after in frames for (bone, prop), frames in found.items() if prop == "location" and bone == root_bone)
    if not bones and not root:
        return None
    # A Rigify limb on IK reaches for targets placed from the rig's root, not the body: the
    # dance ends in the whole pose there, or the limbs stretch to them after it (QA: 25 m/s).
    through_ik = any(after in frames for frames in on_ik.values())
    return LeadOut(after, bones, root, through_ik or len(bones) >= LEAD_OUT_POSE_SHARE * len(posed))


def build_request(context):
    """Everything the worker needs, read on the main thread."""
    from . import keys, rig_io, runner, scene_io, song_scene
    scene, settings = context.scene, context.scene.dance
    obj = dancer(context)
    bone_map = rig_io.check_dancer(obj)   # None: the SMPL dancer; else own character (issue 14)
    sequencer_scene = compat.sequencer_scene(context)
    p = plan(scene, settings, sequencer_scene)
    write_range = None
    first, last = p.first, p.last
    if not settings.use_strip_range:
        around = regeneration_context(obj, p)
        if around is not None:
            write_range, (first, last) = (p.first, p.last), around
    # Frames fixed at the pose shown there: the dance around a regenerated range.
    fixed = [f for f in range(first, last + 1) if not p.first <= f <= p.last]
    # Frames fixed at the pose the animator's own animation leaves there (not a take's generated
    # keys): the first, where animation before the dance leads into it, and the last, where a
    # whole pose after it is led out into (a partial pose: `partial`, those bones only).
    # A regenerated range with no kept dance on a side (it starts or ends with the song) is led
    # into or out of there as a whole dance is (QA: a range from the song's first frame jumped
    # 44 cm from the intro).
    lead = []
    intro = lead_in(obj, bone_map, first) if first == p.first else None
    if intro is not None:
        lead.append(first)
    outro = lead_out(obj, bone_map, last, p.fps) if last == p.last else None
    partial = None
    if outro is not None and outro.whole and last not in lead:
        lead.append(last)
    elif outro is not None and not outro.whole:
        partial = (last, outro.bones, outro.root)
    if bone_map is not None:   # own character: constraints from its bones, its keys carried over
        cons, kept = rig_io.read_character_constraints(obj, bone_map, first, last, p.fps, settings.keep_parts(),
                                                       settings.keep_root, scene, context=fixed, partial=partial,
                                                       lead=lead)
    else:
        cons = scene_io.read_constraints(obj, first, last, p.fps, settings.keep_parts(), settings.keep_root, scene,
                                         context=fixed, partial=partial, lead=lead)
        kept = scene_io.key_masks(obj, first, last)
    start = p.file_seconds(first)
    # An intro held into the song is set off from as from standing; one moving into it is carried on.
    still_before, pose_before = intro is not None and keys.holds_still_into(obj, first), None
    if intro is not None and not still_before:
        pose_before = pose_beside(obj, bone_map, first, -1, p.fps, scene, cons, 0)
        still_before = pose_before is None
    # An outro moving on out of the song's last frame is reached at the speed it leaves with.
    pose_after = pose_beside(obj, bone_map, last, 1, p.fps, scene, cons, last - first) if outro is not None else None
    action = obj.animation_data.action if obj.animation_data is not None else None
    style = settings.style
    # Quality Fast asks for the engine's default steps, which the shipped student stands for
    # (engine.sampler.fewstep); Best runs the teacher at the panel's Steps.
    steps = settings.steps if settings.quality == 'BEST' else DEFAULT_STEPS
    request = runner.Request(
        audio_path=p.span.path, start=start, duration=(last - first + 1) / p.fps, fps=p.fps,
        num_frames=last - first + 1, frame_start=first, armature_name=obj.name, scene_name=scene.name,
        action_name="", armature_uid=obj.session_uid, action_uid=action.session_uid if action is not None else 0,
        keys_digest=keys.keys_digest(obj, action), style=style, seed=settings.seed,
        steps=steps, quality=settings.quality.lower(), guidance=settings.guidance, autoguidance=settings.autoguidance,
        device=device_choice(context), constraints=cons,
        weights=checked_weights(context), stage_radius=stage_radius(settings, obj, bone_map, first),
        wait_in_silence=settings.wait_in_silence, speed=p.span.speed, gain=p.gain(first, last),
        still_before=still_before, pose_before=pose_before, pose_after=pose_after,
        animation_beside=(intro is not None, outro is not None and outro.whole),
        kept=kept, write_range=write_range, bone_map=bone_map,
        range_style=range_style(action, None if settings.use_strip_range else (p.first, p.last), style),
        metadata={"song": p.span.path, "steps": steps, "quality": settings.quality.lower(),
                  "guidance": settings.guidance, "autoguidance": settings.autoguidance,
                  "audio_start": start, "audio_speed": p.span.speed, "wait_in_silence": settings.wait_in_silence,
                  "frame_start": first, "fps": p.fps})
    request.notes.extend(rig_io.dancer_notes(obj, bone_map))
    note = rig_io.moving_object_note(obj, p.first, p.last)
    if note:
        request.notes.append(note)
    heard = p.last - p.first + 1
    if settings.use_strip_range and heard < SHORT_SONG_SECONDS * p.fps:
        # QA31: a strip heard on 1-2 frames made a 1-2 frame dance, unsaid.
        frames = "frames" if heard > 1 else "frame"
        request.notes.append(f"the song is heard on {heard} {frames} only ({frames} "
                             f"{scene_io.frame_span(p.first, p.last)}): the dance is that short")
    note = song_moved_note(obj, action, p, first, last)
    if note:
        request.notes.append(note)
    if p.strip is not None:
        where = p.song_scene
        note = scene_io.also_heard_note(where.scene, p.strip, p.first - where.shift, p.last - where.shift)
        if note:
            request.notes.append(note)
        note = song_scene.other_song_note(scene, sequencer_scene, p.strip) \
            if not where.is_elsewhere else None
        if note:
            request.notes.append(note)
        if where.is_elsewhere:
            request.notes.append(f"the song '{p.strip.name}' plays in the Video Sequencer's scene '{where.scene.name}', "
                                 f"which shows '{scene.name}' through {where.through}: the dance follows it as heard there")
    if intro is not None:
        request.notes.append(f"the dance starts from the pose '{obj.name}' holds on frame {first}, where its animation "
                             f"keyed before it (last on frame {intro}) leads"
                             + (", and sets off from it as from standing" if request.still_before
                                else ", and goes on out of it at the speed your animation arrives with"))
    if outro is not None:
        what = "the pose" if outro.whole else "the pose of the bones you keyed"
        request.notes.append(f"the dance ends in {what} '{obj.name}' passes on frame {last} on its way to the key "
                             f"on frame {outro.frame}"
                             + (", at the speed your animation leaves it" if request.pose_after is not None else ""))
    danced = rig_io.posed_bones(bone_map) if bone_map else {b.name for b in obj.data.bones}
    danced -= rig_io.spinning_bones(obj, bone_map)                  # the hips' spins are danced
    for note in (keys.off_frame_note(obj, first, last), keys.long_turn_note(obj, first, last, danced),
                 keys.spin_note(cons.pelvis_turns, cons.joint_mask[:, 0], first)):
        if note:
            request.notes.append(note)
    if first < 0:   # runner.extend_frame_range cannot reach them: a scene's range starts at 0 at the earliest
        request.notes.append(f"frames {scene_io.frame_span(first, min(last, -1))} are danced but lie before frame 0, "
                             "where a scene's frame range cannot start: renders begin at frame 0")
    # Frames before 0 cut by a Preview Range from 0 are the note above's; one starting below 0 cuts its own.
    preview_start = scene.frame_preview_start
    if scene.use_preview_range and (preview_start > (first if preview_start < 0 else max(first, 0))
                                    or scene.frame_preview_end < last):
        # The take grows the scene's frame range (runner.extend_frame_range), but playback loops
        # in a Preview Range the animator set, which is theirs to change.
        preview = scene_io.frame_span(preview_start, scene.frame_preview_end)
        request.notes.append(f"the Preview Range (frames {preview}) is on: "
                             f"playback leaves out part of the dance (frames {scene_io.frame_span(first, last)}) "
                             "until you turn it off in the Timeline")
    span = bind_pose_span(obj, bone_map, first, last)
    if span is not None:
        request.notes.append(keys.bind_pose_note(span))
    request.notes.extend(root_height_notes(cons, first, obj, bone_map, scene, write_range))
    note = nothing_to_dance_note(obj, cons, p.first - first, p.last - first, bone_map)
    if note:
        request.notes.append(note)
    ad = obj.animation_data
    if ((settings.keep_parts() or settings.keep_root) and (ad is None or ad.action is None)
            and rig_io.nla_only_note(obj, bone_map) is None):
        request.notes.append(f"'{obj.name}' has no animation: the kept body parts hold its current pose")
    for note in (unplayed_original_note(obj), unslotted_action_note(obj)):
        if note:
            request.notes.append(note)
    name_take(request)
    return request


def _redraw(context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ('VIEW_3D', 'PROPERTIES'):
                area.tag_redraw()


class DANCE_OT_generate(bpy.types.Operator):
    """Generate a dance for the song on the SMPL armature, keeping every key you set"""
    bl_idname = "dance.generate"
    bl_label = "Generate Dance"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        from . import runner
        return runner.active_job() is None

    def _fail(self, context, message: str):
        settings = context.scene.dance
        settings.status, settings.is_running = message, False
        self.report({'ERROR'}, message)
        return {'CANCELLED'}

    def execute(self, context):
        msg = dependency_error()
        if msg:
            return self._fail(context, msg)
        from . import runner, scene_io
        EngineError, Cancelled = _engine_error_types()
        settings = context.scene.dance
        last = [-1]

        def progress(fraction, message=""):
            settings.progress = fraction
            if bpy.app.background and int(fraction * 10) != last[0]:
                last[0] = int(fraction * 10)
                print(f"dance: {fraction * 100:3.0f}% {message}", flush=True)
            return True

        try:
            request = build_request(context)
            action = runner.run_sync(request, progress)
        except Cancelled:
            settings.status = "cancelled"
            self.report({'WARNING'}, "generation cancelled; the scene is unchanged")
            return {'CANCELLED'}
        except EngineError as e:
            return self._fail(context, str(e))
        first, last = request.write_range or (request.frame_start, request.frame_start + request.num_frames - 1)
        self._done(context, request, f"generated '{action.name}' on frames {scene_io.frame_span(first, last)}", action)
        return {'FINISHED'}

    def _done(self, context, request, message: str, action) -> None:
        """Status and report of a finished generation, with the engine's notes (e.g. the CPU was
        used because no CUDA GPU was found) where the animator sees them."""
        notes = "; ".join(request.notes)
        drawn = request.metadata.get("drawn_style")
        style = f", style any danced as {drawn}" if drawn else ""
        settings = context.scene.dance
        settings.progress = 1.0
        settings.status = f"done: action '{action.name}'{style}" + (f" (note: {notes})" if notes else "")
        self.report({'INFO'}, message + style)
        if notes:
            self.report({'WARNING'}, f"note: {notes}")

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        msg = dependency_error()
        if msg:
            return self._fail(context, msg)
        from . import runner
        EngineError, _ = _engine_error_types()
        try:
            self._job = runner.start(build_request(context))
        except EngineError as e:
            return self._fail(context, str(e))
        settings = context.scene.dance
        settings.progress, settings.status, settings.is_running = 0.0, "starting", True
        self._timer = context.window_manager.event_timer_add(_TIMER_STEP, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {'RUNNING_MODAL'}

    def _finish(self, context):
        from . import runner
        context.window_manager.event_timer_remove(self._timer)
        runner.finished(self._job)
        context.scene.dance.is_running = False
        _redraw(context)

    def modal(self, context, event):
        EngineError, _ = _engine_error_types()
        settings = context.scene.dance
        if event.type == 'ESC' and event.value == 'PRESS':
            self._job.cancel()
        elif event.type != 'TIMER':  # any timer tick: polling the job is cheap
            return {'PASS_THROUGH'}
        snap = self._job.snapshot()
        settings.progress, settings.status = snap["progress"], snap["message"]
        _redraw(context)
        if self._job.cancel_requested and not snap["done"]:
            settings.status = "cancelling..."
        if not snap["done"]:
            return {'PASS_THROUGH'}
        self._finish(context)
        if snap["cancelled"]:
            settings.status = "cancelled"
            self.report({'WARNING'}, "generation cancelled; the scene is unchanged")
            return {'CANCELLED'}
        if snap["error"]:
            return self._fail(context, snap["error"])
        from . import runner
        try:
            action = runner.apply(self._job.request, snap["motion"])
        except EngineError as e:
            return self._fail(context, str(e))
        self._done(context, self._job.request, f"generated '{action.name}'", action)
        return {'FINISHED'}


class DANCE_OT_cancel(bpy.types.Operator):
    """Stop the running generation; the scene stays as it was"""
    bl_idname = "dance.cancel"
    bl_label = "Cancel"
    bl_options = {'REGISTER'}

    @classmethod
    def poll(cls, context):
        from . import runner
        return runner.active_job() is not None

    def execute(self, context):
        from . import runner
        job = runner.active_job()
        if job is not None:
            job.cancel()
            context.scene.dance.status = "cancelling..."
        return {'FINISHED'}


class DANCE_OT_create_dancer(bpy.types.Operator):
    """Add an SMPL armature standing on the floor at the 3D cursor, with a simple body"""
    bl_idname = "dance.create_dancer"
    bl_label = "Create SMPL Dancer"
    bl_options = {'REGISTER', 'UNDO'}

    name: StringProperty(name="Name", default="SMPL", description="Name of the new armature")
    with_mesh: BoolProperty(name="Body Mesh", default=True,
                            description="Add a body mesh skinned to the bones (the SMPL body if the preferences "
                                        "name an SMPL model file, else capsules)")

    def execute(self, context):
        msg = dependency_error()
        if msg:
            return self._error(msg)
        from . import scene_io
        EngineError, _ = _engine_error_types()
        prefs = preferences.get(context)
        model = prefs.smpl_model_path if prefs is not None and prefs.smpl_model_path else None
        try:
            obj = scene_io.create_smpl_armature(context, self.name, with_mesh=self.with_mesh, smpl_model_path=model)
        except EngineError as e:
            return self._error(str(e))
        context.scene.dance.armature = obj
        return {'FINISHED'}

    def _error(self, msg):
        self.report({'ERROR'}, msg)
        return {'CANCELLED'}


class DANCE_OT_use_take(bpy.types.Operator):
    """Make this take (or your original action) the dancer's animation again"""
    bl_idname = "dance.use_take"
    bl_label = "Use Take"
    bl_options = {'REGISTER', 'UNDO'}

    action: StringProperty(name="Action", description="Name of the action to switch to")
    no_action: BoolProperty(name="No Action", options={'HIDDEN'},
                            description="Back to no action, as the dancer was before its first take (its NLA plays)")

    def execute(self, context):
        from . import takes
        obj = dancer(context)
        action = None if self.no_action else bpy.data.actions.get(self.action)
        if obj is None or (action is None and not self.no_action):
            self.report({'ERROR'}, f"no dancer or no action named '{self.action}'")
            return {'CANCELLED'}
        takes.use_action(obj, action)
        self.report({'INFO'}, f"'{obj.name}' now plays '{action.name}'" if action is not None
                    else f"'{obj.name}' now plays no action (its NLA tracks, if any)")
        return {'FINISHED'}


class DANCE_OT_clean_takes(bpy.types.Operator):
    """Delete the dancer's generated takes that nothing uses (your own action is always kept; Ctrl+Z undoes)"""
    bl_idname = "dance.clean_takes"
    bl_label = "Delete Unused Takes"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        from . import takes
        obj = dancer(context)
        return obj is not None and bool(takes.unused_takes(obj))

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        from . import takes
        n = takes.delete_unused_takes(dancer(context))
        self.report({'INFO'}, f"deleted {n} unused take(s)")
        return {'FINISHED'}


class _ExportBase:
    """Shared by the exports: the dancer's evaluated animation over its action's frames."""

    def motion(self, context):
        from . import rig_io, scene_io
        obj = dancer(context)
        bone_map = rig_io.check_dancer(obj)   # None: the SMPL dancer; else own character (issue 14)
        start, end = compat.keyed_range(obj) or (context.scene.frame_start, context.scene.frame_end)
        if bone_map is not None:
            return rig_io.read_character_motion(obj, bone_map, start, end, scene=context.scene)
        return scene_io.read_motion(obj, start, end, scene=context.scene)

    def execute(self, context):
        msg = dependency_error()
        if msg:
            self.report({'ERROR'}, msg)
            return {'CANCELLED'}
        EngineError, _ = _engine_error_types()
        try:
            motion = self.motion(context)
            self.write(motion, self.filepath)
        except EngineError as e:
            self.report({'ERROR'}, str(e))
            return {'CANCELLED'}
        except OSError as e:
            self.report({'ERROR'}, f"cannot write {self.filepath}: {e.strerror or e}")
            return {'CANCELLED'}
        self.report({'INFO'}, f"wrote {motion.num_frames} frames to {self.filepath}")
        return {'FINISHED'}


class DANCE_OT_export_bvh(_ExportBase, bpy.types.Operator, ExportHelper):
    """Write the dancer's animation as BVH (SMPL skeleton, metres)"""
    bl_idname = "dance.export_bvh"
    bl_label = "Export BVH"
    bl_options = {'REGISTER'}
    filename_ext = ".bvh"
    filter_glob: StringProperty(default="*.bvh", options={'HIDDEN'})
    up_axis: EnumProperty(
        name="Up Axis", default='Z',
        items=[('Z', "Z Up", "Blender's convention (re-import with Forward Y, Up Z)"),
               ('Y', "Y Up", "SMPL's and most game engines' convention")],
        description="Which axis points up in the file")

    def write(self, motion, path):
        from engine.outputs.bvh import write_bvh
        write_bvh(motion, path, up_axis=self.up_axis)


class DANCE_OT_export_npz(_ExportBase, bpy.types.Operator, ExportHelper):
    """Write the dancer's animation as an engine Motion .npz (SMPL axis-angle poses, Y-up root path)"""
    bl_idname = "dance.export_npz"
    bl_label = "Export NPZ"
    bl_options = {'REGISTER'}
    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={'HIDDEN'})

    def write(self, motion, path):
        motion.save_npz(path)


classes = (DANCE_OT_generate, DANCE_OT_cancel, DANCE_OT_create_dancer, DANCE_OT_use_take, DANCE_OT_clean_takes,
           DANCE_OT_export_bvh, DANCE_OT_export_npz)
