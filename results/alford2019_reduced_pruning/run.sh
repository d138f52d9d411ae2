# Reduced Alford et al. 2019 pruning curve (see README.md). From the repo root: bash results/alford2019_reduced_pruning/run.sh
set -e
for d in 0.5 0.1 0.02 0.005; do
  for s in 0 1 2; do
    python experiments/prune.py --workdir=${OUT:-/tmp/alford}/d${d}_s${s} --dataset=mnist --data_dir=../shared/datasets/mnist --data_split=test_only \
      --hidden=300,100 --prune_density=$d --prune_iterations=2 --epochs=5 --seed=$s --noprogress 2>&1 | grep -A5 "^     stage"
  done
done
