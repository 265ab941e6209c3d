"""Solve the CFG-guided teacher's PF-ODE from x_T to the data end for cached captions: (x_T, ω, caption, x_0) pairs.

    python recipes/teacher_pairs.py --teacher runs/teacher_tiny/teacher --cache-dir cache/synthcaps-train \
        --out cache/teacher_pairs.safetensors --n 2048 [--steps 18] [--batch 32] [--seed 0]

The CTM recipe can add a 1-step term on such pairs (``ctm.pairs_path``): ‖G(x_T, T, σ_min; ω) − x_0‖ in the
same distance as the CTM loss. ``--path M`` also keeps the states at the interior points of the M-step Karras
grid the CTM sampler uses (``path [N, M−1, ...]``, ``path_sigma [M−1]``; needs M to divide steps − 1): with them the
recipe trains the jumps of multistep sampling on the teacher's own trajectory (``ctm.pairs_steps``). Generation is
resumable: the file is rewritten atomically after every batch and
a rerun with the same arguments continues after the pairs already there. Processes with different ``--seed`` draw
different pairs; ``--merge A B ... --out C`` concatenates their files (2 processes of 1 thread each fill this
2-core CPU better than one of 2 threads).

``--keep-judged A --model PIPELINE --cache-dir DIR --out B`` keeps the pairs of A whose x_0, decoded by the
pipeline's VAE and vocoder, passes the SynthCaps judge on every attribute its caption prompts (family, pitch, count,
sweep, loudness; the cache records each caption's attributes): distillation targets without the teacher's misses.
``--attributes sweep,count`` draws only captions that prompt those attributes, to spend the solves where the
teacher misses most and filtering leaves fewest targets.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm import tqdm

from soundctm.core import samplers, schedule
from soundctm.data.cache import LatentCacheDataset
from soundctm.data.teacher_pairs import KEYS, load_pairs, save_pairs
from soundctm.nn.unet import TextUNet
from soundctm.train.tasks import guided_teacher


def path_grid(steps: int, path_steps: int, sigma_min: float, sigma_max: float) -> tuple[list[int], torch.Tensor]:
    """Indices into the solve's grid ``karras_sigmas(steps)`` of the interior points of the ``path_steps``-step CTM
    grid ``karras_sigmas(path_steps + 1)`` (the same σ when ``path_steps`` divides ``steps − 1``), and their σ."""
    if path_steps < 2 or (steps - 1) % path_steps:
        raise ValueError(f"--path must be 0 (off) or >= 2 and divide --steps − 1 = {steps - 1}, got {path_steps}")
    keep = [(steps - 1) // path_steps * j for j in range(1, path_steps)]
    return keep, schedule.karras_sigmas(steps, sigma_min, sigma_max)[keep]


@torch.no_grad()
def solve_batch(teacher, data: LatentCacheDataset, caption_index: torch.Tensor, omega: torch.Tensor,
                x_T: torch.Tensor, steps: int, sigma_data: float, sigma_min: float, sigma_max: float,
                keep: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Heun from σ_max to 0 on the Karras grid with the ω-guided teacher, one ω per sample; returns x_0 and the
    states at the grid indices ``keep`` stacked as ``[B, len(keep), ...]`` (None if ``keep`` is empty)."""
    uncond = data.unconditional
    D = guided_teacher(teacher, sigma_data, "omega", uncond.tokens, uncond.mask)
    sig = schedule.append_zero(schedule.karras_sigmas(steps, sigma_min, sigma_max))
    kept = {}

    def keep_state(info):
        if info["i"] + 1 in keep:
            kept[info["i"] + 1] = info["x"].clone()

    x0 = samplers.sample_ode(D, x_T, sig, "heun", callback=keep_state, omega=omega,
                             tokens=data.text.tokens[caption_index], mask=data.text.mask[caption_index])
    return x0, (torch.stack([kept[i] for i in keep], 1) if keep else None)


