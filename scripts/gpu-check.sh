#!/usr/bin/env bash
# The one check of hkd's CUDA build on a GPU machine (see docs/cuda.md).
#
# Runs from the repository root on a machine with an NVIDIA GPU, its driver, Python and
# (ideally) PyTorch, but no Rust and no network. It needs what was built elsewhere with
# `scripts/cuda-toolchain.sh build` (stripped release binaries in target/cuda/dist) and the
# committed fixtures/. Everything it produces goes under $OUT (default target/gpu-check):
#   gpu-check.log     the whole console log
#   env.txt           GPU, driver, CUDA, glibc, PyTorch versions
#   glibc.txt         GLIBC versions each binary needs vs the one here
#   parity.md/.json   2-epoch losses per mode, CPU vs cuda:0, relative differences
#   bench.jsonl/.md   train/eval img/s on cuda:0 with the generic convolution backward and
#                     with candle's own, next to PyTorch (cuDNN) on the same GPU
#                     (bench-generic/-candle.jsonl, torch.jsonl: the raw figures)
#   profile/          driver calls (copies to host, syncs, launches) per epoch and batch
#   summary.md        PASS / FAIL / SKIP per check; the exit code is 1 if anything FAILed
#
# Knobs (environment): HKD_BIN_DIR (default target/cuda/dist), HKD_FIXTURES (default
# fixtures/cifar10h-mini), HKD_DEVICE (default cuda:0), HKD_EPOCHS (2), HKD_SEED (7),
# HKD_REL_TOL (1e-3), HKD_BENCH_BIN (default $HKD_BIN_DIR/hkd-bench),
# HKD_BENCH_MODELS (resnet8,shake26-2x64d), HKD_BENCH_MIN_TIME (seconds per timed phase,
# default 3), HKD_STEP_TIMEOUT (seconds per command, default 240), HKD_BUDGET (seconds
# for the whole check, default 480: later steps are cut short or skipped past it),
# HKD_FIXTURE_TRAIN_IMAGES (1000).
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root" || exit 2
OUT="${OUT:-$repo_root/target/gpu-check}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu-check.log") 2>&1

bin_dir="${HKD_BIN_DIR:-target/cuda/dist}"
data="${HKD_FIXTURES:-fixtures/cifar10h-mini}"
device="${HKD_DEVICE:-cuda:0}"
epochs="${HKD_EPOCHS:-2}"
seed="${HKD_SEED:-7}"
rel_tol="${HKD_REL_TOL:-1e-3}"
bench_bin="${HKD_BENCH_BIN:-$bin_dir/hkd-bench}"
bench_models="${HKD_BENCH_MODELS:-resnet8,shake26-2x64d}"
bench_min_time="${HKD_BENCH_MIN_TIME:-3}"
step_timeout="${HKD_STEP_TIMEOUT:-240}"
budget="${HKD_BUDGET:-480}"
cpu_threads="$(nproc)"
start_s=$SECONDS

summary="$OUT/summary.md"
printf '# hkd gpu-check %s\n\n| check | result | detail |\n|---|---|---|\n' "$(date -u +%FT%TZ)" >"$summary"
failed=0
record() { # record CHECK PASS|FAIL|SKIP DETAIL
    printf '| %s | %s | %s |\n' "$1" "$2" "$3" >>"$summary"
    printf '== %s: %s (%s)\n' "$1" "$2" "$3"
    if [[ "$2" == FAIL ]]; then failed=1; fi
}
finish() {
    printf '\nwall time: %ss\n' "$((SECONDS - start_s))" >>"$summary"
    echo "---- summary"
    cat "$summary"
    exit "$failed"
}
# Seconds a command may take: the step limit, cut to what is left of the whole budget.
tmo() {
    local left=$((budget - (SECONDS - start_s)))
    if ((left < 15)); then left=15; fi
    if ((left < step_timeout)); then echo "$left"; else echo "$step_timeout"; fi
}
over_budget() { (((SECONDS - start_s) > budget)); }
section() { printf '\n==== %s (t=%ss)\n' "$*" "$((SECONDS - start_s))"; }
have() { command -v "$1" >/dev/null 2>&1; }
py() { if have python3; then python3 "$@"; else python "$@"; fi; }

