"""One validation of the generation options, run before any work starts.

The command line (engine/__main__.py), blender_addon/batch.py and engine.api.generate all call
check_options, so a mistake gets the same one-line message wherever it is made, and it is found
before minutes of sampling rather than after.
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path

from .body.skeleton import BODY_PARTS
from .defaults import MAX_AUTOGUIDANCE, SAMPLING_SOLVERS
from .errors import EngineError

MAX_FPS = 240.0
MAX_STEPS = 1000
MAX_GUIDANCE = 20.0
# Seeds are what the add-on's Seed field holds (a Blender IntProperty: 0 to 2^31 - 1), so a seed
# from the shell, batch.py or Python gives the same dance as in the panel.
MAX_SEED = 2**31 - 1
# The sample rates a waveform given as an array may have (README: 8-192 kHz). Checked only
# against zero, a rate in kHz typed for Hz (44.1) danced an 8 s clip as 8000 s.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
# Body-part names the engine accepts (engine.body.skeleton.BODY_PARTS); "root" (the pelvis's path)
# is kept separately from rotations, where a tool can keep it (batch.py's --keep).
BODY_PART_NAMES: tuple[str, ...] = tuple(BODY_PARTS)
ROOT_PART = "root"


def _finite(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_options(*, style: str | None = None, styles=None, steps=None, fps=None, start: float = 0.0,
                  duration: float | None = None, guidance=None, autoguidance=None, scale=None,
                  stage_radius=None, song_seconds: float | None = None, guidance_lowpass=None,
                  sampling_eta=None, sampling_solver=None, seed=None, speed=None) -> None:
    """Raise EngineError (one plain sentence) for the first option out of range; None passes.

    `song_seconds`, when known, is the song's length: a start at or past its end is an error, and
    so is a duration that runs past it (the dance would silently be shorter than asked)."""
    if style is not None and styles is not None and style not in styles:
        raise EngineError(f"unknown style {style!r}; available: {', '.join(styles)}")
    if steps is not None and not (isinstance(steps, numbers.Integral) and not isinstance(steps, bool)
                                  and 1 <= steps <= MAX_STEPS):
        raise EngineError(f"steps must be a whole number from 1 to {MAX_STEPS}, got {steps!r}")
    if seed is not None and not (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)
                                 and 0 <= seed <= MAX_SEED):
        raise EngineError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    if fps is not None and not (_finite(fps) and 1.0 <= fps <= MAX_FPS):
        raise EngineError(f"fps must be between 1 and {MAX_FPS:g}, got {fps!r}")
    if not (_finite(start) and start >= 0):     # None too: the API's start is a number (0.0 by default)
        raise EngineError(f"start must be 0 or more seconds, got {start!r}")
    if duration is not None and not (_finite(duration) and duration > 0):
        raise EngineError(f"duration must be a number of seconds more than 0, got {duration!r}")
    if speed is not None and not (_finite(speed) and speed > 0):
        raise EngineError(f"speed must be more than 0 (1 = the audio as recorded, 2 = twice as fast), got {speed!r}")
    if song_seconds is not None:
        if start >= song_seconds:
            raise EngineError(f"start {start:g} s is at or past the end of the song ({song_seconds:.2f} s long)")
        # Slack of a frame and a half: Blender rounds a sound strip's length up to whole frames (a
        # frame of a strip retimed to `speed` plays `speed` frames' worth of the file).
        if duration is not None and start + duration > song_seconds + 1.5 * (speed or 1.0) / (fps or 30.0):
            raise EngineError(f"start + duration = {start + duration:g} s runs past the end of the song "
                              f"({song_seconds:.2f} s long): at most {song_seconds - start:.2f} s from {start:g} s")
    if guidance is not None and not (_finite(guidance) and 0.0 <= guidance <= MAX_GUIDANCE):
        raise EngineError(f"guidance must be between 0 and {MAX_GUIDANCE:g}, got {guidance!r}")
    if autoguidance is not None and not (_finite(autoguidance) and 1.0 <= autoguidance <= MAX_AUTOGUIDANCE):
        raise EngineError(f"autoguidance must be between 1 (off) and {MAX_AUTOGUIDANCE:g}, got {autoguidance!r}")
    if scale is not None and not (_finite(scale) and scale > 0):
        raise EngineError(f"scale must be more than 0 (BVH units per metre, e.g. 100 for cm), got {scale!r}")
    if stage_radius is not None and not (_finite(stage_radius) and stage_radius >= 0):
        raise EngineError(f"stage radius must be 0 (dance in place) or more metres, got {stage_radius!r}")
    if guidance_lowpass is not None and not (_finite(guidance_lowpass) and guidance_lowpass >= 0):
        raise EngineError(f"guidance_lowpass must be 0 (off) or more frames, got {guidance_lowpass!r}")
    if sampling_eta is not None and not (_finite(sampling_eta) and 0.0 <= sampling_eta <= 1.0):
        raise EngineError(f"sampling_eta must be between 0 (deterministic) and 1 (DDPM), got {sampling_eta!r}")
    if sampling_solver is not None and sampling_solver not in SAMPLING_SOLVERS:
        raise EngineError(f"unknown sampling solver {sampling_solver!r}; available: {', '.join(SAMPLING_SOLVERS)}")
    if sampling_solver not in (None, "ddim") and sampling_eta:
        raise EngineError(f"sampling_eta > 0 (stochastic steps) needs the ddim solver, not {sampling_solver!r}")


def check_sample_rate(sample_rate) -> None:
    """A numpy waveform's sample rate, in Hz, from MIN_SAMPLE_RATE to MAX_SAMPLE_RATE."""
    if sample_rate is None:
        raise EngineError("a numpy waveform needs its sample_rate (samples per second, e.g. 44100)")
    if not (_finite(sample_rate) and MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE):
        raise EngineError(f"sample_rate must be from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz (samples per "
                          f"second, e.g. 44100), got {sample_rate!r}")


