//! The workspace builds candle-core with third_party/candle-core-backprop.patch: the first
//! gradient that reaches a tensor is stored as it is (no zero-filled tensor plus an add),
//! later ones are added. These tests fail on stock candle-core (the sharing test) or on a
//! patch that loses an accumulation (the value tests).

use candle_core::{Device, Tensor, Var};

fn cpu_ptr(t: &Tensor) -> *const f32 {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => {
            s.as_slice::<f32>().unwrap()[layout.start_offset()..].as_ptr()
        }
        _ => panic!("expected a CPU tensor"),
    }
}

#[test]
fn first_gradient_is_stored_without_a_copy() {
    let x = Var::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
    let y = Var::new(&[4f32, 5., 6.], &Device::Cpu).unwrap();
    // d(x + y)/dx and d(x + y)/dy are the same incoming gradient: with the patch both
    // entries hold that one tensor; stock candle adds it to two fresh zero tensors.
    let z = (x.as_tensor() + y.as_tensor()).unwrap();
    let loss = (z * 2.0).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let (gx, gy) = (grads.get(&x).unwrap(), grads.get(&y).unwrap());
    assert_eq!(gx.to_vec1::<f32>().unwrap(), [2., 2., 2.]);
    assert_eq!(gy.to_vec1::<f32>().unwrap(), [2., 2., 2.]);
    assert_eq!(cpu_ptr(gx), cpu_ptr(gy), "the gradient was copied");
}

#[test]
fn gradients_of_a_tensor_used_several_times_are_summed() {
    let x = Var::new(&[1f32, -2., 3.], &Device::Cpu).unwrap();
    let a = Tensor::new(&[0.5f32, 4., -1.], &Device::Cpu).unwrap();
    let x = x.as_tensor();
    // loss = Σ (x·a + x² + relu(x) − 3x): d/dx = a + 2x + [x > 0] − 3.
    let loss = ((x * &a).unwrap() + x.sqr().unwrap() + x.relu().unwrap() - (x * 3.0).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let g = grads.get(x).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(
        g,
        [0.5 + 2. + 1. - 3., 4. - 4. + 0. - 3., -1. + 6. + 1. - 3.]
    );
    // The same sub-expression reached through two paths: y = x·x feeds both terms.
    let y = x.sqr().unwrap();
    let loss = ((&y * 2.0).unwrap() + &y).unwrap().sum_all().unwrap();
    let g = loss
        .backward()
        .unwrap()
        .get(x)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(g, [6., -12., 18.]);
}

/// third_party/candle-core-maxpool-grad.patch: candle 0.11.1's `max_pool2d` backward
/// multiplied each window's gradient by the share of the window its maxima hold (a
/// quarter for the one maximum of a 2x2 window); patched, the maxima split it. The CPU
/// layers use `hkd_kernels::max_pool2x2` (the whole gradient to the first maximum, as
/// PyTorch's); this is the path off the CPU kernels (CUDA, stock operations).
/// candle's `max_pool2d(2)` of `x` (one 2-D plane) and the gradient of Σ r·y to `x`, both
/// flattened.
fn max_pool_and_gradient(x: Tensor, r: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let x = Var::from_tensor(&x.unsqueeze(0).unwrap().unsqueeze(0).unwrap()).unwrap();
    let y = x.as_tensor().max_pool2d(2).unwrap();
    let r = Tensor::new(r, &Device::Cpu)
        .unwrap()
        .reshape(y.shape())
        .unwrap();
    let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (flat(&y), flat(grads.get(&x).unwrap()))
}

#[test]
fn max_pool_gives_each_window_its_whole_gradient() {
    // windows [1 4; 2 3] (one maximum) and [5 5; 0 1] (two)
    let x = Tensor::new(&[[1f32, 4., 5., 5.], [2., 3., 0., 1.]], &Device::Cpu).unwrap();
    let (y, g) = max_pool_and_gradient(x, &[8., 6.]);
    assert_eq!(y, [4., 5.]);
    assert_eq!(g, [0., 8., 3., 3., 0., 0., 0., 0.]);
    // 3 x 3: one window (rows and columns 0-1); the third row and column, larger but in no
    // window, get nothing, and the window's maximum (4) all of it (stock candle: a quarter).
    let x = Tensor::new(&[[1f32, 4., 9.], [2., 3., 9.], [9., 9., 9.]], &Device::Cpu).unwrap();
    let (y, g) = max_pool_and_gradient(x, &[8.]);
    assert_eq!(y, [4.]);
    assert_eq!(g, [0., 8., 0., 0., 0., 0., 0., 0., 0.]);
}
