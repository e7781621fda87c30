"""What every training loop of the project shares (train.py's, completion.py's): the processes,
the run folder claimed and locked, the log, Ctrl-C, checkpoints on a cadence, the epoch's end.

    with running(cfg, device, loader, sampler, save, scaler, world_size, OUTPUTS) as run:
        for epoch in range(start_epoch, cfg.epochs):
            for batch, (sketch, photo) in epoch_batches(run, epoch, first_batch, (G, D)):
                run.meter.add(step(...)); step += 1
                after_step(run, epoch, batch, step, lr)
            end_epoch(run, epoch, step, val_sketch, val_fake, val_photo)
"""

import glob
import json
import math
import os
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from config import Config, pick_device
from dataset import EpochSampler
from save import (CHECKPOINT_KEYS, LOSS_KEYS, PIX2PIX_RESUME, check_resume, load_checkpoint,
                  plot_curves, psnr, save_grid)

try:
    import fcntl  # POSIX: the lock that keeps a run folder to one training at a time
except ImportError:  # Windows: no lock, and lock_run_dir says so
    fcntl = None


# ---------------------------------------------------------------- the processes

ERRORS = {e.__name__: e for e in (OSError, ValueError, FloatingPointError)}  # reported in one line


def setup_distributed(cfg: Config) -> tuple:
    """(rank, world_size, device). Under torchrun (which sets RANK) join the process group, one GPU
    per process; otherwise this is the world-size-1 case and nothing is initialized."""
    device = pick_device(cfg.device)
    if "RANK" not in os.environ:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)  # NCCL binds its communicator at once
    else:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), device


KEPT: dict = {}  # the tensors this process's collectives are given, one of each kind and size
MESSAGE_BYTES = 4096  # of an error's text sent from rank 0 to the others


def kept(kind: str, values, device: torch.device, dtype=None) -> torch.Tensor:
    """values (a list or a tensor) in a tensor this process keeps for its life, to give to a
    collective. A gloo worker thread can let go of a collective's tensors after the collective has
    returned, on a loaded machine past the process's exit; letting go of the last reference to a
    tensor Python made needs the GIL, which exit has taken: the process aborts (SIGABRT). A kept
    tensor's last reference is never the worker's."""
    values = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=dtype)
    key = (kind, str(device), values.dtype, values.numel())
    if key not in KEPT:
        KEPT[key] = torch.empty(values.numel(), dtype=values.dtype, device=device)
    return KEPT[key].copy_(values.reshape(-1))


def broadcast_text(text: str, device: torch.device) -> str:
    """Rank 0's text (its first MESSAGE_BYTES bytes) on every rank, through a kept tensor."""
    data = bytearray(text.encode()[:MESSAGE_BYTES].ljust(MESSAGE_BYTES, b"\0"))
    buffer = kept("text", torch.frombuffer(data, dtype=torch.uint8), device)
    dist.broadcast(buffer, src=0)
    return bytes(buffer.cpu().numpy()).rstrip(b"\0").decode(errors="replace")


def log0(*args, **kwargs) -> None:
    """print on rank 0 only: every process runs the same code, one of them speaks."""
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(*args, **kwargs)


def on_rank0(work, device: torch.device) -> None:
    """work() on rank 0 alone (the writing of logs, grids, checkpoints). Every rank learns whether
    it failed and raises the same error, instead of waiting forever in the next collective."""
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    error = None
    if rank == 0:
        try:
            work()
        except Exception as e:  # noqa: BLE001 -- re-raised below, on every rank
            error = e
    if world_size > 1:
        failed = kept("failed", [float(error is not None)], device)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)
        if failed.item():
            message = broadcast_text(f"{type(error).__name__}:{error}" if rank == 0 else "",
                                     device)
            if rank != 0:
                name, text = message.split(":", 1)
                error = ERRORS.get(name, RuntimeError)(text)
            leave_together()
    if error is not None:
        raise error


