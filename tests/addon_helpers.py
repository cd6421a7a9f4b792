"""Setup shared by the add-on tests that run in the real bpy module (and by docs/render_character.py).
bpy is imported inside the functions: the Rigify child process must start before it is loaded."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from contextlib import contextmanager

# A Rigify rig generated from Blender's human metarig, saved to the .blend given as the last
# argument. Run in a child process: a process that ran rigify_generate can hang at exit.
RIGIFY_SCRIPT = textwrap.dedent("""
    import os, sys
    import bpy, addon_utils
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    meta = bpy.context.object
    bpy.ops.pose.rigify_generate()
    bpy.data.objects.remove(meta)
    bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1])
    sys.stdout.flush()
    import shutil; shutil.rmtree(bpy.app.tempdir, ignore_errors=True)   # what a normal exit removes
    os._exit(0)   # a process that ran rigify_generate can hang at exit
""")


def make_rigify_blend(path, timeout: float = 300) -> None:
    """Write a .blend holding a generated Rigify rig (named "rig") to `path`."""
    subprocess.run([sys.executable, "-c", RIGIFY_SCRIPT, str(path)], check=True, timeout=timeout,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def enabled_addon(weights):
    """Factory settings, the add-on enabled the way Blender enables it, `weights` in its preferences
    and the CPU as its device; yields the scene and disables the add-on afterwards."""
    import addon_utils
    import bpy

    import blender_addon
    pkg = blender_addon.__name__
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable(pkg, default_set=True)
    prefs = bpy.context.preferences.addons[pkg].preferences
    prefs.weights_path = str(weights)
    prefs.default_device = 'CPU'
    try:
        yield bpy.context.scene
    finally:
        addon_utils.disable(pkg, default_set=True)
