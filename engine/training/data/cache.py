"""Training corpus: every source's sequences packed into model channels plus music features,
cached as one .npz per source so that later runs start in seconds.

The cache key hashes the source's file names, sizes and modification times with CACHE_VERSION;
bump CACHE_VERSION whenever the cleaning or the feature code changes what would be stored.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ...body import layout as L
from ...errors import EngineError
from .sequence import DanceSequence
from .tang2018 import SAME_SONG, base_name

CACHE_VERSION = 4                  # 3: beats follow a drifting tempo; 4: the tempo checked against the metre
# Sources retargeted from BVH (cmu_salsa, bvh) are cached under this too: bumped when the
# retargeting changes what they read as (2: knees and elbows twisted onto SMPL's hinges, QA27;
# 3: knees only, QA29), without making every other source's cache, or a packed file, stale.
RETARGET_VERSION = 3
BVH_KINDS = ("cmu_salsa", "bvh")   # the sources read from BVH files


@dataclass
class CorpusItem:
    """One training sequence: packed motion (T, NUM_CHANNELS) and music (T, 35) or None."""
    name: str
    style: str
    motion: np.ndarray
    music: np.ndarray | None
    audio_path: str | None = None
    audio_offset: float = 0.0
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])


@dataclass
class Corpus:
    items: list[CorpusItem]

    @property
    def styles(self) -> list[str]:
        return sorted({it.style for it in self.items})

    @property
    def minutes(self) -> float:
        return sum(it.num_frames for it in self.items) / L.MODEL_FPS / 60

    def split(self, val_names: Iterable[str]) -> tuple[list[CorpusItem], list[CorpusItem]]:
        """(train, validation) items. A held-out recording takes its "_tail" part and every
        recording danced to the same song (tang2018.SAME_SONG) with it."""
        held = set(val_names)
        for group in SAME_SONG:
            if held & set(group):
                held |= set(group)
        val = [it for it in self.items if base_name(it.name) in held]
        train = [it for it in self.items if base_name(it.name) not in held]
        return train, val


# The repository this engine runs from (its tools are not in the extension), and the project's
# shared training data beside it (never inside it).
REPOSITORY = Path(__file__).resolve().parents[3]
SHARED_DATA = REPOSITORY.parent / "shared" / "data"
# The preprocessing cache of the tools that write no folder of their own (evaluate-inbetween,
# probe): one, so the first of them builds it for the others.
REPOSITORY_CACHE = REPOSITORY / ".cache"
DEFAULT_SOURCES = (SHARED_DATA / "tang2018", SHARED_DATA / "justlmd")


def existing_sources(given=None) -> list[Path]:
    """The data folders `given` (default: DEFAULT_SOURCES), resolved; one that is not there is an
    EngineError naming it."""
    sources = [Path(s).resolve() for s in (given or DEFAULT_SOURCES)]
    for s in sources:
        if not s.exists():
            raise EngineError(f"data folder not found: {s}")
    return sources


def cache_beside(out: Path) -> Path:
    """The preprocessing cache of a tool writing to `out`: `.cache` beside it, never inside (the
    folder `engine data` packs into travels to a lent GPU, and a cache there tripled the upload),
    so train, distill, evaluate and data share one."""
    return (Path(out).parent / ".cache").resolve()


def default_validation_names() -> list[str]:
    """A fixed held-out split of tang2018: one dance of typical length per style (~7 min in all).

    Paired lengths, the style's median in brackets: chacha C_6 74 s (74), rumba R_3 72 s (80),
    tango T_6 216 s (216), waltz W_28 50 s (50). T_1/T_9 (one song) stay together in training.
    """
    return ["DANCE_C_6", "DANCE_R_3", "DANCE_T_6", "DANCE_W_28"]


# ----------------------------------------------------------------------------- sources

def detect_kind(source: Path) -> str:
    """"tang2018", "justlmd", "aistpp", "cmu_salsa" or "bvh" (any other BVH files) from what a folder holds; "packed" for a file written
    by export_source (a source already packed, for a machine that lacks the raw data)."""
    if source.is_file() and source.suffix == ".npz":
        return "packed"
    if not source.is_dir():
        raise EngineError(f"data source is not a folder: {source}")
    if (source / "manifest.json").exists() or any(source.glob("DANCE_*.pkl")):
        return "tang2018"
    if (source / "smplfull.json").exists() or any(source.glob("*/smplfull.json")):
        return "justlmd"
    if any(source.glob("*.pkl")):
        return "aistpp"
    bvh = list(source.glob("*.bvh"))
    if bvh:      # any-skeleton BVH, retargeted to SMPL; CMU salsa's with its header's wrong rate mended
        from .cmu_salsa import is_salsa_file
        return "cmu_salsa" if all(is_salsa_file(f) for f in bvh) else "bvh"
    if any(source.glob("motions/*.pkl")):     # the AIST++ download's own layout
        music = next((f for f in ("wav", "music", "audio") if (source / f).is_dir()), "wav")
        raise EngineError(f"{source} holds AIST++ as it ships: pass its motions folder, --data {source / 'motions'} "
                          f"--aist-music {source / music}")
    raise EngineError(f"cannot tell what dataset {source} is: expected tang2018 (manifest.json, "
                      "DANCE_*.pkl), JustLMD (*/smplfull.json), AIST++ (*.pkl motion files) or BVH files (*.bvh)")


def _source_files(kind: str, source: Path, aist_music: Path | None) -> list[Path]:
    if kind == "tang2018":
        files = [p for p in source.iterdir() if p.name.startswith("DANCE_") or p.name == "manifest.json"]
    elif kind == "justlmd":
        files = list(source.glob("smplfull.json")) + list(source.glob("*/smplfull.json"))
    elif kind in BVH_KINDS:
        files = list(source.glob("*.bvh"))
    else:
        files = list(source.glob("*.pkl")) + list(source.glob("ignore_list.txt")) + list(source.parent.glob("ignore_list.txt"))
        if aist_music is not None and aist_music.is_dir():
            files += [p for p in aist_music.iterdir() if p.is_file()]
    return sorted(f for f in files if f.is_file())


def cache_key(kind: str, source: Path, aist_music: Path | None = None) -> str:
    """Hash of CACHE_VERSION (and RETARGET_VERSION for BVH sources), the kind and every source
    file's name, size and mtime."""
    retargeted = f"|retarget{RETARGET_VERSION}" if kind in BVH_KINDS else ""
    h = hashlib.sha1(f"v{CACHE_VERSION}|{kind}|{aist_music or ''}{retargeted}".encode())
    for f in _source_files(kind, source, aist_music):
        st = f.stat()
        # The music folder may lie anywhere (not beside the motions): named from its own root.
        name = f.relative_to(source.parent) if f.is_relative_to(source.parent) else f.relative_to(aist_music)
        h.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_sequences(kind: str, source: Path, aist_music: Path | None = None) -> list[DanceSequence]:
    if kind == "tang2018":
        from .tang2018 import load_tang2018
        return load_tang2018(source)
    if kind == "justlmd":
        from .justlmd import load_justlmd
        return load_justlmd(source)
    if kind == "cmu_salsa":
        from .cmu_salsa import load_cmu_salsa
        return load_cmu_salsa(source)
    if kind == "bvh":
        from .bvh_folder import load_bvh_folder
        return load_bvh_folder(source)
    from .aistpp import load_aistpp
    return load_aistpp(source, aist_music)


