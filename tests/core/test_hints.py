"""Colour hints: the training sampler (geometric counts, patch means, on the shoe, reproducible and
resumed exactly), the hints a person gives (through the sketch's fitting, --color inside the
drawing) and infer.py's one-line refusals."""

import math
import os
import re
import signal

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import hints
import infer
import save
import train
from config import Config, parse_args
from conftest import tiny_config
from generator import HintSpread, build_generator
from sketch import prepare_sketch


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


def shoe_photos(batch=2, size=32):
    """White photos with a coloured square 'shoe' (rows and columns 8..23), a different colour per
    pixel so that a patch's mean says which pixels it covered."""
    photo = torch.ones(batch, 3, size, size)
    shoe = torch.rand(batch, 3, 16, 16, generator=rng(5)) * 1.2 - 1  # never white
    photo[:, :, 8:24, 8:24] = shoe
    return photo


# --- sampling in training -----------------------------------------------------------------------

def test_counts_are_geometric_so_many_images_get_none_or_few():
    photo = torch.zeros(4000, 3, 16, 16)  # one flat colour: no background, patches anywhere
    given = hints.sample_hints(photo, rng(), p=0.125, max_patches=32, max_side=1)
    pixels = given[:, 3].sum((1, 2))  # 1×1 patches: one pixel each, unless two land together
    # P(0) = p, mean (1 - p) / p = 7 (a little less: the cap at 32, and patches that coincide)
    assert abs((pixels == 0).float().mean().item() - 0.125) < 0.02
    assert 6.3 < pixels.mean().item() < 7.1
    assert pixels.max().item() <= 32


