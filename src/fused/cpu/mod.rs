//! The fused kernels of the CPU backends, `NdArray` and `Flex` (`f32` and `f64` tensors),
//! multi-threaded with rayon: one implementation for both. A backend takes part through
//! [`CpuTensors`], which reads its primitives as slices and lends the storage of a tensor
//! nothing else holds (`ndarray.rs`, `flex.rs`); the kernels (`class.rs`, `binary.rs`, on the
//! walk of `layout.rs`) work on slices and hand new results back as `TensorData`, which both
//! backends adopt without a copy.
//!
//! For a tracked input, the forward computes the gradients for a unit upstream gradient in
//! the same pass as the loss ([`Kernels::class_index_with_grad`], …): the input gradient over
//! the input's own storage when nothing else holds it (a linear layer's fresh output), into a
//! new buffer otherwise; the backward multiplies in place by the upstream gradient, and does
//! nothing at all for the common upstream gradient of exactly 1 ([`Kernels::scale`]). Class
//! losses read `[N, C, S]` inputs in their own layout and write the gradient in it.

#[cfg(feature = "fused-flex")]
mod flex;
#[cfg(feature = "fused-ndarray")]
mod ndarray;
pub(crate) mod real;

use std::borrow::Cow;

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, DType, TensorData, TensorMetadata};
use rayon::prelude::*;

use super::concrete::Concrete;
use super::kernels::{
    BadValue, BinaryArgs, BinaryParams, ClassIndexArgs, ClassIndexParams, ClassIndexSaved,
    ClassProbsArgs, ClassProbsParams, Kernels, LossAndGrads, Output, Periodic, Ran, Upstream,
};
use crate::fused::linear_products::{LinearOperands, LinearProducts};
use crate::reduction::Reduction;
use gemm::Matrix;
use layout::{Logits, Walk};
use real::Real;

/// A float element the kernels run in: `f32` or `f64`.
pub(crate) trait Element: Real + burn::backend::Element + bytemuck::Pod {}

impl Element for f32 {}
impl Element for f64 {}

/// A CPU backend whose tensors the kernels read as slices (in row-major order); every
/// backend that implements it has the fused kernels ([`Kernels`]). One primitive type holds
/// `f32` and `f64` tensors alike: the kernels pick the element type by the tensor's dtype.
pub(crate) trait CpuTensors: Concrete {
    /// The elements of a float tensor as `T`: borrowed when the tensor already is a
    /// contiguous `T` tensor, copied otherwise.
    fn reals<T: Element>(tensor: &FloatTensor<Self>) -> Cow<'_, [T]>;

    /// The elements of an integer tensor as `i64`: borrowed when they are, copied otherwise.
    fn indices(tensor: &IntTensor<Self>) -> Cow<'_, [i64]>;

    /// The elements of a float tensor as a mutable `T` slice in row-major order, when its
    /// storage is this tensor's alone (no other tensor or view holds it), contiguous and of
    /// `T`: the kernels may then write over it. `None` otherwise.
    fn unique_reals_mut<T: Element>(tensor: &mut FloatTensor<Self>) -> Option<&mut [T]>;

    /// A 2-D float tensor of `T` as a view of its storage, at its strides (a transpose or a
    /// slice is not copied); `None` for another dtype or rank, or a layout the view cannot
    /// describe.
    fn matrix<T: Element>(tensor: &FloatTensor<Self>) -> Option<Matrix<'_, T>>;
}

/// `values` as `T`s: borrowed when they are `T`s already, converted otherwise.
fn reals_from<S: Element, T: Element>(values: &[S]) -> Cow<'_, [T]> {
    if S::dtype() == T::dtype() {
        Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        Cow::Owned(values.iter().map(|&v| T::from_f64(v.to_f64())).collect())
    }
}

/// Integer `values` as `i64`s: borrowed when they are `i64`s already, converted otherwise.
fn indices_from<S: burn::backend::Element + bytemuck::Pod>(values: &[S]) -> Cow<'_, [i64]> {
    if S::dtype() == DType::I64 {
        Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        Cow::Owned(values.iter().map(|&v| v.to_i64()).collect())
    }
}

/// A tensor of `X` of `shape` holding `values` (moved, not copied).
fn tensor<T: Element, X: CpuTensors>(values: Vec<T>, shape: &[usize]) -> FloatTensor<X> {
    X::float_from_data(TensorData::new(values, shape.to_vec()), &Default::default())
}

