#!/usr/bin/env bash
# The committed validation studies under reports/validation/ (issue 25's protocol): each probe decides on split A,
# validate judges it on split B (disjoint images and seeds, fixed schedule). Resumable: rerunning reads the finished
# trials back from the logs beside each output. Usage: bash scripts/validation_studies.sh [animals digits per_block glyph_folder]
set -euo pipefail
JOBS="${JOBS:-2}"
OUT=reports/validation
# The six grouped units of the demo: disjoint, so that the regret's plans can combine any of them (the catalogue's
# default adds `attn` and `mlp`, which overlap them).
TARGETS=attn.q,attn.k,attn.v,attn.proj,mlp.fc1,mlp.fc2
GLYPHS=/tmp/glyph_letters
# What each study probes (fixed before any result was seen): the demo's grouped targets and grid on 300 training
# images of split A, the whole of split A's validation pool; per_block: each block's units on animals.
probe_args() {
  case "$1" in
    animals|digits) echo "--dataset $1 --targets $TARGETS --max-train 300 --seeds 2 --d-min 10 --points-per-decade 1" ;;
    per_block) echo "--dataset animals --targets $TARGETS --max-train 300 --seeds 1 --dims 10,100,1000,4000 --per-block" ;;
    # an image folder (glyph letters A-J, written by scripts/export_glyph_folder.py): the streamed-data path
    glyph_folder) echo "--dataset $GLYPHS --targets $TARGETS --max-train 300 --seeds 2 --d-min 10 --points-per-decade 1" ;;
    *) echo "unknown study $1" >&2; exit 2 ;;
  esac
}
validate_args() {
  case "$1" in
    # 24 sets: at the default budgets 980 and 3,900 the orders give 297 and 193 distinct plans (counted before any
    # training); 250 gives 16, which fits the compute.
    per_block) echo "--methods kadaptation --seeds 2 --budgets 250" ;;
    *) echo "" ;;
  esac
}
# Seed a log from another (its finished trials are reused, not retrained), run, then drop the records the new
# artefact does not use: they stay in the log they came from.
seeded() {  # seeded <from log> <artefact> <command...>
  local from="$1" artefact="$2"; shift 2
  [ -f "$artefact.trials.jsonl" ] || cp "$from" "$artefact.trials.jsonl"
  "$@"
  python scripts/prune_trials.py "$artefact.trials.jsonl" --keep-for "$artefact"
  rm -f "$artefact.trials.jsonl.stale.jsonl"
}
if [ "$#" -eq 0 ]; then set -- animals digits per_block glyph_folder; fi
for s in "$@"; do
  mkdir -p "$OUT/$s"
  if [ "$s" = glyph_folder ]; then python scripts/export_glyph_folder.py --out "$GLYPHS" --overwrite; fi
  # shellcheck disable=SC2046
  petl-analyze probe $(probe_args "$s") --split-part A --out "$OUT/$s/probe.json" --jobs "$JOBS"
  # shellcheck disable=SC2046
  petl-analyze validate --probe "$OUT/$s/probe.json" $(validate_args "$s") --out "$OUT/$s/validation.json" \
    --jobs "$JOBS" --selectors d90,d90+acc,rgn,fisher,kappa,gps,spt,apla,constant
  # Issue 26: the lean probe of the same study (the full probe's trials reused where they are the same), judged
  # with every selector, the new ones (direct, gid, page, residual) among them, on the same oracle.
  # shellcheck disable=SC2046
  seeded "$OUT/$s/probe.json.trials.jsonl" "$OUT/$s/probe_lean.json" \
    petl-analyze probe $(probe_args "$s") --split-part A --search lean --out "$OUT/$s/probe_lean.json" --jobs "$JOBS"
  # shellcheck disable=SC2046
  seeded "$OUT/$s/validation.json.trials.jsonl" "$OUT/$s/validation_lean.json" \
    petl-analyze validate --probe "$OUT/$s/probe_lean.json" $(validate_args "$s") \
    --out "$OUT/$s/validation_lean.json" --jobs "$JOBS"
done
