//! BCE and BCE with logits: the forward (grid-stride over the elements, with the gradients
//! for a unit upstream gradient when asked), the backward (elementwise) and their launchers.
//! Weights are periodic: `weight[i % period]` weighs element `i`.

use burn::backend::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::helpers::{GRAD_EPSILON, clamped_ln, softplus};
use super::launch::{
    GradInto, backward_tensors, dummy, elem, elementwise, empty_like, forward_cubes, periodic_arg,
    wanted,
};
use super::reduce::{MeanOver, Reduce, element_grad, finish, loss_buffer, tree_sum};
use super::{CUBE_UNITS, SHARED_LEN};
use crate::fused::kernels::{BinaryKind, BinaryParams};

/// The comptime choices of the binary kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct BinaryConfig {
    /// BCE with logits; BCE on probabilities when false.
    logits: bool,
    /// With a `weight`.
    weighted: bool,
    /// With a `pos_weight` (BCE with logits only).
    pos_weighted: bool,
    /// How the losses leave the op.
    reduce: Reduce,
}

impl BinaryConfig {
    /// The choices of an op with `params`, with or without each weight.
    fn new(params: &BinaryParams, weighted: bool, pos_weighted: bool) -> Self {
        Self {
            logits: params.kind == BinaryKind::WithLogits,
            weighted,
            pos_weighted,
            reduce: Reduce::of(params.output),
        }
    }
}

/// Binary forward (BCE with logits when `logits`, BCE on probabilities otherwise),
/// grid-stride over `len` elements: `loss[i]`, or the cube's sum of the losses in
/// `loss[CUBE_POS]` (reduced).
///
/// With `want_input` / `want_target`, also the gradients for a unit upstream gradient
/// (`1 / len` for a mean), as [`binary_backward_kernel()`] computes them, into `grad_input`
/// (which may alias `input`, argument 0: each unit reads its element before writing it) and
/// `grad_target`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn binary_forward_kernel<F: Float>(
    input: &Tensor<F>,
    target: &Tensor<F>,
    weight: &Tensor<F>,
    pos_weight: &Tensor<F>,
    loss: &mut Tensor<F>,
    grad_input: &mut Tensor<F>,
    grad_target: &mut Tensor<F>,
    len: u32,
    weight_period: u32,
    pos_weight_period: u32,
    #[comptime] config: BinaryConfig,
    #[comptime] want_input: bool,
    #[comptime] want_target: bool,
    #[define(F)] _dtype: ElemType,
) {
    let logits = comptime!(config.logits);
    let weighted = comptime!(config.weighted);
    let pos_weighted = comptime!(config.pos_weighted);
    let reduced = comptime!(config.reduce.is_reduced());
    let l = len as usize;
    let unit = UNIT_POS_X as usize;
    let step = CUBE_COUNT * CUBE_DIM_X as usize;
    // The factor of a unit upstream gradient: `1 / len` for a mean.
    let mut unit_grad = F::new(1.0);
    if comptime!(config.reduce == Reduce::Mean) {
        unit_grad = F::new(1.0) / F::cast_from(len);
    }
    let mut acc = F::new(0.0);
    let mut i = CUBE_POS * CUBE_DIM_X as usize + unit;
    while i < l {
        let x = input[i];
        let t = target[i];
        let mut w = F::new(1.0);
        if weighted {
            w = weight[i % weight_period as usize];
        }
        let g = unit_grad * w;
        let mut li = if logits {
            let mut pw = F::new(1.0);
            if pos_weighted {
                pw = pos_weight[i % pos_weight_period as usize];
            }
            let sp_pos = softplus::<F>(x);
            let sp_neg = softplus::<F>(-x);
            if want_input {
                // σ(x) = exp(-softplus(-x)), σ(-x) = exp(-softplus(x)).
                let sig_pos = (-sp_neg).exp();
                let sig_neg = (-sp_pos).exp();
                grad_input[i] = g * ((F::new(1.0) - t) * sig_pos - pw * t * sig_neg);
            }
            if want_target {
                grad_target[i] = g * (pw * sp_neg - sp_pos);
            }
            (F::new(1.0) - t) * sp_pos + pw * (t * sp_neg)
        } else {
            let log_p = clamped_ln::<F>(x);
            let log_q = clamped_ln::<F>(F::new(1.0) - x);
            if want_input {
                // PyTorch's `(p - t) / max(p (1 - p), ε)`.
                let denom = (x * (F::new(1.0) - x)).max(F::new(GRAD_EPSILON));
                grad_input[i] = g * (x - t) / denom;
            }
            if want_target {
                grad_target[i] = g * (log_q - log_p);
            }
            -(t * log_p + (F::new(1.0) - t) * log_q)
        };
        li *= w;
        if reduced {
            acc += li;
        } else {
            loss[i] = li;
        }
        i += step;
    }

    if reduced {
        let mut sh = Shared::<[F]>::new_slice(SHARED_LEN);
        sh[unit] = acc;
        sync_cube();
        tree_sum::<F>(&mut sh, unit, unit, CUBE_DIM_X as usize, 1);
        if unit == 0 {
            loss[CUBE_POS] = sh[0];
        }
    }
}

