//! Weight files: safetensors round trip, state-dict errors, checkpoint variants
//! (nested keys, `module.` prefixes, RepDistiller's checkpoints in both torch formats) and
//! clear errors for files that are not weights.

mod common;

use std::io::{Read, Write};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use hkd_arch::{ArchError, Network, Phase, WeightsFormat, detect_format, read_weights};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use common::reference_dir;
use hkd_test_support::torch_checkpoint::{
    PyValue, TorchFormat, TorchTensor, write_torch_checkpoint,
};

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

fn input(n: usize) -> Tensor {
    Tensor::arange(0.0f32, (n * 3 * 32 * 32) as f32, &Device::Cpu)
        .unwrap()
        .reshape((n, 3, 32, 32))
        .unwrap()
        .affine(1.0 / 3000.0, -0.5)
        .unwrap()
        .sin()
        .unwrap()
}

/// A resnet8 whose running stats and counters are non-trivial.
fn trained_resnet8(seed: u64) -> Network {
    let net = Network::new("resnet8", 10, &Device::Cpu, DType::F32, seed).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..3 {
        net.forward(&input(4), Phase::Train { rng: &mut rng })
            .unwrap();
    }
    net
}

#[test]
fn safetensors_round_trip_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    let a = trained_resnet8(1);
    a.save_safetensors(&path).unwrap();
    // Only the final file is left behind (temp file renamed).
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1);

    let raw = read_weights(&path, &Device::Cpu).unwrap();
    assert_eq!(raw.len(), a.state_names_and_shapes().len());
    let (_, nbt) = raw
        .iter()
        .find(|(n, _)| n == "bn.num_batches_tracked")
        .unwrap();
    assert_eq!(nbt.dtype(), DType::I64);
    assert_eq!(nbt.to_scalar::<i64>().unwrap(), 3);

    let b = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 99).unwrap();
    assert_ne!(
        values(&b.forward_eval(&input(2)).unwrap()),
        values(&a.forward_eval(&input(2)).unwrap())
    );
    b.load_weights(&path).unwrap();
    for ((na, ta), (nb, tb)) in a
        .state_dict()
        .unwrap()
        .iter()
        .zip(b.state_dict().unwrap().iter())
    {
        assert_eq!(na, nb);
        assert_eq!(ta.dtype(), tb.dtype(), "{na}");
        assert_eq!(values(ta), values(tb), "{na}");
    }
    assert_eq!(
        values(&b.forward_eval(&input(2)).unwrap()),
        values(&a.forward_eval(&input(2)).unwrap())
    );
    // The file carries the architecture in its metadata.
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta.get("arch").map(String::as_str), Some("resnet8"));
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    // Saving over an existing file replaces it.
    b.save_safetensors(&path).unwrap();
    assert_eq!(
        detect_format(&path, &std::fs::read(&path).unwrap()).unwrap(),
        WeightsFormat::Safetensors
    );
}

#[test]
fn saving_the_same_weights_gives_the_same_bytes() {
    // safetensors writes its metadata map in HashMap order (random per map); hkd sorts it,
    // so a file's SHA-256 depends only on the weights (checked with 3 metadata entries)
    let net = trained_resnet8(3);
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("w0.safetensors");
    net.save_safetensors(&first).unwrap();
    let bytes = std::fs::read(&first).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(
        header.starts_with(r#"{"__metadata__":{"arch":"resnet8","classes":"10","format":"pt"},"#),
        "{header}"
    );
    for i in 1..24 {
        let path = dir.path().join(format!("w{i}.safetensors"));
        net.save_safetensors(&path).unwrap();
        assert!(std::fs::read(&path).unwrap() == bytes, "save {i} differs");
    }
    let again = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 0).unwrap();
    again.load_weights(&first).unwrap();
    assert_eq!(
        values(&again.forward(&input(2), Phase::Eval).unwrap()),
        values(&net.forward(&input(2), Phase::Eval).unwrap())
    );
}

#[test]
fn f64_networks_load_f32_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let a = trained_resnet8(2);
    a.save_safetensors(&path).unwrap();
    let b = Network::new("resnet8", 10, &Device::Cpu, DType::F64, 0).unwrap();
    b.load_weights(&path).unwrap();
    let ya = values(&a.forward_eval(&input(2)).unwrap());
    let yb = values(
        &b.forward_eval(&input(2).to_dtype(DType::F64).unwrap())
            .unwrap(),
    );
    for (x, y) in ya.iter().zip(&yb) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
}

