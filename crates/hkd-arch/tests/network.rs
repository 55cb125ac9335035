//! Behaviour of networks built by name: initialisation, BatchNorm and Shake-Shake training
//! semantics, gradients, input checks.

use candle_core::{D, DType, Device, Tensor, Var};
use hkd_arch::{ArchError, BatchNorm2d, Network, Phase, shake_mix};
use hkd_kernels::{self as kernels, Ops};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

fn state(net: &Network, name: &str) -> Tensor {
    net.state_dict()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1
}

fn std_dev(v: &[f64]) -> f64 {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
}

fn random_input(n: usize, hw: usize, dtype: DType, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * 3 * hw * hw)
        .map(|_| rand::Rng::random::<f32>(&mut rng) * 2.0 - 1.0)
        .collect();
    Tensor::from_vec(v, (n, 3, hw, hw), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

#[test]
fn same_seed_gives_same_weights_and_different_seeds_differ() {
    for arch in [
        "resnet8",
        "plane2",
        "shake8-2x4d",
        "wrn10-1",
        "resnext11-2x4d",
    ] {
        let a = Network::new(arch, 10, &Device::Cpu, DType::F32, 42).unwrap();
        let b = Network::new(arch, 10, &Device::Cpu, DType::F32, 42).unwrap();
        let c = Network::new(arch, 10, &Device::Cpu, DType::F32, 43).unwrap();
        let (sa, sb, sc) = (
            a.state_dict().unwrap(),
            b.state_dict().unwrap(),
            c.state_dict().unwrap(),
        );
        let mut differing = 0;
        for (((na, ta), (_, tb)), (_, tc)) in sa.iter().zip(&sb).zip(&sc) {
            assert_eq!(values(ta), values(tb), "{arch} {na}");
            if values(ta) != values(tc) {
                differing += 1;
            }
        }
        assert!(
            differing >= 3,
            "{arch}: seed changes only {differing} tensors"
        );
    }
}

#[test]
fn initialisation_follows_the_original_code() {
    // ResNet: kaiming normal fan_out, BN weight 1 / bias 0, linear bias 0.
    let net = Network::new("resnet20", 10, &Device::Cpu, DType::F32, 3).unwrap();
    let w = values(&state(&net, "stage3.block2.conv2.weight")); // 64*64*9, fan_out 576
    let expected = (2.0f64 / 576.0).sqrt();
    assert!(
        (std_dev(&w) / expected - 1.0).abs() < 0.03,
        "std {}",
        std_dev(&w)
    );
    assert!(
        values(&state(&net, "stage1.block1.bn1.weight"))
            .iter()
            .all(|&v| v == 1.0)
    );
    assert!(
        values(&state(&net, "stage1.block1.bn1.bias"))
            .iter()
            .all(|&v| v == 0.0)
    );
    assert!(values(&state(&net, "fc.bias")).iter().all(|&v| v == 0.0));
    assert!(
        values(&state(&net, "bn.running_var"))
            .iter()
            .all(|&v| v == 1.0)
    );
    let fc = values(&state(&net, "fc.weight"));
    assert!(fc.iter().all(|v| v.abs() <= 1.0 / 8.0) && std_dev(&fc) > 0.03);

    // WRN: kaiming normal fan_in, BN weight U(0, 1).
    let net = Network::new("wrn16-4", 10, &Device::Cpu, DType::F32, 3).unwrap();
    let w = values(&state(&net, "stage2.block1.conv2.weight")); // 128*128*9: fan_in 1152
    let expected = (2.0f64 / 1152.0).sqrt();
    assert!(
        (std_dev(&w) / expected - 1.0).abs() < 0.03,
        "std {}",
        std_dev(&w)
    );
    let w = values(&state(&net, "stage2.block1.conv1.weight")); // [128, 64, 3, 3]: fan_in 576
    let fan_in_std = (2.0f64 / 576.0).sqrt();
    assert!(
        (std_dev(&w) / fan_in_std - 1.0).abs() < 0.05,
        "std {}",
        std_dev(&w)
    );
    let g = values(&state(&net, "stage3.block1.bn1.weight"));
    assert!(g.iter().all(|&v| (0.0..1.0).contains(&v)));
    assert!(std_dev(&g) > 0.2, "BN weights should be spread over [0, 1)");

    // Plain CNNs keep PyTorch's defaults: conv bias U(+-1/sqrt(fan_in)), non-zero.
    let net = Network::new("plane4", 10, &Device::Cpu, DType::F32, 3).unwrap();
    let b = values(&state(&net, "conv_layers.3.bias")); // fan_in 16*9
    assert!(b.iter().all(|v| v.abs() <= 1.0 / 12.0) && b.iter().any(|&v| v != 0.0));
    let lb = values(&state(&net, "fc_layers.0.bias"));
    assert!(lb.iter().any(|&v| v != 0.0));
}

#[test]
fn batchnorm_training_uses_batch_stats_and_updates_running_stats_like_pytorch() {
    let bn = BatchNorm2d::new(2, &Device::Cpu, DType::F64).unwrap();
    // N=2, C=2, H=1, W=2. Channel 0: 1, 2, 3, 4 (mean 2.5, biased var 1.25, unbiased 5/3).
    // Channel 1: 10, 10, 10, 30 (mean 15, biased var 75, unbiased 100).
    let x = Tensor::from_vec(
        vec![1.0f64, 2.0, 10.0, 10.0, 3.0, 4.0, 10.0, 30.0],
        (2, 2, 1, 2),
        &Device::Cpu,
    )
    .unwrap();
    let y = bn.forward(&x, true).unwrap();
    let y = values(&y);
    let s0 = (1.25f64 + 1e-5).sqrt();
    let s1 = (75.0f64 + 1e-5).sqrt();
    let expected = [
        (1.0 - 2.5) / s0,
        (2.0 - 2.5) / s0,
        (10.0 - 15.0) / s1,
        (10.0 - 15.0) / s1,
        (3.0 - 2.5) / s0,
        (4.0 - 2.5) / s0,
        (10.0 - 15.0) / s1,
        (30.0 - 15.0) / s1,
    ];
    for (a, e) in y.iter().zip(expected) {
        assert!((a - e).abs() < 1e-12, "{a} vs {e}");
    }
    // running = 0.9 * running + 0.1 * batch (unbiased var).
    let rm = values(&bn.running_mean().unwrap());
    let rv = values(&bn.running_var().unwrap());
    assert!(
        (rm[0] - 0.25).abs() < 1e-12 && (rm[1] - 1.5).abs() < 1e-12,
        "{rm:?}"
    );
    assert!((rv[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-12, "{rv:?}");
    assert!((rv[1] - (0.9 + 10.0)).abs() < 1e-12, "{rv:?}");
    assert_eq!(bn.num_batches_tracked(), 1);

    // A second batch accumulates.
    let x2 = (x.clone() * 2.0).unwrap(); // mean 5 / 30, unbiased var 20/3 / 400
    bn.forward(&x2, true).unwrap();
    let rm = values(&bn.running_mean().unwrap());
    let rv = values(&bn.running_var().unwrap());
    assert!((rm[0] - (0.9 * 0.25 + 0.5)).abs() < 1e-12, "{rm:?}");
    assert!((rm[1] - (0.9 * 1.5 + 3.0)).abs() < 1e-12, "{rm:?}");
    let rv0 = 0.9 * (0.9 + 0.1 * 5.0 / 3.0) + 0.1 * 20.0 / 3.0;
    assert!((rv[0] - rv0).abs() < 1e-12, "{rv:?}");
    assert_eq!(bn.num_batches_tracked(), 2);

    // Evaluation uses the running statistics and changes nothing.
    let y = values(&bn.forward(&x, false).unwrap());
    let e0 = (1.0 - rm[0]) / (rv[0] + 1e-5).sqrt();
    assert!((y[0] - e0).abs() < 1e-12, "{} vs {e0}", y[0]);
    assert_eq!(bn.num_batches_tracked(), 2);
    assert_eq!(values(&bn.running_mean().unwrap()), rm);

    // A single value per channel cannot be normalised in training (PyTorch refuses too).
    let one = Tensor::zeros((1, 2, 1, 1), DType::F64, &Device::Cpu).unwrap();
    assert!(bn.forward(&one, true).is_err());
}

#[test]
fn network_training_forward_updates_running_stats_and_eval_does_not() {
    let net = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 0).unwrap();
    let x = random_input(4, 16, DType::F32, 1);
    let before = net.state_dict().unwrap();
    let e1 = net.forward_eval(&x).unwrap();
    let e2 = net.forward_eval(&x).unwrap();
    assert_eq!(values(&e1), values(&e2));
    let after_eval = net.state_dict().unwrap();
    for ((n, a), (_, b)) in before.iter().zip(&after_eval) {
        assert_eq!(values(a), values(b), "eval changed {n}");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let t = net.forward(&x, Phase::Train { rng: &mut rng }).unwrap();
    assert_eq!(t.dims(), &[4, 10]);
    // Training-mode output differs from eval-mode output (batch stats vs running stats).
    let diff: f64 = values(&t)
        .iter()
        .zip(values(&e1))
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(diff > 1e-3);
    assert_eq!(
        state(&net, "stage2.block1.shortcut.bn.num_batches_tracked")
            .to_scalar::<i64>()
            .unwrap(),
        1
    );
    assert_eq!(
        state(&net, "bn.num_batches_tracked")
            .to_scalar::<i64>()
            .unwrap(),
        1
    );
    let rm = values(&state(&net, "bn.running_mean"));
    assert!(rm.iter().any(|&v| v != 0.0));
    // The snapshot taken before training is unchanged (state_dict copies).
    assert!(
        values(&before[3].1).iter().all(|&v| v == 0.0),
        "{}",
        before[3].0
    );
    // Parameters are untouched by forward passes.
    for ((n, a), (_, b)) in before.iter().zip(net.state_dict().unwrap().iter()) {
        if !n.contains("running") && !n.contains("num_batches") {
            assert_eq!(values(a), values(b), "{n}");
        }
    }
}

#[test]
fn shake_mix_forward_uses_alpha_and_gradient_uses_beta() {
    let dev = Device::Cpu;
    let x1 = Var::from_tensor(
        &Tensor::arange(0.0f64, 8.0, &dev)
            .unwrap()
            .reshape((2, 1, 2, 2))
            .unwrap(),
    )
    .unwrap();
    let x2 = Var::from_tensor(
        &Tensor::arange(10.0f64, 18.0, &dev)
            .unwrap()
            .reshape((2, 1, 2, 2))
            .unwrap(),
    )
    .unwrap();
    let (alpha, beta) = ([0.2f32, 0.9], [0.7f32, 0.1]);
    let y = shake_mix(x1.as_tensor(), x2.as_tensor(), Some((&alpha, &beta))).unwrap();
    let (v1, v2, vy) = (values(x1.as_tensor()), values(x2.as_tensor()), values(&y));
    for i in 0..8 {
        let a = alpha[i / 4] as f64;
        let e = a * v1[i] + (1.0 - a) * v2[i];
        assert!((vy[i] - e).abs() < 1e-6, "forward {i}: {} vs {e}", vy[i]);
    }
    // d/dx sum(y * g) with g = 1..8.
    let g = Tensor::arange(1.0f64, 9.0, &dev)
        .unwrap()
        .reshape((2, 1, 2, 2))
        .unwrap();
    let grads = (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
    let g1 = values(grads.get(x1.as_tensor()).unwrap());
    let g2 = values(grads.get(x2.as_tensor()).unwrap());
    let gv = values(&g);
    for i in 0..8 {
        let b = beta[i / 4] as f64;
        assert!((g1[i] - b * gv[i]).abs() < 1e-6, "grad x1 {i}: {}", g1[i]);
        assert!(
            (g2[i] - (1.0 - b) * gv[i]).abs() < 1e-6,
            "grad x2 {i}: {}",
            g2[i]
        );
    }
    // Evaluation: 0.5 / 0.5.
    let y = shake_mix(x1.as_tensor(), x2.as_tensor(), None).unwrap();
    assert_eq!(values(&y)[3], 0.5 * (3.0 + 13.0));
    // One coefficient per image is required.
    assert!(shake_mix(x1.as_tensor(), x2.as_tensor(), Some((&[0.5], &[0.5]))).is_err());
}

#[test]
fn shake_shake_training_is_random_per_image_and_seeded() {
    let net = Network::new("shake8-2x4d", 10, &Device::Cpu, DType::F32, 5).unwrap();
    // A batch of four identical images: BN statistics are shared, so in training only the
    // per-image alpha makes the rows differ; in eval all rows are equal.
    let one = random_input(1, 8, DType::F32, 9);
    let x = Tensor::cat(&[&one, &one, &one, &one], 0).unwrap();
    let eval = values(&net.forward_eval(&x).unwrap());
    for r in 1..4 {
        assert_eq!(eval[r * 10..r * 10 + 10], eval[..10]);
    }
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        values(&net.forward(&x, Phase::Train { rng: &mut rng }).unwrap())
    };
    let a = run(1);
    let b = run(1);
    let c = run(2);
    assert_eq!(a, b, "same RNG seed, same training output");
    assert_ne!(a, c, "different RNG seed, different training output");
    let row_diff: f64 = (0..10).map(|j| (a[j] - a[10 + j]).abs()).sum();
    assert!(
        row_diff > 1e-5,
        "identical images should get different alphas"
    );
}

/// Central finite differences of sum(logits * w) against autograd, in f64, training mode,
/// on h × w images.
fn check_gradients(arch: &str, (h, wd): (usize, usize), params: &[&str]) {
    let net = Network::new(arch, 10, &Device::Cpu, DType::F64, 11).unwrap();
    let x = random_input(3, h.max(wd), DType::F64, 12)
        .narrow(2, 0, h)
        .unwrap()
        .narrow(3, 0, wd)
        .unwrap()
        .contiguous()
        .unwrap();
    let w = Tensor::arange(0.0f64, 30.0, &Device::Cpu)
        .unwrap()
        .reshape((3, 10))
        .unwrap()
        .sin()
        .unwrap();
    let loss = |net: &Network| -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let y = net.forward(&x, Phase::Train { rng: &mut rng }).unwrap();
        (y * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let y = net.forward(&x, Phase::Train { rng: &mut rng }).unwrap();
    let grads = (y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let vars = net.trainable_parameters();
    for name in params {
        let (_, var) = vars.iter().find(|(n, _)| n == name).unwrap();
        let g = values(grads.get(var.as_tensor()).unwrap());
        let orig = var.as_tensor().copy().unwrap();
        let flat = values(&orig);
        for idx in [0, flat.len() / 2, flat.len() - 1] {
            let h = 1e-5;
            let mut plus = flat.clone();
            plus[idx] += h;
            var.set(&Tensor::from_vec(plus, orig.dims(), &Device::Cpu).unwrap())
                .unwrap();
            let lp = loss(&net);
            let mut minus = flat.clone();
            minus[idx] -= h;
            var.set(&Tensor::from_vec(minus, orig.dims(), &Device::Cpu).unwrap())
                .unwrap();
            let lm = loss(&net);
            var.set(&orig).unwrap();
            let fd = (lp - lm) / (2.0 * h);
            assert!(
                (fd - g[idx]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{arch} {name}[{idx}]: finite difference {fd}, autograd {}",
                g[idx]
            );
        }
    }
}

#[test]
fn training_gradients_match_finite_differences() {
    check_gradients(
        "resnet8",
        (8, 8),
        &[
            "conv.weight",
            "bn.weight",
            "stage2.block1.shortcut.conv.weight",
            "stage3.block1.bn2.bias",
            "fc.weight",
        ],
    );
    check_gradients(
        "resnext11-2x4d",
        (8, 8),
        &[
            "stage1.block1.conv2.weight",
            "stage2.block1.bn3.weight",
            "fc.bias",
        ],
    );
    check_gradients(
        "wrn10-1",
        (8, 8),
        &[
            "stage2.block1.shortcut.conv.weight",
            "stage3.block1.bn1.weight",
            "bn.bias",
        ],
    );
}

#[test]
fn classes_are_configurable() {
    let net = Network::new("plane2", 100, &Device::Cpu, DType::F32, 0).unwrap();
    let y = net
        .forward_eval(&random_input(2, 32, DType::F32, 0))
        .unwrap();
    assert_eq!(y.dims(), &[2, 100]);
    assert_eq!(net.classes(), 100);
    assert_eq!(net.num_parameters(), 13_082 + 1024 * 90 + 90);
    let net = Network::new("shake26", 3, &Device::Cpu, DType::F32, 0).unwrap();
    assert_eq!(net.arch_name(), "shake26-2x64d");
    let shapes = net.state_names_and_shapes();
    assert_eq!(shapes.last().unwrap(), &("fc.bias".to_string(), vec![3]));
    assert!(matches!(
        Network::new("resnet8", 0, &Device::Cpu, DType::F32, 0),
        Err(ArchError::InvalidConfig(_))
    ));
    // Softmax of the logits is a distribution (sanity of the last layer).
    let net = Network::new("resnet8", 7, &Device::Cpu, DType::F32, 0).unwrap();
    let y = net
        .forward_eval(&random_input(2, 32, DType::F32, 0))
        .unwrap();
    let p = candle_nn::ops::softmax(&y, D::Minus1)
        .unwrap()
        .sum(1)
        .unwrap();
    assert!(values(&p).iter().all(|v| (v - 1.0).abs() < 1e-5));
}

#[test]
fn wrong_inputs_are_clear_errors() {
    let net = Network::new("plane2", 10, &Device::Cpu, DType::F32, 0).unwrap();
    let err = net
        .forward_eval(&random_input(2, 16, DType::F32, 0))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("[2, 3, 16, 16]") && msg.contains("[N, 3, 32, 32]"),
        "{msg}"
    );
    let err = net
        .forward_eval(&Tensor::zeros((2, 1, 32, 32), DType::F32, &Device::Cpu).unwrap())
        .unwrap_err();
    assert!(matches!(err, ArchError::InputShape { .. }));
    let err = net
        .forward_eval(&random_input(2, 32, DType::F64, 0))
        .unwrap_err();
    assert!(err.to_string().contains("dtype"), "{err}");
    // Shake-Shake in training needs its RNG only through Phase::Train (always present).
    let resnet = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 0).unwrap();
    assert_eq!(
        resnet
            .forward_eval(&random_input(1, 20, DType::F32, 0))
            .unwrap()
            .dims(),
        &[1, 10],
        "fully convolutional nets accept other sizes"
    );
}

#[test]
fn networks_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Network>();
    let net =
        std::sync::Arc::new(Network::new("resnet8", 10, &Device::Cpu, DType::F32, 0).unwrap());
    let x = random_input(2, 32, DType::F32, 3);
    let expected = values(&net.forward_eval(&x).unwrap());
    let handle = {
        let (net, x) = (net.clone(), x.clone());
        std::thread::spawn(move || values(&net.forward_eval(&x).unwrap()))
    };
    assert_eq!(handle.join().unwrap(), expected);
}

// ---- the GPU path, proven on the CPU ------------------------------------------------------

/// What a CUDA device runs: candle's stock operations, the convolutions through the generic
/// backward (kernels::conv2d); here forced on the CPU.
const GPU_PATH: Ops = Ops {
    stock: true,
    generic_backward: Some(true),
    direct_conv: true,
};
/// The generic convolution backward with the CPU kernels for everything else.
const GENERIC_WITH_KERNELS: Ops = Ops {
    stock: false,
    generic_backward: Some(true),
    direct_conv: true,
};
/// The CPU default: the CPU kernels (grouped convolutions: candle's).
const CPU_KERNELS: Ops = Ops {
    stock: false,
    generic_backward: Some(false),
    direct_conv: true,
};
/// candle's stock operations and autograd only.
const CANDLE: Ops = Ops {
    stock: true,
    generic_backward: Some(false),
    direct_conv: true,
};

/// The logits and every parameter's gradient of sum(logits · r) after one training-mode
/// forward pass of `arch` on a batch of three h × w images, in f64, with `ops`.
fn training_step(
    arch: &str,
    (h, w): (usize, usize),
    ops: Ops,
) -> Result<Vec<(String, Tensor)>, String> {
    kernels::with_ops(ops, || {
        let net =
            Network::new(arch, 10, &Device::Cpu, DType::F64, 11).map_err(|e| e.to_string())?;
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let v: Vec<f64> = (0..3 * 3 * h * w)
            .map(|_| rand::Rng::random::<f64>(&mut rng) * 2.0 - 1.0)
            .collect();
        let x = Tensor::from_vec(v, (3, 3, h, w), &Device::Cpu).unwrap();
        let mut shake_rng = ChaCha8Rng::seed_from_u64(13);
        let y = net
            .forward(
                &x,
                Phase::Train {
                    rng: &mut shake_rng,
                },
            )
            .map_err(|e| e.to_string())?;
        let r = Tensor::arange(0.0f64, 30.0, &Device::Cpu)
            .unwrap()
            .reshape((3, 10))
            .unwrap()
            .cos()
            .unwrap();
        let grads = (&y * r)
            .and_then(|l| l.sum_all())
            .and_then(|l| l.backward())
            .map_err(|e| e.to_string())?;
        let mut out = vec![("logits".to_string(), y.detach())];
        for (name, var) in net.trainable_parameters() {
            let g = grads
                .get(var.as_tensor())
                .ok_or(format!("no gradient for {name}"))?;
            out.push((name, g.clone()));
        }
        Ok(out)
    })
}

/// The largest |a − b| / max(1, max |b|) over the tensors of two training steps.
fn max_difference(a: &[(String, Tensor)], b: &[(String, Tensor)], what: &str) -> f64 {
    assert_eq!(a.len(), b.len(), "{what}: tensor count");
    let mut worst = 0.0f64;
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!((na, ta.dims()), (nb, tb.dims()), "{what}");
        let (va, vb) = (values(ta), values(tb));
        let scale = vb.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let d = va
            .iter()
            .zip(&vb)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs() / scale));
        assert!(
            d <= GPU_PATH_TOL,
            "{what}: {na} differs by {d:e} (relative)"
        );
        worst = worst.max(d);
    }
    worst
}

