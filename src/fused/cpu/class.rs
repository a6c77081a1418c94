//! The class losses, row by row: cross-entropy and NLL with class indices, cross-entropy with
//! class probabilities. Each row's loss reads the row twice while it is in cache (its maximum,
//! then the sum of exponentials); where a gradient is asked for, a third pass over the same
//! row writes it, for a unit upstream gradient, over the row or into the gradient buffer
//! ([`Logits`]). The rows come from [`Walk`], in the input's own layout.

use rayon::prelude::*;

use super::layout::{Logits, Row, Share, Task, Walk};
use super::real::{LANES, Real, max, max_of, sum_map, sum_map2};
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

    /// The row's loss, `(1 - ε) w[t] (-log p_t) + ε / C (spread + log_sum Σ_c w[c])`; without
    /// smoothing the second term is left out, not multiplied by 0 (PyTorch computes no
    /// smoothing term then, so an infinite class weight or logit must not turn it into NaN).
    fn loss(&self, neg_log_p: T, spread: T, log_sum: T) -> T {
        let target = self.target_scale * neg_log_p;
        if self.smoothing_scale == T::ZERO {
            target
        } else {
            target + self.smoothing_scale * (spread + log_sum * self.weight_sum)
        }
    }

    /// The factor of `p_c` in the gradient, before the mean's scale:
    /// `(1 - ε) w[t] + ε / C Σ_c w[c]` (the first term alone without smoothing).
    fn p_factor(&self) -> T {
        if self.smoothing_scale == T::ZERO {
            self.target_scale
        } else {
            self.target_scale + self.smoothing_scale * self.weight_sum
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
        logits.each(classes, |i, mut row| {
            let target = target_of(targets[first + i]);
            match params.kind {
                ClassIndexKind::CrossEntropy => {
                    // Every row's softmax, ignored ones too: their gradient is PyTorch's
                    // `0 · softmax`, NaN where the row holds a NaN. The loss's terms are read
                    // before the exponentials overwrite the row.
                    let values = row.values();
                    let max = max_of(values);
                    let picked = target.map(|(t, _)| values[t]);
                    // `Σ_c w[c] (max - x_c)`: with `log_sum Σ_c w[c]`, the smoothing term.
                    let spread = match (smoothing, weight) {
                        (false, _) => T::ZERO,
                        (true, Some(w)) => sum_map2(values, w, |x, w| w * (max - x)),
                        (true, None) => sum_map(values, |x| max - x),
                    };
                    let sum = match row {
                        Row::Read(values) => sum_map(values, |x| (x - max).exp_nonpositive()),
                        Row::Write(ref mut row) => store_exps(None, row, max),
                        Row::Into(values, ref mut out) => store_exps(Some(values), out, max),
                    };
                    let softmax = Softmax {
                        max,
                        log_sum: sum.ln(),
                    };
                    let (Some((t, wt)), Some(picked)) = (target, picked) else {
                        per_row[i] = T::ZERO;
                        if let Row::Write(out) | Row::Into(_, out) = row {
                            for e in out.iter_mut() {
                                *e = (*e / sum) * T::ZERO;
                            }
                        }
                        return;
                    };
                    let terms = RowTerms::new(all_weights, wt, params);
                    per_row[i] = terms.loss(softmax.neg_log_p(picked), spread, softmax.log_sum);
                    if let Row::Write(out) | Row::Into(_, out) = row {
                        // `out` holds `exp(x - max)`: `p = e / sum`, one rounding from it.
                        let p_scale = scale * terms.p_factor();
                        let uniform = scale * terms.smoothing_scale;
                        // Without smoothing the class weights take no part (`0 · inf` is NaN).
                        match weight.filter(|_| smoothing) {
                            Some(w) => {
                                for (e, &w) in out.iter_mut().zip(w) {
                                    *e = p_scale * (*e / sum) - uniform * w;
                                }
                            }
                            None => {
                                for e in out.iter_mut() {
                                    *e = p_scale * (*e / sum) - uniform;
                                }
                            }
                        }
                        out[t] = out[t] - scale * terms.target_scale;
                    }
                }
                ClassIndexKind::Nll => {
                    per_row[i] = match target {
                        Some((t, wt)) => -(wt * row.values()[t]),
                        None => T::ZERO,
                    };
                    // A gradient zero but for the target: an `Into` row's buffer is zero-filled
                    // already; a row written over (an input the loss holds alone) holds
                    // logits to clear.
                    let out = match row {
                        Row::Write(out) => {
                            out.fill(T::ZERO);
                            Some(out)
                        }
                        Row::Into(_, out) => Some(out),
                        Row::Read(_) => None,
                    };
                    if let (Some(out), Some((t, wt))) = (out, target) {
                        out[t] = -(wt * scale);
                    }
                }
            }
        });
    });
}
}

