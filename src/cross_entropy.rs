//! Cross-entropy on logits: PyTorch's `nn.CrossEntropyLoss` and `F.cross_entropy`, with class
//! indices or class probabilities as targets.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::checks;
use crate::class_layout::{ClassLayout, flat_index_target};
use crate::class_shapes::{check_output_rank, index_target_shape};
use crate::fused::{ClassIndexKind, Output};
use crate::path::{IndexOptions, Request};
use crate::picked_targets::pick_targets;
use crate::reduction::{Reduction, reduce_by, reduce_by_count};

const FUNCTION: &str = "cross_entropy";
const FUNCTION_PROBS: &str = "cross_entropy_with_probs";
const KIND: ClassIndexKind = ClassIndexKind::CrossEntropy;

/// Options of [`cross_entropy`] and [`cross_entropy_with_probs`]: PyTorch's `weight`,
/// `ignore_index` and `label_smoothing`, the value check, and two options PyTorch's function
/// lacks: a logit soft cap (Gemma 2) and a z-loss term (PaLM).
#[derive(Clone, Debug)]
pub struct CrossEntropyOptions {
    /// One weight per class, shape `[C]` (PyTorch's `weight`); zeros allowed.
    pub weight: Option<Tensor<1>>,
    /// Class-index targets equal to this value get no loss and no gradient, and do not count
    /// in the mean (PyTorch's `ignore_index`, default -100). Any integer, never gathered.
    /// Probability targets refuse a non-negative value, as PyTorch does.
    pub ignore_index: i64,
    /// Mixes the target with the uniform distribution: `(1 - ε) target + ε / C`, ε in
    /// `[0, 1]` (PyTorch's `label_smoothing`, default 0).
    pub label_smoothing: f64,
    /// Check that every class index lies in `[0, C)` or equals `ignore_index` (default `true`).
    pub check_values: bool,
    /// Caps the logits before the loss: `x ↦ cap · tanh(x / cap)` (Gemma 2's logit soft
    /// capping; PyTorch: `cap * torch.tanh(x / cap)` on the input first). `None` (the default)
    /// leaves them; a cap must be positive and finite.
    pub softcap: Option<f64>,
    /// The scale of the z-loss term added to each element's loss, `scale · w[t] · lse²`, where
    /// `lse = log Σ_c exp(x_c)` of the (capped) logits and `w[t]` the target's class weight (1
    /// without weights, 0 where ignored), reduced with the loss (PaLM's auxiliary loss,
    /// `1e-4` there). 0 (the default) adds nothing; class-index targets only.
    pub z_loss: f64,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        Self {
            weight: None,
            ignore_index: -100,
            label_smoothing: 0.0,
            check_values: true,
            softcap: None,
            z_loss: 0.0,
        }
    }
}

impl CrossEntropyOptions {
    /// PyTorch's defaults: no weight, `ignore_index=-100`, no smoothing, values checked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the per-class weight, shape `[C]`.
    pub fn with_weight(mut self, weight: Tensor<1>) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets the class-index target value that is ignored.
    pub fn with_ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// Sets the label smoothing ε, in `[0, 1]`.
    pub fn with_label_smoothing(mut self, label_smoothing: f64) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// Switches the target range check on or off.
    pub fn with_check_values(mut self, check_values: bool) -> Self {
        self.check_values = check_values;
        self
    }

    /// Sets the logit soft cap `cap` (`x ↦ cap · tanh(x / cap)`), positive and finite.
    pub fn with_softcap(mut self, cap: f64) -> Self {
        self.softcap = Some(cap);
        self
    }

    /// Sets the z-loss scale (`scale · w[t] · lse²` per element), non-negative.
    pub fn with_z_loss(mut self, scale: f64) -> Self {
        self.z_loss = scale;
        self
    }
}

impl CrossEntropyOptions {
    /// The class-index call as the protocol takes it (`crate::path`).
    fn request<'a, const D: usize, const DT: usize>(
        &'a self,
        input: Tensor<D>,
        target: &'a Tensor<DT, Int>,
        output: Output,
    ) -> Request<'a, D, DT> {
        Request::class_index(FUNCTION, KIND, input, target, self.index(), output)
    }

    /// Checks the soft cap and the z-loss scale, then caps `input` when asked.
    fn capped<const D: usize>(&self, function: &str, input: Tensor<D>) -> Tensor<D> {
        checks::softcap(function, self.softcap);
        checks::z_loss(function, self.z_loss);
        softcap(input, self.softcap)
    }

    /// [`Self::capped`] for probability targets, which refuse a z-loss.
    fn capped_probs<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        assert!(
            self.z_loss == 0.0,
            "{FUNCTION_PROBS}: z_loss: expected 0 (the z-loss is for class-index targets), got {}",
            self.z_loss
        );
        self.capped(FUNCTION_PROBS, input)
    }

    /// The options as the protocol takes them.
    fn index(&self) -> IndexOptions<'_> {
        IndexOptions {
            weight: self.weight.as_ref(),
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            check_values: self.check_values,
        }
    }
}

