"""Sketches made ready for the generator: the drawing found on its canvas (its ink, specks ignored),
cropped with the margin edges2shoes shoes have, redrawn with one-pixel lines like the training
edges; and the generated photo put back at the drawing's place and size. infer.py, the sketch pad
and tools.evaluate prepare every sketch with it; tools/edges.py thins with it.

    from sketch import prepare_sketch, put_back
    prepared = prepare_sketch("sketch.png", image_size=256)   # .sketch (3, 256, 256) in [-1, 1]
    photo = put_back(generated_photo, prepared)               # a PIL image of the input's size
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dataset import load_rgb, pad_to_square, split_pair, square_region, to_tensor

# Fitting a drawing to the training frame, as measured on edges2shoes-1k/train (1,000 HED edge maps,
# 256×256): the gap between a shoe's longer side and the frame is 0.0156 of the frame per side
# (median; 10th..90th percentile 0.004..0.037); the edges are one pixel wide (dark / thinned pixels
# = 1.005).
SHOE_MARGIN = 0.0156  # per side, as a fraction of the square frame
FIT_FRAME = 256  # the edges2shoes side: a fitted drawing is redrawn at this size, then resized
DARK = 0.5  # gray level (0 black, 1 white) below which a pixel is ink
# speck test window side, fraction of the sketch's longer side (at least 9 px):
# a 9-pixel window drops dark specks of up to 4 pixels (2×2 dust, JPEG noise) and keeps any line
SPECK_WINDOW = 1 / 64
# Neighbour offsets (dy, dx) P2..P9 of Zhang-Suen: clockwise from north.
RING = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]


# --- thinning (Zhang-Suen), shared with tools/edges.py ------------------------------------------

def neighbours(image):
    """{(dy, dx): image[y + dy, x + dx]} for the 8 neighbours, zeros outside the frame, one
    padding."""
    height, width = image.shape[-2:]
    padded = F.pad(image, (1, 1, 1, 1))
    return {(dy, dx): padded[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width] for dy, dx in RING}


def zhang_suen_step(edges, first_pass):
    """One Zhang-Suen sub-iteration: peel deletable boundary pixels from one side."""
    ring = list(neighbours(edges).values())  # P2..P9
    count = sum(pixel.view(torch.uint8) for pixel in ring)  # uint8 adds: summing bools is slow
    transitions = sum((~ring[i] & ring[(i + 1) % 8]).view(torch.uint8) for i in range(8))
    north, east, south, west = ring[0], ring[2], ring[4], ring[6]
    if first_pass:
        side = ~(north & east & south) & ~(east & south & west)
    else:
        side = ~(north & east & west) & ~(north & south & west)
    deletable = (count >= 2) & (count <= 6) & (transitions == 1) & side
    return edges & ~deletable


def remove_staircases(edges):
    """Drop corner pixels of 4-connected steps, which 8-connectivity makes redundant."""
    for (ay, ax), (by, bx) in [((0, -1), (1, 0)), ((1, 0), (0, 1)), ((0, 1), (-1, 0)),
                               ((-1, 0), (0, -1))]:
        # a pixel with both arms of a right angle set and the three opposite pixels empty: the arms
        # touch diagonally, and no pass removes an arm, so removing it never splits a line
        around = neighbours(edges)
        corner = around[ay, ax] & around[by, bx]
        for opposite in [(-ay, -ax), (-by, -bx), (-ay - by, -ax - bx)]:
            corner = corner & ~around[opposite]
        edges = edges & ~corner
    return edges


def thin(edges):
    """Zhang-Suen thinning plus staircase removal, until stable: one-pixel, 8-connected lines.
    edges: bool (B, 1, H, W)."""
    for _ in range(sum(edges.shape[-2:])):  # each pass peels a layer: H + W passes always suffice
        thinned = remove_staircases(zhang_suen_step(zhang_suen_step(edges, True), False))
        if torch.equal(thinned, edges):
            break
        edges = thinned
    return edges


# --- preparing an input and putting its photo back ---------------------------------------------

@dataclass
class Prepared:
    """One input made ready for the generator, and where its photo goes."""
    sketch: torch.Tensor  # (3, H, W) in [-1, 1]: what the generator reads
    region: tuple  # (left, top, width, height) of the input area the sketch shows, in input pixels;
    # it may reach past the input's edges (white padding there)
    size: tuple  # (width, height) of the output: the input's (for a pair, its input half's)


def load_sketch(path, direction: str = "AtoB") -> tuple:
    """(RGB image, is_pair): the input half of an AB pair (twice as wide as high), or the sketch
    itself."""
    img = load_rgb(path)
    if img.width != 2 * img.height:
        return img, False
    left, right = split_pair(img)
    return (right if direction == "BtoA" else left), True


def ink_mask(img: Image.Image) -> torch.Tensor:
    """Bool (H, W): the drawing's dark pixels, without specks. A pixel counts if its k×k window (k
    odd, SPECK_WINDOW of the longer side) holds at least k//2 + 1 dark pixels, as any line through
    it or ending in it does: specks smaller than that drop out, strokes keep their full length."""
    gray = torch.from_numpy(np.asarray(img.convert("L"), dtype=np.float32) / 255)  # (H, W)
    dark = (gray < DARK).float()[None, None]  # (1, 1, H, W)
    k = max(9, round(max(img.size) * SPECK_WINDOW) // 2 * 2 + 1)
    count = F.avg_pool2d(dark, k, stride=1, padding=k // 2, count_include_pad=True) * k * k
    return ((dark > 0) & (count > k // 2 + 0.5))[0, 0]


def drawing_box(ink: torch.Tensor):
    """(left, top, right, bottom) of the ink, right and bottom exclusive; None for a blank
    sketch."""
    rows, cols = ink.any(dim=1).nonzero(), ink.any(dim=0).nonzero()
    if len(rows) == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def fit_region(box) -> tuple:
    """The square (left, top, side, side) around a drawing box that puts the drawing in the frame as
    edges2shoes puts a shoe: centred, its longer side SHOE_MARGIN from the frame's edges."""
    left, top, right, bottom = box
    side = math.ceil(max(right - left, bottom - top) / (1 - 2 * SHOE_MARGIN))
    x0, y0 = round((left + right - side) / 2), round((top + bottom - side) / 2)
    return x0, y0, side, side


