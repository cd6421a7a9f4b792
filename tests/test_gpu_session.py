"""What a lent GPU's session needs: compact packed data (engine.training.data.packed), a learning
rate that decays over a fixed time, and the one-command session (engine.training.gpu_session),
tried on the CPU with a tiny teacher, its tiny student and synthetic dances."""
import json
import shutil
import subprocess
import tempfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine.body import layout as L
from engine.body.skeleton import REST_PELVIS_HEIGHT
from engine.sampler import checkpoint
from engine.sampler.fewstep import STUDENT_NAME, distilled_from_this, file_digest
from engine.training.autoguide import attach_guide
from engine.training.data import packed
from engine.training.data.cache import CorpusItem, _load, _save
from engine.training.distill import main as distill_main
from engine.training.gpu_session import (PACKED_DATA_BYTES, RECIPES, SCREEN_PACK_BYTES, UPLOAD_LIMIT_BYTES,
                                        main as session_main)
from engine.training.train import lr_at

from conftest import REPO, teacher_with_guide
from test_screen import tiny_pack


def _dance(seed: int, frames: int = 240) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None] / L.MODEL_FPS
    poses = 0.4 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0, (1, 72)) * t + rng.uniform(0, 6, (1, 72)))
    poses[:, :3] = [0.0, 1.0, 0.0] * (t * 2.5)          # a pelvis turning past pi: the axis-angle wraps
    trans = np.concatenate([0.2 * np.sin(t), REST_PELVIS_HEIGHT + 0.02 * np.sin(4 * t), 0.1 * t], axis=1)
    return poses, trans


def _items(count: int = 6) -> list[CorpusItem]:
    items = []
    for i in range(count):
        poses, trans = _dance(i)
        motion = L.pack(torch.from_numpy(poses), torch.from_numpy(trans)).numpy().astype(np.float32)
        music = np.random.default_rng(100 + i).normal(scale=30.0, size=(len(motion), 35)).astype(np.float32)
        items.append(CorpusItem(f"SYNTH_{i}", ["chacha", "rumba", "tango", "waltz"][i % 4], motion,
                                music if i < count - 1 else None))      # the last one: motion only
    return items


def test_compact_packing_keeps_the_dances_and_is_a_third_the_size(tmp_path):
    items = _items()
    _save(tmp_path / "plain.npz", items, "tang2018", "packed")
    _save(tmp_path / "compact.npz", items, "tang2018", "packed", compact=True)
    again = _load(tmp_path / "compact.npz", "here")
    assert [(it.name, it.style, it.num_frames, it.music is None) for it in again] == \
        [(it.name, it.style, it.num_frames, it.music is None) for it in items]
    for a, b in zip(items, again):
        assert b.motion.dtype == np.float32 and np.array_equal(a.motion[:, :L.ROT6D.start], b.motion[:, :L.ROT6D.start])
        assert np.abs(a.motion[:, L.ROT6D] - b.motion[:, L.ROT6D]).max() < 2 * packed.ROTATION_STEP
        if a.music is not None:
            assert np.allclose(a.music, b.music, rtol=1e-3, atol=1e-3)
    # The rotations are stored as the grid's second differences, which wrap in int16 on jumps
    # (a pelvis past pi): undone exactly, so the grid's rounding is the only loss.
    grid = np.random.default_rng(0).integers(-32767, 32768, size=(50, 3)).astype(np.int16)
    assert np.array_equal(packed.undo_second_differences(packed.second_differences(grid)), grid)
    size = (tmp_path / "compact.npz").stat().st_size
    assert size < (tmp_path / "plain.npz").stat().st_size / 3, size
    # Another format version is not read as this one (the loader says so in one line).
    data = dict(np.load(tmp_path / "compact.npz"))
    np.savez(tmp_path / "future.npz", **{**data, "format": np.array("compact-9")})
    assert _load(tmp_path / "future.npz", "here") is None


def test_the_learning_rate_can_decay_over_a_fixed_time():
    args = SimpleNamespace(lr=1.0, warmup=10, steps=10**7, schedule_minutes=2.0)
    assert lr_at(4, args, 30.0) == pytest.approx(0.5)                  # warm-up by steps, as before
    assert lr_at(500, args, 0.0) == pytest.approx(1.0)
    assert lr_at(500, args, 60.0) == pytest.approx(0.55)               # half the time: half-way down the cosine
    assert lr_at(500, args, 120.0) == pytest.approx(0.1) == lr_at(9999, args, 500.0)
    by_steps = SimpleNamespace(lr=1.0, warmup=10, steps=110, schedule_minutes=None)
    assert lr_at(60, by_steps, 999.0) == pytest.approx(0.55)


@pytest.fixture(scope="module")
def shipped(tiny_weights, tmp_path_factory):
    """A folder like weights/: a tiny teacher (with a guide) and a tiny student distilled from it."""
    folder = tmp_path_factory.mktemp("shipped")
    teacher_with_guide(tiny_weights, folder, "dance.safetensors")
    data = folder / "synthetic.npz"
    _save(data, _items(), "tang2018", "packed", compact=True)
    assert distill_main(["--teacher", str(folder / "dance.safetensors"), "--out", str(folder / "student_run"),
                         "--data", str(data), "--batch", "4", "--iterations", "2", "--probe-windows", "2",
                         "--threads", "1"]) == 0
    shutil.copyfile(folder / "student_run" / "student.safetensors", folder / STUDENT_NAME)
    return folder


