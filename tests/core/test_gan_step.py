"""train.gan_step's wiring, against the paper's equations written out by hand on a tiny G and D:
what each network's update is, where G's gradient comes from, and that neither network's step leaks
gradient into the other. test_losses.py pins each loss on fixed logits; this pins how the step uses
them."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import train
from conftest import make_pairs, tiny_config
from losses import loss_g_gan_of

LR = 0.1  # plain SGD: an update is exactly -LR × the gradient, so updates compare to hand-made ones
GAN_LOSSES = ("bce", "lsgan", "hinge", "wgan-gp")


def tiny_nets(seed: int = 0):
    """A G and a D of two convs each: no dropout, no norm, so a forward pass is reproducible."""
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1),
                      nn.Tanh())
    D = nn.Sequential(nn.Conv2d(6, 8, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
                      nn.Conv2d(8, 1, 3, padding=1))  # (B, 6, 16, 16) -> (B, 1, 8, 8) logits
    return G, D


def batch(seed: int = 1):
    data = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, 16, 16, generator=data) * 2 - 1 for _ in range(2)]  # sketch, photo


class SpySGD(torch.optim.SGD):
    """SGD that hands every step to a callback first (to look at all gradients at that moment)."""

    def __init__(self, params, on_step):
        super().__init__(params, lr=LR)
        self.on_step = on_step

    def step(self, closure=None):
        self.on_step()
        return super().step(closure)


def run_gan_step(G, D, steps: int = 1, on_d_step=lambda: None, on_g_step=lambda: None, **kwargs):
    """gan_step `steps` times with plain SGD, fp32, no scaler; returns the last losses."""
    opt_g, opt_d = SpySGD(G.parameters(), on_g_step), SpySGD(D.parameters(), on_d_step)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    sketch, photo = batch()
    for _ in range(steps):
        losses = train.gan_step(G, D, opt_g, opt_d, scaler, sketch=sketch, photo=photo,
                                autocast=torch.autocast("cpu", enabled=False), **kwargs)
    return losses


# ---------------------------------------------------------------- the paper's equations, by hand

def d_loss_by_hand(gan_loss, real, fake):
    """D's loss on its logits for the real and the fake pair (Isola et al. eq. 1, and the other
    systems' objectives)."""
    if gan_loss == "bce":  # -[log D(x, y) + log(1 - D(x, G(x)))], halved
        return 0.5 * (-F.logsigmoid(real).mean() - F.logsigmoid(-fake).mean())
    if gan_loss == "lsgan":
        return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())
    if gan_loss == "hinge":
        return (1 - real).clamp(min=0).mean() + (1 + fake).clamp(min=0).mean()
    return fake.mean() - real.mean()  # wgan-gp, before the penalty


def g_loss_by_hand(gan_loss, fake):
    if gan_loss == "bce":  # non-saturating: -log D(x, G(x))
        return -F.logsigmoid(fake).mean()
    if gan_loss == "lsgan":
        return (fake - 1).pow(2).mean()
    return -fake.mean()


def penalty_by_hand(D, real_pair, fake_pair):
    """E[(‖∇ D(x̂)‖₂ - 1)²] on x̂ = ε·real + (1 - ε)·fake, D(x̂) a sample's mean patch score."""
    eps = torch.rand(real_pair.shape[0], 1, 1, 1)
    mixed = (eps * real_pair + (1 - eps) * fake_pair).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(mixed).flatten(1).mean(1).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def sgd(net, loss):
    """One plain SGD step of net on loss; returns the gradients."""
    grads = torch.autograd.grad(loss, list(net.parameters()))
    with torch.no_grad():
        for p, g in zip(net.parameters(), grads):
            p -= LR * g
    return grads


def reference_step(G, D, sketch, photo, gan_loss, lambda_l1, lambda_gp, n_critic):
    """One pix2pix iteration in place on G and D: n_critic D steps on the real pair and the
    detached fake pair, then G on the adversarial loss + λ·L1. Returns (loss_d mean, loss_g_gan,
    loss_g_l1)."""
    fake_photo = G(sketch)
    real_pair = torch.cat([sketch, photo], 1)
    fake_pair = torch.cat([sketch, fake_photo.detach()], 1)
    loss_d_total = 0.0
    for _ in range(n_critic):
        loss_d = d_loss_by_hand(gan_loss, D(real_pair), D(fake_pair))
        if gan_loss == "wgan-gp":
            loss_d = loss_d + lambda_gp * penalty_by_hand(D, real_pair, fake_pair)
        sgd(D, loss_d)
        loss_d_total += loss_d.item()
    loss_g_gan = g_loss_by_hand(gan_loss, D(torch.cat([sketch, fake_photo], 1)))
    loss_g_l1 = (fake_photo - photo).abs().mean()
    sgd(G, loss_g_gan + lambda_l1 * loss_g_l1)
    return loss_d_total / n_critic, loss_g_gan.item(), loss_g_l1.item()


