//! Input gradients against a float64 reference computed on the host from the same f32 inputs,
//! on both paths and every backend of the matrix: the largest error must stay within a few f32
//! ulps of the gradient's scale (its largest magnitude), which is what PyTorch's f32 gradients
//! achieve.
//!
//! The inputs are large enough (`[3000, 3]`) for Burn's ndarray backend to run its SIMD
//! kernels (32 elements and up). Burn 0.21 differentiates `log` as `grad * recip(x)`, and
//! burn-ndarray's SIMD `recip` is the approximate reciprocal instruction on x86
//! (`_mm512_rcp14_ps`, relative error up to 2^-14, on AVX-512): a loss that let Burn
//! differentiate its logarithms was 300 times less accurate here (4e-5 instead of 1.4e-7 on
//! the cross-entropy below), which these checks catch (`src/workarounds.rs`).
//!
//! "NLL on log_softmax" takes its log-probabilities from [`log_softmax_exact`], written here
//! the way the crate writes its own: Burn's `log_softmax` differentiates through that same
//! `log`, so with it the check would measure Burn's reciprocal, not burn-xent's NLL.

use burn::tensor::{Int, Tensor};
use burn_xent::*;

use crate::common::{Stream, TestBackend, assert_close, normalised_over_classes};
use crate::support::gradient;

/// Rows of every input: the case, far above burn-ndarray's SIMD threshold.
const ROWS: usize = 3000;
/// Classes (or columns, for the binary losses).
const CLASSES: usize = 3;
/// The allowed error, in f32 ulps (`f32::EPSILON`) of the gradient's largest magnitude.
const ULPS: f64 = 4.0;

/// Rounds host values to f32, so the host reference sees exactly what the backend sees.
fn f32_rounded(values: Vec<f64>) -> Vec<f64> {
    values.into_iter().map(|v| v as f32 as f64).collect()
}

/// The input gradient of the reduced `loss(input)`; Burn must return one.
fn input_gradient<const D: usize>(
    input: &Tensor<D>,
    loss: impl FnOnce(Tensor<D>) -> Tensor<1>,
) -> Vec<f64> {
    let input = input.clone().detach().require_grad();
    let grads = loss(input.clone()).backward();
    gradient(&input, &grads, "the loss's input")
}

/// Asserts that `got` is within [`ULPS`] f32 ulps of `want`'s largest magnitude: the common
/// tolerance rule with `rtol = 0` and `atol = ULPS × f32::EPSILON × max |want|`.
fn assert_accurate(name: &str, got: &[f64], want: &[f64]) {
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let worst = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
    let ulp = f32::EPSILON as f64 * scale;
    println!(
        "{name} [{:?}]: max abs error {worst:.2e} ({:.2} ulps of the scale {scale:.2e})",
        loss_path(),
        worst / ulp
    );
    assert_close(
        got,
        want,
        0.0,
        ULPS * ulp,
        &format!("{name}: gradient ({ULPS} f32 ulps of {scale:.3e})"),
    );
}

/// Host f64 `(softmax, log_softmax)` of `[rows, classes]` logits.
fn softmax_rows(x: &[f64], classes: usize) -> (Vec<f64>, Vec<f64>) {
    let mut p = vec![0.0; x.len()];
    let mut lp = vec![0.0; x.len()];
    for (r, row) in x.chunks(classes).enumerate() {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        for c in 0..classes {
            lp[r * classes + c] = row[c] - lse;
            p[r * classes + c] = lp[r * classes + c].exp();
        }
    }
    (p, lp)
}

/// The gradient with respect to the logits of a loss whose gradient with respect to the
/// log-probabilities is `dlp`: `dlp - softmax · Σ_c dlp` per row.
fn through_log_softmax(x: &[f64], dlp: &[f64], classes: usize) -> Vec<f64> {
    let (p, _) = softmax_rows(x, classes);
    let mut grad = dlp.to_vec();
    for r in 0..x.len() / classes {
        let row = r * classes..(r + 1) * classes;
        let total: f64 = dlp[row.clone()].iter().sum();
        for i in row {
            grad[i] -= p[i] * total;
        }
    }
    grad
}

/// Class-index options of the reference: weight, ignore_index, label smoothing.
struct IndexOptions<'a> {
    weight: Option<&'a [f64]>,
    ignore_index: i64,
    smoothing: f64,
}

