//! `burn_xent::gradcheck` on itself: every loss, every reduction and the main options, on
//! every autodiff entry of the matrix (ndarray and Flex in f32 and f64, wgpu in f32; PyTorch's
//! settings in f64, the f32 preset in f32); plus planted wrong gradients that the checker must
//! catch and locate, and plain (non-autodiff) inputs, which it checks through autodiff copies.
//!
//! Since Burn 0.22, f64 is a dtype chosen when a tensor is created, so the f64 checks run in
//! the same process as the f32 ones (under Burn 0.21, `NdArray<f32>` and `NdArray<f64>`
//! shared one device whose default dtype the first tensor fixed, and the f64 checks ran in
//! child processes).
//!
//! Shapes are few on purpose (wgpu compiles kernels per shape): `[6]` for rank-1 BCE,
//! `[4, 3]` for 2-D inputs (class weights `[1, 3]`), `[2, 3, 2]` for K-dimensional ones.
//! BCE probabilities stay in `[0.05, 0.95]`, away from its clamps at 0 and 1.

mod common;

use burn::tensor::{DType, Int, Tensor};
use burn_xent::gradcheck::{
    GradcheckConfig, GradcheckReport, Projection, assert_gradcheck, gradcheck,
};
use burn_xent::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, NllLossOptions, Reduction,
    binary_cross_entropy, binary_cross_entropy_no_reduction, binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_no_reduction, cross_entropy, cross_entropy_no_reduction,
    cross_entropy_with_probs, cross_entropy_with_probs_no_reduction, nll_loss,
    nll_loss_no_reduction,
};
use common::{Stream, TestBackend, float_as, normalised_over_classes};

const REDUCTIONS: [Reduction; 2] = [Reduction::Mean, Reduction::Sum];

/// The settings for the inputs' dtype: PyTorch's defaults in f64, the f32 preset otherwise.
fn config_for<const D: usize>(inputs: &[Tensor<D>]) -> GradcheckConfig {
    GradcheckConfig::for_dtype(inputs[0].dtype())
}

/// Gradchecks `f` at `inputs` with every element checked, printing the report; fails the
/// test with the report when an element fails.
#[track_caller]
fn check<const D: usize, const DO: usize>(
    what: &str,
    inputs: &[Tensor<D>],
    f: impl Fn(&[Tensor<D>]) -> Tensor<DO>,
) -> GradcheckReport {
    let dtype = inputs[0].dtype();
    for input in inputs {
        assert_eq!(input.dtype(), dtype, "{what}: input dtype");
    }
    let report = gradcheck(f, inputs, &config_for(inputs));
    println!("{what}: {report}");
    assert!(report.passed, "{what}: {report}");
    let elements: usize = inputs.iter().map(|t| t.shape().num_elements()).sum();
    assert_eq!(report.checked, elements, "{what}: {report}");
    assert_eq!(report.inputs.len(), inputs.len(), "{what}: {report}");
    report
}

/// [`check`] for checks that include the gradient of a weight: the fused kernels treat
/// weights as constants, so a weight that wants a gradient sends the loss down the composite
/// path, and under `LossPath::Fused` (which refuses to fall back) these checks run on the
/// composite path, saying so.
#[track_caller]
fn check_weight_gradient<const D: usize, const DO: usize>(
    what: &str,
    inputs: &[Tensor<D>],
    f: impl Fn(&[Tensor<D>]) -> Tensor<DO>,
) -> GradcheckReport {
    if burn_xent::loss_path() == burn_xent::LossPath::Fused {
        println!("{what}: weight gradient: composite path (the fused kernels have none)");
        return burn_xent::with_loss_path(burn_xent::LossPath::Composite, || {
            check(what, inputs, f)
        });
    }
    check(what, inputs, f)
}

/// Which inputs a check differentiates.
#[derive(Clone, Copy, PartialEq)]
enum Wrt {
    /// The loss's input and float target only: [`check`].
    Inputs,
    /// A weight too: [`check_weight_gradient`].
    Weight,
}

