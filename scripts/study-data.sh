#!/usr/bin/env bash
# The splits the second and third studies (configs/study2.toml, configs/study3.toml) train
# and evaluate on, cut from the real set that `just data-real` builds (default
# data/cifar10h-real), with hkd-data itself:
#   train8k          8,000 of CIFAR-10H's 10,000 images (the rest of a stratified draw)
#   test2k           the other 2,000, held out (stratified, seed 0): human alignment is
#                    measured on images no run trained on
#   train8k-shuffled train8k with its human rows permuted within each hard class (seed 0)
# Idempotent: existing splits are kept. Each EPS=ALPHA argument names a human-label
# smoothing ε and the label smoothing α a study config hard-codes as its matched control:
# the script computes the α whose true-class probability (1 - α) + α/C equals the mean
# over train8k of the smoothed human target's (h_y + ε)/(1 + C·ε), prints it, and fails if
# it does not round to the given α (to its number of decimals).
#
#   scripts/study-data.sh [--data DATA_DIR] EPS=ALPHA ...
#   e.g. scripts/study-data.sh 0.02=0.21 (study 2), scripts/study-data.sh 0.001=0.0623 (study 3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="$root/data/cifar10h-real"
if [[ "${1:-}" == "--data" ]]; then
    data="$2"
    shift 2
fi
hkd_data="${HKD_DATA:-$root/target/release/hkd-data}"
if [[ ! -f "$data/dataset.toml" ]]; then
    echo "error: $data has no dataset.toml: build it first with \`just data-real\`" >&2
    exit 1
fi
if [[ ! -x "$hkd_data" ]]; then
    echo "error: $hkd_data not found: build it (\`just build\`) or set HKD_DATA" >&2
    exit 1
fi
if [[ ! -d "$data/train8k" || ! -d "$data/test2k" ]]; then
    "$hkd_data" holdout --from "$data" --out "$data" --split train --held-out 2000 \
        --rest-name train8k --held-out-name test2k --seed 0
fi
if [[ ! -d "$data/train8k-shuffled" ]]; then
    "$hkd_data" shuffle-human --from "$data" --out "$data" --split train8k \
        --name train8k-shuffled --seed 0
fi
[[ $# -gt 0 ]] || exit 0
summary="$("$hkd_data" inspect "$data" --split train8k --json)"
for pair in "$@"; do
    eps="${pair%%=*}"
    want="${pair#*=}"
    if [[ "$pair" != *=* || -z "$eps" || -z "$want" ]]; then
        echo "error: argument \`$pair\` is not EPS=ALPHA (e.g. 0.001=0.0623)" >&2
        exit 2
    fi
    HKD_SUMMARY="$summary" python3 - "$eps" "$want" <<'PY'
import json, os, sys
eps, want = float(sys.argv[1]), sys.argv[2]
s = json.loads(os.environ["HKD_SUMMARY"])
split = s[0] if isinstance(s, list) else s
m = split["summary"]["human"]["mean_true_class_probability"]
c = split["summary"]["classes"] if "classes" in split["summary"] else 10
smoothed = (m + eps) / (1 + c * eps)
alpha = (1 - smoothed) * c / (c - 1)
decimals = len(want.split(".")[1]) if "." in want else 0
got = f"{alpha:.{decimals}f}"
print(f"label smoothing matched to the ε = {sys.argv[1]} human target on train8k: "
      f"α = {alpha:.6f} (mean p(true) {smoothed:.6f})")
if got != f"{float(want):.{decimals}f}":
    sys.exit(f"error: the study config uses α = {want} for ε = {sys.argv[1]}; these data give {got}")
PY
done
