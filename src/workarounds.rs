//! Guards against Burn backend bugs, kept in one place so they can go when Burn fixes them,
//! and where Burn 0.22 differs from PyTorch or from Burn 0.21 in a way a loss can see.
//!
//! Burn 0.21's cube backends (wgpu) panic on zero-sized tensors in parts of the loss graph
//! (an underflow in `burn-cubecl`'s contiguity check, reached from `log_softmax` and from
//! the graph's later execution), and the panic leaves the device's fusion stream unusable for
//! the rest of the process. An empty batch is legal in PyTorch (mean NaN, sum 0, an empty
//! per-element loss), so for an input with no elements the losses build their result from
//! host data and run no tensor operation on the empty input. The result does not depend on
//! the input, so Burn reports no gradient for it (`grad` returns `None`; PyTorch returns an
//! empty gradient).
//!
//! Burn 0.21's autodiff, and 0.22's unchanged (`burn-autodiff` 0.22.1 `float_log`, burn-ndarray
//! 0.22.1 `NdArrayMathOps::recip`; `tests` below measures it), differentiates `log(x)` as `grad * recip(x)` (and the left side of
//! `a / b` as `grad * recip(b)`), and burn-ndarray's `float_recip` on f32 tensors of 32
//! elements or more runs macerator's SIMD `recip`, which is the *approximate* reciprocal
//! instruction: `_mm512_rcp14_ps` on AVX-512 (relative error up to 2^-14 = 6e-5),
//! `_mm256_rcp_ps` on AVX2 and `_mm_rcp_ps` on SSE (1.5 × 2^-12 = 4e-4), `vrecpeq_f32` on
//! aarch64 (about 2^-8). Every gradient through Burn's `log` on `NdArray<f32>` carries that
//! error: the cross-entropy gradient on `[3000, 3]` logits came out 300 times less accurate
//! than PyTorch's (4e-5 against 1.3e-7). [`log_softmax`] is the one logarithm the composite
//! path differentiates through; it is written so that its backward needs no reciprocal, and
//! it is public (`burn_xent::log_softmax`) for users who feed `nll_loss` themselves.
//!
//! Burn 0.22 changes what a loss can see in two more ways, both handled where tensors are
//! made: a tensor's float dtype is chosen at run time (`Tensor::from_data(data, &device)`
//! converts to the device's default, f32, even for f64 data), so every tensor burn-xent makes
//! takes the dtype of the tensor it works with (`(&device, input.dtype())`); and a device's
//! default dtypes are fixed by its first tensor, so burn-xent never configures a device.
//! (Burn 0.22 also deprecates burn-ndarray in favour of Flex; the kernels for both stay.)

use burn::tensor::{Bool, Tensor, TensorData};

/// True when `tensor` has no elements.
pub(crate) fn is_empty<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.shape().num_elements() == 0
}

/// An empty per-element loss of shape `dims` (which holds a 0), made from host data on the
/// device and in the float dtype of `like`.
pub(crate) fn empty_loss<const D: usize, const DL: usize>(
    dims: [usize; D],
    like: &Tensor<DL>,
) -> Tensor<D> {
    let data = TensorData::new(Vec::<f32>::new(), dims);
    Tensor::from_data(data, (&like.device(), like.dtype()))
}

/// An empty boolean mask of shape `dims` (which holds a 0), made from host data on the device
/// of `like`.
pub(crate) fn empty_mask<const D: usize, const DL: usize>(
    dims: [usize; D],
    like: &Tensor<DL>,
) -> Tensor<D, Bool> {
    Tensor::from_data(TensorData::new(Vec::<bool>::new(), dims), &like.device())
}