def normalise_strokes(ink: torch.Tensor, size: int = FIT_FRAME) -> torch.Tensor:
    """Bool ink (1, 1, h, w) of a square crop -> bool (1, 1, size, size) of one-pixel lines, the
    width of the training edges: resized so that no stroke vanishes (max-pooling down, bilinear up),
    then thinned."""
    if ink.shape[-1] >= size:
        scaled = F.adaptive_max_pool2d(ink.float(), size) > 0
    else:
        scaled = F.interpolate(ink.float(), size=(size, size), mode="bilinear") >= 0.5
    return thin(scaled)


def fit_sketch(img: Image.Image, image_size: int) -> tuple:
    """(sketch (3, S, S), region) of a plain sketch: the drawing cropped with the shoes' margin,
    padded to square, redrawn with one-pixel lines at FIT_FRAME and resized to image_size as
    training resized the edge maps; None for a blank sketch (nothing to fit)."""
    ink = ink_mask(img)
    box = drawing_box(ink)
    if box is None:
        return None
    region = x0, y0, side, _ = fit_region(box)
    crop = torch.zeros(side, side, dtype=torch.bool)  # the square in input pixels; no ink outside
    width, height = img.size
    left, top, right, bottom = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    crop[top - y0:bottom - y0, left - x0:right - x0] = ink[top:bottom, left:right]
    lines = normalise_strokes(crop[None, None])[0, 0]  # (FIT_FRAME, FIT_FRAME)
    drawn = Image.fromarray(np.where(lines.numpy(), 0, 255).astype(np.uint8)).convert("RGB")
    if drawn.size != (image_size, image_size):
        # as PairDataset resizes edge maps
        drawn = drawn.resize((image_size, image_size), Image.BICUBIC)
    return to_tensor(drawn), region


def prepare_sketch(path, image_size: int, direction: str = "AtoB", fit: bool = True,
                   native_multiple: int = 0) -> Prepared:
    """Load one input for the generator. fit: crop a plain sketch to its drawing and redraw its
    lines (pairs are never fitted: they are training-like already). native_multiple > 0: run at the
    input's own size rounded to a multiple of it (no padding). Otherwise: pad to square with white,
    resize."""
    img, is_pair = load_sketch(path, direction)
    width, height = img.size
    if native_multiple:
        size = tuple(max(1, round(side / native_multiple)) * native_multiple for side in img.size)
        resized = img.resize(size, Image.BICUBIC) if size != img.size else img
        return Prepared(to_tensor(resized), (0, 0, width, height), img.size)
    if fit and not is_pair:
        fitted = fit_sketch(img, image_size)
        if fitted is not None:
            return Prepared(*fitted, img.size)
    sketch = to_tensor(pad_to_square(img, image_size))
    return Prepared(sketch, square_region(width, height), (width, height))


def put_back(photo: Image.Image, prepared: Prepared) -> Image.Image:
    """The generated photo placed where its sketch came from, in an image of the input's size: the
    part over the input's area resized to it, white where the photo does not reach."""
    x0, y0, region_w, region_h = prepared.region
    width, height = prepared.size
    left, top = max(x0, 0), max(y0, 0)
    right, bottom = min(x0 + region_w, width), min(y0 + region_h, height)
    scale_x, scale_y = photo.width / region_w, photo.height / region_h
    box = ((left - x0) * scale_x, (top - y0) * scale_y, (right - x0) * scale_x,
           (bottom - y0) * scale_y)
    part = photo.resize((right - left, bottom - top), Image.BICUBIC, box=box)
    if part.size == prepared.size:
        return part
    out = Image.new("RGB", prepared.size, "white")
    out.paste(part, (left, top))
    return out
