"""The settings picked for speed: `train.precision: auto`, the thread count, the collapse warning.

The machine's facts (CPU flags, CUDA capability, affinity, cgroup quota) are mocked, so each
test checks the choice, not this machine; no test is timed.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml

from dcgan import devices
from dcgan.config import Config, load_config
from dcgan.devices import CollapseWatch, cgroup_cpu_limit, pick_threads, resolve_precision
from dcgan.errors import ConfigError, DCGANError

CPU = torch.device("cpu")
INTEL_SPR = "fpu vme sse sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"
AMD_ZEN2 = "fpu vme sse sse2 avx f16c avx2 fma bmi2"


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    """Point the flag reader at a written /proc/cpuinfo (torch's own probe must not be asked)."""
    def write(flags: str | None) -> None:
        path = tmp_path / "cpuinfo"
        path.write_text("processor\t: 0\nmodel name\t: X\n" + (f"flags\t\t: {flags}\n" if flags is not None else ""))
        monkeypatch.setattr(devices, "CPUINFO", str(path))
    monkeypatch.setattr(devices, "_torch_cpu_bf16", lambda: [])
    return write


# --- precision --------------------------------------------------------------------------------


def test_auto_is_the_default_and_named_precisions_stay():
    assert Config().train.precision == "auto"
    assert load_config(None, ["train.precision=fp32"]).train.precision == "fp32"
    with pytest.raises(ConfigError, match="use one of auto, fp32, bf16, fp16"):
        load_config(None, ["train.precision=fp8"])
    for name in ("fp32", "bf16", "fp16"):  # a named precision is used as is, on any device
        assert resolve_precision(name, CPU).used == name


@pytest.mark.parametrize("flags, used", [(AMD_ZEN2, "fp32"), ("avx2 avx512f", "fp32"), (INTEL_SPR, "bf16"),
                                         ("avx2 avx512f avx512_bf16", "bf16"), ("avx2 amx_bf16 amx_tile", "bf16")])
def test_auto_on_cpu_reads_the_cpu_flags(cpuinfo, flags, used):
    cpuinfo(flags)
    choice = resolve_precision("auto", CPU)
    assert (choice.asked, choice.used) == ("auto", used)
    assert ("bf16 is native" in choice.why) == (used == "bf16")
    if used == "fp32":
        assert "neither AVX512-BF16 nor AMX" in choice.why


def test_auto_on_cpu_without_cpuinfo_asks_torch(cpuinfo, monkeypatch):
    cpuinfo(None)  # no flags line (e.g. not Linux): torch's cpuinfo probe decides
    assert resolve_precision("auto", CPU).used == "fp32"
    monkeypatch.setattr(devices, "_torch_cpu_bf16", lambda: ["amx_tile"])
    assert resolve_precision("auto", CPU).used == "bf16"


@pytest.mark.parametrize("capability, used", [((7, 0), "fp32"), ((7, 5), "fp32"), ((8, 0), "bf16"),
                                              ((8, 6), "bf16"), ((9, 0), "bf16"), ((12, 0), "bf16")])
def test_auto_on_cuda_reads_the_compute_capability(monkeypatch, capability, used):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    choice = resolve_precision("auto", torch.device("cuda", 0))
    assert choice.used == used and f"{capability[0]}.{capability[1]}" in choice.why


def test_auto_elsewhere_is_fp32():
    assert resolve_precision("auto", torch.device("mps")).used == "fp32"


# --- threads ----------------------------------------------------------------------------------


def cgroup_tree(tmp_path, files: dict[str, str], self_cgroup: str) -> tuple[str, str]:
    root = tmp_path / "cg"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (tmp_path / "self").write_text(self_cgroup)
    return str(root), str(tmp_path / "self")


@pytest.mark.parametrize("files, self_cgroup, limit", [
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),  # v2, no quota
    ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),  # v2 quota at the (namespaced) root
    ({"job/cpu.max": "max 100000\n", "cpu.max": "300000 100000\n"}, "0::/job\n", 3.0),  # a parent's quota
    ({"a/b/cpu.max": "50000 100000\n", "a/cpu.max": "200000 100000\n"}, "0::/a/b\n", 0.5),  # the smallest
    ({"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"},
     "4:cpu,cpuacct:/docker/x\n3:memory:/docker/x\n", 2.0),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "4:cpuacct,cpu:/\n", None),  # v1, none
    ({}, "", None),  # nothing readable
])
def test_cgroup_quota(tmp_path, files, self_cgroup, limit):
    assert cgroup_cpu_limit(*cgroup_tree(tmp_path, files, self_cgroup)) == limit


