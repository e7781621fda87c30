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

import contextlib
import errno
import hashlib
import json
import math
import os
import random
import signal
import time
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
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
EXIF_ORIENTATION = 0x0112  # values 5..8 turn the image a quarter
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


@contextlib.contextmanager
def quiet_pil():
    """PIL's warnings about a file kept off the terminal (a corrupt EXIF block, and its bomb
    warning, which the pixel cap makes moot): a file is decoded, or refused in one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        yield


def read_header(path, pair: bool = True, min_side: int = MIN_SIDE) -> tuple:
    """((width, height) or None, what is wrong with the file or ''), reading only the header."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)"
        with quiet_pil(), Image.open(path, formats=FORMATS) as img:  # too large: refused below
            w, h = img.size
    except Image.DecompressionBombError:  # PIL refuses outright above twice its limit
        return None, f"too large (more than {2 * MAX_PIXELS} pixels)"
    except (OSError, ValueError) as e:
        return None, f"not a readable image ({type(e).__name__})"
    if w * h > MAX_PIXELS:
        return (w, h), f"too large ({w}×{h}, more than {MAX_PIXELS} pixels)"
    if pair and w != 2 * h:
        return (w, h), f"expected a side-by-side pair twice as wide as high, got {w}×{h}"
    if min(w // 2 if pair else w, h) < min_side:
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


def open_image(path, min_side: int = MIN_SIDE) -> Image.Image:
    """The one way an image someone gives is opened (a sketch, a hints file, a sketch pad upload, a
    data pair): its header checked first (read_header: one of FORMATS, at most MAX_PIXELS, sides
    of at least min_side), then opened by PIL, not yet decoded. ValueError 'path: problem'. Decode
    it under quiet_pil, through eight_bit."""
    problem = read_header(path, pair=False, min_side=min_side)[1]
    if problem:
        raise ValueError(f"{path}: {problem}")
    try:
        with quiet_pil():
            return Image.open(path, formats=FORMATS)
    except (OSError, ValueError) as e:  # changed since its header was read
        raise ValueError(f"{path}: not a readable image ({type(e).__name__})") from None


def eight_bit(img: Image.Image) -> Image.Image:
    """img with 8 bits a channel, other modes as they are: 16-bit grey (PIL's I;16 modes, and I,
    its mode for 16-bit grey TIFFs and older versions' PNGs) keeps its high byte, as PIL reads
    16-bit RGB PNGs (PIL's own conversion clips it: any grey above 255 of 65535 turned white), its
    transparent grey (tRNS) transparent. ValueError for float pixels and integers beyond 16 bits:
    they have no scale to read them by."""
    if img.mode == "F":
        raise ValueError("32-bit float pixels (mode F) have no 8-bit scale; save it with 8 or 16 "
                         "bits a channel")
    if img.mode != "I" and not img.mode.startswith("I;16"):
        return img
    if img.mode == "I":
        low, high = img.getextrema()
        if low < 0 or high > 65535:
            raise ValueError(f"32-bit integer pixels ({low} to {high}) go beyond 16 bits and have "
                             f"no 8-bit scale; save it with 8 or 16 bits a channel")
    values = np.asarray(img)
    grey = Image.fromarray((values >> 8).astype(np.uint8))
    transparent = img.info.get("transparency")
    if isinstance(transparent, int):
        alpha = np.where(values == transparent, 0, 255).astype(np.uint8)
        return Image.merge("LA", (grey, Image.fromarray(alpha)))
    return grey


def load_rgb(path) -> Image.Image:
    """Decode any common image as RGB; transparency becomes white, as on a sheet of paper."""
    return open_rgb(path)[0]


def open_rgb(path, max_side: int = 0) -> tuple:
    """(RGB image, (width, height) of the full image), decoded as load_rgb does. max_side > 0: a
    copy whose longer side is at most max_side instead, so that a 12-megapixel photo costs about
    what a small image costs: JPEGs decode at 1/2, 1/4 or 1/8 scale (almost free), then a box
    filter reduces by a whole factor."""
    img = open_image(path)
    try:
        with img, quiet_pil():
            size = img.size
            if img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                size = size[::-1]  # exif_transpose turns it a quarter
            factor = math.ceil(max(size) / max_side) if max_side else 1
            if factor > 1 and img.format == "JPEG":
                img.draft(img.mode, (math.ceil(img.width / factor), math.ceil(img.height / factor)))
            img = ImageOps.exif_transpose(img)
            img = eight_bit(img)
            if max_side and max(img.size) > max_side and img.mode in ("L", "LA", "RGB", "RGBA"):
                img = img.reduce(math.ceil(max(img.size) / max_side))  # before any conversion
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba)
            img = img.convert("RGB")  # grayscale, CMYK, palette -> 8-bit RGB
    except (OSError, Image.DecompressionBombError, ValueError) as e:
        raise ValueError(f"{path}: cannot decode image ({e})") from None
    if max_side and max(img.size) > max_side:
        img = img.reduce(math.ceil(max(img.size) / max_side))
    return img, size


