"""Sketch to photo by contextual completion (Lu, Wu, Tai, Tang 2017), in two ways.

    python -m tools.demo && python completion.py train --demo    # synthetic shoes, minutes on a CPU
    python completion.py train --data_dir data/edges2shoes --method search
    python completion.py train --demo --resume               # continue after Ctrl-C
    python completion.py complete sketch.png             # -> out/sketch.png, newest completer.pt
    python completion.py complete sketches/ -o out --checkpoint models/X/completer.pt --steps 200

A sketch and its photo are one joint image side by side (S × 2S: sketch left, photo right). A GAN
learns joint images; a photo is made by completing a joint image whose photo half is masked out, so
that its sketch half matches the input sketch:
    direct  (the reimplementation's) a feed-forward network from the masked joint image: flattened
            through a linear layer (factored through a z_dim code, reading ink), then five 5×5
            stride-2 transposed convs at S = 64 (batch norm, LeakyReLU; tanh), trained on
            λc·contextual + λp·perceptual + λphoto·(L1 to the real photo half; 0 in theirs);
    search  (the paper's) a joint-image GAN from a latent code z, trained as a plain GAN; each
            sketch is completed by search_steps Adam steps on z of λc·contextual + λp·perceptual
            from search_starts random starts, keeping the best.
contextual: mean |x - G| over the sketch half (M ⊙ |x - G|, the mask M hiding the photo half);
perceptual: G's adversarial loss on D's judgement of the completed joint image. D: four 5×5 stride-2
convs and a dense layer. The run writes models/<name>/{config.json, log.jsonl, curves.png, last.pt,
completer.pt} and samples/<name>/epoch_NNN.png (sketch | completed photo | real), as train.py does;
completer.pt holds its config, so `complete` and tools.evaluate need nothing else.
"""

import argparse
import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

if __name__ == "__main__":
    # idle OpenMP threads sleep instead of spinning, as in infer.py: on a shared 2-core CPU a
    # spinning thread starved the working one (a 5×5 transposed conv ran 2× slower)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from config import add_device_flag, first_line, pick_device  # noqa: E402
from dataset import to_float, to_image  # noqa: E402
from generator import init_weights as init_conv_weights  # noqa: E402
from generator import seeded  # noqa: E402
from infer import collect_inputs  # noqa: E402
from loop import (RunLog, after_step, check_start, end_epoch, epoch_batches,  # noqa: E402
                  resume_position, running)
from save import (CHECKPOINT_KEYS, ResumeClasses, check_fits, load_checkpoint,  # noqa: E402
                  restore, save_checkpoint)
from sketch import prepare_sketch, put_back  # noqa: E402
from train import (PRECISION_NAMES, load_data, make_optimizers, mixed_precision,  # noqa: E402
                   pick_precision)

METHODS = ("direct", "search")
GAN_LOSSES = ("bce", "saturating", "softmax")


