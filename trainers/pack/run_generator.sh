#!/usr/bin/env bash
# Start or continue the default pack's generator run. Runs live outside the repo (RUN_ROOT,
# default /work/runs). Order of preference:
#   1. the newest run directory named *-pack-* (or $PACK_RUN) under RUN_ROOT: exact --resume;
#   2. trainers/pack/generator-resume.safetensors (the compact snapshot kept in git): a new run
#      directory continuing from it (weights, counters, RNG; Adam's moments re-warm);
#   3. a fresh run with the recipe below.
# Stop it any time (Ctrl-C / SIGTERM): the trainer snapshots first. Afterwards refresh the compact
# snapshot in git with:  .venv/bin/python -m trainers.stylegan2 --export-compact RUN_DIR \
#                          trainers/pack/generator-resume.safetensors
#   bash trainers/pack/run_generator.sh [RUN_ROOT] [extra trainer flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${1:-/work/runs}; shift || true
COMPACT=trainers/pack/generator-resume.safetensors
KIMG=${PACK_KIMG:-1000}
run=${PACK_RUN:-$(ls -d "$ROOT"/*-pack-* 2>/dev/null | sort | tail -n 1 || true)}
if [ -n "$run" ] && [ -f "$run/config.json" ]; then
  echo "resuming $run"
  exec .venv/bin/python -m trainers.stylegan2 --resume "$run" --kimg "$KIMG" "$@"
fi
if [ -f "$COMPACT" ]; then
  echo "continuing from $COMPACT"
  exec .venv/bin/python -m trainers.stylegan2 --resume-compact "$COMPACT" --data ../shared/data/utkface/images \
    --out "$ROOT" --desc pack-cpu64wide \
    --kimg "$KIMG" "$@"
fi
exec .venv/bin/python -m trainers.stylegan2 --data ../shared/data/utkface/images --cfg cpu64-wide --d projected \
  --out "$ROOT" --desc pack-cpu64wide --kimg "$KIMG" --metrics-every-kimg 8 --snapshot-every-kimg 2 \
  --sample-every-kimg 2 --fd-samples 500 "$@"
