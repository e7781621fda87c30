"""Train pix2pix: UNet generator + PatchGAN discriminator, GAN loss + λ·L1 (Isola et al. 2017).

    python -m tools.demo && python train.py --demo        # synthetic shoes, a few minutes on a CPU
    python train.py --data_dir data/edges2shoes              # the paper's edges2shoes schedule
    python train.py --data_dir data/edges2shoes --resume   # continue after a crash or Ctrl-C
    # another system: config.SYSTEMS, flags still win
    python train.py --system wgan-gp --spectral_norm

Every field of config.py is a flag. The run writes models/<name>/{config.json, log.jsonl,
curves.png, last.pt, generator.pt} and samples/<name>/epoch_NNN.png (sketch | generated | real),
holding models/<name>/.lock and samples/<name>/.lock meanwhile; a name with a saved run needs
--resume or --overwrite.

main() reads top to bottom: setup, data, networks and optimizers, resume, the loop, the epoch's end.
"""

import glob
import json
import math
import os
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from PIL import Image
from tqdm import tqdm

from config import DEMO, Config, parse_args, pick_device
from dataset import (CachedLoader, EpochSampler, PairCache, PairDataset, ignore_signals,
                     sketch_augment, to_float, train_val_folders)
from discriminator import build_discriminator
from generator import build_generator, seeded, translate
from hints import patch_side, training_hints, with_hints
from losses import VGGFeatures, gradient_penalty, loss_d_of, loss_g_gan_of
from save import (CHECKPOINT_KEYS, LOSS_KEYS, PIX2PIX_RESUME, check_fits, check_not_held,
                  check_resume, check_writable, generator_fields, load_checkpoint, lock_run_dir,
                  plot_curves, psnr, restore, save_checkpoint, save_grid, saved_config,
                  start_over, unlock)
from tune import training_precision

RANK_SEED_STRIDE = 1_000_003  # dropout seed = seed + this × rank + step: a prime above any step
# count, so that no two (rank, step) pairs share a dropout stream
ERRORS = {e.__name__: e for e in (OSError, ValueError, FloatingPointError)}  # reported in one line


def step_seed(seed: int, rank: int, step: int) -> int:
    """One seed per (run seed, rank, step) for sketch_aug's drawings and the colour hints, so a
    resumed run redraws the same ones without saving the generator's state."""
    return (seed * 2**40 + rank * 2**32 + step) % 2**63


PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def pick_precision(name: str, device: torch.device) -> torch.dtype:
    """Autocast dtype: bf16 where the GPU has it (no loss scaling needed), fp16 on older GPUs,
    fp32 on CPU (where run_precision first asks tune.training_precision whether bf16 is faster)."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        # bf16 needs Ampere (compute capability 8) or newer; is_bf16_supported() admits emulation.
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def run_precision(cfg: Config, device: torch.device, world_size: int, last_path: Path) -> Config:
    """cfg with --precision auto decided once for the run: the checkpoint's choice when resuming
    (not timed again: the run stays exact), else timed on a CPU (tune.training_precision) or by
    the GPU's capability. The config saved in checkpoints and config.json names the choice."""
    if cfg.precision != "auto":
        return cfg
    saved = saved_config(last_path).precision if cfg.resume and last_path.exists() else None
    if saved not in (None, "auto"):
        log0(f"precision {saved}: what --precision auto chose when the run began")
        return replace(cfg, precision=saved)
    if saved == "auto":
        log0(f"warning: {last_path} does not say what --precision auto chose (an older "
             f"checkpoint); deciding again, give --precision to be sure it is the same")
    if device.type == "cpu" and world_size == 1:
        # bf16 where this CPU has it natively and it measures faster for this step (tune.py)
        return replace(cfg, precision=training_precision(lambda name: one_step(cfg, device, name)))
    return replace(cfg, precision=PRECISION_NAMES[pick_precision("auto", device)])


def mixed_precision(precision: str, device: torch.device) -> tuple:
    """(dtype, autocast context, GradScaler) for a precision name. fp16 needs loss scaling to keep
    small gradients from flushing to zero; bf16 and fp32 do not, so their scaler is a no-op."""
    amp_dtype = pick_precision(precision, device)
    autocast = nullcontext() if amp_dtype == torch.float32 \
        else torch.autocast(device.type, dtype=amp_dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return amp_dtype, autocast, scaler


def one_step(cfg: Config, device: torch.device, precision: str):
    """A function doing one training step of fresh nets on a random batch under precision: what
    --precision auto times on a CPU."""
    G, D = build_generator(cfg).to(device), build_discriminator(cfg).to(device)
    opt_g, opt_d = make_optimizers(G, D, cfg, device)
    _, autocast, scaler = mixed_precision(precision, device)
    sketch, photo = (torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size,
                                device=device) * 2 - 1 for _ in range(2))
    hints = with_hints(sketch)[:, 3:] if cfg.hints else None  # none given
    return lambda: gan_step(G, D, opt_g, opt_d, scaler, sketch=sketch, photo=photo, hints=hints,
                            lambda_l1=cfg.lambda_l1, autocast=autocast, gan_loss=cfg.gan_loss,
                            lambda_gp=cfg.lambda_gp, n_critic=cfg.n_critic)


