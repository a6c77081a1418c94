//! PyTorch's rules at the edges, on every backend. The exact numbers are checked against
//! PyTorch by the parity fixtures; here each expectation follows from PyTorch's documented
//! definition, written next to it.

use burn::tensor::{Int, Tensor};
use burn_xent::*;

use crate::common::{TestBackend, assert_close};
use crate::support::*;

/// Every target ignored: `mean` is 0/0 = NaN and `sum` is 0, with a zero gradient.
fn all_ignored(b: &TestBackend) {
    let x = logits(b);
    let t: Tensor<1, Int> = b.int(&[-100; N], [N]);
    for options in [
        CrossEntropyOptions::new(),
        CrossEntropyOptions::new()
            .with_weight(class_weight(b))
            .with_label_smoothing(0.1),
    ] {
        let mean = evaluate(x.clone(), |x| {
            cross_entropy(x, t.clone(), Reduction::Mean, &options)
        });
        assert!(
            mean.loss[0].is_nan(),
            "mean of nothing is NaN, got {:?}",
            mean.loss
        );
        assert!(
            mean.grad.iter().flatten().all(|&g| g == 0.0),
            "zero gradient, got {:?}",
            mean.grad
        );
        let sum = evaluate(x.clone(), |x| {
            cross_entropy(x, t.clone(), Reduction::Sum, &options)
        });
        assert_eq!(sum.loss, vec![0.0]);
        assert!(sum.grad.iter().flatten().all(|&g| g == 0.0));
        let none = evaluate(x.clone(), |x| {
            cross_entropy_no_reduction(x, t.clone(), &options)
        });
        assert_eq!(none.loss, vec![0.0; N]);
    }
    let nll = evaluate(x, |x| {
        nll_loss(x, t, Reduction::Mean, &NllLossOptions::new())
    });
    assert!(nll.loss[0].is_nan());
    assert!(nll.grad.iter().flatten().all(|&g| g == 0.0));
}

/// An ignored row does not count in the mean and gets no gradient, whatever its logits; the
/// mean of the rest equals the mean over the rest alone. (With NaN logits in the ignored row
/// PyTorch's log-softmax backward gives that row a NaN gradient; the parity fixtures cover
/// that case.)
fn ignored_rows_drop_out(b: &TestBackend) {
    let x = logits(b);
    let poisoned = replaced(&x, 0, &[80.0, -80.0, 30.0]);
    let t: Tensor<1, Int> = b.int(&[-100, 2, 1, 0], [N]);
    let options = CrossEntropyOptions::new().with_weight(class_weight(b));
    let with_ignored = evaluate(poisoned, |x| {
        cross_entropy(x, t.clone(), Reduction::Mean, &options)
    });
    let rest = evaluate(x.narrow(0, 1, N - 1), |x| {
        cross_entropy(x, t.clone().narrow(0, 1, N - 1), Reduction::Mean, &options)
    });
    assert_close(
        &with_ignored.loss,
        &rest.loss,
        1e-6,
        1e-7,
        "mean over the rest",
    );
    if let (Some(grad), Some(rest)) = (&with_ignored.grad, &rest.grad) {
        assert!(grad[..C].iter().all(|&g| g == 0.0));
        assert_close(&grad[C..], rest, 1e-6, 1e-7, "gradient of the rest");
    }
}

/// A zero class weight removes its elements from numerator and denominator of the mean.
fn zero_class_weight(b: &TestBackend) {
    let x = logits(b);
    let t = classes(b); // [0, 2, 1, 1]
    let zero_first = b.float(&[0.0, 2.0, 1.25], [C]);
    let weighted = evaluate(x.clone(), |x| {
        cross_entropy(
            x,
            t.clone(),
            Reduction::Mean,
            &CrossEntropyOptions::new().with_weight(zero_first),
        )
    });
    let without_row0 = evaluate(x.narrow(0, 1, N - 1), |x| {
        cross_entropy(
            x,
            t.clone().narrow(0, 1, N - 1),
            Reduction::Mean,
            &CrossEntropyOptions::new().with_weight(class_weight(b)),
        )
    });
    assert_close(
        &weighted.loss,
        &without_row0.loss,
        1e-6,
        1e-7,
        "zero weight drops row 0",
    );
    if let Some(grad) = &weighted.grad {
        assert!(grad[..C].iter().all(|&g| g == 0.0));
    }
}

/// An empty batch: `mean` is NaN, `sum` is 0, `none` is empty. Burn gives the empty input no
/// gradient (PyTorch an empty one): burn-xent builds these results from host data
/// (`src/workarounds.rs`).
fn empty_batch(b: &TestBackend) {
    let x = b.float(&[], [0, C]);
    let t: Tensor<1, Int> = b.int(&[], [0]);
    let options = CrossEntropyOptions::new();
    let mean = evaluate_without_gradient(x.clone(), |x| {
        cross_entropy(x, t.clone(), Reduction::Mean, &options)
    });
    assert!(mean.len() == 1 && mean[0].is_nan(), "mean: {mean:?}");
    let sum = evaluate_without_gradient(x.clone(), |x| {
        cross_entropy(x, t.clone(), Reduction::Sum, &options)
    });
    assert_eq!(sum, vec![0.0]);
    let none = evaluate_without_gradient(x.clone(), |x| {
        cross_entropy_no_reduction(x, t.clone(), &options)
    });
    assert!(none.is_empty(), "none: {none:?}");
    let p = b.float(&[], [0]);
    let bce = evaluate_without_gradient(p, |p| {
        binary_cross_entropy(p, b.float(&[], [0]), Reduction::Mean, &BceOptions::new())
    });
    assert!(bce.len() == 1 && bce[0].is_nan(), "bce mean: {bce:?}");
}

