"""Portable packed sources (`python -m engine data`): a corpus small enough to travel to a lent GPU.

A lent GPU machine takes the repository and whatever it carries in one upload of at most 64 MiB
(the repository with its weights is about 45 MB), and cannot reach the shared data. The
cache's layout, float16 and zipped, was 51 MB for tang2018 and JustLMD: it did not fit. Here:
- the joint rotations go as axis-angle on a grid of ROTATION_STEP radians (int16), coded as
  second differences in time, which a smooth dance keeps small; the coding wraps in int16 and
  two cumulative sums undo it exactly, so the only loss is the grid's rounding (at most
  ROTATION_STEP / 2 per component; 6D channels within about 1e-4);
- the contacts, root velocity and height as they are (float32), the music features as float16
  (rounding of about 5e-4 of their values, far below the data's own noise);
- each array channel by channel, its bytes regrouped by significance, then lzma.
tang2018 and JustLMD: about 17 MB.
"""
from __future__ import annotations

import lzma

import numpy as np
import torch

from ...body import layout as L
from ...body import rotations as R
from ...body.skeleton import NUM_JOINTS

FORMAT = "compact-1"
ROTATION_STEP = 1e-4                 # radians: the axis-angle grid
_HEAD = slice(0, L.ROT6D.start)      # contacts, root velocity, root height: stored as they are


def _squeeze(a: np.ndarray) -> np.ndarray:
    """(T, C) -> lzma of its bytes, channel by channel, most significant bytes of all values first."""
    a = np.ascontiguousarray(a.T.astype(a.dtype.newbyteorder("<")))
    planes = a.view(np.uint8).reshape(-1, a.itemsize).T
    return np.frombuffer(lzma.compress(np.ascontiguousarray(planes).tobytes(), preset=6), np.uint8)


def _unsqueeze(blob: np.ndarray, dtype, shape) -> np.ndarray:
    dtype = np.dtype(dtype).newbyteorder("<")
    frames, channels = (int(s) for s in shape)
    planes = np.frombuffer(lzma.decompress(blob.tobytes()), np.uint8).reshape(dtype.itemsize, -1)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(channels, frames).T


def encode_motion(motion: np.ndarray) -> dict[str, np.ndarray]:
    """(T, NUM_CHANNELS) model channels -> the arrays a compact file stores."""
    frames = len(motion)
    rotations = R.sixd_to_matrix(torch.as_tensor(motion[:, L.ROT6D], dtype=torch.float64).reshape(frames, NUM_JOINTS, 6))
    aa = R.matrix_to_axis_angle(rotations).reshape(frames, -1).numpy()
    grid = np.clip(np.round(aa / ROTATION_STEP), -32767, 32767).astype(np.int16)
    return {"motion_head": _squeeze(motion[:, _HEAD].astype(np.float32)),
            "motion_rotations": _squeeze(second_differences(grid)), "motion_shape": np.array(motion.shape, np.int64)}


def second_differences(grid: np.ndarray) -> np.ndarray:
    """(T, C) int16 -> its second differences in time (the first rows as they are), in int16
    arithmetic, which wraps: undo_second_differences gives back exactly `grid`."""
    step = grid.copy()
    step[1:] -= grid[:-1]
    second = step.copy()
    second[1:] -= step[:-1]
    return second


def undo_second_differences(second: np.ndarray) -> np.ndarray:
    return np.cumsum(np.cumsum(second, axis=0, dtype=np.int16), axis=0, dtype=np.int16)


def decode_motion(f) -> np.ndarray:
    """The arrays of encode_motion (a dict or an open .npz) -> (T, NUM_CHANNELS) float32."""
    frames, channels = (int(s) for s in f["motion_shape"])
    head = _unsqueeze(f["motion_head"], np.float32, (frames, _HEAD.stop))
    second = _unsqueeze(f["motion_rotations"], np.int16, (frames, 3 * NUM_JOINTS))
    grid = undo_second_differences(second)
    aa = torch.from_numpy(grid.astype(np.float64) * ROTATION_STEP).reshape(frames, NUM_JOINTS, 3)
    sixd = R.matrix_to_6d(R.axis_angle_to_matrix(aa)).reshape(frames, -1).numpy()
    out = np.empty((frames, channels), np.float32)
    out[:, _HEAD], out[:, L.ROT6D] = head, sixd
    return out


def encode_music(music: np.ndarray) -> dict[str, np.ndarray]:
    return {"music": _squeeze(music.astype(np.float16)), "music_shape": np.array(music.shape, np.int64)}


def decode_music(f) -> np.ndarray:
    return _unsqueeze(f["music"], np.float16, f["music_shape"]).astype(np.float32)
