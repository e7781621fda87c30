"""Contextual completion (completion.py): the mask, the contextual loss, the latent search, exact
resume, one-line errors, and `complete` at the sketch's size. Tiny sizes: 16×16 halves."""

import json
import multiprocessing
import os
import re
import signal

import pytest
import torch
from PIL import Image, ImageDraw

import completion
import config
import dataset
import loop
import save
from completion import (CompletionConfig, JointDiscriminator, JointGenerator, contextual_loss,
                        joint, photo_mask, search)
from config import Config
from generator import build_generator
from losses import VGG16Features
from tools import evaluate


def tiny(tmp_path, data_dir, **overrides) -> CompletionConfig:
    """16×16 halves, 4 base filters: a step takes milliseconds."""
    values = dict(data_dir=str(data_dir), image_size=16, z_dim=8, ngf=4, ndf=4, batch_size=4,
                  epochs=1, num_workers=0, models_dir=str(tmp_path / "models"),
                  samples_dir=str(tmp_path / "samples"), name="test", device="cpu", log_every=2,
                  n_samples=2, val_images=4, search_steps=3, search_starts=2)
    return CompletionConfig(**{**values, **overrides})


def test_the_mask_covers_exactly_the_photo_half_and_g_never_sees_the_photo(tmp_path, pairs_dir):
    mask = photo_mask(16)
    assert mask.shape == (1, 1, 16, 32)
    assert torch.equal(mask[..., 16:], torch.ones(1, 1, 16, 16))  # the photo half, all of it
    assert torch.equal(mask[..., :16], torch.zeros(1, 1, 16, 16))  # nothing of the sketch half
    # what the direct network reads in training: the sketch, and zeros where the photo was
    cfg = tiny(tmp_path, pairs_dir)
    G, D = completion.build_networks(cfg)
    seen = []
    G.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    sketch, photo = torch.rand(4, 3, 16, 16) * 2 - 1, torch.rand(4, 3, 16, 16) * 2 - 1
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    completion.completion_step(G, D, opt_g, opt_d, scaler, sketch, photo, cfg,
                               torch.autocast("cpu", enabled=False))
    assert torch.equal(seen[0], joint(sketch, torch.zeros_like(photo)))


def test_the_contextual_loss_ignores_the_photo_half():
    torch.manual_seed(0)
    completed, target = torch.rand(2, 3, 16, 32), torch.rand(2, 3, 16, 32)
    mask = photo_mask(16)
    loss = contextual_loss(completed, target, mask)
    expected = (completed - target)[..., :16].abs().flatten(1).mean(1)  # the sketch half's mean
    assert torch.allclose(loss, expected)
    other = completed.clone()
    other[..., 16:] = torch.rand(2, 3, 16, 16)  # another photo half: the same loss, exactly
    assert torch.equal(contextual_loss(other, target, mask), loss)
    other[0, 1, 5, 3] += 0.5  # one sketch-half pixel of the first image: its loss alone moves
    moved = contextual_loss(other, target, mask)
    assert moved[0] != loss[0] and moved[1] == loss[1]


def test_latent_search_lowers_the_contextual_loss_and_keeps_the_best_start():
    torch.manual_seed(0)
    G, D = JointGenerator(z_dim=8, ngf=4, image_size=16).eval(), JointDiscriminator(4, 16).eval()
    with torch.no_grad():  # sketches the toy model can make: the sketch half of G(z*)
        sketch = G(torch.randn(3, 8))[..., :16]
    args = dict(z_dim=8, starts=4, lr=0.05, lambda_contextual=0.99, lambda_perceptual=0.01)
    torch.manual_seed(1)
    code = torch.randn(4 * 3, 8)  # the starts search draws under seed 1
    target = joint(sketch, torch.zeros_like(sketch)).repeat(4, 1, 1, 1)
    with torch.no_grad():
        completed = G(code)
        start_loss = (0.99 * contextual_loss(completed, target, photo_mask(16))
                      + 0.01 * completion.generator_loss("bce", D(completed))).view(4, 3)
    torch.manual_seed(1)
    best, best_loss = search(G, D, sketch, steps=0, **args)
    assert torch.allclose(best_loss, start_loss.min(0).values)  # the best of the starts, per image
    torch.manual_seed(1)
    searched, searched_loss = search(G, D, sketch, steps=40, **args)
    before = contextual_loss(best, joint(sketch, sketch), photo_mask(16))
    after = contextual_loss(searched, joint(sketch, sketch), photo_mask(16))
    assert (after < 0.6 * before).all(), (before, after)  # measured: about 0.15 of it
    assert not any(p.grad is not None for p in [*G.parameters(), *D.parameters()])


