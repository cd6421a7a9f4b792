"""The shipped weights dance: on the beat, on the floor, smoothly into the animator's keys.

These run only when weights/dance.safetensors is present (it is committed; a checkout without it
skips them). Thresholds come from the real dances' own scores (weights/TRAINING.md)."""
import numpy as np
import pytest
import torch

from conftest import SHIPPED_WEIGHTS
from engine.evaluation import metrics as M
from engine.body import rotations as R
from engine.api import generate
from engine.example import synthesize_example
from engine.body.motion import Constraints
from engine.finishing.rootpath import FLOOR_RADIUS
from engine.body.skeleton import JOINT_INDEX, joint_positions

pytestmark = pytest.mark.skipif(not SHIPPED_WEIGHTS.is_file(), reason="no shipped weights")
SR = 22050
FOOT = [JOINT_INDEX[n] for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]


@pytest.fixture(scope="module")
def song():
    return synthesize_example(seconds=10.0, bpm=120.0, sr=SR).mean(axis=1)


@pytest.fixture(scope="module")
def dance(song):
    return generate(song, sample_rate=SR, seed=0)


def test_dances_on_the_beat(song, dance):
    # One 10-s draw scores anywhere from 0.14 to 0.35, so four draws are averaged.
    scores = []
    for d in [dance] + [generate(song, sample_rate=SR, seed=seed) for seed in (1, 2, 3)]:
        pos = joint_positions(d.poses, d.trans)
        scores.append(M.beat_alignment_scores(pos, d.fps, d.beat_times)["bas_bailando"])
    # This data's held-out dancers score 0.18 and a music-agnostic stretch of dance 0.16
    # (TRAINING.md); real AIST++ dancers about 0.24.
    assert np.mean(scores) > 0.2


def test_stands_on_the_floor_and_stays_nearby(dance):
    pos = joint_positions(dance.poses, dance.trans)
    lowest = pos[:, FOOT, 1].min(axis=1)
    assert lowest.min() > -0.02                       # never through the floor
    assert np.median(lowest) < 0.05                   # and not floating
    # The slow drift stays in the floor disc; quick steps on top of it add well under a metre.
    assert np.linalg.norm(dance.trans[:, [0, 2]] - dance.trans[0, [0, 2]], axis=1).max() < FLOOR_RADIUS + 1.0


def test_moves_like_a_dancer_not_a_statue_or_a_twitch(dance):
    pos = joint_positions(dance.poses, dance.trans)
    speed = np.linalg.norm(np.diff(pos, axis=0), axis=-1).mean() * dance.fps
    assert 0.2 < speed < 2.0                          # real dances: 0.5-1.0 m/s mean joint speed
    assert M.jerk(pos, dance.fps) < 4 * 150           # real dances: 12-150 m/s^3


def test_flows_into_and_out_of_a_keyframe(song, dance):
    # The step into and out of a keyed pose the dancer made elsewhere, against the fastest step in
    # the second around it: at most issue 13's 1.3x, on the default path over three seeds. (One
    # seed checked against 1.0x held only for the style the old CRC32 draw gave it: over 4 styles
    # x 2 seeds the ratio is 0.31-1.30, the network's own bursts near keys, issue 13's whip.)
    fps = dance.fps
    key = 150
    pose = dance.poses[60].copy()                      # a pose the dancer made elsewhere
    pose[3 * JOINT_INDEX["left_shoulder"] + 2] += 0.6
    c = Constraints.empty(key + 1, fps).set_pose(key, pose)
    for seed in (0, 1, 2):
        keyed = generate(song, sample_rate=SR, seed=seed, constraints=c)
        q = R.axis_angle_to_quat(torch.from_numpy(keyed.poses).reshape(len(keyed.poses), 24, 3))
        step = (2 * torch.acos((q[1:] * q[:-1]).sum(-1).abs().clamp(max=1))).amax(dim=1).numpy()  # max joint change
        second = step[key - int(fps) // 2:key + int(fps) // 2]
        at_key = max(step[key - 1], step[key])
        elsewhere = np.delete(second, [int(fps) // 2 - 1, int(fps) // 2])
        print(f"seed {seed}: the step at the key {at_key / elsewhere.max():.2f}x the fastest around it")
        assert at_key <= 1.3 * elsewhere.max()
        err = R.axis_angle_to_quat(torch.from_numpy(keyed.poses[key]).reshape(24, 3))
        want = R.axis_angle_to_quat(torch.from_numpy(pose).reshape(24, 3))
        assert (2 * torch.acos((err * want).sum(-1).abs().clamp(max=1))).max() < 1e-4


def test_the_shipped_fast_student_belongs_to_the_shipped_model(song, dance):
    """Quality "fast" finds the few-step student beside the shipped weights, distilled from exactly
    them (by checksum), at the default settings; "best" (the default) keeps the shipped model."""
    from engine.defaults import DEFAULT_AUTOGUIDANCE, DEFAULT_GUIDANCE
    from engine.sampler.fewstep import choose_weights, distilled_from_this, student_beside
    found = student_beside(SHIPPED_WEIGHTS)
    if found is None:
        pytest.skip("no few-step student is shipped beside the weights")
    student, record = found
    assert len(record["timesteps"]) <= 4                               # issue 16: at most 4 passes a window
    assert distilled_from_this(record, SHIPPED_WEIGHTS)                # not a student of an earlier version
    pick = lambda quality, steps=None: choose_weights(SHIPPED_WEIGHTS, None, quality, steps, DEFAULT_GUIDANCE,
                                                      DEFAULT_AUTOGUIDANCE)
    assert pick("fast") == student and pick("best") == SHIPPED_WEIGHTS
    with pytest.warns(UserWarning, match="these settings use the many-step model"):
        assert pick("fast", 7) == SHIPPED_WEIGHTS
    fast = generate(song, sample_rate=SR, seed=0, quality="fast")
    assert fast.poses.shape == dance.poses.shape and not np.allclose(fast.poses, dance.poses)
    pos = joint_positions(fast.poses, fast.trans)
    speed = np.linalg.norm(np.diff(pos, axis=0), axis=-1).mean() * fast.fps
    assert 0.2 < speed < 2.0 and M.jerk(pos, fast.fps) < 4 * 150
