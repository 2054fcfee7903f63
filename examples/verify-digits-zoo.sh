#!/usr/bin/env bash
# The verify issue's acceptance run: train the four zoo models on digits, export each one for the
# CPU targets at fp32 and int8, and verify every bundle with the default thresholds.
#
#   examples/verify-digits-zoo.sh                    # everything (tens of minutes on 2 cores)
#   MODELS=squeezenet1_1 TARGETS=onnx PRECISIONS=int8 EPOCHS=8 examples/verify-digits-zoo.sh
#
# Writes OUT/summary.md (one Markdown table per bundle) and OUT/bundles/*.verify.json; exits 1
# when any bundle fails verification, after running them all.
set -euo pipefail

MODELS=${MODELS:-"mobilenet_v2 shufflenet_v2_x1_0 squeezenet1_1 resnet18"}
TARGETS=${TARGETS:-"onnx x86 arm"}
PRECISIONS=${PRECISIONS:-"fp32 int8"}
EPOCHS=${EPOCHS:-} # empty: the training recipe's default
OUT=${OUT:-runs/verify-digits-zoo}

mkdir -p "$OUT/bundles"
failed=0
for model in $MODELS; do
  # A checkpoint from an earlier run is reused: training is the slow part.
  if [ ! -f "$OUT/$model/model.pt" ]; then
    edgecnn train "$model" --data digits ${EPOCHS:+--epochs "$EPOCHS"} --out "$OUT/$model"
  fi
  for target in $TARGETS; do
    for precision in $PRECISIONS; do
      bundle="$OUT/bundles/$model-$target-$precision"
      edgecnn export "$OUT/$model/model.pt" --target "$target" --precision "$precision" --out "$bundle" --force
      if ! edgecnn verify "$bundle" --json "$bundle.verify.json" --junit "$bundle.junit.xml" \
          --summary "$OUT/summary.md"; then
        failed=1
      fi
    done
  done
done
echo "summary: $OUT/summary.md"
exit $failed
