"""The authors' published weights, offline: a generator in their layout, served from 127.0.0.1,
converted and run by infer.py --pretrained, gives that network's own output, in eval mode and in
seeded paper mode."""

import _thread
import functools
import http.server
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import infer
import pretrained
from config import Config
from dataset import to_image, to_tensor
from generator import build_generator, translate
from pretrained import convert_authors_generator, fetch
from save import load_generator


# ---------------------------------------------------------------- the authors' layout, re-created

class AuthorsBlock(nn.Module):
    """One skip block laid out as in the authors' models/networks.py: its layers in an nn.Sequential
    named model, the inner block nested inside, output cat([input, model(input)]) but at the
    outermost.
    Their LeakyReLU is in place, so the skip half carries LeakyReLU(input): kept, as in their
    numbers."""

    def __init__(self, outer: int, inner: int, submodule=None, in_ch=None, outermost=False,
                 dropout=False):
        super().__init__()
        self.outermost = outermost
        # batch norm next
        conv = nn.Conv2d(in_ch or outer, inner, 4, stride=2, padding=1, bias=False)
        if outermost:
            layers = [conv, submodule, nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1),
                      nn.Tanh()]
        elif submodule is None:  # innermost: no norm after the down-conv
            layers = [nn.LeakyReLU(0.2, True), conv, nn.ReLU(True),
                      nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), conv, nn.BatchNorm2d(inner), submodule,
                      nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=False),
                      nn.BatchNorm2d(outer)]
            layers += [nn.Dropout(0.5)] if dropout else []
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class AuthorsUNet(nn.Module):
    """Their UnetGenerator(3, 3, num_downs, ngf, BatchNorm2d, use_dropout=True), random weights and
    non-trivial batch-norm statistics."""

    def __init__(self, ngf: int, num_downs: int, in_ch: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        block = AuthorsBlock(8 * ngf, 8 * ngf)
        for _ in range(num_downs - 5):
            block = AuthorsBlock(8 * ngf, 8 * ngf, block, dropout=True)
        for outer, inner in ((4 * ngf, 8 * ngf), (2 * ngf, 4 * ngf), (ngf, 2 * ngf)):
            block = AuthorsBlock(outer, inner, block)
        self.model = AuthorsBlock(3, ngf, block, in_ch=in_ch, outermost=True)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.normal_(1.0, 0.2)
                    m.bias.normal_(0.0, 0.2)
                    m.running_mean.normal_(0.0, 0.3)
                    m.running_var.uniform_(0.5, 2.0)
                elif isinstance(m, nn.ConvTranspose2d) and m.bias is not None:
                    m.bias.normal_(0.0, 0.1)

    def forward(self, sketch):
        return self.model(sketch)


def authors_file(net: nn.Module, path) -> None:
    """Save as their file is: a bare state dict, old (pre-zip) format, no num_batches_tracked."""
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path, _use_new_zipfile_serialization=False)


def authors_output(net: nn.Module, sketch: torch.Tensor, seed=None) -> torch.Tensor:
    """Their eval mode (seed None), or their test in train mode with dropout after
    manual_seed(seed)."""
    net.train(seed is not None)
    with torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        return net(sketch)


# ---------------------------------------------------------------- served offline

