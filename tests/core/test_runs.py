"""Runs are never lost: a second run of a saved name, two runs of one folder at once, a refused
resume, an unwritable folder, a grid that fails, a checkpoint that is a zip bomb."""

import hashlib
import io
import json
import os
import re
import runpy
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import torch

import config
import loop
import save
import train
from conftest import ROOT, as_flags, save_run, tiny_config


def snapshot(*folders) -> dict:
    """Every file under folders: its bytes' hash and its mtime."""
    return {str(path): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            for folder in folders for path in sorted(Path(folder).rglob("*")) if path.is_file()}


def counted_steps(monkeypatch) -> list:
    """The training steps main() runs from now on, one entry each."""
    steps, real_step = [], train.gan_step
    monkeypatch.setattr(train, "gan_step", lambda *args, **kwargs:
                        steps.append(1) or real_step(*args, **kwargs))
    return steps


def logged_steps(run_dir) -> list:
    return [r["step"] for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())
            if "loss_d" in r]


def test_a_second_run_of_a_saved_name_is_refused_and_overwrite_starts_it_over(
        tmp_path, pairs_dir, monkeypatch, capsys):
    cfg = tiny_config(tmp_path, pairs_dir, epochs=2)
    train.main(cfg)  # 8 steps
    run_dir, samples_dir = tmp_path / "models/test", tmp_path / "samples/test"
    before = snapshot(run_dir, samples_dir)
    refusal = (rf"{re.escape(str(run_dir))}: holds a run saved at epoch 2 batch 0 \(step 8\); "
               r"continue it with --resume, start another with another --name, or start this "
               r"one over with --overwrite")
    with pytest.raises(ValueError, match=f"^{refusal}$"):
        train.main(tiny_config(tmp_path, pairs_dir, epochs=1))
    assert snapshot(run_dir, samples_dir) == before
    # the command says it in one line, exit 2
    monkeypatch.setattr(sys, "argv", ["train.py", *as_flags(cfg.to_dict())])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    assert exited.value.code == 2
    assert re.fullmatch(f"train\\.py: error: {refusal}\n", capsys.readouterr().err)
    with pytest.raises(ValueError, match="^config: resume and overwrite: --resume continues"):
        train.main(tiny_config(tmp_path, pairs_dir, resume=True, overwrite=True))
    assert snapshot(run_dir, samples_dir) == before
    # --overwrite: a fresh run of 4 steps; the old run's log and second grid are gone
    assert train.main(tiny_config(tmp_path, pairs_dir, epochs=1, overwrite=True))["step"] == 4
    ckpt = save.load_checkpoint(run_dir / "last.pt", keys=save.CHECKPOINT_KEYS)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 4)
    assert logged_steps(run_dir) == [2, 4]
    assert sorted(p.name for p in samples_dir.glob("epoch_*")) == ["epoch_000.png"]


def test_a_second_training_of_a_held_folder_is_refused_and_sweeps_nothing(tmp_path, pairs_dir,
                                                                          monkeypatch):
    train.main(tiny_config(tmp_path, pairs_dir))
    run_dir = tmp_path / "models/test"
    assert (run_dir / loop.LOCK_NAME).read_text() == f"{os.getpid()}\n"  # the last holder
    # another training holds it: flock locks an open file description, so a second open() of the
    # lock file, here in this process, conflicts as another process's would
    held = loop.lock_run_dir(run_dir)
    in_flight = run_dir / ".last.pt.a1b2c3.tmp"  # its checkpoint half written
    in_flight.write_bytes(b"half")
    before = snapshot(run_dir, tmp_path / "samples")
    steps, loads, load_data = counted_steps(monkeypatch), [], train.load_data
    monkeypatch.setattr(train, "load_data", lambda *args: loads.append(1) or load_data(*args))
    resumed = tiny_config(tmp_path, pairs_dir, epochs=2, resume=True)
    with pytest.raises(OSError, match=rf"^{re.escape(str(run_dir))}: in use by another training "
                                      rf"\(pid {os.getpid()}\); wait for it to end, or use "
                                      r"another --name$"):
        train.main(resumed)
    assert snapshot(run_dir, tmp_path / "samples") == before and steps == loads == []  # at once
    # the check before any work and the lock itself each refuse it
    monkeypatch.setattr(loop, "check_not_held", lambda run_dir: None)
    with pytest.raises(OSError, match="in use by another training"):
        train.main(resumed)
    assert snapshot(run_dir, tmp_path / "samples") == before and steps == []
    loop.unlock(held)
    assert train.main(resumed)["step"] == 8
    assert not in_flight.exists()  # no one held the folder: a dead run's temp file, swept