def split_pair(img: Image.Image) -> tuple:
    """Left and right halves of a 2N×N image."""
    w, h = img.size
    return img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h))


def decode_pair(path, size: int) -> tuple:
    """(left, right) halves of a pair file, resized to size×size (bicubic) when they differ: all of
    the loading that does not depend on chance, so the decode-once cache stores exactly this."""
    left, right = split_pair(load_rgb(path))
    if left.size != (size, size):
        left, right = (half.resize((size, size), Image.Resampling.BICUBIC)
                       for half in (left, right))
    return left, right


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


def pad_to_square(img: Image.Image, size: int = 0,
                  resample=Image.Resampling.BICUBIC) -> Image.Image:
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
        self.folder = Path(folder)
        self.image_size, self.load_size, self.jitter = image_size, load_size, jitter
        self.decode_size = load_size if jitter else image_size  # the size before the random crop
        self.swap = direction == "BtoA"
        self.convert = to_uint8 if uint8 else to_tensor
        self.skipped = set()  # files that passed the scan but failed to decode later

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> tuple:
        """key: an index, or (index, x, y, flip) from EpochSampler: the crop's corner and whether to
        mirror, drawn in advance so that they do not depend on which worker loads the pair."""
        index, crop = (key[0], key[1:]) if isinstance(key, tuple) else (key, None)
        for offset in range(len(self.files)):
            path = self.files[(index + offset) % len(self.files)]
            try:
                return self.load(path, crop)
            except ValueError as e:
                # A file that passed the header scan but fails to decode costs a sample, not a run.
                if path not in self.skipped:
                    self.skipped.add(path)
                    warnings.warn(f"skipping {e}", stacklevel=2)
        raise ValueError(f"no file in the data set could be decoded (first: {self.files[0]})")

    def load(self, path, crop=None) -> tuple:
        """Decode one pair and apply the same resize, crop and flip to both halves; crop (x, y,
        flip) or, without it, drawn from Python's random."""
        left, right = decode_pair(path, self.decode_size)
        sketch, photo = (right, left) if self.swap else (left, right)
        if self.jitter:  # one crop and flip, shared: the pair stays aligned pixel for pixel
            room = self.decode_size - self.image_size
            x, y, flip = crop or (random.randint(0, room), random.randint(0, room),
                                  random.random() < 0.5)
            box = (x, y, x + self.image_size, y + self.image_size)
            sketch, photo = sketch.crop(box), photo.crop(box)
            if flip:
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
    wrapping around so that all take the same number of steps (as DistributedSampler does).
    With crop_room (jitter: load_size - image_size) it yields (index, x, y, flip) instead: the
    jitter of each place in the epoch's order, drawn here from the same (seed, epoch), so loader
    workers, the cache's device crop and a resumed run all apply the same one."""

    def __init__(self, n: int, seed: int, epoch: int = 0, start: int = 0, rank: int = 0,
                 world_size: int = 1, crop_room: int = None):
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.rank, self.world_size, self.crop_room = rank, world_size, crop_room
        self.per_rank = math.ceil(n / world_size)

    def __iter__(self):
        shuffle = torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + self.epoch)
        total = self.per_rank * self.world_size
        order = torch.randperm(self.n, generator=shuffle).repeat(math.ceil(total / self.n))[:total]
        mine = order[self.rank::self.world_size][self.start:].tolist()
        if self.crop_room is None:
            return iter(mine)
        # drawn after the shuffle, for every place of the epoch: the order stays what it was
        corners = torch.randint(0, self.crop_room + 1, (total, 2), generator=shuffle)
        flips = torch.randint(0, 2, (total, 1), generator=shuffle)
        crops = torch.cat([corners, flips], 1)[self.rank::self.world_size][self.start:]
        return iter((index, x, y, bool(flip)) for index, (x, y, flip) in zip(mine, crops.tolist()))

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


