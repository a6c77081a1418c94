//! The binary losses on flat elements: BCE on probabilities and BCE with logits. Each task
//! of consecutive elements computes their losses and, where asked, the gradients of the input
//! (over the input or into its gradient buffer, [`Logits`]) and of the target, for a unit
//! upstream gradient.

use rayon::prelude::*;

use super::layout::Logits;
use super::real::{Real, sum_map};
use super::{Element, TASK_ELEMENTS};
use crate::fused::kernels::{BadValue, BinaryKind, BinaryParams, Output};
use crate::pytorch::{BCE_GRAD_EPSILON as EPSILON, BCE_LOG_FLOOR as LOG_FLOOR};

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
/// its slopes `∂/∂x = (1 - t) σ(x) - pw t σ(-x)`, `∂/∂t = pw softplus(-x) - softplus(x)`
/// (`-x` without `pos_weight`), all from `e = exp(-|x|)`, without cancellation in either tail.
///
/// Where `x`, `t` or `pw` is not finite, PyTorch's own formulas instead, so that NaN and the
/// infinities come out where PyTorch's do: the loss `(1 - t) x - (1 + (pw - 1) t) log σ(x)`
/// (`(1 - t) x - log σ(x)` without `pos_weight`) and `∂/∂x = (pw t + 1 - t) σ(x) - pw t`
/// (`σ(x) - t`); for example `x = inf, t = 1` gives `0 · inf = NaN`.
#[inline(always)]
fn with_logits<T: Real>(x: T, t: T, pw: Option<T>) -> (T, T, T) {
    let abs = if x < T::ZERO { -x } else { x };
    let e = (-abs).exp_nonpositive();
    let log_tail = e.log1p_unit(); // log1p(exp(-|x|))
    let positive = if x > T::ZERO { x } else { T::ZERO };
    let negative = if x < T::ZERO { -x } else { T::ZERO };
    let softplus = positive + log_tail; // -log σ(-x)
    let softplus_neg = negative + log_tail; // -log σ(x)
    let large = T::ONE / (T::ONE + e);
    let small = e * large;
    let (sigmoid, sigmoid_neg) = if x > T::ZERO {
        (large, small)
    } else {
        (small, large)
    };
    let one_minus_t = T::ONE - t;
    let (positive_weight, slope_t, finite) = match pw {
        Some(pw) => (
            pw * t,
            pw * softplus_neg - softplus,
            x.is_finite() & t.is_finite() & pw.is_finite(),
        ),
        None => (t, -x, x.is_finite() & t.is_finite()),
    };
    if finite {
        (
            one_minus_t * softplus + positive_weight * softplus_neg,
            one_minus_t * sigmoid - positive_weight * sigmoid_neg,
            slope_t,
        )
    } else {
        // PyTorch's forms, with `log σ(x) = -softplus(-x)` and `σ(±inf)` exact.
        let log_weight = match pw {
            Some(pw) => (pw - T::ONE) * t + T::ONE,
            None => T::ONE,
        };
        let slope_x = match pw {
            Some(_) => (positive_weight + T::ONE - t) * sigmoid - positive_weight,
            None => sigmoid - t,
        };
        (
            one_minus_t * x + log_weight * softplus_neg,
            slope_x,
            slope_t,
        )
    }
}

/// BCE on probabilities at one element: the loss
/// `-(t max(ln p, -100) + (1 - t) max(ln(1 - p), -100))`, PyTorch's input slope
/// `(p - t) / max(p (1 - p), 1e-12)`, and PyTorch's target slope `-logit(p) = ln(1 - p) -
/// ln p`, not clamped (`inf` at `p = 0`, `-inf` at `p = 1`, as PyTorch's).
#[inline(always)]
fn on_probabilities<T: Real>(p: T, t: T) -> (T, T, T) {
    let floor = T::from_f64(LOG_FLOOR);
    let (ln_p, ln_q) = (p.ln(), p.ln_1m());
    let log_p = max_floor(ln_p, floor);
    let log_q = max_floor(ln_q, floor);
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
        ln_q - ln_p,
    )
}

/// `max(value, floor)` that keeps NaN.
#[inline(always)]
fn max_floor<T: Real>(value: T, floor: T) -> T {
    if value < floor { floor } else { value }
}

