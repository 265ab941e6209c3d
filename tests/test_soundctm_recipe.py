import json
import math

import pytest
import torch
from recipe_utils import tiny_cache

from recipes import average_students as avg
from recipes import teacher_pairs, train_soundctm
from soundctm.nn.discriminator import FeatureDiscriminator
from soundctm.nn.unet import UNET_PRESETS, TextUNet, TwoTimeTextUNet, UNetConfig
from soundctm.train import ctm_terms


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctm")
    cache = tiny_cache(root / "cache")
    cfg = UNetConfig.from_dict({**UNET_PRESETS["debug"].__dict__})
    TextUNet.from_config(cfg).save_pretrained(root / "teacher")
    return root, cache


def run(root, cache, name, *extra):
    sets = [f"cache_dir={cache}", f"teacher_dir={root / 'teacher'}", f"train.out_dir={root / name}",
            "train.steps=3", "train.batch_size=4", "train.ckpt_every=3", "train.log_every=1",
            "train.tensorboard=false", "train.progress=false", "ctm.grid_size=6", "ctm.max_k=2", *extra]
    return train_soundctm.main([a for kv in sets for a in ("--set", kv)])


@pytest.mark.parametrize("distance", ["teacher_features", "pseudo_huber"])
def test_distillation_runs_and_exports_a_student(parts, distance):
    root, cache = parts
    assert run(root, cache, distance, f"ctm.distance={distance}") == 0
    student = TwoTimeTextUNet.from_pretrained(root / distance / "student")
    assert student.unet.config.time_cond_proj_dim == 16
    metrics = (root / distance / "logs").glob("*.jsonl")
    assert any(metrics) or (root / distance / "student" / "provenance.json").is_file()


def test_gan_term_runs_and_trains_the_discriminator(parts):
    root, cache = parts
    assert run(root, cache, "gan", "gan.enabled=true", "ctm.distance=l2") == 0
    prov = (root / "gan" / "student" / "provenance.json").read_text()
    assert "gan" in prov


def test_keep_judged_keeps_the_pairs_whose_x0_passes_its_captions_attributes(parts, tmp_path):
    """--keep-judged: each pair's x_0 is judged against the attributes the cache records for its caption; a pair
    whose x_0 is its own caption's clip stays, one whose x_0 is another clip with other judged attributes goes, and
    every per-pair tensor (the path included) is cut alike. A cache without attributes exits 2."""
    import numpy as np

    from soundctm.data import synthcaps as sc
    from soundctm.data.cache import LatentCache, LatentCacheDataset, TextEmbedding
    from soundctm.metrics.synthcaps_judge import JUDGED_ATTRIBUTES, judge_scored

    clips = [sc.make_clip(11, "train", i) for i in range(8)]
    n = len(clips)
    attrs = {k: [c[2][k] for c in clips] for k in clips[0][2]}
    tokens = torch.zeros(n + 1, 2, 4)
    LatentCache(torch.zeros(n, 1, 2, 2), torch.arange(n) + 1, [""] + [c[1] for c in clips],
                TextEmbedding(tokens, torch.ones(n + 1, 2, dtype=torch.bool), tokens.mean(1)), attrs).save(
        tmp_path / "cache")
    data = LatentCacheDataset(tmp_path / "cache")
    table = teacher_pairs.caption_attributes(data)
    assert table[3]["count"] == clips[2][2]["count"] and set(table) == set(range(1, n + 1))

    def judged(wave_of, caption):
        return judge_scored(clips[wave_of][0], 16000, clips[caption - 1][2])

    own = [i for i in range(n) if all(judged(i, i + 1).values())]
    assert len(own) >= n - 1  # the judge recovers generated attributes (tests/test_synthcaps.py)
    # pairs 0..n-1: x_0 = the caption's own clip; pairs n..2n-1: x_0 = the next clip, under the same captions
    wave_of = list(range(n)) + [(i + 1) % n for i in range(n)]
    caption = torch.tensor([i % n + 1 for i in range(2 * n)])
    pairs = {"x_T": torch.randn(2 * n, 1, 2, 2), "x0": torch.tensor(wave_of, dtype=torch.float32)[:, None, None, None]
             .expand(-1, 1, 2, 2).contiguous(), "omega": torch.rand(2 * n), "caption_index": caption,
             "path": torch.randn(2 * n, 3, 1, 2, 2), "path_sigma": torch.tensor([5.0, 1.0, 0.1])}

    def decode(lat):
        return np.stack([clips[int(v)][0] for v in lat[:, 0, 0, 0]])

    keep, rates, prompted = teacher_pairs.judge_pairs(pairs, table, decode, 16000, batch=5)
    scored = [judged(w, int(c)) for w, c in zip(wave_of, caption)]
    expected = [all(v.values()) for v in scored]
    assert prompted == [tuple(sorted(v)) for v in scored]
    assert keep.tolist() == expected and all(keep[i] for i in own)
    assert sum(expected[n:]) <= n // 2  # another clip mostly fails the caption
    assert set(rates) <= set(JUDGED_ATTRIBUTES) and rates["loudness"] < 1.0
    kept = teacher_pairs.keep_rows(pairs, keep)
    assert torch.equal(kept["path"], pairs["path"][keep]) and torch.equal(kept["x_T"], pairs["x_T"][keep])
    assert torch.equal(kept["path_sigma"], pairs["path_sigma"]) and len(kept["omega"]) == int(keep.sum())
    teacher_pairs.save_pairs(pairs, tmp_path / "p.safetensors", {})
    _, cache = parts
    args = ["--keep-judged", str(tmp_path / "p.safetensors"), "--out", str(tmp_path / "k.safetensors")]
    assert teacher_pairs.main(args) == 2  # needs --model and --cache-dir
    assert teacher_pairs.main(["--balance", *args[2:], "--merge", str(tmp_path / "p.safetensors")]) == 2  # no judging
    assert teacher_pairs.main([*args, "--model", str(tmp_path), "--cache-dir", str(cache)]) == 2  # no attributes
    assert not (tmp_path / "k.safetensors").exists()


