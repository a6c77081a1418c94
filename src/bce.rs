//! Binary cross-entropy on probabilities: PyTorch's `nn.BCELoss` and
//! `F.binary_cross_entropy`.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::binary::{self, BinaryLoss};
use crate::broadcast::BroadcastWeight;
use crate::fused::{BinaryKind, Output};
use crate::path::Request;
use crate::pytorch::{BCE_GRAD_EPSILON as EPSILON, BCE_LOG_FLOOR as LOG_FLOOR};
use crate::reduction::Reduction;
use crate::workarounds;

const KIND: BinaryKind = BinaryKind::Probabilities;
const FUNCTION: &str = "binary_cross_entropy";

/// Options of [`binary_cross_entropy`]: PyTorch's `weight`, plus the value check.
#[derive(Clone, Debug)]
pub struct BceOptions {
    /// Rescales each element's loss; broadcast against the input (PyTorch's `weight`).
    pub weight: Option<BroadcastWeight>,
    /// Check that every probability and every target lies in `[0, 1]` (default `true`); see
    /// [`binary_cross_entropy`] for what it costs.
    pub check_values: bool,
}

impl Default for BceOptions {
    fn default() -> Self {
        Self {
            weight: None,
            check_values: true,
        }
    }
}

impl BceOptions {
    /// No weight, values checked: `F.binary_cross_entropy(input, target)`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the element weight (any rank that broadcasts to the input).
    pub fn with_weight(mut self, weight: impl Into<BroadcastWeight>) -> Self {
        self.weight = Some(weight.into());
        self
    }

    /// Switches the `[0, 1]` check of the input and the target on or off.
    pub fn with_check_values(mut self, check_values: bool) -> Self {
        self.check_values = check_values;
        self
    }
}

impl BinaryLoss for BceOptions {
    fn request<'a, const D: usize>(
        &'a self,
        input: Tensor<D>,
        target: &'a Tensor<D>,
        output: Output,
    ) -> Request<'a, D, D> {
        let weights = [self.weight.as_ref(), None];
        Request::binary(
            FUNCTION,
            KIND,
            input,
            target,
            weights,
            self.check_values,
            output,
        )
    }

    fn composite<const D: usize>(&self, input: Tensor<D>, target: Tensor<D>) -> Tensor<D> {
        composite_loss(input, target, self)
    }
}

/// Binary cross-entropy between probabilities `input` and `target`, reduced to one value.
///
/// `loss_i = -w_i [t_i max(log p_i, -100) + (1 - t_i) max(log(1 - p_i), -100)]`, then the mean
/// or the sum over all elements (the mean of an empty input is NaN).
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.binary_cross_entropy(p, t)` | `binary_cross_entropy(p, t, Reduction::Mean, &BceOptions::new())` |
/// | `F.binary_cross_entropy(p, t, weight=w, reduction='sum')` | `binary_cross_entropy(p, t, Reduction::Sum, &BceOptions::new().with_weight(w))` |
///
/// # Shapes
/// - `input`: any shape, probabilities in `[0, 1]`
/// - `target`: the input's shape, values in `[0, 1]` (soft labels allowed; checked, as
///   PyTorch 2.15 does)
/// - `weight`: broadcasts to the input's shape
/// - output: `[1]`
///
/// # Gradient
/// The input gradient is PyTorch's, `w (p - t) / max(p (1 - p), 1e-12)`, which stays finite at
/// probabilities of exactly 0 and 1 (plain autodiff of the clamped logarithms would not give
/// PyTorch's numbers there). The target gradient is that of the loss formula above.
///
/// # Panics
/// - if `target`'s shape differs from `input`'s, or `weight` does not broadcast to it;
/// - if `check_values` is on and a probability or a target is below 0, above 1 or NaN
///   (PyTorch 2.15 raises "all elements of input/target should be between 0 and 1"). The
///   check costs one reduction over the input and the target and one read of a single value
///   from the device, which waits for the work queued before it (the fused CPU kernel checks
///   while it reads); switch it off in a hot loop whose inputs come out of a sigmoid and whose
///   targets are known to be labels.
pub fn binary_cross_entropy<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    reduction: Reduction,
    options: &BceOptions,
) -> Tensor<1> {
    binary::reduced(options, input, target, reduction)
}

/// Binary cross-entropy per element, PyTorch's `reduction='none'`: the input's shape.
///
/// See [`binary_cross_entropy`] for the formula, options and panics.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.binary_cross_entropy(p, t, reduction='none')` | `binary_cross_entropy_no_reduction(p, t, &BceOptions::new())` |
pub fn binary_cross_entropy_no_reduction<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    options: &BceOptions,
) -> Tensor<D> {
    binary::per_element(options, input, target)
}

