//! Each module's `forward` and `forward_no_reduction` give its function's values and input
//! gradients bit for bit, for every reduction and option: the config wires every option
//! through.

use burn_xent::*;

use crate::common::TestBackend;
use crate::support::*;

const REDUCTIONS: [Reduction; 2] = [Reduction::Mean, Reduction::Sum];

fn bce(b: &TestBackend) {
    let (p, t) = (probabilities(b), soft_targets(b));
    let row_weight = [0.5f32, 1.0, 2.0, 0.0];
    let cases: Vec<(&str, BceLossConfig, BceOptions)> = vec![
        ("default", BceLossConfig::new(), BceOptions::new()),
        (
            "class weight [C]",
            BceLossConfig::new().with_weight(Some(CLASS_WEIGHT.to_vec())),
            BceOptions::new().with_weight(class_weight(b)),
        ),
        (
            "row weight [N, 1]",
            BceLossConfig::new()
                .with_weight(Some(row_weight.to_vec()))
                .with_weight_shape(Some(vec![N, 1])),
            BceOptions::new().with_weight(b.float(&[0.5, 1.0, 2.0, 0.0], [N, 1])),
        ),
        (
            "unchecked",
            BceLossConfig::new().with_check_values(false),
            BceOptions::new().with_check_values(false),
        ),
    ];
    for (name, config, options) in cases {
        let module = config.init(&b.device);
        for reduction in REDUCTIONS {
            assert_bit_identical(
                &evaluate(p.clone(), |x| module.forward(x, t.clone(), reduction)),
                &evaluate(p.clone(), |x| {
                    binary_cross_entropy(x, t.clone(), reduction, &options)
                }),
                &format!("BceLoss {name} {reduction:?}"),
            );
        }
        assert_bit_identical(
            &evaluate(p.clone(), |x| module.forward_no_reduction(x, t.clone())),
            &evaluate(p.clone(), |x| {
                binary_cross_entropy_no_reduction(x, t.clone(), &options)
            }),
            &format!("BceLoss {name} none"),
        );
    }
}

fn bce_with_logits(b: &TestBackend) {
    let (x, t) = (logits(b), soft_targets(b));
    let pos_weight = [3.0f32, 0.5, 1.0];
    let pos_weight_tensor = || b.float(&[3.0, 0.5, 1.0], [C]);
    let cases: Vec<(&str, BceWithLogitsLossConfig, BceWithLogitsOptions)> = vec![
        (
            "default",
            BceWithLogitsLossConfig::new(),
            BceWithLogitsOptions::new(),
        ),
        (
            "weight",
            BceWithLogitsLossConfig::new().with_weight(Some(CLASS_WEIGHT.to_vec())),
            BceWithLogitsOptions::new().with_weight(class_weight(b)),
        ),
        (
            "pos_weight",
            BceWithLogitsLossConfig::new().with_pos_weight(Some(pos_weight.to_vec())),
            BceWithLogitsOptions::new().with_pos_weight(pos_weight_tensor()),
        ),
        (
            "weight and pos_weight",
            BceWithLogitsLossConfig::new()
                .with_weight(Some(CLASS_WEIGHT.to_vec()))
                .with_pos_weight(Some(pos_weight.to_vec())),
            BceWithLogitsOptions::new()
                .with_weight(class_weight(b))
                .with_pos_weight(pos_weight_tensor()),
        ),
    ];
    for (name, config, options) in cases {
        let module = config.init(&b.device);
        for reduction in REDUCTIONS {
            assert_bit_identical(
                &evaluate(x.clone(), |x| module.forward(x, t.clone(), reduction)),
                &evaluate(x.clone(), |x| {
                    binary_cross_entropy_with_logits(x, t.clone(), reduction, &options)
                }),
                &format!("BceWithLogitsLoss {name} {reduction:?}"),
            );
        }
        assert_bit_identical(
            &evaluate(x.clone(), |x| module.forward_no_reduction(x, t.clone())),
            &evaluate(x.clone(), |x| {
                binary_cross_entropy_with_logits_no_reduction(x, t.clone(), &options)
            }),
            &format!("BceWithLogitsLoss {name} none"),
        );
    }
}

/// A CE/NLL option set: name, the config's weight, ignore_index and smoothing, and the
/// same options for the function.
type ClassCase = (
    &'static str,
    Option<Vec<f32>>,
    i64,
    f64,
    CrossEntropyOptions,
);

/// The CE and NLL option sets.
fn class_cases(b: &TestBackend) -> Vec<ClassCase> {
    let weighted = || CrossEntropyOptions::new().with_weight(class_weight(b));
    vec![
        ("default", None, -100, 0.0, CrossEntropyOptions::new()),
        ("weight", Some(CLASS_WEIGHT.to_vec()), -100, 0.0, weighted()),
        (
            "ignore_index 1",
            None,
            1,
            0.0,
            CrossEntropyOptions::new().with_ignore_index(1),
        ),
        (
            "smoothing",
            None,
            -100,
            0.1,
            CrossEntropyOptions::new().with_label_smoothing(0.1),
        ),
        (
            "weight, ignore_index 1, smoothing",
            Some(CLASS_WEIGHT.to_vec()),
            1,
            0.2,
            weighted().with_ignore_index(1).with_label_smoothing(0.2),
        ),
    ]
}

