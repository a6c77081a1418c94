//! Inputs and evaluations shared by the matrix tests.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};

use crate::common::{Stream, assert_close, float, int, normalised_over_classes, values};

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

/// Back-propagates `sum(output × projection)`, with the fixed projection of `seed`: a
/// per-element (`reduction: none`) output is then checked element by element.
pub fn backward_projected<B: AutodiffBackend, const D: usize>(
    output: &Tensor<B, D>,
    seed: u64,
) -> B::Gradients {
    let weights = projection_weights(seed, output.shape().num_elements());
    let projection = float::<B, D>(&weights, output.dims(), &output.device());
    (output.clone() * projection).sum().backward()
}

/// The gradient of `leaf` in `grads`, as f64. Burn returning none is a failure, never read as
/// zeros: a test that expects a zero gradient must see one.
#[track_caller]
pub fn gradient<B: AutodiffBackend, const D: usize>(
    leaf: &Tensor<B, D>,
    grads: &B::Gradients,
    what: &str,
) -> Vec<f64> {
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
pub struct Evaluated {
    pub loss: Vec<f64>,
    pub grad: Vec<f64>,
}

/// `loss(input)` with `input` made a gradient leaf, and the projection back-propagated.
fn run<B: AutodiffBackend, const D: usize, const DO: usize>(
    input: Tensor<B, D>,
    loss: impl FnOnce(Tensor<B, D>) -> Tensor<B, DO>,
) -> (Tensor<B, D>, Tensor<B, DO>, B::Gradients) {
    let input = input.detach().require_grad();
    let output = loss(input.clone());
    let grads = backward_projected(&output, PROJECTION_SEED);
    (input, output, grads)
}

/// Evaluates `loss` on `input` (made a gradient leaf) and back-propagates the projection.
/// Fails when Burn returns no gradient for the input.
#[track_caller]
pub fn evaluate<B: AutodiffBackend, const D: usize, const DO: usize>(
    input: Tensor<B, D>,
    loss: impl FnOnce(Tensor<B, D>) -> Tensor<B, DO>,
) -> Evaluated {
    let (input, output, grads) = run(input, loss);
    Evaluated {
        grad: gradient(&input, &grads, "the loss's input"),
        loss: values(output),
    }
}

/// The loss values of `loss` on an input that Burn gives no gradient: an empty input, whose
/// loss burn-xent builds from host data (`src/workarounds.rs`). Fails when a gradient with
/// elements comes back (PyTorch's empty gradient would pass).
pub fn evaluate_without_gradient<B: AutodiffBackend, const D: usize, const DO: usize>(
    input: Tensor<B, D>,
    loss: impl FnOnce(Tensor<B, D>) -> Tensor<B, DO>,
) -> Vec<f64> {
    let (input, output, grads) = run(input, loss);
    if let Some(grad) = input.grad(&grads) {
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
    for (what, got, want) in [
        ("loss", &got.loss, &want.loss),
        ("gradient", &got.grad, &want.grad),
    ] {
        assert_eq!(
            bits(got),
            bits(want),
            "{context}: {what} differs: {got:?} vs {want:?}"
        );
    }
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
    assert_close(
        &got.grad,
        &want.grad,
        1e-4,
        1e-5,
        &format!("{context} (gradient)"),
    );
}

/// `x` with its elements from flat index `from` on replaced by `replacement`, in `x`'s dtype.
pub fn replaced<B: AutodiffBackend, const D: usize>(
    x: &Tensor<B, D>,
    from: usize,
    replacement: &[f64],
) -> Tensor<B, D> {
    let mut raw = values(x.clone());
    raw[from..from + replacement.len()].copy_from_slice(replacement);
    float(&raw, x.dims(), &x.device())
}

/// The shapes reused across the matrix (wgpu compiles kernels per shape).
pub const N: usize = 4;
pub const C: usize = 3;
pub const K_SHAPE: [usize; 3] = [2, C, 2];

/// `[N, C]` logits, moderate.
pub fn logits<B: AutodiffBackend>(device: &B::Device) -> Tensor<B, 2> {
    float(&Stream::new(1).normals(N * C, 1.5), [N, C], device)
}

/// `[N, C]` probabilities away from 0 and 1.
pub fn probabilities<B: AutodiffBackend>(device: &B::Device) -> Tensor<B, 2> {
    float(&Stream::new(2).uniforms(N * C, 0.05, 0.95), [N, C], device)
}

/// `[N, C]` soft binary targets in `[0, 1]`.
pub fn soft_targets<B: AutodiffBackend>(device: &B::Device) -> Tensor<B, 2> {
    float(&Stream::new(3).uniforms(N * C, 0.0, 1.0), [N, C], device)
}

/// `[N]` class indices (class 1 appears, so it can be ignored).
pub fn classes<B: AutodiffBackend>(device: &B::Device) -> Tensor<B, 1, Int> {
    int(&[0, 2, 1, 1], [N], device)
}

/// `[N, C]` class probabilities (rows sum to 1).
pub fn class_probabilities<B: AutodiffBackend>(device: &B::Device) -> Tensor<B, 2> {
    let raw = Stream::new(4).uniforms(N * C, 0.1, 1.0);
    float(&normalised_over_classes(&raw, &[N, C]), [N, C], device)
}

/// `[2, C, 2]` logits and `[2, 2]` class indices, for K-dimensional inputs.
pub fn k_dim<B: AutodiffBackend>(device: &B::Device) -> (Tensor<B, 3>, Tensor<B, 2, Int>) {
    let n = K_SHAPE.iter().product();
    (
        float(&Stream::new(5).normals(n, 1.5), K_SHAPE, device),
        int(&[2, 0, 1, 1], [2, 2], device),
    )
}

/// A per-class weight `[C]`, with the values the configs below use.
pub const CLASS_WEIGHT: [f32; C] = [0.5, 2.0, 1.25];

/// The per-class weight as a tensor.
pub fn class_weight<B: AutodiffBackend>(device: &B::Device) -> Tensor<B, 1> {
    let w: Vec<f64> = CLASS_WEIGHT.iter().map(|&w| w as f64).collect();
    float(&w, [C], device)
}
