# hkd: every recipe a researcher or CI needs. `just --list` shows them.
set shell := ["bash", "-euo", "pipefail", "-c"]

# Show the recipes
default:
    @just --list

# Run every test (the command CI runs). Builds the binaries first: the grid and
# end-to-end tests drive the real hkd-train / hkd-eval / hkd-analyze executables.
test:
    cargo build --workspace --bins
    cargo test --workspace --no-fail-fast

# The out-of-workspace example (examples/custom-objective): a lab's own crate that trains a
# student with hkd-losses + hkd-arch and an objective of its own; fails if its loss does not fall
example:
    CARGO_TARGET_DIR=target cargo run --manifest-path examples/custom-objective/Cargo.toml

# Formatting, lints and warning-free API docs, as required before every commit
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# Benchmarks (release build): data pipeline, networks, evaluation, grid rendering, analysis
bench:
    cargo bench -p hkd-datasets --bench pipeline
    cargo bench -p hkd-arch --bench throughput
    cargo run --release -p hkd-evaluator --example eval_bench
    cargo run --release -p hkd-slurm --example render_bench
    cargo bench -p hkd-analysis --bench analyze_2000

# Build the release binaries used by grids
build:
    cargo build --release -p hkd-train -p hkd-eval -p hkd-analyze -p hkd-grid -p hkd-data

# Build the release binaries a grid of this kind runs: hkd-analyze (polars, the slowest
# to build) only for analyze and pipeline
build-for kind:
    cargo build --release {{ if kind == "analyze" { "-p hkd-grid -p hkd-analyze" } else if kind == "pipeline" { "-p hkd-train -p hkd-eval -p hkd-analyze -p hkd-grid -p hkd-data" } else { "-p hkd-train -p hkd-eval -p hkd-grid -p hkd-data" } }}

# Run a grid: `just grid train|evaluate|analyze|pipeline [hkd-grid flags]`
grid kind *args: (build-for kind)
    target/release/hkd-grid {{ if kind == "pipeline" { "pipeline configs/pipeline.toml" } else { "configs/" + kind + ".toml" } }} {{args}}

# The CIFAR-100 KD benchmark (docs/kd-benchmark.md): `just kd-benchmark` for RepDistiller's
# 240-epoch protocol (needs data/cifar100; meant for a cluster), `just kd-benchmark --profile short`
# for its few-minute CPU version
kd-benchmark *args: (build-for "pipeline")
    target/release/hkd-grid pipeline configs/kd-benchmark.toml {{args}}

# One real training run on the embedded fixtures (resnet8, human labels, 3 epochs)
demo: (build-for "train")
    target/release/hkd-train --data fixtures/cifar10h-mini --student resnet8 --teacher human --lambda 1.0 --epochs 3 --out runs/demo --overwrite

# Rebuild fixtures/cifar10h-mini from ../shared/data
fixtures:
    scripts/build-fixtures.sh

# Build the full real data set from ../shared/data into data/cifar10h-real
data-real:
    scripts/data-real.sh

# The HKD study of docs/results.md on the real data (about 2 h on 2 cores; resumable:
# run it again and finished runs are skipped). Needs `just data-real`; under the local
# Slurm (`just slurm-up`) independent stages run side by side.
study *args: (build-for "pipeline")
    target/release/hkd-grid pipeline configs/study.toml {{args}}

# The study's baseline and best human configuration trained 6x longer (~30 min on 2 cores)
study-long *args: (build-for "pipeline")
    target/release/hkd-grid pipeline configs/study-long.toml {{args}}

# Controlled (matched label smoothing, shuffled human labels), paired (4 repeats), held out
# (human CE on 2,000 unseen CIFAR-10H images); about 4 hours on 2 cores, resumable (run it
# again). Needs `just data-real`.
# The second HKD study of docs/results.md (configs/study2.toml)
study2 *args: (build-for "pipeline")
    scripts/study-data.sh 0.02=0.21
    target/release/hkd-grid pipeline configs/study2.toml {{args}}

