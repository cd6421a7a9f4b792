"""Put a guide network into a weights file, for autoguidance (engine.sampler.diffusion.autoguided):

    python -m engine autoguide --main runs/finetune/model.safetensors \\
        --guide runs/main/model.safetensors --out weights/dance.safetensors

The guide must be a model of the same task, trained by engine.training.train on the same data, so that
its normalisers, styles and channel layout are the main model's. Karras et al. (NeurIPS 2024)
make it smaller or train it for less time; the shipped guide is the main network's own earlier
stage (weights/TRAINING.md). The output keeps the main file's record (`info`) and adds the
guide's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..errors import EngineError
from ..sampler import checkpoint


def check_compatible(main: checkpoint.Checkpoint, guide: checkpoint.Checkpoint) -> None:
    """Raise EngineError unless `guide` denoises in exactly `main`'s normalised space."""
    if guide.styles != main.styles:
        raise EngineError(f"the guide knows the styles {guide.styles}, the main model {main.styles}")
    pairs = (("motion normaliser", main.normalizer, guide.normalizer),
             ("music normaliser", main.music_normalizer, guide.music_normalizer))
    for what, a, b in pairs:
        if not (torch.allclose(a.mean, b.mean, atol=1e-5) and torch.allclose(a.std, b.std, atol=1e-5)):
            raise EngineError(f"the guide's {what} differs from the main model's: "
                              "train the guide on the same data")


def attach_guide(main_path: Path, guide_path: Path, out_path: Path) -> None:
    """Write `main_path`'s network and record plus `guide_path`'s network to `out_path`."""
    main = checkpoint.load(main_path)
    guide = checkpoint.load(guide_path)
    check_compatible(main, guide)
    checkpoint.save(out_path, main.model, main.normalizer, main.music_normalizer, main.styles, main.info,
                    guide=guide.model, guide_info=guide.info)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine autoguide", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--main", type=Path, required=True, help="the main model's weights")
    p.add_argument("--guide", type=Path, required=True, help="the guide model's weights (same data, smaller)")
    p.add_argument("--out", type=Path, required=True, help="weights file to write (may be --main itself)")
    args = p.parse_args(argv)
    try:
        attach_guide(args.main, args.guide, args.out)
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
