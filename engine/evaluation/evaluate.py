"""Score the model on held-out songs: `python -m engine evaluate [--out DIR] [options]`.

Cuts every validation song (the split engine.training.train holds out) into clips of --clip-seconds and
scores these rows with engine.evaluation.metrics:
  model (style any)     what a user gets by default: engine.api.generate with style "any", one
                        row per --seeds seed and their mean
  model (true style)    the same told the dancer's style (first seed)
  model, no beat warp   style "any" without the beat warp (first seed): what the network and the
                        rest of the finishing do alone
  network alone, network + turns, ...   style "any" (first seed): the network's own dance, then
                        each of engine.api.FINISHING_STEPS added in turn (the same draws)
  real    the recorded dance of that clip
  random  a random stretch, of the same length, of a TRAINING dance: music-agnostic, so the
          beat scores it gets are what chance gives
The same model rows are also scored on the open genre set (engine.evaluation.genre_set: acoustic
and electronic songs the training data lacks, each danced whole and cut into clips), unless
--no-genre-set.
FID_k and Div_k (kinetic features), FID_g and Div_g (geometric features) are measured against
the training split, cut into clips of the same length. (The random row is drawn from that same
set, so its FIDs are low by construction: they show the floor, not a target.) Music beats come from engine.music.audio.detect_beats
on each clip. Writes OUT/metrics.json, OUT/beat_alignment.png and OUT/metrics.png.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Sequence

import numpy as np
import torch

from ..body import layout as L
from ..body.motion import Motion
from ..body.skeleton import joint_positions
from ..defaults import (DEFAULT_AUTOGUIDANCE, DEFAULT_GUIDANCE, DEFAULT_QUALITY, DEFAULT_STEPS,
                        GUIDANCE_LOWPASS_FRAMES, QUALITIES, SAMPLING_ETA, SAMPLING_SOLVER,
                        SAMPLING_SOLVERS, SMOOTHING_SECONDS, STUDENT_SMOOTHING_SECONDS)
from ..errors import EngineError
from ..sampler.checkpoint import DEFAULT_WEIGHTS
from . import metrics as M

ROWS = ("model", "model, no beat warp", "real", "random")
DEFAULT_ROW = "model (style any)"    # what a user gets by default: scored over every --seeds seed   # rows listed first, in this order
COLUMNS = (  # (key in metrics.summarize, table header, scale)
    ("bas_bailando", "BAS (Bailando)", 1.0),
    ("bas_fact", "BAS (FACT)", 1.0),
    ("pfc", "PFC", 1.0),
    ("foot_skating", "Foot skating %", 100.0),
    ("foot_skimming", "Skimming %", 100.0),
    ("pulse", "Pulse", 1.0),
    ("jerk", "Jerk m/s^3", 1.0),
    ("speed", "Speed m/s", 1.0),
    ("turn_snaps", "Snaps /10 s", 1.0),
    ("legs_through", "Legs through %", 100.0),
    ("fid_k", "FID_k", 1.0),
    ("div_k", "Div_k", 1.0),
    ("fid_g", "FID_g", 1.0),
    ("div_g", "Div_g", 1.0),
)


@dataclass
class Dance:
    """A dance with its song: joint positions at MODEL_FPS; frame 0 plays at audio_offset."""
    name: str
    style: str
    positions: np.ndarray                # (T, 24, 3) metres, Y up
    audio_path: str | None = None
    audio_offset: float = 0.0            # seconds into the audio file of frame 0


@dataclass
class Clip:
    """A held-out stretch of a validation dance and the music that goes with it."""
    name: str
    style: str
    positions: np.ndarray                # (T, 24, 3) at MODEL_FPS: the real dance
    audio_path: str
    start: float                         # seconds into the audio file
    duration: float
    music_beats: np.ndarray = field(default_factory=lambda: np.zeros(0))  # seconds from clip start


# A generator makes the model's dance for a clip; `seed` varies per clip.
Generator = Callable[[Clip, int], Motion]


def positions_of(motion: Motion) -> np.ndarray:
    """(T, 24, 3) joint positions of a Motion at its own fps."""
    return joint_positions(np.asarray(motion.poses, np.float64), np.asarray(motion.trans, np.float64))


def positions_from_packed(packed: np.ndarray) -> np.ndarray:
    """(T, 151) channel layout at MODEL_FPS -> (T, 24, 3) joint positions."""
    poses, trans, _ = L.unpack(torch.as_tensor(np.asarray(packed), dtype=torch.float64))
    return joint_positions(poses.numpy(), trans.numpy())


# ----------------------------------------------------------------------------- clips

def cut_clips(sequences: Sequence[Dance], clip_seconds: float, max_clips: int | None = None,
              every: int = 1) -> list[Clip]:
    """Consecutive, non-overlapping clips of every sequence that has a song (music beats unset);
    with `every` > 1 only every `every`-th of them (quick sweeps), then at most `max_clips`."""
    n = int(round(clip_seconds * L.MODEL_FPS))
    clips: list[Clip] = []
    for seq in sequences:
        if seq.audio_path is None:
            continue
        for k in range(len(seq.positions) // n):
            s = k * n
            clips.append(Clip(name=f"{seq.name}@{s / L.MODEL_FPS:.0f}s", style=seq.style,
                              positions=seq.positions[s:s + n], audio_path=str(seq.audio_path),
                              start=seq.audio_offset + s / L.MODEL_FPS, duration=n / L.MODEL_FPS))
    clips = clips[::every]
    return clips[:max_clips] if max_clips else clips


def genre_clips(songs, clip_seconds: float, max_songs: int | None = None) -> list[Clip]:
    """The open genre set as whole songs (no real dance; style unknown): `Clip`s whose
    `positions` is None. score_genre_set dances each whole and cuts the dance into clips."""
    import soundfile as sf
    clips = []
    for song in songs[:max_songs] if max_songs else songs:
        seconds = sf.info(str(song.path)).duration
        if seconds >= clip_seconds:
            clips.append(Clip(name=song.name, style=song.genre, positions=None, audio_path=str(song.path),
                              start=0.0, duration=math.floor(seconds / clip_seconds) * clip_seconds))
    return clips


def training_clips(sequences: Sequence[Dance], frames: int) -> list[np.ndarray]:
    """Every training dance (with or without music) cut into non-overlapping (frames, 24, 3) clips."""
    return [seq.positions[s:s + frames] for seq in sequences
            for s in range(0, len(seq.positions) - frames + 1, frames)]


def random_stretches(sequences: Sequence[Dance], frames: int, count: int, seed: int) -> list[np.ndarray]:
    """`count` random (frames, 24, 3) stretches of training dances: the music-agnostic baseline."""
    pool = [s for s in sequences if len(s.positions) >= frames]
    if not pool:
        raise EngineError(f"no training dance is {frames / L.MODEL_FPS:.1f} s long; use a shorter --clip-seconds")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        seq = pool[rng.integers(len(pool))]
        s = int(rng.integers(len(seq.positions) - frames + 1))
        out.append(seq.positions[s:s + frames])
    return out


def scored_clips(train: Sequence[Dance], val: Sequence[Dance], clip_seconds: float, max_clips: int | None = None,
                 every: int = 1) -> tuple[list[Clip], list[np.ndarray]]:
    """(validation clips, training clips of the same length: the reference set), each set large
    enough to score; EngineError otherwise."""
    clips = cut_clips(val, clip_seconds, max_clips, every)
    if not clips:
        raise EngineError(f"no validation song is at least {clip_seconds:g} s long with its music")
    train_clips = training_clips(train, len(clips[0].positions))
    if len(train_clips) < 2:
        raise EngineError("the training split has fewer than two clips of that length: FID_k needs more")
    return clips, train_clips


def add_music_beats(clips: Sequence[Clip]) -> None:
    """Fill each clip's music beats (seconds from its start) with engine.music.audio.detect_beats."""
    from tqdm import tqdm
    from ..music.audio import detect_beats, load_audio
    for clip in tqdm(clips, desc="music beats", unit="clip"):
        wave, sr = load_audio(clip.audio_path, start=clip.start, duration=clip.duration)
        clip.music_beats = np.asarray(detect_beats(wave, sr)[0], dtype=np.float64)


