"""The 3D View sidebar tab "Dance": what will happen before pressing Generate, then progress."""
from __future__ import annotations

import os

import bpy

from . import blender_compat as compat
from . import preferences
from .properties import KEEPABLE


# What the panel counts in the dancer's action (its keys, an imported bind pose) reads every key,
# about 0.1 s for a 3-minute take, and the sidebar redraws on every frame of playback. The counts
# are kept until the next edit: Blender runs depsgraph_update_post after edits (keys, undo,
# loading), not on frame changes.
_edits = 0
_counted: dict = {}


@bpy.app.handlers.persistent
def _count_edit(scene, depsgraph) -> None:
    global _edits
    _edits += 1


def _since_last_edit(key: tuple, compute):
    """compute(), remembered for `key` until the next edit."""
    key = (_edits,) + key
    if key not in _counted:
        _counted.clear()
        _counted[key] = compute()
    return _counted[key]


def register_handlers() -> None:
    if _count_edit not in bpy.app.handlers.depsgraph_update_post:
        bpy.app.handlers.depsgraph_update_post.append(_count_edit)


def unregister_handlers() -> None:
    if _count_edit in bpy.app.handlers.depsgraph_update_post:
        bpy.app.handlers.depsgraph_update_post.remove(_count_edit)
    _counted.clear()


class _DancePanel:
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Dance"


class DANCE_PT_main(_DancePanel, bpy.types.Panel):
    bl_label = "Dance Generator"
    bl_idname = "DANCE_PT_main"

    def draw(self, context):
        layout = self.layout
        scene, settings = context.scene, context.scene.dance
        missing = preferences.missing_dependencies()
        if missing:
            box = layout.box()
            box.label(text="Missing: " + ", ".join(missing), icon='ERROR')
            box.operator("dance.install_dependencies", icon='IMPORT')
            return
        from engine.errors import EngineError
        from . import operators, runner, scene_io, song_scene

        # The song
        layout.row().prop(settings, "audio_source", expand=True)
        sequencer_scene = compat.sequencer_scene(context)
        if settings.audio_source == 'STRIP':
            try:        # the strips listed are those of the scene the song is read from
                song_in = song_scene.where_the_song_plays(scene, sequencer_scene, settings.strip_name).scene
            except EngineError:
                song_in = scene
            if song_in.sequence_editor is not None:
                layout.prop_search(settings, "strip_name", song_in.sequence_editor, compat.strip_search_attr(song_in),
                                   text="Strip", icon='SOUND')
            else:
                layout.label(text="Add the song in the Video Sequencer", icon='INFO')
        else:
            layout.prop(settings, "audio_file", text="")
        plan = None
        box = layout.box()
        try:
            plan = operators.plan(scene, settings, sequencer_scene)
            box.label(text=os.path.basename(plan.span.path), icon='SOUND')
            if plan.song_scene is not None and plan.song_scene.is_elsewhere:
                box.label(text=f"In the sequencer's scene '{plan.song_scene.scene.name}'", icon='SEQUENCE')
            box.label(text=f"{plan.duration:.1f} s from {plan.start_seconds:.2f} s into the file")
            if plan.span.speed != 1.0:     # a retimed strip: the dance follows the music as it plays
                box.label(text=f"Retimed: the file plays at {plan.span.speed * 100:.4g}% speed")
            box.label(text=f"Frames {scene_io.frame_span(plan.first, plan.last)} at {plan.fps:.5g} fps")
        except EngineError as e:
            box.label(text=str(e), icon='ERROR')
        row = box.row(align=True)
        row.prop(settings, "use_strip_range")
        if not settings.use_strip_range:
            row.prop(settings, "frame_start")
            row.prop(settings, "frame_end")

        # The dancer and what of its animation is kept
        layout.prop(settings, "armature")
        layout.operator("dance.create_dancer", icon='ADD')
        obj = operators.dancer(context)
        box = layout.box()
        try:
            from . import rig_io, rig_ui
            bone_map = None   # the SMPL dancer; own characters (issue 14): the map's keys, cached automatic map
            if rig_io.is_character(obj):
                bone_map = rig_io.stored_bone_map(obj) or rig_ui.automatic(obj)[1]
                bone_map = rig_io.check_character(obj, bone_map if isinstance(bone_map, dict) else None)
            else:
                scene_io.check_smpl_armature(obj)
            if plan is not None:
                ad = obj.animation_data
                action = ad.action if ad is not None else None

                def count():
                    return ((rig_io.count_character_keys(obj, bone_map, plan.first, plan.last)
                             if bone_map is not None else scene_io.count_kept(obj, plan.first, plan.last)),
                            operators.bind_pose_span(obj, bone_map, plan.first, plan.last))
                (keys, frames), span = _since_last_edit(
                    (obj.as_pointer(), action.as_pointer() if action is not None else 0,
                     tuple(sorted(bone_map.items())) if bone_map is not None else None, plan.first, plan.last),
                    count)
                box.label(text=f"Keeps {keys} key(s) on {frames} frame(s)" if keys or frames
                          else "No keys in range: a free dance", icon='KEYINGSET')
                if span is not None:
                    box.label(text=f"Not kept: the rest pose keyed on frame(s) {span} (an imported bind pose)",
                              icon='INFO')
                if not settings.use_strip_range and operators.regeneration_context(obj, plan) is not None:
                    box.label(text=f"Regenerates frames {scene_io.frame_span(plan.first, plan.last)} only; "
                                   "the rest stays",
                              icon='SEQ_STRIP_DUPLICATE')
        except EngineError as e:
            box.label(text=str(e), icon='ERROR')
        box.label(text="Keep animation of:")
        grid = box.grid_flow(columns=2, even_columns=True, align=True)
        for part in KEEPABLE:
            grid.prop(settings, "keep_" + part, toggle=True)

        # Options
        col = layout.column(align=True)
        col.prop(settings, "style")
        col.prop(settings, "seed")
        col.prop(settings, "quality")
        if settings.quality == 'BEST':
            col.prop(settings, "steps")
        col.prop(settings, "guidance")
        col.prop(settings, "autoguidance")
        col.prop(settings, "device")
        row = layout.row(align=True)
        row.prop(settings, "stage", expand=True)
        if settings.stage == 'RADIUS':
            layout.prop(settings, "stage_radius")
        layout.prop(settings, "wait_in_silence")

        # Run
        job = runner.active_job()
        if job is not None:
            compat.draw_progress(layout, settings.progress, settings.status or "generating")
            layout.operator("dance.cancel", icon='CANCEL')
        else:
            layout.operator("dance.generate", icon='PLAY')
            if settings.status:  # the finished run's bar stays full (or where it stopped)
                compat.draw_progress(layout, settings.progress, settings.status)
        if obj is not None and obj.type == 'ARMATURE':
            _draw_takes(layout, obj)


