"""engine.evaluation.evaluate on tiny synthetic dances and a click track (no shared data needed)."""
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.evaluation import evaluate as E
from engine.body.layout import MODEL_FPS
from engine.body.motion import Motion
from engine.body.skeleton import REST_PELVIS_HEIGHT, REST_POSITIONS

PERIOD = 15                         # frames between speed minima: 0.5 s, 120 BPM


def pulsing_dance(name: str, seconds: float, phase: int = 0, amplitude: float = 0.02) -> E.Dance:
    """Every joint glides along X with speed minima every PERIOD frames, at frames phase + n*PERIOD."""
    k = np.arange(int(seconds * MODEL_FPS), dtype=np.float64)
    x = amplitude * (k - PERIOD / (2 * np.pi) * np.sin(2 * np.pi * (k - phase) / PERIOD))
    p = np.repeat((REST_POSITIONS + [0.0, REST_PELVIS_HEIGHT, 0.0])[None], len(k), axis=0)
    p[:, :, 0] += x[:, None]
    return E.Dance(name=name, style="pop", positions=p)


def click_track(path, seconds: float, sr: int = 22050) -> None:
    """Short clicks every 0.5 s, starting at 0."""
    wave = np.zeros(int(seconds * sr), dtype=np.float32)
    click = (np.hanning(200) * np.sin(2 * np.pi * 1500 * np.arange(200) / sr)).astype(np.float32)
    for t in np.arange(0, seconds - 0.1, 0.5):
        s = int(t * sr)
        wave[s:s + 200] += click
    sf.write(path, wave, sr)


def test_format_table_is_aligned():
    results = {
        "random": {"bas_bailando": 0.2, "bas_fact": 0.25, "pfc": 1.5, "foot_skating": 0.061, "jerk": 30.0,
                   "fid_k": 3.0, "div_k": 7.5},
        "real": {"bas_bailando": 0.3, "bas_fact": 0.35, "pfc": 1.2, "foot_skating": 0.05, "jerk": 25.0,
                 "fid_k": float("nan"), "div_k": 8.0},
    }
    table = E.format_table(results)
    lines = table.splitlines()
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1               # every line equally wide
    assert lines[2].startswith("real") and lines[3].startswith("random")
    assert "6.100" in lines[3]                                    # skating shown in percent
    assert lines[2].split()[6] == "-"                             # NaN FID shown as a dash


