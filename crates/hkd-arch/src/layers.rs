//! Building blocks: a parameter builder in the style of candle-nn's `VarBuilder` that
//! records PyTorch state_dict names in order and initialises weights from a seeded ChaCha
//! RNG, and the small layers (conv, BatchNorm, linear) the networks are made of.
//!
//! Layers are made as in candle-nn, `conv2d(in, out, k, Conv2dConfig { stride, padding,
//! ..Default::default() }, vb.pp("conv1"))`, and implement [`candle_nn::ModuleT`]
//! (`forward_t(x, train)`). Each is a small struct, so faster kernels can replace a layer's
//! internals without touching the networks; the CPU kernels of [`hkd_kernels`] are
//! what they use.
//!
//! A *counting* build (`BuildState::counting`) makes the same layers without their
//! convolution and linear weights: its forward pass returns zeros of the right shapes and
//! adds up the multiply-adds, so the registry counts parameters and multiply-adds of any
//! network by building and running it, without a second description of the network.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use candle_core::{DType, Device, ModuleT, Tensor, Var};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::ArchError;
use hkd_kernels as kernels;

type Result<T> = std::result::Result<T, ArchError>;

/// BatchNorm epsilon (PyTorch default).
pub const BN_EPS: f64 = 1e-5;
/// BatchNorm running-stat momentum (PyTorch default).
pub const BN_MOMENTUM: f64 = 0.1;

/// Forward-pass context: training or evaluation, and the RNG for stochastic layers.
pub(crate) struct Ctx<'a> {
    /// Training mode: batch statistics, autograd graph, shake-shake noise.
    pub train: bool,
    /// RNG for shake-shake alpha/beta (present in training).
    pub rng: Option<&'a mut dyn RngCore>,
}

/// What a state_dict entry refers to.
#[derive(Clone)]
pub(crate) enum Slot {
    /// A trainable parameter.
    Param(Var),
    /// A floating-point buffer (BN running mean / var).
    Buffer(Arc<RwLock<Tensor>>),
    /// BN `num_batches_tracked` (int64 scalar).
    Counter(Arc<AtomicI64>),
}

/// One state_dict entry: PyTorch name, what it refers to, its shape.
#[derive(Clone)]
pub(crate) struct Entry {
    pub name: String,
    pub slot: Slot,
    pub shape: Vec<usize>,
}

/// How convolution weights are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConvInit {
    /// `kaiming_normal_(mode='fan_out')`, i.e. N(0, 2/(out·k·k)) (ResNet, Shake-Shake,
    /// ResNeXt; RepDistiller's `normal_(0, sqrt(2/n))` with n = k·k·out is the same), bias 0.
    KaimingNormalFanOut,
    /// `kaiming_normal_(mode='fan_in')` (WRN), bias 0.
    KaimingNormalFanIn,
    /// PyTorch's default `Conv2d` init: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    /// (the plain CNNs, which keep PyTorch's defaults).
    TorchDefault,
}

/// How linear layers are initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LinearInit {
    /// PyTorch's default: weight and bias U(-1/sqrt(in), 1/sqrt(in)).
    TorchDefault,
    /// Weight as PyTorch's default, bias 0 (hysts' models).
    ZeroBias,
    /// Weight N(0, std²), bias 0 (RepDistiller's VGG and MobileNetV2: std 0.01).
    Normal {
        /// Standard deviation of the weights.
        std: f64,
    },
}

/// Initialisation of one architecture family, as in the original code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct InitScheme {
    pub conv: ConvInit,
    /// BN weight U(0,1) (WRN) instead of 1.
    pub bn_weight_uniform: bool,
    pub linear: LinearInit,
}

/// The state shared by every [`Builder`] of one network: the entries made so far, the RNG,
/// where and how tensors are made.
pub(crate) struct BuildState {
    entries: Vec<Entry>,
    rng: ChaCha8Rng,
    device: Device,
    dtype: DType,
    init: InitScheme,
    /// Trainable parameters declared so far (also those a counting build does not make).
    params: u64,
    /// Counting builds: the multiply-adds of the forward passes so far.
    macs: Option<Arc<AtomicU64>>,
}

impl BuildState {
    /// A real build: tensors on `device` in `dtype`, initialised from `rng` by `init`.
    pub fn new(device: &Device, dtype: DType, rng: ChaCha8Rng, init: InitScheme) -> Self {
        BuildState {
            entries: Vec::new(),
            rng,
            device: device.clone(),
            dtype,
            init,
            params: 0,
            macs: None,
        }
    }

