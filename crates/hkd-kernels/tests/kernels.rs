//! The CPU kernels against candle's stock operations (values and autograd gradients) and
//! against central finite differences in f64; same input, bit-identical output.

use candle_core::{DType, Device, Tensor, Var};
use hkd_kernels::{self as kernels, ConvPath, Ops};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn assert_close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let (a, b) = (values(a), values(b));
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}[{i}]: {x} vs {y} (tolerance {tol} x {scale})"
        );
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// (N, C, H, W, O, kernel, stride, padding): odd channel counts, 1x1 and 3x3, strides 1
/// and 2, paddings 0 and 1, odd and non-square images.
type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);

const CONV_CASES: &[ConvCase] = &[
    (2, 3, 7, 6, 5, 3, 1, 1),
    (3, 5, 8, 8, 7, 3, 2, 1),
    (2, 3, 9, 7, 5, 1, 1, 0),
    (2, 5, 8, 7, 3, 1, 2, 0),
    (2, 3, 6, 5, 4, 3, 1, 0),
    (2, 4, 7, 9, 3, 3, 2, 0),
    (1, 1, 5, 5, 1, 3, 1, 1),
    (2, 3, 4, 4, 5, 3, 2, 1),
    (2, 3, 3, 2, 4, 5, 2, 2),
    (1, 2, 2, 3, 3, 5, 1, 2),
    (3, 6, 10, 12, 8, 3, 1, 1),
    (2, 3, 7, 9, 4, 5, 1, 2),
    // Widths that are multiples of 16: the direct 3x3 kernel for f32 where the CPU has
    // AVX-512 or AVX2 (output channels not a multiple of its block of 8, an odd number of
    // 16-pixel vectors per channel), and
    // 8-pixel-wide images whose pixel count is a multiple of 16 (three shifted copies).
    (2, 5, 3, 16, 11, 3, 1, 1),
    (2, 9, 4, 32, 17, 3, 1, 1),
    (2, 6, 8, 8, 10, 3, 1, 1),
    (1, 3, 2, 8, 9, 3, 1, 1),
    // Output channels a multiple of 16: the direct weight gradient of 3x3 same
    // convolutions (f32, AVX-512), with 16 (input channels in blocks of 3 and a rest) and
    // 32 output channels (two vectors); strided ones with 16 and 32 output channels keep
    // the GEMM path.
    (2, 4, 5, 7, 16, 3, 1, 1),
    (2, 5, 4, 16, 32, 3, 1, 1),
    // With AVX2 but no AVX-512 the direct weight gradient needs output channels a
    // multiple of 4 and widths a multiple of 8: 12 channels (three blocks of 4) on an
    // 8-pixel-wide image, and 40 16×16 images, cut into parts of 3 images, each swept in
    // chunks of 2 whole images (512 pixels) and a last chunk of 1.
    (2, 3, 5, 8, 12, 3, 1, 1),
    (40, 2, 16, 16, 12, 3, 1, 1),
    (2, 3, 9, 8, 16, 3, 2, 1),
    (2, 3, 8, 8, 16, 3, 2, 1),
    // Stride 2 with an output pixel count a multiple of 16: the direct forward kernel
    // (six copies by kernel column and row parity), odd and non-square inputs.
    (2, 5, 16, 8, 7, 3, 2, 1),
    (1, 4, 7, 31, 9, 3, 2, 1),
    (2, 4, 8, 7, 32, 3, 2, 1),
    // Stride 2 with even image sizes (and output pixels a multiple of 16): the direct input
    // gradient by parity classes, with input channels not a multiple of its block of 8
    // and an odd number of 16-pixel vectors per class plane (8x6 output).
    (2, 9, 16, 32, 12, 3, 2, 1),
    (2, 11, 16, 12, 5, 3, 2, 1),
];

#[test]
fn conv2d_forward_matches_candle() {
    for (i, &(n, c, h, w, o, k, s, p)) in CONV_CASES.iter().enumerate() {
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
            let x = random(&[n, c, h, w], dtype, i as u64);
            let wt = random(&[o, c, k, k], dtype, 100 + i as u64);
            let ours = kernels::conv2d(&x, &wt, s, p, 1).unwrap();
            let stock = x.conv2d(&wt, p, s, 1, 1).unwrap();
            assert_close(&ours, &stock, tol, &format!("conv case {i} {dtype:?}"));
        }
    }
}

/// Gradients of sum(conv(x, w) * r) w.r.t. x and w by the kernels and by candle.
fn conv_grads(x: &Tensor, w: &Tensor, s: usize, p: usize, stock: bool) -> (Tensor, Tensor) {
    try_conv_grads(x, w, s, p, stock).unwrap()
}

fn try_conv_grads(
    x: &Tensor,
    w: &Tensor,
    s: usize,
    p: usize,
    stock: bool,
) -> candle_core::Result<(Tensor, Tensor)> {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let y = if stock {
        xv.as_tensor().conv2d(wv.as_tensor(), p, s, 1, 1).unwrap()
    } else {
        kernels::conv2d(xv.as_tensor(), wv.as_tensor(), s, p, 1).unwrap()
    };
    let r = random(y.dims(), y.dtype(), 7);
    let g = (y * r)?.sum_all()?.backward()?;
    Ok((
        g.get(xv.as_tensor()).unwrap().clone(),
        g.get(wv.as_tensor()).unwrap().clone(),
    ))
}

#[test]
fn conv2d_gradients_match_candle_autograd() {
    let mut skipped = 0;
    for (i, &(n, c, h, w, o, k, s, p)) in CONV_CASES.iter().enumerate() {
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
            let x = random(&[n, c, h, w], dtype, i as u64);
            let wt = random(&[o, c, k, k], dtype, 100 + i as u64);
            let (dx, dw) = conv_grads(&x, &wt, s, p, false);
            // candle 0.11's own conv2d backward fails when a strided convolution drops
            // input pixels (odd width with stride 2: "shape mismatch in add"); those
            // cases are checked against finite differences only.
            let Ok((sx, sw)) = try_conv_grads(&x, &wt, s, p, true) else {
                assert!((w + 2 * p - k) % s != 0 || (h + 2 * p - k) % s != 0);
                skipped += 1;
                continue;
            };
            assert_close(&dx, &sx, tol, &format!("conv case {i} {dtype:?} dx"));
            assert_close(&dw, &sw, tol, &format!("conv case {i} {dtype:?} dw"));
        }
    }
    assert!(
        skipped < CONV_CASES.len(),
        "{skipped} cases without a stock gradient"
    );
}