def test_balance_rows_restores_each_groups_share_of_the_pairs():
    """balance_rows: a group passing at half the best group's rate has its kept rows twice, one at a quarter four
    times, one at a tenth also four (the cap); a group with no kept row stays out; rows are kept rows only, in order;
    keep_rows takes the indices (repeats included)."""
    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 8 + ["d"] * 10 + ["e"] * 2
    keep = torch.tensor([1, 1, 1, 1] + [1, 0, 1, 0] + [0, 1, 0, 0, 0, 0, 1, 0] + [0] * 9 + [1] + [0, 0],
                        dtype=torch.bool)
    rows = teacher_pairs.balance_rows(keep, groups).tolist()
    assert rows == [0, 1, 2, 3, 4, 4, 6, 6, 9, 9, 9, 9, 14, 14, 14, 14, 25, 25, 25, 25]
    assert teacher_pairs.balance_rows(keep, groups, cap=1).tolist() == torch.nonzero(keep).flatten().tolist()
    pairs = {"x0": torch.arange(len(keep)).float(), "path_sigma": torch.tensor([1.0, 0.1])}
    out = teacher_pairs.keep_rows(pairs, torch.tensor(rows))
    assert out["x0"].tolist() == [float(r) for r in rows] and torch.equal(out["path_sigma"], pairs["path_sigma"])
    for bad in (dict(groups=groups[:-1]), dict(groups=groups, cap=0)):
        with pytest.raises(ValueError, match="groups|cap"):
            teacher_pairs.balance_rows(keep, **bad)


def test_bad_arguments_exit_2(parts, capsys):
    root, cache = parts
    assert run(root, cache, "bad", "ctm.distance=cosine") == 2
    assert "ctm.distance" in capsys.readouterr().err
    assert train_soundctm.main(["--set", "teacher_dir=/missing", "--set", f"cache_dir={cache}"]) == 2
    # a rerun into a folder that holds checkpoints, without train.resume, is one line and exit 2 before any work
    capsys.readouterr()
    assert run(root, cache, "rerun", "ctm.distance=l2") == 0
    assert run(root, cache, "rerun", "ctm.distance=l2") == 2
    err = capsys.readouterr().err.strip()
    assert "already holds checkpoints" in err and len(err.splitlines()) == 1
    assert run(root, cache, "rerun", "ctm.distance=l2", "train.resume=latest") == 0


def test_teacher_feature_distance_is_zero_for_identical_inputs_and_differentiable(parts):
    root, _ = parts
    teacher = TextUNet.from_pretrained(root / "teacher").eval().requires_grad_(False)
    feats = ctm_terms.teacher_features(teacher, 0.5)
    x = torch.randn(2, 4, 8, 12, requires_grad=True)
    tokens, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    sigma = torch.full((2,), 0.002)
    from soundctm.core.losses import feature_distance

    d = feature_distance(lambda a, s: feats(a, s, tokens, mask))
    assert torch.allclose(d(x, x.detach(), sigma), torch.zeros(2))
    y = x.detach() + 0.5 * torch.randn_like(x)
    val = d(x, y, sigma).sum()
    val.backward()
    assert val > 0 and x.grad.abs().sum() > 0


