//! SGD with momentum and weight decay, with PyTorch's semantics (`torch.optim.SGD`,
//! dampening 0, no Nesterov):
//!
//! ```text
//! d   = g + wd·p
//! buf = d                 on a parameter's first step
//! buf = μ·buf + d         afterwards
//! p   = p − lr·buf
//! ```
//!
//! It updates exactly the parameters it is given ([`hkd_arch::Network::trainable_parameters`]:
//! weights, biases and BatchNorm affine parameters, never running statistics), skips a
//! parameter that got no gradient (as PyTorch does for `grad is None`), and its momentum
//! buffers are saved with the checkpoint.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

use crate::error::{Result, TrainError};

/// The SGD optimiser of a run.
pub struct Sgd {
    params: Vec<(String, Var)>,
    buffers: Vec<Option<Tensor>>,
    /// Learning rate of the next step.
    pub lr: f64,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    /// An optimiser over `params` (names are used for the checkpoint), without momentum
    /// buffers yet.
    pub fn new(params: Vec<(String, Var)>, lr: f64, momentum: f64, weight_decay: f64) -> Self {
        let buffers = vec![None; params.len()];
        Sgd {
            params,
            buffers,
            lr,
            momentum,
            weight_decay,
        }
    }

    /// The parameters, in order.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// One step with the gradients of a backward pass.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        for ((_, var), buffer) in self.params.iter().zip(self.buffers.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let p = var.as_detached_tensor();
            let d = if self.weight_decay != 0.0 {
                (grad + p.affine(self.weight_decay, 0.0)?)?
            } else {
                grad.clone()
            };
            let update = if self.momentum != 0.0 {
                let next = match buffer.take() {
                    None => d,
                    Some(buf) => (buf.affine(self.momentum, 0.0)? + d)?,
                };
                *buffer = Some(next.clone());
                next
            } else {
                d
            };
            var.set(&(p - update.affine(self.lr, 0.0)?)?)?;
        }
        Ok(())
    }

    /// The momentum buffers by parameter name (parameters never stepped have none), on
    /// the CPU, for the checkpoint.
    pub fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for ((name, _), buf) in self.params.iter().zip(&self.buffers) {
            if let Some(buf) = buf {
                out.push((name.clone(), buf.to_device(&Device::Cpu)?));
            }
        }
        Ok(out)
    }

    /// Restores momentum buffers saved by [`Sgd::buffers`]; every name must be a
    /// parameter with the same shape. Parameters without a saved buffer start without one.
    pub fn load_buffers(
        &mut self,
        mut saved: HashMap<String, Tensor>,
        source: &std::path::Path,
    ) -> Result<()> {
        let mut buffers = vec![None; self.params.len()];
        for ((name, var), slot) in self.params.iter().zip(buffers.iter_mut()) {
            if let Some(t) = saved.remove(name) {
                if t.dims() != var.dims() {
                    return Err(TrainError::Checkpoint {
                        path: source.to_path_buf(),
                        reason: format!(
                            "momentum buffer `{name}` has shape {:?}, the parameter has {:?}",
                            t.dims(),
                            var.dims()
                        ),
                    });
                }
                *slot = Some(t.to_dtype(var.dtype())?.to_device(var.device())?);
            }
        }
        if !saved.is_empty() {
            let mut names: Vec<_> = saved.into_keys().collect();
            names.sort();
            return Err(TrainError::Checkpoint {
                path: source.to_path_buf(),
                reason: format!(
                    "momentum buffers for parameters the network does not have: {}",
                    names.join(", ")
                ),
            });
        }
        self.buffers = buffers;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn matches_pytorch_sgd_by_hand() {
        // torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01), p = [1, -2],
        // loss = sum(p^2) → g = 2p. Step 1: d = 2p + 0.01p = 2.01p = [2.01, -4.02];
        // buf = d; p = p - 0.1 d = [0.799, -1.598].
        // Step 2: d = 2.01 p = [1.60599, -3.21198]; buf = 0.9·buf + d = [3.41499, -6.82998];
        // p = [0.799 - 0.341499, -1.598 + 0.682998] = [0.457501, -0.915002].
        let var = Var::from_slice(&[1.0f64, -2.0], 2, &Device::Cpu).unwrap();
        let mut sgd = Sgd::new(vec![("w".into(), var.clone())], 0.1, 0.9, 0.01);
        for _ in 0..2 {
            let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            sgd.step(&grads).unwrap();
        }
        let p = var.as_tensor().to_vec1::<f64>().unwrap();
        assert!(
            (p[0] - 0.457501).abs() < 1e-12 && (p[1] + 0.915002).abs() < 1e-12,
            "{p:?}"
        );
        let bufs = sgd.buffers().unwrap();
        let b = bufs[0].1.to_vec1::<f64>().unwrap();
        assert!(
            (b[0] - 3.41499).abs() < 1e-12 && (b[1] + 6.82998).abs() < 1e-12,
            "{b:?}"
        );
    }

    #[test]
    fn parameters_without_gradient_are_left_alone() {
        let used = Var::from_slice(&[1.0f32], 1, &Device::Cpu).unwrap();
        let unused = Var::from_slice(&[5.0f32], 1, &Device::Cpu).unwrap();
        let mut sgd = Sgd::new(
            vec![("a".into(), used.clone()), ("b".into(), unused.clone())],
            0.5,
            0.9,
            0.1,
        );
        let grads = used.as_tensor().sum_all().unwrap().backward().unwrap();
        sgd.step(&grads).unwrap();
        assert_eq!(unused.as_tensor().to_vec1::<f32>().unwrap(), vec![5.0]);
        assert_eq!(sgd.buffers().unwrap().len(), 1);
        assert_eq!(used.dtype(), DType::F32);
    }

    #[test]
    fn restoring_buffers_checks_names_and_shapes() {
        let var = Var::from_slice(&[1.0f32, 2.0], 2, &Device::Cpu).unwrap();
        let mut sgd = Sgd::new(vec![("w".into(), var)], 0.1, 0.9, 0.0);
        let bad = HashMap::from([(
            "w".to_string(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        )]);
        let msg = sgd
            .load_buffers(bad, std::path::Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("shape"), "{msg}");
        let other = HashMap::from([(
            "v".to_string(),
            Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
        )]);
        let msg = sgd
            .load_buffers(other, std::path::Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`v`") || msg.contains(" v"), "{msg}");
    }
}
