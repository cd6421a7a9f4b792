"""Running the engine without freezing Blender, and bringing its result back into the scene.

The engine runs in a worker THREAD of Blender's own process: torch releases the GIL while it
computes, and a worker process could not import bpy anyway. The thread never touches bpy; it
only calls engine.api.generate with a progress callback that records progress in its Job and
returns False once cancel was requested (the engine then raises Cancelled). The main thread
(the generate operator's modal timer) reads the Job and writes the keys when it is done, so a
cancelled or failed job leaves the scene untouched.
Timers never fire in background mode or in the bpy module, so headless callers use
`run_sync`, which does the same work on the calling thread.
"""
from __future__ import annotations

import math
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import _engine_path  # noqa: F401
from engine.defaults import DEFAULT_AUTOGUIDANCE, DEFAULT_GUIDANCE, DEFAULT_QUALITY, DEFAULT_STEPS
from engine.errors import Cancelled, EngineError  # plain Python: importable before torch is installed

if TYPE_CHECKING:
    from engine.body.motion import Constraints, Motion


@dataclass
class Request:
    """Everything a generation needs, read from the scene on the main thread (a typed
    boundary: the worker sees plain values, never Blender data)."""
    audio_path: str
    start: float                  # seconds into the file of the first frame
    duration: float               # seconds danced (scene seconds)
    fps: float                    # the scene's frame rate
    num_frames: int               # scene frames to fill
    frame_start: int              # first scene frame
    armature_name: str
    scene_name: str
    action_name: str
    armature_uid: int             # the dancer's session_uid: renaming it while the engine runs keeps it found
    action_uid: int               # session_uid of the action it played (0: none)
    keys_digest: str              # keys.keys_digest of that action: keys edited meanwhile are not overwritten
    style: str = "any"
    seed: int = 0
    steps: int = DEFAULT_STEPS
    quality: str = DEFAULT_QUALITY      # engine.defaults.QUALITIES: the few-step student or the many-step model
    guidance: float = DEFAULT_GUIDANCE
    autoguidance: float = DEFAULT_AUTOGUIDANCE
    device: str = "auto"
    constraints: Constraints | None = None
    weights: str | None = None
    metadata: dict = field(default_factory=dict)
    stage_radius: float | None = None   # None: the engine's default stage; 0: in place; r: within r metres
    wait_in_silence: bool = True        # hold still where the song is silent (engine.sampler.hold)
    still_before: bool = False          # the dancer stood still before the first frame (a start pose held into the song)
    pose_before: tuple | None = None    # (poses (72,), trans (3,)): the intro's pose on the frame before, moving into the first
    pose_after: tuple | None = None     # the same for an outro on the frame after the last, moving on out of it
    # (before, after): the animator's own animation plays beside the dance on that side, the dance
    # led out of it (an intro) or ending in its whole pose (an outro): the take shows it there as
    # their rig did (IK/FK switches as they had them), not the dance's end held.
    animation_beside: tuple = (False, False)
    speed: float = 1.0                  # file seconds played per scene second (a retimed strip)
    gain: tuple | None = None           # (seconds from the first frame, the strip's volume): what the silence check hears
    kept: tuple | None = None           # (joint mask (F,24), root mask (F,)): the animator's keys, carried over
    bone_map: dict | None = None        # own characters (rig_io, issue 14): SMPL joint -> bone; None: SMPL dancer
    write_range: tuple | None = None    # (first, last) scene frames to rewrite in a copy of the current
    #                                     action; frames around them are context (regenerating a range)
    range_style: str | None = None      # the style of the take a range of which is regenerated in style "any"
    notes: list = field(default_factory=list)   # for the panel's report: the engine's notes (its warnings), the add-on's


def _style_danced(request: Request) -> str:
    """The style asked of the engine: the regenerated take's own where it has one these weights
    know (other weights chosen since may not), else the panel's."""
    from engine import api
    if request.range_style and request.range_style in api.available_styles(weights=request.weights):
        return request.range_style
    return request.style


