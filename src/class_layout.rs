//! The shared machinery of the losses whose class dimension is 1 (cross-entropy and NLL):
//! PyTorch's shape rules, a canonical `[N, C, S]` view of any input rank, and the masked,
//! weighted pick of each target's log-probability.

use burn::tensor::{Bool, Int, Tensor, backend::Backend};

use crate::workarounds;

/// An input of shape `[C]`, `[N, C]` or `[N, C, d1, …, dk]` seen as `[N, C, S]`, where `S` is
/// the product of the `d`s (1 when there are none). Every class-dimension loss is computed on
/// this view and reshaped back, so the math is written once for every rank.
pub(crate) struct ClassLayout<B: Backend> {
    /// The input as `[N, C, S]`.
    pub input: Tensor<B, 3>,
    pub batch: usize,
    pub classes: usize,
    pub spatial: usize,
}

impl<B: Backend> ClassLayout<B> {
    /// The `[N, C, S]` view of `input`; an unbatched `[C]` input becomes `[1, C, 1]`.
    pub fn new<const D: usize>(input: Tensor<B, D>) -> Self {
        let (batch, classes, spatial) = class_dims(&input.dims());
        Self {
            input: input.reshape([batch, classes, spatial]),
            batch,
            classes,
            spatial,
        }
    }

    /// `log_softmax` over the class dimension of the `[N, C, S]` input.
    pub fn log_softmax(&self) -> Tensor<B, 3> {
        burn::tensor::activation::log_softmax(self.input.clone(), 1)
    }

    /// True when the input has no elements: the losses then skip the math (see
    /// [`workarounds`]).
    pub fn is_empty(&self) -> bool {
        workarounds::is_empty(&self.input)
    }

    /// An empty `[N, S]` grid, for an empty input.
    pub fn empty_grid(&self) -> Tensor<B, 2> {
        workarounds::empty_loss([self.batch, self.spatial], &self.input)
    }

    /// The terms of an empty input, built without touching the device.
    pub fn empty_picked(&self) -> PickedTargets<B> {
        PickedTargets {
            ignored: workarounds::empty_mask([self.batch, self.spatial], &self.input),
            target_weight: self.empty_grid(),
            nll: self.empty_grid(),
        }
    }

    /// The number of elements that get a loss, `N × S`.
    pub fn elements(&self) -> usize {
        self.batch * self.spatial
    }

    /// A `[1, C, 1]` view of a per-class weight in the input's dtype, for broadcasting
    /// against the input.
    pub fn per_class(&self, weight: &Tensor<B, 1>) -> Tensor<B, 3> {
        weight
            .clone()
            .cast(self.input.dtype())
            .reshape([1, self.classes, 1])
    }

    /// An `[N, S]` tensor reshaped to the loss's output shape `dims`.
    pub fn output<const DO: usize>(loss: Tensor<B, 2>, dims: [usize; DO]) -> Tensor<B, DO> {
        if workarounds::is_empty(&loss) {
            return workarounds::empty_loss(dims, &loss);
        }
        loss.reshape(dims)
    }
}

/// `(N, C, S)` of an input of shape `[C]`, `[N, C]` or `[N, C, d1, …, dk]`.
pub(crate) fn class_dims(dims: &[usize]) -> (usize, usize, usize) {
    match dims.len() {
        1 => (1, dims[0], 1),
        _ => (dims[0], dims[1], dims[2..].iter().product()),
    }
}

/// The shape PyTorch expects of a class-index target for an input of shape `input`:
/// `[N, d1, …, dk]`, or `[1]` (Burn's stand-in for PyTorch's scalar) for an unbatched `[C]`.
pub(crate) fn index_target_shape(input: &[usize]) -> Vec<usize> {
    match input.len() {
        1 => vec![1],
        _ => [&input[..1], &input[2..]].concat(),
    }
}

/// Panics unless `target` has the shape [`index_target_shape`] gives for `input`.
pub(crate) fn check_index_target(function: &str, input: &[usize], target: &[usize]) {
    let expected = index_target_shape(input);
    assert!(
        target == expected.as_slice(),
        "{function}: target: expected shape {expected:?} for an input of shape {input:?} \
         (class dimension {}), got {target:?}",
        if input.len() == 1 { 0 } else { 1 }
    );
}

/// Panics unless the output rank `DO` can hold the per-element loss of an input of rank `D`.
pub(crate) fn check_output_rank<const D: usize, const DO: usize>(function: &str) {
    let expected = if D == 1 { 1 } else { D - 1 };
    assert!(
        DO == expected,
        "{function}: output: expected rank {expected} for an input of rank {D} (the input's \
         shape without the class dimension), got rank {DO}"
    );
}

/// Per-element terms of a class-index loss on the `[N, S]` grid.
pub(crate) struct PickedTargets<B: Backend> {
    /// Where the target equals `ignore_index`.
    pub ignored: Tensor<B, 2, Bool>,
    /// The weight of each element's target class (1 without weights), 0 where ignored: the
    /// weighted mean divides by their sum.
    pub target_weight: Tensor<B, 2>,
    /// `-weight[t] * log_probs[t]` per element, 0 where ignored: PyTorch's NLL.
    pub nll: Tensor<B, 2>,
}

/// Picks each element's target log-probability out of the `[N, C, S]` `log_probs`, weighted
/// and masked as PyTorch's `nll_loss` does. Ignored targets are replaced by class 0 before
/// the gather, so `ignore_index` is never gathered, whatever its value.
pub(crate) fn pick_targets<B: Backend>(
    layout: &ClassLayout<B>,
    log_probs: Tensor<B, 3>,
    target: Tensor<B, 2, Int>,
    weight: Option<&Tensor<B, 1>>,
    ignore_index: i64,
) -> PickedTargets<B> {
    let [n, s] = [layout.batch, layout.spatial];
    let ignored = target.clone().equal_elem(ignore_index);
    let safe_target = target.mask_fill(ignored.clone(), 0);
    let picked = log_probs
        .gather(1, safe_target.clone().reshape([n, 1, s]))
        .reshape([n, s]);
    let target_weight = match weight {
        Some(weight) => weight
            .clone()
            .cast(picked.dtype())
            .gather(0, safe_target.reshape([n * s]))
            .reshape([n, s])
            .mask_fill(ignored.clone(), 0.0),
        None => picked.ones_like().mask_fill(ignored.clone(), 0.0),
    };
    let nll = picked
        .neg()
        .mul(target_weight.clone())
        .mask_fill(ignored.clone(), 0.0);
    PickedTargets {
        ignored,
        target_weight,
        nll,
    }
}

/// The class-index target as `[N, S]`.
pub(crate) fn flat_index_target<B: Backend, const DT: usize>(
    layout: &ClassLayout<B>,
    target: Tensor<B, DT, Int>,
) -> Tensor<B, 2, Int> {
    target.reshape([layout.batch, layout.spatial])
}
