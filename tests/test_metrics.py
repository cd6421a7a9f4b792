"""Metrics on hand-made motions whose scores are known in closed form."""
import math

import numpy as np
import pytest

from engine.evaluation import metrics as M
from engine.body.layout import MODEL_FPS
from engine.body.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, REST_PELVIS_HEIGHT, REST_POSITIONS

FPS = MODEL_FPS


def standing(T: int) -> np.ndarray:
    """(T,24,3) the rest pose with its lowest joint on the floor."""
    pose = REST_POSITIONS + np.array([0.0, REST_PELVIS_HEIGHT, 0.0])
    return np.repeat(pose[None], T, axis=0)


def shifted_x(T: int, x: np.ndarray) -> np.ndarray:
    """Standing pose translated along X by x (T,) metres (every joint moves together)."""
    p = standing(T)
    p[:, :, 0] += x[:, None]
    return p


# Pulsing body: speed minima every PERIOD frames at frames PHASE + n*PERIOD, maxima at the ends.
PERIOD, PHASE, N_PERIODS = 16, 8, 10


def pulsing() -> np.ndarray:
    k = np.arange(PERIOD * N_PERIODS + 1, dtype=np.float64)
    theta = 2 * np.pi * (k - PHASE) / PERIOD
    x = 0.02 * (k - PERIOD / (2 * np.pi) * np.sin(theta))    # speed ∝ 1 - cos(theta)
    return shifted_x(len(k), x)


def test_still_pose_scores_zero():
    p = standing(90)
    assert M.pfc(p, FPS) == 0.0
    assert M.jerk(p, FPS) == 0.0
    assert M.foot_skating_ratio(p, FPS) == 0.0
    assert M.mean_speed(p, FPS) == 0.0
    np.testing.assert_array_equal(M.kinetic_features(p, FPS), np.zeros(3 * NUM_JOINTS))
    # No motion beats: BAS is 0, not NaN.
    scores = M.beat_alignment_scores(p, FPS, [0.5, 1.0, 1.5])
    assert scores == {"bas_bailando": 0.0, "bas_fact": 0.0}


def test_constant_slide_on_floor():
    T, v = 90, 1.0                                              # 1 m/s = 3.3 cm per frame
    p = shifted_x(T, v * np.arange(T) / FPS)
    assert M.foot_skating_ratio(p, FPS) == pytest.approx(1.0)
    assert M.jerk(p, FPS) < 1e-6
    assert M.mean_speed(p, FPS) == pytest.approx(v)
    assert M.mean_speed(p[::2], FPS / 2) == pytest.approx(v)     # any frame rate
    assert M.pfc(p, FPS) == 0.0                                 # feet slide but nothing accelerates
    feats = M.kinetic_features(p, FPS).reshape(NUM_JOINTS, 3)
    np.testing.assert_allclose(feats[:, 0], v ** 2, rtol=1e-9)  # horizontal kinetic energy
    np.testing.assert_allclose(feats[:, 1:], 0.0, atol=1e-6)    # no vertical energy, no acceleration


def test_slow_drift_is_not_skating():
    T = 90
    p = shifted_x(T, 0.1 * np.arange(T) / FPS)                  # 0.33 cm per frame: below threshold
    assert M.foot_skating_ratio(p, FPS) == 0.0


def test_pfc_rewards_planted_feet():
    T = 120
    t = np.arange(T) / FPS
    bob = 0.05 * np.sin(2 * np.pi * t)
    planted = standing(T)                                       # pelvis bobs, feet stay put
    planted[:, [JOINT_INDEX[n] for n in ("pelvis", "spine1", "spine2", "spine3")], 0] += bob[:, None]
    assert M.pfc(planted, FPS) == pytest.approx(0.0, abs=1e-12)
    swaying = shifted_x(T, bob)                                 # the whole body, feet included
    # Feet move A*w*|cos| per second, the root accelerates ∝ |sin| (max 1 after normalising):
    # PFC = 1e4 * mean((A w dt cos)^2 * |sin|), up to the finite differences' half-frame offsets.
    w = 2 * np.pi
    expected = 1e4 * np.mean((0.05 * w / FPS * np.cos(w * t)) ** 2 * np.abs(np.sin(w * t)))
    assert M.pfc(swaying, FPS) == pytest.approx(expected, rel=0.05)


def test_jerk_of_cubic_is_six():
    for fps in (30.0, 60.0):                                    # 60 fps resamples onto the same times
        t = np.arange(int(2 * fps)) / fps
        assert M.jerk(shifted_x(len(t), t ** 3), fps) == pytest.approx(6.0, rel=1e-6)


