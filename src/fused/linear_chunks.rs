//! The fused path of `linear_cross_entropy` on a backend `X` with fused kernels: the rows of
//! `hidden` a chunk at a time, each chunk's logits made by one matrix product, its loss and
//! logit gradient by the fused cross-entropy kernel ([`chunk_loss`], the one place that calls
//! the class-index kernels), its contribution to the gradients by two more products, then
//! dropped. The products are the backend's ([`Kernels::linear_products`]: the `gemm` crate on
//! the CPU backends' storage, Burn's `matmul` elsewhere); the rest is written with Burn's
//! tensor operations on `X`, so it serves every backend with kernels.

// Without a `fused-*` feature no backend runs this.
#![cfg_attr(
    not(any(
        feature = "fused-ndarray",
        feature = "fused-flex",
        feature = "fused-wgpu"
    )),
    allow(dead_code)
)]

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, TensorMetadata};
use burn::tensor::{Int, Tensor};

use super::kernels::{
    ClassIndexArgs, ClassIndexKind, ClassIndexParams, Kernels, Output, Ran, Upstream as Scaling,
};
use super::linear_products::{Grads, LinearOperands};
use crate::picked_targets::index_target_weights;
use crate::reduction::Reduction;
use crate::workarounds::log_sum_exp;

/// The shape and options of one `linear_cross_entropy` op.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinearParams {
    /// `N`, the rows of `hidden`.
    pub rows: usize,
    /// `D`, `hidden`'s last dimension.
    pub width: usize,
    /// `V`, the classes.
    pub classes: usize,
    /// Rows per chunk as the caller asked (at least 1); `None` takes the backend's
    /// [`Kernels::linear_chunk_rows`].
    pub chunk_rows: Option<usize>,
    pub ignore_index: i64,
    pub label_smoothing: f64,
    pub softcap: Option<f64>,
    pub z_loss: f64,
    /// `[N]` per row, or `[2]` reduced: the loss (z-loss included) and the z-loss term.
    pub output: Output,
}

/// The inputs of the op on `X`: `hidden` `[N, D]`, `weight` `[D, V]`, `bias` `[V]`, `target`
/// `[N]`, the class weight `[V]`.
#[derive(Clone, Debug)]
pub(crate) struct LinearInputs<X: Backend> {
    pub hidden: FloatTensor<X>,
    pub weight: FloatTensor<X>,
    pub bias: Option<FloatTensor<X>>,
    pub target: IntTensor<X>,
    pub class_weight: Option<FloatTensor<X>>,
    pub params: LinearParams,
}

/// The op's value (see [`LinearParams::output`]) and, for a reduced output, the gradients
/// `wants` asks for (of the loss with an upstream gradient of 1; the autodiff node scales
/// them). A per-row output computes no gradient here: see [`backward_per_row`]. `None` when the
/// kernels do not cover the case (the composite path then runs).
pub(crate) fn forward<X: Kernels>(
    inputs: &LinearInputs<X>,
    wants: [bool; 3],
) -> Option<(FloatTensor<X>, Grads<X>)> {
    let sweep = Sweep::new(inputs);
    match inputs.params.output {
        Output::PerElement => {
            let swept = sweep.run(Upstream::None, [false; 3])?;
            Some((
                X::primitive(Tensor::cat(swept.losses, 0)),
                [None, None, None],
            ))
        }
        Output::Reduced(reduction) => {
            let divisor = match reduction {
                Reduction::Sum => None,
                Reduction::Mean => Some(sweep.target_weight.clone().sum()),
            };
            let upstream = match &divisor {
                _ if !wants.contains(&true) => Upstream::None,
                Some(divisor) => Upstream::Scalar(divisor.ones_like().div(divisor.clone())),
                None => Upstream::Scalar(sweep.target_weight.ones_like().narrow(0, 0, 1)),
            };
            let swept = sweep.run(upstream, wants)?;
            let loss = swept.losses.into_iter().reduce(|a, b| a + b)?;
            let z = swept.z.unwrap_or_else(|| loss.zeros_like());
            let [loss, z] = match divisor {
                Some(divisor) => [loss.div(divisor.clone()), z.div(divisor)],
                None => [loss, z],
            };
            Some((X::primitive(Tensor::cat(vec![loss, z], 0)), swept.grads))
        }
    }
}

