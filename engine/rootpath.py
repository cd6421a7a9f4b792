"""Keep a generated dancer on the floor area: dancers step and travel, but a long song must not
walk them off to infinity. The slow drift of the root (its low-pass part) is squashed radially
into a disc, the quick travel on top of it is kept as it was."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d


# The training dancers' furthest distance from the centre of the floor they used: median 3.2 m
# (quartiles 2.4-4.2 m) over the 68 sequences of tang2018 and JustLMD. The squash is gradual
# (tanh), so it slows travel well inside the radius: 3 m cut the travel that ballroom is made of
# (Div_k 9.07 against 9.38 at 4 m, FID_k alike; weights/TRAINING.md, "Pelvis snaps").
FLOOR_RADIUS = 4.0


def bound_root_path(trans: np.ndarray, fps: float, radius: float = FLOOR_RADIUS,
                    drift_seconds: float = 2.0) -> np.ndarray:
    """(T,3) Y-up root path -> same path with its drift kept within `radius` metres of the start."""
    out = trans.copy()
    xz = trans[:, [0, 2]] - trans[:1, [0, 2]]
    if len(xz) < 3:
        return out
    drift = gaussian_filter1d(xz, sigma=drift_seconds * fps, axis=0, mode="nearest")
    r = np.linalg.norm(drift, axis=1, keepdims=True)
    squashed = drift * (radius * np.tanh(r / radius) / np.maximum(r, 1e-9))
    out[:, [0, 2]] = trans[:1, [0, 2]] + xz - drift + squashed
    return out
