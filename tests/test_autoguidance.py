"""Autoguidance: the denoiser combination, the guide network inside a weights file, and
generate() using it."""
import numpy as np
import pytest
import torch

from engine.sampler import checkpoint
from engine.body import layout as L
from engine.api import generate
from engine.training.autoguide import attach_guide, main as autoguide_main
from engine.sampler.diffusion import autoguided
from engine.errors import EngineError
from engine.sampler.model import Denoiser, ModelConfig
from engine.training.train import BASE_STYLES


def _constant(value):
    return lambda x_t, t, music: torch.full_like(x_t, value)


def test_autoguidance_extrapolates_from_the_guide():
    x, music = torch.zeros(2, 6, 4), torch.zeros(2, 6, 3)
    for weight, expected in [(1.5, 1.0 + 1.5 * (3.0 - 1.0)), (1.0, 3.0), (1.15, 1.0 + 1.15 * 2.0)]:
        denoise = autoguided(_constant(3.0), _constant(1.0), weight)
        assert torch.allclose(denoise(x, torch.full((2,), 500), music), torch.full_like(x, expected))
        assert torch.allclose(denoise(x, torch.full((2,), 0), music), torch.full_like(x, 3.0))   # clean input


def _tiny_guide(tiny_weights, tmp_path, seed=1):
    """The tiny test checkpoint's normalisers around a second, different tiny network."""
    main = checkpoint.load(tiny_weights)
    torch.manual_seed(seed)
    guide = Denoiser(ModelConfig(width=16, layers=1, heads=2, num_styles=len(BASE_STYLES)))
    path = tmp_path / "guide.safetensors"
    checkpoint.save(path, guide, main.normalizer, main.music_normalizer, main.styles, {"note": "guide"})
    return path


def test_weights_file_round_trips_its_guide(tiny_weights, tmp_path):
    assert checkpoint.load(tiny_weights).guide is None
    out = tmp_path / "with_guide.safetensors"
    attach_guide(tiny_weights, _tiny_guide(tiny_weights, tmp_path), out)
    both, guide = checkpoint.load(out), checkpoint.load(tmp_path / "guide.safetensors")
    assert both.guide is not None and both.guide.cfg == guide.model.cfg
    assert both.guide_info == {"note": "guide"} and both.info == checkpoint.load(tiny_weights).info
    for k, v in guide.model.state_dict().items():
        assert torch.equal(both.guide.state_dict()[k], v)
    for k, v in checkpoint.load(tiny_weights).model.state_dict().items():
        assert torch.equal(both.model.state_dict()[k], v)


