#!/usr/bin/env bash
# Build hkd's `cuda` feature on a machine without a system CUDA toolkit or GPU.
#
# NVIDIA's compiler, headers and libraries come from PyPI wheels (CUDA 13.0, the
# unsuffixed `nvidia-*` family whose wheels ship a complete `nvcc`; the `-cu12` wheels
# ship only `ptxas`) installed with `pip install --target` into `.cuda-toolchain/`
# (git-ignored). The driver library `libcuda.so` is not in any wheel, so a link-time stub
# is generated from `cuda.h` (every function returns CUDA_ERROR_STUB_LIBRARY); at run
# time the real `libcuda.so.1` of the NVIDIA driver is used.
#
# Usage:
#   scripts/cuda-toolchain.sh install        install the wheels and the stub (idempotent)
#   eval "$(scripts/cuda-toolchain.sh env)"  export CUDA_HOME, PATH, CUDA_COMPUTE_CAP, ...
#   scripts/cuda-toolchain.sh build [ARGS]   release build of hkd-train, hkd-eval and the
#                                            hkd-bench example with --features cuda (or
#                                            cudnn) into target/cuda, copied to
#                                            target/cuda/dist (what gpu-check.sh needs)
#   scripts/cuda-toolchain.sh check [ARGS]   the CI-sized proof: dev-profile build of
#                                            hkd-train, hkd-eval and hkd-bench with `cudnn`
#                                            (which includes `cuda`; HKD_CUDA_CUDNN=0: only
#                                            `cuda`) into target/cuda-check (nvcc compiles
#                                            candle's kernels unoptimised, cudarc links
#                                            CUDA and cuDNN), then `--help` of each against
#                                            the stub driver; ARGS replace the default
#                                            cargo build args
#   scripts/cuda-toolchain.sh cargo ARGS...  any cargo command in this environment
#   scripts/cuda-toolchain.sh smoke BIN ARGS run a cuda-built binary here against the stub
#                                            driver (no GPU: `--device auto` must pick CPU)
#
# Environment: CUDA_COMPUTE_CAP (default 90: H100/H200; 80 for A100 — PTX for 80 also
# runs on H100 through the driver's JIT), CARGO_TARGET_DIR (default target/cuda, so CUDA
# and CPU artifacts never evict each other), HKD_CUDA_TOOLCHAIN (default
# <repo>/.cuda-toolchain), HKD_CUDA_NICE (default 19: builds yield to everything else),
# HKD_CUDA_USE_SYSTEM=1 (skip the wheels and use the CUDA toolkit already on PATH, e.g.
# after `module load cuda` on a cluster), HKD_CUDA_CUDNN=1 (also install cuDNN 9.21 and
# build the binaries' `cudnn` feature; the default of `check`, not of `build`).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
toolchain="${HKD_CUDA_TOOLCHAIN:-$repo_root/.cuda-toolchain}"
site="$toolchain/site"
cuda_home="$site/nvidia/cu13"
stamp="$toolchain/installed.txt"
cudnn_site="$toolchain/cudnn"
nice_level="${HKD_CUDA_NICE:-19}"

# One CUDA release throughout (13.0 update 2). 13.0 is the oldest CUDA 13, so the PTX
# that nvcc emits loads on every driver >= 580; candle 0.11.1's cudarc 0.19.10 knows
# CUDA 11.4 to 13.4. cuDNN 9.21 matches cudarc's `cudnn` bindings (candle's `cudnn`).
wheels=(
    nvidia-cuda-nvcc==13.0.88     # nvcc, ptxas, fatbinary, nvlink
    nvidia-cuda-crt==13.0.88      # crt/ headers nvcc needs
    nvidia-nvvm==13.0.88          # cicc + libdevice
    nvidia-cuda-runtime==13.0.96  # cuda.h, cuda_runtime.h, libcudart.so.13
    nvidia-cuda-nvrtc==13.0.88    # libnvrtc.so.13 (cudarc `nvrtc`)
    nvidia-cublas==13.1.0.3       # libcublas(Lt).so.13 (cudarc `cublas`, `cublaslt`)
    nvidia-curand==10.4.0.35      # libcurand.so.10 (cudarc `curand`)
    nvidia-cuda-cccl==13.0.85     # cub / thrust / libcu++ headers
)
cudnn_wheel="nvidia-cudnn-cu13==9.21.1.3"

