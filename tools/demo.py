"""Built-in demo data: procedurally drawn shoes paired with their edge maps, as edges2shoes is.

Each file root/{train,val}/{i}_AB.jpg is one size x 2size image: the sketch (black lines on white,
made by edges.photo_to_sketch) on the left, the photo on the right, as in edges2shoes. It lets you
train and test the whole pipeline without downloading the 2 GB data set.

Usage:
    python -m tools.demo --out data/demo --train 400 --val 16 --seed 0
"""
import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from tools.edges import sketch_pixels

STYLES = ["sneaker", "boot", "pump", "loafer"]
UPPER_COLOURS = [(30, 30, 34), (28, 40, 80), (110, 62, 30), (176, 122, 72), (160, 28, 36),
                 (120, 120, 126), (82, 90, 50), (96, 24, 40), (40, 80, 170), (196, 190, 182),
                 (214, 120, 150), (20, 110, 110), (200, 160, 110), (70, 46, 36)]
SOLE_COLOURS = [(238, 236, 228), (30, 30, 30), (180, 130, 80), (214, 206, 190), (90, 90, 92),
                (120, 78, 48)]
LINING_COLOURS = [(214, 190, 160), (60, 50, 46), (190, 170, 150)]
BATCH = 32  # photos per edge-extraction call


def jitter(rng, colour, amount=18):
    """A random shade near colour, so no two shoes are exactly the same."""
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def tint(colour, factor, offset=0):
    """colour * factor + offset, for darker seams and lighter highlights of the same material."""
    return tuple(int(np.clip(c * factor + offset, 0, 255)) for c in colour)


def pick(rng, options):
    """One random element of a list (rng.choice would turn tuples into arrays)."""
    return options[int(rng.integers(len(options)))]


def catmull_rom(points, closed=True, samples=16):
    """Smooth curve through key points (N, 2) -> (M, 2), for organic shoe outlines."""
    points = np.asarray(points, dtype=float)
    padded = np.concatenate([points[-1:], points, points[:2]] if closed
                            else [points[:1], points, points[-1:]])
    t = np.linspace(0, 1, samples, endpoint=False)[:, None]
    curve = [0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                    + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
             for p0, p1, p2, p3 in zip(padded, padded[1:], padded[2:], padded[3:])]
    return np.concatenate(curve + ([] if closed else [points[-1:]]))


