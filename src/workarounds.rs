//! Guards against Burn 0.21 backend bugs, kept in one place so they can go when Burn fixes
//! them.
//!
//! Burn 0.21's cube backends (wgpu) panic on zero-sized tensors in parts of the loss graph
//! (an underflow in `burn-cubecl`'s contiguity check, reached from `log_softmax` and from
//! the graph's later execution), and the panic leaves the device's fusion stream unusable for
//! the rest of the process. An empty batch is legal in PyTorch (mean NaN, sum 0, an empty
//! per-element loss), so for an input with no elements the losses build their result from
//! host data and run no tensor operation on the empty input. The result does not depend on
//! the input, so Burn reports no gradient for it (`grad` returns `None`; PyTorch returns an
//! empty gradient).

use burn::tensor::{Bool, Tensor, TensorData, backend::Backend};

use crate::reduction::Reduction;

/// True when `tensor` has no elements.
pub(crate) fn is_empty<B: Backend, const D: usize>(tensor: &Tensor<B, D>) -> bool {
    tensor.shape().num_elements() == 0
}

/// An empty per-element loss of shape `dims` (which holds a 0), made from host data on the
/// device and in the float dtype of `like`.
pub(crate) fn empty_loss<B: Backend, const D: usize, const DL: usize>(
    dims: [usize; D],
    like: &Tensor<B, DL>,
) -> Tensor<B, D> {
    let data = TensorData::new(Vec::<f32>::new(), dims);
    Tensor::from_data(data, (&like.device(), like.dtype()))
}

/// An empty boolean mask of shape `dims` (which holds a 0), made from host data on the device
/// of `like`.
pub(crate) fn empty_mask<B: Backend, const D: usize, const DL: usize>(
    dims: [usize; D],
    like: &Tensor<B, DL>,
) -> Tensor<B, D, Bool> {
    Tensor::from_data(TensorData::new(Vec::<bool>::new(), dims), &like.device())
}

/// The reduction of an empty loss, PyTorch's: NaN for the mean, 0 for the sum, on the
/// device and in the float dtype of `like`.
pub(crate) fn empty_reduced<B: Backend, const DL: usize>(
    reduction: Reduction,
    like: &Tensor<B, DL>,
) -> Tensor<B, 1> {
    let value = match reduction {
        Reduction::Mean => f32::NAN,
        Reduction::Sum => 0.0,
    };
    Tensor::from_data(TensorData::from([value]), (&like.device(), like.dtype()))
}
