"""Make the `engine` package importable from the add-on, in both layouts it ships in.

- Repository checkout: `<repo>/blender_addon/` beside `<repo>/engine/` and `<repo>/weights/`.
- Built extension (see build.py): `<ext>/vendor/engine/` and `<ext>/vendor/weights/`, i.e. the
  repository layout again one level down, so the engine's own default weights path still works.

The chosen folder goes to the front of sys.path so that `import engine` finds ours. The folder
where "Install dependencies" put torch & co. goes to the back, so Blender's own numpy wins.
Importing this module imports neither bpy nor torch.
"""
from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def engine_root() -> Path | None:
    """The folder that holds `engine/` (and `weights/`), or None if neither layout is present."""
    for root in (_HERE / "vendor", _HERE.parent):
        if (root / "engine" / "__init__.py").is_file() or (root / "engine" / "body" / "skeleton.py").is_file():
            return root
    return None


def weights_dir() -> Path | None:
    root = engine_root()
    return None if root is None else root / "weights"


def ensure(deps_dir: str | None = None) -> None:
    """Put the engine's parent folder (front) and the optional dependency folder (back) on sys.path."""
    root = engine_root()
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if deps_dir and deps_dir not in sys.path:
        sys.path.append(deps_dir)


ensure()