/// `log_softmax(x, dim)` with PyTorch's gradient, `dy - softmax(x) Σ dy`, to f32 round-off on
/// every backend: PyTorch's `F.log_softmax(x, dim)`, a drop-in for Burn's
/// `burn::tensor::activation::log_softmax`, whose f32 gradient is about 300 times less accurate
/// on `NdArray` (see below). Any shape; `dim` is the dimension normalised over.
///
/// | PyTorch | burn-xent |
/// |---|---|
/// | `F.nll_loss(F.log_softmax(x, 1), t)` | `nll_loss(log_softmax(x, 1), t, Reduction::Mean, &NllLossOptions::new())` |
///
/// Burn's `log_softmax` is `x - max - log(Σ exp(x - max))` and its gradient goes through
/// `log`'s backward, whose reciprocal is approximate on burn-ndarray (see the module docs).
/// Here the logarithm of the row sum `s = Σ exp(x - max)` is taken on the detached `s`, and
/// the gradient comes from `(s - s̄) · (1 / s̄)`, where `s̄` is `s` detached and `1 / s̄` is a
/// constant computed by a forward division (correctly rounded: `divps`, not `rcpps`). The
/// added term is exactly 0 wherever `s` is finite, so the value is Burn's bit for bit, and its
/// derivative is `exp(x - max) / s̄ = softmax(x)`: the backward is a product by constants, a
/// broadcast and `exp`'s own backward, with no reciprocal taken.
///
/// The maximum is detached (it only shifts the exponent), so `x - max` keeps its exact
/// value for logits of ±1e4 and passes the gradient through unchanged. For a row with a
/// finite maximum, `s` lies in `[1, C]`; a `-inf` logit gets `-inf` and the gradient `dy`
/// (its softmax is 0), as in PyTorch; a row whose logits are all `-inf`, or that holds `+inf`
/// or NaN, gives NaN, as Burn's and PyTorch's do.
pub fn log_softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let (shifted, _, log_sum) = shifted_log_sum(x, dim);
    shifted - log_sum
}

/// `log Σ exp(x)` over `dim` (kept, of size 1), with the exact gradient `softmax(x)` of
/// [`log_softmax`]'s construction: the detached maximum plus the log of the shifted sum.
pub(crate) fn log_sum_exp<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let (_, max, log_sum) = shifted_log_sum(x, dim);
    max + log_sum
}

/// `x - max`, the detached `max` and `log Σ exp(x - max)` over `dim`, the log differentiated
/// without a reciprocal (see [`log_softmax`]).
fn shifted_log_sum<const D: usize>(x: Tensor<D>, dim: usize) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let max = x.clone().detach().max_dim(dim);
    let shifted = x - max.clone();
    let sum = shifted.clone().exp().sum_dim(dim);
    let constant = sum.clone().detach();
    let inverse = constant.ones_like().div(constant.clone());
    let log_sum = constant.clone().log() + (sum - constant) * inverse;
    (shifted, max, log_sum)
}

#[cfg(all(test, feature = "fused-ndarray"))]
#[allow(deprecated)] // Burn 0.22 deprecates burn-ndarray; the workaround is for it.
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    /// The largest difference between the gradient of `sum(log_softmax(x)[:, 0])` on `x` and
    /// its exact value `onehot(0) - softmax(x)`, computed in f64 from the same f32 inputs.
    fn gradient_error(log_softmax: impl Fn(Tensor<2>) -> Tensor<2>) -> f64 {
        let (rows, classes) = (3000, 3);
        let values: Vec<f32> = (0..rows * classes)
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 6.0)
            .collect();
        let device = Device::ndarray().autodiff();
        let data = TensorData::new(values.clone(), [rows, classes]);
        let x = Tensor::<2>::from_data(data, &device).require_grad();
        let grads = log_softmax(x.clone()).narrow(1, 0, 1).sum().backward();
        let grad: Vec<f32> = x
            .grad(&grads)
            .expect("a gradient")
            .into_data()
            .try_to_vec()
            .unwrap();
        let mut worst = 0.0f64;
        for (row, got) in values.chunks(classes).zip(grad.chunks(classes)) {
            let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
            for (c, (&x, &g)) in row.iter().zip(got).enumerate() {
                let exact = f64::from(u8::from(c == 0)) - (x - max).exp() / sum;
                worst = worst.max((f64::from(g) - exact).abs());
            }
        }
        worst
    }

    /// burn-xent's `log_softmax` gives PyTorch's f32 gradient on NdArray (f32 round-off), and
    /// Burn 0.22's own is measured beside it: when Burn's error falls to the same level, its
    /// `recip` is exact again and the workaround can go.
    #[test]
    fn log_softmax_gradient_needs_no_reciprocal() {
        let ours = gradient_error(|x| super::log_softmax(x, 1));
        let burns = gradient_error(|x| burn::tensor::activation::log_softmax(x, 1));
        println!(
            "log_softmax gradient error on NdArray f32: burn-xent {ours:e}, Burn 0.22 {burns:e}"
        );
        assert!(
            ours <= 5e-7,
            "burn-xent's log_softmax gradient error {ours:e} (Burn's {burns:e})"
        );
    }
}
