"""The losses of the GAN step and the feature networks they compare images with: the one home that
training, every model family and the evaluation import.

    from losses import loss_d_of, loss_g_gan_of, gradient_penalty, VGGFeatures
    loss_d = loss_d_of("bce", D(real_pair), D(fake_pair))   # D's loss, halved as in the paper
    loss_g_gan = loss_g_gan_of("bce", D(fake_pair))          # G's adversarial term
    # torchvision's vgg19 state dict, never downloaded
    vgg = VGGFeatures("vgg19.pth")
    loss = vgg.distance(fake_photo, photo)                   # weighted L1 between feature maps
    # torchvision's vgg16 state dict: the cosine similarity of Lu et al.'s completion family
    similarity = VGG16Features("vgg16.pth").cosine(fake_photo, photo)   # (B,)

gan_loss names a system's objective: bce (the paper), lsgan, hinge or wgan-gp (with
gradient_penalty).
"""

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from config import first_line
from save import safe_load


# ---------------------------------------------------------------------------------- GAN losses

def loss_d_of(gan_loss: str, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """D's (the critic's) loss on its logits for real and fake pairs, without any gradient
    penalty."""
    if gan_loss == "bce":  # real -> 1, fake -> 0; halved, as in the paper, to slow D relative to G
        return 0.5 * (F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
                      + F.binary_cross_entropy_with_logits(logits_fake,
                                                           torch.zeros_like(logits_fake)))
    # means in fp32 under autocast
    logits_real, logits_fake = logits_real.float(), logits_fake.float()
    if gan_loss == "lsgan":  # least squares to the same targets (Mao et al. 2017), halved like bce
        return 0.5 * (F.mse_loss(logits_real, torch.ones_like(logits_real))
                      + F.mse_loss(logits_fake, torch.zeros_like(logits_fake)))
    if gan_loss == "hinge":  # real pushed above +1, fake below -1 (Lim & Ye 2017; Miyato 2018)
        return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()
    if gan_loss == "wgan-gp":  # the critic's estimate of -W(real, fake): fake scores down, real up
        return logits_fake.mean() - logits_real.mean()
    raise ValueError(f"gan_loss: unknown {gan_loss!r}")


def loss_g_gan_of(gan_loss: str, logits_fake: torch.Tensor) -> torch.Tensor:
    """G's adversarial loss on D's logits for its fake pairs."""
    if gan_loss == "bce":  # the non-saturating loss: make D call the fake real
        return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))
    if gan_loss == "lsgan":
        return F.mse_loss(logits_fake.float(), torch.ones_like(logits_fake, dtype=torch.float32))
    if gan_loss in ("hinge", "wgan-gp"):  # raise the critic's score of the fake
        return -logits_fake.float().mean()
    raise ValueError(f"gan_loss: unknown {gan_loss!r}")


def gradient_penalty(D, real_pair: torch.Tensor, fake_pair: torch.Tensor, scaler,
                     autocast) -> torch.Tensor:
    """WGAN-GP's penalty E[(‖∇ₓ D(x̂)‖₂ - 1)²] (Gulrajani et al. 2017) on x̂ = ε·real + (1 - ε)·fake
    pairs, one ε ~ U(0, 1) per sample. D(x̂) of a sample is the mean of its patch scores, the value
    the losses use; the gradient is taken w.r.t. the whole pair (sketch and photo channels).
    create_graph=True keeps the gradient differentiable, so the penalty's own backward reaches D's
    weights (a double backward)."""
    D = getattr(D, "_orig_mod", D)  # the plain module: torch.compile has no double backward
    eps = torch.rand(real_pair.shape[0], 1, 1, 1, device=real_pair.device, dtype=real_pair.dtype)
    mixed = (eps * real_pair + (1 - eps) * fake_pair.detach()).requires_grad_(True)  # (B, 6, H, W)
    with autocast:
        scores = D(mixed).float().flatten(1).mean(1)  # (B,): one score a sample, none mixed
    # under fp16 the GradScaler scales the loss: scale here too, then unscale (small gradients live)
    (grad,) = torch.autograd.grad(scaler.scale(scores.sum()), mixed, create_graph=True)
    # the scale as a device tensor (1 when the scaler is off): get_scale() would sync every step
    grad = grad.float() / scaler.scale(torch.ones((), device=grad.device))
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


# ---------------------------------------------------------------------------------- perceptual loss

