"""Paired images for pix2pix: each file holds the input and the target side by side (2N×N).

    from dataset import PairDataset
    data = PairDataset("data/edges2shoes/train", image_size=256, jitter=False)
    sketch, photo = data[0]   # two (3, 256, 256) float tensors in [-1, 1]
    pixels = PairDataset("data/edges2shoes/train", uint8=True)[0]   # uint8, 4× less to move;
    sketch = to_float(pixels[0].to("cuda"))                          # converted where it is used

edges2shoes files are 256×512 JPEGs: edge map on the left (A), photo on the right (B). With
direction AtoB the left half is the model's input ("sketch") and the right its target ("photo").

Getting, making and checking data sets is tools/data.py's work (python -m tools.data --help).
"""

import math
import random
import signal
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from tqdm import tqdm

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 64 * 1024 * 1024  # refuse larger images before decoding: a 2 KB PNG can claim 50 GB
MIN_SIDE = 16  # halves smaller than this are not images a UNet can use
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL's own bomb check, as a second line of defence
# Decoders PIL may use: no EPS (Ghostscript), no exotic parsers.
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")
EPOCH_SEED_STRIDE = 100_003  # shuffle seed = seed × this + epoch: a prime above any epoch count,
# so that no two (seed, epoch) pairs share a shuffle
SCAN_BAR_MIN_FILES = 2000  # header scans of smaller folders take about a second: no progress bar


def list_images(folder, required: bool = True) -> list:
    """Image files directly in folder, sorted. required: a clear error if there is no such folder or
    no image (else an empty list)."""
    folder = Path(folder)
    if not folder.is_dir():
        if required:
            raise FileNotFoundError(f"{folder}: no such folder")
        return []
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if required and not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTS))}) in this "
                                "folder")
    return files


def read_header(path, pair: bool = True) -> tuple:
    """((width, height) or None, what is wrong with the file or ''), reading only the header."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)"
        with warnings.catch_warnings():
            # refused below, with the file's name
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as img:
                w, h = img.size
    except Image.DecompressionBombError:  # PIL refuses outright above twice its limit
        return None, f"too large (more than {2 * MAX_PIXELS} pixels)"
    except (OSError, ValueError) as e:
        return None, f"not a readable image ({type(e).__name__})"
    if w * h > MAX_PIXELS:
        return (w, h), f"too large ({w}×{h}, more than {MAX_PIXELS} pixels)"
    if pair and w != 2 * h:
        return (w, h), f"expected a side-by-side pair twice as wide as high, got {w}×{h}"
    if min(w // 2 if pair else w, h) < MIN_SIDE:
        return (w, h), f"too small ({w}×{h})"
    return (w, h), ""


def scan_headers(files, pair: bool = True, desc: str = "checking headers",
                 bar_min_files: int = None) -> list:
    """[(path, size or None, problem or '')] for each file, headers only; a tqdm bar above
    bar_min_files files."""
    bar_min_files = SCAN_BAR_MIN_FILES if bar_min_files is None else bar_min_files
    files = tqdm(files, desc=desc, unit="file", leave=False, disable=len(files) <= bar_min_files)
    return [(path, *read_header(path, pair)) for path in files]


def describe_bad(bad, n_files: int, shown: int = 3) -> str:
    """'2 of 10 files are not usable pairs: a.jpg: why; b.png: why', naming the first few."""
    named = "; ".join(f"{Path(path).name}: {problem}" for path, problem in bad[:shown])
    more = f" (and {len(bad) - shown} more)" if len(bad) > shown else ""
    return f"{len(bad)} of {n_files} files are not usable pairs: {named}{more}"


def load_rgb(path) -> Image.Image:
    """Decode any common image as RGB; transparency becomes white, as on a sheet of paper."""
    problem = read_header(path, pair=False)[1]
    if problem:
        raise ValueError(f"{path}: {problem}")
    try:
        with Image.open(path, formats=FORMATS) as img:
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


def to_uint8(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) uint8 pixels."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (3, H, W) or a batch (B, 3, H, W), on any device -> float in [-1, 1], the range
    of the generator's Tanh. Training converts whole batches on the GPU: workers hand over uint8."""
    return pixels.float().div_(127.5).sub_(1.0)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float in [-1, 1]."""
    return to_float(to_uint8(img))


def square_region(width: int, height: int) -> tuple:
    """(left, top, side, side): the white square that centres a width×height image, in the image's
    pixels (left and top are 0 or negative)."""
    side = max(width, height)
    return -round((side - width) / 2), -round((side - height) / 2), side, side


def pad_to_square(img: Image.Image, size: int = 0, resample=Image.BICUBIC) -> Image.Image:
    """img centred on a white square (where ImageOps.pad centres it), then resized to size×size
    (size 0: not resized). Sketches and product photos are both drawn or shot on white."""
    left, top, side, _ = square_region(*img.size)
    if img.size != (side, side):
        square = Image.new(img.mode, (side, side), "white")
        square.paste(img, (-left, -top))
        img = square
    return img.resize((size, size), resample) if size and size != side else img


def to_image(tensor: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> PIL RGB."""
    array = tensor.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte()
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy())