# ------------------------------------------------------------------------------ decode-once cache

CACHE_MAGIC = b"pix2pix uint8 pair cache v1\n"  # a cache file's first and last bytes
CACHE_DATA_OFFSET = 4096  # the pixels start on a page boundary, after the magic
CACHE_CHUNK = 32  # pairs per task of the parallel build and check: the progress bars' steps
CACHE_CHECK_BAR_BYTES = 2**30  # checking a smaller cache takes under a second: no progress bar


def cache_path(folder, size: int, cache_dir) -> Path:
    """cache_dir/<folder name>-<hash of its full path>-<size>px.u8: one file per folder and size."""
    folder = Path(folder).resolve()
    tag = hashlib.sha1(str(folder).encode()).hexdigest()[:8]
    return Path(cache_dir) / f"{folder.name}-{tag}-{size}px.u8"


def file_stamps(files) -> list:
    """[name, bytes, mtime_ns] of each file: what a cache is checked against."""
    return [[Path(path).name, (st := os.stat(path)).st_size, st.st_mtime_ns] for path in files]


def read_cache_footer(path: Path) -> dict:
    """The manifest of a cache file ({size, files, failed}); None when there is no file. A file
    that is not a cache, or one cut short, is a ValueError naming it: never used, never
    overwritten."""
    if not path.exists() and not path.is_symlink():
        return None
    foreign = (f"{path}: not a pix2pix cache file, in the place of one; move it away or choose "
               f"another --cache_dir")
    if not path.is_file():
        raise ValueError(foreign)
    with open(path, "rb") as f:
        if f.read(len(CACHE_MAGIC)) != CACHE_MAGIC:
            raise ValueError(foreign)
        file_bytes = f.seek(0, os.SEEK_END)
        tail = len(CACHE_MAGIC) + 8
        manifest = None
        if file_bytes >= CACHE_DATA_OFFSET + tail:
            f.seek(file_bytes - tail)
            footer_bytes, magic = int.from_bytes(f.read(8), "little"), f.read(len(CACHE_MAGIC))
            if magic == CACHE_MAGIC and footer_bytes <= file_bytes - CACHE_DATA_OFFSET - tail:
                f.seek(file_bytes - tail - footer_bytes)
                try:
                    manifest = json.loads(f.read(footer_bytes))
                except ValueError:
                    pass
    expected = None if manifest is None else (
        CACHE_DATA_OFFSET + len(manifest["files"]) * 6 * manifest["size"] ** 2 + footer_bytes
        + tail)
    if manifest is None or expected != file_bytes:
        raise ValueError(f"{path}: truncated or damaged cache ({file_bytes:,} bytes"
                         + ("" if expected is None else f", expected {expected:,}")
                         + "); delete it to rebuild")
    return manifest


