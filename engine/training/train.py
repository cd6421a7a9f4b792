"""Train the dance denoiser: `python -m engine train --data DIR [DIR ...] --out RUN_DIR`.

Resumable (rerun the same command: it continues from RUN_DIR/state.safetensors), reproducible
(fixed seed), CPU or GPU, and multi-GPU with `torchrun --nproc_per_node N -m engine train ...`
(DistributedDataParallel). RUN_DIR/model.safetensors is always the latest EMA model in the
engine's weights format, with the run's config and progress in its metadata.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from ..body import layout as L
from ..defaults import TRAINING_STYLES
from ..errors import EngineError, in_one_line
from ..music.beat_phase import with_beat_phase_normalizer
from ..sampler import checkpoint
from ..sampler.diffusion import LossWeights, cosine_alpha_bar, training_loss
from ..sampler.model import Denoiser, ModelConfig, music_input, with_keys
from .random_keys import with_random_keys

# "any" is index 0: the label that classifier-free guidance drops to.
BASE_STYLES = list(TRAINING_STYLES)   # engine.defaults: the one list of the training data's styles


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", type=Path, default=None,
                   help="dataset folders: tang2018-style, justlmd-style, AIST++ or CMU salsa (BVH) motion folders "
                        "(default: ../shared/data/tang2018 and ../shared/data/justlmd beside the repo)")
    p.add_argument("--aist-music", type=Path, default=None, help="AIST++ music folder (wav files named by music id)")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, config and log go here")
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder (default: OUT/../.cache)")
    p.add_argument("--steps", type=int, default=20000, help="total optimisation steps")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this much wall time")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop (resumably) at this step, with the learning-rate schedule still that of --steps")
    p.add_argument("--schedule-minutes", type=float, default=None,
                   help="run the learning-rate schedule over this much training time instead of over --steps, and "
                        "end there: a run on a lent machine with fixed time (python -m engine gpu-session) then "
                        "decays fully whatever speed the machine makes")
    p.add_argument("--batch", type=int, default=32, help="windows per step (per process under torchrun)")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--init", type=Path, default=None,
                   help="start a new run from these weights (fine-tuning), keeping their normalisation and styles (new data's "
                        "styles are added); ignored when OUT holds a run to resume")
    p.add_argument("--root-weight", type=float, default=LossWeights.root,
                   help="weight of the root-velocity loss term (engine.sampler.diffusion.LossWeights)")
    p.add_argument("--foot-weight", type=float, default=LossWeights.foot,
                   help="weight of EDGE's foot term: planted feet (as the data has them) kept still in the estimate")
    p.add_argument("--turn-weight", type=float, default=LossWeights.turn,
                   help="weight of the loss on pelvis turns faster than the real dancers' (engine.sampler.diffusion."
                        "turn_excess); 0, the default, is the loss the shipped GPU run used")
    p.add_argument("--jitter-weight", type=float, default=LossWeights.jitter,
                   help="weight of the loss on the joints' position error above about 5 Hz, where dancers "
                        "hardly move (0, the default, keeps EDGE's loss)")
    p.add_argument("--ema", type=float, default=0.999, help="decay of the weights' moving average that is shipped")
    p.add_argument("--width", type=int, default=ModelConfig.width)
    p.add_argument("--layers", type=int, default=ModelConfig.layers)
    p.add_argument("--heads", type=int, default=ModelConfig.heads)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=500, help="steps between validation passes and checkpoints")
    p.add_argument("--no-augment", action="store_true", help="disable mirroring / rotation / tempo augmentation")
    p.add_argument("--tempo-range", type=float, nargs=2, default=(0.9, 1.1), metavar=("SLOWEST", "FASTEST"),
                   help="tempo augmentation: windows played this much slower to faster, music and motion together "
                        "(default 0.9 1.1; the data's songs stop near 140 bpm, so faster songs need a wider range)")
    p.add_argument("--key-input", action="store_true",
                   help="a key-aware network: trained with some of each window's own motion given as keys "
                        "(engine.training.random_keys), it plans the motion through the animator's keys")
    p.add_argument("--beat-phase", action="store_true",
                   help="give the network each frame's beat phase (engine.music.beat_phase), trained on the "
                        "windows' own kinematic beats re-phased onto the music's tempo (engine.training.rephase)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    p.add_argument("--workers", type=int, default=1, help="processes preparing batches (raise on a fast GPU)")
    p.add_argument("--keep-every", type=int, default=None,
                   help="also keep the EMA model of every Nth step as model_STEP.safetensors "
                        "(candidates for an autoguidance guide)")
    args = p.parse_args(argv)
    slowest, fastest = args.tempo_range
    if not 0 < slowest <= fastest:
        p.error(f"--tempo-range needs 0 < SLOWEST <= FASTEST, got {slowest:g} {fastest:g}")
    return args


# ------------------------------------------------------------------ optimiser state as safetensors

def _state_tensors(model, ema, opt, step: int, rng: dict | None = None, other_ranks: list | None = None,
                   running_loss: float | None = None) -> dict:
    out = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    out.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    for i, p in enumerate(model.parameters()):
        st = opt.state.get(p, {})
        for name in ("exp_avg", "exp_avg_sq"):
            if name in st:
                out[f"opt.{i}.{name}"] = st[name].detach().cpu().contiguous()
        if "step" in st:
            out[f"opt.{i}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1).cpu()
    out["train.step"] = torch.tensor([step], dtype=torch.int64)
    if running_loss is not None:     # the logged loss's running average goes on where it stood (saved_running_loss)
        out["train.running_loss"] = torch.tensor([running_loss], dtype=torch.float64)
    if rng is not None:         # the global generator's state: noise and timesteps go on as if never stopped
        out.update({f"rng.{name}": state.cpu().contiguous() for name, state in rng.items()})
    for r, states in enumerate(other_ranks or [], start=1):       # a multi-process run's other ranks
        out.update({f"rng.rank{r}.{name}": state.cpu().contiguous() for name, state in states.items()})
    return out


def _every_ranks_rng(world: int, device) -> list[dict]:
    """Each process's generators' state (_rng_state), gathered on every rank; [] for one process.
    Saved, a resumed multi-process run draws what the uninterrupted one would (QA: rank 0's
    alone, the others replayed their first stretch's draws: weights 9e-4 apart after 3 steps)."""
    if world == 1:
        return []
    states = [None] * world
    dist.all_gather_object(states, {k: v.cpu() for k, v in _rng_state(device).items()})
    return states


def _rng_state(device) -> dict:
    """The global torch generators' state (the CPU's, and the GPU's on CUDA)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def _set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), torch.device(device))


def _restore_state(tensors: dict, model, ema, opt, device=None, rank: int = 0) -> int:
    """Load a run's state into the models and the optimiser; with `device` also the global
    generators' state it was saved with (a resumed run draws what the uninterrupted one would:
    reseeded instead, every resumed stretch replayed the first one's draws). Returns the step."""
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError:         # torch's 100-line list of mismatched tensors
        raise EngineError("the run folder holds a run of another network shape (--width, --layers, --heads, "
                          "--key-input or the data's music channels differ): resume it with the options it was "
                          "started with, or give another --out") from None
    for i, p in enumerate(model.parameters()):
        if f"opt.{i}.exp_avg" in tensors:
            opt.state[p] = {"exp_avg": tensors[f"opt.{i}.exp_avg"].to(p.device),
                            "exp_avg_sq": tensors[f"opt.{i}.exp_avg_sq"].to(p.device),
                            "step": tensors[f"opt.{i}.step"].reshape(()).clone()}
    prefix = "rng." if rank == 0 else f"rng.rank{rank}."
    rng = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix) and "." not in k[len(prefix):]}
    if device is not None and "cpu" in rng:     # (a state saved by another number of processes: reseeded)
        _set_rng_state(rng, device)
    return int(tensors["train.step"][0])


