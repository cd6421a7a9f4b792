"""Generate a dance without the UI, in Blender's background mode or with the bpy module.

    blender -b [scene.blend] --python blender_addon/batch.py -- --audio song.mp3 --out-blend out.blend
    python blender_addon/batch.py -- --blend scene.blend --audio song.mp3 --out-bvh dance.bvh
    (with the bpy module the `--` may be left out)

Opens the .blend if given, uses (or adds) the sound strip for --audio and the SMPL armature
(--armature, else the only one in the scene, else a new one), keeps the keys found in the file,
generates synchronously (timers never fire headless) and saves. On a user mistake it prints one
line `error: ...` to stderr and exits with status 1.
"""
from __future__ import annotations

import argparse
import importlib
import math
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


class _OneLineParser(argparse.ArgumentParser):
    """A mistyped value is one `error: ...` line and exit 1, as every other mistake is."""

    def error(self, message):
        print(f"error: {message} (see batch.py --help)", file=sys.stderr)
        raise SystemExit(1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    _addon()  # puts the engine on sys.path
    from engine.defaults import DEFAULT_AUTOGUIDANCE, DEFAULT_GUIDANCE, DEFAULT_QUALITY, DEFAULT_STEPS, QUALITIES
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    elif argv and Path(argv[0]).name == Path(__file__).name:
        argv = argv[1:]      # `python batch.py --help` with the bpy module: no Blender options to skip
    else:
        argv = []            # inside Blender without `--`: every option is Blender's
    p = _OneLineParser(prog="batch.py", description="Generate a dance headless, on the SMPL dancer or "
                                                    "your own humanoid character.")
    p.add_argument("--audio", help="song file; added as a sound strip unless one with this file exists "
                                   "(default: the file's only/active sound strip)")
    p.add_argument("--blend", help="scene to open (the bpy module has no `blender scene.blend` argument)")
    p.add_argument("--armature", help="name of the armature to dance: the SMPL dancer or your own humanoid "
                                      "character (default: the only SMPL armature, else the scene's only armature, "
                                      "else a new SMPL dancer)")
    p.add_argument("--bone-map", metavar="FILE.json", help="for your own character: which bone plays which SMPL "
                                                           "joint (default: the map stored on it, else automatic)")
    p.add_argument("--style", default="any", help="dance style the weights know (default any)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same dance (default 0)")
    p.add_argument("--quality", default=DEFAULT_QUALITY, choices=QUALITIES,
                   help=f"fast: the few-step student; best: the many-step model (default {DEFAULT_QUALITY})")
    p.add_argument("--steps", type=int, default=None,
                   help=f"sampling steps of the many-step teacher (implies --quality best; default {DEFAULT_STEPS})")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                   help=f"music guidance: how strongly the dance follows the song (default {DEFAULT_GUIDANCE})")
    p.add_argument("--autoguidance", type=float, default=DEFAULT_AUTOGUIDANCE,
                   help="energy: autoguidance weight from the weights' guide network (1 = off)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--weights", help="checkpoint file (default: the shipped weights)")
    p.add_argument("--keep", default="", help="comma-separated body parts to keep from the file's animation: "
                                             "left_arm,right_arm,arms,left_leg,right_leg,legs,torso,head,"
                                             "all,root")
    p.add_argument("--stage-radius", type=float, default=None, metavar="METRES",
                   help="keep the dancer within this many metres of where it starts; 0 = dance in place "
                        "(default: the engine's floor)")
    p.add_argument("--dance-silence", action="store_true",
                   help="dance through the song's silences too (default: the dancer holds still where the "
                        "music is silent for a second or more)")
    p.add_argument("--fps", type=float, help="set the scene frame rate first (e.g. 23.976)")
    p.add_argument("--frame-start", type=int, help="frame where a newly added sound strip starts")
    p.add_argument("--frame-range", type=int, nargs=2, metavar=("FIRST", "LAST"),
                   help="dance only these scene frames of the song (default: all its frames); where the "
                        "armature's action is danced beyond them, only this section is regenerated and joins "
                        "the rest")
    p.add_argument("--out-blend", help="save the scene here")
    p.add_argument("--out-bvh", help="also write the dance as BVH (metres; up axis: --bvh-up)")
    p.add_argument("--bvh-up", choices=("Y", "Z"), default="Y",
                   help="the BVH's up axis: Y (default: SMPL's and the command line's, what Blender's BVH importer "
                        "expects by default) or Z (re-import with Forward Y, Up Z)")
    p.add_argument("--out-npz", help="also write the dance as an engine Motion .npz")
    p.add_argument("--force", action="store_true",
                   help="overwrite existing output files (saving back to the --blend file needs no --force)")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """engine.options' validation, shared with the command line, before any scene is touched
    or any generation starts; EngineError on the first mistake. Sets args.keep_toggles."""
    from engine.api import available_styles
    from engine.errors import EngineError
    from engine.options import check_options, check_song_path, parse_body_parts
    styles = available_styles(os.path.abspath(args.weights) if args.weights else None)
    check_options(style=args.style, styles=styles, steps=_teacher_steps(args), seed=args.seed, fps=args.fps,
                  guidance=args.guidance, autoguidance=args.autoguidance, stage_radius=args.stage_radius)
    if args.audio is not None:          # as the command line checks its song (a folder was "not found")
        check_song_path(args.audio)
    if args.frame_start is not None:    # Blender clamped a frame outside its range without a word
        first, last = _blender_frames()
        if not first <= args.frame_start <= last:
            raise EngineError(f"--frame-start must be a frame from {first} to {last} (Blender's range), "
                              f"got {args.frame_start}")
    if args.frame_range is not None:
        first, last = _blender_frames()
        if not (first <= args.frame_range[0] <= args.frame_range[1] <= last):
            raise EngineError(f"--frame-range needs FIRST <= LAST, frames from {first} to {last} (Blender's "
                              f"range), got {args.frame_range[0]} {args.frame_range[1]}")
    args.keep_toggles = _keep_toggles(parse_body_parts(args.keep, allow_root=True))
    if args.quality == "fast" and args.steps is not None:      # said, as the command line says it
        print(f"note: --steps {args.steps} are the many-step model's: quality 'fast' uses the many-step model",
              file=sys.stderr, flush=True)


