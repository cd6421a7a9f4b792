"""The add-on's settings: ONE PropertyGroup, stored on the scene as `scene.dance`."""
from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)

from . import _engine_path  # noqa: F401
# engine.defaults is plain Python, importable before torch is installed.
from engine.defaults import (DEFAULT_AUTOGUIDANCE, DEFAULT_GUIDANCE, DEFAULT_QUALITY, DEFAULT_STEPS, MAX_AUTOGUIDANCE,
                             TRAINING_STYLES)

from .preferences import DEVICE_ITEMS

# Shown when the engine or its weights cannot be loaded yet (dependencies not installed):
# the training data's dance styles. The real list comes from engine.api.available_styles().
FALLBACK_STYLES = TRAINING_STYLES
MAX_FRAME = 1048574            # Blender's furthest frame either way (before 0 with Allow Negative Frames)
_style_items_cache: list[tuple[str, str, str]] = []   # module-level: Blender keeps only pointers
_fallback_items: list[tuple[str, str, str]] = []


def _items(styles) -> list[tuple[str, str, str]]:
    styles = ["any"] + [s for s in styles if s != "any"]
    return [(s, "Any" if s == "any" else s.replace("_", " ").title(),
             "A style drawn from the song and the seed" if s == "any" else f"Dance in the {s} style") for s in styles]


def style_items(self, context):
    """engine.api.available_styles() for the weights in use, cached per weights file; the
    fallback list while the engine cannot load (no torch or no weights yet)."""
    from . import operators
    weights = operators.weights_choice(context) if context is not None else None
    if _style_items_cache and _style_items_cache[0][0] == weights:
        return _style_items_cache[1:]
    try:
        from . import _engine_path  # noqa: F401
        from engine.api import available_styles
        items = _items(available_styles(weights))
    except Exception:
        if not _fallback_items:
            _fallback_items.extend(_items(FALLBACK_STYLES))
        return _fallback_items
    _style_items_cache[:] = [(weights, "", "")] + items   # first entry: the cache key
    return _style_items_cache[1:]


def _is_armature(self, obj) -> bool:
    return obj.type == 'ARMATURE'


# What the animator can keep from the current animation: each has a `keep_<name>` property
# below; all but "root" are engine.body.skeleton.BODY_PARTS names.
KEEPABLE = ("left_arm", "right_arm", "legs", "torso", "head", "root")


