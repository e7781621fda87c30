"""Several processes and hard faults: DDP on CPU (gloo), kill -9 and Ctrl-C of a real training
process."""

import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref

import pytest
import torch
import torch.multiprocessing as mp

import save
import train
from conftest import ROOT, as_flags, make_pairs, tiny_config
from config import Config
from generator import build_generator

pytestmark = pytest.mark.slow  # real processes: seconds each; `-m "not slow"` skips them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def watch_collectives() -> list:
    """Weak references to every tensor this process gives a collective from now on. One that dies
    (a tensor made for the call) can die in a gloo worker thread after the process began to exit,
    where letting go of it needs the GIL: the process aborts. train.py keeps them (loop.kept)."""
    given = []
    for name in ("all_reduce", "broadcast", "all_gather", "reduce", "broadcast_object_list"):
        def watched(tensor, *args, real=getattr(torch.distributed, name), **kwargs):
            if isinstance(tensor, torch.Tensor):
                given.append(weakref.ref(tensor))
            else:  # broadcast_object_list's objects: its tensors are made inside, never kept
                given.append(lambda: None)
            return real(tensor, *args, **kwargs)
        setattr(torch.distributed, name, watched)
    return given


def let_go(given: list) -> int:
    """How many of the watched tensors no longer exist, once the collector has run."""
    gc.collect()
    return sum(ref() is None for ref in given)


