"""Weights screened by their finished dances where neither the data nor the songs can go.

`python -m engine screen pack --out packed/screen.npz` (here, with the data and librosa) packs what
engine.evaluation.evaluate's default row needs: every validation clip's analysed music
(engine.music.audio.DanceMusic), its music beats and its real dance, the open genre set's songs
analysed the same way (every other one by default), the training clips' reference features and
the real dancers' figures. About 3.4 MB, no audio.

`python -m engine screen score --pack packed/screen.npz --weights A.safetensors [B ...] [--seeds 0]
[--device cuda] [--out screen.json]` then scores each file's default dance (style "any", the
shipped settings, every finishing step) on those clips with engine.evaluation.metrics: the same
figures as `python -m engine evaluate --no-ablation` for the same seeds (on the same device), in
a minute or two on a GPU. A lent GPU (engine.training.gpu_session) so chooses among its runs by
the finished dance, which the denoising loss does not predict (weights/TRAINING.md, "The first
GPU session").
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..body import layout as L
from ..defaults import DEFAULT_STEPS
from ..errors import EngineError
from ..options import check_output_folder
from . import metrics as M
from .evaluate import Clip, genre_clips, positions_of, reference_features, scored_clips

PACK_VERSION = 1
SETS = ("validation", "genres")
# Every other genre song: 14 songs of both genres, 3.4 MB in all, so that the pack, the packed
# training data (engine.training.gpu_session.PACKED_DATA_BYTES) and the repository fit one
# upload to a lent GPU. The validation clips are all packed: their figures are evaluate's own.
GENRE_EVERY = 2


# ----------------------------------------------------------------------------- packing

def _song_arrays(prefix: str, music, name: str, start: float, duration: float) -> dict[str, np.ndarray]:
    silences = np.asarray(music.silences, np.int64).reshape(-1, 2)
    return {f"{prefix}/features": music.features.astype(np.float32), f"{prefix}/beats": np.asarray(music.beats),
            f"{prefix}/silences": silences,
            f"{prefix}/numbers": np.array([music.seconds, music.frames, music.loudest_db, start, duration]),
            f"{prefix}/name": np.array(name)}


def pack_arrays(val_clips: Sequence[Clip], genre_songs: Sequence[Clip], frames: int,
                reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The pack's arrays: per song of each set its analysed music, file name and slice, and the
    music beats of its scored pieces (one per validation clip, whole `frames` pieces of a genre
    song); the validation clips' real dances; the reference features."""
    from ..music.audio import detect_beats, load_audio, music_for_dance
    out = {"version": np.array(PACK_VERSION), "frames": np.array(frames), **reference}
    for set_name, songs in (("validation", val_clips), ("genres", genre_songs)):
        out[f"{set_name}/count"] = np.array(len(songs))
        for i, clip in enumerate(songs):
            prefix = f"{set_name}/{i}"
            music = music_for_dance(clip.audio_path, start=clip.start, duration=clip.duration)
            out.update(_song_arrays(prefix, music, Path(clip.audio_path).name, clip.start, clip.duration))
            pieces = max(1, int(round(clip.duration * L.MODEL_FPS / frames)))
            for k in range(pieces):
                start = clip.start + k * frames / L.MODEL_FPS
                wave, sr = load_audio(clip.audio_path, start=start, duration=frames / L.MODEL_FPS)
                out[f"{prefix}/piece_beats/{k}"] = np.asarray(detect_beats(wave, sr)[0], np.float64)
            out[f"{prefix}/pieces"] = np.array(pieces)
    real = [(c.positions, float(L.MODEL_FPS), out[f"validation/{i}/piece_beats/0"]) for i, c in enumerate(val_clips)]
    scores = M.summarize(real, **reference)                # the real dancers' row: its figures travel, not the dances
    out["validation/real/keys"] = np.array(list(scores))
    out["validation/real/values"] = np.array([scores[k] for k in scores], np.float64)
    return out


