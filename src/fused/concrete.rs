//! The crossing between Burn 0.22's dispatch tensors and the primitives of one concrete
//! backend `X` with fused kernels, and of `Autodiff<X>`.
//!
//! A `Tensor<D>` holds a [`DispatchTensor`], whose variant says the backend; Burn's
//! [`DispatchKindConversion`] (the conversion behind `Tensor::try_into_primitive` and
//! `Tensor::from_primitive`, which Burn documents for backend extensions) takes the primitive
//! out and puts it back. The fused layer is entered only for a device whose backend is `X`
//! (`fused::kernels_for`), so the input's conversion cannot fail; a target or a weight on
//! another backend, or with another autodiff context, converts to `None` and the loss takes
//! the composite path.

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{
    Backend, BackendTensor, DispatchAutodiffContext, DispatchKindConversion, DispatchTensor,
};
use burn::tensor::{Int, Tensor};

/// A backend whose primitives cross to and from [`DispatchTensor`]s: every backend of the
/// dispatch (`NdArray`, `Flex`, `Cube`, …).
pub(crate) trait Concrete: Backend {
    /// The float primitive of `tensor`, when it lives on this backend untracked.
    fn float(tensor: DispatchTensor) -> Option<FloatTensor<Self>>;
    /// The integer primitive of `tensor` on this backend, whatever its autodiff context
    /// (integer primitives are the same with or without autodiff).
    fn int(tensor: DispatchTensor) -> Option<IntTensor<Self>>;
    /// `primitive` as a dispatch tensor (untracked).
    fn float_dispatch(primitive: FloatTensor<Self>) -> DispatchTensor;
    /// `primitive` as a dispatch tensor.
    fn int_dispatch(primitive: IntTensor<Self>) -> DispatchTensor;
    /// `primitive` as a plain `Tensor<D, Int>`.
    fn int_tensor<const D: usize>(primitive: IntTensor<Self>) -> Tensor<D, Int> {
        Tensor::from_dispatch(Self::int_dispatch(primitive))
    }
    /// `primitive` as a plain `Tensor<D>`: Burn's generic operations then run on this
    /// backend.
    fn tensor<const D: usize>(primitive: FloatTensor<Self>) -> Tensor<D> {
        Tensor::from_dispatch(Self::float_dispatch(primitive))
    }
    /// The primitive of a `Tensor<D>` made by [`Concrete::tensor`] and Burn's operations on it.
    fn primitive<const D: usize>(tensor: Tensor<D>) -> FloatTensor<Self> {
        Self::float(tensor.into_dispatch()).expect("an operation kept its backend")
    }
}

impl<X: Backend> Concrete for X
where
    DispatchTensor: DispatchKindConversion<X>,
{
    fn float(tensor: DispatchTensor) -> Option<FloatTensor<X>> {
        match <DispatchTensor as DispatchKindConversion<X>>::try_into_backend(tensor) {
            Ok(BackendTensor::Float(primitive)) => Some(primitive),
            _ => None,
        }
    }

    fn int(mut tensor: DispatchTensor) -> Option<IntTensor<X>> {
        tensor.autodiff = DispatchAutodiffContext::Disabled;
        match <DispatchTensor as DispatchKindConversion<X>>::try_into_backend(tensor) {
            Ok(BackendTensor::Int(primitive)) => Some(primitive),
            _ => None,
        }
    }

    fn int_dispatch(primitive: IntTensor<X>) -> DispatchTensor {
        <DispatchTensor as DispatchKindConversion<X>>::from_backend(BackendTensor::Int(primitive))
    }

    fn float_dispatch(primitive: FloatTensor<X>) -> DispatchTensor {
        <DispatchTensor as DispatchKindConversion<X>>::from_backend(BackendTensor::Float(primitive))
    }
}

/// The same crossing for `Autodiff<X>` (without checkpointing: the fused nodes never
/// recompute), for the backends with fused kernels.
#[cfg(any(
    feature = "fused-ndarray",
    feature = "fused-flex",
    feature = "fused-wgpu"
))]
pub(crate) mod tracked {
    use super::*;
    use burn_autodiff::Autodiff;

    /// The autodiff float primitive of `tensor` (tracked or not), when it lives on
    /// `Autodiff<X>`.
    pub(crate) fn float<X: Backend>(tensor: DispatchTensor) -> Option<FloatTensor<Autodiff<X>>>
    where
        DispatchTensor: DispatchKindConversion<Autodiff<X>>,
    {
        match <DispatchTensor as DispatchKindConversion<Autodiff<X>>>::try_into_backend(tensor) {
            Ok(BackendTensor::Float(primitive)) => Some(primitive),
            _ => None,
        }
    }

    /// `primitive` as a dispatch tensor on `Autodiff<X>`.
    pub(crate) fn dispatch<X: Backend>(primitive: FloatTensor<Autodiff<X>>) -> DispatchTensor
    where
        DispatchTensor: DispatchKindConversion<Autodiff<X>>,
    {
        <DispatchTensor as DispatchKindConversion<Autodiff<X>>>::from_backend(BackendTensor::Float(
            primitive,
        ))
    }

    /// A weight the kernels take as a constant: an untracked tensor of `Autodiff<X>` or a
    /// tensor of `X` (a weight made on the device without autodiff); `None` for one that
    /// requires a gradient (the composite path differentiates it) or lives elsewhere.
    pub(crate) fn constant<X: Concrete>(tensor: DispatchTensor) -> Option<FloatTensor<X>>
    where
        DispatchTensor: DispatchKindConversion<Autodiff<X>>,
    {
        if tensor.autodiff == DispatchAutodiffContext::Disabled {
            return X::float(tensor);
        }
        let weight = float::<X>(tensor)?;
        (!weight.is_tracked()).then(|| weight.into_primitive())
    }
}