/// Defines `fn $name<T: Element>(…)` three times, compiled for AVX-512 (F, BW, DQ, VL: loops
/// vectorised 16 `f32` wide), for AVX2 and FMA (8 wide) and for the baseline, and picks one
/// at run time by the CPU's features ([`simd::tier`]). The closures in its body, rayon's
/// tasks among them, inherit the features.
macro_rules! multiversioned {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident<T: Element>($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name<T: Element>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                $(#[$meta])*
                fn avx512<T: Element>($($arg: $ty),*) -> $ret $body
                #[target_feature(enable = "avx2,fma")]
                $(#[$meta])*
                fn avx2<T: Element>($($arg: $ty),*) -> $ret $body
                match super::simd::tier() {
                    // SAFETY: `tier` found the CPU to support the features of each.
                    super::simd::Tier::Avx512 => return unsafe { avx512::<T>($($arg),*) },
                    super::simd::Tier::Avx2 => return unsafe { avx2::<T>($($arg),*) },
                    super::simd::Tier::Baseline => {}
                }
            }
            $(#[$meta])*
            fn baseline<T: Element>($($arg: $ty),*) -> $ret $body
            baseline::<T>($($arg),*)
        }
    };
}

// After the macro: the kernels use it.
mod binary;
mod class;
mod gemm;
mod layout;
mod linear;
mod simd;

/// Elements each rayon task works on, at least.
const TASK_ELEMENTS: usize = 1 << 15;

/// The loss tensor of an op: the per-element values, or their sum divided by `divisor`.
fn loss_output<T: Element, X: CpuTensors>(
    per_element: Vec<T>,
    output: Output,
    divisor: f64,
) -> FloatTensor<X> {
    match output {
        Output::PerElement => {
            let len = per_element.len();
            tensor::<T, X>(per_element, &[len])
        }
        Output::Reduced(reduction) => {
            let sum: f64 = per_element
                .par_chunks(TASK_ELEMENTS)
                .map(|chunk| chunk.iter().map(|v| v.to_f64()).sum::<f64>())
                .sum();
            let value = match reduction {
                Reduction::Sum => sum,
                Reduction::Mean => sum / divisor,
            };
            tensor::<T, X>(vec![T::from_f64(value)], &[1])
        }
    }
}

/// The factor of a unit upstream gradient for each element: `1 / divisor` for a mean, 1
/// otherwise.
fn unit_scale<T: Element>(output: Output, divisor: f64) -> T {
    match output {
        Output::Reduced(Reduction::Mean) => T::from_f64(1.0 / divisor),
        _ => T::ONE,
    }
}

/// An op's input: borrowed for the loss alone, owned when its gradient is wanted (and may be
/// written over it).
enum Input<'a, X: Backend> {
    Borrowed(&'a FloatTensor<X>),
    Owned(FloatTensor<X>),
}

impl<X: CpuTensors> Input<'_, X> {
    /// Runs `kernel` on the input's logits, with where their gradient goes when it is
    /// wanted, and returns that gradient (the input's shape): the input itself when its
    /// storage is its own, a new zero-filled tensor otherwise.
    ///
    /// Written over the input even where the gradient is sparse (NLL's: zero but for one
    /// element per row): a fresh buffer would leave its zero pages unmapped, but whatever
    /// reads the gradient next (the backward of the op that made the input) then maps every
    /// page of it and writes its own result into new ones. Measured at `[4096, 32000]` on
    /// ndarray (2 threads), NLL on `x · 1`, forward + backward: 575 ms with a fresh buffer,
    /// 290 ms over the input (PyTorch: 374 ms).
    fn run<T: Element>(self, kernel: impl FnOnce(Logits<'_, T>)) -> Option<FloatTensor<X>> {
        let mut input = match self {
            Input::Borrowed(input) => {
                kernel(Logits::Read(&X::reals::<T>(input)));
                return None;
            }
            Input::Owned(input) => input,
        };
        if let Some(values) = X::unique_reals_mut::<T>(&mut input) {
            kernel(Logits::InPlace(values));
            return Some(input);
        }
        let logits = X::reals::<T>(&input);
        let mut gradient = vec![T::ZERO; logits.len()];
        kernel(Logits::Into {
            logits: &logits,
            gradient: &mut gradient,
        });
        Some(tensor::<T, X>(gradient, &input.shape()))
    }
}

/// The loss of a class-index op, its total weight, and the input gradient when the input is
/// owned.
#[allow(clippy::type_complexity)]
fn class_index_op<T: Element, X: CpuTensors>(
    input: Input<'_, X>,
    target: &IntTensor<X>,
    weight: Option<&FloatTensor<X>>,
    params: &ClassIndexParams,
) -> Result<(FloatTensor<X>, f64, Option<FloatTensor<X>>), BadValue> {
    let targets = X::indices(target);
    let weight = weight.map(|w| X::reals::<T>(w));
    let weight = weight.as_deref();
    let total = class::total_weight(&targets, weight, params)?;
    let walk = Walk {
        classes: params.classes,
        spatial: params.spatial,
    };
    let scale = unit_scale::<T>(params.output, total);
    let mut loss = vec![T::ZERO; targets.len()];
    let grad = input.run::<T>(|logits| {
        class::class_index(walk, logits, &targets, weight, params, scale, &mut loss)
    });
    Ok((loss_output::<T, X>(loss, params.output, total), total, grad))
}

/// The loss of a class-probability op and the gradients wanted (the input's only when it is
/// owned).
fn class_probs_op<T: Element, X: CpuTensors>(
    input: Input<'_, X>,
    target: &FloatTensor<X>,
    weight: Option<&FloatTensor<X>>,
    params: &ClassProbsParams,
    wants_target: bool,
) -> LossAndGrads<X> {
    let targets = X::reals::<T>(target);
    let weight = weight.map(|w| X::reals::<T>(w));
    let weight = weight.as_deref();
    let rows = params.batch * params.spatial;
    let walk = Walk {
        classes: params.classes,
        spatial: params.spatial,
    };
    let scale = unit_scale::<T>(params.output, rows as f64);
    let mut loss = vec![T::ZERO; rows];
    let mut target_grad = wants_target.then(|| vec![T::ZERO; targets.len()]);
    let grad = input.run::<T>(|logits| {
        let target_grad = target_grad.as_deref_mut();
        class::class_probs(
            walk,
            logits,
            &targets,
            weight,
            params,
            scale,
            &mut loss,
            target_grad,
        )
    });
    let target_grad = target_grad.map(|values| tensor::<T, X>(values, &target.shape()));
    (
        loss_output::<T, X>(loss, params.output, rows as f64),
        [grad, target_grad],
    )
}

/// The loss of a binary op and the gradients wanted (the input's only when it is owned).
#[allow(clippy::type_complexity)]
fn binary_op<T: Element, X: CpuTensors>(
    input: Input<'_, X>,
    target: &FloatTensor<X>,
    weight: Option<&Periodic<X>>,
    pos_weight: Option<&Periodic<X>>,
    params: &BinaryParams,
    wants_target: bool,
) -> Result<LossAndGrads<X>, BadValue> {
    let targets = X::reals::<T>(target);
    {
        let values = match &input {
            Input::Borrowed(input) => X::reals::<T>(input),
            Input::Owned(input) => X::reals::<T>(input),
        };
        binary::check_binary(&values, &targets, params)?;
    }
    let weight = weight.map(|w| (X::reals::<T>(&w.values), w.period));
    let pos_weight = pos_weight.map(|w| (X::reals::<T>(&w.values), w.period));
    let inputs = binary::BinaryInputs {
        targets: &targets,
        weight: weight
            .as_ref()
            .map(|(values, period)| (&values[..], *period)),
        pos_weight: pos_weight
            .as_ref()
            .map(|(values, period)| (&values[..], *period)),
    };
    let len = params.len;
    let scale = unit_scale::<T>(params.output, len as f64);
    let mut loss = vec![
        T::ZERO;
        match params.output {
            Output::PerElement => len,
            Output::Reduced(_) => len.div_ceil(TASK_ELEMENTS),
        }
    ];
    let mut target_grad = wants_target.then(|| vec![T::ZERO; len]);
    let grad = input.run::<T>(|logits| {
        let target_grad = target_grad.as_deref_mut();
        binary::binary(logits, &inputs, params, scale, &mut loss, target_grad)
    });
    let target_grad = target_grad.map(|values| tensor::<T, X>(values, &target.shape()));
    // A reduced output's `loss` holds one partial sum per task; their sum is the loss's.
    Ok((
        loss_output::<T, X>(loss, params.output, len as f64),
        [grad, target_grad],
    ))
}

/// `grad` times the upstream gradient `upstream`, in place.
fn scale_in_place<T: Element>(grad: &mut [T], upstream: &[T], how: Upstream) {
    match how {
        Upstream::Whole => {
            let g = upstream[0];
            grad.par_chunks_mut(TASK_ELEMENTS)
                .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = g * *v));
        }
        Upstream::Elements => grad
            .par_chunks_mut(TASK_ELEMENTS)
            .zip(upstream.par_chunks(TASK_ELEMENTS))
            .for_each(|(chunk, g)| chunk.iter_mut().zip(g).for_each(|(v, &g)| *v = g * *v)),
        Upstream::Rows { classes, spatial } => {
            // One `[C, S]` block per `n`, its `S` upstream values at stride 1.
            grad.par_chunks_mut(classes * spatial)
                .zip(upstream.par_chunks(spatial))
                .for_each(|(block, g)| {
                    for row in block.chunks_exact_mut(spatial) {
                        row.iter_mut().zip(g).for_each(|(v, &g)| *v = g * *v);
                    }
                });
        }
    }
}

