#!/usr/bin/env bash
# Set up StyleStudio in ./.venv on a Debian/Ubuntu machine with Python 3 (idempotent, quick when done).
#   bash scripts/setup-env.sh          # the app
#   bash scripts/setup-env.sh --test   # the app + test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

# System packages, only those missing (python venv; Qt's runtime libraries for the window).
pkgs=()
"$PY" -c 'import venv, ensurepip' 2>/dev/null || pkgs+=(python3-venv)
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
for pair in libEGL.so.1:libegl1 libGL.so.1:libgl1 libxkbcommon.so.0:libxkbcommon0 \
            libfontconfig.so.1:libfontconfig1 libdbus-1.so.3:libdbus-1-3 libglib-2.0.so.0:libglib2.0-0; do
  have_lib "${pair%%:*}" || pkgs+=("${pair##*:}")
done
# Qt 6's X11 (xcb) platform plugin, for a window on an X11 desktop (tests use the offscreen one).
if [ -z "$extras" ]; then
  for pair in libxcb-cursor.so.0:libxcb-cursor0 libxcb-icccm.so.4:libxcb-icccm4 libxcb-keysyms.so.1:libxcb-keysyms1 \
              libxkbcommon-x11.so.0:libxkbcommon-x11-0 libxcb-shape.so.0:libxcb-shape0; do
    have_lib "${pair%%:*}" || pkgs+=("${pair##*:}")
  done
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing system packages: ${pkgs[*]}"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# PyTorch first, pinned to the version this project is tested with (any 2.2+ works). On Linux, PyPI's
# torch is the CUDA build (it runs on the CPU too, but with its CUDA libraries is several GB); for the CPU-only build
# (~200 MB) set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu.
.venv/bin/python -c 'import torch' 2>/dev/null || .venv/bin/pip install -q --disable-pip-version-check \
  ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e ".${extras}"
echo "StyleStudio is installed in .venv"
