"""Train pix2pix: UNet generator + PatchGAN discriminator, GAN loss + λ·L1 (Isola et al. 2017).

    python -m tools.demo && python train.py --demo          # synthetic shoes, a few minutes on a CPU
    python train.py --data_dir data/edges2shoes              # the paper's edges2shoes schedule
    python train.py --data_dir data/edges2shoes --resume true   # continue after a crash or Ctrl-C
    python train.py --system wgan-gp --spectral_norm true    # another system: config.SYSTEMS, flags still win

Every field of config.py is a flag. The run writes models/<name>/{config.json, log.jsonl, curves.png,
last.pt, generator.pt} and samples/<name>/epoch_NNN.png (rows of sketch | generated | real).
"""

import json
import math
import os
import random
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from PIL import Image
from tqdm import tqdm

from config import DEMO, Config, parse_args, pick_device
from dataset import EpochSampler, PairDataset, train_val_folders
from discriminator import VGGFeatures
from generator import translate
try:  # TensorBoard is optional: scalars and sample grids go there too when the package is installed
    from torch.utils.tensorboard import SummaryWriter
except ImportError:
    SummaryWriter = None
from save import (CHECKPOINT_KEYS, build_discriminator, build_generator, load_checkpoint, plot_curves, psnr,
                  save_checkpoint, save_grid, set_rng_state)


FIXED_ON_RESUME = ("ngf", "ndf", "num_downs", "n_layers_d", "batch_size")  # the shapes and the data position


