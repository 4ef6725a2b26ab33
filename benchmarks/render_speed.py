"""Rendering speed: frames/s and peak memory of the rasterizer and of a subject's per-frame path.

Two tables (issue 7's render suite; `--only` picks one):

1. The rasterizer alone (`render_gaussians`) on random scenes of 10k, 50k and 100k Gaussians
   at 256x256 and 512x512 (below).
2. The full per-frame path of a subject: `TalkingHead.gaussians` (upsampling, G2ANet, head
   completion, opacity blending) then `TalkingHead.render` (activation, SH, rasterize), at
   256x256 and 512x512, one frame at a time and batched, on the demo bundle (checkpoints/demo)
   when present, else an untrained bundle of the same rig and OTF count (the RESULT says
   which), fed S2GNet's geometry of the example clips.

Random scenes:
random Gaussians fill a head-sized ellipsoid (semi-axes 80 x 110 x 95 mm; scales half the mean
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
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# isort: off
from _common import (  # noqa: E402  (sets OMP_WAIT_POLICY before torch loads)
    PeakMemory,
    StageTimer,
    bundle_for,
    example_audio,
    machine,
    print_machine,
    print_result,
    sync,
    time_repeats,
)

import torch  # noqa: E402

# isort: on
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


def bench(
    backend: str, device: str, n: int, size: int, repeats: int, warmup: int
) -> dict[str, float]:
    """Rasterizer alone: N random head-volume Gaussians, one camera per frame."""
    scene = head_scene(n, device=device)
    viewmats, Ks = orbit_cameras(12, size, device)
    coverage: list[float] = []

    def frame(i: int) -> None:
        j = i % len(viewmats)
        img = render_gaussians(
            **scene, viewmats=viewmats[j : j + 1], Ks=Ks[j : j + 1], width=size, height=size,
            backend=backend, background=torch.ones(3, device=device),
        ).image  # fmt: skip
        coverage.append(float((img < 0.999).any(-1).float().mean()))

    with torch.no_grad():
        for i in range(warmup):
            frame(i)
        with PeakMemory(device) as mem:
            t = time_repeats(frame, repeats, 0, device)
    return {
        "n": n,
        "size": size,
        "fps": 1.0 / t["wall_s"],
        "ms_per_frame": 1000 * t["wall_s"],
        "cpu_s_per_frame": t["cpu_s"],
        "peak_mem_mb": round(mem.growth_mb, 1),
        "coverage": round(statistics.mean(coverage[warmup:]), 3),
    }


def subject_frames(head, quick: bool) -> tuple[torch.Tensor, object]:  # [T, P, 3], emotion
    """Face geometry the per-frame path is fed: S2GNet on the example clips (4 s; 1 s quick),
    emotion `happy`, so colours, rotations and completion see real motion."""
    audio = example_audio(1.0 if quick else 4.0)
    choice = head.resolve_emotion("happy")
    return head.geometry(audio, choice, sample_rate=16000), choice


def bench_subject(
    head, points: torch.Tensor, choice, size: int, batch: int, repeats: int, warmup: int
) -> dict[str, float]:
    """The full per-frame path of a subject: `TalkingHead.gaussians` (upsampling, G2ANet,
    head completion, opacity blending) then `TalkingHead.render` (activation, SH, rasterize),
    for `batch` consecutive frames at a time, frontal camera; each repeat takes the next
    frames of the clip (rotating inputs)."""
    device = head.device
    cams = head.cameras(0.0, size)
    total = points.shape[0]
    assert total >= batch, (total, batch)
    stages = StageTimer(device)
    n_gauss = [0]

    def step(i: int) -> None:
        start = (i * batch) % (total - batch + 1)
        with stages("appearance"):
            g = head.gaussians(points[start : start + batch], choice)
        with stages("rasterize"):
            head.render(g, cams, start)
        n_gauss[0] = int(g.means.shape[1])

    with torch.no_grad():
        for i in range(warmup):
            step(i)
        stages.wall.clear()
        stages.cpu.clear()
        with PeakMemory(device) as mem:
            t = time_repeats(step, repeats, 0, device)
    frames = repeats * batch
    return {
        "n": n_gauss[0],
        "size": size,
        "batch": batch,
        "fps": batch / t["wall_s"],
        "ms_per_frame": 1000 * t["wall_s"] / batch,
        "cpu_s_per_frame": t["cpu_s"] / batch,
        "appearance_ms_per_frame": 1000 * stages.wall["appearance"] / frames,
        "rasterize_ms_per_frame": 1000 * stages.wall["rasterize"] / frames,
        "peak_mem_mb": round(mem.growth_mb, 1),
    }


class FullScaleHead:
    """An untrained full-scale subject (`configs/full/subject.yaml` sizes: the built-in `full`
    rig, 85,500 OTF Gaussians, SH degree 3, G2ANet hidden 256; `quick`: the tiny rig, 600
    OTF, hidden 32) with TalkingHead's `cameras` / `gaussians` / `render` interface, for the
    GPU target on the full-scale per-frame path. G2ANet's zero heads get random weights so
    its output is not the identity; geometry is the template plus a smooth per-point motion
    (S2GNet is not part of this path)."""

    def __init__(self, quick: bool, device: str, backend: str, frames: int = 64) -> None:
        from emotalk3d.constants import emotion_vector
        from emotalk3d.gaussians.model import GaussianHead
        from emotalk3d.geometry.rig import load_rig

        rig = load_rig("builtin", "tiny" if quick else "full")
        torch.manual_seed(0)
        head = GaussianHead(
            rig.neutral, rig.faces, rig.uvs, num_otf=600 if quick else 85_500, sh_degree=3,
            g2anet_hidden=32 if quick else 256,
        )  # fmt: skip
        with torch.no_grad():
            for mlp in (head.g2anet.feature_net, head.g2anet.rotation_net):
                mlp[-1].weight.normal_(0.0, 0.01)
        self.device, self.backend = torch.device(device), backend
        self.head = head.to(self.device).eval()
        self.subject = f"full-scale untrained ({'tiny' if quick else 'full'} rig)"
        self.background = torch.ones(3, device=self.device)
        template = head.template.to(self.device)  # [P, 3]
        g = torch.Generator().manual_seed(0)
        direction = torch.randn(template.shape, generator=g).to(self.device)  # [P, 3]
        phase = torch.sin(torch.arange(frames, device=self.device) * (2 * math.pi / 25))
        self.points = template + 2.0 * phase[:, None, None] * direction  # [T, P, 3]
        self.emotion = emotion_vector("happy", 1.0)[None].float().to(self.device)  # [1, E]

    def cameras(self, yaw: float, size: int):
        from emotalk3d.inference.pipeline import Cameras
        from emotalk3d.render.cameras import intrinsics_from_fov, orbit_camera

        vm = torch.tensor(orbit_camera(yaw, 0.0, DISTANCE_MM, (0.0, -30.0, 0.0), 0.0))
        K = torch.tensor(intrinsics_from_fov(FOV_DEG, size, size))
        return Cameras(vm[None].float().to(self.device), K[None].float().to(self.device),
                       size, size, ["view0"])  # fmt: skip

    def gaussians(self, points: torch.Tensor, _choice: object):
        return self.head.frame_gaussians(points, self.emotion)

    def render(self, g, cams, start: int) -> torch.Tensor:
        del start
        return render_gaussians(
            g.means, g.quats, g.scales, g.opacities, g.sh, cams.viewmats, cams.Ks, cams.width,
            cams.height, backend=self.backend, background=self.background,
            sh_degree=g.sh_degree, render_depth=False,
        ).image  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=["torch", "gsplat"], default="torch")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for tests")
    p.add_argument("--repeats", type=int, default=None, help="timed frames per configuration")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--bundle", default=None, help="subject bundle (default: checkpoints/demo)")
    p.add_argument(
        "--only", choices=["all", "rasterizer", "subject"], default="all", help="which tables"
    )
    p.add_argument(
        "--full-scale",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time an untrained full-scale subject (default: on CUDA only)",
    )
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda needs CUDA; use --device cpu (with --backend torch)")
    if args.backend == "gsplat" and args.device != "cuda":
        p.error("--backend gsplat needs --device cuda (gsplat's rasterizer is CUDA-only)")
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    if args.quick:
        sizes, counts, repeats, warmup = (64,), (2_000,), args.repeats or 2, 1
        subj_sizes, batches = (32,), (1, 2)
    else:
        sizes, counts, repeats, warmup = (256, 512), (10_000, 50_000, 100_000), 7, 2
        repeats = args.repeats or repeats
        subj_sizes, batches = (256, 512), ((1, 16, 64) if cuda else (1, 4))
    info = machine()
    print_machine(f"render_speed: backend={args.backend} device={args.device}", info)
    rows: list[dict[str, float]] = []
    if args.only in ("all", "rasterizer"):
        print("\nrasterizer alone (random Gaussians in a head-sized ellipsoid)")
        print(
            f"{'N':>8} {'size':>5} {'fps':>8} {'ms/frame':>9} {'cpu s/fr':>9} "
            f"{'peak MB':>8} {'cover':>6}"
        )
        for size in sizes:
            for n in counts:
                r = bench(args.backend, args.device, n, size, repeats, warmup)
                rows.append(r)
                print(
                    f"{r['n']:>8} {r['size']:>5} {r['fps']:>8.2f} {r['ms_per_frame']:>9.1f} "
                    f"{r['cpu_s_per_frame']:>9.3f} {r['peak_mem_mb']:>8.1f} {r['coverage']:>6.2f}"
                )
    subject_rows: list[dict[str, float]] = []
    bundle_kind = None
    if args.only in ("all", "subject"):
        from emotalk3d.inference.pipeline import TalkingHead

        folder, bundle_kind = bundle_for(args.quick, args.bundle)
        head = TalkingHead.from_checkpoints(folder, device=args.device, backend=args.backend)
        points, choice = subject_frames(head, args.quick)
        print(f"\nper-frame path of subject {head.subject} ({bundle_kind} bundle {folder})")
        print(
            f"{'N':>8} {'size':>5} {'batch':>5} {'fps':>8} {'ms/frame':>9} {'cpu s/fr':>9} "
            f"{'appear ms':>9} {'raster ms':>9} {'peak MB':>8}"
        )
        for size in subj_sizes:
            for b in batches:
                r = bench_subject(head, points, choice, size, b, repeats, warmup)
                subject_rows.append(r)
                print(
                    f"{r['n']:>8} {r['size']:>5} {r['batch']:>5} {r['fps']:>8.2f} "
                    f"{r['ms_per_frame']:>9.1f} {r['cpu_s_per_frame']:>9.3f} "
                    f"{r['appearance_ms_per_frame']:>9.1f} {r['rasterize_ms_per_frame']:>9.1f} "
                    f"{r['peak_mem_mb']:>8.1f}"
                )
        sync(args.device)
    full_rows: list[dict[str, float]] = []
    full = args.full_scale if args.full_scale is not None else cuda
    if full and args.only in ("all", "subject"):
        fs = FullScaleHead(args.quick, args.device, args.backend)
        print(f"\nper-frame path of a {fs.subject} subject")
        for size in subj_sizes[-1:]:  # 512 (the target's size); 32 for --quick
            for b in batches:
                r = bench_subject(fs, fs.points, None, size, b, repeats, warmup)
                full_rows.append(r)
                print(
                    f"{r['n']:>8} {r['size']:>5} {r['batch']:>5} {r['fps']:>8.2f} "
                    f"{r['ms_per_frame']:>9.1f} {r['cpu_s_per_frame']:>9.3f} "
                    f"{r['appearance_ms_per_frame']:>9.1f} {r['rasterize_ms_per_frame']:>9.1f} "
                    f"{r['peak_mem_mb']:>8.1f}"
                )
        sync(args.device)
    result = {
        "benchmark": "render_speed",
        "backend": args.backend,
        "device": args.device,
        "quick": args.quick,
        "repeats": repeats,
        "machine": info,
        "results": rows,
        "subject": {"bundle": bundle_kind, "results": subject_rows},
        "full_scale": {"results": full_rows},
    }
    print_result(result)
    return result


if __name__ == "__main__":
    main()