def ddp_worker(rank: int, world_size: int, port: int, cfg_dict: dict, out_dir: str) -> None:
    """One torchrun-like process: the environment torchrun would set, then train.main."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    saves = []
    real_translate, real_save = train.translate, train.save_checkpoint

    # every rank validates with its own G: keep a copy of its weights
    def translate(G, sketch, paper=True):
        torch.save({k: v.clone() for k, v in G.state_dict().items()}, f"{out_dir}/rank{rank}.pt")
        return real_translate(G, sketch, paper)

    def save_checkpoint(path, **kwargs):
        saves.append(kwargs["step"])
        return real_save(path, **kwargs)

    train.translate, train.save_checkpoint = translate, save_checkpoint
    given = watch_collectives()
    result = train.main(Config(**cfg_dict))
    with open(f"{out_dir}/result{rank}.json", "w") as f:
        json.dump({"saves": saves, "step": result["step"], "given": len(given),
                   "let_go": let_go(given)}, f)


def parameters(state: dict) -> dict:
    """A state dict without batch norm's running statistics: those are each rank's own (DDP
    broadcasts rank 0's at the next forward), and their unbiased variance depends on the per-process
    batch size."""
    return {k: v for k, v in state.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def read_log(run_dir) -> list:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_two_processes_hold_identical_weights_and_write_one_checkpoint(tmp_path, pairs_dir):
    cfg = tiny_config(tmp_path, pairs_dir, batch_size=2, log_every=1)
    mp.spawn(ddp_worker, args=(2, free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2)
    # Each rank saw different images, so only the gradient all-reduce can keep the weights equal.
    # (Batch norm running statistics are each rank's own until DDP broadcasts rank 0's at the next
    # forward.)
    rank0, rank1 = (parameters(torch.load(tmp_path / f"rank{r}.pt", weights_only=True))
                    for r in (0, 1))
    for name, tensor in rank0.items():
        assert torch.equal(tensor, rank1[name]), f"ranks disagree on {name}"
    fresh = build_generator(cfg).state_dict()
    assert not torch.equal(rank0["final.1.weight"], fresh["final.1.weight"])  # and they did train
    results = [json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1)]
    assert results[0]["step"] == results[1]["step"] == 4  # 16 pairs / (2 processes × 2 images)
    # one checkpoint, written by rank 0
    assert results[0]["saves"] == [4] and results[1]["saves"] == []
    # the log steps' losses, the stop checks and the writes' outcomes went through collectives,
    # every tensor of them still alive after main: none left for a gloo thread to free at exit
    assert [(r["given"] > 4, r["let_go"]) for r in results] == [(True, 0), (True, 0)]
    assert (save.load_checkpoint(tmp_path / "models/test/last.pt")["generator"].keys()
            >= rank0.keys())


def test_two_processes_match_one_process_on_the_same_total_batch(tmp_path):
    # Batch norm per process equals batch norm over the whole batch only when it sees the same
    # statistics; with identical pairs it does, which isolates the rest: sharding, gradient
    # averaging, loss logging. (SyncBatchNorm, which makes this hold for any data, only runs on
    # GPUs.)
    make_pairs(tmp_path / "data/train", 1, seed=5)
    for i in range(2, 17):
        shutil.copy(tmp_path / "data/train/1_AB.png", tmp_path / f"data/train/{i}_AB.png")
    single = tiny_config(tmp_path / "one", tmp_path / "data", batch_size=4, dropout=0.0,
                         log_every=1)
    train.main(single)
    double = tiny_config(tmp_path / "two", tmp_path / "data", batch_size=2, dropout=0.0,
                         log_every=1)
    mp.spawn(ddp_worker, args=(2, free_port(), double.to_dict(), str(tmp_path)), nprocs=2)
    one, two = read_log(tmp_path / "one/models/test"), read_log(tmp_path / "two/models/test")
    steps_one, steps_two = [r for r in one if "loss_d" in r], [r for r in two if "loss_d" in r]
    assert [r["step"] for r in steps_one] == [r["step"] for r in steps_two] == [1, 2, 3, 4]
    for a, b in zip(steps_one, steps_two):
        for key in ("loss_d", "loss_g_gan", "loss_g_l1"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (key, a, b)
    single_weights = parameters(
        save.load_checkpoint(tmp_path / "one/models/test/last.pt")["generator"])
    ddp_weights = torch.load(tmp_path / "rank0.pt", weights_only=True)
    for name, tensor in single_weights.items():
        assert torch.allclose(tensor, ddp_weights[name], atol=1e-5), (
            f"DDP and single process differ on {name}")


def test_sync_bn_on_cpu_is_refused_clearly(tmp_path, pairs_dir):
    cfg = tiny_config(tmp_path, pairs_dir, batch_size=2, sync_bn=True)
    with pytest.raises(Exception, match="sync_bn needs CUDA"):
        mp.spawn(ddp_worker, args=(2, free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2)


def run_train(tmp_path, data_dir, *flags, torchrun=False, wait=True):
    cfg = tiny_config(tmp_path, data_dir)
    args = as_flags({k: v for k, v in cfg.to_dict().items() if k != "resume"}) + list(flags)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2"] if torchrun \
        else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = launcher + [str(ROOT / "train.py"), *args]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, timeout=240, env=env,
                              cwd=tmp_path)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)


def ranks_said(stderr: str) -> str:
    """What the ranks printed before torchrun's own report of their failure (which says only how
    each ended)."""
    return stderr.split("Traceback (most recent call last):\n  File \"<frozen runpy>\"")[0][-4000:]


def test_torchrun_trains_and_resumes(tmp_path, pairs_dir):
    first = run_train(tmp_path, pairs_dir, "--epochs=1", "--batch_size=2", torchrun=True)
    assert first.returncode == 0, ranks_said(first.stderr)
    ckpt = save.load_checkpoint(tmp_path / "models/test/last.pt", keys=save.CHECKPOINT_KEYS)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 4)  # 16 pairs / (2 processes × 2 images)
    again = run_train(tmp_path, pairs_dir, "--epochs=2", "--batch_size=2", "--resume",
                      torchrun=True)
    assert again.returncode == 0, ranks_said(again.stderr)
    assert "resumed from" in again.stdout and "at epoch 1 batch 0 (step 4)" in again.stdout
    assert save.load_checkpoint(tmp_path / "models/test/last.pt",
                                keys=save.CHECKPOINT_KEYS)["step"] == 8


def test_one_process_under_torchrun_leaves_the_process_group(tmp_path, pairs_dir, monkeypatch):
    # what torchrun --nproc_per_node=1 sets: the run joins a group of one, and must leave it (a
    # group left behind makes torch warn at exit, and a second main() in the process fail)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    joined, init = [], torch.distributed.init_process_group
    monkeypatch.setattr(torch.distributed, "init_process_group",
                        lambda *args, **kwargs: joined.append(args) or init(*args, **kwargs))
    try:
        result = train.main(tiny_config(tmp_path, pairs_dir, precision="fp32", batch_size=8,
                                        image_size=32, num_downs=5))
        assert joined == [("gloo",)] and result["step"] == 2
        assert not torch.distributed.is_initialized()
    finally:
        if torch.distributed.is_initialized():  # the other tests of this process run without one
            torch.distributed.destroy_process_group()


def wait_for_step(run_dir, step: int, process, timeout: float = 120) -> int:
    """Poll the training log until it reports at least `step`; return the last logged step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.stderr.read()[-2000:]
        log = run_dir / "log.jsonl"
        steps = [r["step"] for r in read_log(run_dir) if "loss_d" in r] if log.exists() else []
        if steps and steps[-1] >= step:
            return steps[-1]
        time.sleep(0.05)
    raise TimeoutError(f"no step {step} within {timeout} s")