def leave_together() -> None:
    """Every rank is at the same point and about to leave: a last barrier, whose wait lets gloo's
    worker threads finish with the collectives before it while the ranks still run (see kept)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def check_same_start(step: int, last_path: Path, device: torch.device) -> None:
    """Every process must resume from the same step (models/ on a filesystem all of them see)."""
    start = kept("start", [step, -step], device, torch.int64)
    dist.all_reduce(start, op=dist.ReduceOp.MAX)
    if start[0] != -start[1]:
        leave_together()
        raise ValueError(f"{last_path}: processes would resume at different steps "
                         f"({-start[1]}..{start[0]}); put models/ on a filesystem that every "
                         f"machine sees")


# ---------------------------------------------------------------- the run folder: one writer

LOCK_NAME = ".lock"  # in a run folder: locked by the one training that writes there, its pid in it


def held(run_dir: Path, file) -> OSError:
    """The refusal of a run folder whose lock file another training holds."""
    file.seek(0)
    pid = file.read().strip()
    return OSError(f"{run_dir}: in use by another training{f' (pid {pid})' if pid else ''}; wait "
                   f"for it to end, or use another --name")


def check_not_held(run_dir: Path) -> None:
    """Refuse a run folder that another training holds, writing nothing (lock_run_dir locks it)."""
    if fcntl is None or not (run_dir / LOCK_NAME).is_file():
        return
    with open(run_dir / LOCK_NAME) as file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)  # let go of as the file closes
        except BlockingIOError:
            raise held(run_dir, file) from None


def lock_run_dir(run_dir: Path, log=print):
    """Hold run_dir for this process until unlock, or its end (a crash lets go of it too; its
    loader workers, which share the file, end within seconds): a second training of the folder is
    refused in one line. None where the system has no flock, said in one line."""
    if fcntl is None:
        log(f"warning: this system has no fcntl.flock: nothing stops a second training from "
            f"writing into {run_dir} at the same time")
        return None
    path = run_dir / LOCK_NAME
    try:  # never through a link: truncating it below would empty the file it points to
        file = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644), "r+")
    except OSError as e:
        raise OSError(f"{path}: cannot open it as the run's lock file ("
                      f"{'a link' if path.is_symlink() else e.strerror}); remove it") from None
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        error = held(run_dir, file) if isinstance(e, BlockingIOError) else OSError(
            f"{path}: cannot lock it ({e.strerror})")
        file.close()
        raise error from None
    file.truncate(0)
    file.write(f"{os.getpid()}\n")
    file.flush()
    return file


def unlock(file) -> None:
    """Let go of lock_run_dir's lock at once (loader workers that share the file included)."""
    if file is not None:
        fcntl.flock(file, fcntl.LOCK_UN)
        file.close()


