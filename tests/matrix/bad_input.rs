//! Each misuse is refused on each backend, before any number comes out, with a message that
//! names the function, the argument, what was expected and what came.

use burn::tensor::{Int, Tensor};
use burn_xent::*;

use crate::common::{TestBackend, assert_panics_with, values};
use crate::support::*;

fn bce_refuses(b: &TestBackend) {
    let (p, t) = (probabilities(b), soft_targets(b));
    let opts = BceOptions::new();
    assert_panics_with(
        || binary_cross_entropy(p.clone(), t.clone().narrow(0, 0, 2), Reduction::Mean, &opts),
        &["binary_cross_entropy: target", "[4, 3]", "[2, 3]"],
    );
    assert_panics_with(
        || {
            let w = b.float(&[1.0, 2.0], [2]);
            binary_cross_entropy(
                p.clone(),
                t.clone(),
                Reduction::Mean,
                &BceOptions::new().with_weight(w),
            )
        },
        &["binary_cross_entropy: weight", "[4, 3]", "[2]"],
    );
    for (bad, shown) in [(-0.25, "-0.25"), (1.5, "1.5"), (f64::NAN, "NaN")] {
        // PyTorch 2.15 refuses BCE probabilities and targets outside [0, 1] (and NaN).
        let bad_p = replaced(&p, 7, &[bad]);
        let bad_t = replaced(&t, 10, &[bad]);
        let refusals = [
            ("input", &bad_p, &t, Reduction::Sum, "[2, 1]"),
            ("target", &p, &bad_t, Reduction::Mean, "[3, 1]"),
        ];
        for (argument, input, target, reduction, at) in refusals {
            let refusal = format!("binary_cross_entropy: {argument}");
            assert_panics_with(
                || binary_cross_entropy(input.clone(), target.clone(), reduction, &opts),
                &[&refusal, "[0, 1]", shown, at],
            );
            let module = BceLossConfig::new().init(&b.device);
            assert_panics_with(
                || module.forward_no_reduction(input.clone(), target.clone()),
                &[&refusal, shown, at],
            );
        }
        // Switched off, the check reads nothing and the loss is computed.
        let unchecked = binary_cross_entropy(
            p.clone(),
            bad_t.clone(),
            Reduction::Sum,
            &BceOptions::new().with_check_values(false),
        );
        assert_eq!(unchecked.dims(), [1]);
        // BCE with logits accepts any target, as PyTorch does.
        if !bad.is_nan() {
            let loss = binary_cross_entropy_with_logits(
                p.clone(),
                bad_t,
                Reduction::Mean,
                &BceWithLogitsOptions::new(),
            );
            assert!(values(loss)[0].is_finite());
        }
    }
}

fn bce_with_logits_refuses(b: &TestBackend) {
    let (x, t) = (logits(b), soft_targets(b));
    assert_panics_with(
        || {
            binary_cross_entropy_with_logits(
                x.clone(),
                t.clone().narrow(0, 0, 3),
                Reduction::Mean,
                &BceWithLogitsOptions::new(),
            )
        },
        &[
            "binary_cross_entropy_with_logits: target",
            "[4, 3]",
            "[3, 3]",
        ],
    );
    assert_panics_with(
        || {
            let pw = b.float(&[1.0, 2.0, 3.0, 4.0], [4]);
            binary_cross_entropy_with_logits(
                x.clone(),
                t.clone(),
                Reduction::Mean,
                &BceWithLogitsOptions::new().with_pos_weight(pw),
            )
        },
        &[
            "binary_cross_entropy_with_logits: pos_weight",
            "broadcasts",
            "[4, 3]",
            "[4]",
        ],
    );
    assert_panics_with(
        || {
            BceWithLogitsLossConfig::new()
                .with_pos_weight(Some(vec![1.0, 2.0]))
                .init(&b.device)
                .forward(x.clone(), t.clone(), Reduction::Mean)
        },
        &["binary_cross_entropy_with_logits: pos_weight", "[2]"],
    );
}

/// A class-index loss called as `loss(input, target, weight, ignore_index)`.
type IndexLoss<'a> = &'a dyn Fn(Tensor<2>, Tensor<1, Int>, Option<Tensor<1>>, i64) -> Tensor<1>;

