"""Takes: every generation is a named action of its dancer, listed in the panel, switchable,
and cleaned up only when asked. The animator's own action is kept for good (fake user, a muted
NLA track) and never deleted; takes carry a fake user until "Delete Unused Takes"."""
from __future__ import annotations

import bpy

from . import blender_compat as compat

GENERATED_KEY = "dance_generated"       # action custom property: a take this add-on wrote
DANCER_KEY = "dance_dancer"             # action: its dancer's DANCER_ID_KEY (older takes: its name)
DANCER_ID_KEY = "dance_dancer_id"       # object: a name-independent id (renaming keeps its takes)
DANCER_NAME_KEY = "dance_dancer_name"   # action: the dancer's name when the take was made
TAKE_KEY = "dance_take"                 # action: take number
TAKE_BASE_KEY = "dance_take_base"       # action: the name the take number counts within
ORDER_KEY = "dance_order"               # action: when it was made, counted over all takes
ORIGINAL_KEY = "dance_original_action"  # object: the animator's own action (a pointer; older files: its name)
ORIGINAL_BLEND_KEY = "dance_original_blend"  # object: "<blend type> <influence>" the animator's action played at
ORIGINAL_PREFIX = "Original: "          # the panel's label and the muted NLA track of the animator's own action
# Dances written before takes (add-on 0.1) name the animator's action they were made from here.
LEGACY_SOURCE_KEY = "dance_source_action"


def take_name(base: str, obj=None) -> tuple[str, int]:
    """(name, take number) for the next take of `base` ('Dance <song> <style> s<seed>') on the
    dancer `obj`: takes count per dancer. Action names are global in Blender, so where another
    dancer's take already has the name, this one adds its dancer's name. A name too long for
    Blender loses the end of the song's name, never the style, seed or take number."""
    mine = takes(obj) if obj is not None else list(bpy.data.actions)
    n = 1 + max((int(a.get(TAKE_KEY, 0)) for a in mine if a.get(TAKE_BASE_KEY) == base), default=0)
    song, style_and_seed = _song_and_tail(base)
    name = fitted_name(song, f"{style_and_seed} take {n}")
    if obj is not None and name in bpy.data.actions:
        name = fitted_name(song, f"{style_and_seed} take {n} ({obj.name})")
    return name, n


# Blender 4.x cuts an ID's name at 63 bytes of UTF-8 (5.0 allows 255): names are fitted to the
# shorter, so a take is named alike in both.
NAME_BYTES = 63
_CUT = "\u2026"                          # an ellipsis where the song's name was shortened


def _song_and_tail(base: str) -> tuple[str, str]:
    """'Dance <song> <style> s<seed>' -> ('Dance <song>', ' <style> s<seed>')."""
    parts = base.rsplit(" ", 2)
    if len(parts) < 3:
        return base, ""
    return parts[0], f" {parts[1]} {parts[2]}"


def fitted_name(head: str, tail: str) -> str:
    """head + tail within NAME_BYTES, the head shortened (whole characters, an ellipsis after
    them) if need be; the tail too when it alone is longer."""
    if len((head + tail).encode("utf-8")) <= NAME_BYTES:
        return head + tail
    room = NAME_BYTES - len((_CUT + tail).encode("utf-8"))
    kept = head
    while kept and len(kept.encode("utf-8")) > room:
        kept = kept[:-1]
    if not kept.strip():                  # the tail alone is too long (a dancer's long name)
        return (head + tail).encode("utf-8")[:NAME_BYTES].decode("utf-8", "ignore")
    return kept.rstrip() + _CUT + tail


def is_take(action) -> bool:
    return action is not None and bool(action.get(GENERATED_KEY, False))


def takes(obj) -> list:
    """The dances generated for `obj`, oldest first (takes from before dancer ids name it). A copy
    of a dancer (Shift+D) carries its id until its first take of its own; meanwhile the id's takes
    are the dancer's whose name they were made under, not the copy's."""
    own = dancer_id(obj)
    sharers = _sharers(obj, own)

    def mine(a) -> bool:
        if a.get(DANCER_KEY) != own:
            return a.get(DANCER_KEY) == obj.name
        if not sharers or _plays(obj, a):
            return True
        return a.get(DANCER_NAME_KEY, obj.name) == obj.name and not any(_plays(o, a) for o in sharers)
    return sorted((a for a in bpy.data.actions if is_take(a) and mine(a)),
                  key=lambda a: (int(a.get(ORDER_KEY, 0)), a.name))


def _sharers(obj, own_id) -> list:
    """The other objects carrying `own_id` (copies of a dancer, or the dancer a copy came from)."""
    return [] if own_id is None else [o for o in bpy.data.objects if o != obj and dancer_id(o) == own_id]


def _plays(obj, action) -> bool:
    return obj.animation_data is not None and obj.animation_data.action == action