def smoothstep(x):
    """0 below 0, 1 above 1, smooth in between."""
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def design_shoe(rng):
    """Geometry and colours of one shoe in shoe units: x from toe (0) to heel (1), y up from the
    ground."""
    style = pick(rng, STYLES)
    upper_colour = jitter(rng, pick(rng, UPPER_COLOURS))
    contrasting = [c for c in UPPER_COLOURS
                   if sum(abs(a - b) for a, b in zip(c, upper_colour)) > 150]
    toe_spring = rng.uniform(0.02, 0.045)
    heel_lift = {"sneaker": 0.0, "boot": rng.uniform(0.03, 0.06), "pump": rng.uniform(0.24, 0.34),
                 "loafer": rng.uniform(0.02, 0.035)}[style]
    sole_height = {"sneaker": rng.uniform(0.07, 0.11), "boot": rng.uniform(0.05, 0.07),
                   "pump": 0.018, "loafer": rng.uniform(0.03, 0.045)}[style]
    arch = (0.25, 0.75) if style == "pump" else (0.5, 0.78)  # where the sole rises to the heel

    def bottom(x):
        """Underside of the sole: toe spring at the front, raised by the heel at the back."""
        toe_lift = toe_spring * smoothstep((0.2 - x) / 0.2) ** 1.5
        return toe_lift + heel_lift * smoothstep((x - arch[0]) / (arch[1] - arch[0]))

    def top(x):
        """Upper side of the sole, a little thinner at the toe."""
        return bottom(x) + sole_height * (1 - 0.3 * smoothstep((0.15 - x) / 0.15))

    xs = np.linspace(0.0, 1.0, 40)
    shoe = {"style": style, "upper_colour": upper_colour, "accent": jitter(rng,
                                                                           pick(rng, contrasting)),
            "sole_colour": jitter(rng, pick(rng, SOLE_COLOURS), 8), "top": top, "bottom": bottom,
            "sole": np.concatenate([np.stack([xs, bottom(xs)], 1), [[1.006,
                                                                     (bottom(1) + top(1)) / 2]],
                                    np.stack([xs[::-1], top(xs[::-1])], 1),
                                    [[-0.008, (bottom(0) + top(0)) / 2]]]),
            "heel": None, "lining": None, "tab": None, "laces": None, "gore": None, "strap": None}
    toe = rng.uniform(0.18, 0.22) if style != "pump" else 0.0  # height of the toe box
    start = [(0.04, top(0.04) - 0.01), (0.0, top(0.0) + 0.03)]  # inside the sole, then the toe tip
    end = [(0.99, top(1.0) - 0.01), (0.5, top(0.5) - 0.02)]  # back of the heel into the sole
    if style == "sneaker":
        collar, throat = rng.uniform(0.38, 0.46), rng.uniform(0.36, 0.42)
        upper = start + [(0.03, toe - 0.025), (0.1, toe), (0.25, toe + 0.04), (throat, toe + 0.09),
                         (0.56, collar - 0.01), (0.6, collar + 0.055), (0.66, collar + 0.04),
                         (0.69, collar - 0.01), (0.82, collar - 0.07), (0.94, collar + 0.005),
                         (0.995, collar - 0.05), (1.01, 0.2)] + end
        shoe["laces"] = ((throat + 0.01, toe + 0.085), (0.6, collar + 0.005),
                         5 + int(rng.integers(2)))
        shoe["tab"] = (0.92, collar)
    elif style == "boot":
        shaft, front = rng.uniform(0.62, 0.85), rng.uniform(0.46, 0.52)
        upper = start + [(0.03, toe - 0.02), (0.1, toe + 0.01), (0.25, toe + 0.05), (0.38, 0.3),
                         (front - 0.02, shaft * 0.62), (front, shaft), (0.75, shaft + 0.01),
                         (0.97, shaft), (0.95, shaft * 0.6), (1.01, 0.2)] + end
        seat = bottom(0.8)
        shoe["heel"] = [(0.76, seat + 0.01), (1.0, seat + 0.01), (0.995, 0.0), (0.77, 0.0)]
        if rng.random() < 0.5:
            shoe["laces"] = ((0.38, 0.31), (front + 0.01, shaft - 0.02), 7)
        else:  # chelsea boot: elastic gore and a pull tab
            shoe["gore"] = (0.76, shaft, 0.36)
            shoe["tab"] = (0.95, shaft)
    elif style == "pump":
        opening = rng.uniform(0.06, 0.09)
        upper = [(0.05, top(0.05) - 0.005), (-0.005, top(0.0) + 0.02), (0.08, top(0.08) + 0.075),
                 (0.25, top(0.25) + 0.115), (0.36, top(0.36) + 0.12), (0.55, top(0.55) + opening),
                 (0.78, top(0.78) + opening + 0.03), (0.96, top(0.96) + 0.16),
                 (1.01, top(1.0) + 0.09), (1.0, top(1.0) - 0.005), (0.6, top(0.6) - 0.01),
                 (0.3, top(0.3) - 0.01)]
        # the inside of the far side shows above the opening
        shoe["lining"] = catmull_rom([(0.36, top(0.36) + 0.11), (0.37, top(0.37) + 0.13),
                                      (0.58, top(0.58) + opening + 0.045),
                                      (0.82, top(0.82) + opening + 0.07), (0.95, top(0.95) + 0.155),
                                      (0.8, top(0.8) + opening)])
        tip = rng.uniform(0.02, 0.08)  # width of the heel at the ground: stiletto to block
        front = catmull_rom([(0.955 - tip, 0.0), (0.93 - tip * 0.6, heel_lift * 0.45),
                             (0.8, heel_lift + 0.005)],
                            closed=False)
        shoe["heel"] = np.concatenate([[(1.0, heel_lift + 0.01), (0.985, heel_lift * 0.5),
                                        (0.965, 0.0)], front])
    else:  # loafer
        toe, throat = toe + 0.02, rng.uniform(0.3, 0.33)
        upper = start + [(0.04, toe - 0.025), (0.12, toe + 0.005), (0.3, toe + 0.05),
                         (0.45, throat), (0.52, throat - 0.005), (0.72, throat - 0.06),
                         (0.93, throat - 0.02), (1.005, throat - 0.06), (1.01, 0.15)] + end
        seat = bottom(0.8)
        shoe["heel"] = [(0.78, seat + 0.01), (1.0, seat + 0.01), (0.995, 0.0), (0.79, 0.0)]
        shoe["strap"] = (0.46, throat, "penny" if rng.random() < 0.6 else "bit")
    shoe["upper"] = catmull_rom(upper)
    # where light glints on the toe box
    shoe["highlight"] = (0.14, max(toe, top(0.14) + 0.08) - 0.03)
    return shoe


