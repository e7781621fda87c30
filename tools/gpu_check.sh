#!/usr/bin/env bash
# Every GPU figure of the project in one command, for a machine with a CUDA GPU that you hold for a
# few minutes: the CUDA tests, the training step and the loaders timed, and a short training run at
# 256×256 scored on the val pairs, all within BUDGET_S seconds. Everything reaches $OUT as it
# happens (logs, one record per test, per configuration, per log interval), so a command stopped
# at any second leaves what had run. Relative paths are taken from the repository's root.
#
#   bash tools/gpu_check.sh          # tests, bench, then train for the seconds left (540 s in all)
#   bash tools/gpu_check.sh train    # one stage alone, for a rerun: tests, bench or train
#   GPU_CHECK_SIZE=tiny DEVICE=cpu DATA=some/pairs bash tools/gpu_check.sh   # rehearsal on a CPU
#
# Knobs are environment variables (each `knob NAME FULL TINY` below gives its two defaults); the
# stages, the knobs and the files and records that come back in $OUT (at most 5 plain files):
# docs/gpu.md. Each stage is capped so that the ones after it keep MIN_S (train: MIN_S plus
# STOP_S, EVAL_S and PACK_S, kept for its save at the limit, the evaluation and the packing). The
# exit status is the first failed stage's (a command stopped at its limit is a failure, but
# training that reaches its limit is not: it saves and is evaluated); the other stages still run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
started=$SECONDS
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu_out}
SIZE=${GPU_CHECK_SIZE:-full}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-data/edges2shoes-1k}
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=${TQDM_MININTERVAL:-10}  # output as it happens

case "${1:-}" in
"") stages=(tests bench train) NAME=gpu_check ;;
tests | bench | train) stages=("$1") NAME=$1 ;;
*) echo "usage: bash tools/gpu_check.sh [tests|bench|train] (no stage: all three)" >&2; exit 2 ;;
esac
case "$SIZE" in full | tiny) ;; *)
    echo "gpu_check: GPU_CHECK_SIZE must be full or tiny, not '$SIZE'" >&2; exit 2 ;;
esac

knob() {  # knob NAME FULL TINY: the environment's whole number, else the size's default
    local value=${!1:-}
    if [ -z "$value" ]; then
        if [ "$SIZE" = tiny ]; then value=$3; else value=$2; fi
    fi
    if [ -n "$value" ] && [[ ! "$value" =~ ^[0-9]+$ ]]; then
        echo "gpu_check: $1 must be a whole number of seconds or epochs, not '$value'" >&2
        exit 2
    fi
    printf -v "$1" '%s' "$value"
    export "${1?}"
}
knob BUDGET_S 540 300
knob TESTS_S 180 120
knob BENCH_S 150 90
knob LOADER_S 40 30
knob TRAIN_S "" ""
knob STOP_S 20 15
knob EVAL_S 45 30
knob PACK_S 10 5
knob MIN_S 60 10
knob TRAIN_EPOCHS 200 2
TRAIN_COMPILE=${TRAIN_COMPILE:-off}
case "$TRAIN_COMPILE" in off | default | reduce-overhead | max-autotune) ;; *)
    echo "gpu_check: TRAIN_COMPILE must be off, default, reduce-overhead or max-autotune, not" \
        "'$TRAIN_COMPILE'" >&2; exit 2 ;;
esac
# the CUDA tests, then torch.compile's CPU test (inductor; it runs where RUN_COMPILE_TESTS=1, set
# at full size: a 2-core CI machine would spend minutes compiling it)
TESTS=${TESTS:-tests/test_cuda.py \
tests/tools/test_speed.py::test_compiled_generator_matches_eager[inductor]}
if [ "$SIZE" = tiny ]; then
    default_configs="1:fp32:0:off 2:bf16:1:off"
