#!/usr/bin/env bash
# Validation shards of 256 px samples for benchmarks/bench_orientations.py: the shipped recipe's sources
# and validation seeds (12; 22 for the low-noise set), 16 samples each. Never the test sets.
# `build_bench_val.sh large`: 8 samples of 512 px per family instead, for benchmarks/bench_tiles.py.
set -euo pipefail
cd "$(dirname "$0")/.."
CQ=.venv/bin/chromaqpi
source scripts/sources.sh
build() {  # microscope source seed out
  $CQ dataset build --microscope "$1" --source "$2" --n 16 --size 256 --seed "$3" --shard-size 16 --out "$4" --quiet
}
if [ "${1:-}" = large ]; then
  large() {  # microscope source seed out
    $CQ dataset build --microscope "$1" --source "$2" --n 8 --size 512 --seed "$3" --shard-size 8 --out "$4" --quiet
  }
  large default "$DEFAULT_SRC" 12 data/default-val512
  large scripts/paper-2shot-lownoise.toml "$PAPER_SRC" 22 data/paper-2shot-lownoise-val512
  large paper-2shot "$PAPER_SRC" 12 data/paper-2shot-val512
  large paper-rgb "$PAPER_SRC" 12 data/paper-rgb-val512
  exit 0
fi
build default "$DEFAULT_SRC" 12 data/default-val256
build scripts/paper-2shot-lownoise.toml "$PAPER_SRC" 22 data/paper-2shot-lownoise-val
build paper-2shot "$PAPER_SRC" 12 data/paper-2shot-val
