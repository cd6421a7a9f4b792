"""The motion channel layout, defined once: what each of the model's channels means.

Per frame (MODEL_FPS):
  contacts   4   foot-contact flags for skeleton.FOOT_JOINTS (1 = planted)
  root_vel   2   root displacement to the next frame on the floor plane (x, z), metres
  root_y     1   root height, metres
  rot6d    144   24 joint rotations, 6D form (rotations.matrix_to_6d), in skeleton order
The horizontal root is stored as velocity so that windows are translation invariant and can be
stitched by plain averaging; the absolute path is its running sum.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..defaults import MODEL_FPS, WINDOW_FRAMES   # noqa: F401  (the time grid: one definition, torch-free)
from . import rotations as R
from .skeleton import FOOT_INDICES, NUM_JOINTS, forward_kinematics, joint_indices

CONTACT_SPEED = 0.01         # metres per frame at MODEL_FPS under which a foot counts as planted (EDGE)

CONTACTS = slice(0, 4)
ROOT_VEL = slice(4, 6)
ROOT_Y = slice(6, 7)
ROT6D = slice(7, 7 + 6 * NUM_JOINTS)
NUM_CHANNELS = ROT6D.stop


def model_frames(frames, fps: float, length: int):
    """Frames at `fps` -> the nearest frames at MODEL_FPS, within [0, length)."""
    return np.clip(np.round(np.asarray(frames) / fps * MODEL_FPS).astype(int), 0, length - 1)


def joint_channels(joints) -> list[int]:
    """Channel indices of the 6D rotations of the given joints (names, body parts or indices)."""
    idx = joints if all(isinstance(j, int) for j in joints) else joint_indices(joints)
    return [ROT6D.start + 6 * j + k for j in idx for k in range(6)]


def foot_contacts(positions: torch.Tensor) -> torch.Tensor:
    """(T, 24, 3) positions at MODEL_FPS -> (T, 4) contact flags (last frame copies the previous)."""
    feet = positions[:, list(FOOT_INDICES)]
    speed = (feet[1:] - feet[:-1]).norm(dim=-1)
    speed = torch.cat([speed, speed[-1:]], dim=0)
    return (speed < CONTACT_SPEED).to(positions.dtype)


def pack(poses: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """(T,72) axis-angle + (T,3) root translation (Y up) at MODEL_FPS -> (T, NUM_CHANNELS)."""
    T = poses.shape[0]
    rotmats = R.axis_angle_to_matrix(poses.reshape(T, NUM_JOINTS, 3))
    out = poses.new_zeros(T, NUM_CHANNELS)
    out[:, CONTACTS] = foot_contacts(forward_kinematics(rotmats, trans))
    vel = trans[1:, [0, 2]] - trans[:-1, [0, 2]]
    out[:, ROOT_VEL] = torch.cat([vel, vel[-1:]], dim=0) if T > 1 else 0.0
    out[:, ROOT_Y] = trans[:, 1:2]
    out[:, ROT6D] = R.matrix_to_6d(rotmats).reshape(T, -1)
    return out


def root_path(x: torch.Tensor, start_xz=(0.0, 0.0)) -> torch.Tensor:
    """(T, NUM_CHANNELS) -> (T, 3) root positions: the running sum of the floor velocity."""
    xz = torch.cumsum(x[:, ROOT_VEL], dim=0) - x[:, ROOT_VEL]   # position before each step
    xz = xz + torch.as_tensor(start_xz, dtype=x.dtype)
    return torch.stack([xz[:, 0], x[:, ROOT_Y.start], xz[:, 1]], dim=-1)


def unpack(x: torch.Tensor, start_xz=(0.0, 0.0)):
    """(T, NUM_CHANNELS) -> (poses (T,72) axis-angle, trans (T,3), contacts (T,4))."""
    T = x.shape[0]
    rotmats = R.sixd_to_matrix(x[:, ROT6D].reshape(T, NUM_JOINTS, 6))
    poses = R.matrix_to_axis_angle(rotmats).reshape(T, -1)
    return poses, root_path(x, start_xz), x[:, CONTACTS]


PELVIS_6D = slice(ROT6D.start, ROT6D.start + 6)   # the pelvis's rotation: the body's facing and tilt


# rad/s. The training dancers' pelvis (tang2018 and JustLMD, 165,000 frames at 30 fps) turns
# faster than 11.8 rad/s in 0.1% of frames and faster than 16 in 0.01% (CMU salsa: 11.5 at its
# 99.9th percentile); the shipped network's snaps reach 24-90 (weights/TRAINING.md, "Pelvis
# snaps"). The finishing rebuilds faster turns, the training loss penalises them and the
# evaluation counts them.
MAX_TURN_RATE = 12.0


def pelvis_heading(x: torch.Tensor) -> torch.Tensor:
    """(..., NUM_CHANNELS) -> (...,) the pelvis's heading about the vertical (rotations.heading)."""
    return R.heading(R.sixd_to_matrix(x[..., PELVIS_6D]))


def pelvis_turns(x: torch.Tensor) -> torch.Tensor:
    """(..., T, NUM_CHANNELS) -> (..., T-1) the pelvis's change of heading between frames, radians,
    the short way round. Differentiable: the angle between consecutive forward directions on the
    floor, with no wrap to cut the gradient."""
    m = R.sixd_to_matrix(x[..., PELVIS_6D])
    forward = torch.stack([m[..., 0, 2], m[..., 2, 2]], dim=-1)      # (x, z) of the body's +Z
    a, b = forward[..., :-1, :], forward[..., 1:, :]
    cross = a[..., 1] * b[..., 0] - a[..., 0] * b[..., 1]             # heading = atan2(x, z)
    return torch.atan2(cross, (a * b).sum(-1))


def turn_about_vertical(x: torch.Tensor, angle) -> torch.Tensor:
    """(T, NUM_CHANNELS) -> the same motion turned about the vertical by `angle` radians (a number,
    or (T,) per frame): the pelvis's 6D columns and the floor velocity turn; every other channel
    is local to the pelvis or vertical and stays. Training turns whole windows this way; the
    sampler turns frame by frame to meet a keyed facing."""
    angle = torch.as_tensor(angle, dtype=x.dtype, device=x.device).expand(x.shape[0])
    turn = R.about_vertical(angle)                                         # (T, 3, 3)
    out = x.clone()
    columns = x[:, PELVIS_6D].reshape(-1, 2, 3)                            # the two stored columns
    out[:, PELVIS_6D] = (columns @ turn.transpose(1, 2)).reshape(-1, 6)
    vel = x[:, ROOT_VEL]
    vel3 = torch.stack([vel[:, 0], torch.zeros_like(vel[:, 0]), vel[:, 1]], dim=1)
    out[:, ROOT_VEL] = (turn @ vel3[:, :, None])[:, [0, 2], 0]
    return out


@dataclass
class Normalizer:
    """Per-channel standardisation fitted on the training set; stored in the weights file."""
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, data: torch.Tensor, min_std: float = 1e-2, flags: slice | None = CONTACTS) -> "Normalizer":
        """`flags`: channels holding 0/1 flags (the motion's contacts; None for music)."""
        flat = data.reshape(-1, data.shape[-1]).double()
        mean, std = flat.mean(0), flat.std(0).clamp_min(min_std)
        if flags is not None:
            # Flags map to [-1, 1] rather than stretching rare states.
            mean[flags], std[flags] = 0.5, 0.5
        return cls(mean.float(), std.float())

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x) + self.mean.to(x)

