"""What a run writes: checkpoints (atomic, safely loaded, resumable), sample grids, PSNR and
loss curves.

A checkpoint is a plain dict of tensors and numbers, written atomically and loaded with
weights_only=True, so a crash never leaves half a file and a hostile file cannot run code:
    {generator, discriminator, opt_g, opt_d, scaler, epoch, batch, step, world_size, rng, config}
`batch` is how many batches of `epoch` each of the `world_size` processes had done (0 for a
checkpoint at an epoch boundary; checkpoints older than `world_size` come from one process); `rng`
holds the random generators' states, so that a resumed run draws the same dropout masks as an
unbroken one.
generator.pt beside it holds {generator, config}: all that infer.py needs.

    epoch, batch, step = resume("models/demo/last.pt", cfg, G, D, opt_g, opt_d, scaler, device)

The authors' published weights become such a generator.pt in pretrained.py.
"""

import dataclasses
import errno
import json
import math
import os
import random
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image, ImageDraw, ImageFont

from config import Config, first_line, memory_short, short_repr
from dataset import to_image
from generator import build_generator

PSNR_CAP_DB = 100.0  # PSNR of identical images (MSE 0 would be +inf): keeps means and JSON finite
# Keys every resumable checkpoint has; "world_size" joined later and reads as 1 where it is missing.
LOSS_KEYS = ("loss_d", "loss_g_gan", "loss_g_l1")  # the losses each log record of train.py holds
CHECKPOINT_KEYS = ("generator", "discriminator", "opt_g", "opt_d", "scaler", "epoch", "batch",
                   "step", "rng", "config")


class ResumeClasses(NamedTuple):
    """What --resume does when a config field differs from the checkpoint's, for one family of
    configs (pix2pix's here, completion.py's own); every field is in exactly one class."""
    refused: tuple  # one line, nothing resumed
    warned: tuple  # one warning line: the run goes on, but not as the unbroken run would have
    silent: tuple  # nothing said: the run is the same
    unused_when: dict  # field -> predicate(config): no effect there, so a change there is none


PIX2PIX_RESUME = ResumeClasses(
    # the saved tensors would not fit the networks (shapes), the position in the epoch would mean
    # other images (batch_size), or G would learn another mapping (direction) or input (hints)
    refused=("ngf", "ndf", "num_downs", "n_layers_d", "generator", "resnet_blocks", "norm_g",
             "upsample", "norm_d", "spectral_norm", "batch_size", "direction", "hints",
             "hint_global"),
    warned=("data_dir", "image_size", "jitter", "load_size", "sketch_aug", "sketch_aug_strength",
            "dropout", "dropout_blocks", "lambda_l1", "gan_loss", "lambda_gp", "n_critic",
            "lambda_perceptual", "vgg_weights", "lr", "beta1", "beta2", "epochs", "epochs_decay",
            "sync_bn", "seed", "precision", "compile", "compile_mode", "hint_p", "hint_max",
            "hint_patch", "hint_on_shoe", "hint_recolour"),
    # where the run's files go, how it loads, logs and checks (the loaders are exact, tests), where
    # and how fast it computes
    silent=("num_workers", "cache", "cache_dir", "skip_bad", "name", "models_dir", "samples_dir",
            "resume", "overwrite", "device", "channels_last", "log_every", "save_every",
            "n_samples", "val_images"),
    unused_when={"load_size": lambda c: not c.jitter,
                 "sketch_aug_strength": lambda c: not c.sketch_aug,
                 "lambda_gp": lambda c: c.gan_loss != "wgan-gp",
                 "vgg_weights": lambda c: c.lambda_perceptual == 0,
                 "resnet_blocks": lambda c: c.generator != "resnet",
                 "norm_g": lambda c: c.generator != "resnet",
                 "dropout_blocks": lambda c: c.generator != "unet",
                 "compile_mode": lambda c: not c.compile,
                 "epochs": lambda c: c.epochs_decay == 0,  # more epochs move where decay starts
                 **{name: lambda c: not c.hints
                    for name in ("hint_p", "hint_max", "hint_patch", "hint_on_shoe",
                                 "hint_recolour", "hint_global")}})


