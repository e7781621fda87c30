"""The colour a person asks for: CIE Lab both ways, the training recolouring of the shoe (hints then
the only source of its hue), the global hint input, the colour transfer after G, and infer.py's
--color and --hints with it (--transfer / --no-transfer)."""

from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

import hints
import infer
import save
import tune
from config import Config, parse_args
from conftest import tiny_config
from dataset import to_image, to_tensor
from generator import build_generator
from sketch import prepare_sketch


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


def shaded_shoes(batch=4, size=32):
    """White photos with a 'shoe' (rows and columns 8..23): a brown whose lightness falls from
    top to bottom (shading) with a little per-pixel noise (texture)."""
    photo = torch.ones(batch, 3, size, size)
    shade = torch.linspace(0.1, -0.6, 16).view(1, 1, 16, 1)
    brown = torch.tensor([0.2, -0.2, -0.5]).view(1, 3, 1, 1)
    noise = torch.rand(batch, 1, 16, 16, generator=rng(9)) * 0.1
    photo[:, :, 8:24, 8:24] = (brown + shade + noise).clamp(-1, 0.7)
    return photo


def shoe_box(size=32):
    inside = torch.zeros(1, 1, size, size, dtype=torch.bool)
    inside[..., 8:24, 8:24] = True
    return inside


def lab_of(rgb):
    """Lab (3,) of an sRGB colour 0..255."""
    return hints.srgb_to_lab(torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1) / 127.5
                             - 1)[0, :, 0, 0]


def median_lab(photo, region):
    """Per image the median Lab colour (B, 3) over region (1, 1, H, W)."""
    lab = hints.srgb_to_lab(photo)
    return torch.stack([image[:, region[0, 0]].median(dim=1).values for image in lab])


# --- CIE Lab ------------------------------------------------------------------------------------

def test_lab_to_srgb_undoes_srgb_to_lab_and_marks_colours_outside_the_gamut():
    photo = torch.rand(2, 3, 8, 8, generator=rng()) * 2 - 1
    back, outside = hints.lab_to_srgb(hints.srgb_to_lab(photo))
    assert torch.allclose(back, photo.double(), atol=1e-9) and not outside.any()
    # pure red made more saturated than sRGB can show: clipped, and said so
    lab = hints.srgb_to_lab(torch.tensor([1.0, -1, -1]).view(1, 3, 1, 1))
    saturated = lab * torch.tensor([1.0, 1.5, 1.5], dtype=torch.float64).view(1, 3, 1, 1)
    back, outside = hints.lab_to_srgb(saturated)
    assert outside.all() and back.min() >= -1 and back.max() <= 1
    assert abs(hints.srgb_to_lab(torch.ones(1, 3, 1, 1))[0, 0].item() - 100) < 1e-4


def test_weighted_median_takes_the_weight_into_account():
    values = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 100.0]]])
    assert hints.weighted_median(values, torch.ones(1, 5)).item() == 3.0
    assert hints.weighted_median(values, torch.tensor([[0.0, 0, 0, 1, 1]])).item() == 4.0
    assert hints.weighted_median(values, torch.tensor([[5.0, 0, 0, 0, 1]])).item() == 1.0


# --- recolouring in training ---------------------------------------------------------------------

def test_recolouring_moves_the_shoe_to_a_colour_and_keeps_the_background_and_shading():
    photo = shaded_shoes()
    changed, chosen = hints.recolour_shoes(photo, rng(1), p=1.0)
    assert chosen.all()
    box = shoe_box()
    assert torch.equal(changed[..., ~box[0, 0]], photo[..., ~box[0, 0]])  # background: the same
    # the shoe's median colour is the drawn one: redraw it from the same generator
    again = rng(1)
    torch.rand(4, generator=again)
    target = hints.srgb_to_lab(torch.rand(4, 3, 1, 1, generator=again) * 2 - 1)[:, :, 0, 0]
    moved = median_lab(changed, box)
    assert (moved - target).norm(dim=1).max() < 6  # less where clipping to the gamut moved it
    assert (moved - median_lab(photo, box)).norm(dim=1).min() > 10  # another colour than brown
    # shading: the lightness still falls from top to bottom
    lightness = hints.srgb_to_lab(changed)[:, 0, 8:24, 8:24].mean(2)  # (B, 16) per row
    assert (lightness[:, 0] > lightness[:, -1] + 10).all()
    # deterministic given the generator; another seed, other colours; p = 0 changes nothing
    assert torch.equal(hints.recolour_shoes(photo, rng(1), p=1.0)[0], changed)
    assert not torch.equal(hints.recolour_shoes(photo, rng(2), p=1.0)[0], changed)
    unchanged, chosen = hints.recolour_shoes(photo, rng(1), p=0.0)
    assert not chosen.any() and torch.equal(unchanged, photo)


