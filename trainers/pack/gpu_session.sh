#!/usr/bin/env bash
# One lent-GPU session (device `run`, ~10 minutes) spent on the pack generator. Prepare here first:
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu
#   .venv/bin/python -m trainers.pack.pack_data pack ../shared/data/utkface/images 64 .gpu/utk64.npz
#   cp ../shared/data/lpips/alexnet_features_fp16.pth .gpu/      # the projected D's backbone
# then run on the device (carry .gpu):  OUT=$OUT TRAIN_SEC=480 bash trainers/pack/gpu_session.sh
# Two runs share the GPU (each alone is launch-bound at 64 px): A continues the compact snapshot in
# git, B starts the wider preset. On SIGTERM each trainer snapshots; both come back as compact
# files (split into <16 MB parts where needed: `cat F.part-* > F` to join) plus logs and grids.
set -uo pipefail
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-out}; TRAIN_SEC=${TRAIN_SEC:-480}; DEV=${DEV:-cuda}; ROOT=${ROOT:-/tmp/runs}
export PYTHONPATH=$PWD STYLESTUDIO_LPIPS_DIR=$PWD/.gpu PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$ROOT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
[ -d /tmp/utk/images ] || $PY -m trainers.pack.pack_data unpack .gpu/utk64.npz /tmp/utk || exit 1
# decode once into the trainer's cache, so the two runs don't both decode
$PY -c "from trainers.data import load_images; print(load_images('/tmp/utk/images', 64).images.shape)" || exit 1
common=(--data /tmp/utk/images --out "$ROOT" --kimg 100000 --batch 64 --metrics-every-kimg 0
        --snapshot-every-kimg 40 --sample-every-kimg 20 --keep-snapshots 8 --log-every 100 --no-tqdm)
t0=$(date +%s)

train() {  # name, trainer args...: on the GPU; if that dies at once, on the CPU for the time left
  local name=$1; shift
  timeout -k 60 -s TERM "$TRAIN_SEC" $PY -m trainers.stylegan2 "$@" "${common[@]}" --device "$DEV" --threads 4 \
    > "$ROOT/$name.log" 2>&1
  local rc=$? left=$(( TRAIN_SEC - ($(date +%s) - t0) ))
  echo "$name: exit $rc after $(( $(date +%s) - t0 )) s"
  if [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$left" -gt 120 ]; then
    tail -n 30 "$ROOT/$name.log"
    echo "$name: falling back to the CPU for $left s"
    rm -rf "$ROOT"/*-"$name"
    timeout -k 60 -s TERM "$left" $PY -m trainers.stylegan2 "$@" "${common[@]}" --device cpu --threads 7 \
      >> "$ROOT/$name.log" 2>&1
    echo "$name: cpu exit $?"
  fi
}

train pack-cpu64 --resume-compact trainers/pack/generator-resume.safetensors --desc pack-cpu64 &
train pack-cpu64wide --cfg cpu64-wide --discriminator projected --desc pack-cpu64wide &
wait

collect() {  # name, prefix
  local run; run=$(ls -d "$ROOT"/*-"$1" 2>/dev/null | tail -n 1)
  [ -n "$run" ] || { echo "$1: no run dir"; return; }
  grep -h '"sec_per_kimg"' "$run/metrics.jsonl" | tail -n 2
  $PY -m trainers.stylegan2 --export-compact "$run" "$OUT/$2.safetensors" || return
  if [ "$(stat -c %s "$OUT/$2.safetensors")" -gt 16000000 ]; then
    split -b 15000000 -d "$OUT/$2.safetensors" "$OUT/$2.safetensors.part-" && rm "$OUT/$2.safetensors"
  fi
}
collect pack-cpu64 A_compact
collect pack-cpu64wide B_compact
# A's snapshot from about half-way, for the FD trend (G_ema, fp32)
runA=$(ls -d "$ROOT"/*-pack-cpu64 2>/dev/null | tail -n 1)
if [ -n "$runA" ]; then
  mapfile -t snaps < <(ls "$runA"/snapshots/network-*.safetensors 2>/dev/null)
  [ "${#snaps[@]}" -gt 1 ] && cp "${snaps[$(( ${#snaps[@]} / 2 ))]}" "$OUT/A_mid.safetensors"
fi
tar czf "$OUT/logs.tgz" -C "$ROOT" --exclude='*.pt' --exclude='*.safetensors' --exclude=tb . 2>/dev/null
ls -la "$OUT"