fn cross_entropy_indices(b: &TestBackend) {
    let (x, t) = (logits(b), classes(b));
    let (xk, tk) = k_dim(b);
    for (name, weight, ignore_index, smoothing, options) in class_cases(b) {
        let module = CrossEntropyLossConfig::new()
            .with_weight(weight)
            .with_ignore_index(ignore_index)
            .with_label_smoothing(smoothing)
            .init(&b.device);
        for reduction in REDUCTIONS {
            assert_bit_identical(
                &evaluate(x.clone(), |x| module.forward(x, t.clone(), reduction)),
                &evaluate(x.clone(), |x| {
                    cross_entropy(x, t.clone(), reduction, &options)
                }),
                &format!("CrossEntropyLoss {name} {reduction:?}"),
            );
            assert_bit_identical(
                &evaluate(xk.clone(), |x| module.forward(x, tk.clone(), reduction)),
                &evaluate(xk.clone(), |x| {
                    cross_entropy(x, tk.clone(), reduction, &options)
                }),
                &format!("CrossEntropyLoss K-dim {name} {reduction:?}"),
            );
        }
        assert_bit_identical(
            &evaluate(x.clone(), |x| module.forward_no_reduction(x, t.clone())),
            &evaluate(x.clone(), |x| {
                cross_entropy_no_reduction(x, t.clone(), &options)
            }),
            &format!("CrossEntropyLoss {name} none"),
        );
        assert_bit_identical(
            &evaluate(xk.clone(), |x| module.forward_no_reduction(x, tk.clone())),
            &evaluate(xk.clone(), |x| {
                cross_entropy_no_reduction(x, tk.clone(), &options)
            }),
            &format!("CrossEntropyLoss K-dim {name} none"),
        );
    }
}

fn cross_entropy_probabilities(b: &TestBackend) {
    let (x, q) = (logits(b), class_probabilities(b));
    for (name, weight, _, smoothing, options) in class_cases(b) {
        if options.ignore_index >= 0 {
            continue; // probability targets refuse a class to ignore, as PyTorch does
        }
        let module = CrossEntropyLossConfig::new()
            .with_weight(weight)
            .with_label_smoothing(smoothing)
            .init(&b.device);
        for reduction in REDUCTIONS {
            assert_bit_identical(
                &evaluate(x.clone(), |x| module.forward_probs(x, q.clone(), reduction)),
                &evaluate(x.clone(), |x| {
                    cross_entropy_with_probs(x, q.clone(), reduction, &options)
                }),
                &format!("CrossEntropyLoss probs {name} {reduction:?}"),
            );
        }
        assert_bit_identical(
            &evaluate(x.clone(), |x| {
                module.forward_probs_no_reduction::<2, 1>(x, q.clone())
            }),
            &evaluate(x.clone(), |x| {
                cross_entropy_with_probs_no_reduction::<2, 1>(x, q.clone(), &options)
            }),
            &format!("CrossEntropyLoss probs {name} none"),
        );
    }
}

fn nll(b: &TestBackend) {
    let (x, t) = (logits(b), classes(b));
    let (xk, tk) = k_dim(b);
    for (name, weight, ignore_index, smoothing, ce_options) in class_cases(b) {
        if smoothing > 0.0 {
            continue; // NLL has no smoothing
        }
        let options = NllLossOptions {
            weight: ce_options.weight,
            ignore_index,
            check_values: true,
        };
        let module = NllLossConfig::new()
            .with_weight(weight)
            .with_ignore_index(ignore_index)
            .init(&b.device);
        for reduction in REDUCTIONS {
            assert_bit_identical(
                &evaluate(x.clone(), |x| module.forward(x, t.clone(), reduction)),
                &evaluate(x.clone(), |x| nll_loss(x, t.clone(), reduction, &options)),
                &format!("NllLoss {name} {reduction:?}"),
            );
            assert_bit_identical(
                &evaluate(xk.clone(), |x| module.forward(x, tk.clone(), reduction)),
                &evaluate(xk.clone(), |x| nll_loss(x, tk.clone(), reduction, &options)),
                &format!("NllLoss K-dim {name} {reduction:?}"),
            );
        }
        assert_bit_identical(
            &evaluate(x.clone(), |x| module.forward_no_reduction(x, t.clone())),
            &evaluate(x.clone(), |x| nll_loss_no_reduction(x, t.clone(), &options)),
            &format!("NllLoss {name} none"),
        );
    }
}

crate::matrix_tests!(
    bce,
    bce_with_logits,
    cross_entropy_indices,
    cross_entropy_probabilities,
    nll
);