    /// A counting build (f32 on the CPU): convolution and linear layers get no weights,
    /// and their forward passes count multiply-adds and return zeros of the right shape.
    pub fn counting(init: InitScheme) -> Self {
        BuildState {
            macs: Some(Arc::new(AtomicU64::new(0))),
            ..BuildState::new(&Device::Cpu, DType::F32, ChaCha8Rng::seed_from_u64(0), init)
        }
    }

    /// The builder of the top-level module (empty name prefix).
    pub fn root(&mut self) -> Builder<'_> {
        Builder {
            state: self,
            prefix: String::new(),
        }
    }

    /// Trainable parameters declared by the layers built so far.
    pub fn param_count(&self) -> u64 {
        self.params
    }

    /// Multiply-adds counted by the forward passes of a counting build (0 otherwise).
    pub fn macs(&self) -> u64 {
        self.macs.as_ref().map_or(0, |m| m.load(Ordering::Relaxed))
    }

    /// The state_dict entries, in PyTorch order.
    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
}

/// Makes parameters under a dotted PyTorch name prefix, like candle-nn's `VarBuilder`:
/// `vb.pp("layer1").pp(0)` is the builder of the submodule `layer1.0`. Parameters are
/// drawn from the shared RNG in the order the layers are made, which is PyTorch's
/// registration order in every family.
pub(crate) struct Builder<'a> {
    state: &'a mut BuildState,
    prefix: String,
}

impl Builder<'_> {
    /// The builder of the submodule `name` (push prefix).
    pub fn pp(&mut self, name: impl ToString) -> Builder<'_> {
        let name = name.to_string();
        let prefix = if self.prefix.is_empty() {
            name
        } else {
            format!("{}.{name}", self.prefix)
        };
        Builder {
            state: &mut *self.state,
            prefix,
        }
    }

    fn path(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}.{leaf}", self.prefix)
        }
    }

    fn init(&self) -> InitScheme {
        self.state.init
    }

    /// `Some(counter)` in a counting build.
    fn counting(&self) -> Option<Arc<AtomicU64>> {
        self.state.macs.clone()
    }

    fn tensor(&self, values: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(self.state.dtype)?
            .to_device(&self.state.device)?)
    }

    fn normal(&mut self, shape: &[usize], std: f64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let std = std as f32;
        let rng = &mut self.state.rng;
        let values: Vec<f32> = (0..n)
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut *rng);
                z * std
            })
            .collect();
        self.tensor(values, shape)
    }

    fn uniform(&mut self, shape: &[usize], lo: f64, hi: f64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let (lo, hi) = (lo as f32, hi as f32);
        let rng = &mut self.state.rng;
        let values: Vec<f32> = (0..n)
            .map(|_| lo + (hi - lo) * rng.random::<f32>())
            .collect();
        self.tensor(values, shape)
    }

    fn constant(&self, shape: &[usize], value: f32) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        self.tensor(vec![value; n], shape)
    }

    fn param(&mut self, leaf: &str, t: Tensor) -> Result<Var> {
        let var = Var::from_tensor(&t)?;
        self.state.params += t.elem_count() as u64;
        let name = self.path(leaf);
        self.state.entries.push(Entry {
            name,
            shape: t.dims().to_vec(),
            slot: Slot::Param(var.clone()),
        });
        Ok(var)
    }

    /// A parameter a counting build does not make: only counted.
    fn declare(&mut self, shape: &[usize]) {
        self.state.params += shape.iter().product::<usize>() as u64;
    }

    fn buffer(&mut self, leaf: &str, t: Tensor) -> Arc<RwLock<Tensor>> {
        let buf = Arc::new(RwLock::new(t.clone()));
        let name = self.path(leaf);
        self.state.entries.push(Entry {
            name,
            shape: t.dims().to_vec(),
            slot: Slot::Buffer(buf.clone()),
        });
        buf
    }

    fn counter(&mut self, leaf: &str) -> Arc<AtomicI64> {
        let c = Arc::new(AtomicI64::new(0));
        let name = self.path(leaf);
        self.state.entries.push(Entry {
            name,
            shape: Vec::new(),
            slot: Slot::Counter(c.clone()),
        });
        c
    }
}

/// A parameter as used in a forward pass: tracked by autograd in training, detached
/// (no graph) in evaluation.
fn use_param(v: &Var, train: bool) -> Tensor {
    if train {
        v.as_tensor().clone()
    } else {
        v.as_detached_tensor()
    }
}