/// Checks one loss in every reduction: `reduced(inputs, reduction)` for `mean` and `sum` (as
/// `<name> Mean`, `<name> Sum`) and `none(inputs)` (as `<name> none`).
#[track_caller]
fn check_reductions<const D: usize, const DO: usize>(
    name: &str,
    inputs: &[Tensor<D>],
    wrt: Wrt,
    reduced: impl Fn(&[Tensor<D>], Reduction) -> Tensor<1>,
    none: impl Fn(&[Tensor<D>]) -> Tensor<DO>,
) {
    for reduction in REDUCTIONS {
        let what = format!("{name} {reduction:?}");
        let f = |x: &[Tensor<D>]| reduced(x, reduction);
        match wrt {
            Wrt::Inputs => check(&what, inputs, f),
            Wrt::Weight => check_weight_gradient(&what, inputs, f),
        };
    }
    let what = format!("{name} none");
    match wrt {
        Wrt::Inputs => check(&what, inputs, &none),
        Wrt::Weight => check_weight_gradient(&what, inputs, &none),
    };
}

/// Class probabilities of shape `[N, C]` or `[N, C, d]` from positive `raw` values.
fn probabilities<const D: usize>(b: &TestBackend, raw: &[f64], shape: [usize; D]) -> Tensor<D> {
    b.float(&normalised_over_classes(raw, &shape), shape)
}

// ---------------------------------------------------------------- BCE on probabilities

fn bce_reductions(b: &TestBackend) {
    let mut s = Stream::new(11);
    let p = b.float(&s.uniforms(6, 0.05, 0.95), [6]);
    let t = b.float(&s.uniforms(6, 0.0, 1.0), [6]);
    let opts = BceOptions::new();
    check_reductions(
        "bce",
        &[p, t],
        Wrt::Inputs,
        |x, reduction| binary_cross_entropy(x[0].clone(), x[1].clone(), reduction, &opts),
        |x| binary_cross_entropy_no_reduction(x[0].clone(), x[1].clone(), &opts),
    );
}

fn bce_weight(b: &TestBackend) {
    let mut s = Stream::new(12);
    let p = b.float(&s.uniforms(12, 0.05, 0.95), [4, 3]);
    let t = b.float(&s.uniforms(12, 0.0, 1.0), [4, 3]);
    // The weight broadcasts from [1, 3]; its gradient is checked too.
    let w = b.float(&s.uniforms(3, 0.5, 2.0), [1, 3]);
    let opts = |x: &[Tensor<2>]| BceOptions::new().with_weight(x[2].clone());
    check_reductions(
        "bce weight",
        &[p, t, w],
        Wrt::Weight,
        |x, reduction| binary_cross_entropy(x[0].clone(), x[1].clone(), reduction, &opts(x)),
        |x| binary_cross_entropy_no_reduction(x[0].clone(), x[1].clone(), &opts(x)),
    );
}

// ---------------------------------------------------------------- BCE on logits

fn bce_with_logits_reductions(b: &TestBackend) {
    let mut s = Stream::new(21);
    let x = b.float(&s.normals(6, 1.5), [6]);
    let t = b.float(&s.uniforms(6, 0.0, 1.0), [6]);
    let opts = BceWithLogitsOptions::new();
    check_reductions(
        "bce_with_logits",
        &[x, t],
        Wrt::Inputs,
        |x, reduction| {
            binary_cross_entropy_with_logits(x[0].clone(), x[1].clone(), reduction, &opts)
        },
        |x| binary_cross_entropy_with_logits_no_reduction(x[0].clone(), x[1].clone(), &opts),
    );
}

