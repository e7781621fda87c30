"""evaluate.py: metrics against known answers, FID/KID math, edge F1, the loss-curve PNG, the HTML
page and the CLI."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from tools import evaluate
import save
from conftest import ROOT, make_pairs, save_run, tiny_config
from config import Config
from generator import translate


def smooth_image(size=48, seed=0):
    """A (3, size, size) photo-like image in [-1, 1]: shapes with hard edges over a smooth
    gradient."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    for y in range(size):
        draw.line([(0, y), (size, y)], fill=(40 + 3 * y, 90, 200 - 2 * y))
    for _ in range(6):
        x0, y0 = rng.integers(0, size - 8, 2)
        draw.ellipse((x0, y0, x0 + rng.integers(6, 20), y0 + rng.integers(6, 20)),
                     fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def as_tensor(img):
    return torch.from_numpy(np.asarray(img, dtype=np.float64) / 127.5 - 1).permute(2, 0, 1).float()


def reference_ssim(a, b):
    """SSIM written out from Wang et al. 2004, window by window: a, b (H, W, C) float arrays in [0,
    1]."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    per_channel = []
    for ch in range(a.shape[2]):
        values = []
        for i in range(a.shape[0] - 10):
            for j in range(a.shape[1] - 10):
                pa, pb = a[i:i + 11, j:j + 11, ch], b[i:i + 11, j:j + 11, ch]
                mu_a, mu_b = (w * pa).sum(), (w * pb).sum()
                var_a, var_b = (w * (pa - mu_a) ** 2).sum(), (w * (pb - mu_b) ** 2).sum()
                cov = (w * (pa - mu_a) * (pb - mu_b)).sum()
                values.append((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                              / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
        per_channel.append(np.mean(values))
    return float(np.mean(per_channel))


# -------------------------------------------------------------------------------- per-image metrics

def test_identical_images_score_perfectly():
    images = torch.stack([as_tensor(smooth_image(seed=s)) for s in range(2)])
    assert evaluate.l1(images, images).tolist() == [0.0, 0.0]
    assert save.psnr(images, images).tolist() == [save.PSNR_CAP_DB] * 2  # capped, not inf
    assert evaluate.ssim(images, images).sub(1).abs().max() < 1e-6


@pytest.mark.parametrize("shift", [0.1, 0.4])
def test_constant_shift_gives_exact_l1_and_psnr(shift):
    real = torch.rand(2, 3, 32, 32) - 0.5  # [-0.5, 0.5]: the shifted copy stays inside [-1, 1]
    fake = real + shift
    assert evaluate.l1(fake, real).sub(shift).abs().max() < 1e-6  # L1 on the [-1, 1] scale
    expected = -10 * math.log10((shift / 2) ** 2)  # a shift of c on [-1, 1] is c / 2 on [0, 1]
    assert save.psnr(fake, real).sub(expected).abs().max() < 1e-4


def test_ssim_of_a_blurred_copy_matches_a_direct_implementation():
    img = smooth_image()
    blurred = img.filter(ImageFilter.GaussianBlur(1.5))
    expected = reference_ssim(np.asarray(blurred) / 255.0, np.asarray(img) / 255.0)
    measured = evaluate.ssim(as_tensor(blurred)[None], as_tensor(img)[None]).item()
    assert 0.3 < expected < 0.95  # a real test: neither identical nor unrelated
    assert abs(measured - expected) < 1e-3, (measured, expected)


def test_ssim_falls_with_noise_and_images_are_scored_independently():
    real = as_tensor(smooth_image(seed=3))[None].repeat(5, 1, 1, 1)
    noise = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    levels = torch.tensor([0.02, 0.05, 0.1, 0.2, 0.4]).view(5, 1, 1, 1)
    fake = (real + levels * noise).clamp(-1, 1)
    scores = evaluate.ssim(fake, real)
    assert (scores[1:] < scores[:-1]).all(), scores
    alone = evaluate.ssim(fake[2:3], real[2:3])
    assert torch.allclose(scores[2:3], alone, atol=1e-6)  # no batch statistics leak between images


# -------------------------------------------------------------------------------------- FID and KID

def test_fid_matches_the_closed_form_for_gaussians():
    gen = torch.Generator().manual_seed(0)
    n, mu_a, mu_b = 40_000, torch.tensor([0.0, 1.0, -1.0, 0.5]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    sd_a, sd_b = torch.tensor([1.0, 2.0, 0.5, 1.0]), torch.tensor([0.5, 1.0, 1.5, 3.0])
    a = (mu_a + sd_a * torch.randn(n, 4, generator=gen)).double()
    b = (mu_b + sd_b * torch.randn(n, 4, generator=gen)).double()
    expected = float((mu_a - mu_b).pow(2).sum() + (sd_a**2 + sd_b**2 - 2 * sd_a * sd_b).sum())
    fid = evaluate.fid_from_features(a, b)
    assert abs(fid - expected) < 0.03 * expected, (fid, expected)
    # A shared rotation leaves the distance unchanged but makes the covariances non-diagonal: this
    # catches a square root taken elementwise instead of as a matrix.
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    assert abs(evaluate.fid_from_features(a @ rotation, b @ rotation) - fid) < 1e-6 * expected
    assert evaluate.fid_from_features(a, a) < 1e-6


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    gen = torch.Generator().manual_seed(1)
    same_a, same_b, other = torch.randn(400, 16, generator=gen), \
        torch.randn(400, 16, generator=gen), 0.5 + torch.randn(400, 16, generator=gen)
    same, same_std = evaluate.kid_from_features(same_a, same_b, subsets=10, subset_size=200)
    different, _ = evaluate.kid_from_features(same_a, other, subsets=10, subset_size=200)
    assert abs(same) < 3 * same_std + 1e-3
    assert different > 0.5 and different > 50 * abs(same), (same, different)


def test_inception_loads_local_weights_with_tf_pooling(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    # pytorch-fid pools like TF: padded zeros do not count in the average
    x = torch.randn(2, 5, 7, 9)
    tf_pool = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert torch.allclose(evaluate.ExcludePadding()(torch.nn.functional.avg_pool2d(x, 3, 1, 1)),
                          tf_pool, atol=1e-6)
    # a pytorch-fid style file (1008 classes), random weights: loads offline, gives 2048 features
    # per image
    torch.manual_seed(0)
    weights = tmp_path / "pt_inception.pth"
    torch.save(torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                               num_classes=1008).state_dict(), weights)
    model = evaluate.load_inception(weights)
    assert isinstance(model.Mixed_5b.branch_pool[0], evaluate.ExcludePadding)
    # 75 px, Inception's smallest input: quick on a CPU
    features = model(torch.rand(1, 3, 75, 75) * 2 - 1)
    assert features.shape == (1, 2048) and torch.isfinite(features).all()
    sizes = []  # inception_features hands the model 299×299 images, whatever their size
    stub = torch.nn.Conv2d(3, 4, 1)
    stub.register_forward_hook(lambda module, inputs, output: sizes.append(inputs[0].shape))
    features = evaluate.inception_features(torch.nn.Sequential(stub, torch.nn.AdaptiveAvgPool2d(1),
                                                               torch.nn.Flatten()),
                                           torch.zeros(3, 3, 64, 64))
    assert (sizes == [(3, 3, 299, 299)] and features.shape == (3, 4)
            and features.dtype == torch.float64)
    (tmp_path / "junk.pth").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="junk.pth: not a loadable weights file"):
        evaluate.load_inception(tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        evaluate.load_inception(tmp_path / "nope.pth")


# ------------------------------------------------------------------------------------------ edge F1

def outline_and_photo(box, shape="ellipse", size=64):
    """A sketch (black outline on white) and a photo (filled shape on white), both (1, 3, size,
    size) in [-1, 1]."""
    sketch, photo = Image.new("RGB", (size, size), "white"), Image.new("RGB", (size, size), "white")
    getattr(ImageDraw.Draw(sketch), shape)(box, outline="black", width=1)
    getattr(ImageDraw.Draw(photo), shape)(box, fill=(150, 40, 30))
    return as_tensor(sketch)[None], as_tensor(photo)[None]


def test_edge_f1_threshold_decides_what_counts_as_a_line():
    sketch, photo = outline_and_photo((12, 10, 52, 50))
    # the same outline in light gray (0.65 on [0, 1]), as a shrunk pen stroke
    gray = sketch * 0.3 + 0.7
    assert evaluate.edge_f1(photo, gray).item() == 0.0  # the fixed 0.5 threshold sees no line
    assert evaluate.edge_f1(photo, gray, threshold=torch.tensor([0.8])).item() > 0.8


def test_edge_f1_rewards_following_the_sketch():
    sketch, photo = outline_and_photo((12, 10, 52, 50))
    _, elsewhere = outline_and_photo((30, 2, 60, 24), shape="rectangle")
    blank = torch.ones_like(photo)
    scores = evaluate.edge_f1(torch.cat([photo, elsewhere, blank]),
                              sketch.repeat(3, 1, 1, 1)).tolist()
    assert scores[0] > 0.8, scores
    assert scores[1] < 0.4 and scores[1] < scores[0] - 0.4, scores
    assert scores[2] == 0.0
    # the tolerance is what lets a one-pixel offset count: without it the same photo scores lower
    assert evaluate.edge_f1(photo.roll(2, dims=3), sketch, tolerance=0).item() < 0.5 < \
        evaluate.edge_f1(photo.roll(2, dims=3), sketch, tolerance=2).item()


# --------------------------------------------------------------------------------------- evaluate()

@pytest.fixture
def checkpoints(tmp_path):
    """Two tiny generators with different weights, saved as models/{a,b}/generator.pt."""
    cfg = tiny_config(tmp_path, tmp_path)
    return [save_run(tmp_path / f"models/{run}/last.pt", cfg, seed=k)[0].with_name("generator.pt")
            for k, run in enumerate("ab")]


def test_evaluate_scores_what_the_generator_makes(tmp_path, checkpoints):
    data = make_pairs(tmp_path / "val", 3, size=64, seed=3)
    G, cfg = save.load_generator(checkpoints[0])
    result = evaluate.evaluate(G, cfg, data, paper=False, batch_size=2)
    assert [image["name"] for image in result["images"]] == [f"{i}_AB.png" for i in range(1, 4)]
    sketch = torch.stack([as_tensor(Image.open(data / f"{i}_AB.png").crop((0, 0, 64, 64)))
                          for i in range(1, 4)])
    photo = torch.stack([as_tensor(Image.open(data / f"{i}_AB.png").crop((64, 0, 128, 64)))
                         for i in range(1, 4)])
    expected = evaluate.l1(translate(G, sketch, paper=False), photo)
    assert np.allclose([image["l1"] for image in result["images"]], expected.tolist(), atol=1e-5)
    assert result["mean"]["l1"] == pytest.approx(expected.mean().item(), abs=1e-5)
    assert set(result["mean"]) == {"l1", "psnr", "ssim", "edge_f1", "delta_e", "delta_e_mean"}
    # paper mode: dropout noise fixed by the seed
    runs = [evaluate.evaluate(G, cfg, data, paper=True, seed=seed)["mean"]["l1"]
            for seed in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]
    # batched, each pair keeps its own statistics and noise (seed + its index)
    one, three = ([image["l1"] for image in evaluate.evaluate(G, cfg, data, paper=True, seed=1,
                                                               batch_size=b)["images"]]
                  for b in (1, 3))
    assert np.allclose(one, three, atol=1e-6) and one[0] != one[1]


# -------------------------------------------------------------------------------------- loss curves

def write_log(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def colour_pixels(png, rgb):
    return int((np.asarray(Image.open(png).convert("RGB")) == rgb).all(axis=2).sum())


def test_plot_curves_draws_every_series(tmp_path):
    records = []
    for step in range(10, 310, 10):
        records.append({"epoch": step // 100, "step": step, "loss_d": 0.7 - step / 1000,
                        "loss_g_gan": 1 + step / 500, "loss_g_l1": 0.4 * math.exp(-step / 150),
                        "lr": 2e-4, "img_per_s": 9.0})
        if step % 100 == 0:
            records.append({"epoch": step // 100 - 1, "step": step,
                            "val_l1": 0.45 * math.exp(-step / 200)})
    log = write_log(tmp_path / "log.jsonl", records)
    with open(log, "a") as f:
        f.write('{"epoch": 3, "st')  # the half-written line of a run still training
    png = save.plot_curves(log, tmp_path / "curves" / "loss.png")
    assert Image.open(png).size == (900, 660)
    # D, G, L1, val
    for colour in [(0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28), (0x2C, 0xA0, 0x2C), (0xFF, 0x7F, 0x0E)]:
        assert colour_pixels(png, colour) > 100, colour


def test_plot_curves_copes_with_a_single_line(tmp_path):
    log = write_log(tmp_path / "log.jsonl", [{"epoch": 0, "step": 1, "loss_d": 0.69,
                                              "loss_g_gan": 0.7, "loss_g_l1": 0.5, "lr": 2e-4,
                                              "img_per_s": 3.0}])
    png = save.plot_curves(log, tmp_path / "loss.png")
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(np.int64)
    assert pixels.shape == (660, 900, 3)
    # colours, not blank
    assert len(np.unique(pixels[..., 0] << 16 | pixels[..., 1] << 8 | pixels[..., 2])) > 10
    assert colour_pixels(png, (0x1F, 0x77, 0xB4)) > 20  # the lone D point is drawn as a marker


# ---------------------------------------------------------------------------------------- HTML page

def test_html_escapes_file_names(tmp_path):
    name = 'a<b>&"c d.png'
    result = {"label": "run", "images": [{"name": name, "l1": 0.2, "psnr": 20.0, "ssim": 0.5,
                                          "edge_f1": 0.3}],
              "mean": {"l1": 0.2, "psnr": 20.0, "ssim": 0.5, "edge_f1": 0.3}}
    page = evaluate.write_html([result], tmp_path).read_text()
    assert "<b>" not in page and "a&lt;b&gt;&amp;&quot;c d.png" in page
    assert 'src="images/a%3Cb%3E%26%22c%20d.png.fake0.png"' in page


# ------------------------------------------------------------------------------------- command line

def run_evaluate(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors: one thread, as in-process
    return subprocess.run([sys.executable, "-m", "tools.evaluate", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def test_cli_writes_results_and_page_and_compares(tmp_path, checkpoints):
    data = make_pairs(tmp_path / "val", 4, size=64, seed=4)
    out = tmp_path / "results"
    result = run_evaluate("--checkpoint", checkpoints[0], "--data", data, "--out", out, "--eval",
                          "--compare", checkpoints[1])
    assert result.returncode == 0, result.stderr
    assert "FID/KID skipped" in result.stdout
    report = json.loads((out / "results.json").read_text())
    names = [f"{i}_AB.png" for i in range(1, 5)]
    for run in (report, report["compare"]):
        assert [image["name"] for image in run["images"]] == names
        for image in run["images"]:
            assert all(math.isfinite(image[key]) for key in ("l1", "psnr", "ssim", "edge_f1"))
        assert run["mean"]["l1"] == pytest.approx(np.mean([image["l1"] for image in run["images"]]))
    # the table: one column per checkpoint, the means of results.json
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert "a/generator.pt" in header and "b/generator.pt" in header
    for row, key in (("L1", "l1"), ("PSNR", "psnr"), ("SSIM", "ssim"), ("edge F1", "edge_f1")):
        values = [float(v)
                  for v in next(line for line in lines if line.startswith(row)).split()[-2:]]
        assert values == pytest.approx([report["mean"][key], report["compare"]["mean"][key]],
                                       abs=1e-4)
    assert report["mean"]["l1"] != report["compare"]["mean"]["l1"]
    # the page: every image's thumbnails, worst L1 of the first checkpoint first
    page = (out / "index.html").read_text()
    for name in names:
        for kind in ("sketch", "fake0", "fake1", "real"):
            assert f'src="images/{name}.{kind}.png"' in page
            assert Image.open(out / "images" / f"{name}.{kind}.png").size == (128, 128)
    shown = re.findall(r'<tr data-name="([^"]+)"', page)
    worst_first = [image["name"] for image in sorted(report["images"],
                                                     key=lambda image: -image["l1"])]
    assert shown == worst_first


def test_cli_with_one_checkpoint(tmp_path, checkpoints, capsys):
    data = make_pairs(tmp_path / "val", 2, size=64, seed=5)
    args = ["--checkpoint", checkpoints[1], "--data", data, "--out", tmp_path / "out"]
    assert evaluate.main([str(a) for a in args]) == 0
    printed = capsys.readouterr().out
    assert "FID/KID skipped" in printed and "paper mode" in printed
    header = next(line for line in printed.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "better", "b/generator.pt"]
    report = json.loads((tmp_path / "out/results.json").read_text())
    assert report["mode"] == "paper" and len(report["images"]) == 2 and "compare" not in report


@pytest.mark.parametrize("problem", ["checkpoint", "data", "inception"])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, checkpoints, capsys, problem):
    data = make_pairs(tmp_path / "val", 1, size=64)
    args = {"checkpoint": ["--checkpoint", tmp_path / "nope.pt", "--data", data],
            "data": ["--checkpoint", checkpoints[0], "--data", tmp_path / "ghost"],
            "inception": ["--checkpoint", checkpoints[0], "--data", data, "--inception",
                          tmp_path / "inc.pth"]}[problem]
    missing = {"checkpoint": "nope.pt", "data": "ghost", "inception": "inc.pth"}[problem]
    assert evaluate.main([str(a) for a in args] + ["--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert (len(lines) == 1 and lines[0].startswith("evaluate.py: error:")
            and missing in lines[0]), lines


# -------------------------------------------------------------------------------- unpaired sketches

def plain_sketches(folder, sizes=((80, 80), (120, 60), (64, 64))):
    """Plain drawings (gray outlines on white, as pencil) of different sizes, one not square."""
    folder.mkdir(parents=True)
    for i, (w, h) in enumerate(sizes):
        img = Image.new("L", (w, h), 255)
        ImageDraw.Draw(img).ellipse((w // 5, h // 4, w - w // 6 - 3 * i, h - h // 5), outline=150,
                                    width=2)
        img.save(folder / f"s{i}.png")
    return folder


def test_unpaired_sketches_score_edge_f1_and_page_has_no_real_column(tmp_path, checkpoints, capsys):
    from dataset import to_image, to_tensor
    from sketch import prepare_sketch, put_back
    sketches = plain_sketches(tmp_path / "sketches")
    out = tmp_path / "out"
    args = ["--checkpoint", checkpoints[0], "--sketches", sketches, "--out", out, "--eval",
            "--compare", checkpoints[1], "--batch_size", 2]
    assert evaluate.main([str(a) for a in args]) == 0
    assert "3 unpaired sketches" in capsys.readouterr().out
    report = json.loads((out / "results.json").read_text())
    names = ["s0.png", "s1.png", "s2.png"]
    for run, checkpoint in ((report, checkpoints[0]), (report["compare"], checkpoints[1])):
        assert [image["name"] for image in run["images"]] == names
        assert set(run["mean"]) == {"edge_f1"} and all(set(image) == {"name", "edge_f1"}
                                                       for image in run["images"])
        G, cfg = save.load_generator(checkpoint)
        size = cfg.image_size
        prepared = [prepare_sketch(sketches / name, size) for name in names]
        fake_photo = translate(G, torch.stack([p.sketch for p in prepared]), paper=False)
        for image, photo, one, name in zip(run["images"], fake_photo, prepared, names):
            # scored in the drawing's own frame, against its lines as infer.py finds them
            frame, lines = evaluate.drawing_reference(sketches / name, size)
            assert lines.any()
            assert frame == one.region or not one.fitted  # fitted: the frame the model saw
            in_frame = to_tensor(put_back(to_image(photo), one, frame, (size, size)))
            expected = evaluate.line_f1(in_frame[None], lines[None])
            assert abs(image["edge_f1"] - expected.item()) < 1e-6
    page = (out / "index.html").read_text()
    assert "<th>real</th>" not in page and ".real.png" not in page and "Worst edge f1 first" in page
    for name in names:
        for kind in ("sketch", "fake0", "fake1"):
            assert Image.open(out / "images" / f"{name}.{kind}.png").size == (128, 128)
    shown = re.findall(r'<tr data-name="([^"]+)"', page)
    assert shown == [image["name"] for image in sorted(report["images"],
                                                       key=lambda image: image["edge_f1"])]


def test_unpaired_scores_use_one_frame_and_the_references_given(tmp_path, checkpoints):
    sketches = plain_sketches(tmp_path / "sketches")
    G, cfg = save.load_generator(checkpoints[0])
    fitted = evaluate.evaluate_sketches(G, cfg, sketches, paper=False)
    # the drawing's frame, whatever the mode: around the drawing, not the whole canvas
    frames = [evaluate.drawing_reference(path, cfg.image_size)[0]
              for path in sorted(sketches.iterdir())]
    assert all(frame[2] < 60 for frame in frames), frames
    # lighter copies, scored against the originals: the same fitted input, the same scores
    light = tmp_path / "light"
    light.mkdir()
    for path in sorted(sketches.iterdir()):
        Image.eval(Image.open(path), lambda v: 255 - (255 - v) // 2).save(light / path.name)
    copies = evaluate.evaluate_sketches(G, cfg, light, paper=False, references=sketches)
    assert abs(copies["mean"]["edge_f1"] - fitted["mean"]["edge_f1"]) < 0.05
    (light / "s0.png").rename(light / "other.png")
    with pytest.warns(UserWarning, match="other.png: no reference drawing other"):
        assert len(evaluate.evaluate_sketches(G, cfg, light, paper=False,
                                              references=sketches)["images"]) == 2


def test_unpaired_fid_and_kid_use_the_photos_folder(tmp_path, checkpoints, monkeypatch):
    sketches = plain_sketches(tmp_path / "sketches")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        # small, not square
        smooth_image(40, seed=i).crop((0, 0, 40, 30 + i)).save(photos / f"p{i}.jpg")
    seen = []  # a 4-feature stand-in for Inception: records the batches it is given
    stub = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten())
    stub.register_forward_hook(lambda module, inputs, output: seen.append(len(inputs[0])))
    monkeypatch.setattr(evaluate, "load_inception", lambda path, device="cpu": stub)
    out = tmp_path / "out"
    args = ["--checkpoint", checkpoints[0], "--sketches", sketches, "--photos", photos,
            "--inception", "stub.pth", "--out", out]
    assert evaluate.main([str(a) for a in args]) == 0
    report = json.loads((out / "results.json").read_text())
    assert sum(seen) == 3 + 3  # the three photos and the three generated images
    assert math.isfinite(report["fid"]) and report["fid"] > 0 and math.isfinite(report["kid"])
    assert report["photos"] == str(photos)
    assert evaluate.load_photos(photos, 64).shape == (3, 3, 64, 64)


@pytest.mark.parametrize("flags, expected", [
    ("--sketches s --data d", "give either --data (pairs) or --sketches"),
    ("--sketches s --inception x.pth", "--inception with --sketches needs --photos"),
    ("--data d --photos p", "--photos goes with --sketches"),
    ("--sketches s --vgg16 v.pth", "--vgg16 compares with the real photos of --data pairs"),
    ("--sketches s --hints 2", "--hints samples hints from the real photos of --data pairs"),
    ("--data d --hints 0", "--hints must be at least 1"),
])
def test_flags_that_do_not_go_together_are_refused_before_any_file_is_read(tmp_path, capsys,
                                                                           flags, expected):
    args = evaluate.build_parser().parse_args(["--checkpoint", "g.pt", *flags.split()])
    with pytest.raises(ValueError, match=re.escape(expected)):
        evaluate.check_args(args)
    # one line, before the checkpoint (which does not exist) is read
    assert evaluate.main(["--checkpoint", str(tmp_path / "nowhere.pt"), *flags.split()]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("evaluate.py: error: ") and expected in lines[0]


def test_each_checkpoint_is_one_job_and_a_hint_model_one_more_with_hints():
    args = evaluate.build_parser().parse_args(["--checkpoint", "g.pt", "--hints", "5"])
    a, b = Path("models/a/generator.pt"), Path("old/a/generator.pt")
    runs = [(a, (None, Config(hints=True))), (b, (None, Config()))]
    # the same run folder and file name: whole paths tell them apart
    assert [job[2:] for job in evaluate.plan_jobs(args, runs)] == [
        (0, f"{a} (0 hints)"), (5, f"{a} (5 hints)"), (0, str(b))]
    args.hints = None
    assert [job[2:] for job in evaluate.plan_jobs(args, runs[:1])] == [(0, "a/generator.pt")]
