//! Weights that no trained network has — NaN or infinite values, a negative BatchNorm
//! running variance — are refused when loaded, naming the file and the tensor, and the
//! network keeps the weights it had.

use candle_core::{DType, Device, Tensor};
use hkd_arch::{ArchError, Network};

fn input() -> Tensor {
    let n = 2 * 3 * 32 * 32;
    let v: Vec<f32> = (0..n)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    Tensor::from_vec(v, (2, 3, 32, 32), &Device::Cpu).unwrap()
}

/// `net`'s state dict with `value` at flat index `at` of tensor `name`, saved to `path`.
fn save_with(net: &Network, name: &str, at: usize, value: f32, path: &std::path::Path) {
    let mut tensors = std::collections::HashMap::new();
    for (n, t) in net.state_dict().unwrap() {
        let t = if n == name {
            let shape = t.dims().to_vec();
            let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v[at] = value;
            Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
        } else {
            t
        };
        tensors.insert(n, t);
    }
    candle_core::safetensors::save(&tensors, path).unwrap();
}

#[test]
fn nan_infinite_and_negative_variance_weights_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let source = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 1).unwrap();
    let names: Vec<String> = source
        .state_dict()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let conv = names
        .iter()
        .find(|n| n.ends_with("weight") && n.starts_with("conv"))
        .unwrap();
    let var = names.iter().find(|n| n.ends_with("running_var")).unwrap();
    let fc = names.iter().rev().find(|n| n.ends_with("weight")).unwrap();
    let cases = [
        (conv.as_str(), 5, f32::NAN, "NaN or infinite"),
        (fc.as_str(), 0, f32::INFINITY, "NaN or infinite"),
        (var.as_str(), 3, -0.5, "negative"),
    ];
    for (name, at, value, what) in cases {
        let path = dir
            .path()
            .join(format!("{}.safetensors", name.replace('.', "_")));
        save_with(&source, name, at, value, &path);
        let target = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 2).unwrap();
        let before = target
            .forward_eval(&input())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let err = target.load_weights(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ArchError::UnsoundWeights { .. }), "{msg}");
        assert!(
            msg.contains(name) && msg.contains(what) && msg.contains(&path.display().to_string()),
            "{name}: {msg}"
        );
        // Nothing was loaded.
        let after = target
            .forward_eval(&input())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(before, after, "{name}");
    }
    // A zero variance (a channel that never varied) is sound: var + eps > 0.
    let path = dir.path().join("zero_var.safetensors");
    save_with(&source, var, 3, 0.0, &path);
    let target = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 2).unwrap();
    target.load_weights(&path).unwrap();
    // And the untouched weights load, giving the source's logits.
    let path = dir.path().join("sound.safetensors");
    source.save_safetensors(&path).unwrap();
    target.load_weights(&path).unwrap();
    assert_eq!(
        target
            .forward_eval(&input())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
        source
            .forward_eval(&input())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    );
}
