#!/usr/bin/env bash
# The from-scratch arms of docs/training.md's study: equal wall time (T, default 12m) on one thread each,
# validated on held-out KAIST scene 05. Run two arms at a time at most on a 2-core machine.
#
#   T=12m benchmarks/study_scratch.sh s128 s64 curr lr2x anymask dum2 l1 syn02 s256
#
# Needs ../shared/data (the KAIST scenes and masks). Run folders go to runs/scratch/<arm>; an arm whose run
# already ended (time limit or completed) is not run again.
set -euo pipefail
cd "$(dirname "$0")/.."
K=../shared/data/kaist; R=../shared/data/tsa-real
T=${T:-12m}
HSRA=${HSRA:-.venv/bin/hsra}
BASE=(--data "$K/kaist_scenes01-05_truth_uint8.npz:0-3" --val-data "$K/kaist_scenes01-05_truth_uint8.npz:4"
      --mask "$K/mask_256.mat" --synthetic-stream --mask-mode random --gain 1 --no-shot-noise --threads 1
      --val-every 100000 --ckpt-every 500 --log-every 50 --steps 4000 --warmup-steps 100)
run() {
  local name=$1; shift
  if [ -f "runs/scratch/$name/run.json" ] && grep -q '"status": "\(time limit\|completed\)"' "runs/scratch/$name/run.json"; then
    return
  fi
  "$HSRA" train "${BASE[@]}" "$@" -o "runs/scratch/$name" --overwrite > "runs/scratch/$name.log" 2>&1
}
half=$(( ${T%m} / 2 ))m
mkdir -p runs/scratch
for arm in "$@"; do
  case $arm in
    s128) run s128 --model hsra-s --patch-size 128 --batch-size 2 --max-time "$T" ;;
    s64) run s64 --model hsra-s --patch-size 64 --batch-size 8 --max-time "$T" ;;
    s256) run s256 --model hsra-s --patch-size 256 --batch-size 1 --max-time "$T" ;;
    lr2x) run lr2x --model hsra-s --patch-size 128 --batch-size 2 --lr 8e-4 --max-time "$T" ;;
    l1) run l1 --model hsra-s --patch-size 128 --batch-size 2 --loss l1 --max-time "$T" ;;
    syn02) run syn02 --model hsra-s --patch-size 128 --batch-size 2 --synthetic-fraction 0.2 --max-time "$T" ;;
    anymask) run anymask --model hsra-s --patch-size 128 --batch-size 2 --mask "$R/mask_660.mat" \
               --generated-masks 0.5 --max-time "$T" ;;
    curr) run curr64 --model hsra-s --patch-size 64 --batch-size 8 --max-time "$half"
          run curr --pretrained runs/scratch/curr64/hsra-s --patch-size 128 --batch-size 2 --max-time "$half" ;;
    dum2) run dum2 --model hsra-dum-2stg --patch-size 128 --batch-size 2 --max-time "$T" ;;
    *) echo "unknown arm: $arm (expected s128 s64 s256 lr2x l1 syn02 anymask curr dum2)" >&2; exit 2 ;;
  esac
done
