"""recipes/configs/soundctm_smoke.yaml: a few distillation steps from the bundled teacher, loss printed per step."""

import json
import math
from pathlib import Path

import yaml
from recipe_utils import tiny_cache

from recipes import train_soundctm
from soundctm.nn.unet import TwoTimeTextUNet

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "recipes" / "configs" / "soundctm_smoke.yaml"


def test_smoke_preset_is_short_documented_and_uses_the_bundled_teacher():
    lines = SMOKE.read_text().splitlines()
    assert len(lines) <= 60
    header = "\n".join(line for line in lines if line.startswith("#"))
    assert "soundctm cache --data synthcaps --vae soundctm/pretrained/synthcaps-tiny/vae --out cache/smoke" in header
    assert "accelerate launch recipes/train_soundctm.py --config recipes/configs/soundctm_smoke.yaml" in header
    knobs = [line for line in lines if not line.startswith("#") and not line.rstrip().endswith(":")]  # not sections
    assert knobs and all("  # " in line for line in knobs), "every knob carries a one-line reason"
    cfg = yaml.safe_load(SMOKE.read_text())
    assert cfg["teacher_dir"] == "soundctm/pretrained/synthcaps-tiny/teacher" and cfg["cache_dir"] == "cache/smoke"
    assert (ROOT / cfg["teacher_dir"] / "model.safetensors").is_file()


def test_smoke_preset_trains_two_steps_and_shows_the_loss(tmp_path, capsys):
    # latents and text shaped as the bundled teacher expects: [8, 16, 52], MiniLM's 384-d tokens
    cache = tiny_cache(tmp_path / "cache", n=4, channels=8, hw=(16, 52), n_captions=2, dim=384)
    out = tmp_path / "run"
    sets = [f"cache_dir={cache}", f"train.out_dir={out}", f"export_dir={out / 'student'}", "train.steps=2",
            "train.batch_size=2", "train.ckpt_every=2"]
    assert train_soundctm.main(["--config", str(SMOKE), *(a for kv in sets for a in ("--set", kv))]) == 0
    assert "loss=" in capsys.readouterr().err  # the progress bar, on by default
    logs = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["train/loss"] for r in logs if "train/loss" in r}
    assert sorted(losses) == [1, 2] and all(math.isfinite(v) for v in losses.values())
    assert TwoTimeTextUNet.from_pretrained(out / "student").unet.config.cross_attention_dim == 384
