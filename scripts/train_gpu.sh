#!/usr/bin/env bash
# Train a ZMD model for one family on GPUs: build large datasets with every CPU core, then torchrun DDP.
#   FAMILY=default NPROC=8 bash scripts/train_gpu.sh
#   KIND=ddpm FAMILY=paper-2shot bash scripts/train_gpu.sh      (the comparison models: same nets and data, no prior)
#   FAMILY=my_family.toml N=200000 STEPS=200000 bash scripts/train_gpu.sh      (a family of your own)
#   TORCHRUN_ARGS="--nnodes 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500" bash scripts/train_gpu.sh  (multi-node;
#   default --standalone); MODEL_ARGS replaces the family's model flags (e.g. for a planes-mode family of your own);
#   RESUME=--resume continues OUT; DRY_RUN=1 builds nothing and prints the resolved training config.
#   Multi-node: build once (BUILD_ONLY=1, on one node of the shared filesystem), then start every node with
#   SKIP_BUILD=1, so that no two nodes write the same dataset folder.
# Defaults: N=100000 training samples of SIZE=256 px (seed 101), VAL_N=512 validation samples (seed 102), STEPS=100000
# of global BATCH=64, WIDTH=16 BLOCKS=2 LEVELS=4: 10.5 M parameters, 20 MiB in fp16, under the 25 MiB a shipped
# model may weigh (tests/training/test_gpu_recipe.py). Wider nets (WIDTH=32: 32 M, 60 MiB) are fine to use by
# path (`--model runs/.../checkpoints/best`) but cannot ship in this repository.
# Data: the shipped models' mixes (scripts/sources.sh); paper families add a low-noise third, as the CPU recipe.
# Then: `python scripts/export_shipped.py FAMILY` reads OUT (default runs/zmd-FAMILY) and its COMMAND.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
CQ=${CQ:-.venv/bin/chromaqpi} PY=${PY:-.venv/bin/python}
source scripts/sources.sh  # DEFAULT_DL_SRC, PAPER_SRC
FAMILY=${FAMILY:-default} N=${N:-100000} VAL_N=${VAL_N:-512} SIZE=${SIZE:-256} STEPS=${STEPS:-100000} BATCH=${BATCH:-64}
WIDTH=${WIDTH:-16} BLOCKS=${BLOCKS:-2} LEVELS=${LEVELS:-4} SEED=${SEED:-1}
NPROC=${NPROC:-$($PY -c "import torch; print(max(torch.cuda.device_count(), 1))")}
WORKERS=${WORKERS:-$(nproc)} LOADERS=${LOADERS:-4}
KIND=${KIND:-zmd} tag=$(basename "$FAMILY" .toml)
OUT=${OUT:-runs/$KIND-$tag}

DRY=$([ "${DRY_RUN:-0}" = 1 ] && echo 1 || true)
build() {  # family source n seed out [extra]
  [ -n "$DRY" ] || [ "${SKIP_BUILD:-0}" = 1 ] && return
  $CQ dataset build --microscope "$1" --source "$2" --n "$3" --size "$SIZE" --seed "$4" --out "$5" \
    --workers "$WORKERS" --quiet "${@:6}"
}

case $FAMILY in
  paper-2shot|paper-rgb)
    src=$PAPER_SRC model=(${MODEL_ARGS:---sigma-zmd 0.25 --prior tie})
    build "$FAMILY" "$src" $((N * 2 / 3)) 101 "data/gpu-$tag-train"
    build "scripts/$FAMILY-lownoise.toml" "$src" $((N / 3)) 103 "data/gpu-$tag-lownoise-train"
    build "$FAMILY" "$src" "$VAL_N" 102 "data/gpu-$tag-val"
    # as the CPU recipe: the checkpoint is also chosen on low-noise and noiseless images
    build "scripts/$FAMILY-lownoise.toml" "$src" "$VAL_N" 104 "data/gpu-$tag-lownoise-val"
    build "$FAMILY" "$src" "$VAL_N" 105 "data/gpu-$tag-noiseless-val" --no-noise
    val="data/gpu-$tag-noiseless-val,data/gpu-$tag-lownoise-val,data/gpu-$tag-val"
    train="data/gpu-$tag-train,data/gpu-$tag-lownoise-train" ;;
  *)  # default and families of your own (RGB cameras): lateral colour in a quarter of the samples
    src=$DEFAULT_DL_SRC model=(${MODEL_ARGS:---sigma-zmd 0.3 --channel-shift 2 --channel-shift-prob 0.25})
    build "$FAMILY" "$src" "$N" 101 "data/gpu-$tag-train"
    build "$FAMILY" "$src" "$VAL_N" 102 "data/gpu-$tag-val"
    val="data/gpu-$tag-val" train="data/gpu-$tag-train" ;;
esac
[ "$KIND" = zmd ] || model=(${MODEL_ARGS:-})  # comparison models: no prior, residual scale or colour shifts
[ "${BUILD_ONLY:-0}" = 1 ] && exit 0
if [ -z "$DRY" ] && [ -e "$OUT/train_config.json" ] && [ -z "${RESUME:-}" ]; then
  echo "train_gpu.sh: $OUT already holds a run: RESUME=--resume continues it, or set OUT" >&2; exit 2
fi

launcher=(torchrun ${TORCHRUN_ARGS:---standalone} --nproc_per_node "$NPROC" -m chromaqpi.cli.main)
[ -n "$DRY" ] && launcher=($CQ)
cmd=("${launcher[@]}" train --config scripts/train_gpu.toml --model "$KIND" --microscope "$FAMILY" --data "$train"
     --val "$val" --out "$OUT" --steps "$STEPS" --batch-size "$BATCH" --crop "$SIZE" --width "$WIDTH"
     --levels "$LEVELS" --blocks "$BLOCKS" --workers "$LOADERS" --val-batch-size 64 --seed "$SEED" "${model[@]}"
     ${RESUME:-} ${DRY:+--dry-run})
if [ -z "$DRY" ]; then
  mkdir -p "$OUT"
  prefix=""; [ "$KIND" = zmd ] || prefix="KIND=$KIND "
  echo "${prefix}FAMILY=$FAMILY N=$N VAL_N=$VAL_N SIZE=$SIZE STEPS=$STEPS BATCH=$BATCH WIDTH=$WIDTH BLOCKS=$BLOCKS LEVELS=$LEVELS" \
       "SEED=$SEED NPROC=$NPROC${MODEL_ARGS:+ MODEL_ARGS=\"$MODEL_ARGS\"}${TORCHRUN_ARGS:+ TORCHRUN_ARGS=\"$TORCHRUN_ARGS\"}" \
       "OUT=$OUT bash scripts/train_gpu.sh" > "$OUT/COMMAND.txt"
fi
"${cmd[@]}"
