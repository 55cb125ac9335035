//! The model registry: architecture names, their parameter counts and multiply-adds.
//!
//! Counts here are computed from the architecture definition without building tensors,
//! so listing even the largest networks is instant. The test suite checks them against
//! the networks as built and against PyTorch's counts.

use std::fmt;
use std::str::FromStr;

use crate::error::ArchError;

/// Name patterns accepted by [`ArchSpec::parse`], for help texts and errors.
pub const NAME_PATTERNS: &[&str] = &[
    "resnet{6n+2} (resnet8, resnet14, resnet20, resnet26, resnet32, resnet44, resnet56, resnet110, ...)",
    "plane{2,4,6,8,10}",
    "shake{6n+2}-2x{W}d (shake26-2x16d, shake26-2x32d, shake26-2x64d, shake26-2x96d, ...; shake26 = shake26-2x64d)",
    "wrn{6n+4}-{k} (wrn16-1, wrn16-4, wrn28-10, ...; wrn = wrn28-10)",
    "resnext{9n+2}-{C}x{W}d (resnext29-2x4d, resnext29-8x64d, ...; resnext = resnext29-8x64d)",
];

/// Layers of the plain CNNs of TAKD's CIFAR-10 book (`plane_cifar10_book`).
/// `C<n>`: conv3x3(n, bias)+BN+ReLU, `M`: 2x2 max-pool, `F<n>`: linear (+ReLU unless last;
/// the last linear layer's width is the number of classes).
pub(crate) fn plane_layers(depth: usize) -> Option<&'static [PlaneLayer]> {
    use PlaneLayer::{Conv as C, Fc as F, MaxPool as M};
    const P2: &[PlaneLayer] = &[C(16), M, C(16), M, F(10)];
    const P4: &[PlaneLayer] = &[C(16), C(16), M, C(32), C(32), M, F(10)];
    const P6: &[PlaneLayer] = &[C(16), C(16), M, C(32), C(32), M, C(64), C(64), M, F(10)];
    const P8: &[PlaneLayer] = &[
        C(16),
        C(16),
        M,
        C(32),
        C(32),
        M,
        C(64),
        C(64),
        M,
        C(128),
        C(128),
        M,
        F(64),
        F(10),
    ];
    const P10: &[PlaneLayer] = &[
        C(32),
        C(32),
        M,
        C(64),
        C(64),
        M,
        C(128),
        C(128),
        M,
        C(256),
        C(256),
        C(256),
        C(256),
        M,
        F(128),
        F(10),
    ];
    match depth {
        2 => Some(P2),
        4 => Some(P4),
        6 => Some(P6),
        8 => Some(P8),
        10 => Some(P10),
        _ => None,
    }
}

/// One entry of a plain CNN's layer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlaneLayer {
    /// conv3x3 with bias, BN, ReLU.
    Conv(usize),
    /// 2x2 max-pool, stride 2.
    MaxPool,
    /// Linear layer (ReLU after it unless it is the last).
    Fc(usize),
}

/// A parsed architecture name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchSpec {
    /// CIFAR ResNet with basic blocks, depth 6n+2 (16/32/64 channels).
    ResNet {
        /// Total depth (6n+2).
        depth: usize,
    },
    /// TAKD's plain CNN (`plane_cifar10_book`), depth 2, 4, 6, 8 or 10.
    Plane {
        /// Number of layers in the book (2, 4, 6, 8, 10).
        depth: usize,
    },
    /// Shake-Shake ResNet with two residual branches, depth 6n+2, base width `width`.
    ShakeShake {
        /// Total depth (6n+2).
        depth: usize,
        /// Channels of the first stage (then 2x and 4x).
        width: usize,
    },
    /// Pre-activation Wide ResNet, depth 6n+4, widening factor `widen`.
    WideResNet {
        /// Total depth (6n+4).
        depth: usize,
        /// Widening factor k.
        widen: usize,
    },
    /// ResNeXt with bottleneck blocks, depth 9n+2, cardinality C, base width W.
    ResNeXt {
        /// Total depth (9n+2).
        depth: usize,
        /// Number of groups of the 3x3 convolution.
        cardinality: usize,
        /// Base width (channels of the stem conv).
        width: usize,
    },
}

/// A registry entry for listings (`hkd-train models`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchInfo {
    /// The name as listed (canonical, or the alias).
    pub name: String,
    /// For aliases: the canonical name.
    pub alias_of: Option<String>,
    /// One-line description.
    pub description: String,
    /// Trainable parameters with 10 classes.
    pub params: u64,
    /// Multiply-adds per 3x32x32 image with 10 classes.
    pub macs: u64,
}