def assert_same_update(name, net, before, reference):
    """net moved from before exactly as reference did (compared as updates, not weights)."""
    for (key, p), p0, p_ref in zip(net.named_parameters(), before.parameters(),
                                   reference.parameters()):
        torch.testing.assert_close(p.detach() - p0, p_ref.detach() - p0, rtol=1e-4, atol=1e-7,
                                   msg=lambda m: f"{name}.{key}: {m}")


# ---------------------------------------------------------------- the tests

@pytest.mark.parametrize("gan_loss, n_critic", [(loss, 1) for loss in GAN_LOSSES]
                         + [("bce", 2), ("wgan-gp", 3)])
def test_two_steps_update_both_networks_as_the_paper_equations_do(gan_loss, n_critic):
    G, D = tiny_nets()
    G_ref, D_ref = copy.deepcopy(G), copy.deepcopy(D)
    G0, D0 = copy.deepcopy(G), copy.deepcopy(D)
    settings = dict(gan_loss=gan_loss, lambda_l1=100.0, lambda_gp=10.0, n_critic=n_critic)
    torch.manual_seed(5)  # the penalty's ε, drawn in the same order by both
    losses = run_gan_step(G, D, steps=2, **settings)
    torch.manual_seed(5)
    sketch, photo = batch()
    for _ in range(2):  # the second step also shows that D learns again after G's step
        expected = reference_step(G_ref, D_ref, sketch, photo, **settings)
    assert_same_update("D", D, D0, D_ref)
    assert_same_update("G", G, G0, G_ref)
    assert losses.tolist() == pytest.approx(expected, rel=1e-4)
    assert all(p.requires_grad for p in D.parameters())  # D trainable again for the next step


@pytest.mark.parametrize("gan_loss", ("bce", "lsgan", "hinge"))
def test_without_l1_g_learns_only_through_d(gan_loss):
    G, D = tiny_nets()
    G0 = copy.deepcopy(G)
    run_gan_step(G, D, gan_loss=gan_loss, lambda_l1=0.0)
    # G's gradient is that of its adversarial loss through D as D stands after its own step
    sketch, _ = batch()
    expected = torch.autograd.grad(loss_g_gan_of(gan_loss, D(torch.cat([sketch, G0(sketch)], 1))),
                                   list(G0.parameters()))
    for p, g in zip(G.parameters(), expected):
        assert g.abs().sum() > 0
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-8)

    class ConstantD(nn.Module):
        """Logits that do not depend on the pair: no path from D back to G."""

        def __init__(self):
            super().__init__()
            self.logit = nn.Parameter(torch.tensor(0.3))

        def forward(self, pair):
            return pair[:, :1, ::2, ::2] * 0 + self.logit

    G, _ = tiny_nets()
    run_gan_step(G, ConstantD(), gan_loss=gan_loss, lambda_l1=0.0)
    assert all(p.grad is None or not p.grad.any() for p in G.parameters())


def test_neither_network_gets_gradient_from_the_others_step():
    G, D = tiny_nets()
    seen = {"d_steps": 0}

    def on_d_step():  # G has not run backward yet: its gradients must still be unset
        seen["d_steps"] += 1
        assert all(p.grad is None for p in G.parameters()), "D's step sent gradient to G"
        seen["d_grads"] = [p.grad.clone() for p in D.parameters()]

    def on_g_step():  # D's gradients are still those of its last own step
        assert all(p.requires_grad is False for p in D.parameters())
        for p, before in zip(D.parameters(), seen["d_grads"]):
            assert torch.equal(p.grad, before), "G's step sent gradient to D"
        assert all(p.grad is not None and p.grad.any() for p in G.parameters())

    run_gan_step(G, D, on_d_step=on_d_step, on_g_step=on_g_step, gan_loss="wgan-gp", n_critic=2,
                 lambda_l1=100.0)
    assert seen["d_steps"] == 2
    assert all(p.requires_grad for p in D.parameters())


def test_main_hands_the_config_to_the_step(tmp_path, monkeypatch):
    """train.main passes each field to the keyword of the same name (none swapped)."""
    make_pairs(tmp_path / "data/train", 4, seed=1)
    make_pairs(tmp_path / "data/val", 2, seed=2)
    seen, real_step = [], train.gan_step
    monkeypatch.setattr(train, "gan_step", lambda *nets, **kwargs:
                        seen.append(kwargs) or real_step(*nets, **kwargs))
    cfg = tiny_config(tmp_path, tmp_path / "data", gan_loss="wgan-gp", norm_d="none",
                      lambda_l1=7.0, lambda_gp=3.0, n_critic=2)
    train.main(cfg)
    assert len(seen) == 1
    assert {key: seen[0][key] for key in ("gan_loss", "lambda_l1", "lambda_gp", "n_critic",
                                          "lambda_perceptual")} == \
        {"gan_loss": "wgan-gp", "lambda_l1": 7.0, "lambda_gp": 3.0, "n_critic": 2,
         "lambda_perceptual": 0.0}
