#!/usr/bin/env bash
# One prepared call for a lent GPU machine (maintainers): a CUDA smoke test, the training-throughput benchmark and a
# time-budgeted fine-tune of the default network on the any-mask recipe, with what must come back copied to $OUT
# (7 files: checks.txt, train.log, log.csv, model/{model.safetensors,config.json,README.md}, and run.tar: the run folder's
# run.json, log and last checkpoint, which `tar -xf run.tar -C runs/gpu` turns back into a folder to --resume from).
#
# Here, once, in the repository root (../shared does not travel, so the data goes along in .gpu-data):
#   echo /.whl/ >> .git/info/exclude; echo /.gpu-data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl colour-science==0.4.7        # the one package the image lacks (pure Python)
#   mkdir -p .gpu-data && cp ../shared/data/kaist/kaist_scenes01-05_truth_uint8.npz ../shared/data/kaist/mask_256.mat \
#       ../shared/data/tsa-real/mask_660.mat .gpu-data/
# Time: the whole call must end inside the run tool's limit (600 s), or nothing of the training comes back. So the
# checks have their own timeouts, the training gets what is left of BUDGET (default 560 s) less 60 s for its final
# validation, export and the copies, and the copies also run from an EXIT trap.
# Dry run here, on the CPU (the same commands, a minute of training):
#   DEVICE=cpu BUDGET=200 BATCH=1 PATCH=64 WORKERS=1 THREADS=1 OUT=/tmp/gpu-dry PY=.venv/bin/python \
#       bash benchmarks/gpu_session.sh
# On the device: run(command="bash benchmarks/gpu_session.sh", carry=[".whl", ".gpu-data"], timeout_s=600).
# Afterwards: judge out/model on the held-out cases here (benchmarks/bench_cases.py --weights), and continue the run
# on the next GPU: tar -xf run.tar -C runs/gpu && hsra train --config runs/gpu/run.json -o runs/gpu --resume
# (here, on the CPU: add --device cpu --workers 0 --threads 1 --max-time 2h, which override what run.json replays).
set -u
: "${OUT:?set OUT to the folder whose files come back}"
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-560}      # seconds for the whole call
DATA=${DATA:-.gpu-data}
MODEL=${MODEL:-hsra-dum-2stg}
PRETRAINED=${PRETRAINED:-hsra-dum-2stg.any}
BATCH=${BATCH:-32}
PATCH=${PATCH:-256}
WORKERS=${WORKERS:-14}
PY=${PY:-python3}
RUN=${RUN:-/tmp/hsra-gpu-run}
THREADS_FLAG=${THREADS:+--threads $THREADS}   # the CPU dry run: THREADS=1 beside a training job

if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing the carried wheels failed" >&2; exit 1; }
    export PYTHONPATH=/tmp/site:.
else
    export PYTHONPATH=.
fi
mkdir -p "$OUT"
checks="$OUT/checks.txt"
copy_results() {
    trap - EXIT
    mkdir -p "$OUT/model"
    cp "$RUN/log.csv" "$OUT/" 2>/dev/null
    for name in model.safetensors config.json README.md; do cp "$RUN/$MODEL/$name" "$OUT/model/" 2>/dev/null; done
    [ -f "$RUN/checkpoints/last.safetensors" ] && tar -cf "$OUT/run.tar" -C "$RUN" run.json log.csv \
        checkpoints/last.safetensors checkpoints/last.json 2>> "$checks"
    echo "== $(date -u +%FT%TZ) after ${SECONDS}s" >> "$checks"
    ls -la "$OUT" "$OUT/model" >> "$checks" 2>&1
}
trap copy_results EXIT
{
    echo "== $(date -u +%FT%TZ) device=$DEVICE model=$MODEL batch=$BATCH patch=$PATCH budget=${BUDGET}s workers=$WORKERS"
    nvidia-smi 2>&1 | head -15 || true
    if [ "$DEVICE" = cuda ]; then
        echo "== CUDA tests"
        timeout 90 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_train.py 2>&1 | tail -5
    fi
    echo "== bench_train (HSRA-S, the target: >= 500 samples/s at 256², < 10 % data share)"
    timeout 120 "$PY" benchmarks/bench_train.py --device "$DEVICE" --models hsra-s --patches "$PATCH" \
        --batch-size "$BATCH" --workers "$WORKERS" --steps 20 --warmup 10 --data-dir "$DATA" $THREADS_FLAG 2>&1 | tail -6
    echo "== checks done after ${SECONDS}s"
} > "$checks" 2>&1

rm -rf "$RUN"
cat > /tmp/hsra-gpu-recipe.toml <<EOF
model = "$MODEL"
pretrained = "$PRETRAINED"
data = ["$DATA/kaist_scenes01-05_truth_uint8.npz:0-3"]
val-data = ["$DATA/kaist_scenes01-05_truth_uint8.npz:4"]
mask = ["$DATA/mask_256.mat", "$DATA/mask_660.mat"]
mask-mode = "random"
generated-masks = 0.5
noise-fraction = 0.3
synthetic-stream = true
synthetic-fraction = 0.5
patch-size = $PATCH
batch-size = $BATCH
lr = 4e-5
warmup-steps = 50
steps = 100000
val-every = 200
ckpt-every = 200
workers = $WORKERS
EOF
left=$((BUDGET - SECONDS - 60))
if [ "$left" -lt 30 ]; then
    echo "no time left to train (${left}s)" >> "$checks"
    exit 1
fi
"$PY" -m hsra_cli train --config /tmp/hsra-gpu-recipe.toml --device "$DEVICE" --max-time "${left}s" -o "$RUN" \
    $THREADS_FLAG > "$OUT/train.log" 2>&1
status=$?
copy_results
exit $status
