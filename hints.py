"""Colour hints (Zhang et al. 2017, "Real-Time User-Guided Image Colorization with Learned Deep
Priors"): a few patches of colour that tell G what colour the shoe is. G reads them as 4 more
input channels beside the sketch: the hint colour (RGB in [-1, 1], 0 where there is no hint) and
its mask (1 on a hint, else 0). Zhang et al. feed ab colour and a mask beside L; here the colour is
RGB because the input is a sketch, not the photo's lightness.

    from hints import sample_hints, with_hints, parse_colour, hints_from_image
    hints = sample_hints(photo, generator, p=1/8, max_patches=32, max_side=5)  # (B, 4, H, W)
    fake_photo = G(with_hints(sketch, hints))          # a model trained with --hints
    fake_photo = G(with_hints(sketch))                 # the same model, no hints: zeros
    photo, hints = training_hints(photo, generator, recolour=0.5)  # half the shoes recoloured
    fake_photo, clipped = transfer_colour(fake_photo, hints)  # the shoe moved to the hints' colour

Training (config.hints): each image gets n ~ geometric(p) patches (P(n) = p·(1-p)^n, so many
images get none or few), sides uniform in 1..max_side, centred on the shoe (not the white
background), each filled with the real photo's mean colour over it; all drawn on the device for the
whole batch from one torch.Generator, which train.py reseeds from (seed, rank, step). With
recolour, a share of the shoes first gets a random colour in CIE Lab (shading kept), so that the
hints drawn from it are the only source of its colour.
Test time: hints_from_image maps a painted hints image (the sketch's size) through the sketch's
fitting (its crop, padding and scale) to the generator's frame; colour_patch puts one hint inside
the drawing; transfer_colour moves the generated shoe's colour to the hints' after G.
"""

import colorsys
import math
import re

import numpy as np
import torch
from PIL import Image, ImageColor, ImageOps
from scipy import ndimage

from config import HINT_CHANNELS
from dataset import eight_bit, open_image, quiet_pil
from generator import spread

WHITE = 0.8  # on [-1, 1] (gray 230): a photo's pixel brighter than this in every channel may be
# background (edges2shoes' is 255: 57% of the pixels at any threshold 230..250); a sketch's pixel
# darker than this is a stroke
SWEEPS = 4  # the background is grown from the border along rows, then columns, this many times
PAINTED_ALPHA = 128  # a hints image's pixel with alpha at least this is a hint
PAPER_TOLERANCE = 24  # without alpha: a pixel within this of white (255) in every channel is paper


def patch_side(max_side_256: int, image_size: int) -> int:
    """The largest hint patch side at image_size: max_side_256 pixels at 256, scaled, at least 1."""
    return max(1, math.ceil(max_side_256 * image_size / 256))


def with_hints(sketch: torch.Tensor, hints: torch.Tensor = None) -> torch.Tensor:
    """G's input for a model trained with hints: sketch (B, 3, H, W) and hints (B, 4, H, W), or no
    hints (zeros: no colour given) -> (B, 7, H, W)."""
    if hints is None:
        hints = sketch.new_zeros(sketch.shape[0], HINT_CHANNELS, *sketch.shape[2:])
    return torch.cat([sketch, hints.to(sketch.device, sketch.dtype)], dim=1)


def spread_along_rows(reached: torch.Tensor, open_: torch.Tensor) -> torch.Tensor:
    """reached (N, L) grown to the whole of every run of open_ pixels (N, L) along the last axis
    that it touches: each run and each closed pixel gets its own number, then a run is reached if
    any of its pixels is."""
    starts = open_.clone()
    starts[:, 1:] &= ~open_[:, :-1]
    run = torch.cumsum(starts | ~open_, dim=1)  # (N, L), 1..L
    hit = torch.zeros(run.shape[0], run.shape[1] + 1, device=run.device)
    hit.scatter_reduce_(1, run, reached.float(), reduce="amax")
    return (hit.gather(1, run) > 0) & open_


