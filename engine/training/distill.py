"""Distil the guided many-step teacher into a few-step student:
`python -m engine distill --teacher W --out DIR [--data FILES] [--max-minutes M]`.

One student network (the teacher's architecture, initialised from its main network) learns both
at once:
- guidance distillation (Meng et al., CVPR 2023): ONE pass of the student stands for the
  teacher's full guided denoiser, i.e. engine.api.denoiser(ckpt, style, guidance, autoguidance):
  classifier-free guidance with its late-guidance switch, and autoguidance from the guide
  network. The guidance weights are fixed at the recipe's values (default: the engine's
  defaults) and recorded in the file; the style stays an input.
- step distillation (progressive distillation, Salimans & Ho, ICLR 2022, with a factor of
  --substeps in one round): the teacher samples with the engine's schedule of segments *
  substeps steps (4 x 5 = the default 20) and its solver (--teacher-solver: DPM-Solver++(2M),
  as users get it); the student jumps from the start of one segment to the next in ONE DDIM
  step. At (x_tk, t_k) it is trained to predict the x0 with which one DDIM step lands exactly
  where the guided teacher's `substeps` steps land (the last segment: the teacher's final clean
  motion). So a window costs `segments` passes in all
  (default 4), against segments * substeps * 2 (guidance) * 2 (autoguidance) for the teacher.

The student's inputs x_tk come half from training windows noised to t_k (q_sample), half from
the student's own few-step trajectory from pure noise (the states it meets when sampling).
The loss is the MSE to that x0, plus, with --motion-weight, a term on the error's 1-4 Hz band
(motion_band_error): the plain MSE is mostly the pose's slow part, and a student trained on it
alone came out calmer than its teacher. --energy-weight adds a term on how much each window moves
in that band, whatever the moves' timing (motion_energy_error; tried, not in the shipped student's
recipe: weights/TRAINING.md).

Resumable: rerun the same command and it continues from DIR/state.safetensors. DIR/student.safetensors
(the EMA student, the engine's weights format) is rewritten at every checkpoint, every
--save-minutes and at the --max-minutes limit; its metadata says it is a few-step student (its
timesteps, baked guidance, teacher), so engine.api samples it with its own schedule.
DIR/log.jsonl records, at each checkpoint, how far the student's few-step samples are from the
teacher's many-step ones on fixed validation windows (RMS in normalised channels).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..body import layout as L
from ..defaults import DEFAULT_AUTOGUIDANCE, DEFAULT_GUIDANCE, GUIDANCE_LOWPASS_FRAMES, SAMPLING_SOLVER, SAMPLING_SOLVERS
from ..errors import EngineError
from ..sampler import checkpoint
from ..sampler.diffusion import (cosine_alpha_bar, ddim_step, ddim_timesteps, guided, lowpass_in_time, q_sample,
                                solver_step)
from ..sampler.fewstep import file_digest
from ..sampler.model import Denoiser, ModelConfig, music_input, with_keys
from .random_keys import with_random_keys


# ------------------------------------------------------------------ schedules

def teacher_timesteps(segments: int, substeps: int) -> list[int]:
    """The teacher's schedule: the engine's own for segments * substeps steps."""
    return ddim_timesteps(segments * substeps)


def student_timesteps(segments: int, substeps: int) -> list[int]:
    """Every `substeps`-th teacher time: where the student's few steps start."""
    return teacher_timesteps(segments, substeps)[::substeps]


def x0_landing_at(x: torch.Tensor, x_next: torch.Tensor, a_t: torch.Tensor, a_next: torch.Tensor) -> torch.Tensor:
    """The x0 with which ddim_step(x, x0, a_t, a_next) == x_next (inverse of ddim_step in x0)."""
    c = ((1 - a_next) / (1 - a_t)).sqrt()
    return (x_next - c * x) / (a_next.sqrt() - c * a_t.sqrt())


def plain_denoiser(model, style: torch.Tensor):
    """The student as the sampler's denoiser: one conditioned pass (guidance weight 1), as engine.api uses it."""
    return guided(model, style, 1.0)


