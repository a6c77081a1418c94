//! The fused kernels of the `NdArray` CPU backend (`f32` and `f64` tensors), multi-threaded
//! over rows with rayon (the pool burn-ndarray itself uses).
//!
//! Class losses work on rows of `C` contiguous logits: a `[N, C]` input is already that; a
//! `[N, C, S]` input (S > 1) is first copied to `[N, S, C]`, which the backward keeps instead
//! of the input (one extra copy of the input for K-dimensional inputs, none for `[N, C]`).
//! Each row's forward reads the row twice while it is in cache (its maximum, then the sum of
//! exponentials) and keeps one log-sum-exp; its backward writes each gradient element once.

use std::borrow::Cow;

use burn::tensor::TensorMetadata;
use burn::tensor::ops::FloatTensor;
use burn_ndarray::{FloatNdArrayElement, NdArray, NdArrayTensor, SharedArray};
use ndarray::{ArcArray, ArrayViewD, IxDyn};
use rayon::prelude::*;

use super::kernels::{
    BadValue, BinaryArgs, BinaryKind, BinaryParams, ClassIndexArgs, ClassIndexKind,
    ClassIndexParams, ClassIndexSaved, ClassProbsArgs, ClassProbsParams, Kernels, Output, Periodic,
};
use super::real::{Real, max_of, sum_map, sum_map2};
use crate::reduction::Reduction;

/// Defines `fn $name<T: Element>(…)` twice, once compiled for AVX2 and FMA (the closures in
/// its body, rayon's tasks among them, inherit the features, so their loops are vectorised
/// 8 `f32` wide) and once for the baseline, and picks one at run time by the CPU's features.
macro_rules! multiversioned {
    (
        $(#[$meta:meta])*
        fn $name:ident<T: Element>($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block
    ) => {
        $(#[$meta])*
        fn $name<T: Element>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                $(#[$meta])*
                fn avx2<T: Element>($($arg: $ty),*) -> $ret $body
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU was just found to support AVX2 and FMA.
                    return unsafe { avx2::<T>($($arg),*) };
                }
            }
            $(#[$meta])*
            fn baseline<T: Element>($($arg: $ty),*) -> $ret $body
            baseline::<T>($($arg),*)
        }
    };
}

/// Elements each rayon task works on, at least.
const TASK_ELEMENTS: usize = 1 << 15;

/// A float element the kernels run in, with the `NdArrayTensor` variant that holds it.
trait Element: Real {
    fn view(tensor: &NdArrayTensor) -> Option<ArrayViewD<'_, Self>>;
    fn wrap(array: SharedArray<Self>) -> NdArrayTensor;
}

impl Element for f32 {
    fn view(tensor: &NdArrayTensor) -> Option<ArrayViewD<'_, Self>> {
        match tensor {
            NdArrayTensor::F32(storage) => Some(storage.view()),
            _ => None,
        }
    }
    fn wrap(array: SharedArray<Self>) -> NdArrayTensor {
        array.into()
    }
}

impl Element for f64 {
    fn view(tensor: &NdArrayTensor) -> Option<ArrayViewD<'_, Self>> {
        match tensor {
            NdArrayTensor::F64(storage) => Some(storage.view()),
            _ => None,
        }
    }
    fn wrap(array: SharedArray<Self>) -> NdArrayTensor {
        array.into()
    }
}

/// The elements of `tensor` in row-major order as `T`: borrowed when the tensor already is a
/// contiguous `T` tensor, copied otherwise.
fn reals<T: Element>(tensor: &NdArrayTensor) -> Cow<'_, [T]> {
    if let Some(view) = T::view(tensor) {
        return match view.to_slice() {
            Some(slice) => Cow::Borrowed(slice),
            None => Cow::Owned(view.iter().copied().collect()),
        };
    }
    Cow::Owned(match tensor {
        NdArrayTensor::F32(storage) => storage
            .view()
            .iter()
            .map(|&v| T::from_f64(v as f64))
            .collect(),
        NdArrayTensor::F64(storage) => storage.view().iter().map(|&v| T::from_f64(v)).collect(),
        other => panic!(
            "fused kernels: expected a float tensor, got {:?}",
            other.dtype()
        ),
    })
}

