"""The pix2pix discriminator: a conditional 70×70 PatchGAN (Isola et al. 2017, appendix 6.1.2).

    from discriminator import PatchDiscriminator
    D = PatchDiscriminator(in_ch=6, ndf=64, n_layers=3)   # 2,768,705 parameters
    logits = D(torch.cat([sketch, photo], dim=1))         # (B, 1, 30, 30) for 256×256 pairs

C64-C128-C256-C512 then a 1-channel conv, 4×4 kernels. Each logit judges one 70×70 patch of the pair
as real or fake; the loss averages them, so D models high frequencies and L1 handles the rest.
"""

import torch
import torch.nn as nn

from generator import init_weights  # the same N(0, 0.02) init as the generator


class PatchDiscriminator(nn.Module):
    """n_layers stride-2 convs, one stride-1 conv, then a 1-channel logit map; n_layers=3 gives 70×70 patches."""

    def __init__(self, in_ch: int = 6, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        # First layer: no batch norm (paper); it keeps its bias because no norm follows.
        layers = [nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = ndf
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1  # the last C512 keeps the resolution (30×30 output at 256)
            new_width = ndf * min(2**i, 8)
            layers += [nn.Conv2d(width, new_width, 4, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(new_width), nn.LeakyReLU(0.2)]
            width = new_width
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))  # raw logits: BCEWithLogits applies the sigmoid
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.net(pair)  # (B, 6, H, W) -> (B, 1, H/8 - 2, W/8 - 2)
