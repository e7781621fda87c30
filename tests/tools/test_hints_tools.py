"""Colour hints in the tools: tools.evaluate's colour error (CIE Lab against known values), --hints
N and --asked_colors (what infer.py --color makes, measured), and the sketch pad's hint requests
(the shoe transferred to their colour as infer.py transfers it)."""

import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import make_pairs, tiny_config  # noqa: E402

import hints  # noqa: E402
import infer  # noqa: E402
import save  # noqa: E402
from dataset import to_image, to_tensor  # noqa: E402
from generator import build_generator, translate  # noqa: E402
from sketch import prepare_sketch, put_back  # noqa: E402
from tools import evaluate  # noqa: E402
from test_app import (CANVAS_PNG, CHROMIUM, PHOTO_PNG, SERVERS, SHOE_STROKES, SHOWN,  # noqa: E402
                      Chromium, pixels, png, request, serving, settled)  # noqa: F401 (settled: autouse)
from tools import app  # noqa: E402


def checkpoint(folder, hints: bool, contrasty: bool = False) -> Path:
    """A tiny generator.pt (random weights) trained with or without hints, its val data beside;
    contrasty: its last layer scaled so that its photos have contrast (a shoe unlike the paper,
    edges to score)."""
    folder = Path(folder)
    make_pairs(folder / "data" / "val", 2, size=64, seed=3)
    cfg = tiny_config(folder, folder / "data", hints=hints, name="hints" if hints else "plain")
    torch.manual_seed(0)
    generator = build_generator(cfg).train()
    generator(torch.randn(4, cfg.hints * 4 + 3, 64, 64))  # running statistics away from 0 and 1
    if contrasty:
        with torch.no_grad():
            [p for p in generator.parameters() if p.dim() == 4][-1].mul_(5)
    path = folder / "models" / cfg.name / "generator.pt"
    save.atomic_save({"generator": generator.state_dict(), "config": cfg.to_dict(), "step": 0},
                     path)
    return path


# --- the colour error ---------------------------------------------------------------------------

def srgb(*colours):
    """(N, 3, 1, 1) in [-1, 1] of 0..255 RGB colours."""
    return torch.tensor(colours, dtype=torch.float64).view(-1, 3, 1, 1) / 127.5 - 1


def test_srgb_to_lab_gives_the_published_values():
    # CIE Lab (D65) of sRGB primaries, white and middle gray (Lindbloom's calculator)
    known = {(255, 255, 255): (100.0, 0.0, 0.0), (0, 0, 0): (0.0, 0.0, 0.0),
             (255, 0, 0): (53.2408, 80.0925, 67.2032), (0, 255, 0): (87.7347, -86.1827, 83.1793),
             (0, 0, 255): (32.2970, 79.1875, -107.8602), (128, 128, 128): (53.5850, 0.0, 0.0)}
    lab = hints.srgb_to_lab(srgb(*known))[:, :, 0, 0]
    assert torch.allclose(lab, torch.tensor(list(known.values()), dtype=torch.float64), atol=2e-3)


def test_delta_e_is_measured_on_the_shoe_only():
    real = torch.ones(1, 3, 32, 32)
    real[:, :, 8:24, 8:24] = srgb((255, 0, 0))[0]  # a red shoe on white
    fake = real.clone()
    fake[:, :, 8:24, 8:24] = srgb((0, 0, 255))[0]  # painted blue
    fake[:, :, :4] = -1  # and a black stripe on the background: not the shoe, not counted
    red, blue = hints.srgb_to_lab(srgb((255, 0, 0), (0, 0, 255)))[:, :, 0, 0]
    pixels, means = evaluate.delta_e(fake, real)
    assert pixels.item() == pytest.approx((red - blue).norm().item()) == means.item()
    assert evaluate.delta_e(real, real)[0].item() == 0
    white = torch.ones(1, 3, 8, 8)  # no shoe found: every pixel counts
    assert evaluate.delta_e(-white, white)[0].item() == pytest.approx(100.0, abs=1e-3)
    # half the shoe too light, half too dark: every pixel is off, the mean colour is right
    gray = srgb((128, 128, 128))[0]
    real[:, :, 8:24, 8:24] = gray
    fake = real.clone()
    fake[:, :, 8:16, 8:24] = srgb((160, 160, 160))[0]
    fake[:, :, 16:24, 8:24] = srgb((93, 93, 93))[0]
    pixels, means = evaluate.delta_e(fake, real)
    assert pixels.item() > 10 * means.item() > 0  # 13.2 against 0.9 (L* is not linear in gray)