else  # plain fp32 beside bf16 channels_last up to batch 256 (~30 GB), then two compiles last
    default_configs="4:fp32:0:off 4:bf16:1:off 16:bf16:1:off 64:bf16:1:off 128:bf16:1:off"
    default_configs+=" 256:bf16:1:off 4:bf16:1:reduce-overhead 64:bf16:1:default"
fi
BENCH_CONFIGS=${BENCH_CONFIGS:-$default_configs}
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export DEVICE DATA TESTS BENCH_CONFIGS TRAIN_COMPILE COMMIT GPU_CHECK_SIZE=$SIZE
AFTER_S=$((STOP_S + EVAL_S + PACK_S))  # kept after training

at_least() {  # at_least STAGE...: the seconds these stages need at the least
    local stage total=0
    for stage in "$@"; do
        total=$((total + MIN_S))
        [ "$stage" != train ] || total=$((total + AFTER_S))
    done
    echo "$total"
}
need=$(at_least "${stages[@]}")
if [ "$BUDGET_S" -lt "$need" ]; then
    echo "gpu_check: BUDGET_S=$BUDGET_S s is less than the $need s needed at least by" \
        "${stages[*]} (MIN_S=$MIN_S a stage; train also STOP_S+EVAL_S+PACK_S=$AFTER_S)" >&2
    exit 2
fi

mkdir -p "$OUT" || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
JSONL=$OUT/$NAME.jsonl LOG=$OUT/$NAME.log
: >"$JSONL"
: >"$LOG"
deadline=$((started + BUDGET_S))
rc=0

say() {  # a line to stdout and the log
    echo "gpu_check: $*" | tee -a "$LOG"
}

digest() {  # what stdout shows of a command's output: no JSON lines (they are in NAME.jsonl), of
    # a progress bar's redrawn line only its last state
    sed -u 's/.*\r//' | grep --line-buffered -v -e '^{' -e '^[[:space:]]*$'
}

run() {  # run NAME SECONDS SIGNAL GRACE COMMAND...: COMMAND sent SIGNAL after SECONDS, killed GRACE
    # seconds later; its output into the log as it comes, a digest to stdout; its status
    local name=$1 seconds=$2 signal=$3 grace=$4 begin=$SECONDS code
    shift 4
    if [ "$seconds" -lt 1 ]; then
        say "$name: no time left in this stage; not run"
        return 124
    fi
    say "$name (at most $seconds s): $*"
    timeout -s "$signal" -k "$grace" "$seconds" "$@" 2>&1 | tee -a "$LOG" | digest
    code=${PIPESTATUS[0]}
    [ "$code" -ne 124 ] || say "$name: stopped at its limit of $seconds s"
    say "$name exited $code after $((SECONDS - begin)) s"
    return "$code"
}

until_end() {  # seconds left in the stage, less $1
    echo $((stage_end - SECONDS - $1))
}

