#!/usr/bin/env bash
# Build the one-folder StyleStudio app with PyInstaller, then smoke-test the built binary.
#
#   bash packaging/build.sh [OUT_DIR]        # default: runs/packaging (git-ignored)
#
# Needs the project's venv (bash scripts/setup-env.sh; $PYTHON overrides .venv/bin/python);
# installs PyInstaller into it when missing. Writes OUT_DIR/dist/stylestudio/ (the app: run
# OUT_DIR/dist/stylestudio/stylestudio), OUT_DIR/build/ (PyInstaller's work files) and
# OUT_DIR/smoke/ (what the smoke test rendered). Exits non-zero when the build or a check fails.
#
# Smoke test of the built binary, with no access to the source tree (run from OUT_DIR/smoke):
#   --version; info (the embedded default pack); generate (renders faces to PNG); align (dlib
#   detector and landmark models); invert --method e2style (the pack's encoder, LPIPS and the dlib
#   face-recognition net); the window with QT_QPA_PLATFORM=offscreen: --smoke-test loads the
#   pack, renders a random face to PNG and exits.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:-$REPO/runs/packaging}" && cd "${1:-$REPO/runs/packaging}" && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
if [ ! -x "$PY" ]; then
    echo "no venv at $PY: running scripts/setup-env.sh"
    bash "$REPO/scripts/setup-env.sh"
    PY=$REPO/.venv/bin/python
fi
"$PY" -c 'import PyInstaller' 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check "pyinstaller>=6.10"
echo "PyInstaller $("$PY" -m PyInstaller --version), $("$PY" -V)"

t0=$(date +%s)
cd "$REPO"
"$PY" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$OUT/dist" --workpath "$OUT/build" packaging/stylestudio.spec
t1=$(date +%s)
APP=$OUT/dist/stylestudio/stylestudio
echo "built $APP in $((t1 - t0)) s; the folder: $(du -sh "$OUT/dist/stylestudio" | cut -f1)"

# ---- smoke test (from an empty folder, so nothing of the checkout can be picked up) ----
SMOKE=$OUT/smoke
rm -rf "$SMOKE" && mkdir -p "$SMOKE" && cd "$SMOKE"
export PYTHONPATH= PYTHONHOME=
export QT_QPA_PLATFORM=offscreen
step() { echo "+ stylestudio $*"; }

step --version; "$APP" --version
step info; "$APP" info | tee info.txt
grep -q "^file .*/_internal/studio/resources/pack" info.txt || { echo "FAIL: info does not show the app's own pack"; exit 1; }

step generate --seeds 1-2 --out gen; "$APP" generate --seeds 1-2 --out gen
test -s gen/seed0001.png || { echo "FAIL: generate wrote no PNG"; exit 1; }

# A generated face, padded and enlarged into a "photo", for the dlib face detector.
"$PY" - <<'PYEOF'
from PIL import Image
im = Image.open("gen/seed0001.png").convert("RGB")
w = im.width
photo = Image.new("RGB", (2 * w, 2 * w), (128, 128, 128))
photo.paste(im, (w // 2, w // 2))
photo.resize((512, 512), Image.LANCZOS).save("photo.png")
PYEOF
step align photo.png --out aligned; "$APP" align photo.png --out aligned
test -s aligned/photo.png || { echo "FAIL: align found no face"; exit 1; }
step invert photo.png --method e2style --out inverted
"$APP" invert photo.png --method e2style --out inverted
test -s inverted/photo.npy || { echo "FAIL: invert wrote no latent"; exit 1; }

step --smoke-test window.png "(QT_QPA_PLATFORM=offscreen)"
timeout 600 "$APP" --smoke-test window.png
test -s window.png || { echo "FAIL: the window rendered nothing"; exit 1; }
t2=$(date +%s)
echo "smoke test passed in $((t2 - t1)) s: $(ls "$SMOKE")"
echo "app folder: $OUT/dist/stylestudio ($(du -sh "$OUT/dist/stylestudio" | cut -f1), $(find "$OUT/dist/stylestudio" -type f | wc -l) files)"
