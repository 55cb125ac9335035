//! Direct 3×3 convolutions with padding 1 in f32 with AVX-512 or AVX2 + FMA, for
//! [`conv2d`](super::conv2d)'s most common geometries:
//!
//! - [`Direct3x3`]: the forward pass (stride 1 or 2) and, with the kernel rotated by 180°
//!   and its channel axes swapped, the input gradient (stride 1); optionally with a
//!   per-channel affine transform and ReLU applied as the output is stored ([`Post`]:
//!   BatchNorm in evaluation, [`conv2d_affine`](super::conv2d_affine)).
//! - [`Stride2InputGrad`]: the input gradient of stride 2, as four convolutions of `dy`
//!   (one per parity class of the input pixels, 1 to 4 taps each) through the same
//!   register block.
//! - [`WeightGrad3x3`]: the weight gradient (stride 1; output channels a multiple of 16
//!   with AVX-512, of 4 with AVX2 and widths a multiple of 8).
//!
//! [`Direct3x3`] copies each input image once into a zero-bordered buffer
//! `[cin, h + 2, w + 2]` where the width is a multiple of 16, so that each output row
//! segment of 16 pixels is one AVX-512 vector. Narrower images (8×8) whose pixel count is a
//! multiple of 16 are copied three times instead, shifted by one column each
//! (`[cin, 3, h + 2, w]`, zero where the shift leaves the image), so that 16 consecutive
//! output pixels — across rows — read 16 consecutive elements for every tap; stride-2
//! convolutions copy each input channel six times, by kernel column and row parity
//! (`[3][2][ho + 1][wo]`). A register block is 2 such vectors × up to [`OB`] output
//! channels (16 accumulators): for every input channel and each of the 9 taps, 2 unaligned
//! loads and one broadcast weight per output channel feed 2·[`OB`] fused multiply-adds,
//! and the block is stored once. Against the GEMM path this skips the shifted copies, the
//! GEMM's packing of them and the copy out of a padded-width output. Each output element
//! is summed in one fixed order (input channel, then tap), so results do not depend on the
//! number of threads.
//!
//! Used where AVX-512 is present (detected at run time) and the tensors are f32; on CPUs
//! with AVX2 and FMA but no AVX-512 the forward and input-gradient kernels run the same
//! sums in a register block of three 8-pixel runs × 4 output channels ([`block_avx2`]:
//! the same bits), and the weight gradient is vectorised over pixels
//! ([`WeightGrad3x3::run_avx2`]). `HKD_ARCH_DIRECT_CONV=0` ([`Ops::direct_conv`](crate::Ops))
//! switches the kernels off (for comparisons): the convolution module asks before it uses
//! any of them.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m256;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use super::util::{gather_stride2, has_avx2, has_avx512};

/// Output channels per register block.
const OB: usize = 8;

/// The instruction set the register [`block`] runs with, if any (checked once).
#[derive(Clone, Copy, PartialEq)]
enum Isa {
    /// A 16-pixel vector is one AVX-512 register.
    Avx512,
    /// A 16-pixel vector is two AVX2 registers (with FMA).
    Avx2,
}

/// Which [`Isa`] the direct convolutions run with on this CPU: `None` where it has neither
/// AVX-512 nor AVX2 with FMA. (A property of the hardware, the same on every thread; the
/// switch `Ops::direct_conv` is the convolution module's to ask.)
fn isa() -> Option<Isa> {
    static ISA: OnceLock<Option<Isa>> = OnceLock::new();
    *ISA.get_or_init(|| {
        if has_avx512() {
            return Some(Isa::Avx512);
        }
        #[cfg(target_arch = "x86_64")]
        if has_avx2() && std::arch::is_x86_feature_detected!("fma") {
            return Some(Isa::Avx2);
        }
        None
    })
}

/// Whether this CPU can run the direct convolutions through [`block`].
fn enabled() -> bool {
    isa().is_some()
}

/// The pixels of one register block: `units` runs of `width` consecutive output pixels
/// (AVX-512: two 16-pixel vectors; AVX2: three 8-pixel registers). A run never crosses an
/// output row of a `Bordered` copy (its width is a multiple of 16).
fn pixel_group() -> (usize, usize) {
    if isa() == Some(Isa::Avx2) {
        (3, 8)
    } else {
        (2, 16)
    }
}

/// The runs of register block `g` among `n` runs of `width` pixels: run `g·units + k`,
/// the last run repeated where `n` is not a multiple of `units` (computed and stored twice,
/// the same values). `at` maps a run to its offsets in the input copy and the output.
fn group_runs(
    g: usize,
    (units, width): (usize, usize),
    n: usize,
    at: impl Fn(usize, usize) -> (usize, usize),
) -> ([usize; 3], [usize; 3]) {
    let (mut i, mut o) = ([0; 3], [0; 3]);
    for k in 0..units {
        (i[k], o[k]) = at((g * units + k).min(n - 1), width);
    }
    (i, o)
}

/// The instruction set of the direct 3×3 convolutions on this CPU (`"avx512"` or
/// `"avx2"`), `None` where they are not used (no AVX2 with FMA, or switched off:
/// [`Ops::direct_conv`](crate::Ops), `HKD_ARCH_DIRECT_CONV=0`) and the convolutions take
/// the GEMM path.
pub fn direct_conv_isa() -> Option<&'static str> {
    let on = crate::Ops::current().direct_conv;
    isa().filter(|_| on).map(|isa| match isa {
        Isa::Avx512 => "avx512",
        Isa::Avx2 => "avx2",
    })
}

/// A same 3×3 convolution `[cin, h, w] → [cout, h, w]` with its packed weight.
pub(super) struct Direct3x3 {
    cin: usize,
    cout: usize,
    /// Input and output size.
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    layout: CopyLayout,
    /// Per block of [`OB`] output channels (`co0 = block·OB`, `obs` channels):
    /// `[cin][9][obs]` at offset `co0·cin·9`.
    packed: Vec<f32>,
}

/// How [`Direct3x3::run`] copies an input channel so that tap t of the 16-pixel vector v
/// reads 16 consecutive elements at `at(v).0 + taps[t]`.
#[derive(Clone, Copy, PartialEq)]
enum CopyLayout {
    /// Stride 1, width a multiple of 16: zero-bordered `[h + 2, w + 2]`.
    Bordered,
    /// Stride 1, pixel count a multiple of 16: three copies `[3][h + 2][w]`, copy kj
    /// holding the padded rows' columns kj .. kj + w (16 consecutive pixels run across rows).
    Shifted,
    /// Stride 2, output pixel count a multiple of 16: six copies `[3][2][ho + 1][wo]`,
    /// copy (kj, a) holding the padded input at rows 2·yy + a and columns 2·x + kj.
    Strided,
}