# The third HKD study (issue 29; configs/study3.toml, then configs/study3-objectives.toml):
# ε = 0.001 human targets against matched label smoothing (α = 0.0623) and shuffled human
# labels with 8 paired repeats, then DKD (non-target term, both terms) and DIST from the
# human distributions, each with its shuffled control, then the decisive pair (hard, human,
# shuffled) 5x longer with 4 repeats and FGSM/PGD (configs/study3-long.toml).
# ~2.5 h + ~3.5 h + ~4 h on 2 cores, resumable (run it again). Needs `just data-real`.
# Finished runs are archived without their weights in docs/results/study3/archive (commit
# it) and restored from there first, so the study resumes in a fresh checkout.
study3 *args: (build-for "pipeline")
    scripts/study-data.sh 0.001=0.0623
    scripts/study-archive.sh restore docs/results/study3/archive runs/study3
    target/release/hkd-grid pipeline configs/study3.toml {{args}}
    target/release/hkd-grid pipeline configs/study3-objectives.toml {{args}}
    scripts/study-archive.sh archive runs/study3 docs/results/study3/archive
    scripts/study-archive.sh restore docs/results/study3/archive-long runs/study3-long
    target/release/hkd-grid pipeline configs/study3-long.toml {{args}}
    scripts/study-archive.sh archive runs/study3-long docs/results/study3/archive-long

# Archive the third study's finished, evaluated runs (without weights) for the repository
study3-archive:
    scripts/study-archive.sh archive runs/study3 docs/results/study3/archive
    {{ if path_exists("runs/study3-long") == "true" { "scripts/study-archive.sh archive runs/study3-long docs/results/study3/archive-long" } else { "echo 'no runs/study3-long yet: the long regime has nothing to archive'" } }}

# The second study's tables in docs/results.md (and docs/results/study2/), and the check
# that every number the prose cites is in a generated table
study2-report:
    python3 scripts/study2-report.py

# Tables 6-8 come from runs/study3/analysis/runs.csv where it exists, else from the
# committed docs/results/study3/runs.csv; the self-test must fail on a planted wrong sign
# and a planted wrong cell.
# The third study's tables in docs/results.md, the check of every cited cell, its self-test
study3-report *args:
    python3 scripts/study3-report.py {{ if args == "" { if path_exists("runs/study3/analysis/runs.csv") == "true" { "--runs runs/study3/analysis/runs.csv" } else { "--runs docs/results/study3/runs.csv" } } else { args } }}
    python3 scripts/study3-report.py --self-test

# The tables of docs/results.md (and docs/results/) from the analyses of both studies
study-report:
    python3 scripts/study-report.py runs/study-real/analysis docs/results docs/results.md {{ if path_exists("runs/study-long/analysis/average_results.csv") == "true" { "--long runs/study-long/analysis" } else { "" } }}

# Start a real one-node Slurm on this host (installs Debian's slurm packages; needs root)
slurm-up:
    scripts/local-slurm.sh start

# Stop the local Slurm started by slurm-up
slurm-down:
    scripts/local-slurm.sh stop

# Install NVIDIA's compiler from PyPI wheels into .cuda-toolchain/ (no system CUDA needed)
cuda-toolchain:
    scripts/cuda-toolchain.sh install

# Prove the `cuda` and `cudnn` features build (what CI runs; no GPU needed): see docs/cuda.md
cuda-check: cuda-toolchain
    scripts/cuda-toolchain.sh check

# Release binaries and hkd-bench with `--features cuda` (HKD_CUDA_CUDNN=1: `cudnn`) into target/cuda/dist, for a GPU machine
cuda-build: cuda-toolchain
    scripts/cuda-toolchain.sh build

# On a GPU machine: CPU-vs-GPU losses and GPU throughput, results under $OUT (docs/cuda.md)
gpu-check:
    scripts/gpu-check.sh
