"""Image recipes on the shared core: digits data, image UNet (teacher / two-time student), digit classifier
metrics, and short teacher + CTM runs through the shared training loop."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

import soundctm.core as core
from recipes import train_image as recipe
from soundctm.core import guidance, losses, precond, samplers, schedule, solvers
from soundctm.data.digits import DigitsConfig, load_digit_split, stratified_holdout, to_unit_range
from soundctm.metrics.digits import (
    ClassifierTraining,
    DigitClassifier,
    classifier_accuracy,
    digit_features,
    random_shift,
    score_digits,
    train_digit_classifier,
)
from soundctm.nn.image import ImageUNet, ImageUNetConfig

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = ROOT / "soundctm/pretrained/digits/classifier"
TINY = ImageUNetConfig(base=8, mults=(1, 2), emb_dim=32, n_freqs=8, groups=4, sigma_data=0.75)




@pytest.fixture(scope="module")
def split():
    return load_digit_split(DigitsConfig())


# ---------------------------------------------------------------- the recipe is built on the core


def core_functions() -> dict[str, object]:
    """Every public function/class defined in the core modules, by name."""
    out = {}
    for mod in (schedule, precond, solvers, losses, guidance, samplers):
        for name, obj in vars(mod).items():
            if callable(obj) and getattr(obj, "__module__", None) == mod.__name__ and not name.startswith("_"):
                out[name] = obj
    return out


def test_recipe_uses_the_core_objects_and_copies_none():
    core_objs = core_functions()
    used = ["dsm_loss", "ctm_loss", "feature_distance", "adaptive_weight", "EDMDenoiser", "CTMPrecond",
            "sample_ode", "sample_ctm", "classifier_free_guidance"]
    for name in used:
        assert getattr(recipe, name) is core_objs[name], name
    assert recipe.schedule is schedule and recipe.losses is losses
    tree = ast.parse((ROOT / "recipes" / "train_image.py").read_text())
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert not defined & set(core_objs), f"recipe redefines core functions {defined & set(core_objs)}"
    assert recipe.make_distance(recipe.CTMConfig(distance="pseudo_huber")) is losses.pseudo_huber_distance
    assert core.losses is losses


# ---------------------------------------------------------------- data


def test_digit_split_is_stratified_disjoint_and_scaled(split):
    assert len(split.train_y) + len(split.test_y) == 1797
    assert split.train_x.shape[1:] == (1, 8, 8)
    assert split.train_x.min() == -1 and split.train_x.max() == 1
    for c in range(10):
        frac = (split.test_y == c).sum() / ((split.test_y == c).sum() + (split.train_y == c).sum())
        assert abs(float(frac) - 0.3) < 0.01
    rows = {tuple(x.flatten().tolist()) for x in split.test_x}
    assert len(rows & {tuple(x.flatten().tolist()) for x in split.train_x}) < 5  # (a few duplicate images exist)
    mask = stratified_holdout(torch.arange(20) % 2, 0.5, seed=1)
    assert mask.sum() == 10 and mask[::2].sum() == 5
    assert to_unit_range(torch.full((2, 8, 8), 16.0), 16).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="holdout"):
        stratified_holdout(torch.arange(4), 1.0, 0)
    with pytest.raises(ValueError, match="size"):
        to_unit_range(torch.zeros(1, 8, 8), 12)


# ---------------------------------------------------------------- image UNet


def randomised(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every weight so zero-initialised layers are not trivially zero (except the student's s branch)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net


def test_student_equals_teacher_at_init():
    teacher = randomised(ImageUNet(TINY))
    student = ImageUNet.two_time_from(teacher)
    D = precond.EDMDenoiser(teacher, TINY.sigma_data)
    G = precond.CTMPrecond(student, TINY.sigma_data)
    x = torch.randn(6, 1, 8, 8) * 3
    t = torch.tensor([0.01, 0.1, 1.0, 5.0, 20.0, 80.0])
    s = t * torch.rand(6)
    labels = torch.tensor([0, 3, 5, 9, 10, 2])
    torch.testing.assert_close(G.g(x, t, s, labels=labels), D(x, t, labels=labels), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(G.denoiser()(x, t, labels=labels), D(x, t, labels=labels))
    torch.testing.assert_close(G(x, t, t, labels=labels), x)
    with torch.no_grad():
        student.s_emb[-1].weight.normal_()
    assert not torch.allclose(G.g(x, t, s, labels=labels), D(x, t, labels=labels), atol=1e-3)


def test_image_unet_labels_shapes_and_roundtrip(tmp_path):
    net = randomised(ImageUNet(TINY)).eval()
    x, c = torch.randn(4, 1, 8, 8), torch.randn(4)
    out = net(x, c, labels=torch.tensor([1, 2, 3, 4]))
    assert out.shape == x.shape
    assert not torch.allclose(out, net(x, c, labels=torch.tensor([5, 6, 7, 8])))
    torch.testing.assert_close(net(x, c), net(x, c, labels=net.null_labels(4)))
    loaded = ImageUNet.from_pretrained(net.save_pretrained(tmp_path / "unet"))
    assert loaded.config == net.config
    torch.testing.assert_close(loaded(x, c), net(x, c))
    big = ImageUNet(ImageUNetConfig(size=16, base=8, mults=(1, 2, 2), groups=4))
    assert big(torch.randn(2, 1, 16, 16), torch.randn(2)).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="size"):
        ImageUNetConfig(size=6, mults=(1, 2, 2))
    with pytest.raises(ValueError, match="c_noise_s"):
        ImageUNet.two_time_from(net)(x, c)
    with pytest.raises(FileNotFoundError):
        ImageUNet.from_pretrained(tmp_path / "missing")


def test_cfg_teacher_mixes_conditional_and_null_outputs():
    net = randomised(ImageUNet(TINY)).eval()
    x, sigma, labels = torch.randn(3, 1, 8, 8), torch.full((3,), 2.0), torch.tensor([1, 4, 7])
    D = precond.EDMDenoiser(net, TINY.sigma_data)
    with torch.no_grad():
        d_c, d_u = D(x, sigma, labels=labels), D(x, sigma, labels=net.null_labels(3))
        guided = recipe.teacher_denoiser(net, 3.0)(x, sigma, labels=labels)
    torch.testing.assert_close(guided, d_u + 3.0 * (d_c - d_u), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- classifier and metrics


def test_committed_classifier_reaches_high_heldout_accuracy(split):
    clf = DigitClassifier.from_pretrained(CLASSIFIER)
    assert classifier_accuracy(clf, split.test_x, split.test_y) > 0.97


def test_classifier_trains_to_high_heldout_accuracy_quickly(split):
    clf = train_digit_classifier(split.train_x, split.train_y, training=ClassifierTraining(steps=200))
    assert classifier_accuracy(clf, split.test_x, split.test_y) > 0.93


def test_frechet_floor_is_far_below_noise_and_grows_with_corruption(split):
    clf = DigitClassifier.from_pretrained(CLASSIFIER)
    ref = digit_features(clf, split.train_x)
    floor = score_digits(clf, split.test_x, ref, split.test_y).frechet
    noisy = score_digits(clf, split.test_x + 0.3 * torch.randn_like(split.test_x), ref).frechet
    noise = score_digits(clf, torch.rand_like(split.test_x) * 2 - 1, ref).frechet
    assert floor < noisy < noise and floor < 0.05 * noise
    wrong = score_digits(clf, split.test_x, ref, (split.test_y + 1) % 10)
    assert wrong.accuracy < 0.05 and wrong.n == len(split.test_y)


def test_random_shift_moves_content_and_pads_with_background():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).expand(50, 1, 4, 4)
    y = random_shift(x, 1, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    sums = {float(v.sum()) for v in y}
    assert len(sums) > 3  # different offsets
    for v in y:  # each output is a shifted window of the background-padded image
        padded = torch.nn.functional.pad(x[0], [1] * 4, value=-1.0)
        assert any(torch.equal(v, padded[:, i:i + 4, j:j + 4]) for i in range(3) for j in range(3))


# ---------------------------------------------------------------- short runs through the shared loop


def tiny_args(tmp_path: Path, mode: str, **extra) -> list[str]:
    sets = {"mode": mode, "train.steps": 30, "train.batch_size": 32, "train.lr": 3e-3, "train.log_every": 10,
            "train.ckpt_every": 1000, "train.out_dir": str(tmp_path / mode), "train.progress": False,
            "train.tensorboard": False, "train.cpu": True, "model.base": 8, "model.emb_dim": 32,
            "model.n_freqs": 8, "model.groups": 4, "model.sigma_data": 0.75, **extra}
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def fixed_dsm_loss(net: ImageUNet, split, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    x0, labels = split.train_x[:256], split.train_y[:256]
    sigma = schedule.sample_lognormal(256, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        return float(losses.dsm_loss(precond.EDMDenoiser(net, 0.75), x0, sigma, noise, 0.75, labels=labels).mean())


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    assert recipe.main(tiny_args(out, "teacher", **{"train.ema_decays": "[0.0]"})) == 0
    return out / "teacher" / "model"


def test_teacher_mode_decreases_the_dsm_loss(tiny_teacher, split):
    trained = ImageUNet.from_pretrained(tiny_teacher)
    torch.manual_seed(0)
    untrained = ImageUNet(trained.config)
    assert fixed_dsm_loss(trained, split) < 0.8 * fixed_dsm_loss(untrained, split)
    provenance = json.loads((tiny_teacher / "provenance.json").read_text())
    assert provenance["metrics"]["train_seconds"] > 0 and provenance["data"]["holdout"] == 0.3


def test_ctm_mode_runs_end_to_end_with_classifier_distance(tiny_teacher, tmp_path):
    args = tiny_args(tmp_path, "ctm", **{"train.steps": 12, "train.log_every": 4, "train.batch_size": 16,
                                         "train.ema_decays": "[0.9]",
                                         "ctm.teacher": str(tiny_teacher), "ctm.target_decay": 0.9,
                                         "ctm.distance": "classifier", "ctm.classifier": str(CLASSIFIER),
                                         "ctm.grid": 8, "ctm.dsm_weight": 1.0})
    assert recipe.main(args) == 0
    student = ImageUNet.from_pretrained(tmp_path / "ctm" / "model")
    assert student.config.two_time
    logs = [json.loads(line) for line in (tmp_path / "ctm" / "logs" / "metrics.jsonl").read_text().splitlines()]
    ctm = [r["train/ctm"] for r in logs if "train/ctm" in r]
    assert len(ctm) == 3 and all(v >= 0 for v in ctm) and all(r["train/dsm_weight"] > 0 for r in logs)
    assert ctm[-1] < ctm[0]
    x_T = recipe.initial_noise(10, student.config, 0)
    x = recipe.ctm_samples(student, x_T, torch.arange(10), 2, 0.5)
    assert x.shape == (10, 1, 8, 8) and torch.isfinite(x).all()


def test_bad_config_exits_2_with_a_message(capsys, tmp_path):
    assert recipe.main(tiny_args(tmp_path, "ctm")) == 2
    assert "ctm.teacher" in capsys.readouterr().err
    assert recipe.main(tiny_args(tmp_path, "ctm", **{"ctm.teacher": "x", "ctm.distance": "lpips"})) == 2
    assert "ctm.distance" in capsys.readouterr().err
    assert recipe.main(tiny_args(tmp_path, "gan")) == 2
    assert "mode" in capsys.readouterr().err
    assert recipe.main(tiny_args(tmp_path, "ctm", **{"ctm.teacher": str(tmp_path / "none"),
                                                     "train.ema_decays": "[0.99]"})) == 2
    assert "not a model directory" in capsys.readouterr().err


def test_committed_ctm_student_beats_its_initialisation_in_one_step(split):
    """The distilled student's 1-step samples are far closer to the data than its initial (teacher-copy) jump."""
    clf = DigitClassifier.from_pretrained(CLASSIFIER)
    student = ImageUNet.from_pretrained(ROOT / "soundctm/pretrained/digits/ctm_l2")
    initial = ImageUNet.two_time_from(ImageUNet.from_pretrained(ROOT / "soundctm/pretrained/digits/teacher"))
    ref, labels = digit_features(clf, split.train_x), split.test_y[:300]
    x_T = recipe.initial_noise(len(labels), student.config, 0)
    trained = score_digits(clf, recipe.ctm_samples(student, x_T, labels, 1, 0.0), ref, labels)
    untrained = score_digits(clf, recipe.ctm_samples(initial, x_T, labels, 1, 0.0), ref, labels)
    assert trained.accuracy > 0.9
    assert trained.frechet < 0.25 * untrained.frechet


