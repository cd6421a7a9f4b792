"""Render docs/character.gif: a Rigify rig (Blender's own human metarig, generated) dancing to the
project's example song with the shipped weights, through the add-on's own character path.

    .venv/bin/python docs/render_character.py [--seconds 4] [--out docs/character.gif]

Workbench render in the bpy module; the body is one capsule per deforming bone (the metarig has
no mesh). Takes about a minute on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))   # addon_helpers: the Rigify rig the character tests use
from addon_helpers import make_rigify_blend  # noqa: E402


def capsule_body(rig):
    """One mesh, a capsule per deforming limb/spine bone, each rigidly skinned to its bone."""
    import bmesh
    import bpy
    from mathutils import Matrix, Vector
    bm = bmesh.new()
    deform = bm.verts.layers.deform.verify()
    skip = re.compile(r"^DEF-(f_|thumb|palm|breast|pelvis|ear|lid|brow|lip|cheek|nose|chin|jaw|tongue|temple|"
                      r"forehead|teeth|eye)")
    names = [b.name for b in rig.data.bones if b.use_deform and b.length > 0.04 and not skip.match(b.name)]
    for g, name in enumerate(names):
        bone = rig.data.bones[name]
        head, tail = Vector(bone.head_local), Vector(bone.tail_local)
        radius = 0.09 if "spine" in name else 0.045 if any(k in name for k in ("thigh", "shin", "upper_arm")) else 0.035
        if name == "DEF-spine.006":   # the head
            out = bmesh.ops.create_uvsphere(bm, u_segments=16, v_segments=10, radius=0.11,
                                            matrix=Matrix.Translation((head + tail) / 2))
        else:
            axis = tail - head
            rot = axis.to_track_quat('Z', 'Y').to_matrix().to_4x4()
            out = bmesh.ops.create_cone(bm, cap_ends=True, segments=12, radius1=radius, radius2=radius * 0.85,
                                        depth=axis.length, matrix=Matrix.Translation((head + tail) / 2) @ rot)
        for v in out["verts"]:
            v[deform][g] = 1.0
    mesh = bpy.data.meshes.new("body")
    bm.to_mesh(mesh)
    bm.free()
    body = bpy.data.objects.new("body", mesh)
    for name in names:
        body.vertex_groups.new(name=name)
    bpy.context.scene.collection.objects.link(body)
    body.parent = rig
    body.modifiers.new("Armature", 'ARMATURE').object = rig
    return body


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--out", default=str(REPO / "docs" / "character.gif"))
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    make_rigify_blend(tmp / "rigify.blend", timeout=600)

    import bpy
    import addon_utils
    from PIL import Image
    import blender_addon
    from blender_addon import operators, runner, scene_io
    from engine.example import make_example_song

    bpy.ops.wm.open_mainfile(filepath=str(tmp / "rigify.blend"))
    addon_utils.enable(blender_addon.__name__, default_set=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    song = make_example_song(tmp / "song.wav", seconds=args.seconds)
    scene_io.add_sound_strip(scene, str(song), frame_start=1)
    rig = bpy.data.objects["rig"]
    scene.dance.armature = rig
    scene.dance.device = 'CPU'
    capsule_body(rig)
    for coll in rig.data.collections_all:   # show only the body
        coll.is_visible = False
    request = operators.build_request(bpy.context)
    runner.run_sync(request)

    bpy.ops.mesh.primitive_plane_add(size=30.0)
    world = bpy.data.worlds.new("world")
    world.color = (0.75, 0.78, 0.82)
    scene.world = world
    cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(cam)
    cam.data.type, cam.data.ortho_scale = 'ORTHO', 3.4
    cam.rotation_euler = (1.45, 0.0, 0.52)
    scene.camera = cam
    torso = rig.pose.bones["torso"]
    scene.render.engine = 'BLENDER_WORKBENCH'
    scene.display.shading.light = 'STUDIO'
    scene.display.shading.color_type = 'SINGLE'
    scene.display.shading.show_shadows = True
    scene.render.resolution_x, scene.render.resolution_y = 320, 400
    frames = []
    for k, f in enumerate(range(request.frame_start, request.frame_start + request.num_frames, 3)):
        scene.frame_set(f)
        x, y, _ = rig.matrix_world @ torso.head   # the camera follows the dancer over the floor
        cam.location = (x + 2.6, y - 4.5, 1.6)
        scene.render.filepath = str(tmp / f"f{k:03d}.png")
        bpy.ops.render.render(write_still=True)
        frames.append(Image.open(scene.render.filepath).convert("RGB"))
    palette = frames[0].quantize(colors=64)   # one palette for every frame: no flicker
    frames = [f.quantize(palette=palette) for f in frames]
    frames[0].save(args.out, save_all=True, append_images=frames[1:], duration=100, loop=0, optimize=True)
    print(f"wrote {args.out}: {len(frames)} frames")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    code = main()
    from blender_addon.batch import remove_blender_session_folder
    remove_blender_session_folder()   # a normal exit removes Blender's session folder; os._exit does not
    os._exit(code)   # torch and bpy in one process can crash while tearing down
