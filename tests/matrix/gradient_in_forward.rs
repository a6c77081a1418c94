//! The fused forward computes the input's gradient for a unit upstream gradient, and on the
//! CPU writes it over the logits when nothing else holds them (a fresh intermediate, as a
//! linear layer's output is); the backward only scales it. These checks give each loss an
//! intermediate input (`x * a` of a leaf `x`, so its storage is the loss's alone) and compare
//! the loss and `x`'s gradient with the composite path on the same backend, in the ways a
//! training step can hold logits:
//!
//! - every loss, option family and reduction, the input owned by the loss alone (in place);
//! - the logits shared with another live tensor, which must keep its values;
//! - the logits feeding two losses, and the same loss twice before one backward (upstream
//!   gradients other than 1, so the backward's scaling runs);
//! - no backward at all: the loss is right and the leaf untouched.

use burn::tensor::{Int, Tensor};
use burn_xent::{
    BceOptions, BceWithLogitsOptions, CrossEntropyOptions, LossPath, NllLossOptions, Reduction,
    binary_cross_entropy, binary_cross_entropy_with_logits_no_reduction, cross_entropy,
    cross_entropy_no_reduction, cross_entropy_with_probs, nll_loss, with_loss_path,
};

use crate::common::{TestBackend, assert_close, values};
use crate::support::{
    backward_projected, class_probabilities, class_weight, classes, gradient, k_dim, logits,
    probabilities, soft_targets,
};

/// The loss values and the leaf's gradient.
struct Run {
    loss: Vec<f64>,
    grad: Vec<f64>,
}

/// `loss` of `x * scale` for the leaf `x`, on `path`, back-propagating a fixed projection.
fn run<const D: usize, const DO: usize>(
    path: LossPath,
    x: &Tensor<D>,
    scale: f64,
    loss: &dyn Fn(Tensor<D>) -> Tensor<DO>,
) -> Run {
    let x = x.clone().detach().require_grad();
    let output = with_loss_path(path, || loss(x.clone().mul_scalar(scale)));
    let grads = backward_projected(&output, 5);
    Run {
        grad: gradient(&x, &grads, &format!("{path:?} path")),
        loss: values(output),
    }
}

/// The matrix's path against the composite path, for `loss` of an intermediate `x * scale`.
#[track_caller]
fn agrees<const D: usize, const DO: usize>(
    what: &str,
    x: &Tensor<D>,
    scale: f64,
    loss: &dyn Fn(Tensor<D>) -> Tensor<DO>,
) {
    let got = run(burn_xent::loss_path(), x, scale, loss);
    let want = run(LossPath::Composite, x, scale, loss);
    assert_close(&got.loss, &want.loss, 1e-5, 1e-6, &format!("{what}: loss"));
    assert_close(
        &got.grad,
        &want.grad,
        1e-4,
        1e-6,
        &format!("{what}: gradient"),
    );
}

fn every_loss_on_an_input_it_owns(b: &TestBackend) {
    let x = logits(b);
    let t = classes(b);
    let weighted = || {
        CrossEntropyOptions::new()
            .with_weight(class_weight(b))
            .with_ignore_index(1)
            .with_label_smoothing(0.1)
    };
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let plain = |z| cross_entropy(z, t.clone(), reduction, &CrossEntropyOptions::new());
        agrees(&format!("cross_entropy {reduction:?}"), &x, 2.0, &plain);
        let options = weighted();
        let with_options = |z| cross_entropy(z, t.clone(), reduction, &options);
        agrees(
            &format!("cross_entropy options {reduction:?}"),
            &x,
            2.0,
            &with_options,
        );
        let options = NllLossOptions::new().with_weight(class_weight(b));
        let nll = |z: Tensor<2>| nll_loss(z, t.clone(), reduction, &options);
        agrees(&format!("nll_loss {reduction:?}"), &x, 2.0, &nll);
        let probs = class_probabilities(b);
        let options = CrossEntropyOptions::new().with_weight(class_weight(b));
        let soft = |z| cross_entropy_with_probs(z, probs.clone(), reduction, &options);
        agrees(
            &format!("cross_entropy_with_probs {reduction:?}"),
            &x,
            2.0,
            &soft,
        );
        let p = probabilities(b);
        let y = soft_targets(b);
        let bce = |z| binary_cross_entropy(z, y.clone(), reduction, &BceOptions::new());
        agrees(
            &format!("binary_cross_entropy {reduction:?}"),
            &p,
            0.9,
            &bce,
        );
    }
    let options = weighted();
    let per_element = |z| cross_entropy_no_reduction(z, t.clone(), &options);
    agrees("cross_entropy none", &x, 2.0, &per_element);
    let (k, kt) = k_dim(b);
    let k_dim = |z| cross_entropy_no_reduction(z, kt.clone(), &options);
    agrees("cross_entropy K-dim none", &k, 2.0, &k_dim);
    let k_mean = |z| cross_entropy(z, kt.clone(), Reduction::Mean, &options);
    agrees("cross_entropy K-dim mean", &k, 2.0, &k_mean);
    let y = soft_targets(b);
    let options = BceWithLogitsOptions::new().with_pos_weight(class_weight(b));
    let with_logits = |z| binary_cross_entropy_with_logits_no_reduction(z, y.clone(), &options);
    agrees(
        "binary_cross_entropy_with_logits none",
        &x,
        2.0,
        &with_logits,
    );
}

/// Cross-entropy, mean, with the default options.
fn mean(z: Tensor<2>, t: &Tensor<1, Int>) -> Tensor<1> {
    cross_entropy(z, t.clone(), Reduction::Mean, &CrossEntropyOptions::new())
}

fn shared_logits_keep_their_values(b: &TestBackend) {
    let t = classes(b);
    let shared = |z: Tensor<2>| {
        let kept = z.clone();
        let before = values(kept.clone());
        let loss = mean(z, &t);
        assert_eq!(values(kept), before, "a tensor sharing the logits changed");
        loss
    };
    agrees("shared logits", &logits(b), 2.0, &shared);
}

fn logits_feeding_two_losses(b: &TestBackend) {
    let t = classes(b);
    let other = Tensor::<1, Int>::from_ints([2, 2, 0, 1], &b.device);
    let two = |z: Tensor<2>| mean(z.clone(), &t).mul_scalar(0.5) + mean(z, &other);
    agrees("two losses", &logits(b), 2.0, &two);
}

fn the_same_loss_twice_before_one_backward(b: &TestBackend) {
    let t = classes(b);
    let twice = |z: Tensor<2>| mean(z.clone(), &t).mul_scalar(1.5) + mean(z, &t).mul_scalar(-0.25);
    agrees("the same loss twice", &logits(b), 2.0, &twice);
}

fn no_backward_at_all(b: &TestBackend) {
    let t = classes(b);
    let x = logits(b).require_grad();
    let before = values(x.clone());
    let got = values(mean(x.clone().mul_scalar(2.0), &t));
    let want = with_loss_path(LossPath::Composite, || {
        values(mean(x.clone().mul_scalar(2.0), &t))
    });
    assert_close(&got, &want, 1e-5, 1e-6, "loss without a backward");
    assert_eq!(values(x), before, "the leaf changed");
}

crate::matrix_tests!(autodiff:
    every_loss_on_an_input_it_owns,
    shared_logits_keep_their_values,
    logits_feeding_two_losses,
    the_same_loss_twice_before_one_backward,
    no_backward_at_all,
);