/// Cross-entropy between the softmax of logits `input` and class-index targets, reduced to
/// one value: `nll_loss(log_softmax(input, 1), target)` with label smoothing.
///
/// `loss_i = (1 - ε) w[t_i] (-log_softmax(x_i)[t_i]) + (ε / C) Σ_c w[c] (-log_softmax(x_i)[c])`
/// (0 where `t_i == ignore_index`). `Mean` divides the sum by the sum of `w[t_i]` over
/// non-ignored elements (their count without weights), as PyTorch does, so a batch whose
/// targets are all ignored gives NaN with a zero gradient, and `Sum` gives 0. The log-softmax
/// subtracts each row's maximum (log-sum-exp), so large logits do not overflow.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.cross_entropy(x, t)` | `cross_entropy(x, t, Reduction::Mean, &CrossEntropyOptions::new())` |
/// | `F.cross_entropy(x, t, weight=w, label_smoothing=0.1)` | `cross_entropy(x, t, Reduction::Mean, &CrossEntropyOptions::new().with_weight(w).with_label_smoothing(0.1))` |
///
/// # Shapes
/// - `input`: `[C]`, `[N, C]` or `[N, C, d1, …, dk]`, logits (class dimension 1)
/// - `target`: `[1]` for an unbatched `[C]` input (PyTorch's scalar), `[N]`, or
///   `[N, d1, …, dk]`; class indices in `[0, C)` or `ignore_index`
/// - `weight`: `[C]`
/// - output: `[1]`
///
/// # Panics
/// - if `target`'s shape is not the one above, `weight` is not `[C]`, or `label_smoothing`
///   is outside `[0, 1]` (PyTorch silently accepts a negative one; burn-xent refuses it);
/// - if `check_values` is on and a target is outside `[0, C)` and not `ignore_index`. The
///   check costs one pass over the target and a read of one value from the device (it waits
///   for the queued work). Switched off, an out-of-range target gives a wrong number on
///   backends whose `gather` does not fail (wgpu returns 0).
pub fn cross_entropy<const D: usize, const DT: usize>(
    input: Tensor<D>,
    target: Tensor<DT, Int>,
    reduction: Reduction,
    options: &CrossEntropyOptions,
) -> Tensor<1> {
    cross_entropy_with_z_loss(input, target, reduction, options).loss
}

/// [`cross_entropy`], also returning its z-loss term apart, for logging: the value of
/// `options.z_loss` (0 when the scale is 0).
///
/// `loss` is what [`cross_entropy`] returns (the z-loss included); `z_loss` is the z-loss term
/// alone, reduced the same way (for `Mean`: `Σ scale · w[t] · lse² / Σ w[t]`). Both carry
/// gradients; log `z_loss` with `into_scalar()` or `detach()` it.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `x = 30 * torch.tanh(x / 30); lse = x.logsumexp(1); F.cross_entropy(x, t) + 1e-4 * (lse ** 2).mean()` | `cross_entropy_with_z_loss(x, t, Reduction::Mean, &CrossEntropyOptions::new().with_softcap(30.0).with_z_loss(1e-4))` |
///
/// # Shapes and panics
/// Those of [`cross_entropy`]; also panics if `softcap` is not positive and finite or
/// `z_loss` is negative or not finite.
pub fn cross_entropy_with_z_loss<const D: usize, const DT: usize>(
    input: Tensor<D>,
    target: Tensor<DT, Int>,
    reduction: Reduction,
    options: &CrossEntropyOptions,
) -> LossWithZLoss {
    let input = options.capped(FUNCTION, input);
    let output = Output::Reduced(reduction);
    let z = (options.z_loss > 0.0).then(|| z_loss_terms(&input, &target, options));
    let loss = match options.request(input, &target, output).fused() {
        Ok(loss) => loss,
        Err(input) => {
            let terms = composite_index_terms(input, target, options);
            reduce_by(terms.loss, reduction, || terms.target_weight.sum())
        }
    };
    match z {
        Some(z) => {
            let z = reduce_by(z.loss, reduction, || z.target_weight.sum());
            LossWithZLoss {
                loss: loss + z.clone(),
                z_loss: z,
            }
        }
        None => LossWithZLoss {
            z_loss: loss.zeros_like(),
            loss,
        },
    }
}

