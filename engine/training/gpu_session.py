"""A lent GPU's whole retraining in one command, sized to its time:
`python -m engine gpu-session --data packed/*.npz --out DIR [--minutes 9]`.

A lent GPU gives a session 15 minutes of device time, the machine's start included, at most 10
minutes a command, files back of at most 16 MiB each (8 files), and the machine is bare again
at the next start (weights/TRAINING.md, "The retraining on a GPU"). So one command does it all,
each phase stopped by wall time, and brings back what it has along the way:
1. fine-tune the shipped network under each recipe of RECIPES (concurrently: a 3.3 M parameter
   network leaves the GPU mostly idle, and each run has its own processes preparing batches);
2. each result with the shipped guide network (autoguidance), as a teacher;
3. distil a few-step student of each teacher, carrying on the shipped student (plus the teacher's
   change since: engine.training.distill's --init-student and --init-teacher);
4. into --out, per recipe: the main network (the guide is the shipped one, so the teacher is
   rebuilt at home with `python -m engine autoguide --main RECIPE-main.safetensors --guide
   weights/dance.safetensors --its-guide --out DIR/dance.safetensors`; the whole teacher would
   not fit the 16 MiB), the student, and the runs' logs; and session.json with what ran.
The data are files packed by `python -m engine data` (engine.training.data.packed: small enough
to travel); the machine needs torch, numpy, scipy, safetensors and tqdm, not librosa. The device
tool's run, with the packed files carried (weights/TRAINING.md has the whole procedure):
    python3 -m engine gpu-session --data packed/*.npz --out $OUT --minutes 9
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..errors import EngineError
from ..sampler import checkpoint
from ..sampler.checkpoint import DEFAULT_WEIGHTS
from ..sampler.fewstep import STUDENT_NAME, file_digest
from .data.cache import REPOSITORY

# Fine-tunes of the shipped network. The CPU fine-tune that made its predecessor saw a tenth of
# these windows (weights/TRAINING.md, "Beat phase and key input: the CPU fine-tune"). The moving
# average is train's own (0.999 a step): at 0.9995 a session's 498 steps left 78% of the starting
# weights in it (section "The first GPU session"). A second recipe with
# the turn term (weight 3) ran beside it on the first lent GPU (2026-12-04) and danced barely at
# all (Div_k 2.7, FID_k 137: section "The first GPU session"), so it was dropped.
RECIPES = {
    "phase_keys": ["--beat-phase", "--key-input", "--lr", "3e-4", "--warmup", "200"],
}
# The shipped student's recipe (weights/TRAINING.md, "A loss on the motion band"), at a GPU's batch.
DISTILL = ["--motion-weight", "100", "--lr", "2e-4", "--warmup", "100", "--probe-windows", "16"]
MAX_RECIPES = 2           # per recipe 2 files of about 13.5 MB come back: 4 fit the 64 MiB
UPLOAD_LIMIT_BYTES = 64 * 2**20   # the repository and what it carries, in one upload to a lent GPU
PACKED_DATA_BYTES = 17.4e6        # tang2018 and JustLMD packed by `python -m engine data` (2026-12-04)
SCREEN_PACK_BYTES = 3.4e6         # `python -m engine screen pack`'s default (2026-12-04)
# Each process one CPU thread: two runs' 14 batch-preparing processes and their main processes
# would otherwise each start as many threads as the machine has cores. On the lent H200 (16
# cores, 2026-12-04) two fine-tunes made 2.1 steps a second each; with one thread each, 6.2.
ONE_THREAD_EACH = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
WORKERS_IN_ALL = 14       # processes preparing batches, shared among the fine-tunes: 16 cores less the main processes
GPU_BATCH, GPU_DISTILL_BATCH = 128, 256     # windows per step on a lent GPU
CPU_BATCH, CPU_DISTILL_BATCH = 8, 16        # trying the session out on a CPU
RESERVE_SHARE = 0.1       # of the minutes: what the runs spend outside their own clocks (loading, the last saves)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine gpu-session", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", type=Path, required=True, help="packed files (python -m engine data)")
    p.add_argument("--out", type=Path, required=True, help="folder for what comes back (the device's $OUT)")
    p.add_argument("--work", type=Path, default=None, help="folder for the run folders (default: a temporary one)")
    p.add_argument("--minutes", type=float, default=9.0, help="wall time for the whole session (default 9)")
    p.add_argument("--train-share", type=float, default=0.6, help="share of the minutes for fine-tuning (default 0.6)")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES),
                   help=f"fine-tunes to run side by side (default: all; at most {MAX_RECIPES})")
    p.add_argument("--batch", type=int, default=None,
                   help=f"fine-tuning windows per step (default {GPU_BATCH}; {CPU_BATCH} with --device cpu)")
    p.add_argument("--distill-batch", type=int, default=None,
                   help=f"distillation windows per step (default {GPU_DISTILL_BATCH}; {CPU_DISTILL_BATCH} with "
                        "--device cpu)")
    p.add_argument("--workers", type=int, default=None,
                   help=f"processes preparing batches, per fine-tune (default: {WORKERS_IN_ALL} shared among the "
                        "fine-tunes, for 16 cores; a window with its beat phase takes about 5 ms of a core)")
    p.add_argument("--teacher", type=Path, default=DEFAULT_WEIGHTS, help="the shipped teacher (default: weights/)")
    p.add_argument("--student", type=Path, default=None, help="the shipped student (default: beside the teacher)")
    p.add_argument("--screen", type=Path, default=None,
                   help="a pack from `python -m engine screen pack`: each new teacher and the shipped one are then "
                        "scored by their finished dances while the students distil (OUT/screen.json)")
    p.add_argument("--screen-seeds", type=int, nargs="+", default=[0], help="seeds of the screen (default 0)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cuda (default); cpu only to try the session out")
    args = p.parse_args(argv)
    # Tried out on a CPU, the session is sized to it (QA: the GPU's batches of 128 and 256 and 14
    # workers ran on a 2-core machine).
    on_gpu = args.device == "cuda"
    args.batch = args.batch or (GPU_BATCH if on_gpu else CPU_BATCH)
    args.distill_batch = args.distill_batch or (GPU_DISTILL_BATCH if on_gpu else CPU_DISTILL_BATCH)
    # The children run from the repository's root: a path relative to where the session was
    # started would name another file there (QA: a relative --student failed after the fine-tune).
    for name in ("data", "out", "work", "teacher", "student", "screen"):
        value = getattr(args, name)
        if value is not None:
            setattr(args, name, [v.resolve() for v in value] if isinstance(value, list) else value.resolve())
    return args


def check_session(args) -> Path:
    """One clear line (EngineError) for what would fail later; returns the shipped student's path."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise EngineError("no CUDA GPU here: a GPU session needs one (--device cpu only to try it out)")
    if len(args.recipes) > MAX_RECIPES:
        raise EngineError(f"at most {MAX_RECIPES} recipes: what comes back from a lent GPU is limited to 64 MiB")
    if not args.minutes > 0:
        raise EngineError(f"--minutes must be a positive number, got {args.minutes}")
    if not 0 < args.train_share < 1:
        raise EngineError(f"--train-share must be between 0 and 1, got {args.train_share}")
    if args.screen is not None and not args.screen.is_file():
        raise EngineError(f"--screen {args.screen}: no such pack (make it with: python -m engine screen pack --out ...)")
    for path in args.data:
        if not (path.is_file() and path.suffix == ".npz"):
            raise EngineError(f"--data {path}: not a packed file (make them with: python -m engine data --out packed)")
    if len(set(args.recipes)) != len(args.recipes):
        raise EngineError(f"--recipes names one twice ({' '.join(args.recipes)}): each runs in its own folder")
    if any(seed < 0 for seed in args.screen_seeds):
        raise EngineError(f"--screen-seeds must be 0 or more, got {' '.join(map(str, args.screen_seeds))}")
    if args.out.exists() and not args.out.is_dir():
        raise EngineError(f"--out {args.out} is a file: give a folder")
    if (args.out / "session.json").exists():
        raise EngineError(f"--out {args.out} holds an earlier session (session.json): give another folder")
    if args.work is not None:
        taken = [name for name in args.recipes if (args.work / name).exists()]
        if taken:
            raise EngineError(f"--work {args.work} already holds the run folder {taken[0]!r} of an earlier session, "
                              "which the fine-tune would take up again: give an empty --work")
    student = args.student or Path(args.teacher).parent / STUDENT_NAME
    for path in (args.teacher, student):
        if not Path(path).is_file():
            raise EngineError(f"no weights file at {path}")
    if "student" in checkpoint.read_metadata(args.teacher):
        raise EngineError(f"--teacher {args.teacher} is a few-step student: give the many-step weights")
    if "student" not in checkpoint.read_metadata(student):
        raise EngineError(f"--student {student} is no few-step student (distil one with python -m engine distill)")
    return Path(student)


