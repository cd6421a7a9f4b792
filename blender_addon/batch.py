"""Generate a dance without the UI, in Blender's background mode or with the bpy module.

    blender -b [scene.blend] --python blender_addon/batch.py -- --audio song.mp3 --out-blend out.blend
    python blender_addon/batch.py -- --blend scene.blend --audio song.mp3 --out-bvh dance.bvh

Opens the .blend if given, uses (or adds) the sound strip for --audio and the SMPL armature
(--armature, else the only one in the scene, else a new one), keeps the keys found in the file,
generates synchronously (timers never fire headless) and saves. On a user mistake it prints one
line `error: ...` to stderr and exits with status 1.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path


def _addon():
    """Import the add-on package this file belongs to (blender_addon/ in the repository,
    the extension's folder when installed): its parent folder goes on sys.path."""
    here = Path(__file__).resolve().parent
    if str(here.parent) not in sys.path:
        sys.path.insert(0, str(here.parent))
    return importlib.import_module(here.name)


def parse_args(argv: list[str]) -> argparse.Namespace:
    _addon()  # puts the engine on sys.path
    from engine.defaults import DEFAULT_AUTOGUIDANCE, DEFAULT_GUIDANCE, DEFAULT_STEPS
    argv = argv[argv.index("--") + 1:] if "--" in argv else []
    p = argparse.ArgumentParser(prog="batch.py", description="Generate an SMPL dance headless.")
    p.add_argument("--audio", help="song file; added as a sound strip unless one with this file exists "
                                   "(default: the file's only/active sound strip)")
    p.add_argument("--blend", help="scene to open (the bpy module has no `blender scene.blend` argument)")
    p.add_argument("--armature", help="name of the SMPL armature (default: the only one, else a new one)")
    p.add_argument("--style", default="any")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    p.add_argument("--autoguidance", type=float, default=DEFAULT_AUTOGUIDANCE,
                   help="energy: autoguidance weight from the weights' guide network (1 = off)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--weights", help="checkpoint file (default: the shipped weights)")
    p.add_argument("--keep", default="", help="comma-separated body parts to keep from the file's animation: "
                                             "left_arm,right_arm,legs,torso,head,root")
    p.add_argument("--fps", type=float, help="set the scene frame rate first (e.g. 23.976)")
    p.add_argument("--frame-start", type=int, help="frame where a newly added sound strip starts")
    p.add_argument("--out-blend", help="save the scene here")
    p.add_argument("--out-bvh", help="also write the dance as BVH (Z up)")
    p.add_argument("--out-npz", help="also write the dance as an engine Motion .npz")
    return p.parse_args(argv)


def _set_fps(scene, fps: float) -> None:
    """Integer rates as they are; NTSC-style ones (23.976, 29.97, ...) as N / 1.001."""
    ntsc = round(fps * 1.001)
    if abs(fps - round(fps)) < 1e-6:
        scene.render.fps, scene.render.fps_base = int(round(fps)), 1.0
    elif abs(ntsc / 1.001 - fps) < 1e-3:
        scene.render.fps, scene.render.fps_base = int(ntsc), 1.001
    else:
        scene.render.fps = max(1, int(round(fps)))
        scene.render.fps_base = scene.render.fps / fps


def _sound_strip(scene, audio: str | None, frame_start: int | None, scene_io, compat):
    if audio is None:
        return scene_io.find_sound_strip(scene)
    target = os.path.normpath(os.path.abspath(audio))
    for strip in compat.all_strips(scene):
        if strip.type == 'SOUND' and strip.sound is not None and \
                os.path.normpath(scene_io._sound_file(strip.sound)) == target:
            return strip
    return scene_io.add_sound_strip(scene, target, frame_start)


def _armature(context, name: str | None, scene_io):
    import bpy
    from engine.errors import EngineError
    if name:
        obj = bpy.data.objects.get(name)
        if obj is None:
            raise EngineError(f"no object named '{name}' in the scene")
        return obj
    smpl = [o for o in context.scene.objects if o.type == 'ARMATURE' and scene_io.is_smpl_armature(o)]
    if len(smpl) > 1:
        raise EngineError(f"{len(smpl)} SMPL armatures in the scene: pick one with --armature")
    return smpl[0] if smpl else scene_io.create_smpl_armature(context)


def run(args: argparse.Namespace) -> str:
    """Do the work; returns a summary line, raises EngineError on a user mistake."""
    import bpy
    addon = _addon()
    from engine.errors import EngineError
    compat = importlib.import_module(addon.__name__ + ".blender_compat")
    scene_io = importlib.import_module(addon.__name__ + ".scene_io")
    operators = importlib.import_module(addon.__name__ + ".operators")
    runner = importlib.import_module(addon.__name__ + ".runner")
    if not hasattr(bpy.types.Scene, "dance"):
        addon.register()

    if args.blend:
        if not os.path.isfile(args.blend):
            raise EngineError(f"blend file not found: {args.blend}")
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(args.blend))
    context = bpy.context
    scene = context.scene
    if args.fps:
        _set_fps(scene, args.fps)
    strip = _sound_strip(scene, args.audio, args.frame_start, scene_io, compat)
    obj = _armature(context, args.armature, scene_io)
    scene_io.check_smpl_armature(obj)

    settings = scene.dance
    settings.audio_source, settings.strip_name, settings.use_strip_range = 'STRIP', strip.name, True
    settings.armature = obj
    parts = [p.strip() for p in args.keep.split(",") if p.strip()]
    known = set(importlib.import_module(addon.__name__ + ".properties").KEEPABLE)
    if set(parts) - known:
        raise EngineError(f"unknown --keep part(s) {', '.join(sorted(set(parts) - known))}: use {', '.join(sorted(known))}")
    for part in known:
        setattr(settings, "keep_" + part, part in parts)
    settings.seed, settings.steps, settings.guidance = args.seed, args.steps, args.guidance
    settings.autoguidance = args.autoguidance
    request = operators.build_request(context)
    request.style, request.device = args.style, args.device
    request.weights = os.path.abspath(args.weights) if args.weights else None
    request.action_name = operators.action_name(request.audio_path, args.style, args.seed)
    request.metadata["style"] = args.style

    last = [-1]

    def progress(fraction, message=""):
        if int(fraction * 10) != last[0]:
            last[0] = int(fraction * 10)
            print(f"dance: {fraction * 100:3.0f}% {message}", flush=True)
        return True

    action = runner.run_sync(request, progress)
    end = request.frame_start + request.num_frames - 1
    if args.out_bvh or args.out_npz:
        motion = scene_io.read_motion(obj, request.frame_start, end, request.fps, scene)
        if args.out_bvh:
            from engine.bvh import write_bvh
            write_bvh(motion, args.out_bvh, up_axis="Z")
        if args.out_npz:
            motion.save_npz(args.out_npz)
    if args.out_blend:
        bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.out_blend))
    return f"'{action.name}' on '{obj.name}', frames {request.frame_start}-{end}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv if argv is None else argv)
    try:
        _addon()  # also puts `engine` on sys.path, whichever layout this file is in
        from engine.errors import EngineError
    except ImportError as e:
        print(f"error: the engine cannot be imported ({e}); install the dependencies first", file=sys.stderr)
        return 1
    try:
        print("dance: done:", run(args), flush=True)
        return 0
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except ImportError as e:
        print(f"error: a dependency is missing ({e}); install the dependencies first", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A process that imported both torch and bpy can crash while tearing down; the work is saved.
    os._exit(code)
