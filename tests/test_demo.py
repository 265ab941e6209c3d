"""The demo's handlers (no browser), its command line, and the running app through gradio_client."""

import re
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import numpy as np
import pytest
import soundfile as sf
import torch
from demo_utils import TEACHER_STEPS, demo_server

from soundctm import demo
from soundctm.pipeline import SoundCTM

CTM = demo.DEFAULT_SAMPLER
# gradio's queue trips pandas deprecation warnings of its own
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


@pytest.fixture(scope="module")
def server():
    return demo_server()


@pytest.fixture(scope="module")
def pipe(server):
    return server.pipe


def request(prompt="a high beep sounding twice", steps=2, gamma=0.3, guidance=3.0, seed=0, random_seed=False,
            num_samples=1, sampler=CTM):
    return demo.parse_request(prompt, steps, gamma, guidance, seed, random_seed, num_samples, sampler)


# ---- widget values -> Request ----

def test_parse_request_converts_widget_floats():
    r = request(" a bell ", steps=3.0, gamma=1, guidance=0, seed=7.0, num_samples=4.0,
                sampler="teacher (ODE, for comparison)")
    assert r == demo.Request("a bell", 3, 1.0, 0.0, 7, 4, "teacher")
    assert isinstance(r.steps, int) and isinstance(r.seed, int) and isinstance(r.gamma, float)
    assert request(seed=None, random_seed=True).seed is None  # random: the pipeline draws one
    assert request(sampler="score").sampler == "score"


@pytest.mark.parametrize("field,value,needle", [
    ("prompt", "   ", "prompt"), ("prompt", None, "prompt"), ("prompt", "x" * 501, "at most 500"),
    ("steps", 0, "steps must be a whole number in [1, 16]"), ("steps", 17, "[1, 16]"), ("steps", 2.5, "steps"),
    ("steps", True, "steps"), ("gamma", -0.1, "gamma must be a number in [0, 1]"), ("gamma", 1.01, "gamma"),
    ("gamma", float("nan"), "gamma"), ("guidance", -1, "guidance must be a number in [0, 10]"),
    ("guidance", 10.5, "guidance"), ("seed", -1, "seed"), ("seed", None, "random seed"), ("seed", 2**31, "seed"),
    ("num_samples", 0, "num_samples must be a whole number in [1, 4]"), ("num_samples", 5, "num_samples"),
    ("sampler", "ddpm", "sampler must be one of"),
])
def test_parse_request_names_the_bad_field(field, value, needle):
    with pytest.raises(ValueError, match=re.escape(needle)) as err:
        request(**{field: value})
    assert field.split("_")[0] in str(err.value)


# ---- handlers ----

def test_generate_clips_shapes_and_timing(pipe):
    gen = demo.generate_clips(pipe, request(steps=3, gamma=0.4, guidance=2.5, seed=5, num_samples=2))
    n = int(pipe.config.clip_seconds * pipe.config.sample_rate)
    assert len(gen.clips) == 2
    for c in gen.clips:
        assert c.sample_rate == 16000 and c.wave.shape == (n,) and c.wave.dtype == np.float32
        assert np.abs(c.wave).max() <= 0.99 + 1e-6
        assert c.spectrogram.ndim == 3 and c.spectrogram.shape[2] == 3 and c.spectrogram.dtype == np.uint8
    assert not np.array_equal(gen.clips[0].wave, gen.clips[1].wave)  # two samples, two noises
    info = gen.info
    assert (info["steps"], info["gamma"], info["guidance"], info["seed"], info["nfe"]) == (3, 0.4, 2.5, 5, 3)
    assert info["seconds"] > 0 and info["real_time_factor"] == pytest.approx(2 * 2.0 / info["seconds"])
    ms = float(re.search(r"(\d+) ms", gen.timing).group(1))
    assert ms == pytest.approx(info["seconds"] * 1000, abs=0.5)
    assert "3 NFE" in gen.timing and "seed 5" in gen.timing and "γ 0.40" in gen.timing


def test_generate_clips_matches_pipeline_and_seed(pipe):
    gen = demo.generate_clips(pipe, request(steps=2, gamma=0.5, seed=11))
    ref = pipe.generate("a high beep sounding twice", steps=2, gamma=0.5, guidance=3.0, seed=11)
    np.testing.assert_array_equal(gen.clips[0].wave, ref.waveforms[0])
    other = demo.generate_clips(pipe, request(steps=2, gamma=0.5, seed=12))
    assert not np.array_equal(gen.clips[0].wave, other.clips[0].wave)


