//! The fused fast paths: one forward and one backward kernel per loss on the backends that
//! have them, picked at run time by the backend's type, with the same generic API.
//!
//! A loss calls [`class_index`], [`class_probs`] or [`binary`] first; they return `None`
//! when the composite path should run (another backend, a case the kernels do not cover,
//! or [`LossPath::Composite`]). Dispatch is by type, without `unsafe`: every tensor
//! primitive is `'static`, so `core::any::Any` tells whether `B`'s float primitive is the
//! primitive of `Autodiff<X>` (the loss then becomes one autodiff node, see [`autodiff`]) or
//! `B` is `X` itself (forward only), for each backend `X` compiled in.

// Built without any `fused-*` feature, the dispatch below has no backend to try: its
// arguments and the kernel contract go unused, and every loss takes the composite path.
#![cfg_attr(
    not(any(feature = "fused-ndarray", feature = "fused-wgpu")),
    allow(unused_variables, dead_code, clippy::extra_unused_type_parameters)
)]

#[cfg(any(feature = "fused-ndarray", feature = "fused-wgpu"))]
mod autodiff;
#[cfg(feature = "fused-wgpu")]
mod cube;
#[cfg(feature = "fused-wgpu")]
mod fusion;
pub(crate) mod kernels;
#[cfg(feature = "fused-ndarray")]
mod ndarray;
#[cfg(feature = "fused-ndarray")]
mod real;

use core::any::{Any, TypeId};

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorPrimitive};

use crate::checks;
use crate::path::{LossPath, loss_path};
#[allow(unused_imports)]
use kernels::{BadValue, Kernels, Periodic};
pub(crate) use kernels::{
    BinaryKind, BinaryParams, ClassIndexKind, ClassIndexParams, ClassProbsParams, Output,
};

/// What a loss computed: its final tensor on the fused path, or the terms the composite
/// path reduces.
pub(crate) enum Computed<B: Backend, T> {
    Fused(Tensor<B, 1>),
    Composite(T),
}

impl<B: Backend, const D: usize> Computed<B, Tensor<B, D>> {
    /// The reduced loss: the fused result, or the composite per-element loss reduced over
    /// `count` elements.
    pub(crate) fn reduce(self, reduction: crate::Reduction, count: usize) -> Tensor<B, 1> {
        match self {
            Self::Fused(loss) => loss,
            Self::Composite(loss) => crate::reduction::reduce_by_count(loss, reduction, count),
        }
    }

    /// The per-element loss in the input's shape `dims`.
    pub(crate) fn per_element(self, dims: [usize; D]) -> Tensor<B, D> {
        match self {
            Self::Fused(loss) => loss.reshape(dims),
            Self::Composite(loss) => loss,
        }
    }
}

/// `value` as a `U` when it is one.
#[allow(dead_code)]
fn cast<T: 'static, U: 'static>(value: T) -> Option<U> {
    (Box::new(value) as Box<dyn Any>)
        .downcast::<U>()
        .ok()
        .map(|boxed| *boxed)
}

/// The float primitive of `tensor` (`None` for a quantized tensor).
#[allow(dead_code)]
fn float_primitive<B: Backend, const D: usize>(
    tensor: &Tensor<B, D>,
) -> Option<B::FloatTensorPrimitive> {
    match tensor.clone().into_primitive() {
        TensorPrimitive::Float(primitive) => Some(primitive),
        TensorPrimitive::QFloat(_) => None,
    }
}

/// A `Tensor<B, 1>` from a primitive of `X` that is `B`'s own.
#[allow(dead_code)]
fn tensor_of<B: Backend, P: 'static>(primitive: P) -> Tensor<B, 1> {
    let primitive: B::FloatTensorPrimitive =
        cast(primitive).expect("the fused op returns the primitive type it was given");
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// Tries `$attempt::<X>` for each backend `X` with fused kernels, returning the first
/// result.
macro_rules! each_backend {
    ($attempt:ident $(::<$($rank:ident),*>)? ($($arg:expr),* $(,)?)) => {{
        #[allow(unused_mut)]
        let mut result = None;
        #[cfg(feature = "fused-ndarray")]
        {
            if result.is_none() {
                result = $attempt::<B, burn_ndarray::NdArray<f32> $($(, $rank)*)?>($($arg),*);
            }
            if result.is_none() {
                result = $attempt::<B, burn_ndarray::NdArray<f64> $($(, $rank)*)?>($($arg),*);
            }
        }
        #[cfg(feature = "fused-wgpu")]
        {
            // `Wgpu` is the cube backend wrapped in fusion; both are covered.
            if result.is_none() {
                result = $attempt::<B, burn_wgpu::Wgpu $($(, $rank)*)?>($($arg),*);
            }
            if result.is_none() {
                result = $attempt::<B, burn_cubecl::CubeBackend<burn_wgpu::WgpuRuntime, f32, i32, u32> $($(, $rank)*)?>($($arg),*);
            }
        }
        result
    }};
}