def make_optimizers(G: nn.Module, D: nn.Module, cfg: Config, device: torch.device) -> tuple:
    """The paper's Adam for each network; on CUDA one fused kernel updates all of a network's
    parameters."""
    fused = device.type == "cuda"
    return (torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused),
            torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused))


def lr_factor(epoch: int, cfg: Config) -> float:
    """Constant, then linear decay over the last epochs_decay epochs, as in the reference code."""
    return 1.0 - max(0, epoch + 1 - (cfg.epochs - cfg.epochs_decay)) / (cfg.epochs_decay + 1)


def gan_step(G, D, opt_g, opt_d, scaler, *, sketch, photo, lambda_l1: float, autocast,
             gan_loss: str = "bce", lambda_gp: float = 10.0, n_critic: int = 1, perceptual=None,
             lambda_perceptual: float = 0.0, hints=None) -> torch.Tensor:
    """One iteration: n_critic D steps on the real and the detached fake pair, then G on GAN + λ·L1
    (+ λ_perceptual · VGG distance when perceptual is given). The critic steps reuse this batch and
    this fake: G does not change between them, so a new fake would differ only by its dropout masks.
    Returns the losses (D, G_gan, G_l1) detached and still on the device: reading them would sync.
    With n_critic > 1, D is the mean over the critic steps; for wgan-gp it includes λ_gp·penalty.
    hints (B, 4, H, W), for a G trained with colour hints, go to G only: D judges the photo for the
    sketch, as in the paper and with its shape (the hints are the real photo's own colours, so the
    L1 term already pulls G to them; D's task, realism, does not depend on them)."""
    # --- D steps. The fake is detached: these steps train D only.
    with autocast:
        fake_photo = G(sketch if hints is None else with_hints(sketch, hints))
    real_pair = torch.cat([sketch, photo], dim=1)  # (B, 6, H, W)
    fake_pair = torch.cat([sketch, fake_photo.detach()], dim=1)
    loss_d_sum = 0.0
    for k in range(n_critic):
        with autocast:
            logits_real = D(real_pair)  # (B, 1, h, w), one logit per patch
            logits_fake = D(fake_pair)
            loss_d = loss_d_of(gan_loss, logits_real, logits_fake)
        if gan_loss == "wgan-gp":
            loss_d = loss_d + lambda_gp * gradient_penalty(D, real_pair, fake_pair, scaler,
                                                           autocast)
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)
        if k < n_critic - 1:
            scaler.update()  # a GradScaler allows one step per optimizer between updates
        loss_d_sum = loss_d_sum + loss_d.detach()
    loss_d = loss_d_sum / n_critic

    # --- G step: fool D, and stay close to the target in L1 (and in VGG features).
    D.requires_grad_(False)  # gradients flow through D to G, but D's own are not needed...
    # ...nor averaged across processes under DDP
    with autocast, getattr(D, "no_sync", nullcontext)():
        logits_fake = D(torch.cat([sketch, fake_photo], dim=1))
        loss_g_gan = loss_g_gan_of(gan_loss, logits_fake)
        loss_g_l1 = F.l1_loss(fake_photo.float(), photo)
        loss_g = loss_g_gan + lambda_l1 * loss_g_l1
        if perceptual is not None and lambda_perceptual > 0:
            loss_g = loss_g + lambda_perceptual * perceptual.distance(fake_photo, photo)
    opt_g.zero_grad(set_to_none=True)
    scaler.scale(loss_g).backward()
    scaler.step(opt_g)
    scaler.update()
    D.requires_grad_(True)
    return torch.stack([loss_d.detach(), loss_g_gan.detach(), loss_g_l1.detach()]).float()


def setup_distributed(cfg: Config) -> tuple:
    """(rank, world_size, device). Under torchrun (which sets RANK) join the process group, one GPU
    per process; otherwise this is the world-size-1 case and nothing is initialized."""
    device = pick_device(cfg.device)
    if "RANK" not in os.environ:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)  # NCCL binds its communicator at once
    else:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), device


def log0(*args, **kwargs) -> None:
    """print on rank 0 only: every process runs the same code, one of them speaks."""
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(*args, **kwargs)


def on_rank0(work, device: torch.device) -> None:
    """work() on rank 0 alone (the writing of logs, grids, checkpoints). Every rank learns whether
    it failed and raises the same error, instead of waiting forever in the next collective."""
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    error = None
    if rank == 0:
        try:
            work()
        except Exception as e:  # noqa: BLE001 -- re-raised below, on every rank
            error = e
    if world_size > 1:
        failed = torch.tensor([float(error is not None)], device=device)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)
        if failed.item():
            message = [f"{type(error).__name__}:{error}" if rank == 0 else None]
            dist.broadcast_object_list(message, src=0)
            if rank != 0:
                name, text = message[0].split(":", 1)
                error = ERRORS.get(name, RuntimeError)(text)
            leave_together()
    if error is not None:
        raise error


