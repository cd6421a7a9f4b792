"""How much of the real motion a network gives back from noised input:
`python -m engine probe [--weights W] [--t 20 250 800]`.

Held-out windows are noised to diffusion step t (20 of 1000 is nearly clean) and the network,
conditioned on their music and style, predicts the clean motion. Comparing the speed and the
jerk of its prediction with the truth's separates "the network cannot reproduce this" (or
"its estimate is rougher than any dancer") from anything the sampler or the guidance does.
This is how the missing root travel of the first weights was found, and where the network's
jitter lives (weights/TRAINING.md).

For a key-aware network it also measures how much it uses the keys: the same windows noised to
--key-t (heavily), predicted without keys and with a full-pose key every --key-seconds; the
error (normalised channels, mean square) on the keyed frames falls as the network learns them.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from ..body import layout as L
from ..body.skeleton import joint_positions
from ..errors import EngineError
from ..evaluation.metrics import jerk
from ..sampler import checkpoint
from ..sampler.diffusion import TRAIN_STEPS, cosine_alpha_bar, q_sample
from ..sampler.model import music_input, with_keys


def window_motion(raw: torch.Tensor) -> dict[str, float]:
    """Raw (N, T, NUM_CHANNELS) windows -> means of the root's speed on the floor and the
    root-relative joints' speed (m/s), and the joints' jerk (m/s^3, evaluation.metrics.jerk)."""
    root, local, jerks = [], [], []
    for w in raw.double():
        poses, trans, _ = L.unpack(w)
        pos = joint_positions(poses.numpy(), trans.numpy())
        root.append(np.linalg.norm(np.diff(pos[:, 0, [0, 2]], axis=0), axis=-1).mean() * L.MODEL_FPS)
        rel = pos - pos[:, :1]
        local.append(np.linalg.norm(np.diff(rel, axis=0), axis=-1).mean() * L.MODEL_FPS)
        jerks.append(jerk(pos, L.MODEL_FPS))
    return {"root": float(np.mean(root)), "joints": float(np.mean(local)), "jerk": float(np.mean(jerks))}


@torch.no_grad()
def reconstruction(ckpt: checkpoint.Checkpoint, motion: torch.Tensor, music: torch.Tensor,
                   styles: torch.Tensor, t: int = 20, seed: int = 0) -> dict[str, dict[str, float]]:
    """Raw motion (N, T, C), raw music (N, T, F), style indices (N,) -> window_motion of the
    truth and of the network's prediction from it noised to step t."""
    x0 = ckpt.normalizer.normalize(motion.float())
    steps = torch.full((len(x0),), int(t))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    cond = music_input(ckpt.model.cfg, ckpt.music_normalizer, music)
    if ckpt.model.cfg.key_input:                                   # nothing keyed
        cond = with_keys(cond)
    pred = ckpt.model(q_sample(x0, steps, noise, cosine_alpha_bar()), steps, cond, styles,
                      torch.ones(len(x0), dtype=torch.bool))
    return {"truth": window_motion(motion), "model": window_motion(ckpt.normalizer.denormalize(pred))}


@torch.no_grad()
def key_use(ckpt: checkpoint.Checkpoint, motion: torch.Tensor, music: torch.Tensor, styles: torch.Tensor,
            t: int, every: int, seed: int = 0) -> tuple[float, float]:
    """Raw motion (N, T, C) and music (N, T, F) -> the key-aware network's error on the keyed
    frames (a full-pose key every `every` frames) without keys and with them, at noise step t."""
    x0 = ckpt.normalizer.normalize(motion.float())
    steps = torch.full((len(x0),), int(t))
    x_t = q_sample(x0, steps, torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)), cosine_alpha_bar())
    cond, keep = music_input(ckpt.model.cfg, ckpt.music_normalizer, music), torch.ones(len(x0), dtype=torch.bool)
    mask = torch.zeros_like(x0, dtype=torch.bool)
    mask[:, ::every] = True
    errors = [(ckpt.model(x_t, steps, keyed, styles, keep) - x0)[mask].pow(2).mean().item()
              for keyed in (with_keys(cond), with_keys(cond, x0, mask))]
    return errors[0], errors[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="weights (default: the shipped model)")
    p.add_argument("--data", nargs="+", type=Path, default=None, help="dataset folders, as for engine.training.train")
    p.add_argument("--cache", type=Path, default=None,
                   help="preprocessing cache folder (default: the repo's .cache, as evaluate-inbetween's)")
    p.add_argument("--t", type=int, nargs="+", default=[20],
                   help="diffusion steps of the noise, 0-999 (default 20; several give one line each)")
    p.add_argument("--key-t", type=int, default=900, help="noise step of the key-use probe (default 900)")
    p.add_argument("--key-seconds", type=float, default=2.0, help="key spacing of the key-use probe (default 2)")
    args = p.parse_args(argv)
    if any(not 0 <= t < TRAIN_STEPS for t in args.t + [args.key_t]):
        print(f"error: --t and --key-t take diffusion steps from 0 to {TRAIN_STEPS - 1}", file=sys.stderr)
        return 2
    if not (math.isfinite(args.key_seconds) and args.key_seconds >= 1.0 / L.MODEL_FPS):
        print(f"error: --key-seconds must be at least a frame ({1.0 / L.MODEL_FPS:.3f} s), got {args.key_seconds}",
              file=sys.stderr)
        return 2
    return _probe(args)        # its mistakes and Ctrl-C: one line (engine.__main__.run_tool)


def _probe(args) -> int:
    from .data import DEFAULT_SOURCES, REPOSITORY_CACHE, default_validation_names, existing_sources, load_corpus
    ckpt = checkpoint.load(args.weights or checkpoint.DEFAULT_WEIGHTS)
    if ckpt.is_student:
        raise EngineError(f"{args.weights} is a few-step student, which denoises only at its own steps: probe its "
                          "teacher")
    sources = existing_sources(args.data or DEFAULT_SOURCES)
    _, val = load_corpus(sources, (args.cache or REPOSITORY_CACHE).resolve()).split(default_validation_names())
    n = L.WINDOW_FRAMES
    picked = [(it, s) for it in val if it.music is not None and it.style in ckpt.styles
              for s in range(0, len(it.motion) - n + 1, n)]
    if not picked:
        print("error: no held-out song with music in a style these weights know", file=sys.stderr)
        return 2
    motion = torch.stack([torch.from_numpy(it.motion[s:s + n]) for it, s in picked])
    music = torch.stack([torch.from_numpy(it.music[s:s + n]) for it, s in picked])
    styles = torch.tensor([ckpt.styles.index(it.style) for it, _ in picked])
    print(f"{len(picked)} held-out windows of {n} frames")
    for k, t in enumerate(args.t):
        out = reconstruction(ckpt, motion, music, styles, t=t)
        lines = [("truth", out["truth"])] if k == 0 else []
        for name, m in lines + [(f"t = {t}", out["model"])]:
            print(f"{name:>8}: root {m['root']:.3f} m/s, root-relative joints {m['joints']:.3f} m/s, "
                  f"jerk {m['jerk']:.0f} m/s^3", flush=True)
    if ckpt.model.cfg.key_input:
        every = max(1, int(round(args.key_seconds * L.MODEL_FPS)))
        without, keyed = key_use(ckpt, motion, music, styles, args.key_t, every)
        print(f"keys every {args.key_seconds:g} s, noise t = {args.key_t}: error on the keyed frames {without:.3f} "
              f"without keys, {keyed:.3f} with them ({100 * (1 - keyed / without):.0f}% less)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
