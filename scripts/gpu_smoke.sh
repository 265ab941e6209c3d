#!/usr/bin/env bash
# GPU smoke test: on a machine with CUDA, run each GPU path of the toolkit once and print one line per check.
#   bash scripts/gpu_smoke.sh            (about 3-5 minutes on one GPU; needs the set-up .venv)
# Checks: 20 teacher steps; 20 distillation steps in fp32 and in bf16; generate with γ ∈ {0, 0.5, 1} at 1, 2 and
# 4 steps (and the same seed on CPU vs CUDA); 20 steps of the digits CTM recipe. On a machine without CUDA it
# skips with a message and exits 0. Exit code 1 if any check fails; each failure prints its last error line.
# SMOKE_DEVICE=cpu runs the same checks on the CPU (slow; to check the script itself where no GPU is lent).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ACC=${ACC:-.venv/bin/accelerate}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
DEV=${SMOKE_DEVICE:-cuda}
CPU_FLAG=false; [ "$DEV" = cpu ] && CPU_FLAG=true
if [ "$DEV" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_smoke: skipped, no CUDA device here (torch.cuda.is_available() is False)"
    exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
B=soundctm/pretrained/synthcaps-tiny
failed=0
check() {  # check NAME COMMAND...: run it, print "ok"/"FAIL" with the time and the last error line on failure
    local name=$1; shift
    local start=$SECONDS
    if "$@" >"$TMP/$name.log" 2>&1; then
        echo "ok    $name ($((SECONDS - start)) s)"
    else
        echo "FAIL  $name ($((SECONDS - start)) s): $(grep -v '^\s*$' "$TMP/$name.log" | tail -1)"
        failed=1
    fi
}
echo "gpu_smoke: $("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if '$DEV' == 'cuda' else 'cpu', 'torch', torch.__version__)")"
check cache "$PY" -m soundctm.cli cache --data synthcaps --n 64 --vae "$B/vae" --out "$TMP/cache" --device "$DEV"
TEACHER="--config recipes/configs/teacher_tiny.yaml --set data.cache_dir=$TMP/cache --set train.steps=20
  --set train.batch_size=16 --set train.warmup_steps=5 --set train.log_every=5 --set train.ckpt_every=20
  --set train.tensorboard=false --set train.out_dir=$TMP/teacher --set export_dir=$TMP/teacher/teacher --set threads=0 --set train.cpu=$CPU_FLAG"
# shellcheck disable=SC2086
check teacher_20_steps "$ACC" launch --num_processes 1 $([ "$DEV" = cpu ] && echo --cpu) recipes/train_teacher.py $TEACHER
for mp in no bf16; do
    CTM="--config recipes/configs/soundctm_tiny.yaml --set teacher_dir=$B/teacher --set cache_dir=$TMP/cache
      --set train.steps=20 --set train.batch_size=16 --set train.log_every=5 --set train.ckpt_every=20
      --set train.tensorboard=false --set train.mixed_precision=$mp --set train.out_dir=$TMP/ctm_$mp
      --set export_dir=$TMP/ctm_$mp/student --set threads=0 --set train.cpu=$CPU_FLAG"
    # shellcheck disable=SC2086
    check "distill_20_steps_$mp" "$ACC" launch --num_processes 1 $([ "$DEV" = cpu ] && echo --cpu) --mixed_precision "$mp" recipes/train_soundctm.py $CTM
done
check generate_gamma_steps env SMOKE_DEVICE="$DEV" "$PY" - <<'PYEOF'
import os

import numpy as np
import torch
from soundctm import SoundCTM
gpu, cpu = SoundCTM.from_pretrained(device=os.environ["SMOKE_DEVICE"]), SoundCTM.from_pretrained(device="cpu")
for steps in (1, 2, 4):
    for gamma in (0.0, 0.5, 1.0):
        a = gpu.generate("a high beep sounding twice", steps=steps, gamma=gamma, seed=0)
        b = cpu.generate("a high beep sounding twice", steps=steps, gamma=gamma, seed=0)
        assert a.waveforms.shape == (1, 32000) and np.isfinite(a.waveforms).all(), (steps, gamma)
        err = float(np.abs(a.waveforms - b.waveforms).max())
        print(f"steps {steps} gamma {gamma}: cuda vs cpu max |Δ| = {err:.2e}")
        assert err < 0.05, f"steps {steps} gamma {gamma}: the same seed differs on CUDA and CPU by {err}"
for sampler in ("teacher", "score"):
    assert np.isfinite(gpu.generate("rain falling", steps=8, sampler=sampler, seed=1).waveforms).all(), sampler
PYEOF
DIGITS_T="--config recipes/configs/digits_teacher.yaml --set train.steps=20 --set train.cpu=$CPU_FLAG
  --set train.ckpt_every=20 --set train.out_dir=$TMP/digits_teacher"
DIGITS_C="--config recipes/configs/digits_ctm.yaml --set train.steps=20 --set train.cpu=$CPU_FLAG
  --set train.ckpt_every=20 --set train.out_dir=$TMP/digits_ctm --set ctm.teacher=soundctm/pretrained/digits/teacher"
# shellcheck disable=SC2086
check digits_teacher_20_steps "$PY" recipes/train_image.py $DIGITS_T
# shellcheck disable=SC2086
check digits_ctm_20_steps "$PY" recipes/train_image.py $DIGITS_C
[ "$failed" = 0 ] && echo "gpu_smoke: all checks passed" || echo "gpu_smoke: some checks FAILED"
exit "$failed"
