r"""Score a generator: L1, PSNR, SSIM, edge F1 and ΔE per image, FID and KID over the set.

    python -m tools.evaluate --checkpoint models/a/generator.pt --data data/edges2shoes/val \
        --compare models/b/generator.pt                # a second checkpoint beside the first
    python -m tools.evaluate --pretrained edges2shoes --data data/edges2shoes/val  # their weights
    python -m tools.evaluate --checkpoint ... --data ... --inception FILE  # + FID, KID
    python -m tools.evaluate --checkpoint models/c/completer.pt --data ... --vgg16 vgg16.pth
    python -m tools.evaluate --checkpoint models/h/generator.pt --data ... --hints 5
    python -m tools.evaluate --checkpoint models/h/generator.pt --data ... --asked_colors red "#00f"
    python -m tools.evaluate --checkpoint ... --sketches pencil/ \
        --references data/hand-sketches/sketches  # unpaired, edge F1 only (docs/sketches.md)

Prints a table of means and writes results/<run>/results.json (every image's scores and the means)
and index.html (sketch | generated | real thumbnails with scores, worst first, sortable, opens from
disk). The generator runs as in the paper at test time (dropout on, per-image statistics, pair k's
noise seeded by --seed + k); --eval runs eval mode. A completion checkpoint (completion.py) is
scored the same way, its networks in eval mode and --seed fixing its search's starts.

Per image, on images in [-1, 1] as the generator makes them:
    l1       mean |fake - real| on the [-1, 1] scale, the training L1's and log.jsonl's val_l1
    psnr     dB on the [0, 1] scale (peak 1.0); identical images capped at PSNR_CAP_DB = 100 dB
    ssim     Wang et al. 2004 on [0, 1]: 11×11 Gaussian window σ=1.5, K1=0.01, K2=0.03, 'valid'
             filtering, per RGB channel, averaged over the channels
    edge_f1  F1 of the generated photo's edges (edges.detect_edges) against the sketch's dark
             pixels within 2 pixels: a photo that ignores the sketch's lines scores low
    delta_e  mean CIE76 ΔE (CIE Lab distance, D65, from sRGB) of generated and real photo over the
             shoe's pixels (hints.shoe_mask of the real photo; all pixels if it finds none)
    delta_e_mean  ΔE of the shoe's mean Lab colours: the colour cast alone
    vgg_cos  with --vgg16 FILE (torchvision's vgg16 state dict): the cosine similarity of their
             VGG16 features without fc2 (losses.VGG16Features), Lu et al.'s completion measure
--hints N (a model trained with colour hints): scored given no hints and given N patches sampled
from each real photo (hints.py's training sampler, seeded by --seed and the pair's index), the
shoe then moved to their colour as infer.py moves it (--no-transfer: G's own photo).
--asked_colors C ... (a model trained with colour hints): each sketch made as `infer.py SKETCH
--color C --seed SEED` makes it (infer.prepare_input and translate_prepared: the same patch at the
same point, the same noise for every sketch, the same transfer), and per colour the means of: ΔE
(CIE76) from C of the generated shoe's median Lab colour inside the drawing (hints.drawing_inside),
edge F1 against the sketch and its change from the photo made without --color, the coloured
photo's edges against that photo's (line_f1), and the share of pixels the transfer clipped.
Over the set, with --inception FILE: FID and KID on Inception v3 pool features; pytorch-fid's
pt_inception-2015-12-05 weights (pooled as TF does, so FIDs compare with published ones) or
torchvision's inception_v3 state dict. Nothing is ever downloaded.
Unpaired sketches (--sketches DIR): each prepared and put back as infer.py does (--fit / --no-fit),
edge_f1 scored in the drawing's own frame against its strokes as sketch.ink_mask finds them, thinned
(the same frame and reference either way); --references DIR: other drawings of the same stems (the
clean scans of variants); --photos DIR: the real photos FID and KID compare with.

From Python: evaluate(G, cfg, "data/edges2shoes/val", paper=False) -> {"images", "mean", ...}.
"""

import argparse
import html
import json
import math
import sys
import warnings
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from config import SWITCH, add_device_flag, first_line, pick_device
from dataset import (PairDataset, list_images, load_rgb, pad_to_square, square_region, to_image,
                     to_tensor, train_val_folders)
from tools.edges import detect_edges
from generator import translate
from hints import (drawing_inside, parse_colour, patch_side, sample_hints, shoe_mask,
                   srgb_to_lab, transfer_colour, with_hints)
from infer import (EVAL_HELP, add_checkpoint_flags, add_tuning_flags, chosen_checkpoint,
                   prepare_input, translate_prepared)
from completion import Completer, load_completer
from losses import VGG16Features
from save import checkpoint_kind, load_generator, psnr, safe_load
from sketch import (DARK, WORK_SIDE, drawing_region, ink_mask, load_sketch, prepare_sketch,
                    put_back, redraw)
from tune import Tuner

# name -> which is better
METRICS = {"l1": "lower", "psnr": "higher", "ssim": "higher", "edge_f1": "higher",
           "delta_e": "lower", "delta_e_mean": "lower", "vgg_cos": "higher"}
THUMB_SIZE = 128  # pixels per side of the thumbnails on the HTML page


# -------------------------------------------------------------------------------- per-image metrics

def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (images.float() + 1) / 2


