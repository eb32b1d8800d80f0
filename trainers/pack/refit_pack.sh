#!/usr/bin/env bash
# Build a pack around a new generator and refit everything that reads its W+ codes or imitates its
# images, on the CPU, unattended: what session 28 did by hand (trainers/pack/README.md).
#
#   bash trainers/pack/refit_pack.sh GENERATOR FD FD_FLOOR [WORK]
#
# GENERATOR: a compact snapshot or network file (e.g. RUN/best.safetensors); FD, FD_FLOOR: its
# bench_pack numbers (stored in the manifest's provenance). WORK (default /work/runs/refit-<date>)
# gets the new pack (WORK/pack, a copy of resources/pack rebuilt around GENERATOR), each trainer's
# run folder, logs and the bench reports. resources/pack is only read: ship by hand afterwards
# (rm -rf resources/pack && cp -r WORK/pack resources/pack) once WORK/bench.txt holds up, with
# distill-bench.txt's numbers copied into the manifest's students.medium.metrics.
#
# Steps and their CPU time on 2 cores (environment variables set the budgets):
#   1. build_pack --generator                                          seconds
#   2. E2Style: --init E2STYLE_INIT (default: the shipped encoder), E2STYLE_SEC (2700)   45 min
#   3. directions.py --encoded 4000 --project-faces 15 --names-from resources/pack   ~17 min
#   4. the student (triplets + DISTILL_STEPS=3000, 1 thread) beside the CRG encoder (CRG_STEPS=2300,
#      1 thread), both --init from the shipped ones                     ~35 min
#   5. bench_pack (+ the 150-chip direction rows) and bench_distill     ~25 min
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 3 ] || { sed -n 2,20p "$0"; exit 2; }
GEN=$1 FD=$2 FLOOR=$3
WORK=${4:-/work/runs/refit-$(date +%Y%m%d-%H%M)}
PY=${PYTHON:-.venv/bin/python}
E2STYLE_SEC=${E2STYLE_SEC:-2700} E2STYLE_INIT=${E2STYLE_INIT:-} DISTILL_STEPS=${DISTILL_STEPS:-3000} CRG_STEPS=${CRG_STEPS:-2300}
DATA=../shared/data/utkface/images
[ -f "$GEN" ] || { echo "error: $GEN: no such generator file" >&2; exit 2; }
[ ! -e "$WORK/pack" ] || { echo "error: $WORK/pack exists; pass another WORK" >&2; exit 2; }
mkdir -p "$WORK"
PACK=$WORK/pack
newest() { ls -d "$WORK"/*-"$1" 2>/dev/null | sort | tail -n 1; }
say() { echo "== $(date +%H:%M:%S) $*"; }

say "1/5 pack around $GEN"
cp -r resources/pack "$PACK"
$PY -m trainers.pack.build_pack --generator "$GEN" --fd "$FD" --fd-floor "$FLOOR" --out "$PACK" \
    --notes "refit by trainers/pack/refit_pack.sh from $GEN"

say "2/5 E2Style refit (${E2STYLE_SEC} s)"
$PY -m trainers.encoder --arch e2style --stages 2 --abort off --size light --model "$PACK" --init "${E2STYLE_INIT:-$PACK}" \
    --data "$DATA" --synthetic-fraction 0.25 --lpips-net vgg --lr 1e-4 --decay-fraction 0.6 --steps 100000 \
    --time-budget "$E2STYLE_SEC" --lambda-w-norm 0.001 --batch 8 --eval-every 200 --threads 2 \
    --out "$WORK" --desc e2style-refit --no-tqdm > "$WORK/e2style.log" 2>&1
$PY -m trainers.pack.build_pack --encoder e2style="$(newest e2style-refit)/best.safetensors" --out "$PACK"

say "3/5 directions"
$PY -m trainers.pack.directions --out "$PACK" --work "$WORK/directions" --encoded 4000 --project-faces 15 \
    --names-from resources/pack --threads 2 > "$WORK/directions.log" 2>&1

say "4/5 student and CRG encoder"
$PY -m trainers.distill_data --generator "$PACK" --out "$WORK/triplets-medium.npz" --count 7200 \
    --styles-per-face 3 --group medium --threads 2 > "$WORK/triplets.log" 2>&1
$PY -m trainers.crg --model "$PACK" --init "$PACK" --space w --size small --batch 16 --lr 1e-4 --eval-every 100 \
    --val-samples 64 --threads 1 --max-steps "$CRG_STEPS" --out "$WORK" --desc crg-refit --no-tqdm \
    > "$WORK/crg.log" 2>&1 &
crg=$!
$PY -m trainers.distill --generator "$PACK" --data "$WORK/triplets-medium.npz" --init "$PACK" --group medium \
    --size small --batch 8 --lr 1e-4 --steps "$DISTILL_STEPS" --decay-fraction 0.3 --eval-every 200 \
    --val-triplets 32 --threads 1 --out "$WORK" --desc distill-refit --no-tqdm > "$WORK/distill.log" 2>&1
wait "$crg"
$PY -m trainers.pack.build_pack --student "$(newest distill-refit)/best.safetensors" \
    --encoder crg="$(newest crg-refit)/best.safetensors" --out "$PACK"

say "5/5 benchmarks"
$PY benchmarks/bench_pack.py --model "$PACK" --threads 2 --out "$WORK/bench" > "$WORK/bench.txt" 2>&1
$PY benchmarks/bench_pack.py --model "$PACK" --threads 2 --only directions --dir-n 150 > "$WORK/bench150.txt" 2>&1
$PY benchmarks/bench_distill.py --model "$PACK" --student "$PACK/student-medium.safetensors" --threads 2 \
    > "$WORK/distill-bench.txt" 2>&1
say "done: $PACK; $WORK/bench.txt, bench150.txt, distill-bench.txt"
