"""Shared fixtures: a tiny untrained checkpoint (the pipeline's behaviour does not depend on
training) and paths to the shared data when present."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.training.data import SHARED_DATA  # noqa: E402  (after sys.path is set)
SHIPPED_WEIGHTS = REPO / "weights" / "dance.safetensors"

needs_shared_data = pytest.mark.skipif(not (SHARED_DATA / "tang2018").is_dir(), reason="../shared/data not present")


def terminated_once(proc, started, wait_seconds: float = 240) -> str:
    """SIGTERM to `proc`, a command a test started, once `started()` is true (to the process only,
    as `kill PID` does); its stderr once it ended. Killed if it outlives the test."""
    import signal
    import time
    deadline = time.monotonic() + wait_seconds
    try:
        while not started():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    from engine.sampler import checkpoint
    from engine.body import layout as L
    from engine.sampler.model import Denoiser, ModelConfig
    from engine.training.train import BASE_STYLES
    torch.manual_seed(0)
    model = Denoiser(ModelConfig(width=32, layers=1, heads=2, num_styles=len(BASE_STYLES)))
    # A plausible normaliser: rest pose on average, pelvis at standing height.
    from engine.body.skeleton import REST_PELVIS_HEIGHT
    rest = L.pack(torch.zeros(2, 72, dtype=torch.float64), torch.tensor([[0, REST_PELVIS_HEIGHT, 0]] * 2, dtype=torch.float64))
    motion_norm = L.Normalizer(rest[0].float(), torch.full((L.NUM_CHANNELS,), 0.05))
    music_norm = L.Normalizer(torch.zeros(35), torch.ones(35))
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    checkpoint.save(path, model, motion_norm, music_norm, BASE_STYLES, {"note": "untrained, for tests"})
    return path


@pytest.fixture(scope="session")
def click_song(tmp_path_factory) -> Path:
    """A 6 s, 120 bpm synthetic song written as WAV."""
    import soundfile as sf
    from engine.example import make_click_track
    sr = 22050
    path = tmp_path_factory.mktemp("audio") / "click.wav"
    sf.write(path, make_click_track(6.0, 120.0, sr), sr)
    return path


def teacher_with_guide(tiny_weights: Path, folder: Path, name: str = "teacher.safetensors") -> Path:
    """The tiny random test network with a second, smaller one as its autoguidance guide: a
    teacher as engine.training.distill takes it."""
    from engine.sampler import checkpoint
    from engine.sampler.model import Denoiser, ModelConfig
    from engine.training.autoguide import attach_guide
    from engine.training.train import BASE_STYLES
    main = checkpoint.load(tiny_weights)
    torch.manual_seed(3)
    guide = Denoiser(ModelConfig(width=16, layers=1, heads=2, num_styles=len(BASE_STYLES)))
    checkpoint.save(folder / "guide.safetensors", guide, main.normalizer, main.music_normalizer, main.styles)
    attach_guide(tiny_weights, folder / "guide.safetensors", folder / name)
    return folder / name


def gaussian_x0_predictor(alpha_bar: torch.Tensor, variance: torch.Tensor):
    """The exact x0 predictor of zero-mean Gaussian data with per-channel `variance`: with it the
    sampling ODE's own end point is known (many small DDIM steps converge on it), so a solver's
    error can be measured."""
    def exact_x0(x, t, music):
        a = alpha_bar[t].view(-1, 1, 1)
        return a.sqrt() * variance * x / (a * variance + 1 - a)
    return exact_x0


# The bpy 4.3 module crashes at exit (a segfault) once an EnumProperty with an items callback or a
# PointerProperty with a poll has been registered, even after it was unregistered: five lines
# without this project show it, and 4.4, 4.5 and 5.0 exit cleanly. The add-on registers both, so
# in bpy 4.3 the session ends the process with its own status instead of the crashing exit.
_SESSION_STATUS = {}


def pytest_sessionfinish(session, exitstatus):
    _SESSION_STATUS["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    bpy = sys.modules.get("bpy")
    if bpy is not None and tuple(bpy.app.version) < (4, 4) and "status" in _SESSION_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_SESSION_STATUS["status"])
