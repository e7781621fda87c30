"""Checkpoints round-trip and refuse bad files; infer.py works end to end as a command: any size,
fitted or plain, --native, batching, bad files named one by one."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageOps

import config
import save
from conftest import ROOT, make_pairs, save_run, tiny_config
from generator import translate
import infer
from dataset import to_image, to_tensor
from sketch import SHOE_MARGIN, fit_sketch, prepare_sketch, put_back


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny generator, its statistics moved, saved as last.pt + generator.pt: (path, G)."""
    return save_run(tmp_path / "models/test/last.pt", tiny_config(tmp_path, tmp_path), warm=True)


def run_infer(*args):
    """infer.py as a command, for the tests of the command itself."""
    return subprocess.run([sys.executable, str(ROOT / "infer.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def infer_main(capsys, *args) -> tuple:
    """infer.main in this process (no interpreter to start): (exit code, stderr lines)."""
    code = infer.main(list(map(str, args)))
    return code, capsys.readouterr().err.strip().splitlines()


def test_without_a_checkpoint_flag_it_says_which_run_it_took(tmp_path, checkpoint, monkeypatch,
                                                              capsys):
    older = tmp_path / "models/older/generator.pt"
    older.parent.mkdir()
    older.write_bytes((tmp_path / "models/test/generator.pt").read_bytes())
    os.utime(older, (1, 1))  # written long ago: models/test is the newest
    Image.new("RGB", (64, 64), "white").save(tmp_path / "s.png")
    monkeypatch.chdir(tmp_path)
    assert infer.main(["s.png", "-o", "out", "--eval"]) == 0
    err = capsys.readouterr().err
    assert f"checkpoint: {Path('models/test/generator.pt')} (the newest" in err
    assert infer.main(["s.png", "-o", "out", "--eval", "--checkpoint", str(older)]) == 0
    assert "checkpoint:" not in capsys.readouterr().err  # a chosen file needs no note

def test_checkpoint_round_trip_gives_identical_eval_outputs(checkpoint):
    path, G = checkpoint
    sketch = torch.randn(2, 3, 64, 64)
    for file in (path, path.parent / "generator.pt"):
        loaded, cfg = save.load_generator(file)
        assert cfg.ngf == 8 and cfg.num_downs == 6
        assert torch.equal(translate(loaded, sketch, paper=False),
                           translate(G, sketch, paper=False))


def test_bad_checkpoints_give_one_clear_error(tmp_path, checkpoint):
    path, _ = checkpoint
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.pt: not a loadable checkpoint"):
        save.load_checkpoint(truncated)
    with pytest.raises(FileNotFoundError, match="missing.pt: no such checkpoint"):
        save.load_checkpoint(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError,
                       match="other.pt: not a pix2pix checkpoint.*missing generator, config"):
        save.load_checkpoint(other)
    foreign = tmp_path / "foreign.pt"
    torch.save({"generator": {}, "config": {"norm_layer": "instance"}}, foreign)
    with pytest.raises(ValueError, match="foreign.pt: checkpoint config is not compatible"):
        save.load_checkpoint(foreign)


class RunsCode:
    """A pickle that runs a command when loaded without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"generator": RunsCode(marker), "config": {}}, evil)
    with pytest.raises(ValueError, match="evil.pt: not a loadable checkpoint"):
        save.load_checkpoint(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # what an unsafe load would have done
    assert marker.exists()


def test_infer_end_to_end(tmp_path, checkpoint):
    path, G = checkpoint
    make_pairs(tmp_path / "pairs", 2, size=64)
    sketch = Image.new("L", (90, 60), 255)  # a grayscale, non-square sketch
    sketch.paste(0, (20, 20, 70, 22))
    sketch.save(tmp_path / "sketch.jpg")
    result = run_infer(tmp_path / "sketch.jpg", tmp_path / "pairs", "-o", tmp_path / "out",
                       "--checkpoint", path.parent / "generator.pt", "--eval")
    assert result.returncode == 0, result.stderr
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outputs == ["1_AB.png", "2_AB.png", "sketch.png"]
    # The command's eval-mode output is what the generator makes of the same prepared input, put
    # back.
    prepared = prepare_sketch(tmp_path / "sketch.jpg", 64)
    expected = np.asarray(put_back(to_image(translate(G, prepared.sketch[None], paper=False)[0]),
                                   prepared))
    made = np.asarray(Image.open(tmp_path / "out/sketch.png"))
    assert made.shape == (60, 90, 3)  # the sketch's own size
    assert np.abs(made.astype(int) - expected.astype(int)).max() <= 1
    # a pair: its input half's
    assert np.asarray(Image.open(tmp_path / "out/1_AB.png")).shape == (64, 64, 3)


def test_pairs_use_their_left_half(tmp_path):
    pair = Image.new("RGB", (128, 64), "white")
    pair.paste((0, 0, 0), (64, 0, 128, 64))  # black right half must be ignored
    pair.save(tmp_path / "pair.png")
    # never fitted: all white stays
    assert prepare_sketch(tmp_path / "pair.png", 64).sketch.min() == 1.0
    assert prepare_sketch(tmp_path / "pair.png", 64, direction="BtoA").sketch.max() == -1.0


def test_paper_mode_is_seeded(tmp_path, checkpoint, capsys):
    path, _ = checkpoint
    make_pairs(tmp_path / "in", 1, size=64)
    for k, seed in enumerate((1, 1, 2)):
        assert infer_main(capsys, tmp_path / "in", "-o", tmp_path / f"out{k}", "--checkpoint",
                          path, "--seed", seed) == (0, [])
    a, b, c = (np.asarray(Image.open(tmp_path / f"out{k}/1_AB.png")) for k in range(3))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("problem, expected", [
    ("missing_checkpoint", "nope.pt: no such checkpoint"),
    ("missing_input", "ghost.jpg: no such file or folder"),
    ("empty_folder", "empty: no images in this folder"),
    ("not_an_image", "notes.jpg: not a readable image"),
])
def test_bad_inputs_give_one_line_and_exit_code_2(tmp_path, checkpoint, capsys, problem,
                                                   expected):
    path, _ = checkpoint
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.jpg").write_text("hello")
    make_pairs(tmp_path / "ok", 1, size=64)
    args = {"missing_checkpoint": [tmp_path / "ok", "--checkpoint", tmp_path / "nope.pt"],
            "missing_input": [tmp_path / "ghost.jpg", "--checkpoint", path],
            "empty_folder": [tmp_path / "empty", "--checkpoint", path],
            "not_an_image": [tmp_path / "notes.jpg", "--checkpoint", path]}[problem]
    code, lines = infer_main(capsys, *args, "-o", tmp_path / "out")
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("infer.py: error:") and expected in lines[0]


def test_bad_files_in_a_folder_are_named_and_the_rest_are_made(tmp_path, checkpoint, capsys):
    path, _ = checkpoint
    make_pairs(tmp_path / "in", 2, size=64)
    (tmp_path / "in/notes.jpg").write_text("hello")
    cut = (tmp_path / "in/1_AB.png").read_bytes()
    (tmp_path / "in/cut.png").write_bytes(cut[:len(cut) // 2])
    assert infer.main([str(tmp_path / "in"), str(tmp_path / "ghost.png"), "-o",
                       str(tmp_path / "out"), "--checkpoint", str(path), "--eval"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1_AB.png", "2_AB.png"]
    assert len(lines) == 3 and all(line.startswith("infer.py: error: ") for line in lines), lines
    assert [line.split(": ")[2] for line in lines] == [str(tmp_path / "ghost.png"),
                                                       str(tmp_path / "in/cut.png"),
                                                       str(tmp_path / "in/notes.jpg")]
    assert "3 of 5 inputs failed" in out


# --- sizes, --native, batching and fitting: infer's steps after loading, with a stand-in runner --

class Recorder:
    """A stand-in runner that returns its input (an image-to-itself "photo") and records input
    shapes."""

    def __init__(self):
        self.shapes = []

    def __call__(self, sketch, seeds):
        self.shapes.append(tuple(sketch.shape))
        return sketch


def make_photos(tmp_path, runner, *argv, **config) -> int:
    """infer.main's steps after loading the model, runner in its place and a tiny config: the exit
    code. Without -o the photos go to tmp_path/out."""
    argv = [*map(str, argv), *([] if "-o" in argv else ["-o", str(tmp_path / "out")])]
    args = infer.parse_args(argv)
    outputs = infer.plan_outputs(args)
    infer.check_outputs(args, outputs)
    return infer.make_photos(runner, tiny_config(tmp_path, tmp_path, **config), args, outputs)


def gray(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")).astype(int)


def test_any_size_comes_back_at_its_size_with_content_in_place(tmp_path):
    sketch = Image.new("L", (300, 180), 255)
    ImageDraw.Draw(sketch).ellipse((20, 40, 100, 140), fill=0)  # a dark blob on the left
    sketch.save(tmp_path / "wide.png")
    recorder = Recorder()
    assert make_photos(tmp_path, recorder, tmp_path / "wide.png", "--no-fit") == 0
    assert recorder.shapes == [(1, 3, 64, 64)]  # run at the model's size
    photo = gray(tmp_path / "out/wide.png")
    assert photo.shape == (180, 300)
    # blob left, nothing right
    assert photo[60:120, 40:80].mean() < 60 and photo[:, 150:].min() > 200
    assert photo[20:160, 10:110].mean() < photo[:, 110:].mean() - 100


def test_a_boolean_flag_never_swallows_the_sketch_after_it():
    for flags, fit in ((["--eval"], True), (["--fit"], True), (["--no-fit", "--eval"], False),
                       (["--native", "--no-eval"], False)):  # --native: the whole sketch
        args = infer.parse_args([*flags, "s.png"])
        assert args.inputs == ["s.png"] and args.fit is fit, flags
    # the old spelling `--fit false` is a usage error, not a silent "fit on"
    with pytest.raises(SystemExit, match="2"):
        infer.parse_args(["s.png", "--fit", "false"])


def test_native_runs_at_the_input_size_rounded_to_the_unet_multiple(tmp_path, checkpoint):
    path, _ = checkpoint
    sketch = Image.new("RGB", (200, 120), "white")
    ImageDraw.Draw(sketch).rectangle((30, 20, 170, 100), outline="black", width=2)
    sketch.save(tmp_path / "s.png")
    recorder = Recorder()
    assert make_photos(tmp_path, recorder, tmp_path / "s.png", "--native", "--eval",
                       image_size=128, num_downs=7) == 0
    assert recorder.shapes == [(1, 3, 128, 256)]  # 200×120 -> 256×128 for 2**7
    assert gray(tmp_path / "out/s.png").shape == (120, 200)
    # The real UNet (num_downs 6: multiples of 64) runs at 192×128 and comes back at 200×120.
    assert infer.main([str(tmp_path / "s.png"), "-o", str(tmp_path / "real"), "--checkpoint",
                       str(path), "--native"]) == 0
    assert gray(tmp_path / "real/s.png").shape == (120, 200)
    # argparse's usage error: --native means the whole sketch
    with pytest.raises(SystemExit, match="2"):
        infer.parse_args(["s.png", "--native", "--fit"])


@pytest.mark.parametrize("mode", [["--eval"], ["--seed", "3"]])  # eval mode, paper mode
def test_same_size_inputs_are_batched_with_the_same_result(tmp_path, checkpoint, mode):
    path, _ = checkpoint
    make_pairs(tmp_path / "in", 3, size=64)
    # another size: its own batch
    Image.new("RGB", (96, 64), "white").save(tmp_path / "in/other.png")
    outputs = []
    for batch_size in (1, 4):
        code = infer.main([str(tmp_path / "in"), "-o", str(tmp_path / f"out{batch_size}"),
                           "--checkpoint", str(path),
                           *mode, "--native", "--batch_size", str(batch_size)])
        assert code == 0
        outputs.append([gray(tmp_path / f"out{batch_size}/{name}.png")
                        for name in ("1_AB", "2_AB", "3_AB", "other")])
    for one, batched in zip(*outputs):
        assert np.abs(one - batched).max() <= 1
    recorder = Recorder()
    assert make_photos(tmp_path, recorder, tmp_path / "in", *mode, "--native",
                       "--batch_size", "2") == 0
    assert sorted(recorder.shapes) == [(1, 3, 64, 64), (1, 3, 64, 128),
                                                     (2, 3, 64, 64)]


def old_prepare(path, image_size):
    """sketch.prepare_sketch before fitting existed, for a plain sketch: pad to square with white,
    resize."""
    img = Image.open(path).convert("RGB")
    side = max(img.size)
    img = ImageOps.pad(img, (side, side), color="white") if img.width != img.height else img
    return to_tensor(img.resize((image_size, image_size), Image.BICUBIC))


def test_fit_false_is_the_plain_preparation(tmp_path, checkpoint, capsys):
    path, G = checkpoint
    for size in ((90, 61), (61, 90), (64, 64)):
        sketch = Image.new("L", size, 255)
        ImageDraw.Draw(sketch).line((5, 5, 40, 50), fill=0, width=3)
        sketch.save(tmp_path / "s.png")
        prepared = prepare_sketch(tmp_path / "s.png", 64, fit=False)
        assert torch.equal(prepared.sketch, old_prepare(tmp_path / "s.png", 64))
    # At the model's size the output is exactly the generator's photo: nothing cropped, nothing
    # resized.
    assert infer_main(capsys, tmp_path / "s.png", "-o", tmp_path / "out", "--checkpoint", path,
                      "--eval", "--no-fit") == (0, [])
    expected = np.asarray(to_image(translate(G, old_prepare(tmp_path / "s.png", 64)[None],
                                             paper=False)[0]))
    assert np.abs(np.asarray(Image.open(tmp_path / "out/s.png")).astype(int) - expected).max() <= 1


def dark_box(image, below=250):
    """(left, top, right, bottom) of the pixels darker than below, right and bottom exclusive."""
    rows, cols = np.nonzero(np.asarray(image.convert("L")) < below)
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def test_fit_puts_a_small_off_centre_drawing_back_at_its_place_and_size(tmp_path):
    sketch = Image.new("L", (320, 240), 255)
    draw = ImageDraw.Draw(sketch)
    draw.rectangle((200, 150, 290, 200), outline=0, width=4)  # small, bottom right
    draw.line((210, 160, 280, 190), fill=0, width=4)
    for x, y in ((20, 20), (60, 200), (300, 30)):  # JPEG-noise-like specks must not stretch the box
        draw.rectangle((x, y, x + 1, y + 1), fill=0)
    sketch.save(tmp_path / "small.png")
    prepared = prepare_sketch(tmp_path / "small.png", 128)
    x0, y0, side, _ = prepared.region
    assert 90 < side < 100 and abs(x0 + side / 2 - 245.5) <= 1 and abs(y0 + side / 2 - 175.5) <= 1
    recorder = Recorder()
    assert make_photos(tmp_path, recorder, tmp_path / "small.png", image_size=128) == 0
    assert recorder.shapes == [(1, 3, 128, 128)]
    photo = Image.open(tmp_path / "out/small.png")
    assert photo.size == (320, 240)
    assert all(abs(a - b) <= 2
               for a, b in zip(dark_box(photo), (200, 150, 291, 201))), dark_box(photo)
    # The fitted input fills the frame as an edges2shoes shoe does: its longer side about 2 × margin
    # short.
    left, _, right, _ = dark_box(to_image(prepared.sketch), below=200)
    # less half a stroke each side
    assert 128 * (1 - 2 * SHOE_MARGIN) - 8 <= right - left <= 128


def test_a_5_pixel_stroke_comes_out_of_the_fit_1_to_2_pixels_wide():
    sketch = Image.new("L", (256, 256), 255)
    ImageDraw.Draw(sketch).line((40, 30, 40, 230), fill=0, width=5)
    ImageDraw.Draw(sketch).line((40, 230, 220, 230), fill=0, width=5)
    fitted, _ = fit_sketch(sketch, 256)
    dark = (fitted[0] < 0).sum(dim=1)  # dark pixels per row
    assert dark[20:200].float().mean() <= 2 and dark[20:200].min() >= 1


# --- nothing lost: output names, inputs never overwritten, the folder tried first -----------------

def refused(tmp_path, capsys, *argv) -> list:
    """infer.main's stderr lines for a run refused with exit code 2 before it loads anything: its
    checkpoint does not exist, so a later refusal would name that."""
    assert infer.main([*map(str, argv), "--checkpoint", str(tmp_path / "nowhere.pt")]) == 2
    return capsys.readouterr().err.strip().splitlines()


def grey_sketch(path, level: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (64, 64), level).save(path)


def test_inputs_that_share_a_name_each_get_their_own_photo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for path, level in (("a/Shoe.png", 10), ("b/shoe.png", 60), ("b/shoe.jpg", 110),
                        ("c/shoe-2.png", 160), ("c/SHOE.png", 210)):
        grey_sketch(Path(path), level)
    # a folder and a file in it, by another spelling: each file once
    recorder = Recorder()
    assert make_photos(tmp_path, recorder, "a/Shoe.png", "b", "c", tmp_path / "b/shoe.png",
                       "-o", "out", "--no-fit") == 0
    assert sum(shape[0] for shape in recorder.shapes) == 5
    made = dict(line.split(" -> ") for line in capsys.readouterr().out.splitlines())
    # the first of a name keeps it, then -2, -3... skipping names taken (case-blind)
    assert made == {"a/Shoe.png": "out/Shoe.png", "b/shoe.jpg": "out/shoe-3.png",
                    "b/shoe.png": "out/shoe-4.png", "c/SHOE.png": "out/SHOE-5.png",
                    "c/shoe-2.png": "out/shoe-2.png"}
    assert sorted(p.name for p in Path("out").iterdir()) == sorted(Path(t).name
                                                                   for t in made.values())
    for sketch, photo in made.items():  # the stand-in generator returns its input
        assert abs(gray(photo).mean() - gray(sketch).mean()) < 3, (sketch, photo)


@pytest.mark.parametrize("how", ["same-folder", "dot-path", "symlink", "hard-link"])
def test_a_run_that_would_write_over_an_input_is_refused_before_any_work(tmp_path, capsys, how):
    sketches = tmp_path / "sketches"
    grey_sketch(sketches / "a.png", 0)
    grey_sketch(sketches / "b.jpg", 0)
    out = sketches
    if how == "dot-path":  # the same folder, spelt another way
        out = sketches / ".." / "sketches" / "."
    elif how in ("symlink", "hard-link"):  # out/a.png already is the input under another name
        out = tmp_path / "out"
        out.mkdir()
        link = out / "a.png"
        link.symlink_to(sketches / "a.png") if how == "symlink" else link.hardlink_to(
            sketches / "a.png")
    before = {p.name: p.read_bytes() for p in sketches.iterdir()}
    assert refused(tmp_path, capsys, sketches, "-o", out) == [
        f"infer.py: error: {sketches / 'a.png'}: its photo would be written over an input; "
        "choose another -o (outputs never replace inputs)"]
    assert {p.name: p.read_bytes() for p in sketches.iterdir()} == before


def test_an_empty_out_is_a_usage_error(capsys):
    with pytest.raises(SystemExit, match="2"):
        infer.parse_args(["a.png", "-o", ""])
    assert "-o/--out: an empty folder name" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["under-a-file", "no-new-files"])
def test_an_unwritable_out_is_found_before_any_work(tmp_path, capsys, how):
    grey_sketch(tmp_path / "a.png", 0)
    (tmp_path / "file").write_text("")
    if how == "no-new-files" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc: no folder that refuses new files even to root")
    out = tmp_path / "file" / "out" if how == "under-a-file" else Path("/proc/self")
    lines = refused(tmp_path, capsys, tmp_path / "a.png", "-o", out)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"infer.py: error: {out}: cannot write there ("), lines


def test_the_summary_counts_what_was_written(tmp_path, capsys):
    for name in ("a", "b"):
        grey_sketch(tmp_path / f"{name}.png", 0)
    (tmp_path / "out" / "b.png").mkdir(parents=True)  # b's photo cannot be saved
    assert make_photos(tmp_path, Recorder(), tmp_path / "a.png", tmp_path / "b.png",
                       "--no-fit") == 2
    assert capsys.readouterr().out.splitlines()[-1] == (f"1 of 2 inputs failed; 1 written to "
                                                        f"{tmp_path / 'out'}")
    assert make_photos(tmp_path, Recorder(), tmp_path / "b.png", "--no-fit") == 2
    assert capsys.readouterr().out.splitlines()[-1] == "1 of 1 inputs failed; nothing was written"
    (tmp_path / "given" / "a.png").mkdir(parents=True)  # a's prepared sketch cannot be saved
    assert make_photos(tmp_path, Recorder(), tmp_path / "a.png", "--no-fit", "--save_prepared",
                       tmp_path / "given") == 2  # its photo is written, the input still failed
    assert capsys.readouterr().out.splitlines()[-1] == (f"1 of 1 inputs failed; 1 written to "
                                                        f"{tmp_path / 'out'}")


def test_no_drawing_is_named_the_photo_still_made_and_save_prepared_shows_the_input(
        tmp_path, capsys):
    Image.new("L", (90, 60), 255).save(tmp_path / "blank.png")
    sketch = Image.new("L", (90, 60), 255)
    ImageDraw.Draw(sketch).ellipse((20, 10, 70, 50), outline=170, width=2)  # light pencil
    sketch.save(tmp_path / "pencil.png")
    assert make_photos(tmp_path, Recorder(), tmp_path / "blank.png", tmp_path / "pencil.png",
                       "--save_prepared", tmp_path / "given") == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "blank.png: no drawing found" in lines[0], lines
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["blank.png", "pencil.png"]
    for name in ("blank", "pencil"):  # what the generator read: the Recorder echoes it
        given = np.asarray(Image.open(tmp_path / "given" / f"{name}.png"))
        expected = to_image(prepare_sketch(tmp_path / f"{name}.png", 64).sketch)
        assert given.shape == (64, 64, 3) and np.array_equal(given, np.asarray(expected))
    assert prepare_sketch(tmp_path / "pencil.png", 64).fitted
    # the prepared sketches never replace an input, nor share the photos' folder
    assert refused(tmp_path, capsys, tmp_path / "pencil.png", "-o", tmp_path / "out",
                   "--save_prepared", tmp_path) == [
        f"infer.py: error: {tmp_path / 'pencil.png'}: its prepared sketch would be written over "
        "an input; choose another --save_prepared (outputs never replace inputs)"]
    with pytest.raises(SystemExit):
        infer.parse_args(["pencil.png", "-o", "out", "--save_prepared", "out/."])


# --- checkpoints with wrong contents, memory, links in -o ----------------------------------------

@pytest.mark.parametrize("change, expected", [
    (dict(config="ngf=8"), "its config entry is not a mapping of config fields but a str"),
    (dict(generator=["weights"]), "its generator entry is not a state dict (parameter names "
                                  "mapped to tensors) but a list"),
    (dict(generator={"final.1.bias": "zeros"}), "its generator entry is not a state dict "
                                                "(parameter names mapped to tensors) but a dict "
                                                "with 'final.1.bias': a str"),
    (dict(step=-1), "its step entry is not a count but -1"),
    (dict(config={"image_size": "64"}), "checkpoint config is not compatible: config: image_size "
                                        "must be an integer, got '64'"),
    (dict(config={"ngf": 20000}), "config: ngf=20000, num_downs=6 make a model of "
                                  "2,854,406,480,012 numbers (10,633.5 GiB), more than the 16.0 "
                                  "GiB of memory available here; not built"),
])
def test_a_checkpoint_with_wrong_contents_is_one_line_naming_the_entry(tmp_path, checkpoint,
                                                                       monkeypatch, capsys,
                                                                       change, expected):
    path, _ = checkpoint
    monkeypatch.setattr(config, "available_memory", lambda: 16 * 2**30)  # pinned: this machine's
    ckpt = torch.load(path.parent / "generator.pt", weights_only=True)
    for key, value in change.items():
        merge = key == "config" and isinstance(value, dict)
        ckpt[key] = {**ckpt[key], **value} if merge else value
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    Image.new("RGB", (64, 64), "white").save(tmp_path / "s.png")
    assert infer.main([str(tmp_path / "s.png"), "-o", str(tmp_path / "out"), "--checkpoint",
                       str(bad)]) == 2
    assert capsys.readouterr().err == f"infer.py: error: {bad}: {expected}\n"


def test_a_model_too_large_for_the_memory_is_refused_before_it_is_built(tmp_path, checkpoint,
                                                                        monkeypatch):
    path, _ = checkpoint
    devices, build = [], save.build_generator
    monkeypatch.setattr(save, "build_generator",
                        lambda cfg: devices.append(torch.empty(0).device.type) or build(cfg))
    monkeypatch.setattr(config, "available_memory", lambda: 1 << 20)  # 1 MiB free
    with pytest.raises(ValueError, match=r"generator\.pt: config: ngf=8, num_downs=6 make a model "
                                         r"of 459,308 numbers \(1\.8 MiB\), more than the 1\.0 "
                                         r"MiB of memory available here; not built"):
        save.load_generator(path.parent / "generator.pt")
    assert devices == ["meta"]  # counted on the meta device, nothing allocated
    for room in (2 << 20, None):  # enough, or a machine that does not say: built
        monkeypatch.setattr(config, "available_memory", lambda: room)
        assert save.load_generator(path.parent / "generator.pt")[1].ngf == 8


def test_the_available_memory_is_the_tightest_of_the_machine_and_its_cgroups(tmp_path,
                                                                             monkeypatch):
    meminfo, proc_cgroup, root = tmp_path / "meminfo", tmp_path / "cgroup", tmp_path / "sys"
    monkeypatch.setattr(config, "MEMINFO", meminfo)
    monkeypatch.setattr(config, "PROC_CGROUP", proc_cgroup)
    monkeypatch.setattr(config, "CGROUP_ROOT", root)
    meminfo.write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    assert config.available_memory() == 8_000_000 * 1024  # no cgroup file: the machine's
    proc_cgroup.write_text("4:memory:/job/step\n0::/job/step\n")
    for folder, limit, used in ((root / "job/step", "max", 0), (root / "job", 3 << 30, 1 << 30),
                                (root / "memory/job/step", 5 << 30, 1 << 30)):
        folder.mkdir(parents=True, exist_ok=True)
        v1 = folder.is_relative_to(root / "memory")
        (folder / ("memory.limit_in_bytes" if v1 else "memory.max")).write_text(f"{limit}\n")
        (folder / ("memory.usage_in_bytes" if v1 else "memory.current")).write_text(f"{used}\n")
    assert config.available_memory() == 2 << 30  # v2's parent: 3 GiB limit, 1 GiB used
    meminfo.unlink()
    proc_cgroup.unlink()
    monkeypatch.setattr(config.os, "sysconf", lambda name: {"SC_AVPHYS_PAGES": 1000,
                                                            "SC_PAGE_SIZE": 4096}[name])
    assert config.available_memory() == 4096 * 1000  # elsewhere: sysconf's free pages
    monkeypatch.setattr(config.os, "sysconf", lambda name: (_ for _ in ()).throw(ValueError))
    assert config.available_memory() is None and config.memory_short(1 << 60) is None


def draw_sketch(path, size) -> None:
    sketch = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(sketch).rectangle((size // 4, size // 4, size // 2, size // 2), outline="black")
    sketch.save(path)


def test_native_inputs_too_large_for_the_memory_are_refused_one_by_one(tmp_path, monkeypatch,
                                                                       capsys):
    draw_sketch(tmp_path / "big.png", 640)
    for name in ("a", "b", "c"):
        draw_sketch(tmp_path / f"{name}.png", 64)
    cfg = tiny_config(tmp_path, tmp_path)
    one = infer.activation_bytes(cfg, (3, 64, 64))
    assert infer.activation_bytes(cfg, (3, 640, 640)) == pytest.approx(100 * one, rel=0.02)
    # room for two of the small ones at once, not for the big one
    monkeypatch.setattr(config, "available_memory", lambda: int(2.5 * one))
    recorder = Recorder()
    assert make_photos(tmp_path, recorder, tmp_path / "a.png", tmp_path / "big.png",
                       tmp_path / "b.png", tmp_path / "c.png", "--native", "--eval") == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]
    assert recorder.shapes == [(2, 3, 64, 64), (1, 3, 64, 64)]  # batches of what fits
    assert capsys.readouterr().err.splitlines() == [
        f"infer.py: error: {tmp_path / 'big.png'}: generating it at 640×640 takes up to "
        f"{save.size_text(infer.activation_bytes(cfg, (3, 640, 640)))} of memory, more than the "
        f"{save.size_text(int(2.5 * one))} available (without --native it runs at the training "
        f"size)"]


class RunsOutOfMemory:
    """A stand-in runner that fails as torch's CPU allocator does on any batch holding a black
    sketch, and returns its input otherwise."""

    def __init__(self, error):
        self.error, self.shapes = error, []

    def __call__(self, sketch, seeds):
        self.shapes.append(tuple(sketch.shape))
        if (sketch.flatten(1).mean(1) < -0.9).any():
            raise self.error
        return sketch


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 68719476736 bytes. Error code 12"),
    MemoryError()])
def test_a_failure_while_generating_one_input_is_its_own_line(tmp_path, capsys, error):
    for name, level in (("a", 255), ("black", 0), ("b", 200)):
        grey_sketch(tmp_path / f"{name}.png", level)
    generator = RunsOutOfMemory(error)
    assert make_photos(tmp_path, generator, tmp_path / "a.png", tmp_path / "black.png",
                       tmp_path / "b.png", "--eval", "--no-fit") == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert generator.shapes == [(3, 3, 64, 64), (1, 3, 64, 64), (1, 3, 64, 64), (1, 3, 64, 64)]
    out = capsys.readouterr()
    assert out.err.splitlines() == [f"infer.py: error: {tmp_path / 'black.png'}: generating it "
                                    f"failed: {config.first_line(error)}"]
    assert out.out.splitlines()[-1] == f"1 of 3 inputs failed; 2 written to {tmp_path / 'out'}"


def test_links_in_the_output_folder_are_replaced_never_written_through(tmp_path, capsys):
    for name in ("a", "b"):
        grey_sketch(tmp_path / "in" / f"{name}.png", 100)
    precious = tmp_path / "elsewhere/precious"
    precious.parent.mkdir()
    precious.write_bytes(b"precious")
    out, given = tmp_path / "out", tmp_path / "given"
    for folder in (out, given):
        folder.mkdir()
        (folder / "a.png").symlink_to("../elsewhere/precious")  # to a file outside
        (folder / "b.png").symlink_to("../nowhere/b.png")  # dangling
    assert make_photos(tmp_path, Recorder(), tmp_path / "in", "-o", out, "--save_prepared", given,
                       "--no-fit") == 0
    assert precious.read_bytes() == b"precious" and not (tmp_path / "nowhere").exists()
    for folder in (out, given):
        assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png"]  # no temporary
        for name in ("a.png", "b.png"):
            assert not (folder / name).is_symlink()
            assert Image.open(folder / name).size == (64, 64)
    notes = capsys.readouterr().err.splitlines()
    assert notes[0] == (f"infer.py: {given / 'a.png'} was a link (to ../elsewhere/precious); the "
                        f"link is replaced, what it points to is left as it was")
    assert len(notes) == 4
    plain = tmp_path / "plain"
    plain.touch()  # the mode a file gets from open(): the umask's
    assert (out / "a.png").stat().st_mode == plain.stat().st_mode
