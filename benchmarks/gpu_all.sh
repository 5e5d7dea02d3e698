#!/usr/bin/env bash
# The four GPU benchmarks (SimCLR, word2vec, BERT, MAE) in one call, within TOTAL_S seconds overall (default
# 540: one 10-minute device call, with room for the machine to start and the output to come back), then one
# summary block. Cheapest first, so a slow compile late on costs one figure, not all of them.
# Usage (on a machine with a CUDA jax): bash benchmarks/gpu_all.sh [--smoke] [NAME ...]
# NAMEs (simclr word2vec bert mae contrastive) run only those, in that order: rerun the one that timed out.
# contrastive (MoCo v2 and CLIP) is not in the default four: it needs a second call's 540 s of its own.
# --smoke (or SMOKE=1): each script's smoke run (2 steps of a tiny config, any backend).
# Exit: 0 when every one ran; otherwise the first failure's status (2: refused, not a GPU; 124: timed out).
set -uo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
export SMOKE
TOTAL_S=${TOTAL_S:-540}
# Seconds each may take at most; compiles dominate (ViT-B and BERT-base autotune their GEMMs on first compile).
declare -A CAP_S=([simclr]=120 [word2vec]=90 [bert]=150 [mae]=170 [contrastive]=300)
ORDER=(simclr word2vec bert mae)
if (( $# )); then
  for name in "$@"; do
    if [ -z "${CAP_S[$name]:-}" ]; then
      echo "error: unknown benchmark '$name' (known: ${ORDER[*]} contrastive)" >&2
      exit 2
    fi
  done
  ORDER=("$@")
fi
LOGS=$(mktemp -d)
declare -A STATUS
FIRST_RC=0
for name in "${ORDER[@]}"; do
  left=$(( TOTAL_S - SECONDS ))
  if (( left < 30 )); then
    STATUS[$name]="skipped: the overall ${TOTAL_S} s were spent"
    if (( FIRST_RC == 0 )); then FIRST_RC=124; fi
    continue
  fi
  cap=$(( CAP_S[$name] < left ? CAP_S[$name] : left ))
  echo "=== benchmarks/gpu_$name.sh (up to $cap s)"
  t0=$SECONDS
  # stdout streams as it comes; stderr (XLA's warnings, a refusal) follows each script.
  TIMEOUT_S=$cap timeout -k 5 $(( cap + 15 )) bash "benchmarks/gpu_$name.sh" 2>"$LOGS/$name.err" \
    | tee "$LOGS/$name.out"
  rc=${PIPESTATUS[0]}
  cat "$LOGS/$name.err" >&2
  took=$(( SECONDS - t0 ))
  case $rc in
    0) STATUS[$name]="ok, $took s" ;;
    2) STATUS[$name]="refused or bad input (exit 2), $took s: $(tail -n 1 "$LOGS/$name.err")" ;;
    124|137) STATUS[$name]="timed out after $took s (cap $cap s)" ;;
    *) STATUS[$name]="failed (exit $rc), $took s: $(tail -n 1 "$LOGS/$name.err")" ;;
  esac
  if (( rc != 0 && FIRST_RC == 0 )); then FIRST_RC=$rc; fi
done
MODE=""
if [ "$SMOKE" = 1 ]; then MODE=" --smoke (SMOKE RUNS, not GPU figures)"; fi
echo "===== summary: benchmarks/gpu_all.sh$MODE, $SECONDS s of $TOTAL_S"
for name in "${ORDER[@]}"; do
  echo "gpu_$name.sh: ${STATUS[$name]}"
  if [ -f "$LOGS/$name.out" ]; then
    grep '^summary: ' "$LOGS/$name.out" | sed 's/^summary: /  /'
  fi
done
rm -rf "$LOGS"
exit "$FIRST_RC"
