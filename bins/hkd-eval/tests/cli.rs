//! The `hkd-eval` binary: predict against the PyTorch references, `run` on a small grid
//! (evaluate, skip, report failures, exit codes), missing sets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device, Tensor};
use hkd_arch::Network;
use hkd_datasets::{Dataset, DatasetParts, Normalization, write_split};
use hkd_rundir::{
    DataSpec, DistilFn, DistillationConfig, KlReduction, OptimizerSpec, RunConfig, RunDir, RunSpec,
    RunState, ScheduleSpec, SchedulerKind, TeacherChoice, TeacherSpec, TrainingSpec,
};
use hkd_test_support::run_0_1;

fn hkd_eval(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_hkd-eval"))
        .args(args)
        .args(["--device", "cpu"])
        .output()
        .expect("run hkd-eval");
    eprintln!(
        "hkd-eval {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn reference_models(test: &str) -> Option<PathBuf> {
    hkd_test_support::reference_dir(test, "torch/models").map(|d| d.join("torch/models"))
}

fn read_f32(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().unwrap())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn predict_reproduces_the_pytorch_logits() {
    let Some(models) = reference_models("predict_reproduces_the_pytorch_logits") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inputs = models.join("inputs.npy");
    for (arch, weights) in [
        ("resnet8", "resnet8.safetensors"),
        ("resnet8", "resnet8_legacy.pth.tar"),
        ("plane2", "plane2.pth"),
        ("shake26-2x16d", "shake26-2x16d.safetensors"),
        ("wrn16-1", "wrn16-1.safetensors"),
        ("resnext29-2x4d", "resnext29-2x4d.safetensors"),
    ] {
        let out = tmp.path().join(format!("{weights}.npy"));
        let o = hkd_eval(&[
            "predict",
            "--arch",
            arch,
            "--weights",
            models.join(weights).to_str().unwrap(),
            "--images",
            inputs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--batch-size",
            "5",
        ]);
        assert!(o.status.success(), "{weights}");
        let (shape, ours) = read_f32(&out);
        let (_, expected) = read_f32(&models.join(format!("{arch}_logits.npy")));
        assert_eq!(shape, vec![16, 10], "{weights}");
        let d = max_abs_diff(&ours, &expected);
        assert!(d < 1e-4, "{weights}: logits differ from PyTorch by {d}");
    }
}

#[test]
fn predict_normalises_u8_images_with_the_cifar_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 5;
    let images: Vec<u8> = (0..n * 3072).map(|i| ((i * 7919) % 256) as u8).collect();
    let dataset = Dataset::new(DatasetParts::cifar10(images.clone(), vec![0; n])).unwrap();
    write_split(tmp.path(), "x", &dataset, None).unwrap(); // writes x/images.npy, u8 N×32×32×3
    let net = Network::new("resnet8", 10, &Device::Cpu, DType::F32, 4).unwrap();
    let weights = tmp.path().join("w.safetensors");
    net.save_safetensors(&weights).unwrap();
    let out = tmp.path().join("logits.npy");
    let o = hkd_eval(&[
        "predict",
        "--arch",
        "resnet8",
        "--weights",
        weights.to_str().unwrap(),
        "--images",
        tmp.path().join("x/images.npy").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let (shape, ours) = read_f32(&out);
    assert_eq!(shape, vec![n as u64, 10]);

    let Normalization { mean, std } = Normalization::CIFAR10;
    let mut x = vec![0f32; n * 3072];
    for i in 0..n {
        for p in 0..1024 {
            for c in 0..3 {
                x[i * 3072 + c * 1024 + p] =
                    (images[i * 3072 + p * 3 + c] as f32 / 255.0 - mean[c]) / std[c];
            }
        }
    }
    let x = Tensor::from_vec(x, (n, 3, 32, 32), &Device::Cpu).unwrap();
    let expected: Vec<f32> = net
        .forward_eval(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(max_abs_diff(&ours, &expected) < 1e-5);

    // A wrong array is refused with what is expected.
    let bad = tmp.path().join("bad.npy");
    std::fs::copy(tmp.path().join("x/labels.npy"), &bad).unwrap();
    let o = hkd_eval(&[
        "predict",
        "--arch",
        "resnet8",
        "--weights",
        weights.to_str().unwrap(),
        "--images",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("N×H×W×3"));
}

fn random_dataset(n: usize, seed: u64) -> Dataset {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let images: Vec<u8> = (0..n * 3072)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    Dataset::new(DatasetParts::cifar10(
        images,
        (0..n).map(|i| (i % 10) as u32).collect(),
    ))
    .unwrap()
}

/// A finished run of `arch` seeded `seed` (seeded weights in best.safetensors), at the
/// trainer's path under `root`: `<teacher>/<arch>/<run name of its specification>`.
fn make_run(root: &Path, teacher: &str, arch: &str, seed: u64, data: &Path) -> RunDir {
    let spec = RunSpec {
        student: arch.into(),
        seed,
        iter: 0,
        data: DataSpec {
            dir: data.to_path_buf(),
            train_split: "train".into(),
            val_split: "val".into(),
        },
        teacher: TeacherChoice {
            teacher: teacher.into(),
            teacher_arch: None,
        },
        loss: hkd_rundir::ObjectiveConfig::Hkd(DistillationConfig {
            lambda: 0.5,
            gamma: 0.0,
            temperature_teacher: 1.0,
            temperature_human: 1.0,
            distil_fn: DistilFn::Kl,
            kl_reduction: KlReduction::BatchMean,
            human_smoothing: 0.02,
            ..DistillationConfig::default()
        }),
        training: TrainingSpec {
            epochs: 1,
            batch_size: 128,
            ..TrainingSpec::default()
        },
        optimizer: OptimizerSpec {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
        },
        schedule: ScheduleSpec {
            scheduler: SchedulerKind::Plateau,
            ..ScheduleSpec::default()
        },
    };
    let teacher = if teacher == "human" {
        TeacherSpec::Human
    } else {
        TeacherSpec::Baseline
    };
    let config = RunConfig::new(spec, teacher, 10, "x", "cpu");
    let run = config.run_dir_in(root);
    run.create().unwrap();
    run.write_config(&config).unwrap();
    Network::new(arch, 10, &Device::Cpu, DType::F32, seed)
        .unwrap()
        .save_safetensors(&run.file(RunDir::BEST_WEIGHTS))
        .unwrap();
    run.write_state(&RunState {
        epochs_completed: 1,
        batches_into_epoch: 0,
        epochs: 1,
        finished: true,
        trainer: serde_json::Value::Null,
    })
    .unwrap();
    run
}

/// The data: the fixture when it is there (its val split), else a small written set.
fn data_dir(tmp: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cifar10h-mini");
    if fixture.join("dataset.toml").is_file() {
        return fixture;
    }
    let dir = tmp.join("data");
    write_split(&dir, "val", &random_dataset(50, 1), None).unwrap();
    write_split(&dir, "c10", &random_dataset(30, 2), None).unwrap();
    dir
}

#[test]
fn run_evaluates_a_grid_skips_on_rerun_and_reports_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let grid = tmp.path().join("grid");
    let mut good = Vec::new();
    for (i, (teacher, arch)) in [
        ("baseline", "resnet8"),
        ("human", "resnet8"),
        ("human", "plane2"),
    ]
    .iter()
    .enumerate()
    {
        good.push(make_run(&grid, teacher, arch, i as u64, &data));
    }
    let corrupt = make_run(&grid, "human", "resnet8", 9, &data);
    std::fs::write(corrupt.file(RunDir::BEST_WEIGHTS), b"garbage").unwrap();

    let start = std::time::Instant::now();
    let o = hkd_eval(&["run", grid.to_str().unwrap(), "--batch-size", "64"]);
    eprintln!("grid of 4 evaluated in {:.1?}", start.elapsed());
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed run makes the exit code 1"
    );
    let text = stdout(&o);
    assert_eq!(text.matches("evaluated  ").count(), 3, "{text}");
    let corrupt_line = format!("FAILED     {}", corrupt.path().display());
    assert!(text.contains(&corrupt_line), "{text}");
    assert!(
        text.contains("3 runs evaluated, 0 skipped, 1 failed"),
        "{text}"
    );
    for run in &good {
        let r = run.read_eval().unwrap();
        assert_eq!(r.sets.keys().collect::<Vec<_>>(), vec!["val"]);
        assert!(r.sets["val"].images > 0);
    }
    assert!(!corrupt.file(RunDir::EVAL).exists());

    // Again: the good ones are skipped, the corrupt one fails again.
    let o = hkd_eval(&["run", grid.to_str().unwrap(), "--batch-size", "64", "-q"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("0 runs evaluated, 3 skipped, 1 failed"),
        "{}",
        stdout(&o)
    );

    // Without the corrupt run, all is well; --force evaluates again.
    std::fs::remove_dir_all(corrupt.path()).unwrap();
    let o = hkd_eval(&[
        "run",
        grid.to_str().unwrap(),
        "--batch-size",
        "64",
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("3 runs evaluated, 0 skipped, 0 failed"),
        "{}",
        stdout(&o)
    );

    // Attacks on one run, from a sets file.
    let sets_file = tmp.path().join("sets.toml");
    std::fs::write(
        &sets_file,
        format!("[sets]\nval = \"{}:val\"\n", data.display()),
    )
    .unwrap();
    let o = hkd_eval(&[
        "run",
        good[2].path().to_str().unwrap(),
        "--sets-file",
        sets_file.to_str().unwrap(),
        "--attack",
        "fgsm,pgd",
        "--eps",
        "0,8/255",
        "--pgd-steps",
        "2",
        "--attack-samples",
        "10",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let attacks = &good[2].read_eval().unwrap().sets["val"].attacks;
    assert_eq!(attacks.len(), 4);
    assert_eq!(attacks[0].accuracy, {
        // ε = 0 on the same 10 images: the clean accuracy of the subset, between 0 and 1
        attacks[0].accuracy.clamp(0.0, 1.0)
    });
    assert!(attacks.iter().all(|a| a.samples == 10));
}

#[test]
fn shards_split_the_runs_between_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let grid = tmp.path().join("grid");
    let mut runs: Vec<RunDir> = (0..3)
        .map(|i| make_run(&grid, "baseline", "plane2", i, &data))
        .collect();
    runs.sort_by(|a, b| a.path().cmp(b.path()));
    let grid_arg = grid.to_str().unwrap();

    let o = hkd_eval(&["run", grid_arg, "--batch-size", "64", "--shard", "2/2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(text.contains("shard 2/2: 1 target of 3"), "{text}");
    assert!(
        text.contains("1 run evaluated, 0 skipped, 0 failed"),
        "{text}"
    );
    let done: Vec<bool> = runs.iter().map(|r| r.file(RunDir::EVAL).exists()).collect();
    assert_eq!(
        done,
        [false, true, false],
        "run directories are taken in sorted order"
    );

    let o = hkd_eval(&["run", grid_arg, "--batch-size", "64", "--shard", "1/2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("shard 1/2: 2 targets of 3"),
        "{}",
        stdout(&o)
    );
    assert!(runs.iter().all(|r| r.file(RunDir::EVAL).exists()));

    // More shards than runs: an empty shard is not an error.
    let o = hkd_eval(&["run", grid_arg, "--shard", "4/4"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("shard 4/4: 0 targets of 3"),
        "{}",
        stdout(&o)
    );

    for bad in ["0/2", "3/2", "two"] {
        let o = hkd_eval(&["run", grid_arg, "--shard", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--shard") && err.contains("K/N"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_missing_set_stops_before_any_run_is_evaluated() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_split(&data, "val", &random_dataset(10, 1), None).unwrap();
    let run = make_run(&tmp.path().join("grid"), "baseline", "plane2", 1, &data);
    let o = hkd_eval(&[
        "run",
        tmp.path().join("grid").to_str().unwrap(),
        "--set",
        &format!("cifar10={}:val", data.display()),
        "--set",
        &format!("cinic={}", tmp.path().join("no-cinic").display()),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cinic") && err.contains("no-cinic") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!run.file(RunDir::EVAL).exists());

    let o = hkd_eval(&[
        "run",
        tmp.path().join("grid").to_str().unwrap(),
        "--set",
        "nonsense",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a malformed --set is a usage error"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("NAME=DIR"));
    assert!(!run.file(RunDir::EVAL).exists());
}

#[test]
fn calibrate_on_fits_a_temperature_and_refuses_an_unknown_set() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_split(&data, "val", &random_dataset(40, 1), None).unwrap();
    write_split(&data, "c10", &random_dataset(30, 2), None).unwrap();
    let grid = tmp.path().join("grid");
    let run = make_run(&grid, "baseline", "plane2", 1, &data);
    let grid_arg = grid.to_str().unwrap();

    // A set that is not evaluated: refused (exit 2) before any run, naming the sets.
    let val = format!("val={}:val", data.display());
    let c10 = format!("c10={}:c10", data.display());
    let o = hkd_eval(&[
        "run",
        grid_arg,
        "--set",
        &val,
        "--set",
        &c10,
        "--calibrate-on",
        "cinic",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--calibrate-on cinic") && err.contains("val, c10"),
        "{err}"
    );
    assert!(!run.file(RunDir::EVAL).exists());
    // Without --set the only set is each run's own `val`.
    let o = hkd_eval(&["run", grid_arg, "--calibrate-on", "c10"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the sets are val"));
    assert!(!run.file(RunDir::EVAL).exists());

    let o = hkd_eval(&[
        "run",
        grid_arg,
        "--set",
        &val,
        "--set",
        &c10,
        "--calibrate-on",
        "val",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let r = run.read_eval().unwrap();
    let t = r.temperature.as_ref().expect("a fitted temperature");
    assert_eq!(t.set, "val");
    assert!(t.temperature > 0.0 && t.nll_after <= t.nll_before, "{t:?}");
    assert!(stdout(&o).contains(&format!("T {:.4} (on val)", t.temperature)));
    for (name, m) in &r.sets {
        let scaled = m
            .temperature_scaled
            .as_ref()
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(
            scaled.reliability.iter().map(|b| b.count).sum::<usize>(),
            m.images
        );
    }
    assert_eq!(
        r.sets["val"].temperature_scaled.as_ref().unwrap().ce_mean,
        t.nll_after
    );

    // The calibration set is part of the settings: without it the run is evaluated again.
    let o = hkd_eval(&["run", grid_arg, "--set", &val, "--set", &c10]);
    assert!(stdout(&o).contains("1 run evaluated"), "{}", stdout(&o));
    assert_eq!(run.read_eval().unwrap().temperature, None);
}

#[test]
fn full_evaluation_of_a_small_grid_on_the_fixtures() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cifar10h-mini");
    if !fixture.join("dataset.toml").is_file() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "fixtures/cifar10h-mini is missing at {} (run `just fixtures`)",
                fixture.display()
            );
        }
        // Straight to stderr: libtest hides eprintln! output of passing tests.
        hkd_test_support::skip(
            "full_evaluation_of_a_small_grid_on_the_fixtures",
            &format!("{} not built yet (just fixtures)", fixture.display()),
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid");
    let runs = [
        make_run(&grid, "baseline", "resnet8", 1, &fixture),
        make_run(&grid, "human", "resnet8", 2, &fixture),
        make_run(&grid, "human", "plane2", 3, &fixture),
    ];
    let set = |name: &str, split: &str| format!("{name}={}:{split}", fixture.display());
    let start = std::time::Instant::now();
    let o = hkd_eval(&[
        "run",
        grid.to_str().unwrap(),
        "--set",
        &set("cifar10", "val"),
        "--set",
        &set("cinic", "cinic"),
        "--set",
        &set("cifar10h", "train"),
        "--attack",
        "fgsm",
        "--eps",
        "0,8/255",
        "--attack-samples",
        "20",
    ]);
    eprintln!(
        "fixture grid of 3 runs evaluated in {:.1?}",
        start.elapsed()
    );
    assert_eq!(o.status.code(), Some(0));
    for run in &runs {
        let r = run.read_eval().unwrap();
        assert_eq!(r.sets["cifar10"].images, 500);
        assert_eq!(r.sets["cinic"].images, 500);
        let h = &r.sets["cifar10h"];
        assert_eq!(h.images, 1000);
        let human = h
            .human
            .as_ref()
            .expect("the fixture's train split has CIFAR-10H labels");
        // CE against people = KL + their mean entropy, which is the same for every run.
        assert!(human.ce > human.kl && human.kl > 0.0);
        assert!(r.sets["cifar10"].human.is_none());
        assert_eq!(h.attacks.len(), 2);
    }
    let entropy = |r: &RunDir| {
        let h = r.read_eval().unwrap().sets["cifar10h"]
            .human
            .clone()
            .unwrap();
        h.ce - h.kl
    };
    let (e0, e1) = (entropy(&runs[0]), entropy(&runs[2]));
    assert!(
        (e0 - e1).abs() < 1e-9,
        "mean human entropy differs between runs: {e0} vs {e1}"
    );
}

/// A finished run as hkd 0.1 left it at `<root>/human/plane2/<its name>`: its text files
/// written byte for byte (not through today's hkd_rundir) and seeded plane2 weights as
/// best and last weights; it validated on `data:val_split`.
fn make_run_0_1(root: &Path, data: &Path, val_split: &str) -> PathBuf {
    let dir = root.join("human/plane2").join(run_0_1::NAME);
    std::fs::create_dir_all(&dir).unwrap();
    let config = run_0_1::config(&data.display().to_string(), val_split);
    for (file, text) in [
        ("config.toml", config.as_str()),
        ("metrics.jsonl", run_0_1::METRICS),
        ("best.json", run_0_1::BEST),
        ("last.json", run_0_1::LAST),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let net = Network::new("plane2", 10, &Device::Cpu, DType::F32, 7).unwrap();
    for weights in ["best.safetensors", "last.safetensors"] {
        net.save_safetensors(&dir.join(weights)).unwrap();
    }
    dir
}

#[test]
fn a_run_directory_of_hkd_0_1_is_evaluated() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_split(&data, "val", &random_dataset(20, 1), None).unwrap();
    write_split(&data, "holdout", &random_dataset(12, 2), None).unwrap();
    let grid = tmp.path().join("grid");
    let dir = make_run_0_1(&grid, &data, "holdout");

    // Found in the grid and evaluated on its own validation split, which only its old
    // config.toml names, with the architecture only its old config.toml names (plane2
    // weights do not load into the default resnet8).
    let o = hkd_eval(&["run", grid.to_str().unwrap(), "--batch-size", "5"]);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    assert!(
        text.contains(&format!("evaluated  {}", dir.display())),
        "{text}"
    );
    assert!(
        text.contains("1 run evaluated, 0 skipped, 0 failed"),
        "{text}"
    );
    let run = RunDir::new(&dir);
    let report = run.read_eval().unwrap();
    assert_eq!(report.weights, "best.safetensors");
    assert_eq!(report.sets.keys().collect::<Vec<_>>(), vec!["val"]);
    let val = &report.sets["val"];
    assert_eq!(val.images, 12);
    assert!(val.source.ends_with(":holdout"), "{}", val.source);

    // The same numbers as the same weights evaluated as a bare checkpoint on that split.
    let checkpoint = tmp.path().join("plane2.safetensors");
    std::fs::copy(dir.join("best.safetensors"), &checkpoint).unwrap();
    let o = hkd_eval(&[
        "run",
        checkpoint.to_str().unwrap(),
        "--arch",
        "plane2",
        "--set",
        &format!("val={}:holdout", data.display()),
        "--batch-size",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let bare: hkd_rundir::EvalReport = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("plane2.eval.json")).unwrap(),
    )
    .unwrap();
    let b = &bare.sets["val"];
    assert_eq!(
        (val.images, val.accuracy, val.ce_mean, val.ece, val.brier),
        (b.images, b.accuracy, b.ce_mean, b.ece, b.brier)
    );

    // The old run's files are left as they were, and a second pass skips it.
    assert!(
        std::fs::read_to_string(run.file(RunDir::CONFIG))
            .unwrap()
            .starts_with("hkd_version = \"0.1.0\"\nrun_name = ")
    );
    let o = hkd_eval(&["run", grid.to_str().unwrap(), "--batch-size", "5"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("0 runs evaluated, 1 skipped, 0 failed"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn nan_weights_are_refused_by_file_and_tensor_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let grid = tmp.path().join("grid");
    let run = make_run(&grid, "human", "resnet8", 3, &data);
    // the last float of the file (a tensor's last value) becomes NaN
    let weights = run.file(RunDir::BEST_WEIGHTS);
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&weights, bytes).unwrap();
    let o = hkd_eval(&["run", run.path().to_str().unwrap(), "--batch-size", "64"]);
    assert_eq!(o.status.code(), Some(2), "refused input, not accuracy 0.1");
    let text = stdout(&o);
    assert!(
        text.contains(&format!("FAILED     {}", run.path().display()))
            && text.contains("best.safetensors")
            && text.contains("NaN"),
        "{text}"
    );
    assert!(!run.file(RunDir::EVAL).exists());
}
