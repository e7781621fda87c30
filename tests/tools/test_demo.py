"""The demo data set has the edges2shoes layout, sketches that trace the shoes, and is reproducible
and cached."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tools.demo import draw_shoe, make_demo


def halves(path):
    """(sketch, photo) uint8 arrays (H, W, 3) of one saved pair."""
    pair = np.asarray(Image.open(path).convert("RGB"))
    width = pair.shape[1] // 2
    return pair[:, :width], pair[:, width:]


def dilate(mask, radius):
    """Bool numpy mask grown by radius pixels (Chebyshev distance)."""
    grown = F.max_pool2d(torch.from_numpy(mask).float()[None, None], 2 * radius + 1, stride=1,
                         padding=radius)
    return grown[0, 0].bool().numpy()


def all_files(root):
    """{relative path: (mtime_ns, bytes)} of every file under root."""
    files = [path for path in sorted(root.rglob("*")) if path.is_file()]
    return {str(path.relative_to(root)): (path.stat().st_mtime_ns, path.read_bytes())
            for path in files}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    """A small demo set, made once for the tests that only read it."""
    return make_demo(tmp_path_factory.mktemp("demo") / "data", n_train=6, n_val=2, seed=0)


def test_layout_names_and_image_format(demo_root):
    assert (sorted(p.name for p in (demo_root / "train").iterdir())
            == sorted(f"{i}_AB.jpg" for i in range(1, 7)))
    assert sorted(p.name for p in (demo_root / "val").iterdir()) == ["1_AB.jpg", "2_AB.jpg"]
    for path in [*(demo_root / "train").iterdir(), *(demo_root / "val").iterdir()]:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (512, 256)


def test_left_is_a_sparse_sketch_of_the_object_on_the_right(demo_root):
    for path in sorted((demo_root / "train").iterdir()) + sorted((demo_root / "val").iterdir()):
        sketch, photo = halves(path)
        dark = sketch.mean(2) < 128
        assert 0.004 < dark.mean() < 0.25, f"{path.name}: sketch has {dark.mean():.1%} dark pixels"
        assert (sketch.mean(2) > 200).mean() > 0.7, "sketch background is white"
        shoe = photo.min(2) < 240
        assert 0.05 < shoe.mean() < 0.7, f"{path.name}: object covers {shoe.mean():.1%}"
        near_shoe = dilate(shoe, 3)
        assert dark[near_shoe].sum() >= 0.97 * dark.sum(), ("sketch lines lie on the object, "
                                                            "not the background")
        outline = shoe & dilate(~shoe, 1)
        traced = (outline & dilate(dark, 2)).sum() / outline.sum()
        assert traced > 0.7, f"{path.name}: only {traced:.0%} of the object outline is drawn"


def test_draw_shoe_is_a_coloured_object_inside_a_white_frame():
    for index in range(8):
        photo = np.asarray(draw_shoe(np.random.default_rng(index), size=128))
        assert photo.shape == (128, 128, 3) and photo.dtype == np.uint8
        shoe = photo.min(2) < 240
        border = np.concatenate([shoe[0], shoe[-1], shoe[:, 0], shoe[:, -1]])
        assert not border.any(), "the shoe stays inside the frame"
        assert shoe.mean() > 0.05


def test_same_seed_same_bytes_different_seed_different_images(tmp_path):
    first = make_demo(tmp_path / "a", n_train=3, n_val=1, seed=7)
    second = make_demo(tmp_path / "b", n_train=3, n_val=1, seed=7)
    other = make_demo(tmp_path / "c", n_train=3, n_val=1, seed=8)
    for name in ["train/1_AB.jpg", "train/3_AB.jpg", "val/1_AB.jpg"]:
        assert (first / name).read_bytes() == (second / name).read_bytes()
        assert (first / name).read_bytes() != (other / name).read_bytes()
    assert ((first / "train/1_AB.jpg").read_bytes()
            != (first / "val/1_AB.jpg").read_bytes()), "train and val differ"


def test_second_call_keeps_files_and_new_settings_regenerate(tmp_path):
    root = tmp_path / "demo"
    make_demo(root, n_train=4, n_val=1, seed=0)
    before = all_files(root)
    assert json.loads((root / ".demo.json").read_text())["complete"] is True
    assert make_demo(root, n_train=4, n_val=1, seed=0) == root
    assert all_files(root) == before, "nothing is rewritten when the set is already there"

    make_demo(root, n_train=2, n_val=1, seed=0)
    assert sorted(p.name for p in (root / "train").iterdir()) == ["1_AB.jpg", "2_AB.jpg"]
    assert ((root / "train/1_AB.jpg").read_bytes()
            == before["train/1_AB.jpg"][1]), "image i depends on seed and i only"


def test_missing_file_or_unfinished_run_is_redone(tmp_path):
    root = make_demo(tmp_path / "demo", n_train=2, n_val=1, seed=0)
    (root / "train/2_AB.jpg").unlink()
    make_demo(root, n_train=2, n_val=1, seed=0)
    assert (root / "train/2_AB.jpg").exists()
    marker = json.loads((root / ".demo.json").read_text())
    (root / ".demo.json").write_text(json.dumps({**marker, "complete": False}))  # as if interrupted
    (root / "train/9_AB.jpg").write_bytes(b"partial")
    make_demo(root, n_train=2, n_val=1, seed=0)
    assert not (root / "train/9_AB.jpg").exists()
    assert json.loads((root / ".demo.json").read_text())["complete"] is True


def test_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "real" / "train").mkdir(parents=True)
    (tmp_path / "real" / "train" / "1_AB.jpg").write_bytes(b"someone's data")
    with pytest.raises(FileExistsError):
        make_demo(tmp_path / "real", n_train=1, n_val=1)
    assert (tmp_path / "real" / "train" / "1_AB.jpg").read_bytes() == b"someone's data"