#[test]
fn missing_extra_and_misshaped_tensors_are_listed_and_nothing_is_loaded() {
    let src = trained_resnet8(3);
    let target = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 4).unwrap();
    let original = target.state_dict().unwrap();
    let mut sd = src.state_dict().unwrap();
    sd.retain(|(n, _)| n != "stage2.block1.conv1.weight" && n != "fc.bias");
    sd.push((
        "stage4.block1.conv1.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    ));
    let i = sd.iter().position(|(n, _)| n == "bn.weight").unwrap();
    sd[i].1 = Tensor::ones(17, DType::F32, &Device::Cpu).unwrap();
    let err = target.load_state_dict(sd).unwrap_err();
    match &err {
        ArchError::StateDictMismatch {
            missing,
            unexpected,
            mis_shaped,
            ..
        } => {
            assert_eq!(
                missing,
                &vec![
                    "stage2.block1.conv1.weight".to_string(),
                    "fc.bias".to_string()
                ]
            );
            assert_eq!(unexpected, &vec!["stage4.block1.conv1.weight".to_string()]);
            assert_eq!(mis_shaped.len(), 1);
            assert_eq!(mis_shaped[0].name, "bn.weight");
            assert_eq!(mis_shaped[0].expected, vec![16]);
            assert_eq!(mis_shaped[0].found, vec![17]);
        }
        other => panic!("expected StateDictMismatch, got {other}"),
    }
    let msg = err.to_string();
    for needle in [
        "missing 2 tensor(s): [stage2.block1.conv1.weight, fc.bias]",
        "unexpected 1 tensor(s): [stage4.block1.conv1.weight]",
        "bn.weight (network [16], file [17])",
        "resnet8",
    ] {
        assert!(msg.contains(needle), "`{needle}` not in: {msg}");
    }
    // All or nothing: the target is unchanged.
    for ((n, a), (_, b)) in original.iter().zip(target.state_dict().unwrap().iter()) {
        assert_eq!(values(a), values(b), "{n} changed by a failed load");
    }
}

#[test]
fn module_prefix_and_missing_counters_are_accepted() {
    let src = trained_resnet8(5);
    let target = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 6).unwrap();
    let sd: Vec<(String, Tensor)> = src
        .state_dict()
        .unwrap()
        .into_iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .map(|(n, t)| (format!("module.{n}"), t))
        .collect();
    target.load_state_dict(sd).unwrap();
    assert_eq!(
        values(&target.forward_eval(&input(1)).unwrap()),
        values(&src.forward_eval(&input(1)).unwrap())
    );
    let nbt = target
        .state_dict()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "bn.num_batches_tracked")
        .unwrap()
        .1;
    assert_eq!(nbt.to_scalar::<i64>().unwrap(), 0);
}

#[test]
fn weights_for_another_class_count_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ten.safetensors");
    trained_resnet8(7).save_safetensors(&path).unwrap();
    let net = Network::new("resnet8", 100, &Device::Cpu, DType::F32, 0).unwrap();
    let msg = net.load_weights(&path).unwrap_err().to_string();
    assert!(
        msg.contains("fc.weight (network [100, 64], file [10, 64])"),
        "{msg}"
    );
    assert!(msg.contains("fc.bias (network [100], file [10])"), "{msg}");
    assert!(msg.contains("ten.safetensors"), "{msg}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn files_that_are_not_weights_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let net = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 0).unwrap();
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (
            write(dir.path(), "notes.txt", b"hello, these are not weights\n"),
            "neither safetensors",
        ),
        (write(dir.path(), "empty.pth", b""), "0 bytes"),
        (
            // pickle.dumps({}, protocol=2): a pickle, but no PyTorch magic number.
            write(dir.path(), "plain.pkl", b"\x80\x02}q\x00."),
            "not with PyTorch's magic number",
        ),
        (
            write(
                dir.path(),
                "trunc.safetensors",
                &[200, 0, 0, 0, 0, 0, 0, 0, b'{', b'"'],
            ),
            "neither safetensors",
        ),
    ];
    for (path, needle) in cases {
        let err = net.load_weights(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ArchError::WeightsFormat { .. }), "{msg}");
        assert!(msg.contains(needle), "{}: {msg}", path.display());
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
    // A safetensors header that lies about its content.
    let mut bad = Vec::new();
    let header = br#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    bad.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bad.extend_from_slice(header);
    bad.extend_from_slice(&[0u8; 4]);
    let p = write(dir.path(), "short.safetensors", &bad);
    let msg = net.load_weights(&p).unwrap_err().to_string();
    assert!(msg.contains("invalid safetensors"), "{msg}");
    // A missing file.
    let err = net
        .load_weights(&dir.path().join("absent.pth"))
        .unwrap_err();
    assert!(matches!(err, ArchError::Io { .. }), "{err}");
    assert!(err.to_string().contains("absent.pth"));
    // A zip that is not a checkpoint.
    let p = dir.path().join("other.zip");
    {
        let f = std::fs::File::create(&p).unwrap();
        let mut z = zip::ZipWriter::new(f);
        z.start_file("readme.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"hi").unwrap();
        z.finish().unwrap();
    }
    let msg = net.load_weights(&p).unwrap_err().to_string();
    assert!(msg.contains("without `data.pkl`"), "{msg}");
}

