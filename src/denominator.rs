//! The mean's denominator of the class-index losses, for gradient accumulation.

use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::picked_targets::index_target_weights;

/// The number `Reduction::Mean` divides by for class-index targets `target`: the sum of the
/// class weights `weight[t]` of the targets that are not `ignore_index` (their count without
/// a weight), as a `[1]` tensor on the target's device, without computing any loss.
///
/// The same denominator serves [`cross_entropy`](crate::cross_entropy),
/// [`nll_loss`](crate::nll_loss) and [`linear_cross_entropy`](crate::linear_cross_entropy)
/// (with `weight` their class weight and `ignore_index` theirs). Averaging per-micro-batch
/// means is the well-known gradient-accumulation error when micro-batches hold different
/// numbers of real (non-ignored) tokens; summing each micro-batch's `Reduction::Sum` loss and
/// dividing by the total of this function over all micro-batches (and, in data-parallel
/// training, over all workers) gives the large batch's mean exactly.
///
/// PyTorch: `((t != ignore_index) * weight[t.clamp(min=0)]).sum()` (or `(t != ignore_index).sum()`).
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use burn_xent::{CrossEntropyOptions, Reduction, cross_entropy, mean_denominator};
/// let device = Device::ndarray().autodiff();
/// let micro_batches = [
///     (Tensor::<2>::from_floats([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], &device),
///      Tensor::<1, Int>::from_ints([0, -100], &device)), // one real token
///     (Tensor::<2>::from_floats([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.3, 0.3, 0.3]], &device),
///      Tensor::<1, Int>::from_ints([0, 1, 2], &device)), // three real tokens
/// ];
/// let options = CrossEntropyOptions::new();
/// // The global denominator first, from the targets alone (4 real tokens here).
/// let total: Tensor<1> = micro_batches
///     .iter()
///     .map(|(_, t)| mean_denominator(t.clone(), None, options.ignore_index))
///     .reduce(|a, b| a + b)
///     .unwrap();
/// // Then each micro-batch's summed loss over the global total, backward, gradients summed.
/// let mut accumulated = 0.0;
/// for (logits, target) in micro_batches.iter().cloned() {
///     let logits = logits.require_grad();
///     let loss = cross_entropy(logits.clone(), target, Reduction::Sum, &options) / total.clone();
///     let _grads = loss.backward(); // accumulate these (burn::optim::GradientsAccumulator)
///     accumulated += loss.into_scalar::<f32>();
/// }
/// // Equal to the mean over the whole batch of 5 rows (4 real tokens).
/// let logits = Tensor::cat(micro_batches.iter().map(|(x, _)| x.clone()).collect(), 0);
/// let target = Tensor::cat(micro_batches.iter().map(|(_, t)| t.clone()).collect(), 0);
/// let whole = cross_entropy(logits, target, Reduction::Mean, &options).into_scalar::<f32>();
/// assert!((accumulated - whole).abs() < 1e-6);
/// ```
///
/// # Shapes
/// - `target`: class indices of any shape (`[N]`, `[N, d1, …, dk]`, `[1]`)
/// - `weight`: `[C]`, the loss's class weight
/// - output: `[1]`, in `weight`'s float dtype (the device's default float dtype without a weight)
///
/// Class indices are not checked here (the loss checks them); with a weight, an index outside
/// `[0, C)` that is not `ignore_index` gives an unspecified value on backends whose `gather`
/// does not fail.
pub fn mean_denominator<const D: usize>(
    target: Tensor<D, Int>,
    weight: Option<Tensor<1>>,
    ignore_index: i64,
) -> Tensor<1> {
    let dtype = weight
        .as_ref()
        .map_or(DType::from(target.device().settings().float_dtype), |w| {
            w.dtype()
        });
    if target.shape().num_elements() == 0 {
        return Tensor::from_data(TensorData::from([0.0f32]), (&target.device(), dtype));
    }
    index_target_weights(&target, weight.as_ref(), ignore_index, dtype).sum()
}
