#!/usr/bin/env bash
# The 256 px validation sets that choose between `default` model versions (from v5 on; see its card):
# pictures the model never trained on (pictures-val) and whole 256 px samples of the training mix.
# Never the test sets. scripts/select_default.py scores candidates on them.
set -euo pipefail
cd "$(dirname "$0")/.."
CQ=.venv/bin/chromaqpi
source scripts/sources.sh
$CQ dataset build --microscope default --source pictures-val --n 32 --size 256 --seed 16 --shard-size 32 \
  --out data/natural-val --quiet
$CQ dataset build --microscope default --source "$DEFAULT_SRC" --n 32 --size 256 --seed 14 --shard-size 32 \
  --out data/default-val256-s14 --quiet