/// Runs `$body` with `$t` bound to the element type of `$dtype` (`f32` or `f64`), or
/// evaluates `$other` for other dtypes.
macro_rules! by_dtype {
    ($dtype:expr, $t:ident => $body:expr, _ => $other:expr) => {
        match $dtype {
            DType::F32 => {
                type $t = f32;
                $body
            }
            DType::F64 => {
                type $t = f64;
                $body
            }
            _ => $other,
        }
    };
}

impl<X: CpuTensors> Kernels for X {
    const CHECKS_VALUES: bool = true;

    fn class_index_forward(
        args: ClassIndexArgs<'_, Self>,
    ) -> Option<Result<(FloatTensor<Self>, ClassIndexSaved<Self>), BadValue>> {
        let (input, target, weight, params) = args.split();
        let op = |(loss, total, _): (FloatTensor<Self>, f64, _)| {
            let total_weight =
                X::float_from_data(TensorData::new(vec![total], [1]), &Default::default());
            let total_weight = X::float_cast(total_weight, input.dtype().into());
            (
                loss,
                ClassIndexSaved {
                    log_sum_exp: None,
                    total_weight,
                },
            )
        };
        by_dtype!(input.dtype(), T => Some(
            class_index_op::<T, X>(Input::Borrowed(input), target, weight, params).map(op)),
            _ => None)
    }

