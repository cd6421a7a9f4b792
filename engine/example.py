"""The project's own example music, synthesised: no third-party recording is shipped.

make_example_song writes a short loop (kick on the beats, snare on 2 and 4, hi-hat off-beats, a bass line and a
I-vi-IV-V chord progression) that is deterministic, so demos and tests hear the same song.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import EngineError

_PROGRESSION = ((48, 52, 55), (45, 48, 52), (41, 45, 48), (43, 47, 50))  # C, Am, F, G (MIDI)


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def _beats(seconds: float, bpm: float, offset: float = 0.0) -> np.ndarray:
    period = 60.0 / bpm
    return np.arange(offset, seconds, period)


def _place(out: np.ndarray, sound: np.ndarray, at: float, sr: int) -> None:
    i = int(round(at * sr))
    n = min(len(sound), len(out) - i)
    if n > 0:
        out[i:i + n] += sound[:n]


def click_times(seconds: float, bpm: float = 120.0, end_bpm: float | None = None) -> np.ndarray:
    """Beat times from t = 0 over `seconds`, the tempo going linearly from `bpm` to `end_bpm`
    (default: steady) over that time."""
    end_bpm = bpm if end_bpm is None else end_bpm
    if end_bpm == bpm:
        return _beats(seconds, bpm)
    t = np.arange(0.0, seconds, 1e-3)
    beats_so_far = np.cumsum(np.r_[0.0, (bpm + (end_bpm - bpm) * t[:-1] / seconds) / 60.0 * 1e-3])
    return np.interp(np.arange(0.0, beats_so_far[-1]), beats_so_far, t)


def make_click_track(seconds: float, bpm: float = 120.0, sr: int = 44100, end_bpm: float | None = None) -> np.ndarray:
    """A click (a 10 ms decaying 1.5 kHz burst) on every beat of click_times: (S,) float32."""
    if seconds <= 0 or bpm <= 0 or sr <= 0 or (end_bpm is not None and end_bpm <= 0):
        raise EngineError("click track: seconds, bpm and sr must be positive")
    out = np.zeros(int(round(seconds * sr)), np.float64)
    t = np.arange(int(0.01 * sr)) / sr
    click = np.sin(2 * np.pi * 1500 * t) * np.exp(-t / 0.002)
    for b in click_times(seconds, bpm, end_bpm):
        _place(out, click, b, sr)
    return (0.8 * out).astype(np.float32)


def _kick(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.35 * sr)) / sr
    freq = 50 + 100 * np.exp(-t / 0.04)                    # pitch drops 150 -> 50 Hz
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)
    beater = 0.3 * rng.standard_normal(len(t)) * np.exp(-t / 0.004)   # the broadband click of the attack
    return body + beater


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.2 * sr)) / sr
    return 0.5 * rng.standard_normal(len(t)) * np.exp(-t / 0.05) + 0.3 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.03)


def _hihat(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.06 * sr)) / sr
    noise = np.diff(rng.standard_normal(len(t) + 1))      # first difference: a crude high-pass
    return noise * np.exp(-t / 0.015)


def _tone(freq: float, length: float, sr: int, attack: float, release: float, harmonics=(1.0,)) -> np.ndarray:
    t = np.arange(int(length * sr)) / sr
    wave = sum(a * np.sin(2 * np.pi * freq * (k + 1) * t) for k, a in enumerate(harmonics))
    env = np.minimum(1.0, t / attack) * np.minimum(1.0, (length - t) / release)
    return wave * np.clip(env, 0.0, 1.0)


def synthesize_example(seconds: float = 12.0, bpm: float = 120.0, sr: int = 44100) -> np.ndarray:
    """The example song as (S, 2) float32 stereo, peak 0.8."""
    if seconds <= 0 or bpm <= 0 or sr <= 0:
        raise EngineError("example song: seconds, bpm and sr must be positive")
    rng = np.random.default_rng(2023)
    n = int(round(seconds * sr))
    beat = 60.0 / bpm
    drums, hats, bass, chords = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    kick, snare, hat = _kick(sr, rng), _snare(sr, rng), _hihat(sr, rng)
    for k, b in enumerate(_beats(seconds, bpm)):
        _place(drums, kick, b, sr)
        if k % 2:                                          # backbeat on 2 and 4
            _place(drums, snare, b, sr)
    for b in _beats(seconds, bpm, offset=beat / 2):
        _place(hats, hat, b, sr)
    for bar, t0 in enumerate(_beats(seconds, bpm / 4)):    # one chord per 4/4 bar
        notes = _PROGRESSION[bar % len(_PROGRESSION)]
        for note in notes:
            _place(chords, _tone(_hz(note + 12), 4 * beat, sr, 0.05, 0.3, (1.0, 0.3, 0.1)), t0, sr)
        for k in range(4):                                 # bass: root, fifth, octave, fifth on the beats
            note = notes[0] - 12 + (0, 7, 12, 7)[k]
            _place(bass, _tone(_hz(note), 0.9 * beat, sr, 0.005, 0.1, (1.0, 0.5, 0.25)), t0 + k * beat, sr)
    left = drums + 0.05 * hats + 0.45 * bass + 0.12 * chords
    right = drums + 0.06 * hats + 0.35 * bass + 0.16 * chords
    song = np.stack([left, right], axis=1)
    return (0.8 * song / np.abs(song).max()).astype(np.float32)


def make_example_song(path, seconds: float = 12.0, bpm: float = 120.0, sr: int = 44100) -> Path:
    """Write the example song as a 16-bit stereo WAV at `path`; returns the path."""
    path = Path(path)
    if not path.parent.is_dir():
        raise EngineError(f"folder does not exist: {path.parent}")
    sf.write(str(path), synthesize_example(seconds, bpm, sr), sr, subtype="PCM_16", format="WAV")
    return path


EXAMPLE_FILES = ("song.wav", "dance.bvh", "dance.npz", "dance.mp4")


def main(argv=None) -> int:
    """`python -m engine.example --out DIR`: write the example song and dance to it with the
    shipped weights: DIR/song.wav, DIR/dance.bvh, DIR/dance.npz, DIR/dance.mp4 (files already
    there are replaced only with --force)."""
    from .errors import OneLineParser
    from .__main__ import main as engine_main
    p = OneLineParser(prog="python -m engine.example", description=main.__doc__)
    p.add_argument("--out", type=Path, required=True, help="folder for the example's files (created)")
    p.add_argument("--seconds", type=float, default=12.0, help="length of the example song (1-600)")
    p.add_argument("--steps", type=int, default=20, help="sampling steps (1-1000)")
    p.add_argument("--force", action="store_true", help="replace the example's files if the folder has them")
    args = p.parse_args(argv)
    # Checked before anything is written: the song is written first.
    if not 1.0 <= args.seconds <= 600.0:
        p.error(f"--seconds must be from 1 to 600, got {args.seconds:g}")
    if not 1 <= args.steps <= 1000:
        p.error(f"--steps must be a whole number from 1 to 1000, got {args.steps}")
    there = [name for name in EXAMPLE_FILES if (args.out / name).exists()]
    if there and not args.force:
        p.error(f"{args.out} already has {', '.join(there)}: add --force to replace them")
    args.out.mkdir(parents=True, exist_ok=True)
    song = make_example_song(args.out / "song.wav", seconds=args.seconds)
    print(f"wrote {song}")
    outputs = [a for name in EXAMPLE_FILES[1:] for a in ("-o", str(args.out / name))]
    return engine_main(["generate", str(song), *outputs, "--steps", str(args.steps), "--force"])


if __name__ == "__main__":
    raise SystemExit(main())
