"""The pix2pix generator: UNet-256 (Isola et al. 2017, appendix 6.1.1), and the ResNet generator.

    from generator import UNetGenerator, ResNetGenerator, build_generator
    G = UNetGenerator(in_ch=3, out_ch=3, ngf=64, num_downs=8)   # 54,413,955 parameters
    fake_photo = G(sketch)                                      # (B, 3, 256, 256) in [-1, 1]
    G = ResNetGenerator(in_ch=3, out_ch=3, ngf=64, n_blocks=9)  # 11,383,427 parameters (batch norm)
    G = build_generator(cfg)                                    # the one a Config describes
    fake_photos = translate(G, sketches, paper=True, seeds=[0, 1])  # the paper's test, batched

UNet: encoder C64-C128-C256-C512-C512-C512-C512-C512, decoder
CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128 (the decoder widths count the skip concatenation),
4×4 convolutions with stride 2 throughout.
ResNet (Johnson et al. 2016, as pix2pix's and CycleGAN's code build it): c7s1-64, d128, d256, N
residual blocks R256, u128, u64, c7s1-3, reflection padding around the 7×7 and the residual 3×3
convolutions.
upsample="resize" replaces every transposed convolution of either generator by nearest-neighbour ×2
upsampling then a 3×3 convolution (Odena et al. 2016: no checkerboard artifacts).
"""

import contextlib
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from config import DROPOUT_BLOCKS, HINT_CHANNELS, Config


def init_weights(module: nn.Module) -> None:
    """The paper's init: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases zero."""
    if getattr(module, "weight", None) is not None and module.weight.is_meta:
        return  # no values to set on the meta device (save.check_fits), and its normal_ is slow
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
    """Decoder block: ReLU, 4×4 stride-2 transposed conv, batch norm, optional dropout; doubles H
    and W."""
    layers = [nn.ReLU(), nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
              nn.BatchNorm2d(out_ch)]
    return nn.Sequential(*layers, nn.Dropout(dropout)) if dropout > 0 else nn.Sequential(*layers)


UPSAMPLES = ("convtranspose", "resize")
NORMS_G = ("batch", "instance")  # the ResNet generator's norms


def check_upsample(upsample: str) -> None:
    """A ValueError naming the field unless upsample is one of UPSAMPLES."""
    if upsample not in UPSAMPLES:
        raise ValueError(f"upsample: must be one of {', '.join(UPSAMPLES)}, got {upsample!r}")


def resize_conv(in_ch: int, out_ch: int, bias: bool) -> list:
    """Nearest-neighbour ×2, then a 3×3 conv: doubles H and W like a stride-2 transposed conv, but
    every output pixel sees the same number of input pixels, so no checkerboard pattern."""
    return [nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias)]


def resize_convs(block: nn.Sequential) -> nn.Sequential:
    """block with each stride-2 transposed conv replaced by resize_conv (same widths, same bias
    rule)."""
    layers = []
    for layer in block:
        if isinstance(layer, nn.ConvTranspose2d):
            layers += resize_conv(layer.in_channels, layer.out_channels,
                                  bias=layer.bias is not None)
        else:
            layers.append(layer)
    return nn.Sequential(*layers)


