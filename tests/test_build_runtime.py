"""build.py ships the engine's runtime without its training code (the installed extension
dancing with it is tests/test_addon_package.py::test_built_extension_installs_and_dances)."""
import importlib.util

from conftest import REPO

_spec = importlib.util.spec_from_file_location("build", REPO / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def test_the_runtime_leaves_the_training_code_out(tmp_path):
    modules = build.runtime_modules()
    assert {"engine.api", "engine.audio", "engine.fewstep", "engine.metrics", "engine.__main__"} <= modules
    for training in ("engine.train", "engine.distill", "engine.evaluate", "engine.probe", "engine.bench",
                     "engine.autoguide", "engine.data", "engine.data.windows"):
        assert training not in modules
    build._stage_engine(tmp_path / "engine")
    assert (tmp_path / "engine" / "api.py").is_file() and (tmp_path / "engine" / "__init__.py").is_file()
    assert not (tmp_path / "engine" / "distill.py").exists() and not (tmp_path / "engine" / "data").exists()