def test_a_lock_file_that_is_a_link_is_refused_and_what_it_points_to_kept(tmp_path):
    run_dir, elsewhere = tmp_path / "models/test", tmp_path / "notes.txt"
    run_dir.mkdir(parents=True)
    elsewhere.write_text("a user's file\n")
    (run_dir / loop.LOCK_NAME).symlink_to(elsewhere)
    with pytest.raises(OSError, match=rf"^{re.escape(str(run_dir / loop.LOCK_NAME))}: cannot open "
                                      r"it as the run's lock file \(a link\); remove it$"):
        loop.lock_run_dir(run_dir)
    assert elsewhere.read_text() == "a user's file\n"  # not truncated to a pid


def test_without_fcntl_the_run_says_nothing_stops_a_second_one_and_trains(tmp_path, pairs_dir,
                                                                         monkeypatch, capsys):
    monkeypatch.setattr(loop, "fcntl", None)  # as on Windows
    assert train.main(tiny_config(tmp_path, pairs_dir))["step"] == 4
    run_dir = tmp_path / "models/test"
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert warnings == [f"warning: this system has no fcntl.flock: nothing stops a second "
                        f"training from writing into {run_dir} at the same time"]
    assert not (run_dir / loop.LOCK_NAME).exists()


def test_a_refused_resume_leaves_every_file_as_it_was(tmp_path, pairs_dir):
    train.main(tiny_config(tmp_path, pairs_dir))
    folders = tmp_path / "models/test", tmp_path / "samples/test"
    before = snapshot(*folders)
    assert len(before) >= 7  # config, log, curves, last, generator, lock, grid
    # other images at the position, another input, other shapes (every field's class:
    # test_resume_classes.py)
    for change in (dict(batch_size=2), dict(hints=True), dict(ngf=16), dict(spectral_norm=True),
                   dict(generator="resnet")):
        field = next(iter(change))
        with pytest.raises(ValueError, match=rf"last\.pt: cannot resume, the checkpoint has "
                                             rf"{field}="):
            train.main(tiny_config(tmp_path, pairs_dir, epochs=2, resume=True, **change))
        assert snapshot(*folders) == before


def test_an_unwritable_samples_folder_is_one_line_before_any_step(tmp_path, pairs_dir,
                                                                 monkeypatch):
    (tmp_path / "samples").write_text("a file where the folder should be")  # root cannot either
    steps = counted_steps(monkeypatch)
    with pytest.raises(OSError, match=rf"^{re.escape(str(tmp_path / 'samples/test'))}: the run "
                                      r"cannot write there \(Not a directory\)$"):
        train.main(tiny_config(tmp_path, pairs_dir))
    assert steps == [] and list((tmp_path / "models/test").iterdir()) == []


