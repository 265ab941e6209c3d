"""The audio-judge benchmark's scoring: per-attribute accuracy, the mean over attributes and the pooled share, and
its verdicts on clips whose attributes are known."""

import numpy as np
import pytest

from benchmarks import audio_judge


@pytest.fixture(scope="module")
def bench():
    return audio_judge


def test_mean_weights_attributes_and_pooled_weights_verdicts(bench):
    verdicts = {"family": [True] * 9 + [False], "pitch": [True, False], "count": [], "sweep": [False],
                "loudness": [True] * 4}
    row = bench.accuracy_row(verdicts)
    assert row["family"] == pytest.approx(0.9) and row["pitch"] == pytest.approx(0.5)
    assert row["count"] is None and row["sweep"] == 0.0 and row["loudness"] == 1.0
    assert row["mean"] == pytest.approx((0.9 + 0.5 + 0.0 + 1.0) / 4)  # count (unjudged) left out
    assert row["pooled"] == pytest.approx(14 / 17)
    assert bench.accuracy_row({a: [] for a in bench.ATTRS})["pooled"] is None


def test_judge_batch_accepts_real_clips_and_rejects_silence(bench):
    from soundctm.data.synthcaps import make_clip

    clips = [make_clip(0, "heldout", i) for i in range(6)]
    waves = np.stack([w for w, _, _ in clips])
    attrs = [a for _, _, a in clips]
    real = bench.accuracy_row(bench.judge_batch(waves, 16000, attrs))
    silent = bench.accuracy_row(bench.judge_batch(np.zeros_like(waves), 16000, attrs))
    assert real["pooled"] >= 0.9
    assert silent["pooled"] <= 0.5


def test_per_clip_verdicts_pool_to_the_same_row(bench):
    clips = [{"family": True, "pitch": False}, {"family": False, "loudness": True}, {"sweep": True}]
    pooled = bench.pool_verdicts(clips)
    assert pooled == {"family": [True, False], "pitch": [False], "count": [], "sweep": [True], "loudness": [True]}
    right, asked = bench.verdict_matrix(clips)
    mean, share = bench._metrics(right, asked)
    row = bench.accuracy_row(pooled)
    assert mean == pytest.approx(row["mean"]) and share == pytest.approx(row["pooled"])


def test_paired_bootstrap_difference_and_interval(bench):
    rng = np.random.default_rng(1)
    n = 400
    a = [{"family": bool(rng.random() < 0.8), "loudness": bool(rng.random() < 0.9)} for _ in range(n)]
    same = bench.paired_bootstrap(a, a)
    assert same["mean"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0}  # identical verdicts: no spread at all
    # b flips 40 of a's wrong family verdicts to right: +10 points on family, +5 on the mean, +5 pooled
    wrong = [i for i, c in enumerate(a) if not c["family"]][:40]
    assert len(wrong) == 40
    b = [dict(c, family=True) if i in wrong else dict(c) for i, c in enumerate(a)]
    d = bench.paired_bootstrap(a, b, n_boot=1000)
    assert d["mean"]["diff"] == pytest.approx(0.05) and d["pooled"]["diff"] == pytest.approx(40 / 800)
    for m in ("mean", "pooled"):
        assert 0 < d[m]["lo"] < d[m]["diff"] < d[m]["hi"] < 0.1
    # paired: the interval of a fixed improvement is far narrower than the spread of either accuracy alone
    assert d["mean"]["hi"] - d["mean"]["lo"] < 0.04
    with pytest.raises(ValueError, match="per_clip_a and per_clip_b"):
        bench.paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="different attributes"):
        bench.paired_bootstrap(a, [{"pitch": True}] * n)


def test_goal_verdict_reads_point_and_interval(bench):
    assert bench.goal_verdict({"diff": -0.02, "lo": -0.04, "hi": 0.0}, -0.05).startswith("met; the whole")
    assert bench.goal_verdict({"diff": 0.001, "lo": -0.02, "hi": 0.02}, 0.0) == (
        "met on the point estimate; the 95 % interval straddles the bound")
    assert bench.goal_verdict({"diff": -0.01, "lo": -0.03, "hi": 0.01}, 0.0).startswith("not met on the point")
    assert bench.goal_verdict({"diff": -0.08, "lo": -0.1, "hi": -0.06}, -0.05).endswith("falls short of the bound")