def check_writable(*folders: Path) -> None:
    """Make each folder and create a file in it as atomic_write does: a folder the run cannot
    write is one OSError line before its first step, not after an epoch's work."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")  # not .tmp: never swept
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise OSError(f"{folder}: the run cannot write there ({e.strerror or e})") from None


def start_over(run_dir: Path, samples_dir: Path, outputs: tuple) -> None:
    """--overwrite: delete what an earlier run of the name wrote: outputs (file names in run_dir),
    its TensorBoard events and its sample grids. Anything else in the folders stays."""
    for path in [*(run_dir / name for name in outputs), *samples_dir.glob("epoch_*.png"),
                 *run_dir.glob("tensorboard/events.out.tfevents.*")]:
        path.unlink(missing_ok=True)


NAME_MAX = 255  # bytes in one folder name (ext4, XFS, APFS, NTFS's 255 UTF-16 units and more)
WAYS_ON = "start another with another --name, or start this one over with --overwrite"


def check_run_name(name: str) -> None:
    """A run's name is one folder name: '' or '.' would make models/ itself the run folder, '..'
    its parent, and an absolute name any folder (samples/NAME then being that folder too)."""
    if name in ("", ".", "..") or any(sep and sep in name for sep in ("/", os.sep, os.altsep)):
        raise ValueError(f"config: name must be one folder name (no '/', not '', '.' or '..'), "
                         f"as in models/NAME; got {name!r}")
    if len(os.fsencode(name)) > NAME_MAX:
        raise ValueError(f"config: name is {len(os.fsencode(name))} bytes long, more than the "
                         f"{NAME_MAX} a folder name may have")


def why(error: Exception, path: Path) -> str:
    """A loader's one line without the file's name and the words that say it does not load."""
    return str(error).removeprefix(f"{path}: ").removeprefix("not a loadable checkpoint: ")


def check_start(cfg, run_dir: Path, outputs: tuple, **family) -> None:
    """Refuse, before anything is written, a run that would lose or mix another's work: a name
    that is no folder name, a folder another training holds, an output that is a folder, a saved
    run that neither --resume nor --overwrite names, or an earlier run's weights or grids that a
    run from scratch would write over. outputs: the family's (OUTPUTS, its weights file second);
    family: load_checkpoint's kind and config_class (completion.py's runs)."""
    check_run_name(cfg.name)
    if cfg.resume and cfg.overwrite:
        raise ValueError("config: resume and overwrite: --resume continues the saved run, "
                         "--overwrite starts it over; give one of them")
    samples_dir = Path(cfg.samples_dir) / cfg.name
    check_not_held(run_dir)
    check_not_held(samples_dir)
    for path in (run_dir / name for name in (*outputs, "config.json")):  # writes would fail
        if path.is_dir():
            raise OSError(f"{path}: a folder, where the run writes its {path.name}; move it away "
                          f"or use another --name")
    if (run_dir / "tensorboard").exists() and not (run_dir / "tensorboard").is_dir():
        raise OSError(f"{run_dir / 'tensorboard'}: a file, where the run writes its TensorBoard "
                      f"events; move it away or use another --name")
    last_path = run_dir / "last.pt"
    if cfg.overwrite or (cfg.resume and last_path.exists()):
        return
    if last_path.exists():
        try:
            ckpt = load_checkpoint(last_path, keys=CHECKPOINT_KEYS, mmap=True, **family)
        except ValueError as e:  # --resume would fail the same way: not offered
            raise ValueError(f"{run_dir}: holds a last.pt that does not load "
                             f"({why(e, last_path)}); {WAYS_ON}") from None
        raise ValueError(f"{run_dir}: holds a run saved at epoch {ckpt['epoch']} batch "
                         f"{ckpt['batch']} (step {ckpt['step']}); continue it with --resume, "
                         f"{WAYS_ON}")
    # from scratch (--resume too: there is no last.pt): an earlier run's weights and grids would be
    # written over; its log alone is no loss (a run killed before its first checkpoint)
    weights, grids = run_dir / outputs[1], sorted(samples_dir.glob("epoch_*.png"))
    if weights.exists():
        raise ValueError(f"{run_dir}: holds {weights.name} of an earlier run but no last.pt to "
                         f"continue it; {WAYS_ON}")
    if grids:
        raise ValueError(f"{samples_dir}: holds {grids[0].name} of an earlier run but {run_dir} "
                         f"has no last.pt to continue it; {WAYS_ON}")


def resume_position(cfg, last_path: Path, world_size: int, classes=PIX2PIX_RESUME,
                    **family) -> tuple:
    """(epoch, batch, step) the run starts from: its checkpoint's with --resume (a change that does
    not fit refused, one that makes it inexact warned; nothing read but the config), else 0."""
    if cfg.resume and last_path.exists():
        return check_resume(last_path, cfg, world_size, log0, classes, **family)
    if cfg.resume:
        log0(f"no checkpoint at {last_path}: starting from scratch")
    return 0, 0, 0


def prepare_run_dir(run_dir: Path, cfg: Config, outputs: tuple) -> None:
    """models/<name> with config.json, cleared of killed runs' half-written outputs (called under
    the folder's lock: no live run owns one; the temporary files of a tool writing beside the
    checkpoint, tools.export's, are not a run's and stay)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(str(cfg) + "\n")
    for name in outputs:
        for stale in run_dir.glob(f".{glob.escape(name)}.*.tmp"):  # atomic_write's names
            stale.unlink()