# ---------------------------------------------------------------- 0. environment
section "environment"
{
    echo "host: $(uname -a)"
    echo "glibc: $(ldd --version 2>&1 | head -1)"
    if have nvidia-smi; then
        nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv 2>&1
        nvidia-smi 2>&1 | sed -n '1,4p'
    else
        echo "nvidia-smi: not found"
    fi
    if have nvcc; then nvcc --version | tail -2; else echo "nvcc: not on PATH"; fi
    [[ -f "$bin_dir/BUILD-INFO.txt" ]] && sed 's/^/build: /' "$bin_dir/BUILD-INFO.txt"
    py - <<'EOF' 2>&1
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda,
          "cudnn", torch.backends.cudnn.version(), "gpu available", torch.cuda.is_available())
except Exception as e:
    print("torch: not importable:", e)
EOF
} | tee "$OUT/env.txt"

# ---------------------------------------------------------------- 1. binaries and glibc
section "binaries and glibc"
bins=()
for b in hkd-train hkd-eval; do
    if [[ -x "$bin_dir/$b" ]]; then bins+=("$bin_dir/$b"); else echo "missing: $bin_dir/$b"; fi
done
[[ -x "$bench_bin" ]] && bins+=("$bench_bin")
if [[ ! -x "$bin_dir/hkd-train" ]]; then
    record binaries FAIL "no $bin_dir/hkd-train: build with scripts/cuda-toolchain.sh build and carry $bin_dir"
    finish
fi
record binaries PASS "${bins[*]}"

glibc_here="$(ldd --version 2>&1 | head -1 | grep -oE '[0-9]+\.[0-9]+$')"
glibc_ok=1
{
    echo "glibc here: $glibc_here"
    for b in "${bins[@]}"; do
        if have objdump; then
            need="$(objdump -T "$b" | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' | sort -uV | tr '\n' ' ')"
        else # no binutils: the version strings sit in .gnu.version_r
            need="$(grep -aoE 'GLIBC_[0-9]+(\.[0-9]+)+' "$b" | sort -uV | tr '\n' ' ')"
        fi
        max="$(tr ' ' '\n' <<<"$need" | grep . | tail -1 | sed 's/GLIBC_//')"
        echo "$b needs: $need(max $max)"
        if [[ "$(printf '%s\n%s\n' "$max" "$glibc_here" | sort -V | tail -1)" != "$glibc_here" ]]; then
            echo "  -> TOO NEW for glibc $glibc_here"
            glibc_ok=0
        fi
    done
} | tee "$OUT/glibc.txt"
grep -q 'TOO NEW' "$OUT/glibc.txt" && glibc_ok=0
if [[ $glibc_ok == 1 ]]; then
    need_max="$(grep -oE '\(max [0-9.]+\)' "$OUT/glibc.txt" | tr -d '()' | awk '{print $2}' | sort -V | tail -1)"
    record glibc PASS "binaries need glibc ${need_max:-?}, this machine has $glibc_here (glibc.txt)"
else
    record glibc FAIL "a binary needs a newer glibc than $glibc_here: build on an older distribution (see docs/cuda.md)"
    finish
fi

# ---------------------------------------------------------------- 2. CUDA libraries
# The binaries link libcudart.so.13, libcublas(Lt).so.13, libcurand.so.10, libnvrtc.so.13
# (CUDA 13) and libcuda.so.1 (driver). Find them in the CUDA toolkit or PyTorch's wheels.
section "CUDA libraries"
missing_libs() { ldd "$1" 2>/dev/null | awk '/=> not found/ {print $1}' | sort -u; }
candidates=()
for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda /usr/local/cuda-13* /opt/cuda; do
    [[ -n "$d" && -d "$d" ]] || continue
    for sub in lib64 lib targets/x86_64-linux/lib; do [[ -d "$d/$sub" ]] && candidates+=("$d/$sub"); done
