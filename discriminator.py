"""The networks that judge G's output: the pix2pix PatchGAN discriminator (Isola et al. 2017,
appendix 6.1.2) and the frozen VGG19 features of the perceptual loss.

    from discriminator import PatchDiscriminator, VGGFeatures
    D = PatchDiscriminator(in_ch=6, ndf=64, n_layers=3)   # 2,768,705 parameters
    logits = D(torch.cat([sketch, photo], dim=1))         # (B, 1, 30, 30) for 256×256 pairs
    # a WGAN-GP critic with spectral norm
    critic = PatchDiscriminator(norm="none", spectral_norm=True)
    # torchvision's vgg19 state dict, never downloaded
    vgg = VGGFeatures("vgg19.pth")
    loss = vgg.distance(fake_photo, photo)                # weighted L1 between feature maps

C64-C128-C256-C512 then a 1-channel conv, 4×4 kernels. Each logit judges one 70×70 patch of the pair
as real or fake; the loss averages them, so D models high frequencies and L1 handles the rest.
"""

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm as add_spectral_norm

from config import first_line
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
        assert norm in NORMS_D, f"norm must be one of {NORMS_D}, got {norm!r}"
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


# ---------------------------------------------------------------------------------- perceptual loss

# VGG19's convolutional part as torchvision numbers it ("features.N"): widths, "M" for a 2×2 max
# pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512)
# The layers compared and their weights: relu1_1 ... relu5_1 with 1/32 ... 1, as pix2pixHD and SPADE
# use (Wang et al. 2018): the first ReLU of each scale, edges up to object parts, deeper counting
# more.
# index in features
VGG_LAYERS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}
VGG_WEIGHTS = {"relu1_1": 1 / 32, "relu2_1": 1 / 16, "relu3_1": 1 / 8, "relu4_1": 1 / 4,
               "relu5_1": 1.0}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """Frozen VGG19 up to relu5_1, loaded from torchvision's vgg19 state dict file (features.*
    keys).

    Built here rather than with torchvision.models so the core needs no torchvision and never
    downloads: the user supplies the file (e.g. torchvision's vgg19-dcbb9e9d.pth). Images come in on
    G's [-1, 1] scale and are mapped to ImageNet's normalisation, as VGG was trained.
    """

    def __init__(self, weights_path):
        super().__init__()
        path = Path(weights_path)
        if not str(weights_path) or not path.is_file():
            raise FileNotFoundError(f"vgg_weights {str(weights_path)!r}: no such file; "
                                    "lambda_perceptual > 0 needs torchvision's vgg19 state dict "
                                    "(vgg19-dcbb9e9d.pth), never downloaded")
        layers, width = [], 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(width, item, 3, padding=1), nn.ReLU()]
                width = item
        self.features = nn.Sequential(*layers[:max(VGG_LAYERS.values()) + 1])  # up to relu5_1
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k.removeprefix("features."): v for k, v in state.items()
                     if k.startswith("features.")}
            state = {k: v for k, v in state.items() if int(k.split(".")[0]) < len(self.features)}
            self.features.load_state_dict(state)
        except Exception as e:  # not a file torch can read safely, or not a vgg19 state dict
            reason = first_line(e)
            raise ValueError(f"vgg_weights {path}: not torchvision's vgg19 state dict "
                             f"({reason})") from None
        # frozen; up to relu5_1 VGG19 has no norm nor dropout, so no mode to mind
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> dict:
        """[-1, 1] images (B, 3, H, W) -> {layer name: feature map}."""
        h = ((image + 1) / 2 - self.mean) / self.std
        wanted = {index: name for name, index in VGG_LAYERS.items()}
        out = {}
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in wanted:
                out[wanted[index]] = h
        return out

    def distance(self, fake_photo: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
        """The perceptual loss: sum over layers of weight × mean |VGG(fake) - VGG(real)|; G gets
        gradients."""
        fake_features = self(fake_photo)
        with torch.no_grad():
            real_features = self(photo)
        return sum(VGG_WEIGHTS[name]
                   * F.l1_loss(fake_features[name].float(), real_features[name].float())
                   for name in VGG_LAYERS)
