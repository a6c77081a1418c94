//! How a loss's per-element values are reduced to one number.

use burn::config::Config;
use burn::tensor::{Tensor, TensorData};

use crate::workarounds;

/// How a reduced loss combines its per-element values; PyTorch's `reduction='mean'` and
/// `reduction='sum'`.
///
/// PyTorch's `reduction='none'` is the `*_no_reduction` form of each function and the
/// `forward_no_reduction` method of each module, which return the per-element loss in
/// PyTorch's shape. This follows burn-nn's `MseLoss` (`forward(…, reduction)` and
/// `forward_no_reduction`), so a reduced loss is always a `Tensor<1>` of shape `[1]`
/// (PyTorch returns a 0-dimensional tensor; Burn has none).
///
/// What `Mean` divides by depends on the loss, exactly as in PyTorch: the number of elements
/// for the two BCEs and for cross-entropy with probability targets, and the sum of the
/// targets' class weights over non-ignored elements for cross-entropy and NLL with class
/// indices (the count of non-ignored elements without weights).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// The (weighted) mean of the per-element losses; PyTorch's default, `reduction='mean'`.
    Mean,
    /// The sum of the per-element losses; `reduction='sum'`.
    Sum,
}

// Written out: `#[derive(Default)]` with `#[default]` does not compile next to
// `#[derive(Config)]`.
#[allow(clippy::derivable_impls)]
impl Default for Reduction {
    fn default() -> Self {
        Self::Mean
    }
}

/// Sums `loss` and, for [`Reduction::Mean`], divides by `divisor`.
///
/// `divisor` is a one-element tensor so that weighted means stay on the device; dividing by
/// zero gives NaN for a fully ignored batch, as PyTorch does. An empty loss gives PyTorch's
/// NaN (mean) or 0 (sum) without touching the device (see [`workarounds`]).
pub(crate) fn reduce_by<const D: usize>(
    loss: Tensor<D>,
    reduction: Reduction,
    divisor: impl FnOnce() -> Tensor<1>,
) -> Tensor<1> {
    if workarounds::is_empty(&loss) {
        return empty_reduced(reduction, &loss);
    }
    match reduction {
        Reduction::Sum => loss.sum(),
        Reduction::Mean => loss.sum().div(divisor()),
    }
}

/// Sums `loss` and, for [`Reduction::Mean`], divides by `count` (NaN when `count` is 0).
pub(crate) fn reduce_by_count<const D: usize>(
    loss: Tensor<D>,
    reduction: Reduction,
    count: usize,
) -> Tensor<1> {
    if count == 0 {
        return empty_reduced(reduction, &loss);
    }
    match reduction {
        Reduction::Sum => loss.sum(),
        // Divide by a tensor, not `div_scalar`: Burn 0.21's `div_scalar` gradient rounds
        // the divisor's reciprocal to f32, which f64 losses would inherit.
        Reduction::Mean => {
            let sum = loss.sum();
            let count = Tensor::<1>::from_data(
                burn::tensor::TensorData::from([count as f64]),
                (&sum.device(), sum.dtype()),
            );
            sum.div(count)
        }
    }
}

/// The reduction of an empty loss, PyTorch's: NaN for the mean, 0 for the sum, on the
/// device and in the float dtype of `like`, from host data (no operation on the empty loss:
/// see [`workarounds`]).
pub(crate) fn empty_reduced<const DL: usize>(reduction: Reduction, like: &Tensor<DL>) -> Tensor<1> {
    let value = match reduction {
        Reduction::Mean => f32::NAN,
        Reduction::Sum => 0.0,
    };
    Tensor::from_data(TensorData::from([value]), (&like.device(), like.dtype()))
}
