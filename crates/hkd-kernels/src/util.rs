//! Shared helpers of the kernels: the element trait, storage access, GEMM, reductions.

use std::mem::{ManuallyDrop, MaybeUninit};

use candle_core::{CpuStorage, Layout, Result, WithDType, bail};

/// Element types of the kernels (f32 and f64; the `gemm` crate supports both).
pub(crate) trait Elem: WithDType + Copy + Send + Sync + 'static {
    const ZERO: Self;

    /// The slice as f32 slice where `Self` is f32 (for the f32-only kernels).
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }

    /// The output slice as f32 slice where `Self` is f32.
    fn as_f32_out(_: &mut [MaybeUninit<Self>]) -> Option<&mut [MaybeUninit<f32>]> {
        None
    }

    /// The mutable slice as f32 slice where `Self` is f32.
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }

    /// An f32 result as a vector of `Self` (only called where `as_f32` gave `Some`).
    fn from_f32_vec(v: Vec<f32>) -> Vec<Self> {
        v.into_iter().map(|x| Self::from_f64(x as f64)).collect()
    }
}

impl Elem for f32 {
    const ZERO: Self = 0.0;

    fn as_f32(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }

    fn as_f32_out(s: &mut [MaybeUninit<Self>]) -> Option<&mut [MaybeUninit<f32>]> {
        Some(s)
    }

    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        Some(s)
    }

    fn from_f32_vec(v: Vec<f32>) -> Vec<Self> {
        v
    }
}

impl Elem for f64 {
    const ZERO: Self = 0.0;
}

/// The elements of a contiguous tensor's storage, `op` naming the op in errors.
pub(crate) fn slice<'a, T: Elem>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: the kernels need contiguous inputs, got {:?}", l),
    }
}

/// Calls `$f::<T>` for the element type of `$s` (f32 or f64), else an error.
macro_rules! dispatch {
    ($op:expr, $s:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $s {
            candle_core::CpuStorage::F32(_) => $f::<f32>($($arg),*),
            candle_core::CpuStorage::F64(_) => $f::<f64>($($arg),*),
            other => candle_core::bail!(
                "{}: unsupported dtype {:?}",
                $op,
                candle_core::backend::BackendStorage::dtype(other)
            ),
        }
    };
}
pub(crate) use dispatch;

/// A row-major matrix operand: pointer and (row, column) strides in elements.
#[derive(Clone, Copy)]
pub(crate) struct Mat<T> {
    pub ptr: *const T,
    pub rs: isize,
    pub cs: isize,
}

