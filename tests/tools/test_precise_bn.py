"""tools.precise_bn: running statistics become the plain average of training-batch statistics;
paper mode is untouched; bad input is one line."""

import torch
import torch.nn as nn

import save
from conftest import make_pairs, save_run, tiny_config
from generator import build_generator, translate
from tools import precise_bn


def test_running_statistics_are_the_average_of_the_batch_statistics(tmp_path):
    torch.manual_seed(0)
    G = build_generator(tiny_config(tmp_path, tmp_path, dropout=0.0))
    first = G.downs[1][-1]  # the first batch norm: its input is deterministic
    batches = [torch.rand(4, 3, 64, 64) * 2 - 1 for _ in range(3)]
    seen = precise_bn.recompute_batchnorm(G.eval(), iter(batches))
    assert seen == 12 and not G.training and first.momentum == 0.1  # state restored
    with torch.no_grad():
        inputs = [G.downs[1][:-1](G.downs[0](b)) for b in batches]  # (4, C, 16, 16) each
    means = torch.stack([x.mean((0, 2, 3)) for x in inputs]).mean(0)
    variances = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs]).mean(0)
    torch.testing.assert_close(first.running_mean, means, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(first.running_var, variances, atol=1e-5, rtol=1e-4)


def test_cli_writes_a_new_checkpoint_whose_paper_mode_is_unchanged(tmp_path, capsys):
    make_pairs(tmp_path / "data/train", 8, size=64, seed=1)
    cfg = tiny_config(tmp_path, tmp_path / "data")
    path, G = save_run(tmp_path / "models/test/last.pt", cfg)
    generator_pt = path.parent / "generator.pt"
    assert precise_bn.main([str(generator_pt), "--images", "8"]) == 0
    assert "over 8 images" in capsys.readouterr().out
    fixed, fixed_cfg = save.load_generator(path.parent / "generator_precise_bn.pt")
    assert fixed_cfg == cfg
    norms = [m for m in fixed.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 2 for m in norms)  # 8 images in batches of 4
    sketch = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(translate(fixed, sketch, seeds=[1, 2]), translate(G, sketch, seeds=[1, 2]))
    assert not torch.allclose(translate(fixed, sketch, paper=False),
                              translate(G, sketch, paper=False))
    # bad input, or a file already there: one line
    written = (path.parent / "generator_precise_bn.pt").read_bytes()
    assert precise_bn.main([str(tmp_path / "nope.pt")]) == 2
    assert precise_bn.main([str(generator_pt), "--images", "2", "--replace"]) == 2
    assert precise_bn.main([str(generator_pt), "--images", "8", "--seed", "1"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [f"precise_bn.py: error: {tmp_path / 'nope.pt'}: no such checkpoint",
                      "precise_bn.py: error: --images 2 is less than one batch of 4",
                      f"precise_bn.py: error: {path.parent / 'generator_precise_bn.pt'} exists; "
                      "pass --replace to write over it"]
    assert (path.parent / "generator_precise_bn.pt").read_bytes() == written
    assert precise_bn.main([str(generator_pt), "--images", "8", "--seed", "1", "--replace"]) == 0
    assert (path.parent / "generator_precise_bn.pt").read_bytes() != written