def shoe_mask(photo: torch.Tensor, sweeps: int = SWEEPS) -> torch.Tensor:
    """Bool (B, 1, H, W): the shoe's pixels of photos (B, 3, H, W) in [-1, 1], i.e. all but the
    near-white background that reaches the image's border (a white shoe inside its outline stays
    shoe). The background is grown from the border along rows, then columns, sweeps times each:
    every white pixel a path with that many turns reaches; no host sync, a few dozen kernels."""
    batch, _, height, width = photo.shape
    white = (photo.float().amin(1) > WHITE)  # (B, H, W)
    reached = torch.zeros_like(white)
    reached[:, 0, :] = reached[:, -1, :] = reached[:, :, 0] = reached[:, :, -1] = True
    reached &= white
    for _ in range(sweeps):
        reached = spread_along_rows(reached.flatten(0, 1), white.flatten(0, 1)).view_as(white)
        reached = spread_along_rows(reached.transpose(1, 2).flatten(0, 1),
                                    white.transpose(1, 2).flatten(0, 1)).view(
            batch, width, height).transpose(1, 2)
    return ~reached[:, None]


def sample_hints(photo: torch.Tensor, generator: torch.Generator, p: float = 0.125,
                 max_patches: int = 32, max_side: int = 9, on_shoe: bool = True,
                 count: int = None, shoe: torch.Tensor = None) -> torch.Tensor:
    """Hints (B, 4, H, W) drawn from real photos (B, 3, H, W) in [-1, 1] on their device: per image
    n ~ geometric(p) patches, at most max_patches (count: exactly that many instead), each a square
    of side uniform in 1..max_side centred on a pixel of the shoe (on_shoe; anywhere in an image
    with no shoe) or anywhere, filled with the photo's mean colour over it; a later patch covers an
    earlier one. Every draw comes from generator, so a reseeded generator redraws the same hints.
    shoe: the shoe's pixels (B, 1, H, W) if not shoe_mask(photo) (a recoloured photo's own)."""
    batch, _, height, width = photo.shape
    device = photo.device
    k = max_patches if count is None else count
    hints = photo.new_zeros(batch, HINT_CHANNELS, height, width)
    if k == 0:
        return hints
    u = 1 - torch.rand(batch, generator=generator, device=device)  # (0, 1]
    if count is None:  # inverse CDF of the geometric law on {0, 1, ...}
        n = torch.floor(torch.log(u) / math.log1p(-p)) if p < 1 else torch.zeros_like(u)
        n = n.clamp(max=k).long()
    else:
        n = torch.full((batch,), count, device=device)
    side = torch.randint(1, max_side + 1, (batch, k), generator=generator, device=device)
    if on_shoe and shoe is None:
        shoe = shoe_mask(photo)
    weights = shoe.flatten(1).float() if on_shoe else \
        photo.new_ones(batch, height * width)
    weights[weights.sum(1) == 0] = 1  # no shoe: anywhere
    centre = torch.multinomial(weights, k, replacement=True, generator=generator)  # (B, K)
    top = (centre // width - (side - 1) // 2).clamp(min=0)
    left = (centre % width - (side - 1) // 2).clamp(min=0)
    top, left = torch.minimum(top, height - side), torch.minimum(left, width - side)
    # every patch's pixels on a (max_side × max_side) grid of offsets, the unused ones masked out
    offsets = torch.arange(max_side, device=device)
    dy, dx = offsets.view(1, 1, -1, 1), offsets.view(1, 1, 1, -1)
    inside = (dy < side[..., None, None]) & (dx < side[..., None, None])  # (B, K, S, S)
    inside &= (torch.arange(k, device=device).view(1, -1) < n[:, None])[..., None, None]
    rows = (top[..., None, None] + dy).clamp(max=height - 1)
    cols = (left[..., None, None] + dx).clamp(max=width - 1)
    index = (rows * width + cols).flatten(1)  # (B, K·S·S) flat pixel of each offset
    flat_photo = photo.float().flatten(2)  # (B, 3, H·W)
    values = flat_photo.gather(2, index[:, None].expand(-1, 3, -1)).view(batch, 3, k, -1)
    weight = inside.flatten(2)[:, None].float()  # (B, 1, K, S·S)
    mean = (values * weight).sum(3) / weight.sum(3).clamp(min=1)  # (B, 3, K) patch colours
    # the last patch over a pixel wins: max of (patch number + 1) there, which is order-free and so
    # deterministic on every device (a plain scatter with repeats is not on CUDA)
    number = (torch.arange(1, k + 1, device=device).view(1, -1, 1, 1) * inside).flatten(1)
    winner = torch.zeros(batch, height * width + 1, dtype=torch.long, device=device)
    spill = torch.where(inside.flatten(1), index, height * width)  # unused offsets: a spare slot
    winner.scatter_reduce_(1, spill, number, reduce="amax")
    winner = winner[:, :-1]  # (B, H·W): 0 = no hint, else patch number + 1
    colour = mean.gather(2, (winner - 1).clamp(min=0)[:, None].expand(-1, 3, -1))  # (B, 3, H·W)
    mask = (winner > 0)[:, None].float()
    hints = torch.cat([colour * mask, mask], dim=1).view(batch, HINT_CHANNELS, height, width)
    return hints.to(photo.dtype)


# --- colour in CIE Lab --------------------------------------------------------------------------

# sRGB (linear) -> CIE XYZ, D65 (IEC 61966-2-1), and the D65 white point
SRGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
D65_WHITE = (0.95047, 1.0, 1.08883)
LAB_DELTA = 6 / 29  # where CIE Lab's cube root meets its linear part


def srgb_to_lab(images: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """CIE Lab (B, 3, H, W) of sRGB images (B, 3, H, W) in [-1, 1]: the sRGB curve undone, XYZ
    under D65, then L* a* b* (L 0..100)."""
    rgb = ((images.to(dtype) + 1) / 2).clamp(0, 1)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = torch.tensor(SRGB_TO_XYZ, dtype=dtype, device=images.device)
    white = torch.tensor(D65_WHITE, dtype=dtype, device=images.device).view(1, 3, 1, 1)
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear) / white
    f = torch.where(xyz > LAB_DELTA**3, xyz.clamp(min=LAB_DELTA**3) ** (1 / 3),
                    xyz / (3 * LAB_DELTA**2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_to_srgb(lab: torch.Tensor) -> tuple:
    """(sRGB (B, 3, H, W) in [-1, 1], outside bool (B, 1, H, W)) of CIE Lab (B, 3, H, W): the
    inverse of srgb_to_lab, each channel clipped to the sRGB gamut; outside marks the pixels that
    needed it (by more than 1/255)."""
    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], dim=1)
    xyz = torch.where(f > LAB_DELTA, f.clamp(min=0) ** 3, 3 * LAB_DELTA**2 * (f - 4 / 29))
    white = torch.tensor(D65_WHITE, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1)
    matrix = torch.linalg.inv(torch.tensor(SRGB_TO_XYZ, dtype=torch.float64)).to(lab.device,
                                                                                  lab.dtype)
    linear = torch.einsum("ij,bjhw->bihw", matrix, xyz * white)
    clipped = linear.clamp(0, 1)
    rgb = torch.where(clipped <= 0.0031308, clipped * 12.92,
                      1.055 * clipped.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)
    unclipped = torch.where(linear <= 0.0031308, linear * 12.92,
                            1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)
    outside = ((unclipped < -1 / 255) | (unclipped > 1 + 1 / 255)).any(1, keepdim=True)
    return rgb * 2 - 1, outside


def weighted_median(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, C): per image and channel the weighted median of values (B, C, N) under weight (B, N)
    >= 0 (the smallest value whose share of the weight reaches one half)."""
    values, order = values.sort(dim=2)
    cumulative = weight[:, None].expand_as(values).gather(2, order).cumsum(2)
    below = (cumulative < cumulative[..., -1:] / 2).sum(2, keepdim=True)
    return values.gather(2, below.clamp(max=values.shape[2] - 1))[..., 0]


def move_colour(lab: torch.Tensor, target: torch.Tensor, region: torch.Tensor,
                weight: torch.Tensor) -> torch.Tensor:
    """lab (B, 3, H, W) with its region's pixels (bool (B, 1, H, W)) moved so that their weighted
    median (weight (B, 1, H, W)) lands on target (Lab, (B, 3, H, W) or (B, 3, 1, 1)): every pixel
    keeps its difference from the median, so shading and texture stay; the rest as it was."""
    median = weighted_median(lab.flatten(2), (weight * region).flatten(1).to(lab.dtype))
    return torch.where(region, lab + target - median[..., None, None], lab)


def recoloured(photo: torch.Tensor, target: torch.Tensor, region: torch.Tensor,
               weight: torch.Tensor) -> tuple:
    """(photos, outside): photos (B, 3, H, W) in [-1, 1] with their region moved in Lab to the
    sRGB colours target (move_colour, weighted by weight), clipped to the gamut; outside: the
    pixels that needed it."""
    lab = srgb_to_lab(photo, torch.float32)
    moved, outside = lab_to_srgb(move_colour(lab, srgb_to_lab(target, torch.float32), region,
                                             weight))
    return torch.where(region, moved.to(photo.dtype), photo), outside


def recolour_shoes(photo: torch.Tensor, generator: torch.Generator, p: float) -> tuple:
    """(photos, chosen (B,) bool): each real photo (B, 3, H, W) in [-1, 1] chosen with probability
    p gets its shoe (shoe_mask) moved in Lab to a random colour (uniform in the sRGB cube: any hue,
    chroma and lightness, also for the many black and brown shoes, which have no hue to rotate),
    its shading and texture kept, its background untouched. All on photo's device, from
    generator."""
    batch = photo.shape[0]
    chosen = torch.rand(batch, generator=generator, device=photo.device) < p
    target = torch.rand(batch, 3, 1, 1, generator=generator, device=photo.device) * 2 - 1
    shoe = shoe_mask(photo) & chosen[:, None, None, None]
    return recoloured(photo, target, shoe, shoe.float())[0], chosen


def training_hints(photo: torch.Tensor, generator: torch.Generator, p: float = 0.125,
                   max_patches: int = 32, max_side: int = 9, on_shoe: bool = True,
                   recolour: float = 0.0) -> tuple:
    """(photos, hints) for a training batch of real photos (B, 3, H, W): sample_hints, and with
    recolour > 0 first recolour_shoes, the hints then taken from the recoloured photo (so that the
    hints alone say its colour) and the photo kept recoloured only where it got a hint (images
    without keep the data's look). recolour = 0 draws exactly what sample_hints draws."""
    if recolour <= 0:
        return photo, sample_hints(photo, generator, p, max_patches, max_side, on_shoe)
    changed, chosen = recolour_shoes(photo, generator, recolour)
    hints = sample_hints(changed, generator, p, max_patches, max_side, on_shoe,
                         shoe=shoe_mask(photo))
    hinted = hints[:, 3].flatten(1).amax(1) > 0
    return torch.where((chosen & hinted)[:, None, None, None], changed, photo), hints


def transfer_colour(photo: torch.Tensor, hints: torch.Tensor) -> tuple:
    """(photos, outside) after G: the generated photos' (B, 3, H, W) shoes (shoe_mask) moved in
    Lab to the hints' (B, 4, H, W) colours: every pixel keeps its difference from the shoe's
    median, weighted by nearness to the hints (their spread), and takes the spread's colour as its
    target, so one colour makes the whole shoe that colour with its shading and texture. outside
    (B, 1, H, W): the pixels clipped to the sRGB gamut. An image without hints is unchanged."""
    colour, near = spread(hints)
    shoe = shoe_mask(photo) & (hints[:, 3:].flatten(1).amax(1) > 0)[:, None, None, None]
    moved, outside = recoloured(photo, colour, shoe, near + 1e-3)
    return moved, outside & shoe


# --- hints a person gives -----------------------------------------------------------------------

# a colour as CSS and PIL write it, parsed here (PIL's getrgb takes rgb(999,0,0) and 200%, skips
# alpha and reads any Unicode digit): ASCII hex digits, functions of plain decimal numbers
HEX_COLOUR = re.compile(r"#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})")
COLOUR_FUNCTION = re.compile(r"(rgba?|hsla?|hs[bv])\(([0-9.%, ]*)\)")
COLOUR_NUMBER = re.compile(r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(%?)")
COMPONENTS = {"rgb": ("red", "green", "blue"), "hsl": ("hue", "saturation", "lightness"),
              "hsv": ("hue", "saturation", "value"), "hsb": ("hue", "saturation", "brightness")}
COLOUR_FORMS = ("give #rrggbb such as #b22222, #rgb, rgb(178, 34, 34), rgb(70%, 13%, 13%), "
                "hsl(0, 68%, 42%) or a name such as red")


def parse_colour(text: str) -> tuple:
    """(r, g, b) 0..255 of a colour: a CSS name, #rgb or #rrggbb (#rgba, #rrggbbaa when opaque),
    rgb(r, g, b) of 0..255 or of 0%..100%, hsl(h, s%, l%), hsv(h, s%, v%) or hsb() with a hue of
    0..360, their rgba() and hsla() with an alpha of 1 or 100%; ValueError with one line otherwise,
    naming a component out of range or an alpha that is not opaque."""
    colour = text.strip().lower() if isinstance(text, str) else ""
    if colour in ImageColor.colormap:  # CSS's names: PIL's table holds their #rrggbb
        return tuple(ImageColor.getrgb(colour)[:3])
    if HEX_COLOUR.fullmatch(colour):
        digits = colour[1:] if len(colour) > 5 else "".join(2 * digit for digit in colour[1:])
        values = bytes.fromhex(digits)
        if len(values) == 4 and values[3] != 255:
            raise ValueError(f"{text!r}: alpha {digits[6:]} of ff: not opaque (a hint is an "
                             "opaque colour: #rrggbb, or #rrggbbff)")
        return tuple(values[:3])
    function = COLOUR_FUNCTION.fullmatch(colour)
    numbers = [COLOUR_NUMBER.fullmatch(part.strip()) for part in function[2].split(",")] \
        if function else []
    if function and len(numbers) == 3 + function[1].endswith("a") and all(numbers):
        rgb = colour_function(text, function[1][:3],
                              [(float(number[1]), number[2]) for number in numbers])
        if rgb is not None:
            return rgb
    raise ValueError(f"{text!r} is not a colour ({COLOUR_FORMS})")


def colour_function(text: str, kind: str, values: list) -> tuple | None:
    """(r, g, b) of rgb(), hsl() or hsv() values [(number, '%' or '')], rounded as PIL rounds;
    None for a mix of units they do not take; ValueError for a value out of range or an alpha (a
    fourth value) that is not opaque."""
    units = [unit for _, unit in values[:3]]
    if kind == "rgb" and len(set(units)) == 1:  # all percentages or all numbers, as in CSS
        limits = [(100, "%") if units[0] else (255, "")] * 3
    elif kind != "rgb" and units == ["", "%", "%"]:  # a hue in degrees, then two percentages
        limits = [(360, ""), (100, "%"), (100, "%")]
    else:
        return None
    if len(values) == 4:
        limits.append((100, "%") if values[3][1] else (1, ""))
    for name, (value, unit), (most, _) in zip((*COMPONENTS[kind], "alpha"), values, limits):
        if value > most:
            raise ValueError(f"{text!r}: {name} {value:g}{unit} is out of range (0{unit} to "
                             f"{most}{unit})")
    if len(values) == 4 and values[3][0] != limits[3][0]:
        alpha, unit = values[3]
        raise ValueError(f"{text!r}: alpha {alpha:g}{unit} of {limits[3][0]}{unit}: not opaque "
                         "(a hint is an opaque colour)")
    first, second, third = (value / most for (value, _), (most, _) in zip(values[:3], limits))
    if kind == "rgb":
        rgb = (first, second, third)
    elif kind == "hsl":
        rgb = colorsys.hls_to_rgb(first, third, second)
    else:
        rgb = colorsys.hsv_to_rgb(first, second, third)
    return tuple(int(channel * 255 + 0.5) for channel in rgb)


def read_hints_image(path) -> tuple:
    """(colours uint8 (H, W, 3), painted bool (H, W)) of a hints image: its non-transparent pixels
    where it has alpha, else its pixels that are not white paper; opened as every image given is
    (dataset.open_image: its formats, its cap, 16 bits scaled); ValueError with one line if it
    cannot be read."""
    img = open_image(path, min_side=1)  # a size unlike the sketch's is said by the caller
    try:
        with img, quiet_pil():
            img = eight_bit(ImageOps.exif_transpose(img))
            has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            rgba = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: cannot read as an image ({e})") from None
    colours = np.ascontiguousarray(rgba[..., :3])
    if has_alpha:
        painted = rgba[..., 3] >= PAINTED_ALPHA
    else:
        painted = (colours < 255 - PAPER_TOLERANCE).any(axis=2)
    return colours, painted


def source_ranges(start: float, length: float, n_out: int, n_in: int) -> tuple:
    """For each of n_out output pixels along one axis, which covers [start, start + length) of
    n_in input pixels: (first, stop) of the input pixels whose centres fall in its share, or, when
    none does (upscaling), the one under its own centre; clipped to the input."""
    scale = length / n_out
    edges = start + scale * np.arange(n_out + 1)
    first, stop = np.ceil(edges[:-1] - 0.5), np.ceil(edges[1:] - 0.5)
    under = np.floor(start + scale * (np.arange(n_out) + 0.5))
    empty = stop <= first
    first, stop = np.where(empty, under, first), np.where(empty, under + 1, stop)
    return (np.clip(first, 0, n_in).astype(np.int64), np.clip(stop, 0, n_in).astype(np.int64))


def hints_from_image(colours: np.ndarray, painted: np.ndarray, region: tuple,
                     out_size: tuple) -> torch.Tensor:
    """Hints (4, H, W) in the generator's frame from painted pixels of an input of the sketch's
    size: output pixel (y, x) shows the input area region (left, top, width, height) covers at
    out_size (W, H) (sketch.Prepared's); it is a hint if a painted input pixel falls in it, coloured
    with their mean (so a hint is never lost when shrinking, nor blurred when enlarging)."""
    left, top, region_w, region_h = region
    out_w, out_h = out_size
    hints = torch.zeros(HINT_CHANNELS, out_h, out_w)
    rows, cols = np.flatnonzero(painted.any(axis=1)), np.flatnonzero(painted.any(axis=0))
    if len(rows) == 0:
        return hints
    # only the painted pixels' box: a few hints on a large photo cost a small table
    box_top, box_left = rows[0], cols[0]
    painted = painted[box_top:rows[-1] + 1, box_left:cols[-1] + 1]
    colours = colours[box_top:rows[-1] + 1, box_left:cols[-1] + 1]
    height, width = painted.shape
    y0, y1 = source_ranges(top - box_top, region_h, out_h, height)
    x0, x1 = source_ranges(left - box_left, region_w, out_w, width)
    # integral images of the painted count and colour: any box's sum from four corners
    values = np.concatenate([painted[..., None], colours * painted[..., None]], axis=2)
    table = np.zeros((height + 1, width + 1, 4))
    table[1:, 1:] = values.astype(np.float64).cumsum(0).cumsum(1)
    ys0, ys1, xs0, xs1 = y0[:, None], y1[:, None], x0[None], x1[None]
    sums = table[ys1, xs1] - table[ys0, xs1] - table[ys1, xs0] + table[ys0, xs0]  # (H, W, 4)
    count = sums[..., 0]
    mask = count > 0.5
    rgb = np.where(mask[..., None], sums[..., 1:] / np.maximum(count, 1)[..., None] / 127.5 - 1, 0)
    hints = np.concatenate([rgb, mask[..., None]], axis=2).astype(np.float32)
    return torch.from_numpy(hints).permute(2, 0, 1).contiguous()


def drawing_inside(sketch: torch.Tensor) -> tuple:
    """(ink, inside), bool numpy (H, W) of a sketch (3, H, W) in [-1, 1]: its strokes (any gray:
    resized lines are faint), and the free pixels inside its closed shape (gaps of 1/32 of the
    longer side closed, holes filled)."""
    ink = (sketch.float().mean(0) < WHITE).cpu().numpy()
    if not ink.any():
        return ink, ink.copy()
    close = max(1, round(max(ink.shape) / 32))
    padded = np.pad(ink, close + 1)  # the closing's erosion must not eat a shape at the border
    # a square element: a cross's closing never bridges a gap in a straight stroke (the corners of
    # its dilation do not reach past the stroke's ends)
    closed = ndimage.binary_closing(padded, np.ones((3, 3)), iterations=close)[
        close + 1:-close - 1, close + 1:-close - 1]
    return ink, ndimage.binary_fill_holes(closed) & ~ink


def inside_point(sketch: torch.Tensor) -> tuple:
    """(y, x) of a point inside the drawing of a sketch (3, H, W) in [-1, 1], as far from its
    strokes as the drawing allows: the deepest point of its closed shape (gaps of a few pixels
    closed first); of an open drawing, the free pixel nearest the strokes' centroid; of no
    drawing, the centre."""
    ink, inside = drawing_inside(sketch)
    height, width = ink.shape
    if not ink.any():
        return height // 2, width // 2
    if inside.any():
        depth = ndimage.distance_transform_edt(~ink) * inside
        y, x = np.unravel_index(np.argmax(depth), depth.shape)
        return int(y), int(x)
    ys, xs = np.nonzero(ink)
    free = np.argwhere(~ink)
    nearest = free[np.argmin((free[:, 0] - ys.mean()) ** 2 + (free[:, 1] - xs.mean()) ** 2)]
    return int(nearest[0]), int(nearest[1])


def colour_patch(sketch: torch.Tensor, rgb: tuple, side: int) -> torch.Tensor:
    """Hints (4, H, W): one square hint of colour rgb (0..255) and this side, centred on the point
    inside_point finds in the sketch (3, H, W)."""
    height, width = sketch.shape[1:]
    y, x = inside_point(sketch)
    top = min(max(y - (side - 1) // 2, 0), max(height - side, 0))
    left = min(max(x - (side - 1) // 2, 0), max(width - side, 0))
    hints = torch.zeros(HINT_CHANNELS, height, width)
    colour = torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1
    hints[:3, top:top + side, left:left + side] = colour[:, None, None]
    hints[3, top:top + side, left:left + side] = 1
    return hints


def overlay(sketch: torch.Tensor, hints: torch.Tensor) -> torch.Tensor:
    """The sketch (3, H, W) with its hints (4, H, W) painted over it: what the generator was
    given, as one image."""
    mask = hints[3:4] > 0
    return torch.where(mask, hints[:3], sketch)
