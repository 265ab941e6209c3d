#!/usr/bin/env bash
# Create .venv (once) and install soundctm with its dev extras. Idempotent: skips work when
# pyproject.toml has not changed since the last successful install.
#
# As root with apt-get and no chromium on PATH, it also installs Debian's chromium (about 115 packages, 350 MB)
# for the browser test (tests/test_demo_browser.py, skipped without it), and says so first. To skip that:
#     SOUNDCTM_NO_BROWSER=1 bash scripts/setup.sh      or      bash scripts/setup.sh --no-browser
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
    case "$arg" in
        --no-browser) SOUNDCTM_NO_BROWSER=1 ;;
        *) echo "setup: unknown argument $arg (usage: scripts/setup.sh [--no-browser])" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.soundctm-setup
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # The CPU wheel of torch lies on this machine's disk; ask for it first so nothing pulls a CUDA build.
    .venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q torch
    .venv/bin/python -m pip install -q -e ".[dev]"
    echo "$want" > "$stamp"
fi
# The browser test drives Debian's chromium (never a downloaded browser).
if [ -z "${SOUNDCTM_NO_BROWSER:-}" ] && ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium (about 115 packages, 350 MB) for the browser test;" \
        "SOUNDCTM_NO_BROWSER=1 or --no-browser skips it" >&2
    (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
        || echo "setup: chromium could not be installed; the browser test will be skipped" >&2
fi
