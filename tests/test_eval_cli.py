import json

import numpy as np
import pytest
from pipeline_utils import make_pipeline

from soundctm.data.synthcaps import VOCABULARY, heldout_prompts
from soundctm.metrics.cli import main
from soundctm.metrics.synthcaps_classifier import (
    HEADS,
    SynthCapsClassifier,
    SynthCapsClassifierConfig,
    SynthCapsOutputs,
    encode_attributes,
)
from soundctm.metrics.synthcaps_eval import (
    SCORED_ATTRIBUTES,
    PromptSet,
    accuracy_of_verdicts,
    applicable_attributes,
    classifier_verdicts,
    evaluate_clips,
    load_prompt_set,
    mean_pairwise_distances,
    preview_fidelity,
    verdict_agreement,
)
from soundctm.metrics.synthcaps_judge import judge_measurement, measure

SMALL = SynthCapsClassifierConfig(channels=(4, 8), embedding_dim=16)


def one_hot_outputs(attrs: list[dict], embeddings) -> SynthCapsOutputs:
    """Classifier outputs whose argmax is exactly ``attrs``."""
    logits = {}
    for i, h in enumerate(HEADS):
        rows = np.full((len(attrs), len(VOCABULARY[h])), -5.0)
        for r, a in enumerate(attrs):
            rows[r, encode_attributes(a)[i]] = 5.0
        logits[h] = rows
    return SynthCapsOutputs(np.asarray(embeddings, dtype=np.float64), logits)


# ---- attribute bookkeeping ----

def test_applicable_attributes_follow_the_source():
    assert set(applicable_attributes({"source": "beep"})) == {"source", "loudness", "second_source", "background",
                                                             "reverb", "pitch", "count"}
    assert set(applicable_attributes({"source": "siren"})) == {"source", "loudness", "second_source", "background",
                                                              "reverb", "sweep", "fade"}
    assert "pitch" not in applicable_attributes({"source": "drum"})


def test_accuracy_of_verdicts_closed_form():
    verdicts = [{"a": True, "b": False}, {"a": True}, {"a": False, "b": True}]
    acc = accuracy_of_verdicts(verdicts, keys=("a", "b"))
    assert acc.accuracy == {"a": pytest.approx(2 / 3), "b": pytest.approx(1 / 2)}
    assert acc.support == {"a": 3, "b": 2}
    assert acc.mean == pytest.approx(7 / 12)
    assert acc.all_correct == pytest.approx(1 / 3)


def test_classifier_verdicts_score_only_applicable_attributes():
    attrs = [a for _, a in heldout_prompts(6, seed=3)]
    wrong_pitch = [dict(a, pitch="high" if a["pitch"] != "high" else "low") for a in attrs]
    verdicts = classifier_verdicts(wrong_pitch, attrs, scored=HEADS)
    for v, a in zip(verdicts, attrs):
        assert set(v) == set(applicable_attributes(a))
        assert all(ok for k, ok in v.items() if k != "pitch")
        assert ("pitch" in v) == (a["pitch"] is not None) and not v.get("pitch", False)
    default = classifier_verdicts(wrong_pitch, attrs)
    assert all(set(v) == set(applicable_attributes(a)) & set(SCORED_ATTRIBUTES) for v, a in zip(default, attrs))


def test_verdict_agreement_closed_form():
    a = [{"pitch": True, "count": True}, {"pitch": False, "source": True}, {"count": False}]
    b = [{"pitch": True, "count": False}, {"pitch": False}, {"count": False, "family": True}]
    assert verdict_agreement(a, b) == {"count": 0.5, "pitch": 1.0}


# ---- preview fidelity ----

def test_mean_pairwise_distances_closed_form():
    a = np.eye(3)
    paired, unpaired = mean_pairwise_distances(a, np.roll(a, -1, axis=0))  # b_j = e_{j+1}
    assert paired == pytest.approx(np.sqrt(2))
    assert unpaired == pytest.approx(np.sqrt(2) / 2)  # 3 of the 6 off-diagonal pairs coincide