def l1(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image (B,), on the [-1, 1] scale like the training loss."""
    return (fake.double() - real.double()).abs().flatten(1).mean(1)


def gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    """Normalized 1-D Gaussian (size,); its outer product with itself is SSIM's 2-D window."""
    offsets = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    weights = torch.exp(-offsets**2 / (2 * sigma**2))
    return weights / weights.sum()


def ssim(fake: torch.Tensor, real: torch.Tensor, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity per image (B,): Wang et al. 2004 on [0, 1], per channel, averaged over
    channels."""
    x, y = to_unit(fake), to_unit(real)  # (B, C, H, W)
    batch, channels, height, width = x.shape
    if min(height, width) < window:
        raise ValueError(f"ssim: images of {height}×{width} are smaller than the "
                         f"{window}×{window} window")
    # local means of x, y, x², y², xy under the Gaussian window; valid filtering, as in Wang's
    # reference code
    moments = torch.stack([x, y, x * x, y * y, x * y], dim=2).flatten(1, 2)  # (B, 5C, H, W)
    n = moments.shape[1]
    g = gaussian_window(window, sigma, x.device)
    # separable: rows,
    moments = F.conv2d(moments, g.view(1, 1, 1, -1).expand(n, 1, 1, window), groups=n)
    # then columns
    moments = F.conv2d(moments, g.view(1, 1, -1, 1).expand(n, 1, window, 1), groups=n)
    # each (B, C, H-10, W-10)
    mu_x, mu_y, xx, yy, xy = moments.unflatten(1, (channels, 5)).unbind(2)
    var_x, var_y, cov_xy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (k1 * 1.0) ** 2, (k2 * 1.0) ** 2  # data range 1.0
    ssim_map = (((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2))
                / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)))
    return ssim_map.flatten(2).mean(2).mean(1).double()  # mean over the map, then over the channels


def edge_f1(fake_photo: torch.Tensor, sketch: torch.Tensor, tolerance: int = 2,
            threshold=DARK) -> torch.Tensor:
    """F1 (B,) of the generated photo's edges against the sketch's lines (its pixels darker than
    threshold on [0, 1], one number or one per image (B,)), matching within `tolerance` pixels: see
    line_f1."""
    threshold = torch.as_tensor(threshold, dtype=torch.float32,
                                device=sketch.device).reshape(-1, 1, 1, 1)
    return line_f1(fake_photo, to_unit(sketch).mean(1, keepdim=True) < threshold, tolerance)


def line_f1(fake_photo: torch.Tensor, reference: torch.Tensor, tolerance: int = 2) -> torch.Tensor:
    """F1 (B,) of the generated photo's edges against reference lines, bool (B, 1, H, W), matching
    within `tolerance` pixels.

    Precision: the share of predicted edge pixels with a reference pixel within `tolerance` (a
    square window, by max-pool dilation); recall: the share of reference pixels with a predicted
    edge that near. No edges on either side scores 1 (they agree), edges on one side only score 0.
    """
    predicted = detect_edges(to_unit(fake_photo))  # (B, 1, H, W) bool, thin lines
    reference = reference.to(predicted.device)

    def near(mask):  # pixels within `tolerance` of mask
        return F.max_pool2d(mask.float(), 2 * tolerance + 1, stride=1, padding=tolerance) > 0

    n_predicted, n_reference = predicted.sum((1, 2, 3)).double(), reference.sum((1, 2, 3)).double()
    precision = (predicted & near(reference)).sum((1, 2, 3)) / n_predicted.clamp(min=1)
    recall = (reference & near(predicted)).sum((1, 2, 3)) / n_reference.clamp(min=1)
    f1 = torch.where(precision + recall > 0,
                     2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0)
    return torch.where((n_predicted == 0) & (n_reference == 0), 1.0, f1)


def delta_e(fake_photo: torch.Tensor, photo: torch.Tensor) -> tuple:
    """(mean CIE76 ΔE (B,) of the generated and the real photo over the real shoe's pixels, ΔE (B,)
    of their mean Lab colours there); the shoe by hints.shoe_mask, every pixel where it finds
    none."""
    fake_lab, real_lab = srgb_to_lab(fake_photo), srgb_to_lab(photo)
    shoe = shoe_mask(photo).to(fake_lab.device)  # (B, 1, H, W)
    shoe[shoe.flatten(1).sum(1) == 0] = True
    pixels = shoe.flatten(1).sum(1)  # (B,)
    distance = (fake_lab - real_lab).pow(2).sum(1, keepdim=True).sqrt()
    fake_mean, real_mean = ((lab * shoe).flatten(2).sum(2) / pixels[:, None]
                            for lab in (fake_lab, real_lab))  # (B, 3)
    return (distance * shoe).flatten(1).sum(1) / pixels, (fake_mean - real_mean).norm(dim=1)


def score(fake_photo: torch.Tensor, photo: torch.Tensor, sketch: torch.Tensor,
          edges: bool = True, vgg16=None) -> dict:
    """All per-image metrics of a batch: {name: (B,) tensor}; edges=False leaves out edge_f1,
    vgg16 (a losses.VGG16Features) adds vgg_cos."""
    scores = {"l1": l1(fake_photo, photo), "psnr": psnr(fake_photo, photo),
              "ssim": ssim(fake_photo, photo)}
    if edges:
        scores["edge_f1"] = edge_f1(fake_photo, sketch)
    scores["delta_e"], scores["delta_e_mean"] = delta_e(fake_photo, photo)
    if vgg16 is not None:
        scores["vgg_cos"] = vgg16.cosine(fake_photo, photo)
    return scores


# -------------------------------------------------------------------------------------- FID and KID

def fid_from_features(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D):
    ||μa - μb||² + tr(Σa) + tr(Σb) - 2 tr((Σa Σb)^½), in float64."""
    a, b = (torch.as_tensor(f).double().cpu() for f in (features_a, features_b))
    if min(len(a), len(b)) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(a)} and {len(b)}")
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)  # (D, D), unbiased like numpy's np.cov
    # Σa Σb is similar to the symmetric PSD matrix Σa^½ Σb Σa^½, so the traces of their square roots
    # agree; the symmetric form lets eigh do it, with rounding's tiny negative eigenvalues clipped
    # to 0.
    values, vectors = torch.linalg.eigh(cov_a)
    sqrt_a = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    middle = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    fid = (a.mean(0) - b.mean(0)).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return max(float(fid), 0.0)


