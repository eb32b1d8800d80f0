#!/usr/bin/env bash
# Screenshots of the StyleStudio window on a sample photo: open, invert, slider edit, style mixing.
#
#   scripts/screenshot.sh [OUT_DIR] [extra args for scripts/screenshot.py]
#
# Runs under Xvfb (a real X server, xcb platform) when xvfb-run is installed
# (apt-get install -y xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0), else with Qt's offscreen
# platform. Writes OUT_DIR/0N-*.png (default runs/screens).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/screens}
shift || true
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if command -v xvfb-run >/dev/null 2>&1; then
    echo "running under Xvfb (xcb)"
    QT_QPA_PLATFORM=xcb exec xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" scripts/screenshot.py "$OUT" "$@"
else
    echo "xvfb-run not found: using QT_QPA_PLATFORM=offscreen"
    QT_QPA_PLATFORM=offscreen exec "$PY" scripts/screenshot.py "$OUT" "$@"
fi
