"""The engine's data types at its boundary: a generated Motion and the animator's Constraints."""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import EngineError
from .skeleton import JOINT_NAMES, NUM_JOINTS, joint_indices


@dataclass
class Motion:
    """An SMPL motion: `poses` (T,72) axis-angle, `trans` (T,3) metres, Y up, at `fps`."""
    poses: np.ndarray
    trans: np.ndarray
    fps: float
    style: str = "any"
    seed: int = 0
    contacts: np.ndarray | None = None          # (T,4) foot-contact flags, if known
    beat_times: np.ndarray = field(default_factory=lambda: np.zeros(0))  # music beats, seconds
    audio_path: str | None = None               # the song, for previews
    audio_start: float = 0.0                    # seconds into the song of frame 0

    @property
    def num_frames(self) -> int:
        return int(self.poses.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def section(self, start: int, count: int) -> "Motion":
        """`count` frames from frame `start`: the beats and the song's start follow the new frame 0."""
        t0, t1 = start / self.fps, (start + count) / self.fps
        beats = np.asarray(self.beat_times)
        return replace(self, poses=self.poses[start:start + count], trans=self.trans[start:start + count],
                       contacts=None if self.contacts is None else self.contacts[start:start + count],
                       beat_times=beats[(beats >= t0) & (beats < t1)] - t0, audio_start=self.audio_start + t0)

    def save_npz(self, path) -> None:
        """Write exactly `path` (np.savez given a name adds ".npz" to one that lacks it, in that case,
        so "dance.NPZ" became "dance.NPZ.npz", past the check for an existing file), whole
        (engine.files.written_whole)."""
        from ..files import written_whole
        with written_whole(path) as (tmp,), open(tmp, "wb") as f:
            np.savez(f, poses=self.poses.astype(np.float32), trans=self.trans.astype(np.float32),
                     fps=np.float64(self.fps), joint_names=np.array(JOINT_NAMES), style=np.array(self.style),
                     seed=np.int64(self.seed), beat_times=self.beat_times.astype(np.float32))

    @classmethod
    def load_npz(cls, path) -> "Motion":
        with np.load(path, allow_pickle=False) as f:
            return cls(poses=f["poses"].astype(np.float64), trans=f["trans"].astype(np.float64),
                       fps=float(f["fps"]), style=str(f["style"]) if "style" in f else "any",
                       seed=int(f["seed"]) if "seed" in f else 0,
                       beat_times=f["beat_times"].astype(np.float64) if "beat_times" in f else np.zeros(0))


def _numbers(value, name: str) -> np.ndarray:
    """An array of floats, or one clear line."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise EngineError(f"constraints: '{name}' must hold numbers") from None


def _flags(value, name: str) -> np.ndarray:
    """A bool array from bools or 0/1 numbers, or one clear line (a float mask of NaN read as True
    pinned every joint to the rest pose)."""
    raw = np.asarray(value)
    if raw.dtype == bool:
        return raw
    if raw.dtype.kind not in "iuf" or not np.isin(raw, (0, 1)).all():
        raise EngineError(f"constraints: '{name}' must hold true/false (or 0/1) values")
    return raw.astype(bool)


@dataclass
class Constraints:
    """What the animator fixed, at the output frame rate, frame 0 = the dance's first frame.

    poses (T,72) axis-angle and joint_mask (T,24): joint j at frame t must equal poses[t, 3j:3j+3].
    trans (T,3) and trans_mask (T,): the root must be at trans[t] (metres, Y up) on those frames.
    pelvis_turns (T,), optional: on a frame with a pelvis key, the whole turns about the vertical
    the dancer makes from the pelvis key before, beyond the short way from that key's facing to
    this one's (positive: the way the heading grows, counter-clockwise seen from above). A pose
    turned a whole turn is the same pose, so a keyed spin (Euler Z 0, 360, 720 degrees) is said
    here; without it the dance turns the short way between keys.
    T may be shorter than the dance (the rest is free); it may not be longer.
    """
    poses: np.ndarray
    trans: np.ndarray
    joint_mask: np.ndarray
    trans_mask: np.ndarray
    fps: float | None = None
    pelvis_turns: np.ndarray | None = None

    @classmethod
    def empty(cls, num_frames: int, fps: float | None = None) -> "Constraints":
        return cls(np.zeros((num_frames, NUM_JOINTS * 3)), np.zeros((num_frames, 3)),
                   np.zeros((num_frames, NUM_JOINTS), bool), np.zeros(num_frames, bool), fps)

    def __post_init__(self):
        self.poses, self.trans = _numbers(self.poses, "poses"), _numbers(self.trans, "trans")
        self.joint_mask, self.trans_mask = _flags(self.joint_mask, "joint_mask"), _flags(self.trans_mask, "trans_mask")
        self.pelvis_turns = (np.zeros(len(self.trans_mask)) if self.pelvis_turns is None
                             else _numbers(self.pelvis_turns, "pelvis_turns"))
        if self.fps is not None:
            fps = np.asarray(self.fps)
            if fps.size != 1 or fps.dtype.kind not in "iuf" or not np.isfinite(fps).all() or float(fps) <= 0:
                raise EngineError(f"constraints: 'fps' must be one positive number, got {self.fps!r}")
            self.fps = float(fps)
        T = self.poses.shape[0] if self.poses.ndim == 2 else -1
        expected = {"poses": (T, NUM_JOINTS * 3), "trans": (T, 3), "joint_mask": (T, NUM_JOINTS), "trans_mask": (T,),
                    "pelvis_turns": (T,)}
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise EngineError(f"constraints: '{name}' has shape {got}, expected {shape} (poses (T,72), trans (T,3), "
                                  "joint_mask (T,24), trans_mask (T,), pelvis_turns (T,))")
        for name in ("poses", "trans"):
            used = self.joint_mask.repeat(3, axis=1) if name == "poses" else self.trans_mask[:, None].repeat(3, 1)
            if not np.isfinite(getattr(self, name)[used]).all():
                raise EngineError(f"constraints: '{name}' holds NaN or infinite values on constrained frames")
        turns = self.pelvis_turns[self.joint_mask[:, 0]]
        if not (np.isfinite(turns).all() and np.allclose(turns, np.round(turns), atol=1e-6)):
            raise EngineError("constraints: 'pelvis_turns' must hold whole numbers of turns on frames with a pelvis key")
        off_keys = self.pelvis_turns[~self.joint_mask[:, 0]]
        if np.any(np.isfinite(off_keys) & (off_keys != 0)):     # NaN there: unset, as poses may hold
            raise EngineError("constraints: 'pelvis_turns' is set on a frame without a pelvis key")
        self.pelvis_turns = np.where(self.joint_mask[:, 0], np.round(self.pelvis_turns), 0.0)

    def check(self) -> "Constraints":
        """The checks made on construction, made again (one clear line): the builders (set_pose,
        follow, seed_motion, ...) write after it, and engine.api checks what it is given (QA26:
        a NaN pose from set_pose reached the finishing, "SVD did not converge")."""
        self.__post_init__()
        return self

    @property
    def num_frames(self) -> int:
        return int(self.poses.shape[0])

    @property
    def is_empty(self) -> bool:
        return not (self.joint_mask.any() or self.trans_mask.any())

    @property
    def place_or_facing_keyed(self) -> np.ndarray:
        """(T,) frames that key where the dancer is (the root) or faces (the pelvis)."""
        return self.joint_mask[:, 0] | self.trans_mask

    def first_frames(self, frames: int) -> "Constraints":
        """The constraints on the first `frames` frames only."""
        return Constraints(self.poses[:frames], self.trans[:frames], self.joint_mask[:frames], self.trans_mask[:frames],
                           self.fps, self.pelvis_turns[:frames])

    # Builders, each returning self so calls chain. Their mistakes are one EngineError line, checked
    # before anything is keyed (they were ValueError and IndexError tracebacks, and frame -1 keyed
    # the last frame as numpy counts from the end).
    def _frame(self, frame) -> int:
        if isinstance(frame, bool) or not isinstance(frame, numbers.Integral) or not 0 <= frame < self.num_frames:
            raise EngineError(f"constraints: a frame is a whole number from 0 (the dance's first) to "
                              f"{self.num_frames - 1}, got {frame!r}")
        return int(frame)

    def set_pose(self, frame: int, pose: np.ndarray, joints=None, root: np.ndarray | None = None) -> "Constraints":
        """Keyframe: joints (names/parts; default all) take `pose` (72,) at `frame`."""
        frame = self._frame(frame)
        idx = range(NUM_JOINTS) if joints is None else joint_indices(joints)
        pose = _numbers(pose, "pose")
        if pose.size != NUM_JOINTS * 3:
            raise EngineError(f"constraints: a pose is {NUM_JOINTS * 3} numbers (axis-angle per joint), "
                              f"got shape {pose.shape}")
        if root is not None and _numbers(root, "root").shape != (3,):
            raise EngineError(f"constraints: a root is 3 numbers (metres, Y up), got shape {np.shape(root)}")
        pose = pose.reshape(NUM_JOINTS, 3)
        for j in idx:
            self.poses[frame, 3 * j:3 * j + 3] = pose[j]
            self.joint_mask[frame, j] = True
        if root is not None:
            self.trans[frame] = root
            self.trans_mask[frame] = True
        return self

    def follow(self, poses: np.ndarray, joints, frames=None) -> "Constraints":
        """Joint-wise conditioning: `joints` follow `poses` (T,72) on `frames` (default all);
        poses[f] is frame f's."""
        frames = [self._frame(f) for f in (range(self.num_frames) if frames is None else frames)]
        poses = _numbers(poses, "poses")
        if frames and (poses.ndim != 2 or len(poses) <= max(frames)):
            raise EngineError(f"constraints: follow needs a pose for each frame up to {max(frames)} (poses[f] is "
                              f"frame f's; pass frames= for fewer), got poses of shape {poses.shape}")
        joint_indices(joints)          # an unknown name before any frame is keyed
        for f in frames:
            self.set_pose(f, poses[f], joints)
        return self

    def seed_motion(self, poses: np.ndarray, trans: np.ndarray) -> "Constraints":
        """Continue from given opening frames: full poses and root for the first len(poses) frames."""
        for f in range(len(poses)):
            self.set_pose(f, poses[f], root=trans[f])
        return self

    def save_npz(self, path) -> None:
        """Write exactly `path`, whole (see Motion.save_npz)."""
        from ..files import written_whole
        with written_whole(path) as (tmp,), open(tmp, "wb") as f:
            np.savez(f, poses=self.poses, trans=self.trans, joint_mask=self.joint_mask,
                     trans_mask=self.trans_mask, **({"fps": np.float64(self.fps)} if self.fps else {}),
                     **({"pelvis_turns": self.pelvis_turns} if self.pelvis_turns.any() else {}))

    @classmethod
    def load_npz(cls, path) -> "Constraints":
        path = Path(path)
        try:
            f = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise EngineError(f"constraints file not found: {path}") from None
        except Exception as e:
            # np.load takes anything that is not an .npy or .npz for a pickle, and says so.
            why = "not an .npz archive" if "pickle" in str(e) else str(e)
            raise EngineError(f"cannot read constraints file {path}: {why} "
                              "(it holds poses, trans, joint_mask and trans_mask arrays)") from None
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise EngineError(f"cannot read constraints file {path}: a single .npy array, not an .npz archive "
                              "(it holds poses, trans, joint_mask and trans_mask arrays)")
        with f:
            missing = [k for k in ("poses", "trans", "joint_mask", "trans_mask") if k not in f]
            if missing:
                raise EngineError(f"constraints file {path} lacks {', '.join(missing)} (needs poses, trans, joint_mask, trans_mask)")
            try:
                arrays = {k: f[k] for k in ("poses", "trans", "joint_mask", "trans_mask", "fps", "pelvis_turns") if k in f}
            except ValueError:        # an object array: numpy would unpickle it, which is never done
                raise EngineError(f"cannot read constraints file {path}: it holds Python objects, not plain "
                                  "arrays of numbers") from None
            return cls(arrays["poses"], arrays["trans"], arrays["joint_mask"], arrays["trans_mask"], arrays.get("fps"),
                       arrays.get("pelvis_turns"))

    @staticmethod
    def load_pose_beside(path, side: str) -> tuple[np.ndarray, np.ndarray] | None:
        """A constraints file's optional `poses_<side>` (72,) and `trans_<side>` (3,), `side` "before"
        or "after": the pose and root place an animation around the dance plays on the frame before
        frame 0 (after the last; api.generate's pose_before, pose_after); None when it has neither.
        Read after load_npz, which checks the file."""
        names = (f"poses_{side}", f"trans_{side}")
        with np.load(Path(path), allow_pickle=False) as f:
            given = [k for k in names if k in f]
            if not given:
                return None
            if len(given) == 1:
                raise EngineError(f"constraints file {path} has {given[0]} without "
                                  f"{(set(names) - set(given)).pop()}: give both or neither")
            try:
                return _numbers(f[names[0]], names[0]), _numbers(f[names[1]], names[1])
            except ValueError:
                raise EngineError(f"cannot read constraints file {path}: it holds Python objects, not plain "
                                  "arrays of numbers") from None
