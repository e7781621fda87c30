#!/usr/bin/env bash
# The README's GPU claims measured on a CUDA GPU, one stage per command; every stage also runs on a
# CPU at tiny sizes (the rehearsal, tests/tools/test_gpu_check.py), so no lent minute goes to the
# plumbing. Relative paths are taken from the repo root.
#
#   bash tools/gpu_check.sh tests   # tests/test_cuda.py, capped at TESTS_S (270 s)        ~3-4 min
#   bash tools/gpu_check.sh bench   # the step side by side (BENCH_S: 210 s), loaders' img/s ~3 min
#   bash tools/gpu_check.sh train   # UNet-256 on DATA for TRAIN_S (240 s), then evaluate    ~5 min
#   GPU_CHECK_SIZE=tiny DEVICE=cpu DATA=some/pairs bash tools/gpu_check.sh train   # rehearsal
#
# Knobs (environment): GPU_CHECK_SIZE full|tiny, DEVICE (cuda), PYTHON (python3), OUT (gpu_out),
# DATA (data/edges2shoes-1k: train/ and val/), TRAIN_S, TESTS_S, BENCH_S, TESTS (pytest target).
#
# What comes back: each stage writes at most 5 plain files to $OUT, no folder (the device tool
# brings back 8 files of 16 MiB at most):
#   STAGE.jsonl   {"gpu_check": "info", ...} first (machine, torch, GPU), the stage's records, and
#                 {"gpu_check": "status", "rc": N, ...} last
#   STAGE.log     everything its commands printed
#   train also:   grid.png (the last epoch's validation grid), curves.png, train.tar.gz (config,
#                 log.jsonl, evaluate's results.json, index.html and thumbnails; no weights)
# Records: tests one {"gpu_check": "test", "test", "outcome", "s", "message"} per test; bench
# tools.bench's lines (mode train: one per configuration, cuda_graphs for reduce-overhead; mode
# loader); train log.jsonl's lines (losses and img/s of training steps alone, val_l1 per epoch)
# and {"gpu_check": "evaluate", ...} with evaluate's means.
# The exit status is the first failed command's (train reaching TRAIN_S is no failure); a stage
# goes on with the commands that do not need the failed one, so one call brings back what it can.
#
# The plan for a lease of 15 minutes, all of it counted (start, transfers, waits): three calls of
# the device tool back to back (it keeps the machine 30 s after a call; a cold start costs 1-2 min).
#   once, here:  python -m tools.data subset data/edges2shoes data/edges2shoes-1k   (31 MB, ignored)
#   1. command "bash tools/gpu_check.sh tests", timeout_s 330, no carry                   ~3-4 min
#   2. command "bash tools/gpu_check.sh bench", timeout_s 300, carry ["data/edges2shoes-1k"] ~3 min
#   3. command "TRAIN_S=240 bash tools/gpu_check.sh train", timeout_s 420, the same carry  ~5 min
#      (train last: its length is the knob; TRAIN_S = status's budget_left_s minus ~120 s)
# then give the machine back. Every stage fits one call's 10 minutes on its own.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu_out}
SIZE=${GPU_CHECK_SIZE:-full}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-data/edges2shoes-1k}
TRAIN_S=${TRAIN_S:-240}
TESTS_S=${TESTS_S:-270}
BENCH_S=${BENCH_S:-210}
TESTS=${TESTS:-tests/test_cuda.py}
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=${TQDM_MININTERVAL:-10}  # logs as they happen
stage=${1:-}
case "$stage" in tests | bench | train) ;; *)
    echo "usage: bash tools/gpu_check.sh tests|bench|train (one stage per call)" >&2; exit 2 ;;
esac
case "$SIZE" in full | tiny) ;; *)
    echo "gpu_check: GPU_CHECK_SIZE must be full or tiny, not '$SIZE'" >&2; exit 2 ;;
esac
mkdir -p "$OUT" || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
JSONL=$OUT/$stage.jsonl LOG=$OUT/$stage.log
: >"$JSONL"
: >"$LOG"
rc=0 started=$SECONDS

fail() {  # the stage's status is its first failure's
    [ "$rc" -ne 0 ] || rc=$1
}