def saved_running_loss(tensors: dict) -> float | None:
    """The running average of the training loss a state file was saved with; None for a state
    from before it was kept (QA: restarted at every resume, the log's loss jumped: 11.53 logged
    at step 6 against 8.39 uninterrupted, with identical weights)."""
    saved = tensors.get("train.running_loss")
    return None if saved is None else float(saved[0])


def lr_at(step: int, args, seconds: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak: over the steps, or with
    --schedule-minutes over the training time (`seconds` so far)."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if getattr(args, "schedule_minutes", None):
        progress = min(1.0, seconds / (60 * args.schedule_minutes))
    else:
        progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


# ------------------------------------------------------------------ the run

def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        # An hour, not NCCL's 10 min default: the other ranks wait at a barrier while rank 0
        # builds the data cache from raw files.
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=timedelta(hours=1))
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _trained_seconds(before: float, started: float, world: int, device) -> float:
    """Seconds the run has trained, `before` this start and since `started`: rank 0's clock on
    every rank, so that the ranks stop on the same step and step at the same learning rate.
    On their own clocks one rank stopped a step before the other, which then waited for it at
    the gradients' all-reduce: a crash without a checkpoint (gloo), or a hang (QA: torchrun
    with --max-minutes, 3 runs of 6)."""
    seconds = before + time.time() - started
    if world > 1:
        shared = torch.tensor([seconds], dtype=torch.float64, device=device)
        dist.broadcast(shared, 0)
        seconds = float(shared)
    return seconds


