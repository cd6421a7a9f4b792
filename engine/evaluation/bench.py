"""Speed benchmark: `python -m engine bench [--device auto|cpu|cuda|all] [--teacher W] [--student W]`.

Prints, per device, the many-step teacher and its few-step student (engine.training.distill) side by
side: the whole command (a fresh `python -m engine generate` process: 30 s song to .npz,
imports and first-call costs included), then warm generation in one process (as inside
Blender) of 30 s and 180 s of dance, with the real-time factor, peak memory, and the time of
each part: the music analysis, the network's draw and the finishing. Optionally a
long song (--long-minutes 10) and an EDGE-sized configuration of this engine (width 512,
8 layers, 50 steps, guidance with 2 passes; random weights: speed does not depend on training).
A benchmark, not a test: it prints figures.
"""
from __future__ import annotations

import argparse
import gc
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..api import load_weights, resolve_device
from ..example import make_click_track
from ..sampler import checkpoint
from ..sampler.fewstep import distilled_from_this, student_beside, teacher_beside
from ..sampler.model import Denoiser, ModelConfig

SR = 22050


def _params(ckpt: checkpoint.Checkpoint) -> str:
    """"3.3M", or "3.3M+3.3M" when the weights carry an autoguidance guide (it runs every step too)."""
    text = f"{ckpt.model.num_parameters() / 1e6:.1f}M"
    return text + (f"+{ckpt.guide.num_parameters() / 1e6:.1f}M" if ckpt.guide is not None else "")


def _passes(ckpt: checkpoint.Checkpoint, steps: int) -> int:
    """Network passes per window: a student's steps, or steps x guidance (2) x autoguidance (2)."""
    if ckpt.student is not None:
        return len(ckpt.student["timesteps"])
    return steps * 2 * (2 if ckpt.guide is not None else 1)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _edge_sized_weights(folder: Path, shipped: checkpoint.Checkpoint) -> Path:
    cfg = ModelConfig.edge_sized(num_styles=shipped.model.cfg.num_styles)
    path = folder / "edge_sized.safetensors"
    checkpoint.save(path, Denoiser(cfg), shipped.normalizer, shipped.music_normalizer, shipped.styles, {"note": "benchmark only"})
    return path


def _time(seconds: float, weights, steps: int | None, device: str, quality: str, folder: Path) -> tuple[dict, float]:
    """Seconds of engine.api.generate's three parts for a song this long (a file, as a user gives
    it): the music analysis (CPU), the network's draw and the finishing (CPU); and the peak GPU MB."""
    import soundfile as sf
    from ..api import draw, finish_draw
    from ..music.audio import music_for_dance
    song = folder / f"song_{seconds:g}.wav"
    if not song.exists():
        sf.write(song, make_click_track(seconds, 120.0, SR), SR)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    music = music_for_dance(song)
    t1 = time.perf_counter()
    d = draw(song, weights=weights, device=device, quality=quality, analysed_music=music,
             **({"steps": steps} if steps else {}))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    finish_draw(d)
    t3 = time.perf_counter()
    parts = {"total": t3 - t0, "music": t1 - t0, "network": t2 - t1, "finishing": t3 - t2}
    return parts, torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0


def _whole_command(song: Path, weights: Path, steps: int | None, device: str, folder: Path, quality: str) -> float:
    """Seconds for a fresh process to turn `song` into an .npz (what a user waits for in a shell)."""
    out = folder / "dance.npz"
    cmd = [sys.executable, "-m", "engine", "generate", str(song), "-o", str(out), "--force", "--quiet",
           "--weights", str(weights), "--device", device, "--quality", quality] + (["--steps", str(steps)] if steps else [])
    from ..training.data.cache import REPOSITORY
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPOSITORY, check=True, capture_output=True)
    return time.perf_counter() - t0


def _pick(args) -> tuple[Path, Path | None]:
    """(teacher, student) weights: as given, else from the shipped file (a teacher with its student
    beside it, or a student with its teacher beside it)."""
    shipped = args.weights or checkpoint.DEFAULT_WEIGHTS
    record = checkpoint.load(shipped).student
    if record is not None:                       # a student given: its teacher beside it
        teacher, student = teacher_beside(shipped, record), shipped
    else:                                        # a teacher given: its student beside it, if any
        teacher, student = shipped, (student_beside(shipped) or (None,))[0]
    if args.teacher is not None and args.student is None:     # its own student, not the shipped one's
        student = (student_beside(args.teacher) or (None,))[0]
    teacher, student = args.teacher or teacher, args.student or student
    if teacher is None:
        raise SystemExit(f"error: {shipped} is a student and its teacher is not beside it: pass --teacher")
    return Path(teacher), (Path(student) if student else None)


