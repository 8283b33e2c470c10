#!/usr/bin/env bash
# Issue 27 item 4: the DINOv2-S/14 study at 224 px on one GPU, as one prepared script of at most 10 minutes.
#
#   python scripts/export_dinov2_weights.py --out weights/dinov2_s14_fp16.safetensors      # here, once (44 MB)
#   bash scripts/dinov2_gpu_study.sh weights/dinov2_s14_fp16.safetensors "$OUT"              # on the GPU machine
#   SMOKE=1 bash scripts/dinov2_gpu_study.sh weights/dinov2_s14_fp16.safetensors /tmp/smoke  # CPU, 28 px: checks it
#
# Nothing is downloaded: the weights file travels with the checkout, `animals` ships in the package. The protocol
# is the CPU study's (scripts/dinov2_study.sh: the lean probe of the six grouped types on split A, validate on
# split B with KAdaptation and LoRA oracles, the sweep at the oracle's budget with the baselines), at 224 px and on
# a training set the calibration sizes so that the study's trainings fit, and with one change fixed before any GPU
# ran it: the probe follows a best step on its grid's edge (--lr-grid-extend 2), since the CPU probe's search sat
# on the grid's top at 11 of 16 points and its d90s are upper bounds. Each stage runs under a time limit (the
# whole script stays under 10 minutes); every stage resumes from its trial log, so a second call goes on where the
# first stopped. At the end: the machine, the calibration, images/s per trial type from the logs, and the wall time.
set -uo pipefail
WEIGHTS="dinov2-s14:$1"
OUT="${2:?usage: bash scripts/dinov2_gpu_study.sh WEIGHTS.safetensors OUT}"
SMOKE="${SMOKE:-0}"
JOBS="${JOBS:-2}"  # trials at a time on the one GPU (a 22M-parameter model leaves it idle between kernels alone)
mkdir -p "$OUT"
start=$SECONDS
if [ "$SMOKE" = 1 ]; then
  DEV=cpu IMG=28 SEEDS=1 EPOCHS=1 GRID=1,3 CAL="--steps 2 --batch-size 4" LIMITS=(400 400 200 60)
  TARGETS=attn.q,attn.v,mlp.fc1
else
  DEV=cuda IMG=224 SEEDS=3 EPOCHS=10 GRID=1,3,10,30 CAL="" LIMITS=(240 150 60 30)
  TARGETS=attn.q,attn.k,attn.v,attn.proj,mlp.fc1,mlp.fc2
fi
MODEL="--model vit_small_patch14_dinov2 --weights $WEIGHTS --img-size $IMG"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"; } > "$OUT/machine.txt"

# 1. Calibration (a short timing run): the training-set size at which the study's trainings fit the time limits.
# shellcheck disable=SC2086
python scripts/dinov2_gpu_calibrate.py --weights "$WEIGHTS" --device "$DEV" --img-size "$IMG" --epochs "$EPOCHS" \
  --budget-s $((LIMITS[0] + LIMITS[1] + LIMITS[2])) --json "$OUT/calibration.json" $CAL | tee -a "$OUT/machine.txt"
MAX_TRAIN="$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['max_train'])" "$OUT/calibration.json")"
[ "$SMOKE" = 1 ] && MAX_TRAIN=40

# 2. The study, each stage under its limit (timeout's exit status 124 is a stage cut short, resumable).
stage() { local limit="$1"; shift; timeout --signal=INT "$limit" "$@"; echo "stage $2: exit $? after $((SECONDS - start)) s"; }
# shellcheck disable=SC2086
stage "${LIMITS[0]}" petl-analyze probe $MODEL --dataset animals --targets "$TARGETS" \
  --max-train "$MAX_TRAIN" --seeds "$SEEDS" --epochs "$EPOCHS" --ft-lr 1e-5 --theta-step 0.03 --lr-grid "$GRID" \
  --lr-grid-extend 2 --d-min 10 --points-per-decade 1 --search lean --split-part A --device "$DEV" --jobs "$JOBS" \
  --out "$OUT/probe.json"
if [ -f "$OUT/probe.json" ]; then
  stage "${LIMITS[1]}" petl-analyze validate --probe "$OUT/probe.json" --seeds "$SEEDS" --epochs "$EPOCHS" \
    --device "$DEV" --jobs "$JOBS" --out "$OUT/validation.json"
fi
if [ -f "$OUT/validation.json" ]; then
  petl-analyze select --probe "$OUT/probe.json" --out "$OUT/ranking.json"
  budget="$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['budget'])" "$OUT/validation.json")"
  stage "${LIMITS[2]}" petl-analyze sweep --ranking "$OUT/ranking.json" --shots 0 --max-train "$MAX_TRAIN" \
    --split-part B --budgets "$budget" --methods kadaptation,lora,linear,bitfit,full --method-lr full=1e-5 \
    --seeds "$SEEDS" --epochs "$EPOCHS" --epoch-selection last --no-adapters --device "$DEV" --jobs "$JOBS" \
    --out "$OUT/sweep.json"
fi
if [ -f "$OUT/sweep.json" ]; then
  stage "${LIMITS[3]}" petl-analyze report "$OUT/sweep.json" "$OUT/probe.json" --ranking "$OUT/ranking.json" \
    --validation "$OUT/validation.json" --out "$OUT/report"
fi

# 3. What it cost: images/s per trial type (from the trial logs) and the wall time.
shopt -s nullglob
logs=("$OUT"/*.trials.jsonl)
[ "${#logs[@]}" -gt 0 ] && python scripts/trial_throughput.py "${logs[@]}" --json "$OUT/throughput.json"
echo "wall: $((SECONDS - start)) s" | tee -a "$OUT/machine.txt"