# ----------------------------------------------------------------------------- scoring

def model_motions(clips: Sequence[Clip], generate: Generator, seed: int) -> list[np.ndarray]:
    """The model row's dances: (T, 24, 3) positions at MODEL_FPS, one per clip."""
    from tqdm import tqdm
    out = []
    for i, clip in enumerate(tqdm(clips, desc="generating", unit="clip")):
        motion = generate(clip, seed + i)
        out.append(M.resample_positions(positions_of(motion), motion.fps))
    return out


def api_generator(weights: Path, steps: int, beat_sync: bool = True, guidance: float = DEFAULT_GUIDANCE,
                  autoguidance: float = DEFAULT_AUTOGUIDANCE, smoothing: float | None = None,
                  true_style: bool = False, finishing: Sequence[str] | None = None,
                  draws: dict | None = None, quality: str = DEFAULT_QUALITY,
                  guidance_lowpass: float = GUIDANCE_LOWPASS_FRAMES, sampling_eta: float = SAMPLING_ETA,
                  sampling_solver: str = SAMPLING_SOLVER) -> Generator:
    """engine.api.generate on the clip's audio, in style "any" (the default a user gets) or, with
    `true_style`, in the clip's own style when the weights know it. beat_sync=False scores the
    model without the beat warp, to show what the warp adds; `finishing` names the
    api.FINISHING_STEPS to run (default all). Generators that share `draws` (a dict) share the
    network's draws: a row that differs only in finishing costs no sampling."""
    from .. import api
    styles = set(api.available_styles(weights=weights))
    steps_run = [f for f in (api.FINISHING_STEPS if finishing is None else finishing)
                 if beat_sync or f != "beat warp"]

    def generate(clip: Clip, seed: int) -> Motion:
        style = clip.style if true_style and clip.style in styles else "any"
        key = (clip.audio_path, clip.start, clip.duration, style, seed)
        d = draws.get(key) if draws is not None else None
        if d is None:
            d = api.draw(clip.audio_path, style=style, seed=seed, steps=steps, fps=float(L.MODEL_FPS),
                         start=clip.start, duration=clip.duration, weights=weights, guidance=guidance,
                         autoguidance=autoguidance, quality=quality, guidance_lowpass=guidance_lowpass,
                         sampling_eta=sampling_eta, sampling_solver=sampling_solver)
            if draws is not None:
                draws[key] = d
        return api.finish_draw(d, finishing=steps_run, smoothing=smoothing)
    return generate


