"""Pack dataset folders into portable files: `python -m engine data --out DIR`.

Each source becomes one .npz (motion, music features, names and styles) that
`python -m engine train --data FILE.npz ...` reads in place of the raw folder, so a GPU machine
needs neither the raw data nor librosa. The files are compact (engine.training.data.packed: about
17 MB for tang2018 and JustLMD), to travel with the repository to a lent GPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...errors import EngineError
from .cache import DEFAULT_SOURCES, cache_beside, detect_kind, export_source


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", type=Path, default=None,
                   help="dataset folders (default: ../shared/data/tang2018 and ../shared/data/justlmd)")
    p.add_argument("--aist-music", type=Path, default=None, help="AIST++ music folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the packed files")
    p.add_argument("--cache", type=Path, default=None,
                   help="preprocessing cache folder (default: .cache beside OUT, as train's: OUT holds only the "
                        "packed files, which travel to a lent GPU)")
    p.add_argument("--force", action="store_true", help="replace packed files already in OUT")
    args = p.parse_args(argv)
    try:
        jobs = []
        for source in args.data or DEFAULT_SOURCES:       # every name checked before anything is written
            source = Path(source).resolve()
            if not source.exists():
                raise EngineError(f"data folder not found: {source}")
            target = args.out / f"{detect_kind(source)}-{source.name}.npz"
            if target.exists() and not args.force:
                raise EngineError(f"{target} already exists: pass --force to overwrite it")
            clash = next((s for s, t in jobs if t == target), None)
            if clash is not None:        # the second would replace the first
                raise EngineError(f"{clash} and {source} would both be packed as {target.name}: pack them into "
                                  "two --out folders")
            jobs.append((source, target))
        for source, target in jobs:
            path = export_source(source, target, args.cache or cache_beside(args.out), args.aist_music)
            print(f"{source} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