/// f64: the paths differ only in the order of their sums.
const GPU_PATH_TOL: f64 = 1e-10;

#[test]
fn every_architecture_trains_the_same_through_the_gpu_path() {
    // Square images, and 7 × 10 ones: stride 2 drops a row but no column, where candle
    // 0.11's conv2d backward fails ("shape mismatch in add") — and with it the CPU path of
    // ResNeXt's grouped convolutions, which the CPU kernels leave to candle.
    let cases: &[(&str, &[(usize, usize)])] = &[
        ("resnet8", &[(8, 8), (7, 10)]),
        ("plane2", &[(32, 32)]),
        ("shake8-2x4d", &[(8, 8), (7, 10)]),
        ("wrn10-1", &[(8, 8), (7, 10)]),
        ("resnext11-2x4d", &[(8, 8), (7, 10)]),
    ];
    let candle_bug = |what: &str, e: &str, hw: (usize, usize)| {
        assert!(hw.0 != hw.1 && e.contains("shape mismatch"), "{what}: {e}");
        "candle fails".to_string()
    };
    for &(arch, sizes) in cases {
        for &hw in sizes {
            let what = format!("{arch} {hw:?}");
            let gpu = training_step(arch, hw, GPU_PATH).unwrap();
            let generic = training_step(arch, hw, GENERIC_WITH_KERNELS).unwrap();
            let vs_generic = max_difference(
                &gpu,
                &generic,
                &format!("{what}: GPU path vs generic backward + CPU kernels"),
            );
            let vs_kernels = match training_step(arch, hw, CPU_KERNELS) {
                Ok(kernels) => {
                    max_difference(
                        &generic,
                        &kernels,
                        &format!("{what}: generic backward vs CPU kernels"),
                    );
                    format!(
                        "{:.1e}",
                        max_difference(&gpu, &kernels, &format!("{what}: GPU path vs CPU kernels"))
                    )
                }
                Err(e) => {
                    assert!(arch.starts_with("resnext"), "{what}: {e}");
                    candle_bug(&what, &e, hw)
                }
            };
            let vs_candle = match training_step(arch, hw, CANDLE) {
                Ok(candle) => {
                    assert_eq!(hw.0, hw.1, "{what}: candle's backward was expected to fail");
                    format!(
                        "{:.1e}",
                        max_difference(&gpu, &candle, &format!("{what}: GPU path vs candle"))
                    )
                }
                Err(e) => candle_bug(&what, &e, hw),
            };
            // Shown with --nocapture.
            eprintln!(
                "{what}: largest relative difference of the GPU path's logits and gradients: \
                 vs CPU kernels {vs_kernels}, vs candle {vs_candle}, vs generic backward + CPU \
                 kernels {vs_generic:.1e}"
            );
        }
    }
}

#[test]
fn gpu_path_gradients_match_finite_differences() {
    // Shake-Shake is left out: its gradient is not the derivative of its forward pass
    // (beta instead of alpha), on every path.
    kernels::with_ops(GPU_PATH, || {
        check_gradients(
            "resnext11-2x4d",
            (7, 10),
            &[
                "conv.weight",
                "stage1.block1.conv2.weight",
                "stage2.block1.conv2.weight",
                "stage2.block1.shortcut.conv.weight",
            ],
        );
        check_gradients(
            "resnet8",
            (7, 10),
            &[
                "stage2.block1.conv1.weight",
                "stage3.block1.shortcut.conv.weight",
            ],
        );
    });
}
