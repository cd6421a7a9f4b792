"""Keep a generated dancer on the floor area: dancers step and travel, but a long song must not
walk them off to infinity, and a user may ask for a small stage or for dancing in place.

The path is split into its slow drift (a 2 s Gaussian low-pass) and the quick travel on top
(steps, sways). By default the drift is squashed radially into a disc of FLOOR_RADIUS and the
quick travel is kept as it was. With a stage radius r the quick travel is squashed into a disc
of q = r/2 (between IN_PLACE_SWAY and QUICK_TRAVEL) and the drift into r - q, so the root never
leaves the disc of radius r while steps and sways keep their size; r = 0 keeps only the sway,
within IN_PLACE_SWAY. Each squash is a tanh of the distance: smooth, slope 1 near the centre.
This runs before the feet are cleaned (engine.finishing.feet), which plants and re-steps the feet on the
new path, so pulling the root in does not make the feet slide.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..defaults import FLOOR_RADIUS

# Dancing in place: the pelvis still sways and shifts its weight from foot to foot, within this
# many metres of the start (about half a step: a step of the training dancers is 0.3-0.6 m).
IN_PLACE_SWAY = 0.15
QUICK_TRAVEL = 0.5         # m: a step or a lunge on top of the drift, kept whole on a big stage
DRIFT_SECONDS = 2.0


def _squash(xz: np.ndarray, radius: float) -> np.ndarray:
    """Radial tanh squash of (T,2) offsets into the open disc of `radius`."""
    r = np.linalg.norm(xz, axis=1, keepdims=True)
    return xz * (radius * np.tanh(r / radius) / np.maximum(r, 1e-9))


def bound_root_path(trans: np.ndarray, fps: float, radius: float | None = None,
                    drift_seconds: float = DRIFT_SECONDS, held: np.ndarray | None = None) -> np.ndarray:
    """(T,3) Y-up root path -> the same path kept on the stage around its first frame:
    radius None = the default floor (drift within FLOOR_RADIUS), 0 = in place, r > 0 = within r m.
    held: (T,) bool, frames where the dancer stands still (engine.sampler.hold). The path is bounded
    as if they were cut out, and they keep the correction of the frame before them (the first
    frame after, for a hold at the start): a dancer waiting in a silence does not slide."""
    if held is not None and held.any() and not held.all():
        moving = np.flatnonzero(~held)
        correction = np.zeros_like(trans)
        correction[moving] = bound_root_path(trans[moving], fps, radius, drift_seconds) - trans[moving]
        before = np.maximum.accumulate(np.where(~held, np.arange(len(held)), -1))
        source = np.where(before >= 0, before, moving[0])
        return trans + correction[source]
    out = trans.copy()
    xz = trans[:, [0, 2]] - trans[:1, [0, 2]]
    if len(xz) < 3:
        return out
    drift = gaussian_filter1d(xz, sigma=drift_seconds * fps, axis=0, mode="nearest")
    if radius is None:
        bounded = xz - drift + _squash(drift, FLOOR_RADIUS)
    else:
        # The drift is taken with the path point-reflected about its first frame, so that drift
        # and quick travel both start at the start, the centre of the stage.
        pad = min(len(xz) - 1, int(4 * drift_seconds * fps))
        reflected = np.concatenate([-xz[pad:0:-1], xz])
        drift = gaussian_filter1d(reflected, sigma=drift_seconds * fps, axis=0, mode="nearest")[pad:]
        quick = float(np.clip(radius / 2, IN_PLACE_SWAY, QUICK_TRAVEL))
        bounded = _squash(xz - drift, quick)
        if radius > quick:
            bounded = bounded + _squash(drift, radius - quick)
    out[:, [0, 2]] = trans[:1, [0, 2]] + bounded
    return out