def test_students_table_pairs_two_students_on_the_same_prompts_and_seeds(bench):
    """with_student swaps only the student (the original pipeline keeps its own); the same weights under two names
    differ by exactly 0 with a zero-width interval on every row, and other weights change the audio."""
    import copy

    from pipeline_utils import make_pipeline

    from soundctm.data.synthcaps import heldout_prompts

    pipe = make_pipeline()
    own = pipe.student
    prompts = heldout_prompts(4, seed=0, split="heldout")
    rows, lines = bench.students_table(pipe, bench.with_student(pipe, copy.deepcopy(own)), prompts, batch=4)
    assert pipe.student is own
    cand = [r for r in rows if "vs_base" in r]
    assert [(r["steps"], r["γ"]) for r in cand] == list(bench.CTM_ROWS) and len(rows) == 2 * len(cand)
    for r in cand:
        for m in ("mean", "pooled"):
            assert r["vs_base"][m] == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
    assert sum(line.startswith("| ctm (candidate)") for line in lines) == len(cand)
    other = bench.with_student(pipe, make_pipeline(seed=1).student)
    a = pipe.generate(prompts[0][0], steps=1, seed=0).waveforms
    b = other.generate(prompts[0][0], steps=1, seed=0).waveforms
    assert pipe.student is own and not np.allclose(a, b)


def test_pool_sets_is_inverse_variance_weighting(bench):
    """Two equal sets keep the difference and shrink the interval by √2; a set with half the standard error weighs
    four times as much; a zero-width interval cannot be weighted."""
    z = 1.959963984540054
    one = {"diff": 0.02, "lo": 0.02 - z * 0.01, "hi": 0.02 + z * 0.01}  # se 0.01
    two = bench.pool_sets([one, one])
    assert two["diff"] == pytest.approx(0.02)
    assert two["hi"] - two["diff"] == pytest.approx(z * 0.01 / np.sqrt(2))
    sharp = {"diff": -0.01, "lo": -0.01 - z * 0.005, "hi": -0.01 + z * 0.005}  # se 0.005: weight 4
    mixed = bench.pool_sets([one, sharp])
    assert mixed["diff"] == pytest.approx((0.02 + 4 * -0.01) / 5)
    assert mixed["hi"] - mixed["diff"] == pytest.approx(z / np.sqrt(1 / 0.01**2 + 1 / 0.005**2))
    with pytest.raises(ValueError, match="positive width"):
        bench.pool_sets([one, {"diff": 0.0, "lo": 0.0, "hi": 0.0}])
    with pytest.raises(ValueError, match="at least one"):
        bench.pool_sets([])


def test_pool_reads_students_runs_and_refuses_mixed_kinds(bench):
    """--pool on students runs pools the candidate rows' paired differences to the pipeline's student (the same
    inverse-variance weights as for goals) and names the candidate; goals and students runs do not mix."""
    z = 1.959963984540054

    def est(diff, se):
        return {"diff": diff, "lo": diff - z * se, "hi": diff + z * se}

    def students_run(diff, se):
        rows = []
        for steps, gamma in bench.CTM_ROWS:
            rows.append({"sampler": "ctm (base)", "steps": steps, "γ": gamma})
            rows.append({"sampler": "ctm (candidate)", "steps": steps, "γ": gamma,
                         "vs_base": {"mean": est(diff, se), "pooled": est(diff / 2, se)}})
        return {"prompt_seed": 0, "n_prompts": 8, "students": {"candidate": "runs/x/student", "rows": rows}}

    runs = [students_run(0.02, 0.01), students_run(-0.01, 0.005)]
    lines = bench.pooled_lines(runs, ["a", "b"])
    pooled = (0.02 + 4 * -0.01) / 5
    row = next(line for line in lines if line.startswith("| 4 steps γ = 0.0 |"))
    assert f"{100 * pooled:+.1f} (" in row.split("|")[-2]
    assert "+2.0 (+1.0)" in row and "-1.0 (-0.5)" in row
    assert any("runs/x/student" in line for line in lines)
    assert not any("goal" in line.lower() and "→" in line for line in lines)
    goals = {"prompt_seed": 1, "n_prompts": 8, "goals": []}
    with pytest.raises(ValueError, match="mix"):
        bench.pooled_lines([runs[0], goals], ["a", "b"])
    with pytest.raises(ValueError, match="exactly one of --tables goals, students or solve"):
        bench.pooled_lines([{"prompt_seed": 0}], ["a"])


