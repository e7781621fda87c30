"""Training: one step moves both networks, a short run learns, and interrupted runs resume
exactly."""

import errno
import gc
import json
import math
import multiprocessing
import os
import re
import runpy
import shutil
import signal
import sys
import types
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dataset
import loop
import save
import train
import tune
from config import DEMO, Config, parse_args
from conftest import ROOT, as_flags, make_pairs, tiny_config
from discriminator import build_discriminator
from generator import build_generator, translate


def fresh_nets(cfg):
    """The networks main(cfg) starts from: the same seed, built in the same order."""
    torch.manual_seed(cfg.seed)
    return build_generator(cfg), build_discriminator(cfg)


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


@pytest.mark.slow  # 80 steps: ~15 s on 2 cores
def test_short_training_lowers_validation_l1(tmp_path):
    make_pairs(tmp_path / "data/train", 32, seed=1)
    make_pairs(tmp_path / "data/val", 8, seed=2)
    cfg = tiny_config(tmp_path, tmp_path / "data", ngf=16, ndf=16, epochs=10, log_every=100,
                      val_images=8)
    G0, _ = fresh_nets(cfg)
    val = dataset.PairDataset(tmp_path / "data/val", image_size=64)
    sketch, photo = (torch.stack(t) for t in zip(*(val[i] for i in range(len(val)))))
    torch.manual_seed(cfg.seed)
    untrained_l1 = F.l1_loss(translate(G0, sketch), photo).item()
    val_l1 = train.main(cfg)["val_l1"]
    assert len(val_l1) == 10
    # Measured on 2 CPU cores: untrained ~0.75, then 0.74 after one epoch and 0.34 after ten (80
    # steps).
    assert val_l1[-1] < 0.6 * untrained_l1, (untrained_l1, val_l1)


def interrupt_at_step(monkeypatch, n: int):
    """Send ourselves SIGINT (Ctrl-C) as the n-th training step begins."""
    calls, original = [], train.gan_step

    def gan_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "gan_step", gan_step)


LOADINGS = {  # how the training pairs reach the step
    "files": {},
    "files, jitter, 2 workers": dict(jitter=True, load_size=72, num_workers=2),
    "cache, jitter": dict(jitter=True, load_size=72, cache=True),
}


@pytest.mark.parametrize("loading", [
    "files", pytest.param("files, jitter, 2 workers", marks=pytest.mark.slow), "cache, jitter"])
def test_ctrl_c_mid_epoch_then_resume_matches_an_unbroken_run(tmp_path, pairs_dir, monkeypatch,
                                                              loading):
    # the unbroken run reads files with 0 workers: the cache must give it the same batches, jitter
    # included, and workers the same crops whichever of them loads a pair
    options = dict(LOADINGS[loading], epochs=2, cache_dir=str(tmp_path / "cache"))
    unbroken = train.main(tiny_config(tmp_path / "a", pairs_dir, **{**options, "num_workers": 0,
                                                                       "cache": False}))
    cfg = tiny_config(tmp_path / "b", pairs_dir, **options)
    interrupt_at_step(monkeypatch, 2)
    with pytest.raises(SystemExit) as stopped:
        train.main(cfg)
    assert stopped.value.code == 130
    # the stopped run's loader workers are gone at once, not when the collector finds them
    assert multiprocessing.active_children() == []
    monkeypatch.undo()
    ckpt = save.load_checkpoint(tmp_path / "b/models/test/last.pt", keys=save.CHECKPOINT_KEYS)
    # the batch in flight was finished
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (0, 2, 2)
    loads, load = [], dataset.PairDataset.load
    monkeypatch.setattr(dataset.PairDataset, "load",
                        lambda self, path, crop=None: loads.append(path) or load(self, path, crop))
    resumed = train.main(Config(**{**cfg.to_dict(), "resume": True}))
    assert resumed["step"] == unbroken["step"] == 8
    if cfg.cache:  # the 4 val pairs alone are decoded: training reads the cache
        assert len(loads) == 4 and len(list(tmp_path.glob("cache/*.u8"))) == 1
    final_a = torch.load(tmp_path / "a/models/test/last.pt", weights_only=True)
    final_b = torch.load(tmp_path / "b/models/test/last.pt", weights_only=True)
    for net in ("generator", "discriminator"):
        for name, tensor in final_a[net].items():
            assert torch.equal(tensor, final_b[net][name]), f"{net}.{name} differs after resume"
    assert resumed["val_l1"][-1] == unbroken["val_l1"][-1]


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
        save.save_checkpoint(tmp_path / "nan.pt", generator=G, discriminator=D, opt_g=opt,
                             opt_d=opt, scaler=torch.amp.GradScaler("cpu", enabled=False),
                             epoch=0, batch=0, step=0, config=tiny_config(tmp_path, pairs_dir))
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


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_an_atomic_write_has_the_mode_open_would_give(tmp_path, monkeypatch, umask):
    monkeypatch.setattr(save, "UMASK", umask)  # read once at import: the process's own
    save.atomic_save({"value": torch.tensor(1.0)}, tmp_path / "last.pt")
    assert (tmp_path / "last.pt").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_learning_rate_decays_linearly_like_the_reference():
    cfg = Config(epochs=10, epochs_decay=5)
    factors = [train.lr_factor(e, cfg) for e in range(10)]
    assert factors[:5] == [1.0] * 5
    assert factors[5:] == pytest.approx([1 - k / 6 for k in range(1, 6)])
    assert all(train.lr_factor(e, Config(epochs=10)) == 1.0 for e in range(10))


