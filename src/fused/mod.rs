//! The fused fast paths: one forward and one backward kernel per loss on the backends that
//! have them, picked at run time by the tensors' device, behind the same API.
//!
//! [`kernels_for`] asks once per call whether the device's backend has fused kernels and
//! returns them as a [`FusedLosses`] object that runs a [`FusedOp`] of dispatch tensors on
//! the backend's own primitives (or hands the input back for a case the kernels do not
//! cover: the loss then takes the composite path). The device says the backend: `X` itself
//! (forward only), or `Autodiff` of `X` without gradient checkpointing (the loss then becomes
//! one autodiff node, see [`autodiff`]), for each backend `X` compiled in; [`concrete`] crosses
//! between dispatch tensors and `X`'s primitives. The protocol around it (the path switch,
//! where values are checked) is `crate::path`'s.

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
pub(crate) mod concrete;
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
mod linear_chunks;
mod linear_products;

use core::marker::PhantomData;

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, DispatchTensor};
use burn::tensor::Device;

use concrete::Concrete;

pub(crate) use kernels::{
    BadValue, BinaryKind, BinaryParams, ClassIndexKind, ClassIndexParams, ClassProbsParams, Output,
    Periodic, Ran,
};
#[allow(unused_imports)]
use kernels::{BinaryArgs, ClassIndexArgs, ClassProbsArgs, Kernels};
use linear_chunks::LinearInputs;
pub(crate) use linear_chunks::LinearParams;

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
    pub params: linear_chunks::LinearParams,
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

/// A backend's fused kernels, seen from the dispatch: they run a [`FusedOp`] of dispatch
/// tensors on that backend (or `Autodiff` of it).
pub(crate) trait FusedLosses: Sync {
    /// True when the kernels check values themselves (`check_values` in the params);
    /// otherwise the caller runs the generic checks first.
    fn checks_values(&self) -> bool;

    /// The loss, `[N * S]`, `[L]` or `[1]` as the params' `output` says; the input handed back
    /// for a case the kernels do not cover (or a weight that requires a gradient: the kernels
    /// treat weights as constants), or the value the kernel refused.
    fn run(&self, op: FusedOp<Dispatch>) -> Ran<Dispatch, DispatchTensor>;
}