def leave_together() -> None:
    """Every rank is at the same point and about to leave: a last barrier, whose wait lets gloo's
    worker threads let go of the tensors of the collectives before it while Python still runs
    (letting go during interpreter exit needs the GIL that exit has taken: the process aborts)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


class StopFlag:
    """Ctrl-C or SIGTERM (a cluster's preemption) asks the run to stop: it finishes the step in
    flight, saves and leaves, so that a resumed run continues exactly there. A second Ctrl-C leaves
    at once."""

    def __init__(self, device: torch.device):
        self.device, self.signal_name, self.previous = device, None, {}
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1

    def install(self) -> "StopFlag":
        self.previous = {sig: signal.signal(sig, self.request)
                         for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def request(self, signum, frame) -> None:
        if self.signal_name:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        if not dist.is_initialized() or dist.get_rank() == 0:
            tqdm.write(f"{self.signal_name}: finishing this step, then saving "
                       f"(press Ctrl-C again to abort without saving)")

    def agreed(self, check_now: bool) -> bool:
        """Whether to stop now. One process stops at once; several stop together, agreeing only
        where all of them are at the same step (check_now: at log steps and epoch ends)."""
        if self.world_size == 1:
            return self.signal_name is not None
        if not check_now:
            return False
        flag = torch.tensor([float(self.signal_name is not None)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag.item() > 0


class LossMeter:
    """The losses of a log interval, summed on the device: reading them every step would sync.
    Its img/s times training steps alone: the clock starts after the run's first step (compile,
    cuDNN's autotuning) and again at restart() (after validation and checkpoints)."""

    def __init__(self, device: torch.device, images_per_step: int):
        self.sums, self.images_per_step = torch.zeros(3, device=device), images_per_step
        self.device, self.steps, self.warm = device, 0, False
        self.restart()

    def restart(self) -> None:
        """Time from now on; the GPU's queued work belongs to the time before."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timed_steps, self.start = 0, time.perf_counter()

    def add(self, losses: torch.Tensor) -> None:
        self.sums += losses
        self.steps += 1
        self.timed_steps += 1
        if not self.warm:  # the first step compiles and autotunes: no measure of training speed
            self.warm = True
            self.restart()

    def record(self, epoch: int, step: int, lr: float) -> dict:
        """The interval's mean losses over all processes and its speed as one record; then reset."""
        if dist.is_initialized():
            dist.all_reduce(self.sums)
            self.sums /= dist.get_world_size()
        means = (self.sums / self.steps).tolist()  # the one host-device sync
        seconds = time.perf_counter() - self.start
        speed = {"img_per_s": self.timed_steps * self.images_per_step / seconds} \
            if self.timed_steps else {}  # an interval of the first step alone has no speed
        self.sums.zero_()
        self.steps, self.timed_steps, self.start = 0, 0, time.perf_counter()
        return {"epoch": epoch, "step": step, **dict(zip(LOSS_KEYS, means)), "lr": lr, **speed}


def tensorboard_writer(log_dir: Path):
    """TensorBoard's SummaryWriter on log_dir, or None where the optional package is missing (said
    in one line)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log0("tensorboard: not installed, so the run logs to log.jsonl and curves.png only "
             "(pip install -r requirements-optional.txt)")
        return None
    return SummaryWriter(str(log_dir))


class RunLog:
    """Each record (a dict with epoch and step) written once: a line on stdout, a line of log.jsonl
    and, when the package is installed, TensorBoard scalars. Only rank 0 writes."""
    LABELS = {"loss_d": ("D", ".3f"), "loss_g_gan": ("G_gan", ".3f"), "loss_g_l1": ("G_l1", ".4f"),
              "lr": ("lr", ".2e"), "img_per_s": ("img/s", ".1f"), "val_l1": ("val L1", ".4f"),
              "val_psnr": ("val PSNR dB", ".2f")}

    def __init__(self, run_dir: Path, main_process: bool):
        self.file = open(run_dir / "log.jsonl", "a") if main_process else None
        self.tensorboard = tensorboard_writer(run_dir / "tensorboard") if main_process else None

    def write(self, record: dict) -> None:
        if not self.file:
            return
        fields = [f"{label} {record[key]:{fmt}}" for key, (label, fmt) in self.LABELS.items()
                  if key in record]
        tqdm.write(" | ".join([f"epoch {record['epoch']} step {record['step']}", *fields]))
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for key, value in record.items() if self.tensorboard else ():
            if key not in ("epoch", "step"):  # val_l1 -> val/l1, loss_d -> train/loss_d
                tag = key.replace("_", "/", 1) if key.startswith("val_") else f"train/{key}"
                self.tensorboard.add_scalar(tag, value, record["step"])

    def image(self, tag: str, png_path: Path, step: int) -> None:
        if self.tensorboard:
            image = np.asarray(Image.open(png_path))
            self.tensorboard.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tensorboard:
            self.tensorboard.close()


def prepare_run_dir(run_dir: Path, cfg: Config, outputs: tuple) -> None:
    """models/<name> with config.json, cleared of killed runs' half-written outputs (called under
    the folder's lock: no live run owns one; the temporary files of a tool writing beside the
    checkpoint, tools.export's, are not a run's and stay)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(str(cfg) + "\n")
    for name in outputs:
        for stale in run_dir.glob(f".{glob.escape(name)}.*.tmp"):  # atomic_write's names
            stale.unlink()


