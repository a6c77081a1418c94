//! The fused fast paths: one forward and one backward kernel per loss on the backends that
//! have them, picked at run time by the backend's type, behind the same generic API.
//!
//! [`kernels_for`] asks once per call whether `B` has fused kernels and returns them as a
//! [`FusedLosses`] object that runs a [`FusedOp`] on `B`'s own tensor primitives (or `None`
//! for a case the kernels do not cover: the loss then takes the composite path). Dispatch is
//! by type, without `unsafe`: every tensor primitive is `'static`, so `core::any::Any` tells
//! whether `B`'s float primitive is the primitive of `Autodiff<X>` (the loss then becomes one
//! autodiff node, see [`autodiff`]) or `B` is `X` itself (forward only), for each backend `X`
//! compiled in. The protocol around it (the path switch, where values are checked) is
//! `crate::path`'s.

// Built without any `fused-*` feature, the dispatch below has no backend to try: its
// arguments and the kernel contract go unused, and every loss takes the composite path.
#![cfg_attr(
    not(any(
        feature = "fused-ndarray",
        feature = "fused-flex",
        feature = "fused-wgpu"
    )),
    allow(unused_variables, dead_code, clippy::extra_unused_type_parameters)
)]

#[cfg(any(
    feature = "fused-ndarray",
    feature = "fused-flex",
    feature = "fused-wgpu"
))]
mod autodiff;
#[cfg(all(
    test,
    any(
        feature = "fused-ndarray",
        feature = "fused-flex",
        feature = "fused-wgpu"
    )
))]
mod contract_tests;
#[cfg(any(feature = "fused-ndarray", feature = "fused-flex"))]
mod cpu;
#[cfg(feature = "fused-wgpu")]
mod cube;
#[cfg(feature = "fused-wgpu")]
mod fusion;
pub(crate) mod kernels;

use core::any::{Any, TypeId};
use core::marker::PhantomData;

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};

use crate::linear_cross_entropy::chunked::LinearInputs;
pub(crate) use kernels::{
    BadValue, BinaryKind, BinaryParams, ClassIndexKind, ClassIndexParams, ClassProbsParams, Output,
    Periodic, Ran,
};
#[allow(unused_imports)]
use kernels::{BinaryArgs, ClassIndexArgs, ClassProbsArgs, Kernels};

/// Tries `$attempt::<B, X>()` for each backend `X` with fused kernels, returning the first
/// result.
macro_rules! each_backend {
    ($attempt:ident ()) => {{
        #[allow(unused_mut)]
        let mut result = None;
        #[cfg(feature = "fused-ndarray")]
        {
            if result.is_none() {
                result = $attempt::<B, burn_ndarray::NdArray<f32>>();
            }
            if result.is_none() {
                result = $attempt::<B, burn_ndarray::NdArray<f64>>();
            }
        }
        #[cfg(feature = "fused-flex")]
        if result.is_none() {
            result = $attempt::<B, burn_flex::Flex>();
        }
        #[cfg(feature = "fused-wgpu")]
        {
            // `Wgpu` is the cube backend wrapped in fusion; both are covered.
            if result.is_none() {
                result = $attempt::<B, burn_wgpu::Wgpu>();
            }
            if result.is_none() {
                result =
                    $attempt::<B, burn_cubecl::CubeBackend<burn_wgpu::WgpuRuntime, f32, i32, u32>>(
                    );
            }
        }
        result
    }};
}

/// One fused loss, as a backend's kernels take it: `B`'s primitives in the layouts of
/// [`kernels`] (the primitives keep the tensors' own ranks; the params give the shapes).
pub(crate) enum FusedOp<B: Backend> {
    /// Cross-entropy or NLL with class indices: input, target, class weight, params.
    ClassIndex(
        FloatTensor<B>,
        IntTensor<B>,
        Option<FloatTensor<B>>,
        ClassIndexParams,
    ),
    /// Cross-entropy with class probabilities: input, target, class weight, params.
    ClassProbs(
        FloatTensor<B>,
        FloatTensor<B>,
        Option<FloatTensor<B>>,
        ClassProbsParams,
    ),
    /// BCE or BCE with logits: input, target, weight, positive weight, params.
    Binary(
        FloatTensor<B>,
        FloatTensor<B>,
        Option<Periodic<B>>,
        Option<Periodic<B>>,
        BinaryParams,
    ),
    /// `linear_cross_entropy`: the chunked linear layer and cross-entropy (values are checked
    /// before, never in a kernel).
    Linear(LinearOp<B>),
}