def merge_pairs(paths: list[str | os.PathLike], out: str | os.PathLike) -> int:
    """Concatenate pairs files (atomically written to ``out``); returns the number of pairs."""
    parts = [load_pairs(path) for path in paths]
    shapes = {tuple(part["x_T"].shape[1:]) for part in parts}
    if len(shapes) != 1:
        raise ValueError(f"pairs files to merge have different latent shapes {sorted(shapes)}")
    with_path = {"path" in part for part in parts}
    if len(with_path) != 1:
        raise ValueError("pairs files to merge must all have a path or none")
    merged = {k: torch.cat([part[k] for part in parts]) for k in KEYS}
    if with_path == {True}:
        sigmas = [part["path_sigma"] for part in parts]
        if any(sg.shape != sigmas[0].shape or not torch.allclose(sg, sigmas[0]) for sg in sigmas):
            raise ValueError("pairs files to merge keep their paths at different σ")
        merged.update(path=torch.cat([part["path"] for part in parts]), path_sigma=sigmas[0])
    save_pairs(merged, out, {"merged": ",".join(str(path) for path in paths)})
    return len(merged["omega"])


def caption_attributes(data: LatentCacheDataset) -> dict[int, dict]:
    """Per caption index, the attributes its first cached sample records (a SynthCaps caption states the judged
    ones). Empty when the cache records none."""
    if not data.attributes:
        return {}
    first: dict[int, int] = {}
    for i, c in enumerate(data.caption_index.tolist()):
        first.setdefault(c, i)
    return {c: {k: v[i] for k, v in data.attributes.items()} for c, i in first.items()}


def eligible_samples(data: LatentCacheDataset, wanted: tuple[str, ...]) -> torch.Tensor:
    """Indices of the cached samples whose caption prompts any of the judged attributes ``wanted`` (all samples when
    ``wanted`` is empty): ``--attributes`` spends the teacher's solves on the captions it misses most."""
    if not wanted:
        return torch.arange(len(data))
    from soundctm.metrics.synthcaps_judge import JUDGED_ATTRIBUTES, prompted_attributes

    bad = sorted(set(wanted) - set(JUDGED_ATTRIBUTES))
    if bad:
        raise ValueError(f"--attributes must name judged attributes {list(JUDGED_ATTRIBUTES)}, got {bad}")
    table = caption_attributes(data)
    if not table:
        raise ValueError("--attributes needs a cache that records caption attributes (a SynthCaps cache does)")
    chosen = {c for c, attrs in table.items() if set(prompted_attributes(attrs)) & set(wanted)}
    pool = [i for i, c in enumerate(data.caption_index.tolist()) if c in chosen]
    if not pool:
        raise ValueError(f"no cached caption prompts any of --attributes {list(wanted)}")
    return torch.tensor(pool, dtype=torch.long)


def judge_pairs(pairs: dict[str, torch.Tensor], attributes: dict[int, dict], decode, sample_rate: int,
                batch: int = 64) -> tuple[torch.Tensor, dict[str, float], list[tuple[str, ...]]]:
    """Which pairs' x_0 pass every judged attribute of their caption (``decode``: latents → waveforms [B, T]); the
    pass rate per attribute over the pairs that prompt it; and per pair the attributes its caption prompts (sorted)."""
    from soundctm.metrics.synthcaps_judge import JUDGED_ATTRIBUTES, judge_scored

    keep, prompted, hits = [], [], {a: [] for a in JUDGED_ATTRIBUTES}
    captions = pairs["caption_index"].tolist()
    missing = sorted({c for c in captions if c not in attributes})
    if missing:
        raise ValueError(f"the cache records no attributes for caption indices {missing[:5]}")
    for i in tqdm(range(0, len(captions), batch), desc="judging x_0", unit="batch"):
        waves = decode(pairs["x0"][i: i + batch])
        for wave, c in zip(waves, captions[i: i + batch]):
            verdict = judge_scored(wave, sample_rate, attributes[c])
            for k, ok in verdict.items():
                hits[k].append(ok)
            keep.append(all(verdict.values()))
            prompted.append(tuple(sorted(verdict)))
    rates = {k: sum(v) / len(v) for k, v in hits.items() if v}
    return torch.tensor(keep, dtype=torch.bool), rates, prompted


