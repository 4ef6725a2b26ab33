#!/usr/bin/env bash
# Regenerate the committed demo model checkpoints/demo from scratch on a CPU (docs/inference.md,
# "The built-in demo"). Each stage is the plain documented command with its default config:
#   1. lightning fit -c configs/s2g.yaml      speech to geometry (generates data/builtin-small)
#   2. lightning fit -c configs/emotion.yaml  emotion extractor (same data)
#   3. lightning fit -c configs/subject.yaml  the Gaussian appearance of subject subj00
#   4. emotalk3d bundle ...                   the inference bundle: S2GNet's head factorised to
#                                              rank 64 and weights stored in float16 (~17 MB)
# About 75 minutes on a 2-core CPU (30 + 30 + 15); each run resumes where it stopped when the
# script is started again (RESUME=1, the default), so an interrupted build loses nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-checkpoints/demo}
export WANDB_SILENT=true

fit() {  # fit NAME: lightning fit -c configs/NAME.yaml, resuming from runs/NAME/.../last.ckpt
  local name=$1 last="runs/$1/checkpoints/last.ckpt"
  if [[ -f "$last" && "${RESUME:-1}" == 1 ]]; then
    "$BIN/lightning" fit -c "configs/$name.yaml" --ckpt_path "$last"
  else
    "$BIN/lightning" fit -c "configs/$name.yaml"
  fi
}

fit s2g
fit emotion
fit subject
"$BIN/emotalk3d" bundle \
  --s2g runs/s2g/checkpoints/last.ckpt \
  --emotion runs/emotion/checkpoints/last.ckpt \
  --subject subj00=runs/subject/checkpoints/last.ckpt \
  --rig builtin:small --head-rank 64 --storage-dtype float16 \
  --out "$OUT"
du -sh "$OUT"