def test_teacher_pairs_resume_and_the_one_step_term_pulls_the_jump_to_them(parts, tmp_path):
    """teacher_pairs.py continues an interrupted file with the same draws; the ctm.pairs term, alone (CTM and DSM
    weights off), brings G(x_T, T, σ_min) nearer the teacher's ODE solutions than the untrained student."""
    root, cache = parts
    args = ["--teacher", str(root / "teacher"), "--cache-dir", str(cache), "--steps", "3", "--batch", "3"]
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "a.safetensors"), "--n", "8"]) == 0
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "b.safetensors"), "--n", "3"]) == 0
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "b.safetensors"), "--n", "8"]) == 0
    a, b = (teacher_pairs.load_pairs(tmp_path / f"{n}.safetensors") for n in "ab")
    assert len(a["omega"]) == 8 and all(torch.equal(a[k], b[k]) for k in a)
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "c.safetensors"), "--n", "0"]) == 2
    # another seed draws other pairs; --merge concatenates files in order
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "d.safetensors"), "--n", "3", "--seed", "1"]) == 0
    d = teacher_pairs.load_pairs(tmp_path / "d.safetensors")
    assert not torch.equal(d["x_T"], a["x_T"][:3])
    merge = ["--out", str(tmp_path / "m.safetensors"), "--merge"]
    assert teacher_pairs.main([*merge, str(tmp_path / "a.safetensors"), str(tmp_path / "d.safetensors")]) == 0
    m = teacher_pairs.load_pairs(tmp_path / "m.safetensors")
    assert all(torch.equal(m[k], torch.cat([a[k], d[k]])) for k in a)
    assert teacher_pairs.main([*merge, str(tmp_path / "a.safetensors"), str(tmp_path / "none.safetensors")]) == 2
    assert teacher_pairs.main(["--out", str(tmp_path / "e.safetensors"), "--cache-dir", str(cache)]) == 2

    from soundctm.core.precond import CTMPrecond
    from soundctm.data.cache import LatentCacheDataset

    text = LatentCacheDataset(cache).text

    def pair_error(student_dir):
        net = TwoTimeTextUNet.from_pretrained(student_dir).eval()
        with torch.no_grad():
            out = CTMPrecond(net, 0.5)(a["x_T"], torch.full((8,), 80.0), torch.full((8,), 0.002),
                                       tokens=text.tokens[a["caption_index"]], mask=text.mask[a["caption_index"]],
                                       omega=a["omega"])
        return ((out - a["x0"]) ** 2).mean().item()

    common = [f"ctm.pairs_path={tmp_path / 'a.safetensors'}", "ctm.distance=l2", "ctm.pairs_batch=8",
              "train.steps=40", "train.ckpt_every=40", "train.lr=3e-3", "train.grad_clip=null",
              "train.ema_decays=[0.5]", "ctm.dsm_weight=0"]
    assert run(root, cache, "pairs0", *common, "ctm.pairs_weight=0") == 0
    assert run(root, cache, "pairs", *common, "ctm.pairs_weight=10") == 0
    # θ⁻ = EMA(0.5) of the raw weights: the exported student follows them closely
    assert pair_error(root / "pairs" / "student") < 0.85 * pair_error(root / "pairs0" / "student")
    # the pair term's own distance: l2 on latents under a teacher-feature CTM distance pulls the jump in as well
    feat = [x for x in common if not x.startswith("ctm.distance")]
    assert run(root, cache, "pairs_l2", *feat, "ctm.distance=teacher_features", "ctm.pairs_distance=l2",
               "ctm.pairs_weight=10") == 0
    assert pair_error(root / "pairs_l2" / "student") < 0.85 * pair_error(root / "pairs0" / "student")
    assert run(root, cache, "pairs_bad", "ctm.pairs_path=/missing.safetensors") == 2
    assert run(root, cache, "pairs_bad2", *common, "ctm.pairs_distance=cosine") == 2


def test_teacher_pairs_attributes_draws_only_the_captions_that_prompt_them(parts, tmp_path):
    """--attributes A,B: every solved pair's caption prompts A or B (the cache's attributes decide); names outside
    the judged attributes, a cache without attributes, or attributes no caption prompts exit 2."""
    from soundctm.data.cache import LatentCacheDataset

    root, cache = parts
    n = 16
    caption = [i % 3 + 1 for i in range(n)]  # tiny_cache's caption of sample i
    attrs = {"source": ["rain"] * n, "pitch": [None] * n, "second_source": [None] * n,
             "sweep": ["rising" if c == 1 else None for c in caption],
             "count": [2 if c == 2 else None for c in caption],
             "loudness": [None] * n}
    tagged = tiny_cache(tmp_path / "tagged", n=n, attributes=attrs)
    data = LatentCacheDataset(tagged)
    assert data.caption_index[teacher_pairs.eligible_samples(data, ("sweep",))].unique().tolist() == [1]
    assert len(teacher_pairs.eligible_samples(data, ())) == n
    args = ["--teacher", str(root / "teacher"), "--cache-dir", str(tagged), "--steps", "2", "--batch", "4", "--n", "8"]
    for wanted, captions in (("sweep", {1}), ("sweep,count", {1, 2}), ("family", {1, 2, 3})):
        out = tmp_path / f"{wanted}.safetensors"
        assert teacher_pairs.main([*args, "--attributes", wanted, "--out", str(out)]) == 0
        assert set(teacher_pairs.load_pairs(out)["caption_index"].tolist()) == captions
    more = ["--n", "12", "--out", str(tmp_path / "sweep.safetensors")]
    assert teacher_pairs.main([*args, *more, "--attributes", "count"]) == 2  # resumed with other attributes
    assert teacher_pairs.main([*args, *more, "--attributes", "sweep"]) == 0
    assert teacher_pairs.load_pairs(tmp_path / "sweep.safetensors")["caption_index"].tolist() == [1] * 12
    for bad, cache_dir in (("fade", tagged), ("pitch", tagged), ("sweep", cache)):
        out = tmp_path / "bad.safetensors"
        assert teacher_pairs.main([*args[:2], "--cache-dir", str(cache_dir), *args[4:], "--attributes", bad,
                                   "--out", str(out)]) == 2
        assert not out.exists()