    /// The gradient, recomputed: this backend's gradients come from
    /// [`Kernels::class_index_with_grad`], and this form serves the contract's tests.
    fn class_index_backward(
        args: ClassIndexArgs<'_, Self>,
        _saved: &ClassIndexSaved<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (input, target, weight, params) = args.split();
        let how = Upstream::of_class(params.output, params.classes, params.spatial);
        match Self::class_index_with_grad(input.clone(), target, weight, params) {
            Ran::Done((_, unit)) => Self::scale(unit, grad, how),
            _ => panic!("class_index_backward: the forward accepted this case"),
        }
    }

    fn class_probs_forward(
        args: ClassProbsArgs<'_, Self>,
    ) -> Option<(FloatTensor<Self>, Option<FloatTensor<Self>>)> {
        let (input, target, weight, params) = args.split();
        by_dtype!(input.dtype(), T => Some((
            class_probs_op::<T, X>(Input::Borrowed(input), target, weight, params, false).0,
            None,
        )), _ => None)
    }

    /// The gradients, recomputed, as [`Kernels::class_index_backward`].
    fn class_probs_backward(
        args: ClassProbsArgs<'_, Self>,
        _log_sum_exp: Option<&FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        let (input, target, weight, params) = args.split();
        let how = Upstream::of_class(params.output, params.classes, params.spatial);
        match Self::class_probs_with_grad(input.clone(), target, weight, params, wants) {
            Ran::Done((_, units)) => {
                units.map(|unit| unit.map(|unit| Self::scale(unit, grad.clone(), how)))
            }
            _ => panic!("class_probs_backward: the forward accepted this case"),
        }
    }

    fn binary_forward(args: BinaryArgs<'_, Self>) -> Option<Result<FloatTensor<Self>, BadValue>> {
        let (input, target, weight, pos_weight, params) = args.split();
        by_dtype!(input.dtype(), T => Some(
            binary_op::<T, X>(Input::Borrowed(input), target, weight, pos_weight, params, false)
                .map(|(loss, _)| loss)),
            _ => None)
    }