def test_goals_table_reads_the_teachers_verdicts_from_the_cache_the_second_time(bench, tmp_path):
    """The first goals run generates the teacher and keeps its row and per-clip verdicts; the second never calls the
    teacher sampler and pairs the CTM rows against the same verdicts, so every difference is the same."""
    from pipeline_utils import make_pipeline

    from soundctm.data.synthcaps import heldout_prompts

    pipe = make_pipeline()
    prompts = heldout_prompts(4, seed=0, split="heldout")
    samplers: list[str] = []
    generate = pipe.generate

    def counting(*args, **kw):
        samplers.append(kw.get("sampler", "ctm"))
        return generate(*args, **kw)

    pipe.generate = counting
    first, _ = bench.goals_table(pipe, prompts, 4, 2.0, quick=True, teacher_cache=tmp_path)
    assert samplers.count("teacher") == 1 and len(list(tmp_path.glob("teacher-*.json"))) == 1
    samplers.clear()
    second, _ = bench.goals_table(pipe, prompts, 4, 2.0, quick=True, teacher_cache=tmp_path)
    assert "teacher" not in samplers and samplers.count("ctm") == len(bench.CTM_ROWS)
    assert second[0]["cached"] and "cached" not in first[0]
    assert {k: v for k, v in second[0].items() if k != "cached"} == first[0]
    assert [r["vs_teacher"] for r in second[1:]] == [r["vs_teacher"] for r in first[1:]]
    assert not list(tmp_path.glob("*.tmp*"))


def test_teacher_key_ignores_the_student_and_follows_weights_prompts_batch_and_steps(bench):
    import copy

    import torch
    from pipeline_utils import make_pipeline

    from soundctm.data.synthcaps import heldout_prompts

    pipe = make_pipeline()
    prompts = heldout_prompts(4, seed=0, split="heldout")
    key = bench.teacher_key(pipe, prompts, 4, steps=2)
    assert bench.teacher_key(bench.with_student(pipe, make_pipeline(seed=1).student), prompts, 4, steps=2) == key
    assert bench.teacher_key(pipe, prompts[:3], 4, steps=2) != key
    assert bench.teacher_key(pipe, prompts, 2, steps=2) != key  # seeds follow the batch
    assert bench.teacher_key(pipe, prompts, 4, steps=3) != key
    other_text = copy.copy(pipe)
    other_text.text_encoder = copy.deepcopy(pipe.text_encoder)  # the tests share one encoder: change a copy
    with torch.no_grad():
        next(other_text.text_encoder.model.parameters()).view(-1)[0] += 1e-3
    assert bench.teacher_key(other_text, prompts, 4, steps=2) != key
    with torch.no_grad():
        next(pipe.teacher.parameters()).view(-1)[0] += 1e-3
    assert bench.teacher_key(pipe, prompts, 4, steps=2) != key


def test_goals_table_with_nu_samples_the_ctm_rows_with_both_branches_and_pool_keeps_nu_apart(bench, tmp_path):
    """--nu 2 runs each CTM row with the unconditional jump too (twice the NFE, other audio), leaves the teacher row
    alone (same cache entry), names ν in the title; --pool refuses runs of different ν; a negative ν exits 2."""
    from pipeline_utils import make_pipeline

    from soundctm.data.synthcaps import heldout_prompts

    pipe = make_pipeline()
    prompts = heldout_prompts(4, seed=0, split="heldout")
    plain, plain_lines = bench.goals_table(pipe, prompts, 4, 2.0, quick=True, teacher_cache=tmp_path)
    nu2, nu2_lines = bench.goals_table(pipe, prompts, 4, 2.0, quick=True, teacher_cache=tmp_path, nu=2.0)
    assert nu2[0]["cached"] and len(list(tmp_path.glob("teacher-*.json"))) == 1
    assert [r["nfe"] for r in nu2[1:]] == [2 * r["nfe"] for r in plain[1:]]
    assert "ν = 2" in nu2_lines[0] and "ν" not in plain_lines[0]
    a = pipe.generate(prompts[0][0], steps=1, seed=0).waveforms
    b = pipe.generate(prompts[0][0], steps=1, seed=0, nu=2.0).waveforms
    assert not np.allclose(a, b)
    runs = [{"prompt_seed": s, "n_prompts": 4, "nu": nu, "goals": rows} for s, nu, rows in ((0, 1.0, plain),
                                                                                              (1, 2.0, nu2))]
    with pytest.raises(ValueError, match="different --nu"):
        bench.pooled_lines(runs, ["a", "b"])
    d = {"diff": 0.01, "lo": -0.01, "hi": 0.03}
    wide = [nu2[0], *({**r, "vs_teacher": {"mean": d, "pooled": d}} for r in nu2[1:])]
    both = [dict(runs[1], goals=wide), dict(runs[1], goals=wide, prompt_seed=2)]
    assert "ν = 2" in bench.pooled_lines(both, ["a", "b"])[0]
    with pytest.raises(SystemExit) as err:
        bench.main(["--quick", "--tables", "goals", "--nu", "-1"])
    assert err.value.code == 2


