"""tools/gpu_check.sh rehearsed on this CPU: every stage at tiny sizes (GPU_CHECK_SIZE=tiny
DEVICE=cpu), the same script and commands that a lent GPU runs, writing the files and JSON lines it
promises into $OUT (at most 8 files, no folder: what the device tool brings back) and exiting
non-zero when one of its commands fails.

Forced here: PYTHON (this interpreter, or a stand-in whose stage commands fail), DATA (missing),
OUT and TMPDIR (tmp dirs). The CUDA side of each stage runs where there is a GPU (its plan is in the
script's header)."""

import json
import os
import stat
import subprocess
import sys
import tarfile

import pytest
from PIL import Image

from conftest import ROOT, make_pairs

pytestmark = [pytest.mark.slow,  # real processes: training, benchmarks and pytest, ~10 s a stage
              pytest.mark.skipif(sys.platform != "linux",
                                 reason="the script targets the Linux GPU machine (GNU coreutils)")]
SCRIPT = ROOT / "tools" / "gpu_check.sh"
BACK_MAX_FILES, BACK_MAX_BYTES = 8, 16 * 2**20  # what the device tool brings back from $OUT


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    make_pairs(folder / "train", 16, size=32, seed=1)
    make_pairs(folder / "val", 4, size=32, seed=2)
    return folder


def gpu_check(stage: str, tmp_path, data, **env):
    """Run one stage at tiny sizes on the CPU; (completed process, its $OUT)."""
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_SIZE": "tiny", "DEVICE": "cpu", "PYTHON": sys.executable,
           "OUT": str(out), "DATA": str(data), "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1",
           **env}
    result = subprocess.run(["bash", str(SCRIPT), stage], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path, env=env)
    return result, out


