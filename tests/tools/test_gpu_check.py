"""tools/gpu_check.sh rehearsed on this CPU at tiny sizes (GPU_CHECK_SIZE=tiny DEVICE=cpu): the one
command that runs every stage within BUDGET_S, the files and records it promises in $OUT (at most 8
plain files, no folder: what a GPU machine's output brings back), what a command killed midway
leaves there, and a failing device or stage failing the command.

Forced here: PYTHON (this interpreter), DATA (tiny pairs, or missing), TESTS (small test files of
our own where the tests stage itself is under test), OUT and TMPDIR (tmp dirs). The CUDA side of
each stage runs where there is a GPU (docs/gpu.md)."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest
from PIL import Image

from conftest import ROOT, make_pairs

pytestmark = [pytest.mark.slow,  # real processes: pytest, benchmarks, training, evaluation
              pytest.mark.skipif(sys.platform != "linux",
                                 reason="the script targets the Linux GPU machine (GNU coreutils)")]
SCRIPT = ROOT / "tools" / "gpu_check.sh"
BACK_MAX_FILES, BACK_MAX_BYTES, BACK_MAX_DEPTH = 8, 16 * 2**20, 2  # what comes back from $OUT
# the tiny defaults of the times kept after training (STOP_S + EVAL_S + PACK_S) and of MIN_S
AFTER_S, MIN_S = 15 + 30 + 5, 10


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    make_pairs(folder / "train", 16, size=32, seed=1)
    make_pairs(folder / "val", 4, size=32, seed=2)
    return folder


def environment(tmp_path, data, **env) -> dict:
    return {**os.environ, "GPU_CHECK_SIZE": "tiny", "DEVICE": "cpu", "PYTHON": sys.executable,
            "OUT": str(tmp_path / "out"), "DATA": str(data), "TMPDIR": str(tmp_path),
            "OMP_NUM_THREADS": "1", **env}


def gpu_check(tmp_path, data, *stage, timeout=300, **env):
    """Run the script at tiny sizes on the CPU; (completed process, its $OUT)."""
    result = subprocess.run(["bash", str(SCRIPT), *stage], capture_output=True, text=True,
                            timeout=timeout, cwd=tmp_path, env=environment(tmp_path, data, **env))
    return result, tmp_path / "out"


def records(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_what_comes_back(out, names: set, result, name: str, rc: int) -> list:
    """$OUT holds exactly these plain files, few, small and shallow enough to come back; the JSON
    lines end with the status, which is also stdout's last line."""
    found = [os.path.join(folder, f) for folder, _, files in os.walk(out) for f in files]
    assert {os.path.relpath(p, out) for p in found} == names and len(names) <= BACK_MAX_FILES
    assert all(os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) <= BACK_MAX_BYTES
               and os.path.relpath(p, out).count(os.sep) <= BACK_MAX_DEPTH for p in found)
    lines = records(out / f"{name}.jsonl")
    status = {"gpu_check": "status", "stage": name, "size": "tiny", "rc": rc, "files": len(names)}
    assert lines[-1].items() >= status.items()
    assert json.loads(result.stdout.splitlines()[-1]) == lines[-1]
    return lines


