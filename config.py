"""Every hyperparameter of a pix2pix run, with the paper's defaults.

Edit the defaults here, or override any field from the command line:
    python train.py --lambda_l1 10 --lr 1e-4 --epochs 30
The effective config is printed at start, saved as config.json in the run folder and stored inside
every checkpoint, so that infer.py can rebuild the model from the checkpoint alone.
"""

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch


DROPOUT_BLOCKS = ("paper", "authors_pytorch")  # the values of Config.dropout_blocks
HINT_CHANNELS = 4  # what Config.hints adds to G's input: a sparse hint colour (RGB) and its mask
RETIRED = {"demo_data"}  # fields of older checkpoints that no longer mean anything: ignored on load


TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
MAX_NUM_DOWNS = 16  # UNet downsamplings: 2**16 = 65,536-pixel sides
MAX_RESNET_BLOCKS = 100  # the paper's resnet generators have 6 or 9


def has_type(value, kind) -> bool:
    """Whether value is of a config field's type: an int is a float too, a bool is no number."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def short_repr(value, limit: int = 40) -> str:
    """repr(value) cut to limit characters: a hostile file's value can be megabytes long."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... (a {type(value).__name__})"


@dataclass
class Config:
    # --- data ---
    data_dir: str = "data/edges2shoes"  # folder holding train/ (and val/) of side-by-side 2N×N AB
    # images
    direction: str = "AtoB"  # AtoB: left half (edges) -> right half (photo); BtoA the reverse
    image_size: int = 256  # training resolution in pixels (square)
    jitter: bool = False  # paper's random jitter: resize to load_size, random crop, random flip.
    # The paper jitters in general, but the reference implementation trains edges2shoes without it.
    load_size: int = 286  # resize target before the random crop when jitter is on, pixels
    num_workers: int = 4  # data loader processes (0 = load in the main process)
    cache: bool = False  # decode the training pairs once into a uint8 file and read batches from it
    # (the jitter's crop taken as it is read, its flip on the device): what keeps a GPU fed; README
    cache_dir: str = "cache"  # where the cache files go: one per data folder and decoded size
    skip_bad: bool = False  # leave out unreadable or wrongly sized files (else list them and stop
    # before training)
    sketch_aug: bool = False  # not in the paper: training edge maps become hand-drawing-like
    # (dataset.sketch_augment): thicker, wobbly, broken strokes, specks gone, shoe moved with its
    # photo
    sketch_aug_strength: float = 1.0  # scales every sketch_aug range (dataset.SKETCH_AUG); 0 = none
    hints: bool = False  # not in the paper: colour hints (hints.py; Zhang et al. 2017): G reads 4
    # more channels, hint RGB (0 where none) and a 0/1 mask, sampled from the real photo in training
    hint_p: float = 0.125  # hint patches per training image: geometric, P(n) = p·(1-p)^n (mean 7)
    hint_max: int = 32  # most hint patches in one training image (cuts the geometric tail: 1.4%)
    hint_patch: int = 9  # hint patch sides drawn from 1 to this, pixels at 256 (scaled with size)
    hint_on_shoe: bool = True  # hint patches centred on the shoe, not on the white background
    hint_recolour: float = 0.5  # share of training images whose shoe is moved to a random colour
    # (hints.recolour_shoes) before its hints are drawn, kept so only where it got a hint; a
    # checkpoint older than this field trained with 0
    hint_global: bool = False  # the hints' mean colour also modulates G's bottleneck (FiLM; Zhang
    # et al. 2017's global hints): a unet only

    # --- model ---
    ngf: int = 64  # generator filters in the first layer
    ndf: int = 64  # discriminator filters in the first layer
    num_downs: int = 8  # UNet downsamplings: 8 takes 256×256 down to 1×1 (the paper's UNet-256)
    n_layers_d: int = 3  # PatchGAN stride-2 layers: 3 gives the paper's 70×70 patches
    dropout: float = 0.5  # dropout in the first three decoder blocks, also on at test time
    dropout_blocks: str = "paper"  # where: paper (first three decoder blocks) or authors_pytorch
    generator: str = "unet"  # unet (the paper's) or resnet (Johnson et al.: c7s1-64, d128, d256,
    # resnet_blocks × R256, u128, u64, c7s1-3, as pix2pix's code builds it, dropout in every block)
    resnet_blocks: int = 9  # residual blocks of the resnet generator: 9 (at 256×256) or 6 (at
    # 128×128)
    norm_g: str = "batch"  # resnet generator's norm: batch (pix2pix) or instance (non-affine)
    upsample: str = "convtranspose"  # generator upsampling: convtranspose (the paper's) or resize
    # (nearest-neighbour ×2 then a 3×3 conv: no checkerboard artifacts)
    norm_d: str = "batch"  # discriminator norm: batch (the paper's), instance (non-affine) or none
    spectral_norm: bool = False  # spectral normalization of every discriminator conv (Miyato 2018)

    # --- objective and optimiser ---
    lambda_l1: float = 100.0  # weight λ of the L1 term: G loss = GAN + λ·L1
    gan_loss: str = "bce"  # bce (the paper's), lsgan, hinge, wgan-gp (Wasserstein critic + gradient
    # penalty; needs norm_d instance or none; --system wgan-gp also sets its Adam and n_critic)
    lambda_gp: float = 10.0  # wgan-gp: weight of the gradient penalty E[(‖∇D(x̂)‖₂ - 1)²]
    n_critic: int = 1  # D updates per G update, on the same batch and fake (WGAN-GP papers: 5)
    lambda_perceptual: float = 0.0  # weight of the VGG19 perceptual loss in G's loss (0 = off)
    vgg_weights: str = ""  # torchvision's vgg19 state dict file, needed when lambda_perceptual > 0
    lr: float = 2e-4  # Adam learning rate for both networks
    beta1: float = 0.5  # Adam β1
    beta2: float = 0.999  # Adam β2
    batch_size: int = 4  # images per step; the paper used 4 for edges2shoes, 1 for most sets
    epochs: int = 15  # total epochs; the paper trained edges2shoes for 15
    epochs_decay: int = 0  # of those, the last N decay the learning rate linearly to zero (0 = off)

    # --- several GPUs (torchrun) ---
    sync_bn: bool = False  # batch norm statistics over all processes' images (SyncBatchNorm), else
    # per GPU

    # --- run ---
    name: str = "edges2shoes"  # run name: checkpoints in models/<name>/, sample grids in
    # samples/<name>/
    models_dir: str = "models"  # where run folders with checkpoints and logs go
    samples_dir: str = "samples"  # where run folders with validation grids go
    resume: bool = False  # continue from models/<name>/last.pt if it exists
    overwrite: bool = False  # start a saved run over: its outputs deleted first (without this or
    # resume, a name whose folder holds a last.pt is refused; docs/training.md)
    seed: int = 0  # seeds weights, data order and dropout
    device: str = "auto"  # auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...
    precision: str = "auto"  # auto (bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU),
    # fp32, bf16, fp16
    channels_last: bool = True  # NHWC tensors on CUDA (faster convolutions); ignored on CPU
    compile: bool = False  # torch.compile G and D for the training step (slow first step, faster
    # after)
    compile_mode: str = "default"  # torch.compile mode: default, reduce-overhead (CUDA graphs: one
    # launch per captured graph, for the launch-bound small batches) or max-autotune
    log_every: int = 100  # steps between log lines; losses are only read from the GPU then
    save_every: int = 0  # steps between mid-epoch checkpoints (0 = only at the end of each epoch)
    n_samples: int = 8  # validation images in each epoch's sample grid
    val_images: int = 64  # fixed validation pairs scored each epoch (val L1, PSNR); the grid shows
    # n_samples

    def __post_init__(self):
        """Reject values that cannot work, with a message that names the field."""
        for field in dataclasses.fields(self):  # first: "64" must not reach the arithmetic below
            if field.type in TYPE_NAMES and not has_type(getattr(self, field.name), field.type):
                raise ValueError(f"config: {field.name} must be {TYPE_NAMES[field.type]}, got "
                                 f"{short_repr(getattr(self, field.name))}")
        # building more layers than this takes seconds even on the meta device (save.check_fits)
        for name, most in (("num_downs", MAX_NUM_DOWNS), ("resnet_blocks", MAX_RESNET_BLOCKS)):
            if getattr(self, name) > most:
                raise ValueError(f"config: {name} must be at most {most}, "
                                 f"got {getattr(self, name)}")
        if self.direction not in ("AtoB", "BtoA"):
            raise ValueError(f"config: direction must be AtoB or BtoA, got {self.direction!r}")
        if self.compile_mode not in ("default", "reduce-overhead", "max-autotune"):
            raise ValueError("config: compile_mode must be default, reduce-overhead or "
                             f"max-autotune, got {self.compile_mode!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError("config: precision must be auto, fp32, bf16 or fp16, got "
                             f"{self.precision!r}")
        choices = dict(generator=("unet", "resnet"), norm_g=("batch", "instance"),
                       upsample=("convtranspose", "resize"), norm_d=("batch", "instance", "none"),
                       gan_loss=("bce", "lsgan", "hinge", "wgan-gp"))
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"config: {name} must be one of {', '.join(allowed)}; "
                                 f"got {getattr(self, name)!r}")
        if self.generator == "unet" and self.image_size % 2**self.num_downs:
            raise ValueError(
                f"config: image_size {self.image_size} must be divisible by 2**num_downs = "
                f"{2**self.num_downs}")
        if self.generator == "resnet" and self.image_size % 4:
            raise ValueError(f"config: image_size {self.image_size} must be divisible by 4 "
                             "(resnet)")
        if self.generator == "unet" and self.norm_g != "batch":
            raise ValueError(f"config: norm_g {self.norm_g!r} is for generator resnet; unet uses "
                             "batch")
        if self.gan_loss == "wgan-gp" and self.norm_d == "batch":
            raise ValueError("config: gan_loss wgan-gp needs norm_d instance or none (the gradient "
                             "penalty is per sample; batch norm mixes samples); or use --system "
                             "wgan-gp")
        if not (self.lambda_gp >= 0 and self.lambda_perceptual >= 0):
            raise ValueError(f"config: need lambda_gp >= 0 and lambda_perceptual >= 0; got "
                             f"lambda_gp={self.lambda_gp}, "
                             f"lambda_perceptual={self.lambda_perceptual}")
        if self.lambda_perceptual > 0 and not self.vgg_weights:
            raise ValueError("config: lambda_perceptual > 0 needs vgg_weights, the path of "
                             "torchvision's vgg19 state dict (never downloaded)")
        if self.jitter and self.load_size < self.image_size:
            raise ValueError(f"config: load_size {self.load_size} is smaller than image_size "
                             f"{self.image_size}")
        if not 0 <= self.epochs_decay <= self.epochs:
            raise ValueError(f"config: epochs_decay {self.epochs_decay} must lie in [0, "
                             f"epochs={self.epochs}]")
        # also false for NaN
        if not (self.lr > 0 and self.lambda_l1 >= 0 and 0 <= self.dropout < 1):
            raise ValueError("config: need lr > 0, lambda_l1 >= 0, 0 <= dropout < 1; got "
                             f"lr={self.lr}, lambda_l1={self.lambda_l1}, dropout={self.dropout}")
        if self.dropout_blocks not in DROPOUT_BLOCKS:
            raise ValueError(f"config: dropout_blocks must be {' or '.join(DROPOUT_BLOCKS)}, "
                             f"got {self.dropout_blocks!r}")
        if self.sketch_aug and self.direction != "AtoB":
            raise ValueError("config: sketch_aug needs direction AtoB (it draws on the input edge "
                             "maps)")
        if not 0 <= self.sketch_aug_strength <= 2:  # beyond 2 the shoe could shrink to nothing
            raise ValueError(
                f"config: sketch_aug_strength must lie in [0, 2], got {self.sketch_aug_strength}")
        if not 0 < self.hint_p <= 1:
            raise ValueError(f"config: hint_p must lie in (0, 1], got {self.hint_p}")
        if not 0 <= self.hint_recolour <= 1:
            raise ValueError(f"config: hint_recolour must lie in [0, 1], got {self.hint_recolour}")
        if self.num_downs < 5:
            raise ValueError("config: num_downs must be at least 5 (C64-C128-C256-C512-C512), got "
                             f"{self.num_downs}")
        for name in ("batch_size", "epochs", "ngf", "ndf", "n_layers_d", "resnet_blocks",
                     "n_critic", "log_every", "n_samples", "val_images", "hint_max",
                     "hint_patch"):
            if getattr(self, name) < 1:
                raise ValueError(f"config: {name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Rebuild a config saved in a checkpoint; unknown keys mean another project's file."""
        if not isinstance(d, dict):
            raise ValueError(f"config: not a mapping of field names to values but a "
                             f"{type(d).__name__}")
        d = {k: v for k, v in d.items() if k not in RETIRED}
        if "hint_recolour" not in d:  # saved before recolouring existed: trained without it
            d["hint_recolour"] = 0.0
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)}, key=repr)
        if unknown:
            raise ValueError(f"config: unknown keys [{', '.join(map(short_repr, unknown))}]")
        return cls(**d)

    def __str__(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# The built-in demo: a small UNet at 128×128 on the synthetic shoes that `python -m tools.demo`
# draws into data/demo, sized so that `python train.py --demo` finishes on a 2-core CPU in a few
# minutes. Every other value is the paper's.
DEMO = dict(data_dir="data/demo", name="demo", image_size=128, num_downs=7, ngf=32, ndf=32,
            batch_size=4, epochs=5, num_workers=2, log_every=25, n_samples=8, val_images=16)


# Systems a user picks with `--system NAME` (train.py): each sets the fields below, and any flag
# given on the command line still wins. Every other field keeps its default, the paper's.
WGAN_GP = dict(gan_loss="wgan-gp", lambda_gp=10.0, n_critic=5, lr=1e-4, beta1=0.0, beta2=0.9,
               norm_d="none")
SYSTEMS = {
    "pix2pix": {},  # the paper: UNet-256, 70×70 PatchGAN with batch norm, BCE + 100·L1
    "lsgan": dict(gan_loss="lsgan"),  # least-squares GAN loss (Mao et al. 2017)
    "hinge": dict(gan_loss="hinge"),  # hinge loss (Lim & Ye 2017; Miyato et al. 2018)
    "resnet": dict(generator="resnet"),  # ResNet-9 generator, 11.4M parameters
    # Gulrajani et al. 2017: λ_gp 10, 5 critic steps per G step, Adam lr 1e-4, β (0, 0.9), no batch
    # norm.
    "wgan-gp": WGAN_GP,
    # The Keras sketch-to-photo system this repo grew from, at 128×128: WGAN-GP critic with spectral
    # norm, residual generator with resize upsampling (6 blocks, CycleGAN's choice at 128), VGG19
    # perceptual loss weighted 10 as in pix2pixHD; needs --vgg_weights.
    "sketch2photo": dict(WGAN_GP, spectral_norm=True, generator="resnet", resnet_blocks=6,
                         upsample="resize", lambda_perceptual=10.0, image_size=128),
}


def first_line(error: BaseException, limit: int = 120) -> str:
    """The first line of an error's message (its type's name if it has none), for one-line
    reports."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def pick_device(name: str) -> torch.device:
    """The device a config names; 'auto' means the GPU when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:1, ...") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU")
    return device


