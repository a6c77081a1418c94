//! Inputs and comparisons shared by the matrix tests.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};

use crate::common::{Stream, float, int, values};

/// The loss values and the input gradient of `loss(input)`, as f64.
///
/// The gradient is that of `sum(loss * projection)` with a fixed pseudo-random projection, so
/// a per-element (`reduction: none`) loss is checked element by element.
pub struct Evaluated {
    pub loss: Vec<f64>,
    pub grad: Vec<f64>,
}

/// Evaluates `loss` on `input` (made a gradient leaf) and back-propagates a projection.
pub fn evaluate<B: AutodiffBackend, const D: usize, const DO: usize>(
    input: Tensor<B, D>,
    loss: impl FnOnce(Tensor<B, D>) -> Tensor<B, DO>,
) -> Evaluated {
    let device = input.device();
    let input = input.detach().require_grad();
    let output = loss(input.clone());
    let dims = output.dims();
    let count = output.shape().num_elements();
    let projection = float::<B, DO>(&Stream::new(7).uniforms(count, 0.5, 1.5), dims, &device);
    let grads = (output.clone() * projection).sum().backward();
    let grad = input
        .grad(&grads)
        .map(values)
        .unwrap_or_else(|| vec![0.0; input.shape().num_elements()]);
    Evaluated {
        loss: values(output),
        grad,
    }
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
        bits(&got.grad),
        bits(&want.grad),
        "{context}: gradient differs: {:?} vs {:?}",
        got.grad,
        want.grad
    );
}

/// Asserts `|got - want| <= atol + rtol |want|` element-wise (NaN only matches NaN).
pub fn assert_close(got: &[f64], want: &[f64], rtol: f64, atol: f64, context: &str) {
    assert_eq!(got.len(), want.len(), "{context}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() || g.is_nan() {
            w.is_nan() && g.is_nan()
        } else {
            approx::relative_eq!(g, w, epsilon = atol, max_relative = rtol)
                || (g - w).abs() <= atol + rtol * w.abs()
        };
        assert!(
            ok,
            "{context}: element {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}"
        );
    }
}

/// Asserts two evaluations agree within f32 round-off.
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
    let mut probs = raw.clone();
    for row in 0..N {
        let sum: f64 = raw[row * C..(row + 1) * C].iter().sum();
        for c in 0..C {
            probs[row * C + c] = raw[row * C + c] / sum;
        }
    }
    float(&probs, [N, C], device)
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