def kid_from_features(features_a, features_b, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple:
    """Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the kernel (x·y/D +
    1)³, averaged over random subsets of min(subset_size, N) images per set; returns (mean, std over
    subsets)."""
    a, b = (torch.as_tensor(f).double().cpu() for f in (features_a, features_b))
    m, dim = min(subset_size, len(a), len(b)), a.shape[1]
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {len(a)} and {len(b)}")
    generator = torch.Generator().manual_seed(seed)
    estimates = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=generator)[:m]]
        y = b[torch.randperm(len(b), generator=generator)[:m]]
        k_xx, k_yy, k_xy = ((p @ q.T / dim + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        # unbiased: the diagonals k(x_i, x_i) are left out of the within-set means
        within = ((k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum())
                  / (m * (m - 1)))
        estimates.append(float(within - 2 * k_xy.mean()))
    mean = sum(estimates) / len(estimates)
    std = math.sqrt(sum((e - mean) ** 2 for e in estimates) / max(1, len(estimates) - 1))
    return mean, std


class ExcludePadding(nn.Module):
    """Rescale torchvision's avg_pool2d(3, 1, padding=1), whose padded zeros count, to TF's average
    over the pixels inside the image (count_include_pad=False), which pytorch-fid's weights were
    trained with."""

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        # share of window inside
        inside = F.avg_pool2d(torch.ones_like(pooled[:1, :1]), 3, stride=1, padding=1)
        return pooled / inside


def _max_pool_forward(block, x: torch.Tensor) -> list:
    """InceptionE._forward with TF's max pool in the pool branch (pytorch-fid's Mixed_7c)."""
    branch3x3 = block.branch3x3_1(x)
    branch3x3dbl = block.branch3x3dbl_2(block.branch3x3dbl_1(x))
    return [block.branch1x1(x),
            torch.cat([block.branch3x3_2a(branch3x3), block.branch3x3_2b(branch3x3)], 1),
            torch.cat([block.branch3x3dbl_3a(branch3x3dbl), block.branch3x3dbl_3b(branch3x3dbl)],
                      1),
            block.branch_pool(F.max_pool2d(x, kernel_size=3, stride=1, padding=1))]


def load_inception(path, device="cpu") -> nn.Module:
    """torchvision's Inception v3 with weights from a local file, returning 2048 pool features per
    image."""
    import torchvision  # only needed here: keeps `import evaluate` light for train.py's plot_curves
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Inception weights file")
    state = safe_load(path, "weights file")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not torch.is_tensor(state.get("fc.weight")):
        raise ValueError(f"{path}: not an Inception v3 state dict (no fc.weight)")
    # the aux head is not used
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    # 1008: pytorch-fid's port of TF's 2015 model; 1000: torchvision
    num_classes = state["fc.weight"].shape[0]
    model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                            num_classes=num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit Inception v3 "
                         f"({first_line(e, 100)})") from None
    # pytorch-fid's FIDInception blocks: pool like TF, so FIDs match published ones
    if num_classes == 1008:
        for block in (model.Mixed_5b, model.Mixed_5c, model.Mixed_5d, model.Mixed_6b,
                      model.Mixed_6c, model.Mixed_6d, model.Mixed_6e, model.Mixed_7b):
            block.branch_pool = nn.Sequential(ExcludePadding(), block.branch_pool)
        model.Mixed_7c._forward = _max_pool_forward.__get__(model.Mixed_7c)
    model.fc = nn.Identity()  # the 2048 pool3 features are the output
    return model.eval().requires_grad_(False).to(device)


@torch.no_grad()
def inception_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Pool features (B, 2048) of images (B, 3, H, W) in [-1, 1], resized to 299×299 as pytorch-fid
    does."""
    device = next(model.parameters()).device
    resized = F.interpolate(images.float().to(device), size=(299, 299), mode="bilinear",
                            align_corners=False)
    return model(resized).double().cpu()  # the [-1, 1] input range is what both weight sets expect


# --------------------------------------------------------------------------------------- evaluation

def translated_batches(generator: nn.Module, files: list, load, paper: bool, seed: int,
                       batch_size: int, device, progress: bool, skipped: list,
                       precision: str = "auto", tune=None):
    """Yield (names, loaded, sketch, fake_photo) per batch of files: loaded holds load(path) of
    each, a tuple whose first item is the sketch (3, H, W); a file that will not decode is warned
    about, appended to skipped, and left out. The generator runs as tune.Tuner picks (precision,
    tune: its overrides)."""
    device = torch.device(device)
    generator.to(device)
    if isinstance(generator, Completer):  # its search optimizes: run it as it is, untuned
        tuner = lambda sketch, seeds: translate(generator, sketch, paper=False).float()  # noqa: E731
    else:
        tuner = Tuner(generator, paper=paper, device=device, precision=precision,
                      n_images=len(files), tune=tune)
    # paper mode: file k's dropout noise is seeded by seed + k, whatever the batch size
    with torch.inference_mode():  # no autograd bookkeeping at all
        for start in tqdm(range(0, len(files), batch_size), desc="evaluate", leave=False,
                          disable=not progress, file=sys.stderr):
            names, loaded, seeds = [], [], []
            for k, path in enumerate(files[start:start + batch_size], start):
                try:
                    loaded.append(load(path))
                    names.append(path.name)
                    seeds.append(seed + k)
                # passed the header scan but would not decode: report, go on
                except ValueError as e:
                    warnings.warn(f"skipping {e}", stacklevel=3)
                    skipped.append(path.name)
            if not loaded:
                continue
            sketch = torch.stack([item[0] for item in loaded]).to(device)  # (B, 3, H, W)
            yield names, loaded, sketch, tuner(sketch, seeds)


def summary(images: list, skipped: list, what: str, **extra) -> dict:
    """{"images", "mean", "skipped", **extra} of per-image scores; a ValueError if none was
    scored."""
    if not images:
        raise ValueError(f"{what} could be decoded")
    mean = {k: sum(image[k] for image in images) / len(images) for k in METRICS if k in images[0]}
    return {"images": images, "mean": mean, "skipped": skipped, **extra}


@torch.no_grad()
def evaluate(generator: nn.Module, cfg, data_dir, paper: bool = True, seed: int = 0,
             batch_size: int = 16, device="cpu", on_batch=None, progress: bool = False,
             vgg16=None, precision: str = "auto", tune=None, hints: int = 0,
             transfer: bool = True) -> dict:
    """Translate every pair in data_dir and score it: {"images": [{name, l1, psnr, ssim, edge_f1}],
    "mean": {metric: mean}, "skipped": [names that would not decode]}. Images in file order.

    paper: the paper's test-time mode (dropout on, per-image statistics), pair k seeded by seed + k;
    False is eval mode. cfg gives image_size and direction; edge_f1 only with direction AtoB (sketch
    in).
    on_batch(names, sketch, fake_photo, photo), if given, sees every batch (for thumbnails,
    features). vgg16, if given (losses.VGG16Features on device), adds vgg_cos. precision, tune:
    tune.Tuner's overrides. A model trained with colour hints (cfg.hints) is given hints patches
    sampled from each real photo as in training (pair k's seeded by seed and k), or none; with
    transfer, each photo given some is then moved to their colour as infer.py moves it
    (hints.transfer_colour).
    """
    # no jitter: the images as they are
    data = PairDataset(data_dir, cfg.image_size, direction=cfg.direction)
    number = {path: k for k, path in enumerate(data.files)}
    side = patch_side(cfg.hint_patch, cfg.image_size) if getattr(cfg, "hints", False) else 0

    def load(path):  # (generator input, photo, sketch)
        sketch, photo = data.load(path)
        if not side:
            return sketch, photo, sketch
        rng = torch.Generator().manual_seed(seed * 2**32 + number[path])
        given = sample_hints(photo[None], rng, max_side=side, on_shoe=cfg.hint_on_shoe,
                             count=hints)
        return with_hints(sketch[None], given)[0], photo, sketch

    images, skipped = [], []
    for names, pairs, given, fake_photo in translated_batches(
            generator, data.files, load, paper, seed, batch_size, device, progress, skipped,
            precision, tune):
        if transfer and side and hints:
            fake_photo = transfer_colour(fake_photo, given[:, 3:].to(fake_photo.device))[0]
        sketch = torch.stack([sketch for *_, sketch in pairs]).to(fake_photo.device)
        photo = torch.stack([photo for _, photo, _ in pairs]).to(sketch.device)
        scores = {k: v.tolist() for k, v in score(fake_photo, photo, sketch,
                                                  cfg.direction == "AtoB", vgg16).items()}
        images += [{"name": name, **{k: v[i] for k, v in scores.items()}}
                   for i, name in enumerate(names)]
        if on_batch is not None:
            on_batch(names, sketch, fake_photo, photo)
    return summary(images, skipped, f"{data_dir}: none of the {len(data.files)} pairs")


def drawing_reference(path, size: int, direction: str = "AtoB") -> tuple:
    """(frame, lines) of a plain sketch: the square around its drawing with the shoes' margin
    (sketch.drawing_region), in its pixels, or the whole sketch padded to square when no drawing is
    found; and the drawing's strokes there as one-pixel lines, bool (1, size, size), found as
    infer.py finds them."""
    img, _, (width, height) = load_sketch(path, direction, max_side=WORK_SIDE)
    ink = ink_mask(img)
    region = drawing_region(ink)
    if region is None:
        return square_region(width, height), torch.zeros(1, size, size, dtype=torch.bool)
    scale_x, scale_y = width / img.width, height / img.height  # 1 unless reduced
    x0, y0, side, _ = region
    frame = (round(x0 * scale_x), round(y0 * scale_y), round(side * scale_x),
             round(side * scale_y))
    return frame, redraw(ink, region, size)[None]


@torch.no_grad()
def evaluate_sketches(generator: nn.Module, cfg, sketch_dir, paper: bool = True, seed: int = 0,
                      batch_size: int = 16, device="cpu", on_batch=None, progress: bool = False,
                      fit: bool = True, precision: str = "auto", tune=None,
                      references=None) -> dict:
    """evaluate() for plain, unpaired sketches: each translated as infer.py translates it (fitted
    unless fit=False) and its photo put back as infer.py puts it back, scored by edge_f1 in the
    drawing's own frame (the square around it, at the model's size) against the drawing's lines:
    the same frame and reference with or without fitting.
    {"images": [{name, edge_f1}], "mean": {"edge_f1": mean}, "skipped": [...], "unpaired": True}.
    references: a folder of the drawings to score against, by file stem, of the same size as the
    sketches (e.g. the clean originals of pencil or photographed copies); default: the sketches.
    on_batch(names, sketch, fake_photo, None), if given, sees every batch."""
    files = list_images(sketch_dir)
    reference_of = ({path.stem: path for path in list_images(references)} if references
                    else {path.stem: path for path in files})
    size = cfg.image_size
    images, skipped = [], []

    def load(path):  # a model trained with colour hints is given none
        prepared = prepare_sketch(path, size, cfg.direction, fit=fit)
        if path.stem not in reference_of:
            raise ValueError(f"{path}: no reference drawing {path.stem}.* in {references}")
        frame, lines = drawing_reference(reference_of[path.stem], size, cfg.direction)
        given = with_hints(prepared.sketch[None])[0] if getattr(cfg, "hints", False) else None
        return prepared.sketch if given is None else given, prepared, frame, lines

    for names, loaded, sketch, fake_photo in translated_batches(
            generator, files, load, paper, seed, batch_size, device, progress, skipped,
            precision, tune):
        in_frame = torch.stack([to_tensor(put_back(to_image(photo), prepared, frame, (size, size)))
                                for photo, (_, prepared, frame, _) in zip(fake_photo, loaded)])
        reference = torch.stack([lines for *_, lines in loaded])  # (B, 1, S, S)
        f1s = line_f1(in_frame, reference).tolist()
        images += [{"name": name, "edge_f1": f1} for name, f1 in zip(names, f1s)]
        if on_batch is not None:
            on_batch(names, sketch[:, :3], fake_photo, None)
    return summary(images, skipped, f"{sketch_dir}: none of the {len(files)} sketches",
                   unpaired=True)


# ------------------------------------------------------------------------------- the asked colour

def colour_text(rgb) -> str:
    """'#rrggbb' of (r, g, b) 0..255."""
    return "#" + "".join(f"{channel:02x}" for channel in rgb)


def asked_colour_error(photo: torch.Tensor, sketch: torch.Tensor, rgb) -> float:
    """CIE76 ΔE between colour rgb (0..255) and the median CIE Lab colour of a photo (3, H, W)
    inside its sketch's (3, H, W) drawing (hints.drawing_inside: the closed outline filled, less
    its strokes); where the drawing closes no shape, over the photo's shoe (hints.shoe_mask), and
    where that finds none, over every pixel."""
    inside = torch.from_numpy(drawing_inside(sketch)[1]).to(photo.device)
    if not inside.any():
        inside = shoe_mask(photo[None])[0, 0]
    if not inside.any():
        inside = torch.ones_like(inside)
    median = srgb_to_lab(photo[None])[0][:, inside].median(dim=1).values
    asked = torch.tensor(rgb, dtype=torch.float64, device=photo.device).view(1, 3, 1, 1)
    return (median - srgb_to_lab(asked / 127.5 - 1)[0, :, 0, 0]).norm().item()


def asked_colour_batches(runner, cfg, files: list, colour, seed: int, transfer: bool,
                         fit: bool, batch_size: int, skipped: list):
    """Yield (names, sketches, photos, clipped) per batch of files, each made as `infer.py FILE
    --color C --seed seed` makes it (no --color for colour None), in the model's frame before it
    is put back: infer.prepare_input's patch at its point, infer.translate_prepared's noise and
    transfer. A file that will not do is warned about and added to skipped (once)."""
    options = argparse.Namespace(fit=fit, native=False, colour=colour, hints=None)
    for start in range(0, len(files), batch_size):
        batch, names = [], []
        for path in files[start:start + batch_size]:
            try:
                batch.append(prepare_input(path, cfg, options))
                names.append(path.name)
            except ValueError as e:
                if path.name not in skipped:
                    warnings.warn(f"skipping {e}", stacklevel=2)
                    skipped.append(path.name)
        if batch:
            photos, clipped = translate_prepared(runner, batch, seed, transfer)
            yield names, torch.stack([p.sketch for p in batch]), photos, clipped


def sketch_f1(photo: torch.Tensor, sketch: torch.Tensor, unpaired: bool) -> torch.Tensor:
    """edge_f1 (B,) of photos against their sketches' lines: a pair's dark lines, as score() finds
    them; an unpaired sketch's strokes as hints.drawing_inside finds them (any gray: fitted, its
    lines are redrawn faint at the model's size)."""
    if not unpaired:
        return edge_f1(photo, sketch)
    strokes = torch.stack([torch.from_numpy(drawing_inside(one)[0]) for one in sketch])
    return line_f1(photo, strokes[:, None].to(photo.device))


