"""sketch_aug: edge maps turned into hand-drawing-like sketches, the photo moved with them; off =
today's run."""

import os
import signal

import pytest
import torch

import dataset
import train
from config import Config
from conftest import tiny_config
from dataset import sketch_augment

ONLY_AFFINE = dict(width=0, wobble=0, drop=0, detail=0)  # just the shared scale and offset


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


def dark_centre(images):
    """(B, 2) row and column of the darkness-weighted centre of each image."""
    darkness = (1 - images.mean(1)).clamp(min=0)  # (B, H, W), 0 on white
    rows, cols = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in darkness.shape[1:]),
                                indexing="ij")
    total = darkness.sum((1, 2))
    return torch.stack([(darkness * rows).sum((1, 2)) / total,
                        (darkness * cols).sum((1, 2)) / total], 1)


def test_shift_and_scale_move_sketch_and_photo_alike():
    # a black 6×6 marker at a different place per image, at the same place in sketch and photo
    sketch = torch.ones(8, 3, 64, 64)
    for i in range(8):
        y, x = 8 + 5 * i, 50 - 5 * i
        sketch[i, :, y:y + 6, x:x + 6] = -1
    photo = sketch.clone()
    photo[:, 0][sketch[:, 0] < 0] = 0.4  # a coloured marker on white, to tell them apart
    new_sketch, new_photo = sketch_augment(sketch, photo, rng(), **ONLY_AFFINE)
    before, after_sketch, after_photo = (dark_centre(sketch), dark_centre(new_sketch),
                                         dark_centre(new_photo))
    moved = (after_sketch - before).norm(dim=1)
    # the markers did move (scale < 1 and offsets draw per image)
    assert (moved > 1).sum() >= 6, moved
    assert torch.allclose(after_sketch, after_photo, atol=0.3), (
        (after_sketch - after_photo).abs().max())


def test_output_stays_in_range_and_white_stays_white():
    white = torch.ones(4, 3, 64, 64)
    sketch, photo = sketch_augment(white, white.clone(), rng())
    assert torch.equal(sketch, white) and torch.equal(photo, white)
    noise = torch.rand(4, 3, 64, 64, generator=rng(1)) * 2 - 1
    sketch, photo = sketch_augment(noise, noise.clone(), rng(2), strength=2.0)
    assert sketch.shape == photo.shape == noise.shape
    assert sketch.min() >= -1 and sketch.max() <= 1 and photo.min() >= -1 and photo.max() <= 1
    assert torch.equal(sketch[:, 0], sketch[:, 2])  # a gray drawing
    # a shrunk photo gets a white margin: the corners were noise, now at least one image is white
    # there
    assert (photo[:, :, 0, 0] == 1).all(1).any()


def test_thicker_width_gives_thicker_strokes():
    sketch = torch.ones(8, 3, 256, 256)
    sketch[:, :, 128, 40:220] = -1  # a one-pixel line
    sketch[:, :, 40:220, 128] = -1
    still = dict(wobble=0, drop=0, detail=0, shrink=0)
    ink = {w: (sketch_augment(sketch, sketch.clone(), rng(3), width=w,
                              **still)[0] < 0).sum((1, 2, 3)).float()
           for w in (0, 2, 6)}
    assert torch.equal(ink[0], (sketch < 0).sum((1, 2, 3)).float())  # width 0: the line as it was
    assert (ink[2] >= ink[0]).all() and (ink[6] >= ink[0]).all()
    assert ink[0].mean() < ink[2].mean() < ink[6].mean(), {w: v.mean().item()
                                                           for w, v in ink.items()}
    assert ink[6].max() >= 3 * ink[0].max()  # some image got lines 3+ pixels wide


def test_same_generator_seed_same_drawing_other_seed_other_drawing():
    sketch = torch.ones(2, 3, 64, 64)
    sketch[:, :, 20:44, 32] = -1
    a, b, c = (sketch_augment(sketch, sketch.clone(), rng(seed))[0] for seed in (5, 5, 6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sketch_aug_needs_atob():
    with pytest.raises(ValueError, match="sketch_aug needs direction AtoB"):
        Config(sketch_aug=True, direction="BtoA")
    with pytest.raises(ValueError, match="sketch_aug_strength"):
        Config(sketch_aug_strength=-1)


def final_weights(cfg):
    ckpt = torch.load(os.path.join(cfg.models_dir, cfg.name, "last.pt"), weights_only=True)
    return {f"{net}.{k}": v for net in ("generator", "discriminator") for k, v in ckpt[net].items()}


def test_off_trains_exactly_as_a_run_that_skips_the_call(tmp_path, pairs_dir, monkeypatch):
    cfg = dict(epochs=1, batch_size=8)  # 16 pairs: two steps

    def refuse(*args):
        raise AssertionError("sketch_augment called with sketch_aug false")

    monkeypatch.setattr(train, "sketch_augment", refuse)
    off = tiny_config(tmp_path / "off", pairs_dir, **cfg)
    result_off = train.main(off)
    # the call site with an identity augmentation: the same run, so the branch adds nothing else (no
    # RNG draw)
    seen = []
    monkeypatch.setattr(train, "sketch_augment", lambda sketch, photo, generator, strength: (
        seen.append(generator.initial_seed()) or (sketch, photo)))
    skipped = tiny_config(tmp_path / "skipped", pairs_dir, sketch_aug=True, **cfg)
    assert train.main(skipped)["loss_g_l1"] == result_off["loss_g_l1"]
    assert seen == [0, 1]  # on, it is called each step, reseeded from the step (seed 0, rank 0)
    weights_off, weights_skipped = final_weights(off), final_weights(skipped)
    assert all(torch.equal(weights_off[k], weights_skipped[k]) for k in weights_off)


def test_resumed_run_draws_the_same_augmentations(tmp_path, pairs_dir, monkeypatch):
    unbroken = train.main(tiny_config(tmp_path / "a", pairs_dir, epochs=1, sketch_aug=True))
    cfg = tiny_config(tmp_path / "b", pairs_dir, epochs=1, sketch_aug=True)
    loads, original = [], dataset.PairDataset.load

    # Ctrl-C while the 6th training image (second batch of 4) loads; 4 val pairs first
    def load(self, path, crop=None):
        loads.append(path)
        if len(loads) == 4 + 6:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, path, crop)

    monkeypatch.setattr(dataset.PairDataset, "load", load)
    with pytest.raises(SystemExit):
        train.main(cfg)
    monkeypatch.undo()
    resumed = train.main(Config(**{**cfg.to_dict(), "resume": True}))
    assert resumed["step"] == unbroken["step"] == 4
    a, b = final_weights(tiny_config(tmp_path / "a", pairs_dir)), final_weights(cfg)
    assert all(torch.equal(a[k], b[k]) for k in a)
