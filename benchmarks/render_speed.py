"""Rasterizer speed: frames/s and peak memory of `render_gaussians` (issue 7's render suite).

Random Gaussians fill a head-sized ellipsoid (semi-axes 80 x 110 x 95 mm; scales half the mean
spacing, so density and pixel coverage stay head-like as N grows; SH degree 3; logit
opacities ~ N(0, 1)), seen by a 30-degree-FOV camera at 650 mm (the project's default
capture distance). Each timed frame uses the next camera of a 12-view orbit (rotating inputs);
warm-up first; CUDA is synchronised; the median of the repeats is reported, along with CPU
seconds per frame (process time, robust to a busy machine) and the peak memory growth (CPU: RSS
sampled every 2 ms; CUDA: max allocated).

    python benchmarks/render_speed.py --backend torch --device cpu
    python benchmarks/render_speed.py --backend gsplat --device cuda
    python benchmarks/render_speed.py --quick          # tiny sizes, for the test suite

Prints a table and ends with one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import threading
import time

# Idle OpenMP threads spin by default; on a shared or busy machine spinning threads starve the
# working ones (measured: 10x the CPU time per frame with 2 threads at load 8). Passive waiting
# must be chosen before torch loads libgomp; the value used is reported with the machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from emotalk3d.render.rasterize import render_gaussians  # noqa: E402

HEAD_SEMI_AXES_MM = (80.0, 110.0, 95.0)
DISTANCE_MM = 650.0
FOV_DEG = 30.0


def head_scene(n: int, seed: int = 0, device: str = "cpu") -> dict[str, torch.Tensor]:
    """N raw Gaussians uniformly inside a head-sized ellipsoid."""
    g = torch.Generator().manual_seed(seed)
    axes = torch.tensor(HEAD_SEMI_AXES_MM)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = d * torch.rand(n, 1, generator=g) ** (1 / 3) * axes
    spacing = (4 / 3 * math.pi * math.prod(HEAD_SEMI_AXES_MM) / n) ** (1 / 3)
    scales = math.log(0.5 * spacing) + 0.3 * torch.randn(n, 3, generator=g)
    out = {
        "means": means,
        "quats": torch.randn(n, 4, generator=g),
        "scales": scales,
        "opacities": torch.randn(n, generator=g),
        "colors": torch.randn(n, 16, 3, generator=g) * 0.2,
    }
    return {k: v.to(device) for k, v in out.items()}


def orbit_cameras(
    views: int, size: int, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:  # [V, 4, 4], [V, 3, 3]
    """World-to-camera matrices of `views` cameras on a horizontal circle looking at the origin
    (OpenCV axes, head +y up), and their square-image intrinsics."""
    mats = []
    for i in range(views):
        yaw = 2 * math.pi * i / views
        centre = torch.tensor([math.sin(yaw), 0.0, math.cos(yaw)]) * DISTANCE_MM
        fwd = -centre / centre.norm()
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 1.0, 0.0]))
        right = right / right.norm()
        down = torch.linalg.cross(fwd, right)
        rot = torch.stack([right, down, fwd])  # rows: camera x, y, z in world
        m = torch.eye(4)
        m[:3, :3] = rot
        m[:3, 3] = -rot @ centre
        mats.append(m)
    f = 0.5 * size / math.tan(math.radians(FOV_DEG / 2))
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
    return torch.stack(mats).to(device), K.expand(views, 3, 3).contiguous().to(device)


class _PeakRSS:
    """Samples this process's resident set size in a background thread."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * self._page
        except OSError:
            return 0

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


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


def bench(
    backend: str, device: str, n: int, size: int, repeats: int, warmup: int
) -> dict[str, float]:
    scene = head_scene(n, device=device)
    viewmats, Ks = orbit_cameras(12, size, device)
    cuda = device == "cuda"

    def frame(i: int) -> torch.Tensor:
        j = i % len(viewmats)
        out = render_gaussians(
            **scene, viewmats=viewmats[j : j + 1], Ks=Ks[j : j + 1], width=size, height=size,
            backend=backend, background=torch.ones(3, device=device),
        )  # fmt: skip
        return out.image

    with torch.no_grad():
        for i in range(warmup):
            frame(i)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        walls, cpus, coverage = [], [], []
        with _PeakRSS() as rss:
            for i in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                img = frame(warmup + i)
                if cuda:
                    torch.cuda.synchronize()
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                coverage.append(float((img < 0.999).any(-1).float().mean()))
    wall = statistics.median(walls)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else rss.growth_mb
    return {
        "n": n,
        "size": size,
        "fps": 1.0 / wall,
        "ms_per_frame": 1000 * wall,
        "cpu_s_per_frame": statistics.median(cpus),
        "peak_mem_mb": round(peak, 1),
        "coverage": round(statistics.mean(coverage), 3),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=["torch", "gsplat"], default="torch")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for tests")
    p.add_argument("--repeats", type=int, default=None, help="timed frames per configuration")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda needs CUDA; use --device cpu (with --backend torch)")
    if args.backend == "gsplat" and args.device != "cuda":
        p.error("--backend gsplat needs --device cuda (gsplat's rasterizer is CUDA-only)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        sizes, counts, repeats, warmup = (64,), (2_000,), args.repeats or 2, 1
    else:
        sizes, counts, repeats, warmup = (256, 512), (10_000, 50_000, 100_000), 7, 2
        repeats = args.repeats or repeats
    info = machine()
    print(f"render_speed: backend={args.backend} device={args.device}")
    for k, v in info.items():
        print(f"  {k}: {v}")
    rows = []
    header = f"{'N':>8} {'size':>5} {'fps':>8} {'ms/frame':>9} {'cpu s/fr':>9} {'peak MB':>8} {'cover':>6}"  # noqa: E501
    print(header)
    for size in sizes:
        for n in counts:
            r = bench(args.backend, args.device, n, size, repeats, warmup)
            rows.append(r)
            print(
                f"{r['n']:>8} {r['size']:>5} {r['fps']:>8.2f} {r['ms_per_frame']:>9.1f} "
                f"{r['cpu_s_per_frame']:>9.3f} {r['peak_mem_mb']:>8.1f} {r['coverage']:>6.2f}"
            )
    result = {
        "benchmark": "render_speed",
        "backend": args.backend,
        "device": args.device,
        "quick": args.quick,
        "repeats": repeats,
        "machine": info,
        "results": rows,
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
