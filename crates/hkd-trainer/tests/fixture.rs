//! A short run on the embedded real-data fixture `fixtures/cifar10h-mini`.

mod common;

use std::path::Path;

use common::{execution, tmp};
use hkd_rundir::{RunDir, RunSpec};
use hkd_trainer::{NoObserver, Outcome, StopFlag, train};

#[test]
fn human_mode_on_the_cifar10h_mini_fixture() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cifar10h-mini");
    if !fixture.join("dataset.toml").is_file() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{} is missing; build it with `just fixtures`",
                fixture.display()
            );
        }
        hkd_test_support::skip(
            "human_mode_on_the_cifar10h_mini_fixture",
            &format!("{} not built (run `just fixtures`)", fixture.display()),
        );
        return;
    }
    let tmp = tmp();
    let mut spec = RunSpec {
        student: "resnet8".into(),
        ..RunSpec::default()
    };
    spec.data.dir = fixture.clone();
    spec.teacher.teacher = "human".into();
    spec.loss.as_hkd_mut().unwrap().lambda = 1.0;
    spec.training.epochs = 1;
    spec.training.batch_size = 32;
    spec.training.max_batches = Some(3);
    let Outcome::Finished { run_dir, best } = train(
        &spec,
        &execution(tmp.path()),
        &mut NoObserver,
        &StopFlag::new(),
    )
    .unwrap() else {
        panic!("expected a finished run");
    };
    assert_eq!(
        run_dir,
        tmp.path().join("human/resnet8").join(spec.run_name())
    );
    let run = RunDir::new(&run_dir);
    let config = run.read_config().unwrap();
    assert_eq!(config.classes, 10);
    let hash = hkd_datasets::DatasetDir::open(&fixture)
        .unwrap()
        .manifest_hash()
        .unwrap();
    assert_eq!(config.dataset_hash, hash);
    assert_eq!(config.spec.training.max_batches, Some(3));
    assert_eq!(config.spec.loss.as_hkd().unwrap().lambda, 1.0);
    let m = run.read_metrics().unwrap();
    assert_eq!(m.len(), 1);
    // λ = 1: the objective is the human term alone.
    assert_eq!(m[0].train_total, m[0].part("kd").unwrap());
    assert!(
        m[0].part("kd").unwrap() > 0.0 && m[0].part("hard").unwrap() > 1.0,
        "{m:?}"
    );
    // The 500 validation images are all evaluated: the accuracy is a multiple of 1/500.
    let hits = m[0].val_acc * 500.0;
    assert!((hits - hits.round()).abs() < 1e-6, "{m:?}");
    assert_eq!(best.epoch, 1);
    let state = run.read_state().unwrap();
    assert_eq!(state.trainer["settings"]["max_batches"], 3);
}