impl Direct3x3 {
    /// For the weight `w` `[o, c, 3, 3]` of a convolution of `[c, h, wd]` images with
    /// padding 1 and stride `stride`: the forward convolution (`flip` false: `c → o`) or,
    /// for stride 1, the input gradient (`flip` true: the same convolution of `dy`
    /// `[o, h, wd]` with the rotated kernel, `o → c`). `None` where the kernel does not
    /// apply.
    pub(super) fn new(
        w: &[f32],
        o: usize,
        c: usize,
        (h, wd): (usize, usize),
        stride: usize,
        flip: bool,
    ) -> Option<Self> {
        if w.len() != o * c * 9 || (flip && stride != 1) {
            return None;
        }
        let (layout, (ho, wo)) = Self::layout((h, wd), stride)?;
        let (cout, cin) = if flip { (c, o) } else { (o, c) };
        let mut packed = vec![0f32; w.len()];
        for co0 in (0..cout).step_by(OB) {
            let obs = OB.min(cout - co0);
            let block = &mut packed[co0 * cin * 9..(co0 + obs) * cin * 9];
            for ci in 0..cin {
                for t in 0..9 {
                    for j in 0..obs {
                        let co = co0 + j;
                        block[(ci * 9 + t) * obs + j] = if flip {
                            w[(ci * c + co) * 9 + 8 - t]
                        } else {
                            w[(co * cin + ci) * 9 + t]
                        };
                    }
                }
            }
        }
        Some(Direct3x3 {
            cin,
            cout,
            h,
            w: wd,
            ho,
            wo,
            layout,
            packed,
        })
    }

    /// The copy layout and output size for `[h, w]` inputs and this stride, where the
    /// kernel applies (AVX-512 or AVX2 with FMA present, not switched off: [`isa`]).
    fn layout((h, w): (usize, usize), stride: usize) -> Option<(CopyLayout, (usize, usize))> {
        if !enabled() || h == 0 || w == 0 || !(1..=2).contains(&stride) {
            return None;
        }
        let (ho, wo) = ((h - 1) / stride + 1, (w - 1) / stride + 1);
        let layout = match stride {
            1 if w.is_multiple_of(16) => CopyLayout::Bordered,
            1 if (h * w).is_multiple_of(16) => CopyLayout::Shifted,
            2 if (ho * wo).is_multiple_of(16) => CopyLayout::Strided,
            _ => return None,
        };
        Some((layout, (ho, wo)))
    }

    /// Whether the forward kernel takes `[h, w]` inputs with this stride (padding 1).
    pub(super) fn fits(hw: (usize, usize), stride: usize) -> bool {
        Self::layout(hw, stride).is_some()
    }

    /// Elements of one input image.
    pub(super) fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    /// Elements of one output image.
    pub(super) fn out_len(&self) -> usize {
        self.cout * self.ho * self.wo
    }

    /// Elements per input channel of the copy, and each tap's offset from a vector's
    /// top-left tap.
    fn geometry(&self) -> (usize, [usize; 9]) {
        let (h, w, wo) = (self.h, self.w, self.wo);
        match self.layout {
            CopyLayout::Bordered => (
                (h + 2) * (w + 2),
                std::array::from_fn(|t| (t / 3) * (w + 2) + t % 3),
            ),
            CopyLayout::Shifted => (
                3 * (h + 2) * w,
                std::array::from_fn(|t| (t % 3) * (h + 2) * w + (t / 3) * w),
            ),
            CopyLayout::Strided => {
                let sp = (self.ho + 1) * wo;
                let taps = std::array::from_fn(|t| {
                    let (ki, kj) = (t / 3, t % 3);
                    (kj * 2 + ki % 2) * sp + (ki / 2) * wo
                });
                (6 * sp, taps)
            }
        }
    }

    /// Copies one input channel `xc` `[h, w]` into `pc` (see [`CopyLayout`]); the zeros
    /// of `Bordered` and `Shifted` are left as they are (never overwritten).
    fn fill(&self, xc: &[f32], pc: &mut [f32]) {
        let (h, w) = (self.h, self.w);
        match self.layout {
            CopyLayout::Bordered => {
                let wp = w + 2;
                for (src, dst) in xc.chunks_exact(w).zip(pc[wp..].chunks_exact_mut(wp)) {
                    dst[1..=w].copy_from_slice(src);
                }
            }
            CopyLayout::Shifted => {
                for (kj, copy) in pc.chunks_exact_mut((h + 2) * w).enumerate() {
                    for (src, dst) in xc.chunks_exact(w).zip(copy[w..].chunks_exact_mut(w)) {
                        match kj {
                            0 => dst[1..].copy_from_slice(&src[..w - 1]),
                            1 => dst.copy_from_slice(src),
                            _ => dst[..w - 1].copy_from_slice(&src[1..]),
                        }
                    }
                }
            }
            CopyLayout::Strided => {
                let wo = self.wo;
                for (q, copy) in pc.chunks_exact_mut((self.ho + 1) * wo).enumerate() {
                    let (kj, a) = (q / 2, q % 2);
                    for (yy, dst) in copy.chunks_exact_mut(wo).enumerate() {
                        // Padded row 2·yy + a is input row 2·yy + a − 1.
                        let Some(iy) = (2 * yy + a).checked_sub(1).filter(|&iy| iy < h) else {
                            dst.fill(0.0);
                            continue;
                        };
                        let row = &xc[iy * w..(iy + 1) * w];
                        // Output column x reads input column 2·x + kj − 1: inside the row
                        // for x in [lo, hi).
                        let lo = usize::from(kj == 0);
                        let hi = ((w + 2 - kj) / 2).clamp(lo, wo);
                        dst[..lo].fill(0.0);
                        gather_stride2(&row[2 * lo + kj - 1..], &mut dst[lo..hi]);
                        dst[hi..].fill(0.0);
                    }
                }
            }
        }
    }

    /// Offsets of the top-left tap of run r (`width` pixels, 8 or 16) in a channel of the
    /// copy, and of its first pixel in an output channel.
    fn at(&self, r: usize, width: usize) -> (usize, usize) {
        if self.layout == CopyLayout::Bordered {
            let (row, x0) = (r * width / self.w, r * width % self.w);
            (row * (self.w + 2) + x0, row * self.w + x0)
        } else {
            (r * width, r * width)
        }
    }

