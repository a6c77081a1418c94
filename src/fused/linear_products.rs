//! The matrix products of the chunked `linear_cross_entropy` ([`super::linear_chunks`]), behind
//! one interface that each backend may implement its own way ([`Kernels::linear_products`]):
//! a chunk's logits `hidden[rows] · weight + bias`, and its contributions to the gradients,
//! `dlogits · weightᵀ` (the chunk's rows of `hidden`'s), `hidden[rows]ᵀ · dlogits` (added to
//! `weight`'s) and the column sums of `dlogits` (added to `bias`'s).
//!
//! [`BurnProducts`], the default, writes them with Burn's `matmul` on the backend (CubeCL's
//! matrix product on wgpu); the CPU backends multiply their tensors' storage in place with the
//! `gemm` crate (`cpu::linear`).
//!
//! [`Kernels::linear_products`]: super::kernels::Kernels::linear_products

// Without a `fused-*` feature no backend runs this.
#![cfg_attr(
    not(any(
        feature = "fused-ndarray",
        feature = "fused-flex",
        feature = "fused-wgpu"
    )),
    allow(dead_code)
)]

use std::ops::Range;

use burn::backend::Backend;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Tensor;

use super::concrete::Concrete;

/// Gradients of `hidden`, `weight` and `bias`, each when asked.
pub(crate) type Grads<X> = [Option<FloatTensor<X>>; 3];

/// The operands of the products and their sizes: `hidden` `[N, D]`, `weight` `[D, V]`, `bias`
/// `[V]`.
pub(crate) struct LinearOperands<'a, X: Backend> {
    pub hidden: &'a FloatTensor<X>,
    pub weight: &'a FloatTensor<X>,
    pub bias: Option<&'a FloatTensor<X>>,
    /// `N`.
    pub rows: usize,
    /// `D`.
    pub width: usize,
    /// `V`.
    pub classes: usize,
}

/// The products of one sweep over the chunks, and the gradients they accumulate.
pub(crate) trait LinearProducts<X: Backend> {
    /// The logits of the rows `rows` of `hidden`, `[rows.len(), V]`: a fresh tensor that
    /// nothing else holds (the cross-entropy kernel may write its gradient over it).
    fn logits(&mut self, rows: Range<usize>) -> FloatTensor<X>;

    /// Adds the contributions of the chunk `rows`, whose logits' gradient is `dlogits`
    /// `[rows.len(), V]`, to the gradients asked for. Called once per chunk, in order.
    fn add_gradients(&mut self, rows: Range<usize>, dlogits: FloatTensor<X>);

    /// The gradients asked for, `[N, D]`, `[D, V]` and `[V]`.
    fn finish(self: Box<Self>) -> Grads<X>;
}

/// The default rows per chunk: a chunk's logits come to at most twice `hidden`'s values (at
/// least 2^20, at most 2^24 logits), but a chunk has at least 128 rows where that keeps it
/// within 2^24 logits; rounded down to a multiple of 8 rows where that leaves 8 or more: 256
/// rows for `hidden` `[4096, 1024]` and `V = 32,000`, 128 for `[2048, 2048]` and
/// `V = 128,256`. Fewer rows save little memory and cost time: a matrix product over `W` is
/// slower per row with fewer rows (burn-ndarray 0.21's was 3× slower at 32 rows than at 256).
pub(crate) fn default_chunk_rows(rows: usize, width: usize, classes: usize) -> usize {
    let budget = rows
        .saturating_mul(width)
        .saturating_mul(2)
        .clamp(1 << 20, 1 << 24);
    let classes = classes.max(1);
    let chunk = (budget / classes).max(((1 << 24) / classes).min(128));
    let chunk = if chunk >= 8 { chunk / 8 * 8 } else { chunk };
    chunk.clamp(1, rows.max(1))
}

/// The products as Burn's operations on `X`: `matmul`, then `slice_assign` into the hidden
/// gradient and column blocks added into the weight gradient (a temporary of about one
/// chunk's logits rather than a second `[D, V]`).
pub(crate) struct BurnProducts<X: Backend> {
    hidden: Tensor<2>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    width: usize,
    classes: usize,
    grad_hidden: Option<Tensor<2>>,
    /// Made by the first chunk's product rather than from zeros: one weight-sized allocation
    /// and no first update.
    grad_weight: Option<Tensor<2>>,
    wants_weight: bool,
    grad_bias: Option<Tensor<1>>,
    _backend: std::marker::PhantomData<fn() -> X>,
}

impl<X: Concrete> BurnProducts<X> {
    /// The products of `operands`, accumulating the gradients `wants` asks for (of `hidden`,
    /// `weight`, `bias`).
    pub(crate) fn new(operands: LinearOperands<'_, X>, wants: [bool; 3]) -> Self {
        let hidden: Tensor<2> = X::tensor(operands.hidden.clone());
        let bias = operands.bias.cloned().map(X::tensor::<1>);
        Self {
            grad_hidden: wants[0].then(|| hidden.zeros_like()),
            grad_weight: None,
            wants_weight: wants[1],
            grad_bias: bias.as_ref().filter(|_| wants[2]).map(Tensor::zeros_like),
            hidden,
            weight: X::tensor(operands.weight.clone()),
            bias,
            width: operands.width,
            classes: operands.classes,
            _backend: std::marker::PhantomData,
        }
    }
}

impl<X: Concrete> LinearProducts<X> for BurnProducts<X> {
    fn logits(&mut self, rows: Range<usize>) -> FloatTensor<X> {
        let logits = self
            .hidden
            .clone()
            .slice([rows])
            .matmul(self.weight.clone());
        X::primitive(match &self.bias {
            Some(bias) => logits + bias.clone().unsqueeze(),
            None => logits,
        })
    }

    fn add_gradients(&mut self, rows: Range<usize>, dlogits: FloatTensor<X>) {
        let dlogits: Tensor<2> = X::tensor(dlogits);
        let (width, classes) = (self.width, self.classes);
        let h = self.hidden.clone().slice([rows.clone()]);
        if let Some(grad) = self.grad_hidden.take() {
            // dlogits · Wᵀ as (W · dlogitsᵀ)ᵀ: the transposed copy is the chunk's, not W's.
            let part = self
                .weight
                .clone()
                .matmul(dlogits.clone().transpose())
                .transpose();
            self.grad_hidden = Some(grad.slice_assign([rows.clone()], part));
        }
        if self.wants_weight {
            self.grad_weight = Some(match self.grad_weight.take() {
                None => h.transpose().matmul(dlogits.clone()),
                Some(mut grad) => {
                    let block = (rows.len() * classes / width.max(1)).clamp(1, classes);
                    let h_t = h.transpose();
                    for first in (0..classes).step_by(block) {
                        let columns = first..(first + block).min(classes);
                        let part = h_t
                            .clone()
                            .matmul(dlogits.clone().slice([0..rows.len(), columns.clone()]));
                        let sum = part + grad.clone().slice([0..width, columns.clone()]);
                        grad = grad.slice_assign([0..width, columns], sum);
                    }
                    grad
                }
            });
        }
        if let Some(grad) = self.grad_bias.take() {
            self.grad_bias = Some(grad + dlogits.sum_dim(0).reshape([classes]));
        }
    }

    fn finish(self: Box<Self>) -> Grads<X> {
        [
            self.grad_hidden.map(X::primitive),
            self.grad_weight.map(X::primitive),
            self.grad_bias.map(X::primitive),
        ]
    }
}