/// Runs `attempt` as the current [`LossPath`] says: never (composite), when possible (auto),
/// or always, panicking when the backend or the case has no fused kernel (fused).
fn on_path<B: Backend, R>(function: &str, attempt: impl FnOnce() -> Option<R>) -> Option<R> {
    match loss_path() {
        LossPath::Composite => None,
        LossPath::Auto => attempt(),
        LossPath::Fused => Some(attempt().unwrap_or_else(|| {
            panic!(
                "{function}: LossPath::Fused: no fused kernel for backend {} and this case \
                 (see the README for the backends and cases the fused path covers)",
                core::any::type_name::<B>()
            )
        })),
    }
}

/// For a backend `B` with fused kernels (`Autodiff<X>` or `X` itself), whether they check
/// values themselves; `None` for every other backend.
fn fused_backend<B: Backend>() -> Option<bool> {
    fn on<B: Backend, X: Kernels>() -> Option<bool> {
        let ours = TypeId::of::<B::FloatTensorPrimitive>();
        #[cfg(any(feature = "fused-ndarray", feature = "fused-wgpu"))]
        if ours == TypeId::of::<autodiff::AdFloat<X>>() {
            return Some(X::CHECKS_VALUES);
        }
        (TypeId::of::<B>() == TypeId::of::<X>() && ours == TypeId::of::<X::FloatTensorPrimitive>())
            .then_some(X::CHECKS_VALUES)
    }
    each_backend!(on())
}

/// True when the fused path that would run for `B` checks values inside its kernels, so the
/// caller skips the generic check.
pub(crate) fn checks_values_in_kernel<B: Backend>() -> bool {
    loss_path() != LossPath::Composite && fused_backend::<B>().unwrap_or(false)
}

/// True when a loss on `B` tries the fused path now (which, under [`LossPath::Fused`], panics
/// where it has no kernel); false when the composite path runs straight away.
fn tries_fused<B: Backend>() -> bool {
    match loss_path() {
        LossPath::Composite => false,
        LossPath::Auto => fused_backend::<B>().is_some(),
        LossPath::Fused => true,
    }
}

/// The inner primitive of a tensor of `Autodiff<X>` that wants no gradient; `None` when it
/// wants one (the fused kernels treat weights as constants: such a loss takes the composite
/// path).
#[cfg(any(feature = "fused-ndarray", feature = "fused-wgpu"))]
fn constant<B: Backend, X: Kernels, const D: usize>(
    tensor: &Tensor<B, D>,
) -> Option<burn::tensor::ops::FloatTensor<X>> {
    let tensor: autodiff::AdFloat<X> = cast(float_primitive(tensor)?)?;
    tensor
        .node
        .requirement
        .is_none()
        .then_some(tensor.primitive)
}

/// The primitive of a tensor of `B` when `B` is `X`.
fn primitive_of<B: Backend, X: Kernels, const D: usize>(
    tensor: &Tensor<B, D>,
) -> Option<burn::tensor::ops::FloatTensor<X>> {
    cast(float_primitive(tensor)?)
}

/// Panics with the loss's usual message for a value a kernel refused.
fn refuse(
    function: &str,
    bad: BadValue,
    target_dims: &[usize],
    input_dims: &[usize],
    classes: usize,
    ignore_index: i64,
) -> ! {
    match bad {
        BadValue::ClassIndex { flat_index, value } => {
            panic!(
                "{}",
                checks::class_index_message(
                    function,
                    classes,
                    ignore_index,
                    value,
                    flat_index,
                    target_dims
                )
            )
        }
        BadValue::Probability { flat_index, value } => panic!(
            "{}",
            checks::probability_message(
                function,
                checks::Probabilities::Input,
                value,
                flat_index,
                input_dims
            )
        ),
        BadValue::Target { flat_index, value } => panic!(
            "{}",
            checks::probability_message(
                function,
                checks::Probabilities::Target,
                value,
                flat_index,
                input_dims
            )
        ),
    }
}