def test_preview_fidelity_identical_and_changed_results():
    attrs = [a for _, a in heldout_prompts(4, seed=1)]
    preview = one_hot_outputs(attrs, np.eye(4))
    same = preview_fidelity(preview, one_hot_outputs(attrs, np.eye(4)))
    assert same.mean_agreement == 1.0 and same.distance == 0.0 and same.relative_distance == 0.0
    changed = [dict(a) for a in attrs]
    changed[0]["source"] = "rain" if attrs[0]["source"] != "rain" else "hiss"
    changed[1]["loudness"] = "quiet" if attrs[1]["loudness"] == "loud" else "loud"
    pf = preview_fidelity(preview, one_hot_outputs(changed, np.roll(np.eye(4), -1, axis=0)))
    assert pf.agreement["source"] == 0.75 and pf.agreement["loudness"] == 0.75
    assert pf.agreement["reverb"] == 1.0
    # paired distance sqrt(2); unpaired: 4 of 12 off-diagonal pairs coincide -> mean sqrt(2) * 8 / 12
    assert pf.relative_distance == pytest.approx(1.5)


def test_preview_fidelity_rejects_mismatched_sets():
    attrs = [a for _, a in heldout_prompts(3, seed=1)]
    with pytest.raises(ValueError, match="same N"):
        preview_fidelity(one_hot_outputs(attrs, np.eye(3)), one_hot_outputs(attrs[:2], np.eye(2, 3)))


# ---- metrics on reference clips ----

def test_reference_against_itself_scores_zero_fd_and_kl():
    prompts = load_prompt_set("synthcaps-heldout", 6, seed=2)
    waves, sr = prompts.reference()
    rng = np.random.default_rng(0)
    outputs = one_hot_outputs(prompts.attrs, rng.standard_normal((6, 4)))
    out = evaluate_clips(outputs, waves, sr, prompts, ["fd_synth", "kl", "judge"], reference=outputs)
    assert out["fd_synth"] == pytest.approx(0.0, abs=1e-9)
    assert out["kl"]["ref_to_gen"] == pytest.approx(0.0, abs=1e-12)
    expected = [judge_measurement(measure(w, sr), a) for w, a in zip(waves, prompts.attrs)]
    assert out["judge"]["support"] == {k: sum(k in v for v in expected) for k in out["judge"]["support"]}


def test_prompt_sets_from_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("a loud beep\n\n  two quiet knocks \n")
    ps = load_prompt_set(str(txt), None)
    assert ps.captions == ["a loud beep", "two quiet knocks"] and ps.attrs is None and not ps.paired
    with pytest.raises(ValueError, match="prompts"):
        load_prompt_set(str(tmp_path / "missing.txt"), None)
    ps = load_prompt_set("synthcaps-heldout-combo", 3)
    assert isinstance(ps, PromptSet) and [c for c, _ in heldout_prompts(3, 0, "heldout_combo")] == ps.captions


# ---- the CLI ----

@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    make_pipeline(root / "model")
    SynthCapsClassifier(SMALL).eval().save_pretrained(root / "classifier")
    return root


def run_cli(folders, out, *extra):
    return main(["--model", str(folders / "model"), "--classifier", str(folders / "classifier"), "--n", "4",
                 "--batch-size", "4", "--out", str(out), *extra])


def test_eval_cli_writes_json_and_markdown(folders, tmp_path):
    out = tmp_path / "r" / "results.json"
    assert run_cli(folders, out, "--metrics", "fd_synth,attr,judge,kl,is") == 0
    res = json.loads(out.read_text())
    assert set(res) >= {"model", "prompts", "n", "settings", "generation", "metrics"}
    assert set(res["metrics"]) == {"fd_synth", "fd_synth_floor", "attr", "judge", "kl", "is"}
    assert res["n"] == 4 and res["generation"]["nfe"] == 1 and res["settings"]["sampler"] == "ctm"
    attrs = [a for _, a in heldout_prompts(4, 0)]
    assert res["metrics"]["attr"]["support"]["source"] == 4
    assert res["metrics"]["attr"]["support"].get("pitch", 0) == sum(a["pitch"] is not None for a in attrs)
    for name in ("attr", "judge"):
        assert all(0.0 <= v <= 1.0 for v in res["metrics"][name]["accuracy"].values())
    assert res["metrics"]["fd_synth"] >= 0.0 and res["metrics"]["fd_synth_floor"] >= 0.0
    md = out.with_suffix(".md").read_text()
    assert "| fd_synth |" in md and "**attr** per attribute" in md


