//! [`Network`]: any architecture of the registry, built by name, with PyTorch state_dict
//! names, seeded initialisation, train/eval forward passes and weight files.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use candle_core::{DType, Device, Tensor, Var};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{ArchError, ShapeMismatch};
use crate::layers::{BuildState, Ctx, Entry, Slot};
use crate::models::{Input, Model};
use crate::registry::ArchSpec;
use crate::weights::read_weights;

type Result<T> = std::result::Result<T, ArchError>;

/// A state dict: PyTorch names and tensors, in state_dict order.
pub type StateDict = Vec<(String, Tensor)>;

/// Forward-pass mode.
pub enum Phase<'a> {
    /// Evaluation: BatchNorm uses running statistics, Shake-Shake mixes its branches
    /// 0.5/0.5, and no autograd graph is built (parameters are used detached). Use it for
    /// evaluation and for the teacher in distillation.
    Eval,
    /// Training: BatchNorm uses batch statistics and updates its running statistics
    /// (momentum 0.1, unbiased variance, `num_batches_tracked += 1`); Shake-Shake draws
    /// one alpha (forward) and one beta (backward) per image from `rng` (per block, in
    /// block order: N alphas then N betas).
    Train {
        /// Source of the Shake-Shake coefficients.
        rng: &'a mut dyn RngCore,
    },
}

/// A network of the registry. All methods take `&self`; running statistics use interior
/// mutability, so a network can be shared between threads.
pub struct Network {
    spec: ArchSpec,
    classes: usize,
    device: Device,
    dtype: DType,
    body: Box<dyn Model>,
    entries: Vec<Entry>,
}

/// Strips DataParallel's `module.` prefix.
pub(crate) fn strip_module_prefix(name: &str) -> &str {
    name.strip_prefix("module.").unwrap_or(name)
}

