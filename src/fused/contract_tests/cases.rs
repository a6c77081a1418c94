//! The cases of the kernel contract's suite and their f64 references: the losses of each case
//! from its definition (PyTorch's), from which the suite takes the reduced losses, the total
//! weight and, by central differences, the gradients.

use super::super::kernels::{BinaryKind, ClassIndexKind, ClassIndexParams, Output};
use crate::pytorch::{BCE_GRAD_EPSILON, BCE_LOG_FLOOR};
use crate::reduction::Reduction;

/// Deterministic values: `sin(1.37 j + seed) × scale`.
pub(super) fn values(count: usize, seed: f64, scale: f64) -> Vec<f64> {
    (0..count)
        .map(|j| (j as f64 * 1.37 + seed).sin() * scale)
        .collect()
}

/// The log-sum-exp of each element `[N * S]` of an input `[N, C, S]`.
pub(super) fn log_sum_exps(x: &[f64], n: usize, c: usize, s: usize) -> Vec<f64> {
    (0..n * s)
        .map(|i| {
            let (b, p) = (i / s, i % s);
            let at = |k: usize| x[b * c * s + k * s + p];
            let m = (0..c).map(at).fold(f64::NEG_INFINITY, f64::max);
            m + (0..c).map(|k| (at(k) - m).exp()).sum::<f64>().ln()
        })
        .collect()
}

/// The class weights of a class case, when it has them.
pub(super) fn class_weights(weighted: bool, c: usize) -> Option<Vec<f64>> {
    weighted.then(|| values(c, 2.0, 0.6).iter().map(|v| v + 1.0).collect())
}

/// A class-index case: `input` `[n, c, s]` (passed as `[n, c]` when `s == 1`).
pub(super) struct ClassIndexCase {
    pub(super) kind: ClassIndexKind,
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) s: usize,
    pub(super) targets: Vec<i64>,
    pub(super) weighted: bool,
    pub(super) ignore_index: i64,
    pub(super) label_smoothing: f64,
    pub(super) output: Output,
}

impl ClassIndexCase {
    /// The per-element losses and the total weight.
    pub(super) fn losses(&self, x: &[f64]) -> (Vec<f64>, f64) {
        let (n, c, s) = (self.n, self.c, self.s);
        let w = class_weights(self.weighted, c).unwrap_or_else(|| vec![1.0; c]);
        let eps = self.label_smoothing;
        let lse = log_sum_exps(x, n, c, s);
        let mut total = 0.0;
        let losses = (0..n * s)
            .map(|i| {
                let t = self.targets[i];
                if t == self.ignore_index {
                    return 0.0;
                }
                let t = t as usize;
                let (b, p) = (i / s, i % s);
                let at = |k: usize| x[b * c * s + k * s + p];
                total += w[t];
                match self.kind {
                    ClassIndexKind::Nll => -w[t] * at(t),
                    ClassIndexKind::CrossEntropy => {
                        let smooth: f64 = (0..c).map(|k| w[k] * (lse[i] - at(k))).sum();
                        (1.0 - eps) * w[t] * (lse[i] - at(t)) + eps / c as f64 * smooth
                    }
                }
            })
            .collect();
        (losses, total)
    }

    pub(super) fn params(&self) -> ClassIndexParams {
        ClassIndexParams {
            kind: self.kind,
            batch: self.n,
            classes: self.c,
            spatial: self.s,
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            output: self.output,
            check_values: false,
        }
    }
}

/// A class-probability case.
pub(super) struct ClassProbsCase {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) s: usize,
    pub(super) weighted: bool,
    pub(super) label_smoothing: f64,
    pub(super) output: Output,
}

impl ClassProbsCase {
    pub(super) fn losses(&self, x: &[f64], y: &[f64]) -> Vec<f64> {
        let (n, c, s) = (self.n, self.c, self.s);
        let w = class_weights(self.weighted, c).unwrap_or_else(|| vec![1.0; c]);
        let eps = self.label_smoothing;
        let lse = log_sum_exps(x, n, c, s);
        (0..n * s)
            .map(|i| {
                let (b, p) = (i / s, i % s);
                (0..c)
                    .map(|k| {
                        let at = b * c * s + k * s + p;
                        let q = (1.0 - eps) * y[at] + eps / c as f64;
                        w[k] * q * (lse[i] - x[at])
                    })
                    .sum()
            })
            .collect()
    }
}

