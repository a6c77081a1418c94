//! The class losses on rows of logits: cross-entropy and NLL with class indices,
//! cross-entropy with class probabilities.

use burn::tensor::TensorMetadata;
use burn::tensor::ops::{FloatTensor, IntTensor};
use rayon::prelude::*;

use super::real::{Real, max_of, sum_map, sum_map2};
use super::{
    CpuTensors, Element, element_grads, loss_output, rows, rows_per_task, task_chunks, tensor,
    unrows,
};
use crate::fused::kernels::{BadValue, ClassIndexKind, ClassIndexParams, ClassProbsParams};

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
fn class_weights<T: Element, X: CpuTensors>(weight: Option<&FloatTensor<X>>) -> Option<Vec<T>> {
    weight.map(|w| X::reals::<T>(w).into_owned())
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
fn saved_softmax<T: Element, X: CpuTensors>(max: Vec<T>, log_sum: Vec<T>) -> FloatTensor<X> {
    let len = max.len() + log_sum.len();
    let mut saved = max;
    saved.extend(log_sum);
    tensor::<T, X>(saved, &[len])
}

multiversioned! {
pub(super) fn class_index_forward<T: Element, X: CpuTensors>(
    input: &FloatTensor<X>,
    target: &IntTensor<X>,
    weight: Option<&FloatTensor<X>>,
    params: &ClassIndexParams,
) -> Result<(FloatTensor<X>, Option<FloatTensor<X>>, FloatTensor<X>), BadValue> {
    let classes = params.classes;
    let targets = X::indices(target);
    if params.check_values {
        check_targets(&targets, classes, params.ignore_index)?;
    }
    let weight = class_weights::<T, X>(weight);
    let weight = weight.as_deref();
    let logits = rows::<T, X>(input, classes, params.spatial);
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
    let output = loss_output::<T, X>(loss, params.output, total_weight);
    Ok((
        output,
        cross_entropy.then(|| saved_softmax::<T, X>(row_max, log_sum)),
        tensor::<T, X>(vec![T::from_f64(total_weight)], &[1]),
    ))
}
}

multiversioned! {
pub(super) fn class_index_backward<T: Element, X: CpuTensors>(
    input: &FloatTensor<X>,
    target: &IntTensor<X>,
    weight: Option<&FloatTensor<X>>,
    params: &ClassIndexParams,
    log_sum_exp: Option<&FloatTensor<X>>,
    total_weight: &FloatTensor<X>,
    grad: &FloatTensor<X>,
) -> FloatTensor<X> {
    let (classes, spatial) = (params.classes, params.spatial);
    let targets = X::indices(target);
    let weight = class_weights::<T, X>(weight);
    let weight = weight.as_deref();
    let total_weight = X::reals::<T>(total_weight)[0].to_f64();
    let grads = element_grads::<T, X>(grad, params.output, total_weight);
    let count = targets.len();
    let mut dx = vec![T::ZERO; count * classes];
    let per_task = rows_per_task(classes);
    let all_weights = weight_sum(weight, classes);
    match params.kind {
        ClassIndexKind::CrossEntropy => {
            let logits = rows::<T, X>(input, classes, spatial);
            let saved = X::reals::<T>(log_sum_exp.expect("saved by the forward"));
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
    tensor::<T, X>(unrows(dx, classes, spatial), &shape)
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
pub(super) fn class_probs_forward<T: Element, X: CpuTensors>(
    input: &FloatTensor<X>,
    target: &FloatTensor<X>,
    weight: Option<&FloatTensor<X>>,
    params: &ClassProbsParams,
) -> (FloatTensor<X>, FloatTensor<X>) {
    let classes = params.classes;
    let weight = class_weights::<T, X>(weight);
    let weight = weight.as_deref();
    let logits = rows::<T, X>(input, classes, params.spatial);
    let ys = rows::<T, X>(target, classes, params.spatial);
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
        loss_output::<T, X>(loss, params.output, count as f64),
        saved_softmax::<T, X>(row_max, log_sum),
    )
}
}

multiversioned! {
#[allow(clippy::too_many_arguments)]
pub(super) fn class_probs_backward<T: Element, X: CpuTensors>(
    input: &FloatTensor<X>,
    target: &FloatTensor<X>,
    weight: Option<&FloatTensor<X>>,
    params: &ClassProbsParams,
    log_sum_exp: &FloatTensor<X>,
    grad: &FloatTensor<X>,
    wants: [bool; 2],
) -> [Option<FloatTensor<X>>; 2] {
    let (classes, spatial) = (params.classes, params.spatial);
    let weight = class_weights::<T, X>(weight);
    let weight = weight.as_deref();
    let logits = rows::<T, X>(input, classes, spatial);
    let ys = rows::<T, X>(target, classes, spatial);
    let saved = X::reals::<T>(log_sum_exp);
    let count = logits.len() / classes;
    let grads = element_grads::<T, X>(grad, params.output, count as f64);
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
        wanted.then(|| tensor::<T, X>(unrows(values, classes, spatial), &shape))
    };
    [finish(dx, wants[0]), finish(dy, wants[1])]
}
}
