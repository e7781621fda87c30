"""The other systems' objectives: each GAN loss on hand-computed logits, the WGAN-GP gradient
penalty against an analytic case (also under bf16 autocast), the perceptual loss, and a short run of
the WGAN-GP + spectral norm + ResNet/resize system whose checkpoint infer.py then uses."""

import math
import runpy
import sys
from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn
import torchvision

import infer
import save
import train
from config import Config, parse_args
from conftest import ROOT, as_flags, make_pairs, tiny_config
from discriminator import PatchDiscriminator
from generator import ResNetGenerator, UNetGenerator
from losses import VGG_LAYERS, VGGFeatures, gradient_penalty, loss_d_of, loss_g_gan_of

REAL = torch.tensor([2.0, -1.0]).view(1, 1, 1, 2)  # D's logits for two real patches
FAKE = torch.tensor([0.5, -3.0]).view(1, 1, 1, 2)  # ... and for two fake ones


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("gan_loss, expected_d, expected_g", [
    # bce: -log σ(r) = softplus(-r), -log(1 - σ(f)) = softplus(f); D halved; G: -log σ(f)
    ("bce", 0.5 * ((softplus(-2) + softplus(1)) / 2 + (softplus(0.5) + softplus(-3)) / 2),
     (softplus(-0.5) + softplus(3)) / 2),
    # lsgan: 0.5·(mean (r-1)² + mean f²) = 0.5·((1 + 4)/2 + (0.25 + 9)/2);
    # G: mean (f-1)² = (0.25 + 16)/2
    ("lsgan", 0.5 * (2.5 + 4.625), 8.125),
    # hinge: mean relu(1 - r) + mean relu(1 + f) = (0 + 2)/2 + (1.5 + 0)/2; G: -mean f
    ("hinge", 1.75, 1.25),
    # wgan-gp (without the penalty): mean f - mean r = -1.25 - 0.5; G: -mean f
    ("wgan-gp", -1.75, 1.25),
])
def test_each_gan_loss_on_hand_computed_logits(gan_loss, expected_d, expected_g):
    assert loss_d_of(gan_loss, REAL, FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    assert loss_g_gan_of(gan_loss, FAKE).item() == pytest.approx(expected_g, rel=1e-6)


class LinearCritic(nn.Module):
    """D(x) = <W, x> per sample, as a full-size conv: ∇ₓD = W everywhere, so the penalty is
    (‖W‖ - 1)²."""

    def __init__(self, size: int, norm: float):
        super().__init__()
        self.conv = nn.Conv2d(6, 1, size, bias=True)
        with torch.no_grad():
            self.conv.weight.mul_(norm / self.conv.weight.norm())

    def forward(self, pair):
        return self.conv(pair)  # (B, 1, 1, 1)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp32 with loss scaling"])
def test_gradient_penalty_matches_the_analytic_value_and_reaches_the_critic(precision):
    torch.manual_seed(0)
    critic = LinearCritic(size=8, norm=3.0)
    real, fake = torch.randn(4, 6, 8, 8), torch.randn(4, 6, 8, 8)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0,
                                  enabled=precision == "fp32 with loss scaling")
    penalty = gradient_penalty(critic, real, fake, scaler, autocast)
    tolerance = 2e-2 if precision == "bf16" else 1e-5  # bf16 rounds W to 8 bits of mantissa
    assert penalty.item() == pytest.approx((3.0 - 1) ** 2, rel=tolerance)
    # The double backward: d/dW (‖W‖ - 1)² = 2 (‖W‖ - 1) W / ‖W‖ = (4/3) W
    penalty.backward()
    W = critic.conv.weight.detach()
    torch.testing.assert_close(critic.conv.weight.grad, 4 / 3 * W, rtol=tolerance,
                               atol=tolerance * W.abs().max())
    # a constant has no slope
    assert critic.conv.bias.grad is None or critic.conv.bias.grad.abs().max() == 0



def test_an_unknown_gan_loss_is_a_value_error_naming_the_field():
    with pytest.raises(ValueError, match=r"^gan_loss: unknown 'wgan'"):
        loss_d_of("wgan", REAL, FAKE)
    with pytest.raises(ValueError, match=r"^gan_loss: unknown 'wgan'"):
        loss_g_gan_of("wgan", FAKE)