def test_solve_table_pairs_shorter_teacher_solves_against_the_cached_reference(bench, tmp_path):
    """The reference row is the goals table's cached teacher; the same step count paired with it differs by exactly
    0 (same seeds, same solve), a shorter solve costs fewer evaluations; bad tables or step lists exit 2."""
    from pipeline_utils import make_pipeline

    from soundctm.data.synthcaps import heldout_prompts

    pipe = make_pipeline()
    prompts = heldout_prompts(4, seed=0, split="heldout")
    goals, _ = bench.goals_table(pipe, prompts, 4, 2.0, quick=True, teacher_cache=tmp_path)
    rows, lines = bench.solve_table(pipe, prompts, 4, 2.0, (2, 1), quick=True, teacher_cache=tmp_path)
    assert rows[0]["cached"] and rows[0]["mean"] == goals[0]["mean"]
    same, short = rows[1]["vs_teacher"], rows[2]["vs_teacher"]
    assert same["mean"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0} and same["pooled"]["diff"] == 0.0
    assert all(short[m]["lo"] <= short[m]["diff"] <= short[m]["hi"] for m in ("mean", "pooled"))
    assert (rows[1]["nfe"], rows[2]["nfe"]) == (6, 2)  # Heun: 2K − 1 guided evaluations, each a CFG pair
    assert "K Heun steps minus 2" in lines[0] and len([ln for ln in lines if ln.startswith("| teacher")]) == 3
    d8, d9 = {"diff": -0.01, "lo": -0.03, "hi": 0.01}, {"diff": 0.02, "lo": -0.02, "hi": 0.06}
    runs = [{"prompt_seed": k, "n_prompts": 4, "solve": [rows[0], {**rows[2], "vs_teacher": {"mean": d, "pooled": d}}]}
            for k, d in ((8, d8), (9, d9))]
    pooled = bench.pooled_lines(runs, ["set 8", "set 9"])
    row = next(ln for ln in pooled if ln.startswith("| Heun 1 |"))
    want = bench.pool_sets([d8, d9])
    assert f"{100 * want['diff']:+.1f} ({100 * want['lo']:+.1f}, {100 * want['hi']:+.1f})" in row
    assert not any(ln.startswith("| Heun 2 |") for ln in pooled)  # the reference row is not a difference
    with pytest.raises(ValueError, match="cannot mix kinds of runs"):
        bench.pooled_lines([runs[0], {"prompt_seed": 1, "n_prompts": 4, "goals": goals}], ["a", "b"])
    for bad in (["--tables", "solv"], ["--tables", "solve", "--solve-steps", "0"],
                ["--tables", "solve", "--solve-steps", "x"]):
        with pytest.raises(SystemExit) as err:
            bench.main(["--quick", *bad])
        assert err.value.code == 2


def test_pool_breaks_the_difference_down_per_attribute(bench):
    """--pool's per-attribute table: each CTM row's accuracy minus its reference (the teacher row of a goals run, the
    base student's row of a students run) per attribute, the plain mean over the sets; an attribute a set did not
    ask for (None) is left out of that set's share."""
    d = {"diff": 0.0, "lo": -0.01, "hi": 0.01}

    def accs(base, count):
        return {"family": base, "pitch": base, "count": count, "sweep": None, "loudness": base}

    def goals_run(seed, teacher_count, ctm_count, sweep):
        rows = [{"sampler": "teacher heun", "steps": 40, "γ": "—", "mean": 0.8, **accs(0.8, teacher_count)}]
        for steps, gamma in bench.CTM_ROWS:
            rows.append({"sampler": "ctm", "steps": steps, "γ": gamma, "vs_teacher": {"mean": d, "pooled": d},
                         **accs(0.8, ctm_count), "sweep": sweep})
        rows[0]["sweep"] = 0.5 if sweep is not None else None
        return {"prompt_seed": seed, "n_prompts": 8, "goals": rows}

    runs = [goals_run(0, 0.70, 0.66, 0.6), goals_run(1, 0.80, 0.70, None)]
    table = bench.attribute_lines(runs)
    row = next(line for line in table if line.startswith("| 4 steps γ = 0.0 |")).split("|")[2:-1]
    cells = dict(zip(bench.ATTRS, (c.strip() for c in row)))
    assert cells["count"] == f"{100 * ((0.66 - 0.70) + (0.70 - 0.80)) / 2:+.1f}" == "-7.0"
    assert cells["family"] == "+0.0" and cells["sweep"] == "+10.0"  # only set 0 asked for sweeps
    assert table == bench.pooled_lines(runs, ["a", "b"])[-len(table):]

    def students_run(base_count, cand_count):
        rows = []
        for steps, gamma in bench.CTM_ROWS:
            rows.append({"sampler": "ctm (base)", "steps": steps, "γ": gamma, **accs(0.9, base_count)})
            rows.append({"sampler": "ctm (candidate)", "steps": steps, "γ": gamma,
                         "vs_base": {"mean": d, "pooled": d}, **accs(0.9, cand_count + steps / 100)})
        return {"prompt_seed": 0, "n_prompts": 8, "students": {"candidate": "runs/x/student", "rows": rows}}

    table = bench.attribute_lines([students_run(0.5, 0.5), students_run(0.6, 0.6)])
    one = next(line for line in table if line.startswith("| 1 step γ = 0.0 |"))
    four = next(line for line in table if line.startswith("| 4 steps γ = 0.0 |"))
    assert one.split("|")[4].strip() == "+1.0" and four.split("|")[4].strip() == "+4.0"
    assert all(line.split("|")[5].strip() == "—" for line in (one, four))