def claim_id(obj) -> str:
    """`obj`'s id for its takes, made on its first take. A copy of a dancer carries the original's
    id along: the first of the two to generate that is not the one the takes were made under
    gets a new id, and the take it plays (the copy's own duplicate) comes with it."""
    import uuid
    current = dancer_id(obj)
    sharers = _sharers(obj, current)
    if current is not None and (not sharers or any(
            is_take(a) and a.get(DANCER_KEY) == current and a.get(DANCER_NAME_KEY) == obj.name for a in bpy.data.actions)):
        return current
    new = uuid.uuid4().hex
    keep_state(obj, DANCER_ID_KEY, new)
    playing = obj.animation_data.action if obj.animation_data is not None else None
    if current is not None and is_take(playing) and playing.get(DANCER_KEY) == current and \
            not any(_plays(o, playing) for o in sharers):
        playing[DANCER_KEY], playing[DANCER_NAME_KEY] = new, obj.name
    return new


# The dancer's state is kept in registered, overridable properties (properties._dancer_state):
# Blender saves no custom property added to a library override. Blender 4.x stores them as the
# custom properties of the same names that older files hold; 5.0 apart from those, so older
# files' values are read from the custom properties where the registered ones are unset.

def keep_state(obj, key: str, value) -> None:
    """Set the dancer's state `key` on `obj`: the registered property (properties._dancer_state),
    or a custom property where the add-on's properties are not registered (its modules used from
    a script)."""
    if key in obj.bl_rna.properties:
        setattr(obj, key, value)
    else:
        obj[key] = value


def read_state(obj, key: str):
    """The dancer's state `key` (keep_state): the registered property where set, else the custom
    property (its modules used unregistered, or Blender 5.0 reading a file written before)."""
    value = getattr(obj, key) if key in obj.bl_rna.properties else None
    return value if value else obj.get(key)


def dancer_id(obj) -> str | None:
    """`obj`'s id for its takes (claim_id), None before its first take."""
    own = read_state(obj, DANCER_ID_KEY)
    return own if isinstance(own, str) and own else None


def original_action(obj):
    """The animator's own action the first dance on `obj` replaced (None if there was none)."""
    kept = obj.get(ORIGINAL_KEY)     # raw first: older files hold its name, which the pointer would drop
    if isinstance(kept, str):
        return bpy.data.actions.get(kept) if kept else None
    return getattr(obj, ORIGINAL_KEY, None) or (kept if isinstance(kept, bpy.types.Action) else None)


def _remember_original(obj, action) -> None:
    """Point `obj`'s ORIGINAL_KEY at `action` (the action itself, not its name: renaming it must
    not lose it), through the registered property, which a library override saves."""
    if ORIGINAL_KEY in obj.keys() and not isinstance(obj.get(ORIGINAL_KEY), bpy.types.Action):
        del obj[ORIGINAL_KEY]        # an older file's name
    keep_state(obj, ORIGINAL_KEY, action)


# Each pose channel's value at rest (where nothing animates it), by its property name.
REST_CHANNEL_VALUES = {"location": (0.0, 0.0, 0.0), "scale": (1.0, 1.0, 1.0),
                       "rotation_quaternion": (1.0, 0.0, 0.0, 0.0), "rotation_euler": (0.0, 0.0, 0.0),
                       "rotation_axis_angle": (0.0, 0.0, 1.0, 0.0)}


def reset_pose(obj, channels=None) -> None:
    """Bones to their rest pose (rotation modes untouched): every channel, or only the
    (bone, property) `channels`. Channels the next action leaves unkeyed must not keep the last
    action's values (Blender leaves them as they were)."""
    for pb in obj.pose.bones:
        for prop, value in REST_CHANNEL_VALUES.items():
            if channels is None or (pb.name, prop) in channels:
                setattr(pb, prop, value)


def use_action(obj, action) -> None:
    """Make `action` (a take or the original; None: no action, as a dancer that had none before
    its first take, played by its NLA strips or not animated) the dancer's current action, with
    its slot; the channels a take animated and it does not stand at rest, not in the last take's
    pose. Others keep what the animator set (QA: a finger posed, never keyed, went back to rest)."""
    from .keys import animated_channels      # (keys imports this module)
    reset_pose(obj, set().union(*(animated_channels(obj, take) for take in takes(obj))))
    compat.set_action(obj, action)
    if is_take(action):       # as written
        play_in_full(obj)
    else:                     # as the animator had it; on own characters Rigify's switches too (ik_fk_switches)
        _restore_blend(obj)
        from .ik_fk_switches import restore_switches
        restore_switches(obj)
    obj.update_tag()


def unused_takes(obj) -> list:
    """Takes of `obj` that nothing uses: not its current action, on no NLA strip, on no other object."""
    current = obj.animation_data.action if obj.animation_data else None
    return [a for a in takes(obj) if a != current and a.users - int(a.use_fake_user) <= 0]


def delete_unused_takes(obj) -> int:
    """Remove the takes nothing uses (never the animator's own action). Returns how many."""
    doomed = unused_takes(obj)
    for a in doomed:
        bpy.data.actions.remove(a)
    return len(doomed)