/// Binary gradients, one unit per element, with `g` the element's gradient
/// ([`element_grad()`], a mean over the `len` elements) times its weight.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn binary_backward_kernel<F: Float>(
    input: &Tensor<F>,
    target: &Tensor<F>,
    weight: &Tensor<F>,
    pos_weight: &Tensor<F>,
    grad: &Tensor<F>,
    grad_input: &mut Tensor<F>,
    grad_target: &mut Tensor<F>,
    len: u32,
    weight_period: u32,
    pos_weight_period: u32,
    #[comptime] config: BinaryConfig,
    #[comptime] want_input: bool,
    #[comptime] want_target: bool,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i >= len as usize {
        terminate!();
    }
    let logits = comptime!(config.logits);
    let weighted = comptime!(config.weighted);
    let pos_weighted = comptime!(config.pos_weighted);
    let x = input[i];
    let t = target[i];
    let mut g = element_grad::<F>(grad, i, F::cast_from(len), config.reduce);
    if weighted {
        g *= weight[i % weight_period as usize];
    }
    if logits {
        let mut pw = F::new(1.0);
        if pos_weighted {
            pw = pos_weight[i % pos_weight_period as usize];
        }
        let sp_pos = softplus::<F>(x);
        let sp_neg = softplus::<F>(-x);
        if want_input {
            // σ(x) = exp(-softplus(-x)), σ(-x) = exp(-softplus(x)).
            let sig_pos = (-sp_neg).exp();
            let sig_neg = (-sp_pos).exp();
            grad_input[i] = g * ((F::new(1.0) - t) * sig_pos - pw * t * sig_neg);
        }
        if want_target {
            grad_target[i] = g * (pw * sp_neg - sp_pos);
        }
    } else {
        if want_input {
            // PyTorch's `(p - t) / max(p (1 - p), ε)`.
            let denom = (x * (F::new(1.0) - x)).max(F::new(GRAD_EPSILON));
            grad_input[i] = g * (x - t) / denom;
        }
        if want_target {
            grad_target[i] = g * (clamped_ln::<F>(F::new(1.0) - x) - clamped_ln::<F>(x));
        }
    }
}

/// The binary forward on cube tensors (see `Kernels::binary_forward`); `weight` and
/// `pos_weight` are `(values, period)` (`Periodic::parts`). The caller has checked that the
/// kernels cover the op (`covers_binary`).
pub(in crate::fused) fn binary_forward(
    input: &CubeTensor,
    target: &CubeTensor,
    weight: Option<(&CubeTensor, usize)>,
    pos_weight: Option<(&CubeTensor, usize)>,
    params: &BinaryParams,
) -> CubeTensor {
    let input = into_contiguous(input.clone());
    let placeholder = GradInto::New(dummy(&input));
    let grads = [&placeholder, &placeholder];
    launch_forward(
        &input, target, weight, pos_weight, params, grads, [false; 2],
    )
}