/// The inputs of `linear_cross_entropy` on `B`'s primitives: `hidden` `[N, D]`, `weight`
/// `[D, V]`, `bias` `[V]`, `target` `[N]`, the class weight `[V]`. Its result is `[2]` (the
/// loss and its z-loss term) or `[N]` (per row), as `params.output` says.
pub(crate) struct LinearOp<B: Backend> {
    pub hidden: FloatTensor<B>,
    pub weight: FloatTensor<B>,
    pub bias: Option<FloatTensor<B>>,
    pub target: IntTensor<B>,
    pub class_weight: Option<FloatTensor<B>>,
    pub params: crate::linear_cross_entropy::chunked::LinearParams,
}

impl<B: Backend> FusedOp<B> {
    /// Asks the kernel to check the values itself (class indices, BCE probabilities), or not.
    pub(crate) fn check_values_in_kernel(mut self, check: bool) -> Self {
        match &mut self {
            Self::ClassIndex(.., params) => params.check_values = check,
            Self::Binary(.., params) => params.check_values = check,
            Self::ClassProbs(..) | Self::Linear(..) => {}
        }
        self
    }
}

/// A backend's fused kernels, seen from a backend `B` that is that backend or `Autodiff` of
/// it.
pub(crate) trait FusedLosses<B: Backend>: Sync {
    /// True when the kernels check values themselves (`check_values` in the params);
    /// otherwise the caller runs the generic checks first.
    fn checks_values(&self) -> bool;

    /// The loss, `[N * S]`, `[L]` or `[1]` as the params' `output` says; the input handed back
    /// for a case the kernels do not cover (or a weight that requires a gradient: the kernels
    /// treat weights as constants), or the value the kernel refused.
    fn run(&self, op: FusedOp<B>) -> Ran<B, FloatTensor<B>>;
}

/// The fused kernels for `B`, or `None` when the crate has none for it (asked once per call,
/// by type).
pub(crate) fn kernels_for<B: Backend>() -> Option<&'static dyn FusedLosses<B>> {
    #[allow(dead_code)]
    fn on<B: Backend, X: Kernels>() -> Option<&'static dyn FusedLosses<B>> {
        #[cfg(any(
            feature = "fused-ndarray",
            feature = "fused-flex",
            feature = "fused-wgpu"
        ))]
        if TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<autodiff::AdFloat<X>>() {
            return Some(&OnAutodiff::<X>(PhantomData));
        }
        let inner = TypeId::of::<B>() == TypeId::of::<X>();
        inner.then_some(&OnInner::<X>(PhantomData) as &'static dyn FusedLosses<B>)
    }
    each_backend!(on())
}

/// `value` as a `U` when it is one.
fn cast<T: 'static, U: 'static>(value: T) -> Option<U> {
    (Box::new(value) as Box<dyn Any>)
        .downcast::<U>()
        .ok()
        .map(|boxed| *boxed)
}

/// `Some(None)` for no weight, `Some(Some(w))` for a usable one, `None` for one the kernels
/// cannot take.
pub(crate) fn all_some<T>(weight: Option<Option<T>>) -> Option<Option<T>> {
    match weight {
        None => Some(None),
        Some(weight) => weight.map(Some),
    }
}

/// `B`'s primitive as `X`'s, when they are the same type.
fn same<P: 'static, Q: 'static>(primitive: P) -> Q {
    cast(primitive).expect("the backends were matched by type")
}

/// A result on `X` as one on `B` (the same backend, matched by type).
fn on_b<B: Backend, X: Backend>(ran: Ran<X, FloatTensor<X>>) -> Ran<B, FloatTensor<B>> {
    match ran {
        Ran::Done(loss) => Ran::Done(same(loss)),
        Ran::Refused(bad) => Ran::Refused(bad),
        Ran::Uncovered(input) => Ran::Uncovered(same(input)),
    }
}

/// A plain forward's result as a [`Ran`], the input handed back when uncovered.
fn ran<X: Backend>(
    input: FloatTensor<X>,
    result: Option<Result<FloatTensor<X>, BadValue>>,
) -> Ran<X, FloatTensor<X>> {
    match result {
        Some(Ok(loss)) => Ran::Done(loss),
        Some(Err(bad)) => Ran::Refused(bad),
        None => Ran::Uncovered(input),
    }
}

/// The kernels of `X`, run for `B = X`: the loss alone (no autodiff, no gradient work).
struct OnInner<X>(PhantomData<fn() -> X>);

impl<B: Backend, X: Kernels> FusedLosses<B> for OnInner<X> {
    fn checks_values(&self) -> bool {
        X::CHECKS_VALUES
    }