def test_init_student_warm_starts_from_an_exported_student(parts, tmp_path):
    """init_student replaces the teacher copy by an exported student's weights: with a vanishing lr the export
    equals them; a folder of another architecture or without config.json is refused with exit code 2."""
    root, cache = parts
    teacher = TextUNet.from_pretrained(root / "teacher")
    src = TwoTimeTextUNet.from_teacher(teacher)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.01 * torch.randn_like(p))
    src.save_pretrained(tmp_path / "src")
    frozen = ["train.lr=1e-30", "ctm.distance=l2", "train.grad_clip=null"]
    assert run(root, cache, "warm", *frozen, f"init_student={tmp_path / 'src'}") == 0
    assert run(root, cache, "cold", *frozen) == 0
    warm, cold = (TwoTimeTextUNet.from_pretrained(root / n / "student").state_dict() for n in ("warm", "cold"))
    ref = src.state_dict()
    assert all(torch.allclose(warm[k], ref[k], rtol=1e-6, atol=1e-12) for k in ref)
    assert not all(torch.allclose(cold[k], ref[k], rtol=1e-6, atol=1e-12) for k in ref)

    other = UNetConfig.from_dict({**UNET_PRESETS["debug"].__dict__, "block_out_channels": (16, 32)})
    TwoTimeTextUNet.from_teacher(TextUNet.from_config(other)).save_pretrained(tmp_path / "other")
    assert run(root, cache, "warm_bad", f"init_student={tmp_path / 'other'}") == 2
    assert run(root, cache, "warm_missing", f"init_student={tmp_path / 'nothing'}") == 2


def test_teacher_pairs_path_keeps_the_states_of_the_same_solve_on_the_sampler_grid(parts, tmp_path):
    """--path M keeps, per pair, the teacher's states at the interior σ of the M-step CTM grid: the same numbers as
    solving the same ODE only as far as each σ; files with and without a path do not merge; a grid that does not
    divide steps − 1 exits 2."""
    root, cache = parts
    args = ["--teacher", str(root / "teacher"), "--cache-dir", str(cache), "--steps", "5", "--batch", "3"]
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "p.safetensors"), "--n", "2", "--path", "4"]) == 0
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "p.safetensors"), "--n", "4", "--path", "4"]) == 0
    p = teacher_pairs.load_pairs(tmp_path / "p.safetensors")
    assert p["path"].shape == (4, 3, *p["x0"].shape[1:])
    from soundctm.core import samplers, schedule
    from soundctm.data.cache import LatentCacheDataset
    from soundctm.train.tasks import guided_teacher

    assert torch.allclose(p["path_sigma"], schedule.karras_sigmas(5, 0.002, 80.0)[1:-1])
    data = LatentCacheDataset(cache)
    teacher = TextUNet.from_pretrained(root / "teacher").eval()
    D = guided_teacher(teacher, 0.5, "omega", data.unconditional.tokens, data.unconditional.mask)
    grid = schedule.karras_sigmas(5, 0.002, 80.0)
    cond = {"omega": p["omega"], "tokens": data.text.tokens[p["caption_index"]],
            "mask": data.text.mask[p["caption_index"]]}
    with torch.no_grad():
        for j in range(3):  # state j of the path lies at grid[j + 1]
            x = samplers.sample_ode(D, p["x_T"], grid[: j + 2], "heun", **cond)
            assert torch.allclose(p["path"][:, j], x, atol=1e-5)
            assert not torch.allclose(p["path"][:, j], p["x0"], atol=1e-3)
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "q.safetensors"), "--n", "2"]) == 0
    merge = ["--out", str(tmp_path / "m.safetensors"), "--merge"]
    assert teacher_pairs.main([*merge, str(tmp_path / "p.safetensors"), str(tmp_path / "q.safetensors")]) == 2
    assert teacher_pairs.main([*merge, str(tmp_path / "p.safetensors"), str(tmp_path / "p.safetensors")]) == 0
    m = teacher_pairs.load_pairs(tmp_path / "m.safetensors")
    assert torch.equal(m["path"], torch.cat([p["path"], p["path"]])) and torch.equal(m["path_sigma"], p["path_sigma"])
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "r.safetensors"), "--n", "2", "--path", "3"]) == 2
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "r.safetensors"), "--n", "2", "--path", "1"]) == 2
    # a file is resumed only with the --path it was started with
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "q.safetensors"), "--n", "4", "--path", "4"]) == 2
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "p.safetensors"), "--n", "6", "--path", "2"]) == 2
    assert len(teacher_pairs.load_pairs(tmp_path / "p.safetensors")["omega"]) == 4


def test_draw_jumps_are_consecutive_jumps_of_the_chosen_sampler_grids():
    """Every drawn jump is one step of an m-step grid with m in steps, all of them occur, and (1,) is x_T → x_0
    without using the generator."""
    g = torch.Generator().manual_seed(0)
    a, b = ctm_terms.draw_jumps(4000, (1, 2, 4), 8, g)
    seen = {(int(x), int(y)) for x, y in zip(a, b)}
    want = {(0, 8), (0, 4), (4, 8), (0, 2), (2, 4), (4, 6), (6, 8)}
    assert seen == want
    assert (b - a == 8).float().mean().item() == pytest.approx(1 / 3, abs=0.04)
    state = g.get_state()
    a1, b1 = ctm_terms.draw_jumps(5, (1,), 8, g)
    assert torch.equal(g.get_state(), state) and a1.eq(0).all() and b1.eq(8).all()


