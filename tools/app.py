"""Draw a shoe in the browser: a sketch canvas and the photo the generator makes of it, side by
side.

    # newest models/*/generator.pt on http://127.0.0.1:8000
    python -m tools.app
    python -m tools.app --checkpoint models/demo/generator.pt --port 8080 --eval

One page, no build step and no network: pen, eraser, undo, clear, example sketches and upload on the
left; the photo, refreshed 300 ms after each stroke, and its download on the right. The API
behind it:
    POST /generate   body: an image file, PNG, JPEG, BMP, WebP or TIFF (dataset.FORMATS, 8 or
                     16 bits a channel; a GIF is refused), or its base64 data: URL -> image/png
                     at the upload's size (the page's Upload button takes any image the browser
                     shows: it sends the canvas, a PNG)
    POST /generate?given   the same body -> image/png of what the generator is given: the sketch
                     fitted (or padded) at the model's size, shown under the photo
    POST /generate   body: JSON {"sketch": "data:image/png;base64,...", "hints": [{"x": 120,
                     "y": 140, "color": "#b22222"}, ...], "transfer": true}: the same, with
                     colour hints for a model trained with --hints (dots at sketch pixels x, y;
                     the page's hint brush), the shoe then moved to their colour as infer.py
                     moves it ("transfer": false, or --no-transfer for every request: G's own)
    GET  /           the page
    GET  /examples/N.png   example sketch N (val-set sketches of the checkpoint's data, else drawn
                           shoes)
The sketch is prepared exactly as infer.py prepares a file (fitted to its drawing unless --no-fit),
so with --eval the photo equals `python infer.py sketch.png --eval`; by default G runs as in the
paper (dropout on) with the seed reset before every request, so one sketch always gives the same
photo: that of `python infer.py sketch.png --seed 0` on this machine, pixel for pixel, when both
run the same setting. The app tunes at start-up (tune.py) and caches its pick, which infer.py reads
for batches of one image. Where infer.py runs another setting (another cache, --no-tune,
--precision or --threads on one side only) the photos differ by the tuner's bound at most:
BF16_BOUND_DB (45 dB PSNR) where bf16 is picked, fp32 rounding (a grey level) otherwise.

Safe on loopback: only this machine's pages can use it. Every request needs exactly one Host
header, host[:port] with an IPv6 address in brackets (400 otherwise), and it must be localhost or
a loopback address (403: a DNS-rebinding page sends its own host name); an absolute target
(http://host/path) must name such a host too, the Host header's (400); a POST's Origin, one at
most, must be this server at that host and port (403). --host beyond loopback (0.0.0.0: every
interface) serves anyone who can connect and says so at start; it then answers to IP addresses too,
and --allow_host NAME admits a host name.

Nothing holds it for long and every request gets an answer, one line of text for an error:
    400  a malformed request line, target, header or body; not exactly one Host header, or two
         Origin headers
    408  the request line, headers and body not all in within REQUEST_TIMEOUT_S
    413  a body over MAX_BODY_BYTES (refused before it is read)
    503  over MAX_CONNECTIONS connections open (at once, Retry-After: 1); no photo within
         GENERATE_BUDGET_S of the body's arrival (decoding, preparing, waiting and generating
         included); MAX_GENERATIONS requests under way
and the page and other requests are served meanwhile.
"""

import argparse
import base64
import binascii
import html
import io
import ipaddress
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

if __name__ == "__main__":
    # idle OpenMP threads sleep between requests (see infer.py)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from config import SWITCH, add_device_flag, first_line, pick_device  # noqa: E402
from dataset import (list_images, read_header, to_image, to_tensor,  # noqa: E402
                     train_val_folders)
from tools.demo import draw_shoe  # noqa: E402
from tools.edges import sketch_pixels  # noqa: E402
from hints import PAINTED_ALPHA, overlay, parse_colour, with_hints  # noqa: E402
from infer import (EVAL_HELP, add_checkpoint_flags, add_tuning_flags,  # noqa: E402
                   chosen_checkpoint, generate, hint_channels)
from save import load_generator  # noqa: E402
from sketch import prepare_sketch  # noqa: E402
from tune import Tuner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]  # the repo: relative data_dirs are relative to it

# drawing canvas and example sketches, pixels (the photo comes back at the canvas's size)
CANVAS_SIZE = 256
# larger uploads get 413 before being read; a 256×256 canvas PNG is < 200 KB
MAX_BODY_BYTES = 4 * 1024 * 1024
# larger images get 400 before being decoded: the photo comes back at the upload's size, and an
# 8192² one takes longer to resize and encode than the budget (infer.py takes up to 64 Mpx)
MAX_UPLOAD_PIXELS = 4096 * 4096
REQUEST_TIMEOUT_S = 10  # the request line, headers and body must all arrive within this (408)
SEND_TIMEOUT_S = 10  # the client must take the answer within this
MAX_CONNECTIONS = 32  # connections open at once, each on its own thread; more get 503 at once
# after answering, what the client still sends is read and dropped this long at most: closing with
# unread bytes resets the connection, and the reset can destroy the answer before it is read
LINGER_S = 1
N_EXAMPLES = 3  # example sketches offered on the page
# seconds a request may take from its body's arrival to its photo (decoding, preparing, waiting
# for the generator and generating); 503 past it
GENERATE_BUDGET_S = 20
MAX_GENERATIONS = 4  # generation requests under way at once (preparing or waiting); 503 beyond
HINT_DOT = 4 / 256  # a colour hint is a dot of this radius, as a share of the sketch's longer side
MAX_HINTS = 2000  # hint dots in one request at most


class Busy(Exception):
    """The generator cannot take this request now (503: try again)."""


