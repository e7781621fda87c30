"""The data tools of dataset.py: download (offline, from a local server), pairs, combine, check,
skip_bad."""

import http.server
import io
import re
import tarfile
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFile

import dataset as core_dataset
import pretrained
from conftest import make_pairs
from dataset import PairDataset, read_header, split_pair
from tools.data import check, combine, download, main, photos_to_pairs
from tools.demo import make_demo


# ---------------------------------------------------------------- download, served offline

class ArchiveHandler(http.server.BaseHTTPRequestHandler):
    """Serves server.files by file name; honours 'Range: bytes=N-' unless server.honour_range is
    False, logs every request's Range header, and cuts the body after server.cut_at bytes when that
    is set."""

    def do_GET(self):
        body = self.server.files.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        self.server.ranges.append(asked)
        match = re.fullmatch(r"bytes=(\d+)-", asked or "")
        start = int(match[1]) if match and self.server.honour_range else 0
        if start >= len(body) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        # a cut body: the connection then closes
        self.wfile.write(body[start:self.server.cut_at or len(body)])
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """A local HTTP server on a free port, in a thread; tests fill server.files."""
    for proxy in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    # the test archives are small: no known size for their names, only the cap
    monkeypatch.setattr(pretrained, "DOWNLOAD_BYTES", {})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ArchiveHandler)
    httpd.files, httpd.ranges, httpd.honour_range, httpd.cut_at = {}, [], True, None
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/pix2pix/datasets"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def build_archive(src, name="facades", members=None) -> bytes:
    """A NAME.tar.gz like the official ones (top folder NAME/ with train/ val/), from pairs made in
    src."""
    make_pairs(src / name / "train", 6, seed=1)
    make_pairs(src / name / "val", 2, seed=2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(src / name, arcname=name)
        for member_name, data in (members or {}).items():
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def assert_same_tree(extracted, source):
    """The same relative file names with the same bytes."""
    files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(extracted) for p in extracted.rglob("*") if p.is_file())
    assert all((extracted / f).read_bytes() == (source / f).read_bytes() for f in files)


def test_download_fetches_extracts_counts_and_removes_the_archive(tmp_path, server, capsys):
    server.files["facades.tar.gz"] = build_archive(tmp_path / "src")
    target = download("facades", tmp_path / "data", url_base=server.url, timeout_s=5)
    assert target == tmp_path / "data" / "facades"
    assert_same_tree(target, tmp_path / "src" / "facades")
    assert server.ranges == [None]
    # no archive, .part or staging
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["facades"]
    assert "train 6 pairs, val 2 pairs" in capsys.readouterr().out


