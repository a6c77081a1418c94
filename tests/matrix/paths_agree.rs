//! The fused path and the composite path give the same values and gradients (input and, for
//! float targets, target), for every loss, reduction and option, at shapes that exercise the
//! kernels' vector lanes, remainders and several threads' worth of rows.
//!
//! Each case runs twice on the same backend, once under `LossPath::Composite` (Burn's generic
//! operations, the reference) and once under `LossPath::Fused` (which panics if no fused
//! kernel runs, so a case cannot silently compare the composite path with itself). The two
//! must agree within 16 units of the dtype's epsilon times the largest magnitude of each
//! result (loss, input gradient, target gradient): f32 round-off in f32, f64 round-off in f64.

use burn::tensor::{Int, Tensor};
use burn_xent::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, LossPath, NllLossOptions, Reduction,
    binary_cross_entropy, binary_cross_entropy_no_reduction, binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_no_reduction, cross_entropy, cross_entropy_no_reduction,
    cross_entropy_with_probs, cross_entropy_with_probs_no_reduction, nll_loss,
    nll_loss_no_reduction, with_loss_path,
};

use crate::common::{Stream, TestBackend, assert_close, values};
use crate::support::{backward_projected, gradient};

/// Rows and classes: more rows than one kernel task holds for small `C`, and a class count
/// that is not a multiple of the 16 vector lanes.
const ROWS: usize = 37;
const CLASSES: usize = 50;
/// A K-dimensional input `[N, C, d1, d2]`.
const K_DIM: [usize; 4] = [3, 5, 2, 7];

/// Loss values and the gradients of the input and the target (empty when there is no float
/// target, and both empty on a plain device, where the two paths are compared on the loss
/// alone). Burn must return every gradient asked for: a missing one fails, never compared as
/// empty.
struct Outcome {
    loss: Vec<f64>,
    input_grad: Vec<f64>,
    target_grad: Vec<f64>,
}

/// Runs `loss(input, target)` on `path` and, on an autodiff device, back-propagates a fixed
/// projection of its output.
fn run<const D: usize, const DO: usize>(
    path: LossPath,
    input: &Tensor<D>,
    target: Option<&Tensor<D>>,
    loss: &dyn Fn(Tensor<D>, Option<Tensor<D>>) -> Tensor<DO>,
) -> Outcome {
    if !input.is_autodiff() {
        let output = with_loss_path(path, || loss(input.clone(), target.cloned()));
        return Outcome {
            loss: values(output),
            input_grad: Vec::new(),
            target_grad: Vec::new(),
        };
    }
    let input = input.clone().detach().require_grad();
    let target = target.map(|t| t.clone().detach().require_grad());
    let output = with_loss_path(path, || loss(input.clone(), target.clone()));
    let grads = backward_projected(&output, 11);
    Outcome {
        input_grad: gradient(&input, &grads, &format!("{path:?} path: input")),
        target_grad: target
            .map(|t| gradient(&t, &grads, &format!("{path:?} path: target")))
            .unwrap_or_default(),
        loss: values(output),
    }
}

/// How far apart the two paths may be: `ulps` units of the dtype's machine epsilon times the
/// largest magnitude of the composite result (the loss values, the input gradient and the
/// target gradient each compared at their own scale).
#[derive(Clone, Copy)]
struct Tolerance {
    ulps: f64,
    epsilon: f64,
}

/// Asserts `|got - want| <= tolerance.ulps × epsilon × max |want|` element-wise (the common
/// tolerance rule with `rtol = 0`: NaN only matches NaN, an infinity only itself), and returns
/// the largest difference in units of `epsilon × max |want|`.
fn assert_within_scale(got: &[f64], want: &[f64], tolerance: Tolerance, context: &str) -> f64 {
    let scale = want
        .iter()
        .filter(|w| w.is_finite())
        .fold(0.0f64, |m, w| m.max(w.abs()));
    let unit = tolerance.epsilon * scale;
    assert_close(
        got,
        want,
        0.0,
        tolerance.ulps * unit,
        &format!(
            "{context}: allowed {} units of {unit:.3e} (epsilon × scale {scale:.3e})",
            tolerance.ulps
        ),
    );
    got.iter()
        .zip(want)
        .filter(|(g, w)| g != w && g.is_finite() && w.is_finite())
        .fold(0.0f64, |m, (g, w)| m.max((g - w).abs() / unit))
}

/// Asserts that both paths agree on `loss` within `tolerance`.
fn agree<const D: usize, const DO: usize>(
    name: &str,
    input: &Tensor<D>,
    target: Option<&Tensor<D>>,
    loss: impl Fn(Tensor<D>, Option<Tensor<D>>) -> Tensor<DO>,
    tolerance: Tolerance,
) {
    let composite = run(LossPath::Composite, input, target, &loss);
    let fused = run(LossPath::Fused, input, target, &loss);
    let worst = [
        (&fused.loss, &composite.loss, "loss"),
        (&fused.input_grad, &composite.input_grad, "input gradient"),
        (
            &fused.target_grad,
            &composite.target_grad,
            "target gradient",
        ),
    ]
    .map(|(got, want, what)| assert_within_scale(got, want, tolerance, &format!("{name}: {what}")));
    println!(
        "{name}: loss {:.2}, input gradient {:.2}, target gradient {:.2} (epsilon × scale)",
        worst[0], worst[1], worst[2]
    );
}

