//! Binary cross-entropy on logits: PyTorch's `nn.BCEWithLogitsLoss` and
//! `F.binary_cross_entropy_with_logits`.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::binary::{self, BinaryLoss};
use crate::broadcast::{BroadcastWeight, config_shape};
use crate::fused::{BinaryKind, Output};
use crate::path::Request;
use crate::reduction::Reduction;
use crate::workarounds;

const KIND: BinaryKind = BinaryKind::WithLogits;
const FUNCTION: &str = "binary_cross_entropy_with_logits";

/// Options of [`binary_cross_entropy_with_logits`]: PyTorch's `weight` and `pos_weight`.
#[derive(Clone, Debug, Default)]
pub struct BceWithLogitsOptions {
    /// Rescales each element's loss; broadcast against the input (PyTorch's `weight`).
    pub weight: Option<BroadcastWeight>,
    /// Weight of the positive term, broadcast against the input; usually shape `[C]`, one
    /// per class of the last dimension (PyTorch's `pos_weight`).
    pub pos_weight: Option<BroadcastWeight>,
}

impl BceWithLogitsOptions {
    /// No weights: `F.binary_cross_entropy_with_logits(x, t)`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the element weight (any rank that broadcasts to the input).
    pub fn with_weight(mut self, weight: impl Into<BroadcastWeight>) -> Self {
        self.weight = Some(weight.into());
        self
    }

    /// Sets the positive-class weight (any rank that broadcasts to the input).
    pub fn with_pos_weight(mut self, pos_weight: impl Into<BroadcastWeight>) -> Self {
        self.pos_weight = Some(pos_weight.into());
        self
    }
}

impl BinaryLoss for BceWithLogitsOptions {
    fn request<'a, const D: usize>(
        &'a self,
        input: Tensor<D>,
        target: &'a Tensor<D>,
        output: Output,
    ) -> Request<'a, D, D> {
        let weights = [self.weight.as_ref(), self.pos_weight.as_ref()];
        Request::binary(FUNCTION, KIND, input, target, weights, false, output)
    }

    fn composite<const D: usize>(&self, input: Tensor<D>, target: Tensor<D>) -> Tensor<D> {
        composite_loss(input, target, self)
    }
}

/// Binary cross-entropy between `sigmoid(input)` and `target`, computed from the logits
/// without forming the sigmoid, reduced to one value.
///
/// `loss_i = w_i [(1 - t_i) x_i - (1 + (pw_i - 1) t_i) log_sigmoid(x_i)]` (PyTorch's formula),
/// then the mean or the sum over all elements (the mean of an empty input is NaN). It is
/// stable for logits up to ±1e4 and beyond: no overflow, with or without `pos_weight`.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.binary_cross_entropy_with_logits(x, t)` | `binary_cross_entropy_with_logits(x, t, Reduction::Mean, &BceWithLogitsOptions::new())` |
/// | `F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction='sum')` | `binary_cross_entropy_with_logits(x, t, Reduction::Sum, &BceWithLogitsOptions::new().with_pos_weight(pw))` |
///
/// # Shapes
/// - `input`: any shape, logits
/// - `target`: the input's shape, values in `[0, 1]` (soft labels allowed; not checked, as in
///   PyTorch)
/// - `weight`, `pos_weight`: broadcast to the input's shape
/// - output: `[1]`
///
/// # Panics
/// If `target`'s shape differs from `input`'s, or `weight` or `pos_weight` does not broadcast
/// to it. No value is read from the device.
pub fn binary_cross_entropy_with_logits<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    reduction: Reduction,
    options: &BceWithLogitsOptions,
) -> Tensor<1> {
    binary::reduced(options, input, target, reduction)
}

/// Binary cross-entropy on logits per element, PyTorch's `reduction='none'`: the input's
/// shape.
///
/// See [`binary_cross_entropy_with_logits`] for the formula, options and panics.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.binary_cross_entropy_with_logits(x, t, reduction='none')` | `binary_cross_entropy_with_logits_no_reduction(x, t, &BceWithLogitsOptions::new())` |
pub fn binary_cross_entropy_with_logits_no_reduction<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    options: &BceWithLogitsOptions,
) -> Tensor<D> {
    binary::per_element(options, input, target)
}

