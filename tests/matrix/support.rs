//! Inputs and evaluations shared by the matrix tests.
//!
//! Every tensor is created on the test's [`TestBackend`]: its device (plain or autodiff) and
//! its float dtype. On a plain device an evaluation has the loss values only (no gradient can
//! be asked for); on an autodiff device it has the input gradient too, and Burn returning none
//! is a failure.

use burn::tensor::{Gradients, Int, Tensor};

use crate::common::{Stream, TestBackend, assert_close, float_as, normalised_over_classes, values};

/// The seed of the projection [`evaluate`] back-propagates.
const PROJECTION_SEED: u64 = 7;

/// The weights of the fixed projection of an output with `count` elements: uniform in
/// `[0.5, 1.5)` from `seed`.
pub fn projection_weights(seed: u64, count: usize) -> Vec<f64> {
    Stream::new(seed).uniforms(count, 0.5, 1.5)
}

/// The projection [`evaluate`] uses, for tests that derive an expected gradient from it.
pub fn projection(count: usize) -> Vec<f64> {
    projection_weights(PROJECTION_SEED, count)
}

/// Back-propagates `sum(output × projection)`, with the fixed projection of `seed` (in the
/// output's dtype): a per-element (`reduction: none`) output is then checked element by
/// element.
pub fn backward_projected<const D: usize>(output: &Tensor<D>, seed: u64) -> Gradients {
    let weights = projection_weights(seed, output.shape().num_elements());
    let projection = float_as::<D, f64>(weights, output.dims(), &output.device(), output.dtype());
    (output.clone() * projection).sum().backward()
}

/// The gradient of `leaf` in `grads`, as f64. Burn returning none is a failure, never read as
/// zeros: a test that expects a zero gradient must see one.
#[track_caller]
pub fn gradient<const D: usize>(leaf: &Tensor<D>, grads: &Gradients, what: &str) -> Vec<f64> {
    let Some(grad) = leaf.grad(grads) else {
        panic!("{what}: Burn returned no gradient");
    };
    assert_eq!(grad.dims(), leaf.dims(), "{what}: gradient shape");
    values(grad)
}

/// The loss values and the input gradient of `loss(input)`, as f64.
///
/// The gradient is that of `sum(loss * projection)` with a fixed pseudo-random projection
/// ([`projection`]), so a per-element (`reduction: none`) loss is checked element by element.
/// `grad` is `None` exactly on a plain (non-autodiff) device.
pub struct Evaluated {
    pub loss: Vec<f64>,
    pub grad: Option<Vec<f64>>,
}

/// What [`run`] did: the input as evaluated, the output, and the gradients when the device
/// is an autodiff one (`None` inside when the output is not part of a graph, as an empty
/// loss built from host data: Burn 0.22 refuses a backward pass from it).
type Ran<const D: usize, const DO: usize> = (Tensor<D>, Tensor<DO>, Option<Option<Gradients>>);

/// `loss(input)` with `input` made a gradient leaf (on an autodiff device), and the
/// projection back-propagated.
fn run<const D: usize, const DO: usize>(
    input: Tensor<D>,
    loss: impl FnOnce(Tensor<D>) -> Tensor<DO>,
) -> Ran<D, DO> {
    if !input.is_autodiff() {
        let output = loss(input.clone());
        return (input, output, None);
    }
    let input = input.detach().require_grad();
    let output = loss(input.clone());
    let grads = output
        .is_tracked()
        .then(|| backward_projected(&output, PROJECTION_SEED));
    (input, output, Some(grads))
}

/// Evaluates `loss` on `input` (made a gradient leaf on an autodiff device) and
/// back-propagates the projection. Fails when Burn returns no gradient for the input.
#[track_caller]
pub fn evaluate<const D: usize, const DO: usize>(
    input: Tensor<D>,
    loss: impl FnOnce(Tensor<D>) -> Tensor<DO>,
) -> Evaluated {
    let (input, output, grads) = run(input, loss);
    let grad = grads.map(|grads| match grads {
        Some(grads) => gradient(&input, &grads, "the loss's input"),
        None => panic!("the loss's input: Burn returned no gradient (the loss is untracked)"),
    });
    Evaluated {
        grad,
        loss: values(output),
    }
}

