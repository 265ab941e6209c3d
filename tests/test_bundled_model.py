"""The bundled default model: present, small, loads offline, generates deterministically, and its student
does what it was distilled for (one step lands near the teacher's many-step result, far nearer than noise)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import soundctm
from soundctm.pipeline import DEFAULT_MODEL, SoundCTM


@pytest.fixture(scope="module")
def pipe():
    return SoundCTM.from_pretrained(DEFAULT_MODEL)


def test_bundle_is_complete_and_small():
    index = json.loads((DEFAULT_MODEL / "model_index.json").read_text())
    assert index["format"] == "soundctm-pipeline"
    for part in ("vae", "student", "teacher"):
        assert (DEFAULT_MODEL / part / "config.json").is_file(), part
        assert any((DEFAULT_MODEL / part).glob("*.safetensors")), part
    provenance = json.loads((DEFAULT_MODEL / "provenance.json").read_text())
    assert {"vae", "student", "teacher"} <= set(provenance["components"])
    size = sum(p.stat().st_size for p in DEFAULT_MODEL.rglob("*") if p.is_file())
    assert size <= 50 * 2**20, f"bundled model is {size / 2**20:.1f} MiB (limit 50)"


def test_loads_and_generates_offline_without_network_settings():
    """A fresh interpreter with the hub forced offline and no proxy or token settings loads the bundle and generates
    (how long it takes is a benchmark's business, not a test's: benchmarks/speed.py)."""
    code = ("from soundctm import SoundCTM; p = SoundCTM.from_pretrained(); "
            "print(p.generate('a high beep', steps=1, seed=0).waveforms.shape)")
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "(1, 32000)"


def test_top_level_generate_is_deterministic_and_audible(tmp_path):
    """The README's example (4 steps): same seed, same samples, and a beep one can hear."""
    a = soundctm.generate("a high beep sounding twice", steps=4, seed=0)
    b = soundctm.generate("a high beep sounding twice", steps=4, seed=0)
    assert a.waveforms.shape == (1, 32000) and a.sample_rate == 16000
    assert np.array_equal(a.waveforms, b.waveforms)
    assert np.sqrt(np.mean(a.waveforms**2)) > 1e-3  # not silence
    path = a.save(tmp_path / "beep.wav")[0]
    assert sf.read(path)[0].shape == (32000,)


def test_one_step_student_lands_near_the_teacher_trajectory(pipe):
    """Same prompt and x_T: the 1-step CTM latent is much closer to the teacher's 40-step ODE endpoint than an
    independent teacher sample is (a student that ignored the trajectory would be as far as a fresh sample)."""
    prompts = ["a loud high-pitched beep sounding twice", "rain falling", "a quiet knock three times",
               "a police siren rising in pitch"]
    cond, uncond = pipe.encode_text(prompts)
    gen = torch.Generator().manual_seed(0)
    x_T = pipe.initial_noise(len(prompts), gen)
    other = pipe.initial_noise(len(prompts), gen)
    kw = dict(uncond=uncond, gamma=0.0, nu=1.0, teacher_solver="heun", generator=None)
    with torch.no_grad():
        ctm = pipe.sample_latents(x_T, cond, steps=1, guidance=pipe.config.guidance, sampler="ctm", **kw)
        teacher = pipe.sample_latents(x_T, cond, steps=40, guidance=pipe.config.guidance, sampler="teacher", **kw)
        fresh = pipe.sample_latents(other, cond, steps=40, guidance=pipe.config.guidance, sampler="teacher", **kw)
    d_ctm = (ctm - teacher).pow(2).mean().item()
    d_fresh = (fresh - teacher).pow(2).mean().item()
    assert d_ctm < 0.5 * d_fresh, (d_ctm, d_fresh)
