"""What the machine or its environment decides, run both ways on any machine by forcing the
detector (never the code behind it): native bf16, CUDA capability, fp16 with the GradScaler on a
CPU, the tuner's cache folder, sched_getaffinity and posix_fallocate (macOS has neither), Pillow
without a scalable font; TensorBoard is in test_train.py, ONNX in tests/tools/test_export.py.
tests/README.md lists which test forces what. Tiny nets: bf16 is emulated on most CPUs."""

import json
import math
import os
import platform


import pytest
import torch
from PIL import Image, ImageFont

import config
import dataset
import loop
import train
import tune
from conftest import make_pairs, tiny_config
from dataset import PairCache, PairDataset
from generator import UNetGenerator
from save import CHECKPOINT_KEYS, LOSS_KEYS, load_checkpoint, plot_curves, restore
from tune import Tuner

CPU = torch.device("cpu")
TINY = dict(image_size=32, num_downs=5, ngf=4, ndf=4, batch_size=2)  # emulated bf16 stays quick


@pytest.fixture(autouse=True)
def two_rounds(monkeypatch):
    """Pinned: the tuner's fewest timed rounds (what is timed is tested, not how long)."""
    monkeypatch.setattr(tune, "MAX_ROUNDS", 2)


def spy_nets(monkeypatch) -> list:
    """The nets train.py builds, in order (the real builders run)."""
    built = []
    for name in ("build_generator", "build_discriminator"):
        real = getattr(train, name)
        monkeypatch.setattr(train, name,
                            lambda cfg, real=real: built.append(real(cfg)) or built[-1])
    return built


def parameters(net) -> dict:
    return {name: p.detach().clone() for name, p in net.named_parameters()}


# ---------------------------------------------------------------- the step --precision auto times

@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_one_step_is_a_real_training_step_under_its_precision(tmp_path, monkeypatch, precision,
                                                              dtype):
    built = spy_nets(monkeypatch)
    step = train.one_step(tiny_config(tmp_path, tmp_path, **TINY), CPU, precision)
    G, D = built
    made = []
    G.register_forward_hook(lambda module, inputs, output: made.append(output.dtype))
    before = [parameters(net) for net in (G, D)]
    losses = step()
    assert losses.shape == (3,) and torch.isfinite(losses).all(), losses
    assert made == [dtype]  # G ran under that autocast
    for net, old in zip((G, D), before):
        unchanged = [name for name, p in net.named_parameters() if torch.equal(p, old[name])]
        assert unchanged == [], f"{type(net).__name__}: not updated: {unchanged}"


# ---------------------------------------------------------------- native bf16, forced both ways

@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, False), (True, False, True),
                                                        (False, True, True)])