class WatchedFile:
    """A file that keeps the OSError its write raised: torch.save swallows it and fails later with
    a RuntimeError ("unexpected pos" in inline_container.cc) that no longer says why."""

    def __init__(self, file):
        self.file, self.error, self.tried = file, None, 0  # tried: bytes given to write, the
        # failed write's too (what the file needed at least)

    def write(self, data) -> int:
        try:
            count = self.file.write(data)
        except OSError as e:
            self.error, self.tried = e, self.tried + memoryview(data).nbytes
            raise
        self.tried += count
        return count

    def __getattr__(self, name):  # flush, seek, tell... of the file itself
        return getattr(self.file, name)


FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a disk, a quota or a file size limit is full


def no_room(path: Path, error: OSError, tried: int) -> OSError:
    """A full disk's error as one line naming the file and the space left (other errors as
    they are)."""
    if error.errno not in FULL:
        return error
    try:
        free = f"{size_text(shutil.disk_usage(path.parent).free)} free"
    except OSError:
        free = "free space unknown"
    full = OSError(f"{path}: cannot write it: {error.strerror or 'no space'} ({free} in "
                   f"{path.parent}; it needs more than {size_text(tried)}); the previous "
                   f"{path.name}, if any, is unchanged")
    full.errno = error.errno
    return full


UMASK = os.umask(0o022)  # read once, at import (the only way to read it), and put back
os.umask(UMASK)


def atomic_write(path, write) -> None:
    """write(file) into a temporary file in the same folder, fsync, then rename it over path:
    readers see the old file or the new one, never a partial write (a full disk or a kill
    included). A full disk is one OSError line naming path and the space left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    watched = None
    try:
        with os.fdopen(fd, "wb") as f:
            watched = WatchedFile(f)
            try:
                write(watched)
            except Exception:
                if watched.error is None:
                    raise
                raise watched.error from None  # the cause, not what torch.save made of it
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~UMASK)  # as open() makes files; mkstemp gives 0600
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise no_room(path, e, watched.tried if watched else 0) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj, path) -> None:
    """torch.save, atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(path, *, generator, discriminator, opt_g, opt_d, scaler, epoch: int, batch: int,
                    step: int, config, world_size: int = 1, kind: str = None,
                    weights=("generator.pt", ("generator",))) -> None:
    """Everything needed to resume, of the unwrapped modules, plus the file beside it that
    inference needs: weights = (its name, the nets it holds), with config and step. kind: the
    family of a checkpoint other than pix2pix's (completion.py's)."""
    nets = {"generator": generator.state_dict(), "discriminator": discriminator.state_dict()}
    finite = [torch.isfinite(t).all() for t in nets["generator"].values() if t.is_floating_point()]
    if not torch.stack(finite).all():  # one host sync for the whole check, not one per tensor
        raise FloatingPointError(f"not saving {path}: the generator has NaN or Inf weights "
                                 f"at step {step}")
    device = next(generator.parameters()).device
    family = {"kind": kind} if kind else {}
    atomic_save({**family, **nets, "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                 "scaler": scaler.state_dict(), "epoch": epoch, "batch": batch, "step": step,
                 "world_size": world_size, "rng": rng_state(device), "config": config.to_dict()},
                path)
    name, held = weights
    atomic_save({**family, **{net: nets[net] for net in held}, "config": config.to_dict(),
                 "step": step}, Path(path).parent / name)


def rng_state(device: torch.device) -> dict:
    """States of torch's CPU generator, the training GPU's generator and Python's random (the
    jitter)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" \
        else torch.empty(0, dtype=torch.uint8)
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "cuda": cuda}


def set_rng_state(state: dict, device: torch.device, path="checkpoint") -> None:
    """Restore rng_state's states; states that cannot be restored are one ValueError naming path."""
    try:
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        if device.type == "cuda" and state["cuda"].numel():  # a CPU checkpoint on a GPU: its seed
            torch.cuda.set_rng_state(state["cuda"], device)
    except (RuntimeError, TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: its rng entry holds no random states this run can restore "
                         f"({first_line(e)})") from None


# the first bytes of a PyTorch file: a zip (torch >= 1.6) or the legacy pickle's magic number
TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19")