def _pick_device(name: str, rank: int) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise EngineError("--device cuda was asked for but no CUDA GPU is available")
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)       # NCCL's collectives (the cache barrier, DDP) use it
        return device
    return torch.device("cpu")


class _WindowStream(torch.utils.data.Dataset):
    """Window k of the run = the dataset's index k mod its length, in epoch k // length: every
    batch is a fresh draw, and a resumed run continues the same stream."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return 2**62

    def __getitem__(self, k: int):
        self.dataset.set_epoch(k // len(self.dataset))
        return self.dataset[k % len(self.dataset)]


def _batches(dataset, batch: int, first_batch: int, workers: int = 1):
    """Endless batches, prepared by a worker process while the model trains."""
    from torch.utils.data import DataLoader
    indices = range(first_batch * batch, 2**62)
    # The windows are seeded by their index; a generator of its own keeps the loader from drawing
    # its workers' seed from the global one, which the training's noise comes from.
    loader = DataLoader(_WindowStream(dataset), batch_size=batch, sampler=indices, num_workers=workers,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                        generator=torch.Generator().manual_seed(0))
    return iter(loader)


def check_numbers(counts: dict = {}, amounts: dict = {}, positive: dict = {}, shares: dict = {}) -> None:
    """One clear line (EngineError) for a number no run can use, before anything is written:
    counts (whole numbers of at least 1), amounts (finite, at least 0), positive (finite, above
    0) and shares (from 0 to below 1), each {flag: value}; None values are options not given."""
    for flag, value in counts.items():
        if value is not None and value < 1:
            raise EngineError(f"{flag} must be at least 1, got {value}")
    for flag, value in amounts.items():
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise EngineError(f"{flag} must be a number of at least 0, got {value}")
    for flag, value in positive.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise EngineError(f"{flag} must be a positive number, got {value}")
    for flag, value in shares.items():
        if value is not None and not 0 <= value < 1:
            raise EngineError(f"{flag} must be from 0 to below 1, got {value}")


def check_seed(seed: int) -> None:
    """numpy's generators take seeds from 0 up (--seed -1 was a traceback)."""
    if not 0 <= seed < 2 ** 32:
        raise EngineError(f"--seed must be a whole number from 0 to {2 ** 32 - 1}, got {seed}")


def check_run_args(args) -> None:
    """One clear line (EngineError) for numbers no run can use, before anything is written."""
    check_numbers(counts={"--steps": args.steps, "--batch": args.batch, "--val-every": args.val_every,
                          "--width": args.width, "--layers": args.layers, "--heads": args.heads,
                          "--stop-at": args.stop_at, "--keep-every": args.keep_every, "--threads": args.threads},
                  amounts={"--lr": args.lr, "--warmup": args.warmup, "--workers": args.workers,
                           "--root-weight": args.root_weight, "--foot-weight": args.foot_weight,
                           "--turn-weight": args.turn_weight, "--jitter-weight": args.jitter_weight},
                  positive={"--max-minutes": args.max_minutes, "--schedule-minutes": args.schedule_minutes},
                  shares={"--ema": args.ema})
    check_seed(args.seed)
    if args.width % args.heads:
        raise EngineError(f"--width {args.width} must be a multiple of --heads {args.heads}")
    if args.keep_every and args.keep_every % args.val_every:
        raise EngineError(f"--keep-every {args.keep_every} must be a multiple of --val-every {args.val_every}: "
                          "models are kept at checkpoints")


# What each resumable tool leaves in its run folder, to tell one tool's run from the other's:
# resumed by the other, a distillation's state was carried on as a training run (QA).
RUN_MARKS = {"train": "config.json", "distill": "recipe.json"}