/// Class indices with some targets equal to `ignore`.
fn class_targets<const D: usize>(
    shape: [usize; D],
    classes: usize,
    ignore: i64,
    b: &TestBackend,
) -> Tensor<D, Int> {
    let count = shape.iter().product();
    let mut targets = Stream::new(21).classes(count, classes);
    for t in targets.iter_mut().step_by(5) {
        *t = ignore;
    }
    b.int(&targets, shape)
}

fn class_index_losses(b: &TestBackend, tolerance: Tolerance) {
    let logits = b.float(
        &Stream::new(22).normals(ROWS * CLASSES, 3.0),
        [ROWS, CLASSES],
    );
    let weight = b.float(&Stream::new(23).uniforms(CLASSES, 0.2, 2.0), [CLASSES]);
    let target = class_targets::<1>([ROWS], CLASSES, 7, b);
    let plain = CrossEntropyOptions::new();
    let options = CrossEntropyOptions::new()
        .with_weight(weight.clone())
        .with_ignore_index(7)
        .with_label_smoothing(0.15);
    for (label, options) in [("plain", &plain), ("weight+ignore+smoothing", &options)] {
        for reduction in [Reduction::Mean, Reduction::Sum] {
            agree(
                &format!("cross_entropy {label} {reduction:?}"),
                &logits,
                None,
                |x, _| cross_entropy(x, target.clone(), reduction, options),
                tolerance,
            );
        }
        agree(
            &format!("cross_entropy_no_reduction {label}"),
            &logits,
            None,
            |x, _| cross_entropy_no_reduction(x, target.clone(), options),
            tolerance,
        );
    }
    let nll = NllLossOptions::new()
        .with_weight(weight)
        .with_ignore_index(7);
    agree(
        "nll_loss weight+ignore Mean",
        &logits,
        None,
        |x, _| nll_loss(x, target.clone(), Reduction::Mean, &nll),
        tolerance,
    );
    agree(
        "nll_loss_no_reduction weight+ignore",
        &logits,
        None,
        |x, _| nll_loss_no_reduction(x, target.clone(), &nll),
        tolerance,
    );

    // K-dimensional and unbatched inputs.
    let [n, c, d1, d2] = K_DIM;
    let k_logits = b.float(&Stream::new(24).normals(n * c * d1 * d2, 2.0), K_DIM);
    let k_target = class_targets::<3>([n, d1, d2], c, -100, b);
    let k_options = CrossEntropyOptions::new().with_label_smoothing(0.1);
    agree(
        "cross_entropy K-dim smoothing Mean",
        &k_logits,
        None,
        |x, _| cross_entropy(x, k_target.clone(), Reduction::Mean, &k_options),
        tolerance,
    );
    agree(
        "nll_loss_no_reduction K-dim",
        &k_logits,
        None,
        |x, _| nll_loss_no_reduction(x, k_target.clone(), &NllLossOptions::new()),
        tolerance,
    );
    let row = b.float(&Stream::new(25).normals(CLASSES, 2.0), [CLASSES]);
    let single = b.int(&[3], [1]);
    agree(
        "cross_entropy unbatched Sum",
        &row,
        None,
        |x, _| {
            cross_entropy(
                x,
                single.clone(),
                Reduction::Sum,
                &CrossEntropyOptions::new(),
            )
        },
        tolerance,
    );
}

fn probability_target_losses(b: &TestBackend, tolerance: Tolerance) {
    let logits = b.float(
        &Stream::new(26).normals(ROWS * CLASSES, 3.0),
        [ROWS, CLASSES],
    );
    let probs = b.float(
        &Stream::new(27).uniforms(ROWS * CLASSES, 0.0, 0.1),
        [ROWS, CLASSES],
    );
    let weight = b.float(&Stream::new(28).uniforms(CLASSES, 0.2, 2.0), [CLASSES]);
    let options = CrossEntropyOptions::new()
        .with_weight(weight)
        .with_label_smoothing(0.2);
    agree(
        "cross_entropy_with_probs weight+smoothing Mean",
        &logits,
        Some(&probs),
        |x, t| cross_entropy_with_probs(x, t.unwrap(), Reduction::Mean, &options),
        tolerance,
    );
    agree(
        "cross_entropy_with_probs_no_reduction",
        &logits,
        Some(&probs),
        |x, t| {
            cross_entropy_with_probs_no_reduction::<2, 1>(
                x,
                t.unwrap(),
                &CrossEntropyOptions::new(),
            )
        },
        tolerance,
    );
    let [n, c, d1, d2] = K_DIM;
    let count = n * c * d1 * d2;
    let k_logits = b.float(&Stream::new(29).normals(count, 2.0), K_DIM);
    let k_probs = b.float(&Stream::new(30).uniforms(count, 0.0, 0.4), K_DIM);
    agree(
        "cross_entropy_with_probs K-dim Sum",
        &k_logits,
        Some(&k_probs),
        |x, t| cross_entropy_with_probs(x, t.unwrap(), Reduction::Sum, &CrossEntropyOptions::new()),
        tolerance,
    );
}

