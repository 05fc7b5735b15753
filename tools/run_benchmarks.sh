#!/usr/bin/env bash
# Every NEU benchmark, in the order the results files were produced (2-core CPU; about 4.5 hours).
# Each script writes tools/results/<name>.{json,md} with its exact command, machine and date.
set -uo pipefail  # a failed benchmark is reported and the next one still runs
cd "$(dirname "$0")/.."
R=${KDEFECT_BENCH_RUNS:-/tmp/kdefect-bench-runs}

# Issue 2: classification from scratch
[ -n "${SKIP_BACKBONES:-}" ] || python tools/bench_classify.py backbones --budget-min 5 --max-epochs 60 --runs-dir "$R"
python tools/bench_classify.py best --from-table --budget-min 15 --max-epochs 100 --runs-dir "$R"
python tools/bench_classify.py imbalance --budget-min 3 --max-epochs 40 --runs-dir "$R" \
  --set model.backbone=tiny_cnn --set model.pooling=max --set "data.image_size=[96, 96]" --set train.learning_rate=0.002
python tools/bench_classify.py throughput --epochs 4 --reps 3 --runs-dir "$R"

# Issue 5: detection, each detector with the issue's full 60-minute budget (run one after the other, alone)
python tools/bench_detect.py --budget-min 60 --image-size 256 --archs yolov8 --runs-dir "$R/detect60" --out detect
python tools/bench_detect.py --budget-min 60 --image-size 256 --archs retinanet --append --runs-dir "$R/detect60" \
  --out detect
# (short proof run kept in tools/results/detect_neu.md:
#  python tools/bench_detect.py --budget-min 7 --image-size 160 --runs-dir "$R/detect" --out detect_neu)

# Issue 3: export fidelity / size / latency of the best mobile model
# (distillation: the best run teaches a tiny CNN student)
python tools/bench_export.py --run "$R/best" --out tools/results/export_neu --epochs 2 --distill-epochs 8 \
  --student tiny_cnn
# the same with 5 QAT / pruning epochs instead of 2
python tools/bench_export.py --run "$R/best" --out tools/results/export_neu_qat5 --epochs 5 \
  --variants float32,int8_ptq,int8_qat,int8_prune50_pqat

# Issue 4: edge runtime on the NEU INT8 (QAT) model of the best run
python tools/bench_edge.py --model "$R/best/export/bench/int8_qat.tflite" \
  --images "${KDEFECT_NEU_DIR:-../shared/datasets/neu-det}/images" --n 300 --rounds 3 --out edge_bench_neu \
  --note "NEU best run, QAT INT8"
# Issue 15: every arm side by side (bare invoke, hand-written PIL loop, kdefect-edge and its variants), 2 threads,
# with bit-exact parity against the host pipeline on the run's test split
python tools/bench_edge.py --model "$R/best/export/bench/int8_qat.tflite" \
  --images "${KDEFECT_NEU_DIR:-../shared/datasets/neu-det}/images" --n 300 --threads 2 --rounds 5 \
  --parity-split "$R/best" --out edge_bench_neu_arms --note "NEU best run, QAT INT8"

# Issue 6: trust on the best run (calibration, review, OOD leave-one-class-out, Grad-CAM pointing)
# LOCO: the best config (resnet_small + CBAM, 128 px) retrained per held-out class for 210 s (cosine LR, flips);
# CV: the same config, 210 s per fold.
python tools/bench_trust.py --run "$R/best" --out tools/results/trust_neu --loco-epochs 100 --loco-budget-s 210 \
  --loco-size 128 --cv-config configs/neu_cls_resnet_small_cbam.yaml --cv-folds 5 --cv-set train.epochs=100 \
  --cv-set train.time_budget_s=210 --cv-set train.patience=0 --cv-set train.lr_schedule=cosine \
  --cv-set runs_dir="$R/cv-best"
# LOCO again, with each model also exported as `kdefect tflite --ood-gate knn` does (INT8 + feature output), so the
# device's kNN / max-prob gates are measured beside the host's (replaces the LOCO table; CV and Grad-CAM are kept)
python tools/bench_trust.py --run "$R/best" --out tools/results/trust_neu --loco-epochs 100 --loco-budget-s 210 \
  --loco-size 128 --loco-device --gradcam-n 0 --merge


# Issue 10: the shipped defaults beyond NEU (quick start with only data.source/good_label changed), auto recipe vs
# the previous defaults vs a class-balanced loss, on synthetic, NEU with a dominant good class, ELPV levels/binary
# (pip install elpv-dataset; CC BY-NC-SA 4.0)
python tools/bench_recipe.py
# ELPV targets from scratch on the CPU budget (25 % test split, operating point for a 5 % escape target)
python tools/bench_recipe.py --config configs/elpv_cls_resnet_small.yaml --datasets elpv_binary elpv_levels \
  --arms auto --section elpv_target

# Issue 10: the quick start repeated over 5 seeds in fresh processes (READY count and wall time)
python tools/bench_quickstart.py --seeds 0 1 2 3 4
