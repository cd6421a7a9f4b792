"""Feature-detected wrappers over Blender API differences between 4.2 and 5.0.

- Slotted actions (4.4+): an Action animates an ID only through a slot, and F-curves live in
  `action.layers[i].strips[j].channelbag(slot)`. 4.4/4.5 keep `Action.fcurves` as a proxy for the
  first slot; 5.0 removes it. 4.2/4.3 only have `Action.fcurves`.
- Sequencer: `sequence_editor.strips` (4.4+, the only name in 5.0) vs `sequences` (before); a
  strip's retiming keys (a sound strip's in the API from 4.4; 4.2/4.3 retime sound strips
  without showing them); F-curves of a strip's property are
  keyed on `sequence_editor.strips_all["name"]` (4.4+) or `sequences_all["name"]` (older files);
  5.0's Sequencer Scene, the one the Video Sequencer shows (`context.sequencer_scene`).
Everything checks for the attribute, never the version number.
"""
from __future__ import annotations

import bpy


# --- Actions --------------------------------------------------------------------------------

def is_slotted(action) -> bool:
    return hasattr(action, "slots") and hasattr(action, "layers")


def object_slot(obj, action=None):
    """The slot `obj` is (or would be) animated through; None before 4.4 or when it has none."""
    ad = obj.animation_data
    action = action if action is not None else (ad.action if ad else None)
    if action is None or not is_slotted(action):
        return None
    if ad is not None and ad.action == action and getattr(ad, "action_slot", None) is not None:
        return ad.action_slot
    slots = [s for s in action.slots if s.target_id_type in ("OBJECT", "UNSPECIFIED")]
    if ad is not None:  # the slot this object last used, then one named after it
        for s in slots:
            if s.identifier == getattr(ad, "last_slot_identifier", None):
                return s
    for s in slots:
        if s.identifier == "OB" + obj.name:
            return s
    return slots[0] if slots else None


def action_fcurves(action, slot=None) -> list:
    """All F-curves of `action` that animate `slot` (every F-curve on pre-4.4 actions)."""
    if action is None:
        return []
    if not is_slotted(action) or (len(action.layers) == 0 and hasattr(action, "fcurves")):
        return list(action.fcurves) if hasattr(action, "fcurves") else []
    if slot is None:
        return []
    out = []
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot) if hasattr(strip, "channelbag") else None
            if bag is not None:
                out.extend(bag.fcurves)
    return out


def animated_fcurves(id_data) -> list:
    """F-curves of the action `id_data` (an object, a scene) plays, through its own slot on 4.4+."""
    ad = getattr(id_data, "animation_data", None)
    action = ad.action if ad is not None else None
    return action_fcurves(action, getattr(ad, "action_slot", None)) if action is not None else []


def keyed_range(obj, action=None) -> tuple[int, int] | None:
    """(first, last) whole frames spanned by the keys through which `action` (default: the current
    one) animates `obj`; None when there are none. Unlike Action.frame_range, not a Manual Frame
    Range, nor the keys of another slot (an action shared with other objects, or the armature data)."""
    ad = obj.animation_data
    action = action if action is not None else (ad.action if ad is not None else None)
    ends = [x for fc in action_fcurves(action, object_slot(obj, action)) if len(fc.keyframe_points)
            for x in (fc.keyframe_points[0].co[0], fc.keyframe_points[-1].co[0])]
    return (int(round(min(ends))), int(round(max(ends)))) if ends else None


def assign_new_action(obj, name: str):
    """Create an Action, assign it to `obj` and return (action, fcurves collection, groups collection).

    The slot is created and assigned BEFORE any F-curve exists: F-curves made on a slot-less
    action silently animate nothing in 4.4+.
    """
    action = bpy.data.actions.new(name)
    ad = obj.animation_data or obj.animation_data_create()
    ad.action = action
    if is_slotted(action):
        slot = action.slots.new(id_type='OBJECT', name=obj.name)
        ad.action_slot = slot
        strip = action.layers.new("Dance").strips.new(type='KEYFRAME')
        bag = strip.channelbag(slot, ensure=True)
        return action, bag.fcurves, bag.groups
    action.id_root = 'OBJECT'
    return action, action.fcurves, action.groups


def ensure_channels(obj, action):
    """(fcurves, groups) collections through which `action` animates `obj`, created if missing
    (on 4.4+ the slot, layer, keyframe strip and channelbag; a copied action already has them)."""
    if not is_slotted(action):
        return action.fcurves, action.groups
    slot = object_slot(obj, action)
    if slot is None:
        slot = action.slots.new(id_type='OBJECT', name=obj.name)
    ad = obj.animation_data
    if ad is not None and ad.action == action and getattr(ad, "action_slot", None) != slot:
        ad.action_slot = slot   # a slot the object does not play animates nothing (an empty action had none)
    layer = action.layers[0] if len(action.layers) else action.layers.new("Dance")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type='KEYFRAME')
    bag = strip.channelbag(slot, ensure=True)
    return bag.fcurves, bag.groups


def generated_key_type() -> tuple[str, int]:
    """(identifier, enum value) of the keyframe type marking keys a tool generated.

    'GENERATED' exists from Blender 4.2 (the add-on's minimum). Older builds fall back to
    'JITTER', the closest "not a real key" type they have; the value is what foreach_set takes."""
    items = {i.identifier: i.value for i in bpy.types.Keyframe.bl_rna.properties["type"].enum_items}
    return ("GENERATED", items["GENERATED"]) if "GENERATED" in items else ("JITTER", items["JITTER"])