/// `dst[m×n] (row stride dst_rs, column stride 1) = (acc ? dst : 0) + lhs[m×k] · rhs[k×n]`,
/// single-threaded (callers parallelise over images).
///
/// # Safety
/// `dst` must be valid for writes (and reads when `acc`) of the `m×n` block and the
/// operands valid for reads of their `m×k` / `k×n` blocks with the given strides.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: isize,
    acc: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: inside the m×n block the caller guarantees.
                    unsafe { *dst.offset(i as isize * dst_rs + j as isize) = T::ZERO };
                }
            }
        }
        return;
    }
    let one = T::from_f64(1.0);
    // SAFETY: forwarded from the caller; gemm computes dst = alpha·dst + beta·lhs·rhs and
    // reads dst only when read_dst is true.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs,
            acc,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            one,
            one,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Whether the CPU has the AVX-512 subsets the kernels use (F, VL, BW, DQ; checked once).
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the CPU has AVX2 (the std macro's cached check, named once for the kernels'
/// AVX2 paths).
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Runs `$body` compiled for AVX-512 or AVX2 where the CPU has it (runtime check), else for
/// the baseline target: the compiler vectorises the same code for the wider registers. The
/// body is the same code, so the result is the same bit for bit: no FMA contraction, the
/// same accumulators in the same order.
macro_rules! with_simd {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq")]
            unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            #[target_feature(enable = "avx2")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // An expression (no `return`): code after the macro in the same function runs.
            // (`unused_unsafe`: the body may itself sit in an unsafe block.)
            if $crate::util::has_avx512() {
                // SAFETY: the CPU supports these AVX-512 subsets (checked just above).
                #[allow(unused_unsafe)]
                unsafe {
                    avx512(|| $body)
                }
            } else if $crate::util::has_avx2() {
                // SAFETY: the CPU supports AVX2 (checked just above).
                #[allow(unused_unsafe)]
                unsafe {
                    avx2(|| $body)
                }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}
pub(crate) use with_simd;

/// Σ f(x) in f64: 8 accumulators, element i of each run of 8 going to accumulator i, added
/// in order at the end, then the remainder (a fixed order: deterministic). `lanes` computes
/// the 8 accumulators of a prefix whose length is a multiple of 8 faster where it can
/// (f32 with AVX-512 or AVX2: the same additions, 8 lanes of one or two registers).
#[inline(always)]
fn sum_of<T: Elem>(
    xs: &[T],
    f: impl Fn(f64) -> f64,
    lanes: impl FnOnce(&[f32]) -> Option<[f64; 8]>,
) -> f64 {
    let n8 = xs.len() / 8 * 8;
    let acc = T::as_f32(&xs[..n8]).and_then(lanes).unwrap_or_else(|| {
        let mut acc = [0f64; 8];
        for c in xs[..n8].chunks_exact(8) {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(v.to_f64());
            }
        }
        acc
    });
    let mut s: f64 = acc.iter().sum();
    for &v in &xs[n8..] {
        s += f(v.to_f64());
    }
    s
}

/// Σ x in f64.
pub(crate) fn sum<T: Elem>(xs: &[T]) -> f64 {
    with_simd!(sum_of(xs, |v| v, |xs| wide::lanes(xs, None)))
}

/// Σ (x − mean)² in f64.
pub(crate) fn sum_sq_dev<T: Elem>(xs: &[T], mean: f64) -> f64 {
    with_simd!(sum_of(
        xs,
        |v| (v - mean) * (v - mean),
        |xs| wide::lanes(xs, Some(mean))
    ))
}

/// The affine map of a training-mode BatchNorm in the element type, `(x − mean)·scale +
/// shift`, as its forward pass computes it (subtract, multiply, add; no fused
/// multiply-add). The backward passes recompute the fused ReLU's gate from x with it
/// instead of reading the output: the same operations, so the same gate, bit for bit.
#[derive(Clone, Copy)]
pub(crate) struct BnAffine<T> {
    pub mean: T,
    pub scale: T,
    pub shift: T,
}

impl<T: Elem> BnAffine<T> {
    #[inline(always)]
    pub fn apply(self, x: T) -> T {
        (x - self.mean) * self.scale + self.shift
    }

    /// Whether the ReLU after the map passes the gradient at input x (output > 0).
    #[inline(always)]
    pub fn open(self, x: T) -> bool {
        self.apply(x) > T::ZERO
    }
}

/// (Σ g, Σ g·(x − mean)) in f64, where g = dy, or with `relu` the gradient through a ReLU
/// applied after that map of x (dy where it is positive, else 0).
pub(crate) fn sum_dy_dyx<T: Elem>(
    dy: &[T],
    x: &[T],
    relu: Option<BnAffine<T>>,
    mean: f64,
) -> (f64, f64) {
    with_simd!(sum_dy_dyx_gated::<T>(dy, x, relu, mean))
}

#[inline(always)]
fn sum_dy_dyx_gated<T: Elem>(
    dy: &[T],
    x: &[T],
    relu: Option<BnAffine<T>>,
    mean: f64,
) -> (f64, f64) {
    let gate = |g: T, x: T| match relu {
        Some(a) if !a.open(x) => T::ZERO,
        _ => g,
    };
    let n8 = dy.len().min(x.len()) / 8 * 8;
    let fast = match (T::as_f32(&dy[..n8]), T::as_f32(&x[..n8])) {
        (Some(dy), Some(x)) => wide::dy_lanes(
            dy,
            x,
            relu.map(|a| [a.mean, a.scale, a.shift].map(|v| v.to_f64() as f32)),
            mean,
        ),
        _ => None,
    };
    let (a1, a2) = fast.unwrap_or_else(|| {
        let mut a1 = [0f64; 8];
        let mut a2 = [0f64; 8];
        for (cd, cx) in dy[..n8].chunks_exact(8).zip(x[..n8].chunks_exact(8)) {
            for i in 0..8 {
                let g = gate(cd[i], cx[i]).to_f64();
                a1[i] += g;
                a2[i] += g * (cx[i].to_f64() - mean);
            }
        }
        (a1, a2)
    });
    let mut s1: f64 = a1.iter().sum();
    let mut s2: f64 = a2.iter().sum();
    for (&g, &v) in dy[n8..].iter().zip(&x[n8..]) {
        let g = gate(g, v).to_f64();
        s1 += g;
        s2 += g * (v.to_f64() - mean);
    }
    (s1, s2)
}

/// The f64 reductions' 8 accumulators for f32 input with AVX-512 (one register) or AVX2
/// (two): the same operations as the portable loops of [`sum_of`] and
/// [`sum_dy_dyx_gated`] (convert, subtract, multiply, add; no fused multiply-add), 8 lanes
/// at a time, so the same bits.
mod wide {
    /// Accumulators of Σ x (`mean` None) or Σ (x − mean)² over `xs` (length a multiple
    /// of 8); `None` without AVX-512 or AVX2.
    pub(super) fn lanes(xs: &[f32], mean: Option<f64>) -> Option<[f64; 8]> {
        #[cfg(target_arch = "x86_64")]
        if super::has_avx512() {
            // SAFETY: the CPU supports AVX-512 (checked just above).
            return Some(unsafe { x86::lanes(xs, mean) });
        } else if super::has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return Some(unsafe { x86::lanes_avx2(xs, mean) });
        }
        let _ = (xs, mean);
        None
    }

    /// Accumulators of Σ g and Σ g·(x − mean), g = dy where `relu` = [mean, scale, shift]
    /// is absent or `(x − mean)·scale + shift > 0` (f32 operations, as
    /// [`super::BnAffine::open`]), else 0 (both of length a multiple of 8); `None` without
    /// AVX-512 or AVX2.
    pub(super) fn dy_lanes(
        dy: &[f32],
        x: &[f32],
        relu: Option<[f32; 3]>,
        mean: f64,
    ) -> Option<([f64; 8], [f64; 8])> {
        #[cfg(target_arch = "x86_64")]
        if super::has_avx512() {
            // SAFETY: the CPU supports AVX-512 (checked just above).
            return Some(unsafe { x86::dy_lanes(dy, x, relu, mean) });
        } else if super::has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return Some(unsafe { x86::dy_lanes_avx2(dy, x, relu, mean) });
        }
        let _ = (dy, x, relu, mean);
        None
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64::*;

        fn store(v: __m512d) -> [f64; 8] {
            let mut out = [0f64; 8];
            // SAFETY: out holds 8 f64; unaligned store.
            unsafe { _mm512_storeu_pd(out.as_mut_ptr(), v) };
            out
        }

        #[target_feature(enable = "avx512f,avx512vl")]
        pub(super) unsafe fn lanes(xs: &[f32], mean: Option<f64>) -> [f64; 8] {
            let mut acc = _mm512_setzero_pd();
            let m = _mm512_set1_pd(mean.unwrap_or(0.0));
            for c in xs.chunks_exact(8) {
                // SAFETY: c holds 8 f32.
                let v = _mm512_cvtps_pd(unsafe { _mm256_loadu_ps(c.as_ptr()) });
                acc = match mean {
                    None => _mm512_add_pd(acc, v),
                    Some(_) => {
                        let d = _mm512_sub_pd(v, m);
                        _mm512_add_pd(acc, _mm512_mul_pd(d, d))
                    }
                };
            }
            store(acc)
        }

        #[target_feature(enable = "avx512f,avx512vl")]
        pub(super) unsafe fn dy_lanes(
            dy: &[f32],
            x: &[f32],
            relu: Option<[f32; 3]>,
            mean: f64,
        ) -> ([f64; 8], [f64; 8]) {
            let (mut a1, mut a2) = (_mm512_setzero_pd(), _mm512_setzero_pd());
            let m = _mm512_set1_pd(mean);
            let [gm, gs, gb] = relu.unwrap_or_default().map(|v| _mm256_set1_ps(v));
            let n = dy.len().min(x.len()) / 8 * 8;
            for i in (0..n).step_by(8) {
                // SAFETY: i + 8 <= n, within dy and x.
                unsafe {
                    let mut g = _mm256_loadu_ps(dy.as_ptr().add(i));
                    let xv = _mm256_loadu_ps(x.as_ptr().add(i));
                    if relu.is_some() {
                        let y = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(xv, gm), gs), gb);
                        let keep = _mm256_cmp_ps_mask::<_CMP_GT_OQ>(y, _mm256_setzero_ps());
                        g = _mm256_maskz_mov_ps(keep, g);
                    }
                    let g = _mm512_cvtps_pd(g);
                    let v = _mm512_cvtps_pd(xv);
                    a1 = _mm512_add_pd(a1, g);
                    a2 = _mm512_add_pd(a2, _mm512_mul_pd(g, _mm512_sub_pd(v, m)));
                }
            }
            (store(a1), store(a2))
        }

        /// Lanes 0..4 and 4..8 of two AVX2 registers.
        fn store2(v: [__m256d; 2]) -> [f64; 8] {
            let mut out = [0f64; 8];
            // SAFETY: out holds 8 f64; unaligned stores of 4 each.
            unsafe {
                _mm256_storeu_pd(out.as_mut_ptr(), v[0]);
                _mm256_storeu_pd(out.as_mut_ptr().add(4), v[1]);
            }
            out
        }

        /// The 8 f32 of `v` in f64: lanes 0..4 and 4..8.
        #[target_feature(enable = "avx2")]
        fn widen(v: __m256) -> [__m256d; 2] {
            [
                _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)),
            ]
        }

        /// [`lanes`] with AVX2.
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn lanes_avx2(xs: &[f32], mean: Option<f64>) -> [f64; 8] {
            let mut acc = [_mm256_setzero_pd(); 2];
            let m = _mm256_set1_pd(mean.unwrap_or(0.0));
            for c in xs.chunks_exact(8) {
                // SAFETY: c holds 8 f32.
                let v = widen(unsafe { _mm256_loadu_ps(c.as_ptr()) });
                for h in 0..2 {
                    acc[h] = match mean {
                        None => _mm256_add_pd(acc[h], v[h]),
                        Some(_) => {
                            let d = _mm256_sub_pd(v[h], m);
                            _mm256_add_pd(acc[h], _mm256_mul_pd(d, d))
                        }
                    };
                }
            }
            store2(acc)
        }

        /// [`dy_lanes`] with AVX2 (the gate: a compare mask and-ed with dy, so +0 where
        /// closed, as the masked move).
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn dy_lanes_avx2(
            dy: &[f32],
            x: &[f32],
            relu: Option<[f32; 3]>,
            mean: f64,
        ) -> ([f64; 8], [f64; 8]) {
            let (mut a1, mut a2) = ([_mm256_setzero_pd(); 2], [_mm256_setzero_pd(); 2]);
            let m = _mm256_set1_pd(mean);
            let [gm, gs, gb] = relu.unwrap_or_default().map(|v| _mm256_set1_ps(v));
            let n = dy.len().min(x.len()) / 8 * 8;
            for i in (0..n).step_by(8) {
                // SAFETY: i + 8 <= n, within dy and x.
                let (mut g, xv) = unsafe {
                    (
                        _mm256_loadu_ps(dy.as_ptr().add(i)),
                        _mm256_loadu_ps(x.as_ptr().add(i)),
                    )
                };
                if relu.is_some() {
                    let y = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(xv, gm), gs), gb);
                    let keep = _mm256_cmp_ps::<_CMP_GT_OQ>(y, _mm256_setzero_ps());
                    g = _mm256_and_ps(g, keep);
                }
                let (g, v) = (widen(g), widen(xv));
                for h in 0..2 {
                    a1[h] = _mm256_add_pd(a1[h], g[h]);
                    a2[h] = _mm256_add_pd(a2[h], _mm256_mul_pd(g[h], _mm256_sub_pd(v[h], m)));
                }
            }
            (store2(a1), store2(a2))
        }
    }
}

