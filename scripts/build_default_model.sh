#!/usr/bin/env bash
# Rebuilds the shipped default model, its classifier baseline and every figure in
# MODEL_CARD.md from a fresh clone, given the development samples in ../shared/data
# (see MODEL_CARD.md for how to fetch the real faces from their packages).
# About 1.5 hours on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
FW=.venv/bin/fakewatch
DATA=../shared/data
OUT=docs/model

$FW train recipes/default.yaml --fresh --quiet
$FW train recipes/classifier.yaml --fresh --quiet

# calibrate on real media the model never saw (whole held-out sources), then report
$FW evaluate runs/default/bundle --held-out-of recipes/default.yaml \
    --compare runs/classifier/bundle --calibrate --out $OUT/held-out --quiet
$FW evaluate runs/default/bundle $DATA/live-swap-dev \
    --compare runs/classifier/bundle --out $OUT/live-swap --quiet
$FW evaluate runs/default/bundle $DATA/ffpp-dev \
    --compare runs/classifier/bundle --out $OUT/ffpp --quiet
$FW evaluate runs/default/bundle $DATA/ffpp-dev/examples --out $OUT/ffpp-examples --quiet
# the mask grids show faces from the development samples, which are not redistributed
rm -f $OUT/*/masks*.png

rm -rf engines/default_bundle
cp -r runs/default/bundle engines/default_bundle
for video in original_sequences/youtube/c23/videos/519 manipulated_sequences/Deepfakes/c23/videos/519_515; do
    $FW scan $DATA/ffpp-dev/$video.mp4 --report $OUT/scan-$(basename $video).json --quiet
done
$FW engine build engines/default_bundle --backend openvino --precision bf16 --calibration $DATA/real-faces/images
$FW engine bench engines/default_bundle --batch 1,8,32 | tee $OUT/bench.txt