    /// `y` `[cout, ho, wo]` = the convolution of one image `x` `[cin, h, w]`, followed by
    /// `post` where given; `xp` is scratch (the input copy). Writes every element of `y`.
    pub(super) fn run(
        &self,
        x: &[f32],
        xp: &mut Vec<f32>,
        y: &mut [MaybeUninit<f32>],
        post: Option<&Post>,
    ) {
        assert!(x.len() == self.in_len() && y.len() == self.out_len());
        assert!(post.is_none_or(|p| p.scale.len() == self.cout && p.shift.len() == self.cout));
        let (plane, taps) = self.geometry();
        // A buffer of the right size from an earlier image of this convolution already
        // has the zeros `fill` leaves alone.
        if xp.len() != self.cin * plane {
            xp.clear();
            xp.resize(self.cin * plane, 0.0);
        }
        for (xc, pc) in x
            .chunks_exact(self.h * self.w)
            .zip(xp.chunks_exact_mut(plane))
        {
            self.fill(xc, pc);
        }
        let yplane = self.ho * self.wo;
        let group = pixel_group();
        let runs = yplane / group.1;
        let y = y.as_mut_ptr().cast::<f32>();
        for g in 0..runs.div_ceil(group.0) {
            let (i, o) = group_runs(g, group, runs, |r, width| self.at(r, width));
            for co0 in (0..self.cout).step_by(OB) {
                let obs = OB.min(self.cout - co0);
                let args = Args {
                    xp: xp.as_ptr(),
                    cin: self.cin,
                    plane,
                    taps,
                    i,
                    wk: self.packed[co0 * self.cin * 9..].as_ptr(),
                    y: y.wrapping_add(co0 * yplane),
                    yplane,
                    o,
                    scale: post.map_or(std::ptr::null(), |p| p.scale[co0..].as_ptr()),
                    shift: post.map_or(std::ptr::null(), |p| p.shift[co0..].as_ptr()),
                };
                let kind = post.map_or(0, |p| 1 + u8::from(p.relu));
                // SAFETY: AVX-512 or AVX2 + FMA is present (`enabled`, and `block_post`
                // picks the block for it); the taps of the group's runs (each inside a
                // 16-pixel vector) read
                // xp[ci·plane + i + taps[t] .. + 16] within the channel's plane (bordered:
                // i + 2·(w + 2) + 2 + 15 < (h + 2)·(w + 2), the vector lies in one row of
                // the interior; shifted: i + 15 + 2·(h + 2)·w + 2·w < 3·(h + 2)·w as
                // i + 15 < h·w; strided: i + 15 + 5·sp + wo < 6·sp with sp = (ho + 1)·wo
                // as i + 15 < ho·wo), the weight block holds cin·9·obs values, the stores
                // stay in output channels co0..co0 + obs, and with `post` its scale and
                // shift hold cout values (asserted above), read at co0..co0 + obs.
                unsafe {
                    match kind {
                        0 => block_post::<0, 9>(obs, &args),
                        1 => block_post::<1, 9>(obs, &args),
                        _ => block_post::<2, 9>(obs, &args),
                    }
                }
            }
        }
    }
}

/// What [`Direct3x3::run`] applies to each output value before storing it:
/// `v·scale[c] + shift[c]` (a multiply, then an add, as `channel_affine` computes it),
/// then `max(·, 0)` where `relu` — BatchNorm in evaluation and the ReLU after it.
pub(super) struct Post {
    pub(super) scale: Vec<f32>,
    pub(super) shift: Vec<f32>,
    pub(super) relu: bool,
}

/// [`block`] for `obs` output channels.
///
/// # Safety
/// As [`block`].
unsafe fn block_post<const P: u8, const NT: usize>(obs: usize, a: &Args) {
    if isa() == Some(Isa::Avx2) {
        // SAFETY: forwarded; AVX2 and FMA are present (`isa`).
        unsafe { block_avx2::<P, NT>(obs, a) };
        return;
    }
    // SAFETY: forwarded.
    unsafe {
        match obs {
            8 => block::<8, P, NT>(a),
            7 => block::<7, P, NT>(a),
            6 => block::<6, P, NT>(a),
            5 => block::<5, P, NT>(a),
            4 => block::<4, P, NT>(a),
            3 => block::<3, P, NT>(a),
            2 => block::<2, P, NT>(a),
            _ => block::<1, P, NT>(a),
        }
    }
}