def what_was_loaded(path: Path, error: BaseException) -> str:
    """What a file that torch.load(weights_only=True) refused is, in a few words."""
    try:
        with open(path, "rb") as file:
            start = file.read(1 << 20)  # a legacy file's pickle comes before the tensors' data
    except OSError:  # missing, a folder, unreadable: torch's own words
        return first_line(error)
    head = start[:1024]
    if re.match(rb"\s*<(!doctype html|html|head|body|\?xml)", head, re.IGNORECASE):
        return "an HTML page, not a weights file (a login, error or moved page?)"
    # weights_only names the callable a pickle wanted (GLOBAL posix.system); a file cut in the
    # middle of a name (GLOBAL collections.Ordere) is damaged, not out to run code
    called = re.search(r"GLOBAL ([\w.]+)", str(error))
    module, _, name = called[1].rpartition(".") if called else ("", "", "")
    if called and (head.startswith(b"PK") or f"{module}\n{name}\n".encode() in start):
        return f"a file that would run code when loaded (it calls {called[1]}): refused"
    if not head.startswith(TORCH_MAGIC):
        return f"not a PyTorch file (its first bytes: {head[:8]!r})"
    return f"a truncated or damaged PyTorch file of {path.stat().st_size} bytes"


MAX_RECORDS = 100_000  # records in one PyTorch zip: a checkpoint of 100 resnet blocks has 4,400


def zip_record_count(file) -> int:
    """The number of records a zip's end record declares (zip64's where it has one), read before
    any record is: a directory of millions of records is refused before it is parsed. -1: no end
    record."""
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - 22 - 65_535))  # the end record, 22 bytes, and its longest comment
    tail = file.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return -1
    count = int.from_bytes(tail[at + 10:at + 12], "little")
    locator = tail[at - 20:at] if at >= 20 else b""
    if count == 0xFFFF and locator.startswith(b"PK\x06\x07"):  # the count is in zip64's record
        file.seek(int.from_bytes(locator[8:16], "little"))
        count = int.from_bytes(file.read(56)[32:40], "little")
    return count


def check_archive(path, what: str = "checkpoint") -> bool:
    """Refuse a PyTorch zip that would make torch.load inflate or allocate more than the file
    holds: torch.save stores its records uncompressed, and torch.load inflates a compressed one
    (3.9 MB of zeros deflated to 4 GB took 16.7 s and 4.45 GB). One ValueError naming path. True
    for a zip that passed; False for a file that is no zip (the legacy format, or no PyTorch file
    at all) or a damaged one, left to torch.load."""
    try:
        with open(path, "rb") as file:
            if file.read(4) != b"PK\x03\x04":
                return False
            size, count = os.fstat(file.fileno()).st_size, zip_record_count(file)
            if count > MAX_RECORDS:
                raise ValueError(f"{path}: not a loadable {what}: it declares {count:,} "
                                 f"records, more than the {MAX_RECORDS:,} a PyTorch file has")
            records = zipfile.ZipFile(file).infolist()
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile):
        return False  # missing, unreadable or damaged: torch.load names what it is
    packed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise ValueError(f"{path}: not a loadable {what}: its record {packed[0]} is "
                         f"compressed, which torch.save never does (a zip bomb?); refused unread")
    declared = sum(r.file_size for r in records)
    if declared > size:
        raise ValueError(f"{path}: not a loadable {what}: its records declare "
                         f"{size_text(declared)}, more than the file's {size_text(size)} can "
                         f"hold; refused unread")
    return True


def safe_load(path, what: str = "checkpoint", mmap: bool = False):
    """torch.load(weights_only=True) onto the CPU; any failure becomes one ValueError naming the
    file, what it should have been and what it is. mmap: tensors mapped, read only when used (a
    zip's; the legacy format is read whole). A zip that would inflate or allocate more than it
    holds, and a file read whole that needs more memory than is available, are refused unread."""
    mmap = check_archive(path, what) and mmap
    if not mmap:  # it reads at most the file (a zip's records fit in it, checked), and a
        # sparse file of gigabytes costs no disk
        try:
            need = os.stat(path).st_size
        except OSError:
            need = 0  # missing or unreadable: torch.load says so
        available = memory_short(need)
        if available is not None:
            raise ValueError(f"{path}: not a loadable {what}: loading it takes "
                             f"{size_text(need)}, more than the {size_text(available)} of memory "
                             f"available here; refused unread")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated zip, random bytes, or a pickle that wants to run code
        raise ValueError(f"{path}: not a loadable {what}: "
                         f"{what_was_loaded(Path(path), e)}") from None


KINDS = {"pix2pix": "infer.py and tools.evaluate use it",
         "completion": "python completion.py complete and tools.evaluate use it"}


