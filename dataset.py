"""Paired images for pix2pix: each file holds the input and the target side by side (2N×N).

    from dataset import PairDataset
    data = PairDataset("data/edges2shoes/train", image_size=256, jitter=False)
    sketch, photo = data[0]   # two (3, 256, 256) float tensors in [-1, 1]

edges2shoes files are 256×512 JPEGs: edge map on the left (A), photo on the right (B). With
direction AtoB the left half is the model's input ("sketch") and the right its target ("photo").

Data tools, one command each (add --help to any of them for its options):
    python dataset.py download edges2shoes                  # official set -> data/edges2shoes/{train,val}
    python dataset.py pairs my_photos/ data/my_shoes        # product photos -> edge map | photo pairs
    python dataset.py combine sketches/ photos/ data/mine   # A/x.png + B/x.jpg -> mine/x.png, A left, B right
    python dataset.py check data/edges2shoes                # files per split, sizes, bad files (headers only)
"""

import argparse
import http.client
import math
import random
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from config import pick_device
from edges import sketch_pixels

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 64 * 1024 * 1024  # refuse larger images before decoding: a 2 KB PNG can claim 50 GB
MIN_SIDE = 16  # halves smaller than this are not images a UNet can use
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL's own bomb check, as a second line of defence
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")  # decoders PIL may use: no EPS (Ghostscript), no exotic parsers
SCAN_BAR_MIN_FILES = 2000  # header scans of smaller folders take about a second: no progress bar


def image_files(folder) -> list:
    """Image files directly in folder, sorted (an empty list if there are none)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def list_images(folder) -> list:
    """Image files directly in folder, sorted; a clear error if there is no such folder or no image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = image_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTS))}) in this folder")
    return files