@torch.no_grad()
def asked_colours(generator: nn.Module, cfg, files: list, colours: list, paper: bool = True,
                  seed: int = 0, transfer: bool = True, fit: bool = True, batch_size: int = 16,
                  device="cpu", precision: str = "auto", tune=None, progress: bool = False,
                  unpaired: bool = False) -> dict:
    """What a person asking for a colour gets: for each (r, g, b) of colours, every file made as
    infer.py makes it given --color C (asked_colour_batches: each seeded by seed, as infer.py's
    --seed seeds every input), then per colour the means of: delta_e (asked_colour_error),
    edge_f1 against the sketch (sketch_f1) and its change from the uncoloured photo's (infer.py
    without --color), edges (the coloured photo's edges against the uncoloured photo's: line_f1) and
    clipped (the share of pixels the transfer clipped to the sRGB gamut). {"transfer", "seed",
    "edge_f1" (uncoloured), "colors": [{"color", "rgb", "delta_e", "edge_f1", "edge_f1_change",
    "edges", "clipped", "images": [{"name", ...}]}], "skipped"}."""
    device = torch.device(device)
    runner = Tuner(generator.to(device), paper=paper, device=device, precision=precision,
                   n_images=len(files) * (len(colours) + 1), tune=tune)
    skipped: list = []
    plain_f1, plain_edges = {}, {}  # per name: the uncoloured photo's F1 and edges
    for names, sketch, photo, _ in asked_colour_batches(runner, cfg, files, None, seed, transfer,
                                                        fit, batch_size, skipped):
        plain_f1.update(zip(names, sketch_f1(photo, sketch, unpaired).tolist()))
        plain_edges.update(zip(names, detect_edges(to_unit(photo)).cpu()))
    if not plain_f1:
        raise ValueError(f"--asked_colors: none of the {len(files)} files could be read")
    results = []
    for rgb in tqdm(colours, desc="asked colours", leave=False, disable=not progress,
                    file=sys.stderr):
        images = []
        for names, sketch, photo, clipped in asked_colour_batches(
                runner, cfg, files, rgb, seed, transfer, fit, batch_size, skipped):
            lines = torch.stack([plain_edges[name] for name in names]).to(photo.device)
            scores = zip(names, sketch, photo, sketch_f1(photo, sketch, unpaired).tolist(),
                         line_f1(photo, lines).tolist(), clipped.flatten(1).float().mean(1))
            images += [{"name": name, "delta_e": asked_colour_error(one, drawn, rgb),
                        "edge_f1": f1, "edge_f1_change": f1 - plain_f1[name], "edges": edges,
                        "clipped": share.item()}
                       for name, drawn, one, f1, edges, share in scores]
        mean = {key: sum(image[key] for image in images) / len(images)
                for key in ("delta_e", "edge_f1", "edge_f1_change", "edges", "clipped")}
        results.append({"color": colour_text(rgb), "rgb": list(rgb), **mean, "images": images})
    return {"transfer": transfer, "seed": seed,
            "edge_f1": sum(plain_f1.values()) / len(plain_f1), "colors": results,
            "skipped": skipped}