    fn run(&self, op: FusedOp<B>) -> Ran<B, FloatTensor<B>> {
        let periodic = |w: Periodic<B>| Periodic::<X> {
            values: same(w.values),
            period: w.period,
        };
        let loss = match op {
            FusedOp::ClassIndex(input, target, weight, params) => {
                let input: FloatTensor<X> = same(input);
                let result = X::class_index_forward(ClassIndexArgs {
                    input: &input,
                    target: &same(target),
                    weight: weight.map(same).as_ref(),
                    params: &params,
                });
                ran::<X>(input, result.map(|r| r.map(|(loss, _saved)| loss)))
            }
            FusedOp::ClassProbs(input, target, weight, params) => {
                let input: FloatTensor<X> = same(input);
                let result = X::class_probs_forward(ClassProbsArgs {
                    input: &input,
                    target: &same(target),
                    weight: weight.map(same).as_ref(),
                    params: &params,
                });
                ran::<X>(input, result.map(|(loss, _)| Ok(loss)))
            }
            FusedOp::Binary(input, target, weight, pos_weight, params) => {
                let input: FloatTensor<X> = same(input);
                let result = X::binary_forward(BinaryArgs {
                    input: &input,
                    target: &same(target),
                    weight: weight.map(periodic).as_ref(),
                    pos_weight: pos_weight.map(periodic).as_ref(),
                    params: &params,
                });
                ran::<X>(input, result)
            }
            FusedOp::Linear(op) => {
                let hidden: FloatTensor<X> = same(op.hidden);
                let inputs = LinearInputs::<X> {
                    hidden: hidden.clone(),
                    weight: same(op.weight),
                    bias: op.bias.map(same),
                    target: same(op.target),
                    class_weight: op.class_weight.map(same),
                    params: op.params,
                };
                // No autodiff: the forward alone, without any gradient work.
                match crate::linear_cross_entropy::chunked::forward(&inputs, [false; 3]) {
                    Some((loss, ..)) => Ran::Done(loss),
                    None => Ran::Uncovered(hidden),
                }
            }
        };
        on_b::<B, X>(loss)
    }
}

/// The kernels of `X`, run for `B = Autodiff<X>`: each loss one autodiff node.
#[cfg(any(
    feature = "fused-ndarray",
    feature = "fused-flex",
    feature = "fused-wgpu"
))]
struct OnAutodiff<X>(PhantomData<fn() -> X>);

#[cfg(any(
    feature = "fused-ndarray",
    feature = "fused-flex",
    feature = "fused-wgpu"
))]
impl<B: Backend, X: Kernels> FusedLosses<B> for OnAutodiff<X> {
    fn checks_values(&self) -> bool {
        X::CHECKS_VALUES
    }

    fn run(&self, op: FusedOp<B>) -> Ran<B, FloatTensor<B>> {
        use autodiff::AdFloat;
        // A weight is a constant of the kernels: one that requires a gradient takes the
        // composite path.
        let constant = |weight: FloatTensor<B>| -> Option<FloatTensor<X>> {
            let weight: AdFloat<X> = same(weight);
            weight
                .node
                .requirement
                .is_none()
                .then_some(weight.primitive)
        };
        let periodic = |w: Periodic<B>| -> Option<Periodic<X>> {
            Some(Periodic {
                values: constant(w.values)?,
                period: w.period,
            })
        };
        let ran = match op {
            FusedOp::ClassIndex(input, target, weight, params) => {
                let Some(weight) = all_some(weight.map(constant)) else {
                    return Ran::Uncovered(input);
                };
                autodiff::class_index::<X>(same(input), same(target), weight, params)
            }
            FusedOp::ClassProbs(input, target, weight, params) => {
                let Some(weight) = all_some(weight.map(constant)) else {
                    return Ran::Uncovered(input);
                };
                autodiff::class_probs::<X>(same(input), same(target), weight, params)
            }
            FusedOp::Binary(input, target, weight, pos_weight, params) => {
                let (Some(weight), Some(pos_weight)) = (
                    all_some(weight.map(periodic)),
                    all_some(pos_weight.map(periodic)),
                ) else {
                    return Ran::Uncovered(input);
                };
                autodiff::binary::<X>(same(input), same(target), weight, pos_weight, params)
            }
            FusedOp::Linear(op) => {
                let Some(class_weight) = all_some(op.class_weight.map(constant)) else {
                    return Ran::Uncovered(op.hidden);
                };
                let hidden = op.hidden.clone();
                match autodiff::linear::<X>(
                    same(op.hidden),
                    same(op.weight),
                    op.bias.map(same),
                    same(op.target),
                    class_weight,
                    op.params,
                ) {
                    Some(out) => Ran::Done(out),
                    None => return Ran::Uncovered(hidden),
                }
            }
        };
        on_b(ran)
    }
}
