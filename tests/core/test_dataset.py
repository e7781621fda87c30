"""Pairs are split, converted and jittered correctly, and bad folders fail with one clear
message."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from dataset import EpochSampler, PairDataset, load_rgb


def two_halves(path, size=32, left=(255, 0, 0), right=(0, 0, 255), mode="RGB"):
    """A pair whose left half is one flat colour and right half another."""
    img = Image.new("RGB", (2 * size, size), left)
    img.paste(Image.new("RGB", (size, size), right), (size, 0))
    img.convert(mode).save(path)
    return path


def test_left_half_is_the_sketch_and_right_half_the_photo(tmp_path):
    two_halves(tmp_path / "1.png")
    sketch, photo = PairDataset(tmp_path, image_size=32)[0]
    assert sketch.shape == photo.shape == (3, 32, 32)
    assert torch.allclose(sketch[:, 5, 5], torch.tensor([1.0, -1.0, -1.0]))  # red, in [-1, 1]
    assert torch.allclose(photo[:, 5, 5], torch.tensor([-1.0, -1.0, 1.0]))  # blue
    sketch, photo = PairDataset(tmp_path, image_size=32, direction="BtoA")[0]
    assert torch.allclose(sketch[:, 5, 5], torch.tensor([-1.0, -1.0, 1.0]))


def test_halves_are_resized_to_the_training_size(tmp_path):
    two_halves(tmp_path / "1.jpg", size=64)
    sketch, photo = PairDataset(tmp_path, image_size=32)[0]
    assert sketch.shape == photo.shape == (3, 32, 32)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_any_colour_mode_becomes_rgb(tmp_path, mode):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    two_halves(tmp_path / f"1{suffix}", left=(200, 200, 200), right=(10, 10, 10), mode=mode)
    sketch, photo = PairDataset(tmp_path, image_size=32)[0]
    assert sketch.shape == (3, 32, 32)
    assert sketch.mean() > 0.4 and photo.mean() < -0.8  # light left, dark right


def test_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert np.asarray(load_rgb(tmp_path / "clear.png")).min() == 255


def test_jitter_applies_the_same_crop_and_flip_to_both_halves(tmp_path):
    # The same random pattern in both halves: any misalignment shows up as a difference.
    rng = np.random.default_rng(0)
    half = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate([half, half], axis=1)).save(tmp_path / "1.png")
    data = PairDataset(tmp_path, image_size=64, load_size=80, jitter=True)
    crops = set()
    for seed in range(12):
        random.seed(seed)
        sketch, photo = data[0]
        assert torch.equal(sketch, photo)
        crops.add(sketch.sum().item())
    assert len(crops) > 3  # the crops really vary


def test_wrong_aspect_ratio_names_the_file(tmp_path):
    two_halves(tmp_path / "good.png")
    Image.new("RGB", (50, 40)).save(tmp_path / "square.png")
    with pytest.raises(ValueError,
                       match=r"1 of 2 files.*square\.png: expected a side-by-side pair.*50×40"):
        PairDataset(tmp_path)


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images"):
        PairDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        PairDataset(tmp_path / "nope")


def test_unreadable_zero_byte_and_oversized_files_are_reported(tmp_path):
    two_halves(tmp_path / "good.png")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "zero.png").write_bytes(b"")
    # a few KB on disk, 128 M pixels decoded
    Image.new("1", (16000, 8000)).save(tmp_path / "bomb.png")
    with pytest.raises(ValueError) as error:
        PairDataset(tmp_path)
    message = str(error.value)
    assert "3 of 4" in message and "bomb.png: too large" in message
    assert "text.jpg: not a readable image" in message and "zero.png: empty file" in message


def test_only_plain_image_formats_are_decoded(tmp_path):
    # PostScript: PIL would hand it to Ghostscript
    Image.new("RGB", (64, 32)).save(tmp_path / "pair.eps")
    (tmp_path / "pair.eps").rename(tmp_path / "pair.png")
    with pytest.raises(ValueError, match="pair.png: not a readable image"):
        PairDataset(tmp_path)


def test_a_file_that_fails_to_decode_mid_epoch_is_skipped_with_a_warning(tmp_path):
    two_halves(tmp_path / "1.png", left=(255, 0, 0))
    two_halves(tmp_path / "2.png", left=(0, 255, 0))
    data = PairDataset(tmp_path, image_size=32)
    # truncated after the scan
    (tmp_path / "1.png").write_bytes((tmp_path / "1.png").read_bytes()[:60])
    with pytest.warns(UserWarning, match="1.png"):
        sketch, _ = data[0]
    assert torch.allclose(sketch[:, 0, 0], torch.tensor([-1.0, 1.0, -1.0]))  # the next file's green


def test_epoch_sampler_reshuffles_per_epoch_and_resumes_mid_epoch():
    full = list(EpochSampler(20, seed=3, epoch=1))
    assert sorted(full) == list(range(20))
    assert full != list(EpochSampler(20, seed=3, epoch=2))
    assert full == list(EpochSampler(20, seed=3, epoch=1))
    assert list(EpochSampler(20, seed=3, epoch=1, start=8)) == full[8:]