/// Cross-entropy or NLL with class-index targets on the fused path: the loss as `[N * S]`
/// (per element) or `[1]` (reduced), or `None` for the composite path.
///
/// The caller has checked the shapes, and the values unless [`checks_values_in_kernel`].
pub(crate) fn class_index<B: Backend, const D: usize, const DT: usize>(
    function: &str,
    input: &Tensor<B, D>,
    target: &Tensor<B, DT, Int>,
    weight: Option<&Tensor<B, 1>>,
    params: ClassIndexParams,
) -> Option<Tensor<B, 1>> {
    #[allow(unused_variables)]
    fn attempt<B: Backend, X: Kernels, const D: usize, const DT: usize>(
        input: &Tensor<B, D>,
        target: &Tensor<B, DT, Int>,
        weight: Option<&Tensor<B, 1>>,
        params: ClassIndexParams,
    ) -> Option<Result<Tensor<B, 1>, BadValue>> {
        let primitive = float_primitive(input)?;
        let target_primitive =
            || cast::<_, burn::tensor::ops::IntTensor<X>>(target.clone().into_primitive());
        #[cfg(any(feature = "fused-ndarray", feature = "fused-wgpu"))]
        if (&primitive as &dyn Any).is::<autodiff::AdFloat<X>>() {
            let input: autodiff::AdFloat<X> = cast(primitive)?;
            let weight = match weight {
                Some(weight) => Some(constant::<B, X, 1>(weight)?),
                None => None,
            };
            let result = autodiff::class_index::<X>(input, target_primitive()?, weight, params)?;
            return Some(result.map(tensor_of::<B, _>));
        }
        if TypeId::of::<B>() != TypeId::of::<X>() {
            return None;
        }
        let input: burn::tensor::ops::FloatTensor<X> = cast(primitive)?;
        let weight = match weight {
            Some(weight) => Some(primitive_of::<B, X, 1>(weight)?),
            None => None,
        };
        let result =
            X::class_index_forward(&input, &target_primitive()?, weight.as_ref(), &params)?;
        Some(result.map(|(loss, _)| tensor_of::<B, _>(loss)))
    }
    on_path::<B, Result<Tensor<B, 1>, BadValue>>(function, || {
        each_backend!(attempt::<D, DT>(input, target, weight, params))
    })
    .map(|result| {
        result.unwrap_or_else(|bad| {
            refuse(
                function,
                bad,
                &target.dims(),
                &input.dims(),
                params.classes,
                params.ignore_index,
            )
        })
    })
}

/// Cross-entropy with probability targets on the fused path: the loss as `[N * S]` or
/// `[1]`, or `None` for the composite path.
pub(crate) fn class_probs<B: Backend, const D: usize>(
    function: &str,
    input: &Tensor<B, D>,
    target: &Tensor<B, D>,
    weight: Option<&Tensor<B, 1>>,
    params: ClassProbsParams,
) -> Option<Tensor<B, 1>> {
    #[allow(unused_variables)]
    fn attempt<B: Backend, X: Kernels, const D: usize>(
        input: &Tensor<B, D>,
        target: &Tensor<B, D>,
        weight: Option<&Tensor<B, 1>>,
        params: ClassProbsParams,
    ) -> Option<Tensor<B, 1>> {
        let primitive = float_primitive(input)?;
        #[cfg(any(feature = "fused-ndarray", feature = "fused-wgpu"))]
        if (&primitive as &dyn Any).is::<autodiff::AdFloat<X>>() {
            let input: autodiff::AdFloat<X> = cast(primitive)?;
            let target: autodiff::AdFloat<X> = cast(float_primitive(target)?)?;
            let weight = match weight {
                Some(weight) => Some(constant::<B, X, 1>(weight)?),
                None => None,
            };
            return autodiff::class_probs::<X>(input, target, weight, params)
                .map(tensor_of::<B, _>);
        }
        if TypeId::of::<B>() != TypeId::of::<X>() {
            return None;
        }
        let input: burn::tensor::ops::FloatTensor<X> = cast(primitive)?;
        let target = primitive_of::<B, X, D>(target)?;
        let weight = match weight {
            Some(weight) => Some(primitive_of::<B, X, 1>(weight)?),
            None => None,
        };
        X::class_probs_forward(&input, &target, weight.as_ref(), &params)
            .map(|(loss, _)| tensor_of::<B, _>(loss))
    }
    on_path::<B, Tensor<B, 1>>(function, || {
        each_backend!(attempt::<D>(input, target, weight, params))
    })
}

/// A binary loss's weight on the fused path: flat values and the period with which they
/// repeat over the input's flat elements.
pub(crate) struct PeriodicWeight<B: Backend> {
    pub values: Tensor<B, 1>,
    pub period: usize,
}

