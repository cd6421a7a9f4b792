"""Curves through keyed values: how a correction known at a few keyed frames is spread over the
frames between them (engine.finishing.editing's key offsets, engine.sampler.facing's keyed facing),
and the smoothstep ease the finishing steps rebuild turns, swings and releases with. Numpy only
(no torch: the retargeting imports it), so unit_vectors lives here too."""
from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicHermiteSpline
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

GRAVITY = 9.81   # m/s^2


def offset_curve(key_frames: np.ndarray, key_values: np.ndarray, length: int, fade: float | None,
                 paced: float = 1.0, travel: bool = False) -> np.ndarray:
    """(K,) increasing frames and (K, D) values -> (length, D): a C1 cubic (Hermite) through the
    keys over the gaps between them. At a key inside or at the edge of a run of consecutive keys
    its slope is the distance-weighted mean of the neighbouring secants (np.gradient), i.e. the
    run's own rate of change, so the motion flows into the run without a kink; at an isolated
    key it is 0, or with `travel` (a correction that moves the dancer along the floor) the
    monotone slope of its neighbouring secants (monotone_slopes), as at a pair of keys alone.
    Keys at most `paced` frames
    apart count as a run (keys that pace the motion, engine.defaults.PACED_KEY_SECONDS). Outside
    the keys it fades to zero over `fade` frames, landing with zero slope, or holds the end
    values (slope 0 at the end keys) when `fade` is None."""
    frames = np.arange(length, dtype=np.float64)
    key_frames = np.asarray(key_frames, dtype=np.float64)
    values = np.asarray(key_values, dtype=np.float64)
    if fade is not None:
        fade = max(1.0, fade)
        key_frames = np.concatenate([[key_frames[0] - fade], key_frames, [key_frames[-1] + fade]])
        values = np.concatenate([np.zeros((1, values.shape[1])), values, np.zeros((1, values.shape[1]))])
    if len(key_frames) == 1:
        return np.repeat(values, length, axis=0)
    slopes = np.gradient(values, key_frames, axis=0) if len(key_frames) > 2 else np.zeros_like(values)
    # An isolated key (no key within `paced` frames before or after it) gets slope 0: the
    # correction stands still there, so the body passes through the key with exactly its own
    # velocity, and the correction changes mid-gap where nothing is asked of the pose. Between
    # keys that pace the motion there is no such gap: paused at every key, the correction shook
    # the body at the keys' rate.
    gaps = np.diff(key_frames)
    isolated = np.ones(len(key_frames), bool)
    isolated[1:] &= gaps > paced
    isolated[:-1] &= gaps > paced
    # A correction of the travel is different: keyed places off the drawn path make it carry the
    # dancer from key to key, and stopped at every key it moved the body in surges, the hips at
    # 0.27x their speed around each key (QA: full poses every 4 s, 2.1 m apart from the draw).
    # It flows through a key where it goes on the same way, and stops only where it turns back.
    # A run's edge keeps its run's rate into the gap beside it, as seed motion carries into what
    # follows (bounded there, LAFAN1's 60-frame gaps erred 1.5 cm more). Two keys alone are no
    # rate to carry on: a pair a frame apart took the dancer 0.2 m past the next keyed place (QA).
    if travel:
        run = np.cumsum(np.r_[0, gaps > paced])                 # which run of keys each key is in
        alone = isolated | (np.bincount(run)[run] == 2)
        slopes[alone] = monotone_slopes(key_frames, values)[alone]
    else:
        slopes[isolated] = 0.0
    slopes[[0, -1]] = 0.0                 # land on zero (or on the held value) with zero slope
    out = CubicHermiteSpline(key_frames, values, slopes, axis=0, extrapolate=False)(frames)
    out[frames < key_frames[0]] = values[0]
    out[frames > key_frames[-1]] = values[-1]
    return out