/// The error of a layer as a candle error (for [`ModuleT`]); candle's own errors unwrapped.
fn candle_error(e: ArchError) -> candle_core::Error {
    match e {
        ArchError::Candle(e) => e,
        e => candle_core::Error::wrap(e),
    }
}

/// The weights of a convolution or linear layer, or, in a counting build, the counter of
/// multiply-adds its forward passes add to.
enum Weights {
    Tensors { weight: Var, bias: Option<Var> },
    Counting(Arc<AtomicU64>),
}

/// Settings of a [`Conv2d`], as candle-nn's `Conv2dConfig` (dilation is always 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conv2dConfig {
    /// Zero padding on every side.
    pub padding: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Number of groups (channels / groups inputs per output channel).
    pub groups: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            padding: 0,
            stride: 1,
            groups: 1,
        }
    }
}

/// 2-D convolution (PyTorch `nn.Conv2d`, square kernel, symmetric zero padding), computed
/// by [`kernels::conv2d`].
pub(crate) struct Conv2d {
    weights: Weights,
    cfg: Conv2dConfig,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
}

/// A `Conv2d` with bias (PyTorch's `bias=True`).
pub(crate) fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    cfg: Conv2dConfig,
    vb: Builder<'_>,
) -> Result<Conv2d> {
    make_conv2d(in_channels, out_channels, kernel, cfg, true, vb)
}

/// A `Conv2d` without bias (PyTorch's `bias=False`).
pub(crate) fn conv2d_no_bias(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    cfg: Conv2dConfig,
    vb: Builder<'_>,
) -> Result<Conv2d> {
    make_conv2d(in_channels, out_channels, kernel, cfg, false, vb)
}

fn make_conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    cfg: Conv2dConfig,
    bias: bool,
    mut vb: Builder<'_>,
) -> Result<Conv2d> {
    let groups = cfg.groups;
    if groups == 0
        || kernel == 0
        || cfg.stride == 0
        || !in_channels.is_multiple_of(groups)
        || !out_channels.is_multiple_of(groups)
    {
        return Err(ArchError::InvalidConfig(format!(
            "conv `{}`: {in_channels} -> {out_channels} channels, kernel {kernel}, {cfg:?}",
            vb.path("weight")
        )));
    }
    let shape = [out_channels, in_channels / groups, kernel, kernel];
    let weights = match vb.counting() {
        Some(counter) => {
            vb.declare(&shape);
            if bias {
                vb.declare(&[out_channels]);
            }
            Weights::Counting(counter)
        }
        None => {
            let fan_in = (in_channels / groups) * kernel * kernel;
            let fan_out = out_channels * kernel * kernel;
            let gain = 2f64.sqrt(); // kaiming_normal_ default: leaky_relu with a = 0
            let init = vb.init().conv;
            let w = match init {
                ConvInit::KaimingNormalFanOut => {
                    vb.normal(&shape, gain / (fan_out as f64).sqrt())?
                }
                ConvInit::KaimingNormalFanIn => vb.normal(&shape, gain / (fan_in as f64).sqrt())?,
                ConvInit::TorchDefault => {
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    vb.uniform(&shape, -bound, bound)?
                }
            };
            let weight = vb.param("weight", w)?;
            let bias = if bias {
                let t = match init {
                    ConvInit::TorchDefault => {
                        let bound = 1.0 / (fan_in as f64).sqrt();
                        vb.uniform(&[out_channels], -bound, bound)?
                    }
                    _ => vb.constant(&[out_channels], 0.0)?,
                };
                Some(vb.param("bias", t)?)
            } else {
                None
            };
            Weights::Tensors { weight, bias }
        }
    };
    Ok(Conv2d {
        weights,
        cfg,
        in_channels,
        out_channels,
        kernel,
    })
}

impl Conv2d {
    /// The detached weight and the configuration of a convolution without bias (for the
    /// fused evaluation of [`BatchNorm2d::after_conv`]).
    fn plain_weight(&self, train: bool) -> Option<(Tensor, Conv2dConfig)> {
        match &self.weights {
            Weights::Tensors { weight, bias: None } => Some((use_param(weight, train), self.cfg)),
            _ => None,
        }
    }
}