    /// The gradients, recomputed, as [`Kernels::class_index_backward`].
    fn binary_backward(
        args: BinaryArgs<'_, Self>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        let (input, target, weight, pos_weight, params) = args.split();
        let how = Upstream::of_binary(params.output);
        match Self::binary_with_grad(input.clone(), target, weight, pos_weight, params, wants) {
            Ran::Done((_, units)) => {
                units.map(|unit| unit.map(|unit| Self::scale(unit, grad.clone(), how)))
            }
            _ => panic!("binary_backward: the forward accepted this case"),
        }
    }

    fn class_index_with_grad(
        input: FloatTensor<Self>,
        target: &IntTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassIndexParams,
    ) -> Ran<Self, (FloatTensor<Self>, FloatTensor<Self>)> {
        by_dtype!(input.dtype(), T => {
            match class_index_op::<T, X>(Input::Owned(input), target, weight, params) {
                Ok((loss, _, grad)) => Ran::Done((loss, grad.expect("an owned input's gradient"))),
                Err(bad) => Ran::Refused(bad),
            }
        }, _ => Ran::Uncovered(input))
    }

    fn class_probs_with_grad(
        input: FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassProbsParams,
        wants: [bool; 2],
    ) -> Ran<Self, LossAndGrads<Self>> {
        // An untracked input is only read: no gradient of it, and its storage left alone.
        by_dtype!(input.dtype(), T => Ran::Done(if wants[0] {
            class_probs_op::<T, X>(Input::Owned(input), target, weight, params, wants[1])
        } else {
            class_probs_op::<T, X>(Input::Borrowed(&input), target, weight, params, wants[1])
        }), _ => Ran::Uncovered(input))
    }

    fn binary_with_grad(
        input: FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&Periodic<Self>>,
        pos_weight: Option<&Periodic<Self>>,
        params: &BinaryParams,
        wants: [bool; 2],
    ) -> Ran<Self, LossAndGrads<Self>> {
        let result = by_dtype!(input.dtype(), T => if wants[0] {
            binary_op::<T, X>(Input::Owned(input), target, weight, pos_weight, params, wants[1])
        } else {
            binary_op::<T, X>(Input::Borrowed(&input), target, weight, pos_weight, params, wants[1])
        }, _ => return Ran::Uncovered(input));
        match result {
            Ok(done) => Ran::Done(done),
            Err(bad) => Ran::Refused(bad),
        }
    }

    fn linear_chunk_rows(rows: usize, width: usize, classes: usize) -> usize {
        linear::chunk_rows(rows, width, classes)
    }

    fn linear_products<'a>(
        operands: LinearOperands<'a, Self>,
        wants: [bool; 3],
    ) -> Box<dyn LinearProducts<Self> + 'a> {
        linear::products(operands, wants)
    }

    fn scale(
        grad: FloatTensor<Self>,
        upstream: FloatTensor<Self>,
        how: Upstream,
    ) -> FloatTensor<Self> {
        by_dtype!(grad.dtype(), T => {
            let upstream = X::reals::<T>(&upstream);
            // The upstream gradient of `loss.backward()` on a reduced loss: nothing to do.
            if how == Upstream::Whole && upstream[0] == T::ONE {
                return grad;
            }
            let mut grad = grad;
            if let Some(values) = X::unique_reals_mut::<T>(&mut grad) {
                scale_in_place(values, &upstream, how);
                return grad;
            }
            let mut values = X::reals::<T>(&grad).into_owned();
            scale_in_place(&mut values, &upstream, how);
            tensor::<T, X>(values, &grad.shape())
        }, _ => super::kernels::scale_generic::<X>(grad, upstream, how))
    }
}

#[cfg(test)]
mod tests {
    //! The gradient goes over the input's storage exactly when nothing else holds it, for
    //! `f32` and `f64` tensors of the one primitive type of each backend.

    use burn::backend::TensorData;
    use burn::backend::tensor::{FloatTensor, IntTensor};

    use super::{CpuTensors, Element, Kernels, Ran};
    use crate::fused::kernels::{ClassIndexKind, ClassIndexParams, Output};
    use crate::reduction::Reduction;

    /// Where a float tensor's first element lies, when its storage is its own.
    fn address<T: Element, X: CpuTensors>(tensor: &mut FloatTensor<X>) -> Option<usize> {
        X::unique_reals_mut::<T>(tensor).map(|values| values.as_ptr() as usize)
    }