def test_a_patch_is_a_square_filled_with_the_photos_mean_over_it():
    photo = shoe_photos(batch=8)
    given = hints.sample_hints(photo, rng(1), max_side=5, count=1)
    for image, hint in zip(photo, given):
        rows, cols = torch.nonzero(hint[3], as_tuple=True)
        side = int(rows.max() - rows.min()) + 1
        assert side == int(cols.max() - cols.min()) + 1 and len(rows) == side * side  # a square
        box = image[:, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        expected = box.mean((1, 2))
        assert torch.allclose(hint[:3, rows, cols], expected[:, None].expand(-1, len(rows)),
                              atol=1e-6)
        assert (hint[:3][:, hint[3] == 0] == 0).all()  # 0 where no hint
    # single pixels: the photo's own colour there
    given = hints.sample_hints(photo, rng(2), max_side=1, count=10)
    mask = given[:, 3:] > 0
    assert torch.equal(given[:, :3][mask.expand(-1, 3, -1, -1)],
                       photo[mask.expand(-1, 3, -1, -1)])


def test_a_patch_is_centred_on_the_pixel_it_was_drawn_at():
    # one shoe pixel per image, away from the border: every patch is drawn at it, and must lie
    # centred there ((side - 1) // 2 before it, side // 2 after); 1×1 patches cannot tell
    batch, size, max_side = 64, 32, 7
    photo = torch.ones(batch, 3, size, size)
    where = torch.randint(max_side, size - max_side, (batch, 2), generator=rng(9))
    photo[torch.arange(batch), :, where[:, 0], where[:, 1]] = -1
    given = hints.sample_hints(photo, rng(10), max_side=max_side, count=1)
    sides = set()
    for hint, (y, x) in zip(given, where.tolist()):
        rows, cols = torch.nonzero(hint[3], as_tuple=True)
        side = int(rows.max() - rows.min()) + 1
        sides.add(side)
        assert (int(rows.min()), int(cols.min())) == (y - (side - 1) // 2, x - (side - 1) // 2)
        assert (int(rows.max()), int(cols.max())) == (y + side // 2, x + side // 2)
    assert sides == set(range(1, max_side + 1))  # odd and even sides alike


def test_patches_land_on_the_shoe_not_the_background():
    photo = shoe_photos(batch=16)
    on = hints.sample_hints(photo, rng(3), max_side=1, count=20)[:, 3]
    anywhere = hints.sample_hints(photo, rng(3), max_side=1, count=20, on_shoe=False)[:, 3]
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[8:24, 8:24] = True
    assert on.sum() > 0 and on[:, ~inside].sum() == 0
    assert anywhere[:, ~inside].sum() > 0  # 3/4 of the image is background


def test_the_shoe_is_all_but_the_white_reaching_the_border():
    photo = torch.ones(1, 3, 32, 32)
    photo[:, :, 6:26, 6:26] = -1  # a dark outline...
    photo[:, :, 8:24, 8:24] = 1  # ...around a white shoe
    photo[:, :, 0:3, 12:14] = -1  # and a dark mark at the border, touching it
    mask = hints.shoe_mask(photo)[0, 0]
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[6:26, 6:26] = True
    expected[0:3, 12:14] = True
    assert torch.equal(mask, expected)
    # white reached from the border only by turning (in through a gap, then along the rows) is
    # background too: here the inside of an open ring
    photo = torch.ones(1, 3, 32, 32)
    photo[:, :, 4:28, 4:28] = -1
    photo[:, :, 5:27, 5:27] = 1
    photo[:, :, 4, 6:9] = 1  # the gap
    ring = (photo[0, 0] < 0)
    assert torch.equal(hints.shoe_mask(photo)[0, 0], ring) and ring.sum() == 4 * 23 - 3


def test_the_same_seed_draws_the_same_hints_another_seed_others():
    photo = shoe_photos(batch=4)
    a, b = (hints.sample_hints(photo, rng(7), max_side=5) for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, hints.sample_hints(photo, rng(8), max_side=5))


def test_patch_sides_scale_with_the_image():
    assert [hints.patch_side(9, size) for size in (256, 128, 64, 16)] == [9, 5, 3, 1]


def test_config_checks_and_old_checkpoints_have_no_hints(tmp_path):
    assert not Config().hints and not Config.from_dict({"ngf": 8}).hints
    for bad in ("0", "1.5"):
        with pytest.raises(SystemExit):
            parse_args(["--hints", "--hint_p", bad])
    small = dict(image_size=64, num_downs=6, ngf=8)
    assert build_generator(Config(hints=True, **small)).net.downs[0].in_channels == 11
    assert build_generator(Config(**small)).downs[0].in_channels == 3


def test_training_feeds_g_the_hints_and_d_the_sketch_only(tmp_path, pairs_dir, monkeypatch):
    seen, original = [], train.gan_step

    def gan_step(G, D, *args, **kwargs):
        G_forward, D_forward = G.forward, D.forward
        G.forward = lambda x: seen.append(("G", x.shape[1], x[:, 3:])) or G_forward(x)
        D.forward = lambda x: seen.append(("D", x.shape[1], None)) or D_forward(x)
        try:
            return original(G, D, *args, **kwargs)
        finally:
            del G.forward, D.forward

    monkeypatch.setattr(train, "gan_step", gan_step)
    train.main(tiny_config(tmp_path, pairs_dir, epochs=1, batch_size=8, hints=True, hint_p=0.5,
                           precision="fp32"))
    assert {(net, channels) for net, channels, _ in seen} == {("G", 7), ("D", 6)}
    given = [extra for net, _, extra in seen if net == "G"]
    assert any(extra[:, 3].sum() > 0 for extra in given)  # the mask is set somewhere
    for extra in given:
        assert ((extra[:, 3] == 0) | (extra[:, 3] == 1)).all()


def test_the_precision_timing_step_runs_a_hint_model():
    cfg = Config(hints=True, image_size=64, num_downs=6, ngf=8, ndf=8, batch_size=2)
    losses = train.one_step(cfg, torch.device("cpu"), "fp32")()
    assert torch.isfinite(losses).all()


# --- the generator's spread of the hints --------------------------------------------------------

def two_hints(size=64):
    """G's input with a red hint pixel at (10, 10) and a blue one at (10, size - 10)."""
    x = torch.zeros(2, 7, size, size)
    for col, rgb in ((10, (1.0, -1.0, -1.0)), (size - 10, (-1.0, -1.0, 1.0))):
        x[0, 3:6, 10, col] = torch.tensor(rgb)
        x[0, 6, 10, col] = 1
    return x


def test_spread_gives_each_pixel_the_nearest_hints_colour_and_far_away_their_mean():
    spread = HintSpread()(two_hints())
    assert spread.shape == (2, 11, 64, 64)
    assert torch.equal(spread[:, :7], two_hints())  # the input passes through unchanged
    colour, near = spread[0, 7:10], spread[0, 10]
    red, blue = torch.tensor([1.0, -1, -1]), torch.tensor([-1.0, -1, 1])
    mean = (red + blue) / 2
    on_red, on_blue = colour[:, 10, 10], colour[:, 10, 54]
    assert (on_red - red).norm() < (on_red - blue).norm() / 4  # mostly red on the red hint
    assert (on_blue - blue).norm() < (on_blue - red).norm() / 4
    assert torch.allclose(colour[:, 10, 32], mean, atol=1e-6)  # half way: half each
    assert torch.allclose(colour[:, 63, 0], mean, atol=1e-6)  # far from both: their mean
    assert near[10, 10] > 0.8 and near[63, 0] < 0.01 and near[30, 10] < near[20, 10] < near[10, 10]
    assert ((near >= 0) & (near <= 1)).all()
    assert not spread[1, 7:].any()  # no hint: no colour, no weight


def test_spread_runs_in_float32_under_bf16_autocast_and_a_hint_model_reads_it():
    x = two_hints()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = HintSpread()(x.bfloat16())
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low[:, 7:].float(), HintSpread()(x)[:, 7:], atol=0.02)
    G = build_generator(Config(hints=True, image_size=64, num_downs=6, ngf=8))
    assert G.net.downs[0].in_channels == 11 and not list(G.spread.parameters())
    assert G(x).shape == (2, 3, 64, 64)
    G = build_generator(Config(hints=True, generator="resnet", ngf=8, resnet_blocks=1))
    assert G(x).shape == (2, 3, 64, 64)


def final_weights(cfg):
    ckpt = torch.load(os.path.join(cfg.models_dir, cfg.name, "last.pt"), weights_only=True)
    return {f"{net}.{k}": v for net in ("generator", "discriminator") for k, v in ckpt[net].items()}


@pytest.mark.parametrize("recolour", [0.0, 0.7])
def test_ctrl_c_mid_epoch_then_resume_draws_the_same_hints(tmp_path, pairs_dir, monkeypatch,
                                                           recolour):
    options = dict(epochs=1, hints=True, hint_p=0.3, precision="fp32", hint_recolour=recolour)
    drawn = {}
    original = train.training_hints

    recoloured = []

    def sample(photo, generator, *args):
        kept, given = original(photo, generator, *args)
        recoloured.append(not torch.equal(kept, photo))
        drawn.setdefault(generator.initial_seed(), []).append(torch.cat([kept, given], 1))
        return kept, given

    monkeypatch.setattr(train, "training_hints", sample)
    unbroken = train.main(tiny_config(tmp_path / "a", pairs_dir, **options))
    unbroken_hints, drawn = drawn, {}
    cfg = tiny_config(tmp_path / "b", pairs_dir, **options)
    calls, gan_step = [], train.gan_step

    def interrupted(*args, **kwargs):  # Ctrl-C as the 3rd of the epoch's 4 steps begins
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return gan_step(*args, **kwargs)

    monkeypatch.setattr(train, "gan_step", interrupted)
    with pytest.raises(SystemExit):
        train.main(cfg)
    monkeypatch.setattr(train, "gan_step", gan_step)
    resumed = train.main(Config(**{**cfg.to_dict(), "resume": True}))
    assert resumed["step"] == unbroken["step"] == 4
    assert sorted(drawn) == sorted(unbroken_hints) == [train.step_seed(0, 0, s) for s in range(4)]
    for seed, (first, *_) in drawn.items():
        assert torch.equal(first, unbroken_hints[seed][0])
    a, b = final_weights(tiny_config(tmp_path / "a", pairs_dir)), final_weights(cfg)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["val_l1"][-1] == unbroken["val_l1"][-1]
    assert any(recoloured) == (recolour > 0)  # the photos G learns from were recoloured, or not


# --- hints a person gives ------------------------------------------------------------------------

def hints_png(path, size, points, alpha=True):
    """A hints image of size (w, h): painted pixels {(x, y): (r, g, b)}, transparent (or white)
    elsewhere."""
    img = Image.new("RGBA" if alpha else "RGB", size, (0, 0, 0, 0) if alpha else "white")
    for (x, y), colour in points.items():
        img.putpixel((x, y), (*colour, 255) if alpha else colour)
    img.save(path)
    return path


def small_drawing(path, size=(300, 200), box=(120, 60, 200, 140)):
    """A closed outline (a box) drawn small and off-centre on a canvas."""
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).rectangle(box, outline="black", width=2)
    img.save(path)
    return path


def expected_pixel(x, y, region, out):
    """The output pixel whose share of the input holds input pixel (x, y)'s centre (shrinking)."""
    left, top, width, height = region
    return (math.floor((y + 0.5 - top) * out / height), math.floor((x + 0.5 - left) * out / width))


@pytest.mark.parametrize("alpha", [True, False])
def test_hints_follow_the_fitted_drawings_crop_and_scale_exactly(tmp_path, alpha):
    sketch = small_drawing(tmp_path / "s.png")
    points = {(150, 100): (200, 30, 40), (130, 70): (20, 40, 220), (195, 135): (10, 200, 20)}
    path = hints_png(tmp_path / "h.png", (300, 200), points, alpha)
    prepared = prepare_sketch(sketch, 64)
    assert prepared.fitted and prepared.region[2] < 300  # cropped to the drawing, then scaled
    cfg = Config(hints=True, image_size=64, num_downs=6)
    given = infer.hint_channels(prepared, cfg, hints.read_hints_image(path))
    assert given.shape == (4, 64, 64) and given[3].sum() == len(points)
    for (x, y), colour in points.items():
        row, col = expected_pixel(x, y, prepared.region, 64)
        assert given[3, row, col] == 1
        assert torch.allclose(given[:3, row, col], torch.tensor(colour) / 127.5 - 1)
    assert (given[:3][:, given[3] == 0] == 0).all()


def test_an_enlarged_hint_covers_the_pixels_it_lies_under(tmp_path):
    sketch = small_drawing(tmp_path / "s.png", size=(40, 30), box=(5, 5, 35, 25))
    path = hints_png(tmp_path / "h.png", (40, 30), {(20, 12): (255, 0, 0)})
    prepared = prepare_sketch(sketch, 64, fit=False)  # 40×30 padded to 40², enlarged 1.6×
    left, top, side, _ = prepared.region
    given = infer.hint_channels(prepared, Config(hints=True, image_size=64, num_downs=6),
                                hints.read_hints_image(path))
    centres = (np.arange(64) + 0.5) * side / 64
    rows = np.flatnonzero(np.floor(top + centres) == 12)
    cols = np.flatnonzero(np.floor(left + centres) == 20)
    expected = torch.zeros(64, 64)
    expected[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = 1
    assert torch.equal(given[3], expected) and expected.sum() >= 1
    assert torch.allclose(given[0][given[3] > 0], torch.tensor(1.0))


def test_color_puts_one_patch_inside_the_drawing_away_from_its_strokes(tmp_path):
    # a box with a long stroke beside it: the strokes' centroid lies outside the box
    img = Image.new("RGB", (300, 200), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((60, 60, 110, 110), outline="black", width=2)
    draw.line((130, 150, 290, 150), fill="black", width=2)
    img.save(tmp_path / "s.png")
    prepared = prepare_sketch(tmp_path / "s.png", 64)
    cfg = Config(hints=True, image_size=64, num_downs=6)
    given = infer.hint_channels(prepared, cfg, colour=(178, 34, 34))
    rows, cols = torch.nonzero(given[3], as_tuple=True)
    side = hints.patch_side(cfg.hint_patch, 64)
    assert len(rows) == side * side
    assert torch.allclose(given[:3, rows, cols],
                          (torch.tensor([178, 34, 34]) / 127.5 - 1)[:, None].expand(-1, len(rows)))
    assert not (prepared.sketch.mean(0) < hints.WHITE)[rows, cols].any()  # off the strokes
    left, top, width, _ = prepared.region
    box = [(v - offset) * 64 / width for v, offset in ((60, top), (110, top), (60, left),
                                                       (110, left))]
    assert box[0] < rows.min() and rows.max() < box[1]  # inside the box
    assert box[2] < cols.min() and cols.max() < box[3]


def test_colour_names_and_codes_parse_and_others_are_refused():
    assert hints.parse_colour("#b22222") == hints.parse_colour("firebrick") == (178, 34, 34)
    assert hints.parse_colour("#f00") == (255, 0, 0)
    for bad in ("#b2222", "b22222x", "", "#gg0000"):
        with pytest.raises(ValueError, match="is not a colour"):
            hints.parse_colour(bad)


@pytest.mark.parametrize("text, rgb", [
    (" FireBrick ", (178, 34, 34)), ("#B22222", (178, 34, 34)), ("#b22222ff", (178, 34, 34)),
    ("#f00f", (255, 0, 0)), ("rgb(178, 34, 34)", (178, 34, 34)), ("rgb(255,0,0)", (255, 0, 0)),
    ("rgb(100%, 0%, 50%)", (255, 0, 128)), ("rgba(178, 34, 34, 1)", (178, 34, 34)),
    ("rgb(12.4, 0, 0)", (12, 0, 0)), ("hsl(0, 100%, 50%)", (255, 0, 0)),
    ("hsl(120, 100%, 25%)", (0, 128, 0)), ("hsla(240, 100%, 50%, 100%)", (0, 0, 255)),
    ("hsv(0, 100%, 100%)", (255, 0, 0)), ("hsb(360, 0%, 0%)", (0, 0, 0)),
])
def test_the_colour_forms_it_takes(text, rgb):
    assert hints.parse_colour(text) == rgb


@pytest.mark.parametrize("text, says", [
    # PIL's getrgb took these: rgb(999,0,0) as (999, 0, 0), 200% as 510, alpha ignored
    ("rgb(999,0,0)", "red 999 is out of range (0 to 255)"),
    ("rgb(200%,0%,0%)", "red 200% is out of range (0% to 100%)"),
    ("rgb(0, 0, 256)", "blue 256 is out of range (0 to 255)"),
    ("hsl(0, 150%, 50%)", "saturation 150% is out of range (0% to 100%)"),
    ("hsl(400, 50%, 50%)", "hue 400 is out of range (0 to 360)"),
    ("hsv(10, 50%, 101%)", "value 101% is out of range (0% to 100%)"),
    ("#12345600", "alpha 00 of ff: not opaque"),
    ("#f008", "alpha 88 of ff: not opaque"),
    ("rgba(1, 2, 3, 0.5)", "alpha 0.5 of 1: not opaque"),
    ("rgba(1, 2, 3, 255)", "alpha 255 is out of range (0 to 1)"),
    ("rgb(100%, 0, 0)", "is not a colour"),  # percentages and numbers mixed
    ("rgb(1, 2)", "is not a colour"), ("rgb(-1, 0, 0)", "is not a colour"),
    ("hsl(0, 50, 50)", "is not a colour"), ("rgb(\u0661, 0, 0)", "is not a colour"),
    ("rgb(1e3, 0, 0)", "is not a colour"), ("red\nblue", "is not a colour"),
    ("#" + "f" * 200, "is not a colour"),
])
def test_out_of_range_and_transparent_colours_are_refused_in_one_line(text, says):
    with pytest.raises(ValueError) as error:
        hints.parse_colour(text)
    message = str(error.value)
    assert message.startswith(repr(text)[:40]) and says in message and "\n" not in message, message


def test_a_hints_file_goes_through_the_one_opener(tmp_path, recwarn):
    # a GIF: refused as a sketch, it was taken as hints
    Image.new("RGB", (300, 200), "red").save(tmp_path / "h.gif")
    # 100 Mpx: decoded whole, after a two-line DecompressionBombWarning
    Image.new("1", (10_000, 10_000)).save(tmp_path / "huge.png")
    for name, says in (("h.gif", "not a readable image"), ("huge.png", "too large (10000×10000")):
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / name}: {says}")):
            hints.read_hints_image(tmp_path / name)
    assert not recwarn.list
    # 16 bits: grey strokes at 100 of 255 were clipped to white, so 0 pixels painted
    values = np.full((200, 300), 65535, "<u2")
    values[50, 100:110] = 100 * 257
    Image.frombytes("I;16", (300, 200), values.tobytes()).save(tmp_path / "deep.png")
    colours, painted = hints.read_hints_image(tmp_path / "deep.png")
    assert painted.sum() == 10 and painted[50, 100:110].all()
    assert (colours[50, 100] == 100).all() and colours.shape == (200, 300, 3)


@pytest.fixture
def hint_checkpoint(tmp_path):
    """A tiny generator.pt trained with hints (random weights) and one without."""
    paths = []
    for name, on in (("hints", True), ("plain", False)):
        cfg = tiny_config(tmp_path, tmp_path, hints=on, name=name)
        torch.manual_seed(0)
        path = tmp_path / f"models/{name}/generator.pt"
        save.atomic_save({"generator": build_generator(cfg).state_dict(),
                          "config": cfg.to_dict(), "step": 0}, path)
        paths.append(path)
    return paths


def test_infer_gives_the_generator_the_hints_at_the_fitted_pixels(tmp_path, hint_checkpoint,
                                                                  monkeypatch):
    sketch = small_drawing(tmp_path / "s.png")
    points = {(150, 100): (200, 30, 40), (130, 70): (20, 40, 220)}
    path = hints_png(tmp_path / "h.png", (300, 200), points)
    inputs = []

    class Recorder:  # stands in for the tuned generator: what it was given
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, sketches, seeds):
            inputs.append(sketches)
            return torch.zeros(len(sketches), 3, *sketches.shape[2:])

    monkeypatch.setattr(infer, "Tuner", Recorder)
    args = [str(sketch), "-o", str(tmp_path / "out"), "--checkpoint", str(hint_checkpoint[0])]
    assert infer.main([*args, "--hints", str(path)]) == 0
    assert infer.main(args) == 0  # no hints: zeros
    with_hints, without = inputs
    assert with_hints.shape == without.shape == (1, 7, 64, 64)
    region = prepare_sketch(sketch, 64).region
    assert with_hints[0, 6].sum() == 2 and without[0, 3:].abs().sum() == 0
    for (x, y), colour in points.items():
        row, col = expected_pixel(x, y, region, 64)
        assert torch.allclose(with_hints[0, 3:6, row, col], torch.tensor(colour) / 127.5 - 1)
    assert torch.equal(with_hints[0, :3], without[0, :3])  # the same sketch beside them


@pytest.mark.parametrize("flags, expected", [
    ("plain --color red", "trained without colour hints"),
    ("plain --hints h.png", "trained without colour hints"),
    ("hints --color #12345", "--color: '#12345' is not a colour"),
    ("hints --hints small.png", "small.png is 20×10, the sketch 300×200"),
    ("hints --hints notes.png", "notes.png: not a readable image"),
    ("hints --color rgb(999,0,0)", "--color: 'rgb(999,0,0)': red 999 is out of range"),
    ("hints --color #12345600", "--color: '#12345600': alpha 00 of ff: not opaque"),
])
def test_bad_hints_give_one_line(tmp_path, hint_checkpoint, capsys, monkeypatch, flags,
                                 expected):
    small_drawing(tmp_path / "s.png")
    hints_png(tmp_path / "h.png", (300, 200), {(1, 1): (255, 0, 0)})
    hints_png(tmp_path / "small.png", (20, 10), {(1, 1): (255, 0, 0)})
    (tmp_path / "notes.png").write_text("not an image")
    model, flag, value = flags.split()
    path = hint_checkpoint[0 if model == "hints" else 1]
    monkeypatch.chdir(tmp_path)
    try:
        code = infer.main(["s.png", "-o", "out", "--checkpoint", str(path), "--no-tune", flag,
                           value])
    except SystemExit as e:  # argparse's usage line, then its one error line
        code = e.code
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if ": error:" in line]
    assert len(lines) == 1 and expected in lines[0], lines