def path_file(parts, tmp_path):
    """8 teacher trajectories of the tiny teacher with their states on the 4-step grid: (teacher_pairs recipe, its
    common arguments, the file, its contents, the cache's text)."""
    root, cache = parts
    args = ["--teacher", str(root / "teacher"), "--cache-dir", str(cache), "--steps", "5", "--batch", "4"]
    f = tmp_path / "p.safetensors"
    assert teacher_pairs.main([*args, "--out", str(f), "--n", "8", "--path", "4"]) == 0
    from soundctm.data.cache import LatentCacheDataset

    return teacher_pairs, args, f, teacher_pairs.load_pairs(f), LatentCacheDataset(cache).text


def trajectory_cond(p, text) -> dict:
    """The conditioning of the cached trajectories ``p``: their captions' tokens and mask, and their ω."""
    return {"tokens": text.tokens[p["caption_index"]], "mask": text.mask[p["caption_index"]], "omega": p["omega"]}


def two_step_output(student_dir, p, text) -> torch.Tensor:
    """The exported student's 2-step γ = 0 sampler output (the pipeline's grid karras_sigmas(3)) from p's x_T."""
    from soundctm.core import samplers, schedule
    from soundctm.core.precond import CTMPrecond

    G = CTMPrecond(TwoTimeTextUNet.from_pretrained(student_dir).eval(), 0.5)
    with torch.no_grad():
        return samplers.sample_ctm(G, p["x_T"], schedule.karras_sigmas(3, 0.002, 80.0), 0.0,
                                   **trajectory_cond(p, text))


def rollout_args(f) -> list[str]:
    """Overrides of the rollout tests: the 2-step rollout term on the trajectory file ``f`` (its path first) beside the
    CTM loss alone (DSM and the pair term off), l2, 40 steps at a high learning rate; rollout_weight is the caller's."""
    return [f"ctm.pairs_path={f}", "ctm.distance=l2", "ctm.rollout_batch=8", "ctm.rollout_steps=2",
            "train.steps=40", "train.ckpt_every=40", "train.lr=3e-3", "train.grad_clip=null",
            "train.ema_decays=[0.5]", "ctm.dsm_weight=0", "ctm.pairs_weight=0"]


def logged_metrics(run_dir) -> list[dict]:
    """The rows of a run's logs/metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]


def test_path_pairs_term_pulls_the_multistep_jumps_to_the_teacher_states(parts, tmp_path):
    """With ctm.pairs_steps (2, 4) the pair term alone brings G(x_a, σ_a, σ_b) nearer the teacher's states x_b on
    the 4-step grid than with the term off; step counts the file's grid does not hold exit 2."""
    root, cache = parts
    teacher_pairs, args, f, p, text = path_file(parts, tmp_path)
    from soundctm.core.precond import CTMPrecond

    states = torch.cat([p["x_T"][:, None], p["path"], p["x0"][:, None]], 1)
    grid = torch.cat([torch.tensor([80.0]), p["path_sigma"], torch.tensor([0.002])])

    def jump_error(student_dir):
        net = TwoTimeTextUNet.from_pretrained(student_dir).eval()
        cond = trajectory_cond(p, text)
        err = 0.0
        with torch.no_grad():
            for j in range(1, 3):  # the two inner jumps of the 4-step sampler
                out = CTMPrecond(net, 0.5)(states[:, j], grid[j].expand(8), grid[j + 1].expand(8), **cond)
                err += ((out - states[:, j + 1]) ** 2).mean().item()
        return err

    common = [f"ctm.pairs_path={f}", "ctm.distance=l2", "ctm.pairs_batch=8", "train.steps=40",
              "train.ckpt_every=40", "train.lr=3e-3", "train.grad_clip=null", "train.ema_decays=[0.5]",
              "ctm.dsm_weight=0", "ctm.pairs_steps=[2,4]"]
    assert run(root, cache, "path0", *common, "ctm.pairs_weight=0") == 0
    assert run(root, cache, "path", *common, "ctm.pairs_weight=10") == 0
    assert jump_error(root / "path" / "student") < 0.85 * jump_error(root / "path0" / "student")
    assert run(root, cache, "path_bad", *common, "ctm.pairs_steps=[3]") == 2
    assert run(root, cache, "path_bad2", *common, "ctm.pairs_steps=[]") == 2
    assert teacher_pairs.main([*args, "--out", str(tmp_path / "q.safetensors"), "--n", "4"]) == 0
    assert run(root, cache, "path_bad3", *common[1:], f"ctm.pairs_path={tmp_path / 'q.safetensors'}") == 2