def test_beats_on_the_beat_score_one():
    p = pulsing()
    beats = (PHASE + PERIOD * np.arange(N_PERIODS)) / FPS
    np.testing.assert_allclose(M.motion_beats(p, FPS), beats, atol=1e-9)
    scores = M.beat_alignment_scores(p, FPS, beats)
    assert scores["bas_bailando"] == pytest.approx(1.0)
    assert scores["bas_fact"] == pytest.approx(1.0)


def test_beats_half_a_period_off_score_low():
    p = pulsing()
    offbeats = PERIOD * np.arange(N_PERIODS + 1) / FPS          # midway between motion beats
    scores = M.beat_alignment_scores(p, FPS, offbeats)
    d_frames = PERIOD / 2                                        # sigma = 3 frames
    expected = math.exp(-d_frames ** 2 / (2 * 3 ** 2))
    assert scores["bas_bailando"] == pytest.approx(expected, rel=1e-6)
    assert scores["bas_fact"] == pytest.approx(expected, rel=1e-6)
    assert expected < 0.05


def test_beat_alignment_directions_differ():
    motion = [1.0]
    music = [1.0, 1.2]                                          # second beat 6 frames from the motion beat
    bailando, fact = M.beat_alignment(motion, music)
    assert bailando == pytest.approx((1 + math.exp(-6 ** 2 / (2 * 3 ** 2))) / 2)
    assert fact == pytest.approx(1.0)
    assert M.beat_alignment([], music) == (0.0, 0.0)


def test_fid_zero_for_same_set_and_grows_with_shift():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 72))                            # fewer samples than dimensions
    assert M.fid(real, real) == pytest.approx(0.0, abs=1e-6)
    std = real.std(axis=0)
    previous = 0.0
    for s in (0.1, 0.5, 1.0, 2.0):
        value = M.fid(real + s, real)
        assert value == pytest.approx(np.sum((s / std) ** 2), rel=1e-6)
        assert value > previous
        previous = value


def test_a_feature_the_reference_never_varies_is_only_centred():
    # QA: on a small pack 5 of the 32 geometric features were constant in the reference, and
    # divided by 1e-10 any deviation took FID_g to 4e17 and Div_g to 6e8.
    rng = np.random.default_rng(1)
    real = rng.normal(size=(40, 8))
    real[:, 3] = 1.0                                              # never varies in the reference
    generated = real + 0.5
    assert M.fid(generated, real) == pytest.approx(np.sum((0.5 / real.std(axis=0)[np.arange(8) != 3]) ** 2) + 0.25,
                                                   rel=1e-6)                 # that feature in its own units
    generated[:, 3] += rng.normal(0.0, 0.1, len(generated))
    assert M.fid(generated, real) < 100 and M.diversity(generated, real) < 100


def test_diversity():
    same = np.tile(np.arange(72.0), (5, 1))
    assert M.diversity(same) == 0.0
    a, b = np.zeros(72), np.full(72, 0.5)
    assert M.diversity(np.stack([a, b])) == pytest.approx(np.linalg.norm(a - b))
    line = np.zeros((3, 72))
    line[:, 0] = [0.0, 1.0, 3.0]
    assert M.diversity(line) == pytest.approx(2.0)               # mean of 1, 3, 2


def test_resampling_keeps_duration():
    p = standing(51)                                            # 2 s at 25 fps
    assert len(M.resample_positions(p, 25.0)) == 61             # 2 s at 30 fps


def test_summarize_keys_and_values():
    p = pulsing()
    beats = (PHASE + PERIOD * np.arange(N_PERIODS)) / FPS
    slide = shifted_x(len(p), np.arange(len(p)) / FPS)
    out = M.summarize([(p, FPS, beats), (slide, FPS, beats)])
    assert set(M.METRIC_KEYS) <= set(out)
    assert out["num_clips"] == 2
    assert math.isnan(out["fid_k"])
    real = np.stack([M.kinetic_features(p, FPS), M.kinetic_features(slide, FPS)])
    out = M.summarize([(p, FPS, beats), (slide, FPS, beats)], real_features=real)
    assert out["fid_k"] == pytest.approx(0.0, abs=1e-3)       # eps*I rounding on 72 dims
    assert out["div_k"] > 0


def test_foot_skimming_counts_a_toe_dragged_along_the_floor_not_a_lifted_swing():
    T = 61
    drag = shifted_x(T, np.linspace(0.0, 1.2, T))             # 2 cm per frame, toes on the floor
    assert M.foot_skimming(drag, FPS) == pytest.approx(1.0)
    swing = shifted_x(T, np.r_[np.zeros(30), np.linspace(0.0, 0.6, T - 30)])   # still, then travel ...
    swing[30:, :, 1] += 0.10                                   # ... lifted 10 cm above the floor it stood on
    assert M.foot_skimming(swing, FPS) == 0.0
    slow = shifted_x(T, np.linspace(0.0, 0.3, T))              # 0.5 cm per frame: not skimming
    assert M.foot_skimming(slow, FPS) == 0.0


