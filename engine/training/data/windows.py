"""Random training windows over a corpus, with augmentations that keep the data honest.

Augmentations (none changes what the music says):
- mirror: left and right swapped (skeleton.MIRROR_INDICES), the body reflected in the YZ
  plane: axis-angle (x, y, z) -> (x, -y, -z) per joint, root x negated. The music is unchanged
  (a mirrored dance is still a dance to the same song).
- yaw: the whole window turned about the vertical axis (root orientation and root velocity).
- tempo (on a share tempo_prob of windows): the window played faster or slower by a factor
  drawn from tempo_range, music features by the same factor. Motion is resampled properly
  (slerp, then re-packed, so contacts and velocities are recomputed at the new speed); music
  features nearest-frame, except the onset-peak and beat flags, whose events are moved to
  their nearest new frame so none is lost or doubled.
  The spectral features themselves are not re-analysed at the new tempo (pitch and timbre of a
  time-stretched song would barely change), which is the accepted approximation.
Mirror and yaw work directly on packed channels; the (poses, trans) versions exist to check them.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from ...body import layout as L
from ...body import rotations as R
from ...body.skeleton import FOOT_INDICES, MIRROR_INDICES, NUM_JOINTS
from ...music.audio import FEATURE_CHANNELS, NUM_MUSIC_FEATURES
from ...music.beat_phase import BEAT_PHASE_CHANNELS
from ..rephase import window_beat_phase

_MIRROR_AA = np.array([1.0, -1.0, -1.0])                 # axis-angle sign flip under x-reflection
_MIRROR_6D = np.array([1.0, -1.0, -1.0, -1.0, 1.0, 1.0])  # 6D (two columns) sign flip: M R M, M = diag(-1,1,1)
_MIRROR_CONTACTS = [FOOT_INDICES.index(MIRROR_INDICES[j]) for j in FOOT_INDICES]
_EVENT_CHANNELS = ("onset_peak", "beat")


# ----------------------------------------------------------------------------- augmentations

def mirror_poses(poses: np.ndarray, trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T,72), (T,3) -> the left/right mirror image (reflection x -> -x)."""
    p = poses.reshape(len(poses), NUM_JOINTS, 3)[:, list(MIRROR_INDICES)] * _MIRROR_AA
    return p.reshape(len(poses), -1), trans * np.array([-1.0, 1.0, 1.0])


def mirror_packed(x: np.ndarray) -> np.ndarray:
    """(T, NUM_CHANNELS) -> the same mirror as mirror_poses, on packed channels."""
    out = x.copy()
    out[:, L.CONTACTS] = x[:, L.CONTACTS][:, _MIRROR_CONTACTS]
    out[:, L.ROOT_VEL.start] = -x[:, L.ROOT_VEL.start]
    rot = x[:, L.ROT6D].reshape(len(x), NUM_JOINTS, 6)[:, list(MIRROR_INDICES)] * _MIRROR_6D
    out[:, L.ROT6D] = rot.reshape(len(x), -1)
    return out