@pytest.mark.parametrize("folder", ["", "tensorboard"])
def test_a_run_folder_that_takes_no_new_file_is_one_line_before_any_step(tmp_path, pairs_dir,
                                                                        monkeypatch, folder):
    if folder:
        pytest.importorskip("tensorboard", reason="tensorboard is not installed (optional)")
    train.main(tiny_config(tmp_path, pairs_dir))
    run_dir = tmp_path / "models/test"
    before, read_only = snapshot(run_dir), run_dir / folder
    mkstemp = tempfile.mkstemp

    def read_only_folder(*args, dir=None, **kwargs):  # a read-only folder, for root too: its
        if Path(dir) == read_only:  # files can still be rewritten, a new one cannot be made
            raise PermissionError(13, "Permission denied")
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_folder)
    steps = counted_steps(monkeypatch)
    with pytest.raises(OSError, match=rf"^{re.escape(str(read_only))}: the run cannot write "
                                      r"there \(Permission denied\)$"):
        train.main(tiny_config(tmp_path, pairs_dir, epochs=2, resume=True))
    # not 4 more steps logged while last.pt stays at step 4
    assert steps == [] and snapshot(run_dir) == before and logged_steps(run_dir) == [2, 4]


def test_a_grid_that_fails_at_the_epoch_end_still_leaves_the_checkpoint(tmp_path, pairs_dir,
                                                                        monkeypatch):
    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loop, "save_grid", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train.main(tiny_config(tmp_path, pairs_dir))
    ckpt = save.load_checkpoint(tmp_path / "models/test/last.pt", keys=save.CHECKPOINT_KEYS)
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (1, 0, 4)


# ---------------------------------------------------------------- checkpoints that are zip bombs

def small_checkpoint(path, compress_type=zipfile.ZIP_STORED) -> Path:
    """A real torch.save file of 64 KiB of zeros, its data record recompressed as asked."""
    buffer = io.BytesIO()
    torch.save({"generator": {"w": torch.zeros(16384)}, "config": {}}, buffer)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w") as target:
        for record in source.infolist():
            deflate = compress_type if record.filename.endswith("data/0") else zipfile.ZIP_STORED
            target.writestr(record.filename, source.read(record), compress_type=deflate)
    return Path(path)


