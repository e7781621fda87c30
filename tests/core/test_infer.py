"""Checkpoints round-trip and refuse bad files; infer.py works end to end as a command."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import save
from conftest import ROOT, make_pairs, tiny_config
from generator import translate
from infer import prepare_sketch


@pytest.fixture
def checkpoint(tmp_path):
    """A briefly trained tiny generator saved as last.pt + generator.pt; returns (path, generator)."""
    cfg = tiny_config(tmp_path, tmp_path)
    torch.manual_seed(0)
    G, D = save.build_generator(cfg), save.build_discriminator(cfg)
    G.train()
    G(torch.randn(4, 3, 64, 64))  # move the running statistics away from their initial values
    opt = torch.optim.Adam(G.parameters())
    path = tmp_path / "models/test/last.pt"
    save.save_checkpoint(path, generator=G, discriminator=D, opt_g=opt, opt_d=opt,
                         scaler=torch.amp.GradScaler("cpu", enabled=False), epoch=1, batch=0, step=4, config=cfg)
    return path, G


def run_infer(*args):
    return subprocess.run([sys.executable, str(ROOT / "infer.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_checkpoint_round_trip_gives_identical_eval_outputs(checkpoint):
    path, G = checkpoint
    sketch = torch.randn(2, 3, 64, 64)
    for file in (path, path.parent / "generator.pt"):
        loaded, cfg = save.load_generator(file)
        assert cfg.ngf == 8 and cfg.num_downs == 6
        assert torch.equal(translate(loaded, sketch, paper=False), translate(G, sketch, paper=False))


def test_bad_checkpoints_give_one_clear_error(tmp_path, checkpoint):
    path, _ = checkpoint
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.pt: not a loadable checkpoint"):
        save.load_checkpoint(truncated)
    with pytest.raises(FileNotFoundError, match="missing.pt: no such checkpoint"):
        save.load_checkpoint(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="other.pt: not a pix2pix checkpoint.*missing generator, config"):
        save.load_checkpoint(other)
    foreign = tmp_path / "foreign.pt"
    torch.save({"generator": {}, "config": {"norm_layer": "instance"}}, foreign)
    with pytest.raises(ValueError, match="foreign.pt: checkpoint config is not compatible"):
        save.load_checkpoint(foreign)


class RunsCode:
    """A pickle that runs a command when loaded without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"generator": RunsCode(marker), "config": {}}, evil)
    with pytest.raises(ValueError, match="evil.pt: not a loadable checkpoint"):
        save.load_checkpoint(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # what an unsafe load would have done
    assert marker.exists()


def test_infer_end_to_end(tmp_path, checkpoint):
    path, G = checkpoint
    make_pairs(tmp_path / "pairs", 2, size=64)
    sketch = Image.new("L", (90, 60), 255)  # a grayscale, non-square sketch
    sketch.paste(0, (20, 20, 70, 22))
    sketch.save(tmp_path / "sketch.jpg")
    result = run_infer(tmp_path / "sketch.jpg", tmp_path / "pairs", "-o", tmp_path / "out",
                       "--checkpoint", path.parent / "generator.pt", "--eval")
    assert result.returncode == 0, result.stderr
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outputs == ["1_AB.png", "2_AB.png", "sketch.png"]
    # The command's eval-mode output is what the generator makes of the same prepared input.
    expected = translate(G, prepare_sketch(tmp_path / "sketch.jpg", 64)[None], paper=False)[0]
    expected = expected.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy()
    made = np.asarray(Image.open(tmp_path / "out/sketch.png"))
    assert made.shape == (64, 64, 3)
    assert np.abs(made.astype(int) - expected.astype(int)).max() <= 1


def test_pairs_use_their_left_half(tmp_path):
    pair = Image.new("RGB", (128, 64), "white")
    pair.paste((0, 0, 0), (64, 0, 128, 64))  # black right half must be ignored
    pair.save(tmp_path / "pair.png")
    assert prepare_sketch(tmp_path / "pair.png", 64).min() == 1.0
    assert prepare_sketch(tmp_path / "pair.png", 64, direction="BtoA").max() == -1.0


def test_paper_mode_is_seeded(tmp_path, checkpoint):
    path, _ = checkpoint
    make_pairs(tmp_path / "in", 1, size=64)
    runs = [run_infer(tmp_path / "in", "-o", tmp_path / f"out{k}", "--checkpoint", path, "--seed", seed)
            for k, seed in enumerate((1, 1, 2))]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    a, b, c = (np.asarray(Image.open(tmp_path / f"out{k}/1_AB.png")) for k in range(3))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("problem, expected", [
    ("missing_checkpoint", "nope.pt: no such checkpoint"),
    ("missing_input", "ghost.jpg: no such file or folder"),
    ("empty_folder", "empty: no images in this folder"),
    ("not_an_image", "notes.jpg: not a readable image"),
])
def test_bad_inputs_give_one_line_and_exit_code_2(tmp_path, checkpoint, problem, expected):
    path, _ = checkpoint
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.jpg").write_text("hello")
    make_pairs(tmp_path / "ok", 1, size=64)
    args = {"missing_checkpoint": [tmp_path / "ok", "--checkpoint", tmp_path / "nope.pt"],
            "missing_input": [tmp_path / "ghost.jpg", "--checkpoint", path],
            "empty_folder": [tmp_path / "empty", "--checkpoint", path],
            "not_an_image": [tmp_path / "notes.jpg", "--checkpoint", path]}[problem]
    result = run_infer(*args, "-o", tmp_path / "out")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("infer.py: error:") and expected in lines[0], result.stderr