def seeded_rows(clips: Sequence[Clip], generators: dict[str, Generator], seeds: Sequence[int],
                every_seed: Collection[str] = (),
                cut: Callable[[np.ndarray], list[np.ndarray]] | None = None) -> dict[str, list[list[np.ndarray]]]:
    """Each generator's dances, per seed: {row: [dances of seed 0, dances of seed 1, ...]}.
    The rows named in `every_seed` run for every seed, the others for the first seed only.
    `cut` splits one generated dance into clips (the genre set: whole songs)."""
    out = {}
    for name, generate in generators.items():
        per_seed = []
        for seed in (seeds if name in every_seed else seeds[:1]):
            motions = model_motions(clips, generate, seed)
            per_seed.append([c for m in motions for c in cut(m)] if cut else motions)
        out[name] = per_seed
    return out


def reference_features(train_clips: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """The training clips' kinetic and geometric features: the real sets FID and Div measure
    against (metrics.summarize's keyword arguments)."""
    return {"real_features": np.stack([M.kinetic_features(p, L.MODEL_FPS) for p in train_clips]),
            "real_geometric": np.stack([M.geometric_features(p, L.MODEL_FPS) for p in train_clips])}


def score_seeded(per_seed: dict[str, list[list[np.ndarray]]], beats: Sequence[np.ndarray],
                 reference: dict[str, np.ndarray], seeds: Sequence[int]) -> dict[str, dict[str, float]]:
    """metrics.summarize of every row and seed; rows run for several seeds also get their mean
    and the spread (max - min) of every metric over the seeds."""
    out = {}
    for name, runs in per_seed.items():
        scored = []
        for seed, motions in zip(seeds, runs):
            items = [(p, float(L.MODEL_FPS), b) for p, b in zip(motions, beats)]
            scored.append(M.summarize(items, **reference))
            out[name if len(runs) == 1 else f"{name}, seed {seed}"] = scored[-1]
        if len(runs) > 1:
            keys = [k for k in scored[0] if k != "num_clips"]
            out[f"{name}, mean of {len(runs)} seeds"] = {k: float(np.mean([r[k] for r in scored])) for k in keys}
            out[f"{name}, spread of {len(runs)} seeds"] = {
                k: float(np.max([r[k] for r in scored]) - np.min([r[k] for r in scored])) for k in keys}
    return out


def score_rows(rows: dict[str, list[np.ndarray]], clips: Sequence[Clip],
               reference: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """metrics.summarize per row; row i of every list is paired with clips[i]'s music beats."""
    out = {}
    for name, motions in rows.items():
        items = [(p, float(L.MODEL_FPS), c.music_beats) for p, c in zip(motions, clips)]
        out[name] = M.summarize(items, **reference)
    return out


def format_table(results: dict[str, dict[str, float]]) -> str:
    """One aligned text table: rows (model, real, random, in that order if present) x metrics."""
    names = [r for r in ROWS if r in results] + [r for r in results if r not in ROWS]
    head = ["", *[h for _, h, _ in COLUMNS]]
    body = []
    for r in names:
        cells = [r]
        for key, _, scale in COLUMNS:
            v = results[r].get(key, float("nan"))
            cells.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * scale:.3f}")
        body.append(cells)
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *map(fmt, body)])


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_json(path: Path, results: dict, clips: Sequence[Clip], settings: dict,
               genre_results: dict | None = None) -> None:
    doc = {"rows": results, "clips": [c.name for c in clips], "settings": settings,
           "columns": {k: h for k, h, _ in COLUMNS}}
    if genre_results:
        doc["genre_rows"] = genre_results
    path.write_text(json.dumps(_jsonable(doc), indent=2) + "\n")