class PairDataset(torch.utils.data.Dataset):
    """Side-by-side pairs in a folder, split into (sketch, photo) tensors in [-1, 1]; with
    uint8=True into uint8 pixels instead (a quarter of the bytes through the loader's shared
    memory), which to_float converts where they are used."""

    def __init__(self, folder, image_size: int = 256, load_size: int = 286, jitter: bool = False,
                 direction: str = "AtoB", skip_bad: bool = False, uint8: bool = False):
        self.files = list_images(folder)
        scanned = scan_headers(self.files, desc=f"checking {folder}")
        bad = [(path, problem) for path, _, problem in scanned if problem]
        if bad and (not skip_bad or len(bad) == len(self.files)):
            hint = "none is usable" if skip_bad \
                else "fix or remove them, or set skip_bad to train without them"
            raise ValueError(f"{folder}: {describe_bad(bad, len(self.files))}; {hint} "
                             f"(python -m tools.data check {folder} lists them all)")
        if bad:
            warnings.warn(f"{folder}: skipping {describe_bad(bad, len(self.files))}", stacklevel=2)
            dropped = {path for path, _ in bad}
            self.files = [path for path in self.files if path not in dropped]
        self.skipped_files = bad  # (path, reason) of files the header scan dropped (with skip_bad)
        self.image_size, self.load_size, self.jitter = image_size, load_size, jitter
        self.swap = direction == "BtoA"
        self.convert = to_uint8 if uint8 else to_tensor
        self.skipped = set()  # files that passed the scan but failed to decode later

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple:
        for offset in range(len(self.files)):
            path = self.files[(index + offset) % len(self.files)]
            try:
                return self.load(path)
            except ValueError as e:
                # A file that passed the header scan but fails to decode costs a sample, not a run.
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
        if self.jitter:  # one random crop and flip, shared: the pair stays aligned pixel for pixel
            x = random.randint(0, size - self.image_size)
            y = random.randint(0, size - self.image_size)
            box = (x, y, x + self.image_size, y + self.image_size)
            sketch, photo = sketch.crop(box), photo.crop(box)
            if random.random() < 0.5:
                sketch, photo = ImageOps.mirror(sketch), ImageOps.mirror(photo)
        return self.convert(sketch), self.convert(photo)


