"""Pipeline speed: real-time factor of render.py's work on a 10 s clip, split by stage.

The work of `python render.py --audio A --emotion auto --view 0 --resolution R` (the bundle
already loaded): the emotion extractor on the clip, then geometry window by window (HuBERT
audio encoder, then S2GNet's GRU and head), then per batch of frames the per-frame appearance
(`TalkingHead.gaussians`: upsampling, G2ANet, completion, blending), the rasterizer
(`TalkingHead.render`) and H.264 encoding (`Mp4Writer`, PyAV, to a temporary file). Stages are
timed in place (CUDA synchronised at both ends of each; the audio encoder by forward hooks
inside S2GNet, whose remaining time is the S2GNet row). Real-time factor = wall seconds /
audio seconds, as render.py prints it (below 1: faster than real time), with and without
encoding; peak memory over
the whole run (CUDA: max allocated; CPU: peak RSS growth). The clip is the example clips
(examples/*.wav) end to end, repeated to length; one warm-up run on the first second first.

`--memory-seconds S` first (in the fresh process, before anything else allocates) streams
the geometry of a clip of 1.5 geometry windows (30 s by default: two windows, so the
window-sized peak is reached) and then of an S-second clip (600: 10 minutes), and reports the
peak memory growth of each and the absolute peak RSS: equal figures mean long clips stay
flat (geometry is the only stage whose input grows with the clip; the frame stages work on
one batch at a time).

    python benchmarks/pipeline_speed.py [--resolution 256] [--memory-seconds 600]
    python benchmarks/pipeline_speed.py --device cuda --backend gsplat --no-encode
    python benchmarks/pipeline_speed.py --quick            # tiny, for the test suite

Prints a table and ends with one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
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
)

import torch  # noqa: E402

# isort: on
from emotalk3d.audio.load import SAMPLE_RATE  # noqa: E402

STAGES = ("emotion", "audio encoder", "S2GNet", "appearance", "rasterize", "encode video")


def hook_encoder(encoder: torch.nn.Module, timer: StageTimer) -> list:
    """Time every forward of `encoder` into the "audio encoder" stage; returns the handles."""
    state: dict[str, float] = {}

    def pre(_module, _inputs) -> None:
        sync(timer.device)
        state["t"], state["c"] = time.perf_counter(), time.process_time()

    def post(_module, _inputs, _output) -> None:
        sync(timer.device)
        timer.add(
            "audio encoder", time.perf_counter() - state["t"], time.process_time() - state["c"]
        )

    return [encoder.register_forward_pre_hook(pre), encoder.register_forward_hook(post)]


def run_clip(
    head, audio: torch.Tensor, resolution: int, batch_size: int, encode: bool
) -> StageTimer:
    """render.py's work on `audio` (emotion `auto`, frontal view); returns the stage times."""
    from emotalk3d.inference.pipeline import rechunk
    from emotalk3d.render.video import Mp4Writer

    timer = StageTimer(head.device)
    handles = hook_encoder(head.s2g.audio_encoder, timer)
    try:
        with timer("emotion"):
            choice = head.resolve_emotion("auto", audio)
        total = head.num_frames(audio.shape[0])
        cams = head.cameras(0.0, resolution, num_frames=total)
        with tempfile.TemporaryDirectory() as tmp:
            writer = None
            if encode:
                writer = Mp4Writer(
                    Path(tmp) / "clip.mp4", head.fps, resolution, resolution, audio.numpy(),
                    SAMPLE_RATE,
                )  # fmt: skip
            geometry = rechunk(head.iter_geometry(audio, choice), batch_size)
            start = 0
            while True:
                with timer("geometry"):  # audio encoder + S2GNet (split below)
                    pts = next(geometry, None)
                if pts is None:
                    break
                with timer("appearance"):
                    g = head.gaussians(pts, choice)
                with timer("rasterize"):
                    images = head.render(g, cams, start)
                    u8 = (images * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
                if writer is not None:
                    with timer("encode video"):
                        writer.write(u8[:, 0])
                start += pts.shape[0]
            if writer is not None:
                with timer("encode video"):
                    writer.close()
    finally:
        for h in handles:
            h.remove()
    for d in (timer.wall, timer.cpu):
        d["S2GNet"] = d.pop("geometry") - d.get("audio encoder", 0.0)
    return timer


def geometry_memory(head, seconds: float) -> dict[str, float]:
    """Peak memory growth while streaming the geometry of a `seconds` clip (frames not
    kept; the audio is allocated before the measurement)."""
    audio = example_audio(seconds)
    choice = head.resolve_emotion("happy")
    frames = 0
    t = time.perf_counter()
    with PeakMemory(head.device) as mem:
        for pts in head.iter_geometry(audio, choice):
            frames += pts.shape[0]
    return {
        "seconds": seconds,
        "frames": frames,
        "wall_s": time.perf_counter() - t,
        "peak_mem_mb": round(mem.growth_mb, 1),
        "rss_peak_mb": round(mem.rss_peak_mb, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--backend", choices=["auto", "torch", "gsplat"], default="auto")
    p.add_argument("--bundle", default=None, help="bundle folder (default: checkpoints/demo)")
    p.add_argument("--quick", action="store_true", help="tiny bundle, 1 s clip, for tests")
    p.add_argument("--seconds", type=float, default=None, help="clip length (default 10)")
    p.add_argument("--resolution", type=int, default=None, help="image size (default 256)")
    p.add_argument("--batch-size", type=int, default=4, help="frames rendered together")
    p.add_argument("--no-encode", action="store_true", help="skip the H.264 encoding stage")
    p.add_argument(
        "--memory-seconds", type=float, default=None, help="also stream an S-second geometry"
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda needs CUDA; use --device cpu")
    if args.backend == "gsplat" and args.device != "cuda":
        p.error("--backend gsplat needs --device cuda (gsplat's rasterizer is CUDA-only)")
    if args.threads:
        torch.set_num_threads(args.threads)
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    resolution = args.resolution or (32 if args.quick else 256)
    from emotalk3d.inference.pipeline import TalkingHead

    folder, kind = bundle_for(args.quick, args.bundle)
    head = TalkingHead.from_checkpoints(folder, device=args.device, backend=args.backend)
    audio = example_audio(seconds)
    info = machine()
    print_machine(f"pipeline_speed: device={args.device} backend={args.backend}", info)
    print(f"  bundle: {kind} ({folder}); clip {seconds:g} s at {resolution}x{resolution}")
    encode = not args.no_encode
    with torch.no_grad():
        long = None
        if args.memory_seconds:  # first, so that nothing before has raised the heap
            window = 1.5 * head.window_seconds
            long = [geometry_memory(head, window), geometry_memory(head, args.memory_seconds)]
        run_clip(head, example_audio(min(1.0, seconds)), resolution, args.batch_size, encode)
        t0, c0 = time.perf_counter(), time.process_time()
        with PeakMemory(args.device) as mem:
            timer = run_clip(head, audio, resolution, args.batch_size, encode)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    frames = head.num_frames(audio.shape[0])
    no_encode_wall = wall - timer.wall.get("encode video", 0.0)
    print(f"\n{'stage':>14} {'wall s':>8} {'cpu s':>8} {'share':>6} {'ms/frame':>9}")
    rows = []
    for name in STAGES:
        if name not in timer.wall:
            continue
        w, c = timer.wall[name], timer.cpu[name]
        rows.append({"stage": name, "wall_s": w, "cpu_s": c, "ms_per_frame": 1000 * w / frames})
        print(f"{name:>14} {w:>8.3f} {c:>8.3f} {w / wall:>6.1%} {1000 * w / frames:>9.1f}")
    print(f"{'total':>14} {wall:>8.3f} {cpu:>8.3f}")
    rtf = wall / seconds
    print(
        f"real-time factor {rtf:.3f} (wall s / audio s), {no_encode_wall / seconds:.3f} without "
        f"encoding; {frames} frames; peak memory growth {mem.growth_mb:.0f} MB"
    )
    if long:
        for r in long:
            print(
                f"geometry only, {r['seconds']:g} s clip: {r['frames']} frames in "
                f"{r['wall_s']:.1f} s, peak memory growth {r['peak_mem_mb']:.0f} MB, peak RSS "
                f"{r['rss_peak_mb']:.0f} MB"
            )
    result = {
        "benchmark": "pipeline_speed",
        "device": args.device,
        "backend": args.backend,
        "quick": args.quick,
        "bundle": kind,
        "seconds": seconds,
        "resolution": resolution,
        "frames": frames,
        "encode": encode,
        "machine": info,
        "stages": rows,
        "wall_s": wall,
        "cpu_s": cpu,
        "real_time_factor": rtf,
        "real_time_factor_no_encode": no_encode_wall / seconds,
        "peak_mem_mb": round(mem.growth_mb, 1),
        "geometry_memory": long,
    }
    print_result(result)
    return result


if __name__ == "__main__":
    main()
