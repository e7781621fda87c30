"""The pix2pix authors' published generators: downloaded (resumable) and converted once to this
repo's generator.pt, which infer.py and the tools load like any trained run's.

    from pretrained import pretrained_checkpoint
    path = pretrained_checkpoint("edges2shoes")   # -> models/pretrained/edges2shoes/generator.pt

fetch() is the one HTTP download of the project (tools/data.py fetches the data sets with it).
"""

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch
from tqdm import tqdm

from config import Config
from generator import build_generator
from save import atomic_save, safe_load

DOWNLOAD_TIMEOUT_S = 30  # seconds a connect or a read may stall before a download stops
DOWNLOAD_CHUNK_BYTES = 1 << 20  # download read size (at most; a read returns what has arrived)
# a download slower than this over a window stops (resumable): a trickle never ends otherwise
DOWNLOAD_MIN_BYTES_PER_S = 16 * 1024
DOWNLOAD_RATE_WINDOW_S = 60  # seconds over which the rate is measured
# The files fetch() gets, by name: their published size, bytes (the weights measured on a
# re-creation of the authors' unet_256; the archives rounded from the server's listing). A size
# outside expected / TOLERANCE .. expected * TOLERANCE is another file (a page, a wrong or
# hostile one) and is refused before anything is written.
DOWNLOAD_BYTES = {
    **{f"{name}.pth": 217_707_128 for name in ("edges2shoes", "sat2map", "map2sat",
                                                "facades_label2photo", "day2night")},
    "facades.tar.gz": 30_400_000, "cityscapes.tar.gz": 104_000_000, "maps.tar.gz": 250_000_000,
    "night2day.tar.gz": 2_040_000_000, "edges2shoes.tar.gz": 2_150_000_000,
    "edges2handbags.tar.gz": 8_600_000_000}
DOWNLOAD_SIZE_TOLERANCE = 1.5  # factor either way
DOWNLOAD_MAX_UNKNOWN_BYTES = 2 << 30  # the cap for a name not in DOWNLOAD_BYTES


def megabytes(size: int) -> str:
    """'217.7 MB'."""
    return f"{size / 1e6:.1f} MB"


def expected_size(name: str) -> tuple:
    """(fewest, most) bytes a download named name may have."""
    if name in DOWNLOAD_BYTES:
        size = DOWNLOAD_BYTES[name]
        return int(size / DOWNLOAD_SIZE_TOLERANCE), int(size * DOWNLOAD_SIZE_TOLERANCE)
    return 0, DOWNLOAD_MAX_UNKNOWN_BYTES


