"""Shared helpers of the benchmark scripts: the machine, timing, peak memory, bundles, RESULT.

Timing practice (issue 7): warm-up calls first; CUDA is synchronised before every clock read;
the median of the repeats is reported, with process CPU seconds beside wall seconds (CPU time
does not depend on how busy a shared machine is); callers rotate inputs between repeats.

Import this module before torch is imported anywhere: it chooses passive OpenMP waiting,
which must happen before torch loads libgomp.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Idle OpenMP threads spin by default; on a shared or busy machine spinning threads starve the
# working ones (measured: 10x the CPU time per frame with 2 threads at load 8). Passive waiting
# must be chosen before torch loads libgomp; the value used is reported with the machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


class PeakRSS:
    """Samples this process's resident set size in a background thread (every 2 ms)."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * self._page
        except OSError:
            return 0

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self._rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth_mb(self) -> float:
        """Peak RSS minus the RSS at entry, MB."""
        return (self.peak - self.base) / 2**20

    @property
    def peak_mb(self) -> float:
        """Peak RSS of the process, MB."""
        return self.peak / 2**20


class PeakMemory:
    """Peak memory growth over a block: CUDA max allocated on a CUDA device, else peak RSS."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self._rss = PeakRSS()

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        self._rss.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self._rss.__exit__(*exc)

    @property
    def growth_mb(self) -> float:
        """CUDA: peak allocated minus allocated at entry; CPU: peak RSS growth (MB)."""
        if self.cuda:
            return (torch.cuda.max_memory_allocated() - self._base) / 2**20
        return self._rss.growth_mb

    @property
    def rss_peak_mb(self) -> float:
        """Peak resident set size of the whole process (MB)."""
        return self._rss.peak_mb


def sync(device: str | torch.device) -> None:
    """Wait for queued CUDA work (no-op on CPU) so a clock read covers it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class StageTimer:
    """Accumulates wall and CPU seconds per named stage (CUDA synchronised at both ends)."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = device
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str) -> _Stage:
        """`with timer("stage"): ...` adds the block's time to `name`."""
        return _Stage(self, name)

    def add(self, name: str, wall: float, cpu: float) -> None:
        """Add measured seconds to a stage."""
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu


class _Stage:
    def __init__(self, timer: StageTimer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        sync(self.timer.device)
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        sync(self.timer.device)
        self.timer.add(self.name, time.perf_counter() - self.t0, time.process_time() - self.c0)


def time_repeats(
    fn: Callable[[int], Any],
    repeats: int,
    warmup: int,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Call `fn(i)` `warmup` times, then `repeats` timed times (i counts on, so callers can
    rotate inputs); CUDA synchronised around every timed call.

    Returns:
        {"wall_s": median wall seconds, "cpu_s": median process CPU seconds, "walls": all
        wall seconds, "last": the last call's return value}.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    last = None
    for i in range(warmup):
        last = fn(i)
    sync(device)
    walls, cpus = [], []
    for i in range(warmup, warmup + repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        last = fn(i)
        sync(device)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "walls": walls,
        "last": last,
    }


def load_emotion_extractor(path: str) -> tuple[torch.nn.Module, dict]:
    """The `EmotionExtractor` of an EmotionModule checkpoint or of a bundle folder, in eval
    mode, and what is known of its training ({"steps", "seconds"}; None in a bundle)."""
    if Path(path).is_dir():
        from emotalk3d.audio.emotion import EmotionExtractor
        from emotalk3d.inference.checkpoint import read_manifest

        manifest = read_manifest(path)  # BundleError names what is wrong
        sub = manifest["components"]["emotion"]["path"]
        extractor = EmotionExtractor(pretrained=str(Path(path) / sub)).eval()
        return extractor, {"steps": None, "seconds": None}
    if not Path(path).is_file():
        raise SystemExit(
            f"{path} does not exist; train one with `lightning fit -c configs/emotion.yaml` "
            "(runs/emotion/checkpoints/last.ckpt) or give a bundle folder such as "
            "checkpoints/demo"
        )
    from emotalk3d.training.emotion_module import EmotionModule

    ck = torch.load(path, map_location="cpu", weights_only=False)
    # Checkpoints from before prosody version 2 carry no version: they are version 1.
    version = ck.get("hyper_parameters", {}).get("prosody_version", 1)
    module = EmotionModule.load_from_checkpoint(path, map_location="cpu", prosody_version=version)
    trained = {"steps": int(ck.get("global_step", 0)), "seconds": ck.get("train_seconds")}
    return module.extractor.eval(), trained


def machine() -> dict[str, object]:
    """CPU model and cores, GPU, library versions and load: what a figure was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import gsplat

        gsplat_version = gsplat.__version__
    except Exception:  # noqa: BLE001 - report, never fail, on a broken install
        gsplat_version = None
    info = {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "gsplat": gsplat_version,
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    if hasattr(os, "getloadavg"):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return info


def machine_line(info: dict[str, object] | None = None) -> str:
    """`machine()` as one line: "Intel(R) Xeon(R) Processor, 2 cores, no GPU, torch 2.13.0+cpu"."""
    info = machine() if info is None else info
    gpu = f"GPU {info['gpu']}" if info.get("gpu") else "no GPU"
    return f"{info['cpu']}, {info['cpu_cores']} cores, {gpu}, torch {info['torch']}"


def print_machine(title: str, info: dict[str, object]) -> None:
    """The header every script prints: its title, then one `key: value` line per fact."""
    print(title)
    for k, v in info.items():
        print(f"  {k}: {v}")


def print_result(result: dict[str, Any]) -> None:
    """The script's last line: `RESULT {json}`."""
    print("RESULT " + json.dumps(result))


def bundle_for(quick: bool, bundle: str | None = None) -> tuple[Path, str]:
    """The bundle a benchmark measures and what it is.

    `bundle` when given; else, unless `quick`, the demo bundle (checkpoints/demo) when it is
    there; else an untrained bundle from `build_untrained_bundle` (the tiny rig for `quick`,
    the built-in small rig with the demo's 3,000 OTF Gaussians otherwise) in a temporary
    folder.

    Returns:
        (folder, kind) with kind "given", "demo" or "untrained:<rig>".
    """
    from emotalk3d.inference.checkpoint import DEMO_BUNDLE, build_untrained_bundle

    if bundle is not None:
        return Path(bundle), "given"
    if not quick and (Path(DEMO_BUNDLE) / "manifest.json").is_file():
        return Path(DEMO_BUNDLE), "demo"
    rig, num_otf = ("builtin:tiny", 200) if quick else ("builtin:small", 3000)
    tmp = tempfile.mkdtemp(prefix="emotalk3d-bench-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # removed when the process ends
    folder = Path(tmp) / "bundle"
    build_untrained_bundle(folder, rig=rig, num_otf=num_otf, perturb=2.0)
    return folder, f"untrained:{rig}"


def example_audio(seconds: float, sample_rate: int = 16000) -> torch.Tensor:  # [S]
    """`seconds` of speech: the example clips (examples/*.wav) end to end, repeated or cut
    to length; seeded noise when the folder is missing (the figures then say so)."""
    from emotalk3d.audio.load import load_audio

    n = round(seconds * sample_rate)
    clips = [load_audio(p) for p in sorted(EXAMPLES.glob("*.wav"))]
    if not clips:
        g = torch.Generator().manual_seed(0)
        return 0.1 * torch.randn(n, generator=g)
    audio = torch.cat(clips)
    reps = -(-n // audio.shape[0])
    return audio.repeat(reps)[:n].contiguous()