/// The loss and the slopes `∂/∂x`, `∂/∂t` (before the upstream gradient and the weight) of
/// each element: one vectorised loop per kind and presence of a positive weight.
#[inline(always)]
fn binary_map<T: Real>(
    kind: BinaryKind,
    xs: &[T],
    ts: &[T],
    pos_weight: Option<&[T]>,
    loss: &mut [T],
    dx: &mut [T],
    dt: &mut [T],
) {
    let outs = loss.iter_mut().zip(dx.iter_mut()).zip(dt.iter_mut());
    let put = |((l, gx), gt): ((&mut T, &mut T), &mut T), (value, slope_x, slope_t): (T, T, T)| {
        *l = value;
        *gx = slope_x;
        *gt = slope_t;
    };
    match (kind, pos_weight) {
        (BinaryKind::WithLogits, Some(pw)) => {
            for (((o, &x), &t), &pw) in outs.zip(xs).zip(ts).zip(pw) {
                put(o, with_logits(x, t, Some(pw)));
            }
        }
        (BinaryKind::WithLogits, None) => {
            for ((o, &x), &t) in outs.zip(xs).zip(ts) {
                put(o, with_logits(x, t, None));
            }
        }
        (BinaryKind::Probabilities, _) => {
            for ((o, &x), &t) in outs.zip(xs).zip(ts) {
                put(o, on_probabilities(x, t));
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

/// What a binary op reads besides the input: the targets (`[L]`) and the weights as
/// `(values, period)`.
pub(super) struct BinaryInputs<'a, T> {
    pub targets: &'a [T],
    pub weight: Option<(&'a [T], usize)>,
    pub pos_weight: Option<(&'a [T], usize)>,
}

/// Elements of one run of a binary task: its values stay on the stack.
const BINARY_RUN: usize = 256;

/// Checks that the probabilities and the targets of BCE lie in `[0, 1]`.
pub(super) fn check_binary<T: Element>(
    values: &[T],
    targets: &[T],
    params: &BinaryParams,
) -> Result<(), BadValue> {
    if !(params.check_values && params.kind == BinaryKind::Probabilities) {
        return Ok(());
    }
    if let Some((flat_index, value)) = first_outside_unit(values) {
        return Err(BadValue::Probability { flat_index, value });
    }
    if let Some((flat_index, value)) = first_outside_unit(targets) {
        return Err(BadValue::Target { flat_index, value });
    }
    Ok(())
}

/// A task's share of the input and where its gradient goes.
enum Share<'a, T> {
    Read(&'a [T]),
    InPlace(&'a mut [T]),
    Into(&'a [T], &'a mut [T]),
}

multiversioned! {
/// BCE or BCE with logits on every element: the losses into `loss` (`[L]` per element, or one
/// partial sum per task of `TASK_ELEMENTS` for a reduced output), and for a unit upstream
/// gradient times `scale`, the input gradient where `logits` says and the target gradient
/// into `target_grad` when given.
pub(super) fn binary<T: Element>(
    logits: Logits<'_, T>,
    inputs: &BinaryInputs<'_, T>,
    params: &BinaryParams,
    scale: T,
    loss: &mut [T],
    target_grad: Option<&mut [T]>,
) -> () {
    let len = params.len;
    let tasks = len.div_ceil(TASK_ELEMENTS);
    let shares: Vec<Share<'_, T>> = match logits {
        Logits::Read(values) => values.chunks(TASK_ELEMENTS).map(Share::Read).collect(),
        Logits::InPlace(values) => values.chunks_mut(TASK_ELEMENTS).map(Share::InPlace).collect(),
        Logits::Into { logits, gradient } => logits
            .chunks(TASK_ELEMENTS)
            .zip(gradient.chunks_mut(TASK_ELEMENTS))
            .map(|(logits, gradient)| Share::Into(logits, gradient))
            .collect(),
    };
    let target_grads: Vec<Option<&mut [T]>> = match target_grad {
        Some(values) => values.chunks_mut(TASK_ELEMENTS).map(Some).collect(),
        None => (0..tasks).map(|_| None).collect(),
    };
    let per_element = params.output == Output::PerElement;
    let loss_width = if per_element { TASK_ELEMENTS } else { 1 };
    let kind = params.kind;
    shares
        .into_par_iter()
        .zip(target_grads)
        .zip(loss.par_chunks_mut(loss_width))
        .enumerate()
        .for_each(|(task, ((mut share, mut dt), loss))| {
            let first = task * TASK_ELEMENTS;
            let count = match &share {
                Share::Read(values) | Share::Into(values, _) => values.len(),
                Share::InPlace(values) => values.len(),
            };
            let mut sum = T::ZERO;
            // Runs of `BINARY_RUN` elements: the losses and both slopes of a run in one loop
            // into buffers on the stack, then written out (each input element is read before
            // its gradient is written over it).
            let mut start = 0;
            while start < count {
                let n = BINARY_RUN.min(count - start);
                let mut values = [[T::ZERO; BINARY_RUN]; 3];
                let mut weights = [[T::ZERO; BINARY_RUN]; 2];
                let [l, gx, gt] = &mut values;
                let (l, gx, gt) = (&mut l[..n], &mut gx[..n], &mut gt[..n]);
                let at = first + start;
                let [weight_run, pos_weight_run] = &mut weights;
                let weight = inputs.weight.map(|(values, period)| {
                    fill_periodic(values, period, at, &mut weight_run[..n]);
                    &weight_run[..n]
                });
                let pos_weight = inputs.pos_weight.map(|(values, period)| {
                    fill_periodic(values, period, at, &mut pos_weight_run[..n]);
                    &pos_weight_run[..n]
                });
                let ts = &inputs.targets[at..][..n];
                let xs = match &share {
                    Share::Read(values) | Share::Into(values, _) => &values[start..][..n],
                    Share::InPlace(values) => &values[start..][..n],
                };
                binary_map(kind, xs, ts, pos_weight, l, gx, gt);
                apply_weight(weight, l);
                if per_element {
                    loss[start..][..n].copy_from_slice(l);
                } else {
                    sum = sum + sum_map(l, |v| v);
                }
                let dx = match &mut share {
                    Share::Read(_) => None,
                    Share::InPlace(values) | Share::Into(_, values) => Some(&mut values[start..][..n]),
                };
                for (out, slopes) in [(dx, &*gx), (dt.as_deref_mut().map(|dt| &mut dt[start..][..n]), &*gt)] {
                    if let Some(out) = out {
                        for (o, &slope) in out.iter_mut().zip(slopes) {
                            *o = scale * slope;
                        }
                        apply_weight(weight, out);
                    }
                }
                start += n;
            }
            if !per_element {
                loss[0] = sum;
            }
        });
}
}
