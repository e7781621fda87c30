"""The networks match the paper: sizes, shapes, receptive field, init, dropout, test-time modes."""

import torch
import torch.nn as nn

from discriminator import PatchDiscriminator
from generator import UNetGenerator, sampling_mode, translate


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
    weights = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
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
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())  # running stats untouched
    assert G.training  # state restored
    assert torch.equal(translate(G, sketch, paper=False), translate(G, sketch, paper=False))
    with sampling_mode(G, paper=False):
        assert not G.training


def test_paper_mode_translates_each_image_alone():
    G = UNetGenerator(ngf=8, num_downs=6)
    sketches = torch.randn(3, 3, 64, 64)
    torch.manual_seed(0)
    batched = translate(G, sketches, paper=True)
    torch.manual_seed(0)
    singles = torch.cat([translate(G, s[None], paper=True) for s in sketches])
    assert torch.allclose(batched, singles, atol=1e-6)
