#!/usr/bin/env bash
# The network frontier of BENCHMARKS.md: cheaper variants of the default network, each
# trained with recipes/default.yaml unchanged otherwise (same seed, data, split and
# budget), calibrated on the validation split and reported on the test split, which
# chooses nothing; then every bundle timed against the shipped default in one run.
#
#   scripts/frontier.sh [ARM ...] [bench]
#
# Without arguments: every arm (stride2 px192 px160), then bench. Each arm trains for about
# 10 minutes on 2 quiet cores, longer for a new crop size, whose crops are cut again into a
# cache of their own. "bench" times the bundles there are and prints the table.
#
# Runs go to runs/frontier/ARM, reports to docs/model/frontier/ARM/{validation,test}, the
# timing to docs/model/frontier/bench.{md,json}. Training and evaluation run at nice 19.
set -euo pipefail
cd "$(dirname "$0")/.."
FW=.venv/bin/fakewatch
RECIPE=recipes/default.yaml
OUT=docs/model/frontier

# sets ARGS to the overrides of arm $1
arm_settings() {
    case "$1" in
        # the decoder stops at 1/2 resolution, the logits are upsampled bilinearly
        stride2) ARGS=(--set spec.mask_stride=2 --set "spec.decoder_channels=[128,64,32,16]") ;;
        px192) ARGS=(--set spec.input_size=192 --set cache=../runs/cache-192) ;;
        px160) ARGS=(--set spec.input_size=160 --set cache=../runs/cache-160) ;;
        *) echo "unknown arm $1" >&2; return 1 ;;
    esac
}

ARMS=("$@")
if [[ ${#ARMS[@]} -eq 0 ]]; then
    ARMS=(stride2 px192 px160 bench)
fi
BENCH=no
for arm in "${ARMS[@]}"; do
    if [[ $arm == bench ]]; then
        BENCH=yes
        continue
    fi
    arm_settings "$arm"
    nice -n 19 $FW train "$RECIPE" --quiet "${ARGS[@]}" --set "name=frontier-$arm" \
        --set "output=../runs/frontier/$arm"
    bundle=runs/frontier/$arm/bundle
    nice -n 19 $FW evaluate "$bundle" --recipe "$RECIPE" --split validation --calibrate \
        --out "$OUT/$arm/validation" --quiet
    nice -n 19 $FW evaluate "$bundle" --recipe "$RECIPE" --split test --out "$OUT/$arm/test" \
        --quiet
    # the mask grids show faces from the development samples, which are not redistributed
    rm -f "$OUT/$arm"/*/masks*.png
done

[[ $BENCH == yes ]] || exit 0
# the default twice: the spread between its two rows is the noise of this run
BUNDLES=(engines/default_bundle)
for arm in stride2 px192 px160; do
    [[ -d runs/frontier/$arm/bundle ]] && BUNDLES+=("runs/frontier/$arm/bundle")
done
BUNDLES+=(engines/default_bundle)
mkdir -p $OUT
.venv/bin/python benchmarks/frontier.py "${BUNDLES[@]}" --batch 1,8 --json $OUT/bench.json \
    | tee $OUT/bench.md
for bundle in "${BUNDLES[@]:0:${#BUNDLES[@]}-1}"; do
    echo "## $bundle" >> $OUT/bench.md
    $FW engine bench "$bundle" --batch 1,8 | tee -a $OUT/bench.md
done
.venv/bin/python scripts/frontier_table.py | tee $OUT/table.md
