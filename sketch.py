"""Sketches made ready for the generator: the drawing found on its canvas (its ink measured against
the paper it is on, so pencil, photos of paper and coloured pens count; specks ignored), cropped
with the margin edges2shoes shoes have, redrawn with one-pixel centre lines like the training edges;
and the generated photo put back at the drawing's place and size. infer.py, the sketch pad and
tools.evaluate prepare every sketch with it; tools/edges.py thins with it.

    from sketch import prepare_sketch, put_back
    prepared = prepare_sketch("sketch.png", image_size=256)   # .sketch (3, 256, 256) in [-1, 1]
    photo = put_back(generated_photo, prepared)               # a PIL image of the input's size

The drawing is found on a copy whose longer side is at most WORK_SIDE (JPEGs decode at reduced scale
almost for free), so preparing a 12-megapixel photo costs about what a 1-megapixel one does.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageChops
from scipy import ndimage

from dataset import open_rgb, pad_to_square, split_pair, square_region, to_tensor

# Fitting a drawing to the training frame, as measured on edges2shoes-1k/train (1,000 HED edge maps,
# 256×256): the gap between a shoe's longer side and the frame is 0.0156 of the frame per side
# (median; 10th..90th percentile 0.004..0.037); the edges are one pixel wide (dark / thinned pixels
# = 1.005).
SHOE_MARGIN = 0.0156  # per side, as a fraction of the square frame
FIT_FRAME = 256  # the edges2shoes side: a fitted drawing is redrawn at this size, then resized
DARK = 0.5  # gray level (0 black, 1 white) below which a pixel of a training edge map is a line
WORK_SIDE = 1024  # px: the drawing is found on a copy at most this long (a 256-px frame needs less)
# Finding ink: how much darker than the paper a pixel is, in its darkest channel, on [0, 1].
PAPER_SAMPLE = 256  # px: the paper is estimated on a subsample about this long (it varies slowly)
PAPER_CELLS = 16  # ... in cells of 1/16 of the longer side, each at its brighter pixels:
PAPER_PERCENTILE = 90  # a cell's paper is this percentile (ink covers less than 10% of most cells)
NOISE_SIGMAS = 5  # ink is darker than the paper by this many noise sigmas (robust: from the MAD)
MIN_CONTRAST = 0.05  # and by at least this much (13 of 255), e.g. on a clean scan with no noise
INK_CORE_PERCENTILE = 90  # the ink's own darkness: this percentile of the pixels above the noise
# a stroke is darker than half the ink's darkness (on black and white: gray 0.5), and its weaker
# pixels connected to it are darker than a quarter (hysteresis keeps a faint pencil line whole)
STRONG, WEAK = 1 / 2, 1 / 4
SPECK = 1 / 100  # components whose box is shorter than this share of the longer side are specks
MIN_SPECK = 3  # px: and at least this
MAX_COMPONENTS = 20000  # more separate marks than this: noise, not a drawing (and bounds the cost)
SPUR_WIDTHS = 1.5  # thinned branches shorter than this many stroke widths (+1 px) are spurs
# Neighbour offsets (dy, dx) P2..P9 of Zhang-Suen: clockwise from north.
RING = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]


# --- thinning (Zhang-Suen), shared with tools/edges.py ------------------------------------------

def neighbours(image):
    """{(dy, dx): image[y + dy, x + dx]} for the 8 neighbours, zeros outside the frame, one
    padding."""
    height, width = image.shape[-2:]
    padded = F.pad(image, (1, 1, 1, 1))
    return {(dy, dx): padded[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width] for dy, dx in RING}


def ring_bits(code: int) -> list:
    """The 8 neighbours P2..P9 (0 or 1) that a neighbourhood code holds, bit i for RING[i]."""
    return [(code >> i) & 1 for i in range(8)]


def zhang_suen_deletable(code: int, first_pass: bool) -> bool:
    """Zhang-Suen's test: a boundary pixel with these neighbours may go in this sub-iteration."""
    ring = ring_bits(code)
    transitions = sum(1 for i in range(8) if not ring[i] and ring[(i + 1) % 8])
    north, east, south, west = ring[0], ring[2], ring[4], ring[6]
    if first_pass:
        side = not (north and east and south) and not (east and south and west)
    else:
        side = not (north and east and west) and not (north and south and west)
    return 2 <= sum(ring) <= 6 and transitions == 1 and side