/// The common front of the binary losses (the caller has checked the shapes and that the
/// input is not empty): checks the probabilities (BCE, `check_values`) where the fused
/// kernels do not, and the weights' shapes, then tries the fused path. `None` means the
/// composite path runs next, with every check made.
#[allow(clippy::too_many_arguments)]
pub(crate) fn binary_or_checked<B: Backend, const D: usize>(
    function: &str,
    kind: BinaryKind,
    input: &Tensor<B, D>,
    target: &Tensor<B, D>,
    weight: Option<&crate::BroadcastWeight<B>>,
    pos_weight: Option<&crate::BroadcastWeight<B>>,
    check_values: bool,
    output: Output,
) -> Option<Tensor<B, 1>> {
    let check_values = check_values && kind == BinaryKind::Probabilities;
    let in_kernel = checks_values_in_kernel::<B>();
    if check_values && !in_kernel {
        checks::probabilities(function, input, target);
    }
    if !tries_fused::<B>() {
        // The composite path broadcasts (and checks) the weights itself.
        return None;
    }
    let weight = weight.map(|w| w.periodic(function, "weight", input));
    let pos_weight = pos_weight.map(|w| w.periodic(function, "pos_weight", input));
    let params = BinaryParams {
        kind,
        len: input.shape().num_elements(),
        output,
        check_values: check_values && in_kernel,
    };
    let loss = binary(
        function,
        input,
        target,
        weight.as_ref(),
        pos_weight.as_ref(),
        params,
    );
    if loss.is_none() && check_values && in_kernel {
        checks::probabilities(function, input, target);
    }
    loss
}

/// BCE or BCE with logits on the fused path: the loss as `[L]` or `[1]`, or `None` for the
/// composite path.
pub(crate) fn binary<B: Backend, const D: usize>(
    function: &str,
    input: &Tensor<B, D>,
    target: &Tensor<B, D>,
    weight: Option<&PeriodicWeight<B>>,
    pos_weight: Option<&PeriodicWeight<B>>,
    params: BinaryParams,
) -> Option<Tensor<B, 1>> {
    #[allow(unused_variables)]
    fn attempt<B: Backend, X: Kernels, const D: usize>(
        input: &Tensor<B, D>,
        target: &Tensor<B, D>,
        weight: Option<&PeriodicWeight<B>>,
        pos_weight: Option<&PeriodicWeight<B>>,
        params: BinaryParams,
    ) -> Option<Result<Tensor<B, 1>, BadValue>> {
        let primitive = float_primitive(input)?;
        #[cfg(any(feature = "fused-ndarray", feature = "fused-wgpu"))]
        if (&primitive as &dyn Any).is::<autodiff::AdFloat<X>>() {
            let inner = |weight: Option<&PeriodicWeight<B>>| -> Option<Option<Periodic<X>>> {
                let Some(weight) = weight else {
                    return Some(None);
                };
                Some(Some(Periodic {
                    values: constant::<B, X, 1>(&weight.values)?,
                    period: weight.period,
                }))
            };
            let input: autodiff::AdFloat<X> = cast(primitive)?;
            let target: autodiff::AdFloat<X> = cast(float_primitive(target)?)?;
            let result =
                autodiff::binary::<X>(input, target, inner(weight)?, inner(pos_weight)?, params)?;
            return Some(result.map(tensor_of::<B, _>));
        }
        if TypeId::of::<B>() != TypeId::of::<X>() {
            return None;
        }
        let inner = |weight: Option<&PeriodicWeight<B>>| -> Option<Option<Periodic<X>>> {
            let Some(weight) = weight else {
                return Some(None);
            };
            Some(Some(Periodic {
                values: primitive_of::<B, X, 1>(&weight.values)?,
                period: weight.period,
            }))
        };
        let input: burn::tensor::ops::FloatTensor<X> = cast(primitive)?;
        let target = primitive_of::<B, X, D>(target)?;
        let result = X::binary_forward(
            &input,
            &target,
            inner(weight)?.as_ref(),
            inner(pos_weight)?.as_ref(),
            &params,
        )?;
        Some(result.map(tensor_of::<B, _>))
    }
    on_path::<B, Result<Tensor<B, 1>, BadValue>>(function, || {
        each_backend!(attempt::<D>(input, target, weight, pos_weight, params))
    })
    .map(|result| result.unwrap_or_else(|bad| refuse(function, bad, &[], &input.dims(), 0, 0)))
}
