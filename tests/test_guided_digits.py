"""Controllable generation on the digits (benchmarks/guided_digits.py): the bundled judge is trained apart from the
guiding classifier, MPGD guidance of the unconditional model reaches the requested class, and the CLI's refusals."""

import json
from pathlib import Path

import pytest
import torch

from benchmarks import guided_digits as B
from recipes.train_image import initial_noise
from soundctm.data.digits import load_digit_split
from soundctm.metrics.digits import DigitClassifier, DigitClassifierConfig, classifier_accuracy

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "soundctm/pretrained/digits"


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(1)
    return B.load_models(DIGITS / "teacher", DIGITS / "ctm_l2", DIGITS / "classifier", DIGITS / "judge")


def test_the_judge_is_another_architecture_and_seed_and_reads_held_out_digits(models):
    judge, guide = models.judge, models.classifier
    assert judge.config.arch == "mlp" and guide.config.arch == "cnn"
    assert set(judge.state_dict()) != set(guide.state_dict())  # not the same net with other weights
    seeds = [json.loads((DIGITS / d / "provenance.json").read_text())["training"]["seed"]
             for d in ("judge", "classifier")]
    assert seeds[0] != seeds[1]
    split = load_digit_split()
    assert classifier_accuracy(judge, split.test_x, split.test_y) > 0.97
    assert (DIGITS / "judge/model.safetensors").stat().st_size < 1_000_000
    with pytest.raises(ValueError, match="arch"):
        DigitClassifierConfig(arch="rnn")
    assert DigitClassifier(DigitClassifierConfig(arch="mlp")).feature_maps(torch.zeros(2, 1, 8, 8))[0].shape == (2, 128)


def test_mpgd_guidance_reaches_the_judges_class_more_often_than_unguided(models):
    """20 samples, 2 per class, 10 teacher steps: the judge reads the requested class far above chance."""
    labels = B.requested_labels(list(range(10)), 2)
    x_T = initial_noise(len(labels), models.teacher.config, 5)

    def success(method):
        x = B.generate(models, method, x_T, labels, eta=1.0, seed=5)
        return classifier_accuracy(models.judge, x.clamp(-1, 1), labels)

    unguided = success(B.Method("unguided", "teacher", 10))
    guided = success(B.Method("mpgd", "teacher", 10, scale=1.0))
    assert guided >= unguided + 0.4 and guided >= 0.7, (guided, unguided)


def row(kind, steps, success, seconds, provider="teacher"):
    return B.Row(kind, kind, provider, steps, steps, kind == "dps", 1.0, 1, success, 1.0, 5.0, 5.0, seconds,
                 seconds)


def test_speedup_verdict_compares_wall_time_at_matched_success():
    rows = [row("dps", 20, 0.90, 4.0), row("dps", 50, 0.97, 10.0), row("mpgd", 10, 0.96, 2.0),
            row("mpgd", 50, 0.98, 9.0), row("mpgd", 4, 0.80, 0.5, "student")]
    verdict, pairs = B.speedup_verdict(rows, 0.02)
    teacher = [p for p in pairs if p["provider"] == "teacher"]
    assert teacher[1]["dps_steps"] == 50 and teacher[1]["mpgd_seconds"] == 2.0 and teacher[1]["speedup"] == 5.0
    assert "**holds**" in verdict and "CTM jump: **no** speed-up" in verdict


@pytest.mark.parametrize("argv", [["--per-class", "0"], ["--classes", "1,12"], ["--jumps", "x"],
                                  ["--seed", "3", "--tune-seed", "3"], ["--eta", "2"], ["--bogus"],
                                  ["--judge", "/nonexistent/judge"]])
def test_cli_refuses_bad_arguments_in_one_line(argv, capsys):
    assert B.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("guided_digits: error:"), err