impl ModuleT for Conv2d {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        match &self.weights {
            Weights::Tensors { weight, bias } => {
                let w = use_param(weight, train);
                let Conv2dConfig {
                    padding,
                    stride,
                    groups,
                } = self.cfg;
                let y = kernels::conv2d(x, &w, stride, padding, groups)?;
                match bias {
                    None => Ok(y),
                    Some(b) => {
                        let b = use_param(b, train);
                        let c = b.dim(0)?;
                        y.broadcast_add(&b.reshape((1, c, 1, 1))?)
                    }
                }
            }
            Weights::Counting(macs) => {
                let (n, c, h, w) = x.dims4()?;
                let Conv2dConfig {
                    padding, stride, ..
                } = self.cfg;
                let (k, ci, co) = (self.kernel, self.in_channels, self.out_channels);
                if c != ci || h + 2 * padding < k || w + 2 * padding < k {
                    candle_core::bail!(
                        "conv {ci} -> {co}, kernel {k}, {:?}: input {:?}",
                        self.cfg,
                        x.dims()
                    );
                }
                let (ho, wo) = (
                    (h + 2 * padding - k) / stride + 1,
                    (w + 2 * padding - k) / stride + 1,
                );
                let per_output = (ci / self.cfg.groups * k * k) as u64;
                macs.fetch_add(per_output * (n * co * ho * wo) as u64, Ordering::Relaxed);
                Tensor::zeros((n, co, ho, wo), x.dtype(), x.device())
            }
        }
    }
}

/// A `BatchNorm2d` (weight 1, or U(0,1) in WRN; bias 0; running mean 0, running var 1).
pub(crate) fn batch_norm2d(channels: usize, mut vb: Builder<'_>) -> Result<BatchNorm2d> {
    let w = if vb.init().bn_weight_uniform {
        vb.uniform(&[channels], 0.0, 1.0)?
    } else {
        vb.constant(&[channels], 1.0)?
    };
    let weight = vb.param("weight", w)?;
    let b = vb.constant(&[channels], 0.0)?;
    let bias = vb.param("bias", b)?;
    let rm = vb.constant(&[channels], 0.0)?;
    let running_mean = vb.buffer("running_mean", rm);
    let rv = vb.constant(&[channels], 1.0)?;
    let running_var = vb.buffer("running_var", rv);
    let num_batches_tracked = vb.counter("num_batches_tracked");
    Ok(BatchNorm2d {
        weight,
        bias,
        running_mean,
        running_var,
        num_batches_tracked,
        channels,
    })
}

/// What follows a BatchNorm in a fused training op: nothing, a ReLU, or the residual add
/// and the ReLU after it.
#[derive(Clone, Copy)]
enum Tail<'a> {
    None,
    Relu,
    AddRelu(&'a Tensor),
}

/// `nn.BatchNorm2d` with PyTorch semantics: in training, batch statistics (biased variance
/// for normalising), running stats updated with momentum 0.1 and the unbiased variance,
/// `num_batches_tracked` incremented; in evaluation, running stats; eps 1e-5.
pub struct BatchNorm2d {
    weight: Var,
    bias: Var,
    running_mean: Arc<RwLock<Tensor>>,
    running_var: Arc<RwLock<Tensor>>,
    num_batches_tracked: Arc<AtomicI64>,
    channels: usize,
}

fn poisoned() -> ArchError {
    ArchError::InvalidConfig(
        "a BatchNorm running-stat lock was poisoned by a panic in another thread".into(),
    )
}

impl BatchNorm2d {
    /// A stand-alone BatchNorm2d (weight 1, bias 0, running mean 0, running var 1), for
    /// tests and experiments; networks create theirs through the builder.
    pub fn new(channels: usize, device: &Device, dtype: DType) -> Result<Self> {
        let t =
            |v: f64| -> Result<Tensor> { Ok(Tensor::full(v, channels, device)?.to_dtype(dtype)?) };
        Ok(BatchNorm2d {
            weight: Var::from_tensor(&t(1.0)?)?,
            bias: Var::from_tensor(&t(0.0)?)?,
            running_mean: Arc::new(RwLock::new(t(0.0)?)),
            running_var: Arc::new(RwLock::new(t(1.0)?)),
            num_batches_tracked: Arc::new(AtomicI64::new(0)),
            channels,
        })
    }

    /// The affine weight (gamma).
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// The affine bias (beta).
    pub fn bias(&self) -> &Var {
        &self.bias
    }

    /// Current running mean.
    pub fn running_mean(&self) -> Result<Tensor> {
        Ok(self.running_mean.read().map_err(|_| poisoned())?.clone())
    }

    /// Current running variance (unbiased batch variances averaged with momentum 0.1).
    pub fn running_var(&self) -> Result<Tensor> {
        Ok(self.running_var.read().map_err(|_| poisoned())?.clone())
    }