class UNetGenerator(nn.Module):
    """Encoder-decoder with skips between mirrored layers; num_downs=8 is UNet-256."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, ngf: int = 64, num_downs: int = 8,
                 dropout: float = 0.5, dropout_blocks: str = "paper",
                 upsample: str = "convtranspose"):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs: UNet needs at least 5 downsamplings "
                             f"(C64-C128-C256-C512-C512), got {num_downs}")
        if dropout_blocks not in DROPOUT_BLOCKS:
            raise ValueError(f"dropout_blocks: must be one of {', '.join(DROPOUT_BLOCKS)}, "
                             f"got {dropout_blocks!r}")
        check_upsample(upsample)
        widths = [ngf * min(2**i, 8) for i in range(num_downs)]  # 64, 128, 256, 512, 512, ...
        # Encoder. No norm on the first layer (paper) nor on the innermost one: at 1×1 with batch 1,
        # batch norm would zero the bottleneck. No bias where batch norm follows (it would cancel).
        self.downs = nn.ModuleList([nn.Conv2d(in_ch, widths[0], 4, stride=2, padding=1,
                                              bias=False)])
        for i in range(1, num_downs):
            self.downs.append(down(widths[i - 1], widths[i], norm=i < num_downs - 1))
        # Decoder, innermost first. Every block but the first sees its input concatenated with the
        # mirrored encoder output. Dropout in the first three blocks is pix2pix's only noise source;
        # the authors' PyTorch code drops in the 8·ngf blocks after the innermost one instead.
        self.ups = nn.ModuleList()
        dropped = range(3) if dropout_blocks == "paper" else range(1, num_downs - 4)
        for j, i in enumerate(range(num_downs - 1, 0, -1)):
            in_width = widths[i] if j == 0 else 2 * widths[i]
            self.ups.append(up(in_width, widths[i - 1], dropout if j in dropped else 0.0))
        self.final = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(2 * widths[0], out_ch, 4, stride=2, padding=1), nn.Tanh())
        # the same network with each transposed conv swapped, before the init
        if upsample == "resize":
            self.ups = nn.ModuleList(resize_convs(block) for block in self.ups)
            self.final = resize_convs(self.final)
        self.apply(init_weights)

    def forward(self, sketch: torch.Tensor, film: tuple = None) -> torch.Tensor:
        h = sketch  # (B, in_ch, H, W)
        skips = []
        for block in self.downs:
            h = block(h)
            skips.append(h)  # (B, widths[i], H / 2^(i+1), W / 2^(i+1))
        # the bottleneck (B, 8·ngf, H / 2^num_downs, W / 2^num_downs) feeds the decoder directly
        skips.pop()
        if film is not None:  # (scale - 1, shift), each (B, 8·ngf): global colour hints
            h = h * (1 + film[0][..., None, None]) + film[1][..., None, None]
        for block in self.ups:
            # upsample, then join the mirrored encoder output
            h = torch.cat([block(h), skips.pop()], dim=1)
        return self.final(h)  # (B, out_ch, H, W) in [-1, 1]


class ResidualBlock(nn.Module):
    """x + (pad, 3×3 conv, norm, ReLU, [dropout], pad, 3×3 conv, norm)(x): the block learns a
    change."""

    def __init__(self, width: int, norm, bias: bool, dropout: float):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=bias), norm(width),
                  nn.ReLU()]
        # pix2pix's code keeps dropout in the ResNet blocks too (its --no_dropout is off)
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=bias), norm(width)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetGenerator(nn.Module):
    """c7s1-ngf, d2ngf, d4ngf, n_blocks × R4ngf, u2ngf, ungf, c7s1-out_ch, Tanh; H and W divisible
    by 4.

    norm="batch" is pix2pix's choice (convs before a norm have no bias: it would cancel);
    norm="instance" is CycleGAN's (non-affine, so those convs keep their bias).
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, ngf: int = 64, n_blocks: int = 9,
                 dropout: float = 0.5, norm: str = "batch", upsample: str = "convtranspose"):
        super().__init__()
        if norm not in NORMS_G:
            raise ValueError(f"norm: must be one of {', '.join(NORMS_G)}, got {norm!r}")
        check_upsample(upsample)
        # InstanceNorm2d: non-affine
        norm_layer = nn.BatchNorm2d if norm == "batch" else nn.InstanceNorm2d
        bias = norm == "instance"
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=bias), norm_layer(ngf), nn.ReLU(),
            nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1, bias=bias), norm_layer(2 * ngf),
            nn.ReLU(),
            nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=2, padding=1, bias=bias), norm_layer(4 * ngf),
            nn.ReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(4 * ngf, norm_layer, bias, dropout)
                                      for _ in range(n_blocks)])
        decoder = []
        for width in (4 * ngf, 2 * ngf):
            if upsample == "resize":
                decoder += resize_conv(width, width // 2, bias)
            else:
                decoder.append(nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1,
                                                  output_padding=1, bias=bias))
            decoder += [norm_layer(width // 2), nn.ReLU()]
        self.decoder = nn.Sequential(*decoder)
        self.final = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh())
        self.apply(init_weights)

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        h = self.encoder(sketch)  # (B, 4·ngf, H/4, W/4)
        h = self.blocks(h)  # same shape
        h = self.decoder(h)  # (B, ngf, H, W)
        return self.final(h)  # (B, out_ch, H, W) in [-1, 1]


@contextlib.contextmanager
def sampling_mode(generator: nn.Module, paper: bool = True):
    """Set G up for making images, then restore its training state.

    paper=True is the paper's test-time behaviour: dropout stays on and batch norm uses the
    statistics of the batch at hand, as during training (the running averages are neither used nor
    updated).
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


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Sample under seed (the same dropout masks every time), leaving the caller's random streams as
    they were: validation and evaluation must not shift a training run's or a user's randomness."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class ImageNorm(nn.Module):
    """Batch norm as it acts on a batch of one, for every image of a batch: instance norm with the
    batch norm's own affine parameters (shared, not copied); running statistics neither used nor
    updated."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # instance_norm is batch_norm over (1, B·C, H, W): at B = 1 the very same kernel
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


class ImageDropout(nn.Module):
    """Dropout with each image's mask drawn from that image's own random generator.

    A mask is drawn as nn.Dropout draws it (bernoulli(1 - p) / (1 - p), in row-major order) but on
    the CPU in float32 whatever the input's device, dtype or memory layout, so a seed gives the same
    mask everywhere. Masks can instead be given (export: they are the program's inputs).
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        # one torch.Generator per image, set by PaperGenerator.forward
        self.generators: list | None = None
        self.mask = None  # or a (B, C, H, W) mask already scaled by 1 / (1 - p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        if mask is None:
            mask = torch.stack([draw_mask(x.shape[1:], self.p, g) for g in self.generators])
        return x * mask.to(x.device, x.dtype)


class PaperGenerator(nn.Module):
    """G as the paper runs it at test time, for a batch: each image normalized by its own
    statistics and given its own dropout masks, so that a batch of N gives what N runs of one
    image give (the batch norm's running statistics are never touched).

    Made by paper_mode(G); shares G's parameters. forward(sketch, seeds) seeds image i's noise with
    seeds[i]; forward(sketch, masks=[...]) takes the masks instead (one per dropout layer, in
    forward order, from draw_masks).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.dropouts = [m for m in net.modules() if isinstance(m, ImageDropout)]

    def forward(self, sketch: torch.Tensor, seeds=None, masks=None) -> torch.Tensor:
        if masks is None:
            generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        for k, layer in enumerate(self.dropouts):
            layer.generators, layer.mask = (generators, None) if masks is None else (None, masks[k])
        try:
            return self.net(sketch)
        finally:
            for layer in self.dropouts:
                layer.generators = layer.mask = None


def paper_mode(generator: nn.Module) -> PaperGenerator:
    """G for paper-mode sampling on a batch: its batch norms become ImageNorm and its dropouts
    ImageDropout in a copy of the containers around them; every other module, parameter and buffer
    is G's own (cheap, and it follows G's training)."""
    if isinstance(generator, PaperGenerator):
        return generator
    return PaperGenerator(_paper_layers(generator))


def _paper_layers(module: nn.Module) -> nn.Module:
    """module with every batch norm (synchronized ones too) and dropout below it in per-image form;
    module itself where there is none."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return ImageNorm(module)
    if isinstance(module, nn.Dropout):
        return ImageDropout(module.p)
    children = {name: child if child is None else _paper_layers(child)
                for name, child in module._modules.items()}
    if all(children[name] is child for name, child in module._modules.items()):
        return module
    clone = copy.copy(module)  # shares the parameters; a container of its own
    clone._modules = children
    return clone


def draw_mask(shape, p: float, generator: torch.Generator) -> torch.Tensor:
    """One image's dropout mask (shape), scaled by 1 / (1 - p): nn.Dropout's draw, on the CPU."""
    return torch.empty(shape).bernoulli_(1 - p, generator=generator).div_(1 - p)


def draw_masks(shapes, ps, seeds) -> list:
    """The masks PaperGenerator draws for these seeds: per dropout layer (activation shape (C, H, W)
    and rate p, in forward order) one (B, C, H, W) tensor; an exported paper-mode program takes
    them as inputs."""
    per_image = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(int(seed))
        per_image.append([draw_mask(shape, p, generator) for shape, p in zip(shapes, ps)])
    return [torch.stack(layer) for layer in zip(*per_image)]


def mask_shapes(model: PaperGenerator, height: int, width: int) -> list:
    """(C, H, W) of each dropout layer's input for a sketch of height × width (one dry run)."""
    shapes = []
    hooks = [layer.register_forward_pre_hook(lambda layer, inputs: shapes.append(
        tuple(inputs[0].shape[1:]))) for layer in model.dropouts]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width), seeds=[0])
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def translate(generator: nn.Module, sketch: torch.Tensor, paper: bool = True,
              seeds=None) -> torch.Tensor:
    """Sketches (B, 3, H, W) -> photos, as at test time. Paper mode (paper_mode): each image with
    its own batch statistics and its own dropout masks, from a generator seeded by seeds[i]
    (default: seeds drawn from torch's global generator), so no photo depends on its neighbours."""
    if not paper:
        with sampling_mode(generator, paper=False):
            return generator(sketch)
    if seeds is None:
        seeds = torch.randint(2**62, (len(sketch),)).tolist()
    with torch.no_grad():
        return paper_mode(generator)(sketch, seeds=seeds)


