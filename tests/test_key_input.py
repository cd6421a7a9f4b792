"""A key-aware network (issue 13, CondMDI-style): random keys drawn like an animator's, the key
input reaching the network, training that learns to use it, and the commands around it."""
import numpy as np
import torch

from engine.body import layout as L
from engine.body.motion import Constraints
from engine.sampler import checkpoint
from engine.sampler.diffusion import cosine_alpha_bar, q_sample
from engine.sampler.model import KEY_CHANNELS, Denoiser, ModelConfig, with_keys
from engine.training.random_keys import KEYLESS_SHARE, random_key_mask, with_random_keys
from engine.training.train import main as train_main
from test_train import aist_data, tiny_run_args  # noqa: F401  (aist_data: the fixture)

CONTACT = list(range(L.CONTACTS.start, L.CONTACTS.stop))


def test_random_keys_look_like_an_animators():
    mask = random_key_mask(2000, L.WINDOW_FRAMES, torch.Generator().manual_seed(0))
    keyed_rows = mask.any(dim=2)                                   # (B, T) frames with any key
    keyless = ~keyed_rows.any(dim=1)
    assert abs(float(keyless.float().mean()) - KEYLESS_SHARE) < 0.05
    assert not mask[..., CONTACT].any()                            # contacts are never given
    rows = keyed_rows.sum(dim=1)
    sparse = (rows >= 1) & (rows <= 4)
    assert sparse.any() and (rows == L.WINDOW_FRAMES).any()       # keyframes; a part on every frame
    seeds = (rows > 4) & (rows < L.WINDOW_FRAMES)
    assert seeds.any()
    for b in torch.nonzero(seeds).flatten()[:20]:                        # seed motion: an opening run
        n = int(rows[b])
        assert keyed_rows[b, :n].all() and not keyed_rows[b, n:].any()
    x0 = torch.randn(3, L.WINDOW_FRAMES, L.NUM_CHANNELS)
    cond = with_random_keys(torch.zeros(3, L.WINDOW_FRAMES, 35), x0, torch.Generator().manual_seed(1))
    values, given = cond[..., 35:35 + L.NUM_CHANNELS], cond[..., 35 + L.NUM_CHANNELS:].bool()
    assert cond.shape[-1] == 35 + KEY_CHANNELS and torch.equal(values[given], x0[given]) and not values[~given].any()


def test_the_network_learns_to_use_the_keys():
    """From heavy noise, a tiny key-aware network learns to give back the keyed frames far better
    with the keys than without them: the key input reaches it and training uses it."""
    torch.manual_seed(0)
    model = Denoiser(ModelConfig(width=32, layers=1, heads=2, key_input=True, dropout=0.0))
    B, T = 32, 20
    x0 = torch.randn(B, T, L.NUM_CHANNELS)
    music = torch.zeros(B, T, 35)
    t = torch.full((B,), 900)
    noisy = q_sample(x0, t, torch.randn_like(x0), cosine_alpha_bar())
    mask = torch.zeros_like(x0, dtype=torch.bool)
    mask[:, ::5] = True
    keyed = with_keys(music, x0, mask)
    without = with_keys(music)
    keep, style = torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.long)
    # A fresh key layer is zero: keys change nothing until it is trained.
    assert torch.equal(model(noisy, t, keyed, style, keep), model(noisy, t, without, style, keep))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        loss = (model(noisy, t, keyed, style, keep) - x0)[mask].pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        err_keys = (model(noisy, t, keyed, style, keep) - x0)[mask].pow(2).mean()
        err_none = (model(noisy, t, without, style, keep) - x0)[mask].pow(2).mean()
    assert err_keys < 0.6 * err_none                              # measured: 0.43 against 1.04


def test_train_and_generate_with_key_input(aist_data, tmp_path, click_song):  # noqa: F811
    common = tiny_run_args(aist_data, tmp_path)
    assert train_main(common + ["--out", str(tmp_path / "plain")]) == 0
    assert train_main(common + ["--out", str(tmp_path / "keys"), "--key-input"]) == 0
    weights = tmp_path / "keys" / "model.safetensors"
    assert checkpoint.load(weights).model.cfg.key_input
    from engine.api import generate
    pose = np.random.default_rng(0).normal(0, 0.3, 72)
    c = Constraints.empty(30, 30.0).set_pose(20, pose)
    motion = generate(click_song, weights=weights, steps=2, duration=1.0, constraints=c)
    assert motion.poses.shape == (30, 72) and np.abs(motion.poses[20] - pose).max() < 1e-6
    # A plain network starts a key-aware run as itself.
    assert train_main(common + ["--out", str(tmp_path / "tuned"), "--key-input", "--lr", "0",
                                "--init", str(tmp_path / "plain" / "model.safetensors")]) == 0
    a = checkpoint.load(tmp_path / "plain" / "model.safetensors").model.state_dict()
    b = checkpoint.load(tmp_path / "tuned" / "model.safetensors").model.state_dict()
    assert not b.pop("key_in.weight").any() and not b.pop("key_in.bias").any()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