    /// Number of training-mode forward passes so far.
    pub fn num_batches_tracked(&self) -> i64 {
        self.num_batches_tracked.load(Ordering::Relaxed)
    }

    /// Normalises `x` [N, C, H, W]: batch statistics and running-stat update when
    /// `train`, running statistics otherwise (no autograd graph for the parameters).
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if c != self.channels {
            return Err(ArchError::InvalidConfig(format!(
                "BatchNorm2d expects {} channels, got input {:?}",
                self.channels,
                x.dims()
            )));
        }
        if train {
            self.forward_train(x, (n, c, h, w), Tail::None, None)
        } else if kernels::fast_path(x) {
            let (scale, shift) = self.eval_coefficients()?;
            Ok(kernels::channel_affine(x, &scale, &shift, false)?)
        } else {
            let rm = self.running_mean.read().map_err(|_| poisoned())?.clone();
            let rv = self.running_var.read().map_err(|_| poisoned())?.clone();
            let scale = self
                .weight
                .as_detached_tensor()
                .div(&(rv + BN_EPS)?.sqrt()?)?;
            let shift = self.bias.as_detached_tensor().sub(&rm.mul(&scale)?)?;
            Ok(x.broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
                .broadcast_add(&shift.reshape((1, c, 1, 1))?)?)
        }
    }

    /// Training-mode forward, followed by `tail` (fused on the fast path); `moments`: x's
    /// batch mean and variance where the op that made x gave them.
    fn forward_train(
        &self,
        x: &Tensor,
        (n, c, h, w): (usize, usize, usize, usize),
        tail: Tail<'_>,
        moments: Option<kernels::BatchMoments>,
    ) -> Result<Tensor> {
        let count = n * h * w;
        if count < 2 {
            return Err(ArchError::InvalidConfig(format!(
                "BatchNorm2d in training needs more than 1 value per channel, got input {:?}",
                x.dims()
            )));
        }
        if kernels::fast_path(x) {
            let (mean, var) = match moments {
                Some(m) => m,
                None => kernels::channel_stats(x)?,
            };
            let (gamma, beta) = (self.weight.as_tensor(), self.bias.as_tensor());
            let y = match tail {
                Tail::AddRelu(r) if kernels::fast_path(r) && r.shape() == x.shape() => {
                    kernels::batch_norm_train_add_relu(x, gamma, beta, &mean, &var, BN_EPS, r)?
                }
                Tail::AddRelu(r) => {
                    let y = kernels::batch_norm_train(x, gamma, beta, &mean, &var, BN_EPS, false)?;
                    kernels::add_relu(&y, r)?
                }
                _ => {
                    let relu = matches!(tail, Tail::Relu);
                    kernels::batch_norm_train(x, gamma, beta, &mean, &var, BN_EPS, relu)?
                }
            };
            let batch_mean = Tensor::from_vec(mean, c, x.device())?.to_dtype(x.dtype())?;
            let batch_var = Tensor::from_vec(var, c, x.device())?.to_dtype(x.dtype())?;
            self.update_running_stats(&batch_mean, &batch_var, count)?;
            return Ok(y);
        }
        let inv_count = 1.0 / count as f64;
        let xr = x.reshape((n, c, h * w))?;
        let mean = xr.sum_keepdim(2)?.sum_keepdim(0)?.affine(inv_count, 0.0)?;
        let centered = xr.broadcast_sub(&mean)?;
        let var = centered
            .sqr()?
            .sum_keepdim(2)?
            .sum_keepdim(0)?
            .affine(inv_count, 0.0)?;
        let inv_std = (&var + BN_EPS)?.sqrt()?.recip()?;
        let weight = self.weight.as_tensor().reshape((1, c, 1))?;
        let bias = self.bias.as_tensor().reshape((1, c, 1))?;
        let scale = inv_std.broadcast_mul(&weight)?;
        let y = centered
            .broadcast_mul(&scale)?
            .broadcast_add(&bias)?
            .reshape((n, c, h, w))?;

        // Running statistics (no autograd).
        let batch_mean = mean.detach().flatten_all()?;
        let batch_var = var.detach().flatten_all()?;
        self.update_running_stats(&batch_mean, &batch_var, count)?;
        Ok(match tail {
            Tail::None => y,
            Tail::Relu => kernels::relu(&y)?,
            Tail::AddRelu(r) => kernels::add_relu(&y, r)?,
        })
    }

    /// running = (1 − momentum)·running + momentum·batch (the variance unbiased),
    /// `num_batches_tracked += 1`.
    fn update_running_stats(
        &self,
        batch_mean: &Tensor,
        batch_var: &Tensor,
        count: usize,
    ) -> Result<()> {
        let m = BN_MOMENTUM;
        {
            let mut rm = self.running_mean.write().map_err(|_| poisoned())?;
            *rm = (rm.affine(1.0 - m, 0.0)? + batch_mean.affine(m, 0.0)?)?;
        }
        {
            let unbiased = count as f64 / (count as f64 - 1.0);
            let mut rv = self.running_var.write().map_err(|_| poisoned())?;
            *rv = (rv.affine(1.0 - m, 0.0)? + batch_var.affine(m * unbiased, 0.0)?)?;
        }
        self.num_batches_tracked.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Evaluation-mode scale γ/√(running_var + ε) and shift β − running_mean·scale, in f64.
    fn eval_coefficients(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let host = |t: &Tensor| -> Result<Vec<f64>> {
            Ok(t.to_dtype(DType::F64)?
                .to_device(&Device::Cpu)?
                .flatten_all()?
                .to_vec1()?)
        };
        let rm = host(&self.running_mean.read().map_err(|_| poisoned())?.clone())?;
        let rv = host(&self.running_var.read().map_err(|_| poisoned())?.clone())?;
        let g = host(&self.weight.as_detached_tensor())?;
        let b = host(&self.bias.as_detached_tensor())?;
        let scale: Vec<f64> = g
            .iter()
            .zip(&rv)
            .map(|(g, v)| g / (v + BN_EPS).sqrt())
            .collect();
        let shift = b
            .iter()
            .zip(&rm)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Ok((scale, shift))
    }

    /// `self(conv(x))`, then a ReLU where `relu`. In evaluation on the CPU kernels' path
    /// this is one op ([`kernels::conv2d_affine`]: the convolution stores its output
    /// already normalised, where its direct kernel runs); in training there the
    /// convolution also gives its output's batch moments ([`kernels::conv2d_stats`]);
    /// otherwise the two layers.
    pub(crate) fn after_conv(
        &self,
        conv: &Conv2d,
        x: &Tensor,
        train: bool,
        relu: bool,
    ) -> Result<Tensor> {
        let tail = if relu { Tail::Relu } else { Tail::None };
        self.after_conv_with(conv, x, train, tail)
    }

    /// `relu(self(conv(x)) + residual)`, the end of a residual block: in training on the
    /// kernels' path one op for the normalisation, the add and the ReLU
    /// ([`kernels::batch_norm_train_add_relu`]), else [`after_conv`](Self::after_conv)
    /// and the add + ReLU.
    pub(crate) fn after_conv_add_relu(
        &self,
        conv: &Conv2d,
        x: &Tensor,
        residual: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        self.after_conv_with(conv, x, train, Tail::AddRelu(residual))
    }

    fn after_conv_with(
        &self,
        conv: &Conv2d,
        x: &Tensor,
        train: bool,
        tail: Tail<'_>,
    ) -> Result<Tensor> {
        if !train
            && kernels::fast_path(x)
            && let Some((w, cfg)) = conv.plain_weight(false)
            && w.dim(0)? == self.channels
        {
            let (scale, shift) = self.eval_coefficients()?;
            let Conv2dConfig {
                padding,
                stride,
                groups,
            } = cfg;
            let relu = matches!(tail, Tail::Relu);
            let y = kernels::conv2d_affine(x, &w, stride, padding, groups, &scale, &shift, relu)?;
            return Ok(match tail {
                Tail::AddRelu(r) => kernels::add_relu(&y, r)?,
                _ => y,
            });
        }
        // In training, the convolution also gives its output's batch moments where its
        // direct kernel runs (taken while each image's output is in cache).
        let (y, moments) = if train
            && kernels::fast_path(x)
            && let Some((w, cfg)) = conv.plain_weight(true)
            && cfg.groups == 1
            && w.dim(0)? == self.channels
        {
            kernels::conv2d_stats(x, &w, cfg.stride, cfg.padding)?
        } else {
            (conv.forward_t(x, train)?, None)
        };
        match (moments, tail) {
            (Some(m), tail) => self.forward_train(&y, y.dims4()?, tail, Some(m)),
            (None, Tail::None) => self.forward(&y, train),
            (None, Tail::Relu) => self.forward_relu(&y, train),
            (None, Tail::AddRelu(r)) => {
                let y = self.forward(&y, train)?;
                Ok(kernels::add_relu(&y, r)?)
            }
        }
    }

    /// `relu(self.forward(x, train))`; in evaluation on the CPU the ReLU is fused into the
    /// normalisation.
    pub(crate) fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match x.dims4() {
            Ok((n, c, h, w)) if c == self.channels => {
                if train {
                    self.forward_train(x, (n, c, h, w), Tail::Relu, None)
                } else if kernels::fast_path(x) {
                    let (scale, shift) = self.eval_coefficients()?;
                    Ok(kernels::channel_affine(x, &scale, &shift, true)?)
                } else {
                    Ok(kernels::relu(&self.forward(x, false)?)?)
                }
            }
            // Wrong shapes: the error of `forward`.
            _ => Ok(kernels::relu(&self.forward(x, train)?)?),
        }
    }
}

