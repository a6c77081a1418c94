//! The front the two binary losses share (BCE on probabilities, BCE with logits): the
//! protocol's request, then the composite path when no kernel ran, reduced or per element.

use burn::tensor::{Bool, Tensor};

use crate::fused::Output;
use crate::path::Request;
use crate::reduction::{Reduction, reduce_by_count};

/// What a binary loss's options provide to the shared front.
pub(crate) trait BinaryLoss {
    /// The call as the protocol takes it (`crate::path`).
    fn request<'a, const D: usize>(
        &'a self,
        input: Tensor<D>,
        target: &'a Tensor<D>,
        output: Output,
    ) -> Request<'a, D, D>;

    /// The per-element loss from Burn's generic operations (the reference path).
    fn composite<const D: usize>(&self, input: Tensor<D>, target: Tensor<D>) -> Tensor<D>;
}

/// The loss reduced to `[1]`: the fused kernel's, or the composite one's mean or sum over
/// every element.
pub(crate) fn reduced<const D: usize>(
    loss: &impl BinaryLoss,
    input: Tensor<D>,
    target: Tensor<D>,
    reduction: Reduction,
) -> Tensor<1> {
    let count = input.shape().num_elements();
    match loss
        .request(input, &target, Output::Reduced(reduction))
        .fused()
    {
        Ok(fused) => fused,
        Err(input) => reduce_by_count(loss.composite(input, target), reduction, count),
    }
}

/// The loss per element, in the input's shape.
pub(crate) fn per_element<const D: usize>(
    loss: &impl BinaryLoss,
    input: Tensor<D>,
    target: Tensor<D>,
) -> Tensor<D> {
    let dims = input.dims();
    match loss.request(input, &target, Output::PerElement).fused() {
        Ok(fused) => fused.reshape(dims),
        Err(input) => loss.composite(input, target),
    }
}

/// `(tracked - value(tracked)) slope`: zero in value, with the derivative `slope` with respect
/// to `tracked`, the gradient PyTorch's backward computes (autodiff of the formula would give
/// another, or distribute a product over terms: `inf · a + inf · b` is NaN where PyTorch's
/// `inf · (a + b)` is not). Zero in value and gradient where `skip` is set (infinite entries,
/// where `inf - inf` would be NaN); `None` when `tracked` carries no gradient.
pub(crate) fn chosen_slope<const D: usize>(
    tracked: &Tensor<D>,
    slope: Tensor<D>,
    skip: Option<&Tensor<D, Bool>>,
) -> Option<Tensor<D>> {
    if !tracked.is_tracked() {
        return None;
    }
    let zero = tracked.clone() - tracked.clone().detach();
    // Both factors masked: `0 · inf` would be NaN in the value, and in the gradient.
    Some(match skip {
        Some(skip) => zero.mask_fill(skip.clone(), 0.0) * slope.mask_fill(skip.clone(), 0.0),
        None => zero * slope,
    })
}

/// `value` plus each tracked tensor's [`chosen_slope`] term.
pub(crate) fn with_slopes<const D: usize, const N: usize>(
    value: Tensor<D>,
    slopes: [(Option<&Tensor<D>>, Tensor<D>); N],
    skip: Option<&Tensor<D, Bool>>,
) -> Tensor<D> {
    slopes
        .into_iter()
        .filter_map(|(tracked, slope)| chosen_slope(tracked?, slope, skip))
        .fold(value, |sum, term| sum + term)
}
