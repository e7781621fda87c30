"""tune.py: candidates by CPU capability, the choice within the bf16 bound, the cache, tiny jobs,
the --precision override; with mocked capability and timings on a tiny generator."""

import json

import pytest
import torch

import tune
from generator import UNetGenerator, translate
from tune import Setting, Tuner, candidates, choose

# fake seconds per run of each (precision, channels_last) at torch's default of 2 threads
COSTS = {("fp32", False): 1.0, ("fp32", True): 0.9, ("bf16", False): 0.5, ("bf16", True): 0.45,
         ("bf16w", False): 0.4, ("bf16w", True): 0.3}


@pytest.fixture
def fake_machine(monkeypatch):
    """A CPU with native bf16 (mocked) on which each setting takes COSTS seconds on a fake clock;
    returns the list of settings run, in order."""
    now, ran = [0.0], []
    real_call = tune.Runner.__call__

    def call(runner, sketch, seeds):
        setting = runner.setting
        ran.append(setting)
        # one thread: 10% faster, under THREADS_MARGIN
        now[0] += COSTS[(setting.precision, setting.channels_last)] * (
            1.0 if setting.threads in (0, 2) else 0.9)
        return real_call(runner, sketch, seeds)

    monkeypatch.setattr(tune.Runner, "__call__", call)
    monkeypatch.setattr(tune, "clock", lambda: now[0])
    monkeypatch.setattr(tune, "native_bf16", lambda: True)
    threads = [2]  # torch's default, as on a 2-core machine; the work itself runs on one thread
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads[0])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: threads.__setitem__(0, n))
    return ran


def tiny():
    torch.manual_seed(0)
    return UNetGenerator(ngf=4, num_downs=5)


def test_bf16_is_a_candidate_only_where_the_cpu_has_it_natively():
    assert {s.precision for s in candidates("auto", False, 2)} == {"fp32"}
    assert {s.precision for s in candidates("auto", True, 2)} == {"fp32", "bf16", "bf16w"}
    assert {s.precision for s in candidates("fp32", True, 2)} == {"fp32"}  # --precision fp32
    assert {s.precision for s in candidates("bf16", False, 2)} == {"bf16", "bf16w"}
    assert candidates("auto", True, 2)[0] == Setting("fp32", False, 2)  # plain first
    assert {s.channels_last for s in candidates("fp32", False, 2)} == {False, True}


def test_choose_takes_the_fastest_within_the_bound_and_keeps_plain_unless_clearly_faster():
    plain, nhwc, bf16, bf16w = (Setting("fp32"), Setting("fp32", True), Setting("bf16"),
                                Setting("bf16w"))
    times = {plain: [1.0, 1.1], nhwc: [0.9, 0.9], bf16: [0.5, 0.6], bf16w: [0.3, 0.3]}
    quality = {plain: 100.0, nhwc: 100.0, bf16: 45.0, bf16w: 35.0}  # bf16w beyond 40 dB
    assert choose(times, quality, plain) == bf16
    assert choose(times, {**quality, bf16: 39.9}, plain) == nhwc
    # 2% faster is within the noise: plain stays
    assert choose({plain: [1.0], nhwc: [0.98]}, quality, plain) == plain
    # faster by its median but not by its best time (plain once ran at 0.5): plain stays
    assert choose({plain: [1.0, 1.0, 0.5], nhwc: [0.9, 0.9, 0.9]}, quality, plain) == plain
    assert choose({plain: [1.0, 1.0, 0.95], nhwc: [0.9, 0.9, 0.9]}, quality, plain) == nhwc
    assert choose({bf16w: [0.3]}, quality, None) is None  # nothing within the bound
    # fewer threads need 15%: a moment's load must not be cached for good
    one_thread = Setting("fp32", True, 1)
    times = {nhwc: [1.0, 1.0, 1.0], one_thread: [0.9, 0.88, 0.9]}
    assert choose(times, {**quality, one_thread: 100.0}, nhwc, margin=tune.THREADS_MARGIN) == nhwc
    assert choose(times, {**quality, one_thread: 100.0}, nhwc) == one_thread


