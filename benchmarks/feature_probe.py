"""What could a discriminator on teacher features tell apart? Real latents, the teacher's guided ODE solutions, the
student's sampler jumps.

A GAN term (``recipes/train_soundctm.py``, ``gan.*``) only helps where its discriminator finds a difference. This
benchmark asks a cheaper question first: a logistic probe on the frozen teacher UNet's multi-level features
(per-channel mean and standard deviation over positions, standardised), trained on half of two sample sets and
scored on the other half, at several feature noise levels σ_D. Held-out accuracy near 0.5 says the two sets look
alike to such features; near 1, that they differ. Sets:

- real: latents of the training cache, with their own captions;
- teacher: guided-teacher ODE solutions from a trajectory file (``recipes/teacher_pairs.py --path M``);
- student: the pipeline's student's jumps to σ_min from the same trajectories' states at the starts of the 4-step
  sampler's jumps, at each trajectory's ω and caption (paired with the teacher sample: a pair stays on one side of
  the split).

A second table asks what the recipe's own discriminator learns within a fine-tune: ``FeatureDiscriminator``
(each of ``--online-heads``, the ``gan.head`` choices) trained online on the raw features at one σ_D, with
``gan.batch``-sized draws of each set per step at the recipe's discriminator rate, scored on the held-out half
after each count of steps.

    python benchmarks/feature_probe.py --pairs cache/teacher_path_s34.safetensors [--n 384]

Writes ``benchmarks/results/feature_probe.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def half_split(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices of a random half split of ``n`` rows: (training half, held-out half)."""
    perm = torch.randperm(n, generator=g)
    return perm[: n // 2], perm[n // 2:]


def probe_accuracy(a: torch.Tensor, b: torch.Tensor, seed: int = 0, iters: int = 300) -> float:
    """Held-out accuracy of a logistic probe telling the rows of ``a`` from those of ``b`` (equal counts, row i of
    each on the same side of a random half split, so paired sets cannot leak through their partners)."""
    if a.shape != b.shape or a.ndim != 2 or len(a) < 4:
        raise ValueError(f"a and b must be [n >= 4, d] of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    tr, te = half_split(len(a), torch.Generator().manual_seed(seed))
    xa, xb = a.double(), b.double()
    x_tr, x_te = torch.cat([xa[tr], xb[tr]]), torch.cat([xa[te], xb[te]])
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-8  # standardised with the training half's statistics alone
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    y_tr = torch.cat([torch.ones(len(tr)), torch.zeros(len(tr))]).double()
    y_te = torch.cat([torch.ones(len(te)), torch.zeros(len(te))]).double()
    w = torch.zeros(a.shape[1], dtype=torch.float64, requires_grad=True)
    c = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w, c], lr=1e-2)
    with torch.enable_grad():
        for _ in range(iters):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x_tr @ w + c, y_tr) + 1e-3 * w.square().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return float(((x_te @ w + c > 0).double() == y_te).double().mean())