def check_run_folder(out: Path, tool: str = "train") -> None:
    """The run folder (or the nearest folder above it that exists) takes files, and holds no run
    of the other resumable tool (RUN_MARKS)."""
    from ..options import check_output_folder
    check_output_folder(out, f"--out {out}")
    for other, mark in RUN_MARKS.items():
        if other != tool and (out / mark).exists() and (out / "state.safetensors").exists():
            raise EngineError(f"--out {out} holds a run of 'python -m engine {other}': {tool} into another folder")


def read_state(path: Path, device) -> dict:
    """A run's state file (state.safetensors), or one line saying it is damaged."""
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:       # safetensors raises its own error types for a cut-short or foreign file
        raise EngineError(f"{path} cannot be read ({str(e).splitlines()[0][:120]}): remove it to start the run "
                          "afresh") from None


def run(args) -> Path:
    from .data import WindowDataset, cache_beside, default_validation_names, existing_sources, load_corpus
    check_run_args(args)
    out = args.out.resolve()
    check_run_folder(out)
    resuming = (out / "state.safetensors").exists()
    if resuming:
        # --init is ignored when resuming: the run goes on as it was started, a fine-tune or not.
        args.init = _recorded_init(out)
    start = _starting_weights(out, args.init)
    taken = []
    if start is not None and args.init is not None:
        # A fine-tune keeps every input its weights take (the shipped ones: beat phase and keys);
        # resumed, it takes them from its own weights again (QA: the same command rerun was
        # refused as "another network shape" unless --key-input --beat-phase were added).
        for flag, name in (("--beat-phase", "beat_phase"), ("--key-input", "key_input")):
            if getattr(start.model.cfg, name) and not getattr(args, name):
                setattr(args, name, True)
                taken.append(flag)
    rank, world = _distributed()
    if taken and rank == 0 and not resuming:
        print(f"note: {args.init} takes these inputs, so this run does too: {' '.join(taken)}", flush=True)
    device = _pick_device(args.device, rank)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True   # ~10-bit mantissa products: ample for this loss
        torch.backends.cudnn.allow_tf32 = True
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    sources = existing_sources(args.data)
    _check_same_data(out, sources)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = (args.cache or cache_beside(out)).resolve()

    t0 = time.time()
    if rank == 0:
        corpus = load_corpus(sources, cache_dir, aist_music=args.aist_music)
    if world > 1:
        dist.barrier()          # the other ranks read the cache rank 0 has built, not build it again
    if rank != 0:
        corpus = load_corpus(sources, cache_dir, aist_music=args.aist_music, log=None)
    train_items, val_items = corpus.split(default_validation_names())
    music = [it.music for it in train_items if it.music is not None]
    if not music:
        raise EngineError("no training sequence has music: add a dataset with audio (tang2018 or AIST++ with --aist-music)")
    state_path = out / "state.safetensors"
    data_styles = {it.style for it in corpus.items}
    # The styles style "any" may draw: learned with their music (engine.api.styles_any_draws).
    danced = {it.style for it in train_items if it.music is not None} - {"any"}
    if start is None:
        # The base styles the data has (in their fixed order: the shipped recipe's style table),
        # then its own; a base style with no data would be an untrained name to ask for.
        styles = [s for s in BASE_STYLES if s == "any" or s in data_styles] + sorted(data_styles - set(BASE_STYLES))
        normalizer = L.Normalizer.fit(torch.from_numpy(np.concatenate([it.motion for it in train_items])))
        music_normalizer = L.Normalizer.fit(torch.from_numpy(np.concatenate(music)), flags=None)
    else:
        # A fine-tune keeps the normalisation of the weights it starts from (refitted on other
        # data, the same network would read every channel a little off) and their style table;
        # the data's new styles are appended (_initialise_from starts them as "any").
        styles = list(start.styles) + sorted(data_styles - set(start.styles))
        normalizer, music_normalizer = start.normalizer, start.music_normalizer
        danced |= set(checkpoint.drawable_styles(start.styles, start.info))
    danced_styles = [s for s in styles if s in danced]
    if args.beat_phase and not (start is not None and start.model.cfg.beat_phase):   # else it has them
        music_normalizer = with_beat_phase_normalizer(music_normalizer)
    train_set = WindowDataset(train_items, normalizer, styles=styles, augment=not args.no_augment, seed=args.seed + rank,
                              beat_phase=args.beat_phase, tempo_range=tuple(args.tempo_range))
    val_set = WindowDataset(val_items or train_items[:1], normalizer, styles=styles, augment=False, seed=12345,
                            beat_phase=args.beat_phase)
    if rank == 0:
        minutes = sum(len(it.motion) for it in train_items) / L.MODEL_FPS / 60
        print(f"data: {len(train_items)} training sequences ({minutes:.1f} min), {len(val_items)} validation, "
              f"loaded in {time.time() - t0:.1f}s; styles {styles}", flush=True)
        if not val_items:     # QA: a "val" loss was printed from a training clip without a word
            print(f"note: no validation sequence in this data (engine.training.data's split names none of it): "
                  f"the 'val' loss is measured on the training sequence {train_items[0].name}", flush=True)

    cfg = ModelConfig(width=args.width, layers=args.layers, heads=args.heads, num_styles=len(styles),
                      music_channels=train_set.num_music, key_input=args.key_input)
    model = Denoiser(cfg).to(device)
    ema = Denoiser(cfg).to(device).eval()
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    step, running = 0, None
    if state_path.exists():
        # Each process of a multi-GPU run has its own generators; the state file holds each rank's.
        state = read_state(state_path, device)
        step = _restore_state(state, model, ema, opt, device, rank)
        running = saved_running_loss(state)
        if rank == 0:
            print(f"resuming from step {step}", flush=True)
    elif args.init is not None:
        has_guide = _initialise_from(start, args.init, model, ema, cfg)
        if rank == 0:
            print(f"starting from the weights in {args.init}", flush=True)
            if has_guide:
                print("note: its autoguidance guide network is not carried over; add one to the result with "
                      "'python -m engine autoguide'", flush=True)
    train_model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    alpha_bar = cosine_alpha_bar().to(device)
    normalizer_dev = L.Normalizer(normalizer.mean.to(device), normalizer.std.to(device))
    run_config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    run_config["data"] = [str(s) for s in sources]
    (out / "config.json").write_text(json.dumps({"run": run_config, "model": cfg.to_dict(), "styles": styles}, indent=2))

    loss_weights = LossWeights(root=args.root_weight, foot=args.foot_weight, turn=args.turn_weight,
                               jitter=args.jitter_weight)
    from tqdm import tqdm
    batches = _batches(train_set, args.batch, first_batch=step, workers=args.workers)
    music_norm_dev = L.Normalizer(music_normalizer.mean.to(device), music_normalizer.std.to(device))
    bar = tqdm(total=args.steps, initial=step, disable=rank != 0, dynamic_ncols=True, desc="train")
    started, trained_before = time.time(), _previous_seconds(out)

    def saved_in_loop(s: int) -> bool:
        return s % args.val_every == 0 or s == args.steps

    def save() -> None:        # on every rank: each gives its generators' state, rank 0 writes
        other_ranks = _every_ranks_rng(world, device)[1:]
        if rank == 0:
            _checkpoint(out, model, ema, opt, step, normalizer, music_normalizer, styles, danced_styles, run_config,
                        val_set, alpha_bar, normalizer_dev, music_norm_dev, device,
                        trained_before + time.time() - started, running, log, other_ranks)

    log = open(out / "log.jsonl", "a") if rank == 0 else None
    first_step = step
    while step < args.steps:
        if args.stop_at is not None and step >= args.stop_at:
            break
        trained = _trained_seconds(trained_before, started, world, device)
        if args.max_minutes is not None and trained - trained_before > args.max_minutes * 60:
            break
        if args.schedule_minutes is not None and trained >= args.schedule_minutes * 60:
            break
        batch = {k: v.to(device) for k, v in next(batches).items()}
        batch["music"] = music_norm_dev.normalize(batch["music"])
        if cfg.key_input:     # some of each window's own motion given as keys
            batch["music"] = with_random_keys(batch["music"], batch["motion"])
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args, trained)
        train_model.train()
        losses = training_loss(train_model, batch, alpha_bar, normalizer_dev, loss_weights)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - args.ema)
        step += 1
        value = float(losses["loss"].detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        if saved_in_loop(step):
            save()
    bar.close()
    if step == first_step:            # nothing trained: the run already stands at --steps or --stop-at
        if rank == 0:
            print(f"the run already stands at step {step}: nothing to train (raise --steps or --stop-at to go on)",
                  flush=True)
    elif not saved_in_loop(step):        # stopped early (--max-minutes, --stop-at) between checkpoints
        save()
    if world > 1:
        dist.destroy_process_group()
    return out / "model.safetensors"


def _check_same_data(out: Path, sources) -> None:
    """A resumed run goes on with the data it was started on (QA: other --data carried on without
    a word and config.json lost the record of what the run had trained on)."""
    config = out / "config.json"
    if not (out / "state.safetensors").exists() or not config.exists():
        return
    try:
        before = json.loads(config.read_text())["run"]["data"]
    except (ValueError, KeyError, TypeError):
        return
    now = [str(s) for s in sources]
    if sorted(before) != sorted(now):
        raise EngineError(f"--out {out} was trained on {', '.join(before)}: resume it with that --data, or start "
                          "another --out (or --init from its model.safetensors to fine-tune on other data)")


def _recorded_init(out: Path) -> str | None:
    """The --init a run in `out` was started from (config.json), None for a run from scratch."""
    try:
        return json.loads((out / "config.json").read_text())["run"]["init"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _starting_weights(out: Path, init: Path | None):
    """The weights whose normalisation and styles this run keeps: its own (resuming), --init's
    (a new fine-tune), or None (a new run, fitted to the data)."""
    if (out / "state.safetensors").exists():
        return checkpoint.load(out / "model.safetensors") if (out / "model.safetensors").exists() else None
    if init is None:
        return None
    if not Path(init).is_file():
        raise EngineError(f"--init: no weights file at {init}")
    start = checkpoint.load(init)
    if start.is_student:
        raise EngineError(f"--init {init} is a few-step student: fine-tune its teacher "
                          f"({start.student.get('teacher', 'the many-step model')}), then distil it again")
    return start


def _initialise_from(ckpt, path: Path, model, ema, cfg: ModelConfig) -> bool:
    """Copy a weights file's (EMA) model into both the trained and the EMA model of a new run.
    Returns whether the file also had a guide network (which is not trained)."""
    old_cfg = ckpt.model.cfg
    # A network without beat phase may start a run with it: the new input columns start at zero,
    # so the network starts as it was and learns what the phase adds.
    # So may a network without key input: its key layer starts at zero (Denoiser).
    # New styles (new data) start as "any", the label every window is also trained under.
    adds_phase = cfg.beat_phase and not old_cfg.beat_phase
    adds_keys = cfg.key_input and not old_cfg.key_input
    adds_styles = cfg.num_styles - old_cfg.num_styles
    same_otherwise = {**old_cfg.to_dict(), "music_channels": cfg.music_channels, "key_input": cfg.key_input,
                      "num_styles": cfg.num_styles} == cfg.to_dict()
    if not same_otherwise or adds_styles < 0 \
            or (old_cfg.music_channels != cfg.music_channels and not adds_phase) \
            or (old_cfg.key_input != cfg.key_input and not adds_keys):
        raise EngineError(f"--init: {path} has model config {old_cfg.to_dict()}, this run {cfg.to_dict()}")
    state = ckpt.model.state_dict()
    if adds_phase:
        w = state["music.proj.weight"]
        state["music.proj.weight"] = torch.cat([w, w.new_zeros(w.shape[0], cfg.music_channels - w.shape[1])], 1)
    if adds_keys:
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("key_in.")})
    if adds_styles:
        table = state["style.weight"]
        state["style.weight"] = torch.cat([table, table[:1].expand(adds_styles, -1)], 0)
    state = {k: v.to(next(model.parameters()).device) for k, v in state.items()}
    model.load_state_dict(state)
    ema.load_state_dict(state)
    return ckpt.guide is not None


