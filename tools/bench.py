r"""Speed of pix2pix: the training step, the input pipeline and CPU inference.

    python -m tools.bench train --batch 1 4 16 --precision fp32 bf16 fp16 --channels_last 0 1 \
        --compile off default reduce-overhead
    python -m tools.bench train --config 1:fp32:0:off 4:fp32:0:off 4:bf16:1:default \
        64:bf16:1:default
    python -m tools.bench train --no-interleave --config 4:bf16:1:off 64:bf16:1:off 256:bf16:1:off
    # a quick check
    python -m tools.bench train --size 64 --ngf 8 --batch 2 --repeats 2 --warmup 1 --device cpu
    python -m tools.bench loader --data data/edges2shoes-1k/train --batch 64 --workers 2 \
        --jitter false true --cache
    # CPU ms/image: plain fp32 eager vs the tuner's pick vs onnxruntime, batch 1 and 8; the app
    python -m tools.bench infer --repeats 10
    python -m tools.bench infer --checkpoint models/NAME/generator.pt --threads 1 2
    # ms to prepare a sketch (find, fit, thin), per kind and size of input, beside the generator
    python -m tools.bench prepare

train: train.gan_step on random batches already on the device, per configuration (warmed up, then
their timed steps interleaved; --no-interleave: one at a time), with FLOPs, memory and whether CUDA
graphs replayed; loader: train.py's input pipeline alone, the files per worker count beside --cache;
infer: CPU ms per image of plain fp32 eager, the tuner's pick and onnxruntime, under two OpenMP
policies, then the sketch pad end to end; prepare: sketch.prepare_sketch per kind of input, beside
the generator. What each measures and how: docs/tools.md (Benchmarks).
Every configuration prints one readable line and one JSON line (also appended to --out FILE.jsonl).
"""

import argparse
import gc
import http.client
import io
import itertools
import json
import math
import multiprocessing
import os
import shutil
import statistics
import tempfile
import threading
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

if __name__ == "__main__":
    # Before torch loads OpenMP, as infer.py does: idle threads sleep rather than spin, which on a
    # CPU shared with other processes made the 2-thread generator up to 70× slower (a spinning
    # thread starves the working one). An OMP_WAIT_POLICY set in the environment wins; bench infer
    # sets it for its two workers itself.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import train  # noqa: E402
from config import Config, add_device_flag, parse_bool, pick_device  # noqa: E402
from dataset import EpochSampler, PairCache, PairDataset, usable_cpus  # noqa: E402
from discriminator import build_discriminator  # noqa: E402
from generator import build_generator, for_inference, translate  # noqa: E402
from infer import OnnxGenerator  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from save import atomic_save, load_generator  # noqa: E402
from tune import MARGIN, Tuner, machine_key, native_bf16  # noqa: E402

EDGES2SHOES_TRAIN_IMAGES = 49_825  # pairs in edges2shoes/train: one epoch


def sync(device: torch.device) -> None:
    """Wait for the GPU, so that a timer around it measures the work and not the launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux), or NaN where /proc is missing."""
    try:
        return (int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                / 2**20)
    except (OSError, ValueError, IndexError):
        return math.nan


def emit(record: dict, out, line: str = "", records: list = None) -> dict:
    """The readable line, if any, then the record's JSON line to stdout, the JSON line appended to
    the --out file if there is one; the record added to records."""
    if line:
        print(line, flush=True)
    print(json.dumps(record), flush=True)
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
    if records is not None:
        records.append(record)
    return record


def default_num_downs(size: int) -> int:
    """Downsamplings that take size down to 1×1, as UNet-256 does at 256 (8)."""
    num_downs = int(math.log2(size))
    if 2**num_downs != size or num_downs < 5:
        raise SystemExit(f"bench.py: --size must be a power of two of at least 32, got {size}")
    return num_downs


# -------------------------------------------------------------------------------------------- train

def build_nets(cfg: Config, device: torch.device, memory_format=torch.contiguous_format) -> tuple:
    """G, D and their Adam optimizers as train.py builds them (fused Adam on CUDA)."""
    G = build_generator(cfg).to(device, memory_format=memory_format)
    D = build_discriminator(cfg).to(device, memory_format=memory_format)
    return (G, D, *train.make_optimizers(G, D, cfg, device))


def count_step_flops(cfg: Config) -> float:
    """FLOPs per image of one training step, counted by FlopCounterMode on gan_step with meta
    tensors."""
    meta = torch.device("meta")
    with meta:  # built there directly: no time spent initializing 54M real weights
        G, D, opt_g, opt_d = build_nets(cfg, meta)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    sketch = torch.empty(1, 3, cfg.image_size, cfg.image_size, device=meta)
    photo = torch.empty_like(sketch)
    with FlopCounterMode(display=False) as counter:
        train.gan_step(G, D, opt_g, opt_d, scaler, sketch=sketch, photo=photo,
                       lambda_l1=cfg.lambda_l1, autocast=nullcontext())
    return float(counter.get_total_flops())


GRAPHS_RAN = {True: "replayed", False: "NOT replayed", None: "unknown (no CUDA calls profiled)"}
# reduce-overhead: CUDA graphs
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


def compile_choice(text: str) -> str:
    """--compile values: off, default, reduce-overhead, max-autotune (0/1 and false/true mean
    off/default)."""
    if text in COMPILE_MODES:
        return text
    try:
        return "default" if parse_bool(text) else "off"
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(COMPILE_MODES)}, "
                                         f"got {text!r}") from None