def _teacher_steps(args: argparse.Namespace) -> int:
    from engine.defaults import DEFAULT_STEPS
    return DEFAULT_STEPS if args.steps is None else args.steps


def _keep_toggles(parts: list[str]) -> set[str]:
    """Body-part names (engine.options.BODY_PART_NAMES and "root") -> the add-on's keep_<name>
    toggles (properties.KEEPABLE) that cover exactly the same joints together ("arms" = both arm
    toggles; "left_leg,right_leg" = "legs"). Checked part by part, both legs were refused, though
    together they are the add-on's legs; one leg alone it cannot keep."""
    from engine.errors import EngineError
    from engine.body.skeleton import BODY_PARTS
    keepable = importlib.import_module(_addon().__name__ + ".properties").KEEPABLE
    toggles = {part for part in parts if part in keepable}
    wanted = set().union(*(BODY_PARTS[p] for p in parts if p not in keepable))
    cover = {t for t in keepable if t in BODY_PARTS and set(BODY_PARTS[t]) <= wanted}
    uncovered = wanted - set().union(*(BODY_PARTS[t] for t in cover))
    if uncovered:
        alone = [p for p in parts if p not in keepable and set(BODY_PARTS[p]) & uncovered]
        raise EngineError(f"--keep {','.join(alone)}: the add-on keeps {', '.join(keepable)} (and arms, all); "
                          f"{' and '.join(alone)} alone is not one of them (left_leg,right_leg together are legs)")
    return toggles | cover


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


def _sound_strip(scene, audio: str | None, frame_start: int | None, scene_io, compat, song_in=None):
    """The strip danced: with no --audio, the only (or active) sound strip of `song_in` (the
    scene whose sequencer holds the song, song_scene.where_the_song_plays; default `scene`);
    with --audio, a strip of that file in `song_in` or `scene`, else a new one in `scene` (QA: a
    song already in 5.0's Sequencer Scene was added again, playing twice)."""
    if audio is None:
        from engine.errors import EngineError
        try:
            return scene_io.find_sound_strip(song_in or scene)
        except scene_io.NoSoundStrip:       # the panel's words name its menus; here the option is what to give
            raise EngineError("no song: the scene has no sound strip; give one with --audio FILE") from None
        except scene_io.SeveralSoundStrips as e:
            raise EngineError(f"{e.count} sound strips in the scene and none picked: name the song with "
                              "--audio FILE") from None
    target = os.path.normpath(os.path.abspath(audio))
    for strip in compat.all_strips(song_in or scene) + (compat.all_strips(scene) if song_in not in (None, scene) else []):
        if strip.type == 'SOUND' and strip.sound is not None and \
                os.path.normpath(scene_io._sound_file(strip.sound)) == target:
            return strip
    from engine.music.audio import check_readable
    check_readable(target)           # before a strip is added and the model loads
    _check_song_fits(scene, target, frame_start)
    playing = [s.name for s in compat.all_strips(scene) if s.type == 'SOUND' and not s.mute]
    if playing:     # the scene's own song would play over the new one in the saved file
        print(f"note: the scene's sound strip(s) {', '.join(repr(n) for n in playing)} still play beside "
              f"{os.path.basename(target)}: mute them in the Video Sequencer to hear only the new song",
              file=sys.stderr, flush=True)
    return scene_io.add_sound_strip(scene, target, frame_start)