/// Writes `exp(x - max)` of each logit (read from `logits`, or from `out` itself) into `out`
/// and returns their sum, accumulated in lanes as `sum_map` does.
#[inline(always)]
fn store_exps<T: Real>(logits: Option<&[T]>, out: &mut [T], max: T) -> T {
    let mut lanes = [T::ZERO; LANES];
    let mut total = T::ZERO;
    match logits {
        Some(logits) => {
            let mut outs = out.chunks_exact_mut(LANES);
            let mut ins = logits.chunks_exact(LANES);
            for (o, x) in (&mut outs).zip(&mut ins) {
                for k in 0..LANES {
                    let e = (x[k] - max).exp_nonpositive();
                    o[k] = e;
                    lanes[k] = lanes[k] + e;
                }
            }
            for (o, &x) in outs.into_remainder().iter_mut().zip(ins.remainder()) {
                *o = (x - max).exp_nonpositive();
                total = total + *o;
            }
        }
        None => {
            let mut outs = out.chunks_exact_mut(LANES);
            for o in &mut outs {
                for k in 0..LANES {
                    let e = (o[k] - max).exp_nonpositive();
                    o[k] = e;
                    lanes[k] = lanes[k] + e;
                }
            }
            for o in outs.into_remainder() {
                *o = (*o - max).exp_nonpositive();
                total = total + *o;
            }
        }
    }
    lanes.iter().fold(total, |a, &b| a + b)
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
        let smoothing = self.params.label_smoothing > 0.0;
        let mut start = 0;
        while start < spatial {
            let count = COLUMN_RUN.min(spatial - start);
            let column = |c: usize| c * spatial + start..c * spatial + start + count;
            // Per position, as a row's: the maximum, the terms of the loss, then the sum of
            // the exponentials (stored over the gradient's place when there is one).
            let mut maxes = [T::NEG_INFINITY; COLUMN_RUN];
            let mut sums = [T::ZERO; COLUMN_RUN];
            let mut spread = [T::ZERO; COLUMN_RUN];
            let mut picked = [T::ZERO; COLUMN_RUN];
            let (maxes, sums) = (&mut maxes[..count], &mut sums[..count]);
            let (spread, picked) = (&mut spread[..count], &mut picked[..count]);
            {
                let x = block.source();
                for c in 0..classes {
                    for (m, &v) in maxes.iter_mut().zip(&x[column(c)]) {
                        *m = max(*m, v);
                    }
                }
                if smoothing {
                    for c in 0..classes {
                        let w = weight_of(c);
                        for ((acc, &m), &v) in spread.iter_mut().zip(&*maxes).zip(&x[column(c)]) {
                            *acc = *acc + w * (m - v);
                        }
                    }
                }
                for (j, p) in picked.iter_mut().enumerate() {
                    let t = self.targets[first + start + j];
                    if t != self.params.ignore_index {
                        *p = x[t as usize * spatial + start + j];
                    }
                }
            }
            for c in 0..classes {
                let range = column(c);
                match &mut block {
                    Share::Read(x) => {
                        for ((s, &m), &v) in sums.iter_mut().zip(&*maxes).zip(&x[range]) {
                            *s = *s + (v - m).exp_nonpositive();
                        }
                    }
                    Share::InPlace(x) => {
                        for ((s, &m), v) in sums.iter_mut().zip(&*maxes).zip(&mut x[range]) {
                            *v = (*v - m).exp_nonpositive();
                            *s = *s + *v;
                        }
                    }
                    Share::Into(x, out) => {
                        let pairs = out[range.clone()].iter_mut().zip(&x[range]);
                        for ((s, &m), (o, &v)) in sums.iter_mut().zip(&*maxes).zip(pairs) {
                            *o = (v - m).exp_nonpositive();
                            *s = *s + *o;
                        }
                    }
                }
            }
            // The losses, and each position's gradient factors (0 where ignored).
            let mut p_scale = [T::ZERO; COLUMN_RUN];
            let mut uniform = [T::ZERO; COLUMN_RUN];
            for j in 0..count {
                let t = self.targets[first + start + j];
                if t == self.params.ignore_index {
                    loss[start + j] = T::ZERO;
                    continue;
                }
                let terms = RowTerms::new(self.all_weights, weight_of(t as usize), self.params);
                let softmax = Softmax {
                    max: maxes[j],
                    log_sum: sums[j].ln(),
                };
                loss[start + j] =
                    terms.loss(softmax.neg_log_p(picked[j]), spread[j], softmax.log_sum);
                p_scale[j] = self.scale * terms.p_factor();
                uniform[j] = self.scale * terms.smoothing_scale;
            }
            let Some(out) = block.target() else {
                start += count;
                continue;
            };
            // The gradient, class by class, over the stored exponentials; then the target's
            // term.
            let (p_scale, uniform) = (&p_scale[..count], &uniform[..count]);
            for c in 0..classes {
                // Without smoothing the class weights take no part (`0 · inf` is NaN).
                let w = if smoothing { weight_of(c) } else { T::ONE };
                let factors = p_scale.iter().zip(&*sums).zip(uniform);
                for (e, ((&ps, &s), &u)) in out[column(c)].iter_mut().zip(factors) {
                    *e = ps * (*e / s) - u * w;
                }
            }
            for j in 0..count {
                let t = self.targets[first + start + j];
                if t != self.params.ignore_index {
                    let target_scale =
                        RowTerms::new(self.all_weights, weight_of(t as usize), self.params)
                            .target_scale;
                    let at = t as usize * spatial + start + j;
                    out[at] = out[at] - self.scale * target_scale;
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
            match row.settled() {
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
                Row::Into(..) => unreachable!("settled"),
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