@pytest.fixture
def no_torch_load(monkeypatch):
    """torch.load must not be reached (safe_load would turn its error into a line: counted)."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("torch.load reached")

    monkeypatch.setattr(torch, "load", refuse)
    yield
    assert calls == [], "torch.load was reached: the file was not refused before it"


def test_a_checkpoint_with_a_compressed_record_is_refused_unread(tmp_path, no_torch_load):
    path = small_checkpoint(tmp_path / "bomb.pt", zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 4096  # 64 KiB of zeros deflate to a few hundred bytes
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not a loadable checkpoint: "
                                         r"its record \w+/data/0 is compressed, which torch\.save "
                                         r"never does \(a zip bomb\?\); refused unread$"):
        save.load_checkpoint(path)


def test_records_declaring_more_than_the_file_holds_are_refused_unread(tmp_path, no_torch_load):
    path = small_checkpoint(tmp_path / "claims.pt")
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the central directory's first entry
    while not data[entry + 46:entry + 46 + int.from_bytes(data[entry + 28:entry + 30],
                                                          "little")].endswith(b"data/0"):
        entry = data.index(b"PK\x01\x02", entry + 1)
    data[entry + 24:entry + 28] = (0xF000_0000).to_bytes(4, "little")  # its size: 3.75 GiB
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not a loadable checkpoint: "
                                         r"its records declare 3\.8 GiB, more than the file's "
                                         r"\d+ KiB can hold; refused unread$"):
        save.read_checkpoint(path)


def test_a_zip_of_too_many_records_is_refused_before_its_directory_is_read(tmp_path, monkeypatch,
                                                                           no_torch_load):
    path = small_checkpoint(tmp_path / "many.pt")  # 7 records
    monkeypatch.setattr(save, "MAX_RECORDS", 6)
    monkeypatch.setattr(zipfile, "ZipFile", None)  # its directory is never parsed
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not a loadable PyTorch file: "
                                         r"it declares 7 records, more than the 6 a PyTorch file"):
        save.safe_load(path, "PyTorch file")


def test_the_record_count_is_read_from_a_zip64_end_record_too(tmp_path, monkeypatch):
    plain = small_checkpoint(tmp_path / "plain.pt")
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)  # zip64 end records from 3 records on
    zip64 = small_checkpoint(tmp_path / "zip64.pt")
    data = bytearray(zip64.read_bytes())
    assert b"PK\x06\x06" in data and b"PK\x06\x06" not in plain.read_bytes()
    end = data.rindex(b"PK\x05\x06")  # its counts say 0xFFFF, as beyond 65,535 records: see zip64
    data[end + 8:end + 12] = b"\xff" * 4
    zip64.write_bytes(data)
    for path in (plain, zip64):
        with open(path, "rb") as file:
            assert save.zip_record_count(file) == 7
    monkeypatch.undo()
    assert save.safe_load(zip64)["generator"]["w"].shape == (16384,)  # and it loads


def test_a_legacy_file_declaring_gigabytes_fails_fast_in_one_line(tmp_path):
    # the pre-zip format, which the authors' published weights use, is accepted: torch reads its
    # tensors raw, nothing is inflated, and a storage declared larger than the file is refused at
    # its end (the allocation is never touched)
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(12345)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    huge = (2**31 - 1).to_bytes(4, "little")  # float32 elements: 8 GiB
    data = data.replace(b"M" + (12345).to_bytes(2, "little"), b"J" + huge)  # the pickle's numel
    path.write_bytes(data.replace((12345).to_bytes(8, "little"), (2**31 - 1).to_bytes(8, "little")))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"legacy\.pth: not a loadable file: a truncated or "
                                         r"damaged PyTorch file"):
        save.safe_load(path, "file")
    assert time.perf_counter() - start < 10  # measured: 2 ms


# ---------------------------------------------------------------- the run folder, spelt otherwise

@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a/", "ABSOLUTE"])
def test_a_name_that_is_not_one_folder_name_is_refused_before_anything(tmp_path, pairs_dir, name):
    # '' and '.' would make models/ itself the run folder, '..' its parent, an absolute name any
    # folder at all (and samples/NAME the same folder as models/NAME)
    name = str(tmp_path / "elsewhere") if name == "ABSOLUTE" else name
    with pytest.raises(ValueError, match=rf"^config: name must be one folder name \(no '/', not "
                                         rf"'', '\.' or '\.\.'\), as in models/NAME; got "
                                         rf"{re.escape(repr(name))}$"):
        train.main(tiny_config(tmp_path, pairs_dir, name=name))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing written


def test_a_name_longer_than_a_folder_name_may_be_is_one_line(tmp_path, pairs_dir):
    with pytest.raises(ValueError, match=r"^config: name is 256 bytes long, more than the 255 a "
                                         r"folder name may have$"):
        train.main(tiny_config(tmp_path, pairs_dir, name="é" * 128))  # 128 characters, 2 bytes each


def test_the_sweep_takes_a_killed_runs_temporary_files_and_no_tools(tmp_path, pairs_dir):
    # tools.export and tools.precise_bn write beside the checkpoint, through temporary files of
    # their own, while a training of the folder may start: its sweep must leave them be
    run_dir = tmp_path / "models/test"
    run_dir.mkdir(parents=True)
    killed = [run_dir / f".{name}.a1b2c3.tmp" for name in train.OUTPUTS]
    tools = [run_dir / ".generator_precise_bn.pt.d4e5f6.tmp",
             run_dir / ".generator.eval.onnx.g7h8i9.tmp", run_dir / ".last.eval.pt2.j1k2l3.tmp"]
    for path in killed + tools:
        path.write_bytes(b"half")
    loop.prepare_run_dir(run_dir, tiny_config(tmp_path, pairs_dir), train.OUTPUTS)
    assert [path.exists() for path in killed + tools] == [False] * len(killed) + [True] * 3


@pytest.mark.parametrize("kept", ["generator.pt", "grids"])
def test_an_earlier_runs_weights_or_grids_are_not_written_over_without_a_last_pt(
        tmp_path, pairs_dir, monkeypatch, kept):
    run_dir, samples_dir = tmp_path / "models/test", tmp_path / "samples/test"
    if kept == "generator.pt":  # last.pt deleted to keep the weights only, for infer.py
        save_run(run_dir / "last.pt", tiny_config(tmp_path, pairs_dir))[0].unlink()
        refusal = (rf"^{re.escape(str(run_dir))}: holds generator\.pt of an earlier run but no "
                   r"last\.pt to continue it; start another with another --name, or start this "
                   r"one over with --overwrite$")
        models_dir = tmp_path / "models"
    else:  # another run of the name, in another models folder, wrote the same samples/test
        samples_dir.mkdir(parents=True)
        (samples_dir / "epoch_000.png").write_bytes(b"its grid")
        refusal = (rf"^{re.escape(str(samples_dir))}: holds epoch_000\.png of an earlier run but "
                   rf"{re.escape(str(tmp_path / 'other/test'))} has no last\.pt to continue it; "
                   r"start another with another --name, or start this one over with --overwrite$")
        models_dir = tmp_path / "other"
    before = snapshot(tmp_path / "models", tmp_path / "samples")
    steps = counted_steps(monkeypatch)
    for resume in (False, True):  # --resume without a last.pt starts from scratch: the same
        with pytest.raises(ValueError, match=refusal):
            train.main(tiny_config(tmp_path, pairs_dir, models_dir=str(models_dir),
                                   resume=resume))
        assert snapshot(tmp_path / "models", tmp_path / "samples") == before and steps == []
        assert not (tmp_path / "other").exists()
    # the way on that the line gives: --overwrite passes the check (its deletion: tested above)
    loop.check_start(tiny_config(tmp_path, pairs_dir, models_dir=str(models_dir),
                                 overwrite=True), models_dir / "test", train.OUTPUTS)


@pytest.mark.parametrize("output", ["last.pt", "curves.png", "config.json", "tensorboard"])
def test_an_output_of_the_wrong_kind_is_one_line_before_anything(tmp_path, pairs_dir, monkeypatch,
                                                                 output):
    # each would fail later: at the epoch's end, in --overwrite, or after config.json was written
    run_dir = tmp_path / "models/test"
    run_dir.mkdir(parents=True)
    if output == "tensorboard":  # a file where the events' folder goes
        (run_dir / output).write_text("")
        what = "a file, where the run writes its TensorBoard events"
    else:
        (run_dir / output).mkdir()
        what = f"a folder, where the run writes its {output}"
    steps = counted_steps(monkeypatch)
    for overwrite in (False, True):
        with pytest.raises(OSError, match=rf"^{re.escape(str(run_dir / output))}: {what}; move it "
                                          r"away or use another --name$"):
            train.main(tiny_config(tmp_path, pairs_dir, overwrite=overwrite))
        assert steps == [] and sorted(p.name for p in run_dir.iterdir()) == [output]


def test_a_last_pt_that_does_not_load_is_not_sent_to_resume(tmp_path, pairs_dir):
    run_dir = tmp_path / "models/test"
    run_dir.mkdir(parents=True)
    (run_dir / "last.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(run_dir))}: holds a last\.pt that "
                                         r"does not load \(not a PyTorch file \(its first bytes: "
                                         r"b'garbage'\)\); start another with another --name, or "
                                         r"start this one over with --overwrite$"):
        train.main(tiny_config(tmp_path, pairs_dir))


@pytest.mark.parametrize("entry, value, what", [
    ("opt_d", {"state": {}}, "an optimizer state but a dict with 'state': a dict"),
    ("scaler", [], "a GradScaler state but a list"), ("batch", True, "a count but a bool"),
    ("world_size", 0, "a count of processes but 0"),
    ("rng", {"torch": 1}, "the random states of a run but a dict with 'torch': an int")])
def test_a_resumable_checkpoint_with_a_wrong_entry_is_one_line_naming_it(tmp_path, entry, value,
                                                                         what):
    path, _ = save_run(tmp_path / "last.pt", tiny_config(tmp_path, tmp_path))
    torch.save({**torch.load(path, weights_only=True), entry: value}, path)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: its {entry} entry is not "
                                         rf"{re.escape(what)}$"):
        save.load_checkpoint(path, keys=save.CHECKPOINT_KEYS)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_checkpoint_that_is_a_folder_a_pipe_or_a_device_is_one_line_at_once(tmp_path):
    os.mkfifo(tmp_path / "pipe.pt")  # opening it to read would wait for a writer forever
    (tmp_path / "folder.pt").mkdir()
    for path, kind in ((tmp_path / "pipe.pt", "a named pipe"), (tmp_path / "folder.pt", "a folder"),
                       (Path(os.devnull), "a device")):
        with pytest.raises(FileNotFoundError, match=rf"^{re.escape(str(path))}: not a checkpoint "
                                                    rf"file but {kind}$"):
            save.load_generator(path)


def test_the_samples_folder_is_held_too_and_may_be_the_models_folder(tmp_path, pairs_dir,
                                                                     monkeypatch):
    # two runs of one name in two models folders write one samples/NAME: the second is refused
    samples_dir = tmp_path / "samples/test"
    samples_dir.mkdir(parents=True)
    held = loop.lock_run_dir(samples_dir)
    refusal = rf"^{re.escape(str(samples_dir))}: in use by another training \(pid {os.getpid()}\)"
    with pytest.raises(OSError, match=refusal):
        train.main(tiny_config(tmp_path, pairs_dir, models_dir=str(tmp_path / "other")))
    assert not (tmp_path / "other").exists()
    with monkeypatch.context() as patch:  # both started before either held it: the lock refuses
        patch.setattr(loop, "check_not_held", lambda folder: None)
        with pytest.raises(OSError, match=refusal):
            train.main(tiny_config(tmp_path, pairs_dir, models_dir=str(tmp_path / "other")))
    loop.unlock(held)
    # one folder for both: held once, not refused by its own lock
    both = str(tmp_path / "runs")
    assert train.main(tiny_config(tmp_path, pairs_dir, models_dir=both, samples_dir=both,
                                  image_size=32, num_downs=5, val_images=2))["step"] == 4
    assert (tmp_path / "runs/test/epoch_000.png").is_file()


def test_a_checkpoint_larger_than_the_memory_available_is_refused_unless_it_is_mapped(
        tmp_path, pairs_dir, monkeypatch):
    # a sparse file can declare gigabytes that cost no disk: reading it would allocate them all
    _, generator = save_run(tmp_path / "run/last.pt", tiny_config(tmp_path, pairs_dir))  # 1.8 MiB
    padded = {**torch.load(tmp_path / "run/generator.pt", weights_only=True),
              "extra": torch.zeros(2**20)}  # 4 MiB more, of no use to a generator
    path, legacy = tmp_path / "padded.pt", tmp_path / "legacy.pt"
    torch.save(padded, path)
    torch.save(padded, legacy, _use_new_zipfile_serialization=False)
    monkeypatch.setattr(config, "available_memory", lambda: 3 * 2**20)  # pinned: 3 MiB free
    for file in (path, legacy):  # read whole: a zip by what its records declare, else its size
        with pytest.raises(ValueError, match=rf"^{re.escape(str(file))}: not a loadable "
                                             r"checkpoint: loading it takes 5\.\d MiB, more than "
                                             r"the 3\.0 MiB of memory available here; refused "
                                             r"unread$"):
            save.load_checkpoint(file)
    # a generator's tensors are mapped, and only they are read: the rest costs nothing
    loaded, _ = save.load_generator(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 generator.state_dict().values()))
    with pytest.raises(ValueError, match="legacy.pt: not a loadable checkpoint: loading it takes"):
        save.load_generator(legacy)  # the pre-zip format cannot be mapped: read whole, refused
    monkeypatch.setattr(config, "available_memory", lambda: None)  # a machine that does not say
    assert torch.equal(save.load_checkpoint(legacy)["extra"], padded["extra"])