def test_tuner_picks_bf16_only_within_the_bound_and_caches_it(fake_machine, tune_cache,
                                                              monkeypatch):
    G, sketch, seeds = tiny(), torch.rand(2, 3, 32, 32) * 2 - 1, [1, 2]
    tuner = Tuner(G, paper=True, n_images=1000, log=None)
    made = tuner(sketch, seeds)
    report = tuner.report
    # the fastest within the bound (the emulated bf16 of a tiny net stays near fp32), at 2 threads:
    # 1 thread, 10% faster, is under THREADS_MARGIN
    best_ok = min((s for s in report["psnr_vs_fp32_db"] if s.endswith(" 2 threads")
                   and report["psnr_vs_fp32_db"][s] >= tune.BF16_BOUND_DB),
                  key=lambda s: report["ms_per_image"][s])
    assert report["ms_per_image"][best_ok.replace(" 2 threads", " 1 threads")] < \
        report["ms_per_image"][best_ok]
    assert tuner.setting.name() == best_ok and tuner.setting.precision != "fp32"
    torch.testing.assert_close(made, translate(G, sketch, seeds=seeds), atol=0.05, rtol=0)
    entry = next(iter(json.loads(tune_cache.read_text()).values()))
    assert entry["setting"] == {"precision": tuner.setting.precision,
                                "channels_last": tuner.setting.channels_last, "threads": 2}
    # a bound no bf16 output meets: fp32, the fastest layout
    monkeypatch.setattr(tune, "BF16_BOUND_DB", 99.0)
    strict = Tuner(G, paper=True, n_images=1000, tune=True, log=None)
    strict(sketch, seeds)
    assert strict.setting == Setting("fp32", True, 2)
    # cached: the next run times nothing
    fake_machine.clear()
    again = Tuner(G, paper=True, n_images=1000, log=None)
    again(sketch, seeds)
    assert again.setting == strict.setting and fake_machine == [strict.setting]


def test_a_job_of_as_many_batches_as_tuning_takes_is_tuned(fake_machine, tune_cache):
    G, sketch = tiny(), torch.rand(2, 3, 32, 32) * 2 - 1
    needed = 2 * (len(candidates("auto", True, 0)) + 2)  # runs: 2 per candidate and thread count
    short = Tuner(G, paper=False, n_images=2 * needed - 2, log=None)  # one batch fewer
    short(sketch, [0, 0])
    assert short.why.startswith(f"job of {needed - 1} batches") and not tune_cache.exists()
    enough = Tuner(G, paper=False, n_images=2 * needed - 1, log=None)  # the last batch of 1
    enough(sketch, [0, 0])
    assert enough.why.startswith("tuned") and tune_cache.exists()


def test_tiny_jobs_are_not_tuned_and_fp32_overrides(fake_machine, tune_cache):
    G, sketch = tiny(), torch.rand(2, 3, 32, 32) * 2 - 1
    tuner = Tuner(G, paper=False, n_images=4, log=None)  # 2 batches: tuning would cost more
    tuner(sketch, [0, 0])
    assert tuner.setting == Setting("fp32", True) and not tune_cache.exists()
    assert fake_machine == [tuner.setting]
    fp32 = Tuner(G, paper=False, precision="fp32", tune=True, log=None)
    fp32(sketch, [0, 0])
    assert {s.precision for s in fake_machine} == {"fp32"}
    assert fp32.setting.precision == "fp32"