def decode_into(tmp_path: str, size: int, jobs: list) -> tuple:
    """A build worker: decode (slot, path) pairs and write each one's pixels into its slot of the
    cache file. Returns ([(slot, why it failed)] for files that would not decode, [(slot, crc32 of
    its pixels)] for the others)."""
    failed, crcs, pair_bytes = [], [], 6 * size * size
    fd = os.open(tmp_path, os.O_WRONLY)
    try:
        for slot, path in jobs:
            try:
                halves = decode_pair(path, size)
            except ValueError as e:
                failed.append((slot, str(e)))
                continue
            pixels = np.stack([np.asarray(half, dtype=np.uint8) for half in halves]).tobytes()
            # pwrite, not a memmap: a full disk is an OSError here, not a SIGBUS
            if os.pwrite(fd, pixels, CACHE_DATA_OFFSET + slot * pair_bytes) != pair_bytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            crcs.append((slot, zlib.crc32(pixels)))
    finally:
        os.close(fd)
    return failed, crcs


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's or taskset's share), or every
    CPU where the OS does not say (macOS has no sched_getaffinity)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def remove_stale_builds(path: Path) -> None:
    """Delete the temporary files of builds whose process is gone (killed mid-build)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            os.kill(int(tmp.suffixes[-2].lstrip(".")), 0)
        except (ValueError, IndexError, ProcessLookupError):
            tmp.unlink(missing_ok=True)
        except PermissionError:  # another user's live process
            pass


def build_cache(path: Path, files: list, stamps: list, size: int, workers: int) -> float:
    """Decode every file once into path, in parallel with a progress bar; returns the seconds it
    took. Written under a temporary name and renamed when complete: a build that is killed, runs
    out of disk or fails leaves no cache behind."""
    start, n, pair_bytes = time.perf_counter(), len(files), 6 * size * size
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data_bytes = CACHE_DATA_OFFSET + n * pair_bytes
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, CACHE_MAGIC)
            try:  # claim the space now: a full disk fails here, not after an hour of decoding
                os.posix_fallocate(fd, 0, data_bytes)
            except AttributeError:  # macOS has no posix_fallocate: the space comes as it is written
                os.ftruncate(fd, data_bytes)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.ftruncate(fd, data_bytes)
        finally:
            os.close(fd)
        jobs = list(enumerate(files))
        chunks = [jobs[k:k + CACHE_CHUNK] for k in range(0, n, CACHE_CHUNK)]
        failed, crcs = [], [None] * n  # a pair that would not decode has no checksum
        # the workers leave Ctrl-C to this process, which cancels what they have not begun
        pool = ProcessPoolExecutor(max(1, workers), initializer=ignore_signals, initargs=(0,))
        try:
            with tqdm(total=n, desc=f"caching {path.name}", unit="pair", leave=False) as bar:
                futures = {pool.submit(decode_into, str(tmp), size, chunk): len(chunk)
                           for chunk in chunks}
                for future in as_completed(futures):
                    chunk_failed, chunk_crcs = future.result()
                    failed += chunk_failed
                    for slot, crc in chunk_crcs:
                        crcs[slot] = crc
                    bar.update(futures[future])
        finally:
            pool.shutdown(cancel_futures=True)
        if len(failed) == n:
            raise ValueError(f"{path.parent}: no file could be decoded (first: {failed[0][1]})")
        for _, problem in failed:
            warnings.warn(f"skipping {problem}", stacklevel=2)
        manifest = json.dumps({"size": size, "files": stamps,
                               "failed": sorted(slot for slot, _ in failed),
                               "crc32": crcs}).encode()
        with open(tmp, "r+b") as f:
            f.seek(data_bytes)
            f.write(manifest + len(manifest).to_bytes(8, "little") + CACHE_MAGIC)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see no cache or a whole one
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"{path}: no space left to build the cache (it needs "
                                        f"{data_bytes / 2**30:.1f} GiB); free some or choose "
                                        f"another --cache_dir") from None
        raise
    return time.perf_counter() - start


class PairCache:
    """The pairs of a PairDataset decoded once into a uint8 file under cache_dir, at the size before
    the random crop (image_size, or load_size with jitter), left and right halves as
    (N, 2, size, size, 3) pixels behind a small manifest: each file's name, bytes and modification
    time, and the crc32 of each pair's pixels. A cache that does not match the folder any more is
    rebuilt (build=False: refused); one whose pixels fail their checksums is refused (verify=False:
    not checked, when another open has just checked it); gather() reads a batch as slices, with no
    decoding."""

    def __init__(self, dataset: PairDataset, cache_dir, build: bool = True, workers: int = None,
                 verify: bool = True):
        self.size, self.image_size = dataset.decode_size, dataset.image_size
        self.swap = dataset.swap
        self.path = cache_path(dataset.folder, self.size, cache_dir)
        stamps = file_stamps(dataset.files)
        manifest = read_cache_footer(self.path)
        self.build_s = 0.0
        # a cache from before checksums counts as out of date
        if (manifest is None or manifest["files"] != stamps or manifest["size"] != self.size
                or "crc32" not in manifest):
            if not build:
                raise ValueError(f"{self.path}: missing or out of date for {dataset.folder}; "
                                 f"is cache_dir on a filesystem every process sees?")
            workers = workers or usable_cpus()
            self.build_s = build_cache(self.path, dataset.files, stamps, self.size, workers)
            manifest = read_cache_footer(self.path)
        n = len(stamps)
        # a plain ndarray on the mapping: slicing a np.memmap costs more than the copy
        self.pixels = np.asarray(np.memmap(self.path, np.uint8, "r", offset=CACHE_DATA_OFFSET,
                                           shape=(n, 2, self.size, self.size, 3)))
        self.verify_s = 0.0
        if verify and not self.build_s:  # a cache just built was checksummed as it was written
            start = time.perf_counter()
            self.verify(manifest["crc32"], [name for name, _, _ in stamps], workers)
            self.verify_s = time.perf_counter() - start
        # a pair that would not decode is replaced by the next one that did, as PairDataset does
        good = np.ones(n, bool)
        good[manifest["failed"]] = False
        ahead = np.flatnonzero(np.concatenate([good, good]))
        self.slots = ahead[np.searchsorted(ahead, np.arange(n))] % n

    def __len__(self) -> int:
        return len(self.slots)

    def verify(self, crcs: list, names: list, workers: int = None) -> None:
        """Refuse a cache damaged in place (same size, other bytes): every pair's crc32 against
        the manifest's, on all cores (zlib lets go of the GIL), in one ValueError naming the file.
        About 1.5 GB/s per core (bench loader: 'check at open')."""
        def bad_slots(slots):
            return [k for k in slots if crcs[k] is not None
                    and zlib.crc32(self.pixels[k]) != crcs[k]]
        n, workers = len(crcs), workers or usable_cpus()
        parts = [range(k, min(k + CACHE_CHUNK, n)) for k in range(0, n, CACHE_CHUNK)]
        bad = []
        with ThreadPoolExecutor(workers) as pool, tqdm(
                total=n, desc=f"checking {self.path.name}", unit="pair", leave=False,
                disable=self.pixels.nbytes < CACHE_CHECK_BAR_BYTES) as bar:
            for part, found in zip(parts, pool.map(bad_slots, parts)):
                bad += found
                bar.update(len(part))
        if bad:
            raise ValueError(f"{self.path}: damaged cache: {len(bad)} of {n} pairs fail their "
                             f"checksum (the first: {names[bad[0]]}); delete it to rebuild")

    def nbytes(self) -> int:
        return self.path.stat().st_size

    def gather(self, keys: list, pin: bool = False) -> tuple:
        """(pixels (B, 2, S, S, 3) uint8 on the host, indices of the rows to mirror) for a batch of
        EpochSampler keys: (index, x, y, flip) keys are cropped in the copy (numpy slices read no
        more bytes than the crop's); the mirroring is left to the device. pin: both into
        page-locked memory, for asynchronous copies to a GPU (from pageable memory a copy waits for
        the GPU: a host sync every batch)."""
        size, flips = self.image_size, []
        if not isinstance(keys[0], tuple):
            pixels = self.pixels[self.slots[keys]]  # np.take(out=...) measured 2-3x slower
        else:
            pixels = np.empty((len(keys), 2, size, size, 3), np.uint8)
            for row, (index, x, y, flip) in enumerate(keys):
                pixels[row] = self.pixels[self.slots[index], :, y:y + size, x:x + size]
                flips += [row] if flip else []
        batch, rows = torch.from_numpy(pixels), torch.tensor(flips, dtype=torch.long)
        if pin:
            batch, rows = batch.pin_memory(), rows.pin_memory() if len(rows) else rows
        return batch, rows

    def to_device(self, pixels: torch.Tensor, rows: torch.Tensor, device: torch.device) -> tuple:
        """Gathered pixels -> uint8 (sketch, photo) on the device, (B, 3, S, S) views each, the
        given rows mirrored there, all at once (a mirrored copy on the host is per pixel)."""
        pixels = pixels.to(device, non_blocking=True)
        if len(rows):
            rows = rows.to(device, non_blocking=True)
            pixels[rows] = pixels[rows].flip(3)  # (B, 2, S, S, 3): 3 is the width
        left, right = pixels[:, 0].permute(0, 3, 1, 2), pixels[:, 1].permute(0, 3, 1, 2)
        return (right, left) if self.swap else (left, right)


class CachedLoader:
    """What train.py iterates instead of a DataLoader with --cache: the sampler's batches (full ones
    only) as uint8 (sketch, photo) on the device, read from a PairCache (cropped as they are
    copied) by a thread one batch ahead of the training step, mirrored on the device."""

    def __init__(self, cache: PairCache, sampler: EpochSampler, batch_size: int,
                 device: torch.device):
        self.cache, self.sampler, self.batch_size, self.device = cache, sampler, batch_size, device

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self):
        keys, size, pin = list(self.sampler), self.batch_size, self.device.type == "cuda"
        batches = [keys[k:k + size] for k in range(0, len(keys) - size + 1, size)]
        with ThreadPoolExecutor(1) as reader:  # numpy copies without the GIL: a real overlap
            ahead = reader.submit(self.cache.gather, batches[0], pin) if batches else None
            for k in range(len(batches)):
                pixels, rows = ahead.result()
                if k + 1 < len(batches):
                    ahead = reader.submit(self.cache.gather, batches[k + 1], pin)
                yield self.cache.to_device(pixels, rows, self.device)


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
