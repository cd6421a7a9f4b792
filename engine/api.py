"""The one call: `generate(song, ...) -> Motion`. Everything the CLI and the add-on need."""
from __future__ import annotations

import hashlib
import json
import numbers
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Collection

import numpy as np
import torch

from .body import layout as L
from .body import rotations as R
from .body.motion import Constraints, Motion
from .body.skeleton import NUM_JOINTS, joint_positions
from .defaults import (AUTOGUIDANCE_KEYED_TAPER_FRAMES, DEFAULT_AUTOGUIDANCE, DEFAULT_FPS, DEFAULT_GUIDANCE,
                       DEFAULT_QUALITY, DEFAULT_STEPS, GUIDANCE_LOWPASS_FRAMES, INPAINT_MIN_RUN_SECONDS,
                       LATE_GUIDANCE, SAMPLING_ETA, SAMPLING_SOLVER, SMOOTHING_SECONDS,
                       STUDENT_SMOOTHING_SECONDS)
from .errors import Cancelled, EngineError, EngineNote, RootHeightNote
from .finishing.beatsync import motion_beats, output_times, warp_knots, warp_times
from .finishing.editing import (anchor_times, apply_constraints, keyed_jump_lift, keyed_runs, keyed_spin_frames,
                                keys_at_model_rate, leg_keys, legs_hang_from_new_hips, raised_root_frames,
                                rushed_root_keys, sunk_root_frames)
from .finishing.feet import beat_cycle, clean_feet, toes_above_floor
from .finishing.setoff import Arrival, set_off_where_still
from .finishing.rootpath import keep_on_floor
from .finishing.turns import limit_joint_speeds, limit_pelvis_turns
from .music.silence import ABSOLUTE_SILENCE_DBFS, SILENT_BELOW_DB, gain_envelope, heard_levels_db, silent_stretches_of
from .options import check_options, check_sample_rate
from .sampler import checkpoint
from .sampler.diffusion import Inpainting, autoguided, cosine_alpha_bar, guided, sample
from .sampler.facing import facing_alignment, facing_front, front_beyond_the_keys, keys_facing_or_path
from .sampler.hold import SilenceHold, chain, held_stretches, start_pose_kept
from .sampler.fewstep import choose_weights
from .sampler.model import music_input, with_keys

Progress = Callable[[float, str], "bool | None"]

_loaded: dict = {}


def load_weights(weights=None, device: str | torch.device = "cpu") -> checkpoint.Checkpoint:
    """Load (and cache) a checkpoint; the cache is keyed by file, modification time and device."""
    path = Path(weights) if weights is not None else checkpoint.DEFAULT_WEIGHTS
    key = (str(path.resolve()), path.stat().st_mtime_ns if path.exists() else 0, str(device))
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = checkpoint.load(path, device=device)
    return _loaded[key]


def available_styles(weights=None) -> list[str]:
    return json.loads(checkpoint.read_metadata(weights or checkpoint.DEFAULT_WEIGHTS)["styles"])


def styles_any_draws(weights=None) -> list[str]:
    """The styles style "any" draws from with these weights (checkpoint.drawable_styles)."""
    meta = checkpoint.read_metadata(weights or checkpoint.DEFAULT_WEIGHTS)
    return checkpoint.drawable_styles(json.loads(meta["styles"]), json.loads(meta.get("info", "{}")))


def resolve_device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise EngineError(f"unknown device {name!r}: use auto, cpu or cuda")
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        warnings.warn("no CUDA GPU is available: generating on the CPU instead", EngineNote)
    return torch.device("cpu")


def _check_argument_types(audio, style, sample_rate, constraints) -> None:
    """What a notebook might pass by mistake, said in one line (they were raw ValueError,
    TypeError and AttributeError tracebacks)."""
    if not isinstance(style, str):
        raise EngineError(f"style must be a style name such as 'any' (see available_styles()), got {style!r}")
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real)):
        raise EngineError(f"sample_rate must be a number of samples per second, got {sample_rate!r}")
    from .music.audio import check_source
    check_source(audio)                    # before the options, which would read an empty song's length
    if isinstance(audio, np.ndarray):
        check_sample_rate(sample_rate)
    elif sample_rate is not None:          # a file's header gives its own rate (QA26: ignored without a word)
        raise EngineError(f"sample_rate is for a numpy waveform: the file {audio} gives its own rate")
    if constraints is not None and not isinstance(constraints, Constraints):
        raise EngineError("constraints must be an engine Constraints (Constraints.empty(frames, fps) and its "
                          f"set_pose, or Constraints.load_npz(path)), got {type(constraints).__name__}")


def _check_flags(**flags) -> None:
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise EngineError(f"{name} must be True or False, got {value!r}")