def read_header(path, pair: bool = True) -> tuple:
    """((width, height) or None, what is wrong with the file or ''), reading only the header."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the file's name
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


def check_header(path, pair: bool = True) -> str:
    """Read only the header; return what is wrong with the file, or '' if it looks usable."""
    return read_header(path, pair)[1]


def scan_headers(files, pair: bool = True, desc: str = "checking headers", bar_min_files: int = None) -> list:
    """[(path, size or None, problem or '')] for each file, headers only; a tqdm bar above bar_min_files files."""
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
    problem = check_header(path, pair=False)
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
                 direction: str = "AtoB", skip_bad: bool = False):
        self.files = list_images(folder)
        bad = [(path, problem) for path, _, problem in scan_headers(self.files, desc=f"checking {folder}") if problem]
        if bad and (not skip_bad or len(bad) == len(self.files)):
            hint = "none is usable" if skip_bad else "fix or remove them, or set skip_bad to train without them"
            raise ValueError(f"{folder}: {describe_bad(bad, len(self.files))}; {hint} "
                             f"(python dataset.py check {folder} lists them all)")
        if bad:
            warnings.warn(f"{folder}: skipping {describe_bad(bad, len(self.files))}", stacklevel=2)
            dropped = {path for path, _ in bad}
            self.files = [path for path in self.files if path not in dropped]
        self.skipped_files = bad  # (path, reason) of files the header scan dropped (with skip_bad)
        self.image_size, self.load_size, self.jitter = image_size, load_size, jitter
        self.swap = direction == "BtoA"
        self.skipped = set()  # files that passed the scan but failed to decode later

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
    exactly the batches it already trained on and see the same order as an uninterrupted one.
    Under DDP each of world_size processes takes every world_size-th index of the shuffle, padded by
    wrapping around so that all take the same number of steps (as DistributedSampler does)."""

    def __init__(self, n: int, seed: int, epoch: int = 0, start: int = 0, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.rank, self.world_size = rank, world_size
        self.per_rank = math.ceil(n / world_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        order = order.repeat(math.ceil(self.per_rank * self.world_size / self.n))[:self.per_rank * self.world_size]
        return iter(order[self.rank::self.world_size][self.start:].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start


# ---------------------------------------------------------------- data tools: python dataset.py COMMAND

DATASETS = ("edges2shoes", "edges2handbags", "facades", "maps", "cityscapes", "night2day")  # the official sets
URL_BASE = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"  # serves NAME.tar.gz, each with a top folder NAME/
TIMEOUT_S = 30  # seconds a connect or a read may stall before the download stops (it resumes on the next run)
CHUNK_BYTES = 1 << 20  # download read size
SPLITS = ("train", "val", "test")
WHITE = (255, 255, 255)


def split_folders(folder) -> dict:
    """{split: path} for the train/ val/ test/ subfolders present, else {folder name: folder} itself."""
    folder = Path(folder)
    return {split: folder / split for split in SPLITS if (folder / split).is_dir()} or {folder.name: folder}


def train_val_folders(data_dir) -> tuple:
    """(train, val) folders of a data set: its train/ and val/ (or test/), or the folder itself for both."""
    splits = split_folders(data_dir)
    train = splits.get("train", Path(data_dir))
    return train, splits.get("val", splits.get("test", train))


def split_counts(folder) -> str:
    """'train 49825 pairs, val 200 pairs' for a data folder."""
    return ", ".join(f"{split} {len(image_files(path))} pairs" for split, path in split_folders(folder).items())


def first_names(paths, shown: int = 5) -> str:
    """'a.jpg, b.png, c.jpg (and 7 more)': a short list for a one-line report."""
    names = [Path(path).name for path in paths]
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def fetch(url: str, archive: Path, timeout_s: float = TIMEOUT_S) -> None:
    """Stream url to archive with a progress bar, resuming archive.part where an earlier attempt stopped."""
    part = archive.with_name(archive.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the .part already holds it all (unpack verifies that)
            part.replace(archive)
            return
        raise OSError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise OSError(f"cannot download {url}: {getattr(e, 'reason', e)}") from None
    with response:
        resumed = response.status == 206  # a 200 (or a file:// URL) sends the whole file: start over
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            raise OSError(f"{url}: the server resumed at another byte than {have} asked for; delete {part}")
        have = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        try:
            with open(part, "ab" if resumed else "wb") as out, \
                    tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=f"downloading {archive.name}") as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as e:  # timeouts, resets, a connection cut mid-body
            raise OSError(f"download of {url} interrupted ({type(e).__name__}: {e}); "
                          f"run the command again to resume from {part}") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise OSError(f"download of {url} stopped after {size} of {total} bytes; "
                      f"run the command again to resume from {part}")
    part.replace(archive)


def unsafe_member(member: tarfile.TarInfo) -> str:
    """Why extracting this archive member could write outside the target folder ('' if it cannot)."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        return f"{member.name!r} has an absolute path or '..'"
    if not (member.isfile() or member.isdir()):
        return f"{member.name!r} is a link or special file"  # the data sets hold only files and folders
    return ""


def unpack(archive: Path, target: Path) -> None:
    """Verify a .tar.gz, then extract it into target: all of it, or on any error nothing at all."""
    staging = target.with_name(f".{target.name}.unpacking")  # renamed to target only once complete
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = tar.getmembers()  # reads to the end: a truncated or corrupt archive fails here
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise ValueError(f"{archive}: not a valid .tar.gz archive ({type(e).__name__}: {e})") from None
        problems = [problem for member in members if (problem := unsafe_member(member))]
        if problems:
            raise ValueError(f"{archive}: refusing to extract, {len(problems)} unsafe members: {problems[0]}")
        # the data filter (Python 3.12, backported to 3.8.17+) repeats those checks inside tarfile
        options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        with tarfile.open(archive, "r:gz") as tar:
            for member in tqdm(members, desc=f"extracting {archive.name}", unit="file"):
                tar.extract(member, staging, **options)
        top = list(staging.iterdir()) if staging.is_dir() else []
        if not top:
            raise ValueError(f"{archive}: the archive is empty")
        # the official archives hold one top folder NAME/ with train/ val/ inside
        single_folder = len(top) == 1 and top[0].is_dir() and top[0].name not in SPLITS
        (top[0] if single_folder else staging).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(name: str, root="data", url_base: str = URL_BASE, keep_archive: bool = False,
             timeout_s: float = TIMEOUT_S) -> Path:
    """Download, verify and extract an official pix2pix data set into root/name; returns that folder."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; the official ones are {', '.join(DATASETS)}")
    root = Path(root)
    target = root / name
    if target.is_dir() and any(target.iterdir()):  # extraction renames a complete folder into place
        print(f"{target} already exists ({split_counts(target)}); delete it to download again")
        return target
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{name}.tar.gz"
    if not archive.exists():  # a complete archive kept from an earlier run is used as it is
        fetch(f"{url_base.rstrip('/')}/{name}.tar.gz", archive, timeout_s)
    try:
        unpack(archive, target)
    except ValueError as e:
        archive.unlink()  # a broken archive would fail the same way next time
        raise ValueError(f"{e}; deleted it, run the command again to download it afresh") from None
    if not keep_archive:
        archive.unlink()
    print(f"{name}: {split_counts(target)} in {target}" + (f" (archive kept: {archive})" if keep_archive else ""))
    return target


def by_stem(folder) -> dict:
    """{stem: path} of the images in folder; an error if two share a stem (x.jpg and x.png)."""
    files = list_images(folder)
    shared = sorted(stem for stem, n in Counter(path.stem for path in files).items() if n > 1)
    if shared:
        raise ValueError(f"{folder}: several images share the name {shared[0]!r} (different extensions), "
                         f"so outputs would collide; rename them ({len(shared)} such names)")
    return {path.stem: path for path in files}


def square_on_white(photo: Image.Image, size: int) -> Image.Image:
    """Centre a photo on a white square and resize it to size×size: product photos are shot on white."""
    side = max(photo.size)
    square = Image.new("RGB", (side, side), WHITE)
    square.paste(photo, ((side - photo.width) // 2, (side - photo.height) // 2))
    return square.resize((size, size), Image.LANCZOS) if side != size else square


def side_by_side(left: np.ndarray, right: np.ndarray) -> Image.Image:
    """Two (H, W, 3) uint8 arrays -> one (H, 2W) RGB image, left then right."""
    return Image.fromarray(np.concatenate([left, right], axis=1))


def photos_to_pairs(photos_dir, out_dir, size: int = 256, val_fraction: float = 0.0, seed: int = 0,
                    batch: int = 32, device: str = "auto") -> dict:
    """Product photos -> edges2shoes-style out_dir/{train,val}/NAME_AB.jpg: edge map left, photo right."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"--val-fraction must lie in [0, 1), got {val_fraction}")
    if size < MIN_SIDE or batch < 1:
        raise ValueError(f"need --size >= {MIN_SIDE} and --batch >= 1, got {size} and {batch}")
    photos = list(by_stem(photos_dir).values())
    shuffled = random.Random(seed).sample(photos, len(photos))  # the split depends only on names and seed
    n_val = round(len(photos) * val_fraction)
    split_of = {path: "val" if rank < n_val else "train" for rank, path in enumerate(shuffled)}
    device, out_dir = pick_device(device), Path(out_dir)
    for split in set(split_of.values()):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    written, skipped = Counter(), []
    with tqdm(total=len(photos), desc=f"pairs -> {out_dir}", unit="photo") as bar:
        for start in range(0, len(photos), batch):
            loaded = []
            for path in photos[start:start + batch]:
                try:
                    loaded.append((path, np.asarray(square_on_white(load_rgb(path), size))))
                except ValueError as e:
                    skipped.append((path, str(e)))
            if loaded:
                squares = torch.from_numpy(np.stack([square for _, square in loaded])).to(device)  # (B, S, S, 3)
                sketches = sketch_pixels(squares)  # (B, S, S, 3)
                for (path, square), sketch in zip(loaded, sketches):
                    side_by_side(sketch, square).save(out_dir / split_of[path] / f"{path.stem}_AB.jpg", quality=95)
                    written[split_of[path]] += 1
            bar.update(min(batch, len(photos) - start))
    print(f"{written['train']} train and {written['val']} val pairs ({size}×{size} halves, photos padded to square "
          f"on white) in {out_dir}; {len(skipped)} unreadable files skipped"
          + (f": {first_names([path for path, _ in skipped])}" if skipped else ""))
    return {"train": written["train"], "val": written["val"], "skipped": skipped}


def combine(a_dir, b_dir, out_dir) -> dict:
    """Pair images of two folders by name into out_dir/NAME (A's file name): A left, B right at A's size."""
    a_files, b_files = by_stem(a_dir), by_stem(b_dir)
    matched = sorted(a_files.keys() & b_files.keys())
    only_a = [a_files[stem] for stem in sorted(a_files.keys() - b_files.keys())]
    only_b = [b_files[stem] for stem in sorted(b_files.keys() - a_files.keys())]
    if not matched:
        raise ValueError(f"no image names in common between {a_dir} ({len(a_files)} images) "
                         f"and {b_dir} ({len(b_files)} images)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped, not_square = 0, [], 0
    for stem in tqdm(matched, desc=f"combine -> {out_dir}", unit="pair"):
        try:
            a, b = load_rgb(a_files[stem]), load_rgb(b_files[stem])
        except ValueError as e:
            skipped.append((a_files[stem], str(e)))
            continue
        if b.size != a.size:
            b = b.resize(a.size, Image.BICUBIC)
        side_by_side(np.asarray(a), np.asarray(b)).save(out_dir / a_files[stem].name, quality=95)
        written += 1
        not_square += a.width != a.height
    print(f"{written} pairs in {out_dir}; {len(only_a)} only in {a_dir}"
          + (f" ({first_names(only_a)})" if only_a else "") + f", {len(only_b)} only in {b_dir}"
          + (f" ({first_names(only_b)})" if only_b else "") + f"; {len(skipped)} unreadable skipped"
          + (f" ({skipped[0][1]})" if skipped else ""))
    if not_square:
        print(f"note: {not_square} pairs have non-square halves; PairDataset needs pairs twice as wide as high")
    return {"written": written, "only_a": only_a, "only_b": only_b, "skipped": skipped}


def check(folder) -> dict:
    """Header scan of a data folder (its train/ val/ test/ or itself): counts, sizes seen, bad files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = {split: image_files(path) for split, path in split_folders(folder).items()}
    everything = [path for split_files in files.values() for path in split_files]
    if not everything:
        raise FileNotFoundError(f"{folder}: no images in it or in its {'/ '.join(SPLITS)}/ folders")
    results = scan_headers(everything, desc=f"checking {folder}", bar_min_files=0)
    sizes = Counter(size for _, size, _ in results if size)
    bad = [(path, problem) for path, _, problem in results if problem]
    print(f"{folder}: " + ", ".join(f"{split} {len(split_files)} files" for split, split_files in files.items()))
    print("sizes (width×height): " + ", ".join(f"{w}×{h}: {n}" for (w, h), n in sizes.most_common(10))
          + (f" (and {len(sizes) - 10} other sizes)" if len(sizes) > 10 else ""))
    print(f"{len(bad)} bad files" + (":" if bad else ""))
    for path, problem in bad:
        print(f"  {path.relative_to(folder)}: {problem}")
    return {"counts": {split: len(split_files) for split, split_files in files.items()}, "sizes": sizes, "bad": bad}


def main(argv=None) -> int:
    """Command line of the data tools; an error is one line on stderr and exit code 2."""
    parser = argparse.ArgumentParser(prog="dataset.py", description="Data tools for pix2pix pairs.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    options = dict(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    get = commands.add_parser("download", help="fetch an official pix2pix data set", **options)
    get.add_argument("name", help=f"one of {', '.join(DATASETS)}")
    get.add_argument("--root", default="data", help="folder that receives NAME/")
    get.add_argument("--url-base", default=URL_BASE, help="where NAME.tar.gz is served (http(s):// or file://)")
    get.add_argument("--keep-archive", action="store_true", help="keep ROOT/NAME.tar.gz after extracting it")
    pairs = commands.add_parser("pairs", help="product photos -> edge map | photo pairs", **options)
    pairs.add_argument("photos_dir")
    pairs.add_argument("out_dir")
    pairs.add_argument("--size", type=int, default=256, help="side of each half, in pixels")
    pairs.add_argument("--val-fraction", type=float, default=0.0, help="share of photos put in OUT_DIR/val")
    pairs.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    pairs.add_argument("--batch", type=int, default=32, help="photos per edge-extraction call")
    pairs.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    join = commands.add_parser("combine", help="A and B images matched by name -> AB pairs", **options)
    join.add_argument("a_dir", help="left halves (the model's input with direction AtoB)")
    join.add_argument("b_dir", help="right halves, resized to A's size where they differ")
    join.add_argument("out_dir")
    scan = commands.add_parser("check", help="counts, sizes and bad files of a data folder", **options)
    scan.add_argument("folder")
    scan.add_argument("--skip-bad", action="store_true", help="exit 0 even if there are bad files")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            download(args.name, args.root, args.url_base, args.keep_archive)
        elif args.command == "pairs":
            photos_to_pairs(args.photos_dir, args.out_dir, args.size, args.val_fraction, args.seed, args.batch,
                            args.device)
        elif args.command == "combine":
            combine(args.a_dir, args.b_dir, args.out_dir)
        else:
            bad = check(args.folder)["bad"]
            if bad and not args.skip_bad:
                raise ValueError(f"{len(bad)} bad files in {args.folder} (listed above); "
                                 f"remove them, or pass --skip-bad")
    except (OSError, ValueError) as e:
        print(f"dataset.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dataset.py: interrupted (a download resumes where it stopped on the next run)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
