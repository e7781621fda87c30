"""--pretrained in the tools: evaluate and app use models/pretrained/NAME/generator.pt (cached here,
so nothing is fetched; download and conversion are pinned in tests/core/test_pretrained.py)."""

import json

import pytest
import torch

import save
from generator import build_generator
from pretrained import PRETRAINED_URL_ENV
from conftest import make_pairs, tiny_config
from tools import app, evaluate


@pytest.fixture
def cached(tmp_path, monkeypatch):
    """A converted generator where pretrained_checkpoint keeps it; the working directory is
    tmp_path."""
    monkeypatch.chdir(tmp_path)
    # a fetch would fail
    monkeypatch.setenv(PRETRAINED_URL_ENV, "http://127.0.0.1:9/unreachable")
    cfg = tiny_config(tmp_path, tmp_path / "data", name="edges2shoes",
                      dropout_blocks="authors_pytorch")
    torch.manual_seed(0)
    path = tmp_path / "models" / "pretrained" / "edges2shoes" / "generator.pt"
    weights = build_generator(cfg).state_dict()
    save.atomic_save({"generator": weights, "config": cfg.to_dict(), "step": 0}, path)
    return path


def test_evaluate_pretrained_scores_the_cached_generator(tmp_path, cached, capsys):
    make_pairs(tmp_path / "data" / "val", 2, seed=3)
    argv = ["--pretrained", "edges2shoes", "--data", "data/val", "--eval", "--device", "cpu"]
    assert evaluate.main(argv) == 0
    report = json.loads((tmp_path / "results" / "pretrained_edges2shoes"
                         / "results.json").read_text())
    assert report["checkpoint"] == str(cached.relative_to(tmp_path)) and len(report["images"]) == 2
    with pytest.raises(SystemExit):  # one of the two is required, and only one
        evaluate.main(["--data", "data/val"])
    with pytest.raises(SystemExit):
        evaluate.main(["--pretrained", "edges2shoes", "--checkpoint", str(cached)])


def test_app_pretrained_serves_the_cached_generator(tmp_path, cached, monkeypatch, capsys):
    made = []

    def make_server(checkpoint, *args, **kwargs):
        server = original(checkpoint, *args, **kwargs)
        made.append(server.app)

        def stop():
            raise KeyboardInterrupt  # as Ctrl+C would
        server.serve_forever = stop
        return server

    original = app.make_server
    monkeypatch.setattr(app, "make_server", make_server)
    assert app.main(["--pretrained", "edges2shoes", "--port", "0", "--device", "cpu"]) == 0
    assert made[0].checkpoint == cached.relative_to(tmp_path)
    assert made[0].cfg.dropout_blocks == "authors_pytorch"
    assert "serving models/pretrained/edges2shoes/generator.pt" in capsys.readouterr().out