def balance_rows(keep: torch.Tensor, groups: list, cap: int = 4) -> torch.Tensor:
    """Row indices of the kept pairs, each repeated so that every group (e.g. the attributes a caption prompts)
    keeps about its share of the pairs before judging: a group whose pairs pass at rate r is repeated
    round(r_max / r) times, at most ``cap``. Judging keeps far fewer sweep captions than family-only ones, and a
    uniform draw from the kept pairs would then under-train the attributes the teacher misses most."""
    if len(groups) != len(keep):
        raise ValueError(f"groups has {len(groups)} entries for {len(keep)} pairs")
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    flags = keep.tolist()
    total = Counter(groups)
    kept = Counter(g for g, k in zip(groups, flags) if k)
    if not kept:
        return torch.zeros(0, dtype=torch.long)
    rate = {g: kept[g] / total[g] for g in kept}
    top = max(rate.values())
    repeat = {g: min(cap, max(1, round(top / r))) for g, r in rate.items()}
    rows = [i for i, (g, k) in enumerate(zip(groups, flags)) if k for _ in range(repeat[g])]
    return torch.tensor(rows, dtype=torch.long)


def keep_rows(pairs: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """The pairs ``keep`` selects, a boolean mask or row indices (repeats allowed), in every per-pair tensor;
    ``path_sigma`` is shared and stays whole."""
    return {k: (v if k == "path_sigma" else v[keep]) for k, v in pairs.items()}


def keep_judged(src: str | os.PathLike, model: str | os.PathLike, cache_dir: str | os.PathLike,
                out: str | os.PathLike, balance: bool = False) -> tuple[int, int, dict[str, float], int]:
    """``--keep-judged``: write the judged-correct pairs of ``src`` to ``out``, with ``balance`` repeated per
    ``balance_rows`` over the attribute sets their captions prompt; returns (kept, total, pass rates, rows
    written)."""
    from soundctm.pipeline import SoundCTM

    pairs = load_pairs(src)
    attributes = caption_attributes(LatentCacheDataset(cache_dir, in_memory=False))
    if not attributes:
        raise ValueError(f"cache {str(cache_dir)!r} records no caption attributes (a SynthCaps cache does)")
    pipe = SoundCTM.from_pretrained(model)
    with torch.no_grad():
        keep, rates, prompted = judge_pairs(pairs, attributes, pipe.decode, pipe.config.sample_rate)
    kept = keep_rows(pairs, balance_rows(keep, prompted) if balance else keep)
    save_pairs(kept, out, {"kept_judged_from": str(src), "kept": f"{int(keep.sum())}/{len(keep)}",
                           "balanced": str(balance),
                           "teacher_pass_rates": ",".join(f"{k}={v:.3f}" for k, v in rates.items())})
    return int(keep.sum()), len(keep), rates, len(kept["omega"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="teacher_pairs", description=__doc__.splitlines()[0])
    p.add_argument("--teacher")
    p.add_argument("--cache-dir")
    p.add_argument("--out", required=True)
    p.add_argument("--merge", nargs="+", metavar="FILE", help="concatenate these pairs files into --out instead")
    p.add_argument("--keep-judged", metavar="FILE",
                   help="write to --out only the pairs of FILE whose x_0 the SynthCaps judge passes (needs --model, "
                        "--cache-dir)")
    p.add_argument("--model", help="--keep-judged: the pipeline folder whose VAE and vocoder decode x_0")
    p.add_argument("--balance", action="store_true",
                   help="--keep-judged: repeat the kept pairs so each set of prompted attributes keeps its share "
                        "of the pairs (a group passing at rate r repeated round(r_max / r) times, at most 4)")
    p.add_argument("--attributes", default="", metavar="A[,B]",
                   help="draw only captions that prompt any of these judged attributes (e.g. sweep,count); "
                        "default: all captions")
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--steps", type=int, default=18, help="Heun steps (2·steps − 1 guided evaluations)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--path", type=int, default=0, metavar="M",
                   help="also keep the states on the M-step CTM grid (M >= 2 divides steps − 1; 0 = only x_0)")
    p.add_argument("--omega-min", type=float, default=1.0)
    p.add_argument("--omega-max", type=float, default=5.0)
    p.add_argument("--sigma-data", type=float, default=0.5)
    p.add_argument("--sigma-min", type=float, default=0.002)
    p.add_argument("--sigma-max", type=float, default=80.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p


def run_merge(args) -> str:
    try:
        n = merge_pairs(args.merge, args.out)
    except (ValueError, OSError) as err:
        raise ValueError(f"--merge: {err}") from None
    return f"{n} pairs in {args.out}"


def run_keep_judged(args) -> str:
    if not (args.model and args.cache_dir):
        raise ValueError("--keep-judged needs --model and --cache-dir")
    try:
        kept, total, rates, rows = keep_judged(args.keep_judged, args.model, args.cache_dir, args.out, args.balance)
    except (ValueError, OSError) as err:
        raise ValueError(f"--keep-judged: {err}") from None
    return (f"kept {kept} of {total} pairs ({rows} rows) in {args.out}; the teacher's pass rate per attribute: "
            + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))


def check_solve_args(args) -> None:
    """ValueError naming the first bad argument of a solve run."""
    for name in ("teacher", "cache_dir"):
        if not getattr(args, name):
            raise ValueError(f"--{name.replace('_', '-')} is required (unless --merge)")
    for name in ("n", "steps", "batch"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 0 <= args.omega_min <= args.omega_max:
        raise ValueError(f"need 0 <= --omega-min <= --omega-max, got {args.omega_min}, {args.omega_max}")


def resumed(out: Path, keys: tuple[str, ...], path: int, wanted: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The pairs already in ``out`` (empty tensors for a new file), refused if started with other arguments."""
    if not out.is_file():
        return {k: torch.empty(0) for k in keys}
    done = load_pairs(out)
    had = len(done["path_sigma"]) + 1 if "path" in done else 0
    if had != path:
        raise ValueError(f"{out} was started with --path {had}; resume it with the same arguments")
    with safe_open(str(out), "pt") as f:
        started = (f.metadata() or {}).get("attributes", "")
    if started != ",".join(wanted):
        raise ValueError(f"{out} was started with --attributes {started!r}; resume it with the same arguments")
    return done


def run_solve(args) -> str:
    """Solve ``--n`` pairs into ``--out`` batch by batch, resuming a file written with the same arguments."""
    check_solve_args(args)
    keep, path_sigma = path_grid(args.steps, args.path, args.sigma_min, args.sigma_max) if args.path else ([], None)
    keys = KEYS + ("path",) if args.path else KEYS
    torch.set_num_threads(args.threads)
    data = LatentCacheDataset(args.cache_dir)
    wanted = tuple(a.strip() for a in args.attributes.split(",") if a.strip())
    pool = eligible_samples(data, wanted)
    teacher = TextUNet.from_pretrained(args.teacher).eval().requires_grad_(False)
    out = Path(args.out)
    done = resumed(out, keys, args.path, wanted)
    have = len(done["omega"])
    # every batch's draws depend only on (seed, batch start): a resumed run continues the same sequence
    bar = tqdm(total=args.n, initial=have, desc="teacher pairs", unit="pair")
    for start in range(have, args.n, args.batch):
        b = min(args.batch, args.n - start)
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + start)
        caption_index = data.caption_index[pool[torch.randint(0, len(pool), (b,), generator=gen)]]
        omega = args.omega_min + (args.omega_max - args.omega_min) * torch.rand(b, generator=gen)
        x_T = torch.randn(b, *data.latent(0).shape, generator=gen) * args.sigma_max
        x0, path = solve_batch(teacher, data, caption_index, omega, x_T, args.steps, args.sigma_data,
                               args.sigma_min, args.sigma_max, tuple(keep))
        new = {"x_T": x_T, "x0": x0, "omega": omega, "caption_index": caption_index.long()}
        if args.path:
            new["path"] = path
        done = {k: torch.cat([done[k].to(new[k].dtype).reshape(-1, *new[k].shape[1:]), new[k]]) for k in keys}
        if args.path:
            done["path_sigma"] = path_sigma
        save_pairs(done, out, {"teacher": str(args.teacher), "steps": str(args.steps), "seed": str(args.seed),
                               "attributes": ",".join(wanted)})
        bar.update(b)
    bar.close()
    return f"{len(done['omega'])} pairs in {out}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.balance and not args.keep_judged:
            raise ValueError("--balance applies to --keep-judged only")
        run = run_merge if args.merge else run_keep_judged if args.keep_judged else run_solve
        print(run(args))
    except (ValueError, OSError) as err:  # OSError: a missing teacher or cache folder
        print(f"teacher_pairs: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
