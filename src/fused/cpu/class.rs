//! The class losses, row by row: cross-entropy and NLL with class indices, cross-entropy with
//! class probabilities. Each row's loss reads the row twice while it is in cache (its maximum,
//! then the sum of exponentials); where a gradient is asked for, a third pass over the same
//! row writes it, for a unit upstream gradient, over the row or into the gradient buffer
//! ([`Logits`]). The rows come from [`Walk`], in the input's own layout.

use rayon::prelude::*;

use super::layout::{Logits, Row, Share, Task, Walk};
use super::real::{Real, max, max_of, sum_map, sum_map2};
use super::{Element, TASK_ELEMENTS};
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

/// The sum of the target weights of the non-ignored targets (their count without weights):
/// the mean's divisor, known from the targets alone before the logits are read. Checks the
/// targets first when the params ask for it.
pub(super) fn total_weight<T: Element>(
    targets: &[i64],
    weight: Option<&[T]>,
    params: &ClassIndexParams,
) -> Result<f64, BadValue> {
    if params.check_values {
        check_targets(targets, params.classes, params.ignore_index)?;
    }
    let ignore_index = params.ignore_index;
    Ok(targets
        .par_chunks(TASK_ELEMENTS)
        .map(|chunk| {
            chunk
                .iter()
                .filter(|&&t| t != ignore_index)
                .map(|&t| weight.map_or(1.0, |w| w[t as usize].to_f64()))
                .sum::<f64>()
        })
        .sum())
}

/// The terms of one cross-entropy row that the loss and the gradient use.
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

multiversioned! {
/// Cross-entropy or NLL with class indices on every row: each row's loss into `loss`
/// (`[N S]`, 0 for an ignored row) and, where `logits` says, its gradient for a unit upstream
/// gradient times `scale` (the mean's `1 / total weight`, or 1).
pub(super) fn class_index<T: Element>(
    walk: Walk,
    logits: Logits<'_, T>,
    targets: &[i64],
    weight: Option<&[T]>,
    params: &ClassIndexParams,
    scale: T,
    loss: &mut [T],
) -> () {
    let classes = params.classes;
    let all_weights = weight_sum(weight, classes);
    let target_of = |t: i64| -> Option<(usize, T)> {
        (t != params.ignore_index).then(|| {
            let t = t as usize;
            (t, weight.map_or(T::ONE, |w| w[t]))
        })
    };
    let smoothing = params.label_smoothing > 0.0;
    if params.kind == ClassIndexKind::CrossEntropy && walk.spatial > 1 {
        let columns = Columns { targets, weight, all_weights, params, scale };
        walk.blocks(logits, loss, |first, block, loss| columns.block(first, block, loss));
        return;
    }
    walk.run(logits, None, None, loss, |task: Task<'_, T>| {
        let Task { first, logits, per_row, .. } = task;
        logits.each(classes, |i, row| {
            let target = target_of(targets[first + i]);
            match params.kind {
                ClassIndexKind::CrossEntropy => {
                    // Every row's softmax, ignored ones too: their gradient is PyTorch's
                    // `0 · softmax`, NaN where the row holds a NaN.
                    let softmax = Softmax::of(row.values());
                    let Some((t, wt)) = target else {
                        per_row[i] = T::ZERO;
                        if let Row::Write(row) = row {
                            for x in row.iter_mut() {
                                *x = softmax.p(*x) * T::ZERO;
                            }
                        }
                        return;
                    };
                    let terms = RowTerms::new(all_weights, wt, params);
                    let values = row.values();
                    let mut value = terms.target_scale * softmax.neg_log_p(values[t]);
                    if smoothing {
                        let smooth = match weight {
                            Some(w) => sum_map2(values, w, |x, w| w * softmax.neg_log_p(x)),
                            None => sum_map(values, |x| softmax.neg_log_p(x)),
                        };
                        value = value + terms.smoothing_scale * smooth;
                    }
                    per_row[i] = value;
                    if let Row::Write(row) = row {
                        let p_scale =
                            scale * (terms.target_scale + terms.smoothing_scale * terms.weight_sum);
                        let uniform = scale * terms.smoothing_scale;
                        match weight {
                            Some(w) => {
                                for (x, &w) in row.iter_mut().zip(w) {
                                    *x = p_scale * softmax.p(*x) - uniform * w;
                                }
                            }
                            None => {
                                for x in row.iter_mut() {
                                    *x = p_scale * softmax.p(*x) - uniform;
                                }
                            }
                        }
                        row[t] = row[t] - scale * terms.target_scale;
                    }
                }
                ClassIndexKind::Nll => {
                    per_row[i] = match target {
                        Some((t, wt)) => -(wt * row.values()[t]),
                        None => T::ZERO,
                    };
                    if let Row::Write(row) = row {
                        row.fill(T::ZERO);
                        if let Some((t, wt)) = target {
                            row[t] = -(wt * scale);
                        }
                    }
                }
            }
        });
    });
}
}

/// Positions of one run of [`Columns`]: each class's run of the logits is read in one
/// contiguous stretch, and the per-position statistics stay in registers and L1.
const COLUMN_RUN: usize = 256;

/// Cross-entropy with class indices on a `[C, S]` block as it lies (`S > 1`): every loop runs
/// over a run of consecutive positions of one class, so it is vectorised across positions.
struct Columns<'a, T> {
    targets: &'a [i64],
    weight: Option<&'a [T]>,
    all_weights: T,
    params: &'a ClassIndexParams,
    scale: T,
}

