"""Average the weights of exported students fine-tuned from the same start (a "model soup").

    python recipes/average_students.py runs/stage6a/student runs/stage6b/student --out runs/soup6/student

``--weights`` gives one weight per student instead of the uniform 1/n; they must sum to 1. A negative weight
extrapolates: ``start fine-tuned --weights -1 2`` walks a fine-tune's step from its start once more.

Students of one architecture only (same tensor names and shapes, same time embedding); integer buffers are taken
from the first. The result is an exported student folder (config.json + model.safetensors + provenance.json).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from soundctm.nn.unet import TwoTimeTextUNet, architecture_mismatch


def average_students(dirs: list[str | Path], weights: list[float] | None = None) -> TwoTimeTextUNet:
    """The first student with every floating-point tensor replaced by the ``weights``-weighted sum over ``dirs``
    (default: the mean)."""
    if not dirs:
        raise ValueError("name at least one student folder")
    if weights is None:
        weights = [1.0 / len(dirs)] * len(dirs)
    if len(weights) != len(dirs):
        raise ValueError(f"--weights needs one weight per student ({len(dirs)}), got {len(weights)}")
    if not all(math.isfinite(w) for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"--weights must be finite and sum to 1, got {weights} (sum {sum(weights):g})")
    for d in dirs:
        if not Path(d, "config.json").is_file():
            raise FileNotFoundError(f"{str(d)!r} is not an exported student folder (no config.json)")
    students = [TwoTimeTextUNet.from_pretrained(d) for d in dirs]
    first = students[0]
    states = [s.state_dict() for s in students]
    for d, s in zip(dirs[1:], students[1:]):
        why = architecture_mismatch(first, s)
        if why:
            raise ValueError(f"student {str(d)!r} has another architecture than {str(dirs[0])!r}: {why}")
    w = torch.tensor(weights, dtype=torch.float64)
    averaged = {k: torch.einsum("n,n...->...", w, torch.stack([st[k].double() for st in states])).to(v.dtype)
                if v.is_floating_point() else v for k, v in states[0].items()}
    first.load_state_dict(averaged)
    return first


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="average_students", description=__doc__.splitlines()[0])
    p.add_argument("students", nargs="+", help="exported student folders")
    p.add_argument("--out", required=True)
    p.add_argument("--weights", type=float, nargs="+", help="one weight per student, summing to 1 (default 1/n)")
    args = p.parse_args(argv)
    try:
        avg = average_students(args.students, args.weights)
    except (ValueError, FileNotFoundError) as err:
        print(f"average_students: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    avg.save_pretrained(out)
    sources = [Path(d, "provenance.json") for d in args.students]
    provenance = {"average_of": args.students, "weights": args.weights,
                  "sources": [json.loads(f.read_text()) if f.is_file() else None for f in sources]}
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"average of {len(args.students)} students in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