@torch.no_grad()
def teacher_segment_target(teacher, x: torch.Tensor, music: torch.Tensor, times: list[int], k: int,
                           substeps: int, alpha_bar: torch.Tensor, solver: str = "ddim") -> torch.Tensor:
    """The x0 the student must predict at (x, times[k*substeps]): the teacher runs `substeps`
    steps of its schedule `times` with `solver` (the sampler's own; a second-order solver
    starts its history afresh in each segment, since the student's state at a segment's start
    has none); the last segment ends with its clean prediction."""
    first = k * substeps
    last = (k + 1) * substeps >= len(times)
    n = x.shape[0]
    y, previous = x, None
    for g in range(first, min(first + substeps, len(times))):
        x0 = teacher(y, torch.full((n,), times[g], device=x.device), music)
        if g + 1 < len(times):
            y, previous = solver_step(y, x0, previous, times, g, solver, alpha_bar)
    if last:
        return x0                                       # the teacher's final clean motion
    return x0_landing_at(x, y, alpha_bar[times[first]], alpha_bar[times[first + substeps]])


# The motion-band term's Gaussian (seconds): a little lighter than the finishing's smoothing, so
# that the band it weighs reaches 4 Hz. The shipped student was distilled with it.
MOTION_BAND_SIGMA_SECONDS = 0.075


def motion_band_error(pred: torch.Tensor, target: torch.Tensor,
                      sigma_frames: float = MOTION_BAND_SIGMA_SECONDS * L.MODEL_FPS) -> torch.Tensor:
    """Mean squared frame-to-frame change of the error (N, W, C) once Gaussian-smoothed: the
    error in the motion that survives the finishing, weighted towards 1-4 Hz. The plain MSE is
    two-thirds the pose's slowest part (below 0.5 Hz), where the student is right, while its
    1-3 Hz moves carried 0.8x its teacher's power (weights/TRAINING.md)."""
    return _band_change(pred - target, sigma_frames).pow(2).mean()


def _band_change(x: torch.Tensor, sigma_frames: float) -> torch.Tensor:
    """(N, W-1, C) frame-to-frame change of x (N, W, C) once Gaussian-smoothed: its 1-4 Hz band."""
    smooth = lowpass_in_time(x, sigma_frames)
    return smooth[:, 1:] - smooth[:, :-1]


def _motion_band_rms(x: torch.Tensor, sigma_frames: float) -> torch.Tensor:
    """(N, C) how much each window's channels move in the band motion_band_error weighs (RMS)."""
    return _band_change(x, sigma_frames).pow(2).mean(1).add(1e-10).sqrt()


def motion_energy_error(pred: torch.Tensor, target: torch.Tensor,
                        sigma_frames: float = MOTION_BAND_SIGMA_SECONDS * L.MODEL_FPS) -> torch.Tensor:
    """Mean squared difference, per window and channel, between how much the student's motion and
    its teacher's move in the 1-4 Hz band, whatever the moves' timing. An error in a move's timing
    costs nothing here, so a student unsure of the timing is not pulled towards moving less; the
    MSE terms pull it there, which is how a student ends calm in lively windows and its dances
    alike (Div_k under its teacher's; weights/TRAINING.md)."""
    return (_motion_band_rms(pred, sigma_frames) - _motion_band_rms(target, sigma_frames)).pow(2).mean()


@torch.no_grad()
def student_rollout(student, x: torch.Tensor, music: torch.Tensor, style: torch.Tensor, times: list[int], k: int,
                    alpha_bar: torch.Tensor) -> torch.Tensor:
    """The student's own state at its k-th time, from pure noise x at its first."""
    denoise = plain_denoiser(student, style)
    for j in range(k):
        x0 = denoise(x, torch.full((x.shape[0],), times[j], device=x.device), music)
        x = ddim_step(x, x0, alpha_bar[times[j]], alpha_bar[times[j + 1]])
    return x


@torch.no_grad()
def sample_windows(denoise, x_T: torch.Tensor, music: torch.Tensor, times: list[int],
                   alpha_bar: torch.Tensor, solver: str = "ddim") -> torch.Tensor:
    """A batch of single windows sampled from x_T with `solver` (engine.sampler.diffusion.sample
    without the window blend)."""
    x, previous = x_T, None
    for k, t in enumerate(times):
        x0 = denoise(x, torch.full((x.shape[0],), t, device=x.device), music)
        if k + 1 == len(times):
            return x0
        x, previous = solver_step(x, x0, previous, times, k, solver, alpha_bar)