run() {  # run NAME COMMAND...: output to the log, a digest to stdout; returns COMMAND's status
    local name=$1 part=$WORK/$1.out code
    shift
    echo "gpu_check: $name: $*" | tee -a "$LOG"
    local begin=$SECONDS
    "$@" >"$part" 2>&1
    code=$?
    cat "$part" >>"$LOG"
    tr '\r' '\n' <"$part" | grep -v -e '^{' -e '^[[:space:]]*$' | tail -n 30 || true
    echo "gpu_check: $name exited $code after $((SECONDS - begin)) s" | tee -a "$LOG"
    return "$code"
}

info() {  # the first record: what ran where; fails when DEVICE does not work
    local commit
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    run info "$PYTHON" - "$stage" "$SIZE" "$DEVICE" "$commit" "$JSONL" <<'EOF'
import json, os, platform, subprocess, sys
import torch
stage, size, device, commit, jsonl = sys.argv[1:]
record = {"gpu_check": "info", "stage": stage, "size": size, "device": device, "commit": commit,
          "python": platform.python_version(), "torch": torch.__version__,
          "cuda": torch.version.cuda, "cpus": len(os.sched_getaffinity(0))}
if torch.device(device).type == "cuda":
    record["gpu"] = torch.cuda.get_device_name(device)
    record["capability"] = list(torch.cuda.get_device_capability(device))
    record["gpu_mib"] = torch.cuda.get_device_properties(device).total_memory // 2**20
    try:
        record["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        record["nvidia_smi"] = None
torch.zeros(1, device=device).add_(1)  # DEVICE works, or this stage stops here
print(json.dumps(record))
with open(jsonl, "a") as f:
    f.write(json.dumps(record) + "\n")
EOF
}

need_data() {  # the pairs travel only when carried: fail in seconds, not after the other work
    if [ ! -d "$DATA/train" ] || [ ! -d "$DATA/val" ]; then
        echo "gpu_check: no $DATA/train and $DATA/val; python -m tools.data subset makes" \
            "data/edges2shoes-1k: name data/edges2shoes-1k in the device tool's carry" \
            | tee -a "$LOG" >&2
        return 2
    fi
}

tests() {
    # SIGINT, not SIGTERM, at the cap: pytest then stops, reports and writes its junit file
    run pytest timeout -s INT -k 30 "$TESTS_S" "$PYTHON" -m pytest -v -rfEs \
        --junitxml="$WORK/junit.xml" "$TESTS" || fail $?
    "$PYTHON" - "$WORK/junit.xml" "$LOG" >>"$JSONL" <<'EOF' || fail $?
import json, re, sys
from pathlib import Path
from xml.etree import ElementTree
junit, log = map(Path, sys.argv[1:])
if junit.is_file():  # one record per test, from pytest's own report
    for case in ElementTree.parse(junit).iter("testcase"):
        problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}.get(
            problem.tag if problem is not None else "", "passed")
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        print(json.dumps({"gpu_check": "test", "test": name, "outcome": outcome,
                          "s": float(case.get("time") or 0),
                          "message": (problem.get("message") or "")[:500]
                          if problem is not None else ""}))
else:  # pytest died before writing it: the outcomes that -v printed
    for test, outcome in re.findall(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR)", log.read_text(),
                                    re.MULTILINE):
        print(json.dumps({"gpu_check": "test", "test": test, "outcome": outcome.lower(),
                          "s": None, "message": ""}))
EOF
}

bench() {
    need_data || return 2
    # one compiled row (each compiles for a minute or more): train's --compile gives the default
    # mode's speed at batch 4
    local train_args=(--config 1:fp32:0:off 4:fp32:0:off 4:bf16:1:off 16:bf16:1:off 64:bf16:1:off
                      4:bf16:1:reduce-overhead --repeats 20 --warmup 6)
    local loader_args=(--batch 64 --workers 2 8 --batches 12 --rounds 3)
    if [ "$SIZE" = tiny ]; then
        train_args=(--config 1:fp32:0:off 2:bf16:1:off --repeats 2 --warmup 1 --size 32 --ngf 8)
        loader_args=(--batch 4 --workers 0 --batches 2 --rounds 1 --size 32 --load_size 36)
    fi
    # eager fp32 against the fast path at growing batches and CUDA graphs (reduce-overhead),
    # interleaved in one process so that they share the machine's state; the caps leave the call
    # time to bring back what there is (bench writes its records at the end)
    run bench_train timeout -k 10 "$BENCH_S" "$PYTHON" -m tools.bench train --device "$DEVICE" \
        --out "$JSONL" "${train_args[@]}" || fail $?
    # the files through workers beside train.py --cache's path (built first, timed, in a
    # temporary folder), with and without jitter, interleaved
    run bench_loader timeout -k 10 90 "$PYTHON" -m tools.bench loader --device "$DEVICE" \
        --data "$DATA/train" --jitter false true --out "$JSONL" "${loader_args[@]}" || fail $?
}

