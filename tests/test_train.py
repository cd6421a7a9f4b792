"""Training: a few steps lower the loss on a tiny synthetic set; the command line trains, resumes
and writes weights the engine loads and dances with."""
import json
import shutil
import math
import os
import pickle

import numpy as np
import pytest
from conftest import REPO
from safetensors.torch import load_file
import torch

from engine.sampler import checkpoint
from engine.body import layout as L
from engine.body.skeleton import NUM_JOINTS
from engine.training.data import WindowDataset
from engine.training.data.cache import CorpusItem
from engine.sampler.diffusion import cosine_alpha_bar, training_loss
from engine.sampler.model import Denoiser, ModelConfig
from engine.training.train import BASE_STYLES, main as train_main
from test_data import synth_motion, write_wav


def _synthetic_items(n=3, frames=200):
    items = []
    for k in range(n):
        poses, trans = synth_motion(frames, L.MODEL_FPS, seed=k)
        motion = L.pack(torch.from_numpy(poses), torch.from_numpy(trans)).float().numpy()
        music = np.random.default_rng(k).normal(size=(frames, 35)).astype(np.float32)
        items.append(CorpusItem(name=f"s{k}", style="chacha", motion=motion, music=music))
    return items


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    items = _synthetic_items()
    norm = L.Normalizer.fit(torch.from_numpy(np.concatenate([it.motion for it in items])))
    ds = WindowDataset(items, norm, window=60, styles=BASE_STYLES, augment=False)
    batch = {k: torch.stack([ds[i][k] for i in range(8)]) for k in ("motion", "music", "style", "has_music")}
    model = Denoiser(ModelConfig(width=48, layers=2, heads=2, num_styles=len(BASE_STYLES), max_frames=60))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    ab = cosine_alpha_bar()
    losses = []
    for step in range(60):
        g = torch.Generator().manual_seed(step % 4)   # a fixed set of noise draws, so the trend is clear
        loss = training_loss(model, batch, ab, norm, generator=g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-8:]) < 0.6 * np.mean(losses[:8])


@pytest.fixture(scope="module")
def aist_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("aist")
    (root / "motions").mkdir()
    (root / "music").mkdir()
    for k, name in enumerate(["gPO_sBM_cAll_d01_mPO1_ch01", "gBR_sFM_cAll_d04_mBR9_ch02"]):
        poses, trans = synth_motion(600, 60.0, seed=k)
        with open(root / "motions" / f"{name}.pkl", "wb") as f:
            pickle.dump({"smpl_poses": poses.astype(np.float32), "smpl_trans": (trans * 100).astype(np.float32),
                         "smpl_scaling": np.array([100.0], np.float32)}, f)
        write_wav(root / "music" / f"{name.split('_')[4]}.wav", 10.0)
    return root


def tiny_run_args(aist_data, tmp_path) -> list[str]:
    """A two-step training run of a tiny network on the synthetic AIST++-style set."""
    return ["--data", str(aist_data / "motions"), "--aist-music", str(aist_data / "music"),
            "--cache", str(tmp_path / "cache"), "--batch", "4", "--width", "32", "--layers", "1", "--heads", "2",
            "--val-every", "2", "--threads", "1", "--steps", "2"]


