"""Sketches as people bring them: one clean drawing made into light pencil, a phone photo, a thick
marker drawn small on a big canvas and blue ballpoint must be fitted as the clean one is; blank and
noise pages are no drawing; the preparation's cost does not grow with the image."""

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter, ImageOps

import sketch
from sketch import normalise_strokes, prepare_sketch

SIZE = 256  # the model size the tests prepare at: the fitted lines come out unresized
MARKER_CANVAS, MARKER_SIDE, MARKER_AT = (1024, 768), 260, (610, 90)  # a small drawing, off centre


def clean_drawing(side: int = 360, width: int = 3) -> Image.Image:
    """A shoe in black pen on white: sole, heel, upper, a strap and laces."""
    img = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(img)
    s = side / 360
    points = [(40, 250), (300, 250), (320, 230), (300, 215), (200, 205), (150, 130), (90, 120),
              (70, 200), (40, 215)]
    draw.line([(x * s, y * s) for x, y in points + points[:1]], fill=0, width=width, joint="curve")
    draw.rectangle([40 * s, 250 * s, 75 * s, 290 * s], outline=0, width=width)  # heel
    draw.arc([95 * s, 100 * s, 205 * s, 200 * s], 200, 320, fill=0, width=width)
    for k in range(3):  # laces
        draw.line([(115 + 18 * k) * s, (150 + 8 * k) * s, (150 + 18 * k) * s, (135 + 8 * k) * s],
                  fill=0, width=width)
    draw.line([60 * s, 230 * s, 290 * s, 232 * s], fill=0, width=width)  # welt
    return img


def ink_of(img: Image.Image) -> np.ndarray:
    """(H, W) in [0, 1]: how much ink each pixel of a clean drawing holds."""
    return 1 - np.asarray(img.convert("L"), dtype=np.float32) / 255


def pencil(clean):
    """Light pencil: lines gray 170 of 255."""
    return Image.fromarray((255 - ink_of(clean) * 85).astype(np.uint8))


def phone_photo(clean, seed=0):
    """Gray, tinted paper under light falling off to one side, sensor noise; saved as JPEG."""
    rng = np.random.default_rng(seed)
    height, width = clean.size[1], clean.size[0]
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    light = 1.05 - 0.4 * x - 0.1 * y - 0.3 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)  # a dim side
    paper = np.array([190, 184, 170]) * light[..., None]
    ink = ink_of(clean)[..., None] * 0.85
    photo = paper * (1 - ink) + 25 * ink + rng.normal(0, 5, paper.shape)
    return Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.6))


def marker(clean):
    """A thick marker (the pen's strokes 4 times as wide), drawn small on a big white canvas."""
    thick = clean.filter(ImageFilter.MinFilter(9))
    canvas = Image.new("L", MARKER_CANVAS, 255)
    canvas.paste(thick.resize((MARKER_SIDE, MARKER_SIDE), Image.LANCZOS), MARKER_AT)
    return canvas


def blue(clean):
    """Blue ballpoint on white."""
    ink = ink_of(clean)[..., None]
    return Image.fromarray((255 * (1 - ink) + np.array([25, 55, 165]) * ink).astype(np.uint8))


def lines_of(prepared) -> torch.Tensor:
    """Bool (1, 1, S, S): the fitted sketch's strokes."""
    return (prepared.sketch[0] < 0)[None, None]


def dilated_iou(a: torch.Tensor, b: torch.Tensor, radius: int = 2) -> float:
    """Overlap of two line drawings, each widened by radius pixels: 1 for the same lines."""
    def widen(mask):
        return F.max_pool2d(mask.float(), 2 * radius + 1, stride=1, padding=radius) > 0
    a, b = widen(a), widen(b)
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def clean_fit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    clean_drawing().save(folder / "clean.png")
    prepared = prepare_sketch(folder / "clean.png", SIZE)
    assert prepared.fitted and not prepared.blank
    return prepared


@pytest.mark.parametrize("kind", ["pencil", "photo", "blue"])
def test_pencil_phone_photo_and_blue_ink_fit_as_the_clean_scan(tmp_path, clean_fit, kind):
    variant = {"pencil": pencil, "photo": phone_photo, "blue": blue}[kind](clean_drawing())
    path = tmp_path / ("variant.jpg" if kind == "photo" else "variant.png")
    variant.save(path, **({"quality": 75} if kind == "photo" else {}))
    prepared = prepare_sketch(path, SIZE)
    assert prepared.fitted and not prepared.blank
    assert all(abs(a - b) <= 3 for a, b in zip(prepared.region, clean_fit.region)), \
        (prepared.region, clean_fit.region)
    assert dilated_iou(lines_of(prepared), lines_of(clean_fit)) > 0.8


