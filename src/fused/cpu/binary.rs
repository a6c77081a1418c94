//! The binary losses on flat elements: BCE on probabilities and BCE with logits.

use burn::tensor::TensorMetadata;
use burn::tensor::ops::FloatTensor;
use rayon::prelude::*;

use super::real::{Real, sum_map};
use super::{
    CpuTensors, Element, ElementGrad, TASK_ELEMENTS, element_grads, loss_output, reduced,
    task_chunks, tensor,
};
use crate::fused::kernels::{BadValue, BinaryKind, BinaryParams, Output};
use crate::pytorch::{BCE_GRAD_EPSILON as EPSILON, BCE_LOG_FLOOR as LOG_FLOOR};

/// A binary op's weight as `T` values and their period.
fn periodic<T: Element, X: CpuTensors>(
    weight: Option<(&FloatTensor<X>, usize)>,
) -> Option<(Vec<T>, usize)> {
    weight.map(|(values, period)| (X::reals::<T>(values).into_owned(), period))
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
pub(super) fn binary_forward<T: Element, X: CpuTensors>(
    input: &FloatTensor<X>,
    target: &FloatTensor<X>,
    weight: Option<(&FloatTensor<X>, usize)>,
    pos_weight: Option<(&FloatTensor<X>, usize)>,
    params: &BinaryParams,
) -> Result<FloatTensor<X>, BadValue> {
    let xs = X::reals::<T>(input);
    let ts = X::reals::<T>(target);
    if params.check_values {
        first_outside_unit(&xs).map_or(Ok(()), |(flat_index, value)| {
            Err(BadValue::Probability { flat_index, value })
        })?;
        first_outside_unit(&ts).map_or(Ok(()), |(flat_index, value)| {
            Err(BadValue::Target { flat_index, value })
        })?;
    }
    let weight = periodic::<T, X>(weight);
    let pos_weight = periodic::<T, X>(pos_weight);
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
            Ok(loss_output::<T, X>(loss, params.output, params.len as f64))
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
            Ok(reduced::<T, X>(sum, reduction, params.len as f64))
        }
    }
}
}

multiversioned! {
pub(super) fn binary_backward<T: Element, X: CpuTensors>(
    input: &FloatTensor<X>,
    target: &FloatTensor<X>,
    weight: Option<(&FloatTensor<X>, usize)>,
    pos_weight: Option<(&FloatTensor<X>, usize)>,
    params: &BinaryParams,
    grad: &FloatTensor<X>,
    wants: [bool; 2],
) -> [Option<FloatTensor<X>>; 2] {
    let xs = X::reals::<T>(input);
    let ts = X::reals::<T>(target);
    let weight = periodic::<T, X>(weight);
    let pos_weight = periodic::<T, X>(pos_weight);
    let grads = element_grads::<T, X>(grad, params.output, params.len as f64);
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
    let finish = |values: Vec<T>, wanted: bool| wanted.then(|| tensor::<T, X>(values, &shape));
    [finish(dx, wants[0]), finish(dt, wants[1])]
}
}