/// A reduced loss with a z-loss term, and the term alone (for logging): what
/// [`cross_entropy_with_z_loss`] and `linear_cross_entropy_with_z_loss` return.
#[derive(Clone, Debug)]
pub struct LossWithZLoss {
    /// The loss, z-loss included, `[1]`.
    pub loss: Tensor<1>,
    /// The z-loss term alone, reduced as the loss is, `[1]` (0 without a z-loss).
    pub z_loss: Tensor<1>,
}

/// `cap · tanh(x / cap)` when a cap is set, `x` otherwise.
pub(crate) fn softcap<const D: usize>(x: Tensor<D>, cap: Option<f64>) -> Tensor<D> {
    match cap {
        Some(cap) =>
        // Times 1 / cap, not divided by cap: Burn 0.21's `div_scalar` gradient rounds the
        // divisor's reciprocal to f32.
        {
            x.mul_scalar(1.0 / cap).tanh().mul_scalar(cap)
        }
        None => x,
    }
}

/// The z-loss per element, `scale · w[t] · lse²` on the `[N, S]` grid (0 where ignored), and
/// the target weights the mean divides by; Burn's generic operations on every path.
fn z_loss_terms<const D: usize, const DT: usize>(
    input: &Tensor<D>,
    target: &Tensor<DT, Int>,
    options: &CrossEntropyOptions,
) -> IndexTerms {
    let layout = ClassLayout::new(input.clone());
    if layout.is_empty() {
        return IndexTerms {
            loss: layout.empty_grid(),
            target_weight: layout.empty_grid(),
        };
    }
    let target = flat_index_target(&layout, target.clone());
    let lse = crate::workarounds::log_sum_exp(layout.input.clone(), 1)
        .reshape([layout.batch, layout.spatial]);
    let target_weight = crate::picked_targets::index_target_weights(
        &target,
        options.weight.as_ref(),
        options.ignore_index,
        lse.dtype(),
    );
    let loss = lse
        .powi_scalar(2)
        .mul(target_weight.clone())
        .mul_scalar(options.z_loss);
    IndexTerms {
        loss,
        target_weight,
    }
}

/// Cross-entropy with class-index targets per element, PyTorch's `reduction='none'`: the
/// target's shape, 0 where the target is ignored.
///
/// See [`cross_entropy`] for the formula, shapes, options and panics.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.cross_entropy(x, t, reduction='none')` | `cross_entropy_no_reduction(x, t, &CrossEntropyOptions::new())` |
pub fn cross_entropy_no_reduction<const D: usize, const DT: usize>(
    input: Tensor<D>,
    target: Tensor<DT, Int>,
    options: &CrossEntropyOptions,
) -> Tensor<DT> {
    let dims = target.dims();
    let input = options.capped(FUNCTION, input);
    let nonempty = input.shape().num_elements() > 0;
    let z = (options.z_loss > 0.0 && nonempty).then(|| z_loss_terms(&input, &target, options));
    let loss = match options.request(input, &target, Output::PerElement).fused() {
        Ok(loss) => loss.reshape(dims),
        Err(input) => ClassLayout::output(composite_index_terms(input, target, options).loss, dims),
    };
    match z {
        Some(z) => loss + ClassLayout::output(z.loss, dims),
        None => loss,
    }
}

/// The per-element loss and the weights the mean divides by, on the `[N, S]` grid.
struct IndexTerms {
    loss: Tensor<2>,
    target_weight: Tensor<2>,
}

/// Cross-entropy's terms from Burn's generic operations (the reference path).
fn composite_index_terms<const D: usize, const DT: usize>(
    input: Tensor<D>,
    target: Tensor<DT, Int>,
    options: &CrossEntropyOptions,
) -> IndexTerms {
    let weight = options.weight.as_ref();
    let layout = ClassLayout::new(input);
    if layout.is_empty() {
        return IndexTerms {
            loss: layout.empty_grid(),
            target_weight: layout.empty_grid(),
        };
    }
    let target = flat_index_target(&layout, target);
    let log_probs = layout.log_softmax();
    let picked = pick_targets(
        &layout,
        log_probs.clone(),
        target,
        weight,
        options.ignore_index,
    );
    let smoothing = options.label_smoothing;
    let loss = if smoothing > 0.0 {
        // PyTorch's smoothing term: -Σ_c w[c] log p_c, masked where ignored.
        let weighted = match weight {
            Some(weight) => log_probs * layout.per_class(weight),
            None => log_probs,
        };
        let uniform = weighted
            .sum_dim(1)
            .reshape([layout.batch, layout.spatial])
            .neg()
            .mask_fill(picked.ignored, 0.0);
        picked.nll.mul_scalar(1.0 - smoothing)
            + uniform.mul_scalar(smoothing / layout.classes as f64)
    } else {
        picked.nll
    };
    IndexTerms {
        loss,
        target_weight: picked.target_weight,
    }
}