/// One register block's operands (see [`Direct3x3::run`]).
struct Args {
    xp: *const f32,
    cin: usize,
    plane: usize,
    /// Offset of each tap from a vector's top-left tap (the first `NT` of [`block`]).
    taps: [usize; 9],
    /// Offsets in a padded plane of the runs' top-left taps ([`pixel_group`]: AVX-512 uses
    /// the first two).
    i: [usize; 3],
    wk: *const f32,
    y: *mut f32,
    yplane: usize,
    /// Offsets in an output plane of the runs.
    o: [usize; 3],
    /// The block's first output channel's scale and shift ([`Post`]; null without).
    scale: *const f32,
    shift: *const f32,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
/// `P`: 0 stores the sums, 1 applies the scale and shift, 2 also the ReLU ([`Post`]).
/// `NT`: the number of taps (9 for a 3×3 kernel; fewer for the parity classes of
/// [`Stride2InputGrad`]); the weights are `[cin][NT][B]`.
unsafe fn block<const B: usize, const P: u8, const NT: usize>(a: &Args) {
    use std::arch::x86_64::*;
    let mut acc0 = [_mm512_setzero_ps(); B];
    let mut acc1 = [_mm512_setzero_ps(); B];
    for ci in 0..a.cin {
        // SAFETY: in bounds as `run` states.
        unsafe {
            let xc = a.xp.add(ci * a.plane);
            let wc = a.wk.add(ci * NT * B);
            for t in 0..NT {
                let off = a.taps[t];
                let v0 = _mm512_loadu_ps(xc.add(a.i[0] + off));
                let v1 = _mm512_loadu_ps(xc.add(a.i[1] + off));
                let wt = wc.add(t * B);
                for j in 0..B {
                    let k = _mm512_set1_ps(*wt.add(j));
                    acc0[j] = _mm512_fmadd_ps(k, v0, acc0[j]);
                    acc1[j] = _mm512_fmadd_ps(k, v1, acc1[j]);
                }
            }
        }
    }
    for j in 0..B {
        let (mut r0, mut r1) = (acc0[j], acc1[j]);
        if P > 0 {
            // SAFETY: with P > 0 scale and shift hold the block's B channels.
            let (s, b) = unsafe {
                (
                    _mm512_set1_ps(*a.scale.add(j)),
                    _mm512_set1_ps(*a.shift.add(j)),
                )
            };
            r0 = _mm512_add_ps(_mm512_mul_ps(r0, s), b);
            r1 = _mm512_add_ps(_mm512_mul_ps(r1, s), b);
            if P > 1 {
                // max(v, +0): +0 for v ≤ 0, −0 and NaN, as `pos`.
                r0 = _mm512_max_ps(r0, _mm512_setzero_ps());
                r1 = _mm512_max_ps(r1, _mm512_setzero_ps());
            }
        }
        // SAFETY: output channel j of the block, 16 elements at o[0] and o[1].
        unsafe {
            _mm512_storeu_ps(a.y.add(j * a.yplane + a.o[0]), r0);
            _mm512_storeu_ps(a.y.add(j * a.yplane + a.o[1]), r1);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn block<const B: usize, const P: u8, const NT: usize>(_: &Args) {
    unreachable!("the direct kernel is only enabled on x86_64")
}

/// [`block`] with AVX2: the same sums in the same order (input channel, then tap, one
/// fused multiply-add each), so the same bits. The block's pixels are three 8-pixel runs
/// ([`pixel_group`]) and its `obs` output channels are taken four at a time: 12
/// accumulators, 3 input registers and one broadcast weight, all 16 AVX2 registers
/// ([`avx2_kernel_4x3`]); a last 1 to 3 channels run through [`block_avx2_part`].
///
/// # Safety
/// As [`block`], with AVX2 and FMA present instead of AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2<const P: u8, const NT: usize>(obs: usize, a: &Args) {
    // SAFETY: forwarded: channels j0..j0 + K of the block.
    unsafe {
        let mut j0 = 0;
        while j0 + 4 <= obs {
            let acc = avx2_kernel_4x3::<NT>(obs, j0, a);
            store_avx2::<4, P>(j0, acc, a);
            j0 += 4;
        }
        match obs - j0 {
            3 => block_avx2_part::<3, P, NT>(obs, j0, a),
            2 => block_avx2_part::<2, P, NT>(obs, j0, a),
            1 => block_avx2_part::<1, P, NT>(obs, j0, a),
            _ => {}
        }
    }
}

/// The sums of output channels `j0..j0 + 4` of an AVX2 [`block`] of `obs` channels over
/// its three 8-pixel runs: `acc[j][q]` for channel j0 + j and run q.
///
/// Written in assembly because the compiler, given these 16 live registers in
/// intrinsics ([`block_avx2_part`] with 4 channels), hoisted the weights' broadcasts out
/// of the tap loop and spilled them and the taps' addresses to the stack: one layer's
/// forward (batch 128, 1 thread, AMD EPYC Zen 3 at 2.45 GHz, FMA peak 78 GFLOP/s) ran at
/// 28–45 GFLOP/s with the intrinsics and 53–68 with this kernel.
/// Per input channel and tap: 3 loads, 4 broadcasts, 12 fused multiply-adds
/// (`vfmadd231ps acc, w, x`: acc + w·x rounded once, as `_mm256_fmadd_ps(w, x, acc)`).
///
/// # Safety
/// As [`block_avx2`], `j0 + 4 ≤ obs`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_kernel_4x3<const NT: usize>(obs: usize, j0: usize, a: &Args) -> [[__m256; 3]; 4] {
    use std::arch::x86_64::*;
    let z = _mm256_setzero_ps();
    let mut acc = [[z; 3]; 4];
    if a.cin == 0 || NT == 0 {
        return acc;
    }
    let f = std::mem::size_of::<f32>();
    let taps: [usize; 9] = std::array::from_fn(|t| a.taps[t] * f);
    // SAFETY: the loads are those of `block` (in bounds as `Direct3x3::run` states):
    // xp[ci·plane + i[q] + taps[t] .. + 8] for ci < cin, t < NT, q < 3, and the weights
    // wk[(ci·NT + t)·obs + j0 + j] for j < 4 (the pointer advances by obs per tap, so by
    // NT·obs per input channel). The assembly writes no memory and no stack; it clobbers
    // the flags, the listed scratch registers and ymm12–ymm15.
    unsafe {
        std::arch::asm!(
            "2:",
            "xor {t:e}, {t:e}",
            "3:",
            "mov {p}, qword ptr [{taps} + 8*{t}]",
            "add {p}, {x}",
            "vmovups ymm12, ymmword ptr [{p} + {i0}]",
            "vmovups ymm13, ymmword ptr [{p} + {i1}]",
            "vmovups ymm14, ymmword ptr [{p} + {i2}]",
            "vbroadcastss ymm15, dword ptr [{w}]",
            "vfmadd231ps ymm0, ymm15, ymm12",
            "vfmadd231ps ymm1, ymm15, ymm13",
            "vfmadd231ps ymm2, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{w} + 4]",
            "vfmadd231ps ymm3, ymm15, ymm12",
            "vfmadd231ps ymm4, ymm15, ymm13",
            "vfmadd231ps ymm5, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{w} + 8]",
            "vfmadd231ps ymm6, ymm15, ymm12",
            "vfmadd231ps ymm7, ymm15, ymm13",
            "vfmadd231ps ymm8, ymm15, ymm14",
            "vbroadcastss ymm15, dword ptr [{w} + 12]",
            "vfmadd231ps ymm9, ymm15, ymm12",
            "vfmadd231ps ymm10, ymm15, ymm13",
            "vfmadd231ps ymm11, ymm15, ymm14",
            "add {w}, {ws}",
            "inc {t}",
            "cmp {t}, {nt}",
            "jb 3b",
            "add {x}, {plane}",
            "dec {cin}",
            "jnz 2b",
            x = inout(reg) a.xp => _,
            w = inout(reg) a.wk.add(j0) => _,
            cin = inout(reg) a.cin => _,
            t = out(reg) _,
            p = out(reg) _,
            taps = in(reg) taps.as_ptr(),
            i0 = in(reg) a.i[0] * f,
            i1 = in(reg) a.i[1] * f,
            i2 = in(reg) a.i[2] * f,
            ws = in(reg) obs * f,
            plane = in(reg) a.plane * f,
            nt = const NT,
            inout("ymm0") acc[0][0],
            inout("ymm1") acc[0][1],
            inout("ymm2") acc[0][2],
            inout("ymm3") acc[1][0],
            inout("ymm4") acc[1][1],
            inout("ymm5") acc[1][2],
            inout("ymm6") acc[2][0],
            inout("ymm7") acc[2][1],
            inout("ymm8") acc[2][2],
            inout("ymm9") acc[3][0],
            inout("ymm10") acc[3][1],
            inout("ymm11") acc[3][2],
            out("ymm12") _,
            out("ymm13") _,
            out("ymm14") _,
            out("ymm15") _,
            options(nostack, readonly),
        );
    }
    acc
}

/// Output channels `j0..j0 + K` of an AVX2 [`block`] of `obs` channels (the 1 to 3
/// channels [`avx2_kernel_4x3`] leaves), with intrinsics.
///
/// # Safety
/// As [`block_avx2`], `j0 + K ≤ obs`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// Index loops over small constant ranges: the accumulators must stay in registers.
#[allow(clippy::needless_range_loop)]
unsafe fn block_avx2_part<const K: usize, const P: u8, const NT: usize>(
    obs: usize,
    j0: usize,
    a: &Args,
) {
    use std::arch::x86_64::*;
    // acc[j][q]: channel j0 + j, run q.
    let mut acc = [[_mm256_setzero_ps(); 3]; K];
    for ci in 0..a.cin {
        // SAFETY: in bounds as `Direct3x3::run` states.
        unsafe {
            let xc = a.xp.add(ci * a.plane);
            let wc = a.wk.add(ci * NT * obs + j0);
            for t in 0..NT {
                let off = a.taps[t];
                let v: [__m256; 3] = std::array::from_fn(|q| _mm256_loadu_ps(xc.add(a.i[q] + off)));
                let wt = wc.add(t * obs);
                for j in 0..K {
                    let k = _mm256_set1_ps(*wt.add(j));
                    for q in 0..3 {
                        acc[j][q] = _mm256_fmadd_ps(k, v[q], acc[j][q]);
                    }
                }
            }
        }
    }
    // SAFETY: forwarded.
    unsafe { store_avx2::<K, P>(j0, acc, a) };
}

/// Stores the sums `acc[j][q]` of output channels `j0..j0 + K` over the block's three
/// 8-pixel runs, after the [`Post`] transform `P` ([`block`]).
///
/// # Safety
/// As [`block_avx2`]; channels j0..j0 + K are in the block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_avx2<const K: usize, const P: u8>(j0: usize, acc: [[__m256; 3]; K], a: &Args) {
    use std::arch::x86_64::*;
    for (j, mut r) in acc.into_iter().enumerate() {
        if P > 0 {
            // SAFETY: with P > 0 scale and shift hold the block's channels.
            let (s, b) = unsafe {
                (
                    _mm256_set1_ps(*a.scale.add(j0 + j)),
                    _mm256_set1_ps(*a.shift.add(j0 + j)),
                )
            };
            for rq in &mut r {
                *rq = _mm256_add_ps(_mm256_mul_ps(*rq, s), b);
                if P > 1 {
                    // max(v, +0): +0 for v ≤ 0, −0 and NaN, as `pos`.
                    *rq = _mm256_max_ps(*rq, _mm256_setzero_ps());
                }
            }
        }
        // SAFETY: output channel j0 + j of the block, 8 elements at each o[q].
        unsafe {
            let y = a.y.add((j0 + j) * a.yplane);
            for (q, rq) in r.into_iter().enumerate() {
                _mm256_storeu_ps(y.add(a.o[q]), rq);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn block_avx2<const P: u8, const NT: usize>(_: usize, _: &Args) {
    unreachable!("the direct kernel is only enabled on x86_64")
}

/// The input gradient of a 3×3 convolution with stride 2 and padding 1 of `[c, h, w]`
/// images (h and w even, `(h/2)·(w/2)` a multiple of 16): `dy` `[o, h/2, w/2]` →
/// `dx` `[c, h, w]`. The pixels of dx fall into four parity classes (row parity py, column
/// parity px), each a convolution of dy on its own `[h/2, w/2]` grid with some of the
/// taps: py = 0 takes kernel row 1 at dy row a, py = 1 kernel row 0 at row a + 1 and row 2
/// at row a (columns alike), so 1, 2, 2 and 4 taps, 9 in all, as many multiply-adds as
/// the GEMM path without its column matrix and scatter. Each class runs the register
/// [`block`] over two column-shifted copies of dy (`[2][h/2 + 1][w/2]`, zero where the
/// shift or the extra row leaves dy) into a class plane, and the four planes are
/// interleaved into dx. Each element is summed in one fixed order (dy channel, then tap).
pub(super) struct Stride2InputGrad {
    o: usize,
    c: usize,
    ho: usize,
    wo: usize,
    /// Per class (py, px) in order (0, 0), (0, 1), (1, 0), (1, 1): its tap offsets in the
    /// copy and its weights, per block of [`OB`] dx channels `[o][taps][obs]` at offset
    /// `c0·o·taps`.
    classes: [(Vec<usize>, Vec<f32>); 4],
}

impl Stride2InputGrad {
    /// For the weight `w` `[o, c, 3, 3]` of a stride-2, padding-1 convolution of `[c, h,
    /// wd]` images; `None` where the kernel does not apply.
    pub(super) fn new(w: &[f32], o: usize, c: usize, (h, wd): (usize, usize)) -> Option<Self> {
        let (ho, wo) = (h / 2, wd / 2);
        if !enabled()
            || w.len() != o * c * 9
            || o == 0
            || c == 0
            || h % 2 != 0
            || wd % 2 != 0
            || ho * wo == 0
            || !(ho * wo).is_multiple_of(16)
        {
            return None;
        }
        // Kernel row (or column) and dy row (column) offset of the taps of parity q.
        let along = |q: usize| -> &'static [(usize, usize)] {
            if q == 0 { &[(1, 0)] } else { &[(0, 1), (2, 0)] }
        };
        let sp = (ho + 1) * wo;
        let classes = std::array::from_fn(|k| {
            let (py, px) = (k / 2, k % 2);
            let mut taps = Vec::new();
            let mut kernel = Vec::new();
            for &(ki, da) in along(py) {
                for &(kj, db) in along(px) {
                    taps.push(db * sp + da * wo);
                    kernel.push(ki * 3 + kj);
                }
            }
            let nt = taps.len();
            let mut packed = vec![0f32; o * c * nt];
            for c0 in (0..c).step_by(OB) {
                let obs = OB.min(c - c0);
                let block = &mut packed[c0 * o * nt..(c0 + obs) * o * nt];
                for oi in 0..o {
                    for (t, &kt) in kernel.iter().enumerate() {
                        for j in 0..obs {
                            block[(oi * nt + t) * obs + j] = w[(oi * c + c0 + j) * 9 + kt];
                        }
                    }
                }
            }
            (taps, packed)
        });
        Some(Stride2InputGrad {
            o,
            c,
            ho,
            wo,
            classes,
        })
    }

    /// Elements of one image's dy.
    pub(super) fn dy_len(&self) -> usize {
        self.o * self.ho * self.wo
    }

    /// Elements of one image's dx.
    pub(super) fn dx_len(&self) -> usize {
        self.c * 4 * self.ho * self.wo
    }

    /// `dx` `[c, h, w]` of one image from its `dy` `[o, h/2, w/2]`; `copy` and `planes` are
    /// scratch. Writes every element of `dx`.
    pub(super) fn run(
        &self,
        dy: &[f32],
        copy: &mut Vec<f32>,
        planes: &mut Vec<f32>,
        dx: &mut [MaybeUninit<f32>],
    ) {
        assert!(dy.len() == self.dy_len() && dx.len() == self.dx_len());
        let (o, c, ho, wo) = (self.o, self.c, self.ho, self.wo);
        let (yplane, sp) = (ho * wo, (ho + 1) * wo);
        let plane = 2 * sp;
        // The zero row and the zero last column of the shifted copy are never overwritten.
        if copy.len() != o * plane {
            copy.clear();
            copy.resize(o * plane, 0.0);
        }
        for (src, dst) in dy.chunks_exact(yplane).zip(copy.chunks_exact_mut(plane)) {
            let (same, shifted) = dst.split_at_mut(sp);
            same[..yplane].copy_from_slice(src);
            for (s, d) in src.chunks_exact(wo).zip(shifted.chunks_exact_mut(wo)) {
                d[..wo - 1].copy_from_slice(&s[1..]);
            }
        }
        planes.resize(4 * c * yplane, 0.0);
        let group = pixel_group();
        let runs = yplane / group.1;
        for (k, (taps, packed)) in self.classes.iter().enumerate() {
            let nt = taps.len();
            let mut tap = [0usize; 9];
            tap[..nt].copy_from_slice(taps);
            let out = planes[k * c * yplane..].as_mut_ptr();
            for g in 0..runs.div_ceil(group.0) {
                let (i, out_at) = group_runs(g, group, runs, |r, width| (r * width, r * width));
                for c0 in (0..c).step_by(OB) {
                    let obs = OB.min(c - c0);
                    let args = Args {
                        xp: copy.as_ptr(),
                        cin: o,
                        plane,
                        taps: tap,
                        i,
                        wk: packed[c0 * o * nt..].as_ptr(),
                        y: out.wrapping_add(c0 * yplane),
                        yplane,
                        o: out_at,
                        scale: std::ptr::null(),
                        shift: std::ptr::null(),
                    };
                    // SAFETY: AVX-512 or AVX2 + FMA is present (`enabled`); the taps read
                    // copy[oi·plane + i + tap .. + 16] with i + 15 < ho·wo and tap ≤ sp + wo,
                    // so below 2·sp = plane; the weights hold o·nt·obs values at c0·o·nt;
                    // the stores stay in class k's planes c0..c0 + obs.
                    unsafe {
                        match nt {
                            1 => block_post::<0, 1>(obs, &args),
                            2 => block_post::<0, 2>(obs, &args),
                            _ => block_post::<0, 4>(obs, &args),
                        }
                    }
                }
            }
        }
        // dx[ci][2a + py][2b + px] = plane (py, px)[ci][a·wo + b].
        let w = 2 * wo;
        let plane_of = |k: usize, ci: usize| &planes[(k * c + ci) * yplane..][..yplane];
        for (ci, dxc) in dx.chunks_exact_mut(4 * yplane).enumerate() {
            for (r, row) in dxc.chunks_exact_mut(w).enumerate() {
                let (a, py) = (r / 2, r % 2);
                let even = &plane_of(2 * py, ci)[a * wo..(a + 1) * wo];
                let odd = &plane_of(2 * py + 1, ci)[a * wo..(a + 1) * wo];
                for ((pair, &e), &d) in row.chunks_exact_mut(2).zip(even).zip(odd) {
                    pair[0].write(e);
                    pair[1].write(d);
                }
            }
        }
    }
}

/// Output channels per vector of the weight-gradient kernel.
const LANES: usize = 16;

/// The weight gradient of a 3×3 same convolution (stride 1, padding 1) in f32 with
/// AVX-512, vectorised over output channels: for every output pixel, 16 output channels'
/// gradients (a row of the image's `dy` transposed to `[h·w, o]`) times one input value
/// per (input channel, tap), broadcast. `o` must be a multiple of 16. (Strided 3×3
/// convolutions keep the GEMM path: this kernel with a stride was measured slower.)
///
/// With AVX2 (and FMA) but no AVX-512 it is vectorised over pixels instead
/// ([`WeightGrad3x3::run_avx2`]): `o` a multiple of 4, `w` of 8.
pub(super) struct WeightGrad3x3 {
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    isa: Isa,
}

impl WeightGrad3x3 {
    /// `None` where the kernel does not apply (neither AVX-512 with `o` a multiple of 16
    /// nor AVX2 with `o` a multiple of 4 and `w` of 8).
    pub(super) fn new(o: usize, c: usize, h: usize, w: usize) -> Option<Self> {
        let isa = isa()?;
        let fits = match isa {
            Isa::Avx512 => o.is_multiple_of(LANES),
            Isa::Avx2 => o.is_multiple_of(4) && w.is_multiple_of(8),
        };
        if !fits || o == 0 || c == 0 || h == 0 || w == 0 {
            return None;
        }
        Some(WeightGrad3x3 { c, o, h, w, isa })
    }

    /// `dw` `[o, c, 3, 3]` (overwritten) = Σ over the images `xs` `[n, c, h, w]` and their
    /// output gradients `dys` `[n, o, h, w]`. Each weight's sum runs over the images, then
    /// the pixels in row-major order: a fixed order.
    pub(super) fn run(&self, xs: &[f32], dys: &[f32], dw: &mut [f32]) {
        let (c, o, h, w) = (self.c, self.o, self.h, self.w);
        let (hw, wp) = (h * w, w + 2);
        let plane = (h + 2) * wp;
        let n = xs.len() / (c * hw);
        assert!(xs.len() == n * c * hw && dys.len() == n * o * hw && dw.len() == o * c * 9);
        if self.isa == Isa::Avx2 {
            self.run_avx2(xs, dys, dw);
            return;
        }
        // acc[ci][t][oc], xpad [c, h + 2, w + 2], dyt [h·w, o].
        let mut acc = vec![0f32; c * 9 * o];
        let mut xpad = vec![0f32; c * plane];
        let mut dyt = vec![0f32; hw * o];
        for (x, dy) in xs.chunks_exact(c * hw).zip(dys.chunks_exact(o * hw)) {
            pad_images(x, (h, w), &mut xpad);
            // Transposed in tiles of 16 pixels × 16 channels in registers; a last partial
            // tile of pixels element by element.
            let full = hw / LANES * LANES;
            for p0 in (0..full).step_by(LANES) {
                for oc0 in (0..o).step_by(LANES) {
                    // SAFETY: AVX-512 is present (`new`); the tile's 16 rows of 16 values
                    // at dy[(oc0 + i)·hw + p0 ..] and dyt[(p0 + j)·o + oc0 ..] lie inside
                    // (p0 + 16 ≤ hw, oc0 + 16 ≤ o as o is a multiple of 16).
                    unsafe {
                        transpose16(
                            dy[oc0 * hw + p0..].as_ptr(),
                            hw,
                            dyt[p0 * o + oc0..].as_mut_ptr(),
                            o,
                        )
                    };
                }
            }
            for (oc, row) in dy.chunks_exact(hw).enumerate() {
                for (q, &v) in row[full..].iter().enumerate() {
                    dyt[(full + q) * o + oc] = v;
                }
            }
            let ov = if o.is_multiple_of(2 * LANES) { 2 } else { 1 };
            let cb_max = if ov == 2 { 1 } else { 3 };
            for o0 in (0..o).step_by(ov * LANES) {
                for c0 in (0..c).step_by(cb_max) {
                    let cb = cb_max.min(c - c0);
                    let args = GArgs {
                        xpad: xpad[c0 * plane..].as_ptr(),
                        plane,
                        wp,
                        h,
                        w,
                        dyt: dyt[o0..].as_ptr(),
                        o,
                        acc: acc[c0 * 9 * o + o0..].as_mut_ptr(),
                    };
                    // SAFETY: AVX-512 is present (`new`); reads of xpad stay in channels
                    // c0..c0 + cb (rows y + ki ≤ h + 1, columns x + kj ≤ w + 1), of dyt in
                    // columns o0..o0 + 16·ov of its h·w rows, and the accumulators are
                    // acc[c0 + j][t][o0..o0 + 16·ov].
                    unsafe {
                        match (ov, cb) {
                            (2, _) => gblock::<2, 1>(&args),
                            (_, 3) => gblock::<1, 3>(&args),
                            (_, 2) => gblock::<1, 2>(&args),
                            _ => gblock::<1, 1>(&args),
                        }
                    }
                }
            }
        }
        for oc in 0..o {
            for ci in 0..c {
                for t in 0..9 {
                    dw[(oc * c + ci) * 9 + t] = acc[(ci * 9 + t) * o + oc];
                }
            }
        }
    }
}

/// Copies the images `x` `[k, h, w]` (any number k of channels or images) into the
/// interiors of the zero-bordered planes `xpad` `[k, h + 2, w + 2]` (the borders are left
/// as they are).
fn pad_images(x: &[f32], (h, w): (usize, usize), xpad: &mut [f32]) {
    let wp = w + 2;
    for (xc, pc) in x
        .chunks_exact(h * w)
        .zip(xpad.chunks_exact_mut((h + 2) * wp))
    {
        for (src, dst) in xc.chunks_exact(w).zip(pc[wp..].chunks_exact_mut(wp)) {
            dst[1..=w].copy_from_slice(src);
        }
    }
}

/// Pixels per sweep of [`wgrad_avx2`] (a chunk of whole images): enough runs that loading
/// and storing its 12 accumulators costs little, few enough that the chunk's 4 `dy`
/// channels stay in the L1 cache.
const WGRAD_SWEEP_PIXELS: usize = 512;

impl WeightGrad3x3 {
    /// [`run`](Self::run) with AVX2, vectorised over pixels: for 4 output channels and one
    /// kernel row of one input channel, 12 accumulators of 8 lanes each take, for every run
    /// of 8 pixels of an output row, the 4 channels' `dy` times the 3 input runs shifted by
    /// the kernel columns ([`wgrad_avx2`]). Each lane sums its pixels over the images in
    /// order, then the pixels in row-major order; the 8 lanes are then added in order: a
    /// fixed order.
    fn run_avx2(&self, xs: &[f32], dys: &[f32], dw: &mut [f32]) {
        let (c, o, h, w) = (self.c, self.o, self.h, self.w);
        let (hw, wp) = (h * w, w + 2);
        let plane = (h + 2) * wp;
        let n = xs.len() / (c * hw);
        let chunk = (WGRAD_SWEEP_PIXELS / hw).clamp(1, n.max(1));
        // lanes[((oc·c + ci)·9 + t)·8 + l]: lane l's partial sum; xpad [chunk, c, h + 2, w + 2].
        let mut lanes = vec![0f32; o * c * 9 * 8];
        let mut xpad = vec![0f32; chunk * c * plane];
        for (x, dy) in xs.chunks(chunk * c * hw).zip(dys.chunks(chunk * o * hw)) {
            let images = x.len() / (c * hw);
            pad_images(x, (h, w), &mut xpad);
            for o0 in (0..o).step_by(4) {
                for ci in 0..c {
                    for ki in 0..3 {
                        let args = WArgs {
                            dy: dy[o0 * hw..].as_ptr(),
                            dy_image: o * hw,
                            hw,
                            x: xpad[ci * plane + ki * wp..].as_ptr(),
                            x_image: c * plane,
                            wp,
                            images,
                            h,
                            w,
                            lanes: lanes[((o0 * c + ci) * 9 + ki * 3) * 8..].as_mut_ptr(),
                            lanes_channel: c * 9 * 8,
                        };
                        // SAFETY: AVX2 and FMA are present (`new`); the reads of dy stay in
                        // channels o0..o0 + 4 (o a multiple of 4) of the chunk's images,
                        // those of xpad in channel ci of them, rows ki..ki + h, columns
                        // x0 + kj .. x0 + kj + 8 ≤ w + 2 (w a multiple of 8); the
                        // accumulators are lanes[((o0 + j)·c + ci)·9 + ki·3 + kj][..8].
                        unsafe { wgrad_avx2(&args) };
                    }
                }
            }
        }
        for (d, l) in dw.iter_mut().zip(lanes.chunks_exact(8)) {
            *d = l.iter().sum();
        }
    }
}

/// One sweep's operands (see [`WeightGrad3x3::run_avx2`]).
struct WArgs {
    /// Channel o0 of the chunk's first `dy` image, and the distance between images.
    dy: *const f32,
    dy_image: usize,
    hw: usize,
    /// Row ki of input channel ci of the chunk's first padded image, and the distance
    /// between images.
    x: *const f32,
    x_image: usize,
    wp: usize,
    images: usize,
    h: usize,
    w: usize,
    /// Lanes of (o0, ci, ki·3); output channel j at `j·lanes_channel` further, column kj
    /// at `kj·8`.
    lanes: *mut f32,
    lanes_channel: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// Index loops over small constant ranges: the accumulators must stay in registers.
#[allow(clippy::needless_range_loop)]
unsafe fn wgrad_avx2(a: &WArgs) {
    use std::arch::x86_64::*;
    // SAFETY: in bounds as `WeightGrad3x3::run_avx2` states.
    unsafe {
        let mut acc: [[__m256; 3]; 4] = std::array::from_fn(|j| {
            std::array::from_fn(|kj| _mm256_loadu_ps(a.lanes.add(j * a.lanes_channel + kj * 8)))
        });
        for i in 0..a.images {
            let (dyi, xi) = (a.dy.add(i * a.dy_image), a.x.add(i * a.x_image));
            for y in 0..a.h {
                let (dyr, xr) = (dyi.add(y * a.w), xi.add(y * a.wp));
                for x0 in (0..a.w).step_by(8) {
                    let xv: [__m256; 3] =
                        std::array::from_fn(|kj| _mm256_loadu_ps(xr.add(x0 + kj)));
                    for j in 0..4 {
                        let d = _mm256_loadu_ps(dyr.add(j * a.hw + x0));
                        for kj in 0..3 {
                            acc[j][kj] = _mm256_fmadd_ps(d, xv[kj], acc[j][kj]);
                        }
                    }
                }
            }
        }
        for (j, per_j) in acc.iter().enumerate() {
            for (kj, &r) in per_j.iter().enumerate() {
                _mm256_storeu_ps(a.lanes.add(j * a.lanes_channel + kj * 8), r);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn wgrad_avx2(_: &WArgs) {
    unreachable!("the direct kernels are only enabled on x86_64")
}

/// Writes the transpose of the 16 × 16 block at `src` (rows `src_stride` apart) to `dst`
/// (rows `dst_stride` apart): 16 loads, 64 in-register shuffles, 16 stores.
///
/// # Safety
/// AVX-512F; both blocks valid for 16 rows of 16 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: as the caller guarantees.
    let r: [__m512; 16] =
        std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * src_stride)) });
    // Pairs of rows interleaved by element, then groups of 4 rows by pairs of elements:
    // u[4g + c] holds, in its 128-bit lane l, rows 4g .. 4g + 3 of column c + 4l.
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let k = i / 2 * 2;
        if i % 2 == 0 {
            _mm512_unpacklo_ps(r[k], r[k + 1])
        } else {
            _mm512_unpackhi_ps(r[k], r[k + 1])
        }
    });
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let (g, c) = (i / 4 * 4, i % 4);
        let (a, b) = (
            _mm512_castps_pd(t[g + c / 2]),
            _mm512_castps_pd(t[g + 2 + c / 2]),
        );
        _mm512_castpd_ps(if c % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    for c in 0..4 {
        // Lanes 0, 1 (lo) and 2, 3 (hi) of groups 0, 1 and of groups 2, 3.
        let v_lo = _mm512_shuffle_f32x4::<0x44>(u[c], u[4 + c]);
        let v_hi = _mm512_shuffle_f32x4::<0xEE>(u[c], u[4 + c]);
        let w_lo = _mm512_shuffle_f32x4::<0x44>(u[8 + c], u[12 + c]);
        let w_hi = _mm512_shuffle_f32x4::<0xEE>(u[8 + c], u[12 + c]);
        let rows = [
            _mm512_shuffle_f32x4::<0x88>(v_lo, w_lo),
            _mm512_shuffle_f32x4::<0xDD>(v_lo, w_lo),
            _mm512_shuffle_f32x4::<0x88>(v_hi, w_hi),
            _mm512_shuffle_f32x4::<0xDD>(v_hi, w_hi),
        ];
        for (l, row) in rows.into_iter().enumerate() {
            // SAFETY: as the caller guarantees.
            unsafe { _mm512_storeu_ps(dst.add((c + 4 * l) * dst_stride), row) };
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn transpose16(_: *const f32, _: usize, _: *mut f32, _: usize) {
    unreachable!("the direct kernels are only enabled on x86_64")
}

/// One weight-gradient block's operands (see [`WeightGrad3x3::run`]).
struct GArgs {
    /// Channel c0 of the zero-bordered image.
    xpad: *const f32,
    plane: usize,
    wp: usize,
    h: usize,
    w: usize,
    /// Column o0 of the transposed output gradient `[h·w, o]`.
    dyt: *const f32,
    o: usize,
    /// acc[c0][0][o0]; (channel j, tap t) at `(j·9 + t)·o` further.
    acc: *mut f32,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// Index loops over small constant ranges: the accumulators must stay in registers.
#[allow(clippy::needless_range_loop)]
unsafe fn gblock<const OV: usize, const CB: usize>(a: &GArgs) {
    use std::arch::x86_64::*;
    // SAFETY: in bounds as `WeightGrad3x3::run` states.
    unsafe {
        let mut acc: [[[__m512; 9]; CB]; OV] = std::array::from_fn(|v| {
            std::array::from_fn(|j| {
                std::array::from_fn(|t| _mm512_loadu_ps(a.acc.add((j * 9 + t) * a.o + v * LANES)))
            })
        });
        for y in 0..a.h {
            for x in 0..a.w {
                let d: [__m512; OV] = std::array::from_fn(|v| {
                    _mm512_loadu_ps(a.dyt.add((y * a.w + x) * a.o + v * LANES))
                });
                for j in 0..CB {
                    let base = a.xpad.add(j * a.plane + y * a.wp + x);
                    // The 9 taps written out: constant accumulator indices (registers).
                    macro_rules! tap {
                        ($($t:literal)*) => {$(
                            let s = _mm512_set1_ps(*base.add(($t / 3) * a.wp + $t % 3));
                            for v in 0..OV {
                                acc[v][j][$t] = _mm512_fmadd_ps(d[v], s, acc[v][j][$t]);
                            }
                        )*};
                    }
                    tap!(0 1 2 3 4 5 6 7 8);
                }
            }
        }
        for (v, per_v) in acc.iter().enumerate() {
            for (j, per_j) in per_v.iter().enumerate() {
                for (t, &r) in per_j.iter().enumerate() {
                    _mm512_storeu_ps(a.acc.add((j * 9 + t) * a.o + v * LANES), r);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn gblock<const OV: usize, const CB: usize>(_: &GArgs) {
    unreachable!("the direct kernels are only enabled on x86_64")
}