def _blender_frames() -> tuple[int, int]:
    """The first and last frame Blender has (MINAFRAME, MAXFRAME), as its own properties say."""
    import bpy
    frame = bpy.types.Scene.bl_rna.properties["frame_current"]
    return frame.hard_min, frame.hard_max


def _check_song_fits(scene, path: str, frame_start: int | None) -> None:
    """EngineError if the song, from `frame_start` at the scene's rate, runs past Blender's last
    frame: Blender would clamp the frames and the dance's end be lost, without a word."""
    from engine.errors import EngineError
    from engine.music.audio import audio_seconds
    seconds = audio_seconds(path)                       # from the header (None: not known cheaply)
    if frame_start is None or seconds is None:
        return
    end = frame_start + math.ceil(seconds * scene.render.fps / scene.render.fps_base) - 1
    last = _blender_frames()[1]
    if end > last:
        raise EngineError(f"--frame-start {frame_start}: the song ({seconds:.1f} s) would play to frame {end}, "
                          f"past Blender's last frame {last}")


def _armature(context, name: str | None, scene_io):
    import bpy
    from engine.errors import EngineError
    if name:
        obj = bpy.data.objects.get(name)
        if obj is None:
            raise EngineError(f"no object named '{name}' in the scene")
        if obj.type != 'ARMATURE':      # (the panel's check names its button, not this option)
            raise EngineError(f"'{name}' is not an armature: give --armature an armature's name, or leave it out "
                              "for the scene's SMPL dancer or a new one")
        return obj
    armatures = [o for o in context.scene.objects if o.type == 'ARMATURE']
    smpl = [o for o in armatures if scene_io.is_smpl_armature(o)]
    if len(smpl) > 1:
        raise EngineError(f"{len(smpl)} SMPL armatures in the scene: pick one with --armature")
    if smpl:
        return smpl[0]
    # The animator's own character: a scene's only armature is danced (a new SMPL dancer beside
    # it, danced instead without a word, left the character as it was: QA); of several, say which.
    if len(armatures) == 1:
        if armatures[0].library is None:    # a linked one is refused next, in one line: no note before it
            print(f"note: dancing '{armatures[0].name}', the scene's only armature (--armature NAME picks another)",
                  file=sys.stderr, flush=True)
        return armatures[0]
    if armatures:
        names = ", ".join(sorted(repr(o.name) for o in armatures)[:4]) + (" ..." if len(armatures) > 4 else "")
        raise EngineError(f"{len(armatures)} armatures in the scene ({names}) and none is an SMPL dancer: "
                          "pick one with --armature")
    return scene_io.create_smpl_armature(context)


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
        with open(args.blend, "rb") as f:   # Blender would print its own error line before ours
            magic = f.read(7)
        if not (magic.startswith(b"BLENDER") or magic.startswith(b"\x28\xb5\x2f\xfd") or magic.startswith(b"\x1f\x8b")):
            raise EngineError(f"cannot open {args.blend}: not a .blend file")
        try:
            bpy.ops.wm.open_mainfile(filepath=os.path.abspath(args.blend))
        except RuntimeError as e:
            raise EngineError(f"cannot open {args.blend}: {str(e).strip().splitlines()[-1]}") from None
    _check_not_a_library(args.out_blend)
    context = bpy.context
    scene = context.scene
    if args.fps:
        _set_fps(scene, args.fps)
    song_scene = importlib.import_module(addon.__name__ + ".song_scene")
    try:      # Blender 5.0: the song may lie in the Video Sequencer's own scene
        song_in = song_scene.where_the_song_plays(scene, compat.sequencer_scene(context)).scene
    except EngineError:
        if args.audio is None:
            raise
        song_in = scene       # the file given is added to the dancer's scene
    strip = _sound_strip(scene, args.audio, args.frame_start, scene_io, compat, song_in)
    obj = _armature(context, args.armature, scene_io)
    rig_io = importlib.import_module(addon.__name__ + ".rig_io")   # own characters (issue 14)
    if rig_io.is_character(obj):
        bone_map = rig_io.check_character(obj, path=os.path.abspath(args.bone_map) if args.bone_map else None)
        if args.bone_map:
            rig_io.store_bone_map(obj, bone_map)   # the map used is saved with --out-blend
    else:
        scene_io.check_smpl_armature(obj)
        if args.bone_map:
            raise EngineError(f"--bone-map is for your own characters; '{obj.name}' is an SMPL dancer")

    settings = scene.dance
    settings.audio_source, settings.strip_name = 'STRIP', strip.name
    settings.use_strip_range = args.frame_range is None        # a range saved in the .blend is not used
    if args.frame_range is not None:
        settings.frame_start, settings.frame_end = args.frame_range
    settings.armature = obj
    if not hasattr(args, "keep_toggles"):
        check_args(args)
    for part in importlib.import_module(addon.__name__ + ".properties").KEEPABLE:
        setattr(settings, "keep_" + part, part in args.keep_toggles)
    settings.seed, settings.guidance = args.seed, args.guidance
    # Steps are the teacher's: asking for them asks for the teacher (as on the command line).
    settings.quality = 'BEST' if args.quality == "best" or args.steps is not None else 'FAST'
    settings.steps = _teacher_steps(args)
    settings.autoguidance = args.autoguidance
    settings.wait_in_silence = not args.dance_silence
    request = operators.build_request(context)
    request.style, request.device = args.style, args.device
    # A section regenerated in style any keeps its take's style (the panel's Style is not read here).
    action = obj.animation_data.action if obj.animation_data is not None else None
    request.range_style = operators.range_style(action, args.frame_range, args.style)
    request.weights = os.path.abspath(args.weights) if args.weights else None
    request.stage_radius = None   # metres in the scene -> Blender units -> the dance's metres
    if args.stage_radius is not None:
        units = args.stage_radius / (scene.unit_settings.scale_length or 1.0)
        request.stage_radius = units / operators.dancer_units_per_metre(obj, request.bone_map, request.frame_start)
    operators.name_take(request)          # the take's name follows --style and --seed

    last = [-1]

    def progress(fraction, message=""):
        if int(fraction * 10) != last[0]:
            last[0] = int(fraction * 10)
            print(f"dance: {fraction * 100:3.0f}% {message}", flush=True)
        return True

    motion = runner.generate(request, progress)
    for note in request.notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    said = len(request.notes)
    action = runner.apply(request, motion)
    for note in request.notes[said:]:     # what writing the take did (QA33: the grown frame range, unsaid)
        print(f"note: {note}", file=sys.stderr, flush=True)
    first, last = request.write_range or (request.frame_start, request.frame_start + request.num_frames - 1)
    if args.out_bvh or args.out_npz:
        motion = motion.section(first - request.frame_start, last - first + 1)   # a range: that section
        if request.bone_map is None:   # the SMPL dancer as the scene shows it (own characters: the dance put on them)
            shown = scene_io.read_motion(obj, first, last, request.fps, scene)
            # ... with what the scene does not hold: style, seed, beats, song (QA: seed 0, style any)
            for name in ("style", "seed", "beat_times", "audio_path", "audio_start"):
                setattr(shown, name, getattr(motion, name))
            if motion.contacts is not None and len(motion.contacts) == shown.num_frames:
                shown.contacts = motion.contacts
            motion = shown
        try:
            if args.out_bvh:
                from engine.outputs.bvh import write_bvh
                write_bvh(motion, args.out_bvh, up_axis=args.bvh_up)
            if args.out_npz:
                motion.save_npz(args.out_npz)
        except OSError as e:
            raise EngineError(f"cannot write {e.filename or 'the output'}: {e.strerror or e}") from None
    if args.out_blend:
        try:
            bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.out_blend))
        except RuntimeError as e:
            raise EngineError(f"cannot save {args.out_blend}: {str(e).strip().splitlines()[-1]}") from None
    return f"'{action.name}' on '{obj.name}', frames {scene_io.frame_span(first, last)}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv if argv is None else argv)
    try:
        _addon()  # also puts `engine` on sys.path, whichever layout this file is in
        from engine.errors import ended_by_signal
    except ImportError as e:
        print(f"error: the engine cannot be imported ({e}); install the dependencies first", file=sys.stderr)
        return 1
    # kill (a timeout, a scheduler) lets the outputs' temporary files go, and Ctrl-C says so, as the CLI
    return ended_by_signal(lambda: _checked_run(args))