/// The fused kernels for the backend of `device`, or `None` when the crate has none for it
/// (asked once per call). An autodiff device with gradient checkpointing takes the composite
/// path: the fused nodes are built without checkpointing. (Burn 0.22 deprecates burn-ndarray
/// in favour of Flex; its kernels stay here while Burn ships it.)
#[allow(deprecated)]
pub(crate) fn kernels_for(device: &Device) -> Option<&'static dyn FusedLosses> {
    #[allow(unused_imports)]
    use burn::backend::{DispatchDevice, GradientCheckpointingStrategy};
    #[allow(unreachable_patterns, clippy::match_single_binding)]
    match device.as_dispatch() {
        #[cfg(feature = "fused-ndarray")]
        DispatchDevice::NdArray(_) => Some(&OnInner::<burn::backend::NdArray>(PhantomData)),
        #[cfg(feature = "fused-flex")]
        DispatchDevice::Flex(_) => Some(&OnInner::<burn::backend::Flex>(PhantomData)),
        #[cfg(feature = "fused-wgpu")]
        DispatchDevice::Cube(_) => Some(&OnInner::<burn::backend::Cube>(PhantomData)),
        #[cfg(any(
            feature = "fused-ndarray",
            feature = "fused-flex",
            feature = "fused-wgpu"
        ))]
        DispatchDevice::Autodiff(autodiff)
            if autodiff.gradient_checkpointing_strategy()
                == GradientCheckpointingStrategy::Disabled =>
        {
            match autodiff.clone().inner() {
                #[cfg(feature = "fused-ndarray")]
                DispatchDevice::NdArray(_) => {
                    Some(&OnAutodiff::<burn::backend::NdArray>(PhantomData))
                }
                #[cfg(feature = "fused-flex")]
                DispatchDevice::Flex(_) => Some(&OnAutodiff::<burn::backend::Flex>(PhantomData)),
                #[cfg(feature = "fused-wgpu")]
                DispatchDevice::Cube(_) => Some(&OnAutodiff::<burn::backend::Cube>(PhantomData)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `Some(None)` for no weight, `Some(Some(w))` for a usable one, `None` for one the kernels
/// cannot take.
pub(crate) fn all_some<T>(weight: Option<Option<T>>) -> Option<Option<T>> {
    match weight {
        None => Some(None),
        Some(weight) => weight.map(Some),
    }
}

/// The input's primitive on `X`: the device was matched to `X`, so the conversion holds.
fn input_on<X: Concrete>(input: DispatchTensor) -> FloatTensor<X> {
    X::float(input).expect("the input lives on the backend its device names")
}

/// A result on `X` as one of dispatch tensors.
fn on_dispatch<X: Concrete>(ran: Ran<X, FloatTensor<X>>) -> Ran<Dispatch, DispatchTensor> {
    match ran {
        Ran::Done(loss) => Ran::Done(X::float_dispatch(loss)),
        Ran::Refused(bad) => Ran::Refused(bad),
        Ran::Uncovered(input) => Ran::Uncovered(X::float_dispatch(input)),
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

/// A binary loss's weight with its values converted by `values_on` (as [`all_some`] says:
/// `None` for one that cannot be converted).
fn periodic_as<Y: Backend>(
    weight: Option<Periodic<Dispatch>>,
    values_on: impl Fn(DispatchTensor) -> Option<FloatTensor<Y>>,
) -> Option<Option<Periodic<Y>>> {
    all_some(weight.map(|w| {
        Some(Periodic {
            values: values_on(w.values)?,
            period: w.period,
        })
    }))
}

/// The op on `X`'s primitives; the input back, still a dispatch tensor, when a target or a
/// weight lives elsewhere.
fn on_backend<X: Concrete>(op: FusedOp<Dispatch>) -> Result<FusedOp<X>, DispatchTensor> {
    let weight_on = |weight: Option<DispatchTensor>| all_some(weight.map(X::float));
    let periodic_on = |weight| periodic_as(weight, X::float);
    Ok(match op {
        FusedOp::ClassIndex(input, target, weight, params) => {
            let (Some(target), Some(weight)) = (X::int(target), weight_on(weight)) else {
                return Err(input);
            };
            FusedOp::ClassIndex(input_on::<X>(input), target, weight, params)
        }
        FusedOp::ClassProbs(input, target, weight, params) => {
            let (Some(target), Some(weight)) = (X::float(target), weight_on(weight)) else {
                return Err(input);
            };
            FusedOp::ClassProbs(input_on::<X>(input), target, weight, params)
        }
        FusedOp::Binary(input, target, weight, pos_weight, params) => {
            let (Some(target), Some(weight), Some(pos_weight)) = (
                X::float(target),
                periodic_on(weight),
                periodic_on(pos_weight),
            ) else {
                return Err(input);
            };
            FusedOp::Binary(input_on::<X>(input), target, weight, pos_weight, params)
        }
        FusedOp::Linear(op) => {
            let (Some(weight), Some(bias), Some(target), Some(class_weight)) = (
                X::float(op.weight),
                weight_on(op.bias),
                X::int(op.target),
                weight_on(op.class_weight),
            ) else {
                return Err(op.hidden);
            };
            FusedOp::Linear(LinearOp {
                hidden: input_on::<X>(op.hidden),
                weight,
                bias,
                target,
                class_weight,
                params: op.params,
            })
        }
    })
}

/// The kernels of `X`, run for a device of `X`: the loss alone (no autodiff, no gradient work).
struct OnInner<X>(PhantomData<fn() -> X>);

impl<X: Kernels> FusedLosses for OnInner<X> {
    fn checks_values(&self) -> bool {
        X::CHECKS_VALUES
    }

    fn run(&self, op: FusedOp<Dispatch>) -> Ran<Dispatch, DispatchTensor> {
        let op = match on_backend::<X>(op) {
            Ok(op) => op,
            Err(input) => return Ran::Uncovered(input),
        };
        let loss = match op {
            FusedOp::ClassIndex(input, target, weight, params) => {
                let result = X::class_index_forward(ClassIndexArgs {
                    input: &input,
                    target: &target,
                    weight: weight.as_ref(),
                    params: &params,
                });
                ran::<X>(input, result.map(|r| r.map(|(loss, _saved)| loss)))
            }
            FusedOp::ClassProbs(input, target, weight, params) => {
                let result = X::class_probs_forward(ClassProbsArgs {
                    input: &input,
                    target: &target,
                    weight: weight.as_ref(),
                    params: &params,
                });
                ran::<X>(input, result.map(|(loss, _)| Ok(loss)))
            }
            FusedOp::Binary(input, target, weight, pos_weight, params) => {
                let result = X::binary_forward(BinaryArgs {
                    input: &input,
                    target: &target,
                    weight: weight.as_ref(),
                    pos_weight: pos_weight.as_ref(),
                    params: &params,
                });
                ran::<X>(input, result)
            }
            FusedOp::Linear(op) => {
                let inputs = LinearInputs::<X> {
                    hidden: op.hidden,
                    weight: op.weight,
                    bias: op.bias,
                    target: op.target,
                    class_weight: op.class_weight,
                    params: op.params,
                };
                // No autodiff: the forward alone, without any gradient work.
                match linear_chunks::forward(&inputs, [false; 3]) {
                    Some((loss, ..)) => Ran::Done(loss),
                    None => Ran::Uncovered(inputs.hidden),
                }
            }
        };
        on_dispatch::<X>(loss)
    }
}

/// The kernels of `X`, run for an autodiff device of `X`: each loss one autodiff node.
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
impl<X: Kernels> FusedLosses for OnAutodiff<X>
where
    DispatchTensor: burn::backend::DispatchKindConversion<burn_autodiff::Autodiff<X>>,
{
    fn checks_values(&self) -> bool {
        X::CHECKS_VALUES
    }

    fn run(&self, op: FusedOp<Dispatch>) -> Ran<Dispatch, DispatchTensor> {
        use concrete::tracked;
        // A weight is a constant of the kernels: one that requires a gradient takes the
        // composite path. The target of a probability or binary loss is differentiated: it
        // stays an autodiff tensor, as the input and linear cross-entropy's weight and bias.
        let ran = match op {
            FusedOp::ClassIndex(input, target, weight, params) => {
                let (Some(target), Some(weight)) =
                    (X::int(target), all_some(weight.map(tracked::constant::<X>)))
                else {
                    return Ran::Uncovered(input);
                };
                autodiff::class_index::<X>(ad_input::<X>(input), target, weight, params)
            }
            FusedOp::ClassProbs(input, target, weight, params) => {
                let (Some(target), Some(weight)) = (
                    tracked::float::<X>(target),
                    all_some(weight.map(tracked::constant::<X>)),
                ) else {
                    return Ran::Uncovered(input);
                };
                autodiff::class_probs::<X>(ad_input::<X>(input), target, weight, params)
            }
            FusedOp::Binary(input, target, weight, pos_weight, params) => {
                let (Some(target), Some(weight), Some(pos_weight)) = (
                    tracked::float::<X>(target),
                    periodic_as(weight, tracked::constant::<X>),
                    periodic_as(pos_weight, tracked::constant::<X>),
                ) else {
                    return Ran::Uncovered(input);
                };
                autodiff::binary::<X>(ad_input::<X>(input), target, weight, pos_weight, params)
            }
            FusedOp::Linear(op) => {
                let LinearOp {
                    hidden,
                    weight,
                    bias,
                    target,
                    class_weight,
                    params,
                } = op;
                let (Some(weight), Some(bias), Some(target), Some(class_weight)) = (
                    tracked::float::<X>(weight),
                    all_some(bias.map(tracked::float::<X>)),
                    X::int(target),
                    all_some(class_weight.map(tracked::constant::<X>)),
                ) else {
                    return Ran::Uncovered(hidden);
                };
                let hidden = ad_input::<X>(hidden);
                match autodiff::linear::<X>(hidden, weight, bias, target, class_weight, params) {
                    Ok(out) => Ran::Done(out),
                    Err(hidden) => Ran::Uncovered(hidden),
                }
            }
        };
        match ran {
            Ran::Done(loss) => Ran::Done(tracked::dispatch::<X>(loss)),
            Ran::Refused(bad) => Ran::Refused(bad),
            Ran::Uncovered(input) => Ran::Uncovered(tracked::dispatch::<X>(input)),
        }
    }
}

/// The input's autodiff primitive on `Autodiff<X>`: the device was matched to it.
#[cfg(any(
    feature = "fused-ndarray",
    feature = "fused-flex",
    feature = "fused-wgpu"
))]
fn ad_input<X: Backend>(input: DispatchTensor) -> autodiff::AdFloat<X>
where
    DispatchTensor: burn::backend::DispatchKindConversion<burn_autodiff::Autodiff<X>>,
{
    concrete::tracked::float::<X>(input).expect("the input lives on the backend its device names")
}