def step_config(text: str) -> tuple:
    """--config BATCH:PRECISION:CHANNELS_LAST:COMPILE, e.g. 4:fp32:0:off or 64:bf16:1:default."""
    try:
        batch, precision, channels_last, compile_mode = text.split(":")
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError
        return int(batch), precision, parse_bool(channels_last), compile_choice(compile_mode)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected BATCH:PRECISION:CHANNELS_LAST:COMPILE, "
                                         f"got {text!r}") from None


def allow_recompiles(n_configs: int) -> None:
    """Let dynamo keep one graph per configuration, and fail loudly instead of falling back to
    eager.

    G's and D's forward are one code object each whatever the configuration, so every (batch, dtype,
    layout) is a recompile of it; past the default limit of 8, torch silently runs eager from then
    on."""
    limit = max(8, 2 * n_configs)
    torch._dynamo.config.recompile_limit = limit
    torch._dynamo.config.accumulated_recompile_limit = max(256, 4 * limit)
    torch._dynamo.config.fail_on_recompile_limit_hit = True


def compile_static(module, mode: str = "default", backend: str = "inductor"):
    """torch.compile with static shapes: without dynamic=False, the second batch size seen would
    turn the batch dimension symbolic, and every configuration after it would time a dynamic-shape
    graph."""
    return torch.compile(module, dynamic=False, mode=mode, backend=backend)


class StepSetup:
    """One training configuration: its own nets, optimizers, scaler and random batch on the
    device."""

    def __init__(self, cfg: Config, device: torch.device, batch: int, precision: str,
                 channels_last: bool, compile_mode: str):
        self.batch, self.precision, self.channels_last = batch, precision, channels_last
        self.compile = compile_mode  # one of COMPILE_MODES
        self.device, self.lambda_l1 = device, cfg.lambda_l1
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        torch.manual_seed(cfg.seed)
        self.G, self.D, self.opt_g, self.opt_d = build_nets(cfg, device, memory_format)
        amp_dtype, self.autocast, self.scaler = train.mixed_precision(precision, device)
        self.amp_dtype = str(amp_dtype).removeprefix("torch.")
        shape = (batch, 3, cfg.image_size, cfg.image_size)
        self.sketch, self.photo = ((torch.rand(shape, device=device) * 2 - 1)
                                   .contiguous(memory_format=memory_format) for _ in range(2))
        self.G_step, self.D_step = self.G, self.D
        if compile_mode != "off":
            self.G_step, self.D_step = (compile_static(self.G, compile_mode),
                                        compile_static(self.D, compile_mode))
        self.losses: torch.Tensor | None = None
        self.peak_mem_mb = self.rss_delta_mb = None  # filled in after the warm-up
        self.skips = 0  # CUDA graphs inductor skipped while compiling it, counted after the warm-up

    def step(self) -> float:
        """One timed train.gan_step; returns its wall time in seconds."""
        sync(self.device)
        start = time.perf_counter()
        if self.compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # as train.py: a new step begins
        self.losses = train.gan_step(self.G_step, self.D_step, self.opt_g, self.opt_d, self.scaler,
                                     sketch=self.sketch, photo=self.photo,
                                     lambda_l1=self.lambda_l1, autocast=self.autocast)
        sync(self.device)
        return time.perf_counter() - start

    def name(self) -> str:
        return config_name(self.batch, self.amp_dtype, self.channels_last, self.compile)

    def cuda_graphs(self, skips: int) -> dict:
        """Whether a reduce-overhead step on CUDA really replays CUDA graphs: inductor's count of
        graphs it skipped (during this configuration's warm-up) and the graph launches among the
        CUDA calls of one profiled step. ran is None where the profiler saw no CUDA call at all."""
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=activities) as profiler:
            self.step()
        names = [event.name for event in profiler.events()]
        graphs = sum("GraphLaunch" in name for name in names)  # cudaGraphLaunch
        kernels = sum("LaunchKernel" in name for name in names)  # cudaLaunchKernel(ExC)
        ran = None if graphs + kernels == 0 else skips == 0 and graphs > 0
        return {"ran": ran, "skipped": skips, "graph_launches": graphs,
                "kernel_launches": kernels}


def config_name(batch: int, precision: str, channels_last: bool, compile_mode: str) -> str:
    return f"batch {batch} {precision} channels_last {int(channels_last)} compile {compile_mode}"


def eager_first(configs: list) -> list:
    """The configurations in their order, eager ones first: a compile (a minute or more at full
    size) that a time limit cuts short then loses the compiled rows alone."""
    return sorted(configs, key=lambda config: config[3] != "off")


