#!/usr/bin/env bash
# Deferred class re-weighting (Cao et al. 2019, "LDAM-DRW"), approximated in two `maskclf cv` stages
# (issue "Model quality", session 13): stage 1 fine-tunes the bundled start on each fold WITHOUT class
# weights for 20 epochs (features learnt from every face equally); stage 2 starts each fold from its own
# stage-1 model and trains 20 more epochs WITH the default inverse-frequency weights (the boundary moves to
# the rare class). Each stage has its own cosine schedule and a fresh optimizer, so this is DRW's idea, not
# its exact schedule. The folds are the same as every other recipe's (same data, --folds 5, split seed).
#
# Usage:  bash bench/deferred_weights.sh [VOC_DIR] [FOLDS...]     (defaults: ../shared/data/face-mask-detection, 1-5)
# Writes bench/out/quality/_drw_stage1 (a cv folder) and bench/out/quality/maskclf_drw_f<F> (one cv folder
# per fold: each fold starts from a different run, so each is its own recipe to maskclf).
set -euo pipefail
cd "$(dirname "$0")/.."
VOC=${1:-../shared/data/face-mask-detection}; shift || true
FOLDS=${*:-1 2 3 4 5}
Q=bench/out/quality
for F in $FOLDS; do
  maskclf cv --data "$VOC" --folds 5 --fold "$F" model.init_from=bundled train.learning_rate=3e-4 \
    train.class_weight=none train.epochs=20 --out $Q/_drw_stage1 --quiet
  RUN=$(python -c "import glob, json; print([r[:-9] for r in sorted(glob.glob('$Q/_drw_stage1/fold-$F-of-5/*/run.json'))
                                               if json.load(open(r)).get('status') == 'complete'][-1])")
  maskclf cv --data "$VOC" --folds 5 --fold "$F" model.init_from="$RUN" train.learning_rate=3e-4 \
    train.epochs=20 --out $Q/maskclf_drw_f"$F" --quiet
done