def test_command_line_overrides_and_rejects():
    cfg = parse_args(["--lambda_l1", "10", "--jitter", "--lr", "1e-4"])
    assert cfg.jitter and not parse_args(["--jitter", "--no-jitter"]).jitter
    assert (cfg.lambda_l1, cfg.jitter, cfg.lr, cfg.epochs) == (10.0, True, 1e-4, 15)
    demo = parse_args(["--demo", "--epochs", "2"])
    assert demo.epochs == 2 and demo.data_dir == DEMO["data_dir"]
    for bad in (["--no_such_flag", "1"], ["--epochs", "many"], ["--direction", "sideways"],
                ["--jitter", "maybe"], ["--lambda", "10"], ["--num_downs", "4"],
                ["--n_samples", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    with pytest.raises(ValueError, match="unknown keys"):
        Config.from_dict({**Config().to_dict(), "norm_layer": "instance"})


def test_logs_and_curves_without_tensorboard_and_one_line_that_says_so(tmp_path, pairs_dir,
                                                                       monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    train.main(tiny_config(tmp_path, pairs_dir, epochs=2, log_every=2))
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if "tensorboard" in line] == [
        "tensorboard: not installed, so the run logs to log.jsonl and curves.png only "
        "(pip install -r requirements-optional.txt)"]
    run_dir = tmp_path / "models/test"
    assert not (run_dir / "tensorboard").exists()
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss_d" in r] == [2, 4, 6, 8]
    val = [r for r in log if "val_l1" in r]
    assert len(val) == 2
    for r in val:  # mean square ≥ (mean |error|)², so PSNR ≤ -20·log10(L1 / 2) on the [0, 1] scale
        assert 0 < r["val_psnr"] <= -20 * math.log10(r["val_l1"] / 2) + 1e-6
    assert Image.open(run_dir / "curves.png").size[0] > 300


def test_tensorboard_gets_the_scalars_and_the_grid_where_it_is_installed(tmp_path, pairs_dir,
                                                                          capsys):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (optional: "
                                              "requirements-optional.txt)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    train.main(tiny_config(tmp_path, pairs_dir, epochs=1, log_every=2))
    assert "tensorboard: not installed" not in capsys.readouterr().out
    events = EventAccumulator(str(tmp_path / "models/test/tensorboard"))
    events.Reload()
    assert {"train/loss_d", "train/loss_g_l1", "train/img_per_s", "val/l1",
            "val/psnr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss_g_l1")] == [2, 4]
    assert [e.step for e in events.Scalars("val/psnr")] == [4]
    grid = events.Images("val/sketch_generated_real")
    assert [(g.step, g.width, g.height) for g in grid] == [(4, 3 * 64 + 4 * 2, 2 * 64 + 3 * 2)]



# ------------------------------------------------------------------------------- resume and batches

def test_every_step_has_a_full_batch_and_a_too_small_set_is_refused(tmp_path, monkeypatch):
    make_pairs(tmp_path / "data/train", 18, seed=1)  # 18 = 4 × 4 + 2: the last 2 would be a batch
    make_pairs(tmp_path / "data/val", 2, seed=2)
    sizes, real_step = [], train.gan_step
    monkeypatch.setattr(train, "gan_step", lambda *nets, sketch, **rest:
                        sizes.append(len(sketch)) or real_step(*nets, sketch=sketch, **rest))
    assert train.main(tiny_config(tmp_path, tmp_path / "data"))["step"] == 4
    assert sizes == [4, 4, 4, 4]  # drop_last: one shape for compile and CUDA graphs
    with pytest.raises(ValueError, match=r"train: 18 training pairs, fewer than one step's 32 × 1"):
        train.main(tiny_config(tmp_path, tmp_path / "data", batch_size=32, name="larger"))


def saved_run(tmp_path, pairs_dir, **overrides):
    """A config, fresh networks with optimizers and scaler, and a checkpoint writer for them."""
    cfg = tiny_config(tmp_path, pairs_dir, **overrides)
    G, D = fresh_nets(cfg)
    opt_g, opt_d = train.make_optimizers(G, D, cfg, torch.device("cpu"))
    scaler = torch.amp.GradScaler("cpu", enabled=False)

    def write(path, **position):
        save.save_checkpoint(path, generator=G, discriminator=D, opt_g=opt_g, opt_d=opt_d,
                             scaler=scaler, config=cfg, **position)
    return cfg, (G, D, opt_g, opt_d, scaler), write


def test_resume_keeps_this_runs_optimizer_settings(tmp_path, pairs_dir):
    cfg = tiny_config(tmp_path, pairs_dir)
    train.main(cfg)  # 4 Adam steps with betas (0.5, 0.999), not fused
    new = Config(**{**cfg.to_dict(), "beta1": 0.9, "beta2": 0.99, "epochs": 2, "resume": True})
    G, D = fresh_nets(new)
    # fused=True, as make_optimizers does on a GPU: a CPU checkpoint resumed there keeps fused Adam
    opt_g, opt_d = (torch.optim.Adam(net.parameters(), lr=new.lr, betas=(0.9, 0.99), fused=True)
                    for net in (G, D))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    save.resume(tmp_path / "models/test/last.pt", new, G, D, opt_g, opt_d, scaler,
                torch.device("cpu"))
    for opt in (opt_g, opt_d):
        group = opt.param_groups[0]
        assert group["betas"] == (0.9, 0.99) and group["fused"] is True
        assert opt.state[group["params"][0]]["step"].item() == 4  # the moments are the checkpoint's
    G(torch.zeros(2, 3, 64, 64)).mean().backward()
    opt_g.step()  # the fused kernel runs on the restored state


def test_resume_from_another_number_of_processes_goes_by_images_seen(tmp_path, pairs_dir):
    # The processes share one shuffle, interleaved: after 4 steps of 2 images on 1 process, 2
    # processes at batch 2 have consumed the same 8 positions, whatever their split.
    one = list(dataset.EpochSampler(16, seed=0))
    rest = [list(dataset.EpochSampler(16, seed=0, rank=r, world_size=2, start=2 * 2))
            for r in (0, 1)]
    assert sorted(rest[0] + rest[1]) == sorted(one[8:])
    cfg, nets, write = saved_run(tmp_path, pairs_dir, batch_size=2)
    path, cpu = tmp_path / "last.pt", torch.device("cpu")
    write(path, epoch=0, batch=4, step=4, world_size=1)  # 8 images of the epoch seen
    assert save.resume(path, cfg, *nets, cpu, world_size=2) == (0, 2, 4)
    with pytest.raises(ValueError, match=r"last\.pt: saved by 1 process\(es\) after 8 images"):
        save.resume(path, cfg, *nets, cpu, world_size=3)
    write(path, epoch=3, batch=3, step=27, world_size=2)  # 12 images
    assert save.resume(path, cfg, *nets, cpu, world_size=1) == (3, 6, 27)
    old = torch.load(path, weights_only=True)
    del old["world_size"]  # a checkpoint from before world_size was saved: one process
    torch.save(old, path)
    assert save.resume(path, cfg, *nets, cpu) == (3, 3, 27)


def test_resume_lets_go_of_the_checkpoint(tmp_path, pairs_dir, monkeypatch):
    cfg, nets, write = saved_run(tmp_path, pairs_dir)
    write(tmp_path / "last.pt", epoch=1, batch=0, step=4)
    loaded, load_checkpoint = [], save.load_checkpoint

    class Checkpoint(dict):  # a dict that a weak reference can point to
        pass

    def load(path, keys, **options):
        ckpt = Checkpoint(load_checkpoint(path, keys, **options))
        loaded.append(weakref.ref(ckpt))
        return ckpt

    monkeypatch.setattr(save, "load_checkpoint", load)
    assert save.resume(tmp_path / "last.pt", cfg, *nets, torch.device("cpu")) == (1, 0, 4)
    gc.collect()
    assert loaded[0]() is None  # about 1.1 GB at full size: not held for the whole run


def test_sync_bn_with_compile_is_refused_with_the_reason(tmp_path, pairs_dir):
    cfg = tiny_config(tmp_path, pairs_dir, sync_bn=True, compile=True)
    with pytest.raises(ValueError, match="sync_bn with compile: .* every SyncBatchNorm layer"):
        train.check_sync_bn(cfg, world_size=2, device=torch.device("cpu"))
    assert not train.check_sync_bn(cfg, world_size=1, device=torch.device("cpu"))  # nothing to sync


def test_workers_hand_over_uint8_and_the_device_converts_batches_exactly(tmp_path, pairs_dir):
    cfg = tiny_config(tmp_path, pairs_dir)
    loader, sampler, _, _, _ = train.load_data(cfg, 0, 1, torch.device("cpu"))
    sketch, photo = next(iter(loader))
    assert sketch.dtype == photo.dtype == torch.uint8  # a quarter of float32's bytes per pair
    floats = dataset.PairDataset(pairs_dir / "train", image_size=64)  # the float API as it was
    expected = torch.stack([floats[i][1] for i in list(sampler)[:cfg.batch_size]])
    assert torch.equal(dataset.to_float(photo), expected)


def test_compile_mode_is_checked():
    cfg = parse_args(["--compile", "--compile_mode", "reduce-overhead"])
    assert cfg.compile_mode == "reduce-overhead"
    with pytest.raises(SystemExit):
        parse_args(["--compile_mode", "fastest"])
    assert Config.from_dict({k: v for k, v in Config().to_dict().items()
                             if k != "compile_mode"}).compile_mode == "default"  # older checkpoints


# ---------------------------------------------------------------- what a resume keeps and changes

def final_weights(run_root):
    ckpt = torch.load(run_root / "models/test/last.pt", weights_only=True)
    return {f"{net}.{k}": v for net in ("generator", "discriminator") for k, v in ckpt[net].items()}


def test_auto_precision_is_decided_once_and_a_resume_keeps_it(tmp_path, pairs_dir, monkeypatch):
    monkeypatch.setattr(tune, "native_bf16", lambda: False)  # this CPU: fp32 without timing
    unbroken = tiny_config(tmp_path / "a", pairs_dir, epochs=2, precision="auto", batch_size=8)
    train.main(unbroken)
    cfg = tiny_config(tmp_path / "b", pairs_dir, epochs=1, precision="auto", batch_size=8)
    train.main(cfg)
    last = tmp_path / "b/models/test/last.pt"
    assert save.load_checkpoint(last)["config"].precision == "fp32"  # the choice, not "auto"
    assert json.loads((last.parent / "config.json").read_text())["precision"] == "fp32"
    # resumed on a machine where native bf16 measures faster: the run stays what it was
    timed = []
    monkeypatch.setattr(tune, "native_bf16", lambda: True)
    monkeypatch.setattr(train, "training_precision", lambda step: timed.append(1) or "bf16")
    train.main(Config(**{**cfg.to_dict(), "epochs": 2, "resume": True}))
    assert timed == []  # not timed again
    expected, resumed = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    for name, tensor in expected.items():
        assert torch.equal(tensor, resumed[name]), f"{name} differs after resume"
    # and where it decides, it decides what the machine says
    fresh = train.run_precision(tiny_config(tmp_path / "c", pairs_dir, precision="auto"),
                                torch.device("cpu"), 1, tmp_path / "c/models/test/last.pt")
    assert fresh.precision == "bf16" and timed == [1]


def test_a_resume_that_changes_precision_or_image_size_warns_in_one_line(tmp_path, pairs_dir,
                                                                         capsys):
    cfg = tiny_config(tmp_path, pairs_dir, precision="fp32", batch_size=8)
    train.main(cfg)
    capsys.readouterr()
    changed = Config(**{**cfg.to_dict(), "precision": "bf16", "image_size": 128, "resume": True,
                        "num_workers": 1, "log_every": 3})  # one epoch: nothing left to train
    train.main(changed)
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert len(warnings) == 1, warnings
    assert re.fullmatch(r"warning: .*last\.pt: resuming with image_size=64 \(now 128\), "
                        r"precision=fp32 \(now bf16\): the run goes on, but not as an unbroken "
                        r"run would", warnings[0])  # num_workers and log_every change nothing
    # and it does go on: the networks are convolutional, the position in the epoch is by pairs
    bigger = Config(**{**changed.to_dict(), "precision": "fp32", "epochs": 2})
    assert train.main(bigger)["step"] == 4
    assert save.load_checkpoint(tmp_path / "models/test/last.pt")["config"].image_size == 128


def test_an_older_checkpoint_without_autos_choice_decides_again_and_says_so(tmp_path, pairs_dir,
                                                                            monkeypatch, capsys):
    cfg, _, write = saved_run(tmp_path, pairs_dir, precision="auto")  # as saved before
    path = tmp_path / "models/test/last.pt"
    write(path, epoch=1, batch=0, step=4)
    monkeypatch.setattr(train, "training_precision", lambda step: "fp32")
    resumed = train.run_precision(Config(**{**cfg.to_dict(), "resume": True}),
                                  torch.device("cpu"), 1, path)
    assert resumed.precision == "fp32"
    assert re.fullmatch(r"warning: .*last\.pt does not say what --precision auto chose \(an older "
                        r"checkpoint\); deciding again, give --precision to be sure it is the same"
                        r"\n", capsys.readouterr().out)


class FillingDisk:
    """A file on a disk that fills after room bytes: then its writes fail as a full disk's do."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_a_model_too_large_for_the_memory_is_refused_before_any_work(tmp_path, pairs_dir,
                                                                   monkeypatch):
    import config
    monkeypatch.setattr(config, "available_memory", lambda: 2**30)  # pinned: 1 GiB free
    built, real_load_data = [], train.load_data
    monkeypatch.setattr(train, "load_data", lambda *args: built.append(1) or real_load_data(*args))
    # 4 × 5,000² weights in G's second layer alone: 0.4 GB each; the whole far beyond 1 GiB
    cfg = tiny_config(tmp_path, pairs_dir, ngf=5000)
    with pytest.raises(ValueError, match=r"^\S+models/test: config: ngf=5000, num_downs=6, ndf=8 "
                                         r"make a model of [\d,]+ numbers \([\d.]+ GiB\), more "
                                         r"than the 1.0 GiB of memory available here; not built$"):
        train.main(cfg)
    assert not built and not (tmp_path / "models/test").exists()  # refused before any work
    monkeypatch.setattr(config, "available_memory", lambda: None)  # a machine that does not say
    cfg = tiny_config(tmp_path, pairs_dir)  # ...and a model that fits runs as always
    assert train.main(cfg)["step"] == 4 and built == [1]


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_last_checkpoint(tmp_path, pairs_dir,
                                                                           monkeypatch, capsys):
    # torch.save swallows its file's OSError and fails later, with a RuntimeError of its own
    with pytest.raises(RuntimeError, match="inline_container.cc.*unexpected pos"):
        torch.save({"w": torch.zeros(10_000)}, FillingDisk(open(tmp_path / "x.pt", "wb"), 1000))
    cfg = tiny_config(tmp_path, pairs_dir, precision="fp32", batch_size=8)
    train.main(cfg)
    run_dir = tmp_path / "models/test"
    before = (run_dir / "last.pt").read_bytes()
    real_fdopen = os.fdopen

    def fdopen(fd, *args, **kwargs):  # the next checkpoint's temporary file fills the disk
        file = real_fdopen(fd, *args, **kwargs)
        named = Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".last.pt.")
        return FillingDisk(file, 64 * 1024) if named else file

    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: types.SimpleNamespace(free=48 * 1024))
    monkeypatch.setattr(sys, "argv", ["train.py", *as_flags({**cfg.to_dict(), "epochs": 2,
                                                             "resume": True})])
    with pytest.raises(SystemExit) as exited:  # the command itself, its error path included
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    line = re.fullmatch(
        rf"train\.py: error: {re.escape(str(run_dir / 'last.pt'))}: cannot write it: No space left "
        rf"on device \(48 KiB free in {re.escape(str(run_dir))}; it needs more than ([\d.]+) "
        r"(KiB|MiB)\); the previous last\.pt, if any, is unchanged", errors[0])
    assert len(errors) == 1 and line, errors
    # at least what the disk could not take: the 64 KiB it did and the write it refused
    assert float(line[1]) * {"KiB": 2**10, "MiB": 2**20}[line[2]] > 64 * 1024
    assert (run_dir / "last.pt").read_bytes() == before
    assert not list(run_dir.glob(".*.tmp"))  # no temporary file left


# ---------------------------------------------------------------- what the GPU path relies on

def test_the_loop_times_training_steps_alone_and_marks_each_for_cuda_graphs(tmp_path, pairs_dir,
                                                                            monkeypatch):
    # a fake clock: every step takes 1 s, the first (compile, autotuning) 100 s more, each epoch's
    # validation 1000 s, each checkpoint 500 s; every logged speed is then one step's images per
    # second. And --compile's
    # wiring, compile itself left out (on this CPU it takes ~30 s even with its eager backend;
    # tests/test_cuda.py compiles for real): CUDA graphs need each step announced before it runs
    now, events = [0.0], []
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    real_step, real_validate, real_save = train.gan_step, train.validate, train.save_checkpoint
    mark = torch.compiler.cudagraph_mark_step_begin

    def step(*args, **kwargs):
        now[0] += 1 + (100 if "step" not in events else 0)
        events.append("step")
        return real_step(*args, **kwargs)

    def validate(*args, **kwargs):
        now[0] += 1000
        return real_validate(*args, **kwargs)

    def save_checkpoint(*args, **kwargs):
        now[0] += 500
        return real_save(*args, **kwargs)

    monkeypatch.setattr(train, "gan_step", step)
    monkeypatch.setattr(train, "validate", validate)
    monkeypatch.setattr(train, "save_checkpoint", save_checkpoint)
    monkeypatch.setattr(torch, "compile", lambda net, **options: events.append(options) or net)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin",
                        lambda: events.append("mark") or mark())  # callable on a CPU too
    train.main(tiny_config(tmp_path, pairs_dir, precision="fp32", epochs=2, log_every=1,
                           image_size=32, num_downs=5, save_every=2,  # 4 steps per epoch
                           compile=True, compile_mode="reduce-overhead"))
    log = [json.loads(line) for line in (tmp_path / "models/test/log.jsonl").read_text()
           .splitlines()]
    speeds = [r.get("img_per_s") for r in log if "loss_d" in r]
    assert speeds == [None] + [4.0] * 7  # the first step alone: no speed; then 4 images per s
    assert events == [{"mode": "reduce-overhead", "dynamic": False}] * 2 + ["mark", "step"] * 8


def test_a_cpu_checkpoint_resumes_under_channels_last_and_fused_adam(tmp_path, pairs_dir):
    # a CPU run's Adam moments are contiguous; on a GPU the nets are channels_last and fused Adam
    # pairs each moment with its parameter's memory (CUDA refuses mismatched strides, the CPU
    # kernel silently pairs the wrong elements): the restored moments take the parameter's layout
    cfg = tiny_config(tmp_path, pairs_dir, precision="fp32", ndf=4)
    torch.manual_seed(0)
    batch = torch.rand(2, 6, 32, 32) * 2 - 1

    def adam_step(D, opt, memory_format=torch.contiguous_format):
        opt.zero_grad()
        D(batch.contiguous(memory_format=memory_format)).square().mean().backward()
        opt.step()

    D = build_discriminator(cfg)
    opt = torch.optim.Adam(D.parameters(), lr=0.01, betas=(0.5, 0.999))  # as on a CPU
    for _ in range(2):
        adam_step(D, opt)
    torch.save({"opt": opt.state_dict(), "weights": D.state_dict()}, tmp_path / "ckpt.pt")
    adam_step(D, opt)  # the unbroken run's third step
    ckpt = save.safe_load(tmp_path / "ckpt.pt")
    resumed = build_discriminator(cfg)
    resumed.load_state_dict(ckpt["weights"])
    resumed.to(memory_format=torch.channels_last)
    fused = torch.optim.Adam(resumed.parameters(), lr=0.01, betas=(0.5, 0.999), fused=True)
    save.load_optimizer(fused, ckpt["opt"])
    for p in resumed.parameters():
        assert all(fused.state[p][k].stride() == p.stride() for k in ("exp_avg", "exp_avg_sq"))
    adam_step(resumed, fused, torch.channels_last)
    for name, p in resumed.named_parameters():
        torch.testing.assert_close(p, D.get_parameter(name), rtol=1e-4, atol=1e-6, msg=name)