def free_device_memory(device: torch.device) -> None:
    """Let go of a finished or failed configuration's tensors before the next one is built."""
    gc.collect()  # the frames of a caught out-of-memory error hold tensors in cycles
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_train(args) -> list:
    device = pick_device(args.device)
    num_downs = args.num_downs or default_num_downs(args.size)
    args.ndf = args.ndf or args.ngf
    cfg = Config(image_size=args.size, ngf=args.ngf, ndf=args.ndf, num_downs=num_downs,
                 device=str(device))
    if device.type == "cuda":
        # as train.py: fixed shapes, let cuDNN pick its kernels
        torch.backends.cudnn.benchmark = True
    flops_per_image = count_step_flops(cfg)
    print(f"device {device}, {args.size}×{args.size}, ngf {args.ngf}, ndf {args.ndf}, num_downs "
          f"{num_downs}: training step = {flops_per_image / 1e9:.2f} GFLOP/image (FlopCounterMode)",
          flush=True)
    configs = eager_first(args.config or list(itertools.product(
        args.batch, args.precision, args.channels_last, args.compile)))
    counters = {"inductor": {}}  # inductor's event counts, where a configuration compiles
    if any(config[3] != "off" for config in configs):  # dynamo takes seconds to load
        allow_recompiles(len(configs))
        from torch._dynamo.utils import counters
    base = {"mode": "train", "device": str(device), "size": args.size, "ngf": args.ngf,
            "ndf": args.ndf, "num_downs": num_downs}
    records: list = []

    def out_of_memory(config: tuple, error: torch.OutOfMemoryError) -> None:
        """An out-of-memory configuration is a record too; the next one goes on."""
        batch, precision, channels_last, compile_mode = config
        amp_dtype = str(train.mixed_precision(precision, device)[0]).removeprefix("torch.")
        message = str(error).strip().splitlines()[0][:300] if str(error).strip() else "OOM"
        record = {**base, "batch": batch, "precision": amp_dtype,
                  "channels_last": int(channels_last), "compile": compile_mode,
                  "img_per_s": None, "error": "out of memory", "message": message}
        emit(record, args.out, f"{config_name(batch, amp_dtype, channels_last, compile_mode)} | "
                               f"out of memory: {message}", records)

    def warm_up(config: tuple):
        """The configuration built and warmed up, its peak memory read: (setup, warm-up step
        times), or None where it ran out of memory (recorded)."""
        batch, precision, channels_last, compile_mode = config
        sync(device)
        allocated_before, rss_before = (torch.cuda.memory_allocated(device)
                                        if device.type == "cuda" else 0), rss_mb()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        skips = counters["inductor"].get("cudagraph_skips", 0)  # each graph inductor skips
        try:
            setup = StepSetup(cfg, device, batch, precision, bool(channels_last), compile_mode)
            times = [setup.step() for _ in range(args.warmup)]
        except torch.OutOfMemoryError as e:
            out_of_memory(config, e)
            return None
        if device.type == "cuda":
            setup.peak_mem_mb = (torch.cuda.max_memory_allocated(device) - allocated_before) / 2**20
        else:
            setup.rss_delta_mb = rss_mb() - rss_before
        setup.skips = counters["inductor"].get("cudagraph_skips", 0) - skips
        print(f"warmed up {setup.name()}: first step {times[0]:.2f} s", flush=True)
        return setup, times

    def report(setup: StepSetup, warm: list, timed: list) -> None:
        graphs = (setup.cuda_graphs(setup.skips)
                  if setup.compile == "reduce-overhead" and device.type == "cuda" else None)
        emit(step_record(setup, warm, timed, graphs, flops_per_image, args, base), args.out,
             records=records)

    if args.interleave:  # all in memory, their timed steps interleaved: a busy machine slows all
        warmed = [w for w in map(warm_up, configs) if w is not None]
        timed: dict = {id(setup): [] for setup, _ in warmed}
        for _ in range(args.repeats):
            for setup, _ in warmed:
                timed[id(setup)].append(setup.step())
        for setup, warm in warmed:
            report(setup, warm, timed[id(setup)])
    else:  # one at a time, each recorded as soon as it is measured and freed before the next
        for config in configs:
            warmed, error = warm_up(config), None
            if warmed is not None:
                try:
                    report(warmed[0], warmed[1], [warmed[0].step() for _ in range(args.repeats)])
                except torch.OutOfMemoryError as e:
                    error = e  # handled below, outside this frame's exception state
            if error is not None:
                out_of_memory(config, error)
            del warmed, error
            free_device_memory(device)
    # what train.py --precision auto does on this CPU, from these side-by-side figures
    if device.type == "cpu":
        measured = [r for r in records if "error" not in r]
        for batch in sorted({r["batch"] for r in measured}):
            ms = {r["precision"]: r["ms_per_step"] for r in measured if r["batch"] == batch
                  and r["compile"] == "off" and r["channels_last"] == measured[0]["channels_last"]}
            if {"float32", "bfloat16"} <= set(ms):
                faster = ms["bfloat16"] < (1 - MARGIN) * ms["float32"]
                pick = "bf16" if native_bf16() and faster else "fp32"
                print(f"batch {batch}: bf16 step {ms['bfloat16'] / ms['float32']:.2f}× of fp32 on "
                      f"{cpu_name()} (native bf16: {'yes' if native_bf16() else 'no'}): "
                      f"train.py --precision auto picks {pick}", flush=True)
    return records


