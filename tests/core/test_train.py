"""Training: one step moves both networks, a short run learns, and interrupted runs resume exactly."""

import json
import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dataset
import save
import train
from config import DEMO, Config, parse_args
from conftest import make_pairs, tiny_config
from generator import translate


def fresh_nets(cfg):
    """The networks main(cfg) starts from: the same seed, built in the same order."""
    torch.manual_seed(cfg.seed)
    return save.build_generator(cfg), save.build_discriminator(cfg)


def test_one_step_changes_both_networks_and_gives_finite_losses(tmp_path, pairs_dir):
    cfg = tiny_config(tmp_path, pairs_dir, batch_size=16, epochs=1)  # 16 pairs: exactly one step
    result = train.main(cfg)
    assert result["step"] == 1
    for key in ("loss_d", "loss_g_gan", "loss_g_l1"):
        assert torch.isfinite(torch.tensor(result[key]))
    assert 0.2 < result["loss_d"] < 2.0  # near ln 2 at the start: D cannot yet tell real from fake
    G0, D0 = fresh_nets(cfg)
    ckpt = save.load_checkpoint(tmp_path / "models/test/last.pt", keys=save.CHECKPOINT_KEYS)
    for net0, state in ((G0, ckpt["generator"]), (D0, ckpt["discriminator"])):
        for name, p in net0.named_parameters():
            assert not torch.equal(p, state[name]), f"{name} did not change"
    assert (tmp_path / "samples/test/epoch_000.png").is_file()
    assert (tmp_path / "models/test/config.json").is_file()


def test_short_training_lowers_validation_l1(tmp_path):
    make_pairs(tmp_path / "data/train", 32, seed=1)
    make_pairs(tmp_path / "data/val", 8, seed=2)
    cfg = tiny_config(tmp_path, tmp_path / "data", ngf=16, ndf=16, epochs=10, log_every=100, val_images=8)
    G0, _ = fresh_nets(cfg)
    val = dataset.PairDataset(tmp_path / "data/val", image_size=64)
    sketch, photo = (torch.stack(t) for t in zip(*(val[i] for i in range(len(val)))))
    torch.manual_seed(cfg.seed)
    untrained_l1 = F.l1_loss(translate(G0, sketch), photo).item()
    val_l1 = train.main(cfg)["val_l1"]
    assert len(val_l1) == 10
    # Measured on 2 CPU cores: untrained ~0.75, then 0.74 after one epoch and 0.34 after ten (80 steps).
    assert val_l1[-1] < 0.6 * untrained_l1, (untrained_l1, val_l1)


def interrupt_at_load(monkeypatch, n: int):
    """Send ourselves SIGINT (Ctrl-C) while the n-th training image loads."""
    calls = []
    original = dataset.PairDataset.load

    def load(self, path):
        calls.append(path)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, path)

    monkeypatch.setattr(dataset.PairDataset, "load", load)


def test_ctrl_c_mid_epoch_then_resume_matches_an_unbroken_run(tmp_path, pairs_dir, monkeypatch):
    unbroken = train.main(tiny_config(tmp_path / "a", pairs_dir, epochs=2))
    cfg = tiny_config(tmp_path / "b", pairs_dir, epochs=2)
    # val pairs load first (4 of them); the 6th training image is in the second batch of 4.
    interrupt_at_load(monkeypatch, 4 + 6)
    with pytest.raises(SystemExit) as stopped:
        train.main(cfg)
    assert stopped.value.code == 130
    monkeypatch.undo()
    ckpt = save.load_checkpoint(tmp_path / "b/models/test/last.pt", keys=save.CHECKPOINT_KEYS)
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (0, 2, 2)  # the batch in flight was finished
    resumed = train.main(Config(**{**cfg.to_dict(), "resume": True}))
    assert resumed["step"] == unbroken["step"] == 8
    final_a = torch.load(tmp_path / "a/models/test/last.pt", weights_only=True)
    final_b = torch.load(tmp_path / "b/models/test/last.pt", weights_only=True)
    for net in ("generator", "discriminator"):
        for name, tensor in final_a[net].items():
            assert torch.equal(tensor, final_b[net][name]), f"{net}.{name} differs after resume"
    assert resumed["val_l1"][-1] == unbroken["val_l1"][-1]