# ---------------------------------------------------------------- the log and Ctrl-C

class LossMeter:
    """The losses of a log interval, summed on the device: reading them every step would sync.
    Its img/s times training steps alone: the clock starts after the run's first step (compile,
    cuDNN's autotuning) and again at restart() (after validation and checkpoints)."""

    def __init__(self, device: torch.device, images_per_step: int):
        self.sums, self.images_per_step = torch.zeros(3, device=device), images_per_step
        self.device, self.steps, self.warm = device, 0, False
        self.restart()

    def restart(self) -> None:
        """Time from now on; the GPU's queued work belongs to the time before."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timed_steps, self.start = 0, time.perf_counter()

    def add(self, losses: torch.Tensor) -> None:
        self.sums += losses
        self.steps += 1
        self.timed_steps += 1
        if not self.warm:  # the first step compiles and autotunes: no measure of training speed
            self.warm = True
            self.restart()

    def record(self, epoch: int, step: int, lr: float) -> dict:
        """The interval's mean losses over all processes and its speed as one record; then reset."""
        if dist.is_initialized():
            total = kept("losses", self.sums, self.device)
            dist.all_reduce(total)
            self.sums.copy_(total).div_(dist.get_world_size())
        means = (self.sums / self.steps).tolist()  # the one host-device sync
        seconds = time.perf_counter() - self.start
        speed = {"img_per_s": self.timed_steps * self.images_per_step / seconds} \
            if self.timed_steps else {}  # an interval of the first step alone has no speed
        self.sums.zero_()
        self.steps, self.timed_steps, self.start = 0, 0, time.perf_counter()
        return {"epoch": epoch, "step": step, **dict(zip(LOSS_KEYS, means)), "lr": lr, **speed}


