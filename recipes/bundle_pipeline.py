"""Assemble a pipeline folder (the bundled default) from trained parts and record its provenance.

    python recipes/bundle_pipeline.py --vae soundctm/pretrained/synthcaps-tiny/vae \\
        --teacher runs/teacher_tiny/teacher --student runs/soundctm_tiny/student \\
        --out soundctm/pretrained/synthcaps-tiny
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from soundctm.audio.text import build_text_encoder
from soundctm.audio.vae import AudioVAE
from soundctm.audio.vocoder import GriffinLimVocoder
from soundctm.nn.unet import TextUNet, TwoTimeTextUNet
from soundctm.pipeline import PipelineConfig, SoundCTM


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def build_pipeline(args) -> SoundCTM:
    """The pipeline of the given VAE, teacher and student folders (Griffin-Lim vocoder, MiniLM text)."""
    vae = AudioVAE.from_pretrained(args.vae)
    n_frames = int(args.clip_seconds * vae.config.mel.sample_rate) // vae.config.mel.hop_length + 1
    cfg = PipelineConfig(latent_shape=vae.latent_shape(n_frames), n_frames=n_frames,
                         sample_rate=vae.config.mel.sample_rate, clip_seconds=args.clip_seconds,
                         guidance=args.guidance, vocoder={"name": "griffin-lim", "n_iter": args.griffin_lim_iters,
                                                          "phase_init": args.phase_init})
    vocoder = GriffinLimVocoder(vae.config.mel, n_iter=args.griffin_lim_iters, phase_init=args.phase_init)
    return SoundCTM(vae, vocoder, build_text_encoder("minilm"),
                    TwoTimeTextUNet.from_pretrained(args.student), cfg, TextUNet.from_pretrained(args.teacher))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--guidance", type=float, default=3.5)
    p.add_argument("--clip-seconds", type=float, default=2.0)
    p.add_argument("--griffin-lim-iters", type=int, default=32)
    p.add_argument("--phase-init", default="random", choices=["random", "lines"],
                   help="Griffin-Lim's starting phase (lines: from the tracked spectral lines)")
    p.add_argument("--metrics", default=None, help="a JSON file of measured metrics to store in provenance.json")
    p.add_argument("--note", default=None, help="free text stored in provenance.json (e.g. how a part was trained)")
    args = p.parse_args(argv)
    try:
        pipe = build_pipeline(args)
    except (ValueError, OSError) as err:  # a missing or unreadable component folder
        print(f"bundle_pipeline: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None, prefix=".bundle-"))
    pipe.save_pretrained(tmp)
    parts = {"vae": args.vae, "teacher": args.teacher, "student": args.student}
    provenance = {"command": " ".join([sys.executable, *sys.argv]),
                  "components": {name: read_json(Path(d) / "provenance.json") for name, d in parts.items()},
                  "metrics": read_json(Path(args.metrics)) if args.metrics else None, "note": args.note}
    (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    for name in ("vae", "teacher", "student"):
        src = Path(getattr(args, name)) / "provenance.json"
        if src.is_file():
            shutil.copy(src, tmp / name / "provenance.json")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