def test_resume_refuses_a_checkpoint_of_another_shape(tmp_path, pairs_dir):
    train.main(tiny_config(tmp_path, pairs_dir, epochs=1))
    with pytest.raises(ValueError, match=r"last\.pt: cannot resume.*ngf=8 \(now 16\)"):
        train.main(tiny_config(tmp_path, pairs_dir, epochs=2, ngf=16, resume=True))


def test_nan_loss_stops_with_the_step_and_saves_nothing(tmp_path, pairs_dir, monkeypatch):
    calls, l1_loss = [], F.l1_loss

    def l1_turning_nan(fake, real):  # the L1 term goes NaN from the second step on
        calls.append(1)
        return l1_loss(fake, real) * (float("nan") if len(calls) >= 2 else 1.0)

    monkeypatch.setattr(train.F, "l1_loss", l1_turning_nan)
    with pytest.raises(FloatingPointError, match="NaN or Inf by step 2"):
        train.main(tiny_config(tmp_path, pairs_dir, log_every=1))
    assert not (tmp_path / "models/test/last.pt").exists()
    with pytest.raises(FloatingPointError, match="NaN or Inf weights"):
        G, D = fresh_nets(tiny_config(tmp_path, pairs_dir))
        torch.nn.init.constant_(G.final[1].bias, float("nan"))
        opt = torch.optim.Adam(G.parameters())
        save.save_checkpoint(tmp_path / "nan.pt", generator=G, discriminator=D, opt_g=opt, opt_d=opt,
                             scaler=torch.amp.GradScaler("cpu", enabled=False), epoch=0, batch=0, step=0,
                             config=tiny_config(tmp_path, pairs_dir))
    assert not (tmp_path / "nan.pt").exists()


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save.atomic_save({"value": torch.tensor(1.0)}, path)

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save.atomic_save({"value": torch.tensor(2.0)}, path)
    assert torch.load(path, weights_only=True)["value"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_learning_rate_decays_linearly_like_the_reference():
    cfg = Config(epochs=10, epochs_decay=5)
    factors = [train.lr_factor(e, cfg) for e in range(10)]
    assert factors[:5] == [1.0] * 5
    assert factors[5:] == pytest.approx([1 - k / 6 for k in range(1, 6)])
    assert all(train.lr_factor(e, Config(epochs=10)) == 1.0 for e in range(10))


def test_command_line_overrides_and_rejects():
    cfg = parse_args(["--lambda_l1", "10", "--jitter", "true", "--lr", "1e-4"])
    assert (cfg.lambda_l1, cfg.jitter, cfg.lr, cfg.epochs) == (10.0, True, 1e-4, 15)
    demo = parse_args(["--demo", "--epochs", "2"])
    assert demo.epochs == 2 and demo.data_dir == DEMO["data_dir"]
    for bad in (["--no_such_flag", "1"], ["--epochs", "many"], ["--direction", "sideways"], ["--jitter", "maybe"],
                ["--lambda", "10"], ["--num_downs", "4"], ["--n_samples", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    with pytest.raises(ValueError, match="unknown keys"):
        Config.from_dict({**Config().to_dict(), "norm_layer": "instance"})


def test_logs_curves_and_optional_tensorboard(tmp_path, pairs_dir, monkeypatch):
    written = []

    class Board:  # stands in for torch.utils.tensorboard.SummaryWriter, which needs the optional package
        def __init__(self, folder):
            written.append(("folder", folder))

        def add_scalar(self, tag, value, step):
            written.append((tag, step))

        def add_image(self, tag, image, step, dataformats):
            written.append((tag, image.shape))

        def close(self):
            written.append("closed")

    monkeypatch.setattr(train, "SummaryWriter", Board)
    train.main(tiny_config(tmp_path, pairs_dir, epochs=2, log_every=2))
    run_dir = tmp_path / "models/test"
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss_d" in r] == [2, 4, 6, 8]
    val = [r for r in log if "val_l1" in r]
    assert len(val) == 2
    for r in val:  # mean square ≥ (mean |error|)², so PSNR ≤ -20·log10(L1 / 2) on the [0, 1] scale
        assert 0 < r["val_psnr"] <= -20 * math.log10(r["val_l1"] / 2) + 1e-6
    assert Image.open(run_dir / "curves.png").size[0] > 300
    assert ("train/loss_g_l1", 8) in written and ("val/psnr", 8) in written and written[-1] == "closed"
    assert ("val/sketch_generated_real", (2 * 64 + 3 * 2, 3 * 64 + 4 * 2, 3)) in written