def _checked_run(args: argparse.Namespace) -> int:
    """main's work once the engine imports: 0, or 1 with one line for the first mistake."""
    from engine.errors import EngineError
    try:
        check_args(args)       # before the scene is opened or anything is generated
        check_outputs(args)
        print("dance: done:", run(args), flush=True)
        return 0
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except ImportError as e:
        print(f"error: a dependency is missing ({e}); install the dependencies first", file=sys.stderr, flush=True)
        return 1
    except Exception as e:  # a bug, not a user mistake: still one line (the details go after it)
        print(f"error: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr, flush=True)
        import traceback
        traceback.print_exc()
        return 1


def check_outputs(args: argparse.Namespace) -> None:
    """EngineError unless every output file can be written: checked up front, by creating a file
    beside each one, so a bad path fails in a second rather than after the dance is generated."""
    from engine.errors import EngineError
    from engine.options import check_writable
    outputs = (("--out-blend", args.out_blend), ("--out-bvh", args.out_bvh), ("--out-npz", args.out_npz))
    if not any(path for _, path in outputs):
        raise EngineError("nothing would be saved: give --out-blend, --out-bvh or --out-npz")
    opened = os.path.abspath(args.blend) if args.blend else None
    inputs = {os.path.realpath(path): flag for flag, path in (("--audio", args.audio), ("--blend", args.blend)) if path}
    written: dict[str, str] = {}
    suffixes = {"--out-blend": ".blend", "--out-bvh": ".bvh", "--out-npz": ".npz"}
    for flag, path in outputs:
        if not path:
            continue
        full = os.path.abspath(path)
        # With --force, an output named like another output or an input replaced it (a scene or
        # a song overwritten with BVH text); only the scene may be saved back over its .blend.
        same = os.path.realpath(path)
        if same in written:
            raise EngineError(f"{flag} {path} is also given as {written[same]}: each output needs its own file")
        if same in inputs and not (flag == "--out-blend" and inputs[same] == "--blend"):
            raise EngineError(f"{flag} {path} is the {inputs[same]} file: it would be overwritten")
        written[same] = flag
        folder = os.path.dirname(full)
        if os.path.isdir(full):
            raise EngineError(f"{flag} {path} is a folder, not a file")
        if not os.path.isdir(folder):
            raise EngineError(f"{flag} {path}: {folder} is a file, not a folder" if os.path.exists(folder)
                              else f"{flag} {path}: the folder {folder} does not exist")
        if os.path.exists(full) and not args.force and not (flag == "--out-blend" and full == opened):
            raise EngineError(f"{flag} {path} exists: pass --force to overwrite it")
        check_writable(Path(full), f"{flag} {path}")
    for flag, path in outputs:     # named as what they hold (a .blend saved as i.txt, BVH text in x.npz)
        if path and not path.lower().endswith(suffixes[flag]):
            raise EngineError(f"{flag} {path}: the file name must end in {suffixes[flag]}")


def _check_not_a_library(out_blend: str | None) -> None:
    """EngineError when --out-blend is a library the opened scene links: Blender will not save
    over it, and said so only after the dance was generated (QA: a studio's character file)."""
    import bpy
    from engine.errors import EngineError
    if not out_blend:
        return
    target = os.path.realpath(out_blend)
    for library in bpy.data.libraries:
        if os.path.realpath(bpy.path.abspath(library.filepath)) == target:
            raise EngineError(f"--out-blend {out_blend} is a library this scene links ('{library.name}'): "
                              "Blender cannot save over it; save the shot elsewhere")


def remove_blender_session_folder() -> None:
    """Blender empties its session's temporary folder (bpy.app.tempdir, /tmp/blender_XXXXXX) at a
    normal exit; os._exit skips that, and each run would leave one behind."""
    bpy = sys.modules.get("bpy")
    if bpy is not None:
        import shutil
        folder = bpy.app.tempdir
        if os.path.basename(os.path.normpath(folder)).startswith("blender_"):
            shutil.rmtree(folder, ignore_errors=True)


def _exit_code(e: SystemExit) -> int:
    return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


if __name__ == "__main__":
    # EVERY way out ends in os._exit: a process that imported both torch and bpy can hang or
    # crash while tearing down (an uncaught exception used to leave it idling forever).
    code = 1
    try:
        code = main()
    except SystemExit as e:   # argparse's --help and usage errors
        code = _exit_code(e)
    except BaseException as e:  # noqa: BLE001 (KeyboardInterrupt included: still exit)
        print(f"error: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        remove_blender_session_folder()
        os._exit(code)
