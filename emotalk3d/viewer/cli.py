"""`emotalk3d viewer`: serve the interactive web viewer (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import sys

from emotalk3d.viewer.settings import (
    DEFAULT_CACHE_MB,
    DEFAULT_MAX_LIVE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_UPLOAD_MB,
)

WS_MAX_MESSAGE_BYTES = 1 << 20
"""Largest websocket message uvicorn accepts (the live mode's chunks are far smaller)."""


def register(subparsers) -> None:
    """Add the `viewer` subcommand."""
    p = subparsers.add_parser(
        "viewer",
        help="serve the interactive 3D talking-head viewer in the browser",
        description=(
            "Start the web viewer: upload speech or pick an example, choose an emotion, and "
            "watch the Gaussian head talk, from any angle. Binds 127.0.0.1 unless --host says "
            "otherwise."
        ),
    )
    p.add_argument(
        "--checkpoint", default=None, help="bundle folder (default: the demo, checkpoints/demo)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        help=f"generation jobs waiting or running before 429 (default {DEFAULT_MAX_QUEUE})",
    )
    p.add_argument(
        "--cache-mb",
        type=float,
        default=DEFAULT_CACHE_MB,
        help=f"MB of finished clips kept, least recently used evicted (default "
        f"{DEFAULT_CACHE_MB:g})",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"upload size limit in MB (default {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        help=f"longest accepted audio in seconds (default {DEFAULT_MAX_SECONDS:g})",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads for generation (default 1)"
    )
    p.add_argument(
        "--max-live",
        type=int,
        default=DEFAULT_MAX_LIVE,
        help=f"live-mode (microphone) sessions at a time; 0 turns the live mode off (default "
        f"{DEFAULT_MAX_LIVE})",
    )
    p.add_argument(
        "--server-render",
        action="store_true",
        help="also serve server-rendered JPEG frames over a websocket (needs CUDA)",
    )
    p.set_defaults(handler=run_viewer)


def run_viewer(args: argparse.Namespace) -> int:
    """Load the bundle, build the app and serve it until interrupted."""
    if args.server_render:
        import torch

        if not torch.cuda.is_available():
            raise ValueError(
                "--server-render needs a CUDA GPU (torch.cuda.is_available() is False on this "
                "machine); leave the flag out: the browser renders the Gaussians itself"
            )
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if args.max_queue < 1:
        raise ValueError(f"--max-queue must be at least 1, got {args.max_queue}")
    if args.cache_mb < 0:
        raise ValueError(f"--cache-mb must be >= 0, got {args.cache_mb}")
    if args.max_live < 0:
        raise ValueError(f"--max-live must be >= 0, got {args.max_live}")
    import socket

    import uvicorn

    from emotalk3d.viewer.server import create_app, web_dist

    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:  # before the model loads: a taken port is known at once
        sock.bind((args.host, args.port))
    except OSError as err:
        sock.close()
        raise ValueError(
            f"cannot listen on {args.host}:{args.port}: {err.strerror}; is another viewer "
            "running? Choose another --port (0 picks a free one) or --host"
        ) from None
    try:
        app = create_app(
            args.checkpoint,
            max_queue=args.max_queue,
            cache_mb=args.cache_mb,
            max_upload_mb=args.max_upload_mb,
            max_seconds=args.max_seconds,
            torch_threads=args.threads,
            server_render=args.server_render,
            max_live=args.max_live,
        )
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"emotalk3d viewer: http://{shown}:{port}/", flush=True)
    if not (web_dist() / "index.html").is_file():
        print(
            "note: the web client is not built; run `make web` (npm ci && npm run build in "
            "viewer/web). The API works without it.",
            file=sys.stderr,
        )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: listening on {args.host}, reachable from other machines; the viewer "
            "has no authentication",
            file=sys.stderr,
        )
    # websocket messages over 1 MiB are refused by uvicorn itself (close 1009); the live
    # mode's chunks are at most 1 s of float32 (768 kB at 192 kHz)
    config = uvicorn.Config(
        app, log_level="info", timeout_graceful_shutdown=5, ws_max_size=WS_MAX_MESSAGE_BYTES
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its clean shutdown
        pass
    print("emotalk3d viewer: stopped", flush=True)
    return 0
