"""Train the SynthCaps classifier-embedder (attribute heads + FD_synth embedding) and report its held-out accuracy.

Training clips: clean SynthCaps train clips, plus train clips sent through the generator's front-end and back
(64-band log-mel → Griffin-Lim, and with ``--vae DIR`` also mel → VAE → Griffin-Lim), with mel-domain gain, blur and
noise-floor augmentation. Evaluation: fresh held-out clips (clean, Griffin-Lim round trip, VAE round trip) and the
held-out attribute combinations. Writes the model folder (config.json, model.safetensors, provenance.json) and
``benchmarks/results/synthcaps_classifier.{md,json}``.

    nice -n 5 .venv/bin/python recipes/train_synthcaps_classifier.py \\
        --out soundctm/pretrained/synthcaps-classifier [--vae soundctm/pretrained/synthcaps-tiny/vae]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from soundctm.audio.mel import MelConfig, MelSpectrogram
from soundctm.audio.vocoder import GriffinLimVocoder
from soundctm.metrics.synthcaps_classifier import (
    COMBO_SEED_OFFSET,
    CORE_ATTRIBUTES,
    HEADS,
    ClassifierTraining,
    SynthCapsClassifier,
    SynthCapsClassifierConfig,
    decode_logits,
    labels_of,
    log_mels_of_waves,
    per_attribute_accuracy,
    predict_log_mels,
    synthcaps_waves,
    train_synthcaps_classifier,
    vocode_waves,
)

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
EVAL_GL_ITERS = 32  # as the bundled pipeline's vocoder


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_vae(path: Path | None):
    if path is None:
        return None
    from soundctm.audio.vae import AudioVAE

    return AudioVAE.from_pretrained(path).eval().requires_grad_(False)


def training_sets(training: ClassifierTraining, cls_mel: MelSpectrogram, gen_mel: MelSpectrogram, vae, seed: int):
    """(clean, vocoded) pairs of (log-mels, labels); vocoded clips are other train clips than the clean ones.

    The clean set also holds ``n_combo`` heldout_combo clips of another seed: the generator never sees those
    combinations, but the classifier that judges it must read them.
    """
    waves, attrs = synthcaps_waves(training.n_clean, seed, "train")
    if training.n_combo:
        combo_waves, combo_attrs = synthcaps_waves(training.n_combo, seed + COMBO_SEED_OFFSET, "heldout_combo")
        waves, attrs = np.concatenate([waves, combo_waves]), attrs + combo_attrs
    clean = (log_mels_of_waves(waves, cls_mel), labels_of(attrs))
    chains = [None] + ([vae] if vae is not None else [])
    vocoder = GriffinLimVocoder(gen_mel.config, n_iter=training.griffin_lim_iters)
    xs, ys = [], []
    for k, chain_vae in enumerate(chains):
        start = training.n_clean + k * training.n_vocoded
        w, a = synthcaps_waves(training.n_vocoded, seed, "train", start=start)
        xs.append(log_mels_of_waves(vocode_waves(w, gen_mel, vocoder, chain_vae), cls_mel))
        ys.append(labels_of(a))
    vocoded = (torch.cat(xs), torch.cat(ys)) if training.n_vocoded else None
    return clean, vocoded


def evaluate(net: SynthCapsClassifier, gen_mel: MelSpectrogram, vae, n_eval: int, n_vocoded_eval: int,
             seed: int) -> dict:
    """Per-attribute accuracy on held-out sets: {set: {"all": {h: acc}, "present": {h: acc}, "support": ...}}."""
    sets = {}
    waves, attrs = synthcaps_waves(n_eval, seed, "heldout")
    sets["heldout"] = (waves, attrs)
    sets["heldout_combo"] = synthcaps_waves(max(1, n_eval // 2), seed, "heldout_combo")
    vocoder = GriffinLimVocoder(gen_mel.config, n_iter=EVAL_GL_ITERS)
    m = min(n_vocoded_eval, n_eval)
    sets["heldout mel→GL"] = (vocode_waves(waves[:m], gen_mel, vocoder), attrs[:m])
    if vae is not None:
        sets["heldout mel→VAE→GL"] = (vocode_waves(waves[:m], gen_mel, vocoder, vae), attrs[:m])
    return {name: accuracy_report(net, w, a) for name, (w, a) in sets.items()}


def accuracy_report(net: SynthCapsClassifier, waves, attrs) -> dict:
    pred = decode_logits(predict_log_mels(net, log_mels_of_waves(waves, net.mel)))
    every = per_attribute_accuracy(pred, attrs)
    present = per_attribute_accuracy(pred, attrs, present_only=True)
    return {
        "n": len(attrs),
        "all": {h: c / t for h, (c, t) in every.items()},
        "present": {h: (c / t if t else None) for h, (c, t) in present.items()},
        "present_support": {h: t for h, (_, t) in present.items()},
    }


def render_markdown(report: dict) -> str:
    lines = [
        "# SynthCaps classifier-embedder: held-out accuracy per attribute",
        "",
        f"`{report['command']}` — training {report['train_seconds']:.0f} s on one thread "
        f"({report['n_params']} parameters, {report['weights_bytes'] / 1e6:.2f} MB). "
        "*all*: every clip, `None`/`False` being a class of its own (e.g. 'no pitch' for a drum); "
        "*present*: only clips whose true value is set. Core attributes (the ≥ 95 % target): "
        + ", ".join(CORE_ATTRIBUTES) + ".",
        "",
        "| set | n | " + " | ".join(HEADS) + " |",
        "| --- | ---: |" + " ---: |" * len(HEADS),
    ]
    for name, r in report["evaluation"].items():
        for kind in ("all", "present"):
            cells = [("–" if r[kind][h] is None else f"{100 * r[kind][h]:.1f}%") for h in HEADS]
            lines.append(f"| {name} ({kind}) | {r['n']} | " + " | ".join(cells) + " |")
    lines += ["", f"Minimum over core attributes, clean held-out (all / present): "
              f"{100 * report['core_min']['all']:.1f}% / {100 * report['core_min']['present']:.1f}%."]
    return "\n".join(lines) + "\n"


def parse_args(argv):
    d = ClassifierTraining()
    p = argparse.ArgumentParser(prog="train_synthcaps_classifier", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("soundctm/pretrained/synthcaps-classifier"))
    p.add_argument("--vae", type=Path, default=None, help="VAE folder: also train on mel → VAE → Griffin-Lim clips")
    p.add_argument("--n-clean", type=int, default=d.n_clean)
    p.add_argument("--n-combo", type=int, default=d.n_combo, help="heldout_combo clips (another seed) to train on")
    p.add_argument("--n-vocoded", type=int, default=d.n_vocoded, help="clips per vocoding chain")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--n-eval", type=int, default=1000, help="held-out clips (half as many held-out combos)")
    p.add_argument("--n-vocoded-eval", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", type=Path, default=RESULTS, help="folder for synthcaps_classifier.{md,json}")
    args = p.parse_args(argv)
    for name in ("n_clean", "steps", "batch", "n_eval"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    config = SynthCapsClassifierConfig()
    training = replace(ClassifierTraining(), n_clean=args.n_clean, n_combo=args.n_combo, n_vocoded=args.n_vocoded,
                       steps=args.steps, batch=args.batch, seed=args.seed)
    vae = load_vae(args.vae)
    gen_mel = MelSpectrogram(vae.config.mel if vae is not None else MelConfig())
    cls_mel = MelSpectrogram(config.mel_config())
    start = time.perf_counter()
    clean, vocoded = training_sets(training, cls_mel, gen_mel, vae, args.seed)
    print(f"data: {len(clean[0])} clean + {0 if vocoded is None else len(vocoded[0])} vocoded clips, "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    net = train_synthcaps_classifier(clean, vocoded, config, training,
                                     log=lambda s, v: print(f"step {s} loss {v:.4f}", flush=True))
    train_seconds = time.perf_counter() - start
    net.save_pretrained(args.out)
    evaluation = evaluate(net, gen_mel, vae, args.n_eval, args.n_vocoded_eval, seed=args.seed + 1)
    clean_eval = evaluation["heldout"]
    report = {
        "command": "python recipes/train_synthcaps_classifier.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "train_seconds": train_seconds,
        "n_params": sum(p.numel() for p in net.parameters()),
        "weights_bytes": (args.out / "model.safetensors").stat().st_size,
        "training": asdict(training),
        "config": asdict(config),
        "vae": None if args.vae is None else str(args.vae),
        "eval_seed": args.seed + 1,
        "evaluation": evaluation,
        "core_min": {k: min(clean_eval[k][h] for h in CORE_ATTRIBUTES) for k in ("all", "present")},
    }
    data = (f"SynthCaps train split seed {args.seed} + heldout_combo seed {args.seed + COMBO_SEED_OFFSET}; "
            f"evaluated on heldout / heldout_combo seed {args.seed + 1}")
    provenance = {"command": report["command"], "git_commit": git_commit(), "data": data,
                  "training": report["training"], "vae": report["vae"],
                  "metrics": {"train_seconds": train_seconds, "heldout": clean_eval}}
    (args.out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "synthcaps_classifier.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / "synthcaps_classifier.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