train() {
    need_data || return 2
    local run_dir=$WORK/models/gpu_check code
    # the paper's settings at full size, compiled, from the decode-once cache (outside $OUT); the
    # time cap's SIGTERM lets the step in flight finish, then last.pt is saved (timeout says 124)
    local args=(--epochs 200 --log_every 50 --val_images 100 --compile)
    if [ "$SIZE" = tiny ]; then
        args=(--epochs 2 --log_every 2 --val_images 4 --n_samples 2 --image_size 32 --num_downs 5
              --ngf 8 --ndf 8 --num_workers 0 --precision fp32 --no-compile)
    fi
    run train timeout -s TERM -k 60 "$TRAIN_S" "$PYTHON" train.py --data_dir "$DATA" \
        --name gpu_check --models_dir "$WORK/models" --samples_dir "$WORK/samples" --cache \
        --cache_dir "$WORK/cache" --device "$DEVICE" "${args[@]}"
    code=$?
    [ "$code" -eq 124 ] && echo "gpu_check: train stopped at TRAIN_S=$TRAIN_S s" | tee -a "$LOG"
    [ "$code" -eq 0 ] || [ "$code" -eq 124 ] || fail "$code"
    if [ -f "$run_dir/log.jsonl" ]; then
        cat "$run_dir/log.jsonl" >>"$JSONL"
    fi
    if [ "$rc" -eq 0 ]; then  # paper mode (dropout on, seed 0) on every val pair
        run evaluate "$PYTHON" -m tools.evaluate --checkpoint "$run_dir/generator.pt" \
            --data "$DATA/val" --out "$WORK/eval" --device "$DEVICE" || fail $?
        "$PYTHON" -c 'import json, sys; r = json.load(open(sys.argv[1]))
print(json.dumps({"gpu_check": "evaluate", "mode": r["mode"], "images": len(r["images"]),
                  **r["mean"]}))' "$WORK/eval/results.json" >>"$JSONL" || fail $?
    fi
    local grid
    grid=$(ls "$WORK"/samples/gpu_check/epoch_*.png 2>/dev/null | tail -n 1)
    [ -z "$grid" ] || cp "$grid" "$OUT/grid.png"
    [ ! -f "$run_dir/curves.png" ] || cp "$run_dir/curves.png" "$OUT/curves.png"
    # the rest in one file: no weights (1.3 GB), no TensorBoard events (the same figures again)
    local files=()
    for f in models/gpu_check/config.json models/gpu_check/log.jsonl eval; do
        [ ! -e "$WORK/$f" ] || files+=("$f")
    done
    if [ "${#files[@]}" -gt 0 ]; then
        tar -czf "$OUT/train.tar.gz" -C "$WORK" "${files[@]}" || fail $?
        if [ "$(stat -c %s "$OUT/train.tar.gz")" -gt $((15 * 2**20)) ]; then  # 16 MiB come back
            echo "gpu_check: train.tar.gz over 15 MiB: packed without thumbnails" | tee -a "$LOG"
            tar -czf "$OUT/train.tar.gz" -C "$WORK" --exclude='*.png' "${files[@]}" || fail $?
        fi
    fi
}

info || fail $?
if [ "$rc" -eq 0 ]; then
    "$stage" || fail $?
fi
count=$(find "$OUT" -type f | wc -l)
[ "$count" -le 8 ] || echo "gpu_check: $OUT holds $count files; the device tool brings back 8" >&2
printf '{"gpu_check": "status", "stage": "%s", "size": "%s", "rc": %d, "wall_s": %d}\n' \
    "$stage" "$SIZE" "$rc" $((SECONDS - started)) | tee -a "$JSONL"
exit "$rc"
