"""Classical edge extractor that imitates the edges2shoes sketches: thin black lines on white.

edges2shoes made its inputs by running HED on each photo, then thresholding, thinning to one-pixel
lines and dropping small fragments. This does the same post-processing on Canny edges, with torch
ops only, so it runs batched on CPU or GPU and needs no download or OpenCV.

Usage:
    python -m tools.edges photo.jpg sketch.png      # or: from tools.edges import photo_to_sketch
"""
import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F

from sketch import neighbours, thin  # in the core: fitted inference redraws sketches with it

# A step must change intensity by about this much per pixel (after blurring) to seed an edge:
# keeps flat or nearly flat images (JPEG noise, soft shading) free of lines, whatever their range.
MIN_STRONG_GRADIENT = 0.02
# Gradients closer than this are ties in non-maximum suppression (float rounding, not signal).
TIE = 1e-5


def to_gray(photos):
    """Luma of an RGB batch (one-channel input passes through), since edges are about brightness."""
    if photos.shape[1] == 1:
        return photos.float()
    luma_weights = photos.new_tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)
    return (photos.float() * luma_weights).sum(1, keepdim=True)  # (B, 1, H, W)


def gaussian_blur(gray, sigma):
    """Separable Gaussian blur; replicate padding, so the frame of a white background adds no
    edge."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=gray.dtype, device=gray.device)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    gray = F.conv2d(F.pad(gray, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(gray, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))


def sobel(gray):
    """Horizontal and vertical derivatives, scaled to intensity change per pixel."""
    kernel_x = gray.new_tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
    kernels = torch.stack([kernel_x, kernel_x.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    grads = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)  # (B, 2, H, W)
    return grads[:, :1], grads[:, 1:]  # d/dx (right), d/dy (down)


def non_max_suppression(magnitude, grad_x, grad_y):
    """Keep pixels that are a maximum along their gradient (4 quantized directions)."""
    angle = torch.rad2deg(torch.atan2(grad_y, grad_x)) % 180
    # 0: horizontal, 1: down-right, 2: vertical, 3: down-left
    sector = ((angle + 22.5) // 45).long() % 4
    keep = torch.zeros_like(magnitude, dtype=torch.bool)
    around = neighbours(magnitude)
    for index, (dy, dx) in enumerate([(0, 1), (1, 1), (1, 0), (1, -1)]):
        ahead, behind = around[dy, dx], around[-dy, -dx]
        # >= on one side, > on the other: a ridge two pixels wide keeps exactly one of them;
        # the tolerance makes that choice ignore rounding noise, so straight edges stay straight
        keep |= (sector == index) & (magnitude >= ahead - TIE) & (magnitude > behind + TIE)
    return keep


def label_components(mask):
    """8-connected components of mask (B, 1, H, W): each pixel gets the largest flat index in its
    component."""
    # hook and compress (Shiloach-Vishkin style): each round links every tree to the largest tree
    # touching it, then pointer jumping flattens the trees; rounds grow like log(component size),
    # where plain max propagation would need one round per pixel of the longest line
    parent = torch.arange(mask.numel(), device=mask.device)  # (B*H*W,), outside pixels stay roots
    inside = mask.flatten().nonzero().squeeze(1)  # flat indices of mask pixels
    for _ in range(mask.numel()):  # the bound is never reached: each round merges trees or stops
        roots = torch.where(mask, parent.view_as(mask), -1).int()  # int32 halves the memory traffic
        padded = F.pad(roots, (1, 1, 1, 1), value=-1)
        rows = torch.maximum(torch.maximum(padded[..., :, :-2], padded[..., :, 1:-1]),
                             padded[..., :, 2:])
        largest_near = torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]),
                                     rows[..., 2:, :])
        hooked = parent.scatter_reduce(0, parent[inside], largest_near.flatten()[inside].long(),
                                       reduce="amax")
        for _ in range(mask.numel().bit_length() + 1):  # each jump halves every path to a root
            grandparent = hooked[hooked[inside]]
            if torch.equal(grandparent, hooked[inside]):
                break
            hooked[inside] = grandparent
        if torch.equal(hooked, parent):
            break
        parent = hooked
    return parent.view_as(mask)


def component_sums(labels, values):
    """Per-pixel sum of values over the pixel's component (labels from label_components)."""
    flat_labels = labels.flatten()
    sums = torch.bincount(flat_labels, weights=values.flatten().float(), minlength=labels.numel())
    return sums[flat_labels].view_as(labels)  # (B, 1, H, W)