@pytest.fixture
def machine(monkeypatch):
    """A machine of `total` CPUs, this process allowed `affinity` of them under a quota of `quota` CPUs."""
    def make(total: int, affinity: int, quota: float | None, omp: str | None = None) -> None:
        monkeypatch.setattr(devices.os, "cpu_count", lambda: total)
        monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
        monkeypatch.setattr(devices, "cgroup_cpu_limit", lambda: quota)
        if omp is None:
            monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        else:
            monkeypatch.setenv("OMP_NUM_THREADS", omp)
    return make


@pytest.mark.parametrize("total, affinity, quota, used", [
    (64, 64, None, 64), (64, 8, None, 8),  # taskset / cpuset: the affinity mask
    (64, 64, 2.0, 2), (64, 64, 2.5, 2), (64, 64, 0.5, 1),  # docker --cpus: the quota, rounded down, at least 1
    (64, 4, 16.0, 4),  # the smaller of the two
])
def test_auto_threads_from_affinity_and_quota(machine, total, affinity, quota, used):
    machine(total, affinity, quota)
    choice = pick_threads(0)
    assert (choice.asked, choice.used) == (0, used)
    assert f"{affinity} of the machine's {total} CPUs" in choice.why
    assert ("no cgroup CPU quota" in choice.why) == (quota is None)


def test_threads_override_and_omp_num_threads(machine):
    machine(64, 64, 2.0, omp="3")
    assert pick_threads(0).used == 3 and "OMP_NUM_THREADS=3" in pick_threads(0).why  # --nproc sets it per process
    assert pick_threads(5).used == 5 and pick_threads(5).why == "train.threads=5"  # the option wins
    assert pick_threads(1, "--threads").why == "--threads=1"
    for bad in (-1, 10**6, True):
        with pytest.raises(DCGANError, match="not a thread count; use 0 .auto. or 1..1024"):
            pick_threads(bad)


def test_threads_config_key():
    assert Config().train.threads == 0
    assert load_config(None, ["train.threads=1"]).train.threads == 1
    for bad in ("-1", "5000", "two"):
        with pytest.raises(ConfigError, match="train.threads"):
            load_config(None, [f"train.threads={bad}"])


def test_set_threads_applies_the_choice(machine):
    before = torch.get_num_threads()
    machine(8, 8, None)
    try:
        assert devices.set_threads(1).used == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# --- the collapse warning -----------------------------------------------------------------------


def test_collapse_warns_once_with_the_fix():
    watch = CollapseWatch(threads=2)
    seen = [watch.observe(x) for x in (300, 700, 720, 650, 300, 240)]  # warm-up, steady, a dip under 3x: quiet
    assert seen == [None] * 6
    assert watch.observe(200) is None  # 3.6x slower once: could be a blip
    message = watch.observe(35)  # twice in a row: collapsed
    assert message and "--set train.threads=1" in message and "720" in message and "35 images/s" in message
    assert [watch.observe(x) for x in (30, 25, 700, 20, 20)] == [None] * 5  # once per run


def test_collapse_message_for_one_thread_and_custom_fix():
    watch = CollapseWatch(threads=1)
    assert [watch.observe(x) for x in (100, 10)] == [None, None]
    assert "already uses 1 thread" in watch.observe(10)
    watch = CollapseWatch(threads=4, fix="--threads 1")
    assert [watch.observe(x) for x in (100, 10)] == [None, None]
    assert "set --threads 1" in watch.observe(10)


def test_no_warning_for_steady_or_slowly_drifting_throughput():
    watch = CollapseWatch(threads=2)
    assert all(watch.observe(x) is None for x in [750 - 10 * i for i in range(40)] + [0, float("nan")])


# --- a run records what was chosen ------------------------------------------------------------