/// Central finite differences of `loss` at a few indices of `t` against `grad`.
fn check_fd(t: &Tensor, grad: &Tensor, loss: impl Fn(&Tensor) -> f64, what: &str) {
    let flat = values(t);
    let g = values(grad);
    let n = flat.len();
    for idx in [0, n / 3, n / 2, n - 1] {
        let h = 1e-6;
        let at = |d: f64| {
            let mut v = flat.clone();
            v[idx] += d;
            loss(&Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap())
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (fd - g[idx]).abs() < 1e-6 * (1.0 + fd.abs()),
            "{what}[{idx}]: finite difference {fd}, kernel gradient {}",
            g[idx]
        );
    }
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar::<f64>().unwrap()
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    for (i, &(n, c, h, w, o, k, s, p)) in CONV_CASES.iter().enumerate() {
        let x = random(&[n, c, h, w], DType::F64, i as u64);
        let wt = random(&[o, c, k, k], DType::F64, 100 + i as u64);
        let (dx, dw) = conv_grads(&x, &wt, s, p, false);
        let r = random(
            kernels::conv2d(&x, &wt, s, p, 1).unwrap().dims(),
            DType::F64,
            7,
        );
        let loss = |x: &Tensor, wt: &Tensor| {
            scalar(
                &(kernels::conv2d(x, wt, s, p, 1).unwrap() * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap(),
            )
        };
        check_fd(&x, &dx, |t| loss(t, &wt), &format!("conv case {i} dx"));
        check_fd(&wt, &dw, |t| loss(&x, t), &format!("conv case {i} dw"));
    }
}

/// Training BatchNorm as a composition of candle ops (the reference).
fn stock_bn(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
    let (n, c, h, w) = x.dims4().unwrap();
    let xr = x.reshape((n, c, h * w)).unwrap();
    let mean = xr.mean_keepdim(2).unwrap().mean_keepdim(0).unwrap();
    let centered = xr.broadcast_sub(&mean).unwrap();
    let var = centered
        .sqr()
        .unwrap()
        .mean_keepdim(2)
        .unwrap()
        .mean_keepdim(0)
        .unwrap();
    let inv = (var + 1e-5).unwrap().sqrt().unwrap().recip().unwrap();
    let scale = inv
        .broadcast_mul(&gamma.reshape((1, c, 1)).unwrap())
        .unwrap();
    centered
        .broadcast_mul(&scale)
        .unwrap()
        .broadcast_add(&beta.reshape((1, c, 1)).unwrap())
        .unwrap()
        .reshape((n, c, h, w))
        .unwrap()
}

fn kernel_bn(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
    let (mean, var) = kernels::channel_stats(x).unwrap();
    kernels::batch_norm_train(x, gamma, beta, &mean, &var, 1e-5, false).unwrap()
}

fn kernel_bn_relu(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
    let (mean, var) = kernels::channel_stats(x).unwrap();
    kernels::batch_norm_train(x, gamma, beta, &mean, &var, 1e-5, true).unwrap()
}

fn stock_bn_relu(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
    stock_bn(x, gamma, beta).relu().unwrap()
}

const BN_SHAPES: &[[usize; 4]] = &[[4, 3, 5, 5], [3, 5, 4, 3], [2, 1, 3, 7], [8, 7, 2, 2]];

fn bn_grads(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    f: fn(&Tensor, &Tensor, &Tensor) -> Tensor,
) -> Vec<Tensor> {
    let vars: Vec<Var> = [x, gamma, beta]
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let y = f(
        vars[0].as_tensor(),
        vars[1].as_tensor(),
        vars[2].as_tensor(),
    );
    let r = random(y.dims(), y.dtype(), 9);
    let g = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    vars.iter()
        .map(|v| g.get(v.as_tensor()).unwrap().clone())
        .collect()
}

#[test]
fn batch_norm_add_relu_equals_the_two_ops() {
    // The end of a residual block in training: one op, the same bits as batch_norm_train
    // then add_relu, values and the gradients of x, γ, β and the residual.
    for (k, &[n, c, h, w]) in BN_SHAPES.iter().enumerate() {
        for dtype in [DType::F32, DType::F64] {
            let seed = 40 + 10 * k as u64;
            let x = random(&[n, c, h, w], dtype, seed);
            let r = random(&[n, c, h, w], dtype, seed + 1);
            let gamma = random(&[c], dtype, seed + 2);
            let beta = random(&[c], dtype, seed + 3);
            let (mean, var) = kernels::channel_stats(&x).unwrap();
            let run = |fused: bool| {
                let vars: Vec<Var> = [&x, &gamma, &beta, &r]
                    .iter()
                    .map(|t| Var::from_tensor(t).unwrap())
                    .collect();
                let [xv, gv, bv, rv] = [0, 1, 2, 3].map(|i| vars[i].as_tensor());
                let y = if fused {
                    kernels::batch_norm_train_add_relu(xv, gv, bv, &mean, &var, 1e-5, rv).unwrap()
                } else {
                    let z =
                        kernels::batch_norm_train(xv, gv, bv, &mean, &var, 1e-5, false).unwrap();
                    kernels::add_relu(&z, rv).unwrap()
                };
                let dy = random(y.dims(), dtype, seed + 4);
                let g = (&y * dy).unwrap().sum_all().unwrap().backward().unwrap();
                let mut out = vec![values(&y)];
                out.extend(vars.iter().map(|v| values(g.get(v.as_tensor()).unwrap())));
                out
            };
            let (fused, two) = (run(true), run(false));
            for (i, what) in ["values", "dx", "dγ", "dβ", "dr"].iter().enumerate() {
                assert_eq!(fused[i], two[i], "{:?} {dtype:?}: {what}", [n, c, h, w]);
            }
        }
    }
}

#[test]
fn batch_norm_forward_and_gradients_match_candle() {
    for (i, shape) in BN_SHAPES.iter().enumerate() {
        for (dtype, tol) in [(DType::F32, 2e-5), (DType::F64, 1e-11)] {
            let c = shape[1];
            // An offset mean and spread, as after a convolution.
            let x = ((random(shape, dtype, i as u64) * 3.0).unwrap() + 0.7).unwrap();
            let gamma = (random(&[c], dtype, 50 + i as u64) + 1.5).unwrap();
            let beta = random(&[c], dtype, 60 + i as u64);
            let what = format!("bn {shape:?} {dtype:?}");
            assert_close(
                &kernel_bn(&x, &gamma, &beta),
                &stock_bn(&x, &gamma, &beta),
                tol,
                &what,
            );
            let ours = bn_grads(&x, &gamma, &beta, kernel_bn);
            let stock = bn_grads(&x, &gamma, &beta, stock_bn);
            for (j, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
                assert_close(&ours[j], &stock[j], tol, &format!("{what} {name}"));
            }
            // Fused with the ReLU that follows.
            assert_close(
                &kernel_bn_relu(&x, &gamma, &beta),
                &stock_bn_relu(&x, &gamma, &beta),
                tol,
                &format!("{what} relu"),
            );
            let ours = bn_grads(&x, &gamma, &beta, kernel_bn_relu);
            let stock = bn_grads(&x, &gamma, &beta, stock_bn_relu);
            for (j, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
                assert_close(&ours[j], &stock[j], tol, &format!("{what} relu {name}"));
            }
            // Statistics: mean and biased variance.
            let (mean, var) = kernels::channel_stats(&x).unwrap();
            let v = values(&x);
            let (n, hw) = (shape[0], shape[2] * shape[3]);
            for ci in 0..c {
                let xs: Vec<f64> = (0..n)
                    .flat_map(|k| v[(k * c + ci) * hw..(k * c + ci + 1) * hw].to_vec())
                    .collect();
                let m = xs.iter().sum::<f64>() / xs.len() as f64;
                let s = xs.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / xs.len() as f64;
                assert!((mean[ci] - m).abs() < 1e-12 && (var[ci] - s).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn batch_norm_gradients_match_finite_differences() {
    for (i, shape) in BN_SHAPES.iter().enumerate() {
        let c = shape[1];
        let x = ((random(shape, DType::F64, i as u64) * 3.0).unwrap() + 0.7).unwrap();
        let gamma = (random(&[c], DType::F64, 50 + i as u64) + 1.5).unwrap();
        let beta = random(&[c], DType::F64, 60 + i as u64);
        for (f, kind) in [
            (kernel_bn as fn(&Tensor, &Tensor, &Tensor) -> Tensor, "bn"),
            (kernel_bn_relu, "bn+relu"),
        ] {
            let g = bn_grads(&x, &gamma, &beta, f);
            let r = random(shape, DType::F64, 9);
            let loss = |x: &Tensor, ga: &Tensor, b: &Tensor| {
                scalar(&(f(x, ga, b) * &r).unwrap().sum_all().unwrap())
            };
            let what = format!("{kind} {shape:?}");
            check_fd(&x, &g[0], |t| loss(t, &gamma, &beta), &format!("{what} dx"));
            check_fd(
                &gamma,
                &g[1],
                |t| loss(&x, t, &beta),
                &format!("{what} dgamma"),
            );
            check_fd(
                &beta,
                &g[2],
                |t| loss(&x, &gamma, t),
                &format!("{what} dbeta"),
            );
        }
    }
}

#[test]
fn conv_with_batch_moments_matches_conv_and_channel_stats() {
    // A training BatchNorm after a convolution: where the direct kernel runs (f32, 3x3,
    // stride 1 or 2, AVX-512) the convolution also gives the output's batch mean and
    // variance; the output and its gradients are the plain convolution's, the moments
    // channel_stats' to f64 rounding. Elsewhere no moments.
    let mut fused_cases = 0;
    for &(n, c, h, w, o, k, s, p) in CONV_CASES {
        for dtype in [DType::F32, DType::F64] {
            // Offset and scaled so that the mean is not small against the spread.
            let x = random(&[n, c, h, w], dtype, 21).affine(3.0, 2.0).unwrap();
            let wt = random(&[o, c, k, k], dtype, 22);
            let what = format!("conv_stats {:?} {dtype:?}", (n, c, h, w, o, k, s, p));
            let xv = Var::from_tensor(&x).unwrap();
            let (y, moments) = kernels::conv2d_stats(xv.as_tensor(), &wt, s, p).unwrap();
            let xu = Var::from_tensor(&x).unwrap();
            let plain = kernels::conv2d(xu.as_tensor(), &wt, s, p, 1).unwrap();
            assert_eq!(values(&y), values(&plain), "{what}: values");
            let r = random(y.dims(), dtype, 23);
            let gy = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gp = (&plain * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            assert_eq!(
                values(gy.get(xv.as_tensor()).unwrap()),
                values(gp.get(xu.as_tensor()).unwrap()),
                "{what}: input gradient"
            );
            let Some((mean, var)) = moments else {
                continue;
            };
            fused_cases += 1;
            assert_eq!(dtype, DType::F32, "{what}: moments only for f32");
            let (m2, v2) = kernels::channel_stats(&plain).unwrap();
            for ci in 0..o {
                let (dm, dv) = ((mean[ci] - m2[ci]).abs(), (var[ci] - v2[ci]).abs());
                assert!(
                    dm <= 1e-12 * (1.0 + m2[ci].abs()),
                    "{what}: mean {ci}: {mean:?} vs {m2:?}"
                );
                assert!(
                    dv <= 1e-10 * (1.0 + v2[ci]),
                    "{what}: variance {ci}: {var:?} vs {v2:?}"
                );
            }
        }
    }
    // The direct kernel runs where the CPU has AVX-512 or AVX2 with FMA, it is not switched
    // off, and the convolutions take the kernels' path (not HKD_ARCH_GENERIC_BACKWARD=1 /
    // STOCK_OPS=1).
    let probe = kernels::conv_path(
        &random(&[1, 1, 16, 16], DType::F32, 1),
        &random(&[1, 1, 3, 3], DType::F32, 2),
        1,
        1,
        1,
    )
    .unwrap();
    let direct = kernels::direct_conv_isa().is_some() && probe == kernels::ConvPath::Kernels;
    if direct {
        assert!(
            fused_cases >= 8,
            "only {fused_cases} cases took the fused path"
        );
    } else {
        eprintln!(
            "note: no direct kernel here (no AVX2/AVX-512, switched off, or another conv path): moments not tested"
        );
        assert_eq!(fused_cases, 0);
    }
}

#[test]
fn fused_conv_affine_equals_the_two_ops() {
    // BatchNorm in evaluation after a convolution: one op where the direct kernel runs
    // (f32, 3x3, stride 1 or 2), the same bits as conv2d then channel_affine, and the same
    // gradients; other geometries and f64 fall back to the two ops.
    for &(n, c, h, w, o, k, s, p) in CONV_CASES {
        for dtype in [DType::F32, DType::F64] {
            let x = random(&[n, c, h, w], dtype, 11);
            let wt = random(&[o, c, k, k], dtype, 12);
            let scale: Vec<f64> = (0..o).map(|i| 0.5 + 0.1 * i as f64).collect();
            let shift: Vec<f64> = (0..o).map(|i| 0.05 * i as f64 - 0.2).collect();
            for relu in [false, true] {
                let xv = Var::from_tensor(&x).unwrap();
                let fused =
                    kernels::conv2d_affine(xv.as_tensor(), &wt, s, p, 1, &scale, &shift, relu)
                        .unwrap();
                let xu = Var::from_tensor(&x).unwrap();
                let y = kernels::conv2d(xu.as_tensor(), &wt, s, p, 1).unwrap();
                let two = kernels::channel_affine(&y, &scale, &shift, relu).unwrap();
                let what = format!(
                    "conv_affine {:?} relu {relu} {dtype:?}",
                    (n, c, h, w, o, k, s, p)
                );
                assert_eq!(values(&fused), values(&two), "{what}: values");
                let r = random(fused.dims(), dtype, 13);
                let gf = (&fused * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let gt = (&two * &r).unwrap().sum_all().unwrap().backward().unwrap();
                assert_eq!(
                    values(gf.get(xv.as_tensor()).unwrap()),
                    values(gt.get(xu.as_tensor()).unwrap()),
                    "{what}: input gradient"
                );
            }
        }
    }
}

#[test]
fn add_and_subsample2_match_candle() {
    for dtype in [DType::F32, DType::F64] {
        // add: a + b, both gradients dy.
        let (a, b) = (
            random(&[2, 3, 5, 6], dtype, 1),
            random(&[2, 3, 5, 6], dtype, 2),
        );
        assert_close(
            &kernels::add(&a, &b).unwrap(),
            &(&a + &b).unwrap(),
            0.0,
            "add",
        );
        let (av, bv) = (Var::from_tensor(&a).unwrap(), Var::from_tensor(&b).unwrap());
        let r = random(a.dims(), dtype, 3);
        let y = kernels::add(av.as_tensor(), bv.as_tensor()).unwrap();
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&av, &bv] {
            assert_close(g.get(v.as_tensor()).unwrap(), &r, 0.0, "add gradient");
        }
        // subsample2: x[:, :, o::2, o::2], zero past the border; gradient scattered back.
        for (h, w) in [(6, 8), (5, 7), (1, 2)] {
            for offset in [0, 1] {
                let x = random(&[2, 3, h, w], dtype, 4);
                let xv = Var::from_tensor(&x).unwrap();
                let y = kernels::subsample2(xv.as_tensor(), offset).unwrap();
                let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
                assert_eq!(y.dims(), [2, 3, ho, wo]);
                let (xs, ys) = (values(&x), values(&y));
                let r = random(y.dims(), dtype, 5);
                let dx = values(
                    (&y * &r)
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .backward()
                        .unwrap()
                        .get(xv.as_tensor())
                        .unwrap(),
                );
                let rs = values(&r);
                let mut want_dx = vec![0.0; xs.len()];
                for p in 0..6 {
                    for i in 0..ho {
                        for j in 0..wo {
                            let (iy, ix) = (2 * i + offset, 2 * j + offset);
                            let k = (p * ho + i) * wo + j;
                            let inside = iy < h && ix < w;
                            let want = if inside {
                                xs[(p * h + iy) * w + ix]
                            } else {
                                0.0
                            };
                            assert_eq!(ys[k], want, "subsample2 {h}x{w} offset {offset} at {k}");
                            if inside {
                                want_dx[(p * h + iy) * w + ix] = rs[k];
                            }
                        }
                    }
                }
                assert_eq!(dx, want_dx, "subsample2 gradient {h}x{w} offset {offset}");
            }
        }
    }
}

#[test]
fn relu_and_add_relu_match_candle() {
    for dtype in [DType::F32, DType::F64] {
        let a = random(&[3, 5, 7, 9], dtype, 1);
        let b = random(&[3, 5, 7, 9], dtype, 2);
        assert_close(&kernels::relu(&a).unwrap(), &a.relu().unwrap(), 0.0, "relu");
        assert_close(
            &kernels::add_relu(&a, &b).unwrap(),
            &(&a + &b).unwrap().relu().unwrap(),
            0.0,
            "add_relu",
        );
        // Gradients: dy where the output is positive.
        let (av, bv) = (Var::from_tensor(&a).unwrap(), Var::from_tensor(&b).unwrap());
        let r = random(a.dims(), dtype, 3);
        let y = kernels::add_relu(av.as_tensor(), &kernels::relu(bv.as_tensor()).unwrap()).unwrap();
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let ys = (av.as_tensor() + bv.as_tensor().relu().unwrap())
            .unwrap()
            .relu()
            .unwrap();
        let gs = (&ys * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&av, &bv] {
            assert_close(
                g.get(v.as_tensor()).unwrap(),
                gs.get(v.as_tensor()).unwrap(),
                0.0,
                "relu gradients",
            );
        }
    }
}

#[test]
fn channel_affine_matches_broadcast_ops() {
    let x = random(&[3, 4, 5, 6], DType::F32, 4);
    let scale = [0.5, -1.0, 2.0, 0.0];
    let shift = [0.1, 0.2, -0.3, 0.4];
    let col = |v: &[f64]| {
        Tensor::from_slice(v, (1, 4, 1, 1), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    };
    let stock = x
        .broadcast_mul(&col(&scale))
        .unwrap()
        .broadcast_add(&col(&shift))
        .unwrap();
    let ours = kernels::channel_affine(&x, &scale, &shift, false).unwrap();
    assert_close(&ours, &stock, 1e-6, "channel_affine");
    let ours = kernels::channel_affine(&x, &scale, &shift, true).unwrap();
    assert_close(&ours, &stock.relu().unwrap(), 1e-6, "channel_affine relu");
}

#[test]
fn kernels_are_deterministic() {
    // Large enough for several rayon tasks and weight-gradient parts.
    let x = random(&[37, 16, 16, 16], DType::F32, 5);
    let w = random(&[32, 16, 3, 3], DType::F32, 6);
    let run = || {
        let xv = Var::from_tensor(&x).unwrap();
        let wv = Var::from_tensor(&w).unwrap();
        let y = kernels::conv2d(xv.as_tensor(), wv.as_tensor(), 2, 1, 1).unwrap();
        let c = y.dim(1).unwrap();
        let gamma = Tensor::ones(c, DType::F32, &Device::Cpu).unwrap();
        let beta = Tensor::zeros(c, DType::F32, &Device::Cpu).unwrap();
        let z = kernel_bn_relu(&y, &gamma, &beta);
        let r = random(z.dims(), DType::F32, 8);
        let g = (&z * r).unwrap().sum_all().unwrap().backward().unwrap();
        [
            bits(&z),
            bits(g.get(xv.as_tensor()).unwrap()),
            bits(g.get(wv.as_tensor()).unwrap()),
        ]
    };
    assert_eq!(run(), run());
}

#[test]
fn other_dtypes_fall_back_to_candle() {
    let x = random(&[2, 3, 6, 6], DType::F16, 1);
    let w = random(&[4, 3, 3, 3], DType::F16, 2);
    assert!(!kernels::fast_path(&x));
    let ours = kernels::conv2d(&x, &w, 1, 1, 1).unwrap();
    let stock = x.conv2d(&w, 1, 1, 1, 1).unwrap();
    assert_eq!(values(&ours), values(&stock));
    assert_eq!(
        values(&kernels::relu(&x).unwrap()),
        values(&x.relu().unwrap())
    );
}

#[test]
fn the_input_images_get_no_gradient() {
    // The first convolution's input is a plain tensor: no gradient is computed for it.
    let x = random(&[2, 3, 8, 8], DType::F32, 1);
    let wv = Var::from_tensor(&random(&[4, 3, 3, 3], DType::F32, 2)).unwrap();
    let y = kernels::conv2d(&x, wv.as_tensor(), 1, 1, 1).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    assert!(g.get(wv.as_tensor()).is_some());
}

#[test]
fn shake_mix_matches_the_stock_formula() {
    for dtype in [DType::F32, DType::F64] {
        let (x1, x2) = (
            random(&[3, 4, 5, 5], dtype, 1),
            random(&[3, 4, 5, 5], dtype, 2),
        );
        let (alpha, beta) = ([0.2, 0.9, 0.5], [0.7, 0.1, 0.4]);
        let (v1, v2) = (
            Var::from_tensor(&x1).unwrap(),
            Var::from_tensor(&x2).unwrap(),
        );
        let y = kernels::shake_mix(v1.as_tensor(), v2.as_tensor(), &alpha, &beta).unwrap();
        let r = random(y.dims(), dtype, 3);
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let col = |v: &[f64]| {
            Tensor::from_slice(v, (3, 1, 1, 1), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        let expected = (x1.broadcast_mul(&col(&alpha)).unwrap()
            + x2.broadcast_mul(&col(&[0.8, 0.1, 0.5])).unwrap())
        .unwrap();
        assert_close(&y, &expected, 1e-6, "shake_mix value");
        let g1 = r.broadcast_mul(&col(&beta)).unwrap();
        let g2 = r.broadcast_mul(&col(&[0.3, 0.9, 0.6])).unwrap();
        assert_close(g.get(v1.as_tensor()).unwrap(), &g1, 1e-6, "shake_mix dx1");
        assert_close(g.get(v2.as_tensor()).unwrap(), &g2, 1e-6, "shake_mix dx2");
    }
}

#[test]
fn eval_channel_affine_input_gradient_matches_candle_autograd() {
    // Adversarial attacks differentiate a network in evaluation mode with respect to its
    // input: the fused eval BatchNorm (+ ReLU) must pass that gradient on.
    let x = random(&[3, 5, 4, 6], DType::F64, 41);
    let scale = [0.5, -1.25, 2.0, 0.75, 1.5];
    let shift = [0.1, 0.0, -0.3, 0.2, -0.05];
    let col = |v: &[f64]| Tensor::from_slice(v, (1, 5, 1, 1), &Device::Cpu).unwrap();
    let weights = random(&[3, 5, 4, 6], DType::F64, 42);
    for relu in [false, true] {
        let xv = Var::from_tensor(&x).unwrap();
        let y = kernels::channel_affine(xv.as_tensor(), &scale, &shift, relu).unwrap();
        let loss = (y * &weights).unwrap().sum_all().unwrap();
        let ours = loss
            .backward()
            .unwrap()
            .get(xv.as_tensor())
            .unwrap()
            .clone();

        let sv = Var::from_tensor(&x).unwrap();
        let mut y = sv
            .as_tensor()
            .broadcast_mul(&col(&scale))
            .unwrap()
            .broadcast_add(&col(&shift))
            .unwrap();
        if relu {
            y = y.relu().unwrap();
        }
        let loss = (y * &weights).unwrap().sum_all().unwrap();
        let stock = loss
            .backward()
            .unwrap()
            .get(sv.as_tensor())
            .unwrap()
            .clone();
        assert_close(
            &ours,
            &stock,
            1e-12,
            &format!("channel_affine input grad, relu={relu}"),
        );
    }
}

// ---- the generic convolution backward (the GPU path), proven on the CPU ----------------

/// The generic backward everywhere (also on the CPU): what a CUDA device runs by default.
const GENERIC: Ops = Ops {
    stock: false,
    generic_backward: Some(true),
    direct_conv: true,
};
/// The CPU kernels (groups 1); other convolutions use candle's own backward.
const KERNELS: Ops = Ops {
    stock: false,
    generic_backward: Some(false),
    direct_conv: true,
};
/// candle's stock operations and autograd, nothing of ours.
const STOCK: Ops = Ops {
    stock: true,
    generic_backward: Some(false),
    direct_conv: true,
};

/// f64 gradients of the generic path against the CPU kernels and candle's autograd.
const GENERIC_TOL: f64 = 1e-12;

/// (N, C, H, W, O, kernel, stride, padding, groups).
type GroupedCase = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

/// [`CONV_CASES`] with groups 1, and
/// grouped convolutions (ResNeXt's 3×3 with stride 1 and 2, a depthwise one, 1×1 and 5×5
/// kernels with stride 2, odd and non-square images).
fn generic_cases() -> Vec<GroupedCase> {
    let mut cases: Vec<_> = CONV_CASES
        .iter()
        .map(|&(n, c, h, w, o, k, s, p)| (n, c, h, w, o, k, s, p, 1))
        .collect();
    cases.extend_from_slice(&[
        (2, 8, 8, 8, 8, 3, 1, 1, 4),
        (2, 4, 7, 9, 6, 3, 2, 1, 2),
        (2, 8, 8, 8, 8, 3, 2, 1, 4),
        (2, 4, 6, 5, 4, 3, 2, 1, 4),
        (3, 6, 5, 7, 9, 1, 2, 0, 3),
        (2, 6, 9, 8, 4, 5, 2, 2, 2),
    ]);
    cases
}

/// Value and gradients of sum(conv(x, w) * r) by the path `ops` picks.
fn path_grads(
    ops: Ops,
    x: &Tensor,
    w: &Tensor,
    (s, p, g): (usize, usize, usize),
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    kernels::with_ops(ops, || {
        let xv = Var::from_tensor(x)?;
        let wv = Var::from_tensor(w)?;
        let y = kernels::conv2d(xv.as_tensor(), wv.as_tensor(), s, p, g)?;
        let r = random(y.dims(), y.dtype(), 7);
        let grads = (&y * r)?.sum_all()?.backward()?;
        let get = |v: &Var| grads.get(v.as_tensor()).cloned();
        Ok((y.detach(), get(&xv).unwrap(), get(&wv).unwrap()))
    })
}

/// Whether candle 0.11's own conv2d backward fails on this geometry: its input gradient
/// (`conv_transpose2d`) takes the output padding from the height alone, so when a strided
/// convolution drops input rows and columns differently ("shape mismatch in add").
fn candle_backward_fails(h: usize, w: usize, k: usize, s: usize, p: usize) -> bool {
    (h + 2 * p - k) % s != (w + 2 * p - k) % s
}

#[test]
fn generic_backward_matches_the_kernels_candle_and_finite_differences() {
    let mut candle_failed = 0;
    for (i, &(n, c, h, w, o, k, s, p, g)) in generic_cases().iter().enumerate() {
        let what = |t: &str| format!("case {i} {:?} {t}", (n, c, h, w, o, k, s, p, g));
        let x = random(&[n, c, h, w], DType::F64, 200 + i as u64);
        let wt = random(&[o, c / g, k, k], DType::F64, 300 + i as u64);
        let (y, dx, dw) = path_grads(GENERIC, &x, &wt, (s, p, g)).unwrap();
        // The forward value is candle's conv2d, bit for bit.
        assert_eq!(
            values(&y),
            values(&x.conv2d(&wt, p, s, 1, g).unwrap()),
            "{}",
            what("y")
        );
        if g == 1 {
            let (ky, kdx, kdw) = path_grads(KERNELS, &x, &wt, (s, p, g)).unwrap();
            assert_close(&y, &ky, GENERIC_TOL, &what("y vs kernels"));
            assert_close(&dx, &kdx, GENERIC_TOL, &what("dx vs kernels"));
            assert_close(&dw, &kdw, GENERIC_TOL, &what("dw vs kernels"));
        }
        match path_grads(STOCK, &x, &wt, (s, p, g)) {
            Ok((_, sdx, sdw)) => {
                assert!(!candle_backward_fails(h, w, k, s, p), "{}", what("candle"));
                assert_close(&dx, &sdx, GENERIC_TOL, &what("dx vs candle"));
                assert_close(&dw, &sdw, GENERIC_TOL, &what("dw vs candle"));
            }
            Err(e) => {
                assert!(
                    candle_backward_fails(h, w, k, s, p),
                    "{}: {e}",
                    what("candle")
                );
                candle_failed += 1;
            }
        }
        // Finite differences of the same loss (candle's forward: the values are equal).
        let r = random(y.dims(), DType::F64, 7);
        let loss = |x: &Tensor, wt: &Tensor| {
            scalar(
                &(x.conv2d(wt, p, s, 1, g).unwrap() * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap(),
            )
        };
        check_fd(&x, &dx, |t| loss(t, &wt), &what("dx"));
        check_fd(&wt, &dw, |t| loss(&x, t), &what("dw"));
    }
    // The candle bug stays covered: some cases have no stock gradient at all.
    assert!(
        candle_failed >= 2,
        "only {candle_failed} cases hit candle's bug"
    );
}

#[test]
fn generic_backward_in_f32_matches_the_kernels_and_candle() {
    for (i, &(n, c, h, w, o, k, s, p, g)) in generic_cases().iter().enumerate() {
        let x = random(&[n, c, h, w], DType::F32, 200 + i as u64);
        let wt = random(&[o, c / g, k, k], DType::F32, 300 + i as u64);
        let (_, dx, dw) = path_grads(GENERIC, &x, &wt, (s, p, g)).unwrap();
        let reference = if g == 1 {
            path_grads(KERNELS, &x, &wt, (s, p, g)).ok()
        } else {
            path_grads(STOCK, &x, &wt, (s, p, g)).ok()
        };
        if let Some((_, rdx, rdw)) = reference {
            assert_close(&dx, &rdx, 1e-5, &format!("f32 case {i} dx"));
            assert_close(&dw, &rdw, 1e-5, &format!("f32 case {i} dw"));
        }
    }
}

#[test]
fn generic_backward_on_an_odd_width_where_candle_fails() {
    // Stride 2 on a 7-row, 8-column image: candle's own backward errors out; the generic
    // one equals the CPU kernels (themselves checked against finite differences above).
    let x = random(&[2, 3, 7, 8], DType::F64, 1);
    let wt = random(&[4, 3, 3, 3], DType::F64, 2);
    assert!(candle_backward_fails(7, 8, 3, 2, 1));
    let err = path_grads(STOCK, &x, &wt, (2, 1, 1)).unwrap_err();
    assert!(
        err.to_string().contains("shape mismatch"),
        "candle's conv2d backward now gives {err}: if it succeeds, candle fixed the bug"
    );
    let (_, dx, dw) = path_grads(GENERIC, &x, &wt, (2, 1, 1)).unwrap();
    let (_, kdx, kdw) = path_grads(KERNELS, &x, &wt, (2, 1, 1)).unwrap();
    assert_close(&dx, &kdx, GENERIC_TOL, "odd width dx");
    assert_close(&dw, &kdw, GENERIC_TOL, "odd width dw");
}

#[test]
fn conv_path_follows_the_choice() {
    let x = random(&[2, 4, 6, 6], DType::F32, 1);
    let w = random(&[4, 4, 3, 3], DType::F32, 2);
    let wg = random(&[4, 2, 3, 3], DType::F32, 3);
    let path = |ops: Ops, x: &Tensor, w: &Tensor, g: usize| {
        kernels::with_ops(ops, || kernels::conv_path(x, w, 1, 1, g).unwrap())
    };
    let unset = Ops {
        stock: false,
        generic_backward: None,
        direct_conv: true,
    };
    // On the CPU by default: the kernels (grouped convolutions group by group), and
    // candle's own for what they do not cover.
    assert_eq!(path(unset, &x, &w, 1), ConvPath::Kernels);
    assert_eq!(path(unset, &x, &wg, 2), ConvPath::PerGroup);
    let x16 = x.to_dtype(DType::F16).unwrap();
    let w16 = w.to_dtype(DType::F16).unwrap();
    assert_eq!(path(unset, &x16, &w16, 1), ConvPath::Stock);
    let stock_unset = Ops {
        stock: true,
        ..unset
    };
    assert_eq!(path(stock_unset, &x, &w, 1), ConvPath::Stock);
    // Forced: the generic backward everywhere.
    for ops in [
        GENERIC,
        Ops {
            stock: true,
            ..GENERIC
        },
    ] {
        assert_eq!(path(ops, &x, &w, 1), ConvPath::Generic);
        assert_eq!(path(ops, &x, &wg, 2), ConvPath::Generic);
        assert_eq!(path(ops, &x16, &w16, 1), ConvPath::Generic);
    }
    assert_eq!(path(KERNELS, &x, &w, 1), ConvPath::Kernels);
    assert_eq!(path(STOCK, &x, &w, 1), ConvPath::Stock);
    // The override is the thread's own and ends with the closure.
    assert_eq!(kernels::Ops::current(), kernels::Ops::from_env());
}

#[test]
fn generic_path_without_gradients_is_candles_conv2d() {
    // Evaluation (nothing tracked): candle's conv2d itself; the images get no gradient.
    let x = random(&[2, 3, 7, 7], DType::F32, 1);
    let w = random(&[4, 3, 3, 3], DType::F32, 2);
    kernels::with_ops(GENERIC, || {
        let y = kernels::conv2d(&x, &w, 2, 1, 1).unwrap();
        assert_eq!(values(&y), values(&x.conv2d(&w, 1, 2, 1, 1).unwrap()));
        let wv = Var::from_tensor(&w).unwrap();
        let y = kernels::conv2d(&x, wv.as_tensor(), 2, 1, 1).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(&x).is_none());
        assert!(g.get(wv.as_tensor()).is_some());
    });
}

/// Depthwise (MobileNetV2's, ShuffleNetV2's) and other grouped convolutions (ResNeXt's,
/// grouped 1×1) that the CPU kernels now take: 3×3 with stride 1 and 2, 5×5, odd and
/// non-square images.
const CPU_GROUPED_CASES: &[GroupedCase] = &[
    (2, 8, 8, 8, 8, 3, 1, 1, 8),
    (3, 6, 7, 9, 6, 3, 2, 1, 6),
    (2, 4, 5, 5, 4, 5, 1, 2, 4),
    (1, 16, 4, 4, 16, 3, 2, 1, 16),
    (2, 8, 6, 6, 8, 3, 1, 1, 2),
    (2, 8, 7, 7, 16, 1, 1, 0, 4),
    (2, 12, 8, 8, 12, 3, 2, 1, 3),
];

#[test]
fn depthwise_and_grouped_convolutions_take_the_kernels_and_match_candle() {
    let unset = Ops {
        stock: false,
        generic_backward: None,
        direct_conv: true,
    };
    for (i, &(n, c, h, w, o, k, s, p, g)) in CPU_GROUPED_CASES.iter().enumerate() {
        let what = |t: &str| format!("case {i} {:?} {t}", (n, c, h, w, o, k, s, p, g));
        for dtype in [DType::F64, DType::F32] {
            let x = random(&[n, c, h, w], dtype, 400 + i as u64);
            let wt = random(&[o, c / g, k, k], dtype, 500 + i as u64);
            let path = kernels::with_ops(unset, || kernels::conv_path(&x, &wt, s, p, g).unwrap());
            let wanted = if g == c && o == c {
                ConvPath::Depthwise
            } else {
                ConvPath::PerGroup
            };
            assert_eq!(path, wanted, "{}", what("path"));
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-4 };
            let (y, dx, dw) = path_grads(KERNELS, &x, &wt, (s, p, g)).unwrap();
            let stock_y = kernels::with_ops(STOCK, || x.conv2d(&wt, p, s, 1, g).unwrap());
            assert_close(&y, &stock_y, tol, &what("y"));
            if !candle_backward_fails(h, w, k, s, p) {
                let (_, sdx, sdw) = path_grads(STOCK, &x, &wt, (s, p, g)).unwrap();
                assert_close(&dx, &sdx, tol, &what("dx"));
                assert_close(&dw, &sdw, tol, &what("dw"));
            }
            if dtype == DType::F64 {
                let r = random(y.dims(), DType::F64, 7);
                let loss = |x: &Tensor, wt: &Tensor| {
                    kernels::with_ops(KERNELS, || {
                        scalar(
                            &(kernels::conv2d(x, wt, s, p, g).unwrap() * &r)
                                .unwrap()
                                .sum_all()
                                .unwrap(),
                        )
                    })
                };
                check_fd(&x, &dx, |t| loss(t, &wt), &what("dx"));
                check_fd(&wt, &dw, |t| loss(&x, t), &what("dw"));
            }
        }
    }
}

#[test]
fn depthwise_convolutions_give_the_same_bits_on_one_and_two_threads() {
    // ShuffleNetV2's stride-2 depthwise layer, batch 64 as in RepDistiller's recipe
    let x = random(&[64, 24, 16, 16], DType::F32, 11);
    let w = random(&[24, 1, 3, 3], DType::F32, 12);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (y, dx, dw) = path_grads(KERNELS, &x, &w, (2, 1, 24)).unwrap();
            [bits(&y), bits(&dx), bits(&dw)]
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn the_direct_kernels_switch_off_through_ops() {
    // Ops::direct_conv = false (HKD_ARCH_DIRECT_CONV=0) on this thread: no direct kernel,
    // the GEMM path, the same convolution to f32 rounding; values and input gradients.
    let off = Ops {
        direct_conv: false,
        ..KERNELS
    };
    assert_eq!(kernels::with_ops(off, kernels::direct_conv_isa), None);
    let x = random(&[2, 8, 12, 12], DType::F32, 21);
    let w = random(&[16, 8, 3, 3], DType::F32, 22);
    let run = |ops: Ops| {
        kernels::with_ops(ops, || {
            let xv = Var::from_tensor(&x).unwrap();
            let y = kernels::conv2d(xv.as_tensor(), &w, 1, 1, 1).unwrap();
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            (y, g.get(xv.as_tensor()).unwrap().clone())
        })
    };
    let (y_on, dx_on) = run(KERNELS);
    let (y_off, dx_off) = run(off);
    assert_close(&y_on, &y_off, 1e-5, "direct vs GEMM: values");
    assert_close(&dx_on, &dx_off, 1e-4, "direct vs GEMM: input gradient");
    if kernels::direct_conv_isa().is_some() {
        // the two paths sum in different orders: some output differs in its last bits,
        // which shows that the switch took another path
        assert_ne!(values(&y_on), values(&y_off), "the switch changed nothing");
    } else {
        eprintln!("note: no direct kernel on this CPU: only the GEMM path compared");
    }
}

/// 2×2 max pooling against candle's `max_pool2d(2)`: values and gradients bit for bit on
/// inputs without ties (odd sizes drop the last row and column, which get no gradient), and
/// on ties the gradient goes to the first maximum only, as PyTorch's kernel gives it
/// (candle gives it to every tied element).
#[test]
fn max_pool2x2_matches_candle_and_gives_a_tie_to_the_first_maximum() {
    for dtype in [DType::F32, DType::F64] {
        for shape in [[2, 3, 8, 8], [3, 2, 5, 7], [1, 4, 2, 2], [64, 3, 4, 4]] {
            let x = Var::from_tensor(&random(&shape, dtype, 11)).unwrap();
            let y = kernels::max_pool2x2(x.as_tensor()).unwrap();
            let ys = x.as_tensor().max_pool2d(2).unwrap();
            assert_close(&y, &ys, 0.0, "max_pool2x2");
            let r = random(y.dims(), dtype, 12);
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gs = (&ys * &r).unwrap().sum_all().unwrap().backward().unwrap();
            assert_close(
                g.get(x.as_tensor()).unwrap(),
                gs.get(x.as_tensor()).unwrap(),
                0.0,
                &format!("max_pool2x2 gradient {shape:?}"),
            );
        }
    }
    // One plane, windows [1 1; 0 1] and [0 2; 2 2]: the maxima are tied.
    let x = Tensor::from_vec(
        vec![1f32, 1., 0., 2., 0., 1., 2., 2.],
        (1, 1, 2, 4),
        &Device::Cpu,
    )
    .unwrap();
    let x = Var::from_tensor(&x).unwrap();
    let y = kernels::max_pool2x2(x.as_tensor()).unwrap();
    assert_eq!(values(&y), [1.0, 2.0]);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(
        values(g.get(x.as_tensor()).unwrap()),
        [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        "each window's gradient at its first maximum in row-major order"
    );
    // A NaN wins its window, forward and backward (PyTorch propagates it).
    let x = Tensor::from_vec(vec![1f32, f32::NAN, 3., 0.], (1, 1, 2, 2), &Device::Cpu).unwrap();
    let x = Var::from_tensor(&x).unwrap();
    let y = kernels::max_pool2x2(x.as_tensor()).unwrap();
    assert!(values(&y)[0].is_nan());
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(values(g.get(x.as_tensor()).unwrap()), [0.0, 1.0, 0.0, 0.0]);
}
