//! Negative log-likelihood: PyTorch's `nn.NLLLoss` and `F.nll_loss`.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use crate::class_layout::{ClassLayout, flat_index_target};
use crate::fused::{ClassIndexKind, Output};
use crate::path::{IndexOptions, Request};
use crate::picked_targets::{PickedTargets, pick_targets};
use crate::reduction::{Reduction, reduce_by};

const FUNCTION: &str = "nll_loss";
const KIND: ClassIndexKind = ClassIndexKind::Nll;

/// Options of [`nll_loss`]: PyTorch's `weight` and `ignore_index`, plus the value check.
#[derive(Clone, Debug)]
pub struct NllLossOptions {
    /// One weight per class, shape `[C]` (PyTorch's `weight`); zeros allowed.
    pub weight: Option<Tensor<1>>,
    /// Targets equal to this value get no loss and no gradient, and do not count in the mean
    /// (PyTorch's `ignore_index`, default -100). Any integer, never gathered.
    pub ignore_index: i64,
    /// Check that every target lies in `[0, C)` or equals `ignore_index` (default `true`).
    pub check_values: bool,
}

impl Default for NllLossOptions {
    fn default() -> Self {
        Self {
            weight: None,
            ignore_index: -100,
            check_values: true,
        }
    }
}

impl NllLossOptions {
    /// PyTorch's defaults: no weight, `ignore_index=-100`, values checked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the per-class weight, shape `[C]`.
    pub fn with_weight(mut self, weight: Tensor<1>) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets the target value that is ignored.
    pub fn with_ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// Switches the target range check on or off.
    pub fn with_check_values(mut self, check_values: bool) -> Self {
        self.check_values = check_values;
        self
    }
}

impl NllLossOptions {
    /// The class-index call as the protocol takes it (`crate::path`).
    fn request<'a, const D: usize, const DT: usize>(
        &'a self,
        input: Tensor<D>,
        target: &'a Tensor<DT, Int>,
        output: Output,
    ) -> Request<'a, D, DT> {
        Request::class_index(FUNCTION, KIND, input, target, self.index(), output)
    }

    /// The options as the protocol takes them.
    fn index(&self) -> IndexOptions<'_> {
        IndexOptions {
            weight: self.weight.as_ref(),
            ignore_index: self.ignore_index,
            label_smoothing: 0.0,
            check_values: self.check_values,
        }
    }
}

/// Negative log-likelihood of the target classes under log-probabilities `input`, reduced to
/// one value.
///
/// `loss_i = -weight[t_i] * input[i, t_i]` (0 where `t_i == ignore_index`); `Mean` divides
/// the sum by the sum of `weight[t_i]` over non-ignored elements, so a batch whose targets
/// are all ignored gives NaN (and a zero gradient), and `Sum` gives 0 for it.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.nll_loss(logp, t)` | `nll_loss(logp, t, Reduction::Mean, &NllLossOptions::new())` |
/// | `F.nll_loss(logp, t, weight=w, ignore_index=0, reduction='sum')` | `nll_loss(logp, t, Reduction::Sum, &NllLossOptions::new().with_weight(w).with_ignore_index(0))` |
///
/// # Shapes
/// - `input`: `[C]`, `[N, C]` or `[N, C, d1, …, dk]`, log-probabilities (class dimension 1)
/// - `target`: `[1]` for an unbatched `[C]` input (PyTorch's scalar), `[N]`, or
///   `[N, d1, …, dk]`; class indices in `[0, C)` or `ignore_index`
/// - `weight`: `[C]`
/// - output: `[1]`
///
/// # Panics
/// - if `target`'s shape is not the one above, or `weight` is not `[C]`;
/// - if `check_values` is on and a target is outside `[0, C)` and not `ignore_index`. The
///   check costs one pass over the target and a read of one value from the device (it waits
///   for the queued work). Switched off, an out-of-range target gives a wrong number on
///   backends whose `gather` does not fail (wgpu returns 0).
pub fn nll_loss<const D: usize, const DT: usize>(
    input: Tensor<D>,
    target: Tensor<DT, Int>,
    reduction: Reduction,
    options: &NllLossOptions,
) -> Tensor<1> {
    let output = Output::Reduced(reduction);
    match options.request(input, &target, output).fused() {
        Ok(loss) => loss,
        Err(input) => {
            let picked = composite_picked(input, target, options);
            reduce_by(picked.nll, reduction, || picked.target_weight.sum())
        }
    }
}

