#!/usr/bin/env bash
# One lent-GPU session (device `run`, ~10 minutes) spent on the pack. Prepare here first:
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu
#   .venv/bin/python -m trainers.pack.pack_data pack ../shared/data/utkface/images 64 .gpu/utk64q85.npz --quality 85
#   cp ../shared/data/lpips/alexnet_features_fp16.pth .gpu/      # the projected D's backbone
# move resources/ out of the tree for the call (the tree travels only up to 64 MiB), then on the
# device (carry .gpu):  OUT=$OUT TRAIN_SEC=480 bash trainers/pack/gpu_session.sh
# New generators from scratch with in-run FD (GPU_G_SCRATCH, below) instead: pack with --heldout 500,
#   cp resources/lpips/vgg16_features_int8.safetensors .gpu/, and move trainers/pack/generator-resume.safetensors
#   out of the tree too (58.5 MB travel), then  GPU_SKIP_E=1 GPU_G_SCRATCH="diffaugment ada" bash ...
# Runs share the GPU (each alone is launch-bound at 64 px and batch 64):
#   G: the pack generator (the compact snapshot in git) continued, GPU_G_RUNS below - the FD-VGG16 bar;
#   E: the pack's E2Style encoder continued on the GPU (--init GPU_PACK, batch 32, VGG LPIPS as the
#      bar measures, lr decaying to 0 over the second half of --time-budget; pSp's w-norm
#      GPU_E_WNORMS keeps the codes editable; measure both bars with bench_pack before shipping).
# On SIGTERM each trainer snapshots; both come back as compact files (split into <16 MB parts where
# needed: `cat F.part-* > F` to join) plus logs and grids. GPU_SKIP_G=1 / GPU_SKIP_E=1 leave one out.
# The encoder stops itself after TRAIN_SEC - 60 s (--time-budget, its lr decay following the clock).
# GPU_E_WNORMS="0.005 0.02" trains one encoder per w-norm weight (E_wn<value>.safetensors each).
# GPU_E_STAGES (default 2, the pack encoder's stage count since 2026-11-28; never fewer): E2Style stages; stages the pack's
# encoder lacks start as copies of its first stage (--refine-init copy), all trained, no abortion.
# GPU_CRG=1 also retrains the CRG encoder against GPU_PACK's generator (E_crg.safetensors). The
# encoders come back without the generator's tensors: gpu_session_merge.py puts them back.
# The working tree travels only up to 64 MiB: for an encoder-only session move the tracked
# generator-resume and the AlexNet backbone out of the tree for the call, and point GPU_DATA at a
# subset (`pack_data pack ... --max-images 8000 --heldout 256`) and GPU_PACK at a copy of the pack
# without the CRG encoder and the student (manifest entries removed), both in a carried folder.
set -uo pipefail
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-out}; TRAIN_SEC=${TRAIN_SEC:-480}; DEV=${DEV:-cuda}; ROOT=${ROOT:-/tmp/runs}
export PYTHONPATH=$PWD STYLESTUDIO_LPIPS_DIR=$PWD/.gpu PYTHONUNBUFFERED=1
DATA_NPZ=${GPU_DATA:-.gpu/utk64q85.npz}; PACK=${GPU_PACK:-resources/pack}
UTK=${GPU_UNPACK:-/tmp/utk}  # the data unpacked here once (a second call skips it)
mkdir -p "$OUT" "$ROOT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
[ -d "$UTK/images" ] || $PY -m trainers.pack.pack_data unpack "$DATA_NPZ" "$UTK" || exit 1
# decode once into the trainer's cache, so the two runs don't both decode
$PY -c "from trainers.data import load_images; print(load_images('$UTK/images', 64).images.shape)" || exit 1
common=(--data "$UTK/images" --out "$ROOT" --kimg 100000 --batch 64 --metrics-every-kimg 0
        --snapshot-every-kimg 40 --sample-every-kimg 20 --keep-snapshots 8 --log-every 100 --no-tqdm)
t0=$(date +%s)