def step_record(setup: StepSetup, warm: list, timed: list, graphs, flops_per_image: float, args,
                base: dict) -> dict:
    """One configuration's JSON record from its warm-up and timed step times; printed as a line."""
    step_s = statistics.median(timed)
    img_per_s = setup.batch / step_s
    achieved_tflops = flops_per_image * img_per_s / 1e12
    first = warm[0]
    record = {
        **base, "batch": setup.batch,
        "precision": setup.amp_dtype, "channels_last": int(setup.channels_last),
        "compile": setup.compile, "img_per_s": img_per_s, "ms_per_step": 1000 * step_s,
        "ms_per_step_min": 1000 * min(timed), "repeats": args.repeats,
        "warmup_s": sum(warm), "first_step_s": first,
        "compile_s": first - step_s if setup.compile != "off" else None,
        "peak_mem_mb": setup.peak_mem_mb, "rss_delta_mb": setup.rss_delta_mb,
        "gflop_per_image": flops_per_image / 1e9, "achieved_tflops": achieved_tflops,
        "peak_tflops": args.peak_tflops, "ceiling_share": achieved_tflops / args.peak_tflops,
        "epoch_min": EDGES2SHOES_TRAIN_IMAGES / img_per_s / 60,
        "losses": [round(v, 5) for v in setup.losses.tolist()] if setup.losses is not None
        else None,
        "cuda_graphs": graphs,  # reduce-overhead on CUDA: did graphs replay?
    }
    memory = (f"peak {setup.peak_mem_mb:.0f} MiB" if setup.peak_mem_mb is not None
              else f"RSS +{setup.rss_delta_mb:.0f} MiB")
    print(f"{setup.name()} | {img_per_s:.2f} img/s | {1000 * step_s:.1f} ms/step | {memory} | "
          f"{achieved_tflops:.3g} TFLOP/s = {100 * record['ceiling_share']:.3g}% of "
          f"{args.peak_tflops:g} | edges2shoes epoch {record['epoch_min']:.1f} min"
          + (f" | compile {record['compile_s']:.1f} s"
             if record["compile_s"] is not None else "")
          + (f" | CUDA graphs {GRAPHS_RAN[graphs['ran']]} ({graphs['graph_launches']} launches "
             f"in a step, {graphs['skipped']} skipped)" if graphs else ""), flush=True)
    return record


# ------------------------------------------------------------------------------------------- loader

def handed_over(loader, sampler: EpochSampler, device: torch.device):
    """Endless batches as train.py's loop receives them: uint8 on the device (train.py converts
    them to [-1, 1] there, one kernel on a GPU: part of the step, not timed here)."""
    while True:
        for sketch, photo in loader:
            yield sketch.to(device, non_blocking=True), photo.to(device, non_blocking=True)
        sampler.epoch += 1


def device_crop_batches(cache: PairCache, sampler: EpochSampler, batch: int,
                        device: torch.device):
    """The alternative train.py does not use, for the side-by-side measurement: whole load_size
    pairs copied to the device and cropped and mirrored there, by one vectorised gather."""
    size = cache.image_size
    steps = torch.arange(size, device=device)
    while True:
        keys = list(sampler)
        for k in range(0, len(keys) - batch + 1, batch):
            chunk = keys[k:k + batch]
            pixels = torch.from_numpy(np.take(cache.pixels, cache.slots[[key[0] for key in chunk]],
                                              axis=0))  # (B, 2, L, L, 3)
            if device.type == "cuda":
                pixels = pixels.pin_memory()
            pixels = pixels.to(device, non_blocking=True)
            crops = torch.tensor([key[1:] for key in chunk])  # (B, 3): x, y, flip
            if device.type == "cuda":  # from pageable memory the copy would wait for the GPU
                crops = crops.pin_memory()
            crops = crops.to(device, non_blocking=True)
            rows = crops[:, 1:2] + steps  # (B, S)
            cols = crops[:, 0:1] + torch.where(crops[:, 2:3].bool(), size - 1 - steps, steps)
            rows_of = torch.arange(len(chunk), device=device)[:, None, None]
            pairs = pixels.transpose(0, 1)[:, rows_of, rows[:, :, None], cols[:, None, :]]
            yield pairs[0].permute(0, 3, 1, 2), pairs[1].permute(0, 3, 1, 2)  # (B, 3, S, S)
        sampler.epoch += 1


def bench_loader(args) -> list:
    device = pick_device(args.device)
    # more workers than cores: said once
    warnings.filterwarnings("once", message="This DataLoader will create")
    cache_dir = Path(args.cache_dir or tempfile.mkdtemp(prefix="bench_cache_"))
    variants: list = []  # (name, jitter, function making the batches)
    builds: list = []
    try:
        for jitter in args.jitter:
            data = PairDataset(args.data, args.size, args.load_size, jitter=jitter, uint8=True)
            if len(data) < args.batch:
                raise SystemExit(f"bench.py: {args.data} has {len(data)} pairs, fewer than "
                                 f"--batch {args.batch}")
            sampler = EpochSampler(len(data), seed=0, crop_room=args.load_size - args.size
                                   if jitter else None)
            tag = ", jitter" if jitter else ""
            # train.py's loaders, made by train.make_loader: files through workers, and --cache
            for w in args.workers:
                variants.append((f"files, {w} workers{tag}", jitter, lambda w=w, d=data, s=sampler:
                                 handed_over(train.make_loader(d, s, args.batch, w, device), s,
                                             device)))
            if args.cache:
                cache = PairCache(data, cache_dir)
                builds.append(record_build(cache, data, jitter, args.out))
                variants.append((f"cache{tag}", jitter, lambda c=cache, d=data, s=sampler:
                                 handed_over(train.make_loader(d, s, args.batch, 0, device, c), s,
                                             device)))
                if jitter:  # the crop on the device instead of in the copy: measured, not used
                    variants.append(("cache, jitter, crop on the device (not used)", jitter,
                                     lambda c=cache, s=sampler:
                                     device_crop_batches(c, s, args.batch, device)))
        print(f"{len(data)} pairs in {args.data}, batch {args.batch}, {args.batches} batches per "
              f"pass, {args.rounds} interleaved rounds, device {device}; uint8 batches handed over "
              f"on the device, as train.py's loop receives them", flush=True)
        results = time_loaders(variants, args, device)
    finally:
        if not args.cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
    records = []
    for name, jitter, _ in variants:
        img_per_s = statistics.median(results[name]["img_per_s"])
        files = statistics.median(results[f"files, 2 workers{', jitter' if jitter else ''}"]
                                  ["img_per_s"]) if 2 in args.workers else None
        record = {"mode": "loader", "variant": name, "device": str(device), "size": args.size,
                  "batch": args.batch, "jitter": jitter, "img_per_s": img_per_s,
                  "img_per_s_runs": results[name]["img_per_s"],
                  "vs_files_2_workers": files and img_per_s / files,
                  "cpu_ms_per_img": statistics.median(results[name]["cpu_ms_per_img"]),
                  "first_batch_s": statistics.median(results[name]["first_batch_s"]),
                  "epoch_min": EDGES2SHOES_TRAIN_IMAGES / img_per_s / 60}
        ratio = f" (×{record['vs_files_2_workers']:.1f} vs files, 2 workers)" if files else ""
        emit(record, args.out, f"{name} | {img_per_s:.1f} img/s{ratio} | "
                               f"{record['cpu_ms_per_img']:.2f} CPU ms/img | first batch "
                               f"{record['first_batch_s']:.2f} s | edges2shoes epoch "
                               f"{record['epoch_min']:.1f} min", records)
    return builds + records