def test_explicit_bf16_is_kept_beyond_the_bound_with_a_warning(fake_machine, monkeypatch):
    monkeypatch.setattr(tune, "BF16_BOUND_DB", 99.0)
    said = []
    tuner = Tuner(tiny(), paper=True, precision="bf16", tune=True, log=said.append)
    tuner(torch.rand(1, 3, 32, 32) * 2 - 1, [0])
    assert tuner.setting.precision in ("bf16", "bf16w")
    assert any("beyond the 99 dB bound" in line for line in said)


@pytest.mark.parametrize("paper", [True, False])
def test_every_fp32_setting_makes_the_photos_translate_makes(paper):
    G, sketch, seeds = tiny(), torch.rand(3, 3, 32, 32) * 2 - 1, [4, 5, 6]
    expected = translate(G, sketch, paper=paper, seeds=seeds)
    for setting in candidates("fp32", False, 1):
        made = tune.Runner(G, paper, setting, "cpu")(sketch, seeds)
        assert made.is_contiguous()
        torch.testing.assert_close(made, expected, atol=1e-5, rtol=0)


# ------------------------------------------------------------------ train.py --precision auto, CPU

def fake_steps(seconds: dict, now: list):
    """make_step for training_precision: each step advances the fake clock by seconds[precision]."""
    made = []

    def make_step(precision):
        made.append(precision)

        def step():
            now[0] += seconds[precision]
        return step
    return make_step, made


def test_timed_rounds_are_interleaved_at_least_min_rounds_then_within_the_budget(monkeypatch):
    now, ran = [0.0], []
    monkeypatch.setattr(tune, "clock", lambda: now[0])

    def job(name, seconds):
        return lambda: ran.append(name) or now.__setitem__(0, now[0] + seconds)
    # the budget (3 s) is spent in the first round, yet two run
    assert tune.timed_rounds({"a": job("a", 2.0), "b": job("b", 2.0)}, 0.0) == {
        "a": [2.0, 2.0], "b": [2.0, 2.0]}
    assert ran == ["a", "b", "a", "b"]
    assert len(tune.timed_rounds({"a": job("a", 0.0)}, now[0])["a"]) == tune.MAX_ROUNDS


def test_training_picks_bf16_only_where_native_and_measured_faster(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(tune, "clock", lambda: now[0])
    make_step, made = fake_steps({"fp32": 1.0, "bf16": 0.6}, now)
    assert tune.training_precision(make_step, native=False) == "fp32" and made == []  # no timing
    assert tune.training_precision(make_step, native=True) == "bf16"
    slower, _ = fake_steps({"fp32": 1.0, "bf16": 8.0}, now)  # emulated bf16: 8× slower
    assert tune.training_precision(slower, native=True) == "fp32"
    close, _ = fake_steps({"fp32": 1.0, "bf16": 0.99}, now)  # within the noise
    assert tune.training_precision(close, native=True) == "fp32"


def test_train_main_asks_for_the_cpu_precision_and_uses_it(tmp_path, pairs_dir, monkeypatch):
    import train
    from conftest import tiny_config
    asked = []

    def choose(make_step):
        step = make_step("bf16")  # a real step function of this config: it trains
        asked.append(step())
        return "bf16"

    monkeypatch.setattr(train, "training_precision", choose)
    used = []
    real = train.mixed_precision
    monkeypatch.setattr(train, "mixed_precision", lambda p, d: used.append(p) or real(p, d))
    tiny_nets = dict(image_size=32, num_downs=5, ngf=4, ndf=4)  # bf16 is emulated on most CPUs
    train.main(tiny_config(tmp_path, pairs_dir, epochs=1, precision="auto", **tiny_nets))
    assert len(asked) == 1 and torch.isfinite(asked[0]).all() and asked[0].shape == (3,)
    assert used[-1] == "bf16" and "auto" not in used  # last: the run's own
    used.clear()
    train.main(tiny_config(tmp_path, pairs_dir, epochs=1, precision="fp32", name="b", **tiny_nets))

    assert len(asked) == 1 and used == ["fp32"]  # an explicit precision is not second-guessed
