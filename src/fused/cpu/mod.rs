//! The fused kernels of the CPU backends, `NdArray` and `Flex` (`f32` and `f64` tensors),
//! multi-threaded over rows with rayon: one implementation for both. A backend takes part
//! through [`CpuTensors`], which reads its primitives as slices (`ndarray.rs`, `flex.rs`);
//! the kernels (`class.rs`, `binary.rs`) work on slices and hand their results back as
//! `TensorData`, which both backends adopt without a copy.
//!
//! Class losses work on rows of `C` contiguous logits: a `[N, C]` input is already that; a
//! `[N, C, S]` input (S > 1) is first copied to `[N, S, C]`, which the backward keeps instead
//! of the input (one extra copy of the input for K-dimensional inputs, none for `[N, C]`).
//! Each row's forward reads the row twice while it is in cache (its maximum, then the sum of
//! exponentials) and keeps one log-sum-exp; its backward writes each gradient element once.

#[cfg(feature = "fused-flex")]
mod flex;
#[cfg(feature = "fused-ndarray")]
mod ndarray;
pub(crate) mod real;

use std::borrow::Cow;

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, TensorData, TensorMetadata};
use rayon::prelude::*;

use super::kernels::{
    BadValue, BinaryArgs, ClassIndexArgs, ClassIndexSaved, ClassProbsArgs, Kernels, Output,
    Periodic,
};
use crate::reduction::Reduction;
use real::Real;

/// A float element the kernels run in: `f32` or `f64`.
pub(crate) trait Element: Real + burn::tensor::Element + bytemuck::Pod {}

impl Element for f32 {}
impl Element for f64 {}

/// A CPU backend whose tensors the kernels read as slices (in row-major order); every
/// backend that implements it has the fused kernels ([`Kernels`]).
pub(crate) trait CpuTensors: Backend {
    /// The elements of a float tensor as `T`: borrowed when the tensor already is a
    /// contiguous `T` tensor, copied otherwise.
    fn reals<T: Element>(tensor: &FloatTensor<Self>) -> Cow<'_, [T]>;

    /// The elements of an integer tensor as `i64`: borrowed when they are, copied otherwise.
    fn indices(tensor: &IntTensor<Self>) -> Cow<'_, [i64]>;
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
fn indices_from<S: burn::tensor::Element + bytemuck::Pod>(values: &[S]) -> Cow<'_, [i64]> {
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

/// Defines `fn $name<T: Element, X: CpuTensors>(…)` twice, once compiled for AVX2 and FMA (the closures in
/// its body, rayon's tasks among them, inherit the features, so their loops are vectorised
/// 8 `f32` wide) and once for the baseline, and picks one at run time by the CPU's features.
macro_rules! multiversioned {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident<T: Element, X: CpuTensors>($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name<T: Element, X: CpuTensors>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                $(#[$meta])*
                fn avx2<T: Element, X: CpuTensors>($($arg: $ty),*) -> $ret $body
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU was just found to support AVX2 and FMA.
                    return unsafe { avx2::<T, X>($($arg),*) };
                }
            }
            $(#[$meta])*
            fn baseline<T: Element, X: CpuTensors>($($arg: $ty),*) -> $ret $body
            baseline::<T, X>($($arg),*)
        }
    };
}

// After the macro: the kernels use it.
mod binary;
mod class;

/// Elements each rayon task works on, at least.
const TASK_ELEMENTS: usize = 1 << 15;

/// The input's rows of `C` classes as `[N * S, C]`: the input itself when `S` is 1, a copy of
/// `[N, C, S]` transposed to `[N, S, C]` otherwise.
fn rows<T: Element, X: CpuTensors>(
    input: &FloatTensor<X>,
    classes: usize,
    spatial: usize,
) -> Cow<'_, [T]> {
    let flat = X::reals::<T>(input);
    if spatial == 1 {
        return flat;
    }
    let batch = flat.len() / (classes * spatial);
    let mut out = vec![T::ZERO; flat.len()];
    out.par_chunks_mut(classes * spatial)
        .zip(flat.par_chunks(classes * spatial))
        .for_each(|(out, block)| {
            for (c, class) in block.chunks_exact(spatial).enumerate() {
                for (s, &v) in class.iter().enumerate() {
                    out[s * classes + c] = v;
                }
            }
        });
    debug_assert_eq!(out.len(), batch * classes * spatial);
    Cow::Owned(out)
}

/// The inverse of [`rows`] for a gradient: `[N * S, C]` rows back to `[N, C, S]`.
fn unrows<T: Element>(rows: Vec<T>, classes: usize, spatial: usize) -> Vec<T> {
    if spatial == 1 {
        return rows;
    }
    let mut out = vec![T::ZERO; rows.len()];
    out.par_chunks_mut(classes * spatial)
        .zip(rows.par_chunks(classes * spatial))
        .for_each(|(out, block)| {
            for (s, row) in block.chunks_exact(classes).enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    out[c * spatial + s] = v;
                }
            }
        });
    out
}