/// PyTorch's gradient of cross-entropy (NLL when `smoothing` is 0) with class-index targets
/// with respect to the log-probabilities.
fn index_loss_dlp(
    target: &[i64],
    classes: usize,
    reduction: Reduction,
    o: &IndexOptions<'_>,
) -> Vec<f64> {
    let w = |c: usize| o.weight.map_or(1.0, |w| w[c]);
    let mut dlp = vec![0.0; target.len() * classes];
    let mut weight_sum = 0.0;
    for (r, &t) in target.iter().enumerate() {
        if t == o.ignore_index {
            continue;
        }
        let t = t as usize;
        weight_sum += w(t);
        dlp[r * classes + t] -= (1.0 - o.smoothing) * w(t);
        for c in 0..classes {
            dlp[r * classes + c] -= o.smoothing / classes as f64 * w(c);
        }
    }
    if reduction == Reduction::Mean {
        dlp.iter_mut().for_each(|g| *g /= weight_sum);
    }
    dlp
}

/// The class-index target of the inputs: every class, every fifth row `ignore_index` 1 when
/// `with_ignored`.
fn index_target(with_ignored: Option<i64>) -> Vec<i64> {
    let mut target = Stream::new(42).classes(ROWS, CLASSES);
    if let Some(ignore) = with_ignored {
        target.iter_mut().step_by(5).for_each(|t| *t = ignore);
    }
    target
}

/// Cross-entropy with class indices and with probabilities, the case first.
fn cross_entropy_gradients(b: &TestBackend) {
    let x = f32_rounded(Stream::new(41).uniforms(ROWS * CLASSES, -3.0, 3.0));
    let logits = b.float(&x, [ROWS, CLASSES]);
    let weight = f32_rounded(vec![0.5, 2.0, 1.25]);
    let weight_tensor = b.float(&weight, [CLASSES]);

    // Class indices: the case (plain, Sum), then weight, ignore_index and smoothing.
    let cases = [
        ("cross_entropy Sum", None, Reduction::Sum, None, 0.0),
        (
            "cross_entropy weight+ignore+smoothing Mean",
            Some(1),
            Reduction::Mean,
            Some(weight.as_slice()),
            0.1,
        ),
    ];
    for (name, ignored, reduction, class_weight, smoothing) in cases {
        let target = index_target(ignored);
        let target_tensor: Tensor<1, Int> = b.int(&target, [ROWS]);
        let reference = IndexOptions {
            weight: class_weight,
            ignore_index: ignored.unwrap_or(-100),
            smoothing,
        };
        let mut options = CrossEntropyOptions::new()
            .with_ignore_index(reference.ignore_index)
            .with_label_smoothing(smoothing);
        if class_weight.is_some() {
            options = options.with_weight(weight_tensor.clone());
        }
        let dlp = index_loss_dlp(&target, CLASSES, reduction, &reference);
        let want = through_log_softmax(&x, &dlp, CLASSES);
        let got = input_gradient(&logits, |x| {
            cross_entropy(x, target_tensor.clone(), reduction, &options)
        });
        assert_accurate(name, &got, &want);
    }

    // Probability targets: dL/dlp_c = -w_c q_c.
    let raw = Stream::new(43).uniforms(ROWS * CLASSES, 0.05, 1.0);
    let probs = f32_rounded(normalised_over_classes(&raw, &[ROWS, CLASSES]));
    let probs_tensor = b.float(&probs, [ROWS, CLASSES]);
    let dlp: Vec<f64> = probs
        .iter()
        .enumerate()
        .map(|(i, q)| -weight[i % CLASSES] * q)
        .collect();
    let want = through_log_softmax(&x, &dlp, CLASSES);
    let got = input_gradient(&logits, |x| {
        cross_entropy_with_probs(
            x,
            probs_tensor.clone(),
            Reduction::Sum,
            &CrossEntropyOptions::new().with_weight(weight_tensor.clone()),
        )
    });
    assert_accurate("cross_entropy_with_probs weight Sum", &got, &want);
}

/// `log_softmax(x, dim)` whose gradient does not go through Burn's `log` backward: the same
/// formulation as burn-xent's own (`src/workarounds.rs`).
fn log_softmax_exact<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let shifted = x.clone() - x.detach().max_dim(dim);
    let sum = shifted.clone().exp().sum_dim(dim);
    let constant = sum.clone().detach();
    let inverse = constant.ones_like().div(constant.clone());
    shifted - (constant.clone().log() + (sum - constant) * inverse)
}