def tiny_nets(gan_loss: str, spectral_norm: bool = False):
    torch.manual_seed(0)
    G = ResNetGenerator(ngf=8, n_blocks=2, upsample="resize")
    D = PatchDiscriminator(6, ndf=8, n_layers=2, norm="batch" if gan_loss != "wgan-gp" else "none",
                           spectral_norm=spectral_norm)
    return G, D, torch.optim.Adam(G.parameters(), 1e-4, betas=(0.0, 0.9)), \
        torch.optim.Adam(D.parameters(), 1e-4, betas=(0.0, 0.9))


@pytest.mark.parametrize("gan_loss, precision",
                         [("lsgan", "fp32"), ("hinge", "fp32"), ("wgan-gp", "fp32"),
                          ("wgan-gp", "bf16")])
def test_a_step_of_each_loss_trains_both_networks(gan_loss, precision):
    G, D, opt_g, opt_d = tiny_nets(gan_loss, spectral_norm=gan_loss == "wgan-gp")
    d_before = {name: p.detach().clone() for name, p in D.named_parameters()}
    data = torch.Generator().manual_seed(1)
    sketch, photo = (torch.rand(2, 3, 32, 32, generator=data) * 2 - 1 for _ in range(2))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    n_critic = 3 if gan_loss == "wgan-gp" else 1
    losses = train.gan_step(G, D, opt_g, opt_d, scaler, sketch=sketch, photo=photo,
                            lambda_l1=100.0, autocast=autocast, gan_loss=gan_loss, lambda_gp=10.0,
                            n_critic=n_critic)
    assert torch.isfinite(losses).all()
    # n_critic D updates per G update
    assert opt_d.state[next(iter(D.parameters()))]["step"] == n_critic
    assert opt_g.state[next(iter(G.parameters()))]["step"] == 1
    # Every weight moves. (Not every bias: under hinge, while all logits lie within the margin, the
    # last bias gets +1 from the real and -1 from the fake patches: no gradient, exactly.)
    assert all(not torch.equal(d_before[name], p) for name, p in D.named_parameters()
               if "weight" in name
               or "original" in name)


def test_spectral_norm_keeps_each_conv_at_largest_singular_value_1():
    torch.manual_seed(0)
    D = PatchDiscriminator(6, ndf=8, n_layers=3, norm="none", spectral_norm=True)
    with torch.no_grad():
        for _ in range(30):  # each training forward runs one power iteration per conv
            D(torch.randn(2, 6, 64, 64))
    D.eval()  # eval mode uses the estimate as it stands
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.flatten(1), 2).item()
        assert sigma == pytest.approx(1.0, abs=1e-2)
        original = torch.linalg.matrix_norm(conv.parametrizations.weight.original.flatten(1),
                                            2).item()
        # the normalization did something: N(0, 0.02) weights are not at 1
        assert abs(original - 1.0) > 0.1


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """torchvision's vgg19 layout with random weights (weights=None: no download), features only."""
    torch.manual_seed(0)
    vgg = torchvision.models.vgg19(weights=None)
    path = tmp_path_factory.mktemp("vgg") / "vgg19_random.pth"
    torch.save({k: v for k, v in vgg.state_dict().items() if k.startswith("features.")}, path)
    return path, vgg.features.eval()


