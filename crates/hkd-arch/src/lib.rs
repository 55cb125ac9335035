//! CIFAR networks of the HKD project (ResNet, plain CNNs, Shake-Shake, WRN, ResNeXt) and
//! of the knowledge-distillation benchmarks (RepDistiller's `resnet8x4`/`resnet32x4`, VGG
//! and MobileNetV2), PyTorch-exact, with PyTorch checkpoint loading.
//!
//! - [`ArchSpec`] / [`known_architectures`]: the registry (names, aliases, parameter
//!   counts, multiply-adds). Each family is one file in `src/models/`, listed in
//!   `src/models/mod.rs`.
//! - [`Network`]: a network built by name with seeded initialisation, train / eval
//!   forward passes ([`Phase`]), PyTorch state_dict names, safetensors save and loading
//!   of safetensors or PyTorch checkpoints (zip and pre-1.6 legacy formats).
//! - [`read_weights`]: any supported weights file as (name, tensor) pairs.
//! - [`device`] / [`configure_threads`]: the `--device` and `--threads` every binary
//!   shares.
//!
//! See `docs/architectures.md` in the repository for the user-facing description.
//!
//! The CPU kernels the layers run are the crate `hkd-kernels`; no `unsafe` here but the
//! one environment write of [`configure_threads`].
#![deny(unsafe_code)]

mod error;
pub mod layers;
mod models;
mod network;
mod registry;
pub mod runtime;
mod weights;

pub use error::{ArchError, ShapeMismatch};
pub use layers::{BN_EPS, BN_MOMENTUM, BatchNorm2d, shake_mix};
pub use network::{Network, Phase, StateDict};
pub use registry::{ArchInfo, ArchSpec, NAME_PATTERNS, known_architectures};
pub use runtime::{DeviceError, configure_threads, device, on_compute_pool};
pub use weights::{STATE_DICT_KEYS, WeightsFormat, detect_format, read_weights};

/// Number of classes of CIFAR-10, the default output width.
pub const DEFAULT_CLASSES: usize = 10;