def _engine(command: str, options: list, log: Path) -> subprocess.Popen:
    """`python -m engine COMMAND OPTIONS` in its own process, its output to `log`."""
    with open(log, "w") as output:          # the process keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "engine", command, *map(str, options)],
                                cwd=REPOSITORY, env={**os.environ, **ONE_THREAD_EACH},
                                stdout=output, stderr=subprocess.STDOUT)


def _wait(runs: dict[str, subprocess.Popen], work: Path, part: str, meanwhile=None) -> dict[str, int]:
    """Each run's exit code; a failed one says why (its error line, else its last printed line).
    `meanwhile()` runs every few seconds until they end. Stopped (Ctrl-C, SIGTERM), the session
    stops its runs too: they went on as orphans (QA)."""
    try:
        while any(run.poll() is None for run in runs.values()):
            time.sleep(5)
            if meanwhile is not None:
                meanwhile()
    except BaseException:
        for run in runs.values():
            run.terminate()
        for run in runs.values():
            try:
                run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                run.kill()
        raise
    codes = {name: run.wait() for name, run in runs.items()}
    for name, code in codes.items():
        if code != 0:
            # tqdm rewrites its bar with carriage returns: the bar's last state is no reason.
            text = (work / f"{name}-{part}.txt").read_text().replace("\r", "\n")
            lines = [line for line in text.splitlines() if line.strip() and not line.startswith(part)]
            errors = [line for line in lines if line.startswith("error:") or "Error" in line]
            print(f"gpu-session: the {part} of {name} failed (exit {code}): {(errors or lines or ['(no output)'])[-1]}",
                  flush=True)
    return codes


