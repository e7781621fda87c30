"""The decode-once cache: the file loader's exact tensors, rebuilt when the folder changes, refused
when cut short or foreign, and never left half-written."""

import errno
import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

import dataset
import train
from conftest import make_pairs, tiny_config
from dataset import CachedLoader, EpochSampler, PairCache, PairDataset

CPU = torch.device("cpu")


def cached_batches(data: PairDataset, cache: PairCache, sampler: EpochSampler, batch: int):
    """(the file loader's pairs, the cached loader's pairs) for one epoch of sampler."""
    keys = list(sampler)
    files = [data[key] for key in keys[:len(keys) // batch * batch]]
    cached = [pair for sketch, photo in CachedLoader(cache, sampler, batch, CPU)
              for pair in zip(sketch, photo)]
    return files, cached


@pytest.mark.parametrize("jitter, direction", [(False, "AtoB"), (False, "BtoA"), (True, "AtoB")])
def test_the_cached_loader_yields_exactly_the_file_loaders_tensors(tmp_path, jitter, direction):
    folder = make_pairs(tmp_path / "pairs", 10, size=40)  # resized to 32, or 36 with jitter
    data = PairDataset(folder, image_size=32, load_size=36, jitter=jitter, direction=direction,
                       uint8=True)
    cache = PairCache(data, tmp_path / "cache", workers=2)
    sampler = EpochSampler(len(data), seed=1, epoch=3, crop_room=4 if jitter else None)
    files, cached = cached_batches(data, cache, sampler, batch=4)
    assert len(cached) == len(files) == 8  # full batches only, like drop_last
    for (sketch, photo), (cached_sketch, cached_photo) in zip(files, cached):
        assert cached_sketch.shape == (3, 32, 32) and cached_sketch.dtype == torch.uint8
        assert torch.equal(sketch, cached_sketch) and torch.equal(photo, cached_photo)
    if jitter:  # the crops and flips really vary
        assert len({key[1:] for key in sampler}) > 3


def test_a_changed_or_added_file_rebuilds_the_cache(tmp_path):
    folder = make_pairs(tmp_path / "pairs", 4, size=32)
    first = PairCache(PairDataset(folder, image_size=32), tmp_path / "cache")
    assert first.build_s > 0
    assert PairCache(PairDataset(folder, image_size=32), tmp_path / "cache").build_s == 0  # reused
    Image.new("RGB", (64, 32), (9, 99, 199)).save(folder / "2_AB.png")  # changed
    changed = PairCache(PairDataset(folder, image_size=32, uint8=True), tmp_path / "cache")
    assert changed.build_s > 0
    assert changed.pixels[1, 0, 5, 5].tolist() == [9, 99, 199]
    make_pairs(tmp_path / "more", 1, size=32)
    os.replace(tmp_path / "more/1_AB.png", folder / "5_AB.png")  # added
    added = PairCache(PairDataset(folder, image_size=32), tmp_path / "cache")
    assert added.build_s > 0 and len(added) == 5
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [added.path.name]  # no leftovers


def test_a_truncated_cache_is_refused_in_one_line(tmp_path):
    folder = make_pairs(tmp_path / "pairs", 3, size=32)
    cache = PairCache(PairDataset(folder, image_size=32), tmp_path / "cache")
    whole = cache.path.read_bytes()
    # cut short, or pixels missing under an intact manifest
    for damaged in (whole[:-1], whole[:len(whole) // 2], whole[:100], whole[:5000] + whole[6000:]):
        cache.path.write_bytes(damaged)
        with pytest.raises(ValueError, match=r"-32px\.u8: truncated or damaged cache .*delete it"):
            PairCache(PairDataset(folder, image_size=32), tmp_path / "cache")
        assert cache.path.read_bytes() == damaged  # refused, not rebuilt over


@pytest.mark.parametrize("foreign", ["file", "folder"])
def test_a_foreign_file_in_the_caches_place_is_refused_and_kept(tmp_path, foreign):
    folder = make_pairs(tmp_path / "pairs", 3, size=32)
    data = PairDataset(folder, image_size=32)
    path = dataset.cache_path(folder, 32, tmp_path / "cache")
    path.parent.mkdir()
    if foreign == "file":
        path.write_bytes(b"someone's notes" * 1000)
    else:
        path.mkdir()
    with pytest.raises(ValueError, match="not a pix2pix cache file, in the place of one"):
        PairCache(data, tmp_path / "cache")
    assert path.is_dir() if foreign == "folder" else path.read_bytes().startswith(b"someone")


def failing(code: int):
    """A stand-in for an os call that fails with this errno."""
    def call(*args):
        raise OSError(code, os.strerror(code))
    return call


@pytest.mark.parametrize("where", ["posix_fallocate", "pwrite"])
def test_a_full_disk_is_one_line_and_leaves_no_cache(tmp_path, monkeypatch, where):
    folder = make_pairs(tmp_path / "pairs", 3, size=32)
    if where == "pwrite":  # a filesystem without fallocate: the workers' writes (forked) fail
        monkeypatch.setattr(dataset.os, "posix_fallocate", failing(errno.EOPNOTSUPP))
    monkeypatch.setattr(dataset.os, where, failing(errno.ENOSPC))
    with pytest.raises(OSError, match=r"-32px\.u8: no space left to build the cache \(it needs "
                                      r"0\.0 GiB\); free some or choose another --cache_dir"):
        PairCache(PairDataset(folder, image_size=32), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # no cache, no temporary file


def test_a_pair_that_fails_to_decode_is_replaced_by_the_next_as_from_files(tmp_path):
    folder = make_pairs(tmp_path / "pairs", 4, size=32)
    data = PairDataset(folder, image_size=32, uint8=True)  # the header scan passes...
    with open(folder / "2_AB.png", "r+b") as f:  # ...then the pixels go missing
        f.truncate(200)
    with pytest.warns(UserWarning, match="2_AB.png"):
        cache = PairCache(data, tmp_path / "cache")
    sampler = EpochSampler(4, seed=0)
    with pytest.warns(UserWarning, match="2_AB.png"):
        files, cached = cached_batches(data, cache, sampler, batch=4)
    for (sketch, photo), (cached_sketch, cached_photo) in zip(files, cached):
        assert torch.equal(sketch, cached_sketch) and torch.equal(photo, cached_photo)


def damage_in_place(path, nbytes: int = 4096) -> bytes:
    """Overwrite nbytes in the middle of a file with other bytes, its size unchanged; the damaged
    contents."""
    whole = bytearray(path.read_bytes())
    middle = len(whole) // 2 - nbytes // 2
    whole[middle:middle + nbytes] = bytes((b + 1) % 256 for b in whole[middle:middle + nbytes])
    path.write_bytes(bytes(whole))
    return bytes(whole)


def test_a_cache_damaged_in_place_is_refused_in_one_line_and_kept(tmp_path):
    folder = make_pairs(tmp_path / "pairs", 3, size=32)
    data = PairDataset(folder, image_size=32)
    cache = PairCache(data, tmp_path / "cache")
    assert PairCache(data, tmp_path / "cache").verify_s > 0  # every open checks
    damaged = damage_in_place(cache.path)  # 4 KiB across the end of pair 1 and pair 2 (6 KiB each)
    with pytest.raises(ValueError, match=r"^\S+-32px\.u8: damaged cache: 2 of 3 pairs fail their "
                                         r"checksum \(the first: 1_AB\.png\); delete it to "
                                         r"rebuild$"):
        PairCache(data, tmp_path / "cache")
    assert cache.path.read_bytes() == damaged  # refused, not rebuilt over
    assert PairCache(data, tmp_path / "cache", verify=False).verify_s == 0  # told not to check


def test_train_refuses_a_damaged_cache_before_any_step(tmp_path, pairs_dir):
    cfg = tiny_config(tmp_path, pairs_dir, cache=True, cache_dir=str(tmp_path / "cache"),
                      precision="fp32")
    train.load_data(cfg, 0, 1, CPU)
    damage_in_place(next((tmp_path / "cache").iterdir()))
    with pytest.raises(ValueError, match=r"-64px\.u8: damaged cache: 2 of 16 pairs fail"):
        train.load_data(cfg, 0, 1, CPU)


def test_a_cache_from_before_checksums_is_rebuilt(tmp_path):
    folder = make_pairs(tmp_path / "pairs", 3, size=32)
    data = PairDataset(folder, image_size=32)
    cache = PairCache(data, tmp_path / "cache")
    manifest = dataset.read_cache_footer(cache.path)
    del manifest["crc32"]
    old = json.dumps(manifest).encode()
    pixels = cache.path.read_bytes()[:dataset.CACHE_DATA_OFFSET + 3 * 6 * 32 * 32]
    cache.path.write_bytes(pixels + old + len(old).to_bytes(8, "little") + dataset.CACHE_MAGIC)
    with pytest.raises(ValueError, match="missing or out of date"):  # another process's open
        PairCache(data, tmp_path / "cache", build=False)
    assert PairCache(data, tmp_path / "cache").build_s > 0
    assert "crc32" in dataset.read_cache_footer(cache.path)


def test_a_file_rewritten_with_the_same_name_and_size_rebuilds_the_cache(tmp_path):
    folder = make_pairs(tmp_path / "pairs", 2, size=32)
    path = folder / "1_AB.png"
    st = os.stat(path)
    assert dataset.file_stamps([path]) == [["1_AB.png", st.st_size, st.st_mtime_ns]]
    assert PairCache(PairDataset(folder, image_size=32), tmp_path / "cache").build_s > 0
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # only the time tells
    assert PairCache(PairDataset(folder, image_size=32), tmp_path / "cache").build_s > 0


def test_only_the_temporary_files_of_dead_builds_are_removed(tmp_path):
    path = tmp_path / "pairs-0123abcd-32px.u8"
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()  # a process that has exited (and been reaped)
    files = {name: tmp_path / name for name in (
        f".{path.name}.{gone.pid}.tmp", f".{path.name}.{os.getpid()}.tmp",
        f".{path.name}.unnamed.tmp", f".other-32px.u8.{gone.pid}.tmp")}
    for file in files.values():
        file.write_bytes(b"")
    dataset.remove_stale_builds(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".{path.name}.{os.getpid()}.tmp", f".other-32px.u8.{gone.pid}.tmp"])  # alive; not ours
