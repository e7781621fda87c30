"""Data tools: get, make and check side-by-side pair folders (one command each; add --help to any).

    # official set -> data/edges2shoes/{train,val}
    python -m tools.data download edges2shoes
    # its train pairs 1..1000 and val pairs 1..100 -> data/edges2shoes-1k, hard-linked
    python -m tools.data subset data/edges2shoes data/edges2shoes-1k --train 1000 --val 100
    # product photos -> edge map | photo pairs
    python -m tools.data pairs my_photos/ data/my_shoes
    # A/x.png + B/x.jpg -> mine/x.png, A left, B right
    python -m tools.data combine sketches/ photos/ data/mine
    # decode every file: sizes, bad files
    python -m tools.data check data/edges2shoes
"""

import argparse
import os
import random
import re
import shutil
import sys
import tarfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from config import SWITCH, add_device_flag, pick_device
from dataset import (FORMATS, MIN_SIDE, SPLITS, list_images, load_rgb, pad_to_square, read_header,
                     split_folders)
from pretrained import DOWNLOAD_TIMEOUT_S, fetch
from tools.edges import sketch_pixels

# the official sets
DATASETS = ("edges2shoes", "edges2handbags", "facades", "maps", "cityscapes", "night2day")
# serves NAME.tar.gz, each with a top folder NAME/
URL_BASE = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"


def split_counts(folder) -> str:
    """'train 49825 pairs, val 200 pairs' for a data folder."""
    return ", ".join(f"{split} {len(list_images(path, required=False))} pairs"
                     for split, path in split_folders(folder).items())


def first_names(paths, shown: int = 5) -> str:
    """'a.jpg, b.png, c.jpg (and 7 more)': a short list for a one-line report."""
    names = [Path(path).name for path in paths]
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def unsafe_member(member: tarfile.TarInfo) -> str:
    """Why extracting this archive member could write outside the target folder ('' if it
    cannot)."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        return f"{member.name!r} has an absolute path or '..'"
    if not (member.isfile() or member.isdir()):
        # the data sets hold only files and folders
        return f"{member.name!r} is a link or special file"
    return ""


def unpack(archive: Path, target: Path) -> None:
    """Verify a .tar.gz, then extract it into target: all of it, or on any error nothing at all."""
    staging = target.with_name(f".{target.name}.unpacking")  # renamed to target only once complete
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                # reads to the end: a truncated or corrupt archive fails here
                members = tar.getmembers()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise ValueError(f"{archive}: not a valid .tar.gz archive "
                             f"({type(e).__name__}: {e})") from None
        problems = [problem for member in members if (problem := unsafe_member(member))]
        if problems:
            raise ValueError(f"{archive}: refusing to extract, {len(problems)} unsafe members: "
                             f"{problems[0]}")
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
             timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download, verify and extract an official pix2pix data set into root/name; returns that
    folder."""
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
    print(f"{name}: {split_counts(target)} in {target}"
          + (f" (archive kept: {archive})" if keep_archive else ""))
    return target


def numbered_pairs(folder) -> list:
    """The official pairs N_AB.jpg of a folder, by number (2 before 10); other files left out."""
    numbers = {path: re.fullmatch(r"(\d+)_AB", path.stem) for path in list_images(folder)}
    return sorted((path for path, number in numbers.items() if number),
                  key=lambda path: int(numbers[path][1]))


def subset(source, target, counts: dict, link: bool = True, replace: bool = False) -> Path:
    """target/SPLIT/: the first counts[SPLIT] official pairs of source/SPLIT/ by number (train 1000:
    1_AB.jpg to 1000_AB.jpg), hard-linked (copied with link=False or where the file system cannot
    link). An existing target is refused unless replace, and replaced only once the new one is
    whole."""
    source, target = Path(source), Path(target)
    if min(counts.values()) < 1:
        raise ValueError(f"each split needs at least 1 pair, got {counts}")
    inside = source.resolve().is_relative_to(target.resolve())
    if inside or target.resolve().is_relative_to(source.resolve()):
        raise ValueError(f"{target}: the subset must lie outside {source} and not hold it")
    if (target.exists() or target.is_symlink()) and not replace:
        raise ValueError(f"{target} already exists; pass --replace to make it anew")
    chosen = {split: numbered_pairs(source / split)[:n] for split, n in counts.items()}
    for split, pairs in chosen.items():
        if len(pairs) < counts[split]:
            raise ValueError(f"{source / split}: {len(pairs)} numbered pairs (N_AB.jpg), fewer "
                             f"than the {counts[split]} asked for")
    staging = target.with_name(f".{target.name}.subset")  # renamed to target once complete
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    copied = 0
    try:
        for split, pairs in chosen.items():
            (staging / split).mkdir(parents=True)
            for path in pairs:
                try:
                    if link:
                        os.link(path, staging / split / path.name)
                        continue
                except OSError:  # another file system, or one without hard links
                    pass
                shutil.copy2(path, staging / split / path.name)
                copied += 1
        if target.is_symlink() or target.is_file():
            target.unlink()  # a link is removed itself, never what it points to
        elif target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    numbers = [f"{split} {len(pairs)} pairs ({pairs[0].name} to {pairs[-1].name})"
               for split, pairs in chosen.items()]
    total = sum(map(len, chosen.values()))
    print(f"{target}: {', '.join(numbers)} from {source}; {total - copied} hard-linked, "
          f"{copied} copied")
    return target


