"""Training speed: step time and memory of the S2G and subject (appearance) stages.

Each (stage, config) pair builds the config's model and data module exactly as `lightning
fit -c CONFIG` does (EmoTalkCLI, run=False), then trains them with a plain Trainer (no
logger, no checkpoints, no validation) for `--warmup` + `--steps` steps; a callback times
every step (CUDA synchronised) from batch start to batch end, and samples peak memory over
the timed steps (CUDA: max allocated growth; CPU: peak RSS growth). Reported: median step
seconds (wall and process CPU), steps/s and peak memory. Subject configs are timed in both
training stages: `canonical` (canonical Gaussians only) and `dynamic` (G2ANet, completion and
blending in the graph), by moving `canonical_steps` past or before the timed steps.

Configs: S2G `tiny` (configs/tiny/s2g.yaml) and `full` (configs/s2g.yaml); subject `tiny`
(configs/tiny/subject.yaml), `default` (configs/subject.yaml: the demo subject's CPU config)
and `full` (configs/full/subject.yaml: 85,500 OTF Gaussians, 512x512, gsplat; needs CUDA and
is reported "not measured" without it). Data folders default to the configs' own (generated
on first use); `--data NAME=DIR` points a config at an existing dataset (e.g.
`--data s2g:full=data/builtin-small-speech`).

    python benchmarks/train_speed.py [--stages s2g,subject] [--configs tiny,full] [--steps 10]
    python benchmarks/train_speed.py --quick --data tiny=DIR   # tiny, few steps, for tests

Prints a table and ends with one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# isort: off
from _common import (  # noqa: E402  (sets OMP_WAIT_POLICY before torch loads)
    REPO,
    PeakMemory,
    machine,
    print_machine,
    print_result,
    sync,
)

import torch  # noqa: E402

# isort: on

CONFIGS = {
    ("s2g", "tiny"): "configs/tiny/s2g.yaml",
    ("s2g", "full"): "configs/s2g.yaml",
    ("subject", "tiny"): "configs/tiny/subject.yaml",
    ("subject", "default"): "configs/subject.yaml",
    ("subject", "full"): "configs/full/subject.yaml",
}
DEFAULT_DATA = {("s2g", "full"): "data/builtin-small-speech", ("subject", "default"): "data/demo-subject"}  # fmt: skip # noqa: E501
QUICK_OVERRIDES = {  # the mechanics at tiny cost: short clips, small images, few Gaussians
    "s2g": ["--data.init_args.max_seconds=1.0"],
    "subject": [
        "--data.init_args.image_scale=0.5",
        "--model.init_args.num_otf=200",
        "--model.init_args.canonical_steps=1",
    ],
}


def step_timer(warmup: int, device: str):
    """A Lightning callback timing each training step after `warmup` steps."""
    from lightning.pytorch.callbacks import Callback

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.walls: list[float] = []
            self.cpus: list[float] = []
            self.seen = 0
            self.mem = PeakMemory(device)
            self.started = False

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if self.seen == warmup and not self.started:
                self.mem.__enter__()
                self.started = True
            sync(device)
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            sync(device)
            if self.seen >= warmup:
                self.walls.append(time.perf_counter() - self.t0)
                self.cpus.append(time.process_time() - self.c0)
            self.seen += 1

        def on_train_end(self, trainer, pl_module) -> None:
            if self.started:
                self.mem.__exit__(None, None, None)

    return StepTimer()


def measure(
    stage: str,
    config: str,
    data_dir: str | None,
    steps: int,
    warmup: int,
    device: str,
    quick: bool,
    phase: str | None = None,
) -> dict[str, object]:
    """Train (stage, config) for warmup + steps steps and time the last `steps`; a subject's
    `phase` "canonical" keeps every step in the canonical stage, "dynamic" starts in the
    dynamic stage (G2ANet, completion and blending in the graph)."""
    import lightning

    from emotalk3d.training.cli import EmoTalkCLI

    path = REPO / CONFIGS[(stage, config)]
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "-c", str(path),
            f"--trainer.default_root_dir={tmp}",
            "--trainer.logger=false",
            f"--trainer.callbacks.init_args.dirpath={tmp}",  # never touch runs/
        ]  # fmt: skip
        if data_dir:
            args.append(f"--data.init_args.data_dir={data_dir}")
        if quick:
            args += QUICK_OVERRIDES[stage]
        if phase is not None:
            n = 0 if phase == "dynamic" else warmup + steps + 1
            args.append(f"--model.init_args.canonical_steps={n}")
        cli = EmoTalkCLI(args=args, run=False)
        timer = step_timer(warmup, device)
        trainer = lightning.Trainer(
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
            max_steps=warmup + steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=[timer],
            default_root_dir=tmp,
        )
        trainer.fit(cli.model, datamodule=cli.datamodule)
    if not timer.walls:
        raise RuntimeError(f"{stage}:{config}: no timed step ran (the data gave too few batches)")
    wall = statistics.median(timer.walls)
    return {
        "stage": stage,
        "config": config,
        "phase": phase,
        "config_path": CONFIGS[(stage, config)],
        "data_dir": data_dir,
        "steps": len(timer.walls),
        "step_s": wall,
        "cpu_s": statistics.median(timer.cpus),
        "steps_per_s": 1.0 / wall,
        "peak_mem_mb": round(timer.mem.growth_mb, 1),
    }


def parse_data(items: list[str]) -> dict[tuple[str, str], str]:
    """`--data NAME=DIR` items: NAME is `config` (every stage) or `stage:config`."""
    out: dict[tuple[str, str], str] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not folder:
            raise ValueError(f"--data takes NAME=DIR (e.g. tiny=/tmp/data), got {item!r}")
        stage, _, config = name.rpartition(":")
        for key in CONFIGS:
            if key[1] == config and stage in ("", key[0]):
                out[key] = folder
    return out


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", default="s2g,subject", help="comma list: s2g, subject")
    p.add_argument("--configs", default=None, help="comma list: tiny, default, full")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 3)")
    p.add_argument("--data", action="append", default=[], help="NAME=DIR data folder")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny config, few cheap steps")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda needs CUDA; use --device cpu")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if not stages or set(stages) - {"s2g", "subject"}:
        p.error(f"--stages takes s2g and/or subject, got {args.stages!r}")
    configs = (args.configs or ("tiny" if args.quick else "tiny,default,full")).split(",")
    try:
        data = {**DEFAULT_DATA, **parse_data(args.data)}
    except ValueError as e:
        p.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (2 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    info = machine()
    print_machine(f"train_speed: device={args.device}", info)
    rows: list[dict[str, object]] = []
    for stage in stages:
        for config in configs:
            key = (stage, config.strip())
            if key not in CONFIGS:
                continue
            if key == ("subject", "full") and args.device != "cuda":
                why = "not measured: needs CUDA (gsplat, 512x512, 85.5k OTF)"
                rows.append(
                    {"stage": stage, "config": "full", "config_path": CONFIGS[key], "skipped": why}
                )
                continue
            folder = data.get(key)
            if folder and not (REPO / folder).exists() and not Path(folder).exists():
                folder = None  # fall back to the config's own folder (generated on first use)
            phases: tuple[str | None, ...] = (None,)
            if stage == "subject":
                phases = ("dynamic",) if args.quick else ("canonical", "dynamic")
            for phase in phases:
                rows.append(
                    measure(stage, key[1], folder, steps, warmup, args.device, args.quick, phase)
                )
    print(f"\n{'stage':>8} {'config':>8} {'phase':>9} {'steps':>5} {'step s':>8} {'cpu s':>8} {'steps/s':>8} {'peak MB':>8}")  # fmt: skip # noqa: E501
    for r in rows:
        if "skipped" in r:
            print(f"{r['stage']:>8} {r['config']:>8}  {r['skipped']}")
            continue
        print(
            f"{r['stage']:>8} {r['config']:>8} {r['phase'] or '-':>9} {r['steps']:>5} "
            f"{r['step_s']:>8.3f} "
            f"{r['cpu_s']:>8.3f} {r['steps_per_s']:>8.2f} {r['peak_mem_mb']:>8.1f}"
        )
    result = {
        "benchmark": "train_speed",
        "device": args.device,
        "quick": args.quick,
        "warmup": warmup,
        "machine": info,
        "results": rows,
    }
    print_result(result)
    return result


if __name__ == "__main__":
    main()