/// The loss values of `loss` on an input that Burn gives no gradient: an empty input, whose
/// loss burn-xent builds from host data (`src/workarounds.rs`). Fails when a gradient with
/// elements comes back (PyTorch's empty gradient would pass).
pub fn evaluate_without_gradient<const D: usize, const DO: usize>(
    input: Tensor<D>,
    loss: impl FnOnce(Tensor<D>) -> Tensor<DO>,
) -> Vec<f64> {
    let (input, output, grads) = run(input, loss);
    if let Some(grad) = grads.flatten().and_then(|grads| input.grad(&grads)) {
        assert_eq!(
            grad.shape().num_elements(),
            0,
            "an input without a gradient got {:?}",
            values(grad)
        );
    }
    values(output)
}

/// Asserts that two evaluations are identical bit for bit.
pub fn assert_bit_identical(got: &Evaluated, want: &Evaluated, context: &str) {
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&got.loss),
        bits(&want.loss),
        "{context}: loss differs: {:?} vs {:?}",
        got.loss,
        want.loss
    );
    assert_eq!(
        got.grad.as_deref().map(bits),
        want.grad.as_deref().map(bits),
        "{context}: gradient differs: {:?} vs {:?}",
        got.grad,
        want.grad
    );
}

/// Asserts two evaluations agree within f32 round-off (rtol 1e-4, atol 1e-5).
pub fn assert_evaluations_close(got: &Evaluated, want: &Evaluated, context: &str) {
    assert_close(
        &got.loss,
        &want.loss,
        1e-4,
        1e-5,
        &format!("{context} (loss)"),
    );
    match (&got.grad, &want.grad) {
        (Some(got), Some(want)) => {
            assert_close(got, want, 1e-4, 1e-5, &format!("{context} (gradient)"))
        }
        (None, None) => {}
        (got, want) => panic!(
            "{context}: a gradient on one side only: {} vs {}",
            got.is_some(),
            want.is_some()
        ),
    }
}

/// `x` with its elements from flat index `from` on replaced by `replacement`, in `x`'s dtype
/// on `x`'s device.
pub fn replaced<const D: usize>(x: &Tensor<D>, from: usize, replacement: &[f64]) -> Tensor<D> {
    let mut raw = values(x.clone());
    raw[from..from + replacement.len()].copy_from_slice(replacement);
    float_as(raw, x.dims(), &x.device(), x.dtype())
}

/// The shapes reused across the matrix (wgpu compiles kernels per shape).
pub const N: usize = 4;
pub const C: usize = 3;
pub const K_SHAPE: [usize; 3] = [2, C, 2];

/// `[N, C]` logits, moderate.
pub fn logits(b: &TestBackend) -> Tensor<2> {
    b.float(&Stream::new(1).normals(N * C, 1.5), [N, C])
}

/// `[N, C]` probabilities away from 0 and 1.
pub fn probabilities(b: &TestBackend) -> Tensor<2> {
    b.float(&Stream::new(2).uniforms(N * C, 0.05, 0.95), [N, C])
}

/// `[N, C]` soft binary targets in `[0, 1]`.
pub fn soft_targets(b: &TestBackend) -> Tensor<2> {
    b.float(&Stream::new(3).uniforms(N * C, 0.0, 1.0), [N, C])
}

/// `[N]` class indices (class 1 appears, so it can be ignored).
pub fn classes(b: &TestBackend) -> Tensor<1, Int> {
    b.int(&[0, 2, 1, 1], [N])
}

/// `[N, C]` class probabilities (rows sum to 1).
pub fn class_probabilities(b: &TestBackend) -> Tensor<2> {
    let raw = Stream::new(4).uniforms(N * C, 0.1, 1.0);
    b.float(&normalised_over_classes(&raw, &[N, C]), [N, C])
}

/// `[2, C, 2]` logits and `[2, 2]` class indices, for K-dimensional inputs.
pub fn k_dim(b: &TestBackend) -> (Tensor<3>, Tensor<2, Int>) {
    let n = K_SHAPE.iter().product();
    (
        b.float(&Stream::new(5).normals(n, 1.5), K_SHAPE),
        b.int(&[2, 0, 1, 1], [2, 2]),
    )
}

/// A per-class weight `[C]`, with the values the configs below use.
pub const CLASS_WEIGHT: [f32; C] = [0.5, 2.0, 1.25];

/// The per-class weight as a tensor.
pub fn class_weight(b: &TestBackend) -> Tensor<1> {
    let w: Vec<f64> = CLASS_WEIGHT.iter().map(|&w| w as f64).collect();
    b.float(&w, [C])
}