def test_the_reimplementations_softmax_gives_no_gradient_and_saturating_vanishes():
    logits = torch.tensor([-8.0, 0.0, 3.0], requires_grad=True)
    for gan_loss, real in (("softmax", True), ("softmax", False)):
        (grad,) = torch.autograd.grad(completion.adversarial(gan_loss, logits, real).sum(), logits)
        assert torch.equal(grad, torch.zeros(3))  # softmax over one logit is 1 whatever it is
    (grad_bce,) = torch.autograd.grad(completion.generator_loss("bce", logits).sum(), logits)
    (grad_sat,) = torch.autograd.grad(completion.generator_loss("saturating", logits).sum(),
                                      logits)
    # where D rejects the completion (logit -8), the minimax loss is flat, the default is not
    assert abs(grad_sat[0]) < 1e-3 < 0.99 < abs(grad_bce[0])


def interrupt_at_load(monkeypatch, n: int):
    """Ctrl-C (SIGINT to ourselves) while the n-th image loads."""
    calls, original = [], dataset.PairDataset.load

    def load(self, path, *crop):
        calls.append(path)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, path, *crop)

    monkeypatch.setattr(dataset.PairDataset, "load", load)


def test_ctrl_c_mid_epoch_then_resume_matches_an_unbroken_run(tmp_path, pairs_dir, monkeypatch):
    # the search GAN draws its codes from the global generator: its state must resume too
    unbroken = completion.main(tiny(tmp_path / "a", pairs_dir, epochs=2, method="search"))
    cfg = tiny(tmp_path / "b", pairs_dir, epochs=2, method="search")
    interrupt_at_load(monkeypatch, 4 + 6)  # 4 val pairs load first; then the second batch
    with pytest.raises(SystemExit) as stopped:
        completion.main(cfg)
    assert stopped.value.code == 130
    monkeypatch.undo()
    ckpt = torch.load(tmp_path / "b/models/test/last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (0, 2, 2)
    resumed = completion.main(CompletionConfig(**{**cfg.to_dict(), "resume": True}))
    assert resumed["step"] == unbroken["step"] == 8
    final_a = torch.load(tmp_path / "a/models/test/last.pt", weights_only=True)
    final_b = torch.load(tmp_path / "b/models/test/last.pt", weights_only=True)
    for net in ("generator", "discriminator"):
        for name, tensor in final_a[net].items():
            assert torch.equal(tensor, final_b[net][name]), f"{net}.{name} differs after resume"
    assert resumed["val_l1"][-1] == unbroken["val_l1"][-1]
    with pytest.raises(ValueError, match=r"last\.pt: cannot resume.*ngf=4 \(now 8\)"):
        completion.main(CompletionConfig(**{**cfg.to_dict(), "resume": True, "ngf": 8}))


def test_auto_precision_is_decided_once_and_kept_on_resume(tmp_path, pairs_dir, monkeypatch):
    cfg = tiny(tmp_path, pairs_dir, precision="auto")
    completion.main(cfg)
    last = tmp_path / "models/test/last.pt"
    assert torch.load(last, weights_only=True)["config"]["precision"] == "fp32"  # a CPU's choice
    # the same run resumed where auto would pick bf16 (a GPU of compute capability 8, say)
    used = []
    real = completion.mixed_precision
    monkeypatch.setattr(completion, "pick_precision", lambda name, device: torch.bfloat16)
    monkeypatch.setattr(completion, "mixed_precision", lambda p, d: used.append(p) or real(p, d))
    completion.main(CompletionConfig(**{**cfg.to_dict(), "resume": True, "epochs": 2}))
    assert used == ["fp32"]  # kept, not decided again
    assert torch.load(last, weights_only=True)["config"]["precision"] == "fp32"
    completion.main(tiny(tmp_path / "new", pairs_dir, precision="auto"))  # a new run decides
    assert used[-1] == "bf16"


def draw_sketch(path, size=(90, 70)):
    """A plain sketch, off-centre on a canvas that is not square."""
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).ellipse((20, 15, 60, 50), outline="black", width=2)
    img.save(path)
    return path


