"""JustLMD: Just Dance choreographies reconstructed to SMPL from gameplay video (motion only).

Each choreography folder holds smplfull.json: per frame ("000000", ...) the camera (K, R = I,
T = 0) and annots[0] with EasyMocap's SMPL parameters: poses (72, the first 3 zero), Rh (global
rotation), Th (global translation), shapes. 30 fps.

Coordinates. The parameters live in the camera frame of the video (OpenCV: x right, y down,
z away from the camera), so an upright dancer has Rh near 180 degrees about x. EasyMocap
applies Rh about the SMPL model origin, not about the pelvis (vertices = R(Rh) v + Th), so the
pelvis is at R(Rh) J0 + Th with J0 the pelvis of the rest model. World = CAMERA_TO_WORLD @ camera,
a 180-degree turn about x: (x, y, z) -> (x, -y, -z). That gives Y up with the dancer facing +Z
(towards the camera), as SMPL faces. Measured on the six choreographies: the camera is nearly
level (a plane fitted to the feet's floor contacts is within 2-5 degrees of +Y on five of them;
the sixth, with little depth travel, gives 13 degrees), so no further tilt is removed; depth and
height drift of the monocular fit are absorbed by the per-frame floor tracking.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ...body import rotations as R
from ...body.layout import MODEL_FPS
from ...errors import EngineError
from .sequence import DanceSequence, put_on_floor, resample

SOURCE_FPS = 30.0
STYLE = "pop"
CAMERA_TO_WORLD = np.diag([1.0, -1.0, -1.0])    # OpenCV camera (Y down, Z forward) -> Y up
# Pelvis of the neutral SMPL rest model in model coordinates (metres). The body shape moves it
# by a centimetre or two, which only shifts the root path by a similar amount.
SMPL_PELVIS = np.array([-0.0018, -0.2233, 0.0282])
MIN_RUN_S = 2.0                                  # shorter stretches between missing frames are dropped


def camera_to_world(body_pose: np.ndarray, Rh: np.ndarray, Th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EasyMocap camera-frame parameters -> (poses (T,72) with the global rotation, pelvis (T,3) Y up)."""
    rot = R.axis_angle_to_matrix(torch.as_tensor(Rh, dtype=torch.float64)).numpy()     # (T,3,3)
    pelvis_cam = rot @ SMPL_PELVIS + Th
    world_rot = CAMERA_TO_WORLD @ rot
    poses = np.array(body_pose, dtype=np.float64)
    poses[:, :3] = R.matrix_to_axis_angle(torch.as_tensor(world_rot)).numpy()
    return poses, pelvis_cam @ CAMERA_TO_WORLD.T


def _runs(frames: list[dict | None]) -> list[slice]:
    runs, start = [], None
    for i, f in enumerate(frames + [None]):
        if f is not None and start is None:
            start = i
        elif f is None and start is not None:
            runs.append(slice(start, i))
            start = None
    return runs


def _read(path: Path) -> list[dict | None]:
    """Per frame (in frame-number order, gaps filled with None): annots[0] with finite numbers."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"cannot read {path}: {e}") from None
    numbered = {int(k): v for k, v in data.items()}
    if not numbered:
        return []
    frames: list[dict | None] = []
    for i in range(min(numbered), max(numbered) + 1):
        annots = numbered.get(i, {}).get("annots") or []
        a = annots[0] if annots else None
        if a is not None:
            values = np.concatenate([np.ravel(a["poses"]), np.ravel(a["Rh"]), np.ravel(a["Th"])])
            if values.size != 78 or not np.isfinite(values).all():
                a = None
        frames.append(a)
    return frames


def load_choreography(path, name: str | None = None) -> list[DanceSequence]:
    """One smplfull.json -> sequences (one per stretch of frames without gaps)."""
    path = Path(path)
    name = name or path.parent.name
    frames = _read(path)
    out = []
    runs = [r for r in _runs(frames) if r.stop - r.start >= MIN_RUN_S * SOURCE_FPS]
    for k, run in enumerate(runs):
        part = frames[run]
        body = np.array([np.ravel(a["poses"])[:72] for a in part])
        Rh = np.array([np.ravel(a["Rh"]) for a in part])
        Th = np.array([np.ravel(a["Th"]) for a in part])
        poses, trans = camera_to_world(body, Rh, Th)
        poses, trans = resample(poses, trans, SOURCE_FPS, MODEL_FPS)
        trans = put_on_floor(poses, trans, MODEL_FPS, track_drift=True)
        label = name if len(runs) == 1 else f"{name}_part{k}"
        out.append(DanceSequence(label, STYLE, poses, trans, MODEL_FPS))
    if not out:
        warnings.warn(f"justlmd: {path} has no run of {MIN_RUN_S:.0f} s with a body; skipped")
    return out


def load_justlmd(root) -> list[DanceSequence]:
    """Every choreography under `root` (folders holding smplfull.json), style "pop", no audio."""
    root = Path(root)
    files = [root / "smplfull.json"] if (root / "smplfull.json").exists() else sorted(root.glob("*/smplfull.json"))
    if not files:
        raise EngineError(f"no smplfull.json in {root} or its subfolders")
    return [seq for f in files for seq in load_choreography(f)]