def test_rollout_term_pulls_the_whole_sampler_output_to_the_teacher_solution(parts, tmp_path):
    """ctm.rollout_steps = 2: the term beside the CTM loss alone (DSM and the pair term off) brings the 2-step
    γ = 0 sampler's output, run on the pipeline's own grid karras_sigmas(3), nearer the teacher's x_0 from the same
    x_T than with the term off (same draws); the term is logged, and a step count the file's grid does not hold, a
    bad weight or batch, or no pairs file exit 2."""
    root, cache = parts
    _, _, f, p, text = path_file(parts, tmp_path)
    from soundctm.core import schedule

    # the term's σ (every 2nd point of the file's 4-step grid) are the pipeline's 2-step grid
    _, grid = ctm_terms.path_states(p, ctm_terms.CTMConfig(pairs_steps=(2,)))
    assert torch.allclose(grid[::2], schedule.karras_sigmas(3, 0.002, 80.0), rtol=1e-5)

    def sampler_error(student_dir):
        return ((two_step_output(student_dir, p, text) - p["x0"]) ** 2).mean().item()

    common = rollout_args(f)
    assert run(root, cache, "roll0", *common, "ctm.rollout_weight=0") == 0
    assert run(root, cache, "roll", *common, "ctm.rollout_weight=10") == 0
    assert sampler_error(root / "roll" / "student") < 0.85 * sampler_error(root / "roll0" / "student")
    logged = logged_metrics(root / "roll")
    assert all(torch.isfinite(torch.tensor(r["train/rollout"])) for r in logged if "train/rollout" in r)
    assert any("train/rollout" in r for r in logged)
    for bad in ("ctm.rollout_steps=3", "ctm.rollout_steps=-1", "ctm.rollout_weight=-1", "ctm.rollout_batch=0"):
        assert run(root, cache, "roll_bad", *common, bad) == 2
    assert run(root, cache, "roll_bad", *common[1:]) == 2  # no trajectories to roll out from


def test_envelope_term_pulls_the_decoded_loudness_contour_to_the_teacher_solution(parts, tmp_path):
    """ctm.rollout_envelope_weight: with the cache's VAE (named in its index) decoding both ends, the term brings the
    frame levels of the 2-step sampler's decoded output nearer those of the teacher's x_0 than the rollout term
    alone does (same draws); it is logged finite; a negative weight, the term without the rollout, or a cache that
    names no VAE or a missing one exit 2."""
    import shutil

    from soundctm.audio.mel import MelConfig
    from soundctm.audio.vae import AudioVAE, AudioVAEConfig

    root, cache = parts
    _, _, f, p, text = path_file(parts, tmp_path)
    mel = MelConfig(n_fft=64, hop_length=16, win_length=64, n_mels=16, fmax=8000.0)
    torch.manual_seed(0)
    vae = AudioVAE(AudioVAEConfig(latent_channels=4, block_out_channels=(8, 16), norm_num_groups=4, mel=mel)).eval()
    vae.save_pretrained(tmp_path / "vae")
    with_vae = tmp_path / "cache_vae"
    shutil.copytree(cache, with_vae)
    index = json.loads((with_vae / "index.json").read_text())
    clip = 23 * mel.hop_length  # 24 frames: the latents' 12 time steps, decoded 2× up
    (with_vae / "index.json").write_text(json.dumps({**index, "vae": str(tmp_path / "vae"), "mel": mel.to_dict(),
                                                     "clip_samples": clip}))
    levels = ctm_terms.decoded_levels(vae, mel.n_frames(clip), mel.power)

    def envelope_error(student_dir):
        with torch.no_grad():
            out = two_step_output(student_dir, p, text)
            return ctm_terms.envelope_distance(levels(out), levels(p["x0"])).mean().item()

    common = [*rollout_args(f), "ctm.rollout_weight=1"]
    assert run(root, with_vae, "env0", *common) == 0
    assert run(root, with_vae, "env", *common, "ctm.rollout_envelope_weight=1") == 0
    assert envelope_error(root / "env" / "student") < 0.85 * envelope_error(root / "env0" / "student")
    logged = logged_metrics(root / "env")
    values = [r["train/rollout_envelope"] for r in logged if "train/rollout_envelope" in r]
    assert values and all(math.isfinite(v) for v in values)
    assert run(root, with_vae, "env_bad", *common, "ctm.rollout_envelope_weight=-1") == 2
    assert run(root, with_vae, "env_bad", *common, "ctm.rollout_steps=0", "ctm.rollout_envelope_weight=1") == 2
    assert run(root, cache, "env_bad", *common, "ctm.rollout_envelope_weight=1") == 2  # no VAE named
    (with_vae / "index.json").write_text(json.dumps({**index, "vae": str(tmp_path / "none"), "mel": mel.to_dict(),
                                                     "clip_samples": clip}))
    assert run(root, with_vae, "env_bad", *common, "ctm.rollout_envelope_weight=1") == 2  # names a missing VAE


def test_envelope_distance_reads_level_differences_above_the_floor():
    """envelope_distance is the mean |Δ level| / 10 dB over frames, frames more than 60 dB below the target's
    loudest floored; mel_frame_levels_db is 10·log10 of the band power (power 1: squared magnitudes)."""
    from soundctm.audio.mel import mel_frame_levels_db

    target = torch.tensor([[0.0, -20.0, -100.0, -100.0]])
    levels = torch.tensor([[-5.0, -10.0, -70.0, -55.0]])
    # |−5 − 0|, |−10 + 20|, both floored at −60, |−55 + 60| → (5 + 10 + 0 + 5) / 4 / 10
    assert torch.allclose(ctm_terms.envelope_distance(levels, target), torch.tensor([0.5]))
    mag = torch.tensor([[[1.0, 0.1], [3.0, 0.2]]])  # [B, n_mels, F]
    want = 10 * torch.log10((mag**2).sum(1))
    assert torch.allclose(mel_frame_levels_db(torch.log(mag)), want, atol=1e-5)
    assert torch.allclose(mel_frame_levels_db(torch.log(mag**2), power=2.0), want, atol=1e-5)


