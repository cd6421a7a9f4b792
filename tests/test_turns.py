"""Pelvis snaps rebuilt as turns (engine.finishing.turns), on hand-made headings with known answers."""
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from engine.body import layout as L
from engine.body import rotations as R
from engine.finishing.turns import MAX_TURN_RATE, REBUILT_TURN_PACE, limit_pelvis_turns, limit_turn_rate

FPS = 30.0


def _pelvis(heading: np.ndarray, lean_deg: float = 10.0) -> Rotation:
    """Pelvis rotations: a heading about the vertical times a fixed forward lean."""
    lean = Rotation.from_euler("x", lean_deg, degrees=True)
    return Rotation.from_rotvec(np.outer(heading, [0.0, 1.0, 0.0])) * lean


def _rates(rot: Rotation) -> np.ndarray:
    return (rot[1:] * rot[:-1].inv()).magnitude() * FPS


def _heading(rot: Rotation) -> np.ndarray:
    forward = rot.apply([0.0, 0.0, 1.0])
    return np.unwrap(np.arctan2(forward[:, 0], forward[:, 2]))


def test_slow_turning_is_left_alone():
    rot = _pelvis(np.linspace(0.0, 6.0, 90))                       # 2 rad/s
    out, rebuilt = limit_turn_rate(rot, FPS)
    assert rebuilt == 0
    np.testing.assert_allclose(out.as_quat(), rot.as_quat())


def test_a_half_turn_snap_becomes_a_turn_at_a_dancers_pace():
    heading = np.linspace(0.0, 1.0, 120)
    heading[60:] += np.radians(170.0)                              # facing flips between two frames
    rot = _pelvis(heading)
    assert _rates(rot).max() > 80
    out, rebuilt = limit_turn_rate(rot, FPS)
    assert rebuilt == 1
    assert _rates(out).max() <= 1.5 * REBUILT_TURN_PACE * 1.05 < MAX_TURN_RATE
    changed = np.flatnonzero(np.abs(out.as_quat() - rot.as_quat()).max(axis=1) > 1e-9)
    # The rebuilt stretch is as short as the pace allows: 170 degrees (and the 1 rad/120 frames
    # drift) at REBUILT_TURN_PACE on average, eased, around the snap.
    need = np.radians(170.0) / REBUILT_TURN_PACE * FPS
    assert need <= changed.max() - changed.min() + 2 <= need + 3
    assert abs((changed.max() + changed.min()) / 2 - 60) <= 2
    np.testing.assert_allclose(out[:40].as_quat(), rot[:40].as_quat())
    np.testing.assert_allclose(out[80:].as_quat(), rot[80:].as_quat())
    # The lean is kept through the turn: only the heading was rebuilt.
    np.testing.assert_allclose(out.apply([0.0, 1.0, 0.0])[:, 1], np.cos(np.radians(10.0)), atol=1e-9)


def test_a_fast_full_spin_stays_a_spin_in_its_direction():
    heading = np.zeros(150)
    heading[70:76] = np.linspace(0.0, 2 * np.pi, 8)[1:-1]          # a whole turn in 7 frames, ~31 rad/s
    heading[76:] = 2 * np.pi
    rot = _pelvis(heading)
    out, rebuilt = limit_turn_rate(rot, FPS)
    assert rebuilt == 1
    assert _rates(out).max() <= MAX_TURN_RATE * 1.05
    h = _heading(out)
    # The shortest way back to the same heading would be no turn at all; the spin must remain.
    assert abs(h[-1] - h[0] - 2 * np.pi) < 1e-6
    assert np.all(np.diff(h) > -1e-9)                              # never turns back


def test_a_snap_cut_by_the_first_frame_takes_the_settled_facing():
    heading = np.zeros(60)
    heading[1:] = np.pi * 0.9
    rot = _pelvis(heading)
    out, rebuilt = limit_turn_rate(rot, FPS)
    assert rebuilt == 1
    np.testing.assert_allclose(out[0].as_quat(), rot[1].as_quat(), atol=1e-12)
    np.testing.assert_allclose(out[1:].as_quat(), rot[1:].as_quat())
    assert _rates(out).max() <= MAX_TURN_RATE * 1.05


def test_a_snap_cut_by_the_last_frame_holds_the_pelvis_from_where_it_starts_to_tip():
    # The dance ends mid-snap: the pelvis tips sideways faster and faster, then the last frame
    # has flipped half a turn. There is no far side to turn to; turning onto the tipped last frame
    # would end the dance in a fall. The pelvis holds the last frame that still turned slower than
    # a rebuilt turn's pace.
    T = 90
    heading = np.linspace(0.0, 1.0, T)
    heading[-1] += np.radians(150.0)
    rot = _pelvis(heading)
    tip = np.zeros(T)
    tip[-4:] = np.radians([4.0, 12.0, 30.0, 60.0])                 # 4, 8, 18, 30 degrees a frame
    rot = rot * Rotation.from_euler("z", tip[:, None])
    rates = _rates(rot)                                            # rates[i]: frame i to i + 1
    assert rates[-1] > MAX_TURN_RATE > rates[-2] > REBUILT_TURN_PACE > rates[-3]
    out, rebuilt = limit_turn_rate(rot, FPS)
    assert rebuilt == 1
    np.testing.assert_allclose(out[:-2].as_quat(), rot[:-2].as_quat())
    for frame in (-2, -1):                                         # held where the tip quickens
        assert (out[frame] * rot[-3].inv()).magnitude() < 1e-9
    assert _rates(out).max() < MAX_TURN_RATE


def test_only_the_pelvis_channels_change():
    T = 90
    heading = np.zeros(T)
    heading[45:] = np.pi * 0.95
    poses = torch.zeros(T, 24, 3, dtype=torch.float64)
    poses[:, 0] = torch.from_numpy(_pelvis(heading).as_rotvec())
    poses[:, 5] = torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)   # a bent knee
    channels = L.pack(poses.reshape(T, -1), torch.zeros(T, 3, dtype=torch.float64))
    out = limit_pelvis_turns(channels, FPS)
    root = L.joint_channels([0])
    others = [c for c in range(L.NUM_CHANNELS) if c not in set(root)]
    assert torch.equal(out[:, others], channels[:, others])
    pelvis = Rotation.from_matrix(R.sixd_to_matrix(out[:, root]).numpy())
    assert _rates(pelvis).max() <= MAX_TURN_RATE * 1.05