/// The per-element loss from Burn's generic operations (the reference path).
fn composite_loss<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    options: &BceWithLogitsOptions,
) -> Tensor<D> {
    if workarounds::is_empty(&input) {
        return workarounds::empty_loss(input.dims(), &input);
    }
    let weight = options
        .weight
        .as_ref()
        .map(|w| w.expand_to(FUNCTION, "weight", &input));
    let pos_weight = options
        .pos_weight
        .as_ref()
        .map(|w| w.expand_to(FUNCTION, "pos_weight", &input));

    // PyTorch's `(1 - t) x - (1 + (pw - 1) t) log σ(x)` equals
    // `(1 - t) softplus(x) + pw t softplus(-x)`, which has no cancellation in either tail
    // (PyTorch's form loses every digit of a 1e-7 loss in f32 at x = -16, t = 0). The value is
    // computed from constants; the gradients are added by terms that are zero in value and
    // have PyTorch's derivatives: `(1 - t) σ(x) - pw t σ(-x)` for the input (Burn's
    // `log_sigmoid` backward loses most of its digits in the tail), `pw softplus(-x) -
    // softplus(x)` for the target, `t softplus(-x)` for `pos_weight`.
    let x = input.clone().detach();
    let t = target.clone().detach();
    let pw = pos_weight.as_ref().map(|pw| pw.clone().detach());
    // Where a logit, target or `pos_weight` is infinite or NaN, PyTorch's own formula decides
    // (its NaN and infinities); the stable form runs on zeros there.
    let mut finite = x.clone().is_finite().bool_and(t.clone().is_finite());
    if let Some(pw) = &pw {
        finite = finite.bool_and(pw.clone().is_finite());
    }
    let other = finite.bool_not();

    let xs = x.clone().mask_fill(other.clone(), 0.0);
    let ts = t.mask_fill(other.clone(), 0.0);
    let pws = pw.clone().map(|pw| pw.mask_fill(other.clone(), 0.0));
    let (softplus, softplus_of_neg) = softplus_pair(xs);
    let negative_weight = ts.clone().neg() + 1.0;
    let positive_weight = match &pws {
        Some(pws) => pws.clone() * ts.clone(),
        None => ts.clone(),
    };
    let value = negative_weight.clone() * softplus.clone()
        + positive_weight.clone() * softplus_of_neg.clone();
    let slope_input = negative_weight * softplus_of_neg.clone().neg().exp()
        - positive_weight * softplus.clone().neg().exp();
    let slope_target = match &pws {
        Some(pws) => pws.clone() * softplus_of_neg.clone() - softplus,
        None => softplus_of_neg.clone() - softplus,
    };
    let slope_pos_weight = ts * softplus_of_neg;
    let stable = binary::with_slopes(
        value,
        [
            (Some(&input), slope_input),
            (Some(&target), slope_target),
            (pos_weight.as_ref(), slope_pos_weight),
        ],
        Some(&other),
    );

    let pytorch = pytorch_form(&input, target, pos_weight);
    let loss = stable.mask_where(other, pytorch);
    match weight {
        Some(weight) => loss * weight,
        None => loss,
    }
}

/// `log1p(exp(-|x|))`, the tail of both softplus functions.
fn tail<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.abs().neg().exp().log1p()
}

/// `(softplus(x), softplus(-x))` = `(-log σ(-x), -log σ(x))`, each `max(±x, 0)` plus their
/// shared [`tail`], computed once.
fn softplus_pair<const D: usize>(x: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
    let tail = tail(x.clone());
    let softplus = x.clone().clamp_min(0.0) + tail.clone();
    (softplus, x.neg().clamp_min(0.0) + tail)
}

/// PyTorch's own formula `(1 - t) x + (1 + (pw - 1) t) softplus(-x)`, with
/// `softplus(-x) = max(-x, 0) + log1p(exp(-|x|))`, for the elements where a logit, target or
/// `pos_weight` is infinite or NaN: its value (NaN and infinities included) and its gradients.
///
/// The input's gradient `(1 + (pw - 1) t) σ(x) - pw t` is a chosen slope where it is finite
/// (NaN copied from a NaN logit: `σ(NaN)` is 0 under lavapipe's wgpu); where it is infinite
/// (a logit or target at ±inf) it comes from the formula on the tracked input, exact there.
/// At `x = -inf` the value is NaN whatever the target, and the target's gradient
/// `pw softplus(-x) - softplus(x)` is one product (autodiff of the formula would add
/// `inf + (pw - 1) inf`, NaN for `pw < 1`).
fn pytorch_form<const D: usize>(
    input: &Tensor<D>,
    target: Tensor<D>,
    pos_weight: Option<Tensor<D>>,
) -> Tensor<D> {
    let x = input.clone().detach();
    let t = target.clone().detach();
    let sigmoid = burn::tensor::activation::sigmoid(x.clone());
    let (softplus, softplus_of_neg) = softplus_pair(x.clone());
    let (slope_input, slope_target) = match &pos_weight {
        Some(pos_weight) => {
            let pw = pos_weight.clone().detach();
            let positive = pw.clone() * t.clone();
            (
                (positive.clone() - t.clone() + 1.0) * sigmoid - positive,
                pw * softplus_of_neg - softplus,
            )
        }
        None => (sigmoid - t.clone(), softplus_of_neg - softplus),
    };

    let by_formula = x.clone().is_inf().bool_or(slope_input.clone().is_inf());
    let input_tracked = input
        .clone()
        .mask_where(by_formula.clone().bool_not(), x.clone());
    let at_neg_inf = x.clone().is_inf().bool_and(x.clone().lower_elem(0.0));
    let target_tracked = target.clone().mask_where(at_neg_inf.clone(), t);
    let log_weight = match pos_weight {
        Some(pos_weight) => (pos_weight - 1.0) * target_tracked.clone() + 1.0,
        None => target.ones_like(),
    };
    let mut value = (target_tracked.neg() + 1.0) * input_tracked.clone()
        + log_weight * (input_tracked.neg().clamp_min(0.0) + tail(x.clone()));
    if target.is_tracked() {
        let elsewhere = at_neg_inf.bool_not();
        value = value
            + target.mask_fill(elsewhere.clone(), 0.0) * slope_target.mask_fill(elsewhere, 0.0);
    }
    let slope_input = slope_input.mask_where(x.clone().is_nan(), x);
    binary::with_slopes(value, [(Some(input), slope_input)], Some(&by_formula))
}