fn is_counter_name(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

impl Network {
    /// Builds `arch` (any name [`ArchSpec::parse`] accepts) with `classes` outputs on
    /// `device` in `dtype` (F32, or F64 for exact gradient checks), initialised as the
    /// original code does from a ChaCha8 RNG seeded with `seed`.
    pub fn new(
        arch: &str,
        classes: usize,
        device: &Device,
        dtype: DType,
        seed: u64,
    ) -> Result<Network> {
        Network::from_spec(&ArchSpec::parse(arch)?, classes, device, dtype, seed)
    }

    /// Builds the network described by `spec`; see [`Network::new`].
    pub fn from_spec(
        spec: &ArchSpec,
        classes: usize,
        device: &Device,
        dtype: DType,
        seed: u64,
    ) -> Result<Network> {
        if classes == 0 {
            return Err(ArchError::InvalidConfig(
                "the number of classes must be at least 1".into(),
            ));
        }
        if !matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
            return Err(ArchError::InvalidConfig(format!(
                "networks need a floating-point dtype, got {dtype:?}"
            )));
        }
        let family = spec.family;
        let mut state =
            BuildState::new(device, dtype, ChaCha8Rng::seed_from_u64(seed), family.init);
        let body = (family.build)(state.root(), &spec.args, classes)?;
        Ok(Network {
            spec: *spec,
            classes,
            device: device.clone(),
            dtype,
            body,
            entries: state.into_entries(),
        })
    }

    /// The parsed architecture.
    pub fn spec(&self) -> &ArchSpec {
        &self.spec
    }

    /// Canonical architecture name (e.g. `shake26-2x64d`).
    pub fn arch_name(&self) -> String {
        self.spec.canonical_name()
    }

    /// Number of outputs.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Device of the parameters.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Dtype of the parameters and of the expected input.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of trainable parameters, counted on the built tensors.
    pub fn num_parameters(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| matches!(e.slot, Slot::Param(_)))
            .map(|e| e.shape.iter().product::<usize>() as u64)
            .sum()
    }

    /// Multiply-adds per 3x32x32 image (convolutions and linear layers).
    pub fn macs_per_image(&self) -> u64 {
        self.spec.macs_per_image(self.classes)
    }

    /// Logits [N, classes] for a batch `x` of shape [N, 3, H, W] (the plain CNNs and other
    /// families with a fixed flatten or pooling window: 32x32) in the network's dtype and
    /// device.
    pub fn forward(&self, x: &Tensor, phase: Phase<'_>) -> Result<Tensor> {
        let dims = x.dims();
        let cifar32 = self.spec.family.input == Input::Cifar32;
        let ok = dims.len() == 4
            && dims[0] >= 1
            && dims[1] == 3
            && if cifar32 {
                dims[2] == 32 && dims[3] == 32
            } else {
                dims[2] >= 1 && dims[3] >= 1
            };
        if !ok {
            return Err(ArchError::InputShape {
                arch: self.arch_name(),
                found: dims.to_vec(),
                expected: if cifar32 {
                    "[N, 3, 32, 32]".into()
                } else {
                    "[N, 3, H, W]".into()
                },
            });
        }
        if x.dtype() != self.dtype {
            return Err(ArchError::InvalidConfig(format!(
                "input dtype {:?} differs from the network's {:?}; convert the batch first",
                x.dtype(),
                self.dtype
            )));
        }
        let mut ctx = match phase {
            Phase::Eval => Ctx {
                train: false,
                rng: None,
            },
            Phase::Train { rng } => Ctx {
                train: true,
                rng: Some(rng),
            },
        };
        self.body.forward(x, &mut ctx)
    }

    /// `forward(x, Phase::Eval)`, run on the compute pool ([`crate::on_compute_pool`]).
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        crate::on_compute_pool(|| self.forward(x, Phase::Eval))
    }

    /// Trainable parameters (weights, biases, BN affine; never running statistics) in
    /// PyTorch state_dict order. The `Var`s share storage with the network, so an
    /// optimiser's `var.set(..)` updates the model.
    pub fn trainable_parameters(&self) -> Vec<(String, Var)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.slot {
                Slot::Param(v) => Some((e.name.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// Names and shapes of the full state (as PyTorch's `state_dict`), in order.
    pub fn state_names_and_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), e.shape.clone()))
            .collect()
    }

    /// A snapshot of the full state: parameters, running statistics and
    /// `num_batches_tracked` (I64 scalar), in PyTorch state_dict order. The tensors are
    /// copies, so later training does not change them.
    pub fn state_dict(&self) -> Result<StateDict> {
        self.entries
            .iter()
            .map(|e| {
                let t = match &e.slot {
                    Slot::Param(v) => v.as_detached_tensor().copy()?,
                    Slot::Buffer(b) => b
                        .read()
                        .map_err(|_| {
                            ArchError::InvalidConfig(format!("lock of `{}` poisoned", e.name))
                        })?
                        .copy()?,
                    Slot::Counter(c) => Tensor::new(c.load(Ordering::Relaxed), &self.device)?,
                };
                Ok((e.name.clone(), t))
            })
            .collect()
    }

    /// Loads a state dict, all or nothing. Names may carry DataParallel's `module.`
    /// prefix; `num_batches_tracked` may be absent (then 0); tensors are converted to the
    /// network's dtype and device. Missing, unexpected or mis-shaped tensors give
    /// [`ArchError::StateDictMismatch`] listing them all, and nothing is changed.
    pub fn load_state_dict(
        &self,
        tensors: impl IntoIterator<Item = (String, Tensor)>,
    ) -> Result<()> {
        self.load_state_dict_from(tensors, "state dict")
    }

    fn load_state_dict_from(
        &self,
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        source_desc: &str,
    ) -> Result<()> {
        let mut given: HashMap<String, Tensor> = HashMap::new();
        for (name, t) in tensors {
            given.insert(strip_module_prefix(&name).to_string(), t);
        }
        let known: HashSet<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        let mut missing = Vec::new();
        let mut mis_shaped = Vec::new();
        for e in &self.entries {
            match given.get(&e.name) {
                None if is_counter_name(&e.name) => {}
                None => missing.push(e.name.clone()),
                Some(t) => {
                    // PyTorch < 1.? wrote num_batches_tracked as shape [] ; accept [1] too.
                    let shape_ok = t.dims() == e.shape.as_slice()
                        || (matches!(e.slot, Slot::Counter(_)) && t.elem_count() == 1);
                    if !shape_ok {
                        mis_shaped.push(ShapeMismatch {
                            name: e.name.clone(),
                            expected: e.shape.clone(),
                            found: t.dims().to_vec(),
                        });
                    }
                }
            }
        }
        let mut unexpected: Vec<String> = given
            .keys()
            .filter(|k| !known.contains(k.as_str()))
            .cloned()
            .collect();
        unexpected.sort();
        if !missing.is_empty() || !unexpected.is_empty() || !mis_shaped.is_empty() {
            return Err(ArchError::StateDictMismatch {
                source_desc: source_desc.to_string(),
                arch: self.arch_name(),
                missing,
                unexpected,
                mis_shaped,
            });
        }
        // Every value finite, every BatchNorm running variance ≥ 0 (var + eps > 0), before
        // anything is assigned: damaged weights are refused by name, not run.
        for e in &self.entries {
            if let (Slot::Param(_) | Slot::Buffer(_), Some(t)) = (&e.slot, given.get(&e.name)) {
                check_sound(t, &e.name, source_desc)?;
            }
        }
        // Convert everything first, then assign: no partial loads on conversion errors.
        let mut converted: Vec<(&Entry, Option<Tensor>, i64)> = Vec::new();
        for e in &self.entries {
            match (&e.slot, given.get(&e.name)) {
                (Slot::Counter(_), None) => converted.push((e, None, 0)),
                (Slot::Counter(_), Some(t)) => {
                    let v = t
                        .flatten_all()?
                        .to_dtype(DType::F64)?
                        .to_device(&Device::Cpu)?
                        .to_vec1::<f64>()?;
                    converted.push((e, None, v[0] as i64));
                }
                (_, Some(t)) => {
                    let t = t
                        .to_dtype(self.dtype)?
                        .to_device(&self.device)?
                        .contiguous()?;
                    converted.push((e, Some(t), 0));
                }
                (_, None) => unreachable!("missing names were reported above"),
            }
        }
        for (e, t, count) in converted {
            match (&e.slot, t) {
                (Slot::Param(v), Some(t)) => v.set(&t)?,
                (Slot::Buffer(b), Some(t)) => {
                    *b.write().map_err(|_| {
                        ArchError::InvalidConfig(format!("lock of `{}` poisoned", e.name))
                    })? = t
                }
                (Slot::Counter(c), _) => c.store(count, Ordering::Relaxed),
                _ => {}
            }
        }
        Ok(())
    }

    /// Saves the full state as safetensors (PyTorch names, `num_batches_tracked` as I64),
    /// atomically: a temporary file in the target directory, then a rename. Metadata:
    /// `format` = `pt`, `arch`, `classes`.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let sd = self.state_dict()?;
        let sd: Vec<(String, Tensor)> = sd
            .into_iter()
            .map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        let metadata: HashMap<String, String> = [
            ("format".to_string(), "pt".to_string()),
            ("arch".to_string(), self.arch_name()),
            ("classes".to_string(), self.classes.to_string()),
        ]
        .into_iter()
        .collect();
        let sorted: Vec<(String, String)> = {
            let mut m: Vec<_> = metadata.clone().into_iter().collect();
            m.sort();
            m
        };
        let mut bytes =
            safetensors::serialize(sd.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
                .map_err(|e| ArchError::WeightsFormat {
                    path: path.to_path_buf(),
                    reason: format!("serialising safetensors failed: {e}"),
                })?;
        sort_metadata(&mut bytes, &sorted);
        write_atomic(path, &bytes)
    }

    /// Loads weights from a `.safetensors` file or a PyTorch checkpoint (zip format or the
    /// pre-1.6 legacy format; a bare state_dict or one under `model_state_dict`,
    /// `state_dict` or `model`). The format is recognised from the content.
    pub fn load_weights(&self, path: &Path) -> Result<()> {
        let sd = read_weights(path, &Device::Cpu)?;
        self.load_state_dict_from(sd, &format!("`{}`", path.display()))
    }
}