def test_training_hints_come_from_the_recoloured_photo_which_only_hinted_images_keep():
    photo = shaded_shoes(batch=64)
    kept, given = hints.training_hints(photo, rng(3), p=0.5, max_side=3, recolour=1.0)
    hinted = given[:, 3].flatten(1).amax(1) > 0
    assert hinted.any() and (~hinted).any()  # geometric counts: some images get none
    changed = (kept != photo).flatten(1).any(1)
    assert torch.equal(changed, hinted)  # recoloured exactly where hinted (p = 1)
    # a 1-pixel hint is the recoloured photo's own colour there
    single = hints.training_hints(photo, rng(4), p=0.2, max_side=1, recolour=1.0)
    mask = single[1][:, 3:] > 0
    assert mask.any()
    assert torch.allclose(single[1][:, :3][mask.expand(-1, 3, -1, -1)],
                          single[0][mask.expand(-1, 3, -1, -1)])
    # recolour 0: exactly what sample_hints draws, photo untouched
    plain = hints.training_hints(photo, rng(5), p=0.5, max_side=3)
    assert plain[0] is photo
    assert torch.equal(plain[1], hints.sample_hints(photo, rng(5), 0.5, 32, 3))


def test_hint_recolour_and_hint_global_are_checked_fields():
    assert Config().hint_recolour == 0.5 and not Config().hint_global
    # a checkpoint saved before the field trained without recolouring, and resumes so
    assert Config.from_dict({"hints": True}).hint_recolour == 0
    assert Config.from_dict(Config(hint_recolour=0.3).to_dict()).hint_recolour == 0.3
    for bad in ("-0.1", "1.5"):
        with pytest.raises(SystemExit):
            parse_args(["--hints", "--hint_recolour", bad])
    with pytest.raises(ValueError, match="hint_global"):
        build_generator(Config(hints=True, hint_global=True, generator="resnet", ngf=8,
                               resnet_blocks=1))


# --- global hints ---------------------------------------------------------------------------------

def test_global_hints_start_as_none_then_modulate_the_bottleneck():
    small = dict(hints=True, image_size=32, num_downs=5, ngf=8)
    torch.manual_seed(0)
    plain = build_generator(Config(**small)).eval()
    torch.manual_seed(0)
    G = build_generator(Config(**small, hint_global=True)).eval()
    assert G.film.out_features == 2 * 64  # scale and shift of the 8·ngf bottleneck channels
    x = torch.zeros(2, 7, 32, 32)
    x[:, 3:6, 10:14, 10:14], x[:, 6, 10:14, 10:14] = 0.5, 1
    assert torch.equal(G(x), plain(x))  # zero-initialised: what G was without it
    with torch.no_grad():
        G.film.weight.normal_()
    other = x.clone()
    other[:, 3:6, 10:14, 10:14] = -0.5  # the same hint pixels, another colour
    assert not torch.allclose(G(x), plain(x))
    assert not torch.allclose(G(other), G(x))


# --- the colour transfer after G ----------------------------------------------------------------

def one_hint(batch, rgb, size=32, at=(15, 15)):
    given = torch.zeros(batch, 4, size, size)
    given[:, :3, at[0], at[1]] = torch.tensor(rgb, dtype=torch.float32).view(1, 3) / 127.5 - 1
    given[:, 3, at[0], at[1]] = 1
    return given