/// Configuration of [`BceWithLogitsLoss`], PyTorch's
/// `nn.BCEWithLogitsLoss(weight=…, pos_weight=…)`.
#[derive(Config, Debug)]
pub struct BceWithLogitsLossConfig {
    /// Element weights, broadcast against the input (PyTorch's `weight`); with
    /// `weight_shape` unset, one weight per position of the last dimension.
    pub weight: Option<Vec<f32>>,
    /// The shape of `weight` (default `[weight.len()]`).
    pub weight_shape: Option<Vec<usize>>,
    /// Positive-class weights (PyTorch's `pos_weight`); with `pos_weight_shape` unset, one
    /// per class of the last dimension.
    pub pos_weight: Option<Vec<f32>>,
    /// The shape of `pos_weight` (default `[pos_weight.len()]`).
    pub pos_weight_shape: Option<Vec<usize>>,
}

impl BceWithLogitsLossConfig {
    /// Builds the module on `device`.
    ///
    /// # Panics
    /// If a `*_shape` does not hold as many elements as its weights.
    pub fn init(&self, device: &Device) -> BceWithLogitsLoss {
        let tensor = |w: &Vec<f32>| Tensor::<1>::from_floats(w.as_slice(), device);
        let config = "BceWithLogitsLossConfig";
        BceWithLogitsLoss {
            weight: self.weight.as_ref().map(tensor),
            weight_shape: config_shape(config, "weight_shape", &self.weight, &self.weight_shape),
            pos_weight: self.pos_weight.as_ref().map(tensor),
            pos_weight_shape: config_shape(
                config,
                "pos_weight_shape",
                &self.pos_weight,
                &self.pos_weight_shape,
            ),
        }
    }
}

/// Binary cross-entropy on logits as a module: PyTorch's `nn.BCEWithLogitsLoss`.
///
/// Built by [`BceWithLogitsLossConfig`]; its methods call
/// [`binary_cross_entropy_with_logits`] and [`binary_cross_entropy_with_logits_no_reduction`].
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `nn.BCEWithLogitsLoss(pos_weight=pw)(x, t)` | `BceWithLogitsLossConfig::new().with_pos_weight(Some(pw)).init(&device).forward(x, t, Reduction::Mean)` |
#[derive(Module, Debug)]
pub struct BceWithLogitsLoss {
    /// The element weights, flat (see `weight_shape`).
    pub weight: Option<Tensor<1>>,
    /// The shape the element weights broadcast from.
    #[module(skip)]
    pub weight_shape: Vec<usize>,
    /// The positive-class weights, flat (see `pos_weight_shape`).
    pub pos_weight: Option<Tensor<1>>,
    /// The shape the positive-class weights broadcast from.
    #[module(skip)]
    pub pos_weight_shape: Vec<usize>,
}

impl BceWithLogitsLoss {
    /// The function options this module stands for.
    pub fn options(&self) -> BceWithLogitsOptions {
        let broadcast = |w: &Option<Tensor<1>>, shape: &Vec<usize>| {
            w.clone()
                .map(|w| BroadcastWeight::from_flat(w, shape.clone()))
        };
        BceWithLogitsOptions {
            weight: broadcast(&self.weight, &self.weight_shape),
            pos_weight: broadcast(&self.pos_weight, &self.pos_weight_shape),
        }
    }

    /// The reduced loss; see [`binary_cross_entropy_with_logits`].
    pub fn forward<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
        reduction: Reduction,
    ) -> Tensor<1> {
        binary_cross_entropy_with_logits(input, target, reduction, &self.options())
    }

    /// The per-element loss in the input's shape; see
    /// [`binary_cross_entropy_with_logits_no_reduction`].
    pub fn forward_no_reduction<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> Tensor<D> {
        binary_cross_entropy_with_logits_no_reduction(input, target, &self.options())
    }
}
