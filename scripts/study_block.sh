#!/usr/bin/env bash
# One block of the confirmatory study (docs/study/protocol.md) on one core, one torch thread: for each seed, every
# protocol mode (the experiment's sweep) in one go on this machine; then the block's per-run rows as a shard.
#
#   bash scripts/study_block.sh DATASET SEEDS NAME [train.py overrides ...]
#   bash scripts/study_block.sh isbi2012 0 block1-seed0                           # seed 0 at the budget
#   bash scripts/study_block.sh isbi2012 0 block1_2n-seed0 trainer.max_steps=3200  # its budget check's 2N runs
#   bash scripts/study_block.sh isbi2012 1000 pilot1000 task.optimizer.lr=0.001,0.003,0.01   # the pilot
#
# Two cores: two blocks side by side. Runs go to logs/study/<DATASET>/<NAME>/seed<S>/; a seed whose runs all
# finished is not run again, so the same command after a stop reruns only the unfinished seeds, from the start.
# The shard goes to docs/study/confirmatory/<DATASET>/<NAME>.csv. DATA_DIR must name the datasets' folder.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$1 seeds=$2 name=$3
shift 3
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
runs=logs/study/$data/$name
for seed in $seeds; do
  [[ -f $runs/seed$seed/finished ]] && continue
  rm -rf "$runs/seed$seed"
  python train.py -m experiment=upsample_study "data=$data" "seed=$seed" "$@" \
    callbacks.progress_bar.every_s=300 "hydra.sweep.dir=$runs/seed$seed"
  touch "$runs/seed$seed/finished"
done
python scripts/report.py shard "$runs" --out "docs/study/confirmatory/$data/$name.csv"