def write_pack(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Written beside its name, then renamed: never half a pack under the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as f:
        np.savez_compressed(f, **arrays)
    partial.replace(path)


def read_pack(path: Path) -> dict[str, np.ndarray]:
    """The pack's arrays (never unpickled)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise EngineError(f"not a screen pack ({e}): {path}") from None
    if arrays.get("version") is None or int(arrays["version"]) != PACK_VERSION:
        raise EngineError(f"not a screen pack of version {PACK_VERSION} (make it again with "
                          f"`python -m engine screen pack`): {path}")
    return arrays


# ----------------------------------------------------------------------------- scoring

def _song(arrays: dict, prefix: str, folder: Path):
    """(audio path, start, duration, DanceMusic) of one packed song. The path is the song's file
    name in the pack's folder: no audio is read (the music is packed), but the name picks style
    "any"'s drawn style as it did for the file (engine.api.dance_style)."""
    from ..music.audio import DanceMusic, music_source
    seconds, frames, loudest_db, start, duration = arrays[f"{prefix}/numbers"].tolist()
    path = folder / str(arrays[f"{prefix}/name"])
    music = DanceMusic(seconds=seconds, frames=int(frames), features=arrays[f"{prefix}/features"],
                       beats=arrays[f"{prefix}/beats"], source=music_source(path, start, duration),
                       silences=[tuple(int(v) for v in s) for s in arrays[f"{prefix}/silences"]],
                       loudest_db=loudest_db)
    return path, start, duration, music


def set_dances(arrays: dict, set_name: str, folder: Path, weights: Path, seed: int, device: str,
               steps: int | None = None) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """The default dance of every song of a set, cut into its scored pieces: metrics.summarize's
    items. Song i gets seed + i, as in engine.evaluation.evaluate. A few-step student samples its
    own steps (asked for the default quality, the API would dance its teacher beside it: QA, a
    student scored to the digit as its teacher); `steps` asks for the many-step model's."""
    from .. import api
    from ..sampler.checkpoint import read_metadata
    quality = "fast" if steps is None and "student" in read_metadata(weights) else "best"
    frames = int(arrays["frames"])
    items = []
    for i in range(int(arrays[f"{set_name}/count"])):
        prefix = f"{set_name}/{i}"
        path, start, duration, music = _song(arrays, prefix, folder)
        d = api.draw(path, seed=seed + i, steps=steps, fps=float(L.MODEL_FPS), start=start, duration=duration,
                     weights=weights, device=device, analysed_music=music, quality=quality)
        motion = api.finish_draw(d)
        positions = M.resample_positions(positions_of(motion), motion.fps)
        for k in range(int(arrays[f"{prefix}/pieces"])):
            piece = positions[k * frames:(k + 1) * frames]
            if len(piece) == frames:
                items.append((piece, float(L.MODEL_FPS), arrays[f"{prefix}/piece_beats/{k}"]))
    return items


def score(arrays: dict, folder: Path, weights: Path, seeds: Sequence[int], device: str = "auto",
          steps: int | None = None) -> dict[str, dict[str, float]]:
    """{set: {metric: mean over seeds}} of the weights' default dances, and each set's
    "<set>, spread" (max - min over the seeds) when there are several."""
    import warnings
    reference = {"real_features": arrays["real_features"], "real_geometric": arrays["real_geometric"]}
    out = {}
    for set_name in SETS:
        if int(arrays[f"{set_name}/count"]) == 0:
            continue
        runs = []
        for seed in seeds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")             # the notes a user would see, per clip
                items = set_dances(arrays, set_name, folder, weights, seed, device, steps)
            runs.append(M.summarize(items, **reference))
        keys = [k for k in runs[0] if k != "num_clips"]
        out[set_name] = {k: float(np.mean([r[k] for r in runs])) for k in keys}
        out[set_name]["num_clips"] = runs[0]["num_clips"]
        if len(runs) > 1:
            out[f"{set_name}, spread"] = {k: float(np.ptp([r[k] for r in runs])) for k in keys}
    return out


def real_scores(arrays: dict) -> dict[str, float]:
    """The validation clips' real dancers, scored the same way when packed: the targets beside each row."""
    return {str(k): float(v) for k, v in zip(arrays["validation/real/keys"], arrays["validation/real/values"])}


# ----------------------------------------------------------------------------- command line

_SHOWN = (("bas_bailando", "BAS"), ("pfc", "PFC"), ("foot_skating", "skating"), ("jerk", "jerk"),
          ("speed", "speed"), ("fid_k", "FID_k"), ("div_k", "Div_k"), ("fid_g", "FID_g"))


def _line(label: str, row: dict) -> str:
    return f"{label:<44}" + " ".join(f"{row.get(k, float('nan')):>8.3f}" for k, _ in _SHOWN)


def _pack_command(args) -> int:
    from ..training.data import cache_beside, existing_sources
    from .evaluate import load_sequences
    from .genre_set import genre_songs
    out = args.out.resolve()
    _check_out(out, args.force)
    # The cache beside the folder the pack is in: that folder travels to a lent GPU.
    train, val = load_sequences(existing_sources(args.data), (args.cache or cache_beside(out.parent)).resolve())
    clips, train_clips = scored_clips(train, val, args.clip_seconds)
    frames = len(clips[0].positions)
    songs = [] if args.genre_every == 0 else genre_clips(genre_songs()[::args.genre_every], args.clip_seconds)
    write_pack(out, pack_arrays(clips, songs, frames, reference_features(train_clips)))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {len(clips)} validation clips, {len(songs)} genre songs, "
          f"{len(train_clips)} reference clips of {args.clip_seconds:g} s")
    return 0


