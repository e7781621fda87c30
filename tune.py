"""Run the generator the fastest correct way the machine at hand allows, as cuDNN's benchmark mode
picks convolution kernels.

    from tune import Tuner
    tuner = Tuner(generator, paper=True, device=device, precision="auto", n_images=len(files))
    fake_photos = tuner(sketches, seeds)  # (B, 3, H, W) float32, what translate() makes

On the first batch it sees, a Tuner looks the machine and model up in the cache; on a miss, and when
the job is big enough to pay for it, it times the candidate settings on that very batch (CPU only):
    precision       fp32; on a CPU with native bf16 (AVX512_BF16 or AMX on x86, the bf16 extension
                    on Arm) also bf16 autocast and bf16 weights. Without it bf16 is emulated and
                    was measured 8-13× slower: never a candidate
    layout          contiguous (NCHW) or channels_last (NHWC)
    batch norm      eval mode: always folded into the convs (generator.fold_batchnorm)
    threads         torch's default, and 1 and half as many, for the winner of the above (fewer
                    threads must be THREADS_MARGIN, 15%, faster)
It keeps the fastest whose output stays within BF16_BOUND_DB of the plain fp32 output of the same
batch (paper mode: the same seeds, so the same dropout masks), and a challenger must beat plain fp32
by MARGIN in both its median and its best time, so that a loaded machine's noise does not make it
slower. The winner is cached per machine (CPU model, ISA capability, core count, torch version)
and per model shape, mode and batch shape in ~/.cache/pix2pix/tune.json ($XDG_CACHE_HOME
respected), and kept.
Not tuned, and why:
    OpenMP wait policy  libgomp reads OMP_WAIT_POLICY once, when torch loads it; there is no call to
                        change it afterwards, so trying both would mean restarting the process.
                        infer.py, the app and tools.evaluate set PASSIVE before importing torch
                        (bench infer measures both, in two processes)
    torch.compile       ~80 s to compile the generator on a 2-core CPU and no faster than eager
                        there (tools.bench infer); it cannot pay back within a normal run
"""

import contextlib
import copy
import hashlib
import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn

from generator import fold_batchnorm, paper_mode
from save import psnr

# A setting may change the output by at most this much: the PSNR (dB, [0, 1] scale) of its photos
# against plain fp32's, worst image of the tuning batch. On the small CPU recipe model and 100 real
# val pairs bf16 measured >= 48.6 dB (eval mode) and >= 56.1 dB (paper mode), changing L1, SSIM
# and edge F1 by at most 0.0015, 0.0034 and 0.0005 (README); fp32 reorderings stay above 90 dB.
BF16_BOUND_DB = 45.0
MARGIN = 0.03  # a setting must be 3% faster than plain fp32 to replace it
# fewer threads than torch's default must be 15% faster: it wins only while other work holds the
# cores, and a moment's load on a shared machine must not be cached for good (bench infer)
THREADS_MARGIN = 0.15
BUDGET_S = 3.0  # timed rounds stop once tuning has taken this long (after at least two)
MAX_ROUNDS = 5  # timed runs per candidate at most (the median and the best are compared)
PRECISIONS = ("auto", "fp32", "bf16")
clock = time.perf_counter  # tests swap in a fake clock
CPUINFO = Path("/proc/cpuinfo")  # Linux's; elsewhere missing (macOS), and the Arm check says no


@dataclass(frozen=True)
class Setting:
    """One way to run the generator: precision fp32, bf16 (autocast) or bf16w (bf16 weights)."""

    precision: str = "fp32"
    channels_last: bool = False
    threads: int = 0  # 0: leave torch's thread count as it is

    def with_threads(self, threads: int) -> "Setting":
        return Setting(self.precision, self.channels_last, threads)

    def name(self) -> str:
        layout = "channels_last" if self.channels_last else "contiguous"
        return f"{self.precision} {layout}" + (f" {self.threads} threads" if self.threads else "")


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (else oneDNN emulates it, many times slower)."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        try:
            return " bf16" in CPUINFO.read_text()
        except OSError:
            return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def machine_key() -> str:
    """The CPU model, its ISA capability as torch sees it, the core count and torch's version."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("vendor_id", "model name", "cpu family", "model", "CPU part"):
                fields.setdefault(key.strip(), value.strip())
    cpu = " ".join(fields.values()) or platform.processor() or platform.machine()
    return (f"{cpu} | {torch.backends.cpu.get_cpu_capability()} | {os.cpu_count()} cores | "
            f"torch {torch.__version__}")


def model_key(generator: nn.Module, paper: bool, shape, precision: str) -> str:
    """The model's architecture (its class and every tensor's shape), mode, batch shape and the
    precision asked for."""
    shapes = [(name, tuple(t.shape)) for name, t in generator.state_dict().items()]
    digest = hashlib.sha1(repr((type(generator).__name__, shapes)).encode()).hexdigest()[:12]
    return (f"{type(generator).__name__} {digest} | {'paper' if paper else 'eval'} | "
            f"{'x'.join(map(str, shape))} | precision {precision} | bound {BF16_BOUND_DB:g} dB")


def cache_path() -> Path:
    """~/.cache/pix2pix/tune.json, or under $XDG_CACHE_HOME."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "pix2pix" / "tune.json"