/// Refuses a tensor with a NaN or infinite value, or a BatchNorm `running_var` below 0.
fn check_sound(t: &Tensor, name: &str, source_desc: &str) -> Result<()> {
    let values = t
        .flatten_all()?
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .to_vec1::<f64>()?;
    let bad = |reason: String| ArchError::UnsoundWeights {
        source_desc: source_desc.to_string(),
        name: name.to_string(),
        reason,
    };
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        let count = values.iter().filter(|v| !v.is_finite()).count();
        return Err(bad(format!(
            "holds {count} NaN or infinite value(s) (the first, {v}, at flat index {i} of {})",
            values.len()
        )));
    }
    if name.ends_with("running_var")
        && let Some((i, v)) = values.iter().enumerate().find(|(_, v)| **v < 0.0)
    {
        return Err(bad(format!(
            "is a BatchNorm running variance with a negative value ({v} at index {i})"
        )));
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let io_err = |source| ArchError::Io {
        action: "writing",
        path: path.to_path_buf(),
        source,
    };
    // `.hkd-*.tmp` (what hkd-train tidies after a kill), 0666 minus the umask like any
    // other tool's output (tempfile's default 0600 would hide weights from lab mates)
    let mut tmp = tempfile::Builder::new()
        .prefix(".hkd-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(&dir)
        .map_err(io_err)?;
    tmp.write_all(bytes).map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// The safetensors crate writes the `__metadata__` map in `HashMap` order, so two saves of
/// the same weights could differ in their bytes (and in the recorded SHA-256). This
/// rewrites that map with its keys sorted: the same entries in the same number of bytes, so
/// no offset moves. `sorted` are the entries, sorted; they must be plain (letters, digits,
/// `-_.`), which hkd's metadata is; otherwise the bytes are left as they are.
fn sort_metadata(bytes: &mut [u8], sorted: &[(String, String)]) {
    let plain = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if !sorted.iter().all(|(k, v)| plain(k) && plain(v)) || bytes.len() < 8 {
        return;
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let Some(header) = bytes.get_mut(8..8 + n) else {
        return;
    };
    let entries: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("\"{k}\":\"{v}\""))
        .collect();
    let canonical = format!("{{{}}}", entries.join(","));
    let prefix = b"{\"__metadata__\":";
    let start = prefix.len();
    let end = start + canonical.len();
    if !header.starts_with(prefix) || header.len() < end {
        return;
    }
    let written = &header[start..end];
    // the same entries in some order: same bytes once both are sorted
    let mut a = written.to_vec();
    let mut b = canonical.as_bytes().to_vec();
    a.sort_unstable();
    b.sort_unstable();
    if a == b && written.first() == Some(&b'{') && written.last() == Some(&b'}') {
        header[start..end].copy_from_slice(canonical.as_bytes());
    }
}
