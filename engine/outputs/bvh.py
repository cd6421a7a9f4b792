"""BVH export and import of SMPL motions.

The file holds the SMPL skeleton: joint names and hierarchy from engine.body.skeleton, rest offsets
REST_OFFSETS * scale (the T-pose, every joint frame aligned with the world, as BVH expects).
The root (pelvis) has OFFSET 0 and six channels: its position (Motion.trans * scale) and its
rotation; every other joint has three rotation channels. Rotations are Euler angles in degrees,
channel order "Zrotation Xrotation Yrotation": the local matrix is Rz @ Rx @ Ry, the order most
mocap BVH files use and Blender's importer maps to its 'YXZ' Euler mode. Leaves end in an End
Site half the length of their last bone.

up_axis "Y" keeps SMPL's axes (Y up, facing +Z): Blender imports it with its default
axis_forward='-Z', axis_up='Y'. up_axis "Z" changes basis with (x, y, z) -> (x, -z, y) (Z up,
facing -Y, like Blender's own BVH export): import it with axis_forward='Y', axis_up='Z'.
Positions are mapped by that change of basis C, local rotations conjugated: R' = C R C^T.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..body import rotations as R
from ..body.motion import Motion
from ..body.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, REST_OFFSETS
from ..errors import EngineError
from ..files import written_whole

# Change of basis from SMPL's Y-up to Z-up: (x, y, z) -> (x, -z, y).
_Y_TO_Z = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_BASIS = {"Y": np.eye(3), "Z": _Y_TO_Z}
_ROOT_CHANNELS = "Xposition Yposition Zposition Zrotation Xrotation Yrotation"
_ROT_CHANNELS = "Zrotation Xrotation Yrotation"
_END_SITE_FRACTION = 0.5      # End Site length, as a fraction of the leaf's own bone
_HEAD_CHAIN = ("spine1", "spine2", "spine3", "neck", "head")  # pelvis -> head, to infer up axis and scale


def _children() -> list[list[int]]:
    kids: list[list[int]] = [[] for _ in range(NUM_JOINTS)]
    for j, p in enumerate(PARENTS):
        if p >= 0:
            kids[p].append(j)
    return kids


def _depth_first() -> list[int]:
    """Joint indices in the order the hierarchy is written (and the motion channels follow)."""
    kids, order, stack = _children(), [], [0]
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(reversed(kids[j]))
    return order


def _basis(up_axis: str) -> np.ndarray:
    key = str(up_axis).upper()
    if key not in _BASIS:
        raise EngineError(f"BVH up axis must be 'Y' or 'Z', got {up_axis!r}")
    return _BASIS[key]


def _check_scale(scale) -> float:
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise EngineError(f"BVH scale must be a positive number, got {scale!r}")
    return float(scale)


# ----------------------------------------------------------------------------- Euler ZXY

def matrix_to_euler_zxy(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) angles (z, x, y) in radians with m = Rz Rx Ry.

    m[2,1] = sin x; m[0,1] = -sin z cos x, m[1,1] = cos z cos x; m[2,0] = -cos x sin y,
    m[2,2] = cos x cos y. At gimbal lock (cos x ~ 0) y is set to 0 and z takes the whole turn.
    """
    cx = np.hypot(m[..., 2, 0], m[..., 2, 2])
    x = np.arctan2(m[..., 2, 1], cx)
    z = np.arctan2(-m[..., 0, 1], m[..., 1, 1])
    y = np.arctan2(-m[..., 2, 0], m[..., 2, 2])
    locked = cx < 1e-7
    z = np.where(locked, np.arctan2(m[..., 1, 0], m[..., 0, 0]), z)
    y = np.where(locked, 0.0, y)
    return np.stack([z, x, y], axis=-1)