/// NLL on log-probabilities (its own input gradient), and NLL on `log_softmax` of logits.
fn nll_gradients(b: &TestBackend) {
    let x = f32_rounded(Stream::new(44).uniforms(ROWS * CLASSES, -3.0, 3.0));
    let logits = b.float(&x, [ROWS, CLASSES]);
    let (_, lp) = softmax_rows(&x, CLASSES);
    let lp = f32_rounded(lp);
    let log_probs = b.float(&lp, [ROWS, CLASSES]);
    let weight = f32_rounded(vec![0.5, 2.0, 1.25]);
    let weight_tensor = b.float(&weight, [CLASSES]);
    let target = index_target(Some(2));
    let target_tensor: Tensor<1, Int> = b.int(&target, [ROWS]);
    let reference = IndexOptions {
        weight: Some(&weight),
        ignore_index: 2,
        smoothing: 0.0,
    };
    let options = NllLossOptions::new()
        .with_weight(weight_tensor)
        .with_ignore_index(2);
    for reduction in [Reduction::Sum, Reduction::Mean] {
        let dlp = index_loss_dlp(&target, CLASSES, reduction, &reference);
        let got = input_gradient(&log_probs, |lp| {
            nll_loss(lp, target_tensor.clone(), reduction, &options)
        });
        assert_accurate(&format!("nll_loss {reduction:?}"), &got, &dlp);
        let got = input_gradient(&logits, |x| {
            nll_loss(
                log_softmax_exact(x, 1),
                target_tensor.clone(),
                reduction,
                &options,
            )
        });
        let want = through_log_softmax(&x, &dlp, CLASSES);
        assert_accurate(
            &format!("nll_loss on log_softmax {reduction:?}"),
            &got,
            &want,
        );
    }
}

/// What a reduction divides the summed loss of `count` elements by: `count` for the mean, 1
/// for the sum.
fn divisor(reduction: Reduction, count: usize) -> f64 {
    if reduction == Reduction::Mean {
        count as f64
    } else {
        1.0
    }
}

/// BCE on probabilities and BCE with logits, weighted, with soft targets.
fn binary_gradients(b: &TestBackend) {
    let count = ROWS * CLASSES;
    let shape = [ROWS, CLASSES];
    let t = f32_rounded(Stream::new(45).uniforms(count, 0.0, 1.0));
    let target = b.float(&t, shape);
    let weight = f32_rounded(vec![0.5, 2.0, 1.25]);
    let weight_tensor = b.float(&weight, [CLASSES]);
    let w = |i: usize| weight[i % CLASSES];

    // BCE: PyTorch's dL/dp = w (p - t) / (p (1 - p)), away from the clamps.
    let p = f32_rounded(Stream::new(46).uniforms(count, 0.01, 0.99));
    let probs = b.float(&p, shape);
    for reduction in [Reduction::Sum, Reduction::Mean] {
        let divisor = divisor(reduction, count);
        let want: Vec<f64> = (0..count)
            .map(|i| w(i) * (p[i] - t[i]) / (p[i] * (1.0 - p[i])) / divisor)
            .collect();
        let got = input_gradient(&probs, |p| {
            binary_cross_entropy(
                p,
                target.clone(),
                reduction,
                &BceOptions::new().with_weight(weight_tensor.clone()),
            )
        });
        assert_accurate(
            &format!("binary_cross_entropy weight {reduction:?}"),
            &got,
            &want,
        );
    }

    // BCE with logits: dL/dx = w ((1 - t) σ(x) - pw t σ(-x)), into both tails.
    let x = f32_rounded(Stream::new(47).uniforms(count, -20.0, 20.0));
    let logits = b.float(&x, shape);
    let pos_weight = f32_rounded(vec![3.0, 0.25, 1.5]);
    let pos_weight_tensor = b.float(&pos_weight, [CLASSES]);
    let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
    for reduction in [Reduction::Sum, Reduction::Mean] {
        let divisor = divisor(reduction, count);
        let want: Vec<f64> = (0..count)
            .map(|i| {
                let pw = pos_weight[i % CLASSES];
                w(i) * ((1.0 - t[i]) * sigmoid(x[i]) - pw * t[i] * sigmoid(-x[i])) / divisor
            })
            .collect();
        let got = input_gradient(&logits, |x| {
            binary_cross_entropy_with_logits(
                x,
                target.clone(),
                reduction,
                &BceWithLogitsOptions::new()
                    .with_weight(weight_tensor.clone())
                    .with_pos_weight(pos_weight_tensor.clone()),
            )
        });
        assert_accurate(
            &format!("binary_cross_entropy_with_logits weight+pos_weight {reduction:?}"),
            &got,
            &want,
        );
    }
}

crate::matrix_tests!(autodiff: cross_entropy_gradients, nll_gradients, binary_gradients);