fn bce_with_logits_weights(b: &TestBackend) {
    let mut s = Stream::new(22);
    let x = b.float(&s.normals(12, 1.5), [4, 3]);
    let t = b.float(&s.uniforms(12, 0.0, 1.0), [4, 3]);
    let w = b.float(&s.uniforms(12, 0.5, 2.0), [4, 3]);
    let pw = b.float(&s.uniforms(3, 0.5, 3.0), [1, 3]);
    // Gradients with respect to the logits, the target, the weight and the pos_weight.
    let opts = |x: &[Tensor<2>]| {
        BceWithLogitsOptions::new()
            .with_weight(x[2].clone())
            .with_pos_weight(x[3].clone())
    };
    check_reductions(
        "bce_with_logits weights",
        &[x, t, w, pw],
        Wrt::Weight,
        |x, reduction| {
            binary_cross_entropy_with_logits(x[0].clone(), x[1].clone(), reduction, &opts(x))
        },
        |x| binary_cross_entropy_with_logits_no_reduction(x[0].clone(), x[1].clone(), &opts(x)),
    );
}

// ---------------------------------------------------------------- cross-entropy, class indices

/// `cross_entropy` of `[N, C]` logits `x` with class indices `target` and constant options,
/// with respect to `x`, in every reduction.
fn check_cross_entropy(
    name: &str,
    x: Tensor<2>,
    target: Tensor<1, Int>,
    opts: CrossEntropyOptions,
) {
    check_reductions(
        name,
        &[x],
        Wrt::Inputs,
        |x, reduction| cross_entropy(x[0].clone(), target.clone(), reduction, &opts),
        |x| cross_entropy_no_reduction(x[0].clone(), target.clone(), &opts),
    );
}

fn cross_entropy_reductions(b: &TestBackend) {
    let mut s = Stream::new(31);
    let x = b.float(&s.normals(12, 1.5), [4, 3]);
    let target = b.int(&s.classes(4, 3), [4]);
    check_cross_entropy("cross_entropy", x, target, CrossEntropyOptions::new());
}

fn cross_entropy_options(b: &TestBackend) {
    let mut s = Stream::new(32);
    let x = b.float(&s.normals(12, 1.5), [4, 3]);
    // Class weight as [1, 3], reshaped to [3] inside: its gradient is checked too.
    let w = b.float(&s.uniforms(3, 0.5, 2.0), [1, 3]);

    // Weight, ignore_index 1 (rows 1 and 3 ignored), label smoothing.
    let target = b.int(&[2, 1, 0, 1], [4]);
    let opts = |w: &Tensor<2>| {
        CrossEntropyOptions::new()
            .with_weight(w.clone().reshape([3]))
            .with_ignore_index(1)
            .with_label_smoothing(0.1)
    };
    check_reductions(
        "cross_entropy options",
        &[x.clone(), w],
        Wrt::Weight,
        |x, reduction| cross_entropy(x[0].clone(), target.clone(), reduction, &opts(&x[1])),
        |x| cross_entropy_no_reduction(x[0].clone(), target.clone(), &opts(&x[1])),
    );

    // The default ignore_index -100 in the target, smoothing 0.2, no weight.
    check_cross_entropy(
        "cross_entropy ignored -100",
        x,
        b.int(&[0, -100, 2, 1], [4]),
        CrossEntropyOptions::new().with_label_smoothing(0.2),
    );
}

// ---------------------------------------------------------------- cross-entropy, probabilities

fn cross_entropy_probs(b: &TestBackend) {
    let mut s = Stream::new(41);
    let x = b.float(&s.normals(12, 1.5), [4, 3]);
    let q = probabilities(b, &s.uniforms(12, 0.05, 1.0), [4, 3]);
    let w = b.float(&s.uniforms(3, 0.5, 2.0), [1, 3]);

    // Gradients with respect to the logits and the soft target.
    let plain = CrossEntropyOptions::new();
    check_reductions(
        "cross_entropy_with_probs",
        &[x.clone(), q.clone()],
        Wrt::Inputs,
        |x, reduction| cross_entropy_with_probs(x[0].clone(), x[1].clone(), reduction, &plain),
        |x| cross_entropy_with_probs_no_reduction::<2, 1>(x[0].clone(), x[1].clone(), &plain),
    );

    // Weight and label smoothing; the weight's gradient is checked too.
    let opts = |w: &Tensor<2>| {
        CrossEntropyOptions::new()
            .with_weight(w.clone().reshape([3]))
            .with_label_smoothing(0.1)
    };
    check_reductions(
        "cross_entropy_with_probs options",
        &[x, q, w],
        Wrt::Weight,
        |x, reduction| {
            cross_entropy_with_probs(x[0].clone(), x[1].clone(), reduction, &opts(&x[2]))
        },
        |x| cross_entropy_with_probs_no_reduction::<2, 1>(x[0].clone(), x[1].clone(), &opts(&x[2])),
    );
}