# what available_memory reads (tests point them at files of their own)
MEMINFO, PROC_CGROUP, CGROUP_ROOT = (Path("/proc/meminfo"), Path("/proc/self/cgroup"),
                                     Path("/sys/fs/cgroup"))


def available_memory():
    """Bytes this process can still allocate: Linux's MemAvailable, or less where a cgroup limit
    (a container's) along its path leaves less; free pages by sysconf elsewhere; None if unknown."""
    found = []
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)  # in kB
    except (OSError, ValueError, IndexError):
        pass
    found += cgroup_room()
    if not found:
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):  # not on this system
            return None
    return max(0, min(found))


def memory_short(nbytes: int):
    """The bytes available (available_memory) when nbytes would not fit in them, else None (None
    also where the machine does not say)."""
    available = available_memory()
    return available if available is not None and nbytes > available else None


def cgroup_room() -> list:
    """Limit minus usage of each cgroup memory limit from this process's cgroup up to the root (v2
    memory.max, v1 memory.limit_in_bytes); a level without a limit adds nothing."""
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:
        return []
    rooms = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            root, files = CGROUP_ROOT, ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            root, files = CGROUP_ROOT / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        folder = root / path.strip().lstrip("/")
        for level in (folder, *folder.parents):
            if not level.is_relative_to(root):
                break
            try:  # "max": no limit at this level
                rooms.append(int((level / files[0]).read_text()) -
                             int((level / files[1]).read_text()))
            except (OSError, ValueError):
                pass
    return rooms


