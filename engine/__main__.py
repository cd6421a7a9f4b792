"""Command line: `python -m engine generate SONG -o OUT.bvh [-o OUT.npz] [-o OUT.mp4] ...`, and the
repository's tools by short name (`python -m engine train ...`, see TOOLS)."""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

from .defaults import (DEFAULT_AUTOGUIDANCE, DEFAULT_FPS, DEFAULT_GUIDANCE, DEFAULT_QUALITY, DEFAULT_STEPS,
                       FLOOR_RADIUS, LATE_GUIDANCE, QUALITIES, SAMPLING_SOLVER, SAMPLING_SOLVERS)
from .errors import EngineError, OneLineParser, ended_by_signal, in_one_line
from .files import written_whole


# Short command -> the module whose main(argv) runs it. They are imported only when asked for:
# the extension ships the runtime without engine/training and engine/evaluation.
TOOLS = {
    "train": "engine.training.train",
    "distill": "engine.training.distill",
    "gpu-session": "engine.training.gpu_session",
    "autoguide": "engine.training.autoguide",
    "probe": "engine.training.probe",
    "data": "engine.training.data.__main__",
    "salsa-check": "engine.training.data.salsa_check",
    "evaluate": "engine.evaluation.evaluate",
    "evaluate-inbetween": "engine.evaluation.evaluate_inbetween",
    "bench": "engine.evaluation.bench",
    "screen": "engine.evaluation.screen",
}

# The command line's own commands (argparse's subcommands), beside the tools above.
OWN_COMMANDS = ("generate", "styles")

OUTPUT_KINDS = {".bvh": "BVH motion", ".npz": "SMPL poses/trans", ".mp4": "preview video with the song"}