def test_evaluate_hints_scores_with_none_and_with_n_side_by_side(tmp_path, capsys, monkeypatch):
    hinted, plain = checkpoint(tmp_path, True), checkpoint(tmp_path, False)
    data = tmp_path / "data" / "val"
    given, original = [], evaluate.sample_hints

    def sample(photo, generator, **kwargs):
        hints = original(photo, generator, **kwargs)
        given.append((kwargs["count"], generator.initial_seed(), hints))
        return hints

    monkeypatch.setattr(evaluate, "sample_hints", sample)
    args = ["--checkpoint", hinted, "--data", data, "--eval", "--no-tune", "--hints", 3]
    assert evaluate.main([*map(str, args), "--out", str(tmp_path / "a"), "--compare",
                          str(plain)]) == 0
    table = capsys.readouterr().out
    assert "hints/generator.pt (0 hints)" in table and "hints/generator.pt (3 hints)" in table
    assert "ΔE pixels" in table and "ΔE mean" in table
    report = json.loads((tmp_path / "a" / "results.json").read_text())
    assert report["hints"] == 0 and [r["hints"] for r in report["with_hints"]] == [3]
    assert report["compare"]["checkpoint"] == str(plain)  # scored without: it has no channels
    assert report["mean"]["delta_e"] != report["with_hints"][0]["mean"]["delta_e"]
    # 3 patches per pair, seeded by (seed, pair); the 0-hint run gave none
    assert [(count, seed) for count, seed, _ in given] == [(0, 0), (0, 1), (3, 0), (3, 1)]
    assert all(hints[:, 3].sum() == 0 for count, _, hints in given if count == 0)
    assert all(hints[:, 3].sum() > 0 for count, _, hints in given if count == 3)
    # a model without hint channels alone: one line
    assert evaluate.main(["--checkpoint", str(plain), "--data", str(data), "--hints", "3",
                          "--out", str(tmp_path / "b")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "trained without colour hints" in error[0]


def test_evaluate_hints_n_transfers_the_photos_unless_no_transfer(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    G, cfg = save.load_generator(checkpoint(tmp_path, True, contrasty=True))
    data, given, original = tmp_path / "data" / "val", [], evaluate.sample_hints

    def sample(photo, generator, **kwargs):
        given.append(original(photo, generator, **kwargs))
        return given[-1]

    monkeypatch.setattr(evaluate, "sample_hints", sample)
    made = {}
    for transfer in (True, False):
        made[transfer] = []
        result = evaluate.evaluate(G, cfg, data, hints=3, transfer=transfer, batch_size=2,
                                   on_batch=lambda *batch: made[transfer].append(batch[2]))
        made[transfer].append(result["mean"]["delta_e_mean"])
    moved = hints.transfer_colour(made[False][0], torch.cat(given[:2]))[0]
    assert torch.equal(made[True][0], moved) and not torch.equal(moved, made[False][0])
    assert made[True][1] < made[False][1]  # the colour of the hints it was given, more nearly
    # the command line's --no-transfer is the same switch
    for flags, transfer in (([], True), (["--no-transfer"], False)):
        out = tmp_path / f"out{transfer}"
        assert evaluate.main(["--checkpoint", str(tmp_path / "models/hints/generator.pt"),
                              "--data", str(data), "--hints", "3", "--no-tune", "--out", str(out),
                              "--precision", "fp32", *flags]) == 0
        report = json.loads((out / "results.json").read_text())
        assert report["with_hints"][0]["mean"]["delta_e_mean"] == pytest.approx(
            made[transfer][1], rel=1e-6)


ASKED = ("#b22222", "rgb(30, 80, 200)")


def asked_directly(G, cfg, files, rgb, seed, transfer) -> list:
    """[{delta_e, edge_f1, edge_f1_change, edges, clipped}] of each file for colour rgb, computed
    here from the pieces: the pair's sketch, one patch inside its drawing, G in paper mode with
    the one seed, the transfer, the median Lab inside the drawing."""
    scores = []
    for path in files:
        sketch = prepare_sketch(path, cfg.image_size).sketch[None]
        patch = hints.colour_patch(sketch[0], rgb, hints.patch_side(cfg.hint_patch, 64))[None]
        photo, plain = (translate(G, torch.cat([sketch, given], 1), seeds=[seed])
                        for given in (patch, torch.zeros_like(patch)))
        photo, clipped = hints.transfer_colour(photo, patch) if transfer else (
            photo, torch.zeros(1, 1, 64, 64, dtype=torch.bool))
        inside = torch.from_numpy(hints.drawing_inside(sketch[0])[1])
        median = hints.srgb_to_lab(photo)[0][:, inside].median(1).values
        f1, plain_f1 = (evaluate.edge_f1(one, sketch).item() for one in (photo, plain))
        lines = evaluate.detect_edges(evaluate.to_unit(plain))
        asked = hints.srgb_to_lab(srgb(rgb))[0, :, 0, 0]
        scores.append({"delta_e": (median - asked).norm().item(),
                       "edge_f1": f1, "edge_f1_change": f1 - plain_f1,
                       "edges": evaluate.line_f1(photo, lines).item(),
                       "clipped": clipped.float().mean().item(), "photo": photo})
    return scores


def test_asked_colors_score_what_infer_makes_of_each_sketch(tmp_path, capsys):
    torch.set_num_threads(1)
    path = checkpoint(tmp_path, True, contrasty=True)
    data = tmp_path / "data" / "val"
    G, cfg = save.load_generator(path)
    files = sorted(data.glob("*.png"))
    for flags, transfer in (([], True), (["--no-transfer"], False)):
        out = tmp_path / f"out{transfer}"
        assert evaluate.main(["--checkpoint", str(path), "--data", str(data), "--no-tune",
                              "--precision", "fp32", "--seed", "3", "--out", str(out),
                              "--asked_colors", *ASKED, *flags]) == 0
        printed = capsys.readouterr().out
        report = json.loads((out / "results.json").read_text())["asked_colors"]
        assert len(report) == 1 and report[0]["transfer"] is transfer and report[0]["seed"] == 3
        page = (out / "index.html").read_text()
        for text, row in zip(ASKED, report[0]["colors"]):
            rgb = hints.parse_colour(text)
            assert row["color"] == "#%02x%02x%02x" % rgb and row["rgb"] == list(rgb)
            expected = asked_directly(G, cfg, files, rgb, seed=3, transfer=transfer)
            for image, direct in zip(row["images"], expected):
                for key in ("delta_e", "edge_f1", "edge_f1_change", "edges", "clipped"):
                    assert image[key] == pytest.approx(direct[key], rel=1e-5, abs=1e-9), key
            for key in ("delta_e", "edge_f1", "edge_f1_change", "edges", "clipped"):
                assert row[key] == pytest.approx(sum(d[key] for d in expected) / 2, abs=1e-9)
            assert f"{row['color']}   {row['delta_e']:>8.2f}" in printed
            assert f"<td>{row['delta_e']:.2f}</td>" in page
        assert (report[0]["colors"][0]["clipped"] > 0) is transfer
        assert "Asked colours: hints/generator.pt" in page
        if transfer:
            asked_on = report[0]["colors"]
    # the shoe takes the asked colour (all but what clips: 60-70% of this random model's pixels,
    # 6.4-6.5 ΔE), G's own photo does not (61-69)
    assert all(row["delta_e"] < 10 for row in asked_on)
    assert all(row["delta_e"] > 40 for row in report[0]["colors"])
    assert any(abs(row["edge_f1_change"]) > 0 for row in asked_on)
    # what was measured is infer.py's photo of the pair, pixel for pixel
    assert infer.main([str(files[1]), "--checkpoint", str(path), "--no-tune", "--seed", "3",
                       "-o", str(tmp_path / "infer"), "--color", ASKED[1]]) == 0
    made = to_tensor(Image.open(tmp_path / "infer" / "2_AB.png").convert("RGB"))
    direct = asked_directly(G, cfg, files[1:], hints.parse_colour(ASKED[1]), 3, True)[0]
    assert torch.equal(made, to_tensor(to_image(direct["photo"][0])))


@pytest.mark.parametrize("model, colours, says", [
    ("plain", ["red"], "--asked_colors: trained without colour hints (no hint channels)"),
    ("hints", ["red", "#12"], "--asked_colors: '#12' is not a colour"),
    ("hints", ["rgb(999,0,0)"], "--asked_colors: 'rgb(999,0,0)': red 999 is out of range"),
])
def test_asked_colors_are_refused_in_one_line(tmp_path, capsys, model, colours, says):
    path = checkpoint(tmp_path, model == "hints")
    assert evaluate.main(["--checkpoint", str(path), "--data", str(tmp_path / "data" / "val"),
                          "--out", str(tmp_path / "out"), "--asked_colors", *colours]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and says in error[0], error
    assert not (tmp_path / "out").exists()


def test_a_hint_model_scores_unpaired_sketches_and_their_asked_colours(tmp_path, capsys):
    torch.set_num_threads(1)
    path = checkpoint(tmp_path, True, contrasty=True)
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    for k, box in enumerate(((20, 30, 90, 80), (10, 10, 60, 70))):
        img = Image.new("RGB", (100, 90), "white")
        ImageDraw.Draw(img).rectangle(box, outline="black", width=2)
        img.save(sketches / f"s{k}.png")
    assert evaluate.main(["--checkpoint", str(path), "--sketches", str(sketches), "--no-tune",
                          "--out", str(tmp_path / "out"), "--asked_colors", "green"]) == 0
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(report["images"]) == 2 and "edge_f1" in report["mean"]  # given no hints
    asked = report["asked_colors"][0]
    # fitted, the lines are redrawn faint: scored as drawing_inside finds them, not as pairs' are
    assert asked["edge_f1"] > 0.1 and asked["colors"][0]["delta_e"] < 10  # (clipping: 8.5)
    assert (tmp_path / "out" / "images" / "s0.png.sketch.png").exists()


# --- the sketch pad's hint requests -------------------------------------------------------------

@pytest.fixture(scope="module")
def urls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hints_app")
    with serving(checkpoint(folder, True, contrasty=True), paper=False, tune=False) as hinted, \
            serving(checkpoint(folder, False), paper=False, tune=False) as plain:
        yield hinted, plain


def drawing(size=256) -> bytes:
    img = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(img).rectangle((60, 80, 200, 180), outline="black", width=2)
    return png(img)


def raw_hint(x: bytes) -> bytes:
    """A JSON body whose one hint has this x, as written (JSON that json.dumps would not write)."""
    url = "data:image/png;base64," + base64.b64encode(drawing()).decode()
    return b'{"sketch": "' + url.encode() + b'", "hints": [{"x": ' + x + b', "y": 10, "color": ' \
        b'"red"}]}'


def body(hints, sketch=None, **fields) -> bytes:
    url = "data:image/png;base64," + base64.b64encode(sketch or drawing()).decode()
    return json.dumps({"sketch": url, "hints": hints, **fields}).encode()


def test_hint_dots_reach_the_generator_where_they_were_drawn(urls, tmp_path):
    hinted, plain = urls
    dot = {"x": 100, "y": 150, "color": "#0000ff"}
    status, _, given = request(hinted, "POST", "/generate?given", body([dot]))
    assert status == 200
    blue = np.argwhere((pixels(given) == [0, 0, 255]).all(axis=2))
    # the box is fitted to the 64×64 frame; the dot goes with it
    (tmp_path / "s.png").write_bytes(drawing())
    left, top, side, _ = prepare_sketch(tmp_path / "s.png", 64).region
    assert side < 256 and len(blue) >= 4
    assert np.abs(blue.mean(0) - [(150 - top) * 64 / side, (100 - left) * 64 / side]).max() < 1
    photos = [pixels(request(hinted, "POST", "/generate", data)[2])
              for data in (body([dot]), body([]), drawing())]
    assert photos[0].shape == (256, 256, 3) and not np.array_equal(photos[0], photos[1])
    assert np.array_equal(photos[1], photos[2])  # no dots: the plain PNG's photo
    assert 'HINTS = true' in request(hinted)[2].decode()
    assert 'HINTS = false' in request(plain)[2].decode()


@pytest.mark.parametrize("data, message", [
    (b'{"sketch": 1}', 'needs "sketch"'),
    (b"{nope", "does not parse"),
    (body({"x": 1}), '"hints" must be a list'),
    (body([{"x": 10, "y": "a", "color": "red"}]), 'hint 0: "x" and "y" must be numbers'),
    (body([{"x": 10, "y": 10, "color": "red"}, {"x": 1, "y": 2, "color": "#12"}]),
     "hint 1: '#12' is not a colour"),
    (body([{"x": 300, "y": 10, "color": "red"}]), "hint 0 at (300, 10) lies outside the 256×256"),
    (body([{"x": 1, "y": 1, "color": "red"}] * 2001), "2001 hints, more than 2000"),
    (json.dumps({"sketch": "data:image/png;base64,@@", "hints": []}).encode(), "not valid base64"),
    # json.loads recursed into a RecursionError: a 500
    (b'{"a": ' * 2000 + b"1" + b"}" * 2000, "nested too deeply"),
    (b'{"sketch": "x", "hints": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    # a 401-digit coordinate: math.isfinite(10**400) raised OverflowError, a 500
    (raw_hint(b"1" + b"0" * 400), 'hint 0: "x" and "y" must be numbers of sketch pixels'),
    (raw_hint(b"-1" + b"0" * 400), 'hint 0: "x" and "y" must be numbers of sketch pixels'),
    (raw_hint(b"NaN"), 'hint 0: "x" and "y" must be numbers of sketch pixels'),
    (raw_hint(b"Infinity"), 'hint 0: "x" and "y" must be numbers of sketch pixels'),
    (raw_hint(b"-Infinity"), 'hint 0: "x" and "y" must be numbers of sketch pixels'),
    (raw_hint(b"1e400"), 'hint 0: "x" and "y" must be numbers of sketch pixels'),
    (raw_hint(b"true"), 'hint 0: "x" and "y" must be numbers of sketch pixels'),
    (raw_hint(b'"12"'), 'hint 0: "x" and "y" must be numbers of sketch pixels'),
    (raw_hint(b"null"), 'hint 0: "x" and "y" must be numbers of sketch pixels'),
    (raw_hint(b"[1]"), 'hint 0: "x" and "y" must be numbers of sketch pixels'),
    (raw_hint(b"1" + b"0" * 5000), "does not parse"),  # past int()'s 4,300 digits
    (raw_hint(b"1e15"), "hint 0 at (1e+15, 10) lies outside the 256×256 sketch"),
    (raw_hint(b"-0.5"), "hint 0 at (-0.5, 10) lies outside the 256×256 sketch"),
    (body([{"x": 1, "y": 1, "color": 123}]), 'hint 0: "color" must be text such as "#b22222"'),
    (body([{"x": 1, "y": 1}]), 'hint 0: "color" must be text such as "#b22222"'),
    (body([{"x": 1, "y": 1, "color": "rgb(999,0,0)"}]), "hint 0: 'rgb(999,0,0)': red 999 is out"),
    (body([{"x": 1, "y": 1, "color": "#12345600"}]), "hint 0: '#12345600': alpha 00 of ff: not "),
    (body(["red"]), 'hint 0: needs numbers "x" and "y" (sketch pixels) and a "color"'),
    (json.dumps({"sketch": "data:image/png;base64,\ud800", "hints": []}).encode(),
     "not valid base64"),
    (json.dumps({"sketch": "\ud800", "hints": []}).encode(), "upload: not a readable image"),
])
def test_bad_hint_requests_get_400_and_one_line(urls, data, message, capsys):
    status, kind, text = request(urls[0], "POST", "/generate", data)
    assert status == 400 and kind.startswith("text/plain") and message in text.decode(), text
    assert len(text.decode().strip().splitlines()) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("colour", ["rgb(999,0,0)", "rgb(200%,0%,0%)", "#12345600",
                                    "hsl(0,150%,9%)", "rgb(\u0661,0,0)", "#12"])
def test_infer_and_the_sketch_pad_refuse_a_colour_alike(urls, colour, tmp_path, capsys):
    with pytest.raises(ValueError) as error:
        hints.parse_colour(colour)
    says = str(error.value)
    status, _, text = request(urls[0], "POST", "/generate",
                              body([{"x": 100, "y": 100, "color": colour}]))
    assert (status, text.decode()) == (400, f"hint 0: {says}\n")
    with pytest.raises(SystemExit):
        infer.main(["s.png", "-o", str(tmp_path), "--checkpoint", "x.pt", "--color", colour])
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: --color: {says}")
    # and the same colour from both when it is one: the dot's pixels in ?given
    assert hints.parse_colour("rgb(100%, 50%, 0%)") == (255, 128, 0)
    given = pixels(request(urls[0], "POST", "/generate?given",
                           body([{"x": 100, "y": 150, "color": "rgb(100%, 50%, 0%)"}]))[2])
    assert (given == [255, 128, 0]).all(axis=2).sum() >= 4


def test_a_model_without_hints_refuses_them_in_one_line(urls):
    status, _, text = request(urls[1], "POST", "/generate",
                              body([{"x": 10, "y": 10, "color": "red"}]))
    assert status == 400 and "trained without colour hints" in text.decode()
    assert request(urls[1], "POST", "/generate", body([]))[0] == 200  # an empty list is none


GREEN = (46, 139, 87)


def median_colour_error(photo: np.ndarray, rgb, box=(62, 82, 198, 178)) -> float:
    """ΔE of the median Lab colour of a served photo (H, W, 3) inside drawing()'s box to rgb."""
    left, top, right, bottom = box
    inside = to_tensor(Image.fromarray(photo.astype(np.uint8)))[None, :, top:bottom, left:right]
    lab = hints.srgb_to_lab(inside)[0].flatten(1).median(1).values
    return (lab - hints.srgb_to_lab(srgb(rgb))[0, :, 0, 0]).norm().item()


def test_a_hint_click_makes_the_shoe_that_colour_as_infer_transfers_it(urls, tmp_path):
    hinted = urls[0]
    dot = {"x": 130, "y": 130, "color": "#2e8b57"}
    on, off, default = (pixels(request(hinted, "POST", "/generate", data)[2]) for data in (
        body([dot], transfer=True), body([dot], transfer=False), body([dot])))
    assert np.array_equal(on, default)  # the transfer is on unless a request turns it off
    # the same photo from the pieces: the app's hint dot, G, hints.transfer_colour, put back
    shoe_app = SERVERS[hinted].app
    (tmp_path / "s.png").write_bytes(drawing())
    prepared = prepare_sketch(tmp_path / "s.png", 64)
    given = shoe_app.hint_channels(prepared, [(130, 130, GREEN)])[None]
    own = shoe_app.tuner(torch.cat([prepared.sketch[None], given], 1), [shoe_app.seed])
    assert np.array_equal(off, np.asarray(put_back(to_image(own[0]), prepared)))
    moved = hints.transfer_colour(own, given)[0]
    assert np.array_equal(on, np.asarray(put_back(to_image(moved[0]), prepared)))
    error = [median_colour_error(photo, GREEN) for photo in (on, off)]
    assert error[0] < 5 < 30 < error[1], error  # the clicked colour (1.4), not G's own (48)
    # a plain PNG or no hints: nothing to transfer, either way
    assert np.array_equal(pixels(request(hinted, "POST", "/generate", body([], transfer=True))[2]),
                          pixels(request(hinted, "POST", "/generate", drawing())[2]))


def test_no_transfer_is_the_apps_default_when_asked_and_a_request_still_decides(urls, tmp_path,
                                                                              capsys):
    path = checkpoint(tmp_path, True, contrasty=True)
    dot = {"x": 130, "y": 130, "color": "#2e8b57"}
    with serving(path, paper=False, tune=False, transfer=False) as url:
        default, on = (pixels(request(url, "POST", "/generate", data)[2])
                       for data in (body([dot]), body([dot], transfer=True)))
        assert 'type="checkbox">' in request(url)[2].decode()  # the page's box: unticked
    assert 'type="checkbox" checked>' in request(urls[0])[2].decode()
    error = [median_colour_error(photo, GREEN) for photo in (on, default)]
    assert error[0] < 10 < 30 < error[1], error
    with pytest.raises(SystemExit):
        app.main(["--help"])
    assert "--transfer, --no-transfer" in capsys.readouterr().out


@pytest.mark.parametrize("value", ['"yes"', "1", "null", "[]"])
def test_a_transfer_that_is_not_a_boolean_gets_400_and_one_line(urls, value):
    url = "data:image/png;base64," + base64.b64encode(drawing()).decode()
    data = ('{"sketch": "%s", "hints": [], "transfer": %s}' % (url, value)).encode()
    status, _, text = request(urls[0], "POST", "/generate", data)
    if value == "null":  # JSON's null: not given, the app's default
        assert status == 200
        return
    assert status == 400 and text.decode() == ('"transfer" must be true or false (whether the '
                                               "shoe takes the hints' colour after the generator, "
                                               "as infer.py --transfer)\n")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")
def test_the_hint_brush_sends_dots_and_undo_takes_them_back(urls, tmp_path):
    with Chromium(tmp_path) as browser:
        browser.open(urls[0])
        browser.draw(SHOE_STROKES[:2])
        browser.wait_for(SHOWN + "2")
        plain = browser.image(PHOTO_PNG)
        browser.evaluate("document.getElementById('hint').click(); "
                         "document.getElementById('hintColour').value = '#0000ff'")
        browser.draw([[(120, 150), (140, 150)]])  # a short brush stroke: dots along it
        browser.wait_for(SHOWN + "3")
        dots = browser.evaluate("JSON.stringify(hints)")
        assert json.loads(dots)[0] == {"x": 120, "y": 150, "color": "#0000ff"}
        assert len(json.loads(dots)) >= 3
        assert not np.array_equal(pixels(browser.image(PHOTO_PNG)), pixels(plain))
        browser.evaluate("document.getElementById('undo').click()")
        browser.wait_for(SHOWN + "4")
        assert browser.evaluate("hints.length") == 0
        assert np.array_equal(pixels(browser.image(PHOTO_PNG)), pixels(plain))
        browser.open(urls[1])  # a model without hints: the brush is off
        assert browser.evaluate("document.getElementById('hint').disabled")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")
def test_a_click_with_the_hint_brush_gives_the_transferred_photo_and_the_box_turns_it_off(
        urls, tmp_path):
    with Chromium(tmp_path) as browser:
        browser.open(urls[0])
        browser.draw(SHOE_STROKES)
        browser.wait_for(SHOWN + str(len(SHOE_STROKES)))
        browser.evaluate("document.getElementById('hint').click(); "
                         "document.getElementById('hintColour').value = '#2e8b57'")
        browser.draw([[(130, 160)]])  # one click: one dot
        browser.wait_for(SHOWN + str(len(SHOE_STROKES) + 1))
        dots = json.loads(browser.evaluate("JSON.stringify(hints)"))
        assert dots == [{"x": 130, "y": 160, "color": "#2e8b57"}]
        sketch = browser.image(CANVAS_PNG)
        shown = pixels(browser.image(PHOTO_PNG))
        for transfer in (True, False):  # the API's photo of the same canvas and dot
            answer = pixels(request(urls[0], "POST", "/generate",
                                    body(dots, sketch, transfer=transfer))[2])
            assert np.array_equal(shown, answer) is transfer
        browser.evaluate("document.getElementById('transfer').click()")  # untick: G's own
        browser.wait_for(SHOWN + str(len(SHOE_STROKES) + 2))
        assert np.array_equal(pixels(browser.image(PHOTO_PNG)), answer)
