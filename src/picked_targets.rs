//! The composite path's pick of each target's log-probability for the class-index losses
//! (cross-entropy, NLL): masked by `ignore_index` and weighted per class, as PyTorch's
//! `nll_loss` does.

use burn::tensor::{Bool, Int, Tensor};

use crate::class_layout::ClassLayout;

/// Per-element terms of a class-index loss on the `[N, S]` grid.
pub(crate) struct PickedTargets {
    /// Where the target equals `ignore_index`.
    pub ignored: Tensor<2, Bool>,
    /// The weight of each element's target class (1 without weights), 0 where ignored: the
    /// weighted mean divides by their sum.
    pub target_weight: Tensor<2>,
    /// `-weight[t] * log_probs[t]` per element, 0 where ignored: PyTorch's NLL.
    pub nll: Tensor<2>,
}

impl PickedTargets {
    /// The terms of an empty input, built without touching the device.
    pub(crate) fn empty(layout: &ClassLayout) -> Self {
        Self {
            ignored: crate::workarounds::empty_mask([layout.batch, layout.spatial], &layout.input),
            target_weight: layout.empty_grid(),
            nll: layout.empty_grid(),
        }
    }
}

/// Picks each element's target log-probability out of the `[N, C, S]` `log_probs`, weighted
/// and masked as PyTorch's `nll_loss` does. Ignored targets are replaced by class 0 before
/// the gather, so `ignore_index` is never gathered, whatever its value.
pub(crate) fn pick_targets(
    layout: &ClassLayout,
    log_probs: Tensor<3>,
    target: Tensor<2, Int>,
    weight: Option<&Tensor<1>>,
    ignore_index: i64,
) -> PickedTargets {
    let [n, s] = [layout.batch, layout.spatial];
    let ignored = target.clone().equal_elem(ignore_index);
    let safe_target = target.mask_fill(ignored.clone(), 0);
    let picked = log_probs
        .gather(1, safe_target.clone().reshape([n, 1, s]))
        .reshape([n, s]);
    let target_weight = target_weights(&picked, safe_target, ignored.clone(), weight);
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

/// The weight of each element's target class (1 without weights), 0 where `ignored`, on the
/// grid of `like` (whose dtype it takes): `safe_target` holds class indices, with ignored
/// targets already replaced by a valid class.
pub(crate) fn target_weights<const D: usize>(
    like: &Tensor<D>,
    safe_target: Tensor<D, Int>,
    ignored: Tensor<D, Bool>,
    weight: Option<&Tensor<1>>,
) -> Tensor<D> {
    match weight {
        Some(weight) => {
            let dims = safe_target.dims();
            let count = safe_target.shape().num_elements();
            weight
                .clone()
                .cast(like.dtype())
                .gather(0, safe_target.reshape([count]))
                .reshape(dims)
                .mask_fill(ignored, 0.0)
        }
        None => like.ones_like().mask_fill(ignored, 0.0),
    }
}

/// [`target_weights`] of a class-index `target` of any shape, in `dtype` on `target`'s device:
/// each non-ignored target's class weight, 0 where the target is `ignore_index`.
pub(crate) fn index_target_weights<const D: usize>(
    target: &Tensor<D, Int>,
    weight: Option<&Tensor<1>>,
    ignore_index: i64,
    dtype: burn::tensor::DType,
) -> Tensor<D> {
    let ignored = target.clone().equal_elem(ignore_index);
    let safe_target = target.clone().mask_fill(ignored.clone(), 0);
    let like = Tensor::<D>::zeros(target.shape(), (&target.device(), dtype));
    target_weights(&like, safe_target, ignored, weight)
}
