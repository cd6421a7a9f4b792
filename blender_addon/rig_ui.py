"""The Dance panel's "Character" section: which bone of the user's armature plays which SMPL
joint, editable bone by bone, with automatic mapping and presets saved and loaded as JSON
(the shipped ones in engine/outputs/bone_maps, the user's own in Blender's user config folder).

The mapping lives on the armature object (`Object.dance_bone_map`, saved with the .blend); while
it is empty the automatic one (engine.outputs.retarget.auto_map) is used. rig_io reads it.
"""
from __future__ import annotations

import os
import re

import bpy
from bpy.props import CollectionProperty, EnumProperty, StringProperty

from . import _engine_path  # noqa: F401

# Imports of rig_io (and through it the engine, torch included) happen inside functions: the
# add-on registers and explains itself before its dependencies are installed.
MAP_PROPERTY = "dance_bone_map"   # the armature object's CollectionProperty holding the mapping
USER_PRESET_FOLDER = "dance_generator/bone_maps"
_auto_cache: dict = {}   # (object name, bone count) -> (preset name or None, bone map or error text)
_enum_items: list = []   # Blender keeps only pointers to dynamic enum strings: hold them here


def user_preset_dir() -> str:
    """The user's own bone-map presets (created on first use)."""
    return bpy.utils.user_resource('CONFIG', path=USER_PRESET_FOLDER, create=True)


def user_presets() -> dict[str, str]:
    """{name: path} of the user's saved presets."""
    folder = user_preset_dir()
    return {os.path.splitext(f)[0]: os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".json")}


def _preset_items(self, context):
    from engine.outputs.retarget import list_presets
    items = [("shipped:" + n, n.replace("_", " ").title(), f"Shipped preset '{n}'") for n in list_presets()]
    items += [("user:" + n, n, f"Your preset {path}") for n, path in user_presets().items()]
    _enum_items[:] = items or [("", "(none)", "No presets")]
    return _enum_items


def automatic(obj):
    """(detected preset or None, automatic bone map, or an error text) for `obj`, cached."""
    from . import rig_io
    key = (obj.name, len(obj.data.bones))
    if key not in _auto_cache:
        from engine.errors import EngineError
        from engine.outputs.retarget import detect_preset
        try:
            bone_map = rig_io.automatic_bone_map(obj)
            _auto_cache[key] = (detect_preset(rig_io.read_rig(obj, bone_map)), bone_map)
        except EngineError as e:
            _auto_cache[key] = (None, str(e))
    return _auto_cache[key]


class DanceBoneMapItem(bpy.types.PropertyGroup):
    joint: StringProperty(name="Joint", description="The SMPL joint (or 'root': the bone that carries the location)")
    bone: StringProperty(name="Bone", description="The armature's bone that plays this joint (empty: not driven)")


def _character(context):
    from . import operators, rig_io
    obj = operators.dancer(context)
    return obj if rig_io.is_character(obj) else None


class _MapOperator:
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return _character(context) is not None

    def fail(self, msg: str):
        self.report({'ERROR'}, msg)
        return {'CANCELLED'}


class DANCE_OT_auto_map(_MapOperator, bpy.types.Operator):
    """Map the character's bones to SMPL's joints automatically (by names, else by the hierarchy) and show the map for editing"""
    bl_idname = "dance.auto_map"
    bl_label = "Auto-Map Bones"

    def execute(self, context):
        from engine.errors import EngineError
        from . import rig_io
        obj = _character(context)
        _auto_cache.pop((obj.name, len(obj.data.bones)), None)
        preset, bone_map = automatic(obj)
        if isinstance(bone_map, str):
            return self.fail(bone_map)
        try:
            rig_io.check_character(obj, bone_map)
            rig_io.store_bone_map(obj, bone_map)
        except EngineError as e:
            return self.fail(str(e))
        how = f"preset '{preset}'" if preset else "from the hierarchy"
        self.report({'INFO'}, f"mapped {len(bone_map)} joints ({how})")
        return {'FINISHED'}


