"""The shared training loop: exact resume, grad accumulation, warm-up, EMA, data order, throughput, export."""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from recipes import train_toy_regression as toy
from soundctm.train import TrainConfig, Trainer, ema_key, load_exported_weights
from soundctm.train.data import ResumableBatchSampler
from soundctm.train.ema import EMA, ema_update
from soundctm.train.export import read_provenance, state_digest
from soundctm.train.logging import read_metrics
from soundctm.train.optim import warmup_lr
from soundctm.train.seeding import seed_micro_step, step_seed

ROOT = Path(__file__).resolve().parents[1]

SMALL = toy.ModelConfig(in_dim=4, hidden=16, depth=2, dropout=0.2)


def train_cfg(out_dir: Path, **kw) -> TrainConfig:
    base = dict(steps=12, batch_size=8, grad_accum=2, lr=1e-2, warmup_steps=3, ema_decays=(0.9, 0.99),
                ckpt_every=4, keep_last=0, log_every=2, seed=7, out_dir=out_dir, progress=False,
                tensorboard=False, cpu=True)
    return TrainConfig(**{**base, **kw})


def snapshot(trainer: Trainer) -> dict:
    """Copies of the net weights, EMA weights and optimizer state after training."""
    opt = trainer.optimizer.state_dict()
    return {
        "net": {k: v.clone() for k, v in trainer.unwrapped("net").state_dict().items()},
        "ema": {k: v.clone() for k, v in trainer.ema.state_dict().items()},
        "opt_state": state_digest(opt["state"]),
        "opt_groups": [{k: v for k, v in g.items() if k != "params"} for g in opt["param_groups"]],
    }


def run_toy(cfg: TrainConfig, model_cfg=SMALL, data=None, jitter=0.01, **fit_kw) -> tuple[dict, Trainer]:
    with Trainer(cfg) as trainer:
        data = toy.make_dataset(toy.DataConfig(num_items=40), model_cfg.in_dim) if data is None else data
        trainer.fit({"net": toy.MLP(model_cfg)}, toy.make_loss_fn(0.9, jitter), data, **fit_kw)
        return snapshot(trainer), trainer


def assert_bitwise_equal(a: dict, b: dict) -> None:
    for part in ("net", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}/{key} differs"
    assert a["opt_state"] == b["opt_state"] and a["opt_groups"] == b["opt_groups"]


def test_resume_is_bitwise_exact(tmp_path):
    """12 steps straight == 6 steps + resume + 6 steps (dropout, input jitter, grad accumulation, 2 EMAs)."""
    straight, _ = run_toy(train_cfg(tmp_path / "a"))
    half, _ = run_toy(train_cfg(tmp_path / "b", steps=6))
    resumed, trainer = run_toy(train_cfg(tmp_path / "b", resume="latest"))
    assert trainer.step == 12 and trainer.micro_step == 24
    assert_bitwise_equal(straight, resumed)
    assert not torch.equal(half["net"]["net.0.weight"], resumed["net"]["net.0.weight"])
    assert not torch.equal(resumed["ema"]["net_ema0.9/net.0.weight"], resumed["net"]["net.0.weight"])


