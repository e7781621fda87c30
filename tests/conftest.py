"""Shared test helpers: small synthetic pair folders in tmp dirs, tiny configs. No download, no
../shared."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# one thread, here and in every process a test starts (read by torch at import): tiny nets gain
# nothing from a second one, and on a shared 2-core machine two threads wait on each other whenever
# another process holds a core (the whole suite: 4.5 min with one, 19 min with two under load)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from config import Config  # noqa: E402


def make_pairs(folder, n: int, size: int = 64, seed: int = 0) -> Path:
    """n side-by-side pairs: left an outline (black on white), right the same shape filled in
    colour."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pair = Image.new("RGB", (2 * size, size), "white")
        draw = ImageDraw.Draw(pair)
        x0, y0 = rng.integers(2, size // 3, 2)
        x1, y1 = rng.integers(2 * size // 3, size - 2, 2)
        colour = tuple(int(c) for c in rng.integers(0, 200, 3))
        shape = draw.ellipse if i % 2 else draw.rectangle
        shape((x0, y0, x1, y1), outline="black", width=1)
        shape((size + x0, y0, size + x1, y1), fill=colour)
        pair.save(folder / f"{i + 1}_AB.png")
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """One thread for each test (threads are not under test; a test of them sets its own), and
    again after it, for the fixtures of wider scope set up next: a tuner's pick sets it for the
    process."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def session_tune_cache(tmp_path_factory):
    """tune.py's cache in a tmp dir for fixtures of any scope (a module's app server tunes too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True)
def tune_cache(tmp_path, monkeypatch) -> Path:
    """tune.py's cache in a tmp dir: no test reads or writes the user's ~/.cache/pix2pix."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "pix2pix" / "tune.json"


@pytest.fixture
def pairs_dir(tmp_path) -> Path:
    """data/ with train/ (16 pairs) and val/ (4 pairs) at 64×64 per half."""
    make_pairs(tmp_path / "data" / "train", 16, seed=1)
    make_pairs(tmp_path / "data" / "val", 4, seed=2)
    return tmp_path / "data"


def as_flags(values: dict) -> list:
    """The train.py command line that sets these config values (booleans as --x / --no-x)."""
    return [(f"--{k}" if v else f"--no-{k}") if isinstance(v, bool) else f"--{k}={v}"
            for k, v in values.items()]


def tiny_config(tmp_path, data_dir, **overrides) -> Config:
    """A config small enough for a CPU test: 64×64, a 6-level UNet with 8 base filters, fp32 (a
    test of precision="auto" says so: auto times fp32 against bf16 where the CPU has native bf16,
    and would train in whichever the machine's load favoured)."""
    values = dict(data_dir=str(data_dir), image_size=64, num_downs=6, ngf=8, ndf=8, batch_size=4,
                  epochs=1, num_workers=0, models_dir=str(tmp_path / "models"),
                  samples_dir=str(tmp_path / "samples"), name="test", device="cpu", log_every=2,
                  n_samples=2, val_images=4, precision="fp32")

    return Config(**{**values, **overrides})


def save_run(path, cfg, seed: int = 0, warm: bool = False) -> tuple:
    """(path, generator): a run's last.pt at path, and generator.pt beside it, of fresh networks
    seeded by seed; warm: the running statistics moved off (0, 1) by one train-mode batch first."""
    import torch
    import save
    from discriminator import build_discriminator
    from generator import build_generator
    torch.manual_seed(seed)
    generator, discriminator = build_generator(cfg), build_discriminator(cfg)
    if warm:
        generator.train()(torch.randn(4, 3, cfg.image_size, cfg.image_size))
    opt = torch.optim.Adam(generator.parameters())
    save.save_checkpoint(path, generator=generator, discriminator=discriminator, opt_g=opt,
                         opt_d=opt, scaler=torch.amp.GradScaler("cpu", enabled=False), epoch=1,
                         batch=0, step=4, config=cfg)
    return path, generator


def pytest_sessionfinish(session, exitstatus):
    """Kill loader workers a failed or interrupted test left alive: they ignore SIGTERM (train.py's
    shutdown), so pytest's exit would wait on them forever."""
    import multiprocessing
    for child in multiprocessing.active_children():
        child.kill()
