"""Gaussian diffusion over motion windows: noise schedule, training loss, and the sampler.

The model predicts x0 (EDGE). Sampling is DDIM (Song et al., ICLR 2021, eta = 0) over ONE global
sequence: at every step the song is cut into overlapping windows, each window's x0 is predicted,
the predictions are blended into one global x0, the animator's constraints are pasted into it,
and the global noisy sequence steps from that. Every window therefore sees the same x0 where
they overlap, so there are no seams to hide (a MultiDiffusion-style fusion, Bar-Tal et al. 2023).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..body import layout as L
from ..body import rotations as R
from ..body.skeleton import FOOT_INDICES, NUM_JOINTS, forward_kinematics
from ..defaults import LATE_GUIDANCE_FROM_T, SAMPLING_SOLVERS

TRAIN_STEPS = 1000


def cosine_alpha_bar(num_steps: int = TRAIN_STEPS, s: float = 0.008) -> torch.Tensor:
    """Cumulative signal level per step (Nichol & Dhariwal 2021), clipped away from 0 and 1."""
    t = torch.linspace(0, 1, num_steps + 1, dtype=torch.float64)
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    ab = (f / f[0])[1:]
    return ab.clamp(1e-5, 0.99999).float()


def q_sample(x0, t, noise, alpha_bar):
    ab = alpha_bar.to(x0.device)[t].view(-1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


# ---------------------------------------------------------------- training loss

@dataclass
class LossWeights:
    """EDGE's auxiliary terms, plus one for the root's path. Positions are compared in decimetres
    so that their squared errors sit on the same scale as the standardised channels, which keeps
    all weights near 1.

    `root`: the horizontal root velocity is 2 of the 151 channels of the plain reconstruction
    term, and the position term is root-relative, so without its own term nothing much teaches
    the dancer to travel: weights trained without it reproduced about a sixth of the real root
    speed even from nearly clean input (weights/TRAINING.md)."""
    velocity: float = 1.0
    positions: float = 1.0
    foot: float = 1.0
    root: float = 1.0
    # `turn`: the pelvis turning between two frames faster than the real dancers ever do
    # (layout.MAX_TURN_RATE) where the true window does not. The network squeezes its turns into
    # such snaps (weights/TRAINING.md, "Where the whip near keys comes from"); an estimate that
    # averages two facings shrinks the pelvis's forward on the floor, so its heading swings fast,
    # and the plain terms hardly see it (a few frames of one channel pair). 0 keeps EDGE's loss.
    turn: float = 0.0
    # `jitter`: the root-relative joint positions' error above about 5 Hz (what a Gaussian of
    # JITTER_SIGMA_FRAMES leaves out), where the dancers have almost no motion. The network's
    # clean-motion estimate is 1.7-8.5x rougher than the dancers at every noise level
    # (weights/TRAINING.md, "Where the network's jitter lives"). A move whose timing the network
    # is unsure of costs little here (it lies in 1-4 Hz). Tried in a CPU fine-tune, it smoothed the
    # estimate but still calmed the moves, so the shipped weights do without it. 0 keeps EDGE's loss.
    jitter: float = 0.0


# About 5 Hz and up: the term sees what this Gaussian leaves out, 18% of a 3 Hz move's amplitude,
# 75% at 8 Hz, 99% at 15 Hz.
JITTER_SIGMA_FRAMES = 1.0


def _positions_dm(x: torch.Tensor, normalizer: L.Normalizer) -> torch.Tensor:
    """Normalised (B,T,C) -> joint positions in decimetres (B,T,24,3), the root kept at x = z = 0.

    The horizontal path is left to the velocity channels: integrating it here would let one early
    error dominate the whole window."""
    raw = normalizer.denormalize(x)
    B, T, _ = raw.shape
    rot = R.sixd_to_matrix(raw[..., L.ROT6D].reshape(B, T, NUM_JOINTS, 6))
    zero = torch.zeros_like(raw[..., L.ROOT_Y.start])
    root = torch.stack([zero, raw[..., L.ROOT_Y.start], zero], dim=-1)
    return forward_kinematics(rot, root) * 10.0


def training_loss(model, batch: dict, alpha_bar: torch.Tensor, normalizer: L.Normalizer,
                  weights: LossWeights = LossWeights(), music_drop: float = 0.25,
                  style_drop: float = 0.25, generator: torch.Generator | None = None) -> dict:
    """One diffusion training loss over a batch of normalised windows (EDGE's four terms)."""
    x0 = batch["motion"]
    B, device = x0.shape[0], x0.device
    t = torch.randint(0, len(alpha_bar), (B,), device=device, generator=generator)
    noise = torch.randn(x0.shape, device=device, generator=generator)
    x_t = q_sample(x0, t, noise, alpha_bar)
    # Classifier-free guidance: drop music and style independently so both marginals are learned.
    keep_music = batch["has_music"] & (torch.rand(B, device=device, generator=generator) >= music_drop)
    style = torch.where(torch.rand(B, device=device, generator=generator) < style_drop,
                        torch.zeros_like(batch["style"]), batch["style"])
    pred = model(x_t, t, batch["music"], style, keep_music)

    simple = F.mse_loss(pred, x0)
    velocity = F.mse_loss(pred[:, 1:] - pred[:, :-1], x0[:, 1:] - x0[:, :-1])
    pos_pred, pos_true = _positions_dm(pred, normalizer), _positions_dm(x0, normalizer)
    positions = F.mse_loss(pos_pred, pos_true)
    raw_pred, raw_true = normalizer.denormalize(pred), normalizer.denormalize(x0)
    # Feet that the data says are planted should not move in the prediction.
    contact = (raw_true[..., L.CONTACTS] > 0.5)[:, :-1]                             # (B, T-1, 4)
    # Feet move with the root, so the root's own displacement is added back for this term.
    root_step = raw_pred[:, :-1, L.ROOT_VEL] * 10.0
    root_step = torch.stack([root_step[..., 0], torch.zeros_like(root_step[..., 0]), root_step[..., 1]], -1)
    foot_vel = pos_pred[:, 1:, list(FOOT_INDICES)] - pos_pred[:, :-1, list(FOOT_INDICES)] + root_step[:, :, None]
    foot = (foot_vel.pow(2).sum(-1) * contact).mean()
    root = F.mse_loss(pred[..., L.ROOT_VEL], x0[..., L.ROOT_VEL])
    total = (simple + weights.velocity * velocity + weights.positions * positions + weights.foot * foot
             + weights.root * root)
    out = {"simple": simple.detach(), "velocity": velocity.detach(), "positions": positions.detach(),
           "foot": foot.detach(), "root": root.detach()}
    if weights.turn:
        # At every noise level: the facing is settled at high noise, where two competing facings
        # average into a short forward vector whose heading swings. Charged only where alpha-bar
        # >= 0.5, the term did not cut the snaps (weights/TRAINING.md, "The turn term").
        turn = turn_excess(raw_pred, raw_true).mean()
        total = total + weights.turn * turn
        out["turn"] = turn.detach()
    if weights.jitter:
        jitter = high_band(pos_pred - pos_true).pow(2).mean()
        total = total + weights.jitter * jitter
        out["jitter"] = jitter.detach()
    return {"loss": total, **out}


def high_band(x: torch.Tensor, sigma_frames: float = JITTER_SIGMA_FRAMES) -> torch.Tensor:
    """(B, T, ...) -> the same shape: what a Gaussian low-pass in time leaves out."""
    flat = x.reshape(*x.shape[:2], -1)
    return (flat - lowpass_in_time(flat, sigma_frames)).reshape(x.shape)


def turn_excess(pred: torch.Tensor, true: torch.Tensor, fps: float = L.MODEL_FPS) -> torch.Tensor:
    """Raw (B, T, C) windows -> (B,) how far the predicted pelvis turns past the dancers' fastest:
    per frame, the squared radians by which the predicted heading change exceeds both
    MAX_TURN_RATE and the true window's own change, summed over each window (a snap is a few frames)."""
    bound = L.MAX_TURN_RATE / fps
    allowed = L.pelvis_turns(true).abs().clamp(min=bound)
    return F.relu(L.pelvis_turns(pred).abs() - allowed).pow(2).sum(-1)


# ---------------------------------------------------------------- sampling

def ddim_timesteps(steps: int, num_train: int = TRAIN_STEPS) -> list[int]:
    """Evenly spaced training steps, from the noisiest down to 0."""
    steps = max(1, min(steps, num_train))
    return sorted({int(round(v)) for v in torch.linspace(num_train - 1, 0, steps).tolist()}, reverse=True)


def ddim_step(x: torch.Tensor, x0: torch.Tensor, a_t: torch.Tensor, a_next: torch.Tensor,
              eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """One DDIM step (Song et al., ICLR 2021) from signal level a_t to a_next, given the x0 estimate.
    eta 0 is deterministic; eta > 0 replaces part of the predicted noise with fresh `noise` (the
    shape of x): sigma = eta * sqrt((1 - a_next) / (1 - a_t) * (1 - a_t / a_next)); eta 1 is DDPM's
    ancestral step."""
    eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    if eta <= 0:
        return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    sigma = eta * ((1 - a_next) / (1 - a_t) * (1 - a_t / a_next)).sqrt()
    return a_next.sqrt() * x0 + (1 - a_next - sigma ** 2).clamp(min=0).sqrt() * eps + sigma * noise


def dpm2m_estimate(x0: torch.Tensor, previous: tuple[torch.Tensor, float] | None,
                   lam_t: float, lam_next: float) -> torch.Tensor:
    """DPM-Solver++(2M)'s data estimate (Lu et al. 2022, "DPM-Solver++", multistep, second order):
    the x0 a DDIM step from log-SNR lam_t to lam_next should use, extrapolated along the last two
    estimates (x0 now, `previous` = (x0, its log-SNR) one step back; None on the first step).
    DDIM is the first-order case (the estimate as it is); the second order costs no extra network
    pass and follows the sampling ODE more closely in the same number of steps."""
    if previous is None:
        return x0
    x0_prev, lam_prev = previous
    h, h_prev = lam_next - lam_t, lam_t - lam_prev
    if h_prev <= 0:     # two steps at one signal level (500+ steps reach the schedule's clipped end): first order
        return x0
    half_over_r = 0.5 * h / h_prev
    return (1 + half_over_r) * x0 - half_over_r * x0_prev


def solver_step(x: torch.Tensor, x0: torch.Tensor, previous, timesteps: list[int], k: int, solver: str,
                alpha_bar: torch.Tensor, eta: float = 0.0, noise: torch.Tensor | None = None):
    """The step from timesteps[k] to timesteps[k + 1] with the estimate x0, as `solver` takes it
    (DPM-Solver++(2M): the estimate extrapolated along `previous`, first order into the last time;
    DDIM: as it is); returns (the next state, the history for the step after)."""
    t, t_next = timesteps[k], timesteps[k + 1]
    estimate = x0
    if solver == "dpm2m" and k + 2 < len(timesteps):
        lam_t = log_snr(alpha_bar[t])
        estimate = dpm2m_estimate(x0, previous, lam_t, log_snr(alpha_bar[t_next]))
        previous = (x0, lam_t)
    return ddim_step(x, estimate, alpha_bar[t], alpha_bar[t_next], eta, noise), previous


def log_snr(a: torch.Tensor) -> float:
    """lambda = log(alpha / sigma) of signal level alpha-bar `a`."""
    return 0.5 * math.log(float(a) / (1 - float(a)))


def window_starts(length: int, window: int) -> list[int]:
    """Starts of overlapping windows (stride = half a window) covering [0, length)."""
    if length <= window:
        return [0]
    stride = window // 2
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def blend_weights(window: int, first: bool, last: bool) -> torch.Tensor:
    """Per-frame weights of one window's prediction: a raised cosine that fades at inner edges."""
    ramp = torch.sin(torch.linspace(0, math.pi, window + 2)[1:-1]).clamp_min(1e-3)
    half = window // 2
    if first:
        ramp[:half] = 1.0
    if last:
        ramp[half:] = 1.0
    return ramp


@dataclass
class Inpainting:
    """Known values in the model's normalised channel space, pasted into every x0 estimate."""
    values: torch.Tensor   # (L, C) normalised
    mask: torch.Tensor     # (L, C) bool


def sample(denoise: Callable, music: torch.Tensor, *, window: int, steps: int,
           alpha_bar: torch.Tensor, generator: torch.Generator, channels: int,
           inpainting: Inpainting | None = None, batch_windows: int = 32,
           progress: Callable[[float], None] | None = None, timesteps: list[int] | None = None,
           eta: float = 0.0, project: Callable[[torch.Tensor, float], torch.Tensor] | None = None,
           solver: str = "ddim", paste_final: bool = True) -> torch.Tensor:
    """Sampling (DDIM, or DPM-Solver++(2M) with `solver`) over a whole song. music (L, F) per frame;
    returns the normalised motion (L, C).

    `denoise(x_t (N,W,C), t (N,), music (N,W,F)) -> x0 (N,W,C)` is the (guided) model.
    Windows are processed `batch_windows` at a time so memory stays bounded for long songs.
    `timesteps` (noisiest first) replaces the even schedule of `steps`: a few-step student's own.
    `eta` > 0 makes the steps stochastic (ddim_step), with noise drawn from `generator` on the CPU,
    so a seed still gives the same dance on any device.
    `project(x0 (L, C), signal level alpha-bar of the step) -> x0` reshapes every blended estimate
    before the in-painting is pasted (engine.sampler.facing: the keyed facing).
    `solver` "dpm2m" steps with DPM-Solver++(2M)'s extrapolated estimate (dpm2m_estimate; eta 0
    only), first order on the first step and on the last (into t = 0, where the extrapolation's
    ratio of log-SNR steps blows up: the usual "lower order final").
    `paste_final` False returns the last estimate as the network makes it on the in-painted frames
    too (the values steered every step before it): for a caller that meets them with offsets
    joining the free frames at a continuous velocity (engine.finishing.editing). Pasted there, the
    free frames next to a known run jumped into it (a hand at 7.5 m/s into a regenerated range).
    """
    if solver not in SAMPLING_SOLVERS:
        raise ValueError(f"solver must be one of {SAMPLING_SOLVERS}, got {solver!r}")
    if solver != "ddim" and eta > 0:
        raise ValueError("eta > 0 needs the ddim solver")
    length = music.shape[0]
    device = music.device
    starts = window_starts(length, window)
    weights = torch.zeros(length, device=device)
    per_window = []
    for i, s in enumerate(starts):
        w = blend_weights(window, i == 0, i == len(starts) - 1).to(device)
        per_window.append(w)
        weights[s:s + window] += w
    music_windows = torch.stack([music[s:s + window] for s in starts])

    x = torch.randn((length, channels), generator=generator, device="cpu").to(device)
    timesteps = list(timesteps) if timesteps is not None else ddim_timesteps(steps, len(alpha_bar))
    ab = alpha_bar.to(device)
    previous = None   # (x0 estimate, its log-SNR) of the step before, for the second-order solver
    for k, t in enumerate(timesteps):
        x_windows = torch.stack([x[s:s + window] for s in starts])
        x0_windows = torch.cat([
            denoise(x_windows[i:i + batch_windows], torch.full((len(x_windows[i:i + batch_windows]),), t, device=device),
                    music_windows[i:i + batch_windows])
            for i in range(0, len(starts), batch_windows)
        ])
        x0 = torch.zeros_like(x)
        for s, w, pred in zip(starts, per_window, x0_windows):
            x0[s:s + window] += w[:, None] * pred
        x0 = x0 / weights[:, None]
        if project is not None:
            x0 = project(x0, float(ab[t]))
        own = x0
        if inpainting is not None:
            x0 = torch.where(inpainting.mask, inpainting.values, x0)
        if k + 1 < len(timesteps):
            noise = torch.randn(x.shape, generator=generator, device="cpu").to(device) if eta > 0 else None
            x, previous = solver_step(x, x0, previous, timesteps, k, solver, ab, eta, noise)
        else:
            x = x0 if paste_final else own
        if progress is not None:
            progress((k + 1) / len(timesteps))
    return x


def lowpass_in_time(x: torch.Tensor, sigma_frames: float) -> torch.Tensor:
    """Gaussian low-pass of (N, W, C) windows along W (edges replicated); sigma 0 returns x."""
    if sigma_frames <= 0 or x.shape[1] < 2:
        return x
    radius = int(math.ceil(3 * sigma_frames))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma_frames) ** 2)
    n, w, c = x.shape
    rows = x.permute(0, 2, 1).reshape(n * c, 1, w)
    rows = F.pad(rows, (radius, radius), mode="replicate")
    return F.conv1d(rows, (kernel / kernel.sum()).view(1, 1, -1)).reshape(n, c, w).permute(0, 2, 1)