def test_the_one_call_runs_every_stage_within_its_budget(tmp_path, data):
    # tests' cap is the room left for the stages after it, bench's its own knob, train the rest
    budget, tests_s, bench_s = 300, 250, 60
    result, out = gpu_check(tmp_path, data, timeout=budget + 30, BUDGET_S=str(budget),
                            TESTS_S=str(tests_s), BENCH_S=str(bench_s))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = check_what_comes_back(out, {"gpu_check.jsonl", "gpu_check.log", "grid.png",
                                        "curves.png", "train.tar.gz"}, result, "gpu_check", 0)
    import torch
    info = lines[0]
    assert info.items() >= {"gpu_check": "info", "stage": "gpu_check", "size": "tiny",
                            "device": "cpu", "torch": torch.__version__}.items()
    assert info["shm_mib"] > 0 and info["knobs"]["budget_s"] == budget

    # the carving: each stage leaves the ones after it their least, train keeps AFTER_S
    stages = {r["stage"]: r for r in lines if r.get("gpu_check") == "stage"}
    ends = {r["stage"]: r for r in lines if r.get("gpu_check") == "stage_end"}
    assert list(stages) == list(ends) == ["tests", "bench", "train"]
    assert stages["tests"]["cap_s"] == min(tests_s, stages["tests"]["left_s"] - 2 * MIN_S
                                           - AFTER_S) < tests_s
    assert stages["bench"]["cap_s"] == min(bench_s, stages["bench"]["left_s"] - MIN_S - AFTER_S)
    assert stages["train"]["cap_s"] == stages["train"]["left_s"] - AFTER_S
    # were every stage to use all of its cap, the ones after it would still fit, and each did keep
    # within its cap (train within its cap and the time kept after it)
    reserve = {"tests": 2 * MIN_S + AFTER_S, "bench": MIN_S + AFTER_S, "train": AFTER_S}
    assert all(stages[s]["cap_s"] + reserve[s] <= stages[s]["left_s"] <= budget for s in stages)
    kept = {"tests": 0, "bench": 0, "train": AFTER_S}
    assert all(ends[s]["rc"] == 0 and ends[s]["s"] <= stages[s]["cap_s"] + kept[s]
               for s in stages)
    assert lines[-1]["wall_s"] <= budget

    # tests: one record per test as it ended; skipped without a GPU
    tests = [r for r in lines if r.get("gpu_check") == "test"]
    collected, = [r["tests"] for r in lines if r.get("gpu_check") == "collected"]
    source = (ROOT / "tests/test_cuda.py").read_text()
    assert len(tests) == collected >= source.count("\ndef test_") + 1
    assert all(t["outcome"] == "skipped" for t in tests)
    assert {t["test"].split("::")[0] for t in tests} == {"tests/test_cuda.py",
                                                         "tests/tools/test_speed.py"}
    assert all("CUDA" in t["message"] for t in tests if "test_cuda" in t["test"])
    compiled, = [t for t in tests if "test_speed" in t["test"]]
    assert compiled["test"].endswith("[inductor]") and "RUN_COMPILE_TESTS" in compiled["message"]

    # bench: the step one configuration at a time, then the loaders
    steps = [r for r in lines if r.get("mode") == "train"]
    assert [(r["batch"], r["precision"], r["compile"]) for r in steps] == [
        (1, "float32", "off"), (2, "bfloat16", "off")]
    assert all(r["img_per_s"] > 0 and r["cuda_graphs"] is None for r in steps)  # no GPU here
    loaders = {r["variant"] for r in lines if r.get("mode") == "loader"}
    assert {"cache build", "files, 0 workers", "cache", "cache, jitter"} <= loaders
    assert "img/s" in result.stdout  # the readable lines, for a reader of stdout's tail

    # train: its log as records, the evaluation, the pictures and the rest packed
    assert [r["step"] for r in lines if "loss_d" in r] == [2, 4, 6, 8]  # 16 pairs, 4 a step
    assert len([r for r in lines if "val_l1" in r]) == 2  # two epochs
    evaluation, = [r for r in lines if r.get("gpu_check") == "evaluate"]
    assert evaluation["images"] == 4 and {"l1", "psnr", "ssim", "edge_f1"} <= set(evaluation)
    assert Image.open(out / "grid.png").size == (3 * 32 + 8, 2 * 32 + 6)  # 2 samples of 32×32
    assert Image.open(out / "curves.png").size == (900, 660)
    with tarfile.open(out / "train.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"models/gpu_check/config.json", "models/gpu_check/log.jsonl", "eval/results.json",
            "eval/index.html"} <= names and not [n for n in names if n.endswith(".pt")]
    assert "epoch 1 step 8 |" in result.stdout and "\r" not in result.stdout
    assert not list(tmp_path.glob("gpu_check.*"))  # weights and cache went with the work folder


def processes_of(leader: int) -> list:
    """The live (not zombie) processes whose sid is the leader's: timeout(1) gives its command a
    process group of its own, so the whole command is everything under that sid, which a machine
    that ends a command ends."""
    pids = []
    for stat in os.listdir("/proc"):
        try:
            fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # not a process, or one that just ended
            continue
        if int(fields[3]) == leader and fields[0] != "Z":
            pids.append(int(stat))
    return pids


def kill_when(tmp_path, data, stage: str, reached, **env):
    """Start the script, SIGKILL every process of it once reached(out) is true (polled: a state,
    not a time), and wait until none is left; its $OUT."""
    out = tmp_path / "out"
    process = subprocess.Popen(["bash", str(SCRIPT), stage], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
                               env=environment(tmp_path, data, **env))
    try:
        deadline = time.monotonic() + 240
        while not reached(out):
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the state never came"
            time.sleep(0.1)
    finally:
        while pids := processes_of(process.pid):
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.poll()  # reap the script itself
            time.sleep(0.05)  # until the kills have landed: a state, polled
        process.wait()
        process.stdout.close()
    return out


def has_record(path, predicate) -> bool:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return False
    return any(predicate(json.loads(line)) for line in lines if line.endswith("}"))