def check_same_start(step: int, last_path: Path, device: torch.device) -> None:
    """Every process must resume from the same step (models/ on a filesystem all of them see)."""
    start = torch.tensor([step, -step], device=device)
    dist.all_reduce(start, op=dist.ReduceOp.MAX)
    if start[0] != -start[1]:
        leave_together()
        raise ValueError(f"{last_path}: processes would resume at different steps "
                         f"({-start[1]}..{start[0]}); put models/ on a filesystem that every "
                         f"machine sees")


def load_data(cfg: Config, rank: int, world_size: int, device: torch.device) -> tuple:
    """(training loader, its sampler, steps per epoch, fixed validation sketches, their photos)."""
    if not Path(cfg.data_dir).is_dir():
        make = "python -m tools.demo" if cfg.data_dir == DEMO["data_dir"] \
            else "python -m tools.data download edges2shoes"
        raise FileNotFoundError(f"{cfg.data_dir}: no such folder; make or fetch the data first "
                                f"({make})")
    train_dir, val_dir = train_val_folders(cfg.data_dir)  # train/ and val/ (or test/), else itself
    train_set = PairDataset(train_dir, cfg.image_size, cfg.load_size, cfg.jitter, cfg.direction,
                            skip_bad=cfg.skip_bad, uint8=True)  # to float on the device
    val_set = PairDataset(val_dir, cfg.image_size, direction=cfg.direction, skip_bad=cfg.skip_bad)
    if len(train_set) < cfg.batch_size * world_size:
        raise ValueError(f"{train_dir}: {len(train_set)} training pairs, fewer than one step's "
                         f"{cfg.batch_size} × {world_size} images; lower --batch_size")
    # the jitter's crops and flips come with the epoch's shuffle: a resumed run redraws them
    sampler = EpochSampler(len(train_set), cfg.seed, rank=rank, world_size=world_size,
                           crop_room=cfg.load_size - cfg.image_size if cfg.jitter else None)
    if cfg.cache:
        on_rank0(lambda: PairCache(train_set, cfg.cache_dir), device)  # built once, others wait
        cache = PairCache(train_set, cfg.cache_dir, build=False, verify=False)  # rank 0 checked
        log0(f"data: cache {cache.path} ({cache.nbytes() / 2**20:,.0f} MiB)")
    loader = make_loader(train_set, sampler, cfg.batch_size, cfg.num_workers, device,
                         cache if cfg.cache else None, cfg.seed + rank)
    if device.type == "cuda" and not cfg.cache:
        log0("data: every JPEG is decoded in every epoch; --cache decodes them once (README)")
    batches_per_epoch = len(loader)
    # A fixed set of validation pairs for every epoch's grid and L1: epochs compare like for like.
    n_val = min(len(val_set), max(cfg.n_samples, cfg.val_images))
    val_sketch, val_photo = (torch.stack(t) for t in zip(*(val_set[i] for i in range(n_val))))
    log0(f"data: {len(train_set)} train pairs in {train_dir}, {n_val} val pairs from {val_dir}; "
         f"{cfg.batch_size} × {world_size} images per step, {batches_per_epoch} steps per epoch")
    return loader, sampler, batches_per_epoch, val_sketch, val_photo


def release_workers(loader) -> None:
    """Ends a DataLoader's persistent worker processes now: a run stopped by Ctrl-C or an error
    must not leave them to the garbage collector, which waits seconds for each (a notebook or a
    test that called main() goes on)."""
    iterator = getattr(loader, "_iterator", None)  # DataLoader's own, only with persistent workers
    if iterator is not None:
        iterator._shutdown_workers()
        loader._iterator = None


def make_loader(train_set: PairDataset, sampler: EpochSampler, batch_size: int, num_workers: int,
                device: torch.device, cache: PairCache = None, seed: int = 0):
    """The training batches in the sampler's order, full ones only (one shape for compile and CUDA
    graphs), as uint8: from the cache on the device, or decoded by num_workers processes."""
    if cache is not None:
        return CachedLoader(cache, sampler, batch_size, device)
    return torch.utils.data.DataLoader(
        train_set, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True,
        worker_init_fn=ignore_signals, pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed))  # workers' own seeds: resumable dropout


