"""Console scripts: `emotalk3d <command> ...` and `lightning fit -c <config>`.

Each command lives in its own module exposing `register(subparsers)`; the module imports its
heavy dependencies inside the handler so `emotalk3d --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module that defines `register(subparsers)`; later work adds entries.
COMMAND_MODULES: dict[str, str] = {
    "data": "emotalk3d.data.cli",
    "render": "emotalk3d.inference.cli",
    "viewer": "emotalk3d.viewer.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotalk3d",
        description="Speech to a free-view, emotion-controllable 3D Gaussian talking head.",
    )
    from emotalk3d import __version__

    parser.add_argument("--version", action="version", version=f"emotalk3d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES.values():
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `emotalk3d` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as err:  # user errors: message, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


def lightning_main(argv: list[str] | None = None) -> None:
    """Entry point of the `lightning` console script: LightningCLI over our modules.

    `lightning fit -c configs/subject.yaml` and friends; the YAML names model and data classes
    with `class_path`. `lightning run ...` is forwarded to Lightning's own Fabric launcher.
    """
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] == "run":
        from lightning.fabric.cli import _main as fabric_main

        sys.argv = ["fabric", *words]
        fabric_main()
        return
    from emotalk3d.training.cli import EmoTalkCLI

    # LightningCLI reads sys.argv itself when given no args (and warns when given them anyway).
    EmoTalkCLI() if argv is None else EmoTalkCLI(args=argv)


if __name__ == "__main__":
    sys.exit(main())