/// A binary case over `len` elements, with optional weight and positive weight periods.
pub(super) struct BinaryCase {
    pub(super) kind: BinaryKind,
    pub(super) len: usize,
    pub(super) weight_period: Option<usize>,
    pub(super) pos_weight_period: Option<usize>,
    pub(super) output: Output,
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// PyTorch's clamped logarithm of BCE.
fn clamped_ln(p: f64) -> f64 {
    p.ln().max(BCE_LOG_FLOOR)
}

impl BinaryCase {
    pub(super) fn inputs(&self) -> Vec<f64> {
        match self.kind {
            BinaryKind::WithLogits => {
                let mut x = values(self.len, 0.4, 4.0);
                // Large magnitudes, where a naive log1p loses everything.
                x[0] = 30.0;
                x[1] = -30.0;
                x
            }
            BinaryKind::Probabilities => {
                let mut p: Vec<f64> = values(self.len, 0.4, 0.45)
                    .iter()
                    .map(|v| v + 0.5)
                    .collect();
                // PyTorch's clamped logs at the ends.
                p[0] = 0.0;
                p[1] = 1.0;
                p
            }
        }
    }

    pub(super) fn targets(&self) -> Vec<f64> {
        let mut t: Vec<f64> = values(self.len, 1.1, 0.5).iter().map(|v| v + 0.5).collect();
        t[0] = 1.0;
        t[1] = 0.0;
        t
    }

    /// The weight (`seed` 2.5) or positive weight (3.5) of a period, when there is one.
    pub(super) fn periodic(period: Option<usize>, seed: f64) -> Option<Vec<f64>> {
        period.map(|p| values(p, seed, 0.5).iter().map(|v| v + 1.0).collect())
    }

    /// The weight of each element (1 without).
    pub(super) fn element_weights(&self) -> Vec<f64> {
        let w = Self::periodic(self.weight_period, 2.5);
        (0..self.len)
            .map(|i| w.as_ref().map_or(1.0, |w| w[i % w.len()]))
            .collect()
    }

    pub(super) fn losses(&self, x: &[f64], t: &[f64]) -> Vec<f64> {
        let pw = Self::periodic(self.pos_weight_period, 3.5);
        let w = self.element_weights();
        (0..self.len)
            .map(|i| {
                let pw = pw.as_ref().map_or(1.0, |p| p[i % p.len()]);
                let (x, t) = (x[i], t[i]);
                w[i] * match self.kind {
                    BinaryKind::WithLogits => (1.0 - t) * softplus(x) + pw * t * softplus(-x),
                    BinaryKind::Probabilities => {
                        -(t * clamped_ln(x) + (1.0 - t) * clamped_ln(1.0 - x))
                    }
                }
            })
            .collect()
    }

    /// PyTorch's input gradient of BCE, `g w (p - t) / max(p (1 - p), ε)`.
    pub(super) fn probability_grad(&self, x: &[f64], t: &[f64], g: &[f64]) -> Vec<f64> {
        self.scaled(g, |i| {
            let (p, t) = (x[i], t[i]);
            (p - t) / (p * (1.0 - p)).max(BCE_GRAD_EPSILON)
        })
    }

    /// PyTorch's target gradient of BCE, `g w (log(1 - p) - log p)`: not clamped, so infinite
    /// at `p = 0` and `p = 1`, where the (clamped) loss's numeric derivative is finite.
    pub(super) fn probability_target_grad(&self, x: &[f64], g: &[f64]) -> Vec<f64> {
        self.scaled(g, |i| (-x[i]).ln_1p() - x[i].ln())
    }

