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


# ---- bundled names, devices, lazy and corrupt components ----

def test_bundled_models_load_by_name_from_any_folder(tmp_path, monkeypatch):
    from soundctm.pipeline import BUNDLED_DIR, bundled_models, resolve_model

    monkeypatch.chdir(tmp_path)
    assert bundled_models() == {"synthcaps-tiny": BUNDLED_DIR / "synthcaps-tiny"}
    assert resolve_model("synthcaps-tiny") == BUNDLED_DIR / "synthcaps-tiny"
    assert resolve_model("synthcaps-classifier") == BUNDLED_DIR / "synthcaps-classifier"  # other bundled folders
    pipe = SoundCTM.from_pretrained("synthcaps-tiny", text_encoder=text_encoder())
    assert pipe.config.latent_shape == (8, 16, 52) and pipe.training_data == "synthcaps"
    for name in ("synthcaps-huge", "../core"):
        with pytest.raises(FileNotFoundError, match=r"not a folder nor a bundled model name \(bundled: synthcaps"):
            SoundCTM.from_pretrained(name)


def test_check_device_names_the_argument_and_what_is_available(monkeypatch):
    from soundctm.devices import available_devices, check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert available_devices()[0] == "cpu" and check_device("cpu") == torch.device("cpu")
    for bad in ("cuda", "cuda:1", "tpu", 3.5):
        with pytest.raises(ValueError, match=r"^--device .* is not available on this machine; available: cpu"):
            check_device(bad, "--device")
    with pytest.raises(ValueError, match="^device 'cuda' is not available"):
        SoundCTM.from_pretrained("synthcaps-tiny", device="cuda", text_encoder=text_encoder())


def _truncate(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return weights


def test_a_truncated_file_is_named_and_the_teacher_is_read_only_when_used(saved, tmp_path):
    import shutil

    _, path = saved
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    teacher_file = _truncate(copy / "teacher")
    pipe = SoundCTM.from_pretrained(copy, text_encoder=text_encoder())  # the teacher is not read here
    assert pipe.has_teacher and pipe.generate("a beep", seed=0).waveforms.shape == (1, 32000)
    with pytest.raises(ValueError, match=f"{teacher_file}.* corrupt or incomplete"):
        pipe.generate("a beep", steps=2, sampler="teacher", seed=0)
    student_file = _truncate(copy / "student")
    with pytest.raises(ValueError, match=f"{student_file}.* corrupt or incomplete"):
        SoundCTM.from_pretrained(copy, text_encoder=text_encoder())


def test_saving_a_loaded_pipeline_keeps_its_lazy_teacher(saved, tmp_path):
    _, path = saved
    loaded = SoundCTM.from_pretrained(path, text_encoder=text_encoder())
    loaded.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "teacher" / "model.safetensors").is_file()


# ---- saving audio ----

def test_save_creates_missing_folders_like_save_spectrogram(saved, tmp_path):
    audio = saved[0].generate("a bell", seed=0)
    wav = audio.save(tmp_path / "a" / "b" / "clip.wav")[0]
    png = audio.save_spectrogram(tmp_path / "c" / "d" / "clip.png")
    assert wav.is_file() and png.is_file()
    two = saved[0].generate("a bell", seed=0, num_samples=2)
    assert [p.name for p in two.save(tmp_path / "e" / "clips")] == ["sample_0.wav", "sample_1.wav"]


@pytest.mark.parametrize("suffix,fmt", [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG"), (".mp3", "MP3")])
def test_save_writes_the_format_the_suffix_names(saved, tmp_path, suffix, fmt):
    import soundfile as sf

    path = saved[0].generate("a bell", seed=0).save(tmp_path / f"clip{suffix}")[0]
    assert sf.info(path).format == fmt


def test_save_refuses_a_suffix_with_no_audio_format(saved, tmp_path):
    audio = saved[0].generate("a bell", seed=0)
    with pytest.raises(ValueError, match=r"must end in one of \.wav, \.flac, \.ogg, \.mp3"):
        audio.save(tmp_path / "new" / "clip.mp4")
    assert not (tmp_path / "new").exists()


# ---- what the model was trained on ----

def _provenance(folder, data):
    folder.mkdir()
    (folder / "provenance.json").write_text(json.dumps({"components": {
        "vae": {"data": {"name": "SynthCaps"}}, "teacher": {"data": {"source": {"data": data, "n": 8}}},
        "student": {"data": {"cache_dir": "cache/x"}}}}))
    return folder


def test_trained_on_reads_the_config_then_the_provenance(tmp_path):
    from dataclasses import replace

    from soundctm.pipeline import DEFAULT_MODEL, trained_on

    assert trained_on(DEFAULT_MODEL) == "synthcaps"
    assert trained_on(_provenance(tmp_path / "s", "synthcaps")) == "synthcaps"
    assert trained_on(_provenance(tmp_path / "m", "data/clips.csv")) == "data/clips.csv"
    assert trained_on(tmp_path) is None
    config = replace(make_pipeline().config, training_data="data/other.jsonl")
    assert trained_on(tmp_path / "s", config) == "data/other.jsonl"


@pytest.mark.parametrize("data,prompt,warns", [
    ("synthcaps", "a dog barking", True), ("synthcaps", "a high beep sounding twice", False),
    ("synthcaps", "rain falling on a roof", False), ("data/dogs.csv", "a dog barking", False),
    (None, "a dog barking", False),
])
def test_prompts_naming_no_known_sound_warn_only_for_a_synthcaps_model(saved, recwarn, monkeypatch, data, prompt,
                                                                       warns):
    from soundctm.pipeline import PromptWarning

    pipe, _ = saved
    monkeypatch.setattr(pipe, "training_data", data)
    pipe.generate(prompt, seed=0)
    caught = [str(w.message) for w in recwarn if issubclass(w.category, PromptWarning)]
    assert len(caught) == int(warns), caught
    assert all(prompt in m and "beep, buzzer" in m and "\n" not in m for m in caught)


def test_mentioned_sources_covers_every_synthcaps_caption():
    from soundctm.data.synthcaps import SynthCaps
    from soundctm.data.synthcaps_captions import mentioned_sources

    data = SynthCaps(200, 0, "train")
    missed = [c for c, a in (data.prompt(i) for i in range(200)) if a["source"] not in mentioned_sources(c)]
    assert not missed, missed[:3]
    assert mentioned_sources("birds chirping, then drumming and a siren wailing") == ["bird", "drum", "siren"]
    assert mentioned_sources("a dog barking") == mentioned_sources("a car engine noise") == []


def test_gamma_at_one_step_changes_nothing_as_the_docstring_says(saved):
    pipe, _ = saved
    assert "no effect" in SoundCTM.generate.__doc__ and "steps=1" in SoundCTM.generate.__doc__
    a = pipe.generate("a bell", steps=1, gamma=0.0, seed=3)
    b = pipe.generate("a bell", steps=1, gamma=1.0, seed=3)
    assert np.array_equal(a.waveforms, b.waveforms)