def test_complete_writes_the_photo_at_the_sketchs_size(tmp_path, pairs_dir, capsys):
    for method in ("direct", "search"):
        cfg = tiny(tmp_path, pairs_dir, method=method, name=method)
        completion.main(cfg)
        sketch = draw_sketch(tmp_path / "drawn.png")
        out = tmp_path / f"out_{method}"
        checkpoint = tmp_path / f"models/{method}/completer.pt"
        assert completion.cli(["complete", str(sketch), "-o", str(out), "--checkpoint",
                               str(checkpoint), "--steps", "2"]) == 0
        assert Image.open(out / "drawn.png").size == (90, 70)
    # tools.evaluate scores a completion checkpoint like any generator
    assert evaluate.main(["--checkpoint", str(tmp_path / "models/search/completer.pt"),
                          "--data", str(pairs_dir / "val"), "--out", str(tmp_path / "res")]) == 0
    result = json.loads((tmp_path / "res/results.json").read_text())
    assert len(result["images"]) == 4 and 0 <= result["mean"]["l1"] <= 2


def test_bad_inputs_give_one_line_errors(tmp_path, pairs_dir, capsys):
    def error_of(*argv):
        assert completion.cli(["complete", *argv, "-o", str(tmp_path / "out")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    sketch = draw_sketch(tmp_path / "drawn.png")
    assert "nowhere.pt: no such checkpoint" in error_of(str(sketch), "--checkpoint",
                                                        str(tmp_path / "nowhere.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    assert "junk.pt: not a loadable checkpoint" in error_of(str(sketch), "--checkpoint",
                                                            str(tmp_path / "junk.pt"))
    torch.save({"generator": {}, "config": Config().to_dict()}, tmp_path / "pix2pix.pt")
    assert "pix2pix.pt: a pix2pix checkpoint, not a completion one" in error_of(
        str(sketch), "--checkpoint", str(tmp_path / "pix2pix.pt"))
    completion.main(tiny(tmp_path, pairs_dir))
    capsys.readouterr()  # the training's own output
    checkpoint = tmp_path / "models/test/completer.pt"
    assert "missing.png: no such file or folder" in error_of(
        str(tmp_path / "missing.png"), "--checkpoint", str(checkpoint))
    # the other way round: pix2pix's loader names what it was given
    with pytest.raises(ValueError, match="completer.pt: a completion checkpoint, not a pix2pix"):
        save.load_generator(checkpoint)
    # configs: a wrong type or an unknown key, named in one line
    with pytest.raises(ValueError, match="ngf must be int, got 'four'"):
        CompletionConfig(ngf="four")
    with pytest.raises(ValueError, match=r"unknown keys \['lambda_l1'\]"):
        CompletionConfig.from_dict({"lambda_l1": 100.0})
    with pytest.raises(SystemExit):
        completion.parse_args(["--lambda_l1", "3"])
    assert "unrecognized arguments: --lambda_l1" in capsys.readouterr().err


def test_a_missing_or_foreign_vgg16_file_is_one_line(tmp_path, pairs_dir, capsys,
                                                      monkeypatch):
    with pytest.raises(FileNotFoundError, match="nowhere.pth'?: no such file \\(never downloaded"):
        VGG16Features(tmp_path / "nowhere.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pth: not torchvision's vgg16 state dict"):
        VGG16Features(tmp_path / "junk.pth")
    cfg = Config(image_size=64, num_downs=6, ngf=8, ndf=8)  # a valid generator: the file is next
    torch.save({"generator": build_generator(cfg).state_dict(), "config": cfg.to_dict()},
               tmp_path / "g.pt")
    monkeypatch.chdir(tmp_path)  # short names: evaluate cuts its error line at 120 characters
    assert evaluate.main(["--checkpoint", "g.pt", "--vgg16", "nowhere.pth", "--data",
                          str(pairs_dir / "val")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "nowhere.pth': no such file (never downloaded" in error[0]


@pytest.mark.slow  # a 138M-weight network at 224×224: ~5 s on 2 idle cores
def test_vgg16_features_are_torchvisions_fc1_and_score_their_cosine():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):  # no init of 138M weights: filled below, quickly
        reference = torchvision.models.vgg16(weights=None)
    reference = reference.to_empty(device="cpu").eval()
    torch.manual_seed(0)
    for name, parameter in reference.named_parameters():  # biases 0: the image decides
        parameter.data.uniform_(-0.03, 0.03) if name.endswith("weight") else parameter.data.zero_()
    vgg16 = VGG16Features(None)
    vgg16.load_torchvision(reference.state_dict())
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():  # torchvision's own layers up to classifier[1], the ReLU after fc1
        normalised = ((image + 1) / 2 - vgg16.mean) / vgg16.std
        resized = torch.nn.functional.interpolate(normalised, size=(224, 224), mode="bilinear")
        expected = reference.classifier[1](reference.classifier[0](
            torch.flatten(reference.avgpool(reference.features(resized)), 1)))
        assert torch.allclose(vgg16(image), expected, atol=1e-5)
        assert torch.allclose(evaluate.score(image, image, image, vgg16=vgg16)["vgg_cos"],
                              torch.ones(1, dtype=torch.float64))
        assert evaluate.score(-image, image, image, vgg16=vgg16)["vgg_cos"] < 1 - 1e-4


def test_a_completion_checkpoint_with_wrong_contents_or_too_large_is_one_line(tmp_path, capsys,
                                                                              monkeypatch):
    sketch = draw_sketch(tmp_path / "drawn.png")
    cfg = tiny(tmp_path, tmp_path).to_dict()

    def error_of(ckpt):
        torch.save({"kind": "completion", **ckpt}, tmp_path / "bad.pt")
        assert completion.cli(["complete", str(sketch), "-o", str(tmp_path / "out"),
                               "--checkpoint", str(tmp_path / "bad.pt")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert error_of({"generator": [1], "config": cfg}).endswith(
        "bad.pt: its generator entry is not a state dict (parameter names mapped to tensors) but "
        "a list")
    assert error_of({"generator": {}, "config": "direct"}).endswith(
        "bad.pt: its config entry is not a mapping of config fields but a str")
    monkeypatch.setattr(config, "available_memory", lambda: 1 << 20)  # 1 MiB free
    assert re.search(r"bad\.pt: config: image_size=16, z_dim=8, ngf=4000, ndf=4 make a model of "
                     r"[\d,]+ numbers \([\d.]+ GiB\), more than the 1\.0 MiB of memory available "
                     r"here; not built$", error_of({"generator": {}, "config": {**cfg,
                                                                                "ngf": 4000}}))
    # the evaluation tool reads checkpoints through the same checks
    torch.save({"kind": ["completion"], "generator": {}, "config": cfg}, tmp_path / "kind.pt")
    with pytest.raises(ValueError, match="kind.pt: not a checkpoint of this project"):
        evaluate.load_model(tmp_path / "kind.pt")


# ---------------------------------------------------------------- train.py's loop and run folders

def test_a_second_run_is_refused_a_refused_resume_writes_nothing_and_overwrite_starts_over(
        tmp_path, pairs_dir, capsys):
    cfg = tiny(tmp_path, pairs_dir)
    completion.main(cfg)
    run_dir, samples_dir = tmp_path / "models/test", tmp_path / "samples/test"

    def files():
        return {path: (path.read_bytes(), path.stat().st_mtime_ns)
                for folder in (run_dir, samples_dir) for path in sorted(folder.rglob("*"))
                if path.is_file()}

    before = files()
    capsys.readouterr()
    assert completion.cli(["train", *[f"--{k}={v}" for k, v in cfg.to_dict().items()
                                      if not isinstance(v, bool)]]) == 2
    assert capsys.readouterr().err == (
        f"completion.py: error: {run_dir}: holds a run saved at epoch 1 batch 0 (step 4); "
        f"continue it with --resume, start another with another --name, or start this one over "
        f"with --overwrite\n")
    with pytest.raises(ValueError, match=r"last\.pt: cannot resume.*direction=AtoB \(now BtoA\)"):
        completion.main(CompletionConfig(**{**cfg.to_dict(), "resume": True, "epochs": 2,
                                            "direction": "BtoA"}))
    assert files() == before
    held = loop.lock_run_dir(run_dir)  # as another training would (a second open file)
    with pytest.raises(OSError, match=r"models/test: in use by another training \(pid \d+\)"):
        completion.main(CompletionConfig(**{**cfg.to_dict(), "resume": True, "epochs": 2}))
    loop.unlock(held)
    completion.main(CompletionConfig(**{**cfg.to_dict(), "overwrite": True, "log_every": 1}))
    steps = [r["step"] for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())
             if "loss_d" in r]
    assert steps == [1, 2, 3, 4]  # the new run's alone
    # the family's weights file without a last.pt: not written over by a run from scratch
    (run_dir / "last.pt").unlink()
    with pytest.raises(ValueError, match=r"models/test: holds completer\.pt of an earlier run but "
                                         r"no last\.pt to continue it; start another"):
        completion.main(CompletionConfig(**{**cfg.to_dict(), "resume": True}))
    with pytest.raises(ValueError, match=r"^config: name must be one folder name"):
        completion.main(CompletionConfig(**{**cfg.to_dict(), "name": ".."}))


def test_ctrl_c_with_loader_workers_leaves_none_alive(tmp_path, pairs_dir, monkeypatch):
    calls, real_step = [], completion.completion_step

    def step(*args, **kwargs):  # Ctrl-C as the second step begins
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(completion, "completion_step", step)
    with pytest.raises(SystemExit) as stopped:
        completion.main(tiny(tmp_path, pairs_dir, num_workers=2))
    assert stopped.value.code == 130
    assert multiprocessing.active_children() == []  # ended at once, not by the collector
    ckpt = torch.load(tmp_path / "models/test/last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (0, 2, 2)


def test_a_nan_loss_stops_with_train_pys_line_and_fp16_skips_it_instead(tmp_path, pairs_dir,
                                                                        monkeypatch, capsys):
    calls, real_loss = [], completion.generator_loss

    def turning_nan(gan_loss, logits):  # G's perceptual loss goes NaN from the second step on
        calls.append(1)
        return real_loss(gan_loss, logits) * (float("nan") if len(calls) >= 2 else 1.0)

    monkeypatch.setattr(completion, "generator_loss", turning_nan)
    cfg = tiny(tmp_path, pairs_dir, log_every=1, precision="fp32")
    assert completion.cli(["train", *[f"--{k}={v}" for k, v in cfg.to_dict().items()
                                      if not isinstance(v, bool)]]) == 2
    last = tmp_path / "models/test/last.pt"
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"completion.py: error: loss is NaN or Inf by step 2 (epoch 0); the last good checkpoint "
        f"is {last}")
    # under fp16 the GradScaler skips such a step, and the run goes on, as train.py's does
    calls.clear()
    fp16 = completion.main(tiny(tmp_path / "fp16", pairs_dir, log_every=1, precision="fp16"))
    assert fp16["step"] == 4
    assert "step 2: non-finite fp16 loss; the GradScaler skipped those updates" in \
        capsys.readouterr().out
