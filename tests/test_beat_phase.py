"""Beat phase as network input (engine.music.beat_phase) and re-phasing of the training windows
onto their own kinematic beats (engine.training.rephase), on synthetic motion with known beats."""
import numpy as np
import pytest
import torch

from engine.body import layout as L
from engine.music.audio import FEATURE_CHANNELS, NUM_MUSIC_FEATURES
from engine.music.beat_phase import BEAT_PHASE_CHANNELS, beat_phase, beat_phase_features, with_beat_phase
from engine.sampler import checkpoint
from engine.training.data import WindowDataset
from engine.training.data.cache import CorpusItem
from engine.training.rephase import rephased_beats, window_beat_phase
from engine.training.train import main as train_main
from test_train import aist_data, tiny_run_args  # noqa: F401  (aist_data: the fixture)

PERIOD = 15                                          # frames: 120 bpm at 30 fps


def swinging_motion(frames: int, offset: float, every: int = 1, seed: int = 0) -> np.ndarray:
    """Packed motion whose every joint swings as cos(pi (t - offset) / (every * PERIOD)): the body
    stops (a kinematic beat) on frames offset + k * every * PERIOD, and nowhere else."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames, dtype=np.float64)[:, None]
    amp = rng.uniform(0.2, 0.5, (1, 72)) * rng.choice([-1, 1], (1, 72))
    poses = amp * np.cos(np.pi * (t - offset) / (every * PERIOD))
    poses[:, :3] = 0.0                                                  # the pelvis stays upright
    trans = np.tile([0.0, 0.95, 0.0], (frames, 1))
    return L.pack(torch.from_numpy(poses), torch.from_numpy(trans)).float().numpy()


def beat_flags(frames: int, first: int = 0) -> np.ndarray:
    flags = np.zeros(frames, np.float32)
    flags[first::PERIOD] = 1.0
    return flags


def phase_at(features: np.ndarray, frame: int) -> float:
    sin, cos = features[frame, -2:]
    return float(np.arctan2(sin, cos) / (2 * np.pi) % 1.0)


def test_phase_runs_from_beat_to_beat_and_beyond_the_last():
    phase = beat_phase(np.array([10.0, 20.0, 40.0]), 60)
    assert phase[10] == 0 and phase[15] == pytest.approx(0.5) and phase[30] == pytest.approx(0.5)
    assert phase[5] == pytest.approx(0.5)                              # before the first: its interval
    assert phase[50] == pytest.approx(0.5) and phase[40] == 0          # after the last: its interval
    assert beat_phase(np.array([3.0]), 20) is None
    assert not beat_phase_features(np.array([3.0]), 20).any()          # "unknown": both channels 0
    feats = beat_phase_features(np.array([10.0, 20.0]), 30)
    assert feats.shape == (30, BEAT_PHASE_CHANNELS)
    assert np.allclose(feats[10], [0, 1], atol=1e-6) and np.allclose(feats[15], [0, -1], atol=1e-6)


@pytest.mark.parametrize("every", [1, 2])
def test_rephasing_finds_where_the_dancer_marks_the_beat(every):
    """The music beats on frames 0, 15, 30, ...; the dancer stops 5 frames later, on every beat or
    every second one. The window's grid keeps the music's period and takes the dancer's offset."""
    frames = L.WINDOW_FRAMES
    motion = swinging_motion(frames, offset=5.0, every=every)
    feats = window_beat_phase(motion, beat_flags(frames))
    for frame in (5, 20, 35, 80, 125):
        assert phase_at(feats, frame) == pytest.approx(0.0, abs=0.08) or phase_at(feats, frame) > 0.92
    assert phase_at(feats, 0) == pytest.approx(10 / 15, abs=0.08)      # the music's own beat is off-grid


def test_no_grid_where_the_kinematic_beats_agree_on_none():
    rng = np.random.default_rng(1)
    scattered = np.sort(rng.uniform(0, 150, 40))
    assert len(rephased_beats(scattered, float(PERIOD), 150)) == 0
    assert len(rephased_beats(np.array([5.0, 20.0]), float(PERIOD), 150)) == 0      # too few to trust
    assert len(rephased_beats(np.array([5.0, 20.0, 35.0]), None, 150)) == 0         # no tempo


def test_training_windows_carry_the_rephased_phase():
    frames = 300
    motion = swinging_motion(frames, offset=5.0)
    music = np.random.default_rng(0).normal(size=(frames, NUM_MUSIC_FEATURES)).astype(np.float32)
    music[:, FEATURE_CHANNELS["beat"]] = beat_flags(frames)[:, None]
    item = CorpusItem(name="s", style="chacha", motion=motion, music=music)
    plain = WindowDataset([item], styles=["any", "chacha"], augment=False)
    phased = WindowDataset([item], styles=["any", "chacha"], augment=False, beat_phase=True)
    a, b = plain[3], phased[3]
    assert b["music"].shape == (L.WINDOW_FRAMES, NUM_MUSIC_FEATURES + BEAT_PHASE_CHANNELS)
    assert torch.equal(a["music"], b["music"][:, :NUM_MUSIC_FEATURES]) and torch.equal(a["motion"], b["motion"])
    window = phased.window_spec(3)["start"]
    kin_frames = [f - window for f in range(5, frames, PERIOD) if 0 <= f - window < L.WINDOW_FRAMES]
    got = [phase_at(b["music"].numpy(), f) for f in kin_frames]
    assert all(p < 0.08 or p > 0.92 for p in got)
    # Generation gives the music's own beats: phase 0 on the beat flags.
    gen = with_beat_phase(music[:L.WINDOW_FRAMES])
    assert all(phase_at(gen, f) < 1e-6 or phase_at(gen, f) > 1 - 1e-6 for f in range(0, L.WINDOW_FRAMES, PERIOD))


def test_train_with_beat_phase_and_fine_tune_into_it(aist_data, tmp_path, click_song):  # noqa: F811
    common = tiny_run_args(aist_data, tmp_path)
    assert train_main(common + ["--out", str(tmp_path / "plain")]) == 0
    assert train_main(common + ["--out", str(tmp_path / "phase"), "--beat-phase"]) == 0
    ckpt = checkpoint.load(tmp_path / "phase" / "model.safetensors")
    assert ckpt.model.cfg.beat_phase and ckpt.music_normalizer.mean.shape == (NUM_MUSIC_FEATURES + 2,)
    from engine.api import generate
    motion = generate(click_song, weights=tmp_path / "phase" / "model.safetensors", steps=2, duration=2.0)
    assert motion.poses.shape == (60, 72) and np.isfinite(motion.poses).all()
    # A plain network starts a beat-phase run as itself: the phase's input columns start at zero.
    assert train_main(common + ["--out", str(tmp_path / "tuned"), "--beat-phase", "--lr", "0",
                                "--init", str(tmp_path / "plain" / "model.safetensors")]) == 0
    a = checkpoint.load(tmp_path / "plain" / "model.safetensors").model.state_dict()
    b = checkpoint.load(tmp_path / "tuned" / "model.safetensors").model.state_dict()
    w = b.pop("music.proj.weight")
    assert torch.equal(w[:, :NUM_MUSIC_FEATURES], a.pop("music.proj.weight")) and not w[:, NUM_MUSIC_FEATURES:].any()
    assert all(torch.equal(a[k], b[k]) for k in a)