info() {  # the first record: what ran where; fails when DEVICE does not work
    say "info: $PYTHON, DEVICE=$DEVICE"
    "$PYTHON" - "$NAME" "$JSONL" "$WORK" <<'EOF' 2>&1 | tee -a "$LOG" | digest
import json, os, platform, shutil, subprocess, sys
import torch
name, jsonl, work = sys.argv[1:]
env = os.environ
def mib(path):
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None, None
    return usage.total >> 20, usage.free >> 20
knobs = {key.lower(): int(env[key]) if env.get(key, "").isdigit() else env.get(key) or None
         for key in (
    "BUDGET_S", "TESTS_S", "BENCH_S", "LOADER_S", "TRAIN_S", "STOP_S", "EVAL_S", "PACK_S",
    "MIN_S", "TRAIN_EPOCHS", "TRAIN_COMPILE", "TESTS", "BENCH_CONFIGS", "DATA")}
record = {"gpu_check": "info", "stage": name, "size": env["GPU_CHECK_SIZE"],
          "device": env["DEVICE"], "commit": env["COMMIT"], "python": platform.python_version(),
          "torch": torch.__version__, "cuda": torch.version.cuda,
          "cpus": len(os.sched_getaffinity(0)),
          "memory_mib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20}
# the loaders' workers hand batches over in /dev/shm: 8 workers at batch 64 hold ~400 MB there
record["shm_mib"], record["shm_free_mib"] = mib("/dev/shm")
record["work_disk_mib"], record["work_disk_free_mib"] = mib(work)
record["knobs"] = knobs
try:
    device = torch.device(env["DEVICE"])
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
        record["capability"] = list(torch.cuda.get_device_capability(device))
        record["gpu_mib"] = torch.cuda.get_device_properties(device).total_memory >> 20
        record["cudnn"] = torch.backends.cudnn.version()
        smi = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
               "--format=csv,noheader"]
        try:
            record["nvidia_smi"] = subprocess.run(smi, capture_output=True, text=True,
                                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            record["nvidia_smi"] = None
    torch.zeros(1, device=device).add_(1)  # DEVICE works, or the command stops here
except Exception as e:  # noqa: BLE001 -- any reason the device fails is this one line
    record["device_error"] = (str(e).strip().splitlines() or [type(e).__name__])[0]
print(json.dumps(record))
with open(jsonl, "a") as f:
    f.write(json.dumps(record) + "\n")
if "device_error" in record:  # the script says it on stderr, in one line
    with open(os.path.join(work, "device_error"), "w") as f:
        f.write(f"DEVICE={env['DEVICE']} does not work here: {record['device_error']}")
    sys.exit(2)
print(f"{record.get('gpu', record['device'])}, torch {record['torch']}, CUDA {record['cuda']}, "
      f"{record['cpus']} CPUs, {record['memory_mib']} MiB memory, /dev/shm {record['shm_mib']} MiB")
EOF
    return "${PIPESTATUS[0]}"
}

need_data() {  # the pairs must be there: fail in seconds, not after the other work
    if [ ! -d "$DATA/train" ] || [ ! -d "$DATA/val" ]; then
        say "no $DATA/train and $DATA/val: make data/edges2shoes-1k with python -m tools.data" \
            "subset (from the downloaded edges2shoes), or set DATA to a folder of pairs with" \
            "train/ and val/" >&2
        return 2
    fi
}

stage_tests() {
    # one record per test as it ends, appended to NAME.jsonl by this small pytest plugin
    cat >"$WORK/gpu_check_records.py" <<'EOF'
import json
import os


def write(record):
    with open(os.environ["GPU_CHECK_RECORDS"], "a") as f:
        f.write(json.dumps(record) + "\n")


def pytest_collection_finish(session):
    write({"gpu_check": "collected", "tests": len(session.items)})


def pytest_runtest_logreport(report):
    if report.when != "call" and report.outcome == "passed":  # setup and teardown that passed
        return
    outcome = report.outcome if report.when == "call" or report.skipped else "error"
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        message = crash.message
    elif isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
        message = report.longrepr[2]
    else:
        message = str(report.longrepr or "")
    write({"gpu_check": "test", "test": report.nodeid, "outcome": outcome,
           "s": round(report.duration, 3), "message": message[:500]})
EOF
    local targets extra=()
    read -ra targets <<<"$TESTS"
    [ "$SIZE" = tiny ] || extra=(RUN_COMPILE_TESTS=1)
    # SIGINT at the limit: pytest stops, reports and leaves; every finished test is already written
    run pytest "$(until_end 15)" INT 10 env "${extra[@]}" GPU_CHECK_RECORDS="$JSONL" \
        PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m pytest -v -rfEs \
        -p gpu_check_records "${targets[@]}"
}

stage_bench() {
    local configs code=0
    read -ra configs <<<"$BENCH_CONFIGS"
    local train_args=(--repeats 20 --warmup 6)
    local loader_args=(--batch 64 --workers 2 8 --batches 12 --rounds 3)
    if [ "$SIZE" = tiny ]; then
        train_args=(--repeats 2 --warmup 1 --size 32 --ngf 8)
        loader_args=(--batch 4 --workers 0 --batches 2 --rounds 1 --size 32 --load_size 36)
    fi
    # the full step at every batch, one configuration at a time, each written when measured;
    # eager ones first, so that a compile cut short by the limit loses only the compiled rows
    run bench_train "$(until_end $((LOADER_S + 5)))" TERM 5 "$PYTHON" -m tools.bench train \
        --no-interleave --device "$DEVICE" --out "$JSONL" --config "${configs[@]}" \
        "${train_args[@]}" || code=$?
    # the files through workers beside train.py --cache's path, with and without jitter
    local loader=2
    if need_data; then
        run bench_loader "$(until_end 5)" TERM 5 "$PYTHON" -m tools.bench loader \
            --device "$DEVICE" --data "$DATA/train" --jitter false true --out "$JSONL" \
            "${loader_args[@]}"
        loader=$?
    fi
    [ "$code" -ne 0 ] || code=$loader
    return "$code"
}

copy_pictures() {  # the newest validation grid and the curves into $OUT
    local grid
    grid=$(ls "$WORK"/samples/gpu_check/epoch_*.png 2>/dev/null | tail -n 1)
    [ -z "$grid" ] || cp -f "$grid" "$OUT/grid.png"
    [ ! -f "$WORK/models/gpu_check/curves.png" ] || cp -f "$WORK/models/gpu_check/curves.png" \
        "$OUT/curves.png"
}

stage_train() {
    need_data || return 2
    local run_dir=$WORK/models/gpu_check code=0 begin=$SECONDS
    local seconds=$((stage_end - SECONDS))
    # the paper's settings at full size from the decode-once cache (outside $OUT); at the limit
    # SIGTERM lets the step in flight finish, then last.pt and generator.pt are saved
    local args=(--epochs "$TRAIN_EPOCHS" --log_every 100 --val_images 100)
    if [ "$SIZE" = tiny ]; then
        args=(--epochs "$TRAIN_EPOCHS" --log_every 2 --val_images 4 --n_samples 2
              --image_size 32 --num_downs 5 --ngf 8 --ndf 8 --num_workers 0 --precision fp32)
    fi
    if [ "$TRAIN_COMPILE" = off ]; then
        args+=(--no-compile)
    else
        args+=(--compile --compile_mode "$TRAIN_COMPILE")
    fi
    args+=(--data_dir "$DATA" --name gpu_check --models_dir "$WORK/models" --samples_dir
           "$WORK/samples" --cache --cache_dir "$WORK/cache" --device "$DEVICE")
    mkdir -p "$run_dir" && : >"$run_dir/log.jsonl" || return 2
    say "train (SIGTERM at $seconds s, then $STOP_S s to save): $PYTHON train.py ${args[*]}"
    local offset
    offset=$(stat -c %s "$LOG")
    # in the background, so that its log.jsonl follows into NAME.jsonl line by line, its output
    # into the log as it is written, and the pictures into $OUT as they appear
    timeout -s TERM -k "$STOP_S" "$seconds" "$PYTHON" train.py "${args[@]}" >>"$LOG" 2>&1 &
    local pid=$!
    tail -n +1 -f -s 1 --pid="$pid" "$run_dir/log.jsonl" >>"$JSONL" &
    local follower=$!
    (while kill -0 "$pid" 2>/dev/null; do copy_pictures; sleep 5; done) &
    local keeper=$!
    tail -c +$((offset + 1)) -f -s 1 --pid="$pid" "$LOG" | digest
    wait "$pid"
    code=$?
    wait "$follower"
    kill "$keeper" 2>/dev/null
    wait "$keeper"
    copy_pictures
    say "train exited $code after $((SECONDS - begin)) s"
    if [ "$code" -eq 124 ]; then
        say "train stopped at its limit of $seconds s (no failure)"
        code=0
    fi
    if [ "$code" -eq 0 ] && [ -f "$run_dir/generator.pt" ]; then  # paper mode on every val pair
        stage_end=$((stage_end + STOP_S + EVAL_S))
        run evaluate "$(until_end 5)" TERM 5 "$PYTHON" -m tools.evaluate \
            --checkpoint "$run_dir/generator.pt" --data "$DATA/val" --out "$WORK/eval" \
            --device "$DEVICE" || code=$?
        if [ "$code" -eq 0 ]; then
            "$PYTHON" -c 'import json, sys; r = json.load(open(sys.argv[1]))
print(json.dumps({"gpu_check": "evaluate", "mode": r["mode"], "images": len(r["images"]),
                  **r["mean"]}))' "$WORK/eval/results.json" >>"$JSONL" || code=$?
        fi
    elif [ "$code" -eq 0 ]; then
        say "train left no generator.pt: nothing to evaluate"
        code=2
    fi
    # the rest in one file: no weights (0.84 GiB), no TensorBoard events (the same figures again)
    local files=() f
    for f in models/gpu_check/config.json models/gpu_check/log.jsonl eval; do
        [ ! -e "$WORK/$f" ] || files+=("$f")
    done
    if [ "${#files[@]}" -gt 0 ]; then
        tar -czf "$OUT/train.tar.gz" -C "$WORK" "${files[@]}" || code=$?
        if [ "$(stat -c %s "$OUT/train.tar.gz")" -gt $((15 * 2**20)) ]; then  # 16 MiB a file
            say "train.tar.gz over 15 MiB: packed without thumbnails"
            tar -czf "$OUT/train.tar.gz" -C "$WORK" --exclude='*.png' "${files[@]}" || code=$?
        fi
    fi
    return "$code"
}

info
code=$?
if [ "$code" -ne 0 ]; then
    rc=$code
    if [ -s "$WORK/device_error" ]; then
        say "$(cat "$WORK/device_error"); no stage runs" >&2
    else
        say "info failed ($PYTHON exited $code): no stage runs" >&2
    fi
else
    for i in "${!stages[@]}"; do
        stage=${stages[i]}
        left=$((deadline - SECONDS))
        room=$((left - $(at_least "${stages[@]:i+1}")))
        case $stage in
        tests) cap=$((room < TESTS_S ? room : TESTS_S)) ;;
        bench) cap=$((room < BENCH_S ? room : BENCH_S)) ;;
        train)
            cap=$((room - AFTER_S))
            if [ -n "$TRAIN_S" ] && [ "$TRAIN_S" -lt "$cap" ]; then cap=$TRAIN_S; fi ;;
        esac
        printf '{"gpu_check": "stage", "stage": "%s", "cap_s": %d, "left_s": %d}\n' \
            "$stage" "$cap" "$left" >>"$JSONL"
        say "stage $stage: at most $cap s of the $left s left"
        stage_end=$((SECONDS + cap)) begin=$SECONDS
        if [ "$cap" -lt 1 ]; then
            say "no time left for $stage"
            code=124
        else
            "stage_$stage"
            code=$?
        fi
        printf '{"gpu_check": "stage_end", "stage": "%s", "rc": %d, "s": %d}\n' \
            "$stage" "$code" $((SECONDS - begin)) >>"$JSONL"
        say "stage $stage ended with $code after $((SECONDS - begin)) s"
        [ "$rc" -ne 0 ] || rc=$code
    done
fi
count=$(find "$OUT" -type f | wc -l)
[ "$count" -le 8 ] || say "$OUT holds $count files: more than the 8 a GPU machine's output may" \
    "bring back"
printf '{"gpu_check": "status", "stage": "%s", "size": "%s", "rc": %d, "wall_s": %d, %s}\n' \
    "$NAME" "$SIZE" "$rc" $((SECONDS - started)) "\"budget_s\": $BUDGET_S, \"files\": $count" \
    | tee -a "$JSONL"
exit "$rc"