def tensorboard_writer(log_dir: Path):
    """TensorBoard's SummaryWriter on log_dir, or None where the optional package is missing (said
    in one line)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log0("tensorboard: not installed, so the run logs to log.jsonl and curves.png only "
             "(pip install -r requirements-optional.txt)")
        return None
    return SummaryWriter(str(log_dir))


class RunLog:
    """Each record (a dict with epoch and step) written once: a line on stdout, a line of log.jsonl
    and, when the package is installed, TensorBoard scalars. Only rank 0 writes."""
    LABELS = {"loss_d": ("D", ".3f"), "loss_g_gan": ("G_gan", ".3f"), "loss_g_l1": ("G_l1", ".4f"),
              "lr": ("lr", ".2e"), "img_per_s": ("img/s", ".1f"), "val_l1": ("val L1", ".4f"),
              "val_psnr": ("val PSNR dB", ".2f")}

    def __init__(self, run_dir: Path, main_process: bool):
        self.file = open(run_dir / "log.jsonl", "a") if main_process else None
        self.tensorboard = tensorboard_writer(run_dir / "tensorboard") if main_process else None

    def write(self, record: dict) -> None:
        if not self.file:
            return
        fields = [f"{label} {record[key]:{fmt}}" for key, (label, fmt) in self.LABELS.items()
                  if key in record]
        tqdm.write(" | ".join([f"epoch {record['epoch']} step {record['step']}", *fields]))
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for key, value in record.items() if self.tensorboard else ():
            if key not in ("epoch", "step"):  # val_l1 -> val/l1, loss_d -> train/loss_d
                tag = key.replace("_", "/", 1) if key.startswith("val_") else f"train/{key}"
                self.tensorboard.add_scalar(tag, value, record["step"])

    def image(self, tag: str, png_path: Path, step: int) -> None:
        if self.tensorboard:
            image = np.asarray(Image.open(png_path))
            self.tensorboard.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tensorboard:
            self.tensorboard.close()


def check_losses(record: dict, scaler, last_path: Path) -> None:
    """A NaN or Inf loss stops the run, except under fp16, where the GradScaler skips such steps."""
    if all(math.isfinite(record[k]) for k in LOSS_KEYS if k in record):
        return
    if not scaler.is_enabled():  # every rank sees the same mean losses: all of them stop here
        leave_together()
        raise FloatingPointError(f"loss is NaN or Inf by step {record['step']} (epoch "
                                 f"{record['epoch']}); the last good checkpoint is {last_path}")
    log0(f"step {record['step']}: non-finite fp16 loss; the GradScaler skipped those updates")


class StopFlag:
    """Ctrl-C or SIGTERM (a cluster's preemption) asks the run to stop: it finishes the step in
    flight, saves and leaves, so that a resumed run continues exactly there. A second Ctrl-C leaves
    at once."""

    def __init__(self, device: torch.device):
        self.device, self.signal_name, self.previous = device, None, {}
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1

    def install(self) -> "StopFlag":
        self.previous = {sig: signal.signal(sig, self.request)
                         for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def request(self, signum, frame) -> None:
        if self.signal_name:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        if not dist.is_initialized() or dist.get_rank() == 0:
            tqdm.write(f"{self.signal_name}: finishing this step, then saving "
                       f"(press Ctrl-C again to abort without saving)")

    def agreed(self, check_now: bool) -> bool:
        """Whether to stop now. One process stops at once; several stop together, agreeing only
        where all of them are at the same step (check_now: at log steps and epoch ends)."""
        if self.world_size == 1:
            return self.signal_name is not None
        if not check_now:
            return False
        flag = kept("stop", [float(self.signal_name is not None)], self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag.item() > 0


# ---------------------------------------------------------------- the loop

@dataclass
class Run:
    """What the loop of a run (train.py's, completion.py's) writes and watches; running() makes
    it. save(epoch=, batch=, step=) writes the family's checkpoint; unlogged: losses it lacks."""
    cfg: Any  # Config or completion.py's CompletionConfig
    device: torch.device
    loader: Any
    sampler: EpochSampler
    save: Any
    scaler: torch.amp.GradScaler
    log: RunLog
    stop: StopFlag
    meter: LossMeter
    unlogged: tuple = ()
    last_record: dict = field(default_factory=dict)
    bar: Any = None  # the epoch's progress bar

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.models_dir) / self.cfg.name

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"


@contextmanager
def running(cfg, device, loader, sampler, save, scaler, world_size: int, outputs: tuple,
            log_class=RunLog, unlogged=()):
    """A Run in a claimed run folder: every folder it writes checked writable, the folder and its
    samples folder locked (refused where another training holds one), --overwrite's old outputs
    deleted, config.json written. However the loop ends: the log closed, signals and loader
    workers let go, the locks."""
    run_dir, samples_dir = Path(cfg.models_dir) / cfg.name, Path(cfg.samples_dir) / cfg.name
    lock, log, stop, clean = [], None, None, False

    def claim():
        tensorboard = [run_dir / "tensorboard"] if (run_dir / "tensorboard").is_dir() else []
        check_writable(run_dir, samples_dir, *tensorboard)  # else made in run_dir, checked here
        lock.append(lock_run_dir(run_dir, log0))
        if samples_dir.resolve() != run_dir.resolve():  # two runs of one name, two models folders
            lock.append(lock_run_dir(samples_dir, lambda line: None))  # warned once, above
        if cfg.overwrite:
            start_over(run_dir, samples_dir, outputs)
        prepare_run_dir(run_dir, cfg, outputs)

    try:
        on_rank0(claim, device)
        log = log_class(run_dir, not dist.is_initialized() or dist.get_rank() == 0)
        stop = StopFlag(device).install()
        yield Run(cfg, device, loader, sampler, save, scaler, log, stop,
                  LossMeter(device, cfg.batch_size * world_size), unlogged)
        clean = True
    finally:
        if log:
            log.close()
        if stop:
            stop.restore()
        release_workers(loader)
        if clean:  # a clean end (an agreed stop or an error left together before raising)
            leave_together()
        for file in lock:
            unlock(file)