/// The canonical names with reference parameter counts, then the short aliases of the
/// original project.
const LISTED: &[&str] = &[
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet26",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "plane2",
    "plane4",
    "plane6",
    "plane8",
    "plane10",
    "shake26-2x16d",
    "shake26-2x32d",
    "shake26-2x64d",
    "shake26-2x96d",
    "wrn16-1",
    "wrn16-4",
    "wrn28-10",
    "resnext29-2x4d",
    "resnext29-8x64d",
    "shake26",
    "wrn",
    "resnext",
];

/// Every listed architecture (reference names and aliases) with parameters and MACs for
/// 10 classes.
pub fn known_architectures() -> Vec<ArchInfo> {
    LISTED
        .iter()
        .map(|name| {
            let spec = ArchSpec::parse(name).expect("listed names parse");
            let canonical = spec.canonical_name();
            ArchInfo {
                alias_of: (canonical != *name).then(|| canonical.clone()),
                name: (*name).to_string(),
                description: spec.description(),
                params: spec.param_count(crate::DEFAULT_CLASSES),
                macs: spec.macs_per_image(crate::DEFAULT_CLASSES),
            }
        })
        .collect()
}

fn unknown(name: &str, reason: impl Into<String>) -> ArchError {
    ArchError::UnknownArchitecture {
        name: name.to_string(),
        reason: reason.into(),
        valid: NAME_PATTERNS.join("; "),
    }
}

fn parse_num(name: &str, s: &str, what: &str) -> Result<usize, ArchError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown(
            name,
            format!("{what} `{s}` is not a positive number"),
        ));
    }
    let n: usize = s
        .parse()
        .map_err(|_| unknown(name, format!("{what} `{s}` is too large")))?;
    if n == 0 {
        return Err(unknown(name, format!("{what} must be at least 1")));
    }
    Ok(n)
}

/// Parses "{C}x{W}d" into (C, W).
fn parse_cxwd(name: &str, s: &str) -> Result<(usize, usize), ArchError> {
    let body = s
        .strip_suffix('d')
        .ok_or_else(|| unknown(name, format!("`{s}` should look like `2x64d`")))?;
    let (c, w) = body
        .split_once('x')
        .ok_or_else(|| unknown(name, format!("`{s}` should look like `2x64d`")))?;
    Ok((
        parse_num(name, c, "branch count / cardinality")?,
        parse_num(name, w, "width")?,
    ))
}

fn check_depth(name: &str, depth: usize, step: usize, offset: usize) -> Result<(), ArchError> {
    if depth < step + offset || !(depth - offset).is_multiple_of(step) {
        return Err(unknown(
            name,
            format!("depth {depth} is not of the form {step}n+{offset} with n >= 1"),
        ));
    }
    Ok(())
}

impl ArchSpec {
    /// Parses an architecture name (case-insensitive), including the original project's
    /// aliases `shake26`, `wrn` and `resnext`. Unknown names give an error listing the
    /// valid names and patterns.
    pub fn parse(name: &str) -> Result<ArchSpec, ArchError> {
        let lower = name.trim().to_ascii_lowercase();
        let n = lower.as_str();
        match n {
            "shake26" => {
                return Ok(ArchSpec::ShakeShake {
                    depth: 26,
                    width: 64,
                });
            }
            "wrn" => {
                return Ok(ArchSpec::WideResNet {
                    depth: 28,
                    widen: 10,
                });
            }
            "resnext" => {
                return Ok(ArchSpec::ResNeXt {
                    depth: 29,
                    cardinality: 8,
                    width: 64,
                });
            }
            _ => {}
        }
        if let Some(rest) = n.strip_prefix("resnext") {
            let (d, cw) = rest
                .split_once('-')
                .ok_or_else(|| unknown(name, "expected resnext{depth}-{C}x{W}d"))?;
            let depth = parse_num(name, d, "depth")?;
            check_depth(name, depth, 9, 2)?;
            let (cardinality, width) = parse_cxwd(name, cw)?;
            return Ok(ArchSpec::ResNeXt {
                depth,
                cardinality,
                width,
            });
        }
        if let Some(rest) = n.strip_prefix("resnet") {
            let depth = parse_num(name, rest, "depth")?;
            check_depth(name, depth, 6, 2)?;
            return Ok(ArchSpec::ResNet { depth });
        }
        if let Some(rest) = n.strip_prefix("plane") {
            let depth = parse_num(name, rest, "depth")?;
            if plane_layers(depth).is_none() {
                return Err(unknown(
                    name,
                    format!("plain CNNs exist for depths 2, 4, 6, 8, 10, not {depth}"),
                ));
            }
            return Ok(ArchSpec::Plane { depth });
        }
        if let Some(rest) = n.strip_prefix("shake") {
            let (d, bw) = rest
                .split_once('-')
                .ok_or_else(|| unknown(name, "expected shake{depth}-2x{W}d"))?;
            let depth = parse_num(name, d, "depth")?;
            check_depth(name, depth, 6, 2)?;
            let (branches, width) = parse_cxwd(name, bw)?;
            if branches != 2 {
                return Err(unknown(
                    name,
                    format!("Shake-Shake has 2 branches, not {branches}"),
                ));
            }
            return Ok(ArchSpec::ShakeShake { depth, width });
        }
        if let Some(rest) = n.strip_prefix("wrn") {
            let (d, k) = rest
                .split_once('-')
                .ok_or_else(|| unknown(name, "expected wrn{depth}-{k}"))?;
            let depth = parse_num(name, d, "depth")?;
            check_depth(name, depth, 6, 4)?;
            let widen = parse_num(name, k, "widening factor")?;
            return Ok(ArchSpec::WideResNet { depth, widen });
        }
        Err(unknown(name, "no known family matches"))
    }

