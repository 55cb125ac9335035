//! Name parsing, aliases, errors and multiply-add counts of the registry.

use candle_core::{DType, Device};
use hkd_arch::{ArchError, ArchSpec, Network, known_architectures};

#[test]
fn aliases_resolve_to_the_original_projects_networks() {
    assert_eq!(
        ArchSpec::parse("shake26").unwrap().canonical_name(),
        "shake26-2x64d"
    );
    assert_eq!(ArchSpec::parse("wrn").unwrap().canonical_name(), "wrn28-10");
    assert_eq!(
        ArchSpec::parse("resnext").unwrap().canonical_name(),
        "resnext29-8x64d"
    );
    let params = |name: &str| {
        let spec = ArchSpec::parse(name).unwrap();
        let names = ["depth", "width", "widen", "cardinality"];
        let values: Vec<(&str, usize)> = names
            .iter()
            .filter_map(|p| spec.param(p).map(|v| (*p, v)))
            .collect();
        (spec.family(), values)
    };
    assert_eq!(
        ArchSpec::parse(" ResNet110 ").unwrap(),
        ArchSpec::parse("resnet110").unwrap()
    );
    assert_eq!(params(" ResNet110 "), ("resnet", vec![("depth", 110)]));
    assert_eq!(
        "shake14-2x8d".parse::<ArchSpec>().unwrap(),
        ArchSpec::parse("shake14-2x8d").unwrap()
    );
    assert_eq!(
        params("shake14-2x8d"),
        ("shake", vec![("depth", 14), ("width", 8)])
    );
    assert_eq!(
        params("wrn40-2"),
        ("wrn", vec![("depth", 40), ("widen", 2)])
    );
    assert_eq!(
        params("resnext38-4x16d"),
        (
            "resnext",
            vec![("depth", 38), ("width", 16), ("cardinality", 4)]
        )
    );
    assert_eq!(
        ArchSpec::parse("shake26").unwrap(),
        ArchSpec::parse("shake26-2x64d").unwrap()
    );
    assert_ne!(
        ArchSpec::parse("shake26").unwrap(),
        ArchSpec::parse("shake26-2x32d").unwrap()
    );
}

#[test]
fn unknown_names_list_the_valid_patterns() {
    for (bad, reason) in [
        ("resnet9", "depth 9 is not of the form 6n+2"),
        ("resnet2", "depth 2 is not of the form 6n+2"),
        ("plane3", "depths 2, 4, 6, 8, 10"),
        ("shake26-3x64d", "2 branches"),
        ("wrn28", "wrn{depth}-{k}"),
        ("wrn26-10", "6n+4"),
        ("resnext29-8x64", "2x64d"),
        ("densenet40", "no known family"),
        ("vgg10", "8, 11, 13, 16 and 19"),
        ("resnetx", "not a positive number"),
    ] {
        let err = ArchSpec::parse(bad).unwrap_err();
        assert!(
            matches!(err, ArchError::UnknownArchitecture { .. }),
            "{bad}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{bad}`")), "{msg}");
        assert!(msg.contains(reason), "{bad}: {msg}");
        assert!(
            msg.contains("resnet{6n+2}") && msg.contains("plane{2,4,6,8,10}"),
            "{msg}"
        );
        assert!(msg.contains("wrn = wrn28-10"), "{msg}");
    }
}

#[test]
fn multiply_adds_match_hand_counts() {
    // ResNet-8 by hand: stem 32*32*16*27 = 442,368; stage1 2 convs 32*32*16*144 = 2,359,296
    // each; stage2 conv1 16*16*32*144 = 1,179,648, conv2 16*16*32*288 = 2,359,296,
    // shortcut 16*16*32*16 = 131,072; stage3 conv1 8*8*64*288 = 1,179,648, conv2
    // 8*8*64*576 = 2,359,296, shortcut 8*8*64*32 = 131,072; fc 640.
    let expected = 442_368
        + 2 * 2_359_296
        + 1_179_648
        + 2_359_296
        + 131_072
        + 1_179_648
        + 2_359_296
        + 131_072
        + 640;
    assert_eq!(
        ArchSpec::parse("resnet8").unwrap().macs_per_image(10),
        expected
    );
    // ResNet-20's widely quoted figure is 40.8M (conv + fc).
    let r20 = ArchSpec::parse("resnet20").unwrap().macs_per_image(10);
    assert_eq!(r20, 40_812_544 + 640);
    // plane2: conv 32*32*16*27 + conv 16*16*16*144 + fc 1024*10.
    assert_eq!(
        ArchSpec::parse("plane2").unwrap().macs_per_image(10),
        442_368 + 589_824 + 10_240
    );
    // More classes only change the last layer.
    let r8 = ArchSpec::parse("resnet8").unwrap();
    assert_eq!(r8.macs_per_image(100) - r8.macs_per_image(10), 64 * 90);
    assert_eq!(r8.param_count(100) - r8.param_count(10), 65 * 90);
}

#[test]
fn listing_holds_every_reference_name_and_the_aliases() {
    let list = known_architectures();
    // The original project's 22 names and 3 aliases, and the KD benchmarks' networks.
    let benchmark_networks = [
        "resnet8x4",
        "resnet32x4",
        "vgg8",
        "vgg11",
        "vgg13",
        "vgg16",
        "vgg19",
        "mobilenetv2",
        "mobile_half",
        "wrn_16_1",
        "wrn_16_2",
        "wrn_40_1",
        "wrn_40_2",
        "shufflev2",
    ];
    assert_eq!(list.len(), 25 + benchmark_networks.len());
    for name in benchmark_networks {
        assert!(list.iter().any(|a| a.name == name), "{name}");
    }
    let r8 = list.iter().find(|a| a.name == "resnet8").unwrap();
    assert_eq!(r8.params, 78_042);
    assert!(r8.alias_of.is_none());
    let shake = list.iter().find(|a| a.name == "shake26").unwrap();
    assert_eq!(shake.alias_of.as_deref(), Some("shake26-2x64d"));
    assert_eq!(shake.params, 11_709_514);
    assert!(list.iter().all(|a| a.macs > 0 && !a.description.is_empty()));
    // Bigger networks cost more.
    let macs = |n: &str| list.iter().find(|a| a.name == n).unwrap().macs;
    assert!(macs("resnet8") < macs("resnet20") && macs("resnet20") < macs("resnet110"));
    assert!(macs("shake26-2x16d") < macs("shake26-2x32d"));
}

#[test]
fn counts_are_those_of_the_built_networks() {
    // The registry counts by building a network without weights and running it; the
    // parameters must be those of the network built for real (the largest ones are
    // checked once each against PyTorch in `reference.rs`).
    for info in known_architectures() {
        if info.params > 3_000_000 {
            continue;
        }
        let net = Network::new(&info.name, 10, &Device::Cpu, DType::F32, 0).unwrap();
        assert_eq!(net.num_parameters(), info.params, "{}", info.name);
    }
}