def _axis_matrix(axis: str, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    o, i = np.zeros_like(angle), np.ones_like(angle)
    rows = {"X": [[i, o, o], [o, c, -s], [o, s, c]],
            "Y": [[c, o, s], [o, i, o], [-s, o, c]],
            "Z": [[c, -s, o], [s, c, o], [o, o, i]]}[axis]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """(..., K) radians about the K axes named by `order` (e.g. "ZXY") -> R_order[0] @ R_order[1] @ ..."""
    m = _axis_matrix(order[0], angles[..., 0])
    for k in range(1, len(order)):
        m = m @ _axis_matrix(order[k], angles[..., k])
    return m


# ----------------------------------------------------------------------------- writing

def write_bvh(motion: Motion, path, up_axis: str = "Y", scale: float = 1.0) -> Path:
    """Write `motion` as a BVH file (see the module docstring for axes and channels)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise EngineError(f"cannot write BVH: folder does not exist: {path.parent}")
    C = _basis(up_axis)
    scale = _check_scale(scale)
    poses = np.asarray(motion.poses, np.float64)
    trans = np.asarray(motion.trans, np.float64)
    T = poses.shape[0]
    if poses.shape != (T, NUM_JOINTS * 3) or trans.shape != (T, 3) or T == 0:
        raise EngineError(f"BVH export needs poses (T,{NUM_JOINTS * 3}) and trans (T,3) with T >= 1, "
                          f"got {poses.shape} and {trans.shape}")
    if not (np.isfinite(poses).all() and np.isfinite(trans).all()):
        raise EngineError("BVH export: the motion holds NaN or infinite values")
    if not (math.isfinite(motion.fps) and motion.fps > 0):
        raise EngineError(f"BVH export: frame rate must be positive, got {motion.fps}")

    rot = R.axis_angle_to_matrix(torch.as_tensor(poses.reshape(T, NUM_JOINTS, 3))).numpy()  # (T, 24, 3, 3)
    rot = C @ rot @ C.T
    order = _depth_first()
    euler = np.degrees(matrix_to_euler_zxy(rot[:, order]))       # (T, 24, 3) z, x, y
    euler = np.unwrap(euler, period=360.0, axis=0)               # no 360-degree jumps between frames
    root = (trans * scale) @ C.T                                  # (T, 3)
    data = np.concatenate([root, euler.reshape(T, -1)], axis=1)   # (T, 3 + 72)

    offsets = REST_OFFSETS * scale @ C.T
    digits = max(6, 6 + math.ceil(-math.log10(scale)))           # micrometre precision at any scale
    kids = _children()
    lines = ["HIERARCHY"]

    def joint(j: int, depth: int) -> None:
        pad = "  " * depth
        kind = "ROOT" if PARENTS[j] < 0 else "JOINT"
        lines.append(f"{pad}{kind} {JOINT_NAMES[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {_fmt(offsets[j], digits)}")
        lines.append(f"{pad}  CHANNELS {6 if PARENTS[j] < 0 else 3} {_ROOT_CHANNELS if PARENTS[j] < 0 else _ROT_CHANNELS}")
        for k in kids[j]:
            joint(k, depth + 1)
        if not kids[j]:
            lines.extend([f"{pad}  End Site", f"{pad}  {{",
                      f"{pad}    OFFSET {_fmt(offsets[j] * _END_SITE_FRACTION, digits)}", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    joint(0, 0)
    lines += ["MOTION", f"Frames: {T}", f"Frame Time: {1.0 / motion.fps:.10f}"]
    try:
        with written_whole(path) as (tmp,), open(tmp, "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
            np.savetxt(f, data, fmt=[f"%.{digits}f"] * 3 + ["%.6f"] * (data.shape[1] - 3))
    except OSError as e:
        raise EngineError(f"cannot write BVH file {path}: {e.strerror or e}") from None
    return path


def _fmt(v, digits: int) -> str:
    return " ".join(f"{x:.{digits}f}" for x in v)


# ----------------------------------------------------------------------------- reading

class _Node:
    def __init__(self, name: str, parent: "_Node | None"):
        self.name, self.parent = name, parent
        self.offset = np.zeros(3)
        self.channels: list[str] = []
        self.first = 0            # index of its first channel in a motion line
        self.end_site: np.ndarray | None = None   # its End Site's offset, for a leaf


class _EndSite:
    def __init__(self, owner: _Node):
        self.owner = owner


def _parse_hierarchy(tokens: list[str], path: Path) -> tuple[list[_Node], int]:
    """Joints in file order and the index of the token after the hierarchy."""
    nodes: list[_Node] = []
    stack: list[_Node | None] = []
    i, n_channels = 1, 0
    current: _Node | None = None
    try:
        while tokens[i].upper() != "MOTION":
            tok = tokens[i]
            key = tok.upper()
            if key in ("ROOT", "JOINT"):
                current = _Node(tokens[i + 1], stack[-1] if stack else None)
                nodes.append(current)
                i += 2
            elif key == "END":                  # "End Site": its OFFSET goes to the joint it ends
                current = _EndSite(stack[-1])
                i += 2
            elif tok == "{":
                stack.append(current)
                i += 1
            elif tok == "}":
                stack.pop()
                i += 1
            elif key == "OFFSET":
                offset = np.array([float(t) for t in tokens[i + 1:i + 4]])
                if isinstance(current, _EndSite):
                    current.owner.end_site = offset
                elif current is not None:
                    current.offset = offset
                i += 4
            elif key == "CHANNELS":
                k = int(tokens[i + 1])
                current.channels = [t.capitalize() for t in tokens[i + 2:i + 2 + k]]
                current.first = n_channels
                n_channels += k
                i += 2 + k
            else:
                raise ValueError(f"unexpected {tok!r}")
    except (IndexError, ValueError, AttributeError) as e:
        raise EngineError(f"not a valid BVH file {path}: bad hierarchy ({e})") from None
    return nodes, i


def _read_tokens(path: Path) -> list[str]:
    if not path.is_file():
        raise EngineError(f"BVH file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise EngineError(f"cannot read BVH file {path}: {e.strerror or e}") from None
    tokens = text.split()
    if not tokens or tokens[0].upper() != "HIERARCHY":
        raise EngineError(f"not a BVH file (no HIERARCHY): {path}")
    return tokens


def _read_motion(tokens: list[str], i: int, nodes: list[_Node], path: Path) -> tuple[np.ndarray, float]:
    """(frames, channels) values and the Frame Time, from the token after the hierarchy."""
    try:
        # tokens: MOTION Frames: N Frame Time: dt values...
        frames = int(tokens[i + 2])
        frame_time = float(tokens[i + 5])
        n_channels = sum(len(node.channels) for node in nodes)
        values = np.array(tokens[i + 6:i + 6 + frames * n_channels], dtype=np.float64)
        data = values.reshape(frames, n_channels)
    except (IndexError, ValueError) as e:
        raise EngineError(f"not a valid BVH file {path}: bad MOTION section ({e})") from None
    if frames == 0:
        raise EngineError(f"BVH file {path.name} has no frames")
    if not frame_time > 0:
        raise EngineError(f"BVH file {path.name}: Frame Time must be positive, got {frame_time}")
    return data, frame_time


def _local_rotations(node: _Node, data: np.ndarray) -> np.ndarray:
    """(frames, 3, 3) rotation of one joint from its rotation channels, in their file order."""
    axes = [(k, c[0]) for k, c in enumerate(node.channels) if c.endswith("rotation")]
    if not axes:
        return np.broadcast_to(np.eye(3), (len(data), 3, 3)).copy()
    cols = [node.first + k for k, _ in axes]
    return euler_to_matrix(np.radians(data[:, cols]), "".join(a for _, a in axes))


@dataclass
class BvhSkeletonMotion:
    """Any BVH, as read: joints (file order, parents before children), rest offsets in the
    file's units and axes, leaves' End Site offsets, per-frame local rotations and the root's
    position. Every joint's rest frame is the file's axes (BVH's convention)."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray          # (J,3)
    end_sites: np.ndarray        # (J,3), NaN where a joint has none
    rotations: np.ndarray        # (T,J,3,3) local rotations
    root_position: np.ndarray    # (T,3)
    frame_time: float

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])


