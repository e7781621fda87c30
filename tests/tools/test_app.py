r"""app.py: the HTTP API against infer.py, bad requests, and real strokes drawn in headless
Chromium.

Malformed and hostile requests go over raw sockets, as sent. Caps are shortened through the
attributes that hold them (Handler.request_timeout_s, AppServer.max_connections, budget_s), slow
stages are forced by wrapping the real function with a Gate, never by faking the generator, and
every test waits for a state (the server's open connections, its requests under way, a call at a
Gate), never for a time: its verdict does not depend on the machine's load. The
machine's branch is forced both ways where a test depends on it: tune.native_bf16 in
test_paper_mode_is_seeded_per_request; the other servers run untuned (--no-tune: fp32 on every
machine), as what they test is not the tuner.

The browser is driven with no extra package: Chromium's DevTools protocol over
--remote-debugging-pipe (JSON commands in on fd 3, replies out on fd 4, each message ended by a NUL
byte). The same client takes the README screenshot, from the repo root:
    python -c "from tests.test_app import screenshot; \
        screenshot('models/demo/generator.pt', 'assets/app.png')"
"""

import base64
import contextlib
import fcntl
import http.client
import io
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

# conftest, also when imported as tests.test_app
sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ROOT, make_pairs, tiny_config  # noqa: E402

from tools import app  # noqa: E402
import infer  # noqa: E402
import save  # noqa: E402
import tune  # noqa: E402
import dataset  # noqa: E402
from dataset import to_image  # noqa: E402
from generator import build_generator  # noqa: E402
from infer import find_checkpoint  # noqa: E402
from sketch import prepare_sketch  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
                  "--mute-audio", "--remote-debugging-pipe"]
# A sneaker in canvas pixels, one polyline per stroke: upper, sole, midsole line, three laces.
SHOE_STROKES = [
    [(36, 178), (44, 150), (72, 134), (102, 124), (126, 104), (144, 80), (164, 76), (178, 94),
     (198, 92), (214, 82), (226, 110), (230, 150), (228, 184)],
    [(36, 178), (40, 194), (62, 202), (200, 202), (228, 196), (228, 184)],
    [(44, 186), (226, 186)],
    [(118, 114), (134, 122)], [(128, 101), (144, 109)], [(138, 88), (154, 96)],
]


# --- the HTTP side --------------------------------------------------------------------------------

def tiny_checkpoint(folder) -> Path:
    """A 64×64 generator.pt whose config points at 2 val pairs (the page's examples); random
    weights."""
    folder = Path(folder)
    make_pairs(folder / "data" / "val", 2, size=64, seed=3)
    cfg = tiny_config(folder, folder / "data")
    torch.manual_seed(0)
    generator = build_generator(cfg).train()
    # running statistics away from their initial values: eval ≠ paper
    generator(torch.randn(4, 3, 64, 64))
    path = folder / "models" / "test" / "generator.pt"
    save.atomic_save({"generator": generator.state_dict(), "config": cfg.to_dict(), "step": 0},
                     path)
    return path


SERVERS = {}  # base URL -> the AppServer serving it, for tests that look inside