def test_evaluate_rows_files_and_fake_model(tmp_path):
    song = tmp_path / "song.wav"
    click_track(song, 9.0)
    val = pulsing_dance("val_song", 8.0)
    val.audio_path, val.audio_offset = str(song), 0.5           # the dance starts 0.5 s into the song
    train = [pulsing_dance(f"train_{i}", 12.0, phase=i * 4, amplitude=0.01 + 0.01 * i) for i in range(3)]

    calls = []

    def fake_generate(clip: E.Clip, seed: int) -> Motion:
        """A 'model' that dances at 60 fps in phase with the music (checks resampling to 30 fps)."""
        calls.append((clip.start, clip.duration, clip.style, seed))
        T = int(clip.duration * 60)
        t = np.arange(T) / 60.0
        trans = np.stack([0.3 * (t - 0.5 / (2 * np.pi) * np.sin(2 * np.pi * t / 0.5)),
                          np.full(T, REST_PELVIS_HEIGHT), np.zeros(T)], axis=-1)
        return Motion(poses=np.zeros((T, 72)), trans=trans, fps=60.0, style=clip.style, seed=seed)

    out = tmp_path / "eval"
    results = E.evaluate(train, [val], clip_seconds=4.0, generate=fake_generate, seed=7, out=out)

    assert [c[0] for c in calls] == [0.5, 4.5]                   # two 4 s clips, at the song's times
    assert {c[2] for c in calls} == {"pop"} and [c[3] for c in calls] == [7, 8]
    assert set(results) == {"model", "real", "random"}
    for row in results.values():
        for key, _, _ in E.COLUMNS:
            assert math.isfinite(row[key])
        assert 0.0 <= row["bas_bailando"] <= 1.0 and 0.0 <= row["bas_fact"] <= 1.0
        assert row["fid_k"] >= 0.0 and row["div_k"] >= 0.0
    # The fake model moves on the clicks: it aligns far better than chance would.
    assert results["model"]["bas_bailando"] > 0.5

    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc["rows"]) == {"model", "real", "random"}
    assert doc["clips"] == ["val_song@0s", "val_song@4s"]
    assert doc["settings"]["num_train_clips"] == 9
    for png in ("beat_alignment.png", "metrics.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_random_stretches_need_long_enough_dances():
    with pytest.raises(E.EngineError):
        E.random_stretches([pulsing_dance("short", 1.0)], frames=60, count=1, seed=0)


def test_missing_weights_exit_code(tmp_path, capsys):
    code = E.main(["--weights", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


@pytest.mark.parametrize("argv, says", [
    (["--clip-seconds", "nan"], "--clip-seconds"),                # QA: tracebacks, after the data was read
    (["--clip-seconds", "inf"], "--clip-seconds"),
    (["--clip-seconds", "0.01"], "--clip-seconds"),
    (["--seeds", "0", "-1"], "seed"),                             # QA: said once generating had begun
    (["--eta", "2"], "sampling_eta"),
    (["--steps", "0"], "steps"),
    (["--guidance", "nan"], "guidance"),
    (["--smoothing", "-1"], "--smoothing"),
    (["--max-genre-songs", "0"], "--max-genre-songs"),
])
def test_bad_options_are_refused_in_one_line_before_the_data_is_read(tiny_weights, tmp_path, capsys, argv, says):
    missing = tmp_path / "no_such_data"      # read first, this would be the error instead
    code = E.main(["--weights", str(tiny_weights), "--data", str(missing), "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and says in err and "\n" not in err, err
    assert not (tmp_path / "o").exists()


def test_an_evaluation_is_not_replaced_without_force(tiny_weights, tmp_path, capsys):
    # QA: a second run replaced an earlier evaluation's figures without a word, and a file as
    # --out was a traceback after all the scoring. Both are refused before any work.
    out = tmp_path / "ev"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    for argv, said in ((["--out", str(out)], "already holds an evaluation"),
                       (["--out", str(out / "metrics.json")], "is a file: give a folder"),
                       (["--out", str(tmp_path / "new"), "--max-clips", "0"], "--max-clips must be 1 or more")):
        capsys.readouterr()
        assert E.main(["--weights", str(tiny_weights), "--data", str(tmp_path / "nowhere"), *argv]) == 2  # QA26: 1
        err = capsys.readouterr().err.strip()
        assert err.splitlines() == [err] and said in err, err
    assert (out / "metrics.json").read_text() == "{}"


def test_probe_measures_the_truth_and_the_prediction(tiny_weights):
    from engine.sampler import checkpoint
    from engine.body import layout as L
    from engine.training.probe import reconstruction
    from test_data import synth_motion
    ckpt = checkpoint.load(tiny_weights)
    poses, trans = synth_motion(60, L.MODEL_FPS, seed=0)
    trans[:, 0] += np.arange(60) * 0.5 / L.MODEL_FPS              # walking at 0.5 m/s along x on top
    motion = L.pack(torch.from_numpy(poses), torch.from_numpy(trans))[None]
    out = reconstruction(ckpt, motion, torch.zeros(1, 60, 35), torch.tensor([0]), t=20)
    step = np.diff(trans[:, [0, 2]], axis=0)
    assert out["truth"]["root"] == pytest.approx(np.linalg.norm(step, axis=1).mean() * L.MODEL_FPS, rel=1e-6)
    assert out["truth"]["root"] > 0.4 and np.isfinite(list(out["model"].values())).all()
    from engine.evaluation.metrics import jerk
    from engine.body.skeleton import joint_positions
    assert out["truth"]["jerk"] == pytest.approx(jerk(joint_positions(poses, trans), L.MODEL_FPS), rel=1e-5)


def test_every_nth_clip_for_quick_sweeps(tmp_path):
    song = tmp_path / "song.wav"
    click_track(song, 20.0)
    val = pulsing_dance("val_song", 20.0)
    val.audio_path = str(song)
    assert [c.name for c in E.cut_clips([val], 2.0)][::3] == [c.name for c in E.cut_clips([val], 2.0, every=3)]
    assert [c.name for c in E.cut_clips([val], 2.0, max_clips=2, every=3)] == ["val_song@0s", "val_song@6s"]


def test_seeded_rows_their_mean_and_the_genre_set(tmp_path):
    from engine.evaluation.genre_set import GenreSong
    song = tmp_path / "song.wav"
    click_track(song, 9.0)
    val = pulsing_dance("val_song", 8.0)
    val.audio_path = str(song)
    train = [pulsing_dance(f"train_{i}", 12.0, phase=i * 4, amplitude=0.01 + 0.01 * i) for i in range(3)]
    genre = tmp_path / "electro.wav"
    click_track(genre, 8.5)                                         # danced whole: two 4 s clips
    calls = []

    def fake(clip: E.Clip, seed: int) -> Motion:
        calls.append((clip.name, clip.duration, seed))
        T = int(round(clip.duration * MODEL_FPS))
        amplitude = 0.2 + 0.05 * (seed % 3)                         # seeds give different dances
        t = np.arange(T) / MODEL_FPS
        trans = np.stack([amplitude * t, np.full(T, REST_PELVIS_HEIGHT), np.zeros(T)], axis=-1)
        return Motion(poses=np.zeros((T, 72)), trans=trans, fps=float(MODEL_FPS), seed=seed)

    songs = [GenreSong(name="electro", path=genre, tempo_bpm=120.0, genre="electronic", mood="happy")]
    results = E.evaluate(train, [val], clip_seconds=4.0, generators={"any": fake, "true": fake},
                         seeds=[4, 5], every_seed=("any",), genre_set=songs)
    assert {"any, seed 4", "any, seed 5", "any, mean of 2 seeds", "any, spread of 2 seeds", "true",
            "real", "random"} <= set(results)
    assert results["any, mean of 2 seeds"]["speed"] == pytest.approx(
        (results["any, seed 4"]["speed"] + results["any, seed 5"]["speed"]) / 2)
    assert results["any, spread of 2 seeds"]["speed"] > 0
    assert math.isfinite(results["genres: any, mean of 2 seeds"]["fid_k"])
    assert ("electro", 8.0, 4) in calls and ("electro", 8.0, 5) in calls   # the song danced whole, per seed
    assert len(calls) == 2 * 3 + 3          # "any": both seeds x (2 clips + 1 song); "true": the first seed


def test_probe_measures_key_use_and_a_fresh_key_input_changes_nothing(tiny_weights):
    """A plain network fine-tuned into key input starts with a zero key layer: keys change nothing
    until it learns them; once its key layer is non-zero, they do."""
    from engine.sampler import checkpoint
    from engine.body import layout as L
    from engine.sampler.model import Denoiser
    from engine.training.probe import key_use
    from test_data import synth_motion
    ckpt = checkpoint.load(tiny_weights)
    torch.manual_seed(0)
    ckpt.model = Denoiser(type(ckpt.model.cfg)(**{**ckpt.model.cfg.to_dict(), "key_input": True})).eval()
    poses, trans = synth_motion(60, L.MODEL_FPS, seed=0)
    motion = L.pack(torch.from_numpy(poses), torch.from_numpy(trans))[None]
    args = (ckpt, motion, torch.zeros(1, 60, 35), torch.tensor([0]), 900, 20)
    without, keyed = key_use(*args)
    assert without == pytest.approx(keyed) and without > 0
    torch.nn.init.normal_(ckpt.model.key_in.weight, std=0.5)
    without, keyed = key_use(*args)
    assert keyed != pytest.approx(without)


@pytest.mark.parametrize("argv, says", [
    (["--t", "20", "1000"], "error: --t"),
    (["--key-t", "-5"], "error: --t and --key-t"),                 # it noised to step 995
    (["--key-seconds", "nan"], "error: --key-seconds"),
    (["--weights", "/nonexistent.safetensors"], "weights file not found"),
    (["--data", "/nonexistent"], "data folder not found"),
])
def test_probe_refuses_bad_options_in_one_line_before_any_work(capsys, argv, says):
    from engine.__main__ import run_tool
    assert run_tool("probe", argv) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err


def test_the_record_says_which_network_the_model_rows_sampled(tiny_weights):
    # QA: metrics.json said quality "fast" for a run that sampled the many-step model (no student).
    from types import SimpleNamespace
    from conftest import REPO
    fast = SimpleNamespace(quality="fast", steps=None, guidance=2.5, autoguidance=2.0)
    assert E._sampled_with(tiny_weights, fast) == "many-step model"
    assert E._sampled_with(REPO / "weights" / "dance.safetensors", fast) == "few-step student"
    assert E._sampled_with(REPO / "weights" / "dance.safetensors", SimpleNamespace(**{**vars(fast), "quality": "best"})) \
        == "many-step model"