# ----------------------------------------------------------------------------- plots

def plot_beat_alignment(path: Path, clip: Clip, motions: dict[str, np.ndarray]) -> None:
    """Smoothed joint-speed curve of each row's dance for one clip, music beats as vertical lines,
    motion beats (the curve's minima) marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(motions), 1, figsize=(11, 2.4 * len(motions)), sharex=True, squeeze=False)
    for ax, (name, p) in zip(axes[:, 0], motions.items()):
        speed = M.motion_speed(p, L.MODEL_FPS)
        t = np.arange(len(speed)) / L.MODEL_FPS
        for b in clip.music_beats:
            ax.axvline(b, color="tab:red", alpha=0.35, lw=1)
        ax.plot(t, speed, color="tab:blue", lw=1.5, label="mean joint speed (smoothed)")
        beats = M.motion_beats(p, L.MODEL_FPS)
        idx = np.clip(np.round(beats * L.MODEL_FPS).astype(int), 0, len(speed) - 1)
        ax.plot(beats, speed[idx], "v", color="black", ms=6, label="motion beats")
        s = M.beat_alignment_scores(p, L.MODEL_FPS, clip.music_beats)
        ax.set_title(f"{name}: BAS Bailando {s['bas_bailando']:.3f}, FACT {s['bas_fact']:.3f}", fontsize=10)
        ax.set_ylabel("m/s")
    axes[0, 0].plot([], [], color="tab:red", alpha=0.5, label="music beats")
    axes[0, 0].legend(loc="upper left", fontsize=8, framealpha=0.9)
    axes[-1, 0].set_xlabel(f"seconds into {clip.name} ({clip.style})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_metrics(path: Path, results: dict[str, dict[str, float]]) -> None:
    """One small bar chart per metric, a bar per row."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [r for r in ROWS if r in results] + [r for r in results if r not in ROWS
                                                  and ", seed " not in r and ", spread of" not in r]
    colors = {"real": "tab:green", "random": "tab:gray"}
    cols = 5
    rows = math.ceil(len(COLUMNS) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols + 2.5, 0.28 * len(names) * rows + 1.2 * rows),
                             squeeze=False, sharey=True)
    y = np.arange(len(names))[::-1]
    for ax, (key, header, scale) in zip(axes.ravel(), COLUMNS):
        vals = [results[r].get(key, float("nan")) for r in names]
        vals = [np.nan if v is None else v * scale for v in vals]
        ax.barh(y, vals, color=[colors.get(r, "tab:blue") for r in names])
        ax.set_title(header, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[:, 0]:
        ax.set_yticks(y, names, fontsize=7)
    for ax in axes.ravel()[len(COLUMNS):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- data

def load_sequences(sources: Sequence[Path], cache_dir: Path) -> tuple[list[Dance], list[Dance]]:
    """(training, validation) dances from engine.training.data, split as engine.training.train splits them."""
    from ..training.data import default_validation_names, load_corpus
    corpus = load_corpus(list(sources), cache_dir)
    train_items, val_items = corpus.split(default_validation_names())
    return [_sequence_of(it) for it in train_items], [_sequence_of(it) for it in val_items]


def _sequence_of(item) -> Dance:
    return Dance(name=item.name, style=item.style, positions=positions_from_packed(item.motion),
                     audio_path=getattr(item, "audio_path", None),
                     audio_offset=float(getattr(item, "audio_offset", 0.0) or 0.0))


# ----------------------------------------------------------------------------- command line

# Fewer clips than this are scored with a note: FID_k over 8 clips, 7 of one song, put the real
# dancers (104) behind an untrained network (101) (QA).
FEW_CLIPS = 20


def evaluate(train: Sequence[Dance], val: Sequence[Dance], *, clip_seconds: float = 10.0,
             generate: Generator | None = None, seed: int = 0, max_clips: int | None = None, every: int = 1,
             out: Path | None = None, settings: dict | None = None,
             generate_unsynced: Generator | None = None, generators: dict[str, Generator] | None = None,
             seeds: Sequence[int] | None = None, every_seed: Collection[str] = ("model",),
             genre_set: Sequence | None = None, max_genre_songs: int | None = None) -> dict[str, dict[str, float]]:
    """Score the rows and print the table(s); write OUT's files.

    `generators` maps row names to generators; those named in `every_seed` run for every seed of
    `seeds` (default [seed]), the others for the first; without `generators`, `generate` is the "model" row and `generate_unsynced`
    the "model, no beat warp" row. `genre_set` (engine.evaluation.genre_set songs) adds a second table: the
    same model rows on those songs, each danced whole and cut into clips. The returned dict holds
    the validation rows, and the genre rows prefixed "genres: "."""
    seeds = list(seeds) if seeds else [seed]
    if generators is None:
        generators = {k: g for k, g in (("model", generate), ("model, no beat warp", generate_unsynced)) if g}
    clips, train_clips = scored_clips(train, val, clip_seconds, max_clips, every)
    if len(clips) < FEW_CLIPS:
        print(f"note: {len(clips)} validation clips: FID and diversity need many clips to mean anything (a few "
              f"from one song rank an untrained network above the real dancers); use {FEW_CLIPS} or more to "
              "compare models", flush=True)
    frames = len(clips[0].positions)
    reference = reference_features(train_clips)
    add_music_beats(clips)
    per_seed = seeded_rows(clips, generators, seeds, every_seed)
    results = score_seeded(per_seed, [c.music_beats for c in clips], reference, seeds)
    rows = {"real": [c.positions for c in clips], "random": random_stretches(train, frames, len(clips), seeds[0])}
    results.update(score_rows(rows, clips, reference))
    print(format_table(results))
    genre_results = {}
    if genre_set:
        songs = genre_clips(genre_set, clip_seconds, max_genre_songs)
        cut = lambda p: [p[s:s + frames] for s in range(0, len(p) - frames + 1, frames)]
        pieces = [Clip(name=f"{c.name}@{k * clip_seconds:.0f}s", style=c.style, positions=None,
                       audio_path=c.audio_path, start=k * clip_seconds, duration=clip_seconds)
                  for c in songs for k in range(int(round(c.duration / clip_seconds)))]
        add_music_beats(pieces)
        genre_rows = seeded_rows(songs, generators, seeds, every_seed, cut=cut)
        genre_results = score_seeded(genre_rows, [c.music_beats for c in pieces], reference, seeds)
        print(f"\nopen genre set: {len(songs)} songs, {len(pieces)} clips of {clip_seconds:g} s")
        print(format_table(genre_results))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        settings = dict(settings or {}, clip_seconds=clip_seconds, seeds=seeds,
                        num_clips=len(clips), num_train_clips=len(train_clips))
        write_json(out / "metrics.json", results, clips, settings, genre_results)
        first = {r: m[0] for r, m in rows.items()} | {r: runs[0][0] for r, runs in per_seed.items()}
        plot_beat_alignment(out / "beat_alignment.png", clips[0], first)
        plot_metrics(out / "metrics.png", results)
        print(f"wrote {out / 'metrics.json'}, {out / 'beat_alignment.png'}, {out / 'metrics.png'}")
    return results | {f"genres: {k}": v for k, v in genre_results.items()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", type=Path, default=None,
                   help="dataset folders, as for 'python -m engine train' (default: ../shared/data/tang2018 and "
                        "../shared/data/justlmd beside the repo); the validation split is engine.training.data's")
    p.add_argument("--weights", type=Path, default=None,
                   help=f"model weights (default: {DEFAULT_WEIGHTS.parent.name}/{DEFAULT_WEIGHTS.name} in the repo)")
    p.add_argument("--out", type=Path, default=Path("evaluation"),
                   help="folder for metrics.json and the plots (default: ./evaluation)")
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder (default: OUT/../.cache)")
    p.add_argument("--clip-seconds", type=float, default=10.0, help="length of each scored clip (default 10)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"the many-step model's sampler steps for the model row (default {DEFAULT_STEPS}; a "
                        "few-step student samples its own)")
    p.add_argument("--quality", default=DEFAULT_QUALITY, choices=QUALITIES,
                   help=f"fast: the few-step student (the weights, or the one beside them); best: the many-step "
                        f"model (default {DEFAULT_QUALITY})")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 100, 200],
                   help="seeds of the default (style any) model row, scored each and averaged; the other "
                        "model rows and the random row use the first (default 0 100 200)")
    p.add_argument("--no-genre-set", action="store_true",
                   help="skip the open genre set (pip package immich-memories-music; scored by default)")
    p.add_argument("--max-genre-songs", type=int, default=None, help="score at most this many genre-set songs")
    p.add_argument("--max-clips", type=int, default=None, help="score at most this many validation clips")
    p.add_argument("--force", action="store_true", help="replace an evaluation already in --out")
    p.add_argument("--every", type=int, default=1,
                   help="score every N-th validation clip only, for quick sweeps of settings (default 1: all)")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                   help=f"classifier-free guidance weight of the model rows (default {DEFAULT_GUIDANCE:g})")
    p.add_argument("--autoguidance", type=float, default=DEFAULT_AUTOGUIDANCE,
                   help=f"autoguidance weight of the model rows, when the weights have a guide network; "
                        f"1 = off (default {DEFAULT_AUTOGUIDANCE:g})")
    p.add_argument("--guidance-lowpass", type=float, default=GUIDANCE_LOWPASS_FRAMES,
                   help=f"sigma (frames) of the low-pass on the guidance's push; 0 = plain guidance "
                        f"(default {GUIDANCE_LOWPASS_FRAMES:g})")
    p.add_argument("--eta", type=float, default=SAMPLING_ETA,
                   help=f"how stochastic the model's DDIM steps are, 0-1 (default {SAMPLING_ETA:g})")
    p.add_argument("--solver", choices=SAMPLING_SOLVERS, default=SAMPLING_SOLVER,
                   help=f"how the model steps from noise to a dance (default {SAMPLING_SOLVER}; "
                        f"--eta above 0 needs ddim)")
    p.add_argument("--smoothing", type=float, default=None,
                   help=f"seconds of Gaussian smoothing of the model rows' output (default: the sampler's own, "
                        f"{SMOOTHING_SECONDS:g} for the many-step model, {STUDENT_SMOOTHING_SECONDS:g} for the student)")
    p.add_argument("--no-ablation", action="store_true",
                   help="skip the extra rows (true style; no beat warp): only the default model row")
    p.add_argument("--no-model", action="store_true",
                   help="score only the real and random rows (no weights needed): the targets")
    return p.parse_args(argv)