def _previous_seconds(out: Path) -> float:
    log = out / "log.jsonl"
    if not log.exists():
        return 0.0
    lines = [l for l in log.read_text().splitlines() if l.strip()]
    return float(json.loads(lines[-1]).get("seconds", 0.0)) if lines else 0.0


@torch.no_grad()
def validation_loss(model, val_set, alpha_bar, normalizer, music_normalizer, device, batches: int = 4) -> float:
    """Loss on fixed validation windows with fixed times and noise: comparable across steps."""
    model.eval()
    g = torch.Generator(device=device).manual_seed(0)
    total = 0.0
    for b in range(batches):
        items = [val_set[(b * 16 + i) % len(val_set)] for i in range(16)]
        batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
        batch["music"] = music_normalizer.normalize(batch["music"])
        if model.cfg.key_input:
            batch["music"] = with_random_keys(batch["music"], batch["motion"], torch.Generator().manual_seed(b))
        losses = training_loss(model, batch, alpha_bar, normalizer, music_drop=0.0, style_drop=0.0, generator=g)
        total += float(losses["loss"])
    return total / batches


@torch.no_grad()
def sample_metrics(model, val_items, normalizer, music_normalizer, device, seconds: float = 10.0,
                   steps: int = 10) -> dict:
    """Dance to the first validation song's opening with the raw network (no beat warp, no foot
    clean-up) and score it, so the log shows how the network itself is doing."""
    from ..evaluation import metrics
    from ..music.audio import FEATURE_CHANNELS
    from ..sampler.diffusion import guided, sample
    from ..body.skeleton import joint_positions
    item = next((it for it in val_items if it.music is not None), None)
    if item is None:
        return {}
    frames = min(len(item.music), int(seconds * L.MODEL_FPS))
    music = music_input(model.cfg, music_normalizer, item.music[:frames]).to(device)
    if model.cfg.key_input:                                          # no keys
        music = with_keys(music)
    style = torch.tensor([0], device=device)
    x = sample(guided(model, style, 2.0), music, window=L.WINDOW_FRAMES, steps=steps,
               alpha_bar=cosine_alpha_bar(), generator=torch.Generator().manual_seed(0), channels=L.NUM_CHANNELS)
    poses, trans, _ = L.unpack(normalizer.denormalize(x.cpu().double()))
    pos = joint_positions(poses.numpy(), trans.numpy())
    beats = np.flatnonzero(item.music[:frames, FEATURE_CHANNELS["beat"]] > 0.5) / L.MODEL_FPS
    scores = metrics.beat_alignment_scores(pos, L.MODEL_FPS, beats)
    speed = float(np.linalg.norm(np.diff(pos, axis=0), axis=-1).mean() * L.MODEL_FPS)
    return {"bas": round(scores["bas_bailando"], 3), "pfc": round(metrics.pfc(pos, L.MODEL_FPS), 2),
            "jerk": round(metrics.jerk(pos, L.MODEL_FPS), 1), "speed": round(speed, 3)}