def check_sync_bn(cfg: Config, world_size: int, device: torch.device) -> bool:
    """Whether to convert batch norm to SyncBatchNorm; refuses what cannot work, with the reason."""
    if world_size == 1 or not cfg.sync_bn:
        return False
    if cfg.compile:
        raise ValueError("config: sync_bn with compile: torch.compile splits its graph at every "
                         "SyncBatchNorm layer (pytorch/pytorch#161302), which undoes what compile "
                         "gains; use one of them")
    if device.type != "cuda":
        raise ValueError("config: sync_bn needs CUDA GPUs "
                         "(PyTorch's SyncBatchNorm does not run on CPU)")
    return True


def wrap_for_training(G: nn.Module, D: nn.Module, cfg: Config, device: torch.device) -> tuple:
    """DDP- and compile-wrapped views of G and D for the training step. Checkpoints hold the plain
    modules, so their keys carry no "module." or "_orig_mod." prefix and load anywhere."""
    G_train, D_train = G, D
    if dist.is_initialized():  # averages gradients across processes during backward
        ddp = dict(device_ids=[device] if device.type == "cuda" else None,
                   broadcast_buffers=False,  # each rank's batch-norm statistics are its own anyway
                   gradient_as_bucket_view=True)  # gradients are the all-reduce buckets: no copy
        G_train, D_train = DDP(G, **ddp), DDP(D, **ddp)
    if cfg.compile:  # reduce-overhead: CUDA graphs replay each step's kernels with one launch
        # static shapes: every step has a full batch (drop_last), so one graph, never a symbolic one
        G_train, D_train = (torch.compile(net, mode=cfg.compile_mode, dynamic=False)
                            for net in (G_train, D_train))
    return G_train, D_train


def set_lr(optimizers, lr: float) -> float:
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr
    return lr


def check_losses(record: dict, scaler, last_path: Path) -> None:
    """A NaN or Inf loss stops the run, except under fp16, where the GradScaler skips such steps."""
    if all(math.isfinite(record[k]) for k in LOSS_KEYS if k in record):
        return
    if not scaler.is_enabled():  # every rank sees the same mean losses: all of them stop here
        leave_together()
        raise FloatingPointError(f"loss is NaN or Inf by step {record['step']} (epoch "
                                 f"{record['epoch']}); the last good checkpoint is {last_path}")
    log0(f"step {record['step']}: non-finite fp16 loss; the GradScaler skipped those updates")


def validate(G: nn.Module, val_sketch, cfg: Config, autocast, device, memory_format):
    """The generated photos of the fixed validation sketches, with the same dropout masks each
    epoch, in paper mode (each image its own statistics: no collective even with sync_bn); a model
    trained with colour hints is given none (comparable with one trained without)."""
    sketch = val_sketch.to(device, memory_format=memory_format)
    with autocast, seeded(cfg.seed, device):
        return translate(G, with_hints(sketch) if cfg.hints else sketch).float().cpu()


NAME_MAX = 255  # bytes in one folder name (ext4, XFS, APFS, NTFS's 255 UTF-16 units and more)


def check_run_name(name: str) -> None:
    """A run's name is one folder name: '' or '.' would make models/ itself the run folder, '..'
    its parent, and an absolute name any folder (samples/NAME then being that folder too)."""
    if name in ("", ".", "..") or any(sep and sep in name for sep in ("/", os.sep, os.altsep)):
        raise ValueError(f"config: name must be one folder name (no '/', not '', '.' or '..'), "
                         f"as in models/NAME; got {name!r}")
    if len(os.fsencode(name)) > NAME_MAX:
        raise ValueError(f"config: name is {len(os.fsencode(name))} bytes long, more than the "
                         f"{NAME_MAX} a folder name may have")


def why(error: Exception, path: Path) -> str:
    """A loader's one line without the file's name and the words that say it does not load."""
    return str(error).removeprefix(f"{path}: ").removeprefix("not a loadable checkpoint: ")