/// Negative log-likelihood per element, PyTorch's `reduction='none'`: the target's shape, 0
/// where the target is ignored.
///
/// See [`nll_loss`] for the formula, shapes, options and panics.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.nll_loss(logp, t, reduction='none')` | `nll_loss_no_reduction(logp, t, &NllLossOptions::new())` |
pub fn nll_loss_no_reduction<const D: usize, const DT: usize>(
    input: Tensor<D>,
    target: Tensor<DT, Int>,
    options: &NllLossOptions,
) -> Tensor<DT> {
    let dims = target.dims();
    match options.request(input, &target, Output::PerElement).fused() {
        Ok(loss) => loss.reshape(dims),
        Err(input) => ClassLayout::output(composite_picked(input, target, options).nll, dims),
    }
}

/// NLL's terms from Burn's generic operations (the reference path).
fn composite_picked<const D: usize, const DT: usize>(
    input: Tensor<D>,
    target: Tensor<DT, Int>,
    options: &NllLossOptions,
) -> PickedTargets {
    let weight = options.weight.as_ref();
    let layout = ClassLayout::new(input);
    if layout.is_empty() {
        return PickedTargets::empty(&layout);
    }
    let target = flat_index_target(&layout, target);
    pick_targets(
        &layout,
        layout.input.clone(),
        target,
        weight,
        options.ignore_index,
    )
}

/// Configuration of [`NllLoss`], PyTorch's `nn.NLLLoss(weight=…, ignore_index=…)`.
#[derive(Config, Debug)]
pub struct NllLossConfig {
    /// One weight per class (PyTorch's `weight`).
    pub weight: Option<Vec<f32>>,
    /// The target value that is ignored (PyTorch's `ignore_index`).
    #[config(default = -100)]
    pub ignore_index: i64,
    /// Check that every target is a class or `ignore_index` before computing.
    #[config(default = true)]
    pub check_values: bool,
}

impl NllLossConfig {
    /// Builds the module on `device`.
    pub fn init(&self, device: &Device) -> NllLoss {
        NllLoss {
            weight: self
                .weight
                .as_ref()
                .map(|w| Tensor::<1>::from_floats(w.as_slice(), device)),
            ignore_index: self.ignore_index,
            check_values: self.check_values,
        }
    }
}

/// Negative log-likelihood as a module: PyTorch's `nn.NLLLoss`.
///
/// Built by [`NllLossConfig`]; its methods call [`nll_loss`] and [`nll_loss_no_reduction`].
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `nn.NLLLoss()(logp, t)` | `NllLossConfig::new().init(&device).forward(logp, t, Reduction::Mean)` |
#[derive(Module, Debug)]
pub struct NllLoss {
    /// One weight per class.
    pub weight: Option<Tensor<1>>,
    /// The target value that is ignored.
    pub ignore_index: i64,
    /// Whether targets are checked to be classes or `ignore_index`.
    pub check_values: bool,
}

impl NllLoss {
    /// The function options this module stands for.
    pub fn options(&self) -> NllLossOptions {
        NllLossOptions {
            weight: self.weight.clone(),
            ignore_index: self.ignore_index,
            check_values: self.check_values,
        }
    }

    /// The reduced loss; see [`nll_loss`] for shapes and panics.
    pub fn forward<const D: usize, const DT: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<DT, Int>,
        reduction: Reduction,
    ) -> Tensor<1> {
        nll_loss(input, target, reduction, &self.options())
    }

    /// The per-element loss in the target's shape; see [`nll_loss_no_reduction`].
    pub fn forward_no_reduction<const D: usize, const DT: usize>(
        &self,
        input: Tensor<D>,
        target: Tensor<DT, Int>,
    ) -> Tensor<DT> {
        nll_loss_no_reduction(input, target, &self.options())
    }
}
