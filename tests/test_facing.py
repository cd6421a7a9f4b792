"""The keyed facing while sampling (engine.sampler.facing): on hand-made motion with known answers,
and wired into a real draw."""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from engine.body import layout as L
from engine.body import rotations as R
from engine.body.motion import Constraints, Motion
from engine.defaults import FRONT_AGAIN_SECONDS
from engine.sampler.facing import facing_alignment, front_beyond_the_keys

FPS = 30.0


def _turning_motion(T):
    """Packed channels (engine.body.layout) of a dancer turning slowly (0.6 rad/s), tilted 0.3 rad
    forward, travelling forward at 1 m/s; the other channels random. With an identity normaliser."""
    t = np.arange(T) / FPS
    pelvis = [Rotation.from_euler("y", 0.6 * s) * Rotation.from_euler("x", 0.3) for s in t]
    x = torch.randn(T, L.NUM_CHANNELS, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[:, L.joint_channels([0])] = R.matrix_to_6d(torch.from_numpy(np.stack([p.as_matrix() for p in pelvis])))
    forward = np.stack([np.sin(0.6 * t), np.cos(0.6 * t)], 1) / FPS
    x[:, L.ROOT_VEL] = torch.from_numpy(forward)
    identity = L.Normalizer(torch.zeros(L.NUM_CHANNELS), torch.ones(L.NUM_CHANNELS))
    return x, identity


def _pelvis_keys(T, frames_and_headings):
    c = Constraints.empty(T, FPS)
    for f, h in frames_and_headings:
        c.set_pose(f, np.r_[[0.0, h, 0.0], np.zeros(69)], joints=["pelvis"])
    return c


def test_the_samplers_estimate_is_turned_to_face_the_keys():
    """facing_alignment turns the estimate about the vertical only: the keyed frames face as keyed,
    the tilt, the travel speed and every other channel are kept, and the turn between keys is
    gradual."""
    T = 120
    x, identity = _turning_motion(T)
    keys = [(10, 2.0), (60, -1.0), (100, 0.5)]
    out = facing_alignment(_pelvis_keys(T, keys), T, FPS, identity)(x, 0.0)
    assert torch.equal(facing_alignment(_pelvis_keys(T, keys), T, FPS, identity)(x, 0.9), x)   # late: as it is
    got = L.pelvis_heading(out)
    for f, h in keys:
        assert abs(np.angle(np.exp(1j * (float(got[f]) - h)))) < 1e-6
    turned = L.joint_channels([0]) + list(range(L.ROOT_VEL.start, L.ROOT_VEL.stop))
    others = [c for c in range(L.NUM_CHANNELS) if c not in turned]
    assert torch.equal(out[:, others], x[:, others])
    up = lambda m: R.sixd_to_matrix(m[:, L.joint_channels([0])])[:, 1, :]    # noqa: E731 (world Y of each axis)
    assert torch.allclose(up(out), up(x), atol=1e-9)                        # tilt kept
    assert torch.allclose(out[:, L.ROOT_VEL].norm(dim=1), x[:, L.ROOT_VEL].norm(dim=1), atol=1e-12)
    # The walk still heads where the body faces (both turned together).
    walk = torch.atan2(out[:, L.ROOT_VEL.start], out[:, L.ROOT_VEL.start + 1])      # (x, z) on the floor
    assert np.abs(np.angle(np.exp(1j * (walk - got).numpy()))).max() < 1e-6
    # Gradual: the extra turn between keys 10 and 60 (3 rad plus 30 frames of the dancer's own
    # 0.6 rad/s) is spread over the gap, its fastest frame no more than 1.5x its mean.
    extra = np.diff(np.unwrap(got.numpy()) - 0.6 * np.arange(T) / FPS)
    assert np.abs(extra[10:60]).max() <= 1.5 * (3.0 + 0.6 * 50 / FPS) / 50 + 1e-6
    assert np.abs(extra[100:]).max() < 1e-9 and np.abs(extra[:10]).max() < 1e-9   # held beyond


def test_the_facing_turn_goes_the_short_way_and_needs_a_pelvis_key():
    T = 90
    x, identity = _turning_motion(T)
    x[:, L.joint_channels([0])] = R.matrix_to_6d(torch.eye(3, dtype=torch.float64)).expand(T, 6)
    out = facing_alignment(_pelvis_keys(T, [(20, np.pi - 0.1), (70, -(np.pi - 0.1))]), T, FPS, identity)(x, 0.0)
    got = np.unwrap(L.pelvis_heading(out).numpy())
    assert abs(got[70] - got[20]) < 0.3                     # 0.2 rad the short way, not 6 the long way
    arms_only = Constraints.empty(T, FPS)
    arms_only.set_pose(20, np.zeros(72), joints=["left_shoulder"])
    assert facing_alignment(arms_only, T, FPS, identity) is None


def test_the_network_faces_the_keys_before_any_finishing(click_song, tiny_weights):
    """Wired into sampling: a one-step draw (its one step at signal level 0, the network's output
    with no finishing yet) faces as keyed."""
    from engine import api
    keys = [(15, 2.5), (45, -2.0), (75, 1.0)]
    d = api.draw(click_song, duration=3.0, fps=FPS, steps=1, weights=tiny_weights, device="cpu",
                 constraints=_pelvis_keys(90, keys))
    got = L.pelvis_heading(d.raw.double())
    for f, h in keys:
        assert abs(np.angle(np.exp(1j * (float(got[f]) - h)))) < 1e-4


def test_with_nothing_keyed_the_dance_faces_the_front_on_average():
    """facing_front turns the whole dance by one angle: its pelvis faces +Z on average, the tilt,
    the travel speed and every channel that is not the facing are kept."""
    from engine.sampler.facing import facing_front
    x, _ = _turning_motion(90)                                   # headings 0 to 1.8 rad
    turned = facing_front(L.turn_about_vertical(x, 2.5))
    heading = L.pelvis_heading(turned)
    assert abs(float(torch.atan2(torch.sin(heading).mean(), torch.cos(heading).mean()))) < 1e-9
    assert torch.allclose(torch.diff(heading), torch.diff(L.pelvis_heading(x)))      # the same turning
    assert torch.allclose(turned[:, L.ROOT_VEL].norm(dim=1), x[:, L.ROOT_VEL].norm(dim=1))
    others = [c for c in range(L.NUM_CHANNELS) if c not in L.joint_channels([0]) and c not in range(4, 6)]
    assert torch.equal(turned[:, others], x[:, others])


def test_the_shipped_dancer_faces_the_front_unless_keys_say_otherwise(click_song):
    """The network draws any heading (2 of 6 seeds danced with their backs turned): with nothing
    keyed, every seed's finished dance faces the front on average; a keyed pelvis still decides."""
    from engine.api import generate

    def mean_heading(motion):
        h = R.heading(R.axis_angle_to_matrix(torch.from_numpy(motion.poses[:, :3])))
        return float(torch.atan2(torch.sin(h).mean(), torch.cos(h).mean()))
    for seed in range(4):
        assert abs(mean_heading(generate(click_song, seed=seed, quality="fast"))) < 0.3, seed
    keys = Constraints.empty(180, FPS)
    keys.set_pose(0, np.r_[[0.0, 2.0, 0.0], np.zeros(69)], joints=["pelvis"])
    ramp = round(FRONT_AGAIN_SECONDS * FPS)
    for seed in range(4):
        keyed = generate(click_song, seed=seed, quality="fast", constraints=keys)
        assert abs(float(R.heading(R.axis_angle_to_matrix(torch.from_numpy(keyed.poses[:1, :3])))[0]) - 2.0) < 1e-4
        # A start pose decides the start: the rest faces the front again (QA: a start pose held
        # the facing the network drew from it, 20-45 degrees off the front on average).
        assert abs(mean_heading(Motion(poses=keyed.poses[ramp:], trans=keyed.trans[ramp:], fps=FPS))) < 0.3, seed


def test_after_the_last_keyed_facing_the_dance_turns_to_the_front_again():
    """front_beyond_the_keys: a keyed frame faces as keyed; beyond the keys, after
    FRONT_AGAIN_SECONDS, the dance faces the front on average, turned there gradually."""
    T = 300
    x, _ = _turning_motion(T)                                 # headings 0 to 6 rad: any way on average
    ramp = round(FRONT_AGAIN_SECONDS * FPS)
    keys = _pelvis_keys(T, [(150, -0.5)])
    drawn = L.turn_about_vertical(x, -0.5 - float(L.pelvis_heading(x)[150]))   # facing as keyed on frame 150
    got = L.pelvis_heading(front_beyond_the_keys(drawn, keys, FPS)).numpy()
    assert abs(np.angle(np.exp(1j * (got[150] + 0.5)))) < 1e-6
    for part in (slice(150 + ramp, None), slice(None, 150 - ramp + 1)):
        assert abs(np.angle(np.exp(1j * got[part]).mean())) < 1e-6
    extra = np.diff(np.unwrap(got) - 0.6 * np.arange(T) / FPS)
    assert np.abs(extra).max() < 0.1                          # gradual: no frame turned more than 6 degrees
