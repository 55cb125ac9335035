//! Checks against PyTorch: parameter counts, state_dict names and shapes, and eval-mode
//! logits after loading the reference weights in every supported format.

mod common;

use candle_core::{DType, Device, Tensor};
use hkd_arch::{ArchSpec, Network, read_weights};

use common::{
    REFERENCE_MODELS, max_abs_diff, read_npy_f32, read_param_counts, read_state_names,
    reference_dir,
};

#[test]
fn parameter_counts_match_pytorch_for_every_listed_name() {
    let Some(dir) = reference_dir("parameter_counts_match_pytorch_for_every_listed_name") else {
        return;
    };
    let counts = read_param_counts(&dir.join("torch/param_counts.json"));
    assert_eq!(counts.len(), 22, "param_counts.json lists 22 names");
    for (name, expected) in counts {
        let spec = ArchSpec::parse(&name).unwrap();
        assert_eq!(spec.canonical_name(), name);
        assert_eq!(spec.param_count(10), expected, "registry count of {name}");
        // Count on the built tensors too (the large ones once each, here).
        let net = Network::new(&name, 10, &Device::Cpu, DType::F32, 0).unwrap();
        assert_eq!(net.num_parameters(), expected, "built count of {name}");
        let trainable: u64 = net
            .trainable_parameters()
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count() as u64)
            .sum();
        assert_eq!(trainable, expected, "trainable_parameters of {name}");
    }
}

#[test]
fn aliases_have_the_counts_of_their_canonical_names() {
    let Some(dir) = reference_dir("aliases_have_the_counts_of_their_canonical_names") else {
        return;
    };
    let counts = read_param_counts(&dir.join("torch/param_counts.json"));
    let get = |n: &str| counts.iter().find(|(k, _)| k == n).unwrap().1;
    assert_eq!(
        ArchSpec::parse("shake26").unwrap().param_count(10),
        get("shake26-2x64d")
    );
    assert_eq!(
        ArchSpec::parse("wrn").unwrap().param_count(10),
        get("wrn28-10")
    );
    assert_eq!(
        ArchSpec::parse("resnext").unwrap().param_count(10),
        get("resnext29-8x64d")
    );
    assert_eq!(get("shake26-2x64d"), 11_709_514);
    assert_eq!(get("wrn28-10"), 36_479_194);
    assert_eq!(get("resnext29-8x64d"), 34_426_698);
}

#[test]
fn state_names_and_shapes_match_pytorch() {
    let Some(dir) = reference_dir("state_names_and_shapes_match_pytorch") else {
        return;
    };
    for arch in REFERENCE_MODELS {
        let expected = read_state_names(&dir.join(format!("torch/models/{arch}_state_names.json")));
        let net = Network::new(arch, 10, &Device::Cpu, DType::F32, 1).unwrap();
        let ours = net.state_names_and_shapes();
        assert_eq!(
            ours.len(),
            expected.len(),
            "{arch}: number of state entries"
        );
        for (i, (o, e)) in ours.iter().zip(&expected).enumerate() {
            assert_eq!(o, e, "{arch}: state entry {i}");
        }
        // state_dict() gives the same names, shapes, and I64 scalars for the counters.
        let sd = net.state_dict().unwrap();
        for ((name, t), (en, es)) in sd.iter().zip(&expected) {
            assert_eq!(name, en);
            assert_eq!(t.dims(), es.as_slice(), "{arch}: {name}");
            if name.ends_with("num_batches_tracked") {
                assert_eq!(t.dtype(), DType::I64);
            } else {
                assert_eq!(t.dtype(), DType::F32);
            }
        }
    }
}

#[test]
fn eval_logits_match_pytorch_for_every_weight_format() {
    let Some(dir) = reference_dir("eval_logits_match_pytorch_for_every_weight_format") else {
        return;
    };
    let models = dir.join("torch/models");
    let (shape, values) = read_npy_f32(&models.join("inputs.npy"));
    assert_eq!(shape, vec![16, 3, 32, 32]);
    let inputs = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
    for arch in REFERENCE_MODELS {
        let (lshape, lvalues) = read_npy_f32(&models.join(format!("{arch}_logits.npy")));
        let expected = Tensor::from_vec(lvalues, lshape, &Device::Cpu).unwrap();
        let mut files = vec![
            models.join(format!("{arch}.safetensors")),
            models.join(format!("{arch}.pth")),
        ];
        if *arch == "resnet8" {
            files.push(models.join("resnet8_legacy.pth.tar"));
        }
        for (i, file) in files.iter().enumerate() {
            let net = Network::new(arch, 10, &Device::Cpu, DType::F32, 7).unwrap();
            if i == 0 {
                let before = net.forward_eval(&inputs).unwrap();
                assert!(
                    max_abs_diff(&before, &expected) > 1e-2,
                    "{arch}: random init already matches?"
                );
            }
            let first_before = net.state_dict().unwrap().swap_remove(0).1;
            net.load_weights(file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let first_after = net.state_dict().unwrap().swap_remove(0).1;
            assert!(
                max_abs_diff(&first_before, &first_after) > 0.0,
                "{arch}: load changed nothing"
            );
            let logits = net.forward_eval(&inputs).unwrap();
            assert_eq!(logits.dims(), &[16, 10]);
            let diff = max_abs_diff(&logits, &expected);
            eprintln!("{arch} from {}: max |diff| {diff:.2e}", file.display());
            assert!(
                diff < 1e-4,
                "{arch} from {}: max |diff| {diff}",
                file.display()
            );
        }
    }
}

#[test]
fn all_formats_give_identical_tensors() {
    let Some(dir) = reference_dir("all_formats_give_identical_tensors") else {
        return;
    };
    let models = dir.join("torch/models");
    let st = read_weights(&models.join("resnet8.safetensors"), &Device::Cpu).unwrap();
    let zip = read_weights(&models.join("resnet8.pth"), &Device::Cpu).unwrap();
    let legacy = read_weights(&models.join("resnet8_legacy.pth.tar"), &Device::Cpu).unwrap();
    // The checkpoints keep state_dict order.
    let names = read_state_names(&models.join("resnet8_state_names.json"));
    assert_eq!(names.len(), 56);
    assert_eq!(st.len(), 56);
    assert_eq!(zip.len(), 56);
    assert_eq!(legacy.len(), 56);
    let zip_names: Vec<&str> = zip.iter().map(|(n, _)| n.as_str()).collect();
    let ref_names: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(zip_names, ref_names);
    for (name, t) in &st {
        for other in [&zip, &legacy] {
            let (_, o) = other.iter().find(|(n, _)| n == name).unwrap();
            assert_eq!(o.dtype(), t.dtype(), "{name}");
            assert_eq!(o.dims(), t.dims(), "{name}");
            let a = t
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let b = o
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            assert_eq!(a, b, "{name}");
        }
    }
    // Warmed running stats: num_batches_tracked is a positive I64 scalar.
    let (_, nbt) = st
        .iter()
        .find(|(n, _)| n == "bn.num_batches_tracked")
        .unwrap();
    assert!(nbt.to_scalar::<i64>().unwrap() > 0);
}
