"""Check that the test suite guards what defines SoundCTM: each change below, made to a copy of the code, must make
at least one of the named tests fail. Run from the repository root (about 5-10 minutes on 2 CPU cores):

    .venv/bin/python scripts/check_guards.py [--only NAME ...]

Prints one line per change (caught / MISSED) and exits 1 if any change leaves its tests green.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUARDS = ["tests/test_ctm_guards.py", "tests/test_core_losses.py", "tests/test_core_guidance.py"]

# name: (file, text in it, replacement, tests that must fail)
MUTATIONS = {
    "target from the online student, not the EMA θ⁻": (
        "soundctm/train/ctm_terms.py", "target = CTMPrecond(models[ema_key(net, ema_decay)], c.sigma_data)",
        "target = CTMPrecond(models[net], c.sigma_data)", GUARDS),
    "estimate mapped to σ_min with the student": (
        "soundctm/core/losses.py", "estimate = target_net(estimate, times.s, sigma, **cond)",
        "estimate = student(estimate, times.s, sigma, **cond)", GUARDS),
    "target mapped to σ_min with the student": (
        "soundctm/core/losses.py", "target = target_net(target, times.s, sigma, **cond)",
        "target = student(target, times.s, sigma, **cond)", GUARDS),
    "no mapping to σ_min": (
        "soundctm/core/losses.py", 'if match == "sigma_min":', "if False:", GUARDS),
    "teacher unguided in the target solve": (
        "soundctm/train/ctm_terms.py", 'guided_teacher(models[teacher], c.sigma_data, "omega",',
        "guided_teacher(models[teacher], c.sigma_data, 1.0,", GUARDS),
    "DSM adaptive weight switched off": (
        "soundctm/train/ctm_terms.py", "lam = losses.adaptive_weight(ctm, dsm, last_layer_weight(models[net]))",
        "lam = torch.ones(())", GUARDS),
    "caption dropout for the student switched off": (
        "soundctm/train/ctm_terms.py", "uncond_tokens, uncond_mask, c.caption_dropout,",
        "uncond_tokens, uncond_mask, 0.0,", GUARDS),
    "caption dropout off by default": (
        "soundctm/train/ctm_terms.py", "caption_dropout: float = 0.1", "caption_dropout: float = 0.0", GUARDS),
    "CTM grid on the default σ range whatever the config": (
        "soundctm/train/ctm_terms.py", "return schedule.ctm_grid(self.grid_size, self.sigma_min, self.sigma_max)",
        "return schedule.ctm_grid(self.grid_size)", GUARDS),
    "score sampler at ω = guidance": (
        "soundctm/pipeline.py", "omega = torch.ones_like(omega)", "omega = omega", GUARDS),
    "ν-sampling mix changed in the pipeline": (
        "soundctm/pipeline.py", "classifier_free_guidance(G, nu, uncond)",
        "classifier_free_guidance(G, 1.0 + 0.5 * (nu - 1.0), uncond)", GUARDS),
    "guidance mix formula changed": (
        "soundctm/core/guidance.py", "return out_u + append_dims(w, x.ndim) * (out_c - out_u)",
        "return out_c + append_dims(w - 1, x.ndim) * (out_c - out_u) * 0.5", GUARDS),
}


def copy_tree(dst: Path) -> None:
    """The working tree without the virtual environment, git data, runs and caches."""
    skip = shutil.ignore_patterns(".venv", ".git", "runs", "cache", "__pycache__", ".pytest_cache", "*.egg-info")
    shutil.copytree(ROOT, dst, ignore=skip)


def check(name: str, copy: Path) -> bool:
    """Apply mutation ``name`` in ``copy``, run its tests, restore the file; True if a test failed."""
    rel, old, new, tests = MUTATIONS[name]
    path = copy / rel
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"check_guards: {rel} no longer holds {old!r} exactly once; update MUTATIONS")
    path.write_text(text.replace(old, new))
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                             cwd=copy, env=env, capture_output=True, text=True)
    finally:
        path.write_text(text)
    return out.returncode != 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(MUTATIONS), metavar="NAME", help="check these only")
    args = parser.parse_args(argv)
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        copy_tree(copy)
        for name in args.only or MUTATIONS:
            caught = check(name, copy)
            print(f"{'caught' if caught else 'MISSED'}  {name}", flush=True)
            if not caught:
                missed.append(name)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