def test_a_16_bit_scan_fits_as_its_8_bit_twin(tmp_path):
    # grey strokes at 100 of 255 (25700 of 65535) were clipped to white: no drawing found
    ink = ink_of(clean_drawing()) > 0.5
    Image.fromarray(np.where(ink, 100, 255).astype(np.uint8)).save(tmp_path / "8.png")
    values = np.where(ink, 100 * 257, 65535).astype("<u2")
    Image.frombytes("I;16", ink.shape[::-1], values.tobytes()).save(tmp_path / "16.png")
    assert Image.open(tmp_path / "16.png").mode == "I;16"
    deep, twin = (prepare_sketch(tmp_path / name, SIZE) for name in ("16.png", "8.png"))
    assert deep.fitted and not deep.blank and deep.region == twin.region
    assert torch.equal(deep.sketch, twin.sketch)


def test_a_thick_marker_drawn_small_fits_as_the_same_drawing_in_pen(tmp_path, clean_fit):
    marker(clean_drawing()).save(tmp_path / "marker.png")
    prepared = prepare_sketch(tmp_path / "marker.png", SIZE)
    assert prepared.fitted
    # the clean drawing's frame, shrunk and moved as the marker drawing was
    scale = MARKER_SIDE / 360
    x0, y0, side, _ = clean_fit.region
    expected = (MARKER_AT[0] + x0 * scale, MARKER_AT[1] + y0 * scale, side * scale)
    assert all(abs(a - b) <= 4 for a, b in zip(prepared.region, expected)), \
        (prepared.region, expected)
    lines = lines_of(prepared)
    assert dilated_iou(lines, lines_of(clean_fit)) > 0.6
    # centre lines, as thin as the pen's: no wider in the frame than the clean drawing's
    assert lines.sum() <= 1.15 * lines_of(clean_fit).sum()


def ends(lines: torch.Tensor) -> int:
    """How many line ends (pixels with one 8-neighbour) a one-pixel drawing has."""
    count = F.conv2d(lines.float(), torch.ones(1, 1, 3, 3), padding=1) - lines.float()
    return int((lines & (count == 1)).sum())


def test_wide_strokes_thin_to_centre_lines_without_spurs():
    ink = torch.zeros(1, 1, 256, 256, dtype=torch.bool)
    ink[..., 40:200, 60:80] = True  # a 20-pixel wide L ...
    ink[..., 180:200, 60:220] = True
    rng = np.random.default_rng(0)
    for y in range(40, 200, 6):  # ... with a ragged edge, as a marker on paper leaves
        ink[..., y:y + 3, 80:80 + int(rng.integers(1, 5))] = True
        ink[..., y:y + 3, 60 - int(rng.integers(1, 5)):60] = True
    lines = normalise_strokes(ink)
    assert ends(lines) == 2, ends(lines)  # the L's two ends, no spur
    assert lines[..., 60:170, :].sum(dim=-1).eq(1).all()  # one pixel per row, in the stroke
    columns = lines[0, 0, 60:170].nonzero()[:, 1]
    assert (columns - 70).abs().max() <= 2  # at its centre


@pytest.mark.parametrize("page", ["blank", "gray", "uniform noise", "gaussian noise",
                                  "speckle", "jpeg blank"])
def test_a_blank_page_or_a_page_of_noise_has_no_drawing(tmp_path, page):
    rng = np.random.default_rng(1)
    size = (300, 240)
    pixels = {"blank": np.full(size[::-1], 255),
              "gray": np.full(size[::-1], 170),
              "uniform noise": rng.integers(0, 256, size[::-1]),
              "gaussian noise": 128 + rng.normal(0, 40, size[::-1]),
              "speckle": np.where(rng.random(size[::-1]) < 0.01, 0, 255),
              "jpeg blank": 200 + rng.normal(0, 6, size[::-1])}[page]
    path = tmp_path / ("page.jpg" if page == "jpeg blank" else "page.png")
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    prepared = prepare_sketch(path, SIZE)
    assert prepared.blank and not prepared.fitted
    assert prepared.size == size and prepared.region == (0, -30, 300, 300)  # padded whole


