//! The model registry: architecture names, their parameter counts and multiply-adds.
//!
//! The families themselves live in `models/`, one file each, listed in `models/mod.rs`.
//! This module parses names against them and counts parameters and multiply-adds by
//! building a network with a counting builder (no weight tensors) and running its forward
//! pass on one 3x32x32 image: the counts come from the same code as the networks, so
//! listing even the largest networks is quick. The test suite checks them against the
//! networks as built and against PyTorch's counts.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};

use crate::error::ArchError;
use crate::layers::{BuildState, Ctx};
use crate::models::{Args, FAMILIES, Family};

/// Name patterns accepted by [`ArchSpec::parse`], for help texts and errors (one per
/// family).
pub const NAME_PATTERNS: &[&str] = &patterns::<{ FAMILIES.len() }>();

const fn patterns<const N: usize>() -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = FAMILIES[i].pattern;
        i += 1;
    }
    out
}

/// A parsed architecture name: a family and its numeric parameters (depth, widths, ...).
///
/// Two specs are equal when they name the same network (`shake26` and `shake26-2x64d`
/// parse to equal specs).
#[derive(Clone, Copy)]
pub struct ArchSpec {
    pub(crate) family: &'static Family,
    pub(crate) args: Args,
}

impl PartialEq for ArchSpec {
    fn eq(&self, other: &Self) -> bool {
        self.family.id == other.family.id && self.args == other.args
    }
}

impl Eq for ArchSpec {}

impl Hash for ArchSpec {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.family.id.hash(state);
        self.args.hash(state);
    }
}

impl fmt::Debug for ArchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ArchSpec");
        d.field("family", &self.family.id);
        for (name, value) in self.family.params.iter().zip(&self.args) {
            d.field(name, value);
        }
        d.finish()
    }
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

/// Every listed architecture with parameters and MACs for 10 classes: each family's
/// canonical names (family by family), then the short aliases.
pub fn known_architectures() -> Vec<ArchInfo> {
    let canonical = FAMILIES.iter().flat_map(|f| f.listed.iter().copied());
    let aliases = FAMILIES
        .iter()
        .flat_map(|f| f.aliases.iter().map(|(a, _)| *a));
    canonical
        .chain(aliases)
        .map(|name| {
            let spec = ArchSpec::parse(name).expect("listed names parse");
            let canonical = spec.canonical_name();
            let (params, macs) = spec.counts(crate::DEFAULT_CLASSES);
            ArchInfo {
                alias_of: (canonical != name).then(|| canonical.clone()),
                name: name.to_string(),
                description: spec.description(),
                params,
                macs,
            }
        })
        .collect()
}

// ---- helpers for the families' name parsers ----------------------------------------------

/// Parses a positive decimal number, or says why `s` is not one (`what` names it).
pub(crate) fn parse_num(s: &str, what: &str) -> Result<usize, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} `{s}` is not a positive number"));
    }
    let n: usize = s
        .parse()
        .map_err(|_| format!("{what} `{s}` is too large"))?;
    if n == 0 {
        return Err(format!("{what} must be at least 1"));
    }
    Ok(n)
}

/// Parses "{C}x{W}d" into (C, W).
pub(crate) fn parse_cxwd(s: &str) -> Result<(usize, usize), String> {
    let body = s
        .strip_suffix('d')
        .ok_or_else(|| format!("`{s}` should look like `2x64d`"))?;
    let (c, w) = body
        .split_once('x')
        .ok_or_else(|| format!("`{s}` should look like `2x64d`"))?;
    Ok((
        parse_num(c, "branch count / cardinality")?,
        parse_num(w, "width")?,
    ))
}

/// Checks that `depth` is `step`·n + `offset` with n >= 1.
pub(crate) fn check_depth(depth: usize, step: usize, offset: usize) -> Result<(), String> {
    if depth < step + offset || !(depth - offset).is_multiple_of(step) {
        return Err(format!(
            "depth {depth} is not of the form {step}n+{offset} with n >= 1"
        ));
    }
    Ok(())
}