def check_start(cfg, run_dir: Path, outputs: tuple = None, **family) -> None:
    """Refuse, before anything is written, a run that would lose or mix another's work: a name
    that is no folder name, a folder another training holds, an output that is a folder, a saved
    run that neither --resume nor --overwrite names, or an earlier run's weights or grids that a
    run from scratch would write over. outputs: the family's (OUTPUTS, its weights file second);
    family: load_checkpoint's kind and config_class (completion.py's runs)."""
    outputs = outputs or OUTPUTS
    check_run_name(cfg.name)
    if cfg.resume and cfg.overwrite:
        raise ValueError("config: resume and overwrite: --resume continues the saved run, "
                         "--overwrite starts it over; give one of them")
    samples_dir = Path(cfg.samples_dir) / cfg.name
    check_not_held(run_dir)
    check_not_held(samples_dir)
    for path in (run_dir / name for name in (*outputs, "config.json")):  # writes would fail
        if path.is_dir():
            raise OSError(f"{path}: a folder, where the run writes its {path.name}; move it away "
                          f"or use another --name")
    if (run_dir / "tensorboard").exists() and not (run_dir / "tensorboard").is_dir():
        raise OSError(f"{run_dir / 'tensorboard'}: a file, where the run writes its TensorBoard "
                      f"events; move it away or use another --name")
    last_path = run_dir / "last.pt"
    if cfg.overwrite or (cfg.resume and last_path.exists()):
        return
    if last_path.exists():
        try:
            ckpt = load_checkpoint(last_path, keys=CHECKPOINT_KEYS, mmap=True, **family)
        except ValueError as e:  # --resume would fail the same way: not offered
            raise ValueError(f"{run_dir}: holds a last.pt that does not load "
                             f"({why(e, last_path)}); start another with another --name, or "
                             f"start this one over with --overwrite") from None
        raise ValueError(f"{run_dir}: holds a run saved at epoch {ckpt['epoch']} batch "
                         f"{ckpt['batch']} (step {ckpt['step']}); continue it with --resume, start "
                         f"another with another --name, or start this one over with --overwrite")
    # from scratch (--resume too: there is no last.pt): an earlier run's weights and grids would be
    # written over; its log alone is no loss (a run killed before its first checkpoint)
    weights, grids = run_dir / outputs[1], sorted(samples_dir.glob("epoch_*.png"))
    if weights.exists():
        raise ValueError(f"{run_dir}: holds {weights.name} of an earlier run but no last.pt to "
                         f"continue it; start another with another --name, or start this one "
                         f"over with --overwrite")
    if grids:
        raise ValueError(f"{samples_dir}: holds {grids[0].name} of an earlier run but {run_dir} "
                         f"has no last.pt to continue it; start another with another --name, or "
                         f"start this one over with --overwrite")


def resume_position(cfg, last_path: Path, world_size: int, classes=PIX2PIX_RESUME,
                    **family) -> tuple:
    """(epoch, batch, step) the run starts from: its checkpoint's with --resume (a change that does
    not fit refused, one that makes it inexact warned; nothing read but the config), else 0."""
    if cfg.resume and last_path.exists():
        return check_resume(last_path, cfg, world_size, log0, classes, **family)
    if cfg.resume:
        log0(f"no checkpoint at {last_path}: starting from scratch")
    return 0, 0, 0


@dataclass
class Run:
    """What the loop of a run (train.py's, completion.py's) writes and watches; running() makes
    it. save(epoch=, batch=, step=) writes the family's checkpoint; unlogged: losses it lacks."""
    cfg: Any  # Config or completion.py's CompletionConfig
    device: torch.device
    loader: Any
    sampler: EpochSampler
    save: Any
    scaler: torch.amp.GradScaler
    log: RunLog
    stop: StopFlag
    meter: LossMeter
    unlogged: tuple = ()
    last_record: dict = field(default_factory=dict)
    bar: Any = None  # the epoch's progress bar

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.models_dir) / self.cfg.name

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"


@contextmanager
def running(cfg, device, loader, sampler, save, scaler, world_size: int, outputs: tuple,
            log_class=RunLog, unlogged=()):
    """A Run in a claimed run folder: every folder it writes checked writable, the folder and its
    samples folder locked (refused where another training holds one), --overwrite's old outputs
    deleted, config.json written. However the loop ends: the log closed, signals and loader
    workers let go, the locks."""
    run_dir, samples_dir = Path(cfg.models_dir) / cfg.name, Path(cfg.samples_dir) / cfg.name
    lock, log, stop, clean = [], None, None, False

    def claim():
        tensorboard = [run_dir / "tensorboard"] if (run_dir / "tensorboard").is_dir() else []
        check_writable(run_dir, samples_dir, *tensorboard)  # else made in run_dir, checked here
        lock.append(lock_run_dir(run_dir, log0))
        if samples_dir.resolve() != run_dir.resolve():  # two runs of one name, two models folders
            lock.append(lock_run_dir(samples_dir, lambda line: None))  # warned once, above
        if cfg.overwrite:
            start_over(run_dir, samples_dir, outputs)
        prepare_run_dir(run_dir, cfg, outputs)

    try:
        on_rank0(claim, device)
        log = log_class(run_dir, not dist.is_initialized() or dist.get_rank() == 0)
        stop = StopFlag(device).install()
        yield Run(cfg, device, loader, sampler, save, scaler, log, stop,
                  LossMeter(device, cfg.batch_size * world_size), unlogged)
        clean = True
    finally:
        if log:
            log.close()
        if stop:
            stop.restore()
        release_workers(loader)
        if clean:  # a clean end (an agreed stop or an error left together before raising)
            leave_together()
        for file in lock:
            unlock(file)