def _bring_back(out: Path, work: Path, summary: dict, started: float) -> None:
    """Put what the session has so far into `out`: each recipe's latest student, its log and
    session.json. Done along the way, so a command cut short (a machine that took long to start
    leaves it less than its time) still returns what was done."""
    for name in summary["recipes"]:
        student_file, target = work / f"{name}-student" / "student.safetensors", out / f"{name}-student.safetensors"
        if student_file.is_file() and (not target.exists() or student_file.stat().st_mtime > target.stat().st_mtime):
            # Copied beside its name, then renamed: never half a file under the name that comes
            # back (the work folder may be on another file system, where a rename cannot reach).
            partial = out / f".{target.name}.partial"
            shutil.copyfile(student_file, partial)
            os.replace(partial, target)
        with open(out / f"{name}-log.txt", "w") as log:
            for part in ("train", "distill"):
                text = work / f"{name}-{part}.txt"
                if text.is_file():     # tqdm's bar rewrites its line: keep the printed lines, not the bar
                    lines = text.read_text().replace("\r", "\n").splitlines()
                    log.write("".join(f"{l}\n" for l in lines if l.strip() and not l.startswith(part)))
    summary["seconds"] = round(time.time() - started, 1)
    (out / "session.json").write_text(json.dumps(summary, indent=2))


def _start_screen(args, out: Path, work: Path, teachers: list, summary: dict) -> subprocess.Popen:
    """Score the shipped teacher and each new one by their finished dances (engine.evaluation.screen),
    beside the distillations: the choice among the recipes, which their losses do not settle."""
    options = ["score", "--pack", args.screen.resolve(), "--weights", args.teacher, *teachers,
               "--seeds", *args.screen_seeds, "--device", args.device, "--out", out / "screen.json"]
    summary["screen"] = "python -m engine screen " + " ".join(map(str, options))
    return _engine("screen", options, work / "screen-scores.txt")


