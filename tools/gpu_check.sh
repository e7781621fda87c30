#!/usr/bin/env bash
# Every GPU claim of the README in one script, for a session that is lent a CUDA GPU (issue 12).
# Run from the repo root on the GPU machine; results (JSON lines, logs, grids, curves) go to $OUT:
#
#   bash tools/gpu_check.sh tests   # tests/test_cuda.py                                   (~3 min)
#   bash tools/gpu_check.sh bench   # training step side by side, loader images/s        (~6 min)
#   bash tools/gpu_check.sh train   # UNet-256 at 256×256 on data/edges2shoes-1k, then evaluate (~8 min)
#   bash tools/gpu_check.sh all
#
# The real pairs do not travel with the repo: before the run, copy them into the git-ignored data/
#   cp -r ../shared/data/edges2shoes-1k data/
# and name data/edges2shoes-1k in the device tool's carry (31 MB). TRAIN_S caps the training time.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
DATA=${DATA:-data/edges2shoes-1k}
TRAIN_S=${TRAIN_S:-360}
mkdir -p "$OUT"
stage=${1:-all}

info() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
    python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
        torch.cuda.get_device_name(), torch.cuda.get_device_capability())" | tee "$OUT/torch.txt"
}

tests() {
    python -m pytest -q tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.txt" | tail -25
}

bench() {
    # plain fp32 eager at batch 1 and 4 against the fast path at 1, 4 and larger batches, interleaved in
    # one run so that they share the machine's state; CUDA graphs through compile's reduce-overhead mode
    python -m tools.bench train --repeats 20 --warmup 6 --out "$OUT/bench_train.jsonl" --config \
        1:fp32:0:off 4:fp32:0:off \
        1:bf16:1:off 4:bf16:1:off 16:bf16:1:off 64:bf16:1:off \
        4:bf16:1:default 64:bf16:1:default 4:bf16:1:reduce-overhead 2>&1 | tee "$OUT/bench_train.txt" \
        | grep -v '^{'
    if [ -d "$DATA/train" ]; then
        # the files through 2 and 8 workers beside train.py --cache's path (built first, timed, in a
        # temporary folder), with and without jitter, interleaved (issue 22)
        python -m tools.bench loader --data "$DATA/train" --batch 64 --workers 2 8 --batches 12 \
            --rounds 3 --jitter false true --out "$OUT/bench_loader.jsonl" 2>&1 \
            | tee "$OUT/bench_loader.txt" | tr '\r' '\n' | grep -v -e '^{' -e '^caching' -e '^ *$'
    else
        echo "gpu_check: no $DATA/train, loader bench skipped (copy ../shared/data/edges2shoes-1k to data/)"
    fi
}

train() {
    if [ ! -d "$DATA/train" ]; then
        echo "gpu_check: no $DATA/train; copy ../shared/data/edges2shoes-1k to data/ and carry it" >&2
        return 2
    fi
    # the paper's settings at full size; epochs high, the time cap ends the run with a checkpoint
    # (SIGTERM: the step in flight finishes, then last.pt is saved), so a lent GPU's minutes decide;
    # the pairs decoded once into cache/ (outside $OUT: 375 MB) and read from there (issue 22)
    timeout -s TERM "$TRAIN_S" python train.py --data_dir "$DATA" --name gpu_e2s1k --epochs 200 \
        --models_dir "$OUT/models" --samples_dir "$OUT/samples" --cache --cache_dir cache \
        --log_every 50 --val_images 100 --compile 2>&1 | tee "$OUT/train.txt" | grep -v '^\s*$' | tail -30
    rm -f "$OUT"/models/gpu_e2s1k/last.pt  # 1.1 GB of optimizer state: too big to bring back
    python -m tools.evaluate --checkpoint "$OUT/models/gpu_e2s1k/generator.pt" --data "$DATA/val" \
        --out "$OUT/eval" 2>&1 | tee "$OUT/evaluate.txt" | tail -12
    ls -t "$OUT"/samples/gpu_e2s1k/epoch_*.png | tail -n +2 | xargs -r rm  # keep the last grid only
    rm -f "$OUT"/models/gpu_e2s1k/generator.pt  # 218 MB: over what a run brings back
}

info
case "$stage" in
    tests) tests ;;
    bench) bench ;;
    train) train ;;
    all) tests; bench; train ;;
    *) echo "usage: bash tools/gpu_check.sh [tests|bench|train|all]" >&2; exit 2 ;;
esac