def generate(request: Request, progress=None) -> Motion:
    """engine.api.generate for `request`; the animator's keys are then pasted in exactly."""
    from engine import api
    cons = _fit_constraints(request)
    # The engine says what it changed on its own (engine.errors.EngineNote) as warnings, which in
    # Blender reach only the system console: they are kept for the panel's report, and other
    # warnings are shown as usual.
    from engine.errors import EngineNote, RootHeightNote
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        motion = api.generate(
            request.audio_path, style=_style_danced(request), seed=request.seed, steps=request.steps, quality=request.quality,
            fps=request.fps, start=request.start, duration=request.duration * request.speed,   # the file's seconds
            speed=request.speed, gain=request.gain,
            constraints=None if cons is None or cons.is_empty else cons,
            guidance=request.guidance, autoguidance=request.autoguidance, device=request.device,
            weights=request.weights, progress=progress, stage_radius=request.stage_radius,
            wait_in_silence=request.wait_in_silence, still_before=request.still_before,
            pose_before=request.pose_before, pose_after=request.pose_after,
            # A strip, a trimmed one or a regenerated section of it, dances to its song's beats:
            # the section meets the dance around it on the same beats (on its own: 15-28% of
            # 5-s sections off them, engine.music.audio.whole_song_beats).
            song_beats=True)
    if motion.style != request.style:      # style "any" drew one (engine.api.dance_style): the take says which
        request.metadata["drawn_style"] = motion.style
    for w in caught:
        if issubclass(w.category, RootHeightNote):
            continue    # the panel's own, in the scene's units (operators.root_height_notes): said once
        if issubclass(w.category, EngineNote):
            if str(w.message) not in request.notes:
                request.notes.append(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if motion.num_frames > request.num_frames:
        motion.poses = motion.poses[:request.num_frames]
        motion.trans = motion.trans[:request.num_frames]
        if motion.contacts is not None:
            motion.contacts = motion.contacts[:request.num_frames]
    if cons is not None:
        paste_constraints(motion, cons)
    return motion


def _fit_constraints(request: Request) -> Constraints | None:
    """Drop constraint frames past the end of the audio: a strip can be a frame longer than
    its file (Blender rounds its length up), and the engine refuses constraints longer than
    the dance it can make."""
    cons = request.constraints
    if cons is None:
        return None
    available = _available_seconds(request)
    if available is None:  # a format libsndfile cannot probe: let the engine judge
        return cons
    frames = max(1, int(round(min(request.duration, available) * request.fps)))
    if cons.num_frames <= frames:
        return cons
    return cons.first_frames(frames)


def _available_seconds(request: Request) -> float | None:
    """Scene seconds of audio the file has from the request's start (None: its length is unknown)."""
    from engine.music.audio import audio_seconds      # quiet about a corrupt mp3 (one error, later)
    seconds = audio_seconds(request.audio_path)
    return None if seconds is None else (seconds - request.start) / request.speed


def paste_constraints(motion: Motion, cons: Constraints) -> float:
    """Set every constrained value of `motion` to the animator's (the engine already steers
    toward them; this makes "keys come out exactly" hold to float precision). Returns the
    largest change made, for diagnostics."""
    T = min(motion.num_frames, cons.num_frames)
    joint = np.repeat(cons.joint_mask[:T], 3, axis=1)        # (T,72)
    root = np.repeat(cons.trans_mask[:T, None], 3, axis=1)   # (T,3)
    poses, trans = motion.poses[:T], motion.trans[:T]
    change = max(float(np.abs(poses[joint] - cons.poses[:T][joint]).max(initial=0.0)),
                 float(np.abs(trans[root] - cons.trans[:T][root]).max(initial=0.0)))
    poses[joint] = cons.poses[:T][joint]
    trans[root] = cons.trans[:T][root]
    return change


def apply(request: Request, motion: Motion):
    """Main thread: write `motion` onto the request's armature. Returns the new action."""
    import bpy
    from . import scene_io
    obj = next((o for o in bpy.data.objects if o.session_uid == request.armature_uid), None)
    if obj is None:  # deleted (or undone away) while the dance was being generated
        raise EngineError(f"the armature '{request.armature_name}' no longer exists")
    from .rig_io import check_writable
    check_writable(obj)   # before anything is changed: the UI stayed live while the engine ran
    check_unchanged(obj, request)
    if request.bone_map is not None:   # own character (issue 14): retargeted onto its bones
        from . import rig_io
        action = rig_io.write_character_dance(obj, motion, request.frame_start, request.action_name, request.bone_map,
                                              fps=request.fps, metadata=request.metadata, keys=request.kept,
                                              only=request.write_range, beside=request.animation_beside)
    else:
        action = scene_io.write_motion(obj, motion, request.frame_start, request.action_name, fps=request.fps,
                                       metadata=request.metadata, kept=request.kept, only=request.write_range)
    from .takes import play_in_full
    note = play_in_full(obj)
    if note is not None:
        request.notes.append(note)
    scene = bpy.data.scenes.get(request.scene_name) or bpy.context.scene
    first, last = request.write_range or (request.frame_start, request.frame_start + motion.num_frames - 1)
    note = extend_frame_range(scene, int(first), int(math.ceil(last)))
    if note is not None:
        request.notes.append(note)
    return action


def check_unchanged(obj, request: Request) -> None:
    """Raise EngineError (one line) where the animator switched the dancer's action or edited its
    keys while the engine ran: the dance was made from the keys read when Generate was pressed,
    and writing it would overwrite the new keys or paste it into another action."""
    from .keys import keys_digest
    ad = obj.animation_data
    action = ad.action if ad is not None else None
    if (action.session_uid if action is not None else 0) != request.action_uid:
        now = f"'{action.name}'" if action is not None else "no action"
        raise EngineError(f"'{obj.name}' plays {now} now, not the action Generate was pressed on: nothing was "
                          "written; press Generate again")
    if keys_digest(obj, action) != request.keys_digest:
        raise EngineError(f"keys of '{action.name}' changed while the dance was generated: nothing was written "
                          "(your keys are as you left them); press Generate again to dance them")


def extend_frame_range(scene, first: int, last: int) -> str | None:
    """Grow the scene's frame range to cover frames first..last (never shrink it; a scene's range
    starts at 0 at the earliest), so playback and renders show the whole dance. Done inside the
    Generate operator: Ctrl+Z undoes it too. Returns a note saying so where it changed (QA31: a
    shot's range 1001-1100 became 1001-1761 without a word), else None."""
    before = (scene.frame_start, scene.frame_end)
    if first < scene.frame_start:
        scene.frame_start = max(0, first)
    if last > scene.frame_end:
        scene.frame_end = last
    if (scene.frame_start, scene.frame_end) == before:
        return None
    return (f"the scene's frame range is now {scene.frame_start}-{scene.frame_end} (it was {before[0]}-{before[1]}), "
            "to play the whole dance")


def run_sync(request: Request, progress=None):
    """Generate and write on the calling thread (background mode, the bpy module, scripts)."""
    return apply(request, generate(request, progress))


class Job:
    """One generation on a worker thread; every field is read and written under `_lock`."""

    def __init__(self, request: Request):
        self.request = request
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._progress = 0.0
        self._message = "starting"
        self._motion: Motion | None = None
        self._error: str | None = None
        self._cancelled = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # Worker side
    def progress_callback(self, fraction: float, message: str = "") -> bool:
        with self._lock:
            self._progress = float(min(max(fraction, 0.0), 1.0))
            self._message = message or self._message
        return not self._cancel.is_set()

    def run(self) -> None:
        try:
            motion = generate(self.request, self.progress_callback)
            with self._lock:
                self._motion = motion
        except Cancelled:
            with self._lock:
                self._cancelled = True
        except EngineError as e:
            with self._lock:
                self._error = str(e)
        except Exception as e:  # a bug, not a user mistake: one line in the UI, details in the console
            traceback.print_exc()
            with self._lock:
                self._error = f"generation failed: {type(e).__name__}: {e}"
        finally:
            if self._cancel.is_set() and self._error is None:
                self._cancelled = True
            self._done.set()

    # Main-thread side
    def start(self) -> "Job":
        self._thread = threading.Thread(target=self.run, name="dance-generator", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def snapshot(self) -> dict:
        """A consistent copy of the job's state: progress, message, done, cancelled, error, motion."""
        with self._lock:
            return {"progress": self._progress, "message": self._message, "done": self._done.is_set(),
                    "cancelled": self._cancelled, "error": self._error, "motion": self._motion}


_active: Job | None = None
_prepared = False


def prepare() -> None:
    """Main thread, once: import what generation will import. librosa's lazy_loader inspects the
    call stack while importing, and doing that on a worker thread crashed Blender (seen in a
    real GUI session); analysing a second of noise here makes every such import happen now."""
    global _prepared
    if _prepared:
        return
    import engine.api  # noqa: F401  (torch, the model code)
    import engine.finishing.beatsync  # noqa: F401  (scipy, the kinematic beats)
    from engine.music import audio
    sr = 22050
    wave = np.random.default_rng(0).normal(0.0, 0.1, sr).astype(np.float32)
    audio.music_features(wave, sr)
    audio.detect_beats(wave, sr)
    _prepared = True


def start(request: Request) -> Job:
    """Start a job in the background; only one runs at a time. Call on the main thread."""
    global _active
    if _active is not None and not _active.done:
        raise EngineError("a dance is already being generated: wait for it or cancel it")
    prepare()
    _active = Job(request).start()
    return _active


def active_job() -> Job | None:
    return _active if _active is not None and not _active.done else None


def finished(job: Job) -> None:
    """Forget `job` once its result has been handled."""
    global _active
    if _active is job:
        _active = None