done
while IFS= read -r d; do [[ -d "$d" ]] && candidates+=("$d"); done < <(py - <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + sys.path)
for r in sorted(p for p in roots if p and os.path.isdir(p)):
    for d in glob.glob(os.path.join(r, "nvidia", "*", "lib")) + glob.glob(os.path.join(r, "torch", "lib")):
        print(d)
EOF
)
need="$(missing_libs "$bin_dir/hkd-train")"
added=()
for lib in $need; do
    for d in "${candidates[@]}"; do
        if [[ -e "$d/$lib" ]]; then added+=("$d"); break; fi
    done
done
if [[ ${#added[@]} -gt 0 ]]; then
    uniq_dirs="$(printf '%s\n' "${added[@]}" | awk '!seen[$0]++' | paste -sd:)"
    export LD_LIBRARY_PATH="$uniq_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
fi
ldd "$bin_dir/hkd-train" | grep -E 'cuda|cublas|curand|nvrtc|cudnn|not found' | tee "$OUT/ldd.txt"
still="$(missing_libs "$bin_dir/hkd-train" | paste -sd' ')"
if [[ -n "$still" ]]; then
    record cuda-libs FAIL "not found: $still (needs CUDA 13 libraries: a CUDA 13 toolkit or PyTorch cu13 wheels; driver >= 580)"
    finish
fi
record cuda-libs PASS "all resolved (ldd.txt)"

# ---------------------------------------------------------------- 3. device selection
section "device selection"
train="$bin_dir/hkd-train"
if timeout 60 "$train" --help >"$OUT/hkd-train-help.txt" 2>&1; then
    if grep -q -- '--device' "$OUT/hkd-train-help.txt"; then
        record cli PASS "hkd-train --help lists --device"
    else
        record cli FAIL "hkd-train --help has no --device flag"
    fi
else
    record cli FAIL "hkd-train --help failed: $(tail -3 "$OUT/hkd-train-help.txt" | tr '\n' ' ')"
    finish
fi

# ---------------------------------------------------------------- 4. CPU vs GPU parity
# Same seed, same data, each mode, once on the CPU and once on the GPU; the student mode
# uses the CPU baseline run as its teacher on both devices, so only the device differs.
section "CPU vs $device, $epochs epochs per mode"
runs="$OUT/runs"
rm -rf "$runs"
train_run() { # train_run TAG DEVICE TEACHER LOGNAME
    local tag="$1" dev="$2" teacher="$3" log="$OUT/train-$4.log" t0=$SECONDS rc
    RUST_LOG="${RUST_LOG:-info}" timeout "$(tmo)" "$train" --data "$data" --student resnet8 \
        --teacher "$teacher" --epochs "$epochs" --seed "$seed" --device "$dev" \
        --threads "$cpu_threads" --out "$runs/$tag" --overwrite >"$log" 2>&1
    rc=$?
    echo "$4: device $dev, teacher $teacher: exit $rc in $((SECONDS - t0))s (log $log)"
    [[ $rc == 0 ]] || tail -5 "$log"
    return $rc
}
run_dir_of() { find "$1" -name config.toml -printf '%h\n' 2>/dev/null | head -1; }
parity_ok=1
declare -A pair
for mode in baseline human; do
    for dev in cpu "$device"; do
        tag="$mode-${dev//:/}"
        if train_run "$tag" "$dev" "$mode" "$tag"; then pair[$tag]="$(run_dir_of "$runs/$tag")"; else parity_ok=0; fi
    done
done
teacher_dir="${pair[baseline-cpu]:-}"
if [[ -n "$teacher_dir" ]]; then
    for dev in cpu "$device"; do
        tag="student-${dev//:/}"
        if train_run "$tag" "$dev" "$teacher_dir" "$tag"; then pair[$tag]="$(run_dir_of "$runs/$tag")"; else parity_ok=0; fi
    done
else
    parity_ok=0
fi
grep -hiE 'device|cuda' "$OUT"/train-*-cuda*.log 2>/dev/null | head -5
args=()
for mode in baseline human student; do
    args+=("$mode" "${pair[$mode-cpu]:-}" "${pair[$mode-${device//:/}]:-}")
done
py - "$rel_tol" "$OUT/parity.json" "$OUT/parity.md" "${args[@]}" <<'EOF'
import json, math, os, sys
tol = float(sys.argv[1]); out_json, out_md = sys.argv[2], sys.argv[3]
rest = sys.argv[4:]
# metrics.jsonl (hkd-rundir EpochMetrics): train_hard, train_kd, train_teacher, train_human,
# train_total, val_loss are losses (judged); *_acc are reported; lr, seconds, images_per_s skipped.
def skipped(k):
    k = k.lower()
    return k in ("epoch", "lr") or any(s in k for s in ("second", "time", "per_s", "img", "images"))
def judged(k):
    return "acc" not in k.lower()
report, lines, ok = [], ["| mode | epoch | metric | cpu | gpu | rel diff | within tol |", "|---|---|---|---|---|---|---|"], True
for i in range(0, len(rest), 3):
    mode, cpu_dir, gpu_dir = rest[i:i + 3]
    if not cpu_dir or not gpu_dir:
        report.append({"mode": mode, "error": "run missing"}); ok = False; continue
    def load(d):
        with open(os.path.join(d, "metrics.jsonl")) as f:
            return [json.loads(l) for l in f if l.strip()]
    try:
        a, b = load(cpu_dir), load(gpu_dir)
    except Exception as e:
        report.append({"mode": mode, "error": str(e)}); ok = False; continue
    if len(a) != len(b) or not a:
        report.append({"mode": mode, "error": f"epochs cpu {len(a)} gpu {len(b)}"}); ok = False; continue
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, prefix + k + ".")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                yield prefix + k, float(v)
    for ea, eb in zip(a, b):
        fa, fb = dict(flat(ea)), dict(flat(eb))
        for k in sorted(set(fa) | set(fb)):
            if skipped(k):
                continue
            if k not in fa or k not in fb:
                ok = False
                report.append({"mode": mode, "epoch": ea.get("epoch"), "metric": k, "error": "only on one device"})
                lines.append(f"| {mode} | {ea.get('epoch')} | {k} | {fa.get(k)} | {fb.get(k)} | - | NO (missing) |")
                continue
            x, y = fa[k], fb[k]
            rel = abs(x - y) / max(abs(x), abs(y), 1e-12)
            is_loss = judged(k)
            good = (rel <= tol) if is_loss else True  # accuracies: reported, not judged
            if is_loss and not (math.isfinite(x) and math.isfinite(y)):
                good = False
            ok &= good
            report.append({"mode": mode, "epoch": ea.get("epoch"), "metric": k, "cpu": x, "gpu": y,
                           "rel_diff": rel, "judged": is_loss, "ok": good})
            lines.append(f"| {mode} | {ea.get('epoch')} | {k} | {x:.6g} | {y:.6g} | {rel:.2e} | "
                         f"{('yes' if good else 'NO') if is_loss else '(not judged)'} |")
json.dump({"rel_tol": tol, "ok": ok, "rows": report}, open(out_json, "w"), indent=1)
open(out_md, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(0 if ok else 1)
EOF
parity_rc=$?
if [[ $parity_ok == 1 && $parity_rc == 0 ]]; then
    record parity PASS "every loss within $rel_tol relative after $epochs epochs (parity.md)"
else
    record parity FAIL "a run failed or a loss differs by more than $rel_tol (parity.md, train-*.log)"
fi

# ---------------------------------------------------------------- 5. benchmark vs PyTorch
# hkd-bench (hkd-arch's example, built by `cuda-toolchain.sh build`) times the training
# step (teacher eval forward, student training forward, KD loss, backward, SGD) and the
# evaluation of each model on the GPU twice: with the generic convolution backward (the
# default off the CPU: both gradients as forward conv2d, on cuDNN or im2col + cuBLAS) and
# with candle's own (HKD_ARCH_GENERIC_BACKWARD=0: the input gradient by conv_transpose2d,
# a direct kernel). PyTorch times the same step on the same GPU (cuDNN, cudnn.benchmark
# on, its other settings at their defaults, recorded in torch.jsonl) with the models of
# bench/torch_reference.py. Order: the generic backward, PyTorch, candle's backward (the
# slowest expected, and the least needed if the time budget runs out).
section "benchmark on $device vs PyTorch"
bench_ok=1
bench_detail=""
run_bench() { # run_bench generic|candle
    local mode="$1" flag=1 rc
    [[ $mode == candle ]] && flag=0
    if over_budget; then
        bench_ok=0
        bench_detail+="hkd-bench with $mode backward: time budget spent; "
        return
    fi
    HKD_ARCH_GENERIC_BACKWARD=$flag timeout "$(tmo)" "$bench_bin" --device "$device" \
        --models "$bench_models" --batch-size 128 --min-time "$bench_min_time" \
        >"$OUT/bench-$mode.raw" 2>"$OUT/bench-$mode.log"
    rc=$?
    grep -E '^\{' "$OUT/bench-$mode.raw" >"$OUT/bench-$mode.jsonl" || true
    echo "hkd-bench, $mode backward: exit $rc, $(wc -l <"$OUT/bench-$mode.jsonl") models"
    if [[ $rc != 0 ]]; then
        bench_ok=0
        bench_detail+="hkd-bench with $mode backward: exit $rc (bench-$mode.log); "
    fi
}
if over_budget; then
    bench_ok=skip
    bench_detail="time budget of ${budget}s spent"
elif [[ ! -x "$bench_bin" ]]; then
    bench_ok=skip
    bench_detail="no bench binary at $bench_bin (built by scripts/cuda-toolchain.sh build)"
else
    run_bench generic
fi
torch_ok=0
py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && torch_ok=1
if [[ $bench_ok != skip && $torch_ok == 1 ]] && ! over_budget; then
    timeout "$(tmo)" py - "$device" "$bench_models" 128 512 "$bench_min_time" \
        >"$OUT/torch.raw" 2>"$OUT/torch.log" <<'PYEOF'
import json, statistics, sys, time, types
sys.path.insert(0, "bench")
import torch
import torch_reference as tr

dev = torch.device(sys.argv[1])
models, batch, eval_batch = sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])
min_time, min_steps = float(sys.argv[5]), 5
torch.backends.cudnn.benchmark = True
# torch_reference.py draws Shake-Shake's alpha and beta with torch.rand on the CPU: here
# they are drawn on the GPU (the module's other uses of torch pass through unchanged).
_rand = torch.rand
class _TorchOnDevice(types.ModuleType):
    def __getattr__(self, name):
        return getattr(torch, name)
proxy = _TorchOnDevice("torch")
proxy.rand = lambda *a, **k: _rand(*a, **{"device": dev, **k})
tr.torch = proxy

def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)

