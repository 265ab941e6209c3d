import json

import numpy as np
import pytest
import torch
from pipeline_utils import make_pipeline, text_encoder

from soundctm.pipeline import SoundCTM


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipe") / "model"
    pipe = make_pipeline(path)
    return pipe, path


def test_shapes_info_and_batched_prompts(saved):
    pipe, _ = saved
    audio = pipe.generate(["a high beep", "rain falling"], steps=2, num_samples=2, seed=1)
    assert audio.waveforms.shape == (4, 32000) and audio.waveforms.dtype == np.float32
    assert audio.sample_rate == 16000 and audio.prompts == ["a high beep"] * 2 + ["rain falling"] * 2
    assert np.abs(audio.waveforms).max() <= 0.99 + 1e-6
    assert audio.info["nfe"] == 2 and audio.info["seconds"] > 0 and audio.info["real_time_factor"] > 0


def test_same_seed_same_waveform_and_gamma_zero_draws_no_noise(saved, monkeypatch):
    pipe, _ = saved
    a = pipe.generate("a dog barks", steps=3, gamma=0.0, seed=7)
    b = pipe.generate("a dog barks", steps=3, gamma=0.0, seed=7)
    assert np.array_equal(a.waveforms, b.waveforms)
    c = pipe.generate("a dog barks", steps=3, gamma=0.0, seed=8)
    assert not np.array_equal(a.waveforms, c.waveforms)
    calls = []
    real = torch.randn

    def counting(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(torch, "randn", counting)
    pipe.generate("a dog barks", steps=3, gamma=0.0, seed=7)
    n_det = len(calls)
    calls.clear()
    pipe.generate("a dog barks", steps=3, gamma=0.5, seed=7)
    assert n_det == 1 and len(calls) == 1 + 2  # x_T only; γ > 0 re-noises after each of the first 2 jumps


def test_nu_one_runs_no_unconditional_pass_and_nu_other_does(saved):
    pipe, _ = saved
    sizes = []
    hook = pipe.student.register_forward_hook(lambda m, a, k, o: sizes.append(o.shape[0]), with_kwargs=True)
    try:
        pipe.generate("a bell", steps=2, seed=0, nu=1.0)
        assert sizes == [1, 1]
        sizes.clear()
        pipe.generate("a bell", steps=2, seed=0, nu=0.5)
        assert sizes == [2, 2]
    finally:
        hook.remove()


def test_one_step_equals_the_direct_jump(saved):
    pipe, _ = saved
    from soundctm.core.precond import CTMPrecond

    g = torch.Generator().manual_seed(3)
    cond, uncond = pipe.encode_text(["a siren"])
    x_T = pipe.initial_noise(1, g)
    lat = pipe.sample_latents(x_T, cond, uncond, 1, 0.7, 3.5, 1.0, "ctm", "heun", g)
    G = CTMPrecond(pipe.student, 0.5)
    direct = G(x_T, torch.full((1,), 80.0), torch.full((1,), 0.002), omega=torch.full((1,), 3.5), **cond)
    assert torch.allclose(lat, direct, atol=1e-5)


def test_teacher_and_score_samplers(saved):
    pipe, _ = saved
    t = pipe.generate("a drum", steps=3, sampler="teacher", seed=0, guidance=2.0)
    s = pipe.generate("a drum", steps=3, sampler="score", seed=0, guidance=1.0)
    assert t.info["nfe"] == (2 * 3 - 1) * 2 and s.info["nfe"] == 2 * 3 - 1
    assert t.waveforms.shape == s.waveforms.shape == (1, 32000)


def test_save_load_round_trip_gives_identical_audio(saved, tmp_path):
    pipe, path = saved
    loaded = SoundCTM.from_pretrained(path, text_encoder=text_encoder())
    a = pipe.generate("a knock", steps=2, gamma=0.3, seed=5)
    b = loaded.generate("a knock", steps=2, gamma=0.3, seed=5)
    assert np.array_equal(a.waveforms, b.waveforms)
    idx = json.loads((path / "model_index.json").read_text())
    assert idx["format"] == "soundctm-pipeline" and idx["latent_shape"] == list(pipe.config.latent_shape)


@pytest.mark.parametrize("kwargs,name", [
    ({"steps": 0}, "steps"), ({"steps": 1001}, "steps"), ({"steps": 1.5}, "steps"),
    ({"gamma": -0.1}, "gamma"), ({"gamma": 1.5}, "gamma"), ({"gamma": float("nan")}, "gamma"),
    ({"guidance": -1.0}, "guidance"), ({"guidance": float("nan")}, "guidance"),
    ({"num_samples": 0}, "num_samples"), ({"nu": -0.5}, "nu"), ({"sampler": "ddim"}, "sampler"),
    ({"seed": -3}, "seed"),
])
def test_bad_arguments_name_themselves(saved, kwargs, name):
    pipe, _ = saved
    with pytest.raises(ValueError, match=name):
        pipe.generate("a beep", **kwargs)


@pytest.mark.parametrize("prompt", ["", "   ", [], ["ok", " "], 3])
def test_bad_prompts(saved, prompt):
    with pytest.raises(ValueError, match="prompt"):
        saved[0].generate(prompt)


def test_overlong_prompt_is_truncated_with_a_warning(saved):
    pipe, _ = saved
    with pytest.warns(UserWarning, match="truncated"):
        audio = pipe.generate("beep " * 2000, seed=0)
    assert audio.waveforms.shape == (1, 32000)


def test_missing_and_corrupt_model_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SoundCTM.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        SoundCTM.from_pretrained(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_index.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        SoundCTM.from_pretrained(bad)


def test_vocoder_options_in_the_model_index_reach_the_vocoder(saved, tmp_path):
    import shutil

    _, path = saved
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    idx = json.loads((copy / "model_index.json").read_text())
    idx["vocoder"] = {"name": "griffin-lim", "n_iter": 2, "phase_init": "lines"}
    (copy / "model_index.json").write_text(json.dumps(idx))
    loaded = SoundCTM.from_pretrained(copy, text_encoder=text_encoder())
    assert (loaded.vocoder.n_iter, loaded.vocoder.phase_init) == (2, "lines")
    idx["vocoder"]["phase_init"] = "zeros"
    (copy / "model_index.json").write_text(json.dumps(idx))
    with pytest.raises(ValueError, match="vocoder entry: phase_init must be one of"):
        SoundCTM.from_pretrained(copy, text_encoder=text_encoder())
    idx["vocoder"] = {"name": "griffin-lim", "hop": 3}
    (copy / "model_index.json").write_text(json.dumps(idx))
    with pytest.raises(ValueError, match="bad options \\['hop'\\]"):
        SoundCTM.from_pretrained(copy, text_encoder=text_encoder())


def test_default_sigmas_are_the_karras_grid_and_passing_them_changes_nothing(saved):
    pipe, _ = saved
    from soundctm.core import schedule

    grid = pipe.default_sigmas(4)
    assert torch.equal(grid, schedule.karras_sigmas(5, 0.002, 80.0))
    assert torch.equal(pipe.default_sigmas(3, "teacher"), schedule.append_zero(schedule.karras_sigmas(3, 0.002, 80.0)))
    a = pipe.generate("a bell", steps=4, seed=2)
    b = pipe.generate("a bell", steps=4, seed=2, sigmas=grid.tolist())
    assert np.array_equal(a.waveforms, b.waveforms)
    assert a.info["sigmas"] == b.info["sigmas"] == pytest.approx(grid.tolist(), rel=1e-6)
    t = pipe.generate("a bell", steps=3, seed=2, sampler="teacher")
    u = pipe.generate("a bell", steps=3, seed=2, sampler="teacher", sigmas=pipe.default_sigmas(3, "teacher"))
    assert np.array_equal(t.waveforms, u.waveforms)


def test_custom_sigmas_place_the_jumps_and_scale_x_T(saved):
    """γ = 0: the sampler jumps t_i → t_{i+1} along the given levels exactly; x_T is their first level times z."""
    pipe, _ = saved
    from soundctm.core.precond import CTMPrecond

    sig = [40.0, 6.0, 0.9, 0.002]
    seen = []
    pipe.generate("a bell", steps=3, seed=4, sigmas=sig, callback=lambda i: seen.append((float(i["t"]), float(i["s"]))))
    assert [v for ts in seen for v in ts] == pytest.approx([v for ts in zip(sig[:-1], sig[1:]) for v in ts])
    cond, _ = pipe.encode_text(["a bell"])
    z = torch.randn(1, *pipe.config.latent_shape, generator=torch.Generator().manual_seed(4))
    G = CTMPrecond(pipe.student, 0.5)
    one = pipe.generate("a bell", steps=1, seed=4, sigmas=[12.0, 0.05])
    direct = G(12.0 * z, torch.full((1,), 12.0), torch.full((1,), 0.05), omega=torch.full((1,), 3.5), **cond)
    assert np.allclose(one.waveforms, pipe.decode(direct), atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    {"steps": 2, "sigmas": [80.0, 0.002]},                         # too few for 2 steps
    {"steps": 2, "sigmas": [80.0, 0.1, 0.5]},                      # not decreasing
    {"steps": 2, "sigmas": [120.0, 1.0, 0.002]},                   # above σ_max
    {"steps": 2, "sigmas": [80.0, 1.0, 0.0]},                      # CTM ends at σ_min at the lowest
    {"steps": 2, "sigmas": [80.0, float("nan"), 0.002]},
    {"steps": 2, "sigmas": ["a", "b", "c"]},
    {"steps": 2, "sigmas": [80.0, 1.0, 0.002], "sampler": "teacher"},  # an ODE grid ends at 0
])
def test_bad_sigmas_name_the_argument_and_the_rule(saved, kwargs):
    with pytest.raises(ValueError, match=r"sigmas must be steps \+ 1 = 3 strictly decreasing"):
        saved[0].generate("a beep", **kwargs)