// ---------------------------------------------------------------- K-dimensional inputs

fn cross_entropy_k_dim(b: &TestBackend) {
    let mut s = Stream::new(51);
    let x = b.float(&s.normals(12, 1.5), [2, 3, 2]);
    let q = probabilities(b, &s.uniforms(12, 0.05, 1.0), [2, 3, 2]);
    let w = b.float(&s.uniforms(3, 0.5, 2.0), [1, 1, 3]);

    // Class indices with weight, one ignored element and smoothing.
    let target = b.int(&[0, 2, -100, 1], [2, 2]);
    let opts = |w: &Tensor<3>| {
        CrossEntropyOptions::new()
            .with_weight(w.clone().reshape([3]))
            .with_label_smoothing(0.1)
    };
    check_reductions(
        "cross_entropy k-dim",
        &[x.clone(), w],
        Wrt::Weight,
        |x, reduction| cross_entropy(x[0].clone(), target.clone(), reduction, &opts(&x[1])),
        |x| cross_entropy_no_reduction(x[0].clone(), target.clone(), &opts(&x[1])),
    );

    // Probabilities, with respect to logits and target, with smoothing.
    let opts = CrossEntropyOptions::new().with_label_smoothing(0.1);
    check_reductions(
        "cross_entropy_with_probs k-dim",
        &[x, q],
        Wrt::Inputs,
        |x, reduction| cross_entropy_with_probs(x[0].clone(), x[1].clone(), reduction, &opts),
        |x| cross_entropy_with_probs_no_reduction::<3, 2>(x[0].clone(), x[1].clone(), &opts),
    );
}

// ---------------------------------------------------------------- NLL

fn nll_loss_reductions(b: &TestBackend) {
    let mut s = Stream::new(61);
    let x = b.float(&s.normals(12, 1.5), [4, 3]);
    let w = b.float(&s.uniforms(3, 0.5, 2.0), [1, 3]);
    let target = b.int(&s.classes(4, 3), [4]);
    let plain = NllLossOptions::new();
    check_reductions(
        "nll_loss",
        std::slice::from_ref(&x),
        Wrt::Inputs,
        |x, reduction| nll_loss(x[0].clone(), target.clone(), reduction, &plain),
        |x| nll_loss_no_reduction(x[0].clone(), target.clone(), &plain),
    );

    // Weight (gradient checked) and ignore_index 0.
    let target = b.int(&[0, 2, 1, 0], [4]);
    let opts = |w: &Tensor<2>| {
        NllLossOptions::new()
            .with_weight(w.clone().reshape([3]))
            .with_ignore_index(0)
    };
    check_reductions(
        "nll_loss options",
        &[x, w],
        Wrt::Weight,
        |x, reduction| nll_loss(x[0].clone(), target.clone(), reduction, &opts(&x[1])),
        |x| nll_loss_no_reduction(x[0].clone(), target.clone(), &opts(&x[1])),
    );
}

fn nll_loss_k_dim(b: &TestBackend) {
    let mut s = Stream::new(62);
    let x = b.float(&s.normals(12, 1.5), [2, 3, 2]);
    let w = b.float(&s.uniforms(3, 0.5, 2.0), [1, 1, 3]);
    let target = b.int(&[1, -100, 2, 0], [2, 2]);
    let opts = |w: &Tensor<3>| NllLossOptions::new().with_weight(w.clone().reshape([3]));
    check_reductions(
        "nll_loss k-dim",
        &[x, w],
        Wrt::Weight,
        |x, reduction| nll_loss(x[0].clone(), target.clone(), reduction, &opts(&x[1])),
        |x| nll_loss_no_reduction(x[0].clone(), target.clone(), &opts(&x[1])),
    );
}

