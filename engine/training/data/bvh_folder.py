"""A folder of BVH files of any humanoid skeleton as training motion (no music): each file
retargeted to SMPL (engine.outputs.retarget.bvh_to_smpl) at its own frame rate, the header's
Frame Time, and named after its file; the folder's name is the style. CMU salsa's files, whose
header states the wrong rate, have their own loader (cmu_salsa.py) on top of load_bvh_file."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

from ...body.layout import MODEL_FPS
from ...errors import EngineError
from ...outputs.retarget import RetargetError, bvh_to_smpl
from .sequence import DanceSequence, put_on_floor, resample

MIN_SECONDS = 2.0
# A header's frame rate outside this is a broken file, not a capture (BVH exporters write 24-240).
FPS_RANGE = (1.0, 1000.0)


def style_of(folder: Path) -> str:
    """The style a folder's dances take: its name, lower case, runs of other characters as "_"."""
    return re.sub(r"[^a-z0-9]+", "_", folder.resolve().name.lower()).strip("_") or "bvh"


def load_bvh_file(path, style: str, name: str | None = None, fps: float | None = None,
                  skip_seconds: float = 0.0) -> DanceSequence | None:
    """One BVH -> a DanceSequence at MODEL_FPS, its feet on the floor (None, with a warning, if
    under MIN_SECONDS). `fps`: the capture's true rate where the header's is known to be wrong
    (default: the header's); `skip_seconds`: dropped from the start (a solver settling)."""
    path = Path(path)
    try:
        poses, trans, frame_time = bvh_to_smpl(path)
    except RetargetError as e:
        raise EngineError(f"{path.name}: cannot retarget its skeleton to SMPL: {e}") from None
    if fps is None:
        fps = 1.0 / frame_time if frame_time > 0 else 0.0
        if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
            raise EngineError(f"{path.name}: its Frame Time ({frame_time:g} s) is no frame rate "
                              f"between {FPS_RANGE[0]:g} and {FPS_RANGE[1]:g} fps")
    start = int(round(skip_seconds * fps))
    poses, trans = poses[start:], trans[start:]
    if len(poses) < MIN_SECONDS * fps:
        warnings.warn(f"{path.name} has under {MIN_SECONDS:.0f} s of motion; skipped")
        return None
    poses, trans = resample(poses, trans, fps, MODEL_FPS)
    # One floor for a whole take left flat stances centimetres up where a kneel or tiptoe reached
    # lower (CMU salsa's 60_01: 4-5 cm): the floor is tracked per second, as for tang2018.
    trans = put_on_floor(poses, trans, MODEL_FPS, track_drift=True)
    return DanceSequence(name or path.stem, style, poses, trans, MODEL_FPS)


def load_bvh_folder(root) -> list[DanceSequence]:
    """Every *.bvh in `root` (or `root` itself, one file), style style_of(the folder)."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(root.glob("*.bvh"))
    if not files:
        raise EngineError(f"no .bvh files in {root}")
    style = style_of(root.parent if root.is_file() else root)
    return [seq for seq in (load_bvh_file(f, style) for f in files) if seq is not None]