@pytest.mark.parametrize("rgb", [(178, 34, 34), (46, 139, 87), (30, 80, 200), (245, 245, 245)])
def test_transfer_moves_the_shoes_median_to_the_asked_colour_keeping_its_shading(rgb):
    photo = shaded_shoes(batch=2)
    moved, outside = hints.transfer_colour(photo, one_hint(2, rgb))
    box = shoe_box()
    error = (median_lab(moved, box) - lab_of(rgb)).norm(dim=1)
    assert error.max() < 3, error
    assert torch.equal(moved[..., ~box[0, 0]], photo[..., ~box[0, 0]])  # the background stays
    lab, before = hints.srgb_to_lab(moved), hints.srgb_to_lab(photo)
    # lightness detail: each pixel's difference from its neighbour as it was, where unclipped
    kept = ~outside[:, 0, 8:24, 8:23] & ~outside[:, 0, 8:24, 9:24]
    step = lab[:, 0, 8:24, 9:24] - lab[:, 0, 8:24, 8:23]
    step_before = before[:, 0, 8:24, 9:24] - before[:, 0, 8:24, 8:23]
    assert kept.float().mean() > 0.5
    # (clipping by less than 1/255, not marked, moves L by a few tenths at most)
    assert torch.allclose(step[kept], step_before[kept], atol=0.5)
    assert step_before[kept].abs().max() > 2


def test_transfer_without_hints_changes_nothing_and_reports_no_clipping():
    photo = shaded_shoes(batch=2)
    given = one_hint(2, (178, 34, 34))
    given[1] = 0  # the second image has none
    moved, outside = hints.transfer_colour(photo, given)
    assert torch.equal(moved[1], photo[1]) and not outside[1].any()
    assert not torch.equal(moved[0], photo[0])


def test_transfer_follows_two_hints_of_two_colours():
    photo = shaded_shoes(batch=1)
    given = one_hint(1, (178, 34, 34), at=(16, 9)) + one_hint(1, (30, 80, 200), at=(16, 22))
    moved = hints.srgb_to_lab(hints.transfer_colour(photo, given)[0])[0]
    red, blue = lab_of((178, 34, 34)), lab_of((30, 80, 200))
    left, right = moved[:, 12:20, 8:11].mean((1, 2)), moved[:, 12:20, 21:24].mean((1, 2))
    # a* is high for red, b* low for blue: each side leans to its own hint
    assert left[1] > right[1] + 10 and right[2] < left[2] - 10
    assert (left - red).norm() < (left - blue).norm()
    assert (right - blue).norm() < (right - red).norm()


def test_drawing_inside_is_the_closed_outline_filled_without_its_strokes():
    sketch = torch.ones(3, 64, 64)
    sketch[:, 10:54, 10:12] = sketch[:, 10:54, 52:54] = sketch[:, 10:12, 10:54] = -1  # a box...
    sketch[:, 52:54, 10:30] = sketch[:, 52:54, 32:54] = -1  # ...with a 2-pixel gap at the bottom
    ink, inside = hints.drawing_inside(sketch)
    assert inside[12:52, 12:52].all() and not (inside & ink).any()  # the gap closed, then filled
    assert not inside[:10].any() and not inside[55:].any() and not inside[:, :10].any()
    blank_ink, blank_inside = hints.drawing_inside(torch.ones(3, 16, 16))
    assert not blank_ink.any() and not blank_inside.any()


# --- infer.py: the asked colour, transferred ---------------------------------------------------

def contrasty_checkpoint(folder, hints_on: bool = True):
    """A tiny generator.pt (random weights) trained with hints or without, its last layer scaled
    so that its photos have contrast: a shoe unlike the paper, edges."""
    cfg = tiny_config(folder, folder, hints=hints_on, name="hints" if hints_on else "plain")
    torch.manual_seed(0)
    generator = build_generator(cfg).train()
    generator(torch.randn(4, 3 + 4 * hints_on, 64, 64))  # running statistics off 0 and 1
    with torch.no_grad():
        [p for p in generator.parameters() if p.dim() == 4][-1].mul_(5)
    path = Path(folder) / "models" / cfg.name / "generator.pt"
    save.atomic_save({"generator": generator.state_dict(), "config": cfg.to_dict(), "step": 0},
                     path)
    return path


