"""Rotation conversions (torch, any leading shape, float32 or float64).

Quaternions are (w, x, y, z). The 6D form (Zhou et al., CVPR 2019) is the rotation matrix's
first two columns, concatenated: (..., 6) = [m00, m10, m20, m01, m11, m21].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_EPS = 1e-12


def axis_angle_to_quat(aa: torch.Tensor) -> torch.Tensor:
    angle = aa.norm(dim=-1, keepdim=True)
    half = 0.5 * angle
    # sin(x/2)/x, with its Taylor series near 0 so small angles keep full precision.
    small = angle < 1e-6
    scale = torch.where(small, 0.5 - angle * angle / 48.0, torch.sin(half) / angle.clamp_min(1e-6))
    return torch.cat([torch.cos(half), aa * scale], dim=-1)


def quat_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    q = F.normalize(q, dim=-1)
    q = torch.where(q[..., :1] < 0, -q, q)  # shortest arc: angle in [0, pi]
    sin_half = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, q[..., :1])
    small = sin_half < 1e-6
    scale = torch.where(small, 2.0 + angle * angle / 12.0, angle / sin_half.clamp_min(1e-6))
    return q[..., 1:] * scale


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


def quat_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle (rad, in [0, pi]) of the rotation between unit quaternions a and b (..., 4); q and -q
    are the same rotation."""
    return 2 * torch.acos((a * b).sum(-1).abs().clamp(max=1.0))


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = F.normalize(q, dim=-1).unbind(-1)
    m = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m: torch.Tensor) -> torch.Tensor:
    """Shepperd's method: pick the largest of the four candidate denominators for stability."""
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    candidates = torch.stack([
        torch.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
    ], dim=-2)  # (..., 4, 4): row k is 4*q_k*q
    diag = torch.stack([candidates[..., k, k] for k in range(4)], -1)
    best = diag.argmax(dim=-1, keepdim=True)
    row = torch.gather(candidates, -2, best.unsqueeze(-1).expand(best.shape[:-1] + (1, 4))).squeeze(-2)
    q = F.normalize(row, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    return quat_to_matrix(axis_angle_to_quat(aa))


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    return quat_to_axis_angle(matrix_to_quat(m))


def matrix_to_6d(m: torch.Tensor) -> torch.Tensor:
    return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)


def sixd_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt on the two stored columns; the third is their cross product."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def heading(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) world rotations of the body -> (...,) heading about the vertical (Y): the angle
    of the body's forward (+Z) on the floor, atan2(x, z)."""
    return torch.atan2(m[..., 0, 2], m[..., 2, 2])


def wrap_angle(angle):
    """Angles (numbers, numpy arrays or tensors) -> the same angles in [-pi, pi): a change of
    heading taken the short way round."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def vertical_axis_angle(angle: torch.Tensor) -> torch.Tensor:
    """(...,) angles -> (..., 3) rotation vectors about the vertical (Y); a positive angle raises the heading."""
    return torch.stack([torch.zeros_like(angle), angle, torch.zeros_like(angle)], dim=-1)


def about_vertical(angle: torch.Tensor) -> torch.Tensor:
    """(...,) angles -> (..., 3, 3) rotations about the vertical (Y); a positive angle raises the heading."""
    return axis_angle_to_matrix(vertical_axis_angle(angle))


def axis_angle_to_6d(aa: torch.Tensor) -> torch.Tensor:
    return matrix_to_6d(axis_angle_to_matrix(aa))


def quat_slerp(q0: torch.Tensor, q1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation along the shortest arc; t broadcasts against (..., 1)."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    linear = sin_theta < 1e-6
    w0 = torch.where(linear, 1 - t, torch.sin((1 - t) * theta) / sin_theta.clamp_min(1e-6))
    w1 = torch.where(linear, t, torch.sin(t * theta) / sin_theta.clamp_min(1e-6))
    return F.normalize(w0 * q0 + w1 * q1, dim=-1)


def resample_quats(quats: torch.Tensor, src_times: torch.Tensor, dst_times: torch.Tensor) -> torch.Tensor:
    """Slerp a (T, ..., 4) quaternion track sampled at increasing src_times onto dst_times.

    Times outside the source range clamp to its ends.
    """
    src_times = src_times.to(quats.dtype)
    dst_times = dst_times.to(quats.dtype).clamp(src_times[0], src_times[-1])
    idx = torch.searchsorted(src_times, dst_times, right=True).clamp(1, len(src_times) - 1)
    t0, t1 = src_times[idx - 1], src_times[idx]
    frac = ((dst_times - t0) / (t1 - t0).clamp_min(1e-12)).clamp(0, 1)
    frac = frac.reshape((-1,) + (1,) * (quats.dim() - 1))
    return quat_slerp(quats[idx - 1], quats[idx], frac)


def resample_axis_angle(aa: torch.Tensor, src_times: torch.Tensor, dst_times: torch.Tensor) -> torch.Tensor:
    return quat_to_axis_angle(resample_quats(axis_angle_to_quat(aa), src_times, dst_times))


def resample_linear(values: torch.Tensor, src_times: torch.Tensor, dst_times: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of a (T, ...) track onto dst_times (clamped at the ends)."""
    src_times = src_times.to(values.dtype)
    dst_times = dst_times.to(values.dtype).clamp(src_times[0], src_times[-1])
    idx = torch.searchsorted(src_times, dst_times, right=True).clamp(1, len(src_times) - 1)
    t0, t1 = src_times[idx - 1], src_times[idx]
    frac = ((dst_times - t0) / (t1 - t0).clamp_min(1e-12)).clamp(0, 1)
    frac = frac.reshape((-1,) + (1,) * (values.dim() - 1))
    return values[idx - 1] * (1 - frac) + values[idx] * frac
