//! The network families, one file each, and the list of them (the `families!` line at
//! the end of this file).
//!
//! A family file holds everything about its networks: the name pattern it accepts and its
//! parsing, the canonical names and descriptions, the names listed by `hkd-train models`,
//! the initialisation scheme, and the modules (built through [`crate::layers::Builder`] in
//! PyTorch registration order, so that the state_dict names and their order are exactly
//! those of the original PyTorch definitions) with their forward pass. Parameter and
//! multiply-add counts are not written anywhere: the registry builds the network with a
//! counting builder and runs its forward pass (see `crate::layers::BuildState::counting`).
//!
//! To add a network: write `models/<family>.rs` with a `pub(crate) const FAMILY: Family`
//! and its model type (implementing [`Model`]), and add the file's name to `families!`
//! below. Nothing else changes; see `docs/architecture.md`, "To add a network". A file
//! whose network also exists under a second naming scheme (other names and parameter
//! names, other initialisation) declares that as a second `Family` constant beside
//! `FAMILY`, listed as `module::CONST` (`wrn::REPDISTILLER`).

use candle_core::Tensor;

use crate::error::ArchError;
use crate::layers::{Builder, Ctx, InitScheme};

type Result<T> = std::result::Result<T, ArchError>;

/// Numeric parameters of an architecture name (depth, widths, ...), in the order of
/// [`Family::params`]; unused slots are 0.
pub(crate) type Args = [usize; 3];

/// Which input sizes a family's networks take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// [N, 3, H, W] with any H, W >= 1.
    Any,
    /// [N, 3, 32, 32] only (a flatten or a fixed pooling window assumes CIFAR's size).
    Cifar32,
}

/// A built network: the forward pass of a family's top-level module.
pub(crate) trait Model: Send + Sync {
    /// Logits [N, classes] of a batch [N, 3, H, W] (checked by the caller against
    /// [`Family::input`]).
    fn forward(&self, x: &Tensor, ctx: &mut Ctx<'_>) -> Result<Tensor>;
}

/// Parses the trimmed, lower-case name: `None` if the name is not of this family,
/// `Some(Err(reason))` if it is but is invalid.
pub(crate) type ParseFn = fn(&str) -> Option<std::result::Result<Args, String>>;

/// Builds the network of `args` with `classes` outputs.
pub(crate) type BuildFn = fn(Builder<'_>, &Args, usize) -> Result<Box<dyn Model>>;

/// An architecture family: everything the registry and [`crate::Network`] need.
pub(crate) struct Family {
    /// Short identifier, e.g. `"resnet"` ([`crate::ArchSpec::family`]).
    pub id: &'static str,
    /// The name pattern for help texts and errors, e.g. `"resnet{6n+2} (resnet8, ...)"`.
    pub pattern: &'static str,
    /// Names of the numeric parameters ([`Args`]), e.g. `["depth"]`.
    pub params: &'static [&'static str],
    /// Canonical names listed by [`crate::known_architectures`].
    pub listed: &'static [&'static str],
    /// Short names: (alias, canonical name), listed after every family's names.
    pub aliases: &'static [(&'static str, &'static str)],
    /// Name parsing (aliases are resolved before).
    pub parse: ParseFn,
    /// The canonical name of parsed arguments (`parse(canonical_name(a)) == Some(Ok(a))`).
    pub canonical_name: fn(&Args) -> String,
    /// A one-line description.
    pub description: fn(&Args) -> String,
    /// Accepted input sizes.
    pub input: Input,
    /// Weight initialisation of the original code.
    pub init: InitScheme,
    /// The network.
    pub build: BuildFn,
}

/// Declares the family modules and lists them in [`FAMILIES`], in listing order: a
/// module's name stands for its `FAMILY`; `module::CONST` lists a further `Family` of a
/// module declared before it.
macro_rules! families {
    (@list [$($listed:tt)*]) => {
        /// Every family, in listing order.
        pub(crate) const FAMILIES: &[&Family] = &[$($listed)*];
    };
    (@list [$($listed:tt)*] $module:ident :: $family:ident $(, $($rest:tt)*)?) => {
        families!(@list [$($listed)* &$module::$family,] $($($rest)*)?);
    };
    (@list [$($listed:tt)*] $module:ident $(, $($rest:tt)*)?) => {
        pub(crate) mod $module;
        families!(@list [$($listed)* &$module::FAMILY,] $($($rest)*)?);
    };
    ($($entries:tt)*) => {
        families!(@list [] $($entries)*);
    };
}

families![
    resnet,
    plane,
    shake,
    wrn,
    resnext,
    resnet_x4,
    wrn::REPDISTILLER,
    vgg,
    mobilenetv2,
    shufflenetv2,
];