/// Cross-entropy between the softmax of logits `input` and class probabilities `target`,
/// reduced to one value; PyTorch's `F.cross_entropy` with a float target of the input's shape.
///
/// `loss_i = -Σ_c w[c] q_ic log_softmax(x_i)[c]` with `q = (1 - ε) target + ε / C`. Unlike
/// class-index targets, `Mean` divides by the number of elements `N × d1 × … × dk`, not by the
/// weights (PyTorch's rule); the mean of an empty batch is NaN.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.cross_entropy(x, probs)` | `cross_entropy_with_probs(x, probs, Reduction::Mean, &CrossEntropyOptions::new())` |
///
/// # Shapes
/// - `input`: `[C]`, `[N, C]` or `[N, C, d1, …, dk]`, logits (class dimension 1)
/// - `target`: the input's shape, class probabilities (not checked, as in PyTorch)
/// - `weight`: `[C]`
/// - output: `[1]`
///
/// # Panics
/// If `target`'s shape differs from `input`'s, `weight` is not `[C]`, `label_smoothing` is
/// outside `[0, 1]`, or `ignore_index` is not negative (PyTorch: "ignore_index is not
/// supported for floating point target"). No value is read from the device.
pub fn cross_entropy_with_probs<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    reduction: Reduction,
    options: &CrossEntropyOptions,
) -> Tensor<1> {
    let input = options.capped_probs(input);
    let output = Output::Reduced(reduction);
    let request = Request::class_probs(FUNCTION_PROBS, input, &target, options.index(), output);
    match request.fused() {
        Ok(loss) => loss,
        Err(input) => {
            let (loss, elements) = composite_probs_terms(input, target, options);
            reduce_by_count(loss, reduction, elements)
        }
    }
}

/// Cross-entropy with probability targets per element, PyTorch's `reduction='none'`: the
/// input's shape without the class dimension (`[1]` for an unbatched `[C]` input), as a
/// tensor of rank `DO`, which must be `D - 1` (1 when `D` is 1).
///
/// See [`cross_entropy_with_probs`] for the formula, options and panics; it also panics if
/// `DO` is not that rank.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.cross_entropy(x, probs, reduction='none')` | `cross_entropy_with_probs_no_reduction::<_, 2, 1>(x, probs, &CrossEntropyOptions::new())` |
pub fn cross_entropy_with_probs_no_reduction<const D: usize, const DO: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    options: &CrossEntropyOptions,
) -> Tensor<DO> {
    check_output_rank::<D, DO>(FUNCTION_PROBS);
    let dims: [usize; DO] = index_target_shape(&input.dims())
        .try_into()
        .expect("rank checked above");
    let input = options.capped_probs(input);
    let request = Request::class_probs(
        FUNCTION_PROBS,
        input,
        &target,
        options.index(),
        Output::PerElement,
    );
    match request.fused() {
        Ok(loss) => loss.reshape(dims),
        Err(input) => ClassLayout::output(composite_probs_terms(input, target, options).0, dims),
    }
}

/// Cross-entropy's per-element loss with probability targets on the `[N, S]` grid and the
/// number of elements, from Burn's generic operations (the reference path).
fn composite_probs_terms<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    options: &CrossEntropyOptions,
) -> (Tensor<2>, usize) {
    let layout = ClassLayout::new(input);
    if layout.is_empty() {
        return (layout.empty_grid(), 0);
    }
    let target = ClassLayout::new(target).input;
    let smoothing = options.label_smoothing;
    let target = if smoothing > 0.0 {
        target.mul_scalar(1.0 - smoothing) + smoothing / layout.classes as f64
    } else {
        target
    };
    let log_probs = layout.log_softmax();
    let product = log_probs * target;
    let product = match &options.weight {
        Some(weight) => product * layout.per_class(weight),
        None => product,
    };
    let loss = product
        .sum_dim(1)
        .reshape([layout.batch, layout.spatial])
        .neg();
    (loss, layout.elements())
}