def test_kill_9_mid_epoch_loses_at_most_one_checkpoint_interval(tmp_path, pairs_dir):
    run_dir = tmp_path / "models/test"
    process = run_train(tmp_path, pairs_dir, "--epochs=100", "--batch_size=1", "--save_every=3",
                        "--log_every=1", wait=False)
    wait_for_step(run_dir, 21, process)  # 16 steps per epoch: well into the second epoch
    # a second training of the folder, while the first runs: refused in one line, nothing touched
    second = run_train(tmp_path, pairs_dir, "--epochs=1", "--batch_size=1", "--resume")
    assert second.returncode == 2, second.stdout[-2000:]
    assert second.stderr.splitlines() == [
        f"train.py: error: {run_dir}: in use by another training (pid {process.pid}); wait for "
        f"it to end, or use another --name"]
    assert process.poll() is None  # the first goes on
    process.send_signal(signal.SIGKILL)  # ...and its end, a crash, lets go of the folder
    process.wait(timeout=30)
    last_logged = max(r["step"] for r in read_log(run_dir) if "loss_d" in r)
    # intact, not half written
    ckpt = save.load_checkpoint(run_dir / "last.pt", keys=save.CHECKPOINT_KEYS)
    assert last_logged - 3 <= ckpt["step"] <= last_logged
    assert ckpt["step"] == 16 * ckpt["epoch"] + ckpt["batch"]
    resumed = run_train(tmp_path, pairs_dir, f"--epochs={ckpt['epoch'] + 1}", "--batch_size=1",
                        "--save_every=3", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at epoch {ckpt['epoch']} batch {ckpt['batch']} (step {ckpt['step']})" in resumed.stdout
    final = save.load_checkpoint(run_dir / "last.pt", keys=save.CHECKPOINT_KEYS)
    assert (final["epoch"], final["batch"], final["step"]) == (ckpt["epoch"] + 1, 0,
                                                               16 * (ckpt["epoch"] + 1))
    assert not list(run_dir.glob(".*.tmp"))  # no half-written file left behind


def test_ctrl_c_of_a_real_process_saves_the_step_it_reached(tmp_path, pairs_dir):
    run_dir = tmp_path / "models/test"
    process = run_train(tmp_path, pairs_dir, "--epochs=100", "--batch_size=1", "--log_every=1",
                        wait=False)
    wait_for_step(run_dir, 5, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "continue with --resume" in stdout
    last_logged = max(r["step"] for r in read_log(run_dir) if "loss_d" in r)
    assert save.load_checkpoint(run_dir / "last.pt",
                                keys=save.CHECKPOINT_KEYS)["step"] == last_logged


def test_sigterm_to_the_process_group_with_loader_workers_saves_and_resumes(tmp_path, pairs_dir):
    # What torchrun's agent, SLURM's scancel and kill -TERM -PGID do: every process of the group,
    # the DataLoader workers included, gets the signal. The workers ignore it; the main one saves.
    run_dir = tmp_path / "models/test"
    cfg = tiny_config(tmp_path, pairs_dir, epochs=100, batch_size=1, log_every=1, num_workers=2)
    flags = as_flags(cfg.to_dict())
    command = [sys.executable, str(ROOT / "train.py"), *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=tmp_path, start_new_session=True)  # its own group
    wait_for_step(run_dir, 5, process)
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "DataLoader worker" not in stderr, stderr[-2000:]
    last_logged = max(r["step"] for r in read_log(run_dir) if "loss_d" in r)
    ckpt = save.load_checkpoint(run_dir / "last.pt", keys=save.CHECKPOINT_KEYS)
    assert ckpt["step"] == last_logged == 16 * ckpt["epoch"] + ckpt["batch"]
    resumed = run_train(tmp_path, pairs_dir, f"--epochs={ckpt['epoch'] + 1}", "--batch_size=1",
                        "--num_workers=2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at epoch {ckpt['epoch']} batch {ckpt['batch']} (step {ckpt['step']})" in resumed.stdout