impl ModuleT for BatchNorm2d {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.forward(x, train).map_err(candle_error)
    }
}

/// `nn.Linear`: y = x W^T + b.
pub(crate) struct Linear {
    weights: Weights,
    in_features: usize,
    out_features: usize,
}

/// A `Linear` with bias, initialised by the family's [`LinearInit`].
pub(crate) fn linear(
    in_features: usize,
    out_features: usize,
    mut vb: Builder<'_>,
) -> Result<Linear> {
    let weights = match vb.counting() {
        Some(counter) => {
            vb.declare(&[out_features, in_features]);
            vb.declare(&[out_features]);
            Weights::Counting(counter)
        }
        None => {
            let bound = 1.0 / (in_features as f64).sqrt();
            let init = vb.init().linear;
            let w = match init {
                LinearInit::Normal { std } => vb.normal(&[out_features, in_features], std)?,
                _ => vb.uniform(&[out_features, in_features], -bound, bound)?,
            };
            let weight = vb.param("weight", w)?;
            let b = match init {
                LinearInit::TorchDefault => vb.uniform(&[out_features], -bound, bound)?,
                _ => vb.constant(&[out_features], 0.0)?,
            };
            let bias = Some(vb.param("bias", b)?);
            Weights::Tensors { weight, bias }
        }
    };
    Ok(Linear {
        weights,
        in_features,
        out_features,
    })
}