def staircase_corner(code: int, arm_a: tuple, arm_b: tuple) -> bool:
    """A corner pixel of a 4-connected step, which 8-connectivity makes redundant: both arms of a
    right angle set and the three opposite pixels empty (the arms touch diagonally, and no pass
    removes an arm, so removing it never splits a line)."""
    ring = dict(zip(RING, ring_bits(code)))
    (ay, ax), (by, bx) = arm_a, arm_b
    opposite = [(-ay, -ax), (-by, -bx), (-ay - by, -ax - bx)]
    return bool(ring[arm_a] and ring[arm_b] and not any(ring[o] for o in opposite))


# What one thinning iteration deletes, as tables over the 256 neighbourhoods, applied in order: the
# two Zhang-Suen sub-iterations, then staircase corners facing each of the four ways.
THIN_TABLES = [np.array([zhang_suen_deletable(code, first) for code in range(256)])
               for first in (True, False)] + [
    np.array([staircase_corner(code, a, b) for code in range(256)])
    for a, b in [((0, -1), (1, 0)), ((1, 0), (0, 1)), ((0, 1), (-1, 0)), ((-1, 0), (0, -1))]]
NEIGHBOUR_COUNT = np.array([sum(ring_bits(code)) for code in range(256)])
# 8-connected within each image of a (B, 1, H, W) batch, never across images
WITHIN_IMAGE = np.zeros((3, 3, 3, 3), dtype=bool)
WITHIN_IMAGE[1, 1] = True


class SparseMask:
    """A bool mask (B, 1, H, W) kept as a zero-padded flat array plus the positions of its set
    pixels, so that each pass costs the set pixels, not the image."""

    def __init__(self, mask: np.ndarray):
        self.shape = mask.shape
        self.flat = np.pad(mask, ((0, 0), (0, 0), (1, 1), (1, 1))).astype(np.uint8).ravel()
        self.index = np.flatnonzero(self.flat)  # (N,) flat positions of the set pixels
        stride = mask.shape[-1] + 2
        self.offsets = np.array([dy * stride + dx for dy, dx in RING])

    def codes(self, index: np.ndarray) -> np.ndarray:
        """The neighbourhood code (0..255) of each position in index: bit i for RING[i]."""
        code = self.flat[index + self.offsets[0]]  # a copy
        for bit in range(1, 8):
            code |= self.flat[index + self.offsets[bit]] << bit
        return code

    def delete(self, table: np.ndarray) -> bool:
        """Clear, all at once, the set pixels whose neighbourhood the table marks; True if any."""
        gone = table[self.codes(self.index)]
        if not gone.any():
            return False
        self.flat[self.index[gone]] = 0
        self.index = self.index[~gone]
        return True

    def mask(self) -> np.ndarray:
        batch, _, height, width = self.shape
        return self.flat.view(bool).reshape(batch, 1, height + 2, width + 2)[..., 1:-1, 1:-1]


def thin(edges):
    """Zhang-Suen thinning plus staircase removal, until stable: one-pixel, 8-connected lines.
    edges: bool (B, 1, H, W), on any device (thinned on the CPU)."""
    sparse = SparseMask(edges.cpu().numpy())
    while any([sparse.delete(table) for table in THIN_TABLES]):  # a list: every pass runs
        pass
    return torch.from_numpy(sparse.mask().copy()).to(edges.device)


def prune_spurs(lines: torch.Tensor, length: int) -> torch.Tensor:
    """Thinned lines (B, 1, H, W) without the spurs that thinning grows from a wide stroke's bumps
    and corners: branches shorter than length pixels that run from a junction to a free end. Lines
    between junctions, loops and whole strokes stay, however short."""
    mask = lines.cpu().numpy()
    for _ in range(3):  # a spur's removal can leave a spur of a spur
        sparse = SparseMask(mask)
        index = sparse.index
        count = NEIGHBOUR_COUNT[sparse.codes(index)]
        junction = np.zeros_like(sparse.flat)
        junction[index[count >= 3]] = 1
        on_branch = count < 3
        branch, count = index[on_branch], count[on_branch]
        branches = sparse.flat.copy()
        branches[index[~on_branch]] = 0
        labels = ndimage.label(branches.reshape(mask.shape[0], 1, *(side + 2 for side in
                                                                     mask.shape[-2:])),
                               structure=WITHIN_IMAGE)[0].ravel()[branch]
        size = np.bincount(labels)
        free = np.bincount(labels[count <= 1], minlength=len(size)) > 0
        touching = junction[branch[:, None] + sparse.offsets].any(1)
        attached = np.bincount(labels[touching], minlength=len(size)) > 0
        spur = free & attached & (size < length)
        if not spur.any():
            break
        sparse.flat[branch[spur[labels]]] = 0
        mask = thin(torch.from_numpy(sparse.mask().copy())).numpy()  # junction remnants
    return torch.from_numpy(np.ascontiguousarray(mask)).to(lines.device)