def keep_original(obj, action, slot) -> None:
    """The animator's action, about to be replaced by a first dance: kept for good (fake user,
    a muted NLA track), and remembered so the panel can switch back to it."""
    action.use_fake_user = True
    _remember_original(obj, action)
    ad = obj.animation_data
    if not any(s.action == action for t in ad.nla_tracks for s in t.strips):
        compat.push_to_muted_nla(obj, action, slot, track_name=f"{ORIGINAL_PREFIX}{action.name}")


def keep_previous(obj) -> None:
    """Before a new take replaces `obj`'s current action: keep that action (the animator's own:
    for good; a take: with a fake user until cleaned up)."""
    claim_id(obj)          # a copy's own take is re-tagged before a new one replaces it
    ad = obj.animation_data
    old = ad.action if ad is not None else None
    if old is not None and not is_take(old) and LEGACY_SOURCE_KEY not in old:
        keep_original(obj, old, compat.object_slot(obj))
        # How it blends over the NLA, which switching back to it restores (_restore_blend): a
        # take plays in full (play_in_full).
        keep_state(obj, ORIGINAL_BLEND_KEY, f"{ad.action_blend_type} {ad.action_influence!r}")
    elif old is not None:
        old.use_fake_user = True
    name_original_track(obj)


def name_original_track(obj) -> None:
    """The muted track that keeps the animator's action (keep_original) named after the action as
    it is called now: renamed since, it still said 'Original: <old name>'. A track the animator
    renamed (not starting 'Original: ') is theirs and stays as it is."""
    original, ad = original_action(obj), obj.animation_data
    if original is None or ad is None:
        return
    for track in ad.nla_tracks:
        if track.name.startswith(ORIGINAL_PREFIX) and any(s.action == original for s in track.strips):
            track.name = f"{ORIGINAL_PREFIX}{original.name}"[:63]


def play_in_full(obj) -> str | None:
    """Set `obj`'s action to blend 'Replace' at full influence, so that the viewport shows the
    take as written (with 'Add', or an influence below 1, over NLA tracks, it showed something
    else); returns the note that says so, None when it already was."""
    ad = obj.animation_data
    if ad is None or (ad.action_blend_type == 'REPLACE' and ad.action_influence >= 1.0 - 1e-6):
        return None
    blend, influence = ad.action_blend_type, ad.action_influence
    ad.action_blend_type, ad.action_influence = 'REPLACE', 1.0
    return (f"the dancer's action blended '{blend.replace('_', ' ').title()}' at influence {influence:.2g}; "
            "the take now plays as 'Replace' at full influence (Ctrl+Z to undo)")


def _restore_blend(obj) -> None:
    """The animator's action back: its blend and influence over the NLA as they were when a take
    last replaced it (QA: an action combined over an idle track stayed on Replace, the idle
    layer gone)."""
    blend, _, influence = str(read_state(obj, ORIGINAL_BLEND_KEY) or "").partition(" ")
    if blend and obj.animation_data is not None:
        try:
            obj.animation_data.action_blend_type, obj.animation_data.action_influence = blend, float(influence)
        except (TypeError, ValueError):
            pass                      # a value this Blender does not know: leave it


def use_copy_of(obj, old, old_slot, name: str):
    """Assign a copy of `old` named `name` to `obj`, on the copy's slot that matches `old_slot`
    (4.4+ slotted actions), and return it: a new take that starts as the current animation, so
    bones the dance does not write and keys outside the danced frames stay as they were."""
    action = old.copy()
    action.name = name
    # The take spans the dance: a Manual Frame Range copied from the animator's action (a cycle's)
    # would clip its strip, its exports and the range regenerating reads.
    if getattr(action, "use_frame_range", False):
        action.use_frame_range = False
        action.use_cyclic = False
    slot = None
    if compat.is_slotted(action) and old_slot is not None:
        slot = next((s for s in action.slots if s.identifier == old_slot.identifier), None)
        if slot is not None:   # the other objects sharing the action keep playing theirs: no copy of it
            for other in [s for s in action.slots if s != slot]:
                action.slots.remove(other)
    compat.set_action(obj, action, slot)
    return action


def mark_take(obj, action, metadata: dict | None = None) -> None:
    """Record `action` as the newest take of `obj`, with what made it (metadata: song, style,
    seed, take number, ...; stored as dance_<key> custom properties)."""
    action[ORDER_KEY] = 1 + max((int(a.get(ORDER_KEY, 0)) for a in bpy.data.actions if a != action), default=0)
    action[GENERATED_KEY] = True
    action[DANCER_KEY], action[DANCER_NAME_KEY] = claim_id(obj), obj.name
    action.use_fake_user = True
    for key, value in (metadata or {}).items():
        action["dance_" + key] = value
    # A take starts as a copy of the action before it: a style "any" take's drawn style must not
    # outlive it into a take danced in a named style (QA: a range in style any over that take
    # then danced the older take's style).
    if "drawn_style" not in (metadata or {}) and "dance_drawn_style" in action:
        del action["dance_drawn_style"]