impl ArchSpec {
    /// Parses an architecture name (case-insensitive, surrounding blanks ignored),
    /// including the short aliases (`shake26`, `wrn`, `resnext`). Unknown names give an
    /// error listing the valid names and patterns.
    pub fn parse(name: &str) -> Result<ArchSpec, ArchError> {
        let lower = name.trim().to_ascii_lowercase();
        let unknown = |reason: String| ArchError::UnknownArchitecture {
            name: name.to_string(),
            reason,
            valid: NAME_PATTERNS.join("; "),
        };
        let resolved = FAMILIES
            .iter()
            .flat_map(|f| f.aliases.iter())
            .find(|(alias, _)| *alias == lower)
            .map_or(lower.as_str(), |(_, canonical)| *canonical);
        let mut reasons = Vec::new();
        for family in FAMILIES {
            match (family.parse)(resolved) {
                Some(Ok(args)) => return Ok(ArchSpec { family, args }),
                Some(Err(reason)) => reasons.push(reason),
                None => {}
            }
        }
        Err(unknown(if reasons.is_empty() {
            "no known family matches".to_string()
        } else {
            reasons.join("; or ")
        }))
    }

    /// The family's short identifier (`resnet`, `plane`, `shake`, `wrn`, `resnext`,
    /// ...).
    pub fn family(&self) -> &'static str {
        self.family.id
    }

    /// A numeric parameter of the name by the family's name for it (`depth`, `width`,
    /// `widen`, `cardinality`, ...), `None` if the family has no such parameter.
    pub fn param(&self, name: &str) -> Option<usize> {
        let i = self.family.params.iter().position(|p| *p == name)?;
        Some(self.args[i])
    }

    /// The canonical name ("shake26-2x64d" for the alias "shake26").
    pub fn canonical_name(&self) -> String {
        (self.family.canonical_name)(&self.args)
    }

    /// One-line description.
    pub fn description(&self) -> String {
        (self.family.description)(&self.args)
    }

    /// Trainable parameters (conv/linear weights and biases, BN weight and bias).
    pub fn param_count(&self, classes: usize) -> u64 {
        self.counts(classes).0
    }

    /// Multiply-adds of the convolutions and linear layers for one 3x32x32 image
    /// (BatchNorm, ReLU, pooling and additions are not counted).
    pub fn macs_per_image(&self, classes: usize) -> u64 {
        self.counts(classes).1
    }

    /// (parameters, multiply-adds per 3x32x32 image): the network built by a counting
    /// builder (no weight tensors) and its evaluation forward pass on one image.
    pub(crate) fn counts(&self, classes: usize) -> (u64, u64) {
        let mut state = BuildState::counting(self.family.init);
        if let Err(e) = self.count_walk(&mut state, classes) {
            panic!("counting {}: {e}", self.canonical_name());
        }
        (state.param_count(), state.macs())
    }

    fn count_walk(&self, state: &mut BuildState, classes: usize) -> Result<(), ArchError> {
        let model = (self.family.build)(state.root(), &self.args, classes)?;
        let x = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu)?;
        let mut ctx = Ctx {
            train: false,
            rng: None,
        };
        model.forward(&x, &mut ctx)?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listed name and alias belongs to exactly one family, and canonical names
    /// parse back to the same spec.
    #[test]
    fn every_listed_name_has_exactly_one_family() {
        assert_eq!(NAME_PATTERNS.len(), FAMILIES.len());
        for (i, a) in FAMILIES.iter().enumerate() {
            assert!(
                FAMILIES[i + 1..].iter().all(|b| b.id != a.id),
                "family id {} twice",
                a.id
            );
            assert!(!a.listed.is_empty() && !a.pattern.is_empty(), "{}", a.id);
            for name in a.listed {
                let claims: Vec<&str> = FAMILIES
                    .iter()
                    .filter(|f| matches!((f.parse)(name), Some(Ok(_))))
                    .map(|f| f.id)
                    .collect();
                assert_eq!(claims, [a.id], "{name}");
                let spec = ArchSpec::parse(name).unwrap();
                assert_eq!(spec.canonical_name(), *name);
                assert_eq!(ArchSpec::parse(&spec.canonical_name()).unwrap(), spec);
            }
            for (alias, canonical) in a.aliases {
                assert!(
                    FAMILIES
                        .iter()
                        .all(|f| (f.parse)(alias).is_none_or(|r| r.is_err()))
                );
                assert_eq!(ArchSpec::parse(alias).unwrap().canonical_name(), *canonical);
                assert!(a.listed.contains(canonical), "{alias}");
            }
        }
    }
}