def main(argv=None) -> int:
    from ..errors import OneLineParser
    p = OneLineParser(prog="python -m engine bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="all", choices=["all", "auto", "cpu", "cuda"],
                   help="all: the CPU, and the GPU when there is one (default)")
    p.add_argument("--steps", type=int, default=20, help="sampling steps of the teacher")
    p.add_argument("--weights", type=Path, default=None, help="the shipped weights (teacher or student)")
    p.add_argument("--teacher", type=Path, default=None, help="teacher weights (default: from --weights)")
    p.add_argument("--student", type=Path, default=None, help="few-step student weights (default: from --weights)")
    p.add_argument("--lengths", type=float, nargs="+", default=[30.0, 180.0], help="song lengths in seconds")
    p.add_argument("--long-minutes", type=float, default=0.0, help="also time a song this many minutes long")
    p.add_argument("--skip-command", action="store_true", help="skip the whole-command (fresh process) timing")
    p.add_argument("--edge", action="store_true", help="also time the EDGE-sized configuration (slow on a CPU)")
    p.add_argument("--edge-lengths", type=float, nargs="+", default=[10.0], help="song lengths for --edge")
    args = p.parse_args(argv)
    # Checked first (review: --lengths 0 was a traceback, --steps 0 timed 20 steps as "0 passes",
    # --device cuda without a GPU timed the CPU under the GPU's name).
    if not 1 <= args.steps <= 1000:
        p.error(f"--steps must be a whole number from 1 to 1000, got {args.steps}")
    if any(not 0.5 <= x <= 3600 for x in [*args.lengths, *args.edge_lengths]) or not 0 <= args.long_minutes <= 60:
        p.error("song lengths must be from 0.5 to 3600 seconds (--long-minutes from 0 to 60)")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda was asked for but no CUDA GPU is available")
    teacher, student = _pick(args)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.device == "all" \
        else [str(resolve_device(args.device))]
    lineage = ""
    if student is not None:
        record = checkpoint.load(student).student or {}
        lineage = "" if distilled_from_this(record, teacher) else " (distilled from another version of the teacher)"
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"teacher {teacher.name}, student {student.name + lineage if student else '(none: pass --student)'}")
    lengths = list(args.lengths) + ([args.long_minutes * 60] if args.long_minutes else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        song = tmp / "song30.wav"
        import soundfile as sf
        sf.write(song, make_click_track(30.0, 120.0, SR), SR)
        for device in devices:
            dev = resolve_device(device)
            name = str(dev) + (f" ({torch.cuda.get_device_name()})" if dev.type == "cuda" else "")
            rows = [("teacher", teacher, args.steps, lengths)] + ([("student", student, None, lengths)] if student else [])
            if args.edge:
                rows.append(("EDGE-sized", _edge_sized_weights(tmp, load_weights(teacher, dev)), 50, args.edge_lengths))
            print(f"\ndevice: {name}")
            print(f"{'config':<11} {'params':>11} {'passes':>6} {'what':<16} {'seconds':>8} {'x real time':>11} "
                  f"{'music':>6} {'network':>7} {'finish':>6} {'peak RSS':>9} {'peak GPU':>9}")
            for label, weights, steps, row_lengths in rows:
                quality = "fast" if label == "student" else "best"
                ckpt = load_weights(weights, dev)
                head = f"{label:<11} {_params(ckpt):>11} {_passes(ckpt, steps or 0):>6}"
                if not args.skip_command and label != "EDGE-sized":
                    took = _whole_command(song, weights, steps, device, tmp, quality)
                    print(f"{head} {'command, 30 s':<16} {took:>8.2f} {30.0 / took:>11.1f}", flush=True)
                _time(2.0, weights, steps, device, quality, tmp)   # warm-up: first-call overheads are not the model's
                for seconds in row_lengths:
                    parts, gpu_mb = _time(seconds, weights, steps, device, quality, tmp)
                    print(f"{head} {f'warm, {seconds:.0f} s':<16} {parts['total']:>8.2f} {seconds / parts['total']:>11.1f} "
                          f"{parts['music']:>6.2f} {parts['network']:>7.2f} {parts['finishing']:>6.2f} "
                          f"{_peak_rss_mb():>7.0f}MB {gpu_mb:>7.0f}MB", flush=True)
    print("(warm rows: a song file to a dance, in three parts: the music analysis and the finishing run on the CPU, "
          "the network on the device; peak RSS is the whole process's maximum so far, so later rows include earlier "
          "ones)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