def test_a_guide_from_other_data_is_refused(tiny_weights, tmp_path, capsys):
    main = checkpoint.load(tiny_weights)
    other = L.Normalizer(main.normalizer.mean + 0.1, main.normalizer.std)
    path = tmp_path / "other.safetensors"
    checkpoint.save(path, main.model, other, main.music_normalizer, main.styles)
    with pytest.raises(EngineError, match="motion normaliser"):
        attach_guide(tiny_weights, path, tmp_path / "out.safetensors")
    assert autoguide_main(["--main", str(tiny_weights), "--guide", str(path), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "normaliser" in capsys.readouterr().err and not (tmp_path / "o.safetensors").exists()


def test_a_few_step_student_is_refused_as_main_or_guide(tiny_weights, tmp_path):
    # QA: a student given as --main came out without its student record, and generate then ran
    # it as a 20-step model with autoguidance, without a word.
    main = checkpoint.load(tiny_weights)
    student = tmp_path / "student.safetensors"
    checkpoint.save(student, main.model, main.normalizer, main.music_normalizer, main.styles,
                    student={"steps": 2, "timesteps": [999, 499], "guidance": 2.5})
    for pair in ((student, tiny_weights), (tiny_weights, student)):
        with pytest.raises(EngineError, match="few-step student"):
            attach_guide(*pair, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_generate_uses_the_guide_only_when_asked(click_song, tiny_weights, tmp_path):
    with_guide = tmp_path / "with_guide.safetensors"
    attach_guide(tiny_weights, _tiny_guide(tiny_weights, tmp_path), with_guide)
    kw = dict(steps=3, duration=2.0, seed=4)
    plain = generate(click_song, weights=tiny_weights, **kw)
    off = generate(click_song, weights=with_guide, autoguidance=1.0, **kw)
    on = generate(click_song, weights=with_guide, autoguidance=1.5, **kw)
    assert np.array_equal(plain.poses, off.poses) and np.array_equal(plain.trans, off.trans)
    assert not np.allclose(plain.poses, on.poses, atol=1e-4)
    # Weights without a guide ignore the setting rather than failing.
    assert np.array_equal(generate(click_song, weights=tiny_weights, autoguidance=1.5, **kw).poses, plain.poses)
    with pytest.raises(EngineError, match="autoguidance"):
        generate(click_song, weights=with_guide, autoguidance=0.5, **kw)
    # Guidance in the motion band changes the draw through the real sampler; a negative band is refused.
    banded = generate(click_song, weights=with_guide, autoguidance=1.5, guidance_lowpass=2.0, **kw)
    assert not np.allclose(banded.poses, on.poses, atol=1e-4)
    with pytest.raises(EngineError, match="guidance_lowpass"):
        generate(click_song, weights=with_guide, guidance_lowpass=-1.0, **kw)
    # Stochastic DDIM steps give another dance than the deterministic ones; eta is 0-1.
    ddim = generate(click_song, weights=with_guide, autoguidance=1.0, sampling_solver="ddim", **kw)
    stochastic = generate(click_song, weights=with_guide, autoguidance=1.0, sampling_eta=0.5,
                          sampling_solver="ddim", **kw)
    assert not np.allclose(stochastic.poses, ddim.poses, atol=1e-4)
    with pytest.raises(EngineError, match="sampling_eta"):
        generate(click_song, weights=with_guide, sampling_eta=1.5, sampling_solver="ddim", **kw)
    # The second-order solver (the default) reaches another end point from the same noise; it is
    # first order on its first and last steps, so in 3 steps it is DDIM itself.
    assert np.array_equal(ddim.poses, off.poses)
    four = dict(kw, steps=4, autoguidance=1.0)
    assert not np.allclose(generate(click_song, weights=with_guide, sampling_solver="ddim", **four).poses,
                           generate(click_song, weights=with_guide, **four).poses, atol=1e-4)


def test_a_plain_guide_guides_a_network_with_beat_phase_and_keys(click_song, tiny_weights, tmp_path):
    """A network fine-tuned into the beat phase and key input can keep its plain guide: the guide
    reads only the music features of the fuller conditioning."""
    from engine.music.beat_phase import with_beat_phase_normalizer
    from engine.body.motion import Constraints
    plain = checkpoint.load(tiny_weights)
    torch.manual_seed(2)
    cfg = ModelConfig(width=32, layers=1, heads=2, num_styles=len(BASE_STYLES), key_input=True,
                      music_channels=plain.model.cfg.music_channels + 2)
    fuller = Denoiser(cfg)
    torch.nn.init.normal_(fuller.key_in.weight, std=0.5)          # keys matter to the main network
    main_path, out = tmp_path / "phase_keys.safetensors", tmp_path / "guided.safetensors"
    checkpoint.save(main_path, fuller, plain.normalizer, with_beat_phase_normalizer(plain.music_normalizer),
                    plain.styles, {"note": "beat phase and keys"})
    shipped = tmp_path / "shipped.safetensors"                     # plain weights with their own guide
    attach_guide(tiny_weights, _tiny_guide(tiny_weights, tmp_path), shipped)
    attach_guide(main_path, shipped, out, its_guide=True)          # the fine-tuned network keeps that guide
    both, old_guide = checkpoint.load(out), checkpoint.load(shipped).guide
    assert both.model.cfg.beat_phase and both.model.cfg.key_input and not both.guide.cfg.key_input
    assert all(torch.equal(both.guide.state_dict()[k], v) for k, v in old_guide.state_dict().items())
    with pytest.raises(EngineError, match="no guide network"):
        attach_guide(main_path, tiny_weights, tmp_path / "none.safetensors", its_guide=True)
    # A later fine-tune keeps the same guide from that file, whose normaliser now has the beat phase.
    attach_guide(main_path, out, tmp_path / "again.safetensors", its_guide=True)
    again = checkpoint.load(tmp_path / "again.safetensors").guide
    assert all(torch.equal(again.state_dict()[k], v) for k, v in old_guide.state_dict().items())
    pose = np.random.default_rng(0).normal(0, 0.3, 72)
    c = Constraints.empty(60, 30.0).set_pose(30, pose)
    kw = dict(steps=3, duration=2.0, seed=4, constraints=c)
    off = generate(click_song, weights=out, autoguidance=1.0, **kw)
    on = generate(click_song, weights=out, autoguidance=1.5, **kw)
    assert np.abs(on.poses[30] - pose).max() < 1e-6
    assert not np.allclose(off.poses, on.poses, atol=1e-4)
    # The other way round is refused: a guide cannot take inputs the main network lacks.
    with pytest.raises(EngineError, match="inputs the main model lacks"):
        attach_guide(tiny_weights, main_path, tmp_path / "wrong.safetensors")


def test_a_guide_from_before_a_new_style_reads_it_as_any(click_song, tiny_weights, tmp_path):
    """A fine-tune that added data (a new style row) keeps the older guide: the guide is asked
    for "any" when the dancer is asked for the style it never saw."""
    plain = checkpoint.load(tiny_weights)
    styles = plain.styles + ["salsa"]
    cfg = plain.model.cfg.to_dict() | {"num_styles": len(styles)}
    grown = Denoiser(ModelConfig.from_dict(cfg))
    state = plain.model.state_dict()
    state["style.weight"] = torch.cat([state["style.weight"], torch.randn(1, state["style.weight"].shape[1])])
    grown.load_state_dict(state)
    main_path, out = tmp_path / "grown.safetensors", tmp_path / "guided.safetensors"
    checkpoint.save(main_path, grown, plain.normalizer, plain.music_normalizer, styles)
    attach_guide(main_path, _tiny_guide(tiny_weights, tmp_path), out)
    kw = dict(steps=3, duration=2.0, seed=4, autoguidance=1.5)
    # The guide's style table has no row for "salsa": asked for it, it would fail with an index error.
    salsa = generate(click_song, weights=out, style="salsa", **kw)
    assert salsa.poses.shape == (60, 72) and np.isfinite(salsa.poses).all() and salsa.style == "salsa"
    # A guide whose styles are not the main model's first ones is refused.
    reordered = tmp_path / "reordered.safetensors"
    checkpoint.save(reordered, grown, plain.normalizer, plain.music_normalizer, styles[1:2] + styles[:1] + styles[2:])
    with pytest.raises(EngineError, match="styles"):
        attach_guide(reordered, _tiny_guide(tiny_weights, tmp_path), tmp_path / "wrong.safetensors")


def test_autoguide_replaces_an_existing_file_only_when_forced(tiny_weights, tmp_path, capsys):
    # Review: `autoguide --out EXISTING` replaced it without a word.
    guide = _tiny_guide(tiny_weights, tmp_path)
    out = tmp_path / "mine.safetensors"
    out.write_bytes(b"someone's weights")
    args = ["--main", str(tiny_weights), "--guide", str(guide), "--out", str(out)]
    assert autoguide_main(args) == 2 and "already exists: pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"someone's weights"
    assert autoguide_main(args + ["--force"]) == 0 and checkpoint.load(out).guide is not None


def test_autoguidance_eases_out_towards_in_painted_runs_of_keys():
    """The push (main - guide) is kept whole away from runs of keyed frames (two or more in a row,
    what the sampler in-paints), dropped on them and eased in over the taper; a lone key is no run."""
    W, C = 40, L.NUM_CHANNELS
    mask = torch.zeros(1, W, C)
    mask[0, 10:14, :3] = 1.0                    # a run of 4 keyed frames
    mask[0, 30, :] = 1.0                        # a lone key
    good, bad = torch.ones(1, W, C), torch.zeros(1, W, C)
    cond = torch.cat([torch.zeros(1, W, 5), torch.zeros(1, W, C), mask], -1)   # music, keyed values, mask
    out = autoguided(lambda x, t, m: good, lambda x, t, m: bad, 2.0, keyed_taper_frames=5)(
        torch.zeros(1, W, C), torch.tensor([500]), cond)
    push = (out - good)[0, :, 0]
    assert torch.allclose(push[10:14], torch.zeros(4))                         # on the run: none
    assert torch.allclose(push[[14, 15, 16]], torch.tensor([0.2, 0.4, 0.6]))   # eased in after it
    assert torch.allclose(push[19:], torch.ones(W - 19))                       # whole from 5 frames on, the lone key too
    plain = autoguided(lambda x, t, m: good, lambda x, t, m: bad, 2.0)(torch.zeros(1, W, C), torch.tensor([500]), cond)
    assert torch.allclose(plain - good, torch.ones(1, W, C))                   # without the taper: everywhere
