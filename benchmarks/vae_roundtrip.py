"""Does the audio front-end keep what captions talk about? wave → mel → [VAE latent → mel] → vocoder → wave.

On held-out SynthCaps clips, each chain's output is measured with `soundctm.metrics.synthcaps_judge.measure` and
compared with the measurement of the original clip: pitch (f0 within 5 %), event count (exact), sweep
direction, tonal-vs-noise (and the 3-way family). Also reported: mel L1 (VAE decode vs input mel, and the
re-analysed output wave vs input mel), and `judge` accuracy against the ground-truth attributes for the
original and the reconstruction. Writes ``<out>.md`` and ``<out>.json``.

    python benchmarks/vae_roundtrip.py --vae soundctm/pretrained/synthcaps-tiny/vae --n 200
    python benchmarks/vae_roundtrip.py --vocoder hifigan=/path/to/audioldm/vocoder   # add a trained vocoder
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from soundctm.audio.mel import MelSpectrogram
from soundctm.audio.vae import AudioVAE
from soundctm.audio.vocoder import build_vocoder
from soundctm.data.synthcaps import SynthCaps
from soundctm.fileio import with_extension
from soundctm.metrics.synthcaps_judge import Measurement, judge, measure

TARGET = 0.95
PITCH_TOLERANCE = 0.05


@dataclass
class ChainResult:
    """Per-attribute agreement counts of one chain (numerator, denominator)."""

    name: str
    kept: dict[str, list[int]] = field(default_factory=dict)
    judge_ok: list[int] = field(default_factory=lambda: [0, 0])
    mel_l1_wave: list[float] = field(default_factory=list)
    mel_l1_vae: list[float] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    def add(self, attribute: str, ok: bool) -> None:
        counts = self.kept.setdefault(attribute, [0, 0])
        counts[0] += int(ok)
        counts[1] += 1

    def accuracy(self) -> dict[str, float]:
        return {k: n / d for k, (n, d) in self.kept.items() if d}


def kept_attributes(orig: Measurement, recon: Measurement, attrs: dict) -> dict[str, bool]:
    """Which measured attributes of the original survive in the reconstruction."""
    kept = {
        "tonal_vs_noise": (orig.family == "tonal") == (recon.family == "tonal"),
        "family": orig.family == recon.family,
    }
    if attrs.get("pitch") is not None and np.isfinite(orig.f0_hz):
        kept["pitch_5pct"] = bool(abs(recon.f0_hz - orig.f0_hz) <= PITCH_TOLERANCE * orig.f0_hz)
    if attrs.get("count") is not None:
        kept["event_count"] = recon.n_events == orig.n_events
    if attrs.get("sweep") is not None:
        kept["sweep_direction"] = recon.sweep == orig.sweep
    return kept


def judge_score(wave: np.ndarray, sr: int, attrs: dict) -> tuple[int, int]:
    verdict = judge(wave, sr, attrs)
    return sum(verdict.values()), len(verdict)


def run_chain(result: ChainResult, wave_out: np.ndarray, sr: int, orig: Measurement, attrs: dict, index: int):
    recon = measure(wave_out, sr)
    kept = kept_attributes(orig, recon, attrs)
    for name, ok in kept.items():
        result.add(name, ok)
    ok, total = judge_score(wave_out, sr, attrs)
    result.judge_ok[0] += ok
    result.judge_ok[1] += total
    if not all(kept.values()) and len(result.failures) < 20:
        lost = sorted(k for k, v in kept.items() if not v)
        result.failures.append({"index": index, "source": attrs["source"], "lost": lost,
                                "orig_f0": orig.f0_hz, "recon_f0": recon.f0_hz,
                                "orig_events": orig.n_events, "recon_events": recon.n_events})  # fmt: skip


def evaluate(args) -> dict:
    torch.set_num_threads(args.threads)
    data = SynthCaps(args.n, seed=args.seed, split="heldout")
    mel_fn = MelSpectrogram()
    vae = AudioVAE.from_pretrained(args.vae).eval() if args.vae else None
    vocoders = {"griffin-lim": build_vocoder("griffin-lim")}
    for item in args.vocoder:
        name, _, path = item.partition("=")
        vocoders[name] = build_vocoder(name, path or None)
    chains = {f"mel→{v}": ChainResult(f"mel→{v}") for v in vocoders}
    if vae is not None:
        chains.update({f"mel→VAE→{v}": ChainResult(f"mel→VAE→{v}") for v in vocoders})
    originals = [0, 0]
    start = time.time()
    for start_i in range(0, args.n, args.batch):
        items = [data[i] for i in range(start_i, min(args.n, start_i + args.batch))]
        waves = torch.stack([torch.from_numpy(w) for w, _, _ in items])
        mel = mel_fn(waves)
        with torch.no_grad():
            mel_vae = vae.decode(vae.encode(mel), mel.shape[-1]) if vae is not None else None
        origs = [measure(w, data.sr) for w, _, _ in items]
        for vname, vocoder in vocoders.items():
            for prefix, m in (("mel", mel), ("mel→VAE", mel_vae)):
                if m is None:
                    continue
                chain = chains[f"{prefix}→{vname}"]
                out = vocoder(m).numpy()
                mel_back = mel_fn(torch.from_numpy(out))
                frames = min(mel_back.shape[-1], mel.shape[-1])
                l1_wave = (mel_back[..., :frames] - mel[..., :frames]).abs().mean(dim=(1, 2))
                chain.mel_l1_wave += l1_wave.tolist()
                if prefix == "mel→VAE":
                    chain.mel_l1_vae += (m - mel).abs().mean(dim=(1, 2)).tolist()
                for j, (_, _, attrs) in enumerate(items):
                    run_chain(chain, out[j], vocoder.sample_rate, origs[j], attrs, start_i + j)
        for wave, _, attrs in items:
            ok, total = judge_score(wave, data.sr, attrs)
            originals[0] += ok
            originals[1] += total
        print(f"{start_i + len(items)}/{args.n} clips, {time.time() - start:.0f} s", flush=True)
    return summarise(args, chains, originals, time.time() - start)


def summarise(args, chains: dict[str, ChainResult], originals: list[int], seconds: float) -> dict:
    rows = {}
    for name, c in chains.items():
        acc = c.accuracy()
        rows[name] = {
            "accuracy": acc,
            "counts": c.kept,
            "min_accuracy": min(acc.values()),
            "meets_target": all(acc[k] >= TARGET for k in acc if k != "family"),
            "judge_accuracy": c.judge_ok[0] / max(c.judge_ok[1], 1),
            "mel_l1_vae": float(np.mean(c.mel_l1_vae)) if c.mel_l1_vae else None,
            "mel_l1_wave": float(np.mean(c.mel_l1_wave)),
            "failures": c.failures,
        }
    return {
        "setup": {"n": args.n, "seed": args.seed, "split": "heldout", "vae": args.vae,
                  "vocoders": ["griffin-lim", *args.vocoder], "target": TARGET, "pitch_tolerance": PITCH_TOLERANCE,
                  "seconds": seconds, "threads": args.threads},
        "judge_accuracy_original": originals[0] / max(originals[1], 1),
        "chains": rows,
    }  # fmt: skip


def to_markdown(report: dict) -> str:
    s = report["setup"]
    attrs = ["pitch_5pct", "event_count", "sweep_direction", "tonal_vs_noise", "family"]
    lines = [
        "# VAE round trip on held-out SynthCaps clips",
        "",
        f"{s['n']} held-out clips (seed {s['seed']}), VAE `{s['vae']}`. Each column: fraction of clips whose measured "
        f"attribute (synthcaps_judge.measure) in the output equals that of the original clip; pitch within "
        f"{s['pitch_tolerance']:.0%} of the original f0. Target: ≥ {s['target']:.0%} on pitch, count, sweep, "
        "tonal-vs-noise. `judge` = accuracy against the ground-truth attributes "
        f"(original clips: {report['judge_accuracy_original']:.1%}).",
        "",
        "| chain | " + " | ".join(attrs) + " | judge | mel L1 (VAE) | mel L1 (wave) | target met |",
        "|---" * (len(attrs) + 5) + "|",
    ]
    for name, r in report["chains"].items():
        cells = [f"{r['accuracy'][a]:.1%} ({r['counts'][a][1]})" if a in r["accuracy"] else "–" for a in attrs]
        vae_l1 = f"{r['mel_l1_vae']:.3f}" if r["mel_l1_vae"] is not None else "–"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['judge_accuracy']:.1%} | {vae_l1} | "
                     f"{r['mel_l1_wave']:.3f} | {'yes' if r['meets_target'] else 'no'} |")  # fmt: skip
    lines += ["", "(n) = clips the attribute applies to. mel L1 in natural-log mel units (AudioLDM log-mel).", "",
              f"Command: `python benchmarks/vae_roundtrip.py --vae {s['vae']} --n {s['n']} --seed {s['seed']}"
              + "".join(f" --vocoder {v}" for v in s["vocoders"][1:]) + "`; "
              f"{s['seconds']:.0f} s on {s['threads']} CPU thread(s)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vae_roundtrip", description=__doc__.splitlines()[0])
    p.add_argument("--vae", default="soundctm/pretrained/synthcaps-tiny/vae", help="AudioVAE folder ('' = none)")
    p.add_argument(
        "--vocoder",
        action="append",
        default=[],
        metavar="NAME[=PATH]",
        help="extra vocoder, e.g. griffin-lim-nnls or hifigan=DIR",
    )
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/vae_roundtrip"))
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n must be >= 1, got {args.n}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = evaluate(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with_extension(args.out, ".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    with_extension(args.out, ".md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