def test_preparation_cost_does_not_grow_with_the_image(tmp_path, clean_fit, monkeypatch):
    # a 12-megapixel phone-like JPEG: the drawing is found on a copy at most WORK_SIDE long
    big = Image.new("RGB", (4000, 3000), (200, 195, 185))  # gray paper
    big.paste((30, 30, 30), (1000, 500), mask=ImageOps.invert(clean_drawing(2000, width=12)))
    big.save(tmp_path / "big.jpg", quality=90)
    seen, decoded = [], []
    ink_mask, exif_transpose = sketch.ink_mask, ImageOps.exif_transpose
    monkeypatch.setattr(sketch, "ink_mask", lambda img: seen.append(img.size) or ink_mask(img))
    monkeypatch.setattr(ImageOps, "exif_transpose",  # what the JPEG decodes to (after draft)
                        lambda img: decoded.append(img.size) or exif_transpose(img))
    cpu = time.process_time()
    prepared = prepare_sketch(tmp_path / "big.jpg", SIZE)
    cpu = time.process_time() - cpu
    assert decoded == [(1000, 750)]  # decoded at 1/4 scale: a sixteenth of the pixels
    assert max(seen[0]) <= sketch.WORK_SIDE and prepared.fitted
    # in the photo's own pixels, where the clean drawing's frame lies, scaled and moved
    x0, y0, side, _ = prepared.region
    cx, cy, clean_side = (clean_fit.region[0] + clean_fit.region[2] / 2,
                          clean_fit.region[1] + clean_fit.region[3] / 2, clean_fit.region[2])
    scale = 2000 / 360
    assert abs(x0 + side / 2 - (1000 + cx * scale)) < 30, prepared.region
    assert abs(y0 + side / 2 - (500 + cy * scale)) < 30 and abs(side - clean_side * scale) < 60
    # about 0.1 s of CPU on a 2-core Zen 3; process time, not wall time: other processes on the
    # machine do not count
    assert cpu < 2.0, cpu


def test_put_back_into_a_view_of_the_input(tmp_path):
    canvas = Image.new("L", (500, 400), 255)
    canvas.paste(clean_drawing(), (100, 20))  # the drawing's frame lies inside the canvas
    canvas.save(tmp_path / "wide.png")
    prepared = prepare_sketch(tmp_path / "wide.png", 64)
    x0, y0, side, _ = prepared.region
    assert x0 > 0 and y0 > 0 and x0 + side < 500 and y0 + side < 400
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    # in its own region at its own size: the photo itself
    assert np.array_equal(np.asarray(sketch.put_back(photo, prepared, prepared.region, (64, 64))),
                          np.asarray(photo))
    # the whole input at its size: as infer.py writes it; a view off the photo is white
    whole = sketch.put_back(photo, prepared)
    assert whole.size == (500, 400)
    assert np.array_equal(np.asarray(sketch.put_back(photo, prepared, (0, 0, 500, 400))),
                          np.asarray(whole))
    assert np.asarray(sketch.put_back(photo, prepared, (0, 0, 50, 50), (16, 16))).min() == 255


def test_fit_region_puts_the_longer_side_the_shoe_margin_from_the_frame():
    # side = ceil(longer / (1 - 2 × SHOE_MARGIN)), centred; exact boxes, worked out by hand
    assert sketch.SHOE_MARGIN == 0.0156
    assert sketch.fit_region((10, 20, 110, 70)) == (8, -7, 104, 104)  # 100 / 0.9688 = 103.2
    assert sketch.fit_region((0, 0, 62, 31)) == (-1, -16, 64, 64)  # 62 / 0.9688 = 63.997
    assert sketch.fit_region((5, 5, 205, 205)) == (2, 2, 207, 207)  # 200 / 0.9688 = 206.4


def test_faint_ink_counts_only_when_it_touches_a_stroke_and_thin_lines_are_not_specks():
    img = Image.new("L", (256, 256), 255)
    draw = ImageDraw.Draw(img)
    draw.line([(20, 40), (230, 40)], fill=0, width=3)  # a stroke: the ink's own darkness, 1
    faint = 166  # darkness 0.35: between WEAK (0.25) and STRONG (0.5) of it
    draw.line([(120, 42), (120, 120)], fill=faint, width=2)  # faint, touching the stroke
    draw.line([(40, 160), (200, 160)], fill=faint, width=2)  # faint, on its own
    draw.line([(20, 220), (230, 220)], fill=0, width=1)  # one pixel thin but long: a line
    draw.rectangle([240, 240, 241, 241], fill=0)  # 2×2: a speck
    ink = sketch.ink_mask(img)
    assert ink[40, 20:231].all() and ink[50:120, 120].all()  # hysteresis from the strong pixels
    assert not ink[150:170].any()  # nothing strong to grow from
    assert ink[220, 20:231].all()  # a speck is short both ways, not one way
    assert not ink[235:].any()