def test_vgg_features_are_torchvisions_layers(vgg_file):
    path, reference = vgg_file
    vgg = VGGFeatures(path)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    features = vgg(image)
    normalized = ((image + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        for name, index in VGG_LAYERS.items():  # relu5_1 is torchvision's features[29]
            torch.testing.assert_close(features[name], reference[:index + 1](normalized))


def test_perceptual_loss_is_zero_on_identical_images_and_its_gradient_reaches_G(vgg_file):
    vgg = VGGFeatures(vgg_file[0])
    photo = torch.rand(2, 3, 32, 32) * 2 - 1
    assert vgg.distance(photo, photo).item() == 0.0
    assert vgg.distance(photo.flip(3), photo).item() > 0
    torch.manual_seed(0)
    G = UNetGenerator(ngf=8, num_downs=5)
    vgg.distance(G(torch.rand(2, 3, 32, 32)), photo).backward()
    assert G.downs[0].weight.grad.abs().sum() > 0  # through VGG, G and all of its skips
    assert all(p.grad is None for p in vgg.parameters())  # VGG stays frozen


def test_missing_vgg_weights_give_one_clear_error(tmp_path, pairs_dir, monkeypatch, capsys):
    with pytest.raises(FileNotFoundError, match="vgg_weights .*nope.pth.*: no such file"):
        VGGFeatures(tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="lambda_perceptual > 0 needs vgg_weights"):
        Config(lambda_perceptual=1.0)
    cfg = tiny_config(tmp_path, pairs_dir, lambda_perceptual=1.0,
                      vgg_weights=str(tmp_path / "nope.pth"))
    monkeypatch.setattr(sys, "argv", ["train.py", *as_flags(
        {k: v for k, v in cfg.to_dict().items() if v != Config.__dataclass_fields__[k].default})])
    with pytest.raises(SystemExit) as exited:  # the command, in this process
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("train.py: error: vgg_weights"), err
    not_vgg = tmp_path / "not_vgg.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, not_vgg)
    with pytest.raises(ValueError, match="not_vgg.pth: not torchvision's vgg19 state dict"):
        VGGFeatures(not_vgg)


def test_systems_are_presets_that_explicit_flags_override():
    cfg = parse_args(["--system", "wgan-gp"])
    assert (cfg.gan_loss, cfg.n_critic, cfg.lr, cfg.beta1, cfg.beta2, cfg.norm_d) == \
        ("wgan-gp", 5, 1e-4, 0.0, 0.9, "none")
    cfg = parse_args(["--system", "wgan-gp", "--lr", "3e-4", "--n_critic", "1"])
    assert (cfg.lr, cfg.n_critic, cfg.beta1) == (3e-4, 1, 0.0)  # the user's values win
    assert parse_args([]) == Config()  # the default system is the paper's
    with pytest.raises(ValueError, match="gan_loss wgan-gp needs norm_d instance or none"):
        Config(gan_loss="wgan-gp")  # never silently changed: the batch norm critic is refused
    for bad in (["--gan_loss", "wasserstein"], ["--generator", "resnet", "--image_size", "130"],
                # sketch2photo needs --vgg_weights
                ["--system", "sketch2photo"], ["--norm_g", "instance"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    # A checkpoint's config from before these fields loads, with the paper's values filled in.
    old = {k: v for k, v in Config().to_dict().items() if k not in (
        "generator", "resnet_blocks", "norm_g", "upsample", "norm_d", "spectral_norm", "gan_loss",
        "lambda_gp", "n_critic", "lambda_perceptual", "vgg_weights")}
    assert Config.from_dict(old) == Config()


def test_wgan_gp_resnet_system_trains_resumes_and_infers(tmp_path, pairs_dir, vgg_file):
    cfg = tiny_config(tmp_path, pairs_dir, batch_size=16, epochs=1, generator="resnet",
                      resnet_blocks=2, upsample="resize", gan_loss="wgan-gp", n_critic=2,
                      norm_d="none", spectral_norm=True, lambda_perceptual=1.0,
                      vgg_weights=str(vgg_file[0]), lr=1e-4, beta1=0.0, beta2=0.9)
    result = train.main(cfg)  # 16 pairs, batch 16: one step
    assert result["step"] == 1 and all(math.isfinite(result[k])
                                       for k in ("loss_d", "loss_g_gan", "loss_g_l1"))
    cfg = Config(**{**cfg.to_dict(), "epochs": 2, "resume": True})
    # G, D (spectral norm) and both Adams load back into this system
    assert train.main(cfg)["step"] == 2
    ckpt = save.load_checkpoint(tmp_path / "models/test/last.pt", keys=save.CHECKPOINT_KEYS)
    assert any("parametrizations" in k for k in ckpt["discriminator"])  # D has spectral norm
    generator, loaded_cfg = save.load_generator(tmp_path / "models/test/generator.pt")
    assert isinstance(generator, ResNetGenerator) and loaded_cfg == cfg
    make_pairs(tmp_path / "in", 1, size=64)
    assert infer.main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--checkpoint",
                       str(tmp_path / "models/test/generator.pt"), "--eval"]) == 0  # norms folded
    assert (tmp_path / "out/1_AB.png").is_file()