def monotone_slopes(key_frames: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(K, D) slopes at keys (K,) of values (K, D) that keep a cubic through them monotone between
    keys (Fritsch & Carlson 1980, as PCHIP): the weighted harmonic mean of the secants on either
    side where they agree in sign, else 0 (a turning point, or a value held); 0 at both ends."""
    h = np.diff(key_frames)[:, None]
    secant = np.diff(values, axis=0) / h
    slopes = np.zeros_like(values)
    if len(key_frames) < 3:
        return slopes
    d0, d1, h0, h1 = secant[:-1], secant[1:], h[:-1], h[1:]
    w0, w1 = 2 * h1 + h0, h1 + 2 * h0
    agree = d0 * d1 > 0
    safe0, safe1 = np.where(agree, d0, 1.0), np.where(agree, d1, 1.0)
    slopes[1:-1] = np.where(agree, (w0 + w1) / (w0 / safe0 + w1 / safe1), 0.0)
    return slopes


def dip_knots(key_frames, key_values, fade: float) -> tuple[np.ndarray, np.ndarray]:
    """offset_curve knots for corrections that are a dip or a rise near their keys, not a new
    level: between keys more than two fades apart the correction returns to zero (knots of zero
    a fade after one key and a fade before the next). key_frames (K,) increasing, key_values (K, D)."""
    values = np.asarray(key_values, np.float64)
    frames, out = [key_frames[0]], [values[0]]
    for a, b, value in zip(key_frames[:-1], key_frames[1:], values[1:]):
        if b - a > 2 * fade:
            frames += [a + fade, b - fade]
            out += [np.zeros_like(value), np.zeros_like(value)]
        frames.append(b)
        out.append(value)
    return np.asarray(frames, np.float64), np.asarray(out)


def jump_ease_frames(heights: np.ndarray, fps: float, crouch: float = 0.0) -> np.ndarray:
    """(K,) frames a jump_curve takes to rise from its crouch to each height (K,) >= 0, or to fall
    back: sqrt(6 h / g), h from the crouch's bottom, so that the body accelerates at most g."""
    rise = np.clip(np.asarray(heights, np.float64), 0.0, None) * (1.0 + crouch)
    return np.maximum(1.0, np.sqrt(6.0 * rise / GRAVITY) * fps)


def jump_curve(key_frames: np.ndarray, heights: np.ndarray, length: int, fps: float,
               hang: float = np.inf, crouch: float = 0.0) -> np.ndarray:
    """(K,) increasing frames and (K,) heights >= 0 to be off the floor there -> (length,): the
    heights, rising from 0 before a key off the floor (after one on it, or none) and falling back
    to 0 after it, each over jump_ease_frames (0.55 s for 0.5 m): eased so (zero slope at takeoff,
    apex and landing), the body accelerates at most g, and slows into the apex as a free fall
    does. Timed by the fall alone (sqrt(2 h / g)), it decelerated at 3 g into the apex, a pop
    with no hang, and a 12 cm key hopped in 3 frames (QA). Monotone between knots (no
    overshoot). Two keys off the floor stay off it between them unless they are further apart
    than their two rises and `hang` frames (then it lands and takes off again). `crouch`: a
    share of each jump's height that the body sinks below 0 to push off from and to land into,
    eased in and out over the time of a fall that deep (stopped at the floor's height, a
    landing came to rest within a frame from 1.5 m/s: QA)."""
    key_frames = np.asarray(key_frames, np.float64)
    heights = np.asarray(heights, np.float64)
    out = np.zeros(length)
    if not (heights > 0).any():
        return out
    depth = crouch * np.clip(heights, 0.0, None)
    ease = jump_ease_frames(heights, fps, crouch)             # rise or fall
    settle = jump_ease_frames(depth, fps)                     # into the crouch, or out of it
    up = heights > 0
    frames, knots = [], []

    def knot(frame: float, value: float, before: float) -> None:
        """A knot at `frame`, where it falls between the last one and `before` (the next key)."""
        if (frames[-1] if frames else -np.inf) < frame < before:
            frames.append(frame)
            knots.append(value)

    for i, f in enumerate(key_frames):
        following = key_frames[i + 1] if i + 1 < len(key_frames) else np.inf
        if up[i] and (i == 0 or not up[i - 1] or f - key_frames[i - 1] > ease[i - 1] + ease[i] + hang):
            if depth[i] > 0:                                   # sinks to push off
                knot(f - ease[i] - settle[i], 0.0, f)
                knot(f - ease[i], -depth[i], f)
            else:
                knot(f - ease[i], 0.0, f)                      # takes off, unless a key is closer
        frames.append(f)
        knots.append(heights[i])
        if up[i] and (i + 1 == len(key_frames) or not up[i + 1] or following - f > ease[i] + ease[i + 1] + hang):
            if depth[i] > 0:                                   # lands into a crouch, and rises
                knot(f + ease[i], -depth[i], following)
                knot(f + ease[i] + settle[i], 0.0, following)
            else:
                knot(f + ease[i], 0.0, following)              # lands
    frames, knots = np.asarray(frames), np.asarray(knots)[:, None]
    at = np.arange(length, dtype=np.float64)
    curve = CubicHermiteSpline(frames, knots, monotone_slopes(frames, knots), axis=0, extrapolate=False)
    inside = (at >= frames[0]) & (at <= frames[-1])
    out[inside] = curve(at[inside])[:, 0]
    out[at < frames[0]] = knots[0, 0]
    out[at > frames[-1]] = knots[-1, 0]
    return out


# An ease by smoothstep over n frames changes fastest, mid-way, at 1.5x its mean rate.
SMOOTHSTEP_PEAK_OVER_MEAN = 1.5


def smoothstep(u):
    """3u^2 - 2u^3 for u in [0, 1] (numpy or torch): from 0 to 1 with zero slope at both ends."""
    return u * u * (3 - 2 * u)


def smoothstep_slope(u):
    """The slope of smoothstep at u, 6u(1 - u): its speed over its mean speed (1.5 at u = 0.5)."""
    return 6 * u * (1 - u)


def unit_vectors(v: np.ndarray) -> np.ndarray:
    """(..., 3) vectors scaled to length 1 (zero vectors stay zero)."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def envelope(x: np.ndarray, reach: int, mode: str = "nearest") -> np.ndarray:
    """(T,...) values along time -> a smooth envelope over them: the most within `reach` frames
    either side, Gaussian-smoothed over reach/2, so that whatever is needed on a frame begins
    some frames before it and ends as long after (scipy.ndimage `mode` at the ends)."""
    return gaussian_filter1d(maximum_filter1d(x, 2 * reach + 1, mode=mode, axis=0), reach / 2, mode=mode, axis=0)


def unwrapped_rotation_vectors(delta: np.ndarray) -> np.ndarray:
    """(K,3) rotation vectors, each the short way round (angle <= pi) -> the same rotations with
    each one taken the long way round (angle - 2 pi) where that is closer to the previous one, so
    that corrections of nearly half a turn on consecutive keys do not swing through zero (a
    whole turn) between them (a key's correction, engine.finishing.editing; a written key's
    offset, engine.outputs.retarget.onto_given_poses)."""
    out = delta.copy()
    angle = np.linalg.norm(out, axis=1)
    for i in np.flatnonzero((angle[1:] + angle[:-1]) > np.pi) + 1:   # only there can it help
        a = np.linalg.norm(out[i])
        alt = out[i] * (1.0 - 2.0 * np.pi / a)
        if np.linalg.norm(alt - out[i - 1]) < np.linalg.norm(out[i] - out[i - 1]):
            out[i] = alt
    return out
