"""Speed benchmark: `python -m engine.bench [--device auto|cpu|cuda] [--steps K] [--long-minutes M]`.

Prints, for this device: seconds to generate 30 s and 180 s of dance, the real-time factor, and
peak memory; then the same for an EDGE-sized configuration of this engine (width 512, 8 layers,
50 steps, guidance with 2 passes, no autoguidance) built from the same code (on 10 s of song by default: it is
slow on a CPU), and the ratio between them per second of dance. The
EDGE-sized network has random weights: speed does not depend on training. Optionally also a
long song (--long-minutes 10) for memory. A benchmark, not a test: it prints figures.
"""
from __future__ import annotations

import argparse
import gc
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from . import checkpoint
from .api import generate, load_weights, resolve_device
from .example import make_click_track
from .model import Denoiser, ModelConfig

SR = 22050


def _params(ckpt: checkpoint.Checkpoint) -> str:
    """"3.3M", or "3.3M+3.3M" when the weights carry an autoguidance guide (it runs every step too)."""
    text = f"{ckpt.model.num_parameters() / 1e6:.1f}M"
    return text + (f"+{ckpt.guide.num_parameters() / 1e6:.1f}M" if ckpt.guide is not None else "")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _edge_sized_weights(folder: Path, shipped: checkpoint.Checkpoint) -> Path:
    cfg = ModelConfig.edge_sized(num_styles=shipped.model.cfg.num_styles)
    path = folder / "edge_sized.safetensors"
    checkpoint.save(path, Denoiser(cfg), shipped.normalizer, shipped.music_normalizer, shipped.styles, {"note": "benchmark only"})
    return path


def _time(seconds: float, weights, steps: int, device: str) -> tuple[float, float]:
    wave = make_click_track(seconds, 120.0, SR)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    generate(wave, sample_rate=SR, steps=steps, weights=weights, device=device)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--steps", type=int, default=20, help="sampling steps of the shipped configuration")
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--lengths", type=float, nargs="+", default=[30.0, 180.0], help="song lengths in seconds")
    p.add_argument("--long-minutes", type=float, default=0.0, help="also time a song this many minutes long")
    p.add_argument("--edge-lengths", type=float, nargs="+", default=[10.0],
                   help="song lengths for the EDGE-sized configuration (it is slow on a CPU; default 10 s)")
    p.add_argument("--skip-edge", action="store_true", help="skip the EDGE-sized comparison")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    shipped = load_weights(args.weights, device)
    print(f"device: {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
          f"{', ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}), torch {torch.__version__}")
    lengths = list(args.lengths) + ([args.long_minutes * 60] if args.long_minutes else [])
    rows = [("shipped", args.weights, args.steps, _params(shipped), lengths)]
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_edge:
            edge = _edge_sized_weights(Path(tmp), shipped)
            rows.append(("EDGE-sized", edge, 50, _params(load_weights(edge, device)), args.edge_lengths))
        _time(2.0, args.weights, 2, str(device))  # warm-up: first-call overheads are not the model's
        results = {}
        print(f"{'config':<11} {'params':>11} {'steps':>5} {'song':>7} {'seconds':>8} {'x real time':>11} {'peak RSS':>9} {'peak GPU':>9}")
        for name, weights, steps, params, row_lengths in rows:
            for seconds in row_lengths:
                elapsed, gpu_mb = _time(seconds, weights, steps, str(device))
                results[(name, seconds)] = elapsed
                print(f"{name:<11} {params:>11} {steps:>5} {seconds:>6.0f}s {elapsed:>8.2f} {seconds / elapsed:>11.1f} "
                      f"{_peak_rss_mb():>7.0f}MB {gpu_mb:>7.0f}MB", flush=True)
        if not args.skip_edge:
            for seconds in args.edge_lengths:
                # Compare seconds of compute per second of dance when the lengths differ.
                ours = min(results[k] / k[1] for k in results if k[0] == "shipped")
                ratio = results[("EDGE-sized", seconds)] / seconds / ours
                print(f"per second of dance, the shipped configuration is {ratio:.1f}x faster than the EDGE-sized one")
    print("(peak RSS is the whole process's maximum so far, so later rows include earlier ones)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