impl<T: Real> Columns<'_, T> {
    /// One `n`'s block: rows `first..first + S`, their losses into `loss`.
    #[inline(always)]
    fn block(&self, first: usize, mut block: Share<'_, T>, loss: &mut [T]) {
        let (classes, spatial) = (self.params.classes, self.params.spatial);
        let weight_of = |c: usize| self.weight.map_or(T::ONE, |w| w[c]);
        let epsilon = self.params.label_smoothing;
        let mut start = 0;
        while start < spatial {
            let count = COLUMN_RUN.min(spatial - start);
            let column = |c: usize| c * spatial + start..c * spatial + start + count;
            let x = block.source();
            // Each position's softmax, as `Softmax::of` computes a row's.
            let mut softmax = [Softmax {
                max: T::NEG_INFINITY,
                log_sum: T::ZERO,
            }; COLUMN_RUN];
            let softmax = &mut softmax[..count];
            for c in 0..classes {
                for (s, &v) in softmax.iter_mut().zip(&x[column(c)]) {
                    s.max = max(s.max, v);
                }
            }
            for c in 0..classes {
                for (s, &v) in softmax.iter_mut().zip(&x[column(c)]) {
                    s.log_sum = s.log_sum + (v - s.max).exp_nonpositive();
                }
            }
            for s in softmax.iter_mut() {
                s.log_sum = s.log_sum.ln();
            }
            // The losses, and each position's gradient factors (0 where ignored).
            let mut p_scale = [T::ZERO; COLUMN_RUN];
            let mut uniform = [T::ZERO; COLUMN_RUN];
            let mut smooth = [T::ZERO; COLUMN_RUN];
            if epsilon > 0.0 {
                for c in 0..classes {
                    let w = weight_of(c);
                    for ((acc, s), &v) in smooth.iter_mut().zip(&*softmax).zip(&x[column(c)]) {
                        *acc = *acc + w * s.neg_log_p(v);
                    }
                }
            }
            for j in 0..count {
                let r = first + start + j;
                let t = self.targets[r];
                if t == self.params.ignore_index {
                    loss[start + j] = T::ZERO;
                    continue;
                }
                let t = t as usize;
                let terms = RowTerms::new(self.all_weights, weight_of(t), self.params);
                let picked = x[t * spatial + start + j];
                loss[start + j] = terms.target_scale * softmax[j].neg_log_p(picked)
                    + terms.smoothing_scale * smooth[j];
                p_scale[j] =
                    self.scale * (terms.target_scale + terms.smoothing_scale * terms.weight_sum);
                uniform[j] = self.scale * terms.smoothing_scale;
            }
            // The gradient, class by class, then the target's term.
            let write =
                |c: usize, x: T, j: usize| p_scale[j] * softmax[j].p(x) - uniform[j] * weight_of(c);
            match &mut block {
                Share::Read(_) => {
                    start += count;
                    continue;
                }
                Share::InPlace(values) => {
                    for c in 0..classes {
                        for (j, v) in values[column(c)].iter_mut().enumerate() {
                            *v = write(c, *v, j);
                        }
                    }
                }
                Share::Into(logits, gradient) => {
                    for c in 0..classes {
                        let out = &mut gradient[column(c)];
                        for (j, (o, &v)) in out.iter_mut().zip(&logits[column(c)]).enumerate() {
                            *o = write(c, v, j);
                        }
                    }
                }
            }
            let gradient = block.target().expect("a gradient is written");
            for j in 0..count {
                let t = self.targets[first + start + j];
                if t != self.params.ignore_index {
                    let target_scale =
                        RowTerms::new(self.all_weights, weight_of(t as usize), self.params)
                            .target_scale;
                    let at = t as usize * spatial + start + j;
                    gradient[at] = gradient[at] - self.scale * target_scale;
                }
            }
            start += count;
        }
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
/// Cross-entropy with class probabilities `targets` (`[N, C, S]`) on every row: each row's
/// loss into `loss` (`[N S]`), and for a unit upstream gradient times `scale`, the input
/// gradient where `logits` says and the target gradient into `target_grad` when given.
#[allow(clippy::too_many_arguments)]
pub(super) fn class_probs<T: Element>(
    walk: Walk,
    logits: Logits<'_, T>,
    targets: &[T],
    weight: Option<&[T]>,
    params: &ClassProbsParams,
    scale: T,
    loss: &mut [T],
    target_grad: Option<&mut [T]>,
) -> () {
    let classes = params.classes;
    let keep = T::from_f64(1.0 - params.label_smoothing);
    let uniform = T::from_f64(params.label_smoothing / classes as f64);
    let weight_at = |c: usize| weight.map_or(T::ONE, |w| w[c]);
    walk.run(logits, Some(targets), target_grad, loss, |task: Task<'_, T>| {
        let Task { logits, other, mut other_grad, per_row, .. } = task;
        let ys = other.expect("the targets");
        logits.each(classes, |i, row| {
            let y = &ys[i * classes..][..classes];
            let softmax = Softmax::of(row.values());
            let (wq_sum, value) =
                probs_row_sums(row.values(), y, weight, keep, uniform, softmax);
            per_row[i] = value;
            let mut dy = other_grad.as_deref_mut().map(|dy| &mut dy[i * classes..][..classes]);
            match row {
                Row::Write(row) => {
                    for c in 0..classes {
                        let x = row[c];
                        if let Some(dy) = dy.as_deref_mut() {
                            dy[c] = scale * keep * weight_at(c) * softmax.neg_log_p(x);
                        }
                        let q = keep * y[c] + uniform;
                        row[c] = scale * (softmax.p(x) * wq_sum - weight_at(c) * q);
                    }
                }
                Row::Read(row) => {
                    if let Some(dy) = dy {
                        for c in 0..classes {
                            dy[c] = scale * keep * weight_at(c) * softmax.neg_log_p(row[c]);
                        }
                    }
                }
            }
        });
    });
}
}