    /// The canonical name ("shake26-2x64d" for the alias "shake26").
    pub fn canonical_name(&self) -> String {
        match *self {
            ArchSpec::ResNet { depth } => format!("resnet{depth}"),
            ArchSpec::Plane { depth } => format!("plane{depth}"),
            ArchSpec::ShakeShake { depth, width } => format!("shake{depth}-2x{width}d"),
            ArchSpec::WideResNet { depth, widen } => format!("wrn{depth}-{widen}"),
            ArchSpec::ResNeXt {
                depth,
                cardinality,
                width,
            } => format!("resnext{depth}-{cardinality}x{width}d"),
        }
    }

    /// One-line description.
    pub fn description(&self) -> String {
        match *self {
            ArchSpec::ResNet { depth } => format!(
                "CIFAR ResNet, {} basic blocks per stage, 16/32/64 channels",
                (depth - 2) / 6
            ),
            ArchSpec::Plane { depth } => {
                let layers = plane_layers(depth).unwrap_or(&[]);
                let s: Vec<String> = layers
                    .iter()
                    .map(|l| match l {
                        PlaneLayer::Conv(c) => format!("Conv{c}"),
                        PlaneLayer::MaxPool => "MaxPool".to_string(),
                        PlaneLayer::Fc(f) => format!("FC{f}"),
                    })
                    .collect();
                format!("plain CNN (TAKD CIFAR-10 book): {}", s.join("-"))
            }
            ArchSpec::ShakeShake { depth, width } => format!(
                "Shake-Shake, 2 branches, {} blocks per stage, {}/{}/{} channels",
                (depth - 2) / 6,
                width,
                2 * width,
                4 * width
            ),
            ArchSpec::WideResNet { depth, widen } => format!(
                "pre-activation Wide ResNet, {} blocks per stage, widening {}",
                (depth - 4) / 6,
                widen
            ),
            ArchSpec::ResNeXt {
                depth,
                cardinality,
                width,
            } => format!(
                "ResNeXt, {} bottleneck blocks per stage, cardinality {}, base width {}",
                (depth - 2) / 9,
                cardinality,
                width
            ),
        }
    }

    /// Trainable parameters (conv/linear weights and biases, BN weight and bias).
    pub fn param_count(&self, classes: usize) -> u64 {
        self.count(classes).0
    }

    /// Multiply-adds of the convolutions and linear layers for one 3x32x32 image
    /// (BatchNorm, ReLU, pooling and additions are not counted).
    pub fn macs_per_image(&self, classes: usize) -> u64 {
        self.count(classes).1
    }