def test_native_bf16_on_x86_is_what_torch_reports(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert tune.native_bf16() is expected


@pytest.mark.parametrize("features, expected", [("fp asimd bf16 i8mm", True),
                                                ("fp asimd sve", False), (None, False)])
def test_native_bf16_on_arm_reads_the_cpu_features(tmp_path, monkeypatch, features, expected):
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(tune, "CPUINFO", tmp_path / "cpuinfo")  # None: missing, as on macOS
    if features is not None:
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nFeatures\t: {features}\n")
    assert tune.native_bf16() is expected
    assert "torch" in tune.machine_key()  # the cache key is made without the file too


def counted(make_step, calls: dict):
    """make_step whose steps count their runs (each runs the real step)."""
    def make(precision):
        step = make_step(precision)

        def run():
            calls[precision] = calls.get(precision, 0) + 1
            return step()
        return run
    return make


@pytest.mark.parametrize("native", [True, False])
def test_training_precision_times_real_steps_only_where_bf16_is_native(tmp_path, monkeypatch,
                                                                       native):
    monkeypatch.setattr(tune, "native_bf16", lambda: native)
    cfg, calls = tiny_config(tmp_path, tmp_path, **TINY), {}
    picked = tune.training_precision(counted(lambda p: train.one_step(cfg, CPU, p), calls))
    if native:  # a warm-up and 3 timed rounds of each, interleaved
        assert calls == {"fp32": 4, "bf16": 4} and picked in ("fp32", "bf16")
    else:
        assert calls == {} and picked == "fp32"


def timed_as(seconds: dict, now: list, make_step):
    """make_step whose real steps each take seconds[precision] on the fake clock now."""
    def make(*args):
        step = make_step(*args)

        def run():
            now[0] += seconds[args[-1]]
            return step()
        return run
    return make


@pytest.mark.parametrize("machine", ["native bf16, timed as it runs here",
                                     "native bf16, measured faster", "no native bf16"])
def test_train_main_auto_trains_in_the_precision_it_picked(tmp_path, pairs_dir, monkeypatch,
                                                           capsys, machine):
    native = machine.startswith("native")
    monkeypatch.setattr(tune, "native_bf16", lambda: native)
    picked, steps_made = [], []
    real_pick, real_step = train.training_precision, train.one_step
    monkeypatch.setattr(train, "training_precision",
                        lambda make_step: picked.append(real_pick(make_step)) or picked[-1])
    monkeypatch.setattr(train, "one_step", lambda *args: steps_made.append(args[-1])
                        or real_step(*args))
    if machine == "native bf16, measured faster":  # as on a Zen 4: the real steps, its timings
        now = [0.0]
        monkeypatch.setattr(tune, "clock", lambda: now[0])
        monkeypatch.setattr(train, "one_step",
                            timed_as({"fp32": 1.0, "bf16": 0.6}, now, train.one_step))
    made, real_build = [], train.build_generator  # each generator's output dtypes

    def build(cfg):
        G, dtypes = real_build(cfg), []
        G.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
        made.append(dtypes)
        return G
    monkeypatch.setattr(train, "build_generator", build)
    result = train.main(tiny_config(tmp_path, pairs_dir, **{**TINY, "batch_size": 4},
                                    precision="auto"))
    assert result["step"] == 4 and all(math.isfinite(result[k]) for k in LOSS_KEYS)
    assert steps_made == (["fp32", "bf16"] if native else [])
    if machine == "native bf16, measured faster":
        assert picked == ["bf16"]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[picked[0]]

    assert f"precision {str(dtype).removeprefix('torch.')}" in capsys.readouterr().out
    # the run's own generator (built after the timed steps' ones): 4 steps and validation
    assert len(made[-1]) == 5 and set(made[-1]) == {dtype}


def tiny_generator():
    torch.manual_seed(0)
    return UNetGenerator(ngf=4, num_downs=5)


@pytest.mark.parametrize("native", [True, False])
def test_the_tuner_times_bf16_only_where_it_is_native(monkeypatch, tune_cache, native):
    monkeypatch.setattr(tune, "native_bf16", lambda: native)
    tuner = Tuner(tiny_generator(), paper=True, n_images=1000, log=None)
    tuner(torch.rand(2, 3, 32, 32) * 2 - 1, [1, 2])
    timed = {name.split()[0] for name in tuner.report["ms_per_image"]}
    assert timed == ({"fp32", "bf16", "bf16w"} if native else {"fp32"})
    assert tuner.report["psnr_vs_fp32_db"][tuner.setting.name()] >= tune.BF16_BOUND_DB
    assert tuner.why.startswith("tuned") and tune_cache.is_file()


# ---------------------------------------------------------------- GPUs, without one

@pytest.mark.parametrize("capability, expected", [((9, 0), torch.bfloat16),
                                                  ((8, 0), torch.bfloat16),
                                                  ((7, 5), torch.float16),
                                                  ((6, 1), torch.float16)])
def test_auto_precision_on_a_gpu_follows_its_compute_capability(monkeypatch, capability,
                                                                 expected):
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: asked.append(device) or capability)
    cuda = torch.device("cuda")  # a name only: nothing touches a GPU
    assert train.pick_precision("auto", cuda) == expected and asked == [cuda]
    assert train.pick_precision("auto", CPU) == torch.float32  # main() asks the tuner instead
    assert train.pick_precision("fp32", cuda) == torch.float32
    assert train.pick_precision("fp16", CPU) == torch.float16


