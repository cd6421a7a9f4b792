"""Build the installable Blender extension: `python build.py [--out dist/]`.

The zip holds, at its root:
    blender_manifest.toml, __init__.py, ...   the add-on (blender_addon/*)
    vendor/engine/                            the engine's runtime: engine/ without its tool folders
                                              (TOOL_FOLDERS: engine/training, engine/evaluation)
    vendor/weights/*.safetensors              the trained weights
`vendor/` repeats the repository layout one level down, so blender_addon/_engine_path.py puts
`vendor` on sys.path and `import engine` works, and the engine's default weights path
(engine/sampler/../../weights/dance.safetensors) still points at the shipped weights.

Python dependencies are NOT bundled as wheels: torch is hundreds of MB per platform (GBs with
CUDA), too big for an extension, and numpy already ships with Blender. The add-on's
preferences have an "Install Dependencies" button that pip-installs torch, librosa & co. for
Blender's own Python into the extension's user folder (see blender_addon/preferences.py).

The zip is built and validated with Blender's own extension tool (blender_ext.py from the bpy
module or a Blender install) when one is found, else written with zipfile after a basic
manifest check. Install it with Edit > Preferences > Get Extensions > Install from Disk, or
headless: bpy.ops.extensions.package_install_files(filepath=zip, repo="user_default",
enable_on_install=True).
"""
from __future__ import annotations

import argparse
import ast
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent
ADDON = REPO / "blender_addon"
ENGINE = REPO / "engine"
WEIGHTS = REPO / "weights"
# Not shipped: caches, and bench_keys.py (a developer's benchmark, run from the repository).
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.tmp", "bench_keys.py")


def find_blender_ext() -> Path | None:
    """Blender's extension command-line tool, from the bpy module if it is installed."""
    spec = importlib.util.find_spec("bpy")
    for root in (spec.submodule_search_locations or []) if spec else []:
        hits = sorted(glob.glob(os.path.join(root, "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")))
        if hits:
            return Path(hits[-1])
    return None


# Training and evaluation tools: not shipped. The runtime never imports them (checked below).
TOOL_FOLDERS = ("training", "evaluation")


def _module_file(name: str) -> Path | None:
    """engine.x.y -> its .py file (a package's __init__.py), or None when there is none."""
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Engine modules that `path` imports anywhere, inside functions too (lazy imports count)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "engine"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            elif (node.module or "").split(".")[0] == "engine":
                base = node.module
            else:
                continue
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}      # `from . import audio`: a module
    return {m for m in found if _module_file(m) is not None}


def is_tool_module(name: str) -> bool:
    """engine.training..., engine.evaluation...: a module the extension does not ship."""
    parts = name.split(".")
    return parts[0] == "engine" and len(parts) > 1 and parts[1] in TOOL_FOLDERS


def runtime_files() -> list[Path]:
    """The engine's files the extension ships: everything but the tool folders and caches."""
    return [p for p in sorted(ENGINE.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
            and p.suffix not in (".pyc", ".tmp") and not is_tool_module(".".join(p.relative_to(REPO).parts))]


def tool_imports() -> list[str]:
    """'runtime module -> tool module' for every import (lazy ones too) from the shipped engine or
    the add-on into the tool folders; empty when the runtime stands without them."""
    sources = [(p, "blender_addon." + p.stem) for p in ADDON.rglob("*.py")]
    for p in runtime_files():
        if p.suffix == ".py":
            name = ".".join(p.relative_to(REPO).with_suffix("").parts)
            sources.append((p, name.removesuffix(".__init__")))
    return sorted(f"{name} -> {m}" for path, name in sources for m in _imports(path, name)
                  if is_tool_module(m))


def _stage_engine(dest: Path) -> None:
    """Copy the engine's runtime (code and data files such as bone_maps/), keeping the layout."""
    bad = tool_imports()
    if bad:
        raise SystemExit("error: the runtime imports training/evaluation code: " + "; ".join(bad))
    for path in runtime_files():
        target = dest / path.relative_to(ENGINE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def default_weights() -> dict[str, Path]:
    """The shipped checkpoints in weights/ (not the training notes and configs beside them)."""
    return {f.name: f.resolve() for f in sorted(WEIGHTS.glob("*.safetensors"))
            if f.is_file() and not f.name.startswith(".")}


def stage(dest: Path, weights: dict[str, Path]) -> None:
    """Lay out the extension in `dest`; `weights` maps file names inside vendor/weights/ to sources."""
    shutil.copytree(ADDON, dest, ignore=_SKIP)
    _stage_engine(dest / "vendor" / "engine")
    (dest / "vendor" / "weights").mkdir(parents=True)
    for name, src in weights.items():
        shutil.copy2(src, dest / "vendor" / "weights" / name)


def check_manifest(path: Path) -> dict:
    manifest = tomllib.loads(path.read_text(encoding="utf-8"))
    required = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type",
                "blender_version_min", "license")
    missing = [k for k in required if k not in manifest]
    if missing:
        raise SystemExit(f"error: {path} lacks {', '.join(missing)}")
    return manifest


def zip_dir(src: Path, out: Path) -> None:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(src).as_posix())


def build(out_dir: Path, weights: dict[str, Path], blender_ext: Path | None) -> Path:
    manifest = check_manifest(ADDON / "blender_manifest.toml")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with tempfile.TemporaryDirectory(prefix="dance_build_") as tmp:
        src = Path(tmp) / manifest["id"]
        stage(src, weights)
        if out.exists():
            out.unlink()
        if blender_ext is not None:
            run = [sys.executable, str(blender_ext)]
            r = subprocess.run(run + ["build", "--source-dir", str(src), "--output-filepath", str(out)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"error: Blender's extension build failed:\n{r.stdout}{r.stderr}")
            r = subprocess.run(run + ["validate", str(out)], capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"error: Blender's extension validator rejected {out}:\n{r.stdout}{r.stderr}")
        else:
            zip_dir(src, out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Build the Dance Generator Blender extension zip.")
    p.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist/)")
    p.add_argument("--weights", type=Path,
                   help="ship this checkpoint as the default weights/dance.safetensors instead of weights/*")
    p.add_argument("--allow-missing-weights", action="store_true",
                   help="build even without weights (the user then sets a weights file in the preferences)")
    p.add_argument("--no-blender-ext", action="store_true", help="write the zip with zipfile, skip Blender's tool")
    args = p.parse_args(argv)
    if args.weights is not None:
        if not args.weights.is_file():
            raise SystemExit(f"error: weights file not found: {args.weights}")
        weights = {"dance.safetensors": args.weights.resolve()}
    else:
        weights = default_weights()
    if not any(n.endswith(".safetensors") for n in weights) and not args.allow_missing_weights:
        raise SystemExit(f"error: no weights in {WEIGHTS} (train them, pass --weights, or --allow-missing-weights)")
    tool = None if args.no_blender_ext else find_blender_ext()
    out = build(args.out.resolve(), weights, tool)
    how = "built and validated with Blender's extension tool" if tool else "written with zipfile (Blender's tool not found)"
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB): {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