def not_a_file(path: Path) -> str:
    """What a path that exists but is no regular file is: a folder, a named pipe (whose reading
    would wait for a writer), a device (/dev/zero: endless) or a socket."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
             (stat.S_ISSOCK, "a socket"))
    mode = path.stat().st_mode
    return next((kind for test, kind in kinds if test(mode)), "a device")


def read_checkpoint(path, mmap: bool = False):
    """safe_load of a checkpoint file that must exist."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise FileNotFoundError(f"{path}: not a checkpoint file but {not_a_file(path)}")
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return safe_load(path, mmap=mmap)


def checkpoint_kind(path) -> str:
    """pix2pix or completion: which family wrote a checkpoint."""
    ckpt = read_checkpoint(path)
    kind = ckpt.get("kind", "pix2pix") if isinstance(ckpt, dict) else None
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"{path}: not a checkpoint of this project")
    return kind


def is_count(value, least: int = 0) -> bool:
    return type(value) is int and value >= least  # True is no count


STATE_DICT = (lambda v: isinstance(v, dict) and all(isinstance(k, str) and torch.is_tensor(t)
                                                    for k, t in v.items()),
              "a state dict (parameter names mapped to tensors)")  # what load_state_dict takes
OPTIMIZER = (lambda v: isinstance(v, dict) and isinstance(v.get("state"), dict)
             and isinstance(v.get("param_groups"), list), "an optimizer state")
ENTRIES = {  # what each entry a checkpoint may hold must be: (test, what it is)
    "generator": STATE_DICT, "discriminator": STATE_DICT, "opt_g": OPTIMIZER, "opt_d": OPTIMIZER,
    "scaler": (lambda v: isinstance(v, dict), "a GradScaler state"),
    **dict.fromkeys(("epoch", "batch", "step"), (is_count, "a count")),
    "world_size": (lambda v: is_count(v, 1), "a count of processes"),
    "rng": (lambda v: isinstance(v, dict) and torch.is_tensor(v.get("torch"))
            and isinstance(v.get("python"), tuple) and torch.is_tensor(v.get("cuda")),
            "the random states of a run"),
    "config": (lambda v: isinstance(v, dict), "a mapping of config fields"),
    "kind": (lambda v: isinstance(v, str), "a family name"),
}


def described(value) -> str:
    """'a list', '-1', or for a mapping its first entry out of place: "a dict with 'x': a str"."""
    def a(thing):
        name = type(thing).__name__
        return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a dict with the key {short_repr(key)}"
            if not torch.is_tensor(item):
                return f"a dict with {short_repr(key)}: {a(item)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return short_repr(value)
    return a(value)