def load_photos(photo_dir, image_size: int) -> torch.Tensor:
    """Every image in photo_dir as (N, 3, S, S) in [-1, 1]: padded with white to a square, then
    resized."""
    return torch.stack([to_tensor(pad_to_square(load_rgb(path), image_size))
                        for path in list_images(photo_dir)])


# ---------------------------------------------------------------------------------------- HTML page

def thumbnail_path(name: str, kind: str) -> str:
    """Where a thumbnail lives, relative to the page: images/<file name>.<kind>.png (unique per
    file)."""
    return f"images/{name}.{kind}.png"


def save_thumbnails(out_dir, names, images: dict, size: int = THUMB_SIZE) -> None:
    """Save each batch in images ({kind: (B, 3, H, W) in [-1, 1]}) as PNG thumbnails under
    out_dir/images/."""
    (Path(out_dir) / "images").mkdir(parents=True, exist_ok=True)
    for kind, batch in images.items():
        for name, image in zip(names, batch):
            to_image(image).resize((size, size), Image.Resampling.BICUBIC).save(
                Path(out_dir) / thumbnail_path(name, kind))


SORT_SCRIPT = """
for (const th of document.querySelectorAll("#scores th.sort")) {
  th.title = "click to sort";
  th.onclick = () => {
    const body = document.querySelector("#scores tbody"), col = th.cellIndex;
    const up = th.dataset.dir !== "up";
    th.dataset.dir = up ? "up" : "down";
    const key = row => { const v = row.cells[col].dataset.v; return isNaN(v) ? v : Number(v); };
    const rows = [...body.rows].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0)
                                               * (up ? 1 : -1));
    rows.forEach(row => body.append(row));
  };
}
"""


