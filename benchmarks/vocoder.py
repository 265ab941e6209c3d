"""How many Griffin-Lim iterations does the decode need? Speed vs fidelity of the mel → wave step, side by side.

On held-out SynthCaps clips: wave → log-mel (the analysis every model is trained on) → `GriffinLimVocoder`
with n_iter ∈ {1, 2, 4, 8, 16, 32} (and each phase initialisation) → wave, then:
- ms per clip at batch 1 (median over clips) and at batch 16, one thread;
- spectral convergence ‖|STFT(y)| − S‖ / ‖S‖ against the vocoder's own target magnitude S (how consistent the
  phase is: 0 = a signal with exactly that magnitude);
- log-mel L1 of the re-analysed output against the input mel on bins within 4 nats of the clip's peak;
- `judge` accuracy of the output against the clip's ground-truth attributes (the measure the audio benchmarks use).
Writes ``<out>.md``, ``<out>.json`` and ``<out>.png``.

    python benchmarks/vocoder.py --n 48
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from soundctm.fileio import with_extension

ROOT = Path(__file__).resolve().parents[1]
ITERS = (1, 2, 4, 8, 16, 32)


def spectral_convergence(vocoder, wave: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per clip ‖|STFT(wave)| − target‖_F / ‖target‖_F."""
    mag = vocoder._stft(wave).abs()[..., : target.shape[-1]]
    return torch.linalg.norm((mag - target).flatten(1), dim=1) / torch.linalg.norm(target.flatten(1), dim=1)


def loud_mel_l1(mel_fn, wave: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Per clip mean |log-mel(wave) − mel| over the bins within 4 nats of the clip's peak."""
    back = mel_fn(wave)[..., : mel.shape[-1]]
    loud = mel > mel.amax(dim=(1, 2), keepdim=True) - 4.0
    return ((back - mel).abs() * loud).sum(dim=(1, 2)) / loud.sum(dim=(1, 2))


def run(n: int, iters: tuple[int, ...], inits: tuple[str, ...], seed: int = 0) -> list[dict]:
    from soundctm.audio.mel import MelSpectrogram
    from soundctm.audio.vocoder import GriffinLimVocoder
    from soundctm.data.synthcaps import make_clip
    from soundctm.metrics.synthcaps_judge import judge

    clips = [make_clip(seed, "heldout", i) for i in range(n)]
    mel_fn = MelSpectrogram()
    with torch.no_grad():
        mels = mel_fn(torch.tensor(np.stack([c[0] for c in clips])))
    rows = []
    for init in inits:
        for n_iter in iters:
            voc = GriffinLimVocoder(n_iter=n_iter, phase_init=init)
            with torch.no_grad():
                target = voc.linear_magnitude(mels)
                waves, ms = [], []
                for i in range(n):  # batch 1, timed per clip
                    t0 = time.perf_counter()
                    waves.append(voc(mels[i: i + 1]))
                    ms.append(1000 * (time.perf_counter() - t0))
                t0 = time.perf_counter()
                for i in range(0, n, 16):
                    voc(mels[i: i + 16])
                ms16 = 1000 * (time.perf_counter() - t0) / n
                wave = torch.cat(waves)
                sc = spectral_convergence(voc, wave, target)
                l1 = loud_mel_l1(mel_fn, wave, mels)
            verdicts = [ok for (w, (_, _, attrs)) in zip(wave.numpy(), clips)
                        for ok in judge(w, mel_fn.config.sample_rate, attrs).values()]
            rows.append({"init": init, "n_iter": n_iter, "ms_b1": float(np.median(ms)), "ms_b16": ms16,
                         "spectral_convergence": float(sc.mean()), "mel_l1": float(l1.mean()),
                         "judge": float(np.mean(verdicts))})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def write(rows: list[dict], out: Path, n: int, command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Griffin-Lim iterations: speed vs fidelity", "",
             f"{n} held-out SynthCaps clips, wave → log-mel → vocoder; one thread; the vocoder's defaults otherwise "
             f"(10 NNLS updates, CPU batches in chunks of 4 clips). `{command}`", "",
             "| phase init | n_iter | ms/clip (batch 1) | ms/clip (batch 16) | spectral convergence | "
             "loud log-mel L1 | judge accuracy |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['init']} | {r['n_iter']} | {r['ms_b1']:.1f} | {r['ms_b16']:.1f} | "
                     f"{r['spectral_convergence']:.3f} | {r['mel_l1']:.3f} | {100 * r['judge']:.1f} % |")
    with_extension(out, ".md").write_text("\n".join(lines) + "\n")
    with_extension(out, ".json").write_text(json.dumps({"n": n, "command": command, "rows": rows}, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for init in dict.fromkeys(r["init"] for r in rows):
        sub = [r for r in rows if r["init"] == init]
        for ax, key in zip(axes, ("spectral_convergence", "mel_l1")):
            ax.plot([r["ms_b1"] for r in sub], [r[key] for r in sub], "o-", label=f"{init} init")
            for r in sub:
                ax.annotate(str(r["n_iter"]), (r["ms_b1"], r[key]), fontsize=7)
            ax.set(xlabel="ms per clip (batch 1)", ylabel=key.replace("_", " "))
    axes[0].legend()
    fig.suptitle("Griffin-Lim: fidelity vs time (labels: iterations)")
    fig.tight_layout()
    fig.savefig(with_extension(out, ".png"), dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--iters", default=",".join(map(str, ITERS)))
    p.add_argument("--inits", default="random,lines")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vocoder"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    iters = tuple(int(v) for v in args.iters.split(","))
    inits = tuple(args.inits.split(","))
    rows = run(args.n, iters, inits)
    write(rows, Path(args.out), args.n, "python benchmarks/vocoder.py " + " ".join(argv or sys.argv[1:]))
    print(with_extension(Path(args.out), ".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