def test_a_call_killed_during_training_leaves_its_log_and_records(tmp_path, data):
    # a thousand epochs: still training when the first log interval's record reaches $OUT
    out = kill_when(tmp_path, data, "train",
                    lambda out: has_record(out / "train.jsonl", lambda r: r.get("step") == 4),
                    TRAIN_EPOCHS="1000")
    lines = records(out / "train.jsonl")
    assert lines[0]["gpu_check"] == "info" and lines[1]["gpu_check"] == "stage"
    assert [r["step"] for r in lines if "loss_d" in r][:2] == [2, 4]
    assert lines[-1].get("gpu_check") != "status"  # killed before the end
    log = (out / "train.log").read_text()
    assert "epoch 0 step 2 | D" in log and "data: 16 train pairs" in log  # train's own output
    assert "train exited" not in log  # as it was written, not copied at the end


def test_a_call_killed_during_the_tests_leaves_each_finished_test(tmp_path, data):
    tests = tmp_path / "pending"
    tests.mkdir()
    (tests / "test_pending.py").write_text(
        "import time\n\n\ndef test_first():\n    pass\n\n\n"
        "def test_waits_for_ever():\n    while True:\n        time.sleep(0.1)\n")
    out = kill_when(tmp_path, data, "tests",
                    lambda out: has_record(out / "tests.jsonl", lambda r: r.get("test")),
                    TESTS=str(tests / "test_pending.py"))
    lines = records(out / "tests.jsonl")
    assert [r.get("gpu_check") for r in lines] == ["info", "stage", "collected", "test"]
    assert lines[2]["tests"] == 2
    assert lines[3]["test"].endswith("test_pending.py::test_first")
    assert lines[3]["outcome"] == "passed"
    assert "test_first PASSED" in (out / "tests.log").read_text()


def test_a_failing_stage_fails_the_call_and_the_others_still_run(tmp_path):
    # a failing test, then no data for bench's loaders and for train: the first failure's status
    tests = tmp_path / "some"
    tests.mkdir()
    (tests / "test_some.py").write_text(
        "def test_passes():\n    pass\n\n\ndef test_fails():\n    assert 1 + 1 == 3, 'wrong'\n")
    result, out = gpu_check(tmp_path, tmp_path / "nowhere", TESTS=str(tests / "test_some.py"),
                            BENCH_CONFIGS="1:fp32:0:off")
    assert result.returncode == 1, result.stdout[-3000:]
    lines = check_what_comes_back(out, {"gpu_check.jsonl", "gpu_check.log"}, result, "gpu_check",
                                  1)
    assert {r["stage"]: r["rc"] for r in lines if r.get("gpu_check") == "stage_end"} == {
        "tests": 1, "bench": 2, "train": 2}
    outcomes = {r["test"].split("::")[1]: r for r in lines if r.get("gpu_check") == "test"}
    assert outcomes["test_passes"]["outcome"] == "passed"
    assert outcomes["test_fails"]["outcome"] == "failed"
    assert "wrong" in outcomes["test_fails"]["message"]
    assert [r["batch"] for r in lines if r.get("mode") == "train"] == [1]  # bench's step ran
    assert "python -m tools.data subset" in result.stderr  # how to make the missing data


@pytest.mark.parametrize("device", ["cuda:7", "bogus"])
def test_a_device_that_does_not_work_fails_the_call_at_once(tmp_path, data, device):
    result, out = gpu_check(tmp_path, data, DEVICE=device)
    assert result.returncode == 2
    lines = check_what_comes_back(out, {"gpu_check.jsonl", "gpu_check.log"}, result, "gpu_check",
                                  2)
    assert [r.get("gpu_check") for r in lines] == ["info", "status"]  # no stage ran
    assert lines[0]["device"] == device and lines[0]["device_error"]
    message = f"gpu_check: DEVICE={device} does not work here: "
    assert message in result.stderr and "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("stage, env, message", [
    ("all", {}, "usage: bash tools/gpu_check.sh [tests|bench|train]"),
    ("", {"GPU_CHECK_SIZE": "huge"}, "GPU_CHECK_SIZE must be full or tiny"),
    ("", {"TESTS_S": "3m"}, "TESTS_S must be a whole number"),
    ("", {"TRAIN_COMPILE": "yes"}, "TRAIN_COMPILE must be off, default"),
    # tiny: MIN_S=10 for each of three stages, and train's 50 s kept after it
    ("", {"BUDGET_S": "79"}, "BUDGET_S=79 s is less than the 80 s needed"),
    ("train", {"BUDGET_S": "59"}, "BUDGET_S=59 s is less than the 60 s needed at least by train"),
])
def test_a_wrong_stage_size_knob_or_budget_is_refused_at_once(tmp_path, data, stage, env, message):
    result, out = gpu_check(tmp_path, data, *([stage] if stage else []), **env)
    assert result.returncode == 2 and message in result.stderr and not out.exists()