@contextmanager
def serving(checkpoint, paper: bool, host: str = "127.0.0.1", **options):
    """app.py's server on a free port in a background thread; yields its base URL."""
    server = app.make_server(checkpoint, host, 0, paper=paper, device="cpu", **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://{f'[{host}]' if ':' in host else '127.0.0.1'}:{server.server_port}/"
    SERVERS[url] = server
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        del SERVERS[url]


@pytest.fixture(autouse=True)
def settled():
    """Each test ends once the servers have closed its connections: a connection's log line is
    written by then, inside the test that made it (a client may read its answer before the line
    is written, which then landed in the next test's capture, or between tests)."""
    yield
    for server in list(SERVERS.values()):
        wait_until(lambda: server.open_connections == 0, "the test's connections closed")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def eval_url(tiny):
    with serving(tiny, paper=False, tune=False) as url:  # untuned fp32: what infer.py runs
        yield url


def request(url, method="GET", path="/", body=None, headers=None) -> tuple:
    """(status, content type, body bytes) of one request."""
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    host = "::1" if "[::1]" in url else "127.0.0.1"
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_bytes(image: Image.Image, kind: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def sketch_image() -> Image.Image:
    """A non-square RGBA sketch with a transparent background: the server must pad and whiten it
    like infer.py."""
    sketch = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sketch)
    draw.ellipse((10, 20, 110, 80), outline=(0, 0, 0, 255), width=2)
    draw.line((30, 20, 60, 5), fill=(0, 0, 0, 255), width=2)
    return sketch


def run_infer_eval(sketch_file, checkpoint, out_dir) -> np.ndarray:
    """The photo `python infer.py SKETCH --eval` writes, as an (H, W, 3) int array."""
    result = subprocess.run([sys.executable, str(ROOT / "infer.py"), str(sketch_file), "-o",
                             str(out_dir), "--checkpoint", str(checkpoint),
                             "--eval"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return pixels((Path(out_dir) / f"{Path(sketch_file).stem}.png").read_bytes())


def test_page_and_examples(eval_url):
    status, kind, page = request(eval_url)
    assert status == 200 and kind.startswith("text/html")
    assert (b'<canvas id="sketch" width="256" height="256">' in page
            and b"http" not in page.split(b"<script>")[1])
    status, kind, example = request(eval_url, path="/examples/1.png")
    assert status == 200 and kind == "image/png"
    # a 64×64 val sketch, scaled to the canvas
    assert Image.open(io.BytesIO(example)).size == (256, 256)
    # its outline is there: the left half of the pair, not the photo
    assert pixels(example).min() == 0
    for path in ("/examples/2.png", "/examples/x.png", "/nothing"):
        assert request(eval_url, path=path)[0] == 404


def test_examples_without_data_are_drawn_shoes(tmp_path):
    examples = app.make_examples(tiny_config(tmp_path, tmp_path / "no_data"))
    assert len(examples) == app.N_EXAMPLES
    for example in examples:
        sketch = pixels(example)
        assert (sketch.shape == (256, 256, 3)
                and 200 < (sketch == 0).all(axis=2).sum() < 0.2 * 256 * 256)


def test_generate_matches_infer_eval(eval_url, tiny, tmp_path):
    sketch = png(sketch_image())
    status, kind, photo = request(eval_url, "POST", "/generate", sketch,
                                  {"Content-Type": "image/png"})
    assert status == 200 and kind == "image/png"
    assert Image.open(io.BytesIO(photo)).size == (120, 90)  # the upload's size
    (tmp_path / "sketch.png").write_bytes(sketch)
    assert np.abs(pixels(photo) - run_infer_eval(tmp_path / "sketch.png", tiny,
                                                 tmp_path / "out")).max() <= 1
    data_url = b"data:image/png;base64," + base64.b64encode(sketch)
    assert request(eval_url, "POST", "/generate", data_url,
                   {"Content-Type": "text/plain"})[2] == photo


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two 8-bit images, in dB (inf when equal)."""
    mse = np.mean((a.astype(float) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("native, precision", [(False, "auto"), (True, "auto"), (False, "bf16")],
                         ids=["auto-without-native-bf16", "auto-native-bf16", "bf16"])
def test_paper_mode_is_seeded_per_request(native, precision, eval_url, tiny, tmp_path, monkeypatch,
                                          capsys):
    """The promise: one sketch always gives the same photo, infer.py --seed 0's on this machine.
    On a CPU with native bf16 the app's start-up tuning may pick bf16 (timing decides, so either
    way here; --precision bf16 makes it bf16 on any CPU); infer.py reads the app's pick from the
    tuner cache and makes the same photo; with another cache it runs untuned fp32, within the
    tuner's bound."""
    monkeypatch.setattr(tune, "native_bf16", lambda: native)
    monkeypatch.setattr(tune, "BUDGET_S", 0.1)  # two timed rounds: the pick is not under test
    sketch = png(sketch_image())
    (tmp_path / "sketch.png").write_bytes(sketch)
    with serving(tiny, paper=True, precision=precision) as url:  # tunes now, in this test's cache
        first, second = (request(url, "POST", "/generate", sketch)[2] for _ in range(2))
    assert first == second  # the seed is reset before each request
    assert first != request(eval_url, "POST", "/generate", sketch)[2]
    picked = [line for line in capsys.readouterr().out.splitlines()
              if line.startswith("tune: ") and "(tuned in" in line]
    assert len(picked) == 1, picked
    # infer.py's default mode and seed, one sketch: the app's pick, read from the cache
    assert infer.main([str(tmp_path / "sketch.png"), "-o", str(tmp_path / "same"),
                       "--checkpoint", str(tiny), "--seed", "0", "--precision", precision]) == 0
    assert picked[0].split(" (")[0] + " (cached in" in capsys.readouterr().out
    assert np.array_equal(pixels(first), pixels((tmp_path / "same" / "sketch.png").read_bytes()))
    # another cache (another user, a read-only home): infer.py runs untuned fp32
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other"))
    assert infer.main([str(tmp_path / "sketch.png"), "-o", str(tmp_path / "other"),
                       "--checkpoint", str(tiny), "--seed", "0"]) == 0
    assert "cached in" not in capsys.readouterr().out
    untuned = pixels((tmp_path / "other" / "sketch.png").read_bytes())
    assert psnr_db(pixels(first), untuned) >= tune.BF16_BOUND_DB


def test_the_page_shows_what_the_generator_was_given(eval_url, tiny, tmp_path):
    sketch = png(sketch_image())
    status, kind, given = request(eval_url, "POST", "/generate?given", sketch)
    assert status == 200 and kind == "image/png"
    (tmp_path / "sketch.png").write_bytes(sketch)
    prepared = prepare_sketch(tmp_path / "sketch.png", save.load_generator(tiny)[1].image_size)
    assert prepared.fitted  # the fitted sketch, not the upload
    assert np.array_equal(pixels(given), np.asarray(to_image(prepared.sketch)).astype(int))
    assert 'id="given"' in request(eval_url)[2].decode() and "generate?given" in \
        request(eval_url)[2].decode()


def test_a_16_bit_upload_is_given_as_its_8_bit_twin(eval_url):
    # grey strokes at 100 of 255 were clipped to white: ?given showed a blank page
    ink = np.asarray(sketch_image())[..., 3] > 0
    twin = png(Image.fromarray(np.where(ink, 100, 255).astype(np.uint8)))
    deep = png(Image.frombytes("I;16", ink.shape[::-1],
                               np.where(ink, 100 * 257, 65535).astype("<u2").tobytes()))
    assert Image.open(io.BytesIO(deep)).mode == "I;16"
    given = [request(eval_url, "POST", "/generate?given", body) for body in (deep, twin)]
    assert given[0][0] == given[1][0] == 200 and given[0][2] == given[1][2]
    assert pixels(given[0][2]).min() < 230  # the strokes are there (a blank page: 255)


def test_the_formats_said_are_the_formats_taken():
    said = " ".join(app.__doc__.split()).lower()
    assert "png, jpeg, bmp, webp or tiff (dataset.formats" in said
    assert sorted(dataset.FORMATS) == ["BMP", "JPEG", "PNG", "TIFF", "WEBP"]


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header that claims a huge image (with no pixel data behind it)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("body, status, message", [
    (b"hello, not an image", 400, "upload: not a readable image"),
    (b"data:image/png;base64,@@@", 400, "not valid base64"),
    (b"data:image/png,raw", 400, "must be base64"),
    (png_claiming(10_000, 10_000), 400, "too large (10000×10000"),
    # under infer.py's cap, over the sketch pad's: the photo would come back at 25 Mpx
    (png_claiming(5000, 5000), 400, "too large (5000×5000, more than 16777216 pixels for the "
                                    "sketch pad"),
    (png(Image.new("RGB", (8, 8), "white")), 400, "too small"),
    # not one of dataset.FORMATS, however well PIL reads it
    (image_bytes(sketch_image(), "GIF"), 400, "upload: not a readable image"),
    (b"", 400, "empty file"),
])
def test_bad_bodies_get_400_with_a_message(eval_url, body, status, message):
    got, kind, text = request(eval_url, "POST", "/generate", body, {"Content-Type": "image/png"})
    assert got == status and kind.startswith("text/plain") and message in text.decode(), text
    assert b"Traceback" not in text and len(text.splitlines()) == 1


def test_limits_and_that_the_server_stays_up(eval_url, monkeypatch):
    port = int(eval_url.rstrip("/").rsplit(":", 1)[1])
    # Over the size cap: refused from the header alone, before any of the body is read.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.putrequest("POST", "/generate")
    connection.putheader("Content-Length", str(app.MAX_BODY_BYTES + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and b"limit" in response.read()
    connection.close()
    # no Content-Length at all
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.putrequest("POST", "/generate")
    connection.endheaders()
    assert connection.getresponse().status == 411
    connection.close()
    assert request(eval_url, "POST", "/elsewhere", b"x")[0] == 404
    sketch = png(sketch_image())
    # Another site's page (Origin) or a rebound DNS name (Host) cannot use the local model; this
    # page can.
    assert request(eval_url, "POST", "/generate", sketch,
                   {"Origin": "http://evil.example"})[0] == 403
    assert request(eval_url, "POST", "/generate", sketch,
                   {"Host": f"evil.example:{port}"})[0] == 403
    assert request(eval_url, "POST", "/generate", sketch,
                   {"Origin": f"http://127.0.0.1:{port}"})[0] == 200
    assert request(eval_url, "PUT", "/generate", b"x")[0] == 501
    # a chunked body is not read (a Content-Length is what every browser sends)
    chunked = (post_head("Host: 127.0.0.1", "Transfer-Encoding: chunked")
               + b"5\r\nhello\r\n0\r\n\r\n")
    assert status_and_text(exchange(port, chunked)) == (
        501, "Transfer-Encoding is not supported: send a Content-Length\n")
    assert status_and_text(exchange(port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")) == (
        414, "request line too long\n")
    assert request(eval_url)[0] == 200


def wait_until(condition, what: str = "", deadline_s: float = 60) -> None:
    """Poll condition() until true: a state of the server's, not a time, is what tests wait for;
    the deadline only ends a test whose code is wrong."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {deadline_s} s: {what or condition}"
        time.sleep(0.01)


def port_of(url) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def exchange(port, data: bytes, half_close: bool = False, timeout: float = 60) -> bytes:
    """The server's answer to these bytes, sent as they are over a raw socket, read to its end
    (b"" if it closed without one; a reset raises)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_and_text(answer: bytes) -> tuple:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else None, body.decode()


def no_traceback(captured) -> None:
    assert "Traceback" not in captured.out + captured.err, captured.err


def post_head(*headers: str) -> bytes:
    return ("\r\n".join(["POST /generate HTTP/1.1", *headers]) + "\r\n\r\n").encode("latin-1")


@pytest.mark.parametrize("data, message", [
    (post_head("Host: 127.0.0.1", "Content-Length: \u00b2"), "bad Content-Length '\u00b2'"),
    (post_head("Host: 127.0.0.1", "Content-Length: -5"), "bad Content-Length '-5'"),
    (post_head("Host: 127.0.0.1", "Content-Length: +5"), "bad Content-Length"),
    (post_head("Host: 127.0.0.1", "Content-Length: 0x10"), "bad Content-Length"),
    (post_head("Host: 127.0.0.1", "Content-Length: 1_0"), "bad Content-Length"),
    (post_head("Host: 127.0.0.1", "Content-Length: 5, 5"), "bad Content-Length"),
    (post_head("Host: 127.0.0.1", "Content-Length: "), "bad Content-Length"),
    # an Arabic-Indic one (UTF-8): str.isdigit() and int() take it once decoded
    (post_head("Host: 127.0.0.1").replace(b"\r\n\r\n", b"\r\nContent-Length: \xd9\xa1\r\n\r\n"),
     "bad Content-Length"),
    (post_head("Host: 127.0.0.1", "Content-Length: 5", "Content-Length: 6"),
     "2 Content-Length headers"),
    (post_head("Host: 127.0.0.1", "Content-Length: 5", "Content-Length: 5"),
     "2 Content-Length headers"),
    (post_head("Host: 127.0.0.1", "Content-Length : 5"), "malformed header line"),
    (post_head("Host: 127.0.0.1", "no colon here", "Content-Length: 5"), "malformed header line"),
    (post_head("Host: 127.0.0.1", "X-Note: one", " folded"), "malformed header 'X-Note'"),
    (post_head("Host: 127.0.0.1", "X-Note: a\x01b"), "malformed header 'X-Note'"),
    (post_head("Host: 127.0.0.1", "X Y: 1"), "malformed header"),
    (post_head("Host: \u00e9.example"), "malformed Host header"),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \xb2\r\n\r\n", "bad Content-Length"),
    (b"GET http://[::1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "malformed request target"),
    (b"GET / HTTP/x.y\r\nHost: 127.0.0.1\r\n\r\n", "Bad request version"),
    (b"\r\n\r\n", "empty request line"),
    (post_head("Host: 127.0.0.1", "Content-Length: 100") + b"\x89PNG\r\n\x1a\n",
     "body ended after 8 of 100 bytes"),
])
def test_malformed_requests_get_400_and_one_line(eval_url, capsys, data, message):
    answer = exchange(port_of(eval_url), data, half_close=True)
    status, text = status_and_text(answer)
    assert status == 400 and message in text and text.count("\n") == 1, answer
    captured = capsys.readouterr()
    no_traceback(captured)
    assert captured.out.count("\n") == 1 and " 400 " in captured.out  # its one log line


def test_a_huge_content_length_gets_413_before_the_body(eval_url, capsys):
    port = port_of(eval_url)
    # 5,000 digits: more than int() converts (4,300)
    for digits, size in (("9" * 5000, "5000 digits of"), (str(app.MAX_BODY_BYTES + 1), None)):
        answer = exchange(port, post_head("Host: 127.0.0.1", f"Content-Length: {digits}"))
        status, text = status_and_text(answer)
        assert (status, text.count("\n")) == (413, 1), answer
        assert f"body of {size or digits} bytes is over the" in text
    # leading zeros are still a number: 5 bytes read, then judged as an image
    answer = exchange(port, post_head("Host: 127.0.0.1", "Content-Length: " + "0" * 30 + "5")
                      + b"hello")
    assert status_and_text(answer) == (400, "upload: not a readable image (UnidentifiedImageError)"
                                            "\n")
    no_traceback(capsys.readouterr())


def test_an_answer_is_not_lost_to_a_reset(eval_url):
    """A request the server does not read to its end (a GET with a body) still gets all of its
    answer, even the part that waits for the client's window: a close with unread bytes would
    reset the connection, and a reset drops what is not sent yet."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
        sock.settimeout(60)
        sock.connect(("127.0.0.1", port_of(eval_url)))
        # more body than the server's read buffer takes with the headers: unread in the socket
        sock.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n"
                     + b"\0" * 100_000)
        # answered and closed by the server (what fits the window is sent, the rest waits): only
        # then is the answer read
        wait_until(lambda: SERVERS[eval_url].open_connections == 0)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, page = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and f"Content-Length: {len(page)}".encode() in head
    assert len(page) > 10_000  # more than the window


def test_exactly_one_host_header(eval_url, capsys):
    port = port_of(eval_url)
    for data in (b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\n\r\n",
                 b"GET /examples/0.png HTTP/1.0\r\nhost: localhost\r\nHOST: evil.example\r\n\r\n",
                 post_head("Host: localhost", "Host: evil.example", "Content-Length: 0")):
        status, text = status_and_text(exchange(port, data))
        assert status == 400 and "exactly one Host header is required" in text, (data, text)
    status, text = status_and_text(exchange(port, b"GET / HTTP/1.1\r\nHost:\r\n\r\n"))
    assert status == 400 and "malformed Host header ''" in text
    # an absolute target names the host itself (RFC 9112): checked like a Host header
    status, text = status_and_text(exchange(port, b"GET http://evil.example/ HTTP/1.1\r\n"
                                                  b"Host: 127.0.0.1\r\n\r\n"))
    assert status == 403 and "'evil.example' refused" in text
    for data in (b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                 f"GET http://localhost:{port}/ HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"
                 .encode()):
        assert status_and_text(exchange(port, data))[0] == 200
    no_traceback(capsys.readouterr())


def raw_request(target: str, *headers: str, body: bytes = b"") -> bytes:
    """A request as sent: a POST with a body (its Content-Length added), else a GET."""
    method = "POST" if body else "GET"
    lines = [f"{method} {target} HTTP/1.1", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


HOST_CASES = [  # (target, headers, status, what the one line says); PORT is the server's
    # the Host header is checked with an absolute target too, which must agree with it (RFC 9112)
    ("http://127.0.0.1:PORT/generate", ["Host: evil.com", "Origin: http://evil.com"], 403,
     "Host 'evil.com' refused"),
    ("http://127.0.0.1:PORT/generate", ["Host: localhost:PORT"], 400,
     "the target's host '127.0.0.1:PORT' and the Host header 'localhost:PORT' differ"),
    ("http://127.0.0.1:PORT/", ["Host: 127.0.0.1"], 400, "differ"),
    ("http://evil.com/generate", ["Host: evil.com"], 403, "Host 'evil.com' refused"),
    ("https://127.0.0.1:PORT/", ["Host: 127.0.0.1:PORT"], 400, "malformed request target"),
    ("http://me@127.0.0.1:PORT/", ["Host: 127.0.0.1:PORT"], 400, "malformed request target"),
    ("http://[::1/", ["Host: 127.0.0.1"], 400, "malformed request target"),
    ("*", ["Host: 127.0.0.1"], 400, "malformed request target"),
    ("HTTP://127.0.0.1:PORT", ["Host: 127.0.0.1:PORT"], 200, ""),  # the scheme is case-blind
    # a path, not a host (http.server makes it /evil.com/)
    ("//evil.com/", ["Host: 127.0.0.1"], 404, "not found: /evil.com/"),
    # strict Host: a bracketed IPv6 literal or a name, then an optional :port, nothing else
    ("/", ["Host: [::1]evil.com"], 400, "malformed Host header '[::1]evil.com'"),
    ("/", ["Host: [::1]:evil.com"], 400, "malformed Host header"),
    ("/", ["Host: [::1"], 400, "malformed Host header"),
    ("/", ["Host: [::1]:"], 400, "malformed Host header"),
    ("/", ["Host: [evil.com]"], 400, "malformed Host header"),
    ("/", ["Host: [1.2.3.4]"], 400, "malformed Host header"),
    ("/", ["Host: [12345::1]:PORT"], 400, "malformed Host header"),
    ("/", ["Host: ::1"], 400, "malformed Host header"),
    ("/", ["Host: localhost:80:80"], 400, "malformed Host header"),
    ("/", ["Host: localhost:99999"], 400, "malformed Host header"),
    ("/", ["Host: localhost:8o"], 400, "malformed Host header"),
    ("/", ["Host: me@localhost"], 400, "malformed Host header"),
    ("/", ["Host: %6cocalhost"], 400, "malformed Host header"),
    ("/", ["Host: local_host"], 400, "malformed Host header"),
    ("/", ["Host: [::1]:PORT"], 200, ""),
    ("/", ["Host: LocalHost:PORT"], 200, ""),
    # a POST's one Origin names this server as the request addressed it
    ("/generate", ["Host: 127.0.0.1:PORT", "Origin: http://127.0.0.1:PORT",
                   "Origin: http://evil.com"], 400, "2 Origin headers (one at most)"),
    ("/generate", ["Host: 127.0.0.1:PORT", "Origin: http://evil.com",
                   "Origin: http://127.0.0.1:PORT"], 400, "2 Origin headers"),
    ("/", ["Host: 127.0.0.1:PORT", "Origin: http://127.0.0.1:PORT", "Origin: null"], 400,
     "2 Origin headers"),
    ("/generate", ["Host: 127.0.0.1:PORT", "Origin: http://127.0.0.1:1"], 403, "cross-origin"),
    ("/generate", ["Host: 127.0.0.1:PORT", "Origin: null"], 403, "cross-origin"),
    ("/generate", ["Host: 127.0.0.1:PORT", "Origin: https://127.0.0.1:PORT"], 403,
     "cross-origin"),
    ("/generate", ["Host: 127.0.0.1:PORT", "Origin: http://127.0.0.1:PORT/"], 403,
     "cross-origin"),
    ("/generate", ["Host: 127.0.0.1:PORT", "Origin: http://[::1]evil.com:PORT"], 403,
     "cross-origin"),
    ("/generate", ["Host: evil.com:PORT", "Origin: http://evil.com:PORT"], 403, "refused"),
    ("/generate", ["Host: 127.0.0.1:PORT", "Origin: http://127.0.0.1:PORT"], 200, ""),
    ("/generate", ["Host: 127.0.0.1:PORT", "Origin: HTTP://127.0.0.1:PORT"], 200, ""),
    ("/generate", ["Host: localhost", "Origin: http://localhost:80"], 200, ""),
]


@pytest.mark.parametrize("target, headers, status, says", HOST_CASES)
def test_the_host_the_target_and_the_origin_are_checked_as_one(eval_url, capsys, target,
                                                                headers, status, says):
    port = port_of(eval_url)
    target, headers = target.replace("PORT", str(port)), [
        header.replace("PORT", str(port)) for header in headers]
    post = target.endswith("/generate")
    data = raw_request(target, *headers, body=png(sketch_image()) if post else b"")
    answer = exchange(port, data)
    got = int(answer.split(b" ", 2)[1])
    assert got == status, answer[:300]
    if status != 200:
        text = status_and_text(answer)[1]
        assert says.replace("PORT", str(port)) in text and text.count("\n") == 1, text
    no_traceback(capsys.readouterr())


class Trickle(threading.Thread):
    """A client sending its request a byte every interval_s after a first part, until the server
    speaks or closes; .answer is what came back (b"" if closed without one), .answered_after_s
    when its first byte (or the close) did, .unsent how many bytes it still had to send then."""

    def __init__(self, port: int, start: bytes, rest: bytes, interval_s: float = 0.2):
        super().__init__(daemon=True)
        self.port, self.start_bytes, self.rest, self.interval_s = port, start, rest, interval_s
        self.answer, self.answered_after_s, self.unsent = b"", None, len(rest)

    def run(self):
        began = time.monotonic()  # before the server can start the request's clock
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            sock.sendall(self.start_bytes)
            while self.unsent and not select.select([sock], [], [], self.interval_s)[0]:
                try:
                    sock.sendall(self.rest[-self.unsent:][:1])
                except OSError:  # closed by the server meanwhile
                    break
                self.unsent -= 1
            if select.select([sock], [], [], 60)[0]:
                self.answered_after_s = time.monotonic() - began
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    self.answer += chunk


def test_a_request_must_arrive_within_its_time_in_all(eval_url, monkeypatch, capsys):
    """However often a slow client sends a byte, in its headers or its body, it is answered 408
    when the request's time is up; an idle connection is closed then. The proof is not a time: a
    client sending a byte every 0.2 s for 30 s is cut off while it still has bytes to send, and
    never before the request's 1 s."""
    monkeypatch.setattr(app.Handler, "request_timeout_s", 1.0)
    port = port_of(eval_url)
    clients = [Trickle(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", b"a" * 150),
               Trickle(port, post_head("Host: 127.0.0.1", "Content-Length: 1000"), b"\0" * 150),
               Trickle(port, b"", b"")]  # idle
    for client in clients:
        client.start()
    for client in clients:
        client.join(120)
    for client in clients[:2]:
        status, text = status_and_text(client.answer)
        assert status == 408 and "not received within 1 s" in text, client.answer
        assert client.unsent > 0 and client.answered_after_s >= 0.99, vars(client)
    assert clients[2].answer == b"" and clients[2].answered_after_s >= 0.99
    no_traceback(capsys.readouterr())
    assert request(eval_url)[0] == 200


def test_connections_over_the_cap_get_503_at_once(eval_url, monkeypatch, capsys):
    """Beyond max_connections a connection gets its 503 without waiting for a slot: the two
    connections that hold the slots (idle, with an hour to send their requests) are still open
    when it comes. Waited for: states of the server's, never a time."""
    server = SERVERS[eval_url]
    monkeypatch.setattr(app.AppServer, "max_connections", 2)
    monkeypatch.setattr(app.Handler, "request_timeout_s", 3600.0)
    port = port_of(eval_url)
    wait_until(lambda: server.open_connections == 0, "the connections of earlier tests closed")
    idle = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(2)]
    try:
        wait_until(lambda: server.open_connections == 2, "both idle connections admitted")
        answer = exchange(port, b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", timeout=60)
        status, text = status_and_text(answer)
        assert status == 503 and b"\r\nRetry-After: 1\r\n" in answer
        assert "busy: 2 connections are open" in text
        assert server.open_connections == 2  # no slot had come free: it did not wait for one
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: server.open_connections == 0, "their threads see the close and end")
    assert request(eval_url)[0] == 200
    no_traceback(capsys.readouterr())


def test_a_client_that_hangs_up_leaves_one_log_line(eval_url, monkeypatch, capsys):
    """One line per connection, whenever its client resets it: mid-body, or while its photo is
    being made. Each step waits for a state (the generator entered, the body being read, a line
    logged, every connection closed), never for a time."""
    server, entered, release = SERVERS[eval_url], threading.Event(), threading.Event()
    real, real_read_body = app.generate, app.Handler.read_body
    bodies_read = threading.Semaphore(0)

    def held(*args, **kwargs):  # the generator answers only once the client has gone
        entered.set()
        assert release.wait(60)
        return real(*args, **kwargs)

    def read_body(handler):
        bodies_read.release()
        return real_read_body(handler)
    monkeypatch.setattr(app, "generate", held)
    monkeypatch.setattr(app.Handler, "read_body", read_body)
    wait_until(lambda: server.open_connections == 0, "the connections of earlier tests closed")
    capsys.readouterr()  # their log lines
    port = port_of(eval_url)
    sketch = png(sketch_image())
    reset = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection
    with socket.create_connection(("127.0.0.1", port), timeout=60) as gone:
        gone.sendall(post_head("Host: 127.0.0.1", f"Content-Length: {len(sketch)}") + sketch)
        assert entered.wait(60) and bodies_read.acquire(timeout=60)
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as halfway:  # mid-body
        halfway.sendall(post_head("Host: 127.0.0.1", "Content-Length: 1000") + b"\x89PNG")
        assert bodies_read.acquire(timeout=60)  # the server is reading the body
        halfway.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
    out = ""

    def logged(text):
        nonlocal out
        captured = capsys.readouterr()
        no_traceback(captured)
        out += captured.out
        return text in out
    wait_until(lambda: logged("client gone before the end of its request"))
    release.set()  # only now: the lines come in this order
    wait_until(lambda: logged("client gone before the answer"))
    wait_until(lambda: server.open_connections == 0, "both connections closed")
    logged("")
    lines = out.splitlines()
    assert len(lines) == 2, lines
    assert "POST /generate 200" in lines[1] and "client gone before the answer" in lines[1]
    assert "client gone before the end of its request (ConnectionResetError)" in lines[0]
    assert request(eval_url)[0] == 200


def test_every_method_checks_the_host(eval_url):
    port = int(eval_url.rstrip("/").rsplit(":", 1)[1])
    sketch = png(sketch_image())
    # a DNS-rebinding page reaches the server under its own name: refused for reads too
    for method, path, body in (("GET", "/", None), ("HEAD", "/", None),
                               ("GET", "/examples/0.png", None), ("POST", "/generate", sketch)):
        for host in (f"evil.example:{port}", "evil.example", f"192.168.1.5:{port}"):
            status, _, text = request(eval_url, method, path, body, {"Host": host})
            assert status == 403, (method, path, host)
            assert method == "HEAD" or b"refused" in text
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST", "[::1]"):
            assert request(eval_url, method, path, body, {"Host": host})[0] == 200, (method, host)


def test_head_answers_like_get_without_a_body(eval_url):
    port = int(eval_url.rstrip("/").rsplit(":", 1)[1])
    for path in ("/", "/examples/0.png", "/nothing"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("HEAD", path)
        response = connection.getresponse()
        got = request(eval_url, path=path)
        assert (response.status, response.getheader("Content-Type")) == got[:2]
        assert int(response.getheader("Content-Length")) == len(got[2]) > 0
        assert response.read() == b""
        connection.close()
    # on the wire: the headers and nothing after them
    with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
        raw.sendall(b"HEAD / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"\r\n\r\n")


def test_beyond_loopback_it_warns_and_admits_only_named_hosts(tiny, monkeypatch, capsys):
    def stop_at_once(server, *args):
        raise KeyboardInterrupt
    monkeypatch.setattr(app.AppServer, "serve_forever", stop_at_once)
    assert app.main(["--checkpoint", str(tiny), "--host", "0.0.0.0", "--port", "0",
                     "--device", "cpu"]) == 0
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith(
        "app.py: warning: serving on 0.0.0.0 reaches beyond this machine: anyone who can connect")
    assert app.main(["--checkpoint", str(tiny), "--port", "0", "--device", "cpu"]) == 0
    assert capsys.readouterr().err == ""  # loopback: no warning
    monkeypatch.undo()
    with serving(tiny, paper=False, host="0.0.0.0", allow_hosts=["Shoes.lan"]) as url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        for host, status in (("evil.example", 403), (f"shoes.lan:{port}", 200),
                             (f"10.1.2.3:{port}", 200), (f"[fe80::1]:{port}", 200),
                             ("localhost", 200), ("shoes.lan.evil.example", 403)):
            assert request(url, headers={"Host": host})[0] == status, host


class Gate:
    """A function wrapped so that each call waits at the gate until it opens; reached() waits
    until calls have got there, so that a test knows where each request is without a sleep."""

    def __init__(self, function):
        self.function, self.open, self.calls = function, threading.Event(), threading.Semaphore(0)

    def __call__(self, *args, **kwargs):
        self.calls.release()
        assert self.open.wait(120), "the gate was never opened"
        return self.function(*args, **kwargs)

    def reached(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.calls.acquire(timeout=60), "no call reached the gate"


def test_a_slow_generation_has_a_budget_and_blocks_no_one(tiny, monkeypatch):
    """A generation held past its budget: its request, and the one waiting for the generator, get
    503 at the budget while it is still held; the page is served meanwhile; the held work keeps
    its slot (one more request fills the last, the next is refused at once); once it ends, photos
    come again."""
    generating = Gate(app.generate)
    monkeypatch.setattr(app, "generate", generating)
    sketch, results = png(sketch_image()), {}

    def post(key, url):
        started = time.monotonic()
        results[key] = request(url, "POST", "/generate", sketch), time.monotonic() - started
    with serving(tiny, paper=False, budget_s=1, max_generations=2, tune=False) as url:
        shoe = SERVERS[url].app
        slow = threading.Thread(target=post, args=("slow", url))
        slow.start()
        generating.reached()  # it holds the generator
        assert request(url)[0] == 200  # the page is served meanwhile
        post("waiting", url)  # in the second slot, waiting for the generator
        slow.join(60)
        # both answered while the generation was held (the gate opens only below): the one under
        # way has no more time than the one waiting for it
        for key in ("slow", "waiting"):
            (status, _, text), took = results[key]
            assert status == 503 and b"busy: no photo within 1 s" in text and took >= 1, key
        # the waiting one's slot comes back, the held generation keeps its own
        wait_until(lambda: shoe.under_way == 1, "the waiting request's slot back")
        preparing = Gate(app.prepare_sketch)
        monkeypatch.setattr(app, "prepare_sketch", preparing)
        last = threading.Thread(target=post, args=("last", url))
        last.start()
        preparing.reached()  # in the last slot
        status, _, text = request(url, "POST", "/generate", sketch)
        assert status == 503 and b"busy: other sketches are being made" in text
        generating.open.set()
        preparing.open.set()
        last.join(60)
        wait_until(lambda: shoe.under_way == 0, "every slot back")
        assert request(url, "POST", "/generate", sketch)[0] == 200


def test_the_budget_holds_whichever_stage_is_slow(tiny, monkeypatch):
    """Decoding the body, preparing, generating or encoding the photo: held past the budget, the
    request gets 503 at the budget while that stage is still held, every request meanwhile gets
    503 at once (the one slot is taken), and the server serves again once the work ends."""
    budget_s, sketch = 0.5, png(sketch_image())

    def post(_=None):
        return request(url, "POST", "/generate", sketch)
    with serving(tiny, paper=False, budget_s=budget_s, max_generations=1, tune=False) as url:
        shoe = SERVERS[url].app
        for stage in ("decode_body", "prepare_sketch", "generate", "png_bytes"):
            gate = Gate(getattr(app, stage))
            with monkeypatch.context() as patch, ThreadPoolExecutor(5) as pool:
                patch.setattr(app, stage, gate)
                started = time.monotonic()
                held = pool.submit(post)
                gate.reached()
                others = list(pool.map(post, range(4)))
                (status, _, text), took = held.result(60), time.monotonic() - started
                gate.open.set()  # only now: every answer above came while the stage was held
            assert status == 503 and b"no photo within 0.5 s" in text and took >= budget_s, stage
            assert all(answer[0] == 503 and b"other sketches" in answer[2]
                       for answer in others), (stage, others)
            wait_until(lambda: shoe.under_way == 0, f"{stage}: the slot back")
            assert post()[0] == 200, stage


def test_port_out_of_range_and_help(capsys):
    with pytest.raises(SystemExit, match="2"):
        app.main(["--port", "99999"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith(": error: argument --port: '99999' is not a TCP port (0 to 65535)")
    with pytest.raises(SystemExit, match="0"):
        app.main(["--help"])
    description = " ".join(capsys.readouterr().out.split())
    assert ("Draw a shoe in the browser: a sketch canvas and the photo the generator makes of it, "
            "side by side. options:") in description


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_loopback(tiny):
    with serving(tiny, paper=False, host="::1") as url:
        assert url.startswith("http://[::1]:")
        status, kind, _ = request(url)  # Host: [::1]:PORT
        assert status == 200 and kind.startswith("text/html")
        assert request(url, "POST", "/generate", png(sketch_image()))[0] == 200
        assert request(url, headers={"Host": "evil.example"})[0] == 403


# --- the browser side: a minimal DevTools-protocol client -----------------------------------------

class Chromium:
    """Headless Chromium over --remote-debugging-pipe, with one page attached (flat session
    mode)."""

    def __init__(self, profile_dir):
        to_chromium, self.command_pipe = os.pipe()
        self.reply_pipe, from_chromium = os.pipe()
        # Chromium reads commands from fd 3 and writes replies to fd 4; bash puts the pipes there,
        # from copies numbered 10 and up, so that neither can be an fd 3 or 4 that the other
        # redirection replaces.
        to_chromium, from_chromium = (self._above_4(fd) for fd in (to_chromium, from_chromium))
        self.log = open(Path(profile_dir) / "chromium.log", "wb")
        script = (f'exec "$@" 3<&{to_chromium} 4>&{from_chromium} '
                  f'{to_chromium}<&- {from_chromium}>&-')
        self.process = subprocess.Popen(["bash", "-c", script, "bash", CHROMIUM, *CHROMIUM_FLAGS,
                                         f"--user-data-dir={profile_dir}", "about:blank"],
                                        pass_fds=(to_chromium, from_chromium),
                                        stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        os.close(to_chromium)
        os.close(from_chromium)
        self.buffer, self.last_id, self.session = b"", 0, None

    @staticmethod
    def _above_4(fd: int) -> int:
        copy = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return copy

    def send(self, method: str, timeout_s: float = 60, **params) -> dict:
        """One command to the attached page (or the browser before attaching); waits for its
        reply."""
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.command_pipe, data):]
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\0" not in self.buffer:  # events and replies arrive in order; events have no id
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.reply_pipe], [], [], left)[0]:
                    raise TimeoutError(f"{method}: no reply from Chromium within {timeout_s} s")
                chunk = os.read(self.reply_pipe, 1 << 20)
                if not chunk:
                    raise ConnectionError(f"{method}: Chromium closed the pipe; see "
                                          f"{self.log.name}")
                self.buffer += chunk
            raw, _, self.buffer = self.buffer.partition(b"\0")
            reply = json.loads(raw)
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str, width: int = 640, height: int = 560) -> None:
        """A new tab at url with a width×height viewport, attached and loaded."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete' "
                      f"&& !!window.app")

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: "
                               f"{result['exceptionDetails'].get('exception', result)}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 60) -> None:
        """Poll until the expression is true in the page."""
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout_s} s: {expression}")
            time.sleep(0.05)

    def draw(self, strokes, element: str = "#sketch", step_px: float = 3) -> None:
        """Drag the mouse along each polyline (element pixels) with the left button down: real
        pointer events."""
        left, top, scale = self.evaluate(f"(() => {{ const e = document.querySelector('{element}'),"
                                         f" b = e.getBoundingClientRect(); return [b.left + "
                                         f"e.clientLeft, b.top + e.clientTop, e.clientWidth / "
                                         f"e.width]; }})()")

        def mouse(kind, x, y, buttons):
            self.send("Input.dispatchMouseEvent", type=kind, x=left + x * scale, y=top + y * scale,
                      button="left", buttons=buttons, clickCount=1 if kind != "mouseMoved" else 0)

        for stroke in strokes:
            mouse("mousePressed", *stroke[0], 1)
            for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
                steps = max(1, int(np.hypot(x1 - x0, y1 - y0) / step_px))
                for k in range(1, steps + 1):
                    mouse("mouseMoved", x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps, 1)
            mouse("mouseReleased", *stroke[-1], 0)

    def image(self, expression: str) -> bytes:
        """PNG bytes of a data: URL that a JavaScript expression returns."""
        return base64.b64decode(self.evaluate(expression).split(",", 1)[1])

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close", timeout_s=5)
        except (OSError, TimeoutError, RuntimeError, ConnectionError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.command_pipe)
        os.close(self.reply_pipe)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


CANVAS_PNG = "document.getElementById('sketch').toDataURL('image/png')"
PHOTO_PNG = ("(() => { const img = document.getElementById('photo'), c = "
             "document.createElement('canvas'); c.width = img.naturalWidth; c.height = "
             "img.naturalHeight; c.getContext('2d').drawImage(img, 0, 0); return "
             "c.toDataURL('image/png'); })()")
SHOWN = "app.shown === app.version && app.version >= "


def screenshot(checkpoint=None, out="assets/app.png", strokes=SHOE_STROKES, example=None,
               paper=True) -> Path:
    """Draw strokes (over example sketch N if given) in the app in headless Chromium; save the page
    as a PNG."""
    checkpoint = Path(checkpoint) if checkpoint else find_checkpoint(str(ROOT / "models"))
    with serving(checkpoint, paper=paper) as url, tempfile.TemporaryDirectory() as profile, \
            Chromium(profile) as browser:
        browser.open(url)
        if example is not None:
            browser.evaluate(f"document.querySelectorAll('.example')[{example}].click()")
        browser.draw(strokes)
        browser.wait_for(SHOWN + str(len(strokes) + (example is not None)))
        height = browser.evaluate("document.documentElement.scrollHeight")
        browser.send("Emulation.setDeviceMetricsOverride", width=640, height=height,
                     deviceScaleFactor=1, mobile=False)
        shot = browser.screenshot()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(shot)
    return out


@pytest.mark.skipif(not Path(CHROMIUM).exists(),
                    reason=f"{CHROMIUM} not installed (apt-get install chromium; "
                           f".ci/run does it where it runs as root)")
def test_strokes_drawn_in_chromium_give_infer_eval_photo(eval_url, tiny, tmp_path):
    with Chromium(tmp_path) as browser:
        browser.open(eval_url)
        assert browser.evaluate("app.version === 0 && !document.getElementById('photo').src")
        browser.draw(SHOE_STROKES)
        # one change per stroke, one request after the last
        browser.wait_for(SHOWN + str(len(SHOE_STROKES)))
        assert browser.evaluate("document.getElementById('download').href.startsWith('blob:')")
        canvas = browser.image(CANVAS_PNG)
        assert (pixels(canvas) < 128).all(axis=2).sum() > 500  # the strokes are on the canvas
        (tmp_path / "canvas.png").write_bytes(canvas)
        photo = pixels(browser.image(PHOTO_PNG))
        assert photo.shape == (256, 256, 3)  # the canvas size
        assert np.abs(photo - run_infer_eval(tmp_path / "canvas.png", tiny,
                                             tmp_path / "out")).max() <= 1
        # Undo takes the last stroke off; an example replaces the drawing; both refresh the photo.
        browser.evaluate("document.getElementById('undo').click()")
        browser.wait_for(SHOWN + str(len(SHOE_STROKES) + 1))
        assert not np.array_equal(pixels(browser.image(CANVAS_PNG)), pixels(canvas))
        browser.evaluate("document.querySelectorAll('.example')[0].click()")
        browser.wait_for(SHOWN + str(len(SHOE_STROKES) + 2))
        assert np.array_equal(pixels(browser.image(CANVAS_PNG)),
                              pixels(request(eval_url, path="/examples/0.png")[2]))
        assert not browser.evaluate("document.getElementById('status').classList.contains('error')")
        # Upload takes any image the browser shows, a GIF too (POST /generate refuses one): the
        # page sends its canvas, a PNG
        sketch_image().save(tmp_path / "upload.gif")
        document = browser.send("DOM.getDocument")["root"]["nodeId"]
        node = browser.send("DOM.querySelector", nodeId=document, selector="#upload")["nodeId"]
        browser.send("DOM.setFileInputFiles", files=[str(tmp_path / "upload.gif")], nodeId=node)
        browser.wait_for(SHOWN + str(len(SHOE_STROKES) + 3))
        assert not browser.evaluate("document.getElementById('status').classList.contains('error')")
        assert (pixels(browser.image(CANVAS_PNG)) < 128).all(axis=2).sum() > 100
