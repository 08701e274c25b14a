#!/usr/bin/env bash
# The main job: set up, generate the procedural shapes dataset, train a small
# GaP RetinaNet at 80% sparsity (ERK) on the CPU, evaluate it with mmdet's
# CocoMetric through tools/test.py and print bbox mAP next to the sparsity
# and the dense twin's bbox mAP (the quality benchmark's record; with
# DEMO_DENSE=1 the dense twin is trained and evaluated here too, doubling
# the run time). Re-running reuses the environment and the data; training
# starts afresh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
PY=.venv/bin/python
CONFIG=configs/gap/cgap_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py
DATA=data/synthetic_coco
WORK=work_dirs/demo
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

echo "[demo] 1/3 generating the shapes dataset in $DATA (skipped when present)" >&2
if [[ ! -f "$DATA/annotations/instances_val2017.json" ]]; then
  $PY tools/dataset_converters/gen_synthetic_coco.py --out "$DATA" \
    --num-train 1000 --num-val 100 --img-size 160 --seed 0
fi

echo "[demo] 2/3 training $CONFIG (progress and ETA every 25 iterations)" >&2
rm -rf "$WORK"
$PY tools/train.py "$CONFIG" --work-dir "$WORK"
CKPT="$WORK/$(cat "$WORK/last_checkpoint" | xargs basename)"

echo "[demo] 3/3 evaluating $CKPT with tools/test.py" >&2
$PY tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK/test"

DENSE_ARGS=()
if [[ "${DEMO_DENSE:-0}" == 1 ]]; then
  DENSE=configs/dense/dense_retinanet_r18-fpn_1xb8-2k_synthetic-coco.py
  echo "[demo] +   training and evaluating the dense twin $DENSE" >&2
  rm -rf "$WORK/dense"
  $PY tools/train.py "$DENSE" --work-dir "$WORK/dense"
  DCKPT="$WORK/dense/$(cat "$WORK/dense/last_checkpoint" | xargs basename)"
  $PY tools/test.py "$DENSE" "$DCKPT" --work-dir "$WORK/dense/test"
  DENSE_ARGS=(--dense-test-dir "$WORK/dense/test")
fi
$PY tools/misc/demo_summary.py "$CKPT" "$WORK/test" "${DENSE_ARGS[@]}"