def _checkpoint(out, model, ema, opt, step, normalizer, music_normalizer, styles, danced_styles, run_config,
                val_set, alpha_bar, normalizer_dev, music_norm_dev, device, seconds, running, log, other_ranks=None):
    rng = _rng_state(device)         # validation draws nothing from the training's generators
    val = validation_loss(ema, val_set, alpha_bar, normalizer_dev, music_norm_dev, device)
    samples = sample_metrics(ema, val_set.items, normalizer, music_normalizer, device)
    _set_rng_state(rng, device)
    info = {"step": step, "seconds": round(seconds, 1), "train_loss": running, "val_loss": val, "sample": samples,
            "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip(),
            "device": str(device), "torch": torch.__version__,
            "command": "python -m engine train " + " ".join(sys.argv[1:]), "run": run_config,
            "danced_styles": danced_styles}
    checkpoint.save(out / "model.safetensors", ema, normalizer, music_normalizer, styles, info)
    keep_every = run_config.get("keep_every")
    if keep_every and step % keep_every == 0:
        shutil.copyfile(out / "model.safetensors", out / f"model_{step:06d}.safetensors")
    checkpoint.write_safetensors(_state_tensors(model, ema, opt, step, rng, other_ranks, running),
                                 out / "state.safetensors")
    entry = {"step": step, "seconds": round(seconds, 1), "train_loss": running, "val_loss": val, "sample": samples}
    log.write(json.dumps(entry) + "\n")
    log.flush()
    print(f"\nstep {step}: train {running:.4f} val {val:.4f} sample {samples} ({seconds / 60:.1f} min)", flush=True)


def run_resumable(run, args, what: str) -> int:
    """The command line of a resumable job (train, distill): `run(args)` returns the file it
    wrote; a user mistake is one line (exit 2, errors.in_one_line), Ctrl+C says how to resume
    (exit 130)."""
    def job() -> int:
        try:
            path = run(args)
        except KeyboardInterrupt:
            print("interrupted: rerun the same command to resume from the last checkpoint", file=sys.stderr)
            return 130
        print(f"{what} written to {path}")
        return 0
    return in_one_line(job)


def main(argv=None) -> int:
    return run_resumable(run, parse_args(argv), "model")


if __name__ == "__main__":
    sys.exit(main())
