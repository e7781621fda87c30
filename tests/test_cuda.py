"""The GPU path, for real: skipped where torch sees no CUDA GPU. Run on a GPU machine with

    python -m pytest -q tests/test_cuda.py     # or: bash tools/gpu_check.sh tests

The full UNet-256 at 256×256 trained a few steps with dropout off, in bf16 (contiguous and
channels_last) and fp16 with the GradScaler, against fp32: how G's output moves must agree, which
the first step's losses (about 0.69 and 0.5 from any weights) never showed. Then train.main on CUDA:
a CPU checkpoint resumed there (channels_last, fused Adam) with loader workers and pinned batches;
a GPU checkpoint resumed there and loaded on the CPU; the decode-once cache's batches exact, pinned
and without a host sync; infer.py against the CPU; a one-process torchrun on NCCL. Last, compiled
with CUDA graphs (reduce-overhead) at 64×64: train.main resumes and saves plain modules, the steps
follow eager, and bench's reduce-overhead row sees the graphs replay.
Cheap tests first: a run cut short by its time limit (tools/gpu_check.sh) loses the compiled ones
first.
"""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import save
import train
from config import Config
from conftest import ROOT, make_pairs, tiny_config
from dataset import CachedLoader, EpochSampler, PairCache, PairDataset
from discriminator import build_discriminator
from generator import build_generator, translate
from tools import bench

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")
# ‖change − change_fp32‖ / ‖change_fp32‖ of G's output after 8 steps. Measured on a CPU at 64² and
# 128² (ngf 8 to 32): bf16 0.03-0.06 (0.06 between two bf16 kernel layouts), fp16 (its first G step
# skipped by the scaler) 0.13, fp32 channels_last 0; one step skipped by mistake gives 0.13-0.24,
# no L1 term 0.96-1.06. Compiled against eager in fp32: only the fusion's and TF32's rounding.
# fp16's bound leaves room for a few more of its own skips (each about 0.13).
BF16_CHANGE, FP16_CHANGE, COMPILED_CHANGE, STEPS = 0.1, 0.5, 0.03, 8


def relative(change, reference) -> float:
    return ((change - reference).norm() / reference.norm()).item()


def output_change(cfg: Config, precision: str, channels_last: bool, compile_mode: str = "off",
                  steps: int = STEPS, batch: int = 4) -> tuple:
    """(how G's eval-mode output on fixed sketches moved in `steps` train.gan_step calls on a fixed
    batch, from the same start and with dropout off; the scaler; the optimizers)."""
    cfg = Config(**{**cfg.to_dict(), "dropout": 0.0, "device": "cuda"})
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    G = build_generator(cfg).to(CUDA, memory_format=memory_format)
    D = build_discriminator(cfg).to(CUDA, memory_format=memory_format)
    opt_g, opt_d = train.make_optimizers(G, D, cfg, CUDA)
    _, autocast, scaler = train.mixed_precision(precision, CUDA)
    data = torch.Generator().manual_seed(1)
    size = cfg.image_size
    sketch, photo, probe = ((torch.rand(n, 3, size, size, generator=data) * 2 - 1)
                            .to(CUDA, memory_format=memory_format) for n in (batch, batch, 2))

    def output():
        G.eval()
        with torch.no_grad():
            out = G(probe).float()
        G.train()
        return out

    before = output()
    G_step, D_step = G, D
    if compile_mode != "off":
        G_step, D_step = (torch.compile(net, dynamic=False, mode=compile_mode) for net in (G, D))
    for _ in range(steps):
        if compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        losses = train.gan_step(G_step, D_step, opt_g, opt_d, scaler, sketch=sketch, photo=photo,
                                lambda_l1=cfg.lambda_l1, autocast=autocast)
        assert torch.isfinite(losses).all() or scaler.is_enabled()
    return (output() - before).cpu(), scaler, (opt_g, opt_d)


@pytest.fixture(scope="module")
def fp32_change():
    return output_change(Config(), "fp32", channels_last=False)[0]


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_training_follows_fp32(fp32_change, channels_last):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    change, _, _ = output_change(Config(), "bf16", channels_last)
    assert relative(change, fp32_change) < BF16_CHANGE


def test_fp16_training_uses_the_grad_scaler_and_follows_fp32(fp32_change):
    change, scaler, (opt_g, opt_d) = output_change(Config(), "fp16", channels_last=True)
    assert scaler.is_enabled() and 0 < scaler.get_scale() <= 2.0**16
    # every overflow halves the scale once and skips the step of the optimizer it hit
    halvings = round(np.log2(2.0**16 / scaler.get_scale()))
    taken = [int(opt.state[opt.param_groups[0]["params"][0]]["step"].item())
             for opt in (opt_g, opt_d)]
    skipped = [STEPS - n for n in taken]
    assert max(skipped) <= halvings <= sum(skipped)
    assert relative(change, fp32_change) < FP16_CHANGE


