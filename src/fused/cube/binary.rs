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
    scalar, wanted,
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
    infinity: InputScalar,
    #[comptime] config: BinaryConfig,
    #[comptime] want_input: bool,
    #[comptime] want_target: bool,
    #[define(F)] _dtype: ElemType,
) {
    let logits = comptime!(config.logits);
    let weighted = comptime!(config.weighted);
    let pos_weighted = comptime!(config.pos_weighted);
    let inf = infinity.get::<F>();
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
            if want_input {
                grad_input[i] = g * logits_slope_x::<F>(x, t, pw, inf, pos_weighted);
            }
            if want_target {
                grad_target[i] = g * logits_slope_t::<F>(x, pw, inf, pos_weighted);
            }
            logits_loss::<F>(x, t, pw, inf, pos_weighted)
        } else {
            if want_input {
                grad_input[i] = g * probs_slope_x::<F>(x, t);
            }
            if want_target {
                grad_target[i] = g * probs_slope_t::<F>(x, inf);
            }
            -(t * clamped_ln::<F>(x) + (F::new(1.0) - t) * clamped_ln::<F>(F::new(1.0) - x))
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
    infinity: InputScalar,
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
    let inf = infinity.get::<F>();
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
        if want_input {
            grad_input[i] = g * logits_slope_x::<F>(x, t, pw, inf, pos_weighted);
        }
        if want_target {
            grad_target[i] = g * logits_slope_t::<F>(x, pw, inf, pos_weighted);
        }
    } else {
        if want_input {
            grad_input[i] = g * probs_slope_x::<F>(x, t);
        }
        if want_target {
            grad_target[i] = g * probs_slope_t::<F>(x, inf);
        }
    }
}

/// `|v| < inf`: false for an infinity and for NaN. `inf` is a kernel argument, not a literal:
/// WGSL rejects infinite literals, and the driver folds `v - v` to 0.
#[cube]
fn finite<F: Float>(v: F, inf: F) -> bool {
    v.abs() < inf
}

/// Whether `x`, `t` and (with `pos_weight`) `pw` are all finite: where one is not, the
/// binary losses take PyTorch's own formulas, so that NaN and the infinities come out where
/// PyTorch's do (`x = inf, t = 1` is `0 · inf = NaN` in its loss).
#[cube]
fn all_finite<F: Float>(x: F, t: F, pw: F, inf: F, #[comptime] pos_weighted: bool) -> bool {
    let mut all = finite::<F>(x, inf) && finite::<F>(t, inf);
    if pos_weighted {
        all = all && finite::<F>(pw, inf);
    }
    all
}

/// `log σ(x) = -softplus(-x)`, exact at `±inf` (`0`, and `-inf`: `x` itself).
#[cube]
fn log_sigmoid<F: Float>(x: F, inf: F) -> F {
    let mut out = -softplus::<F>(-x);
    if x == inf {
        out = F::new(0.0);
    }
    if x == -inf {
        out = x;
    }
    out
}

/// BCE with logits at one element: `(1 - t) softplus(x) + pw t softplus(-x)` (no cancellation
/// in either tail); where an argument is not finite, PyTorch's
/// `(1 - t) x - (1 + (pw - 1) t) log σ(x)` (`(1 - t) x - log σ(x)` without `pos_weight`).
#[cube]
fn logits_loss<F: Float>(x: F, t: F, pw: F, inf: F, #[comptime] pos_weighted: bool) -> F {
    let mut out = (F::new(1.0) - t) * softplus::<F>(x) + pw * (t * softplus::<F>(-x));
    if !all_finite::<F>(x, t, pw, inf, pos_weighted) {
        let mut log_weight = F::new(1.0);
        if pos_weighted {
            log_weight = (pw - F::new(1.0)) * t + F::new(1.0);
        }
        out = (F::new(1.0) - t) * x - log_weight * log_sigmoid::<F>(x, inf);
    }
    out
}

/// `∂/∂x` of BCE with logits: `(1 - t) σ(x) - pw t σ(-x)`; where an argument is not finite,
/// PyTorch's `(pw t + 1 - t) σ(x) - pw t` (`σ(x) - t` without `pos_weight`).
#[cube]
fn logits_slope_x<F: Float>(x: F, t: F, pw: F, inf: F, #[comptime] pos_weighted: bool) -> F {
    let sig_pos = log_sigmoid::<F>(x, inf).exp();
    let mut out = (F::new(1.0) - t) * sig_pos - pw * t * log_sigmoid::<F>(-x, inf).exp();
    if !all_finite::<F>(x, t, pw, inf, pos_weighted) {
        out = sig_pos - t;
        if pos_weighted {
            let positive = pw * t;
            out = (positive + F::new(1.0) - t) * sig_pos - positive;
        }
    }
    out
}

/// `∂/∂t` of BCE with logits, PyTorch's: `log σ(-x) - pw log σ(x)` (`-x` without
/// `pos_weight`).
#[cube]
fn logits_slope_t<F: Float>(x: F, pw: F, inf: F, #[comptime] pos_weighted: bool) -> F {
    let mut out = -x;
    if pos_weighted {
        out = log_sigmoid::<F>(-x, inf) - pw * log_sigmoid::<F>(x, inf);
    }
    out
}

/// `∂/∂p` of BCE, PyTorch's `(p - t) / max(p (1 - p), ε)`.
#[cube]
fn probs_slope_x<F: Float>(p: F, t: F) -> F {
    (p - t) / (p * (F::new(1.0) - p)).max(F::new(GRAD_EPSILON))
}

/// `∂/∂t` of BCE, PyTorch's `-logit(p) = ln(1 - p) - ln(p)`, not clamped: `inf` at `p = 0`
/// and `-inf` at `p = 1` (written out: `ln(0)` is undefined in SPIR-V and WGSL).
#[cube]
fn probs_slope_t<F: Float>(p: F, inf: F) -> F {
    let mut out = (F::new(1.0) - p).ln() - p.ln();
    if p <= F::new(0.0) {
        out = inf;
    }
    if p >= F::new(1.0) {
        out = -inf;
    }
    out
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
        scalar(f64::INFINITY, input),
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
        scalar(f64::INFINITY, &input),
        BinaryConfig::new(params, weight.is_some(), pos_weight.is_some()),
        wants[0],
        wants[1],
        elem(input.dtype),
    );
    wanted(grads, wants)
}
