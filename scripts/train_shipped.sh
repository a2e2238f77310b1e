#!/usr/bin/env bash
# Build the datasets and train the shipped ZMD models on a CPU: the recipe recorded in each MODEL_CARD.md.
#   FAMILIES="default paper-2shot" bash scripts/train_shipped.sh      (STEPS_<family> overrides the step count)
#   KINDS="ddpm cvdm" FAMILIES=paper-2shot bash scripts/train_shipped.sh   (the comparison models, same budget)
# Datasets are built once (re-running resumes/skips them); training threads: OMP_NUM_THREADS (1 per job here).
# On GPUs the same command scales with torchrun (see the model cards).
set -euo pipefail
cd "$(dirname "$0")/.."
CQ=.venv/bin/chromaqpi
DEFAULT_SRC='cells(n_objects=[1,6]):0.3,rbc(n_objects=[1,8]):0.15,bacteria(n_objects=[2,12]):0.12,beads(n_objects=[1,4]):0.08,blobs(n_objects=[1,5]):0.1,textures:0.1,skimage-train:0.15'
PAPER_SRC='skimage-train:0.75,textures(opd_max_um=[0.15,0.32]):0.25'

build() {  # family source n size seed out shard
  $CQ dataset build --microscope "$1" --source "$2" --n "$3" --size "$4" --seed "$5" --shard-size "$7" --out "$6" --quiet
}

for fam in ${FAMILIES:-default paper-2shot paper-rgb}; do
  case $fam in
    default)
      build default "$DEFAULT_SRC" 10000 128 11 data/default-train 256
      build default "$DEFAULT_SRC" 96 128 12 data/default-val 96
      # Shipped v2: 3000 offset-invariant steps at lr 3e-4 from the v1 model (2000 steps with the raw-offset
      # loss, this script at commit f0ddc90). From scratch: INIT_default= STEPS_default=5000.
      init=${INIT_default-default}
      common=(--config scripts/train_cpu_default.toml --steps "${STEPS_default:-3000}")
      zmd=(--sigma-zmd 0.3 --seed 2 ${init:+--init-from "$init" --lr 3e-4}) ;;
    paper-2shot|paper-rgb)
      build "$fam" "$PAPER_SRC" 3000 256 11 "data/$fam-train" 256
      build "$fam" "$PAPER_SRC" 64 256 12 "data/$fam-val" 64
      var="STEPS_${fam//-/_}"
      # The mean network corrects the TIE estimate (TIE beats an hour-trained plain net on these presets).
      common=(--config scripts/train_cpu_paper.toml --steps "${!var:-3000}")
      zmd=(--sigma-zmd 0.25 --prior tie) ;;
    *) echo "unknown family $fam" >&2; exit 2 ;;
  esac
  for kind in ${KINDS:-zmd}; do
    # comparison models (ddpm, cvdm): the same networks, data and steps, without ZMD's prior and residual scale
    extra=("${common[@]}"); [ "$kind" = zmd ] && extra+=("${zmd[@]}")
    $CQ train --model "$kind" --data "data/$fam-train" --val "data/$fam-val" --microscope "$fam" --out "runs/$kind-$fam" \
      --batch-size 8 --crop 64 --width 16 --levels 4 --blocks 1 --seed 1 "${extra[@]}" ${RESUME:-}
  done
done
