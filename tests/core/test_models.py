"""The networks match the paper: sizes, shapes, receptive field, init, dropout, test-time modes."""

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from config import Config
from discriminator import PatchDiscriminator, build_discriminator
from generator import (ResNetGenerator, UNetGenerator, build_generator, draw_masks,
                       fold_batchnorm, for_inference, mask_shapes, paper_mode, sampling_mode,
                       translate)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_reference_implementation():
    assert n_params(UNetGenerator(ngf=64, num_downs=8)) == 54_413_955
    assert n_params(PatchDiscriminator(in_ch=6, ndf=64, n_layers=3)) == 2_768_705


def test_generator_shapes_and_range():
    G = UNetGenerator(ngf=8, num_downs=8)
    fake = G(torch.randn(2, 3, 256, 256))
    assert fake.shape == (2, 3, 256, 256)
    assert fake.abs().max() <= 1.0  # Tanh output
    assert UNetGenerator(ngf=8, num_downs=7)(torch.randn(1, 3, 128, 128)).shape == (1, 3, 128, 128)


def test_generator_layout_is_the_papers():
    G = UNetGenerator(ngf=64, num_downs=8)
    convs = [m for m in G.downs.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    # Batch norm on every encoder layer but the first and the innermost.
    has_norm = [any(isinstance(m, nn.BatchNorm2d) for m in block.modules()) for block in G.downs]
    assert has_norm == [False] + [True] * 6 + [False]
    # Decoder input widths count the skip concatenation: 512, then 1024 ×4, 512, 256, 128.
    ups = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [u.in_channels for u in ups] == [512, 1024, 1024, 1024, 1024, 512, 256, 128]
    # Dropout 0.5 in exactly the first three decoder blocks (CD512-CD1024-CD1024).
    dropouts = [[m.p for m in block.modules() if isinstance(m, nn.Dropout)] for block in G.ups]
    assert dropouts == [[0.5], [0.5], [0.5], [], [], [], []]
    assert isinstance(G.final[-1], nn.Tanh)


def test_discriminator_gives_30x30_patches_of_70x70_pixels():
    D = PatchDiscriminator(in_ch=6, ndf=8, n_layers=3).double()
    D.eval()  # batch norm with running statistics: each logit depends on its own patch only
    pair = torch.randn(1, 6, 256, 256, dtype=torch.double, requires_grad=True)
    logits = D(pair)
    assert logits.shape == (1, 1, 30, 30)
    logits[0, 0, 15, 15].backward()
    rows, cols = pair.grad.abs().sum(dim=(0, 1)).nonzero(as_tuple=True)
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def test_init_is_normal_0_02():
    G = UNetGenerator(ngf=64, num_downs=8)
    weights = torch.cat([m.weight.flatten() for m in G.modules()
                         if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(weights.mean().item()) < 1e-3 and abs(weights.std().item() - 0.02) < 1e-3
    scales = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(scales.mean().item() - 1.0) < 3e-3 and abs(scales.std().item() - 0.02) < 3e-3


def test_paper_mode_keeps_dropout_and_batch_stats_without_touching_running_stats():
    G = UNetGenerator(ngf=8, num_downs=6)
    sketch = torch.randn(1, 3, 64, 64)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    torch.manual_seed(1)
    a = translate(G, sketch, paper=True)
    torch.manual_seed(2)
    b = translate(G, sketch, paper=True)
    assert not torch.allclose(a, b)  # dropout is on: different seeds, different photos
    # running stats untouched
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert G.training  # state restored
    assert torch.equal(translate(G, sketch, paper=False), translate(G, sketch, paper=False))
    with sampling_mode(G, paper=False):
        assert not G.training


GENERATORS = {"unet": lambda: UNetGenerator(ngf=8, num_downs=6),
              "resnet": lambda: ResNetGenerator(ngf=8, n_blocks=2)}


@pytest.mark.parametrize("kind", GENERATORS)
def test_paper_mode_on_a_batch_is_each_image_run_alone_in_train_mode(kind):
    torch.manual_seed(0)
    G = GENERATORS[kind]()
    with torch.no_grad():  # running statistics far from the batch's: using them would show
        for bn in (m for m in G.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    sketches, seeds = torch.randn(4, 3, 64, 64), [7, 8, 7, 9]
    batched = translate(G, sketches, paper=True, seeds=seeds)
    # the reference: the paper's test, one image at a time in train mode after manual_seed
    singles = []
    for sketch, seed in zip(sketches, seeds):
        torch.manual_seed(seed)
        with sampling_mode(G, paper=True):
            singles.append(G(sketch[None]))
        # a batch of one is bit for bit the train-mode run
        assert torch.equal(translate(G, sketch[None], paper=True, seeds=[seed]), singles[-1])
    torch.testing.assert_close(batched, torch.cat(singles), atol=1e-5, rtol=0)  # conv rounding
    assert not torch.allclose(batched[0], batched[2], atol=1e-3)  # same seed, other sketch
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert G.training and all(m.training for m in G.modules())


def test_paper_mode_masks_can_be_given_instead_of_seeds():
    torch.manual_seed(0)
    paper = paper_mode(UNetGenerator(ngf=8, num_downs=6))
    sketches, seeds = torch.randn(2, 3, 64, 64), [3, 4]
    shapes = mask_shapes(paper, 64, 64)
    assert shapes == [(64, 2, 2), (64, 4, 4), (32, 8, 8)]  # the first three decoder blocks
    masks = draw_masks(shapes, [0.5] * 3, seeds)
    assert [tuple(m.shape) for m in masks] == [(2, *s) for s in shapes]
    assert set(torch.cat([m.flatten() for m in masks]).tolist()) == {0.0, 2.0}
    with torch.no_grad():
        assert torch.equal(paper(sketches, masks=masks), paper(sketches, seeds=seeds))


# ---------------------------------------------------------------------- the other systems' networks

def test_resnet_generator_counts_match_the_reference_implementation():
    # pix2pix/CycleGAN's resnet_9blocks: batch norm (no conv bias before it), or non-affine instance
    # norm (convs keep their bias): 5,248 norm channels, 2 parameters each versus 1 bias each.
    assert n_params(ResNetGenerator(ngf=64, n_blocks=9, norm="batch")) == 11_383_427
    assert n_params(ResNetGenerator(ngf=64, n_blocks=9, norm="instance")) == 11_378_179
    # resize upsampling swaps the 3×3 transposed convs for 3×3 convs: the same count
    assert n_params(ResNetGenerator(ngf=64, n_blocks=9, upsample="resize")) == 11_383_427
    # unchanged by the new options
    assert n_params(UNetGenerator(ngf=64, num_downs=8)) == 54_413_955


def test_resnet_generator_layout_is_johnsons():
    G = ResNetGenerator(ngf=8, n_blocks=6)
    convs = [m for m in G.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [(c.kernel_size[0], c.stride[0], c.out_channels) for c in convs] == \
        [(7, 1, 8), (3, 2, 16), (3, 2, 32)] + [(3, 1, 32)] * 12 + [(3, 2, 16), (3, 2, 8), (7, 1, 3)]
    assert isinstance(convs[-2], nn.ConvTranspose2d) and isinstance(G.final[-1], nn.Tanh)
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in G.modules()) == 2 + 2 * 6
    # pix2pix keeps dropout
    assert [m.p for m in G.modules() if isinstance(m, nn.Dropout)] == [0.5] * 6
    sketch = torch.randn(2, 3, 48, 48)
    assert G(sketch).shape == (2, 3, 48, 48) and G(sketch).abs().max() <= 1.0


@pytest.mark.parametrize("make", [lambda: UNetGenerator(ngf=8, num_downs=5, upsample="resize"),
                                  lambda: ResNetGenerator(ngf=8, n_blocks=2, upsample="resize")])
def test_resize_upsampling_has_no_transposed_convs(make):
    G = make()
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in G.modules())
    ups = [m for m in G.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) in (5, 2) and all(u.mode == "nearest" and u.scale_factor == 2 for u in ups)
    assert G(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_resnet_generator_folds_and_samples_like_the_unet(norm):
    torch.manual_seed(0)
    G = ResNetGenerator(ngf=8, n_blocks=2, norm=norm)
    with torch.no_grad():
        for bn in (m for m in G.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    sketch = torch.randn(2, 3, 32, 32)
    folded = fold_batchnorm(G)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in folded.modules())
    assert (sum(isinstance(m, nn.InstanceNorm2d) for m in folded.modules())
            == (0 if norm == "batch" else 9))
    torch.testing.assert_close(translate(folded, sketch, paper=False),
                               translate(G, sketch, paper=False), atol=1e-5, rtol=1e-4)
    fast = for_inference(G, paper=False)
    torch.testing.assert_close(translate(fast, sketch, paper=False),
                               translate(G, sketch, paper=False), atol=1e-5, rtol=1e-4)
    batched = translate(G, sketch, paper=True, seeds=[0, 1])  # paper mode: per-image norm, noise
    singles = torch.cat([translate(G, s[None], paper=True, seeds=[k])
                         for k, s in enumerate(sketch)])
    assert torch.allclose(batched, singles, atol=1e-6)


@pytest.mark.parametrize("norm, spectral_norm, count",
                         [("batch", False, 2_768_705), ("none", False, 2_767_809),
                          ("instance", False, 2_766_913), ("none", True, 2_767_809)])
def test_discriminator_norm_choices(norm, spectral_norm, count):
    # none: the three middle convs keep a bias (128 + 256 + 512) instead of batch norm's 2 × that;
    # non-affine instance norm has neither. Spectral norm adds buffers (u, v), no parameters.
    D = PatchDiscriminator(in_ch=6, ndf=64, n_layers=3, norm=norm, spectral_norm=spectral_norm)
    assert n_params(D) == count
    norms = [type(m) for m in D.modules() if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))]
    assert norms == {"batch": [nn.BatchNorm2d] * 3, "instance": [nn.InstanceNorm2d] * 3,
                     "none": []}[norm]
    assert D(torch.randn(2, 6, 64, 64)).shape == (2, 1, 6, 6)


def test_build_functions_follow_the_config():
    cfg = Config(generator="resnet", resnet_blocks=6, norm_g="instance", upsample="resize",
                 norm_d="none", spectral_norm=True, ngf=8, ndf=8)
    G, D = build_generator(cfg), build_discriminator(cfg)
    assert isinstance(G, ResNetGenerator) and len(G.blocks) == 6
    assert any(isinstance(m, nn.Upsample) for m in G.modules())
    assert sum(parametrize.is_parametrized(m, "weight") for m in D.modules()) == 5
    assert isinstance(build_generator(Config(ngf=8)), UNetGenerator)


@pytest.mark.parametrize("build, field", [
    (lambda: UNetGenerator(num_downs=4), "num_downs"),
    (lambda: UNetGenerator(ngf=8, num_downs=5, dropout_blocks="middle"), "dropout_blocks"),
    (lambda: UNetGenerator(ngf=8, num_downs=5, upsample="bilinear"), "upsample"),
    (lambda: ResNetGenerator(ngf=8, n_blocks=1, norm="none"), "norm"),
    (lambda: PatchDiscriminator(ndf=8, norm="group"), "norm")])
def test_a_bad_model_argument_is_a_value_error_naming_it(build, field):
    # not an assert: those vanish under python -O
    with pytest.raises(ValueError, match=rf"^{field}: "):
        build()