def test_random_seed_is_reported_and_reproducible(pipe):
    gen = demo.generate_clips(pipe, request(steps=1, seed=None, random_seed=True))
    again = demo.generate_clips(pipe, request(steps=1, seed=gen.info["seed"]))
    np.testing.assert_array_equal(gen.clips[0].wave, again.clips[0].wave)


def test_teacher_sampler_counts_heun_evaluations(pipe):
    gen = demo.generate_clips(pipe, request(steps=3, sampler="teacher (ODE, for comparison)", guidance=2.0))
    assert gen.info["sampler"] == "teacher" and gen.info["nfe"] == (2 * 3 - 1) * 2  # Heun, CFG pair
    assert gen.timing.startswith("**teacher · 3 steps · ω 2**")


def test_compare_same_seed_three_samplers(pipe):
    gens = demo.compare_samplers(pipe, request(steps=4, gamma=0.2, seed=None, random_seed=True, num_samples=3))
    assert [(g.info["sampler"], g.info["steps"]) for g in gens] == [("ctm", 1), ("ctm", 4), ("teacher", TEACHER_STEPS)]
    assert len({g.info["seed"] for g in gens}) == 1 and all(len(g.clips) == 1 for g in gens)
    seed = gens[0].info["seed"]
    one = demo.generate_clips(pipe, request(steps=1, gamma=1.0, seed=seed))  # γ plays no part in one jump
    np.testing.assert_array_equal(gens[0].clips[0].wave, one.clips[0].wave)
    teacher = pipe.generate("a high beep sounding twice", steps=TEACHER_STEPS, guidance=3.0, seed=seed,
                            sampler="teacher")
    np.testing.assert_array_equal(gens[2].clips[0].wave, teacher.waveforms[0])


def test_without_teacher(pipe):
    student_only = SoundCTM(pipe.vae, pipe.vocoder, pipe.text_encoder, pipe.student, pipe.config)
    with pytest.raises(ValueError, match="sampler 'teacher' is not available"):
        demo.generate_clips(student_only, request(sampler="teacher"))
    gens = demo.compare_samplers(student_only, request(steps=2))
    assert [g.info["steps"] for g in gens] == [1, 2]
    out = demo.comparison_outputs(gr, gens)
    assert len(out) == 3 * 3 + 2 and "no teacher" in out[8] and out[6]["visible"] is False


def test_generation_outputs_fill_and_hide_slots(pipe):
    gen = demo.generate_clips(pipe, request(num_samples=2, seed=3))
    out = demo.generation_outputs(gr, gen)
    assert len(out) == 2 * demo.MAX_UI_SAMPLES + 2 and out[-1] == 3 and out[-2] == gen.timing
    assert [u["visible"] for u in out[:-2]] == [True] * 4 + [False] * 4
    sr, pcm = out[0]["value"]
    assert sr == 16000 and pcm.dtype == np.int16
    np.testing.assert_allclose(pcm / 32767, gen.clips[0].wave, atol=0.5 / 32767 + 1e-7)


def test_format_timing_closed_form():
    info = {"sampler": "ctm", "steps": 2, "gamma": 0.25, "guidance": 3.0, "seconds": 0.25, "nfe": 2,
            "real_time_factor": 8.0, "seed": 7}
    assert demo.format_timing(info) == ("**CTM · 2 steps · γ 0.25 · ω 3** — 250 ms · 2 NFE per clip · "
                                        "8.0× real time · seed 7")
    assert "γ 0.25" not in demo.format_timing({**info, "steps": 1})
    assert demo.format_timing({**info, "steps": 1}).endswith("seed 7 · *γ has no effect at 1 step*")
    assert "γ has no effect" not in demo.format_timing({**info, "steps": 1, "gamma": 0.0})
    assert demo.format_timing(info, ["a note"]).endswith("seed 7\n\n⚠ a note")


@pytest.mark.parametrize("data,prompt,warned", [
    ("synthcaps", "a dog barking", True), ("synthcaps", "a high beep sounding twice", False),
    ("data/dogs.csv", "a dog barking", False),
])
def test_a_prompt_the_model_does_not_know_gets_a_note(pipe, monkeypatch, data, prompt, warned):
    monkeypatch.setattr(pipe, "training_data", data)
    gen = demo.generate_clips(pipe, request(prompt=prompt, steps=1, gamma=0.0))
    assert ("⚠ prompt" in gen.timing and "names none of the sounds" in gen.timing) == warned