def epoch_batches(run: Run, epoch: int, first_batch: int, nets) -> enumerate:
    """(batch, (sketch, photo)) of the epoch from first_batch on, under a progress bar; the nets
    in training mode."""
    run.sampler.epoch, run.sampler.start = epoch, first_batch * run.cfg.batch_size
    for net in nets:
        net.train()
    run.bar = tqdm(run.loader, desc=f"epoch {epoch}", total=len(run.loader), initial=first_batch,
                   leave=False, dynamic_ncols=True, file=sys.stderr,
                   disable=dist.is_initialized() and dist.get_rank() != 0)
    run.meter.restart()  # the last epoch's validation and checkpoint are no training steps
    return enumerate(run.bar, start=first_batch)


def after_step(run: Run, epoch: int, batch: int, step: int, lr: float) -> None:
    """A step's end: at log steps and the epoch's last the interval's record, checked (a NaN stops
    the run) and written; a checkpoint every save_every steps, and on Ctrl-C before it stops."""
    last_in_epoch = batch == len(run.loader) - 1
    if step % run.cfg.log_every == 0 or last_in_epoch:
        run.last_record = {k: v for k, v in run.meter.record(epoch, step, lr).items()
                           if k not in run.unlogged}
        check_losses(run.last_record, run.scaler, run.last_path)
        on_rank0(lambda: run.log.write(run.last_record), run.device)
        run.bar.set_postfix({k: f"{run.last_record[k]:.3f}" for k in LOSS_KEYS
                             if k in run.last_record})
    if last_in_epoch:  # the epoch's last step saves in end_epoch, after validation
        return
    stopping = run.stop.agreed(check_now=step % run.cfg.log_every == 0)
    if stopping or (run.cfg.save_every and step % run.cfg.save_every == 0):
        on_rank0(lambda: run.save(epoch=epoch, batch=batch + 1, step=step), run.device)
        run.meter.restart()  # a checkpoint is no training step either
    if stopping:
        leave_together()
        log0(f"\nstopped at epoch {epoch} batch {batch + 1} (step {step}); saved {run.last_path}; "
             f"continue with --resume")
        raise SystemExit(130)


def end_epoch(run: Run, epoch: int, step: int, val_sketch, val_fake, val_photo) -> float:
    """The epoch's checkpoint, then its validation record, grid and curves (a grid that fails
    never costs the checkpoint); Ctrl-C during the epoch's end stops here. Returns the val L1."""
    run.bar.close()
    val_l1 = F.l1_loss(val_fake, val_photo).item()
    record = {"epoch": epoch, "step": step, "val_l1": val_l1,
              "val_psnr": psnr(val_fake, val_photo).mean().item()}
    grid_path, n = Path(run.cfg.samples_dir) / run.cfg.name / f"epoch_{epoch:03d}.png", \
        run.cfg.n_samples

    def write():
        run.save(epoch=epoch + 1, batch=0, step=step)
        run.log.write(record)
        save_grid(grid_path, val_sketch[:n], val_fake[:n], val_photo[:n])
        plot_curves(run.run_dir / "log.jsonl", run.run_dir / "curves.png")
        run.log.image("val/sketch_generated_real", grid_path, step)

    on_rank0(write, run.device)
    log0(f"epoch {epoch} done; saved {run.last_path}, {grid_path} and {run.run_dir / 'curves.png'}")
    if run.stop.agreed(check_now=True):  # Ctrl-C in the last step or validation: saved complete
        leave_together()
        log0(f"stopped after epoch {epoch}; continue with --resume")
        raise SystemExit(130)
    return val_l1


OUTPUTS = ("last.pt", "generator.pt", "log.jsonl", "curves.png")  # what --overwrite deletes