    /// `[N, C, S]` logits of `T` (fresh, so unique), class targets and the params.
    fn case<T: Element, X: CpuTensors>(
        spatial: usize,
    ) -> (FloatTensor<X>, IntTensor<X>, ClassIndexParams) {
        let (batch, classes) = (3, 5);
        let shape = if spatial == 1 {
            vec![batch, classes]
        } else {
            vec![batch, classes, spatial]
        };
        let len = batch * classes * spatial;
        let logits: Vec<T> = (0..len)
            .map(|i| T::from_f64((i as f64 * 0.37).sin()))
            .collect();
        let input = X::float_from_data(TensorData::new(logits, shape), &Default::default());
        let targets: Vec<i64> = (0..batch * spatial).map(|i| (i % classes) as i64).collect();
        let target = X::int_from_data(
            TensorData::new(targets, [batch * spatial]),
            &Default::default(),
        );
        let params = ClassIndexParams {
            kind: ClassIndexKind::CrossEntropy,
            batch,
            classes,
            spatial,
            ignore_index: -100,
            label_smoothing: 0.0,
            output: Output::Reduced(Reduction::Mean),
            check_values: true,
        };
        (input, target, params)
    }

    fn in_place_when_unique<T: Element, X: CpuTensors>() {
        // NLL's sparse gradient too: see `Input::run`.
        for (kind, spatial) in [1, 4]
            .map(|s| [ClassIndexKind::CrossEntropy, ClassIndexKind::Nll].map(|k| (k, s)))
            .concat()
        {
            let (mut input, target, params) = case::<T, X>(spatial);
            let params = ClassIndexParams { kind, ..params };
            let before = address::<T, X>(&mut input).expect("a fresh tensor is unique");
            let Ran::Done((_, mut grad)) = X::class_index_with_grad(input, &target, None, &params)
            else {
                panic!("covered");
            };
            assert_eq!(
                address::<T, X>(&mut grad),
                Some(before),
                "{kind:?}, S = {spatial}"
            );
        }
    }

    fn new_buffer_when_shared<T: Element, X: CpuTensors>() {
        for spatial in [1, 4] {
            let (input, target, params) = case::<T, X>(spatial);
            let kept = input.clone();
            let values = X::reals::<T>(&kept).into_owned();
            let Ran::Done((_, mut grad)) = X::class_index_with_grad(input, &target, None, &params)
            else {
                panic!("covered");
            };
            assert!(
                address::<T, X>(&mut grad).is_some(),
                "a new, unique gradient"
            );
            assert_eq!(X::reals::<T>(&kept), values, "the shared input changed");
        }
    }

    /// A transpose (and, where the backend's slice is a view, a row slice: Flex's is,
    /// burn-ndarray's copies) is read as a view of the tensor's own storage, not copied.
    fn views_are_not_copies<X: CpuTensors>(slice_is_view: bool) {
        let values: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let tensor = X::float_from_data(TensorData::new(values, [3, 4]), &Default::default());
        let start = X::matrix::<f32>(&tensor).expect("a 2-D f32 tensor").first();
        let transposed = X::float_swap_dims(tensor.clone(), 0, 1);
        let view = X::matrix::<f32>(&transposed).expect("a transpose is a view");
        assert_eq!((view.dims(), view.first()), ([4, 3], start));
        let rows = X::float_slice(tensor.clone(), &[burn::tensor::Slice::new(1, Some(3), 1)]);
        let view = X::matrix::<f32>(&rows).expect("rows are a view");
        assert_eq!(view.dims(), [2, 4]);
        if slice_is_view {
            assert_eq!(view.first(), start.wrapping_add(4));
        }
        assert!(X::matrix::<f64>(&tensor).is_none(), "another dtype");
    }

    fn both_dtypes<X: CpuTensors>(slice_is_view: bool) {
        views_are_not_copies::<X>(slice_is_view);
        in_place_when_unique::<f32, X>();
        new_buffer_when_shared::<f32, X>();
        in_place_when_unique::<f64, X>();
        new_buffer_when_shared::<f64, X>();
    }

    #[cfg(feature = "fused-ndarray")]
    #[test]
    #[allow(deprecated)]
    fn ndarray_in_place_when_unique() {
        both_dtypes::<burn_ndarray::NdArray>(false);
    }

    #[cfg(feature = "fused-flex")]
    #[test]
    fn flex_in_place_when_unique() {
        both_dtypes::<burn_flex::Flex>(true);
    }
}
