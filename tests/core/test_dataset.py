"""Pairs are split, converted and jittered correctly, and bad folders fail with one clear
message."""

import random
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import dataset
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


# --- 16-bit and other wide pixels: scaled to 8 bits by the one opener --------------------------

PAPER_16, STROKE_16 = 65535, 100 * 257  # white paper and a grey 100 (of 255) stroke, in 16 bits


def grey_16(path, mode="I;16", paper=PAPER_16, stroke=STROKE_16, size=(64, 48)):
    """A 16-bit grey image: paper with a grey rectangle outline; PNG for I;16, TIFF otherwise (PIL
    keeps I;16B and I there)."""
    values = np.full(size[::-1], paper, np.int64)
    values[10:38, 12] = values[10:38, 50] = values[10, 12:51] = values[37, 12:51] = stroke
    if mode == "F":
        img = Image.fromarray(values.astype(np.float32))
    elif mode == "I":
        img = Image.fromarray(values.astype(np.int32))
    else:
        img = Image.frombytes(mode, size, values.astype(">u2" if mode == "I;16B" else "<u2")
                              .tobytes())
    img.save(path)
    assert Image.open(path).mode == mode  # what PIL reads back: the case under test
    return path


def png_16_bit_rgb(path, colour=(STROKE_16, 0, PAPER_16), size=(20, 16)):
    """A 16-bit-per-channel RGB PNG, written by hand (PIL cannot write one)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    row = b"\0" + np.tile(np.array(colour, ">u2"), size[0]).tobytes()
    ihdr = struct.pack(">IIBBBBB", *size, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(row * size[1])) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("mode, name", [("I;16", "g.png"), ("I;16B", "g.tif"), ("I", "g.tif")])
def test_16_bit_grey_keeps_its_high_byte(tmp_path, mode, name):
    # a grey stroke at 100 of 255 was clipped to white: a blank page
    rgb = np.asarray(load_rgb(grey_16(tmp_path / name, mode)))
    assert rgb.shape == (48, 64, 3) and rgb[10, 20].tolist() == [100] * 3
    assert rgb[20, 20].tolist() == [255] * 3 and rgb[20, 12].tolist() == [100] * 3


def test_16_bit_rgb_is_read_as_pil_reads_it_the_high_byte_as_grey_is(tmp_path):
    assert np.asarray(load_rgb(png_16_bit_rgb(tmp_path / "c.png")))[0, 0].tolist() == [100, 0,
                                                                                         255]


def test_a_16_bit_grey_png_with_a_transparent_grey_becomes_white_there(tmp_path):
    path = grey_16(tmp_path / "t.png", paper=1234)
    img = Image.open(path)
    img.info["transparency"] = 1234
    img.save(path, transparency=1234)
    rgb = np.asarray(load_rgb(path))
    assert rgb[20, 20].tolist() == [255] * 3 and rgb[10, 20].tolist() == [100] * 3


@pytest.mark.parametrize("mode, paper, says", [
    ("F", 1.0, "32-bit float pixels (mode F)"),
    ("I", 70000, "32-bit integer pixels (25700 to 70000)"),
])
def test_pixels_without_an_8_bit_scale_are_refused_in_one_line(tmp_path, mode, paper, says):
    path = grey_16(tmp_path / "w.tif", mode, paper=paper)
    with pytest.raises(ValueError) as error:
        load_rgb(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and says in message and "\n" not in message


def test_the_one_opener_checks_the_header_and_prints_no_warning(tmp_path, recwarn):
    Image.new("RGB", (64, 32)).save(tmp_path / "pair.gif")
    for name, says in (("pair.gif", "not a readable image"), ("bomb.png", "too large")):
        if name == "bomb.png":
            Image.new("1", (10_000, 10_000)).save(tmp_path / name)  # 100 Mpx
        with pytest.raises(ValueError, match=f"{name}: {says}"):
            dataset.open_image(tmp_path / name)
    assert not recwarn.list
    # a corrupt EXIF block: PIL warns (two lines, a site-packages path) and decodes the pixels
    Image.new("RGB", (32, 32), "red").save(tmp_path / "exif.jpg", exif=b"Exif\0\0MM\0*\0\0\0\x08"
                                                                   b"\0\x05\x01\x12\0\x03")
    assert np.asarray(load_rgb(tmp_path / "exif.jpg"))[5, 5, 0] > 240
    assert not recwarn.list