fn binary_losses(b: &TestBackend, tolerance: Tolerance) {
    let count = ROWS * CLASSES;
    let shape = [ROWS, CLASSES];
    let logits = b.float(&Stream::new(31).normals(count, 6.0), shape);
    let targets = b.float(&Stream::new(32).uniforms(count, 0.0, 1.0), shape);
    let probs = b.float(&Stream::new(33).uniforms(count, 0.001, 0.999), shape);
    let per_class = b.float(&Stream::new(34).uniforms(CLASSES, 0.5, 3.0), [CLASSES]);
    let per_row = b.float(&Stream::new(35).uniforms(ROWS, 0.5, 3.0), [ROWS, 1]);
    let full = b.float(&Stream::new(36).uniforms(count, 0.5, 3.0), shape);
    let logit_options = [
        ("plain", BceWithLogitsOptions::new()),
        (
            "weight [C] + pos_weight [C]",
            BceWithLogitsOptions::new()
                .with_weight(per_class.clone())
                .with_pos_weight(per_class.clone()),
        ),
        (
            "weight [N, 1] + pos_weight full",
            BceWithLogitsOptions::new()
                .with_weight(per_row.clone())
                .with_pos_weight(full.clone()),
        ),
    ];
    for (label, options) in &logit_options {
        for reduction in [Reduction::Mean, Reduction::Sum] {
            agree(
                &format!("bce_with_logits {label} {reduction:?}"),
                &logits,
                Some(&targets),
                |x, t| binary_cross_entropy_with_logits(x, t.unwrap(), reduction, options),
                tolerance,
            );
        }
        agree(
            &format!("bce_with_logits_no_reduction {label}"),
            &logits,
            Some(&targets),
            |x, t| binary_cross_entropy_with_logits_no_reduction(x, t.unwrap(), options),
            tolerance,
        );
    }
    let bce_options = [
        ("plain", BceOptions::new()),
        ("weight [N, 1]", BceOptions::new().with_weight(per_row)),
        ("weight [C]", BceOptions::new().with_weight(per_class)),
    ];
    for (label, options) in &bce_options {
        agree(
            &format!("bce {label} Mean"),
            &probs,
            Some(&targets),
            |x, t| binary_cross_entropy(x, t.unwrap(), Reduction::Mean, options),
            tolerance,
        );
        agree(
            &format!("bce_no_reduction {label}"),
            &probs,
            Some(&targets),
            |x, t| binary_cross_entropy_no_reduction(x, t.unwrap(), options),
            tolerance,
        );
    }
}

/// All cases on `backend` (plain and with autodiff) with the given tolerance.
fn all(backend: TestBackend, tolerance: Tolerance) {
    // Two paths to compare only where the fused kernels exist.
    assert!(burn_xent::fused_kernels_available(&backend.device));
    for b in [backend.clone().plain(), backend.autodiff()] {
        println!("paths_agree on {}", b.label());
        class_index_losses(&b, tolerance);
        probability_target_losses(&b, tolerance);
        binary_losses(&b, tolerance);
    }
}

/// f32 round-off. Both paths are within a few ulps of an f64 reference (`gradient_accuracy`);
/// here the largest difference between them is 6 units of `f32::EPSILON` × scale (the input
/// gradient of `cross_entropy_with_probs_no_reduction`, where the target and softmax terms
/// cancel), and 16 leaves room for other CPUs' and GPUs' `exp`. Before the composite path
/// stopped differentiating through Burn's `log` (`src/workarounds.rs`), its cross-entropy
/// gradients were 54 to 332 units off the fused ones on ndarray.
const F32: Tolerance = Tolerance {
    ulps: 16.0,
    epsilon: f32::EPSILON as f64,
};

/// f64: the fused kernels' `exp` and `log1p` are within 2 ulp of the standard library's; the
/// largest difference measured is 4.4 units of `f64::EPSILON` × scale.
const F64: Tolerance = Tolerance {
    ulps: 16.0,
    epsilon: f64::EPSILON,
};

#[test]
fn ndarray_f32() {
    all(TestBackend::ndarray_f32(), F32);
}

#[test]
fn ndarray_f64() {
    all(TestBackend::ndarray_f64(), F64);
}

#[test]
fn flex_f32() {
    all(TestBackend::flex_f32(), F32);
}

#[test]
fn flex_f64() {
    all(TestBackend::flex_f64(), F64);
}

#[test]
fn wgpu() {
    let backend = TestBackend::wgpu();
    if backend.ready("paths_agree") {
        all(backend, F32);
    }
}
