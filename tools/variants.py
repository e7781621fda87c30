"""Clean sketches made the way people bring them: pencil, a phone photo, a marker, blue ballpoint.

Light pencil, a phone photo of the paper, a thick marker drawn small on a big canvas and blue
ballpoint, for measuring how much of the fitted quality survives (tools.evaluate --sketches KIND
--references ...); the clean ones: the hand sketches of docs/sketches.md ("The hand sketches").

    python -m tools.variants data/hand-sketches/sketches variants/ --count 60
    # -> variants/{pencil,photo,marker,blue}/NAME and variants/marker_reference/NAME: the clean
    #    drawing placed as the marker one is (the other kinds keep the original's geometry)
    python -m tools.evaluate --checkpoint G.pt --sketches variants/pencil \
        --references data/hand-sketches/sketches
    # all of it: variants, then edge F1 of every kind (and the clean scans), fitted and not
    python -m tools.variants data/hand-sketches/sketches variants/ --count 60 \
        --checkpoint models/shoes1k_l100/generator.pt

Every variant is drawn from the clean sketch's darkness (1 - gray), so its strokes are the same
strokes; a seed per file makes the set reproducible.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from config import SWITCH
from dataset import list_images, load_rgb

KINDS = ("pencil", "photo", "marker", "blue")
BLUE_INK = (25, 55, 165)  # RGB of a blue ballpoint line
MARKER_CANVAS = (1024, 768)  # the big canvas the small marker drawing sits on
MARKER_HEIGHT = (0.35, 0.5)  # the drawing's side, as a share of the canvas height
MARKER_WIDTH = 0.022  # the marker's stroke width, as a share of the clean sketch's side


def darkness(clean: Image.Image) -> np.ndarray:
    """(H, W) float in [0, 1]: how much ink each pixel of a clean sketch holds."""
    return 1 - np.asarray(clean.convert("L"), dtype=np.float32) / 255


def on_paper(ink: np.ndarray, paper, ink_colour) -> np.ndarray:
    """(H, W, 3) uint8: paper (H, W, 3 or 3,) with ink of ink_colour laid where ink (H, W) says."""
    paper = np.broadcast_to(np.asarray(paper, dtype=np.float32), (*ink.shape, 3))
    colour = np.asarray(ink_colour, dtype=np.float32)
    return np.clip(paper * (1 - ink[..., None]) + colour * ink[..., None], 0, 255).astype(np.uint8)


def pencil(clean: Image.Image, rng) -> Image.Image:
    """Light pencil: lines gray 150..185 of 255 on white, a little graphite grain."""
    ink = darkness(clean) * (255 - rng.uniform(150, 185)) / 255
    ink = ink * rng.uniform(0.85, 1.0, ink.shape)  # grain along the strokes
    return Image.fromarray(on_paper(ink, 255, 0))


def phone_photo(clean: Image.Image, rng) -> Image.Image:
    """A phone photo of the drawing: gray, tinted paper under uneven light (a gradient and a
    vignette), sensor noise, JPEG (the caller saves it at quality 75)."""
    ink = darkness(clean) * 0.85  # ink reflects some light
    height, width = ink.shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = y / height - 0.5, x / width - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    light = (1 + rng.uniform(0.15, 0.3) * (np.cos(angle) * x + np.sin(angle) * y)
             - rng.uniform(0.2, 0.35) * (x * x + y * y))
    paper = np.array([200, 195, 180]) * rng.uniform(0.9, 1.05)
    photo = on_paper(ink, paper, 20).astype(np.float32) * light[..., None]
    photo += rng.normal(0, 4, photo.shape)
    img = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(0.6))  # a phone's lens and demosaicing


def marker(clean: Image.Image, rng) -> tuple:
    """(variant, reference): the drawing with a thick marker, shrunk and placed at a random spot of
    a bigger white canvas; and the clean drawing placed the same way, to score against."""
    width = max(3, round(MARKER_WIDTH * max(clean.size))) | 1
    thick = clean.convert("L").filter(ImageFilter.MinFilter(width))  # dark strokes grow
    side = round(rng.uniform(*MARKER_HEIGHT) * MARKER_CANVAS[1])
    left = int(rng.integers(0, MARKER_CANVAS[0] - side))
    top = int(rng.integers(0, MARKER_CANVAS[1] - side))
    placed = []
    for drawing in (thick, clean.convert("L")):
        canvas = Image.new("L", MARKER_CANVAS, 255)
        canvas.paste(drawing.resize((side, side), Image.Resampling.LANCZOS), (left, top))
        placed.append(canvas)
    return placed[0], placed[1]


def blue(clean: Image.Image, rng) -> Image.Image:
    """Blue ballpoint on white."""
    return Image.fromarray(on_paper(darkness(clean), 255, BLUE_INK))


def chosen(sketch_dir, count: int = 0) -> list:
    """count of the sketches in sketch_dir, evenly spread over the sorted names (every k-th file;
    0: all)."""
    files = list_images(sketch_dir)
    return files[::max(1, len(files) // count)][:count] if count else files


def make_variants(sketch_dir, out_dir, count: int = 0, seed: int = 0, kinds=KINDS) -> dict:
    """Write out_dir/KIND/NAME for count of the sketches (chosen; 0: all); {kind: folder}."""
    files = chosen(sketch_dir, count)
    out_dir = Path(out_dir)
    for kind in kinds:
        (out_dir / kind).mkdir(parents=True, exist_ok=True)
    if "marker" in kinds:
        (out_dir / "marker_reference").mkdir(parents=True, exist_ok=True)
    for number, path in enumerate(files):
        clean = load_rgb(path)
        for kind in kinds:
            rng = np.random.default_rng([seed, number, KINDS.index(kind)])
            name = f"{path.stem}.png"
            if kind == "pencil":
                pencil(clean, rng).save(out_dir / kind / name)
            elif kind == "photo":
                phone_photo(clean, rng).save(out_dir / kind / f"{path.stem}.jpg", quality=75)
            elif kind == "marker":
                variant, reference = marker(clean, rng)
                variant.save(out_dir / kind / name)
                reference.save(out_dir / "marker_reference" / name)
            else:
                blue(clean, rng).save(out_dir / kind / name)
    return {kind: out_dir / kind for kind in kinds}


def score_kinds(checkpoint, sketch_dir, folders: dict, count: int = 0, paper: bool = True,
                seed: int = 0, device: str = "cpu") -> list:
    """Rows (kind, edge F1 fitted, edge F1 unfitted) of tools.evaluate --sketches for the clean
    sketches (the same count chosen) and each variant folder, every photo scored against its clean
    drawing."""
    from tools.evaluate import evaluate_sketches  # the generator's imports only when scoring
    from save import load_generator
    generator, cfg = load_generator(checkpoint)
    clean = Path(sketch_dir)
    if count:  # the same first count sketches as the variants
        subset = Path(next(iter(folders.values()))).parent / "clean"
        subset.mkdir(parents=True, exist_ok=True)
        for path in chosen(clean, count):
            load_rgb(path).save(subset / f"{path.stem}.png")
        clean = subset
    rows = []
    for kind, folder in [("clean", clean), *folders.items()]:
        references = folder.parent / "marker_reference" if kind == "marker" else clean
        f1 = [evaluate_sketches(generator, cfg, folder, paper=paper, seed=seed, device=device,
                                fit=fit, references=references)["mean"]["edge_f1"]
              for fit in (True, False)]
        rows.append((kind, *f1))
        print(f"{kind}: edge F1 fitted {f1[0]:.3f}, unfitted {f1[1]:.3f}", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sketches", help="folder of clean sketches (black lines on white)")
    parser.add_argument("out", help="folder for KIND/ subfolders")
    parser.add_argument("--count", type=int, default=0,
                        help="COUNT sketches, every k-th of the sorted names (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same variants")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--checkpoint", help="then score every kind with this generator.pt "
                                             "(tools.evaluate --sketches, fitted and not)")
    parser.add_argument("--eval", **SWITCH, help="with --checkpoint: eval mode (default: the "
                                                 "paper's dropout, seeded, as infer.py)")
    args = parser.parse_args(argv)
    try:
        folders = make_variants(args.sketches, args.out, args.count, args.seed, args.kinds)
        for kind, folder in folders.items():
            print(f"{kind}: {folder}")
        if args.checkpoint:
            rows = score_kinds(args.checkpoint, args.sketches, folders, args.count,
                               paper=not args.eval)
            print("| sketches as | edge F1 fitted | edge F1 unfitted |\n|---|---|---|")
            for kind, fitted, unfitted in rows:
                print(f"| {kind} | {fitted:.3f} | {unfitted:.3f} |")
    except (OSError, ValueError) as e:
        print(f"variants.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