class ShoeApp:
    """The loaded generator and the example sketches; generate() is safe to call from many
    threads."""

    def __init__(self, checkpoint, paper: bool = True, seed: int = 0, device: str = "auto",
                 fit: bool = True, budget_s: float = GENERATE_BUDGET_S,
                 max_generations: int = MAX_GENERATIONS, precision: str = "auto", tune=None,
                 transfer: bool = True):
        self.checkpoint = Path(checkpoint)
        self.device = pick_device(device)
        generator, self.cfg = load_generator(self.checkpoint)
        # the fastest correct setting for this machine (tune.py): a server's job is unbounded
        self.tuner = Tuner(generator.to(self.device), paper=paper, device=self.device,
                           precision=precision, tune=tune)
        self.paper, self.seed, self.fit = paper, seed, fit
        self.transfer = transfer  # infer.py's --transfer: a request's "transfer" overrides it
        # one generation at a time: the runner's thread count and masks are per call
        self.lock = threading.Lock()
        self.budget_s = budget_s
        self.max_generations = max_generations
        self.under_way, self.count_lock = 0, threading.Lock()  # requests holding a slot
        self.examples = make_examples(self.cfg)  # PNG bytes
        # tune and warm up now, on an example at the model's size, not on the first stroke
        example = Image.open(io.BytesIO(self.examples[0])).convert("RGB")
        size = (self.cfg.image_size, self.cfg.image_size)
        sketch = to_tensor(example.resize(size, Image.Resampling.BICUBIC))[None]
        self.tuner(with_hints(sketch) if self.cfg.hints else sketch, [seed])

    def hint_channels(self, prepared, points) -> torch.Tensor:
        """The hint channels of a prepared upload for hint dots [(x, y, (r, g, b))] at its pixels;
        None for a model without hints; ValueError for hints it cannot take."""
        if points and not self.cfg.hints:
            raise ValueError("this model was trained without colour hints (no hint channels); "
                             "train one with --hints")
        if not points:
            return hint_channels(prepared, self.cfg)
        width, height = prepared.size
        radius = HINT_DOT * max(width, height)
        dots = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        draw = ImageDraw.Draw(dots)
        for k, (x, y, colour) in enumerate(points):
            if not (0 <= x < width and 0 <= y < height):
                raise ValueError(f"hint {k} at ({x:g}, {y:g}) lies outside the {width}×{height} "
                                 "sketch")
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(*colour, 255))
        rgba = np.asarray(dots)
        return hint_channels(prepared, self.cfg, (rgba[..., :3], rgba[..., 3] >= PAINTED_ALPHA))

    def generate(self, body: bytes, query: str = "") -> bytes:
        """A POST /generate's body and query -> PNG bytes: the photo at the upload's size, or with
        ?given the sketch the generator is given (fitted or padded, at the model's size).
        ValueError if unusable; Busy when MAX_GENERATIONS requests are under way or past the
        budget. The work runs on a thread of its own, so that the answer comes within the budget
        whichever stage is slow: past it the work ends in the background, keeping its slot."""
        deadline = time.monotonic() + self.budget_s
        if not self.take_slot():
            raise Busy("busy: other sketches are being made; try again")
        result = futures.Future()

        def work():
            try:
                result.set_result(self.make(parse_upload(body, query), deadline))
            except Exception as e:
                result.set_exception(e)
            finally:
                self.give_slot()
        try:
            threading.Thread(target=work, name="generate", daemon=True).start()
        except RuntimeError:  # no thread to be had: the slot would never come back
            self.give_slot()
            raise
        if not futures.wait([result], timeout=max(deadline - time.monotonic(), 0)).done:
            raise self.late()
        return result.result()

    def take_slot(self) -> bool:
        """One of max_generations slots for a request, if one is free."""
        with self.count_lock:
            free = self.under_way < self.max_generations
            self.under_way += free
        return free

    def give_slot(self) -> None:
        with self.count_lock:
            self.under_way -= 1

    def late(self) -> "Busy":
        return Busy(f"busy: no photo within {self.budget_s:g} s; try again")

    def make(self, upload: "Upload", deadline: float) -> bytes:
        """generate()'s work, each stage skipped once the deadline has passed (no one waits for
        it then)."""
        with tempfile.TemporaryDirectory(prefix="pix2pix-app-") as folder:
            path = Path(folder) / "upload"
            path.write_bytes(upload.image)
            size = read_header(path, pair=False)[0]
            if size and size[0] * size[1] > MAX_UPLOAD_PIXELS:
                raise ValueError(f"upload: too large ({size[0]}×{size[1]}, more than "
                                 f"{MAX_UPLOAD_PIXELS} pixels for the sketch pad; infer.py "
                                 f"takes larger files)")
            # infer.py's decoding, size checks, fitting and resizing; no lock: requests prepare
            # side by side
            try:
                prepared = prepare_sketch(path, self.cfg.image_size, self.cfg.direction,
                                          fit=self.fit)
            except ValueError as e:
                raise ValueError(str(e).replace(str(path), "upload")) from None
        prepared.hints = self.hint_channels(prepared, upload.hints)
        if upload.given:  # what the generator is given: the sketch, its hints over it
            return png_bytes(to_image(prepared.sketch if prepared.hints is None
                                      else overlay(prepared.sketch, prepared.hints)))
        if not self.lock.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise self.late()
        try:
            if time.monotonic() > deadline:
                raise self.late()
            # paper mode: the same dropout masks for every request; the hints' colour transferred
            # as infer.py transfers it
            transfer = self.transfer if upload.transfer is None else upload.transfer
            photo = generate(self.tuner, [prepared], self.seed, transfer)[0]  # upload's size
        finally:
            self.lock.release()
        if time.monotonic() > deadline:
            raise self.late()
        return png_bytes(photo)

    def page(self) -> bytes:
        """The HTML page, with this checkpoint's facts filled in."""
        mode = (f"paper mode (dropout on, seed {self.seed})" if self.paper
                else "eval mode (deterministic)")
        facts = f"{self.checkpoint} · {self.cfg.image_size}×{self.cfg.image_size} · {mode}"
        examples = "".join(f'<button class="example" data-n="{n}" title="example {n + 1}">'
                           f'<img src="examples/{n}.png" alt="example sketch {n + 1}"></button>'
                           for n in range(len(self.examples)))
        half = "right" if self.cfg.direction == "BtoA" else "left"
        return (PAGE.replace("%FACTS%", html.escape(facts)).replace("%EXAMPLES%", examples)
                .replace("%SIZE%", str(CANVAS_SIZE)).replace("%INPUT_HALF%", half)
                .replace("%HINTS%", "true" if self.cfg.hints else "false")
                .replace("%TRANSFER%", " checked" if self.transfer else "")
                .replace("%HINT_RADIUS%", f"{HINT_DOT * CANVAS_SIZE:g}").encode())