def test_train_command_resumes_and_writes_loadable_weights(aist_data, tmp_path, click_song, capsys):
    out = tmp_path / "run"
    common = ["--data", str(aist_data / "motions"), "--aist-music", str(aist_data / "music"), "--out", str(out),
              "--cache", str(tmp_path / "cache"), "--batch", "4", "--width", "32", "--layers", "1", "--heads", "2",
              "--val-every", "2", "--threads", "1"]
    assert train_main(common + ["--steps", "4", "--stop-at", "2"]) == 0      # a schedule of 4, paused at 2
    # No validation song in this data: the 'val' loss is a training clip's, and the run says so.
    assert "the 'val' loss is measured on the training sequence" in capsys.readouterr().out
    first = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert first["step"] == 2 and np.isfinite(first["val_loss"])
    assert train_main(common + ["--steps", "4"]) == 0
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 4]                 # continued, not restarted
    ckpt = checkpoint.load(out / "model.safetensors")
    assert ckpt.info["step"] == 4 and "command" in ckpt.info
    # Its styles are the data's: no ballroom name it has no dance of, and style any draws only
    # what it learned with music (QA: an AIST++-only model listed and danced "chacha").
    assert ckpt.styles == ["any", "pop", "break"]
    from engine.api import dance_style, styles_any_draws
    assert ckpt.info["danced_styles"] == ["pop", "break"] == styles_any_draws(out / "model.safetensors")
    assert {dance_style("any", ckpt.styles, seed, click_song, ckpt.info) for seed in range(20)} == {"pop", "break"}
    assert json.loads((out / "config.json").read_text())["model"]["width"] == 32
    # Run again where it stands: nothing to train, said (QA: a TypeError after rewriting it).
    capsys.readouterr()
    assert train_main(common + ["--steps", "4"]) == 0
    assert "already stands at step 4: nothing to train" in capsys.readouterr().out
    assert [json.loads(l)["step"] for l in (out / "log.jsonl").read_text().splitlines()] == [2, 4]
    # Resumed with another shape: one line (review: torch's 108-line traceback), the run untouched.
    other = [a if a != "32" else "48" for a in common]
    capsys.readouterr()
    assert train_main(other + ["--steps", "6"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "holds a run of another network shape" in said[0], said
    assert checkpoint.load(out / "model.safetensors").info["step"] == 4
    # Written as any new file is (the umask's permissions), not 0600 as safetensors writes them.
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "state.safetensors"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    from engine.api import generate
    motion = generate(click_song, weights=out / "model.safetensors", steps=2, duration=1.0, style="break")
    assert motion.poses.shape == (30, 72) and np.isfinite(motion.poses).all()


def test_training_from_a_packed_file_keeps_snapshots(aist_data, tmp_path, capsys):
    """`python -m engine data` packs a source into one file that trains without the raw data."""
    from engine.training.data.__main__ import main as pack_main
    from engine.training.data.cache import load_source
    packed = tmp_path / "packed"
    assert pack_main(["--data", str(aist_data / "motions"), "--aist-music", str(aist_data / "music"),
                      "--out", str(packed), "--cache", str(tmp_path / "cache")]) == 0
    (file,) = packed.glob("*.npz")
    # Packed again into the same folder: refused without --force (review: replaced unasked).
    again_args = ["--data", str(aist_data / "motions"), "--aist-music", str(aist_data / "music"),
                  "--out", str(packed), "--cache", str(tmp_path / "cache")]
    written = file.stat().st_mtime_ns
    capsys.readouterr()
    assert pack_main(again_args) == 2 and "already exists: pass --force" in capsys.readouterr().err
    assert file.stat().st_mtime_ns == written and pack_main(again_args + ["--force"]) == 0
    # Two folders of one name would be packed into one file, the first lost: refused (QA).
    twin = tmp_path / "twin" / "motions"
    shutil.copytree(aist_data / "motions", twin)
    capsys.readouterr()
    assert pack_main(["--data", str(aist_data / "motions"), str(twin), "--out", str(tmp_path / "both")]) == 2
    assert "would both be packed as" in capsys.readouterr().err and not (tmp_path / "both").exists()
    # Without --cache the cache goes beside OUT, so OUT holds only what travels to a lent GPU
    # (a cache inside it had tripled the upload).
    alone = tmp_path / "alone"
    assert pack_main(["--data", str(aist_data / "motions"), "--aist-music", str(aist_data / "music"),
                      "--out", str(alone)]) == 0
    assert [p.name for p in alone.iterdir()] == [file.name] and any((tmp_path / ".cache").iterdir())
    raw = load_source(aist_data / "motions", tmp_path / "cache", aist_data / "music", log=None)
    again = load_source(file, tmp_path / "unused", log=None)
    assert [it.name for it in again] == [it.name for it in raw]
    for a, b in zip(raw, again):
        assert b.motion.dtype == np.float32 and np.allclose(a.motion, b.motion, rtol=1e-3, atol=1e-4)
        assert np.allclose(a.music, b.music, rtol=1e-3, atol=1e-3)
    out = tmp_path / "run"
    assert train_main(["--data", str(file), "--out", str(out), "--batch", "4", "--width", "32", "--layers", "1",
                       "--heads", "2", "--steps", "4", "--val-every", "2", "--keep-every", "2", "--workers", "0",
                       "--threads", "1"]) == 0
    assert [json.loads(l)["step"] for l in (out / "log.jsonl").read_text().splitlines()] == [2, 4]
    kept = sorted(p.name for p in out.glob("model_*.safetensors"))
    assert kept == ["model_000002.safetensors", "model_000004.safetensors"]
    assert checkpoint.load(out / kept[0]).info["step"] == 2
    # Snapshots are kept at checkpoints, so --keep-every must fall on them.
    capsys.readouterr()
    assert train_main(["--data", str(file), "--out", str(tmp_path / "odd"), "--steps", "4", "--val-every", "2",
                       "--keep-every", "3"]) == 2
    assert "multiple of --val-every" in capsys.readouterr().err
    # A file that is not a packed source: one clear line.
    bad = tmp_path / "bad.npz"
    np.savez(bad, motion=np.zeros((3, 3)))
    capsys.readouterr()
    assert train_main(["--data", str(bad), "--out", str(tmp_path / "bad_run"), "--steps", "1"]) == 2
    assert "not a packed source" in capsys.readouterr().err


def test_fine_tuning_starts_from_the_given_weights(aist_data, tmp_path, capsys):
    common = ["--data", str(aist_data / "motions"), "--aist-music", str(aist_data / "music"),
              "--cache", str(tmp_path / "cache"), "--batch", "4", "--layers", "1", "--heads", "2",
              "--val-every", "2", "--threads", "1", "--steps", "2"]
    first = tmp_path / "first"
    assert train_main(common + ["--out", str(first), "--width", "32"]) == 0
    # With a zero learning rate the fine-tuned run's weights are exactly the ones it started from.
    tuned = tmp_path / "tuned"
    assert train_main(common + ["--out", str(tuned), "--width", "32", "--lr", "0",
                                "--init", str(first / "model.safetensors")]) == 0
    a = checkpoint.load(first / "model.safetensors").model.state_dict()
    b = checkpoint.load(tuned / "model.safetensors").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # From weights with a guide network: the guide is not trained, and the run says so.
    from engine.training.autoguide import attach_guide
    attach_guide(first / "model.safetensors", first / "model.safetensors", tmp_path / "guided.safetensors")
    capsys.readouterr()
    assert train_main(common + ["--out", str(tmp_path / "from_guided"), "--width", "32",
                                "--init", str(tmp_path / "guided.safetensors")]) == 0
    assert "python -m engine autoguide" in capsys.readouterr().out
    assert checkpoint.load(tmp_path / "from_guided" / "model.safetensors").guide is None
    # Weights that take keys (as the shipped ones do) fine-tune into a run that takes them too,
    # without the flag (QA: the README's fine-tune command failed on the shipped weights).
    keyed = tmp_path / "keyed"
    assert train_main(common + ["--out", str(keyed), "--width", "32", "--key-input"]) == 0
    capsys.readouterr()
    assert train_main(common + ["--out", str(tmp_path / "from_keyed"), "--width", "32",
                                "--init", str(keyed / "model.safetensors")]) == 0
    assert "--key-input" in capsys.readouterr().out
    assert checkpoint.load(tmp_path / "from_keyed" / "model.safetensors").model.cfg.key_input
    # A model of another size cannot be fine-tuned from them: one clear line, no traceback.
    capsys.readouterr()
    assert train_main(common + ["--out", str(tmp_path / "wrong"), "--width", "48",
                                "--init", str(first / "model.safetensors")]) == 2
    assert "model config" in capsys.readouterr().err


def test_a_fine_tune_resumes_when_its_command_is_rerun(aist_data, tmp_path, capsys):
    # QA: a fine-tune from keyed weights took --key-input from them, but rerun (the same command)
    # it was refused as "a run of another network shape" unless --key-input was added.
    args = tiny_run_args(aist_data, tmp_path)
    assert train_main(args + ["--out", str(tmp_path / "keyed"), "--key-input"]) == 0
    tuned = args + ["--out", str(tmp_path / "tuned"), "--init", str(tmp_path / "keyed" / "model.safetensors")]
    assert train_main(tuned + ["--stop-at", "1"]) == 0
    # As a run paused before the running loss was kept in its state (the QA's run folder) would be.
    from safetensors.torch import save_file
    state = load_file(str(tmp_path / "tuned" / "state.safetensors"))
    del state["train.running_loss"]
    save_file(state, str(tmp_path / "tuned" / "state.safetensors"))
    capsys.readouterr()
    assert train_main(tuned) == 0
    assert "resuming from step 1" in capsys.readouterr().out
    resumed = checkpoint.load(tmp_path / "tuned" / "model.safetensors")
    assert resumed.info["step"] == 2 and resumed.model.cfg.key_input
    # A rerun that asks for another shape (beat phase the run has not) is still one line.
    assert train_main(tuned + ["--steps", "4", "--beat-phase"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "holds a run of another network shape" in said[0], said


def test_root_term_penalises_a_dancer_that_does_not_travel():
    items = _synthetic_items()
    norm = L.Normalizer.fit(torch.from_numpy(np.concatenate([it.motion for it in items])))
    ds = WindowDataset(items, norm, window=60, styles=BASE_STYLES, augment=False)
    batch = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ("motion", "music", "style", "has_music")}
    x0 = batch["motion"]
    still = x0.clone()
    still[..., L.ROOT_VEL] = norm.normalize(torch.zeros_like(x0))[..., L.ROOT_VEL]

    def echo(prediction):
        return lambda x_t, t, music, style, keep: prediction

    ab = cosine_alpha_bar()
    perfect = training_loss(echo(x0), batch, ab, norm)
    rooted = training_loss(echo(still), batch, ab, norm)
    assert float(perfect["root"]) == 0.0
    expected = float(((still - x0)[..., L.ROOT_VEL] ** 2).mean())
    assert float(rooted["root"]) == pytest.approx(expected) and expected > 0
    assert float(rooted["loss"]) > float(perfect["loss"]) + expected * 0.99


def _turning_windows(rates_per_frame):
    """(B, T) heading changes in radians -> raw (B, T+1, C) windows of an upright body turning so."""
    heading = torch.cat([torch.zeros(rates_per_frame.shape[0], 1), torch.cumsum(rates_per_frame, 1)], 1)
    B, T = heading.shape
    x = torch.zeros(B, T, L.NUM_CHANNELS)
    x[..., L.ROT6D] = torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(NUM_JOINTS)   # every joint unrotated
    return torch.stack([L.turn_about_vertical(w, h) for w, h in zip(x, heading)])


def test_pelvis_turns_are_the_heading_change_the_short_way_round():
    rates = torch.tensor([[0.3, -0.2, 2.5, 0.1, -3.0]])                 # past pi: wraps
    turns = L.pelvis_turns(_turning_windows(rates))
    assert torch.allclose(turns, torch.tensor([[0.3, -0.2, 2.5, 0.1, -3.0]]), atol=1e-5)
    headings = L.pelvis_heading(_turning_windows(rates))
    assert torch.allclose(turns, torch.remainder(headings.diff(dim=-1) + torch.pi, 2 * torch.pi) - torch.pi, atol=1e-5)


def test_turn_term_penalises_only_snaps_the_true_window_lacks():
    from engine.sampler.diffusion import turn_excess
    bound = L.MAX_TURN_RATE / L.MODEL_FPS
    calm = torch.full((1, 20), 0.5 * bound)
    snap = calm.clone()
    snap[0, 10] = 1.5                                                    # half a turn in two frames' time
    true_calm, pred_snap = _turning_windows(calm), _turning_windows(snap)
    assert float(turn_excess(true_calm, true_calm)) == 0.0
    assert float(turn_excess(pred_snap, true_calm)) == pytest.approx((1.5 - bound) ** 2, rel=1e-4)
    # A real dancer's fast turn in the data is not held against the prediction that copies it.
    assert float(turn_excess(pred_snap, pred_snap)) == 0.0
    # The gradient reaches the pelvis's rotation channels and nothing else.
    pred = pred_snap.clone().requires_grad_(True)
    turn_excess(pred, true_calm).sum().backward()
    moved = pred.grad.abs().sum((0, 1)) > 0
    assert moved[L.PELVIS_6D].any() and not moved[L.PELVIS_6D.stop:].any() and not moved[:L.PELVIS_6D.start].any()


def test_turn_term_joins_the_loss_at_every_noise_level():
    """A denoiser that answers with a snap is charged for it at low and at high noise."""
    from engine.sampler.diffusion import LossWeights
    bound = L.MAX_TURN_RATE / L.MODEL_FPS
    calm = torch.full((2, 59), 0.5 * bound)
    snap = calm.clone()
    snap[:, 30] = 1.5
    norm = L.Normalizer(torch.zeros(L.NUM_CHANNELS), torch.ones(L.NUM_CHANNELS))
    batch = {"motion": _turning_windows(calm), "music": torch.zeros(2, 60, 35),
             "style": torch.zeros(2, dtype=torch.long), "has_music": torch.ones(2, dtype=torch.bool)}
    snapping = _turning_windows(snap)

    def loss(level, weights=LossWeights(turn=2.0)):
        return training_loss(lambda *a: snapping, batch, torch.full((1000,), level), norm, weights,
                             generator=torch.Generator().manual_seed(0))

    for level in (0.9, 0.05):
        assert float(loss(level)["turn"]) == pytest.approx((1.5 - bound) ** 2, rel=1e-4)
    plain = loss(0.9, LossWeights())
    assert "turn" not in plain
    assert float(loss(0.9)["loss"]) == pytest.approx(float(plain["loss"]) + 2.0 * (1.5 - bound) ** 2, rel=1e-4)


def test_jitter_term_charges_fast_error_not_a_move_or_an_offset():
    """The joints' position error above about 5 Hz is charged; an offset costs nothing, and a
    1 Hz error (a move at the wrong time) almost nothing against a 10 Hz one of the same size.
    Off (weight 0), the loss is EDGE's."""
    from engine.sampler.diffusion import LossWeights
    norm = L.Normalizer(torch.zeros(L.NUM_CHANNELS), torch.ones(L.NUM_CHANNELS))
    truth = _turning_windows(torch.full((2, 59), 0.05))
    T = truth.shape[1]
    batch = {"motion": truth, "music": torch.zeros(2, T, 35), "style": torch.zeros(2, dtype=torch.long),
             "has_music": torch.ones(2, dtype=torch.bool)}

    def loss(pred, weights=LossWeights(jitter=3.0)):
        return training_loss(lambda *a: pred, batch, torch.full((1000,), 0.5), norm, weights,
                             generator=torch.Generator().manual_seed(0))

    def height_error(values):
        pred = truth.clone()
        pred[..., L.ROOT_Y] += torch.as_tensor(values, dtype=pred.dtype)[:, None]
        return pred

    seconds = torch.arange(T) / L.MODEL_FPS
    offset = float(loss(height_error(torch.full((T,), 0.05)))["jitter"])
    slow = float(loss(height_error(0.01 * torch.sin(2 * torch.pi * 1.0 * seconds)))["jitter"])
    fast = float(loss(height_error(0.01 * torch.sin(2 * torch.pi * 10.0 * seconds)))["jitter"])
    assert offset == pytest.approx(0.0, abs=1e-10)
    assert fast > 0 and slow < 0.01 * fast
    # A 10 Hz error of 0.1 dm in every joint's height keeps the share of its amplitude the
    # Gaussian's response leaves out; its power, averaged over x, y and z.
    from engine.sampler.diffusion import JITTER_SIGMA_FRAMES
    passed = 1 - math.exp(-0.5 * (2 * math.pi * 10.0 * JITTER_SIGMA_FRAMES / L.MODEL_FPS) ** 2)
    assert fast == pytest.approx((0.1 * passed) ** 2 / 2 / 3, rel=0.05)
    bumped = height_error(torch.zeros(T))
    bumped[:, 10, L.ROOT_Y] += 0.01
    plain = loss(bumped, LossWeights())
    assert "jitter" not in plain
    charged = loss(bumped)
    assert float(charged["jitter"]) > 0
    assert float(charged["loss"]) == pytest.approx(float(plain["loss"]) + 3.0 * float(charged["jitter"]), rel=1e-5)


def test_fine_tuning_on_new_data_keeps_the_normalisation_and_adds_its_styles(aist_data, tmp_path, capsys):
    """New data (here a third genre) may join a fine-tune: the run keeps the starting weights'
    normalisation and style table, and the new style starts as "any"."""
    import shutil
    common = ["--cache", str(tmp_path / "cache"), "--batch", "4", "--width", "32", "--layers", "1",
              "--heads", "2", "--val-every", "2", "--threads", "1", "--steps", "2"]
    first = tmp_path / "first"
    assert train_main(common + ["--data", str(aist_data / "motions"), "--aist-music", str(aist_data / "music"),
                                "--out", str(first)]) == 0
    more = tmp_path / "more"
    shutil.copytree(aist_data, more)
    poses, trans = synth_motion(600, 60.0, seed=7)
    with open(more / "motions" / "gJB_sFM_cAll_d08_mJB1_ch03.pkl", "wb") as f:
        pickle.dump({"smpl_poses": poses.astype(np.float32), "smpl_trans": (trans * 100 + 30).astype(np.float32),
                     "smpl_scaling": np.array([100.0], np.float32)}, f)
    write_wav(more / "music" / "mJB1.wav", 10.0)
    tuned = tmp_path / "tuned"
    args = common + ["--data", str(more / "motions"), "--aist-music", str(more / "music"), "--out", str(tuned),
                     "--lr", "0", "--turn-weight", "1", "--init", str(first / "model.safetensors")]
    assert train_main(args) == 0
    a, b = checkpoint.load(first / "model.safetensors"), checkpoint.load(tuned / "model.safetensors")
    assert b.styles == a.styles + ["ballet_jazz"]
    assert torch.equal(a.normalizer.mean, b.normalizer.mean) and torch.equal(a.music_normalizer.std, b.music_normalizer.std)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert torch.equal(sb["style.weight"], torch.cat([sa["style.weight"], sa["style.weight"][:1]]))
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k != "style.weight")
    # Resumed, the run keeps them too (a fresh fit to the new data would differ).
    assert train_main(args[:args.index("--steps") + 1] + ["4"] + args[args.index("--steps") + 2:]) == 0
    resumed = checkpoint.load(tuned / "model.safetensors")
    assert resumed.info["step"] == 4 and resumed.styles == b.styles
    assert torch.equal(resumed.normalizer.mean, a.normalizer.mean)


def test_tempo_range_reaches_the_training_windows(aist_data, tmp_path, monkeypatch, capsys):
    # The data's songs stop near 140 bpm; a wider --tempo-range is how a run meets faster songs.
    from engine.training import train as T
    with pytest.raises(SystemExit):
        T.parse_args(["--out", str(tmp_path / "x"), "--tempo-range", "1.2", "1.0"])
    assert "SLOWEST <= FASTEST" in capsys.readouterr().err
    made = []

    class Recording(WindowDataset):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    import engine.training.data as D
    monkeypatch.setattr(D, "WindowDataset", Recording)        # train.run imports it from there
    assert train_main(["--data", str(aist_data / "motions"), "--aist-music", str(aist_data / "music"),
                       "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "cache"), "--batch", "2",
                       "--width", "32", "--layers", "1", "--heads", "2", "--steps", "1", "--threads", "1",
                       "--tempo-range", "1.2", "1.45"]) == 0
    train_set = made[0]
    assert train_set.tempo_range == (1.2, 1.45)
    factors = [train_set.window_spec(i)["factor"] for i in range(100)]
    assert all(1.0 <= f <= 1.45 for f in factors) and max(factors) > 1.3     # 1.0: no stretch, or a short item


def test_train_reports_missing_data_clearly(tmp_path, capsys):
    assert train_main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "run")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()                       # no empty run folder left behind


@pytest.mark.parametrize("bad, message", [
    (["--steps", "0"], "--steps must be at least 1"), (["--steps", "-5"], "--steps must be at least 1"),
    (["--batch", "0"], "--batch must be at least 1"), (["--lr", "nan"], "--lr must be a number of at least 0"),
    (["--foot-weight", "-1"], "--foot-weight must be a number of at least 0"),
    (["--val-every", "0"], "--val-every must be at least 1"), (["--width", "0"], "--width must be at least 1"),
    (["--width", "30", "--heads", "4"], "multiple of --heads"), (["--init", "missing.safetensors"], "no weights file"),
    (["--seed", "-1"], "--seed must be a whole number from 0"),
    (["--init", str(REPO / "weights" / "dance_fast.safetensors")], "is a few-step student: fine-tune its teacher"),
])
def test_bad_training_options_are_one_line_and_write_nothing(tmp_path, capsys, bad, message):
    # QA: tracebacks (a ZeroDivisionError after config.json was written), and --steps 0 said it
    # had written a model it never wrote.
    assert train_main(["--out", str(tmp_path / "run"), *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and message in err
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_trains_as_the_uninterrupted_one(aist_data, tmp_path):
    # QA: each resumed stretch reseeded the global generator and replayed the first stretch's
    # noise and timesteps: 3 steps and a resume to 6 ended up to 0.044 away from 6 in one go.
    args = tiny_run_args(aist_data, tmp_path)[:-2] + ["--val-every", "2"]
    assert train_main(args + ["--out", str(tmp_path / "whole"), "--steps", "6"]) == 0
    assert train_main(args + ["--out", str(tmp_path / "parts"), "--steps", "6", "--stop-at", "3"]) == 0
    assert train_main(args + ["--out", str(tmp_path / "parts"), "--steps", "6"]) == 0
    whole, parts = (load_file(str(tmp_path / run / "state.safetensors")) for run in ("whole", "parts"))
    assert whole.keys() == parts.keys()
    assert max(float((whole[k].double() - parts[k].double()).abs().max()) for k in whole) < 1e-6
    # And logs the loss it would have: the running average goes on (QA: restarted at the resume,
    # step 6 logged 11.53 against 8.39).
    logged = {run: {e["step"]: e["train_loss"] for e in map(json.loads, (tmp_path / run / "log.jsonl").open())}
              for run in ("whole", "parts")}
    assert logged["parts"][6] == pytest.approx(logged["whole"][6], rel=1e-5)


def test_damaged_data_and_run_folders_are_one_line(aist_data, tmp_path, capsys):
    """QA: tracebacks for a damaged tang2018 or AIST++ pickle, a garbage .npz given as data and
    a cut-short state file; and train carried on a distillation's folder as its own run."""
    def said(args) -> str:
        capsys.readouterr()
        assert train_main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.splitlines() == [err], err
        return err
    tang = tmp_path / "tang"
    tang.mkdir()
    (tang / "DANCE_C_1.pkl").write_bytes(b"not a pickle at all")
    assert "cannot read tang2018 motion" in said(["--data", str(tang), "--out", str(tmp_path / "a")])
    aist = tmp_path / "aist" / "motions"
    aist.mkdir(parents=True)
    with open(aist / "gBR_sBM_cAll_d04_mBR0_ch01.pkl", "wb") as f:
        pickle.dump([1, 2, 3], f)
    assert "cannot read AIST++ motion" in said(["--data", str(aist), "--out", str(tmp_path / "b")])
    garbage = tmp_path / "bad.npz"
    garbage.write_bytes(b"PK\x03\x04 garbage")
    assert "is not a packed source" in said(["--data", str(garbage), "--out", str(tmp_path / "c")])
    run = tmp_path / "run"
    args = tiny_run_args(aist_data, tmp_path) + ["--out", str(run)]
    assert train_main(args) == 0
    state = run / "state.safetensors"
    state.write_bytes(state.read_bytes()[:200])
    assert "cannot be read" in said(args + ["--steps", "4"])
    other = tmp_path / "other"
    shutil.copytree(aist_data, other)
    swapped = [str(other / "motions") if a == str(aist_data / "motions") else a for a in args]
    assert "was trained on" in said(swapped + ["--steps", "4"])          # resumed on other data
    (run / "recipe.json").write_text("{}")                 # what a distillation leaves
    state.write_bytes(b"")
    assert "holds a run of 'python -m engine distill'" in said(args + ["--steps", "4"])


def test_an_unwritable_run_folder_is_one_line(capsys):
    assert train_main(["--out", "/proc/dance-run", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "cannot be written" in err


def test_train_runs_under_torchrun_with_two_processes(aist_data, tmp_path):
    """The multi-GPU path (DistributedDataParallel) exercised on the CPU with the gloo backend."""
    import subprocess
    import sys
    from conftest import REPO
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",   # a free port
           "-m", "engine", "train", "--data", str(aist_data / "motions"), "--aist-music", str(aist_data / "music"),
           "--out", str(out), "--cache", str(tmp_path / "cache"), "--batch", "2", "--width", "32", "--layers", "1",
           "--heads", "2", "--steps", "2", "--val-every", "2", "--threads", "1", "--device", "cpu"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [2]                     # only rank 0 writes
    assert checkpoint.load(out / "model.safetensors").info["step"] == 2
