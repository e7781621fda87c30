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

import sys
from contextlib import nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from config import DEMO, Config, parse_args
from dataset import (CachedLoader, EpochSampler, PairCache, PairDataset, ignore_signals,
                     sketch_augment, to_float, train_val_folders)
from discriminator import build_discriminator
from generator import build_generator, seeded, translate
from hints import patch_side, training_hints, with_hints
from loop import (after_step, check_same_start, check_start, end_epoch, epoch_batches, log0,
                  on_rank0, resume_position, running, set_lr, setup_distributed)
from losses import VGGFeatures, gradient_penalty, loss_d_of, loss_g_gan_of
from save import check_fits, generator_fields, restore, save_checkpoint, saved_config
from tune import training_precision

RANK_SEED_STRIDE = 1_000_003  # dropout seed = seed + this × rank + step: a prime above any step
# count, so that no two (rank, step) pairs share a dropout stream


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


def validate(G: nn.Module, val_sketch, cfg: Config, autocast, device, memory_format):
    """The generated photos of the fixed validation sketches, with the same dropout masks each
    epoch, in paper mode (each image its own statistics: no collective even with sync_bn); a model
    trained with colour hints is given none (comparable with one trained without)."""
    sketch = val_sketch.to(device, memory_format=memory_format)
    with autocast, seeded(cfg.seed, device):
        return translate(G, with_hints(sketch) if cfg.hints else sketch).float().cpu()


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
        on_rank0(lambda: check_start(cfg, run_dir, OUTPUTS), device)
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
