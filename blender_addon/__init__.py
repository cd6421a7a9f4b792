"""Dance Generator: turn a song into an SMPL dance inside Blender.

Loaded as a Blender 4.2+ extension (blender_manifest.toml) or as a legacy add-on (bl_info).
This file only lists classes and registers them; the work lives in scene_io.py and runner.py.
"""
bl_info = {
    "name": "Dance Generator",
    "author": "Dance Generator contributors",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "3D View > Sidebar > Dance",
    "description": "Generate a music-synchronous SMPL dance for a sound strip, keeping your keys",
    "category": "Animation",
}

import bpy

from . import _engine_path  # engine importable, before any submodule needs it
from . import operators, panels, preferences, properties, rig_ui

_classes = (*preferences.classes, *properties.classes, *operators.classes, *panels.classes,
            *rig_ui.classes)   # rig_ui: the user's own characters (issue 14)


def register():
    _engine_path.ensure()               # release() took it off when the add-on was last disabled
    preferences.add_deps_to_path()
    for cls in _classes:
        bpy.utils.register_class(cls)
    properties.register_props()
    rig_ui.register_props()
    panels.register_handlers()


def unregister():
    from . import runner
    job = runner.active_job()
    if job is not None:  # the worker must not outlive the classes it reports to
        job.cancel()
    panels.unregister_handlers()
    properties.unregister_props()
    rig_ui.unregister_props()
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
    _engine_path.release()
