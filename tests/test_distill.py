"""Distillation (engine.training.distill) on a tiny synthetic set and a tiny random teacher, and the
runtime's choice between a few-step student and its teacher (engine.sampler.fewstep)."""
import json
import shutil

import numpy as np
import pytest
import torch

from engine.sampler import checkpoint
from engine.body import layout as L
from engine.api import draw, finish_draw, generate
from engine.defaults import SMOOTHING_SECONDS, STUDENT_SMOOTHING_SECONDS
from engine.training.data.cache import CorpusItem, _save
from engine.training.distill import (main as distill_main, motion_band_error, motion_energy_error, sample_windows, student_timesteps,
                                     teacher_segment_target, x0_landing_at)
from engine.sampler.diffusion import cosine_alpha_bar, ddim_step, ddim_timesteps
from engine.errors import EngineError
from engine.sampler.fewstep import STUDENT_NAME, choose_weights, distilled_from_this
from engine.sampler.model import Denoiser, ModelConfig
from engine.body.skeleton import REST_PELVIS_HEIGHT

from conftest import gaussian_x0_predictor, teacher_with_guide


@pytest.fixture(scope="module")
def teacher(tiny_weights, tmp_path_factory):
    """The tiny random test network with a second one as its autoguidance guide."""
    return teacher_with_guide(tiny_weights, tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def packed_data(tmp_path_factory):
    """Six synthetic 8 s dances with music, packed as `python -m engine data` packs them."""
    rng = np.random.default_rng(0)
    items = []
    for i, style in enumerate(["chacha", "rumba", "tango", "waltz", "chacha", "rumba"]):
        n = 240
        t = np.arange(n)[:, None] / L.MODEL_FPS
        poses = 0.3 * np.sin(2 * np.pi * (1.0 + 0.2 * i) * t + rng.uniform(0, 6, (1, 72)))
        trans = np.concatenate([0.2 * np.sin(t), REST_PELVIS_HEIGHT + 0.02 * np.sin(4 * t), 0.1 * t], axis=1)
        motion = L.pack(torch.from_numpy(poses), torch.from_numpy(trans)).numpy().astype(np.float32)
        music = rng.normal(size=(n, 35)).astype(np.float32)
        items.append(CorpusItem(f"SYNTH_{i}", style, motion, music))
    path = tmp_path_factory.mktemp("data") / "synthetic.npz"
    _save(path, items, "tang2018", "packed", compact=True)
    return path


def test_the_x0_target_lands_where_the_teacher_lands():
    ab = cosine_alpha_bar()
    x, x_next = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    x0 = x0_landing_at(x, x_next, ab[736], ab[473])
    assert torch.allclose(ddim_step(x, x0, ab[736], ab[473]), x_next, atol=1e-4)
    # One teacher substep: the target is the teacher's own x0 (nothing to correct).
    const = lambda x_t, t, music: torch.full_like(x_t, 0.5)   # noqa: E731
    target = teacher_segment_target(const, x, None, [999, 736, 473, 210], 1, 1, ab)
    assert torch.allclose(target, torch.full_like(x, 0.5), atol=1e-4)
    assert student_timesteps(4, 5) == [999, 736, 473, 210]


def test_the_teachers_target_follows_the_engines_second_order_solver():
    # The student learns what users get from the teacher, which samples with DPM-Solver++(2M).
    # Gaussian data has an exact x0 predictor, so a segment's own ODE end point is known (DDIM
    # over every integer t between): the second-order target must land nearer it than DDIM's.
    ab = cosine_alpha_bar()
    variance = torch.tensor([0.3, 1.0, 2.0]) ** 2
    exact_x0 = gaussian_x0_predictor(ab, variance)
    times = ddim_timesteps(20)
    start, end = times[5], times[10]
    x = torch.randn(4, 30, 3, generator=torch.Generator().manual_seed(0)) * (ab[start] * variance + 1 - ab[start]).sqrt()
    y = x
    for t in range(start, end, -1):
        y = ddim_step(y, exact_x0(y, torch.full((4,), t), None), ab[t], ab[t - 1])
    miss = {solver: float((ddim_step(x, teacher_segment_target(exact_x0, x, None, times, 1, 5, ab, solver), ab[start],
                                     ab[end]) - y).pow(2).mean().sqrt()) for solver in ("ddim", "dpm2m")}
    assert miss["dpm2m"] < 0.5 * miss["ddim"], miss
    # The last segment's target is the teacher's clean motion, as the sampler draws it.
    noisy = torch.randn(4, 30, 3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(teacher_segment_target(exact_x0, noisy, None, times, 3, 5, ab, "dpm2m"),
                          sample_windows(exact_x0, noisy, None, times[15:], ab, "dpm2m"))


def _distil(teacher, data, out, iterations, *extra):
    return distill_main(["--teacher", str(teacher), "--out", str(out), "--data", str(data), "--batch", "8",
                         "--iterations", str(iterations), "--lr", "3e-3", "--warmup", "1", "--ema", "0",
                         "--probe-windows", "4", "--segments", "2", "--substeps", "3", "--threads", "1", *extra])


def test_a_resumed_distillation_draws_what_the_uninterrupted_one_would(teacher, packed_data, tmp_path):
    # QA: the draws were seeded once per start, so a resumed run parted from the uninterrupted one
    # (up to 1.7e-3 in the weights after a resume).
    from safetensors.torch import load_file
    assert _distil(teacher, packed_data, tmp_path / "whole", 4) == 0
    assert _distil(teacher, packed_data, tmp_path / "parts", 2) == 0
    assert _distil(teacher, packed_data, tmp_path / "parts", 4) == 0
    whole, parts = (load_file(str(tmp_path / run / "state.safetensors")) for run in ("whole", "parts"))
    assert max(float((whole[k].double() - parts[k].double()).abs().max()) for k in whole) < 1e-6
    # And logs the loss it would have: the running average goes on (QA: restarted at the resume,
    # 1.284 against 1.153 with an identical student).
    final = [json.loads((tmp_path / run / "log.jsonl").read_text().splitlines()[-1]) for run in ("whole", "parts")]
    assert final[1]["iteration"] == final[0]["iteration"] == 4
    assert final[1]["loss"] == pytest.approx(final[0]["loss"], rel=1e-5)


def test_the_motion_band_term_weighs_the_moves_not_the_pose_or_the_jitter():
    t = torch.arange(150, dtype=torch.float64) / L.MODEL_FPS
    target = torch.randn(1, 150, 3, dtype=torch.float64)

    def band_error(error_in_time):
        return float(motion_band_error(target + error_in_time[None, :, None], target))
    assert band_error(torch.zeros(150)) == 0.0
    offset, slow = band_error(torch.full((150,), 0.3)), band_error(0.3 * torch.sin(2 * torch.pi * 0.2 * t))
    move, jitter = band_error(0.3 * torch.sin(2 * torch.pi * 2.0 * t)), band_error(0.3 * torch.sin(2 * torch.pi * 10 * t))
    assert offset < 1e-12 and move > 20 * slow and move > 20 * jitter, (offset, slow, move, jitter)


def test_the_motion_energy_term_weighs_how_much_it_moves_not_when():
    t = torch.arange(150, dtype=torch.float64) / L.MODEL_FPS
    move = torch.sin(2 * torch.pi * 2.0 * t)[None, :, None].repeat(2, 1, 3)

    def errors(pred):
        return float(motion_energy_error(pred, move)), float(motion_band_error(pred, move))
    late, late_band = errors(torch.sin(2 * torch.pi * 2.0 * (t - 0.1))[None, :, None].repeat(2, 1, 3))
    calm, calm_band = errors(0.6 * move)
    assert errors(move) == (0.0, 0.0) and errors(move + 0.5) [0] < 1e-12           # a pose offset does not move
    assert late < 0.01 * calm and late_band > calm_band, (late, calm, late_band, calm_band)   # timing is free
    # Each window and channel is matched on its own: one still window is not made up by another moving more.
    mixed = move.clone()
    mixed[0] *= 0.0
    mixed[1] *= 1.4
    assert errors(mixed)[0] > calm


def test_the_student_approaches_the_teacher_and_resumes(teacher, packed_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _distil(teacher, packed_data, out, 100) == 0
    first = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    start, after = first[-1]["teacher_rms_at_start"], first[-1]["teacher_rms"]
    assert first[-1]["iteration"] == 100
    assert after < 0.7 * start, (start, after)
    # Rerunning with more iterations continues the same run.
    assert _distil(teacher, packed_data, out, 110) == 0
    assert "resuming from iteration 100" in capsys.readouterr().out
    last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert last["iteration"] == 110 and last["teacher_rms_at_start"] == pytest.approx(start)
    student = checkpoint.load(out / "student.safetensors")
    assert student.student["steps"] == 2 and student.student["teacher_steps"] == 6
    assert student.student["timesteps"] == student_timesteps(2, 3) and student.guide is None
    assert student.student["teacher_solver"] == "dpm2m" and "teacher dpm2m steps" in student.student["recipe"]
    # Another loss or another teacher solver is another recipe: not resumed into this run.
    for other in (["--motion-weight", "100"], ["--energy-weight", "100"], ["--teacher-solver", "ddim"]):
        assert _distil(teacher, packed_data, out, 120, *other) == 2
        assert "another teacher or recipe" in capsys.readouterr().err
    assert _distil(teacher, packed_data, tmp_path / "bad", 5, "--train-segments", "2") == 2
    assert "--train-segments must be from 0 to 1" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert _distil(teacher, packed_data, tmp_path / "bad", 5, "--motion-weight", "-1") == 2
    assert "--motion-weight must be a number of at least 0" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert _distil(teacher, packed_data, tmp_path / "band", 4, "--motion-weight", "100", "--train-segments", "1") == 0
    assert "motion-band term 100" in checkpoint.load(tmp_path / "band" / "student.safetensors").student["recipe"]
    assert _distil(teacher, packed_data, tmp_path / "energy", 2, "--energy-weight", "500") == 0
    assert "motion-energy term 500" in checkpoint.load(tmp_path / "energy" / "student.safetensors").student["recipe"]
    # A student is not a teacher to distil from.
    assert distill_main(["--teacher", str(out / "student.safetensors"), "--out", str(tmp_path / "again"),
                         "--data", str(packed_data)]) == 2
    assert "already a few-step student" in capsys.readouterr().err


def test_generate_picks_the_student_or_its_teacher(teacher, packed_data, tmp_path, click_song):
    out = tmp_path / "run"
    assert _distil(teacher, packed_data, out, 2) == 0
    student = tmp_path / "student.safetensors"
    shutil.copyfile(out / "student.safetensors", student)
    record = checkpoint.load(student).student
    # Alone, the student serves its own settings and refuses others with one line.
    assert choose_weights(student, record, "fast", None, 2.5, 2.0) == student
    assert choose_weights(student, record, "fast", 6, 2.5, 2.0) == student       # the teacher's step count
    with pytest.raises(EngineError, match="need the teacher"):
        choose_weights(student, record, "best", None, 2.5, 2.0)
    with pytest.raises(EngineError, match="need the teacher"):
        generate(click_song, weights=student, steps=20, duration=2.0)
    # Without --steps it samples its own (QA: the default 20 refused a student of 6 teacher steps).
    assert generate(click_song, weights=student, quality="fast", duration=2.0).poses.shape == (60, 72)
    with pytest.raises(EngineError, match="quality"):
        choose_weights(student, record, "slow", None, 2.5, 2.0)
    # With its teacher beside it (the name it records), "best" and other settings use the teacher.
    shutil.copyfile(teacher, tmp_path / "teacher.safetensors")
    with pytest.warns(UserWarning, match="student.safetensors is a few-step student: quality 'best' dances with "
                                         "its teacher teacher.safetensors"):   # QA26: said nothing
        assert choose_weights(student, record, "best", None, 2.5, 2.0) == tmp_path / "teacher.safetensors"
    with pytest.warns(UserWarning, match="student serves only 6 steps, guidance 2.5"):
        assert choose_weights(student, record, "fast", 10, 2.5, 2.0) == tmp_path / "teacher.safetensors"
    kw = dict(duration=2.0, seed=1)
    best = generate(click_song, weights=student, quality="best", steps=6, **kw)
    assert np.array_equal(best.poses, generate(click_song, weights=teacher, steps=6, **kw).poses)
    fast = generate(click_song, weights=student, quality="fast", steps=6, **kw)   # the steps it stands for
    assert fast.poses.shape == best.poses.shape and not np.allclose(fast.poses, best.poses)
    # Each sampler's dance is finished with the smoothing it was calibrated with, unless told.
    drawn = draw(click_song, weights=student, quality="fast", steps=6, **kw)
    assert drawn.few_step and drawn.smoothing == STUDENT_SMOOTHING_SECONDS != SMOOTHING_SECONDS
    assert np.array_equal(finish_draw(drawn).poses, fast.poses)
    assert not np.allclose(finish_draw(drawn, smoothing=SMOOTHING_SECONDS).poses, fast.poses, atol=1e-4)
    assert draw(click_song, weights=student, quality="best", steps=6, **kw).smoothing == SMOOTHING_SECONDS
    # The other way round (as shipped): the teacher is the weights and its student sits beside it.
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    w = shipped / record["teacher"]                                 # the name the student records
    shutil.copyfile(teacher, w)
    shutil.copyfile(student, shipped / STUDENT_NAME)
    assert choose_weights(w, None, "fast", None, 2.5, 2.0) == shipped / STUDENT_NAME
    assert choose_weights(w, None, "best", None, 2.5, 2.0) == w
    with pytest.warns(UserWarning, match="these settings use the many-step model"):
        assert choose_weights(w, None, "fast", 10, 2.5, 2.0) == w      # settings the student does not stand for
    with pytest.warns(UserWarning, match="no few-step student beside"):
        assert choose_weights(teacher, None, "fast", None, 2.5, 2.0) == teacher
    again = generate(click_song, weights=w, quality="fast", steps=6, **kw)
    assert np.array_equal(again.poses, fast.poses)
    assert distilled_from_this(record, w)
    # A teacher fine-tuned in place (same file name, other weights) keeps its student for "fast"...
    torch.manual_seed(5)
    other = checkpoint.load(teacher)
    checkpoint.save(w, Denoiser(other.model.cfg), other.normalizer, other.music_normalizer, other.styles)
    assert choose_weights(w, None, "fast", None, 2.5, 2.0) == shipped / STUDENT_NAME
    assert not distilled_from_this(record, w)
    # ...but a student of another teacher file is not used.
    renamed = shipped / "mine.safetensors"
    w.rename(renamed)
    with pytest.warns(UserWarning, match="no few-step student beside mine.safetensors"):
        assert choose_weights(renamed, None, "fast", None, 2.5, 2.0) == renamed


def test_a_student_carries_on_when_its_teacher_is_fine_tuned(teacher, packed_data, tmp_path, capsys):
    from types import SimpleNamespace
    from engine.training.distill import initial_student
    out = tmp_path / "run"
    assert _distil(teacher, packed_data, out, 2) == 0
    old_student = out / "student.safetensors"
    before, earlier = checkpoint.load(teacher).model, checkpoint.load(old_student).model
    # The teacher fine-tuned into two new inputs, beat phase (two music columns) and keys, and
    # onto new data with a new style (a row of the style table).
    cfg = ModelConfig.from_dict({**before.cfg.to_dict(), "music_channels": before.cfg.music_channels + 2,
                                 "key_input": True, "num_styles": before.cfg.num_styles + 1})
    torch.manual_seed(11)
    tuned = Denoiser(cfg)
    state = {k: v + 0.01 * torch.randn_like(v) if k in before.state_dict() and v.shape == before.state_dict()[k].shape
             else v for k, v in tuned.state_dict().items()}
    tuned.load_state_dict(state)
    start = initial_student(SimpleNamespace(model=tuned), old_student, teacher)
    old_t, old_s, new_t = before.state_dict(), earlier.state_dict(), tuned.state_dict()
    name = "music.proj.weight"
    shared = next(k for k in new_t if k in old_t and k != name)
    assert torch.allclose(start[shared], old_s[shared] + new_t[shared] - old_t[shared], atol=1e-6)
    width = old_t[name].shape[1]
    assert torch.allclose(start[name][:, :width], old_s[name] + new_t[name][:, :width] - old_t[name], atol=1e-6)
    assert torch.equal(start[name][:, width:], new_t[name][:, width:])           # the phase columns: the teacher's
    assert all(torch.equal(start[k], new_t[k]) for k in new_t if k.startswith("key_in."))
    rows = old_t["style.weight"].shape[0]
    assert torch.allclose(start["style.weight"][:rows], old_s["style.weight"] + new_t["style.weight"][:rows]
                          - old_t["style.weight"], atol=1e-6)
    assert torch.equal(start["style.weight"][rows:], new_t["style.weight"][rows:])   # the new style: the teacher's
    # Without the old teacher: the earlier student's weights as they are.
    plain = initial_student(SimpleNamespace(model=tuned), old_student, None)
    assert torch.equal(plain[shared], old_s[shared])
    # The command line: the old teacher must be the one the student records.
    assert distill_main(["--teacher", str(teacher), "--out", str(tmp_path / "wrong"), "--data", str(packed_data),
                         "--init-student", str(old_student), "--init-teacher", str(tiny_weights_of(teacher)),
                         "--iterations", "1"]) == 2
    assert "is not the teacher" in capsys.readouterr().err
    assert distill_main(["--teacher", str(teacher), "--out", str(tmp_path / "right"), "--data", str(packed_data),
                         "--init-student", str(old_student), "--init-teacher", str(teacher), "--iterations", "1",
                         "--batch", "4", "--probe-windows", "2", "--segments", "2", "--substeps", "3",
                         "--threads", "1"]) == 0
    log = json.loads((tmp_path / "right" / "log.jsonl").read_text().splitlines()[-1])
    assert log["iteration"] == 1
    assert checkpoint.load(tmp_path / "right" / "student.safetensors").info["started_from"].startswith("student")


def tiny_weights_of(teacher):
    """A weights file that is not `teacher` (its main network alone)."""
    other = teacher.parent / "other.safetensors"
    c = checkpoint.load(teacher)
    checkpoint.save(other, c.model, c.normalizer, c.music_normalizer, c.styles)
    return other


@pytest.mark.parametrize("bad, message", [
    (["--iterations", "0"], "--iterations must be at least 1"), (["--batch", "0"], "--batch must be at least 1"),
    (["--lr", "nan"], "--lr must be a number of at least 0"), (["--ema", "1"], "--ema must be from 0 to below 1"),
    (["--data", "missing-folder"], "data not found"),
])
def test_bad_distillation_options_are_one_line_and_write_nothing(tiny_weights, tmp_path, capsys, bad, message):
    # QA pass (as for train): --iterations 0 said it wrote a student, --batch 0 was a traceback.
    out = tmp_path / "run"
    assert distill_main(["--teacher", str(tiny_weights), "--out", str(out), "--cache", str(tmp_path / "cache"), *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and message in err
    assert not out.exists()


def test_a_teacher_without_a_guide_is_recorded_as_not_autoguided(tiny_weights, packed_data, tmp_path, capsys):
    # QA26: a teacher fresh from training has no guide network; its student's record said
    # "autoguidance": 2.0, and generate with --autoguidance 3 on such weights said nothing.
    import warnings
    from engine.api import generate
    from engine.errors import EngineNote
    assert _distil(tiny_weights, packed_data, tmp_path / "s", 1) == 0
    assert "has no guide network: no autoguidance to distil" in capsys.readouterr().out
    assert checkpoint.load(tmp_path / "s" / "student.safetensors").student["autoguidance"] == 1.0
    for weight, said in ((3.0, 1), (2.0, 0), (1.0, 0)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            generate(np.zeros(22050 * 2, np.float32), sample_rate=22050, weights=tiny_weights, steps=1,
                     autoguidance=weight)
        notes = [str(w.message) for w in caught if issubclass(w.category, EngineNote) and "no guide" in str(w.message)]
        assert len(notes) == said, notes