def fold_batchnorm(generator: nn.Module) -> nn.Module:
    """A copy of G for eval-mode sampling with every batch norm folded into the conv before it.

    Eval-mode batch norm is an affine map per channel, y = (x - mean) / sqrt(var + eps) * gamma +
    beta, so it merges into the preceding conv's weights and bias: the same outputs up to float
    rounding, one pass over each activation fewer. Dropout (off in eval mode) is dropped too, so the
    copy computes eval-mode G whatever its train() flag. Paper mode cannot use it: there batch norm
    needs each batch's statistics.
    Works on any G whose batch norms follow their conv inside an nn.Sequential (UNet and ResNet
    here); a norm it cannot fold (instance norm, or one not right after a conv) stays as it is.
    """
    folded = copy.deepcopy(generator).eval()
    _fold_children(folded)
    return folded


def _fold_children(module: nn.Module) -> None:
    """Fold every nn.Sequential below module, at any depth (ModuleLists and residual blocks
    included)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            child = _fold_block(child)
            setattr(module, name, child)
        _fold_children(child)


def _fold_block(block: nn.Sequential) -> nn.Sequential:
    """(..., conv, BatchNorm2d, ...) -> (..., conv with bias, ...), without Dropout."""
    layers, kept = list(block), []
    for layer in layers:
        if isinstance(layer, nn.Dropout):
            continue
        if (isinstance(layer, nn.BatchNorm2d) and kept
                and isinstance(kept[-1], (nn.Conv2d, nn.ConvTranspose2d))):
            kept[-1] = _fold_conv(kept[-1], layer)
            continue
        kept.append(layer)
    return nn.Sequential(*kept)


@torch.no_grad()
def _fold_conv(conv: nn.Module, norm: nn.BatchNorm2d) -> nn.Module:
    """conv followed by eval-mode norm, as one conv."""
    if conv.groups != 1:
        raise ValueError(f"groups: folding needs an ungrouped conv, got groups {conv.groups}")
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # (C_out,)
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    # Conv2d weights are (out, in, kH, kW); ConvTranspose2d weights are (in, out, kH, kW).
    shape = (-1, 1, 1, 1) if isinstance(conv, nn.Conv2d) else (1, -1, 1, 1)
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter(conv.weight * scale.reshape(shape), requires_grad=False)
    fused.bias = nn.Parameter(bias, requires_grad=False)
    return fused


def for_inference(generator: nn.Module, paper: bool = True,
                  channels_last: bool = True) -> nn.Module:
    """G ready for sampling with translate() under torch.inference_mode(), before any tuning.

    Paper mode: paper_mode(G), which runs a whole batch at once with each image's own statistics
    and masks. Eval mode: a copy with batch norm folded into the convs, in channels_last (NHWC)
    layout unless told otherwise (~5% faster on a 2-core CPU, bench.py infer). tune.py picks the
    fastest setting for the machine at hand instead.
    """
    if paper:
        return paper_mode(generator)
    folded = fold_batchnorm(generator)
    return folded.to(memory_format=torch.channels_last) if channels_last else folded


def spread(hints: torch.Tensor) -> tuple:
    """(colour (B, C, H, W), near (B, 1, H, W)) of sparse hints (B, C + 1, H, W): C channels of
    colour·mask, then the mask. A normalized convolution (Knutsson & Westin 1993) with a Gaussian
    (σ = 1/8 of the image's longer side) plus a constant of the same mass: every pixel gets the
    colour of the hints near it, blending into the mean of all the hints far from them (0 with no
    hint at all), and near in [0, 1], how much of that is the nearby hints'. In float32."""
    height, width = hints.shape[2:]
    channels = hints.shape[1]
    sigma = max(height, width) / 8
    radius = min(int(3 * sigma), max(height, width) - 1)
    taps = torch.arange(-radius, radius + 1, device=hints.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1, 1).repeat(channels, 1, 1, 1)  # sum 1
    # sums of tiny weights: float32 under any autocast (none on the meta device)
    with torch.autocast(hints.device.type, enabled=False) if \
            torch.amp.is_autocast_available(hints.device.type) else contextlib.nullcontext():
        hints = hints.float()
        local = F.conv2d(hints, kernel, padding=(radius, 0), groups=channels)
        local = F.conv2d(local, kernel.transpose(2, 3), padding=(0, radius), groups=channels)
        total = local + hints.mean((2, 3), keepdim=True)  # the constant: the hints' mean
        weight = total[:, -1:]
        colour = total[:, :-1] / weight.clamp(min=1e-12)  # 0 / tiny = 0 with no hint at all
        near = local[:, -1:] / weight.clamp(min=1e-12)
    return colour, near


class HintSpread(nn.Module):
    """Colour hints made dense before G's first layer, with no parameters (spread): every pixel
    reads the colour of the hints near it, blending into the mean of all the hints far from them,
    and how near one is. A few dots then reach the whole shoe at once; from the sparse dots alone,
    G has to learn to carry a colour across the image, which a short training barely teaches.

    (B, 3 + 4, H, W): sketch, hint RGB (0 where none), hint mask -> (B, 3 + 4 + 4, H, W): those,
    the spread colour (0 with no hint at all) and its local weight in [0, 1] (near 1 on a hint,
    falling to 0 far from every hint, where the colour is the hints' mean)."""

    channels = 4  # what it adds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        colour, near = spread(x[:, 3:3 + HINT_CHANNELS])  # colour·mask, mask
        return torch.cat([x, colour.to(x.dtype), near.to(x.dtype)], dim=1)


class HintedGenerator(nn.Module):
    """A generator that reads colour hints (config.hints): HintSpread, then the network, whose
    first layer takes the sketch, the sparse hints and their spread form."""

    def __init__(self, net: nn.Module, global_width: int = 0):
        super().__init__()
        self.spread = HintSpread()
        self.net = net
        # global hints (Zhang et al. 2017): the hints' mean colour and whether there is any, as a
        # FiLM of the bottleneck's global_width channels; zero at first, so G starts as without
        self.film = nn.Linear(HINT_CHANNELS, 2 * global_width) if global_width else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.film is None:
            return self.net(self.spread(x))  # (B, 3 + 4, H, W) -> (B, 3, H, W)
        colour, mask = x[:, 3:6], x[:, 6:7]
        count = mask.sum((2, 3))  # (B, 1)
        given = torch.cat([colour.sum((2, 3)) / count.clamp(min=1), (count > 0).to(x.dtype)], 1)
        return self.net(self.spread(x), film=self.film(given).chunk(2, dim=1))


def build_generator(cfg: Config) -> torch.nn.Module:
    """The generator a config describes; the one place that maps config fields to its arguments."""
    # the sketch, then the colour hints (hints.py) and their spread form
    in_ch = 3 + (HINT_CHANNELS + HintSpread.channels if cfg.hints else 0)
    if cfg.generator == "resnet":
        net: nn.Module = ResNetGenerator(in_ch=in_ch, out_ch=3, ngf=cfg.ngf,
                                         n_blocks=cfg.resnet_blocks, dropout=cfg.dropout,
                                         norm=cfg.norm_g, upsample=cfg.upsample)
    else:
        net = UNetGenerator(in_ch=in_ch, out_ch=3, ngf=cfg.ngf, num_downs=cfg.num_downs,
                            dropout=cfg.dropout, dropout_blocks=cfg.dropout_blocks,
                            upsample=cfg.upsample)
    if not cfg.hints:
        return net
    if cfg.hint_global and cfg.generator != "unet":
        raise ValueError("hint_global: only the unet generator has a bottleneck to modulate")
    return HintedGenerator(net, cfg.ngf * min(2**(cfg.num_downs - 1), 8) if cfg.hint_global else 0)