class DANCE_OT_load_bone_map(_MapOperator, bpy.types.Operator):
    """Use a saved bone map: a shipped preset or one of yours"""
    bl_idname = "dance.load_bone_map"
    bl_label = "Load Bone Map"
    bl_property = "preset"

    preset: EnumProperty(name="Preset", items=_preset_items, description="The bone map to use")

    def invoke(self, context, event):
        context.window_manager.invoke_search_popup(self)
        return {'RUNNING_MODAL'}

    def execute(self, context):
        from engine.errors import EngineError
        from engine.outputs.retarget import load_bone_map, load_preset
        from . import rig_io
        obj = _character(context)
        kind, _, name = self.preset.partition(":")
        try:
            if kind == "shipped":
                bone_map = load_preset(name, rig_io.read_rig(obj))
            elif kind == "user" and name in user_presets():
                bone_map = load_bone_map(user_presets()[name])
            else:
                return self.fail(f"no bone map preset '{self.preset}'")
            rig_io.check_character(obj, bone_map)
        except EngineError as e:
            return self.fail(f"preset '{name}' does not fit '{obj.name}': {e}")
        try:
            rig_io.store_bone_map(obj, bone_map)
        except EngineError as e:
            return self.fail(str(e))
        self.report({'INFO'}, f"'{obj.name}' now uses bone map '{name}'")
        return {'FINISHED'}


class DANCE_OT_save_bone_map(_MapOperator, bpy.types.Operator):
    """Save the character's bone map as your own preset (JSON in Blender's user config folder)"""
    bl_idname = "dance.save_bone_map"
    bl_label = "Save Bone Map"
    bl_options = {'REGISTER'}

    name: StringProperty(name="Name", default="my_character", description="Name of the preset file")

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        from engine.errors import EngineError
        from engine.outputs.retarget import save_bone_map
        from . import rig_io
        obj = _character(context)
        name = re.sub(r"[^\w.-]+", "_", self.name.strip())
        if not name:
            return self.fail("give the preset a name")
        try:
            bone_map = rig_io.character_bone_map(obj)
            path = save_bone_map(bone_map, os.path.join(user_preset_dir(), name + ".json"), title=self.name)
        except EngineError as e:
            return self.fail(str(e))
        self.report({'INFO'}, f"saved bone map '{name}' to {path}")
        return {'FINISHED'}


class DANCE_PT_character(bpy.types.Panel):
    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = "Dance"
    bl_label = "Character Bones"
    bl_idname = "DANCE_PT_character"
    bl_parent_id = "DANCE_PT_main"

    @classmethod
    def poll(cls, context):
        try:
            return _character(context) is not None
        except Exception:   # the engine not importable yet: the main panel says what is missing
            return False

    def draw(self, context):
        from engine.errors import EngineError
        from engine.body.skeleton import JOINT_NAMES
        from . import rig_io
        layout = self.layout
        obj = _character(context)
        items = getattr(obj, MAP_PROPERTY)
        row = layout.row(align=True)
        row.operator("dance.auto_map", icon='AUTO')
        row.operator("dance.load_bone_map", icon='IMPORT', text="Load")
        row.operator("dance.save_bone_map", icon='EXPORT', text="Save")
        try:
            rig_io.character_bone_map(obj)
            layout.label(text="Bone map OK", icon='CHECKMARK')
        except EngineError as e:
            layout.label(text=str(e), icon='ERROR')
        if not len(items):   # automatic: show it, Auto-Map copies it here for editing
            preset, bone_map = automatic(obj)
            if isinstance(bone_map, str):
                return
            layout.label(text=f"Automatic ({preset or 'from the hierarchy'}); Auto-Map to edit", icon='INFO')
            col = layout.column(align=True)
            for joint in (*JOINT_NAMES, rig_io.ROOT_KEY):
                if joint in bone_map:
                    split = col.split(factor=0.4)
                    split.label(text=joint)
                    split.label(text=bone_map[joint])
            return
        col = layout.column(align=True)
        for item in items:
            split = col.split(factor=0.4)
            split.label(text=item.joint)
            split.prop_search(item, "bone", obj.data, "bones", text="")


classes = (DanceBoneMapItem, DANCE_OT_auto_map, DANCE_OT_load_bone_map, DANCE_OT_save_bone_map, DANCE_PT_character)


def register_props():
    setattr(bpy.types.Object, MAP_PROPERTY, CollectionProperty(
        type=DanceBoneMapItem, name="Dance Bone Map",
        description="Which bone plays which SMPL joint when this armature dances (empty: automatic)"))


def unregister_props():
    delattr(bpy.types.Object, MAP_PROPERTY)