def main(cfg: Config) -> dict:
    """Train with cfg; returns the last logged losses and the per-epoch validation L1."""
    # ---------------------------------------------------------------- setup
    rank, world_size, device = setup_distributed(cfg)
    try:  # the process group is left however main ends, a check failing on one rank included
        run_dir = Path(cfg.models_dir) / cfg.name
        last_path = run_dir / "last.pt"
        # nothing is written until every check has passed: another run's folder, the resume, the
        # model's size, the data; then running() claims the folder
        on_rank0(lambda: check_start(cfg, run_dir), device)
        cfg = run_precision(cfg, device, world_size, last_path)  # auto: decided once, kept
        amp_dtype, autocast, scaler = mixed_precision(cfg.precision, device)
        # NHWC lets cuDNN use tensor-core convolutions without transposes; on CPU it gains nothing.
        memory_format = torch.channels_last if cfg.channels_last and device.type == "cuda" \
            else torch.contiguous_format
        torch.manual_seed(cfg.seed)
        aug_rng = torch.Generator(device)  # sketch_aug: reseeded from (seed, rank, step), exact
        torch.backends.cudnn.benchmark = True  # fixed input size: cuDNN picks its fastest kernels
        # a typo such as --ngf 20000 is refused here, not by the allocator after the data loads
        check_fits(run_dir, lambda: [build_generator(cfg), build_discriminator(cfg)],
                   f"{generator_fields(cfg)}, ndf={cfg.ndf}")
        resuming = cfg.resume and last_path.exists()
        start_epoch, start_batch, step = resume_position(cfg, last_path, world_size)
        log0(f"config:\n{cfg}\ndevice {device} × {world_size} process(es), "
             f"precision {str(amp_dtype).removeprefix('torch.')}")

        # ---------------------------------------------------------------- data
        loader, sampler, _, val_sketch, val_photo = load_data(cfg, rank, world_size, device)

        # ---------------------------------------------------------------- networks and optimizers
        G = build_generator(cfg)
        D = build_discriminator(cfg)
        if check_sync_bn(cfg, world_size, device):  # statistics over the global batch, not a GPU's
            G, D = (nn.SyncBatchNorm.convert_sync_batchnorm(net) for net in (G, D))
        G, D = G.to(device, memory_format=memory_format), D.to(device, memory_format=memory_format)
        opt_g, opt_d = make_optimizers(G, D, cfg, device)
        # The perceptual loss's frozen VGG19, from the user's file (never downloaded); in no
        # checkpoint.
        perceptual = VGGFeatures(cfg.vgg_weights).to(device) if cfg.lambda_perceptual > 0 else None
        log0(f"generator {sum(p.numel() for p in G.parameters()):,} parameters, "
             f"discriminator {sum(p.numel() for p in D.parameters()):,}")

        # ---------------------------------------------------------------- resume
        if resuming:
            restore(last_path, G, D, opt_g, opt_d, scaler, device)
            log0(f"resumed from {last_path} at epoch {start_epoch} batch {start_batch} (step "
                 f"{step})")
        if start_epoch >= cfg.epochs:
            log0(f"the run has already trained {start_epoch} of {cfg.epochs} epochs; "
                 f"raise --epochs to go on")
        if world_size > 1:  # same weights everywhere, but each rank its own dropout masks
            torch.manual_seed(cfg.seed + RANK_SEED_STRIDE * rank + step)
            check_same_start(step, last_path, device)
        G_train, D_train = wrap_for_training(G, D, cfg, device)
        save = partial(save_checkpoint, last_path, generator=G, discriminator=D, opt_g=opt_g,
                       opt_d=opt_d, scaler=scaler, config=cfg, world_size=world_size)

        # ---------------------------------------------------------------- training loop
        val_l1s = []
        with running(cfg, device, loader, sampler, save, scaler, world_size, OUTPUTS) as run:
            for epoch in range(start_epoch, cfg.epochs):
                lr = set_lr((opt_g, opt_d), cfg.lr * lr_factor(epoch, cfg))
                first_batch = start_batch if epoch == start_epoch else 0
                for batch, (sketch, photo) in epoch_batches(run, epoch, first_batch, (G, D)):
                    sketch = to_float(sketch.to(device, non_blocking=True,
                                                memory_format=memory_format))
                    photo = to_float(photo.to(device, non_blocking=True,
                                              memory_format=memory_format))
                    if cfg.sketch_aug or cfg.hints:
                        aug_rng.manual_seed(step_seed(cfg.seed, rank, step))  # resumes exactly
                    if cfg.sketch_aug:  # edge maps -> hand-drawn; the photo moves with the shoe
                        sketch, photo = sketch_augment(sketch, photo, aug_rng,
                                                       cfg.sketch_aug_strength)
                    photo, hints = training_hints(
                        photo, aug_rng, cfg.hint_p, cfg.hint_max,
                        patch_side(cfg.hint_patch, cfg.image_size), cfg.hint_on_shoe,
                        cfg.hint_recolour) if cfg.hints else (photo, None)
                    if cfg.compile and cfg.compile_mode == "reduce-overhead":
                        torch.compiler.cudagraph_mark_step_begin()  # CUDA graphs: a step begins
                    run.meter.add(gan_step(G_train, D_train, opt_g, opt_d, scaler, sketch=sketch,
                                           photo=photo, lambda_l1=cfg.lambda_l1, autocast=autocast,
                                           gan_loss=cfg.gan_loss, lambda_gp=cfg.lambda_gp,
                                           n_critic=cfg.n_critic, perceptual=perceptual,
                                           lambda_perceptual=cfg.lambda_perceptual, hints=hints))
                    step += 1
                    after_step(run, epoch, batch, step, lr)

                # -------------------------------------------------------- end of epoch
                val_fake = validate(G, val_sketch, cfg, autocast, device, memory_format)
                val_l1s.append(end_epoch(run, epoch, step, val_sketch, val_fake, val_photo))
        return {**run.last_record, "val_l1": val_l1s, "step": step}
    finally:
        if dist.is_initialized():  # torchrun with one process joined a group too
            dist.destroy_process_group()


if __name__ == "__main__":
    config = parse_args(description=__doc__.split("\n")[0])
    try:
        main(config)
    except (OSError, ValueError, FloatingPointError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except KeyboardInterrupt:  # a second Ctrl-C: leave without saving; the last checkpoint stays
        print("\ntrain.py: aborted", file=sys.stderr)
        raise SystemExit(130)