/// The per-element loss from Burn's generic operations (the reference path).
fn composite_loss<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    options: &BceOptions,
) -> Tensor<D> {
    if workarounds::is_empty(&input) {
        return workarounds::empty_loss(input.dims(), &input);
    }
    let weight = options
        .weight
        .as_ref()
        .map(|w| w.expand_to(FUNCTION, "weight", &input));

    // The value comes from constant probabilities and targets; the gradients are added by
    // terms that are zero in value and have PyTorch's derivatives: for the input
    // `(p - t) / max(p (1 - p), 1e-12)`, for the target `log(1 - p) - log p` (with the logs
    // clamped at -100, as in the value: PyTorch's is unclamped, infinite at p = 0 and 1).
    let p = input.clone().detach();
    let t = target.clone().detach();
    let log_p = p.clone().log().clamp_min(LOG_FLOOR);
    let log_1mp = p.clone().neg().log1p().clamp_min(LOG_FLOOR);
    let value = (t.clone() - 1.0) * log_1mp.clone() - t.clone() * log_p.clone();
    let slope_input = (p.clone() - t) / (p.clone().neg() + 1.0).mul(p).clamp_min(EPSILON);
    let slope_target = log_1mp - log_p;
    let loss = binary::with_slopes(
        value,
        [(Some(&input), slope_input), (Some(&target), slope_target)],
        None,
    );
    match weight {
        Some(weight) => loss * weight,
        None => loss,
    }
}

/// Configuration of [`BceLoss`], PyTorch's `nn.BCELoss(weight=…)`.
#[derive(Config, Debug)]
pub struct BceLossConfig {
    /// Element weights, broadcast against the input (PyTorch's `weight`); with
    /// `weight_shape` unset they are one weight per position of the last dimension.
    pub weight: Option<Vec<f32>>,
    /// The shape of `weight` (default `[weight.len()]`), any shape that broadcasts to the input.
    pub weight_shape: Option<Vec<usize>>,
    /// Check that every probability and target lies in `[0, 1]` before computing (default
    /// `true`).
    #[config(default = true)]
    pub check_values: bool,
}

impl BceLossConfig {
    /// Builds the module on `device`.
    ///
    /// # Panics
    /// If `weight_shape` does not hold as many elements as `weight`.
    pub fn init(&self, device: &Device) -> BceLoss {
        BceLoss {
            weight: self
                .weight
                .as_ref()
                .map(|w| Tensor::<1>::from_floats(w.as_slice(), device)),
            weight_shape: crate::broadcast::config_shape(
                "BceLossConfig",
                "weight_shape",
                &self.weight,
                &self.weight_shape,
            ),
            check_values: self.check_values,
        }
    }
}

/// Binary cross-entropy on probabilities as a module: PyTorch's `nn.BCELoss`.
///
/// Built by [`BceLossConfig`]; [`BceLoss::forward`] calls [`binary_cross_entropy`] and
/// [`BceLoss::forward_no_reduction`] calls [`binary_cross_entropy_no_reduction`], so both give
/// the function's values and gradients bit for bit.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `nn.BCELoss()(p, t)` | `BceLossConfig::new().init(&device).forward(p, t, Reduction::Mean)` |
/// | `nn.BCELoss(weight=w, reduction='none')(p, t)` | `BceLossConfig::new().with_weight(Some(w)).init(&device).forward_no_reduction(p, t)` |
#[derive(Module, Debug)]
pub struct BceLoss {
    /// The element weights, flat (see `weight_shape`).
    pub weight: Option<Tensor<1>>,
    /// The shape the weights broadcast from.
    #[module(skip)]
    pub weight_shape: Vec<usize>,
    /// Whether probabilities and targets are checked to lie in `[0, 1]`.
    pub check_values: bool,
}

impl BceLoss {
    /// The function options this module stands for.
    pub fn options(&self) -> BceOptions {
        BceOptions {
            weight: self
                .weight
                .clone()
                .map(|w| BroadcastWeight::from_flat(w, self.weight_shape.clone())),
            check_values: self.check_values,
        }
    }

    /// The reduced loss; see [`binary_cross_entropy`] for shapes and panics.
    pub fn forward<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
        reduction: Reduction,
    ) -> Tensor<1> {
        binary_cross_entropy(input, target, reduction, &self.options())
    }

    /// The per-element loss in the input's shape; see [`binary_cross_entropy_no_reduction`].
    pub fn forward_no_reduction<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> Tensor<D> {
        binary_cross_entropy_no_reduction(input, target, &self.options())
    }
}