train() {  # name, module, args...: on the GPU; if that dies at once, on the CPU for the time left
  local name=$1 module=$2; shift 2
  timeout -k 60 -s TERM "$TRAIN_SEC" $PY -m "$module" "$@" --device "$DEV" --threads 4 > "$ROOT/$name.log" 2>&1
  local rc=$? left=$(( TRAIN_SEC - ($(date +%s) - t0) ))
  echo "$name: exit $rc after $(( $(date +%s) - t0 )) s"
  if [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$left" -gt 120 ]; then
    tail -n 30 "$ROOT/$name.log"
    echo "$name: falling back to the CPU for $left s"
    rm -rf "$ROOT"/*-"$name"
    timeout -k 60 -s TERM "$left" $PY -m "$module" "$@" --device cpu --threads 7 >> "$ROOT/$name.log" 2>&1
    echo "$name: cpu exit $?"
  fi
}

# GPU_G_RUNS="BATCH:LR ..." continues the snapshot once per pair, side by side (each comes back as
# G_b<BATCH>_lr<LR>.safetensors; with one pair also a snapshot from half-way, for the FD trend: three
# 19 MB snapshots already fill most of the 64 MB return limit). Default: batch 256 at lr 0.0025, the
# best of the 2026-11-28 session (at lr 0.001 both batch sizes collapsed; see README.md; continuing it
# from 438 to 892 kimg only made FD worse, with every average: README.md's session 24).
# GPU_G_EMAS (default "40 80"): G_ema copies with these half-lives (kimg) kept beside the main one
# (10 kimg, only ~40 steps at batch 256; the EMA alone took FD from 17.4 to 7.4 at 438 kimg); each
# comes back as G_..._ema<K>.safetensors (float16, last snapshot; with one run and GPU_SKIP_E=1 also
# earlier ones, G_..._ema<K>_<kimg>kimg, GPU_G_EMA_POINTS="40:2 80:3" snapshots of each in all, evenly
# spaced over the GPU_KEEP_SNAPSHOTS=24 kept every 50 kimg), to be chosen between by FD here. GPU_G_EMAS="" turns them off.
# GPU_G_LR_DECAY_KIMG=K: both learning rates fall linearly to 0 over K kimg from the snapshot's 438
# (an annealed continuation; plain continuing only made FD worse, README.md's session 24).
# GPU_G_RESUME: the compact snapshot continued (default this folder's; e.g. a G_new_*_compact a
# from-scratch session returned, to carry that run on). GPU_FD_KIMG (see GPU_G_SCRATCH below; same
# preparation): in-run FD for the continuations too, each returning its lowest-FD average (G_..._best).
# The snapshot carries its recipe, --g-train included: this folder's (since 2026-11-29) is the
# mapping + styles fine-tuning (synthesis frozen); GPU_G_TRAIN=all trains every layer again.
g_resume=${GPU_G_RESUME:-trainers/pack/generator-resume.safetensors}
g_train=(); [ -n "${GPU_G_TRAIN:-}" ] && g_train=(--g-train "$GPU_G_TRAIN")
fd_args=(); [ -n "${GPU_FD_KIMG:-}" ] && fd_args=(--metrics-every-kimg "$GPU_FD_KIMG" --fd-samples "${GPU_FD_N:-500}")
g_runs=${GPU_G_RUNS:-256:0.0025}
g_emas=${GPU_G_EMAS-40 80}
g_scratch=${GPU_G_SCRATCH:-}  # (below) new runs instead of the continuation
[ "${GPU_SKIP_G:-0}" = 1 ] && g_runs="" g_scratch=""
[ -n "$g_scratch" ] && g_runs=""
n_g=$(wc -w <<< "$g_runs")
for pair in $g_runs; do
  b=${pair%%:*}; lr=${pair##*:}
  train "pack-g-b$b-lr$lr" trainers.stylegan2 --resume-compact "$g_resume" \
    --lr-g "$lr" --lr-d "$lr" --desc "pack-g-b$b-lr$lr" "${common[@]}" "${fd_args[@]}" "${g_train[@]}" --batch "$b" \
    --ema-extra-kimg "$(tr ' ' ',' <<< "$g_emas")" --lr-decay-kimg "${GPU_G_LR_DECAY_KIMG:-0}" \
    --sample-every-kimg "${GPU_SAMPLE_KIMG:-50}" --snapshot-every-kimg 50 --keep-snapshots "${GPU_KEEP_SNAPSHOTS:-24}" &
done
# GPU_G_SCRATCH="AUG[/D] ..." (e.g. "diffaugment ada diffaugment/residual"): new generators from scratch
# instead, one per entry, side by side (cpu64-wide, D projected unless /residual, batch GPU_G_BATCH=256, lr 0.0025, averages
# GPU_G_EMAS), each measuring its FD-VGG16 on GPU_FD_N=500 held-out chips every GPU_FD_KIMG=20 kimg
# for G_ema and each longer average and keeping the best of each (best.safetensors,
# best-ema<K>.safetensors). Needs in .gpu: the data packed with `--heldout 500` (the in-run FD's
# real side) and resources/lpips/vgg16_features_int8.safetensors (its FD is within ~1% of the fp16
# backbone's: 7.36 against 7.44 for the shipped generator); the generator-resume snapshot can stay out
# of the tree. Each run returns its lowest-FD average (G_new_<AUG>_best.safetensors, float16), the
# run with the lowest FD also its compact resume snapshot (G_new_<AUG>_compact.safetensors).
for spec in $g_scratch; do
  aug=${spec%%/*} d=projected; [ "$spec" != "$aug" ] && d=${spec#*/}
  train "pack-g-new-${spec//\//-}" trainers.stylegan2 --cfg cpu64-wide --d "$d" --augment "$aug" \
    --lr-g 0.0025 --lr-d 0.0025 --desc "pack-g-new-${spec//\//-}" "${common[@]}" --batch "${GPU_G_BATCH:-256}" \
    --ema-extra-kimg "$(tr ' ' ',' <<< "$g_emas")" --metrics-every-kimg "${GPU_FD_KIMG:-20}" \
    --fd-samples "${GPU_FD_N:-500}" --sample-every-kimg "${GPU_SAMPLE_KIMG:-50}" --snapshot-every-kimg 50 \
    --keep-snapshots 2 &
done
if [ "${GPU_SKIP_E:-0}" != 1 ]; then
  for wn in ${GPU_E_WNORMS:-0.005}; do
    train "pack-e2style-wn$wn" trainers.encoder --arch e2style --stages "${GPU_E_STAGES:-2}" --abort off \
      --refine-init copy --size light --model "$PACK" --init "$PACK" --data "$UTK/images" --synthetic-fraction 0.25 \
      --lpips-net vgg --lambda-w-norm "$wn" --lr 3e-4 --decay-fraction 0.5 --batch 32 \
      --steps "${GPU_E_STEPS:-100000}" --time-budget $(( TRAIN_SEC - 60 )) \
      --eval-every 250 --eval-batch 64 --snapshot-every 500 --log-every 50 --out "$ROOT" --desc "pack-e2style-wn$wn" --no-tqdm &
  done
fi
# GPU_CRG=1: the CRG encoder retrained against GPU_PACK's generator (after a new generator; the CRG
# trainer has no --init: it starts afresh, W space, small, as in the README), stopped by the clock.
if [ "${GPU_CRG:-0}" = 1 ]; then
  train pack-crg trainers.crg --model "$PACK" --space w --size small --lr 3e-4 --batch "${GPU_CRG_BATCH:-64}" \
    --steps 1000000 --eval-every 100 --val-samples 256 --lr-patience 10 --stop-patience 1000 \
    --snapshot-every 500 --log-every 50 --out "$ROOT" --desc pack-crg --no-tqdm &
fi
wait

split_big() {  # file: <16 MB parts where needed
  if [ "$(stat -c %s "$1")" -gt 16000000 ]; then
    split -b 15000000 -d "$1" "$1.part-" && rm "$1"
  fi
}
best_average() {  # run dir, out file: prints "FD name kimg" of its lowest-FD average (in-run FD), saved fp16
  $PY - "$1" "$2" <<'PYEOF'
import json, sys
from pathlib import Path
from studio.core.formats import load_checkpoint
from studio.core.formats import stylestudio_fmt as fmt
run, out = Path(sys.argv[1]), sys.argv[2]
evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
evals = [e for e in evals if e.get("event") == "eval"]
print("FD trend:", " ".join(f"{e['kimg']:g}:" + "/".join(f"{v:.2f}" for k, v in e.items() if k.startswith("fd_vgg16"))
                            for e in evals), file=sys.stderr)
files = [f for f in [run / "best.safetensors", *sorted(run.glob("best-ema*.safetensors"))] if f.exists()]
if files:
    fds = {f: load_checkpoint(f).meta["provenance"]["fd_vgg16"] for f in files}
    f = min(fds, key=fds.get)
    b = load_checkpoint(f)
    fmt.save(b, out, half=True)
    print(f"{fds[f]:.4f} {f.name} kimg {b.meta['provenance']['kimg']}")
PYEOF
}
collect_g() {  # name, prefix[, "mid": also a snapshot from half-way]
  local run; run=$(ls -d "$ROOT"/*-"$1" 2>/dev/null | tail -n 1)
  [ -n "$run" ] || { echo "$1: no run dir"; return; }
  grep -h '"sec_per_kimg"' "$run/metrics.jsonl" | tail -n 2
  [ -n "${GPU_FD_KIMG:-}" ] && echo "$1: best $(best_average "$run" "$OUT/$2_best.safetensors")"
  $PY -m trainers.stylegan2 --export-compact "$run" "$OUT/$2.safetensors" || return
  split_big "$OUT/$2.safetensors"
  for k in $g_emas; do  # the longer averages: last snapshot (+ earlier ones with "mid")
    mapfile -t snaps < <(ls "$run"/snapshots/ema"$k"/network-*.safetensors 2>/dev/null)
    local n=${#snaps[@]} p=1 j i
    [ "$n" -gt 0 ] || continue
    cp "${snaps[-1]}" "$OUT/$2_ema$k.safetensors"
    [ "${3:-}" = mid ] || continue
    # GPU_G_EMA_POINTS ("K:P ..."): P snapshots of that average, evenly spaced, the last one included
    for kp in ${GPU_G_EMA_POINTS:-40:2 80:3}; do [ "${kp%%:*}" = "$k" ] && p=${kp##*:}; done
    for (( j = 1; j < p; j++ )); do
      i=$(( n * j / p - 1 )); [ "$i" -ge 0 ] && [ "$i" -lt $(( n - 1 )) ] || continue
      cp "${snaps[$i]}" "$OUT/$2_ema${k}_$(basename "${snaps[$i]}" .safetensors | sed 's/^network-//').safetensors"
    done
  done
  [ "${3:-}" = mid ] && [ -z "$g_emas" ] || return 0
  # a snapshot from about half-way, for the FD trend (G_ema, fp32)
  mapfile -t snaps < <(ls "$run"/snapshots/network-*.safetensors 2>/dev/null)
  [ "${#snaps[@]}" -gt 1 ] && cp "${snaps[$(( ${#snaps[@]} / 2 ))]}" "$OUT/$2_mid.safetensors"
}
collect_e() {  # name, prefix: the best encoder (by held-out LPIPS; CRG: by validation loss), without G
  local run; run=$(ls -d "$ROOT"/*-"$1" 2>/dev/null | tail -n 1)
  [ -n "$run" ] || { echo "$1: no run dir"; return; }
  grep -h '"event": "eval"' "$run/metrics.jsonl" | tail -n 3
  local f="$run/best.safetensors"
  [ -f "$f" ] || f=$(ls "$run"/snapshots/{encoder,network}-*.safetensors 2>/dev/null | tail -n 1)  # killed before an eval
  [ -n "$f" ] || return
  # without the generator's tensors (the pack's own, upcast: 18 MB a file that the 64 MB return
  # limit cannot afford twice); put them back with trainers/pack/gpu_session_merge.py
  $PY - "$f" "$OUT/$2.safetensors" <<'PYEOF' || return
import sys
from safetensors import safe_open
from safetensors.torch import save_file
with safe_open(sys.argv[1], "pt") as f:
    save_file({k: f.get_tensor(k) for k in f.keys() if not k.startswith("generator/")}, sys.argv[2], f.metadata())
PYEOF
  split_big "$OUT/$2.safetensors"
}
for pair in $g_runs; do
  collect_g "pack-g-b${pair%%:*}-lr${pair##*:}" "G_b${pair%%:*}_lr${pair##*:}" \
    "$([ "$n_g" = 1 ] && { [ -z "$g_emas" ] || [ "${GPU_SKIP_E:-0}" = 1 ]; } && echo mid)"
done
collect_new() {  # from-scratch runs: each one's lowest-FD average; the best run's compact too
  local aug run best="" best_fd="" line
  for aug in ${g_scratch//\//-}; do
    run=$(ls -d "$ROOT"/*-pack-g-new-"$aug" 2>/dev/null | tail -n 1)
    [ -n "$run" ] || { echo "pack-g-new-$aug: no run dir"; continue; }
    grep -h '"sec_per_kimg"' "$run/metrics.jsonl" | tail -n 1
    line=$(best_average "$run" "$OUT/G_new_${aug}_best.safetensors")
    echo "pack-g-new-$aug: best $line"
    [ -n "$line" ] || continue
    if [ -z "$best_fd" ] || $PY -c "import sys; sys.exit(not float('${line%% *}') < float('$best_fd'))"; then
      best=$run best_fd=${line%% *}
    fi
  done
  [ -n "$best" ] || return 0
  local name; name=$(basename "$best" | sed 's/^[0-9]*-pack-g-new-//')
  $PY -m trainers.stylegan2 --export-compact "$best" "$OUT/G_new_${name}_compact.safetensors" &&
    split_big "$OUT/G_new_${name}_compact.safetensors"
}
[ -n "$g_scratch" ] && collect_new
if [ "${GPU_SKIP_E:-0}" != 1 ]; then
  for wn in ${GPU_E_WNORMS:-0.005}; do collect_e "pack-e2style-wn$wn" "E_wn$wn"; done
fi
if [ "${GPU_CRG:-0}" = 1 ]; then collect_e pack-crg E_crg; fi
tar czf "$OUT/logs.tgz" -C "$ROOT" --exclude='*.pt' --exclude='*.safetensors' --exclude=tb . 2>/dev/null
ls -la "$OUT"