def release_workers(loader) -> None:
    """Ends a DataLoader's persistent worker processes now: a run stopped by Ctrl-C or an error
    must not leave them to the garbage collector, which waits seconds for each (a notebook or a
    test that called main() goes on)."""
    iterator = getattr(loader, "_iterator", None)  # DataLoader's own, only with persistent workers
    if iterator is not None:
        iterator._shutdown_workers()
        loader._iterator = None


def set_lr(optimizers, lr: float) -> float:
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr
    return lr


def epoch_batches(run: Run, epoch: int, first_batch: int, nets) -> enumerate:
    """(batch, (sketch, photo)) of the epoch from first_batch on, under a progress bar; the nets
    in training mode."""
    run.sampler.epoch, run.sampler.start = epoch, first_batch * run.cfg.batch_size
    for net in nets:
        net.train()
    run.bar = tqdm(run.loader, desc=f"epoch {epoch}", total=len(run.loader), initial=first_batch,
                   leave=False, dynamic_ncols=True, file=sys.stderr,
                   disable=dist.is_initialized() and dist.get_rank() != 0)
    run.meter.restart()  # the last epoch's validation and checkpoint are no training steps
    return enumerate(run.bar, start=first_batch)


def after_step(run: Run, epoch: int, batch: int, step: int, lr: float) -> None:
    """A step's end: at log steps and the epoch's last the interval's record, checked (a NaN stops
    the run) and written; a checkpoint every save_every steps, and on Ctrl-C before it stops."""
    last_in_epoch = batch == len(run.loader) - 1
    if step % run.cfg.log_every == 0 or last_in_epoch:
        run.last_record = {k: v for k, v in run.meter.record(epoch, step, lr).items()
                           if k not in run.unlogged}
        check_losses(run.last_record, run.scaler, run.last_path)
        on_rank0(lambda: run.log.write(run.last_record), run.device)
        run.bar.set_postfix({k: f"{run.last_record[k]:.3f}" for k in LOSS_KEYS
                             if k in run.last_record})
    if last_in_epoch:  # the epoch's last step saves in end_epoch, after validation
        return
    stopping = run.stop.agreed(check_now=step % run.cfg.log_every == 0)
    if stopping or (run.cfg.save_every and step % run.cfg.save_every == 0):
        on_rank0(lambda: run.save(epoch=epoch, batch=batch + 1, step=step), run.device)
        run.meter.restart()  # a checkpoint is no training step either
    if stopping:
        leave_together()
        log0(f"\nstopped at epoch {epoch} batch {batch + 1} (step {step}); saved {run.last_path}; "
             f"continue with --resume")
        raise SystemExit(130)


def end_epoch(run: Run, epoch: int, step: int, val_sketch, val_fake, val_photo) -> float:
    """The epoch's checkpoint, then its validation record, grid and curves (a grid that fails
    never costs the checkpoint); Ctrl-C during the epoch's end stops here. Returns the val L1."""
    run.bar.close()
    val_l1 = F.l1_loss(val_fake, val_photo).item()
    record = {"epoch": epoch, "step": step, "val_l1": val_l1,
              "val_psnr": psnr(val_fake, val_photo).mean().item()}
    grid_path, n = Path(run.cfg.samples_dir) / run.cfg.name / f"epoch_{epoch:03d}.png", \
        run.cfg.n_samples

    def write():
        run.save(epoch=epoch + 1, batch=0, step=step)
        run.log.write(record)
        save_grid(grid_path, val_sketch[:n], val_fake[:n], val_photo[:n])
        plot_curves(run.run_dir / "log.jsonl", run.run_dir / "curves.png")
        run.log.image("val/sketch_generated_real", grid_path, step)

    on_rank0(write, run.device)
    log0(f"epoch {epoch} done; saved {run.last_path}, {grid_path} and {run.run_dir / 'curves.png'}")
    if run.stop.agreed(check_now=True):  # Ctrl-C in the last step or validation: saved complete
        leave_together()
        log0(f"stopped after epoch {epoch}; continue with --resume")
        raise SystemExit(130)
    return val_l1