@pytest.mark.parametrize("available", [True, False])
def test_device_auto_takes_the_gpu_only_where_torch_sees_one(monkeypatch, available):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert config.pick_device("auto").type == ("cuda" if available else "cpu")
    assert config.pick_device("cpu") == CPU
    if available:
        assert config.pick_device("cuda:1") == torch.device("cuda", 1)
    else:
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            config.pick_device("cuda")


# ---------------------------------------------------------------- fp16 and the GradScaler, on a CPU

def fp16_step(cfg, scaler, sketch, photo):
    """One gan_step of fresh tiny nets under fp16 autocast: (G, D, losses, parameters before)."""
    torch.manual_seed(0)
    G, D = train.build_generator(cfg), train.build_discriminator(cfg)
    opt_g, opt_d = train.make_optimizers(G, D, cfg, CPU)
    before = [parameters(net) for net in (G, D)]
    losses = train.gan_step(G, D, opt_g, opt_d, scaler, sketch=sketch, photo=photo,
                            lambda_l1=cfg.lambda_l1,
                            autocast=torch.autocast("cpu", dtype=torch.float16))
    return G, D, losses, before


def test_fp16_on_a_cpu_scales_the_loss_and_skips_a_non_finite_step(tmp_path):
    dtype, autocast, scaler = train.mixed_precision("fp16", CPU)
    assert dtype == torch.float16 and autocast.fast_dtype == torch.float16 and scaler.is_enabled()
    cfg = tiny_config(tmp_path, tmp_path, **TINY)
    torch.manual_seed(1)
    sketch, photo = (torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(2))
    # a finite step: both nets move, the scale stays (it grows only after 2000 good steps)
    scaler = torch.amp.GradScaler("cpu", init_scale=16.0)
    G, D, losses, before = fp16_step(cfg, scaler, sketch, photo)
    assert torch.isfinite(losses).all() and scaler.get_scale() == 16.0
    for net, old in zip((G, D), before):
        assert all(not torch.equal(p, old[name]) for name, p in net.named_parameters())
    # a NaN in the batch: every gradient is NaN; both steps are skipped and the scale halves
    sketch[0, 0, 0, 0] = math.nan
    G, D, losses, before = fp16_step(cfg, scaler, sketch, photo)
    assert not torch.isfinite(losses).all() and scaler.get_scale() == 8.0
    for net, old in zip((G, D), before):
        assert all(torch.equal(p, old[name]) for name, p in net.named_parameters())
    # train.py's loop: under an enabled scaler that is a line in the log, without one it stops
    record = {"epoch": 0, "step": 3, **dict(zip(LOSS_KEYS, losses.tolist()))}
    loop.check_losses(record, scaler, tmp_path / "last.pt")
    with pytest.raises(FloatingPointError, match=r"loss is NaN or Inf by step 3 .*last\.pt"):
        loop.check_losses(record, torch.amp.GradScaler("cpu", enabled=False),
                          tmp_path / "last.pt")


def test_check_losses_says_one_line_under_an_enabled_scaler(tmp_path, capsys):
    record = {"epoch": 0, "step": 7, "loss_d": math.inf, "loss_g_gan": 0.7, "loss_g_l1": 0.5}
    loop.check_losses(record, torch.amp.GradScaler("cpu", init_scale=4.0), tmp_path / "last.pt")
    assert capsys.readouterr().out == ("step 7: non-finite fp16 loss; the GradScaler skipped "
                                       "those updates\n")
    finite = {**record, "loss_d": 0.6}
    loop.check_losses(finite, torch.amp.GradScaler("cpu", enabled=False), tmp_path / "last.pt")
    assert capsys.readouterr().out == ""


def test_train_main_in_fp16_on_a_cpu_trains_and_saves_the_scaler(tmp_path, pairs_dir, capsys):
    result = train.main(tiny_config(tmp_path, pairs_dir, **{**TINY, "batch_size": 4},
                                    precision="fp16"))
    assert result["step"] == 4 and "precision float16" in capsys.readouterr().out
    path = tmp_path / "models/test/last.pt"
    ckpt = load_checkpoint(path, keys=CHECKPOINT_KEYS)
    saved, cfg = ckpt["scaler"], ckpt["config"]
    assert saved and saved["scale"] > 0  # an enabled scaler's state, for an exact resume
    G, D = train.build_generator(cfg), train.build_discriminator(cfg)
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    restore(path, G, D, *train.make_optimizers(G, D, cfg, CPU), scaler, CPU)
    assert scaler.state_dict() == saved  # resumed with the saved scale and growth tracker