def ignore_signals(worker_id: int) -> None:
    """DataLoader worker_init_fn: Ctrl-C and SIGTERM sent to the whole process group (a terminal,
    torchrun's agent, SLURM) must not kill the workers; the main process decides when to stop, and
    shuts them down after its last step (a killed main process takes them along: torch watches
    it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class EpochSampler(torch.utils.data.Sampler):
    """A fresh shuffle each epoch that depends only on (seed, epoch), so a resumed run can skip
    exactly the batches it already trained on and see the same order as an uninterrupted one.
    Under DDP each of world_size processes takes every world_size-th index of the shuffle, padded by
    wrapping around so that all take the same number of steps (as DistributedSampler does)."""

    def __init__(self, n: int, seed: int, epoch: int = 0, start: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.rank, self.world_size = rank, world_size
        self.per_rank = math.ceil(n / world_size)

    def __iter__(self):
        shuffle = torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + self.epoch)
        total = self.per_rank * self.world_size
        order = torch.randperm(self.n, generator=shuffle).repeat(math.ceil(total / self.n))[:total]
        return iter(order[self.rank::self.world_size][self.start:].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start


SPLITS = ("train", "val", "test")


def split_folders(folder) -> dict:
    """{split: path} for the train/ val/ test/ subfolders present, else {folder name: folder}
    itself."""
    folder = Path(folder)
    return {split: folder / split for split in SPLITS
            if (folder / split).is_dir()} or {folder.name: folder}


def train_val_folders(data_dir) -> tuple:
    """(train, val) folders of a data set: its train/ and val/ (or test/), or the folder itself for
    both."""
    splits = split_folders(data_dir)
    train = splits.get("train", Path(data_dir))
    return train, splits.get("val", splits.get("test", train))


# ---------------------------------------------------------------------------------- sketch_aug

SKETCH_AUG = dict(width=2, wobble=0.03, drop=0.25, detail=8.0, shrink=0.5)  # ranges at strength 1


def sketch_augment(sketch: torch.Tensor, photo: torch.Tensor, generator: torch.Generator,
                   strength: float = 1.0, **ranges) -> tuple:
    """Edge maps -> plausible hand drawings, for a whole (B, 3, H, W) batch in [-1, 1] on its
    device.

    Each image draws its own amounts, up to these ranges (SKETCH_AUG times strength; keywords
    override them):
        width   strokes thicker by 0..width pixels at 256×256, in proportion at other sizes
        wobble  smooth displacement of the lines, up to this share of the image side
        drop    up to this share of the canvas whitened in low-frequency blobs: broken lines
        detail  ink pixels with fewer than this many ink pixels within 7 px removed (specks)
        shrink  the shoe scaled by 1-shrink..1 and moved anywhere inside the frame, photo alike
    The sketch comes out gray (3 equal channels); white stays white; the photo's margin is white.
    """
    r = {k: v * strength for k, v in {**SKETCH_AUG, **ranges}.items()}
    batch, _, height, width = sketch.shape
    device, dtype = sketch.device, photo.dtype

    def uniform(*shape):  # per-image amounts in [0, 1), from the run's generator
        return torch.rand(*shape, generator=generator, device=device)

    ink = (1 - sketch.float().mean(1, keepdim=True)) / 2  # (B, 1, H, W): 0 paper, 1 black

    # Size and place: one affine grid for sketch and photo, so the pair stays aligned.
    scale = 1 - r["shrink"] * uniform(batch)  # (B,) in (1-shrink, 1]
    offset = (1 / scale - 1)[:, None] * (2 * uniform(batch, 2) - 1)  # the shoe stays in the frame
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = 1 / scale, 1 / scale, offset
    grid = F.affine_grid(theta, (batch, 1, height, width), align_corners=False)
    ink = F.grid_sample(ink, grid, align_corners=False)  # zeros outside: no ink, white paper
    photo = F.grid_sample(photo.float() - 1, grid, align_corners=False) + 1  # outside: white
    ink = (2 * ink).clamp(0, 1)  # shrinking grays a thin line out; a pen stroke stays dark

    # Small details: ink pixels with little ink around them (specks, short dashes) are erased.
    around = F.avg_pool2d((ink > 0.25).float(), 15, stride=1, padding=7) * 225  # within 7 px
    ink = ink * (around >= r["detail"] * uniform(batch, 1, 1, 1))

    # Stroke width: each image's lines thickened by its own 0..most pixels (max-pool).
    most = int(round(r["width"] * height / 256))
    if most > 0:
        extra = (uniform(batch) * (most + 1)).long().clamp(max=most)  # (B,) in 0..most
        dilated = torch.stack([ink] + [
            F.max_pool2d(ink, 1 + k, stride=1, padding=(1 + k) // 2)[..., :height, :width]
            for k in range(1, most + 1)])  # (most + 1, B, 1, H, W)
        ink = dilated[extra, torch.arange(batch, device=device)]

    # Wobble: a smooth random displacement field (coarse plus finer noise), the sketch only.
    if r["wobble"] > 0:
        amount = r["wobble"] * 2 * uniform(batch, 1, 1, 1)  # normalized coordinates: 2 per side
        field = sum(weight * F.interpolate(2 * uniform(batch, 2, cells, cells) - 1, (height, width),
                                           mode="bicubic", align_corners=True)
                    for cells, weight in ((3, 1.0), (8, 0.35)))  # (B, 2, H, W)
        eye = torch.eye(2, 3, device=device).expand(batch, 2, 3)
        identity = F.affine_grid(eye, (batch, 1, height, width), align_corners=False)
        ink = F.grid_sample(ink, identity + amount * field.permute(0, 2, 3, 1), align_corners=False)

    # Broken and missing segments: whiten where blobby noise falls below a per-image quantile.
    if r["drop"] > 0:
        noise = F.interpolate(uniform(batch, 1, 16, 16), (height, width), mode="bilinear",
                              align_corners=False)
        cut = torch.quantile(noise.flatten(1), r["drop"] * uniform(batch), dim=1).diagonal()
        ink = ink * (noise >= cut[:, None, None, None])

    ink = (1.5 * ink).clamp(0, 1)  # darken what the wobble's resampling grayed
    sketch = (1 - 2 * ink).expand(-1, 3, -1, -1).contiguous()
    return sketch.to(dtype), photo.clamp(-1, 1).to(dtype)