def _check_out(out: Path, force: bool) -> None:
    """One line now, for an --out the work could not be written to after it (QA: after it)."""
    if out.is_dir():
        raise EngineError(f"--out {out} is a folder: give a file name")
    if out.exists() and not force:
        raise EngineError(f"--out {out} exists: pass --force to overwrite it")
    check_output_folder(out.parent, "--out")


def _score_command(args) -> int:
    pack = args.pack.resolve()
    arrays = read_pack(pack)
    for w in args.weights:
        if not w.is_file():
            raise EngineError(f"no weights at {w}")
    if args.out:
        _check_out(args.out.resolve(), force=True)         # the figures are rewritten as they come
    # Two files of one name (the shipped teacher and a new one): each row says which.
    names = [w.name for w in args.weights]
    label = {w: w.name if names.count(w.name) == 1 else f"{w.parent.name}/{w.name}" for w in args.weights}
    results = {"seeds": args.seeds, "device": args.device, "steps": args.steps, "real": real_scores(arrays),
               "weights": {}}
    print(f"{'':<44}" + " ".join(f"{h:>8}" for _, h in _SHOWN))
    print(_line("real dancers (validation)", results["real"]))
    for w in args.weights:
        t0 = time.perf_counter()
        rows = score(arrays, pack.parent, w.resolve(), args.seeds, args.device, args.steps)
        rows["seconds"] = time.perf_counter() - t0
        results["weights"][str(w)] = rows
        for set_name, row in rows.items():
            if isinstance(row, dict):
                print(_line(f"{label[w]}: {set_name}", row))
        if args.out:                                         # after each file: a run cut short keeps what it has
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))
    return 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m engine screen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="pack the validation clips' and genre songs' analysed music (needs the data)")
    pk.add_argument("--out", type=Path, required=True, help="the pack file to write (.npz)")
    pk.add_argument("--force", action="store_true", help="replace --out if it exists")
    pk.add_argument("--data", nargs="+", type=Path, default=None,
                    help="dataset folders, as for 'python -m engine evaluate' (default: the repo's neighbours)")
    pk.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder (default: beside the folder of OUT)")
    pk.add_argument("--clip-seconds", type=float, default=10.0, help="length of each scored clip (default 10)")
    pk.add_argument("--genre-every", type=int, default=GENRE_EVERY,
                    help=f"pack every N-th song of the open genre set, 0 for none (default {GENRE_EVERY}: the pack "
                         f"then fits a lent GPU's upload beside the training data; with 1 the genre figures are "
                         f"evaluate's own)")
    sc = sub.add_parser("score", help="score weights on a pack")
    sc.add_argument("--pack", type=Path, required=True, help="a pack from `python -m engine screen pack`")
    sc.add_argument("--weights", type=Path, nargs="+", required=True, help="weights to score, each in turn")
    sc.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds, averaged (default 0)")
    sc.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    sc.add_argument("--steps", type=int, default=None,
                    help=f"the many-step model's sampler steps (default {DEFAULT_STEPS}; a few-step student "
                         "samples its own)")
    sc.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "pack":
            if args.clip_seconds <= 0:
                raise EngineError(f"--clip-seconds must be positive, got {args.clip_seconds}")
            if args.genre_every < 0:
                raise EngineError(f"--genre-every must be 0 or more, got {args.genre_every}")
            return _pack_command(args)
        return _score_command(args)
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