@pytest.mark.parametrize("honour_range", [True, False])
def test_an_interrupted_download_resumes_from_the_part_file(tmp_path, server, honour_range):
    archive = build_archive(tmp_path / "src")
    server.files["facades.tar.gz"], server.cut_at = archive, len(archive) // 2
    with pytest.raises(OSError, match="run the command again to resume"):
        download("facades", tmp_path / "data", url_base=server.url, timeout_s=5)
    part = tmp_path / "data" / "facades.tar.gz.part"
    assert part.read_bytes() == archive[:len(archive) // 2]
    assert not (tmp_path / "data" / "facades").exists()

    # a server that ignores Range answers 200: start over
    server.cut_at, server.honour_range = None, honour_range
    download("facades", tmp_path / "data", url_base=server.url, timeout_s=5)
    assert server.ranges == [None, f"bytes={len(archive) // 2}-"]
    assert_same_tree(tmp_path / "data" / "facades", tmp_path / "src" / "facades")
    assert not part.exists()


def test_download_from_a_file_url_on_the_command_line_keeps_the_archive(tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.setattr(pretrained, "DOWNLOAD_BYTES", {})  # a small archive
    served = tmp_path / "served"
    served.mkdir()
    (served / "maps.tar.gz").write_bytes(build_archive(tmp_path / "src", name="maps"))
    argv = ["download", "maps", "--root", str(tmp_path / "data"), "--url_base", served.as_uri(),
            "--keep_archive"]
    assert main(argv) == 0
    assert_same_tree(tmp_path / "data" / "maps", tmp_path / "src" / "maps")
    assert (tmp_path / "data" / "maps.tar.gz").read_bytes() == (served / "maps.tar.gz").read_bytes()
    assert main(argv) == 0  # a second run finds the folder and downloads nothing
    assert "already exists" in capsys.readouterr().out


def test_a_corrupt_archive_is_refused_and_leaves_nothing_behind(tmp_path, server, capsys):
    archive = build_archive(tmp_path / "src")
    # complete download of a truncated file
    server.files["facades.tar.gz"] = archive[:len(archive) * 2 // 3]
    code = main(["download", "facades", "--root", str(tmp_path / "data"), "--url_base", server.url])
    error = capsys.readouterr().err.splitlines()[-1]  # after the progress bars, also on stderr
    assert code == 2 and error.startswith("tools.data: error:")
    assert "not a valid .tar.gz archive" in error and "download it afresh" in error
    # no folder, no staging folder, no broken archive
    assert list((tmp_path / "data").iterdir()) == []


def test_an_archive_that_writes_outside_its_folder_is_refused(tmp_path, server):
    server.files["facades.tar.gz"] = build_archive(tmp_path / "src",
                                                   members={"../evil.txt": b"gotcha"})
    with pytest.raises(ValueError, match=r"unsafe members: '\.\./evil\.txt'"):
        download("facades", tmp_path / "data", url_base=server.url, timeout_s=5)
    assert not (tmp_path / "evil.txt").exists() and list((tmp_path / "data").iterdir()) == []


def test_unknown_names_and_missing_files_give_clear_errors(tmp_path, server):
    with pytest.raises(ValueError,
                       match="unknown data set 'edges2cats'.*edges2shoes, edges2handbags, facades"):
        download("edges2cats", tmp_path, url_base=server.url)
    with pytest.raises(OSError, match="cannot download .*night2day.tar.gz: HTTP 404"):
        download("night2day", tmp_path, url_base=server.url, timeout_s=5)
    assert server.ranges == []  # the unknown name never reached the network


# ---------------------------------------------------------------- pairs from product photos

def dilate(mask, radius):
    """Bool (H, W) array grown by radius pixels."""
    grown = F.max_pool2d(torch.from_numpy(mask)[None, None].float(), 2 * radius + 1, stride=1,
                         padding=radius)
    return grown[0, 0].bool().numpy()


def halves(path):
    """Left and right halves of a pair file as (H, W, 3) uint8 arrays."""
    return tuple(np.asarray(half) for half in split_pair(Image.open(path).convert("RGB")))


def shape_photo(path, width, height, seed):
    """A filled rectangle or ellipse in a random colour on white, not square."""
    rng = np.random.default_rng(seed)
    photo = Image.new("RGB", (width, height), "white")
    box = (width // 5, height // 5, width * 4 // 5, height * 4 // 5)
    shape = ImageDraw.Draw(photo).ellipse if seed % 2 else ImageDraw.Draw(photo).rectangle
    shape(box, fill=tuple(int(c) for c in rng.integers(0, 160, 3)))
    photo.save(path)


def test_pairs_put_edges_of_the_squared_photo_on_the_left(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed, (width, height) in enumerate([(96, 64), (48, 80), (70, 70)]):
        shape_photo(photos / f"shoe{seed}.png", width, height, seed)
    (photos / "broken.jpg").write_text("not a photo")
    (photos / "empty.png").write_bytes(b"")
    result = photos_to_pairs(photos, tmp_path / "out", size=64, batch=2, device="cpu")
    assert result["train"] == 3 and result["val"] == 0
    assert sorted(path.name for path, _ in result["skipped"]) == ["broken.jpg", "empty.png"]
    assert "2 unreadable files skipped: broken.jpg, empty.png" in capsys.readouterr().out
    outputs = sorted((tmp_path / "out" / "train").iterdir())
    assert [p.name for p in outputs] == ["shoe0_AB.jpg", "shoe1_AB.jpg", "shoe2_AB.jpg"]
    for path in outputs:
        assert Image.open(path).size == (128, 64)
        sketch, photo = halves(path)
        shape = np.abs(photo.astype(int) - 255).sum(-1) > 60  # (H, W): the shape, on white padding
        outline = shape & dilate(~shape, 1)  # the shape's own pixels next to the background
        lines = sketch.min(-1) < 128
        assert not (lines & ~dilate(outline, 2)).any()  # every line lies on the outline
        # and the outline is drawn all round
        assert (outline & dilate(lines, 2)).sum() > 0.9 * outline.sum()
    _, wide = halves(outputs[0])  # 96×64 padded to 96×96: a white band above and below
    assert wide[:8].min() > 240 and wide[-8:].min() > 240 and wide[32, 16:48].max() < 240


def test_pairs_split_train_and_val_deterministically(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(10):
        shape_photo(photos / f"{i}.png", 40, 32, i)

    def split(out, seed):
        result = photos_to_pairs(photos, tmp_path / out, size=32, val_fraction=0.3, seed=seed,
                                 device="cpu")
        assert (result["train"], result["val"]) == (7, 3)
        names = {s: {p.name for p in (tmp_path / out / s).iterdir()} for s in ("train", "val")}
        assert not names["train"] & names["val"] and len(names["train"] | names["val"]) == 10
        return names["val"]

    assert split("a", seed=0) == split("b", seed=0) != split("c", seed=1)


def test_demo_sketches_come_from_the_same_extractor_as_pairs(tmp_path):
    # demo.py draws each photo and sketches it with edges.photo_to_sketch; `pairs` on its photos
    # must give back its sketches, up to the JPEG noise of the demo's right half
    make_demo(tmp_path / "demo", n_train=3, n_val=0, size=64)
    photos = tmp_path / "photos"
    photos.mkdir()
    demo_files = sorted((tmp_path / "demo" / "train").glob("*_AB.jpg"))
    for path in demo_files:
        Image.fromarray(halves(path)[1]).save(photos / f"{path.stem[:-3]}.png")
    photos_to_pairs(photos, tmp_path / "out", size=64, device="cpu")
    for path in demo_files:
        demo_lines = halves(path)[0].min(-1) < 128
        our_lines = halves(tmp_path / "out" / "train" / path.name)[0].min(-1) < 128
        assert demo_lines.sum() > 50
        assert (demo_lines == our_lines).mean() > 0.98
        assert (demo_lines & ~dilate(our_lines, 1)).sum() <= 0.03 * demo_lines.sum()
        assert (our_lines & ~dilate(demo_lines, 1)).sum() <= 0.03 * our_lines.sum()


# ---------------------------------------------------------------- combine A and B folders

def test_combine_pairs_by_name_resizes_b_and_reports_the_unmatched(tmp_path, capsys):
    a_dir, b_dir = tmp_path / "A", tmp_path / "B"
    a_dir.mkdir()
    b_dir.mkdir()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(a_dir / "1.png")
    Image.new("RGB", (64, 64), (0, 0, 255)).save(b_dir / "1.jpg")  # other size and extension
    Image.new("RGB", (32, 32), (0, 255, 0)).save(a_dir / "2.png")
    Image.new("RGB", (32, 32), (0, 0, 0)).save(b_dir / "2.png")
    Image.new("RGB", (32, 32)).save(a_dir / "only_a.png")
    Image.new("RGB", (32, 32)).save(b_dir / "only_b.png")
    (b_dir / "notes.txt").write_text("not an image, not reported")
    result = combine(a_dir, b_dir, tmp_path / "AB")
    assert result["written"] == 2
    assert ([p.name for p in result["only_a"]] == ["only_a.png"]
            and [p.name for p in result["only_b"]] == ["only_b.png"])
    assert "2 pairs" in capsys.readouterr().out
    left, right = halves(tmp_path / "AB" / "1.png")
    assert left.shape == right.shape == (32, 32, 3)
    assert (left == [255, 0, 0]).all() and np.abs(right.astype(int) - [0, 0, 255]).max() < 8
    assert main(["combine", str(a_dir), str(tmp_path / "nothing"), str(tmp_path / "AB")]) == 2


# ---------------------------------------------------------------- a subset of the official pairs

@pytest.fixture
def official(tmp_path):
    """full/{train,val}: pairs 1_AB.png to 12_AB.png and 1 to 5, and an image not numbered so."""
    make_pairs(tmp_path / "full" / "train", 12, size=16)
    make_pairs(tmp_path / "full" / "val", 5, size=16)
    Image.new("RGB", (16, 8)).save(tmp_path / "full" / "train" / "extra.png")
    return tmp_path / "full"


def numbers(folder) -> list:
    return sorted(int(path.name.split("_")[0]) for path in folder.iterdir())


def test_subset_takes_the_first_pairs_by_number_hard_linked_or_copied(tmp_path, official, capsys):
    small, copy = tmp_path / "small", tmp_path / "copy"
    assert main(["subset", str(official), str(small), "--train", "10", "--val", "3"]) == 0
    # by number: 10_AB.png is the tenth, not the second (as sorted by name)
    assert numbers(small / "train") == list(range(1, 11)) and numbers(small / "val") == [1, 2, 3]
    assert (small / "train/10_AB.png").samefile(official / "train/10_AB.png")  # one file
    assert capsys.readouterr().out == (f"{small}: train 10 pairs (1_AB.png to 10_AB.png), val 3 "
                                       f"pairs (1_AB.png to 3_AB.png) from {official}; 13 "
                                       f"hard-linked, 0 copied\n")
    assert main(["subset", str(official), str(copy), "--train=1", "--val=1", "--no-link"]) == 0
    assert not (copy / "val/1_AB.png").samefile(official / "val/1_AB.png")
    assert (copy / "val/1_AB.png").read_bytes() == (official / "val/1_AB.png").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["copy", "full", "small"]


def test_subset_replaces_an_existing_folder_only_when_told(tmp_path, official, capsys):
    small, elsewhere = tmp_path / "small", tmp_path / "elsewhere"
    (small / "train").mkdir(parents=True)
    (small / "train" / "mine.png").write_bytes(b"keep")
    assert main(["subset", str(official), str(small), "--train", "2", "--val", "1"]) == 2
    assert capsys.readouterr().err == (f"tools.data: error: {small} already exists; pass "
                                       f"--replace to make it anew\n")
    assert (small / "train" / "mine.png").read_bytes() == b"keep"
    (elsewhere / "val").mkdir(parents=True)
    (tmp_path / "linked").symlink_to(elsewhere)
    for target in (small, tmp_path / "linked"):  # a link is replaced, what it points to kept
        assert main(["subset", str(official), str(target), "--train", "2", "--val", "1",
                     "--replace"]) == 0
        assert numbers(target / "train") == [1, 2] and not target.is_symlink()
    assert (elsewhere / "val").is_dir()


@pytest.mark.parametrize("command, expected", [
    ("full small --train 13", "full/train: 12 numbered pairs (N_AB.jpg), fewer than the 13 asked"),
    ("full small --val 0", "each split needs at least 1 pair, got {'train': 1000, 'val': 0}"),
    ("full full/train/small --val 1", "full/train/small: the subset must lie outside"),
    ("full/train full --val 1", "full: the subset must lie outside full/train"),
    ("nowhere small --val 1", "nowhere/train: no such folder"),
])
def test_subset_mistakes_are_one_line_and_leave_nothing(tmp_path, official, capsys, monkeypatch,
                                                        command, expected):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main(["subset", *command.split()]) == 2
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1 and error[0].startswith("tools.data: error: ") and expected in error[0]
    assert sorted(tmp_path.rglob("*")) == before


# ---------------------------------------------------------------- check a data folder

def test_check_counts_splits_sizes_and_bad_files(tmp_path, capsys):
    make_pairs(tmp_path / "train", 4, size=32)
    make_pairs(tmp_path / "val", 2, size=48)
    Image.new("RGB", (50, 40)).save(tmp_path / "train" / "square.png")
    (tmp_path / "train" / "zero.jpg").write_bytes(b"")
    Image.new("RGB", (20, 10)).save(tmp_path / "val" / "tiny.png")
    Image.new("1", (16000, 8000)).save(tmp_path / "val" / "bomb.png")
    report = check(tmp_path)
    assert report["counts"] == {"train": 6, "val": 4}
    assert report["sizes"][(64, 32)] == 4 and report["sizes"][(96, 48)] == 2
    reasons = {path.name: problem for path, problem in report["bad"]}
    assert sorted(reasons) == ["bomb.png", "square.png", "tiny.png", "zero.jpg"]
    assert (reasons["bomb.png"].startswith("too large")
            and reasons["tiny.png"].startswith("too small"))
    assert ("expected a side-by-side pair" in reasons["square.png"]
            and "0 bytes" in reasons["zero.jpg"])
    out = capsys.readouterr().out
    assert ("train 6 files, val 4 files" in out and "64×32: 4" in out
            and "train/zero.jpg: empty file" in out)
    assert main(["check", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (f"tools.data: error: 4 bad files in "
                                                        f"{tmp_path} (listed above); remove them, "
                                                        "or pass --skip_bad")
    assert main(["check", str(tmp_path), "--skip_bad"]) == 0
    make_pairs(tmp_path / "clean", 2)
    # a folder without splits is checked itself
    assert main(["check", str(tmp_path / "clean")]) == 0


def test_check_decodes_every_file_and_names_a_truncated_jpeg(tmp_path, capsys):
    make_pairs(tmp_path / "train", 3, size=32)
    noise = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "train" / "cut.jpg", quality=95)
    data = (tmp_path / "train" / "cut.jpg").read_bytes()
    # the header survives, the pixels do not
    (tmp_path / "train" / "cut.jpg").write_bytes(data[:len(data) // 2])
    # nothing in the repo lets PIL pad a cut file with grey
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    assert read_header(tmp_path / "train" / "cut.jpg") == ((128, 64), "")  # the fast scan passes it
    report = check(tmp_path, workers=2)
    assert [(path.name, problem.split(" (")[0])
            for path, problem in report["bad"]] == [("cut.jpg", "cannot decode")]
    assert ("truncated" in report["bad"][0][1]
            and "train/cut.jpg: cannot decode" in capsys.readouterr().out)
    assert main(["check", str(tmp_path), "--workers", "1"]) == 2


# ---------------------------------------------------------------- PairDataset(skip_bad=True)

def test_skip_bad_drops_bad_files_with_one_warning_and_keeps_the_good(tmp_path):
    make_pairs(tmp_path, 3)
    Image.new("RGB", (50, 40)).save(tmp_path / "square.png")
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="2 of 5 files"):
        PairDataset(tmp_path, image_size=64)
    with pytest.warns(UserWarning,
                      match=r"skipping 2 of 5 files.*square\.png.*zero\.jpg") as caught:
        data = PairDataset(tmp_path, image_size=64, skip_bad=True)
    assert len(caught) == 1
    assert [p.name for p in data.files] == ["1_AB.png", "2_AB.png", "3_AB.png"] and len(data) == 3
    assert ([(p.name, reason.split(" ")[0]) for p, reason in data.skipped_files]
            == [("square.png", "expected"), ("zero.jpg", "empty")])
    assert data[0][0].shape == (3, 64, 64)


def test_skip_bad_still_fails_when_every_file_is_bad(tmp_path):
    Image.new("RGB", (50, 40)).save(tmp_path / "square.png")
    (tmp_path / "text.jpg").write_text("no")
    with pytest.raises(ValueError, match="2 of 2 files are not usable pairs.*none is usable"):
        PairDataset(tmp_path, skip_bad=True)


def test_the_header_scan_shows_a_bar_only_for_big_folders(tmp_path, monkeypatch, capsys):
    make_pairs(tmp_path, 3)
    PairDataset(tmp_path)
    assert "checking" not in capsys.readouterr().err
    monkeypatch.setattr(core_dataset, "SCAN_BAR_MIN_FILES", 2)
    PairDataset(tmp_path)
    assert "checking" in capsys.readouterr().err