    /// `g_i w_i slope(i)`, with the upstream gradient `g` of the case's output.
    fn scaled(&self, g: &[f64], slope: impl Fn(usize) -> f64) -> Vec<f64> {
        let len = self.len as f64;
        let w = self.element_weights();
        (0..self.len)
            .map(|i| {
                let g = match self.output {
                    Output::PerElement => g[i],
                    Output::Reduced(Reduction::Sum) => g[0],
                    Output::Reduced(Reduction::Mean) => g[0] / len,
                };
                g * w[i] * slope(i)
            })
            .collect()
    }
}

const MEAN: Output = Output::Reduced(Reduction::Mean);
const SUM: Output = Output::Reduced(Reduction::Sum);

/// The class-index cases: `[4, 7]`, `[3, 300]` (one row per cube, three cubes), `[2, 3, 4]`,
/// `[2, 40, 3]` and `[3, 40, 20]`.
pub(super) fn class_index_cases() -> Vec<ClassIndexCase> {
    use ClassIndexKind::{CrossEntropy, Nll};
    let small = |kind, targets: [i64; 4], weighted, ignore_index, eps, output| ClassIndexCase {
        kind,
        n: 4,
        c: 7,
        s: 1,
        targets: targets.to_vec(),
        weighted,
        ignore_index,
        label_smoothing: eps,
        output,
    };
    let spatial = |kind, weighted, eps, output| ClassIndexCase {
        kind,
        n: 2,
        c: 3,
        s: 4,
        targets: vec![0, 2, -100, 1, 1, 1, 0, 2],
        weighted,
        ignore_index: -100,
        label_smoothing: eps,
        output,
    };
    let per_element = Output::PerElement;
    vec![
        small(CrossEntropy, [3, -100, 6, 0], false, -100, 0.0, per_element),
        small(CrossEntropy, [3, 2, 6, 0], true, 2, 0.1, MEAN),
        small(CrossEntropy, [3, 1, 6, 0], true, -100, 0.0, SUM),
        small(CrossEntropy, [3, 1, 6, 0], false, -100, 0.25, MEAN),
        // Every target ignored: NaN mean, zero gradient.
        small(CrossEntropy, [5, 5, 5, 5], true, 5, 0.1, MEAN),
        ClassIndexCase {
            kind: CrossEntropy,
            n: 3,
            c: 300,
            s: 1,
            targets: vec![299, 0, 157],
            weighted: true,
            ignore_index: -100,
            label_smoothing: 0.05,
            output: MEAN,
        },
        spatial(CrossEntropy, true, 0.2, MEAN),
        // `S > 1` with many classes: 32 units per element.
        ClassIndexCase {
            kind: CrossEntropy,
            n: 2,
            c: 40,
            s: 3,
            targets: vec![39, -100, 0, 17, 5, 1],
            weighted: true,
            ignore_index: -100,
            label_smoothing: 0.1,
            output: per_element,
        },
        spatial(CrossEntropy, false, 0.0, per_element),
        // `S ≥ 16` with many classes: cubes along the spatial positions (8 units per
        // element), the last block with spare rows.
        ClassIndexCase {
            kind: CrossEntropy,
            n: 3,
            c: 40,
            s: 20,
            targets: (0..60)
                .map(|i| if i % 7 == 3 { -100 } else { i % 40 })
                .collect(),
            weighted: true,
            ignore_index: -100,
            label_smoothing: 0.1,
            output: MEAN,
        },
        small(Nll, [3, -100, 6, 0], true, -100, 0.0, MEAN),
        small(Nll, [3, 4, 6, 0], false, 4, 0.0, SUM),
        spatial(Nll, false, 0.0, per_element),
    ]
}

/// The class-probability cases.
pub(super) fn class_probs_cases() -> Vec<ClassProbsCase> {
    let case = |n, c, s, weighted, label_smoothing, output| ClassProbsCase {
        n,
        c,
        s,
        weighted,
        label_smoothing,
        output,
    };
    vec![
        case(4, 7, 1, true, 0.1, Output::PerElement),
        case(2, 3, 4, false, 0.0, MEAN),
        case(4, 7, 1, false, 0.0, SUM),
        // Many classes: 32 units per row.
        case(3, 45, 2, true, 0.2, MEAN),
        // Many classes along 20 spatial positions: cubes along the positions, spare rows.
        case(3, 40, 20, true, 0.1, MEAN),
    ]
}

/// The binary cases (`L = 12`).
pub(super) fn binary_cases() -> Vec<BinaryCase> {
    let case = |kind, weight_period, pos_weight_period, output| BinaryCase {
        kind,
        len: 12,
        weight_period,
        pos_weight_period,
        output,
    };
    use BinaryKind::{Probabilities, WithLogits};
    vec![
        case(WithLogits, Some(3), Some(4), Output::PerElement),
        case(WithLogits, None, None, MEAN),
        case(WithLogits, Some(12), Some(6), SUM),
        case(Probabilities, Some(4), None, MEAN),
        case(Probabilities, None, None, Output::PerElement),
        case(Probabilities, Some(6), None, SUM),
    ]
}
