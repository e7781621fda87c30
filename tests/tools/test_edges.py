"""The edge extractor finds thin lines exactly on shape boundaries, nothing on flat images, and
batches."""

import math

import torch
import torch.nn.functional as F

from tools.edges import detect_edges, draw_sketch, photo_to_sketch


def dilate(mask, radius):
    """Bool mask grown by radius pixels (Chebyshev distance)."""
    return F.max_pool2d(mask.float(), 2 * radius + 1, stride=1, padding=radius).bool()


def rectangle_photo():
    """A dark filled rectangle (rows 16..47, cols 20..43) on white, as an RGB batch of one."""
    photo = torch.ones(1, 3, 64, 64)
    photo[:, :, 16:48, 20:44] = 0.2
    return photo


def disc_photo(radius=30.0, centre=(64.0, 60.0), size=128):
    """A dark filled disc on white, as an RGB batch of one."""
    rows, cols = torch.meshgrid(torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij")
    inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < radius**2
    return torch.where(inside, 0.1, 1.0).expand(1, 3, size, size).clone()


def full_2x2_blocks(edges):
    """Number of 2x2 windows with all four pixels on: zero for one-pixel-wide lines."""
    return int((F.conv2d(edges.float(), torch.ones(1, 1, 2, 2)) == 4).sum())


def test_rectangle_edges_are_on_the_boundary_complete_and_thin():
    photo = rectangle_photo()
    inside = photo[:, :1] < 0.5  # (1, 1, H, W)
    # two rows straddling it
    boundary = (dilate(inside, 1) & ~inside) | (inside & dilate(~inside, 1))
    inner_boundary = inside & dilate(~inside, 1)
    edges = detect_edges(photo)
    assert edges.shape == (1, 1, 64, 64) and edges.dtype == torch.bool
    assert edges.sum() > 0
    assert not (edges & ~dilate(boundary, 1)).any(), "edge pixels away from the rectangle boundary"
    recall = (inner_boundary & dilate(edges, 1)).sum() / inner_boundary.sum()
    assert recall > 0.9
    assert full_2x2_blocks(edges) == 0
    perimeter = int(inner_boundary.sum())  # 2 * (32 + 24) - 4 = 108
    assert 0.85 * perimeter <= int(edges.sum()) <= 1.15 * perimeter


def test_disc_edges_follow_the_circle():
    radius, centre = 30.0, (64.0, 60.0)
    edges = detect_edges(disc_photo(radius, centre))[0, 0]
    rows, cols = edges.nonzero(as_tuple=True)
    distance = torch.hypot(rows - centre[0], cols - centre[1])
    assert (distance - radius).abs().max() <= 1.5
    angles = torch.atan2(rows - centre[0], cols - centre[1])
    covered_bins = torch.unique(((angles + math.pi) / (2 * math.pi) * 36).long().clamp(max=35))
    assert len(covered_bins) == 36, "the whole circle is traced"
    assert full_2x2_blocks(edges[None, None]) == 0
    # an 8-connected digital circle has about 4 * sqrt(2) * r pixels; thick lines would have far
    # more
    assert int(edges.sum()) <= 1.15 * 4 * math.sqrt(2) * radius


def test_flat_images_give_no_edges():
    flat = torch.cat([torch.ones(1, 3, 48, 48), torch.full((1, 3, 48, 48), 0.4),
                      torch.zeros(1, 3, 48, 48)])
    assert not detect_edges(flat).any()
    noisy = 0.5 + 0.003 * torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    assert not detect_edges(noisy).any(), "faint noise must not be stretched into edges"


def test_small_components_are_removed_and_long_lines_kept():
    photo = torch.ones(1, 1, 64, 64)
    photo[..., 40:42, 10:54] = 0.0  # long bar: its outline is ~90 pixels
    photo[..., 10:13, 10:13] = 0.0  # speck: its outline is ~12 pixels
    speck_area, bar_area = ((slice(None), slice(None), slice(0, 20)),
                            (slice(None), slice(None), slice(30, 64)))
    everything = detect_edges(photo, min_pixels=1)
    assert everything[speck_area].sum() > 0 and everything[bar_area].sum() > 60
    cleaned = detect_edges(photo, min_pixels=20)
    assert cleaned[speck_area].sum() == 0
    assert torch.equal(cleaned[bar_area], everything[bar_area])


def test_hysteresis_follows_a_fading_edge_but_drops_isolated_weak_ones():
    # strong at the top, weak at the bottom
    contrast = torch.linspace(0.8, 0.1, 64).view(1, 1, 64, 1)
    photo = torch.ones(1, 1, 64, 96)
    photo[..., 30:] -= contrast  # a fading vertical step at column 30
    photo[..., 70:] -= 0.2  # a uniformly weak step at column 70
    # weak: 0.08..0.4 of the peak, strong above
    edges = detect_edges(photo, low=0.1, high=0.5)[0, 0]
    rows_with_fading_edge = edges[:, 27:33].any(dim=1)
    assert rows_with_fading_edge.float().mean() > 0.95, ("weak part connected to the strong "
                                                         "part is kept")
    assert not edges[:, 64:76].any(), "weak edge touching no strong edge is dropped"


def test_batched_result_equals_per_image_result():
    generator = torch.Generator().manual_seed(1)
    blobs = F.interpolate(torch.rand(2, 3, 8, 8, generator=generator), size=64, mode="nearest")
    batch = torch.cat([rectangle_photo(), disc_photo(20.0, (32.0, 30.0), 64), blobs,
                       torch.ones(1, 3, 64, 64)])
    together = detect_edges(batch)
    for index in range(len(batch)):
        assert torch.equal(together[index:index + 1], detect_edges(batch[index:index + 1]))
    assert together[2:4].any()


def test_gray_input_matches_rgb_of_the_same_gray():
    gray = rectangle_photo()[:, :1]
    assert torch.equal(detect_edges(gray), detect_edges(gray.repeat(1, 3, 1, 1)))


def test_draw_sketch_is_black_exactly_on_edges():
    edges = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2)) < 0.2
    sketch = draw_sketch(edges)
    assert sketch.shape == (2, 3, 16, 16) and sketch.dtype == torch.float32
    on_edges = edges.expand(-1, 3, -1, -1)
    assert (sketch[on_edges] == 0).all() and (sketch[~on_edges] == 1).all()


def test_photo_to_sketch_composes_detection_and_drawing():
    photo = rectangle_photo()
    assert torch.equal(photo_to_sketch(photo), draw_sketch(detect_edges(photo)))


def test_the_thinning_is_the_core_one_and_thins_a_thick_bar_to_one_pixel():
    import sketch
    from tools import edges
    # one copy, in the core (fitted inference redraws sketches with it)
    assert edges.thin is sketch.thin
    bar = torch.zeros(1, 1, 32, 64, dtype=torch.bool)
    bar[..., 10:17, 5:60] = True  # 7 pixels thick
    thinned = edges.thin(bar)[0, 0]
    assert thinned[:, 12:52].sum(dim=0).eq(1).all() and full_2x2_blocks(thinned[None, None]) == 0
