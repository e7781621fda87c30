"""The pix2pix generator: UNet-256 (Isola et al. 2017, appendix 6.1.1).

    from generator import UNetGenerator
    G = UNetGenerator(in_ch=3, out_ch=3, ngf=64, num_downs=8)   # 54,413,955 parameters
    fake_photo = G(sketch)                                      # (B, 3, 256, 256) in [-1, 1]

Encoder C64-C128-C256-C512-C512-C512-C512-C512, decoder CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128
(the decoder widths count the skip concatenation), 4×4 convolutions with stride 2 throughout.
"""

import contextlib

import torch
import torch.nn as nn


def init_weights(module: nn.Module) -> None:
    """The paper's init: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases zero."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def down(in_ch: int, out_ch: int, norm: bool) -> nn.Sequential:
    """Encoder block: LeakyReLU(0.2), 4×4 stride-2 conv, batch norm; halves H and W."""
    layers = [nn.LeakyReLU(0.2), nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False)]
    return nn.Sequential(*layers, nn.BatchNorm2d(out_ch)) if norm else nn.Sequential(*layers)


def up(in_ch: int, out_ch: int, dropout: float) -> nn.Sequential:
    """Decoder block: ReLU, 4×4 stride-2 transposed conv, batch norm, optional dropout; doubles H and W."""
    layers = [nn.ReLU(), nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
              nn.BatchNorm2d(out_ch)]
    return nn.Sequential(*layers, nn.Dropout(dropout)) if dropout > 0 else nn.Sequential(*layers)


class UNetGenerator(nn.Module):
    """Encoder-decoder with skips between mirrored layers; num_downs=8 is UNet-256."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, ngf: int = 64, num_downs: int = 8, dropout: float = 0.5):
        super().__init__()
        assert num_downs >= 5, "UNet needs at least 5 downsamplings (C64-C128-C256-C512-C512)"
        widths = [ngf * min(2**i, 8) for i in range(num_downs)]  # 64, 128, 256, 512, 512, ...
        # Encoder. No norm on the first layer (paper) nor on the innermost one: at 1×1 with batch 1,
        # batch norm would zero the bottleneck. No bias where batch norm follows (it would cancel).
        self.downs = nn.ModuleList([nn.Conv2d(in_ch, widths[0], 4, stride=2, padding=1, bias=False)])
        for i in range(1, num_downs):
            self.downs.append(down(widths[i - 1], widths[i], norm=i < num_downs - 1))
        # Decoder, innermost first. Every block but the first sees its input concatenated with the
        # mirrored encoder output. Dropout in the first three blocks is pix2pix's only noise source.
        self.ups = nn.ModuleList()
        for j, i in enumerate(range(num_downs - 1, 0, -1)):
            in_width = widths[i] if j == 0 else 2 * widths[i]
            self.ups.append(up(in_width, widths[i - 1], dropout if j < 3 else 0.0))
        self.final = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * widths[0], out_ch, 4, stride=2, padding=1),
                                   nn.Tanh())
        self.apply(init_weights)

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        h = sketch  # (B, in_ch, H, W)
        skips = []
        for block in self.downs:
            h = block(h)
            skips.append(h)  # (B, widths[i], H / 2^(i+1), W / 2^(i+1))
        skips.pop()  # the bottleneck (B, 8·ngf, H / 2^num_downs, W / 2^num_downs) feeds the decoder directly
        for block in self.ups:
            h = torch.cat([block(h), skips.pop()], dim=1)  # upsample, then join the mirrored encoder output
        return self.final(h)  # (B, out_ch, H, W) in [-1, 1]


@contextlib.contextmanager
def sampling_mode(generator: nn.Module, paper: bool = True):
    """Set G up for making images, then restore its training state.

    paper=True is the paper's test-time behaviour: dropout stays on and batch norm uses the statistics
    of the batch at hand, as during training (the running averages are neither used nor updated).
    paper=False is ordinary eval mode: no dropout, running statistics, deterministic output.
    """
    was_training = generator.training
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracked = [m.track_running_stats for m in norms]
    generator.train(paper)
    if paper:
        for m in norms:
            m.track_running_stats = False  # train-mode batch norm with no running-stat update
    try:
        with torch.no_grad():
            yield generator
    finally:
        for m, t in zip(norms, tracked):
            m.track_running_stats = t
        generator.train(was_training)


def translate(generator: nn.Module, sketch: torch.Tensor, paper: bool = True) -> torch.Tensor:
    """Sketches (B, 3, H, W) -> photos, as at test time. In paper mode each image runs alone, since
    batch norm then normalizes with the batch's statistics and a photo must not depend on its neighbours."""
    with sampling_mode(generator, paper):
        if paper:
            return torch.cat([generator(one[None]) for one in sketch])
        return generator(sketch)
