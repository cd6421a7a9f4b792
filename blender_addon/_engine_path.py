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


def _vendored(root: Path | None) -> bool:
    """Whether `root` is the built extension's own copy of the engine (not a repository's)."""
    return root is not None and root == _HERE / "vendor"


def _forget_loaded_engine() -> None:
    """Drop every imported `engine` module, so that the next import loads the files on disk."""
    for name in [n for n in sys.modules if n == "engine" or n.startswith("engine.")]:
        del sys.modules[name]


def ensure(deps_dir: str | None = None) -> None:
    """Put the engine's parent folder (front) and the optional dependency folder (back) on sys.path."""
    root = engine_root()
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if deps_dir and deps_dir not in sys.path:
        sys.path.append(deps_dir)


def release() -> None:
    """On disabling the built extension: its engine's folder leaves sys.path (an uninstalled
    extension's folder stayed there). register() puts it back (ensure)."""
    root = engine_root()
    while _vendored(root) and str(root) in sys.path:
        sys.path.remove(str(root))


# This runs where the add-on's package is imported: the first time in a session, or anew after
# an upgrade installed in the same session. An engine already imported then is an earlier
# version's (Blender re-imports only the add-on's own modules: the new add-on ran on the old
# engine until a restart), so the built extension forgets it and imports its own. A repository
# checkout's engine stays: tests and scripts hold its classes.
if _vendored(engine_root()):
    _forget_loaded_engine()
ensure()