def parse_bool(text: str) -> bool:
    """true/false, yes/no, on/off or 1/0: a boolean given as a value, as in a list of them to sweep
    (bench.py train --channels_last 0 1); a single boolean is a --x / --no-x flag instead."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# One voice across the command lines: flags are spelled like config fields (underscores), a boolean
# is --x / --no-x and never takes a value (so `--eval sketch.png` cannot swallow the file), and
# --device means the same everywhere.
SWITCH = dict(action=argparse.BooleanOptionalAction, default=False)
DEVICE_HELP = "auto (cuda if available, else cpu), cpu, cuda, cuda:1, ..."


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def parse_args(argv=None, description: str = "") -> Config:
    """Config from the command line: one --flag per field, plus --demo for the demo preset."""
    # --lambda must not mean --lambda_l1
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--demo", **SWITCH,
                        help="the demo preset: the synthetic shoes of python -m tools.demo, "
                             "128×128, 5 epochs")
    parser.add_argument("--system", choices=SYSTEMS, default="pix2pix",
                        help="a preset of model and loss fields (config.SYSTEMS); flags override "
                             "it")
    for field in dataclasses.fields(Config):
        if field.type is bool:
            parser.add_argument(f"--{field.name}", **{**SWITCH, "default": None},
                                help=f"default {field.default}")
        else:
            parser.add_argument(f"--{field.name}", type=field.type, default=None,
                                metavar=field.name.upper(), help=f"default {field.default}")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("demo", "system")
                 and v is not None}
    base = {**(DEMO if args.demo else {}), **SYSTEMS[args.system]}
    try:
        return Config(**{**base, **overrides})
    except ValueError as e:
        parser.error(str(e))