def png_bytes(image: Image.Image) -> bytes:
    """A PIL image as PNG file bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_examples(cfg, count: int = N_EXAMPLES, size: int = CANVAS_SIZE) -> list:
    """PNG bytes of a few sketches to start from: the first val pairs' input halves, else drawn demo
    shoes."""
    val = train_val_folders(cfg.data_dir)[1]
    if not val.is_dir() and not val.is_absolute():
        # data_dir is relative to the repo, not to the cwd
        val = train_val_folders(ROOT / cfg.data_dir)[1]
    sketches = []
    for path in list_images(val, required=False):
        try:  # the model's input half, padded and resized as infer.py does, at canvas size
            sketches.append(to_image(prepare_sketch(path, size, cfg.direction, fit=False).sketch))
        except ValueError:
            continue
        if len(sketches) == count:
            break
    # no data at hand: edge maps of procedurally drawn shoes (demo.py), about 0.3 s for three
    if not sketches:
        photos = np.stack([np.asarray(draw_shoe(np.random.default_rng([2024, n]), size))
                           for n in range(count)])
        sketches = [Image.fromarray(s) for s in sketch_pixels(photos)]
    return [png_bytes(sketch) for sketch in sketches]


def decode_body(body: bytes) -> bytes:
    """The image bytes of a request body: the body itself, or the payload of a base64 data: URL."""
    if body[:5].lower() != b"data:":
        return body
    header, comma, payload = body.partition(b",")
    if not comma or not header.endswith(b";base64"):
        raise ValueError("a data: URL body must be base64 (data:image/png;base64,...)")
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except binascii.Error:
        raise ValueError("the data: URL is not valid base64") from None


def parse_body(body: bytes) -> tuple:
    """(image bytes, hint dots or None, transfer or None) of a request body: an image or its data:
    URL alone; or JSON {"sketch": data: URL, "hints": [{"x": X, "y": Y, "color": "#rrggbb"}, ...],
    "transfer": true or false (optional)}, the dots as [(x, y, (r, g, b))]. ValueError with one
    line for a body it cannot read."""
    if body.lstrip()[:1] != b"{":
        return decode_body(body), None, None
    try:
        request = json.loads(body)
    except ValueError as e:
        raise ValueError(f"the JSON body does not parse ({first_line(e, 80)})") from None
    except RecursionError:  # json's decoder recurses once per level
        raise ValueError("the JSON body is nested too deeply (it needs three levels)") from None
    if not isinstance(request, dict) or not isinstance(request.get("sketch"), str):
        raise ValueError('a JSON body needs "sketch": the image as a data: URL')
    transfer = request.get("transfer")
    if transfer is not None and not isinstance(transfer, bool):
        raise ValueError('"transfer" must be true or false (whether the shoe takes the hints\' '
                         'colour after the generator, as infer.py --transfer)')
    points = request.get("hints", [])
    if not isinstance(points, list):
        raise ValueError('"hints" must be a list of {"x", "y", "color"}')
    if len(points) > MAX_HINTS:
        raise ValueError(f"{len(points)} hints, more than {MAX_HINTS}")
    dots = []
    for k, point in enumerate(points):
        if not isinstance(point, dict):
            raise ValueError(f'hint {k}: needs numbers "x" and "y" (sketch pixels) and a "color"')
        where = [point.get("x"), point.get("y")]
        # compared before any float(): JSON's integers have no bound (1 and 400 zeros overflow a
        # float), and NaN, Infinity and true are JSON numbers to Python too
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   and abs(v) <= sys.float_info.max for v in where):
            raise ValueError(f'hint {k}: "x" and "y" must be numbers of sketch pixels (finite)')
        if not isinstance(point.get("color"), str):
            raise ValueError(f'hint {k}: "color" must be text such as "#b22222"')
        try:
            dots.append((*map(float, where), parse_colour(point["color"])))
        except ValueError as e:
            raise ValueError(f"hint {k}: {e}") from None
    # a lone surrogate (\ud800) has no UTF-8: replaced, it fails as the bytes it then is
    return decode_body(request["sketch"].encode(errors="replace")), dots, transfer


@dataclass
class Upload:
    """What a POST /generate asks for, read from its body and query by parse_upload."""

    image: bytes  # the sketch: an image file's bytes
    given: bool = False  # ?given: answer with the sketch the generator is given, not the photo
    hints: list | None = None  # colour hint dots [(x, y, (r, g, b))] at the upload's pixels
    transfer: bool | None = None  # the shoe moved to the hints' colour after G; None: the app's


def parse_upload(body: bytes, query: str) -> Upload:
    """The one place a POST /generate's body and query are read and checked: the body is an image
    file (of dataset.FORMATS, opened by dataset.open_image as every image given is) or a base64
    data: URL of one, or JSON with hints (parse_body); ValueError says what is wrong."""
    image, hints, transfer = parse_body(body)
    return Upload(image, given=query == "given", hints=hints, transfer=transfer)


# RFC 9110's token (a header name) and a Content-Length (ASCII digits: str.isdigit() also takes
# '²', which int() refuses)
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
DIGITS = re.compile(r"[0-9]+")
# a Host header or an absolute target's authority, as this server takes it: an IPv6 literal in
# brackets, or a name or IPv4 address (letters, digits, dots and hyphens); then an optional :port
AUTHORITY = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([0-9A-Za-z.-]+))(?::([0-9]{1,5}))?")


def parse_authority(text: str):
    """(host, port or None) of 'host[:port]', the host lowercase and without brackets
    ('[::1]:8000' -> ('::1', 8000)); None for anything else ('[::1]evil.com', 'a:b:c', '::1')."""
    match = AUTHORITY.fullmatch(text)
    if not match or match[3] and int(match[3]) > 65535:
        return None
    if match[1] is not None:
        try:
            ipaddress.IPv6Address(match[1])
        except ValueError:
            return None
    return (match[1] or match[2]).lower(), int(match[3]) if match[3] else None


@dataclass
class Target:
    """A request target: its authority (host, port) when in absolute form (http://host/path),
    else None; its path and its query."""

    authority: tuple | None
    path: str
    query: str


def parse_target(text: str) -> Target | None:
    """The origin form (/path?query) or absolute form (http://host[:port]/path?query) of a request
    target; None for any other (https:, a user name, '*'). An origin-form path that starts with
    '//' is a path, not a host (urlsplit would read one there)."""
    if text.startswith("/"):
        authority, rest = None, text
    elif text[:7].lower() == "http://":
        end = min((k for k in (text.find(c, 7) for c in "/?#") if k >= 0), default=len(text))
        authority, rest = parse_authority(text[7:end]), text[end:]
        if authority is None:
            return None
    else:
        return None
    path, _, query = rest.split("#", 1)[0].partition("?")
    return Target(authority, path or "/", query)


def header_problem(headers) -> str:
    """What is malformed in a request's headers, '' if nothing: a line that is not 'Name: value',
    control characters (folded lines included), not exactly one Host (HTTP/1.1 asks for one, and a
    second one could name another host than the one checked) or one that is not host[:port], more
    than one Origin, a Content-Length that is not one number."""
    if headers.defects:
        return "malformed header line (expected 'Name: value')"
    for name, value in headers.items():
        if not TOKEN.fullmatch(name) or any(c < " " and c != "\t" or c == "\x7f" for c in value):
            return f"malformed header {printable(name, 40)!r}"
    hosts = headers.get_all("Host", [])
    if len(hosts) != 1:
        return f"exactly one Host header is required, got {len(hosts)}"
    if parse_authority(hosts[0].strip(" \t")) is None:
        return f"malformed Host header {printable(hosts[0], 80)!r}"
    origins = headers.get_all("Origin", [])
    if len(origins) > 1:  # a second could say another origin than the one checked
        return f"{len(origins)} Origin headers (one at most)"
    lengths = headers.get_all("Content-Length", [])
    if len(lengths) > 1:
        return f"{len(lengths)} Content-Length headers (one at most)"
    if lengths and not DIGITS.fullmatch(lengths[0].strip(" \t")):
        return f"bad Content-Length {printable(lengths[0], 40)!r}: not a number of bytes"
    return ""


def authority_text(authority: tuple) -> str:
    """'host[:port]' of (host, port), IPv6 addresses in brackets."""
    host, port = authority
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


class DeadlineReader(io.RawIOBase):
    """A socket's reads, each waiting only for what is left until one deadline: a client sending a
    byte at a time is cut off at the deadline (TimeoutError), however often it sends."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline
        self.received, self.eof = 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        timeout = self.sock.gettimeout()
        self.sock.settimeout(left)
        try:
            n = self.sock.recv_into(buffer)
        finally:
            self.sock.settimeout(timeout)  # the answer's writes have their own
        self.received += n
        self.eof = self.eof or n == 0
        return n


class Handler(BaseHTTPRequestHandler):
    """GET / and /examples/N.png, POST /generate; errors are a status and one line of text; one
    request per connection (HTTP/1.0 answers), one log line per connection."""

    timeout = SEND_TIMEOUT_S  # the socket's timeout: the answer's writes (sendall: in all)
    request_timeout_s = REQUEST_TIMEOUT_S  # the request's reads, in all (DeadlineReader)
    linger_s = LINGER_S
    server: "AppServer"
    server_version = "pix2pix-app"
    # answers to a bad or HTTP/0.9 request line have a status line too (http.server's 0.9 has none)
    default_request_version = "HTTP/1.0"

    def setup(self):
        super().setup()
        self.started, self.note, self.answered = time.perf_counter(), "", False
        self.command, self.path, self.request_version, self.requestline = None, "", "HTTP/1.0", ""
        self.rfile.close()
        self.reader = DeadlineReader(self.connection, time.monotonic() + self.request_timeout_s)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self):
        """http.server's, with every failure answered or logged in one line: 408 when the request
        has not arrived within request_timeout_s, a line when the client hung up."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:  # connected, then closed without a word
                return
            if len(self.raw_requestline) > 65536:
                return self.send_error(414, "request line too long")
            if not self.parse_request():
                if not self.answered:  # http.server leaves an empty request line unanswered
                    self.send_error(400, "empty request line")
                return
            method = getattr(self, f"do_{self.command}", None)
            if method is None:
                return self.send_error(501, f"unsupported method ({printable(self.command, 20)!r})")
            method()
        except TimeoutError:  # the reads' deadline (the answer's writes are caught in reply)
            if self.reader.received and not self.answered:
                self.text(408, f"request not received within {self.request_timeout_s:g} s")
            else:  # an idle connection: closed without a word, as every server does
                self.log_line("-", f"idle for {self.request_timeout_s:g} s: closed")
        except OSError as e:  # reset by the client while it was sending
            self.log_line("-", f"client gone before the end of its request ({type(e).__name__})")

    def finish(self):
        super().finish()
        if not self.reader.eof:
            linger(self.connection, self.linger_s)

    def parse_request(self) -> bool:
        """http.server's parsing, then the checks every method gets: well-formed headers and
        target (400), a Host this server answers to and, for an absolute target (http://host/),
        a host it answers to that is the Host header's (403 and 400: RFC 9112 has the client send
        them alike; a rebinding page's browser sends its own host name)."""
        if not super().parse_request():
            return False
        problem = header_problem(self.headers)
        target = parse_target(self.path)
        if target is None:
            problem = problem or f"malformed request target {printable(self.path, 80)!r}"
        if problem:
            self.text(400, problem)
            return False
        assert target is not None
        self.target = target
        self.host = parse_authority(self.headers["Host"].strip(" \t"))  # checked just above
        for host, _ in filter(None, (self.host, target.authority)):
            if not self.server.host_allowed(host):
                self.text(403, f"Host {printable(host, 80)!r} refused: this server answers to "
                               f"localhost and IP addresses (--allow_host NAME admits a name)")
                return False
        if target.authority and target.authority != self.host:
            self.text(400, f"the target's host {authority_text(target.authority)!r} and the Host "
                           f"header {authority_text(self.host)!r} differ")
            return False
        return True

    def do_GET(self):
        path = self.target.path
        app = self.server.app
        if path in ("/", "/index.html"):
            return self.reply(200, app.page(), "text/html; charset=utf-8")
        if path.startswith("/examples/") and path.endswith(".png"):
            n = path[len("/examples/"):-len(".png")]
            if DIGITS.fullmatch(n) and int(n) < len(app.examples):
                return self.reply(200, app.examples[int(n)], "image/png", cache=True)
        if path == "/favicon.ico":
            return self.reply(204, b"")
        self.reply(404, f"not found: {printable(path, 200)}\n".encode(),
                   "text/plain; charset=utf-8")

    do_HEAD = do_GET  # reply() sends the headers of GET's answer, without its body

    def do_POST(self):
        path = self.target.path
        if path != "/generate":
            return self.reply(404, f"not found: {printable(path, 200)} (POST an image to "
                                   f"/generate)\n".encode(), "text/plain; charset=utf-8")
        if not self.same_origin():
            return self.text(403, "cross-origin request refused: open the page from this "
                                  "server instead")
        body = self.read_body()
        if body is None:
            return
        try:
            photo = self.server.app.generate(body, self.target.query)
        except ValueError as e:
            return self.text(400, str(e))
        except Busy as e:
            return self.text(503, str(e), headers={"Retry-After": "1"})
        except Exception as e:  # a bug or an out-of-memory: say so, keep serving
            return self.text(500, f"generation failed: {type(e).__name__}: {printable(e)}")
        self.reply(200, photo, "image/png")

    def read_body(self):
        """The request's body, or None once its problem is answered: a Content-Length (its form
        checked in parse_request) up to MAX_BODY_BYTES, every byte of it before the deadline."""
        if "Transfer-Encoding" in self.headers:
            return self.text(501, "Transfer-Encoding is not supported: send a Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            return self.text(411, "Content-Length required")
        digits = length.strip(" \t").lstrip("0") or "0"
        if len(digits) > 15 or int(digits) > MAX_BODY_BYTES:  # int() refuses 4,300 digits
            size = digits if len(digits) <= 15 else f"{len(digits)} digits of"
            return self.text(413, f"body of {size} bytes is over the {MAX_BODY_BYTES}-byte limit")
        body = self.rfile.read(int(digits))  # the request's deadline bounds how long this waits
        if len(body) < int(digits):
            return self.text(400, f"body ended after {len(body)} of {int(digits)} bytes")
        return body

    def same_origin(self) -> bool:
        """Refuse a POST that another web page makes the browser send: its one Origin must be
        http:// and a host this server answers to, at the host and port the request was sent to
        (the Host header, checked in parse_request; the port 80 when none is said)."""
        origin = self.headers.get("Origin")
        if origin is None:  # not from a browser's page (curl, a script): Host has been checked
            return True
        parsed = parse_authority(origin[7:]) if origin[:7].lower() == "http://" else None
        if parsed is None or not self.server.host_allowed(parsed[0]):
            return False
        return (parsed[0], parsed[1] or 80) == (self.host[0], self.host[1] or 80)

    def text(self, code: int, message: str, headers=None):
        """A short plain-text error for the client."""
        self.note = message
        self.reply(code, (message + "\n").encode(), "text/plain; charset=utf-8", headers=headers)

    def reply(self, code: int, body: bytes, content_type: str = "", cache: bool = False,
              headers=None):
        """The answer, then its log line; a client that hung up meanwhile is said on that line."""
        self.answered = True
        try:
            self.send_response(code)
            if content_type:
                self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError as e:  # BrokenPipeError, ConnectionResetError, TimeoutError
            self.close_connection = True
            self.note = "; ".join(filter(None, [self.note, f"client gone before the answer "
                                                           f"({type(e).__name__})"]))
        self.log_request(code, len(body))

    def send_response(self, code, message=None):
        """The status line and the usual headers; logged by reply(), once written."""
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())
        self.send_header("Date", self.date_time_string())

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, unknown method) as one line of text too."""
        self.close_connection = True
        self.text(code, message or self.responses.get(code, ("error",))[0])

    def log_request(self, code="-", size="-"):
        """One line per request: client, method, path, status, bytes sent, time taken, and why if
        refused."""
        self.log_line(f"{code} {size} B", self.note)

    def log_line(self, outcome: str, note: str = ""):
        path = self.target.path if getattr(self, "target", None) else self.path
        say(log_line(self.client_address[0], self.command or "-", path or "-", outcome,
                     (time.perf_counter() - self.started) * 1000, note))

    def log_error(self, format, *args):
        """Anything else http.server reports: one line as well."""
        self.log_line("-", format % args)


def log_line(client: str, method: str, path: str, outcome: str, ms: float, note: str = "") -> str:
    """'127.0.0.1 POST /generate 200 1234 B 56 ms | why': the server's one line per connection."""
    note = f" | {printable(note)}" if note else ""
    return f"{client} {printable(method, 20)} {printable(path)} {outcome} {ms:.0f} ms{note}"


def say(line: str) -> None:
    """A log line on stdout, in one write: the lines of threads writing at once stay whole."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def linger(sock: socket.socket, seconds: float) -> None:
    """Close our side, then read and drop what the client still sends until it closes, seconds at
    most: a close with unread bytes resets the connection, destroying an answer not yet read."""
    try:
        sock.shutdown(socket.SHUT_WR)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                break
    except OSError:
        pass


def printable(text: str, limit: int = 200) -> str:
    """text for a log line: no control characters, at most limit characters."""
    return "".join(c if c.isprintable() else "?" for c in str(text)[:limit])


def is_address(host: str) -> bool:
    """Whether host is an IPv4 or IPv6 address, not a name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """localhost, 127.x.x.x or ::1."""
    return host == "localhost" or is_address(host) and ipaddress.ip_address(host).is_loopback


class AppServer(ThreadingHTTPServer):
    """The threaded HTTP server (over IPv6 for an IPv6 address), the Host names it answers to,
    and its cap on open connections."""

    max_connections = MAX_CONNECTIONS
    request_queue_size = 64  # the listen backlog: a burst is accepted and answered, not dropped

    app: ShoeApp  # set by make_server

    def __init__(self, host: str, port: int, allow_hosts=()):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # localhost, any name the user named (the bound name included) and, beyond loopback,
        # IP addresses: a rebinding page reaches the server under its own name, never an address
        self.loopback = is_loopback(host)
        self.allowed_names = {"localhost", *(name.lower() for name in allow_hosts)}
        if not is_address(host):  # --host NAME: the user named it
            self.allowed_names.add(host.lower())
        self.open_connections, self.count_lock = 0, threading.Lock()
        super().__init__((host, port), Handler)

    def host_allowed(self, name: str) -> bool:
        """Whether a host (parse_authority's, lowercase) names this server: an allowed name, a
        loopback address, or any IP address when serving beyond loopback."""
        return (name in self.allowed_names or is_loopback(name)
                or is_address(name) and not self.loopback)

    def process_request(self, request, client_address):
        """A thread for the connection while fewer than max_connections are open; else a 503 at
        once, from this (the accepting) thread: threads without limit would let one client
        exhaust the machine."""
        with self.count_lock:
            admitted = self.open_connections < self.max_connections
            self.open_connections += admitted
        if not admitted:
            return self.refuse(request, client_address)
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: nothing will count it down
            self.closed_connection()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.closed_connection()

    def closed_connection(self):
        with self.count_lock:
            self.open_connections -= 1

    def refuse(self, request, client_address):
        """503 on a connection over the cap, without waiting for anything: the answer fits the
        new socket's empty send buffer, and what the client sent already is dropped so that the
        close does not reset the connection before the answer is read."""
        note = f"busy: {self.max_connections} connections are open; try again"
        body = (note + "\n").encode()
        answer = ("HTTP/1.0 503 Service Unavailable\r\nServer: pix2pix-app\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n"
                  f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n\r\n").encode()
        request.setblocking(False)
        try:
            request.send(answer + body)
            for _ in range(16):  # 1 MiB at most
                if not request.recv(65536):
                    break
        except OSError:  # BlockingIOError: nothing more to read now
            pass
        say(log_line(client_address[0], "-", "-", f"503 {len(body)} B", 0, note))
        self.shutdown_request(request)

    def handle_error(self, request, client_address):
        """An error that no handler caught: one line for a connection's failure, http.server's
        traceback for anything else (a bug)."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            return super().handle_error(request, client_address)
        say(log_line(client_address[0], "-", "-", "-", 0,
                     f"connection failed: {type(error).__name__}: {error}"))


def make_server(checkpoint, host: str = "127.0.0.1", port: int = 8000, paper: bool = True,
                seed: int = 0, device: str = "auto", fit: bool = True, allow_hosts=(),
                budget_s: float = GENERATE_BUDGET_S, max_generations: int = MAX_GENERATIONS,
                precision: str = "auto", tune=None, transfer: bool = True) -> "AppServer":
    """An HTTP server with the app loaded, bound but not yet serving (port 0: any free port)."""
    app = ShoeApp(checkpoint, paper=paper, seed=seed, device=device, fit=fit, budget_s=budget_s,
                  max_generations=max_generations, precision=precision, tune=tune,
                  transfer=transfer)
    server = AppServer(host, port, allow_hosts)
    server.app = app
    return server


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0 to 65535)")
    return int(text)


def main(argv=None) -> int:
    # the first paragraph, whole
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    add_checkpoint_flags(parser)
    parser.add_argument("--port", type=port_number, default=8000,
                        help="TCP port (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on: 127.0.0.1 or ::1 (this machine), 0.0.0.0 "
                             "(every interface: anyone who can connect)")
    parser.add_argument("--allow_host", action="append", default=[], metavar="NAME",
                        help="a host name the browser may use for this server besides localhost "
                             "and IP addresses (repeatable); others are refused (DNS rebinding)")
    parser.add_argument("--eval", **SWITCH, help=EVAL_HELP)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed set before each generation in paper mode")
    parser.add_argument("--fit", **{**SWITCH, "default": True},
                        help="fit the drawing to the training frame and redraw its lines (as "
                             "infer.py does)")
    parser.add_argument("--transfer", **{**SWITCH, "default": True},
                        help="as infer.py: after G, move the shoe to the hints' colour (default: "
                             "on; the page's Transfer box and a request's \"transfer\" say it "
                             "per photo); --no-transfer: G's own photo")
    add_device_flag(parser)
    add_tuning_flags(parser)
    args = parser.parse_args(argv)
    try:
        checkpoint = chosen_checkpoint(args)
        server = make_server(checkpoint, args.host, args.port, paper=not args.eval, seed=args.seed,
                             device=args.device, fit=args.fit, allow_hosts=args.allow_host,
                             precision=args.precision, tune=args.tune,
                             transfer=args.transfer)
    except (OSError, ValueError) as e:
        print(f"app.py: error: {e}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    assert isinstance(host, str)  # an IP address (bytes only for AF_UNIX)
    if not server.loopback:
        names = ", ".join(sorted(server.allowed_names))
        print(f"app.py: warning: serving on {args.host} reaches beyond this machine: anyone who "
              f"can connect can use the model and see the checkpoint's path; Host names other "
              f"than IP addresses and {names} are refused (--allow_host NAME)", file=sys.stderr,
              flush=True)
    url_host = f"[{host}]" if ":" in host else host
    print(f"serving {checkpoint} on http://{url_host}:{port}/ (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pix2pix · draw a shoe</title>
<style>
  * { box-sizing: border-box; }
  body { margin: 0; padding: 20px 24px; font: 14px/1.4 system-ui, sans-serif; color: #222;
         background: #f4f3ef; }
  h1 { font-size: 20px; margin: 0 0 2px; }
  .sub { color: #666; margin: 0 0 16px; }
  main { display: flex; gap: 20px; flex-wrap: wrap; align-items: flex-start; }
  .card { width: calc(%SIZE%px + 26px); background: #fff; border-radius: 10px; padding: 12px;
          box-shadow: 0 1px 3px rgba(0,0,0,.12); }
  .card h2 { font-size: 13px; font-weight: 600; text-transform: uppercase; letter-spacing: .05em;
             color: #777; margin: 0 0 8px; }
  canvas, .result { display: block; box-sizing: content-box; width: %SIZE%px; height: %SIZE%px;
                   border: 1px solid #ddd; border-radius: 4px; }
  canvas { cursor: crosshair; touch-action: none; background: #fff; }
  .pad { position: relative; }
  #hintsLayer { position: absolute; left: 0; top: 0; background: none; pointer-events: none;
                border-color: transparent; }
  input[type=color] { width: 34px; height: 28px; padding: 1px; border: 1px solid #ccc;
                      border-radius: 6px; background: #fff; cursor: pointer; }
  input[type=color]:disabled, #hint:disabled { opacity: .4; cursor: default; }
  .result { position: relative; background: #fafafa; }
  .result img { width: 100%; height: 100%; border-radius: 4px; }
  .result img:not([src]) { display: none; }
  .placeholder { position: absolute; inset: 0; display: grid; place-items: center; color: #aaa; }
  .placeholder[hidden] { display: none; }
  .tools { display: flex; gap: 6px; margin-top: 8px; flex-wrap: wrap; }
  button, .button { font: inherit; padding: 4px 10px; border: 1px solid #ccc; border-radius: 6px;
                    background: #fff; color: #222; cursor: pointer; text-decoration: none; }
  button:hover:not(:disabled), .button:hover { background: #f0f0f0; }
  button.on { background: #222; color: #fff; border-color: #222; }
  button:disabled, .button.off { opacity: .4; cursor: default; pointer-events: none; }
  input[type=file] { display: none; }
  .caption { color: #777; font-size: 12px; margin-top: 10px; }
  .examples { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 4px; align-items: center; }
  .examples > * { flex: none; }
  .example { padding: 0; border-radius: 4px; overflow: hidden; line-height: 0; }
  .example img { width: 44px; height: 44px; }
  #status { color: #666; margin-top: 8px; min-height: 1.4em; }
  .given { width: 96px; height: 96px; border: 1px solid #ddd; border-radius: 4px; }
  .given:not([src]) { visibility: hidden; }
  #status.error { color: #b00020; }
  footer { color: #888; font-size: 12px; margin-top: 16px; }
</style>
</head>
<body>
<h1>Draw a shoe</h1>
<p class="sub">pix2pix edges2shoes: sketch an outline, the generator paints the photo.</p>
<main>
  <section class="card">
    <h2>Sketch</h2>
    <div class="pad"><canvas id="sketch" width="%SIZE%" height="%SIZE%"></canvas><canvas
      id="hintsLayer" width="%SIZE%" height="%SIZE%"></canvas></div>
    <div class="tools">
      <button id="pen" class="on" title="black lines (P)">Pen</button>
      <button id="eraser" title="white, wide (E)">Eraser</button>
      <button id="hint" title="colour hints: dots of the picked colour that the photo follows (H)"
              >Hint</button>
      <input id="hintColour" type="color" value="#b22222" title="hint colour">
      <button id="clearHints" title="take every hint away">Clear hints</button>
      <label id="transferLabel" title="the whole shoe takes the hints' colour, its shading kept, as
        infer.py --transfer (off: the generator's own photo)"><input id="transfer"
        type="checkbox"%TRANSFER%> Transfer</label>
      <button id="undo" title="Ctrl+Z" disabled>Undo</button>
      <button id="clear">Clear</button>
    </div>
    <div class="caption">or start from an example or an image:</div>
    <div class="examples">%EXAMPLES%
      <label class="button" for="upload"
             title="an image of a sketch; pairs give their input half">Upload…</label>
      <input id="upload" type="file" accept="image/*">
    </div>
  </section>
  <section class="card">
    <h2>Photo</h2>
    <div class="result">
      <div class="placeholder"
           id="placeholder">draw to see a photo</div><img id="photo" alt="generated photo">
    </div>
    <div class="tools"><a id="download" class="button off"
                          download="pix2pix-shoe.png">Download photo</a></div>
    <div id="status"></div>
    <div class="caption" title="the sketch fitted to the frame and redrawn as the training edges">
      the generator was given:</div><img id="given" class="given" alt="the sketch it was given">
  </section>
</main>
<footer>%FACTS%</footer>
<script>
"use strict";
const W = %SIZE%, H = %SIZE%, INPUT_HALF = "%INPUT_HALF%", DEBOUNCE_MS = 300;
const HINTS = %HINTS%, HINT_RADIUS = %HINT_RADIUS%;  // whether the model takes colour hints
const layer = document.getElementById("hintsLayer"), layerCtx = layer.getContext("2d");
const colourInput = document.getElementById("hintColour");
const transferBox = document.getElementById("transfer");
const canvas = document.getElementById("sketch"),
      ctx = canvas.getContext("2d", {willReadFrequently: true});
const photo = document.getElementById("photo"), statusLine = document.getElementById("status");
const download = document.getElementById("download"), undoButton = document.getElementById("undo");
// version counts canvas changes, shown is the version whose photo is on screen (tests wait for
// them to meet)
const app = window.app = {version: 0, shown: 0};
const undoStack = [];
let tool = "pen", last = null, timer = null, inFlight = null, photoUrl = null;
let hints = [];  // colour hints: {x, y, color} in canvas pixels, sent beside the sketch

function whiten() { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H); }
function drawHints() {
  layerCtx.clearRect(0, 0, W, H);
  for (const hint of hints) {
    layerCtx.beginPath();
    layerCtx.arc(hint.x, hint.y, HINT_RADIUS, 0, 2 * Math.PI);
    layerCtx.fillStyle = hint.color;
    layerCtx.fill();
    layerCtx.strokeStyle = "rgba(0,0,0,.35)";
    layerCtx.stroke();
  }
}
function addHint(point) {
  const [x, y] = point.map(Math.round);
  if (x < 0 || y < 0 || x >= W || y >= H) return;
  hints.push({x, y, color: colourInput.value});
  drawHints();
}
function remember() {
  undoStack.push({image: ctx.getImageData(0, 0, W, H), hints: hints.slice()});
  if (undoStack.length > 50) undoStack.shift();
  undoButton.disabled = false;
}
function changed(delay = DEBOUNCE_MS) {
  app.version++;
  clearTimeout(timer);
  timer = setTimeout(generate, delay);
}
function say(text, error = false) { statusLine.textContent = text;
                                    statusLine.classList.toggle("error", error); }

async function generate() {
  const version = app.version;
  if (inFlight) inFlight.abort();  // its answer would be stale anyway
  const controller = inFlight = new AbortController();
  const started = performance.now();
  say("generating…");
  try {
    // the sketch as a PNG; with hints, JSON: the PNG as a data: URL and the dots
    const type = hints.length ? "application/json" : "image/png";
    const sketch = hints.length
        ? JSON.stringify({sketch: canvas.toDataURL("image/png"), hints,
                          transfer: transferBox.checked})
        : await new Promise(resolve => canvas.toBlob(resolve, "image/png"));
    const response = await fetch("generate", {method: "POST", headers: {"Content-Type": type},
                                              body: sketch, signal: controller.signal});
    if (!response.ok) throw new Error(`${response.status} ${(await response.text()).trim()}`);
    const png = await response.blob();
    if (version !== app.version) return;  // the canvas changed meanwhile: a newer request follows
    const url = URL.createObjectURL(png);
    photo.src = url;
    await photo.decode();
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = download.href = url;
    download.classList.remove("off");
    document.getElementById("placeholder").hidden = true;
    app.shown = version;
    const ms = Math.round(performance.now() - started);
    say(`${photo.naturalWidth}×${photo.naturalHeight} photo in ${ms} ms`);
    // then what the generator was given, so that a bad photo can be understood
    const given = await fetch("generate?given", {method: "POST",
                                                 headers: {"Content-Type": type},
                                                 body: sketch, signal: controller.signal});
    if (given.ok && version === app.version) {
      const shown = document.getElementById("given");
      if (shown.src) URL.revokeObjectURL(shown.src);
      shown.src = URL.createObjectURL(await given.blob());
    }
  } catch (err) {
    if (err.name !== "AbortError" && version === app.version) say(`error: ${err.message}`, true);
  } finally {
    if (inFlight === controller) inFlight = null;
  }
}

function at(event) {
  const box = canvas.getBoundingClientRect();  // clientLeft/Top: the border's width
  return [(event.clientX - box.left - canvas.clientLeft) * W / canvas.clientWidth,
          (event.clientY - box.top - canvas.clientTop) * H / canvas.clientHeight];
}
function segment(from, to) {
  ctx.beginPath(); ctx.moveTo(...from); ctx.lineTo(...to); ctx.stroke();
}
canvas.addEventListener("pointerdown", event => {
  if (event.button !== 0) return;
  canvas.setPointerCapture(event.pointerId);
  clearTimeout(timer);  // no request in the middle of a stroke
  remember();
  last = at(event);
  if (tool === "hint") { addHint(last); return; }
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.strokeStyle = tool === "pen" ? "#000" : "#fff";
  ctx.lineWidth = tool === "pen" ? 2 : 18;
  segment(last, last);  // a click leaves a dot
});
canvas.addEventListener("pointermove", event => {
  if (!last) return;
  const point = at(event);
  if (tool === "hint") {  // the brush: a dot every radius along the way
    if (Math.hypot(point[0] - last[0], point[1] - last[1]) < HINT_RADIUS) return;
    addHint(point);
  } else {
    segment(last, point);
  }
  last = point;
});
function endStroke() { if (last) { last = null; changed(); } }
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function pick(name) {
  tool = name;
  for (const id of ["pen", "eraser", "hint"])
    document.getElementById(id).classList.toggle("on", id === name);
}
document.getElementById("pen").onclick = () => pick("pen");
document.getElementById("eraser").onclick = () => pick("eraser");
document.getElementById("hint").onclick = () => pick("hint");
colourInput.addEventListener("input", () => pick("hint"));
transferBox.addEventListener("change", () => { if (hints.length) changed(0); });
undoButton.onclick = () => {
  if (!undoStack.length) return;
  const state = undoStack.pop();
  ctx.putImageData(state.image, 0, 0);
  hints = state.hints;
  drawHints();
  undoButton.disabled = !undoStack.length;
  changed();
};
document.getElementById("clear").onclick = () => {
  remember(); whiten(); hints = []; drawHints(); changed();
};
document.getElementById("clearHints").onclick = () => {
  if (!hints.length) return;
  remember(); hints = []; drawHints(); changed();
};
if (!HINTS)  // a model trained without hints: the brush stays off
  for (const id of ["hint", "hintColour", "clearHints", "transfer"]) {
    const control = document.getElementById(id);
    control.disabled = true;
    control.title = "this model was trained without colour hints (train with --hints)";
  }
document.addEventListener("keydown", event => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z") { event.preventDefault();
                                                               undoButton.click(); }
  else if (event.key === "p") pick("pen");
  else if (event.key === "e") pick("eraser");
  else if (event.key === "h" && HINTS) pick("hint");
});

// A picture on white, scaled to fit and centred: the server pads non-square sketches the same way.
function place(image, width, height) {
  let left = 0;
  // an AB pair
  if (width === 2 * height) { width = height; if (INPUT_HALF === "right") left = width; }
  remember();
  whiten();
  hints = [];  // they were placed on the drawing this one replaces
  drawHints();
  const scale = Math.min(W / width, H / height), w = width * scale, h = height * scale;
  ctx.drawImage(image, left, 0, width, height, (W - w) / 2, (H - h) / 2, w, h);
  changed(0);
}
for (const button of document.querySelectorAll(".example")) {
  const image = button.querySelector("img");
  button.onclick = () => place(image, image.naturalWidth, image.naturalHeight);
}
document.getElementById("upload").addEventListener("change", async event => {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  try {
    const bitmap = await createImageBitmap(file);
    place(bitmap, bitmap.width, bitmap.height);
  } catch (err) {
    say(`cannot read ${file.name} as an image`, true);
  }
});
whiten();
</script>
</body>
</html>
"""

if __name__ == "__main__":
    sys.exit(main())