# --- finding the drawing ------------------------------------------------------------------------

def paper_of(rgb: np.ndarray) -> np.ndarray:
    """The paper's colour (H, W, C) under a drawing (H, W, C) on [0, 1]: the bright percentile of
    each cell of a coarse grid, the brightest of each cell and its neighbours (a cell full of ink
    takes its neighbours' paper), interpolated between cell centres (light may vary across a
    photo)."""
    height, width, channels = rgb.shape
    step = max(1, max(height, width) // PAPER_SAMPLE)
    small = rgb[::step, ::step]
    cell = max(2, math.ceil(max(small.shape[:2]) / PAPER_CELLS))
    rows, cols = math.ceil(small.shape[0] / cell), math.ceil(small.shape[1] / cell)
    small = np.pad(small, ((0, rows * cell - small.shape[0]), (0, cols * cell - small.shape[1]),
                           (0, 0)), mode="edge")
    # (rows, cols, C, cell²): each cell's pixels last and contiguous, for a fast partition
    cells = small.reshape(rows, cell, cols, cell, channels).transpose(0, 2, 4, 1, 3).reshape(
        rows, cols, channels, cell * cell)
    kth = round((cell * cell - 1) * PAPER_PERCENTILE / 100)
    bright = np.partition(cells, kth, axis=3)[..., kth]  # (rows, cols, C)
    bright = ndimage.maximum_filter(bright, size=(3, 3, 1), mode="nearest")
    paper = F.interpolate(torch.from_numpy(bright).float().permute(2, 0, 1)[None],
                          size=(rows * cell * step, cols * cell * step), mode="bilinear")
    return paper[0, :, :height, :width].permute(1, 2, 0).numpy()


def ink_mask(img: Image.Image) -> np.ndarray:
    """Bool (H, W): the drawing's strokes, all False when none is found. A pixel's darkness is how
    far below the paper it is in its darkest channel (a blue line on white counts by its red);
    strokes are darker than STRONG of the ink's own darkness and than the paper's noise, plus the
    pixels connected to them darker than WEAK of it; marks smaller than a speck drop out, and a page
    of thousands of marks is noise, not a drawing."""
    channels = img.convert("RGB").split()
    if all(ImageChops.difference(channels[0], other).getbbox() is None for other in channels[1:]):
        channels = channels[:1]  # gray: one channel says it all, at a third of the cost
    pixels = np.stack([np.asarray(c) for c in channels], axis=2) * np.float32(1 / 255)  # (H, W, C)
    below = paper_of(pixels) - pixels  # (H, W, C)
    darkness = below.max(axis=2) if len(channels) == 1 else np.maximum(
        np.maximum(below[..., 0], below[..., 1]), below[..., 2])  # (H, W)
    height, width = darkness.shape
    nothing = np.zeros((height, width), dtype=bool)
    step = max(1, round(math.sqrt(height * width / 65536)))  # noise statistics on ~64k pixels
    sample = darkness[::step, ::step]
    median = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample - median)))  # robust: most pixels are paper
    floor = max(median + NOISE_SIGMAS * sigma, MIN_CONTRAST)
    above = darkness[darkness > floor]
    if above.size == 0:
        return nothing
    core = float(np.percentile(above, INK_CORE_PERCENTILE))
    strong, weak = max(floor, STRONG * core), max(floor, WEAK * core)
    labels, count = ndimage.label(darkness > weak, structure=np.ones((3, 3)))
    if count > MAX_COMPONENTS:
        return nothing
    keep = np.zeros(count + 1, dtype=bool)
    keep[labels[darkness > strong]] = True
    speck = max(MIN_SPECK, round(SPECK * max(height, width)))
    for number, (rows, cols) in enumerate(ndimage.find_objects(labels), 1):
        if rows.stop - rows.start < speck and cols.stop - cols.start < speck:
            keep[number] = False
    keep[0] = False
    return keep[labels]