// ---------------------------------------------------------------- the checker itself

/// `[4, 3]` inputs with element `[1, 2]` (flat 5) set to 1.25 and `[2, 0]` (flat 6) to -1.5,
/// so that the planted errors there are large.
fn planted_input(seed: u64, b: &TestBackend) -> Tensor<2> {
    let mut values = Stream::new(seed).normals(12, 1.0);
    values[5] = 1.25;
    values[6] = -1.5;
    b.float(&values, [4, 3])
}

/// A float mask of `[4, 3]` with a single 1 at flat position `at`, on `like`'s device in its
/// dtype.
fn one_hot(at: usize, like: &Tensor<2>) -> Tensor<2> {
    let mut values = vec![0.0; 12];
    values[at] = 1.0;
    float_as(values, [4, 3], &like.device(), like.dtype())
}

/// `Σ x²`, except that element `[1, 2]` of one factor is detached: its gradient is `x`
/// instead of `2x` there, right everywhere else.
fn planted_square(x: &[Tensor<2>]) -> Tensor<1> {
    let x = x[0].clone();
    let mask = one_hot(5, &x);
    let keep = mask.clone().neg() + 1.0;
    let mixed = x.clone() * keep + x.clone().detach() * mask;
    (x * mixed).sum()
}

fn planted_detach_is_caught(b: &TestBackend) {
    let x = planted_input(71, b);
    let inputs = [x];
    let report = gradcheck(planted_square, &inputs, &config_for(&inputs));
    println!("{report}");
    assert!(!report.passed, "{report}");
    assert_eq!(report.checked, 12);
    assert_eq!(report.failed, 1, "{report}");
    let worst = report.worst.as_ref().expect("a worst element");
    assert_eq!((worst.input, worst.index.as_slice()), (0, &[1, 2][..]));
    assert_eq!(worst.flat_index, 5);
    // Half the true derivative: analytic p x, numeric 2 p x, with p the projection weight.
    assert!(
        (worst.analytic / worst.numeric - 0.5).abs() < 1e-2,
        "{report}"
    );
    assert!((1.2..3.8).contains(&worst.numeric.abs()), "{report}");
    assert!(!worst.passed() && worst.ratio() > 1.0);
    let text = report.to_string();
    assert!(text.starts_with("gradcheck FAILED: 1 of 12"), "{text}");
    assert!(text.contains("input 0 element [1, 2]"), "{text}");
}

fn planted_detach_in_second_input_is_caught(b: &TestBackend) {
    let x = planted_input(72, b);
    let t = b.float(&Stream::new(73).uniforms(12, 0.0, 1.0), [4, 3]);
    // The target's element [2, 0] (flat 6) is detached: its gradient -x there is lost.
    let inputs = [x, t];
    let f = |x: &[Tensor<2>]| {
        let mask = one_hot(6, &x[1]);
        let keep = mask.clone().neg() + 1.0;
        let t = x[1].clone() * keep + x[1].clone().detach() * mask;
        let opts = BceWithLogitsOptions::new();
        binary_cross_entropy_with_logits(x[0].clone(), t, Reduction::Sum, &opts)
    };
    let report = gradcheck(f, &inputs, &config_for(&inputs));
    println!("{report}");
    assert!(!report.passed, "{report}");
    assert_eq!((report.checked, report.failed), (24, 1), "{report}");
    let worst = report.worst.as_ref().expect("a worst element");
    assert_eq!((worst.input, worst.index.as_slice()), (1, &[2, 0][..]));
    assert_eq!(worst.analytic, 0.0);
    assert_eq!(report.inputs[0].failed, 0);
    assert_eq!(report.inputs[1].failed, 1);
}