def record_build(cache: PairCache, data: PairDataset, jitter: bool, out) -> dict:
    """The cache's build time and size, and both scaled to the whole of edges2shoes."""
    scale = EDGES2SHOES_TRAIN_IMAGES / len(data)
    check_s = PairCache(data, cache.path.parent).verify_s  # what every later open costs
    record = {"mode": "loader", "variant": "cache build", "pairs": len(data), "jitter": jitter,
              "decoded_size": cache.size, "build_s": cache.build_s, "mib": cache.nbytes() / 2**20,
              "workers": usable_cpus(), "check_s": check_s,
              "edges2shoes_build_min": cache.build_s * scale / 60,
              "edges2shoes_check_s": check_s * scale,
              "edges2shoes_gib": cache.nbytes() * scale / 2**30}
    return emit(record, out, f"cache build | {len(data)} pairs at {cache.size}×{cache.size} | "
                             f"{record['build_s']:.1f} s with {record['workers']} processes | "
                             f"{record['mib']:.0f} MiB | checksums checked at open in "
                             f"{check_s:.2f} s | edges2shoes ({EDGES2SHOES_TRAIN_IMAGES:,} pairs): "
                             f"~{record['edges2shoes_build_min']:.0f} min, "
                             f"{record['edges2shoes_gib']:.1f} GiB, checked in "
                             f"~{record['edges2shoes_check_s']:.0f} s")


def cpu_s() -> float:
    """CPU seconds used so far by this process (all threads) and its live children, the loader's
    workers (read from Linux's /proc; elsewhere this process alone)."""
    total = time.process_time()
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:  # utime and stime, the 14th and 15th fields, after the command's ")"
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def time_loaders(variants: list, args, device: torch.device) -> dict:
    """{name: {img_per_s: [...], cpu_ms_per_img: [...], first_batch_s: [...]}}, the variants'
    passes interleaved. CPU time per image holds on a busy machine, where images/s follows the
    share of the cores each variant's processes get."""
    results = {name: {"img_per_s": [], "cpu_ms_per_img": [], "first_batch_s": []}
               for name, _, _ in variants}
    for _ in range(args.rounds):
        for name, _, make in variants:
            start = time.perf_counter()
            batches = make()
            next(batches)  # worker start-up and the first batch, timed apart
            sync(device)
            first = time.perf_counter() - start
            start, start_cpu = time.perf_counter(), cpu_s()
            for _, _ in zip(range(args.batches), batches):
                pass
            sync(device)
            images = args.batches * args.batch
            results[name]["img_per_s"].append(images / (time.perf_counter() - start))
            results[name]["cpu_ms_per_img"].append(1000 * (cpu_s() - start_cpu) / images)
            results[name]["first_batch_s"].append(first)
            batches.close()  # ends the DataLoader and its workers
    return results


# -------------------------------------------------------------------------------------------- infer

# OpenMP settings of the two processes that bench infer compares. "default" is torch's own, what a
# user's plain loop runs under: no variable set, so libgomp spins 300,000 times before it sleeps;
# "passive" is what infer.py sets for itself. libgomp reads them once, when torch loads it, so each
# needs a process of its own.
OMP_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
OMP_SETTINGS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}


def plain_reference(medians: dict, mode: str, batch: int, threads: int) -> tuple:
    """(seconds, policy) of the faster plain fp32 eager loop of this mode, batch and threads: a
    speedup is fair only against the best a user gets without the variant."""
    return min((medians[(omp, f"{mode} plain", batch, threads)], omp) for omp in OMP_SETTINGS)