def closeness(student, probe: dict, teacher_result: torch.Tensor, times_s: list[int],
              alpha_bar: torch.Tensor) -> float:
    """RMS difference (normalised channels) between the student's few-step samples and the
    teacher's many-step ones from the same noise, music and style."""
    was_training = student.training
    student.eval()
    out = sample_windows(plain_denoiser(student, probe["style"]), probe["noise"], probe["music"], times_s, alpha_bar)
    student.train(was_training)
    return float((out - teacher_result).pow(2).mean().sqrt())


# ------------------------------------------------------------------ the run

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", type=Path, required=True, help="the teacher's weights (with its guide network)")
    p.add_argument("--out", type=Path, required=True, help="run folder: student.safetensors, state, log")
    p.add_argument("--data", nargs="+", type=Path, default=None,
                   help="training data as for 'python -m engine train': folders or files packed by "
                        "'python -m engine data' "
                        "(default: ../shared/data/tang2018); only windows with music are used")
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder (default: OUT/../.cache)")
    p.add_argument("--segments", type=int, default=4, help="the student's steps (network passes per window)")
    p.add_argument("--substeps", type=int, default=5, help="teacher steps per student step")
    p.add_argument("--teacher-solver", choices=SAMPLING_SOLVERS, default=SAMPLING_SOLVER,
                   help=f"how the teacher steps (default {SAMPLING_SOLVER!r}, the engine's own: the student learns the "
                        "dances users get from the teacher); the student always takes DDIM steps")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help="the teacher's guidance, baked in")
    p.add_argument("--autoguidance", type=float, default=DEFAULT_AUTOGUIDANCE, help="the teacher's autoguidance, baked in")
    p.add_argument("--guidance-lowpass", type=float, default=GUIDANCE_LOWPASS_FRAMES,
                   help="the teacher's guidance band (sigma in frames; 0 = plain guidance), baked in")
    p.add_argument("--motion-weight", type=float, default=0.0,
                   help=f"weight of a second loss term on the motion a user keeps: the frame-to-frame change of the "
                        f"student's error after a {MOTION_BAND_SIGMA_SECONDS:g} s Gaussian (a 1-4 Hz band). The plain "
                        f"MSE is mostly the pose's slow part, and a student trained on it alone is calmer than its "
                        f"teacher (default 0: plain MSE)")
    p.add_argument("--energy-weight", type=float, default=0.0,
                   help="weight of a third loss term: how much each window's channels move in that band, student "
                        "against teacher, whatever the moves' timing (motion_energy_error; default 0: none)")
    p.add_argument("--train-segments", type=int, nargs="+", default=None, metavar="K",
                   help="train only these student steps, 0 = the noisiest (default: all, in turn)")
    p.add_argument("--iterations", type=int, default=20000, help="total optimisation steps")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this much wall time")
    p.add_argument("--save-minutes", type=float, default=2.0, help="wall time between checkpoints")
    p.add_argument("--batch", type=int, default=64, help="windows per step")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.998, help="decay of the weights' moving average that is saved (0: none)")
    p.add_argument("--rollout-share", type=float, default=0.5,
                   help="share of each batch whose input comes from the student's own trajectory")
    p.add_argument("--any-share", type=float, default=0.5,
                   help="share of windows conditioned on style 'any' (the rest: a random style)")
    p.add_argument("--probe-windows", type=int, default=16, help="validation windows for the closeness figure")
    p.add_argument("--init-student", type=Path, default=None,
                   help="start from an earlier student (of an earlier version of the teacher) instead of the teacher's "
                        "own network: distillation then carries on rather than starting over")
    p.add_argument("--init-teacher", type=Path, default=None,
                   help="with --init-student: the teacher that student was distilled from; the change from it to "
                        "--teacher (a fine-tune) is added to the student's weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--workers", type=int, default=0, help="processes preparing windows (raise on a fast GPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    return p.parse_args(argv)


def _load_windows(args, ckpt: checkpoint.Checkpoint, out: Path):
    """Training and probe windows (normalised with the TEACHER's statistics), music only."""
    from .data import DEFAULT_SOURCES, WindowDataset, cache_beside, default_validation_names, load_corpus
    sources = [Path(s).resolve() for s in (args.data or DEFAULT_SOURCES[:1])]
    for s in sources:
        if not s.exists():
            raise EngineError(f"data not found: {s}")
    corpus = load_corpus(sources, (args.cache or cache_beside(out)).resolve())
    items = [it for it in corpus.items if it.music is not None]
    if not items:
        raise EngineError("no training sequence has music: distillation needs windows with their music")
    unknown = sorted({it.style for it in items} - set(ckpt.styles))
    if unknown:
        raise EngineError(f"the data has styles {unknown} that the teacher does not know ({ckpt.styles})")
    train_items, val_items = corpus.split(default_validation_names())
    train_items = [it for it in train_items if it.music is not None] or items
    val_items = [it for it in val_items if it.music is not None] or items[:1]
    train = WindowDataset(train_items, ckpt.normalizer, styles=ckpt.styles, augment=True,
                          music_drop_styles=(), seed=args.seed)
    val = WindowDataset(val_items, ckpt.normalizer, styles=ckpt.styles, augment=False, music_drop_styles=(), seed=4321)
    return train, val, sum(it.num_frames for it in train_items) / L.MODEL_FPS / 60


def _probe(val, n: int, ckpt: checkpoint.Checkpoint, device, seed: int = 7) -> dict:
    """Fixed validation windows, noise and styles ('any' first, then every style in turn)."""
    items = [val[i % len(val)] for i in range(n)]
    g = torch.Generator().manual_seed(seed)
    music = music_input(ckpt.model.cfg, ckpt.music_normalizer, torch.stack([it["music"] for it in items]))
    if ckpt.model.cfg.key_input:         # the probe dances without keys
        music = with_keys(music)
    noise = torch.randn(n, L.WINDOW_FRAMES, L.NUM_CHANNELS, generator=g)
    style = torch.tensor([0 if i % 2 == 0 else 1 + (i // 2) % (len(ckpt.styles) - 1) for i in range(n)])
    return {"music": music.to(device), "noise": noise.to(device), "style": style.to(device)}


def initial_student(ckpt: checkpoint.Checkpoint, student_path: Path, old_teacher_path: Path | None) -> dict:
    """The weights a distillation starts from when it carries on an earlier student.

    The earlier student may lack inputs the teacher has since gained (beat phase, keys, styles
    of new data): those parameters are the teacher's. With its old teacher given, the teacher's change since then
    (new minus old weights, a fine-tune) is added to the student's: on the shipped pair this
    starts the student 31% closer to the new teacher's samples than the teacher's own network.
    """
    old = checkpoint.load(student_path)
    if old.student is None:
        raise EngineError(f"--init-student: {student_path} is not a few-step student")
    base, new_cfg = old.model.cfg.to_dict(), ckpt.model.cfg.to_dict()
    # inputs and styles it may lack; dropout is off
    ignored = {"music_channels": 0, "key_input": False, "dropout": 0.0, "num_styles": 0}
    if {**base, **ignored} != {**new_cfg, **ignored} or base["num_styles"] > new_cfg["num_styles"]:
        raise EngineError(f"--init-student: {student_path} has another architecture ({base}) than the teacher ({new_cfg})")
    # On the CPU, where the earlier files load: the teacher may already sit on the GPU (the
    # student's load_state_dict copies the result to its own device).
    teacher = {name: value.detach().cpu() for name, value in ckpt.model.state_dict().items()}
    earlier = old.model.state_dict()
    delta = None
    if old_teacher_path is not None:
        recorded = old.student.get("teacher_sha256")
        if recorded and file_digest(old_teacher_path) != recorded:
            raise EngineError(f"--init-teacher: {old_teacher_path} is not the teacher {student_path} was distilled from")
        delta = checkpoint.load(old_teacher_path).model.state_dict()
    state = {}
    for name, value in teacher.items():
        if name not in earlier:                  # an input the earlier student lacks: the teacher's
            state[name] = value.clone()
            continue
        had = earlier[name]
        part = tuple(slice(0, n) for n in had.shape)
        change = 0 if delta is None else value[part] - delta[name][part]
        start = value.clone()                    # new input columns (beat phase), new style rows: the teacher's
        start[part] = had + change
        state[name] = start
    return state


def _started_from(args) -> str:
    """The student's starting weights, in words, for its record."""
    if not args.init_student:
        return "the teacher's network"
    if not args.init_teacher:
        return args.init_student.name
    return f"{args.init_student.name} (+ the teacher's change since {args.init_teacher.name})"


def _student_info(args, teacher_path: Path, digest: str, times_s: list[int]) -> dict:
    return {"steps": len(times_s), "timesteps": times_s, "teacher_steps": args.segments * args.substeps,
            "guidance": args.guidance, "autoguidance": args.autoguidance, "guidance_lowpass": args.guidance_lowpass,
            "teacher": teacher_path.name, "teacher_sha256": digest,
            "teacher_solver": args.teacher_solver,
            "recipe": f"guidance + progressive step distillation, {args.segments} x {args.substeps} teacher "
                      f"{args.teacher_solver} steps"
                      + (f", motion-band term {args.motion_weight:g}" if args.motion_weight else "")
                      + (f", motion-energy term {args.energy_weight:g}" if args.energy_weight else "")
                      + " (engine.training.distill)"}


def run(args) -> Path:
    from ..api import denoiser
    from .train import (_batches, _restore_state, _rng_state, _state_tensors, check_numbers, check_run_folder,
                        check_seed, read_state, saved_running_loss)
    check_numbers(counts={"--segments": args.segments, "--substeps": args.substeps, "--iterations": args.iterations,
                          "--batch": args.batch, "--threads": args.threads, "--probe-windows": args.probe_windows},
                  amounts={"--lr": args.lr, "--warmup": args.warmup, "--workers": args.workers,
                           "--motion-weight": args.motion_weight, "--energy-weight": args.energy_weight},
                  positive={"--max-minutes": args.max_minutes, "--save-minutes": args.save_minutes},
                  shares={"--ema": args.ema})
    check_seed(args.seed)
    trained = sorted(set(args.train_segments)) if args.train_segments else list(range(args.segments))
    if not all(0 <= k < args.segments for k in trained):
        raise EngineError(f"--train-segments must be from 0 to {args.segments - 1} (the student's steps), "
                          f"got {' '.join(map(str, args.train_segments))}")
    for flag, value in (("--rollout-share", args.rollout_share), ("--any-share", args.any_share)):
        if not 0 <= value <= 1:
            raise EngineError(f"{flag} must be from 0 to 1, got {value}")
    if args.init_teacher and not args.init_student:
        raise EngineError("--init-teacher goes with --init-student (the teacher that student was distilled from)")
    for given in (args.init_student, args.init_teacher):
        if given and not given.is_file():
            raise EngineError(f"no weights file at {given}")
    teacher_path = args.teacher.resolve()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise EngineError("--device cuda was asked for but no CUDA GPU is available")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = args.out.resolve()
    check_run_folder(out, "distill")
    ckpt = checkpoint.load(teacher_path, device=device)
    if ckpt.student is not None:
        raise EngineError(f"{teacher_path} is already a few-step student: distil from the many-step teacher")
    digest = file_digest(teacher_path)
    t0 = time.time()
    train, val, minutes = _load_windows(args, ckpt, out)
    out.mkdir(parents=True, exist_ok=True)               # only once the run can start: no empty folder
    print(f"data: {minutes:.1f} min of training windows with music, loaded in {time.time() - t0:.1f}s", flush=True)

    times_t = teacher_timesteps(args.segments, args.substeps)
    times_s = student_timesteps(args.segments, args.substeps)
    if ckpt.guide is None and args.autoguidance != 1.0:
        # A teacher without a guide network is not autoguided: the student's record says so (QA26:
        # it said "autoguidance": 2.0 for a teacher fresh from training).
        print(f"note: {teacher_path.name} has no guide network: no autoguidance to distil", flush=True)
        args.autoguidance = 1.0
    alpha_bar = cosine_alpha_bar().to(device)
    cfg = ModelConfig.from_dict({**ckpt.model.cfg.to_dict(), "dropout": 0.0})   # a deterministic target
    student, ema = Denoiser(cfg).to(device), Denoiser(cfg).to(device).eval()
    start = (initial_student(ckpt, args.init_student.resolve(), args.init_teacher and args.init_teacher.resolve())
             if args.init_student else ckpt.model.state_dict())
    student.load_state_dict(start)
    ema.load_state_dict(start)
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
    state_path, meta_path = out / "state.safetensors", out / "recipe.json"
    recipe = {"teacher_sha256": digest, "segments": args.segments, "substeps": args.substeps,
              "guidance": args.guidance, "autoguidance": args.autoguidance, "guidance_lowpass": args.guidance_lowpass,
              "motion_weight": args.motion_weight, "teacher_solver": args.teacher_solver,
              "energy_weight": args.energy_weight}
    step, seconds_before, old, running = 0, 0.0, {}, None
    if state_path.exists():
        old = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        old.setdefault("guidance_lowpass", 0.0)      # runs from before the option guided plainly
        old.setdefault("motion_weight", 0.0)        # and took the plain MSE
        old.setdefault("teacher_solver", "ddim")    # and the teacher's DDIM steps
        old.setdefault("energy_weight", 0.0)        # and no energy term
        if {k: old.get(k) for k in recipe} != recipe:
            raise EngineError(f"{out} holds a distillation of another teacher or recipe ({old}): use a new --out")
        state = read_state(state_path, device)
        step = _restore_state(state, student, ema, opt, device)
        running = saved_running_loss(state)        # the logged loss goes on as if never stopped
        seconds_before = float(old.get("seconds", 0.0))
        print(f"resuming from iteration {step}", flush=True)

    def teacher_for(style: torch.Tensor):
        return denoiser(ckpt, style, args.guidance, args.autoguidance, args.guidance_lowpass)

    probe = _probe(val, args.probe_windows, ckpt, device)
    reference = sample_windows(teacher_for(probe["style"]), probe["noise"], probe["music"], times_t, alpha_bar,
                               args.teacher_solver)
    now_error = closeness(ema, probe, reference, times_s, alpha_bar)
    # The plain alternative for comparison: the teacher itself at the student's step count.
    few = sample_windows(teacher_for(probe["style"]), probe["noise"], probe["music"], ddim_timesteps(len(times_s)),
                         alpha_bar, args.teacher_solver)
    teacher_few_error = float((few - reference).pow(2).mean().sqrt())
    start_error = float(old.get("teacher_rms_at_start", now_error))   # before the first iteration of the run
    print(f"teacher: {ckpt.model.num_parameters() / 1e6:.1f}M parameters, guide {'yes' if ckpt.guide else 'no'}; "
          f"{len(times_t)} steps {times_t[:3]}... -> student {times_s}; student-teacher RMS now {now_error:.4f}; "
          f"the teacher itself at {len(times_s)} steps: {teacher_few_error:.4f}", flush=True)

    batches = _batches(train, args.batch, first_batch=step, workers=args.workers)
    gen = torch.Generator().manual_seed(args.seed * 1000003 + step)
    noise_gen = torch.Generator(device=device).manual_seed(args.seed * 1000003 + step)   # noise drawn where it is used
    started, last_save = time.time(), time.time()
    log = open(out / "log.jsonl", "a")

    def save(final: bool) -> None:
        seconds = seconds_before + time.time() - started
        err = closeness(ema, probe, reference, times_s, alpha_bar)
        info = {"iteration": step, "seconds": round(seconds, 1), "loss": running, "teacher_rms": round(err, 5),
                "teacher_rms_at_start": round(start_error, 5),
                "teacher_rms_of_teacher_at_student_steps": round(teacher_few_error, 5), "teacher_steps": len(times_t),
                "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip(),
                "device": str(device) + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
                "torch": torch.__version__, "command": "python -m engine distill " + " ".join(sys.argv[1:]),
                "data": [str(s) for s in (args.data or [])], "teacher_info": ckpt.info,
                **({"danced_styles": ckpt.info["danced_styles"]} if "danced_styles" in ckpt.info else {}),
                "started_from": _started_from(args)}
        checkpoint.save(out / "student.safetensors", ema, ckpt.normalizer, ckpt.music_normalizer, ckpt.styles,
                        info, student=_student_info(args, teacher_path, digest, times_s))
        checkpoint.write_safetensors(_state_tensors(student, ema, opt, step, _rng_state(device), running_loss=running),
                                     state_path)
        meta_path.write_text(json.dumps({**recipe, "seconds": seconds, "iteration": step,
                                         "teacher_rms_at_start": start_error}))
        log.write(json.dumps({"iteration": step, "seconds": round(seconds, 1), "loss": running,
                              "teacher_rms": err, "teacher_rms_at_start": start_error}) + "\n")
        log.flush()
        print(f"iteration {step}: loss {running if running is None else round(running, 5)}, student-teacher RMS "
              f"{err:.4f} (at start {start_error:.4f}), {seconds / 60:.1f} min{' (stopped)' if final else ''}",
              flush=True)

    while step < args.iterations:
        if args.max_minutes is not None and time.time() - started > args.max_minutes * 60:
            break
        # Each iteration's draws follow from the seed and the iteration alone: a resumed run draws
        # what the uninterrupted one would (seeded once per start, the two parted after a resume).
        gen.manual_seed(args.seed * 1000003 + step)
        noise_gen.manual_seed(args.seed * 1000003 + step)
        batch = next(batches)
        x0 = batch["motion"].to(device)
        # As generation gives it (the music's own beat phase, not the training's re-phased
        # kinematic beats): the student learns the teacher's dances to real music input.
        music = music_input(ckpt.model.cfg, ckpt.music_normalizer, batch["music"]).to(device)
        if ckpt.model.cfg.key_input:     # teacher and student see the same keys, drawn as in training
            music = with_random_keys(music, x0, gen)
        n = x0.shape[0]
        style = torch.where(torch.rand(n, generator=gen) < args.any_share, torch.zeros(n, dtype=torch.long),
                            torch.randint(1, len(ckpt.styles), (n,), generator=gen)).to(device)
        k = trained[step % len(trained)]                 # one segment per batch: the guidance switch is per batch
        t_k = times_s[k]
        noise = torch.randn(x0.shape, generator=noise_gen, device=device)
        x = q_sample(x0, torch.full((n,), t_k, device=device), noise, alpha_bar)
        rolled = int(round(args.rollout_share * n)) if k > 0 else 0
        if rolled:
            student.eval()
            x[:rolled] = student_rollout(student, torch.randn(x0[:rolled].shape, generator=noise_gen, device=device),
                                         music[:rolled], style[:rolled], times_s, k, alpha_bar)
        target = teacher_segment_target(teacher_for(style), x, music, times_t, k, args.substeps, alpha_bar,
                                        args.teacher_solver)
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        student.train()
        pred = plain_denoiser(student, style)(x, torch.full((n,), t_k, device=device), music)
        loss = F.mse_loss(pred, target)
        if args.motion_weight:
            loss = loss + args.motion_weight * motion_band_error(pred, target)
        if args.energy_weight:
            loss = loss + args.energy_weight * motion_energy_error(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            if args.ema > 0:
                # The average warms up (decay (1+n)/(10+n) below --ema) so that a short run is not
                # dominated by the initial weights.
                decay = min(args.ema, (1 + step) / (10 + step))
                torch._foreach_lerp_(list(ema.parameters()), list(student.parameters()), 1 - decay)
            else:
                for e, s in zip(ema.parameters(), student.parameters()):
                    e.copy_(s)
        step += 1
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        if time.time() - last_save > args.save_minutes * 60:
            save(False)
            last_save = time.time()
    save(True)
    log.close()
    return out / "student.safetensors"


def main(argv=None) -> int:
    from .train import run_resumable
    return run_resumable(run, parse_args(argv), "student")


if __name__ == "__main__":
    sys.exit(main())