def test_ctm_rows_choose_the_paired_rows_and_bad_rows_are_refused(bench):
    """--ctm-rows "STEPS:GAMMA,..." picks the students (and goals) table's CTM rows in order; a malformed row, steps
    < 1 or γ outside [0, 1] exit 2 naming --ctm-rows."""
    from pipeline_utils import make_pipeline

    from soundctm.data.synthcaps import heldout_prompts

    assert bench.parse_ctm_rows("1:0,4:0.3") == ((1, 0.0), (4, 0.3))
    assert bench.parse_ctm_rows(",".join(f"{k}:{g}" for k, g in bench.CTM_ROWS)) == bench.CTM_ROWS
    pipe = make_pipeline()
    prompts = heldout_prompts(4, seed=0, split="heldout")
    other = bench.with_student(pipe, make_pipeline(seed=1).student)
    rows, lines = bench.students_table(pipe, other, prompts, batch=4, ctm_rows=((2, 0.0),))
    assert [(r["sampler"], r["steps"], r["γ"]) for r in rows] == [("ctm (base)", 2, 0.0), ("ctm (candidate)", 2, 0.0)]
    assert sum(line.startswith("| ctm (") for line in lines) == 2
    for bad in ("4", "0:0", "4:1.5", "4:-0.1", "x:0"):
        with pytest.raises(ValueError, match="--ctm-rows"):
            bench.parse_ctm_rows(bad)
        with pytest.raises(SystemExit) as err:
            bench.main(["--quick", "--tables", "students", "--candidate", "x", "--ctm-rows", bad])
        assert err.value.code == 2


def test_ctm_sigmas_reach_the_goals_rows_and_bad_values_are_refused(bench, tmp_path):
    """--ctm-sigmas: the goals table's CTM rows sample along the given jump times (the teacher row does not);
    non-numbers, or a count that does not match every row's steps + 1, exit 2 naming --ctm-sigmas."""
    from pipeline_utils import make_pipeline

    from soundctm.data.synthcaps import heldout_prompts

    pipe = make_pipeline()
    seen = []
    real = pipe.generate

    def spy(prompt, **kw):
        audio = real(prompt, **kw)
        seen.append((kw.get("sampler", "ctm"), audio.info["sigmas"]))
        return audio

    pipe.generate = spy
    prompts = heldout_prompts(4, seed=0, split="heldout")
    bench.goals_table(pipe, prompts, 4, 2.0, quick=True, teacher_cache=None, ctm_rows=((2, 0.0),),
                      sigmas=[30.0, 1.0, 0.002])
    ctm = [s for sampler, s in seen if sampler == "ctm"]
    assert ctm and all(s == pytest.approx([30.0, 1.0, 0.002]) for s in ctm)
    teacher = [s for sampler, s in seen if sampler == "teacher"]
    assert teacher and all(s[0] == pytest.approx(80.0) and s[-1] == 0.0 for s in teacher)
    for bad in (["--ctm-sigmas", "80,x,0.002"], ["--ctm-rows", "1:0,2:0", "--ctm-sigmas", "80,1,0.002"],
                ["--ctm-rows", "2:0", "--ctm-sigmas", "80,100,0.002"]):  # not decreasing: refused before any row
        with pytest.raises(SystemExit) as err:
            bench.main(["--quick", "--tables", "goals", *bad])
        assert err.value.code == 2