def box_sketch(path, size=64):
    """A closed outline on white paper, at the model's size (unfitted: the model's frame)."""
    img = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(img).rectangle((10, 12, 54, 50), outline="black", width=1)
    img.save(path)
    return path


def photo_of(folder):
    """The photo infer.py wrote to folder/s.png, (1, 3, H, W) in [-1, 1]."""
    return to_tensor(Image.open(folder / "s.png").convert("RGB"))[None]


def test_infer_color_makes_the_shoe_that_colour_and_no_transfer_gives_gs_own(tmp_path):
    torch.set_num_threads(1)
    path, sketch, green = contrasty_checkpoint(tmp_path), box_sketch(tmp_path / "s.png"), "#2e8b57"
    base = [str(sketch), "--checkpoint", str(path), "--eval", "--no-tune", "--no-fit"]
    for out, flags in (("on", ["--color", green]), ("off", ["--color", green, "--no-transfer"]),
                       ("plain", []), ("plain_off", ["--no-transfer"])):
        assert infer.main([*base, "-o", str(tmp_path / out), *flags]) == 0
    on, off, plain, plain_off = (photo_of(tmp_path / out) for out in ("on", "off", "plain",
                                                                      "plain_off"))
    # G's own photo, as infer.py made it before the transfer, in the model's frame (64×64 here)
    G, cfg = save.load_generator(path)
    prepared = prepare_sketch(sketch, 64, fit=False)
    given = infer.hint_channels(prepared, cfg, colour=hints.parse_colour(green))[None]
    own = tune.Tuner(G, paper=False, tune=False)(torch.cat([prepared.sketch[None], given], 1), [0])
    assert torch.equal(off, to_tensor(to_image(own[0]))[None])  # --no-transfer: as before
    moved = hints.transfer_colour(own, given)[0]
    assert torch.equal(on, to_tensor(to_image(moved[0]))[None])  # the same function
    assert torch.equal(plain, plain_off)  # no hint: nothing to transfer
    inside = torch.from_numpy(hints.drawing_inside(prepared.sketch)[1])[None, None]
    error = [(median_lab(photo, inside) - lab_of(hints.parse_colour(green))).norm().item()
             for photo in (on, off)]
    assert error[0] < 3 < 15 < error[1], error  # the asked colour inside the drawing, not G's


def test_infer_hints_file_is_transferred_and_a_model_without_hints_takes_no_transfer(tmp_path):
    torch.set_num_threads(1)
    path, sketch = contrasty_checkpoint(tmp_path), box_sketch(tmp_path / "s.png")
    painted = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(painted).rectangle((30, 28, 33, 31), fill=(30, 80, 200, 255))
    painted.save(tmp_path / "h.png")
    base = [str(sketch), "--checkpoint", str(path), "--eval", "--no-tune", "--no-fit",
            "--hints", str(tmp_path / "h.png")]
    assert infer.main([*base, "-o", str(tmp_path / "on")]) == 0
    assert infer.main([*base, "-o", str(tmp_path / "off"), "--no-transfer"]) == 0
    inside = torch.from_numpy(hints.drawing_inside(prepare_sketch(sketch, 64).sketch)[1])
    error = [(median_lab(photo_of(tmp_path / out), inside[None, None]) - lab_of((30, 80, 200)))
             .norm().item() for out in ("on", "off")]
    assert error[0] < 3 < 15 < error[1], error
    plain = contrasty_checkpoint(tmp_path, hints_on=False)
    for out, flags in (("a", []), ("b", ["--no-transfer"]), ("c", ["--transfer"])):
        assert infer.main([str(sketch), "--checkpoint", str(plain), "--eval", "--no-tune",
                           "-o", str(tmp_path / out), *flags]) == 0
    assert torch.equal(photo_of(tmp_path / "a"), photo_of(tmp_path / "b"))
    assert torch.equal(photo_of(tmp_path / "a"), photo_of(tmp_path / "c"))


def test_transfer_is_a_proper_boolean_flag():
    assert infer.parse_args(["s.png"]).transfer is True
    assert infer.parse_args(["s.png", "--no-transfer"]).transfer is False
    assert infer.parse_args(["s.png", "--no-transfer", "--transfer"]).transfer is True