def read_cache(path: Path) -> dict:
    """The cache's entries; an unreadable file counts as empty (it is only a cache)."""
    try:
        entries = json.loads(path.read_text())
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return {}


def write_cache(path: Path, key: str, entry: dict) -> bool:
    """Add one entry, atomically (another process may be reading); False if it cannot be written."""
    entries = read_cache(path)
    entries[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:  # a read-only home: tune again next time
        return False
    return True


def candidates(precision: str, bf16_native: bool, threads: int) -> list:
    """Precision × layout settings to time first (other thread counts come after), plain fp32
    first when it is one."""
    precisions = {"fp32": ["fp32"], "bf16": ["bf16", "bf16w"],
                  "auto": ["fp32", "bf16", "bf16w"] if bf16_native else ["fp32"]}[precision]
    return [Setting(p, layout, threads) for p in precisions for layout in (False, True)]


def thread_counts(default: int) -> list:
    """Thread counts to try beside torch's default: 1 and half of it."""
    return sorted({n for n in (default // 2, 1) if 0 < n < default})


def choose(times: dict, quality: dict, baseline=None, bound: float = BF16_BOUND_DB,
           margin: float = MARGIN) -> Setting:
    """The fastest setting by median time among those whose output is within bound (dB PSNR
    against plain fp32); the baseline unless the winner beats it by margin in both its median and
    its best time (a loaded machine's noise must not pick a slower setting); None if none is within
    bound."""
    within = [s for s in times if quality[s] >= bound]
    if not within:
        return None
    best = min(within, key=lambda s: statistics.median(times[s]))
    if baseline in within and not all(
            stat(times[best]) < (1 - margin) * stat(times[baseline])
            for stat in (statistics.median, min)):
        return baseline
    return best


class Runner:
    """The generator prepared for one setting; runner(sketch, seeds) -> photos (B, 3, H, W) float32
    in contiguous layout."""

    def __init__(self, generator: nn.Module, paper: bool, setting: Setting, device):
        self.paper, self.setting, self.device = paper, setting, torch.device(device)
        changes_weights = setting.channels_last or setting.precision == "bf16w"
        if paper:  # paper_mode shares G's weights: a copy before changing their layout or dtype
            model = paper_mode(copy.deepcopy(generator) if changes_weights else generator)
        else:
            model = fold_batchnorm(generator)
        model = model.to(self.device)
        if setting.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if setting.precision == "bf16w":
            model = model.to(torch.bfloat16)
        self.model = model

    def with_setting(self, setting: Setting) -> "Runner":
        """The same prepared model under another thread count."""
        runner = copy.copy(self)
        runner.setting = setting
        return runner

    def __call__(self, sketch: torch.Tensor, seeds) -> torch.Tensor:
        setting = self.setting
        if setting.threads:
            torch.set_num_threads(setting.threads)
        x = sketch.to(self.device)
        if setting.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if setting.precision == "bf16w":
            x = x.to(torch.bfloat16)
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                    if setting.precision == "bf16" else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            out = self.model(x, seeds=seeds) if self.paper else self.model(x)
        return out.float().contiguous()


class Tuner:
    """Makes photos with the setting tuned for this machine, model and batch shape (see the module
    docstring); tuner.setting and tuner.report say what was picked and how."""

    def __init__(self, generator: nn.Module, paper: bool = True, device="cpu",
                 precision: str = "auto", n_images=None, tune=None, tune_threads: bool = True,
                 cache=None, log=print):
        assert precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {precision!r}"
        self.generator, self.paper, self.device = generator, paper, torch.device(device)
        self.precision, self.n_images, self.tune = precision, n_images, tune
        self.tune_threads = tune_threads  # False when the user fixed the thread count
        self.cache = Path(cache) if cache else cache_path()
        self.log = log or (lambda line: None)
        self.runner: Runner | None = None
        self.setting: Setting | None = None
        self.report = {}

    def __call__(self, sketch: torch.Tensor, seeds) -> torch.Tensor:
        if self.runner is None:
            self.runner = self.prepare(sketch, seeds)
        return self.runner(sketch, seeds)

    def default(self) -> Setting:
        """Untuned: fp32 (bf16 autocast if asked), contiguous in paper mode, channels_last in eval
        mode (folded: ~5% faster on a 2-core CPU, bench.py infer)."""
        return Setting("bf16" if self.precision == "bf16" else "fp32", not self.paper)

    def prepare(self, sketch: torch.Tensor, seeds) -> Runner:
        """The runner for this batch's shape: cached, tuned now, or the default."""
        if self.device.type != "cpu":  # GPU tuning is unmeasured: cuDNN benchmark does the convs
            return self.chosen(self.default(), "not a CPU", say=False)
        key = (f"{machine_key()} || "
               f"{model_key(self.generator, self.paper, sketch.shape, self.precision)}"
               + ("" if self.tune_threads else f" | {torch.get_num_threads()} threads"))
        entry = read_cache(self.cache).get(key)
        if self.tune is False:
            return self.chosen(self.default(), "--no-tune", say=False)
        if entry and self.tune is None:
            return self.chosen(Setting(**entry["setting"]), f"cached in {self.cache}")
        batches = math.ceil(self.n_images / len(sketch)) if self.n_images else math.inf
        # two runs per candidate at least: tuning at most doubles this run; the cache serves later
        # ones
        needed = 2 * (len(candidates(self.precision, native_bf16(), 0)) + 2)
        if self.tune is None and batches < needed:
            return self.chosen(self.default(), f"job of {batches} batches, under the {needed} "
                                               "tuning would take", say=False)
        setting, self.report = self.measure(sketch, seeds)
        cached = write_cache(self.cache, key, {"setting": asdict(setting), **self.report,
                                               "tuned": time.strftime("%Y-%m-%d %H:%M:%S")})
        return self.chosen(setting, f"tuned in {self.report['tuning_s']:.1f} s, "
                           + (f"cached in {self.cache}" if cached else
                              f"not cached: {self.cache} cannot be written"))

    def chosen(self, setting: Setting, why: str, say: bool = True) -> Runner:
        self.setting, self.why = setting, why
        if say:
            self.log(f"tune: {setting.name()} ({why})")
        return Runner(self.generator, self.paper, setting, self.device)

    def measure(self, sketch: torch.Tensor, seeds) -> tuple:
        """(winner, report): time the candidates on this batch, interleaved, within BUDGET_S."""
        start, threads = clock(), torch.get_num_threads()
        plain = Setting("fp32", False, threads)
        runners = {plain: Runner(self.generator, self.paper, plain, self.device)}
        reference = runners[plain](sketch, seeds)  # also the warm-up
        settings = candidates(self.precision, native_bf16(), threads)
        # an explicit --precision bf16 is the user's call: bf16 even beyond the bound (with a
        # warning)
        bound = -math.inf if self.precision == "bf16" else BF16_BOUND_DB
        try:
            quality = {}
            for setting in settings:  # build and warm up (oneDNN makes its primitives here)
                runners.setdefault(setting, Runner(self.generator, self.paper, setting,
                                                   self.device))
                quality[setting] = psnr(runners[setting](sketch, seeds), reference).min().item()
            times = timed_rounds({s: partial(runners[s], sketch, seeds) for s in settings}, start)
            best = choose(times, quality, plain, bound)
            # then the thread count, for the winner alone
            if self.tune_threads:
                others = [best.with_threads(n) for n in thread_counts(threads)]
                for setting in others:
                    runners[setting] = runners[best].with_setting(setting)
                    runners[setting](sketch, seeds)
                    quality[setting] = quality[best]
                more = timed_rounds({s: partial(runners[s], sketch, seeds)
                                     for s in [best, *others]}, clock(), min_rounds=3)
                for setting, runs in more.items():
                    times[setting] = times.get(setting, []) + runs
                best = choose({s: times[s] for s in [best, *others]}, quality, best, bound,
                              THREADS_MARGIN)
        finally:
            torch.set_num_threads(threads)
        if quality[best] < BF16_BOUND_DB:
            self.log(f"tune: warning: {best.name()} changes the output by "
                     f"{quality[best]:.1f} dB PSNR, beyond the {BF16_BOUND_DB:g} dB bound")
        report = {"ms_per_image": {s.name(): 1000 * statistics.median(t) / len(sketch)
                                   for s, t in times.items()},
                  "psnr_vs_fp32_db": {s.name(): round(q, 2) for s, q in quality.items()},
                  "tuning_s": clock() - start}
        return best, report


def timed_rounds(jobs: dict, start: float, min_rounds: int = 2, max_rounds: int = None) -> dict:
    """{key: [seconds]}: one timed call of each job a round, interleaved so that a busy machine
    slows them alike, until BUDGET_S has passed since start; min_rounds at least, max_rounds
    (MAX_ROUNDS) at most."""
    times = {key: [] for key in jobs}
    for round_ in range(MAX_ROUNDS if max_rounds is None else max_rounds):
        if round_ >= min_rounds and clock() - start > BUDGET_S:
            break
        for key, job in jobs.items():
            began = clock()
            job()
            times[key].append(clock() - began)
    return times


def training_precision(make_step, native=None, rounds: int = 3) -> str:
    """train.py --precision auto on a CPU: "bf16" where the CPU has native bf16 and a training step
    under bf16 autocast beats fp32 by MARGIN (median of rounds interleaved steps, after one warm-up
    each), else "fp32" without timing anything. make_step(precision) -> a function doing one
    step."""
    if not (native_bf16() if native is None else native):
        return "fp32"
    steps = {precision: make_step(precision) for precision in ("fp32", "bf16")}
    for step in steps.values():
        step()  # warm-up: oneDNN builds its primitives
    times = timed_rounds(steps, clock(), min_rounds=rounds, max_rounds=rounds)
    faster = statistics.median(times["bf16"]) < (1 - MARGIN) * statistics.median(times["fp32"])
    return "bf16" if faster else "fp32"