/// `values` in `tasks` chunks of `width` for the tasks of a backward pass; `tasks` empty
/// chunks when `values` is empty (a gradient nobody asked for).
fn task_chunks<T>(values: &mut [T], tasks: usize, width: usize) -> Vec<&mut [T]> {
    if values.is_empty() {
        (0..tasks).map(|_| &mut [][..]).collect()
    } else {
        values.chunks_mut(width).collect()
    }
}

/// Rows per rayon task for rows of `width` elements.
fn rows_per_task(width: usize) -> usize {
    (TASK_ELEMENTS / width.max(1)).max(1)
}

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
            reduced::<T, X>(sum, reduction, divisor)
        }
    }
}

/// The `[1]` loss of a reduction from the sum of the per-element losses.
fn reduced<T: Element, X: CpuTensors>(
    sum: f64,
    reduction: Reduction,
    divisor: f64,
) -> FloatTensor<X> {
    let value = match reduction {
        Reduction::Sum => sum,
        Reduction::Mean => sum / divisor,
    };
    tensor::<T, X>(vec![T::from_f64(value)], &[1])
}

/// The gradient of each element's loss: `grad` itself, or the reduced loss's gradient spread
/// over the elements (divided by the mean's divisor).
fn element_grads<T: Element, X: CpuTensors>(
    grad: &FloatTensor<X>,
    output: Output,
    divisor: f64,
) -> ElementGrad<T> {
    let grad = X::reals::<T>(grad);
    match output {
        Output::PerElement => ElementGrad::Each(grad.into_owned()),
        Output::Reduced(Reduction::Sum) => ElementGrad::All(grad[0]),
        Output::Reduced(Reduction::Mean) => {
            ElementGrad::All(T::from_f64(grad[0].to_f64() / divisor))
        }
    }
}

enum ElementGrad<T> {
    Each(Vec<T>),
    All(T),
}

impl<T: Real> ElementGrad<T> {
    #[inline(always)]
    fn at(&self, i: usize) -> T {
        match self {
            Self::Each(values) => values[i],
            Self::All(value) => *value,
        }
    }
}

/// Runs `$body` with `$t` bound to the element type of `$input`'s dtype (`None` for other
/// dtypes).
macro_rules! by_dtype {
    ($input:expr, $t:ident => $body:expr) => {
        match TensorMetadata::dtype($input) {
            DType::F32 => {
                type $t = f32;
                Some($body)
            }
            DType::F64 => {
                type $t = f64;
                Some($body)
            }
            _ => None,
        }
    };
}

impl<X: CpuTensors> Kernels for X {
    const CHECKS_VALUES: bool = true;

    fn class_index_forward(
        args: ClassIndexArgs<'_, Self>,
    ) -> Option<Result<(FloatTensor<Self>, ClassIndexSaved<Self>), BadValue>> {
        let (input, target, weight, params) = args.split();
        by_dtype!(input, T => class::class_index_forward::<T, X>(input, target, weight, params)
        .map(|(loss, log_sum_exp, total_weight)| {
            (loss, ClassIndexSaved { log_sum_exp, total_weight })
        }))
    }

    fn class_index_backward(
        args: ClassIndexArgs<'_, Self>,
        saved: &ClassIndexSaved<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (input, target, weight, params) = args.split();
        by_dtype!(input, T => class::class_index_backward::<T, X>(
            input, target, weight, params, saved.log_sum_exp.as_ref(), &saved.total_weight, &grad))
        .expect("the forward accepted this dtype")
    }

    fn class_probs_forward(
        args: ClassProbsArgs<'_, Self>,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        let (input, target, weight, params) = args.split();
        by_dtype!(input, T => class::class_probs_forward::<T, X>(input, target, weight, params))
    }

    fn class_probs_backward(
        args: ClassProbsArgs<'_, Self>,
        log_sum_exp: &FloatTensor<Self>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        let (input, target, weight, params) = args.split();
        by_dtype!(input, T => class::class_probs_backward::<T, X>(
            input, target, weight, params, log_sum_exp, &grad, wants))
        .expect("the forward accepted this dtype")
    }

    fn binary_forward(args: BinaryArgs<'_, Self>) -> Option<Result<FloatTensor<Self>, BadValue>> {
        let (input, target, weight, pos_weight, params) = args.split();
        by_dtype!(input, T => binary::binary_forward::<T, X>(
            input,
            target,
            weight.map(Periodic::parts),
            pos_weight.map(Periodic::parts),
            params,
        ))
    }

    fn binary_backward(
        args: BinaryArgs<'_, Self>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        let (input, target, weight, pos_weight, params) = args.split();
        by_dtype!(input, T => binary::binary_backward::<T, X>(
            input,
            target,
            weight.map(Periodic::parts),
            pos_weight.map(Periodic::parts),
            params,
            &grad,
            wants,
        ))
        .expect("the forward accepted this dtype")
    }
}