def test_ctm_label_dropout_gives_the_student_and_the_teacher_the_null_label(tiny_teacher):
    """ctm.label_dropout = 0.5: about half the labels reaching the student and the teacher's target solve are the null
    label (the same ones for both); at 0 none are, and no random number is drawn for them."""
    seen = {"student": [], "teacher": []}

    class Spy(torch.nn.Module):
        def __init__(self, net, name):
            super().__init__()
            self.net, self.name, self.config = net, name, net.config
            self.null_labels = net.null_labels

        def forward(self, *args, labels=None, **kw):
            seen[self.name].append(labels.clone())
            return self.net(*args, labels=labels, **kw)

    def labels_seen(p):
        cfg = recipe.ImageRecipeConfig(mode="ctm", train=recipe.TrainConfig(ema_decays=(0.99,)),
                                       ctm=recipe.CTMConfig(teacher=tiny_teacher, label_dropout=p, target_decay=0.99))
        models, loss_fn = recipe.build_models(cfg)
        models = {"student": Spy(models["student"], "student"), "teacher": Spy(models["teacher"], "teacher"),
                  "student_ema0.99": models["student"]}
        for v in seen.values():
            v.clear()
        batch = (torch.zeros(400, 1, 8, 8), torch.arange(400) % 10)
        loss_fn(batch, models, 0, torch.Generator().manual_seed(0))
        return seen["student"][0], seen["teacher"][0][:400]

    student, teacher = labels_seen(0.5)
    null = recipe.ImageRecipeConfig().model.num_classes
    assert 0.4 < (student == null).float().mean() < 0.6 and torch.equal(student, teacher)
    student, _ = labels_seen(0.0)
    assert not (student == null).any()