/// The refusals CE and NLL share, checked through `loss(input, target, weight, ignore)`.
fn class_index_refusals(
    b: &TestBackend,
    function: &str,
    loss: IndexLoss<'_>,
    loss_k: &dyn Fn(Tensor<3>, Tensor<2, Int>) -> Tensor<1>,
) {
    let x = logits(b);
    let target = format!("{function}: target");
    assert_panics_with(
        || loss(x.clone(), b.int(&[0, 1, 2], [3]), None, -100),
        &[&target, "expected shape [4]", "[4, 3]", "got [3]"],
    );
    let (xk, _) = k_dim(b);
    assert_panics_with(
        || loss_k(xk.clone(), b.int(&[0, 1, 2], [1, 3])),
        &[&target, "expected shape [2, 2]", "got [1, 3]"],
    );
    assert_panics_with(
        || {
            loss(
                x.clone(),
                classes(b),
                Some(b.float(&[1.0, 1.0, 1.0, 1.0], [4])),
                -100,
            )
        },
        &[&format!("{function}: weight"), "[3]", "[4]"],
    );
    assert_panics_with(
        || loss(x.clone(), b.int(&[0, 3, 1, 1], [N]), None, -100),
        &[&target, "[0, 3)", "got 3 at index [1]"],
    );
    assert_panics_with(
        || loss(x.clone(), b.int(&[0, 1, -1, 1], [N]), None, -100),
        &[&target, "ignore_index (-100)", "got -1 at index [2]"],
    );
    // The same -1 is accepted when it is the ignore_index.
    let accepted = loss(x.clone(), b.int(&[0, 1, -1, 1], [N]), None, -1);
    assert!(values(accepted)[0].is_finite());
}

fn cross_entropy_refuses(b: &TestBackend) {
    class_index_refusals(
        b,
        "cross_entropy",
        &|x, t, weight, ignore_index| {
            let options = CrossEntropyOptions {
                weight,
                ignore_index,
                ..CrossEntropyOptions::new()
            };
            cross_entropy(x, t, Reduction::Mean, &options)
        },
        &|x, t| cross_entropy(x, t, Reduction::Mean, &CrossEntropyOptions::new()),
    );
    let (x, t) = (logits(b), classes(b));
    for smoothing in [1.5, -0.1] {
        assert_panics_with(
            || {
                cross_entropy(
                    x.clone(),
                    t.clone(),
                    Reduction::Mean,
                    &CrossEntropyOptions::new().with_label_smoothing(smoothing),
                )
            },
            &[
                "cross_entropy: label_smoothing",
                "[0, 1]",
                &format!("{smoothing}"),
            ],
        );
        assert_panics_with(
            || {
                CrossEntropyLossConfig::new()
                    .with_label_smoothing(smoothing)
                    .init(&b.device)
            },
            &["label_smoothing", "[0, 1]"],
        );
    }
    let q = class_probabilities(b);
    let refusals: [(_, _, &[&str]); 3] = [
        (
            q.clone().narrow(0, 0, 2),
            CrossEntropyOptions::new(),
            &["cross_entropy_with_probs: target", "[4, 3]", "[2, 3]"],
        ),
        (
            q.clone(),
            CrossEntropyOptions::new().with_ignore_index(0),
            &["cross_entropy_with_probs: ignore_index", "got 0"],
        ),
        (
            q.clone(),
            CrossEntropyOptions::new().with_weight(b.float(&[1.0, 2.0], [2])),
            &["cross_entropy_with_probs: weight", "[3]", "[2]"],
        ),
    ];
    for (target, options, needles) in refusals {
        assert_panics_with(
            || cross_entropy_with_probs(x.clone(), target, Reduction::Mean, &options),
            needles,
        );
    }
    assert_panics_with(
        || {
            cross_entropy_with_probs_no_reduction::<2, 2>(
                x.clone(),
                q.clone(),
                &CrossEntropyOptions::new(),
            )
        },
        &["cross_entropy_with_probs: output", "rank 1", "got rank 2"],
    );
}

fn nll_refuses(b: &TestBackend) {
    class_index_refusals(
        b,
        "nll_loss",
        &|x, t, weight, ignore_index| {
            nll_loss(
                x,
                t,
                Reduction::Sum,
                &NllLossOptions {
                    weight,
                    ignore_index,
                    check_values: true,
                },
            )
        },
        &|x, t| nll_loss(x, t, Reduction::Mean, &NllLossOptions::new()),
    );
    // The module refuses too.
    assert_panics_with(
        || {
            NllLossConfig::new().init(&b.device).forward(
                logits(b),
                b.int(&[0, 9, 1, 1], [N]),
                Reduction::Mean,
            )
        },
        &["nll_loss: target", "got 9 at index [1]"],
    );
}

crate::matrix_tests!(
    bce_refuses,
    bce_with_logits_refuses,
    cross_entropy_refuses,
    nll_refuses
);