fn correct_function_passes(b: &TestBackend) {
    let x = planted_input(74, b);
    let inputs = [x];
    // A non-linear [4, 3] -> [4] map, checked through the random projection.
    let report = check("sin(x) * x summed over rows", &inputs, |x| {
        (x[0].clone().sin() * x[0].clone()).sum_dim(1).reshape([4])
    });
    assert_eq!((report.checked, report.failed), (12, 0));
    assert_eq!(report.output_shape, vec![4]);
    let worst = report.worst.expect("a worst element");
    assert!(worst.passed() && worst.ratio() <= 1.0);
    assert!(report.inputs[0].worst.is_some());
}

fn assert_gradcheck_panics_with_the_report(b: &TestBackend) {
    let inputs = [planted_input(75, b)];
    let config = config_for(&inputs);
    common::assert_panics_with(
        || assert_gradcheck(planted_square, &inputs, &config),
        &[
            "gradcheck FAILED",
            "input 0 element [1, 2]",
            "analytic",
            "numeric",
        ],
    );
    // The correct square passes and returns its report.
    let report = assert_gradcheck(|x| (x[0].clone() * x[0].clone()).sum(), &inputs, &config);
    assert!(report.passed && report.checked == 12);
}

fn sum_projection_misses_what_random_catches(b: &TestBackend) {
    // y = x + (x[2] - x[2].detach()) v with Σ v = 0: the value is x, but the gradient of
    // x[2] gains p · v, which vanishes for the plain sum (p = 1) and not for a random p.
    let x = b.float(&Stream::new(76).normals(6, 1.0), [6]);
    let v = b.float(&[1.0, -1.0, 0.0, 0.0, 0.0, 0.0], [6]);
    let f = |x: &[Tensor<1>]| {
        let x2 = x[0].clone().narrow(0, 2, 1);
        x[0].clone() + (x2.clone() - x2.detach()) * v.clone()
    };
    let inputs = [x];
    let base = config_for(&inputs);
    let summed = gradcheck(f, &inputs, &base.clone().with_projection(Projection::Sum));
    assert!(summed.passed, "{summed}");
    let p = Projection::default().weights(6);
    assert_ne!(
        p[0], p[1],
        "the default projection must tell elements 0 and 1 apart"
    );
    let random = gradcheck(f, &inputs, &base);
    println!("{random}");
    assert!(!random.passed, "{random}");
    let worst = random.worst.as_ref().expect("a worst element");
    assert_eq!((worst.input, worst.index.as_slice()), (0, &[2][..]));
    assert!(
        (worst.analytic - worst.numeric - (p[0] - p[1])).abs() < 1e-2,
        "{random}"
    );
}

fn max_elements_caps_the_check(b: &TestBackend) {
    let x = planted_input(77, b);
    let w = b.float(&[0.5, 1.0, 2.0], [1, 3]);
    let inputs = [x, w];
    let config = config_for(&inputs).with_max_elements_per_input(Some(5));
    let report = gradcheck(
        |x| (x[0].clone().tanh() * x[1].clone()).sum(),
        &inputs,
        &config,
    );
    assert!(report.passed, "{report}");
    assert_eq!(report.checked, 5 + 3, "{report}");
    assert_eq!(report.inputs[0].checked, 5);
    assert_eq!(report.inputs[1].checked, 3);
    // A capped check can miss the planted element ([1, 2] is flat 5; 5 of 12 checks 0, 2, 4, 7, 9).
    let capped = gradcheck(planted_square, &inputs[..1], &config);
    assert!(capped.passed, "{capped}");
}

/// Inputs on a plain device are checked too: `f` receives autodiff copies of them.
fn plain_inputs_are_checked_through_autodiff(b: &TestBackend) {
    let plain = b.clone().plain();
    let mut s = Stream::new(81);
    let x = plain.float(&s.normals(12, 1.5), [4, 3]);
    let target = plain.int(&s.classes(4, 3), [4]);
    assert!(!x.is_autodiff());
    let opts = CrossEntropyOptions::new();
    let report = check("cross_entropy of plain inputs", &[x], |x| {
        assert!(x[0].is_autodiff(), "gradcheck hands f autodiff tensors");
        cross_entropy(x[0].clone(), target.clone(), Reduction::Sum, &opts)
    });
    assert_eq!(report.inputs[0].dtype, b.dtype);
}