def pick_precision(name: str, device: torch.device) -> torch.dtype:
    """Autocast dtype: bf16 where the GPU has it (no loss scaling needed), fp16 on older GPUs, fp32 on CPU."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        # bf16 needs Ampere (compute capability 8) or newer; is_bf16_supported() also admits emulation.
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def mixed_precision(precision: str, device: torch.device) -> tuple:
    """(dtype, autocast context, GradScaler) for a precision name. fp16 needs loss scaling to keep small
    gradients from flushing to zero; bf16 and fp32 do not, so their scaler is a no-op."""
    amp_dtype = pick_precision(precision, device)
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype != torch.float32 else nullcontext()
    return amp_dtype, autocast, torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def make_optimizers(G: nn.Module, D: nn.Module, cfg: Config, device: torch.device) -> tuple:
    """The paper's Adam for each network; on CUDA one fused kernel updates all of a network's parameters."""
    fused = device.type == "cuda"
    return (torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused),
            torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused))


def lr_factor(epoch: int, cfg: Config) -> float:
    """Constant, then linear decay over the last epochs_decay epochs, as in the reference implementation."""
    return 1.0 - max(0, epoch + 1 - (cfg.epochs - cfg.epochs_decay)) / (cfg.epochs_decay + 1)


def loss_d_of(gan_loss: str, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """D's (the critic's) loss on its logits for real and fake pairs, without any gradient penalty."""
    if gan_loss == "bce":  # real -> 1, fake -> 0; halved, as in the paper, to slow D relative to G
        return 0.5 * (F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
                      + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))
    logits_real, logits_fake = logits_real.float(), logits_fake.float()  # means in fp32 under autocast
    if gan_loss == "lsgan":  # least squares to the same targets (Mao et al. 2017), halved like bce
        return 0.5 * (F.mse_loss(logits_real, torch.ones_like(logits_real))
                      + F.mse_loss(logits_fake, torch.zeros_like(logits_fake)))
    if gan_loss == "hinge":  # real pushed above +1, fake below -1 (Lim & Ye 2017; Miyato et al. 2018)
        return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()
    if gan_loss == "wgan-gp":  # the critic's estimate of -W(real, fake): fake scores down, real up
        return logits_fake.mean() - logits_real.mean()
    raise ValueError(f"config: unknown gan_loss {gan_loss!r}")


def loss_g_gan_of(gan_loss: str, logits_fake: torch.Tensor) -> torch.Tensor:
    """G's adversarial loss on D's logits for its fake pairs."""
    if gan_loss == "bce":  # the non-saturating loss: make D call the fake real
        return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))
    if gan_loss == "lsgan":
        return F.mse_loss(logits_fake.float(), torch.ones_like(logits_fake, dtype=torch.float32))
    return -logits_fake.float().mean()  # hinge and wgan-gp: raise the critic's score of the fake


def gradient_penalty(D, real_pair: torch.Tensor, fake_pair: torch.Tensor, scaler, autocast) -> torch.Tensor:
    """WGAN-GP's penalty E[(‖∇ₓ D(x̂)‖₂ - 1)²] (Gulrajani et al. 2017) on x̂ = ε·real + (1 - ε)·fake
    pairs, one ε ~ U(0, 1) per sample. D(x̂) of a sample is the mean of its patch scores, the value the losses use;
    the gradient is taken w.r.t. the whole pair (sketch and photo channels). create_graph=True keeps the
    gradient differentiable, so the penalty's own backward reaches D's weights (a double backward)."""
    D = getattr(D, "_orig_mod", D)  # torch.compile does not support double backward: the plain module
    eps = torch.rand(real_pair.shape[0], 1, 1, 1, device=real_pair.device, dtype=real_pair.dtype)
    mixed = (eps * real_pair + (1 - eps) * fake_pair.detach()).requires_grad_(True)  # (B, 6, H, W)
    with autocast:
        scores = D(mixed).float().flatten(1).mean(1)  # (B,) one score per sample: samples do not mix
    # Under fp16 the GradScaler scales the loss; scale here too, then unscale, so small gradients survive.
    (grad,) = torch.autograd.grad(scaler.scale(scores.sum()), mixed, create_graph=True)
    grad = grad.float() / scaler.get_scale() if scaler.is_enabled() else grad.float()
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def gan_step(G, D, opt_g, opt_d, scaler, sketch, photo, lambda_l1: float, autocast, gan_loss: str = "bce",
             lambda_gp: float = 10.0, n_critic: int = 1, perceptual=None,
             lambda_perceptual: float = 0.0) -> torch.Tensor:
    """One iteration: n_critic D steps on the real and the detached fake pair, then G on GAN + λ·L1
    (+ λ_perceptual · VGG distance when perceptual is given). The critic steps reuse this batch and this
    fake: G does not change between them, so a new fake would differ only by its dropout masks.
    Returns the losses (D, G_gan, G_l1) detached and still on the device: reading them would sync. With
    n_critic > 1, D is the mean over the critic steps; for wgan-gp it includes λ_gp·penalty."""
    # --- D steps. The fake is detached: these steps train D only.
    loss_d_sum = 0.0
    for k in range(n_critic):
        with autocast:
            if k == 0:
                fake_photo = G(sketch)
            logits_real = D(torch.cat([sketch, photo], dim=1))  # (B, 1, h, w), one logit per patch
            logits_fake = D(torch.cat([sketch, fake_photo.detach()], dim=1))
            loss_d = loss_d_of(gan_loss, logits_real, logits_fake)
        if gan_loss == "wgan-gp":
            real_pair, fake_pair = torch.cat([sketch, photo], dim=1), torch.cat([sketch, fake_photo], dim=1)
            loss_d = loss_d + lambda_gp * gradient_penalty(D, real_pair, fake_pair, scaler, autocast)
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)
        if k < n_critic - 1:
            scaler.update()  # a GradScaler allows one step per optimizer between updates
        loss_d_sum = loss_d_sum + loss_d.detach()
    loss_d = loss_d_sum / n_critic if n_critic > 1 else loss_d

    # --- G step: fool D, and stay close to the target in L1 (and in VGG features).
    D.requires_grad_(False)  # gradients flow through D to G, but D's own are not needed...
    with autocast, getattr(D, "no_sync", nullcontext)():  # ...nor averaged across processes under DDP
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
    """(rank, world_size, device). Under torchrun (which sets RANK) join the process group, one GPU per
    process; otherwise this is the world-size-1 case and nothing is initialized."""
    if "RANK" not in os.environ:
        return 0, 1, pick_device(cfg.device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    device = pick_device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, dist.get_world_size(), device


def main(cfg: Config) -> dict:
    """Train with cfg; returns the last logged losses and the per-epoch validation L1."""
    # ---------------------------------------------------------------- setup
    rank, world_size, device = setup_distributed(cfg)
    main_process = rank == 0  # only rank 0 prints, writes logs, samples and checkpoints
    say = print if main_process else (lambda *args, **kwargs: None)
    amp_dtype, autocast, scaler = mixed_precision(cfg.precision, device)
    # NHWC lets cuDNN use tensor-core convolutions without transposes; on CPU it gains nothing for training.
    memory_format = torch.channels_last if cfg.channels_last and device.type == "cuda" else torch.contiguous_format
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed + rank)  # the jitter's crops and flips when num_workers is 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    run_dir, samples_dir = Path(cfg.models_dir) / cfg.name, Path(cfg.samples_dir) / cfg.name
    last_path = run_dir / "last.pt"
    if main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(str(cfg) + "\n")
        for stale in run_dir.glob(".*.tmp"):  # half-written checkpoints of a killed run
            stale.unlink()
    say(f"config:\n{cfg}\ndevice {device} × {world_size} process(es), "
        f"precision {str(amp_dtype).removeprefix('torch.')}")

    # ---------------------------------------------------------------- data
    if not Path(cfg.data_dir).is_dir():
        make = "python -m tools.demo" if cfg.data_dir == DEMO["data_dir"] else "python -m tools.data download edges2shoes"
        raise FileNotFoundError(f"{cfg.data_dir}: no such folder; make or fetch the data first ({make})")
    train_dir, val_dir = train_val_folders(cfg.data_dir)  # train/ and val/ (or test/), else the folder itself
    train_set = PairDataset(train_dir, cfg.image_size, cfg.load_size, cfg.jitter, cfg.direction, skip_bad=cfg.skip_bad)
    val_set = PairDataset(val_dir, cfg.image_size, direction=cfg.direction, skip_bad=cfg.skip_bad)
    sampler = EpochSampler(len(train_set), cfg.seed, rank=rank, world_size=world_size)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda", persistent_workers=cfg.num_workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed + rank))  # its own seeds: dropout's stream stays resumable
    batches_per_epoch = math.ceil(len(sampler) / cfg.batch_size)
    # A fixed set of validation pairs, drawn for every epoch's grid and L1, so epochs compare like for like.
    n_val = min(len(val_set), max(cfg.n_samples, cfg.val_images))
    val_sketch, val_photo = (torch.stack(t) for t in zip(*(val_set[i] for i in range(n_val))))
    say(f"data: {len(train_set)} train pairs in {train_dir}, {n_val} val pairs from {val_dir}; "
        f"{cfg.batch_size} × {world_size} images per step")

    # ---------------------------------------------------------------- networks and optimizers
    G = build_generator(cfg)
    D = build_discriminator(cfg)
    if world_size > 1 and cfg.sync_bn:  # batch statistics over the global batch instead of each GPU's share
        if device.type != "cuda":
            raise ValueError("config: sync_bn needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on CPU)")
        G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
    G, D = G.to(device, memory_format=memory_format), D.to(device, memory_format=memory_format)
    opt_g, opt_d = make_optimizers(G, D, cfg, device)
    # The perceptual loss's frozen VGG19, from the user's file (never downloaded); in no checkpoint.
    perceptual = VGGFeatures(cfg.vgg_weights).to(device) if cfg.lambda_perceptual > 0 else None
    say(f"generator {sum(p.numel() for p in G.parameters()):,} parameters, "
        f"discriminator {sum(p.numel() for p in D.parameters()):,}")

    start_epoch, start_batch, step = 0, 0, 0
    if cfg.resume and last_path.exists():
        ckpt = load_checkpoint(last_path, keys=CHECKPOINT_KEYS)
        changed = [f"{k}={getattr(ckpt['config'], k)} (now {getattr(cfg, k)})" for k in FIXED_ON_RESUME
                   if getattr(ckpt["config"], k) != getattr(cfg, k)]
        if changed:
            raise ValueError(f"{last_path}: cannot resume, the checkpoint has {', '.join(changed)}; "
                             f"use the same settings or another --name")
        try:
            G.load_state_dict(ckpt["generator"])
            D.load_state_dict(ckpt["discriminator"])
            opt_g.load_state_dict(ckpt["opt_g"])
            opt_d.load_state_dict(ckpt["opt_d"])
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{last_path}: does not fit this run ({str(e).splitlines()[0]})") from None
        if ckpt["scaler"] and scaler.is_enabled():  # empty when the run that saved it did not use fp16
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"], device)
        start_epoch, start_batch, step = ckpt["epoch"], ckpt["batch"], ckpt["step"]
        if world_size > 1:
            torch.manual_seed(cfg.seed + 1_000_003 * rank + step)  # ranks draw different dropout masks
        say(f"resumed from {last_path} at epoch {start_epoch} batch {start_batch} (step {step})")
        if start_epoch >= cfg.epochs:
            say(f"the run has already trained {start_epoch} of {cfg.epochs} epochs; raise --epochs to go on")
    elif cfg.resume:
        say(f"no checkpoint at {last_path}: starting from scratch")
    elif world_size > 1:
        torch.manual_seed(cfg.seed + 1_000_003 * rank)  # same initial weights above, different dropout masks
    if world_size > 1:  # every process must resume from the same place (models/ on a shared filesystem)
        start = torch.tensor([step, -step], device=device)
        dist.all_reduce(start, op=dist.ReduceOp.MAX)
        if start[0] != -start[1]:
            raise ValueError(f"{last_path}: processes would resume at different steps ({-start[1]}..{start[0]}); "
                             f"put models/ on a filesystem that every machine sees")
    # The step runs on DDP- and compile-wrapped views of G and D; checkpoints always hold the plain
    # modules, so their keys carry no "module." or "_orig_mod." prefix and load anywhere.
    G_step, D_step = G, D
    if world_size > 1:
        G_step, D_step = DDP(G), DDP(D)  # averages gradients across processes during backward
    if cfg.compile:
        G_step, D_step = torch.compile(G_step), torch.compile(D_step)

    def checkpoint(epoch: int, batch: int) -> None:
        if main_process:
            save_checkpoint(last_path, generator=G, discriminator=D, opt_g=opt_g, opt_d=opt_d, scaler=scaler,
                            epoch=epoch, batch=batch, step=step, config=cfg)

    # Ctrl-C or SIGTERM (a cluster's preemption) finishes the step in flight, saves, and stops; so a resumed
    # run continues exactly where this one left off. A second Ctrl-C leaves at once.
    stop = []

    def request_stop(signum, frame):
        if stop:
            raise KeyboardInterrupt
        stop.append(signal.Signals(signum).name)
        if main_process:
            tqdm.write(f"{stop[0]}: finishing this step, then saving (press Ctrl-C again to abort without saving)")

    def agreed_stop(check_now: bool) -> bool:
        """Whether to stop now. A single process stops at once; several stop together, agreeing at log
        steps and epoch ends (every process reaches those at the same step)."""
        if world_size == 1:
            return bool(stop)
        if not check_now:
            return False
        flag = torch.tensor([float(bool(stop))], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag.item() > 0

    handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    # ---------------------------------------------------------------- training loop
    log_file = open(run_dir / "log.jsonl", "a") if main_process else None
    board = SummaryWriter(str(run_dir / "tensorboard")) if SummaryWriter and main_process else None
    loss_sums = torch.zeros(3, device=device)  # D, G_gan, G_l1 summed on the device: no sync per step
    interval_steps, interval_start = 0, time.perf_counter()
    last_losses, val_l1s = {}, []
    try:
        for epoch in range(start_epoch, cfg.epochs):
            lr = cfg.lr * lr_factor(epoch, cfg)
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = lr
            first = start_batch if epoch == start_epoch else 0
            sampler.epoch, sampler.start = epoch, first * cfg.batch_size
            G.train()
            D.train()
            bar = tqdm(loader, desc=f"epoch {epoch}", total=batches_per_epoch, initial=first, leave=False,
                       dynamic_ncols=True, file=sys.stderr, disable=not main_process)
            for batch, (sketch, photo) in enumerate(bar, start=first):
                sketch = sketch.to(device, non_blocking=True, memory_format=memory_format)  # (B, 3, H, W)
                photo = photo.to(device, non_blocking=True, memory_format=memory_format)  # (B, 3, H, W)
                losses = gan_step(G_step, D_step, opt_g, opt_d, scaler, sketch, photo, cfg.lambda_l1, autocast,
                                  cfg.gan_loss, cfg.lambda_gp, cfg.n_critic, perceptual, cfg.lambda_perceptual)
                step += 1
                interval_steps += 1
                loss_sums += losses
                if step % cfg.log_every == 0 or batch == batches_per_epoch - 1:
                    if world_size > 1:
                        dist.all_reduce(loss_sums)
                        loss_sums /= world_size
                    d, g_gan, g_l1 = (loss_sums / interval_steps).tolist()  # the one host-device sync
                    img_per_s = interval_steps * cfg.batch_size * world_size / (time.perf_counter() - interval_start)
                    if not all(math.isfinite(v) for v in (d, g_gan, g_l1)):
                        if not scaler.is_enabled():
                            raise FloatingPointError(f"loss is NaN or Inf by step {step} (epoch {epoch}); "
                                                     f"the last good checkpoint is {last_path}")
                        say(f"step {step}: non-finite fp16 loss; the GradScaler skipped those updates")
                    last_losses = {"epoch": epoch, "step": step, "loss_d": d, "loss_g_gan": g_gan,
                                   "loss_g_l1": g_l1, "lr": lr, "img_per_s": img_per_s}
                    if main_process:
                        tqdm.write(f"epoch {epoch} step {step} | D {d:.3f} | G_gan {g_gan:.3f} | G_l1 {g_l1:.4f} "
                                   f"| lr {lr:.2e} | {img_per_s:.1f} img/s")
                        bar.set_postfix(D=f"{d:.3f}", G_gan=f"{g_gan:.3f}", G_l1=f"{g_l1:.4f}")
                        log_file.write(json.dumps(last_losses) + "\n")
                        log_file.flush()
                        for key in ("loss_d", "loss_g_gan", "loss_g_l1", "lr", "img_per_s") if board else ():
                            board.add_scalar(f"train/{key}", last_losses[key], step)
                    loss_sums.zero_()
                    interval_steps, interval_start = 0, time.perf_counter()
                if batch < batches_per_epoch - 1:
                    stopping = agreed_stop(check_now=step % cfg.log_every == 0)
                    if stopping or (cfg.save_every and step % cfg.save_every == 0):
                        checkpoint(epoch, batch + 1)
                    if stopping:
                        say(f"\nstopped at epoch {epoch} batch {batch + 1} (step {step}); saved {last_path}; "
                            f"continue with --resume true")
                        raise SystemExit(130)
            bar.close()

            # --- end of epoch: validation L1 and sample grid on the fixed pairs, then a checkpoint. Every
            # process runs it (with synchronized batch norm the layers talk to each other); rank 0 writes.
            with autocast, torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(cfg.seed)  # the same dropout masks every epoch
                val_fake = translate(G, val_sketch.to(device, memory_format=memory_format)).float().cpu()
            val_l1, val_psnr = F.l1_loss(val_fake, val_photo).item(), psnr(val_fake, val_photo).mean().item()
            val_l1s.append(val_l1)
            grid_path = samples_dir / f"epoch_{epoch:03d}.png"
            if main_process:
                log_file.write(json.dumps({"epoch": epoch, "step": step, "val_l1": val_l1, "val_psnr": val_psnr}) + "\n")
                log_file.flush()
                save_grid(grid_path, val_sketch[:cfg.n_samples], val_fake[:cfg.n_samples],
                          val_photo[:cfg.n_samples])
                plot_curves(run_dir / "log.jsonl", run_dir / "curves.png")
                if board:
                    board.add_scalar("val/l1", val_l1, step)
                    board.add_scalar("val/psnr", val_psnr, step)
                    board.add_image("val/sketch_generated_real", np.asarray(Image.open(grid_path)), step,
                                    dataformats="HWC")
            checkpoint(epoch + 1, 0)
            say(f"epoch {epoch} done: val L1 {val_l1:.4f}, PSNR {val_psnr:.2f} dB, step {step}; saved {last_path}, "
                f"{grid_path} and {run_dir / 'curves.png'}")
            if agreed_stop(check_now=True):  # Ctrl-C in the epoch's last step or its validation: saved complete
                say(f"stopped after epoch {epoch}; continue with --resume true")
                raise SystemExit(130)
    finally:
        if log_file:
            log_file.close()
        if board:
            board.close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if world_size > 1:
            dist.destroy_process_group()
    return {**last_losses, "val_l1": val_l1s, "step": step}


if __name__ == "__main__":
    config = parse_args(description=__doc__.split("\n")[0])
    try:
        main(config)
    except (OSError, ValueError, FloatingPointError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except KeyboardInterrupt:  # a second Ctrl-C: leave without saving, the last checkpoint stays as it was
        print("\ntrain.py: aborted", file=sys.stderr)
        raise SystemExit(130)