def load_checkpoint(path, keys=("generator", "config"), kind: str = "pix2pix",
                    config_class=Config, mmap: bool = False) -> dict:
    """Load a checkpoint of one family (pix2pix's have no "kind" key) safely; any problem becomes
    one ValueError that names the file. config_class rebuilds its config; mmap: tensors mapped."""
    ckpt = read_checkpoint(path, mmap)
    found = ckpt.get("kind", "pix2pix") if isinstance(ckpt, dict) else None
    if isinstance(found, str) and found != kind and found in KINDS:
        raise ValueError(f"{path}: a {found} checkpoint, not a {kind} one ({KINDS[found]})")
    missing = [k for k in keys if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a {kind} checkpoint of this project "
                         f"(missing {', '.join(missing)})")
    for name, (fits, what) in ENTRIES.items():
        if name in ckpt and not fits(ckpt[name]):
            raise ValueError(f"{path}: its {name} entry is not {what} but {described(ckpt[name])}")
    try:
        ckpt["config"] = config_class.from_dict(ckpt["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: checkpoint config is not compatible: {e}") from None
    return ckpt


def saved_config(path) -> Config:
    """The config of a resumable checkpoint, its tensors mapped and not read: train.py knows the
    run's precision before the networks exist."""
    return load_checkpoint(path, keys=CHECKPOINT_KEYS, mmap=True)["config"]


def resume_changes(saved, cfg, classes: ResumeClasses = PIX2PIX_RESUME,
                   world_size: int = 1) -> tuple:
    """(refused, warned): 'field=saved (now new)' for each field of cfg that differs from the
    checkpoint's config saved and takes effect in either, by the classes of cfg's family."""
    def differs(name):
        unused = classes.unused_when.get(name, lambda c: False)
        return getattr(saved, name) != getattr(cfg, name) and not (unused(saved) and unused(cfg))

    def text(name):
        return f"{name}={getattr(saved, name)} (now {getattr(cfg, name)})"

    warned = [n for n in classes.warned if differs(n)]
    if saved.precision == "auto":  # an older checkpoint: what auto chose is unknown (train.py)
        warned = [n for n in warned if n != "precision"]
    if world_size == 1:  # one process has no batch norm statistics to sync
        warned = [n for n in warned if n != "sync_bn"]
    known = {*classes.refused, *classes.warned, *classes.silent}
    # a field added later without a class: warned, never silently ignored
    warned += [f.name for f in dataclasses.fields(cfg) if f.name not in known and differs(f.name)]
    return [text(n) for n in classes.refused if differs(n)], [text(n) for n in warned]


def check_resume(path, cfg, world_size: int = 1, log=print, classes=PIX2PIX_RESUME,
                 **family) -> tuple:
    """(epoch, batch, step) to continue a run from its checkpoint at path, its tensors left unread;
    a change the classes refuse is one ValueError naming the file, one that makes the run inexact a
    warning line through log. family: load_checkpoint's kind and config_class."""
    ckpt = load_checkpoint(path, keys=CHECKPOINT_KEYS, mmap=True, **family)
    refused, warned = resume_changes(ckpt["config"], cfg, classes, world_size)
    if refused:
        raise ValueError(f"{path}: cannot resume, the checkpoint has {', '.join(refused)}; "
                         f"use the same settings or another --name")
    if warned:
        log(f"warning: {path}: resuming with {', '.join(warned)}: the run goes on, but not as "
            f"an unbroken run would")
    batch = batch_for_world_size(path, ckpt["batch"], ckpt.get("world_size", 1), world_size,
                                 cfg.batch_size)
    return ckpt["epoch"], batch, ckpt["step"]


def restore(path, G, D, opt_g, opt_d, scaler, device: torch.device, **family) -> None:
    """Weights, Adam moments, loss scale and random states from the checkpoint at path (checked
    by check_resume). The optimizers keep this run's settings (see load_optimizer)."""
    ckpt = load_checkpoint(path, keys=CHECKPOINT_KEYS, **family)
    try:
        G.load_state_dict(ckpt["generator"])
        D.load_state_dict(ckpt["discriminator"])
        load_optimizer(opt_g, ckpt["opt_g"])
        load_optimizer(opt_d, ckpt["opt_d"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path}: does not fit this run ({first_line(e)})") from None
    if ckpt["scaler"] and scaler.is_enabled():  # empty when the run that saved it did not use fp16
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"], device, path)
    del ckpt  # about 1.1 GB at full size: the run must not hold on to it


def resume(path, cfg: Config, G, D, opt_g, opt_d, scaler, device: torch.device,
           world_size: int = 1, log=print) -> tuple:
    """check_resume, then restore: (epoch, batch, step) to continue from."""
    position = check_resume(path, cfg, world_size, log)
    restore(path, G, D, opt_g, opt_d, scaler, device)
    return position


def batch_for_world_size(path, batch: int, saved_world_size: int, world_size: int,
                         batch_size: int) -> int:
    """The batch to continue an epoch from with world_size processes, by images seen: the shared
    shuffle was consumed up to position batch × batch_size × saved_world_size (EpochSampler)."""
    seen = batch * batch_size * saved_world_size
    if seen % (batch_size * world_size):
        raise ValueError(f"{path}: saved by {saved_world_size} process(es) after {seen} images of "
                         f"the epoch, not a whole number of steps of {world_size} × {batch_size} "
                         f"images; resume with {saved_world_size} process(es)")
    return seen // (batch_size * world_size)


def load_optimizer(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load moments and step counts, but keep this run's hyperparameters (lr, betas, eps, fused,
    foreach): a CPU checkpoint resumed on a GPU keeps fused Adam, and new --beta1/--beta2 apply.
    Each moment takes its parameter's memory format (channels_last on a GPU, not on a CPU): fused
    Adam on CUDA refuses mismatched strides, and on a CPU it pairs the wrong elements."""
    settings = [{key: value for key, value in group.items() if key != "params"}
                for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, own in zip(optimizer.param_groups, settings):
        group.update(own)
        step_on_device = group.get("fused") or group.get("capturable")  # else Adam keeps it on CPU
        for p in group["params"]:
            param_state = optimizer.state.get(p, {})
            if torch.is_tensor(param_state.get("step")):
                param_state["step"] = param_state["step"].to(
                    dtype=torch.float32, device=p.device if step_on_device else "cpu")
            for key, moment in list(param_state.items()):
                if key != "step" and torch.is_tensor(moment) and moment.shape == p.shape \
                        and moment.stride() != p.stride():
                    param_state[key] = torch.empty_like(p, dtype=moment.dtype).copy_(moment)


def size_text(nbytes: float) -> str:
    """1.2 GiB, 3.4 MiB or 56 KiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes / 1024:.0f} KiB"


def check_fits(path, build, fields: str) -> None:
    """Refuse a model whose weights would not fit in the memory this machine has available, before
    allocating them: build() -> its modules, run on the meta device (shapes, no storage); fields
    names the config values that size it. One ValueError naming path."""
    try:
        with torch.device("meta"):
            modules = build()
        tensors = [t for module in modules for t in module.state_dict().values()]
    except (RuntimeError, ValueError, OverflowError) as e:  # sizes no tensor can have
        raise ValueError(f"{path}: config: {fields}: no model can be built ({first_line(e)})") \
            from None
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    available = memory_short(nbytes)
    if available is not None:
        raise ValueError(f"{path}: config: {fields} make a model of "
                         f"{sum(t.numel() for t in tensors):,} numbers ({size_text(nbytes)}), more "
                         f"than the {size_text(available)} of memory available here; not built")


def generator_fields(cfg: Config) -> str:
    """'ngf=64, num_downs=8': the config values that size cfg's generator."""
    names = ("ngf", "resnet_blocks") if cfg.generator == "resnet" else ("ngf", "num_downs")
    return ", ".join(f"{name}={getattr(cfg, name)}" for name in names)


def load_generator(path) -> tuple:
    """Rebuild the generator from a checkpoint alone; returns (generator on CPU, config). Its
    tensors are mapped: only the generator's are read, whatever else the file declares."""
    ckpt = load_checkpoint(path, mmap=True)
    check_fits(path, lambda: [build_generator(ckpt["config"])], generator_fields(ckpt["config"]))
    generator = build_generator(ckpt["config"])
    try:
        generator.load_state_dict(ckpt["generator"])
    except RuntimeError as e:
        raise ValueError(f"{path}: generator weights do not match its config "
                         f"({first_line(e)})") from None
    return generator, ckpt["config"]


def save_grid(path, sketch: torch.Tensor, fake_photo: torch.Tensor, photo: torch.Tensor) -> None:
    """One row per image: sketch | generated | real, as a PNG."""
    rows = torch.stack([sketch, fake_photo, photo], dim=1).flatten(0, 1).float().cpu()  # (3B,3,H,W)
    b, h, w = sketch.shape[0], sketch.shape[2], sketch.shape[3]
    grid = Image.new("RGB", (3 * w + 4 * 2, b * h + (b + 1) * 2), "white")  # 2-pixel white gutters
    for k, image in enumerate(rows):
        row, col = divmod(k, 3)
        grid.paste(to_image(image), (2 + col * (w + 2), 2 + row * (h + 2)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


# ---------------------------------------------------------------- validation scores and loss curves

def psnr(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image (B,) in dB on the [0, 1] scale, capped at
    PSNR_CAP_DB."""
    mse = ((fake.double() - real.double()) / 2).pow(2).flatten(1).mean(1)  # /2: the [0, 1] scale
    return (-10 * torch.log10(mse)).clamp(max=PSNR_CAP_DB)  # mse 0 gives +inf, then the cap


def read_log(path) -> tuple:
    """Training and validation points of a log.jsonl: ({key: [(step, value)]}, [(step, val_l1)]).
    A step logged twice (a resumed run repeats steps) keeps its last value; unreadable lines are
    skipped."""
    train, val = {}, {}
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError):  # a half-written last line, or not a log record
            continue
        if "val_l1" in record:
            val[step] = record["val_l1"]
        elif "loss_d" in record:
            train[step] = record

    def points(values):
        return [(s, float(v)) for s, v in sorted(values.items())
                if isinstance(v, (int, float)) and math.isfinite(v)]

    series = {key: points({s: r.get(key) for s, r in train.items()})
              for key in LOSS_KEYS}
    return series, points(val)


def nice_ticks(low: float, high: float, count: int = 5) -> list:
    """About `count` round tick values (1, 2, 5 × 10^k apart) covering [low, high]."""
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def tick_label(value: float) -> str:
    """Short tick text: 1200, 1.2k, 0.05, 2.5e-05."""
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:.4g}" if value else "0"


def draw_panel(draw, box, title, lines, x_range, font, small_font) -> None:
    """One chart in box (left, top, right, bottom): axes, grid, ticks, lines and a legend.
    lines: [(label, colour, [(step, value)], markers)]."""
    left, top, right, bottom = box
    plot = (left + 70, top + 30, right - 15, bottom - 45)  # room for title, ticks and their labels
    draw.text((left + 70, top + 6), title, fill="black", font=font)
    values = [v for _, _, points, _ in lines for _, v in points]
    if not values:
        draw.rectangle(plot, outline="#999999")
        draw.text((plot[0] + 10, plot[1] + 10), "no data yet", fill="#666666", font=font)
        return
    y_low, y_high = min(values), max(values)
    pad = (y_high - y_low) * 0.08 or abs(y_high) * 0.1 or 1.0  # a flat series gets a band too
    y_low, y_high = y_low - pad, y_high + pad
    x_low, x_high = x_range

    def to_pixel(step, value):
        return (plot[0] + (step - x_low) / (x_high - x_low) * (plot[2] - plot[0]),
                plot[3] - (value - y_low) / (y_high - y_low) * (plot[3] - plot[1]))

    for tick in nice_ticks(y_low, y_high):
        y = to_pixel(x_low, tick)[1]
        draw.line([(plot[0], y), (plot[2], y)], fill="#e4e4e4")
        draw.line([(plot[0] - 4, y), (plot[0], y)], fill="black")
        draw.text((plot[0] - 7, y), tick_label(tick), fill="black", font=small_font, anchor="rm")
    for tick in nice_ticks(x_low, x_high, 8):
        x = to_pixel(tick, y_low)[0]
        draw.line([(x, plot[1]), (x, plot[3])], fill="#e4e4e4")
        draw.line([(x, plot[3]), (x, plot[3] + 4)], fill="black")
        draw.text((x, plot[3] + 7), tick_label(tick), fill="black", font=small_font, anchor="mt")
    draw.text(((plot[0] + plot[2]) / 2, bottom - 6), "step", fill="black", font=small_font,
              anchor="mb")
    draw.rectangle(plot, outline="black")
    for label, colour, points, markers in lines:
        pixels = [to_pixel(s, v) for s, v in points]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2, joint="curve")
        if markers or len(pixels) == 1:  # a lone point would otherwise be invisible
            for x, y in pixels:
                draw.ellipse([x - 3.5, y - 3.5, x + 3.5, y + 3.5], fill=colour)
    x = plot[2]  # legend: one row above the plot, right-aligned, so it never hides a line
    for label, colour, points, _ in reversed(lines):
        if points:
            x -= draw.textlength(label, font=small_font) + 46
            draw.line([(x, top + 15), (x + 22, top + 15)], fill=colour, width=4)
            draw.text((x + 28, top + 15), label, fill="black", font=small_font, anchor="lm")


def load_font(size: int):
    """Pillow's built-in scalable font; its fixed bitmap font where Pillow lacks FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def plot_curves(log_jsonl_path, png_path, width: int = 900, height: int = 660) -> Path:
    """Draw train.py's log.jsonl as a PNG: D and G_GAN losses, then training and validation L1,
    against step.
    Any log works: one line, training lines only, a half-written last line. Written atomically."""
    series, val = read_log(log_jsonl_path)
    steps = [s for points in (*series.values(), val) for s, _ in points]
    x_range = (0, max(steps)) if steps and max(steps) > 0 else (0, 1)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, small_font = load_font(15), load_font(12)
    half = height // 2
    draw_panel(draw, (0, 0, width, half), "GAN losses (binary cross-entropy)",
               [("D", "#1f77b4", series["loss_d"], False),
                ("G_GAN", "#d62728", series["loss_g_gan"], False)],
               x_range, font, small_font)
    draw_panel(draw, (0, half, width, height), "L1 on the [-1, 1] scale",
               [("G_L1 (train)", "#2ca02c", series["loss_g_l1"], False),
                ("val L1 (per epoch)", "#ff7f0e", val, True)],
               x_range, font, small_font)
    atomic_write(png_path, lambda f: image.save(f, format="PNG"))  # a viewer never sees half a PNG
    return Path(png_path)