# ---------------------------------------------------------------- the tuner's cache folder

def tune_once(log=None) -> Tuner:
    tuner = Tuner(tiny_generator(), paper=False, n_images=1000, tune_threads=False, log=log)

    tuner(torch.rand(2, 3, 32, 32) * 2 - 1, [0, 0])
    return tuner


def test_without_xdg_cache_home_the_cache_is_under_home(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "native_bf16", lambda: False)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home/.cache/pix2pix/tune.json"
    assert tune.cache_path() == expected
    assert tune_once().why.startswith("tuned") and expected.is_file()
    assert tune_once().why == f"cached in {expected}"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # set but empty: as unset (the XDG rule)
    assert tune.cache_path() == expected


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""])
def test_a_corrupt_cache_file_is_tuned_over(monkeypatch, tune_cache, content):
    monkeypatch.setattr(tune, "native_bf16", lambda: False)
    tune_cache.parent.mkdir(parents=True)
    tune_cache.write_text(content)
    tuner = tune_once()
    assert tuner.why.startswith("tuned")
    entry = next(iter(json.loads(tune_cache.read_text()).values()))
    assert entry["setting"]["precision"] == tuner.setting.precision == "fp32"


def test_an_unwritable_cache_folder_tunes_each_time_and_says_nothing_wrong(tmp_path,
                                                                          monkeypatch):
    # a regular file where the folder should be: unwritable even to root (chmod is not)
    monkeypatch.setattr(tune, "native_bf16", lambda: False)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    said = []
    for _ in range(2):
        tuner = tune_once(log=said.append)
        assert tuner.why.startswith("tuned") and tuner.setting.precision == "fp32"
    assert (tmp_path / "file").read_text() == ""
    assert len(said) == 2 and all(line.endswith(
        f" s, not cached: {tmp_path / 'file/pix2pix/tune.json'} cannot be written)")
        for line in said), said



# ---------------------------------------------------------------- macOS: no affinity, no fallocate

def test_usable_cpus_is_the_affinity_or_every_cpu_without_it(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert dataset.usable_cpus() == 3
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert dataset.usable_cpus() == (os.cpu_count() or 1)


def test_the_cache_builds_without_sched_getaffinity_and_posix_fallocate(tmp_path, monkeypatch):
    folder = make_pairs(tmp_path / "pairs", 3, size=32)
    reference = PairCache(PairDataset(folder, image_size=32), tmp_path / "linux")
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    mac = PairCache(PairDataset(folder, image_size=32), tmp_path / "mac")
    assert mac.build_s > 0 and (mac.pixels == reference.pixels).all()
    assert mac.nbytes() == reference.nbytes()


# ---------------------------------------------------------------- Pillow without a scalable font

@pytest.mark.parametrize("pillow", ["before 10.1", "without FreeType"])
def test_curves_are_drawn_in_the_bitmap_font_where_pillow_has_no_scalable_one(tmp_path,
                                                                              monkeypatch,
                                                                              pillow):
    real, asked = ImageFont.load_default, []

    def load_default(size=None):  # what such a Pillow does when asked for a size
        asked.append(size)
        if size is not None:
            raise (TypeError("unexpected keyword argument 'size'") if pillow == "before 10.1"
                   else ImportError("The _imagingft C module is not installed"))
        return real()
    monkeypatch.setattr(ImageFont, "load_default", load_default)
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"epoch": 0, "step": s, "loss_d": 0.7, "loss_g_gan": 0.8,
                                       "loss_g_l1": 0.3 / s}) + "\n" for s in (1, 2, 3)))
    plot_curves(log, tmp_path / "curves.png")
    assert Image.open(tmp_path / "curves.png").size == (900, 660)
    assert asked == [15, None, 12, None]  # each size asked for, then the fixed font