def test_resume_is_exact_for_procedural_streams(tmp_path):
    """A callable stream data(start, rank, world) resumes exactly too."""

    def stream(start, rank, world):
        step = start
        while True:
            g = torch.Generator().manual_seed(1000 + step)
            x = torch.randn(8, 4, generator=g)[rank * 8 // world:(rank + 1) * 8 // world]
            yield x, x.sum(1, keepdim=True).sin()
            step += 1

    straight, _ = run_toy(train_cfg(tmp_path / "a", steps=8), data=stream)
    run_toy(train_cfg(tmp_path / "b", steps=3), data=stream)
    resumed, _ = run_toy(train_cfg(tmp_path / "b", steps=8, resume="latest"), data=stream)
    assert_bitwise_equal(straight, resumed)


def test_grad_accumulation_matches_large_batch(tmp_path):
    """batch 8 × accum 2 sees the same 16 samples per step as batch 16 × accum 1: same weights (fp rounding)."""
    no_dropout = toy.ModelConfig(in_dim=4, hidden=16, depth=2, dropout=0.0)
    accum, _ = run_toy(train_cfg(tmp_path / "a", steps=6), no_dropout, jitter=0.0)
    big, _ = run_toy(train_cfg(tmp_path / "b", steps=6, batch_size=16, grad_accum=1), no_dropout, jitter=0.0)
    for key in accum["net"]:
        torch.testing.assert_close(accum["net"][key], big["net"][key], atol=1e-6, rtol=1e-5)


def test_warmup_lr_closed_form_and_logged(tmp_path):
    assert [warmup_lr(s, 1.0, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_lr(0, 3e-4, 0) == 3e-4
    run_toy(train_cfg(tmp_path, steps=6, log_every=1))
    logged = {row["step"]: row["train/lr"] for row in read_metrics(tmp_path / "logs")}
    assert logged == pytest.approx({s + 1: 1e-2 * min(1, (s + 1) / 3) for s in range(6)})


def test_ema_update_closed_form():
    """After k updates towards a fixed θ: θ_ema = θ + β^k (θ_ema,0 − θ)."""
    model, start = nn.Linear(3, 2), nn.Linear(3, 2)
    ema = EMA({"m": start}, (0.9,))
    theta0 = ema.tracks["m_ema0.9"].module.weight.clone()
    for _ in range(5):
        ema.update({"m": model})
    expected = model.weight + 0.9**5 * (theta0 - model.weight)
    torch.testing.assert_close(ema.modules()["m_ema0.9"].weight, expected)
    assert not any(p.requires_grad for p in ema.modules()["m_ema0.9"].parameters())
    ema_update(start, model, 0.0)
    assert torch.equal(start.weight, model.weight)


def test_ema_warmup_forgets_the_init():
    """With warm-up the init's share after k updates is Π_n min(β, (1+n)/(10+n)) ≪ β^k."""
    from soundctm.train.ema import warmup_decay

    assert warmup_decay(0.999, 0) == pytest.approx(0.1) and warmup_decay(0.999, 10**6) == 0.999
    model, start = nn.Linear(3, 2), nn.Linear(3, 2)
    ema = EMA({"m": start}, (0.999,))
    theta0 = ema.tracks["m_ema0.999"].module.weight.clone()
    k = 50
    for n in range(k):
        ema.update({"m": model}, step=n)
    share = float(np.prod([warmup_decay(0.999, n) for n in range(k)]))
    assert share < 1e-9 and 0.999**k > 0.9
    expected = model.weight + share * (theta0 - model.weight)
    torch.testing.assert_close(ema.modules()["m_ema0.999"].weight, expected)


def test_ema_is_in_model_dict_and_tracks_weights(tmp_path):
    """The loss reads models['net_ema0.9'] every step; after the run it equals the EMA recursion."""
    seen = []

    def loss_fn(batch, models, step, rng):
        seen.append(models[ema_key("net", 0.9)].weight.detach().clone())
        return ((models["net"](batch[0]) - batch[1]) ** 2).mean(), {}

    cfg = train_cfg(tmp_path, steps=5, grad_accum=1, ema_decays=(0.9,))
    x = torch.randn(40, 4)
    with Trainer(cfg) as trainer:
        net = nn.Linear(4, 1)
        initial = net.weight.detach().clone()
        trainer.fit({"net": net}, loss_fn, torch.utils.data.TensorDataset(x, x[:, :1]))
        final_ema = trainer.models["net_ema0.9"].weight.detach().clone()
        final_net = trainer.unwrapped("net").weight.detach().clone()
    # seen[k] is the EMA read by the loss at step k; seen[0] is the initial net (a copy made before training)
    assert len(seen) == 5 and torch.equal(seen[0], initial) and not torch.equal(seen[0], seen[-1])
    torch.testing.assert_close(final_ema, 0.9 * seen[-1] + 0.1 * final_net)


def test_batch_sampler_epochs_shards_and_offsets():
    full = ResumableBatchSampler(10, 4, seed=3)
    stream = [i for step in range(5) for i in full.global_batch(step)]  # 20 positions = 2 epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:]
    shards = [ResumableBatchSampler(10, 4, seed=3, start=2, rank=r, world_size=2) for r in range(2)]
    first = [next(iter(s)) for s in shards]
    assert first[0] + first[1] == full.global_batch(2)
    with pytest.raises(ValueError, match="divisible"):
        ResumableBatchSampler(10, 5, seed=3, world_size=2)


def draws(seed: int, micro_step: int, rank: int) -> tuple:
    """One draw from every generator after reseeding for (seed, micro_step, rank)."""
    import random

    import numpy as np

    g = seed_micro_step(seed, micro_step, rank, torch.device("cpu"))
    return random.random(), float(np.random.rand()), float(torch.rand(())), float(torch.rand((), generator=g))


def test_micro_step_seeding_is_a_function_of_seed_step_rank():
    assert draws(1, 5, 0) == draws(1, 5, 0)
    assert len({draws(1, 5, 0), draws(1, 6, 0), draws(1, 5, 1), draws(2, 5, 0)}) == 4
    assert len({step_seed(s, k, r) for s in range(3) for k in range(100) for r in range(4)}) == 1200
    assert all(0 <= step_seed(s, 7, 0) < 2**63 for s in range(10))


class SlowDataset(torch.utils.data.Dataset):
    """Every item costs ``delay`` seconds."""

    def __init__(self, delay: float):
        self.delay, self.x = delay, torch.randn(64, 4)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        time.sleep(self.delay)
        return self.x[i], self.x[i, :1]


def test_throughput_accounting_sees_slow_data(tmp_path):
    """8 items × 5 ms per micro-batch dominate a tiny MLP step: data wait share > 50 %, steps/s < 25."""
    cfg = train_cfg(tmp_path, steps=8, batch_size=8, grad_accum=1, log_every=4, ckpt_every=100)
    run_toy(cfg, data=SlowDataset(0.005))
    rows = read_metrics(tmp_path / "logs")
    assert [r["step"] for r in rows] == [4, 8]
    for row in rows:
        assert 0.5 < row["perf/data_wait_frac"] <= 1.0
        assert 0 < row["perf/steps_per_s"] < 25
        assert row["perf/samples_per_s"] == pytest.approx(8 * row["perf/steps_per_s"])


def test_export_writes_ema_weights_config_and_provenance(tmp_path):
    with Trainer(train_cfg(tmp_path / "run", steps=4)) as trainer:
        trainer.fit({"net": toy.MLP(SMALL)}, toy.make_loss_fn(0.9), toy.make_dataset(toy.DataConfig(40), 4))
        out = trainer.export(tmp_path / "model", config=SMALL, data={"name": "toy"}, metrics={"fd": 1.5})
        raw = trainer.export(tmp_path / "raw", ema=False, config=SMALL)
        ema99 = trainer.models["net_ema0.99"].state_dict()
        ema9 = trainer.models["net_ema0.9"].state_dict()
        net = trainer.unwrapped("net").state_dict()
    loaded = load_exported_weights(toy.MLP(SMALL), out).state_dict()
    assert all(torch.equal(loaded[k], ema9[k]) for k in ema9)
    assert not all(torch.equal(loaded[k], ema99[k]) for k in ema99)
    assert all(torch.equal(load_file(raw / "model.safetensors")[k], net[k]) for k in net)
    prov = read_provenance(out)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert prov["git_commit"] == head and prov["weights"] == "ema0.9" and prov["step"] == 4
    assert prov["weights_sha256"] == state_digest(ema9)
    assert prov["config"]["steps"] == 4 and prov["data"] == {"name": "toy"} and prov["metrics"]["fd"] == 1.5
    assert "train/loss" in prov["metrics"] and prov["command"]
    assert (out / "config.json").read_text().count('"hidden": 16') == 1


def test_sample_fn_runs_in_eval_mode_at_its_steps(tmp_path):
    calls = []

    def sample_fn(models, step, logger):
        calls.append((step, models["net"].training, torch.is_grad_enabled()))
        logger.image("digits", torch.rand(8, 8), step)
        logger.audio("tone", torch.sin(torch.arange(1600) * 0.3), 16000, step)

    run_toy(train_cfg(tmp_path, steps=6, sample_every=3, tensorboard=True), sample_fn=sample_fn)
    assert calls == [(3, False, False), (6, False, False)]
    assert list((tmp_path / "logs" / "tensorboard").glob("events.out.tfevents.*"))


def test_nan_loss_stops_after_max_nonfinite_steps_and_existing_run_needs_resume(tmp_path):
    def nan_loss(batch, models, step, rng):
        return models["net"](batch[0]).sum() * float("nan"), {}

    with Trainer(train_cfg(tmp_path / "nan", steps=4, max_nonfinite_steps=2)) as trainer:
        with pytest.raises(FloatingPointError, match="2 non-finite steps in a row, the last at step 2"), \
                pytest.warns(UserWarning, match="non-finite loss or gradients, step skipped"):
            trainer.fit({"net": toy.MLP(SMALL)}, nan_loss, toy.make_dataset(toy.DataConfig(40), 4))
        assert all(torch.isfinite(p).all() for p in trainer.unwrapped("net").parameters())
    run_toy(train_cfg(tmp_path / "done", steps=4))
    with pytest.raises(ValueError, match="train.resume=latest"):
        run_toy(train_cfg(tmp_path / "done", steps=8))
    with pytest.raises(ValueError, match="trainable"):
        with Trainer(train_cfg(tmp_path / "x")) as trainer:
            trainer.fit({"net": toy.MLP(SMALL)}, nan_loss, [], trainable=["student"])
    with pytest.raises(ValueError, match="max_nonfinite_steps"):
        train_cfg(tmp_path / "y", max_nonfinite_steps=0)


def test_a_non_finite_step_is_skipped_counted_and_leaves_weights_and_ema_untouched(tmp_path):
    """A NaN loss at step 3 (of 6) neither moves the weights nor the EMA; the run goes on, logs
    train/skipped_steps = 1, and its checkpoints and export hold finite values only."""
    base = toy.make_loss_fn(0.9, 0.01)
    seen = []

    def loss_fn(batch, models, step, rng):
        seen.append((step, [p.detach().clone() for p in models["net"].parameters()],
                     [p.detach().clone() for p in models["net_ema0.9"].parameters()]))
        loss, logs = base(batch, models, step, rng)
        return (loss * float("nan") if step == 2 else loss), logs

    cfg = train_cfg(tmp_path, steps=6, grad_accum=1, ckpt_every=2, log_every=1)
    with pytest.warns(UserWarning, match="step 3: non-finite"):
        with Trainer(cfg) as trainer:
            trainer.fit({"net": toy.MLP(SMALL)}, loss_fn, toy.make_dataset(toy.DataConfig(40), 4))
            trainer.export(tmp_path / "model", "net")
    before, after = seen[2], seen[3]  # the calls at steps 2 (the NaN step) and 3
    assert all(torch.equal(a, b) for a, b in zip(before[1], after[1]))
    assert all(torch.equal(a, b) for a, b in zip(before[2], after[2]))
    assert not all(torch.equal(a, b) for a, b in zip(seen[3][1], seen[4][1]))  # later steps train again
    rows = read_metrics(tmp_path / "logs")
    assert [r.get("train/skipped_steps", 0) for r in rows] == [0, 0, 1, 1, 1, 1]
    assert all(math.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
    weights = load_file(tmp_path / "model" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_a_checkpoint_or_export_holding_non_finite_weights_is_refused(tmp_path):
    cfg = train_cfg(tmp_path, steps=2, grad_accum=1, ckpt_every=2)
    with Trainer(cfg) as trainer:
        trainer.fit({"net": toy.MLP(SMALL)}, toy.make_loss_fn(0.9, 0.01), toy.make_dataset(toy.DataConfig(40), 4))
        kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
        with torch.no_grad():
            next(trainer.unwrapped("net").parameters()).view(-1)[0] = float("nan")
        trainer.step = 3
        with pytest.raises(FloatingPointError, match="not writing a checkpoint at step 3: net"):
            trainer.save_checkpoint()
        assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == kept
        with pytest.raises(FloatingPointError, match="an export"):
            trainer.export(tmp_path / "model", "net", ema=False)
        assert not (tmp_path / "model").exists()


def test_bf16_autocasts_the_loss_and_keeps_fp32_weights(tmp_path):
    dtypes = []

    def loss_fn(batch, models, step, rng):
        dtypes.append(models["net_ema0.9"](batch[0]).dtype)  # unprepared modules run under autocast too
        return ((models["net"](batch[0]) - batch[1]) ** 2).mean(), {}

    with Trainer(train_cfg(tmp_path, steps=2, grad_accum=1, mixed_precision="bf16")) as trainer:
        trainer.fit({"net": toy.MLP(SMALL)}, loss_fn, toy.make_dataset(toy.DataConfig(40), 4))
        assert dtypes == [torch.bfloat16, torch.bfloat16]
        assert all(p.dtype == torch.float32 for p in trainer.models["net_ema0.9"].parameters())
        assert all(p.dtype == torch.float32 for p in trainer.unwrapped("net").parameters())


def test_train_cli_runs_a_registered_recipe(tmp_path, capsys):
    from soundctm.train import cli

    assert cli.recipe_path("toy-regression").is_file()
    assert cli.main(["nope"]) == 2 and "unknown recipe 'nope'" in capsys.readouterr().err
    out = tmp_path / "run"
    sets = [f"train.out_dir={out}", "train.steps=3", "train.progress=false", "train.tensorboard=false",
            "data.num_items=64"]
    assert cli.main(["toy-regression", *[a for s in sets for a in ("--set", s)]]) == 0
    assert (out / "checkpoints" / "ckpt-000003").is_dir() and (out / "model" / "provenance.json").is_file()
    assert cli.main(["toy-regression", "--set", "train.steps=-1"]) == 2
    assert "steps must be >= 1" in capsys.readouterr().err


def seeded_linear(seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(4, 1)


def loss_a(batch, models, step, rng):
    """Depends on both models: its backward leaks gradients into b."""
    x = batch[0] + 0.1 * torch.randn(batch[0].shape, generator=rng)
    return ((models["a"](x) + models["b"](x)) ** 2).mean(), {}


def loss_b(batch, models, step, rng):
    return ((models["b"](batch[0]) - 1) ** 2).mean(), {"train/b_mean": models["b"](batch[0]).mean()}


def fit_groups(cfg: TrainConfig) -> tuple[dict, Trainer]:
    data = torch.utils.data.TensorDataset(torch.randn(40, 4, generator=torch.Generator().manual_seed(5)))
    with Trainer(cfg) as trainer:
        trainer.fit({"a": seeded_linear(1), "b": seeded_linear(2)}, {"a": loss_a, "b": loss_b}, data,
                    trainable={"a": ["a"], "b": ["b"]}, ema_models=["a"])
        state = {name: {k: v.clone() for k, v in trainer.unwrapped(name).state_dict().items()} for name in "ab"}
        state["ema"] = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
        state["opt"] = [state_digest(o.state_dict()["state"]) for o in trainer.optimizers.values()]
        return state, trainer


def test_optimizer_groups_are_isolated(tmp_path):
    """b trained next to a (whose loss leaks gradients into b) ends bit-identical to b trained alone."""
    two, trainer = fit_groups(train_cfg(tmp_path / "two", steps=6))
    assert sorted(trainer.models) == ["a", "a_ema0.9", "a_ema0.99", "b"]
    data = torch.utils.data.TensorDataset(torch.randn(40, 4, generator=torch.Generator().manual_seed(5)))
    with Trainer(train_cfg(tmp_path / "one", steps=6)) as alone:
        alone.fit({"b": seeded_linear(2)}, loss_b, data)
        b_alone = alone.unwrapped("b").state_dict()
    assert all(torch.equal(two["b"][k], b_alone[k]) for k in b_alone)
    row = read_metrics(tmp_path / "two" / "logs")[-1]
    assert {"train/loss/a", "train/loss/b", "train/grad_norm/a", "train/grad_norm/b", "train/b_mean"} <= set(row)


def test_optimizer_groups_resume_exactly(tmp_path):
    straight, _ = fit_groups(train_cfg(tmp_path / "a", steps=8))
    fit_groups(train_cfg(tmp_path / "b", steps=4))
    resumed, _ = fit_groups(train_cfg(tmp_path / "b", steps=8, resume="latest"))
    for part in ("a", "b", "ema"):
        assert all(torch.equal(straight[part][k], resumed[part][k]) for k in straight[part]), part
    assert straight["opt"] == resumed["opt"]


def test_optimizer_group_errors(tmp_path):
    with Trainer(train_cfg(tmp_path)) as trainer:
        models = {"a": seeded_linear(1), "b": seeded_linear(2)}
        with pytest.raises(ValueError, match="one non-empty group"):
            trainer.fit(models, {"a": loss_a, "b": loss_b}, [], trainable={"a": ["a", "b"], "b": ["b"]})
        with pytest.raises(ValueError, match="dict with keys \\['a', 'b'\\]"):
            trainer.fit(models, loss_a, [], trainable={"a": ["a"], "b": ["b"]})
        with pytest.raises(ValueError, match="ema_models"):
            trainer.fit(models, loss_a, [], trainable=["a"], ema_models=["b"])


def test_lr_scales_multiply_the_learning_rate_of_named_parameters(tmp_path):
    """Adam's first update moves every weight by ≈ lr·sign(g): 10× further under a 10× lr_scale prefix."""
    model_cfg = toy.ModelConfig(in_dim=4, hidden=16, depth=2, dropout=0.0)
    init = toy.MLP(model_cfg).state_dict()
    cfg = train_cfg(tmp_path, steps=1, grad_accum=1, warmup_steps=0, ema_decays=(0.9,), lr=1e-3,
                    lr_scales={"net.net.0": 10.0})
    torch.manual_seed(0)
    with Trainer(cfg) as trainer:
        model = toy.MLP(model_cfg)
        model.load_state_dict(init)
        trainer.fit({"net": model}, toy.make_loss_fn(0.9, 0.0),
                    toy.make_dataset(toy.DataConfig(num_items=40), model_cfg.in_dim))
        after = trainer.unwrapped("net").state_dict()
        scales = sorted(g["lr_scale"] for g in trainer.optimizer.param_groups)
    step = {k: (after[k] - init[k]).abs().max().item() for k in init}
    assert step["net.0.weight"] == pytest.approx(1e-2, rel=0.05)
    assert step["net.0.bias"] == pytest.approx(1e-2, rel=0.05)
    others = [v for k, v in step.items() if not k.startswith("net.0.")]
    assert others and max(others) == pytest.approx(1e-3, rel=0.05)
    assert scales == [1.0, 1.0, 10.0, 10.0]  # decay/no-decay × scaled/unscaled


def test_lr_scales_reject_unknown_names_and_bad_values(tmp_path):
    from soundctm.train.optim import lr_scale_of, param_groups

    assert lr_scale_of("net.a.b", {"net.a": 2.0, "net.a.b": 3.0}) == 3.0  # longest prefix wins
    assert lr_scale_of("net.ab", {"net.a": 2.0}) == 1.0  # prefixes match whole dotted parts
    mlp = {"net": toy.MLP(SMALL)}
    with pytest.raises(ValueError, match="lr_scales key 'net.nope' names no trainable parameter"):
        param_groups(mlp, 0.0, {"net.nope": 2.0})
    with pytest.raises(ValueError, match=r"lr_scales\['net.net.0'\] must be a number > 0"):
        param_groups(mlp, 0.0, {"net.net.0": 0.0})
    with Trainer(train_cfg(tmp_path, lr_scales={"other.weight": 2.0})) as trainer:
        with pytest.raises(ValueError, match="lr_scales keys \\['other.weight'\\] name no trained model"):
            trainer.fit(mlp, toy.make_loss_fn(0.9, 0.0), [])


def test_scheduled_lr_anneals_after_decay_start(tmp_path):
    from soundctm.train.optim import scheduled_lr

    assert [scheduled_lr(s, 1.0, 0, "linear", 2, 6) for s in range(7)] == [1, 1, 1, 0.75, 0.5, 0.25, 0]
    cos = [scheduled_lr(s, 1.0, 0, "cosine", 0, 4, lr_min=0.2) for s in range(5)]
    assert cos == pytest.approx([1.0, 0.2 + 0.8 * (0.5 + 0.5 * np.cos(np.pi / 4)), 0.6,
                                 0.2 + 0.8 * (0.5 - 0.5 * np.cos(np.pi / 4)), 0.2])
    assert scheduled_lr(1, 1.0, 4, "linear", 3, 10) == 0.5  # warm-up before the decay starts
    with pytest.raises(ValueError, match="lr_decay must be one of"):
        scheduled_lr(0, 1.0, decay="step")
    with pytest.raises(ValueError, match="decay_start must lie in \\[0, steps=12\\)"):
        train_cfg(tmp_path, lr_decay="linear", decay_start=12)
    with pytest.raises(ValueError, match="lr_min must lie in"):
        train_cfg(tmp_path, lr_min=1.0)
    # the loop uses it: logged lr falls linearly to 0 after step 6 of 12 (the lr of step n is logged at n + 1)
    run_toy(train_cfg(tmp_path / "run", warmup_steps=0, log_every=1, lr_decay="linear", decay_start=6))
    logged = {row["step"]: row["train/lr"] for row in read_metrics(tmp_path / "run" / "logs")}
    assert logged[6] == pytest.approx(1e-2) and logged[10] == pytest.approx(1e-2 * 3 / 6)