# VGG19's convolutional part as torchvision numbers it (features.N): widths, "M" a 2×2 max pool
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512)
# The layers compared (their index in features) and their weights: relu1_1 ... relu5_1 with 1/32
# ... 1, as pix2pixHD and SPADE use (Wang et al. 2018): the first ReLU of each scale, edges up to
# object parts, deeper counting more.
VGG_LAYERS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}
VGG_WEIGHTS = {"relu1_1": 1 / 32, "relu2_1": 1 / 16, "relu3_1": 1 / 8, "relu4_1": 1 / 4,
               "relu5_1": 1.0}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def vgg_layers(layout) -> list:
    """VGG's convolutional part as torchvision numbers it (features.N): 3×3 conv + ReLU per width,
    a 2×2 max pool per "M"."""
    layers, width = [], 3
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(width, item, 3, padding=1), nn.ReLU()]
            width = item
    return layers


class VGGFeatures(nn.Module):
    """Frozen VGG19 up to relu5_1, loaded from torchvision's vgg19 state dict file (features.*).

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
        layers = vgg_layers(VGG19_LAYOUT)
        self.features = nn.Sequential(*layers[:max(VGG_LAYERS.values()) + 1])  # up to relu5_1
        try:
            state = safe_load(path, "file")
        except ValueError as e:
            raise ValueError(f"vgg_weights {e}") from None
        try:
            state = {k.removeprefix("features."): v for k, v in state.items()
                     if k.startswith("features.")}
            state = {k: v for k, v in state.items() if int(k.split(".")[0]) < len(self.features)}
            self.features.load_state_dict(state)
        except Exception as e:  # not a file torch can read safely, or not a vgg19 state dict
            raise ValueError(f"vgg_weights {path}: not torchvision's vgg19 state dict "
                             f"({first_line(e)})") from None
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


# ------------------------------------------------------------------ VGG16 cosine similarity

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")
VGG16_SIZE = 224  # the resolution VGG16 was trained at: images are resized to it


class VGG16Features(nn.Module):
    """Frozen VGG16 without fc2: the 4096 features of its first fully connected layer (after its
    ReLU; Keras' fc1, torchvision's classifier.0-1) per image, as Lu et al.'s reimplementation
    compares real and generated photos by their cosine similarity.

    From torchvision's vgg16 state dict file (vgg16-397923af.pth), which the user supplies: never
    downloaded. Images come in on [-1, 1], are mapped to ImageNet's normalisation and resized to
    224×224.
    """

    def __init__(self, weights_path):
        """weights_path: the file; None leaves the weights to load_torchvision (a state dict held
        in memory)."""
        super().__init__()
        path = Path(weights_path or "")
        if weights_path is not None and (not str(weights_path) or not path.is_file()):
            raise FileNotFoundError(f"vgg16 weights {str(weights_path)!r}: no such file (never "
                                    "downloaded: give torchvision's vgg16 state dict, "
                                    "vgg16-397923af.pth)")
        self.features = nn.Sequential(*vgg_layers(VGG16_LAYOUT))
        self.pool = nn.AdaptiveAvgPool2d(7)  # (B, 512, 7, 7) at 224×224 already
        self.fc1 = nn.Linear(512 * 7 * 7, 4096)
        try:
            if weights_path is not None:
                self.load_torchvision(safe_load(path, "file"))
        except Exception as e:  # not a file torch can read safely, or not a vgg16 state dict
            raise ValueError(f"vgg16 weights {path}: not torchvision's vgg16 state dict "
                             f"({first_line(e)})") from None
        self.requires_grad_(False)  # no dropout or norm before fc1: no mode to mind
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def load_torchvision(self, state: dict) -> None:
        """Take features.* and classifier.0.* of torchvision's vgg16 state dict; the rest (fc2 and
        the classifier) is not used."""
        self.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                                       if k.startswith("features.")})
        self.fc1.load_state_dict({k.removeprefix("classifier.0."): v for k, v in state.items()
                                  if k.startswith("classifier.0.")})

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images (B, 3, H, W) -> (B, 4096) features."""
        h = ((image.float() + 1) / 2 - self.mean) / self.std
        h = F.interpolate(h, size=(VGG16_SIZE, VGG16_SIZE), mode="bilinear", align_corners=False)
        return F.relu(self.fc1(self.pool(self.features(h)).flatten(1)))

    def cosine(self, fake_photo: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
        """(B,): the cosine similarity of each generated photo's features and its real photo's."""
        return F.cosine_similarity(self(fake_photo).double(), self(photo).double(), dim=1)
