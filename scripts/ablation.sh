#!/usr/bin/env bash
# The ablation table of MODEL_CARD.md: recipes/default.yaml's data, split and budget
# (ABLATION_EPOCHS epochs of 100 steps of 16 crops), three encoder starts, each with
# and without the SBI changes, and the classifier baseline. Each run is calibrated on
# the validation split and reported on the test split, which chooses nothing.
#
#   scripts/ablation.sh [ARM ...]     (default: every arm; about 25 minutes each on 2 cores)
#
# Runs go to runs/ablation/ARM, reports to docs/model/ablation/ARM/{validation,test}.
set -euo pipefail
cd "$(dirname "$0")/.."
FW=.venv/bin/fakewatch
RECIPE=recipes/default.yaml
EPOCHS=${ABLATION_EPOCHS:-6}
OUT=docs/model/ablation

# MobileNetV2 with TensorFlow padding and 0..1 inputs, as the nsfwjs weights expect;
# the random start uses the same network
MOBILENET=(--set spec.encoder=tu-mobilenetv2_100 --set spec.same_padding=true
    --set "spec.mean=[0,0,0]" --set "spec.std=[1,1,1]")
NSFWJS=("${MOBILENET[@]}" --set init.encoder=nsfwjs-mobilenet_v2)
RANDOM_INIT=("${MOBILENET[@]}" --set init.encoder=none --set init.encoder_lr_scale=1
    --set init.freeze_encoder_bn=false)
LITE0=()  # the recipe's own encoder
SBI=()
# without the SBI changes: independent samples at the old mix, masks from five points,
# the change always on the face, no boundary output
NO_SBI=(--set synthesis.paired=false --set synthesis.landmark_hull=false
    --set synthesis.swap_target=0 --set synthesis.real=0.45 --set spec.boundary_head=false)
CLASSIFIER=(--set spec.head=classification --set spec.boundary_head=false)

# sets ARGS to the overrides of arm $1
arm_settings() {
    case "$1" in
        nsfwjs-sbi) ARGS=("${NSFWJS[@]}" "${SBI[@]}") ;;
        nsfwjs-nosbi) ARGS=("${NSFWJS[@]}" "${NO_SBI[@]}") ;;
        random-sbi) ARGS=("${RANDOM_INIT[@]}" "${SBI[@]}") ;;
        random-nosbi) ARGS=("${RANDOM_INIT[@]}" "${NO_SBI[@]}") ;;
        lite0-sbi) ARGS=("${LITE0[@]}" "${SBI[@]}") ;;
        lite0-nosbi) ARGS=("${LITE0[@]}" "${NO_SBI[@]}") ;;
        classifier) ARGS=("${NSFWJS[@]}" "${SBI[@]}" "${CLASSIFIER[@]}") ;;
        *) echo "unknown arm $1" >&2; return 1 ;;
    esac
}

ARMS=("$@")
if [[ ${#ARMS[@]} -eq 0 ]]; then
    ARMS=(nsfwjs-sbi random-nosbi nsfwjs-nosbi lite0-sbi random-sbi lite0-nosbi classifier)
fi
for arm in "${ARMS[@]}"; do
    arm_settings "$arm"
    $FW train "$RECIPE" --quiet "${ARGS[@]}" --set "name=ablation-$arm" \
        --set "output=../runs/ablation/$arm" --set "optimisation.epochs=$EPOCHS" \
        --set "optimisation.patience=$EPOCHS"
    bundle=runs/ablation/$arm/bundle
    $FW evaluate "$bundle" --recipe "$RECIPE" --split validation --calibrate \
        --out "$OUT/$arm/validation" --quiet
    $FW evaluate "$bundle" --recipe "$RECIPE" --split test --out "$OUT/$arm/test" --quiet
    # the mask grids show faces from the development samples, which are not redistributed
    rm -f "$OUT/$arm"/*/masks*.png
done
