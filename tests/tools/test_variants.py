"""tools.variants: the kinds of sketch people bring, made from clean ones."""

import numpy as np
from PIL import Image, ImageDraw

from tools import variants


def test_every_kind_is_written_and_keeps_the_strokes(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    for k in range(4):
        img = Image.new("L", (128, 128), 255)
        ImageDraw.Draw(img).ellipse((20 + k, 30, 100, 90), outline=0, width=2)
        img.save(clean / f"s{k}.png")
    assert [p.name for p in variants.chosen(clean, 2)] == ["s0.png", "s2.png"]  # spread out
    folders = variants.make_variants(clean, tmp_path / "out", count=2)
    assert set(folders) == set(variants.KINDS)
    names = {kind: sorted(p.name for p in folder.iterdir()) for kind, folder in folders.items()}
    assert names["photo"] == ["s0.jpg", "s2.jpg"] and names["pencil"] == ["s0.png", "s2.png"]
    pencil = np.asarray(Image.open(tmp_path / "out/pencil/s0.png").convert("L"))
    assert 150 <= pencil.min() <= 190  # light: the darkest line is gray
    blue = np.asarray(Image.open(tmp_path / "out/blue/s0.png").convert("RGB")).astype(int)
    line = blue[..., 2] < 250
    assert (blue[line][:, 2] > blue[line][:, 0]).all()  # blue ink
    marker = Image.open(tmp_path / "out/marker/s0.png")
    reference = Image.open(tmp_path / "out/marker_reference/s0.png")
    assert marker.size == reference.size == variants.MARKER_CANVAS
    # the same drawing, placed the same way; the marker's strokes are wider
    marker_ink, reference_ink = (np.asarray(img) < 128 for img in (marker, reference))
    assert marker_ink.sum() > 2 * reference_ink.sum()
    assert (marker_ink & reference_ink).sum() > 0.95 * reference_ink.sum()