/// The elements of an integer tensor in row-major order as `i64`.
fn indices(tensor: &NdArrayTensor) -> Cow<'_, [i64]> {
    macro_rules! convert {
        ($storage:expr) => {
            Cow::Owned($storage.view().iter().map(|&v| v as i64).collect())
        };
    }
    match tensor {
        NdArrayTensor::I64(storage) => {
            let view = storage.view();
            match view.to_slice() {
                Some(slice) => Cow::Borrowed(slice),
                None => Cow::Owned(view.iter().copied().collect()),
            }
        }
        NdArrayTensor::I32(storage) => convert!(storage),
        NdArrayTensor::I16(storage) => convert!(storage),
        NdArrayTensor::I8(storage) => convert!(storage),
        NdArrayTensor::U64(storage) => convert!(storage),
        NdArrayTensor::U32(storage) => convert!(storage),
        NdArrayTensor::U16(storage) => convert!(storage),
        NdArrayTensor::U8(storage) => convert!(storage),
        other => panic!(
            "fused kernels: expected an integer tensor, got {:?}",
            other.dtype()
        ),
    }
}

/// A tensor of `shape` holding `values`.
fn tensor<T: Element>(values: Vec<T>, shape: &[usize]) -> NdArrayTensor {
    T::wrap(ArcArray::from_shape_vec(IxDyn(shape), values).expect("length matches shape"))
}

/// The input's rows of `C` classes as `[N * S, C]`: the input itself when `S` is 1, a copy of
/// `[N, C, S]` transposed to `[N, S, C]` otherwise.
fn rows<T: Element>(input: &NdArrayTensor, classes: usize, spatial: usize) -> Cow<'_, [T]> {
    let flat = reals::<T>(input);
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
fn loss_output<T: Element>(per_element: Vec<T>, output: Output, divisor: f64) -> NdArrayTensor {
    match output {
        Output::PerElement => {
            let len = per_element.len();
            tensor(per_element, &[len])
        }
        Output::Reduced(reduction) => {
            let sum: f64 = per_element
                .par_chunks(TASK_ELEMENTS)
                .map(|chunk| chunk.iter().map(|v| v.to_f64()).sum::<f64>())
                .sum();
            reduced::<T>(sum, reduction, divisor)
        }
    }
}

/// The `[1]` loss of a reduction from the sum of the per-element losses.
fn reduced<T: Element>(sum: f64, reduction: Reduction, divisor: f64) -> NdArrayTensor {
    let value = match reduction {
        Reduction::Sum => sum,
        Reduction::Mean => sum / divisor,
    };
    tensor(vec![T::from_f64(value)], &[1])
}