def test_the_page_says_what_the_model_knows(pipe, monkeypatch):
    monkeypatch.setattr(pipe, "training_data", "synthcaps")
    assert "beep, buzzer, bell" in demo.knowledge(pipe) and "a dog barking" in demo.knowledge(pipe)
    monkeypatch.setattr(pipe, "training_data", "data/dogs.csv")
    assert "data/dogs.csv" in demo.knowledge(pipe)
    assert "no effect" in demo.INTRO and "1 step" in demo.INTRO


def test_pcm16_round_trip_and_clipping():
    wave = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(demo.pcm16(wave), [-32767, -32767, -16384, 0, 16384, 32767, 32767])


# ---- command line ----

@pytest.mark.parametrize("argv,needle", [
    (["--port", "70000"], "--port"), (["--port", "abc"], "--port"), (["--concurrency", "0"], "--concurrency"),
    (["--threads", "0"], "--threads"), (["--model", "/nonexistent/model"], "does not exist"),
    (["--model", "synthcaps-huge"], "bundled: synthcaps-tiny"), (["--device", "cuda:7"], "--device 'cuda:7'"),
])
def test_cli_errors_exit_2(argv, needle, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert demo.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("soundctm demo: error:") and needle in err and len(err.strip().splitlines()) == 1


def test_cli_serves_a_bundled_model_by_name(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "launch", lambda app, host, port: seen.update(app=app))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    assert demo.main(["--model", "synthcaps-tiny"]) == 0 and seen["app"] is not None


def test_cli_binds_loopback_by_default(server, monkeypatch):
    seen = {}
    monkeypatch.setattr(demo, "launch", lambda app, host, port: seen.update(app=app, host=host, port=port))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.update(threads=n))
    assert demo.main(["--model", str(server.model_dir), "--port", "7999"]) == 0
    assert (seen["host"], seen["port"], seen["threads"]) == ("127.0.0.1", 7999, 1)
    assert seen["app"].analytics_enabled is False


# ---- the running app, through gradio_client ----

@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


def call_generate(client, seed, gamma=0.3, steps=2, num_samples=1, prompt="a high beep sounding twice"):
    return client.predict(prompt, steps, gamma, 3.0, seed, False, num_samples, CTM, api_name="/generate")


def wav_of(update) -> tuple[np.ndarray, int]:
    return sf.read(update["value"], dtype="float32")


def test_server_listens_on_loopback(server):
    assert server.url.startswith("http://127.0.0.1:")


def test_client_generate_returns_the_handlers_audio(client, pipe):
    out = call_generate(client, seed=21, num_samples=2)
    assert len(out) == 2 * demo.MAX_UI_SAMPLES + 2 and out[-1] == 21 and "2 NFE" in out[-2]
    ref = demo.generate_clips(pipe, request(seed=21, num_samples=2))
    for i in range(2):
        wave, sr = wav_of(out[2 * i])
        assert sr == 16000
        np.testing.assert_allclose(wave, ref.clips[i].wave, atol=1.5 / 32767)
        assert out[2 * i + 1]["value"].endswith(".png")
    assert out[4]["visible"] is False


def test_client_bad_input_is_a_message_and_server_survives(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="greater than maximum value 1"):  # gradio checks slider bounds itself
        call_generate(client, seed=1, gamma=1.5)
    with pytest.raises(AppError, match=re.escape("seed must be a whole number in [0, 2147483647]")):
        call_generate(client, seed=None)
    with pytest.raises(AppError, match="prompt must be non-empty"):
        call_generate(client, seed=1, prompt="  ")
    assert wav_of(call_generate(client, seed=1)[0])[0].shape == (32000,)


def test_client_compare(client):
    out = client.predict("a dog barks", 3, 0.0, 3.0, 4, False, api_name="/compare")
    assert out[-1] == 4
    timings = [out[2], out[5], out[8]]
    assert [re.search(r"(\d+) NFE", t).group(1) for t in timings] == ["1", "3", str((2 * TEACHER_STEPS - 1) * 2)]
    for i in range(3):
        assert wav_of(out[3 * i])[0].shape == (32000,)


def test_concurrent_requests_complete_correctly(client, pipe):
    seeds, gammas = (31, 32, 33), (0.0, 0.5, 1.0)
    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda sg: call_generate(client, seed=sg[0], gamma=sg[1], steps=3), zip(seeds, gammas)))
    for seed, gamma, out in zip(seeds, gammas, outs):
        assert out[-1] == seed and f"γ {gamma:.2f}" in out[-2]
        ref = demo.generate_clips(pipe, request(seed=seed, gamma=gamma, steps=3))
        np.testing.assert_allclose(wav_of(out[0])[0], ref.clips[0].wave, atol=1.5 / 32767)