def key_type_value(identifier: str) -> int:
    return bpy.types.Keyframe.bl_rna.properties["type"].enum_items[identifier].value


def set_action(obj, action, slot=None) -> None:
    """Assign `action` (and, on 4.4+, `slot` or the best matching one) to `obj`."""
    ad = obj.animation_data or obj.animation_data_create()
    ad.action = action
    if action is not None and is_slotted(action) and hasattr(ad, "action_slot"):
        slot = slot if slot is not None else object_slot(obj, action)
        if slot is not None and ad.action_slot != slot:
            ad.action_slot = slot


def push_to_muted_nla(obj, action, slot=None, track_name: str = "") -> None:
    """Keep `action` on a new, muted NLA track of `obj` (and protect it with a fake user)."""
    ad = obj.animation_data or obj.animation_data_create()
    track = ad.nla_tracks.new()
    track.name = (track_name or f"Before dance: {action.name}")[:63]
    start = int(action.frame_range[0])
    strip = track.strips.new(action.name[:63], start, action)
    if slot is not None and hasattr(strip, "action_slot"):
        try:
            strip.action_slot = slot
        except (TypeError, RuntimeError, AttributeError):
            pass  # slot type mismatch: the strip stays, muted anyway
    track.mute = True
    action.use_fake_user = True


# --- Sequencer ------------------------------------------------------------------------------

def all_strips(scene) -> list:
    """Every strip of the scene's sequencer, including those inside meta strips."""
    ed = scene.sequence_editor
    if ed is None:
        return []
    for name in ("strips_all", "sequences_all"):
        coll = getattr(ed, name, None)
        if coll is not None:
            return list(coll)
    return []


def sequencer_scene(context):
    """The scene the Video Sequencer shows and plays (Blender 5.0's workspace Sequencer Scene,
    which may be another than the window's); None before 5.0 or where none is picked."""
    return getattr(context, "sequencer_scene", None)


def strip_muted(scene, strip) -> bool:
    """Whether `strip` is silent: muted itself, or on a muted sequencer channel (3.3+; a strip
    inside a meta strip reads the meta's channels, and the meta's own mute)."""
    if strip.mute:
        return True
    ed = scene.sequence_editor
    meta = strip.parent_meta() if hasattr(strip, "parent_meta") else None
    owner = meta if meta is not None else ed
    channels = getattr(owner, "channels", None)
    if channels is not None and 0 <= strip.channel < len(channels) and channels[strip.channel].mute:
        return True
    return meta is not None and strip_muted(scene, meta)


def retiming_frames(strip) -> list[int] | None:
    """Timeline frames of a strip's retiming keys, first to last; [] when it has none (not retimed)
    or its kind has no retiming; None for a sound strip in Blender 4.2-4.3, which retime sound
    strips but keep their keys out of the API. The API gives only these frames, not each
    segment's speed."""
    keys = getattr(strip, "retiming_keys", None)
    if keys is None:
        return None if strip.type == 'SOUND' else []
    return sorted(int(k.timeline_frame) for k in keys)


def strip_fcurve(scene, strip, prop: str):
    """The F-curve of the scene's action that animates `strip`'s property `prop` (e.g. "volume"),
    under either collection's name; None when it is not animated or the curve is muted."""
    name = bpy.utils.escape_identifier(strip.name)
    paths = {f'sequence_editor.{coll}["{name}"].{prop}' for coll in ("strips_all", "sequences_all")}
    for fc in animated_fcurves(scene):
        if fc.data_path in paths and not fc.mute:
            return fc
    return None


def top_strips(ed):
    """The collection new strips are added to (`strips` in 4.4+/5.0, `sequences` before)."""
    return ed.strips if hasattr(ed, "strips") else ed.sequences


def strip_search_attr(scene) -> str:
    """Attribute name of the sequencer's all-strips collection, for `prop_search`."""
    ed = scene.sequence_editor
    return "strips_all" if ed is not None and hasattr(ed, "strips_all") else "sequences_all"


def active_strip(scene):
    ed = scene.sequence_editor
    if ed is None:
        return None
    return getattr(ed, "active_strip", None)


def _own_range(strip) -> tuple[int, int]:
    start = getattr(strip, "frame_final_start", None)
    end = getattr(strip, "frame_final_end", None)
    if start is None:  # later renames: the handles
        start, end = strip.left_handle, strip.right_handle
    return int(start), int(end)


def strip_range(strip) -> tuple[int, int]:
    """(first heard frame, frame after the last heard one) of a strip: its own handles, within
    those of every meta strip it is in (a trimmed meta silences what lies outside it)."""
    start, end = _own_range(strip)
    meta = strip.parent_meta() if hasattr(strip, "parent_meta") else None
    while meta is not None:
        meta_start, meta_end = _own_range(meta)
        start, end = max(start, meta_start), min(end, meta_end)
        meta = meta.parent_meta() if hasattr(meta, "parent_meta") else None
    return start, max(start, end)


# --- UI -------------------------------------------------------------------------------------

def draw_progress(layout, factor: float, text: str) -> None:
    """A progress bar (UILayout.progress, 4.0+) or a plain label on older builds."""
    if hasattr(layout, "progress"):
        layout.progress(factor=factor, type='BAR', text=text)
    else:
        layout.label(text=f"{text} ({factor * 100:.0f}%)")
