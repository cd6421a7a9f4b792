"""CMU salsa (subjects 60 and 61): motion capture of another skeleton, retargeted to SMPL (motion only).

Each file is one dancer of a salsa couple as BVH with the 43-joint SecondLife/DAZ skeleton
(hip, abdomen, chest, neck, head, lCollar, lShldr, lForeArm, lHand, lThigh, lShin, lFoot, fingers,
eyes), Y up, in a scaled unit. engine.outputs.retarget maps it to SMPL (the "secondlife" preset) and turns
the BVH's rotations into SMPL's so that SMPL's limbs point where the capture's do; the root path
is scaled by leg length into metres.

Traps (the data README's): the header's Frame Time says 120 fps but the capture is 60 fps
(AMASS's 30-fps fit of 60_01 has half this file's 2,242 frames), so the header is ignored.
The known defects from the source's file names were measured on the files (see CUT_START_S).
"""
from __future__ import annotations

import re
from pathlib import Path

from ...errors import EngineError
from .bvh_folder import MIN_SECONDS, load_bvh_file
from .sequence import DanceSequence

SOURCE_FPS = 60.0
STYLE = "salsa"
# Every take opens with a few frames where the capture's solver settles (rotation steps 5-10x
# the take's median over the first 4 frames): they are dropped.
SETTLE_S = 0.1
# The README's defects, as measured on the files (joint acceleration, head and pelvis statistics):
# - 60_10 "trembles at the beginning": mean joint acceleration 16-33 m/s^2 from 3 s to 7 s
#   against the take's median 7: the first 7 s are dropped.
# - 60_06 and 60_07 "head wrong": the head channel holds no rotation on any frame (the head is
#   stiff on the neck, not garbage): kept as is.
# - 60_09 "shoe fix at the end": the last 12 s show no bending to the feet (pelvis 0.95-0.99 m,
#   wrists above 0.9 m): kept. 60_11's dip is a dance figure (pelvis down to 0.65 m): kept.
CUT_START_S = {"60_10": 7.0}


def sequence_name(path: Path) -> str:
    """"60_01_scaled.bvh" -> "salsa_60_01"."""
    return "salsa_" + path.stem.replace("_scaled", "")


def load_salsa_file(path) -> DanceSequence | None:
    """One BVH -> a cleaned DanceSequence at MODEL_FPS (None, with a warning, if too short)."""
    path = Path(path)
    name = sequence_name(path)
    return load_bvh_file(path, STYLE, name=name, fps=SOURCE_FPS,
                         skip_seconds=SETTLE_S + CUT_START_S.get(name.removeprefix("salsa_"), 0.0))


def is_salsa_file(path: Path) -> bool:
    """Whether `path` is named as CMU's salsa takes are (subjects 60 and 61: "60_01_scaled.bvh")."""
    return re.fullmatch(r"6[01]_\d+(_scaled)?\.bvh", path.name) is not None


def load_cmu_salsa(root) -> list[DanceSequence]:
    """Every *.bvh in `root` (or `root` itself, one file), style "salsa", no audio."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(root.glob("*.bvh"))
    if not files:
        raise EngineError(f"no .bvh files in {root}")
    return [seq for seq in (load_salsa_file(f) for f in files) if seq is not None]