    /// (parameters, MACs) by walking the definition.
    fn count(&self, classes: usize) -> (u64, u64) {
        let mut c = Counter::default();
        match *self {
            ArchSpec::ResNet { depth } => {
                let n = (depth - 2) / 6;
                let mut hw = 32;
                c.conv(3, 16, 3, 1, false, hw);
                c.bn(16);
                let mut inc = 16;
                for (stage, &ch) in [16usize, 32, 64].iter().enumerate() {
                    for b in 0..n {
                        if b == 0 && stage > 0 {
                            hw /= 2;
                        }
                        c.conv(inc, ch, 3, 1, false, hw);
                        c.bn(ch);
                        c.conv(ch, ch, 3, 1, false, hw);
                        c.bn(ch);
                        if inc != ch {
                            c.conv(inc, ch, 1, 1, false, hw);
                            c.bn(ch);
                        }
                        inc = ch;
                    }
                }
                c.linear(64, classes);
            }
            ArchSpec::Plane { depth } => {
                let layers = plane_layers(depth).unwrap_or(&[]);
                let mut hw = 32;
                let mut ch = 3;
                let last_fc = layers
                    .iter()
                    .rposition(|l| matches!(l, PlaneLayer::Fc(_)))
                    .unwrap_or(0);
                let mut features = 0;
                for (i, l) in layers.iter().enumerate() {
                    match *l {
                        PlaneLayer::Conv(out) => {
                            c.conv(ch, out, 3, 1, true, hw);
                            c.bn(out);
                            ch = out;
                            features = hw * hw * ch;
                        }
                        PlaneLayer::MaxPool => {
                            hw /= 2;
                            features = hw * hw * ch;
                        }
                        PlaneLayer::Fc(out) => {
                            let out = if i == last_fc { classes } else { out };
                            c.linear(features, out);
                            features = out;
                        }
                    }
                }
            }
            ArchSpec::ShakeShake { depth, width } => {
                let n = (depth - 2) / 6;
                let mut hw = 32;
                c.conv(3, width, 3, 1, false, hw);
                c.bn(width);
                let mut inc = width;
                for (stage, &ch) in [width, 2 * width, 4 * width].iter().enumerate() {
                    for b in 0..n {
                        if b == 0 && stage > 0 {
                            hw = hw.div_ceil(2);
                        }
                        for _ in 0..2 {
                            c.conv(inc, ch, 3, 1, false, hw);
                            c.bn(ch);
                            c.conv(ch, ch, 3, 1, false, hw);
                            c.bn(ch);
                        }
                        if inc != ch {
                            c.conv(inc, inc, 1, 1, false, hw);
                            c.conv(inc, inc, 1, 1, false, hw);
                            c.bn(2 * inc);
                        }
                        inc = ch;
                    }
                }
                c.linear(inc, classes);
            }
            ArchSpec::WideResNet { depth, widen } => {
                let n = (depth - 4) / 6;
                let mut hw = 32;
                c.conv(3, 16, 3, 1, false, hw);
                let mut inc = 16;
                for (stage, &ch) in [16 * widen, 32 * widen, 64 * widen].iter().enumerate() {
                    for b in 0..n {
                        if b == 0 && stage > 0 {
                            hw /= 2;
                        }
                        c.bn(inc);
                        c.conv(inc, ch, 3, 1, false, hw);
                        c.bn(ch);
                        c.conv(ch, ch, 3, 1, false, hw);
                        if inc != ch {
                            c.conv(inc, ch, 1, 1, false, hw);
                        }
                        inc = ch;
                    }
                }
                c.bn(inc);
                c.linear(inc, classes);
            }
            ArchSpec::ResNeXt {
                depth,
                cardinality,
                width,
            } => {
                let n = (depth - 2) / 9;
                let mut hw = 32;
                c.conv(3, width, 3, 1, false, hw);
                c.bn(width);
                let mut inc = width;
                for (stage, &ch) in [4 * width, 8 * width, 16 * width].iter().enumerate() {
                    for b in 0..n {
                        let in_hw = hw;
                        if b == 0 && stage > 0 {
                            hw /= 2;
                        }
                        let bc = cardinality * ch / 4;
                        c.conv(inc, bc, 1, 1, false, in_hw);
                        c.bn(bc);
                        c.conv(bc, bc, 3, cardinality, false, hw);
                        c.bn(bc);
                        c.conv(bc, ch, 1, 1, false, hw);
                        c.bn(ch);
                        if inc != ch {
                            c.conv(inc, ch, 1, 1, false, hw);
                            c.bn(ch);
                        }
                        inc = ch;
                    }
                }
                c.linear(inc, classes);
            }
        }
        (c.params, c.macs)
    }
}

#[derive(Default)]
struct Counter {
    params: u64,
    macs: u64,
}

impl Counter {
    /// A conv whose output is `out_hw` x `out_hw`.
    fn conv(&mut self, inc: usize, out: usize, k: usize, groups: usize, bias: bool, out_hw: usize) {
        let w = (out * (inc / groups) * k * k) as u64;
        self.params += w + if bias { out as u64 } else { 0 };
        self.macs += w * (out_hw * out_hw) as u64;
    }
    fn bn(&mut self, c: usize) {
        self.params += 2 * c as u64;
    }
    fn linear(&mut self, inp: usize, out: usize) {
        self.params += (inp * out + out) as u64;
        self.macs += (inp * out) as u64;
    }
}

impl fmt::Display for ArchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical_name())
    }
}

impl FromStr for ArchSpec {
    type Err = ArchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ArchSpec::parse(s)
    }
}