/// BCE at probabilities exactly 0 and 1: a wrong prediction costs `-max(log 0, -100) = 100`
/// (PyTorch's clamp), a right one costs 0, and the gradient is PyTorch's
/// `(p - t) / max(p (1 - p), 1e-12)`, finite everywhere.
fn bce_at_zero_and_one(b: &TestBackend) {
    let p = b.float(&[0.0, 1.0, 0.0, 1.0], [4]);
    let t = b.float(&[0.0, 1.0, 1.0, 0.0], [4]);
    let got = evaluate(p, |p| {
        binary_cross_entropy_no_reduction(p, t.clone(), &BceOptions::new())
    });
    assert_eq!(got.loss, vec![0.0, 0.0, 100.0, 100.0]);
    let projection = projection(4);
    let want: Vec<f64> = [0.0, 0.0, -1e12, 1e12]
        .iter()
        .zip(&projection)
        .map(|(g, w)| g * w)
        .collect();
    if let Some(grad) = &got.grad {
        assert_close(grad, &want, 1e-5, 0.0, "PyTorch's clamped BCE gradient");
    }
}

/// BCE with logits and CE stay finite for logits of ±1e4: `loss = (1 - t) x - log_sigmoid(x)`
/// is `1e4` for `x = 1e4, t = 0` and 0 for `x = 1e4, t = 1`, its gradient `sigmoid(x) - t`.
fn saturated_logits(b: &TestBackend) {
    let x = b.float(&[1e4, -1e4, 1e4, -1e4], [4]);
    let t = b.float(&[0.0, 1.0, 1.0, 0.0], [4]);
    let projection = projection(4);
    let plain = evaluate(x.clone(), |x| {
        binary_cross_entropy_with_logits_no_reduction(x, t.clone(), &BceWithLogitsOptions::new())
    });
    assert_eq!(plain.loss, vec![1e4, 1e4, 0.0, 0.0]);
    let slope: Vec<f64> = [1.0, -1.0, 0.0, 0.0]
        .iter()
        .zip(&projection)
        .map(|(g, w)| g * w)
        .collect();
    if let Some(grad) = &plain.grad {
        assert_close(grad, &slope, 1e-6, 0.0, "sigmoid(x) - t");
    }
    let pos_weight = b.float(&[3.0], [1]);
    let weighted = evaluate(x, |x| {
        binary_cross_entropy_with_logits_no_reduction(
            x,
            t.clone(),
            &BceWithLogitsOptions::new().with_pos_weight(pos_weight),
        )
    });
    // pos_weight multiplies the positive term: 3 * 1e4 for x = -1e4, t = 1.
    assert_eq!(weighted.loss, vec![1e4, 3e4, 0.0, 0.0]);
    let ce_logits = b.float(&[1e4, -1e4, 0.0, -1e4, 1e4, 0.0], [2, 3]);
    let ce_target: Tensor<1, Int> = b.int(&[1, 1], [2]);
    let ce = evaluate(ce_logits, |x| {
        cross_entropy_no_reduction(x, ce_target.clone(), &CrossEntropyOptions::new())
    });
    // log_softmax of the target: -2e4 in row 0 and 0 in row 1.
    assert_eq!(ce.loss, vec![2e4, 0.0]);
    assert!(ce.grad.iter().flatten().all(|g| g.is_finite()));
}

/// NaN in the logits propagates to its own element's loss and to the mean, as in PyTorch.
fn nan_propagates(b: &TestBackend) {
    let x = replaced(&logits(b), C + 1, &[f64::NAN]); // row 1
    let t = classes(b);
    let none = evaluate(x.clone(), |x| {
        cross_entropy_no_reduction(x, t.clone(), &CrossEntropyOptions::new())
    });
    assert!(none.loss[1].is_nan());
    assert!(
        none.loss
            .iter()
            .enumerate()
            .all(|(i, l)| i == 1 || l.is_finite())
    );
    let mean = evaluate(x.clone(), |x| {
        cross_entropy(x, t.clone(), Reduction::Mean, &CrossEntropyOptions::new())
    });
    assert!(mean.loss[0].is_nan());
    let with_logits = evaluate(x, |x| {
        binary_cross_entropy_with_logits(
            x,
            soft_targets(b),
            Reduction::Mean,
            &BceWithLogitsOptions::new(),
        )
    });
    assert!(with_logits.loss[0].is_nan());
}

/// The unbatched form: `[C]` logits with a `[1]` target (PyTorch's scalar) equals the
/// batched `[1, C]` form.
fn unbatched_equals_batch_of_one(b: &TestBackend) {
    let row = b.float(&[0.3, -1.2, 2.0], [C]);
    let t: Tensor<1, Int> = b.int(&[2], [1]);
    let options = CrossEntropyOptions::new()
        .with_weight(class_weight(b))
        .with_label_smoothing(0.1);
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let single = evaluate(row.clone(), |x| {
            cross_entropy(x, t.clone(), reduction, &options)
        });
        let batched = evaluate(row.clone(), |x| {
            cross_entropy(x.unsqueeze_dim::<2>(0), t.clone(), reduction, &options)
        });
        assert_bit_identical(&single, &batched, "unbatched");
    }
}

crate::matrix_tests!(
    all_ignored,
    ignored_rows_drop_out,
    zero_class_weight,
    empty_batch,
    bce_at_zero_and_one,
    saturated_logits,
    nan_propagates,
    unbatched_equals_batch_of_one
);