DESCRIPTION = """\
Turn a song into an SMPL dance.

  python -m engine generate song.mp3 -o dance.bvh -o dance.npz -o dance.mp4

Outputs are chosen by extension: .bvh (SMPL joint names; --up-axis, --scale), .npz (poses
(T,72) axis-angle, trans (T,3) the pelvis joint's position in metres, Y up, fps, joint_names, style, seed,
beat_times) and .mp4 (a stick figure preview with the song's audio). The same song file, options and --seed give the same dance
(style "any" draws its style from the seed and the file's name: a renamed or converted song may
dance another style; pass --style to fix it).

Constraints (--constraints FILE.npz), at the output --fps, frame 0 = the first danced frame:
  poses (T,72) axis-angle and joint_mask (T,24) bool: joints that must take these rotations;
  trans (T,3) and trans_mask (T,) bool: root positions (metres, Y up) that must be reached;
  pelvis_turns (T,), optional: on a pelvis key, the whole turns about the vertical since the
  pelvis key before, beyond the short way (a keyed spin; positive counter-clockwise from above).
  Keyframes, joint-wise conditioning (e.g. arms only), seed motion (the opening frames fully
  given) and root paths are all just masks; they combine freely and hold exactly.
  --still-before: the dancer stood still before frame 0, in the pose keyed there (a start pose
  the character stands in until the music starts) or the dance's own: it sets off as from standing.
  poses_before (72,) and trans_before (3,), optional: the pose an animation before the dance plays
  on the frame before frame 0, moving into a pose keyed there: the dance goes on out of it at
  the speed the animation arrives with, then into its own (instead of --still-before);
  poses_after and trans_after the same on the frame after the last, moving out of a pose keyed
  there: the dance arrives at it at the speed the animation leaves with.

Tools (in a clone of the repository; the extension ships without them), each with its own --help:
  train, distill, autoguide, probe, data, salsa-check,
  gpu-session (a lent GPU's retraining in one command)  training (engine/training/)
  evaluate, evaluate-inbetween, bench, screen           evaluation (engine/evaluation/)
  e.g. python -m engine distill --teacher weights/dance.safetensors --out runs/student
"""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m engine", description=DESCRIPTION,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    g = sub.add_parser(OWN_COMMANDS[0], help="dance to a song and write BVH / NPZ / MP4",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("song", type=str, help="audio file: wav, mp3, flac, ogg, ... (any length from a fraction of a second)")
    g.add_argument("-o", "--output", action="append", type=str, required=True, metavar="OUT",
                   help="output file; repeat for several (.bvh, .npz, .mp4)")
    g.add_argument("--style", default="any",
                   help="dance style from the weights (list them with: python -m engine styles); default: any, "
                        "a style learned with its music, drawn from the song file and the seed")
    g.add_argument("--seed", type=int, default=0, help="random seed: same seed, same dance (default 0)")
    g.add_argument("--steps", type=int, default=None,
                   help=f"the many-step model's sampling steps: fewer is faster, more is finer (default "
                        f"{DEFAULT_STEPS}; a few-step student samples its own)")
    g.add_argument("--fps", type=float, default=DEFAULT_FPS,
                   help=f"output frame rate, e.g. 24, 25, 30, 60 (default {DEFAULT_FPS:g})")
    g.add_argument("--start", type=float, default=0.0, help="start this many seconds into the song (default 0)")
    g.add_argument("--duration", type=float, default=None, help="seconds of song to dance (default: to the end)")
    g.add_argument("--constraints", type=Path, default=None, help="constraints .npz (see above)")
    g.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                   help=f"classifier-free guidance weight: higher follows the music harder and moves more; "
                        f"capped at {LATE_GUIDANCE:g} in the last sampling steps (default {DEFAULT_GUIDANCE:g})")
    g.add_argument("--autoguidance", type=float, default=DEFAULT_AUTOGUIDANCE,
                   help=f"energy: how far the dance is pushed away from the weights' weaker guide network "
                        f"(autoguidance; 1 = off; default {DEFAULT_AUTOGUIDANCE:g})")
    g.add_argument("--solver", default=SAMPLING_SOLVER, choices=SAMPLING_SOLVERS,
                   help=f"how the many-step model steps from noise to a dance: dpm2m (second order) or ddim "
                        f"(first order, the EDGE paper's); same time either way (default {SAMPLING_SOLVER})")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default auto)")
    g.add_argument("--quality", default=DEFAULT_QUALITY, choices=QUALITIES,
                   help=f"fast: the few-step student distilled from the weights (about 15x faster, less varied); "
                        f"best: the many-step model itself (default {DEFAULT_QUALITY}; the student serves only "
                        f"the default --steps, --guidance and --autoguidance)")
    g.add_argument("--weights", type=Path, default=None, help="weights .safetensors (default: the shipped model)")
    g.add_argument("--up-axis", default="Y", choices=["Y", "Z"], help="BVH up axis (default Y)")
    g.add_argument("--scale", type=float, default=1.0, help="BVH length unit per metre, e.g. 100 for cm (default 1)")
    g.add_argument("--stage-radius", type=float, default=None, metavar="METRES",
                   help="keep the dancer within this many metres of where it starts; 0 = dance in place "
                        f"(default: a {FLOOR_RADIUS:g} m floor, like the training dancers', which the dancer keeps to "
                        "by curving its path)")
    g.add_argument("--still-before", action="store_true",
                   help="the dancer stood still before the dance (in the pose the constraints key on frame 0, "
                        "or the dance's own): set off as from standing, not at full speed")
    g.add_argument("--song-beats", action="store_true",
                   help="with --start or --duration: dance to the whole song's beats, not those of the slice "
                        "alone (the same bars get the same beats wherever you cut in; a slice alone, the "
                        "field's way, can land on the off-beats)")
    g.add_argument("--dance-silence", action="store_true",
                   help="dance through the song's silences too (default: the dancer waits, holding still, "
                        "where the music is silent for a second or more)")
    g.add_argument("--force", action="store_true", help="overwrite existing output files")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser(OWN_COMMANDS[1], help="list the styles the weights know")
    s.add_argument("--weights", type=Path, default=None)
    return p


