"""tools.export: ONNX and torch.export files of both test-time modes, checked against eager;
infer.py --onnx gives the photos the checkpoint gives; onnx packages stay optional: where they are
installed both sides run (absent is forced through sys.modules), else the present side skips."""

import sys

import numpy as np
import pytest
from PIL import Image

import infer
from conftest import make_pairs, save_run, tiny_config
from tools import export


@pytest.fixture
def checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, tmp_path, ngf=4, num_downs=6)
    return save_run(tmp_path / "models/test/last.pt", cfg, warm=True)[0].with_name("generator.pt")


def need(*modules):
    """Skip, naming what is missing, where the optional ONNX packages are not installed."""
    for name in modules:
        pytest.importorskip(name, reason=f"{name} is not installed (optional: "
                                         "requirements-optional.txt)")


def gray(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")).astype(int)


@pytest.mark.slow
def test_both_modes_export_and_onnx_runs_like_the_checkpoint(tmp_path, checkpoint, capsys):
    need("onnx", "onnxscript", "onnxruntime")
    assert export.main([str(checkpoint)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(line.endswith(" ok") for line in lines), lines
    folder = checkpoint.parent
    for mode in export.MODES:
        assert (folder / f"generator.{mode}.onnx").is_file()
        assert (folder / f"generator.{mode}.pt2").is_file()
    make_pairs(tmp_path / "in", 3, size=64)
    runs = {"torch": ["--checkpoint", str(checkpoint)],
            "onnx": ["--onnx", str(folder / "generator.paper.onnx")]}
    for name, source in runs.items():
        assert infer.main([str(tmp_path / "in"), "-o", str(tmp_path / name), *source,
                           "--seed", "5", "--batch_size", "2"]) == 0
    for k in (1, 2, 3):
        assert np.abs(gray(tmp_path / f"torch/{k}_AB.png")
                      - gray(tmp_path / f"onnx/{k}_AB.png")).max() <= 1
    # eval mode from the eval file; a mode mismatch is one line
    assert infer.main([str(tmp_path / "in"), "-o", str(tmp_path / "e"), "--eval", "--onnx",
                       str(folder / "generator.eval.onnx")]) == 0
    capsys.readouterr()
    assert infer.main([str(tmp_path / "in"), "--eval", "--onnx",
                       str(folder / "generator.paper.onnx")]) == 2
    assert "exported in paper mode" in capsys.readouterr().err


def test_missing_onnxruntime_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    make_pairs(tmp_path / "in", 1, size=64)
    assert infer.main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--onnx",
                       str(tmp_path / "g.onnx")]) == 2
    assert capsys.readouterr().err.strip() == (
        "infer.py: error: --onnx needs onnxruntime (pip install onnxruntime)")


def test_a_file_that_is_not_onnx_is_one_line(tmp_path, capsys):
    need("onnxruntime")
    (tmp_path / "g.onnx").write_text("hello")
    make_pairs(tmp_path / "in", 1, size=64)
    assert infer.main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--onnx",
                       str(tmp_path / "g.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'g.onnx'}: not a loadable ONNX file" in err[0]


@pytest.mark.slow
def test_without_onnx_only_the_torch_export_programs_are_written(checkpoint, monkeypatch,
                                                                  capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert export.main([str(checkpoint), "--mode", "eval"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == ("export.py: onnx is not installed (pip install onnx onnxscript "
                      "onnxruntime): writing the torch.export programs only")
    assert sorted(p.name for p in checkpoint.parent.glob("generator.*.*")) == ["generator.eval.pt2"]


def test_a_file_of_an_earlier_export_is_replaced_only_when_asked(checkpoint, capsys):
    earlier = checkpoint.with_name("generator.eval.pt2")
    earlier.write_bytes(b"earlier")
    assert export.main([str(checkpoint), "--mode", "eval"]) == 2
    assert capsys.readouterr().err == (f"export.py: error: {earlier} exists; pass --replace to "
                                       "write over it\n")
    assert earlier.read_bytes() == b"earlier"


def test_bench_without_onnxruntime_times_no_onnxruntime_rows(tmp_path, monkeypatch, capsys):
    from tools import bench
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert bench.export_onnx_files(None, tmp_path) == {}
    assert capsys.readouterr().out == ("bench.py: onnxruntime is not installed: no onnxruntime "
                                       "variants\n")