/// The binary loss and the gradients wanted for a unit upstream gradient on cube tensors
/// (see `Kernels::binary_with_grad`), in one forward launch: the input gradient over
/// `input`'s buffer when it is ours ([`GradInto`]), into a new one otherwise; weights as in
/// [`binary_forward`].
pub(in crate::fused) fn binary_with_grad(
    input: CubeTensor,
    target: &CubeTensor,
    weight: Option<(&CubeTensor, usize)>,
    pos_weight: Option<(&CubeTensor, usize)>,
    params: &BinaryParams,
    wants: [bool; 2],
) -> (CubeTensor, [Option<CubeTensor>; 2]) {
    let (input, input_into) = GradInto::of(input, wants[0]);
    let target_into = GradInto::New(if wants[1] {
        empty_like(&input, target.shape(), input.dtype)
    } else {
        dummy(&input)
    });
    let grads = [&input_into, &target_into];
    let loss = launch_forward(&input, target, weight, pos_weight, params, grads, wants);
    let target_grad = target_into.gradient(input.clone());
    let input_grad = input_into.gradient(input);
    (
        loss,
        [
            wants[0].then_some(input_grad),
            wants[1].then_some(target_grad),
        ],
    )
}

/// One launch of [`binary_forward_kernel()`] (and the finalise step) on the contiguous
/// `input`, writing the `wants` gradients where `grads` says.
fn launch_forward(
    input: &CubeTensor,
    target: &CubeTensor,
    weight: Option<(&CubeTensor, usize)>,
    pos_weight: Option<(&CubeTensor, usize)>,
    params: &BinaryParams,
    grads: [&GradInto; 2],
    wants: [bool; 2],
) -> CubeTensor {
    let target = into_contiguous(target.clone());
    let len = params.len;
    let config = BinaryConfig::new(params, weight.is_some(), pos_weight.is_some());
    let cubes = forward_cubes(len.div_ceil(CUBE_UNITS as usize));
    let (w, w_period) = periodic_arg(weight, input);
    let (pw, pw_period) = periodic_arg(pos_weight, input);
    let loss = loss_buffer(input, config.reduce, cubes, len);

    binary_forward_kernel::launch(
        &input.client,
        CubeCount::Static(cubes, 1, 1),
        CubeDim::new_1d(CUBE_UNITS),
        input.clone().into_tensor_arg(),
        target.into_tensor_arg(),
        w.into_tensor_arg(),
        pw.into_tensor_arg(),
        loss.clone().into_tensor_arg(),
        grads[0].arg(input),
        grads[1].arg(input),
        len as u32,
        w_period,
        pw_period,
        config,
        wants[0],
        wants[1],
        elem(input.dtype),
    );
    finish(
        input,
        loss,
        None,
        cubes,
        len,
        config.reduce,
        MeanOver::Count,
    )
    .0
}

/// The binary gradients on cube tensors (see `Kernels::binary_backward`); weights as in
/// [`binary_forward`].
pub(in crate::fused) fn binary_backward(
    input: &CubeTensor,
    target: &CubeTensor,
    weight: Option<(&CubeTensor, usize)>,
    pos_weight: Option<(&CubeTensor, usize)>,
    params: &BinaryParams,
    grad: CubeTensor,
    wants: [bool; 2],
) -> [Option<CubeTensor>; 2] {
    let Some(([input, target], grads)) = backward_tensors(input, target, wants) else {
        return [None, None];
    };
    let len = params.len;
    let (w, w_period) = periodic_arg(weight, &input);
    let (pw, pw_period) = periodic_arg(pos_weight, &input);
    let (cube_count, cube_dim) = elementwise(&input, len);

    binary_backward_kernel::launch(
        &input.client,
        cube_count,
        cube_dim,
        input.clone().into_tensor_arg(),
        target.into_tensor_arg(),
        w.into_tensor_arg(),
        pw.into_tensor_arg(),
        into_contiguous(grad).into_tensor_arg(),
        grads[0].clone().into_tensor_arg(),
        grads[1].clone().into_tensor_arg(),
        len as u32,
        w_period,
        pw_period,
        BinaryConfig::new(params, weight.is_some(), pos_weight.is_some()),
        wants[0],
        wants[1],
        elem(input.dtype),
    );
    wanted(grads, wants)
}