def drawing_box(ink):
    """(left, top, right, bottom) of the ink, right and bottom exclusive; None for a blank
    sketch."""
    ink = np.asarray(ink)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def stroke_width(ink: np.ndarray) -> float:
    """Mean width of the strokes in pixels (2 for one-pixel lines): area over half the boundary
    (ink pixels with an empty 4-neighbour; a stroke of length L has about 2L of them)."""
    inner = ink.copy()
    inner[1:] &= ink[:-1]
    inner[:-1] &= ink[1:]
    inner[:, 1:] &= ink[:, :-1]
    inner[:, :-1] &= ink[:, 1:]
    boundary = int(ink.sum()) - int(inner.sum())
    return 2 * int(ink.sum()) / max(1, boundary)


def drawing_region(ink: np.ndarray):
    """The fit_region of the drawing's centre lines (its box less half a stroke each side, so that a
    marker drawing is framed as the same drawing in pen), in ink's pixels; None for no ink."""
    box = drawing_box(ink)
    if box is None:
        return None
    inset = min(int(stroke_width(ink) - 1) // 2, (box[2] - box[0]) // 2, (box[3] - box[1]) // 2)
    left, top, right, bottom = box
    return fit_region((left + inset, top + inset, right - inset, bottom - inset))


def fit_region(box) -> tuple:
    """The square (left, top, side, side) around a drawing box that puts the drawing in the frame as
    edges2shoes puts a shoe: centred, its longer side SHOE_MARGIN from the frame's edges."""
    left, top, right, bottom = box
    side = math.ceil(max(right - left, bottom - top) / (1 - 2 * SHOE_MARGIN))
    x0, y0 = round((left + right - side) / 2), round((top + bottom - side) / 2)
    return x0, y0, side, side


def normalise_strokes(ink: torch.Tensor, size: int = FIT_FRAME) -> torch.Tensor:
    """Bool ink (1, 1, h, w) of a square crop -> bool (1, 1, size, size) of one-pixel centre lines,
    the width of the training edges: resized so that no stroke vanishes (max-pooling down, bilinear
    up), thinned, and the spurs a wide stroke's bumps leave pruned."""
    if ink.shape[-1] >= size:
        scaled = F.adaptive_max_pool2d(ink.float(), size) > 0
    else:
        scaled = F.interpolate(ink.float(), size=(size, size), mode="bilinear") >= 0.5
    lines = thin(scaled)
    width = int(scaled.sum()) / max(1, int(lines.sum()))  # mean stroke width: area / length
    # a spur runs from the centre line past the stroke's edge: half a width and a bump
    return prune_spurs(lines, round(SPUR_WIDTHS * width) + 1)


def redraw(ink: np.ndarray, region: tuple, size: int = FIT_FRAME) -> torch.Tensor:
    """The strokes of ink (H, W) inside the square region (left, top, side, side) of its pixels,
    which may reach past its edges, as one-pixel lines: bool (size, size)."""
    x0, y0, side, _ = region
    crop = torch.zeros(side, side, dtype=torch.bool)  # the square in input pixels; no ink outside
    height, width = ink.shape
    left, top = max(x0, 0), max(y0, 0)
    right, bottom = min(x0 + side, width), min(y0 + side, height)
    if right > left and bottom > top:
        crop[top - y0:bottom - y0, left - x0:right - x0] = torch.from_numpy(
            np.ascontiguousarray(ink[top:bottom, left:right]))
    return normalise_strokes(crop[None, None], size)[0, 0]


def fit_sketch(img: Image.Image, image_size: int) -> tuple:
    """(sketch (3, S, S), region in img's pixels) of a plain sketch: the drawing cropped with the
    shoes' margin, padded to square, redrawn with one-pixel lines at FIT_FRAME and resized to
    image_size as training resized the edge maps; None when no drawing is found."""
    ink = ink_mask(img)
    region = drawing_region(ink)
    if region is None:
        return None
    lines = redraw(ink, region)  # (FIT_FRAME, FIT_FRAME)
    drawn = Image.fromarray(np.where(lines.numpy(), 0, 255).astype(np.uint8)).convert("RGB")
    if drawn.size != (image_size, image_size):
        # as PairDataset resizes edge maps
        drawn = drawn.resize((image_size, image_size), Image.Resampling.BICUBIC)
    return to_tensor(drawn), region


# --- preparing an input and putting its photo back ---------------------------------------------

@dataclass
class Prepared:
    """One input made ready for the generator, and where its photo goes."""
    sketch: torch.Tensor  # (3, H, W) in [-1, 1]: what the generator reads
    region: tuple  # (left, top, width, height) of the input area the sketch shows, in input pixels;
    # it may reach past the input's edges (white padding there)
    size: tuple  # (width, height) of the output: the input's (for a pair, its input half's)
    fitted: bool = False  # the drawing was found and fitted (False: padded whole, or a pair)
    blank: bool = False  # fitting was asked for and no drawing was found: padded whole instead
    hints: torch.Tensor = None  # (4, H, W) colour hints beside the sketch, for a model trained
    # with them (hints.py); None for a model without


def load_sketch(path, direction: str = "AtoB", max_side: int = 0) -> tuple:
    """(RGB image, is_pair, (width, height)): the input half of an AB pair (twice as wide as high)
    or the sketch itself, and its full size; max_side > 0: the image is a copy at most that long
    (dataset.open_rgb)."""
    img, (width, height) = open_rgb(path, max_side)
    if width != 2 * height:
        return img, False, (width, height)
    left, right = split_pair(img)
    return (right if direction == "BtoA" else left), True, (width // 2, height)


def prepare_sketch(path, image_size: int, direction: str = "AtoB", fit: bool = True,
                   native_multiple: int = 0) -> Prepared:
    """Load one input for the generator. fit: crop a plain sketch to its drawing and redraw its
    lines (pairs are never fitted: they are training-like already; .fitted says whether a drawing
    was found). native_multiple > 0: run at the input's own size rounded to a multiple of it (no
    padding). Otherwise: pad to square with white, resize."""
    if native_multiple:
        img, _, size = load_sketch(path, direction)
        size = tuple(max(1, round(side / native_multiple)) * native_multiple for side in img.size)
        resized = img.resize(size, Image.Resampling.BICUBIC) if size != img.size else img
        return Prepared(to_tensor(resized), (0, 0, *img.size), img.size)
    img, is_pair, (width, height) = load_sketch(path, direction, max(WORK_SIDE, image_size))
    if fit and not is_pair:
        fitted = fit_sketch(img, image_size)
        if fitted is not None:
            sketch, (x0, y0, side, _) = fitted
            scale_x, scale_y = width / img.width, height / img.height  # 1 unless reduced
            region = (round(x0 * scale_x), round(y0 * scale_y), round(side * scale_x),
                      round(side * scale_y))
            return Prepared(sketch, region, (width, height), fitted=True)
    sketch = to_tensor(pad_to_square(img, image_size))
    return Prepared(sketch, square_region(width, height), (width, height),
                    blank=fit and not is_pair)


def put_back(photo: Image.Image, prepared: Prepared, view: tuple = None,
             size: tuple = None) -> Image.Image:
    """The generated photo placed where its sketch came from, white where it does not reach, in an
    image of the input's size; given view (left, top, width, height) in input pixels and size
    (width, height): in an image of that part of the input at that size (tools.evaluate scores
    every mode in the drawing's own frame)."""
    x0, y0, region_w, region_h = prepared.region
    width, height = prepared.size
    view_x, view_y, view_w, view_h = view or (0, 0, width, height)
    out_w, out_h = size or (view_w, view_h)
    scale_x, scale_y = out_w / view_w, out_h / view_h
    # the input area the photo covers, in output pixels, within the output
    left = min(max(round((max(x0, 0) - view_x) * scale_x), 0), out_w)
    top = min(max(round((max(y0, 0) - view_y) * scale_y), 0), out_h)
    right = min(max(round((min(x0 + region_w, width) - view_x) * scale_x), 0), out_w)
    bottom = min(max(round((min(y0 + region_h, height) - view_y) * scale_y), 0), out_h)
    out = Image.new("RGB", (out_w, out_h), "white")
    if right <= left or bottom <= top:
        return out
    # the same area in the photo's pixels (within it: rounding above may reach a little past)
    to_photo_x, to_photo_y = photo.width / region_w, photo.height / region_h
    box = tuple(min(max(value, 0), limit) for value, limit in (
        ((left / scale_x + view_x - x0) * to_photo_x, photo.width),
        ((top / scale_y + view_y - y0) * to_photo_y, photo.height),
        ((right / scale_x + view_x - x0) * to_photo_x, photo.width),
        ((bottom / scale_y + view_y - y0) * to_photo_y, photo.height)))
    part = photo.resize((right - left, bottom - top), Image.Resampling.BICUBIC, box=box)
    if part.size == out.size:
        return part
    out.paste(part, (left, top))
    return out