def online_accuracy(a: list[torch.Tensor], b: list[torch.Tensor], channels: list[int], head: str = "stats",
                    checkpoints=(50, 100, 200, 400, 800), batch: int = 8, lr: float = 6e-4, seed: int = 0,
                    hidden: int = 32) -> dict[int, float]:
    """Held-out accuracy of ``FeatureDiscriminator(channels, hidden, head)`` trained online (RAdam at ``lr``, ``batch``
    rows of each set per step, the GAN's discriminator loss) to tell feature levels ``a`` (reals) from ``b`` (fakes),
    after each step count in ``checkpoints``; row i of both sets on one side of a random half split."""
    from soundctm.core import losses
    from soundctm.nn.discriminator import FeatureDiscriminator

    n = len(a[0])
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)) or n < 4:
        raise ValueError("a and b must be feature levels of one shape with >= 4 rows each")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tr, te = half_split(n, g)
    disc = FeatureDiscriminator(channels, hidden, head)
    opt = torch.optim.RAdam(disc.parameters(), lr=lr)
    out = {}
    for step in range(1, max(checkpoints) + 1):
        i, j = (tr[torch.randint(0, len(tr), (batch,), generator=g)] for _ in range(2))
        loss = losses.gan_discriminator_loss(disc([f[i] for f in a]), disc([f[j] for f in b])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in checkpoints:
            with torch.no_grad():
                out[step] = float(losses.gan_discriminator_accuracy(disc([f[te] for f in a]), disc([f[te] for f in b])))
    return out


def noised_levels(features, x: torch.Tensor, sigma: float, tokens, mask, gen: torch.Generator,
                  batch: int = 64) -> list[torch.Tensor]:
    """Every feature level ``[n, C, H, W]`` of ``x`` noised to σ_D = ``sigma`` (the noise drawn batch by batch)."""
    out = []
    for j in range(0, len(x), batch):
        xs = x[j: j + batch]
        noisy = xs + sigma * torch.randn(xs.shape, generator=gen)
        out.append(features(noisy, torch.full((len(xs),), sigma), tokens[j: j + batch], mask[j: j + batch]))
    return [torch.cat(level) for level in zip(*out)]


def pooled(levels: list[torch.Tensor]) -> torch.Tensor:
    """Per-channel mean and std over positions of every level, side by side: ``[n, 2 · Σ C]``."""
    return torch.cat([torch.cat([f.mean((2, 3)), f.std((2, 3))], 1) for f in levels], 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "soundctm" / "pretrained" / "synthcaps-tiny"))
    p.add_argument("--cache-dir", default=str(ROOT / "cache" / "synthcaps-train"))
    p.add_argument("--pairs", required=True, help="a teacher_pairs.py file written with --path M (M a multiple of 4)")
    p.add_argument("--n", type=int, default=384)
    p.add_argument("--sigmas", default="0.002,0.3,1.5", help="comma-separated feature noise levels σ_D")
    p.add_argument("--online-sigma", type=float, default=0.3, help="σ_D of the online discriminator table")
    p.add_argument("--online-heads", default="conv,stats", help="FeatureDiscriminator heads of that table")
    p.add_argument("--online-steps", default="50,100,200,400,800", metavar="K,K", help="when to score it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "feature_probe"))
    args = p.parse_args(argv)
    try:
        sigmas = [float(s) for s in args.sigmas.split(",")]
    except ValueError:
        sigmas = []
    if not sigmas or min(sigmas) <= 0:
        p.error(f"--sigmas must be comma-separated noise levels > 0, got {args.sigmas!r}")
    if args.n < 8:
        p.error(f"--n must be >= 8, got {args.n}")
    try:
        checkpoints = sorted({int(k) for k in args.online_steps.split(",")})
    except ValueError:
        checkpoints = []
    if not checkpoints or checkpoints[0] < 1:
        p.error(f"--online-steps must be comma-separated step counts >= 1, got {args.online_steps!r}")
    heads = args.online_heads.split(",")
    if args.online_sigma <= 0 or not set(heads) <= {"conv", "stats"}:
        p.error(f"--online-sigma must be > 0 and --online-heads from conv, stats, got {args.online_sigma}, "
                f"{args.online_heads!r}")
    from soundctm.core.precond import CTMPrecond
    from soundctm.data.cache import LatentCacheDataset
    from soundctm.data.teacher_pairs import load_pairs
    from soundctm.nn.unet import TextUNet, TwoTimeTextUNet
    from soundctm.train.ctm_terms import CTMConfig, path_states, teacher_features

    torch.manual_seed(args.seed)
    data = LatentCacheDataset(args.cache_dir)
    teacher = TextUNet.from_pretrained(Path(args.model) / "teacher").eval().requires_grad_(False)
    student = TwoTimeTextUNet.from_pretrained(Path(args.model) / "student").eval().requires_grad_(False)
    features = teacher_features(teacher, 0.5)
    pairs = load_pairs(args.pairs)
    states, grid = path_states(pairs, CTMConfig(pairs_steps=(4,)))
    M = len(grid) - 1
    n = min(args.n, len(pairs["omega"]))
    cap = pairs["caption_index"][:n]
    tokens, mask = data.text.tokens[cap], data.text.mask[cap]
    starts = (torch.arange(n) % 4) * (M // 4)  # the 4-step sampler's jump starts, in turn
    gen = torch.Generator().manual_seed(args.seed)
    real_idx = torch.randperm(len(data), generator=gen)[:n]
    real_cap = data.caption_index[real_idx]
    with torch.no_grad():
        real = torch.stack([data.latent(int(i)) for i in real_idx])
        G = CTMPrecond(student, 0.5)
        jumps = []
        for j in range(0, n, 64):
            sl = slice(j, j + 64)
            a = starts[sl]
            x_a = states[torch.arange(j, j + len(a)), a]
            jumps.append(G(x_a, grid[a], torch.full((len(a),), 0.002), tokens=tokens[sl], mask=mask[sl],
                           omega=pairs["omega"][sl]))
        sets = {"real": (real, data.text.tokens[real_cap], data.text.mask[real_cap]),
                "teacher": (pairs["x0"][:n], tokens, mask), "student": (torch.cat(jumps), tokens, mask)}
        rows, raw = [], None
        for sigma in sigmas:
            levels = {k: noised_levels(features, x, sigma, t, m, gen) for k, (x, t, m) in sets.items()}
            if sigma == args.online_sigma:
                raw = levels
            f = {k: pooled(v) for k, v in levels.items()}
            row = {"sigma_D": sigma}
            for a_name, b_name in (("real", "teacher"), ("real", "student"), ("teacher", "student")):
                row[f"{a_name} vs {b_name}"] = probe_accuracy(f[a_name], f[b_name], seed=args.seed)
            rows.append(row)
            print(row, flush=True)
        if raw is None:  # the online table's σ_D is not among the probe's
            raw = {k: noised_levels(features, x, args.online_sigma, t, m, gen) for k, (x, t, m) in sets.items()}
    channels = [f.shape[1] for f in raw["real"]]
    online = {}
    for head in heads:
        for a_name, b_name in (("real", "teacher"), ("real", "student"), ("teacher", "student")):
            key = f"{head}: {a_name} vs {b_name}"
            online[key] = online_accuracy(raw[a_name], raw[b_name], channels, head, checkpoints, seed=args.seed)
            print(key, online[key], flush=True)
    model_path = Path(args.model).resolve()
    shown_model = model_path.relative_to(ROOT) if model_path.is_relative_to(ROOT) else model_path
    cols = [k for k in rows[0] if k != "sigma_D"]
    lines = ["# What a feature discriminator could tell apart", "",
             f"Held-out accuracy of a logistic probe on the frozen teacher's pooled features (per-channel mean and std "
             f"of every level), {n} samples a set, half to train, half to score (0.5 = indistinguishable). Real: cache "
             f"latents; teacher: guided ODE solutions from `{args.pairs}`; student: `{shown_model}`'s jumps to σ_min "
             "from those trajectories' states at the 4-step sampler's jump starts, same ω and caption.", "",
             "| σ_D | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    lines += ["| " + " | ".join([f"{r['sigma_D']:g}", *(f"{r[c]:.2f}" for c in cols)]) + " |" for r in rows]
    lines += ["", "## The recipe's discriminator heads (`gan.head`), trained online",
              "", "Held-out accuracy after K steps of RAdam at 6e-4 (the recipe's discriminator rate at lr 2e-5 × 30), "
              f"8 rows of each set a step (gan.batch), raw features at σ_D = {args.online_sigma:g}, the same split "
              "rule.", "", "| steps | " + " | ".join(online) + " |", "|" + "---|" * (len(online) + 1)]
    lines += ["| " + " | ".join([str(k), *(f"{online[c][k]:.2f}" for c in online)]) + " |" for k in checkpoints]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps({"n": n, "pairs": args.pairs, "model": str(shown_model),
                                                             "rows": rows, "online_heads": heads,
                                                             "online_sigma": args.online_sigma,
                                                             "online": online}, indent=2) + "\n")
    out.with_name(out.name + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
