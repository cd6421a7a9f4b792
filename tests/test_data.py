"""Training-data package: loaders on small synthetic files in each format, the cache, the
window sampler and its augmentations; plus checks on the real shared data when it is present."""
from __future__ import annotations

import json
import math
import pickle
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.body import layout as L
from engine.body import rotations as R
from engine.music.audio import FEATURE_CHANNELS, NUM_MUSIC_FEATURES
from engine.training.data import (CorpusItem, WindowDataset, default_validation_names, load_aistpp, load_corpus,
                         load_justlmd, load_tang2018)
from engine.training.data.cache import Corpus
from engine.training.data.justlmd import CAMERA_TO_WORLD, SMPL_PELVIS
from engine.training.data.sequence import lowest_foot, smooth
from engine.training.data.windows import (mirror_packed, mirror_poses, rotate_packed, rotate_poses, stretch_music,
                                 stretch_packed)
from engine.body.skeleton import (FOOT_INDICES, JOINT_INDEX, MIRROR_INDICES, REST_OFFSETS, forward_kinematics,
                             joint_positions)

from conftest import SHARED_DATA as SHARED
from rotation_checks import rotation_error
FPS = L.MODEL_FPS


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small tensors: one thread is faster than two fighting over a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- synthetic data

def synth_motion(n: int, fps: float, seed: int = 0, drift: float = 0.0):
    """A smooth, upright dance-like motion: (n,72) axis-angle, (n,3) root with optional y drift."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None, None] / fps
    amp = rng.uniform(0.05, 0.4, (1, 24, 3))
    freq = rng.uniform(0.3, 1.5, (1, 24, 3))
    phase = rng.uniform(0, 2 * np.pi, (1, 24, 3))
    poses = amp * np.sin(2 * np.pi * freq * t + phase)
    poses[:, 0] = 0.05 * poses[:, 0]
    poses[:, 0, 1] = 0.7 * t[:, 0, 0]                       # slow turn about Y
    tt = t[:, 0, 0]
    trans = np.stack([0.5 * np.sin(0.5 * tt), 0.95 + drift * tt / max(tt[-1], 1e-9) + 0.02 * np.sin(3 * tt),
                      0.5 * np.cos(0.4 * tt)], axis=-1)
    return poses.reshape(n, 72), trans


def write_wav(path: Path, seconds: float, sr: int = 22050, bpm: float = 120.0):
    """Clicks on a beat over a quiet chord: something for the beat tracker to find."""
    t = np.arange(int(round(seconds * sr))) / sr
    y = 0.05 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277 * t))
    for b in np.arange(0, seconds, 60.0 / bpm):
        i = int(b * sr)
        y[i:i + 400] += 0.8 * np.exp(-np.arange(len(y[i:i + 400])) / 80.0)
    sf.write(str(path), y.astype(np.float32), sr)


TANG = {  # name: (style, frames at 25 fps, audio seconds, seg_over_N)
    "DANCE_C_1": ("chacha", 100, 4.0, 1.0),
    "DANCE_R_1": ("rumba", 150, 6.0, 1.5),     # NaN frames: 10-12 and the last 50
    "DANCE_R_2": ("rumba", 300, 12.0, 2.0),    # stretched to 24 s for 12 s of audio: music-less tail
    "DANCE_T_1": ("tango", 125, 4.0, 1.0),     # motion 5 s, audio 4 s: trimmed
    "DANCE_T_5": ("tango", 100, 2.0, 1.0),     # the known bad pair: dropped
    "DANCE_W_1": ("waltz", 101, 4.0, 1.0),     # 4x linear upsampling of 6.25 fps keys
}


@pytest.fixture(scope="module")
def tang_dir(tmp_path_factory) -> Path:
    import joblib
    root = tmp_path_factory.mktemp("tang2018")
    manifest = []
    for k, (name, (style, n, audio_s, seg)) in enumerate(TANG.items()):
        poses, trans = synth_motion(n, 25.0, seed=k, drift=0.4)
        if name == "DANCE_R_1":
            poses[10:13] = np.nan
            poses[100:] = np.nan
        if style == "waltz":   # keyframes every 4th frame, linear in between
            keys = np.arange(0, n, 4)
            poses = np.stack([np.interp(np.arange(n), keys, poses[keys, c]) for c in range(72)], -1)
            trans = np.stack([np.interp(np.arange(n), keys, trans[keys, c]) for c in range(3)], -1)
        joblib.dump({"pose": poses, "cam": trans, "beta": np.zeros(10, np.float32)}, root / f"{name}.pkl")
        write_wav(root / f"{name}.wav", audio_s)
        manifest.append({"name": name, "style": style, "frames_25fps": n, "motion_s": n / 25,
                         "audio_s": audio_s, "seg_over_N": seg, "defects": []})
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def aist_dirs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("aist")
    motions, music = root / "motions", root / "music"
    motions.mkdir()
    music.mkdir()
    for k, name in enumerate(["gPO_sBM_cAll_d01_mPO1_ch01", "gBR_sFM_cAll_d04_mBR9_ch02"]):
        poses, trans = synth_motion(240, 60.0, seed=10 + k)
        scaling = 90.0
        with open(motions / f"{name}.pkl", "wb") as f:
            pickle.dump({"smpl_poses": poses.astype(np.float32), "smpl_trans": (trans * scaling).astype(np.float32),
                         "smpl_scaling": np.array([scaling], np.float32), "smpl_loss": 1.0}, f)
    write_wav(music / "mPO1.wav", 5.0)   # mBR9 is missing on purpose
    return motions, music


def world_to_easymocap(poses: np.ndarray, trans: np.ndarray):
    """Inverse of the JustLMD conversion: world Y-up motion -> camera-frame poses/Rh/Th."""
    rot_w = R.axis_angle_to_matrix(torch.as_tensor(poses[:, :3])).numpy()
    rot_c = CAMERA_TO_WORLD.T @ rot_w
    Rh = R.matrix_to_axis_angle(torch.as_tensor(rot_c)).numpy()
    Th = trans @ CAMERA_TO_WORLD - rot_c @ SMPL_PELVIS       # pelvis_cam = R J0 + Th
    body = poses.copy()
    body[:, :3] = 0.0
    return body, Rh, Th


@pytest.fixture(scope="module")
def justlmd_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("justlmd")
    poses, trans = synth_motion(150, 30.0, seed=20)
    body, Rh, Th = world_to_easymocap(poses, trans)
    frames = {}
    for i in range(len(poses)):
        frames[f"{i:06d}"] = {"K": [[864.0, 0, 640], [0, 864.0, 360], [0, 0, 1]], "R": np.eye(3).tolist(),
                              "T": [[0.0], [0.0], [0.0]],
                              "annots": [{"id": 0, "shapes": [[0.0] * 10], "poses": [body[i].tolist()],
                                          "Rh": [Rh[i].tolist()], "Th": [Th[i].tolist()]}]}
    (root / "SomeSong").mkdir()
    (root / "SomeSong" / "smplfull.json").write_text(json.dumps(frames))
    return root, poses, trans


# ----------------------------------------------------------------------------- tang2018

def test_tang2018_cleaning(tang_dir):
    # A dance outlasting its song by over 10 s is said, once for the set (QA: a 14 s song for a
    # 176 s dance trained its rest without music, without a word).
    with pytest.warns(UserWarning, match=r"1 dance outlasts its song .*DANCE_R_2 12 of 24 s"):
        seqs = {s.name: s for s in load_tang2018(tang_dir)}
    assert "DANCE_T_5" not in seqs
    assert set(seqs) == {"DANCE_C_1", "DANCE_R_1", "DANCE_R_2", "DANCE_R_2_tail", "DANCE_T_1", "DANCE_W_1"}
    for s in seqs.values():
        assert s.fps == FPS and s.poses.dtype == np.float32 and s.poses.shape == (s.num_frames, 72)
        assert np.isfinite(s.poses).all() and np.isfinite(s.trans).all()
        assert np.linalg.norm(s.poses.reshape(-1, 24, 3), axis=-1).max() <= math.pi + 1e-5
    # 25 -> 30 fps: 100 frames span 3.96 s -> 119 frames.
    assert seqs["DANCE_C_1"].num_frames == 119 and seqs["DANCE_C_1"].audio_offset == 0.0
    # Tango trimmed to its 4 s of audio.
    assert seqs["DANCE_T_1"].num_frames == 120
    # NaN: the longest clean run (frames 13-99) is kept and keeps its place in the song.
    r1 = seqs["DANCE_R_1"]
    assert r1.audio_offset == pytest.approx(13 / 25 * 1.5)
    assert r1.num_frames == int(86 / 25 * 1.5 * FPS) + 1
    # Stretched by seg_over_N = 2: paired part = the 12 s of audio, the rest is a music-less tail.
    r2, tail = seqs["DANCE_R_2"], seqs["DANCE_R_2_tail"]
    assert r2.num_frames == 360 and r2.audio_rate == 2.0 and r2.audio_path.endswith("DANCE_R_2.wav")
    assert tail.audio_path is None and r2.num_frames + tail.num_frames == int(299 / 25 * 2 * FPS) + 1


def test_tang2018_stretch_maps_time(tang_dir):
    import joblib
    raw = joblib.load(tang_dir / "DANCE_R_2.pkl")["pose"]
    r2 = next(s for s in load_tang2018(tang_dir) if s.name == "DANCE_R_2")
    # Output frame k is at k/30 s = source time k/30/2 s = source frame k*25/60: k=12 -> frame 5.
    for k, src in [(12, 5), (60, 25), (300, 125)]:
        assert rotation_error(r2.poses[k], raw[src]) < 1e-4


def test_tang2018_floor_and_drift(tang_dir):
    import joblib
    c1 = next(s for s in load_tang2018(tang_dir) if s.name == "DANCE_C_1")
    raw = joblib.load(tang_dir / "DANCE_C_1.pkl")
    low_raw = lowest_foot(raw["pose"], raw["cam"])
    low = lowest_foot(c1.poses, c1.trans)
    assert low.min() == pytest.approx(0.0, abs=1e-5)
    slope_raw = np.polyfit(np.arange(len(low_raw)) / 25, low_raw, 1)[0]
    slope = np.polyfit(np.arange(len(low)) / FPS, low, 1)[0]
    assert slope_raw > 0.08 and abs(slope) < 0.3 * slope_raw     # the 0.4 m drift is gone
    assert np.ptp(low) < np.ptp(low_raw) - 0.2


def test_waltz_smoothing(tang_dir):
    import joblib
    raw = joblib.load(tang_dir / "DANCE_W_1.pkl")
    acc_raw = np.linalg.norm(np.diff(raw["cam"], 2, axis=0), axis=1)
    assert (acc_raw < 1e-12).mean() > 0.6                          # piecewise-constant velocity
    _, trans = smooth(raw["pose"], raw["cam"], 2.0)
    acc = np.linalg.norm(np.diff(trans, 2, axis=0), axis=1)[8:-8]
    by_phase = [acc[p::4].mean() for p in range(4)]
    assert max(by_phase) < 1.3 * min(by_phase)                    # no spikes at the keyframes
    w1 = next(s for s in load_tang2018(tang_dir) if s.name == "DANCE_W_1")
    assert (np.linalg.norm(np.diff(w1.trans, 2, axis=0), axis=1) < 1e-9).mean() < 0.1


# ----------------------------------------------------------------------------- AIST++, JustLMD

def test_aistpp(aist_dirs):
    motions, music = aist_dirs
    with pytest.warns(UserWarning, match="mBR9"):
        seqs = {s.name: s for s in load_aistpp(motions, music)}
    po, br = seqs["gPO_sBM_cAll_d01_mPO1_ch01"], seqs["gBR_sFM_cAll_d04_mBR9_ch02"]
    assert po.style == "pop" and br.style == "break"
    assert po.audio_path.endswith("mPO1.wav") and br.audio_path is None
    src_poses, src_trans = synth_motion(240, 60.0, seed=10)
    assert po.num_frames == 120                                   # 60 -> 30 fps
    assert rotation_error(po.poses[7], src_poses[14]) < 1e-5
    # Scaled back to metres; only a constant vertical shift puts the feet on the floor.
    assert np.allclose(po.trans[:, [0, 2]], src_trans[::2, [0, 2]], atol=1e-5)
    assert np.ptp(po.trans[:, 1] - src_trans[::2, 1]) < 1e-5
    assert lowest_foot(po.poses, po.trans).min() == pytest.approx(0.0, abs=1e-5)


def test_justlmd_conversion(justlmd_dir):
    root, poses, trans = justlmd_dir
    (seq,) = load_justlmd(root)
    assert seq.style == "pop" and seq.audio_path is None and seq.num_frames == len(poses)
    assert rotation_error(seq.poses, poses) < 1e-4           # camera frame undone exactly
    assert np.allclose(seq.trans[:, [0, 2]], trans[:, [0, 2]], atol=1e-5)
    pos = joint_positions(seq.poses, seq.trans)
    head, pelvis = pos[:, JOINT_INDEX["head"], 1], pos[:, 0, 1]
    feet = pos[:, list(FOOT_INDICES), 1].max(axis=1)
    assert (head > pelvis).all() and (pelvis > feet).all()
    assert lowest_foot(seq.poses, seq.trans).min() == pytest.approx(0.0, abs=1e-5)


# ----------------------------------------------------------------------------- cache

def test_corpus_cache(tang_dir, aist_dirs, justlmd_dir, tmp_path, monkeypatch):
    import engine.training.data.cache as C
    motions, music = aist_dirs
    sources = [tang_dir, motions, justlmd_dir[0]]
    with pytest.warns(UserWarning):
        first = load_corpus(sources, tmp_path / "cache", aist_music=music, workers=1, log=None)

    def rebuilt(*args, **kwargs):
        raise AssertionError("a cached source was read from its raw files again")
    with monkeypatch.context() as m:
        m.setattr(C, "load_sequences", rebuilt)
        second = load_corpus(sources, tmp_path / "cache", aist_music=music, workers=1, log=None)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3
    assert [it.name for it in first.items] == [it.name for it in second.items]
    for a, b in zip(first.items, second.items):
        assert a.style == b.style and np.array_equal(a.motion, b.motion)
        assert (a.music is None) == (b.music is None)
        if a.music is not None:
            assert np.array_equal(a.music, b.music)
    by_name = {it.name: it for it in second.items}
    r2 = by_name["DANCE_R_2"]
    assert r2.motion.shape == (360, L.NUM_CHANNELS) and r2.motion.dtype == np.float32
    assert r2.music.shape == (360, NUM_MUSIC_FEATURES) and r2.music[:, FEATURE_CHANNELS["beat"]].sum() > 5
    assert by_name["DANCE_R_2_tail"].music is None and by_name["SomeSong"].music is None
    assert by_name["gBR_sFM_cAll_d04_mBR9_ch02"].music is None
    assert by_name["gPO_sBM_cAll_d01_mPO1_ch01"].music.shape == (120, NUM_MUSIC_FEATURES)
    # A changed source file invalidates its own cache file (rebuilt under a new key), no other.
    before = {p.name for p in (tmp_path / "cache").glob("*.npz")}
    manifest = tang_dir / "manifest.json"
    st = manifest.stat()
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    load_corpus([tang_dir], tmp_path / "cache", workers=1, log=None)
    after = {p.name for p in (tmp_path / "cache").glob("*.npz")}
    assert len(after) == 3 and len(after - before) == 1 and next(iter(after - before)).startswith("tang2018-")


def test_two_builds_of_one_cache_at_once_both_succeed(justlmd_dir, tmp_path, monkeypatch):
    # torchrun's ranks, or two runs, may build the same cache file together: the second build
    # here runs whole while the first is between writing its file and moving it into place.
    import engine.training.data.cache as C
    source = justlmd_dir[0]
    real_replace, nested = os.replace, []

    def replace_after_another_build(src, dst):
        if not nested:
            nested.append(None)
            nested[0] = load_corpus([source], tmp_path / "cache", workers=1, log=None)
        real_replace(src, dst)

    monkeypatch.setattr(C.os, "replace", replace_after_another_build)
    first = load_corpus([source], tmp_path / "cache", workers=1, log=None)
    assert nested and [it.name for it in first.items] == [it.name for it in nested[0].items]
    left = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(left) == 1 and left[0].startswith("justlmd-") and left[0].endswith(".npz")   # no temporary file left
    monkeypatch.undo()
    again = load_corpus([source], tmp_path / "cache", workers=1, log=None)
    assert all(np.array_equal(a.motion, b.motion) for a, b in zip(first.items, again.items))


def test_split_keeps_recordings_together():
    def item(name, style="tango"):
        return CorpusItem(name, style, np.zeros((10, L.NUM_CHANNELS), np.float32), None)
    corpus = Corpus([item("DANCE_T_1"), item("DANCE_T_9"), item("DANCE_T_2"), item("DANCE_R_3", "rumba"),
                     item("DANCE_R_3_tail", "rumba"), item("DANCE_R_4", "rumba")])
    train, val = corpus.split(["DANCE_T_9", "DANCE_R_3"])
    assert {it.name for it in val} == {"DANCE_T_1", "DANCE_T_9", "DANCE_R_3", "DANCE_R_3_tail"}
    assert {it.name for it in train} == {"DANCE_T_2", "DANCE_R_4"}
    names = default_validation_names()
    assert len(names) == 4 and len({n.split("_")[1] for n in names}) == 4
    assert not {"DANCE_T_1", "DANCE_T_9"} & set(names)


# ----------------------------------------------------------------------------- augmentations

def _symmetric_offsets() -> torch.Tensor:
    flip = np.array([-1.0, 1.0, 1.0])
    sym = 0.5 * (REST_OFFSETS + REST_OFFSETS[list(MIRROR_INDICES)] * flip)
    return torch.as_tensor(sym)


def _fk(poses, trans, offsets=None):
    rot = R.axis_angle_to_matrix(torch.as_tensor(poses, dtype=torch.float64).reshape(-1, 24, 3))
    return forward_kinematics(rot, torch.as_tensor(trans, dtype=torch.float64), offsets).numpy()


def test_mirror():
    poses, trans = synth_motion(60, FPS, seed=3)
    mp, mt = mirror_poses(poses, trans)
    back_p, back_t = mirror_poses(mp, mt)
    assert np.allclose(back_p, poses) and np.allclose(back_t, trans)
    # On a left/right-symmetric skeleton the mirrored motion is exactly the reflected one.
    sym = _symmetric_offsets()
    expected = _fk(poses, trans, sym)[:, list(MIRROR_INDICES)] * np.array([-1.0, 1.0, 1.0])
    assert np.allclose(_fk(mp, mt, sym), expected, atol=1e-9)
    # Packed version: the same rotations and root, contacts swapped; an involution.
    x = L.pack(torch.as_tensor(poses), torch.as_tensor(trans)).numpy()
    xm = mirror_packed(x)
    ref = L.pack(torch.as_tensor(mp), torch.as_tensor(mt)).numpy()
    assert np.allclose(xm[:, 4:], ref[:, 4:], atol=1e-9)
    assert np.array_equal(xm[:, L.CONTACTS], x[:, L.CONTACTS][:, [1, 0, 3, 2]])
    assert np.array_equal(mirror_packed(xm), x)


def test_yaw_rotation():
    poses, trans = synth_motion(60, FPS, seed=4)
    angle = 0.9
    rp, rt = rotate_poses(poses, trans, angle)
    c, s = math.cos(angle), math.sin(angle)
    yaw = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    assert np.allclose(_fk(rp, rt), _fk(poses, trans) @ yaw.T, atol=1e-9)     # FK is yaw-equivariant
    x = L.pack(torch.as_tensor(poses), torch.as_tensor(trans)).numpy()
    assert np.allclose(rotate_packed(x, angle), L.pack(torch.as_tensor(rp), torch.as_tensor(rt)).numpy(), atol=1e-9)
    assert np.allclose(rotate_packed(rotate_packed(x, angle), -angle), x, atol=1e-9)


def test_tempo_stretch():
    poses, trans = synth_motion(200, FPS, seed=5)
    x = L.pack(torch.as_tensor(poses), torch.as_tensor(trans)).numpy()
    out = stretch_packed(x, 1.1, 150)
    p_out, _, _ = L.unpack(torch.as_tensor(out, dtype=torch.float64))
    p_src, _, _ = L.unpack(torch.as_tensor(x, dtype=torch.float64))
    assert out.shape == (150, L.NUM_CHANNELS)
    assert rotation_error(p_out[10].numpy(), p_src[11].numpy()) < 1e-4   # frame 10 = source 11
    music = np.random.default_rng(0).normal(size=(200, NUM_MUSIC_FEATURES)).astype(np.float32)
    beat = FEATURE_CHANNELS["beat"].start
    music[:, beat] = 0.0
    music[::7, beat] = 1.0
    for factor in (0.9, 1.1):
        span = int((150 - 1) * factor) + 1
        m = stretch_music(music[:span], factor, 150)
        assert m.shape == (150, NUM_MUSIC_FEATURES)
        assert m[:, beat].sum() == music[:span, beat].sum()          # every beat kept, none doubled
        assert np.allclose(m[20, 1:21], music[round(20 * factor), 1:21])


def _items():
    def item(name, style, n, seed, with_music=True):
        poses, trans = synth_motion(n, FPS, seed=seed)
        x = L.pack(torch.as_tensor(poses), torch.as_tensor(trans)).float().numpy()
        music = np.random.default_rng(seed).random((n, NUM_MUSIC_FEATURES)).astype(np.float32) if with_music else None
        return CorpusItem(name, style, x, music)
    return [item("a", "tango", 600, 1), item("b", "waltz", 200, 2), item("c", "pop", 300, 3),
            item("d", "pop", 300, 4, with_music=False)]


def test_window_dataset():
    items = _items()
    styles = ["any", "tango", "waltz", "pop"]
    norm = L.Normalizer.fit(torch.from_numpy(np.concatenate([it.motion for it in items])))
    ds = WindowDataset(items, norm, styles=styles, seed=7)
    sample = ds[3]
    assert sample["motion"].shape == (L.WINDOW_FRAMES, L.NUM_CHANNELS) and sample["motion"].dtype == torch.float32
    assert sample["music"].shape == (L.WINDOW_FRAMES, NUM_MUSIC_FEATURES)
    assert sample["style"].dtype == torch.long and sample["has_music"].dtype == torch.bool
    assert all(torch.equal(ds[3][k], sample[k]) for k in sample)         # deterministic
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["motion"], sample["motion"])
    for i in range(40):
        s, spec = ds[i], ds.window_spec(i)
        it = ds.items[spec["item"]]
        assert styles[int(s["style"])] == it.style
        assert bool(s["has_music"]) == (it.music is not None)   # AIST++'s pop has its music (QA: it was dropped)
        if not s["has_music"]:
            assert float(s["music"].abs().sum()) == 0.0
    # Items are drawn in proportion to their number of windows.
    counts = np.bincount([ds.window_spec(i)["item"] for i in range(3000)], minlength=4)
    weights = np.array([it.num_frames - L.WINDOW_FRAMES + 1 for it in ds.items], float)
    assert np.allclose(counts / counts.sum(), weights / weights.sum(), atol=0.03)


def test_window_without_augmentation_is_a_plain_slice():
    items = _items()
    ds = WindowDataset(items, None, styles=["tango", "waltz", "pop"], augment=False, seed=1)
    for i in range(5):
        spec = ds.window_spec(i)
        assert spec["factor"] == 1.0 and not spec["mirror"] and spec["yaw"] == 0.0
        it = ds.items[spec["item"]]
        assert np.array_equal(ds[i]["motion"].numpy(), it.motion[spec["start"]:spec["start"] + L.WINDOW_FRAMES])


def test_tempo_factors_a_hair_from_one_still_give_full_windows():
    # A factor within 1e-6 of 1 once gave a window a frame short, which broke batching at
    # step 4395 of a GPU run (the collate cannot stack unequal windows).
    items = _items()
    ds = WindowDataset(items, None, styles=["any", "tango", "waltz", "pop"], seed=3,
                       tempo_range=(1 - 2e-6, 1 + 2e-6), tempo_prob=1.0)
    factors = [ds.window_spec(i)["factor"] for i in range(200)]
    assert any(f == 1.0 for f in factors) and any(f != 1.0 for f in factors)
    for i in range(200):
        s = ds[i]
        assert s["motion"].shape == (L.WINDOW_FRAMES, L.NUM_CHANNELS)
        assert s["music"].shape == (L.WINDOW_FRAMES, NUM_MUSIC_FEATURES)


# ----------------------------------------------------------------------------- real data

@pytest.mark.skipif(not (SHARED / "tang2018" / "manifest.json").exists(), reason="shared tang2018 data absent")
def test_real_tang2018():
    seqs = load_tang2018(SHARED / "tang2018")
    paired = [s for s in seqs if s.audio_path]
    assert len(paired) == 54 and "DANCE_T_5" not in {s.name for s in seqs}
    for s in seqs:
        assert np.isfinite(s.poses).all() and np.isfinite(s.trans).all() and s.num_frames > FPS
    minutes = sum(s.num_frames for s in seqs) / FPS / 60
    by_style = {}
    for s in seqs:
        by_style[s.style] = by_style.get(s.style, 0.0) + s.num_frames / FPS / 60
    print(f"tang2018 cleaned: {minutes:.1f} min", {k: round(v, 1) for k, v in by_style.items()})
    assert 75 <= minutes <= 95
    names = {s.name for s in seqs}
    assert set(default_validation_names()) <= names


@pytest.mark.skipif(not (SHARED / "aistpp_sample").exists(), reason="shared AIST++ sample absent")
def test_real_aistpp_sample():
    with pytest.warns(UserWarning, match="mBR0"):
        (seq,) = load_aistpp(SHARED / "aistpp_sample")
    assert seq.num_frames == 360 and seq.style == "break"
    pos = joint_positions(seq.poses, seq.trans)
    assert 0.8 < np.median(pos[:, 0, 1]) < 1.1                      # metres: pelvis at hip height


@pytest.mark.skipif(not (SHARED / "justlmd").exists(), reason="shared JustLMD data absent")
def test_real_justlmd_upright():
    seqs = load_justlmd(SHARED / "justlmd")
    assert len(seqs) == 6
    for s in seqs:
        pos = joint_positions(s.poses, s.trans)
        head, pelvis = pos[:, JOINT_INDEX["head"], 1], pos[:, 0, 1]
        feet = pos[:, list(FOOT_INDICES), 1].max(axis=1)
        assert (head > pelvis).mean() > 0.99 and (pelvis > feet).mean() > 0.95
        assert 0.85 < np.median(pelvis) < 1.05


def test_aist_music_may_lie_anywhere(aist_dirs, tmp_path):
    # QA: a music folder that is not beside the motions folder crashed the cache's key
    # ("... is not in the subpath of ...") in `train` and `data`.
    import shutil
    motions, music = aist_dirs
    elsewhere = tmp_path / "downloads" / "aist_wav"
    shutil.copytree(music, elsewhere)
    with pytest.warns(UserWarning):              # mBR9's music is missing, as in aist_dirs
        corpus = load_corpus([motions], tmp_path / "cache", aist_music=elsewhere, workers=1, log=None)
    with_music = [it for it in corpus.items if it.music is not None]
    assert len(with_music) == 1 and "mPO1" in with_music[0].name


def test_the_aist_download_folder_says_which_folders_to_pass(aist_dirs):
    # QA: the AIST++ folder as it ships (motions/ and music inside) said only "cannot tell what
    # dataset", with no hint of --data .../motions and --aist-music.
    from engine.errors import EngineError
    from engine.training.data.cache import detect_kind
    motions, music = aist_dirs
    with pytest.raises(EngineError, match=r"pass its motions folder, --data .*motions --aist-music .*music"):
        detect_kind(motions.parent)


def test_two_folders_of_one_name_keep_their_own_caches(aist_dirs, tmp_path):
    # QA: the stale-cache sweep went by the folder's name, so two AIST++ `motions` folders evicted
    # each other's cache and rebuilt it on every run.
    import shutil
    motions, music = aist_dirs
    twin = tmp_path / "twin" / "motions"
    shutil.copytree(motions, twin)
    cache = tmp_path / "cache"
    for source in (motions, twin):
        with pytest.warns(UserWarning):
            load_corpus([source], cache, aist_music=music, workers=1, log=None)
    assert len(list(cache.glob("aistpp-motions-*.npz"))) == 2