def by_stem(folder) -> dict:
    """{stem: path} of the images in folder; an error if two share a stem (x.jpg and x.png)."""
    files = list_images(folder)
    shared = sorted(stem for stem, n in Counter(path.stem for path in files).items() if n > 1)
    if shared:
        raise ValueError(f"{folder}: several images share the name {shared[0]!r} (different "
                         f"extensions), so outputs would collide; rename them "
                         f"({len(shared)} such names)")
    return {path.stem: path for path in files}


def side_by_side(left: np.ndarray, right: np.ndarray) -> Image.Image:
    """Two (H, W, 3) uint8 arrays -> one (H, 2W) RGB image, left then right."""
    return Image.fromarray(np.concatenate([left, right], axis=1))


def photos_to_pairs(photos_dir, out_dir, size: int = 256, val_fraction: float = 0.0, seed: int = 0,
                    batch: int = 32, device: str = "auto") -> dict:
    """Product photos -> edges2shoes-style out_dir/{train,val}/NAME_AB.jpg: edge map left, photo
    right."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"--val_fraction must lie in [0, 1), got {val_fraction}")
    if size < MIN_SIDE or batch < 1:
        raise ValueError(f"need --size >= {MIN_SIDE} and --batch >= 1, got {size} and {batch}")
    photos = list(by_stem(photos_dir).values())
    # the split depends only on names and seed
    shuffled = random.Random(seed).sample(photos, len(photos))
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
                    # product photos are shot on white
                    loaded.append((path, np.asarray(pad_to_square(load_rgb(path), size,
                                                                    Image.Resampling.LANCZOS))))
                except ValueError as e:
                    skipped.append((path, str(e)))
            if loaded:
                # (B, S, S, 3)
                squares = torch.from_numpy(np.stack([square for _, square in loaded])).to(device)
                sketches = sketch_pixels(squares)  # (B, S, S, 3)
                for (path, square), sketch in zip(loaded, sketches):
                    side_by_side(sketch, square).save(out_dir / split_of[path]
                                                      / f"{path.stem}_AB.jpg", quality=95)
                    written[split_of[path]] += 1
            bar.update(min(batch, len(photos) - start))
    print(f"{written['train']} train and {written['val']} val pairs ({size}×{size} halves, photos "
          f"padded to square on white) in {out_dir}; {len(skipped)} unreadable files skipped"
          + (f": {first_names([path for path, _ in skipped])}" if skipped else ""))
    return {"train": written["train"], "val": written["val"], "skipped": skipped}


def combine(a_dir, b_dir, out_dir) -> dict:
    """Pair images of two folders by name into out_dir/NAME (A's file name): A left, B right at A's
    size."""
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
            b = b.resize(a.size, Image.Resampling.BICUBIC)
        side_by_side(np.asarray(a), np.asarray(b)).save(out_dir / a_files[stem].name, quality=95)
        written += 1
        not_square += a.width != a.height
    print(f"{written} pairs in {out_dir}; {len(only_a)} only in {a_dir}"
          + (f" ({first_names(only_a)})" if only_a else "") + f", {len(only_b)} only in {b_dir}"
          + (f" ({first_names(only_b)})" if only_b else "") + f"; {len(skipped)} unreadable skipped"
          + (f" ({skipped[0][1]})" if skipped else ""))
    if not_square:
        print(f"note: {not_square} pairs have non-square halves; PairDataset needs pairs twice as "
              f"wide as high")
    return {"written": written, "only_a": only_a, "only_b": only_b, "skipped": skipped}


def decode_problem(path) -> tuple:
    """((width, height) or None, what is wrong with the file or ''): the header checks, then a full
    decode, so a truncated or corrupt file that the header scan passes is caught here and not
    mid-epoch."""
    size, problem = read_header(path)
    if problem:
        return size, problem
    try:
        with Image.open(path, formats=FORMATS) as img:
            # decodes every pixel; raises on a truncated file (ImageFile.LOAD_TRUNCATED_IMAGES is
            # off)
            img.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return size, f"cannot decode ({type(e).__name__}: {e})"
    return size, ""


def check(folder, workers: int = 0) -> dict:
    """Full check of a data folder (its train/ val/ test/ or itself): counts, sizes seen, bad files.
    Every file is decoded, in parallel threads (PIL's decoders release the GIL); workers 0: one per
    core."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = {split: list_images(path, required=False)
             for split, path in split_folders(folder).items()}
    everything = [path for split_files in files.values() for path in split_files]
    if not everything:
        raise FileNotFoundError(f"{folder}: no images in it or in its {'/ '.join(SPLITS)}/ folders")
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        decoded = tqdm(pool.map(decode_problem, everything), total=len(everything),
                       desc=f"decoding {folder}", unit="file", leave=False)
        results = [(path, *result) for path, result in zip(everything, decoded)]
    sizes = Counter(size for _, size, _ in results if size)
    bad = [(path, problem) for path, _, problem in results if problem]
    print(f"{folder}: " + ", ".join(f"{split} {len(split_files)} files"
                                    for split, split_files in files.items()))
    print("sizes (width×height): " + ", ".join(f"{w}×{h}: {n}"
                                               for (w, h), n in sizes.most_common(10))
          + (f" (and {len(sizes) - 10} other sizes)" if len(sizes) > 10 else ""))
    print(f"{len(bad)} bad files" + (":" if bad else ""))
    for path, problem in bad:
        print(f"  {path.relative_to(folder)}: {problem}")
    return {"counts": {split: len(split_files) for split, split_files in files.items()},
            "sizes": sizes, "bad": bad}


def main(argv=None) -> int:
    """Command line of the data tools; an error is one line on stderr and exit code 2."""
    parser = argparse.ArgumentParser(prog="python -m tools.data",
                                     description="Data tools for pix2pix pairs.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    options = dict(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    get = commands.add_parser("download", help="fetch an official pix2pix data set", **options)
    get.add_argument("name", help=f"one of {', '.join(DATASETS)}")
    get.add_argument("--root", default="data", help="folder that receives NAME/")
    get.add_argument("--url_base", default=URL_BASE,
                     help="where NAME.tar.gz is served (http(s):// or file://)")
    get.add_argument("--keep_archive", **SWITCH, help="keep ROOT/NAME.tar.gz after extracting it")
    pairs = commands.add_parser("pairs", help="product photos -> edge map | photo pairs", **options)
    pairs.add_argument("photos_dir")
    pairs.add_argument("out_dir")
    pairs.add_argument("--size", type=int, default=256, help="side of each half, in pixels")
    pairs.add_argument("--val_fraction", type=float, default=0.0,
                       help="share of photos put in OUT_DIR/val")
    pairs.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    pairs.add_argument("--batch", type=int, default=32, help="photos per edge-extraction call")
    add_device_flag(pairs)
    join = commands.add_parser("combine", help="A and B images matched by name -> AB pairs",
                               **options)
    join.add_argument("a_dir", help="left halves (the model's input with direction AtoB)")
    join.add_argument("b_dir", help="right halves, resized to A's size where they differ")
    join.add_argument("out_dir")
    part = commands.add_parser("subset", help="the first official pairs of a data set (by "
                                              "number) -> a smaller one", **options)
    part.add_argument("source", help="a data folder with train/ and val/, e.g. data/edges2shoes")
    part.add_argument("target", help="the new data folder, e.g. data/edges2shoes-1k")
    part.add_argument("--train", type=int, default=1000, help="train pairs: 1_AB.jpg to N_AB.jpg")
    part.add_argument("--val", type=int, default=100, help="val pairs: 1_AB.jpg to N_AB.jpg")
    part.add_argument("--link", **{**SWITCH, "default": True},
                      help="hard-link the files (no space used); --no-link copies them")
    part.add_argument("--replace", **SWITCH, help="replace an existing TARGET")
    scan = commands.add_parser("check", help="decode every file: counts, sizes and bad files of "
                                             "a data folder",
                               **options)
    scan.add_argument("folder")
    scan.add_argument("--workers", type=int, default=0,
                      help="decoding threads (0: one per CPU core)")
    scan.add_argument("--skip_bad", **SWITCH, help="exit 0 even if there are bad files")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            download(args.name, args.root, args.url_base, args.keep_archive)
        elif args.command == "pairs":
            photos_to_pairs(args.photos_dir, args.out_dir, args.size, args.val_fraction, args.seed,
                            args.batch, args.device)
        elif args.command == "combine":
            combine(args.a_dir, args.b_dir, args.out_dir)
        elif args.command == "subset":
            subset(args.source, args.target, {"train": args.train, "val": args.val}, args.link,
                   args.replace)
        else:
            bad = check(args.folder, args.workers)["bad"]
            if bad and not args.skip_bad:
                raise ValueError(f"{len(bad)} bad files in {args.folder} (listed above); "
                                 f"remove them, or pass --skip_bad")
    except (OSError, ValueError) as e:
        print(f"tools.data: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tools.data: interrupted (a download resumes where it stopped on the next run)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