/// The gradients `wants` asks for of a per-row output, whose upstream gradient `grad` is `[N]`:
/// every chunk's logits are made again (the forward kept none).
pub(crate) fn backward_per_row<X: Kernels>(
    inputs: &LinearInputs<X>,
    grad: FloatTensor<X>,
    wants: [bool; 3],
) -> Grads<X> {
    Sweep::new(inputs)
        .run(Upstream::PerRow(X::tensor(grad)), wants)
        .expect("the forward ran the same kernels")
        .grads
}

/// The upstream gradient of each row's loss in a sweep.
enum Upstream {
    /// No gradient wanted.
    None,
    /// The same `[1]` value for every row (a reduced loss).
    Scalar(Tensor<1>),
    /// One value per row, `[N]`.
    PerRow(Tensor<1>),
}

/// One pass over the chunks, with what every chunk shares.
struct Sweep<'a, X: Kernels> {
    inputs: &'a LinearInputs<X>,
    /// Rows per chunk, in `[1, N]`.
    chunk_rows: usize,
    target: Tensor<1, Int>,
    /// Each row's target class weight (1 without one), 0 where ignored: the mean's
    /// denominator is their sum, and they weigh the z-loss.
    target_weight: Tensor<1>,
}

/// What a sweep gives: the per-chunk losses (`[1]` sums or `[rows]`), the summed z-loss term
/// (reduced outputs with a z-loss), and the gradients asked for.
struct Swept<X: Backend> {
    losses: Vec<Tensor<1>>,
    z: Option<Tensor<1>>,
    grads: Grads<X>,
}

impl<'a, X: Kernels> Sweep<'a, X> {
    fn new(inputs: &'a LinearInputs<X>) -> Self {
        let p = inputs.params;
        let target = X::int_tensor(inputs.target.clone());
        let class_weight = inputs.class_weight.clone().map(X::tensor::<1>);
        let target_weight = index_target_weights(
            &target,
            class_weight.as_ref(),
            p.ignore_index,
            TensorMetadata::dtype(&inputs.hidden),
        );
        let chunk_rows = p
            .chunk_rows
            .unwrap_or_else(|| X::linear_chunk_rows(p.rows, p.width, p.classes));
        Self {
            inputs,
            chunk_rows: chunk_rows.clamp(1, p.rows.max(1)),
            target,
            target_weight,
        }
    }

    fn run(&self, upstream: Upstream, wants: [bool; 3]) -> Option<Swept<X>> {
        let p = self.inputs.params;
        let wants_grad = !matches!(upstream, Upstream::None);
        let wants = wants.map(|want| want && wants_grad);
        let operands = LinearOperands {
            hidden: &self.inputs.hidden,
            weight: &self.inputs.weight,
            bias: self.inputs.bias.as_ref(),
            rows: p.rows,
            width: p.width,
            classes: p.classes,
        };
        let mut products = X::linear_products(operands, wants);
        let mut losses = Vec::new();
        let mut z_total: Option<Tensor<1>> = None;
        for start in (0..p.rows).step_by(self.chunk_rows) {
            let rows = start..(start + self.chunk_rows).min(p.rows);
            let upstream = match &upstream {
                Upstream::None => None,
                Upstream::Scalar(value) => Some(value.clone()),
                Upstream::PerRow(grad) => Some(grad.clone().slice([rows.clone()])),
            };
            let chunk = chunk_loss::<X>(
                X::tensor(products.logits(rows.clone())),
                self.target.clone().slice([rows.clone()]),
                self.target_weight.clone().slice([rows.clone()]),
                self.inputs.class_weight.as_ref(),
                &p,
                upstream,
            )?;
            losses.push(chunk.loss);
            if let Some(z) = chunk.z {
                z_total = Some(match z_total {
                    Some(total) => total + z,
                    None => z,
                });
            }
            if let Some(dlogits) = chunk.dlogits {
                products.add_gradients(rows, X::primitive(dlogits));
            }
        }
        Some(Swept {
            losses,
            z: z_total,
            grads: products.finish(),
        })
    }
}

/// One chunk's result: its loss (`[1]` summed or `[rows]`), its summed z-loss term (reduced
/// outputs with a z-loss), and the gradient of the logits when an upstream gradient came.
struct Chunk {
    loss: Tensor<1>,
    z: Option<Tensor<1>>,
    dlogits: Option<Tensor<2>>,
}