def _pose_beside(value, name: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """`value` as (poses (72,), trans (3,)) of finite numbers, or one line naming `name`."""
    try:
        poses, trans = (np.asarray(a, np.float64) for a in value)
    except (TypeError, ValueError):
        raise EngineError(f"{name} must be (poses (72,), trans (3,)): the pose and root place on the frame "
                          f"{where}, got {type(value).__name__}") from None
    if poses.shape != (72,) or trans.shape != (3,) or not (np.isfinite(poses).all() and np.isfinite(trans).all()):
        raise EngineError(f"{name} must be (poses (72,), trans (3,)) of finite numbers: the pose and root place "
                          f"on the frame {where}, got shapes {poses.shape} and {trans.shape}")
    return poses, trans


def _moving_beside(pose, constraints: Constraints | None, row: int, fps: float) -> Arrival | None:
    """How an animation beside the dance (its `pose` (poses, trans) on the frame next to the
    constraints' frame `row`) moves into (out of) that frame: an Arrival, in reversed time for
    the last frame; None without `pose`; still where nothing is keyed there."""
    if pose is None:
        return None
    if constraints is None or constraints.num_frames <= row:
        return Arrival.still()
    return Arrival.between(pose, (constraints.poses[row], constraints.trans[row]), fps,
                           joints=constraints.joint_mask[row], root=bool(constraints.trans_mask[row]))


def _root_height_note(frames: np.ndarray, fps: float, height: str, feet: str) -> None:
    """A note for root keys at a height no dancer's hips reach (editing.raised_root_frames,
    sunk_root_frames), often keys in centimetres or with Z up."""
    if len(frames):
        at = ", ".join(f"{f / fps:.2f} s" for f in frames[:3]) + (" ..." if len(frames) > 3 else "")
        warnings.warn(f"the root keys at {at} hold the hips {height} (are they in metres, Y up?): "
                      f"the feet {feet} around them", RootHeightNote)


def _check_constraints(c: Constraints | None, frames: int, fps: float, margin: int = 0) -> Constraints | None:
    """`c` checked against a dance of `frames` frames at `fps` and cut to it; None when it keys
    nothing. `margin`: frames past the dance that may still hold keys (a length read from a
    file's header before its audio is decoded, which may come out a sample or two longer)."""
    if c is None:
        return None
    c.check()
    if c.fps is not None and abs(c.fps - fps) > 1e-3:
        raise EngineError(f"constraints are at {c.fps:g} fps but the dance is asked at {fps:g} fps")
    if c.num_frames > frames:
        if c.joint_mask[frames + margin:].any() or c.trans_mask[frames + margin:].any():
            raise EngineError(f"constraints hold keys past the dance's {frames} frames "
                              f"({frames / fps:.2f} s at {fps:g} fps); they cover {c.num_frames}")
        # Rows with nothing keyed past the end (an inclusive end, a file made for a longer song).
        c = c.first_frames(frames)
    return None if c.is_empty else c


def _inpainting(c: Constraints | None, length: int, fps: float, normalizer: L.Normalizer,
                runs_only: bool = True) -> Inpainting | None:
    """Constraints at the output rate -> known channels at the model's rate (nearest frame).

    With `runs_only`, joint keys are kept only where they form runs (seed motion, a run joining a
    regenerated section, body-part locks): that is what the sampler in-paints. Pasting an isolated
    key into the network's estimate made it rush to meet it (hand whips of 2.7x the clip's 99th
    percentile; python -m engine evaluate-inbetween), while the correction offsets of
    engine.finishing.editing alone pass through it with the body's momentum. A key-aware network
    is given every key (runs_only False) and plans its own approach."""
    if c is None:
        return None
    joint_mask = keyed_runs(c.joint_mask, max(2, int(round(INPAINT_MIN_RUN_SECONDS * fps)))) if runs_only \
        else c.joint_mask
    values = torch.zeros(length, L.NUM_CHANNELS, dtype=torch.float64)
    mask = torch.zeros(length, L.NUM_CHANNELS, dtype=torch.bool)
    model_frame = L.model_frames(np.arange(c.num_frames), fps, length)
    rows = np.flatnonzero(joint_mask.any(axis=1))
    if len(rows):
        six = R.axis_angle_to_6d(torch.from_numpy(c.poses[rows]).reshape(len(rows), NUM_JOINTS, 3))
        for r, row in zip(rows, six):
            joints = np.flatnonzero(joint_mask[r]).tolist()
            channels = L.joint_channels(joints)
            values[model_frame[r], channels] = row[joints].reshape(-1)
            mask[model_frame[r], channels] = True
    keyed = np.flatnonzero(c.trans_mask)
    if len(keyed):
        for r in keyed:
            values[model_frame[r], L.ROOT_Y] = c.trans[r, 1]
            mask[model_frame[r], L.ROOT_Y] = True
        # Root velocity is known where two consecutive model frames both have a root key.
        times = keyed / fps
        for m in range(length - 1):
            t0, t1 = m / L.MODEL_FPS, (m + 1) / L.MODEL_FPS
            if _covered(times, t0, 1 / fps) and _covered(times, t1, 1 / fps):
                p0 = [np.interp(t0, times, c.trans[keyed, k]) for k in (0, 2)]
                p1 = [np.interp(t1, times, c.trans[keyed, k]) for k in (0, 2)]
                values[m, L.ROOT_VEL] = torch.tensor([p1[0] - p0[0], p1[1] - p0[1]], dtype=torch.float64)
                mask[m, L.ROOT_VEL] = True
    norm = normalizer.normalize(values.float())
    return Inpainting(values=norm, mask=mask)


def _keyed_frames(c: Constraints | None, fps: float, length: int) -> np.ndarray | None:
    """(length,) bool at the model's rate: the frames on which a constraint keys a joint or the root."""
    if c is None:
        return None
    keyed = np.zeros(length, bool)
    rows = np.flatnonzero(c.joint_mask.any(axis=1) | c.trans_mask)
    keyed[L.model_frames(rows, fps, length)] = True
    return keyed


def _covered(times: np.ndarray, t: float, spacing: float) -> bool:
    """Whether time t lies within a stretch of keys no more than one output frame apart."""
    i = np.searchsorted(times, t)
    lo = times[i - 1] if i > 0 else None
    hi = times[i] if i < len(times) else None
    if hi is not None and abs(hi - t) < 1e-9:
        return True
    return lo is not None and hi is not None and hi - lo <= spacing * 1.01


# The finishing steps that turn the network's output into the dance, in the order they run
# (finish_draw). Every one is on by default; engine.evaluation.evaluate scores the network alone and each
# step added. Constraints are always met exactly: they are the animator's, not a finishing step.
FINISHING_STEPS = ("turns", "smoothing", "floor", "feet", "beat warp", "speed guard")


@dataclass
class Draw:
    """The network's dance for a song before finishing: what finish_draw needs."""
    raw: torch.Tensor                      # (model_frames, C) denormalised channels at MODEL_FPS
    seconds: float                         # the song's length danced
    out_frames: int
    fps: float
    beats: np.ndarray                      # the music's beats, seconds from the first frame
    constraints: Constraints | None
    stage_radius: float | None
    style: str
    seed: int
    audio_path: str | None
    audio_start: float
    held: np.ndarray | None = None         # (model_frames,) bool: frames held still in a silence
    few_step: bool = False                 # drawn by a few-step student (engine.sampler.fewstep)
    arrival: Arrival | None = None         # how the animation before the first frame arrives there
    departure: Arrival | None = None       # how the animation after the last frame leaves it (in reversed time)

    @property
    def smoothing(self) -> float:
        """The smoothing (seconds) this draw's sampler was calibrated with."""
        return STUDENT_SMOOTHING_SECONDS if self.few_step else SMOOTHING_SECONDS


def generate(audio, *, sample_rate: int | None = None, style: str = "any", seed: int = 0, steps: int | None = None,
             fps: float = DEFAULT_FPS, start: float = 0.0, duration: float | None = None,
             constraints: Constraints | None = None, guidance: float = DEFAULT_GUIDANCE, device: str = "auto",
             weights=None, progress: Progress | None = None, beat_sync: bool = True,
             smoothing: float | None = None, autoguidance: float = DEFAULT_AUTOGUIDANCE,
             stage_radius: float | None = None, quality: str = DEFAULT_QUALITY,
             finishing: Collection[str] = FINISHING_STEPS, analysed_music=None,
             guidance_lowpass: float = GUIDANCE_LOWPASS_FRAMES, sampling_eta: float = SAMPLING_ETA,
             sampling_solver: str = SAMPLING_SOLVER, wait_in_silence: bool = True, speed: float = 1.0,
             gain=None, still_before: bool = False, song_beats: bool = False, pose_before=None,
             pose_after=None) -> Motion:
    """Generate a dance for `audio` (a file path, or a waveform with `sample_rate` in Hz, from
    options.MIN_SAMPLE_RATE to MAX_SAMPLE_RATE).

    The dance covers the song from `start` for `duration` seconds (default: to the end) at `fps`.
    `constraints` (at `fps`, frame 0 = the first generated frame) come out exactly as given.
    `progress(fraction, message)` is called as work proceeds; returning False cancels (Cancelled).
    The same inputs and seed give the same dance on the same device. `steps`: the many-step
    model's sampling steps (None: DEFAULT_STEPS; a few-step student samples its own, so None or
    its teacher's steps). `beat_sync=False` skips the
    beat warp (for measuring what it adds). `smoothing`: seconds of Gaussian smoothing of the
    network's output; None: the sampler's own (SMOOTHING_SECONDS, or STUDENT_SMOOTHING_SECONDS for
    a few-step student). `autoguidance` steers away from the weights' guide
    network, when they have one (1 = off; engine.sampler.diffusion.autoguided). `stage_radius`: None
    keeps the dancer on a FLOOR_RADIUS floor by curving its travel, 0 dances in place, r > 0 stays
    within r metres of the start (engine.finishing.rootpath). `quality`: "fast" samples a few-step student (the
    weights themselves, or the one beside them) at the settings it was distilled for; "best" (the
    default) or other settings sample its many-step teacher (engine.sampler.fewstep).
    `finishing`: which of FINISHING_STEPS run (all by default; for measuring what each adds).
    `guidance_lowpass`: sigma (frames at MODEL_FPS) below which the teacher's guidance acts
    (engine.sampler.diffusion.guided; 0 = plain guidance; a student's guidance is baked in).
    `sampling_eta`: how stochastic the many-step model's DDIM steps are (0 deterministic, 1 DDPM;
    engine.sampler.diffusion.ddim_step); a few-step student always samples deterministically.
    `sampling_solver`: how the many-step model steps along the sampling ODE, "ddim" or "dpm2m"
    (second order, same cost; engine.sampler.diffusion.sample); a student always uses "ddim".
    `analysed_music`: the song slice's engine.music.audio.music_for_dance when it was computed
    already, or an engine.music.background analysis still running (the command line analyses the
    song in a second process while torch loads); used only if made from this same file slice.
    `wait_in_silence`: the dancer holds still through the song's silent stretches of a second or
    more (engine.sampler.hold): a silent intro that opens on a start pose in the constraints waits
    in it, a stretch the constraints key or lock elsewhere is left to them; False dances them.
    `speed`: the audio plays `speed` times as fast as recorded, pitch and all (a sound strip
    retimed in Blender's sequencer): `start` and `duration` stay in the audio's own seconds, and
    the dance, duration / speed seconds long, follows the music as it is heard.
    `gain`: (times, gains): the linear gain the music is heard at (a strip's volume, a fade-out),
    times in seconds from the dance's first frame, linear between them and held beyond. Only
    the silence check hears it (a stretch faded to nothing is waited in as a silence); the
    features and beats are the audio's own.
    `song_beats`: a slice (`start`, `duration`) dances to the whole file's beats rather than the
    slice's own (engine.music.audio.whole_song_beats): the same bars on the same beats wherever
    one cuts in, as a regenerated section must be to meet the dance around it.
    `still_before`: the dancer stood still before the dance's first frame, in the pose the
    constraints key there (a start pose held before the song) or the dance's own: it sets off
    from it as from standing, not at full speed (engine.finishing.setoff).
    `pose_before`: (poses (72,), trans (3,)) the pose and root place on the frame before the
    dance's first (at `fps`), as an animation before the dance plays it, moving into a first frame
    the constraints key: the dance leaves that frame at the speed the animation arrives with,
    easing into its own (engine.finishing.setoff.Arrival); joints and a root the constraints do not
    key on frame 0 set off as with `still_before`. The same pose as frame 0's is `still_before`;
    give one of the two.
    `pose_after`: the same on the frame after the dance's last, as an animation after the dance
    plays it, moving on out of a last frame the constraints key: the dance arrives at that frame
    at the speed the animation leaves it with, easing out of its own.
    """
    report = _reporter(progress)
    d = draw(audio, sample_rate=sample_rate, style=style, seed=seed, steps=steps, fps=fps, start=start,
             duration=duration, constraints=constraints, guidance=guidance, device=device, weights=weights,
             report=report, autoguidance=autoguidance, stage_radius=stage_radius, quality=quality,
             analysed_music=analysed_music, guidance_lowpass=guidance_lowpass, sampling_eta=sampling_eta,
             sampling_solver=sampling_solver, wait_in_silence=wait_in_silence, speed=speed, gain=gain,
             still_before=still_before, song_beats=song_beats, pose_before=pose_before, pose_after=pose_after)
    report(0.92, "syncing to the beat and grounding the feet")
    steps_run = [f for f in finishing if beat_sync or f != "beat warp"]
    motion = finish_draw(d, finishing=steps_run, smoothing=smoothing)
    report(1.0, "done")
    return motion


def _reporter(progress: Progress | None) -> Callable[[float, str], None]:
    """progress(fraction, message) as a function that raises Cancelled when it returns False."""
    def report(fraction: float, message: str) -> None:
        if progress is not None and progress(float(fraction), message) is False:
            raise Cancelled("generation cancelled")
    return report


# A slice this long with no two beats is worth a note; shorter ones may simply fall between beats.
_BEATLESS_NOTE_SECONDS = 4.0


def draw(audio, *, sample_rate: int | None = None, style: str = "any", seed: int = 0, steps: int | None = None,
         fps: float = DEFAULT_FPS, start: float = 0.0, duration: float | None = None,
         constraints: Constraints | None = None, guidance: float = DEFAULT_GUIDANCE, device: str = "auto",
         weights=None, report: Callable[[float, str], None] | None = None,
         autoguidance: float = DEFAULT_AUTOGUIDANCE, stage_radius: float | None = None,
         quality: str = DEFAULT_QUALITY, analysed_music=None,
         guidance_lowpass: float = GUIDANCE_LOWPASS_FRAMES, sampling_eta: float = SAMPLING_ETA,
         sampling_solver: str = SAMPLING_SOLVER,
         wait_in_silence: bool = True, speed: float = 1.0, gain=None, still_before: bool = False,
         song_beats: bool = False, pose_before=None, pose_after=None) -> Draw:
    """The network's part of `generate` (same arguments): options checked, music read, motion
    sampled. `report(fraction, message)` runs from 0 to 0.9."""
    from .music import audio as A
    report = report or (lambda fraction, message: None)

    _check_argument_types(audio, style, sample_rate, constraints)
    _check_flags(still_before=still_before, song_beats=song_beats)
    before = None if pose_before is None else _pose_beside(pose_before, "pose_before", "before the dance's first")
    after = None if pose_after is None else _pose_beside(pose_after, "pose_after", "after the dance's last")
    if still_before and before is not None:
        raise EngineError("give still_before (--still-before) or pose_before (a constraints file's poses_before), "
                          "not both: the pose before, the same as the first frame's, is standing still")
    dev = resolve_device(device)
    # A few-step student serves the settings it was distilled for; others need the many-step model.
    # Only the file's header is read to choose: the networks of the one chosen are loaded.
    given = Path(weights or checkpoint.DEFAULT_WEIGHTS)
    meta = checkpoint.read_metadata(given)
    song_seconds = (A.audio_seconds(audio) if isinstance(audio, (str, Path))
                    else A.waveform_seconds(audio, sample_rate))
    check_options(style=style, styles=json.loads(meta["styles"]), steps=steps, seed=seed, fps=fps, start=start,
                  duration=duration, guidance=guidance, autoguidance=autoguidance, stage_radius=stage_radius,
                  song_seconds=song_seconds, guidance_lowpass=guidance_lowpass, sampling_eta=sampling_eta,
                  sampling_solver=sampling_solver, speed=speed)
    if constraints is not None and song_seconds is not None:     # before the model loads (QA: after it)
        danced = (song_seconds - start if duration is None else min(duration, song_seconds - start)) / speed
        _check_constraints(constraints, max(1, int(round(danced * fps))), fps, margin=1)
    if gain is not None:
        gain = gain_envelope(gain)
    report(0.0, "loading the model")         # after the checks: a mistake is said before any progress
    weights = choose_weights(given, json.loads(meta.get("student", "null")), quality, steps, guidance, autoguidance)
    steps = DEFAULT_STEPS if steps is None else steps     # a student samples its own steps
    ckpt = load_weights(weights, dev)
    if ckpt.guide is None and ckpt.student is None and autoguidance not in (1.0, DEFAULT_AUTOGUIDANCE):
        # QA26: weights fresh from training have no guide, and an autoguidance asked for went unheard.
        warnings.warn(f"{Path(weights).name} has no guide network, so autoguidance {autoguidance:g} does nothing "
                      "(python -m engine autoguide adds one)", EngineNote)

    report(0.02, "reading the music")
    if hasattr(analysed_music, "result"):    # still being analysed in the background: wait for it
        analysed_music = analysed_music.result()
    if analysed_music is None or analysed_music.source is None \
            or analysed_music.source != A.music_source(audio, start, duration, speed, song_beats) \
            or (gain is not None and analysed_music.levels_db is None):     # a packed analysis has no levels
        analysed_music = A.music_for_dance(audio, sample_rate=sample_rate, start=start, duration=duration,
                                           speed=speed, song_beats=song_beats)
    seconds, features, beats = analysed_music.seconds, analysed_music.features, analysed_music.beats
    if analysed_music.loudest_db < ABSOLUTE_SILENCE_DBFS:     # a muted export, a wrong file, a silent slice
        warnings.warn(f"the music is silent or nearly so (its loudest moment is "
                      f"{max(analysed_music.loudest_db, -120.0):.0f} dBFS): is it the right file?"
                      + ("" if wait_in_silence else " It is danced as if it played."), EngineNote)
    elif seconds >= _BEATLESS_NOTE_SECONDS and len(beats) < 2:
        warnings.warn(f"no beat was found in the music's {seconds:.0f} s (is it the right file?): "
                      "the dance follows no beat", EngineNote)
    out_frames = max(1, int(round(seconds * fps)))
    constraints = _check_constraints(constraints, out_frames, fps)
    arrival = Arrival.still() if still_before else _moving_beside(before, constraints, 0, fps)
    departure = _moving_beside(after, constraints, out_frames - 1, fps)
    rushed = rushed_root_keys(constraints, fps) if constraints is not None else None
    if rushed is not None:
        warnings.warn(f"the root keys at {rushed[0]:.2f} s and {rushed[1]:.2f} s are {rushed[2]:.1f} m/s apart across "
                      "the floor, faster than any dancer moves (are they in metres, on the right frames?): the dance "
                      "meets them by rushing", EngineNote)
    if constraints is not None:
        high, above = raised_root_frames(constraints)
        _root_height_note(high, fps, f"{above:.2f} m above a standing dancer's hips", "leave the floor")
        low, lowest = sunk_root_frames(constraints)
        _root_height_note(low, fps, f"{-lowest:.2f} m under the floor" if lowest < 0 else f"only {lowest:.2f} m above "
                          "the floor", "go under the floor")
    if constraints is not None and legs_hang_from_new_hips(constraints, fps):
        warnings.warn("the kept legs hang from the new dance's hips (the pelvis is not kept), so their feet can "
                      "float or sink: keep the torso and the root path too to keep the footwork", EngineNote)
    model_frames, padded = analysed_music.frames, features.shape[0]
    silences = analysed_music.silences
    if gain is not None:        # silent where the music is faded out, as well as where the audio is
        silences = silent_stretches_of(heard_levels_db(analysed_music.levels_db, gain))
    held = held_stretches(silences, model_frames, _keyed_frames(constraints, fps, model_frames)) \
        if wait_in_silence else []
    if held:
        # In the song's own seconds, as --start counts them (from --start 10, 10-20 s was said 0.0-10.0 s).
        joined = []                    # one span for a silence held in pieces (QA: "0.1-3.3 s, 3.3-10.0 s")
        for a, b, _ in held:
            if joined and a <= joined[-1][1] + 1:
                joined[-1][1] = max(joined[-1][1], b)
            else:
                joined.append([a, b])
        spans = ", ".join(f"{start + a / L.MODEL_FPS * speed:.1f}-{start + (b + 1) / L.MODEL_FPS * speed:.1f} s"
                          for a, b in joined)
        # A recording turned far down (QA: -60 dB) is quiet enough in places to count as silence
        # whatever its own level (ABSOLUTE_SILENCE_DBFS): say so, it may be music.
        quiet = (f"; the recording is very quiet (its loudest moment {analysed_music.loudest_db:.0f} dBFS), and "
                 f"under {ABSOLUTE_SILENCE_DBFS:.0f} dBFS counts as silence: if that is music, raise its volume"
                 if analysed_music.loudest_db < ABSOLUTE_SILENCE_DBFS + SILENT_BELOW_DB else "")
        warnings.warn(f"the music is silent at {spans}: the dancer waits there (to dance through it: "
                      f"untick Wait in Silence, or --dance-silence){quiet}", EngineNote)
        constraints = start_pose_kept(constraints, held, fps)
    report(0.08, "dancing")

    music = music_input(ckpt.model.cfg, ckpt.music_normalizer, features).to(dev)
    if ckpt.model.cfg.key_input:    # a key-aware network sees every key, single ones too
        known = _inpainting(constraints, padded, fps, ckpt.normalizer, runs_only=False)
        music = with_keys(music) if known is None else with_keys(music, known.values.to(dev), known.mask.to(dev))
    style = dance_style(style, ckpt.styles, seed, audio, ckpt.info)
    style_index = torch.tensor([ckpt.styles.index(style)], device=dev)
    inpaint = _inpainting(constraints, padded, fps, ckpt.normalizer)
    if inpaint is not None:
        inpaint = Inpainting(inpaint.values.to(dev), inpaint.mask.to(dev))
    facing = facing_alignment(constraints, padded, fps, ckpt.normalizer)
    hold = SilenceHold(held, ckpt.normalizer) if held else None
    generator = torch.Generator().manual_seed(int(seed))
    x = _sample_with_fallback(ckpt, weights, music, style_index, guidance, autoguidance, steps, generator, inpaint,
                              dev, lambda f: report(0.08 + 0.82 * f, "dancing"), guidance_lowpass, sampling_eta,
                              sampling_solver, chain(facing, hold))
    raw = ckpt.normalizer.denormalize(x.double().cpu()[:model_frames])
    if not keys_facing_or_path(constraints):      # nothing keyed says where to face: the front
        raw = facing_front(raw)
    else:                                         # the front, too, away from the keyed facings
        raw = front_beyond_the_keys(raw, constraints, fps)
    return Draw(raw=raw, seconds=seconds,
                out_frames=out_frames, fps=float(fps), beats=np.asarray(beats), constraints=constraints,
                stage_radius=stage_radius, style=style, seed=int(seed),
                held=None if hold is None else hold.held_frames(model_frames), few_step=ckpt.student is not None,
                arrival=arrival, departure=departure,
                audio_path=str(audio) if isinstance(audio, (str, Path)) else None, audio_start=float(start))


def finish_draw(d: Draw, finishing: Collection[str] = FINISHING_STEPS,
                smoothing: float | None = None) -> Motion:
    """The network's draw -> the dance, through the chosen FINISHING_STEPS (all by default);
    `smoothing` None: the draw's own (Draw.smoothing)."""
    unknown = set(finishing) - set(FINISHING_STEPS)
    if unknown:
        raise EngineError(f"unknown finishing steps {sorted(unknown)}; known: {', '.join(FINISHING_STEPS)}")
    raw = d.raw
    if "turns" in finishing:
        raw = limit_pelvis_turns(raw, L.MODEL_FPS)
    if "smoothing" in finishing:
        raw = smooth_channels(raw, (d.smoothing if smoothing is None else smoothing) * L.MODEL_FPS)
    poses30, trans30, contacts30 = (t.numpy() for t in L.unpack(raw))
    motion = finish_motion(poses30, trans30, d.seconds, d.out_frames, d.fps,
                           d.beats if "beat warp" in finishing else np.zeros(0), d.constraints,
                           stage_radius=d.stage_radius, finishing=finishing, contacts30=contacts30,
                           held=d.held, arrival=d.arrival, departure=d.departure)
    motion.beat_times = np.asarray(d.beats)
    motion.style, motion.seed = d.style, d.seed
    motion.audio_path, motion.audio_start = d.audio_path, d.audio_start
    return motion


def dance_style(style: str, styles, seed: int, audio=None, info: dict | None = None) -> str:
    """The style a dance is drawn in: `style`, or for "any" one of the weights' styles learned with
    their music, picked by the seed and the song file's name (an array: the seed alone), so a
    regenerated range of a dance gets the dance's style. The label-free "any", magnified by
    autoguidance, lifted a foot high in about 9% of frames against the dancers' 1% (validation
    FID_g 39.8 against 18.9 drawn this way, genre set 80.7 against 25.8, FID_k and Div_k no worse;
    weights/TRAINING.md, "Style any as a drawn style"). `info`: the weights' record, which says
    which styles they learned with their music (checkpoint.drawable_styles). Weights with no such
    style keep "any"."""
    if style != "any":
        return style
    choices = checkpoint.drawable_styles(list(styles), info or {})
    if not choices:
        return style
    song = Path(audio).name if isinstance(audio, (str, Path)) else ""
    # A real hash: CRC32 is linear, so seeds differing in the same bits drew the same style on
    # every song (QA: seeds 0, 2 and 9 always alike, 0, 1 and 2 never three styles).
    digest = hashlib.blake2b(f"{song}|{int(seed)}".encode(), digest_size=8).digest()
    return choices[int.from_bytes(digest, "big") % len(choices)]


def denoiser(ckpt: checkpoint.Checkpoint, style_index: torch.Tensor, guidance: float, autoguidance: float,
             guidance_lowpass: float = GUIDANCE_LOWPASS_FRAMES):
    """The sampler's denoiser: classifier-free guidance on the main network, and autoguidance
    from the guide network when the weights have one (a weight of 1 leaves the guide unused),
    both guiding the motion band below `guidance_lowpass` (sigma in frames; 0 = plain guidance).
    A few-step student has its guidance inside: one conditioned pass."""
    if ckpt.student is not None:
        return guided(ckpt.model, style_index, 1.0)
    def cfg(model, style):
        return guided(model, style, guidance, late_guidance=min(guidance, LATE_GUIDANCE),
                      lowpass_frames=guidance_lowpass)
    if ckpt.guide is None:
        return cfg(ckpt.model, style_index)
    # A guide from before new data joined (a fine-tune that added a style) reads that style as "any".
    guide_style = torch.where(style_index < ckpt.guide.cfg.num_styles, style_index, torch.zeros_like(style_index))
    return autoguided(cfg(ckpt.model, style_index), cfg(ckpt.guide, guide_style), autoguidance,
                      lowpass_frames=guidance_lowpass,
                      keyed_taper_frames=AUTOGUIDANCE_KEYED_TAPER_FRAMES if ckpt.model.cfg.key_input else 0.0)


def _sample_with_fallback(ckpt, weights, music, style_index, guidance, autoguidance, steps, generator, inpaint, dev,
                          on_step, guidance_lowpass: float, sampling_eta: float, sampling_solver: str,
                          project=None):
    """Sample on `dev`; if the GPU runs out of memory, say so and redo the same draw on the CPU."""
    alpha_bar = cosine_alpha_bar()
    state = generator.get_state()

    def run(ckpt, music, style_index, inpaint):
        with torch.no_grad():
            denoise = denoiser(ckpt, style_index, guidance, autoguidance, guidance_lowpass)
            return sample(denoise, music, window=L.WINDOW_FRAMES, steps=steps,
                          alpha_bar=alpha_bar, generator=generator, channels=L.NUM_CHANNELS,
                          inpainting=inpaint, progress=on_step,
                          timesteps=ckpt.student["timesteps"] if ckpt.student is not None else None,
                          eta=0.0 if ckpt.student is not None else sampling_eta, project=project,
                          solver="ddim" if ckpt.student is not None else sampling_solver,
                          paste_final=False)     # finish_motion's apply_constraints meets the keys
    try:
        return run(ckpt, music, style_index, inpaint)
    except torch.OutOfMemoryError:
        if dev.type != "cuda":
            raise EngineError("out of memory while generating: try a shorter duration") from None
    warnings.warn("the GPU ran out of memory: generating on the CPU instead", EngineNote)
    torch.cuda.empty_cache()
    cpu = torch.device("cpu")
    generator.set_state(state)
    inpaint_cpu = Inpainting(inpaint.values.cpu(), inpaint.mask.cpu()) if inpaint is not None else None
    return run(load_weights(weights, cpu), music.cpu(), style_index.cpu(), inpaint_cpu)


def smooth_channels(raw: torch.Tensor, sigma_frames: float) -> torch.Tensor:
    """Gaussian low-pass along time of the rotations (6D, re-orthonormalised later) and root."""
    if sigma_frames <= 0 or len(raw) < 3:
        return raw
    from scipy.ndimage import gaussian_filter1d
    out = raw.clone()
    for part in (L.ROT6D, L.ROOT_VEL, L.ROOT_Y):
        out[:, part] = torch.from_numpy(gaussian_filter1d(raw[:, part].numpy(), sigma_frames, axis=0, mode="nearest"))
    return out


def finish_motion(poses30: np.ndarray, trans30: np.ndarray, seconds: float, out_frames: int, fps: float,
                  music_beats: np.ndarray, constraints: Constraints | None,
                  stage_radius: float | None = None, finishing: Collection[str] = FINISHING_STEPS,
                  contacts30: np.ndarray | None = None, held: np.ndarray | None = None,
                  arrival: Arrival | None = None, departure: Arrival | None = None) -> Motion:
    """Model-rate output -> the final dance: bounded path ("floor"), grounded and stepping feet
    ("feet"), beat warp to `fps` (with no music beats: plain resampling), exact keys, and the
    joint-speed guard ("speed guard"). Without "feet", `contacts30` (the network's own) are kept.
    `held` (model frames, bool): where the dancer waits in a silence; neither the path's bound
    nor the feet move it there. The dance sets off from stillness at the end of each hold the
    keys make, and from its first frame as the animation before it arrives (`arrival`; None: no
    animation before it), and into its last as the animation after it leaves (`departure`;
    engine.finishing.setoff).

    A first warp, planned on the network's motion, tells where the music's beats will fall, so
    that the re-stepped feet land on them. The warp is then planned again on the cleaned motion
    and applied last, so that the leg IK cannot move the beats it places. A planted foot stays
    planted under a time warp."""
    if "floor" in finishing:        # root keys then move the bounded path (apply_constraints)
        fixed = None if constraints is None else np.flatnonzero(constraints.place_or_facing_keyed) / fps
        poses30, trans30 = keep_on_floor(poses30, trans30, L.MODEL_FPS, stage_radius, held, fixed)
    src_times = np.arange(len(poses30)) / L.MODEL_FPS
    anchors = anchor_times(constraints, fps)

    def plan_warp(poses30, trans30):
        kinematic = motion_beats(joint_positions(poses30, trans30), L.MODEL_FPS)
        return warp_knots(kinematic, music_beats, seconds, anchors=anchors)

    early = None
    if "feet" in finishing or contacts30 is None:
        cycle = beat_cycle(output_times(src_times, plan_warp(poses30, trans30)), music_beats)
        # The keys are put on first (keys_at_model_rate), and the feet cleanup leaves the legs
        # keyed or held there as they are: re-stepped, the offsets that restore them at the end
        # changed from frame to frame and swung a leg into the free frames (a foot rushing 29 cm
        # in a frame into a range's join).
        early = keys_at_model_rate(constraints, fps, len(poses30), L.MODEL_FPS)
        given = pinned = jump_lift = None
        if early is not None:
            drawn = poses30, trans30
            poses30, trans30 = apply_constraints(poses30, trans30, early, L.MODEL_FPS)
            given, pinned = leg_keys(early)
            jump_lift = keyed_jump_lift(early, drawn, (poses30, trans30), L.MODEL_FPS)
        poses30, trans30 = set_off_where_still(poses30, trans30, L.MODEL_FPS, early, arrival, departure)
        if held is not None and held.any():     # a dancer waiting in a silence stands as drawn
            given = np.zeros((len(poses30), 2), bool) if given is None else given.copy()
            given[held] = True
        poses30, trans30, contacts30 = clean_feet(poses30, trans30, L.MODEL_FPS, cycle, given, pinned,
                                                       jump_lift)
        if held is not None:
            contacts30[held] = 1.0
    else:
        contacts30 = np.asarray(contacts30) > 0.5               # the network's own contact channels
    knots = plan_warp(poses30, trans30)
    src = torch.from_numpy(src_times)
    sample_at = torch.from_numpy(warp_times(np.arange(out_frames) / fps, knots))
    poses = R.resample_axis_angle(torch.from_numpy(poses30).reshape(-1, NUM_JOINTS, 3), src, sample_at)
    poses = poses.reshape(out_frames, -1).numpy()
    trans = R.resample_linear(torch.from_numpy(trans30), src, sample_at).numpy()
    nearest = np.clip(np.round(sample_at.numpy() * L.MODEL_FPS).astype(int), 0, len(contacts30) - 1)
    fixed = None
    if constraints is not None:
        poses, trans = apply_constraints(poses, trans, constraints, fps, grounded=early is not None)
        fixed = np.zeros((out_frames, NUM_JOINTS), bool)
        fixed[:constraints.num_frames] = constraints.joint_mask
        fixed[:constraints.num_frames, 0] |= keyed_spin_frames(constraints)
    poses, trans = set_off_where_still(poses, trans, fps, constraints, arrival, departure)
    if "speed guard" in finishing:
        poses, _ = limit_joint_speeds(poses, fps, fixed=fixed)  # a last guard: no joint pops
    if "feet" in finishing:
        # The warp's resampling and the guard's easing of a leg can tip a toe under the floor
        # again (on the genre set, up to 6.6 cm for a few frames in 2 dances of 13).
        poses = toes_above_floor(poses, trans, fixed, fps)
    return Motion(poses=poses, trans=trans, fps=float(fps), contacts=contacts30[nearest],
                  beat_times=np.asarray(music_beats))