# ----------------------------------------------------------------------------- features

def pack_sequence(seq: DanceSequence) -> np.ndarray:
    """(T, NUM_CHANNELS) float32 model channels of a sequence."""
    x = L.pack(torch.as_tensor(seq.poses, dtype=torch.float64), torch.as_tensor(seq.trans, dtype=torch.float64))
    return x.float().numpy()


def music_for(audio_path: str, offset: float, num_frames: int) -> np.ndarray:
    """(num_frames, 35) features of the song from `offset` seconds, one row per motion frame.

    The audio is used as-is (a stretched motion was stretched to fit it). When the song ends a
    frame early (rounding), the last row is repeated with its event flags cleared.
    """
    from ...music.audio import FEATURE_CHANNELS, load_audio, music_features
    wave, sr = load_audio(audio_path, start=offset, duration=num_frames / L.MODEL_FPS)
    feats = music_features(wave, sr, fps=L.MODEL_FPS)[:num_frames]
    if len(feats) < num_frames:
        have = len(feats)
        feats = np.concatenate([feats, np.repeat(feats[-1:], num_frames - have, axis=0)])
        for name in ("onset_peak", "beat"):
            if name in FEATURE_CHANNELS:
                feats[have:, FEATURE_CHANNELS[name]] = 0.0
    return feats.astype(np.float32)


def _music_all(jobs: list[tuple[str, float, int]], workers: int) -> list[np.ndarray]:
    if workers > 1 and len(jobs) > 1:
        from joblib import Parallel, delayed
        # Longest first, so the last job to finish is short.
        order = sorted(range(len(jobs)), key=lambda i: -jobs[i][2])
        done = Parallel(n_jobs=workers)(delayed(music_for)(*jobs[i]) for i in order)
        out: list = [None] * len(jobs)
        for i, f in zip(order, done):
            out[i] = f
        return out
    return [music_for(*job) for job in jobs]


# ----------------------------------------------------------------------------- cache

def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "data"


