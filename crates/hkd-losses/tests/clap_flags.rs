//! With the `clap` feature, `DistillationConfig` is a set of command-line flags whose
//! defaults are `DistillationConfig::default()` (`cargo test -p hkd-losses --features clap`).
#![cfg(feature = "clap")]

use clap::{Args, Command, FromArgMatches};
use hkd_losses::{DistilFn, DistillationConfig, HumanTarget, KlReduction};

fn parse(args: &[&str]) -> Result<DistillationConfig, clap::Error> {
    let command = DistillationConfig::augment_args(Command::new("hkd-train"));
    let matches =
        command.try_get_matches_from(std::iter::once("hkd-train").chain(args.iter().copied()))?;
    DistillationConfig::from_arg_matches(&matches)
}

#[test]
fn the_flags_are_consistent() {
    DistillationConfig::augment_args(Command::new("hkd-train")).debug_assert();
}

#[test]
fn no_flags_give_the_default_config() {
    assert_eq!(parse(&[]).unwrap(), DistillationConfig::default());
}

#[test]
fn every_field_has_a_flag_with_the_config_spellings() {
    let config = parse(&[
        "--lambda",
        "0.3",
        "--gamma",
        "0.7",
        "--temperature-teacher",
        "4",
        "--temperature-human",
        "2",
        "--distil-fn",
        "CE",
        "--kl-reduction",
        "batchmean",
        "--human-smoothing",
        "0.01",
        "--human-target",
        "pilot",
        "--label-smoothing",
        "0.1",
    ])
    .unwrap();
    assert_eq!(
        config,
        DistillationConfig {
            lambda: 0.3,
            gamma: 0.7,
            temperature_teacher: 4.0,
            temperature_human: 2.0,
            distil_fn: DistilFn::Ce,
            kl_reduction: KlReduction::BatchMean,
            human_smoothing: 0.01,
            human_target: HumanTarget::Pilot,
            label_smoothing: 0.1,
        }
    );
    // Case-insensitive, with the original's aliases.
    let aliases = parse(&["--distil-fn", "kd", "--kl-reduction", "MEAN"]).unwrap();
    assert_eq!(aliases.distil_fn, DistilFn::Kl);
    assert_eq!(aliases.kl_reduction, KlReduction::ElementwiseMean);
    assert!(parse(&["--human-target", "raw"]).is_err());
    assert!(parse(&["--mode", "human"]).is_err());
}