def _draw_takes(layout, obj) -> None:
    """Every dance generated for `obj` and the animator's own action: click one to play it."""
    from . import takes as T
    takes, original = T.takes(obj), T.original_action(obj)
    if not takes and original is None:
        return
    current = obj.animation_data.action if obj.animation_data else None
    box = layout.box()
    box.label(text="Takes", icon='ACTION')
    col = box.column(align=True)
    # A dancer that had no action before its first take (played by its NLA strips, or not
    # animated) goes back to none (QA: no way back, a Rigify rig's switches left on FK).
    for action in ([original] if original is not None else [None] if takes else []) + takes:
        label = f"{T.ORIGINAL_PREFIX}{action.name if action is not None else 'no action'}" \
            if action == original else action.name
        op = col.operator("dance.use_take", text=label, depress=action == current,
                          icon='CHECKMARK' if action == current else 'BLANK1')
        op.action, op.no_action = (action.name, False) if action is not None else ("", True)
    box.operator("dance.clean_takes", icon='TRASH')


class DANCE_PT_export(_DancePanel, bpy.types.Panel):
    bl_label = "Export"
    bl_idname = "DANCE_PT_export"
    bl_parent_id = "DANCE_PT_main"
    bl_options = {'DEFAULT_CLOSED'}

    def draw(self, context):
        row = self.layout.row(align=True)
        row.operator("dance.export_bvh", icon='EXPORT')
        row.operator("dance.export_npz", icon='EXPORT')


classes = (DANCE_PT_main, DANCE_PT_export)
