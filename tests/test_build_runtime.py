"""build.py ships the engine's runtime without its tools (engine/training, engine/evaluation): the
runtime never imports them, and the staged engine dances on its own (the installed extension
dancing with it is tests/test_addon_package.py::test_built_extension_installs_and_dances)."""
import importlib.util
import subprocess
import sys

import numpy as np

from conftest import REPO

_spec = importlib.util.spec_from_file_location("build", REPO / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def test_no_runtime_module_imports_training_or_evaluation():
    # The runtime packages and the add-on, every import (lazy ones inside functions too), via ast.
    assert build.tool_imports() == []


def test_the_import_walk_sees_a_lazy_import_of_a_tool(tmp_path):
    """The check above can fail: a function-level relative import into evaluation/ is found."""
    module = tmp_path / "fake.py"
    module.write_text("def f():\n    from ..evaluation.metrics import pfc\n    from ..body import layout\n")
    found = build._imports(module, "engine.finishing.fake")
    assert "engine.evaluation.metrics" in found and "engine.body.layout" in found
    assert build.is_tool_module("engine.evaluation.metrics") and not build.is_tool_module("engine.body.layout")


def test_the_staged_engine_dances_without_its_tools(tmp_path, tiny_weights, click_song):
    build._stage_engine(tmp_path / "engine")
    staged = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    for kept in ("engine/__init__.py", "engine/api.py", "engine/body/skeleton.py", "engine/music/audio.py",
                 "engine/sampler/fewstep.py", "engine/finishing/beatsync.py", "engine/outputs/bone_maps/mixamo.json"):
        assert kept in staged
    assert not any(p.startswith(("engine/training/", "engine/evaluation/")) for p in staged)

    def engine(*args):     # the staged copy only: run from tmp_path, nothing else named engine on the path
        return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    out = tmp_path / "dance.npz"
    run = engine("generate", click_song, "-o", out, "--weights", tiny_weights, "--steps", 2, "--duration", 2,
                 "--quiet")
    assert run.returncode == 0, run.stderr[-2000:]
    assert np.load(out)["poses"].shape == (60, 72)
    tool = engine("distill", "--help")
    assert tool.returncode == 2
    assert tool.stderr.strip() == ("error: 'distill' is a training tool, not part of this install "
                                   "(use a clone of the repository)")
    assert "evaluation tool" in engine("bench").stderr
