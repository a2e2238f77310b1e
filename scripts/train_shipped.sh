#!/usr/bin/env bash
# Train the shipped ZMD models on this CPU (the recipe recorded in each MODEL_CARD.md).
# Datasets: chromaqpi dataset build --microscope FAMILY --n 2048 --size 128 --seed 11 --out data/FAMILY-train
#           chromaqpi dataset build --microscope FAMILY --n 64   --size 128 --seed 12 --out data/FAMILY-val
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-1000}
for fam in ${FAMILIES:-paper-2shot default paper-rgb}; do
  .venv/bin/chromaqpi train --model zmd --data data/$fam-train --val data/$fam-val --microscope $fam \
    --out runs/zmd-$fam --steps "$STEPS" --batch-size 8 --crop 64 --width 16 --levels 3 --blocks 1 \
    --val-every 250 --seed 1 ${RESUME:-}
done