def hysteresis(strong, weak):
    """Keep weak edges 8-connected to a strong one (the fixed point of 3x3 dilation inside weak)."""
    labels = label_components(weak)
    return weak & (component_sums(labels, strong) > 0)


@torch.no_grad()
def detect_edges(photos, sigma=2.0, low=0.1, high=0.2, min_pixels=12):
    """Bool edge mask (B, 1, H, W) of photos (B, 3 or 1, H, W) in [0, 1]: Canny, thinned, cleaned.

    sigma: blur in pixels; 2.0 at 256 px keeps outlines and big seams but not fine texture.
    low, high: hysteresis thresholds as fractions of each image's strongest gradient, so shoes of
    any contrast give similar line density; 0.1 / 0.2 is the usual 1:2 Canny ratio.
    min_pixels: smaller 8-connected fragments are dropped, as edges2shoes did to HED specks.
    """
    gray = gaussian_blur(to_gray(photos), sigma)  # (B, 1, H, W)
    grad_x, grad_y = sobel(gray)
    magnitude = torch.hypot(grad_x, grad_y)  # (B, 1, H, W)
    ridge = non_max_suppression(magnitude, grad_x, grad_y)
    peak = magnitude.amax(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    strong = ridge & (magnitude >= (high * peak).clamp(min=MIN_STRONG_GRADIENT))
    weak = ridge & (magnitude >= low * peak) & (magnitude > 0)
    edges = thin(hysteresis(strong, weak))
    sizes = component_sums(label_components(edges), edges)
    return edges & (sizes >= min_pixels)


def draw_sketch(edges):
    """Bool edges (B, 1, H, W) -> float sketch (B, 3, H, W): black lines on white."""
    return (~edges).float().repeat(1, 3, 1, 1)


def photo_to_sketch(photos, **edge_options):
    """Photos (B, 3, H, W) in [0, 1] -> edges2shoes-style sketches (B, 3, H, W) in [0, 1]."""
    return draw_sketch(detect_edges(photos, **edge_options))



def sketch_pixels(photos) -> np.ndarray:
    """uint8 photos (B, H, W, 3), numpy or a tensor on any device -> uint8 sketches (B, H, W, 3) on
    the CPU.
    On a CPU the edge ops, many small element-wise kernels, run on one thread: it beats several by
    far when the cores are shared (1.3 s against 4-6 s per batch of 32 on 2 busy cores)."""
    photos = torch.as_tensor(photos)
    threads = torch.get_num_threads()
    if photos.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        # (B, 3, H, W) in [0, 1]
        sketches = photo_to_sketch(photos.permute(0, 3, 1, 2).float() / 255)
    finally:
        torch.set_num_threads(threads)
    return (sketches * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()

if __name__ == "__main__":
    import numpy as np
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo")
    parser.add_argument("sketch")
    args = parser.parse_args()
    from dataset import load_rgb  # the one opener of images given (formats, cap, 16 bits)
    photo = torch.from_numpy(np.array(load_rgb(args.photo))).permute(2, 0, 1)
    sketch = photo_to_sketch(photo[None] / 255.0)[0]  # (3, H, W)
    Image.fromarray((sketch.permute(1, 2, 0) * 255).byte().numpy()).save(args.sketch)
    print(f"wrote {args.sketch}")