def bench_generator(args) -> tuple:
    """(G, cfg) to time: the --checkpoint's, else a UNet of --size/--ngf with running statistics
    moved away from their initial (0, 1), as after training."""
    if args.checkpoint:
        return load_generator(args.checkpoint)
    num_downs = args.num_downs or default_num_downs(args.size)
    cfg = Config(image_size=args.size, ngf=args.ngf, num_downs=num_downs)
    torch.manual_seed(0)
    G = build_generator(cfg)
    with torch.no_grad():
        for norm in (m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
    return G, cfg


def infer_variants(args, omp: str, onnx_files: dict) -> dict:
    """(name, batch) -> function making the photos of one batch: plain fp32 eager translate() (the
    reference), tune.Tuner's pick for this machine (tuned here, in this process), and onnxruntime
    on the exported files; paper and eval mode, each batch size. The default-OpenMP process times
    plain alone."""
    G, cfg = bench_generator(args)
    size = cfg.image_size
    variants = {}
    for batch in args.batch:
        sketch = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
        sketch, seeds = sketch * 2 - 1, list(range(batch))
        for mode in ("paper", "eval"):
            paper = mode == "paper"
            variants[(f"{mode} plain", batch)] = (
                lambda s=sketch, p=paper, k=seeds: translate(G, s, paper=p, seeds=k))
            if omp != "passive":
                continue
            tuner = Tuner(G, paper=paper, tune=True, cache=args.tune_cache, log=None)
            tuner(sketch, seeds)  # tunes on this batch
            variants[(f"{mode} tuned: {tuner.setting.name()}", batch)] = (
                lambda s=sketch, t=tuner, k=seeds: t(s, k))
            if mode in onnx_files:
                runner = OnnxGenerator(onnx_files[mode])
                variants[(f"{mode} onnxruntime", batch)] = (
                    lambda s=sketch, r=runner, k=seeds: r(s, k))
    return variants


def infer_worker(conn, args, omp: str, onnx_files: dict) -> None:
    """Child process of bench infer: builds the variants, sends their keys, then times each one
    asked for until sent None."""
    threads = torch.get_num_threads()  # before a tuned runner sets its own
    variants = infer_variants(args, omp, onnx_files)
    conn.send((threads, list(variants), {key: os.environ.get(key) for key in OMP_KEYS}))
    while (request := conn.recv()) is not None:
        key, threads = request
        torch.set_num_threads(threads)
        start = time.perf_counter()
        variants[key]()
        conn.send((time.perf_counter() - start, threads))


def export_onnx_files(args, folder: Path) -> dict:
    """{mode: ONNX file} of the generator, exported with tools.export; {} without onnxruntime."""
    try:
        import onnxruntime  # noqa: F401
        from tools import export
        G, cfg = bench_generator(args)
        files = {}
        for mode in ("paper", "eval"):
            model, example, rates = export.example_inputs(G, mode == "paper", cfg.image_size)
            files[mode] = folder / f"{mode}.onnx"
            export.export_onnx(export.export_program(model, example), example, files[mode],
                               {"pix2pix_mode": mode, "pix2pix_config": json.dumps(cfg.to_dict()),
                                "pix2pix_dropout": json.dumps(rates)})
        return files
    except ImportError as e:
        print(f"bench.py: {e.name} is not installed: no onnxruntime variants", flush=True)
        return {}


def time_app(args, folder: Path) -> dict:
    """The sketch pad's POST /generate end to end (upload, preparation, generation, PNG), in ms:
    the median over --repeats requests of a drawn 256×256 canvas, the app tuned at start-up."""
    from tools import app
    G, cfg = bench_generator(args)
    checkpoint = args.checkpoint or folder / "generator.pt"
    if not args.checkpoint:
        atomic_save({"generator": G.state_dict(), "config": cfg.to_dict(), "step": 0},
                    checkpoint)
    canvas = Image.new("RGB", (app.CANVAS_SIZE, app.CANVAS_SIZE), "white")
    ImageDraw.Draw(canvas).ellipse((40, 80, 220, 190), outline="black", width=2)
    body = io.BytesIO()
    canvas.save(body, format="PNG")
    times, saved = {}, os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)  # tuned afresh, as for the other variants
    for mode in ("paper", "eval"):
        server = app.make_server(checkpoint, port=0, paper=mode == "paper", device="cpu",
                                 tune=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        host, port = server.server_address[:2]
        runs = []
        try:
            for _ in range(args.repeats + 1):
                connection = http.client.HTTPConnection(host, port, timeout=60)
                start = time.perf_counter()
                connection.request("POST", "/generate", body.getvalue(),
                                   {"Content-Type": "image/png"})
                reply = connection.getresponse()
                reply.read()
                runs.append(time.perf_counter() - start)
                connection.close()
                assert reply.status == 200, reply.status
        finally:
            server.shutdown()
            server.server_close()
        times[mode] = 1000 * statistics.median(runs[1:])
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME")
    else:
        os.environ["XDG_CACHE_HOME"] = saved
    return times


def bench_infer(args) -> list:
    """Every variant side by side, interleaved across variants and processes; medians."""
    folder = Path(tempfile.mkdtemp(prefix="pix2pix-bench-"))
    args.tune_cache = folder / "tune.json"  # a fresh tuning, not what an earlier run cached
    onnx_files = export_onnx_files(args, folder) if args.onnx else {}
    # a fresh interpreter, so that torch reads its OpenMP setting
    context = multiprocessing.get_context("spawn")
    workers, saved = {}, dict(os.environ)
    try:
        for omp, settings in OMP_SETTINGS.items():
            for key in OMP_KEYS:
                os.environ.pop(key, None)
            os.environ.update(settings)
            conn, child_conn = context.Pipe()
            process = context.Process(target=infer_worker, args=(child_conn, args, omp,
                                                                 onnx_files), daemon=True)
            process.start()
            # so that a crashed worker ends recv() with EOFError instead of a hang
            child_conn.close()
            workers[omp] = (process, conn)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    started = {omp: conn.recv() for omp, (_, conn) in workers.items()}
    threads = args.threads or [started["passive"][0]]
    keys = [(omp, name, batch, t) for omp in OMP_SETTINGS for name, batch in started[omp][1]
            for t in threads]
    omp_env = {omp: started[omp][2] for omp in OMP_SETTINGS}  # as each worker saw it

    def time_one(key) -> float:
        omp, name, batch, t = key
        workers[omp][1].send(((name, batch), t))
        return workers[omp][1].recv()[0] / batch  # seconds per image

    for key in keys:
        time_one(key)  # warm-up: oneDNN primitives, the allocator, the thread pool
    runs = {key: [] for key in keys}
    for _ in range(args.repeats):
        for key in keys:
            runs[key].append(time_one(key))
    for process, conn in workers.values():
        conn.send(None)
        process.join()

    G, cfg = bench_generator(args)
    print(f"CPU inference ({cpu_name()}), {cfg.image_size}×{cfg.image_size}, ngf {cfg.ngf}, "
          f"num_downs {cfg.num_downs}, {args.repeats} interleaved repeats, medians; OpenMP "
          f"'default' = torch's own policy (spin, then sleep), 'passive' = what infer.py sets; "
          f"ratios: the faster plain fp32 eager loop's time of the same mode over the variant's",
          flush=True)
    medians = {key: statistics.median(times) for key, times in runs.items()}
    records = []
    for (omp, name, batch, t), times in runs.items():
        ms = 1000 * medians[(omp, name, batch, t)]
        mode = name.split()[0]
        plain_s, _ = plain_reference(medians, mode, min(args.batch), t)
        same_s, same_omp = plain_reference(medians, mode, batch, t)
        record = {"mode": "infer", "variant": name, "omp_wait": omp, "omp_env": omp_env[omp],
                  "threads": t, "batch": batch, "size": cfg.image_size, "ngf": cfg.ngf,
                  "num_downs": cfg.num_downs, "ms_per_image": ms,
                  "ms_min": 1000 * min(times), "repeats": args.repeats,
                  "speedup_vs_plain": 1000 * plain_s / ms,
                  "speedup_vs_plain_same_batch": 1000 * same_s / ms,
                  "plain_reference_omp": same_omp, "cpu": cpu_name()}
        emit(record, args.out, f"OpenMP {omp:7s} | {name:42s} | batch {batch} | threads {t} | "
                               f"{ms:7.1f} ms/image (min {record['ms_min']:.1f}) | "
                               f"×{record['speedup_vs_plain']:.2f} vs the faster plain at batch "
                               f"{min(args.batch)}, ×{record['speedup_vs_plain_same_batch']:.2f} "
                               f"at batch {batch} (plain {same_omp})", records)
    if args.app:
        for mode, ms in time_app(args, folder).items():
            emit({"mode": "app", "variant": f"{mode} POST /generate", "ms": ms,
                  "size": cfg.image_size, "cpu": cpu_name()}, args.out,
                 f"sketch pad, {mode} mode: POST /generate end to end {ms:.0f} ms (median); a "
                 f"finished stroke waits the page's 300 ms debounce first", records)
    shutil.rmtree(folder, ignore_errors=True)
    return records


def cpu_name() -> str:
    """The CPU, as tune.py keys its cache: model and torch's ISA capability."""
    return machine_key().rsplit(" | torch", 1)[0]


# ------------------------------------------------------------------------------------------ prepare

def prepare_inputs(folder) -> dict:
    """name -> path of synthetic sketches as people bring them, from a demo shoe's edge map: small
    and 256² scans, a thick marker drawing small on 1024×768, a 12-megapixel phone photo of gray
    paper under uneven light, and a blank 4096² PNG (7 KB, 16 megapixels to decode)."""
    from PIL import Image, ImageFilter

    from tools.demo import draw_shoe
    from tools.edges import sketch_pixels
    folder = Path(folder)
    drawing = Image.fromarray(sketch_pixels(np.array(draw_shoe(np.random.default_rng(0),
                                                                 512))[None])[0]).convert("L")
    paths = {}

    def save(name, img, **options):
        paths[name] = folder / name
        img.save(paths[name], **options)

    save("sketch 32².png", drawing.resize((32, 32), Image.Resampling.LANCZOS))
    save("sketch 256².png", drawing.resize((256, 256), Image.Resampling.LANCZOS))
    marker = Image.new("L", (1024, 768), 255)
    marker.paste(drawing.filter(ImageFilter.MinFilter(9)).resize((300, 300)), (600, 100))
    save("marker 1024×768.png", marker)
    ink = Image.eval(drawing.resize((2800, 2800)), lambda v: 255 - v)  # 255 where the lines are
    light = Image.linear_gradient("L").resize((4032, 3024)).point(lambda v: 200 - v // 4)
    photo = Image.merge("RGB", [light.point(lambda v, k=k: v - 5 * k) for k in range(3)])
    photo.paste((40, 40, 40), (600, 100), mask=ink)
    save("photo 4032×3024.jpg", photo.filter(ImageFilter.GaussianBlur(1)), quality=85)
    save("blank 4096².png", Image.new("L", (4096, 4096), 255))
    return paths


def bench_prepare(args) -> list:
    """sketch.prepare_sketch per input (wall and CPU ms, medians of interleaved repeats), beside one
    generator call on one image at the model size, eval and paper mode."""
    import tempfile

    from sketch import prepare_sketch
    if args.threads:
        torch.set_num_threads(args.threads)
    G, cfg = bench_generator(args)
    size, num_downs = cfg.image_size, cfg.num_downs
    sketch = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    fast_eval = for_inference(G, paper=False)
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as folder:
        jobs: dict = {f"prepare {name}": (lambda path=path: prepare_sketch(path, size))
                      for name, path in prepare_inputs(folder).items()}
        jobs["generator eval"] = lambda: translate(fast_eval, sketch, paper=False)
        jobs["generator paper"] = lambda: translate(G, sketch, paper=True, seeds=[0])
        for job in jobs.values():
            job()  # warm-up
        runs = {name: ([], []) for name in jobs}
        for _ in range(args.repeats):
            for name, job in jobs.items():
                start, cpu = time.perf_counter(), time.process_time()
                job()
                runs[name][0].append(time.perf_counter() - start)
                runs[name][1].append(time.process_time() - cpu)
    print(f"sketch preparation at {size}×{size} beside the generator (ngf {cfg.ngf}, "
          f"num_downs {num_downs}), {torch.get_num_threads()} threads, {args.repeats} interleaved "
          "repeats; CPU ms count every thread's time", flush=True)
    records = []
    for name, (wall, cpu) in runs.items():
        record = {"mode": "prepare", "job": name, "size": size,
                  "threads": torch.get_num_threads(), "ms": 1000 * statistics.median(wall),
                  "cpu_ms": 1000 * statistics.median(cpu), "repeats": args.repeats}
        emit(record, args.out, f"{name:28s} | {record['ms']:8.1f} ms (median wall) | "
                               f"{record['cpu_ms']:8.1f} ms CPU", records)
    return records


def main(args) -> list:
    """Run the benchmark args.mode names; returns its JSON records."""
    return {"train": bench_train, "loader": bench_loader, "infer": bench_infer,
            "prepare": bench_prepare}[args.mode](args)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    t, d, i, r = (modes.add_parser(mode, help=text,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
                  for mode, text in (("train", "time the full training step (train.gan_step)"),
                                     ("loader", "time the input pipeline alone"),
                                     ("infer", "CPU ms/image: plain vs fast inference"),
                                     ("prepare", "ms of sketch.prepare_sketch per kind of input, "
                                                 "beside the generator's")))
    t.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16], help="images per step")
    t.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                   choices=["auto", "fp32", "bf16", "fp16"])
    t.add_argument("--channels_last", type=parse_bool, nargs="+", default=[True],
                   help="NHWC tensors")
    t.add_argument("--compile", type=compile_choice, nargs="+", default=["off"],
                   help=f"torch.compile G and D, static shapes: {', '.join(COMPILE_MODES)}")
    t.add_argument("--config", type=step_config, nargs="+", default=None,
                   help="explicit configurations BATCH:PRECISION:CHANNELS_LAST:COMPILE "
                        "instead of every combination of the four flags above, e.g. 1:fp32:0:off "
                        "64:bf16:1:default")
    t.add_argument("--repeats", type=int, default=20,
                   help="timed steps per configuration (median reported)")
    t.add_argument("--warmup", type=int, default=5,
                   help="untimed steps first (compilation happens here)")
    t.add_argument("--ndf", type=int, default=None,
                   help="discriminator filters in the first layer (default: --ngf)")
    t.add_argument("--peak_tflops", type=float, default=800.0,
                   help="the device's dense bf16 peak (H100: ~800)")
    t.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=True,
                   help="keep every configuration in memory and interleave their timed steps (a "
                        "busy machine slows them alike); --no-interleave: one at a time, each "
                        "written as soon as it is measured and freed before the next")
    d.add_argument("--data", required=True,
                   help="folder of side-by-side pairs (e.g. data/edges2shoes/train)")
    d.add_argument("--batch", type=int, default=16, help="images per batch")
    d.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                   help="DataLoader worker processes of the file loader")
    d.add_argument("--batches", type=int, default=50, help="timed batches per pass")
    d.add_argument("--rounds", type=int, default=3,
                   help="interleaved passes over all variants (median reported)")
    d.add_argument("--jitter", type=parse_bool, nargs="+", default=[False],
                   help="the paper's random resize, crop and flip: false, true or both")
    d.add_argument("--load_size", type=int, default=286, help="resize before the jitter's crop")
    d.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="also time train.py --cache's path (the cache is built first, timed)")
    d.add_argument("--cache_dir", default=None,
                   help="keep the cache here (default: a temporary folder, deleted after)")
    i.add_argument("--threads", type=int, nargs="+", default=None,
                   help="torch threads (default: torch's own)")
    i.add_argument("--repeats", type=int, default=30,
                   help="timed batches per variant (median reported)")
    i.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="images per batch")
    i.add_argument("--checkpoint", help="time this generator (default: a random UNet of --size, "
                                        "--ngf, --num_downs)")
    i.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True,
                   help="also export the generator and time it under onnxruntime")
    i.add_argument("--app", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the sketch pad's POST /generate end to end")
    r.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    r.add_argument("--repeats", type=int, default=15,
                   help="timed runs per input (median reported)")
    r.add_argument("--checkpoint", help="time this generator beside (default: a random UNet of "
                                        "--size, --ngf, --num_downs)")
    for p in (t, d, i, r):
        p.add_argument("--size", type=int, default=256, help="image side in pixels")
        p.add_argument("--out", help="append the JSON lines to this file")
    for p in (t, d):
        add_device_flag(p)
    for p in (t, i, r):
        p.add_argument("--ngf", type=int, default=64, help="generator filters in the first layer")
        p.add_argument("--num_downs", type=int, default=None,
                       help="UNet depth (default: down to 1×1)")
    args = parser.parse_args(argv)
    if min(getattr(args, name, 1) for name in ("repeats", "warmup", "batches", "rounds")) < 1:
        parser.error("--repeats, --warmup, --batches and --rounds must be at least 1")
    return args


if __name__ == "__main__":
    main(parse_args())
