"""Train the digit classifier behind the image metrics (Fréchet distance, class accuracy) on the train split.

    python recipes/train_digit_classifier.py --out soundctm/pretrained/digits/classifier
    python recipes/train_digit_classifier.py --arch mlp --seed 1 --steps 6000 --out soundctm/pretrained/digits/judge

The second is the guidance benchmark's judge (``benchmarks/guided_digits.py``): another seed and architecture than
the classifier that steers the samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from soundctm.data.digits import DigitsConfig, load_digit_split
from soundctm.metrics.digits import (
    ARCHS,
    ClassifierTraining,
    DigitClassifierConfig,
    classifier_accuracy,
    train_digit_classifier,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="train_digit_classifier", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("soundctm/pretrained/digits/classifier"))
    p.add_argument("--steps", type=int, default=ClassifierTraining.steps)
    p.add_argument("--size", type=int, default=8, choices=[8, 16])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arch", default="cnn", choices=ARCHS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    torch.set_num_threads(1)
    data = DigitsConfig(size=args.size)
    split = load_digit_split(data)
    training = ClassifierTraining(steps=args.steps, seed=args.seed)
    start = time.perf_counter()
    net = train_digit_classifier(split.train_x, split.train_y, DigitClassifierConfig(size=args.size, arch=args.arch),
                                training)
    seconds = time.perf_counter() - start
    net.save_pretrained(args.out)
    acc = classifier_accuracy(net, split.test_x, split.test_y)
    provenance = {"command": " ".join(sys.argv), "data": asdict(data), "training": asdict(training),
                  "metrics": {"heldout_accuracy": acc, "train_seconds": seconds}}
    (args.out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"held-out accuracy {acc:.4f} ({len(split.test_y)} images), {seconds:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