class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        self.server.requests.append(self.path)


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A folder served on 127.0.0.1 as PIX2PIX_PRETRAINED_URL; the working directory is tmp_path."""
    for proxy in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    # the test files are small: no known size for their names, only the cap
    monkeypatch.setattr(pretrained, "DOWNLOAD_BYTES", {})
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(Handler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("PIX2PIX_PRETRAINED_URL",
                       f"http://127.0.0.1:{httpd.server_port}/models-pytorch/")
    monkeypatch.chdir(tmp_path)
    (folder / "models-pytorch").mkdir()
    httpd.folder = folder / "models-pytorch"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_infer_pretrained_gives_the_authors_network_output(served, tmp_path):
    net = AuthorsUNet(ngf=8, num_downs=8)  # their unet_256 at 1/8 of the width
    authors_file(net, served.folder / "edges2shoes.pth")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(
        tmp_path / "sketch.png")
    sketch = to_tensor(Image.open(tmp_path / "sketch.png").convert("RGB"))[None]

    # --no-fit: the network must see exactly this image (fitting would crop and thin the noise)
    plain = ["sketch.png", "--pretrained", "edges2shoes", "--no-fit"]
    assert infer.main([*plain, "--eval", "-o", "eval"]) == 0
    expected = np.asarray(to_image(authors_output(net, sketch)[0]), dtype=np.int16)
    assert expected.std() > 10  # a picture with contrast, not a flat one
    assert np.abs(read_png(tmp_path / "eval" / "sketch.png") - expected).max() <= 1

    assert infer.main([*plain, "--seed", "3", "-o", "paper"]) == 0
    expected_paper = np.asarray(to_image(authors_output(net, sketch, seed=3)[0]), dtype=np.int16)
    assert np.abs(expected_paper - expected).mean() > 2  # dropout and batch statistics do change it
    assert np.abs(read_png(tmp_path / "paper" / "sketch.png") - expected_paper).max() <= 1

    assert served.requests == ["/models-pytorch/edges2shoes.pth"]  # downloaded once, then the cache
    cached = sorted(p.name for p in (tmp_path / "models" / "pretrained" / "edges2shoes").iterdir())
    assert cached == ["generator.pt"]  # converted; the downloaded .pth is gone
    _, cfg = load_generator(tmp_path / "models" / "pretrained" / "edges2shoes" / "generator.pt")
    assert (cfg.ngf, cfg.num_downs, cfg.image_size, cfg.dropout_blocks) == (8, 8, 256,
                                                                            "authors_pytorch")


def test_conversion_reads_width_and_depth_and_places_dropout_where_they_trained_it():
    net = AuthorsUNet(ngf=4, num_downs=6, seed=1)  # one dropout block (theirs: num_downs - 5)
    weights, cfg = convert_authors_generator(net.state_dict(), name="x")
    assert (cfg.ngf, cfg.num_downs, cfg.image_size, cfg.name) == (4, 6, 64, "x")
    ours = build_generator(cfg)
    ours.load_state_dict(weights)
    sketch = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(translate(ours, sketch, paper=False), authors_output(net, sketch),
                               atol=1e-5, rtol=0)
    one = sketch[:1]
    # paper mode with seed 5 draws the masks their train-mode network draws after manual_seed(5)
    torch.testing.assert_close(translate(ours, one, paper=True, seeds=[5]),
                               authors_output(net, one, seed=5), atol=1e-5, rtol=0)
    # the paper's placement drops other units: not their network any more
    cfg.dropout_blocks = "paper"
    paper_placed = build_generator(cfg)
    paper_placed.load_state_dict(weights)
    assert (translate(paper_placed, one, paper=True, seeds=[5])
            - authors_output(net, one, seed=5)).abs().max() > 0.05


def test_checkpoints_without_the_field_keep_the_papers_dropout():
    values = Config().to_dict()
    del values["dropout_blocks"]  # a checkpoint written before the field existed
    generator = build_generator(Config.from_dict(values))
    dropped = [any(isinstance(m, nn.Dropout) for m in block) for block in generator.ups]
    assert dropped == [True] * 3 + [False] * 4


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def cut_in_a_name(path) -> None:
    """Cut in the middle of a name its pickle loads (the legacy format's GLOBAL lines)."""
    data = path.read_bytes()
    path.write_bytes(data[:data.index(b"collections\nOrderedDict\n") + 16])


def instance_norm_file(path) -> None:
    """Their --norm instance variant: convs with biases, so it is not this repo's network."""
    state = AuthorsUNet(ngf=4, num_downs=6).state_dict()
    state["model.model.0.bias"] = torch.zeros(4)
    torch.save(state, path)


class Evil:
    """A pickle that runs a shell command when loaded without weights_only."""

    def __reduce__(self):
        return os.system, ("echo gotcha",)


@pytest.mark.parametrize("make, says", [
    (truncate, "a truncated or damaged PyTorch file"),
    (cut_in_a_name, "a truncated or damaged PyTorch file"),
    (lambda path: path.write_bytes(b"<!DOCTYPE html><html>404 not found</html>"),
     "an HTML page, not a weights file"),
    (lambda path: path.write_bytes(bytes(5000)), "not a PyTorch file"),
    (lambda path: torch.save({"model.model.0.weight": Evil()}, path),
     f"a file that would run code when loaded (it calls {os.system.__module__}.system): refused"),
    (lambda path: torch.save({"model.model.0.weight": Evil()}, path,
                             _use_new_zipfile_serialization=False),
     f"a file that would run code when loaded (it calls {os.system.__module__}.system): refused"),
    (lambda path: torch.save(build_generator(Config(ngf=4, num_downs=6)).state_dict(), path),
     "model.model.0"),
    (instance_norm_file, "unexpected keys"),
    (lambda path: torch.save(AuthorsUNet(ngf=4, num_downs=6, in_ch=1).state_dict(), path),
     "1 input"),
], ids=["truncated", "cut-in-a-name", "html", "zeros", "runs-code", "runs-code-legacy",
        "this-repos-keys", "instance-norm", "one-channel"])
def test_bad_files_get_one_line_and_leave_no_cache(served, tmp_path, capsys, make, says):
    path = served.folder / "sat2map.pth"
    authors_file(AuthorsUNet(ngf=4, num_downs=6), path)
    make(path)
    (tmp_path / "sketch.png").write_bytes(b"")  # never reached
    assert infer.main(["sketch.png", "--pretrained", "sat2map"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the download's progress bar
    assert (error.startswith("infer.py: error: http://") and "sat2map.pth" in error
            and says in error), error
    # no generator.pt, .pth, temp
    assert not (tmp_path / "models" / "pretrained" / "sat2map").exists()
    assert not list((tmp_path / "models").rglob("*.tmp"))


def test_a_missing_file_is_one_line_and_nothing_is_cached(served, tmp_path, capsys):
    assert infer.main(["x.png", "--pretrained", "day2night"]) == 2
    error = capsys.readouterr().err.strip()
    url = os.environ["PIX2PIX_PRETRAINED_URL"] + "day2night.pth"
    assert error == f"infer.py: error: cannot download {url}: HTTP 404 File not found"
    assert not (tmp_path / "models" / "pretrained" / "day2night").exists()


def test_pretrained_and_checkpoint_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        infer.main(["x.png", "--pretrained", "edges2shoes", "--checkpoint", "g.pt"])
    assert "not allowed with argument" in capsys.readouterr().err


# ---------------------------------------------------------------- hostile servers

class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers every GET with server.answer(handler, request_number): whatever a test scripts."""

    def do_GET(self):
        self.server.requests.append(dict(self.headers))
        try:
            self.server.answer(self, len(self.server.requests))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, as it should

    def log_message(self, *args):
        pass


def answer(handler, code: int, body: bytes = b"", headers=None, length=True):
    """A status, headers, and body (Content-Length unless length is False)."""
    handler.send_response(code)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def hostile(monkeypatch):
    """A scripted HTTP server on 127.0.0.1; url ends in edges2shoes.pth, a name of known size."""
    for proxy in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.requests, httpd.answer = [], None
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/edges2shoes.pth"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("declared, kind, says", [
    (100 * 10**9, "application/octet-stream", "declares 100000.0 MB; edges2shoes.pth is about "
                                              "217.7 MB: refused, nothing written"),
    (2000, "text/html", "declares 0.0 MB of text/html (a page?); edges2shoes.pth is about"),
], ids=["100GB", "html-page"])
def test_a_size_far_from_the_known_one_is_refused_before_writing(hostile, tmp_path, declared,
                                                                  kind, says):
    def huge(handler, n):
        handler.send_response(200)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(declared))
        handler.end_headers()
        handler.wfile.write(b"<html>" + bytes(1000))  # never read
    hostile.answer = huge
    with pytest.raises(OSError, match=re.escape(says)):
        fetch(hostile.url, tmp_path / "edges2shoes.pth", timeout_s=5)
    assert list(tmp_path.iterdir()) == []


def test_a_body_that_grows_past_the_cap_is_stopped_and_deleted(hostile, tmp_path):
    def endless(handler, n):  # no Content-Length: the body ends when the connection does
        answer(handler, 200, length=False)
        for _ in range(64):  # 4 MB at most
            handler.wfile.write(bytes(1 << 16))
    hostile.answer = endless
    with pytest.raises(OSError, match=r"sent more than 0\.1 MB, more than x\.pth can be: stopped"):
        fetch(hostile.url, tmp_path / "x.pth", timeout_s=5, size_range=(0, 100_000))
    assert list(tmp_path.iterdir()) == []


def test_a_trickle_is_stopped_by_the_minimum_rate_and_can_resume(hostile, tmp_path):
    """A byte every 50 ms for up to a minute: each read is well within the read timeout, so only
    the minimum rate can stop it before then (the message says which stopped it); no time is
    asserted."""
    def trickle(handler, n):
        answer(handler, 200, headers={"Content-Length": "100000"}, length=False)
        for _ in range(1200):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.05)
    hostile.answer = trickle
    with pytest.raises(OSError, match=r"too slow \(\d+ bytes in 0\.\d s, under the minimum of "
                                      r"1000 bytes/s\); run the command again to resume from "
                                      r".*x.pth.part"):
        fetch(hostile.url, tmp_path / "x.pth", timeout_s=5, size_range=(0, 100_000),
              min_rate=1000, rate_window_s=0.3)
    assert 0 < (tmp_path / "x.pth.part").stat().st_size < 1000


FILE_A, FILE_B = bytes(range(256)) * 8, bytes(reversed(range(256))) * 8  # 2048 bytes each


def ranged(body: bytes, etag: str, cut_at=None, honour_if_range=True, total=None):
    """A server of body that honours 'Range: bytes=N-' (and If-Range unless told not to), cutting
    the connection after cut_at bytes when that is set; total: the size it claims in
    Content-Range."""
    def serve(handler, n):
        asked = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range") or "")
        if_range = handler.headers.get("If-Range")
        start = int(asked[1]) if asked and (not if_range or if_range == etag
                                            or not honour_if_range) else 0
        headers = {"ETag": etag}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{total or len(body)}"
        handler.send_response(206 if start else 200)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body) - start))
        handler.end_headers()
        handler.wfile.write(body[start:cut_at or len(body)])
        handler.close_connection = True
    return serve


@pytest.mark.parametrize("second", ["same-file", "changed-etag", "changed-size", "no-info"])
def test_a_part_is_resumed_only_when_it_is_of_the_same_file(hostile, tmp_path, second):
    dest = tmp_path / "x.pth"
    hostile.answer = ranged(FILE_A, '"a"', cut_at=1000)
    with pytest.raises(OSError, match="resume from"):
        fetch(hostile.url, dest, timeout_s=5, size_range=(0, 10_000))
    assert (tmp_path / "x.pth.part").read_bytes() == FILE_A[:1000]
    if second == "same-file":
        hostile.answer, expected = ranged(FILE_A, '"a"'), FILE_A
    elif second == "changed-etag":  # a server that ignores If-Range: the client must see it
        hostile.answer = ranged(FILE_B, '"b"', honour_if_range=False)
        expected = FILE_B
    elif second == "changed-size":  # same ETag, another length: not the file the .part began
        hostile.answer, expected = ranged(FILE_B + b"!", '"a"'), FILE_B + b"!"
    else:  # a .part whose origin is unknown
        (tmp_path / "x.pth.part.json").unlink()
        hostile.answer, expected = ranged(FILE_B, '"b"'), FILE_B
    fetch(hostile.url, dest, timeout_s=5, size_range=(0, 10_000))
    assert dest.read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pth"]
    second_request = hostile.requests[1]
    if second == "no-info":
        assert "Range" not in second_request
    else:
        assert (second_request["Range"], second_request["If-Range"]) == ("bytes=1000-", '"a"')
    assert len(hostile.requests) == (2 if second in ("same-file", "no-info") else 3)


def test_ctrl_c_keeps_the_part_and_says_how_to_resume(hostile, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIX2PIX_PRETRAINED_URL", hostile.url.rsplit("/", 1)[0])
    monkeypatch.setattr(pretrained, "DOWNLOAD_BYTES", {})

    got_1000 = threading.Event()

    class Counting(pretrained.tqdm):  # the download's bar: says when 1000 bytes are written
        def update(self, n=1):
            super().update(n)
            if self.n >= 1000:
                got_1000.set()
    monkeypatch.setattr(pretrained, "tqdm", Counting)

    def interrupted(handler, n):  # Ctrl-C arrives while the body is coming
        answer(handler, 200, headers={"Content-Length": "100000"}, length=False)
        handler.wfile.write(bytes(1000))
        handler.wfile.flush()
        assert got_1000.wait(60)  # the client has them: not a time, which a busy machine stretches
        _thread.interrupt_main()
        # the body goes on until the client hangs up (up to 30 s: a busy machine may take its time
        # to run the handler), so that Ctrl-C, not the end of the body, is what stops it
        for _ in range(600):
            try:
                handler.wfile.write(bytes(10))
                handler.wfile.flush()
            except OSError:
                return
            time.sleep(0.05)
    hostile.answer = interrupted
    assert infer.main(["x.png", "--pretrained", "edges2shoes"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    part = Path("models/pretrained/edges2shoes/edges2shoes.pth.part")
    assert error == (f"infer.py: error: download of {hostile.url} interrupted by Ctrl-C; "
                     f"run the command again to resume from {part}")
    assert part.stat().st_size >= 1000 and part.with_name(part.name + ".json").is_file()