def draw_upper_details(draw, rng, shoe, to_px, unit):
    """Panels, stripes, swoosh, seams, stitching and perforations; the caller clips them to the
    upper."""
    style, accent, top, colour = shoe["style"], shoe["accent"], shoe["top"], shoe["upper_colour"]
    darker = tint(colour, 0.7)
    if style in ("sneaker", "boot") and rng.random() < 0.7:  # toe cap, maybe perforated
        cap = catmull_rom([(-0.05, 0.0), (-0.05, 0.4), (0.1, 0.3), (0.17 + rng.uniform(0, 0.05),
                                                                    0.1), (0.15, 0.0)])
        draw.polygon(to_px(cap), fill=accent if style == "sneaker" else darker)
        for k in range(10 if rng.random() < 0.6 else 0):
            px, py = to_px([(0.035 + 0.022 * (k % 5), 0.1 + 0.028 * (k // 5))])[0]
            draw.ellipse([px - unit, py - unit, px + unit, py + unit], fill=tint(accent, 0.6))
    if style == "sneaker":  # heel counter panel
        x, height = shoe["tab"]
        counter = [(x, height + 0.1), (x - 0.02, height - 0.1), (x + 0.1, height - 0.18),
                   (x + 0.1, height + 0.1)]
        draw.polygon(to_px(catmull_rom(counter)), fill=accent)
    if style == "sneaker":
        if rng.random() < 0.5:  # swoosh
            lower = catmull_rom([(0.86, 0.25), (0.62, top(0.62) + 0.035), (0.36, 0.19)],
                                closed=False)
            upper = catmull_rom([(0.36, 0.19), (0.56, top(0.56) + 0.11), (0.82, 0.27)],
                                closed=False)
            draw.polygon(to_px(np.concatenate([lower, upper])), fill=accent)
        else:  # three slanted stripes
            for k in range(3):
                x = 0.47 + 0.075 * k
                draw.polygon(to_px([(x, top(x)), (x + 0.04, top(x)), (x + 0.12, 0.36),
                                    (x + 0.08, 0.36)]), fill=accent)
    if style == "pump" and rng.random() < 0.5:  # patent shine along the vamp
        shine = [(0.07, top(0.07) + 0.05), (0.3, top(0.3) + 0.1), (0.33, top(0.33) + 0.095),
                 (0.09, top(0.09) + 0.04)]
        draw.polygon(to_px(shine), fill=tint(colour, 0.6, 100))
    if style == "loafer":  # raised moccasin apron seam
        seam = catmull_rom([(0.03, 0.1), (0.1, 0.175), (0.3, 0.215), (0.46, 0.27)], closed=False)
        draw.line(to_px(seam), fill=tint(colour, 0.55), width=max(1, int(unit * 2.5)))
        draw.line(to_px(seam + [0.0, -0.012]), fill=tint(colour, 1.1, 20), width=max(1, int(unit)))
    if shoe["gore"] is not None:  # elastic side panel of a chelsea boot
        x, height, depth = shoe["gore"]
        gore = catmull_rom([(x - 0.07, height + 0.05), (x - 0.045, depth + 0.05), (x, depth),
                            (x + 0.045, depth + 0.05), (x + 0.07, height + 0.05)], closed=False)
        draw.polygon(to_px(gore), fill=tint(colour, 0.4))
    stitch_colour = tint(colour, 0.5, 120) if rng.random() < 0.5 else darker
    xs = np.linspace(0.04, 0.96, 46)
    for x0, x1 in zip(xs[::2], xs[1::2]):  # welt stitching just above the sole
        draw.line(to_px([(x0, top(x0) + 0.022), (x1, top(x1) + 0.022)]), fill=stitch_colour,
                  width=max(1, int(unit)))


def draw_laces(draw, shoe, to_px, unit):
    """Eyestay, eyelets and laces along the instep, from the throat to the collar."""
    (x0, y0), (x1, y1), count = shoe["laces"]
    direction = np.array([x1 - x0, y1 - y0]) / np.hypot(x1 - x0, y1 - y0)
    inward = np.array([direction[1], -direction[0]])  # perpendicular, pointing into the upper
    line = np.array([[x0, y0], [x1, y1]])
    eyestay = np.concatenate([line + 0.01 * inward, (line + 0.075 * inward)[::-1]])
    draw.polygon(to_px(eyestay), fill=tint(shoe["upper_colour"], 0.75))
    lace_colour = pick_lace_colour(shoe)
    for t0, t1 in zip(np.linspace(0, 1, count)[:-1], np.linspace(0, 1, count)[1:]):
        eyelet = line[0] + (line[1] - line[0]) * t0 + 0.045 * inward
        # lace crosses over the tongue
        over = line[0] + (line[1] - line[0]) * (t0 + t1) / 2 - 0.008 * inward
        draw.line(to_px([eyelet, over]), fill=tint(lace_colour, 0.7), width=int(5 * unit))
        draw.line(to_px([eyelet, over]), fill=lace_colour, width=int(3 * unit))
        px, py = to_px([eyelet])[0]
        draw.ellipse([px - 2 * unit, py - 2 * unit, px + 2 * unit, py + 2 * unit],
                     fill=(45, 45, 45))


def pick_lace_colour(shoe):
    """White laces on dark shoes, dark laces on light ones."""
    return (238, 236, 230) if sum(shoe["upper_colour"]) < 450 else (40, 36, 34)


def draw_shoe(rng, size=256):
    """A side view of a procedurally drawn shoe on white, like a UT-Zappos50K product photo."""
    shoe = design_shoe(rng)
    canvas = 2 * size  # drawn at twice the size, then downsampled for anti-aliasing
    parts = [shoe["upper"], shoe["sole"], shoe["heel"], shoe["lining"]]
    outline = np.concatenate([np.asarray(part) for part in parts if part is not None])
    low, high = (outline.min(0),
                 outline.max(0) + [0, 0.1 if shoe["tab"] and shoe["style"] == "boot" else 0])
    margin = 0.05 * canvas
    fit = min((canvas - 2 * margin) / (high[0] - low[0]),
              (canvas - 2 * margin) / (high[1] - low[1]))
    scale = float(fit * rng.uniform(0.8, 1.0))  # pixels per shoe unit
    left = (margin + rng.uniform(0, canvas - 2 * margin - scale * (high[0] - low[0]))
            - scale * low[0])
    ground = (canvas - margin - rng.uniform(0, canvas - 2 * margin - scale * (high[1] - low[1]))
              + scale * low[1])
    unit = scale / 400  # about one pixel of the 2x canvas for a shoe filling the frame

    def to_px(points):
        return [(left + scale * x, ground - scale * y) for x, y in np.asarray(points, dtype=float)]

    image = Image.new("RGB", (canvas, canvas), (255, 255, 255))
    silhouette, upper_mask = (Image.new("L", (canvas, canvas), 0),
                              Image.new("L", (canvas, canvas), 0))
    draw, silhouette_draw = ImageDraw.Draw(image), ImageDraw.Draw(silhouette)
    if shoe["style"] == "boot" and shoe["tab"] is not None:  # pull tab sticking out of the shaft
        x, height = shoe["tab"]
        tab = catmull_rom([(x - 0.03, height - 0.02), (x - 0.025, height + 0.07),
                           (x + 0.025, height + 0.075), (x + 0.03, height - 0.02)])
        draw.polygon(to_px(tab), fill=shoe["accent"])
        silhouette_draw.polygon(to_px(tab), fill=255)
    if shoe["lining"] is not None:
        draw.polygon(to_px(shoe["lining"]), fill=jitter(rng, pick(rng, LINING_COLOURS)))
        silhouette_draw.polygon(to_px(shoe["lining"]), fill=255)
    draw.polygon(to_px(shoe["upper"]), fill=shoe["upper_colour"])
    ImageDraw.Draw(upper_mask).polygon(to_px(shoe["upper"]), fill=255)
    details = image.copy()
    draw_upper_details(ImageDraw.Draw(details), rng, shoe, to_px, unit)
    image = Image.composite(details, image, upper_mask)
    draw = ImageDraw.Draw(image)
    if shoe["laces"] is not None:
        draw_laces(draw, shoe, to_px, unit)
    if shoe["strap"] is not None and shoe["strap"][2] == "penny":  # saddle strap with its slot
        x, throat, _ = shoe["strap"]
        draw.polygon(to_px([(x - 0.08, throat + 0.0), (x + 0.08, throat - 0.025), (x + 0.06, 0.15),
                            (x - 0.06, 0.16)]),
                     fill=tint(shoe["upper_colour"], 0.6))
        slot = to_px([(x - 0.04, throat - 0.015), (x + 0.04, throat - 0.085)])
        draw.chord(slot, 0, 180, fill=tint(shoe["upper_colour"], 0.25))
    elif shoe["strap"] is not None:  # horsebit: a metal bar between two rings
        x, throat, _ = shoe["strap"]
        gold = (206, 170, 84)
        draw.line(to_px([(x - 0.07, throat - 0.045), (x + 0.07, throat - 0.06)]), fill=gold,
                  width=int(4 * unit))
        for ring_x in (x - 0.08, x + 0.08):
            ring = to_px([(ring_x - 0.025, throat - 0.02), (ring_x + 0.025, throat - 0.08)])
            draw.ellipse(ring, outline=gold, width=int(4 * unit))
    if shoe["heel"] is not None:
        heel_colour = (shoe["upper_colour"] if shoe["style"] == "pump" and rng.random() < 0.6
                       else shoe["sole_colour"])
        draw.polygon(to_px(shoe["heel"]), fill=tint(heel_colour, 0.85))
        silhouette_draw.polygon(to_px(shoe["heel"]), fill=255)
    draw.polygon(to_px(shoe["sole"]), fill=shoe["sole_colour"])
    if shoe["style"] == "sneaker":  # darker outsole band
        xs = np.linspace(0.0, 1.0, 30)
        band = ([(x, shoe["bottom"](x) + 0.025) for x in xs]
                + [(x, shoe["bottom"](x) - 0.01) for x in xs[::-1]])
        draw.polygon(to_px(band), fill=tint(shoe["sole_colour"], 0.55))
    silhouette_draw.polygon(to_px(shoe["upper"]), fill=255)
    silhouette_draw.polygon(to_px(shoe["sole"]), fill=255)
    image, silhouette = (image.resize((size, size), Image.Resampling.LANCZOS),
                         silhouette.resize((size, size), Image.Resampling.LANCZOS))
    highlight = [coordinate / 2 for coordinate in to_px([shoe["highlight"]])[0]]
    image = shade(image, silhouette, ground / 2, scale / 2, highlight)  # smooth, so 1x is enough
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def shade(image, silhouette, ground, scale, highlight):
    """Light from above: brighter top, darker bottom and rim, a glint on the toe; only inside the
    silhouette."""
    pixels = np.asarray(image, dtype=np.float32)
    mask = np.asarray(silhouette, dtype=np.float32)[..., None] / 255
    rows = np.arange(pixels.shape[0], dtype=np.float32)[:, None, None]
    cols = np.arange(pixels.shape[1], dtype=np.float32)[None, :, None]
    light = 0.84 + 0.24 * np.clip((ground - rows) / scale / 0.5, 0, 1)
    rim = np.asarray(silhouette.filter(ImageFilter.GaussianBlur(scale * 0.02)),
                     dtype=np.float32)[..., None] / 255
    light = light * (0.8 + 0.2 * np.clip(rim * 2 - 0.5, 0, 1))
    glint = np.exp(-(((cols - highlight[0]) / (0.1 * scale)) ** 2
                     + ((rows - highlight[1]) / (0.03 * scale)) ** 2))
    shaded = pixels * light + 60 * glint
    # inside stays a shade below pure white, so even a white shoe keeps its outline
    shaded = np.clip(shaded, 0, 248) * mask + pixels * (1 - mask)
    return Image.fromarray(shaded.astype(np.uint8))


def demo_is_complete(root, settings, expected_names):
    """True if root holds a finished demo with these settings and exactly the expected files."""
    marker = root / ".demo.json"
    if not marker.exists() or json.loads(marker.read_text()) != {**settings, "complete": True}:
        return False
    return all({p.name for p in (root / split).glob("*_AB.jpg")} == names
               for split, names in expected_names.items())


def make_demo(root, n_train=400, n_val=16, seed=0, size=256):
    """Write the demo data set to root (or keep it if already there) and return root as a Path."""
    root = Path(root)
    settings = {"n_train": n_train, "n_val": n_val, "seed": seed, "size": size}
    counts = {"train": n_train, "val": n_val}
    expected_names = {split: {f"{i}_AB.jpg" for i in range(1, count + 1)}
                      for split, count in counts.items()}
    if demo_is_complete(root, settings, expected_names):
        return root
    marker = root / ".demo.json"
    has_images = any(any((root / split).glob("*_AB.jpg")) for split in counts)
    if has_images and not marker.exists():  # never delete a real data set that happens to live here
        raise FileExistsError(f"{root} holds *_AB.jpg files not made by make_demo; choose "
                              f"another folder")
    root.mkdir(parents=True, exist_ok=True)
    # the marker says "ours, unfinished" until the end, so an interrupted run is cleaned and redone
    marker.write_text(json.dumps({**settings, "complete": False}))
    for split in counts:
        (root / split).mkdir(exist_ok=True)
        for stale in (root / split).glob("*_AB.jpg"):
            stale.unlink()
    # one random stream per image: image i is the same whatever n_train is; train and val differ
    jobs = [(split, i, np.random.default_rng([seed, split_id, i]))
            for split_id, (split, count) in enumerate(counts.items()) for i in range(1, count + 1)]
    write_pairs(root, jobs, size)
    marker.write_text(json.dumps({**settings, "complete": True}))
    return root


def write_pairs(root, jobs, size):
    """Draw, edge-map and save each (split, index, rng) job as root/split/{index}_AB.jpg, a batch at
    a time."""
    with tqdm(total=len(jobs), desc=f"demo data -> {root}", unit="img") as progress:
        for start in range(0, len(jobs), BATCH):
            batch = jobs[start:start + BATCH]
            # (B, H, W, 3)
            photos = np.stack([np.asarray(draw_shoe(rng, size)) for _, _, rng in batch])
            sketches = sketch_pixels(photos)  # (B, H, W, 3)
            for (split, i, _), sketch, photo in zip(batch, sketches, photos):
                # (H, 2W, 3): sketch left, photo right
                pair = np.concatenate([sketch, photo], axis=1)
                Image.fromarray(pair).save(root / split / f"{i}_AB.jpg", quality=95)
            progress.update(len(batch))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/demo", help="folder to write train/ and val/ into")
    parser.add_argument("--train", type=int, default=400, help="number of training pairs")
    parser.add_argument("--val", type=int, default=16, help="number of validation pairs")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same images")
    parser.add_argument("--size", type=int, default=256, help="side of each half, in pixels")
    args = parser.parse_args()
    root = make_demo(args.out, args.train, args.val, args.seed, args.size)
    print(f"demo data set: {root / 'train'} ({args.train} pairs), {root / 'val'} "
          f"({args.val} pairs)")
