"""Checkpoints and validation sample grids.

A checkpoint is a plain dict of tensors and numbers, written atomically and loaded with
weights_only=True, so a crash never leaves half a file and a hostile file cannot run code:
    {generator, discriminator, opt_g, opt_d, scaler, epoch, batch, step, rng, config}
`batch` is how many batches of `epoch` were done (0 for a checkpoint at an epoch boundary); `rng` holds
the random generators' states, so that a resumed run draws the same dropout masks as an unbroken one.
generator.pt beside it holds {generator, config}: all that infer.py needs.
"""

import os
import random
import tempfile
from pathlib import Path

import torch
from PIL import Image

from config import Config
from dataset import to_image
from generator import UNetGenerator

CHECKPOINT_KEYS = ("generator", "discriminator", "opt_g", "opt_d", "scaler", "epoch", "batch", "step", "rng", "config")


def atomic_write(path, write) -> None:
    """write(file) into a temporary file in the same folder, fsync, then rename it over path: readers see
    the old file or the new one, never a partial write (a full disk or a kill included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj, path) -> None:
    """torch.save, atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(path, *, generator, discriminator, opt_g, opt_d, scaler, epoch: int, batch: int, step: int,
                    config: Config) -> None:
    """Everything needed to resume, of the unwrapped modules, plus generator.pt for inference."""
    generator_state = generator.state_dict()
    if not all(torch.isfinite(t).all() for t in generator_state.values() if t.is_floating_point()):
        raise FloatingPointError(f"not saving {path}: the generator has NaN or Inf weights at step {step}")
    atomic_save({"generator": generator_state, "discriminator": discriminator.state_dict(),
                 "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "scaler": scaler.state_dict(),
                 "epoch": epoch, "batch": batch, "step": step, "rng": rng_state(next(generator.parameters()).device), "config": config.to_dict()}, path)
    atomic_save({"generator": generator_state, "config": config.to_dict(), "step": step},
                Path(path).parent / "generator.pt")


def rng_state(device: torch.device) -> dict:
    """States of torch's CPU generator, the training GPU's generator and Python's random (the jitter)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0, dtype=torch.uint8)
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "cuda": cuda}


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if device.type == "cuda" and state["cuda"].numel():  # a CPU checkpoint resumed on a GPU keeps its seed
        torch.cuda.set_rng_state(state["cuda"], device)


def load_checkpoint(path, keys=("generator", "config")) -> dict:
    """Load a checkpoint safely; any problem becomes one ValueError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, random bytes, or a pickle that wants to run code
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a loadable checkpoint (truncated, corrupt or unsafe): {reason}") from None
    missing = [k for k in keys if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a pix2pix checkpoint of this project (missing {', '.join(missing)})")
    try:
        ckpt["config"] = Config.from_dict(ckpt["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: checkpoint config is not compatible: {e}") from None
    return ckpt


def build_generator(cfg: Config) -> UNetGenerator:
    """The generator a config describes; the one place that maps config fields to its arguments."""
    return UNetGenerator(in_ch=3, out_ch=3, ngf=cfg.ngf, num_downs=cfg.num_downs, dropout=cfg.dropout)


def load_generator(path) -> tuple:
    """Rebuild the generator from a checkpoint alone; returns (generator on CPU, config)."""
    ckpt = load_checkpoint(path)
    generator = build_generator(ckpt["config"])
    try:
        generator.load_state_dict(ckpt["generator"])
    except RuntimeError as e:
        raise ValueError(f"{path}: generator weights do not match its config ({str(e).splitlines()[0]})") from None
    return generator, ckpt["config"]


def save_grid(path, sketch: torch.Tensor, fake_photo: torch.Tensor, photo: torch.Tensor) -> None:
    """One row per image: sketch | generated | real, as a PNG."""
    rows = torch.stack([sketch, fake_photo, photo], dim=1).flatten(0, 1).float().cpu()  # (3B, 3, H, W)
    b, h, w = sketch.shape[0], sketch.shape[2], sketch.shape[3]
    grid = Image.new("RGB", (3 * w + 4 * 2, b * h + (b + 1) * 2), "white")  # 2-pixel white gutters
    for k, image in enumerate(rows):
        row, col = divmod(k, 3)
        grid.paste(to_image(image), (2 + col * (w + 2), 2 + row * (h + 2)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