def test_average_students_is_the_elementwise_mean_and_refuses_other_architectures(parts, tmp_path):
    """Two students average to the elementwise mean of their weights (one student to itself), --weights -1 2 to
    2b − a; weights of the wrong count, not summing to 1 or not finite, a student of another architecture or a
    folder without config.json exit 2."""
    root, _ = parts
    teacher = TextUNet.from_pretrained(root / "teacher")
    a, b = TwoTimeTextUNet.from_teacher(teacher), TwoTimeTextUNet.from_teacher(teacher)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(torch.randn_like(p))
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    assert avg.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab")]) == 0
    ab = TwoTimeTextUNet.from_pretrained(tmp_path / "ab").state_dict()
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.allclose(ab[k], (sa[k] + sb[k]) / 2, atol=1e-6) for k in sa if sa[k].is_floating_point())
    assert not torch.allclose(ab["unet.conv_in.weight"], sa["unet.conv_in.weight"])
    one = avg.average_students([tmp_path / "a"]).state_dict()
    assert all(torch.equal(one[k], sa[k]) for k in sa)
    ab_dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert avg.main([*ab_dirs, "--weights", "-1", "2", "--out", str(tmp_path / "x2")]) == 0
    x2 = TwoTimeTextUNet.from_pretrained(tmp_path / "x2").state_dict()
    assert all(torch.allclose(x2[k], 2 * sb[k] - sa[k], atol=1e-5) for k in sa if sa[k].is_floating_point())
    (tmp_path / "a" / "provenance.json").write_text('{"step": 600}')
    assert avg.main([*ab_dirs, "--out", str(tmp_path / "ab2")]) == 0
    prov = json.loads((tmp_path / "ab2" / "provenance.json").read_text())
    assert prov["average_of"] == ab_dirs and prov["sources"] == [{"step": 600}, None]
    for bad in (["0.5"], ["0.5", "0.6"], ["nan", "1"]):
        assert avg.main([*ab_dirs, "--weights", *bad, "--out", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "y").exists()
    big = UNetConfig.from_dict({**UNET_PRESETS["debug"].__dict__, "block_out_channels": [16, 32]})
    TwoTimeTextUNet.from_teacher(TextUNet.from_config(big)).save_pretrained(tmp_path / "big")
    assert avg.main([str(tmp_path / "a"), str(tmp_path / "big"), "--out", str(tmp_path / "x")]) == 2
    assert avg.main([str(tmp_path / "a"), str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2


def test_gan_on_trajectory_jumps_reaches_the_student_and_checks_its_arguments(parts, tmp_path):
    """gan.source=pairs: fakes are jumps to σ_min from cached teacher trajectory states, judged by the discriminator
    at noised features (gan.sigma_range); its generator term changes the student (weight 1 vs 0, same draws) and
    both losses are logged finite; a pairs source without a pairs file, an unknown source or a bad σ_D range exit 2."""
    root, cache = parts
    pairs = tmp_path / "p.safetensors"
    assert teacher_pairs.main(["--teacher", str(root / "teacher"), "--cache-dir", str(cache), "--steps", "5",
                               "--batch", "4", "--path", "4", "--n", "4", "--out", str(pairs)]) == 0
    common = ["gan.enabled=true", "gan.source=pairs", "gan.batch=3", "gan.sigma_range=[0.1,2.0]",
              f"ctm.pairs_path={pairs}", "ctm.pairs_steps=[1,2,4]", "ctm.distance=l2", "train.lr=1e-3"]
    assert run(root, cache, "gan_pairs", *common) == 0
    assert run(root, cache, "gan_pairs0", *common, "gan.weight=0") == 0
    a, b = (TwoTimeTextUNet.from_pretrained(root / n / "student").state_dict() for n in ("gan_pairs", "gan_pairs0"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    logs = [json.loads(line) for f in (root / "gan_pairs" / "logs").glob("*.jsonl")
            for line in f.read_text().splitlines() if line.strip()]
    seen = [r for r in logs if "train/gan_d" in r]
    assert seen and all(torch.isfinite(torch.tensor([r["train/gan_d"], r["train/gan_g"], r["train/gan_lambda"]])).all()
                        for r in seen)
    # gan.batch above train.batch_size (4) takes as many fakes as the batch has reals
    assert run(root, cache, "gan_pairs_big", *common, "gan.batch=8") == 0
    assert run(root, cache, "gan_bad", "gan.enabled=true", "gan.source=pairs") == 2
    assert run(root, cache, "gan_bad2", *common, "gan.source=data") == 2
    assert run(root, cache, "gan_bad3", *common, "gan.sigma_range=[2.0,0.1]") == 2
    assert run(root, cache, "gan_bad4", *common, "gan.ramp_steps=-1") == 2


def test_gan_reals_from_the_teacher_are_the_fakes_own_trajectory_solutions(parts, tmp_path):
    """gan.real=teacher: the discriminator's reals are the cached x_0 of the very trajectories the fakes jump from,
    with their captions; during gan.disc_warmup the generator term is not computed (no gan_g logged)."""
    root, _ = parts
    _, _, _, p, text = path_file(parts, tmp_path)
    gan = ctm_terms.GANConfig(enabled=True, source="pairs", real="teacher", head="stats", batch=4,
                                   sigma_range=(1e-9, 1e-9), disc_warmup=5)
    ctm = ctm_terms.CTMConfig(pairs_steps=(1, 2, 4))
    states, grid = ctm_terms.path_states(p, ctm)
    tr = ctm_terms.Trajectories(states, grid, p["omega"], p["caption_index"], text.tokens, text.mask)
    seen = []

    def features(x, sigma, tokens, mask):
        seen.append((x.detach().clone(), tokens.clone()))
        return [x.mean(1, keepdim=True)]

    term = ctm_terms.gan_term(gan, ctm, features, tr)
    teacher = TextUNet.from_pretrained(root / "teacher")
    disc = FeatureDiscriminator([1], 8, "stats")
    models = {"net": TwoTimeTextUNet.from_teacher(teacher), "disc": disc}
    batch = {"latent": torch.zeros(4, *states.shape[2:]), "tokens": text.tokens[:4], "mask": text.mask[:4]}
    loss, logs = term(batch, models, 0, torch.Generator().manual_seed(0), torch.zeros(()))
    assert "train/gan_g" not in logs and 0.0 <= float(logs["train/gan_acc"]) <= 1.0 and torch.isfinite(loss)
    (real, real_tokens), (fake, fake_tokens) = seen
    ends = states[:, -1].flatten(1)
    match = torch.cdist(real.flatten(1), ends).argmin(1)
    assert torch.allclose(real.flatten(1), ends[match], atol=1e-6)
    assert torch.equal(real_tokens, text.tokens[p["caption_index"][match]]) and torch.equal(real_tokens, fake_tokens)
    assert not torch.allclose(fake, real, atol=1e-3)


def test_gan_warmup_trains_only_the_discriminator_and_bad_gan_options_exit_2(parts, tmp_path):
    """With gan.disc_warmup covering the run, the generator weight does not change the student (weight 1 vs 0, same
    draws) while the stats discriminator logs its loss and accuracy; without the warm-up it does. An unknown head
    or real, real=teacher without trajectory fakes, and a negative warm-up exit 2."""
    root, cache = parts
    _, _, f, _, _ = path_file(parts, tmp_path)
    common = ["gan.enabled=true", "gan.source=pairs", "gan.real=teacher", "gan.head=stats", "gan.batch=3",
              f"ctm.pairs_path={f}", "ctm.pairs_steps=[1,2,4]", "ctm.distance=l2", "train.lr=1e-3"]

    def student(name):
        return TwoTimeTextUNet.from_pretrained(root / name / "student").state_dict()

    runs = [("warm1", ["gan.disc_warmup=3", "gan.weight=1"]), ("warm0", ["gan.disc_warmup=3", "gan.weight=0"]),
            ("nowarm1", ["gan.disc_warmup=0"])]
    for name, extra in runs:
        assert run(root, cache, name, *common, *extra) == 0
    a, b, c = student("warm1"), student("warm0"), student("nowarm1")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(c[k], b[k]) for k in c)
    rows = [r for r in logged_metrics(root / "warm1") if "train/gan_d" in r]
    assert rows and all("train/gan_g" not in r and 0 <= r["train/gan_acc"] <= 1 for r in rows)
    assert any("train/gan_g" in r for r in logged_metrics(root / "nowarm1"))
    for i, bad in enumerate(["gan.head=mlp", "gan.real=noise", "gan.disc_warmup=-1"]):
        assert run(root, cache, f"gan_opt_bad{i}", *common, bad) == 2
    assert run(root, cache, "gan_opt_bad_src", *common, "gan.source=noise") == 2


def test_draw_log_uniform_stays_in_its_range():
    rng = torch.Generator().manual_seed(0)
    s = ctm_terms.draw_log_uniform(4000, 0.1, 10.0, rng, "cpu")
    assert s.min() >= 0.1 and s.max() <= 10.0
    # log-uniform: half the draws below the geometric mean 1.0
    assert abs((s < 1.0).float().mean().item() - 0.5) < 0.05
    assert torch.equal(ctm_terms.draw_log_uniform(3, 0.002, 0.002, rng, "cpu"), torch.full((3,), 0.002))


def test_missing_component_folders_are_one_line_errors(parts, tmp_path, capsys):
    """teacher_pairs with a missing teacher and bundle_pipeline with a missing VAE exit 2 with one line each."""
    from recipes import bundle_pipeline

    _, cache = parts
    assert teacher_pairs.main(["--teacher", str(tmp_path / "none"), "--cache-dir", str(cache), "--n", "2",
                               "--out", str(tmp_path / "p.safetensors")]) == 2
    assert bundle_pipeline.main(["--vae", str(tmp_path / "none"), "--teacher", str(tmp_path / "t"), "--student",
                                 str(tmp_path / "s"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("teacher_pairs: ") and err[1].startswith("bundle_pipeline: ")