def read_bvh_skeleton(path) -> BvhSkeletonMotion:
    """Read any BVH (any joint names, channel orders and units) without interpreting it."""
    path = Path(path)
    tokens = _read_tokens(path)
    nodes, i = _parse_hierarchy(tokens, path)
    data, frame_time = _read_motion(tokens, i, nodes, path)
    if sum(1 for n in nodes if n.parent is None) != 1:
        raise EngineError(f"BVH file {path.name} must have exactly one ROOT joint")
    index = {id(n): k for k, n in enumerate(nodes)}
    root = nodes[0]
    pos = np.tile(root.offset, (len(data), 1))
    for k, c in enumerate(root.channels):
        if c.endswith("position"):
            pos[:, "XYZ".index(c[0])] = data[:, root.first + k]
    return BvhSkeletonMotion(
        names=[n.name for n in nodes], parents=[index[id(n.parent)] if n.parent else -1 for n in nodes],
        offsets=np.array([n.offset for n in nodes]),
        end_sites=np.array([n.end_site if n.end_site is not None else np.full(3, np.nan) for n in nodes]),
        rotations=np.stack([_local_rotations(n, data) for n in nodes], axis=1), root_position=pos,
        frame_time=frame_time)


def read_bvh(path, up_axis: str | None = None, scale: float | None = None) -> Motion:
    """Read a BVH with the SMPL joint names into a Motion (Y up, metres).

    up_axis and scale are those the file was written with; None infers them from the
    skeleton (the pelvis-to-head chain points up, and its length against SMPL's gives the
    scale), so files from write_bvh read back with no arguments. Joints with other names are
    ignored as long as they do not sit between two SMPL joints; channels may come in any order.
    """
    path = Path(path)
    tokens = _read_tokens(path)
    nodes, i = _parse_hierarchy(tokens, path)
    by_name = {node.name: node for node in nodes}
    missing = [n for n in JOINT_NAMES if n not in by_name]
    if missing:
        raise EngineError(f"BVH file {path.name} lacks SMPL joints: {', '.join(missing[:5])}"
                          f"{' ...' if len(missing) > 5 else ''}")
    for j, name in enumerate(JOINT_NAMES):
        parent = by_name[name].parent
        want = JOINT_NAMES[PARENTS[j]] if PARENTS[j] >= 0 else None
        if (parent.name if parent else None) != want:
            raise EngineError(f"BVH file {path.name}: joint {name} hangs under "
                              f"{parent.name if parent else 'nothing'}, SMPL has it under {want or 'nothing'}")
    data, frame_time = _read_motion(tokens, i, nodes, path)
    frames = len(data)

    C = _basis(up_axis if up_axis is not None else _infer_up(by_name, path))
    scale = _check_scale(scale) if scale is not None else _infer_scale(by_name)

    rot = np.empty((frames, NUM_JOINTS, 3, 3))
    for j, name in enumerate(JOINT_NAMES):
        rot[:, j] = _local_rotations(by_name[name], data)
    rot = C.T @ rot @ C                                   # back to Y up
    pelvis = by_name[JOINT_NAMES[0]]
    pos = np.tile(pelvis.offset, (frames, 1))
    for k, c in enumerate(pelvis.channels):
        if c.endswith("position"):
            pos[:, "XYZ".index(c[0])] = data[:, pelvis.first + k]
    trans = pos @ C / scale                               # C^T p, row vectors
    poses = R.matrix_to_axis_angle(torch.as_tensor(rot)).numpy().reshape(frames, NUM_JOINTS * 3)
    return Motion(poses=poses, trans=trans, fps=_frame_rate(frame_time))