def test_eval_cli_teacher_nfe(folders, tmp_path):
    out = tmp_path / "t.json"
    assert run_cli(folders, out, "--metrics", "attr", "--sampler", "teacher", "--teacher-solver", "euler",
                   "--steps", "2", "--guidance", "1") == 0
    assert json.loads(out.read_text())["generation"]["nfe"] == 2  # 2 Euler steps, no CFG pair at ω = 1


@pytest.mark.parametrize("extra, message", [
    (["--metrics", "fd_synth,bogus"], "--metrics"),
    (["--metrics", "clap"], "--clap"),
    (["--gamma", "1.5"], "--gamma"),
    (["--steps", "0"], "--steps"),
    (["--prompts", "no-such-set"], "--prompts"),
    (["--sampler", "ddim"], "sampler"),
])
def test_eval_cli_bad_input_exits_2(folders, tmp_path, capsys, extra, message):
    assert run_cli(folders, tmp_path / "x.json", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()


def test_eval_cli_bad_model_and_attribute_metrics_on_text(folders, tmp_path, capsys):
    assert main(["--model", str(tmp_path), "--out", str(tmp_path / "x.json")]) == 2
    assert "--model" in capsys.readouterr().err
    txt = tmp_path / "p.txt"
    txt.write_text("a loud beep\na quiet bell\n")
    assert run_cli(folders, tmp_path / "x.json", "--prompts", str(txt), "--metrics", "attr") == 2
    assert "attributes" in capsys.readouterr().err


def test_prompt_set_from_a_synthcaps_manifest(tmp_path):
    from soundctm.data.synthcaps import SynthCaps
    from soundctm.data.synthcaps import main as synthcaps_main

    assert synthcaps_main(["--out", str(tmp_path), "--n", "3", "--split", "heldout", "--seed", "5"]) == 0
    ps = load_prompt_set(str(tmp_path / "heldout.csv"), None)
    truth = [SynthCaps(3, seed=5, split="heldout")[i] for i in range(3)]
    assert ps.captions == [c for _, c, _ in truth] and ps.paired
    assert [a["source"] for a in ps.attrs] == [a["source"] for _, _, a in truth]
    waves, sr = ps.reference()
    assert sr == 16000
    np.testing.assert_allclose(waves, np.stack([w for w, _, _ in truth]), atol=2 / 32768)  # 16-bit PCM


def test_eval_cli_corrupt_classifier_exits_2_before_generating(folders, tmp_path, capsys):
    bad = tmp_path / "cls"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    args = ["--model", str(folders / "model"), "--classifier", str(bad), "--n", "2", "--out", str(tmp_path / "x.json")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("soundctm eval: error: ") and "is not a model directory" in err and len(err.splitlines()) == 1


def test_eval_cli_takes_a_bundled_model_by_name(tmp_path, monkeypatch, capsys):
    from soundctm.metrics.cli import build_parser, validate_args
    from soundctm.pipeline import DEFAULT_MODEL

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["--model", "synthcaps-tiny"])
    validate_args(args)
    assert args.model == DEFAULT_MODEL
    assert main(["--model", "synthcaps-huge", "--out", str(tmp_path / "x.json")]) == 2
    assert "bundled: synthcaps-tiny" in capsys.readouterr().err


def test_eval_judge_headline_averages_what_the_judge_tables_score():
    """soundctm eval's judge mean and the benchmark tables average the same attributes (fade is reported only)."""
    from soundctm.metrics.synthcaps_eval import JUDGE_KEYS
    from soundctm.metrics.synthcaps_judge import JUDGED_ATTRIBUTES

    assert tuple(JUDGE_KEYS) == tuple(JUDGED_ATTRIBUTES) and "fade" not in JUDGE_KEYS
    acc = accuracy_of_verdicts([{"pitch": True, "fade": False}, {"pitch": True, "fade": False}], JUDGE_KEYS)
    assert acc.mean == 1.0 and acc.accuracy["fade"] == 0.0
