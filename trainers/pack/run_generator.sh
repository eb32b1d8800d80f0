#!/usr/bin/env bash
# Start or resume the default pack's generator run (outside the repo). Stop it any time with Ctrl-C
# or SIGTERM: the trainer writes a snapshot first, and the next call resumes from it.
#   bash trainers/pack/run_generator.sh [RUN_ROOT] [extra trainer flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${1:-/work/runs}; shift || true
DATA=${STYLESTUDIO_UTKFACE:-../shared/data/utkface/images}
D=${PACK_D:-projected}
last=$(ls -d "$ROOT"/*-pack-cpu64-"$D" 2>/dev/null | sort | tail -n 1 || true)
if [ -n "$last" ] && [ -f "$last/config.json" ]; then
  echo "resuming $last"
  exec .venv/bin/python -m trainers.stylegan2 --resume "$last" --kimg "${PACK_KIMG:-400}" "$@"
fi
exec .venv/bin/python -m trainers.stylegan2 --data "$DATA" --cfg cpu64 --d "$D" --out "$ROOT" \
  --desc "pack-cpu64-$D" --kimg "${PACK_KIMG:-400}" --metrics-every-kimg 5 --snapshot-every-kimg 2 \
  --sample-every-kimg 2 --fd-samples 500 "$@"