say() { printf 'cuda-toolchain: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

want_cudnn() { [[ "${HKD_CUDA_CUDNN:-0}" == 1 ]]; }

install_wheels() {
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "${wheels[*]}" || ! -x "$cuda_home/bin/nvcc" ]]; then
        command -v python3 >/dev/null || die "python3 not found: it is needed to install the CUDA wheels with pip"
        say "installing CUDA 13.0 wheels into $site (about 1.2 GiB, once)"
        rm -rf "$site"
        pip_target "$site" "${wheels[@]}"
        [[ -x "$cuda_home/bin/nvcc" ]] || die "nvcc missing at $cuda_home/bin/nvcc after pip install: the wheel layout changed"
        link_unversioned "$cuda_home/lib"
        make_driver_stub
        printf '%s' "${wheels[*]}" >"$stamp"
    fi
    # cuDNN (about 0.5 GiB) only when asked for; kept beside the base install.
    if want_cudnn && [[ ! -f "$cudnn_site/installed.txt" || "$(cat "$cudnn_site/installed.txt")" != "$cudnn_wheel" ]]; then
        say "installing $cudnn_wheel into $cudnn_site"
        rm -rf "$cudnn_site"
        pip_target "$cudnn_site" "$cudnn_wheel"
        [[ -e "$cudnn_site/nvidia/cudnn/lib/libcudnn.so.9" ]] || die "libcudnn.so.9 missing under $cudnn_site after pip install: the wheel layout changed"
        link_unversioned "$cudnn_site/nvidia/cudnn/lib"
        printf '%s' "$cudnn_wheel" >"$cudnn_site/installed.txt"
    fi
}

pip_target() { # pip_target DIR SPEC...
    local dir="$1"
    shift
    mkdir -p "$dir"
    PIP_ROOT_USER_ACTION=ignore nice -n "$nice_level" python3 -m pip install --quiet --disable-pip-version-check \
        --no-deps --no-compile --target "$dir" "$@" ||
        die "pip could not install $* into $dir (is PyPI reachable?)"
}

# The wheels ship only versioned sonames (libcudart.so.13); `-lcudart` needs libcudart.so.
link_unversioned() {
    local lib base
    for lib in "$1"/lib*.so.*; do
        [[ -e "$lib" ]] || continue
        base="${lib%%.so.*}.so"
        [[ -e "$base" ]] || ln -s "$(basename "$lib")" "$base"
    done
}

# libcuda.so belongs to the driver, which no wheel ships. The link only needs the symbol
# names: take every driver API function that cuda.h declares (with and without the legacy
# unversioned names) and define it to return CUDA_ERROR_STUB_LIBRARY (34). SONAME
# libcuda.so.1 makes the binaries load the real driver library at run time.
make_driver_stub() {
    local stubs="$cuda_home/lib/stubs" src
    mkdir -p "$stubs" "$toolchain/stub-driver"
    src="$toolchain/libcuda-stub.c"
    {
        echo '/* generated by scripts/cuda-toolchain.sh from cuda.h: link-time stub only */'
        {
            cc -E -P -I"$cuda_home/include" "$cuda_home/include/cuda.h"
            cc -E -P -D__CUDA_API_VERSION_INTERNAL -I"$cuda_home/include" "$cuda_home/include/cuda.h"
        } | grep -oP '\bcu[A-Z]\w*(?=\s*\()' | sort -u |
            while read -r fn; do echo "int $fn(void) { return 34; }"; done
    } >"$src"
    cc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$src" ||
        die "could not compile the libcuda stub from $src"
    # Only for `smoke`: lets a cuda-built binary start on a machine without a driver.
    ln -sf "$stubs/libcuda.so" "$toolchain/stub-driver/libcuda.so.1"
}