impl ModuleT for Linear {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        match &self.weights {
            Weights::Tensors { weight, bias } => {
                let w = use_param(weight, train);
                let y = x.matmul(&w.t()?)?;
                match bias {
                    None => Ok(y),
                    Some(b) => y.broadcast_add(&use_param(b, train)),
                }
            }
            Weights::Counting(macs) => {
                let (n, f) = x.dims2()?;
                if f != self.in_features {
                    candle_core::bail!(
                        "linear {} -> {}: input {:?}",
                        self.in_features,
                        self.out_features,
                        x.dims()
                    );
                }
                macs.fetch_add((n * f * self.out_features) as u64, Ordering::Relaxed);
                Tensor::zeros((n, self.out_features), x.dtype(), x.device())
            }
        }
    }
}

/// The shortcut of a ResNet or ResNeXt block: the identity when the block keeps its
/// channel count, else a projection conv1x1 (with the block's stride) + BN under the
/// scope `shortcut` (parameters `shortcut.conv.*`, `shortcut.bn.*`).
pub(crate) enum Shortcut {
    Identity,
    Projection { conv: Conv2d, bn: BatchNorm2d },
}

impl Shortcut {
    pub fn new(mut vb: Builder<'_>, inc: usize, out: usize, stride: usize) -> Result<Self> {
        if inc == out {
            return Ok(Shortcut::Identity);
        }
        let mut vb = vb.pp("shortcut");
        let cfg = Conv2dConfig {
            stride,
            ..Default::default()
        };
        Ok(Shortcut::Projection {
            conv: conv2d_no_bias(inc, out, 1, cfg, vb.pp("conv"))?,
            bn: batch_norm2d(out, vb.pp("bn"))?,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Shortcut::Identity => Ok(x.clone()),
            Shortcut::Projection { conv, bn } => bn.forward(&conv.forward_t(x, train)?, train),
        }
    }
}

impl ModuleT for Shortcut {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.forward(x, train).map_err(candle_error)
    }
}

/// ReLU as a layer: one pass on the CPU kernels' path (its gradient masked by the
/// output), candle's `relu` elsewhere.
pub(crate) fn relu(x: &Tensor) -> Result<Tensor> {
    Ok(kernels::relu(x)?)
}

