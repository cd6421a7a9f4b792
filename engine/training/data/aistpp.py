"""AIST++ (Li et al., ICCV 2021; CC BY 4.0): street dance, multi-view capture fitted to SMPL.

Motion files are pickles named like gBR_sBM_cAll_d04_mBR0_ch01.pkl: genre gBR, music mBR0.
Each holds smpl_poses (N,72) axis-angle, smpl_trans (N,3) and smpl_scaling (1,); the
translation divided by the scaling is metres, Y up. 60 fps, resampled (decimated) to MODEL_FPS.
The music of a file is <music id>.wav in the music folder, starting with the motion.
The capture is calibrated and does not drift, but its floor is not at y = 0 (the sample file's
feet stand at 0.88 m), so the feet are put on y = 0 with one constant shift; no per-frame floor
tracking, since break dance spends seconds on hands or head with both feet in the air.
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import numpy as np

from ...body.layout import MODEL_FPS
from ...errors import EngineError
from .sequence import DanceSequence, longest_finite_run, put_on_floor, resample

SOURCE_FPS = 60.0
GENRES = {
    "gBR": "break", "gPO": "pop", "gLO": "lock", "gMH": "middle_hip-hop", "gLH": "la_hip-hop",
    "gHO": "house", "gWA": "waack", "gKR": "krump", "gJS": "street_jazz", "gJB": "ballet_jazz",
}
_NAME = re.compile(r"^(g[A-Z]{2})_.*?_(m[A-Z]{2}\d+)(?:_|$)")
MUSIC_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg")


def parse_name(stem: str) -> tuple[str, str | None]:
    """gBR_sBM_cAll_d04_mBR0_ch01 -> ("break", "mBR0"); unknown patterns -> ("unknown", None)."""
    m = _NAME.match(stem)
    if not m:
        return "unknown", None
    return GENRES.get(m.group(1), m.group(1)), m.group(2)


def _ignored(motions_dir: Path) -> set[str]:
    """Sequences the AIST++ release lists as bad (ignore_list.txt beside or above the motions)."""
    for folder in (motions_dir, motions_dir.parent):
        f = folder / "ignore_list.txt"
        if f.exists():
            return {line.strip() for line in f.read_text().splitlines() if line.strip()}
    return set()


def _music_file(music_dir: Path | None, music_id: str | None) -> Path | None:
    if music_dir is None or music_id is None:
        return None
    for suffix in MUSIC_SUFFIXES:
        if (music_dir / (music_id + suffix)).exists():
            return music_dir / (music_id + suffix)
    return None


def load_motion_file(path, music_dir=None) -> DanceSequence | None:
    """One AIST++ motion pickle -> a DanceSequence at MODEL_FPS (None if it has no usable frames)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
        poses = np.asarray(data["smpl_poses"], np.float64).reshape(-1, 72)
        trans = np.asarray(data["smpl_trans"], np.float64).reshape(-1, 3)
        scaling = float(np.ravel(data.get("smpl_scaling", [1.0]))[0])
    except (OSError, KeyError, ValueError, TypeError, AttributeError, EOFError, pickle.UnpicklingError) as e:
        raise EngineError(f"cannot read AIST++ motion {path}: {e or type(e).__name__}") from None
    run = longest_finite_run(poses, trans)
    if run.stop - run.start < 2:
        warnings.warn(f"aistpp: {path.name} has no usable frames; skipped")
        return None
    offset = run.start / SOURCE_FPS
    poses, trans = resample(poses[run], trans[run] / scaling, SOURCE_FPS, MODEL_FPS)
    trans = put_on_floor(poses, trans, MODEL_FPS, track_drift=False)
    style, music_id = parse_name(path.stem)
    music = _music_file(Path(music_dir) if music_dir else None, music_id)
    if music is None:
        warnings.warn(f"aistpp: no music {music_id or '?'} for {path.name} in {music_dir}; kept without music")
    return DanceSequence(path.stem, style, poses, trans, MODEL_FPS,
                         str(music) if music else None, offset if music else 0.0)


def load_aistpp(motions_dir, music_dir=None) -> list[DanceSequence]:
    """Every motion pickle in `motions_dir` (minus the release's ignore list), at MODEL_FPS."""
    motions_dir = Path(motions_dir)
    files = sorted(motions_dir.glob("*.pkl"))
    if not files:
        raise EngineError(f"no AIST++ motion files (*.pkl) in {motions_dir}")
    skip = _ignored(motions_dir)
    out = []
    for f in files:
        if f.stem in skip:
            continue
        seq = load_motion_file(f, music_dir)
        if seq is not None:
            out.append(seq)
    return out
