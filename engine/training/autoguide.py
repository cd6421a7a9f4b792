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
from ..options import check_output_folder
from ..sampler import checkpoint


def check_compatible(main: checkpoint.Checkpoint, guide: checkpoint.Checkpoint) -> None:
    """Raise EngineError unless `guide` denoises in exactly `main`'s normalised space.

    The guide may take fewer inputs than the main network: no beat phase, no keys (a plain
    network guiding one fine-tuned into them), fewer styles. It then reads only the music features, and
    autoguidance, guide + w (main - guide), also amplifies what the main network does with the
    inputs the guide lacks, as classifier-free guidance would."""
    # The guide may know fewer styles, the first ones of the main model's (a fine-tune that
    # added data appends its styles): it reads the others as "any" (engine.api.denoiser).
    if main.styles[:len(guide.styles)] != guide.styles or guide.model.cfg.num_styles != len(guide.styles):
        raise EngineError(f"the guide knows the styles {guide.styles}, the main model {main.styles}")
    g, m = guide.model.cfg, main.model.cfg
    if g.music_channels > m.music_channels or (g.key_input and not m.key_input):
        raise EngineError("the guide takes inputs the main model lacks (beat phase or keys): "
                          "a guide may only take fewer")
    # The features both take (the beat phase follows them). A guide stored in a file whose main
    # network reads the beat phase (--its-guide on the shipped weights) has that file's longer normaliser.
    music = slice(0, g.music_channels)
    pairs = (("motion normaliser", main.normalizer.mean, main.normalizer.std, guide.normalizer.mean, guide.normalizer.std),
             ("music normaliser", main.music_normalizer.mean[music], main.music_normalizer.std[music],
              guide.music_normalizer.mean[music], guide.music_normalizer.std[music]))
    for what, main_mean, main_std, guide_mean, guide_std in pairs:
        if not (torch.allclose(main_mean, guide_mean, atol=1e-5) and torch.allclose(main_std, guide_std, atol=1e-5)):
            raise EngineError(f"the guide's {what} differs from the main model's: "
                              "train the guide on the same data")


def attach_guide(main_path: Path, guide_path: Path, out_path: Path, its_guide: bool = False) -> None:
    """Write `main_path`'s network and record plus `guide_path`'s network to `out_path`.
    `its_guide`: take the guide network stored in `guide_path` instead of its main network
    (a network fine-tuned from shipped weights keeping their guide)."""
    main = checkpoint.load(main_path)
    source = checkpoint.load(guide_path)
    # A few-step student samples in its own steps with its guidance distilled in: autoguided, it
    # would be run as a many-step model (its student record is not carried over), and as a guide
    # it denoises no noise level as a many-step network does (QA: taken without a word).
    for path, weights in ((main_path, main), (guide_path, source)):
        if weights.is_student:
            raise EngineError(f"{path} is a few-step student: autoguidance takes many-step networks (give its "
                              "teacher, or the run's model.safetensors)")
    if its_guide and source.guide is None:
        raise EngineError(f"{guide_path} holds no guide network")
    guide = source if not its_guide else checkpoint.Checkpoint(
        source.guide, source.normalizer, source.music_normalizer, source.styles, source.guide_info)
    check_compatible(main, guide)
    checkpoint.save(out_path, main.model, main.normalizer, main.music_normalizer, main.styles, main.info,
                    guide=guide.model, guide_info=guide.info)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine autoguide", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--main", type=Path, required=True, help="the main model's weights")
    p.add_argument("--guide", type=Path, required=True, help="the guide model's weights (same data, smaller)")
    p.add_argument("--its-guide", action="store_true",
                   help="use the guide network stored in --guide's file, not its main network")
    p.add_argument("--out", type=Path, required=True, help="weights file to write (may be --main itself)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (and is not --main)")
    args = p.parse_args(argv)
    try:
        if args.out.exists() and not args.force and args.out.resolve() != args.main.resolve():
            raise EngineError(f"{args.out} already exists: pass --force to overwrite it")
        check_output_folder(args.out.parent, "--out")      # before the work (QA: a traceback after it)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        attach_guide(args.main, args.guide, args.out, its_guide=args.its_guide)
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