// Every check on every autodiff entry of the matrix, on both loss paths: PyTorch's settings
// (step 1e-6, atol 1e-5, rtol 1e-3) in f64, the f32 preset in f32 (`config_for`).
matrix_tests!(autodiff:
    bce_reductions,
    bce_weight,
    bce_with_logits_reductions,
    bce_with_logits_weights,
    cross_entropy_reductions,
    cross_entropy_options,
    cross_entropy_probs,
    cross_entropy_k_dim,
    nll_loss_reductions,
    nll_loss_k_dim,
    planted_detach_is_caught,
    planted_detach_in_second_input_is_caught,
    sum_projection_misses_what_random_catches,
    correct_function_passes,
    assert_gradcheck_panics_with_the_report,
    max_elements_caps_the_check,
    plain_inputs_are_checked_through_autodiff,
);

#[test]
fn f64_uses_pytorch_defaults() {
    for b in [TestBackend::ndarray_f64(), TestBackend::flex_f64()] {
        let x = b.autodiff().float(&[0.5, -1.0], [2]);
        assert_eq!(x.dtype(), DType::F64);
        let config = config_for(&[x]);
        assert_eq!(config, GradcheckConfig::new());
        assert_eq!((config.step, config.atol, config.rtol), (1e-6, 1e-5, 1e-3));
    }
}

// ---------------------------------------------------------------- bad settings

#[test]
fn bad_settings_panic_with_a_message() {
    let b = TestBackend::ndarray_f32().autodiff();
    let x = b.float(&[1.0, 2.0], [2]);
    let square = |x: &[Tensor<1>]| x[0].clone().powi_scalar(2);
    let config = GradcheckConfig::f32();
    common::assert_panics_with(
        || gradcheck(square, &[], &config),
        &["gradcheck", "inputs", "at least one"],
    );
    common::assert_panics_with(
        || {
            gradcheck(
                square,
                std::slice::from_ref(&x),
                &config.clone().with_step(0.0),
            )
        },
        &["gradcheck", "step", "positive"],
    );
    common::assert_panics_with(
        || {
            gradcheck(
                square,
                std::slice::from_ref(&x),
                &config.clone().with_atol(-1.0),
            )
        },
        &["gradcheck", "atol"],
    );
    // 1e-9 is below f32's resolution at 1.0: the step vanishes.
    common::assert_panics_with(
        || gradcheck(square, &[x], &config.clone().with_step(1e-9)),
        &["gradcheck", "vanishes", "F32", "element [0]", "larger step"],
    );
}

#[test]
fn inputs_without_gradient_get_zero() {
    // The second input does not reach the output: autodiff gives it no gradient (`None`),
    // which is compared as 0 with a numeric derivative of 0.
    let b = TestBackend::ndarray_f32().autodiff();
    let x = b.float(&[0.5, -1.0, 2.0], [1, 3]);
    let unused = b.float(&[3.0, 4.0], [1, 2]);
    let inputs = [x, unused];
    let report = gradcheck(
        |x| x[0].clone().exp().sum(),
        &inputs,
        &GradcheckConfig::f32(),
    );
    assert!(report.passed, "{report}");
    assert_eq!(report.checked, 5);
    assert_eq!(report.inputs[1].worst.as_ref().unwrap().analytic, 0.0);
    assert_eq!(report.inputs[1].worst.as_ref().unwrap().numeric, 0.0);

    // A detached output reaches no input at all: there is no backward pass (Burn 0.22 refuses
    // one from an untracked tensor), no gradient, and the (wrong) zero is reported against the
    // numeric derivative exp(x).
    let report = gradcheck(
        |x| x[0].clone().detach().exp().sum(),
        &inputs[..1],
        &GradcheckConfig::f32(),
    );
    assert!(!report.passed, "{report}");
    assert_eq!(report.failed, 3, "{report}");
    assert_eq!(report.worst.as_ref().unwrap().index, vec![0, 2]);
}