class DanceSettings(bpy.types.PropertyGroup):
    audio_source: EnumProperty(
        name="Audio", default='STRIP',
        items=[('STRIP', "Sound Strip", "Dance to a sound strip of the Video Sequencer, on the frames it plays"),
               ('FILE', "File", "Dance to an audio file, starting at the frame range's first frame")],
        description="Where the song comes from")
    strip_name: StringProperty(
        name="Sound Strip",
        description="The sequencer sound strip to dance to (empty: the active sound strip, or the only one)")
    audio_file: StringProperty(
        name="Audio File", subtype='FILE_PATH',
        description="An audio file (wav, mp3, flac, ogg) to dance to when Audio is 'File'")
    armature: PointerProperty(
        name="Dancer", type=bpy.types.Object, poll=_is_armature,
        description="The armature to animate: an SMPL dancer (make one with 'Create SMPL Dancer') or your own "
                    "humanoid character (Mixamo, Rigify, VRM, Unreal, ...); empty: the active armature, or the armature "
                    "of the active body mesh")
    style: EnumProperty(
        name="Style", items=style_items,
        description="Dance style the model is asked for")
    seed: IntProperty(
        name="Seed", default=0, min=0,
        description="Random seed: the same song, keys and seed give the same dance; change it for another")
    quality: EnumProperty(
        name="Quality", default=DEFAULT_QUALITY.upper(),
        items=[('FAST', "Fast", "The few-step student: under a second for 30 s of dance on a laptop CPU, "
                                "a little less varied (for trying seeds and keys)"),
               ('BEST', "Best", "The many-step model the student was distilled from: about 15x slower, with "
                                "its own Steps")],
        description="Which sampler dances: the few-step student for quick iterations, or the many-step model")
    steps: IntProperty(
        name="Steps", default=DEFAULT_STEPS, min=1, max=200, soft_max=50,
        description="Diffusion sampling steps of quality Best (the teacher): more is slower and usually smoother")
    guidance: FloatProperty(
        name="Music Guidance", default=DEFAULT_GUIDANCE, min=0.0, soft_max=8.0,
        description="How strongly the dance follows the music and how much it moves "
                    "(classifier-free guidance weight; 1 = none extra)")
    autoguidance: FloatProperty(
        name="Energy", default=DEFAULT_AUTOGUIDANCE, min=1.0, max=MAX_AUTOGUIDANCE, soft_max=3.0, precision=2,
        description="How far the dance is pushed away from the model's weaker guide network: bigger moves "
                    "and more travel; high values vary more but look less like real dancing "
                    "(autoguidance weight; 1 = off)")
    device: EnumProperty(
        name="Device", default='PREFS',
        items=[('PREFS', "Preferences", "Use the add-on preferences' default device")] + DEVICE_ITEMS,
        description="Where the model runs")
    keep_left_arm: BoolProperty(
        name="Left Arm", default=False,
        description="Keep the left arm's current animation on every frame; the model dances around it")
    keep_right_arm: BoolProperty(
        name="Right Arm", default=False,
        description="Keep the right arm's current animation on every frame; the model dances around it")
    keep_legs: BoolProperty(
        name="Legs", default=False,
        description="Keep both legs' current animation on every frame; the model dances around them")
    keep_torso: BoolProperty(
        name="Torso", default=False,
        description="Keep the pelvis and spine rotations' current animation on every frame")
    keep_head: BoolProperty(
        name="Head", default=False,
        description="Keep the neck and head's current animation on every frame")
    keep_root: BoolProperty(
        name="Root Path", default=False,
        description="Keep the pelvis's current path through space on every frame")
    use_strip_range: BoolProperty(
        name="Whole Strip", default=True,
        description="Animate every frame the sound strip plays; off: only the frames below")
    frame_start: IntProperty(
        name="Start", default=1, min=-MAX_FRAME, max=MAX_FRAME,
        description="First frame to animate (must lie within the song)")
    frame_end: IntProperty(
        name="End", default=250, min=-MAX_FRAME, max=MAX_FRAME,
        description="Last frame to animate (must lie within the song)")
    stage: EnumProperty(
        name="Stage", default='DEFAULT',
        items=[('DEFAULT', "Stage", "Travel freely, within 4 m of where the dance starts (an 8 m floor)"),
               ('IN_PLACE', "In Place", "Dance on the spot: the body's path stays where it starts"),
               ('RADIUS', "Radius", "Stay within the radius below around the start")],
        description="How far the dancer may travel over the floor")
    stage_radius: FloatProperty(
        name="Radius", default=2.0, min=0.0, soft_max=10.0, unit='LENGTH',
        description="With Stage 'Radius': the dancer stays within this distance of where it starts (0: in place; "
                    "a character of a few centimetres needs a few centimetres)")
    wait_in_silence: BoolProperty(
        name="Wait in Silence", default=True,
        description="Where the song is silent for a second or more (an intro, a stop, the tail), the dancer holds "
                    "still until the music comes back; off: the silence is danced too")
    progress: FloatProperty(
        name="Progress", default=0.0, min=0.0, max=1.0, subtype='FACTOR',
        description="How far the running generation is")
    status: StringProperty(
        name="Status", default="",
        description="What the generator is doing, or how the last run ended")
    is_running: BoolProperty(
        name="Running", default=False,
        description="A dance is being generated in the background")

    def keep_parts(self) -> list[str]:
        """Body-part names (engine.body.skeleton.BODY_PARTS) ticked to be kept ("root" is separate)."""
        return [p for p in KEEPABLE if p != "root" and getattr(self, "keep_" + p)]


classes = (DanceSettings,)


def _dancer_state() -> dict:
    """What the add-on keeps on each dancer object (takes.DANCER_ID_KEY, takes.ORIGINAL_KEY,
    takes.ORIGINAL_BLEND_KEY, ik_fk_switches.SWITCHES_KEY). Registered and overridable rather
    than plain custom properties: Blender saves no custom property added to a library override,
    and a studio's characters are overrides (QA: reopened, an override's takes, its original
    action and Rigify's switches were gone from the panel). They keep the names of the custom
    properties older files hold (the switches excepted, JSON now); takes.read_state reads those
    where the registered one is unset."""
    from . import ik_fk_switches, takes
    overridable = {'LIBRARY_OVERRIDABLE'}
    return {
        takes.DANCER_ID_KEY: StringProperty(options={'HIDDEN'}, override=overridable,
                                            description="This dancer's id, which its takes name"),
        takes.ORIGINAL_KEY: PointerProperty(type=bpy.types.Action, options={'HIDDEN'}, override=overridable,
                                            description="The animator's own action the first dance replaced"),
        ik_fk_switches.SWITCHES_KEY: StringProperty(options={'HIDDEN'}, override=overridable,
                                                    description="Rigify's switches as the animator had them (JSON)"),
        takes.ORIGINAL_BLEND_KEY: StringProperty(options={'HIDDEN'}, override=overridable,
                                                 description="How the animator's action blended over the NLA"),
    }


def register_props():
    bpy.types.Scene.dance = PointerProperty(type=DanceSettings)
    for name, prop in _dancer_state().items():
        setattr(bpy.types.Object, name, prop)


def unregister_props():
    del bpy.types.Scene.dance
    for name in _dancer_state():
        delattr(bpy.types.Object, name)