def test_pulse_ratio_of_one_accent_per_beat_and_half_time():
    p = pulsing()                                               # speed minima every PERIOD frames
    beats = (PHASE + PERIOD * np.arange(N_PERIODS)) / FPS
    assert M.pulse_ratio(p, FPS, beats) == pytest.approx(1.0, abs=0.05)
    double_time_music = (PHASE + PERIOD / 2 * np.arange(2 * N_PERIODS)) / FPS
    assert M.pulse_ratio(p, FPS, double_time_music) == pytest.approx(2.0, abs=0.1)
    assert math.isnan(M.pulse_ratio(p, FPS, [0.5]))


def _turning(T: int, heading: np.ndarray) -> np.ndarray:
    """Standing pose turned about the vertical through the pelvis by heading (T,) radians."""
    p = standing(T)
    centre = p[:, :1]
    c, s = np.cos(heading)[:, None], np.sin(heading)[:, None]
    rel = p - centre
    x, z = rel[..., 0], rel[..., 2]
    out = p.copy()
    out[..., 0], out[..., 2] = centre[..., 0] + c * x + s * z, centre[..., 2] - s * x + c * z
    return out


def test_turn_snaps_count_only_turns_faster_than_the_dancers():
    T = 300                                             # 10 s
    slow = _turning(T, np.linspace(0, 4 * np.pi, T))   # two whole turns in 10 s: 1.3 rad/s
    assert M.turn_snaps(slow, FPS) == 0.0
    heading = np.zeros(T)
    heading[100:] += 2.0                                # a 2 rad snap between two frames ...
    heading[200:] -= np.pi * 0.9                        # ... and a near half turn the other way
    assert M.turn_snaps(_turning(T, heading), FPS) == pytest.approx(2.0)
    # Per 10 s of dance, at any frame rate: the same two snaps in 20 s at 60 fps count 1 per 10 s.
    heading60 = np.zeros(2 * 2 * T)
    heading60[400:] += 2.0
    heading60[800:] -= np.pi * 0.9
    assert M.turn_snaps(_turning(len(heading60), heading60), 2 * FPS) == pytest.approx(1.0)


def test_geometric_relations_of_the_rest_pose():
    still = M.geometric_relations(standing(30), FPS)
    assert len(still) == 32 and M.geometric_features(standing(30), FPS).shape == (32,)
    held = {name for name, frames in still.items() if frames.all()}
    assert held == {"right upper arm raised", "left upper arm raised", "hands far apart"}   # arms out, a T
    assert not any(frames.any() for name, frames in still.items() if name not in held)


def test_geometric_relations_follow_a_raised_hand_and_a_forward_step():
    p = standing(31)
    wrist, neck = JOINT_INDEX["right_wrist"], JOINT_INDEX["neck"]
    p[15:, wrist] = p[15:, neck] + [0.0, 0.3, 0.0]              # the right hand above the head from frame 15
    r = M.geometric_relations(p, FPS)
    assert r["right hand above the neck"].mean() == pytest.approx(16 / 30)
    assert not r["left hand above the neck"].any()
    assert r["right hand fast"].sum() == 1 and r["right hand moves up"].sum() == 1   # the one frame it jumped
    step = standing(2)
    step[:, JOINT_INDEX["left_ankle"], 2] += 0.4                 # the left foot 40 cm forward (+Z)
    assert M.geometric_relations(step, FPS)["left foot in front of the right leg"].all()
    step[:, JOINT_INDEX["left_ankle"], 2] -= 0.8                 # ... or 40 cm back
    assert not M.geometric_relations(step, FPS)["left foot in front of the right leg"].any()


def test_geometric_features_ignore_where_the_dancer_stands_and_faces():
    rng = np.random.default_rng(0)
    p = standing(60) + np.cumsum(rng.normal(0.0, 0.02, (60, NUM_JOINTS, 3)), axis=0)
    turn = np.array([[np.cos(1.0), 0.0, np.sin(1.0)], [0.0, 1.0, 0.0], [-np.sin(1.0), 0.0, np.cos(1.0)]])
    moved = p @ turn.T + [2.0, 0.0, -1.0]                       # turned about Y and walked elsewhere
    np.testing.assert_allclose(M.geometric_features(moved, FPS), M.geometric_features(p, FPS))
    swapped = lambda name: name.replace("left", "@").replace("right", "left").replace("@", "right")
    mirrored = (p * [-1.0, 1.0, 1.0])[:, [JOINT_INDEX[swapped(n)] for n in JOINT_NAMES]]   # left and right swap
    a, b = M.geometric_relations(p, FPS), M.geometric_relations(mirrored, FPS)
    assert sum(a[name].any() for name in a) >= 12                # the test moves enough to mean something
    for name in a:
        np.testing.assert_array_equal(a[name], b[swapped(name)], err_msg=name)