/// The loss of one chunk of logits `[rows, V]` and, with `upstream` (`[1]` for every row or
/// `[rows]`), the logits' gradient: the soft cap, the fused kernel's loss and gradient for a
/// unit upstream gradient in one pass (over the chunk's logits where the kernel may write)
/// scaled by `upstream`, the z-loss from each row's log-sum-exp, and the cap's chain rule. The one user of the
/// [`Kernels`] methods here.
fn chunk_loss<X: Kernels>(
    logits: Tensor<2>,
    target: Tensor<1, Int>,
    target_weight: Tensor<1>,
    class_weight: Option<&FloatTensor<X>>,
    p: &LinearParams,
    upstream: Option<Tensor<1>>,
) -> Option<Chunk> {
    let [rows, classes] = logits.dims();
    let per_row = p.output == Output::PerElement;
    let (capped, tanh) = match p.softcap {
        Some(cap) => {
            // `softcap`'s formula (times 1 / cap), for the same values as the composite path.
            let tanh = logits.mul_scalar(1.0 / cap).tanh();
            (tanh.clone().mul_scalar(cap), Some(tanh))
        }
        None => (logits, None),
    };
    let params = ClassIndexParams {
        kind: ClassIndexKind::CrossEntropy,
        batch: rows,
        classes,
        spatial: 1,
        ignore_index: p.ignore_index,
        label_smoothing: p.label_smoothing,
        output: if per_row {
            Output::PerElement
        } else {
            Output::Reduced(Reduction::Sum)
        },
        check_values: false,
    };
    let ignored = upstream
        .as_ref()
        .map(|_| target.clone().equal_elem(p.ignore_index));
    let target = X::int(target.into_dispatch()).expect("an operation kept its backend");
    // The z-loss needs the (capped) logits after the kernel; otherwise the kernel gets them
    // as their only holder and may write the gradient over them.
    let kept = (p.z_loss > 0.0).then(|| capped.clone());
    let input = X::primitive(capped);
    let (loss, unit_grad) = match &upstream {
        // With a gradient: the loss and the gradient for a unit upstream gradient, one pass.
        Some(_) => match X::class_index_with_grad(input, &target, class_weight, &params) {
            Ran::Done((loss, grad)) => (loss, Some(grad)),
            _ => return None,
        },
        None => {
            let args = ClassIndexArgs {
                input: &input,
                target: &target,
                weight: class_weight,
                params: &params,
            };
            (X::class_index_forward(args)?.ok()?.0, None)
        }
    };
    let mut loss: Tensor<1> = X::tensor(loss);
    // lse = max + ln Σ exp(x - max) of each row, for the z-loss.
    let lse = kept
        .as_ref()
        .map(|capped| log_sum_exp(capped.clone(), 1).reshape([rows]));
    let mut z = None;
    if let Some(lse) = &lse {
        let per_row_z = lse
            .clone()
            .powi_scalar(2)
            .mul(target_weight.clone())
            .mul_scalar(p.z_loss);
        if per_row {
            loss = loss + per_row_z;
        } else {
            let sum = per_row_z.sum();
            loss = loss + sum.clone();
            z = Some(sum);
        }
    }
    let how = Scaling::of_class(params.output, classes, 1);
    let dlogits = upstream.zip(unit_grad).map(|(grad, unit)| {
        let mut dlogits: Tensor<2> = X::tensor(X::scale(unit, X::primitive(grad.clone()), how));
        // The mean over no target has an infinite upstream gradient: the ignored rows keep
        // PyTorch's zero gradient (the kernel's is 0 for a unit upstream gradient, and 0 · ∞
        // would be NaN).
        if !per_row && !grad.clone().into_scalar::<f64>().is_finite() {
            let ignored = ignored.expect("made with the upstream gradient");
            dlogits = dlogits.mask_fill(ignored.unsqueeze_dim::<2>(1).expand([rows, classes]), 0.0);
        }
        if let Some(lse) = lse {
            // d(scale · w · lse²)/dx = 2 · scale · w · lse · softmax(x); 0 where the weight is
            // (ignored rows, whose upstream may be infinite: the mean of nothing).
            let zero = target_weight.clone().equal_elem(0.0);
            let coefficient = (lse.clone() * target_weight * grad)
                .mul_scalar(2.0 * p.z_loss)
                .mask_fill(zero, 0.0);
            let capped = kept.expect("kept for the z-loss");
            let softmax = (capped - lse.unsqueeze_dim(1)).exp();
            dlogits = dlogits + softmax * coefficient.unsqueeze_dim(1);
        }
        match tanh {
            Some(tanh) => dlogits * tanh.powi_scalar(2).neg().add_scalar(1.0),
            None => dlogits,
        }
    });
    Some(Chunk { loss, z, dlogits })
}