def test_the_training_step_does_not_sync_with_the_host():
    # a host sync inside the step would stall the launch queue: with sync debug mode set to error,
    # any implicit synchronization (a .item(), a bool of a tensor) in gan_step raises
    cfg = Config(device="cuda")
    G = build_generator(cfg).to(CUDA, memory_format=torch.channels_last)
    D = build_discriminator(cfg).to(CUDA, memory_format=torch.channels_last)
    opt_g, opt_d = train.make_optimizers(G, D, cfg, CUDA)
    _, autocast, scaler = train.mixed_precision("bf16", CUDA)
    sketch, photo = (torch.rand(1, 3, 256, 256, device=CUDA).contiguous(
        memory_format=torch.channels_last) for _ in range(2))

    def step():
        train.gan_step(G, D, opt_g, opt_d, scaler, sketch=sketch, photo=photo,
                       lambda_l1=cfg.lambda_l1, autocast=autocast)

    step()  # warm up: cuDNN autotuning may sync legitimately on first use
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def run(args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env, **kwargs)


def training_records(tmp_path) -> list:
    return [r for r in map(json.loads, (tmp_path / "models/test/log.jsonl").read_text()
                           .splitlines()) if "loss_d" in r]


def test_a_cpu_checkpoint_resumes_on_the_gpu_with_workers_and_pinned_batches(tmp_path, pairs_dir):
    # on the GPU the nets are channels_last and Adam is fused: the CPU run's contiguous moments
    # must take the parameters' layout (fused Adam refuses mismatched strides)
    train.main(tiny_config(tmp_path, pairs_dir, device="cpu", precision="fp32", epochs=1))
    cfg = tiny_config(tmp_path, pairs_dir, device="cuda", precision="fp32", epochs=2,
                      resume=True, num_workers=2)
    loader = train.load_data(cfg, 0, 1, CUDA)[0]
    sketch, photo = next(iter(loader))
    assert sketch.is_pinned() and photo.is_pinned()  # pin_memory with workers: async copies
    assert train.main(cfg)["step"] == 8
    # log_every 2: every interval holds a timed step, the CPU run's and the GPU run's
    assert all(r.get("img_per_s", 0) > 0 for r in training_records(tmp_path))


def test_gpu_checkpoint_resumes_on_the_gpu_and_loads_on_the_cpu(tmp_path, pairs_dir):
    cfg = tiny_config(tmp_path, pairs_dir, device="cuda", precision="bf16", epochs=1)
    assert train.main(cfg)["step"] == 4
    resumed = train.main(tiny_config(tmp_path, pairs_dir, device="cuda", precision="bf16",
                                     epochs=2, resume=True))
    assert resumed["step"] == 8
    G_cpu, cfg_saved = save.load_generator(tmp_path / "models/test/generator.pt")  # on the CPU
    assert cfg_saved.device == "cuda"
    G_gpu = copy.deepcopy(G_cpu).to(CUDA)
    sketch = torch.rand(2, 3, 64, 64) * 2 - 1
    on_cpu = translate(G_cpu, sketch, paper=False)
    on_gpu = translate(G_gpu, sketch.to(CUDA), paper=False).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-3, atol=1e-3)


def test_the_cached_loader_on_the_gpu_is_exact_pinned_and_never_syncs(tmp_path, pairs_dir,
                                                                      monkeypatch):
    data = PairDataset(pairs_dir / "train", image_size=64, load_size=72, jitter=True, uint8=True)
    cache = PairCache(data, tmp_path / "cache")
    sampler = EpochSampler(len(data), seed=0, crop_room=8)
    on_cpu = [pixels for batch in CachedLoader(cache, sampler, 4, torch.device("cpu"))
              for pixels in batch]  # sketch, photo, sketch, ...
    gathered, gather = [], cache.gather

    def noted(keys, pin=False):  # the host batches that the GPU loader copies from
        gathered.append(gather(keys, pin))
        return gathered[-1]

    monkeypatch.setattr(cache, "gather", noted)
    batches = iter(CachedLoader(cache, sampler, 4, CUDA))
    on_gpu = list(next(batches))  # the first: the reader thread starts
    # no host sync in the loop (an .item(), a nonzero); this mode does not see a non_blocking
    # copy from pageable memory, which waits for the GPU: pinning is asserted on the batches below
    torch.cuda.set_sync_debug_mode("error")
    try:
        on_gpu += [pixels for batch in batches for pixels in batch]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(gathered) == 4 and all(pixels.is_pinned() for pixels, _ in gathered)
    mirrored = [rows for _, rows in gathered if len(rows)]
    assert mirrored and all(rows.is_pinned() for rows in mirrored)  # the rows to flip: pinned too
    assert any(key[3] for key in sampler)  # some pairs are mirrored
    assert len(on_gpu) == len(on_cpu) == 8  # 4 batches
    for gpu, cpu in zip(on_gpu, on_cpu):
        assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)