/// `a + b` of two equal shapes (a residual sum): one pass on the CPU kernels' path.
pub(crate) fn residual_add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(kernels::add(a, b)?)
}

/// `F.max_pool2d(x, 2)`: one pass each way on the CPU kernels' path (the gradient to each
/// window's first maximum, as PyTorch's), candle's `max_pool2d(2)` elsewhere.
pub(crate) fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    Ok(kernels::max_pool2x2(x)?)
}

/// `F.avg_pool2d(x, kernel_size=1, stride=2)` after an optional one-pixel shift:
/// offset 0 picks x[:, :, 0::2, 0::2]; offset 1 is `F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))`
/// subsampled the same way, i.e. x[:, :, 1::2, 1::2] with zeros past the border.
pub(crate) fn subsample2(x: &Tensor, offset: usize) -> Result<Tensor> {
    if kernels::fast_path(x) && x.rank() == 4 && offset <= 1 {
        return Ok(kernels::subsample2(x, offset)?);
    }
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    let x = if offset == 1 {
        x.narrow(2, 1, h - 1)?.narrow(3, 1, w - 1)?
    } else {
        x.clone()
    };
    let (hh, ww) = (x.dim(2)?, x.dim(3)?);
    // Pad to exactly 2*ho x 2*wo with zeros at the bottom / right.
    let x = if hh < 2 * ho {
        x.pad_with_zeros(2, 0, 2 * ho - hh)?
    } else {
        x
    };
    let x = if ww < 2 * wo {
        x.pad_with_zeros(3, 0, 2 * wo - ww)?
    } else {
        x
    };
    let x = x.contiguous()?.reshape((n, c, ho, 2, wo, 2))?;
    Ok(x.narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, ho, wo))?)
}

/// Per-image coefficients as an [N, 1, 1, 1] tensor.
fn coefficients(values: &[f32], like: &Tensor) -> Result<Tensor> {
    let n = values.len();
    Ok(Tensor::from_slice(values, (n, 1, 1, 1), like.device())?.to_dtype(like.dtype())?)
}

/// The Shake-Shake mix of two branch outputs [N, C, H, W].
///
/// With `Some((alpha, beta))` (training, one value per image): the forward value is
/// `alpha*x1 + (1-alpha)*x2` and the gradient is `beta` to `x1` and `1-beta` to `x2`,
/// computed as `x2 + beta*(x1-x2) + detach((alpha-beta)*(x1-x2))`.
/// With `None` (evaluation): `0.5*(x1+x2)`.
pub fn shake_mix(x1: &Tensor, x2: &Tensor, alpha_beta: Option<(&[f32], &[f32])>) -> Result<Tensor> {
    if kernels::fast_path(x1) && x1.rank() >= 1 && x1.shape() == x2.shape() {
        let n = x1.dim(0)?;
        let (alpha, beta): (Vec<f64>, Vec<f64>) = match alpha_beta {
            None => (vec![0.5; n], vec![0.5; n]),
            Some((alpha, beta)) => {
                if alpha.len() != n || beta.len() != n {
                    return Err(ArchError::InvalidConfig(format!(
                        "shake_mix needs one alpha and one beta per image: batch {n}, {} alphas, {} betas",
                        alpha.len(),
                        beta.len()
                    )));
                }
                (
                    alpha.iter().map(|&a| f64::from(a)).collect(),
                    beta.iter().map(|&b| f64::from(b)).collect(),
                )
            }
        };
        return Ok(kernels::shake_mix(x1, x2, &alpha, &beta)?);
    }
    match alpha_beta {
        None => Ok(((x1 + x2)? * 0.5)?),
        Some((alpha, beta)) => {
            let n = x1.dim(0)?;
            if alpha.len() != n || beta.len() != n {
                return Err(ArchError::InvalidConfig(format!(
                    "shake_mix needs one alpha and one beta per image: batch {n}, {} alphas, {} betas",
                    alpha.len(),
                    beta.len()
                )));
            }
            let d = (x1 - x2)?;
            let a = coefficients(alpha, x1)?;
            let b = coefficients(beta, x1)?;
            let tracked = x2.add(&d.broadcast_mul(&b)?)?;
            let correction = d.detach().broadcast_mul(&(a - &b)?)?;
            Ok((tracked + correction)?)
        }
    }
}

/// Global average pooling to [N, C].
pub(crate) fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean((2, 3))?)
}

/// Draws `n` uniform [0, 1) numbers from the training RNG.
pub(crate) fn draw_uniform(rng: &mut dyn RngCore, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random::<f32>()).collect()
}
