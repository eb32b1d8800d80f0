#!/usr/bin/env bash
# Screenshots of the Training window during a real (small) E2Style run with the abortion method:
# the form, the run going, each abort, Stop (SIGTERM) and Resume.
#
#   scripts/screenshot_training.sh [OUT_DIR] [extra args for scripts/screenshot_training.py]
#
# Runs under Xvfb (xcb) when xvfb-run is installed, else with Qt's offscreen platform (see
# scripts/screenshot.sh). Writes OUT_DIR/0N-*.png (default /work/runs/screens-training) and the
# run itself under OUT_DIR/runs/. Takes a few minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/work/runs/screens-training}
shift || true
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if command -v xvfb-run >/dev/null 2>&1; then
    echo "running under Xvfb (xcb)"
    QT_QPA_PLATFORM=xcb exec xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" scripts/screenshot_training.py "$OUT" "$@"
else
    echo "xvfb-run not found: using QT_QPA_PLATFORM=offscreen"
    QT_QPA_PLATFORM=offscreen exec "$PY" scripts/screenshot_training.py "$OUT" "$@"
fi