def parse_body_parts(text_or_names, allow_root: bool = False) -> list[str]:
    """"left_arm, arms" or ["legs"] -> the names, checked against BODY_PART_NAMES (and "root"
    when `allow_root`); EngineError naming the unknown ones and the known ones."""
    names = text_or_names.split(",") if isinstance(text_or_names, str) else list(text_or_names)
    names = [n.strip() for n in names if n.strip()]
    known = BODY_PART_NAMES + ((ROOT_PART,) if allow_root else ())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise EngineError(f"unknown body part(s) {', '.join(unknown)}: use {', '.join(known)}")
    return list(dict.fromkeys(names))


def check_song_path(path) -> Path:
    """The song must be an existing file: a folder, a web address or a missing path gets its own
    message."""
    if isinstance(path, str) and "://" in path:     # Path() folds the '//' (QA: "not found: http:/...")
        raise EngineError(f"the song {path} is a web address: songs are read from files; download it first")
    path = Path(path)
    if path.is_dir():
        raise EngineError(f"the song {path} is a folder, not an audio file")
    if not path.exists():
        raise EngineError(f"song not found: {path}")
    if not path.is_file():
        raise EngineError(f"the song {path} is not a regular file")
    return path


def check_outputs(outputs, kinds: dict[str, str], force: bool, inputs: dict | None = None) -> None:
    """Output files: known extensions, existing and writable folders, each named once, none
    overwritten without `force`, and none an input (`inputs`: {what it is: path}), even with it."""
    seen: set[Path] = set()
    given = {Path(path).resolve(): what for what, path in (inputs or {}).items() if path}
    for out in outputs:
        if str(out).endswith(("/", "\\")):    # Path() drops the slash: "x.npz/" wrote the file x.npz (QA)
            raise EngineError(f"cannot write {out}: it ends in a slash, which names a folder; give a file name")
        out = Path(out)
        if out.suffix.lower() not in kinds:
            listed = ", ".join(f"{k} ({v})" for k, v in kinds.items())
            raise EngineError(f"cannot write {out}: unknown extension {out.suffix or '(none)'}; use {listed}")
        resolved = out.resolve()
        if resolved in seen:
            raise EngineError(f"{out} is given twice as an output")
        seen.add(resolved)
        if resolved in given:
            raise EngineError(f"{out} is {given[resolved]}: it would be overwritten (write the dance elsewhere)")
        if not resolved.parent.is_dir():
            raise EngineError(f"cannot write {out}: {resolved.parent} is a file, not a folder" if resolved.parent.exists()
                              else f"cannot write {out}: folder {resolved.parent} does not exist")
        if resolved.is_dir():
            raise EngineError(f"cannot write {out}: it is a folder")
        if out.exists() and not force:
            raise EngineError(f"{out} already exists: pass --force to overwrite it")
        check_writable(resolved, str(out))


def check_output_folder(out: Path, name: str) -> None:
    """EngineError unless the folder `out` (made later if missing) can take files: it, or the
    nearest folder above it that exists, is a folder and can be written."""
    folder = out
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    if not folder.is_dir():
        raise EngineError(f"{name}: {folder} is a file, not a folder")
    check_writable(folder / ".probe", name)


def check_writable(path: Path, name: str) -> None:
    """EngineError unless `path` can be written: a file is created (and removed) beside it, so a
    read-only folder or file system fails now rather than after the dance is generated."""
    import os
    import tempfile
    if path.exists() and not os.access(path, os.W_OK):
        raise EngineError(f"{name} cannot be written: it is read-only")
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".dance-write-test-"):
            pass
    except OSError as e:
        raise EngineError(f"{name} cannot be written: {e.strerror or e}") from None