def _extrapolate(good: torch.Tensor, bad: torch.Tensor, weight: float, lowpass_frames: float) -> torch.Tensor:
    """bad + weight * (good - bad), with the guidance's push (good - bad) low-passed in time
    when lowpass_frames > 0: good + (weight - 1) * lowpass(good - bad)."""
    if lowpass_frames <= 0:
        return bad + weight * (good - bad)
    return good + (weight - 1) * lowpass_in_time(good - bad, lowpass_frames)


def guided(model, style: torch.Tensor, guidance: float, late_guidance: float | None = None,
           late_from_t: int = LATE_GUIDANCE_FROM_T, lowpass_frames: float = 0.0) -> Callable:
    """Classifier-free guidance (Ho & Salimans 2022) as a denoiser with the sampler's signature.

    `late_guidance`, when given, replaces `guidance` at training steps t <= late_from_t: guidance
    in a limited interval of noise levels (Kynkaenniemi et al., NeurIPS 2024). The dance's shape
    is decided at high noise; at low noise a strong weight only amplifies frame-to-frame jitter.
    `lowpass_frames` > 0 guides only the slow part of the motion: the push from the unconditioned
    to the conditioned prediction is Gaussian-low-passed in time (sigma in frames) before it is
    amplified, so guidance strengthens the moves without amplifying the two passes' frame-to-frame
    disagreement (frequency-decoupled guidance, as Sadat et al. 2025 do for images).
    A weight of 1 uses only the conditioned pass; otherwise both passes run in one batch.
    """
    def denoise(x_t, t, music):
        n = x_t.shape[0]
        styles = style.expand(n)
        weight = guidance if late_guidance is None or int(t[0]) > late_from_t else late_guidance
        if weight == 1.0:
            return model(x_t, t, music, styles, torch.ones(n, dtype=torch.bool, device=x_t.device))
        keep = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)]).to(x_t.device)
        out = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([music, music]),
                    torch.cat([styles, torch.zeros_like(styles)]), keep)
        return _extrapolate(out[:n], out[n:], weight, lowpass_frames)
    return denoise