def test_a_run_records_precision_and_threads(tiny_cfg, tmp_path):
    from dcgan.train import train

    before = torch.get_num_threads()
    try:
        run = train(tiny_cfg(train={"threads": 1}), run_dir=tmp_path / "r").run_dir
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    start = [r for r in records if r["kind"] == "start"]
    assert len(start) == 1 and start[0]["step"] == 0
    expected = resolve_precision("auto", CPU)
    assert start[0]["train.precision"] == {"asked": "auto", "used": expected.used, "why": expected.why}
    assert start[0]["train.threads"] == {"asked": 1, "used": 1, "why": "train.threads=1"}
    text = (run / "config.yaml").read_text()
    assert f"#   train.precision: auto -> {expected.used} ({expected.why})" in text
    assert "#   train.threads: 1 -> 1 (train.threads=1)" in text
    saved = yaml.safe_load(text)["train"]
    assert saved["precision"] == "auto" and saved["threads"] == 1  # the user's settings, not the resolved ones
    # A resume records its own start (it may run on another machine) and may change the threads.
    resumed = train(resume=run, overrides=["train.max_steps=10", "train.threads=2"])
    torch.set_num_threads(before)
    starts = [json.loads(line) for line in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    starts = [r for r in starts if r["kind"] == "start"]
    assert [r["step"] for r in starts] == [0, 8] and starts[1]["train.threads"]["used"] == 2
    assert "#   train.threads: 2 -> 2" in (resumed.run_dir / "config.yaml").read_text()


def test_the_loop_warns_once_when_its_throughput_collapses(tiny_cfg, tmp_path, caplog, monkeypatch):
    """The detector is fed the loop's log windows: here windows 4-6 report 10x fewer images/s."""
    import dcgan.loop as loop_mod
    import dcgan.train as train_mod

    flushed = []
    real_flush = loop_mod.LogWindow.flush

    def flush(self, step, images_per_step, info):
        rec = real_flush(self, step, images_per_step, info)
        if rec is not None:
            flushed.append(step)
            rec["images_per_s"] = 10.0 if 4 <= len(flushed) <= 6 else 100.0
        return rec

    monkeypatch.setattr(loop_mod.LogWindow, "flush", flush)
    cfg = tiny_cfg(train={"max_steps": 16, "log_every": 2, "sample_every": 1000, "checkpoint_every": 0,
                          "threads": 2})
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.WARNING, logger="dcgan.loop"):
            run = train_mod.train(cfg, run_dir=tmp_path / "r").run_dir
    finally:
        torch.set_num_threads(before)
    warnings = [r.getMessage() for r in caplog.records if "throughput collapsed" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "--set train.threads=1" in warnings[0] and f"--resume {run}" in warnings[0]
    assert len(flushed) == 8 and "10 images/s against 100" in warnings[0]


def test_sample_and_serve_take_threads(tiny_cfg, tmp_path, monkeypatch, caplog):
    from dcgan import cli
    from dcgan.share import serve as serve_mod
    from dcgan.train import train

    before = torch.get_num_threads()
    run = train(tiny_cfg(train={"max_steps": 2, "threads": 1}), run_dir=tmp_path / "r").run_dir
    served = []
    monkeypatch.setattr(serve_mod, "serve", lambda checkpoint, **kw: served.append(checkpoint))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        torch.set_num_threads(2)
        assert cli.main(["sample", "--checkpoint", str(run), "--num", "4", "--out", str(tmp_path / "g.png"),
                         "--device", "cpu", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1 and (tmp_path / "g.png").is_file()
        torch.set_num_threads(2)
        assert cli.main(["sample", "--checkpoint", str(run), "--num", "4", "--out", str(tmp_path / "h.png"),
                         "--device", "cpu"]) == 0
        assert torch.get_num_threads() == 1  # 0 = auto: here OMP_NUM_THREADS
        torch.set_num_threads(2)
        with caplog.at_level(logging.INFO, logger="dcgan.share.cli"):
            assert cli.main(["serve", "--checkpoint", str(run), "--threads", "1"]) == 0
        assert served == [str(run)] and torch.get_num_threads() == 1
        assert "threads: 1 -> 1 (--threads=1)" in caplog.text
        assert cli.main(["serve", "--checkpoint", str(run), "--threads", "-1"]) == 2
    finally:
        torch.set_num_threads(before)