def test_a_gpu_session_returns_a_network_and_its_student_within_the_device_limits(shipped, tmp_path, capsys,
                                                                                  monkeypatch):
    out = tmp_path / "OUT"
    temporary = tmp_path / "tmp"           # where its run folders go without --work
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    code = session_main(["--data", str(shipped / "synthetic.npz"), "--out", str(out),
                         "--teacher", str(shipped / "dance.safetensors"), "--device", "cpu", "--minutes", "0.5",
                         "--recipes", "phase_keys", "--batch", "4", "--distill-batch", "4", "--workers", "0",
                         "--screen", str(tiny_pack(tmp_path))])
    assert code == 0, capsys.readouterr().err
    files = sorted(p.name for p in out.iterdir())
    assert files == ["phase_keys-log.txt", "phase_keys-main.safetensors", "phase_keys-student.safetensors",
                     "screen-log.txt", "screen.json", "session.json"]
    # The new teacher and the shipped one, scored by their finished dances on the packed clip.
    screened = json.loads((out / "screen.json").read_text())["weights"]
    assert len(screened) == 2 and all(np.isfinite(r["validation"]["fid_k"]) for r in screened.values())
    assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())      # the device's limit per file
    summary = json.loads((out / "session.json").read_text())
    record = summary["recipes"]["phase_keys"]
    assert record["train_exit"] == 0 and record["distill_exit"] == 0 and record["train_log"]["step"] >= 1
    assert summary["screen_exit"] == 0
    # The fine-tune took the beat phase and the keys; it is rebuilt at home as a teacher with the
    # shipped guide, and the student counts as distilled from exactly that file.
    main = checkpoint.load(out / "phase_keys-main.safetensors")
    assert main.guide is None and main.model.cfg.beat_phase and main.model.cfg.key_input
    home = tmp_path / "home"
    home.mkdir()
    attach_guide(out / "phase_keys-main.safetensors", shipped / "dance.safetensors", home / "dance.safetensors",
                 its_guide=True)
    assert file_digest(home / "dance.safetensors") == record["teacher_sha256"]
    student = checkpoint.load(out / "phase_keys-student.safetensors").student
    assert student["teacher"] == "dance.safetensors" and distilled_from_this(student, home / "dance.safetensors")
    assert "iteration" in (out / "phase_keys-log.txt").read_text()
    assert not list(temporary.iterdir())    # its temporary run folders are gone (they stayed: QA)


@pytest.mark.parametrize("extra, message", [
    (["--device", "cuda"], "no CUDA GPU here"),
    (["--device", "cpu", "--recipes", "phase_keys", "second", "third"], "at most 2 recipes"),
    (["--device", "cpu", "--minutes", "0"], "--minutes must be a positive number"),
    (["--device", "cpu", "--recipes", "phase_keys", "phase_keys"], "--recipes names one twice"),
    (["--device", "cpu", "--screen-seeds", "-1"], "--screen-seeds must be 0 or more"),
])
def test_a_session_that_cannot_run_says_so_in_one_line(shipped, tmp_path, capsys, monkeypatch, extra, message):
    for name in ("second", "third"):          # recipes beside the shipped one, for the limit on how many
        if name in extra:
            monkeypatch.setitem(RECIPES, name, RECIPES["phase_keys"])
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert session_main(["--data", str(shipped / "synthetic.npz"), "--out", str(tmp_path / "OUT"),
                         "--teacher", str(shipped / "dance.safetensors"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "OUT").exists()


def test_the_screen_scores_a_student_by_its_own_dances(shipped, tmp_path):
    # QA: given the student, the screen danced the teacher beside it (the API's default quality)
    # and reported the teacher's figures under the student's name.
    from engine.evaluation import screen as S
    pack = tiny_pack(tmp_path)
    arrays = S.read_pack(pack)
    teacher = S.score(arrays, pack.parent, shipped / "dance.safetensors", [0], device="cpu")
    student = S.score(arrays, pack.parent, shipped / STUDENT_NAME, [0], device="cpu")
    assert teacher["validation"]["fid_k"] != student["validation"]["fid_k"]
    asked = S.score(arrays, pack.parent, shipped / STUDENT_NAME, [0], device="cpu", steps=20)   # the teacher's steps
    assert asked["validation"]["fid_k"] == pytest.approx(teacher["validation"]["fid_k"])


def test_paths_are_read_from_where_the_session_is_started(shipped, tmp_path, monkeypatch):
    # QA: the children run from the repository's root, so a relative --student named another
    # file there and failed once the fine-tune was done.
    from engine.training.gpu_session import parse_args
    monkeypatch.chdir(shipped)
    args = parse_args(["--data", "synthetic.npz", "--out", "OUT", "--teacher", "dance.safetensors",
                       "--student", "dance_fast.safetensors"])
    assert args.teacher == shipped / "dance.safetensors" and args.student == shipped / "dance_fast.safetensors"
    assert args.data == [shipped / "synthetic.npz"] and args.out == shipped / "OUT"


def test_the_repository_leaves_room_for_the_packed_data_on_a_lent_gpu():
    """A lent GPU takes the repository's files, the packed data and the screen's pack in one upload
    of 64 MiB: a repository that grew past what is left could no longer be retrained there."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    files = [REPO / name.decode() for name in listed.stdout.split(b"\0") if name]
    size = sum(f.stat().st_size for f in files if f.is_file())
    assert size + PACKED_DATA_BYTES + SCREEN_PACK_BYTES < UPLOAD_LIMIT_BYTES, f"repository {size / 1e6:.1f} MB"