def _show_note(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one 'note: ...' line on stderr, on its own line even while the progress bar
    is drawn (tqdm.write lifts the bar, prints, and redraws it)."""
    from tqdm import tqdm
    tqdm.write(f"note: {message}", file=sys.stderr)


def generate_command(args) -> int:
    from .music import background
    from .options import check_outputs, check_song_path
    # Everything is checked before any work starts (a mistake costs no generation time).
    check_outputs(args.output, OUTPUT_KINDS, args.force,      # as typed: a trailing slash names a folder
                  inputs={"the song": args.song, "the --constraints file": args.constraints})
    args.output = [Path(out) for out in args.output]
    args.song = check_song_path(args.song)     # given as typed: a web address keeps its '//'
    # The song is analysed in a second process while this one imports torch (engine.music.background).
    music = background.start(args.song, args.start, args.duration, args.song_beats)
    try:
        return _generate(args, music)
    finally:
        if music is not None:
            music.cancel()


def _generate(args, music) -> int:
    from tqdm import tqdm
    from .api import available_styles, generate
    from .body.motion import Constraints
    from .music.audio import audio_seconds
    from .options import check_options
    styles = available_styles(args.weights)      # also checks the weights file
    check_options(style=args.style, styles=styles, steps=args.steps, seed=args.seed, fps=args.fps, start=args.start,
                  duration=args.duration, guidance=args.guidance, autoguidance=args.autoguidance,
                  scale=args.scale, stage_radius=args.stage_radius, sampling_solver=args.solver,
                  song_seconds=audio_seconds(args.song))
    constraints = Constraints.load_npz(args.constraints) if args.constraints else None
    pose_before, pose_after = ((Constraints.load_pose_beside(args.constraints, side) for side in ("before", "after"))
                               if args.constraints else (None, None))
    bar = tqdm(total=100, unit="%", disable=args.quiet, dynamic_ncols=True, leave=False,
               bar_format="{l_bar}{bar}| {elapsed}<{remaining}")

    def progress(fraction: float, message: str):
        bar.n = round(fraction * 100)
        bar.set_description(message)      # redraws with the new count (an update may be skipped)

    try:
        motion = generate(args.song, style=args.style, seed=args.seed, steps=args.steps, fps=args.fps,
                          start=args.start, duration=args.duration, constraints=constraints,
                          guidance=args.guidance, autoguidance=args.autoguidance, device=args.device,
                          weights=args.weights, progress=progress, stage_radius=args.stage_radius,
                          quality=args.quality, analysed_music=music, sampling_solver=args.solver,
                          wait_in_silence=not args.dance_silence, still_before=args.still_before,
                          pose_before=pose_before, pose_after=pose_after, song_beats=args.song_beats)
    finally:
        bar.close()
    # All or nothing: the outputs go to hidden files beside them and take their names together
    # once every one is written (QA: Ctrl-C while the BVH was written left the .npz beside a cut-off
    # .bvh); an interrupted run leaves the folder as it was.
    with written_whole(*args.output) as temps:
        for out, tmp in zip(args.output, temps):
            kind = out.suffix.lower()
            try:
                if kind == ".bvh":
                    from .outputs.bvh import write_bvh
                    write_bvh(motion, tmp, up_axis=args.up_axis, scale=args.scale)
                elif kind == ".npz":
                    motion.save_npz(tmp)
                else:
                    from .outputs.preview import render_preview
                    render_preview(motion, tmp, audio_path=args.song, audio_start=args.start)
            except OSError as e:           # checked up front, but a disk can fill or a folder go
                raise EngineError(f"cannot write {out}: {e.strerror or e}") from None
    for out in args.output:
        print(f"wrote {out}")
    frames = f"{motion.num_frames} frame{'' if motion.num_frames == 1 else 's'}"
    seconds = f"{motion.duration:.1f}" if motion.duration >= 0.1 else f"{motion.duration:.2g}"   # never "0.0 s"
    print(f"{frames} at {motion.fps:g} fps ({seconds} s), style {motion.style}, seed {motion.seed}")
    return 0


def run_tool(name: str, argv: list[str]) -> int:
    """Run a training or evaluation tool: import its module now and hand it the rest of the line."""
    module = TOOLS[name]
    try:
        tool = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
            raise                                        # a missing dependency, not a missing tool
        kind = "a training" if module.startswith("engine.training.") else "an evaluation"
        print(f"error: '{name}' is {kind} tool, not part of this install (use a clone of the repository)",
              file=sys.stderr)
        return 2
    # Every tool's mistakes and Ctrl-C as one line too (QA: tracebacks from salsa-check,
    # autoguide, probe, screen and evaluate-inbetween); the tools that clean up after themselves
    # do so first.
    return in_one_line(lambda: tool.main(argv))


def main(argv=None) -> int:
    return ended_by_signal(lambda: _main(argv))


def _main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
        if argv and argv[0] in TOOLS:
            del sys.argv[1]           # the tool's sys.argv[1:] is its own options (train records them)
    if argv and argv[0] in TOOLS:     # before argparse: the tool parses its own options
        return run_tool(argv[0], list(argv[1:]))
    if argv and not argv[0].startswith("-") and argv[0] not in OWN_COMMANDS:
        # argparse knows only its own commands (QA26: "choose from 'generate', 'styles'").
        print(f"error: no command '{argv[0]}': choose from {', '.join((*OWN_COMMANDS, *TOOLS))} "
              "(see: python -m engine --help)", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    warnings.filterwarnings("ignore", category=UserWarning, module="librosa")
    warnings.showwarning = _show_note
    return in_one_line(lambda: _command(args))


def _command(args) -> int:
    """The command line's own commands: styles, and generate."""
    if args.command == "styles":
        from .api import available_styles, styles_any_draws
        styles = available_styles(args.weights)
        print("\n".join(styles))
        drawn = styles_any_draws(args.weights)
        never = [name for name in styles if name != "any" and name not in drawn]
        if never:    # on stderr: the list on stdout stays one name a line for scripts
            print(f"note: style any draws {', '.join(drawn) or 'none of them'}; {', '.join(never)} "
                  f"{'was' if len(never) == 1 else 'were'} learned without music: ask for "
                  f"{'it' if len(never) == 1 else 'them'} by name", file=sys.stderr)
        return 0
    return generate_command(args)


if __name__ == "__main__":
    sys.exit(main())
