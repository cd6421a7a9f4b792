"""The "Dance with Melody" ballroom set (Tang, Jia, Mao, ACM MM 2018) as fitted to SMPL.

Each DANCE_<S>_<n>.pkl (joblib dict: pose (N,72) axis-angle, cam (N,3) root position in metres,
Y up, 25 fps) pairs with DANCE_<S>_<n>.mp3, which starts with the dance. manifest.json gives the
style and seg_over_N of each. The measured defects and what this loader does about them:

- DANCE_T_5: 109 s of audio for 234 s of motion: the pair is dropped.
- DANCE_R_1: its last 606 frames are NaN: the longest NaN-free run is kept (frames 0-2768,
  which start with the audio, so the pairing is untouched). In general a run that does not
  start at frame 0 keeps its place in the song through audio_offset.
- Rumba (seg_over_N 1.25-1.78) and waltz (~1.06) motion is time-compressed against its
  music: it is stretched in time by seg_over_N before pairing. The audio files are only as
  long as the compressed motion, so the stretched motion outlasts its audio; the part with
  music becomes one sequence, and a remainder of at least MIN_UNPAIRED_S becomes a second,
  music-less sequence "<name>_tail" (still real dancing of that style, useful for the
  unconditional part of training). Shorter remainders are dropped.
- Tangos whose motion outlasts the audio by 1-7 s are trimmed to the audio.
- Waltz was captured at ~6 fps and upsampled 4x: its root velocity is piecewise constant and
  its joint accelerations spike every 4th frame. A Gaussian of WALTZ_SIGMA_FRAMES source frames
  on quaternions and root removes the spikes (measured: per-phase angular acceleration
  0.0083/0.0083/0.0089/0.0216 -> 0.0034/0.0032/0.0033/0.0035 rad/frame^2 on DANCE_W_1) while
  moving joints by 0.01 rad on average.
- The root height drifts by up to 0.6 m over a dance (the legs keep their length), so the
  floor is tracked per frame and the feet put on y = 0 (sequence.put_on_floor).
- DANCE_T_1 and DANCE_T_9 are different dances to the same song: splits keep them together
  (SAME_SONG).
Angles are wrapped and everything is resampled from 25 fps to MODEL_FPS with slerp.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np

from ...body.layout import MODEL_FPS
from ...errors import EngineError
from .sequence import DanceSequence, longest_finite_run, put_on_floor, resample, smooth

SOURCE_FPS = 25.0
DROPPED = {"DANCE_T_5": "audio 109 s for 234 s of motion"}
SAME_SONG = (("DANCE_T_1", "DANCE_T_9"),)
STRETCHED_STYLES = ("rumba", "waltz")     # seg_over_N applies to these (chacha/tango are ~1 anyway)
WALTZ_SIGMA_FRAMES = 2.0                   # source frames; half the 4-frame keyframe spacing
MIN_UNPAIRED_S = 10.0                      # shorter music-less remainders are dropped
SONG_SHORT_WARNING_S = 10.0                # a dance outlasting its song by more is said (a wrong or cut song)
STYLE_LETTERS = {"C": "chacha", "R": "rumba", "T": "tango", "W": "waltz"}
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg")
TAIL_SUFFIX = "_tail"


def base_name(name: str) -> str:
    """The recording a (possibly split) sequence name comes from: DANCE_R_1_tail -> DANCE_R_1."""
    return name[: -len(TAIL_SUFFIX)] if name.endswith(TAIL_SUFFIX) else name


def _manifest(root: Path) -> dict[str, dict]:
    path = root / "manifest.json"
    if not path.exists():
        return {}
    return {m["name"]: m for m in json.loads(path.read_text())}


def _audio_file(root: Path, name: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        if (root / (name + suffix)).exists():
            return root / (name + suffix)
    return None


def _audio_seconds(path: Path, entry: dict) -> float:
    import soundfile as sf
    try:
        return float(sf.info(str(path)).duration)
    except Exception:
        if "audio_s" in entry:
            return float(entry["audio_s"])
        raise EngineError(f"cannot read the length of {path}") from None


def load_tang2018(root, keep_unpaired: bool = True) -> list[DanceSequence]:
    """All usable sequences of a tang2018-style folder, cleaned, at MODEL_FPS (see module doc)."""
    import joblib
    root = Path(root)
    pkls = sorted(root.glob("DANCE_*.pkl"))
    if not pkls:
        raise EngineError(f"no DANCE_*.pkl files in {root}")
    manifest = _manifest(root)
    out: list[DanceSequence] = []
    outlasting: list[str] = []
    for pkl in pkls:
        name = pkl.stem
        if name in DROPPED:
            continue
        entry = manifest.get(name, {})
        match = re.match(r"DANCE_([A-Z])_", name)
        style = entry.get("style") or STYLE_LETTERS.get(match.group(1) if match else "", "unknown")
        try:
            data = joblib.load(pkl)
        except Exception as e:      # joblib raises whatever the damaged bytes make of it
            raise EngineError(f"cannot read tang2018 motion {pkl}: {str(e).splitlines()[0][:120] or type(e).__name__}") \
                from None
        poses, trans = np.asarray(data["pose"], np.float64), np.asarray(data["cam"], np.float64)
        run = longest_finite_run(poses, trans)
        if run.stop - run.start < 2:
            warnings.warn(f"tang2018: {name} has no usable frames; skipped")
            continue
        poses, trans = poses[run], trans[run]
        if style == "waltz":
            poses, trans = smooth(poses, trans, WALTZ_SIGMA_FRAMES)
        scale = float(entry.get("seg_over_N", 1.0)) if style in STRETCHED_STYLES else 1.0
        poses, trans = resample(poses, trans, SOURCE_FPS, MODEL_FPS, time_scale=scale)
        trans = put_on_floor(poses, trans, MODEL_FPS, track_drift=True)
        offset = run.start / SOURCE_FPS * scale          # where frame 0 now sits in the song

        audio = _audio_file(root, name)
        if audio is None:
            warnings.warn(f"tang2018: no audio for {name}; kept without music")
            out.append(DanceSequence(name, style, poses, trans, MODEL_FPS, None, 0.0, scale))
            continue
        paired = min(len(poses), int(np.floor((_audio_seconds(audio, entry) - offset) * MODEL_FPS + 1e-6)))
        if paired >= 2:
            out.append(DanceSequence(name, style, poses[:paired], trans[:paired], MODEL_FPS,
                                     str(audio), offset, scale))
        else:
            paired = 0
        if len(poses) - paired > SONG_SHORT_WARNING_S * MODEL_FPS:   # a wrong or cut song (QA: 14 s for 176 s)
            outlasting.append(f"{name} {paired / MODEL_FPS:.0f} of {len(poses) / MODEL_FPS:.0f} s")
        if keep_unpaired and len(poses) - paired >= MIN_UNPAIRED_S * MODEL_FPS:
            out.append(DanceSequence(name + TAIL_SUFFIX, style, poses[paired:], trans[paired:],
                                     MODEL_FPS, None, 0.0, scale))
    if outlasting:     # said once: the shipped set's rumbas outlast their songs (the data's own defect)
        many = len(outlasting) > 1
        warnings.warn(f"tang2018: {len(outlasting)} {'dances outlast their songs' if many else 'dance outlasts its song'} "
                      f"by over {SONG_SHORT_WARNING_S:g} s, "
                      f"the rest trains without music (song of dance: {', '.join(outlasting)})")
    return out