def _save(path: Path, items: list[CorpusItem], kind: str, key: str, compact: bool = False) -> None:
    """The cache's file (float32 arrays), or with `compact` a portable packed file (engine.training.data.packed)."""
    from . import packed
    lengths = np.array([it.num_frames for it in items], np.int64)
    with_music = [it for it in items if it.music is not None]
    motion = np.concatenate([it.motion for it in items]).astype(np.float32)
    music = np.concatenate([it.music for it in with_music]) if with_music else np.zeros((0, 1), np.float32)
    arrays = ({"format": np.array(packed.FORMAT), **packed.encode_motion(motion), **packed.encode_music(music)}
              if compact else {"motion": motion, "music": music.astype(np.float32)})
    # A unique name that the stale-file sweep (prefix*.npz) cannot match: two builds of the same
    # cache at once (torchrun ranks, two runs) must not replace or delete each other's file.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.npz")
    try:
        np.savez(tmp, version=np.int64(CACHE_VERSION), kind=np.array(kind), key=np.array(key),
                 names=np.array([it.name for it in items]), styles=np.array([it.style for it in items]),
                 lengths=lengths, has_music=np.array([it.music is not None for it in items]),
                 audio_paths=np.array([it.audio_path or "" for it in items]),
                 audio_offsets=np.array([it.audio_offset for it in items], np.float64), **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load(path: Path, source: str) -> list[CorpusItem] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            if int(f["version"]) != CACHE_VERSION:
                return None
            if "format" in f.files:          # a portable packed file
                from . import packed
                if str(f["format"]) != packed.FORMAT:
                    return None
                motion, music = packed.decode_motion(f), packed.decode_music(f)
            else:                            # the cache's, or a packed file of before (float16)
                motion, music = np.asarray(f["motion"], np.float32), np.asarray(f["music"], np.float32)
            items, at, mat = [], 0, 0
            for name, style, n, has, audio, offset in zip(f["names"], f["styles"], f["lengths"], f["has_music"],
                                                          f["audio_paths"], f["audio_offsets"]):
                m = None
                if has:
                    m, mat = music[mat:mat + n], mat + n
                items.append(CorpusItem(str(name), str(style), motion[at:at + n], m,
                                        str(audio) or None, float(offset), source))
                at += n
            return items
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):     # not an .npz of ours (or a damaged one)
        return None


def load_source(source, cache_dir, aist_music=None, workers: int | None = None,
                log: Callable[[str], None] | None = print) -> list[CorpusItem]:
    """One source's items, from its cache file when the key matches, else built and cached."""
    source = Path(source).resolve()
    aist_music = Path(aist_music).resolve() if aist_music else None
    kind = detect_kind(source)
    if kind == "packed":
        items = _load(source, str(source))
        if items is None:
            raise EngineError(f"{source} is not a packed source of this version (CACHE_VERSION {CACHE_VERSION})")
        return items
    key = cache_key(kind, source, aist_music if kind == "aistpp" else None)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The folder's own place in the prefix: the stale-file sweep below evicted the cache of another
    # folder of the same name (two AIST++ `motions` folders rebuilt each other's every time).
    prefix = f"{kind}-{_slug(source.name)}-{hashlib.sha1(str(source).encode()).hexdigest()[:8]}-"
    path = cache_dir / f"{prefix}{key}.npz"
    if path.exists():
        items = _load(path, str(source))
        if items is not None:
            return items
    t0 = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # thousands of small tensor ops: extra threads only add overhead
    try:
        seqs = load_sequences(kind, source, aist_music if kind == "aistpp" else None)
        if not seqs:
            raise EngineError(f"no usable sequences in {source}")
        motions = [pack_sequence(s) for s in seqs]
    finally:
        torch.set_num_threads(threads)
    t1 = time.time()
    jobs = [(s.audio_path, s.audio_offset, s.num_frames) for s in seqs if s.audio_path]
    workers = workers or min(2, os.cpu_count() or 1)
    if log and jobs:
        log(f"data: {source.name}: {len(seqs)} sequences cleaned in {t1 - t0:.1f}s; "
            f"music features for {len(jobs)} songs on {workers} worker(s)...")
    feats = iter(_music_all(jobs, workers))
    items = [CorpusItem(s.name, s.style, m, next(feats) if s.audio_path else None, s.audio_path,
                        s.audio_offset, str(source)) for s, m in zip(seqs, motions)]
    _save(path, items, kind, key)
    for stale in cache_dir.glob(f"{prefix}*.npz"):
        if stale != path:
            stale.unlink(missing_ok=True)
    if log:
        log(f"data: {source.name}: cached {sum(len(m) for m in motions) / L.MODEL_FPS / 60:.1f} min "
            f"in {time.time() - t0:.0f}s -> {path}")
    return items


def export_source(source, out_path, cache_dir, aist_music=None) -> Path:
    """Write one source's packed items to a single .npz that `--data` accepts in place of the
    raw folder: training on a machine without the raw data or librosa, in the compact form of
    engine.training.data.packed (small enough to travel to a lent GPU)."""
    source = Path(source).resolve()
    items = load_source(source, cache_dir, aist_music)
    kind = detect_kind(source)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    key = "packed" if kind == "packed" else cache_key(kind, source, aist_music if kind == "aistpp" else None)
    _save(out_path, items, kind, key, compact=True)
    return out_path


def load_corpus(sources, cache_dir, aist_music=None, workers: int | None = None,
                log: Callable[[str], None] | None = print) -> Corpus:
    """All sources (tang2018, JustLMD or AIST++ folders; kind detected) as one Corpus.

    aist_music: the folder of AIST++ songs (<music id>.wav) for AIST++ sources.
    workers: processes for the music features (default min(2, cores)).
    """
    items: list[CorpusItem] = []
    for s in sources:
        items += load_source(s, cache_dir, aist_music, workers, log)
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise EngineError(f"the same sequence name appears in two sources: {', '.join(dup[:5])}")
    return Corpus(items)