def _frame_rate(frame_time: float) -> float:
    """1 / Frame Time, snapped to the simplest rate that the printed Frame Time rounds from.

    Files print Frame Time with ~6 decimals (0.041667 for 24 fps, 0.033367 for 29.97).
    """
    fps = 1.0 / frame_time
    for digits in (0, 1, 2, 3):
        nice = round(fps, digits)
        if nice > 0 and abs(1.0 / nice - frame_time) <= 5.1e-7:
            return float(nice)
    return fps


def _chain(by_name) -> np.ndarray:
    return sum(by_name[n].offset for n in _HEAD_CHAIN)


def _infer_up(by_name, path: Path) -> str:
    up = _chain(by_name)
    axis = int(np.argmax(np.abs(up)))
    if up[axis] > 0 and axis in (1, 2) and abs(up[axis]) > 0.8 * np.linalg.norm(up):
        return "YZ"[axis - 1]
    raise EngineError(f"BVH file {path.name}: cannot tell its up axis from the skeleton "
                      "(spine should point along +Y or +Z); pass up_axis")


def _infer_scale(by_name) -> float:
    ref = sum(REST_OFFSETS[JOINT_INDEX[n]] for n in _HEAD_CHAIN)
    s = float(np.linalg.norm(_chain(by_name)) / np.linalg.norm(ref))
    nice = float(f"{s:.3g}")
    return nice if abs(s - nice) < 1e-5 * s else s