@dataclass
class CompletionConfig:
    # --- data ---
    data_dir: str = "data/edges2shoes"  # folder holding train/ (and val/) of side-by-side pairs
    direction: str = "AtoB"  # AtoB: the left half of each file is the sketch; BtoA the right
    image_size: int = 64  # side of each half in pixels (a power of two, >= 16): joint S × 2S
    jitter: bool = False  # random resize to load_size, crop and flip of both halves alike
    load_size: int = 72  # resize target before the random crop when jitter is on, pixels
    num_workers: int = 2  # data loader processes (0 = load in the main process)
    cache: bool = False  # decode the training pairs once into a uint8 file (train.py's --cache)
    cache_dir: str = "cache"  # where the cache files go: one per data folder and decoded size
    skip_bad: bool = False  # leave out unreadable or wrongly sized files (else list them and stop)

    # --- model ---
    method: str = "direct"  # direct (feed-forward completion) or search (latent search on a GAN)
    z_dim: int = 100  # the code: direct's bottleneck of its linear layer, search's latent z
    ngf: int = 64  # filters before G's last transposed conv; its first has ngf·S/4
    ndf: int = 64  # filters of D's first conv; its fourth has 8·ndf

    # --- objective and optimiser ---
    lambda_contextual: float = 0.99  # weight of the contextual loss (L1 over the sketch half)
    lambda_perceptual: float = 0.01  # weight of the perceptual loss (D's judgement)
    lambda_photo: float = 0.99  # direct: weight of the L1 to the real photo half (0: the
    # reimplementation's, which leaves the photo half to the 1% perceptual term; see README)
    gan_loss: str = "bce"  # bce (sigmoid, non-saturating G), saturating or softmax (see README)
    alternate_epochs: int = 0  # 0: D then G every step; N: D alone N epochs, then G alone N
    lr: float = 2e-4  # Adam learning rate for both networks
    beta1: float = 0.5  # Adam β1
    beta2: float = 0.999  # Adam β2
    batch_size: int = 64  # joint images per step
    epochs: int = 25  # total epochs

    # --- completion by search ---
    search_steps: int = 100  # Adam steps on z per sketch (0: the best random start)
    search_starts: int = 8  # random codes per sketch; the lowest final loss is kept
    search_lr: float = 0.05  # Adam learning rate on z

    # --- run ---
    name: str = "completion"  # run name: models/<name>/ and samples/<name>/
    models_dir: str = "models"  # where run folders with checkpoints and logs go
    samples_dir: str = "samples"  # where run folders with validation grids go
    resume: bool = False  # continue from models/<name>/last.pt if it exists
    overwrite: bool = False  # start a saved run over: its outputs deleted first (train.py's)
    seed: int = 0  # seeds weights, data order, the search GAN's codes and the search
    device: str = "auto"  # auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...
    precision: str = "auto"  # auto (bf16 or fp16 on a GPU, fp32 on CPU), fp32, bf16, fp16
    log_every: int = 25  # steps between log lines
    save_every: int = 0  # steps between mid-epoch checkpoints (0 = at the end of each epoch)
    n_samples: int = 8  # validation images in each epoch's sample grid
    val_images: int = 16  # fixed validation pairs scored each epoch (val L1, PSNR)

    def __post_init__(self):
        """Reject values that cannot work, in one line that names the field."""
        def refuse(problem):
            raise ValueError(f"completion config: {problem}")
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), field.type
            if not ((isinstance(value, kind) and (kind is bool or not isinstance(value, bool)))
                    or (kind is float and isinstance(value, int) and not isinstance(value, bool))):
                refuse(f"{field.name} must be {kind.__name__}, got {value!r}")
        choices = dict(direction=("AtoB", "BtoA"), method=METHODS, gan_loss=GAN_LOSSES,
                       precision=("auto", "fp32", "bf16", "fp16"))
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                refuse(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if self.image_size < 16 or self.image_size & (self.image_size - 1):
            refuse(f"image_size must be a power of two, at least 16 (D halves it four times); got "
                   f"{self.image_size}")
        least = {**dict.fromkeys(("z_dim", "ngf", "ndf", "batch_size", "epochs", "search_starts",
                                  "log_every", "n_samples", "val_images"), 1),
                 **dict.fromkeys(("search_steps", "alternate_epochs", "save_every", "num_workers",
                                  "lambda_contextual", "lambda_perceptual", "lambda_photo"), 0)}
        for name, low in least.items():
            if not getattr(self, name) >= low:  # written so that NaN fails too
                refuse(f"{name} must be at least {low}, got {getattr(self, name)}")
        if not (self.lr > 0 and self.search_lr > 0 and 0 <= self.beta1 < 1
                and 0 <= self.beta2 < 1):
            refuse(f"need lr > 0, search_lr > 0 and betas in [0, 1); got lr={self.lr}, "
                   f"search_lr={self.search_lr}, beta1={self.beta1}, beta2={self.beta2}")
        if self.jitter and self.load_size < self.image_size:
            refuse(f"load_size {self.load_size} is smaller than image_size {self.image_size}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CompletionConfig":
        """Rebuild a config saved in a checkpoint; unknown keys mean another project's file."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"completion config: unknown keys {unknown}")
        return cls(**d)

    def __str__(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# The built-in demo: the synthetic shoes of `python -m tools.demo`, small networks, a short search,
# sized so that `python completion.py train --demo` finishes on a 2-core CPU in a few minutes.
DEMO = dict(data_dir="data/demo", name="completion_demo", ngf=16, ndf=16, batch_size=16,
            epochs=15, log_every=25, n_samples=8, val_images=8, search_steps=50, search_starts=4)
# What --resume does with a changed field (save.resume_changes; docs/training.md holds the table).
COMPLETION_RESUME = ResumeClasses(
    # the saved tensors would not fit, the position in the epoch would mean other images, or G
    # would learn another mapping (direction: which half is the sketch)
    refused=("method", "image_size", "z_dim", "ngf", "ndf", "batch_size", "direction"),
    warned=("data_dir", "jitter", "load_size", "lambda_contextual", "lambda_perceptual",
            "lambda_photo", "gan_loss", "alternate_epochs", "lr", "beta1", "beta2", "seed",
            "precision"),
    # where files go, how it loads and logs, where it computes; the search's settings shape the
    # validation and `complete`, not the training
    silent=("num_workers", "cache", "cache_dir", "skip_bad", "epochs", "search_steps",
            "search_starts", "search_lr", "name", "models_dir", "samples_dir", "resume",
            "overwrite", "device", "log_every", "save_every", "n_samples", "val_images"),
    unused_when={"load_size": lambda c: not c.jitter,
                 "lambda_photo": lambda c: c.method != "direct"})
OUTPUTS = ("last.pt", "completer.pt", "log.jsonl", "curves.png")  # what --overwrite deletes


# ------------------------------------------------------------------------ joint images and losses

def joint(sketch: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) sketch and photo -> the joint image (B, 3, S, 2S), sketch left, photo right."""
    return torch.cat([sketch, photo], dim=3)


def photo_half(joint_image: torch.Tensor) -> torch.Tensor:
    """The right half (B, 3, S, S) of joint images."""
    return joint_image[..., joint_image.shape[-1] // 2:]


def photo_mask(image_size: int, device=None) -> torch.Tensor:
    """(1, 1, S, 2S): 1 over the photo half, which completion fills in, 0 over the sketch half."""
    mask = torch.zeros(1, 1, image_size, 2 * image_size, device=device)
    mask[..., image_size:] = 1
    return mask


def contextual_loss(completed: torch.Tensor, target: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
    """(B,): mean |target - completed| over the pixels the mask leaves, the sketch half; the
    photo half of either image plays no part."""
    known = 1 - mask  # (1, 1, S, 2S)
    difference = known * (completed.float() - target.float()).abs()
    return difference.flatten(1).sum(1) / (known.sum() * completed.shape[1])


def adversarial(gan_loss: str, logits: torch.Tensor, real: bool) -> torch.Tensor:
    """(B,): D's loss per image for logits (B,) of joint images that are real or completed."""
    target = torch.full_like(logits, float(real), dtype=torch.float32)
    if gan_loss == "softmax":  # the reimplementation's: a softmax over one logit is exactly 1
        probability = torch.softmax(logits.float()[:, None], dim=1)[:, 0]
        def log(x):  # clamped as binary_cross_entropy clamps: log(0) = -100, not -inf or NaN
            return x.clamp(min=math.exp(-100)).log()
        return -(target * log(probability) + (1 - target) * log(1 - probability))
    return nn.functional.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")


def generator_loss(gan_loss: str, logits: torch.Tensor) -> torch.Tensor:
    """(B,): G's perceptual loss per image. bce and softmax: -log D(G), non-saturating;
    saturating: log(1 - D(G)), the minimax form, flat wherever D rejects the completion."""
    if gan_loss == "saturating":
        return -adversarial("bce", logits, real=False)
    return adversarial(gan_loss, logits, real=True)


# ------------------------------------------------------------------------------------- networks

def init_weights(module: nn.Module) -> None:
    """DCGAN's init: conv and linear weights N(0, 0.02), batch-norm scales N(1, 0.02)."""
    init_conv_weights(module)
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class JointGenerator(nn.Module):
    """A code (B, z_dim) -> a joint image (B, 3, S, 2S): a linear projection to 2×4 maps, then
    log2(S) - 1 transposed convs 5×5 stride 2 (five at S = 64), halving the width each time, batch
    norm and LeakyReLU(0.2) between, tanh at the end."""

    def __init__(self, z_dim: int = 100, ngf: int = 64, image_size: int = 64):
        super().__init__()
        n_up = int(math.log2(image_size)) - 1
        self.width = width = ngf * 2 ** (n_up - 1)  # 16·ngf at S = 64
        self.project = nn.Linear(z_dim, width * 2 * 4, bias=False)
        layers = [nn.BatchNorm2d(width), nn.LeakyReLU(0.2)]
        for k in range(n_up):
            last = k == n_up - 1
            out = 3 if last else width // 2
            layers.append(nn.ConvTranspose2d(width, out, 5, stride=2, padding=2, output_padding=1,
                                             bias=last))  # batch norm cancels a bias
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            width = out
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        h = self.project(code).view(-1, self.width, 2, 4)  # (B, 16·ngf, 2, 4) at S = 64
        return self.net(h)  # (B, 3, S, 2S) in [-1, 1]


class DirectCompleter(nn.Module):
    """The reimplementation's completion network: a masked joint image (B, 3, S, 2S) flattened
    through a linear layer, then JointGenerator's transposed convs. The linear layer is factored
    through a z_dim code (rank z_dim): straight to the 2×4 maps it would hold 200M weights. It reads
    ink, 0 on white paper and on the hidden half: on the [-1, 1] scale the paper's constant sum
    swamped the lines (every sketch started with nearly one code) and drifted with every weight
    update (a batch norm on the code could not track it: eval-mode L1 0.56 against 0.26 with batch
    statistics on the edges2shoes val pairs)."""

    def __init__(self, z_dim: int = 100, ngf: int = 64, image_size: int = 64):
        super().__init__()
        self.encode = nn.Linear(3 * image_size * 2 * image_size, z_dim)
        self.decode = JointGenerator(z_dim, ngf, image_size)
        self.register_buffer("known", 1 - photo_mask(image_size), persistent=False)
        init_weights(self.encode)

    def forward(self, masked_joint: torch.Tensor) -> torch.Tensor:
        ink = (1 - masked_joint) / 2 * self.known  # (B, 3, S, 2S): 0 white, 1 black, 0 hidden
        return self.decode(self.encode(ink.flatten(1)))  # (B, 3, S, 2S)


class JointDiscriminator(nn.Module):
    """A joint image (B, 3, S, 2S) -> one logit per image (B,): four 5×5 stride-2 convs (ndf, 2,
    4, 8 × ndf; LeakyReLU 0.2), then a dense layer. No batch norm: D sees real and completed
    images in separate batches, and batch norm would cancel what all completions of a batch share
    (a gray background where real ones are white), so G could never learn it (measured: the search
    GAN stayed gray noise after 200 demo steps with it)."""

    def __init__(self, ndf: int = 64, image_size: int = 64):
        super().__init__()
        layers, width = [], 3
        for k in range(4):
            out = ndf * 2**k
            layers += [nn.Conv2d(width, out, 5, stride=2, padding=2), nn.LeakyReLU(0.2)]
            width = out
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.dense = nn.Linear(width * (image_size // 16) * (image_size // 8), 1)
        self.apply(init_weights)

    def forward(self, joint_image: torch.Tensor) -> torch.Tensor:
        return self.dense(self.net(joint_image)).squeeze(1)  # (B,) raw logits


def build_networks(cfg: CompletionConfig) -> tuple:
    """(G, D) a config describes: G is DirectCompleter (direct) or JointGenerator (search)."""
    make = DirectCompleter if cfg.method == "direct" else JointGenerator
    return (make(z_dim=cfg.z_dim, ngf=cfg.ngf, image_size=cfg.image_size),
            JointDiscriminator(ndf=cfg.ndf, image_size=cfg.image_size))


# ------------------------------------------------------------------------------------ completion

def search(generator: nn.Module, discriminator: nn.Module, sketch: torch.Tensor, z_dim: int,
           steps: int, starts: int, lr: float, lambda_contextual: float,
           lambda_perceptual: float, gan_loss: str = "bce") -> tuple:
    """The paper's completion: for each sketch (B, 3, S, S), `starts` codes z ~ N(0, 1) each take
    `steps` Adam steps on λc·contextual + λp·perceptual, and the one with the lowest final loss
    wins. Returns (completed joint images (B, 3, S, 2S), their losses (B,)). The networks must be
    in eval mode: with batch statistics, the candidates would steer each other."""
    batch, size = sketch.shape[0], sketch.shape[-1]
    code = torch.randn(starts * batch, z_dim, device=sketch.device)

    def loss_of(z):  # (starts·B,), each candidate's loss depends on its own z alone
        completed = generator(z)
        return (lambda_contextual * contextual_loss(completed, target, mask)
                + lambda_perceptual * generator_loss(gan_loss, discriminator(completed))), completed

    # gradients also for callers under no_grad or inference_mode (tools.evaluate)
    with torch.inference_mode(False), torch.enable_grad():
        sketch = sketch.clone()  # a normal tensor, also when made in inference mode
        target = joint(sketch, torch.zeros_like(sketch)).repeat(starts, 1, 1, 1)  # (starts·B, ..)
        mask = photo_mask(size, sketch.device)
        code = code.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([code], lr=lr)
        for _ in range(steps):
            (grad,) = torch.autograd.grad(loss_of(code)[0].sum(), code)  # no weight gradients
            code.grad = grad
            optimizer.step()
        with torch.no_grad():
            loss, completed = loss_of(code.detach())
            best = loss.view(starts, batch).argmin(0)  # (B,) the winning start of each sketch
            pick = best * batch + torch.arange(batch, device=sketch.device)
    return completed[pick], loss[pick]


def complete(generator: nn.Module, discriminator: nn.Module, sketch: torch.Tensor,
             cfg: CompletionConfig, steps: int = None, starts: int = None) -> torch.Tensor:
    """Photos (B, 3, S, S) completing sketches (B, 3, S, S) in [-1, 1] by cfg.method, with the
    networks in eval mode (running statistics; their modes are restored after)."""
    modes = [(net, net.training) for net in (generator, discriminator)]
    generator.eval()
    discriminator.eval()
    try:
        if cfg.method == "direct":
            with torch.no_grad():
                return photo_half(generator(joint(sketch, torch.zeros_like(sketch))))
        steps = cfg.search_steps if steps is None else steps
        starts = cfg.search_starts if starts is None else starts
        completed, _ = search(generator, discriminator, sketch, cfg.z_dim, steps, starts,
                              cfg.search_lr, cfg.lambda_contextual, cfg.lambda_perceptual,
                              cfg.gan_loss)
        return photo_half(completed).detach()
    finally:
        for net, training in modes:
            net.train(training)


class Completer(nn.Module):
    """A completion checkpoint as a sketch -> photo module, for callers of any generator
    (tools.evaluate): (B, 3, S, S) -> (B, 3, S, S), deterministic for direct, seeded by the
    caller's random state for search."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, cfg: CompletionConfig,
                 steps: int = None, starts: int = None):
        super().__init__()
        self.generator, self.discriminator, self.cfg = generator, discriminator, cfg
        self.steps, self.starts = steps, starts

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        return complete(self.generator, self.discriminator, sketch, self.cfg, self.steps,
                        self.starts)


# ---------------------------------------------------------------------------------- training

def completion_step(G, D, opt_g, opt_d, scaler, sketch, photo, cfg: CompletionConfig, autocast,
                    train_d: bool = True, train_g: bool = True) -> torch.Tensor:
    """One iteration: D on real and detached completed joint images, then G on λc·contextual +
    λp·perceptual + λphoto·(L1 to the real photo half) (direct) or the perceptual loss alone
    (search: a plain GAN of joint images).
    train_d / train_g False computes that network's loss without a step (alternating blocks).
    Returns (D, G perceptual, contextual) detached, on the device."""
    real = joint(sketch, photo)  # (B, 3, S, 2S)
    mask = photo_mask(cfg.image_size, real.device)
    with autocast, torch.set_grad_enabled(train_g):
        if cfg.method == "direct":
            completed = G(real * (1 - mask))  # the photo half hidden: zeros
        else:
            completed = G(torch.randn(real.shape[0], cfg.z_dim, device=real.device))

    # --- D: real joint images are real, completions are fake (detached: this step trains D).
    with autocast, torch.set_grad_enabled(train_d):
        loss_d = 0.5 * (adversarial(cfg.gan_loss, D(real), real=True)
                        + adversarial(cfg.gan_loss, D(completed.detach()), real=False)).mean()
    if train_d:
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)

    # --- G: completions D calls real, whose sketch half is the input sketch.
    D.requires_grad_(False)
    with autocast, torch.set_grad_enabled(train_g):
        loss_perceptual = generator_loss(cfg.gan_loss, D(completed)).mean()
        loss_contextual = contextual_loss(completed, real, mask).mean()
        loss_g = loss_perceptual if cfg.method == "search" \
            else cfg.lambda_contextual * loss_contextual + cfg.lambda_perceptual * loss_perceptual
        if cfg.method == "direct" and cfg.lambda_photo > 0:  # the same L1, the other half
            loss_g = loss_g + cfg.lambda_photo * contextual_loss(completed, real, 1 - mask).mean()
    D.requires_grad_(True)
    if train_g:
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(loss_g).backward()
        scaler.step(opt_g)
    scaler.update()
    return torch.stack([loss_d.detach(), loss_perceptual.detach(),
                        loss_contextual.detach()]).float()


def load_completer(path, steps: int = None, starts: int = None) -> tuple:
    """(Completer on CPU in eval mode, config) rebuilt from a completer.pt or last.pt alone."""
    ckpt = load_checkpoint(path, kind="completion", config_class=CompletionConfig)
    cfg = ckpt["config"]
    check_fits(path, lambda: build_networks(cfg), ", ".join(
        f"{name}={getattr(cfg, name)}" for name in ("image_size", "z_dim", "ngf", "ndf")))
    G, D = build_networks(cfg)
    if cfg.method == "search" and "discriminator" not in ckpt:
        raise ValueError(f"{path}: a search checkpoint without its discriminator")
    try:
        G.load_state_dict(ckpt["generator"])
        if cfg.method == "search":
            D.load_state_dict(ckpt["discriminator"])
    except (RuntimeError, KeyError) as e:
        raise ValueError(f"{path}: weights do not match its config ({first_line(e)})") from None
    return Completer(G, D, cfg, steps, starts).eval(), cfg


class CompletionLog(RunLog):
    """train.py's log (stdout, log.jsonl, TensorBoard) with this family's names for the losses:
    loss_g_gan is the perceptual loss, loss_g_l1 the contextual one."""
    LABELS = {**RunLog.LABELS, "loss_g_gan": ("G_perceptual", ".3f"),
              "loss_g_l1": ("contextual", ".4f")}


def run_precision(cfg: CompletionConfig, device: torch.device, last_path: Path) -> CompletionConfig:
    """cfg with --precision auto decided once for the run (the GPU's capability, as in train.py;
    fp32 on a CPU) and named in the config every checkpoint saves: a resume keeps that choice."""
    if cfg.precision != "auto":
        return cfg
    if cfg.resume and last_path.exists():
        saved = load_checkpoint(last_path, keys=CHECKPOINT_KEYS, kind="completion",
                                config_class=CompletionConfig, mmap=True)["config"].precision
        if saved != "auto":  # an older checkpoint that does not say: decided again
            return dataclasses.replace(cfg, precision=saved)
    return dataclasses.replace(cfg, precision=PRECISION_NAMES[pick_precision("auto", device)])


def main(cfg: CompletionConfig) -> dict:
    """Train with cfg; returns the last logged losses, the per-epoch validation L1 and the step."""
    # ---------------------------------------------------------------- setup and checks
    device = pick_device(cfg.device)
    run_dir = Path(cfg.models_dir) / cfg.name
    last_path = run_dir / "last.pt"
    family = dict(kind="completion", config_class=CompletionConfig)
    check_start(cfg, run_dir, OUTPUTS, **family)  # nothing is written before the checks pass
    cfg = run_precision(cfg, device, last_path)  # auto: decided once, kept on resume
    amp_dtype, autocast, scaler = mixed_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    resuming = cfg.resume and last_path.exists()
    start_epoch, start_batch, step = resume_position(cfg, last_path, 1, COMPLETION_RESUME,
                                                     **family)
    print(f"config:\n{cfg}\ndevice {device}, precision {str(amp_dtype).removeprefix('torch.')}")

    # ---------------------------------------------------------------- data, networks, resume
    loader, sampler, _, val_sketch, val_photo = load_data(cfg, 0, 1, device)
    G, D = (net.to(device) for net in build_networks(cfg))
    opt_g, opt_d = make_optimizers(G, D, cfg, device)
    print(f"{cfg.method}: generator {sum(p.numel() for p in G.parameters()):,} parameters, "
          f"discriminator {sum(p.numel() for p in D.parameters()):,}")
    if resuming:
        restore(last_path, G, D, opt_g, opt_d, scaler, device, **family)
        print(f"resumed from {last_path} at epoch {start_epoch} batch {start_batch} (step {step})")
    # completer.pt: what completion needs (G, and D for the search)
    needed = ("generator", "discriminator") if cfg.method == "search" else ("generator",)
    save = partial(save_checkpoint, last_path, generator=G, discriminator=D, opt_g=opt_g,
                   opt_d=opt_d, scaler=scaler, config=cfg, kind="completion",
                   weights=("completer.pt", needed))

    # ---------------------------------------------------------------- training loop
    val_l1s = []
    unlogged = ("loss_g_l1",) if cfg.method == "search" else ()  # no sketch to match in training
    with running(cfg, device, loader, sampler, save, scaler, 1, OUTPUTS, CompletionLog,
                 unlogged) as run:
        for epoch in range(start_epoch, cfg.epochs):
            # the reimplementation's blocks: D alone for N epochs, then G alone for N, and so on
            block = (epoch // cfg.alternate_epochs) % 2 if cfg.alternate_epochs else None
            train_d, train_g = block in (None, 0), block in (None, 1)
            first_batch = start_batch if epoch == start_epoch else 0
            for batch, (sketch, photo) in epoch_batches(run, epoch, first_batch, (G, D)):
                sketch, photo = to_float(sketch.to(device)), to_float(photo.to(device))
                run.meter.add(completion_step(G, D, opt_g, opt_d, scaler, sketch, photo, cfg,
                                              autocast, train_d=train_d, train_g=train_g))
                step += 1
                after_step(run, epoch, batch, step, cfg.lr)

            # ------------------------------------------------------------ end of epoch
            with seeded(cfg.seed, device):  # the same search starts every epoch
                val_fake = complete(G, D, val_sketch.to(device), cfg).float().cpu()
            val_l1s.append(end_epoch(run, epoch, step, val_sketch, val_fake, val_photo))
    return {**run.last_record, "val_l1": val_l1s, "step": step}


# ------------------------------------------------------------------------------- command lines

def parse_args(argv=None) -> CompletionConfig:
    """Config from the command line: one --flag per field, plus --demo for the demo preset."""
    parser = argparse.ArgumentParser(prog="completion.py train", allow_abbrev=False,
                                     description="Train a contextual-completion model.")
    parser.add_argument("--demo", action=argparse.BooleanOptionalAction, default=False,
                        help="the demo preset: the synthetic shoes of python -m tools.demo")
    for field in dataclasses.fields(CompletionConfig):
        if field.type is bool:
            parser.add_argument(f"--{field.name}", action=argparse.BooleanOptionalAction,
                                default=None, help=f"default {field.default}")
        else:
            parser.add_argument(f"--{field.name}", type=field.type, default=None,
                                metavar=field.name.upper(), help=f"default {field.default}")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "demo" and v is not None}
    try:
        return CompletionConfig(**{**(DEMO if args.demo else {}), **overrides})
    except ValueError as e:
        parser.error(str(e))


def find_completer(models_dir: str = "models") -> Path:
    """The most recently written completer.pt under models/."""
    found = sorted(Path(models_dir).glob("*/completer.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"{models_dir}/: no */completer.pt; train first (python "
                                "completion.py train --demo) or pass --checkpoint")
    return found[-1]


def complete_main(argv=None) -> int:
    """`complete`: one PNG per input sketch, at the sketch's size, in --out."""
    parser = argparse.ArgumentParser(prog="completion.py complete",
                                     description="Complete sketches into photos.")
    parser.add_argument("inputs", nargs="+", help="sketch images or folders of them")
    parser.add_argument("-o", "--out", default="out", help="folder for the completed PNGs")
    parser.add_argument("--checkpoint",
                        help="completer.pt or last.pt of a run (default: newest "
                             "models/*/completer.pt)")
    parser.add_argument("--steps", type=int, help="search: Adam steps (default: the run's)")
    parser.add_argument("--starts", type=int, help="search: random starts (default: the run's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the search's starts")
    parser.add_argument("--fit", action=argparse.BooleanOptionalAction, default=True,
                        help="crop a plain sketch to its drawing and redraw its lines as "
                             "infer.py does")
    add_device_flag(parser)
    args = parser.parse_args(argv)
    if (args.steps is not None and args.steps < 0) or (args.starts is not None
                                                       and args.starts < 1):
        parser.error("--steps must be at least 0 and --starts at least 1")
    try:
        device = pick_device(args.device)
        path = Path(args.checkpoint) if args.checkpoint else find_completer()
        if not args.checkpoint:
            print(f"checkpoint: {path}")
        completer, cfg = load_completer(path, args.steps, args.starts)
        completer.to(device)
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as e:
        print(f"completion.py: error: {first_line(e, 300)}", file=sys.stderr)
        return 2
    files, problems = collect_inputs(args.inputs)
    for problem in problems:
        print(f"completion.py: error: {problem}", file=sys.stderr)
    failed = len(problems)
    torch.manual_seed(args.seed)
    for path in files:
        try:
            prepared = prepare_sketch(path, cfg.image_size, cfg.direction, fit=args.fit)
            photo = completer(prepared.sketch[None].to(device))[0]
            target = out_dir / f"{path.stem}.png"
            put_back(to_image(photo), prepared).save(target)
        except (OSError, ValueError) as e:
            message = str(e) if str(path) in str(e) else f"{path}: {e}"
            print(f"completion.py: error: {first_line(ValueError(message), 300)}",
                  file=sys.stderr)
            failed += 1
            continue
        print(f"{path} -> {target}")
    if failed:
        print(f"{failed} of {len(files) + len(problems)} inputs failed; the others are in "
              f"{out_dir}")
    return 2 if failed else 0


def cli(argv=None) -> int:
    """`train` or `complete`, then that command's flags."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("train", "complete"):
        print("usage: python completion.py {train,complete} ...  (--help after either)",
              file=sys.stderr)
        return 2
    if argv[0] == "complete":
        return complete_main(argv[1:])
    cfg = parse_args(argv[1:])
    try:
        main(cfg)
    except (OSError, ValueError, FloatingPointError) as e:
        print(f"completion.py: error: {first_line(e, 300)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: leave without saving; the last checkpoint stays
        print("\ncompletion.py: aborted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli())