def test_infer_on_cuda_matches_the_cpu(tmp_path, pairs_dir):
    train.main(tiny_config(tmp_path, pairs_dir, device="cpu", precision="fp32", epochs=1,
                           batch_size=4))
    checkpoint = tmp_path / "models/test/generator.pt"
    sketches = make_pairs(tmp_path / "sketches", 3, size=64)
    outputs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"out_{device}"
        result = run(["infer.py", sketches, "-o", out, "--checkpoint", checkpoint, "--eval",
                      "--device", device])
        assert result.returncode == 0, result.stderr
        outputs[device] = [np.asarray(Image.open(p), dtype=int) for p in sorted(out.glob("*.png"))]
    assert len(outputs["cuda"]) == 3
    for gpu, cpu in zip(outputs["cuda"], outputs["cpu"]):
        assert np.abs(gpu - cpu).max() <= 2  # TF32/cuDNN rounding against the CPU, in grey levels


def test_one_process_torchrun_on_nccl(tmp_path, pairs_dir):
    args = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "train.py",
            f"--data_dir={pairs_dir}", f"--models_dir={tmp_path / 'models'}",
            f"--samples_dir={tmp_path / 'samples'}", "--name=test", "--device=cuda",
            "--image_size=64", "--num_downs=6", "--ngf=8", "--ndf=8", "--batch_size=4",
            "--epochs=1", "--num_workers=0", "--log_every=2", "--n_samples=2", "--val_images=4"]
    result = run(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "× 1 process" in result.stdout
    # the group of one is left cleanly: NCCL's warnings at exit name destroy_process_group
    assert "destroy_process_group" not in result.stderr and "NOT been" not in result.stderr
    ckpt = save.load_checkpoint(tmp_path / "models/test/last.pt", keys=save.CHECKPOINT_KEYS)
    assert ckpt["step"] == 4


# ---------------------------------------------------------------- compiled: slowest, so last

@pytest.fixture
def dynamo_counters():
    """A fresh dynamo that fails instead of falling back to eager at its recompile limit (the same
    forward compiled for many configurations in one process would reach it); its counters."""
    from torch._dynamo.utils import counters  # loaded here: dynamo takes seconds to import
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):  # restores what it set
        yield counters
    torch._dynamo.reset()


def test_training_with_cuda_graphs_resumes_and_saves_plain_modules(tmp_path, pairs_dir,
                                                                   monkeypatch, dynamo_counters):
    # reduce-overhead: inductor's kernels replayed as CUDA graphs, each step announced; from the
    # cache with jitter (flips on the device). The default mode is timed at full size by
    # gpu_check.sh's bench stage (each compile there costs a minute or more)
    marks, mark = [], torch.compiler.cudagraph_mark_step_begin
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin",
                        lambda: marks.append(1) or mark())
    skips = dynamo_counters["inductor"]["cudagraph_skips"]
    options = dict(device="cuda", precision="bf16", compile=True, compile_mode="reduce-overhead",
                   cache=True, cache_dir=str(tmp_path / "cache"), jitter=True, load_size=72)
    first = train.main(tiny_config(tmp_path, pairs_dir, epochs=1, **options))
    resumed = train.main(tiny_config(tmp_path, pairs_dir, epochs=2, resume=True, **options))
    assert (first["step"], resumed["step"]) == (4, 8)
    assert len(marks) == 8  # one per step
    assert dynamo_counters["inductor"]["cudagraph_skips"] == skips  # no graph fell back to eager
    records = training_records(tmp_path)
    assert all(np.isfinite([r[k] for k in save.LOSS_KEYS]).all() for r in records)
    ckpt = save.load_checkpoint(tmp_path / "models/test/last.pt", keys=save.CHECKPOINT_KEYS)
    assert not [k for net in ("generator", "discriminator") for k in ckpt[net]
                if "_orig_mod" in k or k.startswith("module.")]


def test_cuda_graph_steps_follow_eager(tmp_path, pairs_dir, dynamo_counters):
    # in fp32, where only fusion and TF32 round differently; the graphs replay inductor's kernels,
    # so this checks the compiled step too
    cfg = tiny_config(tmp_path, pairs_dir)
    eager, _, _ = output_change(cfg, "fp32", True)
    skips = dynamo_counters["inductor"]["cudagraph_skips"]
    compiled, _, _ = output_change(cfg, "fp32", True, "reduce-overhead")
    assert dynamo_counters["inductor"]["cudagraph_skips"] == skips
    assert relative(compiled, eager) < COMPILED_CHANGE


def test_bench_reduce_overhead_row_sees_cuda_graphs_replay(tmp_path, dynamo_counters):
    # the sizes of train.main's reduce-overhead run above: inductor's cache has its kernels
    args = bench.parse_args(["train", "--size", "64", "--ngf", "8", "--num_downs", "6",
                             "--config", "4:bf16:1:reduce-overhead", "--repeats", "2",
                             "--warmup", "3", "--device", "cuda", "--out",
                             str(tmp_path / "bench.jsonl")])
    limits = torch._dynamo.config
    with limits.patch(recompile_limit=limits.recompile_limit,  # bench raises them: put back
                      accumulated_recompile_limit=limits.accumulated_recompile_limit):
        record, = bench.main(args)
    graphs = record["cuda_graphs"]
    assert graphs["ran"] is True and graphs["skipped"] == 0 and graphs["graph_launches"] > 0
    assert json.loads((tmp_path / "bench.jsonl").read_text())["cuda_graphs"] == graphs