def read_part_info(path: Path) -> dict:
    """What a .part belongs to ({url, size, etag, last_modified}), {} if unknown."""
    try:
        info = json.loads(path.read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def open_url(url: str, headers: dict, timeout_s: float):
    """urlopen, with any failure as one OSError line; an HTTP 416 is returned, not raised."""
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == 416:
            return e
        raise OSError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise OSError(f"cannot download {url}: {getattr(e, 'reason', e)}") from None


def resumed_other_file(response, have: int, info: dict) -> str:
    """Why a 206 answer does not continue the .part ('' when it does): another start, total
    size, ETag or Last-Modified than the .part's."""
    content_range = response.headers.get("Content-Range", "")
    if not content_range.startswith(f"bytes {have}-"):
        return f"the server resumed at another byte ({content_range or 'no Content-Range'})"
    total = content_range.rsplit("/", 1)[-1]
    if total != "*" and total != str(info.get("size")):
        return f"it is now {total} bytes, the partial file was of {info.get('size')}"
    for key, header in (("etag", "ETag"), ("last_modified", "Last-Modified")):
        now = response.headers.get(header)
        if info.get(key) and now and now != info[key]:
            return f"its {header} changed"
    return ""


def fetch(url: str, dest, timeout_s: float = DOWNLOAD_TIMEOUT_S, size_range=None,
          min_rate: float = DOWNLOAD_MIN_BYTES_PER_S,
          rate_window_s: float = DOWNLOAD_RATE_WINDOW_S) -> None:
    """Stream url to dest with a progress bar, resuming dest.part where an earlier attempt of the
    same file stopped (dest.part.json holds its url, size, ETag and Last-Modified). A size outside
    size_range (default: expected_size(dest.name)) is refused, a rate under min_rate bytes/s over
    rate_window_s stops it. Any failure, Ctrl-C included, is one OSError line; the .part of a cut
    or slow download stays for the next attempt."""
    dest = Path(dest)
    part, info_file = (dest.with_name(dest.name + suffix) for suffix in (".part", ".part.json"))
    fewest, most = size_range or expected_size(dest.name)
    again = f"run the command again to resume from {part}"
    try:
        info = read_part_info(info_file) if part.is_file() else {}
        # resume only what is known to be a start of this url's file
        have = part.stat().st_size if info.get("url") == url and info.get("size") else 0
        while True:
            headers = {"Range": f"bytes={have}-"} if have else {}
            if have and (info.get("etag") or info.get("last_modified")):
                # the server sends the whole file (200) if it has changed since
                headers["If-Range"] = info.get("etag") or info["last_modified"]
            response = open_url(url, headers, timeout_s)
            if not have:
                if response.status == 416:  # asked for no range
                    response.close()
                    raise OSError(f"cannot download {url}: HTTP 416")
                break
            if response.status == 416 and have == info.get("size"):
                response.close()  # nothing left to send: .part holds it all (the caller verifies)
                part.replace(dest)
                info_file.unlink(missing_ok=True)
                return
            other = ("the server cannot resume it (HTTP 416)" if response.status == 416 else
                     resumed_other_file(response, have, info) if response.status == 206 else "")
            if not other:
                break
            response.close()
            print(f"{part}: not resumed ({other}); downloading {dest.name} afresh", flush=True)
            have, info = 0, {}
        with response:
            # a 200 (or a file:// URL) sends the whole file
            resumed = response.status == 206 and have > 0
            have = have if resumed else 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.strip().isdigit() else None
            if total is not None and not fewest <= total <= most:
                known = (f"{dest.name} is about {megabytes(DOWNLOAD_BYTES[dest.name])}"
                         if dest.name in DOWNLOAD_BYTES and not size_range else
                         f"{dest.name} may be {megabytes(fewest)} to {megabytes(most)}")
                kind = response.headers.get("Content-Type", "").split(";")[0]
                raise OSError(f"{url} declares {megabytes(total)}"
                              + (" of text/html (a page?)" if kind == "text/html" else "")
                              + f"; {known}: refused, nothing written")
            if not resumed:
                info = {"url": url, "size": total, "etag": response.headers.get("ETag"),
                        "last_modified": response.headers.get("Last-Modified")}
                info_file.write_text(json.dumps(info))
            read = getattr(response, "read1", response.read)  # what has arrived, not a full chunk
            got, window_start, window_got = have, time.monotonic(), have
            stop = ""  # why the loop stopped early
            try:
                with open(part, "ab" if resumed else "wb") as out, \
                        tqdm(total=total, initial=have, unit="B", unit_scale=True,
                             unit_divisor=1024, desc=f"downloading {dest.name}") as bar:
                    while chunk := read(DOWNLOAD_CHUNK_BYTES):
                        if got + len(chunk) > most:
                            stop = "too large"
                            break
                        out.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
                        now = time.monotonic()
                        if now - window_start >= rate_window_s:
                            if got - window_got < min_rate * (now - window_start):
                                stop = (f"{got - window_got} bytes in {now - window_start:.1f} s,"
                                        f" under the minimum of {min_rate:.0f} bytes/s")
                                break
                            window_start, window_got = now, got
            except (OSError, http.client.HTTPException) as e:  # timeouts, resets, a cut mid-body
                raise OSError(f"download of {url} interrupted ({type(e).__name__}: {e}); "
                              f"{again}") from None
        if stop == "too large":
            part.unlink(missing_ok=True)
            info_file.unlink(missing_ok=True)
            raise OSError(f"{url} sent more than {megabytes(most)}, more than {dest.name} can "
                          f"be: stopped, deleted what came")
        if stop:
            raise OSError(f"download of {url} too slow ({stop}); {again}")
    except KeyboardInterrupt:
        ending = again if part.is_file() else "run the command again to download it"
        raise OSError(f"download of {url} interrupted by Ctrl-C; {ending}") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise OSError(f"download of {url} stopped after {size} of {total} bytes; {again}")
    part.replace(dest)
    info_file.unlink(missing_ok=True)


# The pix2pix authors' PyTorch generators (their scripts/download_pix2pix_model.sh): name -> (data
# set folder under data/, direction). All are their unet_256 with batch norm: ngf 64, 8 downs.
PRETRAINED = {"edges2shoes": ("edges2shoes", "AtoB"), "sat2map": ("maps", "AtoB"),
              "map2sat": ("maps", "BtoA"), "facades_label2photo": ("facades", "BtoA"),
              "day2night": ("night2day", "BtoA")}
PRETRAINED_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"  # serves NAME.pth
PRETRAINED_URL_ENV = "PIX2PIX_PRETRAINED_URL"  # replaces PRETRAINED_URL (a mirror, a test server)


def authors_prefix(depth: int) -> str:
    """Key prefix of the authors' skip block at depth (0 outermost): blocks nest, each an
    nn.Sequential named model, the outermost's submodule at index 1 and every other one's at 3."""
    return "model." + "model.1." * (depth >= 1) + "model.3." * max(depth - 1, 0) + "model."


def authors_layout(num_downs: int) -> dict:
    """{our module name: (the authors' one, whether its input channels are [skip, upsampled])}."""
    outermost = authors_prefix(0)
    layout = {"downs.0": (outermost + "0", False), "final.1": (outermost + "3", True)}
    for depth in range(1, num_downs):
        block, innermost, j = authors_prefix(depth), depth == num_downs - 1, num_downs - 1 - depth
        # theirs: [LeakyReLU, conv, norm, submodule, ReLU, convT, norm, (Dropout)]; the innermost
        # block has no submodule and no norm after its conv: [LeakyReLU, conv, ReLU, convT, norm]
        layout[f"downs.{depth}.1"] = (block + "1", False)
        if not innermost:
            layout[f"downs.{depth}.2"] = (block + "2", False)
        layout[f"ups.{j}.1"] = (block + ("3" if innermost else "5"), not innermost)
        layout[f"ups.{j}.2"] = (block + ("4" if innermost else "6"), False)
    return layout


def convert_authors_generator(state_dict, **config_fields) -> tuple:
    """The authors' UnetGenerator state dict -> (this repo's generator state dict, Config).

    Exact: the same network, weight for weight. Their skip joins cat([encoder output, upsampled]),
    ours cat([upsampled, encoder output]), so each transposed conv after a join gets its input
    channel halves swapped. Their skip carries LeakyReLU(encoder output) (an in-place LeakyReLU),
    which the ReLU that follows makes the same. ngf and num_downs are read from the shapes, dropout
    sits where they trained it (dropout_blocks="authors_pytorch"). A misfit is one ValueError
    line."""
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise ValueError("not a state dict of tensors")
    first = state_dict.get("model.model.0.weight")
    if first is None or first.dim() != 4 or tuple(first.shape[2:]) != (4, 4):
        raise ValueError("no 4×4 model.model.0.weight: not the authors' UNet generator")
    ngf, in_ch = first.shape[:2]
    num_downs = 1
    while any(key.startswith(authors_prefix(num_downs)) for key in state_dict):
        num_downs += 1
    last = state_dict.get(authors_prefix(0) + "3.weight")
    out_ch = last.shape[1] if last is not None and last.dim() == 4 else None
    if (in_ch, out_ch) != (3, 3) or num_downs < 5:
        raise ValueError(f"a UNet with {in_ch} input and {out_ch} output channels and {num_downs} "
                         f"downsamplings; this repo needs 3, 3 and at least 5")
    cfg = Config(**{"ngf": ngf, "num_downs": num_downs, "image_size": 2**num_downs,
                    "dropout_blocks": "authors_pytorch", **config_fields})
    expected = build_generator(cfg).state_dict()
    layout, converted, used = authors_layout(num_downs), {}, set()
    for key, like in expected.items():
        module, name = key.rsplit(".", 1)
        theirs, joined = layout[module]
        theirs = f"{theirs}.{name}"
        if theirs not in state_dict and name == "num_batches_tracked":  # files of PyTorch < 0.4.1
            converted[key] = torch.zeros_like(like)
            continue
        if theirs not in state_dict:
            raise ValueError(f"{theirs} is missing (not the authors' batch-norm UNet generator)")
        tensor = state_dict[theirs]
        used.add(theirs)
        if tuple(tensor.shape) != tuple(like.shape):
            raise ValueError(f"{theirs} has shape {tuple(tensor.shape)}, expected "
                             f"{tuple(like.shape)} for ngf {ngf}, {num_downs} downsamplings")
        if joined and name == "weight":  # convT (in, out, kH, kW): [skip, up] -> [up, skip]
            half = tensor.shape[0] // 2
            tensor = torch.cat([tensor[half:], tensor[:half]])
        converted[key] = tensor.to(like.dtype).clone()
    unused = sorted(set(state_dict) - used)
    if unused:
        raise ValueError(f"{len(unused)} unexpected keys such as {unused[0]} "
                         f"(only the authors' batch-norm UNet generator converts)")
    return converted, cfg


def pretrained_checkpoint(name: str, models_dir="models",
                          timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """models_dir/pretrained/NAME/generator.pt, downloaded (resumable) and converted on first use.
    A download or file that fails leaves no generator.pt and no converted half; a cut download
    leaves NAME.pth.part to resume from."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; there are {', '.join(PRETRAINED)}")
    folder = Path(models_dir) / "pretrained" / name
    target = folder / "generator.pt"
    if target.is_file():
        return target
    url = f"{(os.environ.get(PRETRAINED_URL_ENV) or PRETRAINED_URL).rstrip('/')}/{name}.pth"
    download = folder / f"{name}.pth"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if not download.is_file():
            fetch(url, download, timeout_s)
        try:
            state_dict = safe_load(download, "PyTorch file")
        except ValueError as e:  # what came is named; the url is said below
            raise ValueError(str(e).removeprefix(f"{download}: ")) from None
        data_set, direction = PRETRAINED[name]
        weights, cfg = convert_authors_generator(state_dict, name=name, direction=direction,
                                                 data_dir=f"data/{data_set}")
        build_generator(cfg).load_state_dict(weights)  # strict: every key and shape fits
        atomic_save({"generator": weights, "config": cfg.to_dict(), "step": 0}, target)
        download.unlink()
    except ValueError as e:
        download.unlink(missing_ok=True)  # a bad file would fail the same way next time
        raise ValueError(f"{url}: {e}; deleted the download, run again to fetch it anew") from None
    finally:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    print(f"{name}: the authors' weights from {url} converted to {target}")
    return target