# A driver-call counter for gpu-check.sh's per-step profile (the GPU machines have no
# nsys): LD_PRELOADed into a CUDA-built binary, which calls libcuda.so.1 directly.
build_call_counter() {
    local out="$1" src="$toolchain/hkd-cuda-count.c"
    mkdir -p "$toolchain"
    cat >"$src" <<'CSRC'
/* hkd CUDA driver-call counter: LD_PRELOAD it into a CUDA-built hkd binary (which links
   libcuda.so.1 directly) to count host<->device copies, synchronisations, launches and
   allocations. Writes "name count" lines to $HKD_CUDA_COUNT_OUT (default stderr) at exit. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef unsigned long U;
#define NAMES(X) \
    X(cuInit, 1) X(cuMemsetD8_v2, 3) \
    X(cuMemcpyDtoH_v2, 3) X(cuMemcpyDtoHAsync_v2, 4) X(cuMemcpyHtoD_v2, 3) \
    X(cuMemcpyHtoDAsync_v2, 4) X(cuMemcpyDtoD_v2, 3) X(cuMemcpyDtoDAsync_v2, 4) \
    X(cuStreamSynchronize, 1) X(cuCtxSynchronize, 0) X(cuEventSynchronize, 1) \
    X(cuLaunchKernel, 11) X(cuMemAlloc_v2, 2) X(cuMemAllocAsync, 3) X(cuMemFree_v2, 1) \
    X(cuMemFreeAsync, 2) X(cuMemsetD8Async, 4) X(cuMemsetD32Async, 4)

#define ENUM(n, a) I_##n,
enum { NAMES(ENUM) N_NAMES };
#define STR(n, a) #n,
static const char *names[] = { NAMES(STR) };
static atomic_ulong counts[N_NAMES];

static void report(void) {
    const char *path = getenv("HKD_CUDA_COUNT_OUT");
    FILE *f = path ? fopen(path, "w") : stderr;
    if (!f) f = stderr;
    for (int i = 0; i < N_NAMES; i++) fprintf(f, "%s %lu\n", names[i], (unsigned long)counts[i]);
    if (f != stderr) fclose(f);
}
__attribute__((constructor)) static void init(void) { atexit(report); }

static void *real(const char *name) {
    void *p = dlsym(RTLD_NEXT, name);
    if (!p) { fprintf(stderr, "hkd-cuda-count: %s not found\n", name); abort(); }
    return p;
}
/* Every argument of these functions is an integer or a pointer: forwarding them as
   unsigned longs is exact under the x86-64 System V calling convention. */
#define P0 void
#define P1 U a
#define P2 U a, U b
#define P3 U a, U b, U c
#define P4 U a, U b, U c, U d
#define P11 U a, U b, U c, U d, U e, U f, U g, U h, U i, U j, U k
#define A0
#define A1 a
#define A2 a, b
#define A3 a, b, c
#define A4 a, b, c, d
#define A11 a, b, c, d, e, f, g, h, i, j, k
#define DEF(n, ar) \
    int n(P##ar) { \
        static int (*fn)(P##ar); \
        if (!fn) fn = (int (*)(P##ar))real(#n); \
        atomic_fetch_add_explicit(&counts[I_##n], 1, memory_order_relaxed); \
        return fn(A##ar); \
    }
NAMES(DEF)
CSRC
    cc -shared -fPIC -O2 -Wall -Wextra -o "$out" "$src" -ldl ||
        die "could not compile the driver-call counter $src"
}

print_env() {
    local cap="${CUDA_COMPUTE_CAP:-90}"
    if [[ "${HKD_CUDA_USE_SYSTEM:-0}" == 1 ]]; then
        local nvcc
        nvcc="$(command -v nvcc)" || die "HKD_CUDA_USE_SYSTEM=1 but no nvcc on PATH (module load cuda?)"
        local home
        home="$(cd "$(dirname "$nvcc")/.." && pwd)"
        cat <<EOF
export CUDA_HOME="${CUDA_HOME:-$home}"
export CUDA_PATH="${CUDA_PATH:-${CUDA_HOME:-$home}}"
export CUDA_COMPUTE_CAP="$cap"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo_root/target/cuda}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
EOF
        return
    fi
    local lib="$cuda_home/lib"
    cat <<EOF
export CUDA_HOME="$cuda_home"
export CUDA_PATH="$cuda_home"
export CUDA_ROOT="$cuda_home"
export CUDA_TOOLKIT_ROOT_DIR="$cuda_home"
export NVCC="$cuda_home/bin/nvcc"
export PATH="$cuda_home/bin:\$PATH"
export CUDARC_CUDA_VERSION=13000
export CUDA_COMPUTE_CAP="$cap"
export LIBRARY_PATH="$lib:$lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo_root/target/cuda}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
EOF
    if [[ -n "${NVCC_APPEND_FLAGS:-}" ]]; then echo "export NVCC_APPEND_FLAGS=\"$NVCC_APPEND_FLAGS\""; fi
    if want_cudnn; then
        cat <<EOF
export CUDNN_LIB="$cudnn_site/nvidia/cudnn"
export LIBRARY_PATH="$cudnn_site/nvidia/cudnn/lib:\$LIBRARY_PATH"
EOF
    fi
    # nvcc 13.0 accepts gcc 6..15; name another host compiler with NVCC_CCBIN if needed.
    if [[ -n "${NVCC_CCBIN:-}" ]]; then echo "export NVCC_CCBIN=\"$NVCC_CCBIN\""; fi
}

# Where a CUDA-built binary finds its libraries here: the wheels' CUDA (and cuDNN)
# libraries and the stub driver, which lets it start without a GPU.
run_library_path() {
    local p="$cuda_home/lib:$toolchain/stub-driver"
    if want_cudnn; then p="$p:$cudnn_site/nvidia/cudnn/lib"; fi
    echo "$p"
}

load_env() {
    if [[ "${HKD_CUDA_USE_SYSTEM:-0}" != 1 ]]; then install_wheels; fi
    eval "$(print_env)"
    say "nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
install)
    install_wheels
    say "ready: $cuda_home"
    ;;
env)
    if [[ "${HKD_CUDA_USE_SYSTEM:-0}" != 1 ]]; then install_wheels; fi
    print_env
    ;;
cargo)
    load_env
    cd "$repo_root"
    exec nice -n "$nice_level" cargo "$@"
    ;;
check)
    # CI-sized: its own target dir, nothing optimised and no debug info — neither the
    # Rust code (dev profile overridden to opt-level 0) nor the device code (the kernels
    # still go through cicc, ptxas and the link; only the optimisers are skipped, which
    # halves nvcc's time). These binaries prove the build; never run them for speed.
    # With cuDNN unless HKD_CUDA_CUDNN=0: candle's `cudnn` feature compiles everything
    # `cuda` does (but candle's own im2col conv2d) plus the cuDNN convolutions and links
    # libcudnn, which is what a GPU build for training should use (docs/cuda.md).
    export HKD_CUDA_CUDNN="${HKD_CUDA_CUDNN:-1}"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo_root/target/cuda-check}"
    export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS--Xcicc -O0 -Xptxas -O0}"
    load_env
    cd "$repo_root"
    fast=(--config 'profile.dev.opt-level=0' --config 'profile.dev.package."*".opt-level=0'
        --config 'profile.dev.debug=0')
    if [[ $# -gt 0 ]]; then
        exec nice -n "$nice_level" cargo build "${fast[@]}" "$@"
    fi
    feature=cuda
    if want_cudnn; then feature=cudnn; fi
    nice -n "$nice_level" cargo build "${fast[@]}" -p hkd-train -p hkd-eval -p hkd-arch --bins \
        --example hkd-bench --features "hkd-train/$feature,hkd-eval/$feature,hkd-arch/$feature"
    # The binaries start without a GPU only against the stub driver; --help must work.
    for bin in hkd-train hkd-eval examples/hkd-bench; do
        LD_LIBRARY_PATH="$(run_library_path)" "$CARGO_TARGET_DIR/debug/$bin" --help >/dev/null ||
            die "$CARGO_TARGET_DIR/debug/$bin --help failed (CUDA build, stub driver)"
    done
    say "cuda check passed: hkd-train, hkd-eval and hkd-bench build and start with --features $feature"
    ;;
build)
    load_env
    cd "$repo_root"
    feature=cuda
    # `cudnn` features on the crates forward to candle-core/candle-nn `cudnn`.
    if want_cudnn; then feature=cudnn; fi
    features="hkd-train/$feature,hkd-eval/$feature,hkd-arch/$feature"
    # The benchmark gpu-check.sh runs: hkd-arch's hkd-bench example. Extra ARGS add targets.
    nice -n "$nice_level" cargo build --release -p hkd-train -p hkd-eval -p hkd-arch --bins \
        --example hkd-bench --features "$features" "$@"
    dist="$CARGO_TARGET_DIR/dist"
    rm -rf "$dist"
    mkdir -p "$dist"
    strip_copy() { # stripped copies: what `carry` takes to a GPU machine (64 MiB in all)
        objcopy --strip-debug "$1" "$2.tmp"
        mv "$2.tmp" "$2"
    }
    for bin in hkd-train hkd-eval; do strip_copy "$CARGO_TARGET_DIR/release/$bin" "$dist/$bin"; done
    strip_copy "$CARGO_TARGET_DIR/release/examples/hkd-bench" "$dist/hkd-bench"
    build_call_counter "$dist/libhkd-cuda-count.so"
    printf 'CUDA_COMPUTE_CAP=%s\nnvcc=%s\nfeatures=%s\nglibc_build=%s\n' \
        "$CUDA_COMPUTE_CAP" "$(nvcc --version | tail -1)" "$features" \
        "$(ldd --version | head -1)" >"$dist/BUILD-INFO.txt"
    say "binaries in $dist: $(du -sh "$dist" | cut -f1)"
    ;;
smoke)
    [[ $# -ge 1 ]] || die "usage: scripts/cuda-toolchain.sh smoke BINARY [ARGS...]"
    install_wheels
    LD_LIBRARY_PATH="$(run_library_path)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$@"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    [[ -z "$cmd" || "$cmd" == help || "$cmd" == -h || "$cmd" == --help ]] || exit 2
    ;;
esac
