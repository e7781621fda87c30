"""Several processes (gloo on CPU): a failure on rank 0 alone reaches every rank, which leave
together; DDP's settings."""

import json
import os
import time

import pytest
import torch
import torch.multiprocessing as mp

import loop
import train
from config import Config
from conftest import tiny_config
from test_faults import free_port, let_go, watch_collectives

pytestmark = pytest.mark.slow  # real processes: seconds each; `-m "not slow"` skips them


def as_rank(rank: int, port: int, cfg_dict: dict) -> str:
    """train.main as rank `rank` of a torchrun-like group of two: "finished" or what it raised."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        train.main(Config(**cfg_dict))
        return "finished"
    except Exception as e:  # noqa: BLE001 -- the test compares what each rank raised
        return f"{type(e).__name__}: {e}"


def run_two(worker, cfg, out_dir, timeout: float = 120) -> list:
    """worker(rank, port, cfg_dict, out_dir) in two spawned processes; what each wrote to
    out_dir/rankN.json. One still in a collective after timeout seconds fails the test."""
    context = mp.start_processes(worker, args=(free_port(), cfg.to_dict(), str(out_dir)),
                                 nprocs=2, join=False, start_method="spawn")
    deadline = time.time() + timeout
    while not context.join(timeout=1):
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"a rank is still waiting in a collective {timeout} s after the other left")
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in (0, 1)]


def failing_worker(rank: int, port: int, cfg_dict: dict, out_dir: str) -> None:
    """A rank whose rank 0 cannot write its sample grid (a full disk)."""
    ddp_settings, real_ddp = {}, train.DDP

    def ddp(module, **kwargs):
        ddp_settings.update(kwargs)
        return real_ddp(module, **kwargs)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    train.DDP = ddp
    barriers, real_barrier = [], train.dist.barrier

    def barrier(*args, **kwargs):  # counted: ranks leaving together pass one last barrier
        barriers.append(1)
        return real_barrier(*args, **kwargs)

    train.dist.barrier = barrier
    if rank == 0:
        loop.save_grid = disk_full
    given = watch_collectives()
    outcome = as_rank(rank, port, cfg_dict)
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump({"outcome": outcome, "ddp": {k: repr(v) for k, v in ddp_settings.items()},
                   "barriers": len(barriers), "let_go": let_go(given)}, f)


def test_a_write_failing_on_rank_0_stops_every_rank_with_its_error(tmp_path, pairs_dir):
    results = run_two(failing_worker, tiny_config(tmp_path, pairs_dir, batch_size=2), tmp_path)
    for result in results:
        assert result["outcome"] == "OSError: [Errno 28] No space left on device", results
        assert result["barriers"] == 1, results  # the ranks leave together
        # the error's text too went through a tensor kept for the process's life: a gloo thread
        # letting go of a tensor made for the call during exit needs the GIL (SIGABRT)
        assert result["let_go"] == 0, results
        assert result["ddp"] == {"device_ids": "None", "broadcast_buffers": "False",
                                 "gradient_as_bucket_view": "True"}


def held_folder_worker(rank: int, port: int, cfg_dict: dict, out_dir: str) -> None:
    """A rank training a folder that another process holds."""
    outcome = as_rank(rank, port, cfg_dict)
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump({"outcome": outcome, "group_left": not train.dist.is_initialized()}, f)


def test_a_folder_another_training_holds_is_refused_on_every_rank(tmp_path, pairs_dir):
    run_dir = tmp_path / "models/test"
    run_dir.mkdir(parents=True)
    held = loop.lock_run_dir(run_dir)  # this process holds it: the ranks are other processes
    try:
        results = run_two(held_folder_worker, tiny_config(tmp_path, pairs_dir, batch_size=2),
                          tmp_path)
    finally:
        loop.unlock(held)
    for result in results:  # rank 0 found it; rank 1 learnt it from rank 0
        assert result == {"outcome": f"OSError: {run_dir}: in use by another training (pid "
                                     f"{os.getpid()}); wait for it to end, or use another --name",
                          "group_left": True}, results
    assert sorted(p.name for p in run_dir.iterdir()) == [loop.LOCK_NAME]  # nothing written


def test_an_error_before_training_still_leaves_the_process_group(tmp_path, pairs_dir,
                                                                monkeypatch):
    # the data check fails before the loop: the group is left all the same (a second main() in
    # the process, or a test after this one, would find it joined)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    try:
        with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
            train.main(tiny_config(tmp_path, tmp_path / "nowhere"))
        assert not torch.distributed.is_initialized()
    finally:
        if torch.distributed.is_initialized():  # the other tests of this process run without one
            torch.distributed.destroy_process_group()