/// (Σ x, Σ x²) in f64 over `xs` (one read pass: the batch statistics of a convolution's
/// output while it is still in cache). The sums run in 32 lanes (lane i takes the
/// elements ≡ i mod 32), then the lanes in order, then the tail: the same order with
/// AVX-512 (four independent 8-lane accumulators) or AVX2 (eight of 4 lanes) as without.
pub(crate) fn sum_and_sq(xs: &[f32]) -> (f64, f64) {
    const L: usize = 32;
    let n = xs.len() / L * L;
    #[cfg(target_arch = "x86_64")]
    let lanes = if has_avx512() {
        // SAFETY: AVX-512 is present.
        Some(unsafe { sum_and_sq_avx512(&xs[..n]) })
    } else if has_avx2() {
        // SAFETY: AVX2 is present.
        Some(unsafe { sum_and_sq_avx2(&xs[..n]) })
    } else {
        None
    };
    #[cfg(not(target_arch = "x86_64"))]
    let lanes: Option<([f64; L], [f64; L])> = None;
    let (a, b) = lanes.unwrap_or_else(|| sum_and_sq_lanes(&xs[..n]));
    let (mut s, mut q): (f64, f64) = (a.iter().sum(), b.iter().sum());
    for &v in &xs[n..] {
        let v = v as f64;
        s += v;
        q += v * v;
    }
    (s, q)
}