/// Copies a zip checkpoint, passing `data.pkl` through `edit`.
fn repack(src: &Path, dst: &Path, edit: impl Fn(Vec<u8>) -> Vec<u8>) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let name = f.name().unwrap().into_owned();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if name.ends_with("data.pkl") {
            data = edit(data);
        }
        out.start_file(name, opts).unwrap();
        out.write_all(&data).unwrap();
    }
    out.finish().unwrap();
}

fn replace_unicode(data: Vec<u8>, from: &str, to: &str) -> Vec<u8> {
    // BINUNICODE: 'X', u32 length, bytes.
    let mut pat = vec![b'X'];
    pat.extend_from_slice(&(from.len() as u32).to_le_bytes());
    pat.extend_from_slice(from.as_bytes());
    let mut rep = vec![b'X'];
    rep.extend_from_slice(&(to.len() as u32).to_le_bytes());
    rep.extend_from_slice(to.as_bytes());
    let mut out = Vec::new();
    let mut i = 0;
    let mut count = 0;
    while i < data.len() {
        if data[i..].starts_with(&pat) {
            out.extend_from_slice(&rep);
            i += pat.len();
            count += 1;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    assert!(count > 0, "`{from}` not found in data.pkl");
    out
}

#[test]
fn checkpoints_with_other_state_dict_keys_and_prefixes_load() {
    let Some(refdir) = reference_dir("checkpoints_with_other_state_dict_keys_and_prefixes_load")
    else {
        return;
    };
    let src = refdir.join("torch/models/resnet8.pth");
    let expected = read_weights(&src, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for key in ["state_dict", "model"] {
        let p = dir.path().join(format!("{key}.pth"));
        repack(&src, &p, |d| replace_unicode(d, "model_state_dict", key));
        let got = read_weights(&p, &Device::Cpu).unwrap();
        assert_eq!(got.len(), expected.len(), "{key}");
        let net = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 0).unwrap();
        net.load_weights(&p).unwrap();
    }
    // DataParallel prefixes.
    let p = dir.path().join("dp.pth");
    repack(&src, &p, |d| {
        replace_unicode(d, "conv.weight", "module.conv.weight")
    });
    let got = read_weights(&p, &Device::Cpu).unwrap();
    assert_eq!(got[0].0, "conv.weight");
    // An unknown top-level key: the error lists the keys found.
    let p = dir.path().join("other.pth");
    repack(&src, &p, |d| {
        replace_unicode(d, "model_state_dict", "weights_of_net")
    });
    let err = read_weights(&p, &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ArchError::NoStateDict { .. }), "{msg}");
    assert!(
        msg.contains("weights_of_net") && msg.contains("epoch"),
        "{msg}"
    );
    // A damaged pickle: the error names the pickle and the offset.
    let p = dir.path().join("damaged.pth");
    repack(&src, &p, |mut d| {
        d.truncate(d.len() / 2);
        d
    });
    let msg = read_weights(&p, &Device::Cpu).unwrap_err().to_string();
    assert!(
        msg.contains("data.pkl") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn truncated_legacy_checkpoint_is_an_error() {
    let Some(refdir) = reference_dir("truncated_legacy_checkpoint_is_an_error") else {
        return;
    };
    let bytes = std::fs::read(refdir.join("torch/models/resnet8_legacy.pth.tar")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "cut.pth.tar", &bytes[..bytes.len() - 100]);
    let msg = read_weights(&p, &Device::Cpu).unwrap_err().to_string();
    assert!(
        msg.contains("truncated") && msg.contains("beyond the end"),
        "{msg}"
    );
}

/// A network's state as the tensors of a torch state dict (F32, and I64 for the counters).
fn torch_tensors(net: &Network) -> Vec<TorchTensor> {
    net.state_dict()
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            let shape = t.dims().to_vec();
            let flat = t.flatten_all().unwrap();
            match t.dtype() {
                DType::F32 => TorchTensor::f32(name, shape, flat.to_vec1::<f32>().unwrap()),
                DType::I64 => TorchTensor::i64(name, shape, flat.to_vec1::<i64>().unwrap()),
                other => panic!("{name}: unexpected dtype {other:?}"),
            }
        })
        .collect()
}

/// RepDistiller's `ckpt_epoch_240.pth`: `{"epoch", "model", "accuracy", "optimizer"}`.
fn write_repdistiller_checkpoint(path: &Path, model: &[TorchTensor], format: TorchFormat) {
    write_torch_checkpoint(
        path,
        &[
            ("epoch", PyValue::Int(240)),
            ("model", PyValue::StateDict(model)),
            ("accuracy", PyValue::Float(73.33)),
            ("optimizer", PyValue::None),
        ],
        format,
    );
}

fn logit_bits(net: &Network, x: &Tensor) -> Vec<u32> {
    net.forward_eval(x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

#[test]
fn repdistiller_checkpoints_load_in_both_torch_formats_and_predict_as_their_safetensors() {
    // everything made here from our own weights: no ../shared needed
    let dir = tempfile::tempdir().unwrap();
    let x = input(2);
    for (i, arch) in ["resnet8x4", "wrn_16_2", "shufflev2"]
        .into_iter()
        .enumerate()
    {
        let seed = 10 + i as u64;
        let src = Network::new(arch, 100, &Device::Cpu, DType::F32, seed).unwrap();
        // one training step's worth of running statistics and counters
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        src.forward(&x, Phase::Train { rng: &mut rng }).unwrap();
        let safetensors = dir.path().join(format!("{arch}.safetensors"));
        src.save_safetensors(&safetensors).unwrap();
        let from_safetensors = Network::new(arch, 100, &Device::Cpu, DType::F32, 99).unwrap();
        from_safetensors.load_weights(&safetensors).unwrap();
        let expected = logit_bits(&from_safetensors, &x);
        assert_eq!(
            expected,
            logit_bits(&src, &x),
            "{arch}: safetensors round trip"
        );
        let model = torch_tensors(&src);
        for format in [TorchFormat::Zip, TorchFormat::Legacy] {
            let sub = dir.path().join(format!("{arch}-{format:?}"));
            std::fs::create_dir_all(&sub).unwrap();
            let pth = sub.join("ckpt_epoch_240.pth");
            write_repdistiller_checkpoint(&pth, &model, format);
            let bytes = std::fs::read(&pth).unwrap();
            let want = match format {
                TorchFormat::Zip => WeightsFormat::TorchZip,
                TorchFormat::Legacy => WeightsFormat::TorchLegacy,
            };
            assert_eq!(detect_format(&pth, &bytes).unwrap(), want, "{arch}");
            // read_weights keeps the checkpoint's order: the state dict's
            let read: Vec<String> = read_weights(&pth, &Device::Cpu)
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            let names: Vec<String> = model.iter().map(|t| t.name.clone()).collect();
            assert_eq!(read, names, "{arch} {format:?}");
            let fresh = Network::new(arch, 100, &Device::Cpu, DType::F32, 1000 + seed).unwrap();
            assert_ne!(
                logit_bits(&fresh, &x),
                expected,
                "{arch}: a fresh network already predicts as the checkpoint"
            );
            fresh.load_weights(&pth).unwrap();
            assert_eq!(logit_bits(&fresh, &x), expected, "{arch} {format:?}");
            for ((n, a), (_, b)) in src
                .state_dict()
                .unwrap()
                .iter()
                .zip(fresh.state_dict().unwrap().iter())
            {
                assert_eq!(a.dtype(), b.dtype(), "{arch} {format:?} {n}");
                assert_eq!(values(a), values(b), "{arch} {format:?} {n}");
            }
        }
    }
    // a checkpoint of a 10-class classifier is refused, naming the tensors
    let net = Network::new("resnet8x4", 100, &Device::Cpu, DType::F32, 3).unwrap();
    let mut model = torch_tensors(&net);
    let mut changed = Vec::new();
    for t in model
        .iter_mut()
        .filter(|t| t.shape[..] == [100] || t.shape.first() == Some(&100))
    {
        let per_class: usize = t.shape[1..].iter().product();
        t.shape[0] = 10;
        t.values = hkd_test_support::torch_checkpoint::TensorValues::F32(vec![0.0; 10 * per_class]);
        changed.push(t.clone());
    }
    assert_eq!(changed.len(), 2, "the classifier's weight and bias");
    for format in [TorchFormat::Zip, TorchFormat::Legacy] {
        let pth = dir.path().join(format!("ten-classes-{format:?}.pth"));
        write_repdistiller_checkpoint(&pth, &model, format);
        let before = logit_bits(&net, &x);
        let err = net.load_weights(&pth).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ArchError::StateDictMismatch { .. }), "{msg}");
        for t in &changed {
            let mut network_shape = t.shape.clone();
            network_shape[0] = 100;
            let needle = format!("{} (network {network_shape:?}, file {:?})", t.name, t.shape);
            assert!(msg.contains(&needle), "`{needle}` not in: {msg}");
        }
        assert!(msg.contains(&pth.display().to_string()), "{msg}");
        assert_eq!(
            logit_bits(&net, &x),
            before,
            "a refused checkpoint changed the network"
        );
    }
}