def write_html(results: list, out_dir, title: str = "pix2pix evaluation",
               notes: tuple = (), asked: tuple = ()) -> Path:
    """out_dir/index.html: one row per image (worst L1 of results[0] first) with sketch | generated
    (one per result) | real thumbnails from save_thumbnails (kinds sketch, fake0, fake1, ..., real)
    and the scores.
    results: evaluate()'s dicts, each with a "label"; notes: lines shown under the title. Unpaired
    results (evaluate_sketches) have no real column and list the worst edge F1 first. asked:
    run_asked's results, a table each under the means."""
    esc = html.escape  # quote=True by default: safe in text and in attribute values

    def img(name, kind):
        return (f'<img src="{esc(quote(thumbnail_path(name, kind)))}" width="{THUMB_SIZE}" '
                f'alt="{esc(kind)}">')

    metrics = [k for k in METRICS if k in results[0]["mean"]]
    real = not results[0].get("unpaired", False)
    worst = metrics[0]  # l1 for pairs, edge_f1 for unpaired sketches
    by_name = [{image["name"]: image for image in result["images"]} for result in results]
    labels = [esc(result.get("label", f"run {k}")) for k, result in enumerate(results)]
    suffix = (lambda k: f" ({labels[k]})") if len(results) > 1 else (lambda k: "")

    summary = ["<tr><th>metric</th><th>better</th>" + "".join(f"<th>{label}</th>"
                                                              for label in labels) + "</tr>"]
    for key, better in [*((k, METRICS[k]) for k in metrics), ("fid", "lower"), ("kid", "lower")]:
        values = [r["mean"].get(key, r.get(key)) for r in results]
        if any(v is not None for v in values):
            summary.append(f"<tr><td>{key}</td><td>{better}</td>" + "".join(
                f"<td>{'' if v is None else f'{v:.4g}'}</td>" for v in values) + "</tr>")

    head = ['<th class="sort">#</th>', '<th class="sort">file</th>', "<th>sketch</th>",
            *(f"<th>generated{suffix(k)}</th>" for k in range(len(results))),
            *(["<th>real</th>"] if real else []),
            *(f'<th class="sort">{key}{suffix(k)}</th>'
              for key in metrics for k in range(len(results)))]
    rows = []
    sign = -1 if METRICS[worst] == "lower" else 1
    order = sorted(results[0]["images"], key=lambda image: sign * image[worst])  # worst first
    for rank, first in enumerate(order, 1):
        name = first["name"]
        cells = [f'<td data-v="{rank}">{rank}</td>', f'<td data-v="{esc(name)}">{esc(name)}</td>',
                 f"<td>{img(name, 'sketch')}</td>",
                 *(f"<td>{img(name, f'fake{k}')}</td>" for k in range(len(results))),
                 *([f"<td>{img(name, 'real')}</td>"] if real else [])]
        for key in metrics:
            for scores in by_name:
                value = scores.get(name, {}).get(key)
                cells.append(f'<td data-v="{value:.6g}">{value:.4f}</td>' if value is not None
                             else '<td data-v="">' "</td>")
        rows.append(f'<tr data-name="{esc(name)}">' + "".join(cells) + "</tr>")

    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th.sort {{ cursor: pointer; background: #eef; }}
img {{ display: block; image-rendering: auto; }}
</style></head><body>
<h1>{esc(title)}</h1>
{"".join(f"<p>{esc(note)}</p>" for note in notes)}
<table>{"".join(summary)}</table>
{"".join(asked_html(entry) for entry in asked)}
<p>Worst {"L1" if worst == "l1" else worst.replace("_", " ")} first;
click a blue column header to sort.</p>
<table id="scores"><thead><tr>{"".join(head)}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<script>{SORT_SCRIPT}</script>
</body></html>
"""
    path = Path(out_dir) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def asked_html(asked: dict) -> str:
    """One asked_colours() result as an HTML table, a row per colour with a swatch."""
    esc = html.escape
    transfer = "the transfer on" if asked["transfer"] else "--no-transfer"
    rows = "".join(
        f'<tr><td><span style="background:{row["color"]}">&emsp;</span> {row["color"]}</td>'
        f'<td>{row["delta_e"]:.2f}</td><td>{row["edge_f1"]:.4f}</td>'
        f'<td>{row["edge_f1_change"]:+.4f}</td><td>{row["edges"]:.4f}</td>'
        f'<td>{row["clipped"]:.2%}</td></tr>' for row in asked["colors"])
    return (f"<h2>Asked colours: {esc(asked['label'])}</h2><p>Each sketch as infer.py --color C "
            f"--seed {asked['seed']} makes it ({transfer}); ΔE: the shoe's median colour inside "
            f"the drawing to C; edge F1 against the sketch, and its change from the uncoloured "
            f"photo's ({asked['edge_f1']:.4f}); edges: against the uncoloured photo's.</p>"
            "<table><tr><th>color</th><th>ΔE ↓</th><th>edge F1 ↑</th><th>change</th>"
            f"<th>edges vs uncoloured ↑</th><th>clipped</th></tr>{rows}</table>")


# ------------------------------------------------------------------------------------- command line

def print_table(results: list) -> None:
    """Means side by side, one column per checkpoint."""
    rows = [("images", "", [str(len(r["images"])) for r in results])]
    names = {"l1": "L1 [-1,1]", "psnr": "PSNR dB", "ssim": "SSIM", "edge_f1": "edge F1",
             "delta_e": "ΔE pixels", "delta_e_mean": "ΔE mean", "vgg_cos": "VGG16 cos"}
    for key in (k for k in METRICS if k in results[0]["mean"]):
        rows.append((names[key], METRICS[key], [f"{r['mean'][key]:.4f}" for r in results]))
    if "fid" in results[0]:
        rows.append(("FID", "lower", [f"{r['fid']:.2f}" for r in results]))
        rows.append(("KID", "lower", [f"{r['kid']:.4f} ± {r['kid_std']:.4f}" for r in results]))
    width = max(len(text) for text in [*(r["label"] for r in results),
                                       *(v for *_, values in rows for v in values)])
    print(f"{'metric':<12}{'better':<7}" + "".join(f"  {r['label']:>{width}}" for r in results))
    for name, better, values in rows:
        print(f"{name:<12}{better:<7}" + "".join(f"  {v:>{width}}" for v in values))


def load_model(path) -> tuple:
    """(module turning sketches into photos, its config) of a pix2pix or a completion checkpoint."""
    if checkpoint_kind(path) == "completion":
        return load_completer(path)
    return load_generator(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_checkpoint_flags(parser, required=True)
    parser.add_argument("--data",
                        help="folder of side-by-side pairs (default: the run's data_dir/val)")
    parser.add_argument("--out", help="folder for results.json, index.html and thumbnails "
                                      "(default: results/<run>)")
    parser.add_argument("--eval", **SWITCH, help=EVAL_HELP)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the dropout noise in paper mode")
    parser.add_argument("--inception",
                        help="Inception v3 weights file for FID and KID (never downloaded)")
    parser.add_argument("--vgg16", help="torchvision's vgg16 state dict file for the VGG16 "
                                        "cosine similarity (never downloaded)")
    parser.add_argument("--compare",
                        help="a second checkpoint, evaluated on the same data, shown side by side")
    parser.add_argument("--batch_size", type=int, default=16, help="images per generator call")
    parser.add_argument("--sketches", help="instead of --data: a folder of plain, unpaired "
                                           "sketches (edge F1 only)")
    parser.add_argument("--photos", help="with --sketches: a folder of real photos for FID and KID")
    parser.add_argument("--fit", **{**SWITCH, "default": True},
                        help="with --sketches: fit each drawing to the frame as infer.py does")
    parser.add_argument("--references",
                        help="with --sketches: a folder of the drawings to score against, by file "
                             "stem (e.g. clean scans of pencil or photographed copies; default: "
                             "the sketches themselves)")
    parser.add_argument("--hints", type=int, metavar="N",
                        help="for a model trained with colour hints: also score it given N hint "
                             "patches sampled from each real photo (seeded), beside none")
    parser.add_argument("--asked_colors", "--asked-colors", nargs="+", metavar="COLOUR",
                        help="for a model trained with colour hints: each sketch made as infer.py "
                             "--color COLOUR --seed SEED makes it, and the ΔE of the shoe's "
                             "median colour inside the drawing to COLOUR, with its edge F1")
    parser.add_argument("--transfer", **{**SWITCH, "default": True},
                        help="as infer.py: after G, move the shoe to the hints' colour, for "
                             "--hints and --asked_colors (default: on); --no-transfer: G's own")
    add_device_flag(parser)
    add_tuning_flags(parser)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """A ValueError for flags that do not go together, before any file is read."""
    try:
        args.asked_rgb = [parse_colour(text) for text in args.asked_colors or ()]
    except ValueError as e:
        raise ValueError(f"--asked_colors: {e}") from None
    if args.hints is not None and args.hints < 1:
        raise ValueError(f"--hints must be at least 1 (0 hints is the plain evaluation), got "
                         f"{args.hints}")
    if args.sketches and args.data:
        raise ValueError("give either --data (pairs) or --sketches (unpaired sketches), not both")
    if args.photos and not args.sketches:
        raise ValueError("--photos goes with --sketches (with --data the pairs hold the real "
                         "photos)")
    if args.sketches and args.inception and not args.photos:
        raise ValueError("--inception with --sketches needs --photos, the real photos to "
                         "compare with")
    for flag, given in (("--vgg16 compares with", args.vgg16),
                        ("--hints samples hints from", args.hints)):
        if given and args.sketches:
            raise ValueError(f"{flag} the real photos of --data pairs; unpaired --sketches have "
                             "none")


def load_runs(args: argparse.Namespace) -> list:
    """[(path, (model, cfg))] of the checkpoint and --compare, every file checked before any long
    work; a ValueError for two that cannot be compared or --hints without a hint model."""
    first = chosen_checkpoint(args)
    paths = [first] + ([Path(args.compare)] if args.compare else [])
    runs = [(path, load_model(path)) for path in paths]
    (_, (_, a)), (_, (_, b)) = runs[0], runs[-1]
    if (a.image_size, a.direction) != (b.image_size, b.direction):
        raise ValueError(f"cannot compare: {paths[0]} has image_size {a.image_size} and "
                         f"direction {a.direction}, {paths[-1]} {b.image_size} and {b.direction}")
    for flag, given in (("--hints", args.hints), ("--asked_colors", args.asked_colors)):
        if given and not any(getattr(cfg, "hints", False) for _, (_, cfg) in runs):
            raise ValueError(f"{flag}: trained without colour hints (no hint channels), give a "
                             f"model trained with --hints: {paths[0]}")
    if args.asked_colors and a.direction != "AtoB":
        raise ValueError(f"--asked_colors: {paths[0]} turns photos into sketches (direction "
                         "BtoA); a colour is asked of a sketch")
    return runs


def plan_jobs(args: argparse.Namespace, runs: list) -> list:
    """[(path, (model, cfg), hints, label)]: each checkpoint, and with --hints a hint model once
    more, given that many hints; labelled by run folder and file (whole paths where those clash)."""
    names = [f"{path.parent.name}/{path.name}" for path, _ in runs]
    if len(set(names)) < len(names):
        names = [str(path) for path, _ in runs]
    jobs = []
    for (path, run), name in zip(runs, names):
        hinted = args.hints and getattr(run[1], "hints", False)
        jobs += [(path, run, n, f"{name} ({n} hints)" if hinted else name)
                 for n in ((0, args.hints) if hinted else (0,))]
    return jobs


class Measures(NamedTuple):
    """What every job shares: where it goes and the set-level measures."""
    data_dir: Path
    out_dir: Path
    device: torch.device
    inception: nn.Module | None  # FID and KID's features, or None
    vgg16: nn.Module | None  # vgg_cos's features, or None
    real_features: list  # Inception features of the real photos, filled by the first job


def run_job(args: argparse.Namespace, k: int, job: tuple, measures: Measures) -> dict:
    """evaluate() or evaluate_sketches() of job k of plan_jobs, thumbnails saved and FID and KID
    added where Inception weights are given."""
    path, (generator, cfg), n_hints, label = job
    inception, fake_features = measures.inception, []

    def on_batch(names, sketch, fake_photo, photo):
        firsts = {"sketch": sketch, **({"real": photo} if photo is not None else {})}
        save_thumbnails(measures.out_dir, names, {f"fake{k}": fake_photo,
                                                  **(firsts if k == 0 else {})})
        if inception is not None:
            fake_features.append(inception_features(inception, fake_photo))
            if k == 0 and photo is not None:  # the real photos are the same for every job
                measures.real_features.append(inception_features(inception, photo))

    # a completion's networks run in eval mode; --seed fixes its search's random starts
    completion = isinstance(generator, Completer)
    if completion:
        torch.manual_seed(args.seed)
    common = dict(paper=not args.eval and not completion, seed=args.seed,
                  batch_size=args.batch_size, device=measures.device, on_batch=on_batch,
                  progress=True, precision=args.precision, tune=args.tune)
    if args.sketches:
        result = evaluate_sketches(generator, cfg, measures.data_dir, fit=args.fit,
                                   references=args.references, **common)
    else:
        result = evaluate(generator, cfg, measures.data_dir, vgg16=measures.vgg16, hints=n_hints,
                          transfer=args.transfer, **common)
    result = {"label": label, "checkpoint": str(path), "hints": n_hints, **result}
    if inception is not None:
        fake, real = torch.cat(fake_features), torch.cat(measures.real_features)
        result["fid"] = fid_from_features(fake, real)
        result["kid"], result["kid_std"] = kid_from_features(fake, real, seed=args.seed)
    generator.cpu()  # free the device for the next checkpoint
    return result


def run_asked(args: argparse.Namespace, job: tuple, measures: Measures) -> dict:
    """asked_colours() of a hint model's job of plan_jobs on the --data pairs' sketches or the
    --sketches, labelled."""
    path, (generator, cfg), _, label = job
    files = (list_images(measures.data_dir) if args.sketches else
             PairDataset(measures.data_dir, cfg.image_size, direction=cfg.direction).files)
    result = asked_colours(generator, cfg, files, args.asked_rgb, paper=not args.eval,
                           seed=args.seed, transfer=args.transfer, fit=args.fit,
                           batch_size=args.batch_size, device=measures.device,
                           precision=args.precision, tune=args.tune, progress=True,
                           unpaired=bool(args.sketches))
    generator.cpu()
    return {"label": label.removesuffix(" (0 hints)"), "checkpoint": str(path), **result}


def print_asked(asked: dict) -> None:
    """One asked_colours() result as a table, a row per colour."""
    transfer = "the transfer on" if asked["transfer"] else "--no-transfer"
    print(f"asked colours, {asked['label']}: each sketch as infer.py --color C --seed "
          f"{asked['seed']} makes it ({transfer}); uncoloured edge F1 {asked['edge_f1']:.4f}")
    print(f"{'color':<10}{'ΔE ↓':>8}{'edge F1 ↑':>11}{'change':>9}{'edges vs uncoloured ↑':>23}"
          f"{'clipped':>9}")
    for row in asked["colors"]:
        print(f"{row['color']:<10}{row['delta_e']:>8.2f}{row['edge_f1']:>11.4f}"
              f"{row['edge_f1_change']:>+9.4f}{row['edges']:>23.4f}{row['clipped']:>9.2%}")


def write_report(args: argparse.Namespace, runs: list, results: list, measures: Measures,
                 asked: list = ()) -> None:
    """Print the table of means and write results.json and index.html under measures.out_dir;
    asked: run_asked's results, each a table and an entry asked_colors."""
    mode = "eval mode" if args.eval else f"paper mode (dropout on, seed {args.seed})"
    if any(isinstance(model, Completer) for _, (model, _) in runs):
        mode += f"; completion in eval mode (search seed {args.seed})"
    kind = "unpaired sketches" if args.sketches else "pairs"
    print(f"{len(results[0]['images'])} {kind} from {measures.data_dir}, {mode}")
    print_table(results)
    for entry in asked:
        print_asked(entry)
    if measures.inception is not None and 0 < sum(map(len, measures.real_features)) < 2048:
        print("note: FID on fewer than 2048 images is biased upward; compare FIDs only at "
              "equal image counts")
    report = {"data": str(measures.data_dir), "mode": "eval" if args.eval else "paper",
              "seed": args.seed, **results[0]}
    if args.photos:
        report["photos"] = str(args.photos)
    others = [r for r in results[1:] if r["checkpoint"] != results[0]["checkpoint"]]
    if others:
        report["compare"] = others[0]
    if args.hints:
        report["with_hints"] = [r for r in results if r["hints"]]
    if asked:
        report["asked_colors"] = list(asked)
    out_dir = measures.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    labels = " vs ".join(result["label"] for result in results)
    write_html(results, out_dir, title=f"{labels} on {measures.data_dir}", notes=(mode,),
               asked=asked)
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'index.html'}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        device = pick_device(args.device)
        runs = load_runs(args)
        cfg = runs[0][1][1]
        inception = load_inception(args.inception, device) if args.inception else None
        vgg16 = VGG16Features(args.vgg16).to(device) if args.vgg16 else None
        run_name = f"pretrained_{args.pretrained}" if args.pretrained else runs[0][0].parent.name
        measures = Measures(Path(args.sketches or args.data or train_val_folders(cfg.data_dir)[1]),
                            Path(args.out or Path("results") / run_name), device, inception,
                            vgg16, real_features=[])
        if args.photos:  # unpaired: the real photos' features once, before the generators run
            photos = load_photos(args.photos, cfg.image_size)
            if inception is not None:
                measures.real_features.extend(
                    inception_features(inception, photos[i:i + args.batch_size])
                    for i in range(0, len(photos), args.batch_size))
        if inception is None:
            print("FID/KID skipped: no --inception weights file given (they need Inception "
                  "v3 weights, which evaluate.py never downloads)")
        jobs = plan_jobs(args, runs)
        results = [run_job(args, k, job, measures) for k, job in enumerate(jobs)]
        asked = [run_asked(args, job, measures) for job in jobs
                 if args.asked_colors and job[2] == 0 and getattr(job[1][1], "hints", False)]
        write_report(args, runs, results, measures, asked)
    except (OSError, ValueError) as e:
        print(f"evaluate.py: error: {first_line(e, 400)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