/// [`sum_and_sq`]'s 32 lanes over `xs` (a multiple of 32 long), portable.
fn sum_and_sq_lanes(xs: &[f32]) -> ([f64; 32], [f64; 32]) {
    let (mut a, mut b) = ([0f64; 32], [0f64; 32]);
    for c in xs.chunks_exact(32) {
        for i in 0..32 {
            let v = c[i] as f64;
            a[i] += v;
            b[i] += v * v;
        }
    }
    (a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sum_and_sq_avx512(xs: &[f32]) -> ([f64; 32], [f64; 32]) {
    use std::arch::x86_64::*;
    let mut a = [_mm512_setzero_pd(); 4];
    let mut b = [_mm512_setzero_pd(); 4];
    for c in xs.chunks_exact(32) {
        for k in 0..4 {
            // SAFETY: c holds 32 values; lanes 8k..8k + 8.
            let v = _mm512_cvtps_pd(unsafe { _mm256_loadu_ps(c.as_ptr().add(8 * k)) });
            a[k] = _mm512_add_pd(a[k], v);
            b[k] = _mm512_add_pd(b[k], _mm512_mul_pd(v, v));
        }
    }
    let (mut sa, mut sb) = ([0f64; 32], [0f64; 32]);
    for k in 0..4 {
        // SAFETY: 8 values into lanes 8k..8k + 8 of 32.
        unsafe {
            _mm512_storeu_pd(sa.as_mut_ptr().add(8 * k), a[k]);
            _mm512_storeu_pd(sb.as_mut_ptr().add(8 * k), b[k]);
        }
    }
    (sa, sb)
}

/// [`sum_and_sq_avx512`] with AVX2: each 8-lane accumulator is two registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_and_sq_avx2(xs: &[f32]) -> ([f64; 32], [f64; 32]) {
    use std::arch::x86_64::*;
    let mut a = [_mm256_setzero_pd(); 8];
    let mut b = [_mm256_setzero_pd(); 8];
    for c in xs.chunks_exact(32) {
        for k in 0..8 {
            // SAFETY: c holds 32 values; lanes 4k..4k + 4.
            let v = _mm256_cvtps_pd(unsafe { _mm_loadu_ps(c.as_ptr().add(4 * k)) });
            a[k] = _mm256_add_pd(a[k], v);
            b[k] = _mm256_add_pd(b[k], _mm256_mul_pd(v, v));
        }
    }
    let (mut sa, mut sb) = ([0f64; 32], [0f64; 32]);
    for k in 0..8 {
        // SAFETY: 4 values into lanes 4k..4k + 4 of 32.
        unsafe {
            _mm256_storeu_pd(sa.as_mut_ptr().add(4 * k), a[k]);
            _mm256_storeu_pd(sb.as_mut_ptr().add(4 * k), b[k]);
        }
    }
    (sa, sb)
}

/// `dst[t] = src[2·t]` for every `t < dst.len()` (`src` holds at least `2·dst.len() − 1`
/// values): the gather of a stride-2 column matrix. For f32 with AVX-512, 16 values per
/// two masked loads and one two-source permute (the compiler's loop left the ragged
/// tails of short image rows to scalar code); with AVX2, 8 values per two loads, a
/// shuffle and a permute while 16 source values remain, then the rest one by one.
pub(crate) fn gather_stride2<T: Elem>(src: &[T], dst: &mut [T]) {
    let n = dst.len();
    assert!(
        n == 0 || src.len() >= 2 * n - 1,
        "gather_stride2: source too short"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx512()
        && let (Some(s), Some(d)) = (T::as_f32(src), T::as_f32_mut(dst))
    {
        // SAFETY: AVX-512 is present; lengths checked above.
        unsafe { gather_stride2_avx512(s, d) };
        return;
    }
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if has_avx2()
        && let (Some(s), Some(d)) = (T::as_f32(src), T::as_f32_mut(dst))
    {
        // SAFETY: AVX2 is present.
        done = unsafe { gather_stride2_avx2(s, d) };
    }
    for (t, o) in dst.iter_mut().enumerate().skip(done) {
        *o = src[2 * t];
    }
}

/// `dst[t] = src[2·t]` for t below the returned count (a multiple of 8: as long as the 16
/// source values of the next 8 are inside `src`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gather_stride2_avx2(src: &[f32], dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let mut t = 0;
    while t + 8 <= dst.len() && 2 * t + 16 <= src.len() {
        // SAFETY: src[2t .. 2t + 16] and dst[t .. t + 8] are inside (checked just above).
        unsafe {
            let a = _mm256_loadu_ps(src.as_ptr().add(2 * t));
            let b = _mm256_loadu_ps(src.as_ptr().add(2 * t + 8));
            // Per 128-bit half: a0 a2 b0 b2 | a4 a6 b4 b6; then the 64-bit pairs reordered.
            let v = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let v = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
            _mm256_storeu_ps(dst.as_mut_ptr().add(t), v);
        }
        t += 8;
    }
    t
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_stride2_avx512(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let mask = |k: usize| ((1u32 << k.min(16)) - 1) as u16;
    for t in (0..dst.len()).step_by(16) {
        let m = (dst.len() - t).min(16);
        let s0 = 2 * t;
        // The values used are src[s0 .. s0 + 2·m − 1], all inside src; masked-off lanes
        // are neither read nor written.
        let need = 2 * m - 1;
        let p = src.as_ptr().wrapping_add(s0);
        // SAFETY: the masks cover need ≤ src.len() − s0 values from p, and m values of dst
        // from t.
        unsafe {
            let a = _mm512_maskz_loadu_ps(mask(need), p);
            let b = _mm512_maskz_loadu_ps(mask(need.saturating_sub(16)), p.wrapping_add(16));
            let v = _mm512_permutex2var_ps(a, even, b);
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(t), mask(m), v);
        }
    }
}

/// A result an op leaves beside its output tensor (a custom op returns one tensor): set
/// in the op's CPU forward, taken by whoever applied the op right after.
pub(crate) struct SideResult<T>(std::sync::Arc<std::sync::Mutex<Option<T>>>);

impl<T> Clone for SideResult<T> {
    fn clone(&self) -> Self {
        SideResult(self.0.clone())
    }
}

impl<T> SideResult<T> {
    pub fn new() -> Self {
        SideResult(Default::default())
    }

    pub fn set(&self, v: T) {
        // A poisoned lock only means a panic elsewhere; the value is still ours to set.
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }

    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Rayon's minimum number of `chunk`-sized items per task so that a task touches at least
/// ~16k elements (tiny tasks cost more in scheduling than they save).
pub(crate) fn min_items(chunk: usize) -> usize {
    (16 * 1024 / chunk.max(1)).max(1)
}

/// A vector of `n` elements, each written by `init` (no zero-filling pass: the outputs of
/// the kernels are written exactly once).
///
/// # Safety
/// `init` must write every element of the slice it is given (unless it panics).
pub(crate) unsafe fn new_vec<T: Elem>(
    n: usize,
    init: impl FnOnce(&mut [MaybeUninit<T>]),
) -> Vec<T> {
    let mut v: Vec<MaybeUninit<T>> = Vec::with_capacity(n);
    // SAFETY: MaybeUninit elements need no initialisation.
    unsafe { v.set_len(n) };
    init(&mut v);
    let mut v = ManuallyDrop::new(v);
    // SAFETY: every element was written (the caller's contract); MaybeUninit<T> has T's
    // layout, and length and capacity are those of the same allocation.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), v.len(), v.capacity()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_and_sq_matches_the_plain_sums() {
        for n in [0usize, 1, 31, 32, 33, 100, 1024, 1031] {
            let xs: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.37)
                .collect();
            let (s, q) = sum_and_sq(&xs);
            let s2: f64 = xs.iter().map(|&v| v as f64).sum();
            let q2: f64 = xs.iter().map(|&v| (v as f64) * (v as f64)).sum();
            assert!(
                (s - s2).abs() <= 1e-9 * (1.0 + s2.abs()),
                "n = {n}: {s} vs {s2}"
            );
            assert!((q - q2).abs() <= 1e-9 * (1.0 + q2), "n = {n}: {q} vs {q2}");
            #[cfg(target_arch = "x86_64")]
            {
                let m = n / 32 * 32;
                if has_avx512() {
                    // SAFETY: AVX-512 is present.
                    let simd = unsafe { sum_and_sq_avx512(&xs[..m]) };
                    assert_eq!(
                        simd,
                        sum_and_sq_lanes(&xs[..m]),
                        "n = {n}: SIMD and portable lanes"
                    );
                }
                if has_avx2() {
                    // SAFETY: AVX2 is present.
                    let simd = unsafe { sum_and_sq_avx2(&xs[..m]) };
                    assert_eq!(
                        simd,
                        sum_and_sq_lanes(&xs[..m]),
                        "n = {n}: AVX2 and portable lanes"
                    );
                }
            }
        }
    }

    #[test]
    fn f64_reductions_of_f32_input_equal_the_portable_loops_bit_for_bit() {
        // f32 input takes the 8-lane SIMD accumulators where the CPU has AVX-512 or AVX2;
        // the same values as f64 take the portable loops: the same operations in the same
        // order. The ReLU gate's map (x − 0.3)·1.5 + 0.0625 stays ≥ 1/100 away from 0 on
        // this grid, so its f32 and f64 evaluations agree.
        for n in [0usize, 7, 8, 9, 64, 1000, 1031] {
            let xs: Vec<f32> = (0..n).map(|i| (i % 97) as f32 / 16.0 - 3.0).collect();
            let dy: Vec<f32> = (0..n)
                .map(|i| ((i * 31 % 89) as f32 - 44.0) / 8.0)
                .collect();
            let (x64, dy64): (Vec<f64>, Vec<f64>) = (
                xs.iter().map(|&v| v as f64).collect(),
                dy.iter().map(|&v| v as f64).collect(),
            );
            let mean = 0.123456789;
            assert_eq!(sum(&xs).to_bits(), sum(&x64).to_bits(), "sum, n = {n}");
            assert_eq!(
                sum_sq_dev(&xs, mean).to_bits(),
                sum_sq_dev(&x64, mean).to_bits(),
                "sum_sq_dev, n = {n}"
            );
            let relu32 = BnAffine {
                mean: 0.3f32,
                scale: 1.5,
                shift: 0.0625,
            };
            let relu64 = BnAffine {
                mean: 0.3f32 as f64,
                scale: 1.5,
                shift: 0.0625,
            };
            for (a, b) in [
                (
                    sum_dy_dyx(&dy, &xs, None, mean),
                    sum_dy_dyx(&dy64, &x64, None, mean),
                ),
                (
                    sum_dy_dyx(&dy, &xs, Some(relu32), mean),
                    sum_dy_dyx(&dy64, &x64, Some(relu64), mean),
                ),
            ] {
                assert_eq!(a.0.to_bits(), b.0.to_bits(), "Σ dy, n = {n}");
                assert_eq!(a.1.to_bits(), b.1.to_bits(), "Σ dy·(x − mean), n = {n}");
            }
        }
    }

    #[test]
    fn gather_stride2_takes_every_other_value_at_every_length() {
        #[cfg(target_arch = "x86_64")]
        if !has_avx512() && !has_avx2() {
            eprintln!(
                "note: neither AVX-512 nor AVX2 on this CPU: only the portable loop is tested"
            );
        }
        for n in 0..50usize {
            // The shortest source allowed, and one a value longer.
            for extra in [0, 1] {
                let len = (2 * n).saturating_sub(1) + extra;
                let src: Vec<f32> = (0..len).map(|i| i as f32 + 0.5).collect();
                let mut dst = vec![-1f32; n];
                gather_stride2(&src, &mut dst);
                let want: Vec<f32> = (0..n).map(|t| (2 * t) as f32 + 0.5).collect();
                assert_eq!(dst, want, "n = {n}, source length {len}");
                let src64: Vec<f64> = src.iter().map(|&v| v as f64).collect();
                let mut dst64 = vec![-1f64; n];
                gather_stride2(&src64, &mut dst64);
                assert!(dst64.iter().zip(&want).all(|(&a, &b)| a == b as f64));
            }
        }
    }
}