/// Configuration of [`CrossEntropyLoss`], PyTorch's
/// `nn.CrossEntropyLoss(weight=…, ignore_index=…, label_smoothing=…)`.
#[derive(Config, Debug)]
pub struct CrossEntropyLossConfig {
    /// One weight per class (PyTorch's `weight`).
    pub weight: Option<Vec<f32>>,
    /// The class-index target value that is ignored (PyTorch's `ignore_index`).
    #[config(default = -100)]
    pub ignore_index: i64,
    /// Label smoothing ε in `[0, 1]` (PyTorch's `label_smoothing`).
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// Check that every class index is a class or `ignore_index` before computing.
    #[config(default = true)]
    pub check_values: bool,
    /// The logit soft cap (`x ↦ cap · tanh(x / cap)`), positive; none by default.
    #[config(default = "None")]
    pub softcap: Option<f64>,
    /// The z-loss scale (`scale · w[t] · lse²` per element), non-negative; 0 by default.
    #[config(default = 0.0)]
    pub z_loss: f64,
}

impl CrossEntropyLossConfig {
    /// Builds the module on `device`.
    ///
    /// # Panics
    /// If `label_smoothing` is outside `[0, 1]`.
    pub fn init(&self, device: &Device) -> CrossEntropyLoss {
        let function = "CrossEntropyLossConfig::init";
        checks::label_smoothing(function, self.label_smoothing);
        checks::softcap(function, self.softcap);
        checks::z_loss(function, self.z_loss);
        CrossEntropyLoss {
            weight: self
                .weight
                .as_ref()
                .map(|w| Tensor::<1>::from_floats(w.as_slice(), device)),
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            check_values: self.check_values,
            softcap: self.softcap,
            z_loss: self.z_loss,
        }
    }
}

/// Cross-entropy on logits as a module: PyTorch's `nn.CrossEntropyLoss`.
///
/// Built by [`CrossEntropyLossConfig`]; `forward` and `forward_no_reduction` take class
/// indices and call [`cross_entropy`] and [`cross_entropy_no_reduction`]; `forward_probs` and
/// `forward_probs_no_reduction` take class probabilities and call [`cross_entropy_with_probs`]
/// and [`cross_entropy_with_probs_no_reduction`].
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `nn.CrossEntropyLoss(label_smoothing=0.1)(x, t)` | `CrossEntropyLossConfig::new().with_label_smoothing(0.1).init(&device).forward(x, t, Reduction::Mean)` |
#[derive(Module, Debug)]
pub struct CrossEntropyLoss {
    /// One weight per class.
    pub weight: Option<Tensor<1>>,
    /// The class-index target value that is ignored.
    pub ignore_index: i64,
    /// Label smoothing ε.
    pub label_smoothing: f64,
    /// Whether class indices are checked.
    pub check_values: bool,
    /// The logit soft cap.
    pub softcap: Option<f64>,
    /// The z-loss scale.
    pub z_loss: f64,
}

impl CrossEntropyLoss {
    /// The function options this module stands for.
    pub fn options(&self) -> CrossEntropyOptions {
        CrossEntropyOptions {
            weight: self.weight.clone(),
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            check_values: self.check_values,
            softcap: self.softcap,
            z_loss: self.z_loss,
        }
    }

    /// The reduced loss with class-index targets; see [`cross_entropy`].
    pub fn forward<const D: usize, const DT: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<DT, Int>,
        reduction: Reduction,
    ) -> Tensor<1> {
        cross_entropy(input, target, reduction, &self.options())
    }

    /// The reduced loss and its z-loss term apart; see [`cross_entropy_with_z_loss`].
    pub fn forward_with_z_loss<const D: usize, const DT: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<DT, Int>,
        reduction: Reduction,
    ) -> LossWithZLoss {
        cross_entropy_with_z_loss(input, target, reduction, &self.options())
    }

    /// The per-element loss with class-index targets; see [`cross_entropy_no_reduction`].
    pub fn forward_no_reduction<const D: usize, const DT: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<DT, Int>,
    ) -> Tensor<DT> {
        cross_entropy_no_reduction(input, target, &self.options())
    }

    /// The reduced loss with probability targets; see [`cross_entropy_with_probs`]. The
    /// module's `ignore_index` must be negative (the default -100 is).
    pub fn forward_probs<const D: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
        reduction: Reduction,
    ) -> Tensor<1> {
        cross_entropy_with_probs(input, target, reduction, &self.options())
    }

    /// The per-element loss with probability targets, rank `DO = D - 1`; see
    /// [`cross_entropy_with_probs_no_reduction`].
    pub fn forward_probs_no_reduction<const D: usize, const DO: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<D>,
    ) -> Tensor<DO> {
        cross_entropy_with_probs_no_reduction(input, target, &self.options())
    }
}
