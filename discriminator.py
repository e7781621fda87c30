"""The network that judges G's output: the pix2pix PatchGAN discriminator (Isola et al. 2017,
appendix 6.1.2).

    from discriminator import PatchDiscriminator, build_discriminator
    D = PatchDiscriminator(in_ch=6, ndf=64, n_layers=3)   # 2,768,705 parameters
    logits = D(torch.cat([sketch, photo], dim=1))         # (B, 1, 30, 30) for 256×256 pairs
    # a WGAN-GP critic with spectral norm
    critic = PatchDiscriminator(norm="none", spectral_norm=True)
    D = build_discriminator(cfg)                          # the one a Config describes

C64-C128-C256-C512 then a 1-channel conv, 4×4 kernels. Each logit judges one 70×70 patch of the pair
as real or fake; the loss averages them, so D models high frequencies and L1 handles the rest.
"""

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm as add_spectral_norm

from config import Config
from generator import init_weights  # the same N(0, 0.02) init as the generator

NORMS_D = ("batch", "instance", "none")


class PatchDiscriminator(nn.Module):
    """n_layers stride-2 convs, one stride-1 conv, then a 1-channel logit map; n_layers=3 gives
    70×70 patches.

    norm: batch (the paper), instance (non-affine, per image) or none. A WGAN-GP critic needs
    instance or none: its gradient penalty is per sample, and batch norm would mix the samples of a
    batch.
    spectral_norm: divide every conv's weight by its largest singular value (Miyato et al. 2018),
    estimated by one power iteration per training forward pass.
    """

    def __init__(self, in_ch: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                 spectral_norm: bool = False):
        super().__init__()
        if norm not in NORMS_D:
            raise ValueError(f"norm: must be one of {', '.join(NORMS_D)}, got {norm!r}")
        # First layer: no batch norm (paper); it keeps its bias because no norm follows.
        layers = [nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = ndf
        for i in range(1, n_layers + 1):
            # the last C512 keeps the resolution (30×30 output at 256)
            stride = 2 if i < n_layers else 1
            new_width = ndf * min(2**i, 8)
            # A bias only where no norm follows: batch norm and (non-affine) instance norm
            # cancel it.
            layers.append(nn.Conv2d(width, new_width, 4, stride=stride, padding=1,
                                    bias=norm == "none"))
            if norm != "none":
                layers.append(nn.BatchNorm2d(new_width) if norm == "batch"
                              else nn.InstanceNorm2d(new_width))
            layers.append(nn.LeakyReLU(0.2))
            width = new_width
        # raw logits: the loss applies any sigmoid
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)
        # after the init: the parametrization keeps the initialized weight as its original
        if spectral_norm:
            for k, layer in enumerate(self.net):
                if isinstance(layer, nn.Conv2d):
                    self.net[k] = add_spectral_norm(layer)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.net(pair)  # (B, 6, H, W) -> (B, 1, H/8 - 2, W/8 - 2)


def build_discriminator(cfg: Config) -> PatchDiscriminator:
    """The discriminator (critic) a config describes; the one place mapping config fields to it."""
    return PatchDiscriminator(in_ch=6, ndf=cfg.ndf, n_layers=cfg.n_layers_d, norm=cfg.norm_d,
                              spectral_norm=cfg.spectral_norm)