def _sampled_with(weights: Path, args) -> str:
    """Which network the model rows sample, for the record: quality "fast" with no student that
    serves these settings samples the many-step model (metrics.json said "fast" all the same)."""
    import warnings
    from ..sampler.checkpoint import read_metadata
    from ..sampler.fewstep import choose_weights
    record = json.loads(read_metadata(weights).get("student", "null"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the engine says so once more when it samples
        used = choose_weights(weights, record, args.quality, args.steps, args.guidance, args.autoguidance)
    return "few-step student" if "student" in read_metadata(used) else "many-step model"


def check_out_folder(out: Path, force: bool) -> None:
    """Before any scoring: --out is a folder that takes files and holds no evaluation already,
    unless --force (QA: an earlier evaluation's figures were replaced without a word, and a file
    as --out was a traceback after all the scoring)."""
    from ..options import check_output_folder
    if out.exists() and not out.is_dir():
        raise EngineError(f"--out {out} is a file: give a folder")
    if (out / "metrics.json").exists() and not force:
        raise EngineError(f"--out {out} already holds an evaluation (metrics.json): pass --force to replace it, "
                          "or give another folder")
    check_output_folder(out, f"--out {out}")


# The shortest clip scored: the metrics take speeds, accelerations and kinematic beats over it.
MIN_CLIP_SECONDS = 1.0


def check_arguments(args) -> None:
    """Every option checked before the data is read (QA: a NaN clip length was a traceback, and a
    bad seed or eta was said only once the clips were cut and generating had begun)."""
    from ..options import check_options
    if not (math.isfinite(args.clip_seconds) and args.clip_seconds >= MIN_CLIP_SECONDS):
        raise EngineError(f"--clip-seconds must be {MIN_CLIP_SECONDS:g} or more seconds, got {args.clip_seconds}")
    if args.every < 1:
        raise EngineError(f"--every must be 1 or more, got {args.every}")
    if args.max_clips is not None and args.max_clips < 1:
        raise EngineError(f"--max-clips must be 1 or more (leave it out for all clips), got {args.max_clips}")
    if args.max_genre_songs is not None and args.max_genre_songs < 1:
        raise EngineError(f"--max-genre-songs must be 1 or more (leave it out for all songs), got {args.max_genre_songs}")
    if args.smoothing is not None and not (math.isfinite(args.smoothing) and args.smoothing >= 0):
        raise EngineError(f"--smoothing must be 0 (off) or more seconds, got {args.smoothing}")
    for seed in args.seeds:
        check_options(seed=seed)
    check_options(steps=args.steps, guidance=args.guidance, autoguidance=args.autoguidance,
                  guidance_lowpass=args.guidance_lowpass, sampling_eta=args.eta, sampling_solver=args.solver)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_arguments(args)
        generators = {}
        weights = (args.weights or DEFAULT_WEIGHTS).resolve()
        if not args.no_model:
            if not weights.is_file():
                print(f"error: no model weights at {weights} (train one, pass --weights, or use --no-model)",
                      file=sys.stderr)
                return 2
            from ..api import FINISHING_STEPS
            options = dict(guidance=args.guidance, autoguidance=args.autoguidance, smoothing=args.smoothing,
                           draws={}, quality=args.quality, guidance_lowpass=args.guidance_lowpass,
                           sampling_eta=args.eta, sampling_solver=args.solver)
            generators[DEFAULT_ROW] = api_generator(weights, args.steps, **options)
            if not args.no_ablation:
                generators["model (true style)"] = api_generator(weights, args.steps, true_style=True, **options)
                generators["model, no beat warp"] = api_generator(weights, args.steps, beat_sync=False, **options)
                # The network alone, then each finishing step added in the order they run.
                for k in range(len(FINISHING_STEPS) - 1):
                    name = "network alone" if k == 0 else "network + " + " + ".join(FINISHING_STEPS[:k])
                    generators[name] = api_generator(weights, args.steps, finishing=FINISHING_STEPS[:k], **options)
        out = args.out.resolve()
        check_out_folder(out, args.force)
        from ..training.data import cache_beside, existing_sources
        sources = existing_sources(args.data)
        train, val = load_sequences(sources, (args.cache or cache_beside(out)).resolve())
        settings = {"data": [str(s) for s in sources], "steps": DEFAULT_STEPS if args.steps is None else args.steps,
                    "every": args.every,
                    "guidance": args.guidance, "autoguidance": args.autoguidance,
                    "smoothing": args.smoothing if args.smoothing is not None else
                    {"many-step": SMOOTHING_SECONDS, "few-step": STUDENT_SMOOTHING_SECONDS},
                    "guidance_lowpass": args.guidance_lowpass, "eta": args.eta, "solver": args.solver,
                    "quality": args.quality, "sampled_with": _sampled_with(weights, args) if generators else None,
                    "weights": str(weights) if generators else None}
        genre_set = None
        if generators and not args.no_genre_set:
            from .genre_set import genre_songs
            genre_set = genre_songs()
        evaluate(train, val, clip_seconds=args.clip_seconds, generators=generators, seeds=args.seeds,
                 max_clips=args.max_clips, every=args.every, out=out, settings=settings, every_seed=(DEFAULT_ROW,),
                 genre_set=genre_set, max_genre_songs=args.max_genre_songs)
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