def _last_record(log: Path) -> dict:
    lines = [line for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def run(args) -> dict:
    student = check_session(args)
    started = time.time()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = (args.work or Path(tempfile.mkdtemp(prefix="gpu_session_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    reserve = RESERVE_SHARE * args.minutes
    train_minutes = (args.minutes - reserve) * args.train_share
    summary = {"device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
               "torch": torch.__version__, "minutes": args.minutes, "train_minutes": round(train_minutes, 2),
               "teacher": str(args.teacher), "teacher_sha256": file_digest(args.teacher),
               "student": str(student), "recipes": {}}
    print(f"gpu-session: {', '.join(args.recipes)} on {summary['device']}; fine-tune {train_minutes:.1f} min, "
          f"then distillation", flush=True)

    try:
        _session(args, student, started, out, work, summary, train_minutes)
    finally:       # stopped part-way (Ctrl-C, SIGTERM) too: what was done, and session.json
        _bring_back(out, work, summary, started)
    if args.work is None:      # its own temporary folder: all that is kept is in `out` now (kept if stopped)
        shutil.rmtree(work, ignore_errors=True)
    print(f"gpu-session: done in {summary['seconds'] / 60:.1f} min of the {args.minutes:g} asked for; results in "
          f"{out}", flush=True)
    return summary


def _session(args, student: Path, started: float, out: Path, work: Path, summary: dict, train_minutes: float) -> None:
    """The fine-tunes, then the distillations (and the screen beside them), recorded in `summary`."""
    from .autoguide import attach_guide
    data = [str(p) for p in args.data]
    shape = checkpoint.load(args.teacher).model.cfg          # a fine-tune keeps the network's shape
    cores = WORKERS_IN_ALL if args.device == "cuda" else max(1, (os.cpu_count() or 2) - len(args.recipes))
    workers = args.workers if args.workers is not None else max(1, cores // len(args.recipes))
    runs = {}
    for name in args.recipes:
        # The learning rate decays over the time, whatever speed the machine makes.
        options = ["--data", *data, "--out", work / name, "--init", args.teacher, "--batch", args.batch,
                   "--steps", 10**7, "--schedule-minutes", round(train_minutes, 3), "--val-every", 1000,
                   "--width", shape.width, "--layers", shape.layers, "--heads", shape.heads,
                   "--workers", workers, "--device", args.device, *RECIPES[name]]
        summary["recipes"][name] = {"train": "python -m engine train " + " ".join(map(str, options))}
        runs[name] = _engine("train", options, work / f"{name}-train.txt")
    finished = _wait(runs, work, "train")

    # What a run spends outside its own clock (starting, loading, the last save), measured on the
    # fine-tunes, is taken off the distillation's time so the session ends on time.
    overhead = max(0.1, (time.time() - started) / 60 - train_minutes)
    distill_minutes = max(0.05, args.minutes - (time.time() - started) / 60 - overhead)
    runs, teachers = {}, []
    for name, code in finished.items():
        record = summary["recipes"][name]
        record.update(train_exit=code, train_log=_last_record(work / name / "log.jsonl"))
        if code != 0 or not (work / name / "model.safetensors").is_file():
            continue
        shutil.copyfile(work / name / "model.safetensors", out / f"{name}-main.safetensors")
        teacher_dir = work / f"{name}-teacher"
        teacher_dir.mkdir(exist_ok=True)
        teacher = teacher_dir / Path(args.teacher).name      # the shipped name: the student records it
        attach_guide(work / name / "model.safetensors", args.teacher, teacher, its_guide=True)
        record["teacher_sha256"] = file_digest(teacher)
        teachers.append(teacher)
        options = ["--teacher", teacher, "--out", work / f"{name}-student", "--data", *data,
                   "--init-student", student, "--init-teacher", args.teacher, "--batch", args.distill_batch,
                   "--max-minutes", round(distill_minutes, 3), "--save-minutes", 1,
                   "--workers", max(1, workers // 2), "--device", args.device, *DISTILL]
        record["distill"] = "python -m engine distill " + " ".join(map(str, options))
        runs[name] = _engine("distill", options, work / f"{name}-distill.txt")
    screening = _start_screen(args, out, work, teachers, summary) if args.screen is not None else None
    _bring_back(out, work, summary, started)
    try:
        codes = _wait(runs, work, "distill", lambda: _bring_back(out, work, summary, started))
    except BaseException:
        if screening is not None:
            screening.terminate()
        raise
    for name, code in codes.items():
        summary["recipes"][name].update(distill_exit=code,
                                        distill_log=_last_record(work / f"{name}-student" / "log.jsonl"))
    if screening is not None:
        summary["screen_exit"] = _wait({"screen": screening}, work, "scores")["screen"]
        shutil.copyfile(work / "screen-scores.txt", out / "screen-log.txt")


def main(argv=None) -> int:
    try:
        summary = run(parse_args(argv))
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = [name for name, r in summary["recipes"].items() if r.get("train_exit") != 0 or r.get("distill_exit") != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