def rotate_poses(poses: np.ndarray, trans: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Turn the whole motion by `angle` radians about the world Y axis (through the origin)."""
    yaw = R.about_vertical(torch.tensor(float(angle), dtype=torch.float64))
    root = R.axis_angle_to_matrix(torch.as_tensor(poses[:, :3], dtype=torch.float64))
    out = np.array(poses, dtype=np.float64)
    out[:, :3] = R.matrix_to_axis_angle(yaw @ root).numpy()
    return out, trans @ yaw.numpy().T


def rotate_packed(x: np.ndarray, angle: float) -> np.ndarray:
    """The same turn on packed channels (engine.body.layout.turn_about_vertical)."""
    return L.turn_about_vertical(torch.from_numpy(x), float(angle)).numpy()


def stretch_packed(x: np.ndarray, factor: float, length: int) -> np.ndarray:
    """Play packed motion `factor` times faster: frame k of the output is source time k*factor.

    Needs len(x) >= (length-1)*factor + 1. Rotations are slerped (via quaternions straight
    from the 6D channels), the root path linearly; re-packing recomputes contacts and
    velocities at the new speed.
    """
    xt = torch.as_tensor(x, dtype=torch.float32)
    T = len(xt)
    quats = R.matrix_to_quat(R.sixd_to_matrix(xt[:, L.ROT6D].reshape(T, NUM_JOINTS, 6)))
    trans = L.root_path(xt)
    src = torch.arange(T, dtype=torch.float32)
    dst = torch.arange(length, dtype=torch.float32) * factor
    poses = R.quat_to_axis_angle(R.resample_quats(quats, src, dst)).reshape(length, -1)
    return L.pack(poses, R.resample_linear(trans, src, dst)).numpy()


def stretch_music(music: np.ndarray, factor: float, length: int) -> np.ndarray:
    """Music features resampled like stretch_packed: nearest frame; event flags moved, not lost."""
    idx = np.minimum(np.rint(np.arange(length) * factor).astype(np.int64), len(music) - 1)
    out = music[idx].copy()
    for name in _EVENT_CHANNELS:
        ch = FEATURE_CHANNELS.get(name)
        if ch is None:
            continue
        out[:, ch] = 0.0
        for src_frame, col in zip(*np.nonzero(music[:, ch] > 0.5)):
            k = int(round(src_frame / factor))
            if k < length:
                out[k, ch.start + col] = 1.0
    return out


# ----------------------------------------------------------------------------- dataset

class WindowDataset(Dataset):
    """Windows of `window` frames drawn from the items, each item with probability proportional
    to its number of possible windows. Index i of epoch e always gives the same window and
    augmentation (rng seeded by (seed, epoch, i)); set_epoch changes the draw.

    Returns dict(motion (W, NUM_CHANNELS) float32, normalised when a normalizer is given;
    music (W, 35) float32, zeros when has_music is False; style long scalar (index in
    `styles`); has_music bool scalar). Items of music_drop_styles (and items without music)
    have has_music False: they train only the unconditional branch.
    With beat_phase, music has the two beat-phase channels appended (W, 37): the window's own
    kinematic beats re-phased onto the music's tempo (engine.training.rephase).
    """

    def __init__(self, items, normalizer: L.Normalizer | None = None, window: int = L.WINDOW_FRAMES,
                 styles: list[str] | None = None, augment: bool = True, music_drop_styles=(),
                 seed: int = 0, windows_per_epoch: int | None = None, tempo_range=(0.9, 1.1),
                 tempo_prob: float = 0.5, mirror_prob: float = 0.5, random_yaw: bool = True,
                 beat_phase: bool = False):
        self.beat_phase = bool(beat_phase)
        self.num_music = NUM_MUSIC_FEATURES + (BEAT_PHASE_CHANNELS if self.beat_phase else 0)
        self.window = int(window)
        self.items = [it for it in items if it.num_frames >= self.window]
        short = len(items) - len(self.items)
        if short:
            warnings.warn(f"WindowDataset: {short} sequence(s) shorter than {self.window} frames left out")
        if not self.items:
            raise ValueError(f"no sequence is at least {self.window} frames long")
        self.styles = list(styles) if styles is not None else sorted({it.style for it in self.items})
        missing = sorted({it.style for it in self.items} - set(self.styles))
        if missing:
            raise ValueError(f"styles {missing} of the data are not in styles={self.styles}")
        self.normalizer = normalizer
        self.augment = augment
        self.music_drop_styles = set(music_drop_styles)
        self.seed = int(seed)
        self.epoch = 0
        self.tempo_range = tuple(tempo_range) if augment and tempo_range else (1.0, 1.0)
        self.tempo_prob = tempo_prob if augment else 0.0
        self.mirror_prob = mirror_prob if augment else 0.0
        self.random_yaw = random_yaw and augment
        starts = np.array([it.num_frames - self.window + 1 for it in self.items], np.float64)
        self._cum = np.cumsum(starts) / starts.sum()
        total = sum(it.num_frames for it in self.items)
        self.windows_per_epoch = windows_per_epoch or max(1, total // (self.window // 2))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.windows_per_epoch

    def window_spec(self, index: int) -> dict:
        """Which item, start, tempo factor, mirror and yaw index `index` stands for."""
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        k = int(np.searchsorted(self._cum, rng.random(), side="right"))
        k = min(k, len(self.items) - 1)
        n = self.items[k].num_frames
        lo, hi = self.tempo_range
        factor = float(rng.uniform(lo, hi))
        # A factor a hair from 1 is taken as 1: a plain slice, not a resample that changes nothing.
        if not (hi > lo and rng.random() < self.tempo_prob) or abs(factor - 1.0) <= 1e-6:
            factor = 1.0
        # Source frames the stretched window needs; too short an item gets a slower factor.
        factor = min(factor, (n - 1) / (self.window - 1))
        span = int(math.floor((self.window - 1) * factor + 1e-9)) + 1
        start = int(rng.integers(0, n - span + 1))
        mirror = bool(rng.random() < self.mirror_prob)
        yaw = float(rng.uniform(-math.pi, math.pi)) if self.random_yaw else 0.0
        return dict(item=k, start=start, span=span, factor=factor, mirror=mirror, yaw=yaw)

    def __getitem__(self, index: int) -> dict:
        spec = self.window_spec(index)
        item = self.items[spec["item"]]
        sl = slice(spec["start"], spec["start"] + spec["span"])
        motion = item.motion[sl]
        has_music = item.music is not None and item.style not in self.music_drop_styles
        music = item.music[sl] if has_music else None
        if spec["factor"] != 1.0:
            motion = stretch_packed(motion, spec["factor"], self.window)
            if music is not None:
                music = stretch_music(music, spec["factor"], self.window)
        motion, music = motion[:self.window], (music[:self.window] if music is not None else None)
        if spec["mirror"]:
            motion = mirror_packed(motion)
        if spec["yaw"]:
            motion = rotate_packed(motion, spec["yaw"])
        if music is not None and self.beat_phase:
            music = np.concatenate([music, window_beat_phase(motion, music[:, FEATURE_CHANNELS["beat"]][:, 0])], axis=1)
        x = torch.from_numpy(np.ascontiguousarray(motion, dtype=np.float32))
        if self.normalizer is not None:
            x = self.normalizer.normalize(x)
        m = torch.from_numpy(np.ascontiguousarray(music, dtype=np.float32)) if music is not None \
            else torch.zeros(self.window, self.num_music)
        return {"motion": x, "music": m, "style": torch.tensor(self.styles.index(item.style), dtype=torch.long),
                "has_music": torch.tensor(has_music)}