def time_it(step):
    step()
    sync()
    times, start = [], time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)

gen = torch.Generator().manual_seed(0)
for name in models:
    torch.manual_seed(0)
    student, teacher = tr.build(name).to(dev), tr.build(name).to(dev)
    teacher.eval()
    xe = (torch.rand(eval_batch, 3, 32, 32, generator=gen) * 2 - 1).to(dev)
    xt = (torch.rand(batch, 3, 32, 32, generator=gen) * 2 - 1).to(dev)
    yt = torch.randint(0, 10, (batch,), generator=gen).to(dev)
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def eval_step():
        student.eval()
        with torch.inference_mode():
            student(xe).sum().item()

    def train_step():
        student.train()
        with torch.no_grad():
            t = teacher(xt)
        loss = tr.kd_loss(student(xt), t, yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    eval_s = time_it(eval_step)
    train_s = time_it(train_step)
    print(json.dumps({
        "model": name,
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, "torch_version": torch.__version__,
        "cudnn_version": torch.backends.cudnn.version(), "cudnn_benchmark": True,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "train_batch": batch, "eval_batch": eval_batch,
        "train_img_per_s": round(batch / train_s, 1), "eval_img_per_s": round(eval_batch / eval_s, 1),
    }), flush=True)
PYEOF
    echo "PyTorch: exit $? (torch.log)"
    grep -E '^\{' "$OUT/torch.raw" >"$OUT/torch.jsonl" || true
fi
[[ $torch_ok == 1 ]] || echo "PyTorch with CUDA not importable: no reference figures"
[[ $bench_ok == skip ]] || run_bench candle
if [[ $bench_ok == skip ]]; then
    record bench SKIP "$bench_detail"
else
    py - "$OUT/bench-generic.jsonl" "$OUT/bench-candle.jsonl" "$OUT/torch.jsonl" "$OUT/bench.md" \
        "$OUT/bench.jsonl" <<'PYEOF'
import json, os, sys
def load(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            if line.strip():
                r = json.loads(line)
                out[r["model"]] = r
    return out
gen, cand, torch = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
def f(x): return "-" if x is None else (f"{x:.2f}" if x < 10 else f"{x:,.0f}")
def ratio(a, b): return round(a / b, 3) if a and b else None
rows = ["| model | train img/s, generic backward | train img/s, candle's backward | generic / candle's "
        "| PyTorch train img/s | generic / PyTorch | eval img/s | PyTorch eval img/s | eval / PyTorch |",
        "|---|---|---|---|---|---|---|---|---|"]
lines = []
for m in list(dict.fromkeys(list(gen) + list(cand))):
    g, c, t = gen.get(m, {}), cand.get(m, {}), torch.get(m, {})
    gt, ct, tt = g.get("train_img_per_s"), c.get("train_img_per_s"), t.get("train_img_per_s")
    ge, te = g.get("eval_img_per_s"), t.get("eval_img_per_s")
    rows.append(f"| {m} | {f(gt)} | {f(ct)} | {f(ratio(gt, ct))} | {f(tt)} | {f(ratio(gt, tt))} "
                f"| {f(ge)} | {f(te)} | {f(ratio(ge, te))} |")
    lines.append(json.dumps({"model": m, "train_img_per_s": gt, "candle_backward_train_img_per_s": ct,
                             "eval_img_per_s": ge, "torch_train_img_per_s": tt,
                             "torch_eval_img_per_s": te, "train_ratio": ratio(gt, tt),
                             "eval_ratio": ratio(ge, te), "generic_vs_candle_backward": ratio(gt, ct),
                             "conv_path": g.get("conv_path"), "cudnn": g.get("cudnn")}))
built = next(iter(gen.values()), next(iter(cand.values()), {}))
rows.append(f"\nhkd built with cudnn: {built.get('cudnn')}; PyTorch: cuDNN, cudnn.benchmark on "
            "(torch.jsonl); ratios are hkd / PyTorch on this GPU (target: shake26-2x64d training "
            ">= 1.0 with cuDNN)")
open(sys.argv[4], "w").write("\n".join(rows) + "\n")
open(sys.argv[5], "w").write("".join(l + "\n" for l in lines))
print("\n".join(rows))
PYEOF
    if [[ $bench_ok == 1 ]]; then
        torch_note="; no PyTorch with CUDA here"
        [[ $torch_ok == 1 ]] && torch_note=", and PyTorch's on this GPU"
        record bench PASS "bench.md: train img/s with the generic and with candle's backward$torch_note"
    else
        record bench FAIL "$bench_detail"
    fi
fi

# ---------------------------------------------------------------- 6. per-step profile
# Hidden host round trips show up as device-to-host copies and synchronisations per step.
# The GPU machines have no nsys: libhkd-cuda-count.so (built with the binaries) counts the
# driver calls. One epoch's calls = (2-epoch run) - (1-epoch run), so setup cancels out.
section "per-step profile"
counter="$bin_dir/libhkd-cuda-count.so"
train_images="${HKD_FIXTURE_TRAIN_IMAGES:-1000}"
if over_budget; then
    record profile SKIP "time budget of ${budget}s spent"
elif [[ -f "$counter" && -n "$teacher_dir" ]]; then
    mkdir -p "$OUT/profile"
    prof_ok=1
    for e in 1 2; do
        HKD_CUDA_COUNT_OUT="$OUT/profile/calls-$e-epochs.txt" LD_PRELOAD="$(cd "$(dirname "$counter")" && pwd)/$(basename "$counter")" \
            timeout "$(tmo)" "$train" --data "$data" --student resnet8 --teacher "$teacher_dir" \
            --epochs "$e" --seed "$seed" --device "$device" --out "$OUT/profile/run-$e" --overwrite \
            >"$OUT/profile/train-$e-epochs.log" 2>&1 || prof_ok=0
    done
    if [[ $prof_ok == 1 ]]; then
        py - "$OUT/profile" "$train_images" <<'EOF'
import math, sys
d, n = sys.argv[1], int(sys.argv[2])
def load(e):
    return {k: int(v) for k, v in (l.split() for l in open(f"{d}/calls-{e}-epochs.txt") if l.strip())}
one, two = load(1), load(2)
batches = math.ceil(n / 128)
rows = ["| driver call | 1 epoch run | 2 epoch run | per epoch | per train batch |", "|---|---|---|---|---|"]
for k in one:
    ep = two[k] - one[k]
    rows.append(f"| {k} | {one[k]} | {two[k]} | {ep} | {ep / batches:.2f} |")
to_host = sum(two[k] - one[k] for k in ("cuMemcpyDtoH_v2", "cuMemcpyDtoHAsync_v2"))
syncs = sum(two[k] - one[k] for k in ("cuStreamSynchronize", "cuCtxSynchronize", "cuEventSynchronize"))
per = max(to_host, syncs) / batches
rows.append(f"\n{batches} train batches of 128 per epoch (+ validation): "
            f"{to_host / batches:.2f} copies to the host and {syncs / batches:.2f} synchronisations per batch")
open(f"{d}/calls.md", "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
launches = two["cuLaunchKernel"] - one["cuLaunchKernel"]
# No kernel launches counted means the counter did not interpose: judge nothing.
open(f"{d}/per_batch.txt", "w").write(f"{per:.2f}\n" if launches > 0 else "no-launches\n")
EOF
        per_batch="$(cat "$OUT/profile/per_batch.txt" 2>/dev/null || echo 999)"
        if [[ "$per_batch" == no-launches ]]; then
            record profile FAIL "the counter saw no kernel launches: LD_PRELOAD did not take (profile/calls.md)"
        elif py -c "import sys; sys.exit(0 if float('$per_batch') <= 3 else 1)"; then
            record profile PASS "$per_batch host round trips per train batch (<= 3: loss read-out and validation; profile/calls.md)"
        else
            record profile FAIL "$per_batch host round trips per train batch (> 3: hidden copies or syncs in the step; profile/calls.md)"
        fi
    else
        record profile FAIL "a profiled run failed (profile/train-*-epochs.log)"
    fi
else
    record profile SKIP "no $counter or no teacher run"
fi

finish