/// The gradient of each element's loss: `grad` itself, or the reduced loss's gradient spread
/// over the elements (divided by the mean's divisor).
fn element_grads<T: Element>(grad: &NdArrayTensor, output: Output, divisor: f64) -> ElementGrad<T> {
    let grad = reals::<T>(grad);
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

/// The first target that is neither a class nor `ignore_index`.
fn check_targets(targets: &[i64], classes: usize, ignore_index: i64) -> Result<(), BadValue> {
    match targets
        .iter()
        .position(|&t| t != ignore_index && (t < 0 || t >= classes as i64))
    {
        Some(flat_index) => Err(BadValue::ClassIndex {
            flat_index,
            value: targets[flat_index],
        }),
        None => Ok(()),
    }
}

/// The class weights as `T`, or `None`.
fn class_weights<T: Element>(weight: Option<&NdArrayTensor>) -> Option<Vec<T>> {
    weight.map(|w| reals::<T>(w).into_owned())
}

/// The terms of one cross-entropy row that both passes use.
struct RowTerms<T> {
    /// `(1 - ε) w[t]`.
    target_scale: T,
    /// `ε / C`.
    smoothing_scale: T,
    /// `Σ_c w[c]` (C without weights).
    weight_sum: T,
}

impl<T: Real> RowTerms<T> {
    fn new(weight_sum: T, target_weight: T, params: &ClassIndexParams) -> Self {
        let epsilon = T::from_f64(params.label_smoothing);
        Self {
            target_scale: (T::ONE - epsilon) * target_weight,
            smoothing_scale: T::from_f64(params.label_smoothing / params.classes as f64),
            weight_sum,
        }
    }
}

/// `Σ_c w[c]`, or `C` without weights.
fn weight_sum<T: Real>(weight: Option<&[T]>, classes: usize) -> T {
    match weight {
        Some(w) => w.iter().fold(T::ZERO, |a, &b| a + b),
        None => T::from_f64(classes as f64),
    }
}

/// A row's log-sum-exp in two parts, `max + log_sum` (NaN if the row holds a NaN, or is all
/// `-inf` or `+inf`): `x - max` is exact, so `-log p = (max - x) + log_sum` and
/// `p = exp((x - max) - log_sum)` keep their precision for large logits.
#[derive(Clone, Copy)]
struct Softmax<T> {
    max: T,
    log_sum: T,
}

impl<T: Real> Softmax<T> {
    #[inline(always)]
    fn of(row: &[T]) -> Self {
        let max = max_of(row);
        let sum = sum_map(row, |v| (v - max).exp_nonpositive());
        Self {
            max,
            log_sum: sum.ln(),
        }
    }

    /// The saved form: `max` at `i`, `log_sum` at `count + i`.
    #[inline(always)]
    fn load(saved: &[T], i: usize) -> Self {
        Self {
            max: saved[i],
            log_sum: saved[saved.len() / 2 + i],
        }
    }

    /// `-log_softmax(x)`.
    #[inline(always)]
    fn neg_log_p(self, x: T) -> T {
        (self.max - x) + self.log_sum
    }

    /// `softmax(x)`.
    #[inline(always)]
    fn p(self, x: T) -> T {
        ((x - self.max) - self.log_sum).exp_nonpositive()
    }
}

/// The saved form of per-row softmaxes: all maxima, then all log-sums.
fn saved_softmax<T: Element>(max: Vec<T>, log_sum: Vec<T>) -> NdArrayTensor {
    let len = max.len() + log_sum.len();
    let mut saved = max;
    saved.extend(log_sum);
    tensor(saved, &[len])
}

multiversioned! {
fn class_index_forward_typed<T: Element>(
    input: &NdArrayTensor,
    target: &NdArrayTensor,
    weight: Option<&NdArrayTensor>,
    params: &ClassIndexParams,
) -> Result<(NdArrayTensor, Option<NdArrayTensor>, NdArrayTensor), BadValue> {
    let classes = params.classes;
    let targets = indices(target);
    if params.check_values {
        check_targets(&targets, classes, params.ignore_index)?;
    }
    let weight = class_weights::<T>(weight);
    let weight = weight.as_deref();
    let logits = rows::<T>(input, classes, params.spatial);
    let count = targets.len();
    let mut loss = vec![T::ZERO; count];
    let mut target_weight = vec![T::ZERO; count];
    let cross_entropy = params.kind == ClassIndexKind::CrossEntropy;
    let stats = if cross_entropy { count } else { 0 };
    let (mut row_max, mut log_sum) = (vec![T::ZERO; stats], vec![T::ZERO; stats]);
    let per_task = rows_per_task(classes);
    let terms_of = |t: i64| -> Option<(usize, T)> {
        (t != params.ignore_index).then(|| {
            let t = t as usize;
            (t, weight.map_or(T::ONE, |w| w[t]))
        })
    };
    if cross_entropy {
        let epsilon = params.label_smoothing;
        loss.par_chunks_mut(per_task)
            .zip(target_weight.par_chunks_mut(per_task))
            .zip(row_max.par_chunks_mut(per_task))
            .zip(log_sum.par_chunks_mut(per_task))
            .enumerate()
            .for_each(|(task, (((loss, tw), row_max), log_sum))| {
                {
                    let first = task * per_task;
                    for (i, (((loss, tw), row_max), log_sum)) in loss
                        .iter_mut()
                        .zip(tw)
                        .zip(row_max)
                        .zip(log_sum)
                        .enumerate()
                    {
                        // Every row's softmax, ignored ones too: their gradient is
                        // PyTorch's `0 · softmax`, NaN where the row holds a NaN.
                        let row = &logits[(first + i) * classes..][..classes];
                        let softmax = Softmax::of(row);
                        (*row_max, *log_sum) = (softmax.max, softmax.log_sum);
                        let Some((t, wt)) = terms_of(targets[first + i]) else {
                            continue;
                        };
                        let terms = RowTerms::new(T::ZERO, wt, params);
                        let mut value = terms.target_scale * softmax.neg_log_p(row[t]);
                        if epsilon > 0.0 {
                            let smooth = match weight {
                                Some(w) => sum_map2(row, w, |x, w| w * softmax.neg_log_p(x)),
                                None => sum_map(row, |x| softmax.neg_log_p(x)),
                            };
                            value = value + terms.smoothing_scale * smooth;
                        }
                        *loss = value;
                        *tw = wt;
                    }
                }
            });
    } else {
        loss.par_chunks_mut(per_task)
            .zip(target_weight.par_chunks_mut(per_task))
            .enumerate()
            .for_each(|(task, (loss, tw))| {
                let first = task * per_task;
                for (i, (loss, tw)) in loss.iter_mut().zip(tw).enumerate() {
                    if let Some((t, wt)) = terms_of(targets[first + i]) {
                        *loss = -(wt * logits[(first + i) * classes + t]);
                        *tw = wt;
                    }
                }
            });
    }
    let total_weight: f64 = target_weight.iter().map(|w| w.to_f64()).sum();
    let output = loss_output(loss, params.output, total_weight);
    Ok((
        output,
        cross_entropy.then(|| saved_softmax(row_max, log_sum)),
        tensor(vec![T::from_f64(total_weight)], &[1]),
    ))
}
}

multiversioned! {
fn class_index_backward_typed<T: Element>(
    input: &NdArrayTensor,
    target: &NdArrayTensor,
    weight: Option<&NdArrayTensor>,
    params: &ClassIndexParams,
    log_sum_exp: Option<&NdArrayTensor>,
    total_weight: &NdArrayTensor,
    grad: &NdArrayTensor,
) -> NdArrayTensor {
    let (classes, spatial) = (params.classes, params.spatial);
    let targets = indices(target);
    let weight = class_weights::<T>(weight);
    let weight = weight.as_deref();
    let total_weight = reals::<T>(total_weight)[0].to_f64();
    let grads = element_grads::<T>(grad, params.output, total_weight);
    let count = targets.len();
    let mut dx = vec![T::ZERO; count * classes];
    let per_task = rows_per_task(classes);
    let all_weights = weight_sum(weight, classes);
    match params.kind {
        ClassIndexKind::CrossEntropy => {
            let logits = rows::<T>(input, classes, spatial);
            let saved = reals::<T>(log_sum_exp.expect("saved by the forward"));
            dx.par_chunks_mut(per_task * classes)
                .enumerate()
                .for_each(|(task, dx)| {
                    {
                        let first = task * per_task;
                        for (i, out) in dx.chunks_exact_mut(classes).enumerate() {
                            let r = first + i;
                            let t = targets[r];
                            let row = &logits[r * classes..][..classes];
                            let softmax = Softmax::load(&saved, r);
                            if t == params.ignore_index {
                                // PyTorch's log_softmax backward of a zero gradient.
                                for (o, &x) in out.iter_mut().zip(row) {
                                    *o = softmax.p(x) * T::ZERO;
                                }
                                continue;
                            }
                            let t = t as usize;
                            let wt = weight.map_or(T::ONE, |w| w[t]);
                            let terms = RowTerms::new(all_weights, wt, params);
                            let g = grads.at(r);
                            let p_scale =
                                g * (terms.target_scale + terms.smoothing_scale * terms.weight_sum);
                            let uniform = g * terms.smoothing_scale;
                            match weight {
                                Some(w) => {
                                    for ((o, &x), &w) in out.iter_mut().zip(row).zip(w) {
                                        *o = p_scale * softmax.p(x) - uniform * w;
                                    }
                                }
                                None => {
                                    for (o, &x) in out.iter_mut().zip(row) {
                                        *o = p_scale * softmax.p(x) - uniform;
                                    }
                                }
                            }
                            out[t] = out[t] - g * terms.target_scale;
                        }
                    }
                });
        }
        ClassIndexKind::Nll => {
            dx.par_chunks_mut(per_task * classes)
                .enumerate()
                .for_each(|(task, dx)| {
                    let first = task * per_task;
                    for (i, out) in dx.chunks_exact_mut(classes).enumerate() {
                        let t = targets[first + i];
                        if t != params.ignore_index {
                            let t = t as usize;
                            out[t] = -(weight.map_or(T::ONE, |w| w[t]) * grads.at(first + i));
                        }
                    }
                });
        }
    }
    let shape = input.shape().to_vec();
    tensor(unrows(dx, classes, spatial), &shape)
}
}

/// `Σ_c w[c] q_c` and `Σ_c w[c] q_c (-log p_c)` of a probability-target row,
/// `q = (1 - ε) y + ε / C`.
#[inline(always)]
fn probs_row_sums<T: Real>(
    row: &[T],
    y: &[T],
    weight: Option<&[T]>,
    keep: T,
    uniform: T,
    softmax: Softmax<T>,
) -> (T, T) {
    let mut wq_sum = T::ZERO;
    let mut loss = T::ZERO;
    for c in 0..row.len() {
        let wq = weight.map_or(T::ONE, |w| w[c]) * (keep * y[c] + uniform);
        wq_sum = wq_sum + wq;
        loss = loss + wq * softmax.neg_log_p(row[c]);
    }
    (wq_sum, loss)
}

multiversioned! {
fn class_probs_forward_typed<T: Element>(
    input: &NdArrayTensor,
    target: &NdArrayTensor,
    weight: Option<&NdArrayTensor>,
    params: &ClassProbsParams,
) -> (NdArrayTensor, NdArrayTensor) {
    let classes = params.classes;
    let weight = class_weights::<T>(weight);
    let weight = weight.as_deref();
    let logits = rows::<T>(input, classes, params.spatial);
    let ys = rows::<T>(target, classes, params.spatial);
    let count = logits.len() / classes;
    let keep = T::from_f64(1.0 - params.label_smoothing);
    let uniform = T::from_f64(params.label_smoothing / classes as f64);
    let mut loss = vec![T::ZERO; count];
    let (mut row_max, mut log_sum) = (vec![T::ZERO; count], vec![T::ZERO; count]);
    let per_task = rows_per_task(classes);
    loss.par_chunks_mut(per_task)
        .zip(row_max.par_chunks_mut(per_task))
        .zip(log_sum.par_chunks_mut(per_task))
        .enumerate()
        .for_each(|(task, ((loss, row_max), log_sum))| {
            {
                let first = task * per_task;
                for (i, ((loss, row_max), log_sum)) in
                    loss.iter_mut().zip(row_max).zip(log_sum).enumerate()
                {
                    let r = first + i;
                    let row = &logits[r * classes..][..classes];
                    let y = &ys[r * classes..][..classes];
                    let softmax = Softmax::of(row);
                    (*row_max, *log_sum) = (softmax.max, softmax.log_sum);
                    *loss = probs_row_sums(row, y, weight, keep, uniform, softmax).1;
                }
            }
        });
    (
        loss_output(loss, params.output, count as f64),
        saved_softmax(row_max, log_sum),
    )
}
}

multiversioned! {
#[allow(clippy::too_many_arguments)]
fn class_probs_backward_typed<T: Element>(
    input: &NdArrayTensor,
    target: &NdArrayTensor,
    weight: Option<&NdArrayTensor>,
    params: &ClassProbsParams,
    log_sum_exp: &NdArrayTensor,
    grad: &NdArrayTensor,
    wants: [bool; 2],
) -> [Option<NdArrayTensor>; 2] {
    let (classes, spatial) = (params.classes, params.spatial);
    let weight = class_weights::<T>(weight);
    let weight = weight.as_deref();
    let logits = rows::<T>(input, classes, spatial);
    let ys = rows::<T>(target, classes, spatial);
    let saved = reals::<T>(log_sum_exp);
    let count = logits.len() / classes;
    let grads = element_grads::<T>(grad, params.output, count as f64);
    let keep = T::from_f64(1.0 - params.label_smoothing);
    let uniform = T::from_f64(params.label_smoothing / classes as f64);
    let mut dx = vec![T::ZERO; if wants[0] { logits.len() } else { 0 }];
    let mut dy = vec![T::ZERO; if wants[1] { logits.len() } else { 0 }];
    let per_task = rows_per_task(classes);
    let width = per_task * classes;
    let tasks = count.div_ceil(per_task);
    let dx_chunks = task_chunks(&mut dx, tasks, width);
    let dy_chunks = task_chunks(&mut dy, tasks, width);
    dx_chunks
        .into_par_iter()
        .zip(dy_chunks)
        .enumerate()
        .for_each(|(task, (dx, dy))| {
            {
                let first = task * per_task;
                let rows_here = (count - first).min(per_task);
                for i in 0..rows_here {
                    let r = first + i;
                    let row = &logits[r * classes..][..classes];
                    let y = &ys[r * classes..][..classes];
                    let g = grads.at(r);
                    let softmax = Softmax::load(&saved, r);
                    if !dx.is_empty() {
                        let (wq_sum, _) = probs_row_sums(row, y, weight, keep, uniform, softmax);
                        let out = &mut dx[i * classes..][..classes];
                        for c in 0..classes {
                            let w = weight.map_or(T::ONE, |w| w[c]);
                            let p = softmax.p(row[c]);
                            out[c] = g * (p * wq_sum - w * (keep * y[c] + uniform));
                        }
                    }
                    if !dy.is_empty() {
                        let out = &mut dy[i * classes..][..classes];
                        for c in 0..classes {
                            let w = weight.map_or(T::ONE, |w| w[c]);
                            out[c] = g * keep * w * softmax.neg_log_p(row[c]);
                        }
                    }
                }
            }
        });
    let shape = input.shape().to_vec();
    let finish = |values: Vec<T>, wanted: bool| {
        wanted.then(|| tensor(unrows(values, classes, spatial), &shape))
    };
    [finish(dx, wants[0]), finish(dy, wants[1])]
}
}

/// A binary op's weight as `T` values and their period.
fn periodic<T: Element>(weight: Option<(&NdArrayTensor, usize)>) -> Option<(Vec<T>, usize)> {
    weight.map(|(values, period)| (reals::<T>(values).into_owned(), period))
}

/// Writes the weight of elements `first..first + out.len()` into `out`: `values[i % period]`,
/// with a running index instead of a division per element.
fn fill_periodic<T: Real>(values: &[T], period: usize, first: usize, out: &mut [T]) {
    let mut j = first % period;
    for o in out {
        *o = values[j];
        j += 1;
        if j == period {
            j = 0;
        }
    }
}

use crate::pytorch::{BCE_GRAD_EPSILON as EPSILON, BCE_LOG_FLOOR as LOG_FLOOR};

/// BCE with logits at one element: the loss `(1 - t) softplus(x) + pw t softplus(-x)` and
/// its slopes `∂/∂x = (1 - t) σ(x) - pw t σ(-x)`, `∂/∂t = pw softplus(-x) - softplus(x)`,
/// all from `e = exp(-|x|)`, without cancellation in either tail.
#[inline(always)]
fn with_logits<T: Real>(x: T, t: T, pw: T) -> (T, T, T) {
    let abs = if x < T::ZERO { -x } else { x };
    let e = (-abs).exp_nonpositive();
    let log_tail = e.log1p_unit(); // log1p(exp(-|x|))
    let positive = if x > T::ZERO { x } else { T::ZERO };
    let softplus = positive + log_tail; // -log σ(-x)
    let softplus_neg = (positive - x) + log_tail; // -log σ(x)
    let large = T::ONE / (T::ONE + e);
    let small = e * large;
    let (sigmoid, sigmoid_neg) = if x > T::ZERO {
        (large, small)
    } else {
        (small, large)
    };
    let one_minus_t = T::ONE - t;
    let positive_weight = pw * t;
    (
        one_minus_t * softplus + positive_weight * softplus_neg,
        one_minus_t * sigmoid - positive_weight * sigmoid_neg,
        pw * softplus_neg - softplus,
    )
}

/// BCE on probabilities at one element: the loss
/// `-(t max(ln p, -100) + (1 - t) max(ln(1 - p), -100))`, PyTorch's input slope
/// `(p - t) / max(p (1 - p), 1e-12)`, and the target slope `max(ln(1 - p), -100) - max(ln p,
/// -100)`.
#[inline(always)]
fn on_probabilities<T: Real>(p: T, t: T) -> (T, T, T) {
    let floor = T::from_f64(LOG_FLOOR);
    let log_p = max_floor(p.ln(), floor);
    let log_q = max_floor(p.ln_1m(), floor);
    let variance = p * (T::ONE - p);
    let epsilon = T::from_f64(EPSILON);
    let variance = if variance < epsilon {
        epsilon
    } else {
        variance
    };
    (
        -(t * log_p + (T::ONE - t) * log_q),
        (p - t) / variance,
        log_q - log_p,
    )
}

/// `max(value, floor)` that keeps NaN.
#[inline(always)]
fn max_floor<T: Real>(value: T, floor: T) -> T {
    if value < floor { floor } else { value }
}

/// The per-element weight and positive weight of one task's elements (`None` without).
struct ChunkWeights<T> {
    weight: Option<Vec<T>>,
    pos_weight: Option<Vec<T>>,
}

impl<T: Real> ChunkWeights<T> {
    fn new(
        weight: &Option<(Vec<T>, usize)>,
        pos_weight: &Option<(Vec<T>, usize)>,
        first: usize,
        len: usize,
    ) -> Self {
        let fill = |w: &Option<(Vec<T>, usize)>| {
            w.as_ref().map(|(values, period)| {
                let mut out = vec![T::ZERO; len];
                fill_periodic(values, *period, first, &mut out);
                out
            })
        };
        Self {
            weight: fill(weight),
            pos_weight: fill(pos_weight),
        }
    }
}

/// `pick` of `(loss, ∂/∂x, ∂/∂t)` (before the upstream gradient and the weight) for each of
/// one task's elements: one vectorised loop per kind and presence of a positive weight.
#[inline(always)]
fn binary_map<T: Real>(
    kind: BinaryKind,
    xs: &[T],
    ts: &[T],
    pos_weight: Option<&[T]>,
    out: &mut [T],
    pick: impl Fn((T, T, T)) -> T,
) {
    match (kind, pos_weight) {
        (BinaryKind::WithLogits, Some(pw)) => {
            for (((o, &x), &t), &pw) in out.iter_mut().zip(xs).zip(ts).zip(pw) {
                *o = pick(with_logits(x, t, pw));
            }
        }
        (BinaryKind::WithLogits, None) => {
            for ((o, &x), &t) in out.iter_mut().zip(xs).zip(ts) {
                *o = pick(with_logits(x, t, T::ONE));
            }
        }
        (BinaryKind::Probabilities, _) => {
            for ((o, &x), &t) in out.iter_mut().zip(xs).zip(ts) {
                *o = pick(on_probabilities(x, t));
            }
        }
    }
}

/// Multiplies `out` by the task's element weights, when there are any.
#[inline(always)]
fn apply_weight<T: Real>(weight: Option<&[T]>, out: &mut [T]) {
    if let Some(w) = weight {
        for (o, &w) in out.iter_mut().zip(w) {
            *o = *o * w;
        }
    }
}

/// The flat index and value of the first element of `values` outside `[0, 1]` (NaN too:
/// `!(0 <= p <= 1)` holds for it): a branch-free scan per task, then the first offender.
fn first_outside_unit<T: Element>(values: &[T]) -> Option<(usize, f64)> {
    let outside = |p: T| !(p >= T::ZERO && p <= T::ONE);
    let task = values
        .par_chunks(TASK_ELEMENTS)
        .position_first(|chunk| chunk.iter().fold(false, |bad, &p| bad | outside(p)))?;
    let chunk = &values[task * TASK_ELEMENTS..];
    let flat_index = task * TASK_ELEMENTS
        + chunk
            .iter()
            .position(|&p| outside(p))
            .expect("the task found one");
    Some((flat_index, values[flat_index].to_f64()))
}

multiversioned! {
fn binary_forward_typed<T: Element>(
    input: &NdArrayTensor,
    target: &NdArrayTensor,
    weight: Option<(&NdArrayTensor, usize)>,
    pos_weight: Option<(&NdArrayTensor, usize)>,
    params: &BinaryParams,
) -> Result<NdArrayTensor, BadValue> {
    let xs = reals::<T>(input);
    let ts = reals::<T>(target);
    if params.check_values {
        first_outside_unit(&xs).map_or(Ok(()), |(flat_index, value)| {
            Err(BadValue::Probability { flat_index, value })
        })?;
        first_outside_unit(&ts).map_or(Ok(()), |(flat_index, value)| {
            Err(BadValue::Target { flat_index, value })
        })?;
    }
    let weight = periodic(weight);
    let pos_weight = periodic(pos_weight);
    let task_losses = |task: usize, loss: &mut [T]| {
        let first = task * TASK_ELEMENTS;
        let weights = ChunkWeights::new(&weight, &pos_weight, first, loss.len());
        let (xs, ts) = (&xs[first..][..loss.len()], &ts[first..][..loss.len()]);
        let pos_weight = weights.pos_weight.as_deref();
        binary_map(params.kind, xs, ts, pos_weight, loss, |(value, _, _)| value);
        apply_weight(weights.weight.as_deref(), loss);
    };
    match params.output {
        Output::PerElement => {
            let mut loss = vec![T::ZERO; xs.len()];
            loss.par_chunks_mut(TASK_ELEMENTS)
                .enumerate()
                .for_each(|(task, loss)| task_losses(task, loss));
            Ok(loss_output(loss, params.output, params.len as f64))
        }
        // Reduced: each task sums its losses in a buffer of its own; no `[L]` tensor.
        Output::Reduced(reduction) => {
            let sum: f64 = (0..xs.len().div_ceil(TASK_ELEMENTS))
                .into_par_iter()
                .map(|task| {
                    let mut loss = vec![T::ZERO; (xs.len() - task * TASK_ELEMENTS).min(TASK_ELEMENTS)];
                    task_losses(task, &mut loss);
                    sum_map(&loss, |v| v).to_f64()
                })
                .sum();
            Ok(reduced::<T>(sum, reduction, params.len as f64))
        }
    }
}
}

multiversioned! {
fn binary_backward_typed<T: Element>(
    input: &NdArrayTensor,
    target: &NdArrayTensor,
    weight: Option<(&NdArrayTensor, usize)>,
    pos_weight: Option<(&NdArrayTensor, usize)>,
    params: &BinaryParams,
    grad: &NdArrayTensor,
    wants: [bool; 2],
) -> [Option<NdArrayTensor>; 2] {
    let xs = reals::<T>(input);
    let ts = reals::<T>(target);
    let weight = periodic(weight);
    let pos_weight = periodic(pos_weight);
    let grads = element_grads::<T>(grad, params.output, params.len as f64);
    let len = xs.len();
    let mut dx = vec![T::ZERO; if wants[0] { len } else { 0 }];
    let mut dt = vec![T::ZERO; if wants[1] { len } else { 0 }];
    let tasks = len.div_ceil(TASK_ELEMENTS);
    let dx_chunks = task_chunks(&mut dx, tasks, TASK_ELEMENTS);
    let dt_chunks = task_chunks(&mut dt, tasks, TASK_ELEMENTS);
    let kind = params.kind;
    dx_chunks
        .into_par_iter()
        .zip(dt_chunks)
        .enumerate()
        .for_each(|(task, (dx, dt))| {
            let first = task * TASK_ELEMENTS;
            let count = (len - first).min(TASK_ELEMENTS);
            let weights = ChunkWeights::new(&weight, &pos_weight, first, count);
            let (xs, ts) = (&xs[first..][..count], &ts[first..][..count]);
            // The slopes, one loop per wanted gradient, then the upstream gradient and
            // the weight.
            let pos_weight = weights.pos_weight.as_deref();
            if !dx.is_empty() {
                binary_map(kind, xs, ts, pos_weight, dx, |(_, slope, _)| slope);
            }
            if !dt.is_empty() {
                binary_map(kind, xs, ts, pos_weight, dt, |(_, _, slope)| slope);
            }
            for out in [dx, dt] {
                if out.is_empty() {
                    continue;
                }
                match &grads {
                    ElementGrad::All(g) => {
                        for o in out.iter_mut() {
                            *o = *g * *o;
                        }
                    }
                    ElementGrad::Each(g) => {
                        for (o, &g) in out.iter_mut().zip(&g[first..]) {
                            *o = g * *o;
                        }
                    }
                }
                apply_weight(weights.weight.as_deref(), out);
            }
        });
    let shape = input.shape().to_vec();
    let finish = |values: Vec<T>, wanted: bool| wanted.then(|| tensor(values, &shape));
    [finish(dx, wants[0]), finish(dt, wants[1])]
}
}

/// Runs `$body` with `$t` bound to the element type of `$input`'s dtype (`None` for other
/// dtypes).
macro_rules! by_dtype {
    ($input:expr, $t:ident => $body:expr) => {
        match $input {
            NdArrayTensor::F32(_) => {
                type $t = f32;
                Some($body)
            }
            NdArrayTensor::F64(_) => {
                type $t = f64;
                Some($body)
            }
            _ => None,
        }
    };
}

impl<E: FloatNdArrayElement> Kernels for NdArray<E>
where
    NdArrayTensor: From<SharedArray<E>>,
{
    const CHECKS_VALUES: bool = true;

    fn class_index_forward(
        args: ClassIndexArgs<'_, Self>,
    ) -> Option<Result<(FloatTensor<Self>, ClassIndexSaved<Self>), BadValue>> {
        let (input, target, weight, params) = args.split();
        by_dtype!(input, T => class_index_forward_typed::<T>(input, target, weight, params)
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
        by_dtype!(input, T => class_index_backward_typed::<T>(
            input, target, weight, params, saved.log_sum_exp.as_ref(), &saved.total_weight, &grad))
        .expect("the forward accepted this dtype")
    }

    fn class_probs_forward(
        args: ClassProbsArgs<'_, Self>,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        let (input, target, weight, params) = args.split();
        by_dtype!(input, T => class_probs_forward_typed::<T>(input, target, weight, params))
    }

    fn class_probs_backward(
        args: ClassProbsArgs<'_, Self>,
        log_sum_exp: &FloatTensor<Self>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        let (input, target, weight, params) = args.split();
        by_dtype!(input, T => class_probs_backward_typed::<T>(
            input, target, weight, params, log_sum_exp, &grad, wants))
        .expect("the forward accepted this dtype")
    }

    fn binary_forward(args: BinaryArgs<'_, Self>) -> Option<Result<FloatTensor<Self>, BadValue>> {
        let (input, target, weight, pos_weight, params) = args.split();
        by_dtype!(input, T => binary_forward_typed::<T>(
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
        by_dtype!(input, T => binary_backward_typed::<T>(
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