def records(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_what_comes_back(out, names: set, result, stage: str, rc: int) -> list:
    """The stage wrote exactly these plain files into $OUT, none too big to come back; its JSON
    lines end with the status, which is also its stdout's last line (what the device tool shows)."""
    assert {p.name for p in out.iterdir()} == names and len(names) <= BACK_MAX_FILES
    assert all(p.is_file() and p.stat().st_size <= BACK_MAX_BYTES for p in out.iterdir())
    lines = records(out / f"{stage}.jsonl")
    status = {"gpu_check": "status", "stage": stage, "size": "tiny", "rc": rc}
    assert lines[-1].items() >= status.items() and lines[-1]["wall_s"] >= 0
    assert json.loads(result.stdout.splitlines()[-1]) == lines[-1]
    return lines


def check_info(line: dict, stage: str) -> None:
    import torch
    assert line.items() >= {"gpu_check": "info", "stage": stage, "size": "tiny", "device": "cpu",
                            "torch": torch.__version__}.items()


def test_the_tests_stage_reports_every_test(tmp_path, data):
    result, out = gpu_check("tests", tmp_path, data)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = check_what_comes_back(out, {"tests.jsonl", "tests.log"}, result, "tests", 0)
    check_info(lines[0], "tests")
    tests = lines[1:-1]
    source = (ROOT / "tests/test_cuda.py").read_text()
    assert len(tests) >= source.count("\ndef test_") and all(
        t["gpu_check"] == "test" and t["test"].startswith("tests/test_cuda.py::test_")
        and t["test"].split("::")[1].split("[")[0] in source for t in tests)
    assert {t["outcome"] for t in tests} == {"skipped"}  # no GPU here
    assert all("CUDA" in t["message"] for t in tests)
    assert not list(tmp_path.glob("gpu_check.*"))  # its work folder is gone


def test_the_bench_stage_times_the_step_and_the_loaders(tmp_path, data):
    result, out = gpu_check("bench", tmp_path, data)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = check_what_comes_back(out, {"bench.jsonl", "bench.log"}, result, "bench", 0)
    check_info(lines[0], "bench")
    steps = [r for r in lines if r.get("mode") == "train"]
    assert [(r["batch"], r["precision"], r["compile"]) for r in steps] == [
        (1, "float32", "off"), (2, "bfloat16", "off")]
    assert all(r["img_per_s"] > 0 and r["cuda_graphs"] is None for r in steps)  # no GPU here
    loaders = {r["variant"] for r in lines if r.get("mode") == "loader"}
    assert {"cache build", "files, 0 workers", "cache", "cache, jitter"} <= loaders
    assert "img/s" in result.stdout  # the readable lines, for the device tool's output tail


def test_the_train_stage_trains_evaluates_and_packs(tmp_path, data):
    result, out = gpu_check("train", tmp_path, data)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = check_what_comes_back(out, {"train.jsonl", "train.log", "grid.png", "curves.png",
                                        "train.tar.gz"}, result, "train", 0)
    check_info(lines[0], "train")
    assert [r["step"] for r in lines if "loss_d" in r] == [2, 4, 6, 8]  # 16 pairs, 4 a step
    assert len([r for r in lines if "val_l1" in r]) == 2  # two epochs
    evaluation = [r for r in lines if r.get("gpu_check") == "evaluate"]
    assert len(evaluation) == 1 and evaluation[0]["images"] == 4
    assert {"l1", "psnr", "ssim", "edge_f1"} <= set(evaluation[0])
    assert Image.open(out / "grid.png").size == (3 * 32 + 8, 2 * 32 + 6)  # 2 samples of 32×32
    assert Image.open(out / "curves.png").size == (900, 660)
    with tarfile.open(out / "train.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"models/gpu_check/config.json", "models/gpu_check/log.jsonl", "eval/results.json",
            "eval/index.html"} <= names and not [n for n in names if n.endswith(".pt")]
    assert not list(tmp_path.glob("gpu_check.*"))  # weights and cache went with the work folder


def stand_in_python(tmp_path, fail_all: bool = False):
    """A python that runs the script's own little programs (given as - or -c) and fails every
    stage command (-m MODULE, train.py) with status 3; fail_all: it fails everything."""
    path = tmp_path / "python"
    passes = "" if fail_all else f'case $1 in -|-c) exec {sys.executable} "$@";; esac\n'
    path.write_text(f"#!/bin/sh\n{passes}echo 'stand-in python: failing' >&2\nexit 3\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize("stage, files", [
    ("tests", {"tests.jsonl", "tests.log"}), ("bench", {"bench.jsonl", "bench.log"}),
    ("train", {"train.jsonl", "train.log"})])  # no run folder: no grid, curves, tar or evaluate
def test_a_failing_command_fails_its_stage(tmp_path, data, stage, files):
    result, out = gpu_check(stage, tmp_path, data, PYTHON=stand_in_python(tmp_path))
    assert result.returncode == 3, result.stdout[-3000:]
    lines = check_what_comes_back(out, files, result, stage, 3)
    check_info(lines[0], stage)
    assert "exited 3" in result.stdout and "gpu_check: evaluate" not in result.stdout


def test_missing_data_or_a_broken_python_stops_a_stage_at_once(tmp_path, data):
    result, out = gpu_check("train", tmp_path, tmp_path / "nowhere")
    assert result.returncode == 2 and "name data/edges2shoes-1k in the device tool's carry" \
        in result.stderr
    check_what_comes_back(out, {"train.jsonl", "train.log"}, result, "train", 2)
    (tmp_path / "b").mkdir()
    result, out = gpu_check("bench", tmp_path / "b", data,
                            PYTHON=stand_in_python(tmp_path, fail_all=True))
    assert result.returncode == 3
    assert [r["gpu_check"] for r in records(out / "bench.jsonl")] == ["status"]  # info failed
    assert "gpu_check: bench_train" not in result.stdout  # so nothing else ran


def test_a_wrong_stage_or_size_is_refused(tmp_path, data):
    for stage, env, message in (("all", {}, "usage: bash tools/gpu_check.sh tests|bench|train"),
                                ("train", {"GPU_CHECK_SIZE": "huge"}, "must be full or tiny")):
        result, out = gpu_check(stage, tmp_path, data, **env)
        assert result.returncode == 2 and message in result.stderr and not out.exists()