def _near_runs_share(mask: torch.Tensor, taper_frames: float) -> torch.Tensor:
    """(B, W, C) key mask -> (B, W) share of autoguidance's push kept: 0 on frames inside runs
    of keyed frames (two or more in a row: what the sampler in-paints), rising linearly to 1
    `taper_frames` away; 1 everywhere in a window without such runs."""
    keyed = mask.abs().amax(-1) > 0.5
    run = keyed.clone()
    run[:, 1:-1] &= keyed[:, :-2] | keyed[:, 2:]
    run[:, 0] &= keyed[:, 1]
    run[:, -1] &= keyed[:, -2]
    frames = torch.arange(mask.shape[1], device=mask.device, dtype=torch.float32)
    apart = (frames[:, None] - frames[None, :]).abs()                        # (W, W)
    nearest = torch.where(run[:, None, :], apart[None], torch.full_like(apart, float("inf"))[None]).amin(-1)
    return (nearest / taper_frames).clamp(max=1.0)


def autoguided(main: Callable, guide: Callable, weight: float, lowpass_frames: float = 0.0,
               keyed_taper_frames: float = 0.0) -> Callable:
    """Autoguidance (Karras et al., "Guiding a Diffusion Model with a Bad Version of Itself",
    NeurIPS 2024) as a denoiser with the sampler's signature: guide + weight * (main - guide).

    `guide` is a weaker model of the same task (smaller, or trained for less time). Its errors
    are the main model's errors, only larger (here: a calmer dancer), so stepping away from it,
    past the main model, undoes some of them without narrowing the dances the way a stronger
    classifier-free weight does. Weight 1 is the main model alone.

    The last step (t = 0) uses the main model alone: its input is already clean and its
    prediction is the result, so extrapolating there only adds the two networks' disagreement
    about the finest detail to the dance (on validation clips: more foot contact errors, PFC).
    `lowpass_frames` > 0 low-passes the push (main - guide) in time before amplifying it (see `guided`).
    `keyed_taper_frames` > 0, for a key-aware main network (its conditioning ends with the key
    mask, engine.sampler.model.with_keys): the push fades out towards in-painted runs of keys
    (_near_runs_share). The guide reads no keys, so the push there is mostly what the main network
    makes of them, and amplified it set a limb off in a burst at a regenerated range's join.
    """
    def denoise(x_t, t, music):
        good = main(x_t, t, music)
        if weight == 1.0 or int(t[0]) == 0:
            return good
        bad = guide(x_t, t, music)
        if keyed_taper_frames > 0:
            share = _near_runs_share(music[..., -L.NUM_CHANNELS:], keyed_taper_frames)
            if bool((share < 1).any()):
                push = good - bad if lowpass_frames <= 0 else lowpass_in_time(good - bad, lowpass_frames)
                return good + (weight - 1.0) * share[..., None] * push
        return _extrapolate(good, bad, weight, lowpass_frames)
    return denoise
