"""The GPU path, for real: skipped where torch sees no CUDA GPU. Run on a GPU machine with

    python -m pytest -q tests/test_cuda.py

A few steps of the full UNet-256 at 256×256 in bf16 and channels_last, eager, compiled and with CUDA
graphs; fp16 with the GradScaler; losses against fp32; a checkpoint written on the GPU resumed there
and loaded on the CPU; infer.py on CUDA against the CPU; a one-process torchrun on NCCL.
"""

import copy
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
from discriminator import build_discriminator
from generator import build_generator, translate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def full_size_step_setup(precision: str, channels_last: bool, compile_mode: str = "off",
                         batch: int = 4):
    """The paper's G and D at 256×256 on the GPU, with a fixed random batch; same init for every
    call."""
    cfg = Config(device="cuda")
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    G = build_generator(cfg).to(CUDA, memory_format=memory_format)
    D = build_discriminator(cfg).to(CUDA, memory_format=memory_format)
    opt_g, opt_d = train.make_optimizers(G, D, cfg, CUDA)
    _, autocast, scaler = train.mixed_precision(precision, CUDA)
    generator = torch.Generator().manual_seed(1)
    sketch = (torch.rand(batch, 3, 256, 256, generator=generator) * 2 - 1).to(
        CUDA, memory_format=memory_format)
    photo = (torch.rand(batch, 3, 256, 256, generator=generator) * 2 - 1).to(
        CUDA, memory_format=memory_format)
    G_train, D_train = G, D
    if compile_mode != "off":
        G_train = torch.compile(G, dynamic=False, mode=compile_mode)
        D_train = torch.compile(D, dynamic=False, mode=compile_mode)

    def step():
        return train.gan_step(G_train, D_train, opt_g, opt_d, scaler, sketch=sketch, photo=photo,
                              lambda_l1=cfg.lambda_l1, autocast=autocast)
    return step, scaler


def first_losses(precision, channels_last, compile_mode="off", steps=3):
    """Losses of `steps` steps from the same start (no dropout noise shared: seeded the same)."""
    step, scaler = full_size_step_setup(precision, channels_last, compile_mode)
    torch.manual_seed(2)
    torch.cuda.manual_seed(2)
    losses = torch.stack([step() for _ in range(steps)]).cpu()
    return losses, scaler


@pytest.fixture(scope="module")
def fp32_losses():
    return first_losses("fp32", channels_last=False)[0]


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_steps_are_finite_and_match_fp32(fp32_losses, channels_last):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    losses, _ = first_losses("bf16", channels_last)
    assert torch.isfinite(losses).all()
    # the first step starts from identical weights: D's and G's losses agree to bf16's precision
    torch.testing.assert_close(losses[0], fp32_losses[0], rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("compile_mode", ["default", "reduce-overhead"])
def test_compiled_and_cuda_graph_steps_match_eager(compile_mode):
    eager, _ = first_losses("bf16", True)
    compiled, _ = first_losses("bf16", True, compile_mode)
    assert torch.isfinite(compiled).all()
    torch.testing.assert_close(compiled[0], eager[0], rtol=3e-2, atol=3e-2)


def test_fp16_uses_the_grad_scaler(fp32_losses):
    losses, scaler = first_losses("fp16", channels_last=True)
    assert scaler.is_enabled() and scaler.get_scale() > 0
    assert torch.isfinite(losses).all()
    torch.testing.assert_close(losses[0], fp32_losses[0], rtol=3e-2, atol=3e-2)


def run(args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env, **kwargs)


def test_gpu_checkpoint_resumes_on_the_gpu_and_loads_on_the_cpu(tmp_path, pairs_dir):
    # precision auto: the GPU's own (bf16 from compute capability 8, else fp16 with the scaler)
    cfg = tiny_config(tmp_path, pairs_dir, device="cuda", epochs=1, batch_size=4, precision="auto")
    assert train.main(cfg)["step"] == 4
    resumed = train.main(tiny_config(tmp_path, pairs_dir, device="cuda", epochs=2, batch_size=4,
                                     resume=True, precision="auto"))
    assert resumed["step"] == 8
    G_cpu, cfg_saved = save.load_generator(tmp_path / "models/test/generator.pt")  # on the CPU
    assert cfg_saved.device == "cuda"
    G_gpu = copy.deepcopy(G_cpu).to(CUDA)
    sketch = torch.rand(2, 3, 64, 64) * 2 - 1
    on_cpu = translate(G_cpu, sketch, paper=False)
    on_gpu = translate(G_gpu, sketch.to(CUDA), paper=False).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-3, atol=1e-3)


def test_infer_on_cuda_matches_the_cpu(tmp_path, pairs_dir):
    train.main(tiny_config(tmp_path, pairs_dir, device="cpu", epochs=1, batch_size=4))
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
    ckpt = save.load_checkpoint(tmp_path / "models/test/last.pt", keys=save.CHECKPOINT_KEYS)
    assert ckpt["step"] == 4


def test_the_training_step_does_not_sync_with_the_host():
    # a host sync inside the step would stall the launch queue: with sync debug mode set to error,
    # any implicit synchronization (a .item(), a bool of a tensor) in gan_step raises
    step, _ = full_size_step_setup("bf16", True, batch=1)
    step()  # warm up: cuDNN autotuning may sync legitimately on first use
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")

