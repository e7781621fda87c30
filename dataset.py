"""Paired images for pix2pix: each file holds the input and the target side by side (2N×N).

    from dataset import PairDataset
    data = PairDataset("data/edges2shoes/train", image_size=256, jitter=False)
    sketch, photo = data[0]   # two (3, 256, 256) float tensors in [-1, 1]

edges2shoes files are 256×512 JPEGs: edge map on the left (A), photo on the right (B). With
direction AtoB the left half is the model's input ("sketch") and the right its target ("photo").
"""

import random
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 64 * 1024 * 1024  # refuse larger images before decoding: a 2 KB PNG can claim 50 GB
MIN_SIDE = 16  # halves smaller than this are not images a UNet can use
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL's own bomb check, as a second line of defence


def list_images(folder) -> list:
    """Image files directly in folder, sorted; a clear error if there is no such folder or no image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTS))}) in this folder")
    return files


def check_header(path, pair: bool = True) -> str:
    """Read only the header; return what is wrong with the file, or '' if it looks usable."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the file's name
            with Image.open(path) as img:
                w, h = img.size
    except (OSError, Image.DecompressionBombError, ValueError) as e:
        return f"not a readable image ({type(e).__name__})"
    if w * h > MAX_PIXELS:
        return f"too large ({w}×{h}, more than {MAX_PIXELS} pixels)"
    if pair and w != 2 * h:
        return f"expected a side-by-side pair twice as wide as high, got {w}×{h}"
    if min(w // 2 if pair else w, h) < MIN_SIDE:
        return f"too small ({w}×{h})"
    return ""


def load_rgb(path) -> Image.Image:
    """Decode any common image as RGB; transparency becomes white, as on a sheet of paper."""
    problem = check_header(path, pair=False)
    if problem:
        raise ValueError(f"{path}: {problem}")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(white, rgba).convert("RGB")
            return img.convert("RGB")  # grayscale, CMYK, palette, 16-bit -> 8-bit RGB
    except (OSError, Image.DecompressionBombError, ValueError) as e:
        raise ValueError(f"{path}: cannot decode image ({e})") from None


def split_pair(img: Image.Image) -> tuple:
    """Left and right halves of a 2N×N image."""
    w, h = img.size
    return img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float in [-1, 1], the range of the generator's Tanh."""
    array = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> PIL RGB."""
    array = tensor.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte()
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy())


class PairDataset(torch.utils.data.Dataset):
    """Side-by-side pairs in a folder, split into (sketch, photo) tensors in [-1, 1]."""

    def __init__(self, folder, image_size: int = 256, load_size: int = 286, jitter: bool = False,
                 direction: str = "AtoB"):
        self.files = list_images(folder)
        bad = [(f, p) for f in self.files if (p := check_header(f))]
        if bad:
            shown = "; ".join(f"{f.name}: {p}" for f, p in bad[:3])
            more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
            raise ValueError(f"{folder}: {len(bad)} of {len(self.files)} files are not usable pairs: {shown}{more}")
        self.image_size, self.load_size, self.jitter = image_size, load_size, jitter
        self.swap = direction == "BtoA"
        self.skipped = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple:
        for offset in range(len(self.files)):
            path = self.files[(index + offset) % len(self.files)]
            try:
                return self.load(path)
            except ValueError as e:
                # A file that passed the header scan but fails to decode costs one sample, not the run.
                if path not in self.skipped:
                    self.skipped.add(path)
                    warnings.warn(f"skipping {e}", stacklevel=2)
        raise ValueError(f"no file in the data set could be decoded (first: {self.files[0]})")

    def load(self, path) -> tuple:
        """Decode one pair and apply the same resize, crop and flip to both halves."""
        left, right = split_pair(load_rgb(path))
        sketch, photo = (right, left) if self.swap else (left, right)
        size = self.load_size if self.jitter else self.image_size
        if sketch.size != (size, size):
            sketch = sketch.resize((size, size), Image.BICUBIC)
            photo = photo.resize((size, size), Image.BICUBIC)
        if self.jitter:  # one random crop and flip, shared, so the pair stays aligned pixel for pixel
            x, y = random.randint(0, size - self.image_size), random.randint(0, size - self.image_size)
            box = (x, y, x + self.image_size, y + self.image_size)
            sketch, photo = sketch.crop(box), photo.crop(box)
            if random.random() < 0.5:
                sketch, photo = ImageOps.mirror(sketch), ImageOps.mirror(photo)
        return to_tensor(sketch), to_tensor(photo)


class EpochSampler(torch.utils.data.Sampler):
    """A fresh shuffle each epoch that depends only on (seed, epoch), so a resumed run can skip
    exactly the batches it already trained on and see the same order as an uninterrupted one."""

    def __init__(self, n: int, seed: int, epoch: int = 0, start: int = 0):
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        return iter(order[self.start:].tolist())

    def __len__(self) -> int:
        return self.n - self.start
