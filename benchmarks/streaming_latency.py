"""Streaming latency: from audio arrival to frame out, for `TalkingHead.stream`.

A feeder plays a clip (the example clips end to end, 10 s) in real time: chunk k (200 ms by
default) arrives at t0 + (k + 1) x chunk seconds (it is complete then; the feeder sleeps until
that time, and when the consumer is late the chunk counts as having arrived on schedule, so a
pipeline slower than real time shows growing latency). The audio of frame j (samples
[j spf, (j + 1) spf)) has arrived when the chunk holding its last sample has; its latency is
the wall time from then until `stream` yields it. Reported: first-frame latency, steady-state
median / 90th percentile / max over the second half of the frames, and the budget behind them:
the look-ahead (a frame waits for `lookahead` seconds of later audio, i.e. for the next chunk
whenever that audio crosses a chunk boundary) and the compute per chunk (S2GNet on the
window; appearance + rasterize per frame).

Also reported: the streamed geometry's difference from offline processing on the example
clips (mean and max per-point distance, mm, beside the offline motion).

Two modes: `geometry` (render=False: face points only, what the viewer's client-side
renderer needs) and `frames` (rendered images at `--resolution`).

    python benchmarks/streaming_latency.py                    # CPU, demo bundle
    python benchmarks/streaming_latency.py --device cuda --backend gsplat
    python benchmarks/streaming_latency.py --quick            # tiny, for the test suite

Prints a table and ends with one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# isort: off
from _common import (  # noqa: E402  (sets OMP_WAIT_POLICY before torch loads)
    EXAMPLES,
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
from emotalk3d.inference.streaming import (  # noqa: E402
    DEFAULT_CONTEXT_SECONDS,
    DEFAULT_LOOKAHEAD_SECONDS,
    GeometryStreamer,
    StreamConfig,
    split_chunks,
)


def realtime_chunks(
    audio: torch.Tensor, chunk_seconds: float, t0: float
) -> Iterator[torch.Tensor]:  # [s]
    """Yield chunks no earlier than their real-time arrival t0 + (k + 1) x chunk_seconds."""
    for k, chunk in enumerate(split_chunks(audio, chunk_seconds)):
        due = t0 + (k + 1) * chunk_seconds
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield chunk


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    s = sorted(values)
    x = q * (len(s) - 1)
    i = math.floor(x)
    return s[i] if i + 1 >= len(s) else s[i] + (x - i) * (s[i + 1] - s[i])


def run_stream(
    head,
    audio: torch.Tensor,
    chunk_seconds: float,
    render: bool,
    resolution: int,
    config: StreamConfig,
) -> dict[str, float]:
    """Play `audio` in real time through `head.stream`; latency statistics in ms."""
    spf = SAMPLE_RATE // head.fps
    chunk = round(chunk_seconds * SAMPLE_RATE)
    last_chunk = (audio.shape[0] - 1) // chunk
    t0 = time.perf_counter()
    lat: list[float] = []
    frames = head.stream(
        realtime_chunks(audio, chunk_seconds, t0), "happy", 0.0, resolution=resolution,
        lookahead_seconds=config.lookahead_seconds, context_seconds=config.context_seconds,
        crossfade_frames=config.crossfade_frames, render=render,
    )  # fmt: skip
    for batch in frames:
        sync(head.device)
        now = time.perf_counter()
        for j in range(batch.start, batch.start + batch.geometry.shape[0]):
            c = min(((j + 1) * spf - 1) // chunk, last_chunk)
            lat.append(1000.0 * (now - (t0 + (c + 1) * chunk_seconds)))
    steady = lat[len(lat) // 2 :]
    return {
        "frames": len(lat),
        "first_frame_ms": lat[0],
        "steady_median_ms": statistics.median(steady),
        "steady_p90_ms": percentile(steady, 0.9),
        "max_ms": max(lat),
        "last_frame_ms": lat[-1],
    }


def compute_budget(head, audio: torch.Tensor, chunk_seconds: float, config: StreamConfig,
                   resolution: int) -> dict[str, float]:  # fmt: skip
    """Compute per 200 ms chunk without waiting: S2GNet per push (median), and appearance +
    rasterize per frame (median over the clip's first frames)."""
    choice = head.resolve_emotion("happy")
    st = GeometryStreamer(head.s2g, head.template, choice.vector, head.style_id, config,
                          head.device)  # fmt: skip
    pushes, pts = [], []
    for c in split_chunks(audio, chunk_seconds):
        t = time.perf_counter()
        out = st.push(c)
        sync(head.device)
        if out.shape[0]:
            pushes.append(time.perf_counter() - t)
            pts.append(out)
    geometry = torch.cat(pts)
    cams = head.cameras(0.0, resolution)
    per_frame = []
    for j in range(min(8, geometry.shape[0])):
        t = time.perf_counter()
        head.render(head.gaussians(geometry[j : j + 1], choice), cams, j)
        sync(head.device)
        per_frame.append(time.perf_counter() - t)
    return {
        "s2g_per_chunk_ms": 1000 * statistics.median(pushes),
        "frame_ms": 1000 * statistics.median(per_frame),
        "frames_per_chunk": chunk_seconds * head.fps,
    }


def offline_difference(head, config: StreamConfig, chunk_seconds: float) -> dict[str, float]:
    """Streamed vs offline geometry on each example clip (examples/*.wav; or the benchmark
    clip when missing): mean and max per-point distance (mm), beside the offline motion
    (mean and max distance from the template), the scale the difference is read against."""
    from emotalk3d.audio.load import load_audio

    paths = sorted(EXAMPLES.glob("*.wav"))
    clips = [load_audio(p) for p in paths] or [example_audio(4.0)]
    choice = head.resolve_emotion("happy")
    means, maxes, motion, motion_max = [], [], [], []
    for audio in clips:
        offline = head.geometry(audio, choice, sample_rate=SAMPLE_RATE)
        st = GeometryStreamer(head.s2g, head.template, choice.vector, head.style_id, config,
                              head.device)  # fmt: skip
        pts = [st.push(c) for c in split_chunks(audio, chunk_seconds)] + [st.finish()]
        d = (torch.cat(pts) - offline).norm(dim=-1)  # [T, P]
        m = (offline - head.template).norm(dim=-1)
        means.append(float(d.mean()))
        maxes.append(float(d.max()))
        motion.append(float(m.mean()))
        motion_max.append(float(m.max()))
    return {
        "clips": len(clips),
        "mean_mm": statistics.mean(means),
        "max_mm": max(maxes),
        "offline_motion_mean_mm": statistics.mean(motion),
        "offline_motion_max_mm": max(motion_max),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--backend", choices=["auto", "torch", "gsplat"], default="auto")
    p.add_argument("--bundle", default=None, help="bundle folder (default: checkpoints/demo)")
    p.add_argument("--quick", action="store_true", help="tiny bundle, short clip, for tests")
    p.add_argument("--seconds", type=float, default=None, help="clip length (default 10)")
    p.add_argument("--chunk", type=float, default=0.2, help="audio chunk seconds")
    p.add_argument("--lookahead", type=float, default=DEFAULT_LOOKAHEAD_SECONDS)
    p.add_argument("--context", type=float, default=DEFAULT_CONTEXT_SECONDS)
    p.add_argument("--resolution", type=int, default=None, help="frames mode image size")
    p.add_argument("--modes", default="geometry,frames", help="comma list: geometry, frames")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda needs CUDA; use --device cpu")
    if args.backend == "gsplat" and args.device != "cuda":
        p.error("--backend gsplat needs --device cuda (gsplat's rasterizer is CUDA-only)")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"geometry", "frames"}:
        p.error(f"--modes takes geometry and/or frames, got {args.modes!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    seconds = args.seconds or (1.2 if args.quick else 10.0)
    resolution = args.resolution or (32 if args.quick else 256)
    from emotalk3d.inference.pipeline import TalkingHead

    folder, kind = bundle_for(args.quick, args.bundle)
    head = TalkingHead.from_checkpoints(folder, device=args.device, backend=args.backend)
    audio = example_audio(seconds)
    config = StreamConfig(args.lookahead, args.context)
    info = machine()
    print_machine(f"streaming_latency: device={args.device} backend={args.backend}", info)
    print(
        f"  bundle: {kind} ({folder}), clip {seconds:g} s, chunks {args.chunk:g} s, "
        f"look-ahead {config.lookahead_seconds:g} s, context {config.context_seconds:g} s"
    )
    with torch.no_grad():
        budget = compute_budget(head, audio, args.chunk, config, resolution)
        vs_offline = offline_difference(head, config, args.chunk)
        rows = []
        for mode in modes:
            r = run_stream(head, audio, args.chunk, mode == "frames", resolution, config)
            r["mode"] = mode
            r["resolution"] = resolution if mode == "frames" else None
            rows.append(r)
    print(f"\nbudget: S2GNet window per chunk {budget['s2g_per_chunk_ms']:.1f} ms; appearance + "
          f"rasterize {budget['frame_ms']:.1f} ms/frame x {budget['frames_per_chunk']:g} frames "
          f"per chunk; look-ahead {1000 * config.lookahead_seconds:.0f} ms")  # fmt: skip
    print(
        f"{'mode':>9} {'size':>5} {'frames':>6} {'first ms':>9} {'median ms':>9} "
        f"{'p90 ms':>8} {'max ms':>8}"
    )
    for r in rows:
        print(
            f"{r['mode']:>9} {r['resolution'] or '-':>5} {r['frames']:>6} "
            f"{r['first_frame_ms']:>9.1f} {r['steady_median_ms']:>9.1f} "
            f"{r['steady_p90_ms']:>8.1f} {r['max_ms']:>8.1f}"
        )
    result = {
        "benchmark": "streaming_latency",
        "device": args.device,
        "backend": args.backend,
        "quick": args.quick,
        "bundle": kind,
        "seconds": seconds,
        "chunk_seconds": args.chunk,
        "lookahead_seconds": config.lookahead_seconds,
        "context_seconds": config.context_seconds,
        "machine": info,
        "budget": budget,
        "vs_offline": vs_offline,
        "results": rows,
    }
    print_result(result)
    return result


if __name__ == "__main__":
    main()
